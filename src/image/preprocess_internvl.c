/* preprocess_internvl.c — InternVL2 / InternVL3 image preprocessing (ALGORITHMS.md §8.1;
 * fixtures README §4): InternVL's dynamic_preprocess (grid choice, Pillow bicubic resize,
 * row-major tiles, thumbnail) and build_transform (ToTensor, ImageNet Normalize).
 *
 * The grid: candidates (i, j) with min_num <= i*j <= max_num in order of i*j; the closest
 * aspect i/j to w/h wins; on an exact tie a later candidate replaces the best when
 * w*h > 0.5 * S^2 * i * j (find_closest_aspect_ratio). InternVL sorts a Python set by i*j, so
 * candidates with equal products come in CPython's set order; we take i ascending instead.
 * The two orders give the same grid whenever min_num = 1 (between two candidates of equal
 * product p lies i1/j2 with a smaller product, strictly closer to any point between them), so
 * only a custom min_num > 1 with an exact tie could differ. An empty candidate set
 * (max_num < min_num, e.g. MBQ's 1 // n_images = 0 for multi-image items) gives 1 x 1. */
#include <math.h>
#include <string.h>

#include "core/budget.h"
#include "decode.h"

void qv_internvl_prep_default(qv_internvl_prep *p)
{
    static const double mean[3] = {0.485, 0.456, 0.406}, std[3] = {0.229, 0.224, 0.225};
    p->image_size = 448;
    p->min_num = 1;
    p->max_num = 12;
    p->use_thumbnail = true;
    memcpy(p->mean, mean, sizeof mean);
    memcpy(p->std, std, sizeof std);
}

void qv_internvl_prep_from_config(qv_internvl_prep *p, const qv_model_config *cfg)
{
    qv_internvl_prep_default(p);
    int64_t s = cfg->force_image_size > 0 ? cfg->force_image_size : cfg->vision.image_size;
    if (s > 0 && s <= 65535)
        p->image_size = (int)s;
    p->min_num = (int)QV_MAX(0, QV_MIN(cfg->min_dynamic_patch, 1024));
    p->max_num = (int)QV_MAX(0, QV_MIN(cfg->max_dynamic_patch, 1024));
    p->use_thumbnail = cfg->use_thumbnail;
}

static qv_status check_prep(const qv_internvl_prep *p, const char *what)
{
    if (p->image_size <= 0 || p->image_size > 65535)
        return qv_fail(QV_ERR_INVALID, "%s: tile size %d is out of range", what, p->image_size);
    if (p->min_num < 0 || p->max_num < 0 || p->max_num > 1024)
        return qv_fail(QV_ERR_INVALID, "%s: tile counts %d..%d are out of range (0..1024)", what, p->min_num,
                       p->max_num);
    return QV_OK;
}

qv_status qv_internvl_grid(int w, int h, const qv_internvl_prep *p, int *cols, int *rows)
{
    QV_TRY(check_prep(p, "dynamic_preprocess"));
    if (w <= 0 || h <= 0)
        return qv_fail(QV_ERR_INVALID, "dynamic_preprocess: image of %dx%d pixels", w, h);
    double aspect = (double)w / h, best_diff = INFINITY;
    double area = (double)w * h; /* exact: w*h <= 2^53 */
    double s = p->image_size;
    int bi = 1, bj = 1;
    for (int prod = QV_MAX(p->min_num, 1); prod <= p->max_num; prod++)
        for (int i = 1; i <= prod; i++) {
            if (prod % i)
                continue;
            int j = prod / i;
            double diff = fabs(aspect - (double)i / j);
            if (diff < best_diff) {
                best_diff = diff;
                bi = i;
                bj = j;
            } else if (diff == best_diff && area > 0.5 * s * s * i * j) {
                bi = i;
                bj = j;
            }
        }
    *cols = bi;
    *rows = bj;
    return QV_OK;
}

qv_status qv_preprocess_internvl(const qv_image *img, const qv_internvl_prep *p, const char *what, qv_pixels *out)
{
    memset(out, 0, sizeof *out);
    QV_TRY(check_prep(p, what));
    int cols, rows;
    QV_TRY(qv_internvl_grid(img->w, img->h, p, &cols, &rows));
    int s = p->image_size, blocks = cols * rows;
    bool thumb = p->use_thumbnail && blocks != 1;
    int n = blocks + thumb;
    size_t tile = (size_t)s * s * 3, nbytes, nvals;
    if (!qv_mul_size(tile, (size_t)n, &nbytes) || !qv_mul_size(nbytes, sizeof(float), &nvals))
        return qv_fail(QV_ERR_NOMEM, "%s: %d tiles of %dx%d are too large", what, n, s, s);
    /* held at once: the decoded image, the resized grid, the thumbnail, the tiles, the values */
    const uint64_t sizes[] = {(uint64_t)img->w * img->h * 3, (uint64_t)tile * cols * rows, thumb ? tile : 0, nbytes,
                              nvals};
    QV_TRY(qv_budget_check(qv_image_need(sizes, QV_ARRAY_LEN(sizes)), what, "InternVL tiling"));

    qv_image resized = {0}, thumbnail = {0};
    qv_status st;
    QV_CHECK(st = qv_image_resize_bicubic(img, s * cols, s * rows, &resized), fail);
    out->tiles_u8 = qv_malloc(nbytes, what);
    out->values = qv_malloc(nvals, what);
    if (!out->tiles_u8 || !out->values) {
        st = QV_ERR_NOMEM;
        goto fail;
    }
    /* Tile b is the crop box ((b % cols) * s, (b / cols) * s, +s, +s): row-major. */
    for (int b = 0; b < blocks; b++) {
        int x0 = (b % cols) * s, y0 = (b / cols) * s;
        uint8_t *dst = out->tiles_u8 + (size_t)b * tile;
        for (int y = 0; y < s; y++)
            memcpy(dst + (size_t)y * s * 3, resized.rgb + ((size_t)(y0 + y) * resized.w + x0) * 3, (size_t)s * 3);
    }
    if (thumb) {
        QV_CHECK(st = qv_image_resize_bicubic(img, s, s, &thumbnail), fail);
        memcpy(out->tiles_u8 + (size_t)blocks * tile, thumbnail.rgb, tile);
    }
    /* build_transform: T.Resize((s, s)) is a copy on an s x s tile; ToTensor; Normalize. */
    for (int t = 0; t < n; t++)
        qv_image_normalize(out->values + (size_t)t * tile, out->tiles_u8 + (size_t)t * tile, s, s,
                           QV_RESCALE_DIV_F32, p->mean, p->std);
    out->n_tiles = n;
    out->tile_w = out->tile_h = s;
    out->ndim = 4;
    out->shape[0] = n;
    out->shape[1] = 3;
    out->shape[2] = s;
    out->shape[3] = s;
    out->grid_cols = cols;
    out->grid_rows = rows;
    out->thumbnail = thumb;
    qv_image_free(&resized);
    qv_image_free(&thumbnail);
    return QV_OK;
fail:
    qv_image_blame(st, what);
    qv_image_free(&resized);
    qv_image_free(&thumbnail);
    qv_pixels_free(out);
    return st;
}
