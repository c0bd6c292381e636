/* One PPO update of the policy on a batch of complete episodes: GAE per
 * episode (from the values the actors recorded), optional KL guidance
 * subtracted from the advantages (guide.h; per step from the teacher's
 * logprobs of the answer, when the actor got them), advantage
 * normalisation, then `epochs` passes of shuffled minibatches, each a
 * forward at the sampling temperature, the PPO loss (ppo.h), a backward,
 * optionally the SFT guidance loss on `sft_batch` samples drawn from the
 * guidance data (corrected or teacher-written answers aggregated so far),
 * and one AdamW step for both.
 * Runs on whatever thread calls it; the model and optimiser are its own for
 * the duration. */
#ifndef GTRT_TRAIN_H
#define GTRT_TRAIN_H

#include "common/model.h"
#include "common/optim.h"
#include "common/traj.h"
#include "learner/guide.h"
#include "learner/ppo.h"

typedef struct train_config {
    ppo_hparams ppo;
    int epochs;        /* 4 */
    int minibatch;     /* steps per minibatch */
    float temperature; /* the actors' sampling temperature */
    float kl_coef;      /* beta: teacher KL subtracted from the advantage (0: off) */
    guide_kl_config kl; /* its estimator */
    float sft_coef;     /* SFT guidance loss coefficient (0: off) */
    int sft_batch;      /* SFT guidance samples per PPO minibatch */
} train_config;

typedef struct train_stats {
    int n_steps, n_episodes;
    double success_rate, mean_return, mean_length, format_valid;
    double thought_entropy, policy_loss, value_loss, approx_kl, clip_frac;
    double explained_variance, grad_norm, lr;
    double teacher_kl;                /* mean KL estimate over the guided steps */
    double kl_p50, kl_p90, kl_max;    /* its distribution */
    double guided_share;              /* steps that had teacher logprobs */
    double sft_loss, sft_tokens;      /* SFT guidance (mean loss, imitated tokens) */
    int sft_batches;
    double tokens, seconds, flops;
} train_stats;

/* Reorders `steps` (by actor, episode, turn). */
int train_update(model *m, optim *o, traj_step *steps, int n, const train_config *tc, rng *r,
                 train_stats *st, err *e);
/* The same with SFT guidance samples guide[0..n_guide) (their answer is the
 * one to imitate; may be empty). */
int train_update_guided(model *m, optim *o, traj_step *steps, int n, const traj_step *guide,
                        int n_guide, const train_config *tc, rng *r, train_stats *st, err *e);

#endif
