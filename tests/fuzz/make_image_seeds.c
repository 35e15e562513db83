/* make_image_seeds.c — writes tests/fuzz/seeds/image/: one tiny JPEG or PNG per decoder path
 * (baseline RGB and grayscale, progressive, 4:2:0 with restart markers, CMYK; PNG RGB, gray at
 * 1/4/8/16 bits, palette, gray+alpha, 16-bit RGBA, Adam7-interlaced). Not part of the build:
 *   cc -O1 -o /tmp/mis tests/fuzz/make_image_seeds.c -ljpeg -lpng && /tmp/mis tests/fuzz/seeds/image */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

static const char *g_dir;

static FILE *open_out(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    return f;
}

static unsigned char px(int x, int y, int c) { return (unsigned char)((x * 37 + y * 91 + c * 53) & 0xff); }

static void jpeg(const char *name, int w, int h, int comps, J_COLOR_SPACE cs, int progressive, int restart, int q,
                 int sub)
{
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr err;
    ci.err = jpeg_std_error(&err);
    jpeg_create_compress(&ci);
    FILE *f = open_out(name);
    jpeg_stdio_dest(&ci, f);
    ci.image_width = (JDIMENSION)w;
    ci.image_height = (JDIMENSION)h;
    ci.input_components = comps;
    ci.in_color_space = cs;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, q, TRUE);
    if (comps == 3 && !sub)
        for (int c = 0; c < 3; c++)
            ci.comp_info[c].h_samp_factor = ci.comp_info[c].v_samp_factor = 1;
    if (progressive)
        jpeg_simple_progression(&ci);
    ci.restart_in_rows = restart;
    jpeg_start_compress(&ci, TRUE);
    unsigned char *row = malloc((size_t)w * comps);
    while (ci.next_scanline < ci.image_height) {
        for (int x = 0; x < w; x++)
            for (int c = 0; c < comps; c++)
                row[x * comps + c] = px(x, (int)ci.next_scanline, c);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    free(row);
    fclose(f);
}

static void png(const char *name, int w, int h, int type, int depth, int interlace)
{
    FILE *f = open_out(name);
    png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(p);
    png_init_io(p, f);
    png_set_IHDR(p, info, (png_uint_32)w, (png_uint_32)h, depth, type,
                 interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (type == PNG_COLOR_TYPE_PALETTE) {
        png_color pal[5] = {{0, 0, 0}, {255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {9, 99, 199}};
        png_set_PLTE(p, info, pal, 5);
        png_byte trns[2] = {0, 128};
        png_set_tRNS(p, info, trns, 2, NULL);
    }
    png_write_info(p, info);
    int channels = type == PNG_COLOR_TYPE_RGB ? 3 : type == PNG_COLOR_TYPE_RGB_ALPHA ? 4
                   : type == PNG_COLOR_TYPE_GRAY_ALPHA ? 2 : 1;
    size_t rowbytes = ((size_t)w * channels * depth + 7) / 8;
    png_bytep *rows = malloc((size_t)h * sizeof *rows);
    for (int y = 0; y < h; y++) {
        rows[y] = calloc(1, rowbytes);
        for (size_t b = 0; b < rowbytes; b++)
            rows[y][b] = (png_byte)(type != PNG_COLOR_TYPE_PALETTE ? px((int)b, y, 0)
                                    : depth == 8                     ? (b + y) % 5
                                                                     : (((b + y) % 5) << 4) | ((b * 3 + y) % 5));
    }
    png_write_image(p, rows);
    png_write_end(p, info);
    png_destroy_write_struct(&p, &info);
    for (int y = 0; y < h; y++)
        free(rows[y]);
    free(rows);
    fclose(f);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 2;
    }
    g_dir = argv[1];
    jpeg("rgb_444_17x13.jpg", 17, 13, 3, JCS_RGB, 0, 0, 75, 0);
    jpeg("rgb_420_restart_33x20.jpg", 33, 20, 3, JCS_RGB, 0, 1, 90, 1);
    jpeg("rgb_progressive_16x24.jpg", 16, 24, 3, JCS_RGB, 1, 0, 60, 1);
    jpeg("gray_9x7.jpg", 9, 7, 1, JCS_GRAYSCALE, 0, 0, 80, 0);
    jpeg("cmyk_8x8.jpg", 8, 8, 4, JCS_CMYK, 0, 0, 70, 0);
    png("rgb8_7x5.png", 7, 5, PNG_COLOR_TYPE_RGB, 8, 0);
    png("gray1_13x3.png", 13, 3, PNG_COLOR_TYPE_GRAY, 1, 0);
    png("gray4_5x4.png", 5, 4, PNG_COLOR_TYPE_GRAY, 4, 0);
    png("gray16_4x4.png", 4, 4, PNG_COLOR_TYPE_GRAY, 16, 0);
    png("palette4_trns_6x6.png", 6, 6, PNG_COLOR_TYPE_PALETTE, 4, 0);
    png("palette8_interlaced_9x9.png", 9, 9, PNG_COLOR_TYPE_PALETTE, 8, 1);
    png("gray_alpha_3x8.png", 3, 8, PNG_COLOR_TYPE_GRAY_ALPHA, 8, 0);
    png("rgba16_interlaced_10x6.png", 10, 6, PNG_COLOR_TYPE_RGB_ALPHA, 16, 1);
    return 0;
}
