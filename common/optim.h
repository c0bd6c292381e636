/* AdamW with decoupled weight decay, global gradient-norm clipping and a
 * cosine learning-rate schedule with linear warmup, over one flat parameter
 * vector (the model keeps all its parameters in one array).
 *
 * Weight decay applies only inside the given ranges (the model's matrices),
 * as in GPT-2 practice: decaying biases and norm gains only hurts. The first
 * and second moments sit in one allocation so the learner can checkpoint
 * them with the step counter. */
#ifndef GTRT_OPTIM_H
#define GTRT_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/safetensors.h"

typedef struct optim_range {
    size_t offset, count;
} optim_range;

typedef struct optim_config {
    float lr;           /* peak learning rate */
    float min_lr;       /* floor the cosine decays to */
    float beta1, beta2, eps;
    float weight_decay;
    float grad_clip;    /* global L2 norm cap; <= 0 disables clipping */
    int64_t warmup_steps;
    int64_t total_steps; /* cosine length; 0 keeps lr after warmup */
} optim_config;

typedef struct optim {
    optim_config cfg;
    size_t n;
    float *m, *v;   /* moments; m and v share one allocation (v = m + n) */
    int64_t step;   /* steps taken so far */
    int n_decay;
    optim_range *decay;
} optim;

/* lr 3e-4, min_lr 0, betas 0.9/0.999, eps 1e-8, weight decay 0.01, clip 1,
 * no warmup, no decay. */
void optim_config_default(optim_config *c);

/* `decay` ranges must be sorted and disjoint; they are copied. */
int optim_new(const optim_config *c, size_t n_params, const optim_range *decay, int n_decay,
              optim **out, err *e);
void optim_free(optim *o);

/* Learning rate for step `step` (0-based): linear warmup to lr over
 * warmup_steps, then a cosine from lr down to min_lr at total_steps. */
float optim_lr_at(const optim_config *c, int64_t step);

/* L2 norm of g (accumulated in double). */
double optim_grad_norm(const float *g, size_t n);
/* Scale g so that its norm is at most max_norm; returns the norm before. */
double optim_clip(float *g, size_t n, float max_norm);

/* One AdamW update with learning rate lr (no clipping). */
void optim_update(optim *o, float *params, const float *grads, float lr);
/* The full step: clip grads to cfg.grad_clip, update at optim_lr_at(step),
 * advance step. Returns the gradient norm before clipping. */
double optim_step(optim *o, float *params, float *grads);

/* ==== state on disk ====
 * A safetensors file holding "optim.m" and "optim.v" (F32, [n]) and
 * "optim.step" (I64, [1]), with __metadata__ format = OPTIM_FORMAT and
 * n_params. The moments are stored exactly, so a run continued from the
 * file takes bit-for-bit the steps the uninterrupted run would have taken.
 * The configuration (lr, betas, schedule) is not stored: it comes from the
 * run's config, which may change between runs. */
#define OPTIM_FORMAT "gtrt-optim-1"

/* Write the state atomically to `path`, plus the caller's own tensors and
 * metadata (names starting with "optim." and the keys "format" and
 * "n_params" are reserved). */
int optim_save(const optim *o, const char *path, const st_entry *extra, int n_extra,
               const st_kv *meta, int n_meta, err *e);
/* Load moments and step from a file written by optim_save. Refuses, with a
 * message naming the file, a different format, a parameter count other than
 * o->n, a tensor of the wrong dtype or shape, or moments that cannot come
 * from AdamW (non-finite, negative second moment); `o` is untouched then. */
int optim_load(optim *o, const st_file *f, err *e);

#endif
