/* fuzz_captions.c — the caption file reader (qv_captions_parse). The first byte picks the
 * format (odd: JSON Lines, even: one JSON array), the rest is the file. On success every item
 * must have its turns and images as documented, and the §7.2 selection must index items. */
#include "calib/captions.h"
#include "fuzz_common.h"

int qv_fuzz_captions(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *name = (data[0] & 1) ? "fuzz/captions.jsonl" : "fuzz/captions.json";
    qv_caption_file f;
    qv_status st = qv_captions_parse((const char *)data + 1, size - 1, name, &f);
    if (st != QV_OK) {
        qf_check_error(st, name);
        QF_CHECK(f.n_items == 0 && f.items == NULL);
        return 0;
    }
    for (size_t i = 0; i < f.n_items; i++) {
        const qv_caption_item *it = &f.items[i];
        QF_CHECK(it->index == i && it->line >= 1 && it->n_turns >= 1);
        for (size_t k = 0; k < it->n_turns; k++)
            QF_CHECK(it->turns[k].from && it->turns[k].value);
        for (size_t k = 0; k < it->n_images; k++)
            QF_CHECK(it->images[k] && it->images[k][0]);
    }
    size_t order[7];
    st = qv_captions_select(&f, 42, QV_ARRAY_LEN(order), order);
    QF_CHECK((st == QV_OK) == (f.n_items > 0));
    if (st == QV_OK)
        for (size_t i = 0; i < QV_ARRAY_LEN(order); i++)
            QF_CHECK(order[i] < f.n_items);
    qv_captions_free(&f);
    return 0;
}

QF_ENTRY(captions)
