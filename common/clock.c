/* Monotonic and wall clocks (see clock.h). */
#include "common/clock.h"

#include <time.h>

static uint64_t clock_read_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t clock_mono_ns(void) { return clock_read_ns(CLOCK_MONOTONIC); }
uint64_t clock_mono_ms(void) { return clock_mono_ns() / 1000000ull; }
uint64_t clock_unix_ms(void) { return clock_read_ns(CLOCK_REALTIME) / 1000000ull; }
double clock_since_s(uint64_t start_ns) { return (double)(clock_mono_ns() - start_ns) * 1e-9; }
