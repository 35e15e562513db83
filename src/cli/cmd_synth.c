/* cmd_synth.c — `qvlm synth --arch NAME -o OUT [--layers N] [--dry-run] [--seed S]
 * [--shard-size SIZE] [--force]` (spec/CLI.md): a random-weight checkpoint with the real names,
 * shapes, dtypes, config and file set of a known architecture, written streaming
 * (src/synth/synth.h). `--arch list` prints the known architectures. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "synth/synth.h"

static const char k_summary[] =
    "Writes a random-weight checkpoint with the exact tensor names, shapes, dtype (BF16), config.json keys and\n"
    "file set of a real model, in 5 GB safetensors shards plus model.safetensors.index.json, streaming (the\n"
    "model is never held in memory). --layers N keeps the first N decoder layers of the language model (and the\n"
    "whole vision tower); --dry-run prints the parameter counts (per part and in total) without writing.\n"
    "'--arch list' names the known architectures.\n"
    "\n"
    "Tokenizer: the real tokenizer cannot be downloaded, so the folder gets the small tokenizer of qvlm's test\n"
    "model of the same family (InternLM2 SentencePiece or Qwen2 byte-level BPE, about 2000 tokens, with the\n"
    "family's special tokens: <img>, </img>, <IMG_CONTEXT>, <|im_start|>, <|im_end|>, Qwen2-VL's vision tokens).\n"
    "Every token id stays below the real vocab_size, so the embedding and LM-head shapes are the real ones while\n"
    "the tokenizer is small; the config's token-id fields (bos/eos, image_token_id, ...) point at the small\n"
    "tokenizer's ids. The folder's SYNTHETIC.md says so too. Random weights: for speed and memory at real\n"
    "scale, never for quality.";

typedef struct progress_state {
    struct timespec t0;
    int last_decile;
    bool tty;
} progress_state;

static double seconds_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + 1e-9 * (double)(t.tv_nsec - t0->tv_nsec);
}

static void on_progress(void *ctx, uint64_t done, uint64_t total)
{
    progress_state *ps = ctx;
    double el = seconds_since(&ps->t0), frac = total ? (double)done / (double)total : 1.0;
    double rate = el > 0 ? (double)done / el : 0, eta = rate > 0 ? (double)(total - done) / rate : 0;
    if (ps->tty) {
        int w = 30, fill = (int)(frac * w);
        qv_cli_log("\rsynth [%.*s%*s] %3.0f%% %.2f/%.2f GB %.0f MB/s ETA %d:%02d ", fill,
                   "##############################", w - fill, "", 100 * frac, (double)done / 1e9,
                   (double)total / 1e9, rate / 1e6, (int)eta / 60, (int)eta % 60);
        if (done == total)
            qv_cli_log("\n");
        return;
    }
    int decile = (int)(frac * 10);
    if (decile > ps->last_decile) {
        ps->last_decile = decile;
        qv_cli_log("synth: %3d%% %.2f/%.2f GB, %.0f MB/s\n", decile * 10, (double)done / 1e9, (double)total / 1e9,
                   rate / 1e6);
    }
}

static void print_list(void)
{
    for (size_t i = 0; i < qv_synth_arch_count(); i++) {
        const qv_synth_arch *a = qv_synth_arch_at(i);
        printf("%-26s %-38s %lld params\n", a->name, a->hub_id, (long long)a->params_hub);
    }
}

static void print_counts(const qv_synth_plan *p, uint64_t shard_bytes)
{
    int64_t tensors[QV_PART_COUNT] = {0};
    for (size_t i = 0; i < p->n; i++)
        tensors[p->t[i].part]++;
    printf("arch       %s (%s), %lld of %lld decoder layers\n", p->arch->name, p->arch->hub_id,
           (long long)p->dims.llm.layers, (long long)p->arch->llm.layers);
    for (int i = 0; i < QV_PART_COUNT; i++)
        if (tensors[i])
            printf("%-10s %14lld params %6lld tensors\n", qv_part_name((qv_part)i), (long long)p->params[i],
                   (long long)tensors[i]);
    printf("total      %14lld params %6zu tensors, %llu bytes (BF16) in %zu shards of at most %llu bytes\n",
           (long long)p->params_total, p->n, (unsigned long long)p->bytes, qv_synth_shard_count(p, shard_bytes),
           (unsigned long long)shard_bytes);
    printf("published  %14lld params (%s, all layers)\n", (long long)p->arch->params_hub, p->arch->hub_id);
}

int qv_cmd_synth(int argc, char **argv)
{
    const char *arch = NULL, *out = NULL;
    int64_t layers = -1, seed = 0, scale = 1; /* layers -1: all */
    uint64_t shard = QV_SYNTH_DEFAULT_SHARD;
    bool dry = false, force = false;
    const qv_opt opts[] = {
        {"arch", 0, QV_OPT_STR, &arch, "NAME", "architecture ('list' prints the known ones)"},
        {"output", 'o', QV_OPT_STR, &out, "OUT", "model folder to write"},
        {"layers", 0, QV_OPT_INT, &layers, "N", "keep the first N decoder layers of the LLM (default: all)"},
        {"dry-run", 0, QV_OPT_FLAG, &dry, NULL, "print the parameter counts, write nothing"},
        {"seed", 0, QV_OPT_INT, &seed, "S", "random seed (default 0); same seed, same bytes"},
        {"shard-size", 0, QV_OPT_SIZE, &shard, "SIZE", "largest shard (default 5000000000 bytes, as transformers)"},
        {"force", 0, QV_OPT_FLAG, &force, NULL, "replace an existing non-empty OUT"},
        {"scale-dims", 0, QV_OPT_INT, &scale, "D", "testing: divide every width by D (a smaller model, same layout)"},
        {0},
    };
    const qv_cli_cmd cmd = {"synth", "--arch NAME -o OUT [--layers N] [--dry-run]", k_summary, opts, 0, 0};
    const char *pos[1];
    int npos, r = qv_cli_parse(&cmd, argc, argv, pos, &npos);
    if (r >= 0)
        return r;
    if (!arch)
        return qv_cli_usage_error("synth", "--arch is required ('--arch list' names the architectures)");
    if (!strcmp(arch, "list")) {
        print_list();
        return QV_EXIT_OK;
    }
    const qv_synth_arch *a = qv_synth_arch_find(arch);
    if (!a)
        return qv_cli_usage_error("synth", "unknown architecture '%s' ('--arch list' names them)", arch);
    if (layers == 0 || layers < -1 || layers > a->llm.layers)
        return qv_cli_usage_error("synth", "--layers must be between 1 and %lld for %s", (long long)a->llm.layers,
                                  a->name);
    if (seed < 0)
        return qv_cli_usage_error("synth", "--seed must be non-negative");
    if (shard < ((uint64_t)1 << 20))
        return qv_cli_usage_error("synth", "--shard-size must be at least 1M");
    if (!dry && !out)
        return qv_cli_usage_error("synth", "-o OUT is required (or --dry-run)");
    qv_synth_plan *p;
    if (qv_synth_plan_build(a, layers < 0 ? 0 : layers, scale, &p) != QV_OK)
        return qv_cli_fail();
    if (dry) {
        print_counts(p, shard);
        qv_synth_plan_free(p);
        return QV_EXIT_OK;
    }
    progress_state ps = {.last_decile = 0, .tty = isatty(2) == 1};
    clock_gettime(CLOCK_MONOTONIC, &ps.t0);
    qv_synth_opts o = {.seed = (uint64_t)seed, .shard_bytes = shard, .force = force, .progress = on_progress,
                       .progress_ctx = &ps};
    if (qv_cli.max_memory)
        o.buffer_bytes = QV_MAX(qv_cli.max_memory / 4, (uint64_t)1 << 20);
    int rc = QV_EXIT_OK;
    if (qv_synth_write(p, out, &o) != QV_OK) {
        rc = qv_cli_fail();
    } else {
        double el = seconds_since(&ps.t0);
        printf("%s: %s, %lld params, %llu bytes in %zu shards, %.1f s, %.3f GB/s\n", out, a->name,
               (long long)p->params_total, (unsigned long long)p->bytes, qv_synth_shard_count(p, shard), el,
               el > 0 ? (double)p->bytes / el / 1e9 : 0.0);
    }
    qv_synth_plan_free(p);
    return rc;
}
