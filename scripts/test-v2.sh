#!/usr/bin/env bash
# The pure cgroup v2 step of the test suite: boots a v2 guest (scripts/v2-guest.sh) and runs
# scripts/v2-guest/tests in it, on this checkout's build and test repository (PISTON_TEST_REPO,
# PISTON_TEST_PACKAGES, as scripts/test.sh sets them). Build first: `cargo build --workspace
# --all-targets`.
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/v2-guest.sh scripts/v2-guest/tests
