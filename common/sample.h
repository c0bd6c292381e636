/* Sampling many sequences at once from the policy with a KV cache.
 *
 * One call prefills every prompt (image + prompt tokens) in a single batched
 * forward pass, then decodes one token per live sequence per step until each
 * one stops: on the end token, after max_new tokens, or when the sequence
 * reaches the model's max_seq. Tokens are drawn from softmax(logits / T),
 * restricted to the top k and to the tokens an optional per-step mask hook
 * allows (constrained decoding). The log-probability reported for a token is
 * that of the full tempered distribution, log softmax(logits / T)[token],
 * ignoring top-k and the mask, because that is what model_forward recomputes
 * at the same temperature when PPO forms its probability ratio (as RL4VLM
 * does). Every sequence draws from its own random stream split from the
 * caller's, so its tokens do not depend on what else is in the batch. */
#ifndef GTRT_SAMPLE_H
#define GTRT_SAMPLE_H

#include <stdint.h>

#include "common/err.h"
#include "common/model.h"
#include "common/rng.h"

/* Constrained decoding hook: called before each token of sequence `seq` is
 * drawn, with the tokens generated so far; `allowed` (vocab_size bytes)
 * arrives all ones and the hook clears the tokens it forbids. */
typedef void (*sample_mask_fn)(void *ctx, int seq, const int32_t *generated, int n_generated,
                               uint8_t *allowed);

typedef struct sample_config {
    float temperature; /* > 0; <= 0 means greedy, with logprobs at T = 1 */
    int top_k;         /* 0: the whole vocabulary */
    int max_new;       /* most tokens generated per sequence, >= 1 */
    int32_t end_token; /* stop after emitting it; -1: none */
    sample_mask_fn mask;
    void *mask_ctx;
    /* Optional [n_seq][max_new][vocab] raw logits of every step (for tests
     * and for callers that want the whole distribution). */
    float *record_logits;
} sample_config;

typedef enum sample_stop {
    SAMPLE_STOP_END = 1, /* emitted end_token (it is the last token) */
    SAMPLE_STOP_MAX_NEW, /* generated max_new tokens */
    SAMPLE_STOP_FULL,    /* the sequence filled the model's max_seq */
    SAMPLE_STOP_MASKED,  /* the mask hook allowed no token at all */
} sample_stop;

/* Per sequence; tokens and logprobs point into the sampler and stay valid
 * until its next sample_run. */
typedef struct sample_result {
    int n;
    sample_stop stop;
    float value; /* value head at the last prompt token */
    const int32_t *tokens;
    const float *logprobs;
} sample_result;

typedef struct sampler sampler;

/* A sampler for up to max_batch sequences at a time of a model with config c. */
int sample_new(const model_config *c, int max_batch, sampler **out, err *e);
void sample_free(sampler *s);

/* Generate continuations for n_seq prompts (each prompt's tokens are all
 * prompt: n_prompt is ignored). Uses the model's forward buffers. */
int sample_run(sampler *s, model *m, const model_seq *prompts, int n_seq,
               const sample_config *cfg, rng *r, sample_result *out, err *e);

/* Pick a token from one row of raw logits (exposed for tests): the top-k /
 * mask / temperature rule above. Returns the token, or -1 when the mask
 * allows nothing; *logprob gets the full tempered log-probability.
 * `allowed` may be NULL; fscratch and iscratch need V entries each. */
int32_t sample_pick(const float *logits, int V, const uint8_t *allowed, float temperature,
                    int top_k, rng *r, float *fscratch, int32_t *iscratch, float *logprob);

#endif
