/* batch.c — loading and checking decoder batches (batch.h). */
#include "batch.h"

#include <string.h>

static qv_status read_i64(const qv_st_file *f, const qv_tensor *t, const char *key, int64_t **out)
{
    int64_t n = qv_tensor_numel(t);
    if (!qv_dtype_is_float(t->dtype) && t->dtype != QV_BOOL && qv_dtype_bits(t->dtype) > 64)
        return qv_fail(QV_ERR_FORMAT, "%s: tensor %s has dtype %s", f->path, key, qv_dtype_name(t->dtype));
    if (qv_dtype_is_float(t->dtype))
        return qv_fail(QV_ERR_FORMAT, "%s: tensor %s has dtype %s, expected an integer or BOOL dtype", f->path, key,
                       qv_dtype_name(t->dtype));
    *out = qv_malloc((size_t)n * sizeof(int64_t) + 8, key);
    if (!*out)
        return QV_ERR_NOMEM;
    return qv_convert(*out, QV_I64, t->data, t->dtype, (size_t)n);
}

static qv_status read_mask(const qv_st_file *f, const qv_tensor *t, const char *key, uint8_t **out)
{
    int64_t *tmp = NULL;
    QV_TRY(read_i64(f, t, key, &tmp));
    int64_t n = qv_tensor_numel(t);
    *out = qv_malloc((size_t)n + 1, key);
    if (!*out) {
        qv_free(tmp);
        return QV_ERR_NOMEM;
    }
    for (int64_t i = 0; i < n; i++)
        (*out)[i] = tmp[i] != 0;
    qv_free(tmp);
    return QV_OK;
}

static qv_status expect_bl(const qv_st_file *f, const char *key, const qv_tensor *t, int64_t B, int64_t L)
{
    if (t->ndim != 2 || t->shape[0] != B || t->shape[1] != L) {
        char a[96];
        return qv_fail(QV_ERR_FORMAT, "%s: tensor %s has shape %s, expected [%lld,%lld]", f->path, key,
                       qv_shape_str(a, sizeof a, t->ndim, t->shape), (long long)B, (long long)L);
    }
    return QV_OK;
}

qv_status qv_llm_batch_load(const char *path, qv_llm_batch *b)
{
    memset(b, 0, sizeof *b);
    qv_st_file *f = NULL;
    QV_TRY(qv_st_open(path, &f));
    qv_status st = QV_OK;
    b->path = qv_strdup(path);
    if (!b->path) {
        st = QV_ERR_NOMEM;
        goto done;
    }
    /* shape from the first [B, L]-shaped key present */
    qv_tensor t;
    const char *shape_keys[] = {"input_ids", "attention_mask", "labels"};
    bool have = false;
    for (size_t i = 0; i < QV_ARRAY_LEN(shape_keys) && !have; i++)
        if (qv_st_header_find(&f->hdr, shape_keys[i])) {
            qv_st_get(f, shape_keys[i], &t);
            if (t.ndim != 2) {
                char a[96];
                st = qv_fail(QV_ERR_FORMAT, "%s: tensor %s has shape %s, expected [batch, length]", path, shape_keys[i],
                             qv_shape_str(a, sizeof a, t.ndim, t.shape));
                goto done;
            }
            b->B = t.shape[0], b->L = t.shape[1];
            have = true;
        }
    if (!have && qv_st_header_find(&f->hdr, "inputs_embeds")) {
        qv_st_get(f, "inputs_embeds", &t);
        if (t.ndim == 3)
            b->B = t.shape[0], b->L = t.shape[1], have = true;
    }
    if (!have) {
        st = qv_fail(QV_ERR_FORMAT, "%s: no input_ids, attention_mask or inputs_embeds tensor", path);
        goto done;
    }
    if (b->B <= 0 || b->L <= 0) {
        st = qv_fail(QV_ERR_FORMAT, "%s: empty batch [%lld,%lld]", path, (long long)b->B, (long long)b->L);
        goto done;
    }
    const size_t BL = (size_t)(b->B * b->L);
    struct {
        const char *key;
        int64_t **i64;
        uint8_t **mask;
    } fields[] = {
        {"input_ids", &b->input_ids, NULL},           {"labels", &b->labels, NULL},
        {"attention_mask", NULL, &b->attention_mask}, {"vision_mask", NULL, &b->vision_mask},
        {"caption_mask", NULL, &b->caption_mask},
    };
    for (size_t i = 0; i < QV_ARRAY_LEN(fields); i++) {
        if (!qv_st_header_find(&f->hdr, fields[i].key))
            continue;
        QV_CHECK(st = qv_st_get(f, fields[i].key, &t), done);
        QV_CHECK(st = expect_bl(f, fields[i].key, &t, b->B, b->L), done);
        if (fields[i].i64)
            QV_CHECK(st = read_i64(f, &t, fields[i].key, fields[i].i64), done);
        else
            QV_CHECK(st = read_mask(f, &t, fields[i].key, fields[i].mask), done);
    }
    if (qv_st_header_find(&f->hdr, "position_ids")) {
        QV_CHECK(st = qv_st_get(f, "position_ids", &t), done);
        if (t.ndim == 3 && t.shape[0] == 3 && t.shape[1] == b->B && t.shape[2] == b->L) {
            QV_CHECK(st = read_i64(f, &t, "position_ids", &b->mrope_position_ids), done);
        } else {
            QV_CHECK(st = expect_bl(f, "position_ids", &t, b->B, b->L), done);
            QV_CHECK(st = read_i64(f, &t, "position_ids", &b->position_ids), done);
        }
    }
    if (!b->attention_mask) {
        b->attention_mask = qv_malloc(BL, "attention_mask");
        if (!b->attention_mask) {
            st = QV_ERR_NOMEM;
            goto done;
        }
        memset(b->attention_mask, 1, BL);
    }
    if (!b->labels) {
        if (!b->input_ids) {
            st = qv_fail(QV_ERR_FORMAT, "%s: no labels and no input_ids to derive them from", path);
            goto done;
        }
        b->labels = qv_malloc(BL * sizeof(int64_t), "labels");
        if (!b->labels) {
            st = QV_ERR_NOMEM;
            goto done;
        }
        for (size_t i = 0; i < BL; i++)
            b->labels[i] = b->attention_mask[i] ? b->input_ids[i] : -100;
    }
    {
        bool has_embeds = qv_st_header_find(&f->hdr, "inputs_embeds") != NULL;
        qv_st_close(f);
        f = NULL;
        if (has_embeds)
            QV_CHECK(st = qv_llm_batch_load_embeds(b, path, "inputs_embeds"), done);
    }
done:
    qv_st_close(f);
    if (st != QV_OK)
        qv_llm_batch_free(b);
    return st;
}

qv_status qv_llm_batch_load_embeds(qv_llm_batch *b, const char *path, const char *key)
{
    qv_st_file *f = NULL;
    QV_TRY(qv_st_open(path, &f));
    qv_tensor t;
    qv_status st = qv_st_get(f, key, &t);
    if (st == QV_OK && (t.ndim != 3 || t.shape[0] != b->B || t.shape[1] != b->L)) {
        char a[96];
        st = qv_fail(QV_ERR_FORMAT, "%s: tensor %s has shape %s, expected [%lld,%lld,hidden] (the batch %s)", path,
                     key, qv_shape_str(a, sizeof a, t.ndim, t.shape), (long long)b->B, (long long)b->L, b->path);
    }
    if (st == QV_OK && !qv_dtype_is_float(t.dtype))
        st = qv_fail(QV_ERR_FORMAT, "%s: tensor %s has dtype %s, expected F32", path, key, qv_dtype_name(t.dtype));
    if (st == QV_OK) {
        size_t n = (size_t)qv_tensor_numel(&t);
        float *e = qv_malloc(n * sizeof(float), "inputs_embeds");
        if (!e)
            st = QV_ERR_NOMEM;
        else if ((st = qv_convert(e, QV_F32, t.data, t.dtype, n)) != QV_OK)
            qv_free(e);
        else {
            qv_free(b->inputs_embeds);
            b->inputs_embeds = e;
            b->C = t.shape[2];
        }
    }
    qv_st_close(f);
    return st;
}

qv_status qv_llm_batch_from_ids(qv_llm_batch *b, const int64_t *ids, int64_t B, int64_t L, const char *what)
{
    memset(b, 0, sizeof *b);
    const size_t BL = (size_t)(B * L);
    b->B = B, b->L = L;
    b->path = qv_strdup(what);
    b->input_ids = qv_malloc(BL * sizeof(int64_t) + 8, "input_ids");
    b->labels = qv_malloc(BL * sizeof(int64_t) + 8, "labels");
    b->attention_mask = qv_malloc(BL + 1, "attention_mask");
    if (!b->path || !b->input_ids || !b->labels || !b->attention_mask) {
        qv_llm_batch_free(b);
        return QV_ERR_NOMEM;
    }
    memcpy(b->input_ids, ids, BL * sizeof(int64_t));
    memcpy(b->labels, ids, BL * sizeof(int64_t));
    memset(b->attention_mask, 1, BL);
    return QV_OK;
}

qv_status qv_llm_batch_check(const qv_llm_batch *b, const qv_llm *m)
{
    if (b->L > m->c->max_positions)
        return qv_fail(QV_ERR_INVALID, "%s: sequence length %lld exceeds max_position_embeddings %lld of %s", b->path,
                       (long long)b->L, (long long)m->c->max_positions, m->cfg.path);
    if (b->inputs_embeds && b->C != m->C)
        return qv_fail(QV_ERR_INVALID, "%s: inputs_embeds have width %lld, the model's hidden size is %lld", b->path,
                       (long long)b->C, (long long)m->C);
    if (!b->inputs_embeds && !b->input_ids)
        return qv_fail(QV_ERR_INVALID, "%s: no input_ids and no inputs_embeds", b->path);
    const int64_t BL = b->B * b->L;
    for (int64_t i = 0; i < BL; i++) {
        if (b->input_ids && !b->inputs_embeds && (b->input_ids[i] < 0 || b->input_ids[i] >= m->V))
            return qv_fail(QV_ERR_INVALID, "%s: input_ids[%lld][%lld] = %lld is outside the vocabulary [0, %lld)",
                           b->path, (long long)(i / b->L), (long long)(i % b->L), (long long)b->input_ids[i],
                           (long long)m->V);
        if (b->labels[i] != -100 && (b->labels[i] < 0 || b->labels[i] >= m->V))
            return qv_fail(QV_ERR_INVALID, "%s: labels[%lld][%lld] = %lld is neither -100 nor a token id in [0, %lld)",
                           b->path, (long long)(i / b->L), (long long)(i % b->L), (long long)b->labels[i],
                           (long long)m->V);
    }
    const int64_t *pp[2] = {b->position_ids, b->mrope_position_ids};
    const int64_t np[2] = {BL, 3 * BL};
    for (int k = 0; k < 2; k++)
        for (int64_t i = 0; pp[k] && i < np[k]; i++)
            if (pp[k][i] < 0 || pp[k][i] >= m->c->max_positions)
                return qv_fail(QV_ERR_INVALID, "%s: position id %lld is outside [0, max_position_embeddings %lld)",
                               b->path, (long long)pp[k][i], (long long)m->c->max_positions);
    return QV_OK;
}

void qv_llm_batch_free(qv_llm_batch *b)
{
    if (!b)
        return;
    qv_free(b->path);
    qv_free(b->input_ids);
    qv_free(b->labels);
    qv_free(b->attention_mask);
    qv_free(b->vision_mask);
    qv_free(b->caption_mask);
    qv_free(b->position_ids);
    qv_free(b->mrope_position_ids);
    qv_free(b->inputs_embeds);
    memset(b, 0, sizeof *b);
}

qv_status qv_llm_batch_loss_rows(const qv_llm_batch *b, int64_t **idx, int64_t *n)
{
    int64_t cnt = 0;
    for (int64_t r = 0; r < b->B; r++)
        for (int64_t t = 0; t + 1 < b->L; t++)
            cnt += b->labels[r * b->L + t + 1] != -100;
    *n = cnt;
    *idx = qv_malloc((size_t)(cnt * 2) * sizeof(int64_t) + 16, "loss rows");
    if (!*idx)
        return QV_ERR_NOMEM;
    int64_t k = 0;
    for (int64_t r = 0; r < b->B; r++)
        for (int64_t t = 0; t + 1 < b->L; t++)
            if (b->labels[r * b->L + t + 1] != -100) {
                (*idx)[2 * k] = r;
                (*idx)[2 * k + 1] = t;
                k++;
            }
    return QV_OK;
}

/* Copies rows [b0, b0+nb) of every [B, L] array (and of each M-RoPE stream). */
static qv_status slice_rows(void **dst, const void *src, size_t elem, int64_t streams, int64_t B, int64_t L, int64_t b0,
                            int64_t nb)
{
    *dst = NULL;
    if (!src)
        return QV_OK;
    char *d = qv_malloc((size_t)(streams * nb * L) * elem + 8, "batch slice");
    if (!d)
        return QV_ERR_NOMEM;
    for (int64_t s = 0; s < streams; s++)
        memcpy(d + (size_t)(s * nb * L) * elem, (const char *)src + (size_t)((s * B + b0) * L) * elem,
               (size_t)(nb * L) * elem);
    *dst = d;
    return QV_OK;
}

qv_status qv_llm_batch_slice(const qv_llm_batch *src, int64_t b0, int64_t nb, qv_llm_batch *dst)
{
    memset(dst, 0, sizeof *dst);
    if (b0 < 0 || nb < 1 || b0 + nb > src->B)
        return qv_fail(QV_ERR_INTERNAL, "%s: samples [%lld, %lld) outside the batch", src->path, (long long)b0,
                       (long long)(b0 + nb));
    dst->path = qv_strdup(src->path ? src->path : "batch");
    dst->B = nb;
    dst->L = src->L;
    dst->C = src->C;
    const int64_t B = src->B, L = src->L;
    qv_status st = dst->path ? QV_OK : QV_ERR_NOMEM;
    if (st == QV_OK)
        st = slice_rows((void **)&dst->input_ids, src->input_ids, 8, 1, B, L, b0, nb);
    if (st == QV_OK)
        st = slice_rows((void **)&dst->labels, src->labels, 8, 1, B, L, b0, nb);
    if (st == QV_OK)
        st = slice_rows((void **)&dst->attention_mask, src->attention_mask, 1, 1, B, L, b0, nb);
    if (st == QV_OK)
        st = slice_rows((void **)&dst->vision_mask, src->vision_mask, 1, 1, B, L, b0, nb);
    if (st == QV_OK)
        st = slice_rows((void **)&dst->caption_mask, src->caption_mask, 1, 1, B, L, b0, nb);
    if (st == QV_OK)
        st = slice_rows((void **)&dst->position_ids, src->position_ids, 8, 1, B, L, b0, nb);
    if (st == QV_OK)
        st = slice_rows((void **)&dst->mrope_position_ids, src->mrope_position_ids, 8, 3, B, L, b0, nb);
    if (st == QV_OK && src->inputs_embeds)
        st = slice_rows((void **)&dst->inputs_embeds, src->inputs_embeds, (size_t)src->C * sizeof(float), 1, B, L, b0, nb);
    if (st != QV_OK)
        qv_llm_batch_free(dst);
    return st;
}
