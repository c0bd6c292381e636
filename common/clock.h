/* Time: a monotonic clock for intervals and timeouts, wall time for logs
 * and for reporting when things happened. Code whose timing logic must be
 * tested takes `now_ms` as a parameter instead of reading a clock. */
#ifndef GTRT_CLOCK_H
#define GTRT_CLOCK_H

#include <stdint.h>

uint64_t clock_mono_ns(void);
uint64_t clock_mono_ms(void);
uint64_t clock_unix_ms(void);
/* Seconds elapsed since `start_ns` (from clock_mono_ns), as a double. */
double clock_since_s(uint64_t start_ns);

#endif
