/* test_mpi.c — `mpirun -np N qvlm quantize` (the -DQVLM_MPI=ON build) against the
 * single-process run of the same binary, on the 4-sample fixture batch:
 *   - MBQ W3g128 (gradient statistics, reweighted search) with 1, 2 and 3 ranks (3 ranks: blocks
 *     of 2, 1, 1 samples), AWQ with the clip search on 3 ranks, MBQ W4A8 on 2 ranks:
 *     search.json, scales.safetensors and eval.json byte-identical to the single process;
 *   - the MBQ W3 run's loss and every ratio index equal to the reference's golden (loss abs
 *     ≤ 1e-4, as test_cli_quantize);
 *   - when QVLM_TEST_PLAIN_CLI names the default (MPI-free) build's qvlm, byte-identical to it
 *     too (scripts/test.sh sets it);
 *   - timings.json: one per_rank entry per rank, the communication share in [0, total];
 *   - resume across rank counts: outputs and the last layer checkpoint of a 2-rank run removed,
 *     a 3-rank run gives the same bytes;
 *   - FP8 (one calibration pass, run whole on every rank, rank 0 writes) on 2 ranks: the same files;
 *   - more ranks than samples: exit status non-zero, the error names the config, no outputs.
 * A build without MPI skips every test with a message saying so. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fsutil.h"
#include "io/json.h"
#include "util/testutil.h"

#define MODEL "internvl2-internlm2-tiny"

static void need_mpi(void)
{
#ifndef QVLM_HAVE_MPI
    cr_skip_test("built without -DQVLM_MPI=ON: configure a build with it (scripts/test.sh does, in build-mpi) to run "
                 "the MPI tests");
#endif
}



/* The launcher for n ranks (0: no mpirun at all). Open MPI refuses root unless told. */
static const char *launcher(int n, char *buf, size_t cap)
{
    if (n == 0)
        return "";
    snprintf(buf, cap,
             "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 "
             "mpirun --oversubscribe -np %d -x OMP_NUM_THREADS=1",
             n);
    return buf;
}

static char *config_path(const char *cfg)
{
    char *p = malloc(512);
    snprintf(p, 512, "%s/configs/%s/%s.yaml", QV_SOURCE_DIR, MODEL, cfg);
    return p;
}

/* cfg with key: value replaced (a copy in a fresh folder). */
static char *config_with(const char *cfg, const char *key, const char *value)
{
    char *dir = qt_tmpdir(), *src = config_path(cfg), cmd[4096];
    char *dst = malloc(1024);
    snprintf(dst, 1024, "%s/c.yaml", dir);
    snprintf(cmd, sizeof cmd, "grep -v '^%s:' '%s' > '%s' && echo '%s: %s' >> '%s'", key, src, dst, key, value, dst);
    cr_assert_eq(system(cmd), 0);
    free(src);
    free(dir);
    return dst;
}

/* quantize CONF on n ranks (0 = plain process) into dir (fresh when NULL); returns the folder. */
static char *quantize(int n, const char *conf, char *dir)
{
    char lb[256], *out, *err;
    if (!dir)
        dir = qt_tmpdir();
    int rc = qt_run_cli_via(launcher(n, lb, sizeof lb), &out, &err, "quantize '%s' -o '%s' --quiet --threads 1", conf,
                            dir);
    cr_assert_eq(rc, 0, "quantize %s on %d ranks failed (%d): %s", conf, n, rc, err);
    free(out);
    free(err);
    return dir;
}

static void expect_plain_build_same(const char *conf, const char *dir)
{
    const char *plain = getenv("QVLM_TEST_PLAIN_CLI");
    if (!plain || !*plain)
        return;
    char *ref = qt_tmpdir(), cmd[4096];
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' quantize '%s' -o '%s' --quiet --threads 1 >/dev/null 2>&1", QV_SOURCE_DIR,
             plain, conf, ref);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    qt_expect_same_outputs(dir, ref, "MPI build vs the default build");
    free(ref);
}

static void expect_timings(const char *dir, int ranks)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/timings.json", dir);
    qv_json *j;
    cr_assert_eq(qv_json_load_file(p, 0, &j), QV_OK, "%s", qv_last_error());
    cr_expect_eq(json_object_get_int(qv_json_get(j, "ranks")), ranks);
    qv_json *pr = qv_json_get(j, "per_rank");
    cr_assert(pr && json_object_array_length(pr) == (size_t)ranks, "per_rank has %zu entries, want %d",
              pr ? json_object_array_length(pr) : 0, ranks);
    for (int k = 0; k < ranks; k++) {
        qv_json *e = json_object_array_get_idx(pr, (size_t)k);
        double c = json_object_get_double(qv_json_get(e, "communication")),
               t = json_object_get_double(qv_json_get(e, "total"));
        cr_expect_eq(json_object_get_int(qv_json_get(e, "rank")), k);
        cr_expect(c >= 0 && c <= t + 1e-3, "rank %d: communication %.3f s of total %.3f s", k, c, t);
    }
    qv_json_free(j);
}

static void expect_golden(const char *dir)
{
    char p[1024];
    qv_json *mine, *gold;
    snprintf(p, sizeof p, "%s/eval.json", dir);
    cr_assert_eq(qv_json_load_file(p, 0, &mine), QV_OK);
    cr_assert_eq(qv_json_load_file(qt_fixture("goldens/" MODEL "/search_mbq_w3g128_reweight_mae.json"), 0, &gold),
                 QV_OK);
    double loss = json_object_get_double(qv_json_get(mine, "loss")),
           gl = json_object_get_double(qv_json_get(gold, "loss"));
    cr_expect_leq(fabs(loss - gl), 1e-4, "loss %.7f vs golden %.7f", loss, gl);
    qv_json_free(mine);
    snprintf(p, sizeof p, "%s/search.json", dir);
    cr_assert_eq(qv_json_load_file(p, 0, &mine), QV_OK);
    qv_json *me = qv_json_get(mine, "entries"), *ge = qv_json_get(gold, "entries");
    cr_assert_eq(json_object_array_length(me), json_object_array_length(ge));
    for (size_t k = 0; k < json_object_array_length(me); k++) {
        int ia = json_object_get_int(qv_json_get(json_object_array_get_idx(me, k), "best_ratio_index"));
        int ib = json_object_get_int(qv_json_get(json_object_array_get_idx(ge, k), "best_ratio_index"));
        cr_expect_eq(ia, ib, "entry %zu: ratio index %d vs golden %d", k, ia, ib);
    }
    qv_json_free(mine);
    qv_json_free(gold);
}

Test(mpi, mbq_w3_identical_for_1_2_3_ranks, .timeout = 1800)
{
    need_mpi();
    char *conf = config_path("mbq_w3g128");
    char *base = quantize(0, conf, NULL);
    expect_golden(base);
    expect_plain_build_same(conf, base);
    for (int n = 1; n <= 3; n++) {
        char *d = quantize(n, conf, NULL), what[64];
        snprintf(what, sizeof what, "mpirun -np %d vs one process", n);
        qt_expect_same_outputs(d, base, what);
        expect_timings(d, n);
        free(d);
    }
    free(base);
    free(conf);
}

Test(mpi, awq_clip_and_w4a8_identical, .timeout = 1800)
{
    need_mpi();
    char *clip = config_with("awq_w3g128", "auto_clip", "true");
    char *a = quantize(0, clip, NULL), *b = quantize(3, clip, NULL);
    qt_expect_same_outputs(b, a, "AWQ + clip search, 3 ranks vs one process");
    free(a);
    free(b);
    char *wa = config_path("mbq_w4a8");
    a = quantize(0, wa, NULL);
    b = quantize(2, wa, NULL);
    qt_expect_same_outputs(b, a, "MBQ W4A8, 2 ranks vs one process");
    free(a);
    free(b);
    free(wa);
    free(clip);
}

Test(mpi, fp8_identical, .timeout = 1800)
{
    need_mpi();
    char conf[512];
    snprintf(conf, sizeof conf, "%s/configs/internvl3-tiny/fp8_seed_recipe.yaml", QV_SOURCE_DIR);
    char *a = quantize(0, conf, NULL), *b = quantize(2, conf, NULL), pa[1024], pb[1024];
    qt_expect_same_outputs(b, a, "FP8 (static scales, vision Linears in scope), 2 ranks vs one process");
    snprintf(pa, sizeof pa, "%s/recipe.yaml", a);
    snprintf(pb, sizeof pb, "%s/recipe.yaml", b);
    cr_expect(qt_same_file(pa, pb), "recipe.yaml differs");
    free(a);
    free(b);
}

Test(mpi, resume_across_rank_counts, .timeout = 1800)
{
    need_mpi();
    char *conf = config_path("mbq_w3g128");
    char *dir = quantize(2, conf, NULL), cmd[2048];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && mkdir keep && mv search.json scales.safetensors eval.json keep/ && "
             "rm progress/layer.00002.safetensors",
             dir);
    cr_assert_eq(system(cmd), 0);
    quantize(3, conf, dir);
    char keep[1024];
    snprintf(keep, sizeof keep, "%s/keep", dir);
    qt_expect_same_outputs(dir, keep, "resumed on 3 ranks vs uninterrupted on 2");
    free(dir);
    free(conf);
}

Test(mpi, more_ranks_than_samples, .timeout = 600)
{
    need_mpi();
    char *conf = config_path("rtn_w3g128"), *dir = qt_tmpdir(), lb[256], *out, *err;
    int rc = qt_run_cli_via(launcher(5, lb, sizeof lb), &out, &err, "quantize '%s' -o '%s' --quiet", conf, dir);
    cr_expect_neq(rc, 0, "5 ranks for 4 samples must fail");
    cr_expect(strstr(err, "rtn_w3g128.yaml") && strstr(err, "rank"), "the error names the config and the ranks: %s",
              err);
    char p[1024];
    snprintf(p, sizeof p, "%s/scales.safetensors", dir);
    cr_expect(access(p, F_OK) != 0, "no outputs after a failure");
    free(out);
    free(err);
    free(dir);
    free(conf);
}
