/* bench.h — `qvlm bench SUB ...` benchmarks (spec CLI.md); each sub-benchmark is one file. */
#ifndef QV_BENCH_H
#define QV_BENCH_H

/* `qvlm bench layer`: one decoder layer at InternLM2-7B dimensions (bench_layer.c). */
int qv_bench_layer(int argc, char **argv);

#endif
