/* fsutil.c — see fsutil.h. */
#include "fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

qv_status qv_read_file(const char *path, size_t max_bytes, char **data, size_t *len)
{
    *data = NULL;
    if (len)
        *len = 0;
    /* O_NONBLOCK: opening a FIFO (or a device) must not wait for a writer; it is refused
     * below. Reads of a regular file ignore the flag. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return qv_fail(QV_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return qv_fail(QV_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_bytes) {
        close(fd);
        return qv_fail(QV_ERR_INVALID, "%s: file too large (%lld bytes, limit %zu)", path, (long long)st.st_size,
                       max_bytes);
    }
    size_t n = (size_t)st.st_size;
    char *buf = qv_malloc(n + 1, path);
    if (!buf) {
        close(fd);
        return QV_ERR_NOMEM;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, buf + got, n - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break; /* error, or the file shrank while we read it */
        got += (size_t)k;
    }
    close(fd);
    if (got != n) {
        qv_free(buf);
        return qv_fail(QV_ERR_IO, "%s: read failed (%zu of %zu bytes)", path, got, n);
    }
    buf[n] = 0;
    *data = buf;
    if (len)
        *len = n;
    return QV_OK;
}

static atomic_uint tmp_counter;

/* The pid in `rest` = "<pid>" or "<pid>.<n>" (n only with allow_n), else 0. */
static long temp_pid(const char *rest, bool allow_n)
{
    char *end;
    if (*rest < '1' || *rest > '9')
        return 0;
    long pid = strtol(rest, &end, 10);
    if (*end == '.' && allow_n && end[1] >= '0' && end[1] <= '9') {
        char *e2;
        (void)strtoul(end + 1, &e2, 10);
        end = e2;
    }
    return *end == 0 && pid > 0 ? pid : 0;
}

void qv_remove_stale_temps(const char *path)
{
    static const struct {
        const char *tag;
        bool with_n;
    } tags[] = {{".tmp.", true}, {".qvlm-tmp.", false}, {".qvlm-old.", false}};
    char *dir = qv_path_dirname(path);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t nb = strlen(base);
    DIR *d = dir && nb ? opendir(dir) : NULL;
    if (!d) {
        qv_free(dir);
        return;
    }
    const long self = (long)getpid();
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, base, nb) != 0)
            continue;
        for (size_t t = 0; t < QV_ARRAY_LEN(tags); t++) {
            size_t nt = strlen(tags[t].tag);
            if (strncmp(e->d_name + nb, tags[t].tag, nt) != 0)
                continue;
            long pid = temp_pid(e->d_name + nb + nt, tags[t].with_n);
            if (pid && pid != self && pid == (long)(pid_t)pid && kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
                char *p = qv_path_join(dir, e->d_name);
                if (p)
                    qv_remove_tree(p); /* best effort: an error only leaves the debris */
                qv_free(p);
            }
            break;
        }
    }
    closedir(d);
    qv_free(dir);
}

qv_status qv_atomic_open(qv_atomic_file *af, const char *path)
{
    af->f = NULL;
    af->path = qv_strdup(path);
    af->tmp = qv_asprintf("%s.tmp.%ld.%u", path, (long)getpid(), atomic_fetch_add(&tmp_counter, 1));
    if (!af->path || !af->tmp) {
        qv_free(af->path);
        qv_free(af->tmp);
        af->path = af->tmp = NULL;
        return QV_ERR_NOMEM;
    }
    qv_remove_stale_temps(path);
    af->f = fopen(af->tmp, "wb");
    if (!af->f) {
        qv_status st = qv_fail(QV_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        qv_free(af->path);
        qv_free(af->tmp);
        af->path = af->tmp = NULL;
        return st;
    }
    return QV_OK;
}

qv_status qv_atomic_write(qv_atomic_file *af, const void *data, size_t n)
{
    if (n && fwrite(data, 1, n, af->f) != n)
        return qv_fail(QV_ERR_IO, "%s: write failed: %s", af->path, strerror(errno));
    return QV_OK;
}

void qv_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

qv_status qv_atomic_commit(qv_atomic_file *af)
{
    qv_status st = QV_OK;
    if (fflush(af->f) != 0 || fsync(fileno(af->f)) != 0)
        st = qv_fail(QV_ERR_IO, "%s: write failed: %s", af->path, strerror(errno));
    if (fclose(af->f) != 0 && st == QV_OK)
        st = qv_fail(QV_ERR_IO, "%s: write failed: %s", af->path, strerror(errno));
    af->f = NULL;
    if (st == QV_OK && rename(af->tmp, af->path) != 0)
        st = qv_fail(QV_ERR_IO, "%s: rename failed: %s", af->path, strerror(errno));
    if (st != QV_OK) {
        unlink(af->tmp);
    } else {
        char *d = qv_path_dirname(af->path);
        if (d)
            qv_fsync_dir(d);
        qv_free(d);
    }
    qv_free(af->path);
    qv_free(af->tmp);
    af->path = af->tmp = NULL;
    return st;
}

void qv_atomic_abort(qv_atomic_file *af)
{
    if (!af || !af->tmp)
        return;
    if (af->f)
        fclose(af->f);
    unlink(af->tmp);
    qv_free(af->path);
    qv_free(af->tmp);
    af->f = NULL;
    af->path = af->tmp = NULL;
}

qv_status qv_write_file_atomic(const char *path, const void *data, size_t n)
{
    qv_atomic_file af;
    QV_TRY(qv_atomic_open(&af, path));
    qv_status st = qv_atomic_write(&af, data, n);
    if (st != QV_OK) {
        qv_atomic_abort(&af);
        return st;
    }
    return qv_atomic_commit(&af);
}

bool qv_path_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

bool qv_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

qv_status qv_mkdirs(const char *path)
{
    char *p = qv_strdup(path);
    if (!p)
        return QV_ERR_NOMEM;
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == 0) {
            char c = *s;
            *s = 0;
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                qv_status st = qv_fail(QV_ERR_IO, "%s: cannot create folder: %s", p, strerror(errno));
                qv_free(p);
                return st;
            }
            *s = c;
            if (!c)
                break;
        }
    }
    qv_free(p);
    if (!qv_is_dir(path))
        return qv_fail(QV_ERR_IO, "%s: exists and is not a folder", path);
    return QV_OK;
}

char *qv_path_join(const char *dir, const char *name)
{
    if (!dir || !*dir || name[0] == '/')
        return qv_strdup(name);
    size_t n = strlen(dir);
    return qv_asprintf("%s%s%s", dir, dir[n - 1] == '/' ? "" : "/", name);
}

char *qv_path_dirname(const char *path)
{
    const char *s = strrchr(path, '/');
    if (!s)
        return qv_strdup(".");
    if (s == path)
        return qv_strdup("/");
    return qv_strndup(path, (size_t)(s - path));
}

qv_status qv_remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return QV_OK;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d)
            return qv_fail(QV_ERR_IO, "%s: %s", path, strerror(errno));
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char *c = qv_path_join(path, e->d_name);
            if (!c) {
                closedir(d);
                return QV_ERR_NOMEM;
            }
            qv_status s = qv_remove_tree(c);
            qv_free(c);
            if (s != QV_OK) {
                closedir(d);
                return s;
            }
        }
        closedir(d);
        if (rmdir(path) != 0)
            return qv_fail(QV_ERR_IO, "%s: %s", path, strerror(errno));
    } else if (unlink(path) != 0) {
        return qv_fail(QV_ERR_IO, "%s: %s", path, strerror(errno));
    }
    return QV_OK;
}

void qv_crash_point(const char *point)
{
    const char *e = getenv("QVLM_CRASH_AT");
    if (e && strcmp(e, point) == 0)
        raise(SIGKILL);
}
