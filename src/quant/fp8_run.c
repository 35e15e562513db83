/* fp8_run.c — one `method: fp8` run of qvlm quantize (fp8.h qv_fp8_quantize): scheme, batch,
 * statistics on the FP model (ALGORITHMS-2.md §4.2), the files of DIR and the FP8 model's
 * evaluation. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../core/comm.h"
#include "../core/fsutil.h"
#include "../core/prof.h"
#include "../llm/forward.h"
#include "fp8.h"
#include "run_util.h"

static qv_status eval_loss(qv_llm *m, const qv_llm_batch *b, double *loss)
{
    qv_llm_result res = {0};
    QV_TRY(qv_llm_forward(m, b, NULL, NULL, QV_LLM_FWD_NO_LOGITS0, &res));
    *loss = res.loss;
    qv_llm_result_free(&res);
    return QV_OK;
}

static qv_status write_text(const char *dir, const char *name, const char *text, size_t len)
{
    char *path = qv_path_join(dir, name);
    qv_status st = path ? qv_write_file_atomic(path, text, len) : QV_ERR_NOMEM;
    qv_free(path);
    return st;
}

static qv_status write_search_json(const qv_fp8_model *f, const qv_llm *m, const qv_run_config *rc, const char *dir)
{
    qv_json *sum = qv_fp8_summary_json(f);
    if (!sum)
        return QV_ERR_NOMEM;
    qv_strbuf b;
    qv_sb_init(&b);
    qv_sb_printf(&b, "{\n  \"format\": \"qvlm-search/1\",\n  \"method\": \"fp8\",\n  \"dtype\": \"%s\",\n  \"model\": ",
                 qv_run_dtype_word(f->T));
    qv_sb_json_str(&b, m->dir, strlen(m->dir));
    qv_sb_puts(&b, ",\n  \"config\": ");
    qv_run_config_to_json(rc, &b);
    qv_sb_puts(&b, ",\n  \"fp8\": ");
    const char *s = json_object_to_json_string_ext(sum, JSON_C_TO_STRING_SPACED);
    if (s)
        qv_sb_puts(&b, s);
    else
        b.oom = true;
    qv_sb_puts(&b, ",\n  \"entries\": []\n}\n");
    qv_status st = b.oom ? QV_ERR_NOMEM : write_text(dir, "search.json", b.s, b.len);
    qv_sb_free(&b);
    json_object_put(sum);
    return st;
}

static const char *act_word(qv_fp8_act a)
{
    return a == QV_FP8_ACT_TOKEN ? "dynamic per token" : a == QV_FP8_ACT_TENSOR ? "static per tensor" : "not quantized";
}

qv_status qv_fp8_prepare(qv_fp8_model *f, const qv_llm *m, const qv_run_config *rc, const qv_quantize_io *io,
                         qv_dtype T)
{
    QV_TRY(qv_fp8_open(f, m, io->recipe ? io->recipe : rc->export.recipe, T));
    qv_status st = QV_OK;
    const bool data = io->get_batch && rc->data_path;
    if (rc->eval_data_path)
        st = qv_fail(QV_ERR_UNSUPPORTED, "%s: eval_data_path: the held-out evaluation does not run FP8 models yet (the "
                     "run's eval.json holds the FP8 model's calibration loss)", rc->file);
    else if (!data && qv_fp8_needs_stats(f))
        st = qv_fail(QV_ERR_INVALID, "%s: the FP8 scheme of %s has static scales (inputs or KV cache), which need "
                     "calibration data (calib_data/data_path)", rc->file, f->rc.path);
    else if (data && qv_fp8_has_vision(f) && m->cfg.has_vision && !io->embed_images)
        st = qv_fail(QV_ERR_UNSUPPORTED, "%s: vision Linears are in the scope of %s, but this caller cannot run the vision "
                     "tower with a hook", rc->file, f->rc.path);
    if (st != QV_OK)
        qv_fp8_close(f);
    return st;
}

qv_status qv_fp8_quantize(qv_fp8_model *fm, qv_llm *m, const qv_run_config *rc, const qv_quantize_io *io,
                          const char *dir, qv_fp8_times *t)
{
    memset(t, 0, sizeof *t);
    const qv_dtype T = fm->T;
    /* one calibration forward, cheap beside a search: under MPI every rank runs it on the whole
     * batch (maxima and losses then need no reduction) and rank 0 writes */
    const bool root = qv_comm_world()->rank == 0;
    qv_llm_batch batch = {0};
    bool have_batch = false;
    qv_status st = QV_OK;
    qv_run_log(io, "qvlm: fp8 %s from %s on %s (%s arithmetic): weights FP8 per %s, inputs %s, KV cache %s -> %s\n",
          fm->scheme[0] ? fm->scheme : "scheme", fm->rc.path, rc->pretrained, qv_run_dtype_word(T), fm->w_per_tensor ? "tensor" : "channel",
          act_word(fm->act), fm->n.kv_attn ? (fm->kv_n > 1 ? "FP8 per KV head" : "FP8 per tensor") : "not quantized", dir);
    qv_run_log(io, "qvlm: fp8: in scope: %zu decoder Linears, %zu vision-tower Linears, %zu projector Linears; KV scales on %zu "
              "attention modules\n", fm->n.llm, fm->n.vision, fm->n.projector, fm->n.kv_attn);
    if (fm->n.vision)
        qv_run_log(io, "qvlm: fp8: note: the recipe quantizes the vision tower's Linears too (its ignore list does not cover "
                  "them; ALGORITHMS-2.md §4.6)\n");

    /* the calibration batch (also the evaluation batch) */
    double t0 = qv_now_s();
    if (io->get_batch && rc->data_path) {
        QV_CHECK(st = io->get_batch(io->batch_ctx, m, rc, &batch, NULL, NULL), done);
        have_batch = true;
        QV_CHECK(st = qv_llm_batch_check(&batch, m), done);
    }
    t->calib = qv_now_s() - t0;

    /* statistics on the FP model */
    t0 = qv_now_s();
    if (have_batch && qv_fp8_needs_stats(fm)) {
        if (qv_fp8_has_vision(fm) && fm->act == QV_FP8_ACT_TENSOR)
            QV_CHECK(st = io->embed_images(io->batch_ctx, m, rc, qv_fp8_vision_hook(fm, true), &batch), done);
        float *x0 = qv_malloc((size_t)(batch.B * batch.L * m->C) * sizeof *x0 + 4, "layer-0 inputs");
        if (!x0) {
            st = QV_ERR_NOMEM;
            goto done;
        }
        st = qv_llm_batch_embeds(m, &batch, x0);
        qv_progress prog;
        qv_progress_init(&prog, io->log, "statistics", m->c->n_layers);
        if (st == QV_OK)
            st = qv_fp8_calibrate(fm, m, &batch, x0, &prog);
        qv_progress_finish(&prog);
        qv_free(x0);
        QV_CHECK(st, done);
    }
    if (qv_fp8_needs_stats(fm))
        QV_CHECK(st = qv_fp8_check_stats(fm, rc->file), done);
    t->stats = qv_now_s() - t0;
    if (root) {
        QV_CHECK(st = qv_fp8_write_scales(fm, dir), done);
        QV_CHECK(st = qv_fp8_write_recipe(fm, dir), done);
        QV_CHECK(st = write_search_json(fm, m, rc, dir), done);
    }

    /* evaluation: the FP model, then the FP8 model (vision Linears through the hook) */
    t0 = qv_now_s();
    qv_strbuf ev;
    qv_sb_init(&ev);
    if (have_batch) {
        double fp_loss = NAN, q_loss = NAN;
        st = eval_loss(m, &batch, &fp_loss);
        if (st == QV_OK && qv_fp8_has_vision(fm))
            st = io->embed_images(io->batch_ctx, m, rc, qv_fp8_vision_hook(fm, false), &batch);
        if (st == QV_OK)
            st = qv_fp8_attach(fm, m);
        if (st == QV_OK)
            st = eval_loss(m, &batch, &q_loss);
        m->layer_hook = NULL;
        m->layer_hook_ctx = NULL;
        qv_sb_puts(&ev, "{\"loss\": ");
        qv_sb_json_double(&ev, q_loss);
        qv_sb_puts(&ev, ", \"fp_loss\": ");
        qv_sb_json_double(&ev, fp_loss);
        qv_sb_printf(&ev, ", \"samples\": %lld}\n", (long long)batch.B);
        if (st == QV_OK)
            qv_run_log(io, "qvlm: calibration loss %.6f (full precision %.6f)\n", q_loss, fp_loss);
    } else {
        qv_sb_puts(&ev, "{\"loss\": null, \"fp_loss\": null}\n");
    }
    if (st == QV_OK && root)
        st = ev.oom ? QV_ERR_NOMEM : write_text(dir, "eval.json", ev.s, ev.len);
    qv_sb_free(&ev);
    t->eval = qv_now_s() - t0;
done:
    if (have_batch)
        qv_llm_batch_free(&batch);
    return st;
}
