/* The PPO objective of gtrt, separated from the model so it can be checked
 * on plain arrays: generalised advantage estimation over whole episodes,
 * the clipped surrogate on the step log-probability
 *     logp_step = thought_coef * sum(logp of thought tokens) + sum(logp of action tokens)
 * (RL4VLM's thought-probability coefficient; tokens that are not action are
 * thought), the clipped value loss, an optional entropy bonus, and the
 * gradients of all of it with respect to the model's per-token
 * log-probabilities, entropies and values. */
#ifndef GTRT_PPO_H
#define GTRT_PPO_H

#include <stdint.h>

typedef struct ppo_hparams {
    float gamma;        /* 0.9 */
    float lam;          /* GAE lambda, 0.95 */
    float clip;         /* 0.1 */
    float value_clip;   /* 0.1 */
    float vf_coef;      /* 0.5 */
    float ent_coef;     /* 0 */
    float thought_coef; /* 0.5 */
} ppo_hparams;

void ppo_hparams_default(ppo_hparams *h);

/* GAE over consecutive steps; done[t] ends an episode after step t (no
 * bootstrap across it, and the last step must be done or its successor's
 * value is taken as 0). adv[t] and ret[t] = adv[t] + value[t]. */
void ppo_gae(const float *reward, const float *value, const uint8_t *done, int n, float gamma,
             float lam, float *adv, float *ret);

/* x <- (x - mean) / (std + 1e-8) */
void ppo_normalize(float *x, int n);

/* Step log-probability from per-token log-probabilities and kinds. */
double ppo_step_logp(const float *tok_logp, const uint8_t *kind, int n, float thought_coef);

typedef struct ppo_batch {
    int n_steps;
    const int *first;       /* [n_steps + 1]: token range of each step */
    const uint8_t *kind;    /* [R] TRAJ_KIND_* of each answer token */
    const float *logp;      /* [R] new per-token logprob (at the sampling temperature) */
    const float *entropy;   /* [R] new per-token entropy */
    const float *value;     /* [n_steps] new values */
    const float *old_logp;  /* [n_steps] step logprob when the step was taken */
    const float *old_value; /* [n_steps] */
    const float *adv;       /* [n_steps] (normalised) advantages */
    const float *ret;       /* [n_steps] value targets */
} ppo_batch;

typedef struct ppo_stats {
    double loss, policy_loss, value_loss, entropy, approx_kl, clip_frac;
} ppo_stats;

/* Loss averaged over the steps; writes dL/dlogp [R], dL/dentropy [R] and
 * dL/dvalue [n_steps] (any may be NULL) and fills `st`. */
double ppo_loss(const ppo_hparams *h, const ppo_batch *b, float *dlogp, float *dentropy,
                float *dvalue, ppo_stats *st);

/* 1 - Var(ret - value) / Var(ret): how much of the return the value explains. */
double ppo_explained_variance(const float *value, const float *ret, int n);

#endif
