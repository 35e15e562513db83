/* test_cli_forward.c — `qvlm forward` (spec CLI.md): the goldens' output layout and values
 * (loss / nll abs ≤ 1e-4, dumped hidden states rel ≤ 1e-4; fixtures README §11), and bad input:
 * a tensor missing from the checkpoint, a tensor of the wrong shape, a sequence longer than
 * max_position_embeddings, an unknown architecture, a missing batch, mismatched embeddings —
 * each exit 1 with one stderr line naming the file or tensor and no output left behind. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fsutil.h"
#include "util/testutil.h"

#define QWEN2 "models/qwen2-tiny"
#define QWEN2_GOLD "goldens/qwen2-tiny/forward.safetensors"

/* A copy of qwen2-tiny in a fresh folder: config.json with `from` replaced by `to` (when given),
 * weights without `drop` and with `shrink` cut to half its rows. Returns the folder. */
static char *make_model(const char *drop, const char *shrink, const char *from, const char *to)
{
    char *dir = qt_tmpdir();
    char src[4096], dst[4096];
    snprintf(src, sizeof src, "%s/config.json", qt_fixture(QWEN2));
    char *cfg = NULL;
    size_t len;
    cr_assert_eq(qv_read_file(src, 1 << 20, &cfg, &len), QV_OK);
    if (from) {
        char *p = strstr(cfg, from);
        cr_assert_not_null(p, "config has no '%s'", from);
        char *patched = malloc(len + strlen(to) + 1);
        size_t pre = (size_t)(p - cfg);
        memcpy(patched, cfg, pre);
        strcpy(patched + pre, to);
        strcat(patched, p + strlen(from));
        qv_free(cfg);
        cfg = patched;
        len = strlen(cfg);
    }
    snprintf(dst, sizeof dst, "%s/config.json", dir);
    cr_assert_eq(qv_write_file_atomic(dst, cfg, strlen(cfg)), QV_OK);
    from ? free(cfg) : qv_free(cfg);
    qv_st_file *f = qt_open_st(QWEN2 "/model.safetensors");
    qv_st_item *items = calloc(f->hdr.n, sizeof *items);
    size_t n = 0;
    for (size_t i = 0; i < f->hdr.n; i++) {
        const qv_st_entry *e = &f->hdr.entries[i];
        if (drop && !strcmp(e->name, drop))
            continue;
        qv_tensor t;
        qv_st_view(f, e, &t);
        items[n] = (qv_st_item){e->name, e->dtype, e->ndim, {0}, t.data};
        memcpy(items[n].shape, e->shape, sizeof e->shape);
        if (shrink && !strcmp(e->name, shrink))
            items[n].shape[0] /= 2;
        n++;
    }
    snprintf(dst, sizeof dst, "%s/model.safetensors", dir);
    cr_assert_eq(qv_st_write_file(dst, items, n, NULL, 0), QV_OK, "%s", qv_last_error());
    free(items);
    qv_st_close(f);
    return dir;
}

static int dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

/* Runs a failing forward and checks: exit 1, one stderr line containing `needle`, no output. */
static void expect_fail(const char *model, const char *batch, const char *extra, const char *needle)
{
    char *out_dir = qt_tmpdir(), *o, *e;
    int rc = qt_run_cli(&o, &e, "forward '%s' --batch '%s' -o '%s/out.safetensors' %s", model, batch, out_dir,
                        extra ? extra : "");
    cr_assert_eq(rc, 1, "exit %d, stderr: %s", rc, e);
    cr_assert_eq(qt_count_lines(e), 1, "stderr: %s", e);
    cr_assert(strstr(e, "qvlm: ") == e, "stderr: %s", e);
    cr_assert_not_null(strstr(e, needle), "'%s' not in: %s", needle, e);
    cr_assert_eq(dir_entries(out_dir), 0, "output left behind in %s", out_dir);
    free(o), free(e), free(out_dir);
}

Test(cli_forward, qwen2_tiny_golden_layout_and_values)
{
    char *dir = qt_tmpdir(), *o, *e, out[4096];
    snprintf(out, sizeof out, "%s/out.safetensors", dir);
    char model[4096], batch[4096];
    snprintf(model, sizeof model, "%s", qt_fixture(QWEN2));
    snprintf(batch, sizeof batch, "%s", qt_fixture(QWEN2_GOLD));
    int rc = qt_run_cli(&o, &e, "forward '%s' --batch '%s' -o '%s' --dump llm.inputs_embeds,llm.layer.1.out,logits -q",
                        model, batch, out);
    cr_assert_eq(rc, 0, "stderr: %s", e);
    cr_assert_not_null(strstr(o, "loss: 8.2239"), "stdout: %s", o);
    cr_assert_str_eq(e, "");
    qv_st_file *f = NULL, *g = qt_open_st(QWEN2_GOLD);
    cr_assert_eq(qv_st_open(out, &f), QV_OK);
    qv_tensor t, tg;
    float *loss = qt_tensor_f32(f, "loss", &t), *gl = qt_tensor_f32(g, "loss", &tg);
    cr_assert(t.ndim == 1 && t.shape[0] == 1 && t.dtype == QV_F32);
    cr_assert_leq(fabsf(loss[0] - gl[0]), 1e-4f);
    cr_assert_eq(qv_st_get(f, "nll.loss_rows.index", &t), QV_OK);
    cr_assert(t.dtype == QV_I64 && t.ndim == 2 && t.shape[0] == 77 && t.shape[1] == 2);
    cr_assert_eq(qv_st_get(f, "logits.loss_rows.sample0", &t), QV_OK);
    cr_assert(t.ndim == 2 && t.shape[1] == 2048);
    int64_t m0 = t.shape[0];
    cr_assert_eq(qv_st_get(f, "logits.loss_rows.sample0.index", &t), QV_OK);
    cr_assert(t.shape[0] == m0 && t.dtype == QV_I64);
    float *h1 = qt_tensor_f32(f, "llm.layers.1.out", &t), *g1 = qt_tensor_f32(g, "layers.1.out", &tg);
    cr_assert(t.ndim == 3 && t.shape[0] == 3 && t.shape[1] == 43 && t.shape[2] == 128);
    cr_assert_leq(qt_max_rel(h1, g1, 3 * 43 * 128), 1e-4);
    float *e0 = qt_tensor_f32(f, "llm.inputs_embeds", &t), *ge = qt_tensor_f32(g, "embed.out", &tg);
    cr_assert_arr_eq(e0, ge, 3 * 43 * 128 * 4);
    float *lg = qt_tensor_f32(f, "logits", &t), *glg = qt_tensor_f32(g, "logits", &tg);
    cr_assert(t.shape[0] == 3 && t.shape[2] == 2048);
    cr_assert_leq(qt_max_rel(lg, glg, 43 * 2048), 1e-4); /* golden keeps sample 0 */
    free(loss), free(gl), free(h1), free(g1), free(e0), free(ge), free(lg), free(glg);
    qv_st_close(f);
    qv_st_close(g);
    free(o), free(e), free(dir);
}

Test(cli_forward, internvl2_from_inputs_embeds)
{
    char *dir = qt_tmpdir(), *o, *e, out[4096], model[4096], batch[4096], emb[4096];
    snprintf(out, sizeof out, "%s/o.safetensors", dir);
    snprintf(model, sizeof model, "%s", qt_fixture("models/internvl2-qwen2-tiny"));
    snprintf(batch, sizeof batch, "%s", qt_fixture("goldens/internvl2-qwen2-tiny/calib_batch.safetensors"));
    snprintf(emb, sizeof emb, "%s", qt_fixture("goldens/internvl2-qwen2-tiny/forward.safetensors"));
    int rc = qt_run_cli(&o, &e, "forward '%s' --batch '%s' --inputs-embeds 'llm.inputs_embeds@%s' -o '%s' --threads 1",
                        model, batch, emb, out);
    cr_assert_eq(rc, 0, "stderr: %s", e);
    qv_st_file *f = NULL, *g = qt_open_st("goldens/internvl2-qwen2-tiny/forward.safetensors");
    cr_assert_eq(qv_st_open(out, &f), QV_OK);
    qv_tensor t;
    float *nll = qt_tensor_f32(f, "nll.loss_rows", &t), *gn = qt_tensor_f32(g, "nll.loss_rows", NULL);
    cr_assert_eq(t.shape[0], 166);
    cr_assert_leq(qt_max_abs(nll, gn, 166), 1e-4);
    float *loss = qt_tensor_f32(f, "loss", NULL);
    cr_assert_leq(fabs(loss[0] - 8.353189), 1e-4, "loss %f", loss[0]);
    free(nll), free(gn), free(loss);
    qv_st_close(f);
    qv_st_close(g);
    free(o), free(e), free(dir);
}

Test(cli_forward, missing_tensor)
{
    char *m = make_model("model.layers.1.mlp.up_proj.weight", NULL, NULL, NULL);
    expect_fail(m, qt_fixture(QWEN2_GOLD), NULL, "tensor model.layers.1.mlp.up_proj.weight not found");
    free(m);
}

Test(cli_forward, wrong_shape)
{
    char *m = make_model(NULL, "model.layers.0.self_attn.k_proj.weight", NULL, NULL);
    expect_fail(m, qt_fixture(QWEN2_GOLD), NULL, "tensor model.layers.0.self_attn.k_proj.weight has shape [32,128]");
    free(m);
}

Test(cli_forward, sequence_longer_than_max_positions)
{
    char *m = make_model(NULL, NULL, "\"max_position_embeddings\": 32768", "\"max_position_embeddings\": 40");
    expect_fail(m, qt_fixture(QWEN2_GOLD), NULL, "forward.safetensors: sequence length 43 exceeds max_position_embeddings 40");
    free(m);
}

Test(cli_forward, unknown_architecture)
{
    char *m = make_model(NULL, NULL, "Qwen2ForCausalLM", "FalconForCausalLM");
    expect_fail(m, qt_fixture(QWEN2_GOLD), NULL, "config.json");
    free(m);
}

Test(cli_forward, missing_batch_and_bad_embeddings)
{
    char model[4096];
    snprintf(model, sizeof model, "%s", qt_fixture(QWEN2));
    expect_fail(model, "/nonexistent/batch.safetensors", NULL, "/nonexistent/batch.safetensors");
    char extra[4096];
    snprintf(extra, sizeof extra, "--inputs-embeds 'llm.inputs_embeds@%s'",
             qt_fixture("goldens/internvl2-qwen2-tiny/forward.safetensors"));
    expect_fail(model, qt_fixture(QWEN2_GOLD), extra, "tensor llm.inputs_embeds has shape [4,345,128]");
    snprintf(extra, sizeof extra, "--inputs-embeds 'nope@%s'", qt_fixture("goldens/internvl2-qwen2-tiny/forward.safetensors"));
    expect_fail(model, qt_fixture(QWEN2_GOLD), extra, "nope");
    /* a token id outside the vocabulary */
    char *dir = qt_tmpdir(), bad[4096];
    snprintf(bad, sizeof bad, "%s/bad_ids.safetensors", dir);
    const int64_t ids[4] = {1, 2, 5000, 3};
    qv_st_item it = {"input_ids", QV_I64, 2, {1, 4}, ids};
    cr_assert_eq(qv_st_write_file(bad, &it, 1, NULL, 0), QV_OK);
    expect_fail(model, bad, NULL, "bad_ids.safetensors: input_ids[0][2] = 5000 is outside the vocabulary");
    free(dir);
}

Test(cli_forward, refuses_above_max_memory)
{
    char model[4096];
    snprintf(model, sizeof model, "%s", qt_fixture(QWEN2));
    expect_fail(model, qt_fixture(QWEN2_GOLD), "--max-memory 1M", "more than --max-memory 1.0 MiB");
}

Test(cli_forward, usage_errors)
{
    char *o, *e;
    int rc = qt_run_cli(&o, &e, "forward '%s' --batch x -o y --dump bogus", qt_fixture(QWEN2));
    cr_assert_eq(rc, 2, "stderr: %s", e);
    free(o), free(e);
    rc = qt_run_cli(&o, &e, "forward '%s'", qt_fixture(QWEN2));
    cr_assert_eq(rc, 2);
    free(o), free(e);
}

Test(cli_forward, same_bytes_for_any_thread_count)
{
    char *dir = qt_tmpdir(), *o, *e, model[4096], batch[4096], emb[4096];
    snprintf(model, sizeof model, "%s", qt_fixture("models/internvl2-internlm2-tiny"));
    snprintf(batch, sizeof batch, "%s", qt_fixture("goldens/internvl2-internlm2-tiny/calib_batch.safetensors"));
    snprintf(emb, sizeof emb, "%s", qt_fixture("goldens/internvl2-internlm2-tiny/forward.safetensors"));
    char *files[2];
    for (int i = 0; i < 2; i++) {
        files[i] = malloc(4096);
        snprintf(files[i], 4096, "%s/t%d.safetensors", dir, i + 1);
        int rc = qt_run_cli(&o, &e, "forward '%s' --batch '%s' --inputs-embeds 'llm.inputs_embeds@%s' -o '%s' -q "
                            "--threads %d --dump llm.layers.*.out,llm.norm.out",
                            model, batch, emb, files[i], i + 1);
        cr_assert_eq(rc, 0, "stderr: %s", e);
        free(o), free(e);
    }
    char *a, *b;
    size_t la, lb;
    cr_assert_eq(qv_read_file(files[0], 1 << 28, &a, &la), QV_OK);
    cr_assert_eq(qv_read_file(files[1], 1 << 28, &b, &lb), QV_OK);
    cr_assert(la == lb && memcmp(a, b, la) == 0, "outputs differ between 1 and 2 threads");
    qv_free(a), qv_free(b), free(files[0]), free(files[1]), free(dir);
}
