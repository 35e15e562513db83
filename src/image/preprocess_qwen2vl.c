/* preprocess_qwen2vl.c — Qwen2-VL image preprocessing, the slow (Pillow) Qwen2VLImageProcessor
 * of transformers 4.45 that MBQ pins (ALGORITHMS.md §8.4; MODELS.md §1.3; fixtures §13.3):
 * smart_resize, Pillow bicubic resize (a copy when the size is kept), rescale
 * x = float32(float64(u8) * (1/255)), CLIP normalisation in float32, the frame repeated to the
 * temporal patch, and the patch rows in 2x2 merge-block order:
 *   row    = ((bh * gw/m + bw) * m + mh) * m + mw,  patch (y, x) = (bh*m + mh, bw*m + mw)
 *   column = ((c * T + t) * p + py) * p + px       (the Conv3d weight's flattening order). */
#include <math.h>
#include <string.h>

#include "core/budget.h"
#include "core/fsutil.h"
#include "decode.h"
#include "io/json.h"

void qv_qwen2vl_prep_default(qv_qwen2vl_prep *p)
{
    static const double mean[3] = {0.48145466, 0.4578275, 0.40821073};
    static const double std[3] = {0.26862954, 0.26130258, 0.27577711};
    p->min_pixels = 56 * 56;
    p->max_pixels = 28 * 28 * 1280;
    p->patch_size = 14;
    p->merge_size = 2;
    p->temporal_patch_size = 2;
    memcpy(p->mean, mean, sizeof mean);
    memcpy(p->std, std, sizeof std);
}

static qv_status read_triple(const qv_json *root, const char *key, const char *file, double out[3])
{
    qv_json *a = qv_json_get(root, key);
    if (!a || qv_json_is_type(a, json_type_null))
        return QV_OK;
    if (!qv_json_is_type(a, json_type_array) || json_object_array_length(a) != 3)
        return qv_fail(QV_ERR_INVALID, "%s: %s: expected an array of 3 numbers", file, key);
    for (size_t i = 0; i < 3; i++) {
        qv_json *v = json_object_array_get_idx(a, i);
        if (!qv_json_is_type(v, json_type_double) && !qv_json_is_type(v, json_type_int))
            return qv_fail(QV_ERR_INVALID, "%s: %s: expected an array of 3 numbers", file, key);
        out[i] = json_object_get_double(v);
    }
    return QV_OK;
}

static qv_status check_prep(const qv_qwen2vl_prep *p, const char *what)
{
    if (p->patch_size <= 0 || p->patch_size > 1024 || p->merge_size <= 0 || p->merge_size > 64 ||
        p->temporal_patch_size <= 0 || p->temporal_patch_size > 64)
        return qv_fail(QV_ERR_INVALID, "%s: patch_size %d, merge_size %d, temporal_patch_size %d are out of range",
                       what, p->patch_size, p->merge_size, p->temporal_patch_size);
    if (p->min_pixels <= 0 || p->max_pixels <= 0 || p->min_pixels > QV_IMAGE_MAX_PIXELS ||
        p->max_pixels > QV_IMAGE_MAX_PIXELS)
        return qv_fail(QV_ERR_INVALID, "%s: min_pixels %lld / max_pixels %lld are out of range", what,
                       (long long)p->min_pixels, (long long)p->max_pixels);
    for (int c = 0; c < 3; c++)
        if (!(p->std[c] != 0) || !isfinite(p->mean[c]) || !isfinite(p->std[c]))
            return qv_fail(QV_ERR_INVALID, "%s: image_mean / image_std must be finite with a non-zero std", what);
    return QV_OK;
}

qv_status qv_qwen2vl_prep_load(qv_qwen2vl_prep *p, const char *model_dir)
{
    qv_qwen2vl_prep_default(p);
    char *path = qv_path_join(model_dir, "preprocessor_config.json");
    if (!path)
        return QV_ERR_NOMEM;
    if (!qv_path_exists(path)) {
        qv_free(path);
        return QV_OK;
    }
    qv_json *root = NULL;
    qv_status st = qv_json_load_file(path, 0, &root);
    if (st == QV_OK)
        st = qv_qwen2vl_prep_from_json(p, root, path);
    qv_json_free(root);
    qv_free(path);
    return st;
}

qv_status qv_qwen2vl_prep_from_json(qv_qwen2vl_prep *p, const qv_json *root, const char *path)
{
    qv_qwen2vl_prep_default(p);
    qv_status st;
    qv_json *size = qv_json_get(root, "size");
    if (qv_json_is_type(size, json_type_object)) {
        QV_CHECK(st = qv_json_int_opt(size, "shortest_edge", path, &p->min_pixels), done);
        QV_CHECK(st = qv_json_int_opt(size, "longest_edge", path, &p->max_pixels), done);
    }
    QV_CHECK(st = qv_json_int_opt(root, "min_pixels", path, &p->min_pixels), done);
    QV_CHECK(st = qv_json_int_opt(root, "max_pixels", path, &p->max_pixels), done);
    int64_t ps = p->patch_size, ms = p->merge_size, ts = p->temporal_patch_size;
    QV_CHECK(st = qv_json_int_opt(root, "patch_size", path, &ps), done);
    QV_CHECK(st = qv_json_int_opt(root, "merge_size", path, &ms), done);
    QV_CHECK(st = qv_json_int_opt(root, "temporal_patch_size", path, &ts), done);
    if (ps <= 0 || ps > 1024 || ms <= 0 || ms > 64 || ts <= 0 || ts > 64) {
        st = qv_fail(QV_ERR_INVALID, "%s: patch_size %lld, merge_size %lld, temporal_patch_size %lld are out of range",
                     path, (long long)ps, (long long)ms, (long long)ts);
        goto done;
    }
    p->patch_size = (int)ps;
    p->merge_size = (int)ms;
    p->temporal_patch_size = (int)ts;
    QV_CHECK(st = read_triple(root, "image_mean", path, p->mean), done);
    QV_CHECK(st = read_triple(root, "image_std", path, p->std), done);
    st = check_prep(p, path);
done:
    return st;
}

qv_status qv_qwen2vl_smart_resize(int h, int w, const qv_qwen2vl_prep *p, const char *what, int *h_out, int *w_out)
{
    QV_TRY(check_prep(p, what));
    const int64_t factor = (int64_t)p->patch_size * p->merge_size;
    if (h < factor || w < factor)
        return qv_fail(QV_ERR_INVALID, "%s: image of %dx%d pixels is smaller than the %lld-pixel patch grid", what, w, h,
                       (long long)factor);
    if ((double)QV_MAX(h, w) / QV_MIN(h, w) > 200)
        return qv_fail(QV_ERR_INVALID, "%s: aspect ratio of %dx%d exceeds 200", what, w, h);
    const double f = (double)factor;
    /* Python round() on a float rounds half to even: nearbyint in the default mode. */
    int64_t hb = (int64_t)nearbyint(h / f) * factor, wb = (int64_t)nearbyint(w / f) * factor;
    double hw = (double)h * w; /* exact */
    if (hb * wb > p->max_pixels) {
        double beta = sqrt(hw / (double)p->max_pixels);
        hb = QV_MAX(factor, (int64_t)floor(h / beta / f) * factor);
        wb = QV_MAX(factor, (int64_t)floor(w / beta / f) * factor);
    } else if (hb * wb < p->min_pixels) {
        double beta = sqrt((double)p->min_pixels / hw);
        hb = (int64_t)ceil(h * beta / f) * factor;
        wb = (int64_t)ceil(w * beta / f) * factor;
    }
    if (hb <= 0 || wb <= 0 || hb > INT32_MAX || wb > INT32_MAX || hb * wb > QV_IMAGE_MAX_PIXELS)
        return qv_fail(QV_ERR_INVALID, "%s: smart_resize of %dx%d gives %lldx%lld", what, w, h, (long long)wb,
                       (long long)hb);
    *h_out = (int)hb;
    *w_out = (int)wb;
    return QV_OK;
}

qv_status qv_preprocess_qwen2vl(const qv_image *img, const qv_qwen2vl_prep *p, const char *what, qv_pixels *out)
{
    memset(out, 0, sizeof *out);
    int hr, wr;
    QV_TRY(qv_qwen2vl_smart_resize(img->h, img->w, p, what, &hr, &wr));
    const int ps = p->patch_size, m = p->merge_size, T = p->temporal_patch_size;
    const int gh = hr / ps, gw = wr / ps;
    const size_t ncol = (size_t)3 * T * ps * ps, nrow = (size_t)gh * gw, plane = (size_t)hr * wr;
    qv_image resized = {0};
    float *chw = NULL;
    qv_status st;
    size_t nvals;
    if (!qv_mul_size(ncol, nrow, &nvals) || nvals > ((size_t)1 << 40)) {
        st = qv_fail(QV_ERR_NOMEM, "%s: %zu x %zu pixel values are too many", what, nrow, ncol);
        goto fail;
    }
    const uint64_t sizes[] = {(uint64_t)img->w * img->h * 3, (uint64_t)plane * 3, (uint64_t)plane * 3 * sizeof(float),
                              (uint64_t)nvals * sizeof(float)};
    QV_CHECK(st = qv_budget_check(qv_image_need(sizes, QV_ARRAY_LEN(sizes)), what, "Qwen2-VL patches"), fail);
    QV_CHECK(st = qv_image_resize_bicubic(img, wr, hr, &resized), fail);
    chw = qv_malloc(plane * 3 * sizeof(float), what);
    out->values = qv_malloc(nvals * sizeof(float), what);
    if (!chw || !out->values) {
        st = QV_ERR_NOMEM;
        goto fail;
    }
    qv_image_normalize(chw, resized.rgb, wr, hr, QV_RESCALE_MUL_F64, p->mean, p->std);
    const int bw_n = gw / m;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < (int64_t)nrow; r++) {
        int mw = (int)(r % m), mh = (int)(r / m % m);
        int64_t blk = r / ((int64_t)m * m);
        int bw = (int)(blk % bw_n), bh = (int)(blk / bw_n);
        int y0 = (bh * m + mh) * ps, x0 = (bw * m + mw) * ps;
        float *row = out->values + (size_t)r * ncol;
        for (int c = 0; c < 3; c++)
            for (int t = 0; t < T; t++)
                for (int py = 0; py < ps; py++) {
                    const float *src = chw + c * plane + (size_t)(y0 + py) * wr + x0;
                    memcpy(row + ((size_t)(c * T + t) * ps + py) * ps, src, (size_t)ps * sizeof(float));
                }
    }
    out->tiles_u8 = resized.rgb; /* ownership moves to out */
    resized.rgb = NULL;
    out->n_tiles = 1;
    out->tile_w = wr;
    out->tile_h = hr;
    out->ndim = 2;
    out->shape[0] = (int64_t)nrow;
    out->shape[1] = (int64_t)ncol;
    out->grid_cols = out->grid_rows = 1;
    out->grid_thw[0] = 1;
    out->grid_thw[1] = gh;
    out->grid_thw[2] = gw;
    qv_free(chw);
    return QV_OK;
fail:
    qv_image_blame(st, what);
    qv_image_free(&resized);
    qv_free(chw);
    qv_pixels_free(out);
    return st;
}
