/* Lazy Pirate request/reply client (see rpc.h). */
#include "common/rpc.h"

#include <stdio.h>
#include <string.h>

#include "common/clock.h"

static int rpc_open(rpc_client *c, err *e)
{
    c->z = zmq_socket(c->zctx, ZMQ_DEALER);
    if (!c->z)
        return err_set(e, GTRT_ENET, "zmq_socket: %s", zmq_strerror(zmq_errno()));
    int zero = 0;
    zmq_setsockopt(c->z, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(c->z, ZMQ_MAXMSGSIZE, &c->max_msg_bytes, sizeof c->max_msg_bytes);
    int rc = security_client(c->z, c->sec, c->endpoint, e);
    if (rc || zmq_connect(c->z, c->endpoint)) {
        if (!rc)
            rc = err_set(e, GTRT_ENET, "cannot connect to %s: %s", c->endpoint,
                         zmq_strerror(zmq_errno()));
        zmq_close(c->z);
        c->z = NULL;
        return rc;
    }
    return 0;
}

int rpc_client_init(rpc_client *c, void *zctx, const char *endpoint, uint32_t role,
                    const char *id, int timeout_ms, int retries, int64_t max_msg_bytes,
                    const security *sec, err *e)
{
    memset(c, 0, sizeof *c);
    c->zctx = zctx;
    c->sec = sec;
    snprintf(c->endpoint, sizeof c->endpoint, "%s", endpoint);
    c->role = role;
    snprintf(c->id, sizeof c->id, "%s", id);
    c->timeout_ms = timeout_ms;
    c->retries = retries < 1 ? 1 : retries;
    c->max_msg_bytes = max_msg_bytes;
    /* Start ids from the clock so two runs of a tool never collide. */
    c->next_request_id = clock_unix_ms() << 16;
    return rpc_open(c, e);
}

void rpc_client_deinit(rpc_client *c)
{
    if (c->z)
        zmq_close(c->z);
    c->z = NULL;
}

static int rpc_send(rpc_client *c, uint32_t type, const ProtobufCMessage *body,
                    const wire_slice *payload, size_t npayload, uint64_t rid)
{
    wire_encoded enc;
    if (wire_encode(c->role, c->id, type, rid, body, npayload, &enc))
        return GTRT_ENOMEM;
    int rc = 0;
    if (zmq_send(c->z, enc.hdr, enc.hdr_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(c->z, enc.body, enc.body_len, (npayload ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT) < 0)
        rc = GTRT_ENET;
    /* Once the first frame is queued the rest of the message is too. */
    for (size_t i = 0; !rc && i < npayload; i++)
        if (zmq_send(c->z, payload[i].data, payload[i].len,
                     (i + 1 < npayload ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT) < 0)
            rc = GTRT_ENET;
    wire_encoded_clear(&enc);
    return rc;
}

/* Wait until `deadline` for a valid reply to request `rid`. Returns 1 with
 * the reply in `out`, 0 on timeout. */
static int rpc_wait(rpc_client *c, uint64_t rid, uint64_t deadline, rpc_reply *out)
{
    for (;;) {
        uint64_t now = clock_mono_ms();
        if (now >= deadline)
            return 0;
        zmq_pollitem_t it = {.socket = c->z, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, (long)(deadline - now)) <= 0)
            continue;
        while (net_frames_recv(c->z, &out->frames) == 1) {
            net_route from;
            wire_reject r = net_frames_decode(&out->frames, false, &from, &out->msg);
            if (r == WIRE_OK && out->msg.hdr->has_request_id && out->msg.hdr->request_id == rid)
                return 1;
            if (r != WIRE_OK)
                c->rejected++;
            wire_msg_clear(&out->msg);
            net_frames_clear(&out->frames);
        }
    }
}

int rpc_call_frames(rpc_client *c, uint32_t type, const ProtobufCMessage *body,
                    const wire_slice *payload, size_t npayload, rpc_reply *out, err *e)
{
    memset(out, 0, sizeof *out);
    for (int attempt = 1; attempt <= c->retries; attempt++) {
        if (!c->z && rpc_open(c, e))
            return e ? e->code : GTRT_ENET;
        uint64_t rid = ++c->next_request_id;
        if (rpc_send(c, type, body, payload, npayload, rid) == 0 &&
            rpc_wait(c, rid, clock_mono_ms() + (uint64_t)c->timeout_ms, out))
            return 0;
        /* No answer: start over on a fresh socket. */
        rpc_client_deinit(c);
    }
    return err_set(e, GTRT_ETIMEOUT, "no answer from %s after %d attempt%s of %d ms", c->endpoint,
                   c->retries, c->retries == 1 ? "" : "s", c->timeout_ms);
}

int rpc_call(rpc_client *c, uint32_t type, const ProtobufCMessage *body, rpc_reply *out, err *e)
{
    int rc = rpc_call_frames(c, type, body, NULL, 0, out, e);
    if (rc || out->msg.type != GTRT__MSG_TYPE__MSG_ERROR)
        return rc;
    const Gtrt__Error *er = (const Gtrt__Error *)out->msg.body;
    rc = err_set(e, GTRT_EPROTO, "%s answered with an error: %s", c->endpoint,
                 er->message ? er->message : "(no message)");
    rpc_reply_clear(out);
    return rc;
}

void rpc_reply_clear(rpc_reply *r)
{
    wire_msg_clear(&r->msg);
    net_frames_clear(&r->frames);
}
