/* fuzz_spm.c — the SentencePiece model parser (tokenizer.model, a hand-read protobuf:
 * qv_tokenizer_parse with QV_TOKENIZER_SPM); then encoding (normaliser, BPE by score, byte
 * fallback, resegmentation of unused pieces) and decoding (fuzz_tok_common.h). */
#include "fuzz_tok_common.h"

int qv_fuzz_spm(const uint8_t *data, size_t size)
{
    static const char *name = "fuzz/tokenizer.model";
    qv_tokenizer *t = NULL;
    qv_status st = qv_tokenizer_parse(QV_TOKENIZER_SPM, (const char *)data, size, name, &t);
    if (st != QV_OK) {
        qf_check_error(st, name);
        QF_CHECK(t == NULL);
        return 0;
    }
    QF_CHECK(qv_tokenizer_kind_of(t) == QV_TOKENIZER_SPM);
    qf_exercise_tokenizer(t);
    qv_tokenizer_free(t);
    return 0;
}

QF_ENTRY(spm)
