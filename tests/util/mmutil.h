/* mmutil.h — test helpers for the vision tests: the calibration images turned into each
 * family's pixels through src/image (bit-exact with the reference per the image tests), batch
 * files assembled from fixture tensors, and model folders with renamed / dropped tensors. */
#ifndef QV_MMUTIL_H
#define QV_MMUTIL_H

#include <stdint.h>

#include "io/safetensors.h"
#include "model/config.h"

/* The calibration batches' image order (fixtures README §5: calib-3, calib-2, calib-1, calib-0). */
extern const char *const qt_calib_images[4];

/* InternVL tiles of the first n calibration images, one 448×448 tile each (MBQ's max_num 1):
 * U8 [n, 448, 448, 3] (caller frees). */
uint8_t *qt_internvl_tiles(int n);
/* The same as normalised pixel_values F32 [n, 3, 448, 448]. */
float *qt_internvl_pixels(int n);
/* Qwen2-VL pixel rows of the first n images with the model's preprocessor_config.json:
 * F32 [rows, 1176]; grid [n, 3] filled (caller frees). */
float *qt_qwen2vl_pixels(const char *model_rel, int n, int64_t *grid, int64_t *rows);
/* LLaVA-OV (MBQ's pad path) pixel_values_u8 U8 [n, 3, 384, 384] CHW. */
uint8_t *qt_llava_pixels_u8(int n);

/* Writes dir/name: the tensors `keys` of fixture file src_rel (rows [0, rows) along dim 0 when
 * rows > 0) plus the extra items. Returns the path (caller frees). */
char *qt_write_batch(const char *dir, const char *name, const char *src_rel, const char *const *keys, int n_keys,
                     int64_t rows, const qv_st_item *extra, int n_extra);

/* A copy of a fixture model folder (every file but the weights copied, sub-folders too) whose
 * single model.safetensors holds the original tensors passed through xform(): it fills up to
 * max_out items for tensor e (data may point into the original map; names malloc'd, freed by the
 * helper) and returns how many (0 drops the tensor). Returns the folder (caller frees). */
typedef int (*qt_xform_fn)(const qv_st_entry *e, const uint8_t *data, qv_st_item *out, int max_out, void *ctx);
char *qt_model_xform(const char *model_rel, qt_xform_fn xform, void *ctx);

/* Opens a safetensors file by path (aborts the test on failure). */
qv_st_file *qt_open_st_path(const char *path);

/* Opens a fixture model's config and checkpoint (aborts the test on failure). */
void qt_open_model(const char *path, qv_model_config *cfg, qv_checkpoint **ck);

#endif
