/* test_run_config.c — run configuration YAML (src/config/run_config.h, src/io/yaml.h): the MBQ
 * reference's shipped configs and qvlm's own parse; defaults (spec/ALGORITHMS.md §9.1, CLI.md);
 * PyYAML typing; every error kind with its exact one-line message and line number; a list of
 * mappings; bounded behaviour on mutated input. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/run_config.h"
#include "io/yaml.h"

#define MIN_YAML "model_args: pretrained=m\n"

static qv_run_config *parse_ok(const char *yaml, size_t *n)
{
    qv_run_config *runs = NULL;
    qv_status st = qv_run_config_parse(yaml, strlen(yaml), "cfg.yaml", &runs, n);
    cr_assert_eq(st, QV_OK, "parse failed: %s\n--- input:\n%s", qv_last_error(), yaml);
    return runs;
}

static void expect_error(const char *yaml, const char *msg)
{
    qv_run_config *runs = NULL;
    size_t n = 99;
    qv_status st = qv_run_config_parse(yaml, strlen(yaml), "cfg.yaml", &runs, &n);
    cr_expect_neq(st, QV_OK, "accepted:\n%s", yaml);
    cr_expect_null(runs);
    cr_expect_eq(n, 0);
    cr_expect_str_eq(qv_last_error(), msg, "got: %s\n--- input:\n%s", qv_last_error(), yaml);
    cr_expect_null(strchr(qv_last_error(), '\n'));
}

/* ---- shipped configs ---------------------------------------------------------------------- */

static qv_run_config *load_one(const char *rel)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", QV_SOURCE_DIR, rel);
    qv_run_config *runs = NULL;
    size_t n = 0;
    cr_assert_eq(qv_run_config_load(path, &runs, &n), QV_OK, "%s: %s", rel, qv_last_error());
    cr_assert_eq(n, 1, "%s", rel);
    return runs;
}

/* Loads every *.yaml under dir (recursively); returns how many. */
static int load_tree(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "cannot open %s", dir);
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        size_t len = strlen(e->d_name);
        if (len > 5 && strcmp(e->d_name + len - 5, ".yaml") == 0) {
            qv_run_config *runs = NULL;
            size_t n = 0;
            cr_expect_eq(qv_run_config_load(path, &runs, &n), QV_OK, "%s: %s", path, qv_last_error());
            cr_expect_eq(n, 1, "%s", path);
            if (n == 1) {
                cr_expect_not_null(runs[0].pretrained, "%s", path);
                cr_expect_not_null(runs[0].scale_path, "%s", path);
            }
            qv_run_configs_free(runs, n);
            count++;
        } else if (e->d_type == DT_DIR) {
            count += load_tree(path);
        }
    }
    closedir(d);
    return count;
}

Test(run_config, every_mbq_config_parses)
{
    cr_expect_eq(load_tree(QV_SOURCE_DIR "/configs/mbq"), 15);
}

Test(run_config, qvlm_fixture_configs_parse)
{
    /* mbq_w3g128, mbq_w4a8, awq_w3g128, rtn_w3g128, smoothquant_w8a8, smoothquant_w4a8 */
    cr_expect_eq(load_tree(QV_SOURCE_DIR "/configs/internvl2-internlm2-tiny"), 6);
    cr_expect_eq(load_tree(QV_SOURCE_DIR "/configs/internvl2-qwen2-tiny"), 6);
    qv_run_config *c = load_one("configs/internvl2-qwen2-tiny/mbq_w4a8.yaml");
    cr_expect_str_eq(c->pretrained, "tests/fixtures/models/internvl2-qwen2-tiny");
    cr_expect_eq(c->calib_data, QV_CALIB_DATA_SHAREGPT4V);
    cr_expect_eq(c->n_samples, 4);
    cr_expect_eq(c->w_bit, 4);
    cr_expect_eq(c->a_bit, 8);
    cr_expect(qv_run_config_is_wa(c));
    cr_expect(qv_run_config_needs_calib(c));
    cr_expect_null(c->text_data_path); /* "" = unset */
    qv_run_configs_free(c, 1);
    c = load_one("configs/internvl2-internlm2-tiny/rtn_w3g128.yaml");
    cr_expect_eq(c->method, QV_METHOD_RTN);
    cr_expect(!qv_run_config_needs_calib(c));
    cr_expect(c->pseudo_quant);
    qv_run_configs_free(c, 1);
    c = load_one("configs/internvl2-internlm2-tiny/smoothquant_w4a8.yaml");
    cr_expect_eq(c->method, QV_METHOD_SMOOTHQUANT);
    cr_expect_eq(c->alpha, 0.5);
    cr_expect_eq(c->w_bit, 4);
    cr_expect_eq(c->a_bit, 8);
    cr_expect_eq(c->n_samples, 4);
    cr_expect(c->run_process);
    cr_expect(qv_run_config_needs_calib(c));
    qv_run_configs_free(c, 1);
}

Test(run_config, mbq_weight_only_values)
{
    qv_run_config *c = load_one("configs/mbq/internvl2/MBQ_search/8b_weight_only.yaml");
    cr_expect_str_eq(c->model, "internvl2");
    cr_expect_str_eq(c->model_args, "pretrained=\"OpenGVLab/InternVL2-8B\"");
    cr_expect_str_eq(c->pretrained, "OpenGVLab/InternVL2-8B");
    cr_expect_eq(c->calib_data, QV_CALIB_DATA_COCO);
    cr_expect_eq(c->n_samples, 128);
    cr_expect_str_eq(c->data_path, "tests/fixtures/calib/captions_sharegpt4v.json");
    cr_expect_str_eq(c->image_folder, "tests/fixtures/calib/images");
    cr_expect(!c->few_shot_format && !c->interleave_format);
    cr_expect_null(c->text_data_path);
    cr_expect_eq(c->method, QV_METHOD_MBQ);
    cr_expect(c->run_process && !c->pseudo_quant);
    cr_expect_eq(c->w_bit, 3);
    cr_expect_eq(c->w_group, 128);
    cr_expect_eq(c->a_bit, 16);
    cr_expect(!qv_run_config_is_wa(c));
    cr_expect(!c->distort && c->reweight);
    cr_expect_eq(c->loss_mode, QV_LOSS_MODE_MAE);
    cr_expect_str_eq(c->scale_path, "scale_cache/mbq/internvl2_8b_w3g128.pt");
    cr_expect_str_eq(c->scale_dir, "scale_cache/mbq/internvl2_8b_w3g128");
    cr_expect_eq(c->pad_rule, QV_PAD_RULE_MBQ);
    cr_expect_eq(c->n_notes, 0);
    cr_expect_eq(c->line, 4); /* two header comment lines, then "# model args" */
    qv_run_configs_free(c, 1);
}

Test(run_config, mbq_device_map_and_eval_keys_are_notes)
{
    qv_run_config *c = load_one("configs/mbq/qwen2_vl/MBQ_search/72b_weight_activation.yaml");
    cr_expect_str_eq(c->pretrained, "Qwen/Qwen2-VL-72B-Instruct");
    cr_expect_eq(c->w_bit, 4);
    cr_expect_eq(c->a_bit, 8);
    cr_expect_eq(c->w_group, 128); /* W-A files omit w_group */
    cr_assert_eq(c->n_notes, 1);
    cr_expect_not_null(strstr(c->notes[0], "72b_weight_activation.yaml:5: model_args: device_map=auto ignored"),
                       "%s", c->notes[0]);
    qv_run_configs_free(c, 1);

    c = load_one("configs/mbq/llava_onevision/Eval/eval.yaml");
    cr_expect_str_eq(c->model, "llava_onevision");
    cr_expect(!c->run_process && c->pseudo_quant);
    cr_expect_str_eq(c->scale_dir, "scale_cache/mbq/llava_ov_7b_w3g128");
    const char *keys[] = {"tasks", "batch_size", "log_samples", "log_samples_suffix", "output_path"};
    cr_assert_eq(c->n_notes, 5);
    for (int i = 0; i < 5; i++)
        cr_expect_not_null(strstr(c->notes[i], keys[i]), "%s", c->notes[i]);
    cr_expect_not_null(strstr(c->notes[0], "eval.yaml:8: key \"tasks\""), "%s", c->notes[0]);
    qv_run_configs_free(c, 1);
}

/* ---- defaults and typing ------------------------------------------------------------------ */

Test(run_config, defaults)
{
    size_t n;
    qv_run_config *c = parse_ok(MIN_YAML, &n);
    cr_assert_eq(n, 1);
    cr_expect_null(c->model);
    cr_expect_str_eq(c->pretrained, "m");
    cr_expect_eq(c->calib_data, QV_CALIB_DATA_PILEVAL);
    cr_expect_eq(c->n_samples, 128);
    cr_expect_null(c->data_path);
    cr_expect_null(c->image_folder);
    cr_expect(!c->few_shot_format && !c->interleave_format);
    cr_expect_eq(c->method, QV_METHOD_AWQ);
    cr_expect(!c->run_process && !c->pseudo_quant);
    cr_expect_eq(c->w_bit, 8);
    cr_expect_eq(c->a_bit, 16);
    cr_expect_eq(c->w_group, 128);
    cr_expect_eq(c->alpha, 0.5);
    cr_expect(!c->distort && !c->reweight);
    cr_expect_eq(c->loss_mode, QV_LOSS_MODE_MAE);
    cr_expect_null(c->scale_path);
    cr_expect_null(c->scale_dir);
    cr_expect_eq(c->seed, 42);
    cr_expect_eq(c->n_grid, 20);
    cr_expect(c->zero_point);
    cr_expect_eq(c->division, QV_DIVISION_CUDA);
    cr_expect(!c->auto_clip);
    cr_expect_eq(c->threads, 0);
    cr_expect_eq(c->max_tiles, 0);
    cr_expect_eq(c->pad_rule, QV_PAD_RULE_AUTO); /* no model: the checkpoint's family decides */
    cr_expect_eq(c->export.format, QV_EXPORT_FORMAT_NONE);
    cr_expect_eq(c->n_notes, 0);
    qv_run_configs_free(c, n);
}

Test(run_config, qvlm_keys)
{
    size_t n;
    qv_run_config *c = parse_ok(MIN_YAML "model: internvl3\nseed: 18446744073709551615\nn_grid: 40\n"
                                         "zero_point: False\ndivision: cpu\nauto_clip: True\nthreads: 8\n"
                                         "max_tiles: 6\neval_data_path: held/out.jsonl\neval_image_folder: imgs\n"
                                         "export:\n  format: compressed-tensors\n  path: out/m-ct\n"
                                         "  recipe: recipe.yaml\n",
                                &n);
    cr_expect_eq(c->seed, UINT64_MAX);
    cr_expect_eq(c->n_grid, 40);
    cr_expect(!c->zero_point);
    cr_expect_eq(c->division, QV_DIVISION_CPU);
    cr_expect(c->auto_clip);
    cr_expect_eq(c->threads, 8);
    cr_expect_eq(c->max_tiles, 6);
    cr_expect_eq(c->pad_rule, QV_PAD_RULE_LENGTH); /* internvl3 is not a reference family */
    cr_expect_str_eq(c->eval_data_path, "held/out.jsonl");
    cr_expect_str_eq(c->eval_image_folder, "imgs");
    cr_expect_eq(c->export.format, QV_EXPORT_FORMAT_COMPRESSED_TENSORS);
    cr_expect_str_eq(c->export.path, "out/m-ct");
    cr_expect_str_eq(c->export.recipe, "recipe.yaml");
    qv_run_configs_free(c, n);

    c = parse_ok(MIN_YAML "model: qwen2_vl\npad_rule: length\nthreads: null\nmethod: null\ncalib_data: null\n", &n);
    cr_expect_eq(c->pad_rule, QV_PAD_RULE_LENGTH); /* explicit beats the family default */
    cr_expect_eq(c->method, QV_METHOD_NONE);
    cr_expect_eq(c->calib_data, QV_CALIB_DATA_NONE);
    qv_run_configs_free(c, n);
}

Test(run_config, pyyaml_typing)
{
    size_t n;
    /* YAML 1.1 as PyYAML reads it: yes/on booleans, 0x and leading-0 octal ints, `_` separators;
     * alpha takes ints, dotted floats and (extension) exponent-only literals */
    qv_run_config *c = parse_ok(MIN_YAML "method: rtn\nreweight: yes\ndistort: off\nrun_process: ON\nw_group: 0x80\nw_bit: 010\n"
                                         "n_samples: 1_024\nalpha: 1\nseed: 0b101\n",
                                &n);
    cr_expect(c->reweight && !c->distort && c->run_process);
    cr_expect_eq(c->w_group, 128);
    cr_expect_eq(c->w_bit, 8);
    cr_expect_eq(c->n_samples, 1024);
    cr_expect_eq(c->alpha, 1.0);
    cr_expect_eq(c->seed, 5);
    qv_run_configs_free(c, n);
    const char *alphas[] = {"alpha: 0.85\n", "alpha: .85\n", "alpha: 8.5e-1\n", "alpha: 85e-2\n", "alpha: 8.5E-1\n"};
    for (size_t i = 0; i < 5; i++) {
        char buf[256];
        snprintf(buf, sizeof buf, MIN_YAML "%s", alphas[i]);
        c = parse_ok(buf, &n);
        cr_expect_float_eq(c->alpha, 0.85, 1e-15, "%s", alphas[i]);
        qv_run_configs_free(c, n);
    }
    /* numbers as path text; "" and null unset a path */
    c = parse_ok(MIN_YAML "scale_path: 2024\ndata_path: ''\nimage_folder: ~\ntext_data_path: \"pile.jsonl\"\n", &n);
    cr_expect_str_eq(c->scale_path, "2024");
    cr_expect_null(c->data_path);
    cr_expect_null(c->image_folder);
    cr_expect_str_eq(c->text_data_path, "pile.jsonl");
    qv_run_configs_free(c, n);
}

Test(run_config, model_args_forms)
{
    static const struct {
        const char *args, *want;
        size_t notes;
    } cases[] = {
        {"model_args: pretrained=\"path/to/m\"\n", "path/to/m", 0},
        {"model_args: pretrained=path/to/m\n", "path/to/m", 0},
        {"model_args: pretrained='a,b',device_map=auto\n", "a,b", 1},
        {"model_args: 'device_map=auto, pretrained=\"x y\" ,,dtype=bfloat16'\n", "x y", 2},
        {"model_args: \"pretrained=\\\"q\\\"\"\n", "q", 0},
    };
    for (size_t i = 0; i < QV_ARRAY_LEN(cases); i++) {
        size_t n;
        qv_run_config *c = parse_ok(cases[i].args, &n);
        cr_expect_str_eq(c->pretrained, cases[i].want, "%s", cases[i].args);
        cr_expect_eq(c->n_notes, cases[i].notes, "%s", cases[i].args);
        qv_run_configs_free(c, n);
    }
}

/* ---- several runs ------------------------------------------------------------------------- */

Test(run_config, list_of_mappings)
{
    size_t n;
    qv_run_config *r = parse_ok("- model_args: pretrained=a\n"
                                "  w_bit: 3\n"
                                "  method: rtn\n"
                                "- model_args: pretrained=b\n"
                                "  a_bit: 8\n"
                                "- {model_args: pretrained=c, alpha: 0.75, method: smoothquant}\n",
                                &n);
    cr_assert_eq(n, 3);
    cr_expect_str_eq(r[0].pretrained, "a");
    cr_expect_eq(r[0].w_bit, 3);
    cr_expect_eq(r[0].method, QV_METHOD_RTN);
    cr_expect_eq(r[0].line, 1);
    cr_expect_eq(r[1].index, 1);
    cr_expect_eq(r[1].line, 4);
    cr_expect_str_eq(r[1].pretrained, "b");
    cr_expect_eq(r[1].w_bit, 8); /* each run starts from the defaults, not from the run before */
    cr_expect_eq(r[1].a_bit, 8);
    cr_expect_eq(r[1].method, QV_METHOD_AWQ);
    cr_expect_eq(r[2].alpha, 0.75);
    cr_expect_eq(r[2].method, QV_METHOD_SMOOTHQUANT);
    cr_expect_eq(r[2].line, 6);
    qv_run_configs_free(r, n);
}

/* ---- errors ------------------------------------------------------------------------------- */

Test(run_config, unknown_key)
{
    expect_error(MIN_YAML "w_bits: 3\n", "cfg.yaml:2: unknown key \"w_bits\"");
    expect_error(MIN_YAML "export:\n  format: awq\n  path: o\n  dtype: bf16\n", "cfg.yaml:5: unknown key \"export.dtype\"");
    expect_error("- " MIN_YAML "- model_args: pretrained=x\n  nsamples: 3\n", "cfg.yaml:3: unknown key \"nsamples\"");
}

Test(run_config, wrong_type)
{
    expect_error(MIN_YAML "w_bit: abc\n", "cfg.yaml:2: key \"w_bit\": expected an integer, got \"abc\"");
    expect_error(MIN_YAML "w_bit: \"3\"\n",
                 "cfg.yaml:2: key \"w_bit\": expected an integer, got \"3\" (a quoted string)");
    expect_error(MIN_YAML "w_bit: 3.0\n", "cfg.yaml:2: key \"w_bit\": expected an integer, got \"3.0\"");
    expect_error(MIN_YAML "n_samples: [1, 2]\n", "cfg.yaml:2: key \"n_samples\": expected an integer, got a list");
    expect_error(MIN_YAML "a_bit: null\n", "cfg.yaml:2: key \"a_bit\": expected an integer, got null");
    expect_error(MIN_YAML "reweight: 1\n", "cfg.yaml:2: key \"reweight\": expected a boolean (true or false), got \"1\"");
    expect_error(MIN_YAML "reweight: \"True\"\n",
                 "cfg.yaml:2: key \"reweight\": expected a boolean (true or false), got \"True\" (a quoted string)");
    expect_error(MIN_YAML "alpha: half\n", "cfg.yaml:2: key \"alpha\": expected a number, got \"half\"");
    expect_error(MIN_YAML "data_path: True\n", "cfg.yaml:2: key \"data_path\": expected a string, got \"True\"");
    expect_error(MIN_YAML "data_path: {a: 1}\n", "cfg.yaml:2: key \"data_path\": expected a string, got a mapping");
    expect_error(MIN_YAML "seed: -1\n", "cfg.yaml:2: key \"seed\": -1 is out of range (0..2^64-1)");
    expect_error(MIN_YAML "seed: \"0,1234,1234,1234\"\n",
                 "cfg.yaml:2: key \"seed\": expected a non-negative integer, got \"0,1234,1234,1234\" (a quoted string)");
    expect_error(MIN_YAML "export: awq\n",
                 "cfg.yaml:2: key \"export\": expected a mapping {format, path, recipe}, got \"awq\"");
    expect_error("model_args: 3\nmodel_args: 4\n", "cfg.yaml:2: duplicate key \"model_args\" (first at line 1)");
}

Test(run_config, bad_values)
{
    expect_error(MIN_YAML "w_bit: 17\n", "cfg.yaml:2: key \"w_bit\": 17 is out of range (1..16)");
    expect_error(MIN_YAML "w_bit: 0\n", "cfg.yaml:2: key \"w_bit\": 0 is out of range (1..16)");
    expect_error(MIN_YAML "a_bit: 32\n", "cfg.yaml:2: key \"a_bit\": 32 is out of range (1..16)");
    expect_error(MIN_YAML "w_group: 16\n", "cfg.yaml:2: key \"w_group\": 16 is out of range (-1 or 32..4096)");
    expect_error(MIN_YAML "w_group: 0\n", "cfg.yaml:2: key \"w_group\": 0 is out of range (-1 or 32..4096)");
    expect_error(MIN_YAML "w_group: 8192\n", "cfg.yaml:2: key \"w_group\": 8192 is out of range (-1 or 32..4096)");
    expect_error(MIN_YAML "n_samples: 0\n", "cfg.yaml:2: key \"n_samples\": 0 is out of range (1..2147483647)");
    expect_error(MIN_YAML "n_samples: 99999999999999999999\n",
                 "cfg.yaml:2: key \"n_samples\": 99999999999999999999 is out of range (1..2147483647)");
    expect_error(MIN_YAML "alpha: 1.5\n", "cfg.yaml:2: key \"alpha\": 1.5 is out of range (0..1)");
    expect_error(MIN_YAML "alpha: .nan\n", "cfg.yaml:2: key \"alpha\": .nan is out of range (0..1)");
    expect_error(MIN_YAML "method: gptq\n",
                 "cfg.yaml:2: key \"method\": expected one of rtn, awq, smoothquant, mbq, fp8, null, got \"gptq\"");
    expect_error(MIN_YAML "method: MBQ\n",
                 "cfg.yaml:2: key \"method\": expected one of rtn, awq, smoothquant, mbq, fp8, null, got \"MBQ\"");
    expect_error(MIN_YAML "loss_mode: l1\n", "cfg.yaml:2: key \"loss_mode\": expected one of mae, mse, got \"l1\"");
    expect_error(MIN_YAML "division: gpu\n", "cfg.yaml:2: key \"division\": expected one of cuda, cpu, got \"gpu\"");
    expect_error(MIN_YAML "calib_data: laion\n",
                 "cfg.yaml:2: key \"calib_data\": expected one of coco, sharegpt4v, pileval, null, got \"laion\"");
    expect_error(MIN_YAML "pad_rule: left\n", "cfg.yaml:2: key \"pad_rule\": expected one of mbq, length, null, got \"left\"");
    expect_error(MIN_YAML "model: hf\n",
                 "cfg.yaml:2: key \"model\": expected one of internvl2, internvl3, qwen2_vl, llava_onevision, llava, "
                 "qwen2, llama, got \"hf\"");
    expect_error(MIN_YAML "threads: 0\n", "cfg.yaml:2: key \"threads\": 0 is out of range (1..4096)");
    expect_error(MIN_YAML "n_grid: 0\n", "cfg.yaml:2: key \"n_grid\": 0 is out of range (1..1000)");
}

Test(run_config, combinations)
{
    expect_error(MIN_YAML "calib_data: coco\nfew_shot_format: True\ninterleave_format: True\n",
                 "cfg.yaml:4: keys \"few_shot_format\" and \"interleave_format\" cannot both be true");
    expect_error(MIN_YAML "interleave_format: True\ncalib_data: coco\nfew_shot_format: True\n",
                 "cfg.yaml:4: keys \"few_shot_format\" and \"interleave_format\" cannot both be true");
    expect_error(MIN_YAML "few_shot_format: True\n",
                 "cfg.yaml:2: key \"few_shot_format\" needs calib_data coco or sharegpt4v (image-caption data)");
    expect_error(MIN_YAML "method: mbq\nrun_process: true\ncalib_data: coco\n",
                 "cfg.yaml:2: key \"data_path\" is required: calib_data coco reads a caption JSON/JSONL file");
    expect_error(MIN_YAML "method: mbq\nrun_process: true\ndata_path: \"\"\n",
                 "cfg.yaml:4: key \"data_path\" is required: calib_data pileval reads a local text JSONL (qvlm does "
                 "not download pile-val)");
    expect_error(MIN_YAML "method: awq\nrun_process: true\ncalib_data: null\n",
                 "cfg.yaml:4: key \"calib_data\": method awq with run_process needs calibration data");
    expect_error(MIN_YAML "method: mbq\nrun_process: true\ncalib_data: coco\ndata_path: c.json\ninterleave_format: true\n",
                 "cfg.yaml:6: key \"text_data_path\" is required with interleave_format (a local pile-val JSONL)");
    expect_error(MIN_YAML "method: mbq\nrun_process: true\ndata_path: pile.jsonl\nreweight: true\n",
                 "cfg.yaml:5: key \"reweight\": calib_data pileval has no vision or caption tokens to reweight");
    expect_error("w_bit: 3\n", "cfg.yaml:1: key \"model_args\" is required (model_args: pretrained=\"path/to/model\")");
    expect_error("model_args: device_map=auto\n", "cfg.yaml:1: key \"model_args\": no pretrained=\"path/to/model\" entry");
    expect_error("model_args: pretrained=a,pretrained=b\n", "cfg.yaml:1: key \"model_args\": pretrained given twice");
    expect_error("model_args: pretrained=\"a\n", "cfg.yaml:1: key \"model_args\": unterminated quote");
    expect_error("model_args: junk\n", "cfg.yaml:1: key \"model_args\": expected k=v entries, got \"junk\"");
    expect_error(MIN_YAML "export:\n  path: o\n", "cfg.yaml:2: key \"export.format\" is required (one of fake, awq, "
                                                  "gptq, compressed-tensors, fp8, mbq-pt)");
    expect_error(MIN_YAML "export:\n  format: fp8\n", "cfg.yaml:2: key \"export.path\" is required");
    /* a valid interleave run: text_data_path given */
    size_t n;
    qv_run_config *c = parse_ok(MIN_YAML "method: mbq\nrun_process: true\ncalib_data: coco\ndata_path: c.json\n"
                                         "interleave_format: true\ntext_data_path: pile.jsonl\n",
                                &n);
    cr_expect(c->interleave_format);
    qv_run_configs_free(c, n);
}

Test(run_config, yaml_structure_errors)
{
    expect_error("model_args: pretrained=m\n\tw_bit: 3\n", "cfg.yaml:2: tab used for indentation (YAML allows only spaces)");
    expect_error("export:\n \tformat: awq\n", "cfg.yaml:2: tab used for indentation (YAML allows only spaces)");
    expect_error(MIN_YAML "w_bit: 3\nw_bit: 4\n", "cfg.yaml:3: duplicate key \"w_bit\" (first at line 2)");
    expect_error(MIN_YAML "export:\n  format: awq\n  format: gptq\n",
                 "cfg.yaml:4: duplicate key \"format\" (first at line 3)");
    expect_error("", "cfg.yaml:1: empty configuration");
    expect_error("# only a comment\n\n", "cfg.yaml:1: empty configuration");
    expect_error("---\n", "cfg.yaml:2: empty configuration");
    expect_error("w_bit\n", "cfg.yaml:1: expected a mapping of keys or a list of mappings");
    expect_error("[]\n", "cfg.yaml:1: empty list of runs");
    expect_error("- " MIN_YAML "- 3\n", "cfg.yaml:2: run 1: expected a mapping of keys");
    expect_error(MIN_YAML "---\n" MIN_YAML, "cfg.yaml:2: more than one YAML document");
    expect_error("a: &x 3\nw_bit: *x\n", "cfg.yaml:2: YAML aliases (*x) are not supported");
    expect_error(MIN_YAML "w_bit: !!int 3\n", "cfg.yaml:2: unsupported YAML tag tag:yaml.org,2002:int");
    expect_error(MIN_YAML "? [a]\n: 1\n", "cfg.yaml:2: mapping keys must be plain names");
    expect_error(MIN_YAML "w_bit: [3\n", "cfg.yaml:3: invalid YAML: did not find expected ',' or ']' while parsing a "
                                         "flow sequence");
    expect_error(MIN_YAML "w_bit: 3\n  a_bit: 4\n",
                 "cfg.yaml:3: invalid YAML: mapping values are not allowed in this context");
    /* depth bound (a billion-laughs style document is refused by the alias rule above) */
    char deep[256] = MIN_YAML "export: ";
    for (int i = 0; i < 20; i++)
        strcat(deep, "[");
    strcat(deep, "\n");
    expect_error(deep, "cfg.yaml:2: YAML nested deeper than 16 levels");
    /* quoted text is still allowed in values: a tab inside a scalar is not indentation */
    size_t n;
    qv_run_config *c = parse_ok(MIN_YAML "scale_path: \"a\tb\"\n", &n);
    cr_expect_str_eq(c->scale_path, "a\tb");
    qv_run_configs_free(c, n);
}

Test(run_config, file_errors)
{
    qv_run_config *runs = NULL;
    size_t n = 5;
    cr_expect_eq(qv_run_config_load("/nonexistent/cfg.yaml", &runs, &n), QV_ERR_IO);
    cr_expect_str_eq(qv_last_error(), "/nonexistent/cfg.yaml: No such file or directory");
    cr_expect_null(runs);
    cr_expect_eq(n, 0);
}

Test(run_config, to_json)
{
    size_t n;
    qv_run_config *c = parse_ok(MIN_YAML "model: internvl2\nmethod: mbq\nw_bit: 3\nalpha: 0.8\nseed: 7\n"
                                         "export: {format: mbq-pt, path: o.pt}\n",
                                &n);
    qv_strbuf b;
    qv_sb_init(&b);
    qv_run_config_to_json(c, &b);
    cr_assert(!b.oom);
    json_object *j = json_tokener_parse(b.s);
    cr_assert_not_null(j, "%s", b.s);
    json_object *v;
    cr_expect(json_object_object_get_ex(j, "w_bit", &v) && json_object_get_int(v) == 3);
    cr_expect(json_object_object_get_ex(j, "alpha", &v) && json_object_get_double(v) == 0.8);
    cr_expect(json_object_object_get_ex(j, "method", &v) && strcmp(json_object_get_string(v), "mbq") == 0);
    cr_expect(json_object_object_get_ex(j, "pad_rule", &v) && strcmp(json_object_get_string(v), "mbq") == 0);
    cr_expect(json_object_object_get_ex(j, "data_path", &v) && v == NULL);
    cr_expect(json_object_object_get_ex(j, "threads", &v) && v == NULL);
    cr_expect(json_object_object_get_ex(j, "seed", &v) && json_object_get_int(v) == 7);
    cr_expect(json_object_object_get_ex(j, "export", &v) && json_object_is_type(v, json_type_object));
    cr_expect_eq(json_object_object_length(j), 32);
    json_object_put(j);
    qv_sb_free(&b);
    qv_run_configs_free(c, n);
}

/* Mutated and truncated inputs: every parse returns (OK or one error line), never crashes. */
Test(run_config, mutated_input_is_refused_cleanly, .timeout = 120)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/configs/mbq/internvl2/MBQ_search/26b_weight_only.yaml", QV_SOURCE_DIR);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    char base[4096];
    size_t len = fread(base, 1, sizeof base, f);
    fclose(f);
    static const char subst[] = {'\t', ':', '-', '[', '{', '"', '\'', '*', '&', '!', '#', '\n', ' ', 0, '\xff', '|'};
    char buf[4096];
    unsigned seed = 12345;
    for (size_t cut = 0; cut <= len; cut++) {
        qv_run_config *runs = NULL;
        size_t n = 0;
        if (qv_run_config_parse(base, cut, "m.yaml", &runs, &n) == QV_OK)
            qv_run_configs_free(runs, n);
        else
            cr_expect_null(strchr(qv_last_error(), '\n'));
    }
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(buf, base, len);
        for (int k = 0; k < 3; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t at = (seed >> 8) % len;
            seed = seed * 1103515245u + 12345u;
            buf[at] = subst[(seed >> 8) % sizeof subst];
        }
        qv_run_config *runs = NULL;
        size_t n = 0;
        if (qv_run_config_parse(buf, len, "m.yaml", &runs, &n) == QV_OK)
            qv_run_configs_free(runs, n);
        else
            cr_expect_null(strchr(qv_last_error(), '\n'));
    }
}
