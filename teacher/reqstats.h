/* Latency and rate of the requests a service answered recently: a ring of
 * the last REQSTATS_CAP answers (when, how long it took), summarised over
 * a sliding window on demand (status requests), so the figures describe
 * the recent past, not the whole uptime. Percentiles are nearest-rank. */
#ifndef GTRT_REQSTATS_H
#define GTRT_REQSTATS_H

#include <stddef.h>
#include <stdint.h>

#define REQSTATS_CAP 4096

typedef struct reqstats {
    uint64_t done_ms[REQSTATS_CAP];
    uint64_t latency_us[REQSTATS_CAP];
    size_t head, n; /* the newest entry is at head - 1 */
    uint64_t window_ms;
    uint64_t start_ms;
} reqstats;

typedef struct reqstats_summary {
    size_t n;           /* answers in the window (at most REQSTATS_CAP) */
    uint64_t p50_us, p99_us, max_us;
    double per_s;       /* answers per second over the window */
} reqstats_summary;

void reqstats_init(reqstats *r, uint64_t window_ms, uint64_t now_ms);
void reqstats_add(reqstats *r, uint64_t now_ms, uint64_t latency_us);
/* Summary of the answers of the last window_ms before now_ms (or since
 * start, when that is shorter). Everything 0 when there were none. */
void reqstats_summarise(const reqstats *r, uint64_t now_ms, reqstats_summary *out);

#endif
