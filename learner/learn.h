/* The learning half of the learner service: the policy, its optimiser, the
 * trajectory ingest and the PPO updates. An update runs on libuv's thread
 * pool (uv_queue_work) so ingest, heartbeats and checkpoint serving go on
 * while it computes; when it finishes, on the loop, the new version is
 * written (atomically, in the run directory), announced, and the batches it
 * learned from are acknowledged. */
#ifndef GTRT_LEARN_H
#define GTRT_LEARN_H

#include <uv.h>

#include "common/ckpt_xfer.h"
#include "common/metrics.h"
#include "common/model.h"
#include "common/optim.h"
#include "learner/ingest.h"
#include "learner/train.h"

typedef struct learn {
    const config *cfg;
    model *m;
    optim *o;
    rng rng;
    train_config tc;
    ingest g;
    uint64_t version;      /* of the policy now served */
    int64_t updates;       /* budget; 0: unlimited */
    size_t num_steps;
    int keep;
    char run_dir[512];
    metrics *mx;
    prom_server *prom;
    uint64_t env_steps;    /* steps learned from so far */
    uint64_t started_ns;
    /* the update in flight */
    uv_work_t work;
    bool busy, finished;
    traj_step *batch;
    int *batch_of;
    size_t n_batch;
    train_stats st;
    err werr;
    int wrc;
    uint8_t *ckpt;         /* bytes of the new checkpoint, from the worker */
    size_t ckpt_len;
    char ckpt_name[128];
} learn;

/* Load or create the policy, open the run directory and metrics, and make
 * version 0 ready to publish (learn_publish_initial). */
int learn_init(learn *L, const config *cfg, uv_loop_t *loop, err *e);
void learn_deinit(learn *L);
/* Publish the current weights as version L->version. */
int learn_publish_initial(learn *L, ckpt_server *cs, err *e);
/* Drop stale steps (acknowledging their batches on `router`), then start an
 * update when enough steps are buffered and none is running.
 * `done_cb` runs on the loop when it has finished. */
void learn_maybe_update(learn *L, uv_loop_t *loop, net_sock *router,
                        void (*done_cb)(uv_work_t *, int));
/* Finish an update on the loop: publish, acknowledge, log. Returns 0 or the
 * update's error. */
int learn_after_update(learn *L, ckpt_server *cs, net_sock *router, err *e);
/* Save the ingest state next to the last checkpoint (for --resume). */
int learn_save_state(learn *L, err *e);

#endif
