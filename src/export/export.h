/* export.h — `qvlm export`: a searched scale list applied to a model and written as a quantized
 * checkpoint (CLI.md `export`; FORMATS.md §1.5, §2–§4; ALGORITHMS.md §3.4, §5.8, §9.3;
 * ALGORITHMS-2.md §4).
 *
 * The model is streamed: tensors stay in the mmapped input, one decoder layer at a time is
 * loaded, scaled (apply.h) and quantized (qlinear.h), and every output shard is declared and
 * preallocated before the first byte is written, so a full disk fails up front. Output shards
 * mirror the input's (same file names, same tensor placement). Everything goes to a temporary
 * folder beside the destination that is renamed at the end and removed on failure. */
#ifndef QV_EXPORT_EXPORT_H
#define QV_EXPORT_EXPORT_H

#include "formats.h"
#include "quant/apply.h"

typedef void (*qv_export_log_fn)(void *ctx, const char *msg);

typedef struct qv_export_opts {
    const char *model;   /* Hugging Face model folder */
    const char *scales;  /* scales DIR or .pt; NULL: none (FP8, or RTN with --w-bit) */
    const char *out;     /* folder (a .pt file for mbq-pt) */
    const char *recipe;  /* llm-compressor recipe (fp8, compressed-tensors); NULL */
    qv_fmt format;
    bool force;          /* replace an existing destination */
    qv_dtype dtype;      /* compute and output dtype; QV_DTYPE_COUNT: the model's */
    int w_bit;           /* 0: from the scales' search config */
    int64_t w_group;     /* 0: from the config */
    int a_bit;           /* 0: from the config */
    int zero_point;      /* -1: from the config, else 0/1 */
    int division;        /* -1: from the config, 0 cuda, 1 cpu */
    uint64_t max_memory; /* 0: no limit; else refuse when one decoder layer needs more */
    qv_export_log_fn log;
    void *log_ctx;
} qv_export_opts;

void qv_export_opts_init(qv_export_opts *o);

typedef struct qv_export_stats {
    size_t n_tensors;      /* tensors written */
    size_t n_quantized;    /* linears quantized */
    size_t n_applied;      /* scale and clip entries applied */
    size_t n_f16_inexact;  /* scales that F16 (AWQ/GPTQ) could not hold exactly */
    uint64_t bytes;        /* tensor bytes written */
    char detail[64];       /* e.g. "pack-quantized", "float-quantized" */
} qv_export_stats;

qv_status qv_export_run(const qv_export_opts *o, qv_export_stats *st);

/* Writes a scale list as MBQ's .pt (scale vectors and clip values converted to T) at path
 * (crash-safe: temporary name, then rename). */
qv_status qv_mbqpt_write(const char *path, const qv_scales *sc, qv_dtype T);

/* torch_dtype spelling of a float dtype ("bfloat16"). */
const char *qv_torch_dtype_name(qv_dtype dt);
bool qv_dtype_from_torch(const char *s, qv_dtype *dt);

#endif
