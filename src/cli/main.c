/* main.c — `qvlm`: subcommand dispatch (spec/CLI.md). Each command lives in its own file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/comm.h"
#include "simd.h"

typedef struct cmd_entry {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} cmd_entry;

static const cmd_entry commands[] = {
    {"inspect", qv_cmd_inspect, "architecture, parts, parameter counts, dtypes and shards of a model"},
    {"tokenize", qv_cmd_tokenize, "token ids of a text (--chat: in the model's chat template)"},
    {"preprocess", qv_cmd_preprocess, "the model's image preprocessing of one image (pixel_values, tiles)"},
    {"calib", qv_cmd_calib, "the calibration batch a run config describes (ids, labels, masks, pixels, prompts)"},
    {"quantize", qv_cmd_quantize, "calibration, search, evaluation and export of a YAML run configuration"},
    {"forward", qv_cmd_forward, "forward of the model on a batch (images through the vision tower): loss, NLL, logits"},
    {"eval", qv_cmd_eval, "quality of quantized models vs full precision: caption NLL, accuracy, KL, vision reliance; ppl"},
    {"export", qv_cmd_export, "write a quantized checkpoint (fake, awq, gptq, compressed-tensors, fp8) or MBQ's .pt"},
    {"verify", qv_cmd_verify, "unpack a quantized checkpoint and compare it with the fake-quantized weights"},
    {"bench", qv_cmd_bench, "benchmarks: kernels (SIMD vs memcpy and scalar), vit (InternViT-300M tiles/s), layer (decoder layer)"},
    {"synth", qv_cmd_synth, "a random-weight checkpoint with the real names, shapes and config of a model"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: qvlm [--print-isa] [--version] COMMAND [ARGS] [--threads N] [--quiet]\n\ncommands:\n");
    for (size_t i = 0; i < QV_ARRAY_LEN(commands); i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'qvlm COMMAND --help' describes a command. Set QVLM_ISA=scalar|avx2|avx512|amx to pin the kernels.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return QV_EXIT_USAGE;
    }
    const char *c = argv[1];
    if (!strcmp(c, "-h") || !strcmp(c, "--help") || !strcmp(c, "help")) {
        usage(stdout);
        return QV_EXIT_OK;
    }
    if (!strcmp(c, "--version")) {
        printf("qvlm %d.%d.%d\n", QVLM_VERSION_MAJOR, QVLM_VERSION_MINOR, QVLM_VERSION_PATCH);
        return QV_EXIT_OK;
    }
    if (!strcmp(c, "--print-isa")) {
        printf("%s (%s)\n", qv_isa_name(), qv_kernels()->desc);
        return QV_EXIT_OK;
    }
    for (size_t i = 0; i < QV_ARRAY_LEN(commands); i++)
        if (!strcmp(c, commands[i].name)) {
            /* MPI builds: every command runs in an MPI world (of one without mpirun); a failure on
             * any rank ends the whole job, so no rank is left waiting in a collective */
            if (qv_comm_init(&argc, &argv) != QV_OK)
                return qv_cli_fail();
            int rc = commands[i].run(argc - 2, argv + 2);
            if (rc != QV_EXIT_OK && qv_comm_world()->size > 1)
                qv_comm_abort(rc);
            qv_comm_finalize();
            return rc;
        }
    return qv_cli_usage_error(NULL, "unknown command '%s'", c);
}
