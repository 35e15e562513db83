/* test_limits.c — resource limits (issue "Reliability" item 5): the caps on declared model
 * dimensions (src/model/config.h) at their boundaries, the tokenizer id cap, the --max-memory
 * budget (src/core/budget.h) in the steps that honour it, and the safetensors writer's
 * handling of sizes that overflow. Each limit is tested just inside (accepted) and just
 * outside (refused with the range or the size in the message). */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/budget.h"
#include "core/fsutil.h"
#include "image/image.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "tok/tokenizer.h"
#include "util/testutil.h"

/* ---- budget ----------------------------------------------------------------------------------- */

Test(limits, budget_check_and_message)
{
    char b[32];
    cr_expect_str_eq(qv_format_bytes(b, sizeof b, 300), "300 bytes");
    cr_expect_str_eq(qv_format_bytes(b, sizeof b, 1024), "1.0 KiB");
    cr_expect_str_eq(qv_format_bytes(b, sizeof b, (uint64_t)3 << 29), "1.5 GiB");
    qv_budget_set(0);
    cr_expect_eq(qv_budget_check(UINT64_MAX, "x", "anything"), QV_OK, "no budget refuses nothing");
    qv_budget_set((uint64_t)1 << 20);
    cr_expect_eq(qv_budget_check((uint64_t)1 << 20, "x", "step"), QV_OK, "exactly the budget fits");
    cr_expect_eq(qv_budget_check(((uint64_t)1 << 20) + 1, "model/a.jpg", "tiling"), QV_ERR_NOMEM);
    cr_expect_str_eq(qv_last_error(), "model/a.jpg: tiling needs 1.0 MiB, more than the --max-memory budget of 1.0 MiB");
    qv_budget_set(0);
}

Test(limits, budget_in_resize_and_decode)
{
    qv_image img, out;
    cr_assert_eq(qv_image_new(&img, 200000, 1, "thin"), QV_OK);
    memset(img.rgb, 7, (size_t)200000 * 3);
    qv_budget_set((uint64_t)1 << 20);
    /* 200000 -> 2 columns: 2 x 800001 taps, 9.2 MiB of filter tables */
    qv_status st = qv_image_resize_bicubic(&img, 2, 1, &out);
    cr_expect_eq(st, QV_ERR_NOMEM);
    cr_expect(strstr(qv_last_error(), "filter table needs 9.2 MiB, more than the --max-memory budget of 1.0 MiB"),
              "%s", qv_last_error());
    cr_expect_null(out.rgb);
    qv_budget_set(0);
    cr_assert_eq(qv_image_resize_bicubic(&img, 2, 1, &out), QV_OK, "%s", qv_last_error());
    cr_expect(out.w == 2 && out.h == 1 && out.rgb[0] == 7);
    qv_image_free(&out);
    qv_image_free(&img);

    /* decoding: refused from the header, before the pixels are allocated */
    char *data;
    size_t len;
    cr_assert_eq(qv_read_file(qt_fixture("calib/images/rocket.jpg"), (size_t)1 << 24, &data, &len), QV_OK);
    qv_budget_set(640 * 427 * 3 - 1);
    st = qv_image_decode_mem((const uint8_t *)data, len, "rocket.jpg", &img);
    cr_expect_eq(st, QV_ERR_NOMEM);
    cr_expect_str_eq(qv_last_error(),
                     "rocket.jpg: decoding a 640x427 image needs 800.6 KiB, more than the --max-memory budget of 800.6 KiB");
    qv_budget_set(640 * 427 * 3);
    cr_expect_eq(qv_image_decode_mem((const uint8_t *)data, len, "rocket.jpg", &img), QV_OK, "%s", qv_last_error());
    qv_image_free(&img);
    qv_budget_set(0);
    qv_free(data);
}

/* ---- config.json caps ---------------------------------------------------------------------------- */

/* A small Qwen2 config with one key set to value (hidden 64, 4 heads of 16 otherwise). */
static qv_status parse_llm(const char *key, long long value)
{
    json_object *o = json_tokener_parse("{\"architectures\":[\"Qwen2ForCausalLM\"],\"hidden_size\":64,"
                                        "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"intermediate_size\":64,"
                                        "\"vocab_size\":100,\"head_dim\":16}");
    cr_assert_not_null(o);
    json_object_object_add(o, key, json_object_new_int64(value));
    if (!strcmp(key, "num_key_value_heads")) /* kv heads must divide the attention heads */
        json_object_object_add(o, "num_attention_heads", json_object_new_int64(QV_MAX_HEADS));
    const char *s = json_object_to_json_string(o);
    qv_model_config cfg;
    qv_status st = qv_model_config_parse(s, strlen(s), "m/config.json", &cfg);
    qv_model_config_free(&cfg);
    json_object_put(o);
    return st;
}

Test(limits, config_dimension_caps)
{
    static const struct {
        const char *key;
        long long max;
    } caps[] = {
        {"hidden_size", QV_MAX_HIDDEN},           {"num_hidden_layers", QV_MAX_LAYERS},
        {"intermediate_size", QV_MAX_INTERMEDIATE}, {"vocab_size", QV_MAX_VOCAB},
        {"max_position_embeddings", QV_MAX_POSITIONS}, {"head_dim", QV_MAX_HEAD_DIM},
        {"num_attention_heads", QV_MAX_HEADS},     {"num_key_value_heads", QV_MAX_HEADS},
    };
    for (size_t i = 0; i < QV_ARRAY_LEN(caps); i++) {
        cr_expect_eq(parse_llm(caps[i].key, caps[i].max), QV_OK, "%s = max: %s", caps[i].key, qv_last_error());
        cr_expect_eq(parse_llm(caps[i].key, caps[i].max + 1), QV_ERR_INVALID, "%s = max + 1 accepted", caps[i].key);
        char want[160];
        snprintf(want, sizeof want, "%s\": %lld is out of range (1..%lld)", caps[i].key, caps[i].max + 1, caps[i].max);
        cr_expect(strstr(qv_last_error(), want), "%s", qv_last_error());
        cr_expect_eq(parse_llm(caps[i].key, 0), QV_ERR_INVALID, "%s = 0 accepted", caps[i].key);
    }
}

Test(limits, vision_caps)
{
    char *text;
    size_t len;
    cr_assert_eq(qv_read_file(qt_fixture("models/internvl2-qwen2-tiny/config.json"), 1 << 20, &text, &len), QV_OK);
    json_object *root = json_tokener_parse(text), *vc;
    qv_free(text);
    cr_assert(root && json_object_object_get_ex(root, "vision_config", &vc));
    static const struct {
        const char *key;
        int64_t bad;
        const char *range;
    } cases[] = {
        {"image_size", 65536, "(1..65535)"},
        {"hidden_size", ((int64_t)1 << 20) + 1, "(1..1048576)"},
        {"num_channels", 17, "(1..16)"},
        {"num_hidden_layers", 4097, "(1..4096)"},
    };
    for (size_t i = 0; i < QV_ARRAY_LEN(cases); i++) {
        json_object *old;
        cr_assert(json_object_object_get_ex(vc, cases[i].key, &old) || !strcmp(cases[i].key, "num_channels"));
        int64_t keep = old ? json_object_get_int64(old) : 3;
        json_object_object_add(vc, cases[i].key, json_object_new_int64(cases[i].bad));
        const char *s = json_object_to_json_string(root);
        qv_model_config cfg;
        cr_expect_eq(qv_model_config_parse(s, strlen(s), "m/config.json", &cfg), QV_ERR_INVALID, "%s", cases[i].key);
        char want[128];
        snprintf(want, sizeof want, "\"vision_config.%s\": %lld is out of range %s", cases[i].key, (long long)cases[i].bad,
                 cases[i].range);
        cr_expect(strstr(qv_last_error(), want), "%s", qv_last_error());
        json_object_object_add(vc, cases[i].key, json_object_new_int64(keep));
    }
    const char *s = json_object_to_json_string(root);
    qv_model_config cfg;
    cr_expect_eq(qv_model_config_parse(s, strlen(s), "m/config.json", &cfg), QV_OK, "%s", qv_last_error());
    qv_model_config_free(&cfg);
    json_object_put(root);
}

/* ---- tokenizer ids ------------------------------------------------------------------------------ */

static qv_status parse_tokenizer_with(const char *what, int64_t id)
{
    char *text;
    size_t len;
    cr_assert_eq(qv_read_file(QV_SOURCE_DIR "/tests/fuzz/seeds/tokenizer_json/qwen2-tiny.json", 1 << 20, &text, &len),
                 QV_OK);
    json_object *root = json_tokener_parse(text), *added, *pp;
    qv_free(text);
    cr_assert(root && json_object_object_get_ex(root, "added_tokens", &added));
    if (!strcmp(what, "added")) {
        json_object_object_add(json_object_array_get_idx(added, 0), "id", json_object_new_int64(id));
    } else {
        char pp_text[512];
        snprintf(pp_text, sizeof pp_text,
                 "{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
                 "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\","
                 "\"ids\":[%lld],\"tokens\":[\"<s>\"]}}}", (long long)id);
        pp = json_tokener_parse(pp_text);
        cr_assert_not_null(pp);
        json_object_object_add(root, "post_processor", pp);
    }
    const char *s = json_object_to_json_string(root);
    qv_tokenizer *t = NULL;
    qv_status st = qv_tokenizer_parse(QV_TOKENIZER_BPE, s, strlen(s), "m/tokenizer.json", &t);
    if (st == QV_OK) {
        qv_vec ids;
        qv_vec_init(&ids, sizeof(int32_t));
        cr_expect_eq(qv_tokenizer_encode(t, "hi", 2, true, &ids), QV_OK);
        for (size_t i = 0; i < ids.len; i++)
            cr_expect_not_null(qv_tokenizer_id_to_token(t, QV_VEC_AT(&ids, int32_t, i)));
        qv_vec_free(&ids);
    }
    qv_tokenizer_free(t);
    json_object_put(root);
    return st;
}

Test(limits, tokenizer_id_cap)
{
    cr_expect_eq(parse_tokenizer_with("added", QV_TOKENIZER_MAX_ID - 1), QV_OK, "%s", qv_last_error());
    cr_expect_eq(parse_tokenizer_with("added", QV_TOKENIZER_MAX_ID), QV_ERR_FORMAT);
    cr_expect(strstr(qv_last_error(), "has id 16777216 out of range"), "%s", qv_last_error());
    cr_expect_eq(parse_tokenizer_with("added", (int64_t)1 << 30), QV_ERR_FORMAT);
    cr_expect_eq(parse_tokenizer_with("post", 5), QV_OK, "%s", qv_last_error());
    cr_expect_eq(parse_tokenizer_with("post", 100000), QV_ERR_FORMAT);
    cr_expect_str_eq(qv_last_error(), "m/tokenizer.json: post_processor: id 100000 is not in the vocabulary");
}

/* ---- safetensors writers: refused tensors leave no trace ----------------------------------------- */

Test(limits, writer_refusals_leave_no_trace)
{
    char *dir = qt_tmpdir(), path[1024];
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    qv_st_writer *w;
    cr_assert_eq(qv_st_writer_open(&w, path, NULL, 0), QV_OK);
    int64_t neg[2] = {2, -1}, ok[1] = {4};
    cr_expect_eq(qv_st_writer_add(w, "bad", QV_F32, 2, neg), QV_ERR_INVALID);
    cr_expect_eq(qv_st_writer_add(w, "good", QV_U8, 1, ok), QV_OK);
    cr_expect_eq(qv_st_writer_add(w, "bad", QV_U8, 1, ok), QV_OK, "a refused name can be declared again");
    cr_assert_eq(qv_st_writer_begin(w), QV_OK);
    cr_expect_eq(qv_st_writer_put(w, "nope", "abcd", 4), QV_ERR_INTERNAL);
    cr_expect_eq(qv_st_writer_put(w, "good", "abcd", 4), QV_OK);
    cr_expect_eq(qv_st_writer_put(w, "bad", "wxyz", 4), QV_OK);
    cr_assert_eq(qv_st_writer_finish(w), QV_OK, "%s", qv_last_error());
    qv_st_file *f;
    cr_assert_eq(qv_st_open(path, &f), QV_OK, "%s", qv_last_error());
    cr_expect_eq(f->hdr.n, 2);
    qv_st_close(f);

    qv_st_sharded *s;
    cr_assert_eq(qv_st_sharded_open(&s, dir, "model", 0), QV_OK);
    int64_t huge[2] = {(int64_t)1 << 59, 8}; /* 2^62 elements fit int64; 2^64 bytes do not */
    cr_expect_eq(qv_st_sharded_add(s, "huge", QV_F32, 2, huge), QV_ERR_INVALID);
    cr_expect(strstr(qv_last_error(), "tensor huge is too large"), "%s", qv_last_error());
    cr_expect_eq(qv_st_sharded_add(s, "small", QV_U8, 1, ok), QV_OK);
    cr_expect_eq(qv_st_sharded_put_part(s, "huge", 0, "x", 1), QV_ERR_INTERNAL, "a refused tensor was kept");
    cr_assert_eq(qv_st_sharded_begin(s), QV_OK);
    cr_expect_eq(qv_st_sharded_put_part(s, "small", 0, "abcd", 4), QV_OK);
    cr_assert_eq(qv_st_sharded_finish(s), QV_OK, "%s", qv_last_error());
    free(dir);
}
