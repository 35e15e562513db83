/* cmd_forward.c — `qvlm forward MODEL --batch BATCH.safetensors -o OUT.safetensors [--dump LIST]
 * [--inputs-embeds KEY@FILE] [--dtype f32|bf16]`: the model forward on a batch, written in the
 * goldens' layout (spec CLI.md; fixtures README §6, §10, §13.5, §15.3):
 *   loss F32 [1], nll.loss_rows F32 [M] + .index I64 [M,2],
 *   logits.loss_rows.sample0 F32 [M0,V] + .index I64 [M0,2],
 *   and per --dump name: llm.inputs_embeds, llm.layers.{i}.out, llm.norm.out F32 [B,L,C],
 *   logits F32 [B,L,V] (streamed row chunks), and the vision tower's names (vision.h).
 * When the model has a vision tower and the batch holds pixels (pixel_values, tile_u8 or
 * pixel_values_u8), the LLM input embeddings are built by the tower, projector and image-token
 * substitution / splice (src/vision), in chunks of tiles bounded by --max-memory.
 * The output is written under a temporary name and renamed when complete. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "quant/qlayer.h"
#include "core/progress.h"
#include "llm/forward.h"
#include "vision/vision.h"

#define MAX_DUMPS 512

typedef struct fwd_dump {
    qv_st_writer *w;
    int n;
    char *names[MAX_DUMPS];
    int64_t width[MAX_DUMPS]; /* last dimension: rows are streamed in units of it */
    int ndim[MAX_DUMPS];      /* 0 = [B, L, width] */
    int64_t shape[MAX_DUMPS][3];
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
    d->ndim[d->n] = 0;
    d->width[d->n++] = width;
    return -1;
}

/* A vision name of the tower's list, with its own shape. */
static int add_vision_dump(fwd_dump *d, const qv_vision_dump_decl *dc)
{
    int r = add_dump(d, dc->name, dc->shape[dc->ndim - 1]);
    int i = dump_find(d, dc->name);
    if (r < 0 && i >= 0) {
        d->ndim[i] = dc->ndim;
        memcpy(d->shape[i], dc->shape, sizeof d->shape[i]);
    }
    return r;
}

/* Parses the comma-separated --dump list: llm.inputs_embeds, llm.layers.{i}.out (also spelt
 * llm.layer.{i}.out), llm.layers.*.out, llm.norm.out, logits, and the vision names of vd (n_vd of
 * them; "vision.*" selects them all). Returns -1 or an exit code. */
static int parse_dumps(fwd_dump *d, const char *list, const qv_llm *m, const qv_vision_dump_decl *vd, int n_vd)
{
    char *copy = strdup(list), *save = NULL;
    int r = -1;
    for (char *tok = strtok_r(copy, ",", &save); tok && r < 0; tok = strtok_r(NULL, ",", &save)) {
        long long li;
        char tail[8];
        int vi = -1;
        for (int i = 0; i < n_vd && vi < 0; i++)
            if (!strcmp(tok, vd[i].name))
                vi = i;
        if (vi >= 0) {
            r = add_vision_dump(d, &vd[vi]);
        } else if (!strcmp(tok, "vision.*") && n_vd > 0) {
            for (int i = 0; i < n_vd && r < 0; i++)
                r = add_vision_dump(d, &vd[i]);
        } else if (!strcmp(tok, "llm.inputs_embeds") || !strcmp(tok, "llm.norm.out")) {
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
                                   "llm.layers.*.out, llm.norm.out, logits%s)", tok,
                                   n_vd ? ", vision.* and the tower's names" : "");
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
        QV_TRY(qv_st_writer_add(w, d->names[i], QV_F32, d->ndim[i] ? d->ndim[i] : 3, d->ndim[i] ? d->shape[i] : sh));
    }
    return qv_st_writer_begin(w);
}

int qv_cmd_forward(int argc, char **argv)
{
    const char *batch_path = NULL, *out_path = NULL, *dump_list = NULL, *embeds = NULL, *dtype = "f32";
    const char *scales_path = NULL;
    int64_t w_bit = 0, a_bit = 0, w_group = 0;
    const qv_opt opts[] = {
        {"batch", 0, QV_OPT_STR, &batch_path, "BATCH", "batch safetensors (input_ids, labels, attention_mask, ...)"},
        {"output", 'o', QV_OPT_STR, &out_path, "OUT", "output safetensors"},
        {"dump", 0, QV_OPT_STR, &dump_list, "LIST", "also write intermediates: llm.inputs_embeds, llm.layers.{i}.out, "
                                                   "llm.layers.*.out, llm.norm.out, logits (comma-separated)"},
        {"inputs-embeds", 0, QV_OPT_STR, &embeds, "KEY@FILE", "LLM input embeddings [B,L,C] from tensor KEY of FILE"},
        {"dtype", 0, QV_OPT_STR, &dtype, "f32|bf16", "compute dtype (bf16 needs native BF16 matmuls)"},
        {"scales", 0, QV_OPT_STR, &scales_path, "DIR",
         "the quantized model: DIR's scales (a qvlm folder or MBQ's .pt) applied, every decoder linear fake-quantized"},
        {"w-bit", 0, QV_OPT_INT, &w_bit, "N", "with a .pt that carries no config: weight bits"},
        {"a-bit", 0, QV_OPT_INT, &a_bit, "N", "with a .pt: activation bits (16 = weight-only)"},
        {"w-group", 0, QV_OPT_INT, &w_group, "N", "with a .pt: weight group size (-1 = per channel)"},
        {0},
    };
    const qv_cli_cmd cmd = {"forward", "MODEL --batch BATCH.safetensors -o OUT.safetensors [--scales DIR] "
                                       "[--dump LIST] [--inputs-embeds KEY@FILE]",
                            "Forward of the model on a batch (images through the vision tower when the batch "
                            "holds pixels): loss, per-row NLL and sample 0's loss-row logits, in the goldens' layout.",
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
    qv_scales sc = {0};
    qv_qmodel qm;
    qv_llm_batch b = {0};
    qv_llm_result res = {0};
    qv_st_writer *w = NULL;
    fwd_dump d = {0};
    qv_vision *vis = NULL;
    qv_mm_batch mb = {0};
    bool images = false;
    enum { MAX_VD = 256 };
    qv_vision_dump_decl *vd = NULL;
    int n_vd = 0;
    int64_t *rows = NULL, M = 0, M0 = 0;
    int rc = QV_EXIT_FAIL;
    if (qv_llm_open(pos[0], &lo, &m) != QV_OK) {
        rc = qv_cli_fail();
        goto done;
    }
    if (scales_path) {
        if (qv_scales_load(scales_path, &sc) != QV_OK ||
            qv_qmodel_from_scales(&qm, &sc, (int)w_bit, (int)a_bit, w_group) != QV_OK) {
            rc = qv_cli_fail();
            goto done;
        }
        qv_qmodel_attach(m, &qm);
    }
    if (!emb_file && m->cfg.has_vision) {
        /* a quarter of --max-memory for one chunk of tiles: the LLM's hidden states need the rest */
        const qv_vision_opts vo = {lo.compute, 0, 0, qv_cli.max_memory / 4};
        if (!(vd = calloc(MAX_VD, sizeof *vd))) {
            rc = qv_cli_fail();
            goto done;
        }
        if (qv_vision_open(&m->cfg, m->ck, pos[0], &vo, &vis) != QV_OK) {
            rc = qv_cli_fail();
            goto done;
        }
        n_vd = QV_MIN(qv_vision_dump_decls(vis, NULL, vd, MAX_VD), (int)MAX_VD);
    }
    /* names first (a usage error before any work); shapes once the batch is known */
    if (dump_list) {
        fwd_dump names = {0};
        r = parse_dumps(&names, dump_list, m, vd, n_vd);
        for (int i = 0; i < names.n; i++)
            free(names.names[i]);
        if (r >= 0) {
            rc = r;
            goto done;
        }
    }
    if (qv_llm_batch_load(batch_path, &b) != QV_OK ||
        (emb_file && qv_llm_batch_load_embeds(&b, emb_file, emb_key) != QV_OK) ||
        (vis && qv_mm_batch_load(batch_path, vis, &mb, &images) != QV_OK)) {
        rc = qv_cli_fail();
        goto done;
    }
    if (images) {
        qv_vision_input in;
        qv_mm_batch_input(&mb, vis, &in);
        n_vd = QV_MIN(qv_vision_dump_decls(vis, &in, vd, MAX_VD), (int)MAX_VD);
    } else {
        n_vd = 0;
        /* image tokens without pixels: the reference cannot run such a batch either */
        int64_t n_img = 0;
        for (int64_t i = 0; vis && b.input_ids && i < b.B * b.L; i++)
            n_img += b.input_ids[i] == qv_vision_image_token(vis);
        if (n_img) {
            qv_fail(QV_ERR_INVALID, "%s: %lld image tokens (id %lld) but no pixel_values, tile_u8 or pixel_values_u8",
                    batch_path, (long long)n_img, (long long)qv_vision_image_token(vis));
            rc = qv_cli_fail();
            goto done;
        }
    }
    if (dump_list && (r = parse_dumps(&d, dump_list, m, vd, n_vd)) >= 0) {
        rc = r;
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
    qv_llm_dump dump = {&d, dump_want, dump_put};
    if (images) {
        if (qv_mm_batch_embed(vis, m, &mb, &b, &dump) != QV_OK) {
            rc = qv_cli_fail();
            goto done;
        }
        qv_mm_batch_free(&mb);
    }
    if (qv_llm_batch_check(&b, m) != QV_OK) {
        rc = qv_cli_fail();
        goto done;
    }
    qv_progress prog;
    qv_progress_init(&prog, qv_cli.quiet ? NULL : stderr, "forward", m->c->n_layers);
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
    free(vd);
    qv_mm_batch_free(&mb);
    qv_vision_close(vis);
    qv_free(rows);
    qv_llm_result_free(&res);
    qv_llm_batch_free(&b);
    qv_llm_close(m);
    qv_scales_free(&sc); /* zeroed when never loaded; loaded-but-refused scales too */
    return rc;
}
