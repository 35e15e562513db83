/* batch_transform.c — the two batch transforms of the reference (spec/ALGORITHMS.md §7.4, §7.5,
 * §11 items 14–16, 20; MBQ `few_shot_data_samples` / `interleave_data_samples`, identical in the
 * InternVL2, Qwen2-VL and LLaVA-OneVision wrappers):
 *   trim every collated row to the positions its attention mask keeps;
 *   few-shot:   row k = row(2k) ++ row(2k+1)                      (ids and labels alike)
 *   interleave: row k = row(2k) ++ pure[2k] ++ row(2k+1)           (pure text is its own label)
 *   an odd last row is dropped; re-pad to the longest with repad_id (the reference: 0 for every
 *   model) on the batch's side, labels −100, attention mask by length.
 * Images, their flags and sizes keep their order, which is the order of the placeholders in the
 * concatenated rows. The pure-text pool is §7.5's: the first 512 tokens of every document longer
 * than 512 tokens, in default_rng(seed).permutation order (only the pieces used are encoded:
 * the pool is taken in order, so stopping early gives the same pieces). */
#include <string.h>

#include "batch_internal.h"

qv_status calib_transform(qv_calib_batch *b, qv_tokenizer *tok, const qv_calib_options *opt, int64_t repad_id)
{
    if (!opt->few_shot && !opt->interleave)
        return QV_OK;
    const char *what = opt->few_shot ? "few_shot_format" : "interleave_format";
    int64_t nb = b->n_rows / 2, L = b->len, piece = 512;
    if (nb == 0)
        return qv_fail(QV_ERR_INVALID, "%s joins samples in pairs: it needs at least 2 samples, the batch has %lld",
                       what, (long long)b->n_rows);
    int32_t *pool = NULL;
    size_t n_got = 0;
    if (opt->interleave) {
        if (!opt->pile)
            return qv_fail(QV_ERR_INVALID, "interleave_format needs the pure-text documents (text_data_path)");
        size_t want = (size_t)QV_MIN(128, 2 * nb - 1);
        QV_TRY(qv_textdata_interleave_pool(opt->pile, opt->seed, want, (size_t)piece, calib_encode_cb, tok, &pool,
                                           &n_got));
        if (n_got < want) {
            qv_free(pool);
            return qv_fail(QV_ERR_INVALID,
                           "%s: %zu document%s longer than %lld tokens, interleave_format needs %zu (pieces 0, 2, ..., "
                           "%lld)",
                           opt->pile->path, n_got, n_got == 1 ? " is" : "s are", (long long)piece, want,
                           (long long)(2 * nb - 2));
        }
    }
    /* content of each source row: the positions its attention mask keeps */
    int64_t *keep = qv_calloc((size_t)b->n_rows, sizeof(int64_t), "row lengths");
    if (!keep) {
        qv_free(pool);
        return QV_ERR_NOMEM;
    }
    for (int64_t r = 0; r < b->n_rows; r++)
        for (int64_t t = 0; t < L; t++)
            keep[r] += b->attention_mask[r * L + t] != 0;
    int64_t NL = 0;
    for (int64_t k = 0; k < nb; k++)
        NL = QV_MAX(NL, keep[2 * k] + keep[2 * k + 1] + (opt->interleave ? piece : 0));
    size_t cells = (size_t)nb * (size_t)NL;
    int64_t *ids = qv_malloc(cells * sizeof(int64_t) + 1, "calibration input_ids");
    int64_t *lab = qv_malloc(cells * sizeof(int64_t) + 1, "calibration labels");
    uint8_t *am = qv_calloc(cells + 1, 1, "calibration attention_mask");
    int64_t *rl = qv_calloc((size_t)nb, sizeof(int64_t), "row lengths");
    if (!ids || !lab || !am || !rl) {
        qv_free(ids), qv_free(lab), qv_free(am), qv_free(rl), qv_free(keep), qv_free(pool);
        return QV_ERR_NOMEM;
    }
    for (int64_t k = 0; k < nb; k++) {
        int64_t n = keep[2 * k] + keep[2 * k + 1] + (opt->interleave ? piece : 0);
        int64_t off = b->left_padded ? NL - n : 0, w = off;
        int64_t *ri = ids + k * NL, *rlab = lab + k * NL;
        for (int64_t t = 0; t < NL; t++) {
            ri[t] = repad_id;
            rlab[t] = QV_IGNORE_INDEX;
        }
        for (int half = 0; half < 2; half++) {
            int64_t r = 2 * k + half;
            for (int64_t t = 0; t < L; t++)
                if (b->attention_mask[r * L + t]) {
                    ri[w] = b->input_ids[r * L + t];
                    rlab[w] = b->labels[r * L + t];
                    w++;
                }
            if (half == 0 && opt->interleave)
                for (int64_t t = 0; t < piece; t++, w++)
                    ri[w] = rlab[w] = pool[(size_t)(2 * k) * (size_t)piece + (size_t)t];
        }
        memset(am + k * NL + off, 1, (size_t)n);
        rl[k] = n;
    }
    qv_free(keep);
    qv_free(pool);
    qv_free(b->input_ids);
    qv_free(b->labels);
    qv_free(b->attention_mask);
    qv_free(b->row_len);
    b->input_ids = ids;
    b->labels = lab;
    b->attention_mask = am;
    b->row_len = rl;
    b->n_rows = nb;
    b->len = NL;
    return QV_OK;
}
