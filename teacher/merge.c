/* Checkpoint merging for the teacher: tensor sets loaded from and written to
 * safetensors, SMA/EMA weights, linear and TIES combination, and the
 * incremental merger the teacher service drives (see merge.h for the exact
 * rules, which tests/python/test_merge_numpy.py restates independently). */
#include "teacher/merge.h"

#include <assert.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"

/* ==== tensor sets ==== */

void merge_tset_free(merge_tset *ts)
{
    if (!ts)
        return;
    for (int i = 0; i < ts->n; i++)
        free(ts->t[i].name);
    for (int i = 0; i < ts->n_meta; i++) {
        free(ts->meta_key[i]);
        free(ts->meta_val[i]);
    }
    free(ts->t);
    free(ts->meta_key);
    free(ts->meta_val);
    free(ts->data);
    free(ts);
}

/* numel of a shape, or 0 with *bad set when a dimension is negative or the
 * product does not fit (a scalar, ndim 0, has one element). */
static size_t merge_numel(const int64_t *shape, int ndim, int *bad)
{
    size_t n = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || (shape[d] > 0 && n > (SIZE_MAX / 8) / (size_t)shape[d])) {
            *bad = 1;
            return 0;
        }
        n *= (size_t)shape[d];
    }
    return n;
}

int merge_tset_new(const merge_spec *spec, int n, merge_tset **out, err *e)
{
    *out = NULL;
    if (n < 0)
        return err_set(e, GTRT_EINVAL, "merge: negative tensor count");
    merge_tset *ts = calloc(1, sizeof *ts);
    if (!ts || !(ts->t = calloc((size_t)n + 1, sizeof *ts->t))) {
        free(ts);
        return err_set(e, GTRT_ENOMEM, "merge: out of memory");
    }
    ts->n = n;
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        merge_tensor *t = &ts->t[i];
        int bad = spec[i].ndim < 0 || spec[i].ndim > ST_MAX_DIMS;
        size_t numel = bad ? 0 : merge_numel(spec[i].shape, spec[i].ndim, &bad);
        if (bad || off > (SIZE_MAX / 8) - numel) {
            merge_tset_free(ts);
            return err_set(e, GTRT_ERANGE, "merge: tensor \"%s\" has an impossible shape",
                           spec[i].name);
        }
        t->name = strdup(spec[i].name);
        if (!t->name) {
            merge_tset_free(ts);
            return err_set(e, GTRT_ENOMEM, "merge: out of memory");
        }
        t->ndim = spec[i].ndim;
        memcpy(t->shape, spec[i].shape, sizeof t->shape);
        t->offset = off;
        t->numel = numel;
        off += numel;
    }
    ts->numel = off;
    /* 64-byte alignment lets the merge loops vectorise without peeling. */
    size_t bytes = ((off ? off : 1) * sizeof(float) + 63) & ~(size_t)63;
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes) != 0) {
        merge_tset_free(ts);
        return err_set(e, GTRT_ENOMEM, "merge: out of memory for %zu parameters", off);
    }
    ts->data = p;
    memset(ts->data, 0, bytes);
    *out = ts;
    return 0;
}

static int merge_meta_add(merge_tset *ts, const char *k, const char *v, err *e)
{
    char **nk = realloc(ts->meta_key, sizeof(char *) * (size_t)(ts->n_meta + 1));
    if (nk)
        ts->meta_key = nk;
    char **nv = realloc(ts->meta_val, sizeof(char *) * (size_t)(ts->n_meta + 1));
    if (nv)
        ts->meta_val = nv;
    char *ck = strdup(k), *cv = strdup(v);
    if (!nk || !nv || !ck || !cv) {
        free(ck);
        free(cv);
        return err_set(e, GTRT_ENOMEM, "merge: out of memory");
    }
    ts->meta_key[ts->n_meta] = ck;
    ts->meta_val[ts->n_meta] = cv;
    ts->n_meta++;
    return 0;
}

int merge_tset_clone(const merge_tset *src, merge_tset **out, err *e)
{
    *out = NULL;
    merge_spec *spec = calloc((size_t)src->n + 1, sizeof *spec);
    if (!spec)
        return err_set(e, GTRT_ENOMEM, "merge: out of memory");
    for (int i = 0; i < src->n; i++) {
        spec[i].name = src->t[i].name;
        spec[i].ndim = src->t[i].ndim;
        memcpy(spec[i].shape, src->t[i].shape, sizeof spec[i].shape);
    }
    merge_tset *ts;
    int rc = merge_tset_new(spec, src->n, &ts, e);
    free(spec);
    if (rc)
        return rc;
    memcpy(ts->data, src->data, src->numel * sizeof(float));
    for (int i = 0; rc == 0 && i < src->n_meta; i++)
        rc = merge_meta_add(ts, src->meta_key[i], src->meta_val[i], e);
    if (rc) {
        merge_tset_free(ts);
        return rc;
    }
    *out = ts;
    return 0;
}

const merge_tensor *merge_tset_find(const merge_tset *ts, const char *name)
{
    for (int i = 0; i < ts->n; i++)
        if (strcmp(ts->t[i].name, name) == 0)
            return &ts->t[i];
    return NULL;
}

const char *merge_tset_meta(const merge_tset *ts, const char *key)
{
    for (int i = 0; i < ts->n_meta; i++)
        if (strcmp(ts->meta_key[i], key) == 0)
            return ts->meta_val[i];
    return NULL;
}

static void merge_shape_str(char *buf, size_t cap, const int64_t *shape, int ndim)
{
    size_t at = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && at < cap; i++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (at < cap)
        snprintf(buf + at, cap - at, "]");
}

static int merge_same_shape(const int64_t *a, int na, const int64_t *b, int nb)
{
    if (na != nb)
        return 0;
    for (int d = 0; d < na; d++)
        if (a[d] != b[d])
            return 0;
    return 1;
}

static int merge_shape_err(err *e, const char *what, const char *name, const int64_t *got,
                           int ngot, const int64_t *want, int nwant)
{
    char g[128], w[128];
    merge_shape_str(g, sizeof g, got, ngot);
    merge_shape_str(w, sizeof w, want, nwant);
    return err_set(e, GTRT_EINVAL,
                   "%s: different architecture: tensor \"%s\" has shape %s, the base %s", what,
                   name, g, w);
}

int merge_tset_check_layout(const merge_tset *ref, const merge_tset *ts, const char *what,
                            err *e)
{
    if (ts->n != ref->n)
        return err_set(e, GTRT_EINVAL, "%s: different architecture: %d tensors, the base has %d",
                       what, ts->n, ref->n);
    for (int i = 0; i < ref->n; i++) {
        const merge_tensor *a = &ref->t[i], *b = &ts->t[i];
        if (strcmp(a->name, b->name) != 0)
            return err_set(e, GTRT_EINVAL,
                           "%s: different architecture: tensor %d is \"%s\", the base's \"%s\"",
                           what, i, b->name, a->name);
        if (!merge_same_shape(a->shape, a->ndim, b->shape, b->ndim))
            return merge_shape_err(e, what, a->name, b->shape, b->ndim, a->shape, a->ndim);
    }
    return 0;
}

int merge_tset_check_finite(const merge_tset *ts, const char *what, err *e)
{
    for (int i = 0; i < ts->n; i++) {
        const float *p = ts->data + ts->t[i].offset;
        /* All exponent bits set means NaN or infinity; integer tests keep
         * the pass branch-free and vectorisable. */
        uint32_t bad = 0;
        for (size_t j = 0; j < ts->t[i].numel; j++) {
            uint32_t u;
            memcpy(&u, &p[j], sizeof u);
            bad |= (u & 0x7f800000u) == 0x7f800000u;
        }
        if (bad)
            return err_set(e, GTRT_EINVAL, "%s: tensor \"%s\" holds NaN or infinite values",
                           what, ts->t[i].name);
    }
    return 0;
}

/* ==== loading ==== */

/* Model configuration keys: two checkpoints whose tensors have the same
 * shapes but differ here (say n_head) are still different models. */
static const char *const merge_arch_keys[] = {
    "format", "vocab_size", "d_model", "n_layer", "n_head", "patch",
    "image_c", "image_h", "image_w", "max_seq", "value_h1", "value_h2",
};

/* st_file offers no way to list __metadata__, so read it from the JSON
 * header (already validated by st_open / st_open_buffer). */
static int merge_meta_from_header(merge_tset *ts, const char *json, size_t len, const char *name,
                                  err *e)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root)
        return err_set(e, GTRT_EPARSE, "%s: cannot parse the header", name);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    const cJSON *it;
    int rc = 0;
    cJSON_ArrayForEach(it, m)
    {
        if (cJSON_IsString(it) && (rc = merge_meta_add(ts, it->string, it->valuestring, e)))
            break;
    }
    cJSON_Delete(root);
    return rc;
}

static uint64_t merge_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static int merge_meta_from_buffer(merge_tset *ts, const void *buf, size_t len, const char *name,
                                  err *e)
{
    const uint8_t *p = buf;
    uint64_t h = len >= 8 ? merge_le64(p) : 0;
    if (len < 8 || h > len - 8)
        return err_set(e, GTRT_EPARSE, "%s: truncated header", name);
    return merge_meta_from_header(ts, (const char *)p + 8, (size_t)h, name, e);
}

static int merge_meta_from_file(merge_tset *ts, const char *path, err *e)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return err_set(e, GTRT_EIO, "%s: %s", path, strerror(errno));
    uint8_t head[8];
    int rc = 0;
    char *json = NULL;
    uint64_t h = 0;
    if (fread(head, 1, 8, f) != 8 || (h = merge_le64(head)) > ST_MAX_HEADER)
        rc = err_set(e, GTRT_EPARSE, "%s: bad header", path);
    else if (!(json = malloc((size_t)h + 1)))
        rc = err_set(e, GTRT_ENOMEM, "%s: out of memory", path);
    else if (fread(json, 1, (size_t)h, f) != (size_t)h)
        rc = err_set(e, GTRT_EIO, "%s: truncated header", path);
    fclose(f);
    if (rc == 0)
        rc = merge_meta_from_header(ts, json, (size_t)h, path, e);
    free(json);
    return rc;
}

static int merge_is_float(st_dtype d)
{
    return d == ST_F32 || d == ST_F16 || d == ST_BF16 || d == ST_F64;
}

/* Check that f has exactly like's tensors (any order) and architecture. */
static int merge_check_file_like(const st_file *f, const merge_tset *like, err *e)
{
    const char *name = st_name(f);
    if (st_count(f) != like->n)
        return err_set(e, GTRT_EINVAL, "%s: different architecture: %d tensors, the base has %d",
                       name, st_count(f), like->n);
    for (int i = 0; i < like->n; i++) {
        const merge_tensor *lt = &like->t[i];
        const st_tensor *t = st_find(f, lt->name);
        if (!t)
            return err_set(e, GTRT_EINVAL,
                           "%s: different architecture: no tensor \"%s\" (the base has it)", name,
                           lt->name);
        if (!merge_same_shape(t->shape, t->ndim, lt->shape, lt->ndim))
            return merge_shape_err(e, name, lt->name, t->shape, t->ndim, lt->shape, lt->ndim);
        if (!merge_is_float(t->dtype))
            return err_set(e, GTRT_EINVAL, "%s: tensor \"%s\" has dtype %s, not a float type",
                           name, lt->name, st_dtype_name(t->dtype));
    }
    for (size_t k = 0; k < sizeof merge_arch_keys / sizeof merge_arch_keys[0]; k++) {
        const char *a = merge_tset_meta(like, merge_arch_keys[k]);
        const char *b = st_meta(f, merge_arch_keys[k]);
        if (a && b && strcmp(a, b) != 0)
            return err_set(e, GTRT_EINVAL,
                           "%s: different architecture: %s is %s, the base's is %s", name,
                           merge_arch_keys[k], b, a);
    }
    return 0;
}

/* Build a set from an open file, in like's order when like is given. */
static int merge_tset_from_st(const st_file *f, const merge_tset *like, merge_tset **out, err *e)
{
    *out = NULL;
    const char *name = st_name(f);
    int n = like ? like->n : st_count(f), rc = 0;
    if (like && (rc = merge_check_file_like(f, like, e)))
        return rc;
    if (n == 0)
        return err_set(e, GTRT_EINVAL, "%s: no tensors to merge", name);
    merge_spec *spec = calloc((size_t)n, sizeof *spec);
    if (!spec)
        return err_set(e, GTRT_ENOMEM, "%s: out of memory", name);
    for (int i = 0; i < n && rc == 0; i++) {
        const st_tensor *t = like ? st_find(f, like->t[i].name) : st_get(f, i);
        if (!merge_is_float(t->dtype))
            rc = err_set(e, GTRT_EINVAL, "%s: tensor \"%s\" has dtype %s, not a float type",
                         name, t->name, st_dtype_name(t->dtype));
        spec[i] = (merge_spec){.name = t->name, .ndim = t->ndim};
        memcpy(spec[i].shape, t->shape, sizeof spec[i].shape);
    }
    merge_tset *ts = NULL;
    if (rc == 0)
        rc = merge_tset_new(spec, n, &ts, e);
    for (int i = 0; rc == 0 && i < n; i++)
        rc = st_read_f32(f, spec[i].name, spec[i].shape, spec[i].ndim,
                         ts->data + ts->t[i].offset, e);
    free(spec);
    if (rc) {
        merge_tset_free(ts);
        return rc;
    }
    *out = ts;
    return 0;
}

static int merge_load_common(const merge_tset *like, const char *path, const void *buf,
                             size_t len, const char *name, merge_tset **out, err *e)
{
    *out = NULL;
    st_file *f;
    int rc = buf ? st_open_buffer(buf, len, name, &f, e) : st_open(path, &f, e);
    if (rc)
        return rc;
    merge_tset *ts;
    rc = merge_tset_from_st(f, like, &ts, e);
    st_close(f);
    if (rc)
        return rc;
    rc = buf ? merge_meta_from_buffer(ts, buf, len, name, e) : merge_meta_from_file(ts, path, e);
    if (rc) {
        merge_tset_free(ts);
        return rc;
    }
    *out = ts;
    return 0;
}

int merge_tset_load(const char *path, merge_tset **out, err *e)
{
    return merge_load_common(NULL, path, NULL, 0, path, out, e);
}

int merge_tset_load_buffer(const void *buf, size_t len, const char *name, merge_tset **out,
                           err *e)
{
    return merge_load_common(NULL, NULL, buf, len, name, out, e);
}

int merge_tset_load_as(const merge_tset *like, const char *path, merge_tset **out, err *e)
{
    return merge_load_common(like, path, NULL, 0, path, out, e);
}

int merge_tset_load_buffer_as(const merge_tset *like, const void *buf, size_t len,
                              const char *name, merge_tset **out, err *e)
{
    return merge_load_common(like, NULL, buf, len, name, out, e);
}

/* ==== saving ==== */

int merge_tset_save(const merge_tset *ts, const char *path, const st_kv *extra, int n_extra,
                    err *e)
{
    st_entry *ent = calloc((size_t)ts->n + 1, sizeof *ent);
    st_kv *meta = calloc((size_t)(ts->n_meta + n_extra) + 1, sizeof *meta);
    if (!ent || !meta) {
        free(ent);
        free(meta);
        return err_set(e, GTRT_ENOMEM, "%s: out of memory", path);
    }
    for (int i = 0; i < ts->n; i++) {
        const merge_tensor *t = &ts->t[i];
        ent[i] = (st_entry){.name = t->name, .dtype = ST_F32, .ndim = t->ndim,
                            .data = ts->data + t->offset};
        memcpy(ent[i].shape, t->shape, sizeof ent[i].shape);
    }
    int nm = 0;
    for (int i = 0; i < ts->n_meta; i++) {
        int overridden = 0;
        for (int k = 0; k < n_extra; k++)
            overridden |= strcmp(extra[k].key, ts->meta_key[i]) == 0;
        if (!overridden)
            meta[nm++] = (st_kv){ts->meta_key[i], ts->meta_val[i]};
    }
    for (int k = 0; k < n_extra; k++)
        meta[nm++] = extra[k];
    int rc = st_write(path, ent, ts->n, meta, nm, e);
    free(ent);
    free(meta);
    return rc;
}

/* ==== options and weights ==== */

void merge_opts_default(merge_opts *o)
{
    *o = (merge_opts){.method = MERGE_SMA, .combine = MERGE_TIES, .alpha = 0.5,
                      .density = 0.8, .lambda = 1.0};
}

int merge_opts_check(const merge_opts *o, err *e)
{
    if (o->method != MERGE_SMA && o->method != MERGE_EMA)
        return err_set(e, GTRT_EINVAL, "merge: unknown method %d", (int)o->method);
    if (o->combine != MERGE_LINEAR && o->combine != MERGE_TIES)
        return err_set(e, GTRT_EINVAL, "merge: unknown combination %d", (int)o->combine);
    /* alpha 0 or density 0 would freeze the teacher at the base forever. */
    if (!(o->alpha > 0.0 && o->alpha <= 1.0))
        return err_set(e, GTRT_EINVAL, "merge: alpha %g must be in (0, 1]", o->alpha);
    if (!(o->density > 0.0 && o->density <= 1.0))
        return err_set(e, GTRT_EINVAL, "merge: density %g must be in (0, 1]", o->density);
    if (!(o->lambda > 0.0 && o->lambda <= 1e6))
        return err_set(e, GTRT_EINVAL, "merge: lambda %g must be positive", o->lambda);
    return 0;
}

int merge_method_parse(const char *s, merge_method *out, err *e)
{
    if (s && strcmp(s, "sma") == 0)
        *out = MERGE_SMA;
    else if (s && strcmp(s, "ema") == 0)
        *out = MERGE_EMA;
    else
        return err_set(e, GTRT_EINVAL, "merge method \"%s\": expected sma or ema", s ? s : "");
    return 0;
}

int merge_combine_parse(const char *s, merge_combine *out, err *e)
{
    if (s && strcmp(s, "linear") == 0)
        *out = MERGE_LINEAR;
    else if (s && strcmp(s, "ties") == 0)
        *out = MERGE_TIES;
    else
        return err_set(e, GTRT_EINVAL, "merge combination \"%s\": expected linear or ties",
                       s ? s : "");
    return 0;
}

const char *merge_method_name(merge_method m) { return m == MERGE_EMA ? "ema" : "sma"; }
const char *merge_combine_name(merge_combine c) { return c == MERGE_TIES ? "ties" : "linear"; }

void merge_weights(const merge_opts *o, uint64_t n_merged, int k, double *w)
{
    assert(k >= 0);
    if (o->method == MERGE_SMA) {
        w[0] = (double)n_merged;
        for (int i = 1; i <= k; i++)
            w[i] = 1.0;
        return;
    }
    /* EMA: folding k checkpoints in at once gives each the weight it would
     * have after k single EMA steps, so batching does not change a linear
     * merge. */
    double keep = 1.0 - o->alpha, tail = 1.0;
    for (int i = k; i >= 1; i--) {
        w[i] = o->alpha * tail;
        tail *= keep;
    }
    w[0] = tail;
}

size_t merge_keep_count(size_t n, double density)
{
    double x = floor(density * (double)n + 0.5);
    size_t k = x <= 0.0 ? 0 : x >= (double)n ? n : (size_t)x;
    /* A small tensor (a bias of one entry) should still be able to move. */
    if (k == 0 && density > 0.0 && n > 0)
        k = 1;
    return k;
}

/* ==== TIES: trimming thresholds ==== */

/* Magnitudes are compared as the bits of |x|: for finite non-negative
 * floats the integer order is the numeric order, and -0 equals 0.
 *
 * The merge streams every input twice and writes the output once: a first
 * pass finds, per input and tensor, the k-th largest |tau| (the threshold),
 * and a second recomputes tau = x - base block by block, trims, votes and
 * averages. The first pass is Floyd-Rivest selection: a small sample of
 * |tau| brackets the k-th largest between two magnitudes with a wide
 * safety margin, the pass counts the entries above the bracket and gathers
 * those inside it, and quickselect finishes on the few gathered. If the
 * bracket misses (the counts show it), that input is scanned again with the
 * bracket opened to everything, so the result is exact either way. */
#define MERGE_BLOCK 256
#define MERGE_SAMPLE_RUNS 128
#define MERGE_SAMPLE_RUN 64
#define MERGE_SAMPLE (MERGE_SAMPLE_RUNS * MERGE_SAMPLE_RUN)

static inline uint32_t merge_mag_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u & 0x7fffffffu;
}

static int merge_cmp_desc(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x < y) - (x > y);
}

static inline void merge_swap(uint32_t *a, size_t i, size_t j)
{
    uint32_t t = a[i];
    a[i] = a[j];
    a[j] = t;
}

static uint32_t merge_median3(uint32_t a, uint32_t b, uint32_t c)
{
    if (a > b) {
        uint32_t t = a;
        a = b;
        b = t;
    }
    return c <= a ? a : c >= b ? b : c;
}

/* The value at rank r (0 = largest) of a[0..n), permuting a. Quickselect
 * with a three-way partition, since many equal magnitudes (zeros) are
 * common; falls back to sorting the remaining range if pivots keep being
 * poor, so the worst case stays O(n log n). */
static uint32_t merge_select_desc(uint32_t *a, size_t n, size_t r)
{
    assert(r < n);
    size_t lo = 0, hi = n;
    int budget = 64;
    while (hi - lo > 1) {
        if (budget-- == 0) {
            qsort(a + lo, hi - lo, sizeof *a, merge_cmp_desc);
            return a[r];
        }
        uint32_t p = merge_median3(a[lo], a[lo + (hi - lo) / 2], a[hi - 1]);
        size_t g = lo, i = lo, l = hi; /* [lo,g) > p, [g,i) == p, [l,hi) < p */
        while (i < l) {
            if (a[i] > p)
                merge_swap(a, g++, i++);
            else if (a[i] < p)
                merge_swap(a, i, --l);
            else
                i++;
        }
        if (r < g)
            hi = g;
        else if (r < l)
            return p;
        else
            lo = l;
    }
    return a[lo];
}

/* Trimming of one input on one tensor. */
typedef struct merge_cut {
    uint32_t lo, hi;  /* bracket of the threshold: lo <= thr <= hi */
    size_t above, nc; /* entries above hi; entries gathered in [lo, hi] */
    uint32_t thr;     /* the k-th largest magnitude */
    size_t quota;     /* entries equal to thr still to keep, lowest index first */
    int fixup;        /* more entries equal thr than the quota (and thr > 0) */
} merge_cut;

/* Bracket the k-th largest of n magnitudes |x - b| from a sample: runs of
 * consecutive entries at positions drawn from a fixed seed, so a merge is
 * deterministic. Small tensors get the open bracket (every entry). */
static void merge_bracket(const float *x, const float *b, size_t n, size_t k, uint32_t *sample,
                          merge_cut *c)
{
    c->lo = 0;
    c->hi = UINT32_MAX;
    if (n < 8 * MERGE_SAMPLE)
        return;
    rng r;
    rng_init(&r, 0x6d65726765ull ^ (uint64_t)n);
    size_t s = 0;
    for (int run = 0; run < MERGE_SAMPLE_RUNS; run++) {
        size_t at = (size_t)rng_below(&r, (uint64_t)(n - MERGE_SAMPLE_RUN));
        for (int j = 0; j < MERGE_SAMPLE_RUN; j++)
            sample[s++] = merge_mag_bits(x[at + j] - b[at + j]);
    }
    /* Rank of the k-th largest in the sample, and a margin of many standard
     * deviations (more since runs are correlated). */
    double p = (double)k / (double)n, mid = p * MERGE_SAMPLE;
    double margin = 4.0 * sqrt(MERGE_SAMPLE * p * (1.0 - p)) + 16.0;
    if (mid - margin >= 1.0)
        c->hi = merge_select_desc(sample, MERGE_SAMPLE, (size_t)(mid - margin));
    if (mid + margin <= MERGE_SAMPLE - 2.0)
        c->lo = merge_select_desc(sample, MERGE_SAMPLE, (size_t)(mid + margin) + 1);
}

/* One pass over inputs x[0..m) of one tensor, a block at a time so the
 * base is read from memory once: per input, count the magnitudes above its
 * bracket and gather those inside. */
static void merge_scan(const float *const *x, const float *b, size_t n, int m, merge_cut *cut,
                       uint32_t *const *cand)
{
    for (int i = 0; i < m; i++)
        cut[i].above = cut[i].nc = 0;
    for (size_t j0 = 0; j0 < n; j0 += MERGE_BLOCK) {
        size_t nb = n - j0 < MERGE_BLOCK ? n - j0 : MERGE_BLOCK;
        for (int i = 0; i < m; i++) {
            const float *xi = x[i] + j0, *bi = b + j0;
            uint32_t lo = cut[i].lo, hi = cut[i].hi, width = hi - lo, *ci = cand[i];
            size_t above = cut[i].above, nc = cut[i].nc;
            for (size_t j = 0; j < nb; j++) {
                uint32_t u = merge_mag_bits(xi[j] - bi[j]);
                above += u > hi;
                /* write always, advance if inside (one unsigned compare for
                 * lo <= u <= hi): no branch to mispredict */
                ci[nc] = u;
                nc += u - lo <= width;
            }
            cut[i].above = above;
            cut[i].nc = nc;
        }
    }
}

/* Finish a cut from its scan: 0, or -1 when the bracket missed the k-th. */
static int merge_cut_finish(merge_cut *c, uint32_t *cand, size_t k)
{
    if (k <= c->above || k > c->above + c->nc)
        return -1;
    c->thr = merge_select_desc(cand, c->nc, k - c->above - 1);
    size_t greater = c->above, equal = 0;
    for (size_t j = 0; j < c->nc; j++) {
        greater += cand[j] > c->thr;
        equal += cand[j] == c->thr;
    }
    c->quota = k - greater;
    /* Zeros need no fix-up: a zero task-vector entry never votes. */
    c->fixup = equal > c->quota && c->thr != 0;
    return 0;
}

/* ==== TIES: sign election and disjoint mean ==== */

/* The block loops below are written for the compiler to vectorise: no
 * aliasing (restrict), no branches, and a constant trip count for full
 * blocks (each is a static inline called with nb == MERGE_BLOCK there). */

/* tau = x - b for one block, trimmed by the cut; entries equal to the
 * threshold beyond the quota are dropped here, in index order. */
static inline void merge_block_tau(const float *restrict x, const float *restrict b, size_t nb,
                                   merge_cut *c, float *restrict t)
{
    float thr;
    memcpy(&thr, &c->thr, sizeof thr);
    for (size_t j = 0; j < nb; j++) {
        float v = x[j] - b[j];
        t[j] = fabsf(v) >= thr ? v : 0.0f;
    }
    if (nb % 2)
        t[nb] = 0.0f; /* the vote reads pairs */
    if (!c->fixup)
        return;
    for (size_t j = 0; j < nb; j++) {
        if (merge_mag_bits(t[j]) != c->thr)
            continue;
        if (c->quota > 0)
            c->quota--;
        else
            t[j] = 0.0f;
    }
}

/* Vote and mean of one block of m trimmed task vectors t[i*MERGE_BLOCK..].
 * A zero entry has no sign, so it never agrees; the vote's ties go to +.
 * With the elected sign g = +-1 an entry agrees iff w*tau*g > 0, and the
 * sum of the agreeing w*tau*g, times g, is exactly the sum of the agreeing
 * w*tau. The signs are random, so any branch here would mispredict half the
 * time: the loops use GCC/Clang vector extensions (two doubles, mapped to
 * SSE2, NEON or scalar code) where comparisons give bit masks. Where no
 * input agrees num = 0, so base + lambda*(+-0) is the base itself. */
typedef double merge_v2d __attribute__((vector_size(16)));
typedef int64_t merge_v2l __attribute__((vector_size(16)));
typedef float merge_v2f __attribute__((vector_size(8)));

static inline merge_v2d merge_load2(const float *p)
{
    merge_v2f f;
    memcpy(&f, p, sizeof f);
    return __builtin_convertvector(f, merge_v2d);
}

static inline void merge_block_vote(const float *restrict base, const float *restrict t,
                                    const double *restrict w, int m, size_t nb, double lambda,
                                    float *restrict out)
{
    enum { NV = MERGE_BLOCK / 2 };
    merge_v2d g[NV], num[NV], den[NV];
    const merge_v2d zero = {0.0, 0.0}, one = {1.0, 1.0}, lam = {lambda, lambda};
    size_t nv = (nb + 1) / 2; /* an odd tail reads one padding entry, set to 0 below */
    for (size_t v = 0; v < nv; v++)
        g[v] = num[v] = den[v] = zero;
    for (int i = 0; i < m; i++) {
        const float *ti = t + (size_t)i * MERGE_BLOCK;
        merge_v2d wi = {w[i], w[i]};
        for (size_t v = 0; v < nv; v++)
            g[v] += wi * merge_load2(ti + 2 * v);
    }
    for (size_t v = 0; v < nv; v++) {
        merge_v2l plus = g[v] >= zero;
        g[v] = (merge_v2d)(((merge_v2l)one & plus) | ((merge_v2l)(-one) & ~plus));
    }
    for (int i = 0; i < m; i++) {
        const float *ti = t + (size_t)i * MERGE_BLOCK;
        merge_v2d wi = {w[i], w[i]};
        for (size_t v = 0; v < nv; v++) {
            merge_v2d x = wi * merge_load2(ti + 2 * v) * g[v];
            merge_v2l agree = x > zero;
            num[v] += (merge_v2d)((merge_v2l)x & agree);
            den[v] += (merge_v2d)((merge_v2l)wi & agree);
        }
    }
    for (size_t v = 0; v < nv; v++) {
        merge_v2l some = den[v] > zero;
        merge_v2d d = (merge_v2d)(((merge_v2l)den[v] & some) | ((merge_v2l)one & ~some));
        merge_v2d mean = lam * (num[v] * g[v] / d);
        size_t j = 2 * v;
        out[j] = (float)((double)base[j] + mean[0]);
        if (j + 1 < nb)
            out[j + 1] = (float)((double)base[j + 1] + mean[1]);
    }
}

/* One block of the second TIES pass: trim every input, vote, average. */
static inline void merge_block(const float *const *x, const float *b, merge_cut *cut,
                               const double *w, int m, size_t nb, double lambda, float *blk,
                               float *out)
{
    for (int i = 0; i < m; i++)
        merge_block_tau(x[i], b, nb, &cut[i], blk + (size_t)i * MERGE_BLOCK);
    merge_block_vote(b, blk, w, m, nb, lambda, out);
}

static void merge_linear_combine(const float *const *x, const double *wn, int m, size_t n,
                                 float *out)
{
    for (size_t j = 0; j < n; j++) {
        double acc = 0.0;
        for (int i = 0; i < m; i++)
            acc += wn[i] * (double)x[i][j];
        out[j] = (float)acc;
    }
}

/* ==== one merge ==== */

/* Scratch of a merge, kept by a merger between runs: the gather buffers
 * are as large as the biggest tensor (the bracket may hold all of it), and
 * fresh pages for them on every merge would cost more than the merge. */
typedef struct merge_work {
    int cap_in, m;       /* inputs room; inputs with a non-zero weight */
    const float **x;     /* their data */
    const float **xt;    /* the same, at the current tensor */
    const float **xb;    /* the same, at the current block */
    double *w;           /* their weights (normalised for linear) */
    merge_cut *cut;      /* TIES, per input: */
    uint32_t **cand;     /* gathered magnitudes, cand_cap each */
    float *blk;          /* trimmed task vectors of one block, MERGE_BLOCK each */
    int cand_n;          /* gather buffers allocated */
    size_t cand_cap;
    uint32_t *cand_buf;
    uint32_t sample[MERGE_SAMPLE];
} merge_work;

static void merge_work_deinit(merge_work *wk)
{
    free(wk->x);
    free(wk->xt);
    free(wk->xb);
    free(wk->w);
    free(wk->cut);
    free(wk->cand);
    free(wk->blk);
    free(wk->cand_buf);
    memset(wk, 0, sizeof *wk);
}

static int merge_work_reserve_inputs(merge_work *wk, int n_in, err *e)
{
    if (n_in <= wk->cap_in)
        return 0;
    free(wk->x);
    free(wk->xt);
    free(wk->xb);
    free(wk->w);
    free(wk->cut);
    free(wk->cand);
    free(wk->blk);
    wk->x = calloc((size_t)n_in, sizeof *wk->x);
    wk->xt = calloc((size_t)n_in, sizeof *wk->xt);
    wk->xb = calloc((size_t)n_in, sizeof *wk->xb);
    wk->w = calloc((size_t)n_in, sizeof *wk->w);
    wk->cut = calloc((size_t)n_in, sizeof *wk->cut);
    wk->cand = calloc((size_t)n_in, sizeof *wk->cand);
    wk->blk = malloc((size_t)n_in * MERGE_BLOCK * sizeof *wk->blk);
    if (!wk->x || !wk->xt || !wk->xb || !wk->w || !wk->cut || !wk->cand || !wk->blk) {
        wk->cap_in = 0;
        return err_set(e, GTRT_ENOMEM, "merge: out of memory");
    }
    wk->cap_in = n_in;
    return 0;
}

static int merge_work_reserve_cand(merge_work *wk, int m, size_t maxn, err *e)
{
    if (m > wk->cand_n || maxn > wk->cand_cap) {
        int n = m > wk->cand_n ? m : wk->cand_n;
        size_t cap = maxn > wk->cand_cap ? maxn : wk->cand_cap;
        free(wk->cand_buf);
        wk->cand_buf = (size_t)n <= SIZE_MAX / sizeof(uint32_t) / cap
                           ? malloc((size_t)n * cap * sizeof(uint32_t))
                           : NULL;
        if (!wk->cand_buf) {
            wk->cand_n = 0;
            wk->cand_cap = 0;
            return err_set(e, GTRT_ENOMEM, "merge: out of memory for TIES scratch");
        }
        wk->cand_n = n;
        wk->cand_cap = cap;
    }
    for (int i = 0; i < m; i++)
        wk->cand[i] = wk->cand_buf + (size_t)i * wk->cand_cap;
    return 0;
}

/* Pick the inputs with a non-zero weight and make room for the merge. */
static int merge_work_prepare(merge_work *wk, const merge_opts *o, const merge_tset *base,
                              const merge_tset *const *in, const double *w, int n_in, err *e)
{
    int rc = merge_work_reserve_inputs(wk, n_in, e);
    if (rc)
        return rc;
    double total = 0.0;
    wk->m = 0;
    for (int i = 0; i < n_in; i++) {
        assert(w[i] >= 0.0 && in[i]->numel == base->numel);
        if (w[i] > 0.0) {
            wk->x[wk->m] = in[i]->data;
            wk->w[wk->m++] = w[i];
            total += w[i];
        }
    }
    assert(wk->m > 0 && total > 0.0);
    if (o->combine == MERGE_LINEAR) {
        for (int i = 0; i < wk->m; i++)
            wk->w[i] /= total;
        return 0;
    }
    size_t maxn = 1;
    for (int t = 0; t < base->n; t++)
        maxn = base->t[t].numel > maxn ? base->t[t].numel : maxn;
    return merge_work_reserve_cand(wk, wk->m, maxn, e);
}

/* The thresholds of every input on one tensor (wk->xt set). */
static void merge_work_cuts(merge_work *wk, const float *b, size_t n, size_t k)
{
    if (k >= n) {
        for (int i = 0; i < wk->m; i++)
            wk->cut[i] = (merge_cut){.thr = 0};
        return;
    }
    for (int i = 0; i < wk->m; i++)
        merge_bracket(wk->xt[i], b, n, k, wk->sample, &wk->cut[i]);
    merge_scan(wk->xt, b, n, wk->m, wk->cut, wk->cand);
    for (int i = 0; i < wk->m; i++) {
        if (merge_cut_finish(&wk->cut[i], wk->cand[i], k) == 0)
            continue;
        wk->cut[i].lo = 0;
        wk->cut[i].hi = UINT32_MAX;
        merge_scan(&wk->xt[i], b, n, 1, &wk->cut[i], &wk->cand[i]);
        int rc = merge_cut_finish(&wk->cut[i], wk->cand[i], k);
        assert(rc == 0);
        (void)rc;
    }
}

static void merge_work_ties(merge_work *wk, const merge_opts *o, const float *b, size_t n,
                            float *out)
{
    merge_work_cuts(wk, b, n, merge_keep_count(n, o->density));
    size_t j0 = 0;
    for (; j0 < n; j0 += MERGE_BLOCK) {
        for (int i = 0; i < wk->m; i++)
            wk->xb[i] = wk->xt[i] + j0;
        if (n - j0 >= MERGE_BLOCK)
            merge_block(wk->xb, b + j0, wk->cut, wk->w, wk->m, MERGE_BLOCK, o->lambda, wk->blk,
                        out + j0);
        else
            merge_block(wk->xb, b + j0, wk->cut, wk->w, wk->m, n - j0, o->lambda, wk->blk,
                        out + j0);
    }
}

/* Tensor by tensor: a tensor's trimming thresholds depend on all of it. */
static void merge_work_run(merge_work *wk, const merge_opts *o, const merge_tset *base,
                           merge_tset *out)
{
    for (int t = 0; t < base->n; t++) {
        size_t off = base->t[t].offset, n = base->t[t].numel;
        for (int i = 0; i < wk->m; i++)
            wk->xt[i] = wk->x[i] + off;
        if (o->combine == MERGE_LINEAR)
            merge_linear_combine(wk->xt, wk->w, wk->m, n, out->data + off);
        else
            merge_work_ties(wk, o, base->data + off, n, out->data + off);
    }
}

int merge_sets(const merge_opts *o, const merge_tset *base, const merge_tset *const *in,
               const double *w, int n_in, merge_tset *out, err *e)
{
    merge_work *wk = calloc(1, sizeof *wk);
    if (!wk)
        return err_set(e, GTRT_ENOMEM, "merge: out of memory");
    int rc = merge_work_prepare(wk, o, base, in, w, n_in, e);
    if (rc == 0)
        merge_work_run(wk, o, base, out);
    merge_work_deinit(wk);
    free(wk);
    return rc;
}

/* ==== the incremental merger ==== */

#define MERGE_SOURCES_CAP 2048

struct merger {
    merge_opts o;
    merge_tset *base, *teacher;
    merge_tset **pending;
    char **label;
    int n_pending, cap_pending;
    uint64_t n_merged, version;
    merge_work work;
    char sources[MERGE_SOURCES_CAP]; /* labels merged so far, comma-separated */
};

int merge_new(const merge_opts *o, merge_tset *base, merger **out, err *e)
{
    *out = NULL;
    int rc = merge_opts_check(o, e);
    if (rc == 0)
        rc = merge_tset_check_finite(base, "merge base", e);
    if (rc)
        return rc;
    merger *m = calloc(1, sizeof *m);
    if (!m)
        return err_set(e, GTRT_ENOMEM, "merge: out of memory");
    if ((rc = merge_tset_clone(base, &m->teacher, e))) {
        free(m);
        return rc;
    }
    m->o = *o;
    m->base = base;
    *out = m;
    return 0;
}

static void merge_drop_pending(merger *m)
{
    for (int i = 0; i < m->n_pending; i++) {
        merge_tset_free(m->pending[i]);
        free(m->label[i]);
    }
    m->n_pending = 0;
}

void merge_free(merger *m)
{
    if (!m)
        return;
    merge_drop_pending(m);
    free(m->pending);
    free(m->label);
    merge_tset_free(m->base);
    merge_tset_free(m->teacher);
    merge_work_deinit(&m->work);
    free(m);
}

int merge_add(merger *m, merge_tset *ckpt, const char *label, err *e)
{
    const char *what = label ? label : "checkpoint";
    int rc = merge_tset_check_layout(m->base, ckpt, what, e);
    if (rc == 0)
        rc = merge_tset_check_finite(ckpt, what, e);
    if (rc)
        return rc;
    if (m->n_pending == m->cap_pending) {
        int cap = m->cap_pending ? 2 * m->cap_pending : 4;
        merge_tset **p = realloc(m->pending, sizeof *p * (size_t)cap);
        if (p)
            m->pending = p;
        char **l = realloc(m->label, sizeof *l * (size_t)cap);
        if (l)
            m->label = l;
        if (!p || !l)
            return err_set(e, GTRT_ENOMEM, "merge: out of memory");
        m->cap_pending = cap;
    }
    char *lab = strdup(label ? label : "?");
    if (!lab)
        return err_set(e, GTRT_ENOMEM, "merge: out of memory");
    m->pending[m->n_pending] = ckpt;
    m->label[m->n_pending++] = lab;
    return 0;
}

int merge_n_pending(const merger *m) { return m->n_pending; }
const merge_tset *merge_teacher(const merger *m) { return m->teacher; }
const merge_tset *merge_base(const merger *m) { return m->base; }
uint64_t merge_count(const merger *m) { return m->n_merged; }
uint64_t merge_version(const merger *m) { return m->version; }
const merge_opts *merge_options(const merger *m) { return &m->o; }

/* Append a label to the provenance list, ending it with "..." when full. */
static void merge_note_source(merger *m, const char *label)
{
    size_t at = strlen(m->sources), room = sizeof m->sources - at;
    if (at >= 3 && strcmp(m->sources + at - 3, "...") == 0)
        return;
    int need = snprintf(m->sources + at, room, "%s%s", at ? "," : "", label);
    if (need < 0 || (size_t)need >= room) {
        m->sources[at] = '\0';
        if (room > 4)
            snprintf(m->sources + at, room, "%s...", at ? "," : "");
    }
}

int merge_run(merger *m, err *e)
{
    int k = m->n_pending;
    if (k == 0)
        return 0;
    const merge_tset **in = calloc((size_t)k + 1, sizeof *in);
    double *w = calloc((size_t)k + 1, sizeof *w);
    if (!in || !w) {
        free(in);
        free(w);
        return err_set(e, GTRT_ENOMEM, "merge: out of memory");
    }
    merge_weights(&m->o, m->n_merged, k, w);
    in[0] = m->teacher;
    for (int i = 0; i < k; i++)
        in[i + 1] = m->pending[i];
    int rc = merge_work_prepare(&m->work, &m->o, m->base, in, w, k + 1, e);
    if (rc == 0)
        merge_work_run(&m->work, &m->o, m->base, m->teacher);
    free(in);
    free(w);
    if (rc)
        return rc;
    for (int i = 0; i < k; i++)
        merge_note_source(m, m->label[i]);
    merge_drop_pending(m);
    m->n_merged += (uint64_t)k;
    m->version++;
    return 0;
}

/* The shortest %g form that reads back as the same double. */
static void merge_fmt_double(char *buf, size_t cap, double x)
{
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, x);
        if (strtod(buf, NULL) == x)
            return;
    }
}

int merge_save(const merger *m, const char *path, const st_kv *extra, int n_extra, err *e)
{
    enum { NPROV = 8 };
    char alpha[32], density[32], lambda[32], count[32], version[32];
    merge_fmt_double(alpha, sizeof alpha, m->o.alpha);
    merge_fmt_double(density, sizeof density, m->o.density);
    merge_fmt_double(lambda, sizeof lambda, m->o.lambda);
    snprintf(count, sizeof count, "%llu", (unsigned long long)m->n_merged);
    snprintf(version, sizeof version, "%llu", (unsigned long long)m->version);
    st_kv *kv = calloc((size_t)(NPROV + n_extra), sizeof *kv);
    if (!kv)
        return err_set(e, GTRT_ENOMEM, "%s: out of memory", path);
    kv[0] = (st_kv){"merge_method", merge_method_name(m->o.method)};
    kv[1] = (st_kv){"merge_combine", merge_combine_name(m->o.combine)};
    kv[2] = (st_kv){"merge_alpha", alpha};
    kv[3] = (st_kv){"merge_density", density};
    kv[4] = (st_kv){"merge_lambda", lambda};
    kv[5] = (st_kv){"merge_count", count};
    kv[6] = (st_kv){"merge_version", version};
    kv[7] = (st_kv){"merge_sources", m->sources};
    for (int i = 0; i < n_extra; i++)
        kv[NPROV + i] = extra[i];
    int rc = merge_tset_save(m->teacher, path, kv, NPROV + n_extra, e);
    free(kv);
    return rc;
}
