/* cmd_eval.c — `qvlm eval` (spec CLI.md): how much did quantization break?
 *
 *   qvlm eval MODEL [--scales DIR ...] --task caption --data CAPTIONS.json --image-folder DIR
 *             [--shuffle-images SEED] [--json]
 *   qvlm eval MODEL [--scales DIR ...] --task ppl --data FILE [--seqlen N] [--json]
 *
 * Both tasks run the full-precision model and every --scales model teacher-forced on the same
 * samples (src/eval/eval.h) and report NLL, token accuracy, KL to the FP model and top-1
 * agreement with it, as one table (stdout) or one JSON object keyed by model (--json). The
 * caption task builds its batch as the model family's calibration batch and, with
 * --shuffle-images, adds the vision reliance. `--task ppl` without --scales prints
 * `ppl: <value>` as before; with one --scales the table is followed by the quantized model's
 * `ppl: <value>`. Progress and logs on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/fsutil.h"
#include "core/progress.h"
#include "eval/eval.h"
#include "llm/ppl.h"
#include "tok/tokenizer.h"

static qv_status tok_encode(void *ctx, const char *text, size_t len, qv_vec *ids)
{
    return qv_tokenizer_encode(ctx, text, len, true, ids);
}

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

static bool same_folder(const char *a, const char *b)
{
    char *ra = realpath(a, NULL), *rb = realpath(b, NULL);
    bool same = ra && rb ? !strcmp(ra, rb) : !strcmp(a, b);
    free(ra);
    free(rb);
    return same;
}

static void on_skip(void *ctx, const char *msg)
{
    (void)ctx;
    fprintf(stderr, "qvlm: warning: %s\n", msg); /* a skip is reported even with --quiet */
}

static void on_note(void *ctx, const char *msg)
{
    (void)ctx;
    qv_cli_log("qvlm: note: %s\n", msg);
}

static qv_status run_ppl(qv_llm *m, const char *model, const char *data, int64_t seqlen, int64_t batch,
                         qv_eval_quant *q, size_t nq, qv_progress *prog, qv_eval_report *rep)
{
    qv_tokenizer *tok = NULL;
    qv_text_encoder enc = {0}, *encp = NULL;
    int64_t *ids = NULL, n = 0;
    qv_status st = QV_OK;
    if (!is_safetensors(data)) {
        st = qv_tokenizer_load(model, &tok);
        enc = (qv_text_encoder){tok, tok_encode};
        encp = &enc;
    }
    if (st == QV_OK)
        st = qv_ppl_load_ids(data, encp, &ids, &n);
    if (st == QV_OK)
        st = qv_eval_ppl(m, q, nq, ids, n, seqlen, batch, qv_cli.max_memory, data, prog, rep);
    if (st == QV_OK)
        qv_cli_log("%lld tokens, %lld windows of %lld, mean NLL %.6f\n", (long long)n, (long long)rep->n_samples,
                   (long long)seqlen, rep->col[0].m.nll);
    qv_tokenizer_free(tok);
    qv_free(ids);
    return st;
}

int qv_cmd_eval(int argc, char **argv)
{
    const char *task = NULL, *data = NULL, *dtype = "f32", *image_folder = NULL, *pad_rule = NULL;
    int64_t seqlen = 0, batch = 0, shuffle_seed = INT64_MIN, max_tiles = 0, chunk = 0;
    bool json = false, mrope = false, skip_bad = false;
    qv_cli_list scales = {0};
    const qv_opt opts[] = {
        {"task", 0, QV_OPT_STR, &task, "TASK", "caption (held-out image-caption pairs) or ppl (perplexity of a text)"},
        {"data", 0, QV_OPT_STR, &data, "FILE", "caption: ShareGPT4V-style JSON/JSONL; ppl: JSONL with a \"text\" field, "
                                               "plain text, or .safetensors input_ids"},
        {"scales", 0, QV_OPT_MULTI, &scales, "DIR", "a quantized model to compare with the full-precision one (a qvlm "
                                                    "quantize folder: scales.safetensors + search.json); repeatable"},
        {"image-folder", 0, QV_OPT_STR, &image_folder, "DIR", "caption: folder the image paths are relative to"},
        {"shuffle-images", 0, QV_OPT_INT, &shuffle_seed, "SEED",
         "caption: also evaluate with every sample given another sample's images (Sattolo's algorithm on numpy's "
         "default_rng(SEED) stream: a derangement) and report vision_reliance = shuffled NLL - NLL"},
        {"json", 0, QV_OPT_FLAG, &json, NULL, "print one JSON object keyed by model instead of the table"},
        {"seqlen", 0, QV_OPT_INT, &seqlen, "N", "ppl: window length in tokens (default 2048)"},
        {"batch", 0, QV_OPT_INT, &batch, "N", "ppl: windows per forward (default: from --max-memory)"},
        {"chunk", 0, QV_OPT_INT, &chunk, "N", "caption: samples per forward (default: from --max-memory, ~8192 tokens)"},
        {"max-tiles", 0, QV_OPT_INT, &max_tiles, "N", "caption, InternVL: tiles per image (default 1, as calibration)"},
        {"pad-rule", 0, QV_OPT_STR, &pad_rule, "mbq|length", "caption: padding rule (default: the family's, as calib)"},
        {"mrope", 0, QV_OPT_FLAG, &mrope, NULL, "caption, Qwen2-VL: the model's own M-RoPE positions instead of the "
                                                "calibration forward's 0..L-1"},
        {"skip-bad-images", 0, QV_OPT_FLAG, &skip_bad, NULL, "caption: drop samples whose image cannot be read"},
        {"dtype", 0, QV_OPT_STR, &dtype, "f32|bf16", "compute dtype (bf16 needs native BF16 matmuls)"},
        {0},
    };
    const qv_cli_cmd cmd = {
        "eval",
        "MODEL [--scales DIR ...] --task caption --data CAPTIONS.json --image-folder DIR [--shuffle-images SEED] "
        "[--json]\n       qvlm eval MODEL [--scales DIR ...] --task ppl --data FILE [--seqlen N] [--json]",
        "Teacher-forced evaluation of the full-precision model and each --scales model on the same samples: mean NLL, "
        "token accuracy (argmax = target), KL(p_FP || p) and top-1 agreement with FP over all loss rows. caption: "
        "every pair of the file in file order, built as the family's calibration batch; ppl: non-overlapping "
        "windows (the tail is dropped).",
        opts, 1, 1};
    const char *pos[1];
    int npos, r = qv_cli_parse(&cmd, argc, argv, pos, &npos);
    if (r >= 0)
        return r;
    if (!task || !data)
        return qv_cli_usage_error("eval", "--task and --data are required");
    const bool caption = !strcmp(task, "caption");
    if (!caption && strcmp(task, "ppl") != 0)
        return qv_cli_usage_error("eval", "--task %s is not available (caption, ppl)", task);
    if (caption) {
        if (!image_folder)
            return qv_cli_usage_error("eval", "--task caption needs --image-folder");
        if (seqlen || batch)
            return qv_cli_usage_error("eval", "--seqlen and --batch belong to --task ppl");
        if (chunk < 0 || max_tiles < 0 || max_tiles > 64)
            return qv_cli_usage_error("eval", "--chunk must be positive and --max-tiles in 1..64");
    } else {
        if (image_folder || shuffle_seed != INT64_MIN || mrope || skip_bad || chunk || max_tiles || pad_rule)
            return qv_cli_usage_error("eval", "--image-folder, --shuffle-images, --mrope, --skip-bad-images, --chunk, "
                                      "--max-tiles and --pad-rule belong to --task caption");
        if (!seqlen)
            seqlen = 2048;
        if (seqlen < 2 || batch < 0)
            return qv_cli_usage_error("eval", "--seqlen must be at least 2 and --batch at least 1");
    }
    if (shuffle_seed != INT64_MIN && shuffle_seed < 0)
        return qv_cli_usage_error("eval", "--shuffle-images takes a seed >= 0");
    const bool shuffle = shuffle_seed != INT64_MIN;
    qv_pad_rule pr = QV_PAD_RULE_AUTO;
    if (pad_rule && !strcmp(pad_rule, "mbq"))
        pr = QV_PAD_RULE_MBQ;
    else if (pad_rule && !strcmp(pad_rule, "length"))
        pr = QV_PAD_RULE_LENGTH;
    else if (pad_rule)
        return qv_cli_usage_error("eval", "--pad-rule must be mbq or length");
    for (int i = 0; i < scales.n; i++) {
        if (!strcmp(scales.items[i], "fp"))
            return qv_cli_usage_error("eval", "--scales fp: name the folder ./fp (fp is the full-precision column)");
        for (int j = 0; j < i; j++)
            if (!strcmp(scales.items[i], scales.items[j]))
                return qv_cli_usage_error("eval", "--scales %s is given twice", scales.items[i]);
    }
    qv_llm_opts lo = {QV_F32};
    if (!strcmp(dtype, "bf16"))
        lo.compute = QV_BF16;
    else if (strcmp(dtype, "f32") != 0)
        return qv_cli_usage_error("eval", "--dtype must be f32 or bf16");

    qv_llm *m = NULL;
    qv_eval_quant q[QV_ARRAY_LEN(scales.items)];
    size_t nq = 0;
    qv_eval_report rep = {0};
    int rc = QV_EXIT_FAIL;
    /* a text data file needs the tokenizer: say so before the model is opened */
    qv_status st = !caption && !is_safetensors(data) ? check_tokenizer_files(pos[0]) : QV_OK;
    if (st == QV_OK)
        st = qv_llm_open(pos[0], &lo, &m);
    /* every scales folder is checked against the model before any work */
    for (int i = 0; st == QV_OK && i < scales.n; i++) {
        st = qv_eval_quant_open(&q[nq], m, scales.items[i]);
        if (st == QV_OK && q[nq].model && !same_folder(q[nq].model, pos[0]))
            qv_cli_log("qvlm: note: %s was searched on %s, evaluated on %s\n", scales.items[i], q[nq].model, pos[0]);
        nq += st == QV_OK;
    }
    qv_progress prog;
    qv_progress_init(&prog, qv_cli.quiet ? NULL : stderr, "eval", 0);
    if (st == QV_OK && caption) {
        const qv_eval_caption_opts co = {.data_path = data, .image_folder = image_folder, .pad_rule = pr,
                                         .max_tiles = (int)max_tiles, .shuffle_images = shuffle,
                                         .seed = shuffle ? (uint64_t)shuffle_seed : 0, .mrope = mrope,
                                         .skip_bad_images = skip_bad, .chunk = chunk, .max_memory = qv_cli.max_memory,
                                         .on_skip = on_skip, .on_note = on_note, .prog = &prog};
        st = qv_eval_caption(m, q, nq, &co, &rep);
        if (st == QV_OK)
            qv_cli_log("caption eval: %lld samples, %lld loss rows, %zu model%s, %lld samples per chunk: %.1f s\n",
                       (long long)rep.n_samples, (long long)rep.col[0].m.rows, rep.n_cols, rep.n_cols == 1 ? "" : "s",
                       (long long)rep.chunk, rep.seconds);
    } else if (st == QV_OK) {
        st = run_ppl(m, pos[0], data, seqlen, batch, q, nq, &prog, &rep);
    }
    if (st != QV_OK) {
        rc = qv_cli_fail();
        goto done;
    }
    qv_strbuf out;
    qv_sb_init(&out);
    if (json)
        qv_eval_report_json(&rep, &out);
    else if (!caption && nq == 0)
        qv_sb_printf(&out, "ppl: %.6f\n", rep.col[0].ppl);
    else {
        qv_eval_report_table(&rep, &out);
        if (!caption && nq == 1)
            qv_sb_printf(&out, "ppl: %.6f\n", rep.col[1].ppl);
    }
    if (out.oom) {
        qv_fail(QV_ERR_NOMEM, "out of memory formatting the report");
        rc = qv_cli_fail();
    } else if (fwrite(out.s, 1, out.len, stdout) != out.len || fflush(stdout) != 0) {
        fprintf(stderr, "qvlm: stdout: write failed\n");
        rc = QV_EXIT_FAIL;
    } else {
        rc = QV_EXIT_OK;
    }
    qv_sb_free(&out);
done:
    qv_eval_report_free(&rep);
    for (size_t k = 0; k < nq; k++)
        qv_eval_quant_close(&q[k]);
    qv_llm_close(m);
    return rc;
}
