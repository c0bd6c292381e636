/* `gtrt status`: query a service and print its membership table. */
#include "common/status.h"

#include <string.h>
#include <unistd.h>

#include "common/cli.h"
#include "common/rpc.h"

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
    return st;
}

int status_fetch(const char *endpoint, int timeout_ms, int retries, int64_t max_msg_bytes,
                 cJSON **out, err *e)
{
    *out = NULL;
    void *zctx = zmq_ctx_new();
    if (!zctx)
        return err_set(e, GTRT_ENET, "zmq_ctx_new failed");
    char id[WIRE_MAX_ID_LEN + 1];
    snprintf(id, sizeof id, "status-%ld", (long)getpid());
    rpc_client c;
    int rc = rpc_client_init(&c, zctx, endpoint, GTRT__ROLE__ROLE_CLIENT, id, timeout_ms, retries,
                             max_msg_bytes, e);
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
}

int status_main(int argc, char **argv)
{
    static const cli_cmd cmd = {
        "status", "", "Show which actors and teachers are alive.",
        "Asks the learner (default: learner.connect) or, with --teacher, a teacher for\n"
        "its membership table: ids, roles, state, uptime, versions and message counters\n"
        "(including bad messages dropped). Exit code 1 when the service does not answer."};
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
    cJSON *st;
    err e = {0};
    rc = status_fetch(ep, tmo, (int)config_int(cfg, "net.request_retries"),
                      config_int(cfg, "net.max_msg_bytes"), &st, &e);
    config_free(cfg);
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
