/* test_textdata.c — pure-text dataset reader and the pile-block / interleave-pool selections
 * (src/calib/textdata.h; spec/ALGORITHMS.md §7.5, §7.6, §11 items 14–15), with a fake
 * tokenizer (whitespace split, each word is its own integer id, optional BOS id 1). The expected
 * blocks were worked by hand from numpy's default_rng(42).permutation(8) = [3, 4, 2, 7, 6, 1, 5, 0]
 * (numpy 1.24) and cross-checked with a few lines of Python following the spec. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib/pytext.h"
#include "calib/textdata.h"
#include "util/testutil.h"

typedef struct fake_tok {
    bool bos;
    int calls;
    int fail_on; /* fail when a document contains this id (0 = never) */
} fake_tok;

/* Whitespace split into integer ids. Refuses text that was not stripped, so the tests also
 * check that the selections strip as the reference does. */
static int fake_encode(void *ctx, const char *text, size_t len, int32_t **ids, size_t *n)
{
    fake_tok *t = ctx;
    t->calls++;
    size_t b = 0, e = len;
    qv_py_strip(text, &b, &e);
    if (b != 0 || e != len)
        return qv_fail(QV_ERR_INTERNAL, "fake tokenizer: text not stripped");
    *ids = qv_malloc((len + 2) * sizeof **ids, "ids");
    if (!*ids)
        return QV_ERR_NOMEM;
    *n = 0;
    if (t->bos)
        (*ids)[(*n)++] = 1;
    char *copy = strndup(text, len), *save = NULL;
    for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        int v = atoi(w);
        if (t->fail_on && v == t->fail_on) {
            free(copy);
            return qv_fail(QV_ERR_INVALID, "fake tokenizer: refused %d", v);
        }
        (*ids)[(*n)++] = v;
    }
    free(copy);
    return 0;
}

static char *write_tmp(const char *name, const char *content)
{
    char *dir = qt_tmpdir();
    char *path = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(path, "%s/%s", dir, name);
    free(dir);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    fputs(content, f);
    fclose(f);
    return path;
}

/* Rows 0..7; blank lines between them are skipped by the JSON Lines reader. */
static const char *k_docs_jsonl = "{\"text\": \"10 11\", \"meta\": {\"pile_set_name\": \"x\"}}\n"
                                  "{\"text\": \"  20 21 22 23 24  \"}\n"
                                  "\n"
                                  "{\"text\": \"\"}\n"
                                  "{\"text\": \"30\"}\n"
                                  "   \r\n"
                                  "{\"text\": \"40 41 42 43\"}\n"
                                  "{\"text\": \"\\u3000 50 51 52 53 54 55 \\n\"}\n"
                                  "{\"meta\": {}, \"text\": \"60 61 62\"}\n"
                                  "{\"text\": \"70 71 72 73 74\"}";

static qv_text_docs open_docs(char **path)
{
    *path = write_tmp("pile.jsonl", k_docs_jsonl);
    qv_text_docs d;
    cr_assert_eq(qv_textdata_open(*path, &d), QV_OK, "%s", qv_last_error());
    return d;
}

Test(textdata, jsonl_rows)
{
    char *path;
    qv_text_docs d = open_docs(&path);
    cr_assert_eq(d.n, 8);
    cr_expect_eq(d.format, QV_TEXT_FORMAT_JSONL);
    static const size_t lines[8] = {1, 2, 4, 5, 7, 8, 9, 10};
    for (size_t i = 0; i < 8; i++)
        cr_expect_eq(d.rows[i].line, lines[i], "row %zu", i);
    char *t;
    size_t len;
    cr_assert_eq(qv_textdata_get(&d, 5, &t, &len), QV_OK);
    cr_expect_str_eq(t, "\xe3\x80\x80 50 51 52 53 54 55 \n"); /* unstripped */
    cr_expect_eq(len, strlen(t));
    qv_free(t);
    cr_assert_eq(qv_textdata_get(&d, 2, &t, &len), QV_OK);
    cr_expect_eq(len, 0);
    qv_free(t);
    qv_textdata_close(&d);
    qv_textdata_close(&d);
    free(path);
}

Test(textdata, pile_blocks)
{
    char *path;
    qv_text_docs d = open_docs(&path);
    fake_tok tok = {0};
    int32_t *ids;
    size_t nb, kept;
    /* visit 3 (30: kept), 4 (4 tokens: kept), 2 (empty: skipped), 7 (5 > 4: skipped), 6 (kept) */
    cr_assert_eq(qv_textdata_pile_blocks(&d, 42, 3, 4, 3, fake_encode, &tok, &ids, &nb, &kept), QV_OK, "%s",
                 qv_last_error());
    cr_expect_eq(kept, 3);
    cr_assert_eq(nb, 2); /* 8 tokens → 2 blocks of 3, tail [61 62] dropped */
    const int32_t want[6] = {30, 40, 41, 42, 43, 60};
    cr_expect_arr_eq(ids, want, sizeof want);
    cr_expect_eq(tok.calls, 5);
    qv_free(ids);

    /* with BOS the empty document becomes [1] and is kept (the filter counts tokens, not text) */
    fake_tok bos = {.bos = true};
    cr_assert_eq(qv_textdata_pile_blocks(&d, 42, 3, 4, 3, fake_encode, &bos, &ids, &nb, NULL), QV_OK);
    cr_assert_eq(nb, 2);
    const int32_t want_bos[6] = {1, 30, 1, 1, 60, 61};
    cr_expect_arr_eq(ids, want_bos, sizeof want_bos);
    qv_free(ids);

    /* more lines asked than exist: every short document, in visiting order */
    cr_assert_eq(qv_textdata_pile_blocks(&d, 42, 100, 4, 3, fake_encode, &tok, &ids, &nb, &kept), QV_OK);
    cr_expect_eq(kept, 4);
    cr_assert_eq(nb, 3);
    const int32_t want_all[9] = {30, 40, 41, 42, 43, 60, 61, 62, 10};
    cr_expect_arr_eq(ids, want_all, sizeof want_all);
    qv_free(ids);
    qv_textdata_close(&d);
    free(path);
}

Test(textdata, interleave_pool)
{
    char *path;
    qv_text_docs d = open_docs(&path);
    fake_tok tok = {0};
    int32_t *p;
    size_t got;
    /* only documents with MORE than 4 tokens, truncated to 4: rows 7, then 1 */
    cr_assert_eq(qv_textdata_interleave_pool(&d, 42, 2, 4, fake_encode, &tok, &p, &got), QV_OK, "%s",
                 qv_last_error());
    cr_assert_eq(got, 2);
    const int32_t want[8] = {70, 71, 72, 73, 20, 21, 22, 23};
    cr_expect_arr_eq(p, want, sizeof want);
    qv_free(p);
    /* asking for more than there are: the three long rows (7, 1, 5 — row 5 needs the Unicode
     * strip), no error */
    cr_assert_eq(qv_textdata_interleave_pool(&d, 42, 128, 4, fake_encode, &tok, &p, &got), QV_OK, "%s",
                 qv_last_error());
    cr_assert_eq(got, 3);
    const int32_t want3[12] = {70, 71, 72, 73, 20, 21, 22, 23, 50, 51, 52, 53};
    cr_expect_arr_eq(p, want3, sizeof want3);
    qv_free(p);
    fake_tok bos = {.bos = true};
    cr_assert_eq(qv_textdata_interleave_pool(&d, 42, 2, 4, fake_encode, &bos, &p, &got), QV_OK);
    const int32_t want_bos[8] = {1, 40, 41, 42, 1, 70, 71, 72};
    cr_expect_arr_eq(p, want_bos, sizeof want_bos);
    qv_free(p);
    qv_textdata_close(&d);
    free(path);
}

Test(textdata, plain_text_rows_and_join)
{
    char *path = write_tmp("wiki.txt", "a b\r\n\r\nc\rd\n\n");
    qv_text_docs d;
    cr_assert_eq(qv_textdata_open(path, &d), QV_OK, "%s", qv_last_error());
    cr_expect_eq(d.format, QV_TEXT_FORMAT_PLAIN);
    cr_assert_eq(d.n, 5); /* "a b", "", "c", "d", "" as the Hugging Face text loader reads it */
    static const char *want[5] = {"a b", "", "c", "d", ""};
    for (size_t i = 0; i < 5; i++) {
        char *t;
        size_t len;
        cr_assert_eq(qv_textdata_get(&d, i, &t, &len), QV_OK);
        cr_expect_str_eq(t, want[i]);
        qv_free(t);
    }
    char *all;
    size_t len;
    cr_assert_eq(qv_textdata_join(&d, "\n\n", &all, &len), QV_OK);
    cr_expect_str_eq(all, "a b\n\n\n\nc\n\nd\n\n");
    cr_expect_eq(len, strlen(all));
    qv_free(all);
    qv_textdata_close(&d);
    free(path);

    path = write_tmp("empty.txt", "");
    cr_assert_eq(qv_textdata_open(path, &d), QV_OK);
    cr_expect_eq(d.n, 0);
    cr_assert_eq(qv_textdata_join(&d, "\n\n", &all, &len), QV_OK);
    cr_expect_str_eq(all, "");
    qv_free(all);
    fake_tok tok = {0};
    int32_t *ids;
    size_t nb;
    cr_expect_eq(qv_textdata_pile_blocks(&d, 42, 128, 512, 512, fake_encode, &tok, &ids, &nb, NULL), QV_ERR_INVALID);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s: the 0 documents with 1..512 tokens give 0 tokens, fewer than one block of 512", path);
    cr_expect_str_eq(qv_last_error(), msg);
    qv_textdata_close(&d);
    free(path);
}

Test(textdata, errors_name_file_and_line)
{
    char msg[1024];
    qv_text_docs d;
    fake_tok tok = {0};
    int32_t *ids;
    size_t n;
    static const struct {
        const char *content, *problem;
    } rows[] = {
        {"{\"text\": \"1 2\"}\n{\"txt\": \"3\"}\n", ":2: missing field \"text\""},
        {"{\"text\": \"1 2\"}\n\n{\"text\": null}\n", ":3: field \"text\": expected a string"},
        {"{\"text\": \"1 2\"}\n[\"3\"]\n", ":2: expected a JSON object with a \"text\" field"},
        {"{\"text\": \"1 2\"}\n{\"text\": \"3\"\n", ":2: invalid JSON: unexpected end of data"},
        {"{\"text\": \"1 2\"}\n{\"text\": \"3\"} x\n", ":2: invalid JSON: unexpected character"},
        {"{\"text\": \"1 2\"}\n{\"text\": \"\xff\"}\n", ":2: invalid JSON: invalid utf-8 string"},
    };
    for (size_t i = 0; i < QV_ARRAY_LEN(rows); i++) {
        char *path = write_tmp("bad.jsonl", rows[i].content);
        cr_assert_eq(qv_textdata_open(path, &d), QV_OK, "%s", qv_last_error()); /* rows parse lazily */
        cr_expect_neq(qv_textdata_pile_blocks(&d, 42, 2, 512, 1, fake_encode, &tok, &ids, &n, NULL), QV_OK);
        snprintf(msg, sizeof msg, "%s%s", path, rows[i].problem);
        cr_expect_str_eq(qv_last_error(), msg, "case %zu: got %s", i, qv_last_error());
        qv_textdata_close(&d);
        free(path);
    }
    /* the tokenizer's own error passes through */
    char *path = write_tmp("t.jsonl", "{\"text\": \"5 6\"}\n{\"text\": \"7 13\"}\n");
    cr_assert_eq(qv_textdata_open(path, &d), QV_OK);
    fake_tok failing = {.fail_on = 13};
    cr_expect_eq(qv_textdata_interleave_pool(&d, 42, 128, 1, fake_encode, &failing, &ids, &n), QV_ERR_INVALID);
    cr_expect_str_eq(qv_last_error(), "fake tokenizer: refused 13");
    qv_textdata_close(&d);
    free(path);

    path = write_tmp("arr.json", " [{\"text\": \"a\"}]");
    cr_expect_eq(qv_textdata_open(path, &d), QV_ERR_UNSUPPORTED);
    snprintf(msg, sizeof msg, "%s: a JSON array of documents; convert it to JSON Lines (one {\"text\": ...} object "
                              "per line)", path);
    cr_expect_str_eq(qv_last_error(), msg);
    cr_expect_null(d.rows);
    free(path);
    cr_expect_eq(qv_textdata_open("val.jsonl.zst", &d), QV_ERR_UNSUPPORTED);
    cr_expect_str_eq(qv_last_error(), "val.jsonl.zst: compressed text data is not read directly; decompress it first");
    cr_expect_eq(qv_textdata_open("/nonexistent/pile.jsonl", &d), QV_ERR_IO);
    cr_expect_str_eq(qv_last_error(), "/nonexistent/pile.jsonl: No such file or directory");
}

Test(pytext, strip_and_lines)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"  a b \t\n", "a b"},
        {"\xe3\x80\x80x\xc2\xa0", "x"},           /* U+3000, U+00A0 */
        {"\xe2\x80\xa8x\xe2\x80\x8b", "x\xe2\x80\x8b"}, /* U+2028 is space, U+200B (ZWSP) is not */
        {"\x1c\x1fy\x0b\x0c", "y"},
        {"\xff z \xff", "\xff z \xff"},           /* undecodable bytes are not space */
        {"   ", ""},
        {"", ""},
    };
    for (size_t i = 0; i < QV_ARRAY_LEN(cases); i++) {
        size_t b = 0, e = strlen(cases[i].in);
        qv_py_strip(cases[i].in, &b, &e);
        cr_expect_eq(e - b, strlen(cases[i].out), "case %zu", i);
        cr_expect(memcmp(cases[i].in + b, cases[i].out, e - b) == 0, "case %zu", i);
    }
    const char *s = "a\r\nb\rc\n\nd";
    const char *want[] = {"a", "b", "c", "", "d"};
    size_t pos = 0, b, e, k = 0;
    while (qv_py_next_line(s, strlen(s), &pos, &b, &e)) {
        cr_assert_lt(k, 5);
        cr_expect_eq(e - b, strlen(want[k]));
        cr_expect(memcmp(s + b, want[k], e - b) == 0);
        k++;
    }
    cr_expect_eq(k, 5);
}
