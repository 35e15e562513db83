/* model.c — the decoder model handle: the tensor-name table per decoder kind, opening and
 * validating a checkpoint, loading / releasing / modifying one layer's weights, embeddings and
 * the batch context (llm.h; fixtures README §2 for the names and InternLM2's wqkv layout). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../../simd/fp.h"
#include "../core/fsutil.h"
#include "../family/family.h"
#include "../nn/matmul.h"
#include "../nn/norm.h"
#include "llm.h"

/* ---- names: one table drives every tensor the decoder reads -------------------------------- */

typedef struct kind_names {
    const char *embed, *final_norm, *head;   /* relative to the model root / head root */
    const char *lin[QV_LIN_COUNT];           /* relative to the layer ("self_attn.q_proj") */
    const char *norm[QV_LLM_NORM_COUNT];
    bool bias_lin[QV_LIN_COUNT];             /* which linears carry a bias when the config says so */
} kind_names;

static const kind_names names_qwen2_llama[2] = {
    {/* Qwen2: q/k/v biases */
     "embed_tokens", "norm", "lm_head",
     {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", NULL, "self_attn.o_proj", "mlp.gate_proj",
      "mlp.up_proj", "mlp.down_proj"},
     {"input_layernorm", "post_attention_layernorm"},
     {true, true, true, false, false, false, false, false}},
    {/* Llama: attention_bias adds q/k/v/o biases */
     "embed_tokens", "norm", "lm_head",
     {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", NULL, "self_attn.o_proj", "mlp.gate_proj",
      "mlp.up_proj", "mlp.down_proj"},
     {"input_layernorm", "post_attention_layernorm"},
     {true, true, true, false, true, false, false, false}},
};

static const kind_names names_internlm2 = {
    "tok_embeddings", "norm", "output",
    {NULL, NULL, NULL, "attention.wqkv", "attention.wo", "feed_forward.w1", "feed_forward.w3", "feed_forward.w2"},
    {"attention_norm", "ffn_norm"},
    {false, false, false, true, true, false, false, false}};

static const kind_names *names_of(const qv_llm *m)
{
    switch (m->c->kind) {
    case QV_DECODER_INTERNLM2: return &names_internlm2;
    case QV_DECODER_LLAMA: return &names_qwen2_llama[1];
    default: return &names_qwen2_llama[0];
    }
}

const char *qv_llm_lin_suffix(const qv_llm *m, qv_llm_lin lin)
{
    return (unsigned)lin < QV_LIN_COUNT ? names_of(m)->lin[lin] : NULL;
}

const char *qv_llm_norm_suffix(const qv_llm *m, qv_llm_norm nrm)
{
    return (unsigned)nrm < QV_LLM_NORM_COUNT ? names_of(m)->norm[nrm] : NULL;
}

bool qv_llm_has_lin(const qv_llm *m, qv_llm_lin lin) { return qv_llm_lin_suffix(m, lin) != NULL; }

const char *qv_llm_lin_name(const qv_llm *m, int64_t layer, qv_llm_lin lin, char *buf, size_t n)
{
    const char *s = qv_llm_lin_suffix(m, lin);
    snprintf(buf, n, "%slayers.%lld.%s", m->model_root, (long long)layer, s ? s : "?");
    return buf;
}

const char *qv_llm_norm_name(const qv_llm *m, int64_t layer, qv_llm_norm nrm, char *buf, size_t n)
{
    snprintf(buf, n, "%slayers.%lld.%s", m->model_root, (long long)layer, qv_llm_norm_suffix(m, nrm));
    return buf;
}

bool qv_llm_lin_hooked(const qv_llm *m, qv_llm_lin lin)
{
    static const char *const keys[] = {"wo", "w2", "down_proj", "o_proj", "v_proj", "gate_proj", "up_proj", "w1", "w3"};
    const char *s = qv_llm_lin_suffix(m, lin);
    if (!s)
        return false;
    for (size_t i = 0; i < QV_ARRAY_LEN(keys); i++)
        if (strstr(s, keys[i]))
            return true;
    return false;
}

int64_t qv_llm_lin_out(const qv_llm *m, qv_llm_lin lin)
{
    if (!qv_llm_has_lin(m, lin))
        return 0;
    switch (lin) {
    case QV_LIN_Q: return m->H * m->d;
    case QV_LIN_K:
    case QV_LIN_V: return m->KV * m->d;
    case QV_LIN_QKV: return (m->H + 2 * m->KV) * m->d;
    case QV_LIN_O:
    case QV_LIN_DOWN: return m->C;
    default: return m->I;
    }
}

int64_t qv_llm_lin_in(const qv_llm *m, qv_llm_lin lin)
{
    if (!qv_llm_has_lin(m, lin))
        return 0;
    switch (lin) {
    case QV_LIN_O: return m->H * m->d;
    case QV_LIN_DOWN: return m->I;
    default: return m->C;
    }
}

/* ---- open / close ------------------------------------------------------------------------- */

static qv_status tensor_shaped(const qv_llm *m, const char *name, int ndim, int64_t a, int64_t b, qv_tensor *t)
{
    const int64_t shape[2] = {a, b};
    return qv_checkpoint_get_shaped(m->ck, name, ndim, shape, t);
}

/* Where the decoder lives inside the checkpoint: the family's layouts in order (hub,
 * InternVL's language_model.*, transformers 5's model.language_model.*, ...); a miss names the
 * family's first. */
static qv_status find_root(qv_llm *m)
{
    const kind_names *nm = names_of(m);
    const qv_llm_root *roots = qv_family_get(m->cfg.family)->llm_roots;
    char name[512];
    for (size_t r = 0; roots[r].model; r++) {
        snprintf(name, sizeof name, "%s%s.weight", roots[r].model, nm->embed);
        if (qv_checkpoint_find(m->ck, name, NULL)) {
            m->model_root = roots[r].model;
            m->head_root = roots[r].head;
            return QV_OK;
        }
    }
    return qv_fail(QV_ERR_FORMAT, "%s: tensor %s%s.weight not found", m->ck->path, roots[0].model, nm->embed);
}

/* Checks every tensor the decoder reads, so that a missing or misshapen tensor is reported
 * before any work starts. */
static qv_status validate_layers(qv_llm *m)
{
    const kind_names *nm = names_of(m);
    char name[512], mod[448];
    qv_tensor t;
    for (int64_t i = 0; i < m->c->n_layers; i++) {
        for (int l = 0; l < QV_LIN_COUNT; l++) {
            if (!nm->lin[l])
                continue;
            qv_llm_lin_name(m, i, (qv_llm_lin)l, mod, sizeof mod);
            snprintf(name, sizeof name, "%s.weight", mod);
            QV_TRY(tensor_shaped(m, name, 2, qv_llm_lin_out(m, (qv_llm_lin)l), qv_llm_lin_in(m, (qv_llm_lin)l), &t));
            if (m->has_bias[l]) {
                snprintf(name, sizeof name, "%s.bias", mod);
                QV_TRY(tensor_shaped(m, name, 1, qv_llm_lin_out(m, (qv_llm_lin)l), 0, &t));
            }
        }
        for (int n = 0; n < QV_LLM_NORM_COUNT; n++) {
            qv_llm_norm_name(m, i, (qv_llm_norm)n, mod, sizeof mod);
            snprintf(name, sizeof name, "%s.weight", mod);
            QV_TRY(tensor_shaped(m, name, 1, m->C, 0, &t));
        }
    }
    return QV_OK;
}

static qv_status setup_rope(qv_llm *m)
{
    const qv_llm_config *c = m->c;
    qv_rope_params *r = &m->rope;
    memset(r, 0, sizeof *r);
    r->dim = m->d;
    r->theta = c->rope_theta;
    r->factor = c->rope_factor;
    r->max_positions = c->max_positions;
    switch (c->rope_kind) {
    case QV_ROPE_DEFAULT: break;
    case QV_ROPE_LINEAR: r->scaling = QV_ROPE_SCALING_LINEAR; break;
    case QV_ROPE_DYNAMIC: r->scaling = QV_ROPE_SCALING_DYNAMIC_NTK; break;
    case QV_ROPE_MROPE:
        memcpy(r->mrope_section, c->mrope_section, sizeof r->mrope_section);
        if (r->mrope_section[0] + r->mrope_section[1] + r->mrope_section[2] != m->d / 2)
            return qv_fail(QV_ERR_INVALID, "%s: mrope_section [%d,%d,%d] does not add up to head_dim/2 = %lld",
                           m->cfg.path, c->mrope_section[0], c->mrope_section[1], c->mrope_section[2],
                           (long long)(m->d / 2));
        break;
    default:
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: rope_scaling type llama3 is not supported by the decoder "
                       "(default, linear, dynamic, mrope)", m->cfg.path);
    }
    return QV_OK;
}

qv_status qv_llm_open(const char *model_dir, const qv_llm_opts *opts, qv_llm **out)
{
    *out = NULL;
    qv_dtype dt = opts ? opts->compute : QV_F32;
    if (dt != QV_F32 && dt != QV_BF16)
        return qv_fail(QV_ERR_INVALID, "%s: compute dtype %s is not supported (F32, BF16)", model_dir,
                       qv_dtype_name(dt));
    if (dt == QV_BF16 && !qv_matmul_bf16_native())
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: BF16 compute needs native BF16 matmuls (AVX512-BF16 or AMX); "
                       "oneDNN runs %s here, use F32", model_dir, qv_matmul_isa_name());
    qv_llm *m = qv_calloc(1, sizeof *m, "model");
    if (!m)
        return QV_ERR_NOMEM;
    qv_status st = qv_model_config_load(model_dir, &m->cfg);
    if (st != QV_OK) {
        qv_free(m);
        return st;
    }
    m->c = &m->cfg.llm;
    m->dt = dt;
    m->dir = qv_strdup(model_dir);
    if (!m->dir) {
        st = QV_ERR_NOMEM;
        goto fail;
    }
    const qv_llm_config *c = m->c;
    m->C = c->hidden, m->H = c->n_heads, m->KV = c->n_kv_heads, m->d = c->head_dim, m->I = c->intermediate;
    m->V = c->vocab;
    m->eps = (float)c->rms_eps;
    m->attn_scale = (float)(1.0 / sqrt((double)m->d));
    QV_CHECK(st = setup_rope(m), fail);
    QV_CHECK(st = qv_checkpoint_open(model_dir, &m->ck), fail);
    const kind_names *nm = names_of(m);
    for (int l = 0; l < QV_LIN_COUNT; l++)
        m->has_bias[l] = c->qkv_bias && nm->bias_lin[l];
    QV_CHECK(st = find_root(m), fail);
    char name[512];
    snprintf(name, sizeof name, "%s%s.weight", m->model_root, nm->embed);
    QV_CHECK(st = tensor_shaped(m, name, 2, m->V, m->C, &m->embed), fail);
    snprintf(name, sizeof name, "%s%s.weight", m->head_root, nm->head);
    if (!qv_checkpoint_find(m->ck, name, NULL) && c->tie_embeddings)
        m->head = m->embed;
    else
        QV_CHECK(st = tensor_shaped(m, name, 2, m->V, m->C, &m->head), fail);
    snprintf(name, sizeof name, "%s%s.weight", m->model_root, nm->final_norm);
    qv_tensor nt;
    QV_CHECK(st = tensor_shaped(m, name, 1, m->C, 0, &nt), fail);
    m->final_norm = qv_malloc((size_t)m->C * sizeof(float), "final norm");
    if (!m->final_norm) {
        st = QV_ERR_NOMEM;
        goto fail;
    }
    QV_CHECK(st = qv_convert(m->final_norm, QV_F32, nt.data, nt.dtype, (size_t)m->C), fail);
    QV_CHECK(st = validate_layers(m), fail);
    *out = m;
    return QV_OK;
fail:
    qv_llm_close(m);
    return st;
}

qv_status qv_llm_synthetic(const qv_llm_config *cfg, qv_dtype dt, qv_llm **out)
{
    *out = NULL;
    if (dt == QV_BF16 && !qv_matmul_bf16_native())
        return qv_fail(QV_ERR_UNSUPPORTED, "BF16 compute needs native BF16 matmuls (AVX512-BF16 or AMX); oneDNN runs "
                       "%s here", qv_matmul_isa_name());
    if (cfg->hidden <= 0 || cfg->n_heads <= 0 || cfg->n_kv_heads <= 0 || cfg->head_dim <= 0 || cfg->head_dim % 2 ||
        cfg->n_heads % cfg->n_kv_heads || cfg->intermediate <= 0)
        return qv_fail(QV_ERR_INVALID, "synthetic decoder: inconsistent dimensions");
    qv_llm *m = qv_calloc(1, sizeof *m, "model");
    if (!m)
        return QV_ERR_NOMEM;
    m->cfg.llm = *cfg;
    m->c = &m->cfg.llm;
    m->dt = dt;
    m->dir = qv_strdup("(synthetic)");
    m->C = cfg->hidden, m->H = cfg->n_heads, m->KV = cfg->n_kv_heads, m->d = cfg->head_dim, m->I = cfg->intermediate;
    m->V = cfg->vocab;
    m->eps = (float)cfg->rms_eps;
    m->attn_scale = (float)(1.0 / sqrt((double)m->d));
    m->model_root = "model.";
    m->head_root = "";
    m->final_norm = qv_malloc((size_t)m->C * sizeof(float), "final norm");
    qv_status st = m->dir && m->final_norm ? setup_rope(m) : QV_ERR_NOMEM;
    if (st != QV_OK) {
        qv_llm_close(m);
        return st;
    }
    for (int64_t c = 0; c < m->C; c++)
        m->final_norm[c] = 1.0f;
    const kind_names *nm = names_of(m);
    for (int l = 0; l < QV_LIN_COUNT; l++)
        m->has_bias[l] = cfg->qkv_bias && nm->bias_lin[l];
    *out = m;
    return QV_OK;
}

void qv_llm_close(qv_llm *m)
{
    if (!m)
        return;
    qv_checkpoint_close(m->ck);
    qv_model_config_free(&m->cfg);
    qv_free(m->final_norm);
    qv_free(m->dir);
    qv_free(m);
}

/* ---- layers ------------------------------------------------------------------------------- */

/* dst (F32) ← src of any float dtype, n elements, in parallel. */
static qv_status widen(float *dst, const void *src, qv_dtype dt, size_t n)
{
    if (dt == QV_BF16) {
        const uint16_t *s = src;
#pragma omp parallel for schedule(static) if (n >= 65536)
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + i, 2);
            dst[i] = qv_bf16_to_f32(h);
        }
        return QV_OK;
    }
    if (dt == QV_F32) {
        memcpy(dst, src, n * sizeof *dst);
        return QV_OK;
    }
    return qv_convert(dst, QV_F32, src, dt, n);
}

static qv_status to_compute(const qv_llm *m, void *dst, const float *src, size_t n)
{
    if (m->dt == QV_F32) {
        memcpy(dst, src, n * sizeof(float));
        return QV_OK;
    }
    uint16_t *d = dst;
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (size_t i = 0; i < n; i++)
        d[i] = qv_f32_to_bf16(src[i]);
    return QV_OK;
}

qv_status qv_llm_layer_load(qv_llm *m, int64_t i, qv_llm_layer *layer)
{
    memset(layer, 0, sizeof *layer);
    layer->index = i;
    layer->w.dt = m->dt;
    if (!m->ck)
        return qv_fail(QV_ERR_INVALID, "%s: no checkpoint to load layers from", m->dir);
    if (i < 0 || i >= m->c->n_layers)
        return qv_fail(QV_ERR_INVALID, "%s: layer %lld out of range (%lld layers)", m->dir, (long long)i,
                       (long long)m->c->n_layers);
    char mod[448], name[512];
    /* norms and biases: small, always F32 */
    size_t n_small = (size_t)(QV_LLM_NORM_COUNT * m->C);
    for (int l = 0; l < QV_LIN_COUNT; l++)
        if (m->has_bias[l])
            n_small += (size_t)qv_llm_lin_out(m, (qv_llm_lin)l);
    layer->small = qv_malloc(n_small * sizeof(float), "layer norms and biases");
    if (!layer->small)
        return QV_ERR_NOMEM;
    float *p = layer->small;
    qv_status st = QV_OK;
    qv_tensor t;
    for (int n = 0; n < QV_LLM_NORM_COUNT; n++) {
        qv_llm_norm_name(m, i, (qv_llm_norm)n, mod, sizeof mod);
        snprintf(name, sizeof name, "%s.weight", mod);
        QV_CHECK(st = tensor_shaped(m, name, 1, m->C, 0, &t), fail);
        QV_CHECK(st = widen(p, t.data, t.dtype, (size_t)m->C), fail);
        layer->w.norm[n] = p;
        p += m->C;
    }
    for (int l = 0; l < QV_LIN_COUNT; l++) {
        if (!qv_llm_has_lin(m, (qv_llm_lin)l))
            continue;
        int64_t o = qv_llm_lin_out(m, (qv_llm_lin)l), in = qv_llm_lin_in(m, (qv_llm_lin)l);
        qv_llm_lin_name(m, i, (qv_llm_lin)l, mod, sizeof mod);
        if (m->has_bias[l]) {
            snprintf(name, sizeof name, "%s.bias", mod);
            QV_CHECK(st = tensor_shaped(m, name, 1, o, 0, &t), fail);
            QV_CHECK(st = widen(p, t.data, t.dtype, (size_t)o), fail);
            layer->w.bias[l] = p;
            p += o;
        }
        snprintf(name, sizeof name, "%s.weight", mod);
        QV_CHECK(st = tensor_shaped(m, name, 2, o, in, &layer->src[l]), fail);
        if (layer->src[l].dtype == m->dt) {
            layer->w.w[l] = layer->src[l].data;
            continue;
        }
        size_t n = (size_t)(o * in);
        layer->own[l] = qv_aligned_alloc(64, n * qv_dtype_size(m->dt), "layer weights");
        if (!layer->own[l]) {
            st = QV_ERR_NOMEM;
            goto fail;
        }
        if (m->dt == QV_F32) {
            QV_CHECK(st = widen(layer->own[l], layer->src[l].data, layer->src[l].dtype, n), fail);
        } else {
            QV_CHECK(st = qv_convert(layer->own[l], QV_BF16, layer->src[l].data, layer->src[l].dtype, n), fail);
        }
        qv_checkpoint_release(m->ck, &layer->src[l]); /* the copy is what we read from now on */
        layer->w.w[l] = layer->own[l];
    }
    if (m->layer_hook)
        QV_CHECK(st = m->layer_hook(m->layer_hook_ctx, m, layer), fail);
    return QV_OK;
fail:
    qv_llm_layer_release(m, layer);
    return st;
}

void qv_llm_layer_release(qv_llm *m, qv_llm_layer *layer)
{
    if (!layer)
        return;
    for (int l = 0; l < QV_LIN_COUNT; l++) {
        if (layer->src[l].data && m)
            qv_checkpoint_release(m->ck, &layer->src[l]);
        qv_free(layer->own[l]);
    }
    for (int n = 0; n < QV_LLM_NORM_COUNT; n++)
        qv_free(layer->norm_own[n]);
    qv_free(layer->small);
    memset(layer, 0, sizeof *layer);
}

qv_status qv_llm_layer_set(qv_llm *m, qv_llm_layer *layer, qv_llm_lin lin, const float *w, const float *bias)
{
    if (!qv_llm_has_lin(m, lin))
        return qv_fail(QV_ERR_INVALID, "%s: this decoder has no linear %d", m->dir, (int)lin);
    size_t n = (size_t)(qv_llm_lin_out(m, lin) * qv_llm_lin_in(m, lin));
    if (w) {
        if (!layer->own[lin]) {
            layer->own[lin] = qv_aligned_alloc(64, n * qv_dtype_size(m->dt), "modified layer weights");
            if (!layer->own[lin])
                return QV_ERR_NOMEM;
        }
        QV_TRY(to_compute(m, layer->own[lin], w, n));
        layer->w.w[lin] = layer->own[lin];
    }
    if (bias) {
        if (!m->has_bias[lin] || !layer->w.bias[lin])
            return qv_fail(QV_ERR_INVALID, "%s: linear %s has no bias", m->dir, qv_llm_lin_suffix(m, lin));
        memcpy((float *)layer->w.bias[lin], bias, (size_t)qv_llm_lin_out(m, lin) * sizeof(float));
    }
    return QV_OK;
}

qv_status qv_llm_layer_set_norm(qv_llm *m, qv_llm_layer *layer, qv_llm_norm nrm, const float *w)
{
    if ((unsigned)nrm >= QV_LLM_NORM_COUNT || !layer->w.norm[nrm])
        return qv_fail(QV_ERR_INVALID, "%s: layer %lld has no norm %d", m->dir, (long long)layer->index, (int)nrm);
    memcpy((float *)layer->w.norm[nrm], w, (size_t)m->C * sizeof(float));
    return QV_OK;
}

qv_status qv_llm_layer_get(const qv_llm *m, const qv_llm_layer *layer, qv_llm_lin lin, float *dst)
{
    if (!layer->w.w[lin])
        return qv_fail(QV_ERR_INVALID, "%s: layer %lld has no linear %s", m->dir, (long long)layer->index,
                       qv_llm_lin_suffix(m, lin) ? qv_llm_lin_suffix(m, lin) : "?");
    size_t n = (size_t)(qv_llm_lin_out(m, lin) * qv_llm_lin_in(m, lin));
    return widen(dst, layer->w.w[lin], layer->w.dt, n);
}

/* ---- embeddings, final norm --------------------------------------------------------------- */

qv_status qv_llm_embed(const qv_llm *m, const int64_t *ids, int64_t n, float *out)
{
    if (!m->embed.data)
        return qv_fail(QV_ERR_INVALID, "%s: no token embedding", m->dir);
    for (int64_t r = 0; r < n; r++)
        if (ids[r] < 0 || ids[r] >= m->V)
            return qv_fail(QV_ERR_INVALID, "token id %lld at position %lld is outside the vocabulary [0, %lld)",
                           (long long)ids[r], (long long)r, (long long)m->V);
    /* the dtype was checked (F32/F16/BF16) when the model was opened, so widening cannot fail */
    const size_t es = qv_dtype_size(m->embed.dtype);
#pragma omp parallel for schedule(static) if (n * m->C >= 65536)
    for (int64_t r = 0; r < n; r++)
        (void)widen(out + r * m->C, (const char *)m->embed.data + (size_t)(ids[r] * m->C) * es, m->embed.dtype,
                    (size_t)m->C);
    return QV_OK;
}

void qv_llm_final_norm(const qv_llm *m, const float *hidden, int64_t n, float *out)
{
    qv_rmsnorm(out, hidden, m->final_norm, n, m->C, m->eps);
}

/* ---- batch context ------------------------------------------------------------------------ */

qv_status qv_llm_ctx_init(const qv_llm *m, qv_llm_ctx *ctx, int64_t B, int64_t L, const uint8_t *mask,
                          const int64_t *pos, const int64_t *mrope_pos)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->B = B, ctx->L = L, ctx->mask = mask, ctx->owned = true, ctx->half = m->d / 2;
    size_t n;
    if (!qv_mul_size((size_t)(B * L), (size_t)(m->d / 2), &n))
        return qv_fail(QV_ERR_NOMEM, "rotary tables: size overflows");
    ctx->cos = qv_malloc(n * sizeof(float) + 1, "rotary tables");
    ctx->sin = qv_malloc(n * sizeof(float) + 1, "rotary tables");
    if (!ctx->cos || !ctx->sin) {
        qv_llm_ctx_free(ctx);
        return QV_ERR_NOMEM;
    }
    const int64_t half = m->d / 2;
    for (int64_t b = 0; b < B; b++) {
        const int64_t *p1 = pos ? pos + b * L : NULL;
        const int64_t *p3[3] = {NULL, NULL, NULL};
        if (mrope_pos)
            for (int s = 0; s < 3; s++)
                p3[s] = mrope_pos + (s * B + b) * L;
        qv_status st = qv_rope_tables(&m->rope, L, L, p1, mrope_pos ? p3 : NULL, ctx->cos + b * L * half,
                                      ctx->sin + b * L * half);
        if (st != QV_OK) {
            qv_llm_ctx_free(ctx);
            return st;
        }
    }
    return QV_OK;
}

void qv_llm_ctx_slice(const qv_llm_ctx *ctx, int64_t b0, int64_t nb, qv_llm_ctx *view)
{
    const int64_t off = b0 * ctx->L * ctx->half;
    *view = *ctx;
    view->B = nb;
    view->owned = false;
    view->mask = ctx->mask ? ctx->mask + b0 * ctx->L : NULL;
    view->cos = ctx->cos + off;
    view->sin = ctx->sin + off;
}

void qv_llm_ctx_free(qv_llm_ctx *ctx)
{
    if (!ctx)
        return;
    if (ctx->owned) {
        qv_free(ctx->cos);
        qv_free(ctx->sin);
    }
    memset(ctx, 0, sizeof *ctx);
}
