#!/usr/bin/env bash
# Runs on the host: needs npm.
set -euo pipefail
: "${PISTON_FETCH_DIR:?}"
npm pack --silent --pack-destination "$PISTON_FETCH_DIR" "@oven/bun-linux-x64@1.4.5"
