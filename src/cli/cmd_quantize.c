/* cmd_quantize.c — `qvlm quantize CONFIG [-o DIR]` (spec/CLI.md): every run of the YAML document
 * in order (one mapping, or a list of mappings as the MBQ reference executes them), each through
 * src/quant/quantize.h, then the optional export the run's `export:` key asks for.
 *
 * The calibration batch is built once per output folder (src/calib/batch.h), kept in
 * DIR/progress/calib_batch.safetensors so a resumed run does not decode the images again, and
 * turned into layer-0 inputs by the model's vision tower (src/vision/vision.h); method fp8 runs the
 * tower again through its per-Linear hook (statistics, then the fake-quantized tower). */
#include <stdio.h>
#include <string.h>

#include "calib/batch.h"
#include "cli.h"
#include "config/run_config.h"
#include "core/comm.h"
#include "core/fsutil.h"
#include "core/progress.h"
#include "export/export.h"
#include "quant/quantize.h"
#include "vision/vision.h"

typedef struct batch_ctx {
    const char *dir;
    bool skip_bad, allow_repeat;
} batch_ctx;

static void on_note(void *ctx, const char *msg)
{
    (void)ctx;
    qv_cli_log("qvlm: note: %s\n", msg);
}

static void on_skip(void *ctx, const char *msg)
{
    (void)ctx;
    fprintf(stderr, "qvlm: warning: %s\n", msg);
}

static void on_progress(void *ctx, size_t done, size_t total)
{
    qv_progress *p = ctx;
    if (p->total == 0)
        p->total = (int64_t)total;
    qv_progress_step(p, 1, NULL);
    (void)done;
}

/* Samples [b0, b0 + nb) of the batch file at path through the vision tower into b's
 * inputs_embeds, with an optional per-Linear hook (method fp8). One tile / image per tower call:
 * a sample's features then do not depend on which other samples share its rank (data-parallel
 * runs reproduce the single-process bits). */
static qv_status embed_range(qv_llm *m, const char *path, const qv_vision_hook *hook, const qv_llm_batch *full,
                             int64_t b0, int64_t nb, qv_llm_batch *b)
{
    qv_vision *vis = NULL;
    qv_mm_batch mb = {0};
    bool images = false;
    const qv_vision_opts vo = {m->dt, 1, 1, 0, hook};
    qv_status st = qv_vision_open(&m->cfg, m->ck, m->dir, &vo, &vis);
    if (st == QV_OK)
        st = qv_mm_batch_load(path, vis, &mb, &images);
    if (st == QV_OK && images) {
        float *emb = qv_aligned_alloc(64, (size_t)(nb * full->L * m->C) * sizeof(float) + 64, "inputs_embeds");
        st = emb ? qv_mm_batch_embed_range(vis, m, &mb, full, b0, nb, emb) : QV_ERR_NOMEM;
        if (st == QV_OK) {
            qv_free(b->inputs_embeds);
            b->inputs_embeds = emb;
            b->C = m->C;
        } else {
            qv_free(emb);
        }
    }
    qv_mm_batch_free(&mb);
    qv_vision_close(vis);
    return st;
}

/* Method fp8: b (the whole batch, see get_batch) re-embedded through the hooked tower. */
static qv_status embed_images(void *vctx, qv_llm *m, const qv_run_config *rc, const qv_vision_hook *hook, qv_llm_batch *b)
{
    batch_ctx *c = vctx;
    (void)rc;
    if (!m->cfg.has_vision)
        return QV_OK;
    char *path = qv_asprintf("%s/progress/calib_batch.safetensors", c->dir);
    qv_status st = path ? embed_range(m, path, hook, b, 0, b->B, b) : QV_ERR_NOMEM;
    qv_free(path);
    return st;
}

/* This rank's share of the calibration batch: rank 0 builds the batch file once (in
 * DIR/progress, reused by a resumed run), every rank reads it and runs the vision tower on its
 * own contiguous block of samples only (b0 == NULL: every rank gets the whole batch). */
static qv_status get_batch(void *vctx, qv_llm *m, const qv_run_config *rc, qv_llm_batch *b, int64_t *b0,
                           int64_t *n_total)
{
    batch_ctx *c = vctx;
    const qv_comm *comm = qv_comm_world();
    char *path = qv_asprintf("%s/progress/calib_batch.safetensors", c->dir);
    if (!path)
        return QV_ERR_NOMEM;
    qv_status st = QV_OK;
    if (comm->rank == 0 && !qv_path_exists(path)) {
        qv_progress prog;
        qv_progress_init(&prog, qv_cli.quiet ? NULL : stderr, "calibration", 0);
        qv_calib_run_options ro = {.skip_bad_images = c->skip_bad, .allow_repeat = c->allow_repeat, .on_skip = on_skip,
                                   .on_progress = on_progress, .on_note = on_note, .ctx = &prog};
        qv_calib_batch cb;
        st = qv_calib_from_config(rc, &ro, &cb);
        qv_progress_finish(&prog);
        if (st == QV_OK) {
            st = qv_calib_batch_write(&cb, path);
            qv_calib_batch_free(&cb);
        }
    }
    if (st == QV_OK)
        st = qv_comm_barrier();
    qv_llm_batch full = {0};
    if (st == QV_OK)
        st = qv_llm_batch_load(path, &full);
    int64_t nb = 0, whole_b0 = 0;
    if (!b0) /* the whole batch on every rank */
        b0 = &whole_b0;
    if (st == QV_OK && b0 == &whole_b0) {
        nb = full.B;
        if (n_total)
            *n_total = full.B;
    } else if (st == QV_OK) {
        qv_comm_shard(full.B, comm->rank, comm->size, b0, &nb);
        *n_total = full.B;
        if (comm->size > full.B)
            st = qv_fail(QV_ERR_INVALID, "%s: %d ranks for %lld calibration samples (at most one rank per sample)",
                         rc->file, comm->size, (long long)full.B);
    }
    if (st == QV_OK)
        st = qv_llm_batch_slice(&full, *b0, nb, b);
    if (st == QV_OK && m->cfg.has_vision) {
        st = embed_range(m, path, NULL, &full, *b0, nb, b);
    }
    if (st != QV_OK)
        qv_llm_batch_free(b);
    qv_llm_batch_free(&full);
    qv_free(path);
    return st;
}

static void export_log(void *ctx, const char *msg)
{
    (void)ctx;
    qv_cli_log("qvlm: %s\n", msg);
}

static int run_export(const qv_run_config *rc, const char *scales_dir, bool force)
{
    qv_export_opts eo;
    qv_export_opts_init(&eo);
    eo.model = rc->pretrained;
    eo.scales = scales_dir;
    eo.out = rc->export.path;
    /* an fp8 run leaves the scheme it used in DIR/recipe.yaml, which the export reads */
    eo.recipe = rc->method == QV_METHOD_FP8 ? NULL : rc->export.recipe;
    if (!qv_format_parse(qv_export_format_name(rc->export.format), &eo.format)) {
        qv_fail(QV_ERR_INVALID, "%s: export: unknown format", rc->file);
        return qv_cli_fail();
    }
    eo.force = force;
    eo.max_memory = qv_cli.max_memory;
    eo.log = export_log;
    if (!eo.out) {
        qv_fail(QV_ERR_INVALID, "%s: export: no path", rc->file);
        return qv_cli_fail();
    }
    qv_export_stats es;
    if (qv_export_run(&eo, &es) != QV_OK)
        return qv_cli_fail();
    qv_cli_log("qvlm: exported %s (%s): %zu tensors, %zu linears quantized\n", eo.out,
               qv_format_name(eo.format), es.n_tensors, es.n_quantized);
    return QV_EXIT_OK;
}

int qv_cmd_quantize(int argc, char **argv)
{
    const char *out = NULL, *recipe = NULL;
    bool force = false, skip = false, repeat = false;
    int64_t only = -1;
    const qv_opt opts[] = {
        {"output", 'o', QV_OPT_STR, &out, "DIR", "output folder (default: the run's scale_path without .pt)"},
        {"force", 0, QV_OPT_FLAG, &force, NULL, "start over in a folder that holds a run with another configuration"},
        {"skip-bad-images", 0, QV_OPT_FLAG, &skip, NULL, "skip samples whose image cannot be read (each is reported)"},
        {"allow-repeat", 0, QV_OPT_FLAG, &repeat, NULL,
         "n_samples above the number of captions: repeat samples as the MBQ reference does"},
        {"run", 0, QV_OPT_INT, &only, "N", "only run N of a multi-run CONFIG"},
        {"recipe", 0, QV_OPT_STR, &recipe, "FILE",
         "method fp8: llm-compressor recipe (YAML/JSON) giving the FP8 scheme, targets, ignore list and "
         "kv_cache_scheme (default: the run's export.recipe, else FP8_DYNAMIC on the LLM Linears)"},
        {0},
    };
    const qv_cli_cmd cmd = {"quantize", "CONFIG [-o DIR]",
                            "Calibration, (MBQ) gradients, the layer-by-layer search, the quantized model's evaluation "
                            "and the optional export of every run of CONFIG. Writes DIR/scales.safetensors, "
                            "DIR/search.json, DIR/eval.json and DIR/timings.json; re-running resumes from the last "
                            "finished layer.",
                            opts, 1, 1};
    const char *pos[1];
    int npos, r = qv_cli_parse(&cmd, argc, argv, pos, &npos);
    if (r >= 0)
        return r;
    qv_run_config *runs = NULL;
    size_t n_runs = 0;
    if (qv_run_config_load(pos[0], &runs, &n_runs) != QV_OK)
        return qv_cli_fail();
    if (only >= (int64_t)n_runs) {
        qv_run_configs_free(runs, n_runs);
        return qv_cli_usage_error(cmd.name, "--run %lld: %s holds %zu run%s", (long long)only, pos[0], n_runs,
                                  n_runs == 1 ? "" : "s");
    }
    if (out && n_runs > 1 && only < 0) {
        qv_run_configs_free(runs, n_runs);
        return qv_cli_usage_error(cmd.name, "%s holds %zu runs: -o DIR needs --run N", pos[0], n_runs);
    }
    int rc = QV_EXIT_OK;
    for (size_t i = 0; i < n_runs && rc == QV_EXIT_OK; i++) {
        if (only >= 0 && (size_t)only != i)
            continue;
        const qv_run_config *run = &runs[i];
        for (size_t k = 0; k < run->n_notes; k++)
            qv_cli_log("qvlm: note: %s\n", run->notes[k]);
        if (qv_cli.threads == 0 && run->threads > 0) {
            qv_cli.threads = run->threads;
            qv_cli_apply_threads();
        }
        /* run_process: false is the reference's evaluate-only form: the scales at scale_path (a qvlm
         * folder or MBQ's .pt) are evaluated, the results go to -o DIR (default: beside them) */
        const char *dir = out ? out : run->scale_dir;
        batch_ctx bc = {.dir = dir, .skip_bad = skip, .allow_repeat = repeat};
        qv_quantize_io io = {.out_dir = dir, .force = force, .log = qv_cli.quiet ? NULL : stderr,
                             .get_batch = get_batch, .batch_ctx = &bc, .embed_images = embed_images, .recipe = recipe};
        if (qv_quantize(run, &io) != QV_OK) {
            rc = qv_cli_fail();
            break;
        }
        /* the export path is part of the run (its YAML names it): a re-run rewrites it, like the
         * other outputs of the run */
        if (run->export.format != QV_EXPORT_FORMAT_NONE)
            rc = run_export(run, dir, true);
    }
    qv_run_configs_free(runs, n_runs);
    return rc;
}
