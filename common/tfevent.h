/* TensorBoard event files, written without TensorFlow.
 *
 * An event file is a sequence of TFRecords (little-endian uint64 length,
 * masked CRC-32C of those 8 bytes, the data, masked CRC-32C of the data)
 * whose data are serialized tensorboard.Event protobufs (proto/tensorboard.proto).
 * The first record names the format ("brain.Event:2"); each later record holds
 * one step's scalars. `tensorboard --logdir RUN_DIR` finds the files by name
 * (events.out.tfevents.<unix-seconds>.<host>). Each record goes to the file in
 * one write(2), so a crash loses at most the record being written, and a
 * reader that is following the file never sees a record's head without its
 * tail for long. The reader half (tfevent_record_read) exists for tests and
 * tools that check what was written. */
#ifndef GTRT_TFEVENT_H
#define GTRT_TFEVENT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/err.h"

/* ==== CRC-32C (Castagnoli), as TFRecord uses it ==== */

/* CRC-32C of `n` bytes; crc32c("123456789") == 0xE3069283. */
uint32_t tfevent_crc32c(const void *data, size_t n);
/* Continue a CRC: tfevent_crc32c_extend(tfevent_crc32c(a), b) == crc32c(a||b). */
uint32_t tfevent_crc32c_extend(uint32_t crc, const void *data, size_t n);
/* TFRecord stores CRCs masked, ((crc >> 15) | (crc << 17)) + 0xa282ead8,
 * because a CRC of data that itself embeds CRCs is weak. */
uint32_t tfevent_crc_mask(uint32_t crc);
uint32_t tfevent_crc_unmask(uint32_t masked);

/* ==== TFRecord framing ==== */

enum { TFEVENT_RECORD_HEAD = 12, TFEVENT_RECORD_FOOT = 4 };

/* The 12 bytes before a record of `len` data bytes, and the 4 after it. */
void tfevent_record_head(uint8_t head[TFEVENT_RECORD_HEAD], uint64_t len);
void tfevent_record_foot(uint8_t foot[TFEVENT_RECORD_FOOT], const void *data, size_t len);

/* Read the next record from `f` into a malloc'd *data (caller frees) of
 * *len bytes. Returns 0 for a record, 1 at a clean end of file, or
 * GTRT_EPARSE for a bad CRC, a truncated record or a length over max_len. */
int tfevent_record_read(FILE *f, size_t max_len, uint8_t **data, size_t *len, err *e);

/* ==== event file writer ==== */

typedef struct tfevent_writer tfevent_writer;

typedef struct tfevent_scalar {
    const char *tag; /* e.g. "train/success_rate"; TensorBoard groups by the part before '/' */
    float value;
} tfevent_scalar;

/* Create a new event file in the existing directory `dir`, named after
 * `wall_time` (seconds since the epoch) and this host, and write the
 * file_version record. Never overwrites: a name already taken gets a
 * ".<pid>[.<n>]" suffix. */
int tfevent_writer_open(const char *dir, double wall_time, tfevent_writer **out, err *e);
/* Path of the file being written. */
const char *tfevent_writer_path(const tfevent_writer *w);
/* Append one Event holding the `n` scalars of `step`. */
int tfevent_write_scalars(tfevent_writer *w, double wall_time, int64_t step,
                          const tfevent_scalar *v, size_t n, err *e);
/* Close the file and free the writer; sets *w to NULL. NULL-safe. */
void tfevent_writer_free(tfevent_writer **w);

#endif
