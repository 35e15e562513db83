/* dispatch.c — the kernel tables (one per ISA, filled with the variants of kernel_impl.h), the
 * choice of the active one (once, from qv_isa_active(): CPUID + XGETBV + QVLM_ISA; STYLE.md
 * "Writing a SIMD kernel", 5), and the checked entry points of simd.h. */
#include <pthread.h>
#include <stdio.h>

#include "kernel_impl.h"

#define QV_TABLE(isa_enum, fn, name)                                                                       \
    {                                                                                                      \
        isa_enum, "fq=" name " loss=" name " absmean=" name " cvt=" name, qv_fq_rows_##fn, qv_loss_rows_##fn, \
            qv_absmean_acc_##fn, qv_f32_to_bf16_##fn, qv_bf16_to_f32_##fn, qv_f32_to_f16_##fn,              \
            qv_f16_to_f32_##fn                                                                             \
    }

static const qv_kernel_table g_tables[QV_ISA_COUNT] = {
    [QV_ISA_SCALAR] = QV_TABLE(QV_ISA_SCALAR, ref, "scalar"),
    [QV_ISA_AVX2] = QV_TABLE(QV_ISA_AVX2, avx2, "avx2"),
    [QV_ISA_AVX512] = QV_TABLE(QV_ISA_AVX512, avx512, "avx512"),
    /* no AMX-specific kernel yet: the AMX set uses the AVX-512 variants */
    [QV_ISA_AMX] = QV_TABLE(QV_ISA_AMX, avx512, "avx512"),
};

static const qv_kernel_table g_emu512 = QV_TABLE(QV_ISA_AVX2, emu512, "emu512");

static const qv_kernel_table *g_active;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void choose(void) { g_active = &g_tables[qv_isa_active()]; }

const qv_kernel_table *qv_kernels(void)
{
    pthread_once(&g_once, choose);
    return g_active;
}

const qv_kernel_table *qv_kernels_for(qv_isa isa)
{
    if ((unsigned)isa >= QV_ISA_COUNT || !qv_isa_supported(isa))
        return NULL;
    return &g_tables[isa];
}

const qv_kernel_table *qv_kernels_emu512(void) { return qv_isa_supported(QV_ISA_AVX2) ? &g_emu512 : NULL; }

/* ---- checked entry points ----------------------------------------------------------------- */

static bool is_t(qv_dtype dt) { return dt == QV_F32 || dt == QV_BF16 || dt == QV_F16; }

const char *qv_fq_check(const qv_fq *p, qv_dtype dt, qv_dtype out_dt, qv_fq_scale mode, const void *s, int64_t cols)
{
    static _Thread_local char buf[96];
    if (!p)
        return "no quantizer parameters";
    if (!is_t(dt))
        return "fake quantization needs F32, BF16 or F16 elements";
    if (out_dt != dt && out_dt != QV_F32)
        return "fake-quant output must have the input's dtype or F32";
    if (p->n_bits < 2 || p->n_bits > 8) {
        snprintf(buf, sizeof buf, "n_bits %d is outside 2..8", p->n_bits);
        return buf;
    }
    if (p->division != QV_FQ_DIV_CUDA && p->division != QV_FQ_DIV_CPU)
        return "unknown division form";
    if ((unsigned)mode > QV_FQ_SCALE_DIV)
        return "unknown scale mode";
    if (mode != QV_FQ_SCALE_NONE && !s)
        return "the fused form needs the column scales s";
    if (cols < 1)
        return "rows have no columns";
    if (p->group == 0 || p->group < -1) {
        snprintf(buf, sizeof buf, "group %lld is neither -1 nor positive", (long long)p->group);
        return buf;
    }
    if (p->group > 0 && cols % p->group != 0) {
        snprintf(buf, sizeof buf, "group %lld does not divide %lld columns", (long long)p->group, (long long)cols);
        return buf;
    }
    return NULL;
}

qv_status qv_fq_apply(const qv_kernel_table *k, void *out, qv_dtype out_dt, const void *w, qv_dtype dt, const void *s,
                      qv_fq_scale mode, int64_t rows, int64_t cols, const qv_fq *p, const char **why)
{
    const char *e = rows < 0 ? "negative row count" : qv_fq_check(p, dt, out_dt, mode, s, cols);
    if (e) {
        if (why)
            *why = e;
        return QV_ERR_INVALID;
    }
    if (rows > 0)
        (k ? k : qv_kernels())->fq_rows(out, out_dt, w, dt, s, mode, rows, cols, p);
    return QV_OK;
}

qv_status qv_fq_tensor(const qv_kernel_table *k, void *out, qv_dtype out_dt, const void *w, qv_dtype dt, int64_t n,
                       const qv_fq *p, const char **why)
{
    if (!p) {
        if (why)
            *why = "no quantizer parameters";
        return QV_ERR_INVALID;
    }
    qv_fq whole = *p;
    whole.group = -1;
    return qv_fq_apply(k, out, out_dt, w, dt, NULL, QV_FQ_SCALE_NONE, 1, n, &whole, why);
}

void qv_loss_sum(const qv_kernel_table *k, double *sum_abs, double *sum_sq, const void *a, const void *b, qv_dtype dt,
                 int64_t rows, int64_t cols, const uint8_t *row_mask, const float *row_weight)
{
    enum { CHUNK = 64 };
    double ra[CHUNK], rq[CHUNK], sa = 0.0, sq = 0.0;
    size_t sz = qv_t_size(dt);
    if (!k)
        k = qv_kernels();
    for (int64_t r0 = 0; r0 < rows; r0 += CHUNK) {
        int64_t n = rows - r0 < CHUNK ? rows - r0 : CHUNK;
        size_t off = (size_t)(r0 * cols) * sz;
        k->loss_rows(ra, rq, (const char *)a + off, (const char *)b + off, dt, n, cols,
                     row_mask ? row_mask + r0 : NULL);
        for (int64_t i = 0; i < n; i++) {
            if (row_mask && !row_mask[r0 + i])
                continue;
            double w = row_weight ? (double)row_weight[r0 + i] : 1.0;
            sa += row_weight ? w * ra[i] : ra[i];
            sq += row_weight ? w * rq[i] : rq[i];
        }
    }
    *sum_abs = sa;
    *sum_sq = sq;
}

void qv_absmean_finish(float *m, qv_dtype dt, const float *acc, int64_t cols, int64_t n_tokens, int64_t channels,
                       qv_fq_div division)
{
    /* ATen: factor_t factor = static_cast<factor_t>(num_output_elements) / numel (int64 -> float) */
    float factor = (float)channels / (float)(n_tokens * channels);
    float n = (float)n_tokens;
    for (int64_t j = 0; j < cols; j++)
        m[j] = qv_round_t(division == QV_FQ_DIV_CUDA ? acc[j] * factor : acc[j] / n, dt);
}
