/* text.c — the ppl task of `qvlm eval` through the evaluation runner (eval.h qv_eval_ppl; spec
 * CLI.md `--task ppl`, llm/ppl.h for the window definition), so that perplexity gets the same
 * columns as the caption task: NLL, accuracy, KL to FP and top-1 agreement per model. */
#include <math.h>
#include <string.h>

#include "../core/prof.h"
#include "eval.h"

typedef struct text_source {
    const int64_t *ids;
    int64_t seqlen;
    const char *what;
} text_source;

static qv_status text_get(void *ctx, qv_llm *m, int64_t s0, int64_t n, qv_llm_batch *b)
{
    (void)m;
    const text_source *t = ctx;
    return qv_llm_batch_from_ids(b, t->ids + s0 * t->seqlen, n, t->seqlen, t->what);
}

qv_status qv_eval_ppl(qv_llm *m, qv_eval_quant *q, size_t nq, const int64_t *ids, int64_t n, int64_t seqlen,
                      int64_t batch, uint64_t max_memory, const char *what, qv_progress *prog, qv_eval_report *out)
{
    memset(out, 0, sizeof *out);
    const double t0 = qv_now_s();
    if (seqlen < 2)
        return qv_fail(QV_ERR_INVALID, "%s: --seqlen must be at least 2", what);
    if (seqlen > m->c->max_positions)
        return qv_fail(QV_ERR_INVALID, "%s: seqlen %lld exceeds max_position_embeddings %lld of %s", what,
                       (long long)seqlen, (long long)m->c->max_positions, m->cfg.path);
    const int64_t nw = n / seqlen;
    if (nw == 0)
        return qv_fail(QV_ERR_INVALID, "%s: %lld tokens, fewer than one window of %lld", what, (long long)n,
                       (long long)seqlen);
    int64_t chunk = batch;
    if (chunk <= 0)
        QV_TRY(qv_eval_chunk_samples(m, nq + 1, seqlen, nw, max_memory, &chunk));
    else
        QV_TRY(qv_eval_check_chunk(m, nq + 1, seqlen, chunk, max_memory, what));
    const size_t K = nq + 1;
    qv_eval_sums *sums = qv_malloc(K * (size_t)nw * sizeof *sums, "sums");
    qv_qmodel **qms = qv_malloc(K * sizeof *qms, "quantized models");
    qv_status st = sums && qms ? QV_OK : QV_ERR_NOMEM;
    for (size_t k = 0; st == QV_OK && k < nq; k++)
        qms[k] = &q[k].qm;
    text_source ts = {ids, seqlen, what};
    const qv_eval_source src = {.what = what, .n_samples = nw, .len = seqlen, .unit = "window", .ctx = &ts,
                                .get = text_get};
    if (st == QV_OK && prog)
        qv_progress_init(prog, prog->out, "ppl", nw);
    if (st == QV_OK)
        st = qv_eval_run(m, qms, nq, &src, chunk, prog, sums);
    qv_progress_finish(prog);
    if (st == QV_OK) {
        out->task = QV_EVAL_TASK_PPL;
        out->n_samples = nw;
        out->seqlen = seqlen;
        out->chunk = chunk;
        out->n_cols = K;
        out->col = qv_calloc(K, sizeof *out->col, "report");
        st = out->col ? QV_OK : QV_ERR_NOMEM;
    }
    for (size_t k = 0; st == QV_OK && k < K; k++) {
        qv_eval_column *c = &out->col[k];
        c->name = qv_strdup(k ? q[k - 1].name : "fp");
        c->per_sample = qv_malloc((size_t)nw * sizeof *c->per_sample, "per-window sums");
        if (!c->name || !c->per_sample) {
            st = QV_ERR_NOMEM;
            break;
        }
        memcpy(c->per_sample, sums + k * (size_t)nw, (size_t)nw * sizeof *c->per_sample);
        qv_eval_sums tot = {0};
        for (int64_t w = 0; w < nw; w++)
            qv_eval_sums_add(&tot, &sums[k * (size_t)nw + (size_t)w]);
        qv_eval_metrics_of(&tot, &c->m);
        c->ppl = exp(c->m.nll);
        c->shuffled = (qv_eval_metrics){0, NAN, NAN, NAN, NAN};
        c->vision_reliance = NAN;
    }
    out->seconds = qv_now_s() - t0;
    if (st != QV_OK)
        qv_eval_report_free(out);
    qv_free(sums);
    qv_free(qms);
    return st;
}
