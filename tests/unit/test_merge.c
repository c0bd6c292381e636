/* Checkpoint merging: hand-computed TIES cases (sign election, disjoint
 * mean, trimming and its tie rule, lambda), linear weights, SMA/EMA over
 * several incremental steps, refusal of another architecture, safetensors
 * round trips with provenance, and a teacher that really changes after
 * every new checkpoint. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/rng.h"
#include "teacher/merge.h"

/* ==== helpers ==== */

/* A set of one 1-D tensor "w" holding v[0..n). */
static merge_tset *vec(const float *v, int n)
{
    merge_spec s = {.name = "w", .ndim = 1, .shape = {n}};
    merge_tset *ts;
    err e = {0};
    cr_assert_eq(merge_tset_new(&s, 1, &ts, &e), 0, "%s", e.msg);
    memcpy(ts->data, v, sizeof(float) * (size_t)n);
    return ts;
}

/* Two tensors, a [2,3] and b [4], filled from v[0..10). */
static merge_tset *two(const float *v)
{
    merge_spec s[2] = {{.name = "a", .ndim = 2, .shape = {2, 3}},
                       {.name = "b", .ndim = 1, .shape = {4}}};
    merge_tset *ts;
    err e = {0};
    cr_assert_eq(merge_tset_new(s, 2, &ts, &e), 0, "%s", e.msg);
    if (v)
        memcpy(ts->data, v, sizeof(float) * 10);
    return ts;
}

static merge_opts opts(merge_method m, merge_combine c, double alpha, double density,
                       double lambda)
{
    return (merge_opts){.method = m, .combine = c, .alpha = alpha, .density = density,
                        .lambda = lambda};
}

/* Merge explicit inputs over `base` and return the result (caller frees). */
static merge_tset *merge_of(const merge_opts *o, const merge_tset *base, const merge_tset **in,
                            const double *w, int n)
{
    merge_tset *out;
    err e = {0};
    cr_assert_eq(merge_tset_clone(base, &out, &e), 0, "%s", e.msg);
    cr_assert_eq(merge_sets(o, base, in, w, n, out, &e), 0, "%s", e.msg);
    return out;
}

static void expect(const merge_tset *ts, const float *want, int n, double tol)
{
    cr_assert_eq(ts->numel, (size_t)n);
    for (int i = 0; i < n; i++)
        cr_expect(fabs((double)ts->data[i] - want[i]) <= tol, "entry %d: got %.9g, want %.9g", i,
                  (double)ts->data[i], (double)want[i]);
}

/* ==== TIES by hand ==== */

Test(merge, ties_sign_election_and_disjoint_mean)
{
    const float z[4] = {0}, a[4] = {1, 2, -3, 0}, b[4] = {3, -1, -1, 0};
    merge_tset *base = vec(z, 4), *A = vec(a, 4), *B = vec(b, 4);
    merge_opts o = opts(MERGE_SMA, MERGE_TIES, 0.5, 1.0, 1.0);
    const merge_tset *in[2] = {A, B};
    /* Equal weights: entry 1 votes + (2 - 1), so only A's 2 counts; entry 3
     * has no sign at all and stays at the base. */
    merge_tset *r = merge_of(&o, base, in, (double[]){1, 1}, 2);
    expect(r, (float[]){2, 2, -2, 0}, 4, 0);
    merge_tset_free(r);
    /* B weighs 3: entry 1 now votes - (2 - 3), the mean is weighted. */
    r = merge_of(&o, base, in, (double[]){1, 3}, 2);
    expect(r, (float[]){2.5f, -1, -1.5f, 0}, 4, 1e-7);
    merge_tset_free(r);
    merge_tset_free(base);
    merge_tset_free(A);
    merge_tset_free(B);
}

Test(merge, ties_vote_tie_goes_to_plus_and_base_is_added_back)
{
    const float bv[2] = {10, -10}, av[2] = {11, -9}, cv[2] = {9, -11};
    merge_tset *base = vec(bv, 2), *A = vec(av, 2), *C = vec(cv, 2);
    merge_opts o = opts(MERGE_SMA, MERGE_TIES, 0.5, 1.0, 1.0);
    const merge_tset *in[2] = {A, C};
    /* tau: A (+1, +1), C (-1, -1): the votes are exactly 0, so + wins. */
    merge_tset *r = merge_of(&o, base, in, (double[]){2, 2}, 2);
    expect(r, (float[]){11, -9}, 2, 0);
    merge_tset_free(r);
    merge_tset_free(base);
    merge_tset_free(A);
    merge_tset_free(C);
}

Test(merge, ties_density_trims_smallest_magnitudes_and_lambda_scales)
{
    const float z[5] = {0}, t[5] = {0.1f, -5, 3, -0.2f, 4};
    merge_tset *base = vec(z, 5), *T = vec(t, 5);
    const merge_tset *in[1] = {T};
    /* density 0.6 of 5 entries keeps 3: -5, 4 and 3. */
    merge_opts o = opts(MERGE_SMA, MERGE_TIES, 0.5, 0.6, 1.0);
    merge_tset *r = merge_of(&o, base, in, (double[]){1}, 1);
    expect(r, (float[]){0, -5, 3, 0, 4}, 5, 0);
    merge_tset_free(r);
    o.lambda = 0.5;
    r = merge_of(&o, base, in, (double[]){1}, 1);
    expect(r, (float[]){0, -2.5f, 1.5f, 0, 2}, 5, 0);
    merge_tset_free(r);
    merge_tset_free(base);
    merge_tset_free(T);
}

Test(merge, ties_trimming_breaks_ties_by_lowest_index)
{
    const float z[6] = {0}, t[6] = {1, -1, 2, 1, -1, 1};
    merge_tset *base = vec(z, 6), *T = vec(t, 6);
    const merge_tset *in[1] = {T};
    /* Keep 3 = round(0.5 * 6): the 2, then the first two of the five |1|s. */
    merge_opts o = opts(MERGE_SMA, MERGE_TIES, 0.5, 0.5, 1.0);
    merge_tset *r = merge_of(&o, base, in, (double[]){1}, 1);
    expect(r, (float[]){1, -1, 2, 0, 0, 0}, 6, 0);
    merge_tset_free(r);
    merge_tset_free(base);
    merge_tset_free(T);
}

Test(merge, trimming_is_per_tensor_and_trims_before_the_vote)
{
    /* a: tau (4, 1, 1, -3, 2, -2) keeps round(0.5*6) = 3: 4, -3 and the
     * first |2|. b: tau (1, -1, 0.5, 9) keeps 2: 9 and the 1. */
    const float z[10] = {0}, t[10] = {4, 1, 1, -3, 2, -2, 1, -1, 0.5f, 9};
    merge_tset *base = two(z), *T = two(t);
    const merge_tset *in[1] = {T};
    merge_opts o = opts(MERGE_SMA, MERGE_TIES, 0.5, 0.5, 1.0);
    merge_tset *r = merge_of(&o, base, in, (double[]){1}, 1);
    expect(r, (float[]){4, 0, 0, -3, 2, 0, 1, 0, 0, 9}, 10, 0);
    merge_tset_free(r);
    /* A second input whose small entry would flip the vote if untrimmed:
     * entry 1 of a: T's +1 is trimmed, so U's -1 (kept in U) wins. */
    const float u[10] = {4, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    merge_tset *U = two(u);
    const merge_tset *in2[2] = {T, U};
    o.density = 1.0 / 3.0; /* a keeps 2 entries, b keeps 1 */
    r = merge_of(&o, base, in2, (double[]){1, 1}, 2);
    expect(r, (float[]){4, -1, 0, -3, 0, 0, 0, 0, 0, 9}, 10, 0);
    merge_tset_free(r);
    merge_tset_free(U);
    merge_tset_free(base);
    merge_tset_free(T);
}

Test(merge, keep_count_rounds_and_keeps_at_least_one)
{
    cr_expect_eq(merge_keep_count(10, 0.8), 8);
    cr_expect_eq(merge_keep_count(5, 0.8), 4);
    cr_expect_eq(merge_keep_count(3, 0.5), 2);
    cr_expect_eq(merge_keep_count(1, 0.4), 1);
    cr_expect_eq(merge_keep_count(100, 0.29), 29);
    cr_expect_eq(merge_keep_count(7, 1.0), 7);
    cr_expect_eq(merge_keep_count(0, 0.8), 0);
}

/* Reference trimming by sorting: decreasing |x|, ties by index. */
typedef struct mag_idx {
    float mag;
    int idx;
} mag_idx;

static int cmp_mag(const void *pa, const void *pb)
{
    const mag_idx *a = pa, *b = pb;
    if (a->mag != b->mag)
        return a->mag < b->mag ? 1 : -1;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

/* Small tensors are trimmed from all their magnitudes, large ones (64 Ki
 * entries and more) from a sampled bracket: both must match the sort. */
static void check_trim_against_sort(int N, uint64_t seed)
{
    rng r;
    rng_init(&r, seed);
    float *x = malloc(sizeof(float) * (size_t)N), *z = calloc((size_t)N, sizeof(float));
    mag_idx *order = malloc(sizeof(mag_idx) * (size_t)N);
    const double dens[] = {0.8, 0.5, 0.1, 0.999, 0.0004};
    for (int round = 0; round < 7; round++) {
        /* Few distinct magnitudes (and zeros) make ties everywhere; round 5
         * has one magnitude only, round 6 continuous values (no ties). */
        int levels = round == 5 ? 1 : 3 + 7 * round;
        for (int i = 0; i < N; i++) {
            float m = round == 6 ? (float)rng_normal(&r)
                                 : (float)(1 + rng_below(&r, (uint64_t)levels)) * 0.37f;
            x[i] = rng_below(&r, 9) == 0 ? 0.0f : rng_below(&r, 2) ? m : -m;
        }
        merge_tset *base = vec(z, N), *X = vec(x, N);
        const merge_tset *in[1] = {X};
        for (int i = 0; i < N; i++)
            order[i] = (mag_idx){fabsf(x[i]), i};
        qsort(order, (size_t)N, sizeof *order, cmp_mag);
        for (size_t d = 0; d < sizeof dens / sizeof dens[0]; d++) {
            merge_opts o = opts(MERGE_SMA, MERGE_TIES, 0.5, dens[d], 1.0);
            merge_tset *res = merge_of(&o, base, in, (double[]){1}, 1);
            size_t k = merge_keep_count((size_t)N, dens[d]);
            float *want = calloc((size_t)N, sizeof(float));
            for (size_t i = 0; i < k; i++)
                want[order[i].idx] = x[order[i].idx];
            /* One assertion per case: Criterion reports every assertion. */
            int bad = -1;
            for (int i = 0; i < N && bad < 0; i++)
                if (res->data[i] != want[i])
                    bad = i;
            cr_assert_eq(bad, -1, "N %d round %d density %g entry %d: %g vs %g", N, round,
                         dens[d], bad, bad < 0 ? 0.0 : (double)res->data[bad],
                         bad < 0 ? 0.0 : (double)want[bad]);
            free(want);
            merge_tset_free(res);
        }
        merge_tset_free(base);
        merge_tset_free(X);
    }
    free(x);
    free(z);
    free(order);
}

Test(merge, trimming_matches_a_sort_on_many_ties)
{
    check_trim_against_sort(3000, 1234);
}

Test(merge, trimming_of_large_tensors_matches_a_sort)
{
    check_trim_against_sort(70001, 99);
    check_trim_against_sort(300000, 7);
}

/* ==== linear and the SMA / EMA weights ==== */

Test(merge, linear_is_the_normalised_weighted_mean)
{
    const float z[2] = {100, 100}, a[2] = {1, 2}, b[2] = {3, 6};
    merge_tset *base = vec(z, 2), *A = vec(a, 2), *B = vec(b, 2);
    merge_opts o = opts(MERGE_SMA, MERGE_LINEAR, 0.5, 0.8, 1.0);
    const merge_tset *in[2] = {A, B};
    merge_tset *r = merge_of(&o, base, in, (double[]){1, 3}, 2);
    expect(r, (float[]){2.5f, 5}, 2, 1e-6);
    merge_tset_free(r);
    merge_tset_free(base);
    merge_tset_free(A);
    merge_tset_free(B);
}

Test(merge, weights_for_sma_and_ema)
{
    double w[4];
    merge_opts o = opts(MERGE_SMA, MERGE_TIES, 0.3, 0.8, 1.0);
    merge_weights(&o, 5, 2, w);
    cr_expect(w[0] == 5 && w[1] == 1 && w[2] == 1);
    o.method = MERGE_EMA;
    merge_weights(&o, 5, 1, w);
    cr_expect(fabs(w[0] - 0.7) < 1e-15 && fabs(w[1] - 0.3) < 1e-15);
    merge_weights(&o, 0, 3, w);
    cr_expect(fabs(w[0] - 0.343) < 1e-12, "%g", w[0]);
    cr_expect(fabs(w[1] - 0.147) < 1e-12, "%g", w[1]);
    cr_expect(fabs(w[2] - 0.21) < 1e-12, "%g", w[2]);
    cr_expect(fabs(w[3] - 0.3) < 1e-12, "%g", w[3]);
}

/* Feed values one by one into a 1-entry merger, checking each teacher. */
static void run_steps(const merge_opts *o, float base_v, const float *ck, const float *want,
                      int n)
{
    err e = {0};
    merger *m;
    cr_assert_eq(merge_new(o, vec(&base_v, 1), &m, &e), 0, "%s", e.msg);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(merge_add(m, vec(&ck[i], 1), NULL, &e), 0, "%s", e.msg);
        cr_assert_eq(merge_run(m, &e), 0, "%s", e.msg);
        cr_expect(fabs(merge_teacher(m)->data[0] - want[i]) < 1e-6, "step %d: %g, want %g", i,
                  (double)merge_teacher(m)->data[0], (double)want[i]);
        cr_expect_eq(merge_count(m), (uint64_t)i + 1);
        cr_expect_eq(merge_version(m), (uint64_t)i + 1);
    }
    merge_free(m);
}

Test(merge, sma_linear_is_the_running_mean)
{
    merge_opts o = opts(MERGE_SMA, MERGE_LINEAR, 0.5, 0.8, 1.0);
    run_steps(&o, 7, (float[]){3, 6, 0, 11}, (float[]){3, 4.5f, 3, 5}, 4);
}

Test(merge, ema_linear_blends_from_the_base)
{
    merge_opts o = opts(MERGE_EMA, MERGE_LINEAR, 0.5, 0.8, 1.0);
    run_steps(&o, 0, (float[]){4, 8, 1}, (float[]){2, 5, 3}, 3);
    o.alpha = 0.25;
    run_steps(&o, 8, (float[]){0, 4}, (float[]){6, 5.5f}, 2);
}

Test(merge, ties_incremental_sma_and_ema)
{
    /* Under TIES the base's zero task vector never votes, so the first
     * merge is the trimmed checkpoint with either weighting. */
    const float z[2] = {0, 0}, c1[2] = {2, -2}, c2[2] = {-4, -4}, c3[2] = {1, 6};
    for (int method = 0; method < 2; method++) {
        merge_opts o = opts(method ? MERGE_EMA : MERGE_SMA, MERGE_TIES, 0.5, 1.0, 1.0);
        err e = {0};
        merger *m;
        cr_assert_eq(merge_new(&o, vec(z, 2), &m, &e), 0, "%s", e.msg);
        cr_assert_eq(merge_add(m, vec(c1, 2), "c1", &e), 0, "%s", e.msg);
        cr_assert_eq(merge_run(m, &e), 0);
        expect(merge_teacher(m), c1, 2, 0);
        /* Teacher (2, -2) and c2 (-4, -4) weigh the same (SMA 1:1, EMA
         * .5:.5): entry 0 votes -, so only c2's -4; entry 1 agrees: -3. */
        cr_assert_eq(merge_add(m, vec(c2, 2), "c2", &e), 0, "%s", e.msg);
        cr_assert_eq(merge_run(m, &e), 0);
        expect(merge_teacher(m), (float[]){-4, -3}, 2, 1e-7);
        /* SMA: teacher 2, c3 1. Entry 0: -8 + 1 < 0: -4. Entry 1: -6 + 6 = 0
         * votes +: 6. EMA: .5/.5: entry 0: -2 + .5 < 0: -4; entry 1: +: 6. */
        cr_assert_eq(merge_add(m, vec(c3, 2), "c3", &e), 0, "%s", e.msg);
        cr_assert_eq(merge_run(m, &e), 0);
        expect(merge_teacher(m), (float[]){-4, 6}, 2, 1e-7);
        merge_free(m);
    }
}

Test(merge, several_checkpoints_at_once_weigh_as_single_steps)
{
    const float b = 0, c[3] = {4, 8, 1};
    for (int method = 0; method < 2; method++) {
        merge_opts o = opts(method ? MERGE_EMA : MERGE_SMA, MERGE_LINEAR, 0.5, 0.8, 1.0);
        err e = {0};
        merger *m;
        cr_assert_eq(merge_new(&o, vec(&b, 1), &m, &e), 0);
        cr_assert_eq(merge_add(m, vec(&c[0], 1), NULL, &e), 0);
        cr_assert_eq(merge_add(m, vec(&c[1], 1), NULL, &e), 0);
        cr_expect_eq(merge_n_pending(m), 2);
        cr_assert_eq(merge_run(m, &e), 0);
        cr_expect_eq(merge_n_pending(m), 0);
        cr_expect_eq(merge_count(m), 2);
        cr_expect_eq(merge_version(m), 1);
        /* SMA: mean 6; EMA from 0: 0.25*0 + 0.25*4 + 0.5*8 = 5 */
        cr_expect(fabs(merge_teacher(m)->data[0] - (method ? 5 : 6)) < 1e-6);
        cr_assert_eq(merge_add(m, vec(&c[2], 1), NULL, &e), 0);
        cr_assert_eq(merge_run(m, &e), 0);
        /* SMA: 13/3; EMA: 0.5*1 + 0.5*5 = 3 */
        cr_expect(fabs(merge_teacher(m)->data[0] - (method ? 3.0 : 13.0 / 3)) < 1e-6);
        merge_free(m);
    }
}

Test(merge, run_with_nothing_pending_changes_nothing)
{
    const float b[2] = {1, 2};
    merge_opts o;
    merge_opts_default(&o);
    err e = {0};
    merger *m;
    cr_assert_eq(merge_new(&o, vec(b, 2), &m, &e), 0);
    cr_assert_eq(merge_run(m, &e), 0);
    cr_expect_eq(merge_version(m), 0);
    expect(merge_teacher(m), b, 2, 0);
    merge_free(m);
}

/* ==== the teacher really changes ==== */

static void fill_normal(merge_tset *ts, rng *r, const merge_tset *around, double sd)
{
    for (size_t i = 0; i < ts->numel; i++)
        ts->data[i] = (float)((around ? around->data[i] : 0.0) + sd * rng_normal(r));
}

Test(merge, teacher_changes_after_every_checkpoint)
{
    merge_spec s[3] = {{.name = "emb", .ndim = 2, .shape = {40, 16}},
                       {.name = "w", .ndim = 2, .shape = {16, 33}},
                       {.name = "bias", .ndim = 1, .shape = {7}}};
    rng r;
    rng_init(&r, 42);
    for (int variant = 0; variant < 4; variant++) {
        merge_opts o = opts(variant & 1 ? MERGE_EMA : MERGE_SMA,
                            variant & 2 ? MERGE_TIES : MERGE_LINEAR, 0.5, 0.8, 1.0);
        err e = {0};
        merge_tset *base;
        cr_assert_eq(merge_tset_new(s, 3, &base, &e), 0);
        fill_normal(base, &r, NULL, 1.0);
        merger *m;
        cr_assert_eq(merge_new(&o, base, &m, &e), 0, "%s", e.msg);
        merge_tset *prev;
        for (int step = 0; step < 6; step++) {
            cr_assert_eq(merge_tset_clone(merge_teacher(m), &prev, &e), 0);
            merge_tset *ck;
            cr_assert_eq(merge_tset_new(s, 3, &ck, &e), 0);
            fill_normal(ck, &r, base, 0.1);
            /* The expected teacher: one explicit merge of the previous
             * teacher and the new checkpoint with the documented weights. */
            double w[2];
            merge_weights(&o, merge_count(m), 1, w);
            const merge_tset *in[2] = {prev, ck};
            merge_tset *want = merge_of(&o, base, in, w, 2);
            cr_assert_eq(merge_add(m, ck, NULL, &e), 0, "%s", e.msg);
            cr_assert_eq(merge_run(m, &e), 0, "%s", e.msg);
            const merge_tset *t = merge_teacher(m);
            size_t changed = 0, differ = 0;
            for (size_t i = 0; i < t->numel; i++) {
                changed += t->data[i] != prev->data[i];
                differ += t->data[i] != want->data[i];
            }
            cr_assert_eq(differ, 0, "variant %d step %d: %zu entries differ from the explicit "
                         "merge", variant, step, differ);
            /* Not just one entry: most of the teacher moves each time. */
            cr_expect_gt(changed, t->numel / 2, "variant %d step %d: %zu of %zu changed",
                         variant, step, changed, t->numel);
            merge_tset_free(want);
            merge_tset_free(prev);
        }
        cr_expect_eq(merge_version(m), 6);
        merge_free(m);
    }
}

/* ==== refusals ==== */

Test(merge, different_architecture_is_refused_and_nothing_changes)
{
    const float v[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    merge_opts o;
    merge_opts_default(&o);
    err e = {0};
    merger *m;
    cr_assert_eq(merge_new(&o, two(v), &m, &e), 0);
    merge_spec bad[3][2] = {
        {{.name = "a", .ndim = 2, .shape = {3, 2}}, {.name = "b", .ndim = 1, .shape = {4}}},
        {{.name = "a", .ndim = 2, .shape = {2, 3}}, {.name = "c", .ndim = 1, .shape = {4}}},
        {{.name = "a", .ndim = 1, .shape = {6}}, {.name = "b", .ndim = 1, .shape = {4}}},
    };
    for (int i = 0; i < 3; i++) {
        merge_tset *ck;
        cr_assert_eq(merge_tset_new(bad[i], 2, &ck, &e), 0);
        memset(&e, 0, sizeof e);
        cr_expect_eq(merge_add(m, ck, "odd.safetensors", &e), GTRT_EINVAL);
        cr_expect(strstr(e.msg, "different architecture") && strstr(e.msg, "odd.safetensors"),
                  "%s", e.msg);
        merge_tset_free(ck); /* still ours after a refusal */
    }
    merge_tset *one;
    cr_assert_eq(merge_tset_new(bad[0], 1, &one, &e), 0);
    cr_expect_eq(merge_add(m, one, NULL, &e), GTRT_EINVAL);
    merge_tset_free(one);
    merge_tset *nan = two(v);
    nan->data[7] = NAN;
    cr_expect_eq(merge_add(m, nan, "nan", &e), GTRT_EINVAL);
    cr_expect(strstr(e.msg, "\"b\""), "%s", e.msg);
    merge_tset_free(nan);
    cr_expect_eq(merge_n_pending(m), 0);
    cr_assert_eq(merge_run(m, &e), 0);
    cr_expect_eq(merge_version(m), 0);
    expect(merge_teacher(m), v, 10, 0);
    merge_free(m);
}

Test(merge, bad_options_are_refused)
{
    merge_opts o;
    merge_opts_default(&o);
    err e = {0};
    cr_expect_eq(merge_opts_check(&o, &e), 0);
    o.alpha = 0;
    cr_expect_eq(merge_opts_check(&o, &e), GTRT_EINVAL);
    merge_opts_default(&o);
    o.density = 1.5;
    cr_expect_eq(merge_opts_check(&o, &e), GTRT_EINVAL);
    merge_opts_default(&o);
    o.lambda = NAN;
    cr_expect_eq(merge_opts_check(&o, &e), GTRT_EINVAL);
    merge_method mm;
    merge_combine mc;
    cr_expect_eq(merge_method_parse("ema", &mm, &e), 0);
    cr_expect_eq(mm, MERGE_EMA);
    cr_expect_eq(merge_method_parse("wma", &mm, &e), GTRT_EINVAL);
    cr_expect_eq(merge_combine_parse("linear", &mc, &e), 0);
    cr_expect_eq(mc, MERGE_LINEAR);
    cr_expect_eq(merge_combine_parse("dare", &mc, &e), GTRT_EINVAL);
}

/* ==== files ==== */

static char dir[64];

static void mkdir_tmp(void)
{
    snprintf(dir, sizeof dir, "/tmp/gtrt_merge_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void rm_tmp(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

static void write_st(const char *name, const float *a, const float *b, int b_n, const char *n_head)
{
    char p[128];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    st_entry ent[2] = {{.name = "a", .dtype = ST_F32, .ndim = 2, .shape = {2, 3}, .data = a},
                       {.name = "b", .dtype = ST_F32, .ndim = 1, .shape = {b_n}, .data = b}};
    st_kv meta[2] = {{"format", "gtrt-model-1"}, {"n_head", n_head}};
    err e = {0};
    cr_assert_eq(st_write(p, ent, 2, meta, 2, &e), 0, "%s", e.msg);
}

Test(merge, files_round_trip_with_metadata_and_refuse_other_models, .init = mkdir_tmp,
     .fini = rm_tmp)
{
    const float a0[6] = {0, 0, 0, 0, 0, 0}, b0[4] = {1, 1, 1, 1};
    const float a1[6] = {1, -2, 3, -4, 5, -6}, b1[5] = {2, 0, 2, 0, 2};
    write_st("base.safetensors", a0, b0, 4, "4");
    write_st("c1.safetensors", a1, b1, 4, "4");
    write_st("wide.safetensors", a1, b1, 5, "4");
    write_st("heads.safetensors", a1, b1, 4, "8");
    char p[160];
    err e = {0};
    merge_tset *base, *ck;
    snprintf(p, sizeof p, "%s/base.safetensors", dir);
    cr_assert_eq(merge_tset_load(p, &base, &e), 0, "%s", e.msg);
    cr_expect_str_eq(merge_tset_meta(base, "n_head"), "4");
    const char *bad[2] = {"wide", "heads"};
    for (int i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s.safetensors", dir, bad[i]);
        cr_expect_eq(merge_tset_load_as(base, p, &ck, &e), GTRT_EINVAL, "%s", bad[i]);
        cr_expect(strstr(e.msg, "different architecture"), "%s", e.msg);
    }
    merge_opts o = opts(MERGE_EMA, MERGE_LINEAR, 0.25, 0.8, 1.0);
    merger *m;
    cr_assert_eq(merge_new(&o, base, &m, &e), 0);
    snprintf(p, sizeof p, "%s/c1.safetensors", dir);
    cr_assert_eq(merge_tset_load_as(merge_base(m), p, &ck, &e), 0, "%s", e.msg);
    cr_assert_eq(merge_add(m, ck, "c1.safetensors", &e), 0);
    cr_assert_eq(merge_run(m, &e), 0);
    snprintf(p, sizeof p, "%s/out.safetensors", dir);
    st_kv extra = {"note", "x"};
    cr_assert_eq(merge_save(m, p, &extra, 1, &e), 0, "%s", e.msg);
    merge_tset *back;
    cr_assert_eq(merge_tset_load(p, &back, &e), 0, "%s", e.msg);
    float want[10];
    for (int i = 0; i < 6; i++)
        want[i] = 0.25f * a1[i];
    for (int i = 0; i < 4; i++)
        want[6 + i] = 0.25f * b1[i] + 0.75f;
    expect(back, want, 10, 1e-7);
    cr_expect_str_eq(merge_tset_meta(back, "format"), "gtrt-model-1");
    cr_expect_str_eq(merge_tset_meta(back, "n_head"), "4");
    cr_expect_str_eq(merge_tset_meta(back, "merge_method"), "ema");
    cr_expect_str_eq(merge_tset_meta(back, "merge_combine"), "linear");
    cr_expect_str_eq(merge_tset_meta(back, "merge_alpha"), "0.25");
    cr_expect_str_eq(merge_tset_meta(back, "merge_count"), "1");
    cr_expect_str_eq(merge_tset_meta(back, "merge_sources"), "c1.safetensors");
    cr_expect_str_eq(merge_tset_meta(back, "note"), "x");
    merge_tset_free(back);
    merge_free(m);
}

Test(merge, buffers_load_like_files, .init = mkdir_tmp, .fini = rm_tmp)
{
    const float a[6] = {1, 2, 3, 4, 5, 6}, b[4] = {7, 8, 9, 10};
    write_st("x.safetensors", a, b, 4, "2");
    char p[160];
    snprintf(p, sizeof p, "%s/x.safetensors", dir);
    FILE *f = fopen(p, "rb");
    cr_assert_not_null(f);
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    err e = {0};
    merge_tset *ts, *ts2;
    cr_assert_eq(merge_tset_load_buffer(buf, n, "x", &ts, &e), 0, "%s", e.msg);
    cr_assert_eq(merge_tset_load_buffer_as(ts, buf, n, "x", &ts2, &e), 0, "%s", e.msg);
    expect(ts2, (float[]){1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 10, 0);
    cr_expect_str_eq(merge_tset_meta(ts2, "n_head"), "2");
    cr_expect_eq(merge_tset_find(ts2, "b")->offset, 6);
    merge_tset_free(ts);
    merge_tset_free(ts2);
}
