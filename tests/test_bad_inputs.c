/* test_bad_inputs.c — the bad-input catalogue (tests/bad_inputs/README.md). Each malformed
 * input goes through the command a user would run (qvlm inspect / tokenize / preprocess), or,
 * for run configurations and caption files until `qvlm calib` exists, through the library
 * loader those commands will call. Every case must end in exit status 1 with exactly one
 * stderr line "qvlm: <file>: <problem>" that names the file and the problem, nothing on
 * stdout, no output file (nor temporary) left in the output folder, and — in build-asan —
 * no sanitizer report (qt_run_cli fails the test on one). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "calib/captions.h"
#include "config/run_config.h"
#include "core/fsutil.h"
#include "util/testutil.h"

#define BAD QV_SOURCE_DIR "/tests/bad_inputs/"

typedef struct bad_case {
    const char *file;   /* under tests/bad_inputs/ */
    const char *needle; /* the problem, as the message states it */
} bad_case;

static void copy_file(const char *src, const char *dst)
{
    char *data;
    size_t len;
    cr_assert_eq(qv_read_file(src, (size_t)1 << 30, &data, &len), QV_OK, "%s", qv_last_error());
    cr_assert_eq(qv_write_file_atomic(dst, data, len), QV_OK, "%s", qv_last_error());
    qv_free(data);
}

static void link_file(const char *src, const char *dir, const char *name)
{
    char dst[1024];
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    unlink(dst);
    cr_assert_eq(symlink(src, dst), 0, "symlink %s", dst);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "%s", dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* Runs qvlm and checks the failure contract; out_dir (may be NULL) must stay empty. */
static void expect_fail(const char *out_dir, const char *names, const char *needle, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void expect_fail(const char *out_dir, const char *names, const char *needle, const char *fmt, ...)
{
    char args[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *out, *err;
    int rc = qt_run_cli(&out, &err, "%s", args);
    cr_expect_eq(rc, 1, "qvlm %s: exit %d, stderr: %s", args, rc, err);
    cr_expect_eq(qt_count_lines(err), 1, "qvlm %s: stderr has %d lines: %s", args, qt_count_lines(err), err);
    cr_expect(strncmp(err, "qvlm: ", 6) == 0, "qvlm %s: stderr: %s", args, err);
    cr_expect(strstr(err, names) != NULL, "qvlm %s: error does not name %s: %s", args, names, err);
    cr_expect(strstr(err, needle) != NULL, "qvlm %s: error lacks \"%s\": %s", args, needle, err);
    cr_expect_str_empty(out, "qvlm %s: stdout: %s", args, out);
    if (out_dir)
        cr_expect_eq(count_entries(out_dir), 0, "qvlm %s: left files in %s", args, out_dir);
    free(out);
    free(err);
}

/* A library failure: one line that starts with the file's path and states the problem. */
static void expect_lib_error(qv_status st, const char *path, const char *needle)
{
    const char *m = qv_last_error();
    cr_expect_neq(st, QV_OK, "%s was accepted", path);
    cr_expect(strchr(m, '\n') == NULL, "%s: message spans lines: %s", path, m);
    cr_expect(strncmp(m, path, strlen(path)) == 0 && m[strlen(path)] == ':', "%s: message does not start with the file: %s",
              path, m);
    cr_expect(strstr(m, needle) != NULL, "%s: message lacks \"%s\": %s", path, needle, m);
}

/* ---- checkpoints: qvlm inspect on a folder with one bad model.safetensors --------------------- */

Test(bad_inputs, safetensors)
{
    static const bad_case cases[] = {
        {"safetensors/too_short.safetensors", "too short"},
        {"safetensors/header_length_past_eof.safetensors", "runs past the end of the file"},
        {"safetensors/header_length_over_limit.safetensors", "exceeds the 100000000-byte limit"},
        {"safetensors/offsets_past_eof.safetensors", "data_offsets end 16 runs past the end of the file"},
        {"safetensors/overlapping_tensors.safetensors", "tensor b overlaps a"},
        {"safetensors/shape_times_dtype_not_bytes.safetensors", "needs 12 bytes but data_offsets span 8"},
        {"safetensors/shape_overflow.safetensors", "shape overflows"},
        {"safetensors/unknown_dtype.safetensors", "unknown or unsupported dtype \"F12\""},
        {"safetensors/duplicate_names.safetensors", "duplicate key"},
        {"safetensors/header_not_utf8.safetensors", "invalid utf-8"},
        {"safetensors/header_deeply_nested.safetensors", "nesting too deep"},
        {"safetensors/trailing_bytes.safetensors", "4 trailing bytes"},
        {"safetensors/gap_between_tensors.safetensors", "gap before data_offsets begin 4"},
    };
    char *dir = qt_tmpdir();
    link_file(qt_fixture("models/qwen2-tiny/config.json"), dir, "config.json");
    for (size_t i = 0; i < QV_ARRAY_LEN(cases); i++) {
        char src[1024];
        snprintf(src, sizeof src, BAD "%s", cases[i].file);
        link_file(src, dir, "model.safetensors");
        expect_fail(NULL, "model.safetensors", cases[i].needle, "inspect '%s'", dir);
    }
    free(dir);
}

Test(bad_inputs, sharded_checkpoint)
{
    const char *m = "models/internvl2-internlm2-tiny";
    char fx[1024], *dir = qt_tmpdir(), index[1024];
    snprintf(fx, sizeof fx, "%s", qt_fixture(m));
    char p[1100];
    snprintf(p, sizeof p, "%s/config.json", fx);
    link_file(p, dir, "config.json");
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", fx);
    link_file(p, dir, "model-00001-of-00002.safetensors");
    snprintf(index, sizeof index, "%s/model.safetensors.index.json", dir);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", fx);
    copy_file(p, index);
    /* a shard listed in the index but missing */
    expect_fail(NULL, "model.safetensors.index.json", "shard model-00002-of-00002.safetensors is listed in the index but missing",
                "inspect '%s'", dir);
    /* a shard name that leaves the folder */
    const char *escape = "{\"weight_map\": {\"language_model.model.norm.weight\": \"../model-00001-of-00002.safetensors\"}}";
    cr_assert_eq(qv_write_file_atomic(index, escape, strlen(escape)), QV_OK);
    expect_fail(NULL, "model.safetensors.index.json", "not a file in the folder", "inspect '%s'", dir);
    /* a tensor the named shard does not hold */
    const char *wrong = "{\"weight_map\": {\"no.such.tensor\": \"model-00001-of-00002.safetensors\"}}";
    cr_assert_eq(qv_write_file_atomic(index, wrong, strlen(wrong)), QV_OK);
    expect_fail(NULL, "model.safetensors.index.json", "tensor no.such.tensor is listed in model-00001-of-00002.safetensors",
                "inspect '%s'", dir);
    /* not JSON at all */
    cr_assert_eq(qv_write_file_atomic(index, "\x89PNG", 4), QV_OK);
    expect_fail(NULL, "model.safetensors.index.json", "invalid JSON", "inspect '%s'", dir);
    free(dir);
}

/* ---- config.json: qvlm inspect and qvlm preprocess ----------------------------------------------- */

Test(bad_inputs, config_json)
{
    static const bad_case cases[] = {
        {"config/missing_field.json", "missing field \"hidden_size\""},
        {"config/wrong_type.json", "field \"num_hidden_layers\": expected an integer"},
        {"config/dims_past_caps.json", "field \"vocab_size\": 1099511627776 is out of range (1..16777216)"},
        {"config/negative_dim.json", "field \"intermediate_size\": -128 is out of range"},
        {"config/non_finite_eps.json", "field \"rms_norm_eps\": inf is not a positive finite number"},
        {"config/unsupported_architecture.json", "architecture \"MistralForCausalLM\" is not supported"},
        {"config/not_utf8.json", "invalid utf-8"},
        {"config/deeply_nested.json", "nesting too deep"},
        {"config/truncated.json", "unexpected end of input"},
        {"config/vision_mlp_ratio_overflow.json", "field \"vision_config.mlp_ratio\": 9000000000000000000 is out of range"},
    };
    char *dir = qt_tmpdir(), *out = qt_tmpdir();
    link_file(qt_fixture("models/qwen2-tiny/model.safetensors"), dir, "model.safetensors");
    for (size_t i = 0; i < QV_ARRAY_LEN(cases); i++) {
        char src[1024];
        snprintf(src, sizeof src, BAD "%s", cases[i].file);
        link_file(src, dir, "config.json");
        expect_fail(NULL, "config.json", cases[i].needle, "inspect '%s'", dir);
        expect_fail(out, "config.json", cases[i].needle, "preprocess '%s' '%s' -o '%s/out.safetensors'", dir,
                    qt_fixture("calib/images/rocket.jpg"), out);
    }
    free(dir);
    free(out);
}

/* ---- tokenizer.json: qvlm tokenize ----------------------------------------------------------------- */

Test(bad_inputs, tokenizer_json)
{
    static const bad_case cases[] = {
        {"tokenizer/unknown_model_type.json", "model type \"WordPiece\" is not supported"},
        {"tokenizer/unknown_pre_tokenizer.json", "pre_tokenizer type \"Whitespace\" is not supported"},
        {"tokenizer/bad_regex.json", "pre_tokenizer regex does not compile"},
        {"tokenizer/merge_outside_vocab.json", "uses a token missing from the vocab"},
        {"tokenizer/truncated.json", "invalid JSON"},
    };
    char *dir = qt_tmpdir();
    for (size_t i = 0; i < QV_ARRAY_LEN(cases); i++) {
        char src[1024];
        snprintf(src, sizeof src, BAD "%s", cases[i].file);
        link_file(src, dir, "tokenizer.json");
        expect_fail(NULL, "tokenizer.json", cases[i].needle, "tokenize '%s' 'Hello world'", dir);
        expect_fail(NULL, "tokenizer.json", cases[i].needle, "tokenize '%s' --chat 'Hello world'", dir);
    }
    /* a tokenizer.model that is not a SentencePiece protobuf */
    char *spm = qt_tmpdir();
    link_file(BAD "image/not_an_image.jpg", spm, "tokenizer.model");
    expect_fail(NULL, "tokenizer.model", "not a SentencePiece model", "tokenize '%s' 'Hello'", spm);
    free(spm);
    free(dir);
}

/* ---- images: qvlm preprocess ---------------------------------------------------------------------- */

Test(bad_inputs, images)
{
    static const bad_case cases[] = {
        {"image/bad_crc.png", "CRC error"},
        {"image/zero_by_zero.png", "Invalid IHDR data"},
        {"image/huge_100000x100000.png", "image of 100000x100000 pixels exceeds the limit"},
        {"image/huge_65000x65000.jpg", "image of 65000x65000 pixels exceeds the limit"},
        {"image/not_an_image.jpg", "not a JPEG or PNG image"},
        {"image/empty.png", "empty file"},
    };
    const char *model = "models/internvl2-qwen2-tiny";
    char mdir[1024];
    snprintf(mdir, sizeof mdir, "%s", qt_fixture(model));
    char *out = qt_tmpdir();
    for (size_t i = 0; i < QV_ARRAY_LEN(cases); i++) {
        char src[1024];
        snprintf(src, sizeof src, BAD "%s", cases[i].file);
        expect_fail(out, cases[i].file, cases[i].needle, "preprocess '%s' '%s' -o '%s/out.safetensors'", mdir, src, out);
    }
    /* a JPEG truncated at several points: inside the markers, early in the scan, half-way, near the end */
    char *data;
    size_t len;
    cr_assert_eq(qv_read_file(qt_fixture("calib/images/rocket.jpg"), (size_t)1 << 24, &data, &len), QV_OK);
    char *tdir = qt_tmpdir(), trunc[1024];
    const size_t cuts[] = {3, 300, 1000, len / 2, len * 9 / 10, len - 2};
    for (size_t i = 0; i < QV_ARRAY_LEN(cuts); i++) {
        snprintf(trunc, sizeof trunc, "%s/truncated_%zu.jpg", tdir, cuts[i]);
        cr_assert_eq(qv_write_file_atomic(trunc, data, cuts[i]), QV_OK);
        expect_fail(out, trunc, "Premature end of JPEG file", "preprocess '%s' '%s' -o '%s/out.safetensors'", mdir, trunc,
                    out);
    }
    qv_free(data);
    /* a valid image over the --max-memory budget: refused up front, with the size it needs */
    expect_fail(out, "rocket.jpg", "more than the --max-memory budget of 2.0 MiB",
                "preprocess '%s' '%s' -o '%s/out.safetensors' --max-memory 2M", mdir,
                qt_fixture("calib/images/rocket.jpg"), out);
    expect_fail(out, "rocket.jpg", "decoding a 640x427 image needs 800.6 KiB",
                "preprocess '%s' '%s' -o '%s/out.safetensors' --max-memory 100K", mdir,
                qt_fixture("calib/images/rocket.jpg"), out);
    free(tdir);
    free(out);
}

/* ---- run configurations (library: qvlm calib / quantize are not written yet) -------------------------- */

Test(bad_inputs, run_config_yaml)
{
    static const bad_case cases[] = {
        {"yaml/unknown_key.yaml", ":4: unknown key \"w_bits\""},
        {"yaml/wrong_type.yaml", ":4: key \"w_bit\": expected an integer, got \"4\" (a quoted string)"},
        {"yaml/out_of_range.yaml", ":3: key \"w_group\": 16 is out of range (-1 or 32..4096)"},
        {"yaml/tab_indent.yaml", ":4: tab used for indentation"},
        {"yaml/duplicate_key.yaml", ":5: duplicate key \"w_bit\" (first at line 3)"},
        {"yaml/alias.yaml", ":4: YAML aliases (*x) are not supported"},
        {"yaml/two_documents.yaml", "more than one YAML document"},
        {"yaml/syntax_error.yaml", "invalid YAML"},
        {"yaml/not_utf8.yaml", "invalid YAML"},
    };
    for (size_t i = 0; i < QV_ARRAY_LEN(cases); i++) {
        char path[1024];
        snprintf(path, sizeof path, BAD "%s", cases[i].file);
        qv_run_config *runs = (qv_run_config *)1;
        size_t n = 7;
        qv_status st = qv_run_config_load(path, &runs, &n);
        expect_lib_error(st, path, cases[i].needle);
        cr_expect(runs == NULL && n == 0, "%s: half a result returned", path);
    }
}

/* ---- caption files (library) ---------------------------------------------------------------------- */

Test(bad_inputs, caption_files)
{
    static const bad_case cases[] = {
        {"captions/missing_conversations.json", "entry 2: missing field \"conversations\""},
        {"captions/turn_missing_value.jsonl", ":2: entry 1: missing field \"conversations[0].value\""},
        {"captions/image_not_a_path.json", "entry 1: field \"image\": expected a path or a list of paths, got a number"},
        {"captions/truncated.json", "unexpected end of file"},
        {"captions/not_a_list.json", ":1: expected a JSON array of objects"},
        {"captions/wrong_extension.txt", "unsupported caption file type"},
    };
    for (size_t i = 0; i < QV_ARRAY_LEN(cases); i++) {
        char path[1024];
        snprintf(path, sizeof path, BAD "%s", cases[i].file);
        qv_caption_file f;
        qv_status st = qv_captions_load(path, &f);
        expect_lib_error(st, path, cases[i].needle);
        cr_expect(f.n_items == 0 && f.items == NULL, "%s: half a result returned", path);
    }
    /* an entry naming an image that is not in the image folder: found before any work */
    char path[1024], images[1024];
    snprintf(path, sizeof path, BAD "captions/missing_image.json");
    snprintf(images, sizeof images, "%s", qt_fixture("calib/images"));
    qv_caption_file f;
    cr_assert_eq(qv_captions_load(path, &f), QV_OK, "%s", qv_last_error());
    size_t bad = 99;
    qv_status st = qv_captions_check_images(&f, images, &bad);
    expect_lib_error(st, path, "entry 3: image \"no_such_image.jpg\" not found in");
    cr_expect_eq(bad, 3);
    qv_captions_free(&f);
    /* the fixture file itself passes the check */
    cr_assert_eq(qv_captions_load(qt_fixture("calib/captions_sharegpt4v.json"), &f), QV_OK);
    cr_expect_eq(qv_captions_check_images(&f, images, NULL), QV_OK, "%s", qv_last_error());
    qv_captions_free(&f);
}

/* ---- files that are not files: a FIFO must be refused at once, never waited on ------------------ */

Test(bad_inputs, fifos_are_refused_not_waited_on, .timeout = 60)
{
    char *dir = qt_tmpdir(), *out = qt_tmpdir(), p[1024];
    snprintf(p, sizeof p, "%s/config.json", dir);
    cr_assert_eq(mkfifo(p, 0600), 0);
    link_file(qt_fixture("models/qwen2-tiny/model.safetensors"), dir, "model.safetensors");
    expect_fail(NULL, "config.json", "not a regular file", "inspect '%s'", dir);
    unlink(p);
    link_file(qt_fixture("models/qwen2-tiny/config.json"), dir, "config.json");
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    unlink(p);
    cr_assert_eq(mkfifo(p, 0600), 0);
    expect_fail(NULL, "model.safetensors", "not a regular file", "inspect '%s'", dir);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    cr_assert_eq(mkfifo(p, 0600), 0);
    expect_fail(NULL, "tokenizer.json", "not a regular file", "tokenize '%s' hello", dir);
    snprintf(p, sizeof p, "%s/image.jpg", dir);
    cr_assert_eq(mkfifo(p, 0600), 0);
    expect_fail(out, "image.jpg", "not a regular file", "preprocess '%s' '%s' -o '%s/out.safetensors'",
                qt_fixture("models/internvl3-tiny"), p, out);
    free(dir);
    free(out);
}
