/* test_cli_vision.c — `qvlm forward` on multimodal batches (spec CLI.md; fixtures README §6,
 * §13.5, §15.3): pixels from the calibration JPEGs (src/image), ids / labels / masks from the
 * calib_batch goldens, and the loss, per-row NLL, sample-0 logits and dumped vision and LLM
 * tensors against the PyTorch goldens (loss / nll abs ≤ 1e-4, tensors rel ≤ 1e-4; §11).
 * Bad batches and models: exit 1, one stderr line naming the file or tensor, no output. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/mmutil.h"
#include "util/testutil.h"

#define IVL "models/internvl2-qwen2-tiny"
#define ILM "models/internvl2-internlm2-tiny"
#define Q2VL "models/qwen2-vl-tiny"
#define LLAVA "models/llava-onevision-qwen2-tiny"

static const char *const k_text[] = {"input_ids", "labels", "attention_mask"};

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

/* Runs forward; returns the output path (caller frees) after asserting success. */
static char *forward_ok(const char *model, const char *batch, const char *dumps, const char *expect_stdout)
{
    char *dir = qt_tmpdir(), *o, *e, *out = malloc(4096);
    snprintf(out, 4096, "%s/out.safetensors", dir);
    char m[4096];
    snprintf(m, sizeof m, "%s", qt_fixture(model));
    int rc = qt_run_cli(&o, &e, "forward '%s' --batch '%s' -o '%s' %s%s -q", m, batch, out, dumps ? "--dump " : "",
                        dumps ? dumps : "");
    cr_assert_eq(rc, 0, "exit %d, stderr: %s", rc, e);
    cr_assert_str_eq(e, "");
    if (expect_stdout)
        cr_assert_not_null(strstr(o, expect_stdout), "stdout: %s", o);
    free(o), free(e), free(dir);
    return out;
}

static void expect_fail(const char *model, const char *batch, const char *needle)
{
    char *dir = qt_tmpdir(), *o, *e;
    int rc = qt_run_cli(&o, &e, "forward '%s' --batch '%s' -o '%s/out.safetensors'", model, batch, dir);
    cr_assert_eq(rc, 1, "exit %d, stderr: %s", rc, e);
    cr_assert_eq(qt_count_lines(e), 1, "stderr: %s", e);
    cr_assert(strstr(e, "qvlm: ") == e, "stderr: %s", e);
    cr_assert_not_null(strstr(e, needle), "'%s' not in: %s", needle, e);
    cr_assert_eq(dir_entries(dir), 0, "output left behind in %s", dir);
    free(o), free(e), free(dir);
}

/* loss and every NLL row (abs ≤ 1e-4), the first rows of sample 0's logits (rel ≤ 1e-4). */
static void check_loss(qv_st_file *f, qv_st_file *g, bool compare_loss)
{
    qv_tensor t, tg;
    if (compare_loss) {
        float *l = qt_tensor_f32(f, "loss", &t), *lg = qt_tensor_f32(g, "loss", &tg);
        cr_assert_leq(fabsf(l[0] - lg[0]), 1e-4f, "loss %.6f vs %.6f", l[0], lg[0]);
    }
    float *n = qt_tensor_f32(f, "nll.loss_rows", &t), *ng = qt_tensor_f32(g, "nll.loss_rows", &tg);
    cr_assert_eq(t.shape[0], tg.shape[0], "%lld loss rows, golden %lld", (long long)t.shape[0], (long long)tg.shape[0]);
    cr_assert_leq(qt_max_abs(n, ng, (size_t)t.shape[0]), 1e-4);
    cr_assert_eq(qv_st_get(f, "nll.loss_rows.index", &t), QV_OK);
    cr_assert_eq(qv_st_get(g, "nll.loss_rows.index", &tg), QV_OK);
    cr_assert_arr_eq(t.data, tg.data, (size_t)t.shape[0] * 16);
    if (qv_st_header_find(&g->hdr, "logits.loss_rows.sample0")) {
        float *lg = qt_tensor_f32(g, "logits.loss_rows.sample0", &tg), *lo = qt_tensor_f32(f, "logits.loss_rows.sample0", &t);
        cr_assert_eq(t.shape[1], tg.shape[1]);
        cr_assert_leq(qt_max_rel(lo, lg, (size_t)(tg.shape[0] * tg.shape[1])), 1e-4);
    }
}

static void check_rel(qv_st_file *f, const char *key, qv_st_file *g, const char *gkey, size_t n, const char *what)
{
    qv_tensor t, tg;
    float *a = qt_tensor_f32(f, key, &t), *b = qt_tensor_f32(g, gkey, &tg);
    cr_assert_geq((size_t)qv_tensor_numel(&t), n);
    cr_assert_geq((size_t)qv_tensor_numel(&tg), n);
    double r = qt_max_rel(a, b, n);
    cr_assert_leq(r, 1e-4, "%s: rel %.3g", what, r);
    free(a), free(b);
}

static char *internvl_batch(const char *dir, const char *name, int n_tiles)
{
    uint8_t *tiles = qt_internvl_tiles(n_tiles);
    qv_st_item tile = {"tile_u8", QV_U8, 4, {n_tiles, 448, 448, 3}, tiles};
    char *p = qt_write_batch(dir, name, "goldens/internvl2-qwen2-tiny/calib_batch.safetensors", k_text, 3, 0, &tile, 1);
    free(tiles);
    return p;
}

Test(cli_vision, internvl2_qwen2_forward_from_tiles, .timeout = 600)
{
    char *dir = qt_tmpdir(), *batch = internvl_batch(dir, "batch.safetensors", 4);
    char *out = forward_ok(IVL, batch, "vision.last_hidden_state,projector.out,llm.inputs_embeds", "loss: 8.3531");
    qv_st_file *f = qt_open_st_path(out), *g = qt_open_st("goldens/internvl2-qwen2-tiny/forward.safetensors");
    check_loss(f, g, true);
    check_rel(f, "llm.inputs_embeds", g, "llm.inputs_embeds", 4 * 345 * 128, "llm.inputs_embeds");
    qv_tensor t;
    cr_assert_eq(qv_st_get(f, "vision.last_hidden_state", &t), QV_OK);
    cr_assert(t.ndim == 3 && t.shape[0] == 4 && t.shape[1] == 1025 && t.shape[2] == 64);
    cr_assert_eq(qv_st_get(f, "projector.out", &t), QV_OK);
    cr_assert(t.ndim == 3 && t.shape[0] == 4 && t.shape[1] == 256 && t.shape[2] == 128);
    qv_st_file *gv = qt_open_st("goldens/internvl2-qwen2-tiny/vision.safetensors");
    check_rel(f, "vision.last_hidden_state", gv, "vision.last_hidden_state", 1025 * 64, "vision.last_hidden_state");
}

/* pixel_values instead of tile_u8, and a flag-0 tile between them: the same numbers. */
Test(cli_vision, pixel_values_and_flag0_tiles, .timeout = 600)
{
    char *dir = qt_tmpdir(), *b1 = internvl_batch(dir, "tiles.safetensors", 4);
    float *px4 = qt_internvl_pixels(4);
    const size_t per = (size_t)3 * 448 * 448;
    float *px5 = malloc(5 * per * sizeof *px5);
    memcpy(px5, px4, 2 * per * sizeof *px5);
    for (size_t i = 0; i < per; i++)
        px5[2 * per + i] = 1.0f; /* the discarded tile */
    memcpy(px5 + 3 * per, px4 + 2 * per, 2 * per * sizeof *px5);
    const int64_t flags[5] = {1, 1, 0, 1, 1};
    qv_st_item extra[2] = {{"pixel_values", QV_F32, 4, {5, 3, 448, 448}, px5}, {"image_flags", QV_I64, 1, {5}, flags}};
    char *b2 = qt_write_batch(dir, "pixels.safetensors", "goldens/internvl2-qwen2-tiny/calib_batch.safetensors", k_text,
                              3, 0, extra, 2);
    char *o1 = forward_ok(IVL, b1, NULL, NULL), *o2 = forward_ok(IVL, b2, "projector.out", NULL);
    qv_st_file *f1 = qt_open_st_path(o1), *f2 = qt_open_st_path(o2);
    qv_tensor t1, t2;
    cr_assert_eq(qv_st_get(f1, "nll.loss_rows", &t1), QV_OK);
    cr_assert_eq(qv_st_get(f2, "nll.loss_rows", &t2), QV_OK);
    cr_assert_arr_eq(t1.data, t2.data, 166 * sizeof(float));
    float *po = qt_tensor_f32(f2, "projector.out", &t2);
    cr_assert(t2.shape[0] == 5);
    for (size_t i = 0; i < 256 * 128; i++)
        cr_assert_eq(po[2 * 256 * 128 + i], 0.0f, "the flag-0 tile's dump rows are zeros");
}

Test(cli_vision, internvl2_internlm2_sample0, .timeout = 600)
{
    char *dir = qt_tmpdir();
    uint8_t *tiles = qt_internvl_tiles(1);
    qv_st_item tile = {"tile_u8", QV_U8, 4, {1, 448, 448, 3}, tiles};
    char *batch = qt_write_batch(dir, "batch.safetensors", "goldens/internvl2-internlm2-tiny/calib_batch.safetensors",
                                 k_text, 3, 0, &tile, 1);
    char *out = forward_ok(ILM, batch, "llm.inputs_embeds", NULL);
    qv_st_file *f = qt_open_st_path(out), *g = qt_open_st("goldens/internvl2-internlm2-tiny/forward.safetensors");
    check_loss(f, g, false); /* the golden loss averages all four samples; the batch here is sample 0 */
    check_rel(f, "llm.inputs_embeds", g, "llm.inputs_embeds", 348 * 128, "llm.inputs_embeds");
}

Test(cli_vision, qwen2vl_forward, .timeout = 600)
{
    char *dir = qt_tmpdir();
    int64_t grid[12], rows;
    float *px = qt_qwen2vl_pixels(Q2VL, 4, grid, &rows);
    cr_assert_eq(rows, 3508);
    qv_st_file *cb = qt_open_st("goldens/qwen2-vl-tiny/calib_batch.safetensors");
    qv_tensor t;
    cr_assert_eq(qv_st_get(cb, "image_grid_thw", &t), QV_OK);
    cr_assert_arr_eq(grid, t.data, sizeof grid);
    qv_st_item pv = {"pixel_values", QV_F32, 2, {rows, 1176}, px};
    const char *keys[4] = {"input_ids", "labels", "attention_mask", "image_grid_thw"};
    char *batch = qt_write_batch(dir, "batch.safetensors", "goldens/qwen2-vl-tiny/calib_batch.safetensors", keys, 4, 0,
                                 &pv, 1);
    char *out = forward_ok(Q2VL, batch, "llm.inputs_embeds,vision.merger.out,vision.blocks.1.out", "loss: 8.2155");
    qv_st_file *f = qt_open_st_path(out), *g = qt_open_st("goldens/qwen2-vl-tiny/forward.safetensors");
    check_loss(f, g, true);
    check_rel(f, "llm.inputs_embeds", g, "llm.inputs_embeds", 330 * 128, "llm.inputs_embeds sample 0");
    check_rel(f, "vision.merger.out", g, "vision.merger.out", 176 * 128, "vision.merger.out");
    check_rel(f, "vision.blocks.1.out", g, "vision.blocks.1.out", 704 * 64, "vision.blocks.1.out");
    cr_assert_eq(qv_st_get(f, "vision.merger.out", &t), QV_OK);
    cr_assert(t.shape[0] == 877 && t.shape[1] == 128);
    /* the image rows bad: grid that does not cover pixel_values */
    int64_t bad_grid[12];
    memcpy(bad_grid, grid, sizeof grid);
    bad_grid[5] += 2;
    qv_st_item items[2] = {{"pixel_values", QV_F32, 2, {rows, 1176}, px}, {"image_grid_thw", QV_I64, 2, {4, 3}, bad_grid}};
    char *bad = qt_write_batch(dir, "bad.safetensors", "goldens/qwen2-vl-tiny/calib_batch.safetensors", keys, 3, 0,
                               items, 2);
    char m[4096];
    snprintf(m, sizeof m, "%s", qt_fixture(Q2VL));
    expect_fail(m, bad, "bad.safetensors: image_grid_thw describes 3560 patches, pixel_values has 3508 rows");
}

Test(cli_vision, llava_onevision_forward, .timeout = 600)
{
    char *dir = qt_tmpdir();
    uint8_t *px = qt_llava_pixels_u8(4);
    qv_st_item pv = {"pixel_values_u8", QV_U8, 4, {4, 3, 384, 384}, px};
    const char *keys[4] = {"input_ids_pre_splice", "attention_mask_pre_splice", "labels", "attention_mask"};
    char *batch = qt_write_batch(dir, "batch.safetensors", "goldens/llava-onevision-qwen2-tiny/calib_text.safetensors",
                                 keys, 4, 0, &pv, 1);
    char *out = forward_ok(LLAVA, batch, "llm.inputs_embeds,projector.out.sample0,image_newline", "loss: 8.2638");
    qv_st_file *f = qt_open_st_path(out), *g = qt_open_st("goldens/llava-onevision-qwen2-tiny/forward.safetensors");
    check_loss(f, g, true);
    check_rel(f, "llm.inputs_embeds", g, "llm.inputs_embeds.sample0", 256 * 128, "llm.inputs_embeds sample 0");
    check_rel(f, "projector.out.sample0", g, "projector.out.sample0", 256 * 128, "projector.out.sample0");
    check_rel(f, "image_newline", g, "image_newline", 128, "image_newline");
}

static int drop_tensor(const qv_st_entry *e, const uint8_t *data, qv_st_item *out, int max_out, void *ctx)
{
    if (!strcmp(e->name, (const char *)ctx))
        return 0;
    out[0] = (qv_st_item){strdup(e->name), e->dtype, e->ndim, {0}, data};
    memcpy(out[0].shape, e->shape, sizeof e->shape);
    return 1;
}

Test(cli_vision, bad_batches_and_models, .timeout = 600)
{
    char *dir = qt_tmpdir(), m[4096];
    snprintf(m, sizeof m, "%s", qt_fixture(IVL));
    /* tiles of the wrong size */
    uint8_t *small = calloc((size_t)4 * 224 * 224 * 3, 1);
    qv_st_item t224 = {"tile_u8", QV_U8, 4, {4, 224, 224, 3}, small};
    char *b = qt_write_batch(dir, "small.safetensors", "goldens/internvl2-qwen2-tiny/calib_batch.safetensors", k_text, 3,
                             0, &t224, 1);
    expect_fail(m, b, "small.safetensors: tensor tile_u8 has shape [4,224,224,3], expected U8 [tiles,448,448,3]");
    /* fewer tiles than the prompts' image tokens */
    b = internvl_batch(dir, "three.safetensors", 3);
    expect_fail(m, b, "three.safetensors: 1024 image tokens (id 2005) but the 3 tiles give 768 feature rows");
    /* pixel_values of an integer dtype */
    int64_t *ints = calloc((size_t)3 * 448 * 448, sizeof *ints);
    qv_st_item pi = {"pixel_values", QV_I64, 4, {1, 3, 448, 448}, ints};
    b = qt_write_batch(dir, "ints.safetensors", "goldens/internvl2-qwen2-tiny/calib_batch.safetensors", k_text, 3, 1,
                       &pi, 1);
    expect_fail(m, b, "ints.safetensors: tensor pixel_values has dtype I64, expected F32, BF16 or F16");
    /* image_flags of the wrong length */
    uint8_t *tiles = qt_internvl_tiles(4);
    const int64_t fl[3] = {1, 1, 1};
    qv_st_item it[2] = {{"tile_u8", QV_U8, 4, {4, 448, 448, 3}, tiles}, {"image_flags", QV_I64, 1, {3}, fl}};
    b = qt_write_batch(dir, "flags.safetensors", "goldens/internvl2-qwen2-tiny/calib_batch.safetensors", k_text, 3, 0,
                       it, 2);
    expect_fail(m, b, "flags.safetensors: tensor image_flags has shape [3], expected [4] (one flag per tile)");
    /* image tokens and no pixels at all */
    b = qt_write_batch(dir, "nopix.safetensors", "goldens/internvl2-qwen2-tiny/calib_batch.safetensors", k_text, 3, 0,
                       NULL, 0);
    expect_fail(m, b, "nopix.safetensors: 1024 image tokens (id 2005) but no pixel_values, tile_u8 or pixel_values_u8");
    /* a vision tensor missing from the model */
    char *model = qt_model_xform(IVL, drop_tensor, "vision_model.encoder.layers.0.attn.qkv.bias");
    b = internvl_batch(dir, "ok.safetensors", 4);
    expect_fail(model, b, "tensor vision_model.encoder.layers.0.attn.qkv.bias not found");
}
