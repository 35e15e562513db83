#!/bin/sh
# scripts/fuzz.sh TARGET SECONDS [libFuzzer options...] — builds tests/fuzz/fuzz_TARGET.c with
# clang, libFuzzer, ASan and UBSan in build-fuzz/ and fuzzes it for SECONDS on one core.
#   corpus     build-fuzz/corpus/TARGET (kept between runs), started from tests/fuzz/seeds/TARGET
#   findings   build-fuzz/artifacts/TARGET/{crash,leak,timeout,oom}-*; once fixed, copy each into
#              tests/fuzz/regress/TARGET/ (the test suite replays it from then on)
#   log        build-fuzz/logs/TARGET.log (the numbers recorded in tests/fuzz/README.md)
# Targets: safetensors json config index tokenizer_json spm yaml captions image (tests/fuzz/README.md).
# Extra options go to libFuzzer, e.g. -fork=1 -ignore_crashes=1 to keep going after a crash.
# Needs clang and libclang-rt-14-dev (not in scripts/deps.sh: fuzzing is not part of CI).
set -eu
[ $# -ge 2 ] || { echo "usage: scripts/fuzz.sh TARGET SECONDS [libFuzzer options...]" >&2; exit 2; }
target=$1 seconds=$2
shift 2
cd "$(dirname "$0")/.."
[ -f "tests/fuzz/fuzz_$target.c" ] || { echo "fuzz.sh: no target '$target' (tests/fuzz/fuzz_$target.c)" >&2; exit 2; }
[ -f build-fuzz/CMakeCache.txt ] ||
  CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQVLM_FUZZ=ON -DQVLM_BUILD_TESTS=OFF >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target "fuzz_$target" >/dev/null
mkdir -p "build-fuzz/corpus/$target" "build-fuzz/artifacts/$target" build-fuzz/logs
dict=""
for d in "tests/fuzz/dict/$target.dict" tests/fuzz/dict/json.dict; do
  if [ -f "$d" ]; then dict="-dict=$d"; break; fi
done
case $target in safetensors|spm|image|yaml) [ -f "tests/fuzz/dict/$target.dict" ] || dict="";; esac
# LeakSanitizer on; malloc_limit keeps a runaway allocation from passing as a slow input
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
"build-fuzz/fuzz_$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
  -print_final_stats=1 -artifact_prefix="build-fuzz/artifacts/$target/" $dict "$@" \
  "build-fuzz/corpus/$target" "tests/fuzz/seeds/$target" 2>&1 | tee "build-fuzz/logs/$target.log"
