/* cli.h — shared pieces of the qvlm command line (spec/CLI.md): option parsing, the one-line
 * error convention, and the command table. Only code under src/cli prints or exits. */
#ifndef QV_CLI_H
#define QV_CLI_H

#include <stdbool.h>
#include <stdint.h>

#include "core/common.h"

/* Exit codes (CLI.md): 0 success, 1 bad input or failed run, 2 usage error. */
enum { QV_EXIT_OK = 0, QV_EXIT_FAIL = 1, QV_EXIT_USAGE = 2 };

typedef enum qv_opt_kind {
    QV_OPT_FLAG,   /* bool */
    QV_OPT_STR,    /* const char * */
    QV_OPT_INT,    /* int64_t */
    QV_OPT_DOUBLE, /* double */
    QV_OPT_SIZE,   /* uint64_t bytes, "6G", "512M", "1024" */
    QV_OPT_MULTI   /* qv_cli_list: may be given several times */
} qv_opt_kind;

typedef struct qv_cli_list {
    const char *items[64];
    int n;
} qv_cli_list;

typedef struct qv_opt {
    const char *name; /* long name without dashes ("threads") */
    char short_name;  /* 0 when none */
    qv_opt_kind kind;
    void *dest;
    const char *arg;  /* argument name in help, e.g. "N" */
    const char *help;
} qv_opt;

/* Options every command accepts. */
typedef struct qv_cli_common {
    int64_t threads;   /* 0 = all cores */
    bool quiet;
    uint64_t max_memory; /* 0 = no limit */
} qv_cli_common;
extern qv_cli_common qv_cli;

typedef struct qv_cli_cmd {
    const char *name;
    const char *usage;   /* "MODEL [--json]" */
    const char *summary;
    const qv_opt *opts;  /* terminated by {0} */
    int min_pos, max_pos;
} qv_cli_cmd;

/* Parses argv (after the command name) against cmd->opts plus the common options; fills pos.
 * Returns -1 to continue, or an exit code (help printed: 0; usage error printed: 2). */
int qv_cli_parse(const qv_cli_cmd *cmd, int argc, char **argv, const char **pos, int *n_pos);
/* Prints "qvlm: <last error>" and returns 1. */
int qv_cli_fail(void);
/* Prints "qvlm <cmd>: <message>" and a hint, returns 2. */
int qv_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Applies --threads to OpenMP and oneDNN. */
void qv_cli_apply_threads(void);
/* Log line on stderr unless --quiet. */
void qv_cli_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Command entry points (one file each under src/cli; bench commands under bench/). */
int qv_cmd_inspect(int argc, char **argv);
int qv_cmd_tokenize(int argc, char **argv);
int qv_cmd_preprocess(int argc, char **argv);
int qv_cmd_calib(int argc, char **argv);
int qv_cmd_forward(int argc, char **argv);
int qv_cmd_quantize(int argc, char **argv);
int qv_cmd_eval(int argc, char **argv);
int qv_cmd_export(int argc, char **argv);
int qv_cmd_verify(int argc, char **argv);
int qv_cmd_bench(int argc, char **argv);
int qv_cmd_synth(int argc, char **argv);
int qv_cmd_bench(int argc, char **argv); /* bench/bench.c */

#endif
