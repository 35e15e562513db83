/* synth_plan.c — from an architecture row (synth_arch.c) to the exact tensor list of the real
 * checkpoint: names, shapes, parts and initialisation (synth.h).
 *
 * The tensor templates below are the only list of tensor names in the module. Each layout is a
 * sequence of blocks (a template array under a name prefix, emitted once or once per layer) in
 * the state_dict order of the reference classes (own parameters first, then submodules in
 * registration order), which decides how tensors fall into 5 GB shards. Names and shapes follow
 * MODELS.md §1.2 (Qwen2-VL), §1.10 (Qwen2.5-VL), §2.2 (LLaVA-OneVision) and fixtures README §2
 * (InternVL: InternViT, mlp1, Qwen2 / InternLM2 decoders; InternLM2 `wqkv` packs q, k, v rows
 * per KV group, (heads + 2 kv) x head_dim rows in all). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "synth.h"

/* ---- dimension symbols ---------------------------------------------------------------------- */

enum {
    S_ONE = 0, /* the literal multiplier */
    S_VH,      /* vision hidden */
    S_VI,      /* vision MLP width */
    S_VPOS,    /* learned vision positions */
    S_PATCH,   /* patch size */
    S_LH,      /* LLM hidden */
    S_LI,      /* LLM MLP width */
    S_LQ,      /* heads x head_dim */
    S_LKV,     /* kv_heads x head_dim */
    S_LQKV,    /* (heads + 2 kv_heads) x head_dim: InternLM2 wqkv rows */
    S_VOCAB
};

typedef struct dimspec {
    unsigned char sym, mul; /* value = mul x sym (S_ONE: mul itself) */
} dimspec;

/* When a template entry is present. */
enum { C_ALWAYS = 0, C_VIT_QKV_BIAS, C_VIT_QK_NORM, C_VIT_LN, C_UNTIED };

typedef struct tmpl {
    const char *name; /* after the block prefix */
    unsigned char cond, init, ndim;
    dimspec dims[5];
} tmpl;

#define D(s) {S_##s, 1}
#define DM(s, m) {S_##s, m}
#define DC(c) {S_ONE, c}
#define LIN QV_SYNTH_INIT_LINEAR
#define BIAS QV_SYNTH_INIT_BIAS
#define NORM QV_SYNTH_INIT_NORM
#define NORM_X6 QV_SYNTH_INIT_NORM_OUTLIER

/* ---- vision towers ------------------------------------------------------------------------ */

static const tmpl internvit_embed[] = {
    {"class_embedding", C_ALWAYS, QV_SYNTH_INIT_POS, 3, {DC(1), DC(1), D(VH)}},
    {"position_embedding", C_ALWAYS, QV_SYNTH_INIT_POS, 3, {DC(1), D(VPOS), D(VH)}},
    {"patch_embedding.weight", C_ALWAYS, LIN, 4, {D(VH), DC(3), D(PATCH), D(PATCH)}},
    {"patch_embedding.bias", C_ALWAYS, BIAS, 1, {D(VH)}},
};
static const tmpl internvit_layer[] = {
    {"ls1", C_ALWAYS, NORM, 1, {D(VH)}},
    {"ls2", C_ALWAYS, NORM, 1, {D(VH)}},
    {"attn.qkv.weight", C_ALWAYS, LIN, 2, {DM(VH, 3), D(VH)}},
    {"attn.qkv.bias", C_VIT_QKV_BIAS, BIAS, 1, {DM(VH, 3)}},
    {"attn.q_norm.weight", C_VIT_QK_NORM, NORM, 1, {D(VH)}},
    {"attn.k_norm.weight", C_VIT_QK_NORM, NORM, 1, {D(VH)}},
    {"attn.proj.weight", C_ALWAYS, LIN, 2, {D(VH), D(VH)}},
    {"attn.proj.bias", C_ALWAYS, BIAS, 1, {D(VH)}},
    {"mlp.fc1.weight", C_ALWAYS, LIN, 2, {D(VI), D(VH)}},
    {"mlp.fc1.bias", C_ALWAYS, BIAS, 1, {D(VI)}},
    {"mlp.fc2.weight", C_ALWAYS, LIN, 2, {D(VH), D(VI)}},
    {"mlp.fc2.bias", C_ALWAYS, BIAS, 1, {D(VH)}},
    {"norm1.weight", C_ALWAYS, NORM, 1, {D(VH)}},
    {"norm1.bias", C_VIT_LN, BIAS, 1, {D(VH)}},
    {"norm2.weight", C_ALWAYS, NORM, 1, {D(VH)}},
    {"norm2.bias", C_VIT_LN, BIAS, 1, {D(VH)}},
};

static const tmpl qwen2vl_embed[] = {
    {"patch_embed.proj.weight", C_ALWAYS, LIN, 5, {D(VH), DC(3), DC(2), D(PATCH), D(PATCH)}},
};
/* Qwen2-VL block: LayerNorms with bias, fc1/fc2 MLP; Qwen2.5-VL: RMSNorms, gated MLP with biases */
static const tmpl qwen2vl_layer[] = {
    {"norm1.weight", C_ALWAYS, NORM, 1, {D(VH)}},
    {"norm1.bias", C_VIT_LN, BIAS, 1, {D(VH)}},
    {"norm2.weight", C_ALWAYS, NORM, 1, {D(VH)}},
    {"norm2.bias", C_VIT_LN, BIAS, 1, {D(VH)}},
    {"attn.qkv.weight", C_ALWAYS, LIN, 2, {DM(VH, 3), D(VH)}},
    {"attn.qkv.bias", C_ALWAYS, BIAS, 1, {DM(VH, 3)}},
    {"attn.proj.weight", C_ALWAYS, LIN, 2, {D(VH), D(VH)}},
    {"attn.proj.bias", C_ALWAYS, BIAS, 1, {D(VH)}},
    {"mlp.fc1.weight", C_ALWAYS, LIN, 2, {D(VI), D(VH)}},
    {"mlp.fc1.bias", C_ALWAYS, BIAS, 1, {D(VI)}},
    {"mlp.fc2.weight", C_ALWAYS, LIN, 2, {D(VH), D(VI)}},
    {"mlp.fc2.bias", C_ALWAYS, BIAS, 1, {D(VH)}},
};
static const tmpl qwen2_5vl_layer[] = {
    {"norm1.weight", C_ALWAYS, NORM, 1, {D(VH)}},
    {"norm2.weight", C_ALWAYS, NORM, 1, {D(VH)}},
    {"attn.qkv.weight", C_ALWAYS, LIN, 2, {DM(VH, 3), D(VH)}},
    {"attn.qkv.bias", C_ALWAYS, BIAS, 1, {DM(VH, 3)}},
    {"attn.proj.weight", C_ALWAYS, LIN, 2, {D(VH), D(VH)}},
    {"attn.proj.bias", C_ALWAYS, BIAS, 1, {D(VH)}},
    {"mlp.gate_proj.weight", C_ALWAYS, LIN, 2, {D(VI), D(VH)}},
    {"mlp.gate_proj.bias", C_ALWAYS, BIAS, 1, {D(VI)}},
    {"mlp.up_proj.weight", C_ALWAYS, LIN, 2, {D(VI), D(VH)}},
    {"mlp.up_proj.bias", C_ALWAYS, BIAS, 1, {D(VI)}},
    {"mlp.down_proj.weight", C_ALWAYS, LIN, 2, {D(VH), D(VI)}},
    {"mlp.down_proj.bias", C_ALWAYS, BIAS, 1, {D(VH)}},
};

/* SigLIP (LLaVA-OneVision keeps 26 of 27 layers and stores post_layernorm, never used) */
static const tmpl siglip_embed[] = {
    {"embeddings.patch_embedding.weight", C_ALWAYS, LIN, 4, {D(VH), DC(3), D(PATCH), D(PATCH)}},
    {"embeddings.patch_embedding.bias", C_ALWAYS, BIAS, 1, {D(VH)}},
    {"embeddings.position_embedding.weight", C_ALWAYS, QV_SYNTH_INIT_POS, 2, {D(VPOS), D(VH)}},
};
static const tmpl siglip_layer[] = {
    {"self_attn.k_proj.weight", C_ALWAYS, LIN, 2, {D(VH), D(VH)}},
    {"self_attn.k_proj.bias", C_ALWAYS, BIAS, 1, {D(VH)}},
    {"self_attn.v_proj.weight", C_ALWAYS, LIN, 2, {D(VH), D(VH)}},
    {"self_attn.v_proj.bias", C_ALWAYS, BIAS, 1, {D(VH)}},
    {"self_attn.q_proj.weight", C_ALWAYS, LIN, 2, {D(VH), D(VH)}},
    {"self_attn.q_proj.bias", C_ALWAYS, BIAS, 1, {D(VH)}},
    {"self_attn.out_proj.weight", C_ALWAYS, LIN, 2, {D(VH), D(VH)}},
    {"self_attn.out_proj.bias", C_ALWAYS, BIAS, 1, {D(VH)}},
    {"layer_norm1.weight", C_ALWAYS, NORM, 1, {D(VH)}},
    {"layer_norm1.bias", C_ALWAYS, BIAS, 1, {D(VH)}},
    {"mlp.fc1.weight", C_ALWAYS, LIN, 2, {D(VI), D(VH)}},
    {"mlp.fc1.bias", C_ALWAYS, BIAS, 1, {D(VI)}},
    {"mlp.fc2.weight", C_ALWAYS, LIN, 2, {D(VH), D(VI)}},
    {"mlp.fc2.bias", C_ALWAYS, BIAS, 1, {D(VH)}},
    {"layer_norm2.weight", C_ALWAYS, NORM, 1, {D(VH)}},
    {"layer_norm2.bias", C_ALWAYS, BIAS, 1, {D(VH)}},
};
static const tmpl siglip_post[] = {
    {"post_layernorm.weight", C_ALWAYS, NORM, 1, {D(VH)}},
    {"post_layernorm.bias", C_ALWAYS, BIAS, 1, {D(VH)}},
};

/* ---- projectors --------------------------------------------------------------------------- */

/* InternVL mlp1: LayerNorm(4·VH) → Linear(4·VH→LH) → GELU → Linear(LH→LH) (pixel shuffle 0.5) */
static const tmpl internvl_mlp1[] = {
    {"0.weight", C_ALWAYS, NORM, 1, {DM(VH, 4)}},
    {"0.bias", C_ALWAYS, BIAS, 1, {DM(VH, 4)}},
    {"1.weight", C_ALWAYS, LIN, 2, {D(LH), DM(VH, 4)}},
    {"1.bias", C_ALWAYS, BIAS, 1, {D(LH)}},
    {"3.weight", C_ALWAYS, LIN, 2, {D(LH), D(LH)}},
    {"3.bias", C_ALWAYS, BIAS, 1, {D(LH)}},
};
/* PatchMerger: ln_q (LayerNorm; Qwen2.5-VL RMSNorm), 2x2 concat, Linear → GELU → Linear */
static const tmpl qwen2vl_merger[] = {
    {"ln_q.weight", C_ALWAYS, NORM, 1, {D(VH)}},
    {"ln_q.bias", C_VIT_LN, BIAS, 1, {D(VH)}},
    {"mlp.0.weight", C_ALWAYS, LIN, 2, {DM(VH, 4), DM(VH, 4)}},
    {"mlp.0.bias", C_ALWAYS, BIAS, 1, {DM(VH, 4)}},
    {"mlp.2.weight", C_ALWAYS, LIN, 2, {D(LH), DM(VH, 4)}},
    {"mlp.2.bias", C_ALWAYS, BIAS, 1, {D(LH)}},
};
static const tmpl llava_newline[] = {
    {"image_newline", C_ALWAYS, QV_SYNTH_INIT_UNIT, 1, {D(LH)}},
};
static const tmpl llava_projector[] = {
    {"mm_projector.0.weight", C_ALWAYS, LIN, 2, {D(LH), D(VH)}},
    {"mm_projector.0.bias", C_ALWAYS, BIAS, 1, {D(LH)}},
    {"mm_projector.2.weight", C_ALWAYS, LIN, 2, {D(LH), D(LH)}},
    {"mm_projector.2.bias", C_ALWAYS, BIAS, 1, {D(LH)}},
};

/* ---- language models -------------------------------------------------------------------- */

static const tmpl qwen2_embed[] = {{"embed_tokens.weight", C_ALWAYS, QV_SYNTH_INIT_EMBED, 2, {D(VOCAB), D(LH)}}};
static const tmpl qwen2_layer[] = {
    {"self_attn.q_proj.weight", C_ALWAYS, LIN, 2, {D(LQ), D(LH)}},
    {"self_attn.q_proj.bias", C_ALWAYS, BIAS, 1, {D(LQ)}},
    {"self_attn.k_proj.weight", C_ALWAYS, LIN, 2, {D(LKV), D(LH)}},
    {"self_attn.k_proj.bias", C_ALWAYS, BIAS, 1, {D(LKV)}},
    {"self_attn.v_proj.weight", C_ALWAYS, LIN, 2, {D(LKV), D(LH)}},
    {"self_attn.v_proj.bias", C_ALWAYS, BIAS, 1, {D(LKV)}},
    {"self_attn.o_proj.weight", C_ALWAYS, LIN, 2, {D(LH), D(LQ)}},
    {"mlp.gate_proj.weight", C_ALWAYS, LIN, 2, {D(LI), D(LH)}},
    {"mlp.up_proj.weight", C_ALWAYS, LIN, 2, {D(LI), D(LH)}},
    {"mlp.down_proj.weight", C_ALWAYS, LIN, 2, {D(LH), D(LI)}},
    {"input_layernorm.weight", C_ALWAYS, NORM_X6, 1, {D(LH)}},
    {"post_attention_layernorm.weight", C_ALWAYS, NORM_X6, 1, {D(LH)}},
};
static const tmpl qwen2_norm[] = {{"norm.weight", C_ALWAYS, NORM, 1, {D(LH)}}};
static const tmpl qwen2_head[] = {{"lm_head.weight", C_UNTIED, LIN, 2, {D(VOCAB), D(LH)}}};

static const tmpl internlm2_embed[] = {{"tok_embeddings.weight", C_ALWAYS, QV_SYNTH_INIT_EMBED, 2, {D(VOCAB), D(LH)}}};
static const tmpl internlm2_layer[] = {
    {"attention.wqkv.weight", C_ALWAYS, LIN, 2, {D(LQKV), D(LH)}},
    {"attention.wo.weight", C_ALWAYS, LIN, 2, {D(LH), D(LQ)}},
    {"feed_forward.w1.weight", C_ALWAYS, LIN, 2, {D(LI), D(LH)}},
    {"feed_forward.w3.weight", C_ALWAYS, LIN, 2, {D(LI), D(LH)}},
    {"feed_forward.w2.weight", C_ALWAYS, LIN, 2, {D(LH), D(LI)}},
    {"attention_norm.weight", C_ALWAYS, NORM_X6, 1, {D(LH)}},
    {"ffn_norm.weight", C_ALWAYS, NORM_X6, 1, {D(LH)}},
};
static const tmpl internlm2_head[] = {{"output.weight", C_UNTIED, LIN, 2, {D(VOCAB), D(LH)}}};

/* ---- layouts: blocks in state_dict order ------------------------------------------------- */

enum { R_ONCE = 0, R_VIT, R_LLM };

typedef struct block {
    const tmpl *t;
    size_t n;
    const char *prefix; /* "%d" = layer index for repeated blocks */
    unsigned char part, repeat;
} block;

#define BLK(arr, part, rep) ((block){arr, QV_ARRAY_LEN(arr), NULL, part, rep})
#define MAX_BLOCKS 10

static size_t layout_blocks(const qv_synth_arch *a, block *b)
{
    bool lm2 = a->llm.kind == QV_DECODER_INTERNLM2;
    const block llm_embed = lm2 ? BLK(internlm2_embed, QV_PART_LLM, R_ONCE)
                                : BLK(qwen2_embed, QV_PART_LLM, R_ONCE);
    const block llm_layer = lm2 ? BLK(internlm2_layer, QV_PART_LLM, R_LLM)
                                : BLK(qwen2_layer, QV_PART_LLM, R_LLM);
    const block llm_head = lm2 ? BLK(internlm2_head, QV_PART_LLM, R_ONCE)
                               : BLK(qwen2_head, QV_PART_LLM, R_ONCE);
    size_t n = 0;
#define ADD(blk, pfx)             \
    do {                          \
        b[n] = (blk);             \
        b[n++].prefix = (pfx);    \
    } while (0)
    switch (a->layout) {
    case QV_SYNTH_INTERNVL: /* InternVLChatModel: vision_model, language_model, mlp1 */
        ADD(BLK(internvit_embed, QV_PART_VISION, R_ONCE), "vision_model.embeddings.");
        ADD(BLK(internvit_layer, QV_PART_VISION, R_VIT), "vision_model.encoder.layers.%d.");
        ADD(llm_embed, "language_model.model.");
        ADD(llm_layer, "language_model.model.layers.%d.");
        ADD(BLK(qwen2_norm, QV_PART_LLM, R_ONCE), "language_model.model.");
        ADD(llm_head, "language_model.");
        ADD(BLK(internvl_mlp1, QV_PART_PROJECTOR, R_ONCE), "mlp1.");
        break;
    case QV_SYNTH_QWEN2_VL:
    case QV_SYNTH_QWEN2_5_VL: /* visual (patch_embed, blocks, merger), model, lm_head */
        ADD(BLK(qwen2vl_embed, QV_PART_VISION, R_ONCE), "visual.");
        if (a->layout == QV_SYNTH_QWEN2_VL)
            ADD(BLK(qwen2vl_layer, QV_PART_VISION, R_VIT), "visual.blocks.%d.");
        else
            ADD(BLK(qwen2_5vl_layer, QV_PART_VISION, R_VIT), "visual.blocks.%d.");
        ADD(BLK(qwen2vl_merger, QV_PART_PROJECTOR, R_ONCE), "visual.merger.");
        ADD(llm_embed, "model.");
        ADD(llm_layer, "model.layers.%d.");
        ADD(BLK(qwen2_norm, QV_PART_LLM, R_ONCE), "model.");
        ADD(llm_head, "");
        break;
    case QV_SYNTH_LLAVA_OV: /* model: image_newline (own parameter), Qwen2Model, tower, projector; lm_head */
        ADD(BLK(llava_newline, QV_PART_PROJECTOR, R_ONCE), "model.");
        ADD(llm_embed, "model.");
        ADD(llm_layer, "model.layers.%d.");
        ADD(BLK(qwen2_norm, QV_PART_LLM, R_ONCE), "model.");
        ADD(BLK(siglip_embed, QV_PART_VISION, R_ONCE), "model.vision_tower.vision_tower.vision_model.");
        ADD(BLK(siglip_layer, QV_PART_VISION, R_VIT),
            "model.vision_tower.vision_tower.vision_model.encoder.layers.%d.");
        ADD(BLK(siglip_post, QV_PART_VISION, R_ONCE), "model.vision_tower.vision_tower.vision_model.");
        ADD(BLK(llava_projector, QV_PART_PROJECTOR, R_ONCE), "model.");
        ADD(llm_head, "");
        break;
    case QV_SYNTH_TEXT:
        ADD(llm_embed, "model.");
        ADD(llm_layer, "model.layers.%d.");
        ADD(BLK(qwen2_norm, QV_PART_LLM, R_ONCE), "model.");
        ADD(llm_head, "");
        break;
    }
#undef ADD
    return n;
}

/* ---- dimensions ------------------------------------------------------------------------- */

static int64_t sym_value(const qv_synth_dims *d, int sym)
{
    const qv_synth_llm *l = &d->llm;
    switch (sym) {
    case S_VH: return d->vit.hidden;
    case S_VI: return d->vit.intermediate;
    case S_VPOS: return d->vit_positions;
    case S_PATCH: return d->vit.patch;
    case S_LH: return l->hidden;
    case S_LI: return l->intermediate;
    case S_LQ: return l->heads * l->head_dim;
    case S_LKV: return l->kv_heads * l->head_dim;
    case S_LQKV: return (l->heads + 2 * l->kv_heads) * l->head_dim;
    case S_VOCAB: return l->vocab;
    }
    return 1;
}

static bool cond_holds(const qv_synth_dims *d, int cond)
{
    switch (cond) {
    case C_VIT_QKV_BIAS: return d->vit.qkv_bias;
    case C_VIT_QK_NORM: return d->vit.qk_norm;
    case C_VIT_LN: return !d->vit.rms_norm;
    case C_UNTIED: return !d->llm.tie;
    }
    return true;
}

/* Divides a width by the testing factor; false when it does not divide exactly. */
static bool scaled(int64_t *v, int64_t div)
{
    if (*v % div)
        return false;
    *v /= div;
    return true;
}

static qv_status resolve_dims(const qv_synth_arch *a, const qv_synth_tok_ids *tok, int64_t layers, int64_t div,
                              qv_synth_dims *d)
{
    memset(d, 0, sizeof *d);
    d->vit = a->vit;
    d->llm = a->llm;
    d->scale_div = div;
    if (layers < 0 || layers > a->llm.layers)
        return qv_fail(QV_ERR_INVALID, "%s: --layers %lld is out of range (1..%lld)", a->name, (long long)layers,
                       (long long)a->llm.layers);
    if (layers)
        d->llm.layers = layers;
    if (div < 1 || div > 64)
        return qv_fail(QV_ERR_INVALID, "%s: --scale-dims %lld is out of range (1..64)", a->name, (long long)div);
    bool has_vit = a->layout != QV_SYNTH_TEXT;
    int vit_head = has_vit ? (int)(a->vit.hidden / a->vit.heads) : 0;
    int64_t vhd = vit_head;
    bool ok = scaled(&d->llm.hidden, div) && scaled(&d->llm.intermediate, div) && scaled(&d->llm.head_dim, div);
    if (has_vit)
        ok = ok && scaled(&d->vit.hidden, div) && scaled(&d->vit.intermediate, div) && scaled(&vhd, div);
    static const int mrope[3] = {16, 24, 24}; /* MODELS.md §1.1: sums to head_dim / 2 */
    bool qwen_vl = a->layout == QV_SYNTH_QWEN2_VL || a->layout == QV_SYNTH_QWEN2_5_VL;
    for (int i = 0; i < 3; i++) {
        ok = ok && (!qwen_vl || mrope[i] % div == 0);
        d->mrope_section[i] = mrope[i] / (int)div;
    }
    if (!ok)
        return qv_fail(QV_ERR_INVALID, "%s: --scale-dims %lld does not divide every width of the model", a->name,
                       (long long)div);
    d->llm.vocab = (a->llm.vocab + div - 1) / div;
    if (d->llm.vocab < tok->n_tokens)
        return qv_fail(QV_ERR_INVALID, "%s: --scale-dims %lld leaves vocab_size %lld, below the tokenizer's %lld ids",
                       a->name, (long long)div, (long long)d->llm.vocab, (long long)tok->n_tokens);
    if (has_vit && !qwen_vl) {
        int64_t side = a->vit.image / a->vit.patch;
        d->vit_positions = side * side + (a->layout == QV_SYNTH_INTERNVL ? 1 : 0); /* + CLS */
    }
    return QV_OK;
}

/* ---- the plan ----------------------------------------------------------------------------- */

static void set_init(qv_synth_tensor *t, const qv_synth_dims *d)
{
    int64_t fan_in = 1;
    for (int i = 1; i < t->ndim; i++)
        fan_in *= t->shape[i];
    t->mean = 0.0f;
    t->outliers = 0;
    switch (t->init) {
    case QV_SYNTH_INIT_LINEAR: t->std = (float)(1.0 / sqrt((double)fan_in)); break;
    case QV_SYNTH_INIT_BIAS: t->std = 0.05f; break;
    case QV_SYNTH_INIT_NORM_OUTLIER: t->outliers = 4; /* fall through */
    case QV_SYNTH_INIT_NORM: t->mean = 1.0f, t->std = 0.1f; break;
    case QV_SYNTH_INIT_EMBED: t->std = d->llm.tie ? (float)(1.0 / sqrt((double)d->llm.hidden)) : 1.0f; break;
    case QV_SYNTH_INIT_POS: t->std = 0.5f; break;
    case QV_SYNTH_INIT_UNIT: t->std = 1.0f; break;
    }
}

static qv_status plan_add(qv_synth_plan *p, size_t *cap, const block *b, const tmpl *tm, int layer)
{
    if (p->n == *cap) {
        size_t nc = *cap ? 2 * *cap : 256;
        qv_synth_tensor *nt = qv_realloc(p->t, nc * sizeof *nt, "synth plan");
        if (!nt)
            return QV_ERR_NOMEM;
        p->t = nt;
        *cap = nc;
    }
    qv_synth_tensor *t = &p->t[p->n];
    memset(t, 0, sizeof *t);
    char prefix[160];
    if (b->repeat == R_ONCE)
        snprintf(prefix, sizeof prefix, "%s", b->prefix);
    else
        snprintf(prefix, sizeof prefix, b->prefix, layer);
    t->name = qv_asprintf("%s%s", prefix, tm->name);
    if (!t->name)
        return QV_ERR_NOMEM;
    p->n++;
    t->ndim = tm->ndim;
    t->numel = 1;
    for (int i = 0; i < tm->ndim; i++) {
        t->shape[i] = tm->dims[i].sym == S_ONE ? tm->dims[i].mul : tm->dims[i].mul * sym_value(&p->dims, tm->dims[i].sym);
        t->numel *= t->shape[i];
    }
    t->part = (qv_part)b->part;
    t->init = (qv_synth_init)tm->init;
    set_init(t, &p->dims);
    p->params[t->part] += t->numel;
    p->params_total += t->numel;
    p->bytes += (uint64_t)t->numel * 2;
    return QV_OK;
}

qv_status qv_synth_plan_build(const qv_synth_arch *a, int64_t layers, int64_t scale_div, qv_synth_plan **out)
{
    *out = NULL;
    qv_synth_plan *p = qv_calloc(1, sizeof *p, "synth plan");
    if (!p)
        return QV_ERR_NOMEM;
    p->arch = a;
    p->tok = qv_synth_tok_find(a->tokenizer);
    qv_status st = p->tok ? QV_OK : qv_fail(QV_ERR_INTERNAL, "%s: no tokenizer family %s", a->name, a->tokenizer);
    if (st == QV_OK)
        st = resolve_dims(a, p->tok, layers, scale_div, &p->dims);
    block blocks[MAX_BLOCKS];
    size_t nb = st == QV_OK ? layout_blocks(a, blocks) : 0, cap = 0;
    for (size_t bi = 0; bi < nb && st == QV_OK; bi++) {
        const block *b = &blocks[bi];
        int64_t reps = b->repeat == R_VIT ? p->dims.vit.layers : b->repeat == R_LLM ? p->dims.llm.layers : 1;
        for (int64_t l = 0; l < reps && st == QV_OK; l++)
            for (size_t k = 0; k < b->n && st == QV_OK; k++)
                if (cond_holds(&p->dims, b->t[k].cond))
                    st = plan_add(p, &cap, b, &b->t[k], (int)l);
    }
    if (st != QV_OK) {
        qv_synth_plan_free(p);
        return st;
    }
    *out = p;
    return QV_OK;
}

void qv_synth_plan_free(qv_synth_plan *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++)
        qv_free(p->t[i].name);
    qv_free(p->t);
    qv_free(p);
}
