#!/usr/bin/env bash
set -euo pipefail
apt-get update -q
# libc6-dev is only a Recommends of gcc-12: name it.
apt-get install -y -q --no-install-recommends gcc g++ libc6-dev make
gcc -dumpfullversion | grep -qx "$PISTON_PACKAGE_VERSION"
