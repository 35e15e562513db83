/* fuzz_yaml.c — the run configuration loader (qv_run_config_parse: libyaml events into
 * qvlm's tree, PyYAML typing, the key table and the cross-key checks). On success every run
 * must hold its required keys, values must lie in their documented ranges, and the JSON
 * written for search.json must parse. */
#include "config/run_config.h"
#include "fuzz_common.h"

int qv_fuzz_yaml(const uint8_t *data, size_t size)
{
    static const char *name = "fuzz/config.yaml";
    qv_run_config *runs = NULL;
    size_t n = 0;
    qv_status st = qv_run_config_parse((const char *)data, size, name, &runs, &n);
    if (st != QV_OK) {
        qf_check_error(st, name);
        QF_CHECK(runs == NULL && n == 0);
        return 0;
    }
    QF_CHECK(n >= 1 && n <= QV_RUN_CONFIG_MAX_RUNS);
    for (size_t i = 0; i < n; i++) {
        const qv_run_config *c = &runs[i];
        QF_CHECK(c->pretrained && c->pretrained[0]);
        QF_CHECK(c->w_bit >= 1 && c->w_bit <= 16 && c->a_bit >= 1 && c->a_bit <= 16);
        QF_CHECK(c->w_group == -1 || (c->w_group >= 32 && c->w_group <= 4096));
        QF_CHECK(c->alpha >= 0 && c->alpha <= 1 && c->n_samples >= 1 && c->n_grid >= 1);
        QF_CHECK(!(c->few_shot_format && c->interleave_format));
        QF_CHECK(!c->scale_path == !c->scale_dir);
        qv_strbuf b;
        qv_sb_init(&b);
        qv_run_config_to_json(c, &b);
        QF_CHECK(!b.oom);
        qv_json *j = NULL;
        QF_CHECK(qv_json_parse(b.s, b.len, "search.json", QV_JSON_UNIQUE_KEYS, &j) == QV_OK);
        qv_json_free(j);
        qv_sb_free(&b);
    }
    qv_run_configs_free(runs, n);
    return 0;
}

QF_ENTRY(yaml)
