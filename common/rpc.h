/* Request/reply client over a DEALER socket with timeout and retry
 * ("Lazy Pirate", ZeroMQ guide ch. 4), for tools and for services that
 * call another service synchronously.
 *
 * Each request carries a fresh request id; a reply is accepted only when it
 * echoes that id, so late answers to an earlier attempt are dropped. After a
 * timeout the socket is closed and reopened (a DEALER that lost its peer may
 * hold stale messages) and the request is sent again, up to `retries`
 * attempts in all. Replies are decoded with wire_decode like everything else
 * that comes from the network. */
#ifndef GTRT_RPC_H
#define GTRT_RPC_H

#include "common/net.h"

typedef struct rpc_client {
    void *zctx;
    void *z;
    char endpoint[256];
    uint32_t role;
    char id[WIRE_MAX_ID_LEN + 1];
    int timeout_ms, retries;
    int64_t max_msg_bytes;
    uint64_t next_request_id;
    uint64_t rejected; /* bad replies dropped */
    const security *sec; /* CURVE client keys for every socket opened; NULL: plaintext */
} rpc_client;

/* A reply; its frames stay alive until rpc_reply_clear. */
typedef struct rpc_reply {
    net_frames frames;
    wire_msg msg;
} rpc_reply;

/* Every socket is made a CURVE client with `sec` (see security_client;
 * NULL or no server key: plaintext). `sec` must outlive the client: a
 * retry opens a new socket. */
int rpc_client_init(rpc_client *c, void *zctx, const char *endpoint, uint32_t role,
                    const char *id, int timeout_ms, int retries, int64_t max_msg_bytes,
                    const security *sec, err *e);
void rpc_client_deinit(rpc_client *c);

/* Send `body` as message `type` and wait for the matching reply. A reply of
 * type MSG_ERROR becomes GTRT_EPROTO with the peer's message in `e`. */
int rpc_call(rpc_client *c, uint32_t type, const ProtobufCMessage *body, rpc_reply *out, err *e);
/* The same with raw payload frames after the body (images ...), and any
 * reply that echoes the request id returned as it came, MSG_ERROR
 * included, so the caller can act on the error's code (e.g. ask another
 * service). */
int rpc_call_frames(rpc_client *c, uint32_t type, const ProtobufCMessage *body,
                    const wire_slice *payload, size_t npayload, rpc_reply *out, err *e);
void rpc_reply_clear(rpc_reply *r);

#endif
