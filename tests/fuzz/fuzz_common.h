/* fuzz_common.h — shared by the harnesses of tests/fuzz (README.md there).
 *
 * Each fuzz_<target>.c defines `int qv_fuzz_<target>(const uint8_t *data, size_t size)`: it
 * feeds the bytes to one parser through the same entry point the CLI uses and checks the
 * contracts every caller relies on, aborting on a violation (so libFuzzer records it as a
 * crash). Built with QV_FUZZ_MAIN (QVLM_FUZZ=ON, scripts/fuzz.sh) the file also defines
 * libFuzzer's entry point; test_fuzz_regress.c links the same files without it and replays
 * the seed and regression corpora through the same functions. */
#ifndef QV_FUZZ_COMMON_H
#define QV_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"

static inline void qf_violation(const char *what, const char *file, int line)
{
    fprintf(stderr, "%s:%d: contract violated: %s (last error: \"%s\")\n", file, line, what, qv_last_error());
    abort();
}

#define QF_CHECK(cond)                                  \
    do {                                                \
        if (!(cond))                                    \
            qf_violation(#cond, __FILE__, __LINE__);    \
    } while (0)

/* The error contract (CLI.md): a failed parse leaves one line that starts with the name of
 * the file ("<name>: ..." or "<name>:<line>: ..."). Out-of-memory messages may name the
 * allocation instead. */
static inline void qf_check_error(qv_status st, const char *name)
{
    const char *m = qv_last_error();
    size_t n = strlen(name);
    if (getenv("QV_FUZZ_VERBOSE")) /* which inputs fail, and why (corpus work) */
        fprintf(stderr, "rejected: %s\n", m);
    QF_CHECK(st != QV_OK);
    QF_CHECK(m[0] != 0);
    QF_CHECK(strchr(m, '\n') == NULL);
    if (st != QV_ERR_NOMEM)
        QF_CHECK(strncmp(m, name, n) == 0 && m[n] == ':');
}

/* Entry points, one per target (test_fuzz_regress.c replays corpora through these). */
int qv_fuzz_safetensors(const uint8_t *data, size_t size);
int qv_fuzz_json(const uint8_t *data, size_t size);
int qv_fuzz_config(const uint8_t *data, size_t size);
int qv_fuzz_index(const uint8_t *data, size_t size);
int qv_fuzz_tokenizer_json(const uint8_t *data, size_t size);
int qv_fuzz_spm(const uint8_t *data, size_t size);
int qv_fuzz_yaml(const uint8_t *data, size_t size);
int qv_fuzz_captions(const uint8_t *data, size_t size);
int qv_fuzz_image(const uint8_t *data, size_t size);

#ifdef QV_FUZZ_MAIN
#define QF_ENTRY(target)                                                  \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);         \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)          \
    {                                                                     \
        return qv_fuzz_##target(data, size);                              \
    }
#else
#define QF_ENTRY(target)
#endif

#endif
