/* image.c — RGB image buffers, format sniffing and loading, crop, expand2square and the
 * uint8 -> float normalisation shared by the processors (image.h; ALGORITHMS.md §7.3). */
#include "image.h"

#include <stdio.h>
#include <string.h>

#include "core/budget.h"
#include "core/fsutil.h"
#include "decode.h"

qv_status qv_image_check_dims(uint64_t w, uint64_t h, const char *what)
{
    if (w == 0 || h == 0)
        return qv_fail(QV_ERR_FORMAT, "%s: image has a zero dimension (%llux%llu)", what, (unsigned long long)w,
                       (unsigned long long)h);
    if (w > (uint64_t)QV_IMAGE_MAX_PIXELS || h > (uint64_t)QV_IMAGE_MAX_PIXELS ||
        w * h > (uint64_t)QV_IMAGE_MAX_PIXELS)
        return qv_fail(QV_ERR_INVALID, "%s: image of %llux%llu pixels exceeds the limit of %lld pixels", what,
                       (unsigned long long)w, (unsigned long long)h, QV_IMAGE_MAX_PIXELS);
    char step[80];
    snprintf(step, sizeof step, "decoding a %llux%llu image", (unsigned long long)w, (unsigned long long)h);
    return qv_budget_check(w * h * 3, what, step);
}

qv_status qv_image_blame(qv_status st, const char *what)
{
    size_t n = strlen(what);
    const char *m = qv_last_error();
    if (st != QV_OK && !(strncmp(m, what, n) == 0 && m[n] == ':'))
        qv_fail_prefix(st, "%s", what);
    return st;
}

qv_status qv_image_new(qv_image *img, int w, int h, const char *what)
{
    img->w = img->h = 0;
    img->rgb = NULL;
    if (w <= 0 || h <= 0)
        return qv_fail(QV_ERR_INVALID, "%s: image of %dx%d pixels", what, w, h);
    if ((int64_t)w * h > QV_IMAGE_MAX_PIXELS)
        return qv_fail(QV_ERR_INVALID, "%s: image of %dx%d pixels exceeds the limit of %lld pixels", what, w, h,
                       QV_IMAGE_MAX_PIXELS);
    size_t n = (size_t)w * h * 3;
    img->rgb = qv_malloc(n, what);
    if (!img->rgb)
        return QV_ERR_NOMEM;
    img->w = w;
    img->h = h;
    return QV_OK;
}

void qv_image_free(qv_image *img)
{
    if (!img)
        return;
    qv_free(img->rgb);
    img->rgb = NULL;
    img->w = img->h = 0;
}

qv_image_format qv_image_sniff(const uint8_t *buf, size_t len)
{
    static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (len >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF)
        return QV_IMAGE_FORMAT_JPEG;
    if (len >= 8 && !memcmp(buf, png_magic, 8))
        return QV_IMAGE_FORMAT_PNG;
    return QV_IMAGE_FORMAT_UNKNOWN;
}

qv_status qv_image_decode_mem(const uint8_t *buf, size_t len, const char *what, qv_image *img)
{
    img->w = img->h = 0;
    img->rgb = NULL;
    if (!what)
        what = "image";
    switch (qv_image_sniff(buf, len)) {
    case QV_IMAGE_FORMAT_JPEG: return qv_jpeg_decode(buf, len, what, img);
    case QV_IMAGE_FORMAT_PNG: return qv_png_decode(buf, len, what, img);
    case QV_IMAGE_FORMAT_UNKNOWN: break;
    }
    if (len == 0)
        return qv_fail(QV_ERR_FORMAT, "%s: empty file", what);
    return qv_fail(QV_ERR_UNSUPPORTED, "%s: not a JPEG or PNG image (unrecognised leading bytes)", what);
}

qv_status qv_image_load(const char *path, qv_image *img)
{
    char *data;
    size_t len;
    img->w = img->h = 0;
    img->rgb = NULL;
    QV_TRY(qv_read_file(path, QV_IMAGE_MAX_FILE, &data, &len));
    qv_status st = qv_image_decode_mem((const uint8_t *)data, len, path, img);
    qv_free(data);
    return st;
}

qv_status qv_image_crop(const qv_image *src, int x, int y, int w, int h, qv_image *dst)
{
    if (x < 0 || y < 0 || w <= 0 || h <= 0 || x > src->w - w || y > src->h - h)
        return qv_fail(QV_ERR_INTERNAL, "crop: box (%d,%d,%d,%d) outside a %dx%d image", x, y, x + w, y + h, src->w,
                       src->h);
    QV_TRY(qv_image_new(dst, w, h, "crop"));
    for (int r = 0; r < h; r++)
        memcpy(dst->rgb + (size_t)r * w * 3, src->rgb + ((size_t)(y + r) * src->w + x) * 3, (size_t)w * 3);
    return QV_OK;
}

qv_status qv_image_expand_square(const qv_image *src, const uint8_t fill[3], qv_image *dst)
{
    int side = QV_MAX(src->w, src->h);
    QV_TRY(qv_image_new(dst, side, side, "expand2square"));
    if (src->w == src->h) {
        memcpy(dst->rgb, src->rgb, (size_t)side * side * 3);
        return QV_OK;
    }
    /* PIL paste offsets: ((side - w) // 2, (side - h) // 2); one of them is 0. */
    int ox = (side - src->w) / 2, oy = (side - src->h) / 2;
    for (int r = 0; r < side; r++) {
        uint8_t *row = dst->rgb + (size_t)r * side * 3;
        for (int c = 0; c < side; c++)
            memcpy(row + (size_t)c * 3, fill, 3);
        if (r >= oy && r < oy + src->h)
            memcpy(row + (size_t)ox * 3, src->rgb + (size_t)(r - oy) * src->w * 3, (size_t)src->w * 3);
    }
    return QV_OK;
}

void qv_image_normalize(float *chw, const uint8_t *hwc, int w, int h, qv_rescale r, const double mean[3],
                        const double std[3])
{
    /* Per channel and byte value the result is one float32: tabulate the exact formula. */
    float lut[3][256];
    for (int c = 0; c < 3; c++) {
        float m = (float)mean[c], s = (float)std[c];
        for (int v = 0; v < 256; v++) {
            float x = r == QV_RESCALE_DIV_F32 ? (float)v / 255.0f : (float)((double)v * (1.0 / 255.0));
            lut[c][v] = (x - m) / s;
        }
    }
    size_t plane = (size_t)w * h;
#pragma omp parallel for schedule(static)
    for (int y = 0; y < h; y++) {
        const uint8_t *src = hwc + (size_t)y * w * 3;
        for (int c = 0; c < 3; c++) {
            float *dst = chw + c * plane + (size_t)y * w;
            for (int x = 0; x < w; x++)
                dst[x] = lut[c][src[3 * x + c]];
        }
    }
}

void qv_pixels_free(qv_pixels *p)
{
    if (!p)
        return;
    qv_free(p->tiles_u8);
    qv_free(p->values);
    memset(p, 0, sizeof *p);
}
