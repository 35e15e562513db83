/* fuzz_tokenizer_json.c — tokenizer.json (qv_tokenizer_parse with QV_TOKENIZER_BPE): the
 * json_scan scanner over model.vocab / model.merges, json-c for the rest, the normaliser and
 * pre-tokeniser settings (user-supplied regexes compiled by PCRE2), added tokens and the post
 * processor; then encoding and decoding (fuzz_tok_common.h). */
#include "fuzz_tok_common.h"

int qv_fuzz_tokenizer_json(const uint8_t *data, size_t size)
{
    static const char *name = "fuzz/tokenizer.json";
    qv_tokenizer *t = NULL;
    qv_status st = qv_tokenizer_parse(QV_TOKENIZER_BPE, (const char *)data, size, name, &t);
    if (st != QV_OK) {
        qf_check_error(st, name);
        QF_CHECK(t == NULL);
        return 0;
    }
    QF_CHECK(qv_tokenizer_kind_of(t) == QV_TOKENIZER_BPE);
    qf_exercise_tokenizer(t);
    qv_tokenizer_free(t);
    return 0;
}

QF_ENTRY(tokenizer_json)
