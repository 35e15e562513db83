/* outdir.h — the export's output folder: written under a temporary name beside the destination
 * and renamed into place at the end (removed on any failure), an existing non-empty destination
 * refused unless forced, free space checked before the first byte, the model's tokenizer /
 * processor / remote-code files copied, config.json rewritten (CLI.md `export`). */
#ifndef QV_EXPORT_OUTDIR_H
#define QV_EXPORT_OUTDIR_H

#include "io/json.h"

/* Checks dest (missing, an empty folder, or force) and creates "<dest>.qvlm-tmp.<pid>" beside it.
 * *tmp is owned by the caller. is_file: the destination is a single file (no folder made). */
qv_status qv_outdir_begin(const char *dest, bool force, bool is_file, char **tmp);
/* Moves tmp onto dest (an existing dest is replaced only when it was accepted by begin). */
qv_status qv_outdir_commit(const char *tmp, const char *dest);
/* Removes tmp (file or tree); accepts NULL. */
void qv_outdir_abort(const char *tmp);

/* Free space under the folder that will hold dest must exceed `need` bytes. */
qv_status qv_outdir_check_space(const char *dest, uint64_t need);

/* Copies every file of the model folder except weights (*.safetensors and their index, *.bin,
 * *.pt, *.pth, *.ckpt, *.gguf) and config.json, recursing into sub-folders. */
qv_status qv_outdir_copy_aux(const char *model_dir, const char *to);

/* Writes model_dir/config.json to dir/config.json with "quantization_config" set to qcfg (stolen;
 * NULL removes nothing and adds nothing) and, when torch_dtype is given, the dtype keys of the
 * top level and of the nested llm_config / text_config replaced. */
qv_status qv_outdir_write_config(const char *model_dir, const char *dir, qv_json *qcfg, const char *torch_dtype);

/* Pretty JSON (2-space indent, as transformers writes) to a file, crash-safe. */
qv_status qv_write_json(const char *path, qv_json *j);

#endif
