/* tensor.c — dtype table, views and conversions (tensor.h). */
#include "tensor.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../../simd/fp.h"

static const struct {
    const char *name;
    int bits;
    bool is_float;
} dtype_info[QV_DTYPE_COUNT] = {
    [QV_F32] = {"F32", 32, true},         [QV_F16] = {"F16", 16, true},
    [QV_BF16] = {"BF16", 16, true},       [QV_F8_E4M3] = {"F8_E4M3", 8, true},
    [QV_I8] = {"I8", 8, false},           [QV_U8] = {"U8", 8, false},
    [QV_I32] = {"I32", 32, false},        [QV_I64] = {"I64", 64, false},
    [QV_BOOL] = {"BOOL", 8, false},       [QV_F64] = {"F64", 64, true},
    [QV_I16] = {"I16", 16, false},        [QV_U16] = {"U16", 16, false},
    [QV_U32] = {"U32", 32, false},        [QV_U64] = {"U64", 64, false},
    [QV_F8_E5M2] = {"F8_E5M2", 8, true},  [QV_F8_E8M0] = {"F8_E8M0", 8, true},
};

const char *qv_dtype_name(qv_dtype dt) { return (unsigned)dt < QV_DTYPE_COUNT ? dtype_info[dt].name : "?"; }
size_t qv_dtype_size(qv_dtype dt) { return (unsigned)dt < QV_DTYPE_COUNT ? (size_t)dtype_info[dt].bits / 8 : 0; }
int qv_dtype_bits(qv_dtype dt) { return (unsigned)dt < QV_DTYPE_COUNT ? dtype_info[dt].bits : 0; }
bool qv_dtype_is_float(qv_dtype dt) { return (unsigned)dt < QV_DTYPE_COUNT && dtype_info[dt].is_float; }

bool qv_dtype_parse(const char *s, size_t n, qv_dtype *out)
{
    for (int i = 0; i < QV_DTYPE_COUNT; i++)
        if (strlen(dtype_info[i].name) == n && memcmp(dtype_info[i].name, s, n) == 0) {
            *out = (qv_dtype)i;
            return true;
        }
    return false;
}

bool qv_shape_numel(int ndim, const int64_t *shape, int64_t *numel)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || !qv_mul_i64(n, shape[i], &n)) {
            qv_fail(QV_ERR_FORMAT, "tensor shape overflows");
            return false;
        }
    }
    *numel = n;
    return true;
}

void qv_tensor_view(qv_tensor *t, qv_dtype dt, void *data, int ndim, const int64_t *shape)
{
    memset(t, 0, sizeof *t);
    t->dtype = dt;
    t->ndim = ndim;
    t->data = data;
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        t->shape[i] = shape[i];
        t->stride[i] = s;
        s *= shape[i];
    }
}

int64_t qv_tensor_numel(const qv_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

bool qv_tensor_is_contiguous(const qv_tensor *t)
{
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s)
            return false;
        s *= t->shape[i];
    }
    return true;
}

size_t qv_tensor_nbytes(const qv_tensor *t) { return (size_t)qv_tensor_numel(t) * qv_dtype_size(t->dtype); }

const char *qv_shape_str(char *buf, size_t n, int ndim, const int64_t *shape)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, o < n ? n - o : 0, "[");
    for (int i = 0; i < ndim; i++)
        o += (size_t)snprintf(buf + o, o < n ? n - o : 0, "%s%lld", i ? "," : "", (long long)shape[i]);
    snprintf(buf + o, o < n ? n - o : 0, "]");
    return buf;
}

/* ---- element access --------------------------------------------------------------------- */

static float e5m2_to_f32(uint8_t b) { return qv_f16_to_f32((uint16_t)b << 8); }

double qv_load_f64(const void *p, qv_dtype dt, size_t i)
{
    switch (dt) {
    case QV_F64: { double v; memcpy(&v, (const char *)p + 8 * i, 8); return v; }
    case QV_I64: { int64_t v; memcpy(&v, (const char *)p + 8 * i, 8); return (double)v; }
    case QV_U64: { uint64_t v; memcpy(&v, (const char *)p + 8 * i, 8); return (double)v; }
    case QV_I32: { int32_t v; memcpy(&v, (const char *)p + 4 * i, 4); return v; }
    case QV_U32: { uint32_t v; memcpy(&v, (const char *)p + 4 * i, 4); return v; }
    default: return qv_load_f32(p, dt, i);
    }
}

float qv_load_f32(const void *p, qv_dtype dt, size_t i)
{
    const unsigned char *b = p;
    switch (dt) {
    case QV_F32: { float v; memcpy(&v, b + 4 * i, 4); return v; }
    case QV_F16: { uint16_t v; memcpy(&v, b + 2 * i, 2); return qv_f16_to_f32(v); }
    case QV_BF16: { uint16_t v; memcpy(&v, b + 2 * i, 2); return qv_bf16_to_f32(v); }
    case QV_F8_E4M3: return qv_e4m3_to_f32(b[i]);
    case QV_F8_E5M2: return e5m2_to_f32(b[i]);
    case QV_F8_E8M0: return b[i] == 0xff ? NAN : ldexpf(1.0f, (int)b[i] - 127);
    case QV_I8: return (float)(int8_t)b[i];
    case QV_U8: return (float)b[i];
    case QV_BOOL: return b[i] ? 1.0f : 0.0f;
    case QV_I16: { int16_t v; memcpy(&v, b + 2 * i, 2); return v; }
    case QV_U16: { uint16_t v; memcpy(&v, b + 2 * i, 2); return v; }
    case QV_I32: { int32_t v; memcpy(&v, b + 4 * i, 4); return (float)v; }
    case QV_U32: { uint32_t v; memcpy(&v, b + 4 * i, 4); return (float)v; }
    case QV_I64: { int64_t v; memcpy(&v, b + 8 * i, 8); return (float)v; }
    case QV_U64: { uint64_t v; memcpy(&v, b + 8 * i, 8); return (float)v; }
    case QV_F64: { double v; memcpy(&v, b + 8 * i, 8); return (float)v; }
    default: return NAN;
    }
}

static int64_t sat_i64(double v, double lo, double hi)
{
    if (v != v)
        return 0;
    v = nearbyint(v);
    if (v < lo)
        v = lo;
    if (v > hi)
        v = hi;
    return (int64_t)v;
}

static void store_f64(void *p, qv_dtype dt, size_t i, double v)
{
    unsigned char *b = p;
    switch (dt) {
    case QV_F64: memcpy(b + 8 * i, &v, 8); return;
    case QV_F32: { float f = (float)v; memcpy(b + 4 * i, &f, 4); return; }
    case QV_F16: { uint16_t h = qv_f32_to_f16((float)v); memcpy(b + 2 * i, &h, 2); return; }
    case QV_BF16: { uint16_t h = qv_f32_to_bf16((float)v); memcpy(b + 2 * i, &h, 2); return; }
    case QV_F8_E4M3: b[i] = qv_f32_to_e4m3_sat((float)v); return;
    case QV_I8: b[i] = (uint8_t)(int8_t)sat_i64(v, -128, 127); return;
    case QV_U8: b[i] = (uint8_t)sat_i64(v, 0, 255); return;
    case QV_BOOL: b[i] = v != 0; return;
    case QV_I16: { int16_t x = (int16_t)sat_i64(v, -32768, 32767); memcpy(b + 2 * i, &x, 2); return; }
    case QV_U16: { uint16_t x = (uint16_t)sat_i64(v, 0, 65535); memcpy(b + 2 * i, &x, 2); return; }
    case QV_I32: { int32_t x = (int32_t)sat_i64(v, -2147483648.0, 2147483647.0); memcpy(b + 4 * i, &x, 4); return; }
    case QV_U32: { uint32_t x = (uint32_t)sat_i64(v, 0, 4294967295.0); memcpy(b + 4 * i, &x, 4); return; }
    case QV_I64: { int64_t x = sat_i64(v, -9.2233720368547758e18, 9.2233720368547748e18); memcpy(b + 8 * i, &x, 8); return; }
    case QV_U64: { uint64_t x = (uint64_t)sat_i64(v, 0, 9.2233720368547748e18); memcpy(b + 8 * i, &x, 8); return; }
    default: return;
    }
}

void qv_store_f32(void *p, qv_dtype dt, size_t i, float v) { store_f64(p, dt, i, v); }

qv_status qv_convert(void *dst, qv_dtype dst_dt, const void *src, qv_dtype src_dt, size_t n)
{
    if (dst_dt == QV_F8_E5M2 || dst_dt == QV_F8_E8M0 || (unsigned)dst_dt >= QV_DTYPE_COUNT ||
        (unsigned)src_dt >= QV_DTYPE_COUNT)
        return qv_fail(QV_ERR_UNSUPPORTED, "conversion %s -> %s is not supported", qv_dtype_name(src_dt),
                       qv_dtype_name(dst_dt));
    if (dst_dt == src_dt) {
        memmove(dst, src, n * qv_dtype_size(dst_dt));
        return QV_OK;
    }
    /* fast paths for the hot pairs */
    if (src_dt == QV_BF16 && dst_dt == QV_F32) {
        const uint16_t *s = src;
        float *d = dst;
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + i, 2);
            d[i] = qv_bf16_to_f32(h);
        }
        return QV_OK;
    }
    if (src_dt == QV_F32 && dst_dt == QV_BF16) {
        const float *s = src;
        uint16_t *d = dst;
        for (size_t i = 0; i < n; i++) {
            float f;
            memcpy(&f, s + i, 4);
            d[i] = qv_f32_to_bf16(f);
        }
        return QV_OK;
    }
    /* 64-bit integers pass through double only when exact; keep them exact between integer types */
    bool src_int64 = src_dt == QV_I64 || src_dt == QV_U64;
    bool dst_int = !qv_dtype_is_float(dst_dt) && dst_dt != QV_BOOL;
    if (src_int64 && dst_int) {
        for (size_t i = 0; i < n; i++) {
            int64_t v;
            memcpy(&v, (const char *)src + 8 * i, 8);
            if (dst_dt == QV_I64 || dst_dt == QV_U64)
                memcpy((char *)dst + 8 * i, &v, 8);
            else
                store_f64(dst, dst_dt, i, (double)v);
        }
        return QV_OK;
    }
    for (size_t i = 0; i < n; i++)
        store_f64(dst, dst_dt, i, qv_load_f64(src, src_dt, i));
    return QV_OK;
}
