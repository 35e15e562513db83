/* mm_embed.c — the LLM input embeddings of a multimodal batch, one sample at a time, with the
 * tower run in chunks of units and its feature rows streamed in order (vision.h; ALGORITHMS.md
 * §8.1 generate_input, §8.2 prepare_inputs_labels_for_multimodal, §8.4 masked_scatter). */
#include <string.h>

#include "../llm/llm.h"
#include "vision_internal.h"

#define LLAVA_IMAGE_TOKEN (-200)

void qv_mm_embedder_free(qv_mm_embedder *e)
{
    if (!e)
        return;
    qv_free(e->row0);
    qv_free(e->before);
    qv_free(e->feat);
    memset(e, 0, sizeof *e);
}

/* Post-splice length of LLaVA sample b before truncation: its real tokens, minus the
 * placeholders, plus the rows of the images it consumes. */
static int64_t llava_length(const qv_mm_embedder *e, int64_t b)
{
    const qv_mm_text *t = &e->txt;
    int64_t len = 0;
    for (int64_t i = 0; i < t->L_pre; i++) {
        if (!t->mask_pre[b * t->L_pre + i])
            continue;
        if (t->ids_pre[b * t->L_pre + i] == LLAVA_IMAGE_TOKEN)
            len += e->row0[e->before[b] + 1] - e->row0[e->before[b]]; /* every crop has the same rows */
        else
            len++;
    }
    return len;
}

qv_status qv_mm_embedder_init(qv_mm_embedder *e, qv_vision *v, const qv_llm *m, const qv_vision_input *in,
                              const qv_mm_text *txt, const qv_llm_dump *dump)
{
    memset(e, 0, sizeof *e);
    e->v = v, e->m = m, e->in = in, e->dump = dump, e->txt = *txt;
    const int64_t n = in->n, B = txt->B;
    const char *what = txt->what ? txt->what : "batch";
    if (m->C != v->C)
        return qv_fail(QV_ERR_INVALID, "%s: the projector gives %lld-wide rows, the LLM takes %lld", what,
                       (long long)v->C, (long long)m->C);
    QV_TRY(qv_vision_input_check(v, in, what));
    e->row0 = qv_malloc((size_t)(n + 1) * sizeof *e->row0, "feature rows");
    e->before = qv_calloc((size_t)(B + 1), sizeof *e->before, "image positions");
    if (!e->row0 || !e->before) {
        qv_mm_embedder_free(e);
        return QV_ERR_NOMEM;
    }
    e->row0[0] = 0;
    for (int64_t u = 0; u < n; u++)
        e->row0[u + 1] = e->row0[u] + qv_vision_unit_rows(v, in, u);
    qv_status st = QV_OK;
    if (v->kind != QV_VISION_SIGLIP) {
        for (int64_t b = 0; b < B; b++) {
            int64_t c = 0;
            for (int64_t i = 0; i < txt->L; i++)
                c += txt->ids[b * txt->L + i] == v->image_token;
            e->before[b + 1] = e->before[b] + c;
        }
        if (e->before[B] > e->row0[n])
            st = qv_fail(QV_ERR_INVALID, "%s: %lld image tokens (id %lld) but the %lld %s give %lld feature rows", what,
                         (long long)e->before[B], (long long)v->image_token, (long long)n,
                         v->kind == QV_VISION_INTERNVIT ? "tiles" : "images", (long long)e->row0[n]);
    } else {
        /* each placeholder takes the next image; a sample without one still takes an image
         * (the reference pairs text-only items with a zero image and skips its features) */
        int64_t maxlen = 0;
        for (int64_t b = 0; b < B && st == QV_OK; b++) {
            int64_t c = 0;
            for (int64_t i = 0; i < txt->L_pre; i++)
                c += txt->mask_pre[b * txt->L_pre + i] && txt->ids_pre[b * txt->L_pre + i] == LLAVA_IMAGE_TOKEN;
            e->before[b + 1] = e->before[b] + (c ? c : 1);
            if (e->before[b + 1] > n) {
                st = qv_fail(QV_ERR_INVALID, "%s: sample %lld needs image %lld but the batch has %lld", what,
                             (long long)b, (long long)(e->before[b + 1] - 1), (long long)n);
                break;
            }
            int64_t len = llava_length(e, b);
            if (v->llava_max_len > 0)
                len = QV_MIN(len, v->llava_max_len);
            maxlen = QV_MAX(maxlen, len);
        }
        if (st == QV_OK && maxlen != txt->L)
            st = qv_fail(QV_ERR_INVALID, "%s: the image splice gives sequences of %lld positions, the batch's "
                         "attention_mask has %lld", what, (long long)maxlen, (long long)txt->L);
    }
    e->cu0 = e->cu1 = 0;
    if (st != QV_OK)
        qv_mm_embedder_free(e);
    return st;
}

/* Computes the chunk of units starting at u0 into the cache. */
static qv_status compute_chunk(qv_mm_embedder *e, int64_t u0)
{
    const qv_vision *v = e->v;
    int64_t u1 = u0 + 1;
    if (v->kind == QV_VISION_QWEN2VL) {
        int64_t tok = qv_vision_unit_patches(v, e->in, u0);
        while (u1 < e->in->n && tok + qv_vision_unit_patches(v, e->in, u1) <= v->max_tokens)
            tok += qv_vision_unit_patches(v, e->in, u1++);
    } else {
        while (u1 < e->in->n && u1 - u0 < v->max_units)
            u1++;
    }
    const size_t need = (size_t)((e->row0[u1] - e->row0[u0]) * v->C) + 1;
    if (need > e->feat_cap) {
        qv_free(e->feat);
        e->feat_cap = 0;
        e->feat = qv_aligned_alloc(64, need * sizeof(float), "image features");
        if (!e->feat)
            return QV_ERR_NOMEM;
        e->feat_cap = need;
    }
    e->cu0 = u0, e->cu1 = u0; /* invalid until computed */
    QV_TRY(qv_vision_encode(e->v, e->in, u0, u1 - u0, e->feat, e->dump));
    e->cu1 = u1;
    return QV_OK;
}

/* Feature rows [r0, r0 + n) into dst [n, C]. */
static qv_status get_rows(qv_mm_embedder *e, int64_t r0, int64_t n, float *dst)
{
    const int64_t C = e->v->C;
    while (n > 0) {
        if (!(e->cu0 < e->cu1 && e->row0[e->cu0] <= r0 && r0 < e->row0[e->cu1])) {
            /* the unit holding row r0, moved back over unprocessed zero-row units (flag-0
             * tiles) so that they are visited in order too */
            int64_t lo = 0, hi = e->in->n; /* largest u with row0[u] <= r0 */
            while (hi - lo > 1) {
                int64_t mid = (lo + hi) / 2;
                if (e->row0[mid] <= r0)
                    lo = mid;
                else
                    hi = mid;
            }
            while (lo > e->cu1 && e->row0[lo - 1] == e->row0[lo])
                lo--;
            QV_TRY(compute_chunk(e, lo));
        }
        const int64_t k = QV_MIN(n, e->row0[e->cu1] - r0);
        memcpy(dst, e->feat + (r0 - e->row0[e->cu0]) * C, (size_t)(k * C) * sizeof *dst);
        dst += k * C, r0 += k, n -= k;
    }
    return QV_OK;
}

static qv_status embed_ids(const qv_mm_embedder *e, const int64_t *ids, int64_t n, float *out)
{
    qv_status st = qv_llm_embed(e->m, ids, n, out);
    return st == QV_OK ? st : qv_fail_prefix(st, "%s", e->txt.what ? e->txt.what : "batch");
}

/* InternVL / Qwen2-VL: token embeddings, then the sample's feature rows at the image token
 * positions in order. */
static qv_status embed_substitute(qv_mm_embedder *e, int64_t b, float *out)
{
    const int64_t L = e->txt.L, C = e->v->C, *ids = e->txt.ids + b * L;
    const int64_t k0 = e->before[b], cnt = e->before[b + 1] - k0;
    QV_TRY(embed_ids(e, ids, L, out));
    if (!cnt)
        return QV_OK;
    float *f = qv_malloc((size_t)(cnt * C) * sizeof *f, "image features");
    if (!f)
        return QV_ERR_NOMEM;
    qv_status st = get_rows(e, k0, cnt, f);
    const bool times_zero = e->v->kind == QV_VISION_INTERNVIT; /* input_embeds[selected] * 0.0 + vit_embeds */
    for (int64_t t = 0, k = 0; t < L && st == QV_OK; t++) {
        if (ids[t] != e->v->image_token)
            continue;
        float *o = out + t * C;
        const float *src = f + (k++) * C;
        if (times_zero)
            for (int64_t c = 0; c < C; c++)
                o[c] = o[c] * 0.0f + src[c];
        else
            memcpy(o, src, (size_t)C * sizeof *o);
    }
    qv_free(f);
    return st;
}

/* LLaVA: drop padding, splice each image's rows at its −200, truncate, pad with zeros. */
static qv_status embed_splice(qv_mm_embedder *e, int64_t b, float *out)
{
    const qv_mm_text *t = &e->txt;
    const int64_t L = t->L, C = e->v->C, Lp = t->L_pre;
    const int64_t *ids = t->ids_pre + b * Lp;
    const uint8_t *mask = t->mask_pre + b * Lp;
    int64_t len = llava_length(e, b);
    if (e->v->llava_max_len > 0)
        len = QV_MIN(len, e->v->llava_max_len);
    memset(out, 0, (size_t)(L * C) * sizeof *out);
    float *o = out + (e->v->llava_left_pad ? (L - len) * C : 0);
    int64_t pos = 0, img = e->before[b];
    for (int64_t i = 0; i < Lp && pos < len; i++) {
        if (!mask[i])
            continue;
        if (ids[i] != LLAVA_IMAGE_TOKEN) {
            int64_t j = i; /* a run of text tokens */
            while (j < Lp && pos + (j - i) < len && mask[j] && ids[j] != LLAVA_IMAGE_TOKEN)
                j++;
            QV_TRY(embed_ids(e, ids + i, j - i, o + pos * C));
            pos += j - i;
            i = j - 1;
            continue;
        }
        const int64_t r0 = e->row0[img], rows = QV_MIN(e->row0[img + 1] - r0, len - pos);
        QV_TRY(get_rows(e, r0, rows, o + pos * C));
        pos += rows;
        img++;
    }
    return QV_OK;
}

qv_status qv_mm_embed_sample(qv_mm_embedder *e, int64_t b, float *out)
{
    if (b < 0 || b >= e->txt.B)
        return qv_fail(QV_ERR_INTERNAL, "multimodal embedding: sample %lld of %lld", (long long)b,
                       (long long)e->txt.B);
    return e->v->kind == QV_VISION_SIGLIP ? embed_splice(e, b, out) : embed_substitute(e, b, out);
}

qv_status qv_mm_embed_all(qv_mm_embedder *e, float *out)
{
    const int64_t LC = e->txt.L * e->v->C;
    int64_t done = 0; /* units computed so far, to finish the dumps of units no sample used */
    for (int64_t b = 0; b < e->txt.B; b++) {
        QV_TRY(qv_mm_embed_sample(e, b, out + b * LC));
        done = QV_MAX(done, e->cu1);
    }
    if (e->dump && done < e->in->n)
        for (int64_t u = done; u < e->in->n; u = e->cu1)
            QV_TRY(compute_chunk(e, u));
    return QV_OK;
}

qv_status qv_mm_batch_embed(qv_vision *v, const qv_llm *m, qv_mm_batch *mb, qv_llm_batch *b, const qv_llm_dump *dump)
{
    qv_vision_input in;
    qv_mm_batch_input(mb, v, &in);
    qv_mm_text txt = {b->B, b->L, b->input_ids, NULL, NULL, 0, b->path};
    if (v->kind == QV_VISION_SIGLIP) {
        if (mb->B_pre != b->B)
            return qv_fail(QV_ERR_INVALID, "%s: input_ids_pre_splice has %lld rows, the batch %lld", b->path,
                           (long long)mb->B_pre, (long long)b->B);
        txt.ids_pre = mb->ids_pre, txt.mask_pre = mb->mask_pre, txt.L_pre = mb->L_pre;
    } else if (!b->input_ids) {
        return qv_fail(QV_ERR_INVALID, "%s: no input_ids to place the image features at", b->path);
    }
    size_t n;
    if (!qv_mul_size((size_t)(b->B * b->L), (size_t)m->C, &n))
        return qv_fail(QV_ERR_NOMEM, "%s: batch too large", b->path);
    float *emb = qv_aligned_alloc(64, n * sizeof(float) + 64, "inputs_embeds");
    if (!emb)
        return QV_ERR_NOMEM;
    qv_mm_embedder e;
    qv_status st = qv_mm_embedder_init(&e, v, m, &in, &txt, dump);
    if (st == QV_OK) {
        st = qv_mm_embed_all(&e, emb);
        qv_mm_embedder_free(&e);
    }
    if (st != QV_OK) {
        qv_free(emb);
        return st;
    }
    qv_free(b->inputs_embeds);
    b->inputs_embeds = emb;
    b->C = m->C;
    return QV_OK;
}

qv_status qv_mm_batch_embed_range(qv_vision *v, const qv_llm *m, qv_mm_batch *mb, const qv_llm_batch *full,
                                  int64_t b0, int64_t nb, float *out)
{
    qv_vision_input in;
    qv_mm_batch_input(mb, v, &in);
    qv_mm_text txt = {full->B, full->L, full->input_ids, NULL, NULL, 0, full->path};
    if (v->kind == QV_VISION_SIGLIP) {
        if (mb->B_pre != full->B)
            return qv_fail(QV_ERR_INVALID, "%s: input_ids_pre_splice has %lld rows, the batch %lld", full->path,
                           (long long)mb->B_pre, (long long)full->B);
        txt.ids_pre = mb->ids_pre, txt.mask_pre = mb->mask_pre, txt.L_pre = mb->L_pre;
    } else if (!full->input_ids) {
        return qv_fail(QV_ERR_INVALID, "%s: no input_ids to place the image features at", full->path);
    }
    if (b0 < 0 || nb < 0 || b0 + nb > full->B)
        return qv_fail(QV_ERR_INTERNAL, "%s: samples [%lld, %lld) outside the batch", full->path, (long long)b0,
                       (long long)(b0 + nb));
    qv_mm_embedder e;
    QV_TRY(qv_mm_embedder_init(&e, v, m, &in, &txt, NULL));
    qv_status st = QV_OK;
    for (int64_t b = b0; b < b0 + nb && st == QV_OK; b++)
        st = qv_mm_embed_sample(&e, b, out + (b - b0) * full->L * m->C);
    qv_mm_embedder_free(&e);
    return st;
}
