/* The teacher's query service: logits and generate requests from any
 * number of clients, checked on arrival, queued, batched and computed off
 * the libuv loop, answered each with its own request id.
 *
 * Batching: requests wait in a FIFO queue; a batch (whole requests, at
 * most max_batch sequences unless one request alone has more) is taken
 * when the queue holds max_batch sequences or its oldest request has
 * waited max_wait_ms, and only when no batch is in flight: one forward at
 * a time, on libuv's thread pool, so heartbeats and checkpoint fetches go
 * on meanwhile. All logits requests of a batch share one forward pass
 * (modes and temperatures may differ); each generate request is one
 * sampling pass of its own, seeded by the request, so its answer does not
 * depend on what else was in the batch.
 *
 * The model is asked for (model_of) when a batch starts and is not
 * touched on the loop while the batch runs; when it finishes, on_idle
 * runs, which is where the owner may swap in new weights: between
 * batches, never in the middle of one. */
#ifndef GTRT_SERVE_H
#define GTRT_SERVE_H

#include <stdbool.h>
#include <uv.h>

#include "common/model.h"
#include "common/sample.h"
#include "teacher/reqstats.h"
#include "teacher/request.h"

typedef model *(*serve_model_fn)(void *ud, uint64_t *version);
typedef void (*serve_idle_fn)(void *ud);

typedef struct serve_config {
    int max_batch;        /* sequences per batch (teacher.max_batch) */
    uint64_t max_wait_ms; /* longest a request waits for a batch to fill */
    size_t max_queue;     /* requests queued; more are refused as busy */
    treq_limits lim;      /* the caps; the model's own fields are filled per request */
} serve_config;

typedef struct serve_stats {
    uint64_t logits_served, generate_served; /* answered with results */
    uint64_t seqs, tokens;                   /* sequences and text tokens served */
    uint64_t batches;
    uint64_t errors;          /* error replies, every reason below */
    uint64_t bad_requests;    /* failed a check */
    uint64_t version_refused; /* wanted a newer teacher than this one has */
    uint64_t busy_refused;    /* queue full */
    uint64_t compute_failed;  /* the forward or sampling failed */
} serve_stats;

typedef struct serve {
    uv_loop_t *loop;
    net_sock *sock;
    serve_config cfg;
    serve_model_fn model_of;
    serve_idle_fn on_idle;
    void *ud;
    treq **queue; /* ring of cfg.max_queue */
    size_t q_head, q_len;
    int q_seqs;
    uv_timer_t timer;
    bool busy, closed;
    uv_work_t work;
    treq **job;
    int n_job;
    model *job_model;
    uint64_t job_version;
    sampler *smp; /* made on the first generate request, used on the worker */
    reqstats lat;
    serve_stats st;
} serve;

int serve_init(serve *sv, uv_loop_t *loop, net_sock *sock, const serve_config *c,
               serve_model_fn model_of, serve_idle_fn on_idle, void *ud, err *e);
/* A MSG_LOGITS_REQUEST or MSG_GENERATE_REQUEST received on sock. */
void serve_on_request(serve *sv, const net_route *from, const wire_msg *msg);
/* Answer `msg` with MSG_ERROR and count it (for requests refused before
 * they reach the queue, also by the owner). */
void serve_refuse(serve *sv, const net_route *from, const wire_msg *msg, int code,
                  const char *why);
/* Stop taking batches (shutdown): queued requests are dropped unanswered;
 * a batch in flight finishes, its replies are not sent. */
void serve_close(serve *sv);
/* Free everything; call after the loop has stopped. */
void serve_deinit(serve *sv);

#endif
