/* bpe.c — the byte-level BPE model of a tokenizer.json (HF `tokenizers` models::bpe), as the
 * Qwen2 family uses it (fixtures README §3): vocabulary in GPT-2's byte-level alphabet, merges
 * by rank, no dropout, no subword prefixes.
 *
 * A word arrives as raw bytes; each byte starts as the id of its one-character token, then the
 * pair of adjacent symbols with the lowest merge rank is merged, leftmost first on equal ranks,
 * until no pair has a merge. A binary heap over candidate pairs with lazy invalidation keeps a
 * word at O(n log n) (`tokenizers` Word::merge_all). Words of up to 256 bytes are cached. */
#include <string.h>

#include "../core/strmap.h"
#include "json_scan.h"
#include "tok_internal.h"
#include "utf8.h"

#define CACHE_WORD_MAX 256            /* longest word kept in the cache, bytes */
#define CACHE_ENTRIES_MAX 16384       /* cache flushed when it holds this many words ... */
#define CACHE_IDS_MAX ((size_t)1 << 20) /* ... or this many ids */
#define NO_TOKEN UINT32_MAX

/* ---- byte-level alphabet ------------------------------------------------------------------ */

/* GPT-2 bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes take
 * U+0100.. in byte order. */
static bool printable_byte(unsigned b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174; }

uint32_t qv_bytelevel_cp(unsigned char b)
{
    if (printable_byte(b))
        return b;
    if (b <= 32)
        return 256u + b;
    if (b <= 160)
        return 256u + 33 + (b - 127u);
    return 256u + 67; /* 173, the soft hyphen */
}

int qv_bytelevel_byte(uint32_t cp)
{
    if (cp < 256)
        return printable_byte(cp) ? (int)cp : -1;
    uint32_t k = cp - 256;
    if (k < 33)
        return (int)k;
    if (k < 67)
        return (int)(127 + k - 33);
    return k == 67 ? 173 : -1;
}

/* ---- merge table: (left id, right id) -> (rank, merged id) -------------------------------- */

typedef struct merge_slot {
    uint64_t key; /* (left << 32) | right; UINT64_MAX = empty */
    int32_t rank, id;
} merge_slot;

typedef struct merge_map {
    merge_slot *slots;
    size_t cap, len; /* cap = 2^bits */
    int bits;
} merge_map;

/* Fibonacci hashing: the top bits of the product are the well-mixed ones. */
static merge_slot *merge_find(const merge_map *m, uint64_t key)
{
    size_t mask = m->cap - 1;
    for (size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> (64 - m->bits));; i = (i + 1) & mask)
        if (m->slots[i].key == key || m->slots[i].key == UINT64_MAX)
            return &m->slots[i];
}

/* Grows to 2^bits slots, reinserting what is there. */
static qv_status merge_resize(merge_map *m, int bits)
{
    merge_map nm = {qv_malloc(((size_t)1 << bits) * sizeof(merge_slot), "BPE merge table"), (size_t)1 << bits, m->len,
                    bits};
    if (!nm.slots)
        return QV_ERR_NOMEM;
    for (size_t i = 0; i < nm.cap; i++)
        nm.slots[i].key = UINT64_MAX;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key != UINT64_MAX)
            *merge_find(&nm, m->slots[i].key) = m->slots[i];
    qv_free(m->slots);
    *m = nm;
    return QV_OK;
}

/* ---- the model ---------------------------------------------------------------------------- */

/* A vocabulary entry: its byte-level text in the pool and its id. */
typedef struct vocab_entry {
    uint32_t off, len;
    int32_t id;
} vocab_entry;

struct qv_bpe {
    vocab_entry *ent;     /* [n_ent] in file order */
    size_t n_ent;
    int32_t *slots;       /* open addressing over ent: entry index, -1 = empty */
    size_t slot_mask;
    char *pool;           /* token strings, back to back */
    uint32_t *tok_off;    /* [id_end] offset in pool, NO_TOKEN when the id is unused */
    uint32_t *tok_len;    /* [id_end] */
    size_t id_end, count;
    merge_map merges;
    int32_t byte_id[256]; /* id of the one-character token of each byte, -1 when absent */
    int32_t unk_id;       /* -1 when none */
    bool ignore_merges;
    /* word cache: word bytes -> (offset << 10 | count) into cache_ids */
    qv_strmap cache;
    qv_vec cache_ids;
};

static qv_status unsupported_opt(const char *file, const char *key)
{
    return qv_fail(QV_ERR_UNSUPPORTED, "%s: model.%s is not supported (qvlm implements plain byte-level BPE)", file,
                   key);
}

static size_t vocab_slot(const qv_bpe *b, const char *s, size_t n)
{
    for (size_t i = (size_t)qv_hash_bytes(s, n) & b->slot_mask;; i = (i + 1) & b->slot_mask) {
        int32_t e = b->slots[i];
        if (e < 0 || (b->ent[e].len == n && !memcmp(b->pool + b->ent[e].off, s, n)))
            return i;
    }
}

/* "vocab": {"token": id, ...}, scanned into the pool and the entry list, then indexed. */
static qv_status load_vocab(qv_bpe *b, qv_jscan *j, const char *file)
{
    qv_strbuf pool, key;
    qv_vec ents;
    qv_sb_init(&pool);
    qv_sb_init(&key);
    qv_vec_init(&ents, sizeof(vocab_entry));
    int64_t max_id = -1;
    bool more = true;
    qv_status st = qv_jscan_open(j, '{');
    for (size_t i = 0; st == QV_OK; i++) {
        int64_t id;
        if ((st = qv_jscan_more(j, '{', i, &more)) != QV_OK || !more)
            break;
        if ((st = qv_jscan_key(j, &key)) != QV_OK || (st = qv_jscan_uint(j, &id)) != QV_OK)
            break;
        if (id >= QV_TOKENIZER_MAX_ID) {
            st = qv_fail(QV_ERR_FORMAT, "%s: model.vocab: id %lld of \"%.40s\" is too large", file, (long long)id, key.s);
            break;
        }
        if (pool.len + key.len >= NO_TOKEN || ents.len >= (size_t)INT32_MAX / 4) {
            st = qv_fail(QV_ERR_FORMAT, "%s: model.vocab is too large", file);
            break;
        }
        vocab_entry e = {(uint32_t)pool.len, (uint32_t)key.len, (int32_t)id};
        qv_sb_putn(&pool, key.s, key.len);
        if (pool.oom || (st = qv_vec_push(&ents, &e)) != QV_OK) {
            st = QV_ERR_NOMEM;
            break;
        }
        max_id = QV_MAX(max_id, id);
    }
    qv_sb_free(&key);
    b->pool = pool.s;
    b->ent = ents.data;
    b->n_ent = ents.len;
    if (st != QV_OK)
        return st;
    if (max_id < 0)
        return qv_fail(QV_ERR_FORMAT, "%s: model.vocab is empty", file);
    size_t cap = 64;
    while (cap < 2 * b->n_ent)
        cap *= 2;
    b->id_end = (size_t)max_id + 1;
    b->tok_off = qv_malloc(b->id_end * sizeof *b->tok_off, "BPE vocabulary");
    b->tok_len = qv_malloc(b->id_end * sizeof *b->tok_len, "BPE vocabulary");
    b->slots = qv_malloc(cap * sizeof *b->slots, "BPE vocabulary");
    if (!b->tok_off || !b->tok_len || !b->slots)
        return QV_ERR_NOMEM;
    b->slot_mask = cap - 1;
    for (size_t i = 0; i < cap; i++)
        b->slots[i] = -1;
    for (size_t i = 0; i < b->id_end; i++)
        b->tok_off[i] = b->tok_len[i] = NO_TOKEN;
    for (size_t i = 0; i < b->n_ent; i++) {
        const vocab_entry *e = &b->ent[i];
        size_t slot = vocab_slot(b, b->pool + e->off, e->len);
        if (b->slots[slot] >= 0)
            return qv_fail(QV_ERR_FORMAT, "%s: model.vocab: token \"%.*s\" appears twice", file, (int)QV_MIN(e->len, 40),
                           b->pool + e->off);
        b->slots[slot] = (int32_t)i;
        if (b->tok_off[e->id] == NO_TOKEN)
            b->count++;
        b->tok_off[e->id] = e->off; /* two tokens with one id: the later one names it */
        b->tok_len[e->id] = e->len;
    }
    return QV_OK;
}

/* One merge rule, "a b" (tokenizers < 0.20) or ["a", "b"]; the parts go to x and y. */
static qv_status merge_rule(qv_jscan *j, size_t r, qv_strbuf *x, qv_strbuf *y, const char *file)
{
    if (qv_jscan_peek(j) == '"') {
        QV_TRY(qv_jscan_string(j, x));
        const char *sp = memchr(x->s, ' ', x->len);
        if (!sp || sp == x->s || sp + 1 == x->s + x->len || memchr(sp + 1, ' ', x->len - (size_t)(sp + 1 - x->s)))
            return qv_fail(QV_ERR_FORMAT, "%s: model.merges[%zu] is not a pair of tokens", file, r);
        y->len = 0;
        qv_sb_putn(y, sp + 1, x->len - (size_t)(sp + 1 - x->s));
        x->len = (size_t)(sp - x->s);
        return y->oom ? QV_ERR_NOMEM : QV_OK;
    }
    bool more;
    QV_TRY(qv_jscan_open(j, '['));
    for (size_t i = 0;; i++) {
        QV_TRY(qv_jscan_more(j, '[', i, &more));
        if (!more)
            return i == 2 ? QV_OK : qv_fail(QV_ERR_FORMAT, "%s: model.merges[%zu] is not a pair of tokens", file, r);
        if (i >= 2)
            return qv_fail(QV_ERR_FORMAT, "%s: model.merges[%zu] is not a pair of tokens", file, r);
        QV_TRY(qv_jscan_string(j, i ? y : x));
    }
}

static qv_status load_merges(qv_bpe *b, qv_jscan *j, const char *file)
{
    qv_strbuf x, y;
    qv_sb_init(&x);
    qv_sb_init(&y);
    bool more;
    qv_status st = merge_resize(&b->merges, 12);
    if (st == QV_OK)
        st = qv_jscan_open(j, '[');
    for (size_t r = 0; st == QV_OK; r++) {
        if ((st = qv_jscan_more(j, '[', r, &more)) != QV_OK || !more)
            break;
        if (r >= (size_t)INT32_MAX) {
            st = qv_fail(QV_ERR_FORMAT, "%s: model.merges is too large", file);
            break;
        }
        if ((st = merge_rule(j, r, &x, &y, file)) != QV_OK)
            break;
        int32_t ia = qv_bpe_lookup(b, x.s, x.len), ib = qv_bpe_lookup(b, y.s, y.len), im = -1;
        if (ia >= 0 && ib >= 0) {
            size_t nx = x.len;
            qv_sb_putn(&x, y.s, y.len);
            if (x.oom) {
                st = QV_ERR_NOMEM;
                break;
            }
            im = qv_bpe_lookup(b, x.s, x.len);
            x.len = nx;
        }
        if (im < 0) {
            st = qv_fail(QV_ERR_FORMAT, "%s: model.merges[%zu] (\"%.*s\" + \"%.*s\") uses a token missing from the vocab",
                         file, r, (int)QV_MIN(x.len, 40), x.s, (int)QV_MIN(y.len, 40), y.s);
            break;
        }
        if (2 * (b->merges.len + 1) > b->merges.cap && (st = merge_resize(&b->merges, b->merges.bits + 1)) != QV_OK)
            break;
        uint64_t key = ((uint64_t)ia << 32) | (uint64_t)ib;
        merge_slot *s = merge_find(&b->merges, key);
        if (s->key == UINT64_MAX) { /* the first rule for a pair wins, as in `tokenizers` */
            *s = (merge_slot){key, (int32_t)r, im};
            b->merges.len++;
        }
    }
    qv_sb_free(&x);
    qv_sb_free(&y);
    return st;
}

qv_status qv_bpe_load(const qv_json *model, qv_jscan *vocab, qv_jscan *merges, const char *file, qv_bpe **out)
{
    *out = NULL;
    const char *type = NULL;
    QV_TRY(qv_json_str_opt(model, "type", file, &type));
    if (type && strcmp(type, "BPE"))
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: model type \"%s\" is not supported (qvlm implements BPE)", file, type);
    double dropout = 0;
    QV_TRY(qv_json_num_opt(model, "dropout", file, &dropout));
    if (dropout != 0)
        return unsupported_opt(file, "dropout");
    const char *csp = NULL, *eow = NULL, *unk = NULL;
    QV_TRY(qv_json_str_opt(model, "continuing_subword_prefix", file, &csp));
    QV_TRY(qv_json_str_opt(model, "end_of_word_suffix", file, &eow));
    QV_TRY(qv_json_str_opt(model, "unk_token", file, &unk));
    if (csp && *csp)
        return unsupported_opt(file, "continuing_subword_prefix");
    if (eow && *eow)
        return unsupported_opt(file, "end_of_word_suffix");
    if (!vocab || !merges)
        return qv_fail(QV_ERR_INVALID, "%s: missing field \"model.%s\"", file, vocab ? "merges" : "vocab");

    qv_bpe *b = qv_calloc(1, sizeof *b, "BPE model");
    if (!b)
        return QV_ERR_NOMEM;
    qv_strmap_init(&b->cache);
    qv_vec_init(&b->cache_ids, sizeof(int32_t));
    b->unk_id = -1;
    qv_status st = qv_json_bool_opt(model, "ignore_merges", file, &b->ignore_merges);
    if (st == QV_OK)
        st = load_vocab(b, vocab, file);
    if (st == QV_OK)
        st = load_merges(b, merges, file);
    if (st == QV_OK && unk) {
        b->unk_id = qv_bpe_lookup(b, unk, strlen(unk));
        if (b->unk_id < 0)
            st = qv_fail(QV_ERR_FORMAT, "%s: model.unk_token \"%.40s\" is not in the vocab", file, unk);
    }
    for (int c = 0; c < 256 && st == QV_OK; c++) {
        char s[4];
        size_t n = qv_utf8_encode(qv_bytelevel_cp((unsigned char)c), s);
        b->byte_id[c] = qv_bpe_lookup(b, s, n);
    }
    if (st != QV_OK) {
        qv_bpe_free(b);
        return st;
    }
    *out = b;
    return QV_OK;
}

void qv_bpe_free(qv_bpe *b)
{
    if (!b)
        return;
    qv_strmap_free(&b->cache);
    qv_free(b->ent);
    qv_free(b->slots);
    qv_vec_free(&b->cache_ids);
    qv_free(b->merges.slots);
    qv_free(b->pool);
    qv_free(b->tok_off);
    qv_free(b->tok_len);
    qv_free(b);
}

const char *qv_bpe_token(const qv_bpe *b, int32_t id, size_t *len)
{
    if (id < 0 || (size_t)id >= b->id_end || b->tok_off[id] == NO_TOKEN)
        return NULL;
    *len = b->tok_len[id];
    return b->pool + b->tok_off[id];
}

int32_t qv_bpe_lookup(const qv_bpe *b, const char *s, size_t n)
{
    if (!b->slots)
        return -1;
    int32_t e = b->slots[vocab_slot(b, s, n)];
    return e < 0 ? -1 : b->ent[e].id;
}

size_t qv_bpe_id_end(const qv_bpe *b) { return b->id_end; }
size_t qv_bpe_count(const qv_bpe *b) { return b->count; }

/* ---- encoding ----------------------------------------------------------------------------- */

typedef struct heap_item {
    int32_t rank, pos, id;
} heap_item;

static bool heap_less(const heap_item *x, const heap_item *y)
{
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static void heap_push(heap_item *h, size_t *n, heap_item it)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&it, &h[p]))
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = it;
}

static heap_item heap_pop(heap_item *h, size_t *n)
{
    heap_item top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && heap_less(&h[c + 1], &h[c]))
            c++;
        if (!heap_less(&h[c], &last))
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n)
        h[i] = last;
    return top;
}

static void push_pair(const qv_bpe *b, heap_item *h, size_t *hn, const int32_t *sym, int32_t left, int32_t right)
{
    if (left < 0 || right < 0)
        return;
    const merge_slot *m = merge_find(&b->merges, ((uint64_t)sym[left] << 32) | (uint64_t)sym[right]);
    if (m->key != UINT64_MAX)
        heap_push(h, hn, (heap_item){m->rank, left, m->id});
}

/* The merge loop on n initial symbols; writes the surviving ids to ids. */
static qv_status merge_word(const qv_bpe *b, int32_t *sym, int32_t *prev, int32_t *next, size_t n, heap_item *heap,
                            qv_vec *ids)
{
    size_t hn = 0;
    for (size_t i = 0; i + 1 < n; i++)
        push_pair(b, heap, &hn, sym, (int32_t)i, (int32_t)i + 1);
    while (hn) {
        heap_item top = heap_pop(heap, &hn);
        int32_t l = top.pos;
        if (sym[l] < 0)
            continue; /* merged away */
        int32_t r = next[l];
        if (r < 0)
            continue;
        const merge_slot *m = merge_find(&b->merges, ((uint64_t)sym[l] << 32) | (uint64_t)sym[r]);
        if (m->key == UINT64_MAX || m->id != top.id)
            continue; /* stale: one side changed since the pair was queued */
        sym[l] = top.id;
        sym[r] = -1;
        next[l] = next[r];
        if (next[r] >= 0)
            prev[next[r]] = l;
        push_pair(b, heap, &hn, sym, prev[l], l);
        push_pair(b, heap, &hn, sym, l, next[l]);
    }
    for (int32_t i = n ? 0 : -1; i >= 0; i = next[i])
        QV_TRY(qv_vec_push(ids, &sym[i]));
    return QV_OK;
}

static qv_status encode_uncached(qv_bpe *b, const unsigned char *w, size_t n, qv_vec *ids)
{
    if (b->ignore_merges) { /* a whole word that is in the vocabulary is taken as it is */
        qv_strbuf s;
        qv_sb_init(&s);
        for (size_t i = 0; i < n; i++) {
            char c[4];
            qv_sb_putn(&s, c, qv_utf8_encode(qv_bytelevel_cp(w[i]), c));
        }
        int32_t id = s.oom ? -1 : qv_bpe_lookup(b, s.s, s.len);
        bool oom = s.oom;
        qv_sb_free(&s);
        if (oom)
            return qv_fail(QV_ERR_NOMEM, "out of memory (BPE word)");
        if (id >= 0)
            return qv_vec_push(ids, &id);
    }
    size_t bytes;
    if (!qv_mul_size(n, 3 * sizeof(int32_t) + 3 * sizeof(heap_item), &bytes))
        return qv_fail(QV_ERR_NOMEM, "BPE word of %zu bytes is too long", n);
    int32_t *sym = qv_malloc(bytes ? bytes : 1, "BPE word");
    if (!sym)
        return QV_ERR_NOMEM;
    heap_item *heap = (heap_item *)(sym + 3 * n); /* n + 2 merges pushes at most 3n items */
    int32_t *prev = sym + n, *next = sym + 2 * n;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = b->byte_id[w[i]];
        if (id < 0)
            id = b->unk_id;
        if (id < 0)
            continue; /* no token for this byte and no unk: dropped, as `tokenizers` does */
        sym[m] = id;
        prev[m] = (int32_t)m - 1;
        next[m] = (int32_t)m + 1;
        m++;
    }
    if (m)
        next[m - 1] = -1;
    qv_status st = merge_word(b, sym, prev, next, m, heap, ids);
    qv_free(sym);
    return st;
}

qv_status qv_bpe_encode_word(qv_bpe *b, const unsigned char *w, size_t n, qv_vec *ids)
{
    int64_t v;
    if (n <= CACHE_WORD_MAX && qv_strmap_get(&b->cache, (const char *)w, n, &v)) {
        size_t off = (size_t)(v >> 10), cnt = (size_t)(v & 1023);
        for (size_t i = 0; i < cnt; i++)
            QV_TRY(qv_vec_push(ids, &QV_VEC_AT(&b->cache_ids, int32_t, off + i)));
        return QV_OK;
    }
    size_t start = ids->len;
    QV_TRY(encode_uncached(b, w, n, ids));
    if (n > CACHE_WORD_MAX)
        return QV_OK;
    if (b->cache.len >= CACHE_ENTRIES_MAX || b->cache_ids.len + n > CACHE_IDS_MAX) {
        qv_strmap_free(&b->cache);
        qv_strmap_init(&b->cache);
        b->cache_ids.len = 0;
    }
    size_t off = b->cache_ids.len, cnt = ids->len - start;
    for (size_t i = 0; i < cnt; i++)
        if (qv_vec_push(&b->cache_ids, &QV_VEC_AT(ids, int32_t, start + i)) != QV_OK) {
            b->cache_ids.len = off; /* a cache that cannot grow is just not used */
            qv_clear_error();
            return QV_OK;
        }
    if (qv_strmap_put(&b->cache, (const char *)w, n, (int64_t)((off << 10) | cnt), NULL) != QV_OK) {
        b->cache_ids.len = off;
        qv_clear_error();
    }
    return QV_OK;
}
