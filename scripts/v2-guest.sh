#!/usr/bin/env bash
# Runs a command as root in a pure cgroup v2 guest: Debian's kernel (from Debian's packages) booted
# under qemu with `cgroup_no_v1=all`, this host's root shared read-only over virtio-9p beneath a
# tmpfs (writes stay in the guest), the command run in this directory. Its output shows here and
# its exit code is this script's.
#
#   scripts/v2-guest.sh 'cargo --version && cat /proc/self/cgroup'
#
# Software emulation (`-accel tcg`): this kind of machine's /dev/kvm is a paravirtual hypervisor
# that hangs stock kernels. A boot takes about 40 s; programs run some 10-30 times slower than on
# the host, so time limits inside need raising. The kernel and initramfs are cached in
# $PISTON_V2_GUEST_DIR (default /var/tmp/piston-v2-guest). Environment: PISTON_V2_GUEST_CPUS (2),
# PISTON_V2_GUEST_MEMORY (6G), PISTON_V2_GUEST_TIMEOUT (seconds, 3600).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root "qemu shares the host's root and the guest runs the sandbox as root"
(($# == 1)) || { echo "usage: $0 'COMMAND'" >&2; exit 2; }

DIR=${PISTON_V2_GUEST_DIR:-/var/tmp/piston-v2-guest}
CPUS=${PISTON_V2_GUEST_CPUS:-2}
MEMORY=${PISTON_V2_GUEST_MEMORY:-6G}
TIMEOUT=${PISTON_V2_GUEST_TIMEOUT:-3600}
# What the guest needs beyond the kernel image: the 9p root, the overlay on it, and what the
# engine mounts (squashfs images on loop devices, overlayfs stacks). modprobe adds dependencies.
MODULES=(virtio_pci 9pnet_virtio 9p overlay squashfs loop)

scripts/install-deps.sh qemu-system-x86 busybox-static kmod >&2
mkdir -p "$DIR"

# The kernel: whatever Debian's linux-image-amd64 points at, unpacked once.
kernel_pkg=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n1)
[ -n "$kernel_pkg" ] || { echo "error: no kernel package behind linux-image-amd64" >&2; exit 1; }
version=${kernel_pkg#linux-image-}
kroot=$DIR/$kernel_pkg
if [ ! -f "$kroot/.unpacked" ]; then
  step "kernel: $kernel_pkg"
  rm -rf "$kroot" "$DIR/download" && mkdir -p "$kroot" "$DIR/download"
  (cd "$DIR/download" && apt-get download -q "$kernel_pkg" >&2)
  dpkg-deb -x "$DIR"/download/"$kernel_pkg"_*.deb "$kroot"
  rm -rf "$DIR/download"
  depmod -b "$kroot" "$version"
  touch "$kroot/.unpacked"
fi

# The initramfs: busybox, the modules above with their dependencies, and stage one of the boot
# (scripts/v2-guest/init), rebuilt when any of them changes.
initrd=$DIR/initrd-$version.cpio.gz
stamp=$(cat scripts/v2-guest/init /bin/busybox "$kroot/lib/modules/$version/modules.dep" | sha256sum | cut -c1-16)
if [ ! -f "$initrd" ] || [ "$(cat "$initrd.stamp" 2>/dev/null)" != "$stamp" ]; then
  step "initramfs for $version"
  tree=$(mktemp -d)
  mkdir -p "$tree"/{bin,dev,proc,sys,lower,tmp,new}
  cp /bin/busybox "$tree/bin/busybox"
  cp scripts/v2-guest/init "$tree/init"
  chmod 755 "$tree/init"
  mods=$kroot/lib/modules/$version
  mkdir -p "$tree/lib/modules/$version"
  cp "$mods"/modules.{dep,alias,symbols,builtin,order} "$tree/lib/modules/$version/" 2>/dev/null || true
  for m in "${MODULES[@]}"; do
    # The module's file and those it depends on, as modules.dep lists them.
    line=$(grep -E "(^|/)${m}\.ko(\.[a-z]+)?:" "$mods/modules.dep" || true)
    if [ -z "$line" ]; then
      grep -qE "/${m}\.ko" "$mods/modules.builtin" || { echo "error: no module $m in $kernel_pkg" >&2; exit 1; }
      continue
    fi
    for f in ${line/:/}; do
      mkdir -p "$tree/lib/modules/$version/$(dirname "$f")"
      cp "$mods/$f" "$tree/lib/modules/$version/$f"
    done
  done
  echo "${MODULES[*]}" >"$tree/modules"
  (cd "$tree" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1) >"$initrd.tmp"
  mv "$initrd.tmp" "$initrd"
  echo "$stamp" >"$initrd.stamp"
  rm -rf "$tree"
fi

# The exchange directory: the command and environment in, the exit code out.
share=$(mktemp -d "$DIR/run.XXXXXX")
trap 'rm -rf "$share"' EXIT
{
  printf 'export GUEST_REPO=%q\n' "$PWD"
  printf 'export GUEST_COMMAND=%q\n' "$1"
  # The caller's test settings and the usual toolchain paths carry over.
  for v in PATH HOME CARGO_HOME RUSTUP_HOME CARGO_TERM_COLOR CI RUST_BACKTRACE; do
    [ -n "${!v:-}" ] && printf 'export %s=%q\n' "$v" "${!v}"
  done
  env | sed -n 's/^\(PISTON_[A-Z0-9_]*\)=.*/\1/p' | while read -r v; do printf 'export %s=%q\n' "$v" "${!v}"; done
} >"$share/env"

step "booting a pure cgroup v2 guest ($CPUS CPUs, $MEMORY, software emulation)"
start=$(date +%s)
set +e
timeout --foreground "$TIMEOUT" qemu-system-x86_64 \
  -accel tcg,thread=multi -cpu max -smp "$CPUS" -m "$MEMORY" \
  -nographic -no-reboot -serial mon:stdio \
  -kernel "$kroot/boot/vmlinuz-$version" -initrd "$initrd" \
  -append "console=ttyS0 cgroup_no_v1=all panic=-1 quiet loglevel=3" \
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
  -virtfs local,path="$share",mount_tag=exchange,security_model=none,multidevs=remap \
  -nic none </dev/null
qemu=$?
set -e
echo "guest: qemu exited with $qemu after $(($(date +%s) - start)) s" >&2
if [ ! -f "$share/rc" ]; then
  echo "error: the guest ended without the command's exit code (qemu: $qemu)" >&2
  echo "hint: the guest's console output above says where it stopped" >&2
  exit 1
fi
exit "$(cat "$share/rc")"
