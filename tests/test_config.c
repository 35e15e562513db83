/* test_config.c — config.json into typed structs (src/model/config.h): the fixture models'
 * values, and one clear error per kind of bad config. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fsutil.h"
#include "model/config.h"
#include "util/testutil.h"

Test(config, fixture_models)
{
    qv_model_config c;
    cr_assert_eq(qv_model_config_load(qt_fixture("models/internvl2-internlm2-tiny"), &c), QV_OK, "%s", qv_last_error());
    cr_assert_eq(c.family, QV_FAMILY_INTERNVL2);
    cr_assert_eq(c.llm.kind, QV_DECODER_INTERNLM2);
    cr_assert_eq(c.llm.hidden, 128);
    cr_assert_eq(c.llm.n_kv_heads, 2);
    cr_assert_eq(c.llm.head_dim, 32);
    cr_assert_eq(c.llm.vocab, 2015);
    cr_assert_eq(c.llm.rope_kind, QV_ROPE_DYNAMIC);
    cr_assert_float_eq(c.llm.rope_factor, 2.0, 0);
    cr_assert_float_eq(c.llm.rms_eps, 1e-5, 0);
    cr_assert_float_eq(c.llm.rope_theta, 1e6, 0);
    cr_assert(!c.llm.qkv_bias);
    cr_assert_str_eq(c.template_name, "internlm2-chat");
    cr_assert_eq(c.vision.hidden, 64);
    cr_assert_eq(c.vision.norm, QV_NORM_LAYER);
    cr_assert(c.vision.qkv_bias);
    cr_assert_str_eq(c.ps_version, "v2");
    qv_model_config_free(&c);

    cr_assert_eq(qv_model_config_load(qt_fixture("models/internvl2-qwen2-tiny"), &c), QV_OK);
    cr_assert_eq(c.llm.kind, QV_DECODER_QWEN2);
    cr_assert(c.llm.qkv_bias);
    cr_assert_eq(c.llm.rope_kind, QV_ROPE_DEFAULT);
    cr_assert_str_eq(c.template_name, "Hermes-2");
    qv_model_config_free(&c);

    cr_assert_eq(qv_model_config_load(qt_fixture("models/qwen2-tiny/config.json"), &c), QV_OK);
    cr_assert_eq(c.family, QV_FAMILY_TEXT);
    cr_assert(c.llm.tie_embeddings);
    cr_assert_eq(c.llm.n_layers, 2);
    cr_assert_eq(c.llm.bos_id, 2000);
    qv_model_config_free(&c);

    cr_assert_eq(qv_model_config_load(qt_fixture("models/qwen2-vl-tiny"), &c), QV_OK, "%s", qv_last_error());
    cr_assert_eq(c.family, QV_FAMILY_QWEN2_VL);
    cr_assert_eq(c.llm.rope_kind, QV_ROPE_MROPE);
    cr_assert_eq(c.llm.mrope_section[0], 4);
    cr_assert_eq(c.llm.mrope_section[2], 6);
    cr_assert_eq(c.image_token_id, 2012);
    qv_model_config_free(&c);

    cr_assert_eq(qv_model_config_load(qt_fixture("models/internvl3-tiny"), &c), QV_OK);
    cr_assert_eq(c.family, QV_FAMILY_INTERNVL3);
    cr_assert_eq(c.llm.pad_id, 2000);
    qv_model_config_free(&c);
}

/* Writes config text into a fresh folder and loads it; returns the status. */
static qv_status load_text(const char *text, char **dir_out)
{
    char *dir = qt_tmpdir();
    char *p = qv_path_join(dir, "config.json");
    cr_assert_eq(qv_write_file_atomic(p, text, strlen(text)), QV_OK);
    qv_model_config c;
    qv_status st = qv_model_config_load(dir, &c);
    if (st == QV_OK)
        qv_model_config_free(&c);
    qv_free(p);
    *dir_out = dir;
    return st;
}

#define QWEN "\"architectures\":[\"Qwen2ForCausalLM\"],\"num_hidden_layers\":2,\"num_attention_heads\":4," \
             "\"intermediate_size\":256,\"vocab_size\":100"

#define EXPECT_CFG_ERR(text, needle)                                                                             \
    do {                                                                                                         \
        char *d_;                                                                                                \
        cr_assert_neq(load_text(text, &d_), QV_OK, "accepted: %s", text);                                        \
        cr_assert(strstr(qv_last_error(), "config.json") && strstr(qv_last_error(), needle),                     \
                  "message '%s' lacks config.json or '%s'", qv_last_error(), needle);                            \
        free(d_);                                                                                                \
    } while (0)

Test(config, errors_name_file_and_field)
{
    char *d;
    cr_assert_eq(load_text("{" QWEN ",\"hidden_size\":128}", &d), QV_OK, "%s", qv_last_error());
    free(d);
    EXPECT_CFG_ERR("{" QWEN "}", "missing field \"hidden_size\"");
    EXPECT_CFG_ERR("{" QWEN ",\"hidden_size\":\"big\"}", "\"hidden_size\": expected an integer");
    EXPECT_CFG_ERR("{" QWEN ",\"hidden_size\":-5}", "out of range");
    EXPECT_CFG_ERR("{" QWEN ",\"hidden_size\":130}", "not a multiple");
    EXPECT_CFG_ERR("{" QWEN ",\"hidden_size\":128,\"num_key_value_heads\":3}", "num_key_value_heads");
    EXPECT_CFG_ERR("{" QWEN ",\"hidden_size\":128,\"rope_scaling\":{\"type\":\"yarn\"}}", "rope_scaling type \"yarn\"");
    EXPECT_CFG_ERR("{" QWEN ",\"hidden_size\":128,\"hidden_act\":\"relu\"}", "hidden_act");
    EXPECT_CFG_ERR("{" QWEN ",\"hidden_size\":128,\"tie_word_embeddings\":\"yes\"}", "tie_word_embeddings");
    EXPECT_CFG_ERR("{\"architectures\":[\"GPT2LMHeadModel\"]}", "InternVLChatModel, Qwen2ForCausalLM");
    EXPECT_CFG_ERR("{\"architectures\":[]}", "architectures");
    EXPECT_CFG_ERR("{\"architectures\":[\"InternVLChatModel\"],\"vision_config\":{}}", "llm_config");
    EXPECT_CFG_ERR("{\"architectures\":[\"Qwen2ForCausalLM\"", "invalid JSON");
    EXPECT_CFG_ERR("[]", "not a JSON object");
    qv_model_config c;
    cr_assert_neq(qv_model_config_load("/nonexistent/model", &c), QV_OK);
    cr_assert(strstr(qv_last_error(), "/nonexistent/model"), "%s", qv_last_error());
}
