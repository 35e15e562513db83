/* cmd_verify.c — `qvlm verify MODEL_OR_EXPORT [--against MODEL --scales DIR]` (CLI.md): reads a
 * quantized checkpoint back, unpacks it and compares it with the fake-quantized weights; one line
 * per tensor with its max abs error on stdout, exit 1 on any mismatch. Work: src/export/verify.c. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "export/export.h"
#include "export/verify.h"

typedef struct vprint {
    bool all;
} vprint;

static void print_line(void *ctx, const char *tensor, const char *what, double max_abs, bool ok)
{
    const vprint *p = ctx;
    if (ok && !p->all)
        return;
    printf("%-64s %-8s max_abs_err %-12.6g %s\n", tensor, ok ? "ok" : "MISMATCH", max_abs, what);
}

int qv_cmd_verify(int argc, char **argv)
{
    const char *against = NULL, *scales = NULL, *dtype = NULL, *division = NULL;
    double atol = 0;
    bool brief = false;
    const qv_opt opts[] = {
        {"against", 0, QV_OPT_STR, &against, "MODEL", "original model to compute the fake-quantized reference from"},
        {"scales", 0, QV_OPT_STR, &scales, "DIR", "scale list applied to --against (scales folder or .pt)"},
        {"atol", 0, QV_OPT_DOUBLE, &atol, "X", "accepted absolute difference (default 0: exact)"},
        {"dtype", 0, QV_OPT_STR, &dtype, "T", "compute dtype of the reference (default: the model's)"},
        {"division", 0, QV_OPT_STR, &division, "cuda|cpu", "quantizer division form (default: the search config, else cuda)"},
        {"mismatches-only", 0, QV_OPT_FLAG, &brief, NULL, "print only the tensors that differ"},
        {0},
    };
    const qv_cli_cmd cmd = {"verify", "EXPORT [--against MODEL --scales DIR]",
                            "Read a quantized checkpoint (awq, gptq, compressed-tensors, fp8, fake) back, unpack it and "
                            "compare it with the fake-quantized weights; exit 1 on any mismatch.",
                            opts, 1, 1};
    const char *pos[1];
    int npos, r = qv_cli_parse(&cmd, argc, argv, pos, &npos);
    if (r >= 0)
        return r;
    qv_verify_opts o = {.path = pos[0], .against = against, .scales = scales, .atol = atol, .dtype = QV_DTYPE_COUNT,
                        .division = -1};
    if (dtype && !qv_dtype_from_torch(dtype, &o.dtype))
        return qv_cli_usage_error("verify", "unknown dtype '%s' (float32, bfloat16, float16)", dtype);
    if (division && strcmp(division, "cuda") && strcmp(division, "cpu"))
        return qv_cli_usage_error("verify", "--division must be cuda or cpu");
    if (atol < 0 || atol != atol)
        return qv_cli_usage_error("verify", "--atol must be >= 0");
    if (division)
        o.division = strcmp(division, "cpu") == 0;
    vprint p = {.all = !brief};
    o.line = print_line;
    o.ctx = &p;
    qv_cli_apply_threads();
    qv_verify_result res;
    if (qv_verify_run(&o, &res) != QV_OK)
        return qv_cli_fail();
    printf("%s: %s, %zu quantized modules, %zu tensors checked, %zu mismatches, max abs error %g\n", pos[0], res.format,
           res.n_quantized, res.n_checked, res.n_mismatch, res.max_abs);
    if (res.n_mismatch) {
        fprintf(stderr, "qvlm: %s: %zu of %zu tensors differ from the reference\n", pos[0], res.n_mismatch, res.n_checked);
        return QV_EXIT_FAIL;
    }
    return QV_EXIT_OK;
}
