#!/usr/bin/env bash
set -euo pipefail
apt-get update -q
apt-get install -y -q --no-install-recommends python3
python3 -c 'import sys; v = "%d.%d.%d" % sys.version_info[:3]; print(v); sys.exit(v != sys.argv[1])' "$PISTON_PACKAGE_VERSION"
