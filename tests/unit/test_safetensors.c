/* Safetensors: round trips, half-precision conversion, and rejection of every
 * kind of malformed file with a message that names the file. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/safetensors.h"

static char dir[64];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/gtrt_st_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char p[512];
    while (d && (de = readdir(d)))
        if (de->d_name[0] != '.') {
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            unlink(p);
        }
    if (d)
        closedir(d);
    rmdir(dir);
}

TestSuite(safetensors, .init = setup, .fini = teardown);

static int count_files(void)
{
    int n = 0;
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)))
        n += de->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

/* Write a hand-made file: 8-byte length, header text, `data` bytes. */
static void write_raw(const char *path, uint64_t hlen, const char *header, const void *data,
                      size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    for (int i = 0; i < 8; i++)
        fputc((int)((hlen >> (8 * i)) & 0xff), f);
    fwrite(header, 1, strlen(header), f);
    if (n)
        fwrite(data, 1, n, f);
    fclose(f);
}

static void expect_reject(const char *header, size_t data_bytes, int code, const char *needle)
{
    char path[128];
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    unsigned char data[64] = {0};
    cr_assert(data_bytes <= sizeof data);
    write_raw(path, strlen(header), header, data, data_bytes);
    st_file *f = NULL;
    err e = {0};
    int rc = st_open(path, &f, &e);
    cr_expect_eq(rc, code, "header %s: got %d (%s), want %d", header, rc, e.msg, code);
    cr_expect_null(f);
    cr_expect(strstr(e.msg, path) == e.msg, "message does not start with the file: %s", e.msg);
    cr_expect(strstr(e.msg, needle) != NULL, "message \"%s\" lacks \"%s\"", e.msg, needle);
    st_close(f);
}

Test(safetensors, round_trip_with_metadata)
{
    char path[128];
    snprintf(path, sizeof path, "%s/a.safetensors", dir);
    float w[6] = {1, -2, 3.5f, 0, 1e-30f, -7};
    int32_t ids[3] = {7, -1, 1 << 30};
    uint8_t flag[1] = {1};
    st_entry ent[3] = {
        {"blocks.0.attn.qkv.weight", ST_F32, 2, {2, 3}, w},
        {"ids", ST_I32, 1, {3}, ids},
        {"scalar", ST_U8, 0, {0}, flag},
    };
    st_kv meta[2] = {{"format", "test"}, {"quote\"key", "value \\ with \n escapes"}};
    err e = {0};
    cr_assert_eq(st_write(path, ent, 3, meta, 2, &e), 0, "%s", e.msg);
    cr_expect_eq(count_files(), 1, "temporary file left behind");
    st_file *f;
    cr_assert_eq(st_open(path, &f, &e), 0, "%s", e.msg);
    cr_expect_eq(st_count(f), 3);
    cr_expect_str_eq(st_meta(f, "format"), "test");
    cr_expect_str_eq(st_meta(f, "quote\"key"), "value \\ with \n escapes");
    cr_expect_null(st_meta(f, "nope"));
    const st_tensor *t = st_find(f, "ids");
    cr_assert_not_null(t);
    cr_expect_eq(t->dtype, ST_I32);
    cr_expect_eq(memcmp(t->data, ids, sizeof ids), 0);
    cr_expect_eq(st_find(f, "scalar")->ndim, 0);
    float back[6];
    int64_t shape[2] = {2, 3};
    cr_assert_eq(st_read_f32(f, "blocks.0.attn.qkv.weight", shape, 2, back, &e), 0, "%s", e.msg);
    cr_expect_eq(memcmp(back, w, sizeof w), 0);
    /* wrong shape, wrong dtype, missing tensor */
    int64_t wrong[2] = {3, 2};
    cr_expect_eq(st_read_f32(f, "blocks.0.attn.qkv.weight", wrong, 2, back, &e), GTRT_EINVAL);
    cr_expect(strstr(e.msg, "shape [2, 3], expected [3, 2]") != NULL, "%s", e.msg);
    int64_t s3[1] = {3};
    cr_expect_eq(st_read_f32(f, "ids", s3, 1, back, &e), GTRT_EINVAL);
    cr_expect_eq(st_read_f32(f, "absent", s3, 1, back, &e), GTRT_ENOTFOUND);
    cr_expect(strstr(e.msg, "absent") != NULL);
    st_close(f);
    /* Rewriting replaces the file atomically. */
    cr_assert_eq(st_write(path, ent + 1, 1, NULL, 0, &e), 0, "%s", e.msg);
    cr_assert_eq(st_open(path, &f, &e), 0, "%s", e.msg);
    cr_expect_eq(st_count(f), 1);
    st_close(f);
    cr_expect_eq(count_files(), 1);
}

Test(safetensors, half_precision_is_read_and_converted)
{
    /* every finite f16 value survives f16 -> f32 -> f16 */
    /* (one assertion at the end: Criterion reports every assertion) */
    int bad = 0;
    uint32_t first_bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = st_f16_to_f32((uint16_t)h);
        if (!isnan(f) && st_f32_to_f16(f) != h && !bad++)
            first_bad = h;
    }
    cr_assert_eq(bad, 0, "%d f16 values do not round-trip, first %04x", bad, first_bad);
    cr_expect_eq(st_f16_to_f32(0x3c00), 1.0f);
    cr_expect_eq(st_f16_to_f32(0xc000), -2.0f);
    cr_expect_eq(st_f16_to_f32(0x0001), 0x1p-24f);
    cr_expect(isinf(st_f16_to_f32(0x7c00)));
    cr_expect_eq(st_bf16_to_f32(0x3f80), 1.0f);
    cr_expect_eq(st_f32_to_bf16(1.0f + 0x1p-9f), 0x3f80); /* ties to even */
    cr_expect_eq(st_f32_to_bf16(3.140625f), 0x4049);

    char path[128];
    snprintf(path, sizeof path, "%s/h.safetensors", dir);
    float vals[4] = {0.5f, -3.0f, 65504.0f, 1.0f / 1024};
    uint16_t h16[4], b16[4];
    for (int i = 0; i < 4; i++) {
        h16[i] = st_f32_to_f16(vals[i]);
        b16[i] = st_f32_to_bf16(vals[i]);
    }
    st_entry ent[2] = {{"h", ST_F16, 1, {4}, h16}, {"b", ST_BF16, 2, {2, 2}, b16}};
    err e = {0};
    cr_assert_eq(st_write(path, ent, 2, NULL, 0, &e), 0, "%s", e.msg);
    st_file *f;
    cr_assert_eq(st_open(path, &f, &e), 0, "%s", e.msg);
    float out[4];
    int64_t s1[1] = {4}, s2[2] = {2, 2};
    cr_assert_eq(st_read_f32(f, "h", s1, 1, out, &e), 0, "%s", e.msg);
    for (int i = 0; i < 4; i++)
        cr_expect_eq(out[i], vals[i]);
    cr_assert_eq(st_read_f32(f, "b", s2, 2, out, &e), 0, "%s", e.msg);
    for (int i = 0; i < 4; i++)
        cr_expect_float_eq(out[i], vals[i], fabsf(vals[i]) * 1e-2f);
    st_close(f);
}

Test(safetensors, accepts_what_python_writes)
{
    /* As written by the reference implementation: metadata, padding spaces,
     * tensors listed out of offset order. */
    const char *h = "{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                    "\"__metadata__\":{\"format\":\"pt\"},"
                    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}   ";
    float data[2] = {1.0f, 2.0f};
    char path[128];
    snprintf(path, sizeof path, "%s/py.safetensors", dir);
    write_raw(path, strlen(h), h, data, sizeof data);
    st_file *f;
    err e = {0};
    cr_assert_eq(st_open(path, &f, &e), 0, "%s", e.msg);
    cr_expect_str_eq(st_get(f, 0)->name, "a");
    float x;
    int64_t s[1] = {1};
    cr_assert_eq(st_read_f32(f, "b", s, 1, &x, &e), 0);
    cr_expect_eq(x, 2.0f);
    st_close(f);
}

Test(safetensors, rejects_truncated_file)
{
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 12,
                  GTRT_EPARSE, "truncated");
}

Test(safetensors, rejects_short_file_and_header_past_end)
{
    char path[128];
    snprintf(path, sizeof path, "%s/s.safetensors", dir);
    FILE *fp = fopen(path, "wb");
    fwrite("\x02\0\0", 1, 3, fp);
    fclose(fp);
    st_file *f;
    err e = {0};
    cr_expect_eq(st_open(path, &f, &e), GTRT_EPARSE);
    cr_expect(strstr(e.msg, "too short") != NULL, "%s", e.msg);
    write_raw(path, 100, "{}", NULL, 0);
    cr_expect_eq(st_open(path, &f, &e), GTRT_EPARSE);
    cr_expect(strstr(e.msg, "does not fit") != NULL, "%s", e.msg);
}

Test(safetensors, rejects_huge_header_length)
{
    char path[128];
    snprintf(path, sizeof path, "%s/huge.safetensors", dir);
    write_raw(path, (uint64_t)1 << 62, "{}", NULL, 0);
    st_file *f;
    err e = {0};
    cr_expect_eq(st_open(path, &f, &e), GTRT_ERANGE);
    cr_expect(strstr(e.msg, "limit") != NULL, "%s", e.msg);
    cr_expect(strstr(e.msg, path) == e.msg, "%s", e.msg);
}

Test(safetensors, rejects_bad_json)
{
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4,
                  GTRT_EPARSE, "JSON");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", 4,
                  GTRT_EPARSE, "garbage");
    expect_reject("[1, 2]", 0, GTRT_EPARSE, "not a JSON object");
    expect_reject("{\"a\": 3}", 0, GTRT_EPARSE, "not a JSON object");
}

Test(safetensors, rejects_bad_entries)
{
    expect_reject("{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                  GTRT_EPARSE, "dtype");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
                  GTRT_EPARSE, "dimension");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4,
                  GTRT_EPARSE, "dimension");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4,
                  GTRT_EPARSE, "data_offsets");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4,
                  GTRT_EPARSE, "data_offsets");
    /* byte count disagrees with dtype x shape (a wrong shape) */
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", 12,
                  GTRT_EPARSE, "need 16");
    expect_reject("{\"__metadata__\":{\"k\":1}}", 0, GTRT_EPARSE, "not a string");
}

Test(safetensors, rejects_offsets_out_of_range)
{
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[1000,1004]}}", 8,
                  GTRT_EPARSE, "beyond");
}

Test(safetensors, rejects_overlaps_holes_and_trailing_bytes)
{
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                  8, GTRT_EPARSE, "overlaps");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
                  12, GTRT_EPARSE, "hole");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
                  GTRT_EPARSE, "trailing");
    expect_reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                  "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                  8, GTRT_EPARSE, "twice");
}

Test(safetensors, write_failures_are_reported)
{
    float x = 1;
    st_entry ent[2] = {{"x", ST_F32, 1, {1}, &x}, {"x", ST_F32, 1, {1}, &x}};
    err e = {0};
    cr_expect_eq(st_write("/nonexistent-dir/x.safetensors", ent, 1, NULL, 0, &e), GTRT_EIO);
    cr_expect(strstr(e.msg, "/nonexistent-dir/x.safetensors") == e.msg, "%s", e.msg);
    char path[128];
    snprintf(path, sizeof path, "%s/d.safetensors", dir);
    cr_expect_eq(st_write(path, ent, 2, NULL, 0, &e), GTRT_EINVAL);
    cr_expect_eq(count_files(), 0);
}

Test(safetensors, fuzzed_headers_never_crash)
{
    /* Random byte flips in a valid file: either it still validates or it is
     * rejected with an error; never a crash (run under ASan in CI). */
    char path[128];
    snprintf(path, sizeof path, "%s/f.safetensors", dir);
    float w[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    st_entry ent[2] = {{"w", ST_F32, 2, {2, 2}, w}, {"v", ST_F32, 1, {4}, w + 4}};
    st_kv meta[1] = {{"k", "v"}};
    err e = {0};
    cr_assert_eq(st_write(path, ent, 2, meta, 1, &e), 0);
    FILE *fp = fopen(path, "rb");
    unsigned char buf[512];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    uint64_t s = 12345;
    int inconsistent = 0, accepted = 0;
    for (int it = 0; it < 3000; it++) {
        unsigned char copy[512];
        memcpy(copy, buf, n);
        for (int k = 0; k < 3; k++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)(s >> 33) % n;
            copy[at] = (unsigned char)(s >> 13);
        }
        st_file *f = NULL;
        size_t len = (size_t)(s >> 40) % 8 == 0 ? (size_t)(s >> 20) % n : n;
        int rc = st_open_buffer(copy, len, "fuzz", &f, &e);
        inconsistent += (rc == 0) != (f != NULL);
        if (f) {
            /* whatever validated must lie inside the bytes given */
            size_t total = 0;
            for (int i = 0; i < st_count(f); i++)
                total += st_get(f, i)->nbytes;
            inconsistent += total > len;
            accepted++;
            st_close(f);
        }
    }
    cr_expect_eq(inconsistent, 0);
    cr_expect(accepted > 0 && accepted < 3000, "%d of 3000 mutants accepted", accepted);
}
