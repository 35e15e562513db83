/* decode_jpeg.c — JPEG to RGB with libjpeg-turbo at Pillow's settings, so the decoded bytes
 * equal `PIL.Image.open(p).convert('RGB')` (ALGORITHMS.md §7.3; fixtures README §4).
 *
 * Pillow's JpegDecode.c leaves libjpeg's defaults: ISLOW IDCT, fancy upsampling, block
 * smoothing for progressive files, jpeg_color_space as libjpeg guesses it. The output colour
 * space follows Pillow's mode: 1 component -> L (replicated by convert('RGB')), 3 -> RGB,
 * 4 -> rawmode "CMYK;I": Pillow assumes Adobe's inverted CMYK for *every* 4-component file
 * (libjpeg turns YCCK into CMYK first), then convert('RGB') applies Convert.c's cmyk2rgb.
 *
 * Errors: error_exit longjmps back here. Warnings are errors too: a truncated file or corrupt
 * entropy data only makes libjpeg warn (and pad with zeros). Consequence: files that Pillow
 * opens despite a warning (e.g. "extraneous bytes before marker") are refused. Reading stops
 * after the last scanline (no jpeg_finish_decompress): Pillow ignores whatever follows the
 * image data too. */
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>

#include "core/budget.h"
#include "decode.h"

/* libjpeg's working memory (a progressive file keeps all its coefficients: 2 bytes per pixel
 * and component); CMYK at QV_IMAGE_MAX_PIXELS needs about 1.4 GB. */
#define JPEG_MAX_MEMORY (2000ll * 1000 * 1000)

typedef struct jpeg_ctx {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_mgr jerr;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
    bool warning;
    /* Owned buffers live here, not in locals, so they survive the longjmp. */
    uint8_t *rgb;
    uint8_t *row;
} jpeg_ctx;

static void on_error_exit(j_common_ptr c)
{
    jpeg_ctx *ctx = (jpeg_ctx *)c->client_data;
    (*c->err->format_message)(c, ctx->msg);
    ctx->warning = false;
    longjmp(ctx->jb, 1);
}

static void on_emit_message(j_common_ptr c, int level)
{
    if (level >= 0) /* trace messages */
        return;
    jpeg_ctx *ctx = (jpeg_ctx *)c->client_data;
    (*c->err->format_message)(c, ctx->msg);
    ctx->warning = true;
    longjmp(ctx->jb, 1);
}

static void on_output_message(j_common_ptr c) { (void)c; }

/* Pillow's MULDIV255 (ImagingUtils.h): round(a * b / 255) for bytes. */
static inline int muldiv255(int a, int b)
{
    int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

static inline uint8_t clip8(int v) { return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v); }

/* One scanline of libjpeg CMYK -> Pillow "CMYK;I" unpack (255 - v) -> cmyk2rgb. */
static void cmyk_inverted_to_rgb(uint8_t *out, const uint8_t *in, int w)
{
    for (int x = 0; x < w; x++, in += 4, out += 3) {
        int nk = 255 - (255 - in[3]);
        for (int c = 0; c < 3; c++)
            out[c] = clip8(nk - muldiv255(255 - in[c], nk));
    }
}

static qv_status decode(jpeg_ctx *ctx, const uint8_t *buf, size_t len, const char *what, qv_image *img)
{
    struct jpeg_decompress_struct *ci = &ctx->cinfo;
    jpeg_mem_src(ci, buf, (unsigned long)len);
    if (jpeg_read_header(ci, TRUE) != JPEG_HEADER_OK)
        return qv_fail(QV_ERR_FORMAT, "%s: JPEG holds tables only, no image", what);
    QV_TRY(qv_image_check_dims(ci->image_width, ci->image_height, what));
    int nc = ci->num_components;
    if (nc == 1)
        ci->out_color_space = JCS_GRAYSCALE;
    else if (nc == 3)
        ci->out_color_space = JCS_RGB;
    else if (nc == 4)
        ci->out_color_space = JCS_CMYK;
    else
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: JPEG with %d components is not supported (1, 3 or 4)", what, nc);
    ci->dct_method = JDCT_ISLOW;
    ci->do_fancy_upsampling = TRUE;
    ci->scale_num = ci->scale_denom = 1;
    ci->mem->max_memory_to_use = JPEG_MAX_MEMORY;
    if (qv_budget() && qv_budget() < (uint64_t)JPEG_MAX_MEMORY) /* libjpeg fails cleanly beyond it */
        ci->mem->max_memory_to_use = (long)qv_budget();
    jpeg_start_decompress(ci);
    int w = (int)ci->output_width, h = (int)ci->output_height;
    if (w != (int)ci->image_width || h != (int)ci->image_height || ci->output_components != nc)
        return qv_fail(QV_ERR_INTERNAL, "%s: libjpeg output geometry differs from the header", what);
    size_t n = (size_t)w * h * 3; /* bounded by the pixel limit */
    ctx->rgb = qv_malloc(n, what);
    if (!ctx->rgb)
        return QV_ERR_NOMEM;
    if (nc != 3) {
        ctx->row = qv_malloc((size_t)w * nc, what);
        if (!ctx->row)
            return QV_ERR_NOMEM;
    }
    while (ci->output_scanline < ci->output_height) {
        uint8_t *dst = ctx->rgb + (size_t)ci->output_scanline * w * 3;
        JSAMPROW row = nc == 3 ? dst : ctx->row;
        if (jpeg_read_scanlines(ci, &row, 1) != 1)
            return qv_fail(QV_ERR_FORMAT, "%s: JPEG decoding stopped early", what);
        if (nc == 1)
            for (int x = 0; x < w; x++)
                dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = ctx->row[x];
        else if (nc == 4)
            cmyk_inverted_to_rgb(dst, ctx->row, w);
    }
    img->w = w;
    img->h = h;
    img->rgb = ctx->rgb;
    ctx->rgb = NULL;
    return QV_OK;
}

qv_status qv_jpeg_decode(const uint8_t *buf, size_t len, const char *what, qv_image *img)
{
    jpeg_ctx *ctx = qv_calloc(1, sizeof *ctx, what);
    if (!ctx)
        return QV_ERR_NOMEM;
    ctx->cinfo.err = jpeg_std_error(&ctx->jerr);
    ctx->jerr.error_exit = on_error_exit;
    ctx->jerr.emit_message = on_emit_message;
    ctx->jerr.output_message = on_output_message;
    ctx->cinfo.client_data = ctx;
    qv_status st;
    if (setjmp(ctx->jb)) {
        st = qv_fail(QV_ERR_FORMAT, "%s: %s: %s", what, ctx->warning ? "corrupt JPEG data" : "JPEG decoding failed",
                     ctx->msg);
    } else {
        jpeg_create_decompress(&ctx->cinfo);
        st = decode(ctx, buf, len, what, img);
    }
    jpeg_destroy_decompress(&ctx->cinfo);
    qv_free(ctx->rgb);
    qv_free(ctx->row);
    qv_free(ctx);
    return st;
}
