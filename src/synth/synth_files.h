/* synth_files.h — the tokenizer (and chat-template) files that `qvlm synth` copies into a model
 * folder, embedded in the binary (generated into synth_files.c by scripts/embed_synth_files.py
 * from tests/fixtures/models). One family per checkpoint layout: "internlm2", "internvl2-qwen2",
 * "internvl3", "qwen2", "qwen2-vl", "llava-ov" (fixtures README §3, §13.1, §14.1, §15.1). */
#ifndef QV_SYNTH_FILES_H
#define QV_SYNTH_FILES_H

#include <stddef.h>

typedef struct qv_synth_blob {
    const char *data;
    size_t len;
} qv_synth_blob;

/* A file is the concatenation of its parts. */
typedef struct qv_synth_file {
    const char *family;
    const char *name;
    int n_parts;
    qv_synth_blob parts[3];
} qv_synth_file;

extern const qv_synth_file qv_synth_files[];
extern const size_t qv_synth_n_files;

#endif
