/* tokenizer.h — exact tokenizers of the supported checkpoints (fixtures README §3, §13.2, §14.1).
 *
 * Two kinds, chosen by the files of the model folder:
 *   - tokenizer.json (HF `tokenizers`): byte-level BPE with an NFC normaliser, a Split(regex) /
 *     ByteLevel pre-tokeniser and added tokens matched before the model (Qwen2, Qwen2-VL,
 *     InternVL2-1B, InternVL3, LLaVA-OneVision);
 *   - tokenizer.model (SentencePiece BPE with byte fallback) read together with
 *     tokenizer_config.json, encoded by the rule of InternLM2's slow tokenizer: split the text
 *     on the added tokens, encode every other piece separately, prepend <s> (InternVL2-2B/8B).
 * Special tokens and their ids come from tokenizer_config.json (then special_tokens_map.json).
 *
 * Encoding keeps a small per-tokenizer word cache, so one tokenizer must not encode from two
 * threads at once; decoding and look-ups are read-only. */
#ifndef QV_TOK_TOKENIZER_H
#define QV_TOK_TOKENIZER_H

#include "../core/common.h"

typedef struct qv_tokenizer qv_tokenizer;

#define QV_SPM_MAX_FILE ((size_t)1 << 30) /* tokenizer.model files larger than this are refused */
/* Token ids (vocabulary, added tokens, post-processor ids) must be below this: tables indexed
 * by id are allocated up to it, so a 30-byte file cannot ask for gigabytes (real vocabularies
 * stay under 2^18; config.h caps vocab_size at the same 2^24). */
#define QV_TOKENIZER_MAX_ID ((int64_t)1 << 24)

typedef enum qv_tokenizer_kind {
    QV_TOKENIZER_BPE = 0, /* tokenizer.json, byte-level BPE */
    QV_TOKENIZER_SPM      /* tokenizer.model, SentencePiece BPE */
} qv_tokenizer_kind;

/* Loads the tokenizer of a model folder (tokenizer.json is preferred over tokenizer.model).
 * Errors name the file and the problem (unknown model type, normaliser, pre-tokeniser, ...). */
qv_status qv_tokenizer_load(const char *model_dir, qv_tokenizer **out);
/* A tokenizer from the bytes of one file, tokenizer.json (QV_TOKENIZER_BPE) or tokenizer.model
 * (QV_TOKENIZER_SPM), without the folder's tokenizer_config.json, special_tokens_map.json and
 * added_tokens.json: no added tokens beyond tokenizer.json's, specials from the SentencePiece
 * trainer ids only. `name` names the file in errors. Safe on arbitrary bytes (fuzzing). */
qv_status qv_tokenizer_parse(qv_tokenizer_kind kind, const char *data, size_t len, const char *name,
                             qv_tokenizer **out);
void qv_tokenizer_free(qv_tokenizer *t);

qv_tokenizer_kind qv_tokenizer_kind_of(const qv_tokenizer *t);

/* Appends the ids (int32_t) of text[0..len) to `ids` (a qv_vec of int32_t, initialised by the
 * caller). Text must be valid UTF-8 (QV_ERR_INVALID otherwise, naming the byte offset).
 * add_special: BOS/EOS as the tokenizer adds them by default (InternLM2: <s>; the Qwen2
 * tokenizers add nothing), i.e. transformers' add_special_tokens=True. Added tokens written in
 * the text (<|im_start|>, <IMG_CONTEXT>, ...) are always recognised. */
qv_status qv_tokenizer_encode(qv_tokenizer *t, const char *text, size_t len, bool add_special, qv_vec *ids);

/* Text of ids[0..n) as a malloc'd NUL-terminated string (*len without the NUL; len may be
 * NULL). skip_special drops added tokens marked special (and SentencePiece control pieces).
 * BPE: the ByteLevel decoder, invalid UTF-8 repaired with U+FFFD (= `tokenizers` decode);
 * SentencePiece: sentencepiece's DecodeIds (▁ → space, byte pieces reassembled), added tokens
 * kept verbatim unless skip_special. An id outside the vocabulary is QV_ERR_INVALID. */
qv_status qv_tokenizer_decode(const qv_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, char **text,
                              size_t *len);

/* Id of a token given by its text as written in tokenizer files ("<IMG_CONTEXT>", "<|im_end|>";
 * byte-level vocabulary entries in their byte-level spelling, e.g. "Ġthe"); -1 when absent. */
int32_t qv_tokenizer_token_to_id(const qv_tokenizer *t, const char *token);
/* The token string of an id (borrowed, valid while t lives); NULL when out of range. */
const char *qv_tokenizer_id_to_token(const qv_tokenizer *t, int32_t id);
/* Whether id is an added token marked special (skipped by decode with skip_special). */
bool qv_tokenizer_is_special(const qv_tokenizer *t, int32_t id);

/* Special ids from tokenizer_config.json / special_tokens_map.json; -1 when the tokenizer has
 * none (Qwen2 has no BOS). */
int32_t qv_tokenizer_bos_id(const qv_tokenizer *t);
int32_t qv_tokenizer_eos_id(const qv_tokenizer *t);
int32_t qv_tokenizer_pad_id(const qv_tokenizer *t);
int32_t qv_tokenizer_unk_id(const qv_tokenizer *t);
/* The token text of those (borrowed; NULL when none), e.g. "<s>" for templates' bos_token. */
const char *qv_tokenizer_bos_token(const qv_tokenizer *t);
/* Whether encode(add_special=true) prepends BOS (InternLM2: tokenizer_config add_bos_token). */
bool qv_tokenizer_adds_bos(const qv_tokenizer *t);

/* len(tokenizer) in transformers: distinct ids of the vocabulary and the added tokens. */
size_t qv_tokenizer_vocab_size(const qv_tokenizer *t);

#endif
