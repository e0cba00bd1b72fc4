#!/usr/bin/env bash
# A/B of the sandbox and the server: another revision against the working tree, interleaved in
# one run (absolute figures drift between runs on a shared machine; the ratio holds).
#
#   scripts/ab-bench.sh REV DATA_DIR [ROUNDS]
#
# REV       the baseline (any git revision, e.g. HEAD or main~3); built in a worktree under
#           /var/tmp/piston-ab with its own target directory, so the working tree's build is kept
# DATA_DIR  a ppman data directory with python and bash installed (as for server-bench)
# ROUNDS    rounds of A then B (default 3)
#
# Each round runs, for the baseline then the working tree: `piston-runner bench` (the sandbox's
# start-up cost over bare namespaces, median) and `server-bench --api-load-only` (bash jobs
# through the API at concurrency 4: jobs/s and CPU per job). Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 2 ]; then
  echo "usage: scripts/ab-bench.sh REV DATA_DIR [ROUNDS]" >&2
  exit 2
fi
REV=$1
DATA=$2
ROUNDS=${3:-3}
AB=/var/tmp/piston-ab
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

. scripts/lib.sh
require_root "sandbox, mounts, cgroups"
if [ ! -d "$DATA/ppman" ]; then
  echo "error: $DATA is not a ppman data directory" >&2
  echo "hint: ppman --data-dir $DATA repo add … && ppman --data-dir $DATA sync && ppman --data-dir $DATA install python bash" >&2
  exit 1
fi
COMMIT=$(git rev-parse --verify "$REV^{commit}")

mkdir -p "$AB"
if [ ! -e "$AB/src/.git" ]; then
  git worktree add --detach "$AB/src" "$COMMIT" >/dev/null
else
  git -C "$AB/src" checkout --quiet --detach "$COMMIT"
fi
echo "==> building A = $REV ($COMMIT)"
(cd "$AB/src" && CARGO_TARGET_DIR="$AB/target" cargo build --release -p api -p runner --bins)
echo "==> building B = the working tree"
cargo build --release --workspace --bins --examples

WORK=$(mktemp -d /tmp/piston-ab.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
A="$AB/target/release"
B="$PWD/target/release"
for round in $(seq "$ROUNDS"); do
  for side in A B; do
    dir=$A
    [ "$side" = B ] && dir=$B
    startup=$("$dir/piston-runner" bench -n 200 --layer / --uid-min 60001 --uid-max 60100 \
      --work-dir "$WORK/rb" | awk '/^full - namespaces/ { print $5 " ms" }')
    load=$("$B/examples/server-bench" --piston "$dir/piston" --data-directory "$DATA" \
      -n 400 --concurrency 4 --api-load-only | tail -n 1 | sed 's/.*errors, //')
    printf 'round %s %s: sandbox over namespaces (median) %s | %s\n' "$round" "$side" "$startup" "$load"
  done
done
