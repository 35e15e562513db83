/* preprocess_llava.c — LLaVA-OneVision image preprocessing on MBQ's forced "pad" path
 * (ALGORITHMS.md §8.2; MODELS.md §2.4; fixtures README §15.2): LLaVA's expand2square on the
 * colour int(255 * mean) = (127, 127, 127), then LLaVA-NeXT's SigLipImageProcessor: Pillow
 * bicubic resize to exactly S x S (aspect not kept, no crop), x = float32(float64(u8) * 1/255),
 * (x - 0.5) / 0.5 in float32, CHW. One tile per image. (The native anyres_max_9 path of
 * MODELS.md §2.4 is not implemented.) */
#include <string.h>

#include "decode.h"

void qv_llava_prep_default(qv_llava_prep *p)
{
    p->image_size = 384;
    for (int c = 0; c < 3; c++) {
        p->mean[c] = 0.5;
        p->std[c] = 0.5;
    }
}

qv_status qv_preprocess_llava_pad(const qv_image *img, const qv_llava_prep *p, const char *what, qv_pixels *out)
{
    memset(out, 0, sizeof *out);
    int s = p->image_size;
    if (s <= 0 || s > 16384)
        return qv_fail(QV_ERR_INVALID, "%s: image size %d is out of range", what, s);
    uint8_t fill[3];
    for (int c = 0; c < 3; c++) {
        double v = p->mean[c] * 255; /* Python int(x * 255): truncation */
        if (!(v >= 0 && v < 256))
            return qv_fail(QV_ERR_INVALID, "%s: image_mean %g is out of range", what, p->mean[c]);
        fill[c] = (uint8_t)(int)v;
    }
    qv_image square = {0}, resized = {0};
    qv_status st;
    QV_CHECK(st = qv_image_expand_square(img, fill, &square), fail);
    QV_CHECK(st = qv_image_resize_bicubic(&square, s, s, &resized), fail);
    qv_image_free(&square);
    out->values = qv_malloc((size_t)3 * s * s * sizeof(float), what);
    if (!out->values) {
        st = QV_ERR_NOMEM;
        goto fail;
    }
    qv_image_normalize(out->values, resized.rgb, s, s, QV_RESCALE_MUL_F64, p->mean, p->std);
    out->tiles_u8 = resized.rgb; /* ownership moves to out */
    out->n_tiles = 1;
    out->tile_w = out->tile_h = s;
    out->ndim = 4;
    out->shape[0] = 1;
    out->shape[1] = 3;
    out->shape[2] = s;
    out->shape[3] = s;
    out->grid_cols = out->grid_rows = 1;
    return QV_OK;
fail:
    qv_image_blame(st, what);
    qv_image_free(&square);
    qv_image_free(&resized);
    qv_pixels_free(out);
    return st;
}
