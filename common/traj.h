/* One step of experience as the learner uses it, and its checked conversion
 * from the wire. Actors send Step protobufs plus an image frame; the learner
 * turns each into a traj_step only after checking every field against the
 * model's limits (token ids inside the vocabulary, lengths inside the
 * context, image of the configured shape, finite floats), so the update
 * code never sees a malformed step. */
#ifndef GTRT_TRAJ_H
#define GTRT_TRAJ_H

#include <stdbool.h>
#include <stdint.h>

#include "common/wire.h"

enum { TRAJ_KIND_FORMAT = 0, TRAJ_KIND_THOUGHT = 1, TRAJ_KIND_ACTION = 2 };

typedef struct traj_limits {
    uint32_t vocab;      /* token ids must be < vocab */
    uint32_t max_tokens; /* prompt + answer (+ image tokens are the model's) */
    uint32_t img_c, img_h, img_w;
} traj_limits;

typedef struct traj_step {
    char actor[WIRE_MAX_ID_LEN + 1];
    uint64_t episode;
    uint32_t turn;
    uint64_t policy_version;
    char env[32];
    uint32_t n_prompt, n_answer, n_teacher;
    int32_t *prompt;        /* n_prompt */
    int32_t *answer;        /* n_answer */
    float *logprob;         /* n_answer */
    float *teacher_logprob; /* n_answer; meaningful when has_teacher_logprob */
    uint8_t *kind;          /* n_answer */
    int32_t *teacher_answer; /* n_teacher */
    uint8_t *teacher_kind;  /* n_teacher */
    uint8_t *image;         /* img_c * img_h * img_w */
    float value, reward;
    float teacher_kl; /* the learner's KL guidance estimate (not on the wire) */
    uint64_t teacher_version;
    float guide_ms, act_ms; /* guidance time and turn time spent on this step */
    bool guide_failed;      /* guidance was asked for and did not come */
    bool done, truncated, format_valid, success, has_teacher_logprob;
    bool illegal; /* the move itself was penalised (kept locally, not sent) */
    void *mem; /* the one allocation behind every array above */
} traj_step;

/* Check `pb` and its image frame against `lim` and fill `out` (one
 * allocation; traj_step_free releases it). On failure returns GTRT_EINVAL
 * and points *why at a short reason ("token id out of range", ...). */
int traj_step_from_pb(const Gtrt__Step *pb, const wire_slice *image, const traj_limits *lim,
                      const char *actor, traj_step *out, const char **why);
void traj_step_free(traj_step *s);
/* Allocate the arrays of a step (zeroed fields, sizes set). */
int traj_step_alloc(traj_step *s, uint32_t n_prompt, uint32_t n_answer, uint32_t n_teacher,
                    size_t image_bytes);
/* Point `pb` (initialised here) at `s`'s fields for sending; `u32` must hold
 * n_prompt + n_answer + n_teacher entries (protobuf wants uint32 ids). */
void traj_step_to_pb(const traj_step *s, uint32_t *u32, int img_c, int img_h, int img_w,
                     Gtrt__Step *pb);

#endif
