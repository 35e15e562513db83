/* test_tok_parts.c — the building blocks of src/tok checked on their own: the JSON scanner that
 * reads tokenizer.json vocabularies, UTF-8 repair (Rust from_utf8_lossy's maximal subparts), the
 * region-wise NFC (against utf8proc on the whole text), the Oniguruma whitespace rule of the
 * pre-tokeniser, and BPE merge order on a hand-made vocabulary. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "core/fsutil.h"
#include "tok/json_scan.h"
#include "tok/tok_internal.h"
#include "tok/utf8.h"
#include "util/testutil.h"

/* ---- json_scan ----------------------------------------------------------------------------- */

Test(json_scan, reads_members_strings_and_spans)
{
    const char *doc = " {\"a\\u00e9\\ud83d\\ude00\\n\": 17, \"b\": [1, -2.5e3, true, null, {\"c\": \"x\"}], \"d\": \"\"} ";
    qv_jscan j;
    qv_jscan_init(&j, doc, strlen(doc), "t.json");
    qv_strbuf key;
    qv_sb_init(&key);
    bool more;
    int64_t v;
    const char *span;
    size_t sl;
    cr_assert_eq(qv_jscan_open(&j, '{'), QV_OK);
    cr_assert_eq(qv_jscan_more(&j, '{', 0, &more), QV_OK);
    cr_assert(more);
    cr_assert_eq(qv_jscan_key(&j, &key), QV_OK);
    cr_assert_str_eq(key.s, "a\xC3\xA9\xF0\x9F\x98\x80\n");
    cr_assert_eq(qv_jscan_uint(&j, &v), QV_OK);
    cr_assert_eq(v, 17);
    cr_assert_eq(qv_jscan_more(&j, '{', 1, &more), QV_OK);
    cr_assert_eq(qv_jscan_key(&j, &key), QV_OK);
    cr_assert_eq(qv_jscan_value(&j, &span, &sl), QV_OK);
    cr_assert_eq(sl, strlen("[1, -2.5e3, true, null, {\"c\": \"x\"}]"));
    cr_assert_eq(strncmp(span, "[1, -2.5e3", 10), 0);
    cr_assert_eq(qv_jscan_more(&j, '{', 2, &more), QV_OK);
    cr_assert_eq(qv_jscan_key(&j, &key), QV_OK);
    cr_assert_eq(qv_jscan_string(&j, &key), QV_OK);
    cr_assert_str_eq(key.s, "");
    cr_assert_eq(qv_jscan_more(&j, '{', 3, &more), QV_OK);
    cr_assert(!more);
    cr_assert_eq(qv_jscan_finish(&j), QV_OK);
    qv_sb_free(&key);
}

Test(json_scan, rejects_malformed_text)
{
    static const char *const bad[] = {
        "[1,]", "{\"a\":1,}", "[\"\\ud800\"]", "[\"\\udc00x\"]", "[\"a\tb\"]", "[\"\xC3(\"]", "[01]", "[\"abc",
        "[1] x", "{\"a\" 1}", "[tru]", "[\"\\x\"]", "[1.]", "[-]", "{1:2}", "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        qv_jscan j;
        qv_jscan_init(&j, bad[i], strlen(bad[i]), "t.json");
        const char *s;
        size_t n;
        qv_status st = qv_jscan_value(&j, &s, &n);
        if (st == QV_OK)
            st = qv_jscan_finish(&j);
        cr_assert_eq(st, QV_ERR_FORMAT, "accepted %s", bad[i]);
        cr_assert(!strncmp(qv_last_error(), "t.json: invalid JSON at line 1 column ", 38), "%s", qv_last_error());
    }
    char deep[200];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    qv_jscan j;
    qv_jscan_init(&j, deep, sizeof deep, "t.json");
    const char *s;
    size_t n;
    cr_assert_eq(qv_jscan_value(&j, &s, &n), QV_ERR_FORMAT);
    cr_assert_not_null(strstr(qv_last_error(), "nesting too deep"));
    /* integers for vocabulary ids: no sign, fraction or exponent */
    static const char *const notuint[] = {"-1", "1.0", "1e3", "99999999999999999999"};
    for (size_t i = 0; i < 4; i++) {
        int64_t v;
        qv_jscan_init(&j, notuint[i], strlen(notuint[i]), "t.json");
        cr_assert_eq(qv_jscan_uint(&j, &v), QV_ERR_FORMAT, "accepted %s", notuint[i]);
    }
}

/* ---- UTF-8 ---------------------------------------------------------------------------------- */

Test(utf8, lossy_replaces_maximal_subparts)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"a\xE4\xB8", "a\xEF\xBF\xBD"},                              /* truncated 3-byte sequence: one U+FFFD */
        {"\xE0\x80z", "\xEF\xBF\xBD\xEF\xBF\xBDz"},                  /* overlong lead: each byte */
        {"\xED\xA0\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},    /* surrogate */
        {"\xF0\x9F\x98\x80\xFF", "\xF0\x9F\x98\x80\xEF\xBF\xBD"},    /* valid emoji, then 0xFF */
        {"\xF4\x90\x80\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}, /* above U+10FFFF */
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        qv_strbuf b;
        qv_sb_init(&b);
        qv_utf8_append_lossy(&b, cases[i].in, strlen(cases[i].in));
        cr_assert_str_eq(b.s, cases[i].out, "case %zu", i);
        qv_sb_free(&b);
    }
    cr_assert_eq(qv_utf8_check("ok\xC3\xA9", 4), 4);
    cr_assert_eq(qv_utf8_check("ok\xC0\xAF", 4), 2);
}

/* ---- NFC by regions ------------------------------------------------------------------------- */

static qv_pretok *make_pretok(const char *json)
{
    qv_json *root;
    cr_assert_eq(qv_json_parse(json, strlen(json), "t", 0, &root), QV_OK);
    qv_pretok *p;
    cr_assert_eq(qv_pretok_load(root, "t", &p), QV_OK, "%s", qv_last_error());
    qv_json_free(root);
    return p;
}

Test(normalizer, nfc_by_regions_equals_whole_text)
{
    static const char *const pool[] = {
        "a", "e", "K", " ", "\n", "\xCC\x81" /* U+0301 */, "\xCC\xA3" /* U+0323, reorders */, "\xCC\xA7",
        "\xC3\xA9" /* é */, "\xE2\x84\xAA" /* Kelvin: NFC gives K */, "\xE1\x84\x80" /* Hangul L */,
        "\xE1\x85\xA1" /* V */, "\xE1\x86\xA8" /* T */, "\xEA\xB0\x80" /* 가 */, "\xE4\xB8\xAD", "\xEF\xA4\x80" /* CJK compat */,
        "\xC3\x85", "\xE2\x80\x8B",
    };
    qv_pretok *p = make_pretok("{\"normalizer\":{\"type\":\"NFC\"},\"pre_tokenizer\":{\"type\":\"ByteLevel\"}}");
    unsigned seed = 7;
    for (int it = 0; it < 2000; it++) {
        char text[512] = "";
        int n = 1 + rand_r(&seed) % 24;
        for (int k = 0; k < n; k++)
            strcat(text, pool[rand_r(&seed) % (sizeof pool / sizeof *pool)]);
        char *got;
        size_t gl;
        cr_assert_eq(qv_pretok_normalize(p, text, strlen(text), &got, &gl), QV_OK);
        char *want = (char *)utf8proc_NFC((const utf8proc_uint8_t *)text);
        const char *g = got ? got : text;
        size_t glen = got ? gl : strlen(text);
        cr_assert(glen == strlen(want) && !memcmp(g, want, glen), "NFC differs on iteration %d", it);
        free(want);
        free(got);
    }
    qv_pretok_free(p);
}

/* ---- pre-tokeniser -------------------------------------------------------------------------- */

typedef struct words {
    char w[16][32];
    int n;
} words;

static qv_status collect(void *ctx, const char *s, size_t n)
{
    words *w = ctx;
    if (w->n < 16 && n < 32) {
        memcpy(w->w[w->n], s, n);
        w->w[w->n][n] = 0;
    }
    w->n++;
    return QV_OK;
}

/* `tokenizers` runs the Qwen2 regex on Oniguruma, whose \s is [\t\n\v\f\r\x85\p{Z}]: U+180E
 * (Mongolian vowel separator, Cf since Unicode 6.3) is not whitespace there, as it is for
 * PCRE2's \s. */
Test(pretokenizer, oniguruma_whitespace)
{
    qv_pretok *p = make_pretok(
        "{\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":"
        "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*"
        "|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"},\"behavior\":\"Isolated\",\"invert\":false},"
        "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":false,\"use_regex\":false}]}}");
    words w = {.n = 0};
    const char *t = "a\xE1\xA0\x8E!b c\xC2\xA0" "d";
    cr_assert_eq(qv_pretok_split(p, t, strlen(t), collect, &w), QV_OK);
    cr_assert_eq(w.n, 5);
    cr_assert_str_eq(w.w[0], "a");
    cr_assert_str_eq(w.w[1], "\xE1\xA0\x8E!"); /* U+180E is punctuation-like: [^\s\p{L}\p{N}]+ (PCRE2: "\u180E", "!") */
    cr_assert_str_eq(w.w[2], "b");
    cr_assert_str_eq(w.w[3], " c");
    cr_assert_str_eq(w.w[4], "\xC2\xA0" "d"); /* NBSP is \p{Z}: [^\r\n\p{L}\p{N}]? takes it */
    w.n = 0;
    const char *u = "x  \n\n  y's 42";
    cr_assert_eq(qv_pretok_split(p, u, strlen(u), collect, &w), QV_OK);
    cr_assert_eq(w.n, 8);
    static const char *const want[] = {"x", "  \n\n", " ", " y", "'s", " ", "4", "2"};
    for (int i = 0; i < 8; i++)
        cr_assert_str_eq(w.w[i], want[i], "word %d", i);
    qv_pretok_free(p);
}

/* ---- BPE merge order on a hand-made model --------------------------------------------------- */

static qv_tokenizer *tiny_bpe(const char *vocab, const char *merges)
{
    char *dir = qt_tmpdir(), path[512], json[4096];
    snprintf(json, sizeof json,
             "{\"added_tokens\":[],\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
             "\"use_regex\":false},\"post_processor\":null,\"decoder\":{\"type\":\"ByteLevel\"},"
             "\"model\":{\"type\":\"BPE\",\"vocab\":%s,\"merges\":%s}}",
             vocab, merges);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    cr_assert_eq(qv_write_file_atomic(path, json, strlen(json)), QV_OK);
    qv_tokenizer *t;
    cr_assert_eq(qv_tokenizer_load(dir, &t), QV_OK, "%s", qv_last_error());
    free(dir);
    return t;
}

static void expect_encoding(qv_tokenizer *t, const char *text, const int32_t *want, size_t n)
{
    qv_vec ids;
    qv_vec_init(&ids, sizeof(int32_t));
    cr_assert_eq(qv_tokenizer_encode(t, text, strlen(text), true, &ids), QV_OK);
    cr_assert_eq(ids.len, n, "%s: %zu ids", text, ids.len);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(QV_VEC_AT(&ids, int32_t, i), want[i], "%s: id %zu", text, i);
    qv_vec_free(&ids);
}

Test(bpe, lowest_rank_first_then_leftmost)
{
    /* "aaa": rule (a,a) applies at 0 and 1; leftmost wins -> [aa, a].
     * "abc": (b,c) has a lower rank than (a,b) -> [a, bc] although (a,b) comes first. */
    qv_tokenizer *t = tiny_bpe("{\"a\":0,\"b\":1,\"c\":2,\"aa\":3,\"bc\":4,\"ab\":5,\"abc\":6,\"aab\":7}",
                               "[[\"a\",\"a\"],\"b c\",[\"a\",\"b\"],[\"a\",\"bc\"],[\"aa\",\"b\"]]");
    expect_encoding(t, "aaa", (int32_t[]){3, 0}, 2);
    expect_encoding(t, "abc", (int32_t[]){6}, 1);   /* b+c (rank 1), then a+bc (rank 3) */
    expect_encoding(t, "aab", (int32_t[]){7}, 1);   /* a+a (0) before a+b (2), then aa+b */
    expect_encoding(t, "ba", (int32_t[]){1, 0}, 2); /* no rule */
    expect_encoding(t, "d", NULL, 0);               /* no token for the byte, no unk: dropped */
    qv_tokenizer_free(t);
}
