/* template.h — prompt formats: the chat template a checkpoint ships (template.c) and InternVL's
 * conversation formats from its conversation.py (conversation.c).
 *
 * Chat templates are not run by a Jinja engine: the template text is recognised (ChatML with or
 * without a default system turn, a leading {{ bos_token }}, Qwen2-VL's image parts) and
 * rendered by fixed code, which reproduces what transformers' apply_chat_template gives for one
 * user turn with add_generation_prompt=True (fixtures README §3, §13.2, §14.1). A template that
 * is not recognised is an error naming its file. */
#ifndef QV_TOK_TEMPLATE_H
#define QV_TOK_TEMPLATE_H

#include "../core/common.h"

/* ---- InternVL conversation formats (conversation.py, MPT separator style) ------------------ */

typedef struct qv_conv_template {
    const char *name;           /* "Hermes-2", "internlm2-chat", "internvl2_5" */
    const char *system_prefix;  /* system_template before "{system_message}" */
    const char *system_message; /* the default system message */
    const char *roles[2];       /* user, assistant prefixes */
    const char *sep;            /* after the system prompt and after every message */
} qv_conv_template;

typedef enum qv_conv_role { QV_ROLE_SYSTEM = 0, QV_ROLE_USER, QV_ROLE_ASSISTANT } qv_conv_role;

typedef struct qv_conv_turn {
    qv_conv_role role; /* QV_ROLE_USER or QV_ROLE_ASSISTANT */
    const char *text;  /* NULL: an open turn (only the role is written: the generation prompt) */
} qv_conv_turn;

/* The template registered under name (config.json "template"); an error listing the supported
 * names when unknown. */
qv_status qv_conv_template_get(const char *name, const qv_conv_template **out);

/* Conversation.get_prompt() for the MPT style:
 *   system_prefix + system + sep + Σ (role + text + sep, or role alone when text is NULL).
 * system NULL = the template's default message. The result is malloc'd (caller frees). */
qv_status qv_conv_render(const qv_conv_template *c, const char *system, const qv_conv_turn *turns, size_t n,
                         char **out);
/* One turn on its own, as preprocess_internvl2_5 tokenises each turn separately:
 * SYSTEM: system_prefix + text (NULL = default) + sep; USER/ASSISTANT: role + text + sep. */
qv_status qv_conv_render_turn(const qv_conv_template *c, qv_conv_role role, const char *text, char **out);

/* The i-th "<image>" of text replaced by "<img>" + "<IMG_CONTEXT>" × tokens[i] + "</img>"
 * (InternVL chat()/preprocess: 256 tokens per 448² tile). Fewer placeholders than images is
 * QV_ERR_INVALID. */
qv_status qv_conv_expand_images(const char *text, const int64_t *tokens, size_t n_images, char **out);

/* ---- chat templates of checkpoints ---------------------------------------------------------- */

typedef enum qv_chat_style {
    QV_CHAT_CHATML = 0,   /* <|im_start|>role\n{content}<|im_end|>\n, string content */
    QV_CHAT_QWEN2_VL,     /* ChatML with list content: an image part is <|vision_start|><|image_pad|><|vision_end|> */
    QV_CHAT_CONVERSATION  /* no chat template: the InternVL conversation format of config.json "template" */
} qv_chat_style;

typedef struct qv_chat_template {
    qv_chat_style style;
    char *bos;                    /* written first ({{ bos_token }}), "" when the template has none */
    char *default_system;         /* system turn added when none is given; NULL when the template adds none */
    const qv_conv_template *conv; /* QV_CHAT_CONVERSATION */
    char *source;                 /* the file the template came from */
} qv_chat_template;

/* Finds and recognises the chat template of a model folder: chat_template.jinja, then
 * chat_template.json (the processor's), then tokenizer_config.json "chat_template", then
 * config.json "template" (InternVL conversation format). */
qv_status qv_chat_template_load(const char *model_dir, qv_chat_template *out);
/* Recognises template text; `bos_token` is tokenizer_config's (NULL when none); `source` names
 * the file in errors. */
qv_status qv_chat_template_parse(const char *tpl, const char *bos_token, const char *source, qv_chat_template *out);
void qv_chat_template_free(qv_chat_template *t);

/* One user turn rendered with add_generation_prompt=True. The message holds n_images images
 * followed by the text: Qwen2-VL renders each image part as <|vision_start|><|image_pad|>
 * <|vision_end|>; the string-content templates get InternVL's "<image>\n" per image before the
 * text (so text "Describe this image." with one image gives every fixture's golden prompt).
 * The result is malloc'd (caller frees). */
qv_status qv_chat_render_user(const qv_chat_template *t, const char *text, int n_images, char **out);

#endif
