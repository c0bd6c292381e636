/* The policy model: a decoder-only vision-language transformer in the style
 * of Fuyu (DESIGN §3), with forward, backward, a value head, a KV cache for
 * decoding and safetensors checkpoints.
 *
 * A sequence is [image patches][prompt tokens][generated tokens]. The image
 * (C x H x W floats in [0,1], channel-major) is cut into P x P patches, each
 * projected by one linear layer and given a learned patch position; text
 * tokens get a token embedding and a learned text position (counted from the
 * first text token). n_layer pre-LayerNorm blocks with causal multi-head
 * attention and a tanh-GELU MLP follow, then a final LayerNorm and the LM
 * head tied to the token embedding. The value head is an MLP
 * (d -> h1 -> h2 -> 1, GELU) on the final hidden state of the last prompt
 * token.
 *
 * Batches pack sequences of different lengths without padding. One forward
 * pass scores the "response" of every sequence (tokens after the prompt): for
 * each scored token it gives the raw logits, and at the batch's temperature T
 * the log-probability of the token and the entropy of the distribution, as
 * PPO needs them. Losses are the caller's business: model_backward takes the
 * gradient of the loss with respect to those per-token log-probabilities and
 * entropies, the values and (optionally) the raw logits, and accumulates the
 * parameter gradients.
 *
 * All parameters live in one float array (PyTorch names and shapes in
 * `tensors`), gradients in another of the same layout, so optimisers, merges
 * and checksums work on flat vectors. A model is used by one thread at a
 * time: forward, backward and prefill share its scratch buffers. */
#ifndef GTRT_MODEL_H
#define GTRT_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/optim.h"
#include "common/rng.h"
#include "common/safetensors.h"

typedef struct model_config {
    int vocab_size;
    int d_model;
    int n_layer;
    int n_head;
    int patch;   /* P: patches are P x P pixels */
    int image_c; /* image channels, height and width (multiples of P) */
    int image_h;
    int image_w;
    int max_seq;  /* most tokens per sequence, image patches included */
    int value_h1; /* value head hidden sizes */
    int value_h2;
} model_config;

/* Named presets: "tiny" (tests), "small" (default runs), "base". The vocabulary
 * size is a placeholder (256): set it from the tokenizer. */
int model_config_preset(const char *name, model_config *out, err *e);
int model_config_check(const model_config *c, err *e);
int model_config_n_patches(const model_config *c);
/* Most text tokens a sequence can hold (size of the text position table). */
int model_config_max_text(const model_config *c);
size_t model_config_n_params(const model_config *c);

/* One named parameter tensor, a slice of the flat parameter array. */
typedef struct model_tensor {
    char name[48];
    size_t offset, numel;
    int ndim;
    int shape[2];
    bool decay; /* weight decay applies (matrices; not biases, norms) */
} model_tensor;

typedef struct model_work model_work;

typedef struct model {
    model_config cfg;
    size_t n_params;
    float *params;       /* n_params floats, one allocation */
    float *grads;        /* same layout; NULL until model_zero_grad */
    int n_tensors;
    model_tensor *tensors;
    model_work *work;    /* activations and scratch (private) */
} model;

/* One sequence of a batch. The image may be NULL (no image prefix). Tokens
 * are the prompt followed by the response; n_prompt >= 1. */
typedef struct model_seq {
    const float *image;
    const int32_t *tokens;
    int n_tokens;
    int n_prompt;
} model_seq;

typedef struct model_batch {
    const model_seq *seqs;
    int n_seq;
    float temperature; /* for logprob and entropy; 1 when 0 */
} model_batch;

/* Results of the last forward pass; they point into the model and stay
 * valid until its next forward or prefill. Scored token r of sequence b is
 * tokens[n_prompt + r - first[b]], for r in [first[b], first[b+1]). */
typedef struct model_out {
    int n_seq;
    int n_scored;          /* R: all scored tokens of the batch */
    int vocab;
    const int *first;      /* [n_seq + 1] */
    const int32_t *target; /* [R] the scored token ids */
    const float *logits;   /* [R, vocab], raw (not divided by T) */
    const float *logprob;  /* [R] log softmax(logits / T)[target] */
    const float *entropy;  /* [R] entropy of softmax(logits / T) */
    const float *value;    /* [n_seq] */
} model_out;

int model_new(const model_config *c, model **out, err *e);
void model_free(model *m);
/* GPT-2 style initialisation: N(0, 0.02) matrices and embeddings, output
 * projections scaled by 1/sqrt(2 n_layer), zero biases, unit norms. */
void model_init_random(model *m, rng *r);
const model_tensor *model_tensor_find(const model *m, const char *name);

int model_forward(model *m, const model_batch *b, model_out *out, err *e);
/* Allocate (first call) and zero the gradients. */
int model_zero_grad(model *m, err *e);
/* Backpropagate from the last forward pass, adding to m->grads (so several
 * batches can accumulate). Each gradient may be NULL (no gradient from that
 * output): dlogprob, dentropy [R] with respect to the per-token logprob and
 * entropy at the batch temperature; dvalue [n_seq]; dlogits [R, vocab] on the
 * raw logits (e.g. a full-distribution KL). Fails with GTRT_ESTATE without a
 * preceding model_forward or model_zero_grad, GTRT_ENOMEM when the backward
 * scratch cannot be allocated. */
int model_backward(model *m, const float *dlogprob, const float *dentropy, const float *dvalue,
                   const float *dlogits, err *e);

/* Weight decay ranges of the flat parameter vector for the optimiser;
 * returns how many were written (at most n_tensors). */
int model_decay_ranges(const model *m, optim_range *out);

/* Estimated FLOPs of one forward pass over the batch (backward is ~2x). */
double model_forward_flops(const model_config *c, const model_batch *b);
/* Bytes of activations a forward + backward of n_rows tokens in n_seq
 * sequences of at most max_len tokens with n_scored scored tokens needs. */
size_t model_activation_bytes(const model_config *c, int n_rows, int n_seq, int max_len,
                              int n_scored);

/* ==== checkpoints (safetensors, config in __metadata__) ==== */

int model_save(const model *m, const char *path, err *e);
/* The same with extra __metadata__ pairs (vocabulary hash, policy version,
 * step...); the config keys and "format" are reserved. Read them back with
 * st_open + st_meta. */
int model_save_with(const model *m, const char *path, const st_kv *extra, int n_extra, err *e);
/* Create a model from a checkpoint. */
int model_load(const char *path, model **out, err *e);
/* Replace the weights of an existing model; the file's config must match. */
int model_load_into(model *m, const char *path, err *e);
int model_load_buffer(model *m, const void *buf, size_t n, const char *name, err *e);
/* Create a model from checkpoint bytes (e.g. fetched over the network). */
int model_load_new_buffer(const void *buf, size_t n, const char *name, model **out, err *e);
/* Read just the config of a checkpoint. */
int model_config_load(const char *path, model_config *out, err *e);

/* ==== incremental decoding with a KV cache ==== */

typedef struct model_kv model_kv;

/* A cache for up to n_slots sequences of cfg->max_seq tokens each. */
int model_kv_new(const model_config *c, int n_slots, model_kv **out, err *e);
void model_kv_free(model_kv *kv);
int model_kv_len(const model_kv *kv, int slot);

/* Run sequences 0..n_seq-1 of the batch (all tokens count as prompt) into
 * slots 0..n_seq-1, replacing what they held. Writes the raw logits of each
 * sequence's last token [n_seq, vocab] and its value [n_seq] (either may be
 * NULL). Uses the model's forward buffers. */
int model_prefill(model *m, model_kv *kv, const model_seq *seqs, int n_seq, float *logits,
                  float *value, err *e);
/* Append tokens[i] to slot slots[i] for i < n and write their next-token
 * raw logits [n, vocab]. Fails if a slot is full or a token is out of range. */
int model_decode(const model *m, model_kv *kv, const int *slots, const int32_t *tokens, int n,
                 float *logits, err *e);

#endif
