/* Teacher requests as the service keeps them: every LogitsRequest and
 * GenerateRequest is checked against the served model and the configured
 * caps, then copied out of the network frames into one owned struct (the
 * frames die when the receive callback returns; the request waits in the
 * queue and is computed on another thread).
 *
 * Nothing from the network is trusted: a request that fails any check is
 * refused with a message naming the problem (which sequence, which field,
 * what the limit is), and the caller answers it with MSG_ERROR. */
#ifndef GTRT_REQUEST_H
#define GTRT_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/net.h"
#include "teacher/score.h"

/* What a request may ask of the served model and of this teacher. */
typedef struct treq_limits {
    int vocab;
    int max_seq;   /* tokens per sequence, image patches included */
    int max_text;  /* text tokens per sequence */
    int n_patches; /* image tokens */
    int img_c, img_h, img_w;
    int max_seqs;        /* sequences per request (teacher.max_seqs) */
    int64_t max_tokens;  /* text tokens per request, prompts + answers (teacher.max_tokens) */
    int default_max_new; /* generate: when the request says none (actor.max_new) */
    float gen_temperature; /* generate: when the request says none (teacher.gen_temperature) */
    int gen_top_k;         /* generate: when the request says none (teacher.gen_top_k) */
    size_t max_frame_bytes; /* largest reply payload frame (net.max_msg_bytes) */
} treq_limits;

typedef enum treq_kind { TREQ_LOGITS, TREQ_GENERATE } treq_kind;

typedef struct treq_seq {
    int32_t *tokens;       /* prompt, then (logits) the answer */
    int n_prompt, n_tokens;
    int begin, end;        /* logits: answer positions scored */
    uint8_t *image;        /* img_c * img_h * img_w bytes */
    /* Results, written by the worker. */
    float *values;         /* logits: positions * width floats */
    uint32_t *ids;         /* top-k: positions * k ids */
    uint8_t *bytes;        /* logits: the values as sent (f32 or f16 LE) */
    size_t n_bytes;
    int32_t *answer;       /* generate: up to max_new tokens */
    float *logprob;
    uint8_t *kind;
    int n_answer;
} treq_seq;

typedef struct treq {
    treq_kind kind;
    uint64_t request_id;
    net_route from;
    char sender[WIRE_MAX_ID_LEN + 1];
    uint64_t recv_ns;      /* when it arrived (latency) */
    uint64_t min_version;
    /* logits */
    score_mode mode;
    float temperature;     /* > 0 */
    int top_k;
    bool f16;
    /* generate */
    float gen_temperature; /* 0: greedy */
    int gen_top_k;         /* 0: all */
    int max_new;
    uint64_t seed;
    int n_seq;
    treq_seq *seqs;
    int64_t n_tokens;      /* text tokens of all sequences */
    /* Outcome, set by the worker: 0, or an error code and message. */
    int rc;
    char why[sizeof(((err *)0)->msg)];
} treq;

/* Check and copy a request. `payload` are its payload frames (one image
 * per sequence). On success *out owns everything it points to. */
int treq_from_logits(const Gtrt__LogitsRequest *r, const wire_slice *payload, size_t npayload,
                     const treq_limits *lim, treq **out, err *e);
int treq_from_generate(const Gtrt__GenerateRequest *r, const wire_slice *payload,
                       size_t npayload, const treq_limits *lim, treq **out, err *e);
/* Allocate the result buffers of every sequence (on the worker). */
int treq_alloc_results(treq *q, int vocab, err *e);
void treq_free(treq *q);

#endif
