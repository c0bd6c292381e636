/* Scoring answers with the teacher model: one batched forward pass over
 * sequences of different lengths, then, per sequence and at its own
 * temperature T, one of
 *   sampled: log softmax(z/T)[answer token] at each scored position (what
 *            the KL guidance needs: the teacher's logprob of the policy's
 *            own sampled thought);
 *   top-k:   the k likeliest token ids per position, likeliest first (ties:
 *            lower id first), and their log-probabilities;
 *   full:    the whole log-distribution per position.
 * Position r of a sequence is its r-th answer token: the distribution is
 * the model's prediction of that token from everything before it. Raw
 * logits do not depend on T, so sequences with different temperatures and
 * modes share one forward pass; each log-probability is z/T - lse computed
 * exactly as model_forward computes its own, so the sampled mode equals
 * model_forward's logprob at that temperature. */
#ifndef GTRT_SCORE_H
#define GTRT_SCORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/model.h"

#define SCORE_MAX_TOPK 64

typedef enum score_mode { SCORE_SAMPLED = 0, SCORE_TOPK = 1, SCORE_FULL = 2 } score_mode;

typedef struct score_seq {
    const float *image;    /* C x H x W floats in [0, 1], or NULL (no image prefix) */
    const int32_t *tokens; /* the prompt, then the answer */
    int n_prompt;          /* >= 1 */
    int n_tokens;          /* prompt + answer */
    int begin, end;        /* answer positions scored: 0 <= begin < end <= answer length */
    score_mode mode;
    float temperature;     /* > 0 */
    int top_k;             /* SCORE_TOPK: 1..min(SCORE_MAX_TOPK, vocab) */
    /* Outputs, caller-allocated, position-major: (end - begin) *
     * score_width() floats, and for top-k (end - begin) * top_k ids. */
    float *values;
    uint32_t *ids;
} score_seq;

/* Values per position: 1 (sampled), k (top-k) or vocab (full). */
size_t score_width(score_mode mode, int top_k, int vocab);

/* Score n sequences in one forward pass of `m` (which must not be in use
 * elsewhere: it uses the model's forward buffers). Fails on a malformed
 * sequence (message says which) or for lack of memory. */
int score_run(model *m, score_seq *seqs, int n, err *e);

#endif
