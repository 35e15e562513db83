/* plan.c — classification of a checkpoint's tensors for export and verification (plan.h). */
#include "plan.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static char *module_of(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot ? qv_strndup(name, (size_t)(dot - name)) : qv_strdup(name);
}

static bool is_linear(const qv_st_entry *e, const char *module)
{
    size_t n = strlen(e->name);
    if (e->ndim != 2 || n < 7 || strcmp(e->name + n - 7, ".weight") || !qv_dtype_is_float(e->dtype))
        return false;
    const char *last = strrchr(module, '.');
    last = last ? last + 1 : module;
    return strstr(last, "embed") == NULL && strcmp(last, "wte") != 0 && strcmp(last, "wpe") != 0;
}

/* Length of "…layers.<i>." at the first decoder-layer container in name, or 0. */
static size_t layer_prefix_len(const char *name, int64_t *index)
{
    for (const char *p = strstr(name, "layers."); p; p = strstr(p + 1, "layers.")) {
        if (p != name && p[-1] != '.')
            continue;
        const char *d = p + 7;
        if (!isdigit((unsigned char)*d))
            continue;
        char *end;
        long long v = strtoll(d, &end, 10);
        if (*end != '.')
            continue;
        *index = v;
        return (size_t)(end + 1 - name);
    }
    return 0;
}

static int cmp_layer(const void *a, const void *b)
{
    const qv_layer *x = a, *y = b;
    size_t lx = strlen(x->prefix), ly = strlen(y->prefix);
    /* container = prefix without "<index>." */
    const char *cx = x->prefix, *cy = y->prefix;
    size_t kx = lx - 1, ky = ly - 1;
    while (kx && cx[kx - 1] != '.')
        kx--;
    while (ky && cy[ky - 1] != '.')
        ky--;
    int c = kx != ky ? (kx < ky ? -1 : 1) : strncmp(cx, cy, kx);
    if (c)
        return c;
    return x->index < y->index ? -1 : x->index > y->index;
}

static qv_status add_unique(char ***list, size_t *n, const char *s, size_t len)
{
    for (size_t i = 0; i < *n; i++)
        if (strlen((*list)[i]) == len && !strncmp((*list)[i], s, len))
            return QV_OK;
    char **nl = qv_realloc(*list, (*n + 1) * sizeof *nl, "prefix list");
    if (!nl)
        return QV_ERR_NOMEM;
    *list = nl;
    if (!(nl[*n] = qv_strndup(s, len)))
        return QV_ERR_NOMEM;
    (*n)++;
    return QV_OK;
}

static qv_status build(qv_mplan *p)
{
    qv_checkpoint *ck = p->ck;
    p->t = qv_calloc(ck->n ? ck->n : 1, sizeof *p->t, "tensor plan");
    if (!p->t)
        return QV_ERR_NOMEM;
    p->n = ck->n;
    bool have_T = false;
    char **proj = NULL, **vis = NULL;
    size_t n_proj = 0, n_vis = 0;
    qv_status st = QV_OK;
    for (size_t i = 0; i < ck->n && st == QV_OK; i++) {
        qv_tinfo *t = &p->t[i];
        const qv_st_file *f;
        t->e = qv_checkpoint_entry(ck, i, &f);
        t->file = f;
        for (size_t s = 0; s < ck->n_shards; s++)
            if (ck->shards[s] == f)
                t->shard = (uint32_t)s;
        t->part = qv_model_part_of(&p->cfg, t->e->name);
        t->module = module_of(t->e->name);
        if (!t->module) {
            st = QV_ERR_NOMEM;
            break;
        }
        t->linear = is_linear(t->e, t->module);
        t->layer = -1;
        if (t->part == QV_PART_VISION || t->part == QV_PART_PROJECTOR) {
            if (!t->linear) /* only prefixes holding Linears matter to ignore lists */
                continue;
            const char *dot = strchr(t->e->name, '.');
            size_t len = dot ? (size_t)(dot - t->e->name) : strlen(t->e->name);
            if (dot && len == 5 && !strncmp(t->e->name, "model", 5)) {
                const char *d2 = strchr(dot + 1, '.');
                len = d2 ? (size_t)(d2 - t->e->name) : strlen(t->e->name);
            }
            st = t->part == QV_PART_PROJECTOR ? add_unique(&proj, &n_proj, t->e->name, len)
                                              : add_unique(&vis, &n_vis, t->e->name, len);
            continue;
        }
        int64_t idx;
        size_t pl = layer_prefix_len(t->e->name, &idx);
        if (!pl) {
            size_t ml = strlen(t->module);
            if (t->linear && !p->lm_head &&
                ((ml >= 7 && !strcmp(t->module + ml - 7, "lm_head")) || !strcmp(t->module, "output") ||
                 (ml >= 7 && !strcmp(t->module + ml - 7, ".output"))))
                p->lm_head = qv_strdup(t->module);
            continue;
        }
        size_t li = 0;
        while (li < p->n_layers && !(strlen(p->layers[li].prefix) == pl && !strncmp(p->layers[li].prefix, t->e->name, pl)))
            li++;
        if (li == p->n_layers) {
            qv_layer *nl = qv_realloc(p->layers, (p->n_layers + 1) * sizeof *nl, "layers");
            if (!nl) {
                st = QV_ERR_NOMEM;
                break;
            }
            p->layers = nl;
            memset(&nl[li], 0, sizeof nl[li]);
            nl[li].prefix = qv_strndup(t->e->name, pl);
            nl[li].index = idx;
            p->n_layers++;
            if (!nl[li].prefix) {
                st = QV_ERR_NOMEM;
                break;
            }
        }
        t->layer = (int)li;
        if (t->linear && !have_T) {
            if (t->e->dtype != QV_F32 && t->e->dtype != QV_BF16 && t->e->dtype != QV_F16)
                st = qv_fail(QV_ERR_UNSUPPORTED, "%s: decoder weight %s has dtype %s (F32, BF16 or F16 expected)", p->path,
                             t->e->name, qv_dtype_name(t->e->dtype));
            p->T = t->e->dtype;
            have_T = true;
        }
    }
    if (st == QV_OK && !have_T)
        st = qv_fail(QV_ERR_UNSUPPORTED, "%s: no decoder-layer linear weights found", p->path);
    /* keep list: projector first, then vision (the order of the default ignore list) */
    for (size_t i = 0; st == QV_OK && i < n_proj; i++)
        st = add_unique(&p->keep_prefix, &p->n_prefix, proj[i], strlen(proj[i]));
    for (size_t i = 0; st == QV_OK && i < n_vis; i++)
        st = add_unique(&p->keep_prefix, &p->n_prefix, vis[i], strlen(vis[i]));
    for (size_t i = 0; i < n_proj; i++)
        qv_free(proj[i]);
    for (size_t i = 0; i < n_vis; i++)
        qv_free(vis[i]);
    qv_free(proj);
    qv_free(vis);
    if (st != QV_OK)
        return st;
    if (!p->lm_head && !(p->lm_head = qv_strdup("lm_head")))
        return QV_ERR_NOMEM;
    qsort(p->layers, p->n_layers, sizeof *p->layers, cmp_layer);
    /* tensor lists per layer, after sorting */
    for (size_t i = 0; i < p->n; i++) {
        if (p->t[i].layer < 0)
            continue;
        const char *name = p->t[i].e->name;
        for (size_t li = 0; li < p->n_layers; li++) {
            size_t pl = strlen(p->layers[li].prefix);
            if (strncmp(name, p->layers[li].prefix, pl))
                continue;
            int64_t idx;
            if (layer_prefix_len(name, &idx) != pl)
                continue;
            qv_layer *L = &p->layers[li];
            size_t *nt = qv_realloc(L->tensors, (L->n + 1) * sizeof *nt, "layer tensors");
            if (!nt)
                return QV_ERR_NOMEM;
            L->tensors = nt;
            nt[L->n++] = i;
            p->t[i].layer = (int)li;
            break;
        }
    }
    p->n_shards = ck->n_shards;
    p->shard_names = qv_calloc(ck->n_shards, sizeof *p->shard_names, "shard names");
    if (!p->shard_names)
        return QV_ERR_NOMEM;
    for (size_t s = 0; s < ck->n_shards; s++) {
        const char *base = strrchr(ck->shards[s]->path, '/');
        base = base ? base + 1 : ck->shards[s]->path;
        p->shard_names[s] = qv_strdup(ck->sharded ? base : "model.safetensors");
        if (!p->shard_names[s])
            return QV_ERR_NOMEM;
    }
    return QV_OK;
}

qv_status qv_mplan_open(const char *model, qv_mplan *p)
{
    memset(p, 0, sizeof *p);
    p->path = qv_strdup(model);
    if (!p->path)
        return QV_ERR_NOMEM;
    qv_status st = qv_model_config_load(model, &p->cfg);
    if (st != QV_OK) {
        qv_model_config_free(&p->cfg); /* the path it allocated before failing */
        qv_free(p->path);
        p->path = NULL;
        return st;
    }
    st = qv_checkpoint_open(model, &p->ck);
    if (st == QV_OK)
        st = build(p);
    if (st != QV_OK)
        qv_mplan_close(p);
    return st;
}

void qv_mplan_close(qv_mplan *p)
{
    if (!p->path)
        return;
    for (size_t i = 0; i < p->n; i++)
        qv_free(p->t[i].module);
    qv_free(p->t);
    for (size_t i = 0; i < p->n_layers; i++) {
        qv_free(p->layers[i].prefix);
        qv_free(p->layers[i].tensors);
    }
    qv_free(p->layers);
    for (size_t i = 0; i < p->n_prefix; i++)
        qv_free(p->keep_prefix[i]);
    qv_free(p->keep_prefix);
    for (size_t i = 0; i < p->n_shards; i++)
        qv_free(p->shard_names[i]);
    qv_free(p->shard_names);
    qv_free(p->lm_head);
    qv_checkpoint_close(p->ck);
    qv_model_config_free(&p->cfg);
    qv_free(p->path);
    memset(p, 0, sizeof *p);
}

int64_t qv_mplan_find(const qv_mplan *p, const char *name)
{
    int64_t lo = 0, hi = (int64_t)p->n - 1;
    while (lo <= hi) { /* p->t is in name order (the checkpoint's refs are sorted) */
        int64_t mid = (lo + hi) / 2;
        int c = strcmp(p->t[mid].e->name, name);
        if (!c)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

bool qv_mplan_has_module(void *plan, const char *module)
{
    char *n = qv_module_param(module, "weight");
    bool ok = n && qv_mplan_find(plan, n) >= 0;
    qv_free(n);
    return ok;
}

qv_status qv_mplan_load_layer(const qv_mplan *p, size_t li, const qv_scales *sc, qv_dtype T, qv_wset *ws,
                              size_t *n_applied)
{
    const qv_layer *L = &p->layers[li];
    for (size_t k = 0; k < L->n; k++) {
        const qv_tinfo *t = &p->t[L->tensors[k]];
        if ((t->e->ndim != 1 && t->e->ndim != 2) || !qv_dtype_is_float(t->e->dtype))
            continue;
        qv_tensor v;
        qv_st_view(t->file, t->e, &v);
        QV_TRY(qv_wset_add(ws, t->e->name, &v, T));
    }
    return qv_apply_to_set(ws, sc, T, n_applied);
}

qv_wq_spec qv_qspec_wq(const qv_qspec *q, qv_dtype T)
{
    qv_wq_spec s = {.bits = q->bits, .group = q->a_bit < 16 ? -1 : q->group, .sym = q->a_bit < 16 ? true : q->sym,
                    .T = T, .div = q->div};
    return s;
}
