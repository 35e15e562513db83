/* fp8.c — the FP8 model of `method: fp8` (fp8.h): scheme and scope, calibration statistics, the
 * decoder layer hook and the vision hook, and the files a run leaves for `qvlm export --format
 * fp8` (ALGORITHMS-2.md §4; FORMATS.md §4.4, §4.6, §7.1–7.2). */
#include "fp8.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/fsutil.h"
#include "../export/plan.h"
#include "../export/qlinear.h"
#include "../io/safetensors.h"
#include "../llm/llm.h"

static const char *const k_kind[] = {"input", "k", "v"};

/* ---- scheme ------------------------------------------------------------------------------------ */

/* The default: FP8_DYNAMIC on every Linear but the LM head, the projector and the vision tower. */
static qv_status default_recipe(qv_fp8_model *f, const qv_mplan *p)
{
    qv_recipe *r = &f->rc;
    memset(r, 0, sizeof *r);
    qv_ct_preset("FP8_DYNAMIC", &r->weights, &r->input);
    snprintf(r->scheme, sizeof r->scheme, "FP8_DYNAMIC");
    if (!(r->path = qv_strdup("the default FP8_DYNAMIC recipe")))
        return QV_ERR_NOMEM;
    QV_TRY(qv_recipe_add(&r->targets, &r->n_targets, "Linear"));
    QV_TRY(qv_recipe_add(&r->ignore, &r->n_ignore, "re:.*lm_head"));
    for (size_t i = 0; i < p->n_prefix; i++) { /* projector first, then vision (plan.h) */
        char *pat = qv_asprintf("re:%s.*", p->keep_prefix[i]);
        qv_status st = pat ? qv_recipe_add(&r->ignore, &r->n_ignore, pat) : QV_ERR_NOMEM;
        qv_free(pat);
        QV_TRY(st);
    }
    f->default_recipe = true;
    return QV_OK;
}

/* What the runner can fake-quantize (the FP8 export's checks, plus symmetry). */
static qv_status check_scheme(qv_fp8_model *f)
{
    const qv_recipe *r = &f->rc;
    const qv_ct_args *w = &r->weights, *in = &r->input, *kv = &r->kv;
    if (!w->is_float || w->num_bits != 8 || !w->symmetric || (strcmp(w->strategy, "channel") && strcmp(w->strategy, "tensor")))
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: method fp8 needs symmetric FP8 E4M3 weights per channel or per tensor "
                       "(schemes FP8, FP8_DYNAMIC), not %s%d %s", r->path, w->is_float ? "float" : "int", w->num_bits,
                       w->strategy);
    f->w_per_tensor = !strcmp(w->strategy, "tensor");
    f->act = QV_FP8_ACT_NONE;
    if (in->present) {
        if (!in->is_float || in->num_bits != 8 || !in->symmetric)
            return qv_fail(QV_ERR_UNSUPPORTED, "%s: method fp8 needs symmetric FP8 input activations, not %s%d", r->path,
                           in->is_float ? "float" : "int", in->num_bits);
        if (in->dynamic && !strcmp(in->strategy, "token"))
            f->act = QV_FP8_ACT_TOKEN;
        else if (!in->dynamic && !strcmp(in->strategy, "tensor"))
            f->act = QV_FP8_ACT_TENSOR;
        else
            return qv_fail(QV_ERR_UNSUPPORTED, "%s: FP8 input activations must be per-token dynamic or per-tensor static, "
                           "not %s %s", r->path, in->dynamic ? "dynamic" : "static", in->strategy);
    }
    f->kv_n = 0;
    if (kv->present) {
        if (!kv->is_float || kv->num_bits != 8 || kv->dynamic || !kv->symmetric ||
            (strcmp(kv->strategy, "tensor") && strcmp(kv->strategy, "attn_head")))
            return qv_fail(QV_ERR_UNSUPPORTED, "%s: kv_cache_scheme must be static symmetric FP8 per tensor or per head "
                           "(attn_head)", r->path);
        f->kv_n = 1;
    }
    return QV_OK;
}

/* ---- scope ------------------------------------------------------------------------------------ */

static qv_status add_lin(qv_fp8_model *f, const char *module, qv_part part, int64_t layer, int lin)
{
    qv_fp8_lin *nl = qv_realloc(f->lins, (f->n_lins + 1) * sizeof *nl, "FP8 scope");
    if (!nl)
        return QV_ERR_NOMEM;
    f->lins = nl;
    nl[f->n_lins] = (qv_fp8_lin){.module = qv_strdup(module), .part = part, .layer = layer, .lin = lin};
    if (!nl[f->n_lins].module)
        return QV_ERR_NOMEM;
    f->n_lins++;
    return QV_OK;
}

static qv_status attn_name(const qv_llm *m, int64_t layer, char *buf, size_t n)
{
    qv_llm_lin_name(m, layer, QV_LIN_K, buf, n);
    size_t len = strlen(buf);
    if (len < 7 || strcmp(buf + len - 7, ".k_proj"))
        return qv_fail(QV_ERR_INTERNAL, "%s: not a k_proj module", buf);
    buf[len - 7] = 0;
    return QV_OK;
}

/* Whether `module` is a decoder Linear the runner knows. */
static bool runner_knows(const qv_llm *m, const char *module)
{
    char name[448];
    for (int64_t i = 0; i < m->c->n_layers; i++)
        for (int l = 0; l < QV_LIN_COUNT; l++)
            if (qv_llm_has_lin(m, (qv_llm_lin)l) && !strcmp(qv_llm_lin_name(m, i, (qv_llm_lin)l, name, sizeof name), module))
                return true;
    return false;
}

/* Every Linear of the checkpoint (the export's plan, so both see the same modules): decoder
 * Linears by (layer, kind) through the runner's names, vision / projector Linears by name for the
 * hook; an in-scope LM head or a Linear the model never runs is refused. */
static qv_status decide_scope(qv_fp8_model *f, const qv_llm *m, const qv_mplan *p)
{
    const int64_t NL = m->c->n_layers;
    f->n_layers = NL;
    f->llm_in = qv_calloc((size_t)(NL * QV_LIN_COUNT) + 1, sizeof *f->llm_in, "FP8 scope");
    f->attn = qv_calloc((size_t)NL + 1, sizeof *f->attn, "FP8 scope");
    if (!f->llm_in || !f->attn)
        return QV_ERR_NOMEM;
    char name[448];
    for (int64_t i = 0; i < NL; i++) {
        for (int l = 0; l < QV_LIN_COUNT; l++) {
            if (!qv_llm_has_lin(m, (qv_llm_lin)l))
                continue;
            qv_llm_lin_name(m, i, (qv_llm_lin)l, name, sizeof name);
            bool in;
            QV_TRY(qv_ct_in_scope(&f->rc, name, true, &in));
            f->llm_in[i * QV_LIN_COUNT + l] = in;
            if (in) {
                QV_TRY(add_lin(f, name, QV_PART_LLM, i, l));
                f->n.llm++;
            }
        }
        /* compressed-tensors puts KV scales on attentions with k/v projections only (§4.5):
         * every decoder layer's, whatever the ignore list says, as the FP8 export writes them */
        if (f->kv_n && qv_llm_has_lin(m, QV_LIN_K) && qv_llm_has_lin(m, QV_LIN_V)) {
            QV_TRY(attn_name(m, i, name, sizeof name));
            if (!(f->attn[i] = qv_strdup(name)))
                return QV_ERR_NOMEM;
            f->n.kv_attn++;
        }
    }
    if (f->kv_n && !strcmp(f->rc.kv.strategy, "attn_head"))
        f->kv_n = m->KV;
    for (size_t i = 0; i < p->n; i++) {
        const qv_tinfo *t = &p->t[i];
        if (!t->linear)
            continue;
        bool in;
        QV_TRY(qv_ct_in_scope(&f->rc, t->module, true, &in));
        if (!in)
            continue;
        if (t->part == QV_PART_VISION || t->part == QV_PART_PROJECTOR) {
            QV_TRY(qv_strmap_put(&f->vis_in, t->module, strlen(t->module), (int64_t)f->n_lins, NULL));
            QV_TRY(add_lin(f, t->module, t->part, -1, -1));
            if (t->part == QV_PART_VISION)
                f->n.vision++;
            else
                f->n.projector++;
        } else if (p->lm_head && !strcmp(t->module, p->lm_head)) {
            return qv_fail(QV_ERR_UNSUPPORTED, "%s: the LM head %s is in the recipe's scope; qvlm does not evaluate an FP8 "
                           "LM head (add \"re:.*lm_head\" to ignore)", f->rc.path, t->module);
        } else if (!runner_knows(m, t->module)) {
            return qv_fail(QV_ERR_UNSUPPORTED, "%s: %s is in the recipe's scope but qvlm's model never runs it; add it to "
                           "ignore", f->rc.path, t->module);
        }
    }
    if (!f->n_lins)
        return qv_fail(QV_ERR_INVALID, "%s: no Linear of %s is in the recipe's scope", f->rc.path, m->dir);
    return QV_OK;
}

qv_status qv_fp8_open(qv_fp8_model *f, const qv_llm *m, const char *recipe, qv_dtype T)
{
    memset(f, 0, sizeof *f);
    f->T = T;
    qv_strmap_init(&f->vis_in);
    qv_strmap_init(&f->stat_idx);
    qv_mplan p;
    memset(&p, 0, sizeof p);
    qv_status st = qv_mplan_open(m->dir, &p);
    if (st == QV_OK)
        st = recipe ? qv_recipe_load(recipe, &f->rc) : default_recipe(f, &p);
    if (st == QV_OK)
        snprintf(f->scheme, sizeof f->scheme, "%s", f->rc.scheme);
    if (st == QV_OK)
        st = check_scheme(f);
    if (st == QV_OK)
        st = decide_scope(f, m, &p);
    qv_mplan_close(&p);
    if (st != QV_OK)
        qv_fp8_close(f);
    return st;
}

void qv_fp8_close(qv_fp8_model *f)
{
    if (!f)
        return;
    qv_recipe_free(&f->rc);
    for (size_t i = 0; i < f->n_lins; i++)
        qv_free(f->lins[i].module);
    qv_free(f->lins);
    qv_free(f->llm_in);
    for (int64_t i = 0; f->attn && i < f->n_layers; i++)
        qv_free(f->attn[i]);
    qv_free(f->attn);
    qv_strmap_free(&f->vis_in);
    for (size_t i = 0; i < f->n_stat; i++) {
        qv_free(f->stats[i].module);
        qv_free(f->stats[i].absmax);
    }
    qv_free(f->stats);
    qv_strmap_free(&f->stat_idx);
    qv_free(f->lf);
    qv_free(f->kv_scales);
    memset(f, 0, sizeof *f);
}

bool qv_fp8_needs_stats(const qv_fp8_model *f) { return f->act == QV_FP8_ACT_TENSOR || f->n.kv_attn > 0; }

/* ---- statistics ---------------------------------------------------------------------------------- */

static char *stat_key(qv_stat_kind kind, const char *module) { return qv_asprintf("%s:%s", k_kind[kind], module); }

const qv_stat_entry *qv_fp8_stat(const qv_fp8_model *f, qv_stat_kind kind, const char *module)
{
    char *k = stat_key(kind, module);
    int64_t i;
    bool found = k && qv_strmap_gets(&f->stat_idx, k, &i);
    qv_free(k);
    return found ? &f->stats[i] : NULL;
}

static qv_status stat_new(qv_fp8_model *f, const char *key, qv_stat_kind kind, const char *module, int64_t n, int64_t *idx)
{
    qv_stat_entry *ne = qv_realloc(f->stats, (f->n_stat + 1) * sizeof *ne, "FP8 statistics");
    if (!ne)
        return QV_ERR_NOMEM;
    f->stats = ne;
    qv_stat_entry *e = &ne[f->n_stat];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    e->n = n;
    e->module = qv_strdup(module);
    e->absmax = qv_calloc((size_t)n, sizeof *e->absmax, "FP8 statistics");
    if (!e->module || !e->absmax) {
        qv_free(e->module);
        qv_free(e->absmax);
        return QV_ERR_NOMEM;
    }
    *idx = (int64_t)f->n_stat++;
    return qv_strmap_put(&f->stat_idx, key, strlen(key), *idx, NULL);
}

qv_status qv_fp8_stat_update(qv_fp8_model *f, qv_stat_kind kind, const char *module, const float *v, int64_t n)
{
    char *k = stat_key(kind, module);
    if (!k)
        return QV_ERR_NOMEM;
    int64_t i;
    qv_status st = qv_strmap_gets(&f->stat_idx, k, &i) ? QV_OK : stat_new(f, k, kind, module, n, &i);
    qv_free(k);
    QV_TRY(st);
    qv_stat_entry *e = &f->stats[i];
    if (e->n != n)
        return qv_fail(QV_ERR_INTERNAL, "%s: statistic %s of %lld values updated with %lld", module, k_kind[kind],
                       (long long)e->n, (long long)n);
    for (int64_t j = 0; j < n; j++) {
        if (!(v[j] <= 3.4028234663852886e38f))
            return qv_fail(QV_ERR_INVALID, "%s: the %s activations hold NaN or Inf during calibration", module,
                           kind == QV_STAT_INPUT ? "input" : kind == QV_STAT_K ? "key" : "value");
        e->absmax[j] = v[j] > e->absmax[j] ? v[j] : e->absmax[j];
    }
    return QV_OK;
}

/* absmax over the rows with keep[r] set (NULL: all) of x [rows, cols], per group of cols / n
 * columns (out [n]) — max(|min(x, 0)|, max(x, 0)), the static_minmax observer's symmetric range;
 * NaN propagates so that qv_fp8_stat_update refuses it. */
static void absmax_rows(float *out, int64_t n, const float *x, int64_t rows, int64_t cols, const uint8_t *keep)
{
    const int64_t gw = cols / n;
    for (int64_t g = 0; g < n; g++)
        out[g] = 0.0f;
    for (int64_t r = 0; r < rows; r++) {
        if (keep && !keep[r])
            continue;
        const float *xr = x + r * cols;
        for (int64_t j = 0; j < cols; j++) {
            float a = fabsf(xr[j]);
            if (a > out[j / gw] || a != a)
                out[j / gw] = a;
        }
    }
}

/* Which capture holds the input of a decoder Linear. */
static const float *lin_input(const qv_llm_capture *c, qv_llm_lin l)
{
    switch (l) {
    case QV_LIN_O: return c->o_in;
    case QV_LIN_GATE:
    case QV_LIN_UP: return c->mlp_in;
    case QV_LIN_DOWN: return c->down_in;
    default: return c->attn_in;
    }
}

/* One sample's captures of layer i folded into the statistics. */
static qv_status observe_layer(qv_fp8_model *f, const qv_llm *m, int64_t i, const qv_llm_capture *c, int64_t L,
                               const uint8_t *keep, float *tmp)
{
    char name[448];
    if (f->act == QV_FP8_ACT_TENSOR)
        for (int l = 0; l < QV_LIN_COUNT; l++) {
            if (!f->llm_in[i * QV_LIN_COUNT + l])
                continue;
            absmax_rows(tmp, 1, lin_input(c, (qv_llm_lin)l), L, qv_llm_lin_in(m, (qv_llm_lin)l), keep);
            QV_TRY(qv_fp8_stat_update(f, QV_STAT_INPUT, qv_llm_lin_name(m, i, (qv_llm_lin)l, name, sizeof name), tmp, 1));
        }
    if (f->attn[i]) {
        absmax_rows(tmp, f->kv_n, c->k, L, m->KV * m->d, keep);
        QV_TRY(qv_fp8_stat_update(f, QV_STAT_K, f->attn[i], tmp, f->kv_n));
        absmax_rows(tmp, f->kv_n, c->v, L, m->KV * m->d, keep);
        QV_TRY(qv_fp8_stat_update(f, QV_STAT_V, f->attn[i], tmp, f->kv_n));
    }
    return QV_OK;
}

qv_status qv_fp8_calibrate(qv_fp8_model *f, qv_llm *m, const qv_llm_batch *b, float *h, qv_progress *prog)
{
    if (!(f->act == QV_FP8_ACT_TENSOR && f->n.llm) && !f->n.kv_attn)
        return QV_OK;
    if (m->layer_hook)
        return qv_fail(QV_ERR_INTERNAL, "%s: FP8 statistics are taken on the FP model (a layer hook is installed)", m->dir);
    const int64_t B = b->B, L = b->L, C = m->C, qd = m->H * m->d, kd = m->KV * m->d, NL = m->c->n_layers;
    const size_t per = (size_t)L * (size_t)(2 * C + qd + m->I + 2 * kd) + (size_t)QV_MAX(m->KV, 1);
    float *cb = qv_aligned_alloc(64, per * sizeof *cb + 64, "calibration captures");
    qv_llm_ctx ctx = {0};
    qv_llm_layer layer = {0};
    qv_status st = cb ? QV_OK : QV_ERR_NOMEM;
    if (st != QV_OK)
        goto done;
    qv_llm_capture cap = {.attn_in = cb, .mlp_in = cb + L * C, .o_in = cb + 2 * L * C};
    cap.down_in = cap.o_in + L * qd;
    cap.k = cap.down_in + L * m->I;
    cap.v = cap.k + L * kd;
    float *tmp = cap.v + L * kd;
    QV_CHECK(st = qv_llm_ctx_init(m, &ctx, B, L, b->attention_mask, b->position_ids, b->mrope_position_ids), done);
    for (int64_t i = 0; i < NL && st == QV_OK; i++) {
        QV_CHECK(st = qv_llm_layer_load(m, i, &layer), done);
        /* one sample at a time: the captures of one sample, all samples through this layer */
        for (int64_t s = 0; s < B && st == QV_OK; s++) {
            qv_llm_ctx cs;
            qv_llm_ctx_slice(&ctx, s, 1, &cs);
            float *hs = h + s * L * C;
            st = qv_llm_layer_forward(m, &layer.w, &cs, hs, hs, QV_F32, &cap);
            if (st == QV_OK)
                st = observe_layer(f, m, i, &cap, L, b->attention_mask ? b->attention_mask + s * L : NULL, tmp);
        }
        qv_llm_layer_release(m, &layer);
        char what[48];
        snprintf(what, sizeof what, "layer %lld", (long long)i);
        qv_progress_step(prog, 1, what);
    }
done:
    qv_llm_layer_release(m, &layer);
    qv_llm_ctx_free(&ctx);
    qv_free(cb);
    return st;
}

qv_status qv_fp8_check_stats(const qv_fp8_model *f, const char *what)
{
    size_t missing = 0;
    const char *first = NULL;
    if (f->act == QV_FP8_ACT_TENSOR)
        for (size_t i = 0; i < f->n_lins; i++)
            if (!qv_fp8_stat(f, QV_STAT_INPUT, f->lins[i].module)) {
                first = first ? first : f->lins[i].module;
                missing++;
            }
    for (int64_t i = 0; i < f->n_layers; i++)
        if (f->attn[i] && (!qv_fp8_stat(f, QV_STAT_K, f->attn[i]) || !qv_fp8_stat(f, QV_STAT_V, f->attn[i]))) {
            first = first ? first : f->attn[i];
            missing++;
        }
    if (missing)
        return qv_fail(QV_ERR_INVALID, "%s: %zu module(s) in the scope of %s never ran during calibration (first: %s), so "
                       "their static FP8 scales would be undefined: give calibration data that reaches them (images for "
                       "vision Linears) or ignore them", what, missing, f->rc.path, first);
    return QV_OK;
}

/* ---- the FP8 model: weights, decoder layer hook -------------------------------------------------- */

/* w [co, ci] F32 → the fake-quantized FP8 weight in T (export/qlinear.h, compressed-tensors' codes). */
static qv_status fq_weight(const qv_fp8_model *f, const char *module, int64_t co, int64_t ci, float *w)
{
    const size_t n = (size_t)(co * ci);
    for (size_t k = 0; k < n; k++)
        w[k] = qv_round_to(w[k], f->T);
    qv_fp8linear q;
    QV_TRY(qv_fp8linear_quantize(&q, w, co, ci, f->w_per_tensor, f->T, module));
    qv_fp8linear_dequant(&q, w);
    qv_fp8linear_free(&q);
    return QV_OK;
}

/* The static input scale of an in-scope Linear. */
static qv_status input_scale(const qv_fp8_model *f, const char *module, float *s)
{
    const qv_stat_entry *e = qv_fp8_stat(f, QV_STAT_INPUT, module);
    if (!e)
        return qv_fail(QV_ERR_INVALID, "%s: no input statistics for its static FP8 scale (it did not run during calibration)",
                       module);
    *s = qv_fp8_scale(e->absmax[0], f->T);
    return QV_OK;
}

static qv_status layer_hook(void *ctx, qv_llm *m, qv_llm_layer *layer)
{
    qv_fp8_model *f = ctx;
    const int64_t i = layer->index;
    if (i < 0 || i >= f->n_layers)
        return qv_fail(QV_ERR_INTERNAL, "%s: layer %lld outside the FP8 model", m->dir, (long long)i);
    float *w = NULL;
    size_t cap = 0;
    qv_status st = QV_OK;
    char name[448];
    for (int l = 0; l < QV_LIN_COUNT && st == QV_OK; l++) {
        if (!f->llm_in[i * QV_LIN_COUNT + l])
            continue;
        const int64_t co = qv_llm_lin_out(m, (qv_llm_lin)l), ci = qv_llm_lin_in(m, (qv_llm_lin)l);
        if ((size_t)(co * ci) > cap) {
            qv_free(w);
            cap = (size_t)(co * ci);
            if (!(w = qv_aligned_alloc(64, cap * sizeof *w, "FP8 weight"))) {
                st = QV_ERR_NOMEM;
                break;
            }
        }
        st = qv_llm_layer_get(m, layer, (qv_llm_lin)l, w);
        if (st == QV_OK)
            st = fq_weight(f, qv_llm_lin_name(m, i, (qv_llm_lin)l, name, sizeof name), co, ci, w);
        if (st == QV_OK)
            st = qv_llm_layer_set(m, layer, (qv_llm_lin)l, w, NULL);
    }
    qv_free(w);
    if (st == QV_OK)
        layer->w.fp8 = &f->lf[i];
    return st;
}

qv_status qv_fp8_attach(qv_fp8_model *f, qv_llm *m)
{
    if (!f->lf) {
        f->lf = qv_calloc((size_t)f->n_layers + 1, sizeof *f->lf, "FP8 layers");
        f->kv_scales = qv_calloc((size_t)(f->n_layers * 2 * QV_MAX(f->kv_n, 1)) + 1, sizeof *f->kv_scales, "KV scales");
        if (!f->lf || !f->kv_scales)
            return QV_ERR_NOMEM;
    }
    char name[448];
    for (int64_t i = 0; i < f->n_layers; i++) {
        qv_llm_fp8 *lf = &f->lf[i];
        memset(lf, 0, sizeof *lf);
        lf->T = f->T;
        for (int l = 0; l < QV_LIN_COUNT; l++) {
            if (!f->llm_in[i * QV_LIN_COUNT + l])
                continue;
            lf->act[l] = (uint8_t)f->act;
            if (f->act == QV_FP8_ACT_TENSOR)
                QV_TRY(input_scale(f, qv_llm_lin_name(m, i, (qv_llm_lin)l, name, sizeof name), &lf->act_scale[l]));
        }
        if (f->attn[i]) {
            float *ks = f->kv_scales + i * 2 * f->kv_n, *vs = ks + f->kv_n;
            const qv_stat_entry *k = qv_fp8_stat(f, QV_STAT_K, f->attn[i]), *v = qv_fp8_stat(f, QV_STAT_V, f->attn[i]);
            if (!k || !v || k->n != f->kv_n || v->n != f->kv_n)
                return qv_fail(QV_ERR_INVALID, "%s: no KV-cache statistics for its static FP8 scales", f->attn[i]);
            for (int64_t h = 0; h < f->kv_n; h++) {
                ks[h] = qv_fp8_scale(k->absmax[h], f->T);
                vs[h] = qv_fp8_scale(v->absmax[h], f->T);
            }
            lf->kv_n = f->kv_n;
            lf->k_scale = ks;
            lf->v_scale = vs;
        }
    }
    m->layer_hook = layer_hook;
    m->layer_hook_ctx = f;
    return QV_OK;
}

/* ---- the vision hook ------------------------------------------------------------------------------ */

static bool vis_wants(void *ctx, const char *module)
{
    const qv_fp8_model *f = ctx;
    int64_t i;
    return qv_strmap_gets(&f->vis_in, module, &i);
}

static qv_status vis_weight(void *ctx, const char *module, int64_t out, int64_t in, float *w)
{
    return fq_weight(ctx, module, out, in, w);
}

static qv_status vis_input(void *ctx, const char *module, int64_t rows, int64_t in, const float *x, float *xq, bool *use)
{
    qv_fp8_model *f = ctx;
    *use = false;
    if (f->vis_calibrate) {
        if (f->act != QV_FP8_ACT_TENSOR || rows <= 0)
            return QV_OK;
        float a;
        absmax_rows(&a, 1, x, rows, in, NULL); /* every vision row is real (no padding in a tile) */
        return qv_fp8_stat_update(f, QV_STAT_INPUT, module, &a, 1);
    }
    if (f->act == QV_FP8_ACT_TOKEN) {
        qv_fp8_qdq_tokens(xq, x, rows, in, f->T, NULL, NULL);
        *use = true;
    } else if (f->act == QV_FP8_ACT_TENSOR) {
        float s;
        QV_TRY(input_scale(f, module, &s));
        qv_fp8_qdq_static(xq, x, rows, in, &s, 1, f->T);
        *use = true;
    }
    return QV_OK;
}

const qv_vision_hook *qv_fp8_vision_hook(qv_fp8_model *f, bool calibrate)
{
    f->vis_calibrate = calibrate;
    f->vhook = (qv_vision_hook){.ctx = f, .wants = vis_wants, .weight = calibrate ? NULL : vis_weight, .input = vis_input};
    return &f->vhook;
}

/* ---- outputs ------------------------------------------------------------------------------------- */

qv_status qv_fp8_write_scales(const qv_fp8_model *f, const char *dir)
{
    qv_st_item *items = qv_calloc(f->n_stat + 1, sizeof *items, "scales");
    char **names = qv_calloc(f->n_stat + 1, sizeof *names, "scales");
    qv_status st = items && names ? QV_OK : QV_ERR_NOMEM;
    for (size_t i = 0; i < f->n_stat && st == QV_OK; i++) {
        const qv_stat_entry *e = &f->stats[i];
        names[i] = qv_asprintf("absmax.%s.%s", k_kind[e->kind], e->module);
        if (!names[i])
            st = QV_ERR_NOMEM;
        items[i] = (qv_st_item){names[i], QV_F32, 1, {e->n}, e->absmax};
    }
    char *path = st == QV_OK ? qv_path_join(dir, "scales.safetensors") : NULL;
    if (st == QV_OK)
        st = path ? qv_st_write_file(path, items, f->n_stat, NULL, 0) : QV_ERR_NOMEM;
    qv_free(path);
    for (size_t i = 0; names && i < f->n_stat; i++)
        qv_free(names[i]);
    qv_free(names);
    qv_free(items);
    return st;
}

static qv_json *str_array(char *const *s, size_t n)
{
    qv_json *a = json_object_new_array();
    for (size_t i = 0; a && i < n; i++)
        json_object_array_add(a, json_object_new_string(s[i]));
    return a;
}

qv_status qv_fp8_write_recipe(const qv_fp8_model *f, const char *dir)
{
    /* llm-compressor's grammar with the preset expanded (FORMATS.md §6.1; JSON is YAML) */
    qv_json *root = json_object_new_object(), *stage = json_object_new_object(), *mods = json_object_new_object();
    qv_json *qm = json_object_new_object(), *groups = json_object_new_object(), *g = json_object_new_object();
    qv_status st = QV_ERR_NOMEM;
    if (root && stage && mods && qm && groups && g) {
        json_object_object_add(g, "targets", str_array(f->rc.targets, f->rc.n_targets));
        json_object_object_add(g, "weights", qv_ct_args_json(&f->rc.weights));
        json_object_object_add(g, "input_activations", qv_ct_args_json(&f->rc.input));
        json_object_object_add(groups, "group_0", g);
        json_object_object_add(qm, "config_groups", groups);
        json_object_object_add(qm, "ignore", str_array(f->rc.ignore, f->rc.n_ignore));
        json_object_object_add(qm, "kv_cache_scheme", qv_ct_args_json(&f->rc.kv));
        json_object_object_add(mods, "QuantizationModifier", qm);
        json_object_object_add(stage, "quant_modifiers", mods);
        json_object_object_add(root, "quant_stage", stage);
        g = groups = qm = mods = stage = NULL;
        const char *text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED);
        char *path = qv_path_join(dir, "recipe.yaml");
        char *body = text ? qv_asprintf("# llm-compressor recipe of this qvlm fp8 run (%s), preset expanded;\n"
                                        "# `qvlm export --format fp8 --scales DIR` applies it\n%s\n", f->rc.path, text)
                          : NULL;
        st = path && body ? qv_write_file_atomic(path, body, strlen(body)) : QV_ERR_NOMEM;
        qv_free(path);
        qv_free(body);
    }
    json_object_put(root);
    json_object_put(stage);
    json_object_put(mods);
    json_object_put(qm);
    json_object_put(groups);
    json_object_put(g);
    return st;
}

qv_json *qv_fp8_summary_json(const qv_fp8_model *f)
{
    qv_json *o = json_object_new_object(), *n = json_object_new_object();
    if (!o || !n) {
        json_object_put(o);
        json_object_put(n);
        return NULL;
    }
    json_object_object_add(o, "recipe", json_object_new_string(f->default_recipe ? "default" : f->rc.path));
    json_object_object_add(o, "scheme", f->scheme[0] ? json_object_new_string(f->scheme) : NULL);
    json_object_object_add(o, "targets", str_array(f->rc.targets, f->rc.n_targets));
    json_object_object_add(o, "ignore", str_array(f->rc.ignore, f->rc.n_ignore));
    json_object_object_add(o, "weights", qv_ct_args_json(&f->rc.weights));
    json_object_object_add(o, "input_activations", qv_ct_args_json(&f->rc.input));
    json_object_object_add(o, "kv_cache_scheme", qv_ct_args_json(&f->rc.kv));
    json_object_object_add(o, "observer", qv_fp8_needs_stats(f) ? json_object_new_string("static_minmax: absmax over "
                                              "the whole calibration run, real tokens only, FP model") : NULL);
    json_object_object_add(n, "llm", json_object_new_int64((int64_t)f->n.llm));
    json_object_object_add(n, "vision", json_object_new_int64((int64_t)f->n.vision));
    json_object_object_add(n, "projector", json_object_new_int64((int64_t)f->n.projector));
    json_object_object_add(n, "kv_attention", json_object_new_int64((int64_t)f->n.kv_attn));
    json_object_object_add(o, "quantized", n);
    json_object_object_add(o, "statistics", json_object_new_int64((int64_t)f->n_stat));
    return o;
}
