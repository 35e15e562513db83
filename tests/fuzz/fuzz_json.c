/* fuzz_json.c — the JSON reader under every JSON file qvlm reads (qv_json_parse: json-c in
 * strict mode with UTF-8 validation, the depth limit, trailing-garbage and duplicate-key
 * checks). On success the tree must serialise and parse back to a tree that serialises to the
 * same text, and the typed getters must not misbehave on whatever the members are. */
#include "fuzz_common.h"
#include "io/json.h"

static void poke_members(const qv_json *o)
{
    if (!qv_json_is_type(o, json_type_object))
        return;
    json_object_object_foreach((qv_json *)o, k, v)
    {
        int64_t i;
        double d;
        bool b;
        const char *s;
        qv_json *x;
        (void)v;
        qv_json_int_opt(o, k, "fuzz.json", &i);
        qv_json_num_opt(o, k, "fuzz.json", &d);
        qv_json_bool_opt(o, k, "fuzz.json", &b);
        qv_json_str_opt(o, k, "fuzz.json", &s);
        if (qv_json_obj(o, k, "fuzz.json", &x) == QV_OK)
            poke_members(x);
    }
}

int qv_fuzz_json(const uint8_t *data, size_t size)
{
    static const char *name = "fuzz.json";
    qv_json *j = NULL;
    qv_status st = qv_json_parse((const char *)data, size, name, QV_JSON_UNIQUE_KEYS, &j);
    if (st != QV_OK) {
        qf_check_error(st, name);
        return 0;
    }
    poke_members(j);
    size_t n1;
    const char *t1 = json_object_to_json_string_length(j, JSON_C_TO_STRING_PLAIN, &n1);
    QF_CHECK(t1 != NULL);
    char *copy = qv_strndup(t1, n1);
    QF_CHECK(copy != NULL);
    qv_json *k = NULL;
    st = qv_json_parse(copy, n1, "fuzz.json (reparsed)", 0, &k);
    QF_CHECK(st == QV_OK);
    size_t n2;
    const char *t2 = json_object_to_json_string_length(k, JSON_C_TO_STRING_PLAIN, &n2);
    QF_CHECK(n1 == n2 && memcmp(copy, t2, n1) == 0);
    qv_free(copy);
    qv_json_free(k);
    qv_json_free(j);
    return 0;
}

QF_ENTRY(json)
