/* batch_run.c — the calibration batch a run configuration describes (batch.h
 * qv_calib_from_config; spec/CLI.md `calib`, spec/ALGORITHMS.md §7.2, §9.2, §11 items 13, 20):
 * loads the model's config, tokenizer and image preprocessing, reads and selects the data, and
 * calls the family's builder (or the pile-block builder). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../core/fsutil.h"
#include "../family/family.h"
#include "batch_internal.h"

static void note(const qv_calib_run_options *ro, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(const qv_calib_run_options *ro, const char *fmt, ...)
{
    if (!ro || !ro->on_note)
        return;
    char buf[QV_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    ro->on_note(ro->ctx, buf);
}

/* The config's `model` against the names the checkpoint's family answers to. */
static qv_status check_family(const qv_run_config *rc, const qv_model_config *cfg)
{
    if (!rc->model)
        return QV_OK;
    const char *m = rc->model;
    if (qv_family_answers_to(qv_family_get(cfg->family), m))
        return QV_OK;
    return qv_fail(QV_ERR_INVALID, "%s:%zu: model: %s, but the checkpoint %s is of family %s (%s)", rc->file, rc->line,
                   m, rc->pretrained, qv_family_name(cfg->family), cfg->architecture);
}

static qv_status from_captions(const qv_run_config *rc, const qv_calib_run_options *ro, const qv_model_config *cfg,
                               qv_tokenizer *tok, qv_calib_batch *out)
{
    if (!rc->data_path)
        return qv_fail(QV_ERR_INVALID, "%s:%zu: calib_data %s needs data_path (the caption JSON/JSONL file)", rc->file,
                       rc->line, qv_calib_data_name(rc->calib_data));
    if (rc->few_shot_format && rc->interleave_format)
        return qv_fail(QV_ERR_INVALID, "%s:%zu: few_shot_format and interleave_format cannot both be true", rc->file,
                       rc->line);
    if (rc->interleave_format && !rc->text_data_path)
        return qv_fail(QV_ERR_INVALID,
                       "%s:%zu: interleave_format needs text_data_path (a local pile-val JSONL: qvlm does not "
                       "download mit-han-lab/pile-val-backup)",
                       rc->file, rc->line);
    qv_caption_file cf = {0};
    qv_text_docs pile = {0};
    size_t *order = NULL;
    char *dir = NULL;
    qv_preprocessor pp;
    qv_status st = qv_captions_load(rc->data_path, &cf);
    if (st == QV_OK && rc->n_samples < 1)
        st = qv_fail(QV_ERR_INVALID, "%s:%zu: n_samples must be at least 1", rc->file, rc->line);
    if (st == QV_OK && (uint64_t)rc->n_samples > cf.n_items) {
        if (!ro || !ro->allow_repeat)
            st = qv_fail(QV_ERR_INVALID,
                         "%s: n_samples %lld is more than the %zu entr%s in the file (the reference wraps around and "
                         "repeats samples; --allow-repeat does the same)",
                         cf.path, (long long)rc->n_samples, cf.n_items, cf.n_items == 1 ? "y" : "ies");
        else
            note(ro, "%s: n_samples %lld is more than the %zu entries in the file: wrapping around as the reference "
                     "does, so samples repeat",
                 cf.path, (long long)rc->n_samples, cf.n_items);
    }
    if (st == QV_OK && !(order = qv_calloc((size_t)rc->n_samples, sizeof *order, "sample order")))
        st = QV_ERR_NOMEM;
    if (st == QV_OK)
        st = qv_captions_select(&cf, rc->seed, (size_t)rc->n_samples, order);
    if (st == QV_OK && !(dir = qv_path_dirname(cfg->path)))
        st = qv_fail(QV_ERR_NOMEM, "out of memory (path)");
    if (st == QV_OK)
        st = qv_preprocessor_init(&pp, cfg, dir);
    if (st == QV_OK && rc->interleave_format)
        st = qv_textdata_open(rc->text_data_path, &pile);
    if (st == QV_OK) {
        qv_calib_items items = {.file = &cf, .order = order, .n = (size_t)rc->n_samples, .image_folder = rc->image_folder};
        qv_calib_options opt;
        qv_calib_options_default(&opt);
        opt.pad_rule = rc->pad_rule;
        opt.max_tiles = rc->max_tiles;
        opt.few_shot = rc->few_shot_format;
        opt.interleave = rc->interleave_format;
        opt.pile = rc->interleave_format ? &pile : NULL;
        opt.seed = rc->seed;
        if (ro) {
            opt.skip_bad_images = ro->skip_bad_images;
            opt.on_skip = ro->on_skip;
            opt.on_progress = ro->on_progress;
            opt.ctx = ro->ctx;
        }
        st = qv_calib_build(cfg, tok, &pp, &items, &opt, out);
    }
    qv_textdata_close(&pile);
    qv_free(dir);
    qv_free(order);
    qv_captions_free(&cf);
    return st;
}

qv_status qv_calib_from_config(const qv_run_config *rc, const qv_calib_run_options *ro, qv_calib_batch *out)
{
    memset(out, 0, sizeof *out);
    if (!rc->pretrained)
        return qv_fail(QV_ERR_INVALID, "%s:%zu: model_args needs pretrained=\"path/to/model\"", rc->file, rc->line);
    if (rc->calib_data == QV_CALIB_DATA_NONE)
        return qv_fail(QV_ERR_INVALID, "%s:%zu: calib_data is null: there is no calibration batch to build", rc->file,
                       rc->line);
    qv_model_config cfg;
    QV_TRY(qv_model_config_load(rc->pretrained, &cfg));
    qv_tokenizer *tok = NULL;
    qv_status st = check_family(rc, &cfg);
    if (st == QV_OK)
        st = qv_tokenizer_load(rc->pretrained, &tok);
    if (st == QV_OK && rc->calib_data == QV_CALIB_DATA_PILEVAL) {
        if (!rc->data_path)
            st = qv_fail(QV_ERR_INVALID,
                         "%s:%zu: calib_data pileval needs data_path (a local pile-val JSONL: qvlm does not download "
                         "mit-han-lab/pile-val-backup)",
                         rc->file, rc->line);
        qv_text_docs docs = {0};
        if (st == QV_OK)
            st = qv_textdata_open(rc->data_path, &docs);
        if (st == QV_OK && rc->n_samples < 1)
            st = qv_fail(QV_ERR_INVALID, "%s:%zu: n_samples must be at least 1", rc->file, rc->line);
        if (st == QV_OK)
            st = qv_calib_build_pile(tok, &docs, rc->seed, (size_t)rc->n_samples, out);
        qv_textdata_close(&docs);
    } else if (st == QV_OK) {
        st = from_captions(rc, ro, &cfg, tok, out);
    }
    for (size_t i = 0; st == QV_OK && i < out->n_notes; i++)
        note(ro, "%s", out->notes[i]);
    qv_tokenizer_free(tok);
    qv_model_config_free(&cfg);
    if (st != QV_OK)
        qv_calib_batch_free(out);
    return st;
}
