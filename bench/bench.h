/* bench.h — the benchmarks built into the CLI (`qvlm bench NAME`, src/cli/cmd_bench.c). Each
 * takes the arguments after its name and returns an exit code (CLI.md). */
#ifndef QV_BENCH_H
#define QV_BENCH_H

/* `qvlm bench vit [--tiles N] [--chunk N] [--dtype f32|bf16] [--layers N] [--json]`: InternViT-300M
 * forward throughput at its real dimensions on random in-memory weights. */
int qv_bench_vit(int argc, char **argv);
/* `qvlm bench kernels [--quick] [--json]`: the SIMD kernels against memcpy and their scalar twins. */
int qv_bench_kernels(int argc, char **argv);
/* `qvlm bench layer`: one decoder layer at InternLM2-7B dimensions (bench_layer.c). */
int qv_bench_layer(int argc, char **argv);

#endif
