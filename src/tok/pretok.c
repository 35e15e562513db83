/* pretok.c — the "normalizer" and "pre_tokenizer" of a tokenizer.json (HF `tokenizers`
 * normalizers::unicode, pre_tokenizers::{split, byte_level, sequence}), as the Qwen2 family
 * uses them (fixtures README §3): NFC, then Split(Qwen2 regex, Isolated), then ByteLevel
 * without its own regex.
 *
 * Unicode normal forms come from utf8proc (Debian libutf8proc-dev): a small UTF-8-native
 * library, so no UTF-16 round trip as with ICU. Regexes run on PCRE2 with PCRE2_UTF|PCRE2_UCP.
 * `tokenizers` compiles them with Oniguruma, whose \s is [\t\n\v\f\r\x85\p{Z}]; PCRE2's \s also
 * takes U+180E, so \s and \S are rewritten to Oniguruma's set before compiling. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tok_internal.h"

#define MAX_STEPS 16

/* GPT-2's split, used by ByteLevel when use_regex is true. */
static const char gpt2_pattern[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

typedef enum behavior { B_REMOVED, B_ISOLATED, B_MERGED_PREV, B_MERGED_NEXT, B_CONTIGUOUS } behavior;

typedef struct step {
    bool bytelevel;        /* else a regex split */
    pcre2_code *re;        /* split pattern (ByteLevel: GPT-2's when use_regex) */
    behavior how;
    bool invert;
    bool add_prefix_space; /* ByteLevel */
} step;

struct qv_pretok {
    int norm[MAX_STEPS]; /* utf8proc option sets, applied in order */
    int n_norm;
    step steps[MAX_STEPS];
    int n_steps;
};

/* ---- normaliser --------------------------------------------------------------------------- */

static qv_status add_normalizer(qv_pretok *p, const qv_json *n, const char *file, int depth)
{
    if (!n || qv_json_is_type(n, json_type_null))
        return QV_OK;
    const char *type;
    QV_TRY(qv_json_str(n, "type", file, &type));
    int opt = UTF8PROC_STABLE;
    if (!strcmp(type, "Sequence") && depth == 0) {
        qv_json *list;
        QV_TRY(qv_json_arr(n, "normalizers", file, &list));
        for (size_t i = 0; i < json_object_array_length(list); i++)
            QV_TRY(add_normalizer(p, json_object_array_get_idx(list, i), file, depth + 1));
        return QV_OK;
    } else if (!strcmp(type, "NFC")) {
        opt |= UTF8PROC_COMPOSE;
    } else if (!strcmp(type, "NFD")) {
        opt |= UTF8PROC_DECOMPOSE;
    } else if (!strcmp(type, "NFKC")) {
        opt |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
    } else if (!strcmp(type, "NFKD")) {
        opt |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
    } else {
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: normalizer type \"%s\" is not supported (qvlm implements NFC, NFD, NFKC, NFKD)",
                       file, type);
    }
    if (p->n_norm == MAX_STEPS)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: more than %d normalizers", file, MAX_STEPS);
    p->norm[p->n_norm++] = opt;
    return QV_OK;
}

/* Normal forms of one region (valid UTF-8), appended to out. */
static qv_status normalize_region(const qv_pretok *p, const char *s, size_t n, qv_strbuf *out)
{
    char *cur = NULL;
    size_t cur_len = n;
    if (n > ((size_t)1 << 40)) /* utf8proc sizes are ssize_t and grow up to 4x: stay far from overflow */
        return qv_fail(QV_ERR_INVALID, "text of %zu bytes is too long to normalise", n);
    for (int k = 0; k < p->n_norm; k++) {
        utf8proc_uint8_t *dst = NULL;
        utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)(cur ? cur : s), (utf8proc_ssize_t)cur_len, &dst,
                                          (utf8proc_option_t)p->norm[k]);
        qv_free(cur);
        if (r < 0) {
            free(dst);
            return qv_fail(r == UTF8PROC_ERROR_NOMEM ? QV_ERR_NOMEM : QV_ERR_INVALID, "text: cannot normalise: %s",
                           utf8proc_errmsg(r));
        }
        cur = qv_strndup((const char *)dst, (size_t)r); /* owned by qv_* allocation from here on */
        free(dst);
        if (!cur)
            return QV_ERR_NOMEM;
        cur_len = (size_t)r;
    }
    qv_sb_putn(out, cur, cur_len);
    qv_free(cur);
    return out->oom ? QV_ERR_NOMEM : QV_OK;
}

/* Between two ASCII characters every normal form may cut the text: ASCII characters neither
 * decompose nor are the second half of a composition, and canonical reordering stops at them.
 * So only the stretches around non-ASCII characters go through utf8proc. */
qv_status qv_pretok_normalize(const qv_pretok *p, const char *s, size_t n, char **out, size_t *out_len)
{
    *out = NULL;
    if (!p->n_norm)
        return QV_OK;
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, q = 0;
    while (q < n && u[q] < 0x80)
        q++;
    if (q == n)
        return QV_OK; /* ASCII is invariant under every normal form */
    qv_strbuf b;
    qv_sb_init(&b);
    qv_status st = QV_OK;
    while (q < n && st == QV_OK) {
        size_t r = q > i ? q - 1 : q, e = q + 1; /* the region [r, e) starts with q's ASCII predecessor */
        while (e < n && !(u[e - 1] < 0x80 && u[e] < 0x80))
            e++;
        qv_sb_putn(&b, s + i, r - i);
        st = normalize_region(p, s + r, e - r, &b);
        i = e;
        for (q = e; q < n && u[q] < 0x80;)
            q++;
    }
    if (st == QV_OK)
        qv_sb_putn(&b, s + i, n - i);
    if (st == QV_OK && b.oom)
        st = qv_fail(QV_ERR_NOMEM, "out of memory (normaliser)");
    if (st != QV_OK) {
        qv_sb_free(&b);
        return st;
    }
    *out = b.s;
    *out_len = b.len;
    return QV_OK;
}

/* ---- pre-tokeniser ------------------------------------------------------------------------ */

/* Oniguruma's \s, spelled for the inside of a PCRE2 character class. */
#define ONIG_SPACE "\\t\\n\\x0B\\f\\r\\x{85}\\p{Z}"

/* Rewrites \s and \S (outside classes; \s inside) to Oniguruma's whitespace set. */
static char *translate_pattern(const char *re, size_t n)
{
    qv_strbuf b;
    qv_sb_init(&b);
    bool in_class = false;
    for (size_t i = 0; i < n; i++) {
        char c = re[i];
        if (c == '\\' && i + 1 < n) {
            char e = re[i + 1];
            if (e == 's')
                qv_sb_puts(&b, in_class ? ONIG_SPACE : "[" ONIG_SPACE "]");
            else if (e == 'S' && !in_class)
                qv_sb_puts(&b, "[^" ONIG_SPACE "]");
            else
                qv_sb_putn(&b, re + i, 2);
            i++;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            qv_sb_putn(&b, &c, 1);
            if (i + 1 < n && re[i + 1] == '^')
                qv_sb_putn(&b, &re[++i], 1);
            if (i + 1 < n && re[i + 1] == ']') /* a leading ']' is a literal */
                qv_sb_putn(&b, &re[++i], 1);
            continue;
        }
        if (in_class && c == ']')
            in_class = false;
        qv_sb_putn(&b, &c, 1);
    }
    if (b.oom) {
        qv_sb_free(&b);
        qv_fail(QV_ERR_NOMEM, "out of memory (regex)");
        return NULL;
    }
    return b.s ? b.s : qv_strdup("");
}

static qv_status compile(const char *file, const char *pat, size_t n, bool literal, pcre2_code **out)
{
    char *tr = literal ? qv_strndup(pat, n) : translate_pattern(pat, n);
    if (!tr)
        return QV_ERR_NOMEM;
    int err;
    PCRE2_SIZE off;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0);
    *out = pcre2_compile((PCRE2_SPTR)tr, strlen(tr), opts, &err, &off, NULL);
    qv_free(tr);
    if (!*out) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return qv_fail(QV_ERR_FORMAT, "%s: pre_tokenizer regex does not compile: %s", file, (const char *)msg);
    }
    pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE); /* best effort: the interpreter is the fallback */
    return QV_OK;
}

static qv_status parse_behavior(const char *file, const char *s, behavior *out)
{
    static const struct {
        const char *name;
        behavior b;
    } names[] = {{"Removed", B_REMOVED},
                 {"Isolated", B_ISOLATED},
                 {"MergedWithPrevious", B_MERGED_PREV},
                 {"MergedWithNext", B_MERGED_NEXT},
                 {"Contiguous", B_CONTIGUOUS}};
    for (size_t i = 0; i < QV_ARRAY_LEN(names); i++)
        if (!strcmp(s, names[i].name)) {
            *out = names[i].b;
            return QV_OK;
        }
    return qv_fail(QV_ERR_UNSUPPORTED, "%s: Split behavior \"%s\" is not supported", file, s);
}

static qv_status add_step(qv_pretok *p, const qv_json *j, const char *file, int depth)
{
    const char *type;
    QV_TRY(qv_json_str(j, "type", file, &type));
    if (!strcmp(type, "Sequence") && depth == 0) {
        qv_json *list;
        QV_TRY(qv_json_arr(j, "pretokenizers", file, &list));
        for (size_t i = 0; i < json_object_array_length(list); i++)
            QV_TRY(add_step(p, json_object_array_get_idx(list, i), file, depth + 1));
        return QV_OK;
    }
    if (p->n_steps == MAX_STEPS)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: more than %d pre-tokenizers", file, MAX_STEPS);
    step *s = &p->steps[p->n_steps];
    memset(s, 0, sizeof *s);
    if (!strcmp(type, "ByteLevel")) {
        bool use_regex = true;
        QV_TRY(qv_json_bool_opt(j, "add_prefix_space", file, &s->add_prefix_space));
        QV_TRY(qv_json_bool_opt(j, "use_regex", file, &use_regex));
        s->bytelevel = true;
        s->how = B_ISOLATED;
        if (use_regex)
            QV_TRY(compile(file, gpt2_pattern, strlen(gpt2_pattern), false, &s->re));
    } else if (!strcmp(type, "Split")) {
        qv_json *pat;
        const char *how = "Isolated", *re = NULL, *lit = NULL;
        QV_TRY(qv_json_obj(j, "pattern", file, &pat));
        QV_TRY(qv_json_str_opt(pat, "Regex", file, &re));
        QV_TRY(qv_json_str_opt(pat, "String", file, &lit));
        QV_TRY(qv_json_str_opt(j, "behavior", file, &how));
        QV_TRY(qv_json_bool_opt(j, "invert", file, &s->invert));
        QV_TRY(parse_behavior(file, how, &s->how));
        if (!re && !lit)
            return qv_fail(QV_ERR_FORMAT, "%s: Split pattern has neither Regex nor String", file);
        const char *src = re ? re : lit;
        QV_TRY(compile(file, src, strlen(src), !re, &s->re));
    } else {
        return qv_fail(QV_ERR_UNSUPPORTED,
                       "%s: pre_tokenizer type \"%s\" is not supported (qvlm implements Split, ByteLevel, Sequence)", file,
                       type);
    }
    p->n_steps++;
    return QV_OK;
}

qv_status qv_pretok_load(const qv_json *root, const char *file, qv_pretok **out)
{
    *out = NULL;
    qv_pretok *p = qv_calloc(1, sizeof *p, "pre-tokenizer");
    if (!p)
        return QV_ERR_NOMEM;
    qv_status st = add_normalizer(p, qv_json_get(root, "normalizer"), file, 0);
    const qv_json *pt = qv_json_get(root, "pre_tokenizer");
    if (st == QV_OK && (!pt || qv_json_is_type(pt, json_type_null)))
        st = qv_fail(QV_ERR_UNSUPPORTED, "%s: no pre_tokenizer (qvlm needs a ByteLevel one for a BPE model)", file);
    if (st == QV_OK)
        st = add_step(p, pt, file, 0);
    bool has_bytelevel = false;
    for (int i = 0; i < p->n_steps; i++)
        has_bytelevel |= p->steps[i].bytelevel;
    if (st == QV_OK && !has_bytelevel)
        st = qv_fail(QV_ERR_UNSUPPORTED, "%s: pre_tokenizer has no ByteLevel step (qvlm implements byte-level BPE only)",
                     file);
    if (st != QV_OK) {
        qv_pretok_free(p);
        return st;
    }
    *out = p;
    return QV_OK;
}

void qv_pretok_free(qv_pretok *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->n_steps; i++)
        pcre2_code_free(p->steps[i].re);
    qv_free(p);
}

/* ---- splitting ---------------------------------------------------------------------------- */

/* A list of splits: byte ranges of one text buffer. */
typedef struct span {
    size_t off, len;
} span;

typedef struct split_list {
    qv_strbuf text;
    qv_vec spans; /* span */
} split_list;

static void list_init(split_list *l)
{
    qv_sb_init(&l->text);
    qv_vec_init(&l->spans, sizeof(span));
}

static void list_free(split_list *l)
{
    qv_sb_free(&l->text);
    qv_vec_free(&l->spans);
}

static qv_status push_span(qv_vec *v, size_t off, size_t len)
{
    if (!len)
        return QV_OK;
    span s = {off, len};
    return qv_vec_push(v, &s);
}

/* Matches of re in s[0..n) as (start, end, is_match) pieces covering the text (tokenizers'
 * Pattern::find_matches), folded by the split behaviour into `out` (offsets shifted by base). */
typedef struct piece {
    size_t a, b;
    bool match;
} piece;

static qv_status find_pieces(const pcre2_code *re, const char *s, size_t n, qv_vec *pieces)
{
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md)
        return qv_fail(QV_ERR_NOMEM, "out of memory (regex match data)");
    qv_status st = QV_OK;
    size_t prev = 0, at = 0;
    while (at <= n && st == QV_OK) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, at, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            st = qv_fail(QV_ERR_INVALID, "text: pre_tokenizer regex failed: %s", (const char *)msg);
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t a = ov[0], b = ov[1];
        if (b == a) { /* empty match: step one character forward */
            at = a + 1;
            while (at < n && ((unsigned char)s[at] & 0xC0) == 0x80)
                at++;
            continue;
        }
        if (prev != a)
            st = qv_vec_push(pieces, &(piece){prev, a, false});
        if (st == QV_OK)
            st = qv_vec_push(pieces, &(piece){a, b, true});
        prev = at = b;
    }
    if (st == QV_OK && prev != n)
        st = qv_vec_push(pieces, &(piece){prev, n, false});
    pcre2_match_data_free(md);
    return st;
}

static qv_status split_one(const step *sp, const char *s, size_t n, size_t base, qv_vec *out)
{
    qv_vec pieces;
    qv_vec_init(&pieces, sizeof(piece));
    qv_status st = find_pieces(sp->re, s, n, &pieces);
    piece *pc = pieces.data;
    size_t np = pieces.len;
    if (st == QV_OK && sp->invert)
        for (size_t i = 0; i < np; i++)
            pc[i].match = !pc[i].match;
    /* fold by behaviour in place: w = number of output pieces (match = "remove") */
    size_t w = 0;
    bool prev_match = false;
    if (st == QV_OK && sp->how == B_MERGED_NEXT) {
        for (size_t k = np; k-- > 0;) { /* from the right, as `tokenizers` does */
            piece p = pc[k];
            if (p.match && !prev_match && w)
                pc[np - w].a = p.a; /* the piece last written (to the right) starts earlier */
            else
                pc[np - 1 - w++] = (piece){p.a, p.b, false};
            prev_match = p.match;
        }
        memmove(pc, pc + np - w, w * sizeof *pc);
    } else if (st == QV_OK) {
        for (size_t k = 0; k < np; k++) {
            piece p = pc[k];
            switch (sp->how) {
            case B_REMOVED:
                pc[w++] = p;
                break;
            case B_ISOLATED:
                pc[w++] = (piece){p.a, p.b, false};
                break;
            case B_CONTIGUOUS:
                if (p.match == prev_match && w)
                    pc[w - 1].b = p.b;
                else
                    pc[w++] = (piece){p.a, p.b, false};
                break;
            case B_MERGED_PREV:
                if (p.match && !prev_match && w)
                    pc[w - 1].b = p.b;
                else
                    pc[w++] = (piece){p.a, p.b, false};
                break;
            case B_MERGED_NEXT:
                break;
            }
            prev_match = p.match;
        }
    }
    for (size_t k = 0; k < w && st == QV_OK; k++)
        if (!pc[k].match)
            st = push_span(out, base + pc[k].a, pc[k].b - pc[k].a);
    qv_vec_free(&pieces);
    return st;
}

static qv_status apply_step(const step *sp, split_list *in, split_list *out)
{
    const span *v = in->spans.data;
    if (sp->bytelevel && sp->add_prefix_space) { /* a space before every split not starting with one */
        for (size_t i = 0; i < in->spans.len; i++) {
            size_t off = out->text.len;
            const char *s = in->text.s + v[i].off;
            if (s[0] != ' ')
                qv_sb_putn(&out->text, " ", 1);
            qv_sb_putn(&out->text, s, v[i].len);
            if (out->text.oom)
                return qv_fail(QV_ERR_NOMEM, "out of memory (pre-tokenizer)");
            QV_TRY(push_span(&out->spans, off, out->text.len - off));
        }
        qv_sb_free(&in->text);
        in->text = out->text;
        qv_sb_init(&out->text);
        qv_vec_free(&in->spans);
        in->spans = out->spans;
        qv_vec_init(&out->spans, sizeof(span));
        v = in->spans.data;
    }
    if (!sp->re) {
        QV_TRY(qv_vec_reserve(&out->spans, in->spans.len));
        for (size_t i = 0; i < in->spans.len; i++)
            QV_TRY(push_span(&out->spans, v[i].off, v[i].len));
    } else {
        for (size_t i = 0; i < in->spans.len; i++)
            QV_TRY(split_one(sp, in->text.s + v[i].off, v[i].len, v[i].off, &out->spans));
    }
    /* the text buffer moves along with its spans */
    qv_sb_free(&out->text);
    out->text = in->text;
    qv_sb_init(&in->text);
    return QV_OK;
}

qv_status qv_pretok_split(const qv_pretok *p, const char *s, size_t n, qv_word_fn fn, void *ctx)
{
    if (!n)
        return QV_OK;
    split_list a, b;
    list_init(&a);
    list_init(&b);
    qv_status st = QV_OK;
    qv_sb_putn(&a.text, s, n);
    if (a.text.oom)
        st = qv_fail(QV_ERR_NOMEM, "out of memory (pre-tokenizer)");
    if (st == QV_OK)
        st = push_span(&a.spans, 0, n);
    for (int k = 0; k < p->n_steps && st == QV_OK; k++) {
        b.spans.len = 0;
        st = apply_step(&p->steps[k], &a, &b);
        split_list t = a;
        a = b;
        b = t;
    }
    const span *v = a.spans.data;
    for (size_t i = 0; i < a.spans.len && st == QV_OK; i++)
        st = fn(ctx, a.text.s + v[i].off, v[i].len);
    list_free(&a);
    list_free(&b);
    return st;
}
