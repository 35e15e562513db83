/* cmd_tokenize.c — `qvlm tokenize MODEL [--chat] TEXT`: the token ids of TEXT, separated by
 * single spaces on one line (spec/CLI.md). --chat wraps TEXT in the model's chat template as one
 * user turn with the generation prompt (src/tok/template.h). Ids are those of the tokenizer's
 * default call, i.e. with its special tokens (InternLM2 prepends <s>; the Qwen2 tokenizers add
 * nothing), as in the fixtures' tokenizer goldens; --no-special leaves them out. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "tok/template.h"
#include "tok/tokenizer.h"

int qv_cmd_tokenize(int argc, char **argv)
{
    bool chat = false, no_special = false;
    const qv_opt opts[] = {
        {"chat", 0, QV_OPT_FLAG, &chat, NULL, "wrap TEXT in the model's chat template as one user turn"},
        {"no-special", 0, QV_OPT_FLAG, &no_special, NULL, "do not add the tokenizer's BOS/EOS"},
        {0},
    };
    const qv_cli_cmd cmd = {"tokenize", "MODEL [--chat] TEXT",
                            "Token ids of TEXT with the model's tokenizer (tokenizer.json or tokenizer.model), "
                            "separated by spaces on one line.",
                            opts, 2, 2};
    const char *pos[2];
    int npos, r = qv_cli_parse(&cmd, argc, argv, pos, &npos);
    if (r >= 0)
        return r;
    qv_tokenizer *tok = NULL;
    qv_chat_template tpl = {0};
    char *prompt = NULL;
    qv_vec ids;
    qv_vec_init(&ids, sizeof(int32_t));
    int rc = QV_EXIT_OK;
    const char *text = pos[1];
    if (qv_tokenizer_load(pos[0], &tok) != QV_OK)
        rc = qv_cli_fail();
    if (rc == QV_EXIT_OK && chat) {
        if (qv_chat_template_load(pos[0], &tpl) != QV_OK || qv_chat_render_user(&tpl, text, 0, &prompt) != QV_OK)
            rc = qv_cli_fail();
        text = prompt;
    }
    if (rc == QV_EXIT_OK && qv_tokenizer_encode(tok, text, strlen(text), !no_special, &ids) != QV_OK)
        rc = qv_cli_fail();
    if (rc == QV_EXIT_OK) {
        for (size_t i = 0; i < ids.len; i++)
            printf(i ? " %d" : "%d", (int)QV_VEC_AT(&ids, int32_t, i));
        printf("\n");
        if (fflush(stdout) != 0) {
            fprintf(stderr, "qvlm: stdout: write failed\n");
            rc = QV_EXIT_FAIL;
        }
    }
    qv_vec_free(&ids);
    qv_free(prompt);
    qv_chat_template_free(&tpl);
    qv_tokenizer_free(tok);
    return rc;
}
