#!/usr/bin/env bash
# dash is already in the base layer (Essential: yes); check that it is the version this package names.
set -euo pipefail
dpkg-query -W -f='${Version}\n' dash | grep -q "^$PISTON_PACKAGE_VERSION-"
