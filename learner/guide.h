/* The guidance terms of GTR and GTR-Turbo, separated from the model so they
 * can be checked on plain arrays.
 *
 * KL guidance (turbo-kl): the teacher scores the policy's own sampled
 * answer; per token d = logp_policy - logp_teacher (both at the sampling
 * temperature) and one number per step is the mean of an estimator over the
 * guided tokens (thought tokens, i.e. every token that is not action, or all
 * of them). The learner subtracts beta * kl from the step's advantage after
 * GAE and before normalisation. Estimators (GTR-Turbo's ablations):
 *   clamp    clamp(d, 0, max)         the paper's choice (max 10)
 *   plain    d                        no clamp
 *   abs      |d|
 *   k3       exp(-d) - 1 + d          Schulman's low-variance reverse-KL estimator
 *   forward  exp(-d) * (-d)           KL(teacher || policy), importance-weighted
 *                                     on the policy's samples
 *
 * SFT guidance (gtr, turbo-sft): cross-entropy on a corrected or teacher-
 * written answer, every token but the action's (the action stays the
 * policy's own), averaged over those tokens. */
#ifndef GTRT_GUIDE_H
#define GTRT_GUIDE_H

#include <stdbool.h>
#include <stdint.h>

typedef enum guide_kl_est {
    GUIDE_KL_CLAMP,
    GUIDE_KL_PLAIN,
    GUIDE_KL_ABS,
    GUIDE_KL_K3,
    GUIDE_KL_FORWARD,
} guide_kl_est;

typedef struct guide_kl_config {
    guide_kl_est est;
    float clamp_max;  /* GUIDE_KL_CLAMP: upper bound, 10 in GTR-Turbo */
    bool with_action; /* guide the action tokens too (an ablation) */
} guide_kl_config;

/* "clamp" | "plain" | "abs" | "k3" | "forward"; -1 when unknown. */
int guide_kl_est_parse(const char *name);
const char *guide_kl_est_name(guide_kl_est est);

/* Per-token estimate for d = logp_policy - logp_teacher. */
double guide_kl_token(double d, const guide_kl_config *c);

/* The step's KL: the mean estimate over the guided tokens of an answer of
 * n tokens (kind: TRAJ_KIND_* per token); 0 when no token is guided. */
double guide_kl_step(const float *logp_policy, const float *logp_teacher, const uint8_t *kind,
                     int n, const guide_kl_config *c);

/* KL shaping after GAE, before normalisation (GTR-Turbo): adv -= beta * kl
 * and the value targets follow, ret = adv + value. */
void guide_shape_advantages(float *adv, float *ret, const float *value, const float *kl, int n,
                            float beta);

/* SFT loss over n answer tokens (one answer or a whole batch):
 * -mean(logp) over the imitated tokens, which are the non-action ones
 * unless with_action; writes d(coef * loss)/dlogp into dlogp[0..n) (0 for
 * tokens not imitated; dlogp may be NULL), sets *counted (may be NULL) and
 * returns the unscaled loss (0 when no token is imitated). */
double guide_sft_loss(const float *logp, const uint8_t *kind, int n, bool with_action, float coef,
                      float *dlogp, int *counted);

#endif
