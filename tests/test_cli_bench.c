/* test_cli_bench.c — the CLI surface of this piece (spec/CLI.md): `qvlm --print-isa` names the
 * kernel set first (QVLM_ISA honoured), and `qvlm bench` dispatches by benchmark name with the
 * usage-error convention. Speed itself is never tested (STYLE.md "Tests and benches"). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "simd.h"
#include "util/testutil.h"

Test(cli_bench, print_isa_names_the_active_set)
{
    char *out, *err;
    cr_assert_eq(qt_run_cli(&out, &err, "--print-isa"), 0);
    const char *isa = qv_isa_str(qv_kernels()->isa); /* this process sees the same QVLM_ISA */
    cr_expect(!strncmp(out, isa, strlen(isa)) && out[strlen(isa)] == ' ', "first word of '%s' is not %s", out, isa);
    cr_expect(strstr(out, "fq=") != NULL, "no per-kernel report in '%s'", out);
    free(out), free(err);
    setenv("QVLM_ISA", "scalar", 1); /* this test's own process; the child inherits it */
    cr_assert_eq(qt_run_cli(&out, &err, "--print-isa"), 0);
    cr_expect(!strncmp(out, "scalar (fq=scalar", 17), "QVLM_ISA=scalar not honoured: '%s'", out);
    free(out), free(err);
}

Test(cli_bench, unknown_benchmark_is_a_usage_error)
{
    char *out, *err;
    cr_assert_eq(qt_run_cli(&out, &err, "bench nosuch"), 2);
    cr_expect_eq(qt_count_lines(err), 1, "stderr: %s", err);
    cr_expect(strstr(err, "nosuch") != NULL);
    free(out), free(err);
    cr_assert_eq(qt_run_cli(&out, &err, "bench"), 2);
    free(out), free(err);
    cr_assert_eq(qt_run_cli(&out, &err, "bench kernels --bogus"), 2);
    cr_expect_eq(qt_count_lines(err), 1, "stderr: %s", err);
    free(out), free(err);
}

Test(cli_bench, help_lists_the_kernels_benchmark)
{
    char *out, *err;
    cr_assert_eq(qt_run_cli(&out, &err, "bench --help"), 0);
    cr_expect(strstr(out, "kernels") != NULL);
    free(out), free(err);
    cr_assert_eq(qt_run_cli(&out, &err, "bench kernels --help"), 0);
    cr_expect(strstr(out, "--quick") != NULL && strstr(out, "--json") != NULL);
    free(out), free(err);
}
