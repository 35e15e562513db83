/* quantize.h — `qvlm quantize`: one run of a method from the YAML run config to the output
 * folder (spec CLI.md; ALGORITHMS.md §2 RTN, §3 AWQ, §4 SmoothQuant, §5 MBQ):
 *
 *   calibration batch → layer-0 inputs → (MBQ reweight: gradient pass, per-layer ratios)
 *   → layer-by-layer search (resumable) → DIR/scales.safetensors + DIR/search.json
 *   → the quantized model = a fresh model view with the saved list applied and every decoder
 *     linear fake-quantized → loss on the calibration batch next to the FP loss → DIR/eval.json
 *   → DIR/timings.json (seconds per phase, peak RSS anonymous and file-backed).
 * Method fp8 (fp8.h) replaces the search by one calibration pass for FP8 statistics and adds
 * DIR/recipe.yaml; its evaluation is the FP8 model (weights, activations, KV cache and in-scope
 * vision Linears fake-quantized).
 *
 * Resume: every finished layer is written to DIR/progress/ (crash-safe files); a re-run with
 * the same configuration and model skips those layers and produces the same final files. A
 * different configuration in DIR is refused unless `force`.
 *
 * Data-parallel (MPI, src/core/comm.h): every rank holds a contiguous block of samples, runs the
 * vision tower, the gradient pass, the layer chain and the candidate forwards on them only, and
 * the per-sample statistics (gradients, act_scale, grid losses, clip rows, evaluation NLL) are
 * gathered and summed in sample order, so the outputs are byte-identical for any number of ranks.
 * Rank 0 writes every file; DIR must be on a filesystem every rank sees. */
#ifndef QV_QUANT_QUANTIZE_H
#define QV_QUANT_QUANTIZE_H

#include <stdio.h>

#include "../config/run_config.h"
#include "../llm/batch.h"
#include "../vision/vision_hook.h"

typedef struct qv_quantize_io {
    const char *out_dir;     /* -o DIR; NULL = the run's scale_path (without ".pt") */
    bool force;              /* start over in a folder that holds another run */
    FILE *log;               /* progress and log lines (NULL = silent) */
    /* This process's share of the calibration batch with its layer-0 inputs (inputs_embeds
     * filled, masks, labels) and the whole batch's sample count. A single process gets every
     * sample; MPI rank r of P gets qv_comm_shard's contiguous block. Called once for methods that
     * calibrate, and for the evaluation. */
    qv_status (*get_batch)(void *ctx, qv_llm *m, const qv_run_config *rc, qv_llm_batch *b, int64_t *b0,
                           int64_t *n_total);
    void *batch_ctx;
    /* method fp8 (fp8.h): b->inputs_embeds recomputed from the batch's images with a per-Linear
     * hook on the vision tower (its input statistics on the FP tower, then the tower with its
     * in-scope Linears fake-quantized); NULL when not offered. Same ctx as get_batch. */
    qv_status (*embed_images)(void *ctx, qv_llm *m, const qv_run_config *rc, const qv_vision_hook *hook,
                              qv_llm_batch *b);
    const char *recipe;      /* method fp8: llm-compressor recipe (NULL: the run's export.recipe, else
                                the default FP8_DYNAMIC scheme) */
} qv_quantize_io;

qv_status qv_quantize(const qv_run_config *rc, const qv_quantize_io *io);

/* Resident-set peaks sampled so far (bytes): anonymous memory and file-backed pages. */
typedef struct qv_mem_peak {
    uint64_t anon, file;
} qv_mem_peak;
void qv_mem_sample(qv_mem_peak *p);

/* A thread that samples the resident set every 20 ms (Linux keeps no high-water mark of the
 * anonymous part alone; samples at phase ends missed peaks inside a phase). start returns NULL
 * when the thread cannot be made (the phase-end samples remain); stop joins it and raises *into
 * to the peaks it saw. */
typedef struct qv_mem_watch qv_mem_watch;
qv_mem_watch *qv_mem_watch_start(void);
void qv_mem_watch_stop(qv_mem_watch *w, qv_mem_peak *into);

#endif
