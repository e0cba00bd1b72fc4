#!/usr/bin/env bash
set -euo pipefail
cp -a /piston/fetch/pkg/node_modules "$PISTON_PACKAGE_DIR/node_modules"
chown -R 0:0 "$PISTON_PACKAGE_DIR/node_modules"
"$PISTON_PACKAGE_DIR/node_modules/.bin/coffee" --version
