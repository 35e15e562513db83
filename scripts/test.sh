#!/bin/sh
# The test command of the README: builds what changed, then runs every Criterion test through
# CTest, each once with the detected kernel set and once with QVLM_ISA=scalar.
set -eu
cd "$(dirname "$0")/.."
./scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)"
