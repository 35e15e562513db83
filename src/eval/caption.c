/* caption.c — the caption task of `qvlm eval` (eval.h qv_eval_caption; spec CLI.md): the
 * held-out image–caption pairs, in file order, built as the family's calibration batch
 * (calib/batch.h), their images through the vision tower (vision/vision.h) chunk by chunk, and
 * the FP and quantized models compared on the captions' loss rows (runner.c); optionally a
 * second pass with every sample given another sample's images (derange.c). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../core/fsutil.h"
#include "../core/prof.h"
#include "../vision/vision.h"
#include "eval.h"

static void log_line(const qv_eval_caption_opts *o, void (*to)(void *, const char *), const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void log_line(const qv_eval_caption_opts *o, void (*to)(void *, const char *), const char *fmt, ...)
{
    if (!to)
        return;
    char buf[QV_ERROR_MAX + 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    to(o->log_ctx, buf);
}

/* ---- the batch's pixels as the tower's input ------------------------------------------------- */

typedef struct cap_pixels {
    const qv_calib_batch *cb;
    bool patches;           /* Qwen2-VL: a unit is an image of patch rows; else a tile */
    int64_t n_units;
    int64_t *img, *tile;    /* tile towers: unit → (image, tile within it) */
    uint8_t *flags;         /* InternVL image_flags per tile */
    int64_t unit_floats;    /* tile towers: 3·S·S; Qwen2-VL: values per patch row */
} cap_pixels;

static void cap_pixels_free(cap_pixels *p)
{
    qv_free(p->img);
    qv_free(p->tile);
    qv_free(p->flags);
    memset(p, 0, sizeof *p);
}

static qv_status cap_pixels_get(void *ctx, int64_t u0, int64_t n, float *dst)
{
    const cap_pixels *p = ctx;
    for (int64_t u = u0; u < u0 + n; u++) {
        if (p->patches) {
            const qv_pixels *px = &p->cb->images[u].px;
            const size_t k = (size_t)(px->shape[0] * px->shape[1]);
            memcpy(dst, px->values, k * sizeof *dst);
            dst += k;
        } else {
            const qv_pixels *px = &p->cb->images[p->img[u]].px;
            memcpy(dst, px->values + p->tile[u] * p->unit_floats, (size_t)p->unit_floats * sizeof *dst);
            dst += p->unit_floats;
        }
    }
    return QV_OK;
}

static qv_status cap_pixels_init(cap_pixels *p, const qv_calib_batch *cb, const qv_vision *v, const char *what,
                                 qv_vision_input *in)
{
    memset(p, 0, sizeof *p);
    memset(in, 0, sizeof *in);
    p->cb = cb;
    p->patches = qv_vision_kind_of(v) == QV_VISION_QWEN2VL;
    if (p->patches) {
        p->n_units = (int64_t)cb->n_images;
        p->unit_floats = qv_vision_patch_dim(v);
        for (size_t i = 0; i < cb->n_images; i++)
            if (cb->images[i].px.ndim != 2 || cb->images[i].px.shape[1] != p->unit_floats)
                return qv_fail(QV_ERR_INTERNAL, "%s: image %zu has no [patches, %lld] pixel rows", what, i,
                               (long long)p->unit_floats);
    } else {
        const int64_t S = qv_vision_tile_size(v);
        int64_t n = 0;
        for (size_t i = 0; i < cb->n_images; i++) {
            const qv_pixels *px = &cb->images[i].px;
            if (px->tile_w != S || px->tile_h != S)
                return qv_fail(QV_ERR_INTERNAL, "%s: image %zu has %dx%d tiles, the tower takes %lld", what, i,
                               px->tile_w, px->tile_h, (long long)S);
            if (qv_vision_kind_of(v) == QV_VISION_SIGLIP && px->n_tiles != 1)
                return qv_fail(QV_ERR_UNSUPPORTED, "%s: image %zu has %d crops; the evaluation takes one per image "
                               "(MBQ's pad path)", what, i, px->n_tiles);
            n += px->n_tiles;
        }
        if (cb->image_flags && n != cb->n_tiles)
            return qv_fail(QV_ERR_INTERNAL, "%s: %lld tiles but %lld image flags", what, (long long)n,
                           (long long)cb->n_tiles);
        p->n_units = n;
        p->unit_floats = 3 * S * S;
        p->img = qv_malloc((size_t)(n + 1) * sizeof *p->img, "tile index");
        p->tile = qv_malloc((size_t)(n + 1) * sizeof *p->tile, "tile index");
        p->flags = qv_malloc((size_t)n + 1, "image flags");
        if (!p->img || !p->tile || !p->flags) {
            cap_pixels_free(p);
            return QV_ERR_NOMEM;
        }
        int64_t u = 0;
        for (size_t i = 0; i < cb->n_images; i++)
            for (int t = 0; t < cb->images[i].px.n_tiles; t++, u++) {
                p->img[u] = (int64_t)i;
                p->tile[u] = t;
                p->flags[u] = cb->image_flags ? cb->image_flags[u] != 0 : 1;
            }
        in->tile_h = in->tile_w = S;
        in->flags = p->flags;
    }
    in->n = p->n_units;
    in->grid_thw = p->patches ? cb->image_grid_thw : NULL;
    in->ctx = p;
    in->get = cap_pixels_get;
    return QV_OK;
}

/* ---- chunks of the batch as the runner's source ----------------------------------------------- */

typedef struct cap_source {
    const qv_calib_batch *cb;
    qv_mm_embedder *emb;
    bool mrope;
    const char *what;
} cap_source;

static qv_status cap_get(void *ctx, qv_llm *m, int64_t s0, int64_t n, qv_llm_batch *b)
{
    const cap_source *cs = ctx;
    const qv_calib_batch *cb = cs->cb;
    const int64_t L = cb->len, C = m->C;
    const size_t nl = (size_t)(n * L), off = (size_t)(s0 * L);
    memset(b, 0, sizeof *b);
    b->B = n, b->L = L, b->C = C;
    b->path = qv_strdup(cs->what);
    b->input_ids = qv_malloc(nl * sizeof *b->input_ids, "input_ids");
    b->labels = qv_malloc(nl * sizeof *b->labels, "labels");
    b->attention_mask = qv_malloc(nl, "attention_mask");
    b->inputs_embeds = qv_aligned_alloc(64, nl * (size_t)C * sizeof(float), "inputs_embeds");
    if (cs->mrope)
        b->mrope_position_ids = qv_malloc(3 * nl * sizeof *b->mrope_position_ids, "M-RoPE positions");
    if (!b->path || !b->input_ids || !b->labels || !b->attention_mask || !b->inputs_embeds ||
        (cs->mrope && !b->mrope_position_ids))
        return QV_ERR_NOMEM;
    memcpy(b->input_ids, cb->input_ids + off, nl * sizeof *b->input_ids);
    memcpy(b->labels, cb->labels + off, nl * sizeof *b->labels);
    if (cb->attention_mask)
        memcpy(b->attention_mask, cb->attention_mask + off, nl);
    else
        memset(b->attention_mask, 1, nl);
    for (int s = 0; cs->mrope && s < 3; s++)
        memcpy(b->mrope_position_ids + (size_t)s * nl, cb->mrope_position_ids + (size_t)(s * cb->n_rows * L) + off,
               nl * sizeof *b->mrope_position_ids);
    for (int64_t i = 0; i < n; i++)
        QV_TRY(qv_mm_embed_sample(cs->emb, s0 + i, b->inputs_embeds + (size_t)(i * L * C)));
    return QV_OK;
}

/* One pass (normal or shuffled images) of every model over the batch. */
static qv_status run_pass(qv_llm *m, qv_vision *vis, const qv_calib_batch *cb, const char *what,
                          qv_qmodel *const *qms, size_t nq, const qv_eval_caption_opts *o, int64_t chunk,
                          const char *label, qv_eval_sums *sums)
{
    cap_pixels px;
    qv_vision_input in;
    QV_TRY(cap_pixels_init(&px, cb, vis, what, &in));
    qv_mm_text txt = {.B = cb->n_rows, .L = cb->len, .ids = cb->input_ids, .ids_pre = cb->input_ids_pre,
                      .mask_pre = cb->attention_mask_pre, .L_pre = cb->pre_len, .what = what};
    qv_mm_embedder emb;
    qv_status st = qv_mm_embedder_init(&emb, vis, m, &in, &txt, NULL);
    if (st != QV_OK) {
        cap_pixels_free(&px);
        return st;
    }
    cap_source cs = {.cb = cb, .emb = &emb, .mrope = o->mrope, .what = what};
    const qv_eval_source src = {.what = what, .n_samples = cb->n_rows, .len = cb->len, .ctx = &cs, .get = cap_get};
    if (o->prog) {
        const int64_t n_chunks = (cb->n_rows + chunk - 1) / chunk;
        qv_progress_init(o->prog, o->prog->out, label, n_chunks * m->c->n_layers);
    }
    st = qv_eval_run(m, qms, nq, &src, chunk, o->prog, sums);
    qv_progress_finish(o->prog);
    qv_mm_embedder_free(&emb);
    cap_pixels_free(&px);
    return st;
}

/* ---- building ------------------------------------------------------------------------------------ */

static void on_build_progress(void *ctx, size_t done, size_t total)
{
    (void)total;
    qv_progress *p = ctx;
    if (p)
        qv_progress_step(p, (int64_t)done - p->done, NULL);
}

static qv_status build(const qv_llm *m, qv_tokenizer *tok, const qv_preprocessor *pp, const qv_caption_file *f,
                       const size_t *order, size_t n, const qv_eval_caption_opts *o, const char *label,
                       qv_calib_batch *cb)
{
    qv_calib_items items = {.file = f, .order = order, .n = n, .image_folder = o->image_folder};
    qv_calib_options opt;
    qv_calib_options_default(&opt);
    opt.pad_rule = o->pad_rule;
    opt.max_tiles = o->max_tiles;
    opt.on_progress = on_build_progress;
    opt.ctx = o->prog;
    if (o->prog)
        qv_progress_init(o->prog, o->prog->out, label, (int64_t)n);
    qv_status st = qv_calib_build(&m->cfg, tok, pp, &items, &opt, cb);
    qv_progress_finish(o->prog);
    for (size_t i = 0; st == QV_OK && i < cb->n_notes; i++)
        log_line(o, o->on_note, "%s", cb->notes[i]);
    if (st == QV_OK && cb->n_rows != (int64_t)n)
        st = qv_fail(QV_ERR_INTERNAL, "%s: %zu samples built into %lld rows", f->path, n, (long long)cb->n_rows);
    /* the tower reads the normalised values; the U8 tiles (a fifth of the pixels' memory) go */
    for (size_t i = 0; st == QV_OK && i < cb->n_images; i++) {
        qv_free(cb->images[i].px.tiles_u8);
        cb->images[i].px.tiles_u8 = NULL;
    }
    return st;
}

/* os.path.join(folder, p), as the batch builder joins image paths. */
static char *join_image(const char *folder, const char *p)
{
    if (p[0] == '/' || !folder || !folder[0])
        return qv_strdup(p);
    size_t n = strlen(folder);
    return qv_asprintf("%s%s%s", folder, folder[n - 1] == '/' ? "" : "/", p);
}

/* The samples to evaluate: every entry in file order; with skip_bad_images, without the entries
 * whose images cannot be read (each reported), decided once so that both passes see the same
 * samples. */
static qv_status select_samples(const qv_caption_file *f, const qv_eval_caption_opts *o, size_t *order, size_t *n)
{
    *n = 0;
    for (size_t i = 0; i < f->n_items; i++) {
        const qv_caption_item *it = &f->items[i];
        bool ok = true;
        for (size_t k = 0; o->skip_bad_images && ok && k < it->n_images; k++) {
            char *path = join_image(o->image_folder, it->images[k]);
            if (!path)
                return QV_ERR_NOMEM;
            qv_image img;
            qv_status st = qv_image_load(path, &img);
            qv_free(path);
            if (st == QV_ERR_NOMEM)
                return st;
            if (st == QV_OK) {
                qv_image_free(&img);
                continue;
            }
            log_line(o, o->on_skip, "%s:%zu: entry %zu: %s; sample skipped", f->path, it->line, it->index, qv_last_error());
            qv_clear_error();
            ok = false;
        }
        if (ok)
            order[(*n)++] = i;
    }
    if (*n == 0)
        return qv_fail(QV_ERR_INVALID, "%s: no samples to evaluate", f->path);
    return QV_OK;
}

/* ---- the task -------------------------------------------------------------------------------------- */

static qv_status fill_report(qv_eval_report *r, qv_eval_quant *q, size_t nq, const qv_eval_sums *sums,
                             const qv_eval_sums *shuf, int64_t N)
{
    r->n_cols = nq + 1;
    r->col = qv_calloc(r->n_cols, sizeof *r->col, "report");
    if (!r->col)
        return QV_ERR_NOMEM;
    for (size_t k = 0; k < r->n_cols; k++) {
        qv_eval_column *c = &r->col[k];
        c->name = qv_strdup(k ? q[k - 1].name : "fp");
        c->per_sample = qv_malloc((size_t)N * sizeof *c->per_sample + 1, "per-sample sums");
        if (!c->name || !c->per_sample)
            return QV_ERR_NOMEM;
        memcpy(c->per_sample, sums + k * (size_t)N, (size_t)N * sizeof *c->per_sample);
        qv_eval_sums tot = {0}, tot_s = {0};
        for (int64_t s = 0; s < N; s++) {
            qv_eval_sums_add(&tot, &sums[k * (size_t)N + (size_t)s]);
            if (shuf)
                qv_eval_sums_add(&tot_s, &shuf[k * (size_t)N + (size_t)s]);
        }
        qv_eval_metrics_of(&tot, &c->m);
        c->ppl = exp(c->m.nll);
        qv_eval_metrics_of(&tot_s, &c->shuffled);
        c->vision_reliance = shuf ? c->shuffled.nll - c->m.nll : NAN;
    }
    return QV_OK;
}

qv_status qv_eval_caption(qv_llm *m, qv_eval_quant *q, size_t nq, const qv_eval_caption_opts *o,
                          qv_eval_report *out)
{
    memset(out, 0, sizeof *out);
    const double t0 = qv_now_s();
    if (!m->cfg.has_vision)
        return qv_fail(QV_ERR_INVALID, "%s: a text-only model: --task caption needs a vision-language model (--task ppl "
                       "evaluates text)", m->dir);
    qv_caption_file cf = {0}, shuffled_file = {0};
    qv_tokenizer *tok = NULL;
    qv_preprocessor pp;
    qv_vision *vis = NULL;
    qv_calib_batch cb = {0}, cb2 = {0};
    size_t *order = NULL, *src = NULL, n = 0;
    qv_eval_sums *sums = NULL, *shuf = NULL;
    qv_qmodel **qms = NULL;
    char *what = NULL;
    int64_t chunk = o->chunk;
    qv_status st;
    QV_CHECK(st = qv_captions_load(o->data_path, &cf), done);
    QV_CHECK(st = qv_tokenizer_load(m->dir, &tok), done);
    QV_CHECK(st = qv_preprocessor_init(&pp, &m->cfg, m->dir), done);
    order = qv_malloc((cf.n_items + 1) * sizeof *order, "sample order");
    qms = qv_malloc((nq + 1) * sizeof *qms, "quantized models");
    if (!order || !qms) {
        st = QV_ERR_NOMEM;
        goto done;
    }
    for (size_t k = 0; k < nq; k++)
        qms[k] = &q[k].qm;
    QV_CHECK(st = select_samples(&cf, o, order, &n), done);
    if (o->shuffle_images) { /* refuse before any work when the images cannot be deranged */
        src = qv_malloc(n * sizeof *src, "image derangement");
        if (!src) {
            st = QV_ERR_NOMEM;
            goto done;
        }
        QV_CHECK(st = qv_eval_derange_images(&cf, order, n, o->seed, src), done);
    }
    QV_CHECK(st = build(m, tok, &pp, &cf, order, n, o, "batch", &cb), done);
    if (o->mrope && !cb.mrope_position_ids) {
        st = qv_fail(QV_ERR_INVALID, "%s: --mrope: the model (%s) has no M-RoPE positions", m->dir,
                     qv_family_name(m->cfg.family));
        goto done;
    }
    const qv_vision_opts vo = {m->dt, 0, 0, o->max_memory / 4};
    QV_CHECK(st = qv_vision_open(&m->cfg, m->ck, m->dir, &vo, &vis), done);
    const int64_t N = (int64_t)n;
    if (chunk <= 0)
        QV_CHECK(st = qv_eval_chunk_samples(m, nq + 1, cb.len, N, o->max_memory, &chunk), done);
    else
        QV_CHECK(st = qv_eval_check_chunk(m, nq + 1, cb.len, chunk, o->max_memory, cf.path), done);
    sums = qv_malloc((nq + 1) * n * sizeof *sums, "sums");
    if (!sums) {
        st = QV_ERR_NOMEM;
        goto done;
    }
    QV_CHECK(st = run_pass(m, vis, &cb, cf.path, qms, nq, o, chunk, "eval", sums), done);
    qv_calib_batch_free(&cb);
    if (o->shuffle_images) {
        /* the same file with each sample's images replaced by those of src[k] */
        shuffled_file = cf;
        shuffled_file.items = qv_malloc(cf.n_items * sizeof *shuffled_file.items, "shuffled items");
        shuf = qv_malloc((nq + 1) * n * sizeof *shuf, "sums");
        what = qv_asprintf("%s (shuffled images, seed %llu)", cf.path, (unsigned long long)o->seed);
        if (!shuffled_file.items || !shuf || !what) {
            st = QV_ERR_NOMEM;
            goto done;
        }
        memcpy(shuffled_file.items, cf.items, cf.n_items * sizeof *cf.items);
        for (size_t k = 0; k < n; k++) {
            qv_caption_item *dst = &shuffled_file.items[order[k]];
            const qv_caption_item *from = &cf.items[order[src[k]]];
            dst->images = from->images;
            dst->n_images = from->n_images;
            dst->image_is_list = from->image_is_list;
        }
        QV_CHECK(st = build(m, tok, &pp, &shuffled_file, order, n, o, "batch (shuffled images)", &cb2), done);
        QV_CHECK(st = run_pass(m, vis, &cb2, what, qms, nq, o, chunk, "eval (shuffled images)", shuf), done);
    }
    out->task = QV_EVAL_TASK_CAPTION;
    out->n_samples = N;
    out->chunk = chunk;
    out->shuffled = o->shuffle_images;
    out->seed = o->seed;
    QV_CHECK(st = fill_report(out, q, nq, sums, shuf, N), done);
    out->sample_entry = qv_malloc(n * sizeof *out->sample_entry, "sample entries");
    if (!out->sample_entry) {
        st = QV_ERR_NOMEM;
        goto done;
    }
    memcpy(out->sample_entry, order, n * sizeof *order);
    if (o->shuffle_images) {
        out->image_entry = qv_malloc(n * sizeof *out->image_entry, "image entries");
        if (!out->image_entry) {
            st = QV_ERR_NOMEM;
            goto done;
        }
        for (size_t k = 0; k < n; k++)
            out->image_entry[k] = order[src[k]];
    }
    out->seconds = qv_now_s() - t0;
done:
    if (st != QV_OK)
        qv_eval_report_free(out);
    qv_free(shuffled_file.items);
    qv_free(what);
    qv_free(sums);
    qv_free(shuf);
    qv_free(qms);
    qv_free(order);
    qv_free(src);
    qv_calib_batch_free(&cb);
    qv_calib_batch_free(&cb2);
    qv_vision_close(vis);
    qv_tokenizer_free(tok);
    qv_captions_free(&cf);
    return st;
}
