/* qwen2vl_vit.c — Qwen2-VL / Qwen2.5-VL ViT: patch embedding, 2-D rotary, frame and window
 * attention, blocks (qwen2vl_vit.h). */
#include "qwen2vl_vit.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../nn/linear.h"
#include "../nn/rope.h"
#include "vision.h"

static const qv_vit_names names_v2 = {
    .lin_w = {[QV_VIT_QKV] = "attn.qkv.weight", [QV_VIT_O] = "attn.proj.weight", [QV_VIT_FC1] = "mlp.fc1.weight",
              [QV_VIT_FC2] = "mlp.fc2.weight"},
    .lin_b = {[QV_VIT_QKV] = "attn.qkv.bias", [QV_VIT_O] = "attn.proj.bias", [QV_VIT_FC1] = "mlp.fc1.bias",
              [QV_VIT_FC2] = "mlp.fc2.bias"},
    .vec = {[QV_VIT_NORM1_W] = "norm1.weight", [QV_VIT_NORM1_B] = "norm1.bias", [QV_VIT_NORM2_W] = "norm2.weight",
            [QV_VIT_NORM2_B] = "norm2.bias"}};

static const qv_vit_names names_v25 = {
    .lin_w = {[QV_VIT_QKV] = "attn.qkv.weight", [QV_VIT_O] = "attn.proj.weight", [QV_VIT_FC1] = "mlp.gate_proj.weight",
              [QV_VIT_UP] = "mlp.up_proj.weight", [QV_VIT_FC2] = "mlp.down_proj.weight"},
    .lin_b = {[QV_VIT_QKV] = "attn.qkv.bias", [QV_VIT_O] = "attn.proj.bias", [QV_VIT_FC1] = "mlp.gate_proj.bias",
              [QV_VIT_UP] = "mlp.up_proj.bias", [QV_VIT_FC2] = "mlp.down_proj.bias"},
    .vec = {[QV_VIT_NORM1_W] = "norm1.weight", [QV_VIT_NORM2_W] = "norm2.weight"}};

qv_status qv_qwen2vl_vit_open(const qv_checkpoint *ck, const qv_vision_config *vc, qv_dtype dt,
                              qv_qwen2vl_vit **out)
{
    *out = NULL;
    qv_qwen2vl_vit *v = qv_calloc(1, sizeof *v, "Qwen2-VL ViT");
    if (!v)
        return QV_ERR_NOMEM;
    v->ck = ck;
    qv_status st = QV_OK;
    const char *roots[] = {"visual.", "model.visual."};
    for (size_t r = 0; r < QV_ARRAY_LEN(roots) && !v->root[0]; r++) {
        char name[96];
        snprintf(name, sizeof name, "%spatch_embed.proj.weight", roots[r]);
        if (qv_checkpoint_find(ck, name, NULL))
            snprintf(v->root, sizeof v->root, "%s", roots[r]);
    }
    if (!v->root[0]) {
        st = qv_fail(QV_ERR_FORMAT, "%s: tensor visual.patch_embed.proj.weight not found", ck->path);
        goto fail;
    }
    const bool v25 = vc->gated_mlp;
    qv_vit_dims *dm = &v->dm;
    dm->D = vc->hidden, dm->H = vc->n_heads, dm->d = vc->hidden / vc->n_heads, dm->I = vc->intermediate;
    dm->norm = vc->norm;
    dm->eps = (float)vc->norm_eps;
    dm->gated = v25;
    dm->dt = dt;
    if (!qv_act_parse(vc->hidden_act, &dm->act)) {
        st = qv_fail(QV_ERR_UNSUPPORTED, "%s: vision hidden_act \"%s\" is not supported", ck->path, vc->hidden_act);
        goto fail;
    }
    if (vc->hidden % vc->n_heads || dm->d % 4 || dm->d / 4 > (int64_t)QV_ARRAY_LEN(v->inv_freq) ||
        vc->spatial_merge_size <= 0 || vc->temporal_patch_size <= 0 || vc->channels != 3) {
        st = qv_fail(QV_ERR_UNSUPPORTED, "%s: vision tower dimensions (hidden %lld, %lld heads, merge %lld) are not "
                     "supported", ck->path, (long long)vc->hidden, (long long)vc->n_heads,
                     (long long)vc->spatial_merge_size);
        goto fail;
    }
    v->n_layers = vc->n_layers, v->patch = vc->patch_size, v->tp = vc->temporal_patch_size;
    v->merge = vc->spatial_merge_size;
    v->patch_dim = 3 * v->tp * v->patch * v->patch;
    v->names = v25 ? names_v25 : names_v2;
    v->windowed = v25 && vc->window_size > 0;
    if (v->windowed) {
        v->window = vc->window_size / v->merge / v->patch;
        if (v->window <= 0) {
            st = qv_fail(QV_ERR_INVALID, "%s: vision window_size %lld is smaller than a merge block", ck->path,
                         (long long)vc->window_size);
            goto fail;
        }
        v->fullatt = qv_calloc((size_t)v->n_layers, 1, "full-attention blocks");
        if (!v->fullatt) {
            st = QV_ERR_NOMEM;
            goto fail;
        }
        for (int i = 0; i < vc->n_fullatt; i++)
            if (vc->fullatt[i] < v->n_layers)
                v->fullatt[vc->fullatt[i]] = 1;
    }
    /* patch embedding [D, 3, tp, p, p] = [D, patch_dim] */
    {
        char name[96];
        snprintf(name, sizeof name, "%spatch_embed.proj.weight", v->root);
        const int64_t sh[5] = {dm->D, 3, v->tp, v->patch, v->patch};
        qv_tensor t;
        QV_CHECK(st = qv_checkpoint_get_shaped(ck, name, 5, sh, &t), fail);
        const size_t n = (size_t)(dm->D * v->patch_dim);
        v->patch_w = qv_malloc(n * qv_dtype_size(dt), "patch embedding");
        if (!v->patch_w) {
            st = QV_ERR_NOMEM;
            goto fail;
        }
        QV_CHECK(st = dt == QV_F32 ? qv_vit_widen(v->patch_w, &t, n) : qv_convert(v->patch_w, dt, t.data, t.dtype, n),
                 fail);
    }
    /* VisionRotaryEmbedding(dim = d/2, theta 10000): inv_j = 1 / 10000^(2j / (d/2)), f32 */
    qv_rope_params rp = {.dim = dm->d / 2, .theta = 10000.0};
    qv_rope_inv_freq(&rp, 0, v->inv_freq);
    for (int64_t i = 0; i < v->n_layers; i++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "%sblocks.%lld.", v->root, (long long)i);
        QV_CHECK(st = qv_vit_layer_check(ck, dm, &v->names, prefix), fail);
    }
    *out = v;
    return QV_OK;
fail:
    qv_qwen2vl_vit_close(v);
    return st;
}

void qv_qwen2vl_vit_close(qv_qwen2vl_vit *v)
{
    if (!v)
        return;
    qv_free(v->patch_w);
    qv_free(v->fullatt);
    qv_free(v);
}

qv_status qv_qwen2vl_rot_pos_ids(const int64_t *grid_thw, int64_t n_images, int64_t merge, int64_t *pos)
{
    int64_t r = 0;
    for (int64_t i = 0; i < n_images; i++) {
        const int64_t t = grid_thw[3 * i], gh = grid_thw[3 * i + 1], gw = grid_thw[3 * i + 2];
        if (t <= 0 || gh <= 0 || gw <= 0 || gh % merge || gw % merge)
            return qv_fail(QV_ERR_INVALID, "image_grid_thw[%lld] = (%lld, %lld, %lld) is not a grid of %lldx%lld "
                           "merge blocks", (long long)i, (long long)t, (long long)gh, (long long)gw, (long long)merge,
                           (long long)merge);
        const int64_t bw = gw / merge, mm = merge * merge;
        for (int64_t f = 0; f < t; f++)
            for (int64_t k = 0; k < gh * gw; k++, r++) {
                const int64_t b = k / mm, q = k % mm;
                pos[2 * r] = (b / bw) * merge + q / merge;
                pos[2 * r + 1] = (b % bw) * merge + q % merge;
            }
    }
    return QV_OK;
}

qv_status qv_qwen25vl_window_index(const int64_t *grid_thw, int64_t n, int64_t merge, int64_t window, int64_t *perm,
                                   int32_t *win)
{
    int64_t k = 0, base = 0;
    int32_t wid = 0;
    for (int64_t i = 0; i < n; i++) {
        const int64_t t = grid_thw[3 * i], bh = grid_thw[3 * i + 1] / merge, bw = grid_thw[3 * i + 2] / merge;
        const int64_t nwh = bh / window + 1, nww = bw / window + 1; /* the reference pads by window − bh % window */
        for (int64_t f = 0; f < t; f++)
            for (int64_t wy = 0; wy < nwh; wy++)
                for (int64_t wx = 0; wx < nww; wx++, wid++)
                    for (int64_t y = wy * window; y < QV_MIN((wy + 1) * window, bh); y++)
                        for (int64_t x = wx * window; x < QV_MIN((wx + 1) * window, bw); x++) {
                            perm[k] = base + (f * bh + y) * bw + x;
                            win[k++] = wid;
                        }
        base += t * bh * bw;
    }
    return QV_OK;
}

static bool wants(const qv_llm_dump *d, const char *name) { return d && d->want && d->want(d->ctx, name); }

/* Rows [0, n) of x in natural order: x itself, or un-permuted into tmp when windowed. */
static const float *natural(const qv_qwen2vl_vit *v, const float *x, const int64_t *perm, int64_t P, float *tmp)
{
    if (!perm)
        return x;
    const int64_t mm = v->merge * v->merge, D = v->dm.D;
    for (int64_t k = 0; k < P / mm; k++)
        memcpy(tmp + perm[k] * mm * D, x + k * mm * D, (size_t)(mm * D) * sizeof *tmp);
    return tmp;
}

static qv_status dump_block(const qv_qwen2vl_vit *v, const qv_llm_dump *dump, int64_t i, const float *x,
                            const int64_t *perm, int64_t P, int64_t P0, float *tmp, int64_t row0, bool first)
{
    char n_all[64], n_s0[64];
    snprintf(n_all, sizeof n_all, "vision.blocks.%lld.out", (long long)i);
    snprintf(n_s0, sizeof n_s0, "vision.blocks.%lld.out.sample0", (long long)i);
    bool w_all = wants(dump, n_all), w_s0 = first && wants(dump, n_s0);
    if (!w_all && !w_s0)
        return QV_OK;
    const float *nx = natural(v, x, perm, P, tmp);
    if (w_all)
        QV_TRY(dump->put(dump->ctx, n_all, row0, P, nx));
    if (w_s0)
        QV_TRY(dump->put(dump->ctx, n_s0, 0, P0, nx));
    return QV_OK;
}

qv_status qv_qwen2vl_vit_forward(const qv_qwen2vl_vit *v, const float *pixels, const int64_t *grid_thw, int64_t n,
                                 float *x, const qv_llm_dump *dump, int64_t row0, bool first_is_image0)
{
    const int64_t D = v->dm.D, half = v->dm.d / 2, q = v->dm.d / 4, mm = v->merge * v->merge;
    int64_t P = 0;
    for (int64_t i = 0; i < n; i++)
        P += grid_thw[3 * i] * grid_thw[3 * i + 1] * grid_thw[3 * i + 2];
    const int64_t P0 = n ? grid_thw[0] * grid_thw[1] * grid_thw[2] : 0;
    if (P <= 0)
        return QV_OK;
    int64_t *pos = qv_malloc((size_t)(2 * P) * sizeof *pos, "rotary positions");
    float *cs = qv_malloc((size_t)(2 * P * half) * sizeof *cs, "rotary tables");
    int32_t *seg_frame = qv_malloc((size_t)P * sizeof *seg_frame, "attention segments");
    int32_t *seg_win = NULL, *win = NULL;
    int64_t *perm = NULL;
    float *tmp = NULL;
    qv_status st = pos && cs && seg_frame ? QV_OK : QV_ERR_NOMEM;
    if (st != QV_OK)
        goto done;
    QV_CHECK(st = qv_qwen2vl_rot_pos_ids(grid_thw, n, v->merge, pos), done);
    /* 1. patch embedding (no bias) */
    QV_CHECK(st = qv_linear_rows(v->dm.dt, P, D, v->patch_dim, pixels, v->patch_w, NULL, x, 0), done);
    if (first_is_image0 && wants(dump, "vision.patch_embed.out.sample0"))
        QV_CHECK(st = dump->put(dump->ctx, "vision.patch_embed.out.sample0", 0, P0, x), done);
    /* 2. rotary tables [P, d/2] = [y·inv (d/4), x·inv (d/4)]; frame segments */
    float *cos_t = cs, *sin_t = cs + P * half;
    {
        int64_t r = 0;
        int32_t frame = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t f = 0; f < grid_thw[3 * i]; f++, frame++)
                for (int64_t k = 0; k < grid_thw[3 * i + 1] * grid_thw[3 * i + 2]; k++)
                    seg_frame[r++] = frame;
    }
#pragma omp parallel for schedule(static) if (P * half >= 16384)
    for (int64_t r = 0; r < P; r++)
        for (int64_t j = 0; j < q; j++) {
            const float ay = (float)pos[2 * r] * v->inv_freq[j], ax = (float)pos[2 * r + 1] * v->inv_freq[j];
            cos_t[r * half + j] = (float)cos((double)ay);
            sin_t[r * half + j] = (float)sin((double)ay);
            cos_t[r * half + q + j] = (float)cos((double)ax);
            sin_t[r * half + q + j] = (float)sin((double)ax);
        }
    /* 3. Qwen2.5-VL: permute rows, tables and frame ids into window order */
    if (v->windowed) {
        const int64_t nb = P / mm;
        perm = qv_malloc((size_t)nb * sizeof *perm, "window order");
        win = qv_malloc((size_t)nb * sizeof *win, "windows");
        seg_win = qv_malloc((size_t)P * sizeof *seg_win, "window segments");
        tmp = qv_aligned_alloc(64, (size_t)(P * QV_MAX(D, 2 * half)) * sizeof *tmp + 64, "window permutation");
        int32_t *fr = qv_malloc((size_t)P * sizeof *fr, "attention segments");
        if (!perm || !win || !seg_win || !tmp || !fr) {
            qv_free(fr);
            st = QV_ERR_NOMEM;
            goto done;
        }
        QV_CHECK(st = qv_qwen25vl_window_index(grid_thw, n, v->merge, v->window, perm, win), done);
        const int64_t rw[3] = {D, half, half};
        float *arr[3] = {x, cos_t, sin_t};
        for (int a = 0; a < 3; a++) {
            for (int64_t k = 0; k < nb; k++)
                memcpy(tmp + k * mm * rw[a], arr[a] + perm[k] * mm * rw[a], (size_t)(mm * rw[a]) * sizeof *tmp);
            memcpy(arr[a], tmp, (size_t)(P * rw[a]) * sizeof *tmp);
        }
        for (int64_t k = 0; k < nb; k++)
            for (int64_t j = 0; j < mm; j++) {
                fr[k * mm + j] = seg_frame[perm[k] * mm + j];
                seg_win[k * mm + j] = win[k];
            }
        memcpy(seg_frame, fr, (size_t)P * sizeof *fr);
        qv_free(fr);
    }
    /* 4. blocks */
    for (int64_t i = 0; i < v->n_layers; i++) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "%sblocks.%lld.", v->root, (long long)i);
        const qv_vit_seq s = {1, P, v->windowed && !v->fullatt[i] ? seg_win : seg_frame, cos_t, sin_t};
        qv_vit_layer layer;
        st = qv_vit_layer_load(v->ck, &v->dm, &v->names, prefix, &layer);
        if (st == QV_OK)
            st = qv_vit_layer_forward(&v->dm, &layer, &s, x);
        qv_vit_layer_release(v->ck, &layer);
        QV_CHECK(st, done);
        QV_CHECK(st = dump_block(v, dump, i, x, perm, P, P0, tmp, row0, first_is_image0), done);
    }
    if (perm) {
        natural(v, x, perm, P, tmp);
        memcpy(x, tmp, (size_t)(P * D) * sizeof *x);
    }
done:
    qv_free(pos);
    qv_free(cs);
    qv_free(seg_frame);
    qv_free(seg_win);
    qv_free(win);
    qv_free(perm);
    qv_free(tmp);
    return st;
}
