/* matmul.c — oneDNN matmul with a shape-keyed primitive cache and per-thread scratchpads
 * (matmul.h). oneDNN calls go through DNNL_TRY, which records the call text, file:line and
 * status as the error and returns (STYLE.md "Errors"; oneDNN's example_utils.h without exit). */
#include "matmul.h"

#include "../core/prof.h"

#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../simd/fp.h"

#define DNNL_TRY(call)                                                                                  \
    do {                                                                                                \
        dnnl_status_t s_ = (call);                                                                      \
        if (s_ != dnnl_success)                                                                         \
            return qv_fail(s_ == dnnl_out_of_memory ? QV_ERR_NOMEM : QV_ERR_INTERNAL,                   \
                           "oneDNN: %s failed at %s:%d (status %d)", #call, __FILE__, __LINE__, (int)s_); \
    } while (0)

typedef struct mm_key {
    int64_t M, N, K, lda, ldb, ldc;
    int dt;
    unsigned flags;
    bool bias;
} mm_key;

typedef struct mm_entry {
    mm_key key;
    dnnl_primitive_t prim;
    dnnl_memory_desc_t a_md, b_md, c_md, bias_md, sp_md;
    size_t scratch_bytes;
    struct mm_entry *next;
} mm_entry;

#define MM_BUCKETS 256

static struct {
    pthread_once_t once;
    pthread_mutex_t lock;
    dnnl_engine_t engine;
    dnnl_status_t init_status;
    mm_entry *buckets[MM_BUCKETS];
} g_mm = {PTHREAD_ONCE_INIT, PTHREAD_MUTEX_INITIALIZER, NULL, dnnl_success, {0}};

static _Thread_local dnnl_stream_t tl_stream;
static _Thread_local void *tl_scratch;
static _Thread_local size_t tl_scratch_cap;

static void mm_init(void)
{
    g_mm.init_status = dnnl_engine_create(&g_mm.engine, dnnl_cpu, 0);
}

static qv_status engine(dnnl_engine_t *e)
{
    pthread_once(&g_mm.once, mm_init);
    if (g_mm.init_status != dnnl_success)
        return qv_fail(QV_ERR_INTERNAL, "oneDNN: cannot create the CPU engine (status %d)", (int)g_mm.init_status);
    *e = g_mm.engine;
    return QV_OK;
}

static unsigned key_hash(const mm_key *k)
{
    uint64_t h = 1469598103934665603ull;
    const int64_t v[] = {k->M, k->N, k->K, k->lda, k->ldb, k->ldc, k->dt, (int64_t)k->flags, k->bias};
    for (size_t i = 0; i < QV_ARRAY_LEN(v); i++) {
        h ^= (uint64_t)v[i];
        h *= 1099511628211ull;
    }
    return (unsigned)(h ^ (h >> 29)) % MM_BUCKETS;
}

static bool key_eq(const mm_key *a, const mm_key *b)
{
    return a->M == b->M && a->N == b->N && a->K == b->K && a->lda == b->lda && a->ldb == b->ldb && a->ldc == b->ldc &&
           a->dt == b->dt && a->flags == b->flags && a->bias == b->bias;
}

static qv_status create_entry(const mm_key *k, mm_entry **out)
{
    dnnl_engine_t eng = NULL;
    QV_TRY(engine(&eng));
    mm_entry *e = qv_calloc(1, sizeof *e, "matmul primitive");
    if (!e)
        return QV_ERR_NOMEM;
    e->key = *k;
    dnnl_data_type_t dt = k->dt == QV_BF16 ? dnnl_bf16 : dnnl_f32;
    dnnl_dims_t ad = {k->M, k->K}, as = {k->lda, 1};
    dnnl_dims_t bd = {k->K, k->N}, bs_kn = {k->ldb, 1}, bs_nk = {1, k->ldb};
    dnnl_dims_t cd = {k->M, k->N}, cs = {k->ldc, 1};
    dnnl_dims_t biasd = {1, k->N}, biass = {k->N, 1};
    qv_status st = QV_OK;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t po = NULL;
    dnnl_primitive_desc_t pd = NULL;
#define E_TRY(call)                                                                                           \
    do {                                                                                                      \
        dnnl_status_t s_ = (call);                                                                            \
        if (s_ != dnnl_success) {                                                                             \
            st = qv_fail(s_ == dnnl_out_of_memory ? QV_ERR_NOMEM : QV_ERR_INTERNAL,                          \
                         "oneDNN: %s failed for matmul %lldx%lldx%lld (status %d)", #call, (long long)k->M,   \
                         (long long)k->N, (long long)k->K, (int)s_);                                          \
            goto done;                                                                                        \
        }                                                                                                     \
    } while (0)
    E_TRY(dnnl_memory_desc_init_by_strides(&e->a_md, 2, ad, dt, as));
    E_TRY(dnnl_memory_desc_init_by_strides(&e->b_md, 2, bd, dt, (k->flags & QV_MM_B_NK) ? bs_nk : bs_kn));
    E_TRY(dnnl_memory_desc_init_by_strides(&e->c_md, 2, cd, dnnl_f32, cs));
    if (k->bias)
        E_TRY(dnnl_memory_desc_init_by_strides(&e->bias_md, 2, biasd, dnnl_f32, biass));
    dnnl_matmul_desc_t desc;
    E_TRY(dnnl_matmul_desc_init(&desc, &e->a_md, &e->b_md, k->bias ? &e->bias_md : NULL, &e->c_md));
    E_TRY(dnnl_primitive_attr_create(&attr));
    E_TRY(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    if (k->flags & QV_MM_ACCUMULATE) {
        E_TRY(dnnl_post_ops_create(&po));
        E_TRY(dnnl_post_ops_append_sum(po, 1.0f));
        E_TRY(dnnl_primitive_attr_set_post_ops(attr, po));
    }
    E_TRY(dnnl_primitive_desc_create(&pd, &desc, attr, eng, NULL));
    {
        const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        if (sp) {
            e->sp_md = *sp;
            e->scratch_bytes = dnnl_memory_desc_get_size(sp);
        }
    }
    E_TRY(dnnl_primitive_create(&e->prim, pd));
#undef E_TRY
done:
    if (pd)
        dnnl_primitive_desc_destroy(pd);
    if (po)
        dnnl_post_ops_destroy(po);
    if (attr)
        dnnl_primitive_attr_destroy(attr);
    if (st != QV_OK) {
        qv_free(e);
        return st;
    }
    *out = e;
    return QV_OK;
}

static qv_status get_entry(const mm_key *k, mm_entry **out)
{
    unsigned h = key_hash(k);
    pthread_mutex_lock(&g_mm.lock);
    for (mm_entry *e = g_mm.buckets[h]; e; e = e->next)
        if (key_eq(&e->key, k)) {
            pthread_mutex_unlock(&g_mm.lock);
            *out = e;
            return QV_OK;
        }
    pthread_mutex_unlock(&g_mm.lock);
    mm_entry *e;
    QV_TRY(create_entry(k, &e));
    pthread_mutex_lock(&g_mm.lock);
    e->next = g_mm.buckets[h];
    g_mm.buckets[h] = e;
    pthread_mutex_unlock(&g_mm.lock);
    *out = e;
    return QV_OK;
}

static qv_status thread_stream(dnnl_stream_t *s)
{
    if (!tl_stream) {
        dnnl_engine_t eng = NULL;
        QV_TRY(engine(&eng));
        DNNL_TRY(dnnl_stream_create(&tl_stream, eng, dnnl_stream_default_flags));
    }
    *s = tl_stream;
    return QV_OK;
}

static qv_status thread_scratch(size_t n, void **p)
{
    if (n > tl_scratch_cap) {
        free(tl_scratch);
        tl_scratch = qv_aligned_alloc(64, n, "oneDNN scratchpad");
        tl_scratch_cap = tl_scratch ? n : 0;
        if (!tl_scratch)
            return QV_ERR_NOMEM;
    }
    *p = tl_scratch;
    return QV_OK;
}

/* One oneDNN call on a tile; run with the calling task's OpenMP thread count set to 1, so the
 * primitive is created and executed single-threaded. */
static qv_status matmul_tile(qv_dtype dt, int64_t M, int64_t N, int64_t K, const void *a, int64_t lda, const void *b,
                             int64_t ldb, const float *bias, float *c, int64_t ldc, unsigned flags)
{
    mm_key k = {M, N, K, lda, ldb, ldc, (int)dt, flags & (QV_MM_B_NK | QV_MM_ACCUMULATE), bias != NULL};
    mm_entry *e;
    QV_TRY(get_entry(&k, &e));
    dnnl_engine_t eng = NULL;
    dnnl_stream_t s = NULL;
    void *scratch = NULL;
    QV_TRY(engine(&eng));
    QV_TRY(thread_stream(&s));
    if (e->scratch_bytes)
        QV_TRY(thread_scratch(e->scratch_bytes, &scratch));
    dnnl_memory_t ma = NULL, mb = NULL, mc = NULL, mbias = NULL, msp = NULL;
    qv_status st = QV_OK;
    dnnl_exec_arg_t args[5];
    int nargs = 0;
#define M_TRY(call)                                                                                     \
    do {                                                                                                \
        dnnl_status_t s_ = (call);                                                                      \
        if (s_ != dnnl_success) {                                                                       \
            st = qv_fail(QV_ERR_INTERNAL, "oneDNN: %s failed (status %d)", #call, (int)s_);             \
            goto done;                                                                                  \
        }                                                                                               \
    } while (0)
    M_TRY(dnnl_memory_create(&ma, &e->a_md, eng, (void *)a));
    M_TRY(dnnl_memory_create(&mb, &e->b_md, eng, (void *)b));
    M_TRY(dnnl_memory_create(&mc, &e->c_md, eng, c));
    args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, ma};
    args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, mb};
    args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_DST, mc};
    if (bias) {
        M_TRY(dnnl_memory_create(&mbias, &e->bias_md, eng, (void *)bias));
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, mbias};
    }
    if (e->scratch_bytes) {
        M_TRY(dnnl_memory_create(&msp, &e->sp_md, eng, scratch));
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, msp};
    }
    M_TRY(dnnl_primitive_execute(e->prim, s, nargs, args));
    M_TRY(dnnl_stream_wait(s));
#undef M_TRY
done:
    if (ma)
        dnnl_memory_destroy(ma);
    if (mb)
        dnnl_memory_destroy(mb);
    if (mc)
        dnnl_memory_destroy(mc);
    if (mbias)
        dnnl_memory_destroy(mbias);
    if (msp)
        dnnl_memory_destroy(msp);
    return st;
}

/* Tiles of C computed by one thread each. Fixed sizes, independent of the thread count, so every
 * output element is always produced by the same single-threaded primitive with the same K order:
 * results are bit-identical for any --threads (oneDNN itself may split K across threads). */
#define MM_TILE_M 128
#define MM_TILE_N 512

qv_status qv_matmul(qv_dtype dt, int64_t M, int64_t N, int64_t K, const void *a, int64_t lda, const void *b,
                    int64_t ldb, const float *bias, float *c, int64_t ldc, unsigned flags)
{
    if (dt != QV_F32 && dt != QV_BF16)
        return qv_fail(QV_ERR_INTERNAL, "matmul: dtype %s not supported (F32, BF16)", qv_dtype_name(dt));
    if (dt == QV_BF16 && !qv_matmul_bf16_native())
        return qv_fail(QV_ERR_UNSUPPORTED, "matmul: BF16 needs a CPU with AVX512-BF16 or AMX (oneDNN ISA %s)",
                       qv_matmul_isa_name());
    if (M <= 0 || N <= 0)
        return QV_OK;
    if (K <= 0) { /* empty reduction: C = bias (or unchanged when accumulating) */
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++)
                c[i * ldc + j] = ((flags & QV_MM_ACCUMULATE) ? c[i * ldc + j] : 0.0f) + (bias ? bias[j] : 0.0f);
        return QV_OK;
    }
    const size_t es = qv_dtype_size(dt);
    const int64_t tm = (M + MM_TILE_M - 1) / MM_TILE_M, tn = (N + MM_TILE_N - 1) / MM_TILE_N, nt = tm * tn;
    const int nthr = omp_in_parallel() ? 1 : omp_get_max_threads();
    const double t0 = qv_now_s();
    qv_par_error err = {0};
#pragma omp parallel num_threads(nthr) if (nthr > 1 && nt > 1)
    {
        const int saved = omp_get_max_threads();
        if (saved != 1)
            omp_set_num_threads(1);
#pragma omp for schedule(dynamic)
        for (int64_t t = 0; t < nt; t++) {
            const int64_t i0 = (t / tn) * MM_TILE_M, j0 = (t % tn) * MM_TILE_N;
            const int64_t mi = QV_MIN((int64_t)MM_TILE_M, M - i0), nj = QV_MIN((int64_t)MM_TILE_N, N - j0);
            const char *bt = (flags & QV_MM_B_NK) ? (const char *)b + (size_t)(j0 * ldb) * es : (const char *)b + (size_t)j0 * es;
            qv_status st = matmul_tile(dt, mi, nj, K, (const char *)a + (size_t)(i0 * lda) * es, lda, bt, ldb,
                                       bias ? bias + j0 : NULL, c + i0 * ldc + j0, ldc, flags);
            if (st != QV_OK)
                qv_par_error_set(&err, st);
        }
        if (saved != 1)
            omp_set_num_threads(saved);
    }
    qv_prof_add(QV_PROF_GEMM, qv_now_s() - t0);
    return qv_par_error_status(&err);
}

bool qv_matmul_bf16_native(void)
{
    dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    return isa == dnnl_cpu_isa_avx512_core_bf16 || isa == dnnl_cpu_isa_avx512_core_amx;
}

const char *qv_matmul_isa_name(void)
{
    switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx512_mic: return "avx512_mic";
    case dnnl_cpu_isa_avx512_mic_4ops: return "avx512_mic_4ops";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    default: return "other";
    }
}

static float load(qv_dtype dt, const void *p, int64_t i)
{
    if (dt == QV_BF16) {
        uint16_t h;
        memcpy(&h, (const uint16_t *)p + i, 2);
        return qv_bf16_to_f32(h);
    }
    float f;
    memcpy(&f, (const float *)p + i, 4);
    return f;
}

void qv_matmul_ref(qv_dtype dt, int64_t M, int64_t N, int64_t K, const void *a, int64_t lda, const void *b,
                   int64_t ldb, const float *bias, float *c, int64_t ldc, unsigned flags)
{
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0;
            for (int64_t p = 0; p < K; p++) {
                float bv = (flags & QV_MM_B_NK) ? load(dt, b, j * ldb + p) : load(dt, b, p * ldb + j);
                acc += (double)load(dt, a, i * lda + p) * bv;
            }
            if (bias)
                acc += bias[j];
            if (flags & QV_MM_ACCUMULATE)
                acc += c[i * ldc + j];
            c[i * ldc + j] = (float)acc;
        }
}
