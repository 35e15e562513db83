/* test_tokenizer.c — tokenizers, chat templates, InternVL conversation formats and
 * `qvlm tokenize` against the reference goldens (fixtures README §3, §5, §13.2, §14.1-14.2):
 * ids must be equal, decoded text must be equal (no tolerance: tokenisation is exact). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fsutil.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "tok/template.h"
#include "tok/tokenizer.h"
#include "util/testutil.h"

static const char *const models[] = {"qwen2-tiny", "internvl2-qwen2-tiny", "internvl2-internlm2-tiny", "qwen2-vl-tiny",
                                     "internvl3-tiny"};

/* ---- helpers ------------------------------------------------------------------------------- */

static qv_tokenizer *load_tok(const char *model)
{
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s", model);
    qv_tokenizer *t = NULL;
    if (qv_tokenizer_load(qt_fixture(rel), &t) != QV_OK)
        cr_assert_fail("load %s: %s", model, qv_last_error());
    return t;
}

static qv_json *load_json(const char *rel)
{
    qv_json *j = NULL;
    if (qv_json_load_file(qt_fixture(rel), 0, &j) != QV_OK)
        cr_assert_fail("%s", qv_last_error());
    return j;
}

static qv_json *golden(const char *model)
{
    char rel[256];
    snprintf(rel, sizeof rel, "goldens/tokenizer/%s.json", model);
    return load_json(rel);
}

static const char *jstr(const qv_json *o, const char *key, size_t *len)
{
    qv_json *v = qv_json_get(o, key);
    cr_assert(qv_json_is_type(v, json_type_string), "missing string %s", key);
    if (len)
        *len = (size_t)json_object_get_string_len(v);
    return json_object_get_string(v);
}

static void encode(qv_tokenizer *t, const char *text, size_t len, bool add_special, qv_vec *ids)
{
    if (qv_tokenizer_encode(t, text, len, add_special, ids) != QV_OK)
        cr_assert_fail("encode: %s", qv_last_error());
}

/* ids[0..n) equal the JSON integer array `want` (first mismatch reported). */
static void expect_ids(const int32_t *ids, size_t n, const qv_json *want, const char *what)
{
    size_t wn = json_object_array_length((qv_json *)want);
    for (size_t i = 0; i < n && i < wn; i++) {
        int64_t w;
        cr_assert(qv_json_as_int(json_object_array_get_idx((qv_json *)want, i), &w));
        cr_assert_eq(ids[i], w, "%s: id %zu is %d, golden %lld", what, i, ids[i], (long long)w);
    }
    cr_assert_eq(n, wn, "%s: %zu ids, golden %zu", what, n, wn);
}

static char *render_chat(const char *model, const char *text, int n_images)
{
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s", model);
    qv_chat_template tpl;
    char *s = NULL;
    if (qv_chat_template_load(qt_fixture(rel), &tpl) != QV_OK || qv_chat_render_user(&tpl, text, n_images, &s) != QV_OK)
        cr_assert_fail("%s: chat template: %s", model, qv_last_error());
    qv_chat_template_free(&tpl);
    return s;
}

/* ---- golden ids and decoding --------------------------------------------------------------- */

/* Every case of a golden file (the 20 strings, the chat prompt, Qwen2-VL's special tokens). */
static void check_cases(const char *model)
{
    qv_tokenizer *t = load_tok(model);
    qv_json *g = golden(model), *cases = qv_json_get(g, "cases");
    size_t n = json_object_array_length(cases);
    cr_assert_geq(n, 21);
    for (size_t i = 0; i < n; i++) {
        qv_json *c = json_object_array_get_idx(cases, i);
        size_t len;
        const char *text = jstr(c, "text", &len), *name = jstr(c, "name", NULL);
        qv_vec ids;
        qv_vec_init(&ids, sizeof(int32_t));
        encode(t, text, len, true, &ids);
        char what[128];
        snprintf(what, sizeof what, "%s %s", model, name);
        expect_ids(ids.data, ids.len, qv_json_get(c, "ids"), what);
        qv_vec_free(&ids);
    }
    int64_t vs;
    cr_assert_eq(qv_json_int(g, "vocab_size_with_added", "golden", &vs), QV_OK);
    cr_assert_eq(qv_tokenizer_vocab_size(t), (size_t)vs, "%s: vocab size", model);
    qv_json_free(g);
    qv_tokenizer_free(t);
}

Test(tokenizer, golden_ids_qwen2) { check_cases("qwen2-tiny"); }
Test(tokenizer, golden_ids_internvl2_qwen2) { check_cases("internvl2-qwen2-tiny"); }
Test(tokenizer, golden_ids_internlm2) { check_cases("internvl2-internlm2-tiny"); }
Test(tokenizer, golden_ids_qwen2_vl) { check_cases("qwen2-vl-tiny"); }
Test(tokenizer, golden_ids_internvl3) { check_cases("internvl3-tiny"); }

/* BPE: `tokenizers` decode with specials kept; SentencePiece: sentencepiece's decode of the
 * ids without BOS (added tokens dropped). Decoding then re-encoding gives the same ids. */
Test(tokenizer, decode_matches_goldens)
{
    for (size_t m = 0; m < QV_ARRAY_LEN(models); m++) {
        qv_tokenizer *t = load_tok(models[m]);
        bool spm = qv_tokenizer_kind_of(t) == QV_TOKENIZER_SPM;
        qv_json *g = golden(models[m]), *cases = qv_json_get(g, "cases");
        for (size_t i = 0; i < json_object_array_length(cases); i++) {
            qv_json *c = json_object_array_get_idx(cases, i);
            size_t len, dl, wl;
            const char *text = jstr(c, "text", &len);
            const char *want = jstr(c, spm ? "decoded_sentencepiece_without_bos" : "decoded", &wl);
            qv_vec ids;
            qv_vec_init(&ids, sizeof(int32_t));
            encode(t, text, len, true, &ids);
            char *dec;
            const int32_t *p = ids.data;
            size_t skip = spm ? 1 : 0;
            cr_assert_eq(qv_tokenizer_decode(t, p + skip, ids.len - skip, spm, &dec, &dl), QV_OK, "%s", qv_last_error());
            cr_assert(dl == wl && !memcmp(dec, want, wl), "%s %s: decoded \"%s\", golden \"%s\"", models[m],
                      jstr(c, "name", NULL), dec, want);
            if (!spm) { /* BPE decode keeps every token, so it round-trips to the same ids */
                qv_vec again;
                qv_vec_init(&again, sizeof(int32_t));
                encode(t, dec, dl, true, &again);
                cr_assert(again.len == ids.len && !memcmp(again.data, ids.data, ids.len * sizeof(int32_t)),
                          "%s %s: re-encoding the decoded text changed the ids", models[m], jstr(c, "name", NULL));
                qv_vec_free(&again);
            }
            free(dec);
            qv_vec_free(&ids);
        }
        qv_json_free(g);
        qv_tokenizer_free(t);
    }
}

Test(tokenizer, decode_repairs_partial_utf8)
{
    qv_tokenizer *t = load_tok("qwen2-tiny");
    qv_vec ids;
    qv_vec_init(&ids, sizeof(int32_t));
    encode(t, "中", strlen("中"), false, &ids);
    cr_assert_gt(ids.len, 1, "a character outside the tiny vocabulary is several byte tokens");
    char *dec;
    cr_assert_eq(qv_tokenizer_decode(t, ids.data, 1, false, &dec, NULL), QV_OK);
    cr_assert_str_eq(dec, "\xEF\xBF\xBD");
    free(dec);
    int32_t bad = 5000;
    cr_assert_eq(qv_tokenizer_decode(t, &bad, 1, false, &dec, NULL), QV_ERR_INVALID);
    qv_vec_free(&ids);
    qv_tokenizer_free(t);
}

Test(tokenizer, special_tokens)
{
    static const struct {
        const char *model;
        int bos, eos, pad, img_context;
        bool adds_bos;
    } want[] = {
        {"qwen2-tiny", -1, 2002, 2000, -1, false},         {"internvl2-qwen2-tiny", -1, 2002, 2000, 2005, false},
        {"internvl2-internlm2-tiny", 1, 2, 2, 2008, true}, {"qwen2-vl-tiny", -1, 2002, 2000, -1, false},
        {"internvl3-tiny", -1, 2002, 2000, 2024, false},
    };
    for (size_t i = 0; i < QV_ARRAY_LEN(want); i++) {
        qv_tokenizer *t = load_tok(want[i].model);
        cr_assert_eq(qv_tokenizer_bos_id(t), want[i].bos, "%s bos", want[i].model);
        cr_assert_eq(qv_tokenizer_eos_id(t), want[i].eos, "%s eos", want[i].model);
        cr_assert_eq(qv_tokenizer_pad_id(t), want[i].pad, "%s pad", want[i].model);
        cr_assert_eq(qv_tokenizer_token_to_id(t, "<IMG_CONTEXT>"), want[i].img_context, "%s img", want[i].model);
        cr_assert_eq(qv_tokenizer_adds_bos(t), want[i].adds_bos, "%s adds bos", want[i].model);
        cr_assert_eq(qv_tokenizer_token_to_id(t, "<|im_end|>"), want[i].bos == 1 ? 2004 : 2002);
        if (want[i].img_context >= 0)
            cr_assert_str_eq(qv_tokenizer_id_to_token(t, want[i].img_context), "<IMG_CONTEXT>");
        qv_tokenizer_free(t);
    }
    qv_tokenizer *t = load_tok("internvl3-tiny"); /* added but not special (Qwen2.5's tool tokens) */
    int32_t tc = qv_tokenizer_token_to_id(t, "<tool_call>");
    cr_assert_eq(tc, 2014);
    cr_assert(!qv_tokenizer_is_special(t, tc));
    cr_assert(qv_tokenizer_is_special(t, 2024));
    qv_vec ids;
    qv_vec_init(&ids, sizeof(int32_t));
    encode(t, "a<tool_call>b", 13, true, &ids);
    cr_assert_eq(ids.len, 3);
    cr_assert_eq(QV_VEC_AT(&ids, int32_t, 1), 2014);
    char *dec;
    cr_assert_eq(qv_tokenizer_decode(t, ids.data, ids.len, true, &dec, NULL), QV_OK);
    cr_assert_str_eq(dec, "a<tool_call>b", "non-special added tokens survive skip_special");
    free(dec);
    qv_vec_free(&ids);
    qv_tokenizer_free(t);
    t = load_tok("internvl2-internlm2-tiny");
    cr_assert_eq(qv_tokenizer_unk_id(t), 0);
    cr_assert_str_eq(qv_tokenizer_bos_token(t), "<s>");
    qv_tokenizer_free(t);
}

Test(tokenizer, rejects_invalid_utf8)
{
    qv_tokenizer *t = load_tok("internvl2-internlm2-tiny");
    qv_vec ids;
    qv_vec_init(&ids, sizeof(int32_t));
    cr_assert_eq(qv_tokenizer_encode(t, "ab\xC3(", 4, true, &ids), QV_ERR_INVALID);
    cr_assert_str_eq(qv_last_error(), "text: invalid UTF-8 at byte 2");
    cr_assert_eq(ids.len, 0);
    qv_vec_free(&ids);
    qv_tokenizer_free(t);
}

/* ---- templates ----------------------------------------------------------------------------- */

Test(template, chat_template_goldens)
{
    for (size_t m = 0; m < QV_ARRAY_LEN(models); m++) {
        qv_json *g = golden(models[m]), *cases = qv_json_get(g, "cases"), *c = NULL;
        for (size_t i = 0; i < json_object_array_length(cases); i++)
            if (!strcmp(jstr(json_object_array_get_idx(cases, i), "name", NULL), "chat_template_user_image"))
                c = json_object_array_get_idx(cases, i);
        cr_assert_not_null(c);
        char *s = render_chat(models[m], "Describe this image.", 1);
        cr_assert_str_eq(s, jstr(c, "text", NULL), "%s", models[m]);
        qv_tokenizer *t = load_tok(models[m]);
        qv_vec ids;
        qv_vec_init(&ids, sizeof(int32_t));
        encode(t, s, strlen(s), true, &ids);
        expect_ids(ids.data, ids.len, qv_json_get(c, "ids"), models[m]);
        qv_vec_free(&ids);
        qv_tokenizer_free(t);
        free(s);
        qv_json_free(g);
    }
}

Test(template, internvl2_5_chat_prompt)
{
    qv_json *g = golden("internvl3-tiny"), *c = qv_json_get(g, "internvl2_5_chat_prompt");
    const qv_conv_template *conv;
    cr_assert_eq(qv_conv_template_get("internvl2_5", &conv), QV_OK);
    char *q, *prompt;
    int64_t four = 4;
    cr_assert_eq(qv_conv_expand_images("<image>\nDescribe this image.", &four, 1, &q), QV_OK);
    qv_conv_turn turns[] = {{QV_ROLE_USER, q}, {QV_ROLE_ASSISTANT, NULL}};
    cr_assert_eq(qv_conv_render(conv, NULL, turns, 2, &prompt), QV_OK);
    cr_assert_str_eq(prompt, jstr(c, "text", NULL));
    qv_tokenizer *t = load_tok("internvl3-tiny");
    qv_vec ids;
    qv_vec_init(&ids, sizeof(int32_t));
    encode(t, prompt, strlen(prompt), true, &ids);
    expect_ids(ids.data, ids.len, qv_json_get(c, "ids"), "internvl2_5_chat_prompt");
    qv_vec_free(&ids);
    qv_tokenizer_free(t);
    free(q);
    free(prompt);
    qv_json_free(g);
}

/* goldens/<model>/reference_run.json internvl_prompt_example_ids: system + 4 image tokens +
 * question, open assistant turn, in the model's InternVL2 template. */
Test(template, internvl_prompt_example_ids)
{
    static const char *const ms[] = {"internvl2-qwen2-tiny", "internvl2-internlm2-tiny"};
    for (size_t m = 0; m < 2; m++) {
        char rel[256];
        snprintf(rel, sizeof rel, "goldens/%s/prompt_example.json", ms[m]);
        qv_json *g = load_json(rel);
        const qv_conv_template *conv;
        cr_assert_eq(qv_conv_template_get(jstr(g, "template", NULL), &conv), QV_OK);
        char *q, *prompt;
        int64_t four = 4;
        cr_assert_eq(qv_conv_expand_images("<image>\nDescribe this image.", &four, 1, &q), QV_OK);
        qv_conv_turn turns[] = {{QV_ROLE_USER, q}, {QV_ROLE_ASSISTANT, NULL}};
        cr_assert_eq(qv_conv_render(conv, NULL, turns, 2, &prompt), QV_OK);
        cr_assert_str_eq(prompt, jstr(g, "text", NULL), "%s", ms[m]);
        qv_tokenizer *t = load_tok(ms[m]);
        qv_vec ids;
        qv_vec_init(&ids, sizeof(int32_t));
        encode(t, prompt, strlen(prompt), true, &ids);
        expect_ids(ids.data, ids.len, qv_json_get(g, "ids"), ms[m]);
        qv_vec_free(&ids);
        qv_tokenizer_free(t);
        free(q);
        free(prompt);
        qv_json_free(g);
    }
}

/* The calibration batches of fixtures §5 / §14.2 (input_ids copied from calib_batch.safetensors):
 * MBQ's order calib-3, calib-2, calib-1, calib-0; "<image>\n" prefixed when the question has no
 * placeholder; 256 image tokens. Hermes-2 / internlm2-chat: the whole conversation tokenised at
 * once (InternLM2 adds <s>); internvl2_5: each turn tokenised on its own, then concatenated.
 * Rows are right-padded with id 0. */
static void check_calib(const char *model, const char *template, bool per_turn)
{
    qv_json *items = load_json("calib/captions_sharegpt4v.json");
    char rel[256];
    snprintf(rel, sizeof rel, "goldens/%s/calib_input_ids.safetensors", model);
    qv_st_file *f = qt_open_st(rel);
    qv_tensor ids_t;
    cr_assert_eq(qv_st_get(f, "input_ids", &ids_t), QV_OK);
    cr_assert_eq(ids_t.dtype, QV_I64);
    cr_assert_eq(ids_t.ndim, 2);
    cr_assert_eq(ids_t.shape[0], 4);
    const int64_t *gold = ids_t.data;
    size_t N = (size_t)ids_t.shape[1];
    qv_tokenizer *t = load_tok(model);
    const qv_conv_template *conv;
    cr_assert_eq(qv_conv_template_get(template, &conv), QV_OK);
    for (int row = 0; row < 4; row++) {
        qv_json *item = json_object_array_get_idx(items, (size_t)(3 - row));
        qv_json *turns = qv_json_get(item, "conversations");
        const char *q0 = jstr(json_object_array_get_idx(turns, 0), "value", NULL);
        const char *a = jstr(json_object_array_get_idx(turns, 1), "value", NULL);
        char *q = strstr(q0, "<image>") ? strdup(q0) : NULL, *qx;
        if (!q) {
            q = malloc(strlen(q0) + 9);
            sprintf(q, "<image>\n%s", q0);
        }
        int64_t n256 = 256;
        cr_assert_eq(qv_conv_expand_images(q, &n256, 1, &qx), QV_OK);
        qv_vec ids;
        qv_vec_init(&ids, sizeof(int32_t));
        if (per_turn) {
            char *parts[3];
            cr_assert_eq(qv_conv_render_turn(conv, QV_ROLE_SYSTEM, NULL, &parts[0]), QV_OK);
            cr_assert_eq(qv_conv_render_turn(conv, QV_ROLE_USER, qx, &parts[1]), QV_OK);
            cr_assert_eq(qv_conv_render_turn(conv, QV_ROLE_ASSISTANT, a, &parts[2]), QV_OK);
            for (int k = 0; k < 3; k++) {
                encode(t, parts[k], strlen(parts[k]), true, &ids);
                free(parts[k]);
            }
        } else {
            char *prompt;
            qv_conv_turn ct[] = {{QV_ROLE_USER, qx}, {QV_ROLE_ASSISTANT, a}};
            cr_assert_eq(qv_conv_render(conv, NULL, ct, 2, &prompt), QV_OK);
            encode(t, prompt, strlen(prompt), true, &ids);
            free(prompt);
        }
        cr_assert_leq(ids.len, N);
        for (size_t i = 0; i < N; i++) {
            int64_t got = i < ids.len ? QV_VEC_AT(&ids, int32_t, i) : 0;
            cr_assert_eq(got, gold[(size_t)row * N + i], "%s row %d position %zu: %lld, golden %lld", model, row, i,
                         (long long)got, (long long)gold[(size_t)row * N + i]);
        }
        qv_vec_free(&ids);
        free(q);
        free(qx);
    }
    qv_tokenizer_free(t);
    qv_st_close(f);
    qv_json_free(items);
}

Test(template, calib_batch_hermes2) { check_calib("internvl2-qwen2-tiny", "Hermes-2", false); }
Test(template, calib_batch_internlm2_chat) { check_calib("internvl2-internlm2-tiny", "internlm2-chat", false); }
Test(template, calib_batch_internvl2_5) { check_calib("internvl3-tiny", "internvl2_5", true); }

Test(template, conversation_errors)
{
    const qv_conv_template *conv;
    cr_assert_eq(qv_conv_template_get("vicuna_v1", &conv), QV_ERR_UNSUPPORTED);
    cr_assert_not_null(strstr(qv_last_error(), "vicuna_v1"));
    char *s;
    int64_t n[2] = {1, 1};
    cr_assert_eq(qv_conv_expand_images("<image> only one", n, 2, &s), QV_ERR_INVALID);
    cr_assert_eq(qv_conv_template_get("Hermes-2", &conv), QV_OK);
    qv_conv_turn bad = {QV_ROLE_SYSTEM, "x"};
    cr_assert_eq(qv_conv_render(conv, NULL, &bad, 1, &s), QV_ERR_INVALID);
}

Test(template, unrecognised_template)
{
    qv_chat_template tpl;
    cr_assert_eq(qv_chat_template_parse("{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}", "<s>",
                                        "tokenizer_config.json", &tpl),
                 QV_ERR_UNSUPPORTED);
    cr_assert_not_null(strstr(qv_last_error(), "tokenizer_config.json: chat_template not recognised"));
    /* Qwen2.5's template (tools branch first): the default system message is still found */
    const char *q25 =
        "{%- if tools %}{{- '<|im_start|>system\\n' }}{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] "
        "}}{%- else %}{{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}{%- endif %}"
        "{%- else %}{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + "
        "'<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a "
        "helpful assistant.<|im_end|>\\n' }}{%- endif %}{%- endif %}{%- for message in messages %}{{- '<|im_start|>' + "
        "message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}"
        "{{- '<|im_start|>assistant\\n' }}{%- endif %}";
    cr_assert_eq(qv_chat_template_parse(q25, NULL, "t", &tpl), QV_OK, "%s", qv_last_error());
    cr_assert_str_eq(tpl.default_system, "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
    qv_chat_template_free(&tpl);
}

/* ---- bad tokenizer files ------------------------------------------------------------------- */

static char *write_tmp(const char *name, const void *data, size_t n)
{
    char *dir = qt_tmpdir(), path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    cr_assert_eq(qv_write_file_atomic(path, data, n), QV_OK);
    return dir;
}

/* qwen2-tiny's tokenizer.json with one field replaced (a JSON text spliced in). */
static char *patched_tokenizer_json(const char *path_key, const char *sub_key, const char *value_json)
{
    qv_json *root = load_json("models/qwen2-tiny/tokenizer.json"), *val;
    cr_assert_eq(qv_json_parse(value_json, strlen(value_json), "patch", 0, &val), QV_OK);
    qv_json *obj = sub_key ? qv_json_get(root, path_key) : root;
    json_object_object_add(obj, sub_key ? sub_key : path_key, val);
    const char *s = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN);
    char *dir = write_tmp("tokenizer.json", s, strlen(s));
    qv_json_free(root);
    return dir;
}

static void expect_load_error(const char *dir, const char *needle1, const char *needle2)
{
    qv_tokenizer *t = NULL;
    cr_assert_neq(qv_tokenizer_load(dir, &t), QV_OK, "loaded a bad tokenizer (%s)", needle2);
    cr_assert_null(t);
    const char *m = qv_last_error();
    cr_assert(strstr(m, needle1) && strstr(m, needle2), "message \"%s\" lacks \"%s\" / \"%s\"", m, needle1, needle2);
    cr_assert_null(strchr(m, '\n'));
}

Test(tokenizer, unsupported_components)
{
    char *d = patched_tokenizer_json("model", "type", "\"WordPiece\"");
    expect_load_error(d, "tokenizer.json", "WordPiece");
    free(d);
    d = patched_tokenizer_json("normalizer", NULL, "{\"type\":\"Lowercase\"}");
    expect_load_error(d, "tokenizer.json", "Lowercase");
    free(d);
    d = patched_tokenizer_json("pre_tokenizer", NULL, "{\"type\":\"Whitespace\"}");
    expect_load_error(d, "tokenizer.json", "Whitespace");
    free(d);
    d = patched_tokenizer_json("decoder", NULL, "{\"type\":\"Metaspace\"}");
    expect_load_error(d, "tokenizer.json", "Metaspace");
    free(d);
    d = patched_tokenizer_json("model", "merges", "[[\"a\",\"zzzz\"]]");
    expect_load_error(d, "tokenizer.json", "merges[0]");
    free(d);
    d = write_tmp("tokenizer.json", "{\"model\": ", 10);
    expect_load_error(d, "tokenizer.json", "invalid JSON");
    free(d);
    d = write_tmp("tokenizer.model", "\x0a\x05\x0a\x03", 4);
    expect_load_error(d, "tokenizer.model", "SentencePiece");
    free(d);
    d = qt_tmpdir();
    expect_load_error(d, d, "no tokenizer.json or tokenizer.model");
    free(d);
}

/* Merges written as "a b" strings (tokenizers < 0.20) load to the same model. */
Test(tokenizer, merges_in_string_form)
{
    qv_json *root = load_json("models/qwen2-tiny/tokenizer.json");
    qv_json *merges = qv_json_get(qv_json_get(root, "model"), "merges"), *strs = json_object_new_array();
    for (size_t i = 0; i < json_object_array_length(merges); i++) {
        qv_json *p = json_object_array_get_idx(merges, i);
        char buf[256];
        snprintf(buf, sizeof buf, "%s %s", json_object_get_string(json_object_array_get_idx(p, 0)),
                 json_object_get_string(json_object_array_get_idx(p, 1)));
        json_object_array_add(strs, json_object_new_string(buf));
    }
    json_object_object_add(qv_json_get(root, "model"), "merges", strs);
    const char *s = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN);
    char *dir = write_tmp("tokenizer.json", s, strlen(s));
    qv_json_free(root);
    qv_tokenizer *a = load_tok("qwen2-tiny"), *b;
    cr_assert_eq(qv_tokenizer_load(dir, &b), QV_OK, "%s", qv_last_error());
    qv_json *g = golden("qwen2-tiny"), *cases = qv_json_get(g, "cases");
    for (size_t i = 0; i < json_object_array_length(cases); i++) {
        size_t len;
        const char *text = jstr(json_object_array_get_idx(cases, i), "text", &len);
        qv_vec x, y;
        qv_vec_init(&x, sizeof(int32_t));
        qv_vec_init(&y, sizeof(int32_t));
        encode(a, text, len, true, &x);
        encode(b, text, len, true, &y);
        cr_assert(x.len == y.len && !memcmp(x.data, y.data, x.len * sizeof(int32_t)));
        qv_vec_free(&x);
        qv_vec_free(&y);
    }
    qv_json_free(g);
    qv_tokenizer_free(a);
    qv_tokenizer_free(b);
    free(dir);
}

/* Damaged copies of the SentencePiece model: each either loads (and then encodes without harm)
 * or fails with a message; none may crash. */
Test(tokenizer, damaged_sentencepiece_models)
{
    char *data;
    size_t n;
    cr_assert_eq(qv_read_file(qt_fixture("models/internvl2-internlm2-tiny/tokenizer.model"), 1 << 20, &data, &n), QV_OK);
    char *dir = qt_tmpdir(), path[512];
    snprintf(path, sizeof path, "%s/tokenizer.model", dir);
    unsigned seed = 12345;
    const char *text = "Hello, world! 中文 \t\n <0x41>";
    for (int it = 0; it < 300; it++) {
        char *copy = malloc(n);
        memcpy(copy, data, n);
        size_t len = n;
        if (it % 3 == 0) {
            len = (size_t)rand_r(&seed) % n;
        } else {
            for (int k = 0; k < 1 + it % 8; k++)
                copy[(size_t)rand_r(&seed) % n] = (char)rand_r(&seed);
        }
        cr_assert_eq(qv_write_file_atomic(path, copy, len), QV_OK);
        qv_tokenizer *t = NULL;
        if (qv_tokenizer_load(dir, &t) == QV_OK) {
            qv_vec ids;
            qv_vec_init(&ids, sizeof(int32_t));
            if (qv_tokenizer_encode(t, text, strlen(text), true, &ids) == QV_OK) {
                char *dec;
                cr_assert_eq(qv_tokenizer_decode(t, ids.data, ids.len, false, &dec, NULL), QV_OK);
                free(dec);
            }
            qv_vec_free(&ids);
            qv_tokenizer_free(t);
        } else {
            cr_assert_null(t);
            cr_assert_null(strchr(qv_last_error(), '\n'));
        }
        free(copy);
    }
    free(data);
    free(dir);
}

/* ---- qvlm tokenize ------------------------------------------------------------------------- */

Test(tokenize_cli, prints_ids)
{
    char *out, *err;
    int rc = qt_run_cli(&out, &err, "tokenize '%s' 'Hello world'", qt_fixture("models/qwen2-tiny"));
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_str_eq(out, "1980 328 301 268 1752\n");
    free(out);
    free(err);
    rc = qt_run_cli(&out, &err, "tokenize '%s' --chat 'Hi'", qt_fixture("models/internvl2-internlm2-tiny"));
    cr_assert_eq(rc, 0, "%s", err);
    /* <s> from the template's bos_token, <s> from add_bos_token, as the golden's chat case */
    cr_assert_eq(strncmp(out, "1 1 2005 ", 9), 0, "got %s", out);
    cr_assert_eq(qt_count_lines(out), 1);
    free(out);
    free(err);
    rc = qt_run_cli(&out, &err, "tokenize '%s' --no-special 'Hello world'", qt_fixture("models/internvl2-internlm2-tiny"));
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_str_eq(out, "1809 323 302 270 1707\n");
    free(out);
    free(err);
}

static void expect_cli_error(const char *args, const char *needle)
{
    char *out, *err;
    int rc = qt_run_cli(&out, &err, "%s", args);
    cr_assert_eq(rc, 1, "exit %d for %s (stderr %s)", rc, args, err);
    cr_assert_eq(qt_count_lines(err), 1, "stderr: %s", err);
    cr_assert(!strncmp(err, "qvlm: ", 6) && strstr(err, needle), "stderr \"%s\" lacks \"%s\"", err, needle);
    cr_assert_str_eq(out, "");
    free(out);
    free(err);
}

Test(tokenize_cli, bad_input)
{
    char args[1024];
    snprintf(args, sizeof args, "tokenize '%s/nonexistent' hi", qt_fixture("models"));
    expect_cli_error(args, "nonexistent");
    snprintf(args, sizeof args, "tokenize '%s' hi", qt_fixture("models/llava-onevision-qwen2-tiny/siglip-tiny-patch14-384"));
    expect_cli_error(args, "no tokenizer.json or tokenizer.model");
    snprintf(args, sizeof args, "tokenize '%s' \"$(printf 'a\\377b')\"", qt_fixture("models/qwen2-tiny"));
    expect_cli_error(args, "invalid UTF-8");
    char *d = patched_tokenizer_json("model", "type", "\"Unigram\"");
    snprintf(args, sizeof args, "tokenize '%s' hi", d);
    expect_cli_error(args, "tokenizer.json: model type \"Unigram\" is not supported");
    free(d);
    char *out, *err;
    cr_assert_eq(qt_run_cli(&out, &err, "tokenize '%s'", qt_fixture("models/qwen2-tiny")), 2, "missing TEXT is a usage error");
    free(out);
    free(err);
}
