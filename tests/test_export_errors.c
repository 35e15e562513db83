/* test_export_errors.c — bad input to `qvlm export` / `qvlm verify`: unsupported combinations
 * (AWQ with 3 bits or per-channel groups, GPTQ from W4A8 scales, KV-cache scales on an InternLM2
 * wqkv attention, static FP8 without calibration statistics), an existing output, a full disk
 * (a file-size limit makes the preallocation fail), broken inputs. Each must exit 1 with ONE
 * stderr line naming the file or object, leave no partial output and no temporary folder. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fsutil.h"
#include "util/export_util.h"
#include "util/testutil.h"

typedef struct env {
    char *model, *scales, *dir, out[600];
} env;

static env setup(const char *model, const char *search)
{
    env e;
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s", model);
    e.model = qx_fixture(rel);
    e.scales = search ? qx_scales_dir(model, search) : NULL;
    e.dir = qt_tmpdir();
    snprintf(e.out, sizeof e.out, "%s/out", e.dir);
    return e;
}

static void teardown(env *e)
{
    free(e->model);
    free(e->scales);
    free(e->dir);
}

/* exit 1, one stderr line containing `needle`, nothing left in the output's folder */
static void expect_one_line_failure(const env *e, int rc, const char *out, const char *err, const char *needle)
{
    cr_assert_eq(rc, 1, "exit %d, stdout: %s stderr: %s", rc, out, err);
    cr_assert_eq(qt_count_lines(err), 1, "stderr: %s", err);
    cr_assert(strncmp(err, "qvlm: ", 6) == 0, "stderr: %s", err);
    cr_assert(strstr(err, needle) != NULL, "stderr lacks \"%s\": %s", needle, err);
    cr_assert(!qx_dir_has(e->dir, ".qvlm-tmp."), "a temporary output was left behind");
}

Test(export_errors, awq_three_bits)
{
    env e = setup("internvl2-qwen2-tiny", "search_mbq_w3g128_reweight_mae");
    char *out, *err;
    int rc = qt_run_cli(&out, &err, "export '%s' --scales '%s' --format awq -o '%s'", e.model, e.scales, e.out);
    expect_one_line_failure(&e, rc, out, err, "AWQ stores 4-bit weights only");
    cr_assert(strstr(err, e.model) != NULL, "names the model: %s", err);
    cr_assert(!qv_path_exists(e.out));
    free(out);
    free(err);
    teardown(&e);
}

Test(export_errors, awq_per_channel_groups)
{
    env e = setup("internvl2-qwen2-tiny", "search_mbq_w3g128_reweight_mae");
    char *out, *err;
    int rc = qt_run_cli(&out, &err, "export '%s' --scales '%s' --format awq --w-bit 4 --w-group -1 -o '%s'", e.model,
                        e.scales, e.out);
    expect_one_line_failure(&e, rc, out, err, "AWQ needs group quantization");
    cr_assert(!qv_path_exists(e.out));
    free(out);
    free(err);
    teardown(&e);
}

Test(export_errors, gptq_from_w4a8_scales)
{
    env e = setup("internvl2-qwen2-tiny", "search_mbq_w4a8_reweight_mae");
    char *out, *err;
    int rc = qt_run_cli(&out, &err, "export '%s' --scales '%s' --format gptq -o '%s'", e.model, e.scales, e.out);
    expect_one_line_failure(&e, rc, out, err, "W4A8");
    cr_assert(!qv_path_exists(e.out));
    free(out);
    free(err);
    /* and AWQ likewise */
    rc = qt_run_cli(&out, &err, "export '%s' --scales '%s' --format awq -o '%s'", e.model, e.scales, e.out);
    expect_one_line_failure(&e, rc, out, err, "W4A8");
    free(out);
    free(err);
    teardown(&e);
}

Test(export_errors, existing_output_needs_force)
{
    env e = setup("internvl2-qwen2-tiny", "search_mbq_w3g128_reweight_mae");
    cr_assert_eq(qv_mkdirs(e.out), QV_OK);
    char keep[700];
    snprintf(keep, sizeof keep, "%s/precious.txt", e.out);
    cr_assert_eq(qv_write_file_atomic(keep, "keep", 4), QV_OK);
    char *out, *err;
    int rc = qt_run_cli(&out, &err, "export '%s' --scales '%s' --format gptq -o '%s'", e.model, e.scales, e.out);
    expect_one_line_failure(&e, rc, out, err, "--force");
    cr_assert(strstr(err, e.out) != NULL, "%s", err);
    cr_assert(qv_path_exists(keep), "the existing output was touched");
    free(out);
    free(err);
    rc = qt_run_cli(&out, &err, "export '%s' --scales '%s' --format gptq -o '%s' --force --quiet", e.model, e.scales, e.out);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(!qv_path_exists(keep), "--force replaces the folder");
    cr_assert_eq(qx_dir_entries(e.dir), 1, "no .qvlm-old or temporary leftovers");
    free(out);
    free(err);
    /* an existing empty folder is fine */
    char empty[700];
    snprintf(empty, sizeof empty, "%s/empty", e.dir);
    cr_assert_eq(qv_mkdirs(empty), QV_OK);
    rc = qt_run_cli(&out, &err, "export '%s' --scales '%s' --format fake -o '%s' --quiet", e.model, e.scales, empty);
    cr_assert_eq(rc, 0, "%s", err);
    free(out);
    free(err);
    teardown(&e);
}

Test(export_errors, disk_full_leaves_nothing)
{
    env e = setup("internvl2-qwen2-tiny", "search_mbq_w3g128_reweight_mae");
    char *out, *err;
    /* a 512 KiB file-size limit: the tokenizer files fit, the 1.7 MB shard's preallocation does not */
    int rc = qx_run_sh(&out, &err, "ulimit -f 1024; trap '' XFSZ; '%s' export '%s' --scales '%s' --format gptq -o '%s'",
                       QV_CLI, e.model, e.scales, e.out);
    expect_one_line_failure(&e, rc, out, err, "model.safetensors");
    cr_assert(!qv_path_exists(e.out), "no partial output folder");
    cr_assert_eq(qx_dir_entries(e.dir), 0, "nothing beside it either");
    free(out);
    free(err);
    teardown(&e);
}

Test(export_errors, kv_cache_on_internlm2_attention)
{
    env e = setup("internvl2-internlm2-tiny", NULL);
    char recipe[700];
    snprintf(recipe, sizeof recipe, "%s/r.yaml", e.dir);
    const char *y = "q_stage:\n  q_modifiers:\n    QuantizationModifier:\n      scheme: FP8_DYNAMIC\n"
                    "      ignore: [\"re:.*output$\", \"re:mlp1.*\", \"re:vision_model.*\"]\n"
                    "      kv_cache_scheme: {num_bits: 8, type: float, strategy: tensor, dynamic: false, symmetric: true}\n";
    cr_assert_eq(qv_write_file_atomic(recipe, y, strlen(y)), QV_OK);
    char *out, *err;
    int rc = qt_run_cli(&out, &err, "export '%s' --format fp8 --recipe '%s' -o '%s'", e.model, recipe, e.out);
    expect_one_line_failure(&e, rc, out, err, "wqkv");
    cr_assert(strstr(err, recipe) != NULL, "%s", err);
    free(out);
    free(err);
    teardown(&e);
}

Test(export_errors, static_fp8_needs_calibration)
{
    env e = setup("internvl3-tiny", NULL);
    char recipe[700];
    snprintf(recipe, sizeof recipe, "%s/r.yaml", e.dir);
    const char *y = "quant_stage:\n  quant_modifiers:\n    QuantizationModifier:\n      targets: Linear\n      scheme: FP8\n"
                    "      ignore: [\"re:.*lm_head\", \"re:mlp1.*\", \"re:vision_model.*\"]\n";
    cr_assert_eq(qv_write_file_atomic(recipe, y, strlen(y)), QV_OK);
    char *out, *err;
    int rc = qt_run_cli(&out, &err, "export '%s' --format fp8 --recipe '%s' -o '%s'", e.model, recipe, e.out);
    expect_one_line_failure(&e, rc, out, err, "absmax.input.language_model.model.layers.0");
    cr_assert(!qv_path_exists(e.out));
    free(out);
    free(err);
    teardown(&e);
}

Test(export_errors, broken_inputs)
{
    env e = setup("internvl2-qwen2-tiny", "search_mbq_w3g128_reweight_mae");
    char *out, *err, bad[700];
    /* no such scales */
    int rc = qt_run_cli(&out, &err, "export '%s' --scales /nonexistent/scales --format fake -o '%s'", e.model, e.out);
    expect_one_line_failure(&e, rc, out, err, "/nonexistent/scales");
    free(out);
    free(err);
    /* a truncated scales.safetensors */
    snprintf(bad, sizeof bad, "%s/scales.safetensors", e.scales);
    char *data;
    size_t len;
    cr_assert_eq(qv_read_file(bad, 1 << 24, &data, &len), QV_OK);
    cr_assert_eq(qv_write_file_atomic(bad, data, len / 2), QV_OK);
    qv_free(data);
    rc = qt_run_cli(&out, &err, "export '%s' --scales '%s' --format fake -o '%s'", e.model, e.scales, e.out);
    expect_one_line_failure(&e, rc, out, err, "scales.safetensors");
    free(out);
    free(err);
    /* scale names that are not in this model */
    char *other = qx_scales_dir("internvl2-internlm2-tiny", "search_mbq_w3g128_reweight_mae");
    char *qwen2vl = qx_fixture("models/qwen2-vl-tiny");
    rc = qt_run_cli(&out, &err, "export '%s' --scales '%s' --format fake -o '%s'", qwen2vl, other, e.out);
    expect_one_line_failure(&e, rc, out, err, "is not in the model");
    free(out);
    free(err);
    free(other);
    free(qwen2vl);
    /* a recipe that is not YAML */
    snprintf(bad, sizeof bad, "%s/bad.yaml", e.dir);
    cr_assert_eq(qv_write_file_atomic(bad, "a: [1, 2\n", 9), QV_OK);
    rc = qt_run_cli(&out, &err, "export '%s' --format fp8 --recipe '%s' -o '%s'", e.model, bad, e.out);
    expect_one_line_failure(&e, rc, out, err, "bad.yaml");
    free(out);
    free(err);
    /* a model folder without weights */
    rc = qt_run_cli(&out, &err, "export '%s' --format fp8 -o '%s'", e.dir, e.out);
    cr_assert_eq(rc, 1);
    cr_assert_eq(qt_count_lines(err), 1, "%s", err);
    free(out);
    free(err);
    /* usage errors exit 2 */
    rc = qt_run_cli(&out, &err, "export '%s' --format int2 -o '%s'", e.model, e.out);
    cr_assert_eq(rc, 2, "%s", err);
    free(out);
    free(err);
    rc = qt_run_cli(&out, &err, "export '%s' --format fake", e.model);
    cr_assert_eq(rc, 2, "%s", err);
    free(out);
    free(err);
    cr_assert(!qv_path_exists(e.out));
    teardown(&e);
}

Test(export_errors, verify_catches_a_changed_byte)
{
    env e = setup("internvl2-qwen2-tiny", "search_mbq_w3g128_reweight_mae");
    char *out, *err;
    int rc = qt_run_cli(&out, &err, "export '%s' --scales '%s' --format compressed-tensors -o '%s' --quiet", e.model,
                        e.scales, e.out);
    cr_assert_eq(rc, 0, "%s", err);
    free(out);
    free(err);
    /* flip one bit inside the data of a packed weight */
    char path[700];
    snprintf(path, sizeof path, "%s/model.safetensors", e.out);
    qv_st_file *f;
    cr_assert_eq(qv_st_open(path, &f), QV_OK);
    const qv_st_entry *en = qv_st_header_find(&f->hdr, "language_model.model.layers.1.mlp.down_proj.weight_packed");
    cr_assert_not_null(en);
    size_t off = (size_t)(f->data - f->map) + (size_t)en->begin + 17;
    qv_st_close(f);
    char *data;
    size_t len;
    cr_assert_eq(qv_read_file(path, 1 << 26, &data, &len), QV_OK);
    data[off] ^= 0x10;
    cr_assert_eq(qv_write_file_atomic(path, data, len), QV_OK);
    qv_free(data);
    rc = qt_run_cli(&out, &err, "verify '%s' --against '%s' --scales '%s'", e.out, e.model, e.scales);
    cr_assert_eq(rc, 1, "%s", out);
    cr_assert(strstr(out, "language_model.model.layers.1.mlp.down_proj") && strstr(out, "MISMATCH"), "%s", out);
    cr_assert_eq(qt_count_lines(err), 1, "%s", err);
    free(out);
    free(err);
    /* the wrong original model */
    char *other = qx_fixture("models/internvl3-tiny");
    rc = qt_run_cli(&out, &err, "verify '%s' --against '%s' --mismatches-only", e.out, other);
    cr_assert_eq(rc, 1);
    free(out);
    free(err);
    free(other);
    /* verify on a folder that is not quantized needs --against */
    rc = qt_run_cli(&out, &err, "verify '%s'", e.model);
    cr_assert_eq(rc, 1);
    cr_assert_eq(qt_count_lines(err), 1, "%s", err);
    free(out);
    free(err);
    teardown(&e);
}
