/* Policy evaluation on seeded episodes and the `gtrt eval` command (see
 * eval.h). */
#include "learner/eval.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actor/rollout.h"
#include "common/cli.h"
#include "common/clock.h"
#include "common/tokenizer.h"

void eval_config_default(eval_config *c)
{
    memset(c, 0, sizeof *c);
    c->episodes = 200;
    c->batch = 32;
    c->temperature = 0.2f;
    c->top_k = 5;
    c->max_new = 64;
    c->seed = 1;
}

void eval_wilson(int wins, int n, double *low, double *high)
{
    if (n <= 0) {
        *low = 0;
        *high = 1;
        return;
    }
    const double z = 1.959963984540054;
    double p = (double)wins / n, z2n = z * z / n;
    double centre = (p + z2n / 2) / (1 + z2n);
    double half = z * sqrt(p * (1 - p) / n + z2n / (4.0 * n)) / (1 + z2n);
    *low = fmax(0, centre - half);
    *high = fmin(1, centre + half);
}

/* ==== playing ==== */

typedef struct eval_acc {
    uint64_t limit; /* episodes with ids 1..limit count */
    double fmt_valid, fmt_invalid;
    int done, wins, turns, valid, illegal;
    double ret, env_ret, tokens;
} eval_acc;

static void eval_on_episode(void *ud, traj_step *steps, size_t n)
{
    eval_acc *a = ud;
    if (n && steps[0].episode <= a->limit) {
        a->done++;
        a->turns += (int)n;
        a->wins += steps[n - 1].success;
        for (size_t i = 0; i < n; i++) {
            a->valid += steps[i].format_valid;
            a->illegal += steps[i].illegal;
            a->env_ret += steps[i].reward;
            a->ret += steps[i].reward + (steps[i].format_valid ? a->fmt_valid : a->fmt_invalid);
            a->tokens += steps[i].n_answer;
        }
    }
    for (size_t i = 0; i < n; i++)
        traj_step_free(&steps[i]);
    free(steps);
}

static void eval_summarise(const eval_acc *a, eval_result *out)
{
    memset(out, 0, sizeof *out);
    out->episodes = a->done;
    out->wins = a->wins;
    out->turns = a->turns;
    int n = a->done ? a->done : 1, t = a->turns ? a->turns : 1;
    out->success_rate = (double)a->wins / n;
    eval_wilson(a->wins, a->done, &out->ci_low, &out->ci_high);
    out->mean_return = a->ret / n;
    out->mean_env_return = a->env_ret / n;
    out->mean_length = (double)a->turns / n;
    out->format_valid = (double)a->valid / t;
    out->illegal_rate = (double)a->illegal / t;
    out->tokens_per_turn = a->tokens / t;
}

int eval_run(model *m, const env_params *ep, const eval_config *c, eval_result *out, err *e)
{
    memset(out, 0, sizeof *out);
    if (c->episodes < 1 || c->batch < 1 || c->max_new < 1)
        return err_set(e, GTRT_EINVAL, "eval: episodes, batch and max_new must be >= 1");
    uint64_t t0 = clock_mono_ns();
    env *probe;
    int rc = env_new(c->env, ep, &probe, e);
    if (rc)
        return rc;
    /* Rewards come back without the format term so both returns can be
     * reported; the term is added here from the env's own values. */
    eval_acc acc = {.limit = (uint64_t)c->episodes,
                    .fmt_valid = env_format_reward(probe, true),
                    .fmt_invalid = env_format_reward(probe, false)};
    env_free(probe);
    rollout_config rc_ = {.n_envs = c->batch < c->episodes ? c->batch : c->episodes,
                          .temperature = c->temperature, .top_k = c->top_k,
                          .max_new = c->max_new, .seed = c->seed, .format_reward = false};
    snprintf(rc_.env, sizeof rc_.env, "%s", c->env);
    rollout *ro;
    if ((rc = rollout_new(&rc_, &m->cfg, ep, "eval", &ro, e)))
        return rc;
    /* Every env stops on its own step limit; this only guards against an
     * env that never ends an episode. */
    long max_turns = ((long)c->episodes / rc_.n_envs + 2) * 1000;
    for (long t = 0; acc.done < c->episodes; t++) {
        if (t >= max_turns) {
            rc = err_set(e, GTRT_ESTATE, "eval: %d of %d episodes still running after %ld turns",
                         c->episodes - acc.done, c->episodes, t);
            break;
        }
        if ((rc = rollout_turn(ro, m, 0, eval_on_episode, &acc, e)))
            break;
    }
    rollout_free(ro);
    if (rc)
        return rc;
    eval_summarise(&acc, out);
    out->seconds = clock_since_s(t0);
    return 0;
}

/* ==== checkpoint checks ==== */

int eval_check_checkpoint(const char *path, const char *env_name, const env_params *ep, err *e)
{
    model_config mc;
    int rc = model_config_load(path, &mc, e);
    if (rc)
        return rc;
    env *probe;
    if ((rc = env_new(env_name, ep, &probe, e)))
        return rc;
    int c, h, w;
    env_image_shape(probe, &c, &h, &w);
    env_free(probe);
    if (mc.image_c != c || mc.image_h != h || mc.image_w != w)
        return err_set(e, GTRT_ECONFIG,
                       "%s was built for %dx%dx%d images but env %s renders %dx%dx%d "
                       "(another env, or other env.image_* settings)",
                       path, mc.image_c, mc.image_h, mc.image_w, env_name, c, h, w);
    if (mc.vocab_size != TOK_VOCAB_SIZE)
        return err_set(e, GTRT_ECONFIG,
                       "%s has a vocabulary of %d tokens but the tokenizer has %d", path,
                       mc.vocab_size, (int)TOK_VOCAB_SIZE);
    st_file *f;
    if ((rc = st_open(path, &f, e)))
        return rc;
    char want[32];
    snprintf(want, sizeof want, "%016" PRIx64, tok_vocab_hash());
    const char *have = st_meta(f, EVAL_META_VOCAB_HASH);
    if (have && strcmp(have, want) != 0)
        rc = err_set(e, GTRT_ECONFIG,
                     "%s was trained with another vocabulary (hash %s, this tokenizer's is %s)",
                     path, have, want);
    st_close(f);
    return rc;
}

/* ==== gtrt eval ==== */

typedef struct eval_opts {
    const char *ckpt, *env;
    long episodes, seed, top_k, batch;
    double temperature;
    int greedy, json;
} eval_opts;

/* Turn the command-line options into --set overrides, so that the
 * configuration stays the one source of the values used. */
static int eval_add_sets(cli_common *cm, const eval_opts *o, char (*buf)[96])
{
    int n = 0;
    if (o->env)
        snprintf(buf[n++], 96, "env.name=%s", o->env);
    if (o->episodes >= 0)
        snprintf(buf[n++], 96, "eval.episodes=%ld", o->episodes);
    if (o->seed >= 0)
        snprintf(buf[n++], 96, "eval.seed=%ld", o->seed);
    if (o->top_k >= 0)
        snprintf(buf[n++], 96, "eval.top_k=%ld", o->top_k);
    if (o->batch >= 0)
        snprintf(buf[n++], 96, "eval.batch=%ld", o->batch);
    if (o->greedy)
        snprintf(buf[n++], 96, "eval.temperature=0");
    else if (!isnan(o->temperature))
        snprintf(buf[n++], 96, "eval.temperature=%.17g", o->temperature);
    for (int i = 0; i < n; i++) {
        if (cm->nsets >= CLI_MAX_SETS)
            return GTRT_EINVAL;
        cm->sets[cm->nsets++] = buf[i];
    }
    return 0;
}

void eval_config_from(eval_config *ec, const config *cfg, const char *env_name)
{
    eval_config_default(ec);
    snprintf(ec->env, sizeof ec->env, "%s", env_name);
    ec->episodes = (int)config_int(cfg, "eval.episodes");
    ec->batch = (int)config_int(cfg, "eval.batch");
    ec->temperature = (float)config_double(cfg, "eval.temperature");
    ec->top_k = (int)config_int(cfg, "eval.top_k");
    ec->max_new = (int)config_int(cfg, "eval.max_new");
    ec->seed = (uint64_t)config_int(cfg, "eval.seed");
}

void eval_print(FILE *f, const eval_config *c, const eval_result *r)
{
    fprintf(f, "env         %s, %d episodes, seed %" PRIu64 ", %s\n", c->env, r->episodes, c->seed,
            c->temperature > 0 ? "sampled" : "greedy");
    if (c->temperature > 0)
        fprintf(f, "sampling    temperature %g, top-k %d\n", c->temperature, c->top_k);
    fprintf(f, "success     %.1f %% (%d/%d; 95 %% CI %.1f-%.1f %%)\n", 100 * r->success_rate,
            r->wins, r->episodes, 100 * r->ci_low, 100 * r->ci_high);
    fprintf(f, "return      %.3f (env reward only: %.3f)\n", r->mean_return, r->mean_env_return);
    fprintf(f, "length      %.2f turns\n", r->mean_length);
    fprintf(f, "format      %.1f %% valid answers (%d turns, %.1f tokens per answer)\n",
            100 * r->format_valid, r->turns, r->tokens_per_turn);
    fprintf(f, "illegal     %.1f %% of moves\n", 100 * r->illegal_rate);
    fprintf(f, "time        %.1f s\n", r->seconds);
}

cJSON *eval_json(const eval_config *c, const eval_result *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "env", c->env);
    cJSON_AddNumberToObject(o, "episodes", r->episodes);
    cJSON_AddNumberToObject(o, "wins", r->wins);
    cJSON_AddNumberToObject(o, "success_rate", r->success_rate);
    cJSON_AddNumberToObject(o, "success_ci_low", r->ci_low);
    cJSON_AddNumberToObject(o, "success_ci_high", r->ci_high);
    cJSON_AddNumberToObject(o, "mean_return", r->mean_return);
    cJSON_AddNumberToObject(o, "mean_env_return", r->mean_env_return);
    cJSON_AddNumberToObject(o, "mean_length", r->mean_length);
    cJSON_AddNumberToObject(o, "format_valid", r->format_valid);
    cJSON_AddNumberToObject(o, "illegal_rate", r->illegal_rate);
    cJSON_AddNumberToObject(o, "turns", r->turns);
    cJSON_AddNumberToObject(o, "tokens_per_turn", r->tokens_per_turn);
    cJSON_AddNumberToObject(o, "seed", (double)c->seed);
    cJSON_AddNumberToObject(o, "temperature", c->temperature > 0 ? c->temperature : 0);
    cJSON_AddNumberToObject(o, "top_k", c->top_k);
    cJSON_AddNumberToObject(o, "batch", c->batch);
    cJSON_AddNumberToObject(o, "seconds", r->seconds);
    return o;
}

/* The env to evaluate on: --env / --set env.name when given, else the env
 * the checkpoint was trained on, else the configured default. */
static const char *eval_env_name(const config *cfg, const char *ckpt, char *buf, size_t cap)
{
    const char *name = config_str(cfg, "env.name");
    if (strcmp(config_origin(cfg, "env.name"), "default") != 0)
        return name;
    st_file *f;
    if (st_open(ckpt, &f, NULL) == 0) {
        const char *m = st_meta(f, "env");
        if (m && strlen(m) < cap) {
            snprintf(buf, cap, "%s", m);
            name = buf;
        }
        st_close(f);
    }
    return name;
}

static int eval_cmd_run(const char *ckpt, const config *cfg, bool json)
{
    char envbuf[32];
    const char *name = eval_env_name(cfg, ckpt, envbuf, sizeof envbuf);
    env_params ep;
    env_params_from_config(&ep, cfg);
    err e = {0};
    int rc = eval_check_checkpoint(ckpt, name, &ep, &e);
    if (rc) {
        fprintf(stderr, "gtrt eval: refusing the checkpoint: %s\n", e.msg);
        return rc == GTRT_ECONFIG ? 2 : 1;
    }
    model *m;
    if ((rc = model_load(ckpt, &m, &e))) {
        fprintf(stderr, "gtrt eval: %s\n", e.msg);
        return 1;
    }
    eval_config ec;
    eval_config_from(&ec, cfg, name);
    eval_result r;
    rc = eval_run(m, &ep, &ec, &r, &e);
    model_free(m);
    if (rc) {
        fprintf(stderr, "gtrt eval: %s\n", e.msg);
        return 1;
    }
    if (json) {
        cJSON *o = eval_json(&ec, &r);
        cJSON_AddStringToObject(o, "checkpoint", ckpt);
        char *s = cJSON_PrintUnformatted(o);
        printf("%s\n", s);
        cJSON_free(s);
        cJSON_Delete(o);
    } else {
        printf("checkpoint  %s\n", ckpt);
        eval_print(stdout, &ec, &r);
    }
    return 0;
}

int eval_main(int argc, char **argv)
{
    static const cli_cmd cmd = {
        "eval", "[CKPT.safetensors]", "Measure a policy checkpoint on seeded episodes.",
        "Plays --episodes seeded episodes of the env (default: the one the checkpoint\n"
        "was trained on) with the policy, sampled at eval.temperature / eval.top_k or\n"
        "greedy, and prints the success rate with a 95 % (Wilson) confidence interval,\n"
        "the mean return (env plus format reward, and env only), the mean episode\n"
        "length and the share of format-valid answers. The same seed gives the same\n"
        "result. A checkpoint built for another image shape or vocabulary is refused\n"
        "(exit 2). Example:\n"
        "  gtrt eval sft.safetensors --env points24 --episodes 200 --json"};
    eval_opts o = {.episodes = -1, .seed = -1, .top_k = -1, .batch = -1, .temperature = NAN};
    cli_opt opts[] = {
        {"checkpoint", CLI_STR, &o.ckpt, "FILE", "checkpoint to evaluate (or as the argument)"},
        {"env", CLI_STR, &o.env, "NAME", "numberline | ezpoints | points24 | blackjack (env.name)"},
        {"episodes", CLI_INT, &o.episodes, "N", "episodes to play (eval.episodes)"},
        {"seed", CLI_INT, &o.seed, "S", "seed of the deals and the sampling (eval.seed)"},
        {"temperature", CLI_DOUBLE, &o.temperature, "T", "sampling temperature, 0: greedy (eval.temperature)"},
        {"top-k", CLI_INT, &o.top_k, "K", "sample among the K likeliest tokens (eval.top_k)"},
        {"greedy", CLI_FLAG, &o.greedy, NULL, "always take the likeliest token"},
        {"batch", CLI_INT, &o.batch, "N", "episodes played in lock step (eval.batch)"},
        {"json", CLI_FLAG, &o.json, NULL, "print one JSON object instead of a table"},
        {0},
    };
    cli_common common;
    char *pos[1];
    int npos = 0;
    int rc = cli_parse(argc, argv, &cmd, opts, &common, pos, &npos, 1);
    if (rc)
        return rc > 0 ? 0 : 2;
    const char *ckpt = o.ckpt ? o.ckpt : npos ? pos[0] : NULL;
    if (!ckpt || (o.ckpt && npos)) {
        fprintf(stderr, "gtrt eval: give one checkpoint (as the argument or --checkpoint)\n"
                        "Try 'gtrt eval --help'.\n");
        return 2;
    }
    char sets[8][96];
    if (eval_add_sets(&common, &o, sets)) {
        fprintf(stderr, "gtrt eval: too many --set options\n");
        return 2;
    }
    config *cfg = cli_config(&common);
    if (!cfg)
        return 2;
    rc = eval_cmd_run(ckpt, cfg, o.json);
    config_free(cfg);
    return rc;
}
