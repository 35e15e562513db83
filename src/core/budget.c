/* budget.c — the process's memory budget (budget.h). */
#include "budget.h"

#include <stdio.h>

static uint64_t g_budget; /* written once by the CLI before any work, read-only afterwards */

void qv_budget_set(uint64_t bytes) { g_budget = bytes; }

uint64_t qv_budget(void) { return g_budget; }

const char *qv_format_bytes(char *buf, size_t n, uint64_t bytes)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (bytes < 1024) {
        snprintf(buf, n, "%llu bytes", (unsigned long long)bytes);
        return buf;
    }
    double v = (double)bytes / 1024;
    int u = 0;
    while (v >= 1024 && u + 1 < (int)QV_ARRAY_LEN(units)) {
        v /= 1024;
        u++;
    }
    snprintf(buf, n, "%.1f %s", v, units[u]);
    return buf;
}

qv_status qv_budget_check(uint64_t need, const char *what, const char *step)
{
    if (!g_budget || need <= g_budget)
        return QV_OK;
    char a[32], b[32];
    return qv_fail(QV_ERR_NOMEM, "%s: %s needs %s, more than the --max-memory budget of %s", what, step,
                   qv_format_bytes(a, sizeof a, need), qv_format_bytes(b, sizeof b, g_budget));
}
