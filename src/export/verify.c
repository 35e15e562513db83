/* verify.c — read back and check quantized checkpoints (verify.h). */
#include "verify.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/fsutil.h"
#include "core/strmap.h"
#include "formats.h"
#include "fp.h"
#include "io/json.h"
#include "plan.h"

typedef enum { VF_FAKE = 0, VF_AWQ, VF_GPTQ, VF_CT_PACK, VF_CT_INT, VF_FP8 } vfmt;

typedef struct vctx {
    const qv_verify_opts *o;
    qv_verify_result *r;
    vfmt fmt;
    int bits;
    int64_t group; /* -1 per channel / unknown */
    bool sym, gptq_v2, have_bits;
    qv_checkpoint *ck;
    qv_strmap qmods; /* quantized module names of the checkpoint */
    bool have_ref, have_sc;
    qv_mplan ref;
    qv_scales sc;
    qv_dtype T;
    qv_wq_div div;
} vctx;

static void line(vctx *v, const char *tensor, const char *what, double max_abs, bool ok)
{
    v->r->n_checked++;
    if (!ok)
        v->r->n_mismatch++;
    if (max_abs > v->r->max_abs || max_abs != max_abs)
        v->r->max_abs = max_abs;
    if (v->o->line)
        v->o->line(v->o->ctx, tensor, what, max_abs, ok);
}

/* ---- the checkpoint's quantization_config ---------------------------------------------------- */

static bool ieq(const char *a, const char *b)
{
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b))
            return false;
    return *a == *b;
}

static qv_status int_key(const qv_json *q, const char *a, const char *b, const char *file, int64_t *out, bool *found)
{
    *found = false;
    if (qv_json_get(q, a)) {
        *found = true;
        return qv_json_int(q, a, file, out);
    }
    if (b && qv_json_get(q, b)) {
        *found = true;
        return qv_json_int(q, b, file, out);
    }
    return QV_OK;
}

static qv_status parse_ct(vctx *v, const qv_json *q, const char *file)
{
    const char *fmt = "dense";
    qv_json *groups;
    QV_TRY(qv_json_str_opt(q, "format", file, &fmt));
    QV_TRY(qv_json_obj(q, "config_groups", file, &groups));
    qv_json *w = NULL;
    const char *gfmt = NULL;
    json_object_object_foreach(groups, gname, g) {
        qv_json *gw = qv_json_get(g, "weights");
        if (!gw || qv_json_is_type(gw, json_type_null))
            continue;
        if (w && !json_object_equal(w, gw))
            return qv_fail(QV_ERR_UNSUPPORTED, "%s: config_groups with different weight schemes (%s) are not supported", file, gname);
        w = gw;
        if (qv_json_get(g, "format") && qv_json_is_type(qv_json_get(g, "format"), json_type_string))
            gfmt = json_object_get_string(qv_json_get(g, "format"));
    }
    if (!w)
        return qv_fail(QV_ERR_FORMAT, "%s: quantization_config has no weight scheme", file);
    if (!strcmp(fmt, "mixed-precision") && gfmt)
        fmt = gfmt;
    int64_t bits = 8, group = -1;
    const char *type = "int", *strategy = NULL;
    bool sym = true;
    QV_TRY(qv_json_int_opt(w, "num_bits", file, &bits));
    QV_TRY(qv_json_str_opt(w, "type", file, &type));
    QV_TRY(qv_json_bool_opt(w, "symmetric", file, &sym));
    QV_TRY(qv_json_int_opt(w, "group_size", file, &group));
    QV_TRY(qv_json_str_opt(w, "strategy", file, &strategy));
    if (strategy && !strcmp(strategy, "channel"))
        group = -1;
    if (strategy && (!strcmp(strategy, "block") || !strcmp(strategy, "tensor_group")))
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: weight strategy %s is not supported", file, strategy);
    v->bits = (int)bits;
    v->group = group;
    v->sym = sym;
    v->have_bits = true;
    bool is_float = !strcmp(type, "float");
    if (is_float && bits == 8 && (!strcmp(fmt, "float-quantized") || !strcmp(fmt, "naive-quantized")))
        v->fmt = VF_FP8;
    else if (!is_float && !strcmp(fmt, "pack-quantized"))
        v->fmt = VF_CT_PACK;
    else if (!is_float && (!strcmp(fmt, "int-quantized") || !strcmp(fmt, "naive-quantized")))
        v->fmt = VF_CT_INT;
    else
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: compressed-tensors format %s with %s%lld weights is not supported", file, fmt,
                       is_float ? "float" : "int", (long long)bits);
    snprintf(v->r->format, sizeof v->r->format, "compressed-tensors %s %s%d%s", fmt, is_float ? "fp" : "int", v->bits,
             v->fmt == VF_FP8 ? "" : sym ? " sym" : " asym");
    return QV_OK;
}

static qv_status parse_qconfig(vctx *v)
{
    char *cp = qv_path_join(v->o->path, "config.json");
    qv_json *root = NULL;
    if (!cp)
        return QV_ERR_NOMEM;
    qv_status st = qv_json_load_file(cp, 0, &root);
    qv_json *q = st == QV_OK ? qv_json_get(root, "quantization_config") : NULL;
    const char *method = NULL;
    int64_t bits = 0, group = -1;
    bool f1, f2;
    if (st == QV_OK && !q) {
        v->fmt = VF_FAKE;
        snprintf(v->r->format, sizeof v->r->format, "unquantized / fake-quantized");
        goto done;
    }
    if (st == QV_OK)
        st = qv_json_str(q, "quant_method", cp, &method);
    if (st != QV_OK)
        goto done;
    if (ieq(method, "awq")) {
        const char *ver = "gemm";
        bool zp = true;
        QV_CHECK(st = int_key(q, "bits", "w_bit", cp, &bits, &f1), done);
        QV_CHECK(st = int_key(q, "group_size", "q_group_size", cp, &group, &f2), done);
        QV_CHECK(st = qv_json_str_opt(q, "version", cp, &ver), done);
        QV_CHECK(st = qv_json_bool_opt(q, "zero_point", cp, &zp), done);
        if (!f1 || !f2 || bits != 4 || group <= 0 || !ieq(ver, "gemm") || !zp) {
            st = qv_fail(QV_ERR_UNSUPPORTED, "%s: AWQ %s with %lld bits, group %lld, zero_point %d: only 4-bit GEMM with zero points is read",
                         cp, ver, (long long)bits, (long long)group, zp);
            goto done;
        }
        v->fmt = VF_AWQ;
        v->sym = false;
        snprintf(v->r->format, sizeof v->r->format, "awq gemm 4-bit g%lld", (long long)group);
    } else if (ieq(method, "gptq")) {
        const char *cf = "gptq";
        bool sym = true, desc = false;
        QV_CHECK(st = qv_json_int(q, "bits", cp, &bits), done);
        QV_CHECK(st = qv_json_int(q, "group_size", cp, &group), done);
        QV_CHECK(st = qv_json_bool_opt(q, "sym", cp, &sym), done);
        QV_CHECK(st = qv_json_bool_opt(q, "desc_act", cp, &desc), done);
        QV_CHECK(st = qv_json_str_opt(q, "checkpoint_format", cp, &cf), done);
        if (bits != 2 && bits != 3 && bits != 4 && bits != 8) {
            st = qv_fail(QV_ERR_UNSUPPORTED, "%s: GPTQ with %lld bits", cp, (long long)bits);
            goto done;
        }
        v->fmt = VF_GPTQ;
        v->sym = sym;
        v->gptq_v2 = !strcmp(cf, "gptq_v2");
        snprintf(v->r->format, sizeof v->r->format, "gptq %s %lld-bit g%lld %s", v->gptq_v2 ? "v2" : "v1", (long long)bits,
                 (long long)group, sym ? "sym" : "asym");
    } else if (ieq(method, "compressed-tensors")) {
        st = parse_ct(v, q, cp);
        goto done;
    } else {
        st = qv_fail(QV_ERR_UNSUPPORTED, "%s: quant_method %s is not supported (awq, gptq, compressed-tensors)", cp, method);
        goto done;
    }
    v->bits = (int)bits;
    v->group = group;
    v->have_bits = true;
done:
    qv_json_free(root);
    qv_free(cp);
    return st;
}

/* ---- reading one module ------------------------------------------------------------------------ */

static qv_status collect_modules(vctx *v)
{
    const char *suffix = v->fmt == VF_AWQ || v->fmt == VF_GPTQ ? ".qweight" : v->fmt == VF_CT_PACK ? ".weight_packed" : ".weight";
    size_t sl = strlen(suffix);
    for (size_t i = 0; i < v->ck->n; i++) {
        const qv_st_entry *e = qv_checkpoint_entry(v->ck, i, NULL);
        size_t n = strlen(e->name);
        if (n <= sl || strcmp(e->name + n - sl, suffix))
            continue;
        if (v->fmt == VF_FAKE || (v->fmt == VF_CT_INT && e->dtype != QV_I8) || (v->fmt == VF_FP8 && e->dtype != QV_F8_E4M3))
            continue;
        QV_TRY(qv_strmap_put(&v->qmods, e->name, n - sl, 1, NULL));
        v->r->n_quantized++;
    }
    return QV_OK;
}

static bool is_qmod(const vctx *v, const char *module) { return qv_strmap_gets(&v->qmods, module, NULL); }

static qv_status read_int(vctx *v, const char *m, qv_qlinear *q)
{
    switch (v->fmt) {
    case VF_AWQ:
        return qv_awq_read(v->ck, m, q);
    case VF_GPTQ:
        return qv_gptq_read(v->ck, m, v->bits, v->gptq_v2, q);
    case VF_CT_PACK:
        return qv_ct_pack_read(v->ck, m, v->bits, v->sym, q);
    case VF_CT_INT:
        return qv_ct_int_read(v->ck, m, v->bits, q);
    default:
        return qv_fail(QV_ERR_INTERNAL, "%s: not an integer format", m);
    }
}

/* Re-packs what was read and compares with the file's bytes (no reference model needed). */
static qv_status repack_check(vctx *v, const char *m, const qv_qlinear *q)
{
    qv_qgeom g = {.co = q->co, .ci = q->ci, .bits = q->bits, .group = q->group, .sym = q->sym, .T = q->T};
    qv_olist l;
    qv_olist_init(&l);
    qv_status st;
    size_t dummy = 0;
    if (v->fmt == VF_AWQ)
        st = qv_awq_emit(&l, m, &g, q, NULL, &dummy);
    else if (v->fmt == VF_GPTQ)
        st = qv_gptq_emit(&l, m, &g, q, NULL, &dummy);
    else if (v->fmt == VF_CT_PACK)
        st = qv_ct_pack_emit(&l, m, &g, q);
    else
        st = qv_ct_int_emit(&l, m, &g, q);
    bool same = true;
    for (size_t k = 0; st == QV_OK && k < l.n; k++) {
        const qv_otensor *t = &l.items[k];
        if (v->fmt == VF_GPTQ && v->gptq_v2 && strstr(t->name, ".qzeros"))
            continue; /* our writer stores v1 zeros */
        qv_tensor f;
        const qv_st_entry *e = qv_checkpoint_find(v->ck, t->name, NULL);
        if (!e)
            continue; /* e.g. g_idx absent in the file */
        QV_TRY(qv_checkpoint_get(v->ck, t->name, &f));
        if ((size_t)(e->end - e->begin) != t->nbytes || f.dtype != t->dtype || memcmp(f.data, t->data, t->nbytes))
            same = false;
    }
    if (st == QV_OK) {
        float *d = qv_malloc((size_t)(q->co * q->ci) * sizeof *d, m);
        if (!d) {
            st = QV_ERR_NOMEM;
        } else {
            qv_qlinear_dequant(q, d);
            double mx = 0;
            for (int64_t i = 0; i < q->co * q->ci; i++)
                mx = fabs(d[i]) > mx || d[i] != d[i] ? fabs(d[i]) : mx;
            char what[96];
            snprintf(what, sizeof what, "%s (max |w| %.6g)", same ? "unpacked and re-packed identically" : "re-packed bytes DIFFER", mx);
            line(v, m, what, same ? 0 : INFINITY, same && mx == mx && mx != INFINITY);
            qv_free(d);
        }
    }
    qv_olist_free(&l);
    return st;
}

/* ---- comparisons against the reference ---------------------------------------------------------- */

static void compare(vctx *v, const char *name, const char *what, const float *a, const float *b, size_t n)
{
    double mx = 0;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (a[i] != a[i] || b[i] != b[i])
            d = (a[i] != a[i]) == (b[i] != b[i]) ? 0 : INFINITY;
        if (d > v->o->atol)
            bad++;
        if (d > mx)
            mx = d;
    }
    line(v, name, what, mx, bad == 0);
}

static qv_status check_int(vctx *v, const char *m, const float *w, int64_t co, int64_t ci)
{
    qv_qlinear q;
    QV_TRY(read_int(v, m, &q));
    qv_status st = QV_OK;
    if (q.co != co || q.ci != ci) {
        line(v, m, "shape differs from the reference", INFINITY, false);
        qv_qlinear_free(&q);
        return QV_OK;
    }
    q.T = v->T;
    qv_wq_spec s = {.bits = q.bits, .group = q.group == ci && (v->group <= 0 || v->fmt == VF_CT_INT) ? -1 : q.group,
                    .sym = q.sym, .T = v->T, .div = v->div};
    qv_qlinear r;
    float *a = qv_malloc((size_t)(co * ci) * sizeof *a, m), *b = qv_malloc((size_t)(co * ci) * sizeof *b, m);
    if (!a || !b)
        st = QV_ERR_NOMEM;
    if (st == QV_OK)
        st = qv_qlinear_quantize(&r, w, co, ci, &s, m);
    if (st == QV_OK) {
        qv_qlinear_dequant(&q, a);
        qv_qlinear_dequant(&r, b);
        qv_qlinear_free(&r);
        compare(v, m, "dequantized vs fake-quantized", a, b, (size_t)(co * ci));
    }
    qv_free(a);
    qv_free(b);
    qv_qlinear_free(&q);
    return st;
}

static qv_status check_fp8(vctx *v, const char *m, const float *w, int64_t co, int64_t ci, qv_dtype T)
{
    qv_fp8linear q, r;
    QV_TRY(qv_ct_fp8_read(v->ck, m, &q));
    if (q.co != co || q.ci != ci) {
        line(v, m, "shape differs from the reference", INFINITY, false);
        qv_fp8linear_free(&q);
        return QV_OK;
    }
    qv_status st = qv_fp8linear_quantize(&r, w, co, ci, q.per_tensor, T, m);
    if (st != QV_OK) {
        qv_fp8linear_free(&q);
        return st;
    }
    /* codes under the file's own scales: exact to the E4M3 grid */
    size_t bad = 0;
    double mx = 0;
    for (int64_t n = 0; n < co; n++) {
        float s = q.s[q.per_tensor ? 0 : n];
        for (int64_t k = 0; k < ci; k++) {
            uint8_t c = qv_f32_to_e4m3_sat(qv_round_to(w[n * ci + k] / s, T));
            if (c != q.c[n * ci + k]) {
                bad++;
                double d = fabs((double)qv_e4m3_to_f32(c) - (double)qv_e4m3_to_f32(q.c[n * ci + k])) * s;
                mx = d > mx ? d : mx;
            }
        }
    }
    line(v, m, "FP8 codes vs the reference under the file's scales", bad ? (mx > 0 ? mx : INFINITY) : 0, bad == 0);
    compare(v, m, "FP8 weight_scale vs recomputed", q.s, r.s, q.per_tensor ? 1 : (size_t)co);
    qv_fp8linear_free(&q);
    qv_fp8linear_free(&r);
    return QV_OK;
}

static qv_status check_plain(vctx *v, const char *name, const float *ref, size_t n)
{
    qv_tensor t;
    const qv_st_entry *e = qv_checkpoint_find(v->ck, name, NULL);
    if (!e) {
        line(v, name, "missing from the checkpoint", INFINITY, false);
        return QV_OK;
    }
    QV_TRY(qv_checkpoint_get(v->ck, name, &t));
    if ((size_t)qv_tensor_numel(&t) != n || !qv_dtype_is_float(t.dtype)) {
        line(v, name, "shape or dtype differs from the reference", INFINITY, false);
        return QV_OK;
    }
    float *a = qv_malloc(n ? n * sizeof *a : 1, name), *b = qv_malloc(n ? n * sizeof *b : 1, name);
    void *tmp = qv_malloc(n ? n * 4 : 1, name);
    qv_status st = a && b && tmp ? QV_OK : QV_ERR_NOMEM;
    if (st == QV_OK) {
        qv_convert(a, QV_F32, t.data, t.dtype, n);
        qv_convert(tmp, t.dtype, ref, QV_F32, n); /* the reference as the file's dtype holds it */
        qv_convert(b, QV_F32, tmp, t.dtype, n);
        compare(v, name, "values vs reference", a, b, n);
    }
    qv_free(a);
    qv_free(b);
    qv_free(tmp);
    return st;
}

static qv_status original_f32(const qv_tinfo *t, qv_dtype T, float **out, size_t *n)
{
    qv_tensor v;
    qv_st_view(t->file, t->e, &v);
    *n = (size_t)qv_tensor_numel(&v);
    *out = qv_malloc(*n ? *n * sizeof **out : 1, t->e->name);
    if (!*out)
        return QV_ERR_NOMEM;
    qv_convert(*out, QV_F32, v.data, v.dtype, *n);
    for (size_t i = 0; i < *n; i++)
        (*out)[i] = qv_round_to((*out)[i], T);
    return QV_OK;
}

static qv_status check_bytes(vctx *v, const qv_tinfo *t)
{
    qv_tensor a, b;
    const qv_st_entry *e = qv_checkpoint_find(v->ck, t->e->name, NULL);
    if (!e) {
        line(v, t->e->name, "missing from the checkpoint", INFINITY, false);
        return QV_OK;
    }
    QV_TRY(qv_checkpoint_get(v->ck, t->e->name, &a));
    qv_st_view(t->file, t->e, &b);
    bool same = a.dtype == b.dtype && e->end - e->begin == t->e->end - t->e->begin &&
                !memcmp(a.data, b.data, (size_t)(e->end - e->begin));
    line(v, t->e->name, "bytes vs reference", same ? 0 : INFINITY, same);
    return QV_OK;
}

static qv_status fake_reference(vctx *v, const qv_tinfo *t, const float *w, float **out)
{
    int64_t co = t->e->shape[0], ci = t->e->shape[1];
    qv_wq_spec s = {.bits = v->bits, .group = v->sym && v->group < 0 ? -1 : v->group, .sym = v->sym, .T = v->T, .div = v->div};
    qv_qlinear q;
    QV_TRY(qv_qlinear_quantize(&q, w, co, ci, &s, t->module));
    *out = qv_malloc((size_t)(co * ci) * sizeof **out, t->e->name);
    if (*out)
        qv_qlinear_dequant(&q, *out);
    qv_qlinear_free(&q);
    return *out ? QV_OK : QV_ERR_NOMEM;
}

static qv_status check_tensor(vctx *v, const qv_tinfo *t, const qv_wset *ws)
{
    const char *name = t->e->name;
    qv_wbuf *b = ws ? qv_wset_find(ws, name) : NULL;
    bool quant = v->fmt != VF_FAKE && is_qmod(v, t->module);
    size_t mlen = strlen(t->module);
    bool is_weight = !strcmp(name + mlen, ".weight");
    qv_dtype T = t->layer >= 0 ? v->T : (v->o->dtype != QV_DTYPE_COUNT ? v->o->dtype : t->e->dtype);
    if (!qv_dtype_is_float(t->e->dtype))
        return check_bytes(v, t);
    float *own = NULL, *fq = NULL;
    size_t n = 0;
    const float *w;
    if (t->e->ndim > 2 && !quant) { /* conv / position embeddings: values, in the file's dtype */
        QV_TRY(original_f32(t, T, &own, &n));
        qv_status st = check_plain(v, name, own, n);
        qv_free(own);
        return st;
    }
    if (b) {
        w = b->data;
        n = (size_t)(b->shape[0] * b->shape[1]);
    } else {
        QV_TRY(original_f32(t, T, &own, &n));
        w = own;
    }
    qv_status st = QV_OK;
    if (quant && is_weight) {
        if (v->fmt == VF_FP8)
            st = check_fp8(v, t->module, w, t->e->shape[0], t->e->shape[1], T);
        else
            st = check_int(v, t->module, w, t->e->shape[0], t->e->shape[1]);
    } else if (v->fmt == VF_FAKE && t->linear && t->layer >= 0) {
        st = fake_reference(v, t, w, &fq);
        if (st == QV_OK)
            st = check_plain(v, name, fq, n);
    } else if (quant && !qv_checkpoint_find(v->ck, name, NULL)) {
        /* compressed-tensors keeps no other parameter under a quantized module's prefix except the bias */
        line(v, name, "missing from the checkpoint", INFINITY, false);
    } else {
        st = check_plain(v, name, w, n);
    }
    qv_free(own);
    qv_free(fq);
    return st;
}

static qv_status run_ref(vctx *v)
{
    for (size_t li = 0; li < v->ref.n_layers; li++) {
        qv_wset ws;
        qv_wset_init(&ws);
        qv_status st = qv_mplan_load_layer(&v->ref, li, v->have_sc ? &v->sc : NULL, v->T, &ws, NULL);
        const qv_layer *L = &v->ref.layers[li];
        for (size_t k = 0; k < L->n && st == QV_OK; k++)
            st = check_tensor(v, &v->ref.t[L->tensors[k]], &ws);
        qv_wset_free(&ws);
        QV_TRY(st);
    }
    for (size_t i = 0; i < v->ref.n; i++)
        if (v->ref.t[i].layer < 0)
            QV_TRY(check_tensor(v, &v->ref.t[i], NULL));
    return QV_OK;
}

static qv_status run_noref(vctx *v)
{
    for (size_t i = 0; i < v->ck->n; i++) {
        const qv_st_entry *e = qv_checkpoint_entry(v->ck, i, NULL);
        const char *dot = strrchr(e->name, '.');
        if (!dot)
            continue;
        char *m = qv_strndup(e->name, (size_t)(dot - e->name));
        if (!m)
            return QV_ERR_NOMEM;
        const char *suffix = v->fmt == VF_AWQ || v->fmt == VF_GPTQ ? "qweight" : v->fmt == VF_CT_PACK ? "weight_packed" : "weight";
        qv_status st = QV_OK;
        if (is_qmod(v, m) && !strcmp(dot + 1, suffix)) {
            if (v->fmt == VF_FP8) {
                qv_fp8linear q;
                st = qv_ct_fp8_read(v->ck, m, &q);
                if (st == QV_OK) {
                    float *d = qv_malloc((size_t)(q.co * q.ci) * sizeof *d, m);
                    if (!d) {
                        st = QV_ERR_NOMEM;
                    } else {
                        qv_fp8linear_dequant(&q, d);
                        double mx = 0;
                        size_t nan = 0;
                        for (int64_t k = 0; k < q.co * q.ci; k++) {
                            nan += d[k] != d[k];
                            mx = fabs(d[k]) > mx ? fabs(d[k]) : mx;
                        }
                        char what[96];
                        snprintf(what, sizeof what, "%s (max |w| %.6g)", nan ? "FP8 codes include NaN" : "FP8 codes read", mx);
                        line(v, m, what, nan ? INFINITY : 0, nan == 0);
                        qv_free(d);
                    }
                    qv_fp8linear_free(&q);
                }
            } else {
                qv_qlinear q;
                st = read_int(v, m, &q);
                if (st == QV_OK)
                    st = repack_check(v, m, &q);
                qv_qlinear_free(&q);
            }
        }
        qv_free(m);
        QV_TRY(st);
    }
    return QV_OK;
}

qv_status qv_verify_run(const qv_verify_opts *o, qv_verify_result *r)
{
    vctx v;
    memset(&v, 0, sizeof v);
    memset(r, 0, sizeof *r);
    v.o = o;
    v.r = r;
    v.group = -1;
    qv_strmap_init(&v.qmods);
    qv_status st = qv_is_dir(o->path) ? QV_OK : qv_fail(QV_ERR_IO, "%s: not a model folder", o->path);
    if (st == QV_OK)
        st = parse_qconfig(&v);
    if (st == QV_OK)
        st = qv_checkpoint_open(o->path, &v.ck);
    if (st == QV_OK)
        st = collect_modules(&v);
    if (st == QV_OK && v.fmt != VF_FAKE && r->n_quantized == 0)
        st = qv_fail(QV_ERR_FORMAT, "%s: config says %s but no quantized module was found", o->path, r->format);
    if (st == QV_OK && o->against) {
        st = qv_mplan_open(o->against, &v.ref);
        v.have_ref = st == QV_OK;
        v.T = o->dtype != QV_DTYPE_COUNT ? o->dtype : v.ref.T;
        if (st == QV_OK && o->scales) {
            st = qv_scales_load(o->scales, &v.sc);
            v.have_sc = st == QV_OK;
            if (st == QV_OK)
                st = qv_scales_resolve(&v.sc, qv_mplan_has_module, &v.ref);
        }
        const qv_search_config *c = v.have_sc && v.sc.cfg.present ? &v.sc.cfg : NULL;
        v.div = o->division >= 0 ? (o->division ? QV_WQ_DIV_CPU : QV_WQ_DIV_CUDA)
                                 : (c && c->division_cpu ? QV_WQ_DIV_CPU : QV_WQ_DIV_CUDA);
        if (st == QV_OK && v.fmt == VF_FAKE) {
            if (!c)
                st = qv_fail(QV_ERR_INVALID, "%s: a fake-quantized checkpoint carries no bit width: give --scales DIR with its search.json",
                             o->path);
            else if (c->w_bit >= 16)
                st = qv_fail(QV_ERR_INVALID, "%s: w_bit %d: nothing was quantized", v.sc.path, c->w_bit);
            else {
                /* W-A, and SmoothQuant at any a_bit (§4.3): per output channel, symmetric */
                const bool pc = c->a_bit < 16 || !strcmp(c->method, "smoothquant");
                v.bits = c->w_bit;
                v.sym = pc || !c->zero_point;
                v.group = pc ? -1 : c->w_group;
                v.have_bits = true;
            }
        }
        if (st == QV_OK)
            st = run_ref(&v);
    } else if (st == QV_OK) {
        if (o->scales)
            st = qv_fail(QV_ERR_INVALID, "--scales needs --against MODEL");
        else if (v.fmt == VF_FAKE)
            st = qv_fail(QV_ERR_INVALID, "%s: holds no packed weights; compare it with --against MODEL --scales DIR", o->path);
        else
            st = run_noref(&v);
    }
    if (v.have_sc)
        qv_scales_free(&v.sc);
    if (v.have_ref)
        qv_mplan_close(&v.ref);
    qv_checkpoint_close(v.ck);
    qv_strmap_free(&v.qmods);
    return st;
}
