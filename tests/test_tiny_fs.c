/* test_tiny_fs.c — `qvlm export` onto a disk that fills up, and the writers under it.
 *
 * A full disk is simulated two ways:
 *   - a file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored: a write past it fails with EFBIG, as
 *     one on a full disk fails with ENOSPC), swept from 0 bytes to past the largest output, so
 *     the failure falls on different files: the copied tokenizer files (write), the shards
 *     (preallocation), MBQ's .pt (buffered stdio, flushed at commit). Needs no privileges.
 *   - a real tmpfs of a few KB or MB, mounted in a user and mount namespace (unshare); skipped
 *     where unprivileged user namespaces are not available.
 * Every failing export must exit 1 with ONE stderr line "qvlm: <file>: ..." naming the file it
 * could not write (under the output's temporary name) and the cause, and leave nothing: no
 * output under its final name, no temporary beside it. A limit past the largest file lets it
 * through, with the complete output. The library writers (qv_write_file_atomic, the
 * safetensors writer) are also checked on their own: the error names the destination, and
 * neither it nor a temporary remains. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/fsutil.h"
#include "io/safetensors.h"
#include "util/export_util.h"
#include "util/testutil.h"

#define MODEL "internvl2-qwen2-tiny"
#define SEARCH "search_mbq_w3g128_reweight_mae"

/* Runs `qvlm export` under a file-size limit (-1: none); stderr captured through a pipe (a file
 * would be subject to the limit too). Returns the exit status (-1 on a signal). */
static int export_limited(long long limit, const char *model, const char *scales, const char *format, const char *out,
                          char **err)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    const char *argv[] = {"export", model, "--scales", scales, "--format", format, "-o", out, "--quiet", NULL};
    int pid = qt_spawn_cli(fds[1], limit, argv);
    close(fds[1]);
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    ssize_t k;
    while ((k = read(fds[0], buf + len, cap - len - 1)) > 0 || (k < 0 && errno == EINTR)) {
        if (k < 0)
            continue;
        len += (size_t)k;
        if (cap - len < 2)
            buf = realloc(buf, cap *= 2);
    }
    close(fds[0]);
    buf[len] = 0;
    *err = buf;
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The file an error line names: between "qvlm: " and the next ": " (static buffer). */
static const char *named_file(const char *err)
{
    static char f[1024];
    const char *a = err + 6, *b = strstr(a, ": ");
    snprintf(f, sizeof f, "%.*s", b ? (int)(b - a) : 0, a);
    return f;
}

/* One failing export: exit 1, one line naming out itself or a file under it, and `cause`,
 * nothing left in `dir` (the folder that holds out). */
static void expect_clean_failure(int rc, const char *err, const char *dir, const char *out, const char *cause,
                                 const char *what)
{
    cr_assert_eq(rc, 1, "%s: exit %d: %s", what, rc, err);
    cr_assert_eq(qt_count_lines(err), 1, "%s: stderr is not one line: %s", what, err);
    cr_assert(strncmp(err, "qvlm: ", 6) == 0, "%s: %s", what, err);
    /* out itself or a file under it: never the temporary folder the export wrote into */
    const char *nf = named_file(err);
    const size_t lo = strlen(out);
    cr_assert(strncmp(nf, out, lo) == 0 && (nf[lo] == 0 || nf[lo] == '/'),
              "%s: the error does not name %s or a file under it: %s", what, out, err);
    cr_assert(!strstr(err, ".qvlm-tmp."), "%s: the error names the temporary folder: %s", what, err);
    cr_assert(strstr(err, cause), "%s: the error does not say \"%s\": %s", what, cause, err);
    cr_assert(!qv_path_exists(out), "%s: %s exists after the failure", what, out);
    cr_assert_eq(qx_dir_entries(dir), 0, "%s: something was left beside the output", what);
}

Test(tiny_fs, export_under_file_size_limits, .timeout = 300)
{
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s", MODEL);
    char *model = qx_fixture(rel), *scales = qx_scales_dir(MODEL, SEARCH), *dir = qt_tmpdir();
    char out[600], pt[600];
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(pt, sizeof pt, "%s/scales.pt", dir);
    const char *efbig = strerror(EFBIG);
    /* the shards are 1.1-1.7 MB, tokenizer.json 124 KB, MBQ's .pt 7 KB */
    static const long long limits[] = {0, 1, 300, 4096, 60000, 200000, 1000000, 1500000};
    char names[16][256];
    int n_names = 0;
    const char *formats[] = {"gptq", "fake"};
    for (size_t f = 0; f < 2; f++) {
        for (size_t i = 0; i < sizeof limits / sizeof *limits; i++) {
            char *err, what[128];
            snprintf(what, sizeof what, "%s export under a %lld-byte file-size limit", formats[f], limits[i]);
            int rc = export_limited(limits[i], model, scales, formats[f], out, &err);
            expect_clean_failure(rc, err, dir, out, efbig, what);
            const char *base = strrchr(named_file(err), '/');
            base = base ? base + 1 : named_file(err);
            bool seen = false;
            for (int k = 0; k < n_names; k++)
                seen |= strcmp(names[k], base) == 0;
            if (!seen && n_names < 16)
                snprintf(names[n_names++], sizeof names[0], "%.255s", base);
            free(err);
        }
    }
    /* MBQ's .pt: one file, written with stdio (a write error surfaces at fwrite or at the flush) */
    static const long long pt_limits[] = {0, 1000, 5000};
    for (size_t i = 0; i < sizeof pt_limits / sizeof *pt_limits; i++) {
        char *err, what[128];
        snprintf(what, sizeof what, "mbq-pt export under a %lld-byte file-size limit", pt_limits[i]);
        int rc = export_limited(pt_limits[i], model, scales, "mbq-pt", pt, &err);
        expect_clean_failure(rc, err, dir, pt, efbig, what);
        free(err);
    }
    fprintf(stderr, "[tiny_fs] files named by the failures:");
    for (int k = 0; k < n_names; k++)
        fprintf(stderr, " %s", names[k]);
    fprintf(stderr, "\n");
    cr_expect_geq(n_names, 3, "the limits should stop the export at three different files (copies, shards)");
    /* past the largest file: the whole export, as without a limit */
    char *err;
    int rc = export_limited(4000000, model, scales, "gptq", out, &err);
    cr_assert_eq(rc, 0, "%s", err);
    free(err);
    char ref[600];
    snprintf(ref, sizeof ref, "%s/ref", dir);
    rc = export_limited(-1, model, scales, "gptq", ref, &err);
    cr_assert_eq(rc, 0, "%s", err);
    free(err);
    const char *files[] = {"config.json", "model.safetensors", "tokenizer.json"};
    for (size_t i = 0; i < 3; i++) {
        char a[700], b[700];
        snprintf(a, sizeof a, "%s/%s", out, files[i]);
        snprintf(b, sizeof b, "%s/%s", ref, files[i]);
        cr_expect(qt_same_file(a, b), "%s differs from the unlimited export's", a);
    }
    free(model);
    free(scales);
    free(dir);
}

Test(tiny_fs, export_onto_a_small_tmpfs, .timeout = 300)
{
    if (system("unshare --user --map-root-user --mount true >/dev/null 2>&1") != 0)
        cr_skip_test("unshare --user --map-root-user --mount is not available here (no unprivileged user "
                     "namespaces): the tmpfs case did not run; the file-size-limit test covers the write paths");
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s", MODEL);
    char *model = qx_fixture(rel), *scales = qx_scales_dir(MODEL, SEARCH), *dir = qt_tmpdir();
    char mnt[600];
    snprintf(mnt, sizeof mnt, "%s/mnt", dir);
    cr_assert_eq(qv_mkdirs(mnt), QV_OK);
    /* 16 KB: the first copied file does not fit (ENOSPC while writing); 1 MB: refused up front by
     * the free-space check; 8 MB: fits */
    static const struct {
        const char *size;
        bool fits;
        const char *cause;
    } cases[] = {{"16k", false, "No space left on device"}, {"1m", false, "not enough disk space"}, {"8m", true, NULL}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *out, *err;
        /* the tmpfs lives as long as the namespace: what is left in it is listed from inside */
        int rc = qx_run_sh(&out, &err,
                           "unshare --user --map-root-user --mount sh -c 'mount -t tmpfs -o size=%s tmpfs \"$0\" || exit 99; "
                           "cd \"$3\" && \"$1\" export \"$2\" --scales \"$4\" --format gptq -o \"$0/out\" --quiet "
                           ">/dev/null; rc=$?; ls -A \"$0\"; exit $rc' '%s' '%s' '%s' '%s' '%s'",
                           cases[i].size, mnt, QV_CLI, model, QV_SOURCE_DIR, scales);
        cr_assert_neq(rc, 99, "mount failed: %s", err);
        char what[64];
        snprintf(what, sizeof what, "export onto a %s tmpfs", cases[i].size);
        if (cases[i].fits) {
            cr_assert_eq(rc, 0, "%s: %s", what, err);
            cr_assert_str_eq(out, "out\n", "%s", what);
        } else {
            char target[700];
            snprintf(target, sizeof target, "%s/out", mnt);
            cr_assert_eq(rc, 1, "%s: exit %d: %s", what, rc, err);
            cr_assert_eq(qt_count_lines(err), 1, "%s: %s", what, err);
            cr_assert(strncmp(err, "qvlm: ", 6) == 0 && strncmp(named_file(err), target, strlen(target)) == 0,
                      "%s: the error does not name a file of %s: %s", what, target, err);
            cr_assert(strstr(err, cases[i].cause), "%s: the error does not say \"%s\": %s", what, cases[i].cause, err);
            cr_assert_str_eq(out, "", "%s: left behind in the filesystem: %s", what, out);
        }
        free(out);
        free(err);
    }
    free(model);
    free(scales);
    free(dir);
}

/* In a child under a 1000-byte file-size limit: the writers must fail with the destination
 * named and leave neither it nor a temporary. Each result goes back as a line through a pipe:
 * "<0|1 = returned an error> <message>". */
Test(tiny_fs, writers_report_write_errors)
{
    char *dir = qt_tmpdir();
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        FILE *w = fdopen(fds[1], "w");
        struct rlimit rl = {1000, 1000};
        signal(SIGXFSZ, SIG_IGN);
        if (!w || setrlimit(RLIMIT_FSIZE, &rl) != 0)
            _exit(2);
        static char buf[100000];
        static float t[1000];
        char p[700];
        /* 4000 bytes fit stdio's buffer: the error comes from the flush at commit */
        snprintf(p, sizeof p, "%s/small.json", dir);
        fprintf(w, "%d %s\n", qv_write_file_atomic(p, buf, 4000) != QV_OK, qv_last_error());
        /* 100000 bytes: from fwrite itself */
        snprintf(p, sizeof p, "%s/large.bin", dir);
        fprintf(w, "%d %s\n", qv_write_file_atomic(p, buf, sizeof buf) != QV_OK, qv_last_error());
        /* a 4 KB tensor: the preallocation */
        snprintf(p, sizeof p, "%s/t.safetensors", dir);
        qv_st_item it = {"t", QV_F32, 1, {1000}, t};
        fprintf(w, "%d %s\n", qv_st_write_file(p, &it, 1, NULL, 0) != QV_OK, qv_last_error());
        fclose(w);
        _exit(0);
    }
    close(fds[1]);
    FILE *r = fdopen(fds[0], "r");
    cr_assert_not_null(r);
    const char *names[] = {"small.json", "large.bin", "t.safetensors"};
    char line[2048];
    for (int i = 0; i < 3; i++) {
        cr_assert_not_null(fgets(line, sizeof line, r), "the child reported %d of 3 writes", i);
        char want[800];
        snprintf(want, sizeof want, "1 %s/%s: ", dir, names[i]);
        cr_expect(strncmp(line, want, strlen(want)) == 0, "%s: expected an error naming it, got: %s", names[i], line);
        cr_expect(strstr(line, strerror(EFBIG)), "%s: the error does not give the cause: %s", names[i], line);
    }
    fclose(r);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status 0x%x", status);
    cr_expect_eq(qx_dir_entries(dir), 0, "a destination or a temporary was left in %s", dir);
    free(dir);
}
