/* mbqpt.c — a scale list as the MBQ reference's torch.save file (ALGORITHMS.md §5.8, §9.3):
 * {"scale": [(prev_op, (fc, ...), s[ci] in T), ...]}, plus llm-awq's "clip": [(fc, max_val
 * [co, groups, 1] in T), ...] only when the list has clip values. Read back by qv_scales_load. */
#include <string.h>

#include "export.h"
#include "io/torchpt.h"

/* {"scale": [(prev_op, (fc, ...), s in T)], "clip": [(fc, max_val [co, groups, 1] in T)]} —
 * ALGORITHMS.md §5.8 / §9.3; "clip" only when the list has clip values (llm-awq's layout). */
qv_status qv_mbqpt_write(const char *path, const qv_scales *sc, qv_dtype T)
{
    qv_pt *doc;
    QV_TRY(qv_pt_new(&doc));
    qv_status st = QV_OK;
    qv_pt_value *root = qv_pt_dict(doc), *list = qv_pt_seq(doc, QV_PT_LIST);
    if (!root || !list)
        st = QV_ERR_NOMEM;
    for (size_t k = 0; st == QV_OK && k < sc->n; k++) {
        const qv_scale_entry *e = &sc->entries[k];
        qv_pt_value *tup = qv_pt_seq(doc, QV_PT_TUPLE), *names = qv_pt_seq(doc, QV_PT_TUPLE);
        void *buf = qv_malloc((size_t)e->n * qv_dtype_size(T) + 1, "scale");
        if (!tup || !names || !buf) {
            qv_free(buf);
            st = QV_ERR_NOMEM;
            break;
        }
        qv_convert(buf, T, e->s, QV_F32, (size_t)e->n);
        for (size_t j = 0; st == QV_OK && j < e->n_layers; j++)
            st = qv_pt_append(names, qv_pt_str(doc, e->layers[j]));
        if (st == QV_OK)
            st = qv_pt_append(tup, qv_pt_str(doc, e->prev_op));
        if (st == QV_OK)
            st = qv_pt_append(tup, names);
        if (st == QV_OK)
            st = qv_pt_append(tup, qv_pt_tensor(doc, T, 1, &e->n, buf));
        if (st == QV_OK)
            st = qv_pt_append(list, tup);
        qv_free(buf);
    }
    if (st == QV_OK)
        st = qv_pt_set(root, qv_pt_str(doc, "scale"), list);
    if (st == QV_OK && sc->n_clip) {
        qv_pt_value *cl = qv_pt_seq(doc, QV_PT_LIST);
        st = cl ? QV_OK : QV_ERR_NOMEM;
        for (size_t k = 0; st == QV_OK && k < sc->n_clip; k++) {
            const qv_clip_entry *c = &sc->clips[k];
            int64_t shape[3] = {c->co, c->ng, 1};
            void *buf = qv_malloc((size_t)(c->co * c->ng) * qv_dtype_size(T) + 1, "clip");
            qv_pt_value *tup = qv_pt_seq(doc, QV_PT_TUPLE);
            if (!buf || !tup) {
                qv_free(buf);
                st = QV_ERR_NOMEM;
                break;
            }
            qv_convert(buf, T, c->max_val, QV_F32, (size_t)(c->co * c->ng));
            st = qv_pt_append(tup, qv_pt_str(doc, c->layer));
            if (st == QV_OK)
                st = qv_pt_append(tup, qv_pt_tensor(doc, T, 3, shape, buf));
            if (st == QV_OK)
                st = qv_pt_append(cl, tup);
            qv_free(buf);
        }
        if (st == QV_OK)
            st = qv_pt_set(root, qv_pt_str(doc, "clip"), cl);
    }
    if (st == QV_OK)
        st = qv_pt_save(path, root);
    qv_pt_free(doc);
    return st;
}
