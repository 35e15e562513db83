/* family.c — the family table and its lookups: by id, by config architecture, by run-config
 * `model:` name (family.h; docs/families.md). Adding a family: its file, one line here, one
 * qv_family_id value. */
#include "family.h"

#include <stdio.h>
#include <string.h>

/* The order of qv_supported_architectures(). */
static const qv_family *const k_table[] = {
    &qv_family_internvl2, &qv_family_text, &qv_family_qwen2vl, &qv_family_llava_ov, &qv_family_internvl3,
};

size_t qv_family_count(void) { return QV_ARRAY_LEN(k_table); }

const qv_family *qv_family_at(size_t i) { return i < QV_ARRAY_LEN(k_table) ? k_table[i] : NULL; }

static const qv_family *find_id(qv_family_id id)
{
    for (size_t i = 0; i < QV_ARRAY_LEN(k_table); i++)
        if (k_table[i]->id == id)
            return k_table[i];
    return NULL;
}

const qv_family *qv_family_get(qv_family_id id)
{
    const qv_family *f = find_id(id);
    return f ? f : &qv_family_text;
}

const char *qv_family_name(qv_family_id id)
{
    const qv_family *f = find_id(id);
    return f ? f->name : "?";
}

static bool in_list(const char *const *list, const char *s)
{
    for (size_t i = 0; list && list[i]; i++)
        if (!strcmp(list[i], s))
            return true;
    return false;
}

const qv_family *qv_family_by_architecture(const char *arch)
{
    for (size_t i = 0; arch && i < QV_ARRAY_LEN(k_table); i++)
        if (in_list(k_table[i]->architectures, arch))
            return k_table[i];
    return NULL;
}

const qv_family *qv_family_by_yaml_name(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < QV_ARRAY_LEN(k_table); i++)
        if (!strcmp(k_table[i]->name, name) && in_list(k_table[i]->yaml_names, name))
            return k_table[i];
    for (size_t i = 0; i < QV_ARRAY_LEN(k_table); i++)
        if (in_list(k_table[i]->yaml_names, name))
            return k_table[i];
    return NULL;
}

bool qv_family_answers_to(const qv_family *f, const char *name) { return f && name && in_list(f->yaml_names, name); }

const char *qv_supported_architectures(void)
{
    /* rebuilt per call (a few hundred bytes) so that no shared state needs a lock */
    static _Thread_local char buf[1024];
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < QV_ARRAY_LEN(k_table); i++)
        for (const char *const *a = k_table[i]->architectures; a && *a && n < sizeof buf; a++)
            n += (size_t)snprintf(buf + n, sizeof buf - n, "%s%s", n ? ", " : "", *a);
    return buf;
}
