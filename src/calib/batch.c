/* batch.c — the calibration batch: the dispatch to the family's builder (src/family/family.h),
 * the collator, mask finishing and the helpers every builder shares (batch.h,
 * batch_internal.h; spec/ALGORITHMS.md §7.2, §8). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../core/fsutil.h"
#include "../family/family.h"
#include "../io/json.h"
#include "batch_internal.h"

/* ---- batch ------------------------------------------------------------------------------------ */

static void free_strs(char **s, size_t n)
{
    if (!s)
        return;
    for (size_t i = 0; i < n; i++)
        qv_free(s[i]);
    qv_free(s);
}

void qv_calib_batch_free(qv_calib_batch *b)
{
    if (!b)
        return;
    qv_free(b->input_ids);
    qv_free(b->labels);
    qv_free(b->attention_mask);
    qv_free(b->vision_mask);
    qv_free(b->caption_mask);
    qv_free(b->row_len);
    free_strs(b->prompts, b->n_samples);
    free_strs(b->sample_ids, b->n_samples);
    for (size_t i = 0; i < b->n_images; i++)
        qv_pixels_free(&b->images[i].px);
    qv_free(b->images);
    qv_free(b->image_flags);
    qv_free(b->image_grid_thw);
    qv_free(b->position_ids);
    qv_free(b->mrope_position_ids);
    qv_free(b->mrope_rope_deltas);
    qv_free(b->input_ids_pre);
    qv_free(b->labels_pre);
    qv_free(b->attention_mask_pre);
    qv_free(b->splice);
    free_strs(b->notes, b->n_notes);
    memset(b, 0, sizeof *b);
}

void qv_calib_options_default(qv_calib_options *o)
{
    memset(o, 0, sizeof *o);
    o->pad_rule = QV_PAD_RULE_AUTO;
    o->seed = 42;
}

qv_pad_rule qv_calib_default_pad_rule(qv_family_id family) { return qv_family_get(family)->default_pad_rule; }

qv_pad_rule calib_pad_rule(const qv_calib_options *opt, qv_family_id family)
{
    return opt->pad_rule == QV_PAD_RULE_AUTO ? qv_calib_default_pad_rule(family) : opt->pad_rule;
}

void calib_progress(const qv_calib_options *opt, size_t done, size_t total)
{
    if (opt->on_progress)
        opt->on_progress(opt->ctx, done, total);
}

/* ---- dispatch --------------------------------------------------------------------------------- */

qv_calib_builder qv_calib_builder_for(qv_family_id family) { return qv_family_get(family)->build_batch; }

qv_status qv_calib_build(const qv_model_config *cfg, qv_tokenizer *tok, const qv_preprocessor *pp,
                         const qv_calib_items *items, const qv_calib_options *opt, qv_calib_batch *out)
{
    memset(out, 0, sizeof *out);
    qv_calib_builder f = qv_calib_builder_for(cfg->family);
    if (!f)
        return qv_fail(QV_ERR_UNSUPPORTED,
                       "%s: a %s model cannot calibrate on image-caption data (use calib_data: pileval)", cfg->path,
                       qv_family_name(cfg->family));
    if (opt->few_shot && opt->interleave)
        return qv_fail(QV_ERR_INVALID, "few_shot_format and interleave_format cannot both be set");
    if (opt->interleave && !opt->pile)
        return qv_fail(QV_ERR_INVALID, "interleave_format needs the pure-text documents (text_data_path)");
    if (items->n == 0)
        return qv_fail(QV_ERR_INVALID, "%s: no samples to build a batch from", items->file->path);
    qv_status st = f(cfg, tok, pp, items, opt, out);
    if (st != QV_OK)
        qv_calib_batch_free(out);
    return st;
}

/* ---- accumulator ------------------------------------------------------------------------------ */

void calib_acc_init(calib_acc *a)
{
    qv_vec_init(&a->rows, sizeof(calib_row));
    qv_vec_init(&a->prompts, sizeof(char *));
    qv_vec_init(&a->names, sizeof(char *));
    qv_vec_init(&a->images, sizeof(qv_calib_image));
    qv_vec_init(&a->notes, sizeof(char *));
}

static void free_str_vec(qv_vec *v)
{
    for (size_t i = 0; i < v->len; i++)
        qv_free(QV_VEC_AT(v, char *, i));
    qv_vec_free(v);
}

void calib_acc_free(calib_acc *a)
{
    for (size_t i = 0; i < a->rows.len; i++) {
        qv_vec_free(&QV_VEC_AT(&a->rows, calib_row, i).ids);
        qv_vec_free(&QV_VEC_AT(&a->rows, calib_row, i).labels);
    }
    qv_vec_free(&a->rows);
    free_str_vec(&a->prompts);
    free_str_vec(&a->names);
    for (size_t i = 0; i < a->images.len; i++)
        qv_pixels_free(&QV_VEC_AT(&a->images, qv_calib_image, i).px);
    qv_vec_free(&a->images);
    free_str_vec(&a->notes);
}

void calib_acc_move(calib_acc *a, qv_calib_batch *b)
{
    b->prompts = a->prompts.data;
    b->sample_ids = a->names.data;
    b->n_samples = a->prompts.len;
    b->images = a->images.data;
    b->n_images = a->images.len;
    b->notes = a->notes.data;
    b->n_notes = a->notes.len;
    qv_vec_init(&a->prompts, sizeof(char *));
    qv_vec_init(&a->names, sizeof(char *));
    qv_vec_init(&a->images, sizeof(qv_calib_image));
    qv_vec_init(&a->notes, sizeof(char *));
}

qv_status calib_acc_take_notes(calib_acc *a, qv_calib_batch *b)
{
    if (!a->notes.len)
        return QV_OK;
    char **nn = qv_realloc(b->notes, (b->n_notes + a->notes.len) * sizeof *nn, "notes");
    if (!nn)
        return QV_ERR_NOMEM;
    b->notes = nn;
    memcpy(b->notes + b->n_notes, a->notes.data, a->notes.len * sizeof *nn);
    b->n_notes += a->notes.len;
    a->notes.len = 0;
    return QV_OK;
}

qv_status calib_acc_row(calib_acc *a, calib_row **row)
{
    calib_row r;
    qv_vec_init(&r.ids, sizeof(int64_t));
    qv_vec_init(&r.labels, sizeof(int64_t));
    QV_TRY(qv_vec_push(&a->rows, &r));
    *row = &QV_VEC_AT(&a->rows, calib_row, a->rows.len - 1);
    return QV_OK;
}

void calib_acc_pop_row(calib_acc *a)
{
    if (!a->rows.len)
        return;
    calib_row *r = &QV_VEC_AT(&a->rows, calib_row, a->rows.len - 1);
    qv_vec_free(&r->ids);
    qv_vec_free(&r->labels);
    a->rows.len--;
}

qv_status calib_push_str(qv_vec *v, const char *s, size_t n)
{
    char *c = qv_strndup(s, n);
    if (!c)
        return qv_fail(QV_ERR_NOMEM, "out of memory (calibration text)");
    qv_status st = qv_vec_push(v, &c);
    if (st != QV_OK)
        qv_free(c);
    return st;
}

qv_status calib_acc_note(calib_acc *a, const char *fmt, ...)
{
    char buf[QV_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return calib_push_str(&a->notes, buf, strlen(buf));
}

/* ---- Python string semantics ------------------------------------------------------------------ */

qv_status calib_split(const char *s, size_t n, const char *sep, qv_vec *spans)
{
    size_t m = strlen(sep), start = 0;
    qv_vec_init(spans, sizeof(calib_span));
    for (size_t i = 0; m && i + m <= n;) {
        if (memcmp(s + i, sep, m) == 0) {
            calib_span sp = {s + start, i - start};
            QV_TRY(qv_vec_push(spans, &sp));
            i += m;
            start = i;
        } else {
            i++;
        }
    }
    calib_span last = {s + start, n - start};
    return qv_vec_push(spans, &last);
}

static int64_t py_index(int64_t i, int64_t n)
{
    if (i < 0)
        i = i + n < 0 ? 0 : i + n;
    return i > n ? n : i;
}

void calib_py_fill(int64_t *a, int64_t n, int64_t lo, int64_t hi, int64_t v)
{
    int64_t b = py_index(lo, n), e = hi == CALIB_NO_LIMIT ? n : py_index(hi, n);
    for (int64_t i = b; i < e; i++)
        a[i] = v;
}

qv_status calib_replace(const char *s, const char *old, const char *repl, long count, char **out)
{
    qv_strbuf b;
    qv_sb_init(&b);
    size_t m = strlen(old);
    const char *p = s;
    for (long k = 0; m && (count < 0 || k < count); k++) {
        const char *hit = strstr(p, old);
        if (!hit)
            break;
        qv_sb_putn(&b, p, (size_t)(hit - p));
        qv_sb_puts(&b, repl);
        p = hit + m;
    }
    qv_sb_puts(&b, p);
    if (b.oom) {
        qv_sb_free(&b);
        return qv_fail(QV_ERR_NOMEM, "out of memory (prompt)");
    }
    *out = b.s ? b.s : qv_strdup("");
    return *out ? QV_OK : QV_ERR_NOMEM;
}

qv_status calib_compact_prompt(const char *s, char **out)
{
    static const char ctx[] = "<IMG_CONTEXT>";
    const size_t m = sizeof ctx - 1;
    qv_strbuf b;
    qv_sb_init(&b);
    for (const char *p = s; *p;) {
        const char *hit = strstr(p, ctx);
        if (!hit) {
            qv_sb_puts(&b, p);
            break;
        }
        qv_sb_putn(&b, p, (size_t)(hit - p));
        size_t k = 0;
        while (strncmp(hit + k * m, ctx, m) == 0)
            k++;
        qv_sb_puts(&b, ctx);
        if (k > 1)
            qv_sb_printf(&b, "x%zu", k);
        p = hit + k * m;
    }
    if (b.oom) {
        qv_sb_free(&b);
        return qv_fail(QV_ERR_NOMEM, "out of memory (prompt)");
    }
    *out = b.s ? b.s : qv_strdup("");
    return *out ? QV_OK : QV_ERR_NOMEM;
}

/* ---- tokenizer -------------------------------------------------------------------------------- */

qv_status calib_encode(qv_tokenizer *t, const char *s, size_t n, qv_vec *ids64)
{
    qv_vec ids;
    qv_vec_init(&ids, sizeof(int32_t));
    qv_status st = qv_tokenizer_encode(t, s, n, true, &ids);
    if (st == QV_OK)
        st = qv_vec_reserve(ids64, ids64->len + ids.len);
    for (size_t i = 0; st == QV_OK && i < ids.len; i++) {
        int64_t v = QV_VEC_AT(&ids, int32_t, i);
        st = qv_vec_push(ids64, &v);
    }
    qv_vec_free(&ids);
    return st;
}

qv_status calib_encode_len(qv_tokenizer *t, const char *s, size_t n, int64_t *len)
{
    qv_vec ids;
    qv_vec_init(&ids, sizeof(int32_t));
    qv_status st = qv_tokenizer_encode(t, s, n, true, &ids);
    *len = (int64_t)ids.len;
    qv_vec_free(&ids);
    return st;
}

int calib_encode_cb(void *ctx, const char *text, size_t len, int32_t **ids, size_t *n)
{
    qv_vec v;
    qv_vec_init(&v, sizeof(int32_t));
    qv_status st = qv_tokenizer_encode(ctx, text, len, true, &v);
    if (st != QV_OK) {
        qv_vec_free(&v);
        return st;
    }
    *ids = v.data;
    *n = v.len;
    return QV_OK;
}

int64_t calib_pad_id(const qv_tokenizer *t)
{
    int32_t p = qv_tokenizer_pad_id(t);
    return p >= 0 ? p : 0;
}

qv_status calib_tokenizer_settings(const char *model_dir, int64_t *model_max_length, bool *left_padding)
{
    *model_max_length = CALIB_NO_LIMIT;
    *left_padding = false;
    char *path = qv_path_join(model_dir, "tokenizer_config.json");
    if (!path)
        return qv_fail(QV_ERR_NOMEM, "out of memory (path)");
    qv_status st = QV_OK;
    if (qv_path_exists(path)) {
        qv_json *j = NULL;
        st = qv_json_load_file(path, 0, &j);
        if (st == QV_OK) {
            qv_json *v = qv_json_get(j, "model_max_length");
            int64_t m;
            if (v && qv_json_as_int(v, &m) && m > 0)
                *model_max_length = m; /* 1e30-style "no limit" values are not integers in range */
            const char *side = NULL;
            st = qv_json_str_opt(j, "padding_side", path, &side);
            if (st == QV_OK && side)
                *left_padding = strcmp(side, "left") == 0;
        }
        qv_json_free(j);
    }
    qv_free(path);
    return st;
}

/* ---- messages --------------------------------------------------------------------------------- */

char *calib_item_name(const qv_caption_item *item)
{
    return item->id ? qv_strdup(item->id) : qv_asprintf("entry %zu", item->index);
}

static void item_prefix(char *buf, size_t n, const qv_calib_items *it, const qv_caption_item *item)
{
    const char *file = it->file && it->file->path ? it->file->path : "captions";
    if (item->id)
        snprintf(buf, n, "%s:%zu: entry %zu (id \"%s\")", file, item->line, item->index, item->id);
    else
        snprintf(buf, n, "%s:%zu: entry %zu", file, item->line, item->index);
}

qv_status calib_item_fail(const qv_calib_items *it, const qv_caption_item *item, qv_status st, const char *fmt, ...)
{
    char pre[512], msg[QV_ERROR_MAX];
    item_prefix(pre, sizeof pre, it, item);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return qv_fail(st, "%s: %s", pre, msg);
}

qv_status calib_item_wrap(const qv_calib_items *it, const qv_caption_item *item, qv_status st)
{
    char pre[512];
    item_prefix(pre, sizeof pre, it, item);
    return qv_fail_prefix(st, "%s", pre);
}

/* ---- images ----------------------------------------------------------------------------------- */

/* os.path.join(folder, p): an absolute p replaces the folder; "" adds nothing. */
static char *py_path_join(const char *folder, const char *p)
{
    if (p[0] == '/' || !folder || !folder[0])
        return qv_strdup(p);
    size_t n = strlen(folder);
    return qv_asprintf("%s%s%s", folder, folder[n - 1] == '/' ? "" : "/", p);
}

void calib_images_free(qv_image *imgs, size_t n)
{
    if (!imgs)
        return;
    for (size_t i = 0; i < n; i++)
        qv_image_free(&imgs[i]);
    qv_free(imgs);
}

qv_status calib_load_images(const qv_calib_items *it, const qv_caption_item *item, const qv_calib_options *opt,
                            qv_image **imgs, size_t *n, bool *skipped)
{
    *imgs = NULL;
    *n = 0;
    *skipped = false;
    if (!item->n_images)
        return QV_OK;
    qv_image *v = qv_calloc(item->n_images, sizeof *v, "images");
    if (!v)
        return QV_ERR_NOMEM;
    for (size_t k = 0; k < item->n_images; k++) {
        char *path = py_path_join(it->image_folder, item->images[k]);
        if (!path) {
            calib_images_free(v, k);
            return qv_fail(QV_ERR_NOMEM, "out of memory (path)");
        }
        qv_status st = qv_image_load(path, &v[k]);
        qv_free(path);
        if (st == QV_OK)
            continue;
        calib_images_free(v, k);
        calib_item_wrap(it, item, st);
        if (!opt->skip_bad_images || st == QV_ERR_NOMEM)
            return st;
        if (opt->on_skip) {
            char msg[QV_ERROR_MAX + 32];
            snprintf(msg, sizeof msg, "%s; sample skipped", qv_last_error());
            opt->on_skip(opt->ctx, msg);
        }
        qv_clear_error();
        *skipped = true;
        return QV_OK;
    }
    *imgs = v;
    *n = item->n_images;
    return QV_OK;
}

/* ---- collation -------------------------------------------------------------------------------- */

static qv_status alloc_rows(qv_calib_batch *b, int64_t B, int64_t L)
{
    size_t n;
    if (!qv_mul_size((size_t)B, (size_t)L, &n) || !qv_mul_size(n, sizeof(int64_t), &n))
        return qv_fail(QV_ERR_NOMEM, "calibration batch of %lld x %lld tokens is too large", (long long)B,
                       (long long)L);
    size_t cells = n / sizeof(int64_t);
    b->input_ids = qv_malloc(n ? n : 1, "calibration input_ids");
    b->labels = qv_malloc(n ? n : 1, "calibration labels");
    b->attention_mask = qv_calloc(cells ? cells : 1, 1, "calibration attention_mask");
    b->row_len = qv_calloc((size_t)B, sizeof(int64_t), "calibration row lengths");
    if (!b->input_ids || !b->labels || !b->attention_mask || !b->row_len)
        return QV_ERR_NOMEM;
    b->n_rows = B;
    b->len = L;
    return QV_OK;
}

qv_status calib_collate(qv_calib_batch *b, calib_acc *a, int64_t pad, bool left, calib_mask_rule rule)
{
    int64_t B = (int64_t)a->rows.len, L = 0;
    if (B == 0)
        return qv_fail(QV_ERR_INVALID, "no samples left to calibrate with (every sample was skipped)");
    for (int64_t r = 0; r < B; r++)
        L = QV_MAX(L, (int64_t)QV_VEC_AT(&a->rows, calib_row, r).ids.len);
    QV_TRY(alloc_rows(b, B, L));
    b->left_padded = left;
    for (int64_t r = 0; r < B; r++) {
        calib_row *row = &QV_VEC_AT(&a->rows, calib_row, r);
        int64_t n = (int64_t)row->ids.len, off = left ? L - n : 0;
        int64_t *ids = b->input_ids + r * L, *lab = b->labels + r * L;
        uint8_t *am = b->attention_mask + r * L;
        for (int64_t t = 0; t < L; t++) {
            ids[t] = pad;
            lab[t] = QV_IGNORE_INDEX;
        }
        memcpy(ids + off, row->ids.data, (size_t)n * sizeof(int64_t));
        memcpy(lab + off, row->labels.data, (size_t)n * sizeof(int64_t));
        for (int64_t t = 0; t < L; t++)
            am[t] = rule == CALIB_MASK_LENGTH ? (t >= off && t < off + n) : ids[t] != pad;
        b->row_len[r] = n;
    }
    for (size_t i = 0; i < a->rows.len; i++) {
        qv_vec_free(&QV_VEC_AT(&a->rows, calib_row, i).ids);
        qv_vec_free(&QV_VEC_AT(&a->rows, calib_row, i).labels);
    }
    a->rows.len = 0;
    return QV_OK;
}

qv_status calib_finish_masks(qv_calib_batch *b, int64_t vision_id, calib_acc *notes)
{
    size_t cells = (size_t)(b->n_rows * b->len);
    qv_free(b->vision_mask);
    qv_free(b->caption_mask);
    b->vision_mask = qv_calloc(cells ? cells : 1, 1, "calibration vision_mask");
    b->caption_mask = qv_calloc(cells ? cells : 1, 1, "calibration caption_mask");
    if (!b->vision_mask || !b->caption_mask)
        return QV_ERR_NOMEM;
    for (int64_t r = 0; r < b->n_rows; r++) {
        int64_t nv = 0, nc = 0;
        for (int64_t t = 0; t < b->len; t++) {
            size_t i = (size_t)(r * b->len + t);
            b->vision_mask[i] = b->input_ids[i] == vision_id;
            b->caption_mask[i] = b->labels[i] != QV_IGNORE_INDEX;
            nv += b->vision_mask[i];
            nc += b->caption_mask[i];
        }
        if (!nv)
            QV_TRY(calib_acc_note(notes,
                                  "batch row %lld has no vision tokens: MBQ's per-sample vision mean is NaN there "
                                  "(spec/ALGORITHMS.md §11 item 7)",
                                  (long long)r));
        if (!nc)
            QV_TRY(calib_acc_note(notes,
                                  "batch row %lld has no caption tokens: MBQ's per-sample caption mean is NaN there "
                                  "(spec/ALGORITHMS.md §11 item 7)",
                                  (long long)r));
    }
    return QV_OK;
}
