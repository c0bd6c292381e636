/* Service skeleton shared by learner, teacher and actor (see service.h). */
#include "common/service.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/peers.h"
#include <stdlib.h>

static void svc_close_walk_cb(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void svc_signal_cb(uv_signal_t *h, int signum)
{
    svc *s = h->data;
    log_info("received %s, shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
    svc_stop(s, 0);
}

static void svc_beat_cb(uv_timer_t *h)
{
    svc *s = h->data;
    if (s->on_beat && !s->stopping)
        s->on_beat(s);
}

static void svc_free_security(svc *s)
{
    security_free(s->sec);
    s->sec = NULL;
}

int svc_init(svc *s, const config *cfg, uint32_t role, const char *role_name,
             const char *configured_id, err *e)
{
    memset(s, 0, sizeof *s);
    s->cfg = cfg;
    s->role = role;
    s->role_name = role_name;
    s->start_ms = clock_mono_ms();
    if (gethostname(s->host, sizeof s->host))
        snprintf(s->host, sizeof s->host, "localhost");
    s->host[sizeof s->host - 1] = 0;
    if (configured_id && configured_id[0])
        snprintf(s->id, sizeof s->id, "%s", configured_id);
    else
        snprintf(s->id, sizeof s->id, "%s-%.40s-%ld", role_name, s->host, (long)getpid());
    log_init(role_name, s->id);
    s->heartbeat_ms = (uint64_t)config_int(cfg, "net.heartbeat_ms");
    int rc = security_load(cfg, &s->sec, e);
    if (rc)
        return rc;
    if ((rc = uv_loop_init(&s->loop))) {
        svc_free_security(s);
        return err_set(e, GTRT_EIO, "uv_loop_init: %s", uv_strerror(rc));
    }
    rc = net_loop_init(&s->net, &s->loop, role, s->id, config_int(cfg, "net.max_msg_bytes"),
                       (int)config_int(cfg, "net.linger_ms"), e);
    if (rc) {
        uv_loop_close(&s->loop);
        svc_free_security(s);
        return rc;
    }
    net_loop_set_security(&s->net, s->sec);
    if (security_on(s->sec) && s->sec->has_client) /* what a server's allow-list must hold */
        log_info("CURVE client key %s (%s)", s->sec->client.pub_z85, s->sec->client_path);
    uv_signal_init(&s->loop, &s->sigint);
    uv_signal_init(&s->loop, &s->sigterm);
    s->sigint.data = s->sigterm.data = s;
    uv_timer_init(&s->loop, &s->beat);
    s->beat.data = s;
    return 0;
}

static void svc_finish(svc *s);

int svc_run(svc *s)
{
    uv_signal_start(&s->sigint, svc_signal_cb, SIGINT);
    uv_signal_start(&s->sigterm, svc_signal_cb, SIGTERM);
    uv_timer_start(&s->beat, svc_beat_cb, 0, s->heartbeat_ms);
    log_info("started (gtrt %s, pid %ld, heartbeat %llu ms)", GTRT_VERSION, (long)getpid(),
             (unsigned long long)s->heartbeat_ms);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    svc_finish(s);
    log_info("stopped");
    return s->exit_code;
}

/* Close whatever is still open and let every close callback run. */
static void svc_finish(svc *s)
{
    uv_walk(&s->loop, svc_close_walk_cb, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&s->loop);
    if (rc)
        log_warn("uv_loop_close: %s", uv_strerror(rc));
    svc_free_security(s); /* the sockets and the ZAP handler are gone */
}

void svc_abort(svc *s)
{
    if (!s->net.zctx)
        return; /* svc_init failed: nothing was set up */
    svc_stop(s, 1);
    svc_finish(s);
}

void svc_stop(svc *s, int exit_code)
{
    if (s->stopping)
        return;
    s->stopping = true;
    s->exit_code = exit_code;
    if (s->on_stop)
        s->on_stop(s);
    uv_timer_stop(&s->beat);
    uv_close((uv_handle_t *)&s->beat, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    net_loop_close(&s->net);
}

void svc_self_info(const svc *s, Gtrt__PeerInfo *out)
{
    gtrt__peer_info__init(out);
    out->id = (char *)s->id;
    out->has_role = 1;
    out->role = (Gtrt__Role)s->role;
    out->software_version = (char *)GTRT_VERSION;
    out->has_model_version = 1;
    out->model_version = s->model_version;
    out->host = (char *)s->host;
    out->has_pid = 1;
    out->pid = (uint32_t)getpid();
    out->has_uptime_ms = 1;
    out->uptime_ms = clock_mono_ms() - s->start_ms;
    if (s->endpoint[0])
        out->endpoint = (char *)s->endpoint;
}

void svc_counters_add(svc_counters *st, const char *name, uint64_t value)
{
    if (st->n >= SVC_MAX_COUNTERS)
        return;
    Gtrt__Counter *c = &st->c[st->n];
    gtrt__counter__init(c);
    snprintf(st->names[st->n], sizeof st->names[st->n], "%s", name);
    c->name = st->names[st->n];
    c->has_value = 1;
    c->value = value;
    st->ptrs[st->n] = c;
    st->n++;
}

void svc_counters_label(svc_counters *st, const char *name, const char *value)
{
    if (st->n_labels >= SVC_MAX_LABELS)
        return;
    size_t i = st->n_labels++;
    gtrt__label__init(&st->l[i]);
    snprintf(st->lnames[i], sizeof st->lnames[i], "%s", name);
    snprintf(st->lvalues[i], sizeof st->lvalues[i], "%s", value);
    st->l[i].name = st->lnames[i];
    st->l[i].value = st->lvalues[i];
    st->lptrs[i] = &st->l[i];
}

void svc_counters_fill(const svc *s, svc_counters *st)
{
    st->n = 0;
    st->n_labels = 0;
    net_stats ns;
    net_loop_stats(&s->net, &ns);
    svc_counters_add(st, "rx", ns.rx);
    svc_counters_add(st, "tx", ns.tx);
    svc_counters_add(st, "tx_dropped", ns.tx_dropped);
    svc_counters_add(st, "unexpected", ns.unexpected);
    uint64_t bad = 0;
    for (int r = 1; r < WIRE_REJ_COUNT; r++) {
        bad += ns.rejected[r];
        svc_counters_add(st, wire_reject_name((wire_reject)r), ns.rejected[r]);
    }
    svc_counters_add(st, "bad_total", bad);
    svc_counters_add(st, "auth_refused", net_loop_auth_refused(&s->net));
}

void svc_reply_error(net_sock *sock, const net_route *to, uint64_t request_id, int code,
                     const char *message)
{
    Gtrt__Error er = GTRT__ERROR__INIT;
    er.has_code = 1;
    er.code = (uint32_t)(code < 0 ? -code : code);
    er.message = (char *)message;
    net_send(sock, to, GTRT__MSG_TYPE__MSG_ERROR, &er.base, request_id, NULL, 0);
}

void svc_unexpected(net_sock *sock, const wire_msg *msg)
{
    sock->stats.unexpected++;
    log_debug("%s socket: ignored %s from %s", sock->name, wire_type_name(msg->type),
              msg->hdr->sender_id);
}

void svc_reply_status(svc *s, net_sock *sock, const net_route *to, uint64_t request_id,
                      const peer_table *peers, const svc_counters *extra)
{
    uint64_t now = clock_mono_ms();
    Gtrt__PeerInfo self;
    svc_self_info(s, &self);
    Gtrt__StatusReply rep = GTRT__STATUS_REPLY__INIT;
    rep.self = &self;
    size_t n = peers ? peers->n : 0;
    Gtrt__PeerStatus *st = calloc(n ? n : 1, sizeof *st);
    Gtrt__PeerStatus **stp = calloc(n ? n : 1, sizeof *stp);
    Gtrt__PeerInfo *inf = calloc(n ? n : 1, sizeof *inf);
    if (!st || !stp || !inf)
        n = 0;
    for (size_t i = 0; i < n; i++) {
        const peer *p = &peers->v[i];
        gtrt__peer_status__init(&st[i]);
        peers_to_info(p, now, &inf[i]);
        st[i].info = &inf[i];
        st[i].has_alive = 1;
        st[i].alive = p->alive;
        st[i].has_last_seen_ms_ago = 1;
        st[i].last_seen_ms_ago = now - p->last_seen_ms;
        st[i].has_first_seen_ms_ago = 1;
        st[i].first_seen_ms_ago = now - p->first_seen_ms;
        stp[i] = &st[i];
    }
    rep.n_peers = n;
    rep.peers = stp;
    svc_counters cs;
    svc_counters_fill(s, &cs);
    for (size_t i = 0; extra && i < extra->n; i++)
        svc_counters_add(&cs, extra->names[i], extra->c[i].value);
    for (size_t i = 0; extra && i < extra->n_labels; i++)
        svc_counters_label(&cs, extra->lnames[i], extra->lvalues[i]);
    rep.n_counters = cs.n;
    rep.counters = cs.ptrs;
    rep.n_labels = cs.n_labels;
    rep.labels = cs.lptrs;
    net_send(sock, to, GTRT__MSG_TYPE__MSG_STATUS_REPLY, &rep.base, request_id, NULL, 0);
    free(st);
    free(stp);
    free(inf);
}
