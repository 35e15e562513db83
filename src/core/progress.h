/* progress.h — progress reporting for long runs (spec CLI.md: a bar with ETA when the sink is a
 * TTY, one line per step otherwise, nothing with --quiet).
 *
 * Library code never prints on its own: long-running functions take a qv_progress * (NULL =
 * silent) that the CLI created with its sink (stderr, or NULL for --quiet) and only call
 * qv_progress_step on it. Not thread-safe: step from the thread that owns the run. */
#ifndef QV_PROGRESS_H
#define QV_PROGRESS_H

#include <stdio.h>

#include "common.h"

typedef struct qv_progress {
    FILE *out;          /* NULL = silent */
    char label[48];
    int64_t total, done;
    bool tty;
    double t0, last_draw;
    int last_len;
} qv_progress;

/* total = number of steps (0 = unknown). out NULL = silent. */
void qv_progress_init(qv_progress *p, FILE *out, const char *label, int64_t total);
/* Advances by n steps; `what` (may be NULL) names the step in line mode ("layer 3"). p may be NULL. */
void qv_progress_step(qv_progress *p, int64_t n, const char *what);
/* Ends the bar (newline on a TTY). p may be NULL. */
void qv_progress_finish(qv_progress *p);
/* Formats seconds as "1:02:03" or "2:03" into buf. */
const char *qv_progress_fmt_time(double s, char *buf, size_t n);

#endif
