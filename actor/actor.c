/* Actor service (see actor.h). */
#include "actor/actor.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "common/log.h"
#include "common/runmode.h"

static void actor_kick(actor *a);

/* ==== weights ==== */

static void actor_swap_weights(actor *a)
{
    if (!a->pending || a->busy)
        return;
    err e = {0};
    int rc;
    if (!a->policy) {
        rc = model_load_new_buffer(a->pending, a->pending_len, "fetched checkpoint", &a->policy, &e);
        if (!rc && (rc = rollout_new(&a->rc, &a->policy->cfg, &a->ep, a->s.id, &a->ro, &e))) {
            model_free(a->policy);
            a->policy = NULL;
        }
    } else {
        rc = model_load_buffer(a->policy, a->pending, a->pending_len, "fetched checkpoint", &e);
    }
    if (rc)
        log_error("cannot use checkpoint v%" PRIu64 ": %s", a->pending_version, e.msg);
    else {
        a->version = a->pending_version;
        a->s.model_version = a->version;
        log_info("acting with policy v%" PRIu64, a->version);
    }
    free(a->pending);
    a->pending = NULL;
}

static void actor_on_ckpt(void *ud, uint64_t version, const char *name, uint8_t *data, size_t len)
{
    actor *a = ud;
    (void)name;
    free(a->pending);
    a->pending = data;
    a->pending_len = len;
    a->pending_version = version;
    actor_swap_weights(a);
    actor_kick(a);
}

/* ==== shipping episodes ==== */

static void actor_on_episode(void *ud, traj_step *steps, size_t n)
{
    actor *a = ud; /* runs on the worker thread; only appends */
    if (a->n_eps == a->cap_eps) {
        size_t cap = a->cap_eps ? 2 * a->cap_eps : 16;
        actor_episode *ne = realloc(a->eps, cap * sizeof *ne);
        if (!ne) {
            for (size_t i = 0; i < n; i++)
                traj_step_free(&steps[i]);
            free(steps);
            return;
        }
        a->eps = ne;
        a->cap_eps = cap;
    }
    a->eps[a->n_eps++] = (actor_episode){steps, n};
}

/* Send one episode as batches of at most TRAJ_MAX_STEPS_PER_BATCH steps. */
static void actor_send_episode(actor *a, actor_episode *ep)
{
    int c = a->policy->cfg.image_c, h = a->policy->cfg.image_h, w = a->policy->cfg.image_w;
    for (size_t at = 0; at < ep->n; at += TRAJ_MAX_STEPS_PER_BATCH) {
        size_t k = ep->n - at < TRAJ_MAX_STEPS_PER_BATCH ? ep->n - at : TRAJ_MAX_STEPS_PER_BATCH;
        Gtrt__Step pbs[TRAJ_MAX_STEPS_PER_BATCH], *ptrs[TRAJ_MAX_STEPS_PER_BATCH];
        wire_slice imgs[TRAJ_MAX_STEPS_PER_BATCH];
        uint32_t *u32 = NULL;
        size_t total = 0;
        for (size_t i = 0; i < k; i++) {
            const traj_step *s = &ep->steps[at + i];
            total += s->n_prompt + s->n_answer + s->n_teacher;
        }
        u32 = malloc((total ? total : 1) * sizeof *u32);
        if (!u32)
            break;
        size_t off = 0;
        for (size_t i = 0; i < k; i++) {
            const traj_step *s = &ep->steps[at + i];
            traj_step_to_pb(s, u32 + off, c, h, w, &pbs[i]);
            off += s->n_prompt + s->n_answer + s->n_teacher;
            ptrs[i] = &pbs[i];
            imgs[i] = (wire_slice){s->image, (size_t)c * h * w};
        }
        err e = {0};
        if (traj_sender_send(&a->send, a->m.sock, ptrs, k, imgs, &e))
            log_warn("cannot queue steps: %s", e.msg);
        else
            a->steps_sent += k;
        free(u32);
    }
    a->episodes_sent++;
    for (size_t i = 0; i < ep->n; i++)
        traj_step_free(&ep->steps[i]);
    free(ep->steps);
}

/* ==== turns ==== */

static void actor_work_cb(uv_work_t *w)
{
    actor *a = w->data;
    err e = {0};
    /* A teacher list the client cannot use: this turn goes unguided. */
    if (rollout_set_teachers(a->ro, a->teachers, &e))
        log_warn("teachers %s: %s", a->teachers, e.msg);
    a->wrc = rollout_turn(a->ro, a->policy, a->version, actor_on_episode, a, &a->werr);
}

/* The learner's list of live teachers as comma-separated endpoints. */
static void actor_snapshot_teachers(actor *a)
{
    size_t at = 0;
    a->teachers[0] = 0;
    for (size_t i = 0; i < a->m.nteachers; i++) {
        int n = snprintf(a->teachers + at, sizeof a->teachers - at, "%s%s", at ? "," : "",
                         a->m.teachers[i].endpoint);
        if (n < 0 || (size_t)n >= sizeof a->teachers - at)
            break;
        at += (size_t)n;
    }
}

static void actor_after_work_cb(uv_work_t *w, int status)
{
    actor *a = w->data;
    a->busy = false;
    /* After a stop the sockets are gone; the episodes are dropped (nothing
     * was sent, so nothing is lost that the learner was promised). */
    for (size_t i = 0; i < a->n_eps; i++) {
        if (!a->s.stopping) {
            actor_send_episode(a, &a->eps[i]);
            continue;
        }
        for (size_t k = 0; k < a->eps[i].n; k++)
            traj_step_free(&a->eps[i].steps[k]);
        free(a->eps[i].steps);
    }
    a->n_eps = 0;
    if (status == 0 && a->wrc) {
        log_error("rollout failed: %s", a->werr.msg);
        svc_stop(&a->s, 1);
        return;
    }
    if (a->s.stopping)
        return;
    actor_swap_weights(a);
    actor_kick(a);
}

/* Start the next turn when there is a policy, room for its steps, and no
 * turn in flight. */
static void actor_kick(actor *a)
{
    if (a->busy || !a->ro || a->s.stopping || !a->m.welcomed)
        return; /* steps go only to a learner that knows us */
    if (traj_sender_room(&a->send) == 0)
        return; /* wait for acknowledgements */
    a->busy = true;
    actor_snapshot_teachers(a);
    a->work.data = a;
    uv_queue_work(&a->s.loop, &a->work, actor_work_cb, actor_after_work_cb);
}

/* ==== messages from the learner ==== */

static void actor_on_learner_msg(net_sock *sock, const net_route *from, const wire_msg *msg,
                                 void *ud)
{
    actor *a = ud;
    (void)from;
    if (msg->type == GTRT__MSG_TYPE__MSG_TRAJ_ACK) {
        const Gtrt__TrajAck *ack = (const Gtrt__TrajAck *)msg->body;
        if (ack->has_status && ack->status == GTRT__ACK_STATUS__ACK_REJECTED) {
            /* The learner does not know us (it restarted, or we sent before
             * it welcomed us): keep the batches, register again, and resend
             * them once welcomed. */
            if (a->m.welcomed)
                log_warn("learner does not know us (it restarted?); registering again");
            a->m.welcomed = false;
            a->learner_seen = true;
            a->learner_was_alive = false;
            return;
        }
        traj_sender_on_ack(&a->send, ack);
        actor_kick(a);
        return;
    }
    svc_unexpected(sock, msg);
}

static void actor_on_beat(svc *s)
{
    actor *a = (actor *)s;
    member_beat(&a->m);
    /* The learner came back (or we just registered): resend what it has
     * not acknowledged; it drops what it already has. */
    if (a->m.welcomed && !a->learner_was_alive && a->learner_seen && a->send.n) {
        log_info("learner is back: resending %zu unacknowledged batches", a->send.n);
        traj_sender_resend(&a->send, a->m.sock);
    } else if (a->m.welcomed) {
        traj_sender_retry(&a->send, a->m.sock);
    }
    if (a->learner_was_alive && !a->m.welcomed)
        a->learner_seen = true; /* it was there and went away */
    a->learner_was_alive = a->m.welcomed;
    actor_kick(a);
}

/* ==== status ==== */

static void actor_on_status(net_sock *sock, const net_route *from, const wire_msg *msg, void *ud)
{
    actor *a = ud;
    uint64_t rid = msg->hdr->has_request_id ? msg->hdr->request_id : 0;
    if (msg->type != GTRT__MSG_TYPE__MSG_STATUS_REQUEST) {
        svc_unexpected(sock, msg);
        svc_reply_error(sock, from, rid, GTRT_EPROTO, "an actor answers status requests only");
        return;
    }
    const traj_send_stats *t = &a->send.stats;
    svc_counters extra = {0};
    svc_counters_add(&extra, "learner_welcomed", a->m.welcomed);
    svc_counters_add(&extra, "episodes_sent", a->episodes_sent);
    svc_counters_add(&extra, "steps_sent", t->steps);
    svc_counters_add(&extra, "steps_acked", t->acked_steps);
    svc_counters_add(&extra, "steps_unacked", a->send.unacked_steps);
    svc_counters_add(&extra, "batches_sent", t->batches);
    svc_counters_add(&extra, "batches_unacked", a->send.n);
    svc_counters_add(&extra, "batches_resent", t->resent);
    svc_counters_add(&extra, "batches_retried", t->retried);
    svc_counters_add(&extra, "duplicate_acks", t->duplicate_acks);
    svc_counters_add(&extra, "send_failures", t->send_failures);
    /* 1 while waiting for acknowledgements with no turn in flight */
    svc_counters_add(&extra, "waiting_for_acks", !a->busy && traj_sender_room(&a->send) == 0);
    if (a->ro) { /* the rollout's counters; read between turns they are exact */
        const rollout_stats *r = rollout_get_stats(a->ro);
        svc_counters_add(&extra, "episodes", r->episodes);
        svc_counters_add(&extra, "turns", r->turns);
        svc_counters_add(&extra, "steps_teacher_guided", r->teacher_guided);
        svc_counters_add(&extra, "steps_teacher_failed", r->teacher_failed);
        svc_counters_add(&extra, "teacher_ms", (uint64_t)(r->teacher_s * 1000));
        svc_counters_add(&extra, "oracle_checked", r->checked);
        svc_counters_add(&extra, "oracle_ms", (uint64_t)(r->oracle_s * 1000));
    }
    svc_reply_status(&a->s, sock, from, rid, NULL, &extra);
}

static int actor_status_init(actor *a, const config *cfg, err *e)
{
    const char *bind = config_str(cfg, "actor.status_bind");
    if (!bind[0])
        return 0;
    a->status = net_sock_new(&a->s.net, ZMQ_ROUTER, "status", actor_on_status, a, e);
    if (!a->status)
        return e ? e->code : GTRT_ENET;
    snprintf(a->s.endpoint, sizeof a->s.endpoint, "%s", bind);
    return net_sock_bind(a->status, bind, e);
}

static void actor_on_stop(svc *s)
{
    actor *a = (actor *)s;
    member_bye(&a->m, "shutdown");
    ckpt_fetcher_close(&a->fetch);
    log_info("stopping: %" PRIu64 " episodes, %" PRIu64 " steps sent, %zu steps unacknowledged",
             a->episodes_sent, a->steps_sent, a->send.unacked_steps);
}

/* ==== life cycle ==== */

static void actor_rollout_config(actor *a, const config *cfg, run_mode mode)
{
    memset(&a->rc, 0, sizeof a->rc);
    snprintf(a->rc.env, sizeof a->rc.env, "%s", config_str(cfg, "env.name"));
    a->rc.n_envs = (int)config_int(cfg, "actor.envs");
    a->rc.temperature = (float)config_double(cfg, "actor.temperature");
    a->rc.top_k = (int)config_int(cfg, "actor.top_k");
    a->rc.max_new = (int)config_int(cfg, "actor.max_new");
    /* Every actor plays different deals: its seed mixes the run seed with
     * its id. */
    uint64_t h = 1469598103934665603ull;
    for (const char *p = a->s.id; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    a->rc.seed = (uint64_t)config_int(cfg, "run.seed") ^ h;
    a->rc.format_reward = true;
    static const rollout_guide guides[] = {[RUN_PPO] = ROLLOUT_GUIDE_NONE,
                                           [RUN_GTR] = ROLLOUT_GUIDE_ORACLE,
                                           [RUN_TURBO_SFT] = ROLLOUT_GUIDE_GEN,
                                           [RUN_TURBO_KL] = ROLLOUT_GUIDE_KL};
    a->rc.guide = guides[mode];
    tclient_opts_default(&a->rc.teacher);
    a->rc.teacher.timeout_ms = (int)config_int(cfg, "guide.teacher_timeout_ms");
    a->rc.teacher.attempts = (int)config_int(cfg, "guide.teacher_attempts");
    a->rc.teacher.max_msg_bytes = config_int(cfg, "net.max_msg_bytes");
    a->rc.teacher.sec = a->s.sec; /* loaded by svc_init; lives as long as the actor */
    env_params_from_config(&a->ep, cfg);
}

int actor_init(actor *a, const config *cfg, err *e)
{
    run_mode mode;
    int rc = run_mode_get(cfg, &mode, e);
    if (rc || (rc = svc_init(&a->s, cfg, GTRT__ROLE__ROLE_ACTOR, "actor", config_str(cfg, "actor.id"), e)))
        return rc;
    a->s.on_beat = actor_on_beat;
    a->s.on_stop = actor_on_stop;
    actor_rollout_config(a, cfg, mode);
    traj_sender_init(&a->send, (size_t)config_int(cfg, "actor.max_unacked_steps"));
    if ((rc = member_init(&a->m, &a->s, config_str(cfg, "learner.connect"), actor_on_learner_msg, a, e)) ||
        (rc = actor_status_init(a, cfg, e)))
        return rc;
    rc = ckpt_fetcher_init(&a->fetch, &a->s.net, config_str(cfg, "learner.connect"),
                           config_str(cfg, "learner.publish_connect"),
                           (int)config_int(cfg, "net.fetch_credit"),
                           (uint64_t)config_int(cfg, "net.request_timeout_ms"),
                           (uint64_t)config_int(cfg, "net.max_checkpoint_bytes"), actor_on_ckpt, a, e);
    a->m.ckpt = &a->fetch;
    return rc;
}

void actor_deinit(actor *a)
{
    rollout_free(a->ro);
    model_free(a->policy);
    traj_sender_deinit(&a->send);
    free(a->pending);
    for (size_t i = 0; i < a->n_eps; i++) {
        for (size_t k = 0; k < a->eps[i].n; k++)
            traj_step_free(&a->eps[i].steps[k]);
        free(a->eps[i].steps);
    }
    free(a->eps);
}

int actor_main(int argc, char **argv)
{
    static const cli_cmd cmd = {
        "actor", "", "Run an actor: plays episodes with the latest policy for the learner.",
        "Connects to the learner at learner.connect (in any start order), fetches its\n"
        "checkpoints, plays actor.envs environments of env.name in lock step and sends\n"
        "finished episodes; keeps unacknowledged ones and resends them after the learner\n"
        "comes back. Start as many as you like, on any host.\n"
        "Guidance follows run.mode: gtr has the env's oracle correct each answer;\n"
        "turbo-sft and turbo-kl ask the teachers the learner lists (one request per turn\n"
        "for all envs) for an answer to imitate or for logprobs of the policy's own answer;\n"
        "a turn no teacher answers in time is sent unguided (plain PPO) and counted.\n"
        "Stops cleanly on SIGINT or SIGTERM (exit code 0)."};
    cli_common common;
    int rc = cli_parse(argc, argv, &cmd, NULL, &common, NULL, NULL, 0);
    if (rc)
        return rc > 0 ? 0 : 2;
    config *cfg = cli_config(&common);
    if (!cfg)
        return 2;
    actor *a = calloc(1, sizeof *a);
    err e = {0};
    if (!a || actor_init(a, cfg, &e)) {
        log_error("%s", a ? e.msg : "out of memory");
        if (a) {
            svc_abort(&a->s);
            actor_deinit(a);
        }
        free(a);
        config_free(cfg);
        return 1;
    }
    rc = svc_run(&a->s);
    actor_deinit(a);
    free(a);
    config_free(cfg);
    return rc;
}
