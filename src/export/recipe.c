/* recipe.c — llm-compressor recipes, compressed-tensors presets, name matching and the
 * quantization_config objects (recipe.h). */
#include "recipe.h"

#include <stdio.h>
#include <string.h>
#include <yaml.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/fsutil.h"

/* ---- YAML -> json-c ---------------------------------------------------------------------------- */

static qv_json *yaml_scalar(const yaml_node_t *n)
{
    const char *s = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return json_object_new_string_len(s, (int)len);
    if (!len || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL"))
        return NULL; /* json null */
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
        return json_object_new_boolean(1);
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
        return json_object_new_boolean(0);
    char *end;
    long long i = strtoll(s, &end, 10);
    if (*end == 0 && end != s)
        return json_object_new_int64(i);
    double d = strtod(s, &end);
    if (*end == 0 && end != s)
        return json_object_new_double(d);
    return json_object_new_string_len(s, (int)len);
}

static qv_status yaml_to_json(yaml_document_t *doc, yaml_node_t *n, int depth, const char *what, qv_json **out)
{
    *out = NULL;
    if (depth > 32)
        return qv_fail(QV_ERR_FORMAT, "%s: nesting deeper than 32", what);
    switch (n->type) {
    case YAML_SCALAR_NODE:
        *out = yaml_scalar(n);
        return QV_OK;
    case YAML_SEQUENCE_NODE: {
        qv_json *a = json_object_new_array();
        if (!a)
            return QV_ERR_NOMEM;
        for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
            qv_json *v;
            qv_status st = yaml_to_json(doc, yaml_document_get_node(doc, *it), depth + 1, what, &v);
            if (st != QV_OK) {
                json_object_put(a);
                return st;
            }
            json_object_array_add(a, v);
        }
        *out = a;
        return QV_OK;
    }
    case YAML_MAPPING_NODE: {
        qv_json *o = json_object_new_object();
        if (!o)
            return QV_ERR_NOMEM;
        for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
            yaml_node_t *k = yaml_document_get_node(doc, p->key);
            if (!k || k->type != YAML_SCALAR_NODE) {
                json_object_put(o);
                return qv_fail(QV_ERR_FORMAT, "%s: line %zu: mapping keys must be plain strings", what, k ? k->start_mark.line + 1 : 0);
            }
            qv_json *v;
            qv_status st = yaml_to_json(doc, yaml_document_get_node(doc, p->value), depth + 1, what, &v);
            if (st != QV_OK) {
                json_object_put(o);
                return st;
            }
            json_object_object_add(o, (const char *)k->data.scalar.value, v);
        }
        *out = o;
        return QV_OK;
    }
    default:
        return qv_fail(QV_ERR_FORMAT, "%s: empty document", what);
    }
}

static qv_status parse_yaml(const char *text, size_t len, const char *what, qv_json **out)
{
    yaml_parser_t p;
    yaml_document_t doc;
    *out = NULL;
    if (!yaml_parser_initialize(&p))
        return QV_ERR_NOMEM;
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    if (!yaml_parser_load(&p, &doc)) {
        qv_status st = qv_fail(QV_ERR_FORMAT, "%s: line %zu: %s", what, p.problem_mark.line + 1,
                               p.problem ? p.problem : "YAML syntax error");
        yaml_parser_delete(&p);
        return st;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    qv_status st = root ? yaml_to_json(&doc, root, 0, what, out) : qv_fail(QV_ERR_FORMAT, "%s: empty recipe", what);
    yaml_document_delete(&doc);
    yaml_parser_delete(&p);
    return st;
}

/* ---- presets and args ------------------------------------------------------------------------- */

static void args_set(qv_ct_args *a, int bits, bool is_float, bool sym, int64_t group, const char *strategy, bool dynamic,
                     const char *observer)
{
    memset(a, 0, sizeof *a);
    a->present = true;
    a->num_bits = bits;
    a->is_float = is_float;
    a->symmetric = sym;
    a->group_size = group;
    snprintf(a->strategy, sizeof a->strategy, "%s", strategy);
    a->dynamic = dynamic;
    snprintf(a->observer, sizeof a->observer, "%s", observer ? observer : "");
}

bool qv_ct_preset(const char *name, qv_ct_args *w, qv_ct_args *in)
{
    memset(w, 0, sizeof *w);
    memset(in, 0, sizeof *in);
    if (!strcmp(name, "FP8")) {
        args_set(w, 8, true, true, 0, "tensor", false, "minmax");
        args_set(in, 8, true, true, 0, "tensor", false, "static_minmax");
    } else if (!strcmp(name, "FP8_DYNAMIC")) {
        args_set(w, 8, true, true, 0, "channel", false, "minmax");
        args_set(in, 8, true, true, 0, "token", true, NULL);
    } else if (!strcmp(name, "W8A8") || !strcmp(name, "INT8")) {
        args_set(w, 8, false, true, 0, "channel", false, "minmax");
        args_set(in, 8, false, true, 0, "token", true, NULL);
    } else if (!strcmp(name, "W4A16_ASYM")) {
        args_set(w, 4, false, false, 128, "group", false, "minmax");
    } else if (strlen(name) == 5 && name[0] == 'W' && name[1] >= '2' && name[1] <= '8' && !strcmp(name + 2, "A16")) {
        args_set(w, name[1] - '0', false, true, 128, "group", false, "minmax");
    } else {
        return false;
    }
    return true;
}

static qv_status args_from_json(const qv_json *o, const char *what, qv_ct_args *a)
{
    memset(a, 0, sizeof *a);
    if (!o)
        return QV_OK;
    if (!qv_json_is_type(o, json_type_object))
        return qv_fail(QV_ERR_FORMAT, "%s: expected quantization arguments (an object)", what);
    static const char *known[] = {"num_bits", "type", "symmetric", "group_size", "strategy", "block_structure",
                                  "dynamic", "actorder", "observer", "observer_kwargs", "scale_dtype", "zp_dtype"};
    json_object_object_foreach((qv_json *)o, key, val) {
        (void)val;
        bool ok = false;
        for (size_t i = 0; i < QV_ARRAY_LEN(known); i++)
            ok |= !strcmp(key, known[i]);
        if (!ok)
            return qv_fail(QV_ERR_FORMAT, "%s: unknown quantization argument \"%s\"", what, key);
    }
    int64_t bits = 8, group = 0;
    const char *type = "int", *strategy = NULL, *observer = NULL;
    bool sym = true, dynamic = false;
    QV_TRY(qv_json_int_opt(o, "num_bits", what, &bits));
    QV_TRY(qv_json_str_opt(o, "type", what, &type));
    QV_TRY(qv_json_bool_opt(o, "symmetric", what, &sym));
    QV_TRY(qv_json_int_opt(o, "group_size", what, &group));
    QV_TRY(qv_json_str_opt(o, "strategy", what, &strategy));
    QV_TRY(qv_json_str_opt(o, "observer", what, &observer));
    qv_json *dyn = qv_json_get(o, "dynamic");
    if (dyn && qv_json_is_type(dyn, json_type_boolean))
        dynamic = json_object_get_boolean(dyn);
    else if (dyn && !qv_json_is_type(dyn, json_type_null))
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: dynamic must be true or false (\"local\" is for NVFP4)", what);
    if (strcmp(type, "int") && strcmp(type, "float"))
        return qv_fail(QV_ERR_FORMAT, "%s: type must be int or float, not %s", what, type);
    if (!strategy)
        strategy = group == 0 ? "tensor" : group > 0 ? "group" : "channel";
    if (group < -1)
        return qv_fail(QV_ERR_FORMAT, "%s: group_size %lld", what, (long long)group);
    args_set(a, (int)bits, !strcmp(type, "float"), sym, group, strategy, dynamic, dynamic ? NULL : observer);
    return QV_OK;
}

qv_json *qv_ct_args_json(const qv_ct_args *a)
{
    if (!a || !a->present)
        return NULL;
    qv_json *o = json_object_new_object();
    if (!o)
        return NULL;
    json_object_object_add(o, "num_bits", json_object_new_int(a->num_bits));
    json_object_object_add(o, "type", json_object_new_string(a->is_float ? "float" : "int"));
    json_object_object_add(o, "symmetric", json_object_new_boolean(a->symmetric));
    json_object_object_add(o, "group_size", a->group_size ? json_object_new_int64(a->group_size) : NULL);
    json_object_object_add(o, "strategy", json_object_new_string(a->strategy));
    json_object_object_add(o, "block_structure", NULL);
    json_object_object_add(o, "dynamic", json_object_new_boolean(a->dynamic));
    json_object_object_add(o, "actorder", NULL);
    json_object_object_add(o, "observer", a->observer[0] ? json_object_new_string(a->observer) : NULL);
    json_object_object_add(o, "observer_kwargs", json_object_new_object());
    return o;
}

/* ---- recipes ----------------------------------------------------------------------------------- */

qv_status qv_recipe_add(char ***list, size_t *n, const char *s)
{
    char **nl = qv_realloc(*list, (*n + 1) * sizeof *nl, "name list");
    if (!nl)
        return QV_ERR_NOMEM;
    *list = nl;
    if (!(nl[*n] = qv_strdup(s)))
        return QV_ERR_NOMEM;
    (*n)++;
    return QV_OK;
}

static qv_status str_list(const qv_json *v, const char *what, char ***list, size_t *n)
{
    if (!v)
        return QV_OK;
    if (qv_json_is_type(v, json_type_string))
        return qv_recipe_add(list, n, json_object_get_string((qv_json *)v));
    if (!qv_json_is_type(v, json_type_array))
        return qv_fail(QV_ERR_FORMAT, "%s: expected a string or a list of strings", what);
    for (size_t i = 0; i < json_object_array_length(v); i++) {
        qv_json *e = json_object_array_get_idx(v, i);
        if (!qv_json_is_type(e, json_type_string))
            return qv_fail(QV_ERR_FORMAT, "%s[%zu]: expected a string", what, i);
        QV_TRY(qv_recipe_add(list, n, json_object_get_string(e)));
    }
    return QV_OK;
}

static bool ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

static qv_status read_scheme_obj(qv_recipe *r, const qv_json *sch, const char *what)
{
    char w[512];
    static const char *known[] = {"targets", "weights", "input_activations", "output_activations", "format"};
    json_object_object_foreach((qv_json *)sch, key, val) {
        (void)val;
        bool ok = false;
        for (size_t i = 0; i < QV_ARRAY_LEN(known); i++)
            ok |= !strcmp(key, known[i]);
        if (!ok)
            return qv_fail(QV_ERR_FORMAT, "%s: unknown scheme field \"%s\"", what, key);
    }
    qv_json *out = qv_json_get(sch, "output_activations");
    if (out && !qv_json_is_type(out, json_type_null))
        return qv_fail(QV_ERR_UNSUPPORTED, "%s: output activation quantization is not supported", what);
    snprintf(w, sizeof w, "%s.weights", what);
    QV_TRY(args_from_json(qv_json_get(sch, "weights"), w, &r->weights));
    if (r->weights.present && !r->weights.observer[0])
        snprintf(r->weights.observer, sizeof r->weights.observer, "minmax");
    snprintf(w, sizeof w, "%s.input_activations", what);
    QV_TRY(args_from_json(qv_json_get(sch, "input_activations"), w, &r->input));
    /* static activation scales are qvlm's running absmax over the whole calibration run, whatever
     * observer the recipe named: say so in the saved config (ALGORITHMS-2.md §4.5) */
    if (r->input.present && !r->input.dynamic)
        snprintf(r->input.observer, sizeof r->input.observer, "static_minmax");
    snprintf(w, sizeof w, "%s.targets", what);
    return str_list(qv_json_get(sch, "targets"), w, &r->targets, &r->n_targets);
}

static qv_status read_modifier(qv_recipe *r, const qv_json *m, const char *what)
{
    char w[384];
    qv_json *scheme = qv_json_get(m, "scheme"), *groups = qv_json_get(m, "config_groups");
    if (scheme && groups)
        return qv_fail(QV_ERR_FORMAT, "%s: give scheme or config_groups, not both", what);
    snprintf(w, sizeof w, "%s.ignore", what);
    QV_TRY(str_list(qv_json_get(m, "ignore"), w, &r->ignore, &r->n_ignore));
    if (scheme && qv_json_is_type(scheme, json_type_string)) {
        const char *name = json_object_get_string(scheme);
        if (!qv_ct_preset(name, &r->weights, &r->input))
            return qv_fail(QV_ERR_UNSUPPORTED, "%s: scheme %s is not supported (FP8, FP8_DYNAMIC, W8A8, INT8, W4A16_ASYM, W{2..8}A16)",
                           what, name);
        snprintf(r->scheme, sizeof r->scheme, "%s", name);
        snprintf(w, sizeof w, "%s.targets", what);
        QV_TRY(str_list(qv_json_get(m, "targets"), w, &r->targets, &r->n_targets));
    } else if (scheme && qv_json_is_type(scheme, json_type_object)) {
        if (qv_json_get(scheme, "weights") || qv_json_get(scheme, "input_activations")) {
            snprintf(w, sizeof w, "%s.scheme", what);
            QV_TRY(read_scheme_obj(r, scheme, w));
            if (!r->n_targets)
                QV_TRY(str_list(qv_json_get(m, "targets"), what, &r->targets, &r->n_targets));
        } else { /* {PRESET: [targets]} */
            if (json_object_object_length(scheme) != 1)
                return qv_fail(QV_ERR_UNSUPPORTED, "%s: one preset per recipe is supported", what);
            json_object_object_foreach(scheme, key, val) {
                if (!qv_ct_preset(key, &r->weights, &r->input))
                    return qv_fail(QV_ERR_UNSUPPORTED, "%s: scheme %s is not supported", what, key);
                snprintf(r->scheme, sizeof r->scheme, "%s", key);
                snprintf(w, sizeof w, "%s.scheme.%s", what, key);
                QV_TRY(str_list(val, w, &r->targets, &r->n_targets));
            }
        }
    } else if (groups) {
        if (!qv_json_is_type(groups, json_type_object) || json_object_object_length(groups) != 1)
            return qv_fail(QV_ERR_UNSUPPORTED, "%s: config_groups: exactly one group is supported", what);
        json_object_object_foreach(groups, key, val) {
            snprintf(w, sizeof w, "%s.config_groups.%s", what, key);
            if (!qv_json_is_type(val, json_type_object))
                return qv_fail(QV_ERR_FORMAT, "%s: expected a scheme object", w);
            QV_TRY(read_scheme_obj(r, val, w));
        }
    } else if (scheme) {
        return qv_fail(QV_ERR_FORMAT, "%s: scheme must be a preset name or an object", what);
    }
    if (!r->n_targets)
        QV_TRY(str_list(qv_json_get(m, "targets"), what, &r->targets, &r->n_targets));
    if (!r->n_targets)
        QV_TRY(qv_recipe_add(&r->targets, &r->n_targets, "Linear"));
    qv_json *kv = qv_json_get(m, "kv_cache_scheme");
    if (kv && !qv_json_is_type(kv, json_type_null)) {
        snprintf(w, sizeof w, "%s.kv_cache_scheme", what);
        QV_TRY(args_from_json(kv, w, &r->kv));
        if (!r->kv.dynamic)
            snprintf(r->kv.observer, sizeof r->kv.observer, "static_minmax");
    }
    return QV_OK;
}

qv_status qv_recipe_parse(const char *text, size_t len, const char *what, qv_recipe *r)
{
    memset(r, 0, sizeof *r);
    r->path = qv_strdup(what);
    if (!r->path)
        return QV_ERR_NOMEM;
    qv_json *root;
    qv_status st = parse_yaml(text, len, what, &root);
    bool found = false;
    if (st == QV_OK && !qv_json_is_type(root, json_type_object))
        st = qv_fail(QV_ERR_FORMAT, "%s: a recipe is a mapping of <name>_stage entries", what);
    if (st == QV_OK) {
        json_object_object_foreach(root, sk, sv) {
            if (!ends_with(sk, "_stage") || found || st != QV_OK)
                continue;
            if (!qv_json_is_type(sv, json_type_object)) {
                st = qv_fail(QV_ERR_FORMAT, "%s: %s: expected a mapping", what, sk);
                break;
            }
            json_object_object_foreach(sv, mk, mv) {
                if (!ends_with(mk, "_modifiers") || found || st != QV_OK)
                    continue;
                if (!qv_json_is_type(mv, json_type_object)) {
                    st = qv_fail(QV_ERR_FORMAT, "%s: %s.%s: expected a mapping", what, sk, mk);
                    break;
                }
                json_object_object_foreach(mv, name, fields) {
                    char w[256];
                    snprintf(w, sizeof w, "%s: %s.%s.%s", what, sk, mk, name);
                    if (strcmp(name, "QuantizationModifier") && strcmp(name, "GPTQModifier")) {
                        if (!strcmp(name, "AWQModifier") || !strcmp(name, "SmoothQuantModifier"))
                            continue; /* transforms: qvlm's own search results take their place */
                        st = qv_fail(QV_ERR_UNSUPPORTED, "%s: modifier not supported", w);
                        break;
                    }
                    if (found)
                        continue;
                    if (!qv_json_is_type(fields, json_type_object)) {
                        st = qv_fail(QV_ERR_FORMAT, "%s: expected a mapping of fields", w);
                        break;
                    }
                    st = read_modifier(r, fields, w);
                    found = true;
                    if (st != QV_OK)
                        break;
                }
            }
        }
    }
    if (st == QV_OK && !found)
        st = qv_fail(QV_ERR_FORMAT, "%s: no QuantizationModifier in any <name>_stage / <name>_modifiers", what);
    if (st == QV_OK && !r->weights.present)
        st = qv_fail(QV_ERR_FORMAT, "%s: the QuantizationModifier gives no weight scheme", what);
    json_object_put(root);
    if (st != QV_OK)
        qv_recipe_free(r);
    return st;
}

qv_status qv_recipe_load(const char *path, qv_recipe *r)
{
    char *text;
    size_t len;
    memset(r, 0, sizeof *r);
    QV_TRY(qv_read_file(path, (size_t)16 << 20, &text, &len));
    qv_status st = qv_recipe_parse(text, len, path, r);
    qv_free(text);
    return st;
}

void qv_recipe_free(qv_recipe *r)
{
    for (size_t i = 0; i < r->n_targets; i++)
        qv_free(r->targets[i]);
    for (size_t i = 0; i < r->n_ignore; i++)
        qv_free(r->ignore[i]);
    qv_free(r->targets);
    qv_free(r->ignore);
    qv_free(r->path);
    memset(r, 0, sizeof *r);
}

/* ---- matching ---------------------------------------------------------------------------------- */

qv_status qv_ct_match(const char *pattern, const char *module, bool is_linear, bool is_target, bool *match)
{
    *match = false;
    if (strncmp(pattern, "re:", 3) == 0) {
        int err;
        PCRE2_SIZE off;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)(pattern + 3), PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err, &off, NULL);
        if (!re) {
            PCRE2_UCHAR msg[128];
            pcre2_get_error_message(err, msg, sizeof msg);
            return qv_fail(QV_ERR_INVALID, "pattern \"%s\": %s at offset %zu", pattern, (const char *)msg, (size_t)off);
        }
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
        if (!md) {
            pcre2_code_free(re);
            return QV_ERR_NOMEM;
        }
        int rc = pcre2_match(re, (PCRE2_SPTR)module, strlen(module), 0, PCRE2_ANCHORED, md, NULL);
        *match = rc >= 0;
        pcre2_match_data_free(md);
        pcre2_code_free(re);
        return QV_OK;
    }
    *match = strcmp(pattern, module) == 0 || (is_target && is_linear && strcmp(pattern, "Linear") == 0);
    return QV_OK;
}

qv_status qv_ct_in_scope(const qv_recipe *r, const char *module, bool is_linear, bool *in)
{
    bool t = false, ig = false;
    *in = false;
    for (size_t i = 0; i < r->n_targets && !t; i++)
        QV_TRY(qv_ct_match(r->targets[i], module, is_linear, true, &t));
    for (size_t i = 0; t && i < r->n_ignore && !ig; i++)
        QV_TRY(qv_ct_match(r->ignore[i], module, is_linear, false, &ig));
    *in = t && !ig;
    return QV_OK;
}

/* ---- quantization_config objects ------------------------------------------------------------- */

static qv_json *str_array(char *const *s, size_t n)
{
    qv_json *a = json_object_new_array();
    for (size_t i = 0; a && i < n; i++)
        json_object_array_add(a, json_object_new_string(s[i]));
    return a;
}

qv_json *qv_qconfig_awq(int bits, int64_t group, char *const *not_convert, size_t n)
{
    qv_json *o = json_object_new_object();
    if (!o)
        return NULL;
    json_object_object_add(o, "quant_method", json_object_new_string("awq"));
    json_object_object_add(o, "bits", json_object_new_int(bits));
    json_object_object_add(o, "group_size", json_object_new_int64(group));
    json_object_object_add(o, "zero_point", json_object_new_boolean(1));
    json_object_object_add(o, "version", json_object_new_string("gemm"));
    json_object_object_add(o, "modules_to_not_convert", str_array(not_convert, n));
    return o;
}

qv_json *qv_qconfig_gptq(int bits, int64_t group, bool sym, char *const *exclude_regex, size_t n, const char *block_name)
{
    qv_json *o = json_object_new_object(), *dyn = json_object_new_object(), *meta = json_object_new_object();
    if (!o || !dyn || !meta) {
        json_object_put(o);
        json_object_put(dyn);
        json_object_put(meta);
        return NULL;
    }
    json_object_object_add(o, "quant_method", json_object_new_string("gptq"));
    json_object_object_add(o, "bits", json_object_new_int(bits));
    json_object_object_add(o, "group_size", json_object_new_int64(group));
    json_object_object_add(o, "desc_act", json_object_new_boolean(0));
    json_object_object_add(o, "sym", json_object_new_boolean(sym));
    json_object_object_add(o, "lm_head", json_object_new_boolean(0));
    json_object_object_add(o, "true_sequential", json_object_new_boolean(1));
    json_object_object_add(o, "static_groups", json_object_new_boolean(0));
    json_object_object_add(o, "checkpoint_format", json_object_new_string("gptq"));
    json_object_object_add(o, "pack_dtype", json_object_new_string("int32"));
    for (size_t i = 0; i < n; i++) {
        char *k = qv_asprintf("-:%s", exclude_regex[i]);
        if (k)
            json_object_object_add(dyn, k, json_object_new_object());
        qv_free(k);
    }
    json_object_object_add(o, "dynamic", dyn);
    if (block_name)
        json_object_object_add(o, "block_name_to_quantize", json_object_new_string(block_name));
    char quantizer[48];
    snprintf(quantizer, sizeof quantizer, "qvlm:%d.%d.%d", QVLM_VERSION_MAJOR, QVLM_VERSION_MINOR, QVLM_VERSION_PATCH);
    char *qlist[1] = {quantizer};
    json_object_object_add(meta, "quantizer", str_array(qlist, 1));
    json_object_object_add(o, "meta", meta);
    return o;
}

qv_json *qv_qconfig_ct(const char *format, const qv_ct_args *weights, const qv_ct_args *input, const qv_ct_args *kv,
                       char *const *targets, size_t n_targets, char *const *ignore, size_t n_ignore)
{
    qv_json *o = json_object_new_object(), *groups = json_object_new_object(), *g = json_object_new_object();
    if (!o || !groups || !g) {
        json_object_put(o);
        json_object_put(groups);
        json_object_put(g);
        return NULL;
    }
    json_object_object_add(g, "targets", str_array(targets, n_targets));
    json_object_object_add(g, "weights", qv_ct_args_json(weights));
    json_object_object_add(g, "input_activations", qv_ct_args_json(input));
    json_object_object_add(g, "output_activations", NULL);
    json_object_object_add(g, "format", json_object_new_string(format));
    json_object_object_add(groups, "group_0", g);
    json_object_object_add(o, "quant_method", json_object_new_string("compressed-tensors"));
    json_object_object_add(o, "format", json_object_new_string(format));
    json_object_object_add(o, "quantization_status", json_object_new_string("compressed"));
    json_object_object_add(o, "config_groups", groups);
    json_object_object_add(o, "ignore", str_array(ignore, n_ignore));
    json_object_object_add(o, "kv_cache_scheme", qv_ct_args_json(kv));
    json_object_object_add(o, "global_compression_ratio", NULL);
    json_object_object_add(o, "sparsity_config", json_object_new_object());
    json_object_object_add(o, "transform_config", json_object_new_object());
    json_object_object_add(o, "version", json_object_new_string(QV_CT_VERSION));
    return o;
}
