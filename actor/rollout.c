/* Batched multi-env rollout (see rollout.h). */
#include "actor/rollout.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/tokenizer.h"

#define ROLLOUT_MAX_PROMPT 256
#define ROLLOUT_MAX_ANSWER 256

typedef struct rollout_env {
    env *e;
    uint64_t episode;
    uint32_t turn;
    traj_step *steps;
    size_t n, cap;
    bool fresh; /* needs a reset before its next turn */
    double ret;
} rollout_env;

struct rollout {
    rollout_config cfg;
    model_config mc;
    char actor[WIRE_MAX_ID_LEN + 1];
    sampler *s;
    rollout_env *envs;
    int img_c, img_h, img_w;
    size_t img_n;
    float *images;     /* n_envs x img_n, quantised */
    uint8_t *bytes;    /* n_envs x img_n */
    int32_t *prompts;  /* n_envs x ROLLOUT_MAX_PROMPT */
    model_seq *seqs;
    sample_result *res;
    rng sample_rng, env_rng;
    uint64_t next_episode; /* episode ids are unique within the actor */
    rollout_stats stats;
};

int rollout_new(const rollout_config *rc, const model_config *mc, const env_params *ep,
                const char *actor_id, rollout **out, err *e)
{
    *out = NULL;
    rollout *r = calloc(1, sizeof *r);
    if (!r)
        return err_set(e, GTRT_ENOMEM, "out of memory");
    r->cfg = *rc;
    r->mc = *mc;
    snprintf(r->actor, sizeof r->actor, "%s", actor_id);
    int n = rc->n_envs;
    r->envs = calloc((size_t)n, sizeof *r->envs);
    int rc2 = r->envs ? 0 : err_set(e, GTRT_ENOMEM, "out of memory");
    for (int i = 0; !rc2 && i < n; i++) {
        rc2 = env_new(rc->env, ep, &r->envs[i].e, e);
        r->envs[i].fresh = true;
    }
    if (rc2) {
        rollout_free(r);
        return rc2;
    }
    env_image_shape(r->envs[0].e, &r->img_c, &r->img_h, &r->img_w);
    if (r->img_c != mc->image_c || r->img_h != mc->image_h || r->img_w != mc->image_w) {
        err_set(e, GTRT_ECONFIG, "env %s renders %dx%dx%d images but the model expects %dx%dx%d",
                rc->env, r->img_c, r->img_h, r->img_w, mc->image_c, mc->image_h, mc->image_w);
        rollout_free(r);
        return GTRT_ECONFIG;
    }
    r->img_n = env_image_floats(r->envs[0].e);
    r->images = malloc((size_t)n * r->img_n * sizeof *r->images);
    r->bytes = malloc((size_t)n * r->img_n);
    r->prompts = malloc((size_t)n * ROLLOUT_MAX_PROMPT * sizeof *r->prompts);
    r->seqs = calloc((size_t)n, sizeof *r->seqs);
    r->res = calloc((size_t)n, sizeof *r->res);
    if (!r->images || !r->bytes || !r->prompts || !r->seqs || !r->res) {
        rollout_free(r);
        return err_set(e, GTRT_ENOMEM, "out of memory");
    }
    if ((rc2 = sample_new(mc, n, &r->s, e))) {
        rollout_free(r);
        return rc2;
    }
    rng root;
    rng_init(&root, rc->seed);
    rng_split(&root, 1, &r->sample_rng);
    rng_split(&root, 2, &r->env_rng);
    *out = r;
    return 0;
}

static void rollout_env_clear(rollout_env *re)
{
    for (size_t k = 0; k < re->n; k++)
        traj_step_free(&re->steps[k]);
    free(re->steps);
    re->steps = NULL;
    re->n = re->cap = 0;
}

void rollout_free(rollout *r)
{
    if (!r)
        return;
    for (int i = 0; r->envs && i < r->cfg.n_envs; i++) {
        rollout_env_clear(&r->envs[i]);
        env_free(r->envs[i].e);
    }
    free(r->envs);
    sample_free(r->s);
    free(r->images);
    free(r->bytes);
    free(r->prompts);
    free(r->seqs);
    free(r->res);
    free(r);
}

const rollout_stats *rollout_get_stats(const rollout *r) { return &r->stats; }

void rollout_image_shape(const rollout *r, int *c, int *h, int *w)
{
    *c = r->img_c;
    *h = r->img_h;
    *w = r->img_w;
}

/* Render env i, quantise, and encode its prompt. */
static int rollout_observe(rollout *r, int i, err *e)
{
    rollout_env *re = &r->envs[i];
    if (re->fresh) {
        env_reset(re->e, rng_u64(&r->env_rng));
        re->fresh = false;
        re->turn = 0;
        re->ret = 0;
        re->episode = ++r->next_episode;
    }
    float *img = r->images + (size_t)i * r->img_n;
    uint8_t *b = r->bytes + (size_t)i * r->img_n;
    env_render(re->e, img);
    for (size_t k = 0; k < r->img_n; k++) {
        float x = img[k] < 0 ? 0 : img[k] > 1 ? 1 : img[k];
        b[k] = (uint8_t)lrintf(x * 255.0f);
        img[k] = b[k] * (1.0f / 255.0f);
    }
    char text[ENV_TEXT_MAX];
    env_prompt(re->e, text, sizeof text);
    int32_t *ids = r->prompts + (size_t)i * ROLLOUT_MAX_PROMPT;
    int n = tok_encode_prompt(text, ids, ROLLOUT_MAX_PROMPT, e);
    if (n < 0)
        return n;
    r->seqs[i] = (model_seq){img, ids, n, n};
    return 0;
}

static int rollout_push(rollout_env *re, traj_step *s)
{
    if (re->n == re->cap) {
        size_t cap = re->cap ? 2 * re->cap : 16;
        traj_step *ns = realloc(re->steps, cap * sizeof *ns);
        if (!ns)
            return GTRT_ENOMEM;
        re->steps = ns;
        re->cap = cap;
    }
    re->steps[re->n++] = *s;
    return 0;
}

/* GTR's privileged corrector: the env's oracle, which knows the true state,
 * writes the answer the policy should have given (its cards, formula and
 * thought) with the policy's own action kept, since only the non-action
 * tokens are imitated. Encoded into ids[0..cap); returns the length, 0
 * when the env has no oracle (then the step is trained as plain PPO), or a
 * negative error. */
static int rollout_correct(rollout *r, rollout_env *re, const sample_result *res,
                           const char *text, int32_t *ids, int cap, err *e)
{
    uint64_t t0 = clock_mono_ns();
    env_answer a;
    if (env_oracle(re->e, &a, NULL) != 0) {
        r->stats.oracle_s += clock_since_s(t0);
        return 0;
    }
    env_parsed p;
    env_parse_answer(re->e, text, &p);
    if (p.valid)
        a.action = p.action;
    char fixed[ENV_ANSWER_MAX];
    int len = env_answer_format(re->e, &a, fixed, sizeof fixed);
    int n = len < 0 || (size_t)len >= sizeof fixed ? GTRT_ERANGE : tok_encode_answer(fixed, ids, cap, e);
    r->stats.oracle_s += clock_since_s(t0);
    if (n < 0)
        return err_set(e, n, "oracle answer does not fit (%d characters)", len);
    r->stats.checked++;
    r->stats.corrected += n != res->n || memcmp(ids, res->tokens, (size_t)n * sizeof *ids) != 0;
    return n;
}

/* Turn env i's sampled answer into a step and play it. */
static int rollout_record(rollout *r, int i, uint64_t version, rollout_episode_fn fn, void *ud,
                          err *e)
{
    rollout_env *re = &r->envs[i];
    const sample_result *res = &r->res[i];
    const model_seq *q = &r->seqs[i];
    char text[ENV_ANSWER_MAX];
    tok_decode(res->tokens, res->n, text, sizeof text);
    int32_t fix[ROLLOUT_MAX_ANSWER];
    int nfix = r->cfg.correct ? rollout_correct(r, re, res, text, fix, ROLLOUT_MAX_ANSWER, e) : 0;
    if (nfix < 0)
        return nfix;
    traj_step s;
    if (traj_step_alloc(&s, (uint32_t)q->n_tokens, (uint32_t)res->n, (uint32_t)nfix, r->img_n))
        return err_set(e, GTRT_ENOMEM, "out of memory");
    memcpy(s.teacher_answer, fix, (size_t)nfix * sizeof *fix);
    tok_answer_parts(fix, nfix, s.teacher_kind);
    memcpy(s.prompt, q->tokens, (size_t)q->n_tokens * sizeof *s.prompt);
    memcpy(s.answer, res->tokens, (size_t)res->n * sizeof *s.answer);
    memcpy(s.logprob, res->logprobs, (size_t)res->n * sizeof *s.logprob);
    tok_answer_parts(res->tokens, res->n, s.kind);
    memcpy(s.image, r->bytes + (size_t)i * r->img_n, r->img_n);
    env_turn t;
    int rc = env_play_answer(re->e, text, &r->env_rng, &t, e);
    if (rc == GTRT_EPROTO || rc == GTRT_ETIMEOUT || rc == GTRT_ENET) {
        /* A remote env failed: its episode is lost (never sent, so never
         * half-learned); count it and start a new one. */
        traj_step_free(&s);
        rollout_env_clear(re);
        re->fresh = true;
        r->stats.env_errors++;
        if (r->stats.env_errors <= 10 || r->stats.env_errors % 100 == 0)
            log_warn("env %d: %s (episode dropped; %" PRIu64 " env errors so far)", i,
                     e ? e->msg : "error", r->stats.env_errors);
        return 0;
    }
    if (rc) {
        traj_step_free(&s);
        return rc;
    }
    snprintf(s.actor, sizeof s.actor, "%s", r->actor);
    snprintf(s.env, sizeof s.env, "%.31s", r->cfg.env); /* a label only */
    s.episode = re->episode;
    s.turn = re->turn++;
    s.policy_version = version;
    s.value = res->value;
    s.reward = (float)(t.step.reward + (r->cfg.format_reward ? t.format_reward : 0));
    s.format_valid = t.parsed.valid;
    s.illegal = !t.step.legal;
    s.done = t.step.done;
    s.truncated = t.step.truncated;
    s.success = t.step.done && env_won(re->e);
    re->ret += s.reward;
    r->stats.turns++;
    r->stats.valid += t.parsed.valid;
    r->stats.illegal += !t.step.legal;
    r->stats.tokens += (uint64_t)res->n;
    if (rollout_push(re, &s)) {
        traj_step_free(&s);
        return err_set(e, GTRT_ENOMEM, "out of memory");
    }
    if (!t.step.done)
        return 0;
    r->stats.episodes++;
    r->stats.wins += s.success;
    r->stats.return_sum += re->ret;
    re->fresh = true;
    traj_step *steps = re->steps;
    size_t n = re->n;
    re->steps = NULL;
    re->n = re->cap = 0;
    fn(ud, steps, n);
    return 0;
}

static int rollout_turn_timed(rollout *r, model *m, uint64_t version, rollout_episode_fn fn,
                              void *ud, err *e)
{
    int n = r->cfg.n_envs, rc;
    int room = r->mc.max_seq;
    for (int i = 0; i < n; i++) {
        if ((rc = rollout_observe(r, i, e)))
            return rc;
        int left = r->mc.max_seq - model_config_n_patches(&r->mc) - r->seqs[i].n_tokens;
        if (left < room)
            room = left;
    }
    if (room < 1)
        return err_set(e, GTRT_ERANGE, "prompt leaves no room for an answer (max_seq %d)",
                       r->mc.max_seq);
    sample_config sc = {.temperature = r->cfg.temperature, .top_k = r->cfg.top_k,
                        .max_new = r->cfg.max_new < room ? r->cfg.max_new : room,
                        .end_token = TOK_END};
    uint64_t t0 = clock_mono_ns();
    rc = sample_run(r->s, m, r->seqs, n, &sc, &r->sample_rng, r->res, e);
    r->stats.model_s += clock_since_s(t0);
    if (rc)
        return rc;
    for (int i = 0; i < n; i++)
        if ((rc = rollout_record(r, i, version, fn, ud, e)))
            return rc;
    return 0;
}

int rollout_turn(rollout *r, model *m, uint64_t version, rollout_episode_fn fn, void *ud, err *e)
{
    /* Two clock reads per turn of a whole batch: negligible next to it. */
    uint64_t t0 = clock_mono_ns();
    int rc = rollout_turn_timed(r, m, version, fn, ud, e);
    r->stats.turn_s += clock_since_s(t0);
    return rc;
}
