/* CURVE end to end with real processes: `gtrt keygen` writes private key
 * pairs and never overwrites; a learner, a teacher and an actor with keys
 * train together (the actor fetches checkpoints and its episodes are
 * learned from); on every bound socket (learner ROUTER and PUB, teacher
 * ROUTER, actor status) an allowed key gets answers while a key not in the
 * allow-list, a CURVE client without keys and a plaintext client get
 * nothing, each counted (auth_refused, gtrt_auth_refused_total) and logged;
 * and without keys a learner refuses a non-loopback bind unless
 * security.insecure is set. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/clock.h"
#include "common/security.h"
#include "common/status.h"
#include "common/wire.h"

extern char **environ;

static char dir[64];
static bool passed; /* the test body ran to its end: its directory may go */
static pid_t kids[8];
static int nkids;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/gtrt-curve-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

/* Kill what is left (a failed assertion) and remove the directory. */
static void cleanup(void)
{
    for (int i = 0; i < nkids; i++)
        if (kids[i] > 0 && kill(kids[i], SIGKILL) == 0)
            waitpid(kids[i], NULL, 0);
    nkids = 0;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (passed && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    passed = false;
}

/* Run `gtrt args...` to completion, stdout+stderr into dir/out.txt; exit code. */
static int run(const char *args)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "cd %s && %s %s > out.txt 2>&1", dir, GTRT_BIN_PATH, args);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static char *slurp(const char *name)
{
    static char buf[1 << 17];
    char path[160];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = 0;
    return buf;
}

static int count_lines_with(const char *name, const char *needle)
{
    int n = 0;
    for (const char *p = slurp(name); (p = strstr(p, needle)); p++)
        n++;
    return n;
}

/* Start `gtrt role` with the --set values in `sets` (NULL-terminated),
 * stderr into dir/<log>. */
static pid_t start(const char *role, const char *log, const char **sets)
{
    const char *argv[64];
    int n = 0;
    argv[n++] = GTRT_BIN_PATH;
    argv[n++] = role;
    for (int i = 0; sets[i] && n < 60; i++) {
        argv[n++] = "--set";
        argv[n++] = sets[i];
    }
    argv[n] = NULL;
    char path[160];
    snprintf(path, sizeof path, "%s/%s", dir, log);
    /* fork + exec rather than posix_spawn: the child asks to be killed when
     * the test process dies, so a test stopped by its timeout leaves no
     * service running. */
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_geq(fd, 0);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int null = open("/dev/null", O_WRONLY);
        dup2(fd, 2);
        dup2(null, 1);
        execv(GTRT_BIN_PATH, (char **)argv);
        _exit(127);
    }
    close(fd);
    cr_assert_gt(pid, 0);
    kids[nkids++] = pid;
    return pid;
}

/* SIGTERM and wait (bounded); the exit status. */
static int stop(pid_t pid)
{
    for (int i = 0; i < nkids; i++)
        if (kids[i] == pid)
            kids[i] = 0;
    kill(pid, SIGTERM);
    int status = -1;
    for (int i = 0; i < 200; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        sleep_ms(50);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

/* ==== keygen ==== */

Test(curve, keygen_writes_private_pairs_and_never_overwrites, .init = make_dir, .fini = cleanup)
{
    cr_assert_eq(run("keygen --out keys server actor-0"), 0, "%s", slurp("out.txt"));
    const char *names[] = {"server", "actor-0"};
    for (int i = 0; i < 2; i++) {
        char path[160];
        struct stat st;
        snprintf(path, sizeof path, "%s/keys/%s.key", dir, names[i]);
        cr_assert_eq(stat(path, &st), 0);
        cr_expect_eq(st.st_mode & 0777, 0600, "%s has mode %o", path, st.st_mode & 0777);
        security_key k;
        err e = {0};
        cr_expect_eq(security_key_read(path, &k, &e), 0, "%s", e.msg);
        cr_expect(k.has_secret);
        snprintf(path, sizeof path, "%s/keys/%s.pub", dir, names[i]);
        cr_assert_eq(stat(path, &st), 0);
        cr_expect_eq(st.st_size, 41, "%s: one line of a 40-character key", path);
        cr_expect_eq(st.st_mode & 0077, st.st_mode & 0044, "a .pub holds nothing secret");
        security_key p;
        cr_expect_eq(security_key_read(path, &p, &e), 0, "%s", e.msg);
        cr_expect_str_eq(p.pub_z85, k.pub_z85);
    }
    char before[300];
    int blen = snprintf(before, sizeof before, "%s", slurp("keys/server.key"));
    cr_assert(blen > 0 && blen < (int)sizeof before, "server.key is %d bytes", blen);
    /* an existing name: refused, nothing written (not even the new name) */
    cr_expect_eq(run("keygen --out keys new-one server"), 1);
    cr_expect(strstr(slurp("out.txt"), "refusing to overwrite") != NULL, "%s", slurp("out.txt"));
    cr_expect_str_eq(slurp("keys/server.key"), before);
    char path[160];
    snprintf(path, sizeof path, "%s/keys/new-one.key", dir);
    cr_expect_neq(access(path, F_OK), 0);
    cr_expect_eq(run("keygen --out keys ../escape"), 1);
    cr_expect_eq(run("keygen"), 2);
    passed = true;
}

/* ==== a learner on a non-loopback address without keys ==== */

Test(curve, plaintext_learner_refuses_wildcard_bind_unless_insecure, .init = make_dir,
     .fini = cleanup, .timeout = 60)
{
    int port = 30000 + (int)(getpid() % 20000);
    char args[1024];
    snprintf(args, sizeof args,
             "learner --set learner.bind=tcp://0.0.0.0:%d --set learner.publish_bind=ipc://pub "
             "--set metrics.prometheus_bind= --set run.out_dir=runs --set model.preset=tiny "
             "--set env.name=numberline",
             port);
    cr_expect_eq(run(args), 1);
    const char *out = slurp("out.txt");
    char want[128];
    snprintf(want, sizeof want, "refusing to bind tcp://0.0.0.0:%d without CURVE keys", port);
    cr_expect(strstr(out, want) != NULL, "%s", out);
    cr_expect(strstr(out, "security.insecure=true") != NULL, "%s", out);
    cr_expect(strstr(out, "gtrt keygen") != NULL, "%s", out);

    char bind[64], ppub[200], out_dir[200];
    snprintf(bind, sizeof bind, "learner.bind=tcp://0.0.0.0:%d", port);
    snprintf(ppub, sizeof ppub, "learner.publish_bind=ipc://%s/pub", dir);
    snprintf(out_dir, sizeof out_dir, "run.out_dir=%s/runs", dir);
    const char *sets[] = {bind, ppub, "metrics.prometheus_bind=", out_dir,
                          "model.preset=tiny", "env.name=numberline", "security.insecure=true",
                          NULL};
    pid_t l = start("learner", "learner.log", sets);
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", port);
    cJSON *st = NULL;
    for (int i = 0; i < 100 && !st; i++) {
        err e = {0};
        if (status_fetch(ep, 300, 1, 1 << 20, NULL, &st, &e))
            sleep_ms(100);
    }
    cr_expect_not_null(st, "an insecure learner did not answer; %s", slurp("learner.log"));
    cJSON_Delete(st);
    cr_expect_eq(stop(l), 0);
    cr_expect(strstr(slurp("learner.log"), "security.insecure = true") != NULL,
              "no warning: %s", slurp("learner.log"));
    passed = true;
}

/* ==== a secured system ==== */

typedef enum { PROBE_ALLOWED, PROBE_WRONG_KEY, PROBE_NO_KEY, PROBE_PLAIN } probe_kind;
static const char *probe_names[] = {"an allowed key", "a key not in the allow-list",
                                    "a CURVE client without keys", "a plaintext client"};

typedef struct sys {
    char learner[128], pub[128], teacher[128], actor[128];
    security *ops, *evil;
    int prom_port;
} sys;

static sys S;

static const char *key(const char *name)
{
    static char path[4][160];
    static int k;
    char *p = path[k++ % 4];
    snprintf(p, 160, "%s/keys/%s", dir, name);
    return p;
}

/* Set a client socket up as `kind` says. */
static void probe_socket(void *z, probe_kind kind, const char *ep)
{
    err e = {0};
    int zero = 0, send_ms = 1000;
    zmq_setsockopt(z, ZMQ_LINGER, &zero, sizeof zero);
    /* A refused handshake can drop the connection before the request is
     * queued; a DEALER with no connection then blocks in send forever. */
    zmq_setsockopt(z, ZMQ_SNDTIMEO, &send_ms, sizeof send_ms);
    if (kind == PROBE_ALLOWED || kind == PROBE_WRONG_KEY)
        cr_assert_eq(security_client(z, kind == PROBE_ALLOWED ? S.ops : S.evil, ep, &e), 0);
    else if (kind == PROBE_NO_KEY)
        zmq_setsockopt(z, ZMQ_CURVE_SERVERKEY, S.ops->server.pub, SECURITY_KEY_BYTES);
    cr_assert_eq(zmq_connect(z, ep), 0);
}

/* Ask a ROUTER for its status as `kind`; 1 when any answer came within
 * `ms`. */
static int probe_router(const char *ep, probe_kind kind, int ms)
{
    void *ctx = zmq_ctx_new();
    void *z = zmq_socket(ctx, ZMQ_DEALER);
    probe_socket(z, kind, ep);
    Gtrt__StatusRequest req = GTRT__STATUS_REQUEST__INIT;
    wire_encoded enc;
    cr_assert_eq(wire_encode(GTRT__ROLE__ROLE_CLIENT, "probe", GTRT__MSG_TYPE__MSG_STATUS_REQUEST,
                             1, &req.base, 0, &enc), 0);
    zmq_send(z, enc.hdr, enc.hdr_len, ZMQ_SNDMORE);
    zmq_send(z, enc.body, enc.body_len, 0);
    wire_encoded_clear(&enc);
    zmq_pollitem_t it = {.socket = z, .events = ZMQ_POLLIN};
    int got = zmq_poll(&it, 1, ms) == 1;
    zmq_close(z);
    zmq_ctx_term(ctx);
    return got;
}

/* Subscribe to the announcements as `kind`; 1 when one came within `ms`. */
static int probe_pub(const char *ep, probe_kind kind, int ms)
{
    void *ctx = zmq_ctx_new();
    void *z = zmq_socket(ctx, ZMQ_SUB);
    zmq_setsockopt(z, ZMQ_SUBSCRIBE, "", 0);
    probe_socket(z, kind, ep);
    zmq_pollitem_t it = {.socket = z, .events = ZMQ_POLLIN};
    int got = zmq_poll(&it, 1, ms) == 1;
    zmq_close(z);
    zmq_ctx_term(ctx);
    return got;
}

static cJSON *status_of(const char *ep)
{
    cJSON *st = NULL;
    err e = {0};
    status_fetch(ep, 1000, 1, 1 << 22, S.ops, &st, &e);
    return st;
}

static double num(const cJSON *o, const char *a, const char *b)
{
    const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(o, a), b);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* A counter of the service at `status_ep`, -1 when it does not answer. */
static double counter_of(const char *status_ep, const char *name)
{
    cJSON *st = status_of(status_ep);
    double v = st ? num(st, "counters", name) : -1;
    cJSON_Delete(st);
    return v;
}

/* Wait (bounded) until `name` at `ep` is above `v`; its last value. */
static double counter_above(const char *ep, const char *name, double v, int max_ms)
{
    double now = counter_of(ep, name);
    /* A deadline on the clock: each query may itself wait its timeout. */
    uint64_t end = clock_mono_ms() + (uint64_t)max_ms;
    while (now <= v && clock_mono_ms() < end) {
        sleep_ms(100);
        now = counter_of(ep, name);
    }
    return now;
}

/* gtrt_auth_refused_total from the learner's Prometheus endpoint. */
static double prom_refused(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)S.prom_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    static char buf[1 << 16];
    size_t n = 0;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
        const char *req = "GET /metrics HTTP/1.0\r\n\r\n";
        if (write(fd, req, strlen(req)) > 0) {
            ssize_t r;
            while (n < sizeof buf - 1 && (r = read(fd, buf + n, sizeof buf - 1 - n)) > 0)
                n += (size_t)r;
        }
    }
    close(fd);
    buf[n] = 0;
    const char *p = strstr(buf, "\ngtrt_auth_refused_total ");
    return p ? atof(p + strlen("\ngtrt_auth_refused_total ")) : -1;
}

static void sys_keys(void)
{
    cr_assert_eq(run("keygen --out keys server teacher actor ops evil"), 0, "%s", slurp("out.txt"));
    char cmd[256];
    snprintf(cmd, sizeof cmd, "cd %s && cat keys/teacher.pub keys/actor.pub keys/ops.pub > allow",
             dir);
    cr_assert_eq(system(cmd), 0);
    err e = {0};
    cr_assert_eq(security_load_files(key("server.pub"), key("ops.key"), NULL, false, &S.ops, &e),
                 0, "%s", e.msg);
    cr_assert_eq(security_load_files(key("server.pub"), key("evil.key"), NULL, false, &S.evil, &e),
                 0, "%s", e.msg);
}

/* Learner, teacher and actor, each with its own client key, on ipc. */
static void sys_start(void)
{
    snprintf(S.learner, sizeof S.learner, "ipc://%s/learner", dir);
    snprintf(S.pub, sizeof S.pub, "ipc://%s/pub", dir);
    snprintf(S.teacher, sizeof S.teacher, "ipc://%s/teacher", dir);
    snprintf(S.actor, sizeof S.actor, "ipc://%s/actor", dir);
    static char s[12][200];
    snprintf(s[0], 200, "learner.bind=%s", S.learner);
    snprintf(s[1], 200, "learner.connect=%s", S.learner);
    snprintf(s[2], 200, "learner.publish_bind=%s", S.pub);
    snprintf(s[3], 200, "learner.publish_connect=%s", S.pub);
    snprintf(s[4], 200, "teacher.bind=%s", S.teacher);
    snprintf(s[5], 200, "actor.status_bind=%s", S.actor);
    snprintf(s[6], 200, "security.server_key=%s", key("server.key"));
    snprintf(s[7], 200, "security.allow=%s/allow", dir);
    snprintf(s[10], 200, "run.out_dir=%s/runs", dir);
    const char *common[] = {s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7],
                            "net.heartbeat_ms=100", "model.preset=tiny", "env.name=numberline",
                            s[10], "ppo.num_steps=32", "ppo.minibatch=16",
                            "ppo.epochs=1", "ppo.updates=0", "actor.envs=4",
                            "metrics.prometheus_bind=127.0.0.1:0", NULL, NULL};
    int last = sizeof common / sizeof *common - 2;
    start("learner", "learner.log", common);
    snprintf(s[8], 200, "security.client_key=%s", key("teacher.key"));
    common[last] = s[8];
    start("teacher", "teacher.log", common);
    snprintf(s[9], 200, "security.client_key=%s", key("actor.key"));
    common[last] = s[9];
    start("actor", "actor.log", common);
}

/* Until the learner has learned from the actor's episodes and the actor
 * plays a checkpoint newer than the first: every path worked. */
static int sys_trained(void)
{
    for (uint64_t end = clock_mono_ms() + 60000; clock_mono_ms() < end;) {
        cJSON *l = status_of(S.learner), *a = status_of(S.actor), *te = status_of(S.teacher);
        int ok = l && a && te && num(l, "counters", "policy_version") >= 1 &&
                 num(l, "counters", "steps_received") > 0 && num(a, "self", "model_version") >= 1;
        cJSON_Delete(l);
        cJSON_Delete(a);
        cJSON_Delete(te);
        if (ok)
            return 1;
        sleep_ms(200);
    }
    return 0;
}

static void sys_prom_port(void)
{
    const char *log = slurp("learner.log"), *p = strstr(log, "Prometheus endpoint on");
    p = p ? strstr(p, ", port ") : NULL;
    S.prom_port = p ? atoi(p + strlen(", port ")) : 0;
    cr_assert_gt(S.prom_port, 0, "no Prometheus port in the learner log:\n%s", log);
}

/* Every kind of client against one socket: only the allowed key gets an
 * answer, every other attempt is counted by the service that owns it. */
static void sys_probe(const char *what, const char *ep, const char *status_ep, int is_pub)
{
    for (int k = PROBE_ALLOWED; k <= PROBE_PLAIN; k++) {
        double before = counter_of(status_ep, "auth_refused");
        cr_assert_geq(before, 0, "%s stopped answering", status_ep);
        int wait_ms = k == PROBE_ALLOWED ? 5000 : 400;
        int got = is_pub ? probe_pub(ep, k, wait_ms) : probe_router(ep, k, wait_ms);
        if (k == PROBE_ALLOWED) {
            cr_expect(got, "%s: %s got no answer", what, probe_names[k]);
            continue;
        }
        cr_expect_not(got, "%s: %s got an answer", what, probe_names[k]);
        cr_expect_gt(counter_above(status_ep, "auth_refused", before, 5000), before,
                     "%s: %s was not counted", what, probe_names[k]);
    }
}

Test(curve, keyed_system_trains_and_refuses_strangers_everywhere, .init = make_dir,
     .fini = cleanup, .timeout = 480)
{
    sys_keys();
    sys_start();
    cr_assert(sys_trained(), "the keyed system did not train; logs in %s:\n%s", dir,
              slurp("learner.log"));
    sys_prom_port();
    cr_expect_eq(counter_of(S.learner, "auth_refused"), 0, "refusals among friends");

    sys_probe("learner ROUTER", S.learner, S.learner, 0);
    sys_probe("learner PUB", S.pub, S.learner, 1);
    sys_probe("teacher ROUTER", S.teacher, S.teacher, 0);
    sys_probe("actor status", S.actor, S.actor, 0);

    /* counted in Prometheus too (exported on the learner's heartbeat) */
    double refused = counter_of(S.learner, "auth_refused");
    double prom = -1;
    for (uint64_t end = clock_mono_ms() + 5000; prom < refused && clock_mono_ms() < end;) {
        sleep_ms(100);
        prom = prom_refused();
    }
    cr_expect_geq(prom, refused, "gtrt_auth_refused_total %.0f, status says %.0f", prom, refused);
    /* and logged, with the refused key where ZAP saw one */
    security_key evil;
    err e = {0};
    cr_assert_eq(security_key_read(key("evil.pub"), &evil, &e), 0);
    cr_expect_gt(count_lines_with("learner.log", evil.pub_z85), 0, "%s", slurp("learner.log"));
    cr_expect_gt(count_lines_with("learner.log", "plaintext"), 0);
    cr_expect_gt(count_lines_with("teacher.log", "refused a connection"), 0);
    cr_expect_gt(count_lines_with("actor.log", "refused a connection"), 0);

    /* the allowed members were never disturbed, and all stop cleanly */
    cJSON *st = status_of(S.learner);
    cr_assert_not_null(st);
    int alive = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(st, "peers"))
        alive += cJSON_IsTrue(cJSON_GetObjectItem(p, "alive"));
    cr_expect_eq(alive, 2, "actor and teacher alive");
    cJSON_Delete(st);
    for (int i = nkids - 1; i >= 0; i--)
        if (kids[i] > 0)
            cr_expect_eq(stop(kids[i]), 0, "a service did not stop cleanly; logs in %s", dir);
    security_free(S.ops);
    security_free(S.evil);
    passed = true;
}
