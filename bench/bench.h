/* bench.h — the benchmarks built into the CLI (`qvlm bench NAME`, src/cli/cmd_bench.c). Each
 * takes the arguments after its name and returns an exit code (CLI.md). */
#ifndef QV_BENCH_H
#define QV_BENCH_H

/* `qvlm bench kernels [--quick] [--json]`: the SIMD kernels against memcpy and their scalar twins. */
int qv_bench_kernels(int argc, char **argv);

#endif
