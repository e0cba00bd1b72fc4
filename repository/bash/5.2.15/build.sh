#!/usr/bin/env bash
# bash is already in the base layer (Essential: yes); check that it is the version this package names.
set -euo pipefail
bash --version | head -n 1
case "$(bash -c 'echo "${BASH_VERSINFO[0]}.${BASH_VERSINFO[1]}.${BASH_VERSINFO[2]}"')" in
    "$PISTON_PACKAGE_VERSION") ;;
    *) echo "base bash is not $PISTON_PACKAGE_VERSION" >&2; exit 1 ;;
esac
