/* Policy, optimiser, ingest and PPO updates of the learner (see learn.h). */
#include "learner/learn.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "actor/envs/env.h"
#include "common/clock.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/runmode.h"
#include "common/tokenizer.h"
#include "learner/resume.h"

static void learn_free_batch(learn *L);
static void learn_check_budget(learn *L);

/* ==== set-up ==== */

/* A random policy of model.preset shaped for the configured env. */
static int learn_random_policy(learn *L, err *e)
{
    model_config mc;
    int rc = model_config_preset(config_str(L->cfg, "model.preset"), &mc, e);
    if (rc)
        return rc;
    env_params ep;
    env_params_from_config(&ep, L->cfg);
    env *probe;
    if ((rc = env_new(config_str(L->cfg, "env.name"), &ep, &probe, e)))
        return rc;
    env_image_shape(probe, &mc.image_c, &mc.image_h, &mc.image_w);
    env_free(probe);
    mc.vocab_size = TOK_VOCAB_SIZE;
    if ((rc = model_new(&mc, &L->m, e)))
        return rc;
    model_init_random(L->m, &L->rng);
    return 0;
}

static int learn_optim(learn *L, err *e)
{
    optim_config oc;
    optim_config_default(&oc);
    oc.lr = (float)config_double(L->cfg, "ppo.lr");
    oc.min_lr = (float)config_double(L->cfg, "ppo.min_lr");
    oc.weight_decay = (float)config_double(L->cfg, "ppo.weight_decay");
    oc.grad_clip = (float)config_double(L->cfg, "ppo.grad_clip");
    int64_t per_update = config_int(L->cfg, "ppo.epochs") *
                         ((config_int(L->cfg, "ppo.num_steps") + config_int(L->cfg, "ppo.minibatch") - 1) /
                          config_int(L->cfg, "ppo.minibatch"));
    oc.total_steps = L->updates * per_update;
    optim_range *ranges = malloc((size_t)L->m->n_tensors * sizeof *ranges);
    if (!ranges)
        return err_set(e, GTRT_ENOMEM, "out of memory");
    int nr = model_decay_ranges(L->m, ranges);
    int rc = optim_new(&oc, L->m->n_params, ranges, nr, &L->o, e);
    free(ranges);
    return rc;
}

static void learn_train_config(learn *L)
{
    const config *c = L->cfg;
    train_config *tc = &L->tc;
    ppo_hparams_default(&tc->ppo);
    tc->ppo.gamma = (float)config_double(c, "ppo.gamma");
    tc->ppo.lam = (float)config_double(c, "ppo.gae_lambda");
    tc->ppo.clip = (float)config_double(c, "ppo.clip");
    tc->ppo.value_clip = (float)config_double(c, "ppo.value_clip");
    tc->ppo.vf_coef = (float)config_double(c, "ppo.vf_coef");
    tc->ppo.ent_coef = (float)config_double(c, "ppo.ent_coef");
    tc->ppo.thought_coef = (float)config_double(c, "ppo.thought_coef");
    tc->epochs = (int)config_int(c, "ppo.epochs");
    tc->minibatch = (int)config_int(c, "ppo.minibatch");
    tc->temperature = (float)config_double(c, "actor.temperature");
    run_mode mode = RUN_PPO;
    run_mode_get(c, &mode, NULL); /* checked by learn_check_config */
    tc->sft_coef = run_mode_sft(mode) ? (float)config_double(c, "guide.sft_coef") : 0.0f;
    L->teacher_mode = run_mode_teacher(mode);
    tc->sft_batch = (int)config_int(c, "guide.sft_batch");
    tc->kl_coef = (float)config_double(c, "guide.kl_coef");
    tc->kl.est = (guide_kl_est)guide_kl_est_parse(config_str(c, "guide.kl_estimator"));
    tc->kl.clamp_max = (float)config_double(c, "guide.kl_clamp");
    tc->kl.with_action = config_bool(c, "guide.kl_with_action");
}

static int learn_ingest_init(learn *L)
{
    traj_limits lim = {(uint32_t)L->m->cfg.vocab_size, (uint32_t)model_config_max_text(&L->m->cfg),
                       (uint32_t)L->m->cfg.image_c, (uint32_t)L->m->cfg.image_h,
                       (uint32_t)L->m->cfg.image_w};
    return ingest_init(&L->g, &lim, (uint64_t)config_int(L->cfg, "ppo.max_policy_lag"),
                       (size_t)config_int(L->cfg, "net.max_peers"));
}

int learn_check_config(const config *cfg, err *e)
{
    run_mode mode;
    int rc = run_mode_get(cfg, &mode, e);
    if (rc)
        return rc;
    const char *est = config_str(cfg, "guide.kl_estimator");
    if (guide_kl_est_parse(est) < 0)
        return err_set(e, GTRT_ECONFIG,
                       "guide.kl_estimator '%s': expected clamp, plain, abs, k3 or forward", est);
    int64_t steps = config_int(cfg, "ppo.num_steps"), mb = config_int(cfg, "ppo.minibatch");
    if (mb > steps)
        return err_set(e, GTRT_ECONFIG,
                       "ppo.minibatch (%" PRId64 ") is larger than ppo.num_steps (%" PRId64
                       "): an update would not fill one minibatch",
                       mb, steps);
    /* How many actors will come is not known here: only warn. */
    int64_t unacked = config_int(cfg, "actor.max_unacked_steps");
    if (unacked < steps)
        log_warn("actor.max_unacked_steps (%" PRId64 ") is below ppo.num_steps (%" PRId64
                 "): an update needs at least %" PRId64 " actors, or the learner waits forever",
                 unacked, steps, (steps + unacked - 1) / unacked);
    return 0;
}

/* ==== checkpoints ==== */

/* Write the policy as version `v` and load the bytes for serving. */
static int learn_write_version(learn *L, uint64_t v, err *e)
{
    snprintf(L->ckpt_name, sizeof L->ckpt_name, "policy-v%06" PRIu64 ".safetensors", v);
    char path[1024], vs[32];
    resume_policy_path(L->run_dir, v, path, sizeof path);
    snprintf(vs, sizeof vs, "%" PRIu64, v);
    st_kv meta[] = {{"policy_version", vs}, {"env", config_str(L->cfg, "env.name")}};
    int rc = model_save_with(L->m, path, meta, 2, e);
    if (!rc)
        rc = fs_read_file(path, &L->ckpt, &L->ckpt_len, e);
    return rc;
}

int learn_save_state(learn *L, err *e)
{
    if (!L->state_ok)
        return 0;
    return resume_save_record(L->run_dir, L->version, L->env_steps, &L->g, e);
}

/* Ingest's persist hook: the acks it is about to send are on disk first. */
static int learn_persist(void *ud)
{
    learn *L = ud;
    err e = {0};
    int rc = learn_save_state(L, &e);
    if (rc && !L->save_failing)
        log_error("%s; acknowledgements wait until it can be written", e.msg);
    else if (!rc && L->save_failing)
        log_info("the learner state is written again");
    L->save_failing = rc != 0;
    return rc;
}

/* ==== new or resumed run ==== */

/* A new run: the policy from ppo.init_checkpoint or random, written as
 * version 0 with a fresh optimizer and an empty ingest record. */
static int learn_fresh(learn *L, err *e)
{
    int64_t old = resume_recorded_version(L->run_dir);
    if (old > 0)
        log_warn("%s holds a run at v%" PRId64 "; starting a new one over it (to continue it "
                 "instead: gtrt learner --resume %s)",
                 L->run_dir, old, L->run_dir);
    const char *init = config_str(L->cfg, "ppo.init_checkpoint");
    int rc = init[0] ? model_load(init, &L->m, e) : learn_random_policy(L, e);
    if (rc)
        return rc;
    log_info("policy: %s, %zu parameters, %dx%dx%d images", init[0] ? init : "random weights",
             L->m->n_params, L->m->cfg.image_c, L->m->cfg.image_h, L->m->cfg.image_w);
    if ((rc = learn_optim(L, e)))
        return rc;
    if ((rc = learn_ingest_init(L)))
        return err_set(e, rc, "out of memory");
    if ((rc = learn_write_version(L, 0, e)) ||
        (rc = resume_save_optim(L->run_dir, 0, L->o, &L->rng, e)))
        return rc;
    return resume_save_record(L->run_dir, 0, 0, &L->g, e);
}

/* Read policy-v<L->version> into L->ckpt and build the model from it,
 * checking that it is the version and env the record and config say. */
static int learn_load_policy(learn *L, err *e)
{
    char path[1024];
    resume_policy_path(L->run_dir, L->version, path, sizeof path);
    snprintf(L->ckpt_name, sizeof L->ckpt_name, "policy-v%06" PRIu64 ".safetensors", L->version);
    if (access(path, R_OK))
        return err_set(e, GTRT_ENOTFOUND,
                       "cannot resume %s: its record names v%" PRIu64 " but %s is missing (%s)",
                       L->run_dir, L->version, path, strerror(errno));
    int rc = fs_read_file(path, &L->ckpt, &L->ckpt_len, e);
    st_file *f = NULL;
    if (!rc)
        rc = st_open_buffer(L->ckpt, L->ckpt_len, path, &f, e);
    if (rc)
        return rc;
    char vs[32];
    snprintf(vs, sizeof vs, "%" PRIu64, L->version);
    const char *fv = st_meta(f, "policy_version"), *penv = st_meta(f, "env");
    const char *want_env = config_str(L->cfg, "env.name");
    if (!fv || strcmp(fv, vs))
        rc = err_set(e, GTRT_EPARSE, "cannot resume %s: %s says it is version %s", L->run_dir,
                     path, fv ? fv : "(none)");
    else if (penv && strcmp(penv, want_env))
        rc = err_set(e, GTRT_ECONFIG, "cannot resume %s: the policy plays %s, env.name is %s",
                     L->run_dir, penv, want_env);
    st_close(f);
    if (!rc)
        rc = model_load_new_buffer(L->ckpt, L->ckpt_len, path, &L->m, e);
    return rc;
}

/* A resumed run: the version the record names, its optimizer state and
 * random stream, and the record's ingest state. */
static int learn_resume(learn *L, err *e)
{
    resume_record r;
    int rc = resume_open(L->run_dir, &r, e);
    if (!rc && (L->lock_fd = resume_lock(L->run_dir, e)) < 0)
        rc = e ? e->code : GTRT_ESTATE;
    if (rc) {
        resume_close(&r);
        return rc;
    }
    L->version = r.version;
    L->env_steps = r.env_steps;
    char v0[1024];
    resume_policy_path(L->run_dir, 0, v0, sizeof v0);
    if (access(v0, R_OK))
        rc = err_set(e, GTRT_ENOTFOUND, "cannot resume %s: the base policy %s is missing (%s)",
                     L->run_dir, v0, strerror(errno));
    if (!rc)
        rc = learn_load_policy(L, e);
    if (!rc)
        rc = learn_optim(L, e);
    if (!rc && (rc = resume_load_optim(L->run_dir, L->version, L->o, &L->rng, e)))
        err_prefix(e, "cannot resume %s", L->run_dir);
    if (!rc && (rc = learn_ingest_init(L)))
        err_set(e, rc, "out of memory");
    if (rc) {
        resume_close(&r);
        return rc;
    }
    if ((rc = resume_read_ingest(&r, L->run_dir, &L->g, e)))
        return rc;
    log_info("resuming %s at v%" PRIu64 " (optimizer step %" PRId64 "): %" PRIu64
             " steps learned from %zu actors; %zu parameters",
             L->run_dir, L->version, L->o->step, L->env_steps, L->g.n_actors, L->m->n_params);
    return 0;
}

int learn_init(learn *L, const config *cfg, uv_loop_t *loop, const char *resume_dir, err *e)
{
    memset(L, 0, sizeof *L);
    L->lock_fd = -1;
    L->cfg = cfg;
    L->updates = config_int(cfg, "ppo.updates");
    L->num_steps = (size_t)config_int(cfg, "ppo.num_steps");
    L->keep = (int)config_int(cfg, "ppo.keep_checkpoints");
    int rc = learn_check_config(cfg, e);
    if (rc)
        return rc;
    rng_init(&L->rng, (uint64_t)config_int(cfg, "run.seed"));
    int n = resume_dir ? snprintf(L->run_dir, sizeof L->run_dir, "%s", resume_dir)
                       : snprintf(L->run_dir, sizeof L->run_dir, "%s/%s",
                                  config_str(cfg, "run.out_dir"), config_str(cfg, "run.name"));
    if (n < 0 || (size_t)n >= sizeof L->run_dir)
        return err_set(e, GTRT_ERANGE, "run directory path is too long (%d characters)", n);
    char ck[600];
    snprintf(ck, sizeof ck, "%s/checkpoints", L->run_dir);
    if (!resume_dir && ((rc = fs_mkdirs(ck, e)) || (L->lock_fd = resume_lock(L->run_dir, e)) < 0))
        return rc ? rc : GTRT_ESTATE;
    if ((rc = resume_dir ? learn_resume(L, e) : learn_fresh(L, e)))
        return rc;
    learn_train_config(L);
    if ((rc = dagger_init(&L->dg, (int)config_int(cfg, "guide.buffer"),
                          (uint64_t)config_int(cfg, "run.seed") + 17)))
        return err_set(e, rc, "out of memory for guide.buffer samples");
    ingest_set_persist(&L->g, learn_persist, L);
    char path[700];
    snprintf(path, sizeof path, "%s/config.ini", L->run_dir);
    if ((rc = config_write_file(cfg, path, e)))
        return rc;
    if ((rc = metrics_new(L->run_dir, cfg, &L->mx, e)))
        return rc;
    if ((rc = metrics_serve(L->mx, loop, config_str(cfg, "metrics.prometheus_bind"), &L->prom, e)))
        return rc;
    L->started_ns = clock_mono_ns();
    L->env_steps_at_start = L->env_steps;
    L->state_ok = true;
    learn_check_budget(L);
    return 0;
}

void learn_deinit(learn *L)
{
    prom_server_close(&L->prom);
    metrics_free(&L->mx);
    learn_free_batch(L);
    free(L->ckpt);
    ingest_deinit(&L->g);
    dagger_free(&L->dg);
    optim_free(L->o);
    model_free(L->m);
    if (L->cfg && L->lock_fd >= 0) /* a zeroed learn never opened one */
        close(L->lock_fd); /* after the last write to the run directory */
    memset(L, 0, sizeof *L);
    L->lock_fd = -1;
}

/* Serve `path` as `version` (its bytes are read here). */
static int learn_publish_file(ckpt_server *cs, const char *run_dir, uint64_t version, err *e)
{
    char path[1024], name[128];
    resume_policy_path(run_dir, version, path, sizeof path);
    snprintf(name, sizeof name, "policy-v%06" PRIu64 ".safetensors", version);
    uint8_t *data;
    size_t len;
    int rc = fs_read_file(path, &data, &len, e);
    return rc ? rc : ckpt_server_publish(cs, version, name, data, len, e);
}

int learn_publish_initial(learn *L, ckpt_server *cs, err *e)
{
    /* Version 0 is every merged teacher's base: serve it after a resume too. */
    int rc = L->version > 0 ? learn_publish_file(cs, L->run_dir, 0, e) : 0;
    if (rc)
        return rc;
    rc = ckpt_server_publish(cs, L->version, L->ckpt_name, L->ckpt, L->ckpt_len, e);
    L->ckpt = NULL; /* the server owns it now */
    return rc;
}

/* ==== updates ==== */

static void learn_work_cb(uv_work_t *w)
{
    learn *L = w->data;
    uint64_t v = L->version + 1;
    L->wrc = train_update_guided(L->m, L->o, L->batch, (int)L->n_batch, L->dg.s, L->dg.n, &L->tc,
                                 &L->rng, &L->st, &L->werr);
    if (!L->wrc)
        L->wrc = learn_write_version(L, v, &L->werr);
    if (!L->wrc)
        L->wrc = resume_save_optim(L->run_dir, v, L->o, &L->rng, &L->werr);
}

/* DAgger: every step of the batch that carries an answer to imitate joins
 * the SFT guidance samples before the update that learns from it. */
static void learn_aggregate(learn *L)
{
    const model_config *c = &L->m->cfg;
    size_t img = (size_t)c->image_c * c->image_h * c->image_w;
    uint32_t max_text = (uint32_t)model_config_max_text(c);
    L->corrected = 0;
    L->with_answer = 0;
    for (size_t i = 0; i < L->n_batch; i++) {
        const traj_step *s = &L->batch[i];
        if (!s->n_teacher)
            continue;
        L->with_answer++;
        L->corrected += s->n_teacher != s->n_answer ||
                        memcmp(s->teacher_answer, s->answer, s->n_answer * sizeof *s->answer) != 0;
        if (dagger_add(&L->dg, s, max_text, img) < 0)
            log_warn("out of memory: an SFT guidance sample was not kept");
    }
}

void learn_maybe_update(learn *L, uv_loop_t *loop, void (*done_cb)(uv_work_t *, int))
{
    if (L->busy || L->finished)
        return;
    /* The acks of dropped batches must reach the actors (the learner's next
     * flush sends them), or they would keep those steps unacknowledged and
     * eventually stall. */
    ingest_drop_stale(&L->g, NULL, L->version);
    size_t n = ingest_ready(&L->g, L->num_steps);
    if (!n)
        return;
    L->batch = malloc(n * sizeof *L->batch);
    L->batch_of = malloc(n * sizeof *L->batch_of);
    if (!L->batch || !L->batch_of) {
        free(L->batch);
        free(L->batch_of);
        L->batch = NULL;
        L->batch_of = NULL;
        return;
    }
    L->n_batch = ingest_take(&L->g, L->batch, L->batch_of, n);
    learn_aggregate(L);
    L->busy = true;
    L->work.data = L;
    uv_queue_work(loop, &L->work, learn_work_cb, done_cb);
}

/* Per-actor counts as labelled Prometheus gauges (actor="ID"): steps
 * received, dropped stale or invalid (by this learner process), batches
 * seen twice, and steps learned from over the whole run. */
static void learn_actor_metrics(learn *L)
{
    for (size_t i = 0; i < L->g.n_actors; i++) {
        const ingest_actor *a = &L->g.actors[i];
        metrics_gauge_set(L->mx, "actor_steps_received", "actor", a->id, (double)a->steps);
        metrics_gauge_set(L->mx, "actor_steps_stale", "actor", a->id, (double)a->stale);
        metrics_gauge_set(L->mx, "actor_steps_invalid", "actor", a->id, (double)a->invalid);
        metrics_gauge_set(L->mx, "actor_batches_duplicate", "actor", a->id,
                          (double)a->duplicates);
        metrics_gauge_set(L->mx, "actor_steps_learned", "actor", a->id,
                          (double)a->settled.learned);
    }
}

/* Where guidance time goes and how old the teacher is, over the batch. */
static void learn_guide_metrics(learn *L)
{
    double guide_ms = 0, act_ms = 0, lag = 0;
    size_t failed = 0, teacher = 0;
    for (size_t i = 0; i < L->n_batch; i++) {
        const traj_step *s = &L->batch[i];
        guide_ms += s->guide_ms;
        act_ms += s->act_ms;
        failed += s->guide_failed;
        if (L->teacher_mode && !s->guide_failed) {
            teacher++;
            lag += s->policy_version > s->teacher_version
                       ? (double)(s->policy_version - s->teacher_version)
                       : 0;
        }
    }
    if (!L->n_batch || (guide_ms <= 0 && !failed))
        return; /* ppo: no guidance, no curves */
    metrics *m = L->mx;
    metrics_scalar(m, METRICS_GUIDE_MS, guide_ms / (double)L->n_batch);
    metrics_scalar(m, METRICS_GUIDE_TIME_SHARE, act_ms > 0 ? guide_ms / act_ms : 0);
    if (!L->teacher_mode)
        return;
    metrics_scalar(m, METRICS_TEACHER_FAILED, (double)failed / (double)L->n_batch);
    metrics_scalar(m, METRICS_TEACHER_LAG, teacher ? lag / (double)teacher : 0);
}

static void learn_metrics(learn *L)
{
    const train_stats *s = &L->st;
    double lag_sum = 0, lag_max = 0;
    for (size_t i = 0; i < L->n_batch; i++) {
        double lag = (double)(L->version - L->batch[i].policy_version);
        lag_sum += lag;
        lag_max = lag > lag_max ? lag : lag_max;
    }
    metrics *m = L->mx;
    metrics_scalar(m, METRICS_SUCCESS_RATE, s->success_rate);
    metrics_scalar(m, METRICS_RETURN, s->mean_return);
    metrics_scalar(m, METRICS_THOUGHT_ENTROPY, s->thought_entropy);
    if (s->guided_share > 0) { /* no teacher, no curve */
        metrics_scalar(m, METRICS_TEACHER_KL, s->teacher_kl);
        metrics_scalar(m, METRICS_KL_P50, s->kl_p50);
        metrics_scalar(m, METRICS_KL_P90, s->kl_p90);
        metrics_scalar(m, METRICS_KL_MAX, s->kl_max);
        metrics_scalar(m, METRICS_GUIDED_SHARE, s->guided_share);
    }
    if (L->tc.sft_coef > 0) {
        metrics_scalar(m, METRICS_SFT_LOSS, s->sft_loss);
        metrics_scalar(m, METRICS_SFT_SAMPLES, (double)L->dg.n);
        metrics_scalar(m, METRICS_CORRECTED_SHARE,
                       L->with_answer ? (double)L->corrected / (double)L->with_answer : 0);
    }
    learn_guide_metrics(L);
    metrics_scalar(m, METRICS_EPISODE_LENGTH, s->mean_length);
    metrics_scalar(m, METRICS_FORMAT_VALID, s->format_valid);
    metrics_scalar(m, METRICS_APPROX_KL, s->approx_kl);
    metrics_scalar(m, METRICS_CLIP_FRAC, s->clip_frac);
    metrics_scalar(m, METRICS_VALUE_LOSS, s->value_loss);
    metrics_scalar(m, METRICS_POLICY_LOSS, s->policy_loss);
    metrics_scalar(m, METRICS_EXPLAINED_VAR, s->explained_variance);
    metrics_scalar(m, METRICS_GRAD_NORM, s->grad_norm);
    metrics_scalar(m, METRICS_LR, s->lr);
    metrics_scalar(m, METRICS_LAG_MEAN, L->n_batch ? lag_sum / (double)L->n_batch : 0);
    metrics_scalar(m, METRICS_LAG_MAX, lag_max);
    metrics_scalar(m, METRICS_STEPS_RECEIVED, (double)L->g.stats.steps);
    metrics_scalar(m, METRICS_STEPS_STALE, (double)L->g.stats.stale);
    metrics_scalar(m, METRICS_STEPS_DUPLICATE, (double)L->g.stats.duplicates);
    metrics_scalar(m, METRICS_STEPS_REJECTED, (double)L->g.stats.invalid);
    double el = clock_since_s(L->started_ns);
    double learned = (double)(L->env_steps - L->env_steps_at_start); /* by this process */
    metrics_scalar(m, METRICS_ENV_STEPS_PER_S, el > 0 ? learned / el : 0);
    metrics_scalar(m, METRICS_TOKENS_PER_S, s->seconds > 0 ? s->tokens / s->seconds : 0);
    metrics_scalar(m, METRICS_UPDATE_S, s->seconds);
    learn_actor_metrics(L);
    err e = {0};
    if (metrics_commit(m, (int64_t)L->version, (int64_t)L->env_steps, &e))
        log_warn("metrics: %s", e.msg);
}

static void learn_free_batch(learn *L)
{
    for (size_t i = 0; i < L->n_batch; i++)
        traj_step_free(&L->batch[i]);
    free(L->batch);
    free(L->batch_of);
    L->batch = NULL;
    L->batch_of = NULL;
    L->n_batch = 0;
}

static void learn_check_budget(learn *L)
{
    if (L->updates > 0 && (int64_t)L->version >= L->updates && !L->finished) {
        L->finished = true;
        log_info("budget of %" PRId64 " updates reached", L->updates);
    }
}

/* The update wrote version + 1: make it the current version on disk (the
 * record names it), then acknowledge its batches. */
static int learn_commit(learn *L, net_sock *router, err *e)
{
    L->version++;
    L->env_steps += L->n_batch;
    L->g.dirty = true; /* even if no batch settled, the record must name the new version */
    if (ingest_done(&L->g, router, L->batch_of, L->n_batch))
        return err_set(e, GTRT_EIO, "cannot record update %" PRIu64 " in %s/" RESUME_RECORD,
                       L->version, L->run_dir);
    resume_prune(L->run_dir, L->version, L->keep);
    return 0;
}

int learn_after_update(learn *L, ckpt_server *cs, net_sock *router, err *e)
{
    L->busy = false;
    int rc = L->wrc;
    if (rc && e)
        *e = L->werr;
    if (!rc)
        rc = learn_commit(L, router, e);
    if (!rc && cs) {
        rc = ckpt_server_publish(cs, L->version, L->ckpt_name, L->ckpt, L->ckpt_len, e);
        L->ckpt = NULL;
    }
    if (!rc) {
        learn_metrics(L);
        const train_stats *s = &L->st;
        log_info("update %" PRIu64 ": %d steps, %d episodes, success %.2f, return %.2f, "
                 "thought entropy %.3f, kl %.4f, clip %.2f, %.1f s",
                 L->version, s->n_steps, s->n_episodes, s->success_rate, s->mean_return,
                 s->thought_entropy, s->approx_kl, s->clip_frac, s->seconds);
    }
    free(L->ckpt);
    L->ckpt = NULL;
    learn_free_batch(L);
    learn_check_budget(L);
    return rc;
}
