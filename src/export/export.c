/* export.c — the `qvlm export` driver (export.h): decide what each tensor becomes, lay every
 * output shard out, check space, then stream layer by layer through apply → codes → pack. */
#include "export.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/fsutil.h"
#include "core/strmap.h"
#include "outdir.h"

#include "export_impl.h"

void qv_export_opts_init(qv_export_opts *o)
{
    memset(o, 0, sizeof *o);
    o->format = QV_FMT_FAKE;
    o->dtype = QV_DTYPE_COUNT;
    o->zero_point = -1;
    o->division = -1;
}

const char *qv_torch_dtype_name(qv_dtype dt)
{
    return dt == QV_F32 ? "float32" : dt == QV_BF16 ? "bfloat16" : dt == QV_F16 ? "float16" : "?";
}

bool qv_dtype_from_torch(const char *s, qv_dtype *dt)
{
    if (!strcmp(s, "float32") || !strcmp(s, "f32") || !strcmp(s, "fp32"))
        *dt = QV_F32;
    else if (!strcmp(s, "bfloat16") || !strcmp(s, "bf16"))
        *dt = QV_BF16;
    else if (!strcmp(s, "float16") || !strcmp(s, "f16") || !strcmp(s, "fp16") || !strcmp(s, "half"))
        *dt = QV_F16;
    else
        return false;
    return true;
}

void qv_xp_log(xctx *x, const char *fmt, ...)
{
    if (!x->o->log)
        return;
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    x->o->log(x->o->log_ctx, buf);
}

/* ---- configuration ------------------------------------------------------------------------------ */

static qv_status resolve_spec(xctx *x)
{
    const qv_export_opts *o = x->o;
    const qv_search_config *c = x->have_sc ? &x->sc.cfg : NULL;
    bool known = c && c->present;
    /* SmoothQuant quantizes its weights per output channel, symmetric, whatever a_bit is
     * (ALGORITHMS.md §4.3, as qv_qmodel_from_scales evaluates them); the w_group and zero_point of
     * its search config are defaults it never used */
    const bool sq = known && !strcmp(c->method, "smoothquant");
    x->qs.bits = o->w_bit ? o->w_bit : known ? c->w_bit : 0;
    x->qs.group = o->w_group ? o->w_group : sq ? -1 : known ? c->w_group : 128;
    x->qs.a_bit = o->a_bit ? o->a_bit : known ? c->a_bit : 16;
    x->qs.sym = o->zero_point >= 0 ? !o->zero_point : sq ? true : known ? !c->zero_point : false;
    x->qs.div = o->division >= 0 ? (o->division ? QV_WQ_DIV_CPU : QV_WQ_DIV_CUDA)
                                 : (known && c->division_cpu ? QV_WQ_DIV_CPU : QV_WQ_DIV_CUDA);
    if (o->format == QV_FMT_FP8 || o->format == QV_FMT_MBQ_PT)
        return QV_OK;
    if (known && !strcmp(c->method, "fp8"))
        return qv_fail(QV_ERR_INVALID, "%s: holds the calibration of an FP8 run (method fp8): export it with --format fp8",
                       x->sc.path);
    if (!x->qs.bits)
        return qv_fail(QV_ERR_INVALID, "%s: the weight bit width is unknown (give --scales DIR with a search.json, or --w-bit)",
                       x->have_sc ? x->sc.path : o->model);
    if (x->qs.bits >= 16)
        return qv_fail(QV_ERR_INVALID, "%s: w_bit %d means no weight quantization; nothing to export as %s",
                       x->have_sc ? x->sc.path : o->model, x->qs.bits, qv_format_name(o->format));
    if (x->qs.bits < 2 || x->qs.bits > 8)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: w_bit %d (2..8 supported)", o->model, x->qs.bits);
    bool wa = x->qs.a_bit < 16;
    if (o->format == QV_FMT_AWQ && wa)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: AWQ holds weight-only group quantization; this is a W%dA%d search (use compressed-tensors)",
                       o->model, x->qs.bits, x->qs.a_bit);
    if (o->format == QV_FMT_AWQ && x->qs.group <= 0)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: AWQ needs group quantization; w_group %lld is per output channel",
                       o->model, (long long)x->qs.group);
    if (o->format == QV_FMT_AWQ && x->qs.bits != 4)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: AWQ stores 4-bit weights only; this search has %d bits (use gptq or compressed-tensors)",
                       o->model, x->qs.bits);
    if (o->format == QV_FMT_AWQ && x->qs.sym)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: AWQ GEMM always carries zero points; a symmetric search exports as gptq or compressed-tensors",
                       o->model);
    if (o->format == QV_FMT_GPTQ && wa)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: GPTQ holds weight-only quantization; these are W%dA%d scales (use compressed-tensors)",
                       o->model, x->qs.bits, x->qs.a_bit);
    if (o->format == QV_FMT_CT && wa && x->qs.a_bit != 8)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: compressed-tensors int-quantized takes 8-bit activations, not %d", o->model,
                       x->qs.a_bit);
    x->ct_int = o->format == QV_FMT_CT && wa;
    return QV_OK;
}

void qv_xp_default_ignore(xctx *x, qv_recipe *r, qv_status *st)
{
    *st = qv_recipe_add(&r->ignore, &r->n_ignore, x->p.lm_head);
    for (size_t i = 0; *st == QV_OK && i < x->p.n_prefix; i++) {
        char *pat = qv_asprintf("re:%s.*", x->p.keep_prefix[i]);
        *st = pat ? qv_recipe_add(&r->ignore, &r->n_ignore, pat) : QV_ERR_NOMEM;
        qv_free(pat);
    }
}

static qv_status setup_recipe(xctx *x)
{
    const qv_export_opts *o = x->o;
    qv_status st = QV_OK;
    /* a `qvlm quantize` fp8 run leaves its scheme in DIR/recipe.yaml */
    char *run_recipe = !o->recipe && o->format == QV_FMT_FP8 && x->have_sc ? qv_path_join(o->scales, "recipe.yaml") : NULL;
    if (run_recipe && !qv_path_exists(run_recipe)) {
        qv_free(run_recipe);
        run_recipe = NULL;
    }
    if (o->recipe || run_recipe) {
        st = qv_recipe_load(o->recipe ? o->recipe : run_recipe, &x->rc);
        qv_free(run_recipe);
        QV_TRY(st);
        x->have_rc = true;
    } else if (o->format == QV_FMT_FP8) {
        memset(&x->rc, 0, sizeof x->rc);
        x->have_rc = true;
        qv_ct_preset("FP8_DYNAMIC", &x->rc.weights, &x->rc.input);
        snprintf(x->rc.scheme, sizeof x->rc.scheme, "FP8_DYNAMIC");
        if (!(x->rc.path = qv_strdup("default FP8_DYNAMIC recipe")))
            return QV_ERR_NOMEM;
        QV_TRY(qv_recipe_add(&x->rc.targets, &x->rc.n_targets, "Linear"));
        qv_xp_default_ignore(x, &x->rc, &st);
        QV_TRY(st);
    }
    if (!x->have_rc)
        return QV_OK;
    const qv_recipe *r = &x->rc;
    if (o->format == QV_FMT_FP8) {
        const qv_ct_args *w = &r->weights, *in = &r->input;
        if (!w->is_float || w->num_bits != 8 || (strcmp(w->strategy, "channel") && strcmp(w->strategy, "tensor")))
            return qv_fail(QV_ERR_UNSUPPORTED, "%s: --format fp8 writes FP8 E4M3 weights per channel or per tensor (schemes FP8, FP8_DYNAMIC)",
                           r->path);
        if (in->present && (!in->is_float || in->num_bits != 8 ||
                            !((in->dynamic && !strcmp(in->strategy, "token")) || (!in->dynamic && !strcmp(in->strategy, "tensor")))))
            return qv_fail(QV_ERR_UNSUPPORTED, "%s: FP8 input activations must be per-token dynamic or per-tensor static", r->path);
        if (r->kv.present && (!r->kv.is_float || r->kv.num_bits != 8 || r->kv.dynamic ||
                              (strcmp(r->kv.strategy, "tensor") && strcmp(r->kv.strategy, "attn_head"))))
            return qv_fail(QV_ERR_UNSUPPORTED, "%s: kv_cache_scheme must be static FP8 per tensor or per head", r->path);
    } else if (o->format == QV_FMT_CT) {
        const qv_ct_args *w = &r->weights;
        if (w->is_float || w->num_bits != x->qs.bits || (w->group_size > 0 && w->group_size != x->qs.group) ||
            w->symmetric != (x->qs.sym || x->qs.a_bit < 16))
            return qv_fail(QV_ERR_INVALID, "%s: the recipe's weight scheme (%d bits, group %lld, %s) differs from the search's (%d bits, group %lld, %s)",
                           r->path, w->num_bits, (long long)w->group_size, w->symmetric ? "symmetric" : "asymmetric",
                           x->qs.bits, (long long)x->qs.group, x->qs.sym || x->qs.a_bit < 16 ? "symmetric" : "asymmetric");
    } else {
        return qv_fail(QV_ERR_INVALID, "%s: --recipe applies to --format fp8 and compressed-tensors", r->path);
    }
    return QV_OK;
}

/* Every scale entry must name modules of one decoder layer, so that the layer-by-layer apply
 * uses each exactly once. */
static qv_status check_scale_names(xctx *x)
{
    for (size_t k = 0; k < x->sc.n; k++) {
        const qv_scale_entry *e = &x->sc.entries[k];
        char *n = qv_module_param(e->prev_op, "weight");
        int64_t i = n ? qv_mplan_find(&x->p, n) : -1;
        qv_free(n);
        if (i < 0 || x->p.t[i].layer < 0)
            return qv_fail(QV_ERR_INVALID, "%s: scale entry %zu: %s is not a module of an LLM decoder layer", x->sc.path, k,
                           e->prev_op);
        for (size_t j = 0; j < e->n_layers; j++) {
            n = qv_module_param(e->layers[j], "weight");
            int64_t f = n ? qv_mplan_find(&x->p, n) : -1;
            qv_free(n);
            if (f < 0 || x->p.t[f].layer != x->p.t[i].layer)
                return qv_fail(QV_ERR_INVALID, "%s: scale entry %zu: %s is not in the decoder layer of %s", x->sc.path, k,
                               e->layers[j], e->prev_op);
        }
    }
    for (size_t k = 0; k < x->sc.n_clip; k++) {
        char *n = qv_module_param(x->sc.clips[k].layer, "weight");
        int64_t i = n ? qv_mplan_find(&x->p, n) : -1;
        qv_free(n);
        if (i < 0 || x->p.t[i].layer < 0)
            return qv_fail(QV_ERR_INVALID, "%s: clip entry %zu: %s is not a decoder linear", x->sc.path, k,
                           x->sc.clips[k].layer);
    }
    return QV_OK;
}

/* ---- decisions and layout --------------------------------------------------------------------- */

qv_dtype qv_xp_out_dtype(const xctx *x, qv_dtype src)
{
    if (x->o->dtype != QV_DTYPE_COUNT && (src == QV_F32 || src == QV_BF16 || src == QV_F16))
        return x->o->dtype;
    return src;
}

static qv_status decide(xctx *x)
{
    x->u = qv_calloc(x->p.n ? x->p.n : 1, sizeof *x->u, "export plan");
    if (!x->u)
        return QV_ERR_NOMEM;
    for (size_t i = 0; i < x->p.n; i++) {
        const qv_tinfo *t = &x->p.t[i];
        unit *u = &x->u[i];
        u->bias = -1;
        u->out_dt = qv_xp_out_dtype(x, t->e->dtype);
        switch (x->o->format) {
        case QV_FMT_FP8:
            if (t->linear) {
                bool in;
                QV_TRY(qv_ct_in_scope(&x->rc, t->module, true, &in));
                if (in) {
                    u->kind = U_QFP8;
                    u->static_input = x->rc.input.present && !x->rc.input.dynamic;
                }
            }
            break;
        case QV_FMT_FAKE:
            if (t->linear && t->layer >= 0)
                u->kind = U_FAKE;
            break;
        default:
            if (t->linear && t->layer >= 0)
                u->kind = U_QINT;
        }
    }
    if (x->o->format == QV_FMT_AWQ || x->o->format == QV_FMT_GPTQ)
        for (size_t i = 0; i < x->p.n; i++) {
            if (x->u[i].kind != U_QINT)
                continue;
            char *b = qv_module_param(x->p.t[i].module, "bias");
            if (!b)
                return QV_ERR_NOMEM;
            int64_t bi = qv_mplan_find(&x->p, b);
            qv_free(b);
            if (bi >= 0) {
                x->u[i].bias = bi;
                x->u[bi].kind = U_SKIP;
            }
        }
    return QV_OK;
}

static qv_qgeom geom_of(const xctx *x, size_t i)
{
    const qv_st_entry *e = x->p.t[i].e;
    bool wa = x->qs.a_bit < 16;
    qv_qgeom g = {.co = e->shape[0], .ci = e->shape[1], .bits = x->qs.bits,
                  .group = (wa || x->qs.group <= 0) ? e->shape[1] : x->qs.group, .sym = wa || x->qs.sym,
                  .has_bias = x->u[i].bias >= 0, .T = x->T};
    return g;
}

static qv_status emit_qint(xctx *x, qv_olist *out, size_t i, const qv_qlinear *q, const float *bias)
{
    const char *m = x->p.t[i].module;
    qv_qgeom g = geom_of(x, i);
    if (g.ci % g.group)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: group size %lld does not divide the input width %lld", m, (long long)g.group,
                       (long long)g.ci);
    switch (x->o->format) {
    case QV_FMT_AWQ:
        QV_TRY(qv_awq_check(&g, m));
        return qv_awq_emit(out, m, &g, q, bias, &x->st->n_f16_inexact);
    case QV_FMT_GPTQ:
        QV_TRY(qv_gptq_check(&g, m));
        return qv_gptq_emit(out, m, &g, q, bias, &x->st->n_f16_inexact);
    case QV_FMT_CT:
        if (x->ct_int)
            return qv_ct_int_emit(out, m, &g, q);
        QV_TRY(qv_ct_pack_check(&g, m));
        return qv_ct_pack_emit(out, m, &g, q);
    default:
        return qv_fail(QV_ERR_INTERNAL, "%s: no integer writer for this format", m);
    }
}






static qv_status layout_add(xctx *x, const qv_olist *l, uint32_t shard)
{
    for (size_t k = 0; k < l->n; k++) {
        const qv_otensor *t = &l->items[k];
        qv_otensor *o = qv_olist_add(&x->outs, t->name, NULL, t->dtype, t->ndim, t->shape, false);
        if (!o)
            return QV_ERR_NOMEM;
        bool dup;
        QV_TRY(qv_strmap_put(&x->out_idx, t->name, strlen(t->name), (int64_t)(x->outs.n - 1), &dup));
        if (dup)
            return qv_fail(QV_ERR_INVALID, "%s: output tensor %s would be written twice", x->o->model, t->name);
        uint32_t *ns = qv_realloc(x->out_shard, x->outs.n * sizeof *ns, "output shards");
        if (!ns)
            return QV_ERR_NOMEM;
        x->out_shard = ns;
        ns[x->outs.n - 1] = shard;
    }
    return QV_OK;
}

static qv_status layout(xctx *x)
{
    qv_olist l;
    qv_olist_init(&l);
    qv_status st = QV_OK;
    for (size_t i = 0; i < x->p.n && st == QV_OK; i++) {
        const qv_tinfo *t = &x->p.t[i];
        const unit *u = &x->u[i];
        if (u->kind == U_SKIP)
            continue;
        if (u->kind == U_COPY || u->kind == U_FAKE) {
            if (!qv_olist_add(&l, t->e->name, NULL, u->out_dt, t->e->ndim, t->e->shape, false))
                st = QV_ERR_NOMEM;
        } else if (u->kind == U_QINT) {
            st = emit_qint(x, &l, i, NULL, NULL);
        } else {
            float one = 1.0f;
            if (u->static_input)
                st = qv_xp_need_stat(x, QV_STAT_INPUT, t->module, 1, NULL);
            if (st == QV_OK)
                st = qv_ct_fp8_emit(&l, t->module, t->e->shape[0], t->e->shape[1], qv_xp_fp8_per_tensor(x), qv_xp_fp8_T(x, i), NULL,
                                    u->static_input ? &one : NULL);
        }
        if (st == QV_OK)
            st = layout_add(x, &l, t->shard);
        qv_olist_free(&l);
    }
    /* FP8 KV-cache scales, in the shard of the layer's k_proj */
    if (st == QV_OK && x->o->format == QV_FMT_FP8 && x->rc.kv.present) {
        size_t n_attn = 0;
        for (size_t li = 0; li < x->p.n_layers && st == QV_OK; li++) {
            char *a = qv_xp_kv_attn(x, li);
            if (!a)
                continue;
            n_attn++;
            int64_t nh = qv_xp_kv_scale_len(x), shape[3] = {nh, 1, 1}, one[1] = {1};
            st = qv_xp_need_stat(x, QV_STAT_K, a, nh, NULL);
            if (st == QV_OK)
                st = qv_xp_need_stat(x, QV_STAT_V, a, nh, NULL);
            if (st != QV_OK) {
                qv_free(a);
                break;
            }
            char *kn = qv_asprintf("%s.k_proj.weight", a);
            int64_t ki = kn ? qv_mplan_find(&x->p, kn) : -1;
            qv_free(kn);
            if (!qv_olist_add(&l, a, "k_scale", x->T, nh > 1 ? 3 : 1, nh > 1 ? shape : one, false) ||
                !qv_olist_add(&l, a, "v_scale", x->T, nh > 1 ? 3 : 1, nh > 1 ? shape : one, false))
                st = QV_ERR_NOMEM;
            if (st == QV_OK)
                st = layout_add(x, &l, ki >= 0 ? x->p.t[ki].shard : 0);
            qv_olist_free(&l);
            qv_free(a);
        }
        if (st == QV_OK && !n_attn)
            st = qv_fail(QV_ERR_UNSUPPORTED, "%s: kv_cache_scheme: no attention module with separate k_proj/v_proj (an InternLM2 wqkv "
                                             "attention is not a cached-attention module for compressed-tensors)",
                         x->rc.path);
    }
    return st;
}

/* ---- writing ------------------------------------------------------------------------------------ */

qv_status qv_xp_put(xctx *x, const char *name, const void *data, size_t n)
{
    int64_t idx;
    if (!qv_strmap_get(&x->out_idx, name, strlen(name), &idx))
        return qv_fail(QV_ERR_INTERNAL, "%s: tensor %s was not laid out", x->o->out, name);
    if (x->outs.items[idx].nbytes != n)
        return qv_fail(QV_ERR_INTERNAL, "%s: tensor %s: %zu bytes produced, %zu laid out", x->o->out, name, n,
                       x->outs.items[idx].nbytes);
    x->st->n_tensors++;
    x->st->bytes += n;
    return qv_st_writer_put(x->w[x->out_shard[idx]], name, data, n);
}

qv_status qv_xp_put_list(xctx *x, const qv_olist *l)
{
    for (size_t k = 0; k < l->n; k++)
        QV_TRY(qv_xp_put(x, l->items[k].name, l->items[k].data, l->items[k].nbytes));
    return QV_OK;
}

qv_status qv_xp_put_floats(xctx *x, const char *name, const float *v, size_t n, qv_dtype dt)
{
    size_t bytes = n * qv_dtype_size(dt);
    void *buf = qv_malloc(bytes ? bytes : 1, name);
    if (!buf)
        return QV_ERR_NOMEM;
    qv_status st = qv_convert(buf, dt, v, QV_F32, n);
    if (st == QV_OK)
        st = qv_xp_put(x, name, buf, bytes);
    qv_free(buf);
    return st;
}

static qv_status put_copy(xctx *x, size_t i)
{
    const qv_tinfo *t = &x->p.t[i];
    qv_tensor v;
    qv_st_view(t->file, t->e, &v);
    size_t n = (size_t)qv_tensor_numel(&v);
    qv_dtype dt = x->u[i].out_dt;
    if (dt == t->e->dtype)
        return qv_xp_put(x, t->e->name, v.data, (size_t)(t->e->end - t->e->begin));
    float *f = qv_malloc((n ? n : 1) * sizeof *f, t->e->name);
    if (!f)
        return QV_ERR_NOMEM;
    qv_status st = qv_convert(f, QV_F32, v.data, v.dtype, n);
    if (st == QV_OK)
        st = qv_xp_put_floats(x, t->e->name, f, n, dt);
    qv_free(f);
    return st;
}

static qv_status quantize_int(xctx *x, size_t i, const float *w, qv_qlinear *q)
{
    const qv_st_entry *e = x->p.t[i].e;
    qv_wq_spec s = qv_qspec_wq(&x->qs, x->T);
    return qv_qlinear_quantize(q, w, e->shape[0], e->shape[1], &s, x->p.t[i].module);
}



static qv_status emit_layer_tensor(xctx *x, size_t i, const qv_wset *ws)
{
    const qv_tinfo *t = &x->p.t[i];
    const unit *u = &x->u[i];
    qv_wbuf *b = qv_wset_find(ws, t->e->name);
    switch (u->kind) {
    case U_SKIP:
        return QV_OK;
    case U_COPY:
        if (!b)
            return put_copy(x, i);
        return qv_xp_put_floats(x, t->e->name, b->data, (size_t)(b->shape[0] * b->shape[1]), u->out_dt);
    case U_QFP8:
        return qv_xp_emit_fp8(x, i, b->data);
    default:
        break;
    }
    qv_qlinear q;
    QV_TRY(quantize_int(x, i, b->data, &q));
    qv_status st = QV_OK;
    x->st->n_quantized++;
    if (u->kind == U_FAKE) {
        float *d = qv_malloc((size_t)(q.co * q.ci) * sizeof *d, t->e->name);
        if (!d)
            st = QV_ERR_NOMEM;
        if (st == QV_OK) {
            qv_qlinear_dequant(&q, d);
            st = qv_xp_put_floats(x, t->e->name, d, (size_t)(q.co * q.ci), u->out_dt);
        }
        qv_free(d);
    } else {
        const float *bias = NULL;
        if (u->bias >= 0) {
            qv_wbuf *bb = qv_wset_find(ws, x->p.t[u->bias].e->name);
            if (!bb)
                st = qv_fail(QV_ERR_INTERNAL, "%s: bias not loaded", t->module);
            else
                bias = bb->data;
        }
        qv_olist l;
        qv_olist_init(&l);
        if (st == QV_OK)
            st = emit_qint(x, &l, i, &q, bias);
        if (st == QV_OK)
            st = qv_xp_put_list(x, &l);
        qv_olist_free(&l);
    }
    qv_qlinear_free(&q);
    return st;
}


static qv_status stream(xctx *x)
{
    size_t applied_total = 0;
    for (size_t li = 0; li < x->p.n_layers; li++) {
        qv_wset ws;
        qv_wset_init(&ws);
        size_t applied = 0;
        qv_status st = qv_mplan_load_layer(&x->p, li, x->have_sc ? &x->sc : NULL, x->T, &ws, &applied);
        const qv_layer *L = &x->p.layers[li];
        for (size_t k = 0; k < L->n && st == QV_OK; k++)
            st = emit_layer_tensor(x, L->tensors[k], &ws);
        if (st == QV_OK && x->o->format == QV_FMT_FP8 && x->rc.kv.present)
            st = qv_xp_emit_kv(x, li);
        qv_wset_free(&ws);
        QV_TRY(st);
        applied_total += applied;
        qv_xp_log(x, "layer %zu/%zu (%s) done, %zu scale entries applied", li + 1, x->p.n_layers, L->prefix, applied);
        /* the layer's pages are not needed again */
        for (size_t k = 0; k < L->n; k++) {
            const qv_tinfo *t = &x->p.t[L->tensors[k]];
            qv_tensor v;
            qv_st_view(t->file, t->e, &v);
            qv_checkpoint_release(x->p.ck, &v);
        }
    }
    for (size_t i = 0; i < x->p.n; i++) {
        if (x->p.t[i].layer >= 0)
            continue;
        qv_status st = x->u[i].kind == U_QFP8 ? qv_xp_emit_fp8(x, i, NULL) : x->u[i].kind == U_SKIP ? QV_OK : put_copy(x, i);
        QV_TRY(st);
    }
    size_t expected = x->have_sc ? x->sc.n + x->sc.n_clip : 0;
    if (applied_total != expected)
        return qv_fail(QV_ERR_INTERNAL, "%s: %zu of %zu scale/clip entries were applied", x->sc.path, applied_total, expected);
    x->st->n_applied = applied_total;
    return QV_OK;
}

/* ---- shards, index, config ------------------------------------------------------------------------ */

static qv_status open_writers(xctx *x)
{
    x->w = qv_calloc(x->p.n_shards, sizeof *x->w, "shard writers");
    if (!x->w)
        return QV_ERR_NOMEM;
    uint64_t need = 0;
    for (size_t k = 0; k < x->outs.n; k++)
        need += x->outs.items[k].nbytes;
    QV_TRY(qv_outdir_check_space(x->o->out, need + (uint64_t)x->p.n_shards * 65536));
    for (size_t s = 0; s < x->p.n_shards; s++) {
        char *path = qv_path_join(x->tmp, x->p.shard_names[s]);
        if (!path)
            return QV_ERR_NOMEM;
        qv_status st = qv_st_writer_open(&x->w[s], path, NULL, 0);
        qv_free(path);
        QV_TRY(st);
    }
    for (size_t k = 0; k < x->outs.n; k++) {
        const qv_otensor *t = &x->outs.items[k];
        QV_TRY(qv_st_writer_add(x->w[x->out_shard[k]], t->name, t->dtype, t->ndim, t->shape));
    }
    for (size_t s = 0; s < x->p.n_shards; s++)
        QV_TRY(qv_st_writer_begin(x->w[s]));
    return QV_OK;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static qv_status finish_writers(xctx *x)
{
    for (size_t s = 0; s < x->p.n_shards; s++) {
        qv_status st = qv_st_writer_finish(x->w[s]);
        x->w[s] = NULL;
        QV_TRY(st);
    }
    if (!x->p.ck->sharded)
        return QV_OK;
    /* model.safetensors.index.json, sorted weight_map, exact total_size (FORMATS.md §1.5) */
    char **names = qv_malloc((x->outs.n ? x->outs.n : 1) * sizeof *names, "index");
    if (!names)
        return QV_ERR_NOMEM;
    uint64_t total = 0;
    for (size_t k = 0; k < x->outs.n; k++) {
        names[k] = x->outs.items[k].name;
        total += x->outs.items[k].nbytes;
    }
    qsort(names, x->outs.n, sizeof *names, cmp_str);
    qv_strbuf sb;
    qv_sb_init(&sb);
    qv_sb_printf(&sb, "{\n  \"metadata\": {\n    \"total_size\": %llu\n  },\n  \"weight_map\": {", (unsigned long long)total);
    for (size_t k = 0; k < x->outs.n; k++) {
        int64_t idx;
        qv_strmap_get(&x->out_idx, names[k], strlen(names[k]), &idx);
        const char *sn = x->p.shard_names[x->out_shard[idx]];
        qv_sb_puts(&sb, k ? ",\n    " : "\n    ");
        qv_sb_json_str(&sb, names[k], strlen(names[k]));
        qv_sb_puts(&sb, ": ");
        qv_sb_json_str(&sb, sn, strlen(sn));
    }
    qv_sb_puts(&sb, "\n  }\n}\n");
    qv_free(names);
    char *ip = qv_path_join(x->tmp, "model.safetensors.index.json");
    qv_status st = sb.oom || !ip ? QV_ERR_NOMEM : qv_write_file_atomic(ip, sb.s, sb.len);
    qv_free(ip);
    qv_sb_free(&sb);
    return st;
}



/* ---- mbq-pt --------------------------------------------------------------------------------------- */


/* ---- driver --------------------------------------------------------------------------------------- */

static void xctx_free(xctx *x)
{
    if (x->w)
        for (size_t s = 0; s < x->p.n_shards; s++)
            qv_st_writer_abort(x->w[s]);
    qv_free(x->w);
    qv_free(x->u);
    qv_free(x->out_shard);
    qv_olist_free(&x->outs);
    qv_strmap_free(&x->out_idx);
    if (x->have_rc)
        qv_recipe_free(&x->rc);
    if (x->have_sc)
        qv_scales_free(&x->sc);
    qv_mplan_close(&x->p);
}

static qv_status check_memory(xctx *x)
{
    if (!x->o->max_memory)
        return QV_OK;
    uint64_t worst = 0;
    for (size_t li = 0; li < x->p.n_layers; li++) {
        uint64_t b = 0, big = 0;
        for (size_t k = 0; k < x->p.layers[li].n; k++) {
            const qv_st_entry *e = x->p.t[x->p.layers[li].tensors[k]].e;
            uint64_t n = 1;
            for (int d = 0; d < e->ndim; d++)
                n *= (uint64_t)e->shape[d];
            b += 4 * n;
            big = n > big ? n : big;
        }
        b += 6 * big; /* codes, scales and the packed copy of the largest linear */
        worst = b > worst ? b : worst;
    }
    if (worst > x->o->max_memory)
        return qv_fail(QV_ERR_INVALID, "%s: one decoder layer needs about %llu bytes, more than --max-memory %llu", x->o->model,
                       (unsigned long long)worst, (unsigned long long)x->o->max_memory);
    return QV_OK;
}

qv_status qv_export_run(const qv_export_opts *o, qv_export_stats *stats)
{
    xctx x;
    memset(&x, 0, sizeof x);
    memset(stats, 0, sizeof *stats);
    x.o = o;
    x.st = stats;
    qv_olist_init(&x.outs);
    qv_strmap_init(&x.out_idx);
    if (o->dtype != QV_DTYPE_COUNT && o->dtype != QV_F32 && o->dtype != QV_BF16 && o->dtype != QV_F16)
        return qv_fail(QV_ERR_INVALID, "--dtype must be float32, bfloat16 or float16");
    qv_status st = qv_mplan_open(o->model, &x.p);
    if (st != QV_OK)
        return st;
    x.T = o->dtype != QV_DTYPE_COUNT ? o->dtype : x.p.T;
    if (o->scales) {
        QV_CHECK(st = qv_scales_load(o->scales, &x.sc), done);
        x.have_sc = true;
        if (o->format != QV_FMT_MBQ_PT) {
            QV_CHECK(st = qv_scales_resolve(&x.sc, qv_mplan_has_module, &x.p), done);
            QV_CHECK(st = check_scale_names(&x), done);
        }
    } else if (o->format == QV_FMT_MBQ_PT) {
        st = qv_fail(QV_ERR_INVALID, "%s: --format mbq-pt writes a scale list: give --scales DIR", o->model);
        goto done;
    }
    QV_CHECK(st = resolve_spec(&x), done);
    QV_CHECK(st = setup_recipe(&x), done);
    QV_CHECK(st = qv_outdir_begin(o->out, o->force, o->format == QV_FMT_MBQ_PT, &x.tmp), done);
    if (o->format == QV_FMT_MBQ_PT) {
        QV_CHECK(st = qv_mbqpt_write(x.tmp, &x.sc, x.T), done);
        snprintf(stats->detail, sizeof stats->detail, "MBQ scale list, %s", qv_torch_dtype_name(x.T));
        st = qv_outdir_commit(x.tmp, o->out);
        goto done;
    }
    QV_CHECK(st = check_memory(&x), done);
    QV_CHECK(st = decide(&x), done);
    QV_CHECK(st = layout(&x), done);
    QV_CHECK(st = qv_outdir_copy_aux(o->model, x.tmp), done);
    QV_CHECK(st = qv_xp_write_config(&x), done);
    QV_CHECK(st = open_writers(&x), done);
    qv_xp_log(&x, "writing %zu tensors in %zu shard(s) to %s", x.outs.n, x.p.n_shards, o->out);
    QV_CHECK(st = stream(&x), done);
    QV_CHECK(st = finish_writers(&x), done);
    st = qv_outdir_commit(x.tmp, o->out);
done:
    if (st != QV_OK && x.tmp) {
        qv_error_state es;
        qv_error_save(&es, st);
        /* the message names the file under the destination, not the temporary folder that is
         * about to be removed ("OUT/tokenizer.json: No space left on device") */
        char *at = strstr(es.msg, x.tmp);
        if (at) {
            char rest[QV_ERROR_MAX];
            snprintf(rest, sizeof rest, "%s", at + strlen(x.tmp));
            snprintf(at, sizeof es.msg - (size_t)(at - es.msg), "%s%s", o->out, rest);
        }
        xctx_free(&x); /* aborts the shard writers (their own temporaries) first */
        qv_outdir_abort(x.tmp);
        qv_free(x.tmp);
        return qv_error_restore(&es);
    }
    xctx_free(&x);
    qv_free(x.tmp);
    return st;
}
