#!/usr/bin/env bash
# Compiles bf.c with a gcc installed only for the build and purged afterwards, so the layer keeps
# just the binary (and dpkg's record of the purge).
set -euo pipefail
apt-get update -q
apt-get install -y -q --no-install-recommends gcc libc6-dev
gcc -O2 -o /usr/local/bin/brainfuck bf.c
# dpkg removes directories that become empty; a placeholder keeps the base's empty man sections
# from turning into whiteouts in this layer.
for d in /usr/share/man/man*; do touch "$d/.keep"; done
apt-get purge -y -q --autoremove gcc libc6-dev
rm -f /usr/share/man/man*/.keep
/usr/local/bin/brainfuck /dev/null
