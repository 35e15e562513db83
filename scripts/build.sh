#!/bin/sh
# Configures (once) and builds qvlm in ./build (Release). Extra arguments go to cmake configure.
set -eu
cd "$(dirname "$0")/.."
[ -f build/CMakeCache.txt ] || cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build -j"$(nproc)"
