/* test_vision.c — the vision towers, projectors and multimodal embeddings against the PyTorch
 * goldens (fixtures README §6, §13.5, §15.3; tolerance rel ≤ 1e-4 of §11, measured ≤ 1.4e-6)
 * and against plain references written here (pixel shuffle as PyTorch's view/permute chain,
 * bicubic position resampling, a double-precision Qwen2.5-VL window-attention tower).
 *
 * Goldens kept in tests/fixtures (scripts/fixture_slice.py of /work/shared/fixtures):
 *   internvl2-qwen2-tiny/vision.safetensors   vision.embeddings.out.sample0 rows 0–256,
 *                                             vision.last_hidden_state tile 0, projector.in.sample0 rows 0–63
 *   qwen2-vl-tiny/forward.safetensors         patch_embed / blocks.0 sample-0 rows 0–127, blocks.1.out and
 *                                             merger.out rows of image 0, rot_pos_ids, llm.inputs_embeds sample 0
 *   llava-onevision-qwen2-tiny/forward.safetensors  embeddings / encoder rows 0–127, projector rows 0–255,
 *                                             image_newline, llm.inputs_embeds.sample0 rows 0–255
 * Pixels come from the calibration JPEGs through src/image (bit-exact per test_preprocess). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llm/llm.h"
#include "util/mmutil.h"
#include "util/testutil.h"
#include "vision/internvit.h"
#include "vision/vit_block.h"
#include "vision/projector.h"
#include "vision/vision.h"

#define IVL "models/internvl2-qwen2-tiny"
#define Q2VL "models/qwen2-vl-tiny"
#define LLAVA "models/llava-onevision-qwen2-tiny"

/* ---- helpers ------------------------------------------------------------------------------- */

typedef struct mem_px {
    const float *px;
    int64_t per_unit;     /* tile towers: floats per unit */
    const int64_t *row0;  /* Qwen2-VL: first patch row of each image */
    int64_t pd;
} mem_px;

static qv_status mem_get(void *ctx, int64_t u0, int64_t n, float *dst)
{
    const mem_px *m = ctx;
    if (m->row0)
        memcpy(dst, m->px + m->row0[u0] * m->pd, (size_t)((m->row0[u0 + n] - m->row0[u0]) * m->pd) * sizeof *dst);
    else
        memcpy(dst, m->px + u0 * m->per_unit, (size_t)(n * m->per_unit) * sizeof *dst);
    return QV_OK;
}

/* Captured dumps, sized from the tower's declarations. */
typedef struct cap {
    int n;
    char names[16][64];
    float *buf[16];
    int64_t width[16];
} cap;

static bool cap_want(void *ctx, const char *name)
{
    const cap *c = ctx;
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->names[i], name))
            return true;
    return false;
}

static qv_status cap_put(void *ctx, const char *name, int64_t row0, int64_t nrows, const float *rows)
{
    cap *c = ctx;
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->names[i], name))
            memcpy(c->buf[i] + row0 * c->width[i], rows, (size_t)(nrows * c->width[i]) * sizeof(float));
    return QV_OK;
}

static float *cap_add(cap *c, const qv_vision *v, const qv_vision_input *in, const char *name)
{
    qv_vision_dump_decl d[64];
    int n = qv_vision_dump_decls(v, in, d, 64);
    for (int i = 0; i < n; i++)
        if (!strcmp(d[i].name, name)) {
            size_t sz = 1;
            for (int k = 0; k < d[i].ndim; k++)
                sz *= (size_t)d[i].shape[k];
            snprintf(c->names[c->n], sizeof c->names[c->n], "%s", name);
            c->width[c->n] = d[i].shape[d[i].ndim - 1];
            c->buf[c->n] = calloc(sz, sizeof(float));
            return c->buf[c->n++];
        }
    cr_assert_fail("the tower declares no dump %s", name);
    return NULL;
}

static qv_vision *open_vision(const char *path, qv_model_config *cfg, qv_checkpoint **ck, int64_t max_units,
                              int64_t max_tokens)
{
    qt_open_model(path, cfg, ck);
    qv_vision *v = NULL;
    const qv_vision_opts o = {QV_F32, max_units, max_tokens, 0};
    cr_assert_eq(qv_vision_open(cfg, *ck, path, &o, &v), QV_OK, "%s", qv_last_error());
    return v;
}

static void assert_rel(const float *got, const float *want, size_t n, double tol, const char *what)
{
    double r = qt_max_rel(got, want, n);
    cr_assert_leq(r, tol, "%s: rel %.3g > %.3g", what, r, tol);
}

static int64_t *ids_of(const char *rel, int64_t *B, int64_t *L)
{
    qv_st_file *f = qt_open_st(rel);
    qv_tensor t;
    cr_assert_eq(qv_st_get(f, "input_ids", &t), QV_OK);
    *B = t.shape[0], *L = t.shape[1];
    int64_t *ids = malloc((size_t)(*B * *L) * sizeof *ids);
    qv_convert(ids, QV_I64, t.data, t.dtype, (size_t)(*B * *L));
    qv_st_close(f);
    return ids;
}

/* ---- InternVL ------------------------------------------------------------------------------- */

Test(vision, internvit_tile_matches_golden, .timeout = 300)
{
    qv_model_config cfg;
    qv_checkpoint *ck;
    qv_vision *v = open_vision(qt_fixture(IVL), &cfg, &ck, 0, 0);
    cr_assert_eq(qv_vision_kind_of(v), QV_VISION_INTERNVIT);
    cr_assert_eq(qv_vision_image_token(v), 2005); /* <IMG_CONTEXT> of added_tokens.json */
    float *px = qt_internvl_pixels(1);
    mem_px m = {px, 3 * 448 * 448, NULL, 0};
    qv_vision_input in = {1, 448, 448, NULL, NULL, &m, mem_get};
    cap c = {0};
    float *emb = cap_add(&c, v, &in, "vision.embeddings.out.sample0");
    float *last = cap_add(&c, v, &in, "vision.last_hidden_state");
    float *pin = cap_add(&c, v, &in, "projector.in.sample0");
    float *pout = cap_add(&c, v, &in, "projector.out");
    const qv_llm_dump dump = {&c, cap_want, cap_put};
    cr_assert_eq(qv_vision_unit_rows(v, &in, 0), 256);
    float *out = malloc(256 * 128 * sizeof *out);
    cr_assert_eq(qv_vision_encode(v, &in, 0, 1, out, &dump), QV_OK, "%s", qv_last_error());
    cr_assert_arr_eq(out, pout, 256 * 128 * sizeof *out);

    qv_st_file *g = qt_open_st("goldens/internvl2-qwen2-tiny/vision.safetensors");
    qv_tensor t;
    float *ge = qt_tensor_f32(g, "vision.embeddings.out.sample0", &t);
    assert_rel(emb, ge, 257 * 64, 1e-4, "vision.embeddings.out.sample0");
    float *gl = qt_tensor_f32(g, "vision.last_hidden_state", &t);
    assert_rel(last, gl, 1025 * 64, 1e-4, "vision.last_hidden_state");
    float *gp = qt_tensor_f32(g, "projector.in.sample0", &t);
    assert_rel(pin, gp, 64 * 256, 1e-4, "projector.in.sample0");
    /* projector.out = the golden inputs_embeds rows at sample 0's <IMG_CONTEXT> positions */
    int64_t B, L;
    int64_t *ids = ids_of("goldens/internvl2-qwen2-tiny/calib_batch.safetensors", &B, &L);
    qv_st_file *fg = qt_open_st("goldens/internvl2-qwen2-tiny/forward.safetensors");
    float *gi = qt_tensor_f32(fg, "llm.inputs_embeds", &t);
    float *want = malloc(256 * 128 * sizeof *want);
    int k = 0;
    for (int64_t i = 0; i < L; i++)
        if (ids[i] == 2005)
            memcpy(want + 128 * k++, gi + i * 128, 128 * sizeof *want);
    cr_assert_eq(k, 256);
    assert_rel(out, want, 256 * 128, 1e-4, "projector.out");
    qv_vision_close(v);
    qv_checkpoint_close(ck);
}

/* Every sample's LLM input embeddings against the golden, with the tower run 1 and 3 tiles at a
 * time and samples asked out of order: the chunking never changes a value beyond rounding. */
Test(vision, internvl_inputs_embeds_streamed, .timeout = 600)
{
    qv_llm *m = NULL;
    cr_assert_eq(qv_llm_open(qt_fixture(IVL), NULL, &m), QV_OK, "%s", qv_last_error());
    float *px = qt_internvl_pixels(4);
    mem_px mp = {px, 3 * 448 * 448, NULL, 0};
    qv_vision_input in = {4, 448, 448, NULL, NULL, &mp, mem_get};
    int64_t B, L;
    int64_t *ids = ids_of("goldens/internvl2-qwen2-tiny/calib_batch.safetensors", &B, &L);
    const qv_mm_text txt = {B, L, ids, NULL, NULL, 0, "calib"};
    qv_st_file *g = qt_open_st("goldens/internvl2-qwen2-tiny/forward.safetensors");
    qv_tensor t;
    float *gold = qt_tensor_f32(g, "llm.inputs_embeds", &t);
    const size_t LC = (size_t)(L * 128);
    float *e1 = malloc(B * LC * sizeof *e1), *e3 = malloc(B * LC * sizeof *e3), *er = malloc(B * LC * sizeof *er);
    const int64_t chunks[2] = {1, 3};
    float *outs[2] = {e1, e3};
    for (int i = 0; i < 2; i++) {
        qv_vision *v = NULL;
        const qv_vision_opts o = {QV_F32, chunks[i], 0, 0};
        cr_assert_eq(qv_vision_open(&m->cfg, m->ck, qt_fixture(IVL), &o, &v), QV_OK, "%s", qv_last_error());
        qv_mm_embedder e;
        cr_assert_eq(qv_mm_embedder_init(&e, v, m, &in, &txt, NULL), QV_OK, "%s", qv_last_error());
        cr_assert_eq(qv_mm_embed_all(&e, outs[i]), QV_OK, "%s", qv_last_error());
        assert_rel(outs[i], gold, B * LC, 1e-4, "llm.inputs_embeds");
        if (i == 1) { /* random access: samples 3, 0, 2, 1 */
            const int order[4] = {3, 0, 2, 1};
            qv_mm_embedder_free(&e);
            cr_assert_eq(qv_mm_embedder_init(&e, v, m, &in, &txt, NULL), QV_OK);
            for (int k = 0; k < 4; k++)
                cr_assert_eq(qv_mm_embed_sample(&e, order[k], er + order[k] * LC), QV_OK, "%s", qv_last_error());
            cr_assert_arr_eq(er, e3, B * LC * sizeof *er);
        }
        qv_mm_embedder_free(&e);
        qv_vision_close(v);
    }
    assert_rel(e1, e3, B * LC, 1e-6, "1-tile vs 3-tile chunks");
    qv_llm_close(m);
}

/* transformers' -hf layout (split q/k/v, renamed norms, layer scales and projector). */
static int to_hf(const qv_st_entry *e, const uint8_t *data, qv_st_item *out, int max_out, void *ctx)
{
    static const char *const map[][2] = {
        {"embeddings.class_embedding", "embeddings.cls_token"},
        {"embeddings.patch_embedding.", "embeddings.patch_embeddings.projection."},
        {"embeddings.position_embedding", "embeddings.position_embeddings"},
        {"attn.proj.", "attention.projection_layer."}, {"ls1", "lambda_1"}, {"ls2", "lambda_2"},
        {"norm1.", "layernorm_before."}, {"norm2.", "layernorm_after."}};
    const char *n = e->name;
    char name[512];
    if (!strncmp(n, "mlp1.", 5)) {
        const char *tail = strchr(n + 5, '.') + 1;
        const char *mod = n[5] == '0' ? "layer_norm" : n[5] == '1' ? "linear_1" : "linear_2";
        snprintf(name, sizeof name, "model.multi_modal_projector.%s.%s", mod, tail);
    } else if (!strncmp(n, "vision_model.", 13)) {
        char rest[256];
        snprintf(rest, sizeof rest, "%s", n + 13);
        char *lay = strstr(rest, "encoder.layers.");
        if (lay)
            memmove(lay + 13, lay + 14, strlen(lay + 14) + 1); /* layers. -> layer. */
        for (size_t i = 0; i < QV_ARRAY_LEN(map); i++) {
            char *p = strstr(rest, map[i][0]);
            if (p) {
                char tmp[256];
                snprintf(tmp, sizeof tmp, "%.*s%s%s", (int)(p - rest), rest, map[i][1], p + strlen(map[i][0]));
                snprintf(rest, sizeof rest, "%s", tmp);
            }
        }
        char *qkv = strstr(rest, "attn.qkv.");
        if (qkv) { /* rows [0,D) q, [D,2D) k, [2D,3D) v */
            const char *tail = qkv + 9;
            const int64_t D = e->shape[0] / 3, per = e->ndim == 2 ? e->shape[1] : 1;
            for (int j = 0; j < 3 && j < max_out; j++) {
                char nm[256];
                snprintf(nm, sizeof nm, "model.vision_tower.%.*sattention.%c_proj.%s", (int)(qkv - rest), rest, "qkv"[j],
                         tail);
                out[j] = (qv_st_item){strdup(nm), e->dtype, e->ndim, {D, e->shape[1]}, data + (size_t)(j * D * per) * qv_dtype_size(e->dtype)};
            }
            return 3;
        }
        snprintf(name, sizeof name, "model.vision_tower.%s", rest);
    } else {
        snprintf(name, sizeof name, "%s", n);
    }
    out[0] = (qv_st_item){strdup(name), e->dtype, e->ndim, {0}, data};
    memcpy(out[0].shape, e->shape, sizeof e->shape);
    return 1;
}

Test(vision, internvit_hf_layout_gives_the_same_features, .timeout = 300)
{
    char *dir = qt_model_xform(IVL, to_hf, NULL);
    float *px = qt_internvl_pixels(1);
    mem_px m = {px, 3 * 448 * 448, NULL, 0};
    qv_vision_input in = {1, 448, 448, NULL, NULL, &m, mem_get};
    float *out[2];
    const char *paths[2] = {qt_fixture(IVL), dir};
    char p0[4096];
    snprintf(p0, sizeof p0, "%s", paths[0]);
    paths[0] = p0;
    for (int i = 0; i < 2; i++) {
        qv_model_config cfg;
        qv_checkpoint *ck;
        qv_vision *v = open_vision(paths[i], &cfg, &ck, 0, 0);
        out[i] = malloc(256 * 128 * sizeof(float));
        cr_assert_eq(qv_vision_encode(v, &in, 0, 1, out[i], NULL), QV_OK, "%s", qv_last_error());
        qv_vision_close(v);
        qv_checkpoint_close(ck);
    }
    assert_rel(out[1], out[0], 256 * 128, 1e-6, "-hf layout");
}

/* pixel_shuffle as PyTorch computes it: view(n, w, h/2, 2c) → permute(0,2,1,3) → view(n, h/2,
 * w/2, 4c) → (v2) permute(0,2,1,3), each view read through the contiguous memory. */
static float shuffle_ref(const float *x, int64_t g, int64_t C, int v, int64_t t, int64_t i, int64_t j, int64_t m)
{
    const int64_t h2 = g / 2;
    if (v == 2) { /* out[i][j] = x3[j][i] */
        int64_t s = i;
        i = j, j = s;
    }
    /* x3[i][j][m] reads x2 (shape [h2, g, 2C]) at flat i·g·2C + j·4C + m */
    int64_t flat = i * g * 2 * C + j * 4 * C + m;
    int64_t b2 = flat / (g * 2 * C), a2 = (flat / (2 * C)) % g, k2 = flat % (2 * C);
    /* x2[b][a][k] = x1[a][b][k]; x1 = x viewed [g, h2, 2C] */
    int64_t flat1 = a2 * h2 * 2 * C + b2 * 2 * C + k2;
    return x[t * g * g * C + flat1];
}

Test(vision, pixel_shuffle_matches_pytorch_view_permute)
{
    const int64_t n = 2, g = 6, C = 3;
    float *x = malloc((size_t)(n * g * g * C) * sizeof *x), *y = malloc((size_t)(n * g * g * C) * sizeof *y);
    for (int64_t i = 0; i < n * g * g * C; i++)
        x[i] = (float)i;
    for (int v = 1; v <= 2; v++) {
        qv_pixel_shuffle(y, x, n, g, C, v == 2 ? QV_PS_V2 : QV_PS_V1);
        for (int64_t t = 0; t < n; t++)
            for (int64_t i = 0; i < g / 2; i++)
                for (int64_t j = 0; j < g / 2; j++)
                    for (int64_t m = 0; m < 4 * C; m++)
                        cr_assert_eq(y[((t * (g / 2) + i) * (g / 2) + j) * 4 * C + m], shuffle_ref(x, g, C, v, t, i, j, m),
                                     "v%d tile %lld token (%lld,%lld) channel %lld", v, (long long)t, (long long)i,
                                     (long long)j, (long long)m);
    }
    /* v2, token (0,0) of tile 0 = input tokens (0,0), (0,1), (1,0), (1,1) (ALGORITHMS.md §8.1) */
    qv_pixel_shuffle(y, x, n, g, C, QV_PS_V2);
    const int64_t src[4] = {0, 1, g, g + 1};
    for (int q = 0; q < 4; q++)
        for (int64_t c = 0; c < C; c++)
            cr_assert_eq(y[q * C + c], x[src[q] * C + c]);
}

/* F.interpolate(bicubic, align_corners=False) written out in double. */
static double cubic_w(double x)
{
    const double A = -0.75;
    x = fabs(x);
    if (x <= 1)
        return ((A + 2) * x - (A + 3)) * x * x + 1;
    if (x < 2)
        return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
    return 0;
}

Test(vision, position_embedding_bicubic_resampling)
{
    const int64_t G = 5, D = 3;
    float pos[5 * 5 * 3], out[9 * 7 * 3];
    for (int i = 0; i < G * G * D; i++)
        pos[i] = sinf(0.37f * (float)i) + 0.1f * (float)(i % 7);
    qv_internvit_pos_resample(pos, G, D, G, G, out);
    cr_assert_arr_eq(out, pos, sizeof pos, "the native grid must be an exact copy");
    const int64_t sizes[3][2] = {{9, 7}, {3, 2}, {5, 8}};
    for (int s = 0; s < 3; s++) {
        const int64_t gh = sizes[s][0], gw = sizes[s][1];
        qv_internvit_pos_resample(pos, G, D, gh, gw, out);
        for (int64_t oy = 0; oy < gh; oy++)
            for (int64_t ox = 0; ox < gw; ox++)
                for (int64_t c = 0; c < D; c++) {
                    double ry = (oy + 0.5) * G / gh - 0.5, rx = (ox + 0.5) * G / gw - 0.5, acc = 0;
                    int64_t fy = (int64_t)floor(ry), fx = (int64_t)floor(rx);
                    for (int64_t yy = fy - 1; yy <= fy + 2; yy++)
                        for (int64_t xx = fx - 1; xx <= fx + 2; xx++) {
                            int64_t cy = QV_MIN(QV_MAX(yy, 0), G - 1), cx = QV_MIN(QV_MAX(xx, 0), G - 1);
                            acc += cubic_w(ry - yy) * cubic_w(rx - xx) * pos[(cy * G + cx) * D + c];
                        }
                    cr_assert(fabs(out[(oy * gw + ox) * D + c] - acc) <= 2e-5,
                              "%lldx%lld at (%lld,%lld,%lld): %g vs %g", (long long)gh, (long long)gw, (long long)oy,
                              (long long)ox, (long long)c, out[(oy * gw + ox) * D + c], acc);
                }
    }
}

Test(vision, bad_inputs_are_one_line_errors, .timeout = 300)
{
    qv_llm *m = NULL;
    cr_assert_eq(qv_llm_open(qt_fixture(IVL), NULL, &m), QV_OK, "%s", qv_last_error());
    qv_vision *v = NULL;
    cr_assert_eq(qv_vision_open(&m->cfg, m->ck, qt_fixture(IVL), NULL, &v), QV_OK, "%s", qv_last_error());
    float px[1] = {0};
    mem_px mp = {px, 0, NULL, 0};
    /* 4 samples of 256 image tokens, 3 tiles */
    int64_t B, L;
    int64_t *ids = ids_of("goldens/internvl2-qwen2-tiny/calib_batch.safetensors", &B, &L);
    const qv_mm_text txt = {B, L, ids, NULL, NULL, 0, "calib.safetensors"};
    qv_vision_input in = {3, 448, 448, NULL, NULL, &mp, mem_get};
    qv_mm_embedder e;
    cr_assert_neq(qv_mm_embedder_init(&e, v, m, &in, &txt, NULL), QV_OK);
    cr_assert_str_eq(qv_last_error(), "calib.safetensors: 1024 image tokens (id 2005) but the 3 tiles give 768 "
                                      "feature rows");
    /* flag-0 tiles give no rows */
    const uint8_t flags[4] = {1, 0, 1, 1};
    in.n = 4, in.flags = flags;
    cr_assert_neq(qv_mm_embedder_init(&e, v, m, &in, &txt, NULL), QV_OK);
    in.flags = NULL;
    in.tile_h = in.tile_w = 224;
    cr_assert_neq(qv_mm_embedder_init(&e, v, m, &in, &txt, NULL), QV_OK);
    cr_assert_str_eq(qv_last_error(), "calib.safetensors: tiles are 224x224 pixels, the vision tower takes 448x448");
    qv_vision_close(v);
    qv_llm_close(m);
}

static int drop_fc2(const qv_st_entry *e, const uint8_t *data, qv_st_item *out, int max_out, void *ctx)
{
    if (!strcmp(e->name, (const char *)ctx))
        return 0;
    out[0] = (qv_st_item){strdup(e->name), e->dtype, e->ndim, {0}, data};
    memcpy(out[0].shape, e->shape, sizeof e->shape);
    return 1;
}

Test(vision, missing_tower_tensor_is_named_at_open, .timeout = 120)
{
    char *dir = qt_model_xform(IVL, drop_fc2, "vision_model.encoder.layers.1.mlp.fc2.weight");
    qv_model_config cfg;
    qv_checkpoint *ck;
    qt_open_model(dir, &cfg, &ck);
    qv_vision *v = NULL;
    cr_assert_neq(qv_vision_open(&cfg, ck, dir, NULL, &v), QV_OK);
    cr_assert_not_null(strstr(qv_last_error(), "tensor vision_model.encoder.layers.1.mlp.fc2.weight not found"), "%s",
                       qv_last_error());
    cr_assert_null(v);
    qv_checkpoint_close(ck);
}

/* ---- Qwen2-VL ------------------------------------------------------------------------------- */

Test(vision, qwen2vl_tower_matches_golden, .timeout = 300)
{
    qv_model_config cfg;
    qv_checkpoint *ck;
    char path[4096];
    snprintf(path, sizeof path, "%s", qt_fixture(Q2VL));
    qv_vision *v = open_vision(path, &cfg, &ck, 0, 0);
    cr_assert_eq(qv_vision_kind_of(v), QV_VISION_QWEN2VL);
    cr_assert_eq(qv_vision_image_token(v), 2012);
    int64_t grid[3], rows;
    float *px = qt_qwen2vl_pixels(Q2VL, 1, grid, &rows);
    cr_assert(rows == 704 && grid[0] == 1 && grid[1] == 32 && grid[2] == 22);
    const int64_t row0[2] = {0, rows};
    mem_px m = {px, 0, row0, 1176};
    qv_vision_input in = {1, 0, 0, grid, NULL, &m, mem_get};
    cap c = {0};
    float *pe = cap_add(&c, v, &in, "vision.patch_embed.out.sample0");
    float *b0 = cap_add(&c, v, &in, "vision.blocks.0.out.sample0");
    float *b1 = cap_add(&c, v, &in, "vision.blocks.1.out");
    float *mo = cap_add(&c, v, &in, "vision.merger.out");
    const qv_llm_dump dump = {&c, cap_want, cap_put};
    float *out = malloc(176 * 128 * sizeof *out);
    cr_assert_eq(qv_vision_unit_rows(v, &in, 0), 176);
    cr_assert_eq(qv_vision_encode(v, &in, 0, 1, out, &dump), QV_OK, "%s", qv_last_error());
    cr_assert_arr_eq(out, mo, 176 * 128 * sizeof *out);
    qv_st_file *g = qt_open_st("goldens/qwen2-vl-tiny/forward.safetensors");
    qv_tensor t;
    assert_rel(pe, qt_tensor_f32(g, "vision.patch_embed.out.sample0", &t), 128 * 64, 1e-4, "patch_embed");
    assert_rel(b0, qt_tensor_f32(g, "vision.blocks.0.out.sample0", &t), 128 * 64, 1e-4, "blocks.0");
    assert_rel(b1, qt_tensor_f32(g, "vision.blocks.1.out", &t), 704 * 64, 1e-4, "blocks.1");
    assert_rel(out, qt_tensor_f32(g, "vision.merger.out", &t), 176 * 128, 1e-4, "merger");
    /* rotary grid coordinates of the whole batch's 3508 rows */
    qv_st_file *cb = qt_open_st("goldens/qwen2-vl-tiny/calib_batch.safetensors");
    cr_assert_eq(qv_st_get(cb, "image_grid_thw", &t), QV_OK);
    int64_t *pos = malloc(3508 * 2 * sizeof *pos);
    cr_assert_eq(qv_qwen2vl_rot_pos_ids(t.data, 4, 2, pos), QV_OK, "%s", qv_last_error());
    cr_assert_eq(qv_st_get(g, "vision.rot_pos_ids", &t), QV_OK);
    cr_assert_arr_eq(pos, t.data, 3508 * 2 * sizeof *pos);
    qv_vision_close(v);
    qv_checkpoint_close(ck);
}

static int to_model_visual(const qv_st_entry *e, const uint8_t *data, qv_st_item *out, int max_out, void *ctx)
{
    char name[256];
    snprintf(name, sizeof name, "%s%s", strncmp(e->name, "visual.", 7) ? "" : "model.", e->name);
    out[0] = (qv_st_item){strdup(name), e->dtype, e->ndim, {0}, data};
    memcpy(out[0].shape, e->shape, sizeof e->shape);
    return 1;
}

Test(vision, qwen2vl_model_visual_layout, .timeout = 300)
{
    char *dir = qt_model_xform(Q2VL, to_model_visual, NULL);
    int64_t grid[3], rows;
    float *px = qt_qwen2vl_pixels(Q2VL, 1, grid, &rows);
    const int64_t row0[2] = {0, rows};
    mem_px m = {px, 0, row0, 1176};
    qv_vision_input in = {1, 0, 0, grid, NULL, &m, mem_get};
    char p0[4096];
    snprintf(p0, sizeof p0, "%s", qt_fixture(Q2VL));
    const char *paths[2] = {p0, dir};
    float *out[2];
    for (int i = 0; i < 2; i++) {
        qv_model_config cfg;
        qv_checkpoint *ck;
        qv_vision *v = open_vision(paths[i], &cfg, &ck, 0, 0);
        out[i] = malloc(176 * 128 * sizeof(float));
        cr_assert_eq(qv_vision_encode(v, &in, 0, 1, out[i], NULL), QV_OK, "%s", qv_last_error());
        qv_vision_close(v);
        qv_checkpoint_close(ck);
    }
    cr_assert_arr_eq(out[0], out[1], 176 * 128 * sizeof(float));
}

/* ---- LLaVA-OneVision ----------------------------------------------------------------------- */

Test(vision, siglip_tower_and_projector_match_golden, .timeout = 300)
{
    qv_model_config cfg;
    qv_checkpoint *ck;
    char path[4096];
    snprintf(path, sizeof path, "%s", qt_fixture(LLAVA));
    qv_vision *v = open_vision(path, &cfg, &ck, 0, 0);
    cr_assert_eq(qv_vision_kind_of(v), QV_VISION_SIGLIP);
    cr_assert_eq(qv_vision_tile_size(v), 384);
    qv_st_file *cb = qt_open_st("goldens/llava-onevision-qwen2-tiny/calib_batch.safetensors");
    qv_tensor t;
    cr_assert_eq(qv_st_get(cb, "pixel_values_u8", &t), QV_OK);
    const size_t np = (size_t)3 * 384 * 384;
    float *px = malloc(np * sizeof *px);
    for (size_t i = 0; i < np; i++) /* fixtures README §15.2 */
        px[i] = ((float)((double)((const uint8_t *)t.data)[i] * (1.0 / 255.0)) - 0.5f) / 0.5f;
    mem_px m = {px, (int64_t)np, NULL, 0};
    qv_vision_input in = {1, 384, 384, NULL, NULL, &m, mem_get};
    cap c = {0};
    float *emb = cap_add(&c, v, &in, "vision.embeddings.out.sample0");
    float *enc = cap_add(&c, v, &in, "vision.encoder.out.sample0");
    float *po = cap_add(&c, v, &in, "projector.out.sample0");
    float *nl = cap_add(&c, v, &in, "image_newline");
    const qv_llm_dump dump = {&c, cap_want, cap_put};
    cr_assert_eq(qv_vision_unit_rows(v, &in, 0), 730);
    float *out = malloc(730 * 128 * sizeof *out);
    cr_assert_eq(qv_vision_encode(v, &in, 0, 1, out, &dump), QV_OK, "%s", qv_last_error());
    cr_assert_arr_eq(out, po, 729 * 128 * sizeof *out);
    cr_assert_arr_eq(out + 729 * 128, nl, 128 * sizeof *out);
    qv_st_file *g = qt_open_st("goldens/llava-onevision-qwen2-tiny/forward.safetensors");
    assert_rel(emb, qt_tensor_f32(g, "vision.embeddings.out.sample0", &t), 128 * 64, 1e-4, "embeddings");
    assert_rel(enc, qt_tensor_f32(g, "vision.encoder.out.sample0", &t), 128 * 64, 1e-4, "encoder");
    assert_rel(po, qt_tensor_f32(g, "projector.out.sample0", &t), 256 * 128, 1e-4, "projector");
    float *gn = qt_tensor_f32(g, "image_newline", &t);
    cr_assert_arr_eq(nl, gn, 128 * sizeof *nl);
    qv_vision_close(v);
    qv_checkpoint_close(ck);
}

/* --max-memory decides the chunk: one tile when the budget holds less, many when it holds more,
 * a fixed default without a budget. */
Test(vision, chunk_size_follows_the_memory_budget, .timeout = 120)
{
    qv_model_config cfg;
    qv_checkpoint *ck;
    char path[4096];
    snprintf(path, sizeof path, "%s", qt_fixture(IVL));
    qt_open_model(path, &cfg, &ck);
    const uint64_t budgets[3] = {0, 1, (uint64_t)1 << 40};
    const int64_t want_min[3] = {8, 1, 64}, want_max[3] = {8, 1, 4096};
    for (int i = 0; i < 3; i++) {
        qv_vision *v = NULL;
        const qv_vision_opts o = {QV_F32, 0, 0, budgets[i]};
        cr_assert_eq(qv_vision_open(&cfg, ck, path, &o, &v), QV_OK, "%s", qv_last_error());
        const int64_t c = qv_vision_chunk_units(v);
        cr_assert(c >= want_min[i] && c <= want_max[i], "budget %llu: chunk %lld", (unsigned long long)budgets[i],
                  (long long)c);
        qv_vision_close(v);
    }
    /* a 64 MiB budget holds a few tiles of this tiny tower (64-wide, 1025 tokens) */
    qv_vision *v = NULL;
    const qv_vision_opts o = {QV_F32, 0, 0, (uint64_t)64 << 20};
    cr_assert_eq(qv_vision_open(&cfg, ck, path, &o, &v), QV_OK);
    cr_assert(qv_vision_chunk_units(v) >= 2 && qv_vision_chunk_units(v) <= 256, "chunk %lld",
              (long long)qv_vision_chunk_units(v));
    qv_vision_close(v);
    qv_checkpoint_close(ck);
}

/* ---- the shared block in InternViT-6B's configuration ---------------------------------------- */

/* RMSNorm, fused qkv without bias, RMS qk-normalisation over the whole D-wide q and k before the
 * head split (InternAttention._naive_attn), layer scales, GELU MLP — against a double-precision
 * restatement. */
Test(vision, block_with_rms_qk_norm_and_layer_scale)
{
    enum { B = 2, L = 5, DD = 32, HH = 4, dd = 8, II = 48 };
    const qv_vit_dims dm = {DD, HH, dd, II, QV_NORM_RMS, 1e-6f, QV_ACT_GELU, false, true, QV_F32};
    uint64_t s = 7;
#define RND() (s = s * 6364136223846793005ull + 1442695040888963407ull, (float)((double)(s >> 11) / 9007199254740992.0 - 0.5))
    float *w_qkv = malloc(3 * DD * DD * 4), *w_o = malloc(DD * DD * 4), *b_o = malloc(DD * 4);
    float *w1 = malloc(II * DD * 4), *b1 = malloc(II * 4), *w2 = malloc(DD * II * 4), *b2 = malloc(DD * 4);
    float vec[QV_VIT_VEC_COUNT][DD];
    for (int i = 0; i < 3 * DD * DD; i++)
        w_qkv[i] = RND() * 0.4f;
    for (int i = 0; i < DD * DD; i++)
        w_o[i] = RND() * 0.4f;
    for (int i = 0; i < II * DD; i++)
        w1[i] = RND() * 0.4f, w2[i] = RND() * 0.3f;
    for (int i = 0; i < DD; i++)
        b_o[i] = RND() * 0.1f, b2[i] = RND() * 0.1f;
    for (int i = 0; i < II; i++)
        b1[i] = RND() * 0.1f;
    for (int v = 0; v < QV_VIT_VEC_COUNT; v++)
        for (int i = 0; i < DD; i++)
            vec[v][i] = 1.0f + RND() * 0.4f;
    qv_vit_layer ly = {0};
    ly.w[QV_VIT_QKV] = w_qkv, ly.w[QV_VIT_O] = w_o, ly.b[QV_VIT_O] = b_o;
    ly.w[QV_VIT_FC1] = w1, ly.b[QV_VIT_FC1] = b1, ly.w[QV_VIT_FC2] = w2, ly.b[QV_VIT_FC2] = b2;
    const int used[] = {QV_VIT_NORM1_W, QV_VIT_NORM2_W, QV_VIT_QNORM, QV_VIT_KNORM, QV_VIT_LS1, QV_VIT_LS2};
    for (size_t i = 0; i < QV_ARRAY_LEN(used); i++)
        ly.vec[used[i]] = vec[used[i]];
    float x[B * L * DD];
    double xd[B * L * DD];
    for (int i = 0; i < B * L * DD; i++)
        xd[i] = x[i] = RND() * 2;
#undef RND
    const qv_vit_seq sq = {B, L, NULL, NULL, NULL};
    cr_assert_eq(qv_vit_layer_forward(&dm, &ly, &sq, x), QV_OK, "%s", qv_last_error());
    /* reference */
    double n[B * L * DD], qkv[B * L * 3 * DD], a[B * L * DD], hmid[II];
    for (int t = 0; t < B * L; t++) {
        double ss = 0;
        for (int c = 0; c < DD; c++)
            ss += xd[t * DD + c] * xd[t * DD + c];
        for (int c = 0; c < DD; c++)
            n[t * DD + c] = vec[QV_VIT_NORM1_W][c] * xd[t * DD + c] / sqrt(ss / DD + 1e-6);
        for (int o = 0; o < 3 * DD; o++) {
            double acc = 0;
            for (int c = 0; c < DD; c++)
                acc += n[t * DD + c] * w_qkv[o * DD + c];
            qkv[t * 3 * DD + o] = acc;
        }
        for (int part = 0; part < 2; part++) { /* q_norm / k_norm over the whole D */
            double *p = qkv + t * 3 * DD + part * DD, s2 = 0;
            for (int c = 0; c < DD; c++)
                s2 += p[c] * p[c];
            for (int c = 0; c < DD; c++)
                p[c] = vec[part ? QV_VIT_KNORM : QV_VIT_QNORM][c] * p[c] / sqrt(s2 / DD + 1e-6);
        }
    }
    for (int b = 0; b < B; b++)
        for (int h = 0; h < HH; h++)
            for (int i = 0; i < L; i++) {
                double sc[L], mx = -INFINITY, sum = 0;
                for (int j = 0; j < L; j++) {
                    double dot = 0;
                    for (int c = 0; c < dd; c++)
                        dot += qkv[(b * L + i) * 3 * DD + h * dd + c] * qkv[(b * L + j) * 3 * DD + DD + h * dd + c];
                    sc[j] = dot / sqrt((double)dd);
                    mx = fmax(mx, sc[j]);
                }
                for (int j = 0; j < L; j++)
                    sum += (sc[j] = exp(sc[j] - mx));
                for (int c = 0; c < dd; c++) {
                    double acc = 0;
                    for (int j = 0; j < L; j++)
                        acc += sc[j] * qkv[(b * L + j) * 3 * DD + 2 * DD + h * dd + c];
                    a[(b * L + i) * DD + h * dd + c] = acc / sum;
                }
            }
    for (int t = 0; t < B * L; t++) {
        for (int o = 0; o < DD; o++) {
            double acc = b_o[o];
            for (int c = 0; c < DD; c++)
                acc += a[t * DD + c] * w_o[o * DD + c];
            xd[t * DD + o] += acc * vec[QV_VIT_LS1][o];
        }
        double ss = 0;
        for (int c = 0; c < DD; c++)
            ss += xd[t * DD + c] * xd[t * DD + c];
        for (int c = 0; c < DD; c++)
            n[c] = vec[QV_VIT_NORM2_W][c] * xd[t * DD + c] / sqrt(ss / DD + 1e-6);
        for (int o = 0; o < II; o++) {
            double acc = b1[o];
            for (int c = 0; c < DD; c++)
                acc += n[c] * w1[o * DD + c];
            hmid[o] = acc * 0.5 * (1 + erf(acc / sqrt(2.0)));
        }
        for (int o = 0; o < DD; o++) {
            double acc = b2[o];
            for (int c = 0; c < II; c++)
                acc += hmid[c] * w2[o * II + c];
            xd[t * DD + o] += acc * vec[QV_VIT_LS2][o];
        }
    }
    float want[B * L * DD];
    for (int i = 0; i < B * L * DD; i++)
        want[i] = (float)xd[i];
    assert_rel(x, want, B * L * DD, 1e-5, "block");
}

Test(vision, select_layer_picks_the_hidden_state, .timeout = 60)
{
    qv_model_config cfg;
    qv_checkpoint *ck;
    char path[4096];
    snprintf(path, sizeof path, "%s", qt_fixture(IVL));
    qt_open_model(path, &cfg, &ck);
    /* hidden_states[k] of a 2-layer tower: −1 → 2 layers, −2 → 1, −3 → 0, 1 → 1; −4 and 3 are errors */
    const int64_t sel[6] = {-1, -2, -3, 1, -4, 3}, runs[6] = {2, 1, 0, 1, -1, -1};
    for (int i = 0; i < 6; i++) {
        qv_internvit *v = NULL;
        qv_status st = qv_internvit_open(ck, &cfg.vision, sel[i], QV_F32, &v);
        if (runs[i] < 0) {
            cr_assert_neq(st, QV_OK, "select_layer %lld", (long long)sel[i]);
            cr_assert_not_null(strstr(qv_last_error(), "select_layer"), "%s", qv_last_error());
        } else {
            cr_assert_eq(st, QV_OK, "%s", qv_last_error());
            cr_assert_eq(v->n_run, runs[i], "select_layer %lld", (long long)sel[i]);
        }
        qv_internvit_close(v);
    }
    qv_checkpoint_close(ck);
}
