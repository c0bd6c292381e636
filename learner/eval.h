/* Evaluating a policy: play a fixed number of seeded episodes of one env
 * with the policy (batched through the rollout module) and summarise them:
 * success rate with a 95 % confidence interval, mean return, mean episode
 * length, format-valid rate. The closing check of `gtrt sft`, the `gtrt
 * eval` command, and the yardstick for comparing checkpoints.
 *
 * Counted episodes are the first `episodes` episodes started (ids 1..N),
 * each played to its end, so short episodes are not over-represented the
 * way they would be by stopping at the first N episodes to finish. The
 * same seed, batch and policy give the same result. */
#ifndef GTRT_EVAL_H
#define GTRT_EVAL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "actor/envs/env.h"
#include "common/model.h"

/* __metadata__ key of a checkpoint holding tok_vocab_hash() as 16 hex
 * digits: which vocabulary the embedding rows mean. */
#define EVAL_META_VOCAB_HASH "vocab_hash"

typedef struct eval_config {
    char env[32];
    int episodes;      /* episodes counted */
    int batch;         /* envs played in lock step */
    float temperature; /* <= 0: greedy */
    int top_k;
    int max_new;       /* longest answer in tokens */
    uint64_t seed;
} eval_config;

typedef struct eval_result {
    int episodes, wins, turns;
    double success_rate;
    double ci_low, ci_high;  /* Wilson 95 % interval of the success rate */
    double mean_return;      /* env reward plus format reward, as training sees it */
    double mean_env_return;  /* env reward only */
    double mean_length;      /* turns per episode */
    double format_valid;     /* share of turns whose answer parsed */
    double illegal_rate;     /* share of turns whose move was penalised as illegal */
    double tokens_per_turn;  /* generated tokens */
    double seconds;
} eval_result;

/* 200 episodes, batch 32, temperature 0.2 and top-k 5 (the sampling of
 * GTR-Turbo's rollouts), 64 new tokens, seed 1; env left empty. */
void eval_config_default(eval_config *c);

/* Play the episodes with `m` and fill `out`. The model's image shape must
 * be the env's (GTRT_ECONFIG otherwise). */
int eval_run(model *m, const env_params *ep, const eval_config *c, eval_result *out, err *e);

/* Wilson score interval for `wins` of `n` at 95 %. */
void eval_wilson(int wins, int n, double *low, double *high);

/* Check that the checkpoint at `path` fits env `env_name`: the image shape
 * it was built for, the vocabulary size and, when the file records one, the
 * vocabulary hash. GTRT_ECONFIG with a message saying what differs. */
int eval_check_checkpoint(const char *path, const char *env_name, const env_params *ep, err *e);

/* The [eval] keys of a configuration, for env `env_name`. */
struct config;
void eval_config_from(eval_config *ec, const struct config *cfg, const char *env_name);
/* A result as a few human lines, or as a JSON object (caller deletes). */
void eval_print(FILE *f, const eval_config *c, const eval_result *r);
struct cJSON;
struct cJSON *eval_json(const eval_config *c, const eval_result *r);

/* `gtrt eval CKPT --env E`. */
int eval_main(int argc, char **argv);

#endif
