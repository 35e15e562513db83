/* resample.c — Pillow's bicubic resize of 8-bit RGB, ported exactly (ALGORITHMS.md §7.3;
 * Pillow src/libImaging/Resample.c: precompute_coeffs, normalize_coeffs_8bpc,
 * ImagingResampleHorizontal_8bpc / _Vertical_8bpc, ImagingResampleInner).
 *
 * `im.resize((w, h), BICUBIC)` without a box uses the box (0, 0, in_w, in_h). A pass runs only
 * when its size changes; the horizontal pass runs first, over the source rows the vertical
 * pass will read; then the vertical pass. Coefficients are computed in double exactly as
 * Pillow does (support = 2 * max(1, in/out), centre (i + 0.5) * scale, taps normalised to
 * sum 1), then turned into 22-bit fixed point with round-half-away-from-zero; each output is
 * (2^21 + sum u8 * coeff) >> 22, clipped to 0..255. All integer: no rounding-mode or
 * summation-order questions, so the OpenMP row split cannot change a byte. */
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/budget.h"
#include "image.h"

#define PRECISION_BITS (32 - 8 - 2)
#define RESIZE_MAX_TAPS (1 << 27) /* 1.5 GiB of coefficient tables: far beyond any real resize */

typedef struct coeffs {
    int ksize;      /* taps per output (maximum) */
    int *bounds;    /* [out][2]: first source index, tap count */
    int32_t *k;     /* [out][ksize] fixed-point taps */
} coeffs;

static void coeffs_free(coeffs *c)
{
    qv_free(c->bounds);
    qv_free(c->k);
}

/* Pillow's bicubic_filter with a = -0.5, same expression order. */
static double bicubic(double x)
{
    const double a = -0.5;
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0)
        return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

/* precompute_coeffs + normalize_coeffs_8bpc for one axis. in0/in1 are Pillow's float box. */
static qv_status coeffs_init(coeffs *c, int in_size, float in0, float in1, int out_size)
{
    const double filter_support = 2.0;
    memset(c, 0, sizeof *c);
    double scale = (double)(in1 - in0) / out_size, filterscale = scale;
    if (filterscale < 1.0)
        filterscale = 1.0;
    double support = filter_support * filterscale;
    double ks = ceil(support) * 2 + 1;
    if (ks > 1e8)
        return qv_fail(QV_ERR_INVALID, "resize: %d -> %d needs too large a filter", in_size, out_size);
    c->ksize = (int)ks;
    /* out x ksize is about 4 x in + out taps: a long thin image resized to a few hundred
     * pixels (179M x 1, a 500 KB PNG of zeros) would ask for gigabytes of taps */
    size_t n;
    if (!qv_mul_size((size_t)out_size, (size_t)c->ksize, &n) || n > RESIZE_MAX_TAPS)
        return qv_fail(QV_ERR_INVALID, "resize from %d to %d pixels needs more than %d filter taps", in_size, out_size,
                       RESIZE_MAX_TAPS);
    QV_TRY(qv_budget_check((uint64_t)n * (sizeof(double) + sizeof(int32_t)), "resize", "the filter table"));
    double *kd = qv_malloc(n * sizeof(double), "resize coefficients");
    c->k = qv_malloc(n * sizeof(int32_t), "resize coefficients");
    c->bounds = qv_malloc((size_t)out_size * 2 * sizeof(int), "resize bounds");
    if (!kd || !c->k || !c->bounds) {
        qv_free(kd);
        coeffs_free(c);
        return QV_ERR_NOMEM;
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5); /* truncation, as Pillow's "round" */
        if (xmin < 0)
            xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size)
            xmax = in_size;
        xmax -= xmin;
        double *k = kd + (size_t)xx * c->ksize;
        int x = 0;
        for (; x < xmax; x++) {
            double w = bicubic((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0)
                k[x] /= ww;
        for (; x < c->ksize; x++)
            k[x] = 0;
        c->bounds[2 * xx] = xmin;
        c->bounds[2 * xx + 1] = xmax;
    }
    for (size_t i = 0; i < n; i++)
        c->k[i] = kd[i] < 0 ? (int32_t)(-0.5 + kd[i] * (1 << PRECISION_BITS))
                            : (int32_t)(0.5 + kd[i] * (1 << PRECISION_BITS));
    qv_free(kd);
    return QV_OK;
}

/* Pillow's clip8: the table lookup clip8_lookups[v >> PRECISION_BITS] (arithmetic shift). */
static inline uint8_t clip8(int32_t v)
{
    int32_t s = v >> PRECISION_BITS;
    return (uint8_t)(s < 0 ? 0 : s > 255 ? 255 : s);
}

/* One output row of the vertical pass: out[i] = clip8(2^21 + sum_t in_row(first + t)[i] * k[t])
 * over rows of len bytes. Integer sums are order-free, so whole rows are accumulated tap by tap,
 * a loop the compiler vectorises (Pillow sums per pixel; the bytes are the same).
 * acc: len scratch ints. */
static void vertical_row(uint8_t *out, const uint8_t *in, size_t len, int first, int taps, const int32_t *k,
                         int32_t *acc)
{
#pragma omp simd
    for (size_t i = 0; i < len; i++)
        acc[i] = 1 << (PRECISION_BITS - 1);
    for (int t = 0; t < taps; t++) {
        const uint8_t *src = in + (size_t)(first + t) * len;
        int32_t kt = k[t];
#pragma omp simd
        for (size_t i = 0; i < len; i++)
            acc[i] += src[i] * kt;
    }
#pragma omp simd
    for (size_t i = 0; i < len; i++)
        out[i] = clip8(acc[i]);
}

/* out rows 0..rows-1 = horizontal resample of in rows first..first+rows-1. */
static void pass_horizontal(uint8_t *out, int out_w, const uint8_t *in, int in_w, int first, int rows,
                            const coeffs *c)
{
#pragma omp parallel for schedule(static)
    for (int yy = 0; yy < rows; yy++) {
        const uint8_t *src = in + (size_t)(yy + first) * in_w * 3;
        uint8_t *dst = out + (size_t)yy * out_w * 3;
        for (int xx = 0; xx < out_w; xx++) {
            int xmin = c->bounds[2 * xx], xmax = c->bounds[2 * xx + 1];
            const int32_t *k = c->k + (size_t)xx * c->ksize;
            const uint8_t *p = src + (size_t)xmin * 3;
            int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
            for (int x = 0; x < xmax; x++) {
                s0 += p[3 * x] * k[x];
                s1 += p[3 * x + 1] * k[x];
                s2 += p[3 * x + 2] * k[x];
            }
            dst[3 * xx] = clip8(s0);
            dst[3 * xx + 1] = clip8(s1);
            dst[3 * xx + 2] = clip8(s2);
        }
    }
}

/* Vertical pass: out [out_h, w, 3] from in (bounds relative to in's first row). */
static qv_status pass_vertical(uint8_t *out, int out_h, const uint8_t *in, int w, const coeffs *c)
{
    size_t rowlen = (size_t)w * 3;
    int nthreads = 1;
#ifdef _OPENMP
    nthreads = omp_get_max_threads();
#endif
    int32_t *acc_all = qv_malloc((size_t)nthreads * rowlen * sizeof(int32_t), "resize accumulator");
    if (!acc_all)
        return QV_ERR_NOMEM;
#pragma omp parallel num_threads(nthreads)
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
#pragma omp for schedule(static)
        for (int yy = 0; yy < out_h; yy++)
            vertical_row(out + (size_t)yy * rowlen, in, rowlen, c->bounds[2 * yy], c->bounds[2 * yy + 1],
                         c->k + (size_t)yy * c->ksize, acc_all + (size_t)tid * rowlen);
    }
    qv_free(acc_all);
    return QV_OK;
}

qv_status qv_image_resize_bicubic(const qv_image *src, int w, int h, qv_image *dst)
{
    dst->w = dst->h = 0;
    dst->rgb = NULL;
    if (w <= 0 || h <= 0 || src->w <= 0 || src->h <= 0 || !src->rgb)
        return qv_fail(QV_ERR_INVALID, "resize: %dx%d -> %dx%d is not a valid resize", src->w, src->h, w, h);
    if ((int64_t)w * h > QV_IMAGE_MAX_PIXELS)
        return qv_fail(QV_ERR_INVALID, "resize: target %dx%d exceeds the limit of %lld pixels", w, h,
                       QV_IMAGE_MAX_PIXELS);
    bool need_h = w != src->w, need_v = h != src->h;
    if (!need_h && !need_v) {
        QV_TRY(qv_image_new(dst, w, h, "resize"));
        memcpy(dst->rgb, src->rgb, (size_t)w * h * 3);
        return QV_OK;
    }
    coeffs cv = {0}, ch = {0};
    uint8_t *tmp = NULL;
    qv_status st;
    QV_CHECK(st = coeffs_init(&cv, src->h, 0.0f, (float)src->h, h), done);
    /* Source rows the vertical pass reads: [first, last). */
    int first = cv.bounds[0], last = cv.bounds[2 * (h - 1)] + cv.bounds[2 * (h - 1) + 1];
    const uint8_t *vin = src->rgb;
    if (need_h) {
        QV_CHECK(st = coeffs_init(&ch, src->w, 0.0f, (float)src->w, w), done);
        size_t n;
        if (!qv_mul_size((size_t)w * 3, (size_t)(last - first), &n)) {
            st = qv_fail(QV_ERR_NOMEM, "resize: %dx%d -> %dx%d needs too large a buffer", src->w, src->h, w, h);
            goto done;
        }
        tmp = qv_malloc(n ? n : 1, "resize");
        if (!tmp) {
            st = QV_ERR_NOMEM;
            goto done;
        }
        pass_horizontal(tmp, w, src->rgb, src->w, first, last - first, &ch);
        for (int i = 0; i < h; i++)
            cv.bounds[2 * i] -= first;
        vin = tmp;
    }
    QV_CHECK(st = qv_image_new(dst, w, h, "resize"), done);
    if (need_v) {
        QV_CHECK(st = pass_vertical(dst->rgb, h, vin, w, &cv), done);
    } else {
        memcpy(dst->rgb, vin, (size_t)w * h * 3); /* first = 0, last = h when the height is kept */
    }
done:
    if (st != QV_OK)
        qv_image_free(dst);
    qv_free(tmp);
    coeffs_free(&cv);
    coeffs_free(&ch);
    return st;
}
