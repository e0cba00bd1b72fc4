#!/usr/bin/env bash
set -euo pipefail
cp -a /piston/fetch/pkg/node_modules "$PISTON_PACKAGE_DIR/node_modules"
chown -R 0:0 "$PISTON_PACKAGE_DIR/node_modules"
PATH="/piston/packages/node/24.19.0/bin:$PATH" "$PISTON_PACKAGE_DIR/node_modules/.bin/coffee" --version
