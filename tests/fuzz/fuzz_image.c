/* fuzz_image.c — JPEG / PNG decoding (qv_image_decode_mem: libjpeg-turbo and libpng behind
 * qvlm's error handling) and, for images that decode, every family's preprocessing at small
 * tile sizes (the code paths of the real sizes, at a fraction of the cost). A --max-memory
 * budget of 4 MiB (about 1.4M pixels; libjpeg-turbo's own fuzzers stop at 1M) keeps each input
 * fast and stands in for libFuzzer's RSS limit: larger images are refused from their header,
 * as the CLI refuses them under a budget. On success the image must be non-empty with
 * every pixel readable, and the preprocessing outputs must have the shapes they announce. */
#include "core/budget.h"
#include "fuzz_common.h"
#include "image/image.h"

static void check_pixels(const qv_pixels *px, qv_status st, const char *what)
{
    if (st != QV_OK) {
        qf_check_error(st, what);
        QF_CHECK(px->values == NULL && px->tiles_u8 == NULL);
        return;
    }
    QF_CHECK(px->n_tiles >= 1 && px->tile_w >= 1 && px->tile_h >= 1 && px->values && px->tiles_u8);
    int64_t n = 1;
    for (int d = 0; d < px->ndim; d++)
        n *= px->shape[d];
    volatile float sink = px->values[0] + px->values[n - 1];
    volatile uint8_t sink8 = px->tiles_u8[(size_t)px->n_tiles * px->tile_w * px->tile_h * 3 - 1];
    (void)sink;
    (void)sink8;
}

int qv_fuzz_image(const uint8_t *data, size_t size)
{
    static const char *what = "fuzz.img";
    uint64_t saved = qv_budget();
    qv_budget_set((uint64_t)4 << 20);
    qv_image img;
    qv_status st = qv_image_decode_mem(data, size, what, &img);
    if (st != QV_OK) {
        qf_check_error(st, what);
        QF_CHECK(img.rgb == NULL && img.w == 0 && img.h == 0);
        qv_budget_set(saved);
        return 0;
    }
    QF_CHECK(img.w > 0 && img.h > 0 && (int64_t)img.w * img.h <= QV_IMAGE_MAX_PIXELS && img.rgb);
    unsigned sum = 0;
    for (size_t i = 0; i < (size_t)img.w * img.h * 3; i += 4093)
        sum += img.rgb[i];
    sum += img.rgb[(size_t)img.w * img.h * 3 - 1];

    qv_pixels px;
    qv_internvl_prep ip;
    qv_internvl_prep_default(&ip);
    ip.image_size = 28;
    ip.max_num = 6;
    st = qv_preprocess_internvl(&img, &ip, what, &px);
    check_pixels(&px, st, what);
    if (st == QV_OK)
        QF_CHECK(px.n_tiles == px.grid_cols * px.grid_rows + px.thumbnail && px.n_tiles <= 7);
    qv_pixels_free(&px);

    qv_qwen2vl_prep qp;
    qv_qwen2vl_prep_default(&qp);
    qp.patch_size = 4;
    qp.min_pixels = 8 * 8;
    qp.max_pixels = 8 * 8 * 16;
    st = qv_preprocess_qwen2vl(&img, &qp, what, &px);
    check_pixels(&px, st, what);
    if (st == QV_OK)
        QF_CHECK(px.shape[0] == px.grid_thw[1] * px.grid_thw[2] && px.shape[0] <= 16 * 4);
    qv_pixels_free(&px);

    qv_llava_prep lp;
    qv_llava_prep_default(&lp);
    lp.image_size = 16;
    lp.n_pinpoints = 3;
    int pins[3][2] = {{16, 16}, {32, 16}, {16, 48}};
    memcpy(lp.pinpoints, pins, sizeof pins);
    st = qv_preprocess_llava_pad(&img, &lp, what, &px);
    check_pixels(&px, st, what);
    qv_pixels_free(&px);
    st = qv_preprocess_llava_anyres(&img, &lp, what, &px);
    check_pixels(&px, st, what);
    if (st == QV_OK)
        QF_CHECK(px.n_tiles == 1 + px.grid_cols * px.grid_rows);
    qv_pixels_free(&px);

    qv_image_free(&img);
    qv_budget_set(saved);
    return (int)(sum & 0);
}

QF_ENTRY(image)
