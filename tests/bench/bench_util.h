/* Small helpers shared by the benchmark programs: a monotonic clock in
 * seconds, medians, a policy of a preset sized for an env, the AdamW
 * optimiser the learner uses, and the verdict line every benchmark ends
 * with. Header-only (static functions) because each benchmark is its own
 * executable. */
#ifndef GTRT_BENCH_UTIL_H
#define GTRT_BENCH_UTIL_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "common/model.h"
#include "common/optim.h"
#include "learner/sft.h"

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of v[0..n) (sorts v); 0 when n is 0. */
static inline double bench_median(double *v, int n)
{
    if (n <= 0)
        return 0;
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static inline double bench_min(const double *v, int n)
{
    double m = n > 0 ? v[0] : 0;
    for (int i = 1; i < n; i++)
        m = v[i] < m ? v[i] : m;
    return m;
}

/* A randomly initialised policy of `preset` with the image shape of env
 * `env_name` and the tokenizer's vocabulary: the model an actor or the
 * learner of such a run holds. */
static inline int bench_policy(const char *preset, const char *env_name, uint64_t seed,
                               model **out, err *e)
{
    model_config c;
    int rc = sft_model_config(preset, env_name, NULL, &c, e);
    if (rc || (rc = model_new(&c, out, e)))
        return rc;
    rng r;
    rng_init(&r, seed);
    model_init_random(*out, &r);
    return 0;
}

/* AdamW with the optimiser defaults and weight decay on the model's
 * matrices only, as the learner builds it. */
static inline int bench_optim(const model *m, optim **out, err *e)
{
    optim_config oc;
    optim_config_default(&oc);
    optim_range *rg = malloc(sizeof *rg * (size_t)m->n_tensors);
    if (!rg)
        return err_set(e, GTRT_ENOMEM, "out of memory");
    int nr = model_decay_ranges(m, rg);
    int rc = optim_new(&oc, m->n_params, rg, nr, out, e);
    free(rg);
    return rc;
}

/* The last line of a benchmark: the figure against its target. Benchmarks
 * never fail on a number, so this only says it. */
static inline void bench_verdict(const char *what, double value, const char *unit,
                                 double target, bool below)
{
    bool met = below ? value < target : value >= target;
    printf("verdict: %s = %.3g %s, target %s %.3g %s: %s\n", what, value, unit,
           below ? "<" : ">=", target, unit, met ? "MET" : "NOT MET");
}

#endif
