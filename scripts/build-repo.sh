#!/usr/bin/env bash
# Builds the default repository from repository/ into a local folder (default out/repo), signed with
# out/keys/piston.key (created when missing). Names limit the build to those packages and their
# dependencies; with none, every package is built.
#   scripts/build-repo.sh [--publish DIR] [--compression-level N] [PKG[=SELECTOR]]...
set -euo pipefail
cd "$(dirname "$0")/.."
publish=""
args=()
while (($#)); do
  case "$1" in
    --publish) publish=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
scripts/install-deps.sh
cargo build --release -p repo-builder -p runner   # runner: piston-sandbox, for `repo-builder test`
RB=target/release/repo-builder
[ -f out/keys/piston.key ] || "$RB" keygen
"$RB" build "${args[@]}"
if [ -n "$publish" ]; then "$RB" publish "$publish"; fi
echo "repository: $PWD/out/repo (public key: out/keys/piston.pub)" >&2
