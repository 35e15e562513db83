/* test_safetensors.c — the safetensors reader's validation (every malformed-header rule of
 * FORMATS.md §1.2), the writer's byte layout (the worked example of FORMATS.md §1.3 must come
 * out byte-identical), round trips through single and sharded files, and the checkpoint index
 * rules (§1.5). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fsutil.h"
#include "io/safetensors.h"
#include "util/testutil.h"

/* A file image: 8-byte length, header text, `data_len` bytes of data. */
static uint8_t *image_of(const char *header, size_t data_len, size_t *len)
{
    size_t n = strlen(header);
    *len = 8 + n + data_len;
    uint8_t *b = calloc(1, *len);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(b + 8, header, n);
    return b;
}

static qv_status parse_text(const char *header, size_t data_len)
{
    size_t len;
    uint8_t *img = image_of(header, data_len, &len);
    qv_st_header h;
    qv_status st = qv_st_parse(img, len, "bad.safetensors", &h);
    if (st == QV_OK)
        qv_st_header_free(&h);
    free(img);
    return st;
}

#define EXPECT_BAD(header, data_len, needle)                                                                      \
    do {                                                                                                          \
        qv_status st_ = parse_text(header, data_len);                                                             \
        cr_assert_neq(st_, QV_OK, "accepted: %s", header);                                                        \
        cr_assert(strstr(qv_last_error(), "bad.safetensors") != NULL, "message lacks file name: %s", qv_last_error()); \
        cr_assert(strstr(qv_last_error(), needle) != NULL, "message '%s' lacks '%s'", qv_last_error(), needle);    \
        cr_assert(strchr(qv_last_error(), '\n') == NULL);                                                         \
    } while (0)

Test(safetensors, accepts_valid_header)
{
    cr_assert_eq(parse_text("{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
                            "\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[8,10]},"
                            "\"e\":{\"dtype\":\"U8\",\"shape\":[0,3],\"data_offsets\":[10,10]}}  ",
                            10),
                 QV_OK, "%s", qv_last_error());
}

Test(safetensors, rejects_each_malformed_header)
{
    const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    cr_assert_eq(parse_text(ok, 8), QV_OK, "%s", qv_last_error());
    EXPECT_BAD(ok, 12, "trailing bytes");
    EXPECT_BAD(ok, 4, "past the end");
    EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "needs 12 bytes");
    EXPECT_BAD("{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown or unsupported dtype");
    EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "non-negative");
    EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "begin");
    EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, "data_offsets");
    EXPECT_BAD("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype");
    EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, "shape");
    EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8, "dimensions");
    EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, "overflow");
    /* overlap, gap, past end */
    EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
               8, "overlaps");
    EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "gap");
    EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "past the end");
    /* JSON-level problems */
    EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
               8, "duplicate key");
    EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, "JSON");
    EXPECT_BAD("[1,2,3]", 0, "not a JSON object");
    EXPECT_BAD("{\"__metadata__\":{\"format\":1}}", 0, "not a string");
    EXPECT_BAD("{\"\xff\xfe\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0, "JSON");
    EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} x", 8, "invalid JSON");
    {
        /* nesting beyond the JSON depth limit */
        char deep[400];
        size_t k = 0;
        deep[k++] = '{';
        memcpy(deep + k, "\"a\":", 4);
        k += 4;
        for (int i = 0; i < 100; i++)
            deep[k++] = '[';
        for (int i = 0; i < 100; i++)
            deep[k++] = ']';
        deep[k++] = '}';
        deep[k] = 0;
        EXPECT_BAD(deep, 0, "JSON");
    }
}

Test(safetensors, rejects_bad_length_prefix)
{
    qv_st_header h;
    uint8_t tiny[5] = {0};
    cr_assert_neq(qv_st_parse(tiny, sizeof tiny, "bad.safetensors", &h), QV_OK);
    cr_assert(strstr(qv_last_error(), "too short"));
    uint8_t past[16] = {200, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    cr_assert_neq(qv_st_parse(past, sizeof past, "bad.safetensors", &h), QV_OK);
    cr_assert(strstr(qv_last_error(), "past the end"), "%s", qv_last_error());
    uint8_t huge[16] = {0, 0, 0, 0, 0, 0, 0, 0x80, '{', '}'};
    cr_assert_neq(qv_st_parse(huge, sizeof huge, "bad.safetensors", &h), QV_OK);
    cr_assert(strstr(qv_last_error(), "limit"), "%s", qv_last_error());
}

/* FORMATS.md §1.3 worked example: the reference writer's exact header and file size. */
Test(safetensors, writer_matches_reference_layout)
{
    char *dir = qt_tmpdir();
    char *path = qv_path_join(dir, "ex.safetensors");
    uint16_t b[3] = {0x3f80, 0x4000, 0x4040};
    int32_t a[2] = {1, -2};
    uint8_t c[1] = {0x38}, z[5] = {1, 2, 3, 4, 5};
    qv_st_item items[] = {
        {"b", QV_BF16, 1, {3}, b},
        {"a", QV_I32, 1, {2}, a},
        {"c", QV_F8_E4M3, 1, {1}, c},
        {"z", QV_U8, 1, {5}, z},
    };
    cr_assert_eq(qv_st_write_file(path, items, 4, NULL, 0), QV_OK, "%s", qv_last_error());
    char *data;
    size_t len;
    cr_assert_eq(qv_read_file(path, 1 << 20, &data, &len), QV_OK);
    cr_assert_eq(len, 284);
    const char *want = "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[8,14]},\"c\":{\"dtype\":\"F8_E4M3\","
                       "\"shape\":[1],\"data_offsets\":[14,15]},\"z\":{\"dtype\":\"U8\",\"shape\":[5],\"data_offsets\":"
                       "[15,20]}}   ";
    cr_assert(data[0] == 0 && data[1] == 1, "header length is not 256");
    for (int i = 2; i < 8; i++)
        cr_assert_eq(data[i], 0);
    cr_assert_eq(memcmp(data + 8, want, 256), 0, "header differs: %.256s", data + 8);
    cr_assert_eq(memcmp(data + 8 + 256, a, 8), 0);
    cr_assert_eq(memcmp(data + 8 + 256 + 8, b, 6), 0);
    cr_assert_eq(memcmp(data + 8 + 256 + 14, c, 1), 0);
    cr_assert_eq(memcmp(data + 8 + 256 + 15, z, 5), 0);
    /* no temporary left behind */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) -eq 1", dir);
    cr_assert_eq(system(cmd), 0, "stray files in %s", dir);
    qv_free(data);
    qv_free(path);
    free(dir);
}

Test(safetensors, round_trip_and_views)
{
    char *dir = qt_tmpdir();
    char *path = qv_path_join(dir, "rt.safetensors");
    float f[6] = {1.5f, -2, 3, 0, 1e-30f, -0.0f};
    int64_t ids[4] = {1, -100, 1LL << 40, 7};
    uint8_t mask[3] = {1, 0, 1};
    qv_st_kv meta[] = {{"note", "round \"trip\""}};
    qv_st_item items[] = {{"f", QV_F32, 2, {2, 3}, f}, {"ids", QV_I64, 2, {2, 2}, ids}, {"m", QV_BOOL, 1, {3}, mask}};
    cr_assert_eq(qv_st_write_file(path, items, 3, meta, 1), QV_OK, "%s", qv_last_error());
    qv_st_file *sf;
    cr_assert_eq(qv_st_open(path, &sf), QV_OK, "%s", qv_last_error());
    qv_tensor t;
    cr_assert_eq(qv_st_get(sf, "f", &t), QV_OK);
    cr_assert_eq(t.ndim, 2);
    cr_assert_eq(t.shape[1], 3);
    cr_assert_eq(memcmp(t.data, f, sizeof f), 0);
    cr_assert_eq(qv_st_get(sf, "ids", &t), QV_OK);
    cr_assert_eq(memcmp(t.data, ids, sizeof ids), 0);
    cr_assert_eq(sf->hdr.n_meta, 2);
    bool found = false;
    for (size_t i = 0; i < sf->hdr.n_meta; i++)
        found |= !strcmp(sf->hdr.meta[i].key, "note") && !strcmp(sf->hdr.meta[i].value, "round \"trip\"");
    cr_assert(found);
    cr_assert_neq(qv_st_get(sf, "missing", &t), QV_OK);
    cr_assert(strstr(qv_last_error(), "missing") && strstr(qv_last_error(), "rt.safetensors"));
    qv_st_close(sf);
    qv_free(path);
    free(dir);
}

Test(safetensors, sharded_writer_round_trip)
{
    char *dir = qt_tmpdir();
    enum { NT = 7 };
    static float data[NT][300];
    qv_st_sharded *w;
    cr_assert_eq(qv_st_sharded_open(&w, dir, "model", 2500), QV_OK);
    for (int i = 0; i < NT; i++) {
        char name[32];
        snprintf(name, sizeof name, "layers.%d.weight", i);
        for (int j = 0; j < 300; j++)
            data[i][j] = (float)(i * 1000 + j);
        int64_t shape[2] = {3, 100};
        cr_assert_eq(qv_st_sharded_add(w, name, QV_F32, 2, shape), QV_OK);
    }
    cr_assert_eq(qv_st_sharded_begin(w), QV_OK, "%s", qv_last_error());
    for (int i = NT - 1; i >= 0; i--) { /* any order, in two parts */
        char name[32];
        snprintf(name, sizeof name, "layers.%d.weight", i);
        cr_assert_eq(qv_st_sharded_put_part(w, name, 600, (char *)data[i] + 600, 600), QV_OK);
        cr_assert_eq(qv_st_sharded_put_part(w, name, 0, data[i], 600), QV_OK);
    }
    cr_assert_eq(qv_st_sharded_finish(w), QV_OK, "%s", qv_last_error());
    /* 1200-byte tensors, 2500-byte limit: two per shard, four shards */
    char *p = qv_path_join(dir, "model-00004-of-00004.safetensors");
    cr_assert(qv_path_exists(p), "expected four shards");
    qv_free(p);
    qv_checkpoint *ck;
    cr_assert_eq(qv_checkpoint_open(dir, &ck), QV_OK, "%s", qv_last_error());
    cr_assert_eq(ck->n, NT);
    cr_assert_eq(ck->n_shards, 4);
    for (int i = 0; i < NT; i++) {
        char name[32];
        qv_tensor t;
        snprintf(name, sizeof name, "layers.%d.weight", i);
        cr_assert_eq(qv_checkpoint_get(ck, name, &t), QV_OK);
        cr_assert_eq(memcmp(t.data, data[i], sizeof data[i]), 0);
    }
    qv_checkpoint_close(ck);
    free(dir);
}

Test(safetensors, writer_refuses_incomplete_tensor)
{
    char *dir = qt_tmpdir();
    char *path = qv_path_join(dir, "x.safetensors");
    qv_st_writer *w;
    int64_t shape[1] = {4};
    float v[4] = {0};
    cr_assert_eq(qv_st_writer_open(&w, path, NULL, 0), QV_OK);
    cr_assert_eq(qv_st_writer_add(w, "t", QV_F32, 1, shape), QV_OK);
    cr_assert_neq(qv_st_writer_add(w, "t", QV_F32, 1, shape), QV_OK);
    cr_assert_eq(qv_st_writer_begin(w), QV_OK);
    cr_assert_eq(qv_st_writer_put_part(w, "t", 0, v, 8), QV_OK);
    cr_assert_neq(qv_st_writer_put_part(w, "t", 12, v, 8), QV_OK);
    cr_assert_neq(qv_st_writer_finish(w), QV_OK);
    cr_assert(!qv_path_exists(path), "a half-written file reached the destination");
    char cmd[512];
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s')\"", dir);
    cr_assert_eq(system(cmd), 0, "temporary left in %s", dir);
    qv_free(path);
    free(dir);
}

Test(safetensors, sharded_fixture_checkpoint)
{
    qv_checkpoint *ck;
    cr_assert_eq(qv_checkpoint_open(qt_fixture("models/internvl2-internlm2-tiny"), &ck), QV_OK, "%s", qv_last_error());
    cr_assert_eq(ck->n_shards, 2);
    cr_assert_eq(ck->n, 62);
    int64_t shape[2] = {256, 128};
    qv_tensor t;
    cr_assert_eq(qv_checkpoint_get_shaped(ck, "language_model.model.layers.0.attention.wqkv.weight", 2, shape, &t),
                 QV_OK, "%s", qv_last_error());
    cr_assert_eq(t.dtype, QV_BF16);
    int64_t wrong[2] = {128, 256};
    cr_assert_neq(qv_checkpoint_get_shaped(ck, "language_model.model.layers.0.attention.wqkv.weight", 2, wrong, &t),
                  QV_OK);
    cr_assert(strstr(qv_last_error(), "has shape [256,128], expected [128,256]"), "%s", qv_last_error());
    qv_checkpoint_close(ck);
}

static char *copy_model(const char *name)
{
    char *dir = qt_tmpdir();
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "cp -r '%s'/. '%s'/ && chmod -R u+w '%s'", qt_fixture(name), dir, dir);
    cr_assert_eq(system(cmd), 0);
    return dir;
}

static void edit_index(const char *dir, const char *sed_expr)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "sed -i '%s' '%s/model.safetensors.index.json'", sed_expr, dir);
    cr_assert_eq(system(cmd), 0);
}

Test(safetensors, index_rules)
{
    qv_checkpoint *ck;
    char *d = copy_model("models/internvl2-internlm2-tiny");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm '%s/model-00002-of-00002.safetensors'", d);
    cr_assert_eq(system(cmd), 0);
    cr_assert_neq(qv_checkpoint_open(d, &ck), QV_OK);
    cr_assert(strstr(qv_last_error(), "listed in the index but missing"), "%s", qv_last_error());
    free(d);

    d = copy_model("models/internvl2-internlm2-tiny");
    edit_index(d, "s#\"language_model.model.norm.weight\": \"model-0000[12]-of-00002.safetensors\"#\"language_model.model.norm.weight\": \"../x.safetensors\"#");
    cr_assert_neq(qv_checkpoint_open(d, &ck), QV_OK);
    cr_assert(strstr(qv_last_error(), "not a file in the folder"), "%s", qv_last_error());
    free(d);

    d = copy_model("models/internvl2-internlm2-tiny");
    edit_index(d, "/\"language_model.model.norm.weight\"/d");
    cr_assert_neq(qv_checkpoint_open(d, &ck), QV_OK);
    cr_assert(strstr(qv_last_error(), "not listed in the index"), "%s", qv_last_error());
    free(d);

    d = copy_model("models/internvl2-internlm2-tiny");
    edit_index(d, "s#\"language_model.output.weight\"#\"language_model.nothing.weight\"#");
    cr_assert_neq(qv_checkpoint_open(d, &ck), QV_OK);
    cr_assert(strstr(qv_last_error(), "does not hold it"), "%s", qv_last_error());
    free(d);
}
