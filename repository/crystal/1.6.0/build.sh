#!/usr/bin/env bash
set -euo pipefail
apt-get update -q
apt-get install -y -q --no-install-recommends crystal libpcre3-dev libgc-dev libevent-dev libssl-dev zlib1g-dev
