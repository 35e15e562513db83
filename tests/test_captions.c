/* test_captions.c — caption file reader and selection order (src/calib/captions.h;
 * spec/ALGORITHMS.md §7.1–7.2, §11 item 20). The fixture's shuffled order for seed 42 and four
 * samples is the reference's (fixtures README §5: calib-3, calib-2, calib-1, calib-0). Every
 * malformed input must give one line naming the file, the line and the entry. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib/captions.h"
#include "core/fsutil.h"
#include "util/testutil.h"

static const char *k_fixture = "calib/captions_sharegpt4v.json";

static qv_caption_file load_fixture(void)
{
    qv_caption_file f;
    cr_assert_eq(qv_captions_load(qt_fixture(k_fixture), &f), QV_OK, "%s", qv_last_error());
    return f;
}

static char *write_tmp(const char *name, const char *content, size_t len)
{
    char *dir = qt_tmpdir();
    char *path = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(path, "%s/%s", dir, name);
    free(dir);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(content, 1, len, f), len);
    fclose(f);
    return path;
}

/* Parses from memory and expects the error "<name>:<rest>". */
static void expect_error(const char *name, const char *text, const char *rest)
{
    qv_caption_file f;
    qv_status st = qv_captions_parse(text, strlen(text), name, &f);
    cr_expect_neq(st, QV_OK, "accepted: %s", text);
    cr_expect_eq(f.n_items, 0);
    cr_expect_null(f.items);
    char want[1024];
    snprintf(want, sizeof want, "%s%s", name, rest);
    cr_expect_str_eq(qv_last_error(), want, "got: %s\n--- input:\n%s", qv_last_error(), text);
}

static void expect_same_items(const qv_caption_file *a, const qv_caption_file *b)
{
    cr_assert_eq(a->n_items, b->n_items);
    for (size_t i = 0; i < a->n_items; i++) {
        const qv_caption_item *x = &a->items[i], *y = &b->items[i];
        cr_expect_str_eq(x->id, y->id);
        cr_assert_eq(x->n_images, y->n_images);
        for (size_t k = 0; k < x->n_images; k++)
            cr_expect_str_eq(x->images[k], y->images[k]);
        cr_assert_eq(x->n_turns, y->n_turns);
        for (size_t k = 0; k < x->n_turns; k++) {
            cr_expect_str_eq(x->turns[k].from, y->turns[k].from);
            cr_expect_str_eq(x->turns[k].value, y->turns[k].value);
        }
    }
}

Test(captions, fixture_items)
{
    qv_caption_file f = load_fixture();
    cr_assert_eq(f.n_items, 4);
    static const char *ids[] = {"calib-0", "calib-1", "calib-2", "calib-3"};
    static const char *images[] = {"grace_hopper.jpg", "synth_500x333.jpg", "rocket.jpg", "synth_gray_301x451.jpg"};
    static const size_t lines[] = {2, 16, 30, 44};
    for (size_t i = 0; i < 4; i++) {
        const qv_caption_item *it = &f.items[i];
        cr_expect_str_eq(it->id, ids[i]);
        cr_assert_eq(it->n_images, 1);
        cr_expect(!it->image_is_list);
        cr_expect_str_eq(it->images[0], images[i]);
        cr_assert_eq(it->n_turns, 2);
        cr_expect_str_eq(it->turns[0].from, "human");
        cr_expect_str_eq(it->turns[1].from, "gpt");
        cr_expect_eq(it->index, i);
        cr_expect_eq(it->line, lines[i]);
    }
    cr_expect_str_eq(f.items[0].turns[0].value, "<image>\nDescribe this image briefly.");
    cr_expect_str_eq(f.items[1].turns[0].value, "What shapes and colors do you see?\n<image>");
    cr_expect_str_eq(f.items[2].turns[0].value, "Write a short caption for the picture.");
    cr_expect_str_eq(f.items[3].turns[1].value, "A grayscale test pattern of vertical stripes (roughly 16 bands) "
                                                "fading in and out, 301x451.");
    qv_captions_free(&f);
    qv_captions_free(&f); /* idempotent on a freed file */
}

Test(captions, reference_order_seed42)
{
    qv_caption_file f = load_fixture();
    size_t order[4];
    cr_assert_eq(qv_captions_select(&f, 42, 4, order), QV_OK, "%s", qv_last_error());
    static const char *want[] = {"calib-3", "calib-2", "calib-1", "calib-0"};
    for (int i = 0; i < 4; i++)
        cr_expect_str_eq(f.items[order[i]].id, want[i], "batch item %d", i);
    size_t perm[4];
    qv_captions_shuffle_order(4, 42, perm);
    cr_expect_arr_eq(perm, order, sizeof perm);
    qv_captions_free(&f);
}

Test(captions, wrap_around)
{
    qv_caption_file f = load_fixture();
    size_t order[11];
    cr_assert_eq(qv_captions_select(&f, 42, 11, order), QV_OK);
    const size_t want[11] = {3, 2, 1, 0, 3, 2, 1, 0, 3, 2, 1};
    cr_expect_arr_eq(order, want, sizeof want);
    /* another seed: numpy default_rng(7).permutation(4) = [0, 2, 1, 3] */
    size_t order2[9];
    cr_assert_eq(qv_captions_select(&f, 7, 9, order2), QV_OK);
    const size_t want2[9] = {0, 2, 1, 3, 0, 2, 1, 3, 0};
    cr_expect_arr_eq(order2, want2, sizeof want2);
    size_t one[1];
    cr_expect_eq(qv_captions_select(&f, 42, 1, one), QV_OK);
    cr_expect_eq(one[0], 3);
    cr_expect_eq(qv_captions_select(&f, 42, 0, one), QV_ERR_INVALID);
    qv_captions_free(&f);
}

Test(captions, jsonl_matches_json)
{
    qv_caption_file a = load_fixture();
    /* the same items as JSON Lines, with CRLF endings and surrounding (Unicode) whitespace */
    const char *jl = "{\"id\": \"calib-0\", \"image\": \"grace_hopper.jpg\", \"conversations\": [{\"from\": \"human\", "
                     "\"value\": \"<image>\\nDescribe this image briefly.\"}, {\"from\": \"gpt\", \"value\": \"A woman in "
                     "a dark naval uniform with rows of medals poses for a formal studio portrait.\"}]}\r\n"
                     "  {\"id\": \"calib-1\", \"image\": [\"synth_500x333.jpg\"], \"conversations\": [{\"from\": "
                     "\"human\", \"value\": \"What shapes and colors do you see?\\n<image>\"}, {\"from\": \"gpt\", "
                     "\"value\": \"Three colored discs and two rectangles on a smooth gradient, about 500 by 333 "
                     "pixels, with light noise.\"}]}\t\r\n"
                     "{\"id\": \"calib-2\", \"image\": \"rocket.jpg\", \"conversations\": [{\"from\": \"human\", "
                     "\"value\": \"Write a short caption for the picture.\"}, {\"from\": \"gpt\", \"value\": \"A tall "
                     "rocket stands on its launch pad under a clear sky; service towers surround it.\"}]}\xc2\xa0\n"
                     "{\"id\": \"calib-3\", \"image\": \"synth_gray_301x451.jpg\", \"conversations\": [{\"from\": "
                     "\"human\", \"value\": \"<image>\\nCaption the picture in one sentence.\"}, {\"from\": \"gpt\", "
                     "\"value\": \"A grayscale test pattern of vertical stripes (roughly 16 bands) fading in and out, "
                     "301x451.\"}]}";
    char *path = write_tmp("caps.jsonl", jl, strlen(jl));
    qv_caption_file b;
    cr_assert_eq(qv_captions_load(path, &b), QV_OK, "%s", qv_last_error());
    expect_same_items(&a, &b);
    cr_expect(b.items[1].image_is_list);
    cr_expect_eq(b.items[2].line, 3);
    size_t order[4];
    cr_assert_eq(qv_captions_select(&b, 42, 4, order), QV_OK);
    cr_expect_str_eq(b.items[order[0]].id, "calib-3");
    qv_captions_free(&a);
    qv_captions_free(&b);
    free(path);
}

Test(captions, optional_fields)
{
    const char *text = "[{\"conversations\": [{\"from\": \"human\", \"value\": \"q\"}]},\n"
                       " {\"id\": 17, \"image\": \"\", \"conversations\": [{\"from\": \"gpt\", \"value\": \"\"}]},\n"
                       " {\"id\": 2.5, \"image\": [], \"conversations\": [{\"from\": \"x\", \"value\": \"v\", \"n\": 1}],"
                       " \"extra\": {\"ignored\": [1, 2]}},\n"
                       " {\"id\": null, \"image\": [\"a.jpg\", \"sub/b.png\"], \"conversations\": [{\"value\": \"v\", "
                       "\"from\": \"human\"}], \"id\": \"last-wins\"}]";
    qv_caption_file f;
    cr_assert_eq(qv_captions_parse(text, strlen(text), "mem.json", &f), QV_OK, "%s", qv_last_error());
    cr_assert_eq(f.n_items, 4);
    cr_expect_null(f.items[0].id);
    cr_expect_eq(f.items[0].n_images, 0);
    cr_expect_str_eq(f.items[1].id, "17");
    cr_expect_eq(f.items[1].n_images, 0);
    cr_expect_str_eq(f.items[1].turns[0].value, "");
    cr_expect_str_eq(f.items[2].id, "2.5");
    cr_expect_eq(f.items[2].n_images, 0);
    cr_expect(f.items[2].image_is_list);
    cr_expect_str_eq(f.items[3].id, "last-wins"); /* Python's json keeps the last duplicate */
    cr_assert_eq(f.items[3].n_images, 2);
    cr_expect_str_eq(f.items[3].images[1], "sub/b.png");
    cr_expect_eq(f.items[3].line, 4);
    qv_captions_free(&f);

    cr_assert_eq(qv_captions_parse(" [ ] ", 5, "empty.json", &f), QV_OK);
    cr_expect_eq(f.n_items, 0);
    size_t order[1];
    cr_expect_eq(qv_captions_select(&f, 42, 1, order), QV_ERR_INVALID);
    cr_expect_str_eq(qv_last_error(), "empty.json: no caption items to calibrate with");
    qv_captions_free(&f);
}

Test(captions, malformed_json)
{
    const char *conv = "\"conversations\": [{\"from\": \"human\", \"value\": \"q\"}]";
    char buf[1024];
    expect_error("c.txt", "[]", ": unsupported caption file type (expected .json or .jsonl)");
    expect_error("c.json", "", ":1: expected a JSON array of objects");
    expect_error("c.json", "\n\n{\"a\": 1}", ":3: expected a JSON array of objects");
    snprintf(buf, sizeof buf, "[{%s},\n 7]", conv);
    expect_error("c.json", buf, ":2: entry 1: expected an object, got a number");
    expect_error("c.json", "[\n{\"id\": \"x\"}]", ":2: entry 0: missing field \"conversations\"");
    expect_error("c.json", "[{\"conversations\": \"hi\"}]",
                 ":1: entry 0: field \"conversations\": expected a list of {\"from\", \"value\"} objects, got a string");
    expect_error("c.json", "[{\"conversations\": []}]", ":1: entry 0: field \"conversations\": empty list");
    expect_error("c.json", "[{\"conversations\": [[]]}]",
                 ":1: entry 0: field \"conversations[0]\": expected an object, got a list");
    expect_error("c.json", "[{\"conversations\": [{\"from\": \"human\", \"value\": \"q\"}, {\"value\": \"a\"}]}]",
                 ":1: entry 0: missing field \"conversations[1].from\"");
    expect_error("c.json", "[{\"conversations\": [{\"from\": \"gpt\", \"value\": 3}]}]",
                 ":1: entry 0: field \"conversations[0].value\": expected a string, got a number");
    snprintf(buf, sizeof buf, "[{%s, \"image\": 5}]", conv);
    expect_error("c.json", buf, ":1: entry 0: field \"image\": expected a path or a list of paths, got a number");
    snprintf(buf, sizeof buf, "[{%s, \"image\": null}]", conv);
    expect_error("c.json", buf, ":1: entry 0: field \"image\": expected a path or a list of paths, got null");
    snprintf(buf, sizeof buf, "[{%s, \"image\": [\"a.jpg\", \"\"]}]", conv);
    expect_error("c.json", buf, ":1: entry 0: field \"image[1]\": expected a non-empty path, got \"\"");
    snprintf(buf, sizeof buf, "[{%s, \"image\": [\"a.jpg\", {}]}]", conv);
    expect_error("c.json", buf, ":1: entry 0: field \"image[1]\": expected a non-empty path, got an object");
    snprintf(buf, sizeof buf, "[{%s, \"id\": true}]", conv);
    expect_error("c.json", buf, ":1: entry 0: field \"id\": expected a string or a number, got a boolean");
    snprintf(buf, sizeof buf, "[{%s, \"image\": \"a\\u0000b.jpg\"}]", conv);
    expect_error("c.json", buf, ":1: entry 0: field \"image\": contains a NUL character");
    /* syntax: the line is the error's own */
    snprintf(buf, sizeof buf, "[{%s},\n{%s,\n \"id\": x}]", conv, conv);
    expect_error("c.json", buf, ":3: entry 1: invalid JSON: unexpected character");
    snprintf(buf, sizeof buf, "[{%s},\n]", conv);
    expect_error("c.json", buf, ":2: entry 1: invalid JSON: missing value");
    snprintf(buf, sizeof buf, "[{%s}\n{%s}]", conv, conv);
    expect_error("c.json", buf, ":2: entry 0: invalid JSON: unexpected character");
    expect_error("c.json", "[{\"conversations\": null}]",
                 ":1: entry 0: field \"conversations\": expected a list of {\"from\", \"value\"} objects, got null");
    expect_error("c.json", "[{\"conversations\": [{\"from\": null, \"value\": \"q\"}]}]",
                 ":1: entry 0: field \"conversations[0].from\": expected a string, got null");
    snprintf(buf, sizeof buf, "[{%s}", conv);
    expect_error("c.json", buf, ":1: entry 0: invalid JSON: unexpected end of file");
    snprintf(buf, sizeof buf, "[{%s}] x", conv);
    expect_error("c.json", buf, ":1: invalid JSON: unexpected characters after the array");
    snprintf(buf, sizeof buf, "[{%s}}]", conv);
    expect_error("c.json", buf, ":1: invalid JSON: unexpected '}' in the array");
    expect_error("c.json", "[{\"conversations\": [{\"from\": \"h\xff\", \"value\": \"q\"}]}]",
                 ":1: entry 0: invalid JSON: invalid utf-8 string");
    expect_error("c.json", "[\"abc", ":1: entry 0: invalid JSON: unexpected end of file");
}

Test(captions, malformed_jsonl)
{
    const char *item = "{\"conversations\": [{\"from\": \"human\", \"value\": \"q\"}]}";
    char buf[1024];
    snprintf(buf, sizeof buf, "%s\n\n%s\n", item, item);
    expect_error("c.jsonl", buf, ":2: entry 1: empty line (JSON Lines needs one object per line)");
    snprintf(buf, sizeof buf, "%s\n%s\n   \n", item, item);
    expect_error("c.jsonl", buf, ":3: entry 2: empty line (JSON Lines needs one object per line)");
    snprintf(buf, sizeof buf, "%s\n%s\n[1]\n", item, item);
    expect_error("c.jsonl", buf, ":3: entry 2: expected an object, got a list");
    snprintf(buf, sizeof buf, "%s\r\n{\"image\": \"a.jpg\"}\r\n", item);
    expect_error("c.jsonl", buf, ":2: entry 1: missing field \"conversations\"");
    snprintf(buf, sizeof buf, "%s\n{\"conversations\": [}\n", item);
    expect_error("c.jsonl", buf, ":2: entry 1: invalid JSON: unexpected character");
    snprintf(buf, sizeof buf, "%s %s\n", item, item);
    expect_error("c.jsonl", buf, ":1: entry 0: invalid JSON: unexpected character");
    snprintf(buf, sizeof buf, "%s\n\n{\"conversations\": [{\"from\": \"human\", \"value\": \"q\"}]} \"x\"\n", item);
    expect_error("c.jsonl", buf, ":2: entry 1: empty line (JSON Lines needs one object per line)");
    expect_error("c.jsonl", "42\n", ":1: entry 0: expected an object, got a number");
    /* a final newline does not make an empty last line */
    qv_caption_file f;
    snprintf(buf, sizeof buf, "%s\n%s\n", item, item);
    cr_assert_eq(qv_captions_parse(buf, strlen(buf), "ok.jsonl", &f), QV_OK, "%s", qv_last_error());
    cr_expect_eq(f.n_items, 2);
    qv_captions_free(&f);
}

Test(captions, file_errors)
{
    qv_caption_file f;
    cr_expect_eq(qv_captions_load("/nonexistent/caps.json", &f), QV_ERR_IO);
    cr_expect_str_eq(qv_last_error(), "/nonexistent/caps.json: No such file or directory");
    cr_expect_eq(qv_captions_load("/nonexistent/caps.csv", &f), QV_ERR_INVALID);
    cr_expect_str_eq(qv_last_error(), "/nonexistent/caps.csv: unsupported caption file type (expected .json or .jsonl)");
    char *path = write_tmp("bad.json", "[{\"conversations\": 1}]", 22);
    cr_expect_eq(qv_captions_load(path, &f), QV_ERR_INVALID);
    char want[1024];
    snprintf(want, sizeof want, "%s:1: entry 0: field \"conversations\": expected a list of {\"from\", \"value\"} "
                                "objects, got a number", path);
    cr_expect_str_eq(qv_last_error(), want);
    free(path);
}

/* Mutated and truncated copies of the fixture: parse returns OK or one error line. */
Test(captions, mutated_input_is_refused_cleanly, .timeout = 120)
{
    char *base;
    size_t len;
    cr_assert_eq(qv_read_file(qt_fixture(k_fixture), 1 << 20, &base, &len), QV_OK);
    static const char subst[] = {'[', ']', '{', '}', '"', '\\', ',', ':', '\n', 0, '\xc3', '\xff', '0', ' '};
    char *buf = malloc(len);
    unsigned seed = 777;
    for (int mode = 0; mode < 2; mode++) {
        const char *name = mode ? "m.jsonl" : "m.json";
        for (size_t cut = 0; cut <= len; cut += 3) {
            qv_caption_file f;
            if (qv_captions_parse(base, cut, name, &f) == QV_OK)
                qv_captions_free(&f);
            else
                cr_expect_null(strchr(qv_last_error(), '\n'));
        }
        for (int iter = 0; iter < 2000; iter++) {
            memcpy(buf, base, len);
            for (int k = 0; k < 2; k++) {
                seed = seed * 1103515245u + 12345u;
                size_t at = (seed >> 8) % len;
                seed = seed * 1103515245u + 12345u;
                buf[at] = subst[(seed >> 8) % sizeof subst];
            }
            qv_caption_file f;
            if (qv_captions_parse(buf, len, name, &f) == QV_OK)
                qv_captions_free(&f);
            else
                cr_expect_null(strchr(qv_last_error(), '\n'));
        }
    }
    free(buf);
    qv_free(base);
}
