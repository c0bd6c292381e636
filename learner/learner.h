/* The learner service: the hub actors and teachers register with. It keeps
 * the membership table (who is alive, since when, which versions), answers
 * status requests and tells actors which teachers are alive. Later it
 * ingests trajectories, runs the RL updates and publishes checkpoints. */
#ifndef GTRT_LEARNER_H
#define GTRT_LEARNER_H

#include "common/ckpt_xfer.h"
#include "learner/learn.h"
#include "common/peers.h"
#include "common/service.h"

typedef struct learner {
    svc s;
    net_sock *router;
    net_sock *pub;     /* checkpoint announcements */
    ckpt_server ckpts; /* checkpoints served to actors and teachers */
    peer_table peers;
    uv_timer_t sweep; /* liveness checks, 4 per heartbeat interval */
    uv_check_t flush; /* ingest state to disk, then acks: once per loop iteration */
    uint64_t peers_refused; /* registrations refused: table full */
    uint64_t traj_unregistered; /* trajectory batches from unknown actors */
    uint64_t heartbeats_unregistered; /* actors asked to register again */
    uint64_t auth_refused_exported;   /* CURVE refusals already added to Prometheus */
    learn L;
} learner;

/* resume_dir: continue that run (see learn_init); NULL: a new run. */
int learner_init(learner *l, const config *cfg, const char *resume_dir, err *e);
void learner_deinit(learner *l);

/* `gtrt learner`: run the learner service until SIGINT/SIGTERM. */
int learner_main(int argc, char **argv);

#endif
