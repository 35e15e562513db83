/* heldout.c — the held-out caption evaluation of a `qvlm quantize` run (eval.h qv_eval_heldout;
 * spec CLI.md `eval_data_path` / `eval_image_folder`): the FP model and the quantized model of
 * the run's scales folder on the held-out pairs, as "heldout" in DIR/eval.json. */
#include <string.h>

#include "eval.h"

qv_status qv_eval_heldout(qv_llm *m, const char *dir, const qv_run_config *rc, uint64_t max_memory, qv_progress *prog,
                          qv_strbuf *json)
{
    if (!rc->eval_data_path)
        return QV_OK;
    qv_eval_quant q;
    QV_TRY(qv_eval_quant_open(&q, m, dir));
    /* the column's name in eval.json: the folder is eval.json's own */
    char *name = qv_strdup("quantized");
    if (!name) {
        qv_eval_quant_close(&q);
        return QV_ERR_NOMEM;
    }
    qv_free(q.name);
    q.name = name;
    const qv_eval_caption_opts o = {.data_path = rc->eval_data_path, .image_folder = rc->eval_image_folder,
                                    .pad_rule = rc->pad_rule, .max_tiles = rc->max_tiles, .max_memory = max_memory,
                                    .prog = prog};
    qv_eval_report r;
    qv_status st = qv_eval_caption(m, &q, 1, &o, &r);
    if (st == QV_OK) {
        qv_sb_puts(json, "\"heldout\": ");
        qv_eval_report_json(&r, json);
        /* one object in eval.json: no trailing newline inside it */
        while (json->len && (json->s[json->len - 1] == '\n'))
            json->s[--json->len] = 0;
        if (json->oom)
            st = qv_fail(QV_ERR_NOMEM, "%s: out of memory formatting the held-out evaluation", dir);
    }
    qv_eval_report_free(&r);
    qv_eval_quant_close(&q);
    return st;
}
