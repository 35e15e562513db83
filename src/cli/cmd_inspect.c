/* cmd_inspect.c — `qvlm inspect MODEL [--json]`: architecture, parts with dims, parameter count
 * per part (the sum of the tensors' element counts) and total, dtypes, shards, and the
 * quantization_config when the checkpoint has one (spec/CLI.md). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "core/fsutil.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "model/config.h"

typedef struct part_stats {
    int64_t params, tensors;
} part_stats;

typedef struct inspect_result {
    part_stats parts[QV_PART_COUNT];
    int64_t total, bytes;
    int64_t dtype_params[QV_DTYPE_COUNT];
} inspect_result;

static void collect(const qv_checkpoint *ck, const qv_model_config *cfg, inspect_result *r)
{
    memset(r, 0, sizeof *r);
    for (size_t i = 0; i < ck->n; i++) {
        const qv_st_entry *e = qv_checkpoint_entry(ck, i, NULL);
        int64_t numel;
        qv_shape_numel(e->ndim, e->shape, &numel); /* validated when the header was read */
        qv_part p = qv_model_part_of(cfg, e->name);
        r->parts[p].params += numel;
        r->parts[p].tensors++;
        r->total += numel;
        r->bytes += (int64_t)(e->end - e->begin);
        r->dtype_params[e->dtype] += numel;
    }
}

static const char *shard_name(const qv_st_file *f)
{
    const char *s = strrchr(f->path, '/');
    return s ? s + 1 : f->path;
}

static void part_dims_json(qv_strbuf *b, const qv_model_config *cfg, qv_part p)
{
    const qv_llm_config *l = &cfg->llm;
    const qv_vision_config *v = &cfg->vision;
    if (p == QV_PART_LLM) {
        qv_sb_printf(b, "\"architecture\":\"%s\",\"decoder\":\"%s\",\"hidden\":%lld,\"layers\":%lld,\"heads\":%lld,"
                        "\"kv_heads\":%lld,\"head_dim\":%lld,\"intermediate\":%lld,\"vocab\":%lld",
                     l->architecture, qv_decoder_name(l->kind), (long long)l->hidden, (long long)l->n_layers,
                     (long long)l->n_heads, (long long)l->n_kv_heads, (long long)l->head_dim,
                     (long long)l->intermediate, (long long)l->vocab);
    } else if (p == QV_PART_VISION && cfg->has_vision) {
        qv_sb_printf(b, "\"model_type\":\"%s\",\"hidden\":%lld,\"layers\":%lld,\"heads\":%lld,\"intermediate\":%lld,"
                        "\"image_size\":%lld,\"patch_size\":%lld",
                     v->model_type, (long long)v->hidden, (long long)v->n_layers, (long long)v->n_heads,
                     (long long)v->intermediate, (long long)v->image_size, (long long)v->patch_size);
    }
}

static int print_json(const qv_checkpoint *ck, const qv_model_config *cfg, const inspect_result *r,
                      const qv_json *qcfg)
{
    qv_strbuf b;
    qv_sb_init(&b);
    qv_sb_printf(&b, "{\"architecture\":\"%s\",\"family\":\"%s\",\"torch_dtype\":\"%s\",\"params_total\":%lld,"
                     "\"bytes_total\":%lld,\"tensors\":%zu,\"parts\":{",
                 cfg->architecture, qv_family_name(cfg->family), cfg->torch_dtype, (long long)r->total,
                 (long long)r->bytes, ck->n);
    bool first = true;
    for (int p = 0; p < QV_PART_COUNT; p++) {
        if (!r->parts[p].tensors)
            continue;
        qv_sb_printf(&b, "%s\"%s\":{\"params\":%lld,\"tensors\":%lld%s", first ? "" : ",", qv_part_name((qv_part)p),
                     (long long)r->parts[p].params, (long long)r->parts[p].tensors,
                     p == QV_PART_PROJECTOR ? "" : ",\"dims\":{");
        if (p != QV_PART_PROJECTOR) {
            part_dims_json(&b, cfg, (qv_part)p);
            qv_sb_puts(&b, "}");
        }
        qv_sb_puts(&b, "}");
        first = false;
    }
    qv_sb_puts(&b, "},\"dtypes\":{");
    first = true;
    for (int d = 0; d < QV_DTYPE_COUNT; d++)
        if (r->dtype_params[d]) {
            qv_sb_printf(&b, "%s\"%s\":%lld", first ? "" : ",", qv_dtype_name((qv_dtype)d), (long long)r->dtype_params[d]);
            first = false;
        }
    qv_sb_puts(&b, "},\"shards\":[");
    for (size_t s = 0; s < ck->n_shards; s++) {
        qv_sb_puts(&b, s ? "," : "");
        qv_sb_json_str(&b, shard_name(ck->shards[s]), strlen(shard_name(ck->shards[s])));
    }
    qv_sb_puts(&b, "],\"quantization_config\":");
    qv_sb_puts(&b, qcfg ? json_object_to_json_string_ext((qv_json *)qcfg, JSON_C_TO_STRING_PLAIN) : "null");
    qv_sb_puts(&b, "}\n");
    if (b.oom) {
        qv_sb_free(&b);
        return qv_cli_fail();
    }
    fputs(b.s, stdout);
    qv_sb_free(&b);
    return QV_EXIT_OK;
}

static void print_text(const qv_checkpoint *ck, const qv_model_config *cfg, const inspect_result *r,
                       const qv_json *qcfg)
{
    const qv_llm_config *l = &cfg->llm;
    printf("architecture  %s (family %s, dtype %s)\n", cfg->architecture, qv_family_name(cfg->family),
           cfg->torch_dtype[0] ? cfg->torch_dtype : "?");
    for (int p = 0; p < QV_PART_COUNT; p++) {
        if (!r->parts[p].tensors)
            continue;
        printf("%-13s %'16lld params in %lld tensors", qv_part_name((qv_part)p), (long long)r->parts[p].params,
               (long long)r->parts[p].tensors);
        if (p == QV_PART_LLM)
            printf("  %s: hidden %lld, %lld layers, %lld heads (%lld kv, dim %lld), mlp %lld, vocab %lld",
                   l->architecture, (long long)l->hidden, (long long)l->n_layers, (long long)l->n_heads,
                   (long long)l->n_kv_heads, (long long)l->head_dim, (long long)l->intermediate, (long long)l->vocab);
        else if (p == QV_PART_VISION && cfg->vision.n_layers)
            printf("  %s: hidden %lld, %lld layers, %lld heads, mlp %lld, patch %lld", cfg->vision.model_type,
                   (long long)cfg->vision.hidden, (long long)cfg->vision.n_layers, (long long)cfg->vision.n_heads,
                   (long long)cfg->vision.intermediate, (long long)cfg->vision.patch_size);
        printf("\n");
    }
    printf("total         %16lld params, %lld bytes, %zu tensors\n", (long long)r->total, (long long)r->bytes, ck->n);
    printf("dtypes       ");
    for (int d = 0; d < QV_DTYPE_COUNT; d++)
        if (r->dtype_params[d])
            printf(" %s:%lld", qv_dtype_name((qv_dtype)d), (long long)r->dtype_params[d]);
    printf("\nshards        %zu:", ck->n_shards);
    for (size_t s = 0; s < ck->n_shards; s++)
        printf(" %s", shard_name(ck->shards[s]));
    printf("\nquantization  %s\n", qcfg ? json_object_to_json_string_ext((qv_json *)qcfg, JSON_C_TO_STRING_PLAIN) : "none");
}

int qv_cmd_inspect(int argc, char **argv)
{
    bool json = false;
    const qv_opt opts[] = {
        {"json", 0, QV_OPT_FLAG, &json, NULL, "print one JSON object"},
        {0},
    };
    const qv_cli_cmd cmd = {"inspect", "MODEL [--json]",
                            "Architecture, parts (vision / projector / LLM) with dims, parameter counts per part and "
                            "in total, dtypes, shards and quantization_config of a model folder.",
                            opts, 1, 1};
    const char *pos[1];
    int npos, r = qv_cli_parse(&cmd, argc, argv, pos, &npos);
    if (r >= 0)
        return r;
    qv_model_config cfg;
    qv_checkpoint *ck = NULL;
    qv_json *root = NULL;
    if (qv_model_config_load(pos[0], &cfg) != QV_OK)
        return qv_cli_fail();
    int rc = QV_EXIT_OK;
    if (qv_checkpoint_open(pos[0], &ck) != QV_OK || qv_json_load_file(cfg.path, 0, &root) != QV_OK) {
        rc = qv_cli_fail();
    } else {
        inspect_result res;
        collect(ck, &cfg, &res);
        const qv_json *q = qv_json_get(root, "quantization_config");
        if (json)
            rc = print_json(ck, &cfg, &res, q);
        else
            print_text(ck, &cfg, &res, q);
    }
    qv_json_free(root);
    qv_checkpoint_close(ck);
    qv_model_config_free(&cfg);
    return rc;
}
