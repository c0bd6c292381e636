/* Recent request latency and rate (see reqstats.h). */
#include "teacher/reqstats.h"

#include <stdlib.h>
#include <string.h>

void reqstats_init(reqstats *r, uint64_t window_ms, uint64_t now_ms)
{
    memset(r, 0, sizeof *r);
    r->window_ms = window_ms ? window_ms : 1;
    r->start_ms = now_ms;
}

void reqstats_add(reqstats *r, uint64_t now_ms, uint64_t latency_us)
{
    r->done_ms[r->head] = now_ms;
    r->latency_us[r->head] = latency_us;
    r->head = (r->head + 1) % REQSTATS_CAP;
    if (r->n < REQSTATS_CAP)
        r->n++;
}

static int reqstats_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest value with at least p percent at or below. */
static uint64_t reqstats_rank(const uint64_t *sorted, size_t n, unsigned p)
{
    size_t k = (n * p + 99) / 100;
    return sorted[k ? k - 1 : 0];
}

void reqstats_summarise(const reqstats *r, uint64_t now_ms, reqstats_summary *out)
{
    memset(out, 0, sizeof *out);
    uint64_t from = now_ms > r->window_ms ? now_ms - r->window_ms : 0;
    if (from < r->start_ms)
        from = r->start_ms;
    uint64_t *lat = malloc(REQSTATS_CAP * sizeof *lat);
    if (!lat)
        return;
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++) {
        size_t at = (r->head + REQSTATS_CAP - 1 - i) % REQSTATS_CAP; /* newest first */
        if (r->done_ms[at] < from)
            break;
        lat[n++] = r->latency_us[at];
    }
    if (n) {
        qsort(lat, n, sizeof *lat, reqstats_cmp);
        out->n = n;
        out->p50_us = reqstats_rank(lat, n, 50);
        out->p99_us = reqstats_rank(lat, n, 99);
        out->max_us = lat[n - 1];
        uint64_t span = now_ms - from;
        out->per_s = (double)n * 1000.0 / (double)(span ? span : 1);
    }
    free(lat);
}
