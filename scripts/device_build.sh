#!/bin/bash
# device_build.sh DEBS_DIR [STAGE ...] — builds, tests and benchmarks qvlm on a host that has gcc and
# CMake but none of qvlm's library packages (the lent AMX Xeon of the device tool), from a folder of
# Debian 12 .deb files (scripts/device_debs.sh downloads them; about 13 MB) extracted into a private
# prefix. Logs and a summary go to $OUT (the device tool's result folder; default ./device-out).
#
# Stages (default: all, in this order; each under its own time limit so that the whole run stays
# inside one 10-minute device call):
#   build   extract the .debs (once per set), configure against the prefix only, build   (110 s)
#   test    the kernel, GEMM, search and bench-CLI tests through CTest                     (140 s)
#   bench   qvlm --print-isa, bench amx-peak, bench fqgemm --sweep                          ( 90 s)
#   search  qvlm bench search-layer at 128 x 400 tokens, InternVL2-8B dims ($QV_SEARCH_ARGS): the
#           default oneDNN path, then the packed kernels (QVLM_FQGEMM=1) one sample per call
#           (candidates prepared per grid point) and --chunk 0 (all rows per call, fake
#           quantization on the fly) unless QV_SEARCH_FLY=0                                (220 s)
#   torch   bench/torch_search_layer.py, the same search in PyTorch ($QV_TORCH_ARGS)       ( 90 s)
#   kernels qvlm bench kernels (every kernel set: scalar, AVX2, AVX-512) at the real shapes   ( 60 s)
#   export  scripts/check_export.py: every export format read back by torch / transformers  ( 90 s)
#   e2e     bench/end_to_end.sh: synthetic InternVL2-8B, $QV_E2E_LAYERS (1) LLM layer(s),
#           $QV_E2E_SAMPLES (128) samples, MBQ W3g128 reweight, phases and peak RSS       (420 s)
#   mpi     Open MPI from the same .debs, an -DQVLM_MPI=ON build (build-device-mpi), then
#           bench/end_to_end.sh at ranks x threads = 1x16, 2x8, 4x4 ($QV_MPI_SAMPLES (32)
#           samples, 1 layer): search time, scaling, per-rank RSS and communication share  (420 s)
# Not in "all" (each takes most of a device call): e2e, mpi. Name them.
# Environment: OUT, QV_PREFIX (/tmp/qvlm-prefix), QV_BUILD (build-device), QV_JOBS (nproc),
# QV_BUILD_TARGETS (the build stage builds only these, e.g. qvlm), QV_TEST_REGEX, QV_BENCH_ARGS (more fqgemm options), QV_SEARCH_ARGS (--points 2), QV_TORCH_ARGS
# (--points 2), QV_ISOLATE=1 (CMake
# finds packages under the prefix only: for checking the script on a host that has the -dev
# packages installed), QV_LIMIT_SCALE (multiplies every stage's time limit; default 1).
# QV_PYTHON (python3) runs the torch stage.
# The build links the prefix's libraries; libc, libstdc++, libgomp, zlib and OpenSSL are the host's.
# PyTorch runs with the host's library path, not the prefix's.
#
# Example (device tool, the debs carried):  scripts/device_build.sh .carry/debs
set -u
cd "$(dirname "$0")/.."
DEBS=${1:?usage: scripts/device_build.sh DEBS_DIR [build|test|bench|search|torch|all ...]}
shift
DEBS=$(cd "$DEBS" && pwd)
STAGES=" ${*:-all} "
OUT=${OUT:-$PWD/device-out}
PREFIX=${QV_PREFIX:-/tmp/qvlm-prefix}
BUILD=${QV_BUILD:-build-device}
JOBS=${QV_JOBS:-$(nproc)}
LIB=$PREFIX/usr/lib/x86_64-linux-gnu
LIB2=$PREFIX/lib/x86_64-linux-gnu # a few Debian 12 packages still ship /lib/x86_64-linux-gnu
ORIG_LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}
mkdir -p "$OUT"
SUM=$OUT/summary.txt
export OUT PREFIX BUILD JOBS LIB LIB2 DEBS ORIG_LD_LIBRARY_PATH

log() { echo "[device_build $(date +%T)] $*" | tee -a "$SUM"; }
want() { case "$STAGES" in *" $1 "* | *" all "*) return 0 ;; esac; return 1; }

# Runs stage function $1 under a limit of $2 seconds, its output appended to $OUT/$1.log.
stage() {
    local name=$1 limit=$(($2 * ${QV_LIMIT_SCALE:-1})) start rc
    log "stage $name (limit ${limit}s)"
    start=$(date +%s)
    timeout --kill-after=10 "$limit" bash -c "stage_$name" >>"$OUT/$name.log" 2>&1
    rc=$?
    log "stage $name: exit $rc after $(($(date +%s) - start)) s$([ $rc -eq 124 ] && echo ' (time limit)')"
    return $rc
}

# ---- the prefix ----------------------------------------------------------------------------------

extract() {
    local stamp=$PREFIX/.qvlm-debs sum f p missing=""
    for p in $(scripts/device_debs.sh --list); do
        ls "$DEBS/${p}_"*.deb >/dev/null 2>&1 || missing="$missing $p"
    done
    [ -n "$missing" ] && log "warning: not in $DEBS:$missing (scripts/device_debs.sh downloads them)"
    sum=$(cd "$DEBS" && ls -l ./*.deb | md5sum)
    [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ] && return 0
    rm -rf "$PREFIX" && mkdir -p "$PREFIX" || return 1
    for f in "$DEBS"/*.deb; do
        if command -v dpkg-deb >/dev/null; then
            dpkg-deb -x "$f" "$PREFIX" || return 1
        else
            (t=$(mktemp -d) && cd "$t" && ar x "$f" && tar -xf data.tar.* -C "$PREFIX" && rm -rf "$t") || return 1
        fi
    done
    # the static-only fields of criterion.pc name packages that are not carried (we link dynamically)
    sed -i '/^Requires.private/d;/^Libs.private/d' "$LIB/pkgconfig/criterion.pc"
    echo "$sum" >"$stamp"
    log "extracted $(ls "$DEBS"/*.deb | wc -l) packages into $PREFIX"
}

# Every tool and library lookup goes to the prefix: .pc files say prefix=/usr, so pkg-config gets
# the prefix as its sysroot and no system directory filtering; the loader and the linker search
# the prefix's library folder first.
export LD_LIBRARY_PATH=$LIB:$LIB2${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PKG_CONFIG_LIBDIR=$LIB/pkgconfig:$PREFIX/usr/share/pkgconfig
export PKG_CONFIG_PATH=
export PKG_CONFIG_SYSROOT_DIR=$PREFIX
export PKG_CONFIG_SYSTEM_INCLUDE_PATH=/nonexistent PKG_CONFIG_SYSTEM_LIBRARY_PATH=/nonexistent
export PKG_CONFIG_ALLOW_SYSTEM_CFLAGS=1 PKG_CONFIG_ALLOW_SYSTEM_LIBS=1
PKGCONF=$(command -v pkg-config || command -v pkgconf || echo "$PREFIX/usr/bin/pkgconf")
export PKGCONF

# ---- stages --------------------------------------------------------------------------------------

stage_build() {
    set -e
    local iso=()
    [ "${QV_ISOLATE:-0}" = 1 ] && iso=(-DCMAKE_FIND_ROOT_PATH="$PREFIX" -DCMAKE_FIND_ROOT_PATH_MODE_PACKAGE=ONLY)
    echo "pkg-config: $PKGCONF ($("$PKGCONF" --version))"
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$PREFIX/usr" \
        -DPKG_CONFIG_EXECUTABLE="$PKGCONF" -DCMAKE_C_FLAGS="-I$PREFIX/usr/include/x86_64-linux-gnu" \
        -DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath-link,$LIB:$LIB2" \
        -DOpenCL_INCLUDE_DIR="$PREFIX/usr/include" -DOpenCL_LIBRARY="$LIB/libOpenCL.so" "${iso[@]}"
    # shellcheck disable=SC2086
    cmake --build "$BUILD" -j"$JOBS" ${QV_BUILD_TARGETS:+--target $QV_BUILD_TARGETS}
    echo "libraries of qvlm:"
    ldd "$BUILD/qvlm" | grep -E "dnnl|json|yaml|jpeg|png|pcre|utf8|OpenCL|gomp|not found"
    ! ldd "$BUILD/qvlm" $([ -f "$BUILD/test_fqgemm" ] && echo "$BUILD/test_fqgemm") | grep "not found"
}

stage_test() {
    ctest --test-dir "$BUILD" -j"$JOBS" --output-on-failure -V \
        -R "${QV_TEST_REGEX:-fqgemm|search_packed|cli_bench|test_kernels|fq_parity|matmul|llm_forward|loss}"
}

stage_bench() {
    "$BUILD/qvlm" --print-isa
    "$BUILD/qvlm" bench amx-peak
    # shellcheck disable=SC2086
    "$BUILD/qvlm" bench fqgemm --sweep ${QV_BENCH_ARGS:-}
}

stage_search() {
    # the default (oneDNN) path, then the packed kernels (QVLM_FQGEMM=1) prepared per grid point
    # and, unless QV_SEARCH_FLY=0, fake-quantized on the fly (--chunk 0)
    # shellcheck disable=SC2086
    "$BUILD/qvlm" bench search-layer ${QV_SEARCH_ARGS:---points 2}
    # shellcheck disable=SC2086
    QVLM_FQGEMM=1 "$BUILD/qvlm" bench search-layer ${QV_SEARCH_ARGS:---points 2}
    if [ "${QV_SEARCH_FLY:-1}" = 1 ]; then
        # shellcheck disable=SC2086
        QVLM_FQGEMM=1 "$BUILD/qvlm" bench search-layer ${QV_SEARCH_ARGS:---points 2} --chunk 0
    fi
}

stage_torch() {
    # the host's own libraries for PyTorch, not the prefix's
    # shellcheck disable=SC2086
    LD_LIBRARY_PATH=$ORIG_LD_LIBRARY_PATH PYTHONUNBUFFERED=1 "${QV_PYTHON:-python3}" bench/torch_search_layer.py \
        --threads "$JOBS" ${QV_TORCH_ARGS:---points 2}
}
stage_kernels() {
    "$BUILD/qvlm" bench kernels ${QV_KERNELS_ARGS:-}
}

stage_export() {
    LD_LIBRARY_PATH=$ORIG_LD_LIBRARY_PATH PYTHONUNBUFFERED=1 "${QV_PYTHON:-python3}" scripts/check_export.py \
        --qvlm "$BUILD/qvlm" --fixtures tests/fixtures --work /tmp/qvlm-check-export
}

stage_e2e() {
    bench/end_to_end.sh --qvlm "$BUILD/qvlm" --layers "${QV_E2E_LAYERS:-1}" --samples "${QV_E2E_SAMPLES:-128}" \
        --work /tmp/qvlm-e2e
}

stage_mpi() {
    set -e
    local R=$PREFIX/usr ml=$PREFIX/usr/lib/x86_64-linux-gnu/openmpi
    export OPAL_PREFIX=$R PATH=$R/bin:$PATH LD_LIBRARY_PATH=$ml/lib:$LD_LIBRARY_PATH
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    cmake -S . -B build-device-mpi -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$PREFIX/usr" \
        -DPKG_CONFIG_EXECUTABLE="$PKGCONF" -DCMAKE_C_FLAGS="-I$PREFIX/usr/include/x86_64-linux-gnu" \
        -DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath-link,$LIB:$LIB2:$ml/lib" -DQVLM_BUILD_TESTS=OFF -DQVLM_MPI=ON \
        -DMPI_C_COMPILER=/nonexistent -DMPI_C_HEADER_DIR="$ml/include" -DMPI_C_LIB_NAMES=mpi \
        -DMPI_mpi_LIBRARY="$ml/lib/libmpi.so" \
        -DOpenCL_INCLUDE_DIR="$PREFIX/usr/include" -DOpenCL_LIBRARY="$LIB/libOpenCL.so" >/dev/null
    cmake --build build-device-mpi -j"$JOBS" --target qvlm >/dev/null
    local n=$(nproc) p
    for p in ${QV_MPI_RANKS:-1 2 4}; do
        bench/end_to_end.sh --qvlm build-device-mpi/qvlm --layers 1 --samples "${QV_MPI_SAMPLES:-32}" \
            --work /tmp/qvlm-e2e --tag "np$p" \
            --launcher "orterun -np $p --bind-to none -x OMP_NUM_THREADS=$((n / p)) -x LD_LIBRARY_PATH -x OPAL_PREFIX -x PATH"
        cat "/tmp/qvlm-e2e/run-internvl2-8b-1l-mbq-${QV_MPI_SAMPLES:-32}-np$p/timings.json"
    done
}
export -f stage_build stage_test stage_bench stage_search stage_torch stage_kernels stage_export stage_e2e stage_mpi

# ---- run -------------------------------------------------------------------------------------------

log "host: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs, flags:$(grep -m1 -o -w \
    -e avx512f -e avx512_bf16 -e amx_tile -e amx_bf16 /proc/cpuinfo | sort -u | tr '\n' ' ' | sed 's/^/ /')"
log "tools: $(gcc --version | head -1); $(cmake --version | head -1); stages:$STAGES"
ok=1
if want build || [ ! -x "$BUILD/qvlm" ]; then
    extract || { log "extraction failed"; exit 1; }
    stage build 110 || { log "build failed: see $OUT/build.log"; tail -30 "$OUT/build.log"; exit 1; }
fi
want test && { stage test 140 || ok=0; grep -E "tests passed|tests failed|\*\*\*Failed|\[packed\]|gemm kernel sets" \
    "$OUT/test.log" | sort -u | tee -a "$SUM"; }
want bench && { stage bench 90 || ok=0; grep -E "^amx-peak|^# hw check|^# AMX|^(wqkv|w1|w2|wo) |^sweep" \
    "$OUT/bench.log" | tee -a "$SUM"; }
want search && { stage search 220 || ok=0; grep -E "^# qvlm|^group|^layer" "$OUT/search.log" | tee -a "$SUM"; }
want torch && { stage torch 90 || ok=0; grep -E "^# torch|^group|^layer" "$OUT/torch.log" | tee -a "$SUM"; }
want kernels && { stage kernels 60 || ok=0; grep -E "^fq_|^loss|^absmean|^memcpy|^#" "$OUT/kernels.log" | head -60 \
    | tee -a "$SUM"; }
want export && { stage export 90 || ok=0; grep -E "^(PASS|FAIL|SKIP)" "$OUT/export.log" | tee -a "$SUM"; }
case "$STAGES" in *" e2e "*) stage e2e 420 || ok=0; grep -E "^#|^calib|^peak|^search|^synth|^\{" "$OUT/e2e.log" \
    | tee -a "$SUM" ;; esac
case "$STAGES" in *" mpi "*) stage mpi 420 || ok=0; grep -E "^#|^calib|^peak|^search|^\{" "$OUT/mpi.log" \
    | tee -a "$SUM" ;; esac
log "done ($([ $ok = 1 ] && echo 'every stage exited 0' || echo 'a stage failed or ran out of time'))"
[ $ok = 1 ]
