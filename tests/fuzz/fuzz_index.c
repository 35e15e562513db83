/* fuzz_index.c — the sharded-checkpoint index (qv_st_index_parse, model.safetensors.index.json).
 * On success every tensor must point at a listed shard, shard names must be plain file names
 * (nothing that escapes the model folder) and distinct. */
#include "fuzz_common.h"
#include "io/safetensors.h"

int qv_fuzz_index(const uint8_t *data, size_t size)
{
    static const char *name = "fuzz/model.safetensors.index.json";
    qv_st_index idx;
    qv_status st = qv_st_index_parse((const char *)data, size, name, &idx);
    if (st != QV_OK) {
        qf_check_error(st, name);
        QF_CHECK(idx.n == 0 && idx.names == NULL && idx.n_shards == 0);
        return 0;
    }
    QF_CHECK(idx.n > 0 && idx.n_shards > 0 && idx.n_shards <= idx.n);
    for (size_t i = 0; i < idx.n; i++)
        QF_CHECK(idx.names[i] && idx.shard[i] < idx.n_shards);
    for (size_t s = 0; s < idx.n_shards; s++) {
        const char *sn = idx.shards[s];
        QF_CHECK(sn[0] && !strchr(sn, '/') && strcmp(sn, ".") && strcmp(sn, ".."));
        for (size_t t = 0; t < s; t++)
            QF_CHECK(strcmp(sn, idx.shards[t]) != 0);
    }
    qv_st_index_free(&idx);
    return 0;
}

QF_ENTRY(index)
