/* budget.h — the process's memory budget, `--max-memory SIZE` (spec/CLI.md: "work is chunked
 * to fit, or the command refuses up front with the size it would need").
 *
 * Each step that holds memory in proportion to its input (a decoded image, a stack of tiles,
 * later activations and layer copies) estimates its need before it allocates and asks
 * qv_budget_check, which refuses with the size; steps that can work in chunks size their
 * chunks from qv_budget(). The budget is one number for the process, set by the CLI before any
 * work starts and only read afterwards, so worker threads may read it freely. It counts what
 * qvlm allocates for its data, not the page cache of memory-mapped checkpoints. */
#ifndef QV_BUDGET_H
#define QV_BUDGET_H

#include "common.h"

/* 0 = no budget (the default). */
void qv_budget_set(uint64_t bytes);
uint64_t qv_budget(void);

/* QV_OK when `need` bytes fit the budget (always without one); otherwise QV_ERR_NOMEM with
 * "<what>: <step> needs 1.5 GiB, more than the --max-memory budget of 1.0 GiB". */
qv_status qv_budget_check(uint64_t need, const char *what, const char *step);

/* "1.5 GiB", "512.0 MiB", "300 bytes" into buf. */
const char *qv_format_bytes(char *buf, size_t n, uint64_t bytes);

#endif
