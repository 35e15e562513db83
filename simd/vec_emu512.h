/* vec_emu512.h — the 16-lane primitive contract of vec_avx512.h emulated with pairs of AVX2
 * registers (lanes 0-7 in .lo, 8-15 in .hi). It exists for testing: compiled into emu512_avx2.c,
 * it runs the AVX-512 kernel bodies' 16-lane loop, tail and reduction logic on hosts without
 * AVX-512. The real AVX-512 instructions are only exercised on an AVX-512 host. */
#ifndef QV_SIMD_VEC_EMU512_H
#define QV_SIMD_VEC_EMU512_H

#include "vec_avx2.h"

#undef QV_VL
#define QV_VL 16

typedef struct qv_vf16 {
    __m256 lo, hi;
} qv_vf16;
typedef struct qv_vnan16 {
    __m256 lo, hi;
} qv_vnan16;

#define QV_E2(op, a, b) ((qv_vf16){op((a).lo, (b).lo), op((a).hi, (b).hi)})
#define QV_E1(op, a) ((qv_vf16){op((a).lo), op((a).hi)})

static inline qv_vf16 qv_e_set1(float x) { return (qv_vf16){qv_v_set1(x), qv_v_set1(x)}; }
static inline qv_vf16 qv_e_add(qv_vf16 a, qv_vf16 b) { return QV_E2(qv_v_add, a, b); }
static inline qv_vf16 qv_e_sub(qv_vf16 a, qv_vf16 b) { return QV_E2(qv_v_sub, a, b); }
static inline qv_vf16 qv_e_mul(qv_vf16 a, qv_vf16 b) { return QV_E2(qv_v_mul, a, b); }
static inline qv_vf16 qv_e_div(qv_vf16 a, qv_vf16 b) { return QV_E2(qv_v_div, a, b); }
static inline qv_vf16 qv_e_min(qv_vf16 a, qv_vf16 b) { return QV_E2(qv_v_min, a, b); }
static inline qv_vf16 qv_e_max(qv_vf16 a, qv_vf16 b) { return QV_E2(qv_v_max, a, b); }
static inline qv_vf16 qv_e_abs(qv_vf16 a) { return QV_E1(qv_v_abs, a); }
static inline qv_vf16 qv_e_rint(qv_vf16 a) { return QV_E1(qv_v_rint, a); }
static inline qv_vf16 qv_e_round_bf16(qv_vf16 a) { return QV_E1(qv_v_round_bf16, a); }
static inline qv_vf16 qv_e_round_bf16_nan(qv_vf16 a) { return QV_E1(qv_v_round_bf16_nan, a); }
static inline qv_vf16 qv_e_round_f16(qv_vf16 a) { return QV_E1(qv_v_round_f16, a); }

static inline qv_vf16 qv_e_load_f32(const float *p) { return (qv_vf16){qv_v_load_f32(p), qv_v_load_f32(p + 8)}; }
static inline qv_vf16 qv_e_load_bf16(const uint16_t *p) { return (qv_vf16){qv_v_load_bf16(p), qv_v_load_bf16(p + 8)}; }
static inline qv_vf16 qv_e_load_f16(const uint16_t *p) { return (qv_vf16){qv_v_load_f16(p), qv_v_load_f16(p + 8)}; }
static inline qv_vf16 qv_e_load_f16_exact(const uint16_t *p)
{
    return (qv_vf16){qv_v_load_f16_exact(p), qv_v_load_f16_exact(p + 8)};
}
static inline void qv_e_store_f32(float *p, qv_vf16 v)
{
    qv_v_store_f32(p, v.lo);
    qv_v_store_f32(p + 8, v.hi);
}
static inline void qv_e_store_bf16(uint16_t *p, qv_vf16 v)
{
    qv_v_store_bf16(p, v.lo);
    qv_v_store_bf16(p + 8, v.hi);
}
static inline void qv_e_store_f16(uint16_t *p, qv_vf16 v)
{
    qv_v_store_f16(p, v.lo);
    qv_v_store_f16(p + 8, v.hi);
}

static inline qv_vnan16 qv_e_nan_none(void) { return (qv_vnan16){qv_v_nan_none(), qv_v_nan_none()}; }
static inline qv_vnan16 qv_e_nan_acc(qv_vnan16 acc, qv_vf16 v)
{
    return (qv_vnan16){qv_v_nan_acc(acc.lo, v.lo), qv_v_nan_acc(acc.hi, v.hi)};
}
static inline int qv_e_nan_any(qv_vnan16 acc) { return qv_v_nan_any(acc.lo) || qv_v_nan_any(acc.hi); }
static inline float qv_e_hmin(qv_vf16 v) { return qv_v_hmin(qv_v_min(v.lo, v.hi)); }
static inline float qv_e_hmax(qv_vf16 v) { return qv_v_hmax(qv_v_max(v.lo, v.hi)); }

static inline void qv_e_acc16_add(qv_vacc16 *A, qv_vacc16 *Q, qv_vf16 d, int part)
{
    (void)part;
    qv_vacc16_add(A, Q, d.lo, 0);
    qv_vacc16_add(A, Q, d.hi, 1);
}

/* Rebind the primitive names the bodies use to the 16-lane emulation. */
#define qv_vf qv_vf16
#define qv_vnan qv_vnan16
#define qv_v_set1 qv_e_set1
#define qv_v_add qv_e_add
#define qv_v_sub qv_e_sub
#define qv_v_mul qv_e_mul
#define qv_v_div qv_e_div
#define qv_v_min qv_e_min
#define qv_v_max qv_e_max
#define qv_v_abs qv_e_abs
#define qv_v_rint qv_e_rint
#define qv_v_round_bf16 qv_e_round_bf16
#define qv_v_round_bf16_nan qv_e_round_bf16_nan
#define qv_v_round_f16 qv_e_round_f16
#define qv_v_load_f32 qv_e_load_f32
#define qv_v_load_bf16 qv_e_load_bf16
#define qv_v_load_f16 qv_e_load_f16
#define qv_v_load_f16_exact qv_e_load_f16_exact
#define qv_v_store_f32 qv_e_store_f32
#define qv_v_store_bf16 qv_e_store_bf16
#define qv_v_store_f16 qv_e_store_f16
#define qv_v_nan_none qv_e_nan_none
#define qv_v_nan_acc qv_e_nan_acc
#define qv_v_nan_any qv_e_nan_any
#define qv_v_hmin qv_e_hmin
#define qv_v_hmax qv_e_hmax
#define qv_vacc16_add qv_e_acc16_add

#endif /* QV_SIMD_VEC_EMU512_H */
