/* qwen2vl_vit.h — the Qwen2-VL and Qwen2.5-VL vision transformers (MODELS.md §1.4, §1.10, §1.11;
 * fixtures README §13.1, §13.5). Private to src/vision; the PatchMerger is a qv_proj_mlp.
 *
 * Input: all images' patch rows packed [P, 3·tp·p·p] (merge-block order, MODELS.md §1.3 step 6)
 * and grid_thw [n, 3].
 *   1. patch embedding: the Conv3d [D, 3, tp, p, p] without bias as a matmul on every row;
 *   2. 2-D rotary: inv_j = 1/10000^(2j/(d/2)), j < d/4; a row at grid (y, x) rotates head dims
 *      [0, d/4) by y·inv and [d/4, d/2) by x·inv, paired with dim + d/2 (rotate_half);
 *   3. blocks (vit_block.h), attention bidirectional inside each frame (cu_seqlens):
 *      Qwen2-VL LayerNorm + QuickGELU MLP; Qwen2.5-VL RMSNorm + SiLU-gated MLP, and window
 *      attention: rows are permuted at merge-block granularity into windows of w×w merge blocks
 *      (w = window_size / merge / p, windows and blocks row-major, the grid padded on the
 *      bottom/right), the blocks of fullatt_block_indexes attend within the frame, the others
 *      within their window; the permutation is undone on the output (equivalent to undoing it
 *      after the merger, which works on each merge block alone).
 * Checkpoint layouts: `visual.*` (hub files, transformers ≤ 4.51) and `model.visual.*`
 * (transformers ≥ 4.52 runtime names). */
#ifndef QV_VISION_QWEN2VL_VIT_H
#define QV_VISION_QWEN2VL_VIT_H

#include "../llm/forward.h"
#include "vit_block.h"

typedef struct qv_qwen2vl_vit {
    const qv_checkpoint *ck;       /* borrowed */
    qv_vit_dims dm;
    int64_t n_layers, patch, tp, merge, patch_dim;
    bool windowed;                 /* Qwen2.5-VL window attention */
    int64_t window;                /* merge blocks per window side */
    uint8_t *fullatt;              /* [n_layers]: block attends the whole frame (windowed only) */
    char root[24];                 /* "visual." / "model.visual." */
    qv_vit_names names;
    void *patch_w;                 /* [D, patch_dim] in the compute dtype */
    float inv_freq[1024];          /* [d/4] */
} qv_qwen2vl_vit;

qv_status qv_qwen2vl_vit_open(const qv_checkpoint *ck, const qv_vision_config *vc, qv_dtype dt,
                              qv_qwen2vl_vit **out);
void qv_qwen2vl_vit_close(qv_qwen2vl_vit *v);

/* x [P, D] = the last block's output for the images' rows pixels [P, patch_dim], natural row
 * order. Dumps (dump may be NULL): vision.patch_embed.out.sample0, vision.blocks.{i}.out.sample0
 * (when first_is_image0: the first image's rows) and vision.blocks.{i}.out (rows at row0). */
qv_status qv_qwen2vl_vit_forward(const qv_qwen2vl_vit *v, const float *pixels, const int64_t *grid_thw, int64_t n,
                                 float *x, const qv_llm_dump *dump, int64_t row0, bool first_is_image0);

/* Qwen2.5-VL get_window_index for the images: perm [P/4] = merge block (image-local blocks
 * offset by earlier images) at each permuted position, win [P/4] = window id of each permuted
 * block (frames never share a window). */
qv_status qv_qwen25vl_window_index(const int64_t *grid_thw, int64_t n, int64_t merge, int64_t window, int64_t *perm,
                                   int32_t *win);

#endif
