/* Teacher service (see teacher.h): the glue between membership, the
 * checkpoint fetchers, the merged weights and the query service. */
#include "teacher/teacher.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "common/clock.h"

/* ==== weights ==== */

/* Swap in new weights when no batch is running (between batches). */
static void teacher_try_swap(teacher *t)
{
    if (t->sv.busy || !follow_swap(&t->fw))
        return;
    follow_serving(&t->fw, &t->s.model_version);
}

static void teacher_on_weights(void *ud) { teacher_try_swap(ud); }
static void teacher_on_idle(void *ud) { teacher_try_swap(ud); }

static model *teacher_model_of(void *ud, uint64_t *version)
{
    return follow_serving(&((teacher *)ud)->fw, version);
}

/* A verified checkpoint from either fetcher. */
static void teacher_on_ckpt(void *ud, uint64_t version, const char *name, uint8_t *data,
                            size_t len)
{
    teacher *t = ud;
    (void)name;
    if (version == 0) { /* whichever fetcher got the base first: the other needs not */
        ckpt_fetcher_have(&t->fetch_base, 0);
        ckpt_fetcher_have(&t->fetch, 0);
    }
    follow_offer(&t->fw, version, data, len);
}

/* ==== status ==== */

static void teacher_status(teacher *t, svc_counters *c)
{
    const follow_stats *fs = &t->fw.st;
    const serve_stats *ss = &t->sv.st;
    uint64_t version = 0;
    bool have = follow_serving(&t->fw, &version) != NULL;
    svc_counters_add(c, "learner_alive", t->m.learner_alive);
    svc_counters_add(c, "has_model", have);
    svc_counters_add(c, "teacher_version", version);
    svc_counters_add(c, "ckpts_fetched", fs->fetched);
    svc_counters_add(c, "ckpts_merged", fs->merged_ckpts);
    svc_counters_add(c, "ckpts_pending", fs->pending);
    svc_counters_add(c, "ckpts_refused", fs->refused);
    svc_counters_add(c, "ckpts_dropped", fs->dropped);
    svc_counters_add(c, "merges", fs->merges);
    svc_counters_add(c, "merge_last_ms", fs->last_merge_ms);
    svc_counters_add(c, "queue_requests", t->sv.q_len);
    svc_counters_add(c, "queue_seqs", (uint64_t)t->sv.q_seqs);
    svc_counters_add(c, "batch_running", t->sv.busy);
    svc_counters_add(c, "requests_logits", ss->logits_served);
    svc_counters_add(c, "requests_generate", ss->generate_served);
    svc_counters_add(c, "seqs_served", ss->seqs);
    svc_counters_add(c, "tokens_served", ss->tokens);
    svc_counters_add(c, "batches", ss->batches);
    svc_counters_add(c, "errors", ss->errors);
    svc_counters_add(c, "errors_bad_request", ss->bad_requests);
    svc_counters_add(c, "errors_version", ss->version_refused);
    svc_counters_add(c, "errors_busy", ss->busy_refused);
    svc_counters_add(c, "errors_compute", ss->compute_failed);
    reqstats_summary rs;
    reqstats_summarise(&t->sv.lat, clock_mono_ms(), &rs);
    svc_counters_add(c, "recent_requests", rs.n);
    svc_counters_add(c, "recent_per_s_x1000", (uint64_t)(rs.per_s * 1000.0 + 0.5));
    svc_counters_add(c, "latency_p50_us", rs.p50_us);
    svc_counters_add(c, "latency_p99_us", rs.p99_us);
    svc_counters_add(c, "latency_max_us", rs.max_us);
    svc_counters_label(c, "merge_method", merge_method_name(t->fw.opts.method));
    svc_counters_label(c, "merge_combine", merge_combine_name(t->fw.opts.combine));
}

/* ==== requests ==== */

static void teacher_on_rpc(net_sock *sock, const net_route *from, const wire_msg *msg, void *ud)
{
    teacher *t = ud;
    uint64_t rid = msg->hdr->has_request_id ? msg->hdr->request_id : 0;
    switch (msg->type) {
    case GTRT__MSG_TYPE__MSG_STATUS_REQUEST: {
        svc_counters extra = {0};
        teacher_status(t, &extra);
        svc_reply_status(&t->s, sock, from, rid, NULL, &extra);
        return;
    }
    case GTRT__MSG_TYPE__MSG_LOGITS_REQUEST:
    case GTRT__MSG_TYPE__MSG_GENERATE_REQUEST:
        serve_on_request(&t->sv, from, msg);
        return;
    default:
        svc_unexpected(sock, msg);
        serve_refuse(&t->sv, from, msg, GTRT_EPROTO, "teacher does not serve this request");
    }
}

/* ==== life cycle ==== */

static void teacher_on_beat(svc *s) { member_beat(&((teacher *)s)->m); }

static void teacher_on_stop(svc *s)
{
    teacher *t = (teacher *)s;
    member_bye(&t->m, "shutdown");
    if (t->fetchers_up) {
        ckpt_fetcher_close(&t->fetch);
        ckpt_fetcher_close(&t->fetch_base);
    }
    serve_close(&t->sv);
    follow_close(&t->fw);
}

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

static int teacher_merge_opts(const config *cfg, merge_opts *o, err *e)
{
    merge_opts_default(o);
    int rc = merge_method_parse(config_str(cfg, "teacher.merge_method"), &o->method, e);
    if (!rc)
        rc = merge_combine_parse(config_str(cfg, "teacher.combine"), &o->combine, e);
    if (rc)
        return err_prefix(e, "teacher.merge_method / teacher.combine");
    o->alpha = config_double(cfg, "teacher.alpha");
    o->density = config_double(cfg, "teacher.density");
    o->lambda = config_double(cfg, "teacher.lambda");
    return merge_opts_check(o, e);
}

static void teacher_serve_config(const config *cfg, serve_config *c)
{
    memset(c, 0, sizeof *c);
    c->max_batch = (int)config_int(cfg, "teacher.max_batch");
    c->max_wait_ms = (uint64_t)config_int(cfg, "teacher.max_wait_ms");
    c->max_queue = (size_t)config_int(cfg, "teacher.max_queue");
    c->lim.max_seqs = (int)config_int(cfg, "teacher.max_seqs");
    c->lim.max_tokens = config_int(cfg, "teacher.max_tokens");
    c->lim.default_max_new = (int)config_int(cfg, "actor.max_new");
    c->lim.gen_temperature = (float)config_double(cfg, "teacher.gen_temperature");
    c->lim.gen_top_k = (int)config_int(cfg, "teacher.gen_top_k");
    c->lim.max_frame_bytes = (size_t)config_int(cfg, "net.max_msg_bytes");
}

static int teacher_fetchers(teacher *t, const config *cfg, err *e)
{
    const char *learner = config_str(cfg, "learner.connect");
    int credit = (int)config_int(cfg, "net.fetch_credit");
    uint64_t tmo = (uint64_t)config_int(cfg, "net.request_timeout_ms");
    uint64_t max = (uint64_t)config_int(cfg, "net.max_checkpoint_bytes");
    int rc = ckpt_fetcher_init(&t->fetch, &t->s.net, learner,
                               config_str(cfg, "learner.publish_connect"), credit, tmo, max,
                               teacher_on_ckpt, t, e);
    if (!rc)
        rc = ckpt_fetcher_init(&t->fetch_base, &t->s.net, learner, NULL, credit, tmo, max,
                               teacher_on_ckpt, t, e);
    t->fetchers_up = true;
    t->m.ckpt = &t->fetch;
    t->m.ckpt_base = &t->fetch_base;
    return rc;
}

int teacher_init(teacher *t, const config *cfg, err *e)
{
    merge_opts mo;
    int rc = teacher_merge_opts(cfg, &mo, e);
    if (rc)
        return rc;
    rc = svc_init(&t->s, cfg, GTRT__ROLE__ROLE_TEACHER, "teacher", config_str(cfg, "teacher.id"), e);
    if (rc)
        return rc;
    t->s.on_beat = teacher_on_beat;
    t->s.on_stop = teacher_on_stop;
    follow_init(&t->fw, &t->s.loop, &mo, (int)config_int(cfg, "teacher.merge_interval"),
                teacher_on_weights, t);
    t->router = net_sock_new(&t->s.net, ZMQ_ROUTER, "rpc", teacher_on_rpc, t, e);
    if (!t->router)
        return e ? e->code : GTRT_ENET;
    serve_config sc;
    teacher_serve_config(cfg, &sc);
    rc = serve_init(&t->sv, &t->s.loop, t->router, &sc, teacher_model_of, teacher_on_idle, t, e);
    if (rc)
        return rc;
    const char *bind = config_str(cfg, "teacher.bind");
    if ((rc = net_sock_bind(t->router, bind, e)))
        return rc;
    teacher_advertise(t, config_str(cfg, "teacher.advertise"));
    log_info("serving on %s (advertised as %s); merging %s/%s every %d checkpoint(s)", bind,
             t->s.endpoint, merge_method_name(mo.method), merge_combine_name(mo.combine),
             t->fw.interval);
    if ((rc = member_init(&t->m, &t->s, config_str(cfg, "learner.connect"), NULL, NULL, e)))
        return rc;
    return teacher_fetchers(t, cfg, e);
}

void teacher_deinit(teacher *t)
{
    serve_deinit(&t->sv);
    follow_deinit(&t->fw);
}

int teacher_main(int argc, char **argv)
{
    static const cli_cmd cmd = {
        "teacher", "", "Run a teacher: merges the learner's checkpoints and serves queries.",
        "Registers with the learner at learner.connect (in any start order), fetches its\n"
        "base checkpoint (version 0) and every new one, and merges them into the teacher\n"
        "(teacher.merge_method sma|ema, teacher.combine ties|linear, every\n"
        "teacher.merge_interval checkpoints; see `gtrt merge --help`). Until the first\n"
        "merge it serves the base.\n"
        "On teacher.bind it answers, from any DEALER client (protocol in teacher/teacher.h):\n"
        "  logits requests   log-probabilities of given answer tokens, the top k, or the\n"
        "                    full distribution, float32 or float16, at any temperature;\n"
        "  generate requests answers written by the merged teacher (temperature\n"
        "                    teacher.gen_temperature, top-k teacher.gen_top_k, seedable);\n"
        "  status requests   merged version, queue, request counts, errors, latency.\n"
        "Requests from many clients are batched: a forward pass runs when\n"
        "teacher.max_batch sequences wait or the oldest has waited teacher.max_wait_ms.\n"
        "Stops cleanly on SIGINT or SIGTERM (exit code 0)."};
    cli_common common;
    int rc = cli_parse(argc, argv, &cmd, NULL, &common, NULL, NULL, 0);
    if (rc)
        return rc > 0 ? 0 : 2;
    config *cfg = cli_config(&common);
    if (!cfg)
        return 2;
    teacher *t = calloc(1, sizeof *t); /* large: the latency ring */
    err e = {0};
    if (!t || teacher_init(t, cfg, &e)) {
        log_error("%s", t ? e.msg : "out of memory");
        if (t) {
            svc_abort(&t->s);
            teacher_deinit(t);
        }
        free(t);
        config_free(cfg);
        return 1;
    }
    rc = svc_run(&t->s);
    teacher_deinit(t);
    free(t);
    config_free(cfg);
    return rc;
}
