/* batch_llava.c — the LLaVA-OneVision calibration batch (spec/ALGORITHMS.md §8.2, §11 items
 * 17–18; MODELS.md §2.5; fixtures README §15.2): MBQ's LLaVA_onevision wrapper with LLaVA-NeXT's
 * default_conversation = conv_vicuna_v0 (version "Unknown" → the generic branch):
 *   image      MBQ's forced "pad" path (expand2square on int(255·mean), SigLIP processor)
 *   text       preprocess_multimodal (a single <image> not at the start moves to the front as
 *              "<image>\n" + rest.strip()), then
 *              H + Σ ("### " + Human|Assistant|unknown + ": " + value + "\n") + "### "
 *              with H = the vicuna_v0 system + "\n\n"
 *   ids        tokenizer_image_token: chunks between "<image>" tokenised separately and joined
 *              by −200 (one BOS kept when the tokenizer adds one)
 *   labels     _mask_targets on the image-aware lengths of H and of each decorated turn, each
 *              tokenised on its own (drift from the joint tokenisation reproduced): H and every
 *              human turn but its first two tokens are −100
 *   collation  truncate to model_max_length, pad with the tokenizer's pad id (0 if none) on its
 *              padding side, mask ids != pad (mbq) or by length
 *   splice     LLaVA-NeXT prepare_inputs_labels_for_multimodal: each −200 becomes the image's
 *              (S/patch)² features + image_newline (mm_patch_merge_type spatial…unpad) = 730
 *              positions with labels −100; truncate to tokenizer_model_max_length; re-pad
 *              (zero vectors in the reference) on tokenizer_padding_side
 *   vision_mask MBQ's formula: E = int((post_len − pre_len + k) / k), the j-th placeholder at
 *              pre-splice p_j covers [p_j + j(E−1), p_j + j(E−1) + E)
 * Items without an image and multi-image items are errors (§11 item 18); an item with an image
 * but no "<image>" in its text gets "<image>\n" prepended to its first turn (fixtures §15.5
 * item 4: the wrapper would divide by zero). */
#include <string.h>
#include <strings.h>

#include "../core/fsutil.h"
#include "../io/json.h"
#include "batch_internal.h"
#include "pytext.h"

#define VICUNA_V0_SYSTEM                                                                                        \
    "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, " \
    "detailed, and polite answers to the human's questions."

typedef struct lv {
    const qv_calib_items *items;
    const qv_calib_options *opt;
    qv_tokenizer *tok;
    qv_llava_prep prep;
    int64_t max_len;         /* tokenizer model_max_length (collator truncation) */
    bool left_pad;           /* tokenizer padding_side */
    int64_t splice_max_len;  /* config tokenizer_model_max_length */
    bool splice_left;        /* config tokenizer_padding_side */
    int64_t image_span;      /* features per image (+ newline) */
    calib_acc acc;
} lv;

/* ---- tokenizer_image_token -------------------------------------------------------------------- */

static qv_status tii(lv *c, const char *s, qv_vec *out)
{
    qv_vec chunks;
    QV_TRY(calib_split(s, strlen(s), "<image>", &chunks));
    int64_t bos = qv_tokenizer_bos_id(c->tok), offset = 0;
    qv_status st = QV_OK;
    for (size_t i = 0; st == QV_OK && i < chunks.len; i++) {
        calib_span sp = QV_VEC_AT(&chunks, calib_span, i);
        qv_vec ids;
        qv_vec_init(&ids, sizeof(int64_t));
        st = calib_encode(c->tok, sp.s, sp.n, &ids);
        if (st == QV_OK && i == 0 && ids.len > 0 && bos >= 0 && QV_VEC_AT(&ids, int64_t, 0) == bos) {
            offset = 1;
            st = qv_vec_push(out, &bos);
        }
        if (st == QV_OK && i > 0) {
            int64_t ph = QV_LLAVA_IMAGE_INDEX;
            st = qv_vec_push(out, &ph);
        }
        for (size_t k = (size_t)offset; st == QV_OK && k < ids.len; k++)
            st = qv_vec_push(out, &QV_VEC_AT(&ids, int64_t, k));
        qv_vec_free(&ids);
    }
    qv_vec_free(&chunks);
    return st;
}

static qv_status tii_len(lv *c, const char *s, int64_t *len)
{
    qv_vec v;
    qv_vec_init(&v, sizeof(int64_t));
    qv_status st = tii(c, s, &v);
    *len = (int64_t)v.len;
    qv_vec_free(&v);
    return st;
}

/* ---- per item --------------------------------------------------------------------------------- */

static size_t count_sub(const char *s, const char *sub)
{
    size_t n = 0, m = strlen(sub);
    for (const char *p = strstr(s, sub); p; p = strstr(p + m, sub))
        n++;
    return n;
}

static char *py_strip_dup(const char *s)
{
    size_t b = 0, e = strlen(s);
    qv_py_strip(s, &b, &e);
    return qv_strndup(s + b, e - b);
}

/* preprocess_multimodal on one value (mm_use_im_start_end false, version without "mmtag"). */
static qv_status multimodal_value(const char *v, char **out)
{
    char *cur = NULL;
    if (count_sub(v, "<image>") == 1 && strncmp(v, "<image>", 7) != 0) {
        char *a = NULL, *b = NULL;
        QV_TRY(calib_replace(v, "<image>", "", -1, &a));
        b = py_strip_dup(a);
        qv_free(a);
        char *c = b ? qv_asprintf("<image>\n%s", b) : NULL;
        qv_free(b);
        cur = c ? py_strip_dup(c) : NULL;
        qv_free(c);
    } else {
        cur = qv_strdup(v);
    }
    if (!cur)
        return qv_fail(QV_ERR_NOMEM, "out of memory (prompt)");
    qv_status st = calib_replace(cur, "QA_GT_caption_based_noisy", "", -1, out);
    qv_free(cur);
    return st;
}

static qv_status build_text(lv *c, const qv_caption_item *item, calib_row *row, char **prompt)
{
    static const char header[] = VICUNA_V0_SYSTEM "\n\n";
    bool any = false;
    for (size_t j = 0; j < item->n_turns; j++)
        any |= strstr(item->turns[j].value, "<image>") != NULL;
    qv_strbuf conv;
    qv_sb_init(&conv);
    qv_sb_puts(&conv, header);
    int64_t *lens = qv_calloc(item->n_turns + 1, sizeof(int64_t), "turn lengths");
    qv_status st = lens ? tii_len(c, header, &lens[0]) : QV_ERR_NOMEM;
    for (size_t j = 0; st == QV_OK && j < item->n_turns; j++) {
        const char *raw = item->turns[j].value, *from = item->turns[j].from;
        char *fixed = NULL, *v = NULL, *dec = NULL;
        if (j == 0 && !any) { /* the repair of fixtures §15.5 item 4 */
            if (!(fixed = qv_asprintf("<image>\n%s", raw))) {
                st = qv_fail(QV_ERR_NOMEM, "out of memory (prompt)");
                break;
            }
            raw = fixed;
        }
        st = multimodal_value(raw, &v);
        qv_free(fixed);
        if (st != QV_OK)
            break;
        const char *role = !strcasecmp(from, "human") ? "Human" : !strcasecmp(from, "gpt") ? "Assistant" : "unknown";
        dec = qv_asprintf("### %s: %s\n", role, v);
        qv_free(v);
        if (!dec) {
            st = qv_fail(QV_ERR_NOMEM, "out of memory (prompt)");
            break;
        }
        qv_sb_puts(&conv, dec);
        st = tii_len(c, dec, &lens[j + 1]);
        qv_free(dec);
    }
    qv_sb_puts(&conv, "### ");
    if (st == QV_OK && conv.oom)
        st = qv_fail(QV_ERR_NOMEM, "out of memory (prompt)");
    if (st == QV_OK)
        st = tii(c, conv.s, &row->ids);
    if (st == QV_OK)
        st = qv_vec_reserve(&row->labels, row->ids.len);
    if (st == QV_OK) {
        /* _mask_targets */
        int64_t n = (int64_t)row->ids.len, *lab = row->labels.data, cur = lens[0];
        memcpy(lab, row->ids.data, (size_t)n * sizeof(int64_t));
        row->labels.len = (size_t)n;
        calib_py_fill(lab, n, 0, cur, QV_IGNORE_INDEX);
        for (size_t j = 0; j < item->n_turns; j++) {
            if (!strcmp(item->turns[j].from, "human"))
                calib_py_fill(lab, n, cur + 2, cur + lens[j + 1], QV_IGNORE_INDEX);
            cur += lens[j + 1];
        }
        *prompt = conv.s;
        conv.s = NULL;
    }
    qv_sb_free(&conv);
    qv_free(lens);
    return st;
}

static qv_status build_item(lv *c, const qv_caption_item *item, bool *skipped)
{
    *skipped = false;
    if (item->n_images == 0)
        return calib_item_fail(c->items, item, QV_ERR_INVALID,
                               "no image (LLaVA-OneVision calibration needs one image per item, spec/ALGORITHMS.md "
                               "§11 item 18)");
    if (item->n_images > 1)
        return calib_item_fail(c->items, item, QV_ERR_INVALID,
                               "%zu images (LLaVA-OneVision calibration takes one image per item, spec/ALGORITHMS.md "
                               "§11 item 18)",
                               item->n_images);
    qv_image *imgs = NULL;
    size_t n_img = 0;
    qv_calib_image ci = {0};
    char *prompt = NULL, *name = NULL;
    bool pushed_row = false, pushed_image = false;
    qv_status st = calib_load_images(c->items, item, c->opt, &imgs, &n_img, skipped);
    if (st != QV_OK || *skipped)
        goto done;
    ci.w = imgs[0].w;
    ci.h = imgs[0].h;
    ci.sample = c->acc.prompts.len;
    if ((st = qv_preprocess_llava_pad(&imgs[0], &c->prep, item->images[0], &ci.px)) != QV_OK) {
        st = calib_item_wrap(c->items, item, st);
        goto done;
    }
    calib_row *row;
    if ((st = calib_acc_row(&c->acc, &row)) != QV_OK)
        goto done;
    pushed_row = true;
    if ((st = build_text(c, item, row, &prompt)) != QV_OK)
        goto done;
    if ((int64_t)row->ids.len > c->max_len) /* data_collator: _input_ids[: model_max_length] */
        row->ids.len = row->labels.len = (size_t)c->max_len;
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
    }
done:
    if (st != QV_OK) {
        if (pushed_image)
            qv_pixels_free(&QV_VEC_AT(&c->acc.images, qv_calib_image, --c->acc.images.len).px);
        if (pushed_row)
            calib_acc_pop_row(&c->acc);
    }
    qv_pixels_free(&ci.px);
    qv_free(prompt);
    calib_images_free(imgs, n_img);
    return st;
}

/* ---- splice ----------------------------------------------------------------------------------- */

static qv_status splice(lv *c, qv_calib_batch *b, int64_t pad)
{
    int64_t B = b->n_rows, Lp = b->len, E = c->image_span;
    /* the collator's output becomes the pre-splice tensors */
    b->pre_len = Lp;
    b->input_ids_pre = b->input_ids;
    b->labels_pre = b->labels;
    b->attention_mask_pre = b->attention_mask;
    b->input_ids = b->labels = NULL;
    b->attention_mask = NULL;
    int64_t *len = qv_calloc((size_t)B + 1, sizeof(int64_t), "spliced lengths");
    b->splice = qv_calloc(b->n_images * 2 + 1, sizeof(int64_t), "splice positions");
    if (!len || !b->splice) {
        qv_free(len);
        return QV_ERR_NOMEM;
    }
    int64_t L = 0;
    size_t img = 0;
    for (int64_t r = 0; r < B; r++) {
        int64_t n = 0, k = 0;
        for (int64_t t = 0; t < Lp; t++)
            if (b->attention_mask_pre[r * Lp + t]) {
                n++;
                k += b->input_ids_pre[r * Lp + t] == QV_LLAVA_IMAGE_INDEX;
            }
        len[r] = QV_MIN(n - k + k * E, c->splice_max_len);
        L = QV_MAX(L, len[r]);
    }
    size_t cells = (size_t)B * (size_t)L;
    b->input_ids = qv_malloc(cells * sizeof(int64_t) + 1, "calibration input_ids");
    b->labels = qv_malloc(cells * sizeof(int64_t) + 1, "calibration labels");
    b->attention_mask = qv_calloc(cells + 1, 1, "calibration attention_mask");
    if (!b->input_ids || !b->labels || !b->attention_mask) {
        qv_free(len);
        return QV_ERR_NOMEM;
    }
    for (int64_t r = 0; r < B; r++) {
        int64_t off = c->splice_left ? L - len[r] : 0, w = 0, *ids = b->input_ids + r * L, *lab = b->labels + r * L;
        for (int64_t t = 0; t < L; t++) {
            ids[t] = pad;
            lab[t] = QV_IGNORE_INDEX;
        }
        bool had_image = false;
        for (int64_t t = 0; t < Lp; t++) {
            if (!b->attention_mask_pre[r * Lp + t])
                continue;
            int64_t id = b->input_ids_pre[r * Lp + t];
            if (id == QV_LLAVA_IMAGE_INDEX) {
                had_image = true;
                if (img < b->n_images) {
                    b->splice[2 * img] = r;
                    b->splice[2 * img + 1] = off + w;
                }
                img++;
                for (int64_t e = 0; e < E; e++, w++)
                    if (w < len[r]) {
                        ids[off + w] = QV_LLAVA_IMAGE_INDEX;
                        lab[off + w] = QV_IGNORE_INDEX;
                    }
            } else {
                if (w < len[r]) {
                    ids[off + w] = id;
                    lab[off + w] = b->labels_pre[r * Lp + t];
                }
                w++;
            }
        }
        if (!had_image) /* a text-only row still consumes one image's features in LLaVA-NeXT */
            img++;
        memset(b->attention_mask + r * L + off, 1, (size_t)len[r]);
        b->row_len[r] = len[r];
    }
    if (img != b->n_images) {
        qv_free(len);
        return qv_fail(QV_ERR_INTERNAL, "LLaVA splice: %zu placeholders for %zu images", img, b->n_images);
    }
    b->len = L;
    b->image_span = E;
    qv_free(len);
    return QV_OK;
}

/* MBQ's generate_input vision mask (see the top of the file). */
static void mbq_vision_mask(qv_calib_batch *b)
{
    int64_t B = b->n_rows, L = b->len, Lp = b->pre_len;
    memset(b->vision_mask, 0, (size_t)(B * L));
    for (int64_t r = 0; r < B; r++) {
        int64_t k = 0, pre = 0, post = 0;
        for (int64_t t = 0; t < Lp; t++) {
            k += b->input_ids_pre[r * Lp + t] == QV_LLAVA_IMAGE_INDEX;
            pre += b->attention_mask_pre[r * Lp + t] != 0;
        }
        for (int64_t t = 0; t < L; t++)
            post += b->attention_mask[r * L + t] != 0;
        if (!k)
            continue;
        int64_t E = (post - pre + k) / k, j = 0; /* int() of a true division: toward zero */
        for (int64_t t = 0; t < Lp; t++) {
            if (b->input_ids_pre[r * Lp + t] != QV_LLAVA_IMAGE_INDEX)
                continue;
            int64_t s = t + (E - 1) * j++;
            int64_t lo = s < 0 ? QV_MAX(s + L, 0) : QV_MIN(s, L), hi = s + E < 0 ? QV_MAX(s + E + L, 0) : QV_MIN(s + E, L);
            for (int64_t x = lo; x < hi; x++)
                b->vision_mask[r * L + x] = 1;
        }
    }
}

/* ---- builder ---------------------------------------------------------------------------------- */

/* The splice's span, truncation and padding side from the family's config fields (both
 * layouts): 729 tower rows (the tower's image / patch size: a local lmms-lab tower folder, or
 * llava-hf's inline vision_config; a hub tower id keeps 384 / 14) plus the image_newline. */
static qv_status read_config(lv *c, const qv_model_config *cfg, const char *dir)
{
    const char *tower = cfg->llava.vision_tower;
    int64_t size = c->prep.image_size, patch = 14;
    qv_status st = QV_OK;
    if (tower[0]) { /* a local tower folder (the fixtures'); a hub id keeps the defaults */
        char *tp = tower[0] == '/' ? qv_path_join(tower, "config.json") : qv_asprintf("%s/%s/config.json", dir, tower);
        if (tp && qv_path_exists(tp)) {
            qv_json *tj = NULL;
            st = qv_json_load_file(tp, 0, &tj);
            if (st == QV_OK)
                st = qv_json_int_opt(tj, "image_size", tp, &size);
            if (st == QV_OK)
                st = qv_json_int_opt(tj, "patch_size", tp, &patch);
            qv_json_free(tj);
        }
        qv_free(tp);
    } else if (cfg->vision.image_size > 0) {
        size = cfg->vision.image_size, patch = cfg->vision.patch_size;
    }
    if (st == QV_OK && (size <= 0 || patch <= 0 || size / patch > 4096))
        st = qv_fail(QV_ERR_INVALID, "%s: vision tower image size %lld / patch %lld", cfg->path, (long long)size,
                     (long long)patch);
    if (st == QV_OK) {
        int64_t g = size / patch;
        c->image_span = g * g + (cfg->llava.image_newline ? 1 : 0);
        c->splice_max_len = cfg->llava.max_length > 0 ? cfg->llava.max_length : CALIB_NO_LIMIT;
        c->splice_left = cfg->llava.left_pad;
    }
    return st;
}

qv_status qv_calib_build_llava(const qv_model_config *cfg, qv_tokenizer *tok, const qv_preprocessor *pp,
                               const qv_calib_items *items, const qv_calib_options *opt, qv_calib_batch *out)
{
    memset(out, 0, sizeof *out);
    lv c = {.items = items, .opt = opt, .tok = tok, .prep = pp->llava};
    calib_acc_init(&c.acc);
    char *dir = qv_path_dirname(cfg->path);
    qv_status st = dir ? calib_tokenizer_settings(dir, &c.max_len, &c.left_pad) : QV_ERR_NOMEM;
    if (st == QV_OK)
        st = read_config(&c, cfg, dir);
    qv_free(dir);
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
        st = calib_collate(out, &c.acc, pad, c.left_pad, rule == QV_PAD_RULE_MBQ ? CALIB_MASK_NE_PAD : CALIB_MASK_LENGTH);
    if (st == QV_OK)
        st = calib_transform(out, tok, opt, rule == QV_PAD_RULE_MBQ ? 0 : pad);
    if (st == QV_OK) {
        calib_acc_move(&c.acc, out);
        st = splice(&c, out, pad);
    }
    if (st == QV_OK)
        st = calib_finish_masks(out, QV_LLAVA_IMAGE_INDEX, &c.acc);
    if (st == QV_OK) {
        mbq_vision_mask(out);
        out->left_padded = c.splice_left;
        out->n_tiles = (int64_t)out->n_images;
        out->image_flags = qv_malloc(out->n_images * sizeof(int64_t) + 1, "image_flags");
        if (!out->image_flags)
            st = QV_ERR_NOMEM;
        for (size_t i = 0; st == QV_OK && i < out->n_images; i++)
            out->image_flags[i] = 1;
        if (st == QV_OK)
            st = calib_acc_take_notes(&c.acc, out); /* those of finish_masks */
    }
    calib_acc_free(&c.acc);
    if (st != QV_OK)
        qv_calib_batch_free(out);
    return st;
}
