/* preprocess_llava.c — LLaVA-OneVision image preprocessing (ALGORITHMS.md §8.2; MODELS.md §2.4;
 * fixtures README §15.2). Both paths end in LLaVA-NeXT's SigLipImageProcessor: Pillow bicubic
 * resize to exactly S x S (aspect not kept, no crop; a copy at S x S), then
 * x = float32(float64(u8) * 1/255), (x - 0.5) / 0.5 in float32, CHW.
 *   pad (MBQ's forced path): expand2square on int(255 * mean) = (127, 127, 127), one tile.
 *   anyres (LLaVA-NeXT mm_utils.process_anyres_image, used by lmms-eval and LLaVA inference):
 *     select_best_resolution over the config's pinpoints, resize_and_pad_image (bicubic into
 *     the pinpoint keeping the aspect, centred on black), divide_to_patches (row-major S x S
 *     crops), preceded by the whole image resized to S x S. Only the pad path has goldens. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/budget.h"
#include "decode.h"
#include "io/json.h"

void qv_llava_prep_default(qv_llava_prep *p)
{
    memset(p, 0, sizeof *p);
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
    uint64_t side = (uint64_t)QV_MAX(img->w, img->h), tile = (uint64_t)s * s * 3;
    const uint64_t sizes[] = {(uint64_t)img->w * img->h * 3, side * side * 3, tile, tile * sizeof(float)};
    QV_CHECK(st = qv_budget_check(qv_image_need(sizes, QV_ARRAY_LEN(sizes)), what, "expand2square and resize"),
             fail);
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

/* ---- anyres ------------------------------------------------------------------------------------ */

static qv_status add_pinpoint(qv_llava_prep *p, int64_t w, int64_t h, const char *file)
{
    if (w <= 0 || h <= 0 || w > 16384 || h > 16384)
        return qv_fail(QV_ERR_INVALID, "%s: image_grid_pinpoints: %lldx%lld is out of range", file, (long long)w,
                       (long long)h);
    if (p->n_pinpoints >= QV_LLAVA_MAX_PINPOINTS)
        return qv_fail(QV_ERR_INVALID, "%s: image_grid_pinpoints: more than %d entries", file, QV_LLAVA_MAX_PINPOINTS);
    p->pinpoints[p->n_pinpoints][0] = (int)w;
    p->pinpoints[p->n_pinpoints][1] = (int)h;
    p->n_pinpoints++;
    return QV_OK;
}

/* "(1x1),...,(6x6)": LLaVA-NeXT takes the first and the last "(AxB)" and spans
 * i in A1..A2 (outer), j in B1..B2 (inner), each pair scaled by the processor size. */
static qv_status parse_pinpoint_range(qv_llava_prep *p, const char *s, const char *file)
{
    long first[2] = {0, 0}, last[2] = {0, 0};
    int found = 0;
    for (const char *q = strchr(s, '('); q; q = strchr(q + 1, '(')) {
        char *end;
        long a = strtol(q + 1, &end, 10);
        if (end == q + 1 || *end != 'x')
            continue;
        const char *b0 = end + 1;
        long b = strtol(b0, &end, 10);
        if (end == b0 || *end != ')')
            continue;
        if (!found++) {
            first[0] = a;
            first[1] = b;
        }
        last[0] = a;
        last[1] = b;
    }
    if (!found || first[0] <= 0 || first[1] <= 0 || last[0] > 64 || last[1] > 64)
        return qv_fail(QV_ERR_INVALID, "%s: image_grid_pinpoints: cannot read the range \"%s\"", file, s);
    for (long i = first[0]; i <= last[0]; i++)
        for (long j = first[1]; j <= last[1]; j++)
            QV_TRY(add_pinpoint(p, i * p->image_size, j * p->image_size, file));
    return QV_OK;
}

qv_status qv_llava_prep_load(qv_llava_prep *p, const char *config_path)
{
    qv_llava_prep_default(p);
    qv_json *root = NULL;
    QV_TRY(qv_json_load_file(config_path, 0, &root));
    qv_status st = qv_llava_prep_from_json(p, root, config_path);
    qv_json_free(root);
    return st;
}

qv_status qv_llava_prep_from_json(qv_llava_prep *p, const qv_json *root, const char *config_path)
{
    qv_llava_prep_default(p);
    qv_status st = QV_OK;
    qv_json *pp = qv_json_get(root, "image_grid_pinpoints");
    if (qv_json_is_type(pp, json_type_string)) {
        st = parse_pinpoint_range(p, json_object_get_string(pp), config_path);
    } else if (qv_json_is_type(pp, json_type_array)) {
        size_t n = json_object_array_length(pp);
        for (size_t i = 0; i < n && st == QV_OK; i++) {
            qv_json *e = json_object_array_get_idx(pp, i);
            int64_t w, h;
            if (!qv_json_is_type(e, json_type_array) || json_object_array_length(e) != 2 ||
                !qv_json_as_int(json_object_array_get_idx(e, 0), &w) ||
                !qv_json_as_int(json_object_array_get_idx(e, 1), &h))
                st = qv_fail(QV_ERR_INVALID, "%s: image_grid_pinpoints[%zu]: expected [width, height]", config_path, i);
            else
                st = add_pinpoint(p, w, h, config_path);
        }
    } else if (pp && !qv_json_is_type(pp, json_type_null)) {
        st = qv_fail(QV_ERR_INVALID, "%s: image_grid_pinpoints: expected a list or a range string", config_path);
    }
    return st;
}

qv_status qv_llava_best_resolution(int w, int h, const qv_llava_prep *p, int *best_w, int *best_h)
{
    if (p->n_pinpoints <= 0)
        return qv_fail(QV_ERR_INVALID, "anyres: the model config has no image_grid_pinpoints");
    if (w <= 0 || h <= 0)
        return qv_fail(QV_ERR_INVALID, "anyres: image of %dx%d pixels", w, h);
    int64_t best_eff = 0, best_waste = INT64_MAX, orig = (int64_t)w * h;
    int bw = 0, bh = 0;
    for (int i = 0; i < p->n_pinpoints; i++) {
        int pw = p->pinpoints[i][0], ph = p->pinpoints[i][1];
        double scale = fmin((double)pw / w, (double)ph / h);
        int64_t dw = (int64_t)(w * scale), dh = (int64_t)(h * scale); /* Python int(): truncation */
        int64_t eff = QV_MIN(dw * dh, orig), waste = (int64_t)pw * ph - eff;
        if (eff > best_eff || (eff == best_eff && waste < best_waste)) {
            best_eff = eff;
            best_waste = waste;
            bw = pw;
            bh = ph;
        }
    }
    if (!bw) /* every candidate rounds the image to nothing: Python would fail on None too */
        return qv_fail(QV_ERR_INVALID, "anyres: no pinpoint fits a %dx%d image", w, h);
    *best_w = bw;
    *best_h = bh;
    return QV_OK;
}

/* PIL crop of an S x S box at (x, y): parts outside the image are black. */
static void crop_zero_fill(uint8_t *dst, const qv_image *src, int x, int y, int s)
{
    memset(dst, 0, (size_t)s * s * 3);
    for (int r = 0; r < s; r++) {
        int sy = y + r;
        if (sy < 0 || sy >= src->h)
            continue;
        int x0 = QV_MAX(x, 0), x1 = QV_MIN(x + s, src->w);
        if (x1 > x0)
            memcpy(dst + ((size_t)r * s + (x0 - x)) * 3, src->rgb + ((size_t)sy * src->w + x0) * 3, (size_t)(x1 - x0) * 3);
    }
}

qv_status qv_preprocess_llava_anyres(const qv_image *img, const qv_llava_prep *p, const char *what, qv_pixels *out)
{
    memset(out, 0, sizeof *out);
    int s = p->image_size;
    if (s <= 0 || s > 16384)
        return qv_fail(QV_ERR_INVALID, "%s: image size %d is out of range", what, s);
    int tw, th;
    if (qv_llava_best_resolution(img->w, img->h, p, &tw, &th) != QV_OK)
        return qv_image_blame(QV_ERR_INVALID, what);
    /* resize_and_pad_image */
    double sw = (double)tw / img->w, sh = (double)th / img->h;
    int nw, nh;
    if (sw < sh) {
        nw = tw;
        nh = (int)QV_MIN(ceil(img->h * sw), (double)th);
    } else {
        nh = th;
        nw = (int)QV_MIN(ceil(img->w * sh), (double)tw);
    }
    int cols = (tw + s - 1) / s, rows = (th + s - 1) / s, n = 1 + cols * rows;
    size_t tile = (size_t)s * s * 3;
    qv_image resized = {0}, canvas = {0}, base = {0};
    qv_status st;
    const uint64_t sizes[] = {(uint64_t)img->w * img->h * 3, (uint64_t)QV_MAX(nw, 1) * QV_MAX(nh, 1) * 3,
                              (uint64_t)tw * th * 3, tile, (uint64_t)tile * n * (1 + sizeof(float))};
    QV_CHECK(st = qv_budget_check(qv_image_need(sizes, QV_ARRAY_LEN(sizes)), what, "anyres tiling"), fail);
    QV_CHECK(st = qv_image_resize_bicubic(img, QV_MAX(nw, 1), QV_MAX(nh, 1), &resized), fail);
    QV_CHECK(st = qv_image_new(&canvas, tw, th, what), fail);
    memset(canvas.rgb, 0, (size_t)tw * th * 3);
    int px0 = (tw - resized.w) / 2, py0 = (th - resized.h) / 2;
    for (int r = 0; r < resized.h; r++)
        memcpy(canvas.rgb + ((size_t)(py0 + r) * tw + px0) * 3, resized.rgb + (size_t)r * resized.w * 3,
               (size_t)resized.w * 3);
    qv_image_free(&resized);
    QV_CHECK(st = qv_image_resize_bicubic(img, s, s, &base), fail);
    out->tiles_u8 = qv_malloc(tile * n, what);
    out->values = qv_malloc(tile * n * sizeof(float), what);
    if (!out->tiles_u8 || !out->values) {
        st = QV_ERR_NOMEM;
        goto fail;
    }
    memcpy(out->tiles_u8, base.rgb, tile);
    for (int k = 0; k < cols * rows; k++) /* divide_to_patches: rows outer, columns inner */
        crop_zero_fill(out->tiles_u8 + tile * (1 + k), &canvas, (k % cols) * s, (k / cols) * s, s);
    /* The processor's resize to S x S is a copy on every S x S tile. */
    for (int t = 0; t < n; t++)
        qv_image_normalize(out->values + tile * t, out->tiles_u8 + tile * t, s, s, QV_RESCALE_MUL_F64, p->mean,
                           p->std);
    out->n_tiles = n;
    out->tile_w = out->tile_h = s;
    out->ndim = 4;
    out->shape[0] = n;
    out->shape[1] = 3;
    out->shape[2] = s;
    out->shape[3] = s;
    out->grid_cols = cols;
    out->grid_rows = rows;
    qv_image_free(&canvas);
    qv_image_free(&base);
    return QV_OK;
fail:
    qv_image_blame(st, what);
    qv_image_free(&resized);
    qv_image_free(&canvas);
    qv_image_free(&base);
    qv_pixels_free(out);
    return st;
}
