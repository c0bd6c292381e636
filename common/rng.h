/* Seedable, splittable random numbers (xoshiro256**, seeded by splitmix64).
 *
 * Every random choice in gtrt flows from one run seed: a component takes a
 * child stream with rng_split(parent, stream_id), which does not advance the
 * parent, so adding a consumer never changes the numbers another one sees. */
#ifndef GTRT_RNG_H
#define GTRT_RNG_H

#include <stdint.h>

typedef struct rng {
    uint64_t s[4];
} rng;

void rng_init(rng *r, uint64_t seed);
/* Derive an independent stream `stream` from `parent` without advancing it. */
void rng_split(const rng *parent, uint64_t stream, rng *child);
uint64_t rng_u64(rng *r);
/* Uniform integer in [0, n), unbiased; n > 0. */
uint64_t rng_below(rng *r, uint64_t n);
/* Uniform float in [0, 1). */
float rng_float(rng *r);
double rng_double(rng *r);
/* Standard normal (Box-Muller). */
double rng_normal(rng *r);

#endif
