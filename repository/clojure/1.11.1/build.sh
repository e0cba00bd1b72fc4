#!/usr/bin/env bash
set -euo pipefail
apt-get update -q
apt-get install -y -q --no-install-recommends clojure
test -f /usr/share/java/clojure-1.11.jar
