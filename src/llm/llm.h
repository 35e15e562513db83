/* llm.h — the CPU decoder engine: a model handle over the mmapped checkpoint, one decoder layer's
 * weights at a time, and the layer runner the quantization methods use (ALGORITHMS.md §5.2,
 * §6.2–6.3; fixtures README §1–§2).
 *
 * Decoders: Qwen2 (q/k/v biases, GQA; also the LLM of InternVL2-1B, InternVL3, Qwen2-VL and
 * LLaVA-OneVision), InternLM2 (packed wqkv in its grouped layout, wo, w1/w3/w2) and Llama.
 * One layer computes, on hidden states x [T = B·L, C]:
 *     n1 = RMSNorm_attn(x);  q,k,v = n1·Wᵀ (+b);  RoPE(q,k);  a = attention(q,k,v);  x1 = x + a·Woᵀ
 *     n2 = RMSNorm_mlp(x1);  h = silu(n2·Wgᵀ) ⊙ (n2·Wuᵀ);  y = x1 + h·Wdᵀ
 * with causal attention under the batch's key-padding mask (right padding: padded keys masked,
 * padded queries still attend the real prefix) and positions from the batch context.
 *
 * Compute dtypes. F32 (parity; the only choice without native BF16 matmuls): a layer's BF16
 * weights are widened into a per-layer F32 buffer when the layer is loaded and dropped when it
 * is released, so one layer is resident at a time, never an F32 copy of the model. BF16 (fast,
 * only when qv_matmul_bf16_native()): weights are used straight from the mmap and activations
 * are rounded to BF16 at each matmul input; accumulation, norms, softmax and residuals stay F32.
 *
 * Weights of a layer are a qv_llm_weights view: pointers in the compute dtype, either into the
 * mmap / the loaded layer's buffer or to modified copies the caller owns (the scale search runs
 * the sub-blocks with candidate weights by copying the view and replacing pointers).
 *
 * Threading: every function parallelises internally (OpenMP, oneDNN); one qv_llm handle must not
 * be used from two threads at once. qvlm's own loops give the same bits for any thread count;
 * the large matmuls are oneDNN's, which gave identical bits for 1 and 2 threads on every fixture
 * but does not promise it for all shapes (its GEMM may split K across threads).
 * Memory of a layer call on T = B·L tokens, besides the caller's x/y and the weights:
 * T·(2C + 2·H·d + 2·KV·d) floats (+ T·(H + 2·KV)·d for InternLM2's packed wqkv output, + 2·T·C
 * with BF16 activation storage) and 2·512·I floats for the MLP, run in 512-token chunks. */
#ifndef QV_LLM_H
#define QV_LLM_H

#include "../io/safetensors.h"
#include "../model/config.h"
#include "../nn/fp8q.h"
#include "../nn/rope.h"

/* Linear layers of a decoder layer. Qwen2/Llama use Q,K,V; InternLM2 uses QKV instead. */
typedef enum qv_llm_lin {
    QV_LIN_Q = 0,
    QV_LIN_K,
    QV_LIN_V,
    QV_LIN_QKV, /* InternLM2 wqkv [(H + 2·KV)·d, C], rows grouped per KV head: g q heads, k, v */
    QV_LIN_O,
    QV_LIN_GATE,
    QV_LIN_UP,
    QV_LIN_DOWN,
    QV_LIN_COUNT
} qv_llm_lin;

typedef enum qv_llm_norm { QV_LLM_NORM_ATTN = 0, QV_LLM_NORM_MLP, QV_LLM_NORM_COUNT } qv_llm_norm;

/* FP8 fake quantization inside a layer (llm-compressor's FP8 schemes, ALGORITHMS-2.md §4.4–4.5),
 * every cast in dtype T by the double-rounding rule of nn/fp8q.h:
 *   act[l]        input of linear l: QV_FP8_ACT_TOKEN (dynamic per token) or QV_FP8_ACT_TENSOR
 *                 (static, scale act_scale[l], a T value), before its matmul;
 *   kv_n > 0      K after RoPE and V, as they would enter the KV cache, with the static scales
 *                 k_scale / v_scale [kv_n] (1: per tensor; KV: per KV head), before attention.
 * The weights themselves are fake-quantized by whoever builds the layer (qv_llm_layer_set). */
typedef struct qv_llm_fp8 {
    qv_dtype T;
    uint8_t act[QV_LIN_COUNT];       /* qv_fp8_act */
    float act_scale[QV_LIN_COUNT];
    int64_t kv_n;
    const float *k_scale, *v_scale;  /* [kv_n] */
} qv_llm_fp8;

/* One decoder layer's weights as the runner reads them. */
typedef struct qv_llm_weights {
    qv_dtype dt;                             /* dtype of w[]: the model's compute dtype */
    const void *w[QV_LIN_COUNT];             /* [out, in] row-major; NULL where the kind has none */
    const float *bias[QV_LIN_COUNT];         /* [out] or NULL */
    const float *norm[QV_LLM_NORM_COUNT];    /* RMSNorm weights [C] */
    /* W-A quantization (MBQ's WALinear, ALGORITHMS.md §1.5): when act_bits[l] > 0 the input of
     * linear l is fake-quantized per token (symmetric absmax, act_bits[l] bits, arithmetic in
     * dtype act_dt by rule (E), division form act_div = qv_fq_div) before its matmul. */
    int8_t act_bits[QV_LIN_COUNT];
    uint8_t act_div;
    qv_dtype act_dt;
    const qv_llm_fp8 *fp8;                   /* FP8 activations / KV cache (borrowed), or NULL */
} qv_llm_weights;

/* A loaded layer: its weights plus the storage backing them. Release with qv_llm_layer_release. */
typedef struct qv_llm_layer {
    int64_t index;
    qv_llm_weights w;
    void *own[QV_LIN_COUNT];      /* private copies (F32 widening or qv_llm_layer_set), NULL = mmap view */
    float *small;                 /* norms and biases, widened to F32 */
    float *norm_own[QV_LLM_NORM_COUNT];
    qv_tensor src[QV_LIN_COUNT];  /* the mmap views, for releasing their pages */
} qv_llm_layer;

typedef struct qv_llm_opts {
    qv_dtype compute; /* QV_F32 (default) or QV_BF16 */
} qv_llm_opts;

typedef struct qv_llm {
    qv_model_config cfg;       /* owned; cfg.llm is the decoder's config */
    const qv_llm_config *c;    /* = &cfg.llm */
    qv_checkpoint *ck;         /* owned */
    char *dir;                 /* the model folder */
    qv_dtype dt;               /* compute dtype */
    int64_t C, H, KV, d, I, V; /* hidden, heads, KV heads, head dim, MLP width, vocab */
    float eps;                 /* rms_norm_eps */
    float attn_scale;          /* 1/sqrt(d) */
    qv_rope_params rope;
    const char *model_root;    /* "model.", "language_model.model.", ... */
    const char *head_root;     /* prefix of lm_head / output */
    bool has_bias[QV_LIN_COUNT];
    qv_tensor embed;           /* [V, C] view */
    qv_tensor head;            /* [V, C] view (the embedding when tied) */
    float *final_norm;         /* [C] F32 */
    /* Called by qv_llm_layer_load after a layer is loaded, so every pass (forward, backward,
     * perplexity) sees a transformed layer — e.g. scales applied and weights fake-quantized
     * (`forward --scales`, the quantized evaluation). NULL = none. */
    qv_status (*layer_hook)(void *ctx, struct qv_llm *m, struct qv_llm_layer *layer);
    void *layer_hook_ctx;
} qv_llm;

/* Opens a model folder (config.json + safetensors), checks every decoder tensor's presence
 * and shape up front, and maps nothing into F32. opts may be NULL (F32). BF16 on a host without
 * native BF16 matmuls fails with QV_ERR_UNSUPPORTED. */
qv_status qv_llm_open(const char *model_dir, const qv_llm_opts *opts, qv_llm **out);
void qv_llm_close(qv_llm *m);
/* A decoder with the dimensions of cfg and no checkpoint (benchmarks, tests): the runner
 * functions work on caller-supplied qv_llm_weights; layer loading, embeddings and the head do
 * not. */
qv_status qv_llm_synthetic(const qv_llm_config *cfg, qv_dtype dt, qv_llm **out);

/* Output width of a linear ([out, in] = [qv_llm_lin_out, qv_llm_lin_in]); 0 when absent. */
int64_t qv_llm_lin_out(const qv_llm *m, qv_llm_lin lin);
int64_t qv_llm_lin_in(const qv_llm *m, qv_llm_lin lin);
bool qv_llm_has_lin(const qv_llm *m, qv_llm_lin lin);
/* Module path relative to the decoder layer ("self_attn.q_proj", "attention.wqkv"); NULL when
 * the kind has no such linear. */
const char *qv_llm_lin_suffix(const qv_llm *m, qv_llm_lin lin);
const char *qv_llm_norm_suffix(const qv_llm *m, qv_llm_norm nrm);
/* Full module name in the checkpoint ("language_model.model.layers.3.self_attn.q_proj"),
 * written into buf; the tensor is this plus ".weight" / ".bias". */
const char *qv_llm_lin_name(const qv_llm *m, int64_t layer, qv_llm_lin lin, char *buf, size_t n);
const char *qv_llm_norm_name(const qv_llm *m, int64_t layer, qv_llm_norm nrm, char *buf, size_t n);
/* Whether MBQ's GradCacheHook hooks this linear (its name contains wo, w2, down_proj, o_proj,
 * v_proj, gate_proj, up_proj, w1 or w3; ALGORITHMS.md §5.3). */
bool qv_llm_lin_hooked(const qv_llm *m, qv_llm_lin lin);

/* ---- one layer's weights ------------------------------------------------------------------ */

/* Loads layer i in the compute dtype (F32: widened copies; BF16: mmap views). */
qv_status qv_llm_layer_load(qv_llm *m, int64_t i, qv_llm_layer *layer);
/* Frees the layer's copies and drops its mmap pages. Accepts a zeroed layer. */
void qv_llm_layer_release(qv_llm *m, qv_llm_layer *layer);
/* Replaces a linear's weight ([out, in] F32 values, rounded to BF16 in BF16 mode) or bias
 * (bias may be NULL to keep it) by a copy owned by the layer; the mmap is never written. */
qv_status qv_llm_layer_set(qv_llm *m, qv_llm_layer *layer, qv_llm_lin lin, const float *w, const float *bias);
qv_status qv_llm_layer_set_norm(qv_llm *m, qv_llm_layer *layer, qv_llm_norm nrm, const float *w);
/* F32 values of a layer's linear weight (widened), for the quantization methods; dst [out·in]. */
qv_status qv_llm_layer_get(const qv_llm *m, const qv_llm_layer *layer, qv_llm_lin lin, float *dst);

/* ---- batch context: positions and masks, shared by every layer ---------------------------- */

typedef struct qv_llm_ctx {
    int64_t B, L;
    int64_t half;          /* d/2: width of the rotary tables */
    const uint8_t *mask;   /* [B, L] key-padding mask (nonzero = real token); NULL = all real */
    float *cos, *sin;      /* [B·L, d/2] rotary tables */
    bool owned;
} qv_llm_ctx;

/* pos [B, L] (NULL = 0..L−1 for every row); mrope_pos [3, B, L] (M-RoPE models; NULL = pos on
 * all streams). The mask is borrowed and must outlive ctx. */
qv_status qv_llm_ctx_init(const qv_llm *m, qv_llm_ctx *ctx, int64_t B, int64_t L, const uint8_t *mask,
                          const int64_t *pos, const int64_t *mrope_pos);
/* A view of samples [b0, b0+nb) of ctx (no copy; valid while ctx lives). */
void qv_llm_ctx_slice(const qv_llm_ctx *ctx, int64_t b0, int64_t nb, qv_llm_ctx *view);
void qv_llm_ctx_free(qv_llm_ctx *ctx);

/* ---- the runner --------------------------------------------------------------------------- */

/* What a layer forward records (ALGORITHMS.md §5.2: the inputs of every linear group and the FP
 * output of each inspect module). Any pointer may be NULL; rows are the T = B·L tokens. */
typedef struct qv_llm_capture {
    float *attn_in;  /* [T, C]   input of q/k/v (wqkv): the attention norm's output */
    float *o_in;     /* [T, H·d] input of o_proj (wo) */
    float *attn_out; /* [T, C]   output of o_proj (wo): the attention module's output */
    float *mlp_in;   /* [T, C]   input of gate/up (w1/w3): the MLP norm's output */
    float *down_in;  /* [T, I]   input of down_proj (w2) */
    float *mlp_out;  /* [T, C]   output of down_proj (w2): the MLP module's output */
    float *k, *v;    /* [T, KV·d] K after RoPE and V, as they enter the KV cache (before any
                        FP8 KV fake quantization): the kv_cache_scheme statistics */
} qv_llm_capture;

/* y = layer(x) for the B·L tokens of ctx. x and y are [T, C] in act_dt (F32 or BF16 storage;
 * compute is F32); y may equal x. */
qv_status qv_llm_layer_forward(qv_llm *m, const qv_llm_weights *w, const qv_llm_ctx *ctx, const void *x, void *y,
                               qv_dtype act_dt, const qv_llm_capture *cap);
/* The attention module on normed input: out [T, C] = o_proj(attention(rope(q), rope(k), v));
 * o_in [T, H·d] (may be NULL) receives o_proj's input. */
qv_status qv_llm_attn_forward(qv_llm *m, const qv_llm_weights *w, const qv_llm_ctx *ctx, const float *x_normed,
                              float *out, float *o_in);
/* The MLP module on T normed rows: out [T, C]; down_in [T, I] may be NULL. */
qv_status qv_llm_mlp_forward(qv_llm *m, const qv_llm_weights *w, int64_t T, const float *x_normed, float *out,
                             float *down_in);
/* One linear: y [T, out] = x [T, in] · Wᵀ + b. */
qv_status qv_llm_linear_forward(qv_llm *m, const qv_llm_weights *w, qv_llm_lin lin, int64_t T, const float *x,
                                float *y);

/* ---- embeddings and head ------------------------------------------------------------------ */

/* out [n, C] = embedding rows of ids (F32). An id outside [0, V) is QV_ERR_INVALID. */
qv_status qv_llm_embed(const qv_llm *m, const int64_t *ids, int64_t n, float *out);
/* Final RMSNorm of n rows (out may equal hidden). */
void qv_llm_final_norm(const qv_llm *m, const float *hidden, int64_t n, float *out);

#endif
