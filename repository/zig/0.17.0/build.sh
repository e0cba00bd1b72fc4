#!/usr/bin/env bash
set -euo pipefail
cp -a /piston/fetch/tree/ziglang "$PISTON_PACKAGE_DIR/zig"
rm -rf "$PISTON_PACKAGE_DIR/zig/__init__.py" "$PISTON_PACKAGE_DIR/zig/__main__.py" "$PISTON_PACKAGE_DIR/zig/__pycache__"
chown -R 0:0 "$PISTON_PACKAGE_DIR/zig"
export PATH="$PISTON_PACKAGE_DIR/zig:$PATH" ZIG_GLOBAL_CACHE_DIR="$PISTON_PACKAGE_DIR/cache"
zig version | grep -qx "$PISTON_PACKAGE_VERSION"
# Pre-warm the global cache (compiler_rt, std) the way `compile` builds.
mkdir -p /tmp/warm && cd /tmp/warm
cat > warm.zig <<'ZIG'
const std = @import("std");
pub fn main(init: std.process.Init) !void {
    var buf: [64]u8 = undefined;
    var w = std.Io.File.stdout().writer(init.io, &buf);
    try w.interface.print("{s}\n", .{"OK"});
    try w.interface.flush();
}
ZIG
zig build-exe --color off -fstrip --cache-dir /tmp/warm/cache --name a.out warm.zig
./a.out
