/* Learner service: membership, liveness and status (see learner.h). */
#include "learner/learner.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cli.h"
#include "common/clock.h"

static void learner_maybe_update(learner *l);

/* ==== membership ==== */

static const char *learner_role_name(uint32_t role)
{
    switch (role) {
    case GTRT__ROLE__ROLE_ACTOR: return "actor";
    case GTRT__ROLE__ROLE_TEACHER: return "teacher";
    case GTRT__ROLE__ROLE_LEARNER: return "learner";
    default: return "client";
    }
}

/* Record a message from a registered role; NULL when the table is full. */
static peer *learner_heard(learner *l, const net_route *from, const wire_msg *msg,
                           const Gtrt__PeerInfo *info)
{
    bool joined;
    peer *p = peers_touch(&l->peers, msg->hdr->sender_id, clock_mono_ms(), &joined);
    if (!p) {
        l->peers_refused++;
        return NULL;
    }
    p->route = *from;
    p->role = (uint32_t)msg->hdr->role;
    peers_update_info(p, info);
    p->role = (uint32_t)msg->hdr->role; /* the header's role is authoritative */
    if (joined)
        log_info("%s %s joined (host %s, pid %u, gtrt %s)", learner_role_name(p->role), p->id,
                 p->host[0] ? p->host : "?", p->pid, p->version[0] ? p->version : "?");
    return p;
}

/* Alive teachers as PeerInfo pointers for Welcome / Heartbeat. */
static size_t learner_teachers(learner *l, Gtrt__PeerInfo *infos, Gtrt__PeerInfo **ptrs,
                               size_t max)
{
    size_t k = 0;
    uint64_t now = clock_mono_ms();
    for (size_t i = 0; i < l->peers.n && k < max; i++) {
        const peer *p = &l->peers.v[i];
        if (p->alive && p->role == GTRT__ROLE__ROLE_TEACHER) {
            peers_to_info(p, now, &infos[k]);
            ptrs[k] = &infos[k];
            k++;
        }
    }
    return k;
}

#define LEARNER_MAX_TEACHERS_LISTED 64

static void learner_welcome(learner *l, const net_route *to, uint64_t request_id)
{
    Gtrt__PeerInfo self, infos[LEARNER_MAX_TEACHERS_LISTED];
    Gtrt__PeerInfo *ptrs[LEARNER_MAX_TEACHERS_LISTED];
    svc_self_info(&l->s, &self);
    Gtrt__Welcome w = GTRT__WELCOME__INIT;
    w.learner = &self;
    w.has_heartbeat_ms = 1;
    w.heartbeat_ms = (uint32_t)l->s.heartbeat_ms;
    w.n_teachers = learner_teachers(l, infos, ptrs, LEARNER_MAX_TEACHERS_LISTED);
    w.teachers = ptrs;
    Gtrt__CkptAnnounce ck, base;
    if (ckpt_server_latest(&l->ckpts, &ck))
        w.checkpoint = &ck;
    if (ckpt_server_base(&l->ckpts, &base))
        w.base_checkpoint = &base; /* teachers merge relative to it */
    net_send(l->router, to, GTRT__MSG_TYPE__MSG_WELCOME, &w.base, request_id, NULL, 0);
}

/* An actor we never welcomed: this learner restarted while the actor kept
 * beating. Tell it we do not know it (a rejection without seqs), so that it
 * registers again and resends every batch it holds unacknowledged; joining
 * it silently would strand the batches our previous run had not learned. */
static void learner_ask_register(learner *l, net_sock *sock, const net_route *from,
                                 const char *id)
{
    l->heartbeats_unregistered++;
    log_info("actor %s beats without having registered; asking it to register", id);
    Gtrt__TrajAck ack = GTRT__TRAJ_ACK__INIT;
    ack.has_status = 1;
    ack.status = GTRT__ACK_STATUS__ACK_REJECTED;
    net_send(sock, from, GTRT__MSG_TYPE__MSG_TRAJ_ACK, &ack.base, 0, NULL, 0);
}

/* ==== updates ==== */

static void learner_update_done(uv_work_t *w, int status)
{
    learner *l = (learner *)((char *)w - offsetof(learner, L.work));
    err e = {0};
    if (status) /* cancelled: learn_after_update still frees the batch */
        l->L.wrc = err_set(&l->L.werr, GTRT_ESTATE, "update cancelled: %s", uv_strerror(status));
    if (l->s.stopping) {
        /* Sockets are closed: only record the new version, so a resumed
         * learner goes on from it; the actors resend the batches and are
         * told they are duplicates. */
        if (learn_after_update(&l->L, NULL, NULL, &e))
            log_error("update failed while stopping: %s", e.msg);
        return;
    }
    if (learn_after_update(&l->L, &l->ckpts, l->router, &e)) {
        log_error("update failed: %s", e.msg);
        svc_stop(&l->s, 1);
        return;
    }
    l->s.model_version = l->L.version;
    learner_maybe_update(l);
}

static void learner_maybe_update(learner *l)
{
    if (!l->s.stopping)
        learn_maybe_update(&l->L, &l->s.loop, learner_update_done);
}

/* ==== messages ==== */

static void learner_on_msg(net_sock *sock, const net_route *from, const wire_msg *msg, void *ud)
{
    learner *l = ud;
    uint32_t role = (uint32_t)msg->hdr->role;
    bool member = role == GTRT__ROLE__ROLE_ACTOR || role == GTRT__ROLE__ROLE_TEACHER;
    uint64_t rid = msg->hdr->has_request_id ? msg->hdr->request_id : 0;
    switch (msg->type) {
    case GTRT__MSG_TYPE__MSG_HELLO:
        if (!member)
            break;
        if (learner_heard(l, from, msg, ((const Gtrt__Hello *)msg->body)->peer))
            learner_welcome(l, from, rid);
        else
            svc_reply_error(sock, from, rid, GTRT_ERANGE, "learner is full: too many peers");
        return;
    case GTRT__MSG_TYPE__MSG_HEARTBEAT:
        if (!member)
            break;
        if (role == GTRT__ROLE__ROLE_ACTOR && !peers_find(&l->peers, msg->hdr->sender_id)) {
            learner_ask_register(l, sock, from, msg->hdr->sender_id);
            return;
        }
        if (learner_heard(l, from, msg, ((const Gtrt__Heartbeat *)msg->body)->peer) &&
            role == GTRT__ROLE__ROLE_ACTOR)
            ingest_refresh_route(&l->L.g, msg->hdr->sender_id, from);
        return;
    case GTRT__MSG_TYPE__MSG_BYE: {
        peer *p = peers_find(&l->peers, msg->hdr->sender_id);
        if (p && p->alive) {
            p->alive = false;
            const Gtrt__Bye *b = (const Gtrt__Bye *)msg->body;
            log_info("%s %s left (%s)", learner_role_name(p->role), p->id,
                     b->reason ? b->reason : "no reason given");
        }
        return;
    }
    case GTRT__MSG_TYPE__MSG_TRAJ_BATCH: {
        peer *p = peers_find(&l->peers, msg->hdr->sender_id);
        if (!p || !p->alive || p->role != GTRT__ROLE__ROLE_ACTOR) {
            /* Say so: the actor keeps the batch, registers again and
             * resends it. */
            l->traj_unregistered++;
            log_warn("refused trajectories from %s: not a registered actor", msg->hdr->sender_id);
            const Gtrt__TrajBatch *tb = (const Gtrt__TrajBatch *)msg->body;
            uint64_t seq = tb->seq;
            Gtrt__TrajAck ack = GTRT__TRAJ_ACK__INIT;
            ack.n_seq = 1;
            ack.seq = &seq;
            ack.has_status = 1;
            ack.status = GTRT__ACK_STATUS__ACK_REJECTED;
            net_send(sock, from, GTRT__MSG_TYPE__MSG_TRAJ_ACK, &ack.base, 0, NULL, 0);
            return;
        }
        ingest_on_batch(&l->L.g, NULL, from, msg->hdr->sender_id, msg, l->L.version);
        learner_maybe_update(l);
        return;
    }
    case GTRT__MSG_TYPE__MSG_CKPT_CHUNK_REQUEST:
        ckpt_server_on_request(&l->ckpts, sock, from, msg);
        return;
    case GTRT__MSG_TYPE__MSG_STATUS_REQUEST: {
        svc_counters extra = {0};
        svc_counters_add(&extra, "peers_refused", l->peers_refused);
        svc_counters_add(&extra, "ckpt_chunks_served", l->ckpts.chunks_served);
        svc_counters_add(&extra, "ckpt_bad_requests", l->ckpts.bad_requests);
        svc_counters_add(&extra, "policy_version", l->L.version);
        svc_counters_add(&extra, "updates_budget", (uint64_t)l->L.updates);
        svc_counters_add(&extra, "env_steps_learned", l->L.env_steps);
        svc_counters_add(&extra, "steps_received", l->L.g.stats.steps);
        svc_counters_add(&extra, "steps_stale", l->L.g.stats.stale);
        svc_counters_add(&extra, "steps_rejected", l->L.g.stats.invalid);
        svc_counters_add(&extra, "batches_duplicate", l->L.g.stats.duplicates);
        svc_counters_add(&extra, "batches_unregistered", l->traj_unregistered);
        svc_counters_add(&extra, "steps_buffered", l->L.g.n_steps);
        /* every step of every acknowledged batch, over the whole run (its split
         * by outcome is in ingest-state.txt), and the steps not settled yet */
        svc_counters_add(&extra, "steps_settled_total", l->L.g.stats.settled.steps);
        svc_counters_add(&extra, "steps_open", ingest_open_steps(&l->L.g));
        svc_counters_add(&extra, "acks_waiting", l->L.g.n_out);
        svc_counters_add(&extra, "heartbeats_unregistered", l->heartbeats_unregistered);
        svc_reply_status(&l->s, sock, from, rid, &l->peers, &extra);
        return;
    }
    default:
        break;
    }
    svc_unexpected(sock, msg);
}

/* ==== heartbeat ==== */

/* Sweep four times per heartbeat interval so a silent peer is declared gone
 * at most a quarter interval after its timeout. */
static void learner_sweep_cb(uv_timer_t *h)
{
    learner *l = h->data;
    uint64_t now = clock_mono_ms();
    peer *gone[64];
    size_t ngone = peers_sweep(&l->peers, now, gone, 64);
    for (size_t i = 0; i < ngone && i < 64; i++)
        log_warn("%s %s is gone (silent for %llu ms)", learner_role_name(gone[i]->role),
                 gone[i]->id, (unsigned long long)(now - gone[i]->last_seen_ms));
    if (ngone > 64)
        log_warn("... and %zu more peers are gone", ngone - 64);
}

/* Once per loop iteration, after the messages it brought: write what the
 * ingest settled, then send the acks that were waiting for it (and retry
 * those that could not be sent). */
static void learner_flush_cb(uv_check_t *h)
{
    learner *l = h->data;
    if (l->L.state_ok && !l->s.stopping)
        ingest_flush(&l->L.g, l->router);
}

/* CURVE refusals as a Prometheus counter, gtrt_auth_refused_total (0 from
 * the first beat on, so that an alert rule finds it). */
static void learner_export_auth(learner *l)
{
    uint64_t n = net_loop_auth_refused(&l->s.net);
    if (l->L.mx)
        metrics_counter_add(l->L.mx, "auth_refused_total", NULL, NULL,
                            (double)(n - l->auth_refused_exported));
    l->auth_refused_exported = n;
}

static void learner_on_beat(svc *s)
{
    learner *l = (learner *)s;
    learner_export_auth(l);
    Gtrt__PeerInfo self, infos[LEARNER_MAX_TEACHERS_LISTED];
    Gtrt__PeerInfo *ptrs[LEARNER_MAX_TEACHERS_LISTED];
    svc_self_info(s, &self);
    Gtrt__Heartbeat hb = GTRT__HEARTBEAT__INIT;
    hb.peer = &self;
    hb.n_teachers = learner_teachers(l, infos, ptrs, LEARNER_MAX_TEACHERS_LISTED);
    hb.teachers = ptrs;
    Gtrt__CkptAnnounce ck, base;
    if (ckpt_server_latest(&l->ckpts, &ck))
        hb.checkpoint = &ck;
    if (ckpt_server_base(&l->ckpts, &base))
        hb.base_checkpoint = &base;
    for (size_t i = 0; i < l->peers.n; i++)
        if (l->peers.v[i].alive)
            net_send(l->router, &l->peers.v[i].route, GTRT__MSG_TYPE__MSG_HEARTBEAT, &hb.base, 0,
                     NULL, 0);
}

static void learner_on_stop(svc *s)
{
    learner *l = (learner *)s;
    if (l->L.busy)
        log_info("waiting for the update in progress to finish");
    /* Either may not exist yet when set-up failed (svc_abort). */
    if (l->sweep.loop && !uv_is_closing((uv_handle_t *)&l->sweep))
        uv_close((uv_handle_t *)&l->sweep, NULL);
    if (l->flush.loop && !uv_is_closing((uv_handle_t *)&l->flush))
        uv_close((uv_handle_t *)&l->flush, NULL);
    prom_server_close(&l->L.prom); /* its listening socket would keep the loop alive */
    log_info("stopping; %zu actors and %zu teachers were alive",
             peers_count_alive(&l->peers, GTRT__ROLE__ROLE_ACTOR),
             peers_count_alive(&l->peers, GTRT__ROLE__ROLE_TEACHER));
}

/* ==== life cycle ==== */

int learner_init(learner *l, const config *cfg, const char *resume_dir, err *e)
{
    int rc = svc_init(&l->s, cfg, GTRT__ROLE__ROLE_LEARNER, "learner", config_str(cfg, "learner.id"), e);
    if (rc)
        return rc;
    l->s.on_beat = learner_on_beat;
    l->s.on_stop = learner_on_stop;
    snprintf(l->s.endpoint, sizeof l->s.endpoint, "%s", config_str(cfg, "learner.connect"));
    uint64_t timeout = l->s.heartbeat_ms * (uint64_t)config_int(cfg, "net.liveness");
    if ((rc = peers_init(&l->peers, (size_t)config_int(cfg, "net.max_peers"), timeout)))
        return err_set(e, rc, "out of memory for the peer table");
    uv_timer_init(&l->s.loop, &l->sweep);
    l->sweep.data = l;
    uint64_t every = l->s.heartbeat_ms / 4 ? l->s.heartbeat_ms / 4 : 1;
    uv_timer_start(&l->sweep, learner_sweep_cb, every, every);
    uv_check_init(&l->s.loop, &l->flush);
    l->flush.data = l;
    uv_check_start(&l->flush, learner_flush_cb);
    uv_unref((uv_handle_t *)&l->flush); /* never what keeps the loop running */
    l->router = net_sock_new(&l->s.net, ZMQ_ROUTER, "router", learner_on_msg, l, e);
    if (!l->router)
        return e ? e->code : GTRT_ENET;
    const char *bind = config_str(cfg, "learner.bind");
    if ((rc = net_sock_bind(l->router, bind, e)))
        return rc;
    l->pub = net_sock_new(&l->s.net, ZMQ_PUB, "publish", NULL, NULL, e);
    const char *pub = config_str(cfg, "learner.publish_bind");
    if (!l->pub || (rc = net_sock_bind(l->pub, pub, e)))
        return l->pub ? rc : GTRT_ENET;
    ckpt_server_init(&l->ckpts, l->pub, (uint32_t)config_int(cfg, "net.chunk_bytes"));
    log_info("listening on %s, announcing on %s", bind, pub);
    if ((rc = learn_init(&l->L, cfg, &l->s.loop, resume_dir, e)) ||
        (rc = learn_publish_initial(&l->L, &l->ckpts, e)))
        return rc;
    l->s.model_version = l->L.version;
    log_info("run directory %s; serving policy v%llu", l->L.run_dir,
             (unsigned long long)l->L.version);
    return 0;
}

void learner_deinit(learner *l)
{
    err e = {0};
    if (learn_save_state(&l->L, &e)) /* a no-op unless set-up finished */
        log_error("%s", e.msg);
    learn_deinit(&l->L);
    peers_deinit(&l->peers);
    ckpt_server_deinit(&l->ckpts);
}

/* With --resume and no --config, the run's own config.ini is the
 * configuration (--set still applies on top). 0, or 1 after printing why. */
static int learner_resume_config(const char *run_dir, cli_common *common, char *buf, size_t n)
{
    if (common->config_path)
        return 0;
    snprintf(buf, n, "%s/config.ini", run_dir);
    if (access(buf, R_OK) == 0) {
        common->config_path = buf;
        return 0;
    }
    fprintf(stderr, "gtrt learner: cannot resume %s: %s: %s%s\n", run_dir, buf, strerror(errno),
            access(run_dir, F_OK) ? "" : " (not a run directory? runs are in run.out_dir/run.name)");
    return 1;
}

int learner_main(int argc, char **argv)
{
    static const cli_cmd cmd = {
        "learner", "", "Run the learner: the hub actors and teachers register with.",
        "Binds learner.bind, tracks which actors and teachers are alive (a peer silent for\n"
        "net.liveness heartbeat intervals is gone) and answers `gtrt status`. Trains on\n"
        "the actors' steps and writes each version to run.out_dir/run.name/checkpoints.\n"
        "Stops cleanly on SIGINT or SIGTERM (exit code 0), finishing the update in flight.\n"
        "\n"
        "--resume RUN_DIR continues a stopped or killed run from the last version it\n"
        "recorded (RUN_DIR/ingest-state.txt): the same policy, optimizer state and record\n"
        "of which actor batches it learned from; the next update writes the next version,\n"
        "and ppo.updates counts the updates of the whole run. Its configuration is\n"
        "RUN_DIR/config.ini unless --config is given; --set applies on top."};
    const char *resume = NULL;
    const cli_opt opts[] = {
        {"resume", CLI_STR, &resume, "RUN_DIR", "continue the run in RUN_DIR where it stopped"},
        {0}};
    cli_common common;
    int rc = cli_parse(argc, argv, &cmd, opts, &common, NULL, NULL, 0);
    if (rc)
        return rc > 0 ? 0 : 2;
    char cfg_path[1024];
    if (resume && learner_resume_config(resume, &common, cfg_path, sizeof cfg_path))
        return 1;
    config *cfg = cli_config(&common);
    if (!cfg)
        return 2;
    learner l = {0};
    err e = {0};
    rc = learner_init(&l, cfg, resume, &e);
    if (rc) {
        log_error("%s", e.msg);
        svc_abort(&l.s);
        learner_deinit(&l);
        config_free(cfg);
        return 1;
    }
    rc = svc_run(&l.s);
    learner_deinit(&l);
    config_free(cfg);
    return rc;
}
