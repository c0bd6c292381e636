/* The teacher's weights: it follows the learner's checkpoints and keeps
 * the merged teacher model up to date.
 *
 * Version 0 (the warm start) is the merge base; until the first merge the
 * teacher serves it. Every later checkpoint is added to the incremental
 * merger (teacher/merge.h); every `interval` checkpoints they are merged
 * into the teacher. Loading, merging and copying the result into a model
 * run on libuv's thread pool (one job at a time), never on the loop.
 *
 * Double buffering: queries are served by `serving`; a job writes the new
 * teacher into another model (`fresh`, or the recycled `spare`), and the
 * owner swaps it in with follow_swap when no batch is running, so a batch
 * never sees weights change under it. Memory is bounded: the merger's
 * base, teacher and pending checkpoints, the fetched checkpoints waiting
 * for the merge thread (at most FOLLOW_MAX_QUEUED; older ones are dropped,
 * counted), and two models (serving, fresh/spare).
 *
 * A checkpoint whose architecture differs from the base's (tensor names,
 * shapes, model configuration) or that holds NaN or infinity is refused,
 * logged and counted; the teacher keeps its weights. Checkpoints older than
 * one already taken are ignored, so the versions merged only grow. The
 * version the teacher reports is the newest policy version merged in. */
#ifndef GTRT_FOLLOW_H
#define GTRT_FOLLOW_H

#include <stdbool.h>
#include <uv.h>

#include "common/model.h"
#include "teacher/merge.h"

#define FOLLOW_MAX_QUEUED 8

typedef struct follow_ckpt {
    uint64_t version;
    uint8_t *data; /* owned; NULL: empty slot */
    size_t len;
} follow_ckpt;

typedef struct follow_stats {
    uint64_t fetched;      /* checkpoints taken (base included) */
    uint64_t refused;      /* refused: other architecture, non-finite, unreadable */
    uint64_t dropped;      /* dropped unmerged: too many waiting */
    uint64_t ignored;      /* older than one already taken */
    uint64_t merges;       /* merge runs that merged something */
    uint64_t merged_ckpts; /* checkpoints merged into the teacher */
    uint64_t pending;      /* in the merger, waiting for the next merge */
    uint64_t last_merge_ms;
    uint64_t swaps;        /* new weights swapped in */
} follow_stats;

/* New weights are ready: call follow_swap when no batch is running. */
typedef void (*follow_ready_fn)(void *ud);

typedef struct follow {
    uv_loop_t *loop;
    merge_opts opts;
    int interval;
    merger *mg; /* NULL until the base is built; the worker's while busy */
    model_config mc;
    bool have_base;       /* a base was taken (maybe still being built) */
    follow_ckpt base;     /* taken, not yet handed to the worker */
    follow_ckpt queue[FOLLOW_MAX_QUEUED];
    int n_queued;
    uint64_t newest_taken;
    model *serving;
    uint64_t serving_version;
    model *fresh; /* built, waiting for follow_swap */
    uint64_t fresh_version;
    model *spare;
    uint64_t merged_version; /* newest policy version in the teacher */
    /* the job in flight */
    uv_work_t work;
    bool busy, closed;
    follow_ckpt job_base;
    follow_ckpt job[FOLLOW_MAX_QUEUED];
    int n_job;
    model *job_target;        /* model the job writes; NULL: make one */
    bool job_wrote;           /* the target holds a new teacher */
    uint64_t job_version;     /* its version */
    uint64_t pending_newest;  /* newest version in the merger's pending list (worker's) */
    int job_refused;
    char job_log[FOLLOW_MAX_QUEUED + 1][320];
    int n_job_log;
    uint64_t job_ms;
    follow_stats st;
    follow_ready_fn on_ready;
    void *ud;
} follow;

/* interval >= 1; opts checked by the caller (merge_opts_check). */
void follow_init(follow *f, uv_loop_t *loop, const merge_opts *opts, int interval,
                 follow_ready_fn on_ready, void *ud);
/* A verified checkpoint fetched from the learner (ownership of data passes).
 * Version 0 is the base (taken once); later versions are merged. */
void follow_offer(follow *f, uint64_t version, uint8_t *data, size_t len);
/* The model queries are served by and its version; NULL before the base. */
model *follow_serving(const follow *f, uint64_t *version);
/* Swap in new weights, if any are ready and no job is writing them; call
 * only when the serving model is not in use. True when it swapped. */
bool follow_swap(follow *f);
/* Stop starting jobs (shutdown); a job in flight finishes. */
void follow_close(follow *f);
/* Free everything; call after the loop has stopped. */
void follow_deinit(follow *f);

#endif
