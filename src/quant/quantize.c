/* quantize.c — the `qvlm quantize` run (quantize.h). */
#include "quantize.h"
#include "run_util.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <omp.h>

#include "../core/comm.h"
#include "../core/fsutil.h"
#include "../core/prof.h"
#include "../core/progress.h"
#include "../eval/eval.h"
#include "../io/json.h"
#include "../io/safetensors.h"
#include "../llm/backward.h"
#include "../llm/forward.h"
#include "../nn/matmul.h"
#include "fp8.h"
#include "layerwise.h"
#include "qlayer.h"
#include "smooth.h"

#define SEARCH_FORMAT "qvlm-search/1"

void qv_mem_sample(qv_mem_peak *p)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        unsigned long long kb;
        if (sscanf(line, "RssAnon: %llu kB", &kb) == 1 && kb * 1024 > p->anon)
            p->anon = kb * 1024;
        else if (sscanf(line, "RssFile: %llu kB", &kb) == 1 && kb * 1024 > p->file)
            p->file = kb * 1024;
    }
    fclose(f);
}

struct qv_mem_watch {
    pthread_t th;
    atomic_int stop;
    qv_mem_peak peak; /* written by the watcher only, read after the join */
};

static void *mem_watch_main(void *arg)
{
    qv_mem_watch *w = arg;
    const struct timespec tick = {0, 20 * 1000 * 1000};
    while (!atomic_load(&w->stop)) {
        qv_mem_sample(&w->peak);
        nanosleep(&tick, NULL);
    }
    return NULL;
}

qv_mem_watch *qv_mem_watch_start(void)
{
    qv_mem_watch *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    atomic_init(&w->stop, 0);
    if (pthread_create(&w->th, NULL, mem_watch_main, w) != 0) {
        free(w);
        return NULL;
    }
    return w;
}

void qv_mem_watch_stop(qv_mem_watch *w, qv_mem_peak *into)
{
    if (!w)
        return;
    atomic_store(&w->stop, 1);
    pthread_join(w->th, NULL);
    if (into) {
        into->anon = w->peak.anon > into->anon ? w->peak.anon : into->anon;
        into->file = w->peak.file > into->file ? w->peak.file : into->file;
    }
    free(w);
}

void qv_run_log(const qv_quantize_io *io, const char *fmt, ...)
{
    if (!io->log)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(io->log, fmt, ap);
    va_end(ap);
    fflush(io->log);
}

/* ---- run state -------------------------------------------------------------------------------- */

typedef struct run {
    const qv_run_config *rc;
    const qv_quantize_io *io;
    char *dir, *progress_dir;
    char *signature;      /* JSON identifying the run (config + model), for resume */
    qv_quant_opts o;
    qv_llm *m;
    qv_mem_peak mem;
    double t_calib, t_grad, t_search, t_eval;
    double *r_attn, *r_mlp;
    double *ratios_cached;  /* owned: the ratios read back from a complete resume checkpoint */
    qv_mbq_grad_stats gs;
    bool have_gs;
} run;

const char *qv_run_dtype_word(qv_dtype T)
{
    return T == QV_BF16 ? "bfloat16" : T == QV_F16 ? "float16" : "float32";
}

static qv_dtype resolve_dtype(const qv_run_config *rc, const qv_model_config *cfg)
{
    switch (rc->dtype) {
    case QV_RUN_DTYPE_F32: return QV_F32;
    case QV_RUN_DTYPE_BF16: return QV_BF16;
    case QV_RUN_DTYPE_F16: return QV_F16;
    case QV_RUN_DTYPE_AUTO: break;
    }
    if (!strcmp(cfg->torch_dtype, "float16"))
        return QV_F16;
    if (!strcmp(cfg->torch_dtype, "float32"))
        return QV_F32;
    return QV_BF16;
}

/* What the method/bit combination means, or why it cannot run. */
static qv_status check_method(const qv_run_config *rc, const qv_llm *m)
{
    const char *f = rc->file;
    switch (rc->method) {
    case QV_METHOD_NONE:
        return qv_fail(QV_ERR_INVALID, "%s: method is null: nothing to quantize", f);
    case QV_METHOD_FP8:
        return QV_OK; /* the scheme is checked by fp8.c */
    default:
        break;
    }
    if (rc->w_bit < 2 || rc->w_bit > 8)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: w_bit %d is not supported for %s (2..8)", f, rc->w_bit,
                       qv_method_name(rc->method));
    if (rc->a_bit < 16 && (rc->a_bit < 2 || rc->a_bit > 8))
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: a_bit %d is not supported (2..8, or 16 for none)", f, rc->a_bit);
    const bool wa = qv_run_config_is_wa(rc) || rc->method == QV_METHOD_SMOOTHQUANT;
    if (!wa) {
        for (int l = 0; l < QV_LIN_COUNT; l++) {
            if (!qv_llm_has_lin(m, (qv_llm_lin)l))
                continue;
            int64_t ci = qv_llm_lin_in(m, (qv_llm_lin)l);
            if (rc->w_group > 0 && ci % rc->w_group)
                return qv_fail(QV_ERR_INVALID, "%s: w_group %d does not divide the %lld inputs of %s", f, rc->w_group,
                               (long long)ci, qv_llm_lin_suffix(m, (qv_llm_lin)l));
        }
    }
    if (rc->method == QV_METHOD_MBQ && rc->reweight && rc->calib_data == QV_CALIB_DATA_PILEVAL)
        return qv_fail(QV_ERR_INVALID, "%s: reweight needs image-caption calibration data (calib_data: coco)", f);
    if (rc->auto_clip && (rc->w_group <= 0 || wa))
        return qv_fail(QV_ERR_INVALID, "%s: auto_clip needs weight-only quantization with w_group > 0", f);
    return QV_OK;
}

/* ---- resume: one crash-safe file per finished layer ------------------------------------------ */

static char *layer_path(const run *r, int64_t l) { return qv_asprintf("%s/layer.%05lld.safetensors", r->progress_dir, (long long)l); }

static void entry_json(qv_strbuf *b, const qv_qentry *e)
{
    qv_sb_puts(b, "{\"prev_op\":");
    qv_sb_json_str(b, e->prev_op, strlen(e->prev_op));
    qv_sb_puts(b, ",\"layers\":[");
    for (int f = 0; f < e->n_fcs; f++) {
        if (f)
            qv_sb_puts(b, ",");
        qv_sb_json_str(b, e->fcs[f], strlen(e->fcs[f]));
    }
    qv_sb_printf(b, "],\"best_ratio_index\":%d,\"n_grid\":%d,\"loss_history\":[", e->best, e->n_grid);
    for (int i = 0; i < e->n_grid; i++) {
        if (i)
            qv_sb_puts(b, ",");
        qv_sb_json_double(b, e->loss[i]);
    }
    qv_sb_puts(b, "],\"ratio\":");
    if (isnan(e->ratio))
        qv_sb_puts(b, "null");
    else
        qv_sb_json_double(b, e->ratio);
    qv_sb_puts(b, "}");
}

static qv_status layer_done(void *ctx, int64_t layer, const qv_qresult *res, size_t first, size_t first_clip)
{
    run *r = ctx;
    qv_mem_sample(&r->mem);
    if (qv_comm_world()->rank != 0)
        return QV_OK;
    qv_strbuf meta;
    qv_sb_init(&meta);
    qv_sb_puts(&meta, "[");
    size_t n = res->n - first, nc = res->n_clip - first_clip;
    qv_st_item *items = qv_calloc(2 * n + nc + 1, sizeof *items, "layer checkpoint");
    char (*names)[480] = qv_calloc(2 * n + nc + 1, sizeof *names, "layer checkpoint");
    if (!items || !names) {
        qv_free(items);
        qv_free(names);
        return QV_ERR_NOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const qv_qentry *e = &res->e[first + i];
        if (i)
            qv_sb_puts(&meta, ",");
        entry_json(&meta, e);
        snprintf(names[k], sizeof names[k], "scale.%zu", i);
        items[k] = (qv_st_item){names[k], QV_F32, 1, {e->n}, e->scale};
        k++;
        snprintf(names[k], sizeof names[k], "act_scale.%zu", i);
        items[k] = (qv_st_item){names[k], QV_F32, 1, {e->n}, e->act_scale};
        k++;
    }
    qv_sb_puts(&meta, "]");
    for (size_t i = 0; i < nc; i++) {
        const qv_qclip *c = &res->clip[first_clip + i];
        snprintf(names[k], sizeof names[k], "clip.%s", c->name);
        items[k] = (qv_st_item){names[k], QV_F32, 2, {c->co, c->ng}, c->max_val};
        k++;
    }
    char *path = layer_path(r, layer);
    qv_status st = meta.oom || !path ? QV_ERR_NOMEM : QV_OK;
    if (st == QV_OK) {
        qv_st_kv kv[] = {{"entries", meta.s}, {"run", r->signature}};
        st = qv_st_write_file(path, items, k, kv, 2);
    }
    qv_free(path);
    qv_free(items);
    qv_free(names);
    qv_sb_free(&meta);
    return st;
}

static const char *meta_value(const qv_st_file *f, const char *key)
{
    for (size_t i = 0; i < f->hdr.n_meta; i++)
        if (!strcmp(f->hdr.meta[i].key, key))
            return f->hdr.meta[i].value;
    return NULL;
}

/* Loads a finished layer's entries; false (start the layer over) on any mismatch. */
static bool layer_read(void *ctx, int64_t layer, qv_qresult *res)
{
    run *r = ctx;
    char *path = layer_path(r, layer);
    if (!path || !qv_path_exists(path)) {
        qv_free(path);
        return false;
    }
    qv_st_file *f = NULL;
    qv_json *meta = NULL;
    bool ok = qv_st_open(path, &f) == QV_OK;
    const char *run_sig = ok ? meta_value(f, "run") : NULL, *ent = ok ? meta_value(f, "entries") : NULL;
    ok = ok && run_sig && ent && !strcmp(run_sig, r->signature) &&
         qv_json_parse(ent, strlen(ent), path, 0, &meta) == QV_OK && qv_json_is_type(meta, json_type_array);
    size_t n0 = res->n, c0 = res->n_clip;
    for (size_t i = 0; ok && i < json_object_array_length(meta); i++) {
        qv_json *e = json_object_array_get_idx(meta, i);
        qv_qentry q = {.layer = layer, .ratio = NAN};
        const char *prev = NULL;
        qv_json *lays = NULL, *hist = NULL;
        int64_t best = -1, ngrid = 0;
        ok = qv_json_str(e, "prev_op", path, &prev) == QV_OK && qv_json_arr(e, "layers", path, &lays) == QV_OK &&
             qv_json_arr(e, "loss_history", path, &hist) == QV_OK &&
             qv_json_int(e, "best_ratio_index", path, &best) == QV_OK && qv_json_int(e, "n_grid", path, &ngrid) == QV_OK &&
             ngrid == r->o.n_grid && json_object_array_length(hist) == (size_t)ngrid && json_object_array_length(lays) <= 3;
        if (!ok)
            break;
        snprintf(q.prev_op, sizeof q.prev_op, "%s", prev);
        q.n_fcs = (int)json_object_array_length(lays);
        for (int j = 0; j < q.n_fcs; j++)
            snprintf(q.fcs[j], sizeof q.fcs[j], "%s", json_object_get_string(json_object_array_get_idx(lays, (size_t)j)));
        q.best = (int)best;
        q.n_grid = (int)ngrid;
        for (int j = 0; j < q.n_grid; j++)
            q.loss[j] = json_object_get_double(json_object_array_get_idx(hist, (size_t)j));
        qv_json *rt = qv_json_get(e, "ratio");
        if (qv_json_is_type(rt, json_type_double) || qv_json_is_type(rt, json_type_int))
            q.ratio = json_object_get_double(rt);
        char key[64];
        qv_tensor ts, ta;
        snprintf(key, sizeof key, "scale.%zu", i);
        ok = qv_st_get(f, key, &ts) == QV_OK && ts.dtype == QV_F32 && ts.ndim == 1;
        snprintf(key, sizeof key, "act_scale.%zu", i);
        ok = ok && qv_st_get(f, key, &ta) == QV_OK && ta.dtype == QV_F32 && ta.ndim == 1 && ta.shape[0] == ts.shape[0];
        if (!ok)
            break;
        q.n = ts.shape[0];
        q.scale = qv_malloc((size_t)q.n * sizeof(float), "scale");
        q.act_scale = qv_malloc((size_t)q.n * sizeof(float), "act scale");
        ok = q.scale && q.act_scale;
        if (ok) {
            memcpy(q.scale, ts.data, (size_t)q.n * sizeof(float));
            memcpy(q.act_scale, ta.data, (size_t)q.n * sizeof(float));
            ok = qv_qresult_add(res, &q) == QV_OK;
        }
        if (!ok) {
            qv_free(q.scale);
            qv_free(q.act_scale);
        }
    }
    for (size_t i = 0; ok && f && i < f->hdr.n; i++) {
        const qv_st_entry *e = &f->hdr.entries[i];
        if (strncmp(e->name, "clip.", 5) != 0)
            continue;
        qv_qclip c = {0};
        snprintf(c.name, sizeof c.name, "%s", e->name + 5);
        ok = e->ndim == 2 && e->dtype == QV_F32;
        if (!ok)
            break;
        c.co = e->shape[0];
        c.ng = e->shape[1];
        c.max_val = qv_malloc((size_t)(c.co * c.ng) * sizeof(float), "clip values");
        ok = c.max_val && qv_qresult_add_clip(res, &c) == QV_OK;
        if (ok)
            memcpy(c.max_val, f->data + e->begin, (size_t)(c.co * c.ng) * sizeof(float));
        else
            qv_free(c.max_val);
    }
    if (!ok) { /* drop what this layer appended, the layer runs again */
        while (res->n > n0) {
            res->n--;
            qv_free(res->e[res->n].scale);
            qv_free(res->e[res->n].act_scale);
        }
        while (res->n_clip > c0)
            qv_free(res->clip[--res->n_clip].max_val);
    }
    qv_json_free(meta);
    qv_st_close(f);
    qv_free(path);
    qv_clear_error();
    return ok;
}

/* Rank 0 decides whether layer l is finished; every rank then loads it (DIR is shared). */
static qv_status layer_cached(void *ctx, int64_t layer, qv_qresult *res, bool *hit)
{
    const qv_comm *c = qv_comm_world();
    int flag = c->rank == 0 ? layer_read(ctx, layer, res) : 0;
    if (c->size > 1) {
        QV_TRY(qv_comm_bcast(&flag, sizeof flag));
        if (flag && c->rank != 0 && !layer_read(ctx, layer, res))
            return qv_fail(QV_ERR_IO, "rank %d: cannot read the checkpoint of layer %lld that rank 0 read (is the "
                           "output folder shared by every rank?)", c->rank, (long long)layer);
    }
    *hit = flag != 0;
    return QV_OK;
}

/* ---- outputs ----------------------------------------------------------------------------------- */

static qv_status write_scales(run *r, const qv_qresult *res)
{
    size_t n = 2 * res->n + res->n_clip;
    qv_st_item *items = qv_calloc(n + 1, sizeof *items, "scales");
    char (*names)[480] = qv_calloc(n + 1, sizeof *names, "scales");
    if (!items || !names) {
        qv_free(items);
        qv_free(names);
        return QV_ERR_NOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < res->n; i++) {
        snprintf(names[k], sizeof names[k], "scale.%03zu", i);
        items[k] = (qv_st_item){names[k], QV_F32, 1, {res->e[i].n}, res->e[i].scale};
        k++;
        snprintf(names[k], sizeof names[k], "act_scale.%03zu", i);
        items[k] = (qv_st_item){names[k], QV_F32, 1, {res->e[i].n}, res->e[i].act_scale};
        k++;
    }
    for (size_t i = 0; i < res->n_clip; i++) {
        snprintf(names[k], sizeof names[k], "clip.%s", res->clip[i].name);
        items[k] = (qv_st_item){names[k], QV_F32, 2, {res->clip[i].co, res->clip[i].ng}, res->clip[i].max_val};
        k++;
    }
    char *path = qv_path_join(r->dir, "scales.safetensors");
    qv_status st = path ? qv_st_write_file(path, items, k, NULL, 0) : QV_ERR_NOMEM;
    qv_free(path);
    qv_free(items);
    qv_free(names);
    return st;
}

static qv_status write_search_json(run *r, const qv_qresult *res)
{
    qv_strbuf b;
    qv_sb_init(&b);
    qv_sb_printf(&b, "{\n  \"format\": \"%s\",\n  \"method\": \"%s\",\n  \"dtype\": \"%s\",\n  \"model\": ", SEARCH_FORMAT,
                 qv_method_name(r->rc->method), qv_run_dtype_word(r->o.T));
    qv_sb_json_str(&b, r->m->dir, strlen(r->m->dir));
    qv_sb_puts(&b, ",\n  \"config\": ");
    qv_run_config_to_json(r->rc, &b);
    qv_sb_puts(&b, ",\n  \"entries\": [");
    for (size_t i = 0; i < res->n; i++) {
        const qv_qentry *e = &res->e[i];
        qv_sb_printf(&b, "%s\n    {\"index\": %zu, \"prev_op\": ", i ? "," : "", i);
        qv_sb_json_str(&b, e->prev_op, strlen(e->prev_op));
        qv_sb_puts(&b, ", \"layers\": [");
        for (int f = 0; f < e->n_fcs; f++) {
            if (f)
                qv_sb_puts(&b, ", ");
            qv_sb_json_str(&b, e->fcs[f], strlen(e->fcs[f]));
        }
        qv_sb_printf(&b, "], \"numel\": %lld, \"best_ratio_index\": %d, \"best_ratio\": ", (long long)e->n, e->best);
        qv_sb_json_double(&b, (double)e->best / (double)e->n_grid);
        qv_sb_puts(&b, ", \"loss_history\": [");
        for (int j = 0; j < e->n_grid; j++) {
            if (j)
                qv_sb_puts(&b, ", ");
            qv_sb_json_double(&b, e->loss[j]);
        }
        qv_sb_puts(&b, "]");
        if (!isnan(e->ratio)) {
            qv_sb_puts(&b, ", \"reweight_ratio\": ");
            qv_sb_json_double(&b, e->ratio);
        }
        qv_sb_puts(&b, "}");
    }
    qv_sb_puts(&b, "\n  ]");
    if (res->n_clip) {
        qv_sb_puts(&b, ",\n  \"clips\": [");
        for (size_t i = 0; i < res->n_clip; i++) {
            if (i)
                qv_sb_puts(&b, ", ");
            qv_sb_json_str(&b, res->clip[i].name, strlen(res->clip[i].name));
        }
        qv_sb_puts(&b, "]");
    }
    if (r->r_attn) {
        qv_sb_puts(&b, ",\n  \"reweight_ratio_dict_per_layer\": [");
        for (int64_t l = 0; l < r->m->c->n_layers; l++) {
            qv_sb_printf(&b, "%s{\"attn\": ", l ? ", " : "");
            qv_sb_json_double(&b, r->r_attn[l]);
            qv_sb_puts(&b, ", \"mlp\": ");
            qv_sb_json_double(&b, r->r_mlp[l]);
            qv_sb_puts(&b, "}");
        }
        qv_sb_puts(&b, "]");
    }
    qv_sb_puts(&b, "\n}\n");
    char *path = qv_path_join(r->dir, "search.json");
    qv_status st = b.oom || !path ? QV_ERR_NOMEM : qv_write_file_atomic(path, b.s, b.len);
    qv_free(path);
    qv_sb_free(&b);
    return st;
}

static qv_status write_json_file(const char *dir, const char *name, const qv_strbuf *b)
{
    char *path = qv_path_join(dir, name);
    qv_status st = b->oom || !path ? QV_ERR_NOMEM : qv_write_file_atomic(path, b->s, b->len);
    qv_free(path);
    return st;
}

/* ---- phases ------------------------------------------------------------------------------------- */

static qv_status gradient_pass(run *r, const qv_llm_batch *b, int64_t n_total)
{
    qv_progress prog;
    qv_progress_init(&prog, r->io->log, "gradients", b->B);
    qv_status st = qv_llm_mbq_grad_samples(r->m, b, n_total, &prog, &r->gs);
    qv_progress_finish(&prog);
    if (st != QV_OK)
        return st;
    st = qv_mbq_grad_finish(&r->gs);
    if (st != QV_OK) {
        qv_mbq_grad_stats_free(&r->gs);
        return st;
    }
    r->have_gs = true;
    const int64_t NL = r->m->c->n_layers;
    for (int64_t l = 0; l < NL; l++)
        if (isnan(r->gs.reweight_attn[l]) || isnan(r->gs.reweight_mlp[l]))
            return qv_fail(QV_ERR_INVALID, "%s: layer %lld: the vision/caption gradient ratio is NaN (a sample with an "
                           "empty vision or caption mask?)", b->path ? b->path : "calibration batch", (long long)l);
    r->r_attn = r->gs.reweight_attn;
    r->r_mlp = r->gs.reweight_mlp;
    return QV_OK;
}

/* Mean NLL over every loss row of the whole batch: this rank's rows, then the sum over all rows
 * in row order (= sample order) on every rank, as qv_llm_forward forms it for one process. */
static qv_status eval_loss(qv_llm *m, const qv_llm_batch *b, double *loss)
{
    qv_llm_result res = {0};
    QV_TRY(qv_llm_forward(m, b, NULL, NULL, QV_LLM_FWD_NO_LOGITS0, &res));
    double *rows = qv_malloc((size_t)res.n_rows * sizeof *rows + 8, "evaluation rows");
    qv_status st = rows ? QV_OK : QV_ERR_NOMEM;
    double sum[1], cnt[1], one[1] = {(double)res.n_rows};
    for (int64_t i = 0; st == QV_OK && i < res.n_rows; i++)
        rows[i] = res.nll[i];
    if (st == QV_OK)
        st = qv_comm_sum_rows(rows, res.n_rows, 1, sum);
    if (st == QV_OK)
        st = qv_comm_sum_rows(one, 1, 1, cnt);
    if (st == QV_OK)
        *loss = cnt[0] > 0 ? sum[0] / cnt[0] : NAN;
    qv_free(rows);
    qv_llm_result_free(&res);
    return st;
}

static char *make_signature(const run *r)
{
    qv_strbuf b;
    qv_sb_init(&b);
    qv_sb_printf(&b, "{\"format\":\"%s\",\"model\":", SEARCH_FORMAT);
    qv_sb_json_str(&b, r->m->dir, strlen(r->m->dir));
    uint64_t bytes = 0;
    for (size_t i = 0; i < r->m->ck->n_shards; i++)
        bytes += r->m->ck->shards[i]->map_len;
    qv_sb_printf(&b, ",\"checkpoint_bytes\":%llu,\"dtype\":\"%s\",\"compute\":\"%s\",\"config\":", (unsigned long long)bytes,
                 qv_run_dtype_word(r->o.T), qv_dtype_name(r->m->dt));
    /* the keys that decide the search (paths to outputs and thread counts do not) */
    const qv_run_config *c = r->rc;
    qv_sb_printf(&b, "{\"method\":\"%s\",\"w_bit\":%d,\"a_bit\":%d,\"w_group\":%d,\"zero_point\":%d,\"division\":\"%s\","
                     "\"n_grid\":%d,\"loss_mode\":\"%s\",\"reweight\":%d,\"distort\":%d,\"auto_clip\":%d,\"alpha\":",
                 qv_method_name(c->method), c->w_bit, c->a_bit, c->w_group, c->zero_point, qv_division_name(c->division),
                 c->n_grid, qv_loss_mode_name(c->loss_mode), c->reweight, c->distort, c->auto_clip);
    qv_sb_json_double(&b, c->alpha);
    qv_sb_printf(&b, ",\"calib_data\":\"%s\",\"n_samples\":%lld,\"seed\":%llu,\"data_path\":", qv_calib_data_name(c->calib_data),
                 (long long)c->n_samples, (unsigned long long)c->seed);
    if (c->data_path)
        qv_sb_json_str(&b, c->data_path, strlen(c->data_path));
    else
        qv_sb_puts(&b, "null");
    qv_sb_printf(&b, ",\"few_shot\":%d,\"interleave\":%d,\"pad_rule\":\"%s\"}}", c->few_shot_format,
                 c->interleave_format, qv_pad_rule_name(c->pad_rule));
    if (b.oom) {
        qv_sb_free(&b);
        return NULL;
    }
    return b.s;
}

/* The folder: created, or refused when it holds another run (unless force). */
static qv_status prepare_dir(run *r)
{
    QV_TRY(qv_mkdirs(r->dir));
    r->progress_dir = qv_path_join(r->dir, "progress");
    if (!r->progress_dir)
        return QV_ERR_NOMEM;
    char *sig_path = qv_path_join(r->progress_dir, "run.json");
    if (!sig_path)
        return QV_ERR_NOMEM;
    qv_status st = QV_OK;
    if (qv_path_exists(sig_path)) {
        char *old = NULL;
        size_t len;
        st = qv_read_file(sig_path, 1 << 20, &old, &len);
        if (st == QV_OK && strcmp(old, r->signature) != 0) {
            if (r->io->force)
                st = qv_remove_tree(r->progress_dir);
            else
                st = qv_fail(QV_ERR_INVALID, "%s: holds a quantization run with another configuration or model (use "
                             "another folder, or --force to start over)", r->dir);
        }
        qv_free(old);
    }
    if (st == QV_OK)
        st = qv_mkdirs(r->progress_dir);
    if (st == QV_OK)
        st = qv_write_file_atomic(sig_path, r->signature, strlen(r->signature));
    qv_free(sig_path);
    return st;
}

/* ---- SmoothQuant from saved maxima (run_process false) ----------------------------------------- */

/* The maxima a run_process: false SmoothQuant run smooths with (ALGORITHMS.md §4.4): the
 * reference's act-scale .pt ({linear: a}), or a qvlm SmoothQuant folder (act_scale.{k:03d} of
 * entry k, whose first linear names it). */
typedef struct saved_maxima {
    const char *path;
    qv_scales sc;              /* the .pt's act entries, or the folder's entries */
    float **dir_a;             /* [sc.n] the folder's act_scale vectors (NULL for a .pt) */
    int64_t *dir_n;
} saved_maxima;

static bool ck_has_module(void *ctx, const char *module)
{
    char *w = qv_asprintf("%s.weight", module);
    bool has = w && qv_checkpoint_find(((const qv_llm *)ctx)->ck, w, NULL);
    qv_free(w);
    return has;
}

static qv_status saved_lookup(void *ctx, const char *name, int64_t C, const float **a)
{
    const saved_maxima *sm = ctx;
    const size_t n = sm->dir_a ? sm->sc.n : sm->sc.n_act;
    for (size_t k = 0; k < n; k++) {
        const char *key = sm->dir_a ? sm->sc.entries[k].layers[0] : sm->sc.act[k].prev_op;
        const int64_t len = sm->dir_a ? sm->dir_n[k] : sm->sc.act[k].n;
        if (strcmp(key, name))
            continue;
        if (len != C)
            return qv_fail(QV_ERR_INVALID, "%s: the activation maxima of %s have %lld values, the model has %lld channels",
                           sm->path, name, (long long)len, (long long)C);
        *a = sm->dir_a ? sm->dir_a[k] : sm->sc.act[k].s;
        return QV_OK;
    }
    return qv_fail(QV_ERR_INVALID, "%s: no activation maxima for %s", sm->path, name);
}

static void saved_free(saved_maxima *sm)
{
    for (size_t k = 0; sm->dir_a && k < sm->sc.n; k++)
        qv_free(sm->dir_a[k]);
    qv_free(sm->dir_a);
    qv_free(sm->dir_n);
    qv_scales_free(&sm->sc);
}

static qv_status smooth_from_saved(run *r, qv_qresult *res)
{
    saved_maxima sm = {.path = r->rc->scale_path};
    qv_status st = qv_scales_load(sm.path, &sm.sc);
    if (st == QV_OK && !sm.sc.n_act) {
        /* a qvlm folder: only a SmoothQuant run's act_scale vectors are maxima (MBQ/AWQ keep mean |x|) */
        if (!sm.sc.cfg.present || strcmp(sm.sc.cfg.method, "smoothquant"))
            st = qv_fail(QV_ERR_INVALID, "%s: run_process is false, but scale_path %s holds %s%s%s, not SmoothQuant "
                         "activation maxima (a SmoothQuant scales folder or the reference's act-scale .pt)",
                         r->rc->file, sm.path, sm.sc.cfg.present ? "a " : "a scale list",
                         sm.sc.cfg.present ? sm.sc.cfg.method : "", sm.sc.cfg.present ? " search" : "");
        char *stp = st == QV_OK ? qv_path_join(sm.path, "scales.safetensors") : NULL;
        qv_st_file *f = NULL;
        if (st == QV_OK && !stp)
            st = QV_ERR_NOMEM;
        if (st == QV_OK)
            st = qv_st_open(stp, &f);
        sm.dir_a = st == QV_OK ? qv_calloc(sm.sc.n + 1, sizeof *sm.dir_a, "maxima") : NULL;
        sm.dir_n = st == QV_OK ? qv_calloc(sm.sc.n + 1, sizeof *sm.dir_n, "maxima") : NULL;
        if (st == QV_OK && (!sm.dir_a || !sm.dir_n))
            st = QV_ERR_NOMEM;
        for (size_t k = 0; st == QV_OK && k < sm.sc.n; k++) {
            char key[32];
            qv_tensor t;
            snprintf(key, sizeof key, "act_scale.%03zu", k);
            st = qv_st_get(f, key, &t);
            if (st == QV_OK && (t.ndim != 1 || sm.sc.entries[k].n_layers == 0))
                st = qv_fail(QV_ERR_FORMAT, "%s: %s is not a vector of one entry's maxima", stp, key);
            if (st == QV_OK && !(sm.dir_a[k] = qv_malloc((size_t)t.shape[0] * sizeof(float) + 4, key)))
                st = QV_ERR_NOMEM;
            if (st == QV_OK) {
                qv_convert(sm.dir_a[k], QV_F32, t.data, t.dtype, (size_t)t.shape[0]);
                sm.dir_n[k] = t.shape[0];
            }
        }
        qv_st_close(f);
        qv_free(stp);
    }
    if (st == QV_OK)
        st = qv_scales_resolve(&sm.sc, ck_has_module, r->m);
    if (st == QV_OK)
        st = qv_smooth_from_maxima(r->m, &r->o, saved_lookup, &sm, res);
    saved_free(&sm);
    return st;
}

qv_status qv_quantize(const qv_run_config *rc, const qv_quantize_io *io)
{
    run r = {.rc = rc, .io = io};
    qv_status st = QV_OK;
    qv_llm_batch batch = {0};
    bool have_batch = false;
    qv_qresult res = {0};
    qv_scales sc = {0};
    qv_fp8_model fm = {0};
    bool wrote_scales = false; /* an evaluate-only run writes eval.json and timings.json only */
    double t0 = qv_now_s();
    if (!rc->pretrained)
        return qv_fail(QV_ERR_INVALID, "%s: model_args names no pretrained model folder", rc->file);
    const char *dir = io->out_dir ? io->out_dir : rc->scale_dir;
    if (!dir)
        return qv_fail(QV_ERR_INVALID, "%s: no output folder: give -o DIR or scale_path", rc->file);
    r.dir = qv_strdup(dir);
    if (!r.dir)
        return QV_ERR_NOMEM;
    qv_mem_watch *watch = qv_mem_watch_start();

    /* the model, in the compute dtype the host supports */
    qv_model_config cfg;
    QV_CHECK(st = qv_model_config_load(rc->pretrained, &cfg), done);
    qv_dtype T = resolve_dtype(rc, &cfg);
    qv_model_config_free(&cfg);
    qv_llm_opts lo = {.compute = (T == QV_BF16 && qv_matmul_bf16_native()) ? QV_BF16 : QV_F32};
    QV_CHECK(st = qv_llm_open(rc->pretrained, &lo, &r.m), done);
    qv_quant_opts_from_run(&r.o, rc, T);
    QV_CHECK(st = check_method(rc, r.m), done);
    if (io->recipe && rc->method != QV_METHOD_FP8) {
        st = qv_fail(QV_ERR_INVALID, "%s: --recipe %s applies to method fp8, not %s", rc->file, io->recipe,
                     qv_method_name(rc->method));
        goto done;
    }
    if (rc->method == QV_METHOD_FP8) /* the scheme, checked before anything is written */
        QV_CHECK(st = qv_fp8_prepare(&fm, r.m, rc, io, T), done);
    r.signature = make_signature(&r);
    if (!r.signature) {
        st = QV_ERR_NOMEM;
        goto done;
    }
    const qv_comm *comm = qv_comm_world();
    const bool root = comm->rank == 0;
    QV_CHECK(st = qv_comm_check_same("configuration or model", r.signature), done);
    if (root)
        st = prepare_dir(&r);
    else
        r.progress_dir = qv_path_join(r.dir, "progress");
    QV_CHECK(st, done);
    QV_CHECK(st = qv_comm_barrier(), done);
    qv_quantize_io quiet_io = *io; /* ranks other than 0 log nothing */
    quiet_io.log = NULL;
    if (!root)
        io = &quiet_io;
    r.io = io;
    if (rc->method == QV_METHOD_FP8) { /* one calibration pass instead of a search (fp8.h) */
        qv_fp8_times ft;
        QV_CHECK(st = qv_fp8_quantize(&fm, r.m, rc, io, r.dir, &ft), done);
        wrote_scales = true;
        r.t_calib = ft.calib, r.t_search = ft.stats, r.t_eval = ft.eval;
        qv_mem_sample(&r.mem);
        goto timings;
    }
    qv_run_log(io, "qvlm: %s %s w%d%s on %s (%s arithmetic, %s matmuls) -> %s\n", qv_method_name(rc->method),
          r.o.wa ? "W-A" : "W-only", rc->w_bit, r.o.wa ? "" : "", rc->pretrained, qv_run_dtype_word(T), qv_dtype_name(r.m->dt),
          r.dir);

    /* calibration batch (also the evaluation batch): this rank's samples [b0, b0 + batch.B) of
     * n_total */
    double t = qv_now_s();
    int64_t b0 = 0, n_total = 0;
    if (io->get_batch && (qv_run_config_needs_calib(rc) || rc->data_path)) {
        QV_CHECK(st = io->get_batch(io->batch_ctx, r.m, rc, &batch, &b0, &n_total), done);
        have_batch = true;
        QV_CHECK(st = qv_llm_batch_check(&batch, r.m), done);
    } else if (qv_run_config_needs_calib(rc)) {
        st = qv_fail(QV_ERR_INVALID, "%s: method %s needs calibration data (calib_data/data_path)", rc->file,
                     qv_method_name(rc->method));
        goto done;
    }
    r.t_calib = qv_now_s() - t;
    qv_mem_sample(&r.mem);

    /* layer-0 inputs: the batch's inputs_embeds themselves when it has them (read-only here; a
     * copy would cost B·L·C floats, 7.8 MB per sample at InternVL2-8B), else the embedding rows */
    const float *x0 = NULL;
    float *x0_own = NULL;
    if (have_batch && rc->method != QV_METHOD_RTN && rc->run_process && batch.inputs_embeds) {
        x0 = batch.inputs_embeds;
    } else if (have_batch && rc->method != QV_METHOD_RTN && rc->run_process) {
        x0 = x0_own = qv_malloc((size_t)(batch.B * batch.L * r.m->C) * sizeof *x0_own, "layer-0 inputs");
        if (!x0) {
            st = QV_ERR_NOMEM;
            goto done;
        }
        st = qv_llm_batch_embeds(r.m, &batch, x0_own);
        if (st != QV_OK) {
            qv_free(x0_own);
            goto done;
        }
    }

    /* MBQ: gradient statistics and per-layer ratios (not needed again when a resumed run has
     * every layer: the ratios are in the layer checkpoints) */
    t = qv_now_s();
    if (st == QV_OK && rc->method == QV_METHOD_MBQ && rc->reweight && rc->run_process) {
        const int64_t NL = r.m->c->n_layers;
        qv_qresult probe = {0};
        bool all = true;
        for (int64_t l = 0; l < NL && all && st == QV_OK; l++)
            st = layer_cached(&r, l, &probe, &all);
        double *ra = st == QV_OK && all ? qv_calloc((size_t)NL * 2, sizeof *ra, "ratios") : NULL;
        if (ra) {
            /* per layer, the attention groups come first and the MLP groups last (§6.2) */
            for (size_t i = 0; i < probe.n; i++) {
                const qv_qentry *e = &probe.e[i];
                bool first = i == 0 || probe.e[i - 1].layer != e->layer;
                if (first)
                    ra[e->layer] = e->ratio;
                ra[NL + e->layer] = e->ratio;
            }
            r.r_attn = r.ratios_cached = ra;
            r.r_mlp = ra + NL;
        } else if (st == QV_OK) {
            st = gradient_pass(&r, &batch, n_total);
        }
        qv_qresult_free(&probe);
    }
    r.t_grad = qv_now_s() - t;
    qv_mem_sample(&r.mem);

    /* the search */
    t = qv_now_s();
    const bool search = rc->run_process || rc->method == QV_METHOD_RTN;
    if (!search) {
        if (!rc->scale_path || !qv_path_exists(rc->scale_path)) {
            st = qv_fail(QV_ERR_INVALID, "%s: run_process is false and scale_path %s holds no scales to evaluate",
                         rc->file, rc->scale_path ? rc->scale_path : "(none)");
            goto done;
        }
    } else if (st == QV_OK && (rc->method == QV_METHOD_AWQ || rc->method == QV_METHOD_MBQ)) {
        qv_progress prog;
        qv_progress_init(&prog, io->log, "layers", r.m->c->n_layers);
        /* one sample per runner call: every sample's rows then go through the same GEMM tiles
         * whatever the batch, thread or (later) rank layout, so results depend on nothing but
         * the data; the F32 scratch is one sample's, the activations stay in T */
        const int64_t chunk = 1;
        qv_layerwise lw = {.m = r.m, .o = &r.o, .b = &batch, .b0 = b0, .n_total = n_total, .x0 = x0, .chunk = chunk,
                           .r_attn = r.r_attn, .r_mlp = r.r_mlp,
                           .prog = &prog, .cached = layer_cached, .done = layer_done, .cb_ctx = &r};
        st = qv_quantize_layers(&lw, &res);
        qv_progress_finish(&prog);
    } else if (st == QV_OK && rc->method == QV_METHOD_SMOOTHQUANT) {
        st = qv_smooth_search(r.m, &r.o, &batch, x0, &res);
    }
    /* SmoothQuant without run_process smooths the saved maxima with this run's alpha (§4.4), so
     * its scales are new, and written like a search's */
    const bool sq_saved = !search && rc->method == QV_METHOD_SMOOTHQUANT;
    if (st == QV_OK && sq_saved)
        st = smooth_from_saved(&r, &res);
    qv_free(x0_own);
    r.t_search = qv_now_s() - t;
    qv_mem_sample(&r.mem);
    if (st != QV_OK)
        goto done;
    /* evaluate-only runs (run_process false) keep the scales they were given */
    const bool eval_only = !rc->run_process && rc->method != QV_METHOD_RTN && !sq_saved;
    if (!eval_only && root) {
        QV_CHECK(st = write_scales(&r, &res), done);
        QV_CHECK(st = write_search_json(&r, &res), done);
    }
    wrote_scales = !eval_only;
    QV_CHECK(st = qv_comm_barrier(), done); /* the other ranks read the scales rank 0 wrote */

    /* evaluation: the saved list applied to a fresh model view, fake-quantized */
    t = qv_now_s();
    qv_strbuf ev;
    qv_sb_init(&ev);
    qv_sb_puts(&ev, "{");
    if (have_batch) {
        double fp_loss, q_loss;
        QV_CHECK(st = eval_loss(r.m, &batch, &fp_loss), done);
        QV_CHECK(st = qv_scales_load(eval_only ? rc->scale_path : r.dir, &sc), done);
        qv_qmodel qm;
        QV_CHECK(st = qv_qmodel_from_scales(&qm, &sc, eval_only ? rc->w_bit : 0, eval_only ? rc->a_bit : 0,
                                            eval_only ? rc->w_group : 0),
                 done);
        qv_qmodel_attach(r.m, &qm);
        st = eval_loss(r.m, &batch, &q_loss);
        r.m->layer_hook = NULL;
        if (st == QV_OK && qm.n_applied != sc.n * (size_t)1 && sc.n) {
            /* every entry must have been applied exactly once over the layers */
            if (qm.n_applied != sc.n)
                st = qv_fail(QV_ERR_INTERNAL, "%s: %zu of %zu scale entries applied", r.dir, qm.n_applied, sc.n);
        }
        if (st != QV_OK) {
            qv_sb_free(&ev);
            goto done;
        }
        qv_sb_puts(&ev, "\"loss\": ");
        qv_sb_json_double(&ev, q_loss);
        qv_sb_puts(&ev, ", \"fp_loss\": ");
        qv_sb_json_double(&ev, fp_loss);
        qv_sb_printf(&ev, ", \"samples\": %lld", (long long)n_total);
        if (rc->eval_data_path && root) { /* rank 0 alone (documented) */
            /* the held-out caption evaluation (FP and this run's quantized model) */
            qv_sb_puts(&ev, ", ");
            QV_CHECK(st = qv_eval_heldout(r.m, r.dir, rc, 0, NULL, &ev), eval_fail);
        }
        qv_run_log(io, "qvlm: calibration loss %.6f (full precision %.6f)\n", q_loss, fp_loss);
    } else {
        qv_sb_puts(&ev, "\"loss\": null, \"fp_loss\": null");
    }
    qv_sb_puts(&ev, "}\n");
    st = root ? write_json_file(r.dir, "eval.json", &ev) : QV_OK;
    if (0) {
    eval_fail:
        qv_sb_free(&ev);
        goto done;
    }
    qv_sb_free(&ev);
    if (st != QV_OK)
        goto done;
    r.t_eval = qv_now_s() - t;
    qv_mem_sample(&r.mem);

timings:;
    /* per-rank phase times (the communication share included), gathered in rank order */
    enum { TW = 7 };
    qv_mem_sample(&r.mem);
    qv_mem_watch_stop(watch, &r.mem);
    watch = NULL;
    double mine[TW] = {r.t_calib, r.t_grad, r.t_search, r.t_eval, qv_now_s() - t0, comm->seconds, (double)r.mem.anon};
    double *all = qv_malloc((size_t)(comm->size * TW) * sizeof *all, "timings");
    if (!all) {
        st = QV_ERR_NOMEM;
        goto done;
    }
    QV_CHECK(st = qv_comm_allgather_rows(mine, 1, TW, all, comm->size), timings_fail);
    if (root) {
        qv_strbuf tj;
        qv_sb_init(&tj);
        qv_sb_printf(&tj, "{\"calibration\": %.3f, \"gradients\": %.3f, \"search\": %.3f, \"eval\": %.3f, \"total\": %.3f, "
                          "\"peak_rss_anon_bytes\": %llu, \"peak_rss_file_bytes\": %llu, \"threads\": %d, \"ranks\": %d, "
                          "\"per_rank\": [",
                     r.t_calib, r.t_grad, r.t_search, r.t_eval, qv_now_s() - t0, (unsigned long long)r.mem.anon,
                     (unsigned long long)r.mem.file, omp_get_max_threads(), comm->size);
        for (int k = 0; k < comm->size; k++) {
            const double *v = all + k * TW;
            qv_sb_printf(&tj, "%s{\"rank\": %d, \"calibration\": %.3f, \"gradients\": %.3f, \"search\": %.3f, "
                              "\"eval\": %.3f, \"total\": %.3f, \"communication\": %.3f, \"peak_rss_anon_bytes\": %.0f}",
                         k ? ", " : "", k, v[0], v[1], v[2], v[3], v[4], v[5], v[6]);
        }
        qv_sb_puts(&tj, "]}\n");
        st = write_json_file(r.dir, "timings.json", &tj);
        qv_sb_free(&tj);
    }
timings_fail:
    qv_free(all);
    if (st == QV_OK)
        qv_run_log(io, "qvlm: wrote %s/{%stimings.json}\n", r.dir,
                   wrote_scales ? "scales.safetensors,search.json,eval.json," : "eval.json,");
done:
    qv_mem_watch_stop(watch, NULL); /* NULL when stopped at the timings */
    qv_fp8_close(&fm);
    qv_scales_free(&sc);
    qv_qresult_free(&res);
    if (have_batch)
        qv_llm_batch_free(&batch);
    if (r.have_gs)
        qv_mbq_grad_stats_free(&r.gs);
    qv_free(r.ratios_cached);
    qv_llm_close(r.m);
    qv_free(r.signature);
    qv_free(r.progress_dir);
    qv_free(r.dir);
    return st;
}
