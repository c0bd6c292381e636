/* Membership as seen from a service that registers with the learner
 * (actors, teachers): a DEALER connected to the learner, Hello until
 * welcomed, a Heartbeat carrying our PeerInfo every interval, the learner's
 * liveness (silent for `liveness` intervals: gone; we then say Hello again
 * until it answers) and the list of live teachers the learner hands out.
 * Services started in any order find each other because ZeroMQ connects
 * in the background and Hello is repeated until welcomed. */
#ifndef GTRT_MEMBER_H
#define GTRT_MEMBER_H

#include "common/ckpt_xfer.h"
#include "common/service.h"

#define MEMBER_MAX_TEACHERS 64

typedef struct member_teacher {
    char id[WIRE_MAX_ID_LEN + 1];
    char endpoint[256];
    uint64_t version;
} member_teacher;

typedef struct member {
    svc *s;
    net_sock *sock;
    net_msg_cb on_other; /* messages other than membership, may be NULL */
    void *ud;
    bool welcomed;
    bool learner_alive;
    char learner_id[WIRE_MAX_ID_LEN + 1];
    uint64_t learner_last_ms;
    uint64_t timeout_ms;
    ckpt_fetcher *ckpt; /* gets the learner's checkpoint offers; may be NULL */
    ckpt_fetcher *ckpt_base; /* gets offers of the base (v0) only; may be NULL */
    member_teacher teachers[MEMBER_MAX_TEACHERS];
    size_t nteachers;
} member;

int member_init(member *m, svc *s, const char *learner_endpoint, net_msg_cb on_other, void *ud,
                err *e);
/* Call every heartbeat interval. */
void member_beat(member *m);
/* Tell the learner we are leaving (on clean shutdown). */
void member_bye(member *m, const char *reason);

#endif
