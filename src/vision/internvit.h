/* internvit.h — the InternViT vision tower of InternVL2 / InternVL3 (fixtures README §2, §6;
 * ALGORITHMS.md §8.1; MODELS.md §3.1, §3.4). Private to src/vision; vision.h is the public face.
 *
 * Per tile [3, H, W] (normalised pixels):
 *   1. patch embedding: Conv2d(3→D, kernel = stride = p, bias) as one matmul over the
 *      (H/p)·(W/p) patches, each a row of 3·p·p values in (c, ky, kx) order;
 *   2. CLS: row 0 = class_embedding, rows 1.. = patches in raster order;
 *   3. + position embedding: row 0 takes position 0; the patch rows take the learned G×G grid
 *      (G = image_size/p) resampled to (H/p)×(W/p) with PyTorch's F.interpolate(mode='bicubic',
 *      align_corners=False) (A = −0.75, edge-clamped taps) — an exact copy at the native size;
 *   4. the first n_run encoder layers (vit_block.h: LayerNorm or RMSNorm, qkv with optional bias,
 *      optional qk-normalisation, layer scales ls1/ls2, GELU MLP). select_layer −1 runs all of
 *      them (last_hidden_state); select_layer k ≥ 0 runs k, −k runs n_layers + 1 − k (the
 *      reference's hidden_states[select_layer]).
 * Checkpoint layouts: the remote-code one (`vision_model.embeddings.class_embedding`,
 * `vision_model.encoder.layers.{i}.attn.qkv`, `ls1`, `norm1`, ...) and transformers' `-hf` one
 * (`[model.]vision_tower.embeddings.cls_token`, `encoder.layer.{i}.attention.{q,k,v}_proj`,
 * `lambda_1`, `layernorm_before`, ...), told apart by which class-token tensor exists. */
#ifndef QV_VISION_INTERNVIT_H
#define QV_VISION_INTERNVIT_H

#include "vit_block.h"

typedef struct qv_internvit {
    const qv_checkpoint *ck;       /* borrowed */
    qv_vit_dims dm;
    int64_t patch, grid;           /* patch size, G = image_size / patch */
    int64_t n_layers, n_run;       /* layers in the checkpoint, layers run (select_layer) */
    char root[64];                 /* "vision_model." / "model.vision_tower." / "vision_tower." */
    const char *layer_fmt;         /* "encoder.layers.%lld." or "encoder.layer.%lld." */
    qv_vit_names names;
    float *patch_w;                /* [D, 3·p·p] F32 (widened) — small */
    void *patch_w_dt;              /* the same in the compute dtype (== patch_w in F32 mode) */
    float *patch_b;                /* [D] */
    float *cls;                    /* [D] */
    float *pos;                    /* [1 + G·G, D] */
} qv_internvit;

/* Opens the tower of an InternVLChatModel config; checks every tensor's presence and shape.
 * dt: compute dtype of the encoder linears (F32 or BF16). */
qv_status qv_internvit_open(const qv_checkpoint *ck, const qv_vision_config *vc, int64_t select_layer, qv_dtype dt,
                            qv_internvit **out);
void qv_internvit_close(qv_internvit *v);

/* Tokens per tile of h × w pixels: 1 + (h/p)·(w/p). */
int64_t qv_internvit_tokens(const qv_internvit *v, int64_t h, int64_t w);

/* Embeddings of n tiles: pixels [n, 3, h, w] → emb [n, tokens, D] (steps 1–3). */
qv_status qv_internvit_embed(const qv_internvit *v, const float *pixels, int64_t n, int64_t h, int64_t w, float *emb);
/* The encoder layers on emb [n, tokens, D] in place (step 4). */
qv_status qv_internvit_encode(const qv_internvit *v, int64_t n, int64_t tokens, float *x);

/* out [gh·gw, D] = position embedding of the G×G grid resampled to gh × gw (bicubic, as
 * F.interpolate(align_corners=False)); exposed for tests. */
void qv_internvit_pos_resample(const float *grid_pos, int64_t G, int64_t D, int64_t gh, int64_t gw, float *out);

#endif
