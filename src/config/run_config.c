/* run_config.c — run configuration YAML: key table, typing, validation, defaults
 * (run_config.h; spec/CLI.md "CONFIG (YAML)", spec/ALGORITHMS.md §9.1–9.2). */
#include "run_config.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "../core/fsutil.h"
#include "../family/family.h"
#include "../io/yaml.h"

/* ---- names -------------------------------------------------------------------------------- */

/* Index = enum value; NULL marks the value `null` selects. */
static const char *const k_calib_data[] = {NULL, "coco", "sharegpt4v", "pileval"};
static const char *const k_method[] = {NULL, "rtn", "awq", "smoothquant", "mbq", "fp8"};
static const char *const k_loss_mode[] = {"mae", "mse"};
static const char *const k_division[] = {"cuda", "cpu"};
static const char *const k_dtype[] = {"auto", "float32", "bfloat16", "float16"};
static const char *const k_pad_rule[] = {NULL, "mbq", "length"};
static const char *const k_export[] = {NULL, "fake", "awq", "gptq", "compressed-tensors", "fp8", "mbq-pt"};
/* spec/CLI.md's `model:` values (MBQ's --model choices and qvlm's); a name any family of the
 * table answers to (src/family/family.h yaml_names) is accepted as well. */
static const char *const k_models[] = {"internvl2", "internvl3", "qwen2_vl", "llava_onevision",
                                       "llava", "qwen2", "llama"};

static const char *const k_ignored[] = {
    "config", "batch_size", "device", "tasks", "num_fewshot", "max_batch_size", "output_path", "limit",
    "use_cache", "cache_requests", "check_integrity", "write_out", "log_samples", "wandb_log_samples",
    "log_samples_suffix", "system_instruction", "apply_chat_template", "fewshot_as_multiturn", "show_config",
    "include_path", "gen_kwargs", "verbosity", "wandb_args", "timezone", "hf_hub_log_args", "predict_only",
    "trust_remote_code"};

static const char *enum_name(const char *const *names, size_t n, int v)
{
    return v >= 0 && (size_t)v < n && names[v] ? names[v] : "null";
}
const char *qv_calib_data_name(qv_calib_data v) { return enum_name(k_calib_data, QV_ARRAY_LEN(k_calib_data), v); }
const char *qv_method_name(qv_method v) { return enum_name(k_method, QV_ARRAY_LEN(k_method), v); }
const char *qv_loss_mode_name(qv_loss_mode v) { return enum_name(k_loss_mode, QV_ARRAY_LEN(k_loss_mode), v); }
const char *qv_division_name(qv_division v) { return enum_name(k_division, QV_ARRAY_LEN(k_division), v); }
const char *qv_pad_rule_name(qv_pad_rule v) { return v == QV_PAD_RULE_AUTO ? "auto" : k_pad_rule[v]; }
const char *qv_export_format_name(qv_export_format v) { return enum_name(k_export, QV_ARRAY_LEN(k_export), v); }
const char *qv_run_dtype_name(qv_run_dtype v) { return enum_name(k_dtype, QV_ARRAY_LEN(k_dtype), v); }

static bool in_list(const char *s, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] && strcmp(s, list[i]) == 0)
            return true;
    return false;
}

qv_pad_rule qv_pad_rule_for_model(const char *family)
{
    if (!family)
        return QV_PAD_RULE_LENGTH;
    const qv_family *f = qv_family_by_yaml_name(family);
    /* a spec name no qvlm family answers to (llava: LLaVA-1.5) is one of the reference's own
       wrappers, whose collators pad with id 0 (§8) */
    return f ? f->default_pad_rule : QV_PAD_RULE_MBQ;
}

bool qv_run_config_needs_calib(const qv_run_config *c)
{
    return c->run_process &&
           (c->method == QV_METHOD_AWQ || c->method == QV_METHOD_SMOOTHQUANT || c->method == QV_METHOD_MBQ);
}

void qv_run_config_defaults(qv_run_config *c)
{
    memset(c, 0, sizeof *c);
    c->calib_data = QV_CALIB_DATA_PILEVAL;
    c->n_samples = 128;
    c->method = QV_METHOD_AWQ;
    c->w_bit = 8;
    c->a_bit = 16;
    c->w_group = 128;
    c->alpha = 0.5;
    c->loss_mode = QV_LOSS_MODE_MAE;
    c->seed = 42;
    c->n_grid = 20;
    c->zero_point = true;
    c->division = QV_DIVISION_CUDA;
}

/* ---- key table ---------------------------------------------------------------------------- */

typedef enum key_kind {
    KEY_BOOL,
    KEY_INT,
    KEY_SEED,
    KEY_FLOAT,
    KEY_STR,
    KEY_ENUM,
    KEY_MODEL,     /* a string among names[] or the family table's run-config names */
    KEY_MODEL_ARGS,
    KEY_EXPORT
} key_kind;

typedef struct key_def {
    const char *name;
    key_kind kind;
    size_t off;
    const char *const *names; /* KEY_ENUM: value names; KEY_STR: allowed values (or NULL) */
    size_t n_names;
    int64_t min, max;         /* KEY_INT range */
    bool nullable;            /* KEY_INT: null → 0 */
} key_def;

/* w_group: -1 (per output channel) or a group of 32..4096 columns */
static bool w_group_ok(int64_t x) { return x == -1 || (x >= 32 && x <= 4096); }

#define OFF(f) offsetof(qv_run_config, f)
#define ENUM(n, f, names) {n, KEY_ENUM, OFF(f), names, QV_ARRAY_LEN(names), 0, 0, false}
#define INT(n, f, lo, hi, nul) {n, KEY_INT, OFF(f), NULL, 0, lo, hi, nul}
#define BOOL(n, f) {n, KEY_BOOL, OFF(f), NULL, 0, 0, 0, false}
#define STR(n, f) {n, KEY_STR, OFF(f), NULL, 0, 0, 0, false}

static const key_def k_keys[] = {
    {"model", KEY_MODEL, OFF(model), k_models, QV_ARRAY_LEN(k_models), 0, 0, false},
    {"model_args", KEY_MODEL_ARGS, OFF(model_args), NULL, 0, 0, 0, false},
    ENUM("calib_data", calib_data, k_calib_data),
    INT("n_samples", n_samples, 1, INT32_MAX, false),
    STR("data_path", data_path),
    STR("image_folder", image_folder),
    BOOL("few_shot_format", few_shot_format),
    BOOL("interleave_format", interleave_format),
    STR("text_data_path", text_data_path),
    ENUM("method", method, k_method),
    BOOL("run_process", run_process),
    INT("w_bit", w_bit, 1, 16, false),
    INT("w_group", w_group, -1, 4096, false), /* -1 or 32..4096: w_group_ok */
    INT("a_bit", a_bit, 1, 16, false),
    {"alpha", KEY_FLOAT, OFF(alpha), NULL, 0, 0, 0, false},
    BOOL("distort", distort),
    BOOL("reweight", reweight),
    ENUM("loss_mode", loss_mode, k_loss_mode),
    STR("scale_path", scale_path),
    BOOL("pseudo_quant", pseudo_quant),
    {"seed", KEY_SEED, OFF(seed), NULL, 0, 0, 0, false},
    INT("n_grid", n_grid, 1, 1000, false),
    BOOL("zero_point", zero_point),
    ENUM("division", division, k_division),
    ENUM("dtype", dtype, k_dtype),
    BOOL("auto_clip", auto_clip),
    INT("threads", threads, 1, 4096, true),
    INT("max_tiles", max_tiles, 1, 64, true),
    ENUM("pad_rule", pad_rule, k_pad_rule),
    STR("eval_data_path", eval_data_path),
    STR("eval_image_folder", eval_image_folder),
    {"export", KEY_EXPORT, OFF(export), NULL, 0, 0, 0, false},
};
enum { N_KEYS = QV_ARRAY_LEN(k_keys) };

static int key_index(const char *name)
{
    for (int i = 0; i < (int)N_KEYS; i++)
        if (strcmp(k_keys[i].name, name) == 0)
            return i;
    return -1;
}

/* ---- one run ------------------------------------------------------------------------------ */

typedef struct run_parse {
    qv_run_config *c;
    const char *file;
    size_t lines[N_KEYS]; /* 0 = key absent */
} run_parse;

static qv_status add_note(qv_run_config *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static qv_status add_note(qv_run_config *c, const char *fmt, ...)
{
    char buf[QV_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char **notes = qv_realloc(c->notes, (c->n_notes + 1) * sizeof *notes, "config notes");
    if (!notes)
        return QV_ERR_NOMEM;
    c->notes = notes;
    if (!(notes[c->n_notes] = qv_strdup(buf)))
        return QV_ERR_NOMEM;
    c->n_notes++;
    return QV_OK;
}

/* How a value reads in an error: "abc" / null / a list / a mapping. */
static void describe(const qv_yaml_node *v, char *buf, size_t n)
{
    if (v->kind == QV_YAML_KIND_SEQ)
        snprintf(buf, n, "a list");
    else if (v->kind == QV_YAML_KIND_MAP)
        snprintf(buf, n, "a mapping");
    else if (qv_yaml_type_of(v) == QV_YAML_TYPE_NULL)
        snprintf(buf, n, "null");
    else
        snprintf(buf, n, "\"%.200s\"%s", v->text, v->quoted ? " (a quoted string)" : "");
}

static qv_status type_error(const run_parse *rp, const char *key, const qv_yaml_node *v, const char *expected)
{
    char got[256];
    describe(v, got, sizeof got);
    return qv_fail(QV_ERR_INVALID, "%s:%zu: key \"%s\": expected %s, got %s", rp->file, v->line, key, expected, got);
}

static bool is_null(const qv_yaml_node *v)
{
    return v->kind == QV_YAML_KIND_SCALAR && qv_yaml_type_of(v) == QV_YAML_TYPE_NULL;
}

/* String value: NULL for null or "". Booleans and collections are type errors. */
static qv_status get_str(const run_parse *rp, const char *key, const qv_yaml_node *v, char **out)
{
    *out = NULL;
    if (v->kind != QV_YAML_KIND_SCALAR || qv_yaml_type_of(v) == QV_YAML_TYPE_BOOL)
        return type_error(rp, key, v, "a string");
    if (is_null(v) || v->len == 0)
        return QV_OK;
    *out = qv_strdup(v->text);
    return *out ? QV_OK : QV_ERR_NOMEM;
}

static qv_status get_enum(const run_parse *rp, const char *key, const qv_yaml_node *v, const char *const *names,
                          size_t n, int *out)
{
    if (v->kind == QV_YAML_KIND_SCALAR && is_null(v) && !names[0])
        return *out = 0, QV_OK;
    char list[256] = "";
    for (size_t i = 0; i < n; i++) {
        if (!names[i])
            continue;
        if (v->kind == QV_YAML_KIND_SCALAR && strcmp(v->text, names[i]) == 0)
            return *out = (int)i, QV_OK;
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", list[0] ? ", " : "", names[i]);
    }
    if (!names[0])
        snprintf(list + strlen(list), sizeof list - strlen(list), ", null");
    char expected[300];
    snprintf(expected, sizeof expected, "one of %s", list);
    return type_error(rp, key, v, expected);
}

/* model_args: lmms-eval's "k=v,k=v" string; pretrained (quotes optional) names the model. */
static qv_status parse_model_args(run_parse *rp, const qv_yaml_node *v)
{
    qv_run_config *c = rp->c;
    QV_TRY(get_str(rp, "model_args", v, &c->model_args));
    if (!c->model_args)
        return QV_OK;
    const char *s = c->model_args;
    while (*s) {
        /* one entry: up to a comma outside quotes */
        const char *b = s;
        char q = 0;
        for (; *s && (q || *s != ','); s++)
            if (q ? *s == q : (*s == '"' || *s == '\''))
                q = q ? 0 : *s;
        if (q)
            return qv_fail(QV_ERR_INVALID, "%s:%zu: key \"model_args\": unterminated quote", rp->file, v->line);
        const char *e = s;
        if (*s == ',')
            s++;
        while (b < e && (*b == ' ' || *b == '\t'))
            b++;
        while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (b == e)
            continue; /* lmms-eval skips empty entries */
        const char *eq = memchr(b, '=', (size_t)(e - b));
        if (!eq)
            return qv_fail(QV_ERR_INVALID, "%s:%zu: key \"model_args\": expected k=v entries, got \"%.*s\"", rp->file,
                           v->line, (int)(e - b), b);
        const char *vb = eq + 1, *ve = e;
        if (ve - vb >= 2 && (*vb == '"' || *vb == '\'') && ve[-1] == *vb)
            vb++, ve--;
        if ((size_t)(eq - b) == strlen("pretrained") && memcmp(b, "pretrained", (size_t)(eq - b)) == 0) {
            if (c->pretrained)
                return qv_fail(QV_ERR_INVALID, "%s:%zu: key \"model_args\": pretrained given twice", rp->file, v->line);
            if (ve == vb)
                return qv_fail(QV_ERR_INVALID, "%s:%zu: key \"model_args\": empty pretrained path", rp->file, v->line);
            if (!(c->pretrained = qv_strndup(vb, (size_t)(ve - vb))))
                return QV_ERR_NOMEM;
        } else {
            QV_TRY(add_note(c, "%s:%zu: model_args: %.*s ignored (qvlm loads the model itself, on the CPU)", rp->file,
                            v->line, (int)(e - b), b));
        }
    }
    if (!c->pretrained)
        return qv_fail(QV_ERR_INVALID, "%s:%zu: key \"model_args\": no pretrained=\"path/to/model\" entry", rp->file,
                       v->line);
    return QV_OK;
}

static qv_status parse_export(run_parse *rp, const qv_yaml_node *v)
{
    qv_run_config *c = rp->c;
    if (is_null(v))
        return QV_OK;
    if (v->kind != QV_YAML_KIND_MAP)
        return type_error(rp, "export", v, "a mapping {format, path, recipe}");
    size_t format_line = 0, path_line = 0;
    for (size_t i = 0; i < qv_yaml_map_len(v); i++) {
        const qv_yaml_node *k = v->kids[2 * i], *x = v->kids[2 * i + 1];
        if (strcmp(k->text, "format") == 0) {
            int f;
            QV_TRY(get_enum(rp, "export.format", x, k_export, QV_ARRAY_LEN(k_export), &f));
            c->export.format = (qv_export_format)f;
            format_line = k->line;
        } else if (strcmp(k->text, "path") == 0) {
            QV_TRY(get_str(rp, "export.path", x, &c->export.path));
            path_line = k->line;
        } else if (strcmp(k->text, "recipe") == 0) {
            QV_TRY(get_str(rp, "export.recipe", x, &c->export.recipe));
        } else {
            return qv_fail(QV_ERR_INVALID, "%s:%zu: unknown key \"export.%s\"", rp->file, k->line, k->text);
        }
    }
    size_t key_line = rp->lines[key_index("export")];
    if (c->export.format == QV_EXPORT_FORMAT_NONE && (c->export.path || c->export.recipe))
        return qv_fail(QV_ERR_INVALID, "%s:%zu: key \"export.format\" is required (one of fake, awq, gptq, "
                                       "compressed-tensors, fp8, mbq-pt)", rp->file, format_line ? format_line : key_line);
    if (c->export.format != QV_EXPORT_FORMAT_NONE && !c->export.path)
        return qv_fail(QV_ERR_INVALID, "%s:%zu: key \"export.path\" is required", rp->file,
                       path_line ? path_line : key_line);
    return QV_OK;
}

static qv_status set_key(run_parse *rp, const key_def *kd, const qv_yaml_node *v)
{
    char *base = (char *)rp->c;
    void *dst = base + kd->off;
    switch (kd->kind) {
    case KEY_BOOL: {
        bool b;
        if (v->kind != QV_YAML_KIND_SCALAR || !qv_yaml_bool(v, &b))
            return type_error(rp, kd->name, v, "a boolean (true or false)");
        *(bool *)dst = b;
        return QV_OK;
    }
    case KEY_INT: {
        int64_t x;
        bool overflow = false;
        if (kd->nullable && is_null(v)) {
            x = 0;
        } else if (v->kind != QV_YAML_KIND_SCALAR || !qv_yaml_int(v, &x, &overflow) || x < kd->min || x > kd->max ||
                   (kd->off == OFF(w_group) && !w_group_ok(x))) {
            if (v->kind == QV_YAML_KIND_SCALAR && (overflow || qv_yaml_type_of(v) == QV_YAML_TYPE_INT)) {
                char range[64];
                if (kd->off == OFF(w_group))
                    snprintf(range, sizeof range, "-1 or 32..4096");
                else
                    snprintf(range, sizeof range, "%lld..%lld", (long long)kd->min, (long long)kd->max);
                return qv_fail(QV_ERR_INVALID, "%s:%zu: key \"%s\": %s is out of range (%s)", rp->file, v->line,
                               kd->name, v->text, range);
            }
            return type_error(rp, kd->name, v, kd->nullable ? "an integer or null" : "an integer");
        }
        if (kd->off == OFF(n_samples))
            *(int64_t *)dst = x;
        else
            *(int *)dst = (int)x;
        return QV_OK;
    }
    case KEY_SEED: {
        bool overflow = false;
        if (v->kind != QV_YAML_KIND_SCALAR || !qv_yaml_uint64(v, (uint64_t *)dst, &overflow)) {
            if (overflow)
                return qv_fail(QV_ERR_INVALID, "%s:%zu: key \"seed\": %s is out of range (0..2^64-1)", rp->file,
                               v->line, v->text);
            return type_error(rp, kd->name, v, "a non-negative integer");
        }
        return QV_OK;
    }
    case KEY_FLOAT: {
        double x;
        if (v->kind != QV_YAML_KIND_SCALAR || !qv_yaml_number(v, &x))
            return type_error(rp, kd->name, v, "a number");
        if (!(x >= 0.0 && x <= 1.0)) /* SmoothQuant's migration strength */
            return qv_fail(QV_ERR_INVALID, "%s:%zu: key \"%s\": %s is out of range (0..1)", rp->file, v->line,
                           kd->name, v->text);
        *(double *)dst = x;
        return QV_OK;
    }
    case KEY_STR:
    case KEY_MODEL: {
        char **s = dst;
        qv_free(*s);
        *s = NULL;
        QV_TRY(get_str(rp, kd->name, v, s));
        if (*s && kd->names && !in_list(*s, kd->names, kd->n_names) &&
            !(kd->kind == KEY_MODEL && qv_family_by_yaml_name(*s))) {
            char list[512] = "";
            for (size_t i = 0; i < kd->n_names; i++)
                snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", kd->names[i]);
            for (size_t f = 0; kd->kind == KEY_MODEL && f < qv_family_count(); f++)
                for (const char *const *y = qv_family_at(f)->yaml_names; y && *y; y++)
                    if (!in_list(*y, kd->names, kd->n_names) && qv_family_by_yaml_name(*y) == qv_family_at(f))
                        snprintf(list + strlen(list), sizeof list - strlen(list), ", %s", *y);
            char expected[540];
            snprintf(expected, sizeof expected, "one of %s", list);
            return type_error(rp, kd->name, v, expected);
        }
        return QV_OK;
    }
    case KEY_ENUM: {
        int x;
        QV_TRY(get_enum(rp, kd->name, v, kd->names, kd->n_names, &x));
        *(int *)dst = x;
        return QV_OK;
    }
    case KEY_MODEL_ARGS:
        return parse_model_args(rp, v);
    case KEY_EXPORT:
        return parse_export(rp, v);
    }
    return qv_fail(QV_ERR_INTERNAL, "run config: bad key kind");
}

#define LINE_OR(rp, key, fallback) ((rp)->lines[key_index(key)] ? (rp)->lines[key_index(key)] : (fallback))

/* Checks that need several keys (but not the model). */
static qv_status validate(run_parse *rp, size_t map_line)
{
    qv_run_config *c = rp->c;
    const char *f = rp->file;
    if (!c->pretrained)
        return qv_fail(QV_ERR_INVALID, "%s:%zu: key \"model_args\" is required (model_args: pretrained=\"path/to/model\")",
                       f, map_line);
    if (c->few_shot_format && c->interleave_format) {
        size_t l = QV_MAX(LINE_OR(rp, "few_shot_format", map_line), LINE_OR(rp, "interleave_format", map_line));
        return qv_fail(QV_ERR_INVALID, "%s:%zu: keys \"few_shot_format\" and \"interleave_format\" cannot both be true",
                       f, l);
    }
    const char *fmt_key = c->few_shot_format ? "few_shot_format" : c->interleave_format ? "interleave_format" : NULL;
    if (fmt_key && c->calib_data != QV_CALIB_DATA_COCO && c->calib_data != QV_CALIB_DATA_SHAREGPT4V)
        return qv_fail(QV_ERR_INVALID, "%s:%zu: key \"%s\" needs calib_data coco or sharegpt4v (image-caption data)", f,
                       LINE_OR(rp, fmt_key, map_line), fmt_key);
    if (qv_run_config_needs_calib(c)) {
        size_t ml = LINE_OR(rp, "method", map_line);
        if (c->calib_data == QV_CALIB_DATA_NONE)
            return qv_fail(QV_ERR_INVALID, "%s:%zu: key \"calib_data\": method %s with run_process needs calibration data",
                           f, LINE_OR(rp, "calib_data", ml), qv_method_name(c->method));
        if (!c->data_path)
            return qv_fail(QV_ERR_INVALID, "%s:%zu: key \"data_path\" is required: calib_data %s reads %s", f,
                           LINE_OR(rp, "data_path", ml), qv_calib_data_name(c->calib_data),
                           c->calib_data == QV_CALIB_DATA_PILEVAL
                               ? "a local text JSONL (qvlm does not download pile-val)"
                               : "a caption JSON/JSONL file");
        if (c->interleave_format && !c->text_data_path)
            return qv_fail(QV_ERR_INVALID,
                           "%s:%zu: key \"text_data_path\" is required with interleave_format (a local pile-val JSONL)",
                           f, LINE_OR(rp, "text_data_path", LINE_OR(rp, "interleave_format", map_line)));
        if (c->reweight && c->method == QV_METHOD_MBQ && c->calib_data == QV_CALIB_DATA_PILEVAL)
            return qv_fail(QV_ERR_INVALID,
                           "%s:%zu: key \"reweight\": calib_data pileval has no vision or caption tokens to reweight",
                           f, LINE_OR(rp, "reweight", map_line));
    }
    return QV_OK;
}

static bool is_ignored(const char *key) { return in_list(key, k_ignored, QV_ARRAY_LEN(k_ignored)); }

static qv_status parse_run(const char *file, const qv_yaml_node *map, size_t index, qv_run_config *c)
{
    qv_run_config_defaults(c);
    c->index = index;
    c->line = map->line;
    if (!(c->file = qv_strdup(file)))
        return QV_ERR_NOMEM;
    run_parse rp = {.c = c, .file = file};
    for (size_t i = 0; i < qv_yaml_map_len(map); i++) {
        const qv_yaml_node *k = map->kids[2 * i], *v = map->kids[2 * i + 1];
        int ki = key_index(k->text);
        if (ki < 0) {
            if (!is_ignored(k->text))
                return qv_fail(QV_ERR_INVALID, "%s:%zu: unknown key \"%s\"", file, k->line, k->text);
            QV_TRY(add_note(c, "%s:%zu: key \"%s\" (an evaluation-harness or loader option) is not used by qvlm; ignored", file,
                            k->line, k->text));
            continue;
        }
        rp.lines[ki] = k->line;
        QV_TRY(set_key(&rp, &k_keys[ki], v));
    }
    QV_TRY(validate(&rp, map->line));
    if (c->pad_rule == QV_PAD_RULE_AUTO && c->model)
        c->pad_rule = qv_pad_rule_for_model(c->model);
    if (c->scale_path) {
        size_t n = strlen(c->scale_path);
        bool pt = n > 3 && strcmp(c->scale_path + n - 3, ".pt") == 0;
        if (!(c->scale_dir = qv_strndup(c->scale_path, pt ? n - 3 : n)))
            return QV_ERR_NOMEM;
    }
    return QV_OK;
}

/* ---- documents ---------------------------------------------------------------------------- */

static void run_free(qv_run_config *c)
{
    char **strs[] = {&c->file, &c->model, &c->model_args, &c->pretrained, &c->data_path, &c->image_folder,
                     &c->text_data_path, &c->scale_path, &c->scale_dir, &c->eval_data_path,
                     &c->eval_image_folder, &c->export.path, &c->export.recipe};
    for (size_t i = 0; i < QV_ARRAY_LEN(strs); i++)
        qv_free(*strs[i]);
    for (size_t i = 0; i < c->n_notes; i++)
        qv_free(c->notes[i]);
    qv_free(c->notes);
}

void qv_run_configs_free(qv_run_config *runs, size_t n)
{
    if (!runs)
        return;
    for (size_t i = 0; i < n; i++)
        run_free(&runs[i]);
    qv_free(runs);
}

qv_status qv_run_config_parse(const char *text, size_t len, const char *file, qv_run_config **runs, size_t *n)
{
    *runs = NULL;
    *n = 0;
    qv_yaml_node *root;
    QV_TRY(qv_yaml_parse(text, len, file, &root));
    qv_status st = QV_OK;
    const qv_yaml_node *const *maps = NULL;
    size_t n_maps = 0;
    if (!root || is_null(root)) {
        st = qv_fail(QV_ERR_INVALID, "%s:%zu: empty configuration", file, root ? root->line : 1);
    } else if (root->kind == QV_YAML_KIND_MAP) {
        maps = (const qv_yaml_node *const *)&root;
        n_maps = 1;
    } else if (root->kind == QV_YAML_KIND_SEQ) {
        maps = (const qv_yaml_node *const *)root->kids;
        n_maps = root->n_kids;
        if (n_maps == 0)
            st = qv_fail(QV_ERR_INVALID, "%s:%zu: empty list of runs", file, root->line);
        else if (n_maps > QV_RUN_CONFIG_MAX_RUNS)
            st = qv_fail(QV_ERR_INVALID, "%s:%zu: more than %d runs", file, root->line, QV_RUN_CONFIG_MAX_RUNS);
        for (size_t i = 0; st == QV_OK && i < n_maps; i++)
            if (maps[i]->kind != QV_YAML_KIND_MAP)
                st = qv_fail(QV_ERR_INVALID, "%s:%zu: run %zu: expected a mapping of keys", file, maps[i]->line, i);
    } else {
        st = qv_fail(QV_ERR_INVALID, "%s:%zu: expected a mapping of keys or a list of mappings", file, root->line);
    }
    qv_run_config *out = NULL;
    if (st == QV_OK && !(out = qv_calloc(n_maps, sizeof *out, "run configs")))
        st = QV_ERR_NOMEM;
    for (size_t i = 0; st == QV_OK && i < n_maps; i++)
        st = parse_run(file, maps[i], i, &out[i]);
    qv_yaml_free(root);
    if (st != QV_OK) {
        qv_run_configs_free(out, out ? n_maps : 0); /* unparsed runs are still zeroed */
        return st;
    }
    *runs = out;
    *n = n_maps;
    return QV_OK;
}

qv_status qv_run_config_load(const char *path, qv_run_config **runs, size_t *n)
{
    char *text;
    size_t len;
    *runs = NULL;
    *n = 0;
    QV_TRY(qv_read_file(path, QV_RUN_CONFIG_MAX_FILE, &text, &len));
    qv_status st = qv_run_config_parse(text, len, path, runs, n);
    qv_free(text);
    return st;
}

/* ---- JSON --------------------------------------------------------------------------------- */

static void json_key(qv_strbuf *b, const char *k, bool *first)
{
    qv_sb_puts(b, *first ? "{" : ", ");
    *first = false;
    qv_sb_json_str(b, k, strlen(k));
    qv_sb_puts(b, ": ");
}

static void json_strv(qv_strbuf *b, const char *s)
{
    if (s)
        qv_sb_json_str(b, s, strlen(s));
    else
        qv_sb_puts(b, "null");
}

/* 0 means "unset" for threads and max_tiles */
static void json_int_or_null(qv_strbuf *b, int v)
{
    if (v)
        qv_sb_printf(b, "%d", v);
    else
        qv_sb_puts(b, "null");
}

void qv_run_config_to_json(const qv_run_config *c, qv_strbuf *b)
{
    bool first = true;
#define JS(k, v) (json_key(b, k, &first), json_strv(b, v))
#define JB(k, v) (json_key(b, k, &first), qv_sb_puts(b, (v) ? "true" : "false"))
#define JI(k, v) (json_key(b, k, &first), qv_sb_printf(b, "%lld", (long long)(v)))
#define JE(k, v, name) (json_key(b, k, &first), json_strv(b, (v) ? name : NULL))
    JS("model", c->model);
    JS("model_args", c->model_args);
    JE("calib_data", c->calib_data != QV_CALIB_DATA_NONE, qv_calib_data_name(c->calib_data));
    JI("n_samples", c->n_samples);
    JS("data_path", c->data_path);
    JS("image_folder", c->image_folder);
    JB("few_shot_format", c->few_shot_format);
    JB("interleave_format", c->interleave_format);
    JS("text_data_path", c->text_data_path);
    JE("method", c->method != QV_METHOD_NONE, qv_method_name(c->method));
    JB("run_process", c->run_process);
    JI("w_bit", c->w_bit);
    JI("w_group", c->w_group);
    JI("a_bit", c->a_bit);
    json_key(b, "alpha", &first);
    qv_sb_json_double(b, c->alpha);
    JB("distort", c->distort);
    JB("reweight", c->reweight);
    JS("loss_mode", qv_loss_mode_name(c->loss_mode));
    JS("scale_path", c->scale_path);
    JB("pseudo_quant", c->pseudo_quant);
    json_key(b, "seed", &first);
    qv_sb_printf(b, "%llu", (unsigned long long)c->seed);
    JI("n_grid", c->n_grid);
    JB("zero_point", c->zero_point);
    JS("division", qv_division_name(c->division));
    JS("dtype", qv_run_dtype_name(c->dtype));
    JB("auto_clip", c->auto_clip);
    json_key(b, "threads", &first);
    json_int_or_null(b, c->threads);
    json_key(b, "max_tiles", &first);
    json_int_or_null(b, c->max_tiles);
    JE("pad_rule", c->pad_rule != QV_PAD_RULE_AUTO, qv_pad_rule_name(c->pad_rule));
    JS("eval_data_path", c->eval_data_path);
    JS("eval_image_folder", c->eval_image_folder);
    json_key(b, "export", &first);
    if (c->export.format == QV_EXPORT_FORMAT_NONE) {
        qv_sb_puts(b, "null");
    } else {
        bool f2 = true;
        json_key(b, "format", &f2);
        json_strv(b, qv_export_format_name(c->export.format));
        json_key(b, "path", &f2);
        json_strv(b, c->export.path);
        json_key(b, "recipe", &f2);
        json_strv(b, c->export.recipe);
        qv_sb_puts(b, "}");
    }
    qv_sb_puts(b, "}");
#undef JS
#undef JB
#undef JI
#undef JE
}
