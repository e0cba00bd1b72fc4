#!/usr/bin/env bash
set -euo pipefail
mkdir -p "$PISTON_PACKAGE_DIR/bin"
tar -xzf "/piston/fetch/oven-bun-linux-x64-$PISTON_PACKAGE_VERSION.tgz" -C "$PISTON_PACKAGE_DIR/bin" \
    --strip-components=2 --no-same-owner package/bin/bun
chmod 755 "$PISTON_PACKAGE_DIR/bin/bun"
"$PISTON_PACKAGE_DIR/bin/bun" --version | grep -qx "$PISTON_PACKAGE_VERSION"
