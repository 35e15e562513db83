/* forward.c — the full-model forward with loss rows, NLL and dumps (forward.h). */
#include "forward.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "head.h"

#define LOGIT_ROWS 64 /* rows per chunk when the full logits are dumped */

qv_status qv_llm_batch_embeds(const qv_llm *m, const qv_llm_batch *b, float *out)
{
    const int64_t T = b->B * b->L;
    if (b->inputs_embeds) {
        memcpy(out, b->inputs_embeds, (size_t)(T * m->C) * sizeof *out);
        return QV_OK;
    }
    qv_status st = qv_llm_embed(m, b->input_ids, T, out);
    return st == QV_OK ? st : qv_fail_prefix(st, "%s", b->path);
}

static bool wants(const qv_llm_dump *d, const char *name) { return d && d->want && d->want(d->ctx, name); }

static qv_status dump_logits(qv_llm *m, const float *hidden, int64_t T, const qv_llm_dump *d)
{
    const int64_t C = m->C, V = m->V;
    float *nrm = qv_malloc((size_t)(LOGIT_ROWS * C) * sizeof *nrm, "normed rows");
    float *lg = qv_malloc((size_t)(LOGIT_ROWS * V) * sizeof *lg, "logits rows");
    uint8_t keep[LOGIT_ROWS];
    memset(keep, 1, sizeof keep);
    qv_status st = nrm && lg ? QV_OK : QV_ERR_NOMEM;
    for (int64_t r0 = 0; r0 < T && st == QV_OK; r0 += LOGIT_ROWS) {
        const int64_t n = QV_MIN((int64_t)LOGIT_ROWS, T - r0);
        qv_llm_final_norm(m, hidden + r0 * C, n, nrm);
        st = qv_llm_head_nll(m, nrm, n, NULL, NULL, NULL, keep, lg);
        if (st == QV_OK)
            st = d->put(d->ctx, "logits", r0, n, lg);
    }
    qv_free(nrm);
    qv_free(lg);
    return st;
}

uint64_t qv_llm_forward_bytes(const qv_llm *m, int64_t B, int64_t L, int64_t n0, bool norm_dump)
{
    const double T = (double)B * (double)L, C = (double)m->C, I = (double)m->I, V = (double)m->V;
    const double qd = (double)(m->H * m->d), kd = (double)(m->KV * m->d), R = T < 512 ? T : 512;
    double weights = 0;
    for (int l = 0; l < QV_LIN_COUNT; l++)
        weights += (double)qv_llm_lin_out(m, (qv_llm_lin)l) * (double)qv_llm_lin_in(m, (qv_llm_lin)l);
    double floats = T * C                                     /* hidden states */
                    + 2 * T * C                               /* layer: norm output, module output */
                    + T * (2 * qd + 2 * kd)                   /* q, k, v, attention output */
                    + (m->c->kind == QV_DECODER_INTERNLM2 ? T * (qd + 2 * kd) : 0) /* packed wqkv output */
                    + 2 * R * I                               /* MLP chunk */
                    + 4096 * C + 256 * 4096.0                 /* head chunk and logits tile */
                    + n0 * V + (norm_dump ? T * C : 0);
    double bytes = floats * 4 + weights * (double)qv_dtype_size(m->dt) + (m->dt == QV_BF16 ? 32.0 * 1024 * 1024 : 0);
    return (uint64_t)bytes;
}

qv_status qv_llm_forward(qv_llm *m, const qv_llm_batch *b, const qv_llm_dump *dump, qv_progress *prog,
                         unsigned flags, qv_llm_result *res)
{
    memset(res, 0, sizeof *res);
    res->loss = NAN;
    QV_TRY(qv_llm_batch_check(b, m));
    const int64_t T = b->B * b->L, C = m->C;
    size_t TC;
    if (!qv_mul_size((size_t)T, (size_t)C, &TC))
        return qv_fail(QV_ERR_NOMEM, "%s: batch too large", b->path);
    float *h = qv_aligned_alloc(64, TC * sizeof *h, "hidden states");
    if (!h)
        return QV_ERR_NOMEM;
    qv_llm_ctx ctx = {0};
    qv_llm_layer layer = {0};
    float *rows = NULL;
    int64_t *targets = NULL;
    uint8_t *keep = NULL;
    qv_status st;
    QV_CHECK(st = qv_llm_batch_embeds(m, b, h), done);
    if (wants(dump, "llm.inputs_embeds"))
        QV_CHECK(st = dump->put(dump->ctx, "llm.inputs_embeds", 0, T, h), done);
    QV_CHECK(st = qv_llm_ctx_init(m, &ctx, b->B, b->L, b->attention_mask, b->position_ids, b->mrope_position_ids),
             done);
    char name[64];
    /* One sample per runner call: every sample's rows meet the same GEMM tiles whatever else is in
     * the batch, so a sample's result does not depend on the batch it came in (data-parallel runs
     * split batches between ranks and must reproduce the single-process bits). */
    for (int64_t i = 0; i < m->c->n_layers; i++) {
        QV_CHECK(st = qv_llm_layer_load(m, i, &layer), done);
        for (int64_t bb = 0; bb < b->B; bb++) {
            qv_llm_ctx view;
            qv_llm_ctx_slice(&ctx, bb, 1, &view);
            float *hb = h + bb * b->L * C;
            QV_CHECK(st = qv_llm_layer_forward(m, &layer.w, &view, hb, hb, QV_F32, NULL), done);
        }
        qv_llm_layer_release(m, &layer);
        snprintf(name, sizeof name, "llm.layers.%lld.out", (long long)i);
        if (wants(dump, name))
            QV_CHECK(st = dump->put(dump->ctx, name, 0, T, h), done);
        snprintf(name, sizeof name, "layer %lld", (long long)i);
        qv_progress_step(prog, 1, name);
    }
    if (wants(dump, "llm.norm.out")) {
        float *nrm = qv_malloc(TC * sizeof *nrm, "final norm output");
        if (!nrm) {
            st = QV_ERR_NOMEM;
            goto done;
        }
        qv_llm_final_norm(m, h, T, nrm);
        st = dump->put(dump->ctx, "llm.norm.out", 0, T, nrm);
        qv_free(nrm);
        QV_CHECK(st, done);
    }
    /* loss rows: final norm, head, NLL */
    QV_CHECK(st = qv_llm_batch_loss_rows(b, &res->index, &res->n_rows), done);
    const int64_t M = res->n_rows;
    rows = qv_malloc((size_t)(M * C) * sizeof *rows + 4, "loss-row hidden states");
    targets = qv_malloc((size_t)M * sizeof *targets + 8, "targets");
    keep = qv_malloc((size_t)M + 1, "sample-0 rows");
    res->nll = qv_malloc((size_t)M * sizeof *res->nll + 4, "nll");
    if (!rows || !targets || !keep || !res->nll) {
        st = QV_ERR_NOMEM;
        goto done;
    }
    for (int64_t r = 0; r < M; r++) {
        const int64_t bb = res->index[2 * r], t = res->index[2 * r + 1];
        memcpy(rows + r * C, h + (bb * b->L + t) * C, (size_t)C * sizeof *rows);
        targets[r] = b->labels[bb * b->L + t + 1];
        keep[r] = bb == 0 && !(flags & QV_LLM_FWD_NO_LOGITS0);
        res->n_rows0 += keep[r];
    }
    res->logits0 = qv_malloc((size_t)(res->n_rows0 * m->V) * sizeof(float) + 4, "sample-0 logits");
    res->index0 = qv_malloc((size_t)(res->n_rows0 * 2) * sizeof(int64_t) + 8, "sample-0 index");
    if (!res->logits0 || !res->index0) {
        st = QV_ERR_NOMEM;
        goto done;
    }
    memcpy(res->index0, res->index, (size_t)(res->n_rows0 * 2) * sizeof(int64_t)); /* row-major: sample 0 first */
    qv_llm_final_norm(m, rows, M, rows);
    /* the head per sample too (its loss rows are contiguous, sample 0's first) */
    for (int64_t r0 = 0, k0 = 0; r0 < M;) {
        int64_t r1 = r0, kept = 0;
        while (r1 < M && res->index[2 * r1] == res->index[2 * r0])
            kept += keep[r1++];
        QV_CHECK(st = qv_llm_head_nll(m, rows + r0 * C, r1 - r0, targets + r0, NULL, res->nll + r0, keep + r0,
                                      res->logits0 + k0 * m->V),
                 done);
        k0 += kept;
        r0 = r1;
    }
    double sum = 0;
    for (int64_t r = 0; r < M; r++)
        sum += res->nll[r];
    res->loss = M ? sum / (double)M : NAN;
    if (wants(dump, "logits"))
        QV_CHECK(st = dump_logits(m, h, T, dump), done);
done:
    qv_llm_layer_release(m, &layer);
    qv_llm_ctx_free(&ctx);
    qv_free(h);
    qv_free(rows);
    qv_free(targets);
    qv_free(keep);
    if (st != QV_OK)
        qv_llm_result_free(res);
    return st;
}

void qv_llm_result_free(qv_llm_result *r)
{
    if (!r)
        return;
    qv_free(r->nll);
    qv_free(r->index);
    qv_free(r->logits0);
    qv_free(r->index0);
    memset(r, 0, sizeof *r);
    r->loss = NAN;
}
