/* kernels_util.c — see kernels_util.h. */
#include "kernels_util.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fp.h"

int qt_tables(qt_table *out)
{
    static int logged;
    int n = 0;
    char ran[128] = "", skipped[128] = "";
    for (int i = 0; i < QV_ISA_COUNT; i++) {
        const qv_kernel_table *k = qv_kernels_for((qv_isa)i);
        const char *name = qv_isa_str((qv_isa)i);
        if (k) {
            out[n++] = (qt_table){k, name};
            strcat(ran, " ");
            strcat(ran, name);
        } else {
            strcat(skipped, " ");
            strcat(skipped, name);
        }
    }
    if (qv_kernels_emu512()) {
        out[n++] = (qt_table){qv_kernels_emu512(), "emu512"};
        strcat(ran, " emu512");
    }
    if (!logged++)
        fprintf(stderr, "[----] kernel sets tested against the scalar reference:%s; not supported by this host:%s; "
                    "active (QVLM_ISA): %s\n",
                    ran, *skipped ? skipped : " none", qv_isa_str(qv_kernels()->isa));
    return n;
}

float qt_uniform(qt_rng *r) { return (float)(qt_next(r) >> 40) * (1.0f / 16777216.0f); }

float qt_normal(qt_rng *r)
{
    double u = ((double)(qt_next(r) >> 11) + 0.5) / 9007199254740992.0;
    double v = (double)(qt_next(r) >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

size_t qt_t_size(qv_dtype dt) { return dt == QV_F32 ? 4 : 2; }

const char *qt_dt_name(qv_dtype dt) { return dt == QV_F32 ? "F32" : dt == QV_BF16 ? "BF16" : "F16"; }

void *qt_t_from_f32(const float *v, size_t n, qv_dtype dt)
{
    void *p = malloc((n ? n : 1) * qt_t_size(dt));
    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i++) {
        if (dt == QV_F32)
            ((float *)p)[i] = v[i];
        else
            ((uint16_t *)p)[i] = dt == QV_BF16 ? qv_f32_to_bf16(v[i]) : qv_f32_to_f16(v[i]);
    }
    return p;
}

float qt_t_get(const void *p, qv_dtype dt, size_t i)
{
    if (dt == QV_F32)
        return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    return dt == QV_BF16 ? qv_bf16_to_f32(h) : qv_f16_to_f32(h);
}
