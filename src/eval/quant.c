/* quant.c — a searched scale list (a `qvlm quantize` DIR) as a quantized model to evaluate:
 * loaded, its names resolved against the decoder, every entry checked against the shapes of the
 * modules it names, the quantizer from search.json's config (eval.h qv_eval_quant_open; the
 * application itself is quant/qlayer.h's layer hook). */
#include <stdio.h>
#include <string.h>

#include "../core/fsutil.h"
#include "../core/strmap.h"
#include "eval.h"

/* Every decoder module of m by name: value = layer · 64 + (linear kind, or 32 + norm kind). */
typedef struct module_map {
    qv_strmap map;
    const qv_llm *m;
} module_map;

#define NORM_TAG 32

static qv_status map_build(module_map *mm, const qv_llm *m)
{
    qv_strmap_init(&mm->map);
    mm->m = m;
    char buf[512];
    for (int64_t i = 0; i < m->c->n_layers; i++) {
        for (int l = 0; l < QV_LIN_COUNT; l++) {
            if (!qv_llm_has_lin(m, (qv_llm_lin)l))
                continue;
            qv_llm_lin_name(m, i, (qv_llm_lin)l, buf, sizeof buf);
            QV_TRY(qv_strmap_put(&mm->map, buf, strlen(buf), i * 64 + l, NULL));
        }
        for (int n = 0; n < QV_LLM_NORM_COUNT; n++) {
            qv_llm_norm_name(m, i, (qv_llm_norm)n, buf, sizeof buf);
            QV_TRY(qv_strmap_put(&mm->map, buf, strlen(buf), i * 64 + NORM_TAG + n, NULL));
        }
    }
    return QV_OK;
}

static bool map_has(void *ctx, const char *module)
{
    int64_t v;
    return qv_strmap_gets(&((module_map *)ctx)->map, module, &v);
}

static bool map_get(const module_map *mm, const char *module, int64_t *layer, bool *is_norm, int *which)
{
    int64_t v;
    if (!qv_strmap_gets(&mm->map, module, &v))
        return false;
    *layer = v / 64;
    *is_norm = v % 64 >= NORM_TAG;
    *which = (int)(*is_norm ? v % 64 - NORM_TAG : v % 64);
    return true;
}

/* The shapes apply_entries (qlayer.c) will need, checked before any work. */
static qv_status check_shapes(const qv_scales *sc, const module_map *mm)
{
    const qv_llm *m = mm->m;
    for (size_t e = 0; e < sc->n; e++) {
        const qv_scale_entry *en = &sc->entries[e];
        int64_t layer, fl;
        bool pn, fn;
        int pw, fw;
        if (!map_get(mm, en->prev_op, &layer, &pn, &pw))
            return qv_fail(QV_ERR_INVALID, "%s: scale entry %zu: %s is not a decoder module of %s", sc->path, e,
                           en->prev_op, m->dir);
        const int64_t want = pn ? m->C : qv_llm_lin_out(m, (qv_llm_lin)pw);
        if (pn ? en->n != want : en->n > want)
            return qv_fail(QV_ERR_INVALID, "%s: scale entry %zu has %lld values, but %s has %lld %s in %s (scales of "
                           "another model?)", sc->path, e, (long long)en->n, en->prev_op, (long long)want,
                           pn ? "channels" : "output rows", m->dir);
        for (size_t f = 0; f < en->n_layers; f++) {
            if (!map_get(mm, en->layers[f], &fl, &fn, &fw) || fn)
                return qv_fail(QV_ERR_INVALID, "%s: scale entry %zu: %s is not a linear layer of %s", sc->path, e,
                               en->layers[f], m->dir);
            if (fl != layer)
                return qv_fail(QV_ERR_INVALID, "%s: scale entry %zu: %s and %s are in different decoder layers",
                               sc->path, e, en->prev_op, en->layers[f]);
            const int64_t ci = qv_llm_lin_in(m, (qv_llm_lin)fw);
            if (ci != en->n)
                return qv_fail(QV_ERR_INVALID, "%s: scale entry %zu has %lld values, but %s has %lld input channels in "
                               "%s (scales of another model?)", sc->path, e, (long long)en->n, en->layers[f],
                               (long long)ci, m->dir);
        }
    }
    for (size_t c = 0; c < sc->n_clip; c++) {
        const qv_clip_entry *ce = &sc->clips[c];
        int64_t layer;
        bool isn;
        int w;
        if (!map_get(mm, ce->layer, &layer, &isn, &w) || isn)
            return qv_fail(QV_ERR_INVALID, "%s: clip %s is not a linear layer of %s", sc->path, ce->layer, m->dir);
        const int64_t co = qv_llm_lin_out(m, (qv_llm_lin)w), ci = qv_llm_lin_in(m, (qv_llm_lin)w);
        if (ce->co != co || ce->ng <= 0 || ci % ce->ng)
            return qv_fail(QV_ERR_INVALID, "%s: clip of %s has shape [%lld,%lld], the layer is [%lld,%lld] in %s (scales "
                           "of another model?)", sc->path, ce->layer, (long long)ce->co, (long long)ce->ng,
                           (long long)co, (long long)ci, m->dir);
    }
    return QV_OK;
}

/* search.json's "model" (the folder `qvlm quantize` ran on), when the file names one. */
static qv_status read_model_field(qv_eval_quant *q, const char *dir)
{
    if (!qv_is_dir(dir))
        return QV_OK;
    char *path = qv_path_join(dir, "search.json");
    if (!path)
        return QV_ERR_NOMEM;
    qv_json *j = NULL;
    qv_status st = qv_json_load_file(path, 0, &j);
    qv_free(path);
    if (st != QV_OK) { /* qv_scales_load has read it already: nothing new to report */
        qv_clear_error();
        return QV_OK;
    }
    qv_json *mdl = qv_json_get(j, "model");
    if (qv_json_is_type(mdl, json_type_string) && !(q->model = qv_strdup(json_object_get_string(mdl))))
        st = QV_ERR_NOMEM;
    qv_json_free(j);
    return st;
}

qv_status qv_eval_quant_open(qv_eval_quant *q, const qv_llm *m, const char *path)
{
    memset(q, 0, sizeof *q);
    q->name = qv_strdup(path);
    if (!q->name)
        return QV_ERR_NOMEM;
    module_map mm;
    qv_status st = qv_scales_load(path, &q->sc);
    if (st != QV_OK) {
        qv_free(q->name);
        memset(q, 0, sizeof *q);
        return st;
    }
    const qv_search_config *c = &q->sc.cfg;
    if (!c->present)
        st = qv_fail(QV_ERR_INVALID, "%s: no search.json config: the bit widths of the quantized model are unknown",
                     path);
    else if (c->w_bit < 2 || c->w_bit > 8 || (c->a_bit < 16 && (c->a_bit < 2 || c->a_bit > 8)))
        st = qv_fail(QV_ERR_UNSUPPORTED, "%s: w_bit %d, a_bit %d: not supported (w 2..8, a 2..8 or 16)", path, c->w_bit,
                     c->a_bit);
    else if (q->sc.n_act)
        st = qv_fail(QV_ERR_UNSUPPORTED, "%s: SmoothQuant activation scales (.pt) are not supported by qvlm eval", path);
    if (st == QV_OK) {
        st = map_build(&mm, m);
        if (st == QV_OK && (st = qv_scales_resolve(&q->sc, map_has, &mm)) != QV_OK) {
            char msg[QV_ERROR_MAX];
            snprintf(msg, sizeof msg, "%s", qv_last_error());
            st = qv_fail(st, "%s (decoder of %s; scales of another model?)", msg, m->dir);
        }
        if (st == QV_OK)
            st = check_shapes(&q->sc, &mm);
        qv_strmap_free(&mm.map);
    }
    if (st != QV_OK) {
        qv_eval_quant_close(q);
        return st;
    }
    /* the quantizers exactly as `forward --scales` builds them (qlayer.h) */
    st = qv_qmodel_from_scales(&q->qm, &q->sc, 0, 0, 0);
    if (st != QV_OK) {
        qv_eval_quant_close(q);
        return st;
    }
    return read_model_field(q, path);
}

void qv_eval_quant_close(qv_eval_quant *q)
{
    if (!q)
        return;
    qv_scales_free(&q->sc);
    qv_free(q->name);
    qv_free(q->model);
    memset(q, 0, sizeof *q);
}
