/* gemm.h — the packed BF16 GEMM of the scale search (ALGORITHMS.md §3.2, §5.5, §5.6): tile kernels
 * for AMX (TDPBF16PS) and AVX-512-BF16 (VDPBF16PS), each also compiled against a plain-C
 * emulation of its instruction so that hosts without it run the same kernel source in the tests.
 * The OpenMP driver, allocation and error messages are src/nn/fqgemm.c's; everything here is
 * single-threaded and depends on nothing in src/.
 *
 *   Y[M, N] (f32) = X[M, K] (BF16 rows) · Wcᵀ (+ bias[N])
 *
 * where Wc [N, K] is the layer weight W itself (plain GEMM) or W fake-quantized on the fly from
 * the column scale s of a grid point: Wc = T(FQ(T(W ⊙ s)) ⊘ s) (QV_FQ_SCALE_MULDIV, the AWQ/MBQ
 * candidate), FQ(T(W ⊙ s)) (QV_FQ_SCALE_MUL, the W-A candidate) or FQ(W) (QV_FQ_SCALE_NONE),
 * bit-exact with qv_fq_rows_ref in BF16 (T = BF16).
 *
 * Packed layout (QV_GEMM_*): W is padded to Np = N rounded up to 32 rows (zeros) and cut into
 * n-blocks of 16 output channels; n-block b holds, for each k pair j = 0 .. K/2−1, 16 dwords:
 * dword n = (W[16b+n][2j] in the low half, W[16b+n][2j+1] in the high half). That is the VNNI
 * "B" operand of both instructions: the 32 consecutive k of one AMX tile (16 rows of 64 bytes)
 * are 1 KiB at offset 512·(k/32) BF16 elements inside the n-block, and one pair row is the src2
 * of one VDPBF16PS. K must be a multiple of 32. The layout is the same for every kernel set.
 *
 * Accumulation order (fixed, so results do not depend on the thread count or the blocking):
 *   AMX: per output, per 32-k tile in k order, one TDPBF16PS as the Intel SDM defines it — even
 *        and odd products summed separately over the 16 pairs (FP32 FMA, DAZ/FTZ, RNE), the two
 *        sums added, then added to the accumulator; the bias is added last (plain f32 add).
 *   AVX-512-BF16: per output, per k pair in k order, one VDPBF16PS lane — accumulator += odd
 *        product, then += even product (FP32 FMA, DAZ/FTZ, RNE); then the bias.
 * qv_gemm_model_amx / qv_gemm_model_dp are these orders as plain loops (gemm_ref.c). Against
 * the exact result the error is at most (depth + 1)·2⁻²⁴·Σ_k |x_k·w_k| (first order, normal
 * range), depth = qv_gemm_depth(): 16 + 1 + K/32 for AMX, K for VDPBF16PS. */
#ifndef QV_SIMD_GEMM_H
#define QV_SIMD_GEMM_H

#include <stdbool.h>
#include <stdint.h>

#include "simd.h"

#define QV_GEMM_NB 16   /* output channels per n-block (one tile's N, one vector's lanes) */
#define QV_GEMM_KT 32   /* k per AMX tile */
#define QV_GEMM_NPAD 32 /* N is padded to a multiple of this (the kernels work on pairs of n-blocks) */

typedef enum qv_gemm_isa {
    QV_GEMM_AMX = 0,        /* TDPBF16PS, 2x2 tiles of 16x16 f32 (32 rows x 32 columns) */
    QV_GEMM_AVX512BF16,     /* VDPBF16PS, 12 rows x 32 columns in zmm accumulators */
    QV_GEMM_EMU_AMX,        /* the AMX kernel over the plain-C tile emulation (tests) */
    QV_GEMM_EMU_AVX512BF16, /* the VDPBF16PS kernel over the plain-C emulation (tests) */
    QV_GEMM_ISA_COUNT
} qv_gemm_isa;

/* Fake-quantizes n-blocks [0, nb) of a packed weight w into dst (same layout, same size:
 * nb·16·K BF16). Channels n_valid .. 16·nb−1 are padding and come out +0. s [K] BF16 (NULL when
 * mode is QV_FQ_SCALE_NONE); mode NONE, MUL or MULDIV; p must pass qv_fq_check for BF16 rows of
 * K columns with p->group −1 or even. scratch: 4·K BF16 elements. Bit-exact with qv_fq_rows_ref
 * (BF16 in, BF16 out) on the unpacked rows, NaN/±Inf included. */
typedef void (*qv_gemm_fq_panel_fn)(uint16_t *dst, const uint16_t *w, int64_t nb, int64_t K, int64_t n_valid,
                                    const uint16_t *s, qv_fq_scale mode, const qv_fq *p, uint16_t *scratch);

/* Y[M, n_valid] (row stride ldy) = X[M, K] (row stride ldx) · panelᵀ (+ bias[0 .. n_valid)), with
 * panel = nb n-blocks of the packed layout (nb even). M must be a multiple of the set's `mr`;
 * columns n_valid .. 16·nb−1 are computed but not written. kc: k per cache block (a multiple of
 * 32; 0 = K); it changes the loop order only, never the result. bias may be NULL. */
typedef void (*qv_gemm_panel_fn)(float *y, int64_t ldy, const uint16_t *x, int64_t ldx, int64_t M, int64_t K,
                                 const uint16_t *panel, int64_t nb, int64_t n_valid, const float *bias, int64_t kc);

typedef struct qv_gemm_kernels {
    qv_gemm_isa isa;
    const char *name;   /* "amx", "avx512bf16", "emu-amx", "emu-avx512bf16" */
    int mr;             /* rows per micro-tile: the driver pads M to a multiple of it */
    qv_gemm_fq_panel_fn fq_panel;
    qv_gemm_panel_fn gemm;
} qv_gemm_kernels;

/* The kernel set qv_fqgemm uses on this host: AMX when qv_isa_active() is QV_ISA_AMX, else the
 * AVX-512-BF16 set when the active ISA is AVX-512 and the CPU has avx512_bf16, else NULL (no
 * native BF16 tile kernel: callers use oneDNN). Honours QVLM_ISA; chosen once. */
const qv_gemm_kernels *qv_gemm_kernels_active(void);
/* A given set, or NULL when this host cannot run it (the emulations need AVX2: their fake
 * quantization runs vec_emu512.h). */
const qv_gemm_kernels *qv_gemm_kernels_get(qv_gemm_isa isa);

/* Accumulation depth of a set's order for K (see the header comment). */
int64_t qv_gemm_depth(qv_gemm_isa isa, int64_t K);

/* ---- packing ------------------------------------------------------------------------------ */

/* BF16 elements of the packed form of an [N, K] weight (N padded to QV_GEMM_NPAD). */
int64_t qv_gemm_packed_elems(int64_t N, int64_t K);
/* Packs W [N, K] (BF16, row stride ldw) into dst (qv_gemm_packed_elems elements); padding rows
 * are zeros. K % 32 == 0. */
void qv_gemm_pack(uint16_t *dst, const uint16_t *w, int64_t ldw, int64_t N, int64_t K);
/* Row n of a packed weight back into K BF16 values (tests, the generic path). */
void qv_gemm_unpack_row(uint16_t *dst, const uint16_t *packed, int64_t n, int64_t K);

/* ---- scalar models of the two orders (gemm_ref.c), for tests and the bench's hardware check -- */

/* Y[M, N] = X[M, K] · W[N, K]ᵀ (+ bias) with W row-major BF16, in the AMX kernel's order
 * (emulated TDPBF16PS per 32-k tile) / the VDPBF16PS kernel's order. K % 32 == 0 (AMX), even (dp). */
void qv_gemm_model_amx(float *y, const uint16_t *x, const uint16_t *w, int64_t M, int64_t N, int64_t K,
                       const float *bias);
void qv_gemm_model_dp(float *y, const uint16_t *x, const uint16_t *w, int64_t M, int64_t N, int64_t K,
                      const float *bias);

/* ---- the emulated instructions, exposed for the tests of their semantics ---------------------- */

/* TDPBF16PS on tiles held in memory: C [rows][n] f32 (row stride n), A [rows][kp] BF16 pairs,
 * B [kp][n] BF16 pairs (dwords, the VNNI layout); rows ≤ 16, kp ≤ 16, n ≤ 16. As the SDM:
 * per row, even and odd products accumulate separately from 0 with FP32 FMA (DAZ, FTZ, RNE),
 * then C += (even sum + odd sum) with DAZ/FTZ. */
void qv_emu_tdpbf16ps(float *c, const uint32_t *a, const uint32_t *b, int rows, int kp, int n);
/* VDPBF16PS on one 512-bit register: acc[i] += a.odd[i]·b.odd[i], then += a.even[i]·b.even[i],
 * each an FP32 FMA with DAZ, FTZ and RNE. */
void qv_emu_vdpbf16ps(float acc[16], const uint32_t a[16], const uint32_t b[16]);

/* The real instructions on the same operands (gemm_amx.c, gemm_avx512bf16.c); callable only when
 * qv_gemm_kernels_get(QV_GEMM_AMX / QV_GEMM_AVX512BF16) is non-NULL. For the bench's check that
 * the emulation matches this host's hardware. */
void qv_hw_tdpbf16ps(float *c, const uint32_t *a, const uint32_t *b, int rows, int kp, int n);
void qv_hw_vdpbf16ps(float acc[16], const uint32_t a[16], const uint32_t b[16]);

/* ---- the register-only AMX ceiling (bench/amx_peak.c) ---------------------------------------- */

/* Runs iters rounds of 4 TDPBF16PS on tiles that stay in registers (2x2 C tiles fed by 2 A and 2
 * B tiles, no loads in the loop); returns a value from the result so the work is kept. Each round
 * is 4·16·16·32·2 = 65536 FLOP. AMX hosts only (qv_gemm_kernels_get(QV_GEMM_AMX) != NULL). */
float qv_amx_peak_loop(int64_t iters);

#endif /* QV_SIMD_GEMM_H */
