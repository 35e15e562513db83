/* comm.c — see comm.h. */
#include "comm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef QVLM_HAVE_MPI
#include <mpi.h>
#endif

#include "prof.h"
#include "strmap.h"

static qv_comm g_comm = {0, 1, 0.0};

qv_comm *qv_comm_world(void) { return &g_comm; }

#ifdef QVLM_HAVE_MPI

bool qv_comm_enabled(void) { return true; }

#define MPI_TRY(call)                                                                            \
    do {                                                                                         \
        int rc_ = (call);                                                                        \
        if (rc_ != MPI_SUCCESS)                                                                  \
            return qv_fail(QV_ERR_IO, "rank %d: MPI: %s failed (%d)", g_comm.rank, #call, rc_); \
    } while (0)

qv_status qv_comm_init(int *argc, char ***argv)
{
    int provided;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return qv_fail(QV_ERR_IO, "MPI: MPI_Init failed");
    MPI_Comm_rank(MPI_COMM_WORLD, &g_comm.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_comm.size);
    /* errors come back as codes so that a rank can name itself before the job ends */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    return QV_OK;
}

void qv_comm_finalize(void) { MPI_Finalize(); }

void qv_comm_abort(int code)
{
    MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

qv_status qv_comm_allgather_rows(const double *local, int64_t n_local, int64_t width, double *all, int64_t n_total)
{
    const int P = g_comm.size;
    double t0 = qv_now_s();
    int64_t cnt = n_local * width;
    int64_t *counts64 = qv_malloc((size_t)P * sizeof *counts64, "MPI counts");
    int *counts = qv_malloc((size_t)P * sizeof *counts, "MPI counts"), *displs = qv_malloc((size_t)P * sizeof *displs, "MPI counts");
    qv_status st = counts64 && counts && displs ? QV_OK : QV_ERR_NOMEM;
    if (st == QV_OK && MPI_Allgather(&cnt, 1, MPI_INT64_T, counts64, 1, MPI_INT64_T, MPI_COMM_WORLD) != MPI_SUCCESS)
        st = qv_fail(QV_ERR_IO, "rank %d: MPI_Allgather failed", g_comm.rank);
    int64_t off = 0;
    for (int r = 0; st == QV_OK && r < P; r++) {
        if (counts64[r] > INT32_MAX || off > INT32_MAX)
            st = qv_fail(QV_ERR_INVALID, "rank %d: a gather of more than 2^31 values", g_comm.rank);
        counts[r] = (int)counts64[r];
        displs[r] = (int)off;
        off += counts64[r];
    }
    if (st == QV_OK && off != n_total * width)
        st = qv_fail(QV_ERR_INTERNAL, "rank %d: gathered %lld values, expected %lld", g_comm.rank, (long long)off,
                     (long long)(n_total * width));
    if (st == QV_OK && MPI_Allgatherv(local, (int)cnt, MPI_DOUBLE, all, counts, displs, MPI_DOUBLE, MPI_COMM_WORLD) != MPI_SUCCESS)
        st = qv_fail(QV_ERR_IO, "rank %d: MPI_Allgatherv failed", g_comm.rank);
    qv_free(counts64);
    qv_free(counts);
    qv_free(displs);
    g_comm.seconds += qv_now_s() - t0;
    return st;
}

qv_status qv_comm_bcast(void *buf, size_t bytes)
{
    double t0 = qv_now_s();
    char *p = buf;
    while (bytes) {
        int n = bytes > (size_t)1 << 30 ? 1 << 30 : (int)bytes;
        MPI_TRY(MPI_Bcast(p, n, MPI_BYTE, 0, MPI_COMM_WORLD));
        p += n;
        bytes -= (size_t)n;
    }
    g_comm.seconds += qv_now_s() - t0;
    return QV_OK;
}

qv_status qv_comm_barrier(void)
{
    double t0 = qv_now_s();
    MPI_TRY(MPI_Barrier(MPI_COMM_WORLD));
    g_comm.seconds += qv_now_s() - t0;
    return QV_OK;
}

qv_status qv_comm_check_same(const char *what, const char *text)
{
    const int P = g_comm.size;
    uint64_t h = qv_hash_bytes(text, strlen(text));
    uint64_t *all = qv_malloc((size_t)P * sizeof *all, "MPI hashes");
    if (!all)
        return QV_ERR_NOMEM;
    if (MPI_Allgather(&h, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD) != MPI_SUCCESS) {
        qv_free(all);
        return qv_fail(QV_ERR_IO, "rank %d: MPI_Allgather failed", g_comm.rank);
    }
    qv_status st = QV_OK;
    for (int r = 1; r < P; r++)
        if (all[r] != all[0]) {
            st = qv_fail(QV_ERR_INVALID, "rank %d sees a different %s than rank 0", r, what);
            break;
        }
    qv_free(all);
    return st;
}

#else /* a single process */

bool qv_comm_enabled(void) { return false; }
qv_status qv_comm_init(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return QV_OK;
}
void qv_comm_finalize(void) {}
void qv_comm_abort(int code) { exit(code); }

qv_status qv_comm_allgather_rows(const double *local, int64_t n_local, int64_t width, double *all, int64_t n_total)
{
    if (n_local != n_total)
        return qv_fail(QV_ERR_INTERNAL, "gather of %lld rows into %lld", (long long)n_local, (long long)n_total);
    memcpy(all, local, (size_t)(n_local * width) * sizeof *all);
    return QV_OK;
}

qv_status qv_comm_bcast(void *buf, size_t bytes)
{
    (void)buf;
    (void)bytes;
    return QV_OK;
}

qv_status qv_comm_barrier(void) { return QV_OK; }

qv_status qv_comm_check_same(const char *what, const char *text)
{
    (void)what;
    (void)text;
    return QV_OK;
}

#endif

void qv_comm_shard(int64_t n, int rank, int size, int64_t *b0, int64_t *nb)
{
    int64_t base = n / size, extra = n % size;
    *nb = base + (rank < extra ? 1 : 0);
    *b0 = rank * base + (rank < extra ? rank : extra);
}

qv_status qv_comm_sum_rows(const double *local, int64_t n_local, int64_t width, double *total)
{
    int64_t n_total = n_local;
    const double *rows = local;
    double *all = NULL;
    if (g_comm.size > 1) {
#ifdef QVLM_HAVE_MPI
        double t0 = qv_now_s();
        if (MPI_Allreduce(&n_local, &n_total, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
            return qv_fail(QV_ERR_IO, "rank %d: MPI_Allreduce failed", g_comm.rank);
        g_comm.seconds += qv_now_s() - t0;
#endif
        all = qv_malloc((size_t)(n_total * width) * sizeof *all + 8, "gathered rows");
        if (!all)
            return QV_ERR_NOMEM;
        qv_status st = qv_comm_allgather_rows(local, n_local, width, all, n_total);
        if (st != QV_OK) {
            qv_free(all);
            return st;
        }
        rows = all;
    }
    for (int64_t j = 0; j < width; j++)
        total[j] = 0;
    for (int64_t i = 0; i < n_total; i++)
        for (int64_t j = 0; j < width; j++)
            total[j] += rows[i * width + j];
    qv_free(all);
    return QV_OK;
}
