/* template.c — the chat template a checkpoint ships, recognised rather than interpreted
 * (template.h). The templates of the supported families are all ChatML:
 *   Qwen2-Instruct / LLaVA-OneVision / InternVL3 tokenizer_config: a default system turn when the
 *     first message is not a system message ({{ '<|im_start|>system\n…<|im_end|>\n' }}),
 *   InternVL2-1B: plain ChatML, InternVL2-2B/8B (InternLM2): {{ bos_token }} + plain ChatML,
 *   Qwen2-VL chat_template.json: default system turn, list content with image/video parts.
 * Recognition looks for the ChatML markers, a leading {{ bos_token }}, the literal default system
 * message and Qwen2-VL's image part; rendering then writes what Jinja would for one user turn
 * with add_generation_prompt=True (fixtures goldens chat_template_user_image). */
#include <string.h>

#include "../core/fsutil.h"
#include "../io/json.h"
#include "template.h"

#define IM_START "<|im_start|>"
#define IM_END "<|im_end|>"
#define QWEN2VL_IMAGE "<|vision_start|><|image_pad|><|vision_end|>"

/* The default system message: the text after the first "<|im_start|>system" + newline (written
 * as a newline or, inside a Jinja string literal, as "\n") up to "<|im_end|>" that contains no
 * Jinja syntax. *found is false when the template writes no literal system turn. */
static qv_status find_default_system(const char *tpl, char **out)
{
    *out = NULL;
    static const char mark[] = IM_START "system";
    for (const char *p = strstr(tpl, mark); p; p = strstr(p + 1, mark)) {
        const char *q = p + sizeof mark - 1;
        bool escaped;
        if (*q == '\n') {
            escaped = false;
            q++;
        } else if (q[0] == '\\' && q[1] == 'n') {
            escaped = true;
            q += 2;
        } else {
            continue;
        }
        const char *end = strstr(q, IM_END);
        if (!end)
            continue;
        size_t n = (size_t)(end - q);
        if (memchr(q, '{', n) || memchr(q, '}', n))
            continue; /* the system message comes from the messages here */
        qv_strbuf b;
        qv_sb_init(&b);
        for (size_t i = 0; i < n; i++) {
            char c = q[i];
            if (escaped && c == '\\' && i + 1 < n) { /* Jinja string-literal escapes */
                char e = q[++i];
                c = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
            } else if (escaped && (c == '\'' || c == '"')) {
                c = 0; /* a quote ends the literal: not a plain message */
            }
            if (!c) {
                qv_sb_free(&b);
                b.s = NULL;
                break;
            }
            qv_sb_putn(&b, &c, 1);
        }
        if (b.oom) {
            qv_sb_free(&b);
            return qv_fail(QV_ERR_NOMEM, "out of memory (chat template)");
        }
        if (b.s || n == 0) {
            *out = b.s ? b.s : qv_strdup("");
            return *out ? QV_OK : QV_ERR_NOMEM;
        }
    }
    return QV_OK;
}

/* Whether the template starts with {{ bos_token }} (spaces and Jinja '-' trimmers allowed). */
static bool starts_with_bos(const char *tpl)
{
    while (*tpl == ' ' || *tpl == '\n' || *tpl == '\t' || *tpl == '\r')
        tpl++;
    if (strncmp(tpl, "{{", 2))
        return false;
    tpl += 2;
    while (*tpl == '-' || *tpl == ' ')
        tpl++;
    if (strncmp(tpl, "bos_token", 9))
        return false;
    tpl += 9;
    while (*tpl == '-' || *tpl == ' ')
        tpl++;
    return !strncmp(tpl, "}}", 2);
}

qv_status qv_chat_template_parse(const char *tpl, const char *bos_token, const char *source, qv_chat_template *out)
{
    memset(out, 0, sizeof *out);
    if (!strstr(tpl, IM_START) || !strstr(tpl, IM_END) || !strstr(tpl, "add_generation_prompt") ||
        !(strstr(tpl, IM_START "assistant\\n") || strstr(tpl, IM_START "assistant\n")))
        return qv_fail(QV_ERR_UNSUPPORTED,
                       "%s: chat_template not recognised (qvlm renders the ChatML templates of Qwen2, Qwen2-VL, "
                       "InternVL and InternLM2)",
                       source);
    out->style = strstr(tpl, QWEN2VL_IMAGE) ? QV_CHAT_QWEN2_VL : QV_CHAT_CHATML;
    bool bos = starts_with_bos(tpl);
    if (bos && !bos_token) {
        return qv_fail(QV_ERR_INVALID, "%s: chat_template writes bos_token but the tokenizer has none", source);
    }
    out->bos = qv_strdup(bos ? bos_token : "");
    out->source = qv_strdup(source);
    qv_status st = out->bos && out->source ? QV_OK : QV_ERR_NOMEM;
    if (st == QV_OK)
        st = find_default_system(tpl, &out->default_system);
    if (st != QV_OK)
        qv_chat_template_free(out);
    return st;
}

void qv_chat_template_free(qv_chat_template *t)
{
    if (!t)
        return;
    qv_free(t->bos);
    qv_free(t->default_system);
    qv_free(t->source);
    memset(t, 0, sizeof *t);
}

/* tokenizer_config "chat_template": a string, or a list of {name, template} (take "default"). */
static const char *config_template(const qv_json *cfg)
{
    qv_json *ct = qv_json_get(cfg, "chat_template");
    if (qv_json_is_type(ct, json_type_string))
        return json_object_get_string(ct);
    if (!qv_json_is_type(ct, json_type_array))
        return NULL;
    for (size_t i = 0; i < json_object_array_length(ct); i++) {
        qv_json *e = json_object_array_get_idx(ct, i), *name = qv_json_get(e, "name"), *tpl = qv_json_get(e, "template");
        if (qv_json_is_type(name, json_type_string) && !strcmp(json_object_get_string(name), "default") &&
            qv_json_is_type(tpl, json_type_string))
            return json_object_get_string(tpl);
    }
    return NULL;
}

static qv_status load_json_if(const char *dir, const char *name, char **path, qv_json **out)
{
    *out = NULL;
    if (!(*path = qv_path_join(dir, name)))
        return QV_ERR_NOMEM;
    return qv_path_exists(*path) ? qv_json_load_file(*path, 0, out) : QV_OK;
}

qv_status qv_chat_template_load(const char *model_dir, qv_chat_template *out)
{
    memset(out, 0, sizeof *out);
    char *cfg_p = NULL, *proc_p = NULL, *jinja_p = NULL, *model_p = NULL, *jinja = NULL;
    qv_json *cfg = NULL, *proc = NULL, *model = NULL;
    qv_status st = load_json_if(model_dir, "tokenizer_config.json", &cfg_p, &cfg);
    if (st == QV_OK)
        st = load_json_if(model_dir, "chat_template.json", &proc_p, &proc);
    if (st == QV_OK && !(jinja_p = qv_path_join(model_dir, "chat_template.jinja")))
        st = QV_ERR_NOMEM;
    size_t jl;
    if (st == QV_OK && qv_path_exists(jinja_p))
        st = qv_read_file(jinja_p, (size_t)1 << 24, &jinja, &jl);
    const char *bos = NULL;
    qv_json *b = qv_json_get(cfg, "bos_token");
    if (qv_json_is_type(b, json_type_string))
        bos = json_object_get_string(b);
    else if (qv_json_is_type(qv_json_get(b, "content"), json_type_string))
        bos = json_object_get_string(qv_json_get(b, "content"));
    const char *tpl = NULL, *src = NULL;
    if (jinja) {
        tpl = jinja;
        src = jinja_p;
    } else if (proc && qv_json_is_type(qv_json_get(proc, "chat_template"), json_type_string)) {
        tpl = json_object_get_string(qv_json_get(proc, "chat_template"));
        src = proc_p;
    } else if ((tpl = config_template(cfg))) {
        src = cfg_p;
    }
    if (st == QV_OK && tpl) {
        st = qv_chat_template_parse(tpl, bos, src, out);
    } else if (st == QV_OK) { /* InternVL checkpoints name their conversation format in config.json */
        st = load_json_if(model_dir, "config.json", &model_p, &model);
        const char *name = NULL;
        if (st == QV_OK)
            st = qv_json_str_opt(model, "template", model_p, &name);
        if (st == QV_OK && !name)
            st = qv_fail(QV_ERR_INVALID, "%s: no chat template (no chat_template in tokenizer_config.json or "
                                         "chat_template.json, no \"template\" in config.json)", model_dir);
        if (st == QV_OK)
            st = qv_conv_template_get(name, &out->conv);
        if (st == QV_OK) {
            out->style = QV_CHAT_CONVERSATION;
            out->bos = qv_strdup("");
            out->source = qv_strdup(model_p);
            if (!out->bos || !out->source) {
                qv_chat_template_free(out);
                st = QV_ERR_NOMEM;
            }
        }
    }
    qv_json_free(cfg);
    qv_json_free(proc);
    qv_json_free(model);
    qv_free(jinja);
    qv_free(cfg_p);
    qv_free(proc_p);
    qv_free(jinja_p);
    qv_free(model_p);
    return st;
}

qv_status qv_chat_render_user(const qv_chat_template *t, const char *text, int n_images, char **out)
{
    *out = NULL;
    qv_strbuf content, b;
    qv_sb_init(&content);
    qv_sb_init(&b);
    for (int i = 0; i < n_images; i++)
        qv_sb_puts(&content, t->style == QV_CHAT_QWEN2_VL ? QWEN2VL_IMAGE : "<image>\n");
    qv_sb_puts(&content, text);
    if (content.oom) {
        qv_sb_free(&content);
        return qv_fail(QV_ERR_NOMEM, "out of memory (prompt)");
    }
    const char *c = content.s ? content.s : "";
    if (t->style == QV_CHAT_CONVERSATION) {
        qv_conv_turn turns[2] = {{QV_ROLE_USER, c}, {QV_ROLE_ASSISTANT, NULL}};
        qv_status st = qv_conv_render(t->conv, NULL, turns, 2, out);
        qv_sb_free(&content);
        return st;
    }
    qv_sb_puts(&b, t->bos);
    if (t->default_system) {
        qv_sb_puts(&b, IM_START "system\n");
        qv_sb_puts(&b, t->default_system);
        qv_sb_puts(&b, IM_END "\n");
    }
    qv_sb_puts(&b, IM_START "user\n");
    qv_sb_puts(&b, c);
    qv_sb_puts(&b, IM_END "\n" IM_START "assistant\n");
    qv_sb_free(&content);
    if (b.oom || !b.s) {
        qv_sb_free(&b);
        return qv_fail(QV_ERR_NOMEM, "out of memory (prompt)");
    }
    *out = b.s;
    return QV_OK;
}
