#!/bin/sh
# Command 1 of the README: installs the Debian packages, builds qvlm and runs the embedded demo.
set -eu
cd "$(dirname "$0")"
./scripts/deps.sh
./scripts/build.sh
./scripts/demo.sh
