/* test_cli_bench_gemm.c — the CLI surface of the GEMM benchmarks (spec/CLI.md conventions):
 * `bench amx-peak` runs where AMX runs and is refused elsewhere with exit 1 and one stderr line;
 * `bench fqgemm` and `bench search-layer` run a tiny case end to end (JSON lines with the
 * documented fields) and reject bad arguments as usage errors. Speed is never tested. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "util/testutil.h"

Test(cli_bench_gemm, amx_peak_runs_or_refuses_in_one_line)
{
    char *out, *err;
    const int rc = qt_run_cli(&out, &err, "bench amx-peak --seconds 0.05");
    if (qv_gemm_kernels_get(QV_GEMM_AMX)) {
        cr_expect_eq(rc, 0, "stderr: %s", err);
        cr_expect(strstr(out, "TFLOPS on 1 thread") != NULL, "stdout: %s", out);
    } else {
        cr_expect_eq(rc, 1);
        cr_expect_eq(qt_count_lines(err), 1, "stderr: %s", err);
        cr_expect(!strncmp(err, "qvlm: bench amx-peak: this host cannot run AMX", 46), "stderr: %s", err);
        cr_expect_eq(out[0], 0, "stdout: %s", out);
    }
    free(out), free(err);
    cr_expect_eq(qt_run_cli(&out, &err, "bench amx-peak --seconds 0"), 2);
    cr_expect_eq(qt_count_lines(err), 1, "stderr: %s", err);
    free(out), free(err);
}

Test(cli_bench_gemm, fqgemm_quick_json, .timeout = 300)
{
    char *out, *err;
    cr_assert_eq(qt_run_cli(&out, &err, "bench fqgemm --quick --rows 8 --json"), 0, "stderr: %s", err);
    int n = qt_count_lines(out);
    cr_expect(n >= 4, "%d lines: %s", n, out); /* fq and plain for >= 1 kernel set and for oneDNN */
    for (char *l = out; *l; l = strchr(l, '\n') + 1) {
        cr_expect(!strncmp(l, "{\"bench\":\"fqgemm\"", 17), "not a JSON line: %.80s", l);
        if (!strchr(l, '\n'))
            break;
    }
    cr_expect(strstr(out, "\"op\":\"fq\"") && strstr(out, "\"op\":\"plain\"") && strstr(out, "\"vs_onednn\""));
    free(out), free(err);
    cr_expect_eq(qt_run_cli(&out, &err, "bench fqgemm --shapes nosuch"), 2);
    cr_expect_eq(qt_count_lines(err), 1, "stderr: %s", err);
    free(out), free(err);
}

Test(cli_bench_gemm, search_layer_tiny_json, .timeout = 300)
{
    char *out, *err;
    cr_assert_eq(qt_run_cli(&out, &err, "bench search-layer --dims tiny --samples 1 --tokens 24 --points 1 --dtype f32 "
                            "--json"),
                 0, "stderr: %s", err);
    cr_expect_eq(qt_count_lines(out), 1, "stdout: %s", out);
    cr_expect(strstr(out, "\"bench\":\"search-layer\"") && strstr(out, "\"seconds_per_layer\":") &&
                  strstr(out, "\"extrapolated\":true") && strstr(out, "\"name\":\"attn\"") &&
                  strstr(out, "\"name\":\"mlp\"") && strstr(out, "\"name\":\"down\""),
              "stdout: %s", out);
    free(out), free(err);
    cr_expect_eq(qt_run_cli(&out, &err, "bench search-layer --dims huge"), 2);
    cr_expect_eq(qt_count_lines(err), 1, "stderr: %s", err);
    free(out), free(err);
}
