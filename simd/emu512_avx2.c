/* emu512_avx2.c — test-only instance of the AVX-512 kernel bodies (16 lanes) over vec_emu512.h,
 * which implements the 16-lane primitives with pairs of AVX2 registers; compiled with the AVX2
 * flags. Scalar twins: fq_ref.c, loss_ref.c, absmean_ref.c, convert_ref.c; tail strategy as in
 * the *_avx512.c files (scalar tails). It lets an AVX2-only host test the 16-lane loop, tail and
 * reduction logic that fq_avx512.c & co. compile; qv_kernels_emu512() (dispatch.c) exposes it. */
#include "vec_emu512.h"

#include "absmean_body.h"
#include "convert_body.h"
#include "fq_body.h"
#include "loss_body.h"

void qv_fq_rows_emu512(void *out, qv_dtype out_dt, const void *w, qv_dtype dt, const void *s, qv_fq_scale mode,
                       int64_t rows, int64_t cols, const qv_fq *p)
{
    fqb_rows(out, out_dt, w, dt, s, mode, rows, cols, p);
}

void qv_loss_rows_emu512(double *row_abs, double *row_sq, const void *a, const void *b, qv_dtype dt, int64_t rows,
                         int64_t cols, const uint8_t *row_mask)
{
    lossb_rows(row_abs, row_sq, a, b, dt, rows, cols, row_mask);
}

void qv_absmean_acc_emu512(float *acc, const void *x, qv_dtype dt, int64_t rows, int64_t cols, int64_t ld)
{
    absmeanb_acc(acc, x, dt, rows, cols, ld);
}

void qv_f32_to_bf16_emu512(uint16_t *dst, const float *src, size_t n) { cvtb_f32_to_bf16(dst, src, n); }
void qv_bf16_to_f32_emu512(float *dst, const uint16_t *src, size_t n) { cvtb_bf16_to_f32(dst, src, n); }
void qv_f32_to_f16_emu512(uint16_t *dst, const float *src, size_t n) { cvtb_f32_to_f16(dst, src, n); }
void qv_f16_to_f32_emu512(float *dst, const uint16_t *src, size_t n) { cvtb_f16_to_f32(dst, src, n); }
