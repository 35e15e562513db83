/* batch_text.c — `calib_data: pileval`: the text-only batch of §7.6 (spec/ALGORITHMS.md §7.6,
 * §11 item 14; MBQ qmllm/calibration/pileval.py): input_ids [B, 512] cut from the concatenation
 * of n_lines documents of at most 512 tokens, labels = input_ids, no masks (so MBQ's reweighting
 * cannot run on it). */
#include <string.h>

#include "batch_internal.h"

qv_status qv_calib_build_pile(qv_tokenizer *tok, const qv_text_docs *docs, uint64_t seed, size_t n_lines,
                              qv_calib_batch *out)
{
    memset(out, 0, sizeof *out);
    const int64_t block = 512;
    int32_t *ids = NULL;
    size_t nb = 0, kept = 0;
    QV_TRY(qv_textdata_pile_blocks(docs, seed, n_lines, (size_t)block, (size_t)block, calib_encode_cb, tok, &ids, &nb,
                                   &kept));
    size_t cells = nb * (size_t)block;
    /* out->family stays 0, the text family: pile blocks belong to no vision family */
    out->pad_rule = QV_PAD_RULE_LENGTH;
    out->n_rows = (int64_t)nb;
    out->len = block;
    out->input_ids = qv_malloc(cells * sizeof(int64_t), "pile input_ids");
    out->labels = qv_malloc(cells * sizeof(int64_t), "pile labels");
    out->row_len = qv_malloc(nb * sizeof(int64_t), "pile row lengths");
    out->notes = qv_calloc(1, sizeof(char *), "notes");
    qv_status st = out->input_ids && out->labels && out->row_len && out->notes ? QV_OK : QV_ERR_NOMEM;
    if (st == QV_OK) {
        for (size_t i = 0; i < cells; i++)
            out->input_ids[i] = out->labels[i] = ids[i];
        for (size_t r = 0; r < nb; r++)
            out->row_len[r] = block;
        out->notes[0] = qv_asprintf("%s: %zu document%s of at most %lld tokens give %zu block%s of %lld tokens",
                                    docs->path, kept, kept == 1 ? "" : "s", (long long)block, nb, nb == 1 ? "" : "s",
                                    (long long)block);
        out->n_notes = out->notes[0] ? 1 : 0;
    }
    qv_free(ids);
    if (st != QV_OK)
        qv_calib_batch_free(out);
    return st;
}
