/* test_image.c — image decoding and resizing (src/image): decoded bytes against the Pillow
 * goldens (fixtures README §4: SHA-256 and channel sums), PNG types and JPEG variants built
 * here with libpng/libjpeg and checked against Pillow's conversion rules, and bad input
 * (truncation, garbage, bad CRC, zero and huge sizes, byte mutations): one error line, no crash.
 * Tolerance everywhere: exact. */
#include <criterion/criterion.h>
#include <jpeglib.h>
#include <omp.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fsutil.h"
#include "core/sha256.h"
#include "image/image.h"
#include "io/json.h"
#include "util/testutil.h"

static const char *k_images[] = {"grace_hopper", "rocket", "synth_500x333", "synth_gray_301x451"};

static qv_image load_fixture(const char *stem)
{
    char rel[256];
    snprintf(rel, sizeof rel, "calib/images/%s.jpg", stem);
    qv_image img;
    if (qv_image_load(qt_fixture(rel), &img) != QV_OK)
        cr_assert_fail("%s", qv_last_error());
    return img;
}

static uint8_t *read_fixture_bytes(const char *rel, size_t *len)
{
    char *data;
    if (qv_read_file(qt_fixture(rel), (size_t)1 << 26, &data, len) != QV_OK)
        cr_assert_fail("%s", qv_last_error());
    return (uint8_t *)data;
}

/* A failing decode: status not OK, empty image, one line that names `what`. */
static void expect_decode_error(const uint8_t *buf, size_t len, const char *what, const char *needle)
{
    qv_image img = {7, 7, (uint8_t *)1};
    qv_status st = qv_image_decode_mem(buf, len, what, &img);
    const char *m = qv_last_error();
    cr_assert_neq(st, QV_OK, "%s: decoding succeeded", what);
    cr_assert(img.rgb == NULL && img.w == 0 && img.h == 0, "%s: image not emptied on failure", what);
    cr_assert(strncmp(m, what, strlen(what)) == 0, "error does not name the input: %s", m);
    cr_assert(strchr(m, '\n') == NULL, "error is not one line: %s", m);
    if (needle)
        cr_assert(strstr(m, needle), "error '%s' lacks '%s'", m, needle);
}

/* ---- SHA-256 itself --------------------------------------------------------------------------- */

Test(image, sha256_known_answers)
{
    char hex[65];
    qv_sha256_hex("", 0, hex);
    cr_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    qv_sha256_hex("abc", 3, hex);
    cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    qv_sha256_hex(m, strlen(m), hex);
    cr_assert_str_eq(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* One million 'a' fed in uneven pieces (buffering across blocks). */
    qv_sha256_ctx c;
    qv_sha256_init(&c);
    char a[997];
    memset(a, 'a', sizeof a);
    size_t left = 1000000;
    for (size_t k = 1; left; k = k % 997 + 1) {
        size_t n = k < left ? k : left;
        qv_sha256_update(&c, a, n);
        left -= n;
    }
    uint8_t d[32];
    qv_sha256_final(&c, d);
    static const uint8_t want[32] = {0xcd, 0xc7, 0x6e, 0x5c, 0x99, 0x14, 0xfb, 0x92, 0x81, 0xa1, 0xc7,
                                     0xe2, 0x84, 0xd7, 0x3e, 0x67, 0xf1, 0x80, 0x9a, 0x48, 0xa4, 0x97,
                                     0x20, 0x0e, 0x04, 0x6d, 0x39, 0xcc, 0xc7, 0x11, 0x2c, 0xd0};
    cr_assert_arr_eq(d, want, 32);
}

/* ---- JPEG decoding against Pillow ------------------------------------------------------------- */

Test(image, jpeg_decode_matches_pillow)
{
    qv_json *g = NULL;
    cr_assert_eq(qv_json_load_file(qt_fixture("goldens/image/preprocess.json"), 0, &g), QV_OK, "%s", qv_last_error());
    qv_json *imgs = qv_json_get(g, "images");
    for (size_t i = 0; i < QV_ARRAY_LEN(k_images); i++) {
        char key[128];
        snprintf(key, sizeof key, "%s.jpg", k_images[i]);
        qv_json *e = qv_json_get(imgs, key);
        cr_assert_not_null(e, "%s missing from the golden", key);
        qv_image img = load_fixture(k_images[i]);
        qv_json *wh = qv_json_get(e, "decoded_size_wh"), *sums = qv_json_get(e, "decoded_channel_sums");
        cr_assert_eq(img.w, json_object_get_int(json_object_array_get_idx(wh, 0)), "%s width", key);
        cr_assert_eq(img.h, json_object_get_int(json_object_array_get_idx(wh, 1)), "%s height", key);
        int64_t s[3] = {0};
        for (size_t k = 0; k < (size_t)img.w * img.h * 3; k++)
            s[k % 3] += img.rgb[k];
        for (int c = 0; c < 3; c++)
            cr_assert_eq(s[c], json_object_get_int64(json_object_array_get_idx(sums, c)), "%s channel %d sum", key, c);
        char hex[65];
        qv_sha256_hex(img.rgb, (size_t)img.w * img.h * 3, hex);
        cr_assert_str_eq(hex, json_object_get_string(qv_json_get(e, "decoded_sha256")), "%s decoded bytes", key);
        qv_image_free(&img);
    }
    qv_json_free(g);
}

Test(image, gray_jpeg_becomes_equal_channels)
{
    qv_image img = load_fixture("synth_gray_301x451");
    for (size_t p = 0; p < (size_t)img.w * img.h; p++)
        cr_assert(img.rgb[3 * p] == img.rgb[3 * p + 1] && img.rgb[3 * p] == img.rgb[3 * p + 2]);
    qv_image_free(&img);
}

/* ---- JPEG variants built here ----------------------------------------------------------------- */

typedef struct mem_jpeg {
    unsigned char *buf;
    unsigned long len;
} mem_jpeg;

/* Encodes w x h pixels of `nc` components (in_cs) as a JPEG in memory (caller frees buf). */
static mem_jpeg encode_jpeg(const uint8_t *px, int w, int h, int nc, J_COLOR_SPACE in_cs, J_COLOR_SPACE jpeg_cs,
                            int quality, bool h2v2)
{
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr jerr;
    ci.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&ci);
    mem_jpeg m = {NULL, 0};
    jpeg_mem_dest(&ci, &m.buf, &m.len);
    ci.image_width = (JDIMENSION)w;
    ci.image_height = (JDIMENSION)h;
    ci.input_components = nc;
    ci.in_color_space = in_cs;
    jpeg_set_defaults(&ci);
    jpeg_set_colorspace(&ci, jpeg_cs);
    jpeg_set_quality(&ci, quality, TRUE);
    if (jpeg_cs == JCS_YCbCr) {
        ci.comp_info[0].h_samp_factor = ci.comp_info[0].v_samp_factor = h2v2 ? 2 : 1;
        ci.comp_info[1].h_samp_factor = ci.comp_info[1].v_samp_factor = 1;
        ci.comp_info[2].h_samp_factor = ci.comp_info[2].v_samp_factor = 1;
    }
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = (JSAMPROW)(px + (size_t)ci.next_scanline * w * nc);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    return m;
}

/* Lossless transcode to progressive (jpegtran -progressive): same DCT coefficients. */
static mem_jpeg to_progressive(const mem_jpeg *src)
{
    struct jpeg_decompress_struct di;
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr je1, je2;
    di.err = jpeg_std_error(&je1);
    ci.err = jpeg_std_error(&je2);
    jpeg_create_decompress(&di);
    jpeg_create_compress(&ci);
    jpeg_mem_src(&di, src->buf, src->len);
    jpeg_read_header(&di, TRUE);
    jvirt_barray_ptr *coefs = jpeg_read_coefficients(&di);
    jpeg_copy_critical_parameters(&di, &ci);
    jpeg_simple_progression(&ci);
    mem_jpeg m = {NULL, 0};
    jpeg_mem_dest(&ci, &m.buf, &m.len);
    jpeg_write_coefficients(&ci, coefs);
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    jpeg_finish_decompress(&di);
    jpeg_destroy_decompress(&di);
    return m;
}

static uint8_t *pattern(int w, int h, int nc)
{
    uint8_t *p = malloc((size_t)w * h * nc);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < nc; c++)
                p[((size_t)y * w + x) * nc + c] = (uint8_t)((x * (3 + c) + y * (5 - c) + (x * y >> (c + 2))) & 255);
    return p;
}

Test(image, progressive_jpeg_equals_baseline)
{
    for (int sub = 0; sub < 2; sub++) {
        uint8_t *px = pattern(67, 45, 3);
        mem_jpeg base = encode_jpeg(px, 67, 45, 3, JCS_RGB, JCS_YCbCr, 90, sub == 1);
        mem_jpeg prog = to_progressive(&base);
        qv_image a, b;
        cr_assert_eq(qv_image_decode_mem(base.buf, base.len, "baseline", &a), QV_OK, "%s", qv_last_error());
        cr_assert_eq(qv_image_decode_mem(prog.buf, prog.len, "progressive", &b), QV_OK, "%s", qv_last_error());
        cr_assert(a.w == 67 && a.h == 45 && b.w == 67 && b.h == 45);
        cr_assert_arr_eq(a.rgb, b.rgb, (size_t)67 * 45 * 3, "progressive decode differs (subsampling %d)", sub);
        qv_image_free(&a);
        qv_image_free(&b);
        free(base.buf);
        free(prog.buf);
        free(px);
    }
}

/* Pillow: 4-component JPEGs are read as inverted CMYK ("CMYK;I"), then Convert.c cmyk2rgb:
 * nk = 255 - K', out = clip(nk - MULDIV255(C', nk)) with C' = 255 - C, K' = 255 - K. */
static uint8_t pillow_cmyk_channel(uint8_t c_raw, uint8_t k_raw)
{
    int ci = 255 - c_raw, nk = 255 - (255 - k_raw);
    int t = ci * nk + 128;
    int v = nk - (((t >> 8) + t) >> 8);
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

Test(image, cmyk_and_ycck_jpeg_follow_pillow)
{
    const J_COLOR_SPACE spaces[2] = {JCS_CMYK, JCS_YCCK};
    for (int s = 0; s < 2; s++) {
        uint8_t *px = pattern(33, 21, 4);
        mem_jpeg m = encode_jpeg(px, 33, 21, 4, JCS_CMYK, spaces[s], 95, false);
        /* libjpeg's own CMYK output of the file, for the expected values */
        struct jpeg_decompress_struct di;
        struct jpeg_error_mgr je;
        di.err = jpeg_std_error(&je);
        jpeg_create_decompress(&di);
        jpeg_mem_src(&di, m.buf, m.len);
        jpeg_read_header(&di, TRUE);
        di.out_color_space = JCS_CMYK;
        jpeg_start_decompress(&di);
        uint8_t *cmyk = malloc((size_t)33 * 21 * 4);
        while (di.output_scanline < di.output_height) {
            JSAMPROW row = cmyk + (size_t)di.output_scanline * 33 * 4;
            jpeg_read_scanlines(&di, &row, 1);
        }
        jpeg_finish_decompress(&di);
        jpeg_destroy_decompress(&di);
        qv_image img;
        cr_assert_eq(qv_image_decode_mem(m.buf, m.len, "cmyk.jpg", &img), QV_OK, "%s", qv_last_error());
        cr_assert(img.w == 33 && img.h == 21);
        for (size_t p = 0; p < (size_t)33 * 21; p++)
            for (int c = 0; c < 3; c++)
                cr_assert_eq(img.rgb[3 * p + c], pillow_cmyk_channel(cmyk[4 * p + c], cmyk[4 * p + 3]),
                             "space %d pixel %zu channel %d", s, p, c);
        qv_image_free(&img);
        free(cmyk);
        free(m.buf);
        free(px);
    }
}

/* ---- PNG types built here --------------------------------------------------------------------- */

typedef struct membuf {
    uint8_t *p;
    size_t n, cap;
} membuf;

static void png_write_cb(png_structp png, png_bytep data, size_t n)
{
    membuf *b = png_get_io_ptr(png);
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void png_flush_cb(png_structp png) { (void)png; }

/* samples: w*h*channels values (each < 2^depth), packed here. */
static membuf encode_png(int w, int h, int color_type, int depth, bool interlace, const int *samples,
                         const png_color *pal, int npal)
{
    membuf b = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    cr_assert(png && info);
    if (setjmp(png_jmpbuf(png)))
        cr_assert_fail("libpng write failed");
    png_set_write_fn(png, &b, png_write_cb, png_flush_cb);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, color_type,
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (pal) {
        png_set_PLTE(png, info, pal, npal);
        png_set_check_for_invalid_index(png, 0); /* we want indices past PLTE */
    }
    png_write_info(png, info);
    int ch = color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_PALETTE ? 1
             : color_type == PNG_COLOR_TYPE_GRAY_ALPHA                                 ? 2
             : color_type == PNG_COLOR_TYPE_RGB                                        ? 3
                                                                                       : 4;
    size_t rowbytes = ((size_t)w * ch * depth + 7) / 8;
    png_bytep *rows = calloc((size_t)h, sizeof *rows);
    for (int y = 0; y < h; y++) {
        rows[y] = calloc(rowbytes, 1);
        for (int i = 0; i < w * ch; i++) {
            int v = samples[(size_t)y * w * ch + i];
            if (depth == 16) {
                rows[y][2 * i] = (uint8_t)(v >> 8);
                rows[y][2 * i + 1] = (uint8_t)v;
            } else if (depth == 8) {
                rows[y][i] = (uint8_t)v;
            } else {
                int per = 8 / depth, shift = 8 - depth * (i % per + 1);
                rows[y][i / per] |= (uint8_t)(v << shift);
            }
        }
    }
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    for (int y = 0; y < h; y++)
        free(rows[y]);
    free(rows);
    return b;
}

/* Pillow's value of channel c of a decoded sample tuple (after convert('RGB')). */
static int pillow_rgb(int color_type, int depth, const int *s, int c, const png_color *pal, int npal)
{
    switch (color_type) {
    case PNG_COLOR_TYPE_GRAY:
        if (depth == 16)
            return s[0] > 255 ? 255 : s[0];          /* I;16 -> RGB clips */
        return s[0] * (depth == 1 ? 255 : depth == 2 ? 85 : depth == 4 ? 17 : 1);
    case PNG_COLOR_TYPE_GRAY_ALPHA: return depth == 16 ? s[0] >> 8 : s[0];
    case PNG_COLOR_TYPE_RGB:
    case PNG_COLOR_TYPE_RGB_ALPHA: return depth == 16 ? s[c] >> 8 : s[c];
    case PNG_COLOR_TYPE_PALETTE:
        if (s[0] >= npal)
            return 0;                                /* past PLTE: black */
        return c == 0 ? pal[s[0]].red : c == 1 ? pal[s[0]].green : pal[s[0]].blue;
    }
    return -1;
}

Test(image, png_types_follow_pillow_convert_rgb)
{
    static const struct {
        int color_type, depth;
    } kinds[] = {
        {PNG_COLOR_TYPE_GRAY, 1},       {PNG_COLOR_TYPE_GRAY, 2},       {PNG_COLOR_TYPE_GRAY, 4},
        {PNG_COLOR_TYPE_GRAY, 8},       {PNG_COLOR_TYPE_GRAY, 16},      {PNG_COLOR_TYPE_GRAY_ALPHA, 8},
        {PNG_COLOR_TYPE_GRAY_ALPHA, 16}, {PNG_COLOR_TYPE_RGB, 8},       {PNG_COLOR_TYPE_RGB, 16},
        {PNG_COLOR_TYPE_RGB_ALPHA, 8},  {PNG_COLOR_TYPE_RGB_ALPHA, 16}, {PNG_COLOR_TYPE_PALETTE, 1},
        {PNG_COLOR_TYPE_PALETTE, 2},    {PNG_COLOR_TYPE_PALETTE, 4},    {PNG_COLOR_TYPE_PALETTE, 8},
    };
    const png_color pal[3] = {{10, 20, 30}, {200, 100, 50}, {7, 250, 128}};
    const int w = 13, h = 7;
    for (size_t k = 0; k < QV_ARRAY_LEN(kinds); k++)
        for (int il = 0; il < 2; il++) {
            int ct = kinds[k].color_type, d = kinds[k].depth;
            int ch = ct == PNG_COLOR_TYPE_GRAY || ct == PNG_COLOR_TYPE_PALETTE ? 1
                     : ct == PNG_COLOR_TYPE_GRAY_ALPHA                         ? 2
                     : ct == PNG_COLOR_TYPE_RGB                                ? 3
                                                                               : 4;
            int maxv = (1 << d) - 1;
            int *s = malloc(sizeof(int) * w * h * ch);
            for (int i = 0; i < w * h * ch; i++) {
                int v = (i * 2654435761u >> 7) & maxv; /* spread over the range, incl. > 255 for 16 bit */
                if (ct == PNG_COLOR_TYPE_GRAY && d == 16 && i % 5 == 0)
                    v = i % 256;                       /* some small 16-bit values too */
                s[i] = v;
            }
            int npal = d == 1 ? 1 : 3; /* so that some indices lie past PLTE */
            membuf b = encode_png(w, h, ct, d, il, s, ct == PNG_COLOR_TYPE_PALETTE ? pal : NULL, npal);
            char what[64];
            snprintf(what, sizeof what, "png type %d depth %d%s", ct, d, il ? " interlaced" : "");
            qv_image img;
            cr_assert_eq(qv_image_decode_mem(b.p, b.n, what, &img), QV_OK, "%s", qv_last_error());
            cr_assert(img.w == w && img.h == h, "%s size", what);
            for (int p = 0; p < w * h; p++)
                for (int c = 0; c < 3; c++)
                    cr_assert_eq(img.rgb[3 * p + c], pillow_rgb(ct, d, s + (size_t)p * ch, c, pal, npal),
                                 "%s: pixel %d channel %d", what, p, c);
            qv_image_free(&img);
            free(b.p);
            free(s);
        }
}

/* ---- bad input -------------------------------------------------------------------------------- */

Test(image, truncated_jpeg_fails_cleanly)
{
    size_t len;
    uint8_t *buf = read_fixture_bytes("calib/images/grace_hopper.jpg", &len);
    const size_t cuts[] = {0, 1, 2, 3, 4, 10, 20, 100, 300, 600, len / 4, len / 2, len - 400, len - 100};
    for (size_t i = 0; i < QV_ARRAY_LEN(cuts); i++) {
        char what[64];
        snprintf(what, sizeof what, "grace_hopper.jpg[:%zu]", cuts[i]);
        expect_decode_error(buf, cuts[i], what, NULL);
    }
    /* The last scanlines are lost: a warning from libjpeg, an error here. */
    expect_decode_error(buf, len / 2, "half.jpg", "corrupt JPEG data");
    free(buf);
}

Test(image, garbage_fails_cleanly)
{
    uint8_t junk[4096];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof junk; i++) {
        x = x * 1664525u + 1013904223u;
        junk[i] = (uint8_t)(x >> 24);
    }
    expect_decode_error(junk, sizeof junk, "junk.bin", "not a JPEG or PNG");
    expect_decode_error(junk, 0, "empty.jpg", "empty");
    junk[0] = 0xFF, junk[1] = 0xD8, junk[2] = 0xFF;
    expect_decode_error(junk, sizeof junk, "junk.jpg", "JPEG");
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(junk, sig, 8);
    expect_decode_error(junk, sizeof junk, "junk.png", "PNG");
    expect_decode_error(sig, 8, "signature-only.png", "PNG");
}

static uint32_t crc32_of(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return c ^ 0xFFFFFFFFu;
}

static size_t put_chunk(uint8_t *out, const char *type, const uint8_t *data, uint32_t n)
{
    out[0] = (uint8_t)(n >> 24), out[1] = (uint8_t)(n >> 16), out[2] = (uint8_t)(n >> 8), out[3] = (uint8_t)n;
    memcpy(out + 4, type, 4);
    if (n)
        memcpy(out + 8, data, n);
    uint32_t c = crc32_of(out + 4, 4 + n);
    out[8 + n] = (uint8_t)(c >> 24), out[9 + n] = (uint8_t)(c >> 16), out[10 + n] = (uint8_t)(c >> 8),
    out[11 + n] = (uint8_t)c;
    return 12 + n;
}

/* signature + IHDR(w, h, 8-bit RGB) + a small IDAT + IEND, all CRCs valid. */
static size_t png_header_only(uint8_t *out, uint32_t w, uint32_t h)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(out, sig, 8);
    uint8_t ihdr[13] = {(uint8_t)(w >> 24), (uint8_t)(w >> 16), (uint8_t)(w >> 8), (uint8_t)w,
                        (uint8_t)(h >> 24), (uint8_t)(h >> 16), (uint8_t)(h >> 8), (uint8_t)h,
                        8, 2, 0, 0, 0};
    static const uint8_t idat[] = {0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01};
    size_t n = 8;
    n += put_chunk(out + n, "IHDR", ihdr, 13);
    n += put_chunk(out + n, "IDAT", idat, sizeof idat);
    n += put_chunk(out + n, "IEND", NULL, 0);
    return n;
}

Test(image, png_bad_crc_fails)
{
    int s[4 * 3 * 3];
    for (int i = 0; i < 36; i++)
        s[i] = i * 7;
    membuf b = encode_png(4, 3, PNG_COLOR_TYPE_RGB, 8, false, s, NULL, 0);
    qv_image img;
    cr_assert_eq(qv_image_decode_mem(b.p, b.n, "ok.png", &img), QV_OK, "%s", qv_last_error());
    qv_image_free(&img);
    b.p[8 + 8 + 13] ^= 0x01; /* IHDR's CRC */
    expect_decode_error(b.p, b.n, "bad-ihdr-crc.png", "CRC");
    b.p[8 + 8 + 13] ^= 0x01;
    /* IDAT's CRC: the 4 bytes before the 12-byte IEND chunk */
    b.p[b.n - 12 - 2] ^= 0x40;
    expect_decode_error(b.p, b.n, "bad-idat-crc.png", "CRC");
    free(b.p);
}

Test(image, zero_and_huge_sizes_refused_before_allocation)
{
    uint8_t buf[256];
    size_t n = png_header_only(buf, 0, 0);
    expect_decode_error(buf, n, "zero.png", NULL);
    n = png_header_only(buf, 100000, 100000);
    expect_decode_error(buf, n, "huge.png", "exceeds the limit");
    n = png_header_only(buf, 20000, 10000); /* 2e8 > 178,956,970 */
    expect_decode_error(buf, n, "large.png", "exceeds the limit");

    /* JPEG: patch the SOF height/width of a small file. */
    uint8_t *px = pattern(16, 16, 3);
    mem_jpeg m = encode_jpeg(px, 16, 16, 3, JCS_RGB, JCS_YCbCr, 90, true);
    size_t sof = 0;
    for (size_t i = 2; i + 9 < m.len; i++)
        if (m.buf[i] == 0xFF && m.buf[i + 1] == 0xC0) {
            sof = i;
            break;
        }
    cr_assert(sof, "no SOF0 marker");
    m.buf[sof + 5] = m.buf[sof + 6] = 0; /* height 0 */
    expect_decode_error(m.buf, m.len, "zero.jpg", NULL);
    m.buf[sof + 5] = m.buf[sof + 7] = 0x75; /* 30000 x 30000 (JPEG's own limit is 65500) */
    m.buf[sof + 6] = m.buf[sof + 8] = 0x30;
    expect_decode_error(m.buf, m.len, "huge.jpg", "exceeds the limit");
    free(m.buf);
    free(px);
}

/* Deterministic byte mutations of valid files: each decode either succeeds with a sane image
 * or fails with one line; nothing may crash (run under QVLM_SANITIZE for the full check). */
Test(image, mutated_files_never_crash, .timeout = 120)
{
    size_t jlen;
    uint8_t *jpg = read_fixture_bytes("calib/images/synth_gray_301x451.jpg", &jlen);
    int s[24 * 17 * 3];
    for (int i = 0; i < 24 * 17 * 3; i++)
        s[i] = (i * 37) & 255;
    membuf png = encode_png(24, 17, PNG_COLOR_TYPE_RGB, 8, true, s, NULL, 0);
    const uint8_t *src[2] = {jpg, png.p};
    size_t lens[2] = {jlen, png.n};
    uint8_t *work = malloc(jlen > png.n ? jlen : png.n);
    uint32_t x = 99;
    int ok = 0, failed = 0;
    for (int f = 0; f < 2; f++)
        for (int it = 0; it < 150; it++) {
            memcpy(work, src[f], lens[f]);
            int flips = 1 + it % 8;
            for (int k = 0; k < flips; k++) {
                x = x * 1664525u + 1013904223u;
                size_t at = (x >> 8) % lens[f];
                x = x * 1664525u + 1013904223u;
                work[at] = (uint8_t)(x >> 24);
            }
            size_t len = lens[f];
            if (it % 5 == 4)
                len = (x >> 4) % lens[f];
            qv_image img;
            if (qv_image_decode_mem(work, len, "mutant", &img) == QV_OK) {
                cr_assert(img.w > 0 && img.h > 0 && img.rgb);
                qv_image_free(&img);
                ok++;
            } else {
                cr_assert(strchr(qv_last_error(), '\n') == NULL && strncmp(qv_last_error(), "mutant: ", 8) == 0,
                          "bad error line: %s", qv_last_error());
                failed++;
            }
        }
    cr_assert_gt(failed, 0);
    free(work);
    free(jpg);
    free(png.p);
}

/* ---- resize ------------------------------------------------------------------------------------ */

Test(image, resize_same_size_is_a_copy)
{
    qv_image img = load_fixture("rocket"), out;
    cr_assert_eq(qv_image_resize_bicubic(&img, img.w, img.h, &out), QV_OK);
    cr_assert_arr_eq(out.rgb, img.rgb, (size_t)img.w * img.h * 3);
    qv_image_free(&out);
    qv_image_free(&img);
}

Test(image, resize_independent_of_thread_count)
{
    qv_image img = load_fixture("grace_hopper");
    const int sizes[][2] = {{448, 448}, {1344, 896}, {512, 300}, {200, 600}, {37, 1201}};
    for (size_t i = 0; i < QV_ARRAY_LEN(sizes); i++) {
        qv_image a, b;
        omp_set_num_threads(1);
        cr_assert_eq(qv_image_resize_bicubic(&img, sizes[i][0], sizes[i][1], &a), QV_OK, "%s", qv_last_error());
        omp_set_num_threads(3);
        cr_assert_eq(qv_image_resize_bicubic(&img, sizes[i][0], sizes[i][1], &b), QV_OK, "%s", qv_last_error());
        cr_assert_arr_eq(a.rgb, b.rgb, (size_t)a.w * a.h * 3, "size %dx%d", sizes[i][0], sizes[i][1]);
        qv_image_free(&a);
        qv_image_free(&b);
    }
    qv_image_free(&img);
}

Test(image, resize_of_constant_image_is_constant)
{
    /* The fixed-point taps of every output sum to 1 (+- rounding), so a flat image stays flat. */
    qv_image img;
    cr_assert_eq(qv_image_new(&img, 101, 57, "flat"), QV_OK);
    for (size_t i = 0; i < (size_t)101 * 57; i++)
        img.rgb[3 * i] = 0, img.rgb[3 * i + 1] = 128, img.rgb[3 * i + 2] = 255;
    const int sizes[][2] = {{448, 448}, {13, 7}, {101, 300}, {500, 57}};
    for (size_t i = 0; i < QV_ARRAY_LEN(sizes); i++) {
        qv_image out;
        cr_assert_eq(qv_image_resize_bicubic(&img, sizes[i][0], sizes[i][1], &out), QV_OK);
        for (size_t p = 0; p < (size_t)out.w * out.h; p++)
            cr_assert(out.rgb[3 * p] == 0 && out.rgb[3 * p + 1] == 128 && out.rgb[3 * p + 2] == 255,
                      "size %dx%d pixel %zu", sizes[i][0], sizes[i][1], p);
        qv_image_free(&out);
    }
    qv_image_free(&img);
}

Test(image, resize_rejects_bad_sizes)
{
    qv_image img = load_fixture("rocket"), out;
    cr_assert_neq(qv_image_resize_bicubic(&img, 0, 10, &out), QV_OK);
    cr_assert_neq(qv_image_resize_bicubic(&img, 10, -1, &out), QV_OK);
    cr_assert_neq(qv_image_resize_bicubic(&img, 20000, 20000, &out), QV_OK);
    cr_assert_null(out.rgb);
    qv_image_free(&img);
}
