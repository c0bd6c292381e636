/* Benchmark of one actor's work, without the network: n envs played in lock
 * step by the rollout (batched KV-cache sampling), and every finished
 * episode made ready for the wire the way the actor's sender does it
 * (traj_step_to_pb, the TrajBatch packed, images copied into the resend
 * queue). For points24 and numberline at presets tiny and small it prints
 * env steps/s (turns summed over all envs), generated tokens/s, the
 * model's share of the time and what is spent outside it: rendering,
 * prompts, tokenizing, parsing, env steps and building traj_steps (inside
 * rollout_turn but outside the sampler) plus serialisation, and each of
 * those parts timed alone per env turn. Target: under 10 % of the actor's
 * time outside the model.
 *
 * A random policy never writes its end token, so every answer would run to
 * actor.max_new and the model would look busier than with a trained policy.
 * Without checkpoints the answers are therefore cut at the oracle's mean
 * answer length for the env (what a trained policy writes); the answers are
 * garbage, so they take the parser's invalid path and a random legal move.
 * With --ckpt-dir DIR, DIR/<env>-<preset>.safetensors (e.g. from `gtrt
 * sft`) is used with actor.max_new instead. Envs (actor.envs), temperature
 * and top-k are the [actor] defaults unless given.
 *
 * Usage: bench_actor [--envs N] [--seconds S] [--max-new N] [--ckpt-dir DIR]
 *                    [ENV:PRESET ...]
 * Threads: OpenBLAS's default (all cores), as the actor runs. Prints
 * figures; never fails on a number. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actor/rollout.h"
#include "actor/traj_send.h"
#include "bench_util.h"
#include "common/config.h"
#include "common/tokenizer.h"

enum { BA_WARMUP_TURNS = 2, BA_MIN_TURNS = 5 };

typedef struct ba_opts {
    int n_envs;
    double seconds;
    int max_new; /* 0: see the file comment */
    const char *ckpt_dir;
    /* the actor's sampling settings: the [actor] defaults of the schema */
    float temperature;
    int top_k, actor_max_new;
} ba_opts;

/* Episodes the rollout handed over during one turn. */
typedef struct ba_episode {
    traj_step *steps;
    size_t n;
} ba_episode;

typedef struct ba_sink {
    ba_episode *eps;
    size_t n, cap;
    bool oom;
} ba_sink;

/* What was shipped: for the per-step figures. */
typedef struct ba_tally {
    uint64_t steps, prompt_tokens, answer_tokens, bytes;
    double flops; /* one forward over image + prompt + answer of each step */
} ba_tally;

/* Keeps the packed bytes observable so the copies are not optimised away. */
static volatile uint8_t ba_sink_byte;

static void ba_on_episode(void *ud, traj_step *steps, size_t n)
{
    ba_sink *k = ud;
    if (k->n == k->cap) {
        size_t cap = k->cap ? 2 * k->cap : 16;
        ba_episode *ne = realloc(k->eps, cap * sizeof *ne);
        if (!ne) {
            for (size_t i = 0; i < n; i++)
                traj_step_free(&steps[i]);
            free(steps);
            k->oom = true;
            return;
        }
        k->eps = ne;
        k->cap = cap;
    }
    k->eps[k->n++] = (ba_episode){steps, n};
}

/* One batch of k steps as traj_sender_send keeps it: packed body and a
 * copy of the images. Returns the bytes that would go on the wire. */
static size_t ba_pack_batch(const traj_step *s, size_t k, const model_config *c, uint64_t seq)
{
    size_t img = (size_t)c->image_c * c->image_h * c->image_w, total = 0;
    for (size_t i = 0; i < k; i++)
        total += s[i].n_prompt + s[i].n_answer + s[i].n_teacher;
    Gtrt__Step pbs[TRAJ_MAX_STEPS_PER_BATCH], *ptrs[TRAJ_MAX_STEPS_PER_BATCH];
    uint32_t *u32 = malloc((total ? total : 1) * sizeof *u32);
    uint8_t *images = malloc(k * img);
    if (!u32 || !images) {
        free(u32);
        free(images);
        return 0;
    }
    size_t off = 0;
    for (size_t i = 0; i < k; i++) {
        traj_step_to_pb(&s[i], u32 + off, c->image_c, c->image_h, c->image_w, &pbs[i]);
        off += s[i].n_prompt + s[i].n_answer + s[i].n_teacher;
        ptrs[i] = &pbs[i];
        memcpy(images + i * img, s[i].image, img);
    }
    Gtrt__TrajBatch tb = GTRT__TRAJ_BATCH__INIT;
    tb.has_seq = 1;
    tb.seq = seq;
    tb.n_steps = k;
    tb.steps = ptrs;
    size_t len = gtrt__traj_batch__get_packed_size(&tb);
    uint8_t *body = malloc(len ? len : 1);
    if (body) {
        gtrt__traj_batch__pack(&tb, body);
        ba_sink_byte ^= body[len / 2] ^ images[k * img - 1];
    }
    free(body);
    free(images);
    free(u32);
    return body ? len + k * img : 0;
}

/* What the actor's loop thread does with each finished episode
 * (actor_send_episode): batches of at most TRAJ_MAX_STEPS_PER_BATCH steps
 * packed, then the steps freed. */
static void ba_ship(ba_sink *k, const model_config *c, ba_tally *t)
{
    for (size_t e = 0; e < k->n; e++) {
        ba_episode *ep = &k->eps[e];
        for (size_t at = 0; at < ep->n; at += TRAJ_MAX_STEPS_PER_BATCH) {
            size_t n = ep->n - at < TRAJ_MAX_STEPS_PER_BATCH ? ep->n - at : TRAJ_MAX_STEPS_PER_BATCH;
            t->bytes += ba_pack_batch(ep->steps + at, n, c, t->steps + 1);
        }
        for (size_t i = 0; i < ep->n; i++)
            traj_step_free(&ep->steps[i]);
        free(ep->steps);
    }
    k->n = 0;
}

/* Counted before shipping (outside the timed part). */
static void ba_count(const ba_sink *k, const model_config *c, ba_tally *t)
{
    static const float any_image; /* only its presence counts for the FLOPs */
    for (size_t e = 0; e < k->n; e++)
        for (size_t i = 0; i < k->eps[e].n; i++) {
            const traj_step *s = &k->eps[e].steps[i];
            model_seq q = {&any_image, NULL, (int)(s->n_prompt + s->n_answer), (int)s->n_prompt};
            model_batch b = {&q, 1, 1.0f};
            t->flops += model_forward_flops(c, &b);
            t->steps++;
            t->prompt_tokens += s->n_prompt;
            t->answer_tokens += s->n_answer;
        }
}

/* Mean answer length in tokens (end token included) of the env's oracle;
 * `fallback` when the env cannot be made. */
static int ba_oracle_answer_len(const char *name, int fallback)
{
    env *ev;
    if (env_new(name, NULL, &ev, NULL))
        return fallback;
    long turns = 0, tokens = 0;
    for (int ep = 0; ep < 100; ep++) {
        env_reset(ev, (uint64_t)ep + 1);
        while (!env_done(ev)) {
            env_answer a;
            char text[ENV_TEXT_MAX];
            int32_t ids[512];
            env_result r;
            env_oracle(ev, &a, NULL);
            env_answer_format(ev, &a, text, sizeof text);
            int n = tok_encode_answer(text, ids, 512, NULL);
            tokens += n > 0 ? n : 0;
            turns++;
            env_step(ev, a.action, &r, NULL);
        }
    }
    env_free(ev);
    return turns ? (int)(tokens / turns + 0.5) : fallback;
}

/* Microseconds per env turn of each part of the work around the model,
 * each timed on its own on one env fed oracle answers (so parsing takes
 * the valid path), to say where the rollout's own share goes. */
typedef struct ba_parts {
    double render, prompt, play, step;
} ba_parts;

static void ba_parts_turn(env *ev, float *img, size_t img_n, uint8_t *bytes, rng *r,
                          ba_parts *p)
{
    char text[ENV_TEXT_MAX], answer[ENV_ANSWER_MAX];
    int32_t ids[512], aids[512];
    double t0 = bench_now();
    env_render(ev, img);
    for (size_t k = 0; k < img_n; k++) { /* as rollout_observe quantises */
        float x = img[k] < 0 ? 0 : img[k] > 1 ? 1 : img[k];
        bytes[k] = (uint8_t)lrintf(x * 255.0f);
        img[k] = bytes[k] * (1.0f / 255.0f);
    }
    double t1 = bench_now();
    env_prompt(ev, text, sizeof text);
    int np = tok_encode_prompt(text, ids, 512, NULL);
    double t2 = bench_now();
    env_answer a; /* stands in for the sampler: not timed */
    env_oracle(ev, &a, NULL);
    env_answer_format(ev, &a, text, sizeof text);
    int na = tok_encode_answer(text, aids, 512, NULL);
    double t3 = bench_now();
    traj_step s;
    if (np > 0 && na > 0 && !traj_step_alloc(&s, (uint32_t)np, (uint32_t)na, 0, img_n)) {
        memcpy(s.prompt, ids, (size_t)np * sizeof *ids);
        memcpy(s.answer, aids, (size_t)na * sizeof *aids);
        tok_answer_parts(aids, na, s.kind);
        memcpy(s.image, bytes, img_n);
        traj_step_free(&s);
    }
    double t4 = bench_now();
    tok_decode(aids, na > 0 ? na : 0, answer, sizeof answer);
    env_turn t;
    env_play_answer(ev, answer, r, &t, NULL);
    double t5 = bench_now();
    p->render += t1 - t0;
    p->prompt += t2 - t1;
    p->step += t4 - t3;
    p->play += t5 - t4;
}

static void ba_parts_print(const char *name, double around_per_env_turn)
{
    env *ev;
    if (env_new(name, NULL, &ev, NULL))
        return;
    size_t img_n = env_image_floats(ev);
    float *img = malloc(img_n * sizeof *img);
    uint8_t *bytes = malloc(img_n);
    rng r;
    rng_init(&r, 9);
    ba_parts p = {0};
    long turns = 0;
    env_reset(ev, 1);
    for (double end = bench_now() + 0.5; img && bytes && bench_now() < end; turns++) {
        if (env_done(ev))
            env_reset(ev, rng_u64(&r));
        ba_parts_turn(ev, img, img_n, bytes, &r, &p);
    }
    if (turns)
        printf("  around the model, per env turn (parts timed alone): render+quantise %.1f us, "
               "prompt+tokenize %.1f us, build traj_step %.1f us, decode+parse+env step %.1f us "
               "= %.1f us (in the rollout: %.1f us)\n",
               1e6 * p.render / turns, 1e6 * p.prompt / turns, 1e6 * p.step / turns,
               1e6 * p.play / turns, 1e6 * (p.render + p.prompt + p.step + p.play) / turns,
               1e6 * around_per_env_turn);
    free(img);
    free(bytes);
    env_free(ev);
}

/* The policy: a checkpoint from ckpt_dir, else random weights. *trained
 * says which. */
static int ba_policy(const char *env_name, const char *preset, const ba_opts *o, model **m,
                     bool *trained, err *e)
{
    *trained = false;
    if (!o->ckpt_dir)
        return bench_policy(preset, env_name, 1, m, e);
    char path[1024];
    snprintf(path, sizeof path, "%s/%s-%s.safetensors", o->ckpt_dir, env_name, preset);
    *trained = true;
    return model_load(path, m, e);
}

typedef struct ba_result {
    double steps_s, tok_s, outside; /* outside: share of the actor's time */
} ba_result;

/* Figures between stats snapshots a and b, plus the shipping done. */
static void ba_report(const model_config *c, const char *env_name, int n_envs,
                      const rollout_stats *a, const rollout_stats *b, double ship_s,
                      const ba_tally *t, ba_result *res)
{
    double turns = (double)(b->turns - a->turns), tok = (double)(b->tokens - a->tokens);
    double turn_s = b->turn_s - a->turn_s, model_s = b->model_s - a->model_s;
    double actor_s = turn_s + ship_s, around = turn_s - model_s, calls = turns / n_envs;
    res->steps_s = turns / actor_s;
    res->tok_s = tok / actor_s;
    res->outside = (around + ship_s) / actor_s;
    printf("  %.0f env steps (%.0f episodes, %.0f%% valid answers) in %.2f s of actor time\n",
           turns, (double)(b->episodes - a->episodes),
           100.0 * (double)(b->valid - a->valid) / turns, actor_s);
    printf("  env steps/s %8.1f   generated tokens/s %8.0f   (%.1f answer tokens per step)\n",
           res->steps_s, res->tok_s, tok / turns);
    if (t->steps) /* FLOPs as bench_model counts them: one forward over each step's tokens */
        printf("  per step: %d image + %.1f prompt + %.1f answer tokens, %.1f KiB on the wire, "
               "~%.2f MFLOP; the sampler ran at ~%.1f GFLOP/s\n",
               model_config_n_patches(c), (double)t->prompt_tokens / t->steps,
               (double)t->answer_tokens / t->steps, (double)t->bytes / t->steps / 1024,
               t->flops / t->steps / 1e6, t->flops / t->steps * turns / model_s / 1e9);
    printf("  per turn of the %d envs: model %.2f ms, around it %.3f ms, serialise %.3f ms\n",
           n_envs, 1e3 * model_s / calls, 1e3 * around / calls, 1e3 * ship_s / calls);
    ba_parts_print(env_name, around / turns);
    printf("  share of actor time: model (sample_run) %.1f%%, around it in rollout_turn %.1f%%, "
           "serialise %.1f%% -> outside the model %.1f%%\n",
           100 * model_s / actor_s, 100 * around / actor_s, 100 * ship_s / actor_s,
           100 * res->outside);
}

/* Play turns for o->seconds after a short warm-up (the first turns
 * allocate the sampler's and the model's buffers). */
static int ba_play(rollout *ro, model *m, const char *env_name, const ba_opts *o, ba_result *res,
                   err *e)
{
    ba_sink sink = {0};
    ba_tally tally = {0}, ignored = {0};
    int rc = 0;
    for (int i = 0; !rc && i < BA_WARMUP_TURNS; i++)
        if (!(rc = rollout_turn(ro, m, 1, ba_on_episode, &sink, e)))
            ba_ship(&sink, &m->cfg, &ignored);
    rollout_stats a = *rollout_get_stats(ro);
    double ship_s = 0, t0 = bench_now();
    for (int i = 0; !rc && (i < BA_MIN_TURNS || bench_now() - t0 < o->seconds); i++) {
        if ((rc = rollout_turn(ro, m, 1, ba_on_episode, &sink, e)))
            break;
        ba_count(&sink, &m->cfg, &tally);
        double t1 = bench_now();
        ba_ship(&sink, &m->cfg, &tally);
        ship_s += bench_now() - t1;
    }
    if (sink.oom && !rc)
        rc = err_set(e, GTRT_ENOMEM, "out of memory keeping episodes");
    ba_ship(&sink, &m->cfg, &ignored);
    free(sink.eps);
    if (!rc)
        ba_report(&m->cfg, env_name, o->n_envs, &a, rollout_get_stats(ro), ship_s, &tally, res);
    return rc;
}

static int ba_run(const char *env_name, const char *preset, const ba_opts *o, ba_result *res)
{
    err e = {0};
    model *m = NULL;
    bool trained;
    int rc = ba_policy(env_name, preset, o, &m, &trained, &e);
    if (rc) {
        printf("== %s %s: %s\n", env_name, preset, e.msg);
        return rc;
    }
    rollout_config rc_ = {.n_envs = o->n_envs, .temperature = o->temperature, .top_k = o->top_k,
                          .max_new = o->actor_max_new, .seed = 1, .format_reward = true};
    snprintf(rc_.env, sizeof rc_.env, "%s", env_name);
    const char *why = "actor.max_new";
    if (o->max_new > 0) {
        rc_.max_new = o->max_new;
        why = "--max-new";
    } else if (!trained) {
        rc_.max_new = ba_oracle_answer_len(env_name, o->actor_max_new);
        why = "the oracle's mean answer length; random weights";
    }
    printf("== %s, preset %s (%.2f M parameters, %s), %d envs, answers of at most %d tokens "
           "(%s), T %.1f top-k %d, OpenBLAS threads %d\n",
           env_name, preset, (double)m->n_params / 1e6, trained ? "checkpoint" : "random weights",
           o->n_envs, rc_.max_new, why, rc_.temperature, rc_.top_k, openblas_get_num_threads());
    rollout *ro = NULL;
    if (!(rc = rollout_new(&rc_, &m->cfg, NULL, "bench-actor", &ro, &e)))
        rc = ba_play(ro, m, env_name, o, res, &e);
    if (rc)
        printf("  failed: %s\n", e.msg);
    fflush(stdout);
    rollout_free(ro);
    model_free(m);
    return rc;
}

int main(int argc, char **argv)
{
    config *schema = config_new(); /* every key at its default */
    if (!schema)
        return 1;
    ba_opts o = {.n_envs = (int)config_int(schema, "actor.envs"), .seconds = 6.0,
                 .temperature = (float)config_double(schema, "actor.temperature"),
                 .top_k = (int)config_int(schema, "actor.top_k"),
                 .actor_max_new = (int)config_int(schema, "actor.max_new")};
    config_free(schema);
    const char *runs[16];
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--envs") && i + 1 < argc)
            o.n_envs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            o.seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--max-new") && i + 1 < argc)
            o.max_new = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ckpt-dir") && i + 1 < argc)
            o.ckpt_dir = argv[++i];
        else if (argv[i][0] != '-' && strchr(argv[i], ':') && n < 16)
            runs[n++] = argv[i];
        else {
            fprintf(stderr, "usage: %s [--envs N] [--seconds S] [--max-new N] [--ckpt-dir DIR] "
                            "[ENV:PRESET ...]\n", argv[0]);
            return 2;
        }
    }
    if (o.n_envs < 1)
        o.n_envs = 1;
    static const char *defaults[] = {"points24:tiny", "numberline:tiny", "points24:small",
                                     "numberline:small"};
    if (n == 0)
        for (; n < 4; n++)
            runs[n] = defaults[n];
    printf("actor benchmark: one actor's rollout + serialisation, no network; %.0f s per run "
           "after %d warm-up turns\n", o.seconds, BA_WARMUP_TURNS);
    printf("env steps = turns summed over all envs; generated tokens = sampled answer tokens; "
           "actor time = rollout_turn + serialisation\n");
    double worst = 0;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        char env_name[64];
        snprintf(env_name, sizeof env_name, "%s", runs[i]);
        char *colon = strchr(env_name, ':');
        *colon = 0;
        ba_result r = {0};
        if (ba_run(env_name, colon + 1, &o, &r))
            rc = 1;
        else if (r.outside > worst)
            worst = r.outside;
    }
    bench_verdict("largest share of actor time outside the model", 100 * worst, "%", 10, true);
    return rc;
}
