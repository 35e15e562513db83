/* batch_qwen2vl.c — the Qwen2-VL calibration batch (spec/ALGORITHMS.md §8.4, §11 items 6, 18,
 * 19; fixtures README §13.4): MBQ's Qwen2_VL wrapper `convert_data_item` (the LAST human value
 * with every "<image>" and every "\n" removed, the LAST gpt value), the processor's chat
 * template without generation prompt, the image processor (one image per item: items without
 * an image are an error, as are items with several, which the wrapper's single image part
 * cannot place), `<|image_pad|>` expanded to gh·gw/merge² copies, labels −100 before the LAST
 * `<|im_start|>`, left padding with the tokenizer's pad id.
 *
 * Positions: `position_ids` = 0..L−1 on all three M-RoPE streams (what MBQ's calibration forward
 * gives the decoder, §11 item 6), and `mrope_position_ids` / `mrope_rope_deltas` = the model's
 * own get_rope_index over the non-pad tokens (transformers 5.17, fixtures §13.4: pads 0, deltas =
 * max + 1 − non-pad count), for an evaluation or a "correct positions" option. */
#include <string.h>

#include "../core/fsutil.h"
#include "../tok/template.h"
#include "batch_internal.h"

typedef struct q2 {
    const qv_calib_items *items;
    const qv_calib_options *opt;
    qv_tokenizer *tok;
    qv_chat_template tpl;
    int64_t im_start_id;
    qv_qwen2vl_prep prep;
    calib_acc acc;
} q2;

/* text with every occurrence of `sub` removed */
static qv_status remove_all(const char *s, const char *sub, char **out) { return calib_replace(s, sub, "", -1, out); }

static qv_status build_prompt(q2 *c, const qv_caption_item *item, char **prompt)
{
    const char *user = NULL, *asst = NULL;
    for (size_t j = 0; j < item->n_turns; j++) {
        if (!strcmp(item->turns[j].from, "human"))
            user = item->turns[j].value;
        if (!strcmp(item->turns[j].from, "gpt"))
            asst = item->turns[j].value;
    }
    if (!user || !asst)
        return calib_item_fail(c->items, item, QV_ERR_INVALID, "no \"%s\" turn (Qwen2-VL's wrapper takes the last human "
                               "question and the last gpt answer)", user ? "gpt" : "human");
    char *a = NULL, *q = NULL;
    QV_TRY(remove_all(user, "<image>", &a));
    qv_status st = remove_all(a, "\n", &q);
    qv_free(a);
    if (st != QV_OK)
        return st;
    qv_strbuf b;
    qv_sb_init(&b);
    qv_sb_puts(&b, c->tpl.bos);
    if (c->tpl.default_system) {
        qv_sb_puts(&b, "<|im_start|>system\n");
        qv_sb_puts(&b, c->tpl.default_system);
        qv_sb_puts(&b, "<|im_end|>\n");
    }
    qv_sb_puts(&b, "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>");
    qv_sb_puts(&b, q);
    qv_sb_puts(&b, "<|im_end|>\n<|im_start|>assistant\n");
    qv_sb_puts(&b, asst);
    qv_sb_puts(&b, "<|im_end|>\n");
    qv_free(q);
    if (b.oom || !b.s) {
        qv_sb_free(&b);
        return qv_fail(QV_ERR_NOMEM, "out of memory (prompt)");
    }
    *prompt = b.s;
    return QV_OK;
}

static qv_status build_item(q2 *c, const qv_caption_item *item, bool *skipped)
{
    *skipped = false;
    if (item->n_images == 0)
        return calib_item_fail(c->items, item, QV_ERR_INVALID,
                               "no image (Qwen2-VL calibration needs one image per item, spec/ALGORITHMS.md §11 item 18)");
    if (item->n_images > 1)
        return calib_item_fail(c->items, item, QV_ERR_INVALID,
                               "%zu images (Qwen2-VL's calibration template holds one image per item)", item->n_images);
    char *prompt = NULL, *expanded = NULL, *name = NULL;
    qv_image *imgs = NULL;
    size_t n_img = 0;
    qv_calib_image ci = {0};
    bool pushed_row = false, pushed_image = false;
    qv_strbuf pads;
    qv_sb_init(&pads);
    qv_status st = build_prompt(c, item, &prompt);
    if (st == QV_OK)
        st = calib_load_images(c->items, item, c->opt, &imgs, &n_img, skipped);
    if (st != QV_OK || *skipped)
        goto done;
    ci.w = imgs[0].w;
    ci.h = imgs[0].h;
    ci.sample = c->acc.prompts.len;
    if ((st = qv_preprocess_qwen2vl(&imgs[0], &c->prep, item->images[0], &ci.px)) != QV_OK) {
        st = calib_item_wrap(c->items, item, st);
        goto done;
    }
    /* the processor: each <|image_pad|> becomes grid.prod() // merge² copies, one image each */
    int64_t merge2 = (int64_t)c->prep.merge_size * c->prep.merge_size;
    int64_t n_tok = ci.px.grid_thw[0] * ci.px.grid_thw[1] * ci.px.grid_thw[2] / (merge2 > 0 ? merge2 : 1);
    const char *first = strstr(prompt, "<|image_pad|>");
    if (first && strstr(first + 1, "<|image_pad|>")) {
        st = calib_item_fail(c->items, item, QV_ERR_INVALID,
                             "the text holds \"<|image_pad|>\" itself (the processor would take it for a second image)");
        goto done;
    }
    for (int64_t k = 0; k < n_tok && !pads.oom; k++)
        qv_sb_puts(&pads, "<|image_pad|>");
    if (pads.oom || (st = calib_replace(prompt, "<|image_pad|>", pads.s ? pads.s : "", 1, &expanded)) != QV_OK) {
        st = st != QV_OK ? st : qv_fail(QV_ERR_NOMEM, "out of memory (prompt)");
        goto done;
    }
    calib_row *row;
    if ((st = calib_acc_row(&c->acc, &row)) != QV_OK)
        goto done;
    pushed_row = true;
    if ((st = calib_encode(c->tok, expanded, strlen(expanded), &row->ids)) != QV_OK ||
        (st = qv_vec_reserve(&row->labels, row->ids.len)) != QV_OK)
        goto done;
    int64_t n = (int64_t)row->ids.len, *ids = row->ids.data, *lab = row->labels.data, last = -1;
    memcpy(lab, ids, (size_t)n * sizeof(int64_t));
    row->labels.len = (size_t)n;
    for (int64_t t = 0; t < n; t++)
        if (ids[t] == c->im_start_id)
            last = t;
    if (last < 0) {
        st = calib_item_fail(c->items, item, QV_ERR_INVALID, "the prompt has no <|im_start|> token");
        goto done;
    }
    calib_py_fill(lab, n, 0, last, QV_IGNORE_INDEX);
    if ((st = qv_vec_push(&c->acc.images, &ci)) != QV_OK)
        goto done;
    pushed_image = true;
    memset(&ci, 0, sizeof ci);
    if ((st = qv_vec_push(&c->acc.prompts, &prompt)) != QV_OK)
        goto done;
    prompt = NULL;
    if (!(name = calib_item_name(item)) || (st = qv_vec_push(&c->acc.names, &name)) != QV_OK) {
        st = name ? st : QV_ERR_NOMEM;
        qv_free(name);
        qv_free(QV_VEC_AT(&c->acc.prompts, char *, --c->acc.prompts.len));
        goto done;
    }
done:
    if (st != QV_OK) {
        if (pushed_image)
            qv_pixels_free(&QV_VEC_AT(&c->acc.images, qv_calib_image, --c->acc.images.len).px);
        if (pushed_row)
            calib_acc_pop_row(&c->acc);
    }
    qv_pixels_free(&ci.px);
    qv_sb_free(&pads);
    qv_free(expanded);
    qv_free(prompt);
    calib_images_free(imgs, n_img);
    return st;
}

/* ---- positions -------------------------------------------------------------------------------- */

/* get_rope_index (transformers Qwen2-VL): per row, over the tokens its attention mask keeps,
 * text advances all three streams together; an image of grid (t, gh, gw) placed at the next free
 * position s takes (s + ti, s + r, s + c) for its t x gh/m x gw/m tokens (row-major), the text
 * after it continuing at max + 1. Images are consumed in batch order across rows. */
static qv_status mrope(qv_calib_batch *b, int64_t image_id, int64_t vstart_id, int64_t merge)
{
    int64_t B = b->n_rows, L = b->len;
    size_t cells = (size_t)(3 * B * L);
    b->position_ids = qv_malloc(cells * sizeof(int64_t) + 1, "position_ids");
    b->mrope_position_ids = qv_calloc(cells + 1, sizeof(int64_t), "mrope position_ids");
    b->mrope_rope_deltas = qv_calloc((size_t)B + 1, sizeof(int64_t), "mrope rope_deltas");
    int64_t *tok = qv_malloc((size_t)L * sizeof(int64_t) + 1, "row tokens");
    int64_t *pos = qv_malloc((size_t)L * 3 * sizeof(int64_t) + 1, "row positions");
    qv_status st = QV_OK;
    if (!b->position_ids || !b->mrope_position_ids || !b->mrope_rope_deltas || !tok || !pos) {
        st = QV_ERR_NOMEM;
        goto done;
    }
    for (int64_t s = 0; s < 3; s++)
        for (int64_t r = 0; r < B; r++)
            for (int64_t t = 0; t < L; t++)
                b->position_ids[(s * B + r) * L + t] = t;
    size_t image_index = 0;
    for (int64_t r = 0; r < B; r++) {
        int64_t n = 0;
        for (int64_t t = 0; t < L; t++)
            if (b->attention_mask[r * L + t])
                tok[n++] = b->input_ids[r * L + t];
        int64_t image_nums = 0;
        for (int64_t t = 0; t + 1 < n; t++)
            image_nums += tok[t] == vstart_id && tok[t + 1] == image_id;
        int64_t st_i = 0, w = 0, next = 0; /* next = max position so far + 1 */
        for (int64_t k = 0; k < image_nums; k++) {
            int64_t ed = st_i;
            while (ed < n && tok[ed] != image_id)
                ed++;
            if (ed >= n || image_index >= b->n_images) {
                st = qv_fail(QV_ERR_INTERNAL, "get_rope_index: row %lld: image %lld has no tokens", (long long)r,
                             (long long)k);
                goto done;
            }
            const int64_t *g = b->images[image_index++].px.grid_thw;
            int64_t gt = g[0], gh = g[1] / merge, gw = g[2] / merge, text_len = ed - st_i;
            for (int64_t t = 0; t < text_len; t++, w++)
                pos[w] = pos[L + w] = pos[2 * L + w] = next + t;
            int64_t base = next + text_len, mx = base;
            for (int64_t ti = 0; ti < gt; ti++)
                for (int64_t y = 0; y < gh; y++)
                    for (int64_t x = 0; x < gw; x++, w++) {
                        if (w >= L) {
                            st = qv_fail(QV_ERR_INVALID, "get_rope_index: row %lld: image %lld runs past the row",
                                         (long long)r, (long long)k);
                            goto done;
                        }
                        pos[w] = base + ti;
                        pos[L + w] = base + y;
                        pos[2 * L + w] = base + x;
                        mx = QV_MAX(mx, QV_MAX(base + ti, QV_MAX(base + y, base + x)));
                    }
            next = mx + 1;
            st_i = ed + gt * gh * gw;
        }
        if (st_i < n)
            for (int64_t t = 0; st_i + t < n; t++, w++)
                pos[w] = pos[L + w] = pos[2 * L + w] = next + t;
        int64_t mx = -1;
        for (int64_t t = 0; t < w; t++)
            mx = QV_MAX(mx, QV_MAX(pos[t], QV_MAX(pos[L + t], pos[2 * L + t])));
        for (int64_t s = 0, q = 0; s < 3; s++, q = 0)
            for (int64_t t = 0; t < L; t++)
                if (b->attention_mask[r * L + t])
                    b->mrope_position_ids[(s * B + r) * L + t] = pos[s * L + q++];
        b->mrope_rope_deltas[r] = mx + 1 - n;
    }
done:
    qv_free(tok);
    qv_free(pos);
    return st;
}

/* ---- builder ---------------------------------------------------------------------------------- */

qv_status qv_calib_build_qwen2vl(const qv_model_config *cfg, qv_tokenizer *tok, const qv_preprocessor *pp,
                                 const qv_calib_items *items, const qv_calib_options *opt, qv_calib_batch *out)
{
    memset(out, 0, sizeof *out);
    q2 c = {.items = items, .opt = opt, .tok = tok, .prep = pp->qwen2vl};
    calib_acc_init(&c.acc);
    char *dir = qv_path_dirname(cfg->path);
    qv_status st = dir ? qv_chat_template_load(dir, &c.tpl) : qv_fail(QV_ERR_NOMEM, "out of memory (path)");
    qv_free(dir);
    if (st == QV_OK && c.tpl.style != QV_CHAT_QWEN2_VL)
        st = qv_fail(QV_ERR_UNSUPPORTED, "%s: not the Qwen2-VL chat template (no image part)", c.tpl.source);
    int64_t image_id = cfg->image_token_id >= 0 ? cfg->image_token_id : qv_tokenizer_token_to_id(tok, "<|image_pad|>");
    int64_t vstart_id =
        cfg->vision_start_id >= 0 ? cfg->vision_start_id : qv_tokenizer_token_to_id(tok, "<|vision_start|>");
    c.im_start_id = qv_tokenizer_token_to_id(tok, "<|im_start|>");
    if (st == QV_OK && (image_id < 0 || vstart_id < 0 || c.im_start_id < 0))
        st = qv_fail(QV_ERR_INVALID, "%s: the tokenizer lacks <|image_pad|>, <|vision_start|> or <|im_start|>",
                     cfg->path);
    for (size_t k = 0; st == QV_OK && k < items->n; k++) {
        bool skipped;
        st = build_item(&c, &items->file->items[items->order[k]], &skipped);
        if (st == QV_OK)
            calib_progress(opt, k + 1, items->n);
    }
    qv_pad_rule rule = calib_pad_rule(opt, cfg->family);
    out->family = cfg->family;
    out->pad_rule = rule;
    int64_t pad = calib_pad_id(tok);
    if (st == QV_OK)
        st = calib_collate(out, &c.acc, pad, true, rule == QV_PAD_RULE_MBQ ? CALIB_MASK_NE_PAD : CALIB_MASK_LENGTH);
    if (st == QV_OK)
        st = calib_transform(out, tok, opt, rule == QV_PAD_RULE_MBQ ? 0 : pad);
    if (st == QV_OK)
        st = calib_finish_masks(out, image_id, &c.acc);
    if (st == QV_OK) {
        calib_acc_move(&c.acc, out);
        out->n_tiles = (int64_t)out->n_images;
        out->image_flags = qv_malloc(out->n_images * sizeof(int64_t) + 1, "image_flags");
        out->image_grid_thw = qv_malloc(out->n_images * 3 * sizeof(int64_t) + 1, "image_grid_thw");
        if (!out->image_flags || !out->image_grid_thw)
            st = QV_ERR_NOMEM;
        for (size_t i = 0; st == QV_OK && i < out->n_images; i++) {
            out->image_flags[i] = 1;
            memcpy(out->image_grid_thw + 3 * i, out->images[i].px.grid_thw, 3 * sizeof(int64_t));
        }
    }
    if (st == QV_OK)
        st = mrope(out, image_id, vstart_id, c.prep.merge_size > 0 ? c.prep.merge_size : 2);
    calib_acc_free(&c.acc);
    qv_chat_template_free(&c.tpl);
    if (st != QV_OK)
        qv_calib_batch_free(out);
    return st;
}
