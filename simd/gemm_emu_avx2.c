/* gemm_emu_avx2.c — the two emulated kernel sets of gemm.h, for hosts without AMX or
 * AVX-512-BF16 (tests): the AMX kernel source (gemm_tile_body.h) over the plain-C tile emulation
 * of tile_emu.h, the VDPBF16PS kernel source (gemm_dp_body.h) over dp_emu.h, and the fake
 * quantization of packed n-blocks (fqpanel_body.h) over vec_emu512.h, the 16-lane contract on
 * pairs of AVX2 registers; compiled with the AVX2 flags. Scalar twins: qv_fq_rows_ref,
 * qv_gemm_model_amx, qv_gemm_model_dp. Also the emulated single instructions of gemm.h. */
#include "vec_emu512.h"

#include "dp_emu.h"
#include "fqpanel_body.h"
#include "tile_emu.h"
#include "gemm_dp_body.h"
#include "gemm_tile_body.h"

void qv_gemm_fq_panel_emu_amx(uint16_t *dst, const uint16_t *w, int64_t nb, int64_t K, int64_t n_valid,
                              const uint16_t *s, qv_fq_scale mode, const qv_fq *p, uint16_t *scratch)
{
    fqp_panel(dst, w, nb, K, n_valid, s, mode, p, scratch);
}

void qv_gemm_panel_emu_amx(float *y, int64_t ldy, const uint16_t *x, int64_t ldx, int64_t M, int64_t K,
                           const uint16_t *panel, int64_t nb, int64_t n_valid, const float *bias, int64_t kc)
{
    gemmt_run(y, ldy, x, ldx, M, K, panel, nb, n_valid, bias, kc);
}

void qv_gemm_panel_emu_avx512bf16(float *y, int64_t ldy, const uint16_t *x, int64_t ldx, int64_t M, int64_t K,
                                  const uint16_t *panel, int64_t nb, int64_t n_valid, const float *bias, int64_t kc)
{
    gemmd_run(y, ldy, x, ldx, M, K, panel, nb, n_valid, bias, kc);
}

void qv_emu_tdpbf16ps(float *c, const uint32_t *a, const uint32_t *b, int rows, int kp, int n)
{
    qv_tilecfg cfg;
    qv_tilecfg_single(&cfg, rows, kp, n);
    qv_emu_t_config(&cfg);
    qv_emu_t_load(0, c, 4 * n);
    qv_emu_t_load(1, a, 4 * kp);
    qv_emu_t_load(2, b, 4 * n);
    qv_emu_t_dpbf16(0, 1, 2);
    qv_emu_t_store(0, c, 4 * n);
    qv_emu_t_release();
}

void qv_emu_vdpbf16ps(float acc[16], const uint32_t a[16], const uint32_t b[16])
{
    qv_dacc r = qv_d_dp(qv_d_load(acc), qv_d_pairs((const uint16_t *)a), qv_d_pairs((const uint16_t *)b));
    qv_d_store(acc, r);
}
