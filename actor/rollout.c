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
/* Sequences per teacher request: the teacher's default teacher.max_seqs. */
#define ROLLOUT_TEACHER_SEQS 32

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
    rng sample_rng, env_rng, teacher_rng;
    uint64_t next_episode; /* episode ids are unique within the actor */
    rollout_stats stats;
    /* Teacher guidance (GEN / KL): the client, the endpoints it was made
     * for, and this turn's replies: one per chunk of ROLLOUT_TEACHER_SEQS
     * envs, with per-env pointers into them (NULL: no guidance). */
    tclient *tc;
    char *tc_endpoints;
    tclient_seq *tseqs;
    tclient_scores *tscores;
    tclient_answers *tanswers;
    const float **tlogp;
    const tclient_answer **tans;
    uint64_t *tversion;
    double turn_guide_ms; /* teacher time of this turn per step */
    double turn_pre_ms;   /* time before the first step was recorded, per step */
    bool turn_guided;
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
    int chunks = (n + ROLLOUT_TEACHER_SEQS - 1) / ROLLOUT_TEACHER_SEQS;
    r->tseqs = calloc((size_t)n, sizeof *r->tseqs);
    r->tscores = calloc((size_t)chunks, sizeof *r->tscores);
    r->tanswers = calloc((size_t)chunks, sizeof *r->tanswers);
    r->tlogp = calloc((size_t)n, sizeof *r->tlogp);
    r->tans = calloc((size_t)n, sizeof *r->tans);
    r->tversion = calloc((size_t)n, sizeof *r->tversion);
    r->cfg.teacher.id = r->actor; /* points into r, which outlives the client */
    if (!r->images || !r->bytes || !r->prompts || !r->seqs || !r->res || !r->tseqs ||
        !r->tscores || !r->tanswers || !r->tlogp || !r->tans || !r->tversion) {
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
    rng_split(&root, 3, &r->teacher_rng);
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
    tclient_free(r->tc);
    free(r->tc_endpoints);
    free(r->tseqs);
    free(r->tscores);
    free(r->tanswers);
    free(r->tlogp);
    free(r->tans);
    free(r->tversion);
    free(r);
}

static bool rollout_asks_teachers(const rollout *r)
{
    return r->cfg.guide == ROLLOUT_GUIDE_GEN || r->cfg.guide == ROLLOUT_GUIDE_KL;
}

int rollout_set_teachers(rollout *r, const char *endpoints, err *e)
{
    if (!rollout_asks_teachers(r) || (r->tc_endpoints && strcmp(r->tc_endpoints, endpoints) == 0))
        return 0;
    tclient_free(r->tc);
    r->tc = NULL;
    free(r->tc_endpoints);
    r->tc_endpoints = strdup(endpoints);
    if (!r->tc_endpoints)
        return err_set(e, GTRT_ENOMEM, "out of memory");
    return endpoints[0] ? tclient_new(endpoints, &r->cfg.teacher, &r->tc, e) : 0;
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

/* ==== teacher guidance (turbo-sft, turbo-kl) ==== */

static void rollout_teacher_clear(rollout *r)
{
    int n = r->cfg.n_envs, chunks = (n + ROLLOUT_TEACHER_SEQS - 1) / ROLLOUT_TEACHER_SEQS;
    for (int k = 0; k < chunks; k++) {
        tclient_scores_clear(&r->tscores[k]);
        tclient_answers_clear(&r->tanswers[k]);
    }
    memset(r->tlogp, 0, (size_t)n * sizeof *r->tlogp);
    memset(r->tans, 0, (size_t)n * sizeof *r->tans);
    r->turn_guided = false;
}

/* Ask for chunk k: envs [at, at + m). */
static int rollout_ask_chunk(rollout *r, int k, int at, int m, int max_new, err *e)
{
    for (int i = 0; i < m; i++) {
        const model_seq *q = &r->seqs[at + i];
        const sample_result *res = &r->res[at + i];
        r->tseqs[i] = (tclient_seq){r->bytes + (size_t)(at + i) * r->img_n, r->img_c, r->img_h,
                                    r->img_w, q->tokens, q->n_tokens, res->tokens, res->n, 0, 0};
    }
    int rc;
    if (r->cfg.guide == ROLLOUT_GUIDE_KL) {
        /* The policy's logprobs are at the sampling temperature: so are
         * the teacher's, or the difference would measure the temperature. */
        tclient_logits_req q = {.mode = TCLIENT_SAMPLED, .temperature = r->cfg.temperature,
                                .seqs = r->tseqs, .n_seq = m};
        if ((rc = tclient_logits(r->tc, &q, &r->tscores[k], e)))
            return rc;
        for (int i = 0; i < m; i++) {
            r->tlogp[at + i] = r->tscores[k].seqs[i].values;
            r->tversion[at + i] = r->tscores[k].teacher_version;
        }
        return 0;
    }
    /* The teacher's own sampling settings (teacher.gen_*: GTR-Turbo's 0.2
     * and top-5), seeded from the actor's stream so a run reproduces. */
    tclient_gen_req q = {.temperature = -1, .top_k = -1, .max_new = max_new,
                         .seed = rng_u64(&r->teacher_rng), .seqs = r->tseqs, .n_seq = m};
    if ((rc = tclient_generate(r->tc, &q, &r->tanswers[k], e)))
        return rc;
    for (int i = 0; i < m; i++) {
        r->tans[at + i] = &r->tanswers[k].seqs[i];
        r->tversion[at + i] = r->tanswers[k].teacher_version;
    }
    return 0;
}

/* This turn's teacher guidance for every env; on any failure none at all
 * (the turn trains as plain PPO), counted and logged now and then. */
static void rollout_ask_teachers(rollout *r, int max_new)
{
    int n = r->cfg.n_envs;
    uint64_t t0 = clock_mono_ns();
    err e = {0};
    int rc = r->tc ? 0 : err_set(&e, GTRT_ENET, "no teacher is registered with the learner");
    for (int at = 0, k = 0; !rc && at < n; at += ROLLOUT_TEACHER_SEQS, k++) {
        int m = n - at < ROLLOUT_TEACHER_SEQS ? n - at : ROLLOUT_TEACHER_SEQS;
        rc = rollout_ask_chunk(r, k, at, m, max_new, &e);
    }
    double s = clock_since_s(t0);
    r->stats.teacher_s += s;
    r->turn_guide_ms = 1000.0 * s / n;
    if (rc) {
        rollout_teacher_clear(r);
        uint64_t f = r->stats.teacher_failed / (uint64_t)n + 1; /* failed turns */
        if (f <= 5 || f % 100 == 0)
            log_warn("no teacher guidance this turn (%s): its %d steps train as plain PPO "
                     "(%" PRIu64 " turns so far)", e.msg, n, f);
        return;
    }
    r->turn_guided = true;
}

/* The first run of action tokens in ids[0..n): [*b, *e); false if none.
 * Answers here are at most TCLIENT_MAX_NEW tokens (the teacher's, checked
 * by the client; the policy's, actor.max_new). */
static bool rollout_action_span(const int32_t *ids, int n, int *b, int *e)
{
    uint8_t kind[TCLIENT_MAX_NEW];
    if (n > TCLIENT_MAX_NEW)
        return false;
    tok_answer_parts(ids, n, kind);
    int i = 0;
    while (i < n && kind[i] != TRAJ_KIND_ACTION)
        i++;
    if (i == n)
        return false;
    *b = i;
    while (i < n && kind[i] == TRAJ_KIND_ACTION)
        i++;
    *e = i;
    return true;
}

/* turbo-sft, as GTR-Turbo does it: the teacher's answer with its action
 * replaced by the policy's own (only the non-action tokens are imitated,
 * and they should be conditioned on what was really done). Writes a new
 * array into *out (caller frees) and returns its length. When the policy's
 * answer is not well formed (`own_valid` false; its "action" tokens may be
 * anything) or either answer has no action, the teacher's answer is copied
 * as it is: its action is masked from the loss anyway. */
static int rollout_teacher_answer(const tclient_answer *t, const sample_result *res,
                                  bool own_valid, int32_t **out)
{
    int tb, te, pb, pe;
    bool splice = own_valid && rollout_action_span(t->ids, t->n, &tb, &te) &&
                  rollout_action_span(res->tokens, res->n, &pb, &pe);
    int n = splice ? t->n - (te - tb) + (pe - pb) : t->n;
    *out = malloc((size_t)(n ? n : 1) * sizeof **out);
    if (!*out)
        return GTRT_ENOMEM;
    if (!splice) {
        memcpy(*out, t->ids, (size_t)n * sizeof **out);
        return n;
    }
    memcpy(*out, t->ids, (size_t)tb * sizeof **out);
    memcpy(*out + tb, res->tokens + pb, (size_t)(pe - pb) * sizeof **out);
    memcpy(*out + tb + (pe - pb), t->ids + te, (size_t)(t->n - te) * sizeof **out);
    return n;
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
    uint64_t t0 = clock_mono_ns();
    int32_t fix[ROLLOUT_MAX_ANSWER], *spliced = NULL;
    const int32_t *imitate = fix;
    int nfix = 0;
    double guide_ms = 0;
    if (r->cfg.guide == ROLLOUT_GUIDE_ORACLE) {
        nfix = rollout_correct(r, re, res, text, fix, ROLLOUT_MAX_ANSWER, e);
        guide_ms = 1e-6 * (double)(clock_mono_ns() - t0);
    } else if (r->cfg.guide == ROLLOUT_GUIDE_GEN && r->tans[i]) {
        env_parsed own;
        env_parse_answer(re->e, text, &own);
        nfix = rollout_teacher_answer(r->tans[i], res, own.valid, &spliced);
        imitate = spliced;
        if (nfix < 0)
            return err_set(e, nfix, "out of memory");
    }
    if (nfix < 0)
        return nfix;
    traj_step s;
    if (traj_step_alloc(&s, (uint32_t)q->n_tokens, (uint32_t)res->n, (uint32_t)nfix, r->img_n)) {
        free(spliced);
        return err_set(e, GTRT_ENOMEM, "out of memory");
    }
    memcpy(s.teacher_answer, imitate, (size_t)nfix * sizeof *imitate);
    free(spliced);
    /* Token kinds from our own tokenizer, not the teacher's say-so: the
     * learner masks the action by them. */
    tok_answer_parts(s.teacher_answer, nfix, s.teacher_kind);
    if (r->tlogp[i]) {
        memcpy(s.teacher_logprob, r->tlogp[i], (size_t)res->n * sizeof *s.teacher_logprob);
        s.has_teacher_logprob = true;
    }
    if (rollout_asks_teachers(r)) {
        guide_ms = r->turn_guide_ms;
        s.guide_failed = !r->turn_guided;
        if (r->turn_guided) {
            s.teacher_version = r->tversion[i];
            r->stats.teacher_guided++;
        } else {
            r->stats.teacher_failed++;
        }
    }
    s.guide_ms = (float)guide_ms;
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
    s.act_ms = (float)(r->turn_pre_ms + 1e-6 * (double)(clock_mono_ns() - t0));
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
                              void *ud, uint64_t turn_t0, err *e)
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
    if (rollout_asks_teachers(r))
        rollout_ask_teachers(r, sc.max_new);
    r->turn_pre_ms = 1e-6 * (double)(clock_mono_ns() - turn_t0) / n;
    for (int i = 0; !rc && i < n; i++)
        rc = rollout_record(r, i, version, fn, ud, e);
    rollout_teacher_clear(r);
    return rc;
}

int rollout_turn(rollout *r, model *m, uint64_t version, rollout_episode_fn fn, void *ud, err *e)
{
    /* Two clock reads per turn of a whole batch: negligible next to it. */
    uint64_t t0 = clock_mono_ns();
    int rc = rollout_turn_timed(r, m, version, fn, ud, t0, e);
    r->stats.turn_s += clock_since_s(t0);
    return rc;
}
