/* Strict safetensors reader and atomic writer (see safetensors.h). */
#include "common/safetensors.h"

#include <assert.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct st_file {
    char *name;
    uint8_t *buf;
    bool borrowed; /* buf belongs to the caller (st_open_view) */
    size_t size;
    int n;
    st_tensor *t;
    int n_meta;
    char **meta_key, **meta_val;
};

static const struct {
    const char *name;
    size_t size;
} dtypes[ST_NDTYPE] = {
    [ST_F32] = {"F32", 4},  [ST_F16] = {"F16", 2}, [ST_BF16] = {"BF16", 2},
    [ST_F64] = {"F64", 8},  [ST_I64] = {"I64", 8}, [ST_I32] = {"I32", 4},
    [ST_I16] = {"I16", 2},  [ST_I8] = {"I8", 1},   [ST_U8] = {"U8", 1},
    [ST_BOOL] = {"BOOL", 1},
};

size_t st_dtype_size(st_dtype t)
{
    assert(t >= 0 && t < ST_NDTYPE);
    return dtypes[t].size;
}

const char *st_dtype_name(st_dtype t)
{
    assert(t >= 0 && t < ST_NDTYPE);
    return dtypes[t].name;
}

/* ==== half-precision conversions ==== */

float st_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t st_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40); /* keep NaN a NaN */
    u += 0x7fffu + ((u >> 16) & 1);          /* round to nearest even */
    return (uint16_t)(u >> 16);
}

float st_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    int exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    float f;
    if (exp == 0) {
        f = ldexpf((float)man, -24); /* zero or subnormal */
    } else if (exp == 31) {
        f = man ? NAN : INFINITY;
    } else {
        uint32_t u = ((uint32_t)(exp - 15 + 127) << 23) | (man << 13);
        memcpy(&f, &u, 4);
    }
    return sign ? -f : f;
}

uint16_t st_f32_to_f16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    float a = fabsf(f);
    if (isnan(f))
        return sign | 0x7e00;
    if (a >= 65520.0f)
        return sign | 0x7c00;
    if (a < 0x1p-14f) /* subnormal: a multiple of 2^-24, rounded to nearest */
        return sign | (uint16_t)lrintf(a * 0x1p24f);
    uint32_t au;
    memcpy(&au, &a, 4);
    au += 0xfffu + ((au >> 13) & 1); /* round mantissa to 10 bits, nearest even */
    return sign | (uint16_t)(((au >> 23) - 127 + 15) << 10 | ((au >> 13) & 0x3ff));
}

/* ==== reading ==== */

void st_close(st_file *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->n; i++)
        free((char *)f->t[i].name);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_key[i]);
        free(f->meta_val[i]);
    }
    free(f->meta_key);
    free(f->meta_val);
    free(f->t);
    if (!f->borrowed)
        free(f->buf);
    free(f->name);
    free(f);
}

static int parse_dtype(const char *s, st_dtype *out)
{
    for (int i = 0; i < ST_NDTYPE; i++)
        if (strcmp(s, dtypes[i].name) == 0) {
            *out = (st_dtype)i;
            return 0;
        }
    return -1;
}

/* A JSON number that is an exact non-negative integer no larger than 2^53. */
static int json_uint(const cJSON *j, uint64_t *out)
{
    if (!cJSON_IsNumber(j))
        return -1;
    double d = j->valuedouble;
    if (!(d >= 0.0) || d > 9007199254740992.0 || d != floor(d))
        return -1;
    *out = (uint64_t)d;
    return 0;
}

static int parse_metadata(st_file *f, const cJSON *m, err *e)
{
    if (!cJSON_IsObject(m))
        return err_set(e, GTRT_EPARSE, "%s: __metadata__ is not a JSON object", f->name);
    int n = cJSON_GetArraySize(m);
    f->meta_key = calloc((size_t)n + 1, sizeof(char *));
    f->meta_val = calloc((size_t)n + 1, sizeof(char *));
    if (!f->meta_key || !f->meta_val)
        return err_set(e, GTRT_ENOMEM, "%s: out of memory", f->name);
    const cJSON *it;
    cJSON_ArrayForEach(it, m)
    {
        if (!cJSON_IsString(it))
            return err_set(e, GTRT_EPARSE, "%s: __metadata__ value of \"%s\" is not a string",
                           f->name, it->string);
        f->meta_key[f->n_meta] = strdup(it->string);
        f->meta_val[f->n_meta] = strdup(it->valuestring);
        if (!f->meta_key[f->n_meta] || !f->meta_val[f->n_meta])
            return err_set(e, GTRT_ENOMEM, "%s: out of memory", f->name);
        f->n_meta++;
    }
    return 0;
}

/* Parse one header entry into t (name already set) with offsets [*b, *en). */
static int parse_entry(st_file *f, const cJSON *j, st_tensor *t, uint64_t *b, uint64_t *en,
                       err *e)
{
    const char *nm = t->name;
    if (!cJSON_IsObject(j))
        return err_set(e, GTRT_EPARSE, "%s: tensor \"%s\" is not a JSON object", f->name, nm);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(j, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(j, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
    if (!cJSON_IsString(dt) || parse_dtype(dt->valuestring, &t->dtype) != 0)
        return err_set(e, GTRT_EPARSE, "%s: tensor \"%s\" has a missing or unknown dtype",
                       f->name, nm);
    if (!cJSON_IsArray(sh) || cJSON_GetArraySize(sh) > ST_MAX_DIMS)
        return err_set(e, GTRT_EPARSE, "%s: tensor \"%s\" has a missing or too long shape",
                       f->name, nm);
    uint64_t numel = 1;
    t->ndim = 0;
    const cJSON *d;
    cJSON_ArrayForEach(d, sh)
    {
        uint64_t v;
        if (json_uint(d, &v) != 0 || v > ((uint64_t)1 << 40))
            return err_set(e, GTRT_EPARSE, "%s: tensor \"%s\" has a bad dimension", f->name,
                           nm);
        t->shape[t->ndim++] = (int64_t)v;
        if (v && numel > ((uint64_t)1 << 50) / v)
            return err_set(e, GTRT_ERANGE, "%s: tensor \"%s\" is too large", f->name, nm);
        numel *= v;
    }
    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 ||
        json_uint(cJSON_GetArrayItem(off, 0), b) != 0 ||
        json_uint(cJSON_GetArrayItem(off, 1), en) != 0 || *b > *en)
        return err_set(e, GTRT_EPARSE, "%s: tensor \"%s\" has bad data_offsets", f->name, nm);
    if (*en - *b != numel * dtypes[t->dtype].size)
        return err_set(e, GTRT_EPARSE,
                       "%s: tensor \"%s\" has %llu bytes but its dtype and shape need %llu",
                       f->name, nm, (unsigned long long)(*en - *b),
                       (unsigned long long)(numel * dtypes[t->dtype].size));
    t->nbytes = (size_t)(*en - *b);
    return 0;
}

typedef struct span {
    uint64_t b, e;
    int idx;
} span;

static int cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->b != y->b)
        return x->b < y->b ? -1 : 1;
    return x->e < y->e ? -1 : x->e > y->e;
}

static int parse_header(st_file *f, const cJSON *root, size_t data_off, err *e)
{
    if (!cJSON_IsObject(root))
        return err_set(e, GTRT_EPARSE, "%s: header is not a JSON object", f->name);
    int n_items = cJSON_GetArraySize(root);
    f->t = calloc((size_t)n_items + 1, sizeof *f->t);
    span *sp = calloc((size_t)n_items + 1, sizeof *sp);
    if (!f->t || !sp) {
        free(sp);
        return err_set(e, GTRT_ENOMEM, "%s: out of memory", f->name);
    }
    int rc = 0, n_meta_seen = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, root)
    {
        if (strcmp(it->string, "__metadata__") == 0) {
            if (n_meta_seen++) {
                rc = err_set(e, GTRT_EPARSE, "%s: __metadata__ appears twice", f->name);
                break;
            }
            if ((rc = parse_metadata(f, it, e)) != 0)
                break;
            continue;
        }
        st_tensor *t = &f->t[f->n];
        if (!(t->name = strdup(it->string))) {
            rc = err_set(e, GTRT_ENOMEM, "%s: out of memory", f->name);
            break;
        }
        f->n++;
        if ((rc = parse_entry(f, it, t, &sp[f->n - 1].b, &sp[f->n - 1].e, e)) != 0)
            break;
        sp[f->n - 1].idx = f->n - 1;
    }
    size_t data_size = f->size - data_off;
    if (rc == 0) {
        /* Tensors must tile [0, data_size): sorted by offset, each one starts
         * where the previous ended (no overlap, no hole) and the last ends at
         * the end of the file. Duplicate names show up as overlaps or are
         * rejected below. */
        qsort(sp, (size_t)f->n, sizeof *sp, cmp_span);
        uint64_t at = 0;
        for (int i = 0; i < f->n && rc == 0; i++) {
            const char *nm = f->t[sp[i].idx].name;
            if (sp[i].e > data_size)
                rc = err_set(e, GTRT_EPARSE,
                             "%s: tensor \"%s\" ends at byte %llu, beyond the %zu data bytes "
                             "in the file (truncated?)",
                             f->name, nm, (unsigned long long)sp[i].e, data_size);
            else if (sp[i].b < at)
                rc = err_set(e, GTRT_EPARSE, "%s: tensor \"%s\" overlaps another tensor",
                             f->name, nm);
            else if (sp[i].b > at)
                rc = err_set(e, GTRT_EPARSE, "%s: hole of %llu bytes before tensor \"%s\"",
                             f->name, (unsigned long long)(sp[i].b - at), nm);
            at = sp[i].e;
        }
        if (rc == 0 && at != data_size)
            rc = err_set(e, GTRT_EPARSE, "%s: %llu trailing bytes after the last tensor",
                         f->name, (unsigned long long)(data_size - at));
    }
    if (rc == 0) {
        /* Store tensors in file order, with their data pointers. */
        st_tensor *sorted = calloc((size_t)f->n + 1, sizeof *sorted);
        if (!sorted) {
            rc = err_set(e, GTRT_ENOMEM, "%s: out of memory", f->name);
        } else {
            for (int i = 0; i < f->n; i++) {
                sorted[i] = f->t[sp[i].idx];
                sorted[i].data = f->buf + data_off + sp[i].b;
            }
            free(f->t);
            f->t = sorted;
            for (int i = 1; i < f->n && rc == 0; i++)
                for (int k = 0; k < i; k++)
                    if (strcmp(f->t[i].name, f->t[k].name) == 0) {
                        rc = err_set(e, GTRT_EPARSE, "%s: tensor \"%s\" appears twice",
                                     f->name, f->t[i].name);
                        break;
                    }
        }
    }
    free(sp);
    return rc;
}

/* Validate f->buf[0..size); takes ownership of nothing new. */
static int st_parse(st_file *f, err *e)
{
    if (f->size < 8)
        return err_set(e, GTRT_EPARSE, "%s: %zu bytes is too short for a safetensors file",
                       f->name, f->size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | f->buf[i];
    if (hlen > ST_MAX_HEADER)
        return err_set(e, GTRT_ERANGE, "%s: header length %llu exceeds the %llu-byte limit",
                       f->name, (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER);
    if (hlen < 2 || hlen > f->size - 8)
        return err_set(e, GTRT_EPARSE,
                       "%s: header length %llu does not fit in the %zu-byte file (truncated?)",
                       f->name, (unsigned long long)hlen, f->size);
    const char *h = (const char *)f->buf + 8;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(h, (size_t)hlen, &end, 0);
    if (!root)
        return err_set(e, GTRT_EPARSE, "%s: header is not valid JSON (near byte %td)", f->name,
                       (end ? end - h : 0) + 8);
    /* Only padding spaces may follow the JSON object inside the header. */
    for (const char *p = end; p < h + hlen; p++)
        if (*p != ' ' && *p != '\n' && *p != '\t' && *p != '\r') {
            cJSON_Delete(root);
            return err_set(e, GTRT_EPARSE, "%s: garbage after the JSON header", f->name);
        }
    int rc = parse_header(f, root, 8 + (size_t)hlen, e);
    cJSON_Delete(root);
    return rc;
}

int st_open_buffer(const void *buf, size_t n, const char *name, st_file **out, err *e)
{
    *out = NULL;
    st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->name = strdup(name)) || !(f->buf = malloc(n ? n : 1))) {
        st_close(f);
        return err_set(e, GTRT_ENOMEM, "%s: out of memory", name);
    }
    memcpy(f->buf, buf, n);
    f->size = n;
    int rc = st_parse(f, e);
    if (rc != 0) {
        st_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

int st_open_view(const void *buf, size_t n, const char *name, st_file **out, err *e)
{
    *out = NULL;
    st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->name = strdup(name))) {
        st_close(f);
        return err_set(e, GTRT_ENOMEM, "%s: out of memory", name);
    }
    f->buf = (uint8_t *)buf; /* only read */
    f->borrowed = true;
    f->size = n;
    int rc = st_parse(f, e);
    if (rc != 0) {
        st_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

int st_open(const char *path, st_file **out, err *e)
{
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return err_set(e, GTRT_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(fp);
        return err_set(e, GTRT_EIO, "%s: not a regular file", path);
    }
    st_file *f = calloc(1, sizeof *f);
    size_t size = (size_t)sb.st_size;
    if (!f || !(f->name = strdup(path)) || !(f->buf = malloc(size ? size : 1))) {
        fclose(fp);
        st_close(f);
        return err_set(e, GTRT_ENOMEM, "%s: out of memory", path);
    }
    f->size = fread(f->buf, 1, size, fp);
    int bad = ferror(fp);
    fclose(fp);
    if (bad || f->size != size) {
        st_close(f);
        return err_set(e, GTRT_EIO, "%s: read error", path);
    }
    int rc = st_parse(f, e);
    if (rc != 0) {
        st_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

const char *st_name(const st_file *f) { return f->name; }
int st_count(const st_file *f) { return f->n; }

const st_tensor *st_get(const st_file *f, int i)
{
    assert(i >= 0 && i < f->n);
    return &f->t[i];
}

const st_tensor *st_find(const st_file *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0)
            return &f->t[i];
    return NULL;
}

const char *st_meta(const st_file *f, const char *key)
{
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_key[i], key) == 0)
            return f->meta_val[i];
    return NULL;
}

static void shape_str(char *buf, size_t cap, const int64_t *shape, int ndim)
{
    size_t at = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && at < cap; i++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (at < cap)
        snprintf(buf + at, cap - at, "]");
}

/* The tensor `name` when it exists with this shape; NULL with `e` set. */
static const st_tensor *st_find_shaped(const st_file *f, const char *name, const int64_t *shape,
                                       int ndim, err *e)
{
    const st_tensor *t = st_find(f, name);
    if (!t) {
        err_set(e, GTRT_ENOTFOUND, "%s: tensor \"%s\" is missing", f->name, name);
        return NULL;
    }
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = t->shape[i] == shape[i];
    if (!same) {
        char want[128], got[128];
        shape_str(want, sizeof want, shape, ndim);
        shape_str(got, sizeof got, t->shape, t->ndim);
        err_set(e, GTRT_EINVAL, "%s: tensor \"%s\" has shape %s, expected %s", f->name, name, got,
                want);
        return NULL;
    }
    return t;
}

int st_check_f32(const st_file *f, const char *name, const int64_t *shape, int ndim, err *e)
{
    const st_tensor *t = st_find_shaped(f, name, shape, ndim, e);
    if (!t)
        return e ? e->code : GTRT_EINVAL;
    if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16 && t->dtype != ST_F64)
        return err_set(e, GTRT_EINVAL, "%s: tensor \"%s\" has dtype %s, expected a float type",
                       f->name, name, st_dtype_name(t->dtype));
    return 0;
}

int st_read_f32(const st_file *f, const char *name, const int64_t *shape, int ndim,
                float *dst, err *e)
{
    int rc = st_check_f32(f, name, shape, ndim, e);
    if (rc)
        return rc;
    const st_tensor *t = st_find(f, name);
    size_t n = t->nbytes / st_dtype_size(t->dtype);
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case ST_F32:
        memcpy(dst, p, n * 4);
        break;
    case ST_F16:
    case ST_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h = (uint16_t)(p[2 * i] | (p[2 * i + 1] << 8));
            dst[i] = t->dtype == ST_F16 ? st_f16_to_f32(h) : st_bf16_to_f32(h);
        }
        break;
    case ST_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            dst[i] = (float)d;
        }
        break;
    default:
        return err_set(e, GTRT_EINVAL, "%s: tensor \"%s\" has dtype %s, expected a float type",
                       f->name, name, st_dtype_name(t->dtype));
    }
    return 0;
}

/* ==== writing ==== */

static int write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static char *build_header(const st_entry *t, int n, const st_kv *meta, int n_meta)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    int ok = 1;
    if (n_meta > 0) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; ok && i < n_meta; i++)
            ok = m && cJSON_AddStringToObject(m, meta[i].key, meta[i].value) != NULL;
    }
    uint64_t at = 0;
    for (int i = 0; ok && i < n; i++) {
        cJSON *o = cJSON_AddObjectToObject(root, t[i].name);
        uint64_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++)
            numel *= (uint64_t)t[i].shape[d];
        uint64_t nb = numel * st_dtype_size(t[i].dtype);
        cJSON *shape = cJSON_CreateArray(), *off = cJSON_CreateArray();
        ok = o && shape && off && cJSON_AddStringToObject(o, "dtype", st_dtype_name(t[i].dtype));
        for (int d = 0; ok && d < t[i].ndim; d++)
            cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t[i].shape[d]));
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)at));
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)(at + nb)));
        cJSON_AddItemToObject(o, "shape", shape);
        cJSON_AddItemToObject(o, "data_offsets", off);
        at += nb;
    }
    char *s = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return s;
}

static size_t entry_bytes(const st_entry *t)
{
    size_t numel = 1;
    for (int d = 0; d < t->ndim; d++)
        numel *= (size_t)t->shape[d];
    return numel * st_dtype_size(t->dtype);
}

int st_write(const char *path, const st_entry *t, int n, const st_kv *meta, int n_meta,
             err *e)
{
    for (int i = 0; i < n; i++) {
        assert(t[i].ndim >= 0 && t[i].ndim <= ST_MAX_DIMS);
        for (int k = 0; k < i; k++)
            if (strcmp(t[i].name, t[k].name) == 0)
                return err_set(e, GTRT_EINVAL, "%s: tensor \"%s\" given twice", path, t[i].name);
        if (strcmp(t[i].name, "__metadata__") == 0)
            return err_set(e, GTRT_EINVAL, "%s: \"__metadata__\" is not a tensor name", path);
    }
    char *json = build_header(t, n, meta, n_meta);
    if (!json)
        return err_set(e, GTRT_ENOMEM, "%s: out of memory building the header", path);
    /* Pad the header with spaces so that the data starts 8-byte aligned. */
    size_t jlen = strlen(json), hlen = (jlen + 7) & ~(size_t)7;
    char *hdr = malloc(8 + hlen);
    if (!hdr) {
        free(json);
        return err_set(e, GTRT_ENOMEM, "%s: out of memory", path);
    }
    for (int i = 0; i < 8; i++)
        hdr[i] = (char)(((uint64_t)hlen >> (8 * i)) & 0xff);
    memcpy(hdr + 8, json, jlen);
    memset(hdr + 8 + jlen, ' ', hlen - jlen);
    free(json);

    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) {
        free(hdr);
        return err_set(e, GTRT_ENOMEM, "%s: out of memory", path);
    }
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int rc = err_set(e, GTRT_EIO, "%s: cannot create a temporary file: %s", path,
                         strerror(errno));
        free(hdr);
        free(tmp);
        return rc;
    }
    int bad = write_all(fd, hdr, 8 + hlen);
    for (int i = 0; !bad && i < n; i++)
        bad = write_all(fd, t[i].data, entry_bytes(&t[i]));
    free(hdr);
    /* mkstemp makes the file 0600; checkpoints are ordinary files. */
    if (!bad)
        bad = fchmod(fd, 0644) != 0 || fsync(fd) != 0;
    int saved = errno;
    if (close(fd) != 0 && !bad) {
        bad = 1;
        saved = errno;
    }
    if (!bad && rename(tmp, path) != 0) {
        bad = 1;
        saved = errno;
    }
    if (bad) {
        unlink(tmp);
        free(tmp);
        return err_set(e, GTRT_EIO, "%s: write failed: %s", path, strerror(saved));
    }
    free(tmp);
    /* Make the rename itself durable. */
    char *dir = strdup(path);
    if (dir) {
        char *slash = strrchr(dir, '/');
        const char *d = ".";
        if (slash) {
            *(slash == dir ? slash + 1 : slash) = '\0';
            d = dir;
        }
        int dfd = open(d, O_RDONLY | O_DIRECTORY);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
        free(dir);
    }
    return 0;
}
