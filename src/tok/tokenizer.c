/* tokenizer.c — loading a model folder's tokenizer and the encode/decode entry points
 * (tokenizer.h; fixtures README §3, §13.2, §14.1).
 *
 * Added tokens are matched in the text before the model runs, leftmost first and longest at a
 * position (the aho-corasick LeftmostLongest of `tokenizers`, the Trie of transformers' slow
 * tokenizers). For tokenizer.json they come from "added_tokens" (plus tokenizer_config
 * added_tokens_decoder entries it lacks); tokens with normalized=false are matched on the raw
 * text, the others on the normalised text, as `tokenizers`' AddedVocabulary does. For a
 * SentencePiece model they come from tokenizer_config added_tokens_decoder, added_tokens.json
 * and the named special tokens, all matched on the raw text (InternLM2's slow tokenizer). */
#include <string.h>

#include "../core/fsutil.h"
#include "../core/strmap.h"
#include "tok_internal.h"
#include "utf8.h"

typedef struct added_tok {
    char *content;
    size_t len;
    int32_t id;
    bool special, normalized, lstrip, rstrip, single_word;
} added_tok;

/* Added tokens of one matching pass, indexed by first byte, longest first. */
typedef struct matcher {
    uint32_t start[257];
    int32_t *idx; /* indices into added[] */
} matcher;

typedef enum special_kind { SP_BOS, SP_EOS, SP_PAD, SP_UNK, SP_COUNT } special_kind;
static const char *const special_key[SP_COUNT] = {"bos_token", "eos_token", "pad_token", "unk_token"};

struct qv_tokenizer {
    qv_tokenizer_kind kind;
    char *file;          /* tokenizer.json or tokenizer.model, for messages */
    qv_bpe *bpe;
    qv_pretok *pretok;
    bool decoder_bytelevel; /* tokenizer.json "decoder": ByteLevel, else null (tokens joined by " ") */
    qv_spm *spm;
    added_tok *added;
    size_t n_added;
    qv_strmap added_map; /* content -> index */
    int32_t *added_of_id; /* [id_end] index into added, -1 */
    matcher raw, norm;    /* BPE: normalized=false / true; SPM: every token in raw */
    size_t id_end, vocab_size;
    int32_t special[SP_COUNT];
    char *special_tok[SP_COUNT];
    bool add_bos, add_eos; /* SentencePiece (tokenizer_config) */
    qv_vec post_prefix, post_suffix; /* tokenizer.json post_processor: int32 ids */
};

/* ---- added tokens ------------------------------------------------------------------------ */

static qv_status add_token(qv_tokenizer *t, const char *content, size_t len, int64_t id, bool special, bool normalized,
                           bool lstrip, bool rstrip, bool single_word, const char *file)
{
    if (!len)
        return qv_fail(QV_ERR_FORMAT, "%s: empty added token", file);
    if (id < 0 || id >= QV_TOKENIZER_MAX_ID)
        return qv_fail(QV_ERR_FORMAT, "%s: added token \"%.40s\" has id %lld out of range", file, content, (long long)id);
    if (qv_utf8_check(content, len) != len)
        return qv_fail(QV_ERR_FORMAT, "%s: added token is not valid UTF-8", file);
    int64_t k;
    if (qv_strmap_get(&t->added_map, content, len, &k))
        return QV_OK; /* first definition wins (tokenizer.json before tokenizer_config.json) */
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].id == id)
            return QV_OK;
    added_tok *na = qv_realloc(t->added, (t->n_added + 1) * sizeof *na, "added tokens");
    if (!na)
        return QV_ERR_NOMEM;
    t->added = na;
    added_tok *a = &t->added[t->n_added];
    *a = (added_tok){qv_strndup(content, len), len, (int32_t)id, special, normalized, lstrip, rstrip, single_word};
    if (!a->content)
        return QV_ERR_NOMEM;
    QV_TRY(qv_strmap_put(&t->added_map, content, len, (int64_t)t->n_added, NULL));
    t->n_added++;
    return QV_OK;
}

/* One added-token description (tokenizer.json added_tokens[i] or added_tokens_decoder[id]). */
static qv_status add_token_json(qv_tokenizer *t, const qv_json *j, int64_t id, const char *file)
{
    const char *content;
    bool special = false, normalized = false, lstrip = false, rstrip = false, single_word = false;
    if (id < 0)
        QV_TRY(qv_json_int(j, "id", file, &id));
    QV_TRY(qv_json_str(j, "content", file, &content));
    QV_TRY(qv_json_bool_opt(j, "special", file, &special));
    normalized = !special; /* `tokenizers`' default for a token without the field */
    QV_TRY(qv_json_bool_opt(j, "normalized", file, &normalized));
    QV_TRY(qv_json_bool_opt(j, "lstrip", file, &lstrip));
    QV_TRY(qv_json_bool_opt(j, "rstrip", file, &rstrip));
    QV_TRY(qv_json_bool_opt(j, "single_word", file, &single_word));
    size_t len = (size_t)json_object_get_string_len(qv_json_get(j, "content"));
    return add_token(t, content, len, id, special, normalized, lstrip, rstrip, single_word, file);
}

static qv_status add_tokens_decoder(qv_tokenizer *t, const qv_json *cfg, const char *file)
{
    qv_json *dec = qv_json_get(cfg, "added_tokens_decoder");
    if (!dec || qv_json_is_type(dec, json_type_null))
        return QV_OK;
    if (!qv_json_is_type(dec, json_type_object))
        return qv_fail(QV_ERR_FORMAT, "%s: added_tokens_decoder: expected an object", file);
    json_object_object_foreach(dec, k, v)
    {
        char *end;
        long long id = strtoll(k, &end, 10);
        if (*end || end == k || id < 0)
            return qv_fail(QV_ERR_FORMAT, "%s: added_tokens_decoder: key \"%.40s\" is not an id", file, k);
        QV_TRY(add_token_json(t, v, id, file));
    }
    return QV_OK;
}

static int cmp_len_desc(const void *a, const void *b, void *ctx)
{
    const added_tok *added = ctx;
    size_t la = added[*(const int32_t *)a].len, lb = added[*(const int32_t *)b].len;
    if (la != lb)
        return la > lb ? -1 : 1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

/* which: 0 = tokens with normalized=false, 1 = normalized=true, 2 = all */
static qv_status build_matcher(qv_tokenizer *t, matcher *m, int which)
{
    memset(m->start, 0, sizeof m->start);
    m->idx = qv_malloc((t->n_added + 1) * sizeof *m->idx, "added-token index");
    if (!m->idx)
        return QV_ERR_NOMEM;
    size_t n = 0;
    for (int c = 0; c < 256; c++) {
        m->start[c] = (uint32_t)n;
        size_t first = n;
        for (size_t i = 0; i < t->n_added; i++) {
            const added_tok *a = &t->added[i];
            if ((unsigned char)a->content[0] == c && (which == 2 || a->normalized == (which == 1)))
                m->idx[n++] = (int32_t)i;
        }
        qsort_r(m->idx + first, n - first, sizeof *m->idx, cmp_len_desc, t->added);
    }
    m->start[256] = (uint32_t)n;
    return QV_OK;
}

static bool is_white_space(uint32_t c) /* Unicode White_Space, as Rust's char::is_whitespace */
{
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
           c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static bool is_word_char(uint32_t c)
{
    return c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

/* Code point that ends at s[0..i) (i > 0, valid UTF-8). */
static uint32_t cp_before(const char *s, size_t i)
{
    size_t j = i - 1, len;
    while (j > 0 && ((unsigned char)s[j] & 0xC0) == 0x80)
        j--;
    return qv_utf8_decode((const unsigned char *)s + j, &len);
}

typedef struct seg_sink {
    qv_status (*text)(void *ctx, const char *s, size_t n);
    void *ctx;
    qv_vec *ids;
} seg_sink;

/* Splits s[0..n) on the tokens of m: token ids go to sink->ids, the text between to sink->text. */
static qv_status split_added(const qv_tokenizer *t, const matcher *m, const char *s, size_t n, const seg_sink *sink)
{
    size_t seg = 0, i = 0; /* seg: start of the pending text */
    while (i < n) {
        unsigned c = (unsigned char)s[i];
        const added_tok *hit = NULL;
        for (uint32_t k = m->start[c]; k < m->start[c + 1]; k++) {
            const added_tok *a = &t->added[m->idx[k]];
            if (a->len <= n - i && !memcmp(s + i, a->content, a->len)) {
                hit = a;
                break;
            }
        }
        if (!hit) {
            i++;
            continue;
        }
        size_t a0 = i, b0 = i + hit->len, len;
        if (hit->single_word && ((a0 > 0 && is_word_char(cp_before(s, a0))) ||
                                 (b0 < n && is_word_char(qv_utf8_decode((const unsigned char *)s + b0, &len))))) {
            i = b0; /* not a whole word: the text stays text, scanning resumes after it */
            continue;
        }
        if (hit->lstrip)
            while (a0 > seg && is_white_space(cp_before(s, a0))) {
                size_t j = a0 - 1;
                while (j > seg && ((unsigned char)s[j] & 0xC0) == 0x80)
                    j--;
                a0 = j;
            }
        if (hit->rstrip)
            while (b0 < n && is_white_space(qv_utf8_decode((const unsigned char *)s + b0, &len)))
                b0 += len;
        if (a0 > seg)
            QV_TRY(sink->text(sink->ctx, s + seg, a0 - seg));
        QV_TRY(qv_vec_push(sink->ids, &hit->id));
        seg = i = b0;
    }
    if (n > seg)
        QV_TRY(sink->text(sink->ctx, s + seg, n - seg));
    return QV_OK;
}

/* ---- encoding ------------------------------------------------------------------------------ */

typedef struct enc_ctx {
    qv_tokenizer *t;
    qv_vec *ids;
} enc_ctx;

static qv_status bpe_word(void *ctx, const char *w, size_t n)
{
    enc_ctx *e = ctx;
    return qv_bpe_encode_word(e->t->bpe, (const unsigned char *)w, n, e->ids);
}

static qv_status bpe_normalized_text(void *ctx, const char *s, size_t n)
{
    enc_ctx *e = ctx;
    return qv_pretok_split(e->t->pretok, s, n, bpe_word, e);
}

static qv_status bpe_raw_text(void *ctx, const char *s, size_t n)
{
    enc_ctx *e = ctx;
    char *norm;
    size_t nn;
    QV_TRY(qv_pretok_normalize(e->t->pretok, s, n, &norm, &nn));
    const char *x = norm ? norm : s;
    size_t xn = norm ? nn : n;
    seg_sink sink = {bpe_normalized_text, e, e->ids};
    qv_status st = split_added(e->t, &e->t->norm, x, xn, &sink);
    qv_free(norm);
    return st;
}

static qv_status spm_text(void *ctx, const char *s, size_t n)
{
    enc_ctx *e = ctx;
    return qv_spm_encode(e->t->spm, s, n, e->ids);
}

static qv_status push_all(qv_vec *ids, const qv_vec *src)
{
    for (size_t i = 0; i < src->len; i++)
        QV_TRY(qv_vec_push(ids, &QV_VEC_AT(src, int32_t, i)));
    return QV_OK;
}

qv_status qv_tokenizer_encode(qv_tokenizer *t, const char *text, size_t len, bool add_special, qv_vec *ids)
{
    if (ids->elem != sizeof(int32_t))
        return qv_fail(QV_ERR_INTERNAL, "qv_tokenizer_encode: ids must be a vector of int32_t");
    size_t bad = qv_utf8_check(text, len);
    if (bad != len)
        return qv_fail(QV_ERR_INVALID, "text: invalid UTF-8 at byte %zu", bad);
    size_t start = ids->len;
    enc_ctx e = {t, ids};
    qv_status st;
    if (t->kind == QV_TOKENIZER_SPM) {
        if (add_special && t->add_bos && t->special[SP_BOS] >= 0)
            QV_TRY(qv_vec_push(ids, &t->special[SP_BOS]));
        seg_sink sink = {spm_text, &e, ids};
        st = split_added(t, &t->raw, text, len, &sink);
        if (st == QV_OK && add_special && t->add_eos && t->special[SP_EOS] >= 0)
            st = qv_vec_push(ids, &t->special[SP_EOS]);
    } else {
        st = add_special ? push_all(ids, &t->post_prefix) : QV_OK;
        seg_sink sink = {bpe_raw_text, &e, ids};
        if (st == QV_OK)
            st = split_added(t, &t->raw, text, len, &sink);
        if (st == QV_OK && add_special)
            st = push_all(ids, &t->post_suffix);
    }
    if (st != QV_OK)
        ids->len = start;
    return st;
}

/* ---- decoding ------------------------------------------------------------------------------ */

static const added_tok *added_of(const qv_tokenizer *t, int32_t id)
{
    if (id < 0 || (size_t)id >= t->id_end || t->added_of_id[id] < 0)
        return NULL;
    return &t->added[t->added_of_id[id]];
}

/* ByteLevel decoder, per token: the bytes its characters stand for, or the token's own UTF-8
 * when one character is outside the byte alphabet (`tokenizers` decoders::byte_level). */
static void bytelevel_token(const char *s, size_t n, qv_strbuf *raw)
{
    size_t start = raw->len;
    for (size_t i = 0; i < n;) {
        size_t k;
        int b = qv_utf8_valid_len((const unsigned char *)s + i, n - i)
                    ? qv_bytelevel_byte(qv_utf8_decode((const unsigned char *)s + i, &k))
                    : (k = 1, -1);
        if (b < 0) {
            raw->len = start;
            qv_sb_putn(raw, s, n);
            return;
        }
        unsigned char c = (unsigned char)b;
        qv_sb_putn(raw, (const char *)&c, 1);
        i += k;
    }
}

qv_status qv_tokenizer_decode(const qv_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, char **text,
                              size_t *len)
{
    *text = NULL;
    for (size_t i = 0; i < n; i++)
        if (!qv_tokenizer_id_to_token(t, ids[i]))
            return qv_fail(QV_ERR_INVALID, "token id %d is not in the vocabulary (%zu ids)", (int)ids[i], t->id_end);
    qv_strbuf out, raw;
    qv_sb_init(&out);
    qv_sb_init(&raw);
    if (t->kind == QV_TOKENIZER_SPM) {
        size_t run = 0;
        for (size_t i = 0; i <= n; i++) {
            const added_tok *a = i < n ? added_of(t, ids[i]) : NULL;
            if (i < n && !a)
                continue;
            qv_spm_decode_run(t->spm, ids + run, i - run, &out);
            run = i + 1;
            if (a && !(skip_special && a->special))
                qv_sb_putn(&out, a->content, a->len);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            const added_tok *a = added_of(t, ids[i]);
            if (a && skip_special && a->special)
                continue;
            size_t tl;
            const char *s = a ? a->content : qv_bpe_token(t->bpe, ids[i], &tl);
            if (a)
                tl = a->len;
            if (t->decoder_bytelevel) {
                bytelevel_token(s, tl, &raw);
            } else {
                if (raw.len)
                    qv_sb_putn(&raw, " ", 1);
                qv_sb_putn(&raw, s, tl);
            }
        }
        qv_utf8_append_lossy(&out, raw.s ? raw.s : "", raw.len);
    }
    bool oom = out.oom || raw.oom;
    qv_sb_free(&raw);
    if (oom) {
        qv_sb_free(&out);
        return qv_fail(QV_ERR_NOMEM, "out of memory (decode)");
    }
    if (!out.s && !(out.s = qv_strdup("")))
        return QV_ERR_NOMEM;
    *text = out.s;
    if (len)
        *len = out.len;
    return QV_OK;
}

/* ---- look-ups ------------------------------------------------------------------------------ */

int32_t qv_tokenizer_token_to_id(const qv_tokenizer *t, const char *token)
{
    int64_t k;
    size_t n = strlen(token);
    if (qv_strmap_get(&t->added_map, token, n, &k))
        return t->added[k].id;
    return t->kind == QV_TOKENIZER_SPM ? qv_spm_piece_to_id(t->spm, token, n) : qv_bpe_lookup(t->bpe, token, n);
}

const char *qv_tokenizer_id_to_token(const qv_tokenizer *t, int32_t id)
{
    const added_tok *a = added_of(t, id);
    if (a)
        return a->content;
    size_t len;
    return t->kind == QV_TOKENIZER_SPM ? qv_spm_piece(t->spm, id, &len) : qv_bpe_token(t->bpe, id, &len);
}

bool qv_tokenizer_is_special(const qv_tokenizer *t, int32_t id)
{
    const added_tok *a = added_of(t, id);
    return a && a->special;
}

qv_tokenizer_kind qv_tokenizer_kind_of(const qv_tokenizer *t) { return t->kind; }
int32_t qv_tokenizer_bos_id(const qv_tokenizer *t) { return t->special[SP_BOS]; }
int32_t qv_tokenizer_eos_id(const qv_tokenizer *t) { return t->special[SP_EOS]; }
int32_t qv_tokenizer_pad_id(const qv_tokenizer *t) { return t->special[SP_PAD]; }
int32_t qv_tokenizer_unk_id(const qv_tokenizer *t) { return t->special[SP_UNK]; }
const char *qv_tokenizer_bos_token(const qv_tokenizer *t) { return t->special[SP_BOS] >= 0 ? t->special_tok[SP_BOS] : NULL; }
bool qv_tokenizer_adds_bos(const qv_tokenizer *t)
{
    if (t->kind == QV_TOKENIZER_SPM)
        return t->add_bos && t->special[SP_BOS] >= 0;
    return t->post_prefix.len && t->special[SP_BOS] >= 0 && QV_VEC_AT(&t->post_prefix, int32_t, 0) == t->special[SP_BOS];
}
size_t qv_tokenizer_vocab_size(const qv_tokenizer *t) { return t->vocab_size; }

/* ---- loading ------------------------------------------------------------------------------- */

/* tokenizer.json post_processor: ids added around a single sequence with add_special. */
static qv_status load_post(qv_tokenizer *t, const qv_json *pp, const char *file, int depth)
{
    if (!pp || qv_json_is_type(pp, json_type_null))
        return QV_OK;
    const char *type;
    QV_TRY(qv_json_str(pp, "type", file, &type));
    if (!strcmp(type, "ByteLevel"))
        return QV_OK; /* offsets only */
    if (!strcmp(type, "Sequence") && depth == 0) {
        qv_json *list;
        QV_TRY(qv_json_arr(pp, "processors", file, &list));
        for (size_t i = 0; i < json_object_array_length(list); i++)
            QV_TRY(load_post(t, json_object_array_get_idx(list, i), file, depth + 1));
        return QV_OK;
    }
    if (strcmp(type, "TemplateProcessing"))
        return qv_fail(QV_ERR_UNSUPPORTED,
                       "%s: post_processor type \"%s\" is not supported (qvlm implements ByteLevel, TemplateProcessing)",
                       file, type);
    qv_json *single, *specials;
    QV_TRY(qv_json_arr(pp, "single", file, &single));
    QV_TRY(qv_json_obj(pp, "special_tokens", file, &specials));
    bool seen_seq = false;
    for (size_t i = 0; i < json_object_array_length(single); i++) {
        qv_json *it = json_object_array_get_idx(single, i), *sp = qv_json_get(it, "SpecialToken");
        if (qv_json_get(it, "Sequence")) {
            seen_seq = true;
            continue;
        }
        const char *name;
        qv_json *desc, *arr;
        if (!sp)
            return qv_fail(QV_ERR_FORMAT, "%s: post_processor.single[%zu] is neither Sequence nor SpecialToken", file, i);
        QV_TRY(qv_json_str(sp, "id", file, &name));
        if (!(desc = qv_json_get(specials, name)))
            return qv_fail(QV_ERR_FORMAT, "%s: post_processor: special token \"%.40s\" is not described", file, name);
        QV_TRY(qv_json_arr(desc, "ids", file, &arr));
        for (size_t k = 0; k < json_object_array_length(arr); k++) {
            int64_t id;
            if (!qv_json_as_int(json_object_array_get_idx(arr, k), &id) || id < 0 || id >= QV_TOKENIZER_MAX_ID)
                return qv_fail(QV_ERR_FORMAT, "%s: post_processor: bad id for \"%.40s\"", file, name);
            int32_t id32 = (int32_t)id;
            QV_TRY(qv_vec_push(seen_seq ? &t->post_suffix : &t->post_prefix, &id32));
        }
    }
    return QV_OK;
}

/* Parses one member value with json-c and adds it to obj under key. */
static qv_status add_member(qv_json *obj, const char *key, const char *text, size_t len, const char *file)
{
    if (len == 4 && !memcmp(text, "null", 4)) { /* json-c represents null by NULL */
        json_object_object_add(obj, key, NULL);
        return QV_OK;
    }
    /* with its NUL, json-c knows where a bare number or literal ends */
    char *copy = qv_strndup(text, len);
    if (!copy)
        return QV_ERR_NOMEM;
    qv_json *v;
    qv_status st = qv_json_parse(copy, len + 1, file, 0, &v);
    qv_free(copy);
    if (st == QV_OK)
        json_object_object_add(obj, key, v);
    return st;
}

/* tokenizer.json: every member except model.vocab and model.merges goes through json-c; those
 * two are left to the BPE loader's scanner (json_scan.h says why). */
static qv_status load_bpe(qv_tokenizer *t, const char *text, size_t len, const char *path)
{
    qv_json *root = json_object_new_object(), *model = NULL;
    qv_jscan j, vocab, merges;
    bool has_vocab = false, has_merges = false, more;
    qv_strbuf key;
    qv_sb_init(&key);
    qv_jscan_init(&j, text, len, path);
    qv_status st = root ? qv_jscan_open(&j, '{') : qv_fail(QV_ERR_NOMEM, "out of memory (JSON)");
    for (size_t i = 0; st == QV_OK; i++) {
        const char *v;
        size_t vl;
        if ((st = qv_jscan_more(&j, '{', i, &more)) != QV_OK || !more || (st = qv_jscan_key(&j, &key)) != QV_OK)
            break;
        if (strcmp(key.s, "model") || qv_jscan_peek(&j) != '{') {
            if ((st = qv_jscan_value(&j, &v, &vl)) == QV_OK)
                st = add_member(root, key.s, v, vl, path);
            continue;
        }
        json_object_object_add(root, "model", model = json_object_new_object());
        if (!model) {
            st = qv_fail(QV_ERR_NOMEM, "out of memory (JSON)");
            break;
        }
        st = qv_jscan_open(&j, '{');
        for (size_t k = 0; st == QV_OK; k++) {
            if ((st = qv_jscan_more(&j, '{', k, &more)) != QV_OK || !more || (st = qv_jscan_key(&j, &key)) != QV_OK)
                break;
            bool is_vocab = !strcmp(key.s, "vocab"), is_merges = !strcmp(key.s, "merges");
            if (is_vocab || is_merges) { /* remember where the value starts */
                *(is_vocab ? &vocab : &merges) = j;
                *(is_vocab ? &has_vocab : &has_merges) = true;
            }
            if ((st = qv_jscan_value(&j, &v, &vl)) == QV_OK && !is_vocab && !is_merges)
                st = add_member(model, key.s, v, vl, path);
        }
    }
    if (st == QV_OK)
        st = qv_jscan_finish(&j);
    qv_sb_free(&key);
    if (st == QV_OK && !model)
        st = qv_fail(QV_ERR_INVALID, "%s: missing field \"model\" (an object)", path);
    qv_json *added = qv_json_get(root, "added_tokens"), *dec = qv_json_get(root, "decoder");
    if (st == QV_OK)
        st = qv_bpe_load(model, has_vocab ? &vocab : NULL, has_merges ? &merges : NULL, path, &t->bpe);
    if (st == QV_OK)
        st = qv_pretok_load(root, path, &t->pretok);
    if (st == QV_OK)
        st = load_post(t, qv_json_get(root, "post_processor"), path, 0);
    if (st == QV_OK && dec && !qv_json_is_type(dec, json_type_null)) {
        const char *type;
        st = qv_json_str(dec, "type", path, &type);
        if (st == QV_OK && strcmp(type, "ByteLevel"))
            st = qv_fail(QV_ERR_UNSUPPORTED, "%s: decoder type \"%s\" is not supported (qvlm implements ByteLevel)", path,
                         type);
        t->decoder_bytelevel = true;
    }
    if (st == QV_OK && added && !qv_json_is_type(added, json_type_null)) {
        if (!qv_json_is_type(added, json_type_array))
            st = qv_fail(QV_ERR_FORMAT, "%s: added_tokens: expected an array", path);
        for (size_t i = 0; st == QV_OK && i < json_object_array_length(added); i++)
            st = add_token_json(t, json_object_array_get_idx(added, i), -1, path);
    }
    qv_json_free(root);
    return st;
}

/* "bos_token": "<s>" | {"content": "<s>", ...} | null. *present tells whether the key exists. */
static qv_status special_text(const qv_json *cfg, const char *key, const char *file, const char **out, bool *present)
{
    qv_json *v = qv_json_get(cfg, key);
    *out = NULL;
    *present = v != NULL;
    if (!v || qv_json_is_type(v, json_type_null))
        return QV_OK;
    if (qv_json_is_type(v, json_type_string)) {
        *out = json_object_get_string(v);
        return QV_OK;
    }
    return qv_json_str(v, "content", file, out);
}

/* Loads dir/name when it exists (*out NULL otherwise); *path gets the file's path (the
 * tokenizer file itself when dir is NULL: nothing is read then). */
static qv_status load_config_file(const qv_tokenizer *t, const char *dir, const char *name, char **path,
                                  qv_json **out)
{
    *out = NULL;
    if (!(*path = dir ? qv_path_join(dir, name) : qv_strdup(t->file)))
        return QV_ERR_NOMEM;
    return dir && qv_path_exists(*path) ? qv_json_load_file(*path, 0, out) : QV_OK;
}

/* Specials and added-token extras from tokenizer_config.json, special_tokens_map.json and
 * (SentencePiece) added_tokens.json of dir (none when dir is NULL). */
static qv_status load_specials(qv_tokenizer *t, const char *dir)
{
    qv_json *cfg = NULL, *map = NULL, *extra = NULL;
    char *cfg_p = NULL, *map_p = NULL, *extra_p = NULL;
    qv_status st = load_config_file(t, dir, "tokenizer_config.json", &cfg_p, &cfg);
    if (st == QV_OK)
        st = load_config_file(t, dir, "special_tokens_map.json", &map_p, &map);
    if (st == QV_OK && t->kind == QV_TOKENIZER_SPM)
        st = load_config_file(t, dir, "added_tokens.json", &extra_p, &extra);
    if (st == QV_OK)
        st = add_tokens_decoder(t, cfg, cfg_p);
    t->add_bos = true;
    t->add_eos = false;
    if (st == QV_OK)
        st = qv_json_bool_opt(cfg, "add_bos_token", cfg_p, &t->add_bos);
    if (st == QV_OK)
        st = qv_json_bool_opt(cfg, "add_eos_token", cfg_p, &t->add_eos);
    for (int k = 0; k < SP_COUNT && st == QV_OK; k++) {
        const char *s = NULL;
        bool present = false;
        st = special_text(cfg, special_key[k], cfg_p, &s, &present);
        if (st == QV_OK && !present)
            st = special_text(map, special_key[k], map_p, &s, &present);
        t->special[k] = -1;
        if (st != QV_OK)
            break;
        if (!present && t->kind == QV_TOKENIZER_SPM && !cfg) { /* a bare tokenizer.model */
            int32_t id = qv_spm_trainer_id(t->spm, "bepu"[k]);
            size_t n;
            s = id >= 0 ? qv_spm_piece(t->spm, id, &n) : NULL;
        }
        if (!s)
            continue;
        if (!(t->special_tok[k] = qv_strdup(s))) {
            st = QV_ERR_NOMEM;
            break;
        }
        int32_t id = qv_tokenizer_token_to_id(t, s);
        t->special[k] = id;
        /* the slow tokenizer never splits a special token it knows */
        if (t->kind == QV_TOKENIZER_SPM && id >= 0)
            st = add_token(t, s, strlen(s), id, true, false, false, false, false, cfg_p);
    }
    if (st == QV_OK && extra && qv_json_is_type(extra, json_type_object)) {
        json_object_object_foreach(extra, k, v)
        {
            int64_t id;
            if (!qv_json_as_int(v, &id)) {
                st = qv_fail(QV_ERR_FORMAT, "%s: \"%.40s\": expected an id", extra_p, k);
                break;
            }
            st = add_token(t, k, strlen(k), id, true, false, false, false, false, extra_p);
            if (st != QV_OK)
                break;
        }
    }
    qv_json_free(cfg);
    qv_json_free(map);
    qv_json_free(extra);
    qv_free(cfg_p);
    qv_free(map_p);
    qv_free(extra_p);
    return st;
}

static qv_status finish(qv_tokenizer *t)
{
    size_t model_end = t->kind == QV_TOKENIZER_SPM ? qv_spm_size(t->spm) : qv_bpe_id_end(t->bpe);
    size_t model_count = t->kind == QV_TOKENIZER_SPM ? qv_spm_size(t->spm) : qv_bpe_count(t->bpe);
    t->id_end = model_end;
    for (size_t i = 0; i < t->n_added; i++)
        t->id_end = QV_MAX(t->id_end, (size_t)t->added[i].id + 1);
    t->added_of_id = qv_malloc(t->id_end * sizeof *t->added_of_id, "added-token index");
    if (!t->added_of_id)
        return QV_ERR_NOMEM;
    for (size_t i = 0; i < t->id_end; i++)
        t->added_of_id[i] = -1;
    t->vocab_size = model_count;
    for (size_t i = 0; i < t->n_added; i++) {
        int32_t id = t->added[i].id;
        size_t len;
        bool in_model = t->kind == QV_TOKENIZER_SPM ? (size_t)id < model_end : qv_bpe_token(t->bpe, id, &len) != NULL;
        t->vocab_size += !in_model;
        t->added_of_id[id] = (int32_t)i;
    }
    /* the post-processor's ids end up in every encoding: they must name tokens */
    const qv_vec *post[2] = {&t->post_prefix, &t->post_suffix};
    for (int k = 0; k < 2; k++)
        for (size_t i = 0; i < post[k]->len; i++) {
            int32_t id = QV_VEC_AT(post[k], int32_t, i);
            if (!qv_tokenizer_id_to_token(t, id))
                return qv_fail(QV_ERR_FORMAT, "%s: post_processor: id %d is not in the vocabulary", t->file, (int)id);
        }
    if (t->kind == QV_TOKENIZER_SPM)
        return build_matcher(t, &t->raw, 2);
    QV_TRY(build_matcher(t, &t->raw, 0));
    return build_matcher(t, &t->norm, 1);
}

static qv_tokenizer *tokenizer_new(void)
{
    qv_tokenizer *t = qv_calloc(1, sizeof *t, "tokenizer");
    if (t) {
        qv_strmap_init(&t->added_map);
        qv_vec_init(&t->post_prefix, sizeof(int32_t));
        qv_vec_init(&t->post_suffix, sizeof(int32_t));
    }
    return t;
}

/* The model file's bytes, then the specials of dir (none when NULL), then the indexes. */
static qv_status tokenizer_build(qv_tokenizer *t, const char *data, size_t len, const char *dir)
{
    qv_status st = t->kind == QV_TOKENIZER_SPM ? qv_spm_parse(data, len, t->file, &t->spm)
                                               : load_bpe(t, data, len, t->file);
    if (st == QV_OK)
        st = load_specials(t, dir);
    if (st == QV_OK)
        st = finish(t);
    return st;
}

qv_status qv_tokenizer_parse(qv_tokenizer_kind kind, const char *data, size_t len, const char *name,
                             qv_tokenizer **out)
{
    *out = NULL;
    qv_tokenizer *t = tokenizer_new();
    if (!t)
        return QV_ERR_NOMEM;
    t->kind = kind;
    qv_status st = (t->file = qv_strdup(name)) ? tokenizer_build(t, data, len, NULL) : QV_ERR_NOMEM;
    if (st != QV_OK) {
        qv_tokenizer_free(t);
        return st;
    }
    *out = t;
    return QV_OK;
}

qv_status qv_tokenizer_load(const char *model_dir, qv_tokenizer **out)
{
    *out = NULL;
    char *json = qv_path_join(model_dir, "tokenizer.json"), *model = qv_path_join(model_dir, "tokenizer.model");
    qv_tokenizer *t = tokenizer_new();
    qv_status st = json && model && t ? QV_OK : QV_ERR_NOMEM;
    if (st == QV_OK && !qv_is_dir(model_dir))
        st = qv_fail(QV_ERR_IO, "%s: not a model folder", model_dir);
    if (st == QV_OK && qv_path_exists(json)) {
        t->kind = QV_TOKENIZER_BPE;
        t->file = json;
        json = NULL;
    } else if (st == QV_OK && qv_path_exists(model)) {
        t->kind = QV_TOKENIZER_SPM;
        t->file = model;
        model = NULL;
    } else if (st == QV_OK) {
        st = qv_fail(QV_ERR_IO, "%s: no tokenizer.json or tokenizer.model", model_dir);
    }
    char *data = NULL;
    size_t len = 0;
    if (st == QV_OK)
        st = qv_read_file(t->file, t->kind == QV_TOKENIZER_SPM ? QV_SPM_MAX_FILE : QV_JSON_MAX_FILE, &data, &len);
    if (st == QV_OK)
        st = tokenizer_build(t, data, len, model_dir);
    qv_free(data);
    qv_free(json);
    qv_free(model);
    if (st != QV_OK) {
        qv_tokenizer_free(t);
        return st;
    }
    *out = t;
    return QV_OK;
}

void qv_tokenizer_free(qv_tokenizer *t)
{
    if (!t)
        return;
    qv_bpe_free(t->bpe);
    qv_pretok_free(t->pretok);
    qv_spm_free(t->spm);
    for (size_t i = 0; i < t->n_added; i++)
        qv_free(t->added[i].content);
    qv_free(t->added);
    qv_strmap_free(&t->added_map);
    qv_free(t->added_of_id);
    qv_free(t->raw.idx);
    qv_free(t->norm.idx);
    for (int k = 0; k < SP_COUNT; k++)
        qv_free(t->special_tok[k]);
    qv_vec_free(&t->post_prefix);
    qv_vec_free(&t->post_suffix);
    qv_free(t->file);
    qv_free(t);
}
