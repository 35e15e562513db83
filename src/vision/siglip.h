/* siglip.h — the SigLIP vision tower as LLaVA-NeXT runs it for LLaVA-OneVision (MODELS.md §2.2,
 * §2.3, §2.8; fixtures README §15.1, §15.3). Private to src/vision.
 *
 * Per crop [3, S, S]: Conv2d(3→D, kernel = stride = p, bias) on the (S/p)² whole patches (a
 * 384 crop uses its first 378 rows and columns), + the learned position_embedding (no CLS, no
 * interpolation), then the encoder layers LLaVA-NeXT keeps: SigLipVisionTower deletes the last
 * of the config's num_hidden_layers and returns hidden_states[-1] without post_layernorm — the
 * "select layer −2" of the full tower (26 of so400m's 27). Layers: LayerNorm, separate q/k/v
 * with biases, out_proj, gelu_pytorch_tanh MLP.
 * lmms-lab: the tower's config.json is read from the model's mm_vision_tower folder (a path
 * relative to the model folder, or absolute); when that folder does not exist and the name is
 * the hub id of google/siglip-so400m-patch14-384, that model's published dimensions are used.
 * llava-hf: the config's inline vision_config (qv_siglip_config_parse, vision.h), with
 * vision_feature_layer choosing the layers run.
 * Checkpoint roots: lmms-lab `model.vision_tower.vision_tower.vision_model.`, llava-hf
 * `vision_tower.vision_model.`, transformers-5 runtime `model.vision_tower.vision_model.` and
 * `model.vision_tower.`. */
#ifndef QV_VISION_SIGLIP_H
#define QV_VISION_SIGLIP_H

#include "vit_block.h"

typedef struct qv_siglip {
    const qv_checkpoint *ck;      /* borrowed */
    qv_vit_dims dm;
    int64_t patch, grid, image_size, n_run;
    char root[64];
    qv_vit_names names;
    void *patch_w;                /* [D, 3·p·p] in the compute dtype */
    float *patch_b;               /* [D] */
    float *pos;                   /* [grid², D] */
} qv_siglip;

/* Reads <model_dir>/<tower>/config.json (SiglipVisionModel or a SiglipConfig with a
 * vision_config) into vc. */
qv_status qv_siglip_config_load(const char *model_dir, const char *tower, qv_vision_config *vc);

/* n_run: encoder layers to run (LLaVA-NeXT: vc->n_layers − 1). */
qv_status qv_siglip_open(const qv_checkpoint *ck, const qv_vision_config *vc, int64_t n_run, qv_dtype dt,
                         qv_siglip **out);
void qv_siglip_close(qv_siglip *v);
/* emb [n, grid², D] of n crops pixels [n, 3, S, S]. */
qv_status qv_siglip_embed(const qv_siglip *v, const float *pixels, int64_t n, float *emb);
/* The kept encoder layers on x [n, grid², D] in place. */
qv_status qv_siglip_encode(const qv_siglip *v, int64_t n, float *x);

#endif
