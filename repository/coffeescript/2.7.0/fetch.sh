#!/usr/bin/env bash
# Runs on the host: needs npm.
set -euo pipefail
: "${PISTON_FETCH_DIR:?}"
npm install --silent --no-audit --no-fund --no-save --prefix "$PISTON_FETCH_DIR/pkg" "coffeescript@2.7.0"
