/* decode.h — private to src/image: the two decoders behind qv_image_decode_mem and the size
 * check they share. Each fills *img (RGB) or leaves it empty and returns the error. */
#ifndef QV_IMAGE_DECODE_H
#define QV_IMAGE_DECODE_H

#include "image.h"

qv_status qv_jpeg_decode(const uint8_t *buf, size_t len, const char *what, qv_image *img);
qv_status qv_png_decode(const uint8_t *buf, size_t len, const char *what, qv_image *img);
/* Refuses a zero dimension, more than QV_IMAGE_MAX_PIXELS pixels, or an RGB buffer over the
 * --max-memory budget (header values, before anything is allocated). */
qv_status qv_image_check_dims(uint64_t w, uint64_t h, const char *what);

/* Sum of the byte sizes of a step's buffers, saturating at UINT64_MAX (budget estimates). */
static inline uint64_t qv_image_need(const uint64_t *sizes, size_t n)
{
    uint64_t t = 0;
    for (size_t i = 0; i < n; i++)
        if (__builtin_add_overflow(t, sizes[i], &t))
            return UINT64_MAX;
    return t;
}

/* Makes the current error name `what` (prefixes "<what>: " unless it already starts so). */
qv_status qv_image_blame(qv_status st, const char *what);

#endif
