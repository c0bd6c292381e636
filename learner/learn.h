/* The learning half of the learner service: the policy, its optimiser, the
 * trajectory ingest and the PPO updates. An update runs on libuv's thread
 * pool (uv_queue_work) so ingest, heartbeats and checkpoint serving go on
 * while it computes; when it finishes, on the loop, the new version is
 * written (atomically, in the run directory), announced, and the batches it
 * learned from are acknowledged.
 *
 * Everything a restart needs is on disk before anything is acknowledged or
 * announced (learner/resume.h), so `--resume` continues a stopped or killed
 * learner with the next version number, the same optimizer state and the
 * same record of which actor batches were learned from. */
#ifndef GTRT_LEARN_H
#define GTRT_LEARN_H

#include <uv.h>

#include "common/ckpt_xfer.h"
#include "common/metrics.h"
#include "common/model.h"
#include "common/optim.h"
#include "learner/dagger.h"
#include "learner/ingest.h"
#include "learner/train.h"

typedef struct learn {
    const config *cfg;
    model *m;
    optim *o;
    rng rng;
    train_config tc;
    bool teacher_mode;     /* turbo-sft / turbo-kl: steps carry teacher versions */
    ingest g;
    dagger dg;             /* SFT guidance samples (gtr) */
    uint64_t version;      /* of the policy now served */
    int64_t updates;       /* budget; 0: unlimited */
    size_t num_steps;
    int keep;
    char run_dir[512];
    metrics *mx;
    prom_server *prom;
    uint64_t env_steps;    /* steps learned from so far, over the whole run */
    uint64_t env_steps_at_start;
    uint64_t started_ns;
    bool state_ok;         /* set up completely: its state may be saved */
    bool save_failing;     /* the last save of the record failed (log once) */
    int lock_fd;           /* holds RUN/learner.lock; -1: none */
    /* the update in flight */
    uv_work_t work;
    bool busy, finished;
    traj_step *batch;
    int *batch_of;
    size_t n_batch;
    size_t with_answer, corrected; /* its steps with an answer to imitate; differing from their own */
    train_stats st;
    err werr;
    int wrc;
    uint8_t *ckpt;         /* bytes of the new checkpoint, from the worker */
    size_t ckpt_len;
    char ckpt_name[128];
} learn;

/* Refuse a configuration the learner cannot train with (the message says
 * which keys and why); warn about one that needs enough actors. */
int learn_check_config(const config *cfg, err *e);
/* A new run (resume_dir NULL): load or create the policy and write version
 * 0 to run.out_dir/run.name. A resumed one: load the version named by
 * RESUME_DIR's record with its optimizer state and ingest record. Either
 * way the version is then ready to publish (learn_publish_initial). */
int learn_init(learn *L, const config *cfg, uv_loop_t *loop, const char *resume_dir, err *e);
void learn_deinit(learn *L);
/* Publish version 0 and, when resumed later than 0, the current version. */
int learn_publish_initial(learn *L, ckpt_server *cs, err *e);
/* Drop stale steps (their acks are queued for the next ingest_flush), then
 * start an update when enough steps are buffered and none is running.
 * `done_cb` runs on the loop when it has finished. */
void learn_maybe_update(learn *L, uv_loop_t *loop, void (*done_cb)(uv_work_t *, int));
/* Finish an update on the loop: record the new version on disk, then
 * acknowledge its batches, announce it and log. With cs and router NULL
 * (shutting down) it only records. Returns 0 or the update's error (the
 * batches of a failed update stay unacknowledged, for the actors to
 * resend). */
int learn_after_update(learn *L, ckpt_server *cs, net_sock *router, err *e);
/* Replace the commit record with the current state (for --resume); does
 * nothing unless set-up finished. */
int learn_save_state(learn *L, err *e);

#endif
