/* report.c — the evaluation's comparison table and JSON object (eval.h; spec CLI.md `qvlm eval`
 * outputs). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../core/fsutil.h"
#include "eval.h"

void qv_eval_report_free(qv_eval_report *r)
{
    if (!r)
        return;
    for (size_t k = 0; r->col && k < r->n_cols; k++) {
        qv_free(r->col[k].name);
        qv_free(r->col[k].per_sample);
    }
    qv_free(r->col);
    qv_free(r->sample_entry);
    qv_free(r->image_entry);
    memset(r, 0, sizeof *r);
}

/* ---- table ---------------------------------------------------------------------------------------- */

#define MAX_FIELDS 8
#define FIELD 48

/* Display width of UTF-8 text (one column per code point: the headers hold a Δ). */
static size_t width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

static void num(char *buf, const char *fmt, double v)
{
    if (isnan(v))
        snprintf(buf, FIELD, "-");
    else
        snprintf(buf, FIELD, fmt, v);
}

static void pct(char *buf, double v)
{
    if (isnan(v))
        snprintf(buf, FIELD, "-");
    else
        snprintf(buf, FIELD, "%.2f%%", 100.0 * v);
}

/* KL spans decades: fixed point from 1e-3 up, scientific below (0 stays 0). */
static void kl(char *buf, double v)
{
    if (isnan(v))
        snprintf(buf, FIELD, "-");
    else if (v == 0)
        snprintf(buf, FIELD, "0");
    else if (v < 1e-3)
        snprintf(buf, FIELD, "%.3e", v);
    else
        snprintf(buf, FIELD, "%.6f", v);
}

void qv_eval_report_table(const qv_eval_report *r, qv_strbuf *out)
{
    const bool ppl = r->task == QV_EVAL_TASK_PPL;
    const char *head_caption[] = {"model", "NLL", "Δ vs FP", "accuracy", "KL to FP", "top-1 agree", "vision reliance"};
    const char *head_ppl[] = {"model", "PPL", "NLL", "Δ vs FP", "accuracy", "KL to FP", "top-1 agree"};
    const char *const *head = ppl ? head_ppl : head_caption;
    const int nf = 7;
    const size_t rows = r->n_cols;
    char(*cell)[MAX_FIELDS][FIELD] = qv_calloc(rows + 1, sizeof *cell, "table");
    if (!cell) {
        out->oom = true;
        return;
    }
    size_t w[MAX_FIELDS] = {0};
    for (int f = 0; f < nf; f++)
        w[f] = width(head[f]);
    const double fp_nll = r->col[0].m.nll;
    for (size_t k = 0; k < rows; k++) {
        const qv_eval_column *c = &r->col[k];
        char(*row)[FIELD] = cell[k];
        int f = 0;
        snprintf(row[f++], FIELD, "%.*s", FIELD - 1, c->name);
        if (ppl)
            num(row[f++], "%.4f", c->ppl);
        num(row[f++], "%.6f", c->m.nll);
        if (k)
            num(row[f++], "%+.6f", c->m.nll - fp_nll);
        else
            snprintf(row[f++], FIELD, "-");
        pct(row[f++], c->m.token_accuracy);
        kl(row[f++], c->m.kl_to_fp);
        pct(row[f++], c->m.top1_agreement_with_fp);
        if (!ppl)
            num(row[f++], "%+.6f", r->shuffled ? c->vision_reliance : NAN);
        for (int i = 0; i < nf; i++)
            w[i] = QV_MAX(w[i], width(row[i]));
    }
    /* the model names are kept whole even when longer than FIELD − 1 */
    for (size_t k = 0; k < rows; k++)
        w[0] = QV_MAX(w[0], width(r->col[k].name));
    for (size_t k = 0; k <= rows; k++) {
        for (int f = 0; f < nf; f++) {
            const char *s = k == 0 ? head[f] : f == 0 ? r->col[k - 1].name : cell[k - 1][f];
            const size_t pad = w[f] - width(s);
            if (f == 0) {
                qv_sb_puts(out, s);
                if (nf > 1)
                    qv_sb_printf(out, "%*s", (int)pad, "");
            } else {
                qv_sb_printf(out, "  %*s%s", (int)pad, "", s);
            }
        }
        qv_sb_puts(out, "\n");
    }
    qv_free(cell);
}

/* ---- JSON ----------------------------------------------------------------------------------------- */

static void jnum(qv_strbuf *b, const char *key, double v, bool comma)
{
    qv_sb_printf(b, "%s\"%s\": ", comma ? ", " : "", key);
    if (isfinite(v))
        qv_sb_json_double(b, v);
    else
        qv_sb_puts(b, "null");
}

static void jmetrics(qv_strbuf *b, const qv_eval_metrics *m)
{
    jnum(b, "nll", m->nll, false);
    jnum(b, "token_accuracy", m->token_accuracy, true);
    jnum(b, "kl_to_fp", m->kl_to_fp, true);
    jnum(b, "top1_agreement_with_fp", m->top1_agreement_with_fp, true);
    qv_sb_printf(b, ", \"rows\": %lld", (long long)m->rows);
}

void qv_eval_report_json(const qv_eval_report *r, qv_strbuf *out)
{
    qv_sb_puts(out, "{");
    for (size_t k = 0; k < r->n_cols; k++) {
        const qv_eval_column *c = &r->col[k];
        qv_sb_puts(out, k ? ",\n  " : "\n  ");
        qv_sb_json_str(out, c->name, strlen(c->name));
        qv_sb_puts(out, ": {");
        jmetrics(out, &c->m);
        qv_sb_printf(out, ", \"%s\": %lld", r->task == QV_EVAL_TASK_PPL ? "windows" : "samples", (long long)r->n_samples);
        if (r->task == QV_EVAL_TASK_PPL) {
            jnum(out, "ppl", c->ppl, true);
            qv_sb_printf(out, ", \"seqlen\": %lld", (long long)r->seqlen);
        }
        if (r->shuffled) {
            qv_sb_printf(out, ", \"shuffled\": {");
            jmetrics(out, &c->shuffled);
            qv_sb_printf(out, ", \"seed\": %llu}", (unsigned long long)r->seed);
            jnum(out, "vision_reliance", c->vision_reliance, true);
        }
        qv_sb_puts(out, "}");
    }
    qv_sb_puts(out, "\n}\n");
}

qv_status qv_eval_report_write_json(const qv_eval_report *r, const char *path)
{
    qv_strbuf b;
    qv_sb_init(&b);
    qv_eval_report_json(r, &b);
    qv_status st = b.oom ? qv_fail(QV_ERR_NOMEM, "%s: out of memory formatting the report", path)
                         : qv_write_file_atomic(path, b.s, b.len);
    qv_sb_free(&b);
    return st;
}
