/* search_fixture.h — the layer search's inputs from a fixture model's goldens, shared by the search
 * tests: the model, goldens/<model>/search_inputs.safetensors "llm.inputs_embeds" (the layer-0
 * inputs, F32) and the attention, caption and vision masks of search_masks.safetensors as a batch. */
#ifndef QV_TESTS_SEARCH_FIXTURE_H
#define QV_TESTS_SEARCH_FIXTURE_H

#include "io/safetensors.h"
#include "llm/batch.h"
#include "llm/llm.h"

typedef struct qt_search_fixture {
    qv_llm *m;
    qv_llm_batch b;
    float *x0;
    qv_st_file *masks, *inputs;
} qt_search_fixture;

/* Opens models/<model> with lo (NULL: the defaults) and keeps the first `samples` samples
 * (0: all) of the layer-0 inputs and masks. Aborts the test on any failure. */
void qt_search_fixture_load(const char *model, const qv_llm_opts *lo, int64_t samples, qt_search_fixture *f);
void qt_search_fixture_free(qt_search_fixture *f);

#endif
