/* search_fixture.c — search_fixture.h. */
#include "search_fixture.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "util/testutil.h"

void qt_search_fixture_load(const char *model, const qv_llm_opts *lo, int64_t samples, qt_search_fixture *f)
{
    char p[512];
    memset(f, 0, sizeof *f);
    snprintf(p, sizeof p, "models/%s", model);
    cr_assert_eq(qv_llm_open(qt_fixture(p), lo, &f->m), QV_OK, "%s", qv_last_error());
    snprintf(p, sizeof p, "goldens/%s/search_masks.safetensors", model);
    f->masks = qt_open_st(p);
    snprintf(p, sizeof p, "goldens/%s/search_inputs.safetensors", model);
    f->inputs = qt_open_st(p);
    qv_tensor t;
    f->x0 = qt_tensor_f32(f->inputs, "llm.inputs_embeds", &t);
    f->b.B = samples > 0 ? QV_MIN(samples, t.shape[0]) : t.shape[0];
    f->b.L = t.shape[1];
    f->b.path = strdup("search_masks.safetensors");
    const char *names[] = {"attention_mask", "caption_mask", "vision_mask"};
    uint8_t **dst[] = {&f->b.attention_mask, &f->b.caption_mask, &f->b.vision_mask};
    for (int i = 0; i < 3; i++) {
        float *v = qt_tensor_f32(f->masks, names[i], NULL);
        *dst[i] = malloc((size_t)(f->b.B * f->b.L));
        for (int64_t j = 0; j < f->b.B * f->b.L; j++)
            (*dst[i])[j] = v[j] != 0;
        free(v);
    }
}

void qt_search_fixture_free(qt_search_fixture *f)
{
    free(f->b.attention_mask);
    free(f->b.caption_mask);
    free(f->b.vision_mask);
    free(f->b.path);
    free(f->x0);
    qv_st_close(f->masks);
    qv_st_close(f->inputs);
    qv_llm_close(f->m);
}
