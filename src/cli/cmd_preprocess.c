/* cmd_preprocess.c — `qvlm preprocess MODEL IMAGE -o OUT.safetensors [--max-num N]`: the
 * model's image preprocessing (spec/CLI.md), chosen by the family in MODEL's config.json
 * (src/family/family.h: prep_init / prep_run, and prep_options for --max-num / --anyres).
 * Tensors written (crash-safe, temp name then rename):
 *   InternVL2/3  pixel_values F32 [tiles,3,S,S], tile_u8 U8 [tiles,S,S,3]
 *   Qwen2-VL     pixel_values F32 [gh*gw,1176], image_grid_thw I64 [1,3], tile_u8 U8 [1,H,W,3]
 *                (the smart-resized image)
 *   LLaVA-OV     pixel_values F32 [1,3,384,384], tile_u8 U8 [1,384,384,3] (MBQ's pad path);
 *                with --anyres [1+n,3,384,384] (base image, then the crops row-major)
 * Metadata: family, image (the path given), image_wh (decoded size), grid_cols_rows (InternVL
 * tiling grid, LLaVA anyres crop grid). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "core/fsutil.h"
#include "family/family.h"
#include "image/image.h"
#include "io/safetensors.h"
#include "model/config.h"

static qv_status write_output(const char *path, const qv_model_config *cfg, const char *image, const qv_image *img,
                              const qv_pixels *px)
{
    qv_st_item items[3];
    size_t n = 0;
    items[n] = (qv_st_item){.name = "pixel_values", .dtype = QV_F32, .ndim = px->ndim, .data = px->values};
    memcpy(items[n].shape, px->shape, sizeof px->shape);
    n++;
    items[n] = (qv_st_item){.name = "tile_u8", .dtype = QV_U8, .ndim = 4,
                            .shape = {px->n_tiles, px->tile_h, px->tile_w, 3}, .data = px->tiles_u8};
    n++;
    if (px->grid_thw[0] > 0) /* a patch-row preprocessing (Qwen2-VL) says its grid */
        items[n++] = (qv_st_item){.name = "image_grid_thw", .dtype = QV_I64, .ndim = 2, .shape = {1, 3},
                                  .data = px->grid_thw};
    char wh[48], grid[48];
    snprintf(wh, sizeof wh, "[%d,%d]", img->w, img->h);
    snprintf(grid, sizeof grid, "[%d,%d]", px->grid_cols, px->grid_rows);
    qv_st_kv meta[] = {
        {(char *)"family", (char *)qv_family_name(cfg->family)},
        {(char *)"image", (char *)image},
        {(char *)"image_wh", wh},
        {(char *)"grid_cols_rows", grid},
    };
    return qv_st_write_file(path, items, n, meta, QV_ARRAY_LEN(meta));
}

int qv_cmd_preprocess(int argc, char **argv)
{
    const char *out = NULL;
    int64_t max_num = -1;
    bool anyres = false;
    const qv_opt opts[] = {
        {"output", 'o', QV_OPT_STR, &out, "OUT.safetensors", "where to write the tensors (required)"},
        {"max-num", 0, QV_OPT_INT, &max_num, "N",
         "InternVL: at most N tiles (default: the config's max_dynamic_patch; MBQ calibration uses 1)"},
        {"anyres", 0, QV_OPT_FLAG, &anyres, NULL,
         "LLaVA-OneVision: the native anyres path (LLaVA inference, lmms-eval) instead of MBQ's pad path"},
        {0},
    };
    const qv_cli_cmd cmd = {"preprocess", "MODEL IMAGE -o OUT.safetensors [--max-num N] [--anyres]",
                            "The model's image preprocessing of IMAGE (JPEG or PNG): pixel_values and the uint8 "
                            "tiles (tile_u8) it was computed from; Qwen2-VL adds image_grid_thw.",
                            opts, 2, 2};
    const char *pos[2];
    int npos, r = qv_cli_parse(&cmd, argc, argv, pos, &npos);
    if (r >= 0)
        return r;
    if (!out)
        return qv_cli_usage_error(cmd.name, "missing -o OUT.safetensors");
    if (max_num != -1 && (max_num < 1 || max_num > 1024))
        return qv_cli_usage_error(cmd.name, "--max-num must be between 1 and 1024");

    qv_model_config cfg;
    if (qv_model_config_load(pos[0], &cfg) != QV_OK)
        return qv_cli_fail();
    int rc = QV_EXIT_OK;
    char *dir = qv_path_dirname(cfg.path);
    qv_preprocessor pp;
    qv_image img = {0};
    qv_pixels px = {0};
    if (!dir || qv_preprocessor_init(&pp, &cfg, dir) != QV_OK) {
        rc = qv_cli_fail();
        goto done;
    }
    const unsigned prep_options = qv_family_get(pp.family)->prep_options;
    if (max_num != -1) {
        if (!(prep_options & QV_PREP_MAX_TILES)) {
            rc = qv_cli_usage_error(cmd.name, "--max-num applies to InternVL models only (this is %s)",
                                    qv_family_name(pp.family));
            goto done;
        }
        pp.max_tiles = (int)max_num;
    }
    if (anyres) {
        if (!(prep_options & QV_PREP_ANYRES)) {
            rc = qv_cli_usage_error(cmd.name, "--anyres applies to LLaVA-OneVision models only (this is %s)",
                                    qv_family_name(pp.family));
            goto done;
        }
        pp.llava_anyres = true;
    }
    if (qv_image_load(pos[1], &img) != QV_OK || qv_preprocess_image(&pp, &img, pos[1], &px) != QV_OK ||
        write_output(out, &cfg, pos[1], &img, &px) != QV_OK) {
        rc = qv_cli_fail();
        goto done;
    }
    char shape[96];
    qv_cli_log("%s: %dx%d -> %s: %d tile%s of %dx%d, pixel_values %s\n", pos[1], img.w, img.h,
               qv_family_name(pp.family), px.n_tiles, px.n_tiles == 1 ? "" : "s", px.tile_w, px.tile_h,
               qv_shape_str(shape, sizeof shape, px.ndim, px.shape));
done:
    qv_pixels_free(&px);
    qv_image_free(&img);
    qv_free(dir);
    qv_model_config_free(&cfg);
    return rc;
}
