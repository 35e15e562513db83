/* mm_batch.c — the image side of a batch file and the per-chunk pixel reader (vision.h;
 * fixtures README §4 and §15.2 for the U8 → float formulas). */
#include <string.h>

#include "vision_internal.h"

static bool has_key(const qv_st_file *f, const char *k) { return qv_st_header_find(&f->hdr, k) != NULL; }

static qv_status read_ints(const qv_st_file *f, const char *key, const qv_tensor *t, int64_t **out)
{
    if (qv_dtype_is_float(t->dtype))
        return qv_fail(QV_ERR_FORMAT, "%s: tensor %s has dtype %s, expected an integer or BOOL dtype", f->path, key,
                       qv_dtype_name(t->dtype));
    const size_t n = (size_t)qv_tensor_numel(t);
    *out = qv_malloc(n * sizeof(int64_t) + 8, key);
    if (!*out)
        return QV_ERR_NOMEM;
    return qv_convert(*out, QV_I64, t->data, t->dtype, n);
}

static qv_status bad_shape(const qv_st_file *f, const char *key, const qv_tensor *t, const char *expected)
{
    char a[96];
    return qv_fail(QV_ERR_FORMAT, "%s: tensor %s has shape %s, expected %s", f->path, key,
                   qv_shape_str(a, sizeof a, t->ndim, t->shape), expected);
}

/* A tile tensor [n, 3, S, S] (float) or [n, S, S, 3] / [n, 3, S, S] (U8). */
static qv_status load_tiles(qv_mm_batch *mb, const qv_vision *v, const char *fkey, const char *ukey, bool u8_hwc)
{
    const qv_st_file *f = mb->f;
    const int64_t S = v->tile;
    char want[96];
    qv_tensor t;
    if (has_key(f, fkey)) {
        QV_TRY(qv_st_get(f, fkey, &t));
        snprintf(want, sizeof want, "[tiles,3,%lld,%lld]", (long long)S, (long long)S);
        if (t.ndim != 4 || t.shape[1] != 3 || t.shape[2] != S || t.shape[3] != S)
            return bad_shape(f, fkey, &t, want);
        if (t.dtype != QV_F32 && t.dtype != QV_BF16 && t.dtype != QV_F16)
            return qv_fail(QV_ERR_FORMAT, "%s: tensor %s has dtype %s, expected F32, BF16 or F16", f->path, fkey,
                           qv_dtype_name(t.dtype));
        mb->pixels = t;
    } else {
        QV_TRY(qv_st_get(f, ukey, &t));
        if (u8_hwc)
            snprintf(want, sizeof want, "U8 [tiles,%lld,%lld,3]", (long long)S, (long long)S);
        else
            snprintf(want, sizeof want, "U8 [images,3,%lld,%lld]", (long long)S, (long long)S);
        const bool ok = t.ndim == 4 && t.dtype == QV_U8 &&
                        (u8_hwc ? t.shape[1] == S && t.shape[2] == S && t.shape[3] == 3
                                : t.shape[1] == 3 && t.shape[2] == S && t.shape[3] == S);
        if (!ok)
            return t.dtype != QV_U8 ? qv_fail(QV_ERR_FORMAT, "%s: tensor %s has dtype %s, expected U8", f->path, ukey,
                                              qv_dtype_name(t.dtype))
                                    : bad_shape(f, ukey, &t, want);
        mb->pixels_u8 = t;
        mb->u8_hwc = u8_hwc;
    }
    mb->n_units = t.shape[0];
    return QV_OK;
}

static qv_status load_internvl(qv_mm_batch *mb, const qv_vision *v)
{
    QV_TRY(load_tiles(mb, v, "pixel_values", "tile_u8", true));
    mb->flags = qv_malloc((size_t)mb->n_units + 1, "image_flags");
    if (!mb->flags)
        return QV_ERR_NOMEM;
    memset(mb->flags, 1, (size_t)mb->n_units);
    if (!has_key(mb->f, "image_flags"))
        return QV_OK;
    qv_tensor t;
    QV_TRY(qv_st_get(mb->f, "image_flags", &t));
    if (!(t.ndim == 1 || (t.ndim == 2 && t.shape[1] == 1)) || t.shape[0] != mb->n_units) {
        char want[64];
        snprintf(want, sizeof want, "[%lld] (one flag per tile)", (long long)mb->n_units);
        return bad_shape(mb->f, "image_flags", &t, want);
    }
    int64_t *fl = NULL;
    QV_TRY(read_ints(mb->f, "image_flags", &t, &fl));
    for (int64_t i = 0; i < mb->n_units; i++)
        mb->flags[i] = fl[i] != 0;
    qv_free(fl);
    return QV_OK;
}

static qv_status load_qwen2vl(qv_mm_batch *mb, const qv_vision *v)
{
    const qv_st_file *f = mb->f;
    qv_tensor t, g;
    QV_TRY(qv_st_get(f, "pixel_values", &t));
    const int64_t pd = qv_vision_patch_dim(v);
    char want[64];
    snprintf(want, sizeof want, "[patches,%lld]", (long long)pd);
    if (t.ndim != 2 || t.shape[1] != pd)
        return bad_shape(f, "pixel_values", &t, want);
    if (t.dtype != QV_F32 && t.dtype != QV_BF16 && t.dtype != QV_F16)
        return qv_fail(QV_ERR_FORMAT, "%s: tensor pixel_values has dtype %s, expected F32, BF16 or F16", f->path,
                       qv_dtype_name(t.dtype));
    QV_TRY(qv_st_get(f, "image_grid_thw", &g));
    if (g.ndim != 2 || g.shape[1] != 3)
        return bad_shape(f, "image_grid_thw", &g, "[images,3]");
    mb->pixels = t;
    mb->n_units = g.shape[0];
    QV_TRY(read_ints(f, "image_grid_thw", &g, &mb->grid_thw));
    mb->patch0 = qv_malloc((size_t)(mb->n_units + 1) * sizeof *mb->patch0, "patch offsets");
    if (!mb->patch0)
        return QV_ERR_NOMEM;
    mb->patch0[0] = 0;
    for (int64_t u = 0; u < mb->n_units; u++) {
        const int64_t *gt = mb->grid_thw + 3 * u;
        int64_t p;
        if (gt[0] <= 0 || gt[1] <= 0 || gt[2] <= 0 || gt[0] > 65536 || gt[1] > 65536 || gt[2] > 65536 ||
            !qv_mul_i64(gt[0] * gt[1], gt[2], &p))
            return qv_fail(QV_ERR_INVALID, "%s: image_grid_thw[%lld] = (%lld, %lld, %lld) is not a valid grid", f->path,
                           (long long)u, (long long)gt[0], (long long)gt[1], (long long)gt[2]);
        mb->patch0[u + 1] = mb->patch0[u] + p;
    }
    if (mb->patch0[mb->n_units] != t.shape[0])
        return qv_fail(QV_ERR_INVALID, "%s: image_grid_thw describes %lld patches, pixel_values has %lld rows", f->path,
                       (long long)mb->patch0[mb->n_units], (long long)t.shape[0]);
    return QV_OK;
}

static qv_status load_llava(qv_mm_batch *mb, const qv_vision *v)
{
    const qv_st_file *f = mb->f;
    QV_TRY(load_tiles(mb, v, "pixel_values", "pixel_values_u8", false));
    qv_tensor t;
    QV_TRY(qv_st_get(f, "input_ids_pre_splice", &t));
    if (t.ndim != 2)
        return bad_shape(f, "input_ids_pre_splice", &t, "[batch,length]");
    mb->B_pre = t.shape[0], mb->L_pre = t.shape[1];
    QV_TRY(read_ints(f, "input_ids_pre_splice", &t, &mb->ids_pre));
    const size_t n = (size_t)(mb->B_pre * mb->L_pre);
    mb->mask_pre = qv_malloc(n + 1, "attention_mask_pre_splice");
    if (!mb->mask_pre)
        return QV_ERR_NOMEM;
    memset(mb->mask_pre, 1, n);
    if (has_key(f, "attention_mask_pre_splice")) {
        QV_TRY(qv_st_get(f, "attention_mask_pre_splice", &t));
        if (t.ndim != 2 || t.shape[0] != mb->B_pre || t.shape[1] != mb->L_pre)
            return bad_shape(f, "attention_mask_pre_splice", &t, "the shape of input_ids_pre_splice");
        int64_t *m = NULL;
        QV_TRY(read_ints(f, "attention_mask_pre_splice", &t, &m));
        for (size_t i = 0; i < n; i++)
            mb->mask_pre[i] = m[i] != 0;
        qv_free(m);
    }
    return QV_OK;
}

qv_status qv_mm_batch_load(const char *path, const qv_vision *v, qv_mm_batch *mb, bool *has_images)
{
    memset(mb, 0, sizeof *mb);
    *has_images = false;
    mb->pixels.dtype = mb->pixels_u8.dtype = QV_DTYPE_COUNT;
    QV_TRY(qv_st_open(path, &mb->f));
    static const char *const keys[] = {"pixel_values", "tile_u8", "pixel_values_u8"};
    bool any = false;
    for (size_t i = 0; i < QV_ARRAY_LEN(keys); i++)
        any = any || has_key(mb->f, keys[i]);
    if (!any) {
        qv_mm_batch_free(mb);
        return QV_OK;
    }
    mb->kind = v->kind;
    qv_status st = v->kind == QV_VISION_INTERNVIT ? load_internvl(mb, v)
                   : v->kind == QV_VISION_QWEN2VL ? load_qwen2vl(mb, v)
                                                  : load_llava(mb, v);
    if (st != QV_OK) {
        qv_mm_batch_free(mb);
        return st;
    }
    *has_images = true;
    return QV_OK;
}

void qv_mm_batch_free(qv_mm_batch *mb)
{
    if (!mb)
        return;
    qv_st_close(mb->f);
    qv_free(mb->grid_thw);
    qv_free(mb->patch0);
    qv_free(mb->flags);
    qv_free(mb->ids_pre);
    qv_free(mb->mask_pre);
    memset(mb, 0, sizeof *mb);
}

/* ImageNet (InternVL, fixtures README §4): ((float)u8 / 255 − mean) / std in f32, HWC → CHW. */
static const float k_imagenet_mean[3] = {0.485f, 0.456f, 0.406f}, k_imagenet_std[3] = {0.229f, 0.224f, 0.225f};

static qv_status get_pixels(void *ctx, int64_t u0, int64_t n, float *dst)
{
    const qv_mm_batch *mb = ctx;
    if (mb->kind == QV_VISION_QWEN2VL) {
        const int64_t pd = mb->pixels.shape[1], r0 = mb->patch0[u0], rows = mb->patch0[u0 + n] - r0;
        const char *src = (const char *)mb->pixels.data + (size_t)(r0 * pd) * qv_dtype_size(mb->pixels.dtype);
        return qv_convert(dst, QV_F32, src, mb->pixels.dtype, (size_t)(rows * pd));
    }
    if (mb->pixels.dtype != QV_DTYPE_COUNT) {
        const int64_t per = mb->pixels.shape[1] * mb->pixels.shape[2] * mb->pixels.shape[3];
        const char *src = (const char *)mb->pixels.data + (size_t)(u0 * per) * qv_dtype_size(mb->pixels.dtype);
        return qv_convert(dst, QV_F32, src, mb->pixels.dtype, (size_t)(n * per));
    }
    const int64_t S = mb->u8_hwc ? mb->pixels_u8.shape[1] : mb->pixels_u8.shape[2], HW = S * S;
    const uint8_t *src = (const uint8_t *)mb->pixels_u8.data + (size_t)(u0 * 3 * HW);
#pragma omp parallel for schedule(static) if (n * HW >= 16384)
    for (int64_t i = 0; i < n * HW; i++) {
        const int64_t t = i / HW, p = i % HW;
        for (int c = 0; c < 3; c++) {
            float *o = dst + (t * 3 + c) * HW + p;
            if (mb->u8_hwc) { /* InternVL tile_u8: ToTensor then Normalize(ImageNet) */
                const float x = (float)src[(t * HW + p) * 3 + c] / 255.0f;
                *o = (x - k_imagenet_mean[c]) / k_imagenet_std[c];
            } else { /* LLaVA pixel_values_u8: SigLIP rescale (f64 product) then (x − 0.5) / 0.5 */
                const float x = (float)((double)src[(t * 3 + c) * HW + p] * (1.0 / 255.0));
                *o = (x - 0.5f) / 0.5f;
            }
        }
    }
    return QV_OK;
}

void qv_mm_batch_input(qv_mm_batch *mb, const qv_vision *v, qv_vision_input *in)
{
    memset(in, 0, sizeof *in);
    in->n = mb->n_units;
    in->tile_h = in->tile_w = v->kind == QV_VISION_QWEN2VL ? 0 : v->tile;
    in->grid_thw = mb->grid_thw;
    in->flags = mb->flags;
    in->ctx = mb;
    in->get = get_pixels;
}
