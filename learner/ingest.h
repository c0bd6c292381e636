/* Trajectory ingest on the learner: checks every step, drops duplicates by
 * (actor id, batch seq), drops steps too stale to learn from (counted),
 * buffers the rest for the next update, and acknowledges a batch once every
 * step of it has been learned from or dropped with a count.
 *
 * Acknowledging on use rather than on receipt is what makes a learner crash
 * lose nothing: an actor keeps each batch until it is acknowledged and sends
 * the unacknowledged ones again when the learner is back; the learner's
 * record of acknowledged seqs is saved with its checkpoint, so a resumed
 * learner takes exactly the batches it had not learned from.
 *
 * Settling and persisting. A batch is *settled* when its last open step is
 * learned from or dropped; its outcome (steps learned, stale, invalid) then
 * moves into the actor's settled tally and its seq into the acknowledged
 * set. Acknowledgements wait in an outbox until the settled state is on
 * disk: before sending them, ingest calls the persist hook (when one is
 * set) and keeps them queued while it fails. So an actor never drops a batch
 * whose outcome a crash could still undo, and the saved tallies count every
 * acknowledged step exactly once. Acks that cannot be sent (the actor's
 * route changed) stay queued and are retried with the route refreshed.
 *
 * Actor restarts. A new actor process under an old id numbers its batches
 * from 1 again; its batches carry its incarnation (start time), and a newer
 * one makes ingest forget the old process's seqs (its batches still open
 * are learned from and counted, but not acknowledged: nobody is left to
 * tell), so the new process's batches are not mistaken for duplicates. */
#ifndef GTRT_INGEST_H
#define GTRT_INGEST_H

#include <stdio.h>

#include "common/net.h"
#include "common/traj.h"

/* Outcomes of the steps of settled batches (or of one open batch). */
typedef struct ingest_tally {
    uint64_t steps;   /* received: learned + stale + invalid */
    uint64_t learned; /* in an update */
    uint64_t stale;   /* dropped: policy lag over ppo.max_policy_lag */
    uint64_t invalid; /* dropped: failed the checks */
} ingest_tally;

typedef struct ingest_actor {
    char id[WIRE_MAX_ID_LEN + 1];
    net_route route;
    uint64_t incarnation; /* the actor process the seqs below belong to */
    uint64_t floor;     /* every seq <= floor has been acknowledged */
    uint64_t *acked;    /* acknowledged seqs above floor */
    size_t n_acked;
    uint64_t *pending;  /* received, being learned from */
    size_t n_pending;
    uint64_t steps, stale, invalid; /* received by this process, open batches included */
    uint64_t duplicates;            /* batches seen again (saved) */
    ingest_tally settled;           /* acknowledged batches over the whole run (saved) */
} ingest_actor;

typedef struct ingest_batch {
    int actor; /* index into actors; -1 = free slot */
    uint64_t incarnation;
    uint64_t seq;
    uint32_t open; /* steps not yet learned from or dropped */
    ingest_tally t;
} ingest_batch;

/* Counters of this process (they start at 0 after a resume), except
 * `settled`, which sums the actors' settled tallies over the whole run. */
typedef struct ingest_stats {
    uint64_t batches, steps, accepted, stale, invalid, duplicates, rejected_batches, acks;
    uint64_t old_incarnation; /* batches from an earlier process of a restarted actor */
    uint64_t acks_retried; /* acks that could not be sent at once */
    uint64_t acks_dropped; /* given up on (outbox full); the actor resends, gets a duplicate ack */
    ingest_tally settled;
} ingest_stats;

typedef struct ingest_ack {
    int actor;
    uint64_t incarnation; /* of the process it is for; dropped if that one is gone */
    uint64_t seq;
    Gtrt__AckStatus status;
} ingest_ack;

/* Most acks kept for sending; beyond it the oldest are dropped (counted). */
#define INGEST_MAX_OUTBOX 65536

/* Called before acknowledgements go out whenever settled state changed;
 * returns 0 once that state is safely stored. */
typedef int (*ingest_persist_fn)(void *ud);

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
    ingest_ack *outbox; /* acks waiting for the persist hook or a route */
    size_t n_out, cap_out;
    bool dirty;         /* settled state changed since it was persisted */
    ingest_persist_fn persist;
    void *persist_ud;
    ingest_stats stats;
} ingest;

int ingest_init(ingest *g, const traj_limits *lim, uint64_t max_lag, size_t max_actors);
void ingest_deinit(ingest *g);
/* Hook run before acks go out (NULL: send at once). */
void ingest_set_persist(ingest *g, ingest_persist_fn fn, void *ud);

/* A TrajBatch from `actor` (the caller checked it is a registered actor),
 * received from `from`, while the learner is at `version`. Acks go out on
 * `sock`; with sock NULL they are only queued and the caller flushes (the
 * learner does once per loop iteration, so one write to disk covers every
 * batch a burst of messages settled). */
void ingest_on_batch(ingest *g, net_sock *sock, const net_route *from, const char *actor,
                     const wire_msg *msg, uint64_t version);

/* Drop buffered steps whose policy lags `version` by more than max_lag;
 * acks as for ingest_on_batch. */
void ingest_drop_stale(ingest *g, net_sock *sock, uint64_t version);

/* Hand the oldest `n` buffered steps to the caller (moved: the caller owns
 * them and frees them with traj_step_free) and remember their batches;
 * returns how many were moved. */
size_t ingest_take(ingest *g, traj_step *out, int *batch_of, size_t n);
/* Number of buffered steps up to the first batch boundary at or after `n`
 * (batches are whole episodes, so this keeps episodes whole); 0 when fewer
 * than `n` steps are buffered. */
size_t ingest_ready(const ingest *g, size_t n);
/* The steps of `batch_of[0..n)` have been learned from: settle every batch
 * that has no step left open, persist, acknowledge on `sock` (NULL: keep the
 * acks queued). Returns the persist hook's error, 0 otherwise. */
int ingest_done(ingest *g, net_sock *sock, const int *batch_of, size_t n);
/* Persist if needed, then send queued acks on `sock`; returns the persist
 * hook's error (the acks stay queued), 0 otherwise. */
int ingest_flush(ingest *g, net_sock *sock);
/* Steps of batches received but not settled yet (buffered, in an update,
 * or dropped from a batch that still has steps open): what the actors
 * still hold unacknowledged, once their batches have all arrived. */
uint64_t ingest_open_steps(const ingest *g);
/* `actor` was heard from `route` (e.g. a heartbeat): acks go there now. */
void ingest_refresh_route(ingest *g, const char *actor, const net_route *route);

/* Save / load the acknowledged seqs and settled tallies (text, one actor
 * per line). Loading checks every line and refuses inconsistent tallies. */
int ingest_save(const ingest *g, FILE *f);
int ingest_load(ingest *g, FILE *f, err *e);

#endif
