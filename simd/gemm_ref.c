/* gemm_ref.c — the scalar parts of gemm.h: packing into the tile layout and back, and the two
 * accumulation orders as plain loops (qv_gemm_model_amx: one SDM TDPBF16PS per 32-k tile;
 * qv_gemm_model_dp: one SDM VDPBF16PS lane per k pair). The kernels must reproduce the models bit
 * for bit; the models are what the emulated instructions compute, element by element. */
#include "gemm_impl.h"

static int64_t padded_n(int64_t N) { return (N + QV_GEMM_NPAD - 1) / QV_GEMM_NPAD * QV_GEMM_NPAD; }

int64_t qv_gemm_packed_elems(int64_t N, int64_t K) { return padded_n(N) * K; }

void qv_gemm_pack(uint16_t *dst, const uint16_t *w, int64_t ldw, int64_t N, int64_t K)
{
    const int64_t Np = padded_n(N);
    uint32_t *d = (uint32_t *)dst;
    for (int64_t b = 0; b < Np / QV_GEMM_NB; b++)
        for (int64_t j = 0; j < K / 2; j++)
            for (int64_t n = 0; n < QV_GEMM_NB; n++) {
                const int64_t row = b * QV_GEMM_NB + n;
                const uint16_t *r = w + row * ldw + 2 * j;
                d[(b * (K / 2) + j) * QV_GEMM_NB + n] = row < N ? (uint32_t)r[0] | (uint32_t)r[1] << 16 : 0;
            }
}

void qv_gemm_unpack_row(uint16_t *dst, const uint16_t *packed, int64_t n, int64_t K)
{
    const uint32_t *d = (const uint32_t *)packed + (n / QV_GEMM_NB) * (K / 2) * QV_GEMM_NB + n % QV_GEMM_NB;
    for (int64_t j = 0; j < K / 2; j++) {
        dst[2 * j] = (uint16_t)(d[j * QV_GEMM_NB] & 0xffffu);
        dst[2 * j + 1] = (uint16_t)(d[j * QV_GEMM_NB] >> 16);
    }
}

void qv_gemm_model_amx(float *y, const uint16_t *x, const uint16_t *w, int64_t M, int64_t N, int64_t K,
                       const float *bias)
{
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            const uint16_t *xr = x + m * K, *wr = w + n * K;
            float c = 0.0f;
            for (int64_t k0 = 0; k0 < K; k0 += QV_GEMM_KT) {
                float te = 0.0f, to = 0.0f;
                for (int64_t k = k0; k < k0 + QV_GEMM_KT; k += 2) {
                    te = qv_fma_daz_ftz(qv_bf16_to_f32(xr[k]), qv_bf16_to_f32(wr[k]), te);
                    to = qv_fma_daz_ftz(qv_bf16_to_f32(xr[k + 1]), qv_bf16_to_f32(wr[k + 1]), to);
                }
                c = qv_add_daz_ftz(c, qv_add_daz_ftz(te, to));
            }
            y[m * N + n] = bias ? c + bias[n] : c;
        }
}

void qv_gemm_model_dp(float *y, const uint16_t *x, const uint16_t *w, int64_t M, int64_t N, int64_t K,
                      const float *bias)
{
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            const uint16_t *xr = x + m * K, *wr = w + n * K;
            float c = 0.0f;
            for (int64_t k = 0; k < K; k += 2) {
                c = qv_fma_daz_ftz(qv_bf16_to_f32(xr[k + 1]), qv_bf16_to_f32(wr[k + 1]), c);
                c = qv_fma_daz_ftz(qv_bf16_to_f32(xr[k]), qv_bf16_to_f32(wr[k]), c);
            }
            y[m * N + n] = bias ? c + bias[n] : c;
        }
}
