/* preprocess.c — the image preprocessing of a model, chosen through its config's family
 * (CLI.md `preprocess`; ALGORITHMS.md §8; src/family/family.h prep_init / prep_run):
 * InternVL2/3 tiles, Qwen2-VL patches, LLaVA-OneVision pad path (MBQ's; llava_anyres selects
 * the native anyres path). */
#include <string.h>

#include "../family/family.h"
#include "image.h"

qv_status qv_preprocessor_init(qv_preprocessor *pp, const qv_model_config *cfg, const char *model_dir)
{
    memset(pp, 0, sizeof *pp);
    pp->family = cfg->family;
    qv_internvl_prep_default(&pp->internvl);
    qv_qwen2vl_prep_default(&pp->qwen2vl);
    qv_llava_prep_default(&pp->llava);
    const qv_family *f = qv_family_get(cfg->family);
    if (f->prep_init && f->prep_run)
        return f->prep_init(pp, cfg, model_dir);
    return qv_fail(QV_ERR_UNSUPPORTED, "%s: %s is a text-only model without image preprocessing",
                   cfg->path ? cfg->path : "config.json", cfg->architecture);
}

qv_status qv_preprocess_image(const qv_preprocessor *pp, const qv_image *img, const char *what, qv_pixels *out)
{
    const qv_family *f = qv_family_get(pp->family);
    if (f->prep_run)
        return f->prep_run(pp, img, what, out);
    memset(out, 0, sizeof *out);
    return qv_fail(QV_ERR_UNSUPPORTED, "%s: the model has no image preprocessing", what);
}
