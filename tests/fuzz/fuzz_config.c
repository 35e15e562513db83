/* fuzz_config.c — the config.json readers: qv_model_config_parse (every supported
 * architecture's typed fields), and the image-processor settings read from the same kind of
 * file (LLaVA's image_grid_pinpoints, Qwen2-VL's preprocessor_config.json). On success the
 * dimensions must be positive and under the caps that keep every later size computation in
 * range (config.h), and the helpers that use them must be safe. */
#include "fuzz_common.h"
#include "image/image.h"
#include "io/json.h"
#include "model/config.h"

static void check_llm(const qv_llm_config *l)
{
    QF_CHECK(l->hidden > 0 && l->n_layers > 0 && l->n_heads > 0 && l->n_kv_heads > 0 && l->head_dim > 0);
    QF_CHECK(l->intermediate > 0 && l->vocab > 0 && l->max_positions > 0);
    QF_CHECK(l->n_heads % l->n_kv_heads == 0 && l->head_dim % 2 == 0);
    QF_CHECK(l->hidden <= QV_MAX_HIDDEN && l->intermediate <= QV_MAX_INTERMEDIATE && l->vocab <= QV_MAX_VOCAB);
    QF_CHECK(l->n_layers <= QV_MAX_LAYERS && l->n_heads <= QV_MAX_HEADS && l->head_dim <= QV_MAX_HEAD_DIM);
    QF_CHECK(l->max_positions <= QV_MAX_POSITIONS);
    QF_CHECK(l->rms_eps > 0 && l->rope_theta > 0 && l->rope_factor > 0);
}

static void check_vision(const qv_model_config *c)
{
    const qv_vision_config *v = &c->vision;
    if (c->family == QV_FAMILY_LLAVA_ONEVISION) {
        QF_CHECK(v->hidden >= 0 && v->hidden <= QV_MAX_HIDDEN);
        return;
    }
    QF_CHECK(v->hidden > 0 && v->n_layers > 0 && v->n_heads > 0 && v->intermediate > 0 && v->patch_size > 0);
    QF_CHECK(v->hidden <= QV_MAX_HIDDEN && v->intermediate <= QV_MAX_INTERMEDIATE && v->n_layers <= QV_MAX_LAYERS);
    QF_CHECK(v->n_heads <= QV_MAX_HEADS && v->hidden % v->n_heads == 0);
    QF_CHECK(v->channels > 0 && v->channels <= QV_MAX_CHANNELS && v->patch_size <= QV_MAX_IMAGE_SIDE);
    if (c->family == QV_FAMILY_QWEN2_VL) {
        QF_CHECK(v->spatial_merge_size > 0 && v->spatial_merge_size <= 64);
        QF_CHECK(v->temporal_patch_size > 0 && v->temporal_patch_size <= 64);
        QF_CHECK(v->out_hidden > 0 && v->out_hidden <= QV_MAX_HIDDEN);
    } else {
        QF_CHECK(v->image_size > 0 && v->image_size <= QV_MAX_IMAGE_SIDE && v->image_size % v->patch_size == 0);
    }
}

static void check_model_config(const uint8_t *data, size_t size)
{
    static const char *name = "fuzz/config.json";
    qv_model_config cfg;
    qv_status st = qv_model_config_parse((const char *)data, size, name, &cfg);
    if (st != QV_OK) {
        qf_check_error(st, name);
        QF_CHECK(cfg.path == NULL);
        return;
    }
    QF_CHECK(cfg.path && strcmp(cfg.path, name) == 0);
    check_llm(&cfg.llm);
    if (cfg.has_vision)
        check_vision(&cfg);
    static const char *names[] = {"vision_model.encoder.layers.0.attn.qkv.weight", "mlp1.0.weight",
                                  "visual.merger.mlp.0.weight", "model.layers.0.mlp.up_proj.weight", ""};
    for (size_t i = 0; i < QV_ARRAY_LEN(names); i++)
        QF_CHECK((unsigned)qv_model_part_of(&cfg, names[i]) < QV_PART_COUNT);
    if (cfg.family == QV_FAMILY_INTERNVL2 || cfg.family == QV_FAMILY_INTERNVL3) {
        qv_internvl_prep p;
        qv_internvl_prep_from_config(&p, &cfg);
        int cols, rows;
        if (p.max_num <= 64 && qv_internvl_grid(640, 480, &p, &cols, &rows) == QV_OK)
            QF_CHECK(cols >= 1 && rows >= 1 && (cols * rows <= QV_MAX(p.max_num, 1)));
    }
    qv_model_config_free(&cfg);
}

static void check_preprocessor_settings(const uint8_t *data, size_t size)
{
    qv_json *root = NULL;
    if (qv_json_parse((const char *)data, size, "fuzz/config.json", 0, &root) != QV_OK)
        return;
    qv_llava_prep lp;
    qv_status st = qv_llava_prep_from_json(&lp, root, "fuzz/config.json");
    if (st != QV_OK) {
        qf_check_error(st, "fuzz/config.json");
    } else {
        QF_CHECK(lp.n_pinpoints >= 0 && lp.n_pinpoints <= QV_LLAVA_MAX_PINPOINTS);
        for (int i = 0; i < lp.n_pinpoints; i++)
            QF_CHECK(lp.pinpoints[i][0] > 0 && lp.pinpoints[i][1] > 0);
        int bw, bh;
        if (lp.n_pinpoints && qv_llava_best_resolution(37, 1000, &lp, &bw, &bh) == QV_OK)
            QF_CHECK(bw > 0 && bh > 0);
    }
    qv_qwen2vl_prep qp;
    st = qv_qwen2vl_prep_from_json(&qp, root, "fuzz/preprocessor_config.json");
    if (st != QV_OK) {
        qf_check_error(st, "fuzz/preprocessor_config.json");
    } else {
        int h, w;
        if (qv_qwen2vl_smart_resize(480, 640, &qp, "fuzz.jpg", &h, &w) == QV_OK)
            QF_CHECK(h > 0 && w > 0 && (int64_t)h * w <= QV_IMAGE_MAX_PIXELS);
    }
    qv_json_free(root);
}

int qv_fuzz_config(const uint8_t *data, size_t size)
{
    check_model_config(data, size);
    check_preprocessor_settings(data, size);
    return 0;
}

QF_ENTRY(config)
