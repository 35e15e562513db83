/* export_impl.h — state shared by the files of the export driver (export.c: decisions, layout,
 * streaming; export_fp8.c: FP8 weights, static input and KV-cache scales; export_config.c: the
 * rewritten config.json). Private to src/export. */
#ifndef QV_EXPORT_IMPL_H
#define QV_EXPORT_IMPL_H

#include "core/strmap.h"
#include "export.h"
#include "plan.h"
#include "recipe.h"

enum { U_COPY = 0, U_SKIP, U_QINT, U_FAKE, U_QFP8 };

typedef struct unit {
    int kind;
    int64_t bias;      /* bias tensor folded into a QINT output (AWQ/GPTQ), or -1 */
    qv_dtype out_dt;   /* COPY / FAKE */
    bool static_input; /* QFP8 with a stored input_scale */
} unit;

typedef struct xctx {
    const qv_export_opts *o;
    qv_export_stats *st;
    qv_mplan p;
    qv_scales sc;
    bool have_sc;
    qv_recipe rc;
    bool have_rc;
    qv_qspec qs;
    qv_dtype T;
    char *tmp;
    unit *u;
    qv_olist outs;      /* layout: every output tensor, no data */
    uint32_t *out_shard;
    qv_strmap out_idx;  /* name -> index in outs */
    qv_st_writer **w;
    bool ct_int;        /* compressed-tensors int-quantized (W-A search) */
} xctx;

/* Output dtype of a float tensor: --dtype, else its own. */
qv_dtype qv_xp_out_dtype(const xctx *x, qv_dtype src);
void qv_xp_log(xctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The LM head's exact name and "re:<prefix>.*" for each vision / projector prefix. */
void qv_xp_default_ignore(xctx *x, qv_recipe *r, qv_status *st);
/* Writes one output tensor (declared in the layout pass) / a list / F32 values as dt. */
qv_status qv_xp_put(xctx *x, const char *name, const void *data, size_t n);
qv_status qv_xp_put_list(xctx *x, const qv_olist *l);
qv_status qv_xp_put_floats(xctx *x, const char *name, const float *v, size_t n, qv_dtype dt);

/* export_fp8.c */
qv_dtype qv_xp_fp8_T(const xctx *x, size_t i);
bool qv_xp_fp8_per_tensor(const xctx *x);
char *qv_xp_kv_attn(const xctx *x, size_t li);
int64_t qv_xp_kv_scale_len(const xctx *x);
qv_status qv_xp_need_stat(const xctx *x, qv_stat_kind kind, const char *module, int64_t n, const qv_stat_entry **out);
/* w: the weight's T values, or NULL to read it from the checkpoint */
qv_status qv_xp_emit_fp8(xctx *x, size_t i, const float *w);
qv_status qv_xp_emit_kv(xctx *x, size_t li);

/* export_config.c */
qv_status qv_xp_write_config(xctx *x);

#endif
