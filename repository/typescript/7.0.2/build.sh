#!/usr/bin/env bash
# fetch.sh installed the compiler with the host's npm (which knows the host's registry and TLS setup).
set -euo pipefail
cp -a /piston/fetch/ts/node_modules "$PISTON_PACKAGE_DIR/node_modules"
chown -R 0:0 "$PISTON_PACKAGE_DIR/node_modules"
"$PISTON_PACKAGE_DIR/node_modules/.bin/tsc" --version | grep -q "$PISTON_PACKAGE_VERSION"
