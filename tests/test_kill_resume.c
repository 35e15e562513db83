/* test_kill_resume.c — crash safety of `qvlm quantize` and `qvlm export` under SIGKILL.
 *
 * An uninterrupted MBQ W3g128 quantize of the tiny InternVL2 fixture (the search writes one
 * resume checkpoint per layer, progress/layer.NNNNN.safetensors, after the calibration batch
 * and the gradient pass) and a GPTQ export of its scales are the references. Then the same
 * commands are started again and again and SIGKILLed after a random delay (seeded:
 * QVLM_KILL_SEED, default below; the delays are printed), each start resuming what the killed
 * one left:
 *   - after every kill, every file under its final name is byte-identical to the reference's
 *     (timings.json, which holds times, must parse), so no half-written file is ever visible;
 *     temporaries (*.tmp.<pid>.<n>, out.qvlm-tmp.<pid>) may exist, nothing else;
 *   - a start that finishes before its kill must leave the reference's bytes and no
 *     temporary; quantize then starts over in an empty folder until its kills are spent;
 *   - kills seldom land inside a write (writes take milliseconds), so after each kill the test
 *     also leaves what one would, half-written temporaries of a dead pid for files the resumed
 *     run writes, which that run must clear;
 *   - at the end, a run to completion resumes the last killed one: byte-identical outputs,
 *     no temporary left in the output folder (or beside the export's), and at least one kill
 *     landed in the layer search with a checkpoint already written (a real mid-search resume).
 * Kill delays are uniform in [0, the reference's wall time), so they fall in process start,
 * calibration, gradients, search, evaluation and the writes alike. About 30 s of CPU.
 * A second test kills an export at the crash point between the two renames of a replace.
 * A whole quantization: no QVLM_ISA=scalar twin (QV_TESTS_NO_SCALAR_TWIN). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/fsutil.h"
#include "io/json.h"
#include "util/export_util.h"
#include "util/testutil.h"

#define MODEL "internvl2-internlm2-tiny"
#define N_QUANTIZE_KILLS 10
#define N_EXPORT_KILLS 10
#define DEFAULT_SEED 0x20261123u

static uint64_t rng_state;

static double uniform01(void) /* splitmix64 */
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct cmd {
    const char *const *argv;
    const char *err_path; /* the child's stderr, shown when it fails */
} cmd;

static void expect_exit0(const cmd *c, int status, const char *what)
{
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return;
    char *err = NULL;
    size_t len;
    qv_read_file(c->err_path, 1 << 20, &err, &len);
    cr_assert_fail("%s: qvlm %s ended with status 0x%x: %s", what, c->argv[0], status, err ? err : "");
}

static int spawn(const cmd *c)
{
    int fd = open(c->err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    cr_assert(fd >= 0);
    int pid = qt_spawn_cli(fd, -1, c->argv);
    close(fd);
    return pid;
}

/* Runs to completion; returns the wall time. */
static double run_to_end(const cmd *c, const char *what)
{
    double t0 = now_s();
    int pid = spawn(c), status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    expect_exit0(c, status, what);
    return now_s() - t0;
}

/* Starts c and SIGKILLs it after `delay` seconds; false when it finished first (exit 0). */
static bool run_and_kill(const cmd *c, double delay)
{
    double t0 = now_s();
    int pid = spawn(c), status;
    for (;;) {
        int r = waitpid(pid, &status, WNOHANG);
        cr_assert(r >= 0, "waitpid: %s", strerror(errno));
        if (r == pid) {
            expect_exit0(c, status, "a run that finished before its kill");
            return false;
        }
        if (now_s() - t0 >= delay)
            break;
        struct timespec ts = {0, 1000000}; /* 1 ms */
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    if (WIFEXITED(status)) { /* it ended between the last poll and the kill */
        expect_exit0(c, status, "a run that finished before its kill");
        return false;
    }
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "status 0x%x", status);
    return true;
}

static bool is_temp(const char *name)
{
    return strstr(name, ".tmp.") || strstr(name, ".qvlm-tmp.") || strstr(name, ".qvlm-old.");
}

static char *join(const char *a, const char *b)
{
    char *p = qv_path_join(a, b);
    cr_assert_not_null(p);
    return p;
}

/* Every file of dir (recursively) under its final name equals ref's; with `final`, no
 * temporary and the same set of files as ref. Counts temporaries and layer checkpoints. */
static void check_tree(const char *dir, const char *ref, bool final, const char *when, int *n_temps, int *n_layers)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s: %s cannot be listed", when, dir);
    struct dirent *e;
    int n_files = 0;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        if (!strcmp(n, ".") || !strcmp(n, ".."))
            continue;
        char *p = join(dir, n), *r = join(ref, n);
        if (is_temp(n)) {
            cr_assert(!final, "%s: temporary %s left behind", when, p);
            (*n_temps)++;
        } else if (qv_is_dir(p)) {
            cr_assert(qv_is_dir(r), "%s: unexpected folder %s", when, p);
            check_tree(p, r, final, when, n_temps, n_layers);
            n_files++;
        } else {
            cr_assert(qv_path_exists(r), "%s: unexpected file %s", when, p);
            if (!strcmp(n, "timings.json")) { /* holds times: complete JSON is all we can ask */
                qv_json *j = NULL;
                cr_assert_eq(qv_json_load_file(p, 0, &j), QV_OK, "%s: %s is not complete: %s", when, p, qv_last_error());
                qv_json_free(j);
            } else {
                cr_assert(qt_same_file(p, r), "%s: %s differs from the uninterrupted run's %s (half-written?)", when, p,
                          r);
            }
            if (!strncmp(n, "layer.", 6))
                (*n_layers)++;
            n_files++;
        }
        free(p);
        free(r);
    }
    closedir(d);
    if (final) {
        int n_ref = qx_dir_entries(ref);
        cr_assert_eq(n_files, n_ref, "%s: %s holds %d files, the uninterrupted run %d", when, dir, n_files, n_ref);
    }
}

/* A pid that no process has: a child that has exited and been reaped. */
static long dead_pid(void)
{
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0)
        _exit(0);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return (long)pid;
}

/* What a kill in the middle of writing `final_path` leaves: its temporary, half written. */
static void plant_temp(const char *final_path, long pid, bool folder)
{
    char p[1200];
    snprintf(p, sizeof p, folder ? "%s.qvlm-tmp.%ld" : "%s.tmp.%ld.3", final_path, pid);
    if (folder) {
        cr_assert_eq(qv_mkdirs(p), QV_OK);
        strcat(p, "/model-00001-of-00002.safetensors");
    }
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f, "%s", p);
    static const char half[] = "\x08\x01\x00\x00\x00\x00\x00\x00{\"half\":";
    cr_assert_eq(fwrite(half, 1, sizeof half - 1, f), sizeof half - 1);
    fclose(f);
}

/* dir's folder besides dir itself holds only temporaries (none with `final`). */
static void check_beside(const char *parent, const char *keep, bool final, const char *when)
{
    DIR *d = opendir(parent);
    cr_assert_not_null(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        if (!strcmp(n, ".") || !strcmp(n, "..") || !strcmp(n, keep))
            continue;
        cr_assert(is_temp(n), "%s: unexpected %s/%s", when, parent, n);
        cr_assert(!final, "%s: temporary %s/%s left behind", when, parent, n);
    }
    closedir(d);
}

Test(kill_resume, quantize_and_export_survive_sigkill, .timeout = 900)
{
    const char *s = getenv("QVLM_KILL_SEED");
    uint64_t seed = s && *s ? strtoull(s, NULL, 0) : DEFAULT_SEED;
    rng_state = seed;
    char *root = qt_tmpdir();
    char conf[512], model[512];
    snprintf(conf, sizeof conf, "%s/configs/%s/mbq_w3g128.yaml", QV_SOURCE_DIR, MODEL);
    snprintf(model, sizeof model, "%s/models/%s", QV_FIXTURES, MODEL);
    char *ref_q = join(root, "ref_q"), *ref_e_dir = join(root, "ref_e"), *ref_e = join(ref_e_dir, "out");
    char *q = join(root, "q"), *e_dir = join(root, "e"), *e = join(e_dir, "out"), *err = join(root, "stderr");
    cr_assert_eq(qv_mkdirs(ref_e_dir), QV_OK);
    cr_assert_eq(qv_mkdirs(e_dir), QV_OK);

    const char *ref_q_argv[] = {"quantize", conf, "-o", ref_q, "--quiet", "--threads", "1", NULL};
    const char *q_argv[] = {"quantize", conf, "-o", q, "--quiet", "--threads", "1", NULL};
    const char *ref_e_argv[] = {"export", model, "--scales", ref_q, "--format", "gptq", "-o", ref_e,
                                "--quiet", "--threads", "1", NULL};
    /* --force: a kill after the final rename leaves a complete output, which the next start replaces */
    const char *e_argv[] = {"export", model, "--scales", ref_q, "--format", "gptq", "-o", e,
                            "--force", "--quiet", "--threads", "1", NULL};
    const cmd ref_qc = {ref_q_argv, err}, qc = {q_argv, err}, ref_ec = {ref_e_argv, err}, ec = {e_argv, err};

    const double t_q = run_to_end(&ref_qc, "reference quantize");
    const double t_e = run_to_end(&ref_ec, "reference export");
    fprintf(stderr, "[kill_resume] seed 0x%llx; uninterrupted quantize %.2f s, export %.3f s\n",
            (unsigned long long)seed, t_q, t_e);

    const long dead = dead_pid();
    /* quantize: kills, resuming each time; a start that completes ends a round */
    int kills = 0, rounds = 0, starts = 0, mid_search = 0, temps_seen = 0;
    char when[160];
    while (kills < N_QUANTIZE_KILLS) {
        double delay = uniform01() * t_q;
        starts++;
        bool killed = run_and_kill(&qc, delay);
        int n_temps = 0, n_layers = 0;
        snprintf(when, sizeof when, "quantize start %d (kill after %.3f s)", starts, delay);
        cr_assert(killed || qv_is_dir(q), "%s: finished without an output folder", when);
        if (qv_is_dir(q)) /* a kill during start-up may come before the folder exists */
            check_tree(q, ref_q, !killed, when, &n_temps, &n_layers);
        fprintf(stderr, "[kill_resume] %s: %s, %d layer checkpoints, %d temporaries\n", when,
                killed ? "killed" : "finished first", n_layers, n_temps);
        temps_seen += n_temps;
        if (killed) {
            /* kills rarely land inside a write (they take milliseconds): leave what one would,
             * for files the resumed run writes (run.json at every start, the next layer, the
             * final outputs), which the run must clear */
            char *progress = join(q, "progress"), *path;
            if (qv_is_dir(progress)) {
                plant_temp(path = join(progress, "run.json"), dead, false);
                free(path);
                char layer[64];
                snprintf(layer, sizeof layer, "layer.%05d.safetensors", n_layers);
                if (n_layers < 3) {
                    plant_temp(path = join(progress, layer), dead, false);
                    free(path);
                }
                plant_temp(path = join(q, "scales.safetensors"), dead, false);
                free(path);
            }
            free(progress);
            kills++;
            if (n_layers > 0 && n_layers < 3)
                mid_search++;
        } else { /* finished: byte-identical; start a new round from nothing */
            rounds++;
            cr_assert_eq(qv_remove_tree(q), QV_OK);
        }
    }
    run_to_end(&qc, "the final quantize resume");
    int n_temps = 0, n_layers = 0;
    check_tree(q, ref_q, true, "after the final quantize resume", &n_temps, &n_layers);
    cr_expect_gt(mid_search, 0, "no kill landed between two layer checkpoints: the layer resume was not exercised "
                                "(seed 0x%llx)", (unsigned long long)seed);

    /* export: kills, each start doing the whole export again into a temporary folder */
    int e_kills = 0, e_starts = 0, e_complete = 0;
    while (e_kills < N_EXPORT_KILLS) {
        double delay = uniform01() * t_e;
        e_starts++;
        bool killed = run_and_kill(&ec, delay);
        snprintf(when, sizeof when, "export start %d (kill after %.4f s)", e_starts, delay);
        if (qv_path_exists(e)) {
            check_tree(e, ref_e, true, when, &n_temps, &n_layers); /* under its final name: complete */
            e_complete++;
        } else {
            cr_assert(killed, "%s: finished without an output", when);
        }
        check_beside(e_dir, "out", !killed, when);
        if (killed)
            plant_temp(e, dead, true); /* a kill while the shards were written */
        e_kills += killed;
    }
    run_to_end(&ec, "the final export");
    check_tree(e, ref_e, true, "after the final export", &n_temps, &n_layers);
    check_beside(e_dir, "out", true, "after the final export");

    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    fprintf(stderr,
            "[kill_resume] quantize: %d kills in %d starts (%d rounds completed, %d mid-search, %d temporaries found after kills, planted ones included); "
            "export: %d kills in %d starts (%d with the complete output in place); children's CPU %.1f s\n",
            kills, starts, rounds, mid_search, temps_seen, e_kills, e_starts, e_complete,
            (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
                1e-6 * (double)ru.ru_stime.tv_usec);
    free(ref_q);
    free(ref_e_dir);
    free(ref_e);
    free(q);
    free(e_dir);
    free(e);
    free(err);
    free(root);
}

/* The one window of an export that replaces an existing output (--force) that timing seldom hits:
 * the old output renamed aside, the finished new one not yet renamed into place. A kill there
 * (QVLM_CRASH_AT=export-replace, qv_crash_point) leaves no output under the final name, only the
 * two temporaries; the next start clears both and writes the output, byte-identical to an
 * uninterrupted export, with nothing left beside it. */
Test(kill_resume, export_killed_between_the_renames_of_a_replace, .timeout = 300)
{
    char *root = qt_tmpdir(), *model = qx_fixture("models/" MODEL), *scales = qx_scales_dir(MODEL, "search_mbq_w3g128_reweight_mae");
    char *ref_dir = join(root, "ref"), *ref = join(ref_dir, "out"), *e_dir = join(root, "e"), *e = join(e_dir, "out");
    char *err = join(root, "stderr");
    cr_assert_eq(qv_mkdirs(ref_dir), QV_OK);
    cr_assert_eq(qv_mkdirs(e_dir), QV_OK);
    const char *ref_argv[] = {"export", model, "--scales", scales, "--format", "gptq", "-o", ref, "--quiet", NULL};
    const char *e_argv[] = {"export", model, "--scales", scales, "--format", "gptq", "-o", e, "--force", "--quiet", NULL};
    const cmd rc = {ref_argv, err}, ec = {e_argv, err};
    run_to_end(&rc, "reference export");
    run_to_end(&ec, "the export to be replaced");

    setenv("QVLM_CRASH_AT", "export-replace", 1);
    int pid = spawn(&ec), status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    unsetenv("QVLM_CRASH_AT");
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "the crash point was not reached: status 0x%x",
              status);
    cr_assert(!qv_path_exists(e), "an output under the final name after a kill between the renames");
    int n_old = 0, n_tmp = 0;
    DIR *d = opendir(e_dir);
    cr_assert_not_null(d);
    for (struct dirent *de; (de = readdir(d));) {
        n_old += strncmp(de->d_name, "out.qvlm-old.", 13) == 0;
        n_tmp += strncmp(de->d_name, "out.qvlm-tmp.", 13) == 0;
    }
    closedir(d);
    cr_assert(n_old == 1 && n_tmp == 1, "expected the old output and the new one beside the destination, found %d and %d",
              n_old, n_tmp);
    check_beside(e_dir, "out", false, "after the kill between the renames");

    run_to_end(&ec, "the export after the kill");
    int n_temps = 0, n_layers = 0;
    check_tree(e, ref, true, "after the export that followed the kill", &n_temps, &n_layers);
    check_beside(e_dir, "out", true, "after the export that followed the kill");
    free(root), free(model), free(scales), free(ref_dir), free(ref), free(e_dir), free(e), free(err);
}
