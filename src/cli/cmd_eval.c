/* cmd_eval.c — `qvlm eval MODEL --task ppl --data FILE [--seqlen N]`: perplexity of the model's
 * language model in non-overlapping windows (spec CLI.md; definition in src/llm/ppl.h). FILE is
 * JSONL with a "text" field, plain text, or pre-tokenized ids (.safetensors with input_ids).
 * Prints `ppl: <value>` on stdout; progress per window on stderr. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "core/fsutil.h"
#include "core/progress.h"
#include "llm/forward.h"
#include "llm/ppl.h"

#if defined(__has_include)
#if __has_include("tok/tokenizer.h")
#include "tok/tokenizer.h"
#define QV_HAVE_TOKENIZER 1
static qv_status tok_encode(void *ctx, const char *text, size_t len, qv_vec *ids)
{
    return qv_tokenizer_encode(ctx, text, len, true, ids);
}
#endif
#endif

static bool is_safetensors(const char *p)
{
    size_t n = strlen(p);
    return n >= 12 && !strcmp(p + n - 12, ".safetensors");
}

/* A text data file needs the model's tokenizer files: say which one is missing. */
static qv_status check_tokenizer_files(const char *model)
{
    char *a = qv_path_join(model, "tokenizer.json"), *b = qv_path_join(model, "tokenizer.model");
    if (!a || !b) {
        qv_free(a);
        qv_free(b);
        return QV_ERR_NOMEM;
    }
    bool ok = qv_path_exists(a) || qv_path_exists(b);
    qv_status st = ok ? QV_OK
                      : qv_fail(QV_ERR_IO, "%s: not found (the model folder has no tokenizer.json or tokenizer.model)", a);
    qv_free(a);
    qv_free(b);
    return st;
}

int qv_cmd_eval(int argc, char **argv)
{
    const char *task = NULL, *data = NULL, *dtype = "f32";
    int64_t seqlen = 2048, batch = 1;
    const qv_opt opts[] = {
        {"task", 0, QV_OPT_STR, &task, "TASK", "ppl (perplexity)"},
        {"data", 0, QV_OPT_STR, &data, "FILE", "JSONL with a \"text\" field, plain text, or .safetensors input_ids"},
        {"seqlen", 0, QV_OPT_INT, &seqlen, "N", "window length in tokens (default 2048)"},
        {"batch", 0, QV_OPT_INT, &batch, "N", "windows per forward (default 1)"},
        {"dtype", 0, QV_OPT_STR, &dtype, "f32|bf16", "compute dtype (bf16 needs native BF16 matmuls)"},
        {0},
    };
    const qv_cli_cmd cmd = {"eval", "MODEL --task ppl --data FILE [--seqlen N]",
                            "Perplexity of the model's language model over a text file in non-overlapping windows "
                            "(the tail shorter than a window is dropped).",
                            opts, 1, 1};
    const char *pos[1];
    int npos, r = qv_cli_parse(&cmd, argc, argv, pos, &npos);
    if (r >= 0)
        return r;
    if (!task || !data)
        return qv_cli_usage_error("eval", "--task and --data are required");
    if (strcmp(task, "ppl") != 0)
        return qv_cli_usage_error("eval", "--task %s is not available (ppl)", task);
    if (seqlen < 2 || batch < 1)
        return qv_cli_usage_error("eval", "--seqlen must be at least 2 and --batch at least 1");
    qv_llm_opts lo = {QV_F32};
    if (!strcmp(dtype, "bf16"))
        lo.compute = QV_BF16;
    else if (strcmp(dtype, "f32") != 0)
        return qv_cli_usage_error("eval", "--dtype must be f32 or bf16");
    qv_llm *m = NULL;
    int64_t *ids = NULL, n = 0;
    int rc = QV_EXIT_FAIL;
    qv_text_encoder enc = {0}, *encp = NULL;
#ifdef QV_HAVE_TOKENIZER
    qv_tokenizer *tok = NULL;
#endif
    if (!is_safetensors(data) && check_tokenizer_files(pos[0]) != QV_OK) {
        rc = qv_cli_fail();
        goto done;
    }
    if (qv_llm_open(pos[0], &lo, &m) != QV_OK) {
        rc = qv_cli_fail();
        goto done;
    }
#ifdef QV_HAVE_TOKENIZER
    if (!is_safetensors(data)) {
        if (qv_tokenizer_load(pos[0], &tok) != QV_OK) {
            rc = qv_cli_fail();
            goto done;
        }
        enc = (qv_text_encoder){tok, tok_encode};
        encp = &enc;
    }
#endif
    (void)enc;
    if (qv_ppl_load_ids(data, encp, &ids, &n) != QV_OK) {
        rc = qv_cli_fail();
        goto done;
    }
    if (qv_cli.max_memory) {
        uint64_t need = qv_llm_forward_bytes(m, batch, seqlen, 0, false);
        if (need > qv_cli.max_memory) {
            qv_fail(QV_ERR_NOMEM, "%s: a forward of %lld window(s) of %lld tokens needs about %.1f MiB, more than "
                    "--max-memory %.1f MiB (lower --batch or --seqlen)", data, (long long)batch, (long long)seqlen,
                    (double)need / 1048576.0, (double)qv_cli.max_memory / 1048576.0);
            rc = qv_cli_fail();
            goto done;
        }
    }
    qv_progress prog;
    qv_progress_init(&prog, qv_cli.quiet ? NULL : stderr, "ppl", seqlen > 0 ? n / seqlen : 0);
    qv_ppl_result res;
    qv_status st = qv_llm_ppl(m, ids, n, seqlen, batch, data, &prog, &res);
    qv_progress_finish(&prog);
    if (st != QV_OK) {
        rc = qv_cli_fail();
        goto done;
    }
    qv_cli_log("%lld tokens, %lld windows of %lld, mean NLL %.6f\n", (long long)res.n_tokens,
               (long long)res.n_windows, (long long)seqlen, res.mean_nll);
    printf("ppl: %.6f\n", res.ppl);
    rc = QV_EXIT_OK;
done:
#ifdef QV_HAVE_TOKENIZER
    qv_tokenizer_free(tok);
#endif
    qv_free(ids);
    qv_llm_close(m);
    return rc;
}
