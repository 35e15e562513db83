/* tok_internal.h — pieces shared by the files of src/tok: the byte-level BPE model (bpe.c),
 * the tokenizer.json normaliser and pre-tokeniser (pretok.c), the SentencePiece model (spm.c).
 * tokenizer.c ties them together behind tokenizer.h. Not for use outside src/tok. */
#ifndef QV_TOK_INTERNAL_H
#define QV_TOK_INTERNAL_H

#include "../io/json.h"
#include "json_scan.h"
#include "tokenizer.h"

/* ---- byte-level BPE model: tokenizer.json "model" of type BPE (bpe.c) --------------------- */

typedef struct qv_bpe qv_bpe;

/* `model` holds the small members of tokenizer.json's "model" object (type, dropout, unk_token,
 * ...); `vocab` and `merges` are scanners positioned at those two members' values (NULL when
 * absent). `file` names tokenizer.json in errors. */
qv_status qv_bpe_load(const qv_json *model, qv_jscan *vocab, qv_jscan *merges, const char *file, qv_bpe **out);
void qv_bpe_free(qv_bpe *b);
/* Appends the ids of one pre-tokenised word given as raw bytes (before the ByteLevel mapping).
 * Merges run lowest rank first, leftmost first on ties (`tokenizers` Word::merge_all). */
qv_status qv_bpe_encode_word(qv_bpe *b, const unsigned char *w, size_t n, qv_vec *ids);
/* Byte-level spelling of id (borrowed, *len set); NULL when the vocabulary has no such id. */
const char *qv_bpe_token(const qv_bpe *b, int32_t id, size_t *len);
int32_t qv_bpe_lookup(const qv_bpe *b, const char *s, size_t n);
/* One past the largest id, and the number of distinct ids. */
size_t qv_bpe_id_end(const qv_bpe *b);
size_t qv_bpe_count(const qv_bpe *b);

/* GPT-2's byte ↔ unicode alphabet: the code point standing for byte b, and the byte a code
 * point stands for (-1 when cp is not in the alphabet). */
uint32_t qv_bytelevel_cp(unsigned char b);
int qv_bytelevel_byte(uint32_t cp);

/* ---- normaliser and pre-tokeniser of tokenizer.json (pretok.c) ---------------------------- */

typedef struct qv_pretok qv_pretok;

/* Reads "normalizer" and "pre_tokenizer" of the tokenizer.json root object. Supported:
 * normalizer null | NFC | NFKC | NFD | NFKD | Sequence of those; pre_tokenizer ByteLevel |
 * Split (Regex or String pattern, behavior Isolated or Removed) | Sequence of those, with a
 * ByteLevel step required (the BPE model works on bytes). */
qv_status qv_pretok_load(const qv_json *root, const char *file, qv_pretok **out);
void qv_pretok_free(qv_pretok *p);
/* Normalised copy of s[0..n) (malloc'd, *out_len set), or *out = NULL when the text is
 * unchanged by the normaliser (then use s itself). */
qv_status qv_pretok_normalize(const qv_pretok *p, const char *s, size_t n, char **out, size_t *out_len);
/* Splits normalised text into words (raw bytes, before the ByteLevel mapping) and calls fn on
 * each non-empty one, in order. */
typedef qv_status (*qv_word_fn)(void *ctx, const char *w, size_t n);
qv_status qv_pretok_split(const qv_pretok *p, const char *s, size_t n, qv_word_fn fn, void *ctx);

/* ---- SentencePiece BPE: tokenizer.model (spm.c) ------------------------------------------- */

typedef struct qv_spm qv_spm;

/* Parses the bytes of a tokenizer.model; path names it in errors. */
qv_status qv_spm_parse(const char *data, size_t size, const char *path, qv_spm **out);
void qv_spm_free(qv_spm *s);
/* Appends the ids of text[0..n) (valid UTF-8): normaliser (whitespace rules, ▁ escaping),
 * BPE by piece score, byte fallback. No BOS/EOS. */
qv_status qv_spm_encode(const qv_spm *s, const char *text, size_t n, qv_vec *ids);
size_t qv_spm_size(const qv_spm *s);
const char *qv_spm_piece(const qv_spm *s, int32_t id, size_t *len);
/* Id of a piece of any type; -1 when absent. */
int32_t qv_spm_piece_to_id(const qv_spm *s, const char *piece, size_t n);
bool qv_spm_is_control(const qv_spm *s, int32_t id);
/* trainer_spec ids (-1 when disabled): which = 'u' unk, 'b' bos, 'e' eos, 'p' pad. */
int32_t qv_spm_trainer_id(const qv_spm *s, char which);
/* Decodes a run of model ids (all < qv_spm_size) onto out, as sentencepiece's DecodeIds: the
 * dummy-prefix ▁ is dropped only while out is still empty. */
void qv_spm_decode_run(const qv_spm *s, const int32_t *ids, size_t n, qv_strbuf *out);

#endif
