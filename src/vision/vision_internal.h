/* vision_internal.h — the qv_vision handle's fields, shared by the dispatch (vision.c) and the
 * multimodal embedder (mm_embed.c). Not for other modules. */
#ifndef QV_VISION_INTERNAL_H
#define QV_VISION_INTERNAL_H

#include "internvit.h"
#include "projector.h"
#include "qwen2vl_vit.h"
#include "siglip.h"
#include "vision.h"

struct qv_vision {
    qv_vision_kind kind;
    const qv_model_config *cfg;
    const qv_checkpoint *ck;
    qv_dtype dt;
    const qv_vision_hook *hook;  /* or NULL */
    qv_internvit *ivit;
    qv_qwen2vl_vit *qvit;
    qv_siglip *sig;
    qv_proj_mlp proj;
    qv_ps_version ps;
    float *newline;          /* LLaVA image_newline [C], NULL when not appended */
    int64_t Dv, C, tile;
    int64_t image_token;
    int64_t max_units, max_tokens;
    int64_t llava_max_len;   /* LLaVA tokenizer_model_max_length (0 = none) */
    bool llava_left_pad;     /* LLaVA tokenizer_padding_side == "left" */
};

#endif
