#!/usr/bin/env bash
set -euo pipefail
cp -a /piston/fetch/ts/node_modules "$PISTON_PACKAGE_DIR/node_modules"
chown -R 0:0 "$PISTON_PACKAGE_DIR/node_modules"
PATH="/piston/packages/node/26.10.0/bin:$PATH" "$PISTON_PACKAGE_DIR/node_modules/.bin/tsc" --version
