/* test_synth.c — `qvlm synth` (src/synth/synth.h): parameter counts of every architecture
 * against the published checkpoints, the real-size tensor list against MODELS.md's shapes,
 * reduced models written and read back (checkpoint, config.json, `qvlm inspect`, bytes equal to
 * the generator), the shipped tokenizers' ids, determinism over threads and kernel sets, the
 * AVX2 deviate kernel against its scalar twin, and the refusals (existing folder, no space, a
 * failing write leaves nothing). */
#include <criterion/criterion.h>
#include <json-c/json.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <dirent.h>

#include "core/fsutil.h"
#include "cpu.h"
#include "io/safetensors.h"
#include "model/config.h"
#include "randn.h"
#include "synth/synth.h"
#include "synth/synth_files.h"
#include "util/testutil.h"

/* Published parameter counts (hub safetensors metadata, or derived from the published configs
 * where no metadata was at hand: see src/synth/synth_arch.c), written here independently of the
 * table so that a wrong template fails. */
static const struct {
    const char *arch;
    long long total, vision, projector, llm;
    size_t tensors;
} k_published[] = {
    {"internvl2-1b", 938158976, 304012288, 4482816, 629663872, 0},
    {"internvl2-2b", 2205754368, 304012288, 12595200, 1889146880, 0},
    {"internvl2-8b", 8075365376, 304012288, 33570816, 7737782272, 573},
    {"internvl2-26b", 25514186112, 5536496000, 116429824, 19861260288, 934},
    {"internvl3-2b", 2088957440, 304012288, 8662016, 1776283136, 0},
    {"internvl3-8b", 7944373760, 304012288, 27540480, 7612820992, 0},
    {"qwen2-7b", 7615616512, 0, 0, 7615616512, 339},
    {"qwen2-vl-2b", 2208985600, 631183360, 34087936, 1543714304, 0},
    {"qwen2-vl-7b", 8291375616, 631183360, 44575744, 7615616512, 730},
    {"qwen2.5-vl-7b", 8292166656, 631975680, 44574464, 7615616512, 0},
    {"llava-onevision-qwen2-7b", 8030348832, 397747744, 16984576, 7615616512, 0},
};

static qv_synth_plan *plan(const char *arch, int64_t layers, int64_t div)
{
    const qv_synth_arch *a = qv_synth_arch_find(arch);
    cr_assert_not_null(a, "%s unknown", arch);
    qv_synth_plan *p;
    cr_assert_eq(qv_synth_plan_build(a, layers, div, &p), QV_OK, "%s: %s", arch, qv_last_error());
    return p;
}

static const qv_synth_tensor *find(const qv_synth_plan *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (!strcmp(p->t[i].name, name))
            return &p->t[i];
    return NULL;
}

static void expect_shape(const qv_synth_plan *p, const char *name, int ndim, const int64_t *shape)
{
    const qv_synth_tensor *t = find(p, name);
    cr_assert_not_null(t, "%s: no tensor %s", p->arch->name, name);
    cr_assert_eq(t->ndim, ndim, "%s: %s rank %d", p->arch->name, name, t->ndim);
    for (int i = 0; i < ndim; i++)
        cr_assert_eq(t->shape[i], shape[i], "%s: %s dim %d is %lld, expected %lld", p->arch->name, name, i,
                     (long long)t->shape[i], (long long)shape[i]);
}
#define SHAPE(p, name, ...)                                                                   \
    do {                                                                                      \
        const int64_t s_[] = {__VA_ARGS__};                                                   \
        expect_shape(p, name, (int)(sizeof s_ / sizeof s_[0]), s_);                           \
    } while (0)
#define ABSENT(p, nm) cr_assert_null(find(p, nm), "%s: unexpected %s", (p)->arch->name, nm)

static long long parse_count(const char *out, const char *label)
{
    const char *s = strstr(out, label);
    cr_assert_not_null(s, "no '%s' in:\n%s", label, out);
    return atoll(s + strlen(label));
}

/* ---- counts ------------------------------------------------------------------------------- */

Test(synth, dry_run_counts_equal_published)
{
    cr_assert_eq(qv_synth_arch_count(), sizeof k_published / sizeof k_published[0]);
    for (size_t i = 0; i < sizeof k_published / sizeof k_published[0]; i++) {
        char *out, *err;
        cr_assert_eq(qt_run_cli(&out, &err, "synth --arch %s --dry-run", k_published[i].arch), 0, "%s", err);
        cr_assert_eq(parse_count(out, "\ntotal"), k_published[i].total, "%s total", k_published[i].arch);
        if (k_published[i].vision)
            cr_assert_eq(parse_count(out, "\nvision"), k_published[i].vision, "%s vision", k_published[i].arch);
        if (k_published[i].projector)
            cr_assert_eq(parse_count(out, "\nprojector"), k_published[i].projector, "%s projector",
                         k_published[i].arch);
        cr_assert_eq(parse_count(out, "\nllm"), k_published[i].llm, "%s llm", k_published[i].arch);
        cr_assert_eq(parse_count(out, "\npublished"), k_published[i].total);
        cr_assert_str_empty(err);
        free(out);
        free(err);

        qv_synth_plan *p = plan(k_published[i].arch, 0, 1);
        cr_assert_eq(p->params_total, k_published[i].total);
        cr_assert_eq(p->arch->params_hub, k_published[i].total);
        cr_assert_eq(p->bytes, 2 * (uint64_t)k_published[i].total);
        if (k_published[i].tensors)
            cr_assert_eq(p->n, k_published[i].tensors, "%s: %zu tensors", k_published[i].arch, p->n);
        for (size_t a = 0; a < p->n; a++) /* names are unique */
            for (size_t b = a + 1; b < p->n; b++)
                cr_assert(strcmp(p->t[a].name, p->t[b].name), "%s twice", p->t[a].name);
        qv_synth_plan_free(p);
    }
}

Test(synth, arch_list_and_usage_errors)
{
    char *out, *err;
    cr_assert_eq(qt_run_cli(&out, &err, "synth --arch list"), 0);
    for (size_t i = 0; i < sizeof k_published / sizeof k_published[0]; i++)
        cr_assert(strstr(out, k_published[i].arch), "%s not listed", k_published[i].arch);
    cr_assert_eq(qt_count_lines(out), (int)qv_synth_arch_count());
    free(out);
    free(err);
    cr_assert_eq(qt_run_cli(&out, &err, "synth --arch nosuch --dry-run"), 2);
    cr_assert(strstr(err, "nosuch"));
    free(out);
    free(err);
    cr_assert_eq(qt_run_cli(&out, &err, "synth --arch internvl2-8b --layers 33 --dry-run"), 2);
    free(out);
    free(err);
    cr_assert_eq(qt_run_cli(&out, &err, "synth --arch internvl2-8b --layers 0 --dry-run"), 2);
    free(out);
    free(err);
    cr_assert_eq(qt_run_cli(&out, &err, "synth --arch internvl2-8b --layers 2 --dry-run"), 0);
    cr_assert(strstr(out, "2 of 32 decoder layers"), "%s", out);
    free(out);
    free(err);
    cr_assert_eq(qt_run_cli(&out, &err, "synth --arch internvl2-8b"), 2, "missing -o");
    free(out);
    free(err);
    cr_assert_eq(qt_run_cli(&out, &err, "synth --arch qwen2.5-vl-7b --scale-dims 8 --dry-run"), 1,
                 "3420 is not a multiple of 8");
    cr_assert_eq(qt_count_lines(err), 1);
    free(out);
    free(err);
    cr_assert_eq(qt_run_cli(&out, &err, "synth --arch internvl2-8b --scale-dims 64 --dry-run"), 1,
                 "vocab 1447 would be below the 2015 tokenizer ids");
    cr_assert(strstr(err, "2015"), "%s", err);
    free(out);
    free(err);
    cr_assert_eq(qt_run_cli(&out, &err, "synth --help"), 0);
    cr_assert(strstr(out, "vocab_size") && strstr(out, "tokenizer"), "help must explain the tokenizer");
    free(out);
    free(err);
}

/* ---- the real-size tensor lists (MODELS.md shapes) ------------------------------------------ */

Test(synth, real_shapes_internvl)
{
    qv_synth_plan *p = plan("internvl2-8b", 0, 1);
    SHAPE(p, "vision_model.embeddings.class_embedding", 1, 1, 1024);
    SHAPE(p, "vision_model.embeddings.position_embedding", 1, 1025, 1024);
    SHAPE(p, "vision_model.embeddings.patch_embedding.weight", 1024, 3, 14, 14);
    SHAPE(p, "vision_model.encoder.layers.23.attn.qkv.weight", 3072, 1024);
    SHAPE(p, "vision_model.encoder.layers.23.attn.qkv.bias", 3072);
    SHAPE(p, "vision_model.encoder.layers.0.ls1", 1024);
    SHAPE(p, "vision_model.encoder.layers.0.mlp.fc1.weight", 4096, 1024);
    SHAPE(p, "vision_model.encoder.layers.0.norm2.bias", 1024);
    ABSENT(p, "vision_model.encoder.layers.24.ls1");
    SHAPE(p, "mlp1.0.weight", 4096);
    SHAPE(p, "mlp1.1.weight", 4096, 4096);
    SHAPE(p, "mlp1.3.weight", 4096, 4096);
    SHAPE(p, "language_model.model.tok_embeddings.weight", 92553, 4096);
    SHAPE(p, "language_model.model.layers.31.attention.wqkv.weight", 6144, 4096); /* (32 + 2·8)·128 */
    SHAPE(p, "language_model.model.layers.31.attention.wo.weight", 4096, 4096);
    SHAPE(p, "language_model.model.layers.0.feed_forward.w1.weight", 14336, 4096);
    SHAPE(p, "language_model.model.layers.0.feed_forward.w2.weight", 4096, 14336);
    SHAPE(p, "language_model.model.layers.0.ffn_norm.weight", 4096);
    SHAPE(p, "language_model.model.norm.weight", 4096);
    SHAPE(p, "language_model.output.weight", 92553, 4096);
    ABSENT(p, "language_model.model.layers.32.attention.wo.weight");
    cr_assert_eq(find(p, "language_model.model.layers.0.attention_norm.weight")->outliers, 4);
    cr_assert_eq(find(p, "vision_model.encoder.layers.0.norm1.weight")->outliers, 0);
    cr_assert_eq(find(p, "mlp1.1.weight")->part, QV_PART_PROJECTOR);
    qv_synth_plan_free(p);

    p = plan("internvl2-26b", 0, 1); /* InternViT-6B: RMS norms, q/k norms, no qkv bias */
    SHAPE(p, "vision_model.encoder.layers.44.attn.qkv.weight", 9600, 3200);
    SHAPE(p, "vision_model.encoder.layers.44.attn.q_norm.weight", 3200);
    SHAPE(p, "vision_model.encoder.layers.44.attn.k_norm.weight", 3200);
    ABSENT(p, "vision_model.encoder.layers.0.attn.qkv.bias");
    ABSENT(p, "vision_model.encoder.layers.0.norm1.bias");
    ABSENT(p, "vision_model.encoder.layers.45.ls1");
    SHAPE(p, "mlp1.1.weight", 6144, 12800);
    SHAPE(p, "language_model.model.layers.47.attention.wqkv.weight", 8192, 6144);
    qv_synth_plan_free(p);

    p = plan("internvl2-1b", 0, 1);
    SHAPE(p, "language_model.model.embed_tokens.weight", 151655, 896);
    SHAPE(p, "language_model.model.layers.23.self_attn.k_proj.weight", 128, 896);
    SHAPE(p, "language_model.model.layers.23.self_attn.k_proj.bias", 128);
    SHAPE(p, "language_model.lm_head.weight", 151655, 896);
    SHAPE(p, "mlp1.1.weight", 896, 4096);
    qv_synth_plan_free(p);

    p = plan("internvl3-8b", 0, 1);
    SHAPE(p, "language_model.model.layers.27.self_attn.q_proj.bias", 3584);
    SHAPE(p, "language_model.model.layers.27.mlp.down_proj.weight", 3584, 18944);
    SHAPE(p, "language_model.lm_head.weight", 151674, 3584);
    SHAPE(p, "mlp1.1.weight", 3584, 4096);
    qv_synth_plan_free(p);
}

Test(synth, real_shapes_qwen_and_llava)
{
    qv_synth_plan *p = plan("qwen2-vl-7b", 0, 1); /* MODELS.md §1.2 */
    SHAPE(p, "visual.patch_embed.proj.weight", 1280, 3, 2, 14, 14);
    SHAPE(p, "visual.blocks.31.norm1.bias", 1280);
    SHAPE(p, "visual.blocks.31.attn.qkv.weight", 3840, 1280);
    SHAPE(p, "visual.blocks.31.mlp.fc1.weight", 5120, 1280);
    SHAPE(p, "visual.blocks.31.mlp.fc2.weight", 1280, 5120);
    SHAPE(p, "visual.merger.ln_q.bias", 1280);
    SHAPE(p, "visual.merger.mlp.0.weight", 5120, 5120);
    SHAPE(p, "visual.merger.mlp.2.weight", 3584, 5120);
    SHAPE(p, "model.embed_tokens.weight", 152064, 3584);
    SHAPE(p, "model.layers.27.self_attn.k_proj.weight", 512, 3584);
    SHAPE(p, "model.layers.27.self_attn.v_proj.bias", 512);
    SHAPE(p, "model.layers.27.mlp.gate_proj.weight", 18944, 3584);
    SHAPE(p, "lm_head.weight", 152064, 3584);
    ABSENT(p, "model.layers.0.self_attn.o_proj.bias");
    ABSENT(p, "visual.patch_embed.proj.bias");
    cr_assert_eq(find(p, "visual.merger.mlp.0.weight")->part, QV_PART_PROJECTOR);
    qv_synth_plan_free(p);

    p = plan("qwen2-vl-2b", 0, 1);
    ABSENT(p, "lm_head.weight"); /* tied */
    SHAPE(p, "visual.merger.mlp.2.weight", 1536, 5120);
    cr_assert_float_eq(find(p, "model.embed_tokens.weight")->std, 1 / sqrtf(1536), 1e-7);
    qv_synth_plan_free(p);

    p = plan("qwen2.5-vl-7b", 0, 1); /* MODELS.md §1.10 */
    SHAPE(p, "visual.blocks.0.mlp.gate_proj.weight", 3420, 1280);
    SHAPE(p, "visual.blocks.0.mlp.up_proj.bias", 3420);
    SHAPE(p, "visual.blocks.0.mlp.down_proj.weight", 1280, 3420);
    ABSENT(p, "visual.blocks.0.norm1.bias");
    ABSENT(p, "visual.blocks.0.mlp.fc1.weight");
    ABSENT(p, "visual.merger.ln_q.bias");
    SHAPE(p, "visual.merger.ln_q.weight", 1280);
    qv_synth_plan_free(p);

    p = plan("llava-onevision-qwen2-7b", 0, 1); /* MODELS.md §2.2 */
    const char *v = "model.vision_tower.vision_tower.vision_model.";
    char name[200];
    snprintf(name, sizeof name, "%sembeddings.patch_embedding.weight", v);
    SHAPE(p, name, 1152, 3, 14, 14);
    snprintf(name, sizeof name, "%sembeddings.position_embedding.weight", v);
    SHAPE(p, name, 729, 1152);
    snprintf(name, sizeof name, "%sencoder.layers.25.mlp.fc1.weight", v);
    SHAPE(p, name, 4304, 1152);
    snprintf(name, sizeof name, "%sencoder.layers.26.mlp.fc1.weight", v);
    ABSENT(p, name);
    snprintf(name, sizeof name, "%spost_layernorm.bias", v);
    SHAPE(p, name, 1152);
    SHAPE(p, "model.mm_projector.0.weight", 3584, 1152);
    SHAPE(p, "model.mm_projector.2.weight", 3584, 3584);
    SHAPE(p, "model.image_newline", 3584);
    SHAPE(p, "lm_head.weight", 152064, 3584);
    qv_synth_plan_free(p);

    p = plan("qwen2-7b", 0, 1);
    SHAPE(p, "model.layers.27.self_attn.q_proj.weight", 3584, 3584);
    SHAPE(p, "lm_head.weight", 152064, 3584);
    cr_assert_eq(p->params[QV_PART_VISION] + p->params[QV_PART_PROJECTOR], 0);
    qv_synth_plan_free(p);
}

Test(synth, layers_keep_the_first_llm_layers_and_the_whole_tower)
{
    for (size_t i = 0; i < qv_synth_arch_count(); i++) {
        const qv_synth_arch *a = qv_synth_arch_at(i);
        qv_synth_plan *full = plan(a->name, 0, 1), *two = plan(a->name, 2, 1);
        cr_assert_eq(two->dims.llm.layers, 2);
        cr_assert_eq(two->params[QV_PART_VISION], full->params[QV_PART_VISION]);
        cr_assert_eq(two->params[QV_PART_PROJECTOR], full->params[QV_PART_PROJECTOR]);
        /* every kept tensor exists in the full model with the same shape; what is dropped is
         * exactly layers 2.. of the LLM */
        size_t j = 0;
        for (size_t k = 0; k < full->n; k++) {
            const qv_synth_tensor *t = &full->t[k];
            const char *l = strstr(t->name, "layers.");
            bool llm_layer = l && t->part == QV_PART_LLM;
            if (llm_layer && atoi(l + 7) >= 2)
                continue;
            cr_assert(j < two->n && !strcmp(two->t[j].name, t->name), "%s: %s missing", a->name, t->name);
            cr_assert_eq(two->t[j].numel, t->numel);
            j++;
        }
        cr_assert_eq(j, two->n);
        qv_synth_plan_free(full);
        qv_synth_plan_free(two);
    }
}

/* ---- deviates ----------------------------------------------------------------------------- */

Test(synth, randn_kernels_agree_and_have_unit_moments)
{
    qv_randn_key k = {0x12345678u, 0x9abcdef0u};
    const size_t lens[] = {1, 7, 15, 16, 17, 31, 33, 1000, 4099};
    const uint64_t firsts[] = {0, 3, ((uint64_t)1 << 32) - 9, ((uint64_t)5 << 32) + 11};
    uint16_t a[4099], b[4099];
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
        for (size_t fi = 0; fi < sizeof firsts / sizeof firsts[0]; fi++) {
            qv_randn_bf16_ref(a, lens[li], k, firsts[fi], 0.25f, 0.1f);
            for (size_t j = 0; j < lens[li]; j++) { /* the ref is the scalar definition */
                float v = qv_randn_at(k, firsts[fi] + j) * 0.1f;
                v = v + 0.25f;
                uint32_t u;
                memcpy(&u, &v, 4);
                cr_assert_eq(a[j], (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16));
            }
            if (!qv_isa_supported(QV_ISA_AVX2))
                continue;
            qv_randn_bf16_avx2(b, lens[li], k, firsts[fi], 0.25f, 0.1f);
            cr_assert_arr_eq(a, b, lens[li] * 2, "len %zu first %llu", lens[li], (unsigned long long)firsts[fi]);
        }
    /* moments of z over 2^20 deviates: mean 0, variance 1, excess kurtosis -0.3 (Irwin-Hall n=4) */
    double s1 = 0, s2 = 0, s4 = 0, mx = 0;
    size_t n = (size_t)1 << 20;
    for (size_t i = 0; i < n; i++) {
        double z = qv_randn_at(k, i);
        s1 += z, s2 += z * z, s4 += z * z * z * z;
        mx = fabs(z) > mx ? fabs(z) : mx;
    }
    double mean = s1 / n, var = s2 / n - mean * mean, kurt = s4 / n / (var * var) - 3;
    cr_assert(fabs(mean) < 0.005, "mean %g", mean);
    cr_assert(fabs(var - 1) < 0.01, "variance %g", var);
    cr_assert(fabs(kurt + 0.3) < 0.03, "excess kurtosis %g", kurt);
    cr_assert(mx <= 3.4642, "max |z| %g", mx);
    /* different tensors are different streams: correlation of two keys ~ 0 */
    uint32_t k1[2], k2[2];
    qv_synth_tensor_key(0, "model.layers.0.mlp.up_proj.weight", k1);
    qv_synth_tensor_key(0, "model.layers.0.mlp.gate_proj.weight", k2);
    double c = 0;
    for (size_t i = 0; i < n; i++)
        c += (double)qv_randn_at((qv_randn_key){k1[0], k1[1]}, i) * qv_randn_at((qv_randn_key){k2[0], k2[1]}, i);
    cr_assert(fabs(c / n) < 0.005, "correlation %g", c / n);
}

/* ---- written models ----------------------------------------------------------------------- */

/* Runs `qvlm synth ARGS -o DIR/NAME` quietly; returns the folder (caller frees). */
static char *synth_cli(const char *dir, const char *name, const char *args)
{
    char *out, *err, *path = qv_path_join(dir, name);
    int rc = qt_run_cli(&out, &err, "synth -q %s -o '%s'", args, path);
    cr_assert_eq(rc, 0, "synth %s: %s", args, err);
    cr_assert_str_empty(err);
    free(out);
    free(err);
    return path;
}

/* The folder holds exactly the plan's tensors, with the generator's bytes. */
static void check_against_plan(const char *dir, const qv_synth_plan *p, uint64_t seed)
{
    qv_checkpoint *ck;
    cr_assert_eq(qv_checkpoint_open(dir, &ck), QV_OK, "%s", qv_last_error());
    cr_assert_eq(ck->n, p->n, "%s: %zu tensors, plan %zu", dir, ck->n, p->n);
    for (size_t i = 0; i < p->n; i++) {
        const qv_synth_tensor *t = &p->t[i];
        qv_tensor v;
        cr_assert_eq(qv_checkpoint_get_shaped(ck, t->name, t->ndim, t->shape, &v), QV_OK, "%s", qv_last_error());
        cr_assert_eq(v.dtype, QV_BF16);
        if (t->numel > 100000 && i % 7)
            continue; /* the big ones: a sample is enough */
        uint16_t *buf = malloc((size_t)t->numel * 2);
        qv_synth_fill(buf, t, seed, 0, (size_t)t->numel);
        cr_assert_arr_eq(buf, v.data, (size_t)t->numel * 2, "%s: bytes differ from the generator", t->name);
        free(buf);
    }
    qv_checkpoint_close(ck);
}

static json_object *inspect_json(const char *dir)
{
    char *out, *err;
    cr_assert_eq(qt_run_cli(&out, &err, "inspect '%s' --json", dir), 0, "%s", err);
    json_object *j = json_tokener_parse(out);
    cr_assert_not_null(j, "%s", out);
    free(out);
    free(err);
    return j;
}

static void check_inspect(const char *dir, const qv_synth_plan *p)
{
    json_object *j = inspect_json(dir), *v, *parts, *po, *pp;
    cr_assert(json_object_object_get_ex(j, "params_total", &v));
    cr_assert_eq(json_object_get_int64(v), p->params_total);
    cr_assert(json_object_object_get_ex(j, "parts", &parts));
    for (int i = 0; i < QV_PART_COUNT; i++) {
        if (!p->params[i])
            continue;
        cr_assert(json_object_object_get_ex(parts, qv_part_name((qv_part)i), &po), "%s: no part %s", dir,
                  qv_part_name((qv_part)i));
        cr_assert(json_object_object_get_ex(po, "params", &pp));
        cr_assert_eq(json_object_get_int64(pp), p->params[i], "%s: part %s", dir, qv_part_name((qv_part)i));
    }
    json_object_put(j);
}

static void same_file(const char *a, const char *b)
{
    char *x, *y;
    size_t nx, ny;
    cr_assert_eq(qv_read_file(a, (size_t)1 << 30, &x, &nx), QV_OK, "%s", qv_last_error());
    cr_assert_eq(qv_read_file(b, (size_t)1 << 30, &y, &ny), QV_OK, "%s", qv_last_error());
    cr_assert(nx == ny && !memcmp(x, y, nx), "%s differs from %s", a, b);
    qv_free(x);
    qv_free(y);
}

Test(synth, reduced_internvl2_1b_reads_back, .timeout = 300)
{
    char *tmp = qt_tmpdir(), *dir = synth_cli(tmp, "m", "--arch internvl2-1b --layers 1 --scale-dims 16");
    qv_synth_plan *p = plan("internvl2-1b", 1, 16);
    check_against_plan(dir, p, 0);
    check_inspect(dir, p);
    qv_model_config c;
    cr_assert_eq(qv_model_config_load(dir, &c), QV_OK, "%s", qv_last_error());
    cr_assert_eq(c.family, QV_FAMILY_INTERNVL2);
    cr_assert_str_eq(c.template_name, "Hermes-2");
    cr_assert_eq(c.llm.kind, QV_DECODER_QWEN2);
    cr_assert_eq(c.llm.n_layers, 1);
    cr_assert_eq(c.llm.hidden, 896 / 16);
    cr_assert_eq(c.llm.head_dim, 64 / 16);
    cr_assert_eq(c.llm.n_heads, 14);
    cr_assert_eq(c.llm.n_kv_heads, 2);
    cr_assert_eq(c.llm.vocab, (151655 + 15) / 16);
    cr_assert_eq(c.llm.bos_id, 2000);
    cr_assert_eq(c.llm.eos_id, 2002);
    cr_assert_eq(c.vision.n_layers, 24);
    cr_assert_eq(c.vision.hidden, 64);
    cr_assert_eq(c.vision.intermediate, 256);
    qv_model_config_free(&c);
    static const char *files[] = {"tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json",
                                  "added_tokens.json", "special_tokens_map.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char a[600], b[600];
        snprintf(a, sizeof a, "%s/%s", dir, files[i]);
        snprintf(b, sizeof b, "models/internvl2-qwen2-tiny/%s", files[i]);
        same_file(a, qt_fixture(b));
    }
    char md[600];
    snprintf(md, sizeof md, "%s/SYNTHETIC.md", dir);
    cr_assert(qv_path_exists(md));
    qv_synth_plan_free(p);
    qv_remove_tree(tmp);
    free(dir);
    free(tmp);
}

Test(synth, reduced_sharded_internlm2_reads_back, .timeout = 300)
{
    /* 26B layout (InternViT-6B) with InternLM2, small shards: the index must list every tensor */
    char *tmp = qt_tmpdir(),
         *dir = synth_cli(tmp, "m", "--arch internvl2-26b --layers 2 --scale-dims 16 --shard-size 4M --seed 7");
    qv_synth_plan *p = plan("internvl2-26b", 2, 16);
    cr_assert_gt(qv_synth_shard_count(p, 4 << 20), 2);
    check_against_plan(dir, p, 7);
    check_inspect(dir, p);
    char idx[600];
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
    json_object *j = json_object_from_file(idx), *md, *ts, *wm;
    cr_assert_not_null(j);
    cr_assert(json_object_object_get_ex(j, "metadata", &md) && json_object_object_get_ex(md, "total_size", &ts));
    cr_assert_eq((uint64_t)json_object_get_int64(ts), p->bytes);
    cr_assert(json_object_object_get_ex(j, "weight_map", &wm));
    cr_assert_eq((size_t)json_object_object_length(wm), p->n);
    json_object_put(j);
    qv_model_config c;
    cr_assert_eq(qv_model_config_load(dir, &c), QV_OK, "%s", qv_last_error());
    cr_assert_eq(c.llm.kind, QV_DECODER_INTERNLM2);
    cr_assert_eq(c.llm.rope_kind, QV_ROPE_DYNAMIC);
    cr_assert_float_eq(c.llm.rope_factor, 3.0, 0);
    cr_assert_eq(c.llm.n_layers, 2);
    cr_assert_eq(c.llm.vocab, (92553 + 15) / 16);
    cr_assert_eq(c.llm.bos_id, 1);
    cr_assert_eq(c.vision.norm, QV_NORM_RMS);
    cr_assert(c.vision.qk_norm && !c.vision.qkv_bias);
    cr_assert_eq(c.vision.n_layers, 45);
    qv_model_config_free(&c);
    static const char *files[] = {"tokenizer.model", "tokenizer_config.json", "added_tokens.json",
                                  "special_tokens_map.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char a[600], b[600];
        snprintf(a, sizeof a, "%s/%s", dir, files[i]);
        snprintf(b, sizeof b, "models/internvl2-internlm2-tiny/%s", files[i]);
        same_file(a, qt_fixture(b));
    }
    qv_synth_plan_free(p);
    qv_remove_tree(tmp);
    free(dir);
    free(tmp);
}

Test(synth, reduced_qwen_llava_and_text_read_back, .timeout = 300)
{
    char *tmp = qt_tmpdir();
    static const struct {
        const char *arch, *fixture;
        int div;
        bool config_supported;
    } cases[] = {
        {"qwen2-vl-7b", "qwen2-vl-tiny", 8, true},
        {"qwen2-vl-2b", "qwen2-vl-tiny", 8, true},
        {"qwen2.5-vl-7b", "qwen2-vl-tiny", 4, false}, /* config.c does not read Qwen2.5-VL yet */
        {"llava-onevision-qwen2-7b", "llava-onevision-qwen2-tiny", 8, true},
        {"qwen2-7b", "qwen2-tiny", 16, true},
        {"internvl3-8b", "internvl3-tiny", 16, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[200];
        snprintf(args, sizeof args, "--arch %s --layers 1 --scale-dims %d", cases[i].arch, cases[i].div);
        char *dir = synth_cli(tmp, cases[i].arch, args);
        qv_synth_plan *p = plan(cases[i].arch, 1, cases[i].div);
        check_against_plan(dir, p, 0);
        char a[600], b[600];
        snprintf(a, sizeof a, "%s/tokenizer.json", dir);
        snprintf(b, sizeof b, "models/%s/tokenizer.json", cases[i].fixture);
        same_file(a, qt_fixture(b));
        if (cases[i].config_supported) {
            check_inspect(dir, p);
            qv_model_config c;
            cr_assert_eq(qv_model_config_load(dir, &c), QV_OK, "%s", qv_last_error());
            cr_assert_eq(c.llm.n_layers, 1);
            cr_assert_eq(c.llm.hidden, p->dims.llm.hidden);
            cr_assert_eq(c.llm.tie_embeddings, p->dims.llm.tie);
            cr_assert_eq(c.llm.eos_id, p->tok->eos);
            if (c.family == QV_FAMILY_QWEN2_VL) {
                cr_assert_eq(c.image_token_id, 2012); /* <|image_pad|> of the shipped tokenizer */
                cr_assert_eq(c.vision_start_id, 2009);
                cr_assert_eq(c.llm.rope_kind, QV_ROPE_MROPE);
                cr_assert_eq(c.llm.mrope_section[0] + c.llm.mrope_section[1] + c.llm.mrope_section[2],
                             c.llm.head_dim / 2);
                cr_assert_eq(c.vision.hidden, 1280 / cases[i].div);
                cr_assert_eq(c.vision.out_hidden, p->dims.llm.hidden);
            }
            if (c.family == QV_FAMILY_INTERNVL3)
                cr_assert_eq(c.llm.rope_kind, QV_ROPE_DYNAMIC);
            qv_model_config_free(&c);
        }
        if (p->arch->layout == QV_SYNTH_LLAVA_OV) {
            snprintf(a, sizeof a, "%s/%s/config.json", dir, qv_synth_siglip_dir());
            json_object *j = json_object_from_file(a), *v;
            cr_assert_not_null(j, "%s", a);
            cr_assert(json_object_object_get_ex(j, "num_hidden_layers", &v));
            cr_assert_eq(json_object_get_int(v), 27); /* 26 stored */
            json_object_put(j);
        }
        qv_synth_plan_free(p);
        free(dir);
    }
    qv_remove_tree(tmp);
    free(tmp);
}

/* ---- the shipped tokenizers ------------------------------------------------------------------ */

/* id of `token` in a family's files: tokenizer.json "added_tokens", else added_tokens.json and
 * the SentencePiece specials of tokenizer_config.json. -1 when absent. */
static int64_t token_id(const char *family, const char *token)
{
    for (size_t i = 0; i < qv_synth_n_files; i++) {
        const qv_synth_file *f = &qv_synth_files[i];
        if (strcmp(f->family, family) != 0)
            continue;
        bool tj = !strcmp(f->name, "tokenizer.json"), tc = !strcmp(f->name, "tokenizer_config.json");
        if (!tj && !tc && strcmp(f->name, "added_tokens.json") != 0)
            continue;
        size_t n = 0;
        for (int k = 0; k < f->n_parts; k++)
            n += f->parts[k].len;
        char *s = malloc(n + 1), *q = s;
        for (int k = 0; k < f->n_parts; k++)
            q = (char *)memcpy(q, f->parts[k].data, f->parts[k].len) + f->parts[k].len;
        *q = 0;
        json_object *j = json_tokener_parse(s), *v;
        free(s);
        cr_assert_not_null(j, "%s/%s is not JSON", family, f->name);
        int64_t id = -1;
        if (tj && json_object_object_get_ex(j, "added_tokens", &v)) {
            for (size_t a = 0; a < json_object_array_length(v); a++) {
                json_object *e = json_object_array_get_idx(v, a), *c, *d;
                if (json_object_object_get_ex(e, "content", &c) && !strcmp(json_object_get_string(c), token) &&
                    json_object_object_get_ex(e, "id", &d))
                    id = json_object_get_int64(d);
            }
        } else if (tc && json_object_object_get_ex(j, "added_tokens_decoder", &v)) {
            json_object_object_foreach(v, key, e)
            {
                json_object *c;
                if (json_object_object_get_ex(e, "content", &c) && !strcmp(json_object_get_string(c), token))
                    id = atoll(key);
            }
        } else if (!tj && !tc && json_object_object_get_ex(j, token, &v)) {
            id = json_object_get_int64(v);
        }
        json_object_put(j);
        if (id >= 0)
            return id;
    }
    return -1;
}

Test(synth, token_ids_point_at_the_shipped_tokenizer)
{
    static const char *families[] = {"internlm2", "internvl2-qwen2", "internvl3", "qwen2", "qwen2-vl", "llava-ov"};
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        const char *f = families[i];
        const qv_synth_tok_ids *t = qv_synth_tok_find(f);
        cr_assert_not_null(t, "%s", f);
        bool lm2 = !strcmp(f, "internlm2");
        cr_assert_eq(t->bos, token_id(f, lm2 ? "<s>" : "<|endoftext|>"), "%s bos", f);
        cr_assert_eq(t->eos, token_id(f, lm2 ? "</s>" : "<|im_end|>"), "%s eos", f);
        if (t->pad >= 0)
            cr_assert_eq(t->pad, token_id(f, lm2 ? "</s>" : "<|endoftext|>"), "%s pad", f);
        cr_assert_geq(token_id(f, "<|im_start|>"), 0, "%s has no <|im_start|>", f);
        cr_assert_geq(token_id(f, "<|im_end|>"), 0, "%s has no <|im_end|>", f);
        cr_assert_eq(t->img_start, token_id(f, "<img>"), "%s <img>", f);
        cr_assert_eq(t->img_end, token_id(f, "</img>"), "%s </img>", f);
        cr_assert_eq(t->img_context, token_id(f, "<IMG_CONTEXT>"), "%s <IMG_CONTEXT>", f);
        cr_assert_eq(t->vision_start, token_id(f, "<|vision_start|>"), "%s", f);
        cr_assert_eq(t->vision_end, token_id(f, "<|vision_end|>"), "%s", f);
        cr_assert_eq(t->vision_pad, token_id(f, "<|vision_pad|>"), "%s", f);
        cr_assert_eq(t->image_pad, token_id(f, "<|image_pad|>"), "%s", f);
        cr_assert_eq(t->video_pad, token_id(f, "<|video_pad|>"), "%s", f);
    }
    /* every architecture: the InternVL / Qwen2-VL tokens the calibration prompts need exist,
     * and the tokenizer is smaller than the embedding */
    for (size_t i = 0; i < qv_synth_arch_count(); i++) {
        const qv_synth_arch *a = qv_synth_arch_at(i);
        const qv_synth_tok_ids *t = qv_synth_tok_find(a->tokenizer);
        cr_assert_lt(t->n_tokens, a->llm.vocab / 16, "%s", a->name); /* also below --scale-dims 16 vocabs */
        if (a->layout == QV_SYNTH_INTERNVL)
            cr_assert(t->img_start >= 0 && t->img_end >= 0 && t->img_context >= 0, "%s", a->name);
        if (a->layout == QV_SYNTH_QWEN2_VL || a->layout == QV_SYNTH_QWEN2_5_VL)
            cr_assert(t->vision_start >= 0 && t->vision_end >= 0 && t->image_pad >= 0, "%s", a->name);
    }
}

/* ---- determinism ---------------------------------------------------------------------------- */

static void same_tree(const char *a, const char *b)
{
    DIR *d = opendir(a);
    cr_assert_not_null(d);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char pa[600], pb[600];
        snprintf(pa, sizeof pa, "%s/%s", a, e->d_name);
        snprintf(pb, sizeof pb, "%s/%s", b, e->d_name);
        if (qv_is_dir(pa))
            same_tree(pa, pb);
        else
            same_file(pa, pb);
        n++;
    }
    closedir(d);
    cr_assert_gt(n, 0);
}

Test(synth, same_seed_same_bytes_for_any_thread_count_and_isa, .timeout = 300)
{
    char *tmp = qt_tmpdir();
    const char *args = "--arch qwen2-vl-7b --layers 2 --scale-dims 8 --shard-size 3M --seed 5";
    char a1[300], a2[300];
    snprintf(a1, sizeof a1, "%s --threads 1", args);
    snprintf(a2, sizeof a2, "%s --threads 2", args);
    char *d1 = synth_cli(tmp, "t1", a1), *d2 = synth_cli(tmp, "t2", a2);
    setenv("QVLM_ISA", "scalar", 1);
    char *d3 = synth_cli(tmp, "scalar", a2);
    unsetenv("QVLM_ISA");
    same_tree(d1, d2);
    same_tree(d1, d3);
    /* another seed: same config, different weights */
    char *d4 = synth_cli(tmp, "seed6", "--arch qwen2-vl-7b --layers 2 --scale-dims 8 --shard-size 3M --seed 6");
    char c1[600], c4[600];
    snprintf(c1, sizeof c1, "%s/config.json", d1);
    snprintf(c4, sizeof c4, "%s/config.json", d4);
    same_file(c1, c4);
    qv_synth_plan *p = plan("qwen2-vl-7b", 2, 8);
    size_t shards = qv_synth_shard_count(p, 3 << 20);
    qv_synth_plan_free(p);
    cr_assert_gt(shards, 1);
    snprintf(c1, sizeof c1, "%s/model-00001-of-%05zu.safetensors", d1, shards);
    snprintf(c4, sizeof c4, "%s/model-00001-of-%05zu.safetensors", d4, shards);
    char *x, *y;
    size_t nx, ny;
    cr_assert_eq(qv_read_file(c1, (size_t)1 << 30, &x, &nx), QV_OK, "%s", qv_last_error());
    cr_assert_eq(qv_read_file(c4, (size_t)1 << 30, &y, &ny), QV_OK, "%s", qv_last_error());
    cr_assert(nx == ny && memcmp(x, y, nx) != 0, "seeds 5 and 6 gave the same weights");
    qv_free(x);
    qv_free(y);
    qv_remove_tree(tmp);
    free(d1), free(d2), free(d3), free(d4), free(tmp);
}

/* ---- refusals and failures ------------------------------------------------------------------ */

Test(synth, refuses_a_non_empty_folder_unless_forced)
{
    char *tmp = qt_tmpdir(), out_dir[600], keep[600], *out, *err;
    snprintf(out_dir, sizeof out_dir, "%s/m", tmp);
    snprintf(keep, sizeof keep, "%s/m/keep.txt", tmp);
    cr_assert_eq(qv_mkdirs(out_dir), QV_OK);
    cr_assert_eq(qv_write_file_atomic(keep, "x", 1), QV_OK);
    const char *args = "--arch internvl2-1b --layers 1 --scale-dims 16";
    cr_assert_eq(qt_run_cli(&out, &err, "synth -q %s -o '%s'", args, out_dir), 1);
    cr_assert_eq(qt_count_lines(err), 1, "%s", err);
    cr_assert(strstr(err, out_dir) && strncmp(err, "qvlm: ", 6) == 0, "%s", err);
    cr_assert(qv_path_exists(keep), "the existing folder was touched");
    free(out);
    free(err);
    /* nothing but the original folder in the parent (no temporary left) */
    DIR *d = opendir(tmp);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    cr_assert_eq(n, 1);
    cr_assert_eq(qt_run_cli(&out, &err, "synth -q %s -o '%s' --force", args, out_dir), 0, "%s", err);
    cr_assert(!qv_path_exists(keep), "--force must replace the folder");
    free(out);
    free(err);
    /* an empty folder is fine without --force */
    char empty[500];
    snprintf(empty, sizeof empty, "%s/empty", tmp);
    cr_assert_eq(qv_mkdirs(empty), QV_OK);
    cr_assert_eq(qt_run_cli(&out, &err, "synth -q %s -o '%s'", args, empty), 0, "%s", err);
    snprintf(keep, sizeof keep, "%s/config.json", empty);
    cr_assert(qv_path_exists(keep));
    free(out);
    free(err);
    qv_remove_tree(tmp);
    free(tmp);
}

Test(synth, a_failed_write_leaves_nothing)
{
    /* a file-size limit makes the shard reservation fail (EFBIG), as a full disk would */
    char *tmp = qt_tmpdir(), out_dir[600];
    snprintf(out_dir, sizeof out_dir, "%s/m", tmp);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {1 << 20, 1 << 20};
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    qv_synth_plan *p = plan("internvl2-1b", 1, 16); /* ~5 MB in one shard */
    qv_synth_opts o = {0};
    cr_assert_neq(qv_synth_write(p, out_dir, &o), QV_OK);
    cr_assert(strstr(qv_last_error(), "model.safetensors"), "%s", qv_last_error());
    cr_assert(!qv_path_exists(out_dir));
    DIR *d = opendir(tmp);
    struct dirent *e;
    while ((e = readdir(d)))
        cr_assert(e->d_name[0] == '.', "left behind: %s", e->d_name);
    closedir(d);
    qv_synth_plan_free(p);
    qv_remove_tree(tmp);
    free(tmp);
}

Test(synth, refuses_up_front_without_disk_space)
{
    /* the full InternVL2-26B needs 51 GB: pick a filesystem with less free space, if any */
    qv_synth_plan *p = plan("internvl2-26b", 0, 1);
    const char *cands[] = {"/dev/shm", "/tmp"};
    const char *where = NULL;
    for (size_t i = 0; i < 2 && !where; i++) {
        struct statvfs vs;
        if (statvfs(cands[i], &vs) == 0 && (uint64_t)vs.f_bavail * vs.f_frsize < p->bytes)
            where = cands[i];
    }
    if (!where) {
        qv_synth_plan_free(p);
        cr_skip_test("no filesystem here has less than %llu bytes free", (unsigned long long)p->bytes);
    }
    char out_dir[600], *out, *err;
    snprintf(out_dir, sizeof out_dir, "%s/qvlm-synth-nospace-%d", where, (int)getpid());
    cr_assert_eq(qt_run_cli(&out, &err, "synth -q --arch internvl2-26b -o '%s'", out_dir), 1);
    cr_assert_eq(qt_count_lines(err), 1, "%s", err);
    cr_assert(strstr(err, out_dir) && strstr(err, "GB"), "%s", err);
    cr_assert(!qv_path_exists(out_dir));
    free(out);
    free(err);
    qv_synth_plan_free(p);
}
