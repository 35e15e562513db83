/* mmutil.c — see mmutil.h. */
#include "mmutil.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/fsutil.h"
#include "image/image.h"
#include "testutil.h"

const char *const qt_calib_images[4] = {"synth_gray_301x451", "rocket", "synth_500x333", "grace_hopper"};

static qv_image load_image(const char *stem)
{
    char rel[256];
    snprintf(rel, sizeof rel, "calib/images/%s.jpg", stem);
    qv_image img;
    cr_assert_eq(qv_image_load(qt_fixture(rel), &img), QV_OK, "%s", qv_last_error());
    return img;
}

static void internvl_px(int i, qv_pixels *px)
{
    qv_internvl_prep p;
    qv_internvl_prep_default(&p);
    p.min_num = p.max_num = 1; /* MBQ's calibration: one tile per image */
    qv_image img = load_image(qt_calib_images[i]);
    cr_assert_eq(qv_preprocess_internvl(&img, &p, qt_calib_images[i], px), QV_OK, "%s", qv_last_error());
    cr_assert(px->n_tiles == 1 && px->tile_w == 448 && px->tile_h == 448);
    qv_image_free(&img);
}

uint8_t *qt_internvl_tiles(int n)
{
    const size_t per = (size_t)448 * 448 * 3;
    uint8_t *out = malloc(per * (size_t)n);
    for (int i = 0; i < n; i++) {
        qv_pixels px;
        internvl_px(i, &px);
        memcpy(out + per * (size_t)i, px.tiles_u8, per);
        qv_pixels_free(&px);
    }
    return out;
}

float *qt_internvl_pixels(int n)
{
    const size_t per = (size_t)448 * 448 * 3;
    float *out = malloc(per * (size_t)n * sizeof *out);
    for (int i = 0; i < n; i++) {
        qv_pixels px;
        internvl_px(i, &px);
        memcpy(out + per * (size_t)i, px.values, per * sizeof *out);
        qv_pixels_free(&px);
    }
    return out;
}

float *qt_qwen2vl_pixels(const char *model_rel, int n, int64_t *grid, int64_t *rows)
{
    qv_qwen2vl_prep p;
    cr_assert_eq(qv_qwen2vl_prep_load(&p, qt_fixture(model_rel)), QV_OK, "%s", qv_last_error());
    float *out = NULL;
    int64_t r = 0;
    for (int i = 0; i < n; i++) {
        qv_image img = load_image(qt_calib_images[i]);
        qv_pixels px;
        cr_assert_eq(qv_preprocess_qwen2vl(&img, &p, qt_calib_images[i], &px), QV_OK, "%s", qv_last_error());
        cr_assert(px.ndim == 2 && px.shape[1] == 1176);
        out = realloc(out, (size_t)(r + px.shape[0]) * 1176 * sizeof *out);
        memcpy(out + r * 1176, px.values, (size_t)(px.shape[0] * 1176) * sizeof *out);
        memcpy(grid + 3 * i, px.grid_thw, 3 * sizeof *grid);
        r += px.shape[0];
        qv_pixels_free(&px);
        qv_image_free(&img);
    }
    *rows = r;
    return out;
}

uint8_t *qt_llava_pixels_u8(int n)
{
    const size_t hw = (size_t)384 * 384;
    uint8_t *out = malloc(3 * hw * (size_t)n);
    qv_llava_prep p;
    qv_llava_prep_default(&p);
    for (int i = 0; i < n; i++) {
        qv_image img = load_image(qt_calib_images[i]);
        qv_pixels px;
        cr_assert_eq(qv_preprocess_llava_pad(&img, &p, qt_calib_images[i], &px), QV_OK, "%s", qv_last_error());
        for (size_t q = 0; q < hw; q++)
            for (int c = 0; c < 3; c++)
                out[((size_t)i * 3 + (size_t)c) * hw + q] = px.tiles_u8[3 * q + (size_t)c];
        qv_pixels_free(&px);
        qv_image_free(&img);
    }
    return out;
}

char *qt_write_batch(const char *dir, const char *name, const char *src_rel, const char *const *keys, int n_keys,
                     int64_t rows, const qv_st_item *extra, int n_extra)
{
    qv_st_file *f = src_rel ? qt_open_st(src_rel) : NULL;
    qv_st_item *items = calloc((size_t)(n_keys + n_extra + 1), sizeof *items);
    int n = 0;
    for (int i = 0; i < n_keys; i++) {
        qv_tensor t;
        cr_assert_eq(qv_st_get(f, keys[i], &t), QV_OK, "%s", qv_last_error());
        items[n] = (qv_st_item){keys[i], t.dtype, t.ndim, {0}, t.data};
        memcpy(items[n].shape, t.shape, sizeof t.shape);
        if (rows > 0 && rows < t.shape[0])
            items[n].shape[0] = rows;
        n++;
    }
    for (int i = 0; i < n_extra; i++)
        items[n++] = extra[i];
    char *path = qv_path_join(dir, name);
    cr_assert_eq(qv_st_write_file(path, items, (size_t)n, NULL, 0), QV_OK, "%s", qv_last_error());
    free(items);
    qv_st_close(f);
    return path;
}

static void copy_tree(const char *src, const char *dst)
{
    DIR *d = opendir(src);
    cr_assert_not_null(d, "cannot list %s", src);
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.' || strstr(e->d_name, ".safetensors"))
            continue;
        char *s = qv_path_join(src, e->d_name), *t = qv_path_join(dst, e->d_name);
        if (qv_is_dir(s)) {
            cr_assert_eq(qv_mkdirs(t), QV_OK);
            copy_tree(s, t);
        } else {
            char *data = NULL;
            size_t len;
            cr_assert_eq(qv_read_file(s, (size_t)1 << 28, &data, &len), QV_OK, "%s", qv_last_error());
            cr_assert_eq(qv_write_file_atomic(t, data, len), QV_OK, "%s", qv_last_error());
            qv_free(data);
        }
        qv_free(s);
        qv_free(t);
    }
    closedir(d);
}

char *qt_model_xform(const char *model_rel, qt_xform_fn xform, void *ctx)
{
    char *dir = qt_tmpdir(), src[4096];
    snprintf(src, sizeof src, "%s", qt_fixture(model_rel));
    copy_tree(src, dir);
    qv_checkpoint *ck = NULL;
    cr_assert_eq(qv_checkpoint_open(src, &ck), QV_OK, "%s", qv_last_error());
    const size_t n = qv_checkpoint_n_tensors(ck);
    qv_st_item *items = calloc(4 * n + 1, sizeof *items);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const qv_st_file *sh;
        const qv_st_entry *e = qv_checkpoint_entry(ck, i, &sh);
        qv_tensor t;
        qv_st_view(sh, e, &t);
        k += (size_t)xform(e, t.data, items + k, 4, ctx);
    }
    char *path = qv_path_join(dir, "model.safetensors");
    cr_assert_eq(qv_st_write_file(path, items, k, NULL, 0), QV_OK, "%s", qv_last_error());
    for (size_t i = 0; i < k; i++)
        free((char *)items[i].name);
    free(items);
    qv_free(path);
    qv_checkpoint_close(ck);
    return dir;
}

void qt_open_model(const char *path, qv_model_config *cfg, qv_checkpoint **ck)
{
    cr_assert_eq(qv_model_config_load(path, cfg), QV_OK, "%s", qv_last_error());
    cr_assert_eq(qv_checkpoint_open(path, ck), QV_OK, "%s", qv_last_error());
}

qv_st_file *qt_open_st_path(const char *path)
{
    qv_st_file *f = NULL;
    cr_assert_eq(qv_st_open(path, &f), QV_OK, "%s", qv_last_error());
    return f;
}
