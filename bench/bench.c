/* bench.c — `qvlm bench SUB`: dispatch to the sub-benchmarks (bench.h). */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "cli/cli.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} subs[] = {
    {"layer", qv_bench_layer, "prefill tokens/s of one decoder layer at InternLM2-7B dimensions, vs its GEMMs alone"},
};

int qv_cmd_bench(int argc, char **argv)
{
    if (argc >= 1)
        for (size_t i = 0; i < QV_ARRAY_LEN(subs); i++)
            if (!strcmp(argv[0], subs[i].name))
                return subs[i].run(argc - 1, argv + 1);
    if (argc >= 1 && (!strcmp(argv[0], "-h") || !strcmp(argv[0], "--help"))) {
        printf("usage: qvlm bench SUB [OPTIONS]\n\n");
        for (size_t i = 0; i < QV_ARRAY_LEN(subs); i++)
            printf("  %-8s %s\n", subs[i].name, subs[i].summary);
        return QV_EXIT_OK;
    }
    return qv_cli_usage_error("bench", "expected a benchmark name (layer)");
}
