/* outdir.c — temporary output folders, aux-file copies, free-space checks and config.json
 * rewriting for the exporters (outdir.h). */
#include "outdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "core/fsutil.h"

static bool dir_empty(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return false;
    struct dirent *e;
    bool empty = true;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            empty = false;
    closedir(d);
    return empty;
}

qv_status qv_outdir_begin(const char *dest, bool force, bool is_file, char **tmp)
{
    *tmp = NULL;
    struct stat sb;
    if (lstat(dest, &sb) == 0 && !force) {
        if (S_ISDIR(sb.st_mode) && !is_file) {
            if (!dir_empty(dest))
                return qv_fail(QV_ERR_INVALID, "%s: output folder exists and is not empty (use --force to replace it)", dest);
        } else {
            return qv_fail(QV_ERR_INVALID, "%s: output exists (use --force to replace it)", dest);
        }
    }
    char *parent = qv_path_dirname(dest);
    if (!parent)
        return QV_ERR_NOMEM;
    qv_status st = QV_OK;
    if (!qv_is_dir(parent))
        st = qv_mkdirs(parent);
    qv_free(parent);
    QV_TRY(st);
    *tmp = qv_asprintf("%s.qvlm-tmp.%ld", dest, (long)getpid());
    if (!*tmp)
        return QV_ERR_NOMEM;
    qv_outdir_abort(*tmp);     /* leftovers of a crashed run with the same pid */
    qv_remove_stale_temps(dest); /* and of killed runs with other pids */
    if (!is_file && mkdir(*tmp, 0755) != 0) {
        st = qv_fail(QV_ERR_IO, "%s: cannot create the temporary output folder: %s", *tmp, strerror(errno));
        qv_free(*tmp);
        *tmp = NULL;
    }
    return st;
}

qv_status qv_outdir_commit(const char *tmp, const char *dest)
{
    struct stat sb;
    char *old = NULL;
    if (lstat(dest, &sb) == 0) {
        if (S_ISDIR(sb.st_mode) && dir_empty(dest)) {
            rmdir(dest);
        } else {
            old = qv_asprintf("%s.qvlm-old.%ld", dest, (long)getpid());
            if (!old)
                return QV_ERR_NOMEM;
            if (rename(dest, old) != 0) {
                qv_status st = qv_fail(QV_ERR_IO, "%s: cannot move the old output aside: %s", dest, strerror(errno));
                qv_free(old);
                return st;
            }
        }
    }
    if (old)
        qv_crash_point("export-replace"); /* the old output aside, the new one not yet in place */
    if (rename(tmp, dest) != 0) {
        qv_status st = qv_fail(QV_ERR_IO, "%s: cannot rename the finished output into place: %s", dest, strerror(errno));
        if (old)
            rename(old, dest);
        qv_free(old);
        return st;
    }
    if (old) {
        if (S_ISDIR(sb.st_mode))
            qv_remove_tree(old);
        else
            unlink(old);
        qv_free(old);
    }
    char *parent = qv_path_dirname(dest);
    if (parent)
        qv_fsync_dir(parent);
    qv_free(parent);
    return QV_OK;
}

void qv_outdir_abort(const char *tmp)
{
    if (!tmp)
        return;
    struct stat sb;
    if (lstat(tmp, &sb) != 0)
        return;
    if (S_ISDIR(sb.st_mode))
        qv_remove_tree(tmp);
    else
        unlink(tmp);
}

qv_status qv_outdir_check_space(const char *dest, uint64_t need)
{
    char *parent = qv_path_dirname(dest);
    if (!parent)
        return QV_ERR_NOMEM;
    struct statvfs vs;
    qv_status st = QV_OK;
    if (statvfs(parent, &vs) == 0) {
        uint64_t avail = (uint64_t)vs.f_bavail * (uint64_t)vs.f_frsize;
        uint64_t margin = (uint64_t)1 << 20;
        if (avail < need + margin)
            st = qv_fail(QV_ERR_IO, "%s: not enough disk space: the export needs %llu bytes, %llu are free", dest,
                         (unsigned long long)(need + margin), (unsigned long long)avail);
    }
    qv_free(parent);
    return st;
}

/* ---- copying ---------------------------------------------------------------------------------- */

static bool is_weight_file(const char *name)
{
    static const char *suffixes[] = {".safetensors", ".safetensors.index.json", ".bin", ".bin.index.json", ".pt",
                                      ".pth", ".ckpt", ".gguf", ".msgpack", ".h5"};
    size_t n = strlen(name);
    for (size_t i = 0; i < QV_ARRAY_LEN(suffixes); i++) {
        size_t k = strlen(suffixes[i]);
        if (n >= k && strcmp(name + n - k, suffixes[i]) == 0)
            return true;
    }
    return false;
}

static qv_status copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return qv_fail(QV_ERR_IO, "%s: cannot open: %s", from, strerror(errno));
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        close(in);
        return qv_fail(QV_ERR_IO, "%s: cannot create: %s", to, strerror(errno));
    }
    static __thread char buf[1 << 16];
    qv_status st = QV_OK;
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            st = qv_fail(QV_ERR_IO, "%s: read failed: %s", from, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t k = write(out, buf + off, (size_t)(n - off));
            if (k < 0 && errno == EINTR)
                continue;
            if (k < 0) {
                st = qv_fail(QV_ERR_IO, "%s: write failed: %s", to, strerror(errno));
                break;
            }
            off += k;
        }
        if (st != QV_OK)
            break;
    }
    close(in);
    /* a full disk may only show at fsync or close (delayed allocation, network filesystems) */
    if (st == QV_OK && fsync(out) != 0)
        st = qv_fail(QV_ERR_IO, "%s: write failed: %s", to, strerror(errno));
    if (close(out) != 0 && st == QV_OK)
        st = qv_fail(QV_ERR_IO, "%s: write failed: %s", to, strerror(errno));
    return st;
}

static qv_status copy_tree(const char *from, const char *to, int depth, bool top)
{
    if (depth > 8)
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: folders nested too deep", from);
    DIR *d = opendir(from);
    if (!d)
        return qv_fail(QV_ERR_IO, "%s: cannot list: %s", from, strerror(errno));
    qv_status st = QV_OK;
    struct dirent *e;
    while (st == QV_OK && (e = readdir(d))) {
        const char *n = e->d_name;
        if (!strcmp(n, ".") || !strcmp(n, "..") || is_weight_file(n) || (top && !strcmp(n, "config.json")) ||
            strstr(n, ".qvlm-tmp.") || strstr(n, ".qvlm-old."))
            continue;
        char *src = qv_path_join(from, n), *dst = qv_path_join(to, n);
        struct stat sb;
        if (!src || !dst)
            st = QV_ERR_NOMEM;
        else if (stat(src, &sb) != 0)
            st = QV_OK; /* dangling link: skip */
        else if (S_ISDIR(sb.st_mode))
            st = mkdir(dst, 0755) == 0 || errno == EEXIST ? copy_tree(src, dst, depth + 1, false)
                                                          : qv_fail(QV_ERR_IO, "%s: cannot create: %s", dst, strerror(errno));
        else if (S_ISREG(sb.st_mode))
            st = copy_file(src, dst);
        qv_free(src);
        qv_free(dst);
    }
    closedir(d);
    return st;
}

qv_status qv_outdir_copy_aux(const char *model_dir, const char *to)
{
    if (!qv_is_dir(model_dir))
        return QV_OK;
    return copy_tree(model_dir, to, 0, true);
}

/* ---- config.json ------------------------------------------------------------------------------ */

qv_status qv_write_json(const char *path, qv_json *j)
{
    const char *s = json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
                                                          JSON_C_TO_STRING_NOSLASHESCAPE);
    if (!s)
        return QV_ERR_NOMEM;
    size_t n = strlen(s);
    char *buf = qv_malloc(n + 2, "json text");
    if (!buf)
        return QV_ERR_NOMEM;
    memcpy(buf, s, n);
    buf[n] = '\n';
    qv_status st = qv_write_file_atomic(path, buf, n + 1);
    qv_free(buf);
    return st;
}

static void set_dtype(qv_json *o, const char *dt)
{
    if (!o || !qv_json_is_type(o, json_type_object))
        return;
    if (qv_json_get(o, "torch_dtype") || !qv_json_get(o, "dtype"))
        json_object_object_add(o, "torch_dtype", json_object_new_string(dt));
    if (qv_json_get(o, "dtype"))
        json_object_object_add(o, "dtype", json_object_new_string(dt));
}

qv_status qv_outdir_write_config(const char *model_dir, const char *dir, qv_json *qcfg, const char *torch_dtype)
{
    char *src = qv_is_dir(model_dir) ? qv_path_join(model_dir, "config.json") : NULL;
    char *dst = qv_path_join(dir, "config.json");
    qv_json *root = NULL;
    qv_status st = QV_OK;
    if (!dst || (qv_is_dir(model_dir) && !src)) {
        st = QV_ERR_NOMEM;
        goto done;
    }
    QV_CHECK(st = qv_json_load_file(src, 0, &root), done);
    if (!qv_json_is_type(root, json_type_object)) {
        st = qv_fail(QV_ERR_FORMAT, "%s: expected a JSON object", src);
        goto done;
    }
    if (qcfg) {
        json_object_object_add(root, "quantization_config", qcfg);
        qcfg = NULL;
    }
    if (torch_dtype) {
        set_dtype(root, torch_dtype);
        set_dtype(qv_json_get(root, "llm_config"), torch_dtype);
        set_dtype(qv_json_get(root, "text_config"), torch_dtype);
    }
    st = qv_write_json(dst, root);
done:
    json_object_put(qcfg);
    qv_json_free(root);
    qv_free(src);
    qv_free(dst);
    return st;
}
