/* test_cli_calib.c — `qvlm calib CONFIG -o BATCH.safetensors` (spec/CLI.md): the written tensors
 * and metadata against the goldens (ids, labels, masks, image flags; the tiles by their SHA-256
 * in tests/fixtures/goldens/image/preprocess.json, pixel_values by the float32 formula of
 * fixtures README §4), Qwen2-VL's and LLaVA's extra tensors; bad inputs (missing image,
 * truncated JPEG, caption JSON not a list, an entry without conversations, a Qwen2-VL item
 * without image, n_samples above the file) → exit 1 with one stderr line naming the file (and
 * the entry) and no output file; --skip-bad-images reports every skip; usage errors → 2. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fsutil.h"
#include "core/sha256.h"
#include "io/safetensors.h"
#include "util/testutil.h"

static char *write_file(const char *dir, const char *name, const char *text)
{
    char *path = NULL;
    cr_assert(asprintf(&path, "%s/%s", dir, name) > 0);
    FILE *fp = fopen(path, "w");
    cr_assert_not_null(fp);
    fputs(text, fp);
    fclose(fp);
    return path;
}

/* A run config for `model` (family `fam`) over `data` (default: the fixture captions). */
static char *write_config(const char *dir, const char *model, const char *fam, const char *data, const char *extra)
{
    char *yaml = NULL, models[4096], images[4096], caps[4096];
    snprintf(models, sizeof models, "%s", qt_fixture("models"));
    snprintf(images, sizeof images, "%s", qt_fixture("calib/images"));
    snprintf(caps, sizeof caps, "%s", data ? data : qt_fixture("calib/captions_sharegpt4v.json"));
    cr_assert(asprintf(&yaml,
                       "model: %s\nmodel_args: pretrained=\"%s/%s\"\ncalib_data: sharegpt4v\ndata_path: %s\n"
                       "image_folder: %s\nmethod: mbq\nrun_process: true\n%s",
                       fam, models, model, caps, images, extra ? extra : "n_samples: 4\n") > 0);
    char *p = write_file(dir, "run.yaml", yaml);
    free(yaml);
    return p;
}

static int64_t *tensor_i64(const qv_st_file *f, const char *name, int ndim, const int64_t *shape)
{
    qv_tensor t;
    cr_assert_eq(qv_st_get(f, name, &t), QV_OK, "%s", qv_last_error());
    cr_assert_eq(t.ndim, ndim, "%s ndim", name);
    for (int d = 0; d < ndim; d++)
        cr_assert_eq(t.shape[d], shape[d], "%s dim %d: %lld vs %lld", name, d, (long long)t.shape[d],
                     (long long)shape[d]);
    size_t n = (size_t)qv_tensor_numel(&t);
    int64_t *v = malloc((n ? n : 1) * sizeof *v);
    cr_assert_eq(qv_convert(v, QV_I64, t.data, t.dtype, n), QV_OK);
    return v;
}

/* Every key of the golden file `rel` equals the output's (same dtype class, shape and values). */
static void expect_same(const qv_st_file *out, const char *rel, const char *const *keys, size_t n)
{
    qv_st_file *g = qt_open_st(rel);
    for (size_t i = 0; i < n; i++) {
        qv_tensor t;
        cr_assert_eq(qv_st_get(g, keys[i], &t), QV_OK, "%s", qv_last_error());
        const qv_st_entry *e = qv_st_header_find(&out->hdr, keys[i]);
        cr_assert_not_null(e, "output lacks %s", keys[i]);
        cr_assert_eq(e->dtype, t.dtype, "%s dtype", keys[i]);
        int64_t *a = tensor_i64(out, keys[i], t.ndim, t.shape), *b = tensor_i64(g, keys[i], t.ndim, t.shape);
        size_t m = (size_t)qv_tensor_numel(&t);
        for (size_t k = 0; k < m; k++)
            cr_assert_eq(a[k], b[k], "%s[%zu]", keys[i], k);
        free(a), free(b);
    }
    qv_st_close(g);
}

static const char *meta(const qv_st_file *f, const char *key)
{
    for (size_t i = 0; i < f->hdr.n_meta; i++)
        if (!strcmp(f->hdr.meta[i].key, key))
            return f->hdr.meta[i].value;
    cr_assert_fail("metadata %s missing", key);
    return NULL;
}

static int dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* ---- outputs ---------------------------------------------------------------------------------- */

Test(cli_calib, internvl2_batch_file)
{
    char *dir = qt_tmpdir(), *cfg = write_config(dir, "internvl2-qwen2-tiny", "internvl2", NULL, NULL), *out, *err;
    int rc = qt_run_cli(&out, &err, "calib '%s' -o '%s/batch.safetensors' --quiet", cfg, dir);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_eq(qt_count_lines(out), 1, "%s", out);
    cr_assert(strstr(out, "4 x 345 tokens") && strstr(out, "166 caption"), "%s", out);
    char path[4200];
    snprintf(path, sizeof path, "%s/batch.safetensors", dir);
    qv_st_file *f;
    cr_assert_eq(qv_st_open(path, &f), QV_OK, "%s", qv_last_error());
    static const char *const keys[] = {"input_ids", "labels", "attention_mask", "vision_mask", "caption_mask",
                                       "image_flags"};
    expect_same(f, "goldens/internvl2-qwen2-tiny/calib_ids.safetensors", keys, 6);
    /* tiles: the preprocessing goldens' SHA-256 in batch order; pixel_values from them (§4) */
    json_object *pj = json_object_from_file(qt_fixture("goldens/image/preprocess.json")), *imgs;
    cr_assert(json_object_object_get_ex(pj, "images", &imgs));
    static const char *const order[] = {"synth_gray_301x451.jpg", "rocket.jpg", "synth_500x333.jpg", "grace_hopper.jpg"};
    qv_tensor tu, pv;
    cr_assert_eq(qv_st_get(f, "tile_u8", &tu), QV_OK);
    cr_assert_eq(qv_st_get(f, "pixel_values", &pv), QV_OK);
    cr_assert(tu.dtype == QV_U8 && tu.shape[0] == 4 && tu.shape[1] == 448 && tu.shape[3] == 3);
    cr_assert(pv.dtype == QV_F32 && pv.shape[0] == 4 && pv.shape[1] == 3 && pv.shape[2] == 448);
    const size_t tile = (size_t)448 * 448 * 3;
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
    for (int i = 0; i < 4; i++) {
        json_object *im, *sh;
        cr_assert(json_object_object_get_ex(imgs, order[i], &im));
        cr_assert(json_object_object_get_ex(im, "tile_sha256", &sh));
        char hex[65];
        qv_sha256_hex((const uint8_t *)tu.data + i * tile, tile, hex);
        cr_assert_str_eq(hex, json_object_get_string(json_object_array_get_idx(sh, 0)), "tile %d (%s)", i, order[i]);
        const uint8_t *u = (const uint8_t *)tu.data + i * tile;
        const float *p = (const float *)pv.data + i * tile;
        for (size_t k = 0; k < (size_t)448 * 448; k += 997)
            for (int c = 0; c < 3; c++) {
                float want = ((float)u[k * 3 + c] / 255.0f - mean[c]) / sd[c];
                cr_assert_eq(p[(size_t)c * 448 * 448 + k], want, "pixel %zu channel %d of tile %d", k, c, i);
            }
    }
    json_object_put(pj);
    /* metadata */
    json_object *pr = json_tokener_parse(meta(f, "prompts")), *ids = json_tokener_parse(meta(f, "sample_ids"));
    cr_assert_eq(json_object_array_length(pr), 4);
    cr_assert(strstr(json_object_get_string(json_object_array_get_idx(pr, 0)),
                     "<|im_start|>user\n<img><IMG_CONTEXT>x256</img>\nCaption the picture in one sentence.<|im_end|>"));
    cr_assert_str_eq(json_object_get_string(json_object_array_get_idx(ids, 0)), "calib-3");
    cr_assert_str_eq(meta(f, "padding_side"), "right");
    cr_assert_str_eq(meta(f, "pad_rule"), "mbq");
    json_object_put(pr), json_object_put(ids);
    qv_st_close(f);
    free(out), free(err), free(cfg), free(dir);
}

Test(cli_calib, qwen2vl_and_llava_extra_tensors)
{
    char *dir = qt_tmpdir(), *cfg = write_config(dir, "qwen2-vl-tiny", "qwen2_vl", NULL, NULL), *out, *err;
    cr_assert_eq(qt_run_cli(&out, &err, "calib '%s' -o '%s/q.safetensors' --quiet", cfg, dir), 0, "%s", err);
    char path[4200];
    snprintf(path, sizeof path, "%s/q.safetensors", dir);
    qv_st_file *f;
    cr_assert_eq(qv_st_open(path, &f), QV_OK);
    static const char *const qk[] = {"input_ids", "labels", "attention_mask", "vision_mask", "caption_mask",
                                     "image_grid_thw", "position_ids", "mrope.position_ids", "mrope.rope_deltas"};
    expect_same(f, "goldens/qwen2-vl-tiny/calib_ids.safetensors", qk, QV_ARRAY_LEN(qk));
    qv_tensor t;
    cr_assert_eq(qv_st_get(f, "pixel_values", &t), QV_OK);
    cr_assert(t.shape[0] == 3508 && t.shape[1] == 1176);
    cr_assert_eq(qv_st_get(f, "tile_u8.3", &t), QV_OK);
    cr_assert(t.shape[1] == 476 && t.shape[2] == 392, "grace_hopper resized to 392x476: %lldx%lld",
              (long long)t.shape[2], (long long)t.shape[1]);
    cr_assert_str_eq(meta(f, "padding_side"), "left");
    qv_st_close(f);
    free(out), free(err), free(cfg);

    cfg = write_config(dir, "llava-onevision-qwen2-tiny", "llava_onevision", NULL, NULL);
    cr_assert_eq(qt_run_cli(&out, &err, "calib '%s' -o '%s/l.safetensors' --quiet", cfg, dir), 0, "%s", err);
    snprintf(path, sizeof path, "%s/l.safetensors", dir);
    cr_assert_eq(qv_st_open(path, &f), QV_OK);
    static const char *const lk[] = {"labels", "attention_mask", "vision_mask", "caption_mask",
                                     "input_ids_pre_splice", "labels_pre_splice", "attention_mask_pre_splice"};
    expect_same(f, "goldens/llava-onevision-qwen2-tiny/calib_ids.safetensors", lk, QV_ARRAY_LEN(lk));
    int64_t *sizes = tensor_i64(f, "image_sizes", 2, (int64_t[]){4, 2});
    cr_assert(sizes[0] == 301 && sizes[1] == 451 && sizes[2] == 640 && sizes[3] == 427);
    free(sizes);
    cr_assert_str_eq(meta(f, "image_span"), "730");
    qv_st_close(f);
    free(out), free(err), free(cfg), free(dir);
}

/* ---- bad input -------------------------------------------------------------------------------- */

/* Runs calib on `captions` (JSON text written as `name`) and expects exit 1 with one stderr line
 * holding every string of `need`, and no file left in the output folder. */
static void expect_fail(const char *model, const char *fam, const char *name, const char *captions,
                        const char *const *need, size_t n_need)
{
    char *dir = qt_tmpdir(), *data = write_file(dir, name, captions), outdir[4200];
    snprintf(outdir, sizeof outdir, "%s/out", dir);
    cr_assert_eq(mkdir(outdir, 0755), 0);
    char *cfg = write_config(dir, model, fam, data, "n_samples: 1\n"), *out, *err;
    int rc = qt_run_cli(&out, &err, "calib '%s' -o '%s/batch.safetensors' --quiet", cfg, outdir);
    cr_assert_eq(rc, 1, "exit %d: %s", rc, err);
    cr_assert_eq(qt_count_lines(err), 1, "%s", err);
    cr_assert(!strncmp(err, "qvlm: ", 6), "%s", err);
    for (size_t i = 0; i < n_need; i++)
        cr_assert(strstr(err, need[i]), "\"%s\" not in: %s", need[i], err);
    cr_assert_eq(dir_entries(outdir), 0, "no output (not even a temporary) is left");
    free(out), free(err), free(cfg), free(data), free(dir);
}

#define ITEM(img, q) \
    "{\"id\": \"x1\", \"image\": \"" img "\", \"conversations\": [{\"from\": \"human\", \"value\": \"" q \
    "\"}, {\"from\": \"gpt\", \"value\": \"A caption.\"}]}"

Test(cli_calib, missing_image)
{
    const char *need[] = {"bad.json:1: entry 0 (id \"x1\")", "nope.jpg"};
    expect_fail("internvl2-qwen2-tiny", "internvl2", "bad.json", "[" ITEM("nope.jpg", "<image>\\nQ") "]", need, 2);
}

Test(cli_calib, truncated_jpeg)
{
    char *dir = qt_tmpdir(), *src = NULL, *buf = NULL;
    size_t len;
    cr_assert_eq(qv_read_file(qt_fixture("calib/images/rocket.jpg"), 1 << 24, &buf, &len), QV_OK);
    char *jpg = NULL;
    cr_assert(asprintf(&jpg, "%s/half.jpg", dir) > 0);
    FILE *fp = fopen(jpg, "wb");
    fwrite(buf, 1, len / 2, fp);
    fclose(fp);
    cr_assert(asprintf(&src, "[{\"id\": \"t\", \"image\": \"%s\", \"conversations\": [{\"from\": \"human\", "
                             "\"value\": \"Q\"}, {\"from\": \"gpt\", \"value\": \"A\"}]}]",
                       jpg) > 0);
    const char *need[] = {"trunc.json:1: entry 0 (id \"t\")", "half.jpg"};
    expect_fail("internvl2-qwen2-tiny", "internvl2", "trunc.json", src, need, 2);
    free(src), free(jpg), free(buf), free(dir);
}

Test(cli_calib, caption_json_not_a_list)
{
    const char *need[] = {"obj.json", "expected a JSON array of objects"};
    expect_fail("internvl2-qwen2-tiny", "internvl2", "obj.json", "{\"id\": \"a\"}\n", need, 2);
}

Test(cli_calib, entry_without_conversations)
{
    const char *need[] = {"noconv.json:1: entry 0", "conversations"};
    expect_fail("internvl2-qwen2-tiny", "internvl2", "noconv.json", "[{\"id\": \"a\", \"image\": \"rocket.jpg\"}]",
                need, 2);
}

Test(cli_calib, qwen2vl_item_without_image)
{
    const char *need[] = {"noimg.json:1: entry 0 (id \"n\")", "no image"};
    expect_fail("qwen2-vl-tiny", "qwen2_vl", "noimg.json",
                "[{\"id\": \"n\", \"conversations\": [{\"from\": \"human\", \"value\": \"Q\"}, {\"from\": \"gpt\", "
                "\"value\": \"A\"}]}]",
                need, 2);
}

Test(cli_calib, n_samples_above_the_file)
{
    char *dir = qt_tmpdir(), *cfg = write_config(dir, "internvl2-qwen2-tiny", "internvl2", NULL, "n_samples: 5\n");
    char *out, *err;
    int rc = qt_run_cli(&out, &err, "calib '%s' -o '%s/b.safetensors' --quiet", cfg, dir);
    cr_assert_eq(rc, 1, "%s", err);
    cr_assert_eq(qt_count_lines(err), 1, "%s", err);
    cr_assert(strstr(err, "captions_sharegpt4v.json: n_samples 5") && strstr(err, "--allow-repeat"), "%s", err);
    free(out), free(err);
    rc = qt_run_cli(&out, &err, "calib '%s' -o '%s/b.safetensors' --allow-repeat", cfg, dir);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert(strstr(out, "5 x 345 tokens"), "%s", out);
    cr_assert(strstr(err, "qvlm: note:") && strstr(err, "wrapping around"), "%s", err);
    free(out), free(err), free(cfg), free(dir);
}

Test(cli_calib, skip_bad_images_reports_every_skip)
{
    char *dir = qt_tmpdir();
    char *data = write_file(dir, "mixed.json",
                            "[" ITEM("rocket.jpg", "<image>\\nQ") ",\n" ITEM("gone1.jpg", "Q") ",\n" ITEM(
                                "grace_hopper.jpg", "Q") ",\n" ITEM("gone2.jpg", "Q") "]");
    char *cfg = write_config(dir, "internvl2-qwen2-tiny", "internvl2", data, "n_samples: 4\n"), *out, *err;
    int rc = qt_run_cli(&out, &err, "calib '%s' -o '%s/b.safetensors' --quiet", cfg, dir);
    cr_assert_eq(rc, 1, "without the flag the first bad image fails the run: %s", err);
    cr_assert_eq(qt_count_lines(err), 1, "%s", err);
    free(out), free(err);
    rc = qt_run_cli(&out, &err, "calib '%s' -o '%s/b.safetensors' --skip-bad-images --quiet", cfg, dir);
    cr_assert_eq(rc, 0, "%s", err);
    cr_assert_eq(qt_count_lines(err), 2, "one line per skipped sample: %s", err);
    cr_assert(strstr(err, "mixed.json:2: entry 1") && strstr(err, "gone1.jpg"), "%s", err);
    cr_assert(strstr(err, "mixed.json:4: entry 3") && strstr(err, "gone2.jpg"), "%s", err);
    cr_assert(strstr(out, "2 x "), "two samples left: %s", out);
    free(out), free(err), free(cfg), free(data), free(dir);
}

Test(cli_calib, progress_then_one_error_line)
{
    char *dir = qt_tmpdir();
    char *data = write_file(dir, "late.json", "[" ITEM("rocket.jpg", "Q") ",\n" ITEM("gone.jpg", "Q") "]");
    char *cfg = write_config(dir, "internvl2-qwen2-tiny", "internvl2", data, "n_samples: 2\n"), *out, *err;
    int rc = qt_run_cli(&out, &err, "calib '%s' -o '%s/b.safetensors'", cfg, dir);
    cr_assert_eq(rc, 1);
    int n = 0;
    const char *last = err;
    for (const char *p = err; *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : p + strlen(p)) {
        if (!strncmp(p, "qvlm: ", 6)) {
            n++;
            last = p;
        }
    }
    cr_assert_eq(n, 1, "%s", err);
    const char *nl = strchr(last, '\n');
    cr_assert(strstr(last, "late.json:2: entry 1") && nl && nl[1] == 0, "the error is the last line: %s", err);
    free(out), free(err), free(cfg), free(data), free(dir);
}

Test(cli_calib, usage_errors)
{
    char *dir = qt_tmpdir(), *cfg = write_config(dir, "internvl2-qwen2-tiny", "internvl2", NULL, NULL), *out, *err;
    cr_assert_eq(qt_run_cli(&out, &err, "calib '%s'", cfg), 2);
    free(out), free(err);
    cr_assert_eq(qt_run_cli(&out, &err, "calib '%s' -o '%s/b.safetensors' --run 3", cfg, dir), 2);
    free(out), free(err);
    cr_assert_eq(qt_run_cli(&out, &err, "calib '%s/missing.yaml' -o '%s/b.safetensors'", dir, dir), 1);
    cr_assert_eq(qt_count_lines(err), 1, "%s", err);
    free(out), free(err), free(cfg), free(dir);
}
