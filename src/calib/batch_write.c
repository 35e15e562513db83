/* batch_write.c — the `qvlm calib` output file (batch.h qv_calib_batch_write; spec/CLI.md
 * `calib`): the batch's tensors under the goldens' names and dtypes, the pixels in sample
 * order, and the prompts as JSON metadata. Written through qv_st_writer (temporary name, then
 * rename), images streamed one at a time. */
#include <stdio.h>
#include <string.h>

#include "../io/json.h"
#include "../io/safetensors.h"
#include "batch_internal.h"

static char *json_list(char *const *s, size_t n)
{
    qv_strbuf b;
    qv_sb_init(&b);
    qv_sb_puts(&b, "[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            qv_sb_puts(&b, ",");
        qv_sb_json_str(&b, s[i], strlen(s[i]));
    }
    qv_sb_puts(&b, "]");
    if (b.oom) {
        qv_sb_free(&b);
        return NULL;
    }
    return b.s;
}

typedef struct item {
    const char *name;
    qv_dtype dt;
    int ndim;
    int64_t shape[4];
    const void *data; /* NULL: written separately */
} item;

static size_t item_bytes(const item *it)
{
    size_t n = qv_dtype_size(it->dt);
    for (int d = 0; d < it->ndim; d++)
        n *= (size_t)it->shape[d];
    return n;
}

qv_status qv_calib_batch_write(const qv_calib_batch *b, const char *path)
{
    int64_t B = b->n_rows, L = b->len;
    /* the batch's own content says which extra tensors it carries: Qwen2-VL's image grids
       (patch rows of per-image sizes), LLaVA's pre-splice rows */
    const bool qwen = b->image_grid_thw != NULL, llava = b->input_ids_pre != NULL;
    item it[24];
    size_t n = 0;
    it[n++] = (item){"input_ids", QV_I64, 2, {B, L}, b->input_ids};
    it[n++] = (item){"labels", QV_I64, 2, {B, L}, b->labels};
    if (b->attention_mask)
        it[n++] = (item){"attention_mask", QV_BOOL, 2, {B, L}, b->attention_mask};
    if (b->vision_mask)
        it[n++] = (item){"vision_mask", QV_BOOL, 2, {B, L}, b->vision_mask};
    if (b->caption_mask)
        it[n++] = (item){"caption_mask", QV_BOOL, 2, {B, L}, b->caption_mask};
    int64_t *sizes = NULL, *deltas = NULL;
    qv_status st = QV_OK;
    if (b->n_images) {
        const qv_pixels *p0 = &b->images[0].px;
        it[n++] = (item){"image_flags", QV_I64, 1, {b->n_tiles}, b->image_flags};
        if (qwen) {
            int64_t rows = 0;
            for (size_t i = 0; i < b->n_images; i++)
                rows += b->images[i].px.shape[0];
            it[n++] = (item){"pixel_values", QV_F32, 2, {rows, p0->shape[1]}, NULL};
            it[n++] = (item){"image_grid_thw", QV_I64, 2, {(int64_t)b->n_images, 3}, b->image_grid_thw};
        } else {
            for (size_t i = 0; i < b->n_images; i++)
                if (b->images[i].px.tile_w != p0->tile_w || b->images[i].px.tile_h != p0->tile_h)
                    return qv_fail(QV_ERR_INTERNAL, "%s: tiles of different sizes in one batch", path);
            it[n++] = (item){"pixel_values", QV_F32, 4, {b->n_tiles, 3, p0->tile_h, p0->tile_w}, NULL};
            it[n++] = (item){"tile_u8", QV_U8, 4, {b->n_tiles, p0->tile_h, p0->tile_w, 3}, NULL};
        }
    }
    if (qwen && b->position_ids) {
        if (!(deltas = qv_malloc((size_t)B * sizeof(int64_t) + 1, "rope deltas")))
            return QV_ERR_NOMEM;
        memcpy(deltas, b->mrope_rope_deltas, (size_t)B * sizeof(int64_t));
        it[n++] = (item){"position_ids", QV_I64, 3, {3, B, L}, b->position_ids};
        it[n++] = (item){"mrope.position_ids", QV_I64, 3, {3, B, L}, b->mrope_position_ids};
        it[n++] = (item){"mrope.rope_deltas", QV_I64, 2, {B, 1}, deltas};
    }
    if (llava && b->input_ids_pre) {
        int64_t Lp = b->pre_len;
        if (!(sizes = qv_malloc(b->n_images * 2 * sizeof(int64_t) + 1, "image sizes"))) {
            qv_free(deltas);
            return QV_ERR_NOMEM;
        }
        for (size_t i = 0; i < b->n_images; i++) {
            sizes[2 * i] = b->images[i].w;
            sizes[2 * i + 1] = b->images[i].h;
        }
        it[n++] = (item){"input_ids_pre_splice", QV_I64, 2, {B, Lp}, b->input_ids_pre};
        it[n++] = (item){"labels_pre_splice", QV_I64, 2, {B, Lp}, b->labels_pre};
        it[n++] = (item){"attention_mask_pre_splice", QV_BOOL, 2, {B, Lp}, b->attention_mask_pre};
        it[n++] = (item){"image_sizes", QV_I64, 2, {(int64_t)b->n_images, 2}, sizes};
        it[n++] = (item){"splice", QV_I64, 2, {(int64_t)b->n_images, 2}, b->splice};
    }

    char *prompts = json_list(b->prompts, b->n_samples), *ids = json_list(b->sample_ids, b->n_samples);
    char *notes = json_list(b->notes, b->n_notes);
    char span[32];
    snprintf(span, sizeof span, "%lld", (long long)b->image_span);
    qv_st_kv meta[8];
    size_t nm = 0;
    meta[nm++] = (qv_st_kv){(char *)"family", (char *)qv_family_name(b->family)};
    meta[nm++] = (qv_st_kv){(char *)"pad_rule", (char *)qv_pad_rule_name(b->pad_rule)};
    meta[nm++] = (qv_st_kv){(char *)"padding_side", (char *)(b->left_padded ? "left" : "right")};
    meta[nm++] = (qv_st_kv){(char *)"prompts", prompts};
    meta[nm++] = (qv_st_kv){(char *)"sample_ids", ids};
    meta[nm++] = (qv_st_kv){(char *)"notes", notes};
    if (llava)
        meta[nm++] = (qv_st_kv){(char *)"image_span", span};
    qv_st_writer *w = NULL;
    if (!prompts || !ids || !notes)
        st = qv_fail(QV_ERR_NOMEM, "out of memory (metadata)");
    if (st == QV_OK)
        st = qv_st_writer_open(&w, path, meta, nm);
    for (size_t i = 0; st == QV_OK && i < n; i++)
        st = qv_st_writer_add(w, it[i].name, it[i].dt, it[i].ndim, it[i].shape);
    char name[48];
    for (size_t i = 0; st == QV_OK && qwen && i < b->n_images; i++) {
        const qv_pixels *p = &b->images[i].px;
        snprintf(name, sizeof name, "tile_u8.%zu", i);
        st = qv_st_writer_add(w, name, QV_U8, 4, (int64_t[]){1, p->tile_h, p->tile_w, 3});
    }
    if (st == QV_OK)
        st = qv_st_writer_begin(w);
    for (size_t i = 0; st == QV_OK && i < n; i++)
        if (it[i].data)
            st = qv_st_writer_put(w, it[i].name, it[i].data, item_bytes(&it[i]));
    uint64_t off_px = 0, off_u8 = 0;
    for (size_t i = 0; st == QV_OK && i < b->n_images; i++) {
        const qv_pixels *p = &b->images[i].px;
        size_t nv = sizeof(float), nu = (size_t)p->n_tiles * (size_t)p->tile_h * (size_t)p->tile_w * 3;
        for (int d = 0; d < p->ndim; d++)
            nv *= (size_t)p->shape[d];
        st = qv_st_writer_put_part(w, "pixel_values", off_px, p->values, nv);
        off_px += nv;
        if (st == QV_OK && qwen) {
            snprintf(name, sizeof name, "tile_u8.%zu", i);
            st = qv_st_writer_put(w, name, p->tiles_u8, nu);
        } else if (st == QV_OK) {
            st = qv_st_writer_put_part(w, "tile_u8", off_u8, p->tiles_u8, nu);
            off_u8 += nu;
        }
    }
    if (st == QV_OK) {
        st = qv_st_writer_finish(w);
        w = NULL;
    }
    qv_st_writer_abort(w);
    qv_free(prompts);
    qv_free(ids);
    qv_free(notes);
    qv_free(sizes);
    qv_free(deltas);
    return st;
}
