#!/bin/sh
# The embedded demo: inspects the tiny InternVL2 (InternLM2) model the repository ships.
set -eu
cd "$(dirname "$0")/.."
echo "== qvlm inspect tests/fixtures/models/internvl2-internlm2-tiny"
./build/qvlm inspect tests/fixtures/models/internvl2-internlm2-tiny
echo "== qvlm --print-isa"
./build/qvlm --print-isa
echo "== qvlm bench kernels --quick   (GB/s vs memcpy and vs the scalar reference; see bench/README.md)"
./build/qvlm bench kernels --quick
