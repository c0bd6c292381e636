/* The Lazy Pirate client: answers matched by request id, retries on a fresh
 * socket after a timeout, gives up after the configured attempts, and
 * surfaces Error replies. A thread plays the server. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>

#include "common/rpc.h"

typedef struct server {
    void *ctx;
    char ep[64];
    int ignore_first; /* requests to drop before answering */
    int reply_error;
    int seen;
} server;

static void *server_run(void *arg)
{
    server *sv = arg;
    void *s = zmq_socket(sv->ctx, ZMQ_ROUTER);
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_bind(s, sv->ep);
    for (int answered = 0; !answered;) {
        net_frames f;
        zmq_pollitem_t it = {.socket = s, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, 1000) <= 0) /* the client gave up */
            break;
        if (net_frames_recv(s, &f) != 1)
            continue;
        net_route from;
        wire_msg m;
        if (net_frames_decode(&f, true, &from, &m) == WIRE_OK) {
            sv->seen++;
            if (sv->seen > sv->ignore_first) {
                /* a stale reply with another id first: the client must skip it */
                Gtrt__Error er = GTRT__ERROR__INIT;
                er.message = sv->reply_error ? "no such thing" : "ok";
                uint32_t type = sv->reply_error ? GTRT__MSG_TYPE__MSG_ERROR : GTRT__MSG_TYPE__MSG_BYE;
                Gtrt__Bye bye = GTRT__BYE__INIT;
                bye.reason = "reply";
                const ProtobufCMessage *body = sv->reply_error ? &er.base : &bye.base;
                for (int k = 0; k < 2; k++) {
                    wire_encoded enc;
                    wire_encode(GTRT__ROLE__ROLE_TEACHER, "srv", type,
                                k == 0 ? m.hdr->request_id + 1000 : m.hdr->request_id, body, 0, &enc);
                    zmq_send(s, from.id, from.len, ZMQ_SNDMORE);
                    zmq_send(s, enc.hdr, enc.hdr_len, ZMQ_SNDMORE);
                    zmq_send(s, enc.body, enc.body_len, 0);
                    wire_encoded_clear(&enc);
                }
                answered = 1;
            }
            wire_msg_clear(&m);
        }
        net_frames_clear(&f);
    }
    zmq_close(s);
    return NULL;
}

static void call(server *sv, int retries, int *rc_out, err *e, uint32_t *type_out)
{
    pthread_t th;
    pthread_create(&th, NULL, server_run, sv);
    rpc_client c;
    cr_assert_eq(rpc_client_init(&c, sv->ctx, sv->ep, GTRT__ROLE__ROLE_CLIENT, "cli", 300, retries,
                                 1 << 20, NULL, e),
                 0);
    Gtrt__StatusRequest req = GTRT__STATUS_REQUEST__INIT;
    rpc_reply rep;
    *rc_out = rpc_call(&c, GTRT__MSG_TYPE__MSG_STATUS_REQUEST, &req.base, &rep, e);
    *type_out = *rc_out == 0 ? rep.msg.type : 0;
    if (*rc_out == 0)
        rpc_reply_clear(&rep);
    rpc_client_deinit(&c);
    pthread_join(th, NULL);
}

Test(rpc, retries_after_a_lost_request_and_skips_stale_replies)
{
    server sv = {.ctx = zmq_ctx_new(), .ep = "inproc://rpc1", .ignore_first = 1};
    int rc;
    uint32_t type;
    err e = {0};
    call(&sv, 3, &rc, &e, &type);
    cr_expect_eq(rc, 0, "%s", e.msg);
    cr_expect_eq(type, GTRT__MSG_TYPE__MSG_BYE);
    cr_expect_eq(sv.seen, 2, "expected exactly one retry");
    zmq_ctx_term(sv.ctx);
}

Test(rpc, gives_up_after_the_configured_attempts)
{
    server sv = {.ctx = zmq_ctx_new(), .ep = "inproc://rpc2", .ignore_first = 100};
    int rc;
    uint32_t type;
    err e = {0};
    call(&sv, 2, &rc, &e, &type);
    cr_expect_eq(rc, GTRT_ETIMEOUT);
    cr_expect(strstr(e.msg, "2 attempts") != NULL, "%s", e.msg);
    cr_expect_eq(sv.seen, 2);
    zmq_ctx_term(sv.ctx);
}

Test(rpc, error_replies_become_errors)
{
    server sv = {.ctx = zmq_ctx_new(), .ep = "inproc://rpc3", .reply_error = 1};
    int rc;
    uint32_t type;
    err e = {0};
    call(&sv, 1, &rc, &e, &type);
    cr_expect_eq(rc, GTRT_EPROTO);
    cr_expect(strstr(e.msg, "no such thing") != NULL, "%s", e.msg);
    zmq_ctx_term(sv.ctx);
}
