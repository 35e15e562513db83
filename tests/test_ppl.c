/* test_ppl.c — perplexity (src/llm/ppl.h, `qvlm eval --task ppl`) against a float64 numpy
 * re-computation on qwen2-tiny (goldens/qwen2-tiny/ppl.safetensors, made by
 * scripts/make_ppl_golden.py: 229 pseudo-random tokens, windows of 64 and 100), rel ≤ 1e-4;
 * the JSONL / plain-text readers through a stand-in byte tokenizer; bad input. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fsutil.h"
#include "llm/ppl.h"
#include "util/testutil.h"

#define GOLD "goldens/qwen2-tiny/ppl.safetensors"

/* qt_fixture returns a static buffer: keep separate copies for the two paths of a command */
static char model_path[4096], gold_path[4096];
static void paths(void)
{
    snprintf(model_path, sizeof model_path, "%s", qt_fixture("models/qwen2-tiny"));
    snprintf(gold_path, sizeof gold_path, "%s", qt_fixture(GOLD));
}

static double golden(const char *key)
{
    qv_st_file *f = qt_open_st(GOLD);
    qv_tensor t;
    cr_assert_eq(qv_st_get(f, key, &t), QV_OK);
    double v;
    memcpy(&v, t.data, 8);
    qv_st_close(f);
    return v;
}

Test(ppl, library_matches_float64_numpy)
{
    qv_llm *m;
    cr_assert_eq(qv_llm_open(qt_fixture("models/qwen2-tiny"), NULL, &m), QV_OK, "%s", qv_last_error());
    int64_t *ids, n;
    cr_assert_eq(qv_ppl_load_ids(qt_fixture(GOLD), NULL, &ids, &n), QV_OK, "%s", qv_last_error());
    cr_assert_eq(n, 229);
    const int64_t seqlens[] = {64, 100}, batches[] = {1, 2};
    for (int s = 0; s < 2; s++)
        for (int bi = 0; bi < 2; bi++) {
            qv_ppl_result r;
            cr_assert_eq(qv_llm_ppl(m, ids, n, seqlens[s], batches[bi], "ids", NULL, &r), QV_OK, "%s", qv_last_error());
            char key[32];
            snprintf(key, sizeof key, "ppl.%lld", (long long)seqlens[s]);
            double want = golden(key);
            cr_assert_leq(fabs(r.ppl - want), 1e-4 * want, "seqlen %lld batch %lld: %.6f vs %.6f", (long long)seqlens[s],
                          (long long)batches[bi], r.ppl, want);
            cr_assert_eq(r.n_windows, n / seqlens[s]);
        }
    qv_ppl_result r;
    cr_assert_neq(qv_llm_ppl(m, ids, 50, 64, 1, "ids", NULL, &r), QV_OK); /* fewer than one window */
    cr_assert_neq(qv_llm_ppl(m, ids, n, 1, 1, "ids", NULL, &r), QV_OK);
    qv_free(ids);
    qv_llm_close(m);
}

Test(ppl, cli_prints_ppl)
{
    paths();
    char *o, *e;
    int rc = qt_run_cli(&o, &e, "eval '%s' --task ppl --data '%s' --seqlen 64 --threads 1",
                        model_path, gold_path);
    cr_assert_eq(rc, 0, "stderr: %s", e);
    double v = 0;
    cr_assert_eq(sscanf(o, "ppl: %lf", &v), 1, "stdout: %s", o);
    cr_assert_eq(qt_count_lines(o), 1);
    double want = golden("ppl.64");
    cr_assert_leq(fabs(v - want), 1e-4 * want, "%.6f vs %.6f", v, want);
    cr_assert_not_null(strstr(e, "ppl: 3/3"), "progress lines: %s", e); /* not a TTY: one line per window */
    free(o), free(e);
    rc = qt_run_cli(&o, &e, "eval '%s' --task ppl --data '%s' --seqlen 64 -q", model_path, gold_path);
    cr_assert_eq(rc, 0);
    cr_assert_str_eq(e, "");
    free(o), free(e);
}

/* Stand-in tokenizer: one id per byte. */
static qv_status byte_encode(void *ctx, const char *text, size_t len, qv_vec *ids)
{
    (void)ctx;
    for (size_t i = 0; i < len; i++) {
        int32_t id = (unsigned char)text[i];
        QV_TRY(qv_vec_push(ids, &id));
    }
    return QV_OK;
}

static char *write_tmp(const char *dir, const char *name, const char *content)
{
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/%s", dir, name);
    cr_assert_eq(qv_write_file_atomic(p, content, strlen(content)), QV_OK);
    return p;
}

Test(ppl, text_readers)
{
    char *dir = qt_tmpdir();
    char *jl = write_tmp(dir, "d.jsonl", "{\"text\": \"ab\"}\n\n  \n{\"id\": 3, \"text\": \"c\\u00e9\"}\r\n{\"text\": \"\"}\n");
    char *txt;
    size_t len;
    cr_assert_eq(qv_ppl_read_text(jl, &txt, &len), QV_OK, "%s", qv_last_error());
    cr_assert_eq(len, strlen("ab\n\ncé\n\n"));
    cr_assert_str_eq(txt, "ab\n\ncé\n\n");
    qv_free(txt);
    char *pl = write_tmp(dir, "d.txt", "plain {\"text\": 1}\n");
    cr_assert_eq(qv_ppl_read_text(pl, &txt, &len), QV_OK);
    cr_assert_str_eq(txt, "plain {\"text\": 1}\n");
    qv_free(txt);
    char *bad = write_tmp(dir, "bad.jsonl", "{\"text\": \"ok\"}\n{\"txt\": \"no\"}\n");
    cr_assert_neq(qv_ppl_read_text(bad, &txt, &len), QV_OK);
    cr_assert_not_null(strstr(qv_last_error(), "bad.jsonl: line 2"), "%s", qv_last_error());
    /* through the encoder interface; ids equal the bytes, and a run on them equals the run on
     * the same ids given directly */
    qv_text_encoder enc = {NULL, byte_encode};
    int64_t *ids, n;
    cr_assert_eq(qv_ppl_load_ids(pl, &enc, &ids, &n), QV_OK);
    cr_assert_eq(n, (int64_t)strlen("plain {\"text\": 1}\n"));
    cr_assert_eq(ids[0], 'p');
    qv_free(ids);
    cr_assert_neq(qv_ppl_load_ids(pl, NULL, &ids, &n), QV_OK); /* text without a tokenizer */
    cr_assert_null(ids);
    qv_llm *m;
    cr_assert_eq(qv_llm_open(qt_fixture("models/qwen2-tiny"), NULL, &m), QV_OK);
    char long_text[600];
    for (int i = 0; i < 599; i++)
        long_text[i] = (char)('a' + (i * 7) % 26);
    long_text[599] = 0;
    char *lt = write_tmp(dir, "long.txt", long_text);
    cr_assert_eq(qv_ppl_load_ids(lt, &enc, &ids, &n), QV_OK);
    qv_ppl_result r1, r2;
    cr_assert_eq(qv_llm_ppl(m, ids, n, 128, 1, lt, NULL, &r1), QV_OK);
    cr_assert_eq(r1.n_windows, 4);
    int64_t direct[599];
    for (int i = 0; i < 599; i++)
        direct[i] = (unsigned char)long_text[i];
    cr_assert_eq(qv_llm_ppl(m, direct, 599, 128, 4, "direct", NULL, &r2), QV_OK);
    cr_assert_leq(fabs(r1.ppl - r2.ppl), 1e-6 * r2.ppl);
    qv_free(ids);
    qv_llm_close(m);
    free(jl), free(pl), free(bad), free(lt), free(dir);
}

Test(ppl, cli_bad_input)
{
    paths();
    char *dir = qt_tmpdir(), *o, *e;
    /* a model folder without tokenizer files, given a text file */
    char src[4096], dst[4096];
    char *data = NULL;
    size_t len;
    snprintf(src, sizeof src, "%s/config.json", qt_fixture("models/qwen2-tiny"));
    cr_assert_eq(qv_read_file(src, 1 << 20, &data, &len), QV_OK);
    snprintf(dst, sizeof dst, "%s/config.json", dir);
    cr_assert_eq(qv_write_file_atomic(dst, data, len), QV_OK);
    qv_free(data);
    char *txt = write_tmp(dir, "data.txt", "some text");
    int rc = qt_run_cli(&o, &e, "eval '%s' --task ppl --data '%s'", dir, txt);
    cr_assert_eq(rc, 1, "stderr: %s", e);
    cr_assert_eq(qt_count_lines(e), 1);
    cr_assert_not_null(strstr(e, "tokenizer.json: not found"), "%s", e);
    free(o), free(e);
    /* fewer tokens than one window */
    rc = qt_run_cli(&o, &e, "eval '%s' --task ppl --data '%s' --seqlen 1000", model_path,
                    gold_path);
    cr_assert_eq(rc, 1);
    cr_assert_eq(qt_count_lines(e), 1);
    cr_assert_not_null(strstr(e, "229 tokens, fewer than one window of 1000"), "%s", e);
    free(o), free(e);
    /* window longer than max_position_embeddings */
    rc = qt_run_cli(&o, &e, "eval '%s' --task ppl --data '%s' --seqlen 40000", model_path,
                    gold_path);
    cr_assert_eq(rc, 1);
    cr_assert_not_null(strstr(e, "exceeds max_position_embeddings 32768"), "%s", e);
    free(o), free(e);
    /* unknown task: usage error */
    rc = qt_run_cli(&o, &e, "eval '%s' --task mmlu --data x", qt_fixture("models/qwen2-tiny"));
    cr_assert_eq(rc, 2);
    free(o), free(e);
    /* text with the model's tokenizer: works once the tokenizer is built in, else one clear line */
    rc = qt_run_cli(&o, &e, "eval '%s' --task ppl --data '%s' --seqlen 2 -q", model_path, txt);
#if defined(__has_include) && __has_include("tok/tokenizer.h")
    cr_assert_eq(rc, 0, "stderr: %s", e);
    cr_assert(strncmp(o, "ppl: ", 5) == 0);
#else
    cr_assert_eq(rc, 1);
    cr_assert_not_null(strstr(e, "needs a tokenizer"), "%s", e);
#endif
    free(o), free(e), free(txt), free(dir);
}
