/* apply.c — scale-list readers (scales DIR, MBQ/llm-awq/SmoothQuant .pt) and the application of
 * scales and clips to weights in dtype T (apply.h; ALGORITHMS.md §3.4, §3.6, §5.8, §9.3). */
#include "apply.h"

#include <string.h>

#include "core/fsutil.h"
#include "fp.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "io/torchpt.h"

static float rt(float x, qv_dtype T) { return T == QV_BF16 ? qv_round_bf16(x) : T == QV_F16 ? qv_round_f16(x) : x; }

char *qv_module_param(const char *module, const char *param) { return qv_asprintf("%s.%s", module, param); }

/* ---- freeing ---------------------------------------------------------------------------------- */

static void entry_free(qv_scale_entry *e)
{
    qv_free(e->prev_op);
    for (size_t i = 0; i < e->n_layers; i++)
        qv_free(e->layers[i]);
    qv_free(e->layers);
    qv_free(e->s);
}

void qv_scales_free(qv_scales *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++)
        entry_free(&s->entries[i]);
    qv_free(s->entries);
    for (size_t i = 0; i < s->n_act; i++)
        entry_free(&s->act[i]);
    qv_free(s->act);
    for (size_t i = 0; i < s->n_clip; i++) {
        qv_free(s->clips[i].layer);
        qv_free(s->clips[i].max_val);
    }
    qv_free(s->clips);
    for (size_t i = 0; i < s->n_stat; i++) {
        qv_free(s->stats[i].module);
        qv_free(s->stats[i].absmax);
    }
    qv_free(s->stats);
    qv_free(s->path);
    memset(s, 0, sizeof *s);
}

const qv_stat_entry *qv_scales_stat(const qv_scales *s, qv_stat_kind kind, const char *module)
{
    for (size_t i = 0; s && i < s->n_stat; i++)
        if (s->stats[i].kind == kind && strcmp(s->stats[i].module, module) == 0)
            return &s->stats[i];
    return NULL;
}

/* A float tensor's values as a fresh F32 array. */
static qv_status tensor_f32(const qv_tensor *t, const char *what, const char *name, float **out, int64_t *n)
{
    if (t->dtype != QV_F32 && t->dtype != QV_BF16 && t->dtype != QV_F16 && t->dtype != QV_F64)
        return qv_fail(QV_ERR_FORMAT, "%s: %s has dtype %s, expected a float tensor", what, name, qv_dtype_name(t->dtype));
    *n = qv_tensor_numel(t);
    *out = qv_malloc((size_t)(*n ? *n : 1) * sizeof **out, "scale vector");
    if (!*out)
        return QV_ERR_NOMEM;
    return qv_convert(*out, QV_F32, t->data, t->dtype, (size_t)*n);
}

static void *grow(void *p, size_t n, size_t elem, const char *what)
{
    return qv_realloc(p, (n + 1) * elem, what);
}

/* ---- scales DIR ---------------------------------------------------------------------------- */

static qv_status read_config(qv_scales *sc, const qv_json *root, const char *file)
{
    const char *dt = NULL;
    QV_TRY(qv_json_str_opt(root, "dtype", file, &dt));
    sc->cfg.dtype = QV_F32;
    if (dt && !strcmp(dt, "bfloat16"))
        sc->cfg.dtype = QV_BF16;
    else if (dt && !strcmp(dt, "float16"))
        sc->cfg.dtype = QV_F16;
    else if (dt && strcmp(dt, "float32"))
        return qv_fail(QV_ERR_INVALID, "%s: dtype \"%s\" is not float32, bfloat16 or float16", file, dt);
    qv_json *cfg = qv_json_get(root, "config");
    if (!cfg || !qv_json_is_type(cfg, json_type_object))
        return QV_OK;
    const char *m = NULL, *div = NULL;
    int64_t wb = 16, ab = 16, g = 128;
    bool zp = true;
    QV_TRY(qv_json_str_opt(cfg, "method", file, &m));
    QV_TRY(qv_json_int_opt(cfg, "w_bit", file, &wb));
    QV_TRY(qv_json_int_opt(cfg, "a_bit", file, &ab));
    QV_TRY(qv_json_int_opt(cfg, "w_group", file, &g));
    QV_TRY(qv_json_bool_opt(cfg, "zero_point", file, &zp));
    QV_TRY(qv_json_str_opt(cfg, "division", file, &div));
    if (wb < 1 || wb > 16 || ab < 1 || ab > 16 || (g != -1 && g <= 0))
        return qv_fail(QV_ERR_INVALID, "%s: config: w_bit %lld, a_bit %lld, w_group %lld out of range", file,
                       (long long)wb, (long long)ab, (long long)g);
    if (div && strcmp(div, "cuda") && strcmp(div, "cpu"))
        return qv_fail(QV_ERR_INVALID, "%s: config: division must be cuda or cpu, not %s", file, div);
    sc->cfg.present = true;
    snprintf(sc->cfg.method, sizeof sc->cfg.method, "%s", m ? m : "");
    sc->cfg.w_bit = (int)wb;
    sc->cfg.a_bit = (int)ab;
    sc->cfg.w_group = g;
    sc->cfg.zero_point = zp;
    sc->cfg.division_cpu = div && !strcmp(div, "cpu");
    return QV_OK;
}

static qv_status read_entries(qv_scales *sc, const qv_json *root, const qv_st_file *st, const char *file)
{
    qv_json *arr = qv_json_get(root, "entries");
    if (!arr)
        return QV_OK;
    if (!qv_json_is_type(arr, json_type_array))
        return qv_fail(QV_ERR_FORMAT, "%s: entries: expected an array", file);
    size_t n = json_object_array_length(arr);
    sc->entries = qv_calloc(n ? n : 1, sizeof *sc->entries, "scale list");
    if (!sc->entries)
        return QV_ERR_NOMEM;
    for (size_t k = 0; k < n; k++) {
        qv_json *e = json_object_array_get_idx(arr, k), *layers;
        const char *prev;
        int64_t idx = (int64_t)k;
        char key[64];
        snprintf(key, sizeof key, "entries[%zu]", k);
        if (!qv_json_is_type(e, json_type_object))
            return qv_fail(QV_ERR_FORMAT, "%s: %s: expected an object", file, key);
        QV_TRY(qv_json_str(e, "prev_op", file, &prev));
        QV_TRY(qv_json_arr(e, "layers", file, &layers));
        QV_TRY(qv_json_int_opt(e, "index", file, &idx));
        qv_scale_entry *se = &sc->entries[sc->n++];
        se->prev_op = qv_strdup(prev);
        size_t nl = json_object_array_length(layers);
        se->layers = qv_calloc(nl ? nl : 1, sizeof *se->layers, "scale entry");
        if (!se->prev_op || !se->layers)
            return QV_ERR_NOMEM;
        for (size_t i = 0; i < nl; i++) {
            qv_json *l = json_object_array_get_idx(layers, i);
            if (!qv_json_is_type(l, json_type_string))
                return qv_fail(QV_ERR_FORMAT, "%s: %s.layers[%zu]: expected a string", file, key, i);
            se->layers[i] = qv_strdup(json_object_get_string(l));
            if (!se->layers[i])
                return QV_ERR_NOMEM;
            se->n_layers++;
        }
        if (nl == 0)
            return qv_fail(QV_ERR_FORMAT, "%s: %s: empty layer list", file, key);
        char tname[32];
        snprintf(tname, sizeof tname, "scale.%03lld", (long long)idx);
        qv_tensor t;
        if (!qv_st_header_find(&st->hdr, tname))
            return qv_fail(QV_ERR_FORMAT, "%s: tensor %s (for %s) is missing", st->path, tname, key);
        QV_TRY(qv_st_get(st, tname, &t));
        if (t.ndim != 1)
            return qv_fail(QV_ERR_FORMAT, "%s: %s must be 1-D", st->path, tname);
        QV_TRY(tensor_f32(&t, st->path, tname, &se->s, &se->n));
    }
    return QV_OK;
}

static qv_status read_dir_tensors(qv_scales *sc, const qv_st_file *st)
{
    for (size_t i = 0; i < st->hdr.n; i++) {
        const qv_st_entry *e = &st->hdr.entries[i];
        qv_tensor t;
        qv_st_view(st, e, &t);
        if (!strncmp(e->name, "clip.", 5)) {
            if (!(e->ndim == 2 || (e->ndim == 3 && e->shape[2] == 1)))
                return qv_fail(QV_ERR_FORMAT, "%s: %s must be [co, groups] or [co, groups, 1]", st->path, e->name);
            qv_clip_entry *ne = grow(sc->clips, sc->n_clip, sizeof *ne, "clip list");
            if (!ne)
                return QV_ERR_NOMEM;
            sc->clips = ne;
            qv_clip_entry *c = &sc->clips[sc->n_clip];
            memset(c, 0, sizeof *c);
            int64_t n;
            c->layer = qv_strdup(e->name + 5);
            if (!c->layer)
                return QV_ERR_NOMEM;
            sc->n_clip++;
            QV_TRY(tensor_f32(&t, st->path, e->name, &c->max_val, &n));
            c->co = e->shape[0];
            c->ng = e->shape[1];
        } else if (!strncmp(e->name, "absmax.", 7)) {
            const char *r = e->name + 7;
            qv_stat_kind kind;
            if (!strncmp(r, "input.", 6))
                kind = QV_STAT_INPUT, r += 6;
            else if (!strncmp(r, "k.", 2))
                kind = QV_STAT_K, r += 2;
            else if (!strncmp(r, "v.", 2))
                kind = QV_STAT_V, r += 2;
            else
                return qv_fail(QV_ERR_FORMAT, "%s: %s: expected absmax.input.*, absmax.k.* or absmax.v.*", st->path, e->name);
            qv_stat_entry *ne = grow(sc->stats, sc->n_stat, sizeof *ne, "statistics");
            if (!ne)
                return QV_ERR_NOMEM;
            sc->stats = ne;
            qv_stat_entry *s = &sc->stats[sc->n_stat];
            memset(s, 0, sizeof *s);
            s->kind = kind;
            s->module = qv_strdup(r);
            if (!s->module)
                return QV_ERR_NOMEM;
            sc->n_stat++;
            QV_TRY(tensor_f32(&t, st->path, e->name, &s->absmax, &s->n));
            if (s->n < 1)
                return qv_fail(QV_ERR_FORMAT, "%s: %s is empty", st->path, e->name);
        }
    }
    return QV_OK;
}

static qv_status load_dir(const char *dir, qv_scales *sc)
{
    char *stp = qv_path_join(dir, "scales.safetensors"), *jp = qv_path_join(dir, "search.json");
    qv_st_file *st = NULL;
    qv_json *root = NULL;
    qv_status s = QV_OK;
    if (!stp || !jp) {
        s = QV_ERR_NOMEM;
        goto done;
    }
    if (!qv_path_exists(stp)) {
        s = qv_fail(QV_ERR_IO, "%s: not a scales folder (no scales.safetensors)", dir);
        goto done;
    }
    QV_CHECK(s = qv_st_open(stp, &st), done);
    if (qv_path_exists(jp)) {
        QV_CHECK(s = qv_json_load_file(jp, 0, &root), done);
        QV_CHECK(s = read_config(sc, root, jp), done);
        QV_CHECK(s = read_entries(sc, root, st, jp), done);
    } else if (qv_st_header_find(&st->hdr, "scale.000")) {
        s = qv_fail(QV_ERR_FORMAT, "%s: search.json is missing (it names each scale's modules)", dir);
        goto done;
    }
    s = read_dir_tensors(sc, st);
done:
    qv_json_free(root);
    qv_st_close(st);
    qv_free(stp);
    qv_free(jp);
    return s;
}

/* ---- .pt ------------------------------------------------------------------------------------ */

static qv_status pt_str_list(const qv_pt_value *v, const char *path, const char *what, char ***out, size_t *n)
{
    if (v->kind == QV_PT_STR) { /* a bare name counts as a one-element tuple */
        *out = qv_calloc(1, sizeof **out, "names");
        if (!*out || !((*out)[0] = qv_strdup(v->s)))
            return QV_ERR_NOMEM;
        *n = 1;
        return QV_OK;
    }
    if ((v->kind != QV_PT_TUPLE && v->kind != QV_PT_LIST) || v->len == 0)
        return qv_fail(QV_ERR_FORMAT, "%s: %s: expected a tuple of module names", path, what);
    *out = qv_calloc(v->len, sizeof **out, "names");
    if (!*out)
        return QV_ERR_NOMEM;
    for (size_t i = 0; i < v->len; i++) {
        if (v->items[i]->kind != QV_PT_STR)
            return qv_fail(QV_ERR_FORMAT, "%s: %s: expected a tuple of module names", path, what);
        if (!((*out)[i] = qv_strdup(v->items[i]->s)))
            return QV_ERR_NOMEM;
        (*n)++;
    }
    return QV_OK;
}

static qv_status load_pt(const char *path, qv_scales *sc)
{
    qv_pt *doc;
    QV_TRY(qv_pt_load(path, &doc));
    const qv_pt_value *root = qv_pt_root(doc), *scale = qv_pt_get(root, "scale"), *clip = qv_pt_get(root, "clip");
    qv_status s = QV_OK;
    char what[64];
    if (!root || root->kind != QV_PT_DICT) {
        s = qv_fail(QV_ERR_FORMAT, "%s: expected a dict at the top level, found %s", path,
                    root ? qv_pt_kind_name(root->kind) : "nothing");
        goto done;
    }
    if (scale) {
        if (scale->kind != QV_PT_LIST && scale->kind != QV_PT_TUPLE) {
            s = qv_fail(QV_ERR_FORMAT, "%s: \"scale\" must be a list", path);
            goto done;
        }
        sc->entries = qv_calloc(scale->len ? scale->len : 1, sizeof *sc->entries, "scale list");
        if (!sc->entries) {
            s = QV_ERR_NOMEM;
            goto done;
        }
        for (size_t k = 0; k < scale->len; k++) {
            const qv_pt_value *e = scale->items[k];
            snprintf(what, sizeof what, "scale[%zu]", k);
            if ((e->kind != QV_PT_TUPLE && e->kind != QV_PT_LIST) || e->len != 3 || e->items[0]->kind != QV_PT_STR ||
                e->items[2]->kind != QV_PT_TENSOR || e->items[2]->t.ndim != 1) {
                s = qv_fail(QV_ERR_FORMAT, "%s: %s: expected (prev_op, (fc, ...), 1-D tensor)", path, what);
                goto done;
            }
            qv_scale_entry *se = &sc->entries[sc->n++];
            if (!(se->prev_op = qv_strdup(e->items[0]->s))) {
                s = QV_ERR_NOMEM;
                goto done;
            }
            QV_CHECK(s = pt_str_list(e->items[1], path, what, &se->layers, &se->n_layers), done);
            QV_CHECK(s = tensor_f32(&e->items[2]->t, path, what, &se->s, &se->n), done);
        }
    }
    if (clip) {
        if (clip->kind != QV_PT_LIST && clip->kind != QV_PT_TUPLE) {
            s = qv_fail(QV_ERR_FORMAT, "%s: \"clip\" must be a list", path);
            goto done;
        }
        sc->clips = qv_calloc(clip->len ? clip->len : 1, sizeof *sc->clips, "clip list");
        if (!sc->clips) {
            s = QV_ERR_NOMEM;
            goto done;
        }
        for (size_t k = 0; k < clip->len; k++) {
            const qv_pt_value *e = clip->items[k];
            snprintf(what, sizeof what, "clip[%zu]", k);
            const qv_tensor *t = e->len == 2 ? &e->items[1]->t : NULL;
            if ((e->kind != QV_PT_TUPLE && e->kind != QV_PT_LIST) || e->len != 2 || e->items[0]->kind != QV_PT_STR ||
                e->items[1]->kind != QV_PT_TENSOR || !(t->ndim == 2 || (t->ndim == 3 && t->shape[2] == 1))) {
                s = qv_fail(QV_ERR_FORMAT, "%s: %s: expected (fc, max_val [co, groups, 1])", path, what);
                goto done;
            }
            qv_clip_entry *c = &sc->clips[sc->n_clip++];
            int64_t n;
            if (!(c->layer = qv_strdup(e->items[0]->s))) {
                s = QV_ERR_NOMEM;
                goto done;
            }
            c->co = t->shape[0];
            c->ng = t->shape[1];
            QV_CHECK(s = tensor_f32(t, path, what, &c->max_val, &n), done);
        }
    }
    if (!scale && !clip) { /* SmoothQuant: {linear_name: act_scale} */
        sc->act = qv_calloc(root->len ? root->len : 1, sizeof *sc->act, "act scales");
        if (!sc->act) {
            s = QV_ERR_NOMEM;
            goto done;
        }
        for (size_t k = 0; k < root->len; k++) {
            const qv_pt_value *key = root->items[2 * k], *val = root->items[2 * k + 1];
            if (key->kind != QV_PT_STR || val->kind != QV_PT_TENSOR || val->t.ndim != 1) {
                s = qv_fail(QV_ERR_FORMAT, "%s: neither an MBQ/AWQ scale list ({\"scale\": [...]}) nor a SmoothQuant act-scale dict",
                            path);
                goto done;
            }
            qv_scale_entry *a = &sc->act[sc->n_act++];
            if (!(a->prev_op = qv_strdup(key->s))) {
                s = QV_ERR_NOMEM;
                goto done;
            }
            QV_CHECK(s = tensor_f32(&val->t, path, key->s, &a->s, &a->n), done);
        }
    }
done:
    qv_pt_free(doc);
    return s;
}

qv_status qv_scales_load(const char *path, qv_scales *out)
{
    memset(out, 0, sizeof *out);
    out->path = qv_strdup(path);
    if (!out->path)
        return QV_ERR_NOMEM;
    qv_status s;
    if (qv_is_dir(path))
        s = load_dir(path, out);
    else if (qv_path_exists(path))
        s = load_pt(path, out);
    else
        s = qv_fail(QV_ERR_IO, "%s: no such scales folder or .pt file", path);
    if (s != QV_OK)
        qv_scales_free(out);
    return s;
}

/* ---- working set ------------------------------------------------------------------------------ */

void qv_wset_init(qv_wset *ws) { memset(ws, 0, sizeof *ws); }

void qv_wset_free(qv_wset *ws)
{
    for (size_t i = 0; i < ws->n; i++) {
        qv_free(ws->items[i].name);
        qv_free(ws->items[i].data);
    }
    qv_free(ws->items);
    memset(ws, 0, sizeof *ws);
}

qv_status qv_wset_add(qv_wset *ws, const char *name, const qv_tensor *t, qv_dtype T)
{
    if (t->ndim < 1 || t->ndim > 2 || !qv_dtype_is_float(t->dtype))
        return qv_fail(QV_ERR_INVALID, "%s: expected a 1-D or 2-D float tensor", name);
    if (ws->n == ws->cap) {
        size_t cap = ws->cap ? 2 * ws->cap : 16;
        qv_wbuf *ni = qv_realloc(ws->items, cap * sizeof *ni, "weight set");
        if (!ni)
            return QV_ERR_NOMEM;
        ws->items = ni;
        ws->cap = cap;
    }
    qv_wbuf *b = &ws->items[ws->n];
    memset(b, 0, sizeof *b);
    int64_t n = qv_tensor_numel(t);
    b->name = qv_strdup(name);
    b->data = qv_malloc((size_t)(n ? n : 1) * sizeof(float), name);
    if (!b->name || !b->data) {
        qv_free(b->name);
        qv_free(b->data);
        return QV_ERR_NOMEM;
    }
    qv_convert(b->data, QV_F32, t->data, t->dtype, (size_t)n);
    for (int64_t i = 0; i < n; i++)
        b->data[i] = rt(b->data[i], T);
    b->ndim = t->ndim;
    b->shape[0] = t->shape[0];
    b->shape[1] = t->ndim == 2 ? t->shape[1] : 1;
    ws->n++;
    return QV_OK;
}

qv_wbuf *qv_wset_find(const qv_wset *ws, const char *name)
{
    for (size_t i = 0; i < ws->n; i++)
        if (strcmp(ws->items[i].name, name) == 0)
            return &ws->items[i];
    return NULL;
}

/* ---- the arithmetic (rule (E)) ------------------------------------------------------------------ */

void qv_apply_scale_norm(float *gamma, float *beta, const float *s, int64_t n, qv_dtype T)
{
    for (int64_t j = 0; j < n; j++) {
        gamma[j] = rt(gamma[j] / s[j], T);
        if (beta)
            beta[j] = rt(beta[j] / s[j], T);
    }
}

void qv_apply_scale_cols(float *w, int64_t co, int64_t ci, const float *s, qv_dtype T)
{
    for (int64_t i = 0; i < co; i++)
        for (int64_t j = 0; j < ci; j++)
            w[i * ci + j] = rt(w[i * ci + j] * s[j], T);
}

void qv_apply_scale_rows(float *w, float *bias, int64_t co, int64_t ci, const float *s, int64_t ns, qv_dtype T)
{
    for (int64_t i = 0; i < ns; i++) {
        int64_t r = co - ns + i;
        for (int64_t j = 0; j < ci; j++)
            w[r * ci + j] = rt(w[r * ci + j] / s[i], T);
        if (bias)
            bias[r] = rt(bias[r] / s[i], T);
    }
}

void qv_apply_clip(float *w, int64_t co, int64_t ci, int64_t ng, const float *max_val, qv_dtype T)
{
    int64_t g = ci / ng;
    for (int64_t i = 0; i < co; i++)
        for (int64_t k = 0; k < ng; k++) {
            float m = rt(max_val[i * ng + k], T);
            for (int64_t j = k * g; j < (k + 1) * g; j++) {
                float *x = &w[i * ci + j];
                *x = *x < -m ? -m : *x > m ? m : *x;
            }
        }
}

static qv_status need_buf(const qv_wset *ws, const char *module, const char *param, bool optional, qv_wbuf **out)
{
    char *n = qv_module_param(module, param);
    if (!n)
        return QV_ERR_NOMEM;
    *out = qv_wset_find(ws, n);
    qv_status s = QV_OK;
    if (!*out && !optional)
        s = qv_fail(QV_ERR_INVALID, "scale list: %s is not among the tensors of its decoder layer", n);
    qv_free(n);
    return s;
}

static qv_status apply_entry(qv_wset *ws, const qv_scale_entry *e, qv_dtype T)
{
    qv_wbuf *prev, *bias;
    QV_TRY(need_buf(ws, e->prev_op, "weight", false, &prev));
    QV_TRY(need_buf(ws, e->prev_op, "bias", true, &bias));
    float *s = qv_malloc((size_t)e->n * sizeof *s, "scale");
    if (!s)
        return QV_ERR_NOMEM;
    for (int64_t j = 0; j < e->n; j++)
        s[j] = rt(e->s[j], T);
    qv_status st = QV_OK;
    /* the fcs first, so that a bad name leaves prev unchanged for the error */
    qv_wbuf *fcs[16];
    if (e->n_layers > QV_ARRAY_LEN(fcs)) {
        st = qv_fail(QV_ERR_UNSUPPORTED, "scale list: %s feeds %zu linears (at most 16)", e->prev_op, e->n_layers);
        goto done;
    }
    for (size_t i = 0; i < e->n_layers; i++) {
        QV_CHECK(st = need_buf(ws, e->layers[i], "weight", false, &fcs[i]), done);
        if (fcs[i]->ndim != 2 || fcs[i]->shape[1] != e->n) {
            st = qv_fail(QV_ERR_INVALID, "scale list: %s has %lld inputs, its scale has %lld", e->layers[i],
                         (long long)fcs[i]->shape[1], (long long)e->n);
            goto done;
        }
    }
    if (prev->ndim == 1) {
        if (prev->shape[0] != e->n || (bias && bias->shape[0] != e->n)) {
            st = qv_fail(QV_ERR_INVALID, "scale list: %s has %lld channels, its scale has %lld", e->prev_op,
                         (long long)prev->shape[0], (long long)e->n);
            goto done;
        }
        qv_apply_scale_norm(prev->data, bias ? bias->data : NULL, s, e->n, T);
    } else {
        if (e->n_layers != 1 || prev->shape[0] < e->n) {
            st = qv_fail(QV_ERR_INVALID, "scale list: linear %s cannot take a scale of %lld for %zu linears", e->prev_op,
                         (long long)e->n, e->n_layers);
            goto done;
        }
        qv_apply_scale_rows(prev->data, bias ? bias->data : NULL, prev->shape[0], prev->shape[1], s, e->n, T);
    }
    prev->touched = true;
    if (bias)
        bias->touched = true;
    for (size_t i = 0; i < e->n_layers; i++) {
        qv_apply_scale_cols(fcs[i]->data, fcs[i]->shape[0], fcs[i]->shape[1], s, T);
        fcs[i]->touched = true;
    }
done:
    qv_free(s);
    return st;
}

qv_status qv_apply_to_set(qv_wset *ws, const qv_scales *sc, qv_dtype T, size_t *n_applied)
{
    size_t used = 0;
    for (size_t k = 0; sc && k < sc->n; k++) {
        qv_wbuf *prev;
        QV_TRY(need_buf(ws, sc->entries[k].prev_op, "weight", true, &prev));
        if (!prev)
            continue;
        QV_TRY(apply_entry(ws, &sc->entries[k], T));
        used++;
    }
    for (size_t k = 0; sc && k < sc->n_clip; k++) {
        const qv_clip_entry *c = &sc->clips[k];
        qv_wbuf *w;
        QV_TRY(need_buf(ws, c->layer, "weight", true, &w));
        if (!w)
            continue;
        if (w->ndim != 2 || w->shape[0] != c->co || c->ng <= 0 || w->shape[1] % c->ng)
            return qv_fail(QV_ERR_INVALID, "clip list: %s is [%lld, %lld], its clip values [%lld, %lld]", c->layer,
                           (long long)w->shape[0], (long long)w->shape[1], (long long)c->co, (long long)c->ng);
        qv_apply_clip(w->data, w->shape[0], w->shape[1], c->ng, c->max_val, T);
        w->touched = true;
        used++;
    }
    if (n_applied)
        *n_applied = used;
    return QV_OK;
}

/* ---- name resolution ------------------------------------------------------------------------ */

static const char *layer_prefixes[] = {"model.layers.", "model.language_model.layers.", "language_model.model.layers."};

static qv_status resolve_name(char **name, bool (*has)(void *, const char *), void *ctx, const char *what)
{
    if (has(ctx, *name))
        return QV_OK;
    for (size_t a = 0; a < QV_ARRAY_LEN(layer_prefixes); a++) {
        size_t la = strlen(layer_prefixes[a]);
        if (strncmp(*name, layer_prefixes[a], la))
            continue;
        for (size_t b = 0; b < QV_ARRAY_LEN(layer_prefixes); b++) {
            if (a == b)
                continue;
            char *alt = qv_asprintf("%s%s", layer_prefixes[b], *name + la);
            if (!alt)
                return QV_ERR_NOMEM;
            if (has(ctx, alt)) {
                qv_free(*name);
                *name = alt;
                return QV_OK;
            }
            qv_free(alt);
        }
    }
    return qv_fail(QV_ERR_INVALID, "%s: module %s is not in the model", what, *name);
}

qv_status qv_scales_resolve(qv_scales *sc, bool (*has_module)(void *ctx, const char *module), void *ctx)
{
    for (size_t k = 0; k < sc->n; k++) {
        QV_TRY(resolve_name(&sc->entries[k].prev_op, has_module, ctx, sc->path));
        for (size_t i = 0; i < sc->entries[k].n_layers; i++)
            QV_TRY(resolve_name(&sc->entries[k].layers[i], has_module, ctx, sc->path));
    }
    for (size_t k = 0; k < sc->n_clip; k++)
        QV_TRY(resolve_name(&sc->clips[k].layer, has_module, ctx, sc->path));
    for (size_t k = 0; k < sc->n_act; k++)
        QV_TRY(resolve_name(&sc->act[k].prev_op, has_module, ctx, sc->path));
    return QV_OK;
}
