/* DAgger-style aggregation of SFT guidance data (GTR, GTR-Turbo SFT): every
 * step that arrives with an answer to imitate (the oracle's correction, or
 * the teacher's answer) becomes an SFT sample — its prompt and image with
 * that answer — and SFT minibatches are drawn from everything aggregated so
 * far. Memory is bounded by `cap` samples: past it, reservoir sampling
 * keeps a uniform sample of all samples ever added, so old data keeps its
 * share as in DAgger instead of being pushed out by the newest. */
#ifndef GTRT_DAGGER_H
#define GTRT_DAGGER_H

#include <stdint.h>

#include "common/rng.h"
#include "common/traj.h"

typedef struct dagger {
    traj_step *s; /* n samples; answer = the answer to imitate */
    int n, cap;
    uint64_t added; /* samples offered so far */
    rng r;
} dagger;

int dagger_init(dagger *d, int cap, uint64_t seed);
void dagger_free(dagger *d);
/* Offer step `src`, whose image has image_bytes bytes (no-op without an answer to imitate, or when prompt +
 * that answer exceed max_tokens); returns 1 when kept, 0 when not, or
 * GTRT_ENOMEM. */
int dagger_add(dagger *d, const traj_step *src, uint32_t max_tokens, size_t image_bytes);

#endif
