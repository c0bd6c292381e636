/* Rolling out episodes: n environments played in lock step, every turn's
 * answers sampled for all of them in one batched KV-cache pass. Each turn of
 * each env becomes a traj_step (image as bytes, prompt and answer ids,
 * per-token logprobs at the sampling temperature, thought/action marks, the
 * value, the reward); when an episode ends its steps are handed over whole,
 * so the learner always sees complete episodes.
 *
 * The image is quantised to bytes before the policy sees it, so the actor
 * and the learner (which gets the bytes) score exactly the same input. */
#ifndef GTRT_ROLLOUT_H
#define GTRT_ROLLOUT_H

#include "actor/envs/env.h"
#include "common/model.h"
#include "common/sample.h"
#include "common/tclient.h"
#include "common/traj.h"

/* Where a step's guidance comes from (run.mode):
 *   ROLLOUT_GUIDE_NONE    ppo: none
 *   ROLLOUT_GUIDE_ORACLE  gtr: the env's oracle writes the answer to imitate
 *   ROLLOUT_GUIDE_GEN     turbo-sft: the merged teacher writes it (generate)
 *   ROLLOUT_GUIDE_KL      turbo-kl: the teacher scores the policy's own
 *                         answer (sampled logprobs at the sampling temperature)
 * Teacher guidance is asked for once per turn for all envs together; when
 * no teacher answers in time the turn's steps go out without guidance,
 * marked guide_failed (the learner trains them as plain PPO). */
typedef enum rollout_guide {
    ROLLOUT_GUIDE_NONE,
    ROLLOUT_GUIDE_ORACLE,
    ROLLOUT_GUIDE_GEN,
    ROLLOUT_GUIDE_KL,
} rollout_guide;

typedef struct rollout_config {
    char env[300]; /* a name, or remote:<endpoint> */
    int n_envs;
    float temperature; /* 0.2 in GTR-Turbo */
    int top_k;         /* 5 */
    int max_new;       /* longest answer */
    uint64_t seed;
    bool format_reward; /* add the env's format reward to the reward */
    rollout_guide guide;
    tclient_opts teacher; /* GEN / KL: how teachers are asked */
} rollout_config;

typedef struct rollout_stats {
    uint64_t turns, episodes, wins, valid, illegal, tokens;
    uint64_t env_errors; /* remote env failures; their episodes were dropped */
    double return_sum;
    /* Wall time inside rollout_turn and, of that, inside the batched
     * sampler: turn_s - model_s is what the actor spends around the model
     * (rendering, prompts, tokenizing, parsing, env steps, building steps). */
    double turn_s, model_s;
    /* GTR's corrector: answers checked, found wrong, time in the oracle */
    uint64_t checked, corrected;
    double oracle_s;
    /* Teacher guidance: steps that got it, steps that did not (no teacher
     * known, no answer in time, a bad reply), time waiting for teachers.
     * (Version lag is the learner's to compute: each step carries both.) */
    uint64_t teacher_guided, teacher_failed;
    double teacher_s;
} rollout_stats;

/* Called with a finished episode; takes ownership of steps[0..n) (free
 * each with traj_step_free, then the array with free). */
typedef void (*rollout_episode_fn)(void *ud, traj_step *steps, size_t n);

typedef struct rollout rollout;

int rollout_new(const rollout_config *rc, const model_config *mc, const env_params *ep,
                const char *actor_id, rollout **out, err *e);
void rollout_free(rollout *r);
/* Teachers to ask for guidance: comma-separated endpoints ("" when none is
 * known). The client is rebuilt only when the list changes; without teacher
 * guidance (ppo, gtr) nothing happens. Call from the thread that calls
 * rollout_turn. */
int rollout_set_teachers(rollout *r, const char *endpoints, err *e);
/* Play one turn in every env with policy `m` (version `version`). */
int rollout_turn(rollout *r, model *m, uint64_t version, rollout_episode_fn fn, void *ud, err *e);
const rollout_stats *rollout_get_stats(const rollout *r);
/* Image shape every env renders (the model must match it). */
void rollout_image_shape(const rollout *r, int *c, int *h, int *w);

#endif
