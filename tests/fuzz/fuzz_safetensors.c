/* fuzz_safetensors.c — the safetensors header parser (qv_st_parse, FORMATS.md §1.2) on a whole
 * file image. On success every entry must describe a span inside the data area whose size is
 * its shape times its dtype, the spans must tile the data area, names must resolve to their
 * entries, and every byte of every span must be readable. */
#include "fuzz_common.h"
#include "io/safetensors.h"

int qv_fuzz_safetensors(const uint8_t *data, size_t size)
{
    static const char *name = "fuzz.safetensors";
    qv_st_header h;
    qv_status st = qv_st_parse(data, size, name, &h);
    if (st != QV_OK) {
        qf_check_error(st, name);
        return 0;
    }
    QF_CHECK(h.header_len + 8 <= size && h.data_len == size - 8 - h.header_len);
    const uint8_t *area = data + 8 + h.header_len;
    uint64_t total = 0;
    unsigned sum = 0;
    for (size_t i = 0; i < h.n; i++) {
        const qv_st_entry *e = &h.entries[i];
        QF_CHECK(e->begin <= e->end && e->end <= h.data_len);
        int64_t numel;
        QF_CHECK(qv_shape_numel(e->ndim, e->shape, &numel));
        QF_CHECK((uint64_t)numel * (uint64_t)qv_dtype_bits(e->dtype) / 8 == e->end - e->begin);
        QF_CHECK(qv_st_header_find(&h, e->name) == e);
        total += e->end - e->begin;
        if (e->end > e->begin)
            sum += area[e->begin] + area[e->end - 1];
    }
    QF_CHECK(total == h.data_len);
    for (size_t i = 0; i < h.n_meta; i++)
        QF_CHECK(h.meta[i].key && h.meta[i].value);
    qv_st_header_free(&h);
    return (int)(sum & 0);
}

QF_ENTRY(safetensors)
