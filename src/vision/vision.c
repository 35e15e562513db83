/* vision.c — the one dispatch point between the towers: the openers of each tower and projector
 * (which the family table points at), chunk sizes, and units of pixels → LLM-width feature rows
 * with their dumps (vision.h). */
#include "vision.h"

#include <stdio.h>
#include <string.h>

#include "../core/fsutil.h"
#include "../family/family.h"
#include "../io/json.h"
#include "../nn/matmul.h"
#include "vision_internal.h"


/* ---- opening ------------------------------------------------------------------------------ */

/* Id of an added token: added_tokens.json, then tokenizer_config.json's added_tokens_decoder,
 * then tokenizer.json's added_tokens. */
static qv_status added_token_id(const char *dir, const char *token, int64_t *id)
{
    static const char *const files[] = {"added_tokens.json", "tokenizer_config.json", "tokenizer.json"};
    *id = -1;
    for (size_t f = 0; f < QV_ARRAY_LEN(files) && *id < 0; f++) {
        char *path = qv_path_join(dir, files[f]);
        if (!path)
            return QV_ERR_NOMEM;
        if (!qv_path_exists(path)) {
            qv_free(path);
            continue;
        }
        qv_json *root = NULL;
        qv_status st = qv_json_load_file(path, 0, &root);
        qv_free(path);
        QV_TRY(st);
        if (f == 0) {
            qv_json_as_int(qv_json_get(root, token), id);
        } else if (f == 1) {
            qv_json *dec = qv_json_get(root, "added_tokens_decoder");
            if (qv_json_is_type(dec, json_type_object)) {
                json_object_object_foreach(dec, key, val) {
                    qv_json *c = qv_json_get(val, "content");
                    if (qv_json_is_type(c, json_type_string) && !strcmp(json_object_get_string(c), token))
                        *id = strtoll(key, NULL, 10);
                }
            }
        } else {
            qv_json *arr = qv_json_get(root, "added_tokens");
            for (size_t i = 0; qv_json_is_type(arr, json_type_array) && i < json_object_array_length(arr); i++) {
                qv_json *e = json_object_array_get_idx(arr, i), *c = qv_json_get(e, "content");
                if (qv_json_is_type(c, json_type_string) && !strcmp(json_object_get_string(c), token))
                    qv_json_as_int(qv_json_get(e, "id"), id);
            }
        }
        qv_json_free(root);
    }
    if (*id < 0)
        return qv_fail(QV_ERR_FORMAT, "%s: the tokenizer files define no %s token", dir, token);
    return QV_OK;
}

static bool has(const qv_checkpoint *ck, const char *name) { return qv_checkpoint_find(ck, name, NULL) != NULL; }

qv_status qv_vision_open_internvit(qv_vision *v, const char *model_dir)
{
    const qv_model_config *cfg = v->cfg;
    v->kind = QV_VISION_INTERNVIT;
    QV_TRY(qv_internvit_open(v->ck, &cfg->vision, cfg->select_layer, v->dt, &v->ivit));
    v->ivit->dm.hook = v->hook;
    v->Dv = cfg->vision.hidden;
    v->tile = cfg->force_image_size > 0 ? cfg->force_image_size : cfg->vision.image_size;
    if (!strcmp(cfg->ps_version, "v1"))
        v->ps = QV_PS_V1;
    else if (!strcmp(cfg->ps_version, "v2"))
        v->ps = QV_PS_V2;
    else
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: ps_version \"%s\" is not supported (v1, v2)", cfg->path,
                       cfg->ps_version);
    const int64_t g = v->tile / cfg->vision.patch_size;
    if (v->tile % cfg->vision.patch_size || g % 2)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: image size %lld gives a %lldx%lld patch grid; pixel shuffle needs an "
                       "even grid", cfg->path, (long long)v->tile, (long long)g, (long long)g);
    qv_proj_mlp *p = &v->proj;
    p->norm = QV_NORM_LAYER, p->eps = 1e-5f, p->act = QV_ACT_GELU, p->dt = v->dt, p->hook = v->hook;
    p->norm_width = p->in = 4 * v->Dv, p->hidden = p->out = v->C;
    qv_proj_names nm = {"mlp1.0.weight", "mlp1.0.bias", "mlp1.1.weight", "mlp1.1.bias", "mlp1.3.weight",
                        "mlp1.3.bias"};
    static const qv_proj_names hf[2] = {
        {"model.multi_modal_projector.layer_norm.weight", "model.multi_modal_projector.layer_norm.bias",
         "model.multi_modal_projector.linear_1.weight", "model.multi_modal_projector.linear_1.bias",
         "model.multi_modal_projector.linear_2.weight", "model.multi_modal_projector.linear_2.bias"},
        {"multi_modal_projector.layer_norm.weight", "multi_modal_projector.layer_norm.bias",
         "multi_modal_projector.linear_1.weight", "multi_modal_projector.linear_1.bias",
         "multi_modal_projector.linear_2.weight", "multi_modal_projector.linear_2.bias"}};
    for (int i = 0; i < 2 && !has(v->ck, nm.w1); i++)
        if (has(v->ck, hf[i].w1))
            nm = hf[i];
    QV_TRY(qv_proj_mlp_load(p, v->ck, &nm));
    return added_token_id(model_dir, "<IMG_CONTEXT>", &v->image_token);
}

qv_status qv_vision_open_qwen2vl(qv_vision *v, const char *model_dir)
{
    (void)model_dir;
    const qv_vision_config *vc = &v->cfg->vision;
    v->kind = QV_VISION_QWEN2VL;
    QV_TRY(qv_qwen2vl_vit_open(v->ck, vc, v->dt, &v->qvit));
    v->qvit->dm.hook = v->hook;
    v->Dv = vc->hidden;
    const int64_t mm = vc->spatial_merge_size * vc->spatial_merge_size;
    qv_proj_mlp *p = &v->proj;
    p->norm = vc->norm, p->eps = 1e-6f, p->act = QV_ACT_GELU, p->dt = v->dt, p->hook = v->hook;
    p->norm_width = v->Dv, p->in = p->hidden = mm * v->Dv, p->out = v->C;
    if (vc->out_hidden && vc->out_hidden != v->C)
        return qv_fail(QV_ERR_INVALID, "%s: vision_config output width %lld differs from the LLM hidden size %lld",
                       v->cfg->path, (long long)vc->out_hidden, (long long)v->C);
    char n[6][64];
    const char *root = v->qvit->root;
    snprintf(n[0], 64, "%smerger.ln_q.weight", root);
    snprintf(n[1], 64, "%smerger.ln_q.bias", root);
    snprintf(n[2], 64, "%smerger.mlp.0.weight", root);
    snprintf(n[3], 64, "%smerger.mlp.0.bias", root);
    snprintf(n[4], 64, "%smerger.mlp.2.weight", root);
    snprintf(n[5], 64, "%smerger.mlp.2.bias", root);
    const qv_proj_names nm = {n[0], vc->norm == QV_NORM_RMS ? NULL : n[1], n[2], n[3], n[4], n[5]};
    QV_TRY(qv_proj_mlp_load(p, v->ck, &nm));
    v->image_token = v->cfg->image_token_id;
    if (v->image_token < 0)
        return qv_fail(QV_ERR_INVALID, "%s: missing field \"image_token_id\"", v->cfg->path);
    return QV_OK;
}

qv_status qv_vision_open_siglip(qv_vision *v, const char *model_dir)
{
    const qv_model_config *cfg = v->cfg;
    const char *file = cfg->path;
    v->kind = QV_VISION_SIGLIP;
    if (!cfg->llava.vision_tower[0] && !cfg->vision.n_layers)
        return qv_fail(QV_ERR_INVALID, "%s: missing field \"mm_vision_tower\"", file);
    if (strcmp(cfg->llava.projector, "mlp2x_gelu") != 0)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: mm_projector_type \"%s\" is not supported (mlp2x_gelu)", file,
                       cfg->llava.projector);
    v->llava_max_len = cfg->llava.max_length;
    v->llava_left_pad = cfg->llava.left_pad;
    const bool newline = cfg->llava.image_newline;
    qv_vision_config vc = cfg->vision; /* llava-hf: inline */
    if (cfg->llava.vision_tower[0])
        QV_TRY(qv_siglip_config_load(model_dir, cfg->llava.vision_tower, &vc));
    const int64_t n_run = vc.n_layers + 1 + cfg->llava.feature_layer;
    /* lmms-lab: LLaVA-NeXT deletes the last encoder layer, hidden_states[-1] of the rest = layer −2 */
    QV_TRY(qv_siglip_open(v->ck, &vc, n_run, v->dt, &v->sig));
    v->sig->dm.hook = v->hook;
    v->Dv = vc.hidden;
    v->tile = vc.image_size;
    qv_proj_mlp *p = &v->proj;
    p->act = QV_ACT_GELU, p->dt = v->dt, p->hook = v->hook;
    p->in = v->Dv, p->hidden = p->out = v->C;
    static const qv_proj_names names[3] = {
        {NULL, NULL, "model.mm_projector.0.weight", "model.mm_projector.0.bias", "model.mm_projector.2.weight",
         "model.mm_projector.2.bias"},
        {NULL, NULL, "multi_modal_projector.linear_1.weight", "multi_modal_projector.linear_1.bias",
         "multi_modal_projector.linear_2.weight", "multi_modal_projector.linear_2.bias"},
        {NULL, NULL, "model.multi_modal_projector.linear_1.weight", "model.multi_modal_projector.linear_1.bias",
         "model.multi_modal_projector.linear_2.weight", "model.multi_modal_projector.linear_2.bias"}};
    int k = 0;
    for (int i = 0; i < 3; i++)
        if (has(v->ck, names[i].w1)) {
            k = i;
            break;
        }
    QV_TRY(qv_proj_mlp_load(p, v->ck, &names[k]));
    if (newline) {
        static const char *const nl[] = {"model.image_newline", "image_newline"};
        const char *name = has(v->ck, nl[1]) && !has(v->ck, nl[0]) ? nl[1] : nl[0];
        const int64_t sh[1] = {v->C};
        qv_tensor t;
        QV_TRY(qv_checkpoint_get_shaped(v->ck, name, 1, sh, &t));
        v->newline = qv_malloc((size_t)v->C * sizeof(float), "image_newline");
        if (!v->newline)
            return QV_ERR_NOMEM;
        QV_TRY(qv_vit_widen(v->newline, &t, (size_t)v->C));
    }
    v->image_token = -200;
    return QV_OK;
}

/* Activation bytes per tile / crop (or per Qwen2-VL patch): hidden states, the block's 5·D
 * scratch, patch rows and projector rows, rounded up generously. */
static uint64_t bytes_per_unit(const qv_vision *v)
{
    const uint64_t D = (uint64_t)v->Dv, C = (uint64_t)v->C;
    if (v->kind == QV_VISION_QWEN2VL)
        return 4 * (7 * D + (uint64_t)qv_vision_patch_dim(v) + 2 * D + C);
    const uint64_t p = v->kind == QV_VISION_INTERNVIT ? (uint64_t)v->ivit->patch : (uint64_t)v->sig->patch;
    const uint64_t T = (uint64_t)(v->tile / (int64_t)p) * (uint64_t)(v->tile / (int64_t)p) + 1;
    return 4 * (T * (8 * D + 3 * p * p + C) + 3 * (uint64_t)v->tile * (uint64_t)v->tile);
}

qv_status qv_vision_open(const qv_model_config *cfg, const qv_checkpoint *ck, const char *model_dir,
                         const qv_vision_opts *opts, qv_vision **out)
{
    *out = NULL;
    const qv_dtype dt = opts ? opts->compute : QV_F32;
    if (!cfg->has_vision)
        return qv_fail(QV_ERR_INVALID, "%s: the model has no vision tower", cfg->path);
    if (dt != QV_F32 && dt != QV_BF16)
        return qv_fail(QV_ERR_INVALID, "%s: vision compute dtype %s is not supported (F32, BF16)", cfg->path,
                       qv_dtype_name(dt));
    if (dt == QV_BF16 && !qv_matmul_bf16_native())
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: BF16 compute needs native BF16 matmuls (AVX512-BF16 or AMX); "
                       "oneDNN runs %s here, use F32", cfg->path, qv_matmul_isa_name());
    qv_vision *v = qv_calloc(1, sizeof *v, "vision tower");
    if (!v)
        return QV_ERR_NOMEM;
    v->cfg = cfg, v->ck = ck, v->dt = dt, v->C = cfg->llm.hidden, v->hook = opts ? opts->hook : NULL;
    const qv_family *fam = qv_family_get(cfg->family);
    qv_status st = fam->vision_open ? fam->vision_open(v, model_dir)
                                    : qv_fail(QV_ERR_UNSUPPORTED, "%s: no vision tower for family %s", cfg->path,
                                              fam->name);
    if (st != QV_OK) {
        qv_vision_close(v);
        return st;
    }
    const uint64_t per = bytes_per_unit(v), budget = opts ? opts->max_memory : 0;
    v->max_units = opts && opts->max_units > 0 ? opts->max_units : budget ? (int64_t)QV_MAX(budget / per, 1) : 8;
    v->max_tokens = opts && opts->max_tokens > 0 ? opts->max_tokens
                    : budget                     ? (int64_t)QV_MAX(budget / per, 1)
                                                 : 16384;
    v->max_units = QV_MIN(v->max_units, (int64_t)4096);
    *out = v;
    return QV_OK;
}

void qv_vision_close(qv_vision *v)
{
    if (!v)
        return;
    qv_internvit_close(v->ivit);
    qv_qwen2vl_vit_close(v->qvit);
    qv_siglip_close(v->sig);
    qv_proj_mlp_free(&v->proj);
    qv_free(v->newline);
    qv_free(v);
}

qv_vision_kind qv_vision_kind_of(const qv_vision *v) { return v->kind; }
int64_t qv_vision_hidden(const qv_vision *v) { return v->Dv; }
int64_t qv_vision_out_dim(const qv_vision *v) { return v->C; }
int64_t qv_vision_tile_size(const qv_vision *v) { return v->kind == QV_VISION_QWEN2VL ? 0 : v->tile; }
int64_t qv_vision_patch_dim(const qv_vision *v) { return v->qvit ? v->qvit->patch_dim : 0; }
int64_t qv_vision_image_token(const qv_vision *v) { return v->image_token; }
int64_t qv_vision_chunk_units(const qv_vision *v) { return v->kind == QV_VISION_QWEN2VL ? v->max_tokens : v->max_units; }

/* ---- units -------------------------------------------------------------------------------- */

int64_t qv_vision_unit_patches(const qv_vision *v, const qv_vision_input *in, int64_t u)
{
    if (v->kind != QV_VISION_QWEN2VL)
        return 0;
    const int64_t *g = in->grid_thw + 3 * u;
    return g[0] * g[1] * g[2];
}

int64_t qv_vision_unit_rows(const qv_vision *v, const qv_vision_input *in, int64_t u)
{
    switch (v->kind) {
    case QV_VISION_INTERNVIT: {
        if (in->flags && !in->flags[u])
            return 0;
        const int64_t g = in->tile_h / v->ivit->patch;
        return (g / 2) * (g / 2);
    }
    case QV_VISION_QWEN2VL:
        return qv_vision_unit_patches(v, in, u) / (v->qvit->merge * v->qvit->merge);
    case QV_VISION_SIGLIP:
        return v->sig->grid * v->sig->grid + (v->newline ? 1 : 0);
    }
    return 0;
}

qv_status qv_vision_input_check(const qv_vision *v, const qv_vision_input *in, const char *what)
{
    if (in->n < 0)
        return qv_fail(QV_ERR_INVALID, "%s: negative image count", what);
    if (v->kind == QV_VISION_QWEN2VL) {
        for (int64_t u = 0; u < in->n; u++) {
            const int64_t *g = in->grid_thw + 3 * u, m = v->qvit->merge;
            if (g[0] <= 0 || g[1] <= 0 || g[2] <= 0 || g[1] % m || g[2] % m || g[1] > 65536 || g[2] > 65536 ||
                g[0] > 65536)
                return qv_fail(QV_ERR_INVALID, "%s: image_grid_thw[%lld] = (%lld, %lld, %lld) is not a grid of whole "
                               "%lldx%lld merge blocks", what, (long long)u, (long long)g[0], (long long)g[1],
                               (long long)g[2], (long long)m, (long long)m);
        }
        return QV_OK;
    }
    if (in->tile_h != v->tile || in->tile_w != v->tile)
        return qv_fail(QV_ERR_INVALID, "%s: tiles are %lldx%lld pixels, the vision tower takes %lldx%lld", what,
                       (long long)in->tile_w, (long long)in->tile_h, (long long)v->tile, (long long)v->tile);
    return QV_OK;
}

/* ---- encoding ----------------------------------------------------------------------------- */

static bool wants(const qv_llm_dump *d, const char *name) { return d && d->want && d->want(d->ctx, name); }

/* Per-tile dump rows: the unit's rows, or zeros for a skipped (flag-0) tile. */
static qv_status put_unit(const qv_llm_dump *d, const char *name, int64_t u, int64_t rows, int64_t width,
                          const float *data, float **zeros)
{
    if (!data) {
        if (!*zeros && !(*zeros = qv_calloc((size_t)(rows * width), sizeof(float), "dump zeros")))
            return QV_ERR_NOMEM;
        data = *zeros;
    }
    return d->put(d->ctx, name, u * rows, rows, data);
}

static qv_status encode_internvl(qv_vision *v, const qv_vision_input *in, int64_t u0, int64_t n, float *out,
                                 const qv_llm_dump *dump)
{
    const int64_t S = in->tile_h, g = S / v->ivit->patch, T = 1 + g * g, R = (g / 2) * (g / 2), D = v->Dv;
    const int64_t px = 3 * S * S;
    int64_t na = 0;
    for (int64_t u = u0; u < u0 + n; u++)
        na += !in->flags || in->flags[u];
    float *pix = NULL, *emb = NULL, *grid = NULL, *zeros = NULL;
    qv_status st = QV_OK;
    const bool dump_tiles = wants(dump, "vision.last_hidden_state") || wants(dump, "projector.out");
    if (na == 0) { /* nothing to compute; per-tile dumps still get their zero rows */
        for (int64_t u = u0; u < u0 + n && dump_tiles && st == QV_OK; u++) {
            if (wants(dump, "vision.last_hidden_state"))
                st = put_unit(dump, "vision.last_hidden_state", u, T, D, NULL, &zeros);
            if (st == QV_OK && wants(dump, "projector.out"))
                st = put_unit(dump, "projector.out", u, R, v->C, NULL, &zeros);
        }
        qv_free(zeros);
        return st;
    }
    pix = qv_aligned_alloc(64, (size_t)(na * px) * sizeof(float) + 64, "tile pixels");
    emb = qv_aligned_alloc(64, (size_t)(na * T * D) * sizeof(float) + 64, "vision hidden states");
    grid = qv_aligned_alloc(64, (size_t)(na * g * g * D) * sizeof(float) + 64, "vision grid");
    if (!pix || !emb || !grid) {
        st = QV_ERR_NOMEM;
        goto done;
    }
    /* active tiles, fetched in contiguous runs */
    for (int64_t u = u0, k = 0; u < u0 + n;) {
        if (in->flags && !in->flags[u]) {
            u++;
            continue;
        }
        int64_t e = u;
        while (e < u0 + n && (!in->flags || in->flags[e]))
            e++;
        QV_CHECK(st = in->get(in->ctx, u, e - u, pix + k * px), done);
        k += e - u;
        u = e;
    }
    QV_CHECK(st = qv_internvit_embed(v->ivit, pix, na, S, S, emb), done);
    const bool first = u0 == 0 && (!in->flags || in->flags[0]);
    if (first && wants(dump, "vision.embeddings.out.sample0"))
        QV_CHECK(st = dump->put(dump->ctx, "vision.embeddings.out.sample0", 0, T, emb), done);
    QV_CHECK(st = qv_internvit_encode(v->ivit, na, T, emb), done);
    /* drop CLS: [na, g, g, D] */
    for (int64_t k = 0; k < na; k++)
        memcpy(grid + k * g * g * D, emb + (k * T + 1) * D, (size_t)(g * g * D) * sizeof(float));
    float *sh = pix; /* [na, R, 4D] fits in the pixel buffer when 4·D·R ≤ 3·S² — else allocate */
    if ((size_t)(R * 4 * D) > (size_t)px) {
        sh = qv_aligned_alloc(64, (size_t)(na * R * 4 * D) * sizeof(float) + 64, "pixel shuffle");
        if (!sh) {
            st = QV_ERR_NOMEM;
            goto done;
        }
    }
    qv_pixel_shuffle(sh, grid, na, g, D, v->ps);
    if (first && wants(dump, "projector.in.sample0"))
        st = dump->put(dump->ctx, "projector.in.sample0", 0, R, sh);
    if (st == QV_OK)
        st = qv_proj_mlp_forward(&v->proj, sh, na * R, out);
    if (sh != pix)
        qv_free(sh);
    QV_CHECK(st, done);
    for (int64_t u = u0, k = 0; u < u0 + n && dump_tiles; u++) {
        const bool act = !in->flags || in->flags[u];
        if (wants(dump, "vision.last_hidden_state"))
            QV_CHECK(st = put_unit(dump, "vision.last_hidden_state", u, T, D, act ? emb + k * T * D : NULL, &zeros),
                     done);
        if (wants(dump, "projector.out"))
            QV_CHECK(st = put_unit(dump, "projector.out", u, R, v->C, act ? out + k * R * v->C : NULL, &zeros), done);
        k += act;
    }
done:
    qv_free(pix);
    qv_free(emb);
    qv_free(grid);
    qv_free(zeros);
    return st;
}

static qv_status encode_qwen2vl(qv_vision *v, const qv_vision_input *in, int64_t u0, int64_t n, float *out,
                                const qv_llm_dump *dump)
{
    int64_t P = 0, row0 = 0;
    for (int64_t u = 0; u < u0; u++)
        row0 += qv_vision_unit_patches(v, in, u);
    for (int64_t u = u0; u < u0 + n; u++)
        P += qv_vision_unit_patches(v, in, u);
    const int64_t pd = v->qvit->patch_dim, mm = v->qvit->merge * v->qvit->merge;
    float *pix = qv_aligned_alloc(64, (size_t)(P * pd) * sizeof(float) + 64, "patch rows");
    float *x = qv_aligned_alloc(64, (size_t)(P * v->Dv) * sizeof(float) + 64, "vision hidden states");
    qv_status st = pix && x ? QV_OK : QV_ERR_NOMEM;
    if (st == QV_OK)
        st = in->get(in->ctx, u0, n, pix);
    if (st == QV_OK)
        st = qv_qwen2vl_vit_forward(v->qvit, pix, in->grid_thw + 3 * u0, n, x, dump, row0, u0 == 0);
    if (st == QV_OK)
        st = qv_proj_mlp_forward(&v->proj, x, P / mm, out);
    if (st == QV_OK && wants(dump, "vision.merger.out"))
        st = dump->put(dump->ctx, "vision.merger.out", row0 / mm, P / mm, out);
    qv_free(pix);
    qv_free(x);
    return st;
}

static qv_status encode_siglip(qv_vision *v, const qv_vision_input *in, int64_t u0, int64_t n, float *out,
                               const qv_llm_dump *dump)
{
    const int64_t S = v->tile, np = v->sig->grid * v->sig->grid, D = v->Dv, C = v->C;
    const int64_t rows = np + (v->newline ? 1 : 0);
    float *pix = qv_aligned_alloc(64, (size_t)(n * 3 * S * S) * sizeof(float) + 64, "crop pixels");
    float *x = qv_aligned_alloc(64, (size_t)(n * np * D) * sizeof(float) + 64, "vision hidden states");
    float *y = v->newline ? qv_aligned_alloc(64, (size_t)(n * np * C) * sizeof(float) + 64, "projector rows") : out;
    qv_status st = pix && x && y ? QV_OK : QV_ERR_NOMEM;
    const bool first = u0 == 0;
    QV_CHECK(st, done);
    QV_CHECK(st = in->get(in->ctx, u0, n, pix), done);
    QV_CHECK(st = qv_siglip_embed(v->sig, pix, n, x), done);
    if (first && wants(dump, "vision.embeddings.out.sample0"))
        QV_CHECK(st = dump->put(dump->ctx, "vision.embeddings.out.sample0", 0, np, x), done);
    QV_CHECK(st = qv_siglip_encode(v->sig, n, x), done);
    if (first && wants(dump, "vision.encoder.out.sample0"))
        QV_CHECK(st = dump->put(dump->ctx, "vision.encoder.out.sample0", 0, np, x), done);
    QV_CHECK(st = qv_proj_mlp_forward(&v->proj, x, n * np, y), done);
    if (first && wants(dump, "projector.out.sample0"))
        QV_CHECK(st = dump->put(dump->ctx, "projector.out.sample0", 0, np, y), done);
    if (first && v->newline && wants(dump, "image_newline"))
        QV_CHECK(st = dump->put(dump->ctx, "image_newline", 0, 1, v->newline), done);
    if (v->newline)
        for (int64_t k = 0; k < n; k++) {
            memcpy(out + k * rows * C, y + k * np * C, (size_t)(np * C) * sizeof(float));
            memcpy(out + (k * rows + np) * C, v->newline, (size_t)C * sizeof(float));
        }
done:
    qv_free(pix);
    qv_free(x);
    if (y != out)
        qv_free(y);
    return st;
}

qv_status qv_vision_encode(qv_vision *v, const qv_vision_input *in, int64_t u0, int64_t n, float *out,
                           const qv_llm_dump *dump)
{
    if (u0 < 0 || n < 0 || u0 + n > in->n)
        return qv_fail(QV_ERR_INTERNAL, "vision: units [%lld, %lld) outside the %lld given", (long long)u0,
                       (long long)(u0 + n), (long long)in->n);
    if (n == 0)
        return QV_OK;
    switch (v->kind) {
    case QV_VISION_INTERNVIT: return encode_internvl(v, in, u0, n, out, dump);
    case QV_VISION_QWEN2VL: return encode_qwen2vl(v, in, u0, n, out, dump);
    case QV_VISION_SIGLIP: return encode_siglip(v, in, u0, n, out, dump);
    }
    return QV_ERR_INTERNAL;
}

/* ---- dump names --------------------------------------------------------------------------- */

static int decl(qv_vision_dump_decl *out, int k, int max, const char *name, int ndim, int64_t a, int64_t b, int64_t c)
{
    if (k < max) {
        snprintf(out[k].name, sizeof out[k].name, "%s", name);
        out[k].ndim = ndim;
        out[k].shape[0] = a, out[k].shape[1] = b, out[k].shape[2] = c;
    }
    return k + 1;
}

int qv_vision_dump_decls(const qv_vision *v, const qv_vision_input *in, qv_vision_dump_decl *out, int max)
{
    static const int64_t no_grid[3] = {0, 0, 0};
    const qv_vision_input none = {0, v->tile, v->tile, no_grid, NULL, NULL, NULL};
    if (!in)
        in = &none;
    int k = 0;
    const int64_t D = v->Dv, C = v->C;
    if (v->kind == QV_VISION_INTERNVIT) {
        const int64_t g = in->tile_h / v->ivit->patch, T = 1 + g * g, R = (g / 2) * (g / 2);
        k = decl(out, k, max, "vision.embeddings.out.sample0", 2, T, D, 0);
        k = decl(out, k, max, "vision.last_hidden_state", 3, in->n, T, D);
        k = decl(out, k, max, "projector.in.sample0", 2, R, 4 * D, 0);
        k = decl(out, k, max, "projector.out", 3, in->n, R, C);
    } else if (v->kind == QV_VISION_QWEN2VL) {
        int64_t P = 0, P0 = in->n ? qv_vision_unit_patches(v, in, 0) : 0;
        for (int64_t u = 0; u < in->n; u++)
            P += qv_vision_unit_patches(v, in, u);
        const int64_t mm = v->qvit->merge * v->qvit->merge;
        k = decl(out, k, max, "vision.patch_embed.out.sample0", 2, P0, D, 0);
        for (int64_t i = 0; i < v->qvit->n_layers; i++) {
            char name[64];
            snprintf(name, sizeof name, "vision.blocks.%lld.out.sample0", (long long)i);
            k = decl(out, k, max, name, 2, P0, D, 0);
            snprintf(name, sizeof name, "vision.blocks.%lld.out", (long long)i);
            k = decl(out, k, max, name, 2, P, D, 0);
        }
        k = decl(out, k, max, "vision.merger.out", 2, P / mm, C, 0);
    } else {
        const int64_t np = v->sig->grid * v->sig->grid;
        k = decl(out, k, max, "vision.embeddings.out.sample0", 2, np, D, 0);
        k = decl(out, k, max, "vision.encoder.out.sample0", 2, np, D, 0);
        k = decl(out, k, max, "projector.out.sample0", 2, np, C, 0);
        if (v->newline)
            k = decl(out, k, max, "image_newline", 1, C, 0, 0);
    }
    return k;
}
