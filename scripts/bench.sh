#!/usr/bin/env bash
# Every benchmark of the project in one go, each command printed before its output (the figures
# of BENCHMARKS.md): the sandbox's start-up cost, ppman's install and mount times, the
# repository's build times and sizes, and the API server against running the programs directly.
# Run as root: the sandbox, mounts and loop devices are real.
#
# PISTON_BENCH_REPO   a built repository (repo-builder --out; default: the one scripts/test.sh builds)
# PISTON_BENCH_KEY    its minisign public key (default: piston.pub inside it)
# PISTON_BENCH_N      samples per series of the API bench (default 200)
#
# python and bash (and java when the repository has it) are installed from the repository into a
# temporary ppman data directory, which is emptied and removed at the end, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

REPO=${PISTON_BENCH_REPO:-/var/tmp/piston-test-repo/repo}
KEY=${PISTON_BENCH_KEY:-$REPO/piston.pub}
N=${PISTON_BENCH_N:-200}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

# Prints a command, then runs it.
run() {
  printf '\n$'
  printf ' %q' "$@"
  printf '\n'
  "$@"
}

. scripts/lib.sh
require_root "sandbox, mounts, loop devices"
if [ ! -f "$REPO/index.json" ]; then
  echo "error: no built repository at $REPO (index.json missing)" >&2
  echo "hint: scripts/test.sh builds one, or set PISTON_BENCH_REPO to a repo-builder --out" >&2
  exit 1
fi

run cargo build --release --workspace --bins --examples
PPMAN=target/release/ppman

DATA=$(mktemp -d /var/tmp/piston-bench-data.XXXXXX)
RB_WORK=$(mktemp -d /tmp/rb-bench.XXXXXX)
# `ppman list --installed`: "NAME VERSION<TAB>LANGUAGES<TAB>TREE[ (dependency)]".
installed_roots() {
  "$PPMAN" --data-dir "$DATA" list --installed | awk -F'\t' '$3 !~ / \(dependency\)$/ { split($1, a, " "); print a[1] }'
}
tree_of() {
  "$PPMAN" --data-dir "$DATA" list --installed |
    awk -F'\t' -v p="$1" '{ split($1, a, " "); sub(/ \(dependency\)$/, "", $3) } a[1] == p { print $3 }'
}
cleanup() {
  local status=$?
  set +e
  printf '\n==> cleanup\n' >&2
  for p in $(installed_roots 2>/dev/null); do
    "$PPMAN" --data-dir "$DATA" uninstall --cascade "$p" >&2
  done
  "$PPMAN" --data-dir "$DATA" gc >&2
  if grep -qF " $DATA/" /proc/self/mounts; then
    echo "warning: mounts are left under $DATA; not removing it" >&2
    status=1
  else
    rm -rf --one-file-system "$DATA"
  fi
  rm -rf --one-file-system "$RB_WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

printf '\n==> install the benchmarked runtimes from %s into %s\n' "$REPO" "$DATA"
run "$PPMAN" --data-dir "$DATA" repo add bench "$REPO" --key "$KEY"
run "$PPMAN" --data-dir "$DATA" sync
packages=(python bash)
if "$PPMAN" --data-dir "$DATA" info java >/dev/null 2>&1; then
  packages+=(java)
fi
run "$PPMAN" --data-dir "$DATA" install "${packages[@]}"
run "$PPMAN" --data-dir "$DATA" list --installed

printf '\n==> sandbox start-up cost (runner)\n'
run target/release/piston-runner bench -n 300 --layer / --uid-min 60001 --uid-max 60100 --work-dir "$RB_WORK"

printf '\n==> ppman: install from a local repository vs tar.gz extraction, mount time\n'
# What the runtimes bring on top of the base layer: the standard library of the installed Python
# and, when installed, the JDK (a big tree).
dirs=("$(tree_of python)/usr/lib/python3.11")
if [[ " ${packages[*]} " == *" java "* ]]; then
  dirs+=("$(tree_of java)/usr/lib/jvm")
fi
# The examples built above (`cargo run -p` would build them again with per-package features).
run target/release/examples/bench "${dirs[@]}"

printf '\n==> repository: build time and size per package\n'
run target/release/repo-builder --out "$REPO" report ||
  echo "note: no build records in $REPO (only a repo-builder --out has them, not a published copy)"

printf '\n==> API server vs running the programs directly\n'
# The bench prints its own command line first.
target/release/examples/server-bench --data-directory "$DATA" -n "$N"
