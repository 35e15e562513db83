/* prof.h — the monotonic wall clock every timing in qvlm reads (qv_now_s), and wall-time counters
 * of the search's parts for `qvlm bench search-layer` (where does a layer's time go: the GEMMs,
 * the candidates' fake quantization, the rest of the inspect module, the loss). Counters are
 * process-wide and added to from the thread that owns the run, outside parallel regions only; a
 * few clock reads per GEMM call, always on. */
#ifndef QV_PROF_H
#define QV_PROF_H

typedef enum qv_prof_slot {
    QV_PROF_GEMM,    /* qv_matmul and qv_fqgemm calls (oneDNN or the packed kernels) */
    QV_PROF_CAND,    /* the candidate weights of a grid point (fake quantization / prepare) */
    QV_PROF_INSPECT, /* the inspect module's forward, GEMMs included */
    QV_PROF_LOSS,    /* conversion of the output and the loss reduction */
    QV_PROF_COUNT
} qv_prof_slot;

/* Seconds on CLOCK_MONOTONIC. */
double qv_now_s(void);
void qv_prof_add(qv_prof_slot slot, double seconds);
double qv_prof_get(qv_prof_slot slot);
void qv_prof_reset(void);

#endif
