/* Supervised fine-tuning on oracle answers: the warm start every RL run
 * begins from (the papers start from an SFT'd policy), and the imitation
 * loss of GTR-Turbo's SFT guidance.
 *
 * Data: each sample is a state reached by playing the oracle for a random
 * number of turns from a seeded deal (uniform over the turns of the
 * oracle's whole episode, so late states such as a nearly finished Points24
 * formula are covered), with the oracle's answer for it. A configurable
 * share of the answers is imperfect on purpose, so that the warm start is
 * a weak policy as in the papers (RL starts from an SFT'd model that
 * succeeds 10-25 % of the time on Points24): half of them misread one
 * value of the picture, half follow the plan (thought and action) the
 * oracle made for another deal. Loss: mean negative log-likelihood of the
 * answer tokens (teacher forcing, temperature 1), optionally only over
 * thought tokens.
 *
 * `gtrt sft` builds the data, trains a fresh model of a preset size (image
 * shape from the env, vocabulary from the tokenizer), evaluates it and
 * writes checkpoint version 0 with the effective configuration. */
#ifndef GTRT_SFT_H
#define GTRT_SFT_H

#include "actor/envs/env.h"
#include "common/model.h"
#include "common/optim.h"
#include "common/traj.h"

/* n oracle samples of env `name` (image as bytes, prompt ids, answer ids in
 * `answer`, kinds marked). *out is an array the caller frees (each step with
 * traj_step_free). */
int sft_make_data(const char *name, const env_params *ep, int n, uint64_t seed, traj_step **out,
                  err *e);

typedef struct sft_data_config {
    double imperfect;     /* share of answers made wrong on purpose, 0..1 */
    double wrong_action;  /* share whose action is a uniformly random legal
                             one other than the oracle's, the reading and
                             thought kept: a policy that sees right but acts
                             badly, for RL to fix */
} sft_data_config;

/* sft_make_data with options (sft_make_data uses imperfect = 0). */
int sft_make_data_with(const char *name, const env_params *ep, int n, uint64_t seed,
                       const sft_data_config *dc, traj_step **out, err *e);
/* Free what sft_make_data returned (NULL is fine). */
void sft_data_free(traj_step *data, int n);

/* Model configuration for env `name`: preset `preset` ("tiny", "small",
 * "base") with the env's image shape and the tokenizer's vocabulary. */
int sft_model_config(const char *preset, const char *name, const env_params *ep,
                     model_config *out, err *e);

typedef struct sft_stats {
    double loss;     /* mean NLL per answer token of the last batch */
    double accuracy; /* argmax == target share of the last batch */
    double tokens;
} sft_stats;

/* Forward and backward of the SFT loss on samples idx[0..k) (logits at
 * temperature 1), adding coef * its gradient to m->grads without zeroing
 * them first: the SFT guidance shares the PPO minibatch's optimiser step.
 * thought_only: imitate only tokens that are not action tokens (GTR's and
 * GTR-Turbo's SFT guidance). Fills st. */
int sft_accumulate(model *m, const traj_step *data, const int *idx, int k, bool thought_only,
                   float coef, sft_stats *st, err *e);

/* One optimiser step on samples idx[0..k) (zero_grad, sft_accumulate with
 * coefficient 1, AdamW). */
int sft_step(model *m, optim *o, const traj_step *data, const int *idx, int k, bool thought_only,
             sft_stats *st, err *e);

typedef struct sft_fit_progress {
    int step, steps;       /* steps done, of */
    double loss, accuracy; /* of the step just taken */
    double tokens;         /* image + prompt + answer tokens processed so far */
    double seconds;
} sft_fit_progress;

typedef void (*sft_fit_fn)(void *ud, const sft_fit_progress *p);

/* `steps` optimiser steps over data[0..n) in shuffled epochs (order from
 * `r`), `batch` samples each; `fn` (may be NULL) is called after every
 * step; *last gets the last step's stats. */
int sft_fit(model *m, optim *o, const traj_step *data, int n, int steps, int batch, rng *r,
            sft_fit_fn fn, void *ud, sft_stats *last, err *e);

/* `gtrt sft`: warm-start a policy on oracle answers and save it. */
int sft_main(int argc, char **argv);

#endif
