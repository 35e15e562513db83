#!/bin/sh
# The test command of the README: builds what changed, then runs every Criterion test through
# CTest, each once with the detected kernel set and once with QVLM_ISA=scalar; then the MPI
# tests (test_mpi) in an -DQVLM_MPI=ON build (build-mpi), against the default build's binary;
# then the suite again in build-asan/, built with AddressSanitizer + UndefinedBehaviorSanitizer,
# where any sanitizer report fails the test (tests labelled "slow" are left out of that run).
# QVLM_TEST_SANITIZE=0 skips the sanitizer run (quick local iterations; CI always runs it).
set -eu
cd "$(dirname "$0")/.."
./scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)"
if command -v mpirun >/dev/null 2>&1; then
  [ -f build-mpi/CMakeCache.txt ] || cmake -S . -B build-mpi -DCMAKE_BUILD_TYPE=Release -DQVLM_MPI=ON >/dev/null
  cmake --build build-mpi -j"$(nproc)" --target qvlm test_mpi
  QVLM_TEST_PLAIN_CLI="$PWD/build/qvlm" ctest --test-dir build-mpi --output-on-failure -R '^test_mpi$'
else
  echo "test.sh: mpirun not found (scripts/deps.sh installs openmpi-bin): the MPI tests did not run" >&2
  exit 1
fi
[ "${QVLM_TEST_SANITIZE:-1}" = 0 ] && exit 0
[ -f build-asan/CMakeCache.txt ] ||
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQVLM_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$(nproc)"
ctest --test-dir build-asan --output-on-failure -j"$(nproc)" -LE slow
