/* ppl.c — perplexity in non-overlapping windows, and reading its data files (ppl.h). */
#include "ppl.h"

#include <math.h>
#include <string.h>

#include "../core/fsutil.h"
#include "../io/json.h"
#include "batch.h"
#include "forward.h"

#define PPL_MAX_FILE ((size_t)1 << 31)

static bool ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

qv_status qv_ppl_read_text(const char *path, char **text, size_t *len)
{
    char *data = NULL;
    size_t n = 0;
    *text = NULL;
    *len = 0;
    QV_TRY(qv_read_file(path, PPL_MAX_FILE, &data, &n));
    if (!ends_with(path, ".jsonl")) {
        *text = data;
        *len = n;
        return QV_OK;
    }
    qv_strbuf out;
    qv_sb_init(&out);
    qv_status st = QV_OK;
    size_t line_no = 0, n_items = 0;
    for (char *p = data, *end = data + n; p < end && st == QV_OK;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
        line_no++;
        /* skip blank lines */
        size_t i = 0;
        while (i < ll && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r'))
            i++;
        if (i < ll) {
            qv_json *j = NULL;
            char what[64];
            snprintf(what, sizeof what, "line %zu", line_no);
            st = qv_json_parse(p, ll, what, 0, &j);
            const char *s = NULL;
            if (st == QV_OK) {
                qv_json *t = qv_json_get(j, "text");
                if (!qv_json_is_type(t, json_type_string))
                    st = qv_fail(QV_ERR_FORMAT, "line %zu: no string field \"text\"", line_no);
                else
                    s = json_object_get_string(t);
                if (s) {
                    if (n_items++)
                        qv_sb_puts(&out, "\n\n");
                    qv_sb_putn(&out, s, (size_t)json_object_get_string_len(t));
                }
            }
            qv_json_free(j);
        }
        p += ll + 1;
    }
    qv_free(data);
    if (st == QV_OK && out.oom)
        st = qv_fail(QV_ERR_NOMEM, "out of memory reading %s", path);
    if (st != QV_OK) {
        qv_sb_free(&out);
        return qv_fail_prefix(st, "%s", path);
    }
    *len = out.len;
    *text = out.s ? out.s : qv_strdup("");
    return *text ? QV_OK : QV_ERR_NOMEM;
}

qv_status qv_ppl_load_ids(const char *path, const qv_text_encoder *enc, int64_t **ids, int64_t *n)
{
    *ids = NULL;
    *n = 0;
    if (ends_with(path, ".safetensors")) {
        qv_st_file *f = NULL;
        QV_TRY(qv_st_open(path, &f));
        qv_tensor t;
        qv_status st = qv_st_get(f, "input_ids", &t);
        if (st == QV_OK && (qv_dtype_is_float(t.dtype) || t.dtype == QV_BOOL))
            st = qv_fail(QV_ERR_FORMAT, "%s: tensor input_ids has dtype %s, expected an integer dtype", path,
                         qv_dtype_name(t.dtype));
        if (st == QV_OK) {
            *n = qv_tensor_numel(&t);
            *ids = qv_malloc((size_t)*n * sizeof(int64_t) + 8, "token ids");
            st = *ids ? qv_convert(*ids, QV_I64, t.data, t.dtype, (size_t)*n) : QV_ERR_NOMEM;
        }
        qv_st_close(f);
        return st;
    }
    if (!enc || !enc->encode)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: text data needs a tokenizer, which this build lacks; pass "
                       "pre-tokenized ids (a .safetensors file with input_ids)", path);
    char *text = NULL;
    size_t len = 0;
    QV_TRY(qv_ppl_read_text(path, &text, &len));
    qv_vec v;
    qv_vec_init(&v, sizeof(int32_t));
    qv_status st = enc->encode(enc->ctx, text, len, &v);
    qv_free(text);
    if (st != QV_OK) {
        qv_vec_free(&v);
        return qv_fail_prefix(st, "%s", path);
    }
    *n = (int64_t)v.len;
    *ids = qv_malloc(v.len * sizeof(int64_t) + 8, "token ids");
    if (!*ids) {
        qv_vec_free(&v);
        return QV_ERR_NOMEM;
    }
    for (size_t i = 0; i < v.len; i++)
        (*ids)[i] = QV_VEC_AT(&v, int32_t, i);
    qv_vec_free(&v);
    return QV_OK;
}

qv_status qv_llm_ppl(qv_llm *m, const int64_t *ids, int64_t n, int64_t seqlen, int64_t batch, const char *what,
                     qv_progress *prog, qv_ppl_result *res)
{
    memset(res, 0, sizeof *res);
    res->n_tokens = n;
    if (seqlen < 2)
        return qv_fail(QV_ERR_INVALID, "%s: --seqlen must be at least 2", what);
    if (seqlen > m->c->max_positions)
        return qv_fail(QV_ERR_INVALID, "%s: seqlen %lld exceeds max_position_embeddings %lld of %s", what,
                       (long long)seqlen, (long long)m->c->max_positions, m->cfg.path);
    const int64_t nw = n / seqlen;
    if (nw == 0)
        return qv_fail(QV_ERR_INVALID, "%s: %lld tokens, fewer than one window of %lld", what, (long long)n,
                       (long long)seqlen);
    if (batch < 1)
        batch = 1;
    double sum = 0;
    for (int64_t w0 = 0; w0 < nw; w0 += batch) {
        const int64_t nb = QV_MIN(batch, nw - w0);
        qv_llm_batch b;
        QV_TRY(qv_llm_batch_from_ids(&b, ids + w0 * seqlen, nb, seqlen, what));
        qv_llm_result r;
        qv_status st = qv_llm_forward(m, &b, NULL, NULL, QV_LLM_FWD_NO_LOGITS0, &r);
        if (st == QV_OK)
            for (int64_t k = 0; k < nb; k++) {
                double s = 0; /* rows are window-major, seqlen − 1 per window */
                for (int64_t j = 0; j < seqlen - 1; j++)
                    s += r.nll[k * (seqlen - 1) + j];
                sum += s / (double)(seqlen - 1);
            }
        qv_llm_result_free(&r);
        qv_llm_batch_free(&b);
        QV_TRY(st);
        char step[48];
        snprintf(step, sizeof step, "window %lld", (long long)(w0 + nb));
        qv_progress_step(prog, nb, step);
    }
    res->n_windows = nw;
    res->mean_nll = sum / (double)nw;
    res->ppl = exp(res->mean_nll);
    return QV_OK;
}
