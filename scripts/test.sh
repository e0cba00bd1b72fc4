#!/usr/bin/env bash
# The whole test suite, as CI runs it: host tools, formatting, lints, a real repository of the
# representative language subset (built, signed and tested on its layers), then every test.
# Run as root: the sandbox, mounts and loop devices are real.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root "the sandbox, mounts and loop devices are real"

# The representative subset CI builds (the base and a few languages that cover interpreted,
# compiled, dependent-layer and registry-sourced packages); `repo-builder build` with no names
# builds everything.
CI_PACKAGES=${PISTON_CI_PACKAGES:-"bash python gcc node"}
OUT=${PISTON_TEST_REPO_OUT:-/var/tmp/piston-test-repo}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
export PISTON_TEST_REQUIRE_PRIVILEGED=${PISTON_TEST_REQUIRE_PRIVILEGED:-1}

step "host tools"
scripts/install-deps.sh

step "format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
cargo build --workspace --all-targets --locked
RB=target/debug/repo-builder

step "repository subset: $CI_PACKAGES -> $OUT"
mkdir -p "$OUT/keys"
[ -f "$OUT/keys/piston.key" ] || "$RB" --key "$OUT/keys/piston.key" keygen
present=()
for p in $CI_PACKAGES; do
  if [ -d "repository/$p" ]; then present+=("$p"); else echo "note: repository/$p does not exist yet" >&2; fi
done
if ((${#present[@]})); then
  "$RB" --out "$OUT/repo" --key "$OUT/keys/piston.key" --compression-level 3 build "${present[@]}"
  "$RB" --out "$OUT/repo" --key "$OUT/keys/piston.key" test "${present[@]}"
  export PISTON_TEST_REPO="$OUT/repo" PISTON_TEST_PACKAGES="${present[*]}"
fi

step "tests"
cargo test --workspace --locked --no-fail-fast

# This host may have cgroup v1 controllers only; most production hosts are pure v2.
step "pure cgroup v2 guest (qemu)"
scripts/test-v2.sh
