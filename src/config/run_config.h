/* run_config.h — the run configuration YAML of `qvlm calib` / `qvlm quantize` (spec/CLI.md
 * "CONFIG (YAML)", spec/ALGORITHMS.md §9.1–9.2, §11 items 11 and 13).
 *
 * A document is one mapping or a list of mappings; each mapping is one run, applied on top of
 * the defaults independently of the others (§9.2; the reference copies its parsed command
 * line per mapping, and qvlm's defaults are the reference's command-line defaults). Keys:
 *
 *   MBQ's (unchanged): model, model_args, calib_data, n_samples, data_path, image_folder,
 *     few_shot_format, interleave_format, text_data_path, method, run_process, w_bit, w_group,
 *     a_bit, alpha, distort, reweight, loss_mode, scale_path, pseudo_quant
 *   qvlm's: seed, n_grid, zero_point, division, dtype, auto_clip, threads, max_tiles, pad_rule,
 *     eval_data_path, eval_image_folder, export {format, path, recipe}
 *   accepted and ignored (each leaves a note): the lmms-eval / main.py evaluation keys that the
 *     MBQ Eval configs carry, and main_quant.py's loader keys — config, batch_size, device,
 *     tasks, num_fewshot, max_batch_size, output_path, limit, use_cache, cache_requests,
 *     check_integrity, write_out, log_samples, wandb_log_samples, log_samples_suffix,
 *     system_instruction, apply_chat_template, fewshot_as_multiturn, show_config,
 *     include_path, gen_kwargs, verbosity, wandb_args, timezone, hf_hub_log_args,
 *     predict_only, trust_remote_code. (lmms-eval's own `seed` is a string like
 *     "0,1234,1234,1234"; here `seed` is qvlm's integer and such a string is an error.)
 * Any other key is an error "<file>:<line>: unknown key \"k\"". Values are typed as PyYAML's
 * safe_load types them (yaml.h): `w_bit: "3"` is a string, hence an error; `alpha` takes ints
 * and floats (§11 item 11). String keys take any non-boolean plain scalar as its text; an
 * empty string or null leaves them unset (NULL). Every error names the file, the line and the
 * key.
 *
 * Paths (model_args' pretrained, data_path, image_folder, text_data_path, scale_path,
 * eval_*, export.*) are kept as written: relative paths are relative to the current
 * directory, as in the reference, not to the YAML file. */
#ifndef QV_CONFIG_RUN_CONFIG_H
#define QV_CONFIG_RUN_CONFIG_H

#include "../core/common.h"
#include "../io/json.h"

#define QV_RUN_CONFIG_MAX_FILE ((size_t)1 << 20)
#define QV_RUN_CONFIG_MAX_RUNS 1024

typedef enum qv_calib_data {
    QV_CALIB_DATA_NONE = 0,   /* `calib_data: null` (the reference's None): no calibration batch */
    QV_CALIB_DATA_COCO,       /* caption JSON/JSONL + image folder (§7.1) */
    QV_CALIB_DATA_SHAREGPT4V, /* qvlm's name for the same format */
    QV_CALIB_DATA_PILEVAL     /* pile blocks from a text JSONL (§7.6); the reference's default */
} qv_calib_data;

typedef enum qv_method {
    QV_METHOD_NONE = 0, /* `method: null`: nothing is quantized */
    QV_METHOD_RTN,
    QV_METHOD_AWQ,      /* the reference's default */
    QV_METHOD_SMOOTHQUANT,
    QV_METHOD_MBQ,
    QV_METHOD_FP8
} qv_method;

typedef enum qv_loss_mode { QV_LOSS_MODE_MAE = 0, QV_LOSS_MODE_MSE } qv_loss_mode;
/* Rule (E) of spec/ALGORITHMS.md: the reference's GPU arithmetic, or plain CPU division. */
typedef enum qv_division { QV_DIVISION_CUDA = 0, QV_DIVISION_CPU } qv_division;
/* QV_PAD_RULE_AUTO only when `model` is absent: the family (from the checkpoint) decides, see
 * qv_pad_rule_for_model. */
typedef enum qv_pad_rule { QV_PAD_RULE_AUTO = 0, QV_PAD_RULE_MBQ, QV_PAD_RULE_LENGTH } qv_pad_rule;
/* The reference dtype T of the quantization arithmetic (ALGORITHMS.md §0.3): `auto` takes the
 * checkpoint's torch_dtype (bf16 for the shipped models); `float32` is the fixtures' parity
 * setting (their goldens ran in FP32). */
typedef enum qv_run_dtype { QV_RUN_DTYPE_AUTO = 0, QV_RUN_DTYPE_F32, QV_RUN_DTYPE_BF16, QV_RUN_DTYPE_F16 } qv_run_dtype;
typedef enum qv_export_format {
    QV_EXPORT_FORMAT_NONE = 0,
    QV_EXPORT_FORMAT_FAKE,
    QV_EXPORT_FORMAT_AWQ,
    QV_EXPORT_FORMAT_GPTQ,
    QV_EXPORT_FORMAT_COMPRESSED_TENSORS,
    QV_EXPORT_FORMAT_FP8,
    QV_EXPORT_FORMAT_MBQ_PT
} qv_export_format;

typedef struct qv_run_config {
    char *file;             /* the YAML file */
    size_t line;            /* line where this run's mapping starts */
    size_t index;           /* position among the document's runs */

    /* model */
    char *model;            /* internvl2 | internvl3 | qwen2_vl | llava_onevision | llava | qwen2 |
                               llama; NULL = absent (take the family from the checkpoint) */
    char *model_args;       /* as written, e.g. pretrained="OpenGVLab/InternVL2-8B",device_map=auto */
    char *pretrained;       /* the model folder named by model_args (required) */

    /* calibration data (§7) */
    qv_calib_data calib_data;   /* pileval */
    int64_t n_samples;          /* 128 */
    char *data_path;            /* caption file (coco/sharegpt4v) or text JSONL (pileval) */
    char *image_folder;
    bool few_shot_format, interleave_format; /* false, false */
    char *text_data_path;       /* interleave pure-text pool (§11 item 13: used, not data_path) */

    /* method (§9.1) */
    qv_method method;           /* awq */
    bool run_process, pseudo_quant; /* false, false */
    int w_bit, a_bit, w_group;  /* 8, 16, 128 (-1 = per output channel) */
    double alpha;               /* 0.5 */
    bool distort, reweight;     /* false, false */
    qv_loss_mode loss_mode;     /* mae */
    char *scale_path;           /* as written (may end in .pt) */
    char *scale_dir;            /* the folder qvlm writes: scale_path without a ".pt" suffix */

    /* qvlm */
    uint64_t seed;              /* 42 */
    int n_grid;                 /* 20 */
    bool zero_point;            /* true */
    qv_division division;       /* cuda */
    qv_run_dtype dtype;         /* auto */
    bool auto_clip;             /* false */
    int threads;                /* 0 = all cores */
    int max_tiles;              /* 0 = the family's calibration default */
    qv_pad_rule pad_rule;       /* from the model family, see qv_pad_rule_for_model */
    char *eval_data_path, *eval_image_folder;
    struct {
        qv_export_format format; /* NONE = no export */
        char *path, *recipe;
    } export;

    /* "<file>:<line>: ..." lines about accepted-but-unused input (ignored keys, model_args
     * entries other than pretrained); for the CLI to log */
    char **notes;
    size_t n_notes;
} qv_run_config;

/* The defaults (every string NULL). */
void qv_run_config_defaults(qv_run_config *c);

/* Reads a config file into *n runs (*runs is an array the caller frees with
 * qv_run_configs_free). On failure nothing is returned. */
qv_status qv_run_config_load(const char *path, qv_run_config **runs, size_t *n);
/* The same from memory; `file` names the source in messages. */
qv_status qv_run_config_parse(const char *text, size_t len, const char *file, qv_run_config **runs, size_t *n);
void qv_run_configs_free(qv_run_config *runs, size_t n);

/* W-A mode (per-token activations): w_bit < 16 and a_bit < 16 (§9.1). */
static inline bool qv_run_config_is_wa(const qv_run_config *c) { return c->w_bit < 16 && c->a_bit < 16; }
/* Whether the run builds a calibration batch: run_process with awq, smoothquant or mbq. */
bool qv_run_config_needs_calib(const qv_run_config *c);

/* The default pad rule of the family a `model:` name selects (src/family/family.h): mbq for
 * the families the reference supports (internvl2, llava_onevision, llava, qwen2_vl), length for
 * the others (CLI.md). */
qv_pad_rule qv_pad_rule_for_model(const char *family);

/* The run as a JSON object with the YAML key names (for search.json's "config"). */
void qv_run_config_to_json(const qv_run_config *c, qv_strbuf *out);

const char *qv_calib_data_name(qv_calib_data v);
const char *qv_method_name(qv_method v);
const char *qv_loss_mode_name(qv_loss_mode v);
const char *qv_division_name(qv_division v);
const char *qv_pad_rule_name(qv_pad_rule v);
const char *qv_export_format_name(qv_export_format v);
const char *qv_run_dtype_name(qv_run_dtype v);

#endif
