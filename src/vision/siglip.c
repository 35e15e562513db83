/* siglip.c — SigLIP tower config, embeddings and kept encoder layers (siglip.h). */
#include "siglip.h"

#include <stdio.h>
#include <string.h>

#include "../core/fsutil.h"
#include "../io/json.h"
#include "../model/config_parse.h"
#include "../nn/linear.h"

static const qv_vit_names siglip_names = {
    .lin_w = {[QV_VIT_Q] = "self_attn.q_proj.weight", [QV_VIT_K] = "self_attn.k_proj.weight",
              [QV_VIT_V] = "self_attn.v_proj.weight", [QV_VIT_O] = "self_attn.out_proj.weight",
              [QV_VIT_FC1] = "mlp.fc1.weight", [QV_VIT_FC2] = "mlp.fc2.weight"},
    .lin_b = {[QV_VIT_Q] = "self_attn.q_proj.bias", [QV_VIT_K] = "self_attn.k_proj.bias",
              [QV_VIT_V] = "self_attn.v_proj.bias", [QV_VIT_O] = "self_attn.out_proj.bias",
              [QV_VIT_FC1] = "mlp.fc1.bias", [QV_VIT_FC2] = "mlp.fc2.bias"},
    .vec = {[QV_VIT_NORM1_W] = "layer_norm1.weight", [QV_VIT_NORM1_B] = "layer_norm1.bias",
            [QV_VIT_NORM2_W] = "layer_norm2.weight", [QV_VIT_NORM2_B] = "layer_norm2.bias"}};

qv_status qv_siglip_config_parse(const qv_json *o, const char *file, qv_vision_config *vc)
{
    memset(vc, 0, sizeof *vc);
    snprintf(vc->model_type, sizeof vc->model_type, "siglip_vision_model");
    const char *act = "gelu_pytorch_tanh";
    vc->channels = 3;
    vc->norm_eps = 1e-6;
    vc->norm = QV_NORM_LAYER;
    vc->qkv_bias = true;
    /* the caps of config.h (resource limits), as for every other tower */
    QV_TRY(qv_cfg_pos_int(o, "hidden_size", file, "", QV_MAX_HIDDEN, &vc->hidden));
    QV_TRY(qv_cfg_pos_int(o, "intermediate_size", file, "", QV_MAX_INTERMEDIATE, &vc->intermediate));
    QV_TRY(qv_cfg_pos_int(o, "num_hidden_layers", file, "", QV_MAX_LAYERS, &vc->n_layers));
    QV_TRY(qv_cfg_pos_int(o, "num_attention_heads", file, "", QV_MAX_HEADS, &vc->n_heads));
    QV_TRY(qv_cfg_pos_int(o, "image_size", file, "", QV_MAX_IMAGE_SIDE, &vc->image_size));
    QV_TRY(qv_cfg_pos_int(o, "patch_size", file, "", QV_MAX_IMAGE_SIDE, &vc->patch_size));
    QV_TRY(qv_cfg_int_in(o, "num_channels", file, "", 1, QV_MAX_CHANNELS, false, &vc->channels));
    QV_TRY(qv_cfg_pos_num(o, "layer_norm_eps", file, "", &vc->norm_eps));
    QV_TRY(qv_json_str_opt(o, "hidden_act", file, &act));
    snprintf(vc->hidden_act, sizeof vc->hidden_act, "%s", act);
    if (vc->hidden % vc->n_heads || vc->patch_size > vc->image_size)
        return qv_fail(QV_ERR_INVALID, "%s: hidden_size %lld / %lld heads / patch %lld are inconsistent", file,
                       (long long)vc->hidden, (long long)vc->n_heads, (long long)vc->patch_size);
    return QV_OK;
}

qv_status qv_siglip_config_load(const char *model_dir, const char *tower, qv_vision_config *vc)
{
    memset(vc, 0, sizeof *vc);
    snprintf(vc->model_type, sizeof vc->model_type, "siglip_vision_model");
    char *dir = tower[0] == '/' ? qv_strdup(tower) : qv_path_join(model_dir, tower);
    char *file = dir ? qv_path_join(dir, "config.json") : NULL;
    qv_free(dir);
    if (!file)
        return QV_ERR_NOMEM;
    if (!qv_path_exists(file)) {
        qv_status st = QV_OK;
        if (strstr(tower, "siglip-so400m-patch14-384")) { /* hub config of google/siglip-so400m-patch14-384 */
            vc->hidden = 1152, vc->intermediate = 4304, vc->n_layers = 27, vc->n_heads = 16;
            vc->image_size = 384, vc->patch_size = 14, vc->channels = 3, vc->norm_eps = 1e-6;
            snprintf(vc->hidden_act, sizeof vc->hidden_act, "gelu_pytorch_tanh");
        } else {
            st = qv_fail(QV_ERR_IO, "%s: missing (the config of mm_vision_tower \"%s\")", file, tower);
        }
        qv_free(file);
        return st;
    }
    qv_json *root = NULL;
    qv_status st = qv_json_load_file(file, 0, &root);
    if (st == QV_OK) {
        const qv_json *o = root;
        qv_json *sub = qv_json_get(root, "vision_config"); /* a full SiglipConfig */
        if (qv_json_is_type(sub, json_type_object))
            o = sub;
        st = qv_siglip_config_parse(o, file, vc);
    }
    qv_json_free(root);
    qv_free(file);
    return st;
}

static qv_status load_f32(const qv_siglip *v, const char *rel, int ndim, const int64_t *shape, float **out)
{
    char name[256];
    snprintf(name, sizeof name, "%s%s", v->root, rel);
    qv_tensor t;
    QV_TRY(qv_checkpoint_get_shaped(v->ck, name, ndim, shape, &t));
    const size_t n = (size_t)qv_tensor_numel(&t);
    *out = qv_malloc(n * sizeof(float) + 4, "SigLIP embeddings");
    if (!*out)
        return QV_ERR_NOMEM;
    return qv_vit_widen(*out, &t, n);
}

qv_status qv_siglip_open(const qv_checkpoint *ck, const qv_vision_config *vc, int64_t n_run, qv_dtype dt,
                         qv_siglip **out)
{
    *out = NULL;
    qv_siglip *v = qv_calloc(1, sizeof *v, "SigLIP");
    if (!v)
        return QV_ERR_NOMEM;
    v->ck = ck;
    qv_status st = QV_OK;
    static const char *const roots[] = {"model.vision_tower.vision_tower.vision_model.", "vision_tower.vision_model.",
                                        "model.vision_tower.vision_model.", "model.vision_tower."};
    for (size_t r = 0; r < QV_ARRAY_LEN(roots) && !v->root[0]; r++) {
        char name[256];
        snprintf(name, sizeof name, "%sembeddings.patch_embedding.weight", roots[r]);
        if (qv_checkpoint_find(ck, name, NULL))
            snprintf(v->root, sizeof v->root, "%s", roots[r]);
    }
    if (!v->root[0]) {
        st = qv_fail(QV_ERR_FORMAT, "%s: tensor %sembeddings.patch_embedding.weight not found", ck->path, roots[0]);
        goto fail;
    }
    qv_vit_dims *dm = &v->dm;
    dm->D = vc->hidden, dm->H = vc->n_heads, dm->d = vc->hidden / vc->n_heads, dm->I = vc->intermediate;
    dm->norm = QV_NORM_LAYER;
    dm->eps = (float)vc->norm_eps;
    dm->dt = dt;
    if (!qv_act_parse(vc->hidden_act, &dm->act)) {
        st = qv_fail(QV_ERR_UNSUPPORTED, "%s: SigLIP hidden_act \"%s\" is not supported", ck->path, vc->hidden_act);
        goto fail;
    }
    v->patch = vc->patch_size, v->image_size = vc->image_size, v->grid = vc->image_size / vc->patch_size;
    v->n_run = n_run;
    v->names = siglip_names;
    if (n_run < 0 || n_run > vc->n_layers) {
        st = qv_fail(QV_ERR_INVALID, "%s: %lld SigLIP layers requested of %lld", ck->path, (long long)n_run,
                     (long long)vc->n_layers);
        goto fail;
    }
    const int64_t D = dm->D, K = 3 * v->patch * v->patch;
    const int64_t sh_w[4] = {D, 3, v->patch, v->patch}, sh_b[1] = {D}, sh_pos[2] = {v->grid * v->grid, D};
    float *w32 = NULL;
    QV_CHECK(st = load_f32(v, "embeddings.patch_embedding.weight", 4, sh_w, &w32), fail);
    if (dt == QV_F32) {
        v->patch_w = w32;
    } else {
        v->patch_w = qv_malloc((size_t)(D * K) * qv_dtype_size(dt), "patch embedding");
        st = v->patch_w ? qv_convert(v->patch_w, dt, w32, QV_F32, (size_t)(D * K)) : QV_ERR_NOMEM;
        qv_free(w32);
        QV_CHECK(st, fail);
    }
    QV_CHECK(st = load_f32(v, "embeddings.patch_embedding.bias", 1, sh_b, &v->patch_b), fail);
    QV_CHECK(st = load_f32(v, "embeddings.position_embedding.weight", 2, sh_pos, &v->pos), fail);
    for (int64_t i = 0; i < n_run; i++) {
        char prefix[160];
        snprintf(prefix, sizeof prefix, "%sencoder.layers.%lld.", v->root, (long long)i);
        QV_CHECK(st = qv_vit_layer_check(ck, dm, &v->names, prefix), fail);
    }
    *out = v;
    return QV_OK;
fail:
    qv_siglip_close(v);
    return st;
}

void qv_siglip_close(qv_siglip *v)
{
    if (!v)
        return;
    qv_free(v->patch_w);
    qv_free(v->patch_b);
    qv_free(v->pos);
    qv_free(v);
}

qv_status qv_siglip_embed(const qv_siglip *v, const float *pixels, int64_t n, float *emb)
{
    const int64_t S = v->image_size, np = v->grid * v->grid, D = v->dm.D, K = 3 * v->patch * v->patch;
    float *cols = qv_aligned_alloc(64, (size_t)(n * np * K) * sizeof(float) + 64, "patch rows");
    if (!cols)
        return QV_ERR_NOMEM;
    qv_vit_patchify(cols, pixels, n, S, S, v->patch);
    qv_status st = qv_linear_rows(v->dm.dt, n * np, D, K, cols, v->patch_w, v->patch_b, emb, 0);
    qv_free(cols);
    QV_TRY(st);
#pragma omp parallel for schedule(static) if (n * np * D >= 65536)
    for (int64_t r = 0; r < n * np; r++) {
        float *o = emb + r * D;
        const float *p = v->pos + (r % np) * D;
        for (int64_t c = 0; c < D; c++)
            o[c] = o[c] + p[c];
    }
    return QV_OK;
}

qv_status qv_siglip_encode(const qv_siglip *v, int64_t n, float *x)
{
    const qv_vit_seq s = {n, v->grid * v->grid, NULL, NULL, NULL};
    for (int64_t i = 0; i < v->n_run; i++) {
        char prefix[160];
        snprintf(prefix, sizeof prefix, "%sencoder.layers.%lld.", v->root, (long long)i);
        qv_vit_layer layer;
        qv_status st = qv_vit_layer_load(v->ck, &v->dm, &v->names, prefix, &layer);
        if (st == QV_OK)
            st = qv_vit_layer_forward(&v->dm, &layer, &s, x);
        qv_vit_layer_release(v->ck, &layer);
        QV_TRY(st);
    }
    return QV_OK;
}
