/* decode_png.c — PNG to RGB with libpng, matching Pillow's PngImagePlugin modes followed by
 * convert('RGB') (ALGORITHMS.md §7.3).
 *
 * Why libpng: it is the PNG reference implementation and already a build dependency; Pillow
 * decodes with its own zlib-based reader, so the mapping of each PNG type onto Pillow's modes
 * is restated here (Pillow's _MODES table and Convert.c):
 *   gray 1/2/4/8 bit     "1" / "L;2" / "L;4" / "L": values scaled to 0..255, R = G = B
 *   gray 16 bit          "I;16" -> RGB clips: v > 255 gives 255 (not v >> 8)
 *   RGB, RGBA, LA        8 bit as is; 16 bit keeps the high byte ("RGB;16B", ...); alpha dropped
 *   palette 1/2/4/8 bit  indices through PLTE; entries past the PLTE length are black
 *   tRNS                 ignored by convert('RGB')
 * Errors: libpng errors longjmp back here; CRC errors in any chunk are errors (Pillow refuses
 * a bad CRC too); libpng warnings are ignored (e.g. colour-profile remarks that Pillow never
 * reads). Reading stops after the image data, as Pillow does not need IEND. */
#include <setjmp.h>
#include <string.h>

#include <png.h>

#include "decode.h"

typedef struct png_ctx {
    png_structp png;
    png_infop info;
    const char *what;
    const uint8_t *buf;
    size_t len, pos;
    char msg[256];
    /* Owned buffers live here, not in locals, so they survive the longjmp. */
    uint8_t *rgb;
    uint8_t *rows; /* the whole image (interlaced files) or one row */
    png_bytep *row_ptrs;
} png_ctx;

static void on_error(png_structp png, png_const_charp msg)
{
    png_ctx *ctx = png_get_error_ptr(png);
    snprintf(ctx->msg, sizeof ctx->msg, "%s", msg ? msg : "error");
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

static void on_read(png_structp png, png_bytep out, size_t n)
{
    png_ctx *ctx = png_get_io_ptr(png);
    if (n > ctx->len - ctx->pos)
        png_error(png, "unexpected end of file (truncated)");
    memcpy(out, ctx->buf + ctx->pos, n);
    ctx->pos += n;
}

/* One decoded row (after the transforms set up in decode) to RGB. */
static void row_to_rgb(uint8_t *out, const uint8_t *in, int w, int color_type, int bit_depth, const uint8_t pal[256][3])
{
    switch (color_type) {
    case PNG_COLOR_TYPE_GRAY:
        if (bit_depth == 16) {
            for (int x = 0; x < w; x++) {
                uint8_t v = in[2 * x] ? 255 : in[2 * x + 1]; /* big-endian sample, clipped */
                out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = v;
            }
        } else {
            for (int x = 0; x < w; x++)
                out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = in[x];
        }
        break;
    case PNG_COLOR_TYPE_GRAY_ALPHA:
        for (int x = 0; x < w; x++)
            out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = in[2 * x];
        break;
    case PNG_COLOR_TYPE_RGB:
        memcpy(out, in, (size_t)w * 3);
        break;
    case PNG_COLOR_TYPE_RGB_ALPHA:
        for (int x = 0; x < w; x++)
            memcpy(out + 3 * x, in + 4 * x, 3);
        break;
    case PNG_COLOR_TYPE_PALETTE:
        for (int x = 0; x < w; x++)
            memcpy(out + 3 * x, pal[in[x]], 3);
        break;
    }
}

static qv_status decode(png_ctx *ctx, qv_image *img)
{
    png_structp png = ctx->png;
    png_infop info = ctx->info;
    const char *what = ctx->what;
    png_set_read_fn(png, ctx, on_read);
    png_set_crc_action(png, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
    png_read_info(png, info);

    png_uint_32 w32, h32;
    int bit_depth, color_type, interlace;
    png_get_IHDR(png, info, &w32, &h32, &bit_depth, &color_type, &interlace, NULL, NULL);
    QV_TRY(qv_image_check_dims(w32, h32, what));
    int w = (int)w32, h = (int)h32;

    uint8_t pal[256][3];
    memset(pal, 0, sizeof pal);
    if (color_type == PNG_COLOR_TYPE_PALETTE) {
        png_colorp plte = NULL;
        int n = 0;
        if (!png_get_PLTE(png, info, &plte, &n) || n <= 0)
            return qv_fail(QV_ERR_FORMAT, "%s: PNG palette image without a PLTE chunk", what);
        for (int i = 0; i < n && i < 256; i++) {
            pal[i][0] = plte[i].red;
            pal[i][1] = plte[i].green;
            pal[i][2] = plte[i].blue;
        }
        if (bit_depth < 8)
            png_set_packing(png); /* one index per byte */
    } else if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) {
        png_set_expand_gray_1_2_4_to_8(png); /* 0/255, x85, x17: Pillow's "1", "L;2", "L;4" */
    } else if (bit_depth == 16 && color_type != PNG_COLOR_TYPE_GRAY) {
        png_set_strip_16(png); /* keeps the high byte */
    }
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    int out_bits = png_get_bit_depth(png, info);
    int channels = png_get_channels(png, info);
    size_t need = (size_t)w * channels * (size_t)(out_bits / 8);
    if (rowbytes < need || (out_bits != 8 && out_bits != 16))
        return qv_fail(QV_ERR_INTERNAL, "%s: unexpected PNG row layout", what);

    ctx->rgb = qv_malloc((size_t)w * h * 3, what); /* bounded by the pixel limit */
    if (!ctx->rgb)
        return QV_ERR_NOMEM;
    if (passes > 1) {
        size_t total;
        if (!qv_mul_size(rowbytes, (size_t)h, &total))
            return qv_fail(QV_ERR_NOMEM, "%s: PNG too large", what);
        ctx->rows = qv_malloc(total, what);
        ctx->row_ptrs = qv_malloc((size_t)h * sizeof(png_bytep), what);
        if (!ctx->rows || !ctx->row_ptrs)
            return QV_ERR_NOMEM;
        for (int y = 0; y < h; y++)
            ctx->row_ptrs[y] = ctx->rows + (size_t)y * rowbytes;
        png_read_image(png, ctx->row_ptrs);
        for (int y = 0; y < h; y++)
            row_to_rgb(ctx->rgb + (size_t)y * w * 3, ctx->row_ptrs[y], w, color_type, out_bits,
                       (const uint8_t(*)[3])pal);
    } else {
        ctx->rows = qv_malloc(rowbytes, what);
        if (!ctx->rows)
            return QV_ERR_NOMEM;
        for (int y = 0; y < h; y++) {
            png_read_row(png, ctx->rows, NULL);
            row_to_rgb(ctx->rgb + (size_t)y * w * 3, ctx->rows, w, color_type, out_bits, (const uint8_t(*)[3])pal);
        }
    }
    img->w = w;
    img->h = h;
    img->rgb = ctx->rgb;
    ctx->rgb = NULL;
    return QV_OK;
}

qv_status qv_png_decode(const uint8_t *buf, size_t len, const char *what, qv_image *img)
{
    png_ctx *ctx = qv_calloc(1, sizeof *ctx, what);
    if (!ctx)
        return QV_ERR_NOMEM;
    ctx->what = what;
    ctx->buf = buf;
    ctx->len = len;
    qv_status st;
    ctx->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, ctx, on_error, on_warning);
    if (ctx->png)
        ctx->info = png_create_info_struct(ctx->png);
    if (!ctx->png || !ctx->info) {
        st = qv_fail(QV_ERR_NOMEM, "%s: out of memory creating the PNG reader", what);
    } else if (setjmp(png_jmpbuf(ctx->png))) {
        st = qv_fail(QV_ERR_FORMAT, "%s: corrupt PNG: %s", what, ctx->msg);
    } else {
        st = decode(ctx, img);
    }
    png_destroy_read_struct(ctx->png ? &ctx->png : NULL, ctx->info ? &ctx->info : NULL, NULL);
    qv_free(ctx->rgb);
    qv_free(ctx->rows);
    qv_free(ctx->row_ptrs);
    qv_free(ctx);
    return st;
}
