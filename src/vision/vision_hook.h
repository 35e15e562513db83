/* vision_hook.h — a per-Linear hook on the vision towers' encoder-block linears (vit_block.c:
 * InternViT, the Qwen2-VL ViT, SigLIP) and on the projector's two linears (projector.c), for
 * llm-compressor-style quantization of vision Linears (ALGORITHMS-2.md §4.2–4.4, §4.6): input
 * statistics on the FP tower, then the tower with its in-scope Linears fake-quantized.
 * Patch embeddings (convolutions) are not Linears and never reach the hook.
 *
 * `module` is the Linear's checkpoint module name (tensor name minus ".weight", e.g.
 * "vision_model.encoder.layers.3.attn.qkv", "mlp1.1"). All callbacks run on the thread that runs
 * the tower (never inside a parallel region); errors follow common.h (one line, returned). */
#ifndef QV_VISION_HOOK_H
#define QV_VISION_HOOK_H

#include "../core/common.h"

typedef struct qv_vision_hook {
    void *ctx;
    /* Whether the hook acts on this Linear (asked when its weights are loaded); false: no further
     * calls for it. */
    bool (*wants)(void *ctx, const char *module);
    /* May replace the weight: w [out, in] holds the loaded values widened to F32 and is modified
     * in place (NULL: weights untouched). Called at every load of the weight. */
    qv_status (*weight)(void *ctx, const char *module, int64_t out, int64_t in, float *w);
    /* Sees the input x [rows, in] of every call of the Linear: may record statistics and may write
     * a replacement into xq [rows, in] and set *use (NULL: inputs untouched). */
    qv_status (*input)(void *ctx, const char *module, int64_t rows, int64_t in, const float *x, float *xq, bool *use);
} qv_vision_hook;

#endif
