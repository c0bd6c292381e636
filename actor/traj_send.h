/* Sending steps to the learner without losing any: each batch gets the
 * next sequence number and is kept, encoded, until the learner acknowledges
 * it; when the learner comes back after being gone, every unacknowledged
 * batch is sent again (the learner drops the ones it already has). The
 * number of unacknowledged steps is bounded, which paces an actor to the
 * learner: when traj_sender_room() is 0 the actor waits. */
#ifndef GTRT_TRAJ_SEND_H
#define GTRT_TRAJ_SEND_H

#include "common/net.h"

#define TRAJ_MAX_STEPS_PER_BATCH (WIRE_MAX_FRAMES - 2)

typedef struct traj_pending {
    uint64_t seq;
    uint32_t nsteps;
    uint8_t *body; /* packed TrajBatch */
    size_t body_len;
    uint8_t *images; /* concatenated */
    size_t *image_len;
    bool unsent; /* ZeroMQ refused it the last time: retry */
} traj_pending;

typedef struct traj_send_stats {
    uint64_t batches, steps, resent, acked_steps, duplicate_acks, send_failures, retried;
} traj_send_stats;

typedef struct traj_sender {
    traj_pending *q; /* unacknowledged, by increasing seq */
    size_t n;
    uint64_t next_seq;
    uint64_t incarnation; /* this process: its start time, Unix ms */
    size_t max_unacked_steps, unacked_steps;
    traj_send_stats stats;
} traj_sender;

void traj_sender_init(traj_sender *t, size_t max_unacked_steps);
void traj_sender_deinit(traj_sender *t);
/* Steps that may still be sent before acknowledgements are needed. */
size_t traj_sender_room(const traj_sender *t);
/* Send `n` steps (n <= TRAJ_MAX_STEPS_PER_BATCH) with their images as the
 * next batch and keep it until acknowledged. A send that ZeroMQ refuses now
 * is not an error: the batch stays queued and goes out with the next
 * traj_sender_retry or resend. */
int traj_sender_send(traj_sender *t, net_sock *sock, Gtrt__Step **steps, size_t n,
                     const wire_slice *images, err *e);
/* The learner acknowledged some batches. */
void traj_sender_on_ack(traj_sender *t, const Gtrt__TrajAck *ack);
/* Send every unacknowledged batch again (after the learner came back). */
void traj_sender_resend(traj_sender *t, net_sock *sock);
/* Send the batches ZeroMQ refused before (call it now and then, e.g. every
 * heartbeat while registered): without it they would wait for the learner
 * to go away and come back. */
void traj_sender_retry(traj_sender *t, net_sock *sock);

#endif
