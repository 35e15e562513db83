/* gemm_amx.c — the AMX kernel set of gemm.h: fake quantization of packed n-blocks (fqpanel_body.h
 * over vec_avx512.h) and the TDPBF16PS GEMM (gemm_tile_body.h over tile_amx.h); the bare
 * instruction for the bench's hardware check and the register-only ceiling loop of bench
 * amx-peak. Scalar twins: qv_fq_rows_ref, qv_gemm_model_amx. Tail strategies: see the bodies. */
#include "vec_avx512.h"

#include "fqpanel_body.h"
#include "tile_amx.h"
#include "gemm_tile_body.h"

void qv_gemm_fq_panel_amx(uint16_t *dst, const uint16_t *w, int64_t nb, int64_t K, int64_t n_valid, const uint16_t *s,
                          qv_fq_scale mode, const qv_fq *p, uint16_t *scratch)
{
    fqp_panel(dst, w, nb, K, n_valid, s, mode, p, scratch);
}

void qv_gemm_panel_amx(float *y, int64_t ldy, const uint16_t *x, int64_t ldx, int64_t M, int64_t K,
                       const uint16_t *panel, int64_t nb, int64_t n_valid, const float *bias, int64_t kc)
{
    gemmt_run(y, ldy, x, ldx, M, K, panel, nb, n_valid, bias, kc);
}

void qv_hw_tdpbf16ps(float *c, const uint32_t *a, const uint32_t *b, int rows, int kp, int n)
{
    qv_tilecfg cfg;
    qv_tilecfg_single(&cfg, rows, kp, n);
    _tile_loadconfig(&cfg);
    _tile_loadd(0, c, 4 * n);
    _tile_loadd(1, a, 4 * kp);
    _tile_loadd(2, b, 4 * n);
    _tile_dpbf16ps(0, 1, 2);
    _tile_stored(0, c, 4 * n);
    _tile_release();
}

float qv_amx_peak_loop(int64_t iters)
{
    static const float one = 1.0f / 1024;
    uint32_t src[256];
    float out[256];
    const uint32_t pair = (uint32_t)qv_f32_to_bf16(one) * 0x10001u;
    for (int i = 0; i < 256; i++)
        src[i] = pair;
    qv_tilecfg cfg;
    qv_tilecfg_full(&cfg);
    _tile_loadconfig(&cfg);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_loadd(4, src, 64);
    _tile_loadd(5, src, 64);
    _tile_loadd(6, src, 64);
    _tile_loadd(7, src, 64);
    for (int64_t i = 0; i < iters; i++) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, out, 64);
    float r = out[0];
    _tile_stored(3, out, 64);
    _tile_release();
    return r + out[255];
}
