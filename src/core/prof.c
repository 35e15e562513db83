/* prof.c — the counters of prof.h. */
#include "prof.h"

#include <omp.h>
#include <time.h>

static double g_prof[QV_PROF_COUNT];

double qv_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void qv_prof_add(qv_prof_slot slot, double seconds)
{
    if (!omp_in_parallel() && slot >= 0 && slot < QV_PROF_COUNT)
        g_prof[slot] += seconds;
}

double qv_prof_get(qv_prof_slot slot) { return slot >= 0 && slot < QV_PROF_COUNT ? g_prof[slot] : 0.0; }

void qv_prof_reset(void)
{
    for (int i = 0; i < QV_PROF_COUNT; i++)
        g_prof[i] = 0;
}
