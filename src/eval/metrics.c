/* metrics.c — the evaluation's sums over loss rows and the means reported per model (eval.h;
 * spec CLI.md `qvlm eval`). */
#include <math.h>

#include "eval.h"

void qv_eval_sums_row(qv_eval_sums *s, const qv_llm_head_stat *st, const qv_llm_head_stat *fp, int64_t target)
{
    s->rows++;
    s->nll += st->nll;
    s->kl += st->kl;
    s->correct += st->argmax == target;
    s->agree += st->argmax == fp->argmax;
}

void qv_eval_sums_add(qv_eval_sums *acc, const qv_eval_sums *x)
{
    acc->rows += x->rows;
    acc->nll += x->nll;
    acc->kl += x->kl;
    acc->correct += x->correct;
    acc->agree += x->agree;
}

void qv_eval_metrics_of(const qv_eval_sums *s, qv_eval_metrics *out)
{
    out->rows = s->rows;
    if (s->rows <= 0) {
        out->nll = out->token_accuracy = out->kl_to_fp = out->top1_agreement_with_fp = NAN;
        return;
    }
    const double n = (double)s->rows;
    out->nll = s->nll / n;
    out->token_accuracy = (double)s->correct / n;
    out->kl_to_fp = s->kl / n;
    out->top1_agreement_with_fp = (double)s->agree / n;
}
