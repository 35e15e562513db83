/* fsutil.h — files: whole-file reads with size limits, crash-safe writes (temp name in the
 * same folder, fsync, rename), folders, paths. Every error names the file. */
#ifndef QV_FSUTIL_H
#define QV_FSUTIL_H

#include <stdio.h>

#include "common.h"

/* Reads a whole file into a NUL-terminated buffer (the NUL is not counted in *len).
 * Refuses files larger than max_bytes. Caller frees with qv_free. */
qv_status qv_read_file(const char *path, size_t max_bytes, char **data, size_t *len);

/* A file being written under a temporary name "<path>.tmp.<pid>.<n>" beside its destination;
 * qv_atomic_commit fsyncs, renames onto path and fsyncs the folder; qv_atomic_abort removes
 * the temporary. Writes go through `f`. */
typedef struct qv_atomic_file {
    FILE *f;
    char *path, *tmp;
} qv_atomic_file;
qv_status qv_atomic_open(qv_atomic_file *af, const char *path);
qv_status qv_atomic_write(qv_atomic_file *af, const void *data, size_t n);
qv_status qv_atomic_commit(qv_atomic_file *af);
void qv_atomic_abort(qv_atomic_file *af);
/* Convenience: writes a whole buffer crash-safely. */
qv_status qv_write_file_atomic(const char *path, const void *data, size_t n);
/* Removes what writers of `path` that were killed before they committed left beside it: the
 * entries of its folder named "<name>.tmp.<pid>.<n>" (qv_atomic_open, the safetensors writer),
 * "<name>.qvlm-tmp.<pid>" or "<name>.qvlm-old.<pid>" (export folders), files or folders, whose
 * <pid> is no longer a running process. Those of live processes (this one, a concurrent run)
 * are kept. Best effort: called before a writer creates its own temporary, so a resumed run
 * leaves no debris of the runs it resumes. */
void qv_remove_stale_temps(const char *path);

/* Fault injection for the crash-safety tests: when the environment variable QVLM_CRASH_AT equals
 * `point`, the process SIGKILLs itself here (a kill in a window too short to hit by timing, such
 * as between the two renames of an export that replaces an existing output). Points:
 * "export-replace". A no-op otherwise. */
void qv_crash_point(const char *point);

bool qv_path_exists(const char *path);
bool qv_is_dir(const char *path);
/* mkdir -p */
qv_status qv_mkdirs(const char *path);
/* Joins a folder and a name ("a" + "b" -> "a/b"); caller frees. NULL on OOM. */
char *qv_path_join(const char *dir, const char *name);
/* Folder part of a path ("a/b/c" -> "a/b", "c" -> "."); caller frees. */
char *qv_path_dirname(const char *path);
/* Removes a folder tree (used to clean up failed outputs). */
qv_status qv_remove_tree(const char *path);
/* fsync a folder so a rename inside it is durable. */
void qv_fsync_dir(const char *dir);

#endif
