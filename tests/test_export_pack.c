/* test_export_pack.c — bit packing and the per-format tensors of one quantized Linear:
 * golden words from FORMATS.md's worked examples (AWQ interleave §2.4, GPTQ 4/3-bit streams and
 * the zero - 1 convention §3.2/§3.3, compressed-tensors signed offset §4.3), and emit -> read
 * round trips on random codes for every format and bit width. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/formats.h"
#include "export/pack.h"
#include "fp.h"
#include "util/testutil.h"

Test(export_pack, awq_interleave_worked_example)
{
    uint8_t codes[8] = {1, 2, 3, 4, 5, 6, 7, 8}, back[8];
    uint32_t w;
    qv_pack_awq(&w, codes, 8);
    cr_assert_eq(w, 0x86427531u, "AWQ word %08x", w);
    cr_assert_eq((int32_t)w, -2042464975);
    qv_unpack_awq(back, &w, 8);
    cr_assert_arr_eq(back, codes, 8);
    /* the plain packing of the same codes, which a wrong reader would assume */
    qv_pack_stream(&w, 1, codes, 1, 8, 4);
    cr_assert_eq(w, 0x87654321u);
}

Test(export_pack, gptq_streams_worked_examples)
{
    uint8_t c4[8] = {1, 2, 3, 4, 5, 6, 7, 8}, c3[32], back[32];
    uint32_t w[3];
    qv_pack_stream(w, 1, c4, 1, 8, 4);
    cr_assert_eq(w[0], 0x87654321u);
    for (int i = 0; i < 32; i++)
        c3[i] = (uint8_t)(i % 8);
    cr_assert_eq(qv_pack_words(32, 3), 3);
    qv_pack_stream(w, 1, c3, 1, 32, 3);
    cr_assert_eq(w[0], 0x88FAC688u, "%08x", w[0]);
    cr_assert_eq(w[1], 0xC688FAC6u, "%08x", w[1]);
    cr_assert_eq(w[2], 0xFAC688FAu, "%08x", w[2]);
    qv_unpack_stream(back, 1, w, 1, 32, 3);
    cr_assert_arr_eq(back, c3, 32);
}

Test(export_pack, gptq_symmetric_zero_words)
{
    /* symmetric 4-bit: z = 8 stored as z - 1 = 7 in every field; 8-bit: 127 */
    qv_qlinear q;
    cr_assert_eq(qv_qlinear_alloc(&q, 8, 32, 4, 32, true, QV_F16), QV_OK);
    memset(q.u, 8, 8 * 32);
    memset(q.z, 8, 8);
    for (int i = 0; i < 8; i++)
        q.s[i] = 0.5f;
    qv_qgeom g = {.co = 8, .ci = 32, .bits = 4, .group = 32, .sym = true, .T = QV_F16};
    qv_olist l;
    qv_olist_init(&l);
    cr_assert_eq(qv_gptq_emit(&l, "m", &g, &q, NULL, NULL), QV_OK, "%s", qv_last_error());
    const qv_otensor *qz = &l.items[1];
    cr_assert_str_eq(qz->name, "m.qzeros");
    uint32_t word;
    qv_words_load(&word, qz->data, 1);
    cr_assert_eq(word, 0x77777777u, "%08x", word);
    qv_olist_free(&l);
    qv_qlinear_free(&q);

    cr_assert_eq(qv_qlinear_alloc(&q, 4, 32, 8, 32, true, QV_F16), QV_OK);
    memset(q.u, 128, 4 * 32);
    memset(q.z, 128, 4);
    for (int i = 0; i < 4; i++)
        q.s[i] = 1.0f;
    g = (qv_qgeom){.co = 4, .ci = 32, .bits = 8, .group = 32, .sym = true, .T = QV_F16};
    cr_assert_eq(qv_gptq_emit(&l, "m", &g, &q, NULL, NULL), QV_OK);
    qv_words_load(&word, l.items[1].data, 1);
    cr_assert_eq(word, 0x7F7F7F7Fu, "%08x", word);
    qv_olist_free(&l);
    qv_qlinear_free(&q);
}

Test(export_pack, gptq_refuses_zero_point_zero)
{
    qv_qlinear q;
    cr_assert_eq(qv_qlinear_alloc(&q, 8, 32, 4, 32, false, QV_F16), QV_OK);
    memset(q.u, 3, 8 * 32);
    memset(q.z, 5, 8);
    q.z[6] = 0;
    for (int i = 0; i < 8; i++)
        q.s[i] = 0.25f;
    qv_qgeom g = {.co = 8, .ci = 32, .bits = 4, .group = 32, .sym = false, .T = QV_F16};
    qv_olist l;
    qv_olist_init(&l);
    cr_assert_eq(qv_gptq_emit(&l, "layers.0.mlp", &g, &q, NULL, NULL), QV_ERR_UNSUPPORTED);
    cr_assert(strstr(qv_last_error(), "layers.0.mlp: output 6") != NULL, "%s", qv_last_error());
    qv_olist_free(&l);
    qv_qlinear_free(&q);
}

Test(export_pack, ct_signed_offset_worked_example)
{
    /* signed codes -8..-1 for inputs 0..7 are stored as u = 0..7 -> 0x76543210 */
    qv_qlinear q;
    cr_assert_eq(qv_qlinear_alloc(&q, 1, 8, 4, 8, true, QV_BF16), QV_OK);
    for (int k = 0; k < 8; k++)
        q.u[k] = (uint8_t)(k - 8 + 8);
    q.z[0] = 8;
    q.s[0] = 1.0f;
    qv_qgeom g = {.co = 1, .ci = 8, .bits = 4, .group = 8, .sym = true, .T = QV_BF16};
    qv_olist l;
    qv_olist_init(&l);
    cr_assert_eq(qv_ct_pack_emit(&l, "m", &g, &q), QV_OK);
    uint32_t w;
    qv_words_load(&w, l.items[0].data, 1);
    cr_assert_eq(w, 0x76543210u, "%08x", w);
    cr_assert_eq(l.n, 3, "symmetric: no zero point tensor");
    cr_assert_str_eq(l.items[2].name, "m.weight_shape");
    cr_assert_eq(l.items[2].dtype, QV_I64);
    qv_olist_free(&l);
    qv_qlinear_free(&q);
}

Test(export_pack, dense_stream_round_trips_every_width)
{
    srand(7);
    for (int b = 1; b <= 8; b++)
        for (int n = 1; n <= 100; n += 3) {
            uint8_t src[100 * 3], back[100 * 3];
            uint32_t w[100 * 3];
            for (int i = 0; i < n; i++)
                src[3 * i] = (uint8_t)(rand() & ((1 << b) - 1));
            /* strided source and destination (columns of a matrix) */
            qv_pack_stream(w, 2, src, 3, n, b);
            qv_unpack_stream(back, 3, w, 2, n, b);
            for (int i = 0; i < n; i++)
                cr_assert_eq(back[3 * i], src[3 * i], "b=%d n=%d i=%d", b, n, i);
            /* padding bits past the last code are zero */
            int used = n * b, nw = (int)qv_pack_words(n, b);
            if (used % 32)
                cr_assert_eq(w[2 * (nw - 1)] >> (used % 32), 0u, "b=%d n=%d", b, n);
        }
}

Test(export_pack, floor_packing_unpacks)
{
    /* compressed-tensors 0.17: 10 three-bit codes per word, two high bits zero */
    uint8_t c[20], back[20];
    uint32_t w[2] = {0, 0};
    for (int j = 0; j < 20; j++) {
        c[j] = (uint8_t)((j * 5 + 1) % 8);
        w[j / 10] |= (uint32_t)c[j] << (3 * (j % 10));
    }
    cr_assert_eq(qv_pack_words_floor(20, 3), 2);
    qv_unpack_floor(back, w, 20, 3);
    cr_assert_arr_eq(back, c, 20);
}

static void random_qlinear(qv_qlinear *q, int64_t co, int64_t ci, int bits, int64_t group, bool sym, qv_dtype T)
{
    cr_assert_eq(qv_qlinear_alloc(q, co, ci, bits, group, sym, T), QV_OK);
    for (int64_t i = 0; i < co * ci; i++)
        q->u[i] = (uint8_t)(rand() & ((1 << bits) - 1));
    for (int64_t i = 0; i < co * q->ng; i++) {
        q->z[i] = sym ? (uint8_t)(1 << (bits - 1)) : (uint8_t)(1 + rand() % ((1 << bits) - 1));
        /* values every scale dtype holds exactly (F16 and BF16) */
        q->s[i] = (float)(1 + rand() % 64) / 1024.0f * ((rand() & 1) ? 1 : -1);
    }
}

static void assert_same(const qv_qlinear *a, const qv_qlinear *b, const char *what)
{
    cr_assert_eq(a->co, b->co, "%s", what);
    cr_assert_eq(a->ci, b->ci, "%s", what);
    cr_assert_eq(a->ng, b->ng, "%s", what);
    cr_assert_arr_eq(a->u, b->u, (size_t)(a->co * a->ci), "%s codes", what);
    cr_assert_arr_eq(a->z, b->z, (size_t)(a->co * a->ng), "%s zeros", what);
    for (int64_t i = 0; i < a->co * a->ng; i++)
        cr_assert_eq(a->s[i], b->s[i], "%s scale %lld", what, (long long)i);
}

/* Writes the olist as a checkpoint file so the readers see what a loader would. */
static qv_checkpoint *as_checkpoint(const qv_olist *l)
{
    char *dir = qt_tmpdir(), path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    qv_st_item items[16];
    cr_assert(l->n <= 16);
    for (size_t k = 0; k < l->n; k++) {
        items[k] = (qv_st_item){.name = l->items[k].name, .dtype = l->items[k].dtype, .ndim = l->items[k].ndim,
                                .data = l->items[k].data};
        memcpy(items[k].shape, l->items[k].shape, sizeof items[k].shape);
    }
    cr_assert_eq(qv_st_write_file(path, items, l->n, NULL, 0), QV_OK, "%s", qv_last_error());
    qv_checkpoint *ck;
    cr_assert_eq(qv_checkpoint_open(path, &ck), QV_OK, "%s", qv_last_error());
    free(dir);
    return ck;
}

Test(export_pack, formats_round_trip_random_codes)
{
    srand(11);
    const int64_t co = 64, ci = 256;
    for (int bits = 2; bits <= 8; bits++)
        for (int sym = 0; sym <= 1; sym++)
            for (int gi = 0; gi < 2; gi++) {
                int64_t group = gi ? 64 : ci;
                char what[64];
                qv_qlinear q, r;
                random_qlinear(&q, co, ci, bits, group, sym, QV_BF16);
                qv_qgeom g = {.co = co, .ci = ci, .bits = bits, .group = group, .sym = sym, .T = QV_BF16};
                qv_olist l;
                qv_checkpoint *ck;
                /* compressed-tensors pack-quantized: every width, both symmetries */
                qv_olist_init(&l);
                cr_assert_eq(qv_ct_pack_emit(&l, "m", &g, &q), QV_OK, "%s", qv_last_error());
                ck = as_checkpoint(&l);
                cr_assert_eq(qv_ct_pack_read(ck, "m", bits, sym, &r), QV_OK, "%s", qv_last_error());
                snprintf(what, sizeof what, "ct b%d sym%d g%lld", bits, sym, (long long)group);
                assert_same(&q, &r, what);
                qv_qlinear_free(&r);
                qv_checkpoint_close(ck);
                qv_olist_free(&l);
                /* GPTQ: 2, 3, 4, 8 bits (zero points >= 1 by construction) */
                if (bits == 2 || bits == 3 || bits == 4 || bits == 8) {
                    qv_qlinear_free(&q);
                    random_qlinear(&q, co, ci, bits, group, sym, QV_F16);
                    qv_olist_init(&l);
                    cr_assert_eq(qv_gptq_emit(&l, "m", &g, &q, NULL, NULL), QV_OK, "%s", qv_last_error());
                    ck = as_checkpoint(&l);
                    cr_assert_eq(qv_gptq_read(ck, "m", bits, false, &r), QV_OK, "%s", qv_last_error());
                    snprintf(what, sizeof what, "gptq b%d sym%d g%lld", bits, sym, (long long)group);
                    assert_same(&q, &r, what);
                    qv_qlinear_free(&r);
                    qv_checkpoint_close(ck);
                    qv_olist_free(&l);
                }
                /* AWQ: 4-bit asymmetric with groups */
                if (bits == 4 && !sym && gi) {
                    qv_olist_init(&l);
                    cr_assert_eq(qv_awq_emit(&l, "m", &g, &q, NULL, NULL), QV_OK, "%s", qv_last_error());
                    ck = as_checkpoint(&l);
                    cr_assert_eq(qv_awq_read(ck, "m", &r), QV_OK, "%s", qv_last_error());
                    assert_same(&q, &r, "awq");
                    qv_qlinear_free(&r);
                    qv_checkpoint_close(ck);
                    qv_olist_free(&l);
                }
                /* int-quantized: symmetric per channel */
                if (sym && !gi) {
                    qv_olist_init(&l);
                    cr_assert_eq(qv_ct_int_emit(&l, "m", &g, &q), QV_OK, "%s", qv_last_error());
                    ck = as_checkpoint(&l);
                    cr_assert_eq(qv_ct_int_read(ck, "m", bits, &r), QV_OK, "%s", qv_last_error());
                    snprintf(what, sizeof what, "int b%d", bits);
                    assert_same(&q, &r, what);
                    qv_qlinear_free(&r);
                    qv_checkpoint_close(ck);
                    qv_olist_free(&l);
                }
                qv_qlinear_free(&q);
            }
}

Test(export_pack, fp8_round_trip_and_dequant)
{
    srand(3);
    const int64_t co = 16, ci = 48;
    float w[16 * 48], d[16 * 48];
    for (int i = 0; i < co * ci; i++)
        w[i] = qv_round_bf16(((float)rand() / RAND_MAX - 0.5f) * (i % 7 + 1));
    for (int pt = 0; pt <= 1; pt++) {
        qv_fp8linear q, r;
        cr_assert_eq(qv_fp8linear_quantize(&q, w, co, ci, pt, QV_BF16, "m"), QV_OK);
        float in = 0.5f;
        qv_olist l;
        qv_olist_init(&l);
        cr_assert_eq(qv_ct_fp8_emit(&l, "m", co, ci, pt, QV_BF16, &q, &in), QV_OK);
        cr_assert_eq(l.n, 3);
        qv_checkpoint *ck = as_checkpoint(&l);
        cr_assert_eq(qv_ct_fp8_read(ck, "m", &r), QV_OK, "%s", qv_last_error());
        cr_assert_eq(r.per_tensor, (bool)pt);
        cr_assert_arr_eq(r.c, q.c, (size_t)(co * ci));
        /* every code dequantizes within half a step of the weight, and never to NaN */
        qv_fp8linear_dequant(&r, d);
        for (int i = 0; i < co * ci; i++) {
            float s = r.s[pt ? 0 : i / ci];
            cr_assert(d[i] == d[i]);
            cr_assert(fabsf(d[i] - w[i]) <= fabsf(w[i]) / 8 + s * 0.002f + 1e-6f, "i=%d %g vs %g", i, d[i], w[i]);
        }
        qv_checkpoint_close(ck);
        qv_olist_free(&l);
        qv_fp8linear_free(&q);
        qv_fp8linear_free(&r);
    }
}

Test(export_pack, awq_and_gptq_shape_rules)
{
    qv_qgeom g = {.co = 12, .ci = 256, .bits = 4, .group = 128, .T = QV_F16};
    cr_assert_eq(qv_awq_check(&g, "x"), QV_ERR_UNSUPPORTED); /* out % 8 */
    g.co = 16;
    cr_assert_eq(qv_awq_check(&g, "x"), QV_OK);
    g.bits = 3;
    cr_assert_eq(qv_awq_check(&g, "x"), QV_ERR_UNSUPPORTED);
    cr_assert(strstr(qv_last_error(), "4-bit") != NULL);
    g.bits = 3;
    g.co = 48;
    g.ci = 48; /* 3-bit GPTQ needs multiples of 32 */
    g.group = 48;
    cr_assert_eq(qv_gptq_check(&g, "x"), QV_ERR_UNSUPPORTED);
    g.bits = 5;
    cr_assert_eq(qv_gptq_check(&g, "x"), QV_ERR_UNSUPPORTED);
}

Test(export_pack, nan_weight_is_refused_with_its_place)
{
    /* a NaN in row 40 (second block of rows), group 1: the error names the layer, row and group */
    const int64_t co = 64, ci = 256;
    float *w = calloc((size_t)(co * ci), sizeof *w);
    for (int64_t i = 0; i < co * ci; i++)
        w[i] = (float)((i * 37) % 11) - 5.0f;
    w[40 * ci + 130] = NAN;
    qv_wq_spec s = {.bits = 4, .group = 128, .sym = false, .T = QV_F32, .div = QV_WQ_DIV_CUDA};
    qv_qlinear q;
    cr_assert_eq(qv_qlinear_quantize(&q, w, co, ci, &s, "model.layers.3.mlp.up_proj"), QV_ERR_INVALID);
    cr_assert(strstr(qv_last_error(), "model.layers.3.mlp.up_proj: row 40, group 1") != NULL, "%s", qv_last_error());
    free(w);
}
