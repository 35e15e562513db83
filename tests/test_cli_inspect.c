/* test_cli_inspect.c — `qvlm inspect` on every fixture model: per-part parameter counts equal
 * the sums of the tensors' element counts (computed here independently from the headers) and
 * the fixtures README's totals; --json; one-line errors with exit 1 on bad input. */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "model/config.h"
#include "util/testutil.h"

static const struct {
    const char *name;
    long long total;
} models[] = {
    {"internvl2-qwen2-tiny", 1212608},  {"internvl2-internlm2-tiny", 1212608}, {"qwen2-tiny", 558208},
    {"qwen2-vl-tiny", 1242368},         {"internvl3-tiny", 1217472},           {"llava-onevision-qwen2-tiny", 1177728},
};

Test(cli_inspect, json_counts_match_tensor_sums)
{
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
        char path[512];
        snprintf(path, sizeof path, "models/%s", models[m].name);
        char *out, *err;
        int rc = qt_run_cli(&out, &err, "inspect '%s' --json", qt_fixture(path));
        cr_assert_eq(rc, 0, "%s: %s", models[m].name, err);
        json_object *j = json_tokener_parse(out);
        cr_assert_not_null(j, "not JSON: %s", out);
        json_object *v, *parts;
        cr_assert(json_object_object_get_ex(j, "params_total", &v));
        cr_assert_eq(json_object_get_int64(v), models[m].total, "%s total", models[m].name);
        cr_assert(json_object_object_get_ex(j, "architecture", &v));
        cr_assert(json_object_object_get_ex(j, "parts", &parts));
        /* independent recount */
        long long sums[QV_PART_COUNT] = {0};
        qv_model_config cfg;
        qv_checkpoint *ck;
        cr_assert_eq(qv_model_config_load(qt_fixture(path), &cfg), QV_OK);
        cr_assert_eq(qv_checkpoint_open(qt_fixture(path), &ck), QV_OK);
        for (size_t i = 0; i < ck->n; i++) {
            const qv_st_entry *e = qv_checkpoint_entry(ck, i, NULL);
            long long n = 1;
            for (int d = 0; d < e->ndim; d++)
                n *= e->shape[d];
            sums[qv_model_part_of(&cfg, e->name)] += n;
        }
        long long total = 0;
        for (int p = 0; p < QV_PART_COUNT; p++) {
            json_object *po, *pp;
            total += sums[p];
            if (!sums[p])
                continue;
            cr_assert(json_object_object_get_ex(parts, qv_part_name((qv_part)p), &po), "%s lacks part %s",
                      models[m].name, qv_part_name((qv_part)p));
            cr_assert(json_object_object_get_ex(po, "params", &pp));
            cr_assert_eq(json_object_get_int64(pp), sums[p], "%s part %s", models[m].name, qv_part_name((qv_part)p));
        }
        cr_assert_eq(total, models[m].total);
        if (cfg.has_vision && cfg.family != QV_FAMILY_LLAVA_ONEVISION) /* vision and projector present */
            cr_assert(sums[QV_PART_VISION] > 0 && sums[QV_PART_PROJECTOR] > 0, "%s", models[m].name);
        qv_checkpoint_close(ck);
        qv_model_config_free(&cfg);
        json_object_put(j);
        free(out);
        free(err);
    }
}

Test(cli_inspect, text_output_and_usage)
{
    char *out, *err;
    cr_assert_eq(qt_run_cli(&out, &err, "inspect '%s'", qt_fixture("models/internvl2-internlm2-tiny")), 0);
    cr_assert(strstr(out, "InternLM2ForCausalLM") && strstr(out, "1212608"), "%s", out);
    cr_assert(strstr(out, "model-00002-of-00002.safetensors"));
    free(out);
    free(err);
    cr_assert_eq(qt_run_cli(NULL, NULL, "inspect"), 2);
    cr_assert_eq(qt_run_cli(NULL, NULL, "inspect a b"), 2);
    cr_assert_eq(qt_run_cli(NULL, NULL, "inspect --bogus x"), 2);
    cr_assert_eq(qt_run_cli(&out, &err, "inspect --help"), 0);
    cr_assert(strstr(out, "usage: qvlm inspect"));
    free(out);
    free(err);
}

Test(cli_inspect, malformed_checkpoint_one_line_exit_1)
{
    char *dir = qt_tmpdir(), cmd[2048];
    snprintf(cmd, sizeof cmd,
             "cp '%s'/config.json '%s'/ && printf '\\x40\\x00\\x00\\x00\\x00\\x00\\x00\\x00{\"a\":' > '%s'/model.safetensors",
             qt_fixture("models/qwen2-tiny"), dir, dir);
    cr_assert_eq(system(cmd), 0);
    char *out, *err;
    cr_assert_eq(qt_run_cli(&out, &err, "inspect '%s'", dir), 1);
    cr_assert_eq(qt_count_lines(err), 1, "stderr: %s", err);
    cr_assert(strncmp(err, "qvlm: ", 6) == 0 && strstr(err, "model.safetensors"), "%s", err);
    cr_assert_str_empty(out);
    free(out);
    free(err);
    /* unsupported architecture */
    snprintf(cmd, sizeof cmd, "printf '{\"architectures\":[\"MistralForCausalLM\"]}' > '%s'/config.json", dir);
    cr_assert_eq(system(cmd), 0);
    cr_assert_eq(qt_run_cli(&out, &err, "inspect '%s'", dir), 1);
    cr_assert_eq(qt_count_lines(err), 1, "stderr: %s", err);
    cr_assert(strstr(err, "MistralForCausalLM") && strstr(err, "supported"), "%s", err);
    free(out);
    free(err);
    free(dir);
}
