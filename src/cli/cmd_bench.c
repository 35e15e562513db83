/* cmd_bench.c — `qvlm bench NAME [ARGS]`: runs one of the benchmarks of bench/ (spec/CLI.md,
 * `qvlm bench kernels`). The first argument names the benchmark; the rest are its own. */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "cli.h"

typedef struct bench_entry {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} bench_entry;

static const bench_entry benches[] = {
    {"vit", qv_bench_vit, "InternViT-300M forward tiles/s at its real dimensions (random weights)"},
    {"kernels", qv_bench_kernels, "SIMD kernels vs memcpy bandwidth and vs their scalar reference"},
    {"layer", qv_bench_layer, "prefill tokens/s of one decoder layer at InternLM2-7B dimensions, vs its GEMMs alone"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: qvlm bench NAME [ARGS]\n\nbenchmarks:\n");
    for (size_t i = 0; i < QV_ARRAY_LEN(benches); i++)
        fprintf(f, "  %-10s %s\n", benches[i].name, benches[i].summary);
    fprintf(f, "\n'qvlm bench NAME --help' describes one.\n");
}

int qv_cmd_bench(int argc, char **argv)
{
    if (argc < 1) {
        usage(stderr);
        return QV_EXIT_USAGE;
    }
    if (!strcmp(argv[0], "-h") || !strcmp(argv[0], "--help")) {
        usage(stdout);
        return QV_EXIT_OK;
    }
    for (size_t i = 0; i < QV_ARRAY_LEN(benches); i++)
        if (!strcmp(argv[0], benches[i].name))
            return benches[i].run(argc - 1, argv + 1);
    return qv_cli_usage_error("bench", "unknown benchmark '%s'", argv[0]);
}
