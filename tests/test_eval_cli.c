/* test_eval_cli.c — `qvlm eval` on the command line (spec CLI.md): the caption task on
 * internvl2-qwen2-tiny (four quantized models, shuffled images) and qwen2-vl-tiny, with and
 * without --scales: the table's rows and alignment, the --json object's keys and its values
 * against the reference's losses (fixtures README §9, §13.7), the same bytes for any thread
 * count and the same numbers (1e-6) for any chunking; --task ppl with --scales; bad input
 * (scales of another model, caption file, images, derangement impossible, memory limit) exits 1
 * with one stderr line and nothing on stdout, usage errors exit 2. */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fsutil.h"
#include "util/export_util.h"
#include "util/mmutil.h"
#include "util/testutil.h"

static char model_ivl[4096], model_qvl[4096], captions[4096], images[4096];

static void paths(void)
{
    snprintf(model_ivl, sizeof model_ivl, "%s", qt_fixture("models/internvl2-qwen2-tiny"));
    snprintf(model_qvl, sizeof model_qvl, "%s", qt_fixture("models/qwen2-vl-tiny"));
    snprintf(captions, sizeof captions, "%s", qt_fixture("calib/captions_sharegpt4v.json"));
    snprintf(images, sizeof images, "%s", qt_fixture("calib/images"));
}

/* A scales DIR from a fixture pair (caller frees). */
static char *scales_dir(const char *st_rel, const char *json_rel)
{
    char *dir = qt_tmpdir(), to[1024], *data;
    size_t len;
    const char *from[2] = {st_rel, json_rel}, *name[2] = {"scales.safetensors", "search.json"};
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(qv_read_file(qt_fixture(from[i]), (size_t)1 << 30, &data, &len), QV_OK, "%s", qv_last_error());
        snprintf(to, sizeof to, "%s/%s", dir, name[i]);
        cr_assert_eq(qv_write_file_atomic(to, data, len), QV_OK);
        qv_free(data);
    }
    return dir;
}

static char *write_tmp(const char *dir, const char *name, const char *content)
{
    char *p = qv_path_join(dir, name);
    cr_assert_eq(qv_write_file_atomic(p, content, strlen(content)), QV_OK);
    return p;
}

static json_object *parse(const char *s)
{
    json_object *j = json_tokener_parse(s);
    cr_assert_not_null(j, "not JSON: %s", s);
    return j;
}

static double num(json_object *o, const char *k)
{
    json_object *v;
    cr_assert(json_object_object_get_ex(o, k, &v), "no key %s", k);
    cr_assert(json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_int), "%s not a number", k);
    return json_object_get_double(v);
}

static json_object *obj(json_object *o, const char *k)
{
    json_object *v;
    cr_assert(json_object_object_get_ex(o, k, &v), "no key %s", k);
    return v;
}

/* Display width of a UTF-8 line. */
static size_t width(const char *s, size_t n)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        w += ((unsigned char)s[i] & 0xC0) != 0x80;
    return w;
}

/* Every line of the table has the same display width and n_fields blank-separated fields
 * (headers hold single spaces: "Δ vs FP", "KL to FP", …, so columns are split on two spaces). */
static void expect_aligned(const char *t, int n_lines, int n_fields)
{
    cr_assert_eq(qt_count_lines(t), n_lines, "%s", t);
    size_t w0 = 0;
    int line = 0;
    for (const char *p = t; *p; line++) {
        const char *e = strchr(p, '\n');
        cr_assert_not_null(e);
        size_t w = width(p, (size_t)(e - p));
        if (!line)
            w0 = w;
        cr_expect_eq(w, w0, "line %d is %zu columns wide, the header %zu:\n%s", line, w, w0, t);
        int fields = 0;
        for (const char *q = p; q < e;) {
            while (q < e && *q == ' ')
                q++;
            if (q >= e)
                break;
            fields++;
            while (q < e && !(q[0] == ' ' && (q + 1 >= e || q[1] == ' ')))
                q++;
        }
        cr_expect_eq(fields, n_fields, "line %d has %d fields:\n%s", line, fields, t);
        p = e + 1;
    }
}

static const char *const ivl_runs[4][3] = {
    {"goldens/internvl2-qwen2-tiny/export_search_rtn_w3g128.safetensors",
     "goldens/internvl2-qwen2-tiny/export_search_rtn_w3g128.json", "8.303774"},
    {"goldens/internvl2-qwen2-tiny/search_awq_w3g128_scales.safetensors",
     "goldens/internvl2-qwen2-tiny/search_awq_w3g128.json", "8.315124"},
    {"goldens/internvl2-qwen2-tiny/export_search_mbq_w3g128_reweight_mae.safetensors",
     "goldens/internvl2-qwen2-tiny/export_search_mbq_w3g128_reweight_mae.json", "8.307454"},
    {"goldens/internvl2-qwen2-tiny/export_search_mbq_w4a8_reweight_mae.safetensors",
     "goldens/internvl2-qwen2-tiny/export_search_mbq_w4a8_reweight_mae.json", "8.349964"},
};

Test(eval_cli, caption_internvl2_four_models_table_and_json, .timeout = 900)
{
    paths();
    char *d[4], args[8192] = "";
    for (int k = 0; k < 4; k++) {
        d[k] = scales_dir(ivl_runs[k][0], ivl_runs[k][1]);
        snprintf(args + strlen(args), sizeof args - strlen(args), " --scales '%s'", d[k]);
    }
    char *o, *e;
    int rc = qt_run_cli(&o, &e, "eval '%s' --task caption --data '%s' --image-folder '%s' --shuffle-images 42%s",
                        model_ivl, captions, images, args);
    cr_assert_eq(rc, 0, "stderr: %s", e);
    expect_aligned(o, 6, 7);
    cr_expect(strncmp(o, "model ", 6) == 0, "%s", o);
    cr_expect_not_null(strstr(o, "\nfp "), "%s", o);
    cr_expect_not_null(strstr(o, " 8.353189 "), "the FP loss: %s", o);
    for (int k = 0; k < 3; k++)
        cr_expect_not_null(strstr(o, ivl_runs[k][2]), "%s: %s", ivl_runs[k][2], o);
    cr_expect_not_null(strstr(e, "eval: 3/3"), "progress lines: %s", e);
    cr_expect_not_null(strstr(e, "eval (shuffled images): 3/3"), "progress lines: %s", e);
    free(o), free(e);

    rc = qt_run_cli(&o, &e, "eval '%s' --task caption --data '%s' --image-folder '%s' --shuffle-images 42 --json -q%s",
                    model_ivl, captions, images, args);
    cr_assert_eq(rc, 0, "stderr: %s", e);
    cr_expect_str_eq(e, "");
    json_object *j = parse(o);
    const char *keys[5] = {"fp", d[0], d[1], d[2], d[3]};
    char why[256];
    cr_expect(qx_keys_exactly(j, keys, 5, why, sizeof why), "%s", why);
    const double want[5] = {8.353189468383789, 8.303773880004883, 8.315123558044434, 8.307454109191895,
                            8.349964141845703};
    for (int k = 0; k < 5; k++) {
        json_object *m = obj(j, keys[k]);
        const char *mk[] = {"nll", "token_accuracy", "kl_to_fp", "top1_agreement_with_fp", "rows", "samples",
                            "shuffled", "vision_reliance"};
        cr_expect(qx_keys_exactly(m, mk, 8, why, sizeof why), "%s: %s", keys[k], why);
        cr_expect_leq(fabs(num(m, "nll") - want[k]), k == 4 ? 2e-3 : 1e-4, "%s nll %.6f", keys[k], num(m, "nll"));
        cr_expect_eq(num(m, "rows"), 166);
        cr_expect_eq(num(m, "samples"), 4);
        json_object *s = obj(m, "shuffled");
        cr_expect_eq(num(s, "rows"), 166); /* same captions, same images per sample: same token counts */
        cr_expect_eq(num(s, "seed"), 42);
        cr_expect_leq(fabs(num(m, "vision_reliance") - (num(s, "nll") - num(m, "nll"))), 1e-12);
        if (!k) {
            cr_expect_eq(num(m, "kl_to_fp"), 0.0);
            cr_expect_eq(num(m, "top1_agreement_with_fp"), 1.0);
            cr_expect_eq(num(s, "kl_to_fp"), 0.0);
        } else {
            cr_expect_gt(num(m, "kl_to_fp"), 0.01);
            cr_expect_lt(num(m, "top1_agreement_with_fp"), 1.0);
        }
    }
    json_object_put(j);
    free(o), free(e);
    for (int k = 0; k < 4; k++)
        free(d[k]);
}

Test(eval_cli, caption_qwen2vl_with_and_without_scales, .timeout = 600)
{
    paths();
    char *o, *e;
    int rc = qt_run_cli(&o, &e, "eval '%s' --task caption --data '%s' --image-folder '%s' -q", model_qvl, captions, images);
    cr_assert_eq(rc, 0, "stderr: %s", e);
    expect_aligned(o, 2, 7);
    cr_expect_not_null(strstr(o, " 8.215562 "), "FP loss 8.215562 (fixtures README §13.5): %s", o);
    free(o), free(e);
    char *d = scales_dir("goldens/qwen2-vl-tiny/export_search_mbq_w3g128_reweight_mae.safetensors",
                         "goldens/qwen2-vl-tiny/export_search_mbq_w3g128_reweight_mae.json");
    rc = qt_run_cli(&o, &e, "eval '%s' --task caption --data '%s' --image-folder '%s' --scales '%s' -q", model_qvl,
                    captions, images, d);
    cr_assert_eq(rc, 0, "stderr: %s", e);
    expect_aligned(o, 3, 7);
    cr_expect_not_null(strstr(o, " 8.21348"), "MBQ W3 loss 8.2134857 (§13.7): %s", o);
    free(o), free(e);
    /* the model's own M-RoPE positions: the golden's hf_mrope loss */
    rc = qt_run_cli(&o, &e, "eval '%s' --task caption --data '%s' --image-folder '%s' --mrope --json -q", model_qvl,
                    captions, images);
    cr_assert_eq(rc, 0, "stderr: %s", e);
    json_object *j = parse(o);
    cr_expect_leq(fabs(num(obj(j, "fp"), "nll") - 8.2282), 1e-4, "%.6f", num(obj(j, "fp"), "nll"));
    json_object_put(j);
    free(o), free(e), free(d);
}

Test(eval_cli, same_numbers_for_any_thread_count_and_chunking, .timeout = 600)
{
    paths();
    char *d = scales_dir(ivl_runs[2][0], ivl_runs[2][1]);
    char *o1, *o2, *o3, *e;
    const char *fmt = "eval '%s' --task caption --data '%s' --image-folder '%s' --scales '%s' --json -q --threads %d%s";
    cr_assert_eq(qt_run_cli(&o1, &e, fmt, model_ivl, captions, images, d, 1, ""), 0, "%s", e);
    free(e);
    cr_assert_eq(qt_run_cli(&o2, &e, fmt, model_ivl, captions, images, d, 2, ""), 0, "%s", e);
    free(e);
    /* one sample per chunk: the same rows, each quantized layer rebuilt four times */
    cr_assert_eq(qt_run_cli(&o3, &e, fmt, model_ivl, captions, images, d, 2, " --chunk 1"), 0, "%s", e);
    free(e);
    /* the evaluation's sums run in row order and the matmuls are thread-count independent
     * (nn/matmul.h): the same bytes; other chunk shapes change the matmuls' tiling of M, so
     * --chunk 1 agrees to 1e-6 */
    cr_expect_str_eq(o1, o2, "thread count changed the report");
    json_object *a = parse(o1), *c = parse(o3);
    const char *keys[2] = {"fp", d};
    const char *mk[4] = {"nll", "token_accuracy", "kl_to_fp", "top1_agreement_with_fp"};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 4; i++) {
            const double x = num(obj(a, keys[k]), mk[i]), z = num(obj(c, keys[k]), mk[i]);
            cr_expect_leq(fabs(x - z), 1e-6, "%s %s: %.9f vs %.9f with --chunk 1", keys[k], mk[i], x, z);
        }
    json_object_put(a), json_object_put(c);
    free(o1), free(o2), free(o3), free(d);
}

Test(eval_cli, ppl_with_scales_prints_the_table_and_the_quantized_ppl)
{
    char *dir = qt_tmpdir();
    free(write_tmp(dir, "search.json", "{\"config\": {\"method\": \"rtn\", \"w_bit\": 3, \"a_bit\": 16, \"w_group\": 128, "
                                       "\"zero_point\": true}, \"entries\": []}"));
    char *st = qv_path_join(dir, "scales.safetensors");
    cr_assert_eq(qv_st_write_file(st, NULL, 0, NULL, 0), QV_OK, "%s", qv_last_error());
    char model[4096], gold[4096];
    snprintf(model, sizeof model, "%s", qt_fixture("models/qwen2-tiny"));
    snprintf(gold, sizeof gold, "%s", qt_fixture("goldens/qwen2-tiny/ppl.safetensors"));
    char *o, *e;
    int rc = qt_run_cli(&o, &e, "eval '%s' --task ppl --data '%s' --seqlen 64 --scales '%s' -q", model, gold, dir);
    cr_assert_eq(rc, 0, "stderr: %s", e);
    cr_assert_eq(qt_count_lines(o), 4, "%s", o);
    const char *last = strstr(o, "ppl: ");
    cr_assert_not_null(last, "%s", o);
    double q = 0;
    cr_assert_eq(sscanf(last, "ppl: %lf", &q), 1);
    cr_expect(strncmp(o, "model ", 6) == 0 && strstr(o, " PPL "), "%s", o);
    free(o), free(e);
    rc = qt_run_cli(&o, &e, "eval '%s' --task ppl --data '%s' --seqlen 64 --scales '%s' --json -q", model, gold, dir);
    cr_assert_eq(rc, 0, "stderr: %s", e);
    json_object *j = parse(o);
    json_object *fp = obj(j, "fp"), *rq = obj(j, dir);
    cr_expect_leq(fabs(num(rq, "ppl") - q), 1e-5 * q);
    cr_expect_leq(fabs(num(rq, "ppl") - exp(num(rq, "nll"))), 1e-9 * q);
    cr_expect_eq(num(fp, "windows"), 3);
    cr_expect_eq(num(fp, "rows"), 189);
    cr_expect_eq(num(fp, "kl_to_fp"), 0.0);
    cr_expect_gt(num(rq, "kl_to_fp"), 0.0);
    cr_expect_neq(num(rq, "ppl"), num(fp, "ppl"));
    json_object_put(j);
    free(o), free(e), free(st), free(dir);
}

/* ---- bad input -------------------------------------------------------------------------------------- */

static void expect_fail(int rc, const char *o, const char *e, const char *part)
{
    cr_expect_eq(rc, 1, "exit %d, stderr: %s", rc, e);
    cr_expect_eq(qt_count_lines(e), 1, "one stderr line: %s", e);
    cr_expect(strncmp(e, "qvlm: ", 6) == 0, "%s", e);
    cr_expect_not_null(strstr(e, part), "'%s' not in: %s", part, e);
    cr_expect_str_eq(o, "", "nothing printed as a result");
}

Test(eval_cli, scales_of_another_model_are_refused_before_any_work)
{
    paths();
    /* every scale vector cut to 64 values: the shapes of another model */
    char *dir = qt_tmpdir();
    const char *keys[9] = {"scale.000", "scale.001", "scale.002", "scale.003", "scale.004",
                           "scale.005", "scale.006", "scale.007", "scale.008"};
    free(qt_write_batch(dir, "scales.safetensors", ivl_runs[2][0], keys, 9, 64, NULL, 0));
    char *js = qx_fixture(ivl_runs[2][1]), *data;
    size_t len;
    cr_assert_eq(qv_read_file(js, 1 << 22, &data, &len), QV_OK);
    free(write_tmp(dir, "search.json", data));
    qv_free(data);
    char *o, *e;
    int rc = qt_run_cli(&o, &e, "eval '%s' --task caption --data '%s' --image-folder '%s' --scales '%s' -q", model_ivl,
                        captions, images, dir);
    expect_fail(rc, o, e, "scale entry 0 has 64 values, but language_model.model.layers.0.input_layernorm has 128");
    cr_expect_not_null(strstr(e, dir), "%s", e);
    free(o), free(e);
    /* InternLM2 names on a Qwen2 decoder */
    char *d2 = qx_scales_dir("internvl2-internlm2-tiny", "search_mbq_w3g128_reweight_mae");
    rc = qt_run_cli(&o, &e, "eval '%s' --task caption --data '%s' --image-folder '%s' --scales '%s'", model_ivl, captions,
                    images, d2);
    expect_fail(rc, o, e, "attention_norm is not in the model");
    free(o), free(e), free(d2), free(js), free(dir);
}

Test(eval_cli, bad_captions_and_images)
{
    paths();
    char *dir = qt_tmpdir(), *o, *e;
    int rc = qt_run_cli(&o, &e, "eval '%s' --task caption --data '%s/none.json' --image-folder '%s'", model_ivl, dir, images);
    expect_fail(rc, o, e, "none.json");
    free(o), free(e);
    char *bad = write_tmp(dir, "bad.json", "[{\"id\": \"x\", \"conversations\": 3}]");
    rc = qt_run_cli(&o, &e, "eval '%s' --task caption --data '%s' --image-folder '%s'", model_ivl, bad, images);
    expect_fail(rc, o, e, "bad.json:1: entry 0");
    free(o), free(e);
    const char *two =
        "[{\"id\": \"a\", \"image\": \"rocket.jpg\", \"conversations\": [{\"from\": \"human\", \"value\": \"<image>\\nWhat "
        "is it?\"}, {\"from\": \"gpt\", \"value\": \"A rocket on its pad.\"}]},\n"
        " {\"id\": \"b\", \"image\": \"missing.jpg\", \"conversations\": [{\"from\": \"human\", \"value\": \"<image>\\nAnd "
        "this?\"}, {\"from\": \"gpt\", \"value\": \"Nothing at all.\"}]},\n"
        " {\"id\": \"c\", \"conversations\": [{\"from\": \"human\", \"value\": \"Say hi.\"}, {\"from\": \"gpt\", "
        "\"value\": \"Hi.\"}]}]";
    char *caps = write_tmp(dir, "two.json", two);
    rc = qt_run_cli(&o, &e, "eval '%s' --task caption --data '%s' --image-folder '%s' -q", model_ivl, caps, images);
    expect_fail(rc, o, e, "missing.jpg");
    cr_expect_not_null(strstr(e, "two.json"), "%s", e);
    free(o), free(e);
    /* skipped: one warning line, the other two samples evaluated */
    rc = qt_run_cli(&o, &e, "eval '%s' --task caption --data '%s' --image-folder '%s' --skip-bad-images --json -q",
                    model_ivl, caps, images);
    cr_assert_eq(rc, 0, "%s", e);
    cr_expect_eq(qt_count_lines(e), 1, "%s", e);
    cr_expect_not_null(strstr(e, "warning: ") && strstr(e, "missing.jpg") && strstr(e, "sample skipped"), "%s", e);
    json_object *j = parse(o);
    cr_expect_eq(num(obj(j, "fp"), "samples"), 2);
    json_object_put(j);
    free(o), free(e);
    /* with the bad sample gone only one sample has an image: no derangement exists */
    rc = qt_run_cli(&o, &e, "eval '%s' --task caption --data '%s' --image-folder '%s' --skip-bad-images --shuffle-images 1 -q",
                    model_ivl, caps, images);
    cr_expect_eq(rc, 1, "%s", e);
    cr_expect_not_null(strstr(e, "entry 0 is the only sample with 1 image"), "%s", e);
    cr_expect_eq(qt_count_lines(e), 2, "the skip warning and the error: %s", e);
    cr_expect_str_eq(o, "");
    free(o), free(e);
    /* a text-only model cannot run the caption task; a memory limit too small for one sample */
    rc = qt_run_cli(&o, &e, "eval '%s' --task caption --data '%s' --image-folder '%s'", qt_fixture("models/qwen2-tiny"),
                    captions, images);
    expect_fail(rc, o, e, "text-only model");
    free(o), free(e);
    rc = qt_run_cli(&o, &e, "eval '%s' --task caption --data '%s' --image-folder '%s' --max-memory 1M -q", model_ivl,
                    captions, images);
    expect_fail(rc, o, e, "--max-memory");
    /* refused up front by the image budget ("... needs 4.3 MiB, more than the --max-memory budget")
     * or by the evaluation's own estimate ("needs about ...") */
    cr_expect_not_null(strstr(e, "needs "), "%s", e);
    free(o), free(e), free(bad), free(caps), free(dir);
}

Test(eval_cli, usage_errors)
{
    paths();
    const char *bad[] = {
        "--task caption --data x.json",                                   /* no --image-folder */
        "--task caption --data x.json --image-folder . --seqlen 64",      /* a ppl option */
        "--task ppl --data x.txt --shuffle-images 3",                     /* a caption option */
        "--task caption --data x.json --image-folder . --shuffle-images -2",
        "--task caption --data x.json --image-folder . --scales a --scales a",
        "--task caption --data x.json --image-folder . --scales fp",
        "--task caption --data x.json --image-folder . --pad-rule left",
        "--task vqa --data x.json",
        "--data x.json",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *o, *e;
        int rc = qt_run_cli(&o, &e, "eval '%s' %s", model_ivl, bad[i]);
        cr_expect_eq(rc, 2, "%s: exit %d, %s", bad[i], rc, e);
        cr_expect_str_eq(o, "");
        free(o), free(e);
    }
}
