/* fqgemm.h — the scale search's BF16 GEMM with the weight fake-quantized on the fly (simd/gemm.h)
 * as a library call: the weight packed once into the tile layout, then per grid point
 *
 *   y[M, N] (f32) = x[M, K] (BF16) · Wcᵀ (+ bias[N]),  Wc = T(FQ(T(W ⊙ s)) ⊘ s)   (§3.2, §5.5)
 *                                                       or FQ(T(W ⊙ s))          (§5.6, W-A)
 *                                                       or FQ(W), or W itself (plain GEMM)
 *
 * with Wc bit-exact with qv_fq_rows_ref in BF16. Only the column scale s and the quantizer change
 * between calls; each thread fake-quantizes one panel of output channels (a few hundred KiB,
 * sized for L2) into its own buffer and streams all rows of x through it, so there is no second
 * copy of W. That costs one fake quantization of W per call: for many small calls with one
 * quantizer, qv_fqgemm_prepare makes the candidate once and the calls run the plain GEMM on it.
 * OpenMP over (panel, row chunk) items; every output is computed by one thread in the kernel's
 * fixed k order, so results do not depend on the thread count.
 *
 * Kernels: AMX, else AVX-512-BF16 (qv_gemm_kernels_active), else a generic path (the active
 * qv_kernel_table's fake quantization and oneDNN's F32 matmul on the widened BF16 values, panel
 * by panel), so the call works on every host; the search only uses it where a native kernel
 * exists (qv_fqgemm_native). Accuracy against the exact product: gemm.h's bound for the native
 * sets; oneDNN's f32 accumulation for the generic path. */
#ifndef QV_NN_FQGEMM_H
#define QV_NN_FQGEMM_H

#include "../../simd/gemm.h"
#include "../core/common.h"

typedef struct qv_fqgemm_w qv_fqgemm_w; /* a packed weight: owns its buffer */

/* The fake quantization of one call. */
typedef struct qv_fqgemm_q {
    const uint16_t *s;  /* [K] BF16 column scales; NULL for QV_FQ_SCALE_NONE */
    qv_fq_scale mode;   /* QV_FQ_SCALE_NONE, QV_FQ_SCALE_MUL or QV_FQ_SCALE_MULDIV */
    qv_fq p;            /* the weight quantizer; group −1 or even (qv_fqgemm_supports) */
} qv_fqgemm_q;

/* The generic path as a kernel set for qv_fqgemm_pack (tests, benches); it has no kernels. */
extern const qv_gemm_kernels qv_fqgemm_generic;

/* Packs W [N, K] (BF16, rows contiguous) once, for kernel set k (NULL: qv_gemm_kernels_active(),
 * or the generic path when that is NULL too). K must be a multiple of 32 (QV_ERR_UNSUPPORTED
 * otherwise). *out is freed with qv_fqgemm_free. */
qv_status qv_fqgemm_pack(const qv_gemm_kernels *k, const uint16_t *w, int64_t N, int64_t K, qv_fqgemm_w **out);
void qv_fqgemm_free(qv_fqgemm_w *w);
int64_t qv_fqgemm_rows(const qv_fqgemm_w *w); /* N */
int64_t qv_fqgemm_cols(const qv_fqgemm_w *w); /* K */
/* Name of the kernel set the weight was packed for ("amx", ..., "generic"). */
const char *qv_fqgemm_kernel_name(const qv_fqgemm_w *w);

/* y [M, N] = x [M, K] · Wcᵀ (+ bias); q NULL is the plain GEMM (Wc = W). x, y, bias contiguous;
 * y must not overlap x. QV_ERR_INVALID with the reason when q fails qv_fq_check or
 * qv_fqgemm_supports. */
qv_status qv_fqgemm(float *y, const uint16_t *x, int64_t M, const qv_fqgemm_w *w, const qv_fqgemm_q *q,
                    const float *bias);
/* For many small calls with one quantizer: dst = the fake-quantized packed weight Wc of src and
 * q, computed once (same bits as qv_fqgemm's on-the-fly panels), so that the calls run the plain
 * GEMM on dst. dst comes from qv_fqgemm_alloc_like(src). This is a second copy of W: use it when
 * the calls are too small for the on-the-fly form to amortise its fake quantization. */
qv_status qv_fqgemm_alloc_like(const qv_fqgemm_w *src, qv_fqgemm_w **out);
qv_status qv_fqgemm_prepare(qv_fqgemm_w *dst, const qv_fqgemm_w *src, const qv_fqgemm_q *q);
/* The same from F32 rows: x is rounded to BF16 (nearest even) in row chunks of at most 2^27
 * elements, as the decoder's BF16 linears round their inputs. */
qv_status qv_fqgemm_f32(float *y, const float *x, int64_t M, const qv_fqgemm_w *w, const qv_fqgemm_q *q,
                        const float *bias);

/* Whether the packed path takes a quantizer on K columns: K % 32 == 0 and group −1 or even. */
bool qv_fqgemm_supports(int64_t K, const qv_fq *p);
/* Whether this host has a native kernel set (AMX or AVX-512-BF16, after QVLM_ISA). */
bool qv_fqgemm_native(void);

/* ---- tunables (bench fqgemm --sweep; environment QVLM_GEMM_KC, QVLM_GEMM_PANEL_KB) --------- */

typedef struct qv_fqgemm_tune {
    int64_t kc;        /* k per cache block of the kernels (multiple of 32; 0 = all of K) */
    int64_t panel_kib; /* bytes of one thread's fake-quantized panel, in KiB (sets the panel width) */
} qv_fqgemm_tune;

qv_fqgemm_tune qv_fqgemm_tune_get(void);
/* Not thread-safe: call between GEMMs (benches). */
void qv_fqgemm_tune_set(const qv_fqgemm_tune *t);

#endif /* QV_NN_FQGEMM_H */
