/* The fast TIES merge against a naive one written here from merge.h's
 * rules (trimming by a full sort, the vote in double, the disjoint mean in
 * float32 or double), on tensors large enough for the sampled thresholds,
 * the split between threads and the vector loops, with many ties at the
 * threshold, whole stretches of zero task vectors and exact cancellations;
 * and every vector path and thread count against each other, bit for bit. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "teacher/merge.h"

/* ==== the naive merge ==== */

typedef struct naive_ent {
    float mag;
    size_t i;
} naive_ent;

static int naive_cmp(const void *pa, const void *pb)
{
    const naive_ent *a = pa, *b = pb;
    if (a->mag != b->mag)
        return a->mag < b->mag ? 1 : -1;
    return (a->i > b->i) - (a->i < b->i);
}

/* tau = x - b, all but the k largest magnitudes (lowest index first among
 * equals) set to 0. */
static void naive_trim(const float *x, const float *b, size_t n, double density, float *t)
{
    size_t k = merge_keep_count(n, density);
    naive_ent *e = malloc(sizeof *e * (n ? n : 1));
    cr_assert(e);
    for (size_t i = 0; i < n; i++) {
        t[i] = x[i] - b[i];
        e[i] = (naive_ent){fabsf(t[i]), i};
    }
    qsort(e, n, sizeof *e, naive_cmp);
    for (size_t r = k; r < n; r++)
        t[e[r].i] = 0.0f;
    free(e);
}

/* One TIES merge of in[0..n_in) with weights w into out. */
static void naive_ties(const merge_opts *o, const merge_tset *base, const merge_tset **in,
                       const double *w, int n_in, merge_tset *out)
{
    double wmax = 0.0, wmin = INFINITY;
    for (int i = 0; i < n_in; i++)
        if (w[i] > 0.0) {
            wmax = fmax(wmax, w[i]);
            wmin = fmin(wmin, w[i]);
        }
    int dmean = wmin < ldexp(wmax, -60), e2 = ilogb(wmax);
    for (int t = 0; t < base->n; t++) {
        size_t off = base->t[t].offset, n = base->t[t].numel;
        float *tau = malloc(sizeof *tau * (size_t)n_in * (n ? n : 1));
        cr_assert(tau);
        for (int i = 0; i < n_in; i++)
            naive_trim(in[i]->data + off, base->data + off, n, o->density, tau + (size_t)i * n);
        for (size_t j = 0; j < n; j++) {
            double s = 0.0, numd = 0.0, dend = 0.0;
            float numf = 0.0f, denf = 0.0f, b = base->data[off + j];
            for (int i = 0; i < n_in; i++)
                if (w[i] > 0.0)
                    s += w[i] * (double)tau[(size_t)i * n + j];
            for (int i = 0; i < n_in; i++) {
                float ti = tau[(size_t)i * n + j];
                if (w[i] <= 0.0 || ti == 0.0f || (ti > 0.0f) != (s >= 0.0))
                    continue;
                float wf = (float)ldexp(w[i], -e2);
                numd += w[i] * (double)ti;
                dend += w[i];
                numf += wf * ti;
                denf += wf;
            }
            if (dmean)
                out->data[off + j] =
                    dend > 0.0 ? (float)((double)b + o->lambda * (numd / dend)) : b;
            else
                out->data[off + j] =
                    denf > 0.0f ? b + (float)o->lambda * (numf / denf) : b;
        }
        free(tau);
    }
}

/* ==== data ==== */

static const merge_spec fast_spec[] = {
    {.name = "big", .ndim = 2, .shape = {401, 499}},      /* sampled, split, ragged */
    {.name = "quant", .ndim = 1, .shape = {131072}},      /* ties at the threshold */
    {.name = "sparse", .ndim = 1, .shape = {100000}},     /* mostly zero task vectors */
    {.name = "cancel", .ndim = 1, .shape = {70001}},      /* votes that sum to 0 */
    {.name = "small", .ndim = 2, .shape = {30, 33}},
    {.name = "one", .ndim = 1, .shape = {1}},
};
enum { FAST_NT = sizeof fast_spec / sizeof fast_spec[0], FAST_NCK = 5 };

static merge_tset *fast_new(void)
{
    merge_tset *ts;
    err e = {0};
    cr_assert_eq(merge_tset_new(fast_spec, FAST_NT, &ts, &e), 0, "%s", e.msg);
    return ts;
}

static float *fast_tensor(merge_tset *ts, const char *name, size_t *n)
{
    const merge_tensor *t = merge_tset_find(ts, name);
    *n = t->numel;
    return ts->data + t->offset;
}

static void fast_data(merge_tset **base, merge_tset **ck)
{
    rng r;
    rng_init(&r, 20251214);
    merge_tset *b = *base = fast_new();
    for (size_t i = 0; i < b->numel; i++)
        b->data[i] = (float)(0.1 * rng_normal(&r));
    /* A base on a coarse grid keeps "cancel"'s task vectors exact. */
    size_t n;
    float *cb = fast_tensor(b, "cancel", &n);
    for (size_t i = 0; i < n; i++)
        cb[i] = (float)((int)(i % 17) - 8) / 8.0f;
    for (int c = 0; c < FAST_NCK; c++) {
        merge_tset *x = ck[c] = fast_new();
        for (size_t i = 0; i < x->numel; i++)
            x->data[i] = b->data[i] + (float)(0.01 * rng_normal(&r));
        float *q = fast_tensor(x, "quant", &n), *qb = fast_tensor(b, "quant", &n);
        for (size_t i = 0; i < n; i++)
            q[i] = qb[i] + (float)((int)rng_below(&r, 9) - 4) / 64.0f;
        float *sp = fast_tensor(x, "sparse", &n), *sb = fast_tensor(b, "sparse", &n);
        for (size_t i = 0; i < n; i++)
            sp[i] = rng_below(&r, 10) == 0 ? sb[i] + 0.02f : sb[i];
        /* Checkpoints 0 and 1 move "cancel" by opposite amounts: where
         * they weigh the same, their votes sum to exactly 0. */
        float *cc = fast_tensor(x, "cancel", &n);
        for (size_t i = 0; c < 2 && i < n; i++)
            cc[i] = cb[i] + (c ? -1.0f : 1.0f) * (float)(i % 7 + 1) / 128.0f;
    }
}

/* ==== runs ==== */

typedef struct fast_case {
    merge_opts o;
    int interval;
} fast_case;

static fast_case fast_cases(int i)
{
    merge_opts o;
    merge_opts_default(&o);
    switch (i) {
    case 0:
        return (fast_case){o, 1};
    case 1:
        o.method = MERGE_EMA, o.alpha = 0.3, o.density = 0.5, o.lambda = 1.3;
        return (fast_case){o, 2};
    case 2:
        o.density = 0.25, o.lambda = 0.7;
        return (fast_case){o, 3};
    case 3:
        o.density = 1.0;
        return (fast_case){o, 1};
    case 4:
        /* The teacher weighs (1e-4)^5 against the newest checkpoint's
         * 0.9999: the double mean. */
        o.method = MERGE_EMA, o.alpha = 0.9999;
        return (fast_case){o, 5};
    default:
        o.method = MERGE_EMA, o.alpha = 0.2, o.combine = MERGE_LINEAR;
        return (fast_case){o, 2};
    }
}
enum { FAST_NCASE = 6 };

/* Teachers after each merge of an incremental run, in steps[]. */
static int fast_run(const fast_case *fc, const char *simd, int threads, merge_tset *base,
                    merge_tset **ck, merge_tset **steps)
{
    err e = {0};
    cr_assert_eq(merge_simd_use(simd, &e), 0, "%s", e.msg);
    merge_tset *b;
    merger *m;
    cr_assert_eq(merge_tset_clone(base, &b, &e), 0);
    cr_assert_eq(merge_new(&fc->o, b, &m, &e), 0, "%s", e.msg);
    cr_assert_eq(merge_set_threads(m, threads, &e), 0, "%s", e.msg);
    int n = 0;
    for (int c = 0; c < FAST_NCK; c++) {
        merge_tset *x;
        cr_assert_eq(merge_tset_clone(ck[c], &x, &e), 0);
        cr_assert_eq(merge_add(m, x, "ck", &e), 0, "%s", e.msg);
        if (merge_n_pending(m) >= fc->interval || c == FAST_NCK - 1) {
            cr_assert_eq(merge_run(m, &e), 0, "%s", e.msg);
            cr_assert_eq(merge_tset_clone(merge_teacher(m), &steps[n++], &e), 0);
        }
    }
    merge_free(m);
    return n;
}

/* The same run, naively: each merge from the previous naive teacher. */
static int fast_naive(const fast_case *fc, merge_tset *base, merge_tset **ck, merge_tset **steps)
{
    err e = {0};
    merge_tset *teacher;
    cr_assert_eq(merge_tset_clone(base, &teacher, &e), 0);
    uint64_t merged = 0;
    int n = 0, first = 0;
    for (int c = 0; c < FAST_NCK; c++) {
        int k = c + 1 - first;
        if (k < fc->interval && c != FAST_NCK - 1)
            continue;
        const merge_tset *in[FAST_NCK + 1] = {teacher};
        double w[FAST_NCK + 1];
        merge_weights(&fc->o, merged, k, w);
        for (int i = 0; i < k; i++)
            in[i + 1] = ck[first + i];
        merge_tset *out;
        cr_assert_eq(merge_tset_clone(base, &out, &e), 0);
        if (fc->o.combine == MERGE_TIES)
            naive_ties(&fc->o, base, in, w, k + 1, out);
        else
            cr_assert_eq(merge_sets(&fc->o, base, in, w, k + 1, out, &e), 0);
        merge_tset_free(teacher);
        teacher = out;
        cr_assert_eq(merge_tset_clone(teacher, &steps[n++], &e), 0);
        merged += (uint64_t)k;
        first = c + 1;
    }
    merge_tset_free(teacher);
    return n;
}

/* Entries that differ: by value (naive: +0 and -0 are one), or by bits. */
static size_t fast_differ(const merge_tset *a, const merge_tset *b, int bits)
{
    size_t d = 0;
    for (size_t i = 0; i < a->numel; i++)
        d += bits ? memcmp(&a->data[i], &b->data[i], sizeof(float)) != 0
                  : a->data[i] != b->data[i];
    return d;
}

static void fast_free(merge_tset **s, int n)
{
    for (int i = 0; i < n; i++)
        merge_tset_free(s[i]);
}

/* ==== tests ==== */

Test(merge_fast, the_merger_matches_a_naive_merge_at_every_step)
{
    merge_tset *base, *ck[FAST_NCK];
    fast_data(&base, ck);
    for (int ci = 0; ci < FAST_NCASE; ci++) {
        fast_case fc = fast_cases(ci);
        merge_tset *got[FAST_NCK], *want[FAST_NCK];
        int n = fast_run(&fc, merge_simd(), 2, base, ck, got);
        cr_assert_eq(fast_naive(&fc, base, ck, want), n);
        for (int s = 0; s < n; s++) {
            size_t d = fast_differ(got[s], want[s], 0);
            cr_expect_eq(d, 0, "case %d merge %d: %zu of %zu entries differ from the naive merge",
                         ci, s, d, got[s]->numel);
        }
        fast_free(got, n);
        fast_free(want, n);
    }
    merge_tset_free(base);
    fast_free(ck, FAST_NCK);
}

Test(merge_fast, every_vector_path_and_thread_count_gives_the_same_bits)
{
    static const char *const paths[] = {"avx512", "avx2", "portable"};
    const char *widest = merge_simd();
    merge_tset *base, *ck[FAST_NCK];
    fast_data(&base, ck);
    for (int ci = 0; ci < FAST_NCASE; ci++) {
        fast_case fc = fast_cases(ci);
        merge_tset *ref[FAST_NCK];
        int n = fast_run(&fc, "portable", 1, base, ck, ref);
        int tried = 0;
        for (int pi = 0; pi < 3; pi++) {
            err e = {0};
            if (merge_simd_use(paths[pi], &e) != 0)
                continue; /* this CPU lacks it */
            for (int threads = 1; threads <= 3; threads++) {
                merge_tset *got[FAST_NCK];
                cr_assert_eq(fast_run(&fc, paths[pi], threads, base, ck, got), n);
                for (int s = 0; s < n; s++) {
                    size_t d = fast_differ(got[s], ref[s], 1);
                    cr_expect_eq(d, 0, "case %d, %s, %d threads, merge %d: %zu entries differ",
                                 ci, paths[pi], threads, s, d);
                }
                fast_free(got, n);
                tried++;
            }
        }
        cr_expect_geq(tried, 3);
        fast_free(ref, n);
    }
    err e = {0};
    cr_assert_eq(merge_simd_use(widest, &e), 0);
    merge_tset_free(base);
    fast_free(ck, FAST_NCK);
}

Test(merge_fast, explicit_merges_match_the_naive_merge)
{
    merge_tset *base, *ck[FAST_NCK];
    fast_data(&base, ck);
    const double weights[][3] = {{3, 1, 0}, {0.7, 0.3, 0.5}, {1, 1, 1}, {0, 2, 1}};
    for (int wi = 0; wi < 4; wi++) {
        merge_opts o;
        merge_opts_default(&o);
        o.density = wi % 2 ? 0.6 : 0.8;
        const merge_tset *in[3] = {ck[0], ck[1], ck[2]};
        merge_tset *got, *want;
        err e = {0};
        cr_assert_eq(merge_tset_clone(base, &got, &e), 0);
        cr_assert_eq(merge_tset_clone(base, &want, &e), 0);
        cr_assert_eq(merge_sets(&o, base, in, weights[wi], 3, got, &e), 0, "%s", e.msg);
        naive_ties(&o, base, in, weights[wi], 3, want);
        size_t d = fast_differ(got, want, 0);
        cr_expect_eq(d, 0, "weights %d: %zu entries differ from the naive merge", wi, d);
        merge_tset_free(got);
        merge_tset_free(want);
    }
    merge_tset_free(base);
    fast_free(ck, FAST_NCK);
}

/* Votes whose float32 sum has the wrong sign: with weights 3, 1, 1 (the
 * loops scale them to 1.5, 0.5, 0.5), b = -fl(3a) cancels fl(1.5a)
 * exactly in float, leaving c, while the exact sum keeps the rounding error
 * e = 1.5a - fl(1.5a); c = -e makes the two signs differ. The vector loops
 * must notice and take the sign of the double sum. */
Test(merge_fast, near_cancelling_votes_take_the_sign_of_the_double_sum)
{
    merge_spec s = {.name = "w", .ndim = 1, .shape = {70001}};
    merge_tset *base, *x[3], *ref, *got;
    err e = {0};
    cr_assert_eq(merge_tset_new(&s, 1, &base, &e), 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(merge_tset_new(&s, 1, &x[i], &e), 0);
    rng r;
    rng_init(&r, 99);
    size_t flips = 0;
    for (size_t j = 0; j < base->numel; j++) {
        float a = (float)rng_normal(&r);
        double err15 = 1.5 * (double)a - (double)(float)(1.5 * (double)a);
        x[0]->data[j] = a;
        x[1]->data[j] = -(float)(3.0 * (double)a);
        x[2]->data[j] = (float)-err15;
        flips += err15 != 0.0;
    }
    cr_assert_gt(flips, base->numel / 4);
    merge_opts o;
    merge_opts_default(&o);
    o.density = 1.0;
    const merge_tset *in[3] = {x[0], x[1], x[2]};
    const double w[3] = {3, 1, 1};
    cr_assert_eq(merge_tset_clone(base, &ref, &e), 0);
    naive_ties(&o, base, in, w, 3, ref);
    const char *widest = merge_simd();
    static const char *const paths[] = {"avx512", "avx2", "portable"};
    for (int pi = 0; pi < 3; pi++) {
        if (merge_simd_use(paths[pi], &e) != 0)
            continue;
        cr_assert_eq(merge_tset_clone(base, &got, &e), 0);
        cr_assert_eq(merge_sets(&o, base, in, w, 3, got, &e), 0);
        size_t d = fast_differ(got, ref, 0);
        cr_expect_eq(d, 0, "%s: %zu entries differ from the naive merge", paths[pi], d);
        merge_tset_free(got);
    }
    cr_assert_eq(merge_simd_use(widest, &e), 0);
    merge_tset_free(ref);
    merge_tset_free(base);
    for (int i = 0; i < 3; i++)
        merge_tset_free(x[i]);
}

Test(merge_fast, non_finite_values_in_a_large_tensor_are_refused)
{
    merge_tset *base, *ck[FAST_NCK];
    fast_data(&base, ck);
    const float bad[2] = {NAN, -INFINITY};
    for (int combine = 0; combine < 2; combine++) {
        for (int bi = 0; bi < 2; bi++) {
            merge_opts o;
            merge_opts_default(&o);
            o.combine = combine ? MERGE_LINEAR : MERGE_TIES;
            err e = {0};
            merge_tset *b, *x;
            merger *m;
            cr_assert_eq(merge_tset_clone(base, &b, &e), 0);
            cr_assert_eq(merge_new(&o, b, &m, &e), 0);
            cr_assert_eq(merge_set_threads(m, 2, &e), 0);
            cr_assert_eq(merge_tset_clone(ck[0], &x, &e), 0);
            size_t n;
            float *q = fast_tensor(x, "quant", &n);
            q[n - 3] = bad[bi];
            cr_expect_eq(merge_add(m, x, "broken", &e), GTRT_EINVAL);
            cr_expect(strstr(e.msg, "\"quant\"") && strstr(e.msg, "NaN or infinite"), "%s",
                      e.msg);
            cr_expect_eq(merge_n_pending(m), 0);
            merge_tset_free(x);
            merge_free(m);
        }
    }
    merge_tset_free(base);
    fast_free(ck, FAST_NCK);
}

Test(merge_fast, vector_paths_and_threads_are_named_and_checked)
{
    err e = {0};
    const char *widest = merge_simd();
    cr_expect(strcmp(widest, "avx512") == 0 || strcmp(widest, "avx2") == 0 ||
              strcmp(widest, "portable") == 0, "%s", widest);
    cr_expect_eq(merge_simd_use("sse9", &e), GTRT_EINVAL);
    cr_expect_eq(merge_simd_use("portable", &e), 0);
    cr_expect_str_eq(merge_simd(), "portable");
    cr_expect_eq(merge_simd_use(widest, &e), 0);

    merge_spec s = {.name = "w", .ndim = 1, .shape = {4}};
    merge_tset *base;
    merger *m;
    merge_opts o;
    merge_opts_default(&o);
    cr_assert_eq(merge_tset_new(&s, 1, &base, &e), 0);
    cr_assert_eq(merge_new(&o, base, &m, &e), 0);
    cr_expect_eq(merge_set_threads(m, 0, &e), GTRT_EINVAL);
    cr_expect_eq(merge_set_threads(m, 65, &e), GTRT_EINVAL);
    cr_expect_eq(merge_set_threads(m, 4, &e), 0);
    cr_expect_eq(merge_set_threads(m, 1, &e), 0);
    merge_free(m);
}
