/* spm.c — SentencePiece BPE models (tokenizer.model, InternLM2; fixtures README §3): the
 * ModelProto protobuf read by hand, sentencepiece's normaliser for the "identity" rule
 * (whitespace rules, ▁ escaping), its BPE encoder (bpe_model.cc: merge the adjacent pair whose
 * piece has the highest score, leftmost first on ties; resegment unused pieces), byte fallback
 * to <0xXX> pieces, and DecodeIds.
 *
 * ModelProto fields read (sentencepiece_model.proto): 1 pieces {1 piece, 2 score, 3 type};
 * 2 trainer_spec {3 model_type, 24 treat_whitespace_as_suffix, 35 byte_fallback, 40..43
 * unk/bos/eos/pad id, 44 unk_surface}; 3 normalizer_spec {1 name, 2 precompiled_charsmap,
 * 3 add_dummy_prefix, 4 remove_extra_whitespaces, 5 escape_whitespaces}. */
#include <stdio.h>
#include <string.h>

#include "../core/strmap.h"
#include "tok_internal.h"
#include "utf8.h"

#define SPACE "\xE2\x96\x81" /* U+2581, sentencepiece's kSpaceSymbol */

enum { T_NORMAL = 1, T_UNKNOWN = 2, T_CONTROL = 3, T_USER = 4, T_UNUSED = 5, T_BYTE = 6 };

struct qv_spm {
    size_t n;
    char *pool;
    uint32_t *off, *len; /* [n] piece text in pool */
    float *score;        /* [n] */
    uint8_t *type;       /* [n] */
    qv_strmap pieces;    /* normal, user-defined and unused pieces -> id (used by the merges) */
    qv_strmap reserved;  /* control, unknown and byte pieces -> id */
    int32_t byte_id[256];
    int32_t *user;       /* ids of user-defined pieces (matched whole, never merged) */
    size_t n_user;
    bool user_first[256]; /* whether some user-defined piece starts with this byte */
    int32_t unk_id;      /* the piece of type UNKNOWN */
    int32_t trainer_unk, trainer_bos, trainer_eos, trainer_pad;
    bool byte_fallback, add_dummy_prefix, remove_extra_ws, escape_ws, ws_suffix;
    char *unk_surface;
};

/* ---- protobuf wire format ------------------------------------------------------------------ */

typedef struct pb {
    const unsigned char *p, *end;
} pb;

static bool pb_varint(pb *r, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end)
            return false;
        unsigned char c = *r->p++;
        x |= (uint64_t)(c & 0x7F) << shift;
        if (!(c & 0x80)) {
            *v = x;
            return true;
        }
    }
    return false;
}

/* One field: number, wire type, and its value (varint / fixed in *v, bytes in *sub). */
static bool pb_field(pb *r, uint32_t *field, int *wire, uint64_t *v, pb *sub)
{
    uint64_t key;
    if (!pb_varint(r, &key) || (key >> 3) == 0 || (key >> 3) > UINT32_MAX)
        return false;
    *field = (uint32_t)(key >> 3);
    *wire = (int)(key & 7);
    switch (*wire) {
    case 0:
        return pb_varint(r, v);
    case 1:
        if (r->end - r->p < 8)
            return false;
        memcpy(v, r->p, 8);
        r->p += 8;
        return true;
    case 5: {
        uint32_t w;
        if (r->end - r->p < 4)
            return false;
        memcpy(&w, r->p, 4);
        r->p += 4;
        *v = w;
        return true;
    }
    case 2: {
        uint64_t n;
        if (!pb_varint(r, &n) || n > (uint64_t)(r->end - r->p))
            return false;
        sub->p = r->p;
        sub->end = r->p + n;
        r->p += n;
        return true;
    }
    default:
        return false; /* groups (3, 4) are not used by sentencepiece */
    }
}

static qv_status corrupt(const char *path, const char *what)
{
    return qv_fail(QV_ERR_FORMAT, "%s: not a SentencePiece model (%s)", path, what);
}

static qv_status read_piece(qv_spm *s, pb r, const char *path, qv_strbuf *pool, size_t i)
{
    uint32_t f;
    int w;
    uint64_t v;
    pb sub = {0};
    bool have_piece = false;
    s->type[i] = T_NORMAL;
    s->score[i] = 0;
    while (r.p < r.end) {
        if (!pb_field(&r, &f, &w, &v, &sub))
            return corrupt(path, "bad piece record");
        if (f == 1 && w == 2) {
            s->off[i] = (uint32_t)pool->len;
            s->len[i] = (uint32_t)(sub.end - sub.p);
            qv_sb_putn(pool, (const char *)sub.p, (size_t)(sub.end - sub.p));
            have_piece = true;
        } else if (f == 2 && w == 5) {
            uint32_t bits = (uint32_t)v;
            memcpy(&s->score[i], &bits, 4);
        } else if (f == 3 && w == 0) {
            if (v < T_NORMAL || v > T_BYTE)
                return qv_fail(QV_ERR_FORMAT, "%s: piece %zu has unknown type %llu", path, i, (unsigned long long)v);
            s->type[i] = (uint8_t)v;
        }
    }
    if (!have_piece)
        return corrupt(path, "piece without text");
    if (pool->len > UINT32_MAX / 2)
        return corrupt(path, "pieces too large");
    return QV_OK;
}

static qv_status read_trainer(qv_spm *s, pb r, const char *path)
{
    uint32_t f;
    int w;
    uint64_t v;
    pb sub = {0};
    while (r.p < r.end) {
        if (!pb_field(&r, &f, &w, &v, &sub))
            return corrupt(path, "bad trainer_spec");
        if (w == 0 && f == 3 && v != 2) {
            static const char *names[] = {"?", "UNIGRAM", "BPE", "WORD", "CHAR"};
            return qv_fail(QV_ERR_UNSUPPORTED, "%s: model type %s is not supported (qvlm implements SentencePiece BPE)",
                           path, v < 5 ? names[v] : "?");
        }
        if (w == 0 && f == 24)
            s->ws_suffix = v != 0;
        else if (w == 0 && f == 35)
            s->byte_fallback = v != 0;
        else if (w == 0 && f >= 40 && f <= 43) {
            int32_t id = (int32_t)(uint32_t)v; /* int32 fields: negatives arrive sign-extended */
            int32_t *dst[] = {&s->trainer_unk, &s->trainer_bos, &s->trainer_eos, &s->trainer_pad};
            *dst[f - 40] = id;
        } else if (w == 2 && f == 44) {
            qv_free(s->unk_surface);
            s->unk_surface = qv_strndup((const char *)sub.p, (size_t)(sub.end - sub.p));
            if (!s->unk_surface)
                return QV_ERR_NOMEM;
        }
    }
    return QV_OK;
}

static qv_status read_normalizer(qv_spm *s, pb r, const char *path)
{
    uint32_t f;
    int w;
    uint64_t v;
    pb sub = {0};
    char name[64] = "";
    bool charsmap = false;
    while (r.p < r.end) {
        if (!pb_field(&r, &f, &w, &v, &sub))
            return corrupt(path, "bad normalizer_spec");
        if (f == 1 && w == 2)
            snprintf(name, sizeof name, "%.*s", (int)(sub.end - sub.p), (const char *)sub.p);
        else if (f == 2 && w == 2)
            charsmap = sub.end > sub.p;
        else if (f == 3 && w == 0)
            s->add_dummy_prefix = v != 0;
        else if (f == 4 && w == 0)
            s->remove_extra_ws = v != 0;
        else if (f == 5 && w == 0)
            s->escape_ws = v != 0;
    }
    if (charsmap)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: normalization rule \"%s\" is not supported (qvlm implements identity)",
                       path, name[0] ? name : "?");
    return QV_OK;
}

/* The byte of a "<0xXX>" piece (pieces are not NUL-terminated), -1 when it is not one. */
static int piece_byte(const char *p, size_t n)
{
    if (n != 6 || memcmp(p, "<0x", 3) || p[5] != '>')
        return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

static qv_status index_pieces(qv_spm *s, const char *path)
{
    s->unk_id = -1;
    for (int b = 0; b < 256; b++)
        s->byte_id[b] = -1;
    s->user = qv_malloc(s->n * sizeof *s->user, "SentencePiece model");
    if (!s->user)
        return QV_ERR_NOMEM;
    for (size_t i = 0; i < s->n; i++) {
        const char *p = s->pool + s->off[i];
        size_t n = s->len[i];
        int t = s->type[i];
        bool normal = t == T_NORMAL || t == T_USER || t == T_UNUSED, existed;
        QV_TRY(qv_strmap_put(normal ? &s->pieces : &s->reserved, p, n, (int64_t)i, &existed));
        if (existed)
            return qv_fail(QV_ERR_FORMAT, "%s: piece \"%.*s\" appears twice", path, (int)QV_MIN(n, 40), p);
        if (t == T_UNKNOWN) {
            if (s->unk_id >= 0)
                return corrupt(path, "two unknown pieces");
            s->unk_id = (int32_t)i;
        } else if (t == T_USER) {
            s->user[s->n_user++] = (int32_t)i;
            if (n)
                s->user_first[(unsigned char)p[0]] = true;
        } else if (t == T_BYTE) {
            int x = piece_byte(p, n);
            if (!s->byte_fallback)
                return qv_fail(QV_ERR_FORMAT, "%s: byte piece without byte_fallback", path);
            if (x < 0)
                return qv_fail(QV_ERR_FORMAT, "%s: byte piece \"%.*s\" is not <0xXX>", path, (int)QV_MIN(n, 40), p);
            s->byte_id[x] = (int32_t)i;
        }
    }
    if (s->unk_id < 0)
        return corrupt(path, "no unknown piece");
    return QV_OK;
}

static qv_status parse_model(qv_spm *s, const unsigned char *data, size_t size, const char *path)
{
    pb r = {data, data + size}, sub = {0};
    uint32_t f;
    int w;
    uint64_t v;
    size_t n = 0;
    while (r.p < r.end) { /* first pass: count pieces */
        if (!pb_field(&r, &f, &w, &v, &sub))
            return corrupt(path, "bad protobuf record");
        n += f == 1 && w == 2;
    }
    if (!n)
        return corrupt(path, "no pieces");
    if (n >= (size_t)INT32_MAX)
        return corrupt(path, "too many pieces");
    s->n = n;
    s->off = qv_malloc(n * sizeof *s->off, "SentencePiece model");
    s->len = qv_malloc(n * sizeof *s->len, "SentencePiece model");
    s->score = qv_malloc(n * sizeof *s->score, "SentencePiece model");
    s->type = qv_malloc(n, "SentencePiece model");
    if (!s->off || !s->len || !s->score || !s->type)
        return QV_ERR_NOMEM;
    qv_strbuf pool;
    qv_sb_init(&pool);
    r.p = data;
    size_t i = 0;
    qv_status st = QV_OK;
    while (r.p < r.end && st == QV_OK) {
        pb_field(&r, &f, &w, &v, &sub);
        if (f == 1 && w == 2)
            st = read_piece(s, sub, path, &pool, i++);
        else if (f == 2 && w == 2)
            st = read_trainer(s, sub, path);
        else if (f == 3 && w == 2)
            st = read_normalizer(s, sub, path);
    }
    if (st == QV_OK && pool.oom)
        st = qv_fail(QV_ERR_NOMEM, "out of memory (SentencePiece pieces)");
    s->pool = pool.s ? pool.s : qv_strdup("");
    if (st == QV_OK && !s->pool)
        st = QV_ERR_NOMEM;
    return st;
}

qv_status qv_spm_parse(const char *data, size_t size, const char *path, qv_spm **out)
{
    *out = NULL;
    qv_spm *s = qv_calloc(1, sizeof *s, "SentencePiece model");
    if (!s)
        return QV_ERR_NOMEM;
    qv_strmap_init(&s->pieces);
    qv_strmap_init(&s->reserved);
    /* proto defaults */
    s->add_dummy_prefix = s->remove_extra_ws = s->escape_ws = true;
    s->trainer_unk = 0;
    s->trainer_bos = 1;
    s->trainer_eos = 2;
    s->trainer_pad = -1;
    qv_status st = parse_model(s, (const unsigned char *)data, size, path);
    if (st == QV_OK && !s->unk_surface && !(s->unk_surface = qv_strdup(" \xE2\x81\x87 ")))
        st = QV_ERR_NOMEM;
    if (st == QV_OK)
        st = index_pieces(s, path);
    if (st != QV_OK) {
        qv_spm_free(s);
        return st;
    }
    *out = s;
    return QV_OK;
}

void qv_spm_free(qv_spm *s)
{
    if (!s)
        return;
    qv_strmap_free(&s->pieces);
    qv_strmap_free(&s->reserved);
    qv_free(s->pool);
    qv_free(s->off);
    qv_free(s->len);
    qv_free(s->score);
    qv_free(s->type);
    qv_free(s->user);
    qv_free(s->unk_surface);
    qv_free(s);
}

size_t qv_spm_size(const qv_spm *s) { return s->n; }

const char *qv_spm_piece(const qv_spm *s, int32_t id, size_t *len)
{
    if (id < 0 || (size_t)id >= s->n)
        return NULL;
    *len = s->len[id];
    return s->pool + s->off[id];
}

int32_t qv_spm_piece_to_id(const qv_spm *s, const char *piece, size_t n)
{
    int64_t id;
    if (qv_strmap_get(&s->pieces, piece, n, &id) || qv_strmap_get(&s->reserved, piece, n, &id))
        return (int32_t)id;
    return -1;
}

bool qv_spm_is_control(const qv_spm *s, int32_t id) { return id >= 0 && (size_t)id < s->n && s->type[id] == T_CONTROL; }

int32_t qv_spm_trainer_id(const qv_spm *s, char which)
{
    int32_t id = which == 'u' ? s->trainer_unk : which == 'b' ? s->trainer_bos : which == 'e' ? s->trainer_eos : s->trainer_pad;
    return id >= 0 && (size_t)id < s->n ? id : -1;
}

/* ---- normaliser (identity rule) ------------------------------------------------------------ */

static void put_space(const qv_spm *s, qv_strbuf *b) { qv_sb_puts(b, s->escape_ws ? SPACE : " "); }

/* normalizer.cc Normalize() without a character map: only ' ' counts as whitespace. */
static void normalize(const qv_spm *s, const char *t, size_t n, qv_strbuf *b)
{
    size_t i = 0;
    if (s->remove_extra_ws)
        while (i < n && t[i] == ' ')
            i++;
    if (i == n)
        return;
    if (!s->ws_suffix && s->add_dummy_prefix)
        put_space(s, b);
    bool prev_space = s->remove_extra_ws;
    while (i < n) {
        size_t k = qv_utf8_valid_len((const unsigned char *)t + i, n - i);
        if (!k)
            k = 1; /* callers pass valid UTF-8 */
        if (t[i] == ' ') {
            if (!prev_space)
                put_space(s, b);
            prev_space = true;
        } else {
            qv_sb_putn(b, t + i, k);
            prev_space = false;
        }
        if (!s->remove_extra_ws)
            prev_space = false;
        i += k;
    }
    if (s->remove_extra_ws) {
        const char *sp = s->escape_ws ? SPACE : " ";
        size_t sl = strlen(sp);
        while (b->len >= sl && !memcmp(b->s + b->len - sl, sp, sl))
            b->len -= sl;
    }
    if (s->ws_suffix && s->add_dummy_prefix)
        put_space(s, b);
}

/* ---- BPE ----------------------------------------------------------------------------------- */

typedef struct sym {
    uint32_t off, len; /* in the normalised text; len 0 = merged away */
    int32_t prev, next;
    bool freeze;
} sym;

typedef struct pair {
    float score;
    int32_t left, right;
    uint32_t size;
} pair;

/* Agenda order: highest score first, then the leftmost pair. */
static bool pair_before(const pair *x, const pair *y)
{
    return x->score > y->score || (x->score == y->score && x->left < y->left);
}

static void agenda_push(pair *h, size_t *n, pair it)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!pair_before(&it, &h[p]))
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = it;
}

static pair agenda_pop(pair *h, size_t *n)
{
    pair top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && pair_before(&h[c + 1], &h[c]))
            c++;
        if (!pair_before(&h[c], &last))
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n)
        h[i] = last;
    return top;
}

typedef struct encoder {
    const qv_spm *s;
    const char *text; /* normalised */
    sym *syms;
    pair *agenda;
    size_t n_agenda;
    qv_strmap rev;  /* unused merged piece -> index into rev_pairs */
    qv_vec rev_pairs; /* uint32_t[4]: left off, len, right off, len */
    qv_vec *ids;
    bool prev_unk;
} encoder;

static qv_status maybe_add_pair(encoder *e, int32_t l, int32_t r)
{
    if (l < 0 || r < 0 || e->syms[l].freeze || e->syms[r].freeze)
        return QV_OK;
    const char *p = e->text + e->syms[l].off;
    uint32_t size = e->syms[l].len + e->syms[r].len;
    int64_t id;
    if (!qv_strmap_get(&e->s->pieces, p, size, &id))
        return QV_OK;
    agenda_push(e->agenda, &e->n_agenda, (pair){e->s->score[id], l, r, size});
    if (e->s->type[id] == T_UNUSED) {
        uint32_t rp[4] = {e->syms[l].off, e->syms[l].len, e->syms[r].off, e->syms[r].len};
        QV_TRY(qv_vec_push(&e->rev_pairs, rp));
        QV_TRY(qv_strmap_put(&e->rev, p, size, (int64_t)e->rev_pairs.len - 1, NULL));
    }
    return QV_OK;
}

/* Longest user-defined piece at t[0..n) (sets *freeze), else one UTF-8 character. */
static size_t prefix_match(const qv_spm *s, const char *t, size_t n, bool *freeze)
{
    size_t best = 0;
    for (size_t u = 0; u < s->n_user && s->user_first[(unsigned char)t[0]]; u++) {
        size_t l = s->len[s->user[u]];
        if (l > best && l <= n && !memcmp(t, s->pool + s->off[s->user[u]], l))
            best = l;
    }
    *freeze = best > 0;
    if (best)
        return best;
    size_t k = qv_utf8_valid_len((const unsigned char *)t, n);
    return k ? k : 1;
}

static qv_status emit(encoder *e, const char *w, size_t n, int32_t id)
{
    const qv_spm *s = e->s;
    if (id == s->unk_id) {
        if (s->byte_fallback) {
            for (size_t i = 0; i < n; i++) {
                int32_t b = s->byte_id[(unsigned char)w[i]];
                QV_TRY(qv_vec_push(e->ids, b >= 0 ? &b : &s->unk_id));
            }
            e->prev_unk = false;
            return QV_OK;
        }
        if (e->prev_unk) /* a run of unknown pieces becomes one <unk> */
            return QV_OK;
        e->prev_unk = true;
        return qv_vec_push(e->ids, &id);
    }
    e->prev_unk = false;
    return qv_vec_push(e->ids, &id);
}

static qv_status resegment(encoder *e, const char *w, size_t n, int depth)
{
    int32_t id = qv_spm_piece_to_id(e->s, w, n);
    if (id < 0)
        id = e->s->unk_id;
    int64_t k;
    if (e->s->type[id] != T_UNUSED || depth > 64 || !qv_strmap_get(&e->rev, w, n, &k))
        return emit(e, w, n, id);
    const uint32_t *rp = (const uint32_t *)e->rev_pairs.data + 4 * k;
    QV_TRY(resegment(e, e->text + rp[0], rp[1], depth + 1));
    return resegment(e, e->text + rp[2], rp[3], depth + 1);
}

qv_status qv_spm_encode(const qv_spm *s, const char *text, size_t n, qv_vec *ids)
{
    qv_strbuf norm;
    qv_sb_init(&norm);
    normalize(s, text, n, &norm);
    if (norm.oom)
        return qv_fail(QV_ERR_NOMEM, "out of memory (SentencePiece normaliser)");
    if (!norm.len)
        return QV_OK;
    if (norm.len > UINT32_MAX / 4) {
        qv_sb_free(&norm);
        return qv_fail(QV_ERR_INVALID, "text of %zu bytes is too long for SentencePiece", n);
    }
    encoder e = {.s = s, .text = norm.s, .ids = ids};
    qv_strmap_init(&e.rev);
    qv_vec_init(&e.rev_pairs, 4 * sizeof(uint32_t));
    e.syms = qv_malloc(norm.len * sizeof *e.syms, "SentencePiece symbols");
    e.agenda = qv_malloc(3 * norm.len * sizeof *e.agenda, "SentencePiece agenda"); /* <= n + 2 merges */
    qv_status st = e.syms && e.agenda ? QV_OK : QV_ERR_NOMEM;
    size_t ns = 0;
    for (size_t i = 0; i < norm.len && st == QV_OK;) {
        bool freeze;
        size_t k = prefix_match(s, norm.s + i, norm.len - i, &freeze);
        e.syms[ns] = (sym){(uint32_t)i, (uint32_t)k, (int32_t)ns - 1, (int32_t)ns + 1, freeze};
        ns++;
        i += k;
    }
    if (ns)
        e.syms[ns - 1].next = -1;
    for (size_t i = 1; i < ns && st == QV_OK; i++)
        st = maybe_add_pair(&e, (int32_t)i - 1, (int32_t)i);
    while (e.n_agenda && st == QV_OK) {
        pair top = agenda_pop(e.agenda, &e.n_agenda);
        sym *l = &e.syms[top.left], *r = &e.syms[top.right];
        if (!l->len || !r->len || l->len + r->len != top.size)
            continue; /* stale */
        l->len += r->len;
        l->next = r->next;
        if (r->next >= 0)
            e.syms[r->next].prev = top.left;
        r->len = 0;
        st = maybe_add_pair(&e, l->prev, top.left);
        if (st == QV_OK)
            st = maybe_add_pair(&e, top.left, l->next);
    }
    for (int32_t i = ns ? 0 : -1; i >= 0 && st == QV_OK; i = e.syms[i].next)
        st = resegment(&e, norm.s + e.syms[i].off, e.syms[i].len, 0);
    qv_free(e.syms);
    qv_free(e.agenda);
    qv_strmap_free(&e.rev);
    qv_vec_free(&e.rev_pairs);
    qv_sb_free(&norm);
    return st;
}

/* ---- decoding ------------------------------------------------------------------------------ */

/* Byte pieces: each complete UTF-8 character is kept, each invalid byte becomes U+FFFD. */
static void flush_bytes(qv_strbuf *bytes, qv_strbuf *out)
{
    size_t i = 0;
    const unsigned char *u = (const unsigned char *)bytes->s;
    while (i < bytes->len) {
        size_t k = qv_utf8_valid_len(u + i, bytes->len - i);
        if (k) {
            qv_sb_putn(out, bytes->s + i, k);
            i += k;
        } else {
            qv_sb_puts(out, "\xEF\xBF\xBD");
            i++;
        }
    }
    bytes->len = 0;
}

void qv_spm_decode_run(const qv_spm *s, const int32_t *ids, size_t n, qv_strbuf *out)
{
    qv_strbuf bytes;
    qv_sb_init(&bytes);
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        const char *p = s->pool + s->off[id];
        size_t len = s->len[id];
        if (s->type[id] == T_BYTE) {
            unsigned char c = (unsigned char)piece_byte(p, len); /* checked at load */
            qv_sb_putn(&bytes, (const char *)&c, 1);
            continue;
        }
        flush_bytes(&bytes, out);
        if (s->type[id] == T_CONTROL)
            continue;
        if (s->type[id] == T_UNKNOWN) {
            qv_sb_puts(out, s->unk_surface);
            continue;
        }
        /* at the start of the text, a leading ▁ is the dummy prefix */
        if (out->len == 0 && (s->add_dummy_prefix || s->remove_extra_ws) && len >= 3 && !memcmp(p, SPACE, 3)) {
            p += 3;
            len -= 3;
        }
        for (size_t j = 0; j < len;) {
            if (len - j >= 3 && !memcmp(p + j, SPACE, 3)) {
                qv_sb_putn(out, " ", 1);
                j += 3;
            } else {
                qv_sb_putn(out, p + j, 1);
                j++;
            }
        }
    }
    flush_bytes(&bytes, out);
    qv_sb_free(&bytes);
}
