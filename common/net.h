/* ZeroMQ sockets inside a libuv loop.
 *
 * A ZeroMQ socket's ZMQ_FD is edge-triggered: it signals that *something*
 * changed, not that a message is waiting, and it will not signal again
 * until ZMQ_EVENTS has been read. So a socket is drained until ZMQ_EVENTS
 * shows no POLLIN, on every poll event and again right before the loop
 * blocks (a uv_prepare handle), because a send on any socket can leave
 * messages readable without the fd ever firing. A drain handles at most
 * NET_DRAIN_BUDGET messages per socket and then yields to timers (an idle
 * handle keeps the loop from blocking meanwhile), so a flood cannot starve
 * heartbeats.
 *
 * Every inbound message is decoded with wire_decode; a bad one is counted
 * by reason, logged (rate-limited) and dropped before any callback sees it.
 *
 * Security (common/security.h) is applied here, for every socket of the
 * loop: with CURVE configured, a bound socket is a CURVE server answered by
 * the loop's ZAP handler and a connecting one a CURVE client; without it, a
 * socket may bind only a local endpoint unless security.insecure is set. */
#ifndef GTRT_NET_H
#define GTRT_NET_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>
#include <zmq.h>

#include "common/err.h"
#include "common/log.h"
#include "common/security.h"
#include "common/wire.h"

#define NET_MAX_SOCKS 16
#define NET_DRAIN_BUDGET 256
#define NET_ROUTE_MAX 255

/* A ROUTER routing id: who to answer. len == 0 on non-ROUTER sockets. */
typedef struct net_route {
    uint8_t id[NET_ROUTE_MAX];
    uint8_t len;
} net_route;

typedef struct net_stats {
    uint64_t rx;          /* valid messages delivered */
    uint64_t tx;          /* messages sent */
    uint64_t tx_dropped;  /* sends refused (peer unknown, queue full, ...) */
    uint64_t unexpected;  /* valid messages of a type this socket doesn't take */
    uint64_t rejected[WIRE_REJ_COUNT];
} net_stats;

typedef struct net_loop net_loop;
typedef struct net_sock net_sock;

/* Called for each valid message; `msg` and `from` live only during the call. */
typedef void (*net_msg_cb)(net_sock *s, const net_route *from, const wire_msg *msg, void *ud);

struct net_sock {
    net_loop *loop;
    void *z;          /* the ZeroMQ socket; NULL once closed */
    int ztype;
    const char *name; /* for logs: "router", "learner", ... */
    uv_poll_t poll;
    net_msg_cb cb;
    void *ud;
    net_stats stats;
    bool closing;
};

struct net_loop {
    uv_loop_t *uv;
    void *zctx;
    uv_prepare_t prepare;
    uv_idle_t idle;
    net_sock *socks[NET_MAX_SOCKS];
    int nsocks;
    uint32_t role;
    char sender_id[WIRE_MAX_ID_LEN + 1];
    int64_t max_msg_bytes;
    int linger_ms;
    log_ratelimit bad_log;
    bool idle_active;
    const security *sec; /* NULL: plaintext, local binds only */
    security_zap *zap;   /* started by the first CURVE server socket */
};

/* Set up the ZeroMQ context and loop handles. role/sender_id go into the
 * header of every message sent. */
int net_loop_init(net_loop *nl, uv_loop_t *uv, uint32_t role, const char *sender_id,
                  int64_t max_msg_bytes, int linger_ms, err *e);
/* Close every socket and handle and terminate the context. The uv loop must
 * be run afterwards (uv_run) to let the close callbacks finish. */
void net_loop_close(net_loop *nl);
/* Secure every socket bound or connected from now on with `sec` (owned by
 * the caller; it must outlive the loop). */
void net_loop_set_security(net_loop *nl, const security *sec);
/* Connections this loop's server sockets refused (CURVE / allow-list). */
uint64_t net_loop_auth_refused(const net_loop *nl);

/* New socket of ZeroMQ type `ztype` (ZMQ_ROUTER, ZMQ_DEALER, ZMQ_PUB, ...).
 * The net_loop owns it; it is freed by net_sock_close or net_loop_close. */
net_sock *net_sock_new(net_loop *nl, int ztype, const char *name, net_msg_cb cb, void *ud, err *e);
/* Bind / connect, applying the loop's security first (see above). */
int net_sock_bind(net_sock *s, const char *endpoint, err *e);
int net_sock_connect(net_sock *s, const char *endpoint, err *e);
void net_sock_close(net_sock *s);

/* Send one message. `to` is required on ROUTER sockets and ignored on others.
 * Never blocks: a message that cannot be queued is dropped, counted in
 * tx_dropped, and GTRT_ENET is returned. */
int net_send(net_sock *s, const net_route *to, uint32_t type, const ProtobufCMessage *body,
             uint64_t request_id, const wire_slice *payload, size_t npayload);

/* As net_send, with the body already packed (e.g. kept for resending). */
int net_send_packed(net_sock *s, const net_route *to, uint32_t type, const uint8_t *body,
                    size_t body_len, uint64_t request_id, const wire_slice *payload,
                    size_t npayload);

/* Sum of the stats of every socket of the loop. */
void net_loop_stats(const net_loop *nl, net_stats *out);

/* ==== receiving whole multipart messages ==== */

/* Frames of one multipart message, held as ZeroMQ messages. */
typedef struct net_frames {
    zmq_msg_t msgs[WIRE_MAX_FRAMES + 1]; /* +1: a ROUTER's routing id frame */
    wire_slice slices[WIRE_MAX_FRAMES + 1];
    size_t n;
    bool overflow; /* more frames than fit: the message is bad */
} net_frames;

/* Receive one whole multipart message without blocking. Returns 1 when one
 * was received, 0 when none is waiting, GTRT_ENET on a socket error. Frames
 * past the limit are read and discarded (overflow is set). */
int net_frames_recv(void *z, net_frames *f);
void net_frames_clear(net_frames *f);
/* Split off the routing id (ROUTER sockets) and decode. */
wire_reject net_frames_decode(const net_frames *f, bool router, net_route *from, wire_msg *out);

#endif
