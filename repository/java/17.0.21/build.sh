#!/usr/bin/env bash
set -euo pipefail
apt-get update -q
apt-get install -y -q --no-install-recommends openjdk-17-jdk-headless
# jmods/ is only used by jlink and doubles the image.
rm -rf /usr/lib/jvm/java-17-openjdk-amd64/jmods
java -version
