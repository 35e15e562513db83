/* testutil.c — see testutil.h. */
#include "testutil.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/fsutil.h"

const char *qt_fixture(const char *rel)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", QV_FIXTURES, rel);
    return buf;
}

qv_st_file *qt_open_st(const char *rel)
{
    qv_st_file *f = NULL;
    if (qv_st_open(qt_fixture(rel), &f) != QV_OK)
        cr_assert_fail("cannot open fixture %s: %s", rel, qv_last_error());
    return f;
}

float *qt_tensor_f32(const qv_st_file *f, const char *name, qv_tensor *view)
{
    qv_tensor t;
    if (qv_st_get(f, name, &t) != QV_OK)
        cr_assert_fail("%s", qv_last_error());
    size_t n = (size_t)qv_tensor_numel(&t);
    float *out = malloc((n ? n : 1) * sizeof *out);
    cr_assert_not_null(out);
    qv_convert(out, QV_F32, t.data, t.dtype, n);
    if (view)
        *view = t;
    return out;
}

double qt_max_abs(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > m || d != d)
            m = d != d ? INFINITY : d;
    }
    return m;
}

double qt_max_rel(const float *a, const float *b, size_t n)
{
    double mb = 0;
    for (size_t i = 0; i < n; i++)
        mb = fmax(mb, fabs((double)b[i]));
    double d = qt_max_abs(a, b, n);
    return mb > 0 ? d / mb : d;
}

char *qt_tmpdir(void)
{
    char tmpl[] = "/tmp/qvlm-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    cr_assert_not_null(d, "mkdtemp failed");
    return strdup(d);
}

static char *slurp(const char *path)
{
    char *data = NULL;
    size_t len;
    if (qv_read_file(path, (size_t)1 << 30, &data, &len) != QV_OK)
        return strdup("");
    return data;
}

static int run_cli_v(const char *launcher, char **out, char **err, const char *fmt, va_list ap)
{
    char args[8192], cmd[12288], of[] = "/tmp/qvlm-out-XXXXXX", ef[] = "/tmp/qvlm-err-XXXXXX";
    vsnprintf(args, sizeof args, fmt, ap);
    int fo = mkstemp(of), fe = mkstemp(ef);
    cr_assert(fo >= 0 && fe >= 0);
    close(fo);
    close(fe);
    /* from the source folder, so that the configs' relative paths (tests/fixtures/...) resolve */
    snprintf(cmd, sizeof cmd, "cd '%s' && %s '%s' %s >'%s' 2>'%s'", QV_SOURCE_DIR, launcher ? launcher : "", QV_CLI,
             args, of, ef);
    int st = system(cmd);
    char *e = slurp(ef);
    if (out)
        *out = slurp(of);
    unlink(of);
    unlink(ef);
    /* A sanitizer report (build-asan: exit 86/87 and a report on stderr) fails the calling
     * test whatever it expected: bad input must end in a clean error, not in undefined
     * behaviour that happened to exit 1. */
    if (strstr(e, "Sanitizer") || strstr(e, "runtime error:") ||
        (st != -1 && WIFEXITED(st) && (WEXITSTATUS(st) == 86 || WEXITSTATUS(st) == 87)))
        cr_assert_fail("qvlm %s: sanitizer report:\n%s", args, e);
    if (err)
        *err = e;
    else
        free(e);
    if (st == -1 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

int qt_run_cli(char **out, char **err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = run_cli_v(NULL, out, err, fmt, ap);
    va_end(ap);
    return rc;
}

int qt_spawn_cli(int err_fd, long long fsize_limit, const char *const *argv)
{
    size_t n = 0;
    while (argv[n])
        n++;
    const char **full = calloc(n + 2, sizeof *full);
    cr_assert_not_null(full);
    full[0] = QV_CLI;
    memcpy(full + 1, argv, n * sizeof *argv);
    fflush(NULL);
    pid_t pid = fork();
    cr_assert(pid >= 0, "fork failed");
    if (pid == 0) { /* only async-signal-safe calls from here to exec */
        int null = open("/dev/null", O_RDWR);
        if (null < 0 || dup2(null, 1) < 0 || dup2(err_fd >= 0 ? err_fd : null, 2) < 0 || chdir(QV_SOURCE_DIR) != 0)
            _exit(127);
        if (fsize_limit >= 0) {
            struct rlimit rl = {(rlim_t)fsize_limit, (rlim_t)fsize_limit};
            signal(SIGXFSZ, SIG_IGN); /* kept across exec: writes fail with EFBIG instead */
            if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
                _exit(127);
        }
        execv(QV_CLI, (char *const *)full);
        _exit(127);
    }
    free(full);
    return (int)pid;
}

int qt_run_cli_via(const char *launcher, char **out, char **err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = run_cli_v(launcher, out, err, fmt, ap);
    va_end(ap);
    return rc;
}

int qt_count_lines(const char *s)
{
    int n = 0;
    for (const char *p = s; *p; p++)
        n += *p == '\n';
    if (*s && s[strlen(s) - 1] != '\n')
        n++;
    return n;
}

bool qt_same_file(const char *a, const char *b)
{
    char *x = NULL, *y = NULL;
    size_t na = 0, nb = 0;
    cr_assert_eq(qv_read_file(a, (size_t)1 << 30, &x, &na), QV_OK, "%s", qv_last_error());
    cr_assert_eq(qv_read_file(b, (size_t)1 << 30, &y, &nb), QV_OK, "%s", qv_last_error());
    bool same = na == nb && memcmp(x, y, na) == 0;
    qv_free(x);
    qv_free(y);
    return same;
}

void qt_expect_same_outputs(const char *a, const char *b, const char *what)
{
    const char *files[] = {"search.json", "scales.safetensors", "eval.json"};
    for (size_t i = 0; i < 3; i++) {
        char pa[1024], pb[1024];
        snprintf(pa, sizeof pa, "%s/%s", a, files[i]);
        snprintf(pb, sizeof pb, "%s/%s", b, files[i]);
        cr_expect(qt_same_file(pa, pb), "%s: %s differs", what, files[i]);
    }
}
