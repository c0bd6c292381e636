/* Recent request latency and rate (teacher/reqstats.c) against a plain
 * sort of the same latencies, with the window sliding and the ring
 * wrapping. */
#include <stdlib.h>

#include "common/rng.h"
#include "teacher/reqstats.h"
#include "test_util.h"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile, restated: the ceil(p/100 * n)-th smallest. */
static uint64_t percentile(uint64_t *v, size_t n, double p)
{
    qsort(v, n, sizeof *v, cmp_u64);
    size_t rank = (size_t)((p / 100.0) * (double)n);
    if ((double)rank < (p / 100.0) * (double)n)
        rank++;
    return v[rank ? rank - 1 : 0];
}

Test(reqstats, empty_is_all_zero)
{
    reqstats *r = malloc(sizeof *r);
    reqstats_init(r, 1000, 50);
    reqstats_summary s;
    reqstats_summarise(r, 5000, &s);
    cr_expect_eq(s.n, 0);
    cr_expect_eq(s.p50_us, 0);
    cr_expect_eq(s.per_s, 0);
    free(r);
}

Test(reqstats, percentiles_and_rate_over_the_window)
{
    reqstats *r = malloc(sizeof *r);
    reqstats_init(r, 10000, 0);
    rng g;
    rng_init(&g, 9);
    uint64_t lat[3000], t[3000];
    /* 3000 answers, one every 10 ms from t = 0 to 29.99 s. */
    for (int i = 0; i < 3000; i++) {
        t[i] = (uint64_t)i * 10;
        lat[i] = 100 + rng_below(&g, 100000);
        reqstats_add(r, t[i], lat[i]);
    }
    uint64_t now = 30000;
    reqstats_summary s;
    reqstats_summarise(r, now, &s);
    /* The window holds answers done at or after now - 10 s: i >= 2000. */
    uint64_t in[1000];
    for (int i = 0; i < 1000; i++)
        in[i] = lat[2000 + i];
    cr_expect_eq(s.n, 1000);
    cr_expect_eq(s.p50_us, percentile(in, 1000, 50));
    cr_expect_eq(s.p99_us, percentile(in, 1000, 99));
    cr_expect_eq(s.max_us, in[999]); /* sorted by percentile() */
    cr_expect_float_eq(s.per_s, 100.0, 1e-9);
    free(r);
}

Test(reqstats, ring_keeps_the_newest)
{
    reqstats *r = malloc(sizeof *r);
    reqstats_init(r, 1000000, 0);
    for (uint64_t i = 0; i < REQSTATS_CAP + 500; i++)
        reqstats_add(r, i, i < 500 ? 1000000 : 7); /* the oldest are slow */
    reqstats_summary s;
    reqstats_summarise(r, REQSTATS_CAP + 500, &s);
    cr_expect_eq(s.n, REQSTATS_CAP);
    cr_expect_eq(s.max_us, 7, "an entry older than the ring still counts");
    free(r);
}

/* Shortly after start the rate is over the time since start, not the
 * whole window. */
Test(reqstats, rate_since_start)
{
    reqstats *r = malloc(sizeof *r);
    reqstats_init(r, 60000, 1000);
    for (int i = 0; i < 20; i++)
        reqstats_add(r, 1000 + (uint64_t)i * 100, 5);
    reqstats_summary s;
    reqstats_summarise(r, 3000, &s);
    cr_expect_float_eq(s.per_s, 10.0, 1e-9);
    free(r);
}
