/* ZeroMQ-in-libuv glue (see net.h for the edge-trigger rules it follows). */
#include "common/net.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"

/* ==== frames ==== */

int net_frames_recv(void *z, net_frames *f)
{
    f->n = 0;
    f->overflow = false;
    for (;;) {
        zmq_msg_t tmp;
        zmq_msg_t *m = f->n < WIRE_MAX_FRAMES + 1 ? &f->msgs[f->n] : &tmp;
        zmq_msg_init(m);
        int rc = zmq_msg_recv(m, z, ZMQ_DONTWAIT);
        if (rc < 0) {
            zmq_msg_close(m);
            int eno = zmq_errno();
            /* EAGAIN on the first frame: nothing waiting. Later frames of a
             * multipart message are always there (ZeroMQ delivers atomically). */
            if (f->n == 0 && !f->overflow && eno == EAGAIN)
                return 0;
            net_frames_clear(f);
            return eno == EAGAIN ? 0 : GTRT_ENET;
        }
        int more = zmq_msg_more(m);
        if (m == &tmp) {
            f->overflow = true;
            zmq_msg_close(m);
        } else {
            f->slices[f->n].data = zmq_msg_data(m);
            f->slices[f->n].len = zmq_msg_size(m);
            f->n++;
        }
        if (!more)
            return 1;
    }
}

void net_frames_clear(net_frames *f)
{
    for (size_t i = 0; i < f->n; i++)
        zmq_msg_close(&f->msgs[i]);
    f->n = 0;
}

wire_reject net_frames_decode(const net_frames *f, bool router, net_route *from, wire_msg *out)
{
    memset(out, 0, sizeof *out);
    from->len = 0;
    size_t skip = 0;
    if (router) {
        if (f->n < 1 || f->slices[0].len > NET_ROUTE_MAX)
            return WIRE_REJ_FRAMES;
        memcpy(from->id, f->slices[0].data, f->slices[0].len);
        from->len = (uint8_t)f->slices[0].len;
        skip = 1;
    }
    if (f->overflow)
        return WIRE_REJ_FRAMES;
    return wire_decode(f->slices + skip, f->n - skip, out);
}

/* ==== draining ==== */

static void net_log_reject(net_sock *s, wire_reject r)
{
    uint64_t hidden = 0;
    if (log_ratelimit_allow(&s->loop->bad_log, clock_mono_ms(), &hidden))
        log_warn("%s socket: dropped a bad message (%s)%s", s->name, wire_reject_name(r),
                 hidden ? " (and more, suppressed)" : "");
}

/* Deliver up to NET_DRAIN_BUDGET messages; returns how many were handled
 * (valid or not). Returning the budget means more may be waiting. */
static int net_sock_drain(net_sock *s)
{
    bool router = s->ztype == ZMQ_ROUTER;
    int i = 0;
    for (; i < NET_DRAIN_BUDGET; i++) {
        if (s->closing || !s->z)
            break;
        int events = 0;
        size_t len = sizeof events;
        if (zmq_getsockopt(s->z, ZMQ_EVENTS, &events, &len) || !(events & ZMQ_POLLIN))
            break;
        net_frames f;
        if (net_frames_recv(s->z, &f) <= 0)
            break;
        net_route from;
        wire_msg msg;
        wire_reject r = net_frames_decode(&f, router, &from, &msg);
        if (r != WIRE_OK) {
            s->stats.rejected[r]++;
            net_log_reject(s, r);
        } else {
            s->stats.rx++;
            if (s->cb)
                s->cb(s, &from, &msg, s->ud);
            wire_msg_clear(&msg);
        }
        net_frames_clear(&f);
    }
    return i;
}

static void net_idle_cb(uv_idle_t *h);

/* Drain every socket, pass after pass while any delivered something: a
 * callback may have sent on a socket already drained in this pass (its fd
 * need not fire for that), or made another readable. A socket that used its
 * whole budget keeps an idle handle running so the loop polls without
 * blocking, and timers still get their turn under a flood. */
static void net_loop_drain_all(net_loop *nl)
{
    bool more = false;
    for (int pass = 0; pass < 8; pass++) {
        int delivered = 0;
        more = false;
        for (int i = 0; i < nl->nsocks; i++) {
            int n = net_sock_drain(nl->socks[i]);
            delivered += n;
            more |= n == NET_DRAIN_BUDGET;
        }
        if (!delivered || more)
            break;
    }
    if (more && !nl->idle_active) {
        uv_idle_start(&nl->idle, net_idle_cb);
        nl->idle_active = true;
    } else if (!more && nl->idle_active) {
        uv_idle_stop(&nl->idle);
        nl->idle_active = false;
    }
}

static void net_idle_cb(uv_idle_t *h) { net_loop_drain_all(h->data); }
static void net_prepare_cb(uv_prepare_t *h) { net_loop_drain_all(h->data); }

static void net_poll_cb(uv_poll_t *h, int status, int events)
{
    net_sock *s = h->data;
    (void)events;
    if (status < 0)
        log_warn("%s socket: poll error: %s", s->name, uv_strerror(status));
    net_loop_drain_all(s->loop);
}

/* ==== loop ==== */

int net_loop_init(net_loop *nl, uv_loop_t *uv, uint32_t role, const char *sender_id,
                  int64_t max_msg_bytes, int linger_ms, err *e)
{
    memset(nl, 0, sizeof *nl);
    if (!wire_id_valid(sender_id))
        return err_set(e, GTRT_ECONFIG,
                       "id '%s' is not valid: 1..64 characters of letters, digits and ._:@-",
                       sender_id);
    nl->uv = uv;
    nl->role = role;
    snprintf(nl->sender_id, sizeof nl->sender_id, "%s", sender_id);
    nl->max_msg_bytes = max_msg_bytes;
    nl->linger_ms = linger_ms;
    log_ratelimit_init(&nl->bad_log, 5, 10000);
    nl->zctx = zmq_ctx_new();
    if (!nl->zctx)
        return err_set(e, GTRT_ENET, "zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
    uv_prepare_init(uv, &nl->prepare);
    nl->prepare.data = nl;
    uv_prepare_start(&nl->prepare, net_prepare_cb);
    uv_idle_init(uv, &nl->idle);
    nl->idle.data = nl;
    return 0;
}

static void net_sock_free_cb(uv_handle_t *h) { free(h->data); }

void net_sock_close(net_sock *s)
{
    if (!s || s->closing)
        return;
    net_loop *nl = s->loop;
    s->closing = true;
    for (int i = 0; i < nl->nsocks; i++)
        if (nl->socks[i] == s) {
            nl->socks[i] = nl->socks[--nl->nsocks];
            break;
        }
    /* Stop watching the fd before ZeroMQ closes it. */
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, net_sock_free_cb);
    security_server_unwatch(s->z);
    zmq_close(s->z);
    s->z = NULL;
}

void net_loop_close(net_loop *nl)
{
    while (nl->nsocks > 0)
        net_sock_close(nl->socks[nl->nsocks - 1]);
    if (nl->zctx) {
        uv_close((uv_handle_t *)&nl->prepare, NULL);
        uv_close((uv_handle_t *)&nl->idle, NULL);
        /* The ZAP handler's sockets would keep zmq_ctx_term waiting; its
         * server sockets are closed by now, as it requires. */
        security_zap_free(nl->zap);
        nl->zap = NULL;
        /* Linger is bounded per socket, so this returns in bounded time. */
        zmq_ctx_term(nl->zctx);
        nl->zctx = NULL;
    }
}

void net_loop_set_security(net_loop *nl, const security *sec) { nl->sec = sec; }

uint64_t net_loop_auth_refused(const net_loop *nl) { return security_zap_refused(nl->zap); }

void net_loop_stats(const net_loop *nl, net_stats *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < nl->nsocks; i++) {
        const net_stats *s = &nl->socks[i]->stats;
        out->rx += s->rx;
        out->tx += s->tx;
        out->tx_dropped += s->tx_dropped;
        out->unexpected += s->unexpected;
        for (int r = 0; r < WIRE_REJ_COUNT; r++)
            out->rejected[r] += s->rejected[r];
    }
}

/* ==== sockets ==== */

static int net_setopt_int(void *z, int opt, int v) { return zmq_setsockopt(z, opt, &v, sizeof v); }

net_sock *net_sock_new(net_loop *nl, int ztype, const char *name, net_msg_cb cb, void *ud, err *e)
{
    if (nl->nsocks >= NET_MAX_SOCKS) {
        err_set(e, GTRT_ENET, "too many sockets");
        return NULL;
    }
    net_sock *s = calloc(1, sizeof *s);
    if (!s) {
        err_set(e, GTRT_ENOMEM, "out of memory");
        return NULL;
    }
    s->loop = nl;
    s->ztype = ztype;
    s->name = name;
    s->cb = cb;
    s->ud = ud;
    s->z = zmq_socket(nl->zctx, ztype);
    if (!s->z) {
        err_set(e, GTRT_ENET, "zmq_socket: %s", zmq_strerror(zmq_errno()));
        free(s);
        return NULL;
    }
    net_setopt_int(s->z, ZMQ_LINGER, nl->linger_ms);
    int64_t maxsz = nl->max_msg_bytes;
    zmq_setsockopt(s->z, ZMQ_MAXMSGSIZE, &maxsz, sizeof maxsz);
    if (ztype == ZMQ_ROUTER)
        net_setopt_int(s->z, ZMQ_ROUTER_MANDATORY, 1); /* unroutable: error, not silence */
    if (ztype == ZMQ_DEALER)
        net_setopt_int(s->z, ZMQ_IMMEDIATE, 1); /* don't queue for absent peers */
    if (ztype == ZMQ_SUB)
        zmq_setsockopt(s->z, ZMQ_SUBSCRIBE, "", 0); /* every announcement */
    int fd;
    size_t fdlen = sizeof fd;
    zmq_getsockopt(s->z, ZMQ_FD, &fd, &fdlen);
    uv_poll_init(nl->uv, &s->poll, fd);
    s->poll.data = s;
    uv_poll_start(&s->poll, UV_READABLE, net_poll_cb);
    nl->socks[nl->nsocks++] = s;
    return s;
}

/* CURVE server options go on before zmq_bind; the ZAP handler must be
 * bound before the first server socket is, or ZeroMQ lets everyone in. */
static int net_sock_secure_server(net_sock *s, err *e)
{
    net_loop *nl = s->loop;
    int rc = 0;
    if (!nl->zap)
        rc = security_zap_new(nl->zctx, nl->sec, &nl->zap, e);
    return rc ? rc : security_server(s->z, nl->zap, s->name, e);
}

int net_sock_bind(net_sock *s, const char *endpoint, err *e)
{
    int rc = security_check_bind(s->loop->sec, endpoint, e);
    if (!rc && security_on(s->loop->sec))
        rc = net_sock_secure_server(s, e);
    if (rc) {
        err_prefix(e, "%s socket", s->name);
        return rc;
    }
    if (zmq_bind(s->z, endpoint))
        return err_set(e, GTRT_ENET, "%s socket: cannot bind %s: %s", s->name, endpoint,
                       zmq_strerror(zmq_errno()));
    return 0;
}

int net_sock_connect(net_sock *s, const char *endpoint, err *e)
{
    int rc = security_client(s->z, s->loop->sec, endpoint, e);
    if (rc) {
        err_prefix(e, "%s socket", s->name);
        return rc;
    }
    if (zmq_connect(s->z, endpoint))
        return err_set(e, GTRT_ENET, "%s socket: cannot connect to %s: %s", s->name, endpoint,
                       zmq_strerror(zmq_errno()));
    return 0;
}

/* ==== sending ==== */

static int net_send_frame(void *z, const void *data, size_t len, int flags)
{
    return zmq_send(z, data, len, flags | ZMQ_DONTWAIT) < 0 ? -1 : 0;
}

/* Send header + an already packed body + payload frames. */
static int net_send_frames(net_sock *s, const net_route *to, uint32_t type, const wire_encoded *enc,
                           const uint8_t *body, size_t body_len, const wire_slice *payload,
                           size_t npayload)
{
    bool router = s->ztype == ZMQ_ROUTER;
    assert(!router || (to && to->len > 0));
    /* Only the first frame can fail for lack of room: once it is queued,
     * ZeroMQ takes the rest of the multipart message. */
    int rc = router ? net_send_frame(s->z, to->id, to->len, ZMQ_SNDMORE) : 0;
    if (rc == 0)
        rc = net_send_frame(s->z, enc->hdr, enc->hdr_len, ZMQ_SNDMORE);
    if (rc == 0)
        rc = net_send_frame(s->z, body, body_len, npayload ? ZMQ_SNDMORE : 0);
    for (size_t i = 0; rc == 0 && i < npayload; i++)
        rc = net_send_frame(s->z, payload[i].data, payload[i].len,
                            i + 1 < npayload ? ZMQ_SNDMORE : 0);
    if (rc) {
        s->stats.tx_dropped++;
        log_debug("%s socket: %s not sent: %s", s->name, wire_type_name(type),
                  zmq_strerror(zmq_errno()));
        return GTRT_ENET;
    }
    s->stats.tx++;
    return 0;
}

int net_send(net_sock *s, const net_route *to, uint32_t type, const ProtobufCMessage *body,
             uint64_t request_id, const wire_slice *payload, size_t npayload)
{
    if (s->closing)
        return GTRT_ESTATE;
    net_loop *nl = s->loop;
    wire_encoded enc;
    if (wire_encode(nl->role, nl->sender_id, type, request_id, body, npayload, &enc)) {
        s->stats.tx_dropped++;
        return GTRT_ENOMEM;
    }
    int rc = net_send_frames(s, to, type, &enc, enc.body, enc.body_len, payload, npayload);
    wire_encoded_clear(&enc);
    return rc;
}

int net_send_packed(net_sock *s, const net_route *to, uint32_t type, const uint8_t *body,
                    size_t body_len, uint64_t request_id, const wire_slice *payload,
                    size_t npayload)
{
    if (s->closing)
        return GTRT_ESTATE;
    wire_encoded enc;
    if (wire_encode_header(s->loop->role, s->loop->sender_id, type, request_id, npayload, &enc)) {
        s->stats.tx_dropped++;
        return GTRT_ENOMEM;
    }
    int rc = net_send_frames(s, to, type, &enc, body, body_len, payload, npayload);
    wire_encoded_clear(&enc);
    return rc;
}
