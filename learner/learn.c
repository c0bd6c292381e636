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
#include "common/tokenizer.h"

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
    tc->kl_coef = (float)config_double(c, "ppo.kl_coef");
}

int learn_init(learn *L, const config *cfg, uv_loop_t *loop, err *e)
{
    memset(L, 0, sizeof *L);
    L->cfg = cfg;
    L->updates = config_int(cfg, "ppo.updates");
    L->num_steps = (size_t)config_int(cfg, "ppo.num_steps");
    L->keep = (int)config_int(cfg, "ppo.keep_checkpoints");
    if (config_int(cfg, "ppo.minibatch") > config_int(cfg, "ppo.num_steps"))
        return err_set(e, GTRT_ECONFIG,
                       "ppo.minibatch (%" PRId64 ") is larger than ppo.num_steps (%" PRId64
                       "): an update would not fill one minibatch",
                       config_int(cfg, "ppo.minibatch"), config_int(cfg, "ppo.num_steps"));
    rng_init(&L->rng, (uint64_t)config_int(cfg, "run.seed"));
    snprintf(L->run_dir, sizeof L->run_dir, "%s/%s", config_str(cfg, "run.out_dir"),
             config_str(cfg, "run.name"));
    char ck[600];
    snprintf(ck, sizeof ck, "%s/checkpoints", L->run_dir);
    int rc = fs_mkdirs(ck, e);
    if (rc)
        return rc;
    char path[700];
    snprintf(path, sizeof path, "%s/config.ini", L->run_dir);
    if ((rc = config_write_file(cfg, path, e)))
        return rc;
    const char *init = config_str(cfg, "ppo.init_checkpoint");
    rc = init[0] ? model_load(init, &L->m, e) : learn_random_policy(L, e);
    if (rc)
        return rc;
    log_info("policy: %s, %zu parameters, %dx%dx%d images", init[0] ? init : "random weights",
             L->m->n_params, L->m->cfg.image_c, L->m->cfg.image_h, L->m->cfg.image_w);
    if ((rc = learn_optim(L, e)))
        return rc;
    learn_train_config(L);
    traj_limits lim = {(uint32_t)L->m->cfg.vocab_size, (uint32_t)model_config_max_text(&L->m->cfg),
                       (uint32_t)L->m->cfg.image_c, (uint32_t)L->m->cfg.image_h,
                       (uint32_t)L->m->cfg.image_w};
    if ((rc = ingest_init(&L->g, &lim, (uint64_t)config_int(cfg, "ppo.max_policy_lag"),
                          (size_t)config_int(cfg, "net.max_peers"))))
        return err_set(e, rc, "out of memory");
    if ((rc = metrics_new(L->run_dir, cfg, &L->mx, e)))
        return rc;
    if ((rc = metrics_serve(L->mx, loop, config_str(cfg, "metrics.prometheus_bind"), &L->prom, e)))
        return rc;
    L->started_ns = clock_mono_ns();
    return 0;
}

void learn_deinit(learn *L)
{
    prom_server_close(&L->prom);
    metrics_free(&L->mx);
    for (size_t i = 0; i < L->n_batch; i++)
        traj_step_free(&L->batch[i]);
    free(L->batch);
    free(L->batch_of);
    free(L->ckpt);
    ingest_deinit(&L->g);
    optim_free(L->o);
    model_free(L->m);
    memset(L, 0, sizeof *L);
}

/* ==== checkpoints ==== */

/* Write the policy as version `v` and load the bytes for serving. */
static int learn_write_version(learn *L, uint64_t v, err *e)
{
    snprintf(L->ckpt_name, sizeof L->ckpt_name, "policy-v%06" PRIu64 ".safetensors", v);
    char path[700], vs[32];
    snprintf(path, sizeof path, "%s/checkpoints/%s", L->run_dir, L->ckpt_name);
    snprintf(vs, sizeof vs, "%" PRIu64, v);
    st_kv meta[] = {{"policy_version", vs}, {"env", config_str(L->cfg, "env.name")}};
    int rc = model_save_with(L->m, path, meta, 2, e);
    if (!rc)
        rc = fs_read_file(path, &L->ckpt, &L->ckpt_len, e);
    if (!rc && v >= (uint64_t)L->keep) { /* keep the last K */
        snprintf(path, sizeof path, "%s/checkpoints/policy-v%06" PRIu64 ".safetensors", L->run_dir,
                 v - (uint64_t)L->keep);
        if (v - (uint64_t)L->keep > 0) /* version 0, the warm start, stays */
            unlink(path);
    }
    return rc;
}

int learn_publish_initial(learn *L, ckpt_server *cs, err *e)
{
    int rc = learn_write_version(L, L->version, e);
    if (rc)
        return rc;
    rc = ckpt_server_publish(cs, L->version, L->ckpt_name, L->ckpt, L->ckpt_len, e);
    L->ckpt = NULL;
    return rc;
}

/* ==== updates ==== */

static void learn_work_cb(uv_work_t *w)
{
    learn *L = w->data;
    L->wrc = train_update(L->m, L->o, L->batch, (int)L->n_batch, &L->tc, &L->rng, &L->st, &L->werr);
    if (!L->wrc)
        L->wrc = learn_write_version(L, L->version + 1, &L->werr);
}

void learn_maybe_update(learn *L, uv_loop_t *loop, net_sock *router,
                        void (*done_cb)(uv_work_t *, int))
{
    if (L->busy || L->finished)
        return;
    /* The acks of dropped batches must reach the actors, or they would
     * keep those steps as unacknowledged and eventually stall. */
    ingest_drop_stale(&L->g, router, L->version);
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
    L->busy = true;
    L->work.data = L;
    uv_queue_work(loop, &L->work, learn_work_cb, done_cb);
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
    if (L->tc.kl_coef > 0) /* no teacher, no curve */
        metrics_scalar(m, METRICS_TEACHER_KL, s->teacher_kl);
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
    metrics_scalar(m, METRICS_ENV_STEPS_PER_S, el > 0 ? (double)L->env_steps / el : 0);
    metrics_scalar(m, METRICS_TOKENS_PER_S, s->seconds > 0 ? s->tokens / s->seconds : 0);
    metrics_scalar(m, METRICS_UPDATE_S, s->seconds);
    err e = {0};
    if (metrics_commit(m, (int64_t)L->version, (int64_t)L->env_steps, &e))
        log_warn("metrics: %s", e.msg);
}

int learn_after_update(learn *L, ckpt_server *cs, net_sock *router, err *e)
{
    L->busy = false;
    int rc = L->wrc;
    if (rc) {
        if (e)
            *e = L->werr;
    } else {
        L->version++;
        L->env_steps += L->n_batch;
        rc = ckpt_server_publish(cs, L->version, L->ckpt_name, L->ckpt, L->ckpt_len, e);
        L->ckpt = NULL;
        learn_metrics(L);
        const train_stats *s = &L->st;
        log_info("update %" PRIu64 ": %d steps, %d episodes, success %.2f, return %.2f, "
                 "thought entropy %.3f, kl %.4f, clip %.2f, %.1f s",
                 L->version, s->n_steps, s->n_episodes, s->success_rate, s->mean_return,
                 s->thought_entropy, s->approx_kl, s->clip_frac, s->seconds);
    }
    ingest_done(&L->g, router, L->batch_of, L->n_batch);
    for (size_t i = 0; i < L->n_batch; i++)
        traj_step_free(&L->batch[i]);
    free(L->batch);
    free(L->batch_of);
    L->batch = NULL;
    L->batch_of = NULL;
    L->n_batch = 0;
    if (L->updates > 0 && (int64_t)L->version >= L->updates) {
        L->finished = true;
        log_info("budget of %" PRId64 " updates reached", L->updates);
    }
    return rc;
}

int learn_save_state(learn *L, err *e)
{
    char path[700], tmp[720];
    snprintf(path, sizeof path, "%s/ingest-state.txt", L->run_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return err_set(e, GTRT_EIO, "%s: %s", tmp, strerror(errno));
    int rc = ingest_save(&L->g, f);
    if (fflush(f) || fsync(fileno(f)))
        rc = GTRT_EIO;
    fclose(f);
    if (rc || rename(tmp, path))
        return err_set(e, GTRT_EIO, "%s: cannot write", path);
    return 0;
}
