/* simd.h — the fake-quantization, loss, activation-statistic and conversion kernels, and the
 * dispatch table that picks a scalar, AVX2 or AVX-512 variant of each (STYLE.md "Writing a SIMD
 * kernel"). Implements ALGORITHMS.md §0.3 rule (E), §1 (fake quantization), §3.2 (the fused
 * FQ(W ⊙ s) ⊘ s of the scale search and the statistic mean|x|), §5.5/§5.6 (loss sums) and
 * FORMATS.md §7.3/§7.4 (BF16/F16 conversion). Depends on nothing in src/.
 *
 * Element types. Every kernel takes the element dtype T of its inputs: QV_F32, QV_BF16 or QV_F16.
 * Rule (E): each elementwise op is computed in fp32 from the exactly widened operands and the
 * result is rounded once to T, round half to even. With T = QV_F32 this is plain fp32 arithmetic.
 *
 * Bit-exactness. Every variant returns the same bits as the scalar reference (`*_ref.c`) for
 * every input, including NaN, ±Inf, denormals and ties, with one stated exception: the two
 * reductions (loss sums, the absmean accumulation) are bit-exact when their inputs are finite;
 * with a NaN/Inf input they are NaN/Inf in every variant, the NaN payload not specified.
 *
 * Non-finite values in fake quantization follow the reference's formulas in IEEE arithmetic
 * (torch's amax/amin propagate NaN): a group that contains NaN or ±Inf (after the ⊙ s or ⊘ s of a
 * fused form) gets a NaN or ±Inf scale, and its outputs are NaN. SIMD variants detect such groups and
 * hand them to the scalar code, so all ISAs agree bit for bit.
 *
 * Threads. Kernels are single-threaded and work on a range of rows; callers parallelise over
 * disjoint row ranges (OpenMP). Nothing here depends on the thread count.
 */
#ifndef QV_SIMD_H
#define QV_SIMD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cpu.h"
#include "qvlm.h"

/* ---- fake quantization (ALGORITHMS.md §1) -------------------------------------------------- */

/* How `range / qmax` (and `absmax / qmax`) is formed, rule (E): CUDA multiplies by the fp32
 * reciprocal, T(range * (1.0f / qmax)), as the reference's GPU quantizer does (the default and
 * what every reference search used); CPU divides, T(range / qmax), as PyTorch on the CPU does
 * (the goldens' keys without `.cuda`, ALGORITHMS.md §12.2, and the reference's CPU evaluation of
 * per-token activations). Tensor/tensor divisions are true divisions in both forms. */
typedef enum qv_fq_div {
    QV_FQ_DIV_CUDA = 0,
    QV_FQ_DIV_CPU,
} qv_fq_div;

typedef struct qv_fq {
    int n_bits;         /* 2..8 */
    bool zero_point;    /* true: asymmetric, codes 0..2^n-1 (§1.2); false: symmetric absmax,
                         * codes -2^(n-1)..2^(n-1)-1 (§1.3) */
    int64_t group;      /* > 0: groups of that many consecutive elements of a row (must divide
                         * cols; the reference's w_group, 32..256 in practice); -1: one group per
                         * row (per output channel for weights, per token for activations) */
    qv_fq_div division;
} qv_fq;

/* The column scale s of the fused forms (§3.2, §5.6). s[cols] has dtype T, s[j] scales column j. */
typedef enum qv_fq_scale {
    QV_FQ_SCALE_NONE = 0, /* out = FQ(w) */
    QV_FQ_SCALE_MUL,      /* out = FQ(T(w ⊙ s)): the WALinear weight built from scaled W (§5.6) */
    QV_FQ_SCALE_MULDIV,   /* out = T(FQ(T(w ⊙ s)) ⊘ s): the AWQ/MBQ candidate weight (§3.2) */
    QV_FQ_SCALE_DIV,      /* out = FQ(T(x ⊘ s)): the W-A search's activations x ⊘ s, quantized per
                           * token (§5.6) */
} qv_fq_scale;

/* Fake quantization of `rows` contiguous rows of `cols` elements of dtype dt into out (out_dt =
 * dt, or QV_F32 to hand a GEMM the same values widened). Per group (a row, or `group` consecutive
 * elements of it), in T (each op rounded to T):
 *   asymmetric: s = max(hi − lo, 1e-5) / qmax;  z = clamp(−round(lo / s), 0, qmax)
 *               out = (clamp(round(w / s) + z, 0, qmax) − z) · s
 *   symmetric:  s = max(max|w|, 1e-5) / qmax;   out = (clamp(round(w / s) + 0, qmin, qmax) − 0) · s
 * The `+ 0` of the symmetric form is the reference's `+ zeros` (zeros = 0): it turns −0 into +0,
 * as the goldens show. Per-token activation quantization (§1.4, quantize_activation_per_token_
 * absmax) is the symmetric form with group −1 over [tokens, C]. Parameters must pass
 * qv_fq_check(); out may alias w when out_dt == dt, and must not overlap it otherwise. */
typedef void (*qv_fq_rows_fn)(void *out, qv_dtype out_dt, const void *w, qv_dtype dt, const void *s,
                              qv_fq_scale mode, int64_t rows, int64_t cols, const qv_fq *p);

/* ---- loss sums (ALGORITHMS.md §0.3 "Losses", §5.5) ------------------------------------------ */

/* Per row r of a, b ([rows, cols], dtype dt): D = fp32(T(a − b)), row_abs[r] = Σ_j |D|,
 * row_sq[r] = Σ_j D², in double. Canonical order, reproduced by every variant: element j goes to
 * lane j mod 16, each lane accumulates in column order, and the 16 lanes are combined by the tree
 * l[i] += l[i + w] for w = 8, 4, 2, 1. Rows whose row_mask entry is 0 are skipped (sums 0);
 * row_mask NULL selects every row. */
typedef void (*qv_loss_rows_fn)(double *row_abs, double *row_sq, const void *a, const void *b, qv_dtype dt,
                                int64_t rows, int64_t cols, const uint8_t *row_mask);

/* ---- activation statistic (ALGORITHMS.md §3.2: m[j] = mean over tokens of |x[..., j]|) ------- */

/* acc[j] += |x[r][j]| in fp32, for r = 0..rows-1 in order (the token order) and j < cols; rows
 * are ld elements apart (ld >= cols), so a caller can split the columns between threads. */
typedef void (*qv_absmean_acc_fn)(float *acc, const void *x, qv_dtype dt, int64_t rows, int64_t cols, int64_t ld);

/* ---- bulk conversions, bit-exact with simd/fp.h (NaN payloads included) ---------------------- */

typedef void (*qv_cvt_f32_u16_fn)(uint16_t *dst, const float *src, size_t n);
typedef void (*qv_cvt_u16_f32_fn)(float *dst, const uint16_t *src, size_t n);

/* ---- the dispatch table ------------------------------------------------------------------- */

typedef struct qv_kernel_table {
    qv_isa isa;          /* the kernel set this table stands for */
    const char *desc;    /* which variant serves each kernel, e.g. "fq=avx2 loss=avx2 ..." */
    qv_fq_rows_fn fq_rows;
    qv_loss_rows_fn loss_rows;
    qv_absmean_acc_fn absmean_acc;
    qv_cvt_f32_u16_fn f32_to_bf16;
    qv_cvt_u16_f32_fn bf16_to_f32;
    qv_cvt_f32_u16_fn f32_to_f16;
    qv_cvt_u16_f32_fn f16_to_f32;
} qv_kernel_table;

/* The table of the ISA in use (qv_isa_active(): the host's best, lowered by QVLM_ISA); chosen
 * once, thread-safe, never NULL. */
const qv_kernel_table *qv_kernels(void);
/* The table of a given ISA, or NULL when this host does not support it (tests, benches). */
const qv_kernel_table *qv_kernels_for(qv_isa isa);
/* The AVX-512 kernel bodies compiled against an AVX2 emulation of their 16-lane primitives, so
 * that hosts without AVX-512 still run that code's lane, tail and reduction logic in the tests.
 * NULL when the host lacks AVX2. Not for production use. */
const qv_kernel_table *qv_kernels_emu512(void);

/* ---- checked entry points ----------------------------------------------------------------- */

/* NULL when the fake-quant parameters are valid for rows of `cols` elements, else the reason
 * ("group 128 does not divide 300 columns"), a static string for the caller's error line. */
const char *qv_fq_check(const qv_fq *p, qv_dtype dt, qv_dtype out_dt, qv_fq_scale mode, const void *s, int64_t cols);

/* Validates, then runs k->fq_rows (k NULL: qv_kernels()). QV_ERR_INVALID when qv_fq_check fails;
 * *why (optional) gets its reason. */
qv_status qv_fq_apply(const qv_kernel_table *k, void *out, qv_dtype out_dt, const void *w, qv_dtype dt, const void *s,
                      qv_fq_scale mode, int64_t rows, int64_t cols, const qv_fq *p, const char **why);

/* Per-tensor fake quantization (§1.4, "defined, not used"): the n contiguous elements form a
 * single group. p->group is ignored. */
qv_status qv_fq_tensor(const qv_kernel_table *k, void *out, qv_dtype out_dt, const void *w, qv_dtype dt, int64_t n,
                       const qv_fq *p, const char **why);

/* Integer codes, per-group scales and zero points exactly as qv_fq_apply (mode NONE) computes
 * them, for export. codes[rows*cols]; scales, zeros [rows * groups_per_row]. Asymmetric: code = q
 * in 0..2^n-1, zero = z. Symmetric: code = q + 2^(n-1), zero = 2^(n-1). In both, the fake-quant
 * value is T((code − zero) · scale) bit for bit (the difference is exact). scales hold T values.
 * A group with NaN/±Inf has no codes: QV_ERR_INVALID, *bad_group (optional) = its index
 * (row * groups_per_row + group), *why = the reason. Scalar code. */
qv_status qv_fq_codes(uint8_t *codes, float *scales, uint8_t *zeros, const void *w, qv_dtype dt, int64_t rows,
                      int64_t cols, const qv_fq *p, int64_t *bad_group, const char **why);

/* Σ over selected rows of row_abs / row_sq (k->loss_rows), rows taken in index order and each
 * multiplied by row_weight[r] (as double) when row_weight is given; row_mask NULL selects every
 * row. The result is independent of the ISA. Serial: a parallel caller runs k->loss_rows on its
 * row ranges into per-row arrays and sums them in index order itself. */
void qv_loss_sum(const qv_kernel_table *k, double *sum_abs, double *sum_sq, const void *a, const void *b, qv_dtype dt,
                 int64_t rows, int64_t cols, const uint8_t *row_mask, const float *row_weight);

/* m[j] = T(acc[j] / n_tokens) from the sums of k->absmean_acc, as PyTorch's mean: CUDA form
 * T(acc[j] * factor) with factor = float(channels) / float(n_tokens * channels) (ATen's
 * mean_kernel_impl: num_output_elements / numel), CPU form T(acc[j] / float(n_tokens)).
 * `channels` is the full width C of the statistic (the mean's output size), cols how many
 * entries of acc/m to finish. m holds T values. */
void qv_absmean_finish(float *m, qv_dtype dt, const float *acc, int64_t cols, int64_t n_tokens, int64_t channels,
                       qv_fq_div division);

#endif /* QV_SIMD_H */
