/* Safetensors files: the checkpoint format shared with PyTorch, NumPy and the
 * Hugging Face tools.
 *
 * A file is an 8-byte little-endian header length, a JSON header mapping
 * tensor names to {dtype, shape, data_offsets} (plus an optional
 * "__metadata__" object of string pairs, where gtrt keeps the model
 * configuration) and the raw little-endian tensor bytes. Files come from disk
 * and from the network, so reading is strict: the header size is capped, the
 * JSON must be well formed, every offset must lie inside the file, tensors
 * must tile the data region with no overlap and no hole, and byte counts must
 * match dtype and shape. Every error message names the file and the problem.
 * Writing is atomic: a temporary file in the same folder, fsync, rename. */
#ifndef GTRT_SAFETENSORS_H
#define GTRT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define ST_MAX_DIMS 8
/* Largest JSON header accepted (the reference implementation uses 100 MB;
 * gtrt's headers are a few kB, so 16 MiB leaves a wide margin). */
#define ST_MAX_HEADER ((uint64_t)16 << 20)

typedef enum st_dtype {
    ST_F32, ST_F16, ST_BF16, ST_F64, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL,
    ST_NDTYPE
} st_dtype;

typedef struct st_tensor {
    const char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t nbytes;
    const uint8_t *data; /* inside the st_file's buffer; unaligned */
} st_tensor;

typedef struct st_file st_file;

/* Read and validate a whole file. */
int st_open(const char *path, st_file **out, err *e);
/* Validate bytes already in memory (copied); `name` appears in errors. */
int st_open_buffer(const void *buf, size_t n, const char *name, st_file **out, err *e);
/* The same without the copy: `buf` is only read and must outlive the
 * st_file (loading a checkpoint that is already in memory). */
int st_open_view(const void *buf, size_t n, const char *name, st_file **out, err *e);
void st_close(st_file *f);

const char *st_name(const st_file *f);
int st_count(const st_file *f);
/* Tensors in file order (by data offset). */
const st_tensor *st_get(const st_file *f, int i);
const st_tensor *st_find(const st_file *f, const char *name);
/* Value of a __metadata__ key, or NULL. */
const char *st_meta(const st_file *f, const char *key);

/* Copy tensor `name` into dst as float32, converting from F32, F16, BF16 or
 * F64; fails unless the tensor exists and its shape is exactly `shape`. */
/* 0 when `name` exists with this shape and a float dtype st_read_f32
 * converts; else an error naming the problem. */
int st_check_f32(const st_file *f, const char *name, const int64_t *shape, int ndim, err *e);
int st_read_f32(const st_file *f, const char *name, const int64_t *shape, int ndim,
                float *dst, err *e);

size_t st_dtype_size(st_dtype t);
const char *st_dtype_name(st_dtype t);
float st_f16_to_f32(uint16_t h);
float st_bf16_to_f32(uint16_t h);
uint16_t st_f32_to_bf16(float f);
uint16_t st_f32_to_f16(float f);

/* One tensor to write: `data` holds nbytes = numel * dtype size, little-endian. */
typedef struct st_entry {
    const char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;
} st_entry;

typedef struct st_kv {
    const char *key, *value;
} st_kv;

/* Write tensors (in the given order) and metadata atomically to `path`. */
int st_write(const char *path, const st_entry *t, int n, const st_kv *meta, int n_meta,
             err *e);

#endif
