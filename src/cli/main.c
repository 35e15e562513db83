/* main.c — `qvlm`: subcommand dispatch (spec/CLI.md). Each command lives in its own file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

typedef struct cmd_entry {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} cmd_entry;

static const cmd_entry commands[] = {
    {"inspect", qv_cmd_inspect, "architecture, parts, parameter counts, dtypes and shards of a model"},
    {"tokenize", qv_cmd_tokenize, "token ids of a text (--chat: in the model's chat template)"},
    {"preprocess", qv_cmd_preprocess, "the model's image preprocessing of one image (pixel_values, tiles)"},
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
        printf("%s\n", qv_isa_name());
        return QV_EXIT_OK;
    }
    for (size_t i = 0; i < QV_ARRAY_LEN(commands); i++)
        if (!strcmp(c, commands[i].name))
            return commands[i].run(argc - 2, argv + 2);
    return qv_cli_usage_error(NULL, "unknown command '%s'", c);
}
