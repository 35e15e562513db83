/* test_fuzz_regress.c — replays the fuzzing corpora through the harnesses' entry points
 * (tests/fuzz/README.md): tests/fuzz/seeds/<target>/ (the inputs the fuzzers start from) and
 * tests/fuzz/regress/<target>/ (every input that once crashed, hung, leaked or broke a
 * contract, kept after its fix). A harness aborts on a contract violation, so a regression
 * shows as a crashed test here; under build-asan a memory error or leak fails it too. No
 * clang or libFuzzer is needed: the harness files are compiled into this test. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fsutil.h"
#include "fuzz_common.h"

typedef int (*fuzz_fn)(const uint8_t *, size_t);

/* Runs every file of tests/fuzz/<kind>/<target>; returns how many. */
static size_t replay_dir(const char *kind, const char *target, fuzz_fn fn)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s/%s", QV_FUZZ_DIR, kind, target);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char *path = qv_path_join(dir, e->d_name), *data = NULL;
        size_t len = 0;
        cr_assert_not_null(path);
        cr_assert_eq(qv_read_file(path, (size_t)1 << 26, &data, &len), QV_OK, "%s", qv_last_error());
        /* a copy of exactly len bytes, so ASan sees reads past the input */
        uint8_t *copy = malloc(len ? len : 1);
        cr_assert_not_null(copy);
        memcpy(copy, data, len);
        qv_free(data);
        cr_log_info("%s %s", target, path);
        fn(copy, len);
        qv_clear_error();
        free(copy);
        free(path);
        n++;
    }
    closedir(d);
    return n;
}

static void replay(const char *target, fuzz_fn fn)
{
    size_t seeds = replay_dir("seeds", target, fn);
    size_t regress = replay_dir("regress", target, fn);
    cr_assert(seeds > 0, "tests/fuzz/seeds/%s is empty or missing", target);
    cr_log_info("%s: %zu seeds, %zu regressions replayed", target, seeds, regress);
}

#define REPLAY(target)                                        \
    Test(fuzz_regress, target, .timeout = 300)                \
    {                                                         \
        replay(#target, qv_fuzz_##target);                    \
    }

REPLAY(safetensors)
REPLAY(json)
REPLAY(config)
REPLAY(index)
REPLAY(tokenizer_json)
REPLAY(spm)
REPLAY(yaml)
REPLAY(captions)
REPLAY(image)
