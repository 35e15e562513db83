/* textdata.h — pure-text datasets (a local copy of pile-val, a perplexity corpus) and the two
 * ways the reference draws token sequences from them (spec/ALGORITHMS.md §7.5, §7.6, §11
 * items 13–15).
 *
 * Rows, as Hugging Face `datasets` would load the file:
 *   `*.jsonl`, `*.json`  JSON Lines; one row per non-blank line (blank lines are skipped, as
 *                        the Arrow JSON reader does), the row's text is its "text" string
 *                        (other fields ignored); a `.json` file holding one JSON array is
 *                        refused (convert it to JSON Lines)
 *   `*.zst`, `*.gz`, ... refused: decompress first (pile-val-backup ships `val.jsonl.zst`)
 *   anything else        plain text, the "text" loader: one row per line (\n, \r\n or \r),
 *                        terminator removed, empty lines kept as empty rows
 * The permutation of §7.5/§7.6 runs over this row count, so it must match the reference's.
 *
 * The file is memory-mapped and only indexed when opened; a JSON Lines row is parsed when it
 * is visited (a malformed row is reported then, as "<file>:<line>: ..."). The reference
 * tokenizes only the rows it visits too, so opening the 214,670-row pile-val split is cheap.
 *
 * The tokenizer is a callback (the tokenizer module is separate):
 *   int encode(void *ctx, const char *text, size_t len, int32_t **ids, size_t *n)
 * encodes text[0..len) with the model's default special tokens (InternLM2/Llama add BOS, Qwen2
 * adds none); returns 0 (QV_OK) or a qv_status with the error message set; on success *ids is
 * a qv_malloc'ed array of *n ids (may be NULL when *n is 0) that the caller frees. */
#ifndef QV_CALIB_TEXTDATA_H
#define QV_CALIB_TEXTDATA_H

#include "../core/common.h"

typedef int (*qv_encode_fn)(void *ctx, const char *text, size_t len, int32_t **ids, size_t *n);

typedef enum qv_text_format { QV_TEXT_FORMAT_JSONL = 0, QV_TEXT_FORMAT_PLAIN } qv_text_format;

typedef struct qv_text_row {
    size_t off, len; /* the line (JSON Lines) or the row's text (plain), in the mapped file */
    size_t line;     /* 1-based line number, for messages */
} qv_text_row;

typedef struct qv_text_docs {
    char *path;
    qv_text_format format;
    const char *data;  /* the mapped file (data[0..size)); NULL when empty */
    size_t size;
    qv_text_row *rows; /* n rows, file order */
    size_t n;
} qv_text_docs;

/* Maps and indexes a text dataset. On failure *out is left empty (safe to close). */
qv_status qv_textdata_open(const char *path, qv_text_docs *out);
void qv_textdata_close(qv_text_docs *d);

/* The text of row i, unstripped (JSON Lines: the decoded "text" field). *text is a
 * NUL-terminated qv_malloc'ed copy (caller frees); *len excludes the NUL and the text may hold
 * NUL bytes. Errors name the file and line (not an object, no "text" string, invalid JSON). */
qv_status qv_textdata_get(const qv_text_docs *d, size_t i, char **text, size_t *len);

/* Every row's text joined with sep (e.g. "\n\n", the wikitext convention of perplexity
 * evaluations). For a plain-text file the file itself is data[0..size). Caller frees *out. */
qv_status qv_textdata_join(const qv_text_docs *d, const char *sep, char **out, size_t *len);

/* §7.6 pile blocks (MBQ pileval.py, llm-awq calib_data.py): visit rows in
 * default_rng(seed).permutation(n) order, encode text.strip(), skip rows with 0 or more than
 * max_doc_tokens tokens (512), stop after n_lines kept rows (MBQ: n_samples; llm-awq: 128) or
 * at the end of the data, concatenate the kept ids and cut them into ⌊total/block⌋ blocks of
 * `block` tokens (512; the tail is dropped). *ids = blocks row-major [*n_blocks, block]
 * (qv_malloc'ed, caller frees). *n_kept (may be NULL) = rows kept. Fails, naming the file,
 * when not even one block results (the reference then crashes). */
qv_status qv_textdata_pile_blocks(const qv_text_docs *d, uint64_t seed, size_t n_lines, size_t max_doc_tokens,
                                  size_t block, qv_encode_fn encode, void *ctx, int32_t **ids, size_t *n_blocks,
                                  size_t *n_kept);

/* §7.5 interleave pool: visit rows in default_rng(seed).permutation(n) order, encode
 * text.strip(), keep the first piece_len (512) ids of every row with MORE than piece_len
 * tokens, stop after n_pieces (128) or at the end of the data. *pieces = [*n_got, piece_len]
 * row-major (caller frees). As in the reference, running short is not an error here: the
 * caller checks that the pieces it indexes exist (interleave uses pieces 0, 2, 4, ...). */
qv_status qv_textdata_interleave_pool(const qv_text_docs *d, uint64_t seed, size_t n_pieces, size_t piece_len,
                                      qv_encode_fn encode, void *ctx, int32_t **pieces, size_t *n_got);

#endif
