/* preprocess.c — the image preprocessing of a model, chosen by its config's family
 * (CLI.md `preprocess`; ALGORITHMS.md §8): InternVL2/3 tiles, Qwen2-VL patches, LLaVA-OneVision
 * pad path (MBQ's; llava_anyres selects the native anyres path). */
#include <string.h>

#include "image.h"

qv_status qv_preprocessor_init(qv_preprocessor *pp, const qv_model_config *cfg, const char *model_dir)
{
    memset(pp, 0, sizeof *pp);
    pp->family = cfg->family;
    qv_internvl_prep_default(&pp->internvl);
    qv_qwen2vl_prep_default(&pp->qwen2vl);
    qv_llava_prep_default(&pp->llava);
    switch (cfg->family) {
    case QV_FAMILY_INTERNVL2:
    case QV_FAMILY_INTERNVL3:
        qv_internvl_prep_from_config(&pp->internvl, cfg);
        return QV_OK;
    case QV_FAMILY_QWEN2_VL:
        return qv_qwen2vl_prep_load(&pp->qwen2vl, model_dir);
    case QV_FAMILY_LLAVA_ONEVISION:
        return cfg->path ? qv_llava_prep_load(&pp->llava, cfg->path) : QV_OK;
    case QV_FAMILY_TEXT:
        break;
    }
    return qv_fail(QV_ERR_UNSUPPORTED, "%s: %s is a text-only model without image preprocessing",
                   cfg->path ? cfg->path : "config.json", cfg->architecture);
}

qv_status qv_preprocess_image(const qv_preprocessor *pp, const qv_image *img, const char *what, qv_pixels *out)
{
    switch (pp->family) {
    case QV_FAMILY_INTERNVL2:
    case QV_FAMILY_INTERNVL3: return qv_preprocess_internvl(img, &pp->internvl, what, out);
    case QV_FAMILY_QWEN2_VL: return qv_preprocess_qwen2vl(img, &pp->qwen2vl, what, out);
    case QV_FAMILY_LLAVA_ONEVISION:
        return pp->llava_anyres ? qv_preprocess_llava_anyres(img, &pp->llava, what, out)
                                : qv_preprocess_llava_pad(img, &pp->llava, what, out);
    case QV_FAMILY_TEXT: break;
    }
    memset(out, 0, sizeof *out);
    return qv_fail(QV_ERR_UNSUPPORTED, "%s: the model has no image preprocessing", what);
}
