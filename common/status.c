/* `gtrt status`: query a service and print its membership table. */
#include "common/status.h"

#include <string.h>
#include <unistd.h>

#include "common/cli.h"
#include "common/rpc.h"
#include "common/security.h"

static const char *status_role_name(int role)
{
    static const char *names[] = {"unknown", "learner", "actor", "teacher", "client"};
    return role >= 0 && role <= 4 ? names[role] : "unknown";
}

static cJSON *status_info_json(const Gtrt__PeerInfo *p)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", p->id ? p->id : "");
    cJSON_AddStringToObject(o, "role", status_role_name(p->has_role ? (int)p->role : 0));
    cJSON_AddStringToObject(o, "version", p->software_version ? p->software_version : "");
    cJSON_AddNumberToObject(o, "model_version", (double)p->model_version);
    cJSON_AddStringToObject(o, "host", p->host ? p->host : "");
    cJSON_AddNumberToObject(o, "pid", p->pid);
    cJSON_AddNumberToObject(o, "uptime_ms", (double)p->uptime_ms);
    cJSON_AddStringToObject(o, "endpoint", p->endpoint ? p->endpoint : "");
    return o;
}

static cJSON *status_reply_json(const char *endpoint, const Gtrt__StatusReply *r)
{
    Gtrt__PeerInfo none = GTRT__PEER_INFO__INIT;
    cJSON *st = cJSON_CreateObject();
    cJSON_AddStringToObject(st, "endpoint", endpoint);
    cJSON_AddItemToObject(st, "self", status_info_json(r->self ? r->self : &none));
    cJSON *peers = cJSON_AddArrayToObject(st, "peers");
    for (size_t i = 0; i < r->n_peers; i++) {
        const Gtrt__PeerStatus *ps = r->peers[i];
        cJSON *o = status_info_json(ps->info ? ps->info : &none);
        cJSON_AddBoolToObject(o, "alive", ps->alive);
        cJSON_AddNumberToObject(o, "last_seen_ms_ago", (double)ps->last_seen_ms_ago);
        cJSON_AddItemToArray(peers, o);
    }
    cJSON *counters = cJSON_AddObjectToObject(st, "counters");
    for (size_t i = 0; i < r->n_counters; i++)
        if (r->counters[i]->name)
            cJSON_AddNumberToObject(counters, r->counters[i]->name, (double)r->counters[i]->value);
    cJSON *labels = cJSON_AddObjectToObject(st, "labels");
    for (size_t i = 0; i < r->n_labels; i++)
        if (r->labels[i]->name && r->labels[i]->value)
            cJSON_AddStringToObject(labels, r->labels[i]->name, r->labels[i]->value);
    return st;
}

int status_fetch(const char *endpoint, int timeout_ms, int retries, int64_t max_msg_bytes,
                 const security *sec, cJSON **out, err *e)
{
    *out = NULL;
    void *zctx = zmq_ctx_new();
    if (!zctx)
        return err_set(e, GTRT_ENET, "zmq_ctx_new failed");
    char id[WIRE_MAX_ID_LEN + 1];
    snprintf(id, sizeof id, "status-%ld", (long)getpid());
    rpc_client c;
    int rc = rpc_client_init(&c, zctx, endpoint, GTRT__ROLE__ROLE_CLIENT, id, timeout_ms,
                                    retries, max_msg_bytes, sec, e);
    if (rc == 0) {
        Gtrt__StatusRequest req = GTRT__STATUS_REQUEST__INIT;
        rpc_reply rep;
        rc = rpc_call(&c, GTRT__MSG_TYPE__MSG_STATUS_REQUEST, &req.base, &rep, e);
        if (rc == 0 && rep.msg.type != GTRT__MSG_TYPE__MSG_STATUS_REPLY)
            rc = err_set(e, GTRT_EPROTO, "%s answered a status request with %s", endpoint,
                         wire_type_name(rep.msg.type));
        else if (rc == 0)
            *out = status_reply_json(endpoint, (const Gtrt__StatusReply *)rep.msg.body);
        if (rc == 0 || rep.frames.n)
            rpc_reply_clear(&rep);
        rpc_client_deinit(&c);
    }
    zmq_ctx_term(zctx);
    return rc;
}

static double status_num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static const char *status_str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

int status_count_alive(const cJSON *st, const char *role)
{
    int n = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(st, "peers"))
        n += cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "alive")) &&
             !strcmp(status_str(p, "role"), role);
    return n;
}

static void status_print_row(FILE *f, const cJSON *p, const char *state, const char *seen)
{
    char hostpid[96];
    snprintf(hostpid, sizeof hostpid, "%s/%.0f", status_str(p, "host"), status_num(p, "pid"));
    fprintf(f, "%-8s %-28s %-6s %9.1fs %10s %-8s %5.0f  %-22s %s\n", status_str(p, "role"),
            status_str(p, "id"), state, status_num(p, "uptime_ms") / 1000.0, seen,
            status_str(p, "version"), status_num(p, "model_version"), hostpid,
            status_str(p, "endpoint"));
}

/* One teacher's merge and service figures (its own status object). */
static void status_print_teacher(FILE *f, const cJSON *t)
{
    const cJSON *self = cJSON_GetObjectItemCaseSensitive(t, "self");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(t, "counters");
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(t, "labels");
    const char *why = status_str(t, "error");
    if (why[0]) {
        fprintf(f, "teacher %s: no status (%s)\n", status_str(t, "id"), why);
        return;
    }
    if (status_num(c, "has_model") == 0)
        fprintf(f, "teacher %s: no model yet (waiting for the base checkpoint)",
                status_str(self, "id"));
    else
        fprintf(f, "teacher %s: merged v%.0f (%s/%s, %.0f checkpoints, %.0f pending, %.0f refused)",
                status_str(self, "id"), status_num(c, "teacher_version"),
                status_str(l, "merge_method"), status_str(l, "merge_combine"),
                status_num(c, "ckpts_merged"), status_num(c, "ckpts_pending"),
                status_num(c, "ckpts_refused"));
    fprintf(f, "\n  queue %.0f requests (%.0f seqs)%s; served %.0f logits + %.0f generate, "
               "%.2f/s recently\n",
            status_num(c, "queue_requests"), status_num(c, "queue_seqs"),
            status_num(c, "batch_running") ? ", a batch running" : "",
            status_num(c, "requests_logits"), status_num(c, "requests_generate"),
            status_num(c, "recent_per_s_x1000") / 1000.0);
    fprintf(f, "  errors %.0f (bad request %.0f, version %.0f, busy %.0f, failed %.0f); "
               "latency p50 %.1f ms, p99 %.1f ms over the last %.0f\n",
            status_num(c, "errors"), status_num(c, "errors_bad_request"),
            status_num(c, "errors_version"), status_num(c, "errors_busy"),
            status_num(c, "errors_compute"), status_num(c, "latency_p50_us") / 1000.0,
            status_num(c, "latency_p99_us") / 1000.0, status_num(c, "recent_requests"));
}

void status_print(FILE *f, const cJSON *st)
{
    const cJSON *self = cJSON_GetObjectItemCaseSensitive(st, "self");
    fprintf(f, "%-8s %-28s %-6s %10s %10s %-8s %5s  %-22s %s\n", "ROLE", "ID", "STATE", "UPTIME",
            "LAST SEEN", "VERSION", "MODEL", "HOST/PID", "ENDPOINT");
    status_print_row(f, self, "alive", "now");
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(st, "peers"))
    {
        char seen[32];
        snprintf(seen, sizeof seen, "%.1fs ago", status_num(p, "last_seen_ms_ago") / 1000.0);
        bool alive = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "alive"));
        status_print_row(f, p, alive ? "alive" : "gone", seen);
    }
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(st, "counters");
    fprintf(f, "%d actor(s) and %d teacher(s) alive; messages received %.0f, bad dropped %.0f\n",
            status_count_alive(st, "actor"), status_count_alive(st, "teacher"),
            status_num(c, "rx"), status_num(c, "bad_total"));
    if (status_num(c, "auth_refused") > 0) /* CURVE: clients whose key was not allowed */
        fprintf(f, "connections refused (CURVE / allow-list): %.0f\n", status_num(c, "auth_refused"));
    if (!strcmp(status_str(self, "role"), "teacher"))
        status_print_teacher(f, st);
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(st, "teachers"))
        status_print_teacher(f, p);
}

/* Ask every alive teacher the learner lists for its own status, into
 * st["teachers"] (an error entry for one that does not answer). */
static void status_add_teachers(cJSON *st, int timeout_ms, int64_t max_msg_bytes,
                                const security *sec)
{
    cJSON *arr = cJSON_AddArrayToObject(st, "teachers");
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(st, "peers"))
    {
        if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(p, "alive")) ||
            strcmp(status_str(p, "role"), "teacher") || !status_str(p, "endpoint")[0])
            continue;
        cJSON *t = NULL;
        err e = {0};
        if (status_fetch(status_str(p, "endpoint"), timeout_ms, 1, max_msg_bytes, sec, &t,
                                &e)) {
            t = cJSON_CreateObject();
            cJSON_AddStringToObject(t, "id", status_str(p, "id"));
            cJSON_AddStringToObject(t, "endpoint", status_str(p, "endpoint"));
            cJSON_AddStringToObject(t, "error", e.msg);
        }
        cJSON_AddItemToArray(arr, t);
    }
}

int status_main(int argc, char **argv)
{
    static const cli_cmd cmd = {
        "status", "", "Show which actors and teachers are alive.",
        "Asks the learner (default: learner.connect) or, with --teacher, a teacher for\n"
        "its membership table: ids, roles, state, uptime, versions and message counters\n"
        "(including bad messages dropped), then asks every alive teacher for its merged\n"
        "version, merge method, queue, requests, errors and latency. Exit code 1 when the\n"
        "service does not answer."};
    const char *learner_ep = NULL, *teacher_ep = NULL;
    int json = 0;
    long timeout_ms = -1;
    cli_opt opts[] = {
        {"learner", CLI_STR, &learner_ep, "ENDPOINT", "learner to ask (default learner.connect)"},
        {"teacher", CLI_STR, &teacher_ep, "ENDPOINT", "ask this teacher instead"},
        {"json", CLI_FLAG, &json, NULL, "print JSON instead of a table"},
        {"timeout-ms", CLI_INT, &timeout_ms, "MS", "per-attempt timeout (default net.request_timeout_ms)"},
        {0},
    };
    cli_common common;
    int rc = cli_parse(argc, argv, &cmd, opts, &common, NULL, NULL, 0);
    if (rc)
        return rc > 0 ? 0 : 2;
    config *cfg = cli_config(&common);
    if (!cfg)
        return 2;
    const char *ep = teacher_ep ? teacher_ep : learner_ep ? learner_ep : config_str(cfg, "learner.connect");
    int tmo = timeout_ms > 0 ? (int)timeout_ms : (int)config_int(cfg, "net.request_timeout_ms");
    cJSON *st = NULL;
    err e = {0};
    int64_t max_msg = config_int(cfg, "net.max_msg_bytes");
    security *sec = NULL;
    rc = security_load(cfg, &sec, &e);
    if (!rc)
        rc = status_fetch(ep, tmo, (int)config_int(cfg, "net.request_retries"), max_msg,
                                 sec, &st, &e);
    config_free(cfg);
    if (rc == 0 && !teacher_ep)
        status_add_teachers(st, tmo, max_msg, sec);
    security_free(sec);
    if (rc) {
        fprintf(stderr, "gtrt status: %s\n", e.msg);
        return 1;
    }
    if (json) {
        char *s = cJSON_PrintUnformatted(st);
        printf("%s\n", s);
        cJSON_free(s);
    } else {
        status_print(stdout, st);
    }
    cJSON_Delete(st);
    return 0;
}
