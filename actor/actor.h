/* The actor service: registers with the learner, follows its checkpoints,
 * plays episodes with the latest policy and ships them to the learner.
 * Any number may run, started and stopped at any time, on any host.
 *
 * Rollout turns run on libuv's thread pool so heartbeats and checkpoint
 * fetches go on meanwhile; new weights are swapped in between turns, so an
 * episode never loses a turn (its steps record which version acted). The
 * actor waits while too many of its steps are unacknowledged, which paces
 * it to the learner. */
#ifndef GTRT_ACTOR_H
#define GTRT_ACTOR_H

#include "actor/rollout.h"
#include "actor/traj_send.h"
#include "common/ckpt_xfer.h"
#include "common/member.h"
#include "common/service.h"

typedef struct actor_episode {
    traj_step *steps;
    size_t n;
} actor_episode;

typedef struct actor {
    svc s;
    member m;
    ckpt_fetcher fetch;
    traj_sender send;
    net_sock *status; /* answers `gtrt status` on actor.status_bind; may be NULL */
    model *policy;
    uint64_t version;
    rollout *ro;
    rollout_config rc;
    env_params ep;
    uv_work_t work;
    bool busy;
    err werr;
    int wrc;
    uint8_t *pending; /* newest fetched checkpoint, not yet swapped in */
    size_t pending_len;
    uint64_t pending_version;
    actor_episode *eps; /* finished in the last turn, to send */
    size_t n_eps, cap_eps;
    uint64_t steps_sent, episodes_sent;
    bool learner_was_alive; /* welcomed at the last heartbeat */
    bool learner_seen;      /* the learner went away at least once */
    /* The live teachers the learner lists, as the next turn will see them
     * (written on the loop before a turn is queued, read by the turn). */
    char teachers[MEMBER_MAX_TEACHERS * 257];
} actor;

int actor_init(actor *a, const config *cfg, err *e);
void actor_deinit(actor *a);

/* `gtrt actor`: run an actor until SIGINT/SIGTERM. */
int actor_main(int argc, char **argv);

#endif
