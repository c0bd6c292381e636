/* TensorBoard event files: CRC-32C against published vectors, the TFRecord
 * mask, and event files read back record by record and decoded. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/test_util.h"
#include "common/rng.h"
#include "common/tfevent.h"
#include "tensorboard.pb-c.h"

/* ==== CRC-32C ==== */

Test(tfevent, crc32c_check_value)
{
    cr_expect_eq(tfevent_crc32c("123456789", 9), 0xE3069283u);
    cr_expect_eq(tfevent_crc32c("", 0), 0u);
    cr_expect_eq(tfevent_crc32c("a", 1), 0xC1D04330u);
}

/* The iSCSI test vectors of RFC 3720, appendix B.4. */
Test(tfevent, crc32c_rfc3720_vectors)
{
    uint8_t buf[32];
    memset(buf, 0, sizeof buf);
    cr_expect_eq(tfevent_crc32c(buf, 32), 0x8A9136AAu);
    memset(buf, 0xff, sizeof buf);
    cr_expect_eq(tfevent_crc32c(buf, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    cr_expect_eq(tfevent_crc32c(buf, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)(31 - i);
    cr_expect_eq(tfevent_crc32c(buf, 32), 0x113FDB5Cu);
}

Test(tfevent, crc32c_extends_across_pieces)
{
    const char *s = "The quick brown fox jumps over the lazy dog";
    size_t n = strlen(s);
    int bad = 0;
    for (size_t cut = 0; cut <= n; cut++)
        bad += tfevent_crc32c_extend(tfevent_crc32c(s, cut), s + cut, n - cut) !=
               tfevent_crc32c(s, n);
    cr_expect_eq(bad, 0, "%d of %zu split points disagree", bad, n + 1);
}

Test(tfevent, mask_matches_tfrecord_formula)
{
    cr_expect_eq(tfevent_crc_mask(0xE3069283u), 0xC78AB0E5u);
    cr_expect_eq(tfevent_crc_mask(0), 0xa282ead8u);
    rng r;
    rng_init(&r, 42);
    int bad = 0;
    for (int i = 0; i < 1000; i++) {
        uint32_t c = (uint32_t)rng_u64(&r);
        uint32_t want = ((c >> 15) | (c << 17)) + 0xa282ead8u;
        bad += tfevent_crc_mask(c) != want || tfevent_crc_unmask(want) != c;
    }
    cr_expect_eq(bad, 0, "%d of 1000 masks wrong", bad);
}

Test(tfevent, record_head_encodes_length_and_its_crc)
{
    uint8_t h[TFEVENT_RECORD_HEAD];
    tfevent_record_head(h, 0x0102030405ull);
    const uint8_t len_le[8] = {5, 4, 3, 2, 1, 0, 0, 0};
    cr_expect_arr_eq(h, len_le, 8);
    uint32_t crc = (uint32_t)h[8] | (uint32_t)h[9] << 8 | (uint32_t)h[10] << 16 |
                   (uint32_t)h[11] << 24;
    cr_expect_eq(crc, tfevent_crc_mask(tfevent_crc32c(len_le, 8)));
}

/* ==== event files ==== */


static Tensorboard__Event *read_event(FILE *f)
{
    uint8_t *data;
    size_t len;
    err e = {0};
    int rc = tfevent_record_read(f, 1 << 20, &data, &len, &e);
    cr_assert_eq(rc, 0, "record: %s", e.msg);
    Tensorboard__Event *ev = tensorboard__event__unpack(NULL, len, data);
    free(data);
    cr_assert_not_null(ev, "record is not an Event");
    return ev;
}

Test(tfevent, file_reads_back_as_events)
{
    char *dir = tmpdir();
    tfevent_writer *w;
    err e = {0};
    cr_assert_eq(tfevent_writer_open(dir, 1700000000.5, &w, &e), 0, "%s", e.msg);
    char want_prefix[256];
    snprintf(want_prefix, sizeof want_prefix, "%s/events.out.tfevents.1700000000.", dir);
    cr_expect_eq(strncmp(tfevent_writer_path(w), want_prefix, strlen(want_prefix)), 0, "%s",
                 tfevent_writer_path(w));
    for (int step = 0; step < 5; step++) {
        tfevent_scalar v[3] = {{"train/success_rate", step * 0.25f},
                               {"train/return", -1.0f + (float)step},
                               {"ppo/clip_fraction", 0.0f}};
        cr_assert_eq(tfevent_write_scalars(w, 1700000001.0 + step, step * 100, v, 3, &e), 0);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s", tfevent_writer_path(w));
    tfevent_writer_free(&w);
    cr_expect_null(w);

    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    Tensorboard__Event *ev = read_event(f);
    cr_expect_str_eq(ev->file_version, "brain.Event:2");
    cr_expect_eq(ev->wall_time, 1700000000.5);
    cr_expect_null(ev->summary);
    tensorboard__event__free_unpacked(ev, NULL);
    for (int step = 0; step < 5; step++) {
        ev = read_event(f);
        cr_expect_eq(ev->step, step * 100);
        cr_expect_eq(ev->wall_time, 1700000001.0 + step);
        cr_assert_not_null(ev->summary);
        cr_assert_eq(ev->summary->n_value, 3);
        cr_expect_str_eq(ev->summary->value[0]->tag, "train/success_rate");
        cr_expect_eq(ev->summary->value[0]->simple_value, step * 0.25f);
        cr_expect_str_eq(ev->summary->value[1]->tag, "train/return");
        cr_expect_eq(ev->summary->value[1]->simple_value, -1.0f + (float)step);
        /* TensorBoard needs a zero to be present on the wire. */
        cr_expect(ev->summary->value[2]->has_simple_value);
        tensorboard__event__free_unpacked(ev, NULL);
    }
    uint8_t *data;
    size_t len;
    cr_expect_eq(tfevent_record_read(f, 1 << 20, &data, &len, &e), 1, "clean end of file");
    fclose(f);
    rmtree(dir);
}

Test(tfevent, same_second_gets_a_new_file)
{
    char *dir = tmpdir();
    tfevent_writer *a, *b;
    err e = {0};
    cr_assert_eq(tfevent_writer_open(dir, 1700000000, &a, &e), 0);
    cr_assert_eq(tfevent_writer_open(dir, 1700000000, &b, &e), 0);
    cr_expect_str_neq(tfevent_writer_path(a), tfevent_writer_path(b));
    tfevent_writer_free(&a);
    tfevent_writer_free(&b);
    rmtree(dir);
}

Test(tfevent, open_in_missing_directory_fails)
{
    tfevent_writer *w;
    err e = {0};
    cr_expect_eq(tfevent_writer_open("/nonexistent/gtrt/dir", 1, &w, &e), GTRT_EIO);
    cr_expect_null(w);
    cr_expect(strstr(e.msg, "/nonexistent/gtrt/dir") != NULL, "%s", e.msg);
}

enum { KEEP = -1000 };

/* Write one record, flip one byte at `at` (negative: from the end), or cut
 * the file to `cut` bytes, and expect the reader to reject it. */
static void expect_rejected(long at, long cut)
{
    char *dir = tmpdir();
    tfevent_writer *w;
    err e = {0};
    cr_assert_eq(tfevent_writer_open(dir, 1, &w, &e), 0);
    char path[4096];
    snprintf(path, sizeof path, "%s", tfevent_writer_path(w));
    tfevent_writer_free(&w);
    FILE *f = fopen(path, "r+b");
    cr_assert_not_null(f);
    if (at != KEEP) {
        fseek(f, at, at >= 0 ? SEEK_SET : SEEK_END);
        int c = fgetc(f);
        fseek(f, at, at >= 0 ? SEEK_SET : SEEK_END);
        fputc(c ^ 0x40, f);
    }
    fclose(f);
    if (cut != KEEP)
        cr_assert_eq(truncate(path, cut), 0);
    f = fopen(path, "rb");
    uint8_t *data = NULL;
    size_t len;
    cr_expect_eq(tfevent_record_read(f, 1 << 20, &data, &len, &e), GTRT_EPARSE);
    cr_expect_null(data);
    fclose(f);
    rmtree(dir);
}

Test(tfevent, corrupt_length_is_rejected) { expect_rejected(0, KEEP); }
Test(tfevent, corrupt_length_crc_is_rejected) { expect_rejected(9, KEEP); }
Test(tfevent, corrupt_data_is_rejected) { expect_rejected(TFEVENT_RECORD_HEAD + 2, KEEP); }
Test(tfevent, corrupt_footer_is_rejected) { expect_rejected(-1, KEEP); }
Test(tfevent, truncated_record_is_rejected) { expect_rejected(KEEP, TFEVENT_RECORD_HEAD + 3); }
Test(tfevent, truncated_header_is_rejected) { expect_rejected(KEEP, 5); }

Test(tfevent, oversized_length_is_rejected)
{
    uint8_t rec[TFEVENT_RECORD_HEAD];
    tfevent_record_head(rec, 1ull << 40);
    FILE *f = fmemopen(rec, sizeof rec, "rb");
    uint8_t *data;
    size_t len;
    err e = {0};
    cr_expect_eq(tfevent_record_read(f, 1 << 20, &data, &len, &e), GTRT_EPARSE);
    cr_expect(strstr(e.msg, "limit") != NULL, "%s", e.msg);
    fclose(f);
}
