/* options.c — option parsing and the error/usage conventions of the CLI (cli.h). */
#include "cli.h"
#include "core/budget.h"

#include <time.h>

#include "core/comm.h"

#include <errno.h>
#include <limits.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

qv_cli_common qv_cli;

static const qv_opt common_opts[] = {
    {"threads", 0, QV_OPT_INT, &qv_cli.threads, "N", "worker threads (default: all cores)"},
    {"quiet", 'q', QV_OPT_FLAG, &qv_cli.quiet, NULL, "no progress or log output on stderr"},
    {"max-memory", 0, QV_OPT_SIZE, &qv_cli.max_memory, "SIZE", "memory budget, e.g. 6G (long-running commands)"},
    {0},
};

int qv_cli_fail(void)
{
    const char *m = qv_last_error();
    const qv_comm *c = qv_comm_world();
    if (c->size > 1 && c->rank != 0) {
        /* In a data-parallel run every rank may meet the same bad input: rank 0 reports it and
         * ends the job; a rank that fails alone waits a moment, then names itself. */
        struct timespec ts = {0, 300 * 1000000L};
        nanosleep(&ts, NULL);
        fprintf(stderr, "qvlm: rank %d: %s\n", c->rank, *m ? m : "failed");
    } else {
        fprintf(stderr, "qvlm: %s\n", *m ? m : "failed");
    }
    fflush(stderr);
    return QV_EXIT_FAIL;
}

int qv_cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "qvlm%s%s: ", cmd ? " " : "", cmd ? cmd : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (try 'qvlm %s%s--help')\n", cmd ? cmd : "", cmd ? " " : "");
    return QV_EXIT_USAGE;
}

void qv_cli_log(const char *fmt, ...)
{
    if (qv_cli.quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

void qv_cli_apply_threads(void)
{
    if (qv_cli.threads > 0)
        omp_set_num_threads((int)qv_cli.threads);
}

static void print_opts(const qv_opt *o)
{
    for (; o && o->name; o++) {
        char left[64];
        if (o->short_name)
            snprintf(left, sizeof left, "-%c, --%s%s%s", o->short_name, o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        else
            snprintf(left, sizeof left, "    --%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        printf("  %-28s %s\n", left, o->help);
    }
}

static void print_help(const qv_cli_cmd *cmd)
{
    printf("usage: qvlm %s %s\n\n%s\n\noptions:\n", cmd->name, cmd->usage, cmd->summary);
    print_opts(cmd->opts);
    print_opts(common_opts);
    printf("  %-28s %s\n", "-h, --help", "this help");
}

static bool parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0)
        return false;
    double mul = 1;
    switch (*end) {
    case 'k': case 'K': mul = 1024.0; end++; break;
    case 'm': case 'M': mul = 1024.0 * 1024; end++; break;
    case 'g': case 'G': mul = 1024.0 * 1024 * 1024; end++; break;
    case 't': case 'T': mul = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end || v * mul > 1.8e19)
        return false;
    *out = (uint64_t)(v * mul);
    return true;
}

static const qv_opt *find_opt(const qv_opt *o, const char *name, size_t n, char short_name)
{
    for (; o && o->name; o++)
        if ((name && strlen(o->name) == n && strncmp(o->name, name, n) == 0) || (short_name && o->short_name == short_name))
            return o;
    return NULL;
}

static int set_opt(const char *cmd, const qv_opt *o, const char *val)
{
    char *end;
    switch (o->kind) {
    case QV_OPT_FLAG: *(bool *)o->dest = true; return -1;
    case QV_OPT_STR: *(const char **)o->dest = val; return -1;
    case QV_OPT_MULTI: {
        qv_cli_list *l = o->dest;
        if (l->n >= (int)QV_ARRAY_LEN(l->items))
            return qv_cli_usage_error(cmd, "--%s given too many times", o->name);
        l->items[l->n++] = val;
        return -1;
    }
    case QV_OPT_INT: {
        errno = 0;
        long long v = strtoll(val, &end, 10);
        if (errno || end == val || *end)
            return qv_cli_usage_error(cmd, "--%s expects an integer, got '%s'", o->name, val);
        *(int64_t *)o->dest = v;
        return -1;
    }
    case QV_OPT_DOUBLE: {
        errno = 0;
        double v = strtod(val, &end);
        if (errno || end == val || *end)
            return qv_cli_usage_error(cmd, "--%s expects a number, got '%s'", o->name, val);
        *(double *)o->dest = v;
        return -1;
    }
    case QV_OPT_SIZE:
        if (!parse_size(val, o->dest))
            return qv_cli_usage_error(cmd, "--%s expects a size such as 6G, got '%s'", o->name, val);
        return -1;
    }
    return -1;
}

int qv_cli_parse(const qv_cli_cmd *cmd, int argc, char **argv, const char **pos, int *n_pos)
{
    *n_pos = 0;
    bool only_pos = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!only_pos && strcmp(a, "--") == 0) {
            only_pos = true;
            continue;
        }
        if (!only_pos && a[0] == '-' && a[1] != 0 && !(a[1] >= '0' && a[1] <= '9')) {
            if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
                print_help(cmd);
                return QV_EXIT_OK;
            }
            const qv_opt *o;
            const char *val = NULL;
            if (a[1] == '-') {
                const char *name = a + 2, *eq = strchr(name, '=');
                size_t n = eq ? (size_t)(eq - name) : strlen(name);
                o = find_opt(cmd->opts, name, n, 0);
                if (!o)
                    o = find_opt(common_opts, name, n, 0);
                if (!o)
                    return qv_cli_usage_error(cmd->name, "unknown option '--%.*s'", (int)n, name);
                if (eq)
                    val = eq + 1;
            } else {
                if (a[2])
                    return qv_cli_usage_error(cmd->name, "unknown option '%s'", a);
                o = find_opt(cmd->opts, NULL, 0, a[1]);
                if (!o)
                    o = find_opt(common_opts, NULL, 0, a[1]);
                if (!o)
                    return qv_cli_usage_error(cmd->name, "unknown option '%s'", a);
            }
            if (o->kind == QV_OPT_FLAG) {
                if (val)
                    return qv_cli_usage_error(cmd->name, "--%s takes no value", o->name);
            } else if (!val) {
                if (i + 1 >= argc)
                    return qv_cli_usage_error(cmd->name, "--%s needs a value", o->name);
                val = argv[++i];
            }
            int r = set_opt(cmd->name, o, val);
            if (r >= 0)
                return r;
            continue;
        }
        if (*n_pos >= cmd->max_pos)
            return qv_cli_usage_error(cmd->name, "unexpected argument '%s'", a);
        pos[(*n_pos)++] = a;
    }
    if (*n_pos < cmd->min_pos)
        return qv_cli_usage_error(cmd->name, "missing argument (usage: qvlm %s %s)", cmd->name, cmd->usage);
    if (qv_cli.threads < 0 || qv_cli.threads > 4096)
        return qv_cli_usage_error(cmd->name, "--threads must be between 1 and 4096");
    qv_cli_apply_threads();
    qv_budget_set(qv_cli.max_memory);
    return -1;
}
