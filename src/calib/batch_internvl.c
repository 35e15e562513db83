/* batch_internvl.c — the InternVL2 / InternVL3 calibration batch (spec/ALGORITHMS.md §8.1,
 * §11 items 7, 20–21; fixtures README §5, §14.2): MBQ's InternVL2 wrapper `preprocess_data`
 * (dynamic_preprocess with one tile per image, a white 224x224 stand-in with image_flags 0 for
 * text-only items, "<image>\n" prepended to the first turn of a single-image item that lacks
 * it) with the preprocess function of the checkpoint's template:
 *   Hermes-2        preprocess_mpt       (MBQ qmllm/models/internvl2/dataset.py)
 *   internlm2-chat  preprocess_internlm  (same file)
 *   internvl2_5     preprocess_internvl2_5 (OpenGVLab/InternVL internvl_chat/internvl/train/dataset.py)
 * MBQ hard-codes internlm2-chat; the fixtures (and qvlm) use config.json "template".
 * Multi-image items get `max_tiles // n_images` tiles per image (0 → one tile, §8.1), and their
 * text must hold a placeholder per image (the reference silently misaligns otherwise).
 * Collation: right padding; mbq rule pad 0 / mask ids != 0, length rule pad id / mask by length. */
#include <string.h>

#include "../core/fsutil.h"
#include "../family/family.h"
#include "../io/json.h"
#include "../tok/template.h"
#include "batch_internal.h"
#include "pytext.h"

typedef enum prep_kind { PREP_MPT = 0, PREP_INTERNLM, PREP_INTERNVL2_5 } prep_kind;

typedef struct ivl {
    const qv_calib_items *items;
    const qv_calib_options *opt;
    qv_tokenizer *tok;
    const qv_conv_template *conv;
    prep_kind kind;
    qv_internvl_prep prep;
    int64_t num_image_token; /* per tile: (S / patch)^2 * downsample^2 */
    int64_t max_len;         /* tokenizer model_max_length */
    int64_t tok_pad;         /* tokenizer pad id for the mismatch check; -1 = none */
    calib_acc acc;
} ivl;

/* A turn as the preprocess functions see it (a mutable copy of the item's turn). */
typedef struct turn {
    const char *from;
    char *value;
} turn;

static void turns_free(turn *t, size_t n)
{
    if (!t)
        return;
    for (size_t i = 0; i < n; i++)
        qv_free(t[i].value);
    qv_free(t);
}

static qv_status turns_copy(const qv_caption_item *item, turn **out)
{
    turn *t = qv_calloc(item->n_turns, sizeof *t, "conversation");
    if (!t)
        return QV_ERR_NOMEM;
    for (size_t i = 0; i < item->n_turns; i++) {
        t[i].from = item->turns[i].from;
        if (!(t[i].value = qv_strdup(item->turns[i].value))) {
            turns_free(t, i);
            return qv_fail(QV_ERR_NOMEM, "out of memory (conversation)");
        }
    }
    *out = t;
    return QV_OK;
}

static size_t count_sub(const char *s, const char *sub)
{
    size_t n = 0, m = strlen(sub);
    for (const char *p = strstr(s, sub); p; p = strstr(p + m, sub))
        n++;
    return n;
}

static qv_status image_tokens(int64_t tokens, char **out)
{
    qv_strbuf b;
    qv_sb_init(&b);
    qv_sb_puts(&b, "<img>");
    for (int64_t k = 0; k < tokens && !b.oom; k++)
        qv_sb_puts(&b, "<IMG_CONTEXT>");
    qv_sb_puts(&b, "</img>");
    if (b.oom) {
        qv_sb_free(&b);
        return qv_fail(QV_ERR_NOMEM, "out of memory (image tokens)");
    }
    *out = b.s;
    return QV_OK;
}

/* ---- preprocess_mpt / preprocess_internlm ---------------------------------------------------- */

/* The MPT conversation of the turns (conversation.py get_prompt; a leading non-human turn is
 * dropped, roles must alternate from human; internlm strips every value; an empty message
 * writes its role alone), with the i-th "<image>" of the whole text expanded for image i. */
static qv_status render_mpt(ivl *c, const qv_caption_item *item, turn *t, size_t n, const int64_t *tokens,
                            size_t n_images, char **out)
{
    *out = NULL;
    size_t first = 0;
    for (size_t j = 0; j < n; j++)
        if (strcmp(t[j].from, "human") && strcmp(t[j].from, "gpt"))
            return calib_item_fail(c->items, item, QV_ERR_INVALID,
                                   "turn %zu is from \"%s\" (the %s template knows \"human\" and \"gpt\")", j,
                                   t[j].from, c->conv->name);
    if (n && strcmp(t[0].from, "human"))
        first = 1;
    qv_conv_turn *ct = qv_calloc(n ? n : 1, sizeof *ct, "conversation");
    if (!ct)
        return QV_ERR_NOMEM;
    size_t m = 0;
    for (size_t j = first; j < n; j++, m++) {
        const char *want = m % 2 ? "gpt" : "human";
        if (strcmp(t[j].from, want)) {
            qv_free(ct);
            return calib_item_fail(c->items, item, QV_ERR_INVALID,
                                   "turn %zu is from \"%s\", expected \"%s\" (turns must alternate)", j, t[j].from,
                                   want);
        }
        if (c->kind == PREP_INTERNLM) {
            size_t b = 0, e = strlen(t[j].value);
            qv_py_strip(t[j].value, &b, &e);
            memmove(t[j].value, t[j].value + b, e - b);
            t[j].value[e - b] = 0;
        }
        ct[m].role = m % 2 ? QV_ROLE_ASSISTANT : QV_ROLE_USER;
        ct[m].text = t[j].value[0] ? t[j].value : NULL;
    }
    char *prompt = NULL;
    qv_status st = qv_conv_render(c->conv, NULL, ct, m, &prompt);
    qv_free(ct);
    if (st != QV_OK)
        return st;
    if (n_images && count_sub(prompt, "<image>") < n_images) {
        size_t have = count_sub(prompt, "<image>");
        qv_free(prompt);
        return calib_item_fail(c->items, item, QV_ERR_INVALID, "the conversation has %zu <image> placeholder%s for %zu images",
                               have, have == 1 ? "" : "s", n_images);
    }
    for (size_t i = 0; i < n_images; i++) {
        char *tk = NULL, *next = NULL;
        st = image_tokens(tokens[i], &tk);
        if (st == QV_OK)
            st = calib_replace(prompt, "<image>", tk, 1, &next);
        qv_free(tk);
        qv_free(prompt);
        prompt = next;
        if (st != QV_OK)
            return st;
    }
    *out = prompt;
    return QV_OK;
}

static qv_status tok_len(ivl *c, const char *s, size_t n, int64_t *len) { return calib_encode_len(c->tok, s, n, len); }

static qv_status tok_len_cat(ivl *c, const char *a, size_t na, const char *b, int64_t *len)
{
    char *s = qv_asprintf("%.*s%s", (int)na, a, b);
    if (!s)
        return qv_fail(QV_ERR_NOMEM, "out of memory (prompt)");
    qv_status st = tok_len(c, s, strlen(s), len);
    qv_free(s);
    return st;
}

/* preprocess_mpt's target masking (Hermes-2). */
static qv_status labels_mpt(ivl *c, const char *conv, int64_t *lab, int64_t n, int64_t *cur_out)
{
    const char *sep = c->conv->sep;                 /* <|im_end|> */
    char *sep2 = qv_asprintf("%s%s", sep, c->conv->roles[1]); /* <|im_end|><|im_start|>assistant\n */
    if (!sep2)
        return qv_fail(QV_ERR_NOMEM, "out of memory (prompt)");
    qv_vec turns, re;
    qv_vec_init(&re, sizeof(char *));
    qv_status st = calib_split(conv, strlen(conv), sep, &turns);
    /* re_turns = [sep.join(turns[:3])] + [sep.join(turns[k:k+2]) for k in 3, 5, ...] */
    for (size_t k = 0; st == QV_OK && k < QV_MAX(turns.len, 1); k = k == 0 ? 3 : k + 2) {
        size_t end = QV_MIN(turns.len, k == 0 ? 3 : k + 2);
        qv_strbuf b;
        qv_sb_init(&b);
        for (size_t i = k; i < end; i++) {
            if (i > k)
                qv_sb_puts(&b, sep);
            calib_span sp = QV_VEC_AT(&turns, calib_span, i);
            qv_sb_putn(&b, sp.s, sp.n);
        }
        char *s = b.oom ? NULL : (b.s ? b.s : qv_strdup(""));
        if (!s) {
            qv_sb_free(&b);
            st = qv_fail(QV_ERR_NOMEM, "out of memory (prompt)");
            break;
        }
        st = qv_vec_push(&re, &s);
        if (st != QV_OK)
            qv_free(s);
    }
    int64_t cur = 0;
    for (size_t i = 0; st == QV_OK && i < re.len; i++) {
        const char *turn_s = QV_VEC_AT(&re, char *, i);
        if (!turn_s[0])
            break;
        int64_t turn_len, instr;
        if ((st = tok_len(c, turn_s, strlen(turn_s), &turn_len)) != QV_OK)
            break;
        turn_len += 1;
        qv_vec parts;
        if ((st = calib_split(turn_s, strlen(turn_s), sep2, &parts)) != QV_OK)
            break;
        if (parts.len != 2) {
            qv_vec_free(&parts);
            break;
        }
        calib_span p0 = QV_VEC_AT(&parts, calib_span, 0);
        st = tok_len_cat(c, p0.s, p0.n, sep2, &instr);
        qv_vec_free(&parts);
        if (st != QV_OK)
            break;
        calib_py_fill(lab, n, cur, cur + instr, QV_IGNORE_INDEX);
        cur += turn_len;
    }
    if (st == QV_OK)
        calib_py_fill(lab, n, cur, CALIB_NO_LIMIT, QV_IGNORE_INDEX);
    for (size_t i = 0; i < re.len; i++)
        qv_free(QV_VEC_AT(&re, char *, i));
    qv_vec_free(&re);
    qv_vec_free(&turns);
    qv_free(sep2);
    *cur_out = cur;
    return st;
}

/* preprocess_internlm's target masking (internlm2-chat; every separate call adds a BOS). */
static qv_status labels_internlm(ivl *c, const char *conv, int64_t *lab, int64_t n, int64_t *cur_out)
{
    const char *user = c->conv->roles[0], *asst = c->conv->roles[1];
    qv_vec parts;
    QV_TRY(calib_split(conv, strlen(conv), asst, &parts));
    qv_status st = QV_OK;
    int64_t cur = 1, temp;
    calib_py_fill(lab, n, 0, cur, QV_IGNORE_INDEX);
    calib_span p0 = QV_VEC_AT(&parts, calib_span, 0);
    if ((st = tok_len_cat(c, p0.s, p0.n, asst, &temp)) != QV_OK)
        goto done;
    temp -= 1;
    calib_py_fill(lab, n, cur, cur + temp, QV_IGNORE_INDEX);
    cur += temp;
    for (size_t k = 1; k + 1 < parts.len; k++) {
        calib_span info = QV_VEC_AT(&parts, calib_span, k);
        qv_vec two;
        if ((st = calib_split(info.s, info.n, user, &two)) != QV_OK)
            goto done;
        if (two.len != 2) {
            qv_vec_free(&two);
            st = qv_fail(QV_ERR_INVALID, "assistant turn %zu holds %zu \"%.*s\" markers (expected 1)", k,
                         two.len - 1, (int)strcspn(user, "\n"), user);
            goto done;
        }
        calib_span a = QV_VEC_AT(&two, calib_span, 0), b = QV_VEC_AT(&two, calib_span, 1);
        qv_vec_free(&two);
        if ((st = tok_len(c, a.s, a.n, &temp)) != QV_OK)
            goto done;
        cur += temp - 1;
        char *part = qv_asprintf("%s%.*s%s", user, (int)b.n, b.s, asst);
        if (!part) {
            st = qv_fail(QV_ERR_NOMEM, "out of memory (prompt)");
            goto done;
        }
        st = tok_len(c, part, strlen(part), &temp);
        qv_free(part);
        if (st != QV_OK)
            goto done;
        temp -= 1;
        calib_py_fill(lab, n, cur, cur + temp, QV_IGNORE_INDEX);
        cur += temp;
    }
    calib_span last = QV_VEC_AT(&parts, calib_span, parts.len - 1);
    if ((st = tok_len(c, last.s, last.n, &temp)) != QV_OK)
        goto done;
    cur += temp - 1;
    calib_py_fill(lab, n, cur, CALIB_NO_LIMIT, QV_IGNORE_INDEX);
done:
    qv_vec_free(&parts);
    *cur_out = cur;
    return st;
}

static qv_status build_mpt(ivl *c, const qv_caption_item *item, turn *t, size_t n_turns, const int64_t *tokens,
                           size_t n_images, calib_row *row, char **prompt)
{
    QV_TRY(render_mpt(c, item, t, n_turns, tokens, n_images, prompt));
    QV_TRY(calib_encode(c->tok, *prompt, strlen(*prompt), &row->ids));
    if ((int64_t)row->ids.len > c->max_len) /* tokenizer(..., truncation=True, max_length) */
        row->ids.len = (size_t)c->max_len;
    int64_t n = (int64_t)row->ids.len, total = 0, cur = 0;
    QV_TRY(qv_vec_reserve(&row->labels, (size_t)n));
    memcpy(row->labels.data, row->ids.data, (size_t)n * sizeof(int64_t));
    row->labels.len = (size_t)n;
    int64_t *lab = row->labels.data;
    for (int64_t i = 0; i < n; i++)
        total += c->tok_pad < 0 || lab[i] != c->tok_pad;
    qv_status st = c->kind == PREP_MPT ? labels_mpt(c, *prompt, lab, n, &cur) : labels_internlm(c, *prompt, lab, n, &cur);
    if (st != QV_OK)
        return calib_item_wrap(c->items, item, st);
    if (cur < c->max_len && cur != total) {
        calib_py_fill(lab, n, 0, CALIB_NO_LIMIT, QV_IGNORE_INDEX);
        char *name = calib_item_name(item);
        st = calib_acc_note(&c->acc,
                            "%s:%zu: entry %zu (%s): tokenization mismatch: %lld vs. %lld; every label of the sample "
                            "is ignored (the reference's %s rule)",
                            c->items->file->path, item->line, item->index, name ? name : "?", (long long)cur,
                            (long long)total, c->kind == PREP_MPT ? "preprocess_mpt" : "preprocess_internlm");
        qv_free(name);
    }
    return st;
}

/* ---- preprocess_internvl2_5 ------------------------------------------------------------------ */

static qv_status build_internvl2_5(ivl *c, const qv_caption_item *item, turn *t, size_t n_turns,
                                   const int64_t *tokens, size_t n_images, calib_row *row, char **prompt)
{
    const char *system = c->conv->system_message;
    size_t first = 0;
    if (n_turns && !strcmp(t[0].from, "system")) {
        system = t[0].value;
        first = 1;
    }
    if (n_images) {
        size_t cur_img = 0;
        for (size_t j = first; j < n_turns; j++) {
            if (strcmp(t[j].from, "human"))
                continue;
            size_t cnt = count_sub(t[j].value, "<image>");
            for (size_t i = 0; i < cnt && cur_img < n_images; i++, cur_img++) {
                char *tk = NULL, *next = NULL;
                qv_status st = image_tokens(tokens[cur_img], &tk);
                if (st == QV_OK)
                    st = calib_replace(t[j].value, "<image>", tk, 1, &next);
                qv_free(tk);
                if (st != QV_OK)
                    return st;
                qv_free(t[j].value);
                t[j].value = next;
            }
        }
        if (cur_img != n_images)
            return calib_item_fail(c->items, item, QV_ERR_INVALID,
                                   "the human turns hold %zu <image> placeholder%s for %zu images", cur_img,
                                   cur_img == 1 ? "" : "s", n_images);
    }
    bool add_bos = qv_tokenizer_adds_bos(c->tok);
    const char *bos = add_bos && qv_tokenizer_bos_token(c->tok) ? qv_tokenizer_bos_token(c->tok) : "";
    int64_t ignore_len;
    QV_TRY(tok_len(c, "<|im_start|>assistant\n", 22, &ignore_len));
    if (add_bos)
        ignore_len -= 1;
    qv_strbuf all;
    qv_sb_init(&all);
    qv_status st = QV_OK;
    /* batches: the system turn (the item's own when it starts with one), then every turn */
    for (size_t i = 0; st == QV_OK && i <= n_turns - first; i++) {
        bool sys = i == 0, supervised = false;
        size_t j = sys ? 0 : first + i - 1; /* the item's turn */
        const char *from = sys ? "system" : t[j].from, *value = sys ? system : t[j].value, *head;
        if (sys)
            head = "<|im_start|>system\n";
        else if (!strcmp(from, "human"))
            head = "<|im_start|>user\n";
        else if (!strcmp(from, "gpt")) {
            head = "<|im_start|>assistant\n";
            supervised = true;
        } else {
            st = calib_item_fail(c->items, item, QV_ERR_INVALID,
                                 "turn %zu is from \"%s\" (the internvl2_5 template knows \"human\" and \"gpt\", "
                                 "and \"system\" first)",
                                 j, from);
            break;
        }
        char *s = qv_asprintf("%s%s%s<|im_end|>\n", sys ? bos : "", head, value);
        if (!s) {
            st = qv_fail(QV_ERR_NOMEM, "out of memory (prompt)");
            break;
        }
        size_t at = row->ids.len;
        st = calib_encode(c->tok, s, strlen(s), &row->ids);
        qv_sb_puts(&all, s);
        qv_free(s);
        if (st != QV_OK)
            break;
        if (add_bos && row->ids.len > at) { /* input_ids = [item[1:] for item in input_ids] */
            int64_t *v = row->ids.data;
            memmove(v + at, v + at + 1, (row->ids.len - at - 1) * sizeof(int64_t));
            row->ids.len--;
        }
        int64_t k = (int64_t)(row->ids.len - at);
        if ((st = qv_vec_reserve(&row->labels, row->ids.len)) != QV_OK)
            break;
        int64_t *lab = (int64_t *)row->labels.data + at;
        memcpy(lab, (int64_t *)row->ids.data + at, (size_t)k * sizeof(int64_t));
        row->labels.len = row->ids.len;
        if (!supervised)
            calib_py_fill(lab, k, 0, CALIB_NO_LIMIT, QV_IGNORE_INDEX);
        else {
            calib_py_fill(lab, k, 0, ignore_len, QV_IGNORE_INDEX);      /* `<|im_start|>assistant\n` */
            calib_py_fill(lab, k, -1, CALIB_NO_LIMIT, QV_IGNORE_INDEX); /* the final `\n` */
        }
    }
    if (st == QV_OK && all.oom)
        st = qv_fail(QV_ERR_NOMEM, "out of memory (prompt)");
    if (st != QV_OK) {
        qv_sb_free(&all);
        return st;
    }
    *prompt = all.s ? all.s : qv_strdup("");
    if (!*prompt)
        return QV_ERR_NOMEM;
    if ((int64_t)row->ids.len > c->max_len)
        row->ids.len = row->labels.len = (size_t)c->max_len;
    return QV_OK;
}

/* ---- per item --------------------------------------------------------------------------------- */

static qv_status add_pixels(ivl *c, qv_image *img, int max_num, bool text_only, size_t sample, const char *what,
                            int64_t *tiles)
{
    qv_internvl_prep p = c->prep;
    p.max_num = max_num;
    qv_calib_image ci = {.w = img->w, .h = img->h, .text_only = text_only, .sample = sample};
    QV_TRY(qv_preprocess_internvl(img, &p, what, &ci.px));
    qv_status st = qv_vec_push(&c->acc.images, &ci);
    if (st != QV_OK) {
        qv_pixels_free(&ci.px);
        return st;
    }
    *tiles = ci.px.n_tiles;
    return QV_OK;
}

static qv_status build_item(ivl *c, const qv_caption_item *item, bool *skipped)
{
    qv_image *imgs = NULL;
    size_t n_img = 0;
    QV_TRY(calib_load_images(c->items, item, c->opt, &imgs, &n_img, skipped));
    if (*skipped)
        return QV_OK;
    int max_tiles = c->opt->max_tiles > 0 ? c->opt->max_tiles : 1;
    size_t sample = c->acc.prompts.len, images_before = c->acc.images.len;
    int64_t *tokens = qv_calloc(n_img ? n_img : 1, sizeof(int64_t), "image token counts");
    turn *t = NULL;
    char *prompt = NULL, *compact = NULL;
    calib_row *row = NULL;
    qv_status st = tokens ? QV_OK : QV_ERR_NOMEM;
    for (size_t i = 0; st == QV_OK && i < n_img; i++) {
        int64_t tiles = 0;
        st = add_pixels(c, &imgs[i], n_img == 1 ? max_tiles : max_tiles / (int)n_img, false, sample,
                        item->images[i], &tiles);
        tokens[i] = c->num_image_token * tiles;
    }
    if (st == QV_OK && !n_img) { /* pure text: a white 224x224 image, its tiles flagged 0 */
        qv_image white = {0};
        int64_t tiles;
        st = qv_image_new(&white, 224, 224, "white image");
        if (st == QV_OK) {
            memset(white.rgb, 255, (size_t)224 * 224 * 3);
            st = add_pixels(c, &white, max_tiles, true, sample, "white image", &tiles);
        }
        qv_image_free(&white);
    }
    if (st != QV_OK)
        st = calib_item_wrap(c->items, item, st);
    if (st == QV_OK)
        st = turns_copy(item, &t);
    if (st == QV_OK && n_img == 1 && !strstr(t[0].value, "<image>")) {
        char *v = qv_asprintf("<image>\n%s", t[0].value);
        st = v ? QV_OK : qv_fail(QV_ERR_NOMEM, "out of memory (prompt)");
        if (v) {
            qv_free(t[0].value);
            t[0].value = v;
        }
    }
    if (st == QV_OK)
        st = calib_acc_row(&c->acc, &row);
    if (st == QV_OK)
        st = c->kind == PREP_INTERNVL2_5
                 ? build_internvl2_5(c, item, t, item->n_turns, tokens, n_img, row, &prompt)
                 : build_mpt(c, item, t, item->n_turns, tokens, n_img, row, &prompt);
    if (st == QV_OK)
        st = calib_compact_prompt(prompt, &compact);
    if (st == QV_OK && (st = qv_vec_push(&c->acc.prompts, &compact)) == QV_OK)
        compact = NULL;
    if (st == QV_OK) {
        char *name = calib_item_name(item);
        st = name ? qv_vec_push(&c->acc.names, &name) : QV_ERR_NOMEM;
        if (st != QV_OK)
            qv_free(name);
    }
    if (st != QV_OK) { /* leave the accumulator as it was */
        while (c->acc.images.len > images_before)
            qv_pixels_free(&QV_VEC_AT(&c->acc.images, qv_calib_image, --c->acc.images.len).px);
        if (row)
            calib_acc_pop_row(&c->acc);
    }
    qv_free(compact);
    qv_free(prompt);
    turns_free(t, item->n_turns);
    qv_free(tokens);
    calib_images_free(imgs, n_img);
    return st;
}

/* ---- builder ---------------------------------------------------------------------------------- */

static qv_status setup(ivl *c, const qv_model_config *cfg, const qv_preprocessor *pp)
{
    const qv_family *fam = qv_family_get(cfg->family);
    const char *name = cfg->template_name[0] ? cfg->template_name
                       : fam->default_template ? fam->default_template
                                               : "internlm2-chat";
    qv_status st = qv_conv_template_get(name, &c->conv);
    if (st != QV_OK)
        return qv_fail_prefix(st, "%s", cfg->path);
    c->kind = !strcmp(name, "Hermes-2") ? PREP_MPT : !strcmp(name, "internlm2-chat") ? PREP_INTERNLM : PREP_INTERNVL2_5;
    c->prep = pp->internvl;
    c->prep.min_num = 1;
    c->prep.use_thumbnail = true;
    int64_t s = cfg->force_image_size > 0 ? cfg->force_image_size : cfg->vision.image_size;
    int64_t patch = cfg->vision.patch_size;
    if (s <= 0 || patch <= 0 || cfg->downsample_ratio <= 0)
        return qv_fail(QV_ERR_INVALID, "%s: cannot derive the image tokens per tile (image size %lld, patch %lld, "
                       "downsample_ratio %g)", cfg->path, (long long)s, (long long)patch, cfg->downsample_ratio);
    double g = (double)(s / patch);
    c->num_image_token = (int64_t)(g * g * (cfg->downsample_ratio * cfg->downsample_ratio));
    c->tok_pad = qv_tokenizer_pad_id(c->tok);
    char *dir = qv_path_dirname(cfg->path);
    if (!dir)
        return qv_fail(QV_ERR_NOMEM, "out of memory (path)");
    bool left;
    st = calib_tokenizer_settings(dir, &c->max_len, &left);
    qv_free(dir);
    return st;
}

qv_status qv_calib_build_internvl(const qv_model_config *cfg, qv_tokenizer *tok, const qv_preprocessor *pp,
                                  const qv_calib_items *items, const qv_calib_options *opt, qv_calib_batch *out)
{
    memset(out, 0, sizeof *out);
    ivl c = {.items = items, .opt = opt, .tok = tok};
    calib_acc_init(&c.acc);
    qv_status st = setup(&c, cfg, pp);
    int32_t ctx_id = qv_tokenizer_token_to_id(tok, "<IMG_CONTEXT>");
    if (st == QV_OK && ctx_id < 0)
        st = qv_fail(QV_ERR_INVALID, "%s: the tokenizer has no <IMG_CONTEXT> token", cfg->path);
    for (size_t k = 0; st == QV_OK && k < items->n; k++) {
        bool skipped;
        st = build_item(&c, &items->file->items[items->order[k]], &skipped);
        if (st == QV_OK)
            calib_progress(opt, k + 1, items->n);
    }
    qv_pad_rule rule = calib_pad_rule(opt, cfg->family);
    out->family = cfg->family;
    out->pad_rule = rule;
    int64_t pad = rule == QV_PAD_RULE_MBQ ? 0 : calib_pad_id(tok);
    if (st == QV_OK)
        st = calib_collate(out, &c.acc, pad, false, rule == QV_PAD_RULE_MBQ ? CALIB_MASK_NE_PAD : CALIB_MASK_LENGTH);
    if (st == QV_OK)
        st = calib_transform(out, tok, opt, pad);
    if (st == QV_OK)
        st = calib_finish_masks(out, ctx_id, &c.acc);
    if (st == QV_OK) {
        calib_acc_move(&c.acc, out);
        int64_t n = 0;
        for (size_t i = 0; i < out->n_images; i++)
            n += out->images[i].px.n_tiles;
        out->n_tiles = n;
        out->image_flags = qv_calloc((size_t)(n ? n : 1), sizeof(int64_t), "image_flags");
        if (!out->image_flags)
            st = QV_ERR_NOMEM;
        for (size_t i = 0, k = 0; st == QV_OK && i < out->n_images; i++)
            for (int j = 0; j < out->images[i].px.n_tiles; j++)
                out->image_flags[k++] = out->images[i].text_only ? 0 : 1;
    }
    calib_acc_free(&c.acc);
    if (st != QV_OK)
        qv_calib_batch_free(out);
    return st;
}
