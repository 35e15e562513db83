/* test_export_torchpt.c — torch.save files: our writer's archive layout (records in torch 2.x
 * order, data 64-byte aligned, CRC-32 valid, protocol-2 pickle), write -> read round trips of
 * every value kind and dtype, a file pickled by CPython's own Pickler with torch's persistent-id
 * and _rebuild_tensor_v2 conventions (goldens/export/pickled_by_python.pt, made by
 * scripts/make_torch_like_pt.py: shared storages, an offset view, a strided [2,3,1] view), and
 * refusal of anything that is not plain data. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fsutil.h"
#include "fp.h"
#include "io/torchpt.h"
#include "io/zipstore.h"
#include "util/testutil.h"

static char *tmpfile_path(const char *name)
{
    char *d = qt_tmpdir(), *p = qv_path_join(d, name);
    free(d);
    return p;
}

Test(torchpt, round_trip_every_kind)
{
    qv_pt *doc;
    cr_assert_eq(qv_pt_new(&doc), QV_OK);
    qv_pt_value *root = qv_pt_dict(doc), *list = qv_pt_seq(doc, QV_PT_LIST), *tup = qv_pt_seq(doc, QV_PT_TUPLE);
    float f[6] = {1.5f, -2.0f, 0.25f, 3.0f, -0.125f, 1e-3f};
    uint16_t bf[3] = {0x3f80, 0xc000, 0x3e80};
    int64_t i64[2] = {-7, 1LL << 40};
    uint8_t bo[3] = {1, 0, 1};
    int64_t s23[2] = {2, 3}, s3 = 3, s2 = 2;
    cr_assert_eq(qv_pt_append(tup, qv_pt_str(doc, "prev")), QV_OK);
    cr_assert_eq(qv_pt_append(tup, qv_pt_tensor(doc, QV_F32, 2, s23, f)), QV_OK);
    cr_assert_eq(qv_pt_append(tup, qv_pt_tensor(doc, QV_BF16, 1, &s3, bf)), QV_OK);
    cr_assert_eq(qv_pt_append(tup, qv_pt_tensor(doc, QV_I64, 1, &s2, i64)), QV_OK);
    cr_assert_eq(qv_pt_append(tup, qv_pt_tensor(doc, QV_BOOL, 1, &s3, bo)), QV_OK);
    cr_assert_eq(qv_pt_append(list, tup), QV_OK);
    for (int k = 0; k < 1100; k++) /* more than one APPENDS batch */
        cr_assert_eq(qv_pt_append(list, qv_pt_int(doc, k * 1000 - 500000)), QV_OK);
    cr_assert_eq(qv_pt_set(root, qv_pt_str(doc, "list"), list), QV_OK);
    cr_assert_eq(qv_pt_set(root, qv_pt_str(doc, "pi"), qv_pt_float(doc, 3.25)), QV_OK);
    cr_assert_eq(qv_pt_set(root, qv_pt_str(doc, "none"), qv_pt_none(doc)), QV_OK);
    cr_assert_eq(qv_pt_set(root, qv_pt_str(doc, "yes"), qv_pt_bool(doc, true)), QV_OK);
    cr_assert_eq(qv_pt_set(root, qv_pt_str(doc, "big"), qv_pt_int(doc, -(1LL << 50))), QV_OK);
    cr_assert_eq(qv_pt_set(root, qv_pt_str(doc, "empty"), qv_pt_seq(doc, QV_PT_TUPLE)), QV_OK);
    char *path = tmpfile_path("rt.pt");
    cr_assert_eq(qv_pt_save(path, root), QV_OK, "%s", qv_last_error());
    qv_pt_free(doc);

    cr_assert_eq(qv_pt_load(path, &doc), QV_OK, "%s", qv_last_error());
    const qv_pt_value *r = qv_pt_root(doc), *l = qv_pt_get(r, "list");
    cr_assert_not_null(l);
    cr_assert_eq(l->kind, QV_PT_LIST);
    cr_assert_eq(l->len, 1101);
    for (int k = 0; k < 1100; k++)
        cr_assert_eq(l->items[k + 1]->i, k * 1000 - 500000);
    const qv_pt_value *t = l->items[0];
    cr_assert_eq(t->kind, QV_PT_TUPLE);
    cr_assert_eq(t->len, 5);
    cr_assert_str_eq(t->items[0]->s, "prev");
    cr_assert_eq(t->items[1]->t.dtype, QV_F32);
    cr_assert_eq(t->items[1]->t.ndim, 2);
    cr_assert_eq(t->items[1]->t.shape[1], 3);
    cr_assert_arr_eq(t->items[1]->t.data, f, sizeof f);
    cr_assert_eq(t->items[2]->t.dtype, QV_BF16);
    cr_assert_arr_eq(t->items[2]->t.data, bf, sizeof bf);
    cr_assert_arr_eq(t->items[3]->t.data, i64, sizeof i64);
    cr_assert_arr_eq(t->items[4]->t.data, bo, sizeof bo);
    cr_assert_eq(qv_pt_get(r, "pi")->f, 3.25);
    cr_assert_eq(qv_pt_get(r, "none")->kind, QV_PT_NONE);
    cr_assert_eq(qv_pt_get(r, "yes")->i, 1);
    cr_assert_eq(qv_pt_get(r, "big")->i, -(1LL << 50));
    cr_assert_eq(qv_pt_get(r, "empty")->len, 0);
    qv_pt_free(doc);
    free(path);
}

Test(torchpt, archive_layout_as_torch_writes_it)
{
    qv_pt *doc;
    cr_assert_eq(qv_pt_new(&doc), QV_OK);
    qv_pt_value *root = qv_pt_dict(doc), *lst = qv_pt_seq(doc, QV_PT_LIST);
    float a[5] = {1, 2, 3, 4, 5};
    int64_t n5 = 5, n1 = 1;
    cr_assert_eq(qv_pt_append(lst, qv_pt_tensor(doc, QV_F32, 1, &n5, a)), QV_OK);
    cr_assert_eq(qv_pt_append(lst, qv_pt_tensor(doc, QV_F32, 1, &n1, a)), QV_OK);
    cr_assert_eq(qv_pt_set(root, qv_pt_str(doc, "scale"), lst), QV_OK);
    char *path = tmpfile_path("layout.pt");
    cr_assert_eq(qv_pt_save(path, root), QV_OK, "%s", qv_last_error());
    qv_pt_free(doc);

    qv_zip *z;
    cr_assert_eq(qv_zip_open(path, &z), QV_OK, "%s", qv_last_error());
    static const char *order[] = {"archive/data.pkl",  "archive/.format_version", "archive/.storage_alignment",
                                  "archive/byteorder", "archive/data/0",          "archive/data/1",
                                  "archive/version",   "archive/.data/serialization_id"};
    cr_assert_eq(z->n, QV_ARRAY_LEN(order));
    char *file;
    size_t flen;
    cr_assert_eq(qv_read_file(path, 1 << 20, &file, &flen), QV_OK);
    for (size_t i = 0; i < z->n; i++) {
        cr_assert_str_eq(z->entries[i].name, order[i]);
        size_t off = (size_t)(z->entries[i].data - z->map);
        cr_assert_eq(off % 64, 0, "%s at %zu", order[i], off);
    }
    const qv_zip_entry *e = qv_zip_find(z, "archive/.format_version");
    cr_assert_eq(e->size, 1);
    cr_assert_eq(e->data[0], '1');
    e = qv_zip_find(z, "archive/version");
    cr_assert_eq(e->size, 2);
    cr_assert(!memcmp(e->data, "3\n", 2));
    e = qv_zip_find(z, "archive/byteorder");
    cr_assert(e->size == 6 && !memcmp(e->data, "little", 6));
    e = qv_zip_find(z, "archive/data/0");
    cr_assert_eq(e->size, 20);
    cr_assert(!memcmp(e->data, a, 20));
    e = qv_zip_find(z, "archive/data.pkl");
    cr_assert(e->data[0] == 0x80 && e->data[1] == 0x02, "protocol 2");
    cr_assert_eq(e->data[e->size - 1], '.', "STOP");
    cr_assert(memmem(e->data, e->size, "ctorch._utils\n_rebuild_tensor_v2\n", 33), "tensor reduce global");
    cr_assert(memmem(e->data, e->size, "ctorch\nFloatStorage\n", 20), "storage class global");
    cr_assert(memmem(e->data, e->size, "ccollections\nOrderedDict\n", 25), "backward hooks");
    /* central-directory CRCs: recompute from the data */
    const uint8_t *fb = (const uint8_t *)file;
    for (size_t i = 0; i + 46 <= flen; i++) {
        if (!(fb[i] == 'P' && fb[i + 1] == 'K' && fb[i + 2] == 1 && fb[i + 3] == 2))
            continue;
        uint32_t crc = (uint32_t)fb[i + 16] | ((uint32_t)fb[i + 17] << 8) | ((uint32_t)fb[i + 18] << 16) |
                       ((uint32_t)fb[i + 19] << 24);
        size_t nl = (size_t)(fb[i + 28] | (fb[i + 29] << 8));
        char name[128] = {0};
        memcpy(name, fb + i + 46, nl < 127 ? nl : 127);
        const qv_zip_entry *ze = qv_zip_find(z, name);
        cr_assert_not_null(ze, "%s", name);
        cr_assert_eq(crc, qv_crc32(0, ze->data, ze->size), "crc of %s", name);
    }
    qv_free(file);
    qv_zip_close(z);
    free(path);
}

Test(torchpt, reads_cpython_pickled_file)
{
    qv_pt *doc;
    cr_assert_eq(qv_pt_load(qt_fixture("goldens/export/pickled_by_python.pt"), &doc), QV_OK, "%s", qv_last_error());
    const qv_pt_value *r = qv_pt_root(doc), *sc = qv_pt_get(r, "scale"), *cl = qv_pt_get(r, "clip");
    cr_assert_not_null(sc);
    cr_assert_eq(sc->len, 2);
    const qv_pt_value *e0 = sc->items[0], *e1 = sc->items[1];
    cr_assert_str_eq(e0->items[0]->s, "model.layers.0.input_layernorm");
    cr_assert_eq(e0->items[1]->len, 2);
    cr_assert_str_eq(e0->items[1]->items[1]->s, "model.layers.0.self_attn.k_proj");
    const qv_tensor *t0 = &e0->items[2]->t;
    cr_assert_eq(t0->dtype, QV_BF16);
    float v0[4];
    qv_convert(v0, QV_F32, t0->data, t0->dtype, 4);
    cr_assert(v0[0] == 1.0f && v0[1] == 2.0f && v0[2] == -1.0f && v0[3] == 0.25f);
    /* a view at storage offset 2 of a shared float storage */
    const qv_tensor *t1 = &e1->items[2]->t;
    cr_assert_eq(t1->shape[0], 3);
    cr_assert(((float *)t1->data)[0] == 0.5f && ((float *)t1->data)[1] == 0.75f && ((float *)t1->data)[2] == 1.0f);
    /* strided [2,3,1] view (strides 1,2,1) of the same storage */
    const qv_tensor *c = &cl->items[0]->items[1]->t;
    cr_assert_eq(c->ndim, 3);
    const float want[6] = {0, 0.5f, 1.0f, 0.25f, 0.75f, 1.25f};
    cr_assert_arr_eq(c->data, want, sizeof want);
    cr_assert_eq(qv_pt_get(r, "step")->i, 70000);
    cr_assert_eq(qv_pt_get(r, "neg")->i, -5);
    cr_assert_eq(qv_pt_get(r, "big")->i, 1LL << 40);
    cr_assert_eq(qv_pt_get(r, "f")->f, 1.5);
    cr_assert_eq(qv_pt_get(r, "t")->kind, QV_PT_BOOL);
    qv_pt_free(doc);
}

/* An archive whose data.pkl is `pkl` (and one storage of 4 floats). */
static char *archive(const void *pkl, size_t n, bool compressed_flag)
{
    qv_zip_writer z;
    qv_zip_writer_init(&z);
    float four[4] = {1, 2, 3, 4};
    cr_assert_eq(qv_zip_writer_add(&z, "a/data.pkl", pkl, n), QV_OK);
    cr_assert_eq(qv_zip_writer_add(&z, "a/data/0", four, sizeof four), QV_OK);
    if (compressed_flag)
        z.buf[8] = 8; /* method 8 in the first local header; the central directory is patched below */
    char *path = tmpfile_path("bad.pt");
    cr_assert_eq(qv_zip_writer_finish(&z, path), QV_OK);
    if (compressed_flag) { /* patch the central directory entry of data.pkl too */
        char *d;
        size_t len;
        cr_assert_eq(qv_read_file(path, 1 << 20, &d, &len), QV_OK);
        for (size_t i = 0; i + 4 < len; i++)
            if (d[i] == 'P' && d[i + 1] == 'K' && d[i + 2] == 1 && d[i + 3] == 2) {
                d[i + 10] = 8;
                break;
            }
        cr_assert_eq(qv_write_file_atomic(path, d, len), QV_OK);
        qv_free(d);
    }
    qv_zip_writer_free(&z);
    return path;
}

static void expect_fail(const char *path, qv_status want, const char *needle)
{
    qv_pt *doc = NULL;
    qv_status st = qv_pt_load(path, &doc);
    cr_assert_eq(st, want, "status %d, message: %s", st, qv_last_error());
    cr_assert(strstr(qv_last_error(), needle) != NULL, "message: %s", qv_last_error());
    cr_assert(strstr(qv_last_error(), path) == qv_last_error(), "names the file first: %s", qv_last_error());
    cr_assert_null(doc);
}

Test(torchpt, refuses_code_and_bad_files)
{
    /* posix.system("echo") — what a malicious pickle does */
    static const char evil[] = "\x80\x02" "cposix\nsystem\n" "X\x04\x00\x00\x00" "echo" "\x85R.";
    char *p = archive(evil, sizeof evil - 1, false);
    expect_fail(p, QV_ERR_UNSUPPORTED, "posix.system");
    free(p);
    /* a truncated pickle */
    static const char trunc[] = "\x80\x02}q\x00(X\x05\x00\x00\x00sca";
    p = archive(trunc, sizeof trunc - 1, false);
    expect_fail(p, QV_ERR_FORMAT, "truncated");
    free(p);
    /* a storage reference to a missing record */
    static const char miss[] = "\x80\x02" "(X\x07\x00\x00\x00storage" "ctorch\nFloatStorage\n" "X\x01\x00\x00\x00" "7"
                               "X\x03\x00\x00\x00" "cpu" "K\x04tQ.";
    p = archive(miss, sizeof miss - 1, false);
    expect_fail(p, QV_ERR_FORMAT, "data/7");
    free(p);
    /* a compressed data.pkl */
    static const char ok[] = "\x80\x02N.";
    p = archive(ok, sizeof ok - 1, true);
    expect_fail(p, QV_ERR_UNSUPPORTED, "compressed");
    free(p);
    /* the legacy (pre-1.6) format starts with a pickle, not a zip */
    p = tmpfile_path("legacy.pt");
    static const char legacy[] = "\x80\x02\x8a\x0alegacy";
    cr_assert_eq(qv_write_file_atomic(p, legacy, sizeof legacy - 1), QV_OK);
    expect_fail(p, QV_ERR_UNSUPPORTED, "legacy");
    free(p);
    /* not a zip at all */
    p = tmpfile_path("junk.pt");
    cr_assert_eq(qv_write_file_atomic(p, "hello world, no zip here", 24), QV_OK);
    expect_fail(p, QV_ERR_FORMAT, "not a zip");
    free(p);
}

Test(torchpt, every_truncation_fails_cleanly)
{
    /* a valid file cut at every length: never a crash, always an error naming it */
    qv_pt *doc;
    cr_assert_eq(qv_pt_new(&doc), QV_OK);
    qv_pt_value *root = qv_pt_dict(doc);
    float a[3] = {1, 2, 3};
    int64_t n = 3;
    cr_assert_eq(qv_pt_set(root, qv_pt_str(doc, "s"), qv_pt_tensor(doc, QV_F32, 1, &n, a)), QV_OK);
    char *path = tmpfile_path("cut.pt");
    cr_assert_eq(qv_pt_save(path, root), QV_OK);
    qv_pt_free(doc);
    char *d;
    size_t len;
    cr_assert_eq(qv_read_file(path, 1 << 20, &d, &len), QV_OK);
    for (size_t cut = 0; cut < len; cut++) {
        qv_pt *out = NULL;
        qv_status st = qv_pt_load_mem((const uint8_t *)d, cut, "cut", &out);
        cr_assert_neq(st, QV_OK, "cut at %zu accepted", cut);
        cr_assert_null(out);
    }
    qv_pt *out;
    cr_assert_eq(qv_pt_load_mem((const uint8_t *)d, len, "whole", &out), QV_OK);
    qv_pt_free(out);
    qv_free(d);
    free(path);
}
