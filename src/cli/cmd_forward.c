/* cmd_forward.c — `qvlm forward MODEL --batch BATCH.safetensors -o OUT.safetensors [--dump LIST]
 * [--inputs-embeds KEY@FILE] [--dtype f32|bf16]`: the decoder forward on a text batch (or on given
 * LLM input embeddings), written in the goldens' layout (spec CLI.md; fixtures README §6, §10):
 *   loss F32 [1], nll.loss_rows F32 [M] + .index I64 [M,2],
 *   logits.loss_rows.sample0 F32 [M0,V] + .index I64 [M0,2],
 *   and per --dump name: llm.inputs_embeds, llm.layers.{i}.out, llm.norm.out F32 [B,L,C],
 *   logits F32 [B,L,V] (streamed row chunks).
 * The output is written under a temporary name and renamed when complete. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "core/progress.h"
#include "llm/forward.h"

#define MAX_DUMPS 512

typedef struct fwd_dump {
    qv_st_writer *w;
    int n;
    char *names[MAX_DUMPS];
    int64_t width[MAX_DUMPS];
} fwd_dump;

static int dump_find(const fwd_dump *d, const char *name)
{
    for (int i = 0; i < d->n; i++)
        if (!strcmp(d->names[i], name))
            return i;
    return -1;
}

static bool dump_want(void *ctx, const char *name) { return dump_find(ctx, name) >= 0; }

static qv_status dump_put(void *ctx, const char *name, int64_t row0, int64_t nrows, const float *rows)
{
    fwd_dump *d = ctx;
    int i = dump_find(d, name);
    if (i < 0)
        return QV_OK;
    uint64_t off = (uint64_t)row0 * (uint64_t)d->width[i] * sizeof(float);
    return qv_st_writer_put_part(d->w, name, off, rows, (size_t)(nrows * d->width[i]) * sizeof(float));
}

static int add_dump(fwd_dump *d, const char *name, int64_t width)
{
    if (dump_find(d, name) >= 0)
        return -1;
    if (d->n >= MAX_DUMPS)
        return qv_cli_usage_error("forward", "too many --dump names");
    d->names[d->n] = strdup(name);
    d->width[d->n++] = width;
    return -1;
}

/* Parses the comma-separated --dump list: llm.inputs_embeds, llm.layers.{i}.out (also spelt
 * llm.layer.{i}.out), llm.layers.*.out, llm.norm.out, logits. Returns -1 or an exit code. */
static int parse_dumps(fwd_dump *d, const char *list, const qv_llm *m)
{
    char *copy = strdup(list), *save = NULL;
    int r = -1;
    for (char *tok = strtok_r(copy, ",", &save); tok && r < 0; tok = strtok_r(NULL, ",", &save)) {
        long long li;
        char tail[8];
        if (!strcmp(tok, "llm.inputs_embeds") || !strcmp(tok, "llm.norm.out")) {
            r = add_dump(d, tok, m->C);
        } else if (!strcmp(tok, "logits")) {
            r = add_dump(d, tok, m->V);
        } else if (!strcmp(tok, "llm.layers.*.out") || !strcmp(tok, "llm.layer.*.out")) {
            for (int64_t i = 0; i < m->c->n_layers && r < 0; i++) {
                char nm[64];
                snprintf(nm, sizeof nm, "llm.layers.%lld.out", (long long)i);
                r = add_dump(d, nm, m->C);
            }
        } else if ((sscanf(tok, "llm.layers.%lld.%7s", &li, tail) == 2 ||
                    sscanf(tok, "llm.layer.%lld.%7s", &li, tail) == 2) &&
                   !strcmp(tail, "out")) {
            if (li < 0 || li >= m->c->n_layers)
                r = qv_cli_usage_error("forward", "--dump %s: the model has %lld layers", tok, (long long)m->c->n_layers);
            else {
                char nm[64];
                snprintf(nm, sizeof nm, "llm.layers.%lld.out", li);
                r = add_dump(d, nm, m->C);
            }
        } else {
            r = qv_cli_usage_error("forward", "unknown --dump name '%s' (llm.inputs_embeds, llm.layers.{i}.out, "
                                   "llm.layers.*.out, llm.norm.out, logits)", tok);
        }
    }
    free(copy);
    return r;
}

static qv_status declare_outputs(qv_st_writer *w, const qv_llm *m, const qv_llm_batch *b, int64_t M, int64_t M0,
                                 const fwd_dump *d)
{
    const int64_t one[1] = {1}, nll[1] = {M}, idx[2] = {M, 2}, lg0[2] = {M0, m->V}, idx0[2] = {M0, 2};
    QV_TRY(qv_st_writer_add(w, "loss", QV_F32, 1, one));
    QV_TRY(qv_st_writer_add(w, "nll.loss_rows", QV_F32, 1, nll));
    QV_TRY(qv_st_writer_add(w, "nll.loss_rows.index", QV_I64, 2, idx));
    QV_TRY(qv_st_writer_add(w, "logits.loss_rows.sample0", QV_F32, 2, lg0));
    QV_TRY(qv_st_writer_add(w, "logits.loss_rows.sample0.index", QV_I64, 2, idx0));
    for (int i = 0; i < d->n; i++) {
        const int64_t sh[3] = {b->B, b->L, d->width[i]};
        QV_TRY(qv_st_writer_add(w, d->names[i], QV_F32, 3, sh));
    }
    return qv_st_writer_begin(w);
}

int qv_cmd_forward(int argc, char **argv)
{
    const char *batch_path = NULL, *out_path = NULL, *dump_list = NULL, *embeds = NULL, *dtype = "f32";
    const qv_opt opts[] = {
        {"batch", 0, QV_OPT_STR, &batch_path, "BATCH", "batch safetensors (input_ids, labels, attention_mask, ...)"},
        {"output", 'o', QV_OPT_STR, &out_path, "OUT", "output safetensors"},
        {"dump", 0, QV_OPT_STR, &dump_list, "LIST", "also write intermediates: llm.inputs_embeds, llm.layers.{i}.out, "
                                                   "llm.layers.*.out, llm.norm.out, logits (comma-separated)"},
        {"inputs-embeds", 0, QV_OPT_STR, &embeds, "KEY@FILE", "LLM input embeddings [B,L,C] from tensor KEY of FILE"},
        {"dtype", 0, QV_OPT_STR, &dtype, "f32|bf16", "compute dtype (bf16 needs native BF16 matmuls)"},
        {0},
    };
    const qv_cli_cmd cmd = {"forward", "MODEL --batch BATCH.safetensors -o OUT.safetensors [--dump LIST] "
                                       "[--inputs-embeds KEY@FILE]",
                            "Forward of the model's language model on a batch: loss, per-row NLL and sample 0's "
                            "loss-row logits, in the goldens' layout.",
                            opts, 1, 1};
    const char *pos[1];
    int npos, r = qv_cli_parse(&cmd, argc, argv, pos, &npos);
    if (r >= 0)
        return r;
    if (!batch_path || !out_path)
        return qv_cli_usage_error("forward", "--batch and -o are required");
    qv_llm_opts lo = {QV_F32};
    if (!strcmp(dtype, "bf16"))
        lo.compute = QV_BF16;
    else if (strcmp(dtype, "f32") != 0)
        return qv_cli_usage_error("forward", "--dtype must be f32 or bf16");
    char *emb_key = NULL;
    const char *emb_file = NULL;
    if (embeds) {
        const char *at = strrchr(embeds, '@');
        if (!at || at == embeds || !at[1])
            return qv_cli_usage_error("forward", "--inputs-embeds expects KEY@FILE");
        emb_key = strndup(embeds, (size_t)(at - embeds));
        emb_file = at + 1;
    }
    qv_llm *m = NULL;
    qv_llm_batch b = {0};
    qv_llm_result res = {0};
    qv_st_writer *w = NULL;
    fwd_dump d = {0};
    int64_t *rows = NULL, M = 0, M0 = 0;
    int rc = QV_EXIT_FAIL;
    if (qv_llm_open(pos[0], &lo, &m) != QV_OK) {
        rc = qv_cli_fail();
        goto done;
    }
    if (dump_list && (r = parse_dumps(&d, dump_list, m)) >= 0) {
        rc = r;
        goto done;
    }
    if (qv_llm_batch_load(batch_path, &b) != QV_OK ||
        (emb_file && qv_llm_batch_load_embeds(&b, emb_file, emb_key) != QV_OK) || qv_llm_batch_check(&b, m) != QV_OK) {
        rc = qv_cli_fail();
        goto done;
    }
    if (qv_llm_batch_loss_rows(&b, &rows, &M) != QV_OK) {
        rc = qv_cli_fail();
        goto done;
    }
    for (int64_t k = 0; k < M; k++)
        M0 += rows[2 * k] == 0;
    if (qv_cli.max_memory) {
        uint64_t need = qv_llm_forward_bytes(m, b.B, b.L, M0, dump_find(&d, "llm.norm.out") >= 0);
        if (need > qv_cli.max_memory) {
            qv_fail(QV_ERR_NOMEM, "%s: the forward of this batch needs about %.1f MiB, more than --max-memory %.1f MiB",
                    batch_path, (double)need / 1048576.0, (double)qv_cli.max_memory / 1048576.0);
            rc = qv_cli_fail();
            goto done;
        }
    }
    if (qv_st_writer_open(&w, out_path, NULL, 0) != QV_OK || declare_outputs(w, m, &b, M, M0, &d) != QV_OK) {
        rc = qv_cli_fail();
        goto done;
    }
    d.w = w;
    qv_progress prog;
    qv_progress_init(&prog, qv_cli.quiet ? NULL : stderr, "forward", m->c->n_layers);
    qv_llm_dump dump = {&d, dump_want, dump_put};
    qv_status st = qv_llm_forward(m, &b, &dump, &prog, 0, &res);
    qv_progress_finish(&prog);
    float loss = (float)res.loss;
    if (st == QV_OK)
        st = qv_st_writer_put(w, "loss", &loss, sizeof loss);
    if (st == QV_OK)
        st = qv_st_writer_put(w, "nll.loss_rows", res.nll, (size_t)M * sizeof(float));
    if (st == QV_OK)
        st = qv_st_writer_put(w, "nll.loss_rows.index", res.index, (size_t)M * 2 * sizeof(int64_t));
    if (st == QV_OK)
        st = qv_st_writer_put(w, "logits.loss_rows.sample0", res.logits0, (size_t)(M0 * m->V) * sizeof(float));
    if (st == QV_OK)
        st = qv_st_writer_put(w, "logits.loss_rows.sample0.index", res.index0, (size_t)M0 * 2 * sizeof(int64_t));
    if (st == QV_OK) {
        st = qv_st_writer_finish(w); /* frees w, also on failure */
        w = NULL;
    }
    if (st != QV_OK) {
        rc = qv_cli_fail();
    } else {
        printf("loss: %.6f (%lld loss rows)\n", res.loss, (long long)M);
        rc = QV_EXIT_OK;
    }
done:
    if (w)
        qv_st_writer_abort(w);
    for (int i = 0; i < d.n; i++)
        free(d.names[i]);
    free(emb_key);
    qv_free(rows);
    qv_llm_result_free(&res);
    qv_llm_batch_free(&b);
    qv_llm_close(m);
    return rc;
}
