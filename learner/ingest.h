/* Trajectory ingest on the learner: checks every step, drops duplicates by
 * (actor id, batch seq), drops steps too stale to learn from (counted),
 * buffers the rest for the next update, and acknowledges a batch once every
 * step of it has been learned from or dropped with a count.
 *
 * Acknowledging on use rather than on receipt is what makes a learner crash
 * lose nothing: an actor keeps each batch until it is acknowledged and sends
 * the unacknowledged ones again when the learner is back; the learner's
 * record of acknowledged seqs is saved with its checkpoint, so a resumed
 * learner takes exactly the batches it had not learned from. */
#ifndef GTRT_INGEST_H
#define GTRT_INGEST_H

#include <stdio.h>

#include "common/net.h"
#include "common/traj.h"

typedef struct ingest_actor {
    char id[WIRE_MAX_ID_LEN + 1];
    net_route route;
    uint64_t floor;     /* every seq <= floor has been acknowledged */
    uint64_t *acked;    /* acknowledged seqs above floor */
    size_t n_acked;
    uint64_t *pending;  /* received, being learned from */
    size_t n_pending;
    uint64_t steps, stale, invalid, duplicates;
} ingest_actor;

typedef struct ingest_batch {
    int actor; /* index into actors; -1 = free slot */
    uint64_t seq;
    uint32_t open; /* steps not yet learned from or dropped */
} ingest_batch;

typedef struct ingest_stats {
    uint64_t batches, steps, accepted, stale, invalid, duplicates, rejected_batches, acks;
} ingest_stats;

typedef struct ingest {
    traj_limits lim;
    uint64_t max_lag;
    ingest_actor *actors;
    size_t n_actors, max_actors;
    ingest_batch *batches;
    size_t n_batches;
    traj_step *steps; /* accepted, waiting for an update, in arrival order */
    int *step_batch;  /* batch slot of each */
    size_t n_steps, cap_steps;
    ingest_stats stats;
} ingest;

int ingest_init(ingest *g, const traj_limits *lim, uint64_t max_lag, size_t max_actors);
void ingest_deinit(ingest *g);

/* A TrajBatch from `actor` (the caller checked it is a registered actor),
 * received on `sock` from `from`, while the learner is at `version`. */
void ingest_on_batch(ingest *g, net_sock *sock, const net_route *from, const char *actor,
                     const wire_msg *msg, uint64_t version);

/* Drop buffered steps whose policy lags `version` by more than max_lag. */
void ingest_drop_stale(ingest *g, net_sock *sock, uint64_t version);

/* Hand the oldest `n` buffered steps to the caller (moved: the caller owns
 * them and frees them with traj_step_free) and remember their batches;
 * returns how many were moved. */
size_t ingest_take(ingest *g, traj_step *out, int *batch_of, size_t n);
/* Number of buffered steps up to the first batch boundary at or after `n`
 * (batches are whole episodes, so this keeps episodes whole); 0 when fewer
 * than `n` steps are buffered. */
size_t ingest_ready(const ingest *g, size_t n);
/* The steps of `batch_of[0..n)` have been learned from: acknowledge every
 * batch that has no step left open. */
void ingest_done(ingest *g, net_sock *sock, const int *batch_of, size_t n);

/* Save / load the acknowledged seqs (text, one actor per line). */
int ingest_save(const ingest *g, FILE *f);
int ingest_load(ingest *g, FILE *f, err *e);

#endif
