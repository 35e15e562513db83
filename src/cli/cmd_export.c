/* cmd_export.c — `qvlm export MODEL --scales DIR --format F -o OUT [--recipe YAML]` (CLI.md):
 * a quantized checkpoint (fake, awq, gptq, compressed-tensors, fp8) or the scale list as MBQ's
 * .pt (mbq-pt). The work is src/export/export.c; this file maps options and prints the summary. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "export/export.h"

static void log_line(void *ctx, const char *msg)
{
    (void)ctx;
    qv_cli_log("export: %s\n", msg);
}

int qv_cmd_export(int argc, char **argv)
{
    const char *scales = NULL, *format = NULL, *out = NULL, *recipe = NULL, *dtype = NULL, *division = NULL;
    bool force = false;
    int64_t w_bit = 0, w_group = 0, a_bit = 0, zero_point = -1;
    const qv_opt opts[] = {
        {"scales", 0, QV_OPT_STR, &scales, "DIR", "search result: a qvlm scales folder or an MBQ/llm-awq .pt"},
        {"format", 'f', QV_OPT_STR, &format, "F", "fake | awq | gptq | compressed-tensors | fp8 | mbq-pt"},
        {"output", 'o', QV_OPT_STR, &out, "OUT", "output folder (a .pt file for mbq-pt)"},
        {"recipe", 0, QV_OPT_STR, &recipe, "YAML", "llm-compressor recipe (fp8: scheme, ignore, kv_cache_scheme)"},
        {"force", 0, QV_OPT_FLAG, &force, NULL, "replace an existing output"},
        {"dtype", 0, QV_OPT_STR, &dtype, "T", "compute and output dtype: float32 | bfloat16 | float16 (default: the model's)"},
        {"w-bit", 0, QV_OPT_INT, &w_bit, "N", "weight bits (default: the search config)"},
        {"w-group", 0, QV_OPT_INT, &w_group, "G", "group size, -1 per channel (default: the search config)"},
        {"a-bit", 0, QV_OPT_INT, &a_bit, "N", "activation bits, < 16 for a W-A search (default: the search config)"},
        {"zero-point", 0, QV_OPT_INT, &zero_point, "0|1", "asymmetric weights (default: the search config)"},
        {"division", 0, QV_OPT_STR, &division, "cuda|cpu", "quantizer division form (default: the search config, else cuda)"},
        {0},
    };
    const qv_cli_cmd cmd = {"export", "MODEL --scales DIR --format F -o OUT [--recipe YAML] [--force]",
                            "Apply a searched scale list to MODEL and write a quantized checkpoint (fake, awq, gptq, "
                            "compressed-tensors, fp8) or the scale list as MBQ's .pt (mbq-pt).",
                            opts, 1, 1};
    const char *pos[1];
    int npos, r = qv_cli_parse(&cmd, argc, argv, pos, &npos);
    if (r >= 0)
        return r;
    qv_export_opts o;
    qv_export_opts_init(&o);
    if (!format)
        return qv_cli_usage_error("export", "--format is required");
    if (!out)
        return qv_cli_usage_error("export", "-o OUT is required");
    if (!qv_format_parse(format, &o.format))
        return qv_cli_usage_error("export", "unknown format '%s' (fake, awq, gptq, compressed-tensors, fp8, mbq-pt)", format);
    if (dtype && !qv_dtype_from_torch(dtype, &o.dtype))
        return qv_cli_usage_error("export", "unknown dtype '%s' (float32, bfloat16, float16)", dtype);
    if (division && strcmp(division, "cuda") && strcmp(division, "cpu"))
        return qv_cli_usage_error("export", "--division must be cuda or cpu");
    if (zero_point < -1 || zero_point > 1 || w_bit < 0 || w_bit > 16 || a_bit < 0 || a_bit > 16 || w_group < -1)
        return qv_cli_usage_error("export", "--w-bit, --a-bit (1..16), --w-group (-1 or > 0), --zero-point (0 or 1) out of range");
    o.model = pos[0];
    o.scales = scales;
    o.out = out;
    o.recipe = recipe;
    o.force = force;
    o.w_bit = (int)w_bit;
    o.w_group = w_group;
    o.a_bit = (int)a_bit;
    o.zero_point = (int)zero_point;
    o.division = division ? strcmp(division, "cpu") == 0 : -1;
    o.max_memory = qv_cli.max_memory;
    o.log = log_line;
    qv_cli_apply_threads();
    qv_export_stats st;
    if (qv_export_run(&o, &st) != QV_OK)
        return qv_cli_fail();
    if (st.n_f16_inexact)
        qv_cli_log("export: note: %zu scales are not exactly representable in F16 and were rounded\n", st.n_f16_inexact);
    if (o.format == QV_FMT_MBQ_PT)
        printf("exported mbq-pt (%s): %s\n", st.detail, out);
    else
        printf("exported %s (%s): %zu tensors, %zu linears quantized, %zu scale entries applied, %llu bytes -> %s\n",
               qv_format_name(o.format), st.detail, st.n_tensors, st.n_quantized, st.n_applied,
               (unsigned long long)st.bytes, out);
    return QV_EXIT_OK;
}
