/* runner.c — the full-precision model and the quantized models side by side on chunks of
 * samples, layer-major, with the loss rows of all of them through one streamed LM-head pass
 * (eval.h qv_eval_run; spec CLI.md `qvlm eval`). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "eval.h"

#define DEFAULT_CHUNK_TOKENS 8192
#define MLP_CHUNK_ROWS 512 /* the decoder MLP's token chunk (llm.h memory note) */

/* Bytes of one chunk of `tokens` tokens with n_models models (see qv_eval_chunk_samples). */
static void chunk_bytes(const qv_llm *m, size_t n_models, double *fixed, double *per_token)
{
    const double C = (double)m->C, hd = (double)(m->H * m->d), kvd = (double)(m->KV * m->d);
    /* fixed: one layer's F32 weights three times (the FP layer, a quantized model's working copy
       and its stored copy), the logits tiles of the head (4 · 256 · 4096 floats) and the MLP's
       token chunk */
    double layer = 0;
    for (int l = 0; l < QV_LIN_COUNT; l++)
        layer += (double)qv_llm_lin_out(m, (qv_llm_lin)l) * (double)qv_llm_lin_in(m, (qv_llm_lin)l);
    *fixed = 4.0 * (3.0 * layer + 4.0 * 256.0 * 4096.0 + MLP_CHUNK_ROWS * (2.0 * (double)m->I + C));
    /* per token: every model's hidden states, the layer's attention scratch (llm.h), the loss
       rows' copies, the input embeddings */
    *per_token = 4.0 * ((double)n_models * C + 4.0 * C + 3.0 * hd + 2.0 * kvd + (double)n_models * C + C);
}

qv_status qv_eval_chunk_samples(const qv_llm *m, size_t n_models, int64_t len, int64_t n_samples,
                                uint64_t max_memory, int64_t *chunk)
{
    if (n_samples < 1)
        n_samples = 1;
    if (len < 1)
        len = 1;
    if (!max_memory) {
        *chunk = QV_MAX((int64_t)1, QV_MIN(n_samples, DEFAULT_CHUNK_TOKENS / len));
        return QV_OK;
    }
    double fixed, per_token;
    chunk_bytes(m, n_models, &fixed, &per_token);
    const double per_sample = per_token * (double)len, budget = (double)max_memory - fixed;
    if (budget < per_sample)
        return qv_fail(QV_ERR_NOMEM, "--max-memory %.1f MiB is too small: one sample of %lld tokens with %zu model%s "
                       "needs about %.1f MiB", (double)max_memory / 1048576.0, (long long)len, n_models,
                       n_models == 1 ? "" : "s", (fixed + per_sample) / 1048576.0);
    *chunk = QV_MAX((int64_t)1, QV_MIN(n_samples, (int64_t)(budget / per_sample)));
    return QV_OK;
}

qv_status qv_eval_check_chunk(const qv_llm *m, size_t n_models, int64_t len, int64_t chunk, uint64_t max_memory,
                              const char *what)
{
    if (!max_memory)
        return QV_OK;
    double fixed, per_token;
    chunk_bytes(m, n_models, &fixed, &per_token);
    const double need = fixed + per_token * (double)len * (double)chunk;
    if (need <= (double)max_memory)
        return QV_OK;
    return qv_fail(QV_ERR_NOMEM, "%s: %lld sample%s of %lld tokens per forward with %zu model%s need about %.1f MiB, "
                   "more than --max-memory %.1f MiB (fewer per forward: --batch / --chunk)", what, (long long)chunk,
                   chunk == 1 ? "" : "s", (long long)len, n_models, n_models == 1 ? "" : "s", need / 1048576.0,
                   (double)max_memory / 1048576.0);
}

static qv_status check_applied(qv_qmodel *const *qms, size_t nq, const qv_llm *m)
{
    for (size_t k = 0; k < nq; k++) {
        const qv_qmodel *q = qms[k];
        if (!q->sc)
            continue;
        if (q->n_applied != q->sc->n)
            return qv_fail(QV_ERR_INVALID, "%s: %zu of the %zu scale entries matched the decoder layers of %s", q->sc->path,
                           q->n_applied, q->sc->n, m->dir);
        if (q->n_clips_applied != q->sc->n_clip)
            return qv_fail(QV_ERR_INVALID, "%s: %zu of the %zu clip entries matched the decoder layers of %s", q->sc->path,
                           q->n_clips_applied, q->sc->n_clip, m->dir);
    }
    return QV_OK;
}

/* Every model's hidden states for one chunk: h [K, T, C]. The FP model is the model without a
 * hook; model k ≥ 1 runs with qms[k − 1] as its hook. */
static qv_status run_layers(qv_llm *m, qv_qmodel *const *qms, size_t nq, const qv_llm_ctx *ctx, float *h, size_t TC,
                            int64_t s0, int64_t nb, qv_progress *layer_prog)
{
    qv_llm_layer layer = {0};
    qv_status st = QV_OK;
    for (int64_t i = 0; i < m->c->n_layers && st == QV_OK; i++) {
        for (size_t k = 0; k <= nq && st == QV_OK; k++) {
            m->layer_hook = k ? qv_qmodel_hook : NULL;
            m->layer_hook_ctx = k ? qms[k - 1] : NULL;
            st = qv_llm_layer_load(m, i, &layer);
            if (st == QV_OK)
                st = qv_llm_layer_forward(m, &layer.w, ctx, h + k * TC, h + k * TC, QV_F32, NULL);
            qv_llm_layer_release(m, &layer);
        }
        char what[96];
        snprintf(what, sizeof what, "samples %lld-%lld layer %lld", (long long)s0 + 1, (long long)(s0 + nb),
                 (long long)i);
        qv_progress_step(layer_prog, 1, what);
    }
    return st;
}

/* The loss rows of one chunk: statistics of every model, added to the per-sample sums. */
static qv_status score_rows(qv_llm *m, const qv_llm_batch *b, const float *h, size_t TC, size_t K, int64_t s0,
                            int64_t n_samples, qv_eval_sums *sums)
{
    int64_t *idx = NULL, M = 0;
    QV_TRY(qv_llm_batch_loss_rows(b, &idx, &M));
    const int64_t C = m->C;
    size_t MC;
    float *rows = NULL;
    int64_t *targets = NULL;
    qv_llm_head_stat *stats = NULL;
    const float **ptr = NULL;
    qv_status st = QV_OK;
    if (M == 0)
        goto done;
    if (!qv_mul_size((size_t)M, (size_t)C, &MC) || !qv_mul_size(MC, K, &MC)) {
        st = qv_fail(QV_ERR_NOMEM, "%s: too many loss rows", b->path);
        goto done;
    }
    rows = qv_aligned_alloc(64, MC * sizeof *rows, "loss-row hidden states");
    targets = qv_malloc((size_t)M * sizeof *targets, "targets");
    stats = qv_malloc((size_t)M * K * sizeof *stats, "row statistics");
    ptr = qv_malloc(K * sizeof *ptr, "row pointers");
    if (!rows || !targets || !stats || !ptr) {
        st = QV_ERR_NOMEM;
        goto done;
    }
    for (size_t k = 0; k < K; k++) {
        float *rk = rows + k * (size_t)(M * C);
        for (int64_t r = 0; r < M; r++) {
            const int64_t bb = idx[2 * r], t = idx[2 * r + 1];
            memcpy(rk + r * C, h + k * TC + (size_t)((bb * b->L + t) * C), (size_t)C * sizeof *rk);
        }
        qv_llm_final_norm(m, rk, M, rk);
        ptr[k] = rk;
    }
    for (int64_t r = 0; r < M; r++)
        targets[r] = b->labels[idx[2 * r] * b->L + idx[2 * r + 1] + 1];
    QV_CHECK(st = qv_llm_head_compare(m, ptr, (int)(K - 1), M, targets, stats), done);
    for (int64_t r = 0; r < M; r++) {
        const int64_t s = s0 + idx[2 * r];
        for (size_t k = 0; k < K; k++)
            qv_eval_sums_row(&sums[k * (size_t)n_samples + (size_t)s], &stats[k * (size_t)M + (size_t)r], &stats[r],
                             targets[r]);
    }
done:
    qv_free(idx);
    qv_free(rows);
    qv_free(targets);
    qv_free(stats);
    qv_free(ptr);
    return st;
}

qv_status qv_eval_run(qv_llm *m, qv_qmodel *const *qms, size_t nq, const qv_eval_source *src, int64_t chunk,
                      qv_progress *prog, qv_eval_sums *sums)
{
    const size_t K = nq + 1;
    const int64_t N = src->n_samples, C = m->C;
    memset(sums, 0, K * (size_t)N * sizeof *sums);
    if (chunk < 1)
        chunk = 1;
    qv_status (*const hook)(void *, qv_llm *, qv_llm_layer *) = m->layer_hook;
    void *const hook_ctx = m->layer_hook_ctx;
    for (size_t k = 0; k < nq; k++)
        qms[k]->n_applied = qms[k]->n_clips_applied = 0;
    qv_status st = QV_OK;
    for (int64_t s0 = 0; s0 < N && st == QV_OK; s0 += chunk) {
        const int64_t nb = QV_MIN(chunk, N - s0);
        qv_llm_batch b = {0};
        qv_llm_ctx ctx = {0};
        float *h = NULL;
        size_t TC = 0, all = 0;
        QV_CHECK(st = src->get(src->ctx, m, s0, nb, &b), chunk_done);
        QV_CHECK(st = qv_llm_batch_check(&b, m), chunk_done);
        if (!qv_mul_size((size_t)(b.B * b.L), (size_t)C, &TC) || !qv_mul_size(TC, K, &all)) {
            st = qv_fail(QV_ERR_NOMEM, "%s: chunk too large", b.path);
            goto chunk_done;
        }
        h = qv_aligned_alloc(64, all * sizeof *h, "hidden states of every model");
        if (!h) {
            st = QV_ERR_NOMEM;
            goto chunk_done;
        }
        QV_CHECK(st = qv_llm_batch_embeds(m, &b, h), chunk_done);
        for (size_t k = 1; k < K; k++)
            memcpy(h + k * TC, h, TC * sizeof *h);
        QV_CHECK(st = qv_llm_ctx_init(m, &ctx, b.B, b.L, b.attention_mask, b.position_ids, b.mrope_position_ids),
                 chunk_done);
        st = run_layers(m, qms, nq, &ctx, h, TC, s0, nb, src->unit ? NULL : prog);
        m->layer_hook = hook;
        m->layer_hook_ctx = hook_ctx;
        if (st == QV_OK && s0 == 0)
            st = check_applied(qms, nq, m);
        if (st == QV_OK)
            st = score_rows(m, &b, h, TC, K, s0, N, sums);
        if (st == QV_OK && src->unit) {
            char what[64];
            snprintf(what, sizeof what, "%s %lld", src->unit, (long long)(s0 + nb));
            qv_progress_step(prog, nb, what);
        }
    chunk_done:
        qv_llm_ctx_free(&ctx);
        qv_free(h);
        qv_llm_batch_free(&b);
    }
    m->layer_hook = hook;
    m->layer_hook_ctx = hook_ctx;
    return st;
}
