/* fuzz_tok_common.h — what the two tokenizer targets do with a tokenizer that loaded: encode
 * a fixed set of texts (ASCII, whitespace runs, non-Latin scripts, combining marks, special
 * tokens of both families, invalid UTF-8), check every id against the vocabulary, and decode
 * the ids back, plus every id of a small range. */
#ifndef QV_FUZZ_TOK_COMMON_H
#define QV_FUZZ_TOK_COMMON_H

#include "fuzz_common.h"
#include "tok/tokenizer.h"

static inline void qf_exercise_tokenizer(qv_tokenizer *t)
{
    static const char *const texts[] = {
        "Hello world! It's 2024, isn't it?",
        "  leading and   inner   spaces\n\ttabs\r\n",
        "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xC3\xBC\x6E\xCC\x88 caf\xC3\xA9 e\xCC\x81",
        "<|im_start|>user\n<image>\nDescribe.<|im_end|>\n<s></s><unk><IMG_CONTEXT>",
        "\xE2\x96\x81\xE2\x96\x81x <0x0A> 12345678901234567890 ....!!!",
        "",
    };
    qv_vec ids;
    qv_vec_init(&ids, sizeof(int32_t));
    size_t vocab = qv_tokenizer_vocab_size(t);
    QF_CHECK(vocab > 0);
    for (size_t k = 0; k < QV_ARRAY_LEN(texts); k++) {
        ids.len = 0;
        for (int special = 0; special < 2; special++) {
            qv_status st = qv_tokenizer_encode(t, texts[k], strlen(texts[k]), special, &ids);
            if (st != QV_OK) {
                QF_CHECK(st == QV_ERR_NOMEM || st == QV_ERR_INVALID || st == QV_ERR_FORMAT);
                continue;
            }
        }
        for (size_t i = 0; i < ids.len; i++)
            QF_CHECK(qv_tokenizer_id_to_token(t, QV_VEC_AT(&ids, int32_t, i)) != NULL);
        char *text = NULL;
        size_t len;
        for (int skip = 0; skip < 2; skip++) {
            if (qv_tokenizer_decode(t, ids.data, ids.len, skip, &text, &len) == QV_OK)
                QF_CHECK(text && strlen(text) <= len);
            qv_free(text);
            text = NULL;
        }
    }
    /* invalid UTF-8 is refused, not encoded */
    ids.len = 0;
    QF_CHECK(qv_tokenizer_encode(t, "ab\xC3(", 4, true, &ids) == QV_ERR_INVALID && ids.len == 0);
    /* decode every id of a small range, valid or not */
    for (int32_t id = -2; id < 300; id++) {
        char *text = NULL;
        size_t len;
        qv_status st = qv_tokenizer_decode(t, &id, 1, false, &text, &len);
        QF_CHECK((st == QV_OK) == (qv_tokenizer_id_to_token(t, id) != NULL));
        qv_free(text);
    }
    const char *bos = qv_tokenizer_bos_token(t);
    if (bos)
        QF_CHECK(qv_tokenizer_token_to_id(t, bos) == qv_tokenizer_bos_id(t));
    qv_vec_free(&ids);
}

#endif
