/* internvit.c — InternViT: patch embedding, CLS, (resampled) position embedding and the encoder
 * layers, for both checkpoint layouts (internvit.h). */
#include "internvit.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../nn/linear.h"

/* ---- names ------------------------------------------------------------------------------- */

typedef struct ivit_layout {
    const char *cls, *patch_w, *patch_b, *pos; /* relative to the root */
    const char *layer_fmt;
    qv_vit_names names;
} ivit_layout;

static const ivit_layout layouts[2] = {
    {/* remote code (InternVLChatModel) */
     "embeddings.class_embedding", "embeddings.patch_embedding.weight", "embeddings.patch_embedding.bias",
     "embeddings.position_embedding", "encoder.layers.%lld.",
     {.lin_w = {[QV_VIT_QKV] = "attn.qkv.weight", [QV_VIT_O] = "attn.proj.weight", [QV_VIT_FC1] = "mlp.fc1.weight",
                [QV_VIT_FC2] = "mlp.fc2.weight"},
      .lin_b = {[QV_VIT_QKV] = "attn.qkv.bias", [QV_VIT_O] = "attn.proj.bias", [QV_VIT_FC1] = "mlp.fc1.bias",
                [QV_VIT_FC2] = "mlp.fc2.bias"},
      .vec = {[QV_VIT_NORM1_W] = "norm1.weight", [QV_VIT_NORM1_B] = "norm1.bias", [QV_VIT_NORM2_W] = "norm2.weight",
              [QV_VIT_NORM2_B] = "norm2.bias", [QV_VIT_QNORM] = "attn.q_norm.weight",
              [QV_VIT_KNORM] = "attn.k_norm.weight", [QV_VIT_LS1] = "ls1", [QV_VIT_LS2] = "ls2"}}},
    {/* transformers -hf (InternVLForConditionalGeneration): q/k/v split, renamed norms and scales */
     "embeddings.cls_token", "embeddings.patch_embeddings.projection.weight",
     "embeddings.patch_embeddings.projection.bias", "embeddings.position_embeddings", "encoder.layer.%lld.",
     {.lin_w = {[QV_VIT_Q] = "attention.q_proj.weight", [QV_VIT_K] = "attention.k_proj.weight",
                [QV_VIT_V] = "attention.v_proj.weight", [QV_VIT_O] = "attention.projection_layer.weight",
                [QV_VIT_FC1] = "mlp.fc1.weight", [QV_VIT_FC2] = "mlp.fc2.weight"},
      .lin_b = {[QV_VIT_Q] = "attention.q_proj.bias", [QV_VIT_K] = "attention.k_proj.bias",
                [QV_VIT_V] = "attention.v_proj.bias", [QV_VIT_O] = "attention.projection_layer.bias",
                [QV_VIT_FC1] = "mlp.fc1.bias", [QV_VIT_FC2] = "mlp.fc2.bias"},
      .vec = {[QV_VIT_NORM1_W] = "layernorm_before.weight", [QV_VIT_NORM1_B] = "layernorm_before.bias",
              [QV_VIT_NORM2_W] = "layernorm_after.weight", [QV_VIT_NORM2_B] = "layernorm_after.bias",
              [QV_VIT_QNORM] = "attention.q_norm.weight", [QV_VIT_KNORM] = "attention.k_norm.weight",
              [QV_VIT_LS1] = "lambda_1", [QV_VIT_LS2] = "lambda_2"}}},
};

static const struct {
    const char *root;
    int layout;
} roots[] = {{"vision_model.", 0}, {"model.vision_tower.", 1}, {"vision_tower.", 1}};

static qv_status load_f32(const qv_internvit *v, const char *rel, int ndim, const int64_t *shape, float **out,
                          const char *what)
{
    char name[512];
    snprintf(name, sizeof name, "%s%s", v->root, rel);
    qv_tensor t;
    QV_TRY(qv_checkpoint_get_shaped(v->ck, name, ndim, shape, &t));
    size_t n = (size_t)qv_tensor_numel(&t);
    *out = qv_malloc(n * sizeof(float) + 4, what);
    if (!*out)
        return QV_ERR_NOMEM;
    return qv_vit_widen(*out, &t, n);
}

qv_status qv_internvit_open(const qv_checkpoint *ck, const qv_vision_config *vc, int64_t select_layer, qv_dtype dt,
                            qv_internvit **out)
{
    *out = NULL;
    qv_internvit *v = qv_calloc(1, sizeof *v, "InternViT");
    if (!v)
        return QV_ERR_NOMEM;
    v->ck = ck;
    qv_status st = QV_OK;
    int layout = -1;
    for (size_t r = 0; r < QV_ARRAY_LEN(roots) && layout < 0; r++) {
        char name[256];
        snprintf(name, sizeof name, "%s%s", roots[r].root, layouts[roots[r].layout].cls);
        if (qv_checkpoint_find(ck, name, NULL)) {
            layout = roots[r].layout;
            snprintf(v->root, sizeof v->root, "%s", roots[r].root);
        }
    }
    if (layout < 0) {
        st = qv_fail(QV_ERR_FORMAT, "%s: tensor vision_model.embeddings.class_embedding not found", ck->path);
        goto fail;
    }
    const ivit_layout *lo = &layouts[layout];
    qv_vit_dims *dm = &v->dm;
    dm->D = vc->hidden, dm->H = vc->n_heads, dm->d = vc->hidden / vc->n_heads, dm->I = vc->intermediate;
    dm->norm = vc->norm;
    dm->eps = (float)vc->norm_eps;
    dm->qk_norm = vc->qk_norm;
    dm->dt = dt;
    if (!qv_act_parse(vc->hidden_act, &dm->act)) {
        st = qv_fail(QV_ERR_UNSUPPORTED, "%s: vision hidden_act \"%s\" is not supported", ck->path, vc->hidden_act);
        goto fail;
    }
    if (vc->channels != 3 || vc->hidden % vc->n_heads) {
        st = qv_fail(QV_ERR_UNSUPPORTED, "%s: vision tower with %lld channels / hidden %lld / %lld heads is not "
                     "supported", ck->path, (long long)vc->channels, (long long)vc->hidden, (long long)vc->n_heads);
        goto fail;
    }
    v->patch = vc->patch_size;
    v->grid = vc->image_size / vc->patch_size;
    v->n_layers = vc->n_layers;
    v->n_run = select_layer < 0 ? vc->n_layers + 1 + select_layer : select_layer;
    if (v->n_run < 0 || v->n_run > vc->n_layers) {
        st = qv_fail(QV_ERR_INVALID, "%s: select_layer %lld is outside the %lld vision layers", ck->path,
                     (long long)select_layer, (long long)vc->n_layers);
        goto fail;
    }
    v->layer_fmt = lo->layer_fmt;
    v->names = lo->names;
    if (!vc->qkv_bias)
        for (int l = QV_VIT_QKV; l <= QV_VIT_V; l++)
            v->names.lin_b[l] = NULL;
    if (!vc->qk_norm)
        v->names.vec[QV_VIT_QNORM] = v->names.vec[QV_VIT_KNORM] = NULL;
    if (vc->norm == QV_NORM_RMS)
        v->names.vec[QV_VIT_NORM1_B] = v->names.vec[QV_VIT_NORM2_B] = NULL;
    const int64_t D = dm->D, P = 3 * v->patch * v->patch, G2 = v->grid * v->grid;
    const int64_t sh_pw[4] = {D, 3, v->patch, v->patch}, sh_d[1] = {D}, sh_cls[3] = {1, 1, D},
                  sh_pos[3] = {1, 1 + G2, D};
    QV_CHECK(st = load_f32(v, lo->patch_w, 4, sh_pw, &v->patch_w, "patch embedding"), fail);
    QV_CHECK(st = load_f32(v, lo->patch_b, 1, sh_d, &v->patch_b, "patch embedding"), fail);
    QV_CHECK(st = load_f32(v, lo->cls, 3, sh_cls, &v->cls, "class embedding"), fail);
    QV_CHECK(st = load_f32(v, lo->pos, 3, sh_pos, &v->pos, "position embedding"), fail);
    v->patch_w_dt = v->patch_w;
    if (dt != QV_F32) {
        v->patch_w_dt = qv_malloc((size_t)(D * P) * qv_dtype_size(dt), "patch embedding");
        if (!v->patch_w_dt) {
            st = QV_ERR_NOMEM;
            goto fail;
        }
        QV_CHECK(st = qv_convert(v->patch_w_dt, dt, v->patch_w, QV_F32, (size_t)(D * P)), fail);
    }
    for (int64_t i = 0; i < v->n_layers; i++) {
        char prefix[128], fmt[96];
        snprintf(fmt, sizeof fmt, "%%s%s", v->layer_fmt);
        snprintf(prefix, sizeof prefix, fmt, v->root, (long long)i);
        QV_CHECK(st = qv_vit_layer_check(ck, dm, &v->names, prefix), fail);
    }
    *out = v;
    return QV_OK;
fail:
    qv_internvit_close(v);
    return st;
}

void qv_internvit_close(qv_internvit *v)
{
    if (!v)
        return;
    if (v->patch_w_dt != v->patch_w)
        qv_free(v->patch_w_dt);
    qv_free(v->patch_w);
    qv_free(v->patch_b);
    qv_free(v->cls);
    qv_free(v->pos);
    qv_free(v);
}

int64_t qv_internvit_tokens(const qv_internvit *v, int64_t h, int64_t w)
{
    return 1 + (h / v->patch) * (w / v->patch);
}

/* ---- position embedding resampling -------------------------------------------------------- */

/* PyTorch's cubic convolution weights (A = −0.75) for the fractional offset t. */
static void cubic_coeffs(float t, float c[4])
{
    const float A = -0.75f;
    float x1 = t + 1.0f, x2 = 1.0f - t, x3 = 2.0f - t;
    c[0] = ((A * x1 - 5.0f * A) * x1 + 8.0f * A) * x1 - 4.0f * A;
    c[1] = ((A + 2.0f) * t - (A + 3.0f)) * t * t + 1.0f;
    c[2] = ((A + 2.0f) * x2 - (A + 3.0f)) * x2 * x2 + 1.0f;
    c[3] = ((A * x3 - 5.0f * A) * x3 + 8.0f * A) * x3 - 4.0f * A;
}

/* Source index and weights of output index o (align_corners = False, no clamping of the source
 * coordinate for cubic; taps clamped to the edge when used). */
static void cubic_src(int64_t o, int64_t in, int64_t out, int64_t *i0, float c[4])
{
    float scale = (float)in / (float)out;
    float real = scale * ((float)o + 0.5f) - 0.5f;
    float fl = floorf(real);
    int64_t idx = QV_MIN((int64_t)fl, in - 1);
    float t = QV_MIN(QV_MAX(real - (float)idx, 0.0f), 1.0f);
    *i0 = idx;
    cubic_coeffs(t, c);
}

void qv_internvit_pos_resample(const float *grid_pos, int64_t G, int64_t D, int64_t gh, int64_t gw, float *out)
{
    if (gh == G && gw == G) { /* PyTorch copies when the size is unchanged */
        memcpy(out, grid_pos, (size_t)(G * G * D) * sizeof *out);
        return;
    }
#pragma omp parallel for schedule(static) if (gh * gw * D >= 65536)
    for (int64_t oy = 0; oy < gh; oy++) {
        int64_t iy, ix;
        float cy[4], cx[4];
        cubic_src(oy, G, gh, &iy, cy);
        for (int64_t ox = 0; ox < gw; ox++) {
            cubic_src(ox, G, gw, &ix, cx);
            float *o = out + (oy * gw + ox) * D;
            for (int64_t c = 0; c < D; c++)
                o[c] = 0.0f;
            for (int i = 0; i < 4; i++) {
                const int64_t y = QV_MIN(QV_MAX(iy - 1 + i, (int64_t)0), G - 1);
                for (int j = 0; j < 4; j++) {
                    const int64_t x = QV_MIN(QV_MAX(ix - 1 + j, (int64_t)0), G - 1);
                    const float wgt = cy[i] * cx[j];
                    const float *s = grid_pos + (y * G + x) * D;
                    for (int64_t c = 0; c < D; c++)
                        o[c] += s[c] * wgt;
                }
            }
        }
    }
}

/* ---- forward ------------------------------------------------------------------------------ */

qv_status qv_internvit_embed(const qv_internvit *v, const float *pixels, int64_t n, int64_t h, int64_t w, float *emb)
{
    const int64_t p = v->patch, gh = h / p, gw = w / p, np = gh * gw, D = v->dm.D, K = 3 * p * p;
    const int64_t tok = 1 + np;
    if (h % p || w % p || gh <= 0 || gw <= 0)
        return qv_fail(QV_ERR_INVALID, "InternViT: tile %lldx%lld is not a multiple of the patch size %lld",
                       (long long)w, (long long)h, (long long)p);
    size_t nrows;
    if (!qv_mul_size((size_t)(n * np), (size_t)K, &nrows))
        return qv_fail(QV_ERR_NOMEM, "InternViT: too many patches");
    float *cols = qv_aligned_alloc(64, nrows * sizeof(float) + 64, "patch rows");
    float *pe = qv_aligned_alloc(64, (size_t)(n * np * D) * sizeof(float) + 64, "patch embeddings");
    float *pos = qv_malloc((size_t)(np * D) * sizeof(float) + 4, "position embedding");
    qv_status st = cols && pe && pos ? QV_OK : QV_ERR_NOMEM;
    if (st != QV_OK)
        goto done;
    qv_vit_patchify(cols, pixels, n, h, w, p);
    QV_CHECK(st = qv_linear_rows(v->dm.dt, n * np, D, K, cols, v->patch_w_dt, v->patch_b, pe, 0), done);
    qv_internvit_pos_resample(v->pos + D, v->grid, D, gh, gw, pos);
#pragma omp parallel for schedule(static) if (n * tok * D >= 65536)
    for (int64_t r = 0; r < n * tok; r++) {
        const int64_t t = r / tok, i = r % tok;
        float *o = emb + r * D;
        if (i == 0)
            for (int64_t c = 0; c < D; c++)
                o[c] = v->cls[c] + v->pos[c];
        else
            for (int64_t c = 0; c < D; c++)
                o[c] = pe[(t * np + i - 1) * D + c] + pos[(i - 1) * D + c];
    }
done:
    qv_free(cols);
    qv_free(pe);
    qv_free(pos);
    return st;
}

qv_status qv_internvit_encode(const qv_internvit *v, int64_t n, int64_t tokens, float *x)
{
    const qv_vit_seq s = {n, tokens, NULL, NULL, NULL};
    char prefix[128], fmt[96];
    snprintf(fmt, sizeof fmt, "%%s%s", v->layer_fmt);
    for (int64_t i = 0; i < v->n_run; i++) {
        qv_vit_layer layer;
        snprintf(prefix, sizeof prefix, fmt, v->root, (long long)i);
        qv_status st = qv_vit_layer_load(v->ck, &v->dm, &v->names, prefix, &layer);
        if (st == QV_OK)
            st = qv_vit_layer_forward(&v->dm, &layer, &s, x);
        qv_vit_layer_release(v->ck, &layer);
        QV_TRY(st);
    }
    return QV_OK;
}
