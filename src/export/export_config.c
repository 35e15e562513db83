/* export_config.c — config.json of an export: the quantization_config of each format (FORMATS.md
 * §2.1 AWQ, §3.6 GPTQ, §4.1 compressed-tensors) and the dtype keys AWQ/GPTQ need (float16). */
#include <stdio.h>
#include <string.h>

#include "export_impl.h"
#include "outdir.h"

static char *layer_container(const xctx *x)
{
    if (!x->p.n_layers)
        return NULL;
    const char *p = x->p.layers[0].prefix;
    size_t n = strlen(p) - 1; /* drop the final '.' */
    while (n && p[n - 1] != '.')
        n--;
    return n ? qv_strndup(p, n - 1) : NULL;
}

qv_status qv_xp_write_config(xctx *x)
{
    qv_json *q = NULL;
    const char *dt = x->o->dtype != QV_DTYPE_COUNT ? qv_torch_dtype_name(x->o->dtype) : NULL;
    qv_ct_args w, in;
    memset(&in, 0, sizeof in);
    switch (x->o->format) {
    case QV_FMT_AWQ:
        q = qv_qconfig_awq(x->qs.bits, x->qs.group, x->p.keep_prefix, x->p.n_prefix);
        dt = "float16"; /* vLLM's AWQ kernels take FP16 activations only (FORMATS.md §2.5) */
        snprintf(x->st->detail, sizeof x->st->detail, "gemm");
        break;
    case QV_FMT_GPTQ: {
        char **re = qv_calloc(x->p.n_prefix ? x->p.n_prefix : 1, sizeof *re, "gptq dynamic");
        char *block = layer_container(x);
        for (size_t i = 0; re && i < x->p.n_prefix; i++)
            re[i] = qv_asprintf("%s\\..*", x->p.keep_prefix[i]);
        if (re)
            q = qv_qconfig_gptq(x->qs.bits, x->qs.group > 0 ? x->qs.group : -1, x->qs.sym, re, x->p.n_prefix, block);
        for (size_t i = 0; re && i < x->p.n_prefix; i++)
            qv_free(re[i]);
        qv_free(re);
        qv_free(block);
        dt = "float16";
        snprintf(x->st->detail, sizeof x->st->detail, "gptq v1");
        break;
    }
    case QV_FMT_CT: {
        bool wa = x->qs.a_bit < 16;
        memset(&w, 0, sizeof w);
        w.present = true;
        w.num_bits = x->qs.bits;
        w.symmetric = wa || x->qs.sym;
        w.group_size = wa || x->qs.group <= 0 ? -1 : x->qs.group;
        snprintf(w.strategy, sizeof w.strategy, "%s", w.group_size > 0 ? "group" : "channel");
        snprintf(w.observer, sizeof w.observer, "minmax");
        if (wa) {
            in.present = true;
            in.num_bits = x->qs.a_bit;
            in.symmetric = true;
            in.dynamic = true;
            snprintf(in.strategy, sizeof in.strategy, "token");
        }
        qv_recipe r;
        memset(&r, 0, sizeof r);
        qv_status st = QV_OK;
        const qv_recipe *src = x->have_rc ? &x->rc : &r;
        if (!x->have_rc) {
            st = qv_recipe_add(&r.targets, &r.n_targets, "Linear");
            if (st == QV_OK)
                qv_xp_default_ignore(x, &r, &st);
        }
        const char *fmt = x->ct_int ? "int-quantized" : "pack-quantized";
        if (st == QV_OK)
            q = qv_qconfig_ct(fmt, &w, wa ? &in : NULL, NULL, src->targets, src->n_targets, src->ignore, src->n_ignore);
        qv_recipe_free(&r);
        QV_TRY(st);
        snprintf(x->st->detail, sizeof x->st->detail, "%s", fmt);
        break;
    }
    case QV_FMT_FP8:
        q = qv_qconfig_ct("float-quantized", &x->rc.weights, x->rc.input.present ? &x->rc.input : NULL,
                          x->rc.kv.present ? &x->rc.kv : NULL, x->rc.targets, x->rc.n_targets, x->rc.ignore, x->rc.n_ignore);
        snprintf(x->st->detail, sizeof x->st->detail, "float-quantized (%s)", x->rc.scheme[0] ? x->rc.scheme : "recipe");
        break;
    default:
        snprintf(x->st->detail, sizeof x->st->detail, "fake-quantized %s", qv_torch_dtype_name(x->o->dtype != QV_DTYPE_COUNT ? x->o->dtype : x->T));
        break;
    }
    if (x->o->format != QV_FMT_FAKE && !q)
        return QV_ERR_NOMEM;
    return qv_outdir_write_config(x->o->model, x->tmp, q, dt);
}
