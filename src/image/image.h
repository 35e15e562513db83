/* image.h — images as 8-bit RGB, decoded and resized exactly as Pillow does, and the image
 * preprocessing of every supported family (ALGORITHMS.md §7.3, §8.1, §8.2, §8.4; MODELS.md
 * §1.3, §2.4; fixtures README §4, §13.3, §15.2).
 *
 * Reference behaviour: `PIL.Image.open(p).convert('RGB')` followed by the family's processor.
 *   decode_jpeg.c / decode_png.c  libjpeg-turbo and libpng at Pillow's settings
 *   resample.c                    Pillow's ImagingResample (BICUBIC, 8 bits per channel)
 *   image.c                       buffers, crop, expand2square, normalisation
 *   preprocess_internvl.c         InternVL2/3 dynamic_preprocess + ImageNet normalisation
 *   preprocess_qwen2vl.c          Qwen2-VL smart_resize + patchify (slow/PIL processor, 4.45)
 *   preprocess_llava.c            LLaVA-OneVision: MBQ's "pad" path, and the native anyres path
 *   preprocess.c                  picks the family's preprocessing from a model config
 *
 * Every function reports failures as one line naming `what` (the file or object). */
#ifndef QV_IMAGE_H
#define QV_IMAGE_H

#include "../core/common.h"
#include "../model/config.h"

struct json_object; /* json-c (io/json.h) */

/* Pillow's decompression-bomb error threshold: 2 x Image.MAX_IMAGE_PIXELS = 2 x 89,478,485.
 * Larger images are refused from their header, before anything is allocated. */
#define QV_IMAGE_MAX_PIXELS 178956970ll
/* Encoded files larger than this are refused before they are read. */
#define QV_IMAGE_MAX_FILE ((size_t)1 << 30)

typedef struct qv_image {
    int w, h;
    uint8_t *rgb; /* [h, w, 3] row-major RGB, owned: release with qv_image_free */
} qv_image;

typedef enum qv_image_format { QV_IMAGE_FORMAT_UNKNOWN = 0, QV_IMAGE_FORMAT_JPEG, QV_IMAGE_FORMAT_PNG } qv_image_format;

/* Format from the leading magic bytes (never from a file name). */
qv_image_format qv_image_sniff(const uint8_t *buf, size_t len);

/* Decodes a JPEG or PNG held in memory into RGB, as Pillow's open(...).convert('RGB'):
 * JPEG: libjpeg-turbo, ISLOW IDCT, fancy upsampling, grayscale replicated to R=G=B, 4-component
 * files read as Adobe-inverted CMYK then converted with Pillow's cmyk2rgb; every libjpeg
 * warning (corrupt data, premature end) is an error.
 * PNG: libpng; palette expanded through PLTE (missing entries black), gray 1/2/4-bit scaled,
 * 16-bit gray clipped to 255 (Pillow's I;16 -> RGB), other 16-bit channels keep their high
 * byte, alpha dropped, tRNS ignored; CRC errors are errors.
 * EXIF orientation is not applied (Pillow's open() does not apply it either). Zero-sized images
 * and images over QV_IMAGE_MAX_PIXELS are refused. On failure *img is empty. Safe on arbitrary
 * bytes (fuzzing entry point). */
qv_status qv_image_decode_mem(const uint8_t *buf, size_t len, const char *what, qv_image *img);
/* Reads a file and decodes it (errors name the path). */
qv_status qv_image_load(const char *path, qv_image *img);
/* Allocates an uninitialised w x h image (at most QV_IMAGE_MAX_PIXELS pixels). */
qv_status qv_image_new(qv_image *img, int w, int h, const char *what);
/* Releases the pixels and zeroes *img. Accepts NULL and empty images. */
void qv_image_free(qv_image *img);

/* Pillow `im.resize((w, h), Image.BICUBIC)` with the default box: exact port of
 * ImagingResample for 8-bit RGB (separable, horizontal pass first, a = -0.5, support scaled by
 * the downscale factor, 22-bit fixed-point coefficients, clipping). Same size gives a copy. */
qv_status qv_image_resize_bicubic(const qv_image *src, int w, int h, qv_image *dst);
/* `im.crop((x, y, x + w, y + h))`; the box must lie inside the image. */
qv_status qv_image_crop(const qv_image *src, int x, int y, int w, int h, qv_image *dst);
/* LLaVA's expand2square: the image pasted on a fill-coloured square of side max(w, h) at
 * ((side - w) / 2, (side - h) / 2); a square image is copied unchanged. */
qv_status qv_image_expand_square(const qv_image *src, const uint8_t fill[3], qv_image *dst);

/* How uint8 becomes float before normalisation. Both forms give the same 256 values; each is
 * kept literal so the code reads like its reference. */
typedef enum qv_rescale {
    QV_RESCALE_DIV_F32 = 0, /* float32(u8) / 255.0f (torchvision ToTensor) */
    QV_RESCALE_MUL_F64      /* float32(float64(u8) * (1/255)) (transformers rescale) */
} qv_rescale;

/* chw[c][y][x] = (x(u8) - float32(mean[c])) / float32(std[c]) in float32, HWC -> CHW. */
void qv_image_normalize(float *chw, const uint8_t *hwc, int w, int h, qv_rescale r, const double mean[3],
                        const double std[3]);

/* ---- preprocessing output ------------------------------------------------------------------- */

typedef struct qv_pixels {
    int n_tiles, tile_w, tile_h;
    uint8_t *tiles_u8;   /* [n_tiles, tile_h, tile_w, 3]: what the processor normalises */
    int ndim;
    int64_t shape[4];    /* of values */
    float *values;       /* InternVL, LLaVA: [n_tiles, 3, tile_h, tile_w];
                            Qwen2-VL: [gh * gw, 3 * T * p * p] */
    int grid_cols, grid_rows; /* InternVL: tiling grid (thumbnail not counted); otherwise 1, 1 */
    bool thumbnail;           /* InternVL: a thumbnail tile was appended */
    int64_t grid_thw[3];      /* Qwen2-VL: (1, gh, gw); zeros otherwise */
} qv_pixels;

/* Releases both buffers and zeroes *p. Accepts NULL. */
void qv_pixels_free(qv_pixels *p);

/* ---- InternVL2 / InternVL3 (ALGORITHMS.md §8.1) --------------------------------------------- */

typedef struct qv_internvl_prep {
    int image_size;         /* tile side (force_image_size, 448) */
    int min_num, max_num;   /* tiles per image (MBQ calibration: 1, 1) */
    bool use_thumbnail;
    double mean[3], std[3]; /* ImageNet */
} qv_internvl_prep;

/* 448, 1..12 tiles, thumbnail, ImageNet mean/std. */
void qv_internvl_prep_default(qv_internvl_prep *p);
/* From an InternVLChatModel config (force_image_size, min/max_dynamic_patch, use_thumbnail). */
void qv_internvl_prep_from_config(qv_internvl_prep *p, const qv_model_config *cfg);
/* dynamic_preprocess's grid for a w x h image: cols x rows (find_closest_aspect_ratio with its
 * tie rule). */
qv_status qv_internvl_grid(int w, int h, const qv_internvl_prep *p, int *cols, int *rows);
qv_status qv_preprocess_internvl(const qv_image *img, const qv_internvl_prep *p, const char *what, qv_pixels *out);

/* ---- Qwen2-VL (ALGORITHMS.md §8.4, MODELS.md §1.3) ------------------------------------------ */

typedef struct qv_qwen2vl_prep {
    int64_t min_pixels, max_pixels;
    int patch_size, merge_size, temporal_patch_size;
    double mean[3], std[3]; /* CLIP */
} qv_qwen2vl_prep;

/* The image-processor class defaults (max_pixels 1003520, which the hub files override). */
void qv_qwen2vl_prep_default(qv_qwen2vl_prep *p);
/* Reads <model_dir>/preprocessor_config.json (min_pixels/max_pixels or size.shortest_edge/
 * longest_edge, patch_size, merge_size, temporal_patch_size, image_mean, image_std); the class
 * defaults stand for absent keys or an absent file. */
qv_status qv_qwen2vl_prep_load(qv_qwen2vl_prep *p, const char *model_dir);
/* The same from a parsed preprocessor_config.json (`path` names it in errors). */
qv_status qv_qwen2vl_prep_from_json(qv_qwen2vl_prep *p, const struct json_object *root, const char *path);
/* smart_resize (transformers 5 form, Python float arithmetic, round half to even): the target
 * height and width. Refuses min(h, w) < factor and aspect ratios above 200. */
qv_status qv_qwen2vl_smart_resize(int h, int w, const qv_qwen2vl_prep *p, const char *what, int *h_out, int *w_out);
qv_status qv_preprocess_qwen2vl(const qv_image *img, const qv_qwen2vl_prep *p, const char *what, qv_pixels *out);

/* ---- LLaVA-OneVision (ALGORITHMS.md §8.2, MODELS.md §2.4) ------------------------------------ */

#define QV_LLAVA_MAX_PINPOINTS 256

typedef struct qv_llava_prep {
    int image_size;         /* 384 (SigLIP processor size and crop size) */
    double mean[3], std[3]; /* 0.5 */
    int n_pinpoints;        /* anyres candidate resolutions, config order; 0 = none known */
    int pinpoints[QV_LLAVA_MAX_PINPOINTS][2]; /* (width, height) */
} qv_llava_prep;

/* 384, mean/std 0.5, no pinpoints. */
void qv_llava_prep_default(qv_llava_prep *p);
/* Defaults plus image_grid_pinpoints from an lmms-lab config.json (a list of [w, h] pairs, or
 * the "(1x1),...,(6x6)" range string, scaled by the image size); absent key: no pinpoints. */
qv_status qv_llava_prep_load(qv_llava_prep *p, const char *config_path);
/* The same from a parsed config.json. */
qv_status qv_llava_prep_from_json(qv_llava_prep *p, const struct json_object *root, const char *config_path);
/* MBQ's path: expand2square on (int(255 * mean)) then the SigLIP processor: one tile
 * [1, 3, S, S]. */
qv_status qv_preprocess_llava_pad(const qv_image *img, const qv_llava_prep *p, const char *what, qv_pixels *out);
/* LLaVA-NeXT's select_best_resolution over the pinpoints: (width, height). */
qv_status qv_llava_best_resolution(int w, int h, const qv_llava_prep *p, int *best_w, int *best_h);
/* The native anyres path (process_anyres_image; lmms-eval and LLaVA inference, not MBQ):
 * base image (resized to S x S) then the row-major S x S crops of the image resized into the
 * best pinpoint and centred on black: [1 + rows*cols, 3, S, S]; grid_cols/grid_rows give the
 * crop grid. */
qv_status qv_preprocess_llava_anyres(const qv_image *img, const qv_llava_prep *p, const char *what, qv_pixels *out);

/* ---- per model ------------------------------------------------------------------------------ */

typedef struct qv_preprocessor {
    qv_family_id family;
    bool llava_anyres; /* LLaVA-OneVision: native anyres path instead of MBQ's pad path */
    int max_tiles;     /* InternVL: tiles per image instead of the config's max_dynamic_patch (0 = the config's) */
    qv_internvl_prep internvl;
    qv_qwen2vl_prep qwen2vl;
    qv_llava_prep llava;
} qv_preprocessor;

/* The preprocessing of a loaded model config (model_dir: the folder holding it, for
 * preprocessor_config.json): the family's (src/family/family.h prep_init / prep_run).
 * Text-only families are refused. */
qv_status qv_preprocessor_init(qv_preprocessor *pp, const qv_model_config *cfg, const char *model_dir);
qv_status qv_preprocess_image(const qv_preprocessor *pp, const qv_image *img, const char *what, qv_pixels *out);

#endif
