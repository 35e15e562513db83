/* conversation.c — InternVL's conversation formats (OpenGVLab/InternVL 2410d1d
 * internvl_chat/internvl/conversation.py) used to build prompts and calibration samples:
 * Hermes-2 (InternVL2-1B, ALGORITHMS §8.1, fixtures §5), internlm2-chat (InternVL2-2B/8B, MBQ's
 * hard-coded choice) and internvl2_5 (InternVL3, MODELS §3.2, fixtures §14.2). All three use the
 * MPT separator style; they differ in the system message and in the separator ("<|im_end|>"
 * vs "<|im_end|>\n"). */
#include <string.h>

#include "../io/json.h"
#include "template.h"

#define SYS_INTERNVL2 "你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, 是一个有用无害的人工智能助手。"
#define SYS_INTERNVL2_5 "你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。"

static const qv_conv_template templates[] = {
    {"Hermes-2", "<|im_start|>system\n", SYS_INTERNVL2, {"<|im_start|>user\n", "<|im_start|>assistant\n"}, "<|im_end|>"},
    {"internlm2-chat", "<|im_start|>system\n", SYS_INTERNVL2, {"<|im_start|>user\n", "<|im_start|>assistant\n"},
     "<|im_end|>"},
    {"internvl2_5", "<|im_start|>system\n", SYS_INTERNVL2_5, {"<|im_start|>user\n", "<|im_start|>assistant\n"},
     "<|im_end|>\n"},
};

qv_status qv_conv_template_get(const char *name, const qv_conv_template **out)
{
    *out = NULL;
    for (size_t i = 0; i < QV_ARRAY_LEN(templates); i++)
        if (!strcmp(name, templates[i].name)) {
            *out = &templates[i];
            return QV_OK;
        }
    return qv_fail(QV_ERR_UNSUPPORTED, "conversation template \"%s\" is not supported (Hermes-2, internlm2-chat, internvl2_5)",
                   name);
}

static qv_status finish(qv_strbuf *b, char **out)
{
    if (b->oom) {
        qv_sb_free(b);
        return qv_fail(QV_ERR_NOMEM, "out of memory (prompt)");
    }
    *out = b->s ? b->s : qv_strdup("");
    return *out ? QV_OK : QV_ERR_NOMEM;
}

qv_status qv_conv_render(const qv_conv_template *c, const char *system, const qv_conv_turn *turns, size_t n,
                         char **out)
{
    *out = NULL;
    qv_strbuf b;
    qv_sb_init(&b);
    qv_sb_puts(&b, c->system_prefix);
    qv_sb_puts(&b, system ? system : c->system_message);
    qv_sb_puts(&b, c->sep);
    for (size_t i = 0; i < n; i++) {
        if (turns[i].role != QV_ROLE_USER && turns[i].role != QV_ROLE_ASSISTANT) {
            qv_sb_free(&b);
            return qv_fail(QV_ERR_INVALID, "conversation turn %zu: role must be user or assistant", i);
        }
        qv_sb_puts(&b, c->roles[turns[i].role == QV_ROLE_ASSISTANT]);
        if (turns[i].text) {
            qv_sb_puts(&b, turns[i].text);
            qv_sb_puts(&b, c->sep);
        }
    }
    return finish(&b, out);
}

qv_status qv_conv_render_turn(const qv_conv_template *c, qv_conv_role role, const char *text, char **out)
{
    *out = NULL;
    qv_strbuf b;
    qv_sb_init(&b);
    if (role == QV_ROLE_SYSTEM) {
        qv_sb_puts(&b, c->system_prefix);
        qv_sb_puts(&b, text ? text : c->system_message);
    } else {
        qv_sb_puts(&b, c->roles[role == QV_ROLE_ASSISTANT]);
        qv_sb_puts(&b, text ? text : "");
    }
    qv_sb_puts(&b, c->sep);
    return finish(&b, out);
}

qv_status qv_conv_expand_images(const char *text, const int64_t *tokens, size_t n_images, char **out)
{
    static const char ph[] = "<image>", ctx[] = "<IMG_CONTEXT>";
    *out = NULL;
    qv_strbuf b;
    qv_sb_init(&b);
    const char *p = text;
    for (size_t i = 0; i < n_images; i++) {
        const char *hit = strstr(p, ph);
        if (!hit || tokens[i] < 0) {
            qv_sb_free(&b);
            if (tokens[i] < 0)
                return qv_fail(QV_ERR_INVALID, "image %zu: negative token count", i);
            return qv_fail(QV_ERR_INVALID, "text has %zu <image> placeholder(s) for %zu images", i, n_images);
        }
        qv_sb_putn(&b, p, (size_t)(hit - p));
        qv_sb_puts(&b, "<img>");
        for (int64_t k = 0; k < tokens[i] && !b.oom; k++)
            qv_sb_putn(&b, ctx, sizeof ctx - 1);
        qv_sb_puts(&b, "</img>");
        p = hit + sizeof ph - 1;
    }
    qv_sb_puts(&b, p);
    return finish(&b, out);
}
