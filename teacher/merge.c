/* Checkpoint merging for the teacher: tensor sets loaded from and written to
 * safetensors, SMA/EMA weights, linear and TIES combination, and the
 * incremental merger the teacher service drives (see merge.h for the exact
 * rules, which tests/python/test_merge_numpy.py restates independently). */
#include "teacher/merge.h"

#include <assert.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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

/* Memory for a set's floats, 64-byte aligned for the vector loops. A set
 * of a real model is large and a merger frees one per checkpoint, so large
 * ones ask for transparent huge pages where the system offers them on
 * request: touching 4 KiB pages one fault at a time, and returning them,
 * can cost more than the merge itself. */
static void *merge_alloc_big(size_t bytes)
{
    const size_t huge = (size_t)2 << 20;
    void *p = NULL;
#ifdef MADV_HUGEPAGE
    if (bytes >= 4 * huge) {
        if (posix_memalign(&p, huge, bytes) != 0)
            return NULL;
        madvise(p, bytes, MADV_HUGEPAGE); /* advice only: fine if refused */
        return p;
    }
#endif
    return posix_memalign(&p, 64, bytes) == 0 ? p : NULL;
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
    size_t bytes = ((off ? off : 1) * sizeof(float) + 63) & ~(size_t)63;
    void *p = merge_alloc_big(bytes);
    if (!p) {
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

/* Whether x[0..n) holds a NaN or infinity: all exponent bits set. Integer
 * tests keep the pass branch-free and vectorisable. */
static int merge_nonfinite(const float *x, size_t n)
{
    uint32_t bad = 0;
    for (size_t j = 0; j < n; j++) {
        uint32_t u;
        memcpy(&u, &x[j], sizeof u);
        bad |= (u & 0x7f800000u) == 0x7f800000u;
    }
    return bad != 0;
}

int merge_tset_check_finite(const merge_tset *ts, const char *what, err *e)
{
    for (int i = 0; i < ts->n; i++) {
        if (merge_nonfinite(ts->data + ts->t[i].offset, ts->t[i].numel))
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
 * The threshold of an input on a tensor (its k-th largest |tau|) is found
 * in one pass, Floyd-Rivest style: a small sample of |tau| brackets the
 * k-th largest between two magnitudes with a wide safety margin, the pass
 * counts the entries above the bracket and gathers those inside it with
 * their indices, and a radix selection over the few gathered finishes. If
 * the bracket misses (the counts show it), the input is scanned again with
 * the bracket opened to everything, so the result is exact either way.
 * The indices turn the rule for entries equal to the threshold (the lowest
 * indices first) into a cutoff index, so the merge pass trims with a
 * threshold that is constant over stretches: one higher from the cutoff on.
 *
 * A merger finds a checkpoint's thresholds when merge_add checks it, and
 * the teacher's while merge_run writes it (a sample of the output is
 * merged first for the bracket, then the merge pass gathers its own
 * output), so in steady state merge_run reads each input once. */
#define MERGE_SAMPLE_RUNS 128
#define MERGE_SAMPLE_RUN 64
#define MERGE_SAMPLE (MERGE_SAMPLE_RUNS * MERGE_SAMPLE_RUN)
#define MERGE_MAG_MAX 0x7fffffffu
#define MERGE_MAX_THREADS 64
/* Smaller tensors are not split between threads: waking a worker would
 * cost more than it saves. */
#define MERGE_SPLIT_MIN ((size_t)1 << 16)

static inline uint32_t merge_mag_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u & MERGE_MAG_MAX;
}

/* The value at rank r (0 = largest) of a[0..n), all within [lo, hi], and
 * how many entries are greater than it and equal to it. Radix selection: a
 * histogram of 2048 bins over [lo, hi] finds the bin holding rank r, whose
 * entries move to the front of a (and their indices to the front of idx,
 * if given), in order; then the same within that bin, until the bin is one
 * value. So the entries equal to the result end up first, in their
 * original order, and no pass mispredicts a branch on every other entry as
 * a quickselect would. */
static uint32_t merge_rank(uint32_t *a, uint32_t *idx, size_t n, size_t r, uint32_t lo,
                           uint32_t hi, size_t *greater, size_t *equal)
{
    enum { NB = 2048 };
    size_t cnt[NB], gt = 0;
    assert(r < n && lo <= hi);
    while (lo < hi) {
        int s = 0;
        while (((hi - lo) >> s) >= NB)
            s++;
        uint32_t bin = (hi - lo) >> s;
        memset(cnt, 0, (bin + 1) * sizeof *cnt);
        for (size_t j = 0; j < n; j++)
            cnt[(a[j] - lo) >> s]++;
        size_t above = 0;
        while (above + cnt[bin] <= r)
            above += cnt[bin--];
        /* One bin of 2048 is rarely hit, or hit throughout (all entries
         * equal): either way the branch predicts well. */
        size_t m = 0;
        for (size_t j = 0; j < n; j++) {
            if (((a[j] - lo) >> s) != bin)
                continue;
            a[m] = a[j];
            if (idx)
                idx[m] = idx[j];
            m++;
        }
        gt += above;
        r -= above;
        n = m;
        lo += bin << s;
        uint32_t width = s ? (1u << s) - 1 : 0;
        if (hi - lo > width)
            hi = lo + width;
    }
    *greater = gt;
    *equal = n;
    return lo;
}

/* Trimming of one input on one tensor. */
typedef struct merge_cut {
    uint32_t lo, hi;  /* bracket of the threshold: lo <= thr <= hi */
    size_t above, nc; /* entries above hi; entries gathered in [lo, hi] */
    uint32_t thr;     /* the k-th largest magnitude */
    /* Entries equal to thr are kept below this index only, so that exactly
     * k are kept, the lowest indices first (SIZE_MAX: all are). */
    size_t cutoff;
} merge_cut;

/* Finish a cut from its pass (cand[0..nc) gathered in index order, at the
 * tensor indices idx): 0, or -1 when the bracket missed the k-th. Zeros
 * are never gathered (the bracket starts at 1 at the lowest: after a merge
 * whole stretches of task vectors can be zero), so when fewer than k
 * entries are counted and gathered from 1 up, the k-th largest is 0. */
static int merge_cut_finish(merge_cut *c, uint32_t *cand, uint32_t *idx, size_t k)
{
    if (k > c->above + c->nc && c->lo <= 1) {
        c->thr = 0;
        c->cutoff = SIZE_MAX;
        return 0;
    }
    if (k <= c->above || k > c->above + c->nc)
        return -1;
    size_t greater, equal;
    c->thr = merge_rank(cand, idx, c->nc, k - c->above - 1, c->lo, c->hi, &greater, &equal);
    size_t quota = k - c->above - greater;
    /* Zeros need no cutoff: a zero task-vector entry never votes. */
    c->cutoff = equal > quota && c->thr != 0 ? idx[quota] : SIZE_MAX;
    return 0;
}

/* The bracket of everything but zeros. */
static void merge_cut_open(merge_cut *c)
{
    c->lo = 1;
    c->hi = MERGE_MAG_MAX;
}

/* Start positions of the sample runs (consecutive entries) of an n-entry
 * tensor, drawn from a seed fixed by n, so a merge is deterministic. */
static void merge_sample_at(size_t n, size_t *at)
{
    rng r;
    rng_init(&r, 0x6d65726765ull ^ (uint64_t)n);
    for (int run = 0; run < MERGE_SAMPLE_RUNS; run++)
        at[run] = (size_t)rng_below(&r, (uint64_t)(n - MERGE_SAMPLE_RUN));
}

/* Ask for the sample runs of p all at once: fetched one run after the
 * other, a sample would cost a memory latency per run. */
static void merge_prefetch_runs(const float *p, const size_t *at)
{
    for (int run = 0; run < MERGE_SAMPLE_RUNS; run++)
        for (int j = 0; j < MERGE_SAMPLE_RUN; j += 16)
            __builtin_prefetch(p + at[run] + j);
}

/* Bracket the k-th largest of n magnitudes from a sample of them (s,
 * MERGE_SAMPLE entries; tmp is scratch of that size): the sample's ranks a
 * margin of many standard deviations either side (more since runs are
 * correlated). */
static void merge_bracket_from(const uint32_t *s, uint32_t *tmp, size_t n, size_t k,
                               merge_cut *c)
{
    double p = (double)k / (double)n, mid = p * MERGE_SAMPLE;
    double margin = 4.0 * sqrt(MERGE_SAMPLE * p * (1.0 - p)) + 16.0;
    size_t gt, eq;
    merge_cut_open(c);
    if (mid - margin >= 1.0) {
        memcpy(tmp, s, MERGE_SAMPLE * sizeof *tmp);
        c->hi = merge_rank(tmp, NULL, MERGE_SAMPLE, (size_t)(mid - margin), 0, MERGE_MAG_MAX,
                           &gt, &eq);
    }
    if (mid + margin <= MERGE_SAMPLE - 2.0) {
        memcpy(tmp, s, MERGE_SAMPLE * sizeof *tmp);
        c->lo = merge_rank(tmp, NULL, MERGE_SAMPLE, (size_t)(mid + margin) + 1, 0,
                           MERGE_MAG_MAX, &gt, &eq);
    }
    c->lo = c->lo < 1 ? 1 : c->lo;
    c->hi = c->hi < c->lo ? c->lo : c->hi;
}

/* ==== TIES and linear: the loops ==== */

/* One part's gathering of magnitudes (see merge_gather_one). */
typedef struct merge_gather {
    uint32_t *cand;   /* the part's region: room for one entry per entry it reads */
    uint32_t *idx;    /* the same for their indices in the tensor */
    size_t nc, above; /* gathered so far; counted above hi */
    int32_t lo, hi;   /* the bracket (magnitude bits, so never negative) */
    uint32_t bad;     /* merge_scan: a NaN or infinity was read */
} merge_gather;

/* One TIES pass over a tensor: tau_i = x_i - tb, trimmed at thr_i, voted
 * and averaged, out = ob + lam * mean (tb and ob are both the base; the
 * sample runs merged on their own point them elsewhere). */
typedef struct merge_pass {
    int m;
    const float *const *x;
    const float *tb, *ob;
    float *out;
    const int32_t *thr; /* magnitude bits: an entry is kept from thr up */
    const double *wd;   /* weights, for the vote (and the double mean) */
    const float *wf;    /* weights times 2^-e, the largest in [1, 2): float32 */
    float lam;
    double lamd;
    int dmean; /* weights too far apart for the float mean (merge_work_prepare) */
} merge_pass;

/* Count u if above the bracket, and append it to the candidates if inside.
 * The store always happens and the count advances only inside: no branch
 * to mispredict, and the region has room since nc never passes the number
 * of entries read. */
static inline void merge_gather_one(merge_gather *g, uint32_t u, size_t j)
{
    g->above += u > (uint32_t)g->hi;
    g->cand[g->nc] = u;
    g->idx[g->nc] = (uint32_t)j;
    g->nc += u - (uint32_t)g->lo <= (uint32_t)(g->hi - g->lo);
}

/* Pass over x[j0..j1) of one input: gather |x - b| and note non-finite x. */
static void merge_scan_ref(const float *x, const float *b, size_t j0, size_t j1, merge_gather *g)
{
    for (size_t j = j0; j < j1; j++) {
        uint32_t u;
        memcpy(&u, &x[j], sizeof u);
        g->bad |= (u & 0x7f800000u) == 0x7f800000u;
        merge_gather_one(g, merge_mag_bits(x[j] - b[j]), j);
    }
}

static inline float merge_trimmed(const merge_pass *p, int i, size_t j)
{
    float v = p->x[i][j] - p->tb[j];
    return (int32_t)merge_mag_bits(v) >= p->thr[i] ? v : 0.0f;
}

/* The sign election: the weighted sum of the trimmed task vectors, in
 * double; it is never -0, since it starts at +0. */
static inline double merge_vote(const merge_pass *p, size_t j)
{
    double s = 0.0;
    for (int i = 0; i < p->m; i++)
        s += p->wd[i] * (double)merge_trimmed(p, i, j);
    return s;
}

/* A zero entry has no sign, so it never agrees; the vote's ties go to +. */
static inline int merge_agrees(float t, double s) { return t != 0.0f && (t < 0.0f) == (s < 0.0); }

/* The disjoint mean in float32 (the weights are within 2^60 of each other,
 * so none underflows), the result rounded once more by adding it to the
 * base in float32. Where no input agrees the mean is 0/1. */
static inline float merge_entry_f(const merge_pass *p, size_t j)
{
    double s = merge_vote(p, j);
    float num = 0.0f, den = 0.0f;
    for (int i = 0; i < p->m; i++) {
        float t = merge_trimmed(p, i, j);
        if (merge_agrees(t, s)) {
            num += p->wf[i] * t;
            den += p->wf[i];
        }
    }
    return p->ob[j] + p->lam * (num / (den > 0.0f ? den : 1.0f));
}

/* The disjoint mean in double, for weights too far apart for float32. */
static inline float merge_entry_d(const merge_pass *p, size_t j)
{
    double s = merge_vote(p, j), num = 0.0, den = 0.0;
    for (int i = 0; i < p->m; i++) {
        float t = merge_trimmed(p, i, j);
        if (merge_agrees(t, s)) {
            num += p->wd[i] * (double)t;
            den += p->wd[i];
        }
    }
    return (float)((double)p->ob[j] + p->lamd * (num / (den > 0.0 ? den : 1.0)));
}

/* The TIES pass over [j0, j1), gathering |out - ob| when g is given. */
static void merge_ties_ref(const merge_pass *p, size_t j0, size_t j1, merge_gather *g)
{
    for (size_t j = j0; j < j1; j++) {
        float o = p->dmean ? merge_entry_d(p, j) : merge_entry_f(p, j);
        p->out[j] = o;
        if (g)
            merge_gather_one(g, merge_mag_bits(o - p->ob[j]), j);
    }
}

/* Linear: the weighted sum (weights normalised) in double, rounded once. */
static void merge_linear_ref(const float *const *x, const double *w, int m, size_t j0, size_t j1,
                             float *out)
{
    for (size_t j = j0; j < j1; j++) {
        double acc = 0.0;
        for (int i = 0; i < m; i++)
            acc += w[i] * (double)x[i][j];
        out[j] = (float)acc;
    }
}

/* The same loops, vectorised for x86 CPUs that have AVX2 or AVX-512. */
#if defined(__x86_64__) && defined(__GNUC__)
#define MERGE_X86 1
#include <immintrin.h>

/* For AVX2 stream compaction: the lanes selected by each 8-bit mask,
 * first to last (filled once by merge_isa_init). */
static int32_t merge_lut8[256][8] __attribute__((aligned(32)));

#if !defined(__clang__)
#pragma GCC diagnostic push
/* Vector arguments of always-inlined helpers never cross an ABI boundary. */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
#define MK(name) merge_avx2_##name
#define MK_LANES 8
#define MK_TARGET __attribute__((target("avx2")))
#include "teacher/merge_simd.h"
#undef MK
#undef MK_LANES
#undef MK_TARGET
#define MK(name) merge_avx512_##name
#define MK_LANES 16
#define MK_TARGET __attribute__((target("avx512f,avx512dq")))
#include "teacher/merge_simd.h"
#undef MK
#undef MK_LANES
#undef MK_TARGET
#if !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

typedef struct merge_isa {
    const char *name;
    void (*scan)(const float *x, const float *b, size_t j0, size_t j1, merge_gather *g);
    void (*ties)(const merge_pass *p, size_t j0, size_t j1, merge_gather *g);
    void (*linear)(const float *const *x, const double *w, int m, size_t j0, size_t j1,
                   float *out);
} merge_isa;

/* Widest first. */
static const merge_isa merge_isas[] = {
#ifdef MERGE_X86
    {"avx512", merge_avx512_scan, merge_avx512_ties, merge_avx512_linear},
    {"avx2", merge_avx2_scan, merge_avx2_ties, merge_avx2_linear},
#endif
    {"portable", merge_scan_ref, merge_ties_ref, merge_linear_ref},
};
enum { MERGE_N_ISA = sizeof merge_isas / sizeof merge_isas[0] };

static const merge_isa *merge_isa_cur;
static pthread_once_t merge_isa_once = PTHREAD_ONCE_INIT;

static int merge_isa_ok(const merge_isa *isa)
{
#ifdef MERGE_X86
    __builtin_cpu_init();
    if (strcmp(isa->name, "avx512") == 0)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
    if (strcmp(isa->name, "avx2") == 0)
        return __builtin_cpu_supports("avx2");
#endif
    return 1;
}

static void merge_isa_init(void)
{
#ifdef MERGE_X86
    for (int bits = 0; bits < 256; bits++) {
        int at = 0;
        for (int l = 0; l < 8; l++)
            if (bits >> l & 1)
                merge_lut8[bits][at++] = l;
        while (at < 8)
            merge_lut8[bits][at++] = 0;
    }
#endif
    for (int i = 0; i < MERGE_N_ISA && !merge_isa_cur; i++)
        if (merge_isa_ok(&merge_isas[i]))
            merge_isa_cur = &merge_isas[i];
}

static const merge_isa *merge_isa_get(void)
{
    pthread_once(&merge_isa_once, merge_isa_init);
    return merge_isa_cur;
}

const char *merge_simd(void) { return merge_isa_get()->name; }

int merge_simd_use(const char *name, err *e)
{
    merge_isa_get();
    for (int i = 0; i < MERGE_N_ISA; i++) {
        if (strcmp(merge_isas[i].name, name) != 0)
            continue;
        if (!merge_isa_ok(&merge_isas[i]))
            return err_set(e, GTRT_EINVAL, "merge: this CPU cannot run the %s loops", name);
        merge_isa_cur = &merge_isas[i];
        return 0;
    }
    return err_set(e, GTRT_EINVAL, "merge: unknown vector path \"%s\"", name);
}

/* ==== threads ==== */

/* A job runs as parts 0..np-1 at once: part 0 on the calling thread, the
 * others on workers, which sleep between jobs. */
typedef void merge_job_fn(void *arg, int part, int np);

typedef struct merge_pool merge_pool;

typedef struct merge_worker {
    merge_pool *pool;
    int id;
    pthread_t th;
} merge_worker;

struct merge_pool {
    int n; /* threads, the caller's included */
    merge_worker *w;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    uint64_t gen; /* jobs started */
    int busy;     /* workers not done with the current job */
    int stop;
    merge_job_fn *fn;
    void *arg;
    int np;
};

static void *merge_worker_main(void *a)
{
    merge_worker *w = a;
    merge_pool *p = w->pool;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (p->gen == seen && !p->stop)
            pthread_cond_wait(&p->wake, &p->mu);
        if (p->stop)
            break;
        seen = p->gen;
        merge_job_fn *fn = p->fn;
        void *arg = p->arg;
        int np = p->np;
        pthread_mutex_unlock(&p->mu);
        if (w->id < np)
            fn(arg, w->id, np);
        pthread_mutex_lock(&p->mu);
        if (--p->busy == 0)
            pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void merge_pool_stop(merge_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++)
        pthread_join(p->w[i].th, NULL);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    free(p->w);
    free(p);
}

static int merge_pool_start(int n, merge_pool **out, err *e)
{
    *out = NULL;
    merge_pool *p = calloc(1, sizeof *p);
    if (!p || !(p->w = calloc((size_t)n, sizeof *p->w))) {
        free(p);
        return err_set(e, GTRT_ENOMEM, "merge: out of memory");
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    p->n = 1;
    for (int i = 1; i < n; i++) {
        p->w[i] = (merge_worker){.pool = p, .id = i};
        int rc = pthread_create(&p->w[i].th, NULL, merge_worker_main, &p->w[i]);
        if (rc != 0) {
            merge_pool_stop(p);
            return err_set(e, GTRT_ENOMEM, "merge: cannot start a thread: %s", strerror(rc));
        }
        p->n++;
    }
    *out = p;
    return 0;
}

/* Run fn as np parts (np <= the pool's threads; no pool: one part). */
static void merge_pool_run(merge_pool *p, int np, merge_job_fn *fn, void *arg)
{
    if (!p || np <= 1) {
        fn(arg, 0, 1);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->np = np;
    p->busy = p->n - 1;
    p->gen++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, np);
    pthread_mutex_lock(&p->mu);
    while (p->busy)
        pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

/* Part `part` of np of [0, n): boundaries on multiples of 64 entries keep
 * every part's vectors whole and its cache lines its own. */
static void merge_part(size_t n, int part, int np, size_t *j0, size_t *j1)
{
    *j0 = part == 0 ? 0 : (n / (size_t)np * (size_t)part) & ~(size_t)63;
    *j1 = part == np - 1 ? n : (n / (size_t)np * (size_t)(part + 1)) & ~(size_t)63;
}

/* ==== one merge ==== */

/* Scratch of a merge, kept by a merger between runs: the gather buffer is
 * as large as the biggest tensor (a bracket may hold all of it), and fresh
 * pages for it on every merge would cost more than the merge. */
typedef struct merge_work {
    const merge_isa *isa;
    merge_pool *pool;         /* NULL: the calling thread alone */
    int cap_in, m;            /* inputs room; inputs with a non-zero weight */
    const float **x;          /* their data */
    const merge_cut **cached; /* TIES: their cuts per tensor, or NULL to find */
    double *w;                /* their weights (normalised for linear) */
    float *wf;                /* TIES: weights times 2^-e (see merge_pass) */
    const float **xt;         /* inputs at the current tensor */
    const float **xs;         /* inputs at a sample run */
    merge_cut *cut;           /* the current tensor's cut per input */
    int32_t *thr;             /* their thresholds */
    int32_t *thrp;            /* per thread, the thresholds at its position */
    int dmean;                /* weights too far apart for the float mean */
    uint32_t *cand, *idx;     /* gathered magnitudes and their indices */
    size_t cand_cap;
    merge_gather gath[MERGE_MAX_THREADS];
    size_t at[MERGE_SAMPLE_RUNS];
    uint32_t sample[MERGE_SAMPLE], tmp[MERGE_SAMPLE];
    float sout[MERGE_SAMPLE_RUN];
} merge_work;

static void merge_work_free_inputs(merge_work *wk)
{
    free(wk->x);
    free(wk->cached);
    free(wk->w);
    free(wk->wf);
    free(wk->xt);
    free(wk->xs);
    free(wk->cut);
    free(wk->thr);
    free(wk->thrp);
    wk->cap_in = 0;
}

static void merge_work_deinit(merge_work *wk)
{
    merge_work_free_inputs(wk);
    free(wk->cand);
    free(wk->idx);
    wk->cand = wk->idx = NULL;
    wk->cand_cap = 0;
}

static int merge_work_reserve_inputs(merge_work *wk, int n_in, err *e)
{
    if (n_in <= wk->cap_in)
        return 0;
    merge_work_free_inputs(wk);
    size_t n = (size_t)n_in;
    wk->x = calloc(n, sizeof *wk->x);
    wk->cached = calloc(n, sizeof *wk->cached);
    wk->w = calloc(n, sizeof *wk->w);
    wk->wf = calloc(n, sizeof *wk->wf);
    wk->xt = calloc(n, sizeof *wk->xt);
    wk->xs = calloc(n, sizeof *wk->xs);
    wk->cut = calloc(n, sizeof *wk->cut);
    wk->thr = calloc(n, sizeof *wk->thr);
    wk->thrp = calloc(n * MERGE_MAX_THREADS, sizeof *wk->thrp);
    if (!wk->x || !wk->cached || !wk->w || !wk->wf || !wk->xt || !wk->xs || !wk->cut ||
        !wk->thr || !wk->thrp) {
        merge_work_free_inputs(wk);
        return err_set(e, GTRT_ENOMEM, "merge: out of memory");
    }
    wk->cap_in = n_in;
    return 0;
}

static size_t merge_max_numel(const merge_tset *ts)
{
    size_t maxn = 1;
    for (int t = 0; t < ts->n; t++)
        maxn = ts->t[t].numel > maxn ? ts->t[t].numel : maxn;
    return maxn;
}

/* Room to gather every entry of the largest tensor, and the loops to use. */
static int merge_work_begin(merge_work *wk, merge_pool *pool, const merge_tset *base, err *e)
{
    wk->isa = merge_isa_get();
    wk->pool = pool;
    size_t maxn = merge_max_numel(base);
    if (maxn <= wk->cand_cap)
        return 0;
    /* Indices are 32-bit. */
    if (maxn > UINT32_MAX)
        return err_set(e, GTRT_ERANGE, "merge: a tensor of %zu entries is too large for TIES",
                       maxn);
    free(wk->cand);
    free(wk->idx);
    wk->cand_cap = 0;
    wk->cand = malloc(maxn * sizeof *wk->cand);
    wk->idx = malloc(maxn * sizeof *wk->idx);
    if (!wk->cand || !wk->idx)
        return err_set(e, GTRT_ENOMEM, "merge: out of memory for TIES scratch");
    wk->cand_cap = maxn;
    return 0;
}

/* Pick the inputs with a non-zero weight and make room for the merge;
 * cached[i] (may be NULL) are input i's known cuts per tensor. */
static int merge_work_prepare(merge_work *wk, const merge_opts *o, merge_pool *pool,
                              const merge_tset *base, const merge_tset *const *in,
                              const merge_cut *const *cached, const double *w, int n_in, err *e)
{
    int rc = merge_work_reserve_inputs(wk, n_in, e);
    if (rc == 0 && o->combine == MERGE_TIES)
        rc = merge_work_begin(wk, pool, base, e);
    if (rc)
        return rc;
    wk->isa = merge_isa_get();
    wk->pool = pool;
    double total = 0.0, wmax = 0.0, wmin = INFINITY;
    wk->m = 0;
    for (int i = 0; i < n_in; i++) {
        assert(w[i] >= 0.0 && in[i]->numel == base->numel);
        if (w[i] > 0.0) {
            wk->x[wk->m] = in[i]->data;
            wk->cached[wk->m] = cached ? cached[i] : NULL;
            wk->w[wk->m++] = w[i];
            total += w[i];
            wmax = fmax(wmax, w[i]);
            wmin = fmin(wmin, w[i]);
        }
    }
    assert(wk->m > 0 && total > 0.0);
    /* TIES' float32 weights: scaled by a power of two, which rounds
     * nothing, so integer SMA weights stay exact. */
    int scale = ilogb(wmax);
    for (int i = 0; i < wk->m; i++) {
        if (o->combine == MERGE_LINEAR)
            wk->w[i] /= total;
        wk->wf[i] = (float)ldexp(wk->w[i], -scale);
    }
    /* Below 2^-60 of the largest, a float32 weight times a tiny task-vector
     * entry could underflow; such merges keep the mean in double. */
    wk->dmean = wmin < ldexp(wmax, -60);
    return 0;
}

static int merge_parts(const merge_work *wk, size_t n)
{
    return wk->pool && n >= MERGE_SPLIT_MIN ? wk->pool->n : 1;
}

/* What one parallel pass over a tensor does. */
typedef struct merge_job {
    merge_work *wk;
    size_t n;
    const float *x, *b;     /* scan */
    const merge_pass *pass; /* TIES */
    int gathering;
    int32_t lo, hi;
    float *out; /* linear */
} merge_job;

static merge_gather *merge_job_gather(merge_job *jb, int part, size_t j0)
{
    merge_gather *g = &jb->wk->gath[part];
    *g = (merge_gather){.cand = jb->wk->cand + j0, .idx = jb->wk->idx + j0, .lo = jb->lo,
                        .hi = jb->hi};
    return g;
}

static void merge_scan_part(void *arg, int part, int np)
{
    merge_job *jb = arg;
    size_t j0, j1;
    merge_part(jb->n, part, np, &j0, &j1);
    jb->wk->isa->scan(jb->x, jb->b, j0, j1, merge_job_gather(jb, part, j0));
}

/* A part of the TIES pass, in stretches between the inputs' cutoffs:
 * from an input's cutoff on, an entry equal to its threshold is dropped,
 * which is the threshold one higher. */
static void merge_ties_part(void *arg, int part, int np)
{
    merge_job *jb = arg;
    merge_work *wk = jb->wk;
    size_t j0, j1;
    merge_part(jb->n, part, np, &j0, &j1);
    merge_gather *g = jb->gathering ? merge_job_gather(jb, part, j0) : NULL;
    merge_pass q = *jb->pass;
    int32_t *thr = wk->thrp + (size_t)part * (size_t)wk->cap_in;
    q.thr = thr;
    for (size_t a = j0; a < j1;) {
        size_t b = j1;
        for (int i = 0; i < q.m; i++) {
            size_t c = wk->cut[i].cutoff;
            thr[i] = (int32_t)wk->cut[i].thr + (a >= c);
            if (c > a && c < b)
                b = c;
        }
        wk->isa->ties(&q, a, b, g);
        a = b;
    }
}

static void merge_linear_part(void *arg, int part, int np)
{
    merge_job *jb = arg;
    merge_work *wk = jb->wk;
    size_t j0, j1;
    merge_part(jb->n, part, np, &j0, &j1);
    wk->isa->linear(wk->xt, wk->w, wk->m, j0, j1, jb->out);
}

/* After a gathering pass in np parts: the totals into c, the candidates
 * moved together to the front of wk->cand; returns the parts' bad flags. */
static uint32_t merge_collect(merge_work *wk, int np, merge_cut *c)
{
    uint32_t bad = 0;
    c->above = c->nc = 0;
    for (int p = 0; p < np; p++) {
        const merge_gather *g = &wk->gath[p];
        if (g->cand != wk->cand + c->nc) {
            memmove(wk->cand + c->nc, g->cand, g->nc * sizeof *g->cand);
            memmove(wk->idx + c->nc, g->idx, g->nc * sizeof *g->idx);
        }
        c->above += g->above;
        c->nc += g->nc;
        bad |= g->bad;
    }
    return bad;
}

/* Count |x - b| above c's bracket and gather those inside; returns
 * whether x holds a NaN or infinity. */
static uint32_t merge_scan(merge_work *wk, const float *x, const float *b, size_t n, merge_cut *c)
{
    merge_job jb = {.wk = wk, .n = n, .x = x, .b = b, .lo = (int32_t)c->lo, .hi = (int32_t)c->hi};
    int np = merge_parts(wk, n);
    merge_pool_run(wk->pool, np, merge_scan_part, &jb);
    return merge_collect(wk, np, c);
}

/* The cut of input x keeping k < n entries; returns whether x holds a NaN
 * or infinity (the cut is then meaningless). */
static int merge_cut_input(merge_work *wk, const float *x, const float *b, size_t n, size_t k,
                           merge_cut *c)
{
    merge_cut_open(c);
    if (n >= 8 * MERGE_SAMPLE) {
        merge_sample_at(n, wk->at);
        merge_prefetch_runs(x, wk->at);
        merge_prefetch_runs(b, wk->at);
        size_t s = 0;
        for (int run = 0; run < MERGE_SAMPLE_RUNS; run++)
            for (size_t j = wk->at[run]; j < wk->at[run] + MERGE_SAMPLE_RUN; j++)
                wk->sample[s++] = merge_mag_bits(x[j] - b[j]);
        merge_bracket_from(wk->sample, wk->tmp, n, k, c);
    }
    uint32_t bad = merge_scan(wk, x, b, n, c);
    if (merge_cut_finish(c, wk->cand, wk->idx, k) == 0)
        return bad != 0;
    merge_cut_open(c);
    bad = merge_scan(wk, x, b, n, c);
    int rc = merge_cut_finish(c, wk->cand, wk->idx, k);
    assert(rc == 0);
    (void)rc;
    return bad != 0;
}

/* Bracket the k-th largest |out - base| of the pass before it runs: the
 * sample runs are merged on their own first. */
static void merge_bracket_output(merge_work *wk, const merge_pass *p, size_t n, size_t k,
                                 merge_cut *c)
{
    merge_cut_open(c);
    if (n < 8 * MERGE_SAMPLE)
        return;
    merge_sample_at(n, wk->at);
    for (int i = 0; i < p->m; i++)
        merge_prefetch_runs(p->x[i], wk->at);
    merge_prefetch_runs(p->tb, wk->at);
    merge_prefetch_runs(p->ob, wk->at);
    merge_pass q = *p;
    q.x = wk->xs;
    q.out = wk->sout;
    size_t s = 0;
    for (int run = 0; run < MERGE_SAMPLE_RUNS; run++) {
        size_t at = wk->at[run];
        for (int i = 0; i < p->m; i++)
            wk->xs[i] = p->x[i] + at;
        q.tb = p->tb + at;
        q.ob = p->ob + at;
        wk->isa->ties(&q, 0, MERGE_SAMPLE_RUN, NULL);
        for (int j = 0; j < MERGE_SAMPLE_RUN; j++)
            wk->sample[s++] = merge_mag_bits(wk->sout[j] - q.ob[j]);
    }
    merge_bracket_from(wk->sample, wk->tmp, n, k, c);
}

/* The pass, split between threads; gathers |out - base| into oc if given. */
static void merge_ties_split(merge_work *wk, const merge_pass *p, size_t n, merge_cut *oc)
{
    merge_job jb = {.wk = wk, .n = n, .pass = p, .gathering = oc != NULL};
    if (oc) {
        jb.lo = (int32_t)oc->lo;
        jb.hi = (int32_t)oc->hi;
    }
    int np = merge_parts(wk, n);
    merge_pool_run(wk->pool, np, merge_ties_part, &jb);
    if (oc)
        merge_collect(wk, np, oc);
}

/* Each input's cut of tensor t (known or found now) into wk->cut and
 * wk->thr. */
static void merge_tensor_cuts(merge_work *wk, int t, const float *b, size_t n, size_t k)
{
    for (int i = 0; i < wk->m; i++) {
        merge_cut *c = &wk->cut[i];
        if (k >= n)
            *c = (merge_cut){.thr = 0, .cutoff = SIZE_MAX};
        else if (wk->cached[i])
            *c = wk->cached[i][t];
        else
            merge_cut_input(wk, wk->xt[i], b, n, k, c);
        wk->thr[i] = (int32_t)c->thr;
    }
}

/* TIES on tensor t; with ocut, also the cut of the result (as an input of
 * the next merge). */
static void merge_tensor_ties(merge_work *wk, const merge_opts *o, int t, const float *b,
                              size_t n, float *out, merge_cut *ocut)
{
    size_t k = merge_keep_count(n, o->density);
    merge_tensor_cuts(wk, t, b, n, k);
    merge_pass p = {.m = wk->m, .x = wk->xt, .tb = b, .ob = b, .out = out, .thr = wk->thr,
                    .wd = wk->w, .wf = wk->wf, .lam = (float)o->lambda, .lamd = o->lambda,
                    .dmean = wk->dmean};
    merge_cut oc = {.thr = 0, .cutoff = SIZE_MAX};
    int gathering = ocut && k < n;
    if (gathering)
        merge_bracket_output(wk, &p, n, k, &oc);
    merge_ties_split(wk, &p, n, gathering ? &oc : NULL);
    if (gathering && merge_cut_finish(&oc, wk->cand, wk->idx, k) != 0) {
        merge_cut_open(&oc);
        merge_scan(wk, out, b, n, &oc);
        int rc = merge_cut_finish(&oc, wk->cand, wk->idx, k);
        assert(rc == 0);
        (void)rc;
    }
    if (ocut)
        *ocut = oc;
}

/* Tensor by tensor: a tensor's trimming thresholds depend on all of it.
 * ocuts (TIES, may be NULL) receives the result's cuts. */
static void merge_work_run(merge_work *wk, const merge_opts *o, const merge_tset *base,
                           merge_tset *out, merge_cut *ocuts)
{
    for (int t = 0; t < base->n; t++) {
        size_t off = base->t[t].offset, n = base->t[t].numel;
        for (int i = 0; i < wk->m; i++)
            wk->xt[i] = wk->x[i] + off;
        if (o->combine == MERGE_LINEAR) {
            merge_job jb = {.wk = wk, .n = n, .out = out->data + off};
            merge_pool_run(wk->pool, merge_parts(wk, n), merge_linear_part, &jb);
        } else {
            merge_tensor_ties(wk, o, t, base->data + off, n, out->data + off,
                              ocuts ? &ocuts[t] : NULL);
        }
    }
}

int merge_sets(const merge_opts *o, const merge_tset *base, const merge_tset *const *in,
               const double *w, int n_in, merge_tset *out, err *e)
{
    merge_work *wk = calloc(1, sizeof *wk);
    if (!wk)
        return err_set(e, GTRT_ENOMEM, "merge: out of memory");
    int rc = merge_work_prepare(wk, o, NULL, base, in, NULL, w, n_in, e);
    if (rc == 0)
        merge_work_run(wk, o, base, out, NULL);
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
    merge_cut **pcut; /* TIES: each pending checkpoint's cuts per tensor */
    char **label;
    int n_pending, cap_pending;
    merge_cut *tcut; /* TIES: the teacher's cuts per tensor, when tcut_ok */
    int tcut_ok;
    uint64_t n_merged, version;
    merge_pool *pool;
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
    /* The teacher starts as the base: all its task vectors are zero, and a
     * zero cut (threshold 0, no cutoff) keeps them as they are. */
    m->tcut = calloc((size_t)base->n + 1, sizeof *m->tcut);
    if (!m->tcut || (rc = merge_tset_clone(base, &m->teacher, e))) {
        free(m->tcut);
        free(m);
        return rc ? rc : err_set(e, GTRT_ENOMEM, "merge: out of memory");
    }
    for (int t = 0; t < base->n; t++)
        m->tcut[t].cutoff = SIZE_MAX;
    m->tcut_ok = 1;
    m->o = *o;
    m->base = base;
    *out = m;
    return 0;
}

int merge_set_threads(merger *m, int n, err *e)
{
    if (n < 1 || n > MERGE_MAX_THREADS)
        return err_set(e, GTRT_EINVAL, "merge: %d threads: expected 1 to %d", n,
                       MERGE_MAX_THREADS);
    merge_pool *p = NULL;
    int rc = n > 1 ? merge_pool_start(n, &p, e) : 0;
    if (rc)
        return rc;
    merge_pool_stop(m->pool);
    m->pool = p;
    return 0;
}

static void merge_drop_pending(merger *m)
{
    for (int i = 0; i < m->n_pending; i++) {
        merge_tset_free(m->pending[i]);
        free(m->pcut[i]);
        free(m->label[i]);
    }
    m->n_pending = 0;
}

void merge_free(merger *m)
{
    if (!m)
        return;
    merge_pool_stop(m->pool);
    merge_drop_pending(m);
    free(m->pending);
    free(m->pcut);
    free(m->label);
    free(m->tcut);
    merge_tset_free(m->base);
    merge_tset_free(m->teacher);
    merge_work_deinit(&m->work);
    free(m);
}

/* Check a TIES checkpoint for non-finite values and find its cuts in the
 * same pass over it. */
static int merge_add_cuts(merger *m, const merge_tset *ck, const char *what, merge_cut **out,
                          err *e)
{
    *out = NULL;
    merge_work *wk = &m->work;
    merge_cut *cuts = calloc((size_t)ck->n + 1, sizeof *cuts);
    if (!cuts)
        return err_set(e, GTRT_ENOMEM, "merge: out of memory");
    int rc = merge_work_begin(wk, m->pool, m->base, e);
    for (int t = 0; rc == 0 && t < ck->n; t++) {
        const merge_tensor *mt = &ck->t[t];
        const float *x = ck->data + mt->offset, *b = m->base->data + mt->offset;
        size_t k = merge_keep_count(mt->numel, m->o.density);
        int bad;
        if (k < mt->numel) {
            bad = merge_cut_input(wk, x, b, mt->numel, k, &cuts[t]);
        } else {
            bad = merge_nonfinite(x, mt->numel);
            cuts[t] = (merge_cut){.thr = 0, .cutoff = SIZE_MAX};
        }
        if (bad)
            rc = err_set(e, GTRT_EINVAL, "%s: tensor \"%s\" holds NaN or infinite values", what,
                         mt->name);
    }
    if (rc) {
        free(cuts);
        return rc;
    }
    *out = cuts;
    return 0;
}

static int merge_grow_pending(merger *m, err *e)
{
    if (m->n_pending < m->cap_pending)
        return 0;
    int cap = m->cap_pending ? 2 * m->cap_pending : 4;
    merge_tset **p = realloc(m->pending, sizeof *p * (size_t)cap);
    if (p)
        m->pending = p;
    merge_cut **c = realloc(m->pcut, sizeof *c * (size_t)cap);
    if (c)
        m->pcut = c;
    char **l = realloc(m->label, sizeof *l * (size_t)cap);
    if (l)
        m->label = l;
    if (!p || !c || !l)
        return err_set(e, GTRT_ENOMEM, "merge: out of memory");
    m->cap_pending = cap;
    return 0;
}

int merge_add(merger *m, merge_tset *ckpt, const char *label, err *e)
{
    const char *what = label ? label : "checkpoint";
    merge_cut *cuts = NULL;
    int rc = merge_tset_check_layout(m->base, ckpt, what, e);
    if (rc == 0)
        rc = merge_grow_pending(m, e);
    if (rc == 0)
        rc = m->o.combine == MERGE_TIES ? merge_add_cuts(m, ckpt, what, &cuts, e)
                                        : merge_tset_check_finite(ckpt, what, e);
    if (rc)
        return rc;
    char *lab = strdup(label ? label : "?");
    if (!lab) {
        free(cuts);
        return err_set(e, GTRT_ENOMEM, "merge: out of memory");
    }
    m->pending[m->n_pending] = ckpt;
    m->pcut[m->n_pending] = cuts;
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
    const merge_cut **cached = calloc((size_t)k + 1, sizeof *cached);
    double *w = calloc((size_t)k + 1, sizeof *w);
    if (!in || !cached || !w) {
        free(in);
        free(cached);
        free(w);
        return err_set(e, GTRT_ENOMEM, "merge: out of memory");
    }
    merge_weights(&m->o, m->n_merged, k, w);
    in[0] = m->teacher;
    cached[0] = m->tcut_ok ? m->tcut : NULL;
    for (int i = 0; i < k; i++) {
        in[i + 1] = m->pending[i];
        cached[i + 1] = m->pcut[i];
    }
    int rc = merge_work_prepare(&m->work, &m->o, m->pool, m->base, in, cached, w, k + 1, e);
    if (rc == 0) {
        /* The teacher's cuts are worth finding while it is written unless
         * it will never weigh again (EMA with alpha 1). */
        int keep = m->o.combine == MERGE_TIES && !(m->o.method == MERGE_EMA && m->o.alpha >= 1.0);
        merge_work_run(&m->work, &m->o, m->base, m->teacher, keep ? m->tcut : NULL);
        m->tcut_ok = keep;
    }
    free(in);
    free(cached);
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
