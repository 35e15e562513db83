/* comm.h — the few collective operations qvlm needs across processes (Open MPI when built with
 * -DQVLM_MPI=ON; a single process otherwise, where every call is a local no-op or copy).
 *
 * Determinism: nothing is reduced with MPI_SUM in whatever order the library picks. Values are
 * produced per calibration sample, every rank receives every sample's values (allgather, in rank
 * order = sample order, since ranks hold contiguous blocks of samples, qv_comm_shard), and the
 * sums are formed in sample order on every rank. A single process forms the same sums the same
 * way, so results are bit-identical for any number of ranks (issue: MPI data-parallel). */
#ifndef QV_CORE_COMM_H
#define QV_CORE_COMM_H

#include "common.h"

typedef struct qv_comm {
    int rank, size;
    double seconds;     /* time spent in collective calls (the communication share) */
} qv_comm;

/* MPI_Init when built with MPI (a binary started without mpirun is a world of one). */
qv_status qv_comm_init(int *argc, char ***argv);
void qv_comm_finalize(void);
qv_comm *qv_comm_world(void);
bool qv_comm_enabled(void); /* built with MPI */
/* Ends every rank of the job (after a failure on one rank): never returns. */
void qv_comm_abort(int code);

/* Samples [*b0, *b0 + *nb) of n for rank r of size: contiguous blocks in rank order, the first
 * n % size ranks one sample longer. */
void qv_comm_shard(int64_t n, int rank, int size, int64_t *b0, int64_t *nb);

/* all[(n_total) × width] ← every rank's local [n_local × width] rows in rank order (n_total = Σ
 * n_local over ranks, the same on every rank). */
qv_status qv_comm_allgather_rows(const double *local, int64_t n_local, int64_t width, double *all, int64_t n_total);
/* total[width] = Σ over all ranks' rows of local [n_local × width], rows summed in global order
 * (sample order), identical on every rank. */
qv_status qv_comm_sum_rows(const double *local, int64_t n_local, int64_t width, double *total);
/* Broadcasts bytes from rank 0. */
qv_status qv_comm_bcast(void *buf, size_t bytes);
/* Every rank's text must be the same (config, model): an error naming the first rank that differs. */
qv_status qv_comm_check_same(const char *what, const char *text);
qv_status qv_comm_barrier(void);

#endif
