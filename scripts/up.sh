#!/usr/bin/env bash
# The main job on a fresh machine: host tools, the workspace, the default repository (signed, in
# out/repo), the default languages installed from it, the API server on 127.0.0.1:2000 — then a
# real execution. Re-running it is cheap: the repository builds incrementally and ppman skips what
# is installed. Stop the server with: kill "$(cat out/piston.pid)".
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
require_root "it installs host packages, mounts images and runs the sandbox"

PACKAGES=${PISTON_DEFAULT_PACKAGES:-"bash python gcc node"}
DATA=${PISTON_DATA_DIRECTORY:-/var/lib/piston}
BIND=${PISTON_BIND_ADDRESS:-127.0.0.1:2000}
export PISTON_DATA_DIRECTORY=$DATA PISTON_BIND_ADDRESS=$BIND

step "host tools"
scripts/install-deps.sh

step "workspace (release)"
cargo build --release --workspace --locked
B=$PWD/target/release

step "default repository: $PACKAGES"
[ -f out/keys/piston.key ] || "$B/repo-builder" keygen
# shellcheck disable=SC2086
"$B/repo-builder" build $PACKAGES

step "install into $DATA"
if ! "$B/ppman" repo list 2>/dev/null | grep -q '^local\b'; then
  "$B/ppman" repo add local "$PWD/out/repo" --key out/keys/piston.pub
fi
"$B/ppman" sync local
# shellcheck disable=SC2086
"$B/ppman" install $PACKAGES

step "API server on $BIND"
if [ -f out/piston.pid ] && kill -0 "$(cat out/piston.pid)" 2>/dev/null; then
  kill "$(cat out/piston.pid)"; sleep 1
fi
nohup "$B/piston" >out/piston.log 2>&1 &
echo $! >out/piston.pid
for _ in $(seq 100); do
  curl -fsS "http://$BIND/api/v2/runtimes" >/dev/null 2>&1 && break
  sleep 0.1
done

step "a real execution"
curl -fsS "http://$BIND/api/v2/runtimes"; echo
curl -fsS -H 'Content-Type: application/json' "http://$BIND/api/v2/execute" \
  -d '{"language":"python","version":"3.x","files":[{"name":"hello.py","content":"import sys\nprint(\"Hello from\", sys.version.split()[0])"}]}'
echo
curl -fsS -H 'Content-Type: application/json' "http://$BIND/api/v2/execute" \
  -d '{"language":"c++","version":"*","files":[{"name":"main.cpp","content":"#include <iostream>\nint main(){std::cout<<\"Hello from C++\\n\";}"}]}'
echo
echo "server running (pid $(cat out/piston.pid), log out/piston.log) on http://$BIND" >&2
