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

/* `qvlm bench amx-peak [--seconds S] [--json]`: the register-only AMX TDPBF16PS ceiling. */
int qv_bench_amx_peak(int argc, char **argv);
/* The all-thread figure of amx-peak for `threads` threads, about `seconds` per run (0 without AMX),
 * for the other benches to state their TFLOPS as a fraction of it. */
double qv_bench_amx_peak_tflops(int threads, double seconds);
/* `qvlm bench fqgemm [...]`: the packed GEMM (src/nn/fqgemm.h) vs oneDNN and the AMX ceiling. */
int qv_bench_fqgemm(int argc, char **argv);
/* `qvlm bench search-layer [...]`: one decoder layer's MBQ scale search at real dimensions. */
int qv_bench_search_layer(int argc, char **argv);

#endif
