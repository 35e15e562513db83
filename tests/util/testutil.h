/* testutil.h — helpers shared by the Criterion tests: fixture paths, golden comparison with
 * stated tolerances, and running the `qvlm` binary with captured output. */
#ifndef QV_TESTUTIL_H
#define QV_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/safetensors.h"

/* Path of a file under tests/fixtures (static buffer, valid until the next call). */
const char *qt_fixture(const char *rel);
/* Opens a fixture safetensors file; aborts the test on failure. */
qv_st_file *qt_open_st(const char *rel);
/* Reads a tensor of a fixture file widened to F32 (caller frees); aborts when absent. */
float *qt_tensor_f32(const qv_st_file *f, const char *name, qv_tensor *view);

/* max |a-b| and max |a-b| / max |b| (the fixtures README's "rel"). */
double qt_max_abs(const float *a, const float *b, size_t n);
double qt_max_rel(const float *a, const float *b, size_t n);

/* A fresh temporary folder (caller frees the string; the folder is left for inspection). */
char *qt_tmpdir(void);

/* Runs `qvlm <args>` through /bin/sh with stdout and stderr captured (both NUL-terminated,
 * caller frees; either may be NULL). Returns the exit status, or -1 when the process died by a
 * signal. A sanitizer report from the child fails the calling test. */
int qt_run_cli(char **out, char **err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The same with a launcher command before the binary (e.g. "mpirun -np 2"). */
int qt_run_cli_via(const char *launcher, char **out, char **err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Starts `qvlm ARGV...` (argv NULL-terminated, without the binary) in the source folder, as
 * qt_run_cli does, without a shell: stdout to /dev/null, stderr to err_fd (-1: /dev/null). With
 * fsize_limit >= 0 the child runs under RLIMIT_FSIZE = fsize_limit bytes with SIGXFSZ ignored,
 * so a write past the limit fails with EFBIG as on a full disk. Returns the child's pid (the
 * caller waits for it). */
int qt_spawn_cli(int err_fd, long long fsize_limit, const char *const *argv);
/* Whether two files hold the same bytes (aborts the test when one cannot be read). */
bool qt_same_file(const char *a, const char *b);
/* Expects search.json, scales.safetensors and eval.json of two quantize output folders to be
 * byte-identical (what: named in the failure). */
void qt_expect_same_outputs(const char *a, const char *b, const char *what);
/* Number of lines in s (a final line without newline counts). */
int qt_count_lines(const char *s);

#endif
