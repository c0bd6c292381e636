/* A client of the teacher service (teacher/teacher.h): token log-probabilities
 * (logits requests) and teacher-written answers (generate requests), for
 * tools such as `gtrt logits` and for actors.
 *
 * A client knows one or more teacher endpoints and spreads its requests
 * over them round robin. Each attempt goes to one teacher with its own
 * timeout (common/rpc.h, Lazy Pirate: a fresh socket after a timeout);
 * when a teacher does not answer in time, has nothing as new as the
 * request's min_version (MSG_ERROR code 11), is busy (code 12) or sends a
 * reply that does not fit the request, the next attempt goes to another
 * teacher. A teacher that timed out is skipped for a cool-down while
 * others are left. After `attempts` attempts in all the call fails with a
 * message naming every teacher tried and what went wrong with it. Any
 * other error reply (a malformed request) fails the call at once: another
 * teacher would refuse it too.
 *
 * Every reply is checked against the request before use: counts, modes,
 * positions, frame sizes, ids inside the vocabulary, the version at least
 * the one asked for. Float16 values come back as float32.
 *
 * A client is used by one thread at a time; give each thread its own. */
#ifndef GTRT_TCLIENT_H
#define GTRT_TCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

enum {
    TCLIENT_MAX_TEACHERS = 16,
    TCLIENT_MAX_SEQS = 62,    /* one payload frame each (WIRE_MAX_FRAMES - 2) */
    TCLIENT_MAX_NEW = 4096,   /* longest answer a teacher writes */
    TCLIENT_MAX_VOCAB = 1 << 20,
};

/* MSG_ERROR codes a teacher answers with (positive gtrt error codes). */
enum { TCLIENT_CODE_VERSION = 11, TCLIENT_CODE_BUSY = 12 };

typedef enum tclient_mode {
    TCLIENT_SAMPLED = 0, /* logprob of each given answer token */
    TCLIENT_TOPK = 1,    /* the k likeliest ids and their logprobs per position */
    TCLIENT_FULL = 2,    /* the whole log-distribution per position */
} tclient_mode;

typedef struct tclient_opts {
    int timeout_ms;        /* one attempt */
    int attempts;          /* in all, over every teacher */
    int cooldown_ms;       /* a teacher that timed out is skipped this long */
    int64_t max_msg_bytes; /* largest reply frame taken */
    const char *id;        /* sender id; NULL: tclient-<pid> */
    void *zctx;            /* ZeroMQ context to use; NULL: the client makes its own */
    const struct security *sec; /* CURVE keys (outliving the client); NULL: plaintext */
} tclient_opts;

/* 2000 ms, 3 attempts, 10 s cool-down, 4 MiB frames. */
void tclient_opts_default(tclient_opts *o);

/* One sequence: its image (uint8 C x H x W, byte = round(255 * value), as
 * the actors quantise) and token ids. */
typedef struct tclient_seq {
    const uint8_t *image;
    int image_c, image_h, image_w;
    const int32_t *prompt; /* ends in <bos>, as the actor fed it */
    int n_prompt;
    const int32_t *answer; /* logits: the answer to score; generate: unused */
    int n_answer;
    int score_begin, score_end; /* logits: answer positions scored; 0, 0: all */
} tclient_seq;

typedef struct tclient_logits_req {
    tclient_mode mode;
    float temperature;    /* logits / T before the softmax; 0: 1 */
    int top_k;            /* TCLIENT_TOPK: k */
    bool f16;             /* values travel as float16 (half the bytes) */
    uint64_t min_version; /* oldest merged teacher version acceptable */
    const tclient_seq *seqs;
    int n_seq;
} tclient_logits_req;

/* The values of one sequence, position-major: position p is answer token
 * score_begin + p; width values per position (1, k or vocab). */
typedef struct tclient_values {
    int positions;
    float *values;  /* positions * width */
    uint32_t *ids;  /* top-k: positions * k ids, likeliest first; else NULL */
} tclient_values;

typedef struct tclient_scores {
    uint64_t teacher_version; /* newest policy version merged into the teacher */
    tclient_mode mode;
    int top_k, vocab, width;
    int n_seq;
    tclient_values *seqs;
    char endpoint[256]; /* the teacher that answered */
} tclient_scores;

typedef struct tclient_gen_req {
    float temperature;    /* < 0: the teacher's default (teacher.gen_temperature); 0: greedy */
    int top_k;            /* < 0: the teacher's default (teacher.gen_top_k); 0: all */
    int max_new;          /* 0: the teacher's default (its actor.max_new) */
    uint64_t seed;        /* same request, same answer */
    uint64_t min_version;
    const tclient_seq *seqs; /* prompts and images; answers ignored */
    int n_seq;
} tclient_gen_req;

/* One written answer: ids up to and including <end> (when reached), each
 * token's kind (0 format, 1 thought, 2 action) and sampling logprob. */
typedef struct tclient_answer {
    int n;
    int32_t *ids;
    uint8_t *kind;
    float *logprob;
} tclient_answer;

typedef struct tclient_answers {
    uint64_t teacher_version;
    int n_seq;
    tclient_answer *seqs;
    char endpoint[256];
} tclient_answers;

typedef struct tclient_stats {
    uint64_t calls, ok;       /* calls made, calls answered */
    uint64_t attempts;        /* requests sent */
    uint64_t timeouts;        /* attempts without an answer in time */
    uint64_t version_refused; /* teachers too old for the request */
    uint64_t busy_refused;    /* teachers with a full queue */
    uint64_t bad_replies;     /* replies that did not fit the request */
} tclient_stats;

typedef struct tclient tclient;

/* `endpoints`: one or more teacher endpoints separated by commas. */
int tclient_new(const char *endpoints, const tclient_opts *o, tclient **out, err *e);
void tclient_free(tclient *c);
int tclient_n_teachers(const tclient *c);
const tclient_stats *tclient_get_stats(const tclient *c);

/* Score answers. On success *out owns its arrays (tclient_scores_clear). */
int tclient_logits(tclient *c, const tclient_logits_req *r, tclient_scores *out, err *e);
void tclient_scores_clear(tclient_scores *s);

/* Ask the teacher to write answers. On success *out owns its arrays. */
int tclient_generate(tclient *c, const tclient_gen_req *r, tclient_answers *out, err *e);
void tclient_answers_clear(tclient_answers *a);

/* "sampled", "topk", "full". */
const char *tclient_mode_name(tclient_mode m);

#endif
