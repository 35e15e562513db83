/* test_calib_batch.c — the calibration batch of every fixture model against the reference's
 * goldens (fixtures README §5, §13.4, §14.2, §15.2: ids, labels, masks, order, padding layout,
 * prompt strings, exact), both InternVL3 padding rules, both Qwen2-VL position rules, LLaVA's
 * pre- and post-splice tensors; the §7.4 few-shot and §7.5 interleave transforms against
 * expectations built here from the goldens by the spec's rules (concatenate trimmed rows,
 * re-pad with 0; for interleave the pieces of a small hand-made pile file in the order
 * numpy.random.default_rng(42).permutation gives); §7.6 pile blocks; bad items. */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib/batch.h"
#include "calib/batch_internal.h"
#include "config/run_config.h"
#include "io/safetensors.h"
#include "tok/tokenizer.h"
#include "util/testutil.h"

/* ---- helpers ---------------------------------------------------------------------------------- */

static void build_ex(const char *model, const char *family, const char *extra, const char *data_path,
                     const qv_calib_run_options *ro, qv_calib_batch *b, qv_status want)
{
    char models[4096], *yaml = NULL;
    snprintf(models, sizeof models, "%s", qt_fixture("models"));
    char images[4096];
    snprintf(images, sizeof images, "%s", qt_fixture("calib/images"));
    char data[4096];
    snprintf(data, sizeof data, "%s", data_path ? data_path : qt_fixture("calib/captions_sharegpt4v.json"));
    cr_assert(asprintf(&yaml,
                       "model: %s\nmodel_args: pretrained=\"%s/%s\"\ncalib_data: sharegpt4v\n%s"
                       "data_path: %s\nimage_folder: %s\n%s",
                       family, models, model, extra && strstr(extra, "n_samples:") ? "" : "n_samples: 4\n", data,
                       images, extra ? extra : "") > 0);
    qv_run_config *runs = NULL;
    size_t n = 0;
    cr_assert_eq(qv_run_config_parse(yaml, strlen(yaml), "test.yaml", &runs, &n), QV_OK, "%s", qv_last_error());
    qv_status st = qv_calib_from_config(&runs[0], ro, b);
    cr_assert_eq(st, want, "%s: %s", model, st ? qv_last_error() : "succeeded");
    qv_run_configs_free(runs, n);
    free(yaml);
}

static void build(const char *model, const char *family, const char *extra, qv_calib_batch *b)
{
    build_ex(model, family, extra, NULL, NULL, b, QV_OK);
}

/* A golden tensor as int64 (I64 or BOOL), with its shape. */
static int64_t *golden(const char *model, const char *file, const char *name, int64_t *d0, int64_t *d1)
{
    char rel[512];
    snprintf(rel, sizeof rel, "goldens/%s/%s", model, file);
    qv_st_file *f = qt_open_st(rel);
    qv_tensor t;
    cr_assert_eq(qv_st_get(f, name, &t), QV_OK, "%s", qv_last_error());
    size_t n = (size_t)qv_tensor_numel(&t);
    int64_t *v = malloc((n ? n : 1) * sizeof *v);
    cr_assert_eq(qv_convert(v, QV_I64, t.data, t.dtype, n), QV_OK);
    if (d0)
        *d0 = t.shape[0];
    if (d1)
        *d1 = t.ndim > 1 ? t.shape[1] : 1;
    qv_st_close(f);
    return v;
}

static void expect_i64(const int64_t *got, const int64_t *want, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(got[i], want[i], "%s[%zu]: %lld, expected %lld", what, i, (long long)got[i], (long long)want[i]);
}

static void expect_u8(const uint8_t *got, const int64_t *want, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        cr_assert_eq((int64_t)got[i], want[i], "%s[%zu]", what, i);
}

/* Compares the [B, L] tensors of a batch with a golden file's (same names). */
static void expect_rows(const qv_calib_batch *b, const char *model, const char *file, bool with_ids)
{
    int64_t B, L;
    int64_t *lab = golden(model, file, "labels", &B, &L);
    cr_assert_eq(b->n_rows, B, "%s rows", model);
    cr_assert_eq(b->len, L, "%s length", model);
    size_t n = (size_t)(B * L);
    expect_i64(b->labels, lab, n, "labels");
    free(lab);
    if (with_ids) {
        int64_t *ids = golden(model, file, "input_ids", NULL, NULL);
        expect_i64(b->input_ids, ids, n, "input_ids");
        free(ids);
    }
    const char *masks[] = {"attention_mask", "vision_mask", "caption_mask"};
    const uint8_t *got[] = {b->attention_mask, b->vision_mask, b->caption_mask};
    for (int m = 0; m < 3; m++) {
        int64_t *g = golden(model, file, masks[m], NULL, NULL);
        expect_u8(got[m], g, n, masks[m]);
        free(g);
    }
}

/* calib_batch.json's prompts_as_tokenized, normalised to qvlm's compact form. */
static void expect_prompts(const qv_calib_batch *b, const char *model, const char *json)
{
    char rel[512];
    snprintf(rel, sizeof rel, "goldens/%s/%s", model, json);
    json_object *j = json_object_from_file(qt_fixture(rel)), *ps, *ids;
    cr_assert_not_null(j);
    cr_assert(json_object_object_get_ex(j, "prompts_as_tokenized", &ps));
    cr_assert(json_object_object_get_ex(j, "sample_ids_in_batch_order", &ids));
    cr_assert_eq((size_t)json_object_array_length(ps), b->n_samples);
    for (size_t i = 0; i < b->n_samples; i++) {
        const char *g = json_object_get_string(json_object_array_get_idx(ps, i));
        /* golden spellings: 256 literal <IMG_CONTEXT> (InternVL2), "<IMG_CONTEXT>x256" (InternVL3),
           "<image:-200>" (LLaVA) */
        char *norm = malloc(strlen(g) + 1), *w = norm;
        static const char ctx[] = "<IMG_CONTEXT>", ph[] = "<image:-200>";
        for (const char *p = g; *p;) {
            if (!strncmp(p, ph, sizeof ph - 1)) {
                w += sprintf(w, "<image>");
                p += sizeof ph - 1;
            } else if (!strncmp(p, ctx, sizeof ctx - 1) && !strncmp(p + 13, ctx, sizeof ctx - 1)) {
                size_t k = 0;
                while (!strncmp(p + 13 * k, ctx, 13))
                    k++;
                w += sprintf(w, "<IMG_CONTEXT>x%zu", k);
                p += 13 * k;
            } else {
                *w++ = *p++;
            }
        }
        *w = 0;
        cr_assert_str_eq(b->prompts[i], norm, "%s prompt %zu", model, i);
        cr_assert_str_eq(b->sample_ids[i], json_object_get_string(json_object_array_get_idx(ids, i)));
        free(norm);
    }
    json_object_put(j);
}

static int64_t golden_len(const char *model, const char *json, const char *key, size_t i)
{
    char rel[512];
    snprintf(rel, sizeof rel, "goldens/%s/%s", model, json);
    json_object *j = json_object_from_file(qt_fixture(rel)), *v;
    cr_assert(json_object_object_get_ex(j, key, &v));
    int64_t r = json_object_get_int64(json_object_array_get_idx(v, i));
    json_object_put(j);
    return r;
}

/* ---- the goldens ------------------------------------------------------------------------------ */

Test(calib_batch, internvl2_qwen2_hermes2)
{
    qv_calib_batch b;
    build("internvl2-qwen2-tiny", "internvl2", NULL, &b);
    expect_rows(&b, "internvl2-qwen2-tiny", "calib_ids.safetensors", true);
    expect_prompts(&b, "internvl2-qwen2-tiny", "calib_batch.json");
    int64_t *flags = golden("internvl2-qwen2-tiny", "calib_ids.safetensors", "image_flags", NULL, NULL);
    cr_assert_eq(b.n_tiles, 4);
    expect_i64(b.image_flags, flags, 4, "image_flags");
    free(flags);
    for (int r = 0; r < 4; r++)
        cr_assert_eq(b.row_len[r], golden_len("internvl2-qwen2-tiny", "calib_batch.json", "seq_lengths", r));
    cr_assert_eq(b.pad_rule, QV_PAD_RULE_MBQ);
    cr_assert(!b.left_padded);
    cr_assert_eq(b.n_images, 4);
    cr_assert_eq(b.images[0].px.n_tiles, 1);
    cr_assert_eq(b.images[0].w, 301); /* synth_gray_301x451 first (calib-3) */
    cr_assert_eq(b.n_notes, 0, "%s", b.n_notes ? b.notes[0] : "");
    qv_calib_batch_free(&b);
}

Test(calib_batch, internvl2_internlm2_chat)
{
    qv_calib_batch b;
    build("internvl2-internlm2-tiny", "internvl2", NULL, &b);
    expect_rows(&b, "internvl2-internlm2-tiny", "calib_ids.safetensors", true);
    expect_prompts(&b, "internvl2-internlm2-tiny", "calib_batch.json");
    cr_assert_eq(b.input_ids[0], 1, "InternLM2 rows start with <s>");
    qv_calib_batch_free(&b);
}

Test(calib_batch, internvl3_both_padding_rules)
{
    qv_calib_batch b;
    build("internvl3-tiny", "internvl3", NULL, &b); /* default: length (pad <|endoftext|>) */
    cr_assert_eq(b.pad_rule, QV_PAD_RULE_LENGTH);
    expect_rows(&b, "internvl3-tiny/pad_endoftext", "calib_ids.safetensors", true);
    expect_prompts(&b, "internvl3-tiny/pad_endoftext", "calib_batch.json");
    cr_assert_eq(b.input_ids[0 * b.len + 406], 2000, "padding is <|endoftext|>");
    qv_calib_batch_free(&b);
    build("internvl3-tiny", "internvl3", "pad_rule: mbq\n", &b); /* the reference's collator */
    cr_assert_eq(b.pad_rule, QV_PAD_RULE_MBQ);
    expect_rows(&b, "internvl3-tiny", "calib_ids.safetensors", true);
    expect_prompts(&b, "internvl3-tiny", "calib_batch.json");
    cr_assert_eq(b.input_ids[0 * b.len + 406], 0, "padding is id 0");
    qv_calib_batch_free(&b);
}

Test(calib_batch, qwen2vl_rows_and_both_position_rules)
{
    const char *m = "qwen2-vl-tiny", *f = "calib_ids.safetensors";
    qv_calib_batch b;
    build(m, "qwen2_vl", NULL, &b);
    expect_rows(&b, m, f, true);
    expect_prompts(&b, m, "calib_batch.json");
    cr_assert(b.left_padded);
    size_t n3 = (size_t)(3 * b.n_rows * b.len);
    int64_t *pos = golden(m, f, "position_ids", NULL, NULL), *mpos = golden(m, f, "mrope.position_ids", NULL, NULL);
    int64_t *deltas = golden(m, f, "mrope.rope_deltas", NULL, NULL), *grid = golden(m, f, "image_grid_thw", NULL, NULL);
    expect_i64(b.position_ids, pos, n3, "position_ids (MBQ: 0..L-1)");
    expect_i64(b.mrope_position_ids, mpos, n3, "mrope.position_ids (get_rope_index)");
    expect_i64(b.mrope_rope_deltas, deltas, 4, "mrope.rope_deltas");
    expect_i64(b.image_grid_thw, grid, 12, "image_grid_thw");
    int64_t rows = 0;
    for (size_t i = 0; i < b.n_images; i++)
        rows += b.images[i].px.shape[0];
    cr_assert_eq(rows, 3508, "pixel rows (fixtures §13.4)");
    free(pos), free(mpos), free(deltas), free(grid);
    qv_calib_batch_free(&b);
}

Test(calib_batch, llava_onevision_pre_and_post_splice)
{
    const char *m = "llava-onevision-qwen2-tiny", *f = "calib_ids.safetensors";
    qv_calib_batch b;
    build(m, "llava_onevision", NULL, &b);
    expect_rows(&b, m, f, false); /* post-splice: labels and masks */
    expect_prompts(&b, m, "calib_batch.json");
    int64_t B, Lp;
    int64_t *ids = golden(m, f, "input_ids_pre_splice", &B, &Lp), *lab = golden(m, f, "labels_pre_splice", NULL, NULL);
    int64_t *am = golden(m, f, "attention_mask_pre_splice", NULL, NULL);
    cr_assert_eq(b.pre_len, Lp);
    expect_i64(b.input_ids_pre, ids, (size_t)(B * Lp), "input_ids_pre_splice");
    expect_i64(b.labels_pre, lab, (size_t)(B * Lp), "labels_pre_splice");
    expect_u8(b.attention_mask_pre, am, (size_t)(B * Lp), "attention_mask_pre_splice");
    cr_assert_eq(b.image_span, 730);
    /* the splice: each -200 at pre-splice position p becomes 730 positions starting at p */
    for (int64_t r = 0; r < B; r++) {
        int64_t p = 0;
        while (ids[r * Lp + p] != QV_LLAVA_IMAGE_INDEX)
            p++;
        cr_assert_eq(b.splice[2 * r], r);
        cr_assert_eq(b.splice[2 * r + 1], p);
        for (int64_t t = 0; t < b.len; t++)
            cr_assert_eq(b.vision_mask[r * b.len + t], t >= p && t < p + 730);
    }
    cr_assert_eq(b.images[1].w, 640);
    cr_assert_eq(b.images[1].h, 427);
    free(ids), free(lab), free(am);
    qv_calib_batch_free(&b);
}

/* ---- §7.4 few-shot ------------------------------------------------------------------------------ */

/* Trimmed golden row r (positions its attention mask keeps). */
static int64_t trim(const int64_t *v, const int64_t *am, int64_t L, int64_t r, int64_t *out)
{
    int64_t n = 0;
    for (int64_t t = 0; t < L; t++)
        if (am[r * L + t])
            out[n++] = v[r * L + t];
    return n;
}

Test(calib_batch, few_shot_internvl2_pairs_rows_and_repads_with_0)
{
    const char *m = "internvl2-qwen2-tiny", *f = "calib_ids.safetensors";
    int64_t B, L;
    int64_t *ids = golden(m, f, "input_ids", &B, &L), *lab = golden(m, f, "labels", NULL, NULL);
    int64_t *am = golden(m, f, "attention_mask", NULL, NULL);
    qv_calib_batch b;
    build(m, "internvl2", "few_shot_format: true\n", &b);
    cr_assert_eq(b.n_rows, 2);
    int64_t a[1024], c[1024], la[1024], lc[1024];
    int64_t NL = 0;
    for (int k = 0; k < 2; k++)
        NL = QV_MAX(NL, trim(ids, am, L, 2 * k, a) + trim(ids, am, L, 2 * k + 1, c));
    cr_assert_eq(b.len, NL);
    for (int k = 0; k < 2; k++) {
        int64_t na = trim(ids, am, L, 2 * k, a), nc = trim(ids, am, L, 2 * k + 1, c);
        trim(lab, am, L, 2 * k, la), trim(lab, am, L, 2 * k + 1, lc);
        for (int64_t t = 0; t < NL; t++) {
            int64_t wid = t < na ? a[t] : t < na + nc ? c[t - na] : 0;
            int64_t wlab = t < na ? la[t] : t < na + nc ? lc[t - na] : -100;
            cr_assert_eq(b.input_ids[k * NL + t], wid, "row %d pos %lld", k, (long long)t);
            cr_assert_eq(b.labels[k * NL + t], wlab);
            cr_assert_eq(b.attention_mask[k * NL + t], t < na + nc);
            cr_assert_eq(b.vision_mask[k * NL + t], wid == 2005 && t < na + nc);
            cr_assert_eq(b.caption_mask[k * NL + t], wlab != -100);
        }
    }
    cr_assert_eq(b.n_tiles, 4, "image tensors keep their order and number");
    cr_assert_eq(b.n_samples, 4);
    free(ids), free(lab), free(am);
    qv_calib_batch_free(&b);
}

Test(calib_batch, few_shot_odd_count_drops_the_last_sample)
{
    qv_calib_batch b;
    build("internvl2-qwen2-tiny", "internvl2", "few_shot_format: true\nn_samples: 3\n", &b);
    cr_assert_eq(b.n_rows, 1);
    cr_assert_eq(b.len, 338 + 332);
    cr_assert_eq(b.n_images, 3, "the dropped sample's image stays, as in the reference");
    qv_calib_batch_free(&b);
}

Test(calib_batch, few_shot_qwen2vl_left_pads_with_0_and_chains_mrope)
{
    const char *m = "qwen2-vl-tiny", *f = "calib_ids.safetensors";
    int64_t B, L;
    int64_t *ids = golden(m, f, "input_ids", &B, &L), *am = golden(m, f, "attention_mask", NULL, NULL);
    int64_t *mpos = golden(m, f, "mrope.position_ids", NULL, NULL);
    qv_calib_batch b;
    build(m, "qwen2_vl", "few_shot_format: true\n", &b);
    cr_assert_eq(b.n_rows, 2);
    int64_t a[1024], c[1024];
    int64_t n0 = trim(ids, am, L, 0, a) + trim(ids, am, L, 1, c), n1 = trim(ids, am, L, 2, a) + trim(ids, am, L, 3, c);
    int64_t NL = QV_MAX(n0, n1);
    cr_assert_eq(b.len, NL);
    for (int k = 0; k < 2; k++) {
        int64_t na = trim(ids, am, L, 2 * k, a), nc = trim(ids, am, L, 2 * k + 1, c), off = NL - na - nc;
        for (int64_t t = 0; t < NL; t++) {
            int64_t want = t < off ? 0 : t < off + na ? a[t - off] : c[t - off - na];
            cr_assert_eq(b.input_ids[k * NL + t], want, "row %d pos %lld", k, (long long)t);
            cr_assert_eq(b.attention_mask[k * NL + t], t >= off);
            for (int s = 0; s < 3; s++)
                cr_assert_eq(b.position_ids[(s * 2 + k) * NL + t], t);
        }
        /* get_rope_index of a concatenation: A's positions, then B's shifted by max(A) + 1 */
        for (int s = 0; s < 3; s++) {
            int64_t pa[1024], pc[1024], ma = -1;
            int64_t ka = trim(mpos + s * B * L, am, L, 2 * k, pa);
            trim(mpos + s * B * L, am, L, 2 * k + 1, pc);
            for (int ss = 0; ss < 3; ss++) {
                int64_t tmp[1024];
                int64_t kk = trim(mpos + ss * B * L, am, L, 2 * k, tmp);
                for (int64_t i = 0; i < kk; i++)
                    ma = QV_MAX(ma, tmp[i]);
            }
            for (int64_t t = 0; t < NL; t++) {
                int64_t want = t < off ? 0 : t < off + ka ? pa[t - off] : pc[t - off - ka] + ma + 1;
                cr_assert_eq(b.mrope_position_ids[(s * 2 + k) * NL + t], want, "stream %d row %d pos %lld", s, k,
                             (long long)t);
            }
        }
    }
    free(ids), free(am), free(mpos);
    qv_calib_batch_free(&b);
}

Test(calib_batch, few_shot_llava_splices_two_images_per_row)
{
    const char *m = "llava-onevision-qwen2-tiny", *f = "calib_ids.safetensors";
    int64_t B, L, Lp;
    int64_t *pre = golden(m, f, "input_ids_pre_splice", &B, &Lp), *pam = golden(m, f, "attention_mask_pre_splice", NULL, NULL);
    int64_t *lab = golden(m, f, "labels", NULL, &L), *am = golden(m, f, "attention_mask", NULL, NULL);
    int64_t *vm = golden(m, f, "vision_mask", NULL, NULL);
    qv_calib_batch b;
    build(m, "llava_onevision", "few_shot_format: true\n", &b);
    cr_assert_eq(b.n_rows, 2);
    for (int k = 0; k < 2; k++) {
        int64_t a[2048], c[2048], va[2048], vc[2048];
        int64_t pa = trim(pre, pam, Lp, 2 * k, a), pc = trim(pre, pam, Lp, 2 * k + 1, c);
        for (int64_t t = 0; t < pa + pc; t++)
            cr_assert_eq(b.input_ids_pre[k * b.pre_len + t], t < pa ? a[t] : c[t - pa]);
        int64_t na = trim(lab, am, L, 2 * k, a), nc = trim(lab, am, L, 2 * k + 1, c);
        trim(vm, am, L, 2 * k, va), trim(vm, am, L, 2 * k + 1, vc);
        for (int64_t t = 0; t < b.len; t++) {
            bool in = t < na + nc;
            cr_assert_eq(b.labels[k * b.len + t], !in ? -100 : t < na ? a[t] : c[t - na], "row %d pos %lld", k,
                         (long long)t);
            cr_assert_eq(b.vision_mask[k * b.len + t], in && (t < na ? va[t] : vc[t - na]), "row %d pos %lld", k,
                         (long long)t);
            cr_assert_eq(b.attention_mask[k * b.len + t], in);
        }
        cr_assert_eq(b.splice[4 * k + 3], na + 70, "second image of row %d after the first sample", k);
    }
    free(pre), free(pam), free(lab), free(am), free(vm);
    qv_calib_batch_free(&b);
}

/* ---- §7.5 interleave ---------------------------------------------------------------------------- */

/* A JSON Lines pile of 6 documents: rows 0, 2, 3, 5 hold more than 512 tokens, rows 1 and 4 few.
 * numpy.random.default_rng(42).permutation(6) = [3, 2, 5, 4, 1, 0], so the pool of long
 * documents is rows 3, 2, 5, 0 and interleave uses pieces 0 and 2: rows 3 and 5. */
static char *long_doc(int row)
{
    size_t cap = 16384, n = 0;
    char *s = malloc(cap);
    n += (size_t)sprintf(s + n, "  Document %d begins here.", row);
    for (int i = 0; i < 700; i++)
        n += (size_t)sprintf(s + n, " d%dw%d", row, i);
    sprintf(s + n, "  ");
    return s;
}

static char *write_pile(const char *dir)
{
    char *path = NULL;
    cr_assert(asprintf(&path, "%s/pile.jsonl", dir) > 0);
    FILE *fp = fopen(path, "w");
    cr_assert_not_null(fp);
    for (int r = 0; r < 6; r++) {
        if (r == 1 || r == 4) {
            fprintf(fp, "{\"text\": \"short document %d\", \"meta\": {}}\n", r);
            continue;
        }
        char *d = long_doc(r);
        fprintf(fp, "{\"text\": \"%s\"}\n", d);
        free(d);
    }
    fclose(fp);
    return path;
}

static void expect_piece(qv_tokenizer *tok, const int64_t *got, int row)
{
    char *d = long_doc(row);
    size_t b = 0, e = strlen(d);
    while (d[b] == ' ')
        b++;
    while (e > b && d[e - 1] == ' ')
        e--;
    qv_vec v;
    qv_vec_init(&v, sizeof(int32_t));
    cr_assert_eq(qv_tokenizer_encode(tok, d + b, e - b, true, &v), QV_OK);
    cr_assert_gt(v.len, 512, "document %d must be longer than 512 tokens", row);
    for (int t = 0; t < 512; t++)
        cr_assert_eq(got[t], QV_VEC_AT(&v, int32_t, t), "piece of document %d, token %d", row, t);
    int32_t ids32[512];
    for (int t = 0; t < 512; t++)
        ids32[t] = (int32_t)got[t];
    char *text;
    size_t len;
    cr_assert_eq(qv_tokenizer_decode(tok, ids32, 512, true, &text, &len), QV_OK);
    char head[64];
    snprintf(head, sizeof head, "Document %d begins here.", row);
    cr_assert(strstr(text, head) != NULL, "decoded piece starts with \"%s\": %.60s", head, text);
    free(text);
    qv_vec_free(&v);
    free(d);
}

Test(calib_batch, interleave_inserts_pile_pieces_0_and_2)
{
    const char *m = "internvl2-qwen2-tiny", *f = "calib_ids.safetensors";
    char *dir = qt_tmpdir(), *pile = write_pile(dir), extra[4200];
    snprintf(extra, sizeof extra, "interleave_format: true\ntext_data_path: %s\n", pile);
    int64_t B, L;
    int64_t *ids = golden(m, f, "input_ids", &B, &L), *lab = golden(m, f, "labels", NULL, NULL);
    int64_t *am = golden(m, f, "attention_mask", NULL, NULL);
    qv_calib_batch b;
    build(m, "internvl2", extra, &b);
    qv_tokenizer *tok;
    cr_assert_eq(qv_tokenizer_load(qt_fixture("models/internvl2-qwen2-tiny"), &tok), QV_OK);
    cr_assert_eq(b.n_rows, 2);
    const int pieces[2] = {3, 5};
    for (int k = 0; k < 2; k++) {
        int64_t a[1024], c[1024], la[1024], lc[1024];
        int64_t na = trim(ids, am, L, 2 * k, a), nc = trim(ids, am, L, 2 * k + 1, c);
        trim(lab, am, L, 2 * k, la), trim(lab, am, L, 2 * k + 1, lc);
        const int64_t *row = b.input_ids + k * b.len, *rlab = b.labels + k * b.len;
        expect_i64(row, a, (size_t)na, "first sample");
        expect_i64(rlab, la, (size_t)na, "first sample labels");
        expect_piece(tok, row + na, pieces[k]);
        expect_i64(rlab + na, row + na, 512, "pure text is its own label");
        expect_i64(row + na + 512, c, (size_t)nc, "second sample");
        expect_i64(rlab + na + 512, lc, (size_t)nc, "second sample labels");
        for (int64_t t = 0; t < b.len; t++) {
            bool in = t < na + 512 + nc;
            cr_assert_eq(b.attention_mask[k * b.len + t], in);
            if (!in)
                cr_assert_eq(row[t], 0, "re-padded with 0");
            cr_assert_eq(b.caption_mask[k * b.len + t], rlab[t] != -100);
        }
    }
    qv_tokenizer_free(tok);
    free(ids), free(lab), free(am), free(pile), free(dir);
    qv_calib_batch_free(&b);
}

Test(calib_batch, interleave_internlm2_pieces_carry_bos)
{
    char *dir = qt_tmpdir(), *pile = write_pile(dir), extra[4200];
    snprintf(extra, sizeof extra, "interleave_format: true\ntext_data_path: %s\nn_samples: 2\n", pile);
    qv_calib_batch b;
    build("internvl2-internlm2-tiny", "internvl2", extra, &b);
    cr_assert_eq(b.n_rows, 1);
    qv_tokenizer *tok;
    cr_assert_eq(qv_tokenizer_load(qt_fixture("models/internvl2-internlm2-tiny"), &tok), QV_OK);
    /* first sample = golden row 0 (342 tokens, §5); the piece (document 3) starts with <s> */
    cr_assert_eq(b.input_ids[342], 1);
    expect_piece(tok, b.input_ids + 342, 3);
    qv_tokenizer_free(tok);
    free(pile), free(dir);
    qv_calib_batch_free(&b);
}

Test(calib_batch, interleave_needs_enough_long_documents)
{
    char *dir = qt_tmpdir(), *pile = write_pile(dir), extra[4200];
    /* 8 samples need pieces 0, 2, 4, 6: the file has 4 long documents */
    snprintf(extra, sizeof extra, "interleave_format: true\ntext_data_path: %s\nn_samples: 8\n", pile);
    qv_calib_run_options ro = {.allow_repeat = true};
    qv_calib_batch b;
    build_ex("internvl2-qwen2-tiny", "internvl2", extra, NULL, &ro, &b, QV_ERR_INVALID);
    cr_assert(strstr(qv_last_error(), "pile.jsonl") && strstr(qv_last_error(), "longer than 512"), "%s",
              qv_last_error());
    free(pile), free(dir);
}

/* ---- §7.6 pile blocks --------------------------------------------------------------------------- */

Test(calib_batch, pileval_blocks)
{
    /* 8 rows; default_rng(42).permutation(8) = [3, 4, 2, 7, 6, 1, 5, 0]. Row 2 is longer than 512
       tokens and row 4 is blank after strip: both skipped, so n_samples 4 keeps rows 3, 7, 6, 1. */
    char *dir = qt_tmpdir(), *path = NULL;
    cr_assert(asprintf(&path, "%s/pile.jsonl", dir) > 0);
    FILE *fp = fopen(path, "w");
    char *texts[8];
    for (int r = 0; r < 8; r++) {
        char *s = malloc(16384);
        size_t n = 0;
        if (r == 4)
            n += (size_t)sprintf(s, "   ");
        else
            for (int i = 0; i < (r == 2 ? 700 : 90); i++)
                n += (size_t)sprintf(s + n, "%sr%dt%d", i ? " " : "", r, i);
        texts[r] = s;
        fprintf(fp, "{\"text\": \"%s\"}\n", s);
    }
    fclose(fp);
    qv_tokenizer *tok;
    cr_assert_eq(qv_tokenizer_load(qt_fixture("models/qwen2-tiny"), &tok), QV_OK);
    qv_text_docs docs;
    cr_assert_eq(qv_textdata_open(path, &docs), QV_OK);
    qv_calib_batch b;
    cr_assert_eq(qv_calib_build_pile(tok, &docs, 42, 4, &b), QV_OK, "%s", qv_last_error());
    qv_vec stream;
    qv_vec_init(&stream, sizeof(int32_t));
    const int kept[4] = {3, 7, 6, 1};
    for (int i = 0; i < 4; i++) {
        size_t before = stream.len;
        cr_assert_eq(qv_tokenizer_encode(tok, texts[kept[i]], strlen(texts[kept[i]]), true, &stream), QV_OK);
        cr_assert_leq(stream.len - before, 512);
    }
    cr_assert_eq(b.n_rows, (int64_t)(stream.len / 512));
    cr_assert_geq(b.n_rows, 1);
    cr_assert_eq(b.len, 512);
    for (int64_t i = 0; i < b.n_rows * 512; i++) {
        cr_assert_eq(b.input_ids[i], QV_VEC_AT(&stream, int32_t, i));
        cr_assert_eq(b.labels[i], b.input_ids[i]);
    }
    cr_assert_null(b.attention_mask);
    cr_assert_null(b.vision_mask);
    qv_calib_batch_free(&b);
    qv_textdata_close(&docs);
    qv_tokenizer_free(tok);
    qv_vec_free(&stream);
    for (int r = 0; r < 8; r++)
        free(texts[r]);
    free(path), free(dir);
}

/* ---- selection and bad items -------------------------------------------------------------------- */

Test(calib_batch, n_samples_above_the_file_needs_allow_repeat)
{
    qv_calib_batch b;
    build_ex("internvl2-qwen2-tiny", "internvl2", "n_samples: 6\n", NULL, NULL, &b, QV_ERR_INVALID);
    cr_assert(strstr(qv_last_error(), "captions_sharegpt4v.json") && strstr(qv_last_error(), "allow-repeat"), "%s",
              qv_last_error());
    qv_calib_run_options ro = {.allow_repeat = true};
    build_ex("internvl2-qwen2-tiny", "internvl2", "n_samples: 6\n", NULL, &ro, &b, QV_OK);
    cr_assert_eq(b.n_rows, 6);
    for (int64_t t = 0; t < b.len; t++) { /* wraps: sample 4 = sample 0 (calib-3), 5 = 1 */
        cr_assert_eq(b.input_ids[4 * b.len + t], b.input_ids[0 * b.len + t]);
        cr_assert_eq(b.labels[5 * b.len + t], b.labels[1 * b.len + t]);
    }
    cr_assert_str_eq(b.sample_ids[4], "calib-3");
    qv_calib_batch_free(&b);
}

static char *write_captions(const char *dir, const char *name, const char *json)
{
    char *path = NULL;
    cr_assert(asprintf(&path, "%s/%s", dir, name) > 0);
    FILE *fp = fopen(path, "w");
    cr_assert_not_null(fp);
    fputs(json, fp);
    fclose(fp);
    return path;
}

static void on_skip(void *ctx, const char *msg)
{
    int *n = ctx;
    (*n)++;
    cr_assert(strstr(msg, "bad.json") && strstr(msg, "entry 1") && strstr(msg, "nope.jpg"), "%s", msg);
}

Test(calib_batch, missing_image_is_an_error_or_a_reported_skip)
{
    char *dir = qt_tmpdir();
    char *p = write_captions(
        dir, "bad.json",
        "[{\"id\": \"a\", \"image\": \"rocket.jpg\", \"conversations\": [{\"from\": \"human\", \"value\": \"<image>\\nQ\"},"
        " {\"from\": \"gpt\", \"value\": \"A\"}]},\n"
        " {\"id\": \"b\", \"image\": \"nope.jpg\", \"conversations\": [{\"from\": \"human\", \"value\": \"Q\"},"
        " {\"from\": \"gpt\", \"value\": \"A\"}]}]\n");
    qv_calib_batch b;
    build_ex("internvl2-qwen2-tiny", "internvl2", "n_samples: 2\n", p, NULL, &b, QV_ERR_IO);
    const char *e = qv_last_error();
    cr_assert(strstr(e, "bad.json:2: entry 1 (id \"b\")") && strstr(e, "nope.jpg") && !strchr(e, '\n'), "%s", e);
    int skips = 0;
    qv_calib_run_options ro = {.skip_bad_images = true, .on_skip = on_skip, .ctx = &skips};
    build_ex("internvl2-qwen2-tiny", "internvl2", "n_samples: 2\n", p, &ro, &b, QV_OK);
    cr_assert_eq(skips, 1);
    cr_assert_eq(b.n_rows, 1);
    cr_assert_eq(b.n_images, 1);
    cr_assert_str_eq(b.sample_ids[0], "a");
    qv_calib_batch_free(&b);
    free(p), free(dir);
}

Test(calib_batch, qwen2vl_and_llava_items_need_an_image)
{
    char *dir = qt_tmpdir();
    char *p = write_captions(dir, "noimg.jsonl",
                             "{\"id\": \"t\", \"conversations\": [{\"from\": \"human\", \"value\": \"Q\"}, "
                             "{\"from\": \"gpt\", \"value\": \"A\"}]}\n");
    qv_calib_batch b;
    build_ex("qwen2-vl-tiny", "qwen2_vl", "n_samples: 1\n", p, NULL, &b, QV_ERR_INVALID);
    cr_assert(strstr(qv_last_error(), "noimg.jsonl:1: entry 0 (id \"t\")") && strstr(qv_last_error(), "no image"), "%s",
              qv_last_error());
    build_ex("llava-onevision-qwen2-tiny", "llava_onevision", "n_samples: 1\n", p, NULL, &b, QV_ERR_INVALID);
    cr_assert(strstr(qv_last_error(), "entry 0") && strstr(qv_last_error(), "no image"), "%s", qv_last_error());
    /* InternVL takes it: the white 224x224 stand-in, image_flags 0, no <img> in the prompt */
    build_ex("internvl2-qwen2-tiny", "internvl2", "n_samples: 1\n", p, NULL, &b, QV_OK);
    cr_assert_eq(b.n_tiles, 1);
    cr_assert_eq(b.image_flags[0], 0);
    cr_assert_null(strstr(b.prompts[0], "<img>"));
    cr_assert_eq(b.images[0].px.tiles_u8[0], 255);
    cr_assert_eq(b.n_notes, 1, "a note about the row without vision tokens (§11 item 7)");
    qv_calib_batch_free(&b);
    free(p), free(dir);
}

Test(calib_batch, roles_the_template_cannot_place_are_errors)
{
    char *dir = qt_tmpdir();
    char *p = write_captions(dir, "roles.json",
                             "[{\"image\": \"rocket.jpg\", \"conversations\": [{\"from\": \"human\", \"value\": \"Q\"}, "
                             "{\"from\": \"human\", \"value\": \"A\"}]}]\n");
    qv_calib_batch b;
    build_ex("internvl2-qwen2-tiny", "internvl2", "n_samples: 1\n", p, NULL, &b, QV_ERR_INVALID);
    cr_assert(strstr(qv_last_error(), "roles.json:1: entry 0: turn 1 is from \"human\", expected \"gpt\""), "%s",
              qv_last_error());
    free(p), free(dir);
}

Test(calib_batch, python_string_helpers)
{
    /* the label rules lean on str.split keeping empty pieces and on slice clipping */
    qv_vec v;
    const char *s = "a<|x|>b<|x|>";
    cr_assert_eq(calib_split(s, strlen(s), "<|x|>", &v), QV_OK);
    cr_assert_eq(v.len, 3);
    cr_assert_eq(QV_VEC_AT(&v, calib_span, 0).n, 1);
    cr_assert_eq(QV_VEC_AT(&v, calib_span, 1).s[0], 'b');
    cr_assert_eq(QV_VEC_AT(&v, calib_span, 2).n, 0);
    qv_vec_free(&v);
    int64_t a[5] = {1, 2, 3, 4, 5};
    calib_py_fill(a, 5, -1, CALIB_NO_LIMIT, 0); /* a[-1:] */
    cr_assert_eq(a[4], 0);
    cr_assert_eq(a[3], 4);
    calib_py_fill(a, 5, 3, 100, 9); /* a[3:100] */
    cr_assert(a[3] == 9 && a[4] == 9 && a[2] == 3);
    calib_py_fill(a, 5, 2, 1, 7); /* empty */
    cr_assert(a[1] == 2 && a[2] == 3);
    calib_py_fill(a, 5, 0, -4, 8); /* a[0:-4] = a[0:1] */
    cr_assert(a[0] == 8 && a[1] == 2);
    char *out;
    cr_assert_eq(calib_replace("x<image>y<image>", "<image>", "I", 1, &out), QV_OK);
    cr_assert_str_eq(out, "xIy<image>");
    free(out);
    cr_assert_eq(calib_compact_prompt("<img><IMG_CONTEXT><IMG_CONTEXT><IMG_CONTEXT></img><IMG_CONTEXT>", &out), QV_OK);
    cr_assert_str_eq(out, "<img><IMG_CONTEXT>x3</img><IMG_CONTEXT>");
    free(out);
}
