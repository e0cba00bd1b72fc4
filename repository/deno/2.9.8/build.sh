#!/usr/bin/env bash
set -euo pipefail
mkdir -p "$PISTON_PACKAGE_DIR/bin"
install -m 755 -o 0 -g 0 /piston/fetch/tree/deno-"$PISTON_PACKAGE_VERSION".data/scripts/deno "$PISTON_PACKAGE_DIR/bin/deno"
DENO_DIR=/tmp/deno "$PISTON_PACKAGE_DIR/bin/deno" --version | grep -q "deno $PISTON_PACKAGE_VERSION"
