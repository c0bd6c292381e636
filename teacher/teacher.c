/* Teacher service (see teacher.h). */
#include "teacher/teacher.h"

#include <stdio.h>
#include <string.h>

#include "common/cli.h"

static void teacher_on_rpc(net_sock *sock, const net_route *from, const wire_msg *msg, void *ud)
{
    teacher *t = ud;
    uint64_t rid = msg->hdr->has_request_id ? msg->hdr->request_id : 0;
    if (msg->type == GTRT__MSG_TYPE__MSG_STATUS_REQUEST) {
        svc_counters extra = {0};
        svc_counters_add(&extra, "learner_alive", t->m.learner_alive);
        svc_reply_status(&t->s, sock, from, rid, NULL, &extra);
        return;
    }
    svc_unexpected(sock, msg);
    if (rid)
        svc_reply_error(sock, from, rid, GTRT_EPROTO, "teacher does not serve this request");
}

static void teacher_on_beat(svc *s) { member_beat(&((teacher *)s)->m); }
static void teacher_on_stop(svc *s) { member_bye(&((teacher *)s)->m, "shutdown"); }

/* The endpoint clients should use: teacher.advertise, else the bound
 * address with a wildcard host replaced by this host's name. */
static void teacher_advertise(teacher *t, const char *configured)
{
    if (configured[0]) {
        snprintf(t->s.endpoint, sizeof t->s.endpoint, "%s", configured);
        return;
    }
    char last[256] = "";
    size_t len = sizeof last;
    zmq_getsockopt(t->router->z, ZMQ_LAST_ENDPOINT, last, &len);
    const char *wild = strstr(last, "://0.0.0.0:");
    if (wild)
        snprintf(t->s.endpoint, sizeof t->s.endpoint, "%.*s://%s:%s", (int)(wild - last), last,
                 t->s.host, wild + strlen("://0.0.0.0:"));
    else
        snprintf(t->s.endpoint, sizeof t->s.endpoint, "%s", last);
}

int teacher_init(teacher *t, const config *cfg, err *e)
{
    int rc = svc_init(&t->s, cfg, GTRT__ROLE__ROLE_TEACHER, "teacher", config_str(cfg, "teacher.id"), e);
    if (rc)
        return rc;
    t->s.on_beat = teacher_on_beat;
    t->s.on_stop = teacher_on_stop;
    t->router = net_sock_new(&t->s.net, ZMQ_ROUTER, "rpc", teacher_on_rpc, t, e);
    if (!t->router)
        return e ? e->code : GTRT_ENET;
    const char *bind = config_str(cfg, "teacher.bind");
    if ((rc = net_sock_bind(t->router, bind, e)))
        return rc;
    teacher_advertise(t, config_str(cfg, "teacher.advertise"));
    log_info("serving on %s (advertised as %s)", bind, t->s.endpoint);
    return member_init(&t->m, &t->s, config_str(cfg, "learner.connect"), NULL, NULL, e);
}

int teacher_main(int argc, char **argv)
{
    static const cli_cmd cmd = {
        "teacher", "", "Run a teacher: follows the learner and serves queries.",
        "Binds teacher.bind for remote queries, registers with the learner at\n"
        "learner.connect (in any start order) and heartbeats. Stops cleanly on\n"
        "SIGINT or SIGTERM (exit code 0)."};
    cli_common common;
    int rc = cli_parse(argc, argv, &cmd, NULL, &common, NULL, NULL, 0);
    if (rc)
        return rc > 0 ? 0 : 2;
    config *cfg = cli_config(&common);
    if (!cfg)
        return 2;
    teacher t = {0};
    err e = {0};
    if (teacher_init(&t, cfg, &e)) {
        log_error("%s", e.msg);
        svc_abort(&t.s);
        config_free(cfg);
        return 1;
    }
    rc = svc_run(&t.s);
    config_free(cfg);
    return rc;
}
