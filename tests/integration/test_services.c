/* Learner, teacher and two actors as real processes on loopback: they find
 * each other in any start order, `gtrt status --json` shows them, a
 * SIGKILLed actor is marked gone, garbage sent to every bound socket is
 * counted and dropped while the services keep answering, and SIGTERM stops
 * everything with exit code 0. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/wire.h"

extern char **environ;

typedef struct it_ctx {
    char dir[64];
    char learner_ep[128], teacher_ep[128];
    char sets[12][160];
} it_ctx;

static it_ctx it;

/* Every child started, so a failed assertion does not leave them running. */
static pid_t it_children[16];
static int it_nchildren;

static void kill_children(void)
{
    for (int i = 0; i < it_nchildren; i++)
        if (it_children[i] > 0 && kill(it_children[i], SIGKILL) == 0)
            waitpid(it_children[i], NULL, 0);
    it_nchildren = 0;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static pid_t start(const char *role, const char *id_key, const char *id)
{
    char idset[128], logpath[160];
    snprintf(idset, sizeof idset, "%s=%s", id_key, id);
    snprintf(logpath, sizeof logpath, "%s/%s.log", it.dir, id);
    const char *argv[40];
    int n = 0;
    argv[n++] = GTRT_BIN_PATH;
    argv[n++] = role;
    for (int i = 0; i < 12; i++) {
        argv[n++] = "--set";
        argv[n++] = it.sets[i];
    }
    argv[n++] = "--set";
    argv[n++] = idset;
    argv[n] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, logpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int rc = posix_spawn(&pid, GTRT_BIN_PATH, &fa, NULL, (char **)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "cannot start %s", role);
    if (it_nchildren < 16)
        it_children[it_nchildren++] = pid;
    return pid;
}

/* `gtrt status --json` against `ep`; NULL when it does not answer. */
static cJSON *status_json(const char *ep)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s status --json --timeout-ms 500 --set net.request_retries=2 --learner %s 2>/dev/null",
             GTRT_BIN_PATH, ep);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = 0;
    int rc = pclose(p);
    if (rc != 0)
        return NULL;
    return cJSON_Parse(buf);
}

static const cJSON *find_peer(const cJSON *st, const char *id)
{
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(st, "peers"))
        if (!strcmp(cJSON_GetObjectItem(p, "id")->valuestring, id))
            return p;
    return NULL;
}

static int peer_alive(const cJSON *st, const char *id)
{
    const cJSON *p = find_peer(st, id);
    return p ? cJSON_IsTrue(cJSON_GetObjectItem(p, "alive")) : -1;
}

static double counter(const cJSON *st, const char *name)
{
    const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(st, "counters"), name);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* Wait (bounded, so a bug fails instead of hanging) until pred holds. */
typedef int (*pred_fn)(const cJSON *st);
static cJSON *wait_for(const char *ep, pred_fn pred, int max_ms)
{
    for (int waited = 0; waited < max_ms; waited += 100) {
        cJSON *st = status_json(ep);
        if (st && pred(st))
            return st;
        cJSON_Delete(st);
        sleep_ms(100);
    }
    return NULL;
}

static int all_registered(const cJSON *st)
{
    return peer_alive(st, "actor-a") == 1 && peer_alive(st, "actor-b") == 1 &&
           peer_alive(st, "teacher-t") == 1;
}

static int actor_b_gone(const cJSON *st) { return peer_alive(st, "actor-b") == 0; }
static int answers(const cJSON *st) { return st != NULL; }

/* ==== garbage ==== */

static void send_frames(void *s, const void *const *data, const size_t *len, int n)
{
    for (int i = 0; i < n; i++)
        zmq_send(s, data[i], len[i], i + 1 < n ? ZMQ_SNDMORE : 0);
}

static size_t header_bytes(uint8_t *buf, uint32_t version, uint32_t type, const char *sender)
{
    Gtrt__Header h = GTRT__HEADER__INIT;
    h.has_schema_version = 1;
    h.schema_version = version;
    h.has_role = 1;
    h.role = GTRT__ROLE__ROLE_ACTOR;
    h.sender_id = (char *)sender;
    h.has_type = 1;
    h.type = (Gtrt__MsgType)type;
    return gtrt__header__pack(&h, buf);
}

/* Not ZeroMQ at all: raw bytes on an ipc endpoint. */
static void junk_raw(const char *ep)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", ep + strlen("ipc://"));
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
        const char *http = "GET / HTTP/1.0\r\n\r\n\xff\xff\xff\xff garbage";
        ssize_t w = write(fd, http, strlen(http));
        (void)w;
        sleep_ms(50);
    }
    close(fd);
}

/* The PUB socket takes no messages; junk it at the transport level and with
 * a peer of the wrong socket type. */
static void junk_publisher(const char *ep)
{
    junk_raw(ep);
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_connect(s, ep);
    zmq_send(s, "junk", 4, ZMQ_DONTWAIT);
    sleep_ms(50);
    zmq_close(s);
    zmq_ctx_term(ctx);
}

/* Send one of each kind of bad message, then a flood, to `ep`. Returns how
 * many bad messages the service should count. The sending socket stays open
 * in *ctx_out until garbage_close: ZeroMQ discards what a peer has not read
 * yet when the sender disconnects, and the test wants an exact count. */
static int send_garbage(const char *ep, void **ctx_out, void **sock_out)
{
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int linger = -1; /* deliver everything before zmq_ctx_term returns */
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    cr_assert_eq(zmq_connect(s, ep), 0);
    int counted = 0;
    uint8_t junk[64];
    for (int i = 0; i < 64; i++)
        junk[i] = (uint8_t)(i * 37 + 11);
    uint8_t hdr[256];
    size_t hl;
    /* garbage single frame */
    zmq_send(s, junk, sizeof junk, 0);
    counted++;
    /* truncated protobuf header */
    hl = header_bytes(hdr, WIRE_SCHEMA_VERSION, GTRT__MSG_TYPE__MSG_HEARTBEAT, "evil-1");
    send_frames(s, (const void *[]){hdr, junk}, (size_t[]){hl - 4, 0}, 2);
    counted++;
    /* wrong schema version */
    hl = header_bytes(hdr, 99, GTRT__MSG_TYPE__MSG_HEARTBEAT, "evil-1");
    send_frames(s, (const void *[]){hdr, junk}, (size_t[]){hl, 0}, 2);
    counted++;
    /* unknown message type */
    hl = header_bytes(hdr, WIRE_SCHEMA_VERSION, 777, "evil-1");
    send_frames(s, (const void *[]){hdr, junk}, (size_t[]){hl, 0}, 2);
    counted++;
    /* body that is not a Heartbeat */
    hl = header_bytes(hdr, WIRE_SCHEMA_VERSION, GTRT__MSG_TYPE__MSG_HEARTBEAT, "evil-1");
    uint8_t badbody[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    send_frames(s, (const void *[]){hdr, badbody}, (size_t[]){hl, sizeof badbody}, 2);
    counted++;
    /* oversized body for its type (heartbeats are capped at 256 KiB) */
    size_t big = 300 << 10;
    uint8_t *bigbuf = calloc(1, big);
    send_frames(s, (const void *[]){hdr, bigbuf}, (size_t[]){hl, big}, 2);
    counted++;
    /* a flood of garbage */
    for (int i = 0; i < 2000; i++) {
        junk[0] = (uint8_t)i;
        zmq_send(s, junk, 1 + (size_t)(i % 63), 0);
    }
    counted += 2000;
    *ctx_out = ctx;
    *sock_out = s;
    /* A frame over net.max_msg_bytes: ZeroMQ cuts that connection off. */
    void *s2 = zmq_socket(ctx, ZMQ_DEALER);
    zmq_setsockopt(s2, ZMQ_LINGER, &linger, sizeof linger);
    zmq_connect(s2, ep);
    size_t huge = 3 << 20;
    uint8_t *hugebuf = calloc(1, huge);
    zmq_send(s2, hugebuf, huge, 0);
    zmq_close(s2);
    free(bigbuf);
    free(hugebuf);
    junk_raw(ep);
    return counted;
}

static void garbage_close(void *ctx, void *s)
{
    zmq_close(s);
    zmq_ctx_term(ctx);
}

static int expected_bad;
static int garbage_counted(const cJSON *st) { return counter(st, "bad_total") >= expected_bad; }

static void assert_counted(const cJSON *st, const char *ep)
{
    if (st)
        return;
    cJSON *last = status_json(ep);
    char *txt = last ? cJSON_PrintUnformatted(cJSON_GetObjectItem(last, "counters")) : NULL;
    cr_assert_fail("%s stopped answering or did not count the garbage (%d expected): %s", ep,
                   expected_bad, txt ? txt : "no answer");
}

static void forget_child(pid_t pid)
{
    for (int i = 0; i < it_nchildren; i++)
        if (it_children[i] == pid)
            it_children[i] = 0;
}

static void stop(pid_t pid, const char *name)
{
    forget_child(pid);
    kill(pid, SIGTERM);
    int status = 0;
    for (int i = 0; i < 200; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "%s did not exit 0 on SIGTERM (status %d); log in %s", name, status, it.dir);
            return;
        }
        sleep_ms(50);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    cr_assert_fail("%s did not stop within 10 s of SIGTERM", name);
}

Test(services, find_each_other_survive_garbage_and_stop_cleanly, .timeout = 180,
     .fini = kill_children)
{
    snprintf(it.dir, sizeof it.dir, "/tmp/gtrt-it-XXXXXX");
    cr_assert_not_null(mkdtemp(it.dir));
    snprintf(it.learner_ep, sizeof it.learner_ep, "ipc://%s/learner", it.dir);
    snprintf(it.teacher_ep, sizeof it.teacher_ep, "ipc://%s/teacher", it.dir);
    snprintf(it.sets[0], sizeof it.sets[0], "net.heartbeat_ms=100");
    snprintf(it.sets[1], sizeof it.sets[1], "learner.bind=%s", it.learner_ep);
    snprintf(it.sets[2], sizeof it.sets[2], "learner.connect=%s", it.learner_ep);
    snprintf(it.sets[3], sizeof it.sets[3], "teacher.bind=%s", it.teacher_ep);
    snprintf(it.sets[4], sizeof it.sets[4], "net.max_msg_bytes=1048576");
    snprintf(it.sets[5], sizeof it.sets[5], "log.level=info");
    snprintf(it.sets[6], sizeof it.sets[6], "learner.publish_bind=ipc://%s/publish", it.dir);
    snprintf(it.sets[7], sizeof it.sets[7], "learner.publish_connect=ipc://%s/publish", it.dir);
    snprintf(it.sets[8], sizeof it.sets[8], "run.out_dir=%s/runs", it.dir);
    snprintf(it.sets[9], sizeof it.sets[9], "metrics.prometheus_bind=");
    /* a tiny policy on NumberLine: the services really train, quickly */
    snprintf(it.sets[10], sizeof it.sets[10], "model.preset=tiny");
    snprintf(it.sets[11], sizeof it.sets[11], "env.name=numberline");

    /* Start order: a teacher and an actor before the learner exists. */
    pid_t teacher = start("teacher", "teacher.id", "teacher-t");
    pid_t actor_a = start("actor", "actor.id", "actor-a");
    sleep_ms(300);
    pid_t learner = start("learner", "learner.id", "learner-l");
    cJSON *st = wait_for(it.learner_ep, answers, 20000);
    cr_assert_not_null(st, "learner never answered; logs in %s", it.dir);
    cJSON_Delete(st);
    pid_t actor_b = start("actor", "actor.id", "actor-b"); /* joins later */

    st = wait_for(it.learner_ep, all_registered, 20000);
    cr_assert_not_null(st, "not every service registered; logs in %s", it.dir);
    cr_expect_str_eq(cJSON_GetObjectItem(cJSON_GetObjectItem(st, "self"), "id")->valuestring,
                     "learner-l");
    const cJSON *t = find_peer(st, "teacher-t");
    cr_expect_str_eq(cJSON_GetObjectItem(t, "role")->valuestring, "teacher");
    cr_expect_str_eq(cJSON_GetObjectItem(t, "version")->valuestring, GTRT_VERSION);
    cr_expect_str_eq(cJSON_GetObjectItem(t, "endpoint")->valuestring, it.teacher_ep);
    cr_expect_gt(cJSON_GetObjectItem(t, "uptime_ms")->valuedouble, 0);
    cr_expect_eq(counter(st, "bad_total"), 0);
    cJSON_Delete(st);

    /* SIGKILL: no goodbye, only silence tells. */
    kill(actor_b, SIGKILL);
    waitpid(actor_b, NULL, 0);
    forget_child(actor_b);
    st = wait_for(it.learner_ep, actor_b_gone, 10000);
    cr_assert_not_null(st, "killed actor never marked gone");
    cr_expect_eq(peer_alive(st, "actor-a"), 1);
    cJSON_Delete(st);

    /* Garbage at every bound socket. */
    void *gctx, *gsock;
    expected_bad = send_garbage(it.learner_ep, &gctx, &gsock);
    st = wait_for(it.learner_ep, garbage_counted, 20000);
    assert_counted(st, it.learner_ep);
    garbage_close(gctx, gsock);
    cr_expect_gt(counter(st, "bad_header"), 0);
    cr_expect_gt(counter(st, "bad_version"), 0);
    cr_expect_gt(counter(st, "unknown_type"), 0);
    cr_expect_gt(counter(st, "oversized_body"), 0);
    cr_expect_gt(counter(st, "bad_body"), 0);
    cr_expect_gt(counter(st, "bad_frames"), 0);
    cJSON_Delete(st);
    expected_bad = send_garbage(it.teacher_ep, &gctx, &gsock);
    st = wait_for(it.teacher_ep, garbage_counted, 20000);
    assert_counted(st, it.teacher_ep);
    garbage_close(gctx, gsock);
    cJSON_Delete(st);
    char pub_ep[128];
    snprintf(pub_ep, sizeof pub_ep, "ipc://%s/publish", it.dir);
    junk_publisher(pub_ep);
    /* Still serving: the surviving members are alive after the garbage. */
    sleep_ms(500);
    st = status_json(it.learner_ep);
    cr_assert_not_null(st);
    cr_expect_eq(peer_alive(st, "actor-a"), 1);
    cr_expect_eq(peer_alive(st, "teacher-t"), 1);
    cJSON_Delete(st);

    stop(actor_a, "actor-a");
    stop(teacher, "teacher-t");
    stop(learner, "learner-l");
}

Test(services, up_runs_sft_training_and_eval_then_stops, .timeout = 300)
{
    /* tcp on loopback, on ports unlikely to clash with a developer's run */
    int base = 20000 + (int)(getpid() % 20000);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s up --set up.hold_s=0.5 --set net.heartbeat_ms=100 "
             "--set learner.bind=tcp://127.0.0.1:%d --set learner.connect=tcp://127.0.0.1:%d "
             "--set teacher.bind=tcp://127.0.0.1:%d --set learner.publish_bind=tcp://127.0.0.1:%d "
             "--set learner.publish_connect=tcp://127.0.0.1:%d --set model.preset=tiny "
             "--set env.name=numberline --set run.out_dir=/tmp/gtrt-up-%d "
             "--set metrics.prometheus_bind= --set ppo.updates=2 --set ppo.num_steps=32 "
             "--set sft.steps=20 --set sft.samples=256 --set sft.eval_episodes=0 "
             "--set up.eval_episodes=8 2>/dev/null",
             GTRT_BIN_PATH, base, base, base + 1, base + 2, base + 2, (int)getpid());
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    static char out[1 << 16];
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    int rc = pclose(p);
    cr_expect(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "gtrt up failed:\n%s", out);
    cr_expect(strstr(out, "2 actor(s) and 1 teacher(s) alive") != NULL, "table missing:\n%s", out);
    /* the whole run: warm start, two updates, the final evaluation */
    cr_expect(strstr(out, "success") != NULL, "no final evaluation:\n%s", out);
    cr_expect(strstr(out, "run directory:") != NULL, "no summary:\n%s", out);
}
