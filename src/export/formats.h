/* formats.h — the tensors each checkpoint format stores for one quantized Linear, and the way
 * back (FORMATS.md §2 AutoAWQ GEMM, §3 GPTQ v1, §4 compressed-tensors pack-quantized,
 * int-quantized and float-quantized). One file per format: awq.c, gptq.c, ctensors.c.
 *
 * Every writer works in two passes with the same code: layout (shapes and dtypes only, so that
 * the export can size and declare every shard before computing anything) and emit (the bytes).
 * Readers rebuild a qv_qlinear / qv_fp8linear from a checkpoint for verification. */
#ifndef QV_EXPORT_FORMATS_H
#define QV_EXPORT_FORMATS_H

#include "io/safetensors.h"
#include "qlinear.h"

typedef enum qv_fmt {
    QV_FMT_FAKE = 0,
    QV_FMT_AWQ,
    QV_FMT_GPTQ,
    QV_FMT_CT,      /* compressed-tensors with integer weights: pack-quantized or int-quantized */
    QV_FMT_FP8,     /* compressed-tensors float-quantized */
    QV_FMT_MBQ_PT,
    QV_FMT_COUNT
} qv_fmt;

const char *qv_format_name(qv_fmt f);
bool qv_format_parse(const char *s, qv_fmt *f);

/* One output tensor. data is NULL in the layout pass, else owned (nbytes). */
typedef struct qv_otensor {
    char *name;
    qv_dtype dtype;
    int ndim;
    int64_t shape[QV_MAX_DIMS];
    void *data;
    size_t nbytes;
} qv_otensor;

typedef struct qv_olist {
    size_t n, cap;
    qv_otensor *items;
} qv_olist;

void qv_olist_init(qv_olist *l);
void qv_olist_free(qv_olist *l);
/* Appends a tensor "<module>.<suffix>"; allocates zeroed bytes when with_data. Returns the
 * entry (valid until the next add) or NULL on OOM. */
qv_otensor *qv_olist_add(qv_olist *l, const char *module, const char *suffix, qv_dtype dt, int ndim,
                         const int64_t *shape, bool with_data);
int64_t qv_otensor_numel(const qv_otensor *t);

/* Geometry and kind of one quantized linear (what the layout pass needs). */
typedef struct qv_qgeom {
    int64_t co, ci;
    int bits;
    int64_t group;   /* ci for one group per row */
    bool sym;
    bool has_bias;
    qv_dtype T;      /* dtype of scales stored in T and of the bias when it is kept */
    qv_dtype bias_dt;
} qv_qgeom;

/* Checks a geometry against the format's constraints ("<module>: AWQ needs ..."). */
qv_status qv_awq_check(const qv_qgeom *g, const char *module);
qv_status qv_gptq_check(const qv_qgeom *g, const char *module);
qv_status qv_ct_pack_check(const qv_qgeom *g, const char *module);

/* AutoAWQ GEMM: qweight, qzeros, scales (F16), bias (F16). q NULL = layout only. bias holds the
 * layer's bias values (T values) when g->has_bias. *inexact counts scales F16 cannot hold. */
qv_status qv_awq_emit(qv_olist *out, const char *module, const qv_qgeom *g, const qv_qlinear *q, const float *bias,
                      size_t *inexact);
qv_status qv_awq_read(const qv_checkpoint *ck, const char *module, qv_qlinear *q);

/* GPTQ v1: qweight, qzeros (z - 1), scales (F16), g_idx, bias (F16). */
qv_status qv_gptq_emit(qv_olist *out, const char *module, const qv_qgeom *g, const qv_qlinear *q, const float *bias,
                       size_t *inexact);
/* Reads a GPTQ module; v2 = true for checkpoint_format "gptq_v2" (zero fields store z). */
qv_status qv_gptq_read(const qv_checkpoint *ck, const char *module, int bits, bool v2, qv_qlinear *q);

/* compressed-tensors pack-quantized: weight_packed, weight_scale (T), weight_zero_point (asym),
 * weight_shape. The bias is not part of the quantized tensors (kept by the caller). */
qv_status qv_ct_pack_emit(qv_olist *out, const char *module, const qv_qgeom *g, const qv_qlinear *q);
qv_status qv_ct_pack_read(const qv_checkpoint *ck, const char *module, int bits, bool sym, qv_qlinear *q);
/* int-quantized: weight (I8 signed codes), weight_scale (T, [co, 1]); symmetric per channel. */
qv_status qv_ct_int_emit(qv_olist *out, const char *module, const qv_qgeom *g, const qv_qlinear *q);
qv_status qv_ct_int_read(const qv_checkpoint *ck, const char *module, int bits, qv_qlinear *q);
/* float-quantized: weight (F8_E4M3), weight_scale (T, [co, 1] or [1]), input_scale (T [1],
 * static activations only; *input_scale given in T). */
qv_status qv_ct_fp8_emit(qv_olist *out, const char *module, int64_t co, int64_t ci, bool per_tensor, qv_dtype T,
                         const qv_fp8linear *q, const float *input_scale);
qv_status qv_ct_fp8_read(const qv_checkpoint *ck, const char *module, qv_fp8linear *q);

/* Helpers shared by the format files. F16 image of T scales: an infinite result is an error,
 * an inexact one is counted in *inexact (may be NULL). */
qv_status qv_scales_to_f16(uint16_t *dst, const float *s, size_t n, const char *module, size_t *inexact);
/* "<module>.<suffix>" from a checkpoint with the given dtype ((qv_dtype)-1: any) and rank. */
qv_status qv_ck_get_typed(const qv_checkpoint *ck, const char *module, const char *suffix, qv_dtype dt, int ndim,
                          qv_tensor *t);

#endif
