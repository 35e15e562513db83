/* torchpt.h — PyTorch checkpoint files as torch.save (>= 1.6) writes them: a stored zip with
 * <archive>/data.pkl (a protocol-2 pickle whose tensors are `torch._utils._rebuild_tensor_v2`
 * calls on persistent-id storages), <archive>/data/<key> (raw little-endian storage bytes),
 * <archive>/byteorder, <archive>/version and the newer .format_version, .storage_alignment and
 * .data/serialization_id records (torch/serialization.py `_save`, caffe2 inline_container.cc).
 *
 * Only plain data is understood: None, bool, int, float, str, tuple, list, dict (and
 * collections.OrderedDict), tensors, nn.Parameter. Any other global is refused with its name —
 * the reader never executes anything, like torch.load(weights_only=True).
 *
 * A qv_pt document owns every value and every tensor buffer; values stay valid until
 * qv_pt_free. The writer side builds values in a document and saves one root. */
#ifndef QV_TORCHPT_H
#define QV_TORCHPT_H

#include "../core/tensor.h"

typedef enum qv_pt_kind {
    QV_PT_NONE = 0,
    QV_PT_BOOL,
    QV_PT_INT,
    QV_PT_FLOAT,
    QV_PT_STR,
    QV_PT_TUPLE,
    QV_PT_LIST,
    QV_PT_DICT,
    QV_PT_TENSOR,
    QV_PT_GLOBAL,  /* reader-internal: a class or function reference ("module.name") */
    QV_PT_STORAGE  /* reader-internal: a persistent-id storage */
} qv_pt_kind;

typedef struct qv_pt_value {
    qv_pt_kind kind;
    int64_t i;                  /* BOOL, INT */
    double f;                   /* FLOAT */
    char *s;                    /* STR (NUL-terminated UTF-8), GLOBAL */
    size_t len;                 /* STR bytes; TUPLE/LIST items; DICT pairs */
    struct qv_pt_value **items; /* TUPLE/LIST: len items; DICT: 2*len, key then value */
    size_t cap;
    qv_tensor t;                /* TENSOR: contiguous; data owned by the document */
    const uint8_t *raw;         /* STORAGE: bytes in the archive */
    uint64_t raw_len;
} qv_pt_value;

typedef struct qv_pt qv_pt;

qv_status qv_pt_new(qv_pt **doc);
void qv_pt_free(qv_pt *doc);

/* Reads a torch.save file. The root value is qv_pt_root(doc). */
qv_status qv_pt_load(const char *path, qv_pt **doc);
/* Same from a memory image (fuzzing); buf must outlive nothing: tensors are copied. */
qv_status qv_pt_load_mem(const uint8_t *buf, size_t len, const char *what, qv_pt **doc);
const qv_pt_value *qv_pt_root(const qv_pt *doc);

/* Writes root as torch.save(root, path) would (protocol 2, archive name "archive"). */
qv_status qv_pt_save(const char *path, const qv_pt_value *root);

/* Builders; NULL on OOM (error set). Tensors copy `data` (contiguous, dt elements). */
qv_pt_value *qv_pt_none(qv_pt *doc);
qv_pt_value *qv_pt_int(qv_pt *doc, int64_t v);
qv_pt_value *qv_pt_float(qv_pt *doc, double v);
qv_pt_value *qv_pt_bool(qv_pt *doc, bool v);
qv_pt_value *qv_pt_str(qv_pt *doc, const char *s);
qv_pt_value *qv_pt_seq(qv_pt *doc, qv_pt_kind kind); /* QV_PT_TUPLE or QV_PT_LIST */
qv_pt_value *qv_pt_dict(qv_pt *doc);
qv_pt_value *qv_pt_tensor(qv_pt *doc, qv_dtype dt, int ndim, const int64_t *shape, const void *data);
qv_status qv_pt_append(qv_pt_value *seq, qv_pt_value *item);
qv_status qv_pt_set(qv_pt_value *dict, qv_pt_value *key, qv_pt_value *value);

/* torch's pickled storage class of a dtype ("FloatStorage", "BFloat16Storage", ...); NULL when
 * torch has none qvlm writes. */
const char *qv_pt_storage_class(qv_dtype dt);

/* Lookups: NULL when absent or of another kind. */
const qv_pt_value *qv_pt_get(const qv_pt_value *dict, const char *key);
const char *qv_pt_kind_name(qv_pt_kind k);

#endif
