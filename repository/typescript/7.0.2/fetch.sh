#!/usr/bin/env bash
# Runs on the host: needs npm. Installs the compiler and Node's type declarations.
set -euo pipefail
: "${PISTON_FETCH_DIR:?}"
npm install --silent --no-audit --no-fund --no-save --os=linux --cpu=x64 \
    --prefix "$PISTON_FETCH_DIR/ts" "typescript@7.0.2" "@types/node@24"
