/* cmd_calib.c — `qvlm calib CONFIG -o BATCH.safetensors [--skip-bad-images] [--allow-repeat]`
 * (spec/CLI.md): the calibration batch the run configuration describes (src/calib/batch.h),
 * written crash-safely. Progress and notes go to stderr ("qvlm: note: ..."); each skipped sample
 * ("qvlm: warning: ... ; sample skipped"); one summary line on stdout.
 *
 * n_samples larger than the caption file is an error by default (the rule); the
 * reference wraps around and repeats samples (spec/ALGORITHMS.md §11 item 20), which
 * --allow-repeat reproduces, with a note. A document with several runs builds run 0 unless
 * --run N picks another. */
#include <stdio.h>
#include <string.h>

#include "calib/batch.h"
#include "cli.h"
#include "config/run_config.h"
#include "core/progress.h"

static void on_note(void *ctx, const char *msg)
{
    (void)ctx;
    qv_cli_log("qvlm: note: %s\n", msg);
}

static void on_skip(void *ctx, const char *msg)
{
    (void)ctx;
    fprintf(stderr, "qvlm: warning: %s\n", msg); /* a skip is reported even with --quiet */
}

/* ctx: the command's qv_progress; its total becomes known with the first sample. */
static void on_progress(void *ctx, size_t done, size_t total)
{
    qv_progress *p = ctx;
    if (p->total == 0)
        p->total = (int64_t)total;
    char what[48];
    snprintf(what, sizeof what, "sample %zu", done);
    qv_progress_step(p, 1, what);
}

int qv_cmd_calib(int argc, char **argv)
{
    const char *out = NULL;
    bool skip = false, repeat = false;
    int64_t run = 0;
    const qv_opt opts[] = {
        {"output", 'o', QV_OPT_STR, &out, "BATCH.safetensors", "where to write the batch (required)"},
        {"skip-bad-images", 0, QV_OPT_FLAG, &skip, NULL,
         "skip a sample whose image is missing or unreadable (each skip is reported) instead of failing"},
        {"allow-repeat", 0, QV_OPT_FLAG, &repeat, NULL,
         "n_samples above the number of captions: wrap around and repeat samples, as the MBQ reference does"},
        {"run", 0, QV_OPT_INT, &run, "N", "the run of a multi-run CONFIG to build (default 0)"},
        {0},
    };
    const qv_cli_cmd cmd = {"calib", "CONFIG -o BATCH.safetensors [--skip-bad-images] [--allow-repeat] [--run N]",
                            "The calibration batch CONFIG describes (calib_data, data_path, image_folder, n_samples, "
                            "few_shot_format, interleave_format, text_data_path, pad_rule, max_tiles, seed): "
                            "input_ids, labels, masks, image_flags, pixel_values, tile_u8 and the prompts.",
                            opts, 1, 1};
    const char *pos[1];
    int npos, r = qv_cli_parse(&cmd, argc, argv, pos, &npos);
    if (r >= 0)
        return r;
    if (!out)
        return qv_cli_usage_error(cmd.name, "missing -o BATCH.safetensors");
    qv_run_config *runs = NULL;
    size_t n_runs = 0;
    if (qv_run_config_load(pos[0], &runs, &n_runs) != QV_OK)
        return qv_cli_fail();
    if (run < 0 || (uint64_t)run >= n_runs) {
        qv_run_configs_free(runs, n_runs);
        return qv_cli_usage_error(cmd.name, "--run %lld: %s holds %zu run%s", (long long)run, pos[0], n_runs,
                                  n_runs == 1 ? "" : "s");
    }
    const qv_run_config *rc = &runs[run];
    if (n_runs > 1)
        qv_cli_log("qvlm: note: %s holds %zu runs; building the batch of run %lld\n", pos[0], n_runs, (long long)run);
    for (size_t i = 0; i < rc->n_notes; i++)
        qv_cli_log("qvlm: note: %s\n", rc->notes[i]);
    qv_progress prog;
    qv_progress_init(&prog, qv_cli.quiet ? NULL : stderr, "calib", 0);
    qv_calib_run_options ro = {.skip_bad_images = skip, .allow_repeat = repeat, .on_skip = on_skip,
                               .on_progress = on_progress, .on_note = on_note, .ctx = &prog};
    qv_calib_batch b;
    int rc_exit = QV_EXIT_OK;
    qv_status st = qv_calib_from_config(rc, &ro, &b);
    qv_progress_finish(&prog);
    if (st != QV_OK || qv_calib_batch_write(&b, out) != QV_OK) {
        rc_exit = qv_cli_fail();
    } else {
        int64_t nv = 0, nc = 0;
        for (int64_t i = 0; b.vision_mask && i < b.n_rows * b.len; i++) {
            nv += b.vision_mask[i];
            nc += b.caption_mask[i];
        }
        if (!b.vision_mask)
            printf("%s: %s, %lld blocks of %lld tokens (pile, labels = input_ids, no masks)\n", out,
                   qv_family_name(b.family), (long long)b.n_rows, (long long)b.len);
        else
            printf("%s: %s, %lld x %lld tokens (%s padding, pad_rule %s), %zu image%s, %lld vision and %lld caption "
                   "tokens\n",
                   out, qv_family_name(b.family), (long long)b.n_rows, (long long)b.len,
                   b.left_padded ? "left" : "right", qv_pad_rule_name(b.pad_rule), b.n_images,
                   b.n_images == 1 ? "" : "s", (long long)nv, (long long)nc);
        if (fflush(stdout) != 0) {
            fprintf(stderr, "qvlm: stdout: write failed\n");
            rc_exit = QV_EXIT_FAIL;
        }
    }
    qv_calib_batch_free(&b);
    qv_run_configs_free(runs, n_runs);
    return rc_exit;
}
