/* export_util.c — see export_util.h. */
#include "export_util.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/fsutil.h"
#include "util/testutil.h"

char *qx_fixture(const char *rel) { return strdup(qt_fixture(rel)); }

static void copy(const char *from, const char *to)
{
    char *data;
    size_t len;
    cr_assert_eq(qv_read_file(from, (size_t)1 << 30, &data, &len), QV_OK, "%s", qv_last_error());
    cr_assert_eq(qv_write_file_atomic(to, data, len), QV_OK, "%s", qv_last_error());
    qv_free(data);
}

char *qx_scales_dir(const char *model, const char *search)
{
    char *dir = qt_tmpdir(), rel[512], to[1024];
    snprintf(rel, sizeof rel, "goldens/%s/export_%s.safetensors", model, search);
    snprintf(to, sizeof to, "%s/scales.safetensors", dir);
    copy(qt_fixture(rel), to);
    snprintf(rel, sizeof rel, "goldens/%s/export_%s.json", model, search);
    snprintf(to, sizeof to, "%s/search.json", dir);
    copy(qt_fixture(rel), to);
    return dir;
}

static char *slurp(const char *path)
{
    char *data = NULL;
    size_t len;
    if (qv_read_file(path, (size_t)1 << 30, &data, &len) != QV_OK)
        return strdup("");
    return data;
}

int qx_run_sh(char **out, char **err, const char *fmt, ...)
{
    char line[8192], cmd[12288], of[] = "/tmp/qvlm-out-XXXXXX", ef[] = "/tmp/qvlm-err-XXXXXX";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    int fo = mkstemp(of), fe = mkstemp(ef);
    cr_assert(fo >= 0 && fe >= 0);
    close(fo);
    close(fe);
    snprintf(cmd, sizeof cmd, "( %s ) >'%s' 2>'%s'", line, of, ef);
    int st = system(cmd);
    if (out)
        *out = slurp(of);
    if (err)
        *err = slurp(ef);
    unlink(of);
    unlink(ef);
    if (st == -1 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

bool qx_keys_exactly(json_object *obj, const char *const *keys, size_t n, char *why, size_t why_len)
{
    if (!obj || !json_object_is_type(obj, json_type_object)) {
        snprintf(why, why_len, "not an object");
        return false;
    }
    for (size_t i = 0; i < n; i++)
        if (!json_object_object_get_ex(obj, keys[i], NULL)) {
            snprintf(why, why_len, "missing key %s", keys[i]);
            return false;
        }
    json_object_object_foreach(obj, k, v) {
        (void)v;
        bool known = false;
        for (size_t i = 0; i < n; i++)
            known |= strcmp(k, keys[i]) == 0;
        if (!known) {
            snprintf(why, why_len, "unexpected key %s", k);
            return false;
        }
    }
    return true;
}

json_object *qx_json_file(const char *path)
{
    json_object *j = json_object_from_file(path);
    cr_assert_not_null(j, "cannot parse %s", path);
    return j;
}

int qx_dir_entries(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

bool qx_dir_has(const char *dir, const char *part)
{
    DIR *d = opendir(dir);
    if (!d)
        return false;
    struct dirent *e;
    bool found = false;
    while ((e = readdir(d)))
        found |= strstr(e->d_name, part) != NULL;
    closedir(d);
    return found;
}
