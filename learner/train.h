/* One PPO update of the policy on a batch of complete episodes: GAE per
 * episode (from the values the actors recorded), optional KL guidance
 * subtracted from the advantages, advantage normalisation, then
 * `epochs` passes of shuffled minibatches, each a forward at the sampling
 * temperature, the PPO loss (ppo.h), a backward and an AdamW step.
 * Runs on whatever thread calls it; the model and optimiser are its own for
 * the duration. */
#ifndef GTRT_TRAIN_H
#define GTRT_TRAIN_H

#include "common/model.h"
#include "common/optim.h"
#include "common/traj.h"
#include "learner/ppo.h"

typedef struct train_config {
    ppo_hparams ppo;
    int epochs;        /* 4 */
    int minibatch;     /* steps per minibatch */
    float temperature; /* the actors' sampling temperature */
    float kl_coef;     /* teacher KL subtracted from the advantage (0: off) */
} train_config;

typedef struct train_stats {
    int n_steps, n_episodes;
    double success_rate, mean_return, mean_length, format_valid;
    double thought_entropy, policy_loss, value_loss, approx_kl, clip_frac;
    double explained_variance, grad_norm, lr, teacher_kl;
    double tokens, seconds, flops;
} train_stats;

/* Reorders `steps` (by actor, episode, turn). */
int train_update(model *m, optim *o, traj_step *steps, int n, const train_config *tc, rng *r,
                 train_stats *st, err *e);

#endif
