#!/bin/sh
# The test command of the README: builds what changed, then runs every Criterion test through
# CTest, each once with the detected kernel set and once with QVLM_ISA=scalar; then the same
# suite again in build-asan/, built with AddressSanitizer + UndefinedBehaviorSanitizer, where any
# sanitizer report fails the test (tests labelled "slow" are left out of that second run).
# QVLM_TEST_SANITIZE=0 skips the sanitizer run (quick local iterations; CI always runs it).
set -eu
cd "$(dirname "$0")/.."
./scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)"
[ "${QVLM_TEST_SANITIZE:-1}" = 0 ] && exit 0
[ -f build-asan/CMakeCache.txt ] ||
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQVLM_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$(nproc)"
ctest --test-dir build-asan --output-on-failure -j"$(nproc)" -LE slow
