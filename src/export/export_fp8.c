/* export_fp8.c — the FP8 part of the export driver (ALGORITHMS-2.md §4.4, §4.5; FORMATS.md §4.4,
 * §4.6): E4M3 weights per row or tensor, static input scales and KV-cache scales from the
 * calibration statistics of the scales DIR (T(T(absmax) / 448), zero -> eps(T)). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "export_impl.h"

qv_dtype qv_xp_fp8_T(const xctx *x, size_t i)
{
    return x->p.t[i].layer >= 0 ? x->T : qv_xp_out_dtype(x, x->p.t[i].e->dtype);
}

bool qv_xp_fp8_per_tensor(const xctx *x) { return !strcmp(x->rc.weights.strategy, "tensor"); }

/* Attention module of a decoder layer with separate k/v projections (compressed-tensors'
 * cached-attention rule, ALGORITHMS-2.md §4.5), or NULL. */
char *qv_xp_kv_attn(const xctx *x, size_t li)
{
    char *k = qv_asprintf("%sself_attn.k_proj.weight", x->p.layers[li].prefix);
    char *v = qv_asprintf("%sself_attn.v_proj.weight", x->p.layers[li].prefix);
    char *a = NULL;
    if (k && v && qv_mplan_find(&x->p, k) >= 0 && qv_mplan_find(&x->p, v) >= 0)
        a = qv_asprintf("%sself_attn", x->p.layers[li].prefix);
    qv_free(k);
    qv_free(v);
    return a;
}

int64_t qv_xp_kv_scale_len(const xctx *x)
{
    return !strcmp(x->rc.kv.strategy, "attn_head") ? x->p.cfg.llm.n_kv_heads : 1;
}

/* The calibration statistic a static FP8 scale needs; a missing one is refused before any
 * output exists. */
qv_status qv_xp_need_stat(const xctx *x, qv_stat_kind kind, const char *module, int64_t n, const qv_stat_entry **out)
{
    static const char *kinds[] = {"input", "k", "v"};
    const qv_stat_entry *s = x->have_sc ? qv_scales_stat(&x->sc, kind, module) : NULL;
    if (!s || s->n != n) {
        char where[512];
        if (x->have_sc)
            snprintf(where, sizeof where, "%s has no absmax.%s.%s with %lld value(s)", x->sc.path, kinds[kind], module,
                     (long long)n);
        else
            snprintf(where, sizeof where, "no --scales DIR with absmax.%s.%s was given", kinds[kind], module);
        return qv_fail(QV_ERR_INVALID, "%s: %s scales need calibration statistics: %s (run qvlm quantize with method fp8%s)",
                       x->rc.path, kind == QV_STAT_INPUT ? "static FP8 input" : "FP8 KV-cache", where,
                       kind == QV_STAT_INPUT ? ", or use the FP8_DYNAMIC scheme" : "");
    }
    if (out)
        *out = s;
    return QV_OK;
}

static qv_status fp8_scale_from(const xctx *x, const qv_stat_entry *s, qv_dtype T, float *out)
{
    for (int64_t k = 0; k < s->n; k++) {
        float a = qv_round_to(s->absmax[k], T), v = qv_round_to(a / 448.0f, T);
        if (!(a >= 0.0f) || a == INFINITY)
            return qv_fail(QV_ERR_INVALID, "%s: absmax of %s is %g", x->sc.path, s->module, (double)s->absmax[k]);
        out[k] = v == 0.0f ? qv_dtype_eps(T) : v;
    }
    return QV_OK;
}

qv_status qv_xp_emit_fp8(xctx *x, size_t i, const float *w)
{
    const qv_tinfo *t = &x->p.t[i];
    qv_dtype T = qv_xp_fp8_T(x, i);
    float *own = NULL, in_scale = 0.0f;
    qv_status st = QV_OK;
    if (!w) {
        size_t n = (size_t)(t->e->shape[0] * t->e->shape[1]);
        qv_tensor v;
        qv_st_view(t->file, t->e, &v);
        own = qv_malloc(n * sizeof *own, t->e->name);
        if (!own)
            return QV_ERR_NOMEM;
        qv_convert(own, QV_F32, v.data, v.dtype, n);
        for (size_t k = 0; k < n; k++)
            own[k] = qv_round_to(own[k], T);
        w = own;
    }
    if (x->u[i].static_input) {
        const qv_stat_entry *s;
        st = qv_xp_need_stat(x, QV_STAT_INPUT, t->module, 1, &s);
        if (st == QV_OK)
            st = fp8_scale_from(x, s, T, &in_scale);
    }
    qv_fp8linear q;
    memset(&q, 0, sizeof q);
    if (st == QV_OK)
        st = qv_fp8linear_quantize(&q, w, t->e->shape[0], t->e->shape[1], qv_xp_fp8_per_tensor(x), T, t->module);
    qv_olist l;
    qv_olist_init(&l);
    if (st == QV_OK)
        st = qv_ct_fp8_emit(&l, t->module, t->e->shape[0], t->e->shape[1], qv_xp_fp8_per_tensor(x), T, &q,
                            x->u[i].static_input ? &in_scale : NULL);
    if (st == QV_OK)
        st = qv_xp_put_list(x, &l);
    if (st == QV_OK)
        x->st->n_quantized++;
    qv_olist_free(&l);
    qv_fp8linear_free(&q);
    qv_free(own);
    return st;
}

qv_status qv_xp_emit_kv(xctx *x, size_t li)
{
    char *a = qv_xp_kv_attn(x, li);
    if (!a)
        return QV_OK;
    qv_status st = QV_OK;
    static const qv_stat_kind kinds[2] = {QV_STAT_K, QV_STAT_V};
    static const char *names[2] = {"k", "v"};
    int64_t nh = qv_xp_kv_scale_len(x);
    float *s = qv_malloc((size_t)nh * sizeof *s, "kv scales");
    if (!s)
        st = QV_ERR_NOMEM;
    for (int k = 0; k < 2 && st == QV_OK; k++) {
        const qv_stat_entry *e;
        st = qv_xp_need_stat(x, kinds[k], a, nh, &e);
        if (st == QV_OK)
            st = fp8_scale_from(x, e, x->T, s);
        char *n = st == QV_OK ? qv_asprintf("%s.%s_scale", a, names[k]) : NULL;
        if (st == QV_OK && !n)
            st = QV_ERR_NOMEM;
        if (st == QV_OK)
            st = qv_xp_put_floats(x, n, s, (size_t)nh, x->T);
        qv_free(n);
    }
    qv_free(s);
    qv_free(a);
    return st;
}
