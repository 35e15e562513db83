/* test_preprocess.c — the image preprocessing of each family against the reference goldens,
 * all exact (fixtures README §4, §11, §13.3, §15.2): InternVL tiles (SHA-256 of all 11 tiles),
 * pixel_values; the tiling rule and Qwen2-VL smart_resize against tables computed with the
 * reference Python functions; Qwen2-VL resized image, pixel_values and grid; LLaVA-OV pad path
 * u8 tiles; and `qvlm preprocess` (outputs, errors, no output left behind on failure). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fsutil.h"
#include "core/sha256.h"
#include "image/image.h"
#include "io/json.h"
#include "model/config.h"
#include "util/testutil.h"

static const char *k_images[] = {"grace_hopper", "rocket", "synth_500x333", "synth_gray_301x451"};

/* qt_fixture returns a static buffer: copies for calls that take several paths (a ring of
 * static buffers, so nothing leaks under LeakSanitizer). */
static const char *fx(const char *rel)
{
    static char ring[8][1024];
    static int next;
    char *b = ring[next++ % 8];
    snprintf(b, sizeof ring[0], "%s", qt_fixture(rel));
    return b;
}

static qv_image load_fixture(const char *stem)
{
    char rel[256];
    snprintf(rel, sizeof rel, "calib/images/%s.jpg", stem);
    qv_image img;
    if (qv_image_load(qt_fixture(rel), &img) != QV_OK)
        cr_assert_fail("%s", qv_last_error());
    return img;
}

static qv_json *load_json(const char *rel)
{
    qv_json *j = NULL;
    if (qv_json_load_file(qt_fixture(rel), 0, &j) != QV_OK)
        cr_assert_fail("%s", qv_last_error());
    return j;
}

static void assert_sha(const void *data, size_t n, const char *want, const char *what)
{
    char hex[65];
    qv_sha256_hex(data, n, hex);
    cr_assert_str_eq(hex, want, "%s: SHA-256 differs", what);
}

static const char *jstr(const qv_json *o, const char *k1, const char *k2)
{
    qv_json *v = qv_json_get(qv_json_get(o, k1), k2);
    cr_assert_not_null(v, "golden lacks %s.%s", k1, k2);
    return json_object_get_string(v);
}

/* ---- InternVL2/3 ------------------------------------------------------------------------------ */

static qv_internvl_prep internvl_prep(int max_num)
{
    qv_internvl_prep p;
    qv_internvl_prep_default(&p);
    p.max_num = max_num;
    return p;
}

Test(preprocess, internvl_single_tile_matches_reference)
{
    qv_json *g = load_json("goldens/image/preprocess.json");
    qv_internvl_prep p = internvl_prep(1); /* MBQ calibration: min = max = 1 */
    for (size_t i = 0; i < QV_ARRAY_LEN(k_images); i++) {
        qv_image img = load_fixture(k_images[i]);
        qv_pixels px;
        cr_assert_eq(qv_preprocess_internvl(&img, &p, k_images[i], &px), QV_OK, "%s", qv_last_error());
        cr_assert(px.n_tiles == 1 && px.grid_cols == 1 && px.grid_rows == 1 && !px.thumbnail);
        cr_assert(px.ndim == 4 && px.shape[0] == 1 && px.shape[1] == 3 && px.shape[2] == 448 && px.shape[3] == 448);
        char key[128];
        snprintf(key, sizeof key, "%s.jpg", k_images[i]);
        qv_json *tiles = qv_json_get(qv_json_get(qv_json_get(g, "images"), key), "tile_sha256");
        assert_sha(px.tiles_u8, (size_t)448 * 448 * 3, json_object_get_string(json_object_array_get_idx(tiles, 0)), key);
        qv_pixels_free(&px);
        qv_image_free(&img);
    }
    qv_json_free(g);
}

Test(preprocess, internvl_tiling_max6_matches_reference)
{
    qv_json *g = load_json("goldens/image/preprocess.json");
    qv_json *e = qv_json_get(qv_json_get(g, "tiling_max6"), "synth_500x333.jpg");
    qv_image img = load_fixture("synth_500x333");
    qv_internvl_prep p = internvl_prep(6);
    qv_pixels px;
    cr_assert_eq(qv_preprocess_internvl(&img, &p, "synth", &px), QV_OK, "%s", qv_last_error());
    cr_assert_eq(px.grid_cols, 3);
    cr_assert_eq(px.grid_rows, 2);
    cr_assert(px.thumbnail);
    qv_json *tiles = qv_json_get(e, "tile_sha256");
    cr_assert_eq(px.n_tiles, (int)json_object_array_length(tiles));
    for (int t = 0; t < px.n_tiles; t++) {
        char what[32];
        snprintf(what, sizeof what, "tile %d", t);
        assert_sha(px.tiles_u8 + (size_t)t * 448 * 448 * 3, (size_t)448 * 448 * 3,
                   json_object_get_string(json_object_array_get_idx(tiles, t)), what);
    }
    qv_pixels_free(&px);
    qv_image_free(&img);
    qv_json_free(g);
}

Test(preprocess, internvl_pixel_values_match_reference)
{
    qv_json *d = load_json("goldens/image/derived_sha256.json");
    qv_image img = load_fixture("grace_hopper");
    qv_internvl_prep p = internvl_prep(1);
    qv_pixels px;
    cr_assert_eq(qv_preprocess_internvl(&img, &p, "grace_hopper", &px), QV_OK, "%s", qv_last_error());
    assert_sha(px.values, (size_t)3 * 448 * 448 * sizeof(float),
               json_object_get_string(qv_json_get(d, "pixel_values.grace_hopper")), "pixel_values.grace_hopper");
    /* and the stated formula, element by element, for every tile value: ((u8/255) - mean) / std */
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    for (int c = 0; c < 3; c++)
        for (size_t q = 0; q < (size_t)448 * 448; q += 97) {
            float x = (float)px.tiles_u8[3 * q + c] / 255.0f;
            float want = (x - mean[c]) / std[c];
            cr_assert(px.values[(size_t)c * 448 * 448 + q] == want, "c %d pixel %zu", c, q);
        }
    qv_pixels_free(&px);
    qv_image_free(&img);
    qv_json_free(d);
}

/* find_closest_aspect_ratio over the sorted candidate set: expectations computed with
 * InternVL's own Python functions (dynamic_preprocess's set/sort and tie rule), S = 448. */
Test(preprocess, internvl_grid_rule_matches_python)
{
    static const int cases[][6] = {
        /* w, h, min, max, cols, rows */
        {500, 333, 1, 6, 3, 2},     {512, 600, 1, 6, 1, 1},     {640, 427, 1, 12, 3, 2},
        {301, 451, 1, 12, 2, 3},    {896, 448, 1, 12, 2, 1},    {1792, 896, 1, 12, 4, 2},
        {2688, 1344, 1, 12, 4, 2},  {448, 448, 1, 12, 1, 1},    {1000, 1000, 1, 12, 3, 3},
        {100, 1000, 1, 12, 1, 10},  {1000, 100, 1, 12, 10, 1},  {3000, 10, 1, 12, 12, 1},
        {640, 427, 1, 1, 1, 1},     {640, 427, 1, 0, 1, 1},     {1344, 896, 1, 6, 3, 2},
        {300, 300, 1, 6, 1, 1},     {4000, 3000, 1, 12, 4, 3},  {1280, 720, 1, 12, 4, 2},
        {720, 1280, 1, 6, 1, 2},    {1, 1, 1, 12, 1, 1},        {333, 500, 1, 2, 1, 2},
        {2093, 2938, 1, 34, 3, 4},  {238, 3815, 1, 16, 1, 16},  {425, 1285, 1, 8, 1, 3},
        {3046, 3843, 1, 16, 3, 4},  {3120, 4455, 1, 7, 2, 3},   {4702, 2043, 1, 1, 1, 1},
        {1776, 3344, 1, 18, 3, 6},  {1492, 3191, 1, 11, 2, 4},  {590, 1137, 1, 40, 1, 2},
        {3645, 1038, 1, 9, 4, 1},   {15, 44, 1, 14, 1, 3},      {1766, 1359, 1, 11, 3, 2},
        {2370, 2570, 1, 13, 3, 3},  {4418, 1678, 1, 12, 5, 2},  {1613, 3140, 1, 20, 3, 6},
        {177, 2959, 1, 27, 1, 17},  {1360, 1194, 1, 17, 4, 4},  {534, 2719, 1, 20, 1, 5},
        {4941, 4802, 1, 1, 1, 1},   {4883, 2769, 1, 5, 2, 1},
    };
    for (size_t i = 0; i < QV_ARRAY_LEN(cases); i++) {
        qv_internvl_prep p = internvl_prep(cases[i][3]);
        p.min_num = cases[i][2];
        int cols, rows;
        cr_assert_eq(qv_internvl_grid(cases[i][0], cases[i][1], &p, &cols, &rows), QV_OK);
        cr_assert(cols == cases[i][4] && rows == cases[i][5], "%dx%d max %d: got %dx%d, want %dx%d", cases[i][0],
                  cases[i][1], cases[i][3], cols, rows, cases[i][4], cases[i][5]);
    }
}

/* ---- Qwen2-VL --------------------------------------------------------------------------------- */

static qv_qwen2vl_prep qwen_prep(void)
{
    qv_qwen2vl_prep p;
    cr_assert_eq(qv_qwen2vl_prep_load(&p, qt_fixture("models/qwen2-vl-tiny")), QV_OK, "%s", qv_last_error());
    return p;
}

Test(preprocess, qwen2vl_config_read)
{
    qv_qwen2vl_prep p = qwen_prep();
    cr_assert_eq(p.min_pixels, 3136);
    cr_assert_eq(p.max_pixels, 200704);
    cr_assert(p.patch_size == 14 && p.merge_size == 2 && p.temporal_patch_size == 2);
    cr_assert((float)p.mean[0] == 0.48145466f && (float)p.std[2] == 0.27577711f);
}

Test(preprocess, qwen2vl_matches_reference)
{
    qv_json *g = load_json("goldens/qwen2-vl-tiny/preprocess.json");
    qv_json *imgs = qv_json_get(g, "images");
    qv_st_file *f = qt_open_st("goldens/qwen2-vl-tiny/preprocess.safetensors");
    qv_qwen2vl_prep p = qwen_prep();
    for (size_t i = 0; i < QV_ARRAY_LEN(k_images); i++) {
        const char *im = k_images[i];
        qv_image img = load_fixture(im);
        qv_pixels px;
        cr_assert_eq(qv_preprocess_qwen2vl(&img, &p, im, &px), QV_OK, "%s", qv_last_error());
        char key[128];
        snprintf(key, sizeof key, "image_grid_thw.%s", im);
        qv_tensor t;
        cr_assert_eq(qv_st_get(f, key, &t), QV_OK, "%s", qv_last_error());
        cr_assert_arr_eq(px.grid_thw, t.data, 3 * sizeof(int64_t), "%s", key);
        qv_json *hw = qv_json_get(qv_json_get(imgs, im), "smart_resize_hw");
        cr_assert_eq(px.tile_h, json_object_get_int(json_object_array_get_idx(hw, 0)));
        cr_assert_eq(px.tile_w, json_object_get_int(json_object_array_get_idx(hw, 1)));
        cr_assert(px.ndim == 2 && px.shape[0] == px.grid_thw[1] * px.grid_thw[2] && px.shape[1] == 1176);
        assert_sha(px.tiles_u8, (size_t)px.tile_w * px.tile_h * 3, jstr(imgs, im, "resized_u8_sha256"), im);
        assert_sha(px.values, (size_t)px.shape[0] * 1176 * sizeof(float), jstr(imgs, im, "pixel_values_sha256_f32"),
                   im);
        if (!strcmp(im, "synth_gray_301x451")) { /* first 16 rows kept in full */
            cr_assert_eq(qv_st_get(f, "pixel_values.synth_gray_301x451", &t), QV_OK);
            cr_assert_eq(t.shape[0], 16);
            cr_assert_arr_eq(px.values, t.data, (size_t)16 * 1176 * sizeof(float), "pixel_values rows 0-15");
        }
        qv_pixels_free(&px);
        qv_image_free(&img);
    }
    qv_st_close(f);
    qv_json_free(g);
}

/* smart_resize: expectations from the transformers-5 Python function (math.floor/ceil/sqrt,
 * round half to even) plus the port's rule of refusing min(h, w) < 28 (0, 0 below). */
Test(preprocess, qwen2vl_smart_resize_matches_python)
{
    static const int64_t cases[][6] = {
        /* h, w, min_pixels, max_pixels, h', w' */
        {480, 640, 3136, 12845056, 476, 644},  {600, 512, 3136, 12845056, 588, 504},
        {427, 640, 3136, 12845056, 420, 644},  {70, 280, 3136, 12845056, 56, 280},
        {451, 301, 3136, 200704, 448, 308},    {427, 640, 3136, 200704, 364, 532},
        {333, 500, 3136, 200704, 336, 504},    {600, 512, 3136, 200704, 476, 392},
        {42, 42, 3136, 200704, 56, 56},        {28, 28, 3136, 200704, 56, 56},
        {28, 5600, 3136, 200704, 28, 5600},    {28, 5601, 3136, 200704, 0, 0},
        {27, 100, 3136, 200704, 0, 0},         {98, 98, 3136, 1003520, 112, 112},
        {126, 70, 3136, 1003520, 112, 56},     {10000, 10000, 3136, 1003520, 980, 980},
        {30, 40, 5000, 1003520, 84, 84},       {2680, 1263, 3136, 1003520, 1456, 672},
        {5360, 423, 3136, 200704, 1568, 112},  {4417, 799, 3136, 1003520, 2352, 420},
        {4802, 503, 3136, 12845056, 4816, 504}, {1786, 335, 3136, 200704, 1008, 168},
        {3580, 3453, 3136, 200704, 448, 420},  {1999, 771, 3136, 12845056, 1988, 784},
        {3505, 512, 3136, 12845056, 3500, 504}, {1042, 1856, 3136, 12845056, 1036, 1848},
        {5167, 4803, 3136, 200704, 448, 420},  {4755, 4824, 3136, 1003520, 980, 1008},
        {434, 1839, 3136, 200704, 196, 896},   {4588, 1118, 3136, 1003520, 2016, 476},
        {3461, 1209, 3136, 12845056, 3472, 1204}, {992, 4704, 3136, 1003520, 448, 2156},
        {4617, 5614, 3136, 200704, 392, 476},  {872, 4792, 3136, 12845056, 868, 4788},
        {5261, 1567, 3136, 1003520, 1820, 532}, {826, 4515, 3136, 12845056, 840, 4508},
        {542, 4651, 3136, 200704, 140, 1288},  {5098, 1715, 3136, 1003520, 1708, 560},
        {5601, 4383, 3136, 1003520, 1120, 868}, {2601, 3842, 3136, 12845056, 2604, 3836},
        {3740, 2990, 3136, 1003520, 1120, 868}, {2063, 1500, 3136, 12845056, 2072, 1512},
    };
    qv_qwen2vl_prep p;
    qv_qwen2vl_prep_default(&p);
    for (size_t i = 0; i < QV_ARRAY_LEN(cases); i++) {
        p.min_pixels = cases[i][2];
        p.max_pixels = cases[i][3];
        int h = 0, w = 0;
        qv_status st = qv_qwen2vl_smart_resize((int)cases[i][0], (int)cases[i][1], &p, "img", &h, &w);
        if (cases[i][4] == 0) {
            cr_assert_neq(st, QV_OK, "%lldx%lld should be refused", (long long)cases[i][0], (long long)cases[i][1]);
            cr_assert(strncmp(qv_last_error(), "img: ", 5) == 0);
        } else {
            cr_assert_eq(st, QV_OK, "%s", qv_last_error());
            cr_assert(h == cases[i][4] && w == cases[i][5], "h %lld w %lld: got %dx%d, want %lldx%lld",
                      (long long)cases[i][0], (long long)cases[i][1], h, w, (long long)cases[i][4],
                      (long long)cases[i][5]);
        }
    }
}

/* ---- LLaVA-OneVision pad path ----------------------------------------------------------------- */

static uint8_t *hwc_to_chw(const uint8_t *hwc, int w, int h)
{
    uint8_t *chw = malloc((size_t)w * h * 3);
    for (size_t q = 0; q < (size_t)w * h; q++)
        for (int c = 0; c < 3; c++)
            chw[(size_t)c * w * h + q] = hwc[3 * q + c];
    return chw;
}

Test(preprocess, llava_pad_matches_reference)
{
    qv_json *g = load_json("goldens/llava-onevision-qwen2-tiny/pixel_values_u8_sha256.json");
    qv_json *hashes = qv_json_get(g, "pixel_values_u8_chw_sha256");
    qv_st_file *f = qt_open_st("goldens/llava-onevision-qwen2-tiny/calib_batch.safetensors");
    qv_tensor sample0;
    cr_assert_eq(qv_st_get(f, "pixel_values_u8", &sample0), QV_OK, "%s", qv_last_error());
    qv_llava_prep p;
    qv_llava_prep_default(&p);
    for (size_t i = 0; i < QV_ARRAY_LEN(k_images); i++) {
        const char *im = k_images[i];
        qv_image img = load_fixture(im);
        qv_pixels px;
        cr_assert_eq(qv_preprocess_llava_pad(&img, &p, im, &px), QV_OK, "%s", qv_last_error());
        cr_assert(px.n_tiles == 1 && px.tile_w == 384 && px.tile_h == 384 && px.ndim == 4 && px.shape[1] == 3);
        uint8_t *chw = hwc_to_chw(px.tiles_u8, 384, 384);
        assert_sha(chw, (size_t)3 * 384 * 384, json_object_get_string(qv_json_get(hashes, im)), im);
        if (!strcmp(im, "synth_gray_301x451")) /* batch sample 0, kept in full */
            cr_assert_arr_eq(chw, sample0.data, (size_t)3 * 384 * 384);
        /* pixel_values = ((u8 * (1/255) in float64 -> float32) - 0.5) / 0.5 in float32, CHW */
        for (size_t k = 0; k < (size_t)3 * 384 * 384; k++) {
            float x = (float)((double)chw[k] * (1.0 / 255.0));
            cr_assert(px.values[k] == (x - 0.5f) / 0.5f, "%s value %zu", im, k);
        }
        free(chw);
        qv_pixels_free(&px);
        qv_image_free(&img);
    }
    qv_st_close(f);
    qv_json_free(g);
}

Test(preprocess, expand_square_centres_on_fill)
{
    qv_image img;
    cr_assert_eq(qv_image_new(&img, 5, 2, "small"), QV_OK);
    memset(img.rgb, 9, 5 * 2 * 3);
    qv_image sq;
    const uint8_t fill[3] = {127, 127, 127};
    cr_assert_eq(qv_image_expand_square(&img, fill, &sq), QV_OK);
    cr_assert(sq.w == 5 && sq.h == 5);
    for (int y = 0; y < 5; y++) /* pasted at (0, (5 - 2) // 2 = 1) */
        for (int x = 0; x < 5; x++)
            cr_assert_eq(sq.rgb[(y * 5 + x) * 3], (y == 1 || y == 2) ? 9 : 127, "row %d", y);
    qv_image_free(&sq);
    qv_image_free(&img);
}

/* select_best_resolution and resize_and_pad_image sizes: expectations from LLaVA-NeXT's Python
 * functions on the fixture config's 36 pinpoints. The pixels of this path have no golden; the
 * test pins its structure (base tile, canvas placement, black padding, crop order). */
Test(preprocess, llava_anyres_layout)
{
    static const int cases[][6] = {
        /* w, h, best w, best h, resized w, resized h */
        {512, 600, 768, 768, 656, 768},     {640, 427, 768, 768, 768, 513},   {500, 333, 768, 384, 577, 384},
        {301, 451, 384, 768, 384, 576},     {1920, 1080, 1920, 1152, 1920, 1080}, {100, 3000, 384, 2304, 77, 2304},
        {3000, 100, 2304, 384, 2304, 77},   {384, 384, 384, 384, 384, 384},   {10, 10, 384, 384, 384, 384},
        {2000, 2000, 2304, 2304, 2304, 2304}, {1000, 700, 1152, 768, 1098, 768}, {777, 1333, 1152, 1536, 896, 1536},
    };
    qv_llava_prep p;
    cr_assert_eq(qv_llava_prep_load(&p, qt_fixture("models/llava-onevision-qwen2-tiny/config.json")), QV_OK, "%s",
                 qv_last_error());
    cr_assert_eq(p.n_pinpoints, 36);
    cr_assert(p.pinpoints[1][0] == 384 && p.pinpoints[1][1] == 768 && p.pinpoints[35][0] == 2304);
    for (size_t i = 0; i < QV_ARRAY_LEN(cases); i++) {
        int bw, bh;
        cr_assert_eq(qv_llava_best_resolution(cases[i][0], cases[i][1], &p, &bw, &bh), QV_OK);
        cr_assert(bw == cases[i][2] && bh == cases[i][3], "%dx%d: got %dx%d", cases[i][0], cases[i][1], bw, bh);
    }
    for (size_t i = 0; i < 4; i++) {
        qv_image img = load_fixture(k_images[i]);
        const int *c = NULL;
        for (size_t k = 0; k < QV_ARRAY_LEN(cases); k++)
            if (cases[k][0] == img.w && cases[k][1] == img.h)
                c = cases[k];
        cr_assert_not_null(c);
        qv_pixels px;
        cr_assert_eq(qv_preprocess_llava_anyres(&img, &p, k_images[i], &px), QV_OK, "%s", qv_last_error());
        int cols = c[2] / 384, rows = c[3] / 384;
        cr_assert(px.grid_cols == cols && px.grid_rows == rows && px.n_tiles == 1 + cols * rows);
        cr_assert(px.shape[0] == px.n_tiles && px.shape[1] == 3 && px.shape[2] == 384);
        qv_image base, fit;
        cr_assert_eq(qv_image_resize_bicubic(&img, 384, 384, &base), QV_OK);
        cr_assert_arr_eq(px.tiles_u8, base.rgb, (size_t)384 * 384 * 3, "base tile");
        cr_assert_eq(qv_image_resize_bicubic(&img, c[4], c[5], &fit), QV_OK);
        int ox = (c[2] - c[4]) / 2, oy = (c[3] - c[5]) / 2;
        for (int y = 0; y < c[3]; y++)
            for (int x = 0; x < c[2]; x++) {
                int t = 1 + (y / 384) * cols + x / 384;
                const uint8_t *got = px.tiles_u8 + (size_t)t * 384 * 384 * 3 + ((size_t)(y % 384) * 384 + x % 384) * 3;
                bool inside = x >= ox && x < ox + c[4] && y >= oy && y < oy + c[5];
                for (int ch = 0; ch < 3; ch++) {
                    int want = inside ? fit.rgb[((size_t)(y - oy) * c[4] + (x - ox)) * 3 + ch] : 0;
                    cr_assert_eq(got[ch], want, "%s canvas (%d,%d)", k_images[i], x, y);
                }
            }
        for (size_t k = 0; k < (size_t)px.n_tiles * 3 * 384 * 384; k += 1013) {
            size_t t = k / (3 * 384 * 384), r = k % (3 * 384 * 384), ch = r / (384 * 384), q = r % (384 * 384);
            float x = (float)((double)px.tiles_u8[t * 384 * 384 * 3 + q * 3 + ch] * (1.0 / 255.0));
            cr_assert(px.values[k] == (x - 0.5f) / 0.5f);
        }
        qv_image_free(&base);
        qv_image_free(&fit);
        qv_pixels_free(&px);
        qv_image_free(&img);
    }
}

Test(preprocess, llava_pinpoint_range_string)
{
    char *dir = qt_tmpdir(), path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    const char *js = "{\"image_grid_pinpoints\": \"(1x1),...,(2x3)\"}";
    cr_assert_eq(qv_write_file_atomic(path, js, strlen(js)), QV_OK);
    qv_llava_prep p;
    cr_assert_eq(qv_llava_prep_load(&p, path), QV_OK, "%s", qv_last_error());
    static const int want[6][2] = {{384, 384}, {384, 768}, {384, 1152}, {768, 384}, {768, 768}, {768, 1152}};
    cr_assert_eq(p.n_pinpoints, 6);
    cr_assert_arr_eq(p.pinpoints, want, sizeof want);
    js = "{\"image_grid_pinpoints\": [[384, 0]]}";
    cr_assert_eq(qv_write_file_atomic(path, js, strlen(js)), QV_OK);
    cr_assert_neq(qv_llava_prep_load(&p, path), QV_OK);
    cr_assert(strstr(qv_last_error(), "config.json"));
    free(dir);
}

/* ---- per model -------------------------------------------------------------------------------- */

Test(preprocess, family_from_config)
{
    static const struct {
        const char *model;
        qv_family_id family;
    } models[] = {{"internvl2-qwen2-tiny", QV_FAMILY_INTERNVL2}, {"internvl2-internlm2-tiny", QV_FAMILY_INTERNVL2},
                  {"internvl3-tiny", QV_FAMILY_INTERNVL3}, {"qwen2-vl-tiny", QV_FAMILY_QWEN2_VL},
                  {"llava-onevision-qwen2-tiny", QV_FAMILY_LLAVA_ONEVISION}};
    for (size_t i = 0; i < QV_ARRAY_LEN(models); i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "models/%s", models[i].model);
        qv_model_config cfg;
        cr_assert_eq(qv_model_config_load(qt_fixture(rel), &cfg), QV_OK, "%s", qv_last_error());
        qv_preprocessor pp;
        cr_assert_eq(qv_preprocessor_init(&pp, &cfg, qt_fixture(rel)), QV_OK, "%s", qv_last_error());
        cr_assert_eq(pp.family, models[i].family, "%s", models[i].model);
        if (pp.family == QV_FAMILY_INTERNVL2 || pp.family == QV_FAMILY_INTERNVL3)
            cr_assert(pp.internvl.image_size == 448 && pp.internvl.max_num == cfg.max_dynamic_patch);
        qv_model_config_free(&cfg);
    }
    qv_model_config cfg;
    cr_assert_eq(qv_model_config_load(qt_fixture("models/qwen2-tiny"), &cfg), QV_OK);
    qv_preprocessor pp;
    cr_assert_neq(qv_preprocessor_init(&pp, &cfg, qt_fixture("models/qwen2-tiny")), QV_OK);
    cr_assert(strstr(qv_last_error(), "config.json"), "%s", qv_last_error());
    qv_model_config_free(&cfg);
}

/* ---- qvlm preprocess -------------------------------------------------------------------------- */

static char *hex_of_tensor(const qv_st_file *f, const char *name, const qv_st_entry **e)
{
    qv_tensor t;
    cr_assert_eq(qv_st_get(f, name, &t), QV_OK, "%s", qv_last_error());
    *e = qv_st_header_find(&f->hdr, name);
    char *hex = malloc(65);
    qv_sha256_hex(t.data, (size_t)((*e)->end - (*e)->begin), hex);
    return hex;
}

Test(preprocess, cli_internvl_outputs)
{
    char *dir = qt_tmpdir(), out[512], *so, *se;
    snprintf(out, sizeof out, "%s/gh.safetensors", dir);
    int rc = qt_run_cli(&so, &se, "preprocess '%s' '%s' -o '%s' --max-num 1 --quiet",
                        fx("models/internvl2-qwen2-tiny"), fx("calib/images/grace_hopper.jpg"), out);
    cr_assert_eq(rc, 0, "stderr: %s", se);
    qv_st_file *f = NULL;
    cr_assert_eq(qv_st_open(out, &f), QV_OK, "%s", qv_last_error());
    qv_json *g = load_json("goldens/image/preprocess.json"), *d = load_json("goldens/image/derived_sha256.json");
    const qv_st_entry *e;
    char *h = hex_of_tensor(f, "tile_u8", &e);
    cr_assert(e->dtype == QV_U8 && e->ndim == 4 && e->shape[0] == 1 && e->shape[1] == 448 && e->shape[3] == 3);
    cr_assert_str_eq(h, json_object_get_string(json_object_array_get_idx(
                            qv_json_get(qv_json_get(qv_json_get(g, "images"), "grace_hopper.jpg"), "tile_sha256"), 0)));
    free(h);
    h = hex_of_tensor(f, "pixel_values", &e);
    cr_assert(e->dtype == QV_F32 && e->ndim == 4 && e->shape[0] == 1 && e->shape[1] == 3 && e->shape[2] == 448);
    cr_assert_str_eq(h, json_object_get_string(qv_json_get(d, "pixel_values.grace_hopper")));
    free(h);
    qv_st_close(f);

    /* Default --max-num is the config's max_dynamic_patch (12): synth_500x333 -> 3x2 + thumbnail. */
    snprintf(out, sizeof out, "%s/synth.safetensors", dir);
    rc = qt_run_cli(NULL, NULL, "preprocess '%s' '%s' -o '%s' -q", fx("models/internvl3-tiny"),
                    fx("calib/images/synth_500x333.jpg"), out);
    cr_assert_eq(rc, 0);
    cr_assert_eq(qv_st_open(out, &f), QV_OK, "%s", qv_last_error());
    qv_tensor t;
    cr_assert_eq(qv_st_get(f, "tile_u8", &t), QV_OK);
    cr_assert_eq(t.shape[0], 7);
    qv_json *tiles = qv_json_get(qv_json_get(qv_json_get(g, "tiling_max6"), "synth_500x333.jpg"), "tile_sha256");
    for (int k = 0; k < 7; k++)
        assert_sha((uint8_t *)t.data + (size_t)k * 448 * 448 * 3, (size_t)448 * 448 * 3,
                   json_object_get_string(json_object_array_get_idx(tiles, k)), "cli tile");
    qv_st_close(f);
    qv_json_free(g);
    qv_json_free(d);
    free(so);
    free(se);
    free(dir);
}

Test(preprocess, cli_qwen2vl_and_llava_outputs)
{
    char *dir = qt_tmpdir(), out[512];
    snprintf(out, sizeof out, "%s/q.safetensors", dir);
    cr_assert_eq(qt_run_cli(NULL, NULL, "preprocess '%s' '%s' -o '%s' -q", fx("models/qwen2-vl-tiny"),
                            fx("calib/images/rocket.jpg"), out), 0);
    qv_st_file *f = NULL;
    cr_assert_eq(qv_st_open(out, &f), QV_OK, "%s", qv_last_error());
    qv_json *g = load_json("goldens/qwen2-vl-tiny/preprocess.json");
    const qv_st_entry *e;
    char *h = hex_of_tensor(f, "pixel_values", &e);
    cr_assert(e->ndim == 2 && e->shape[0] == 988 && e->shape[1] == 1176);
    cr_assert_str_eq(h, jstr(qv_json_get(g, "images"), "rocket", "pixel_values_sha256_f32"));
    free(h);
    qv_tensor t;
    cr_assert_eq(qv_st_get(f, "image_grid_thw", &t), QV_OK);
    cr_assert(t.dtype == QV_I64 && t.ndim == 2 && t.shape[1] == 3);
    const int64_t *thw = t.data;
    cr_assert(thw[0] == 1 && thw[1] == 26 && thw[2] == 38);
    qv_st_close(f);
    qv_json_free(g);

    snprintf(out, sizeof out, "%s/l.safetensors", dir);
    cr_assert_eq(qt_run_cli(NULL, NULL, "preprocess '%s' '%s' -o '%s' -q",
                            fx("models/llava-onevision-qwen2-tiny"), fx("calib/images/rocket.jpg"), out),
                 0);
    cr_assert_eq(qv_st_open(out, &f), QV_OK, "%s", qv_last_error());
    cr_assert_eq(qv_st_get(f, "pixel_values", &t), QV_OK);
    cr_assert(t.ndim == 4 && t.shape[0] == 1 && t.shape[1] == 3 && t.shape[2] == 384 && t.shape[3] == 384);
    qv_st_close(f);
    cr_assert_eq(qt_run_cli(NULL, NULL, "preprocess '%s' '%s' -o '%s' -q --anyres",
                            fx("models/llava-onevision-qwen2-tiny"), fx("calib/images/rocket.jpg"), out),
                 0);
    cr_assert_eq(qv_st_open(out, &f), QV_OK, "%s", qv_last_error());
    cr_assert_eq(qv_st_get(f, "pixel_values", &t), QV_OK);
    cr_assert(t.ndim == 4 && t.shape[0] == 5 && t.shape[2] == 384); /* base + 2x2 crops of 768x768 */
    qv_st_close(f);
    free(dir);
}

/* exit 1, one stderr line "qvlm: <file>: ...", and no output file left behind */
static void expect_cli_failure(const char *args_model, const char *image, const char *out, const char *needle)
{
    char *so, *se;
    int rc = qt_run_cli(&so, &se, "preprocess '%s' '%s' -o '%s'", args_model, image, out);
    cr_assert_eq(rc, 1, "exit %d, stderr: %s", rc, se);
    cr_assert_eq(qt_count_lines(se), 1, "stderr: %s", se);
    cr_assert(strncmp(se, "qvlm: ", 6) == 0 && strstr(se, needle), "stderr '%s' lacks '%s'", se, needle);
    cr_assert(!qv_path_exists(out), "output left behind");
    free(so);
    free(se);
}

Test(preprocess, cli_bad_input)
{
    char *dir = qt_tmpdir(), out[512], missing[512], junk[512], trunc[512];
    snprintf(out, sizeof out, "%s/out.safetensors", dir);
    snprintf(missing, sizeof missing, "%s/no-such-image.jpg", dir);
    expect_cli_failure(fx("models/internvl2-qwen2-tiny"), missing, out, "no-such-image.jpg");

    snprintf(junk, sizeof junk, "%s/junk.png", dir);
    cr_assert_eq(qv_write_file_atomic(junk, "this is not an image", 20), QV_OK);
    expect_cli_failure(fx("models/qwen2-vl-tiny"), junk, out, "junk.png");

    size_t len;
    char *data;
    cr_assert_eq(qv_read_file(fx("calib/images/rocket.jpg"), 1 << 24, &data, &len), QV_OK);
    snprintf(trunc, sizeof trunc, "%s/trunc.jpg", dir);
    cr_assert_eq(qv_write_file_atomic(trunc, data, len / 3), QV_OK);
    free(data);
    expect_cli_failure(fx("models/llava-onevision-qwen2-tiny"), trunc, out, "trunc.jpg");

    expect_cli_failure(fx("models/qwen2-tiny"), fx("calib/images/rocket.jpg"), out, "config.json");

    /* usage errors: exit 2 */
    char *se;
    cr_assert_eq(qt_run_cli(NULL, &se, "preprocess '%s' '%s'", fx("models/internvl3-tiny"),
                            fx("calib/images/rocket.jpg")), 2);
    free(se);
    cr_assert_eq(qt_run_cli(NULL, &se, "preprocess '%s' '%s' -o '%s' --max-num 2", fx("models/qwen2-vl-tiny"),
                            fx("calib/images/rocket.jpg"), out), 2);
    cr_assert(!qv_path_exists(out));
    free(se);
    cr_assert_eq(qt_run_cli(NULL, &se, "preprocess '%s' '%s' -o '%s' --anyres", fx("models/internvl3-tiny"),
                            fx("calib/images/rocket.jpg"), out), 2);
    cr_assert(!qv_path_exists(out));
    free(se);
    free(dir);
}
