#!/usr/bin/env bash
# Installs the host tools the project needs (idempotent). Runs as root on Debian/Ubuntu.
# Arguments name further Debian packages a step needs (scripts/v2-guest.sh: qemu, busybox).
#   squashfs-tools  mksquashfs/unsquashfs: images are squashfs (zstd)
#   debootstrap     the base layer is a Debian minbase root file system
#   minisign        the stock verifier, used by tests to show interoperability
#   util-linux      unshare, mount -o loop (loop devices that free themselves)
#   curl            the demo in scripts/up.sh
#   python3-pip     fetch.sh of registry-sourced packages (node, go, zig, deno, bun: PyPI wheels)
#   npm             fetch.sh of typescript and coffeescript (npm registry)
#   systemd         systemd-analyze, which checks deploy/piston.service (systemd need not run)
set -euo pipefail

packages=(squashfs-tools debootstrap minisign util-linux curl ca-certificates systemd "$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Registry clients: whatever provides them (a distribution package or a toolchain manager) will do.
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for tool in cargo mksquashfs unsquashfs debootstrap minisign unshare; do
  command -v "$tool" >/dev/null || { echo "error: $tool is still missing" >&2; exit 1; }
done
