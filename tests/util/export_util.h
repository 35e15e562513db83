/* export_util.h — helpers of the export tests: a scales DIR made from a search golden pair
 * (goldens/<model>/export_<search>.{safetensors,json} -> DIR/scales.safetensors + DIR/search.json,
 * the layout `qvlm quantize` writes), fixture paths that survive qt_fixture's static buffer, a
 * shell runner for commands that need a prefix (ulimit), and JSON key-set checks. */
#ifndef QV_EXPORT_UTIL_H
#define QV_EXPORT_UTIL_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

/* strdup of qt_fixture(rel). */
char *qx_fixture(const char *rel);
/* A fresh scales DIR from goldens/<model>/export_<search>.* (caller frees the path). */
char *qx_scales_dir(const char *model, const char *search);
/* Runs a shell command line with stdout/stderr captured; returns the exit status (-1 on signal). */
int qx_run_sh(char **out, char **err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* True when obj is an object whose keys are exactly keys[0..n) (any order). */
bool qx_keys_exactly(json_object *obj, const char *const *keys, size_t n, char *why, size_t why_len);
/* Parses path's JSON (aborts the test on failure). */
json_object *qx_json_file(const char *path);
/* Number of entries in a folder (-1 when it does not exist). */
int qx_dir_entries(const char *path);
/* True when any entry of dir has a name containing `part`. */
bool qx_dir_has(const char *dir, const char *part);

#endif
