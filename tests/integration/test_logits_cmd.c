/* `gtrt logits` and the teacher client (common/tclient.h) against a real
 * teacher: a learner (tiny random policy, Points24) and a teacher run as
 * processes on loopback; the test loads the checkpoint the teacher serves
 * (the learner's version 0) and computes the same numbers itself.
 *
 * Checked:
 *   - `gtrt logits --json` prints, for seeded Points24 observations built
 *     here independently (render, quantise to bytes, prompt + <bos>), the
 *     logprobs of a direct model_forward of that checkpoint (1e-5), at
 *     temperature 1 and 0.7, for the oracle's answer and a given one, with
 *     the right ids and kinds; --full rows equal the direct log-softmax,
 *     --topk lists the likeliest ids in order, --f16 stays within float16
 *     rounding;
 *   - with a dead endpoint (nothing listening) before the live one, the
 *     command and the client library still get every answer from the live
 *     teacher (the dead one costs one timeout, then cools down);
 *   - with only dead endpoints the command exits 1 with a message naming
 *     each endpoint, and does not hang (a watchdog far above timeout x
 *     attempts kills it and fails the test);
 *   - a request newer than the teacher (--min-version) and a bad request
 *     (--topk 65) fail with the teacher's reason and exit 1. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "actor/envs/env.h"
#include "common/half.h"
#include "common/model.h"
#include "common/status.h"
#include "common/tclient.h"
#include "common/tokenizer.h"

extern char **environ;

#define NSETS 24
#define WAIT_MS 120000 /* bounded waits: a bug fails instead of hanging */

static struct {
    char dir[64];
    char learner_ep[128], teacher_ep[128], dead_tcp[64], dead_ipc[128];
    char sets[NSETS][200];
    int nsets;
    pid_t children[4];
    int nchildren;
    model *m;
} lt;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void kill_children(void)
{
    for (int i = 0; i < lt.nchildren; i++)
        if (lt.children[i] > 0 && kill(lt.children[i], SIGKILL) == 0)
            waitpid(lt.children[i], NULL, 0);
    lt.nchildren = 0;
    model_free(lt.m);
    lt.m = NULL;
}

static void add_set(const char *fmt, const char *a)
{
    cr_assert_lt(lt.nsets, NSETS);
    snprintf(lt.sets[lt.nsets++], sizeof lt.sets[0], fmt, a);
}

static pid_t spawn_logged(const char *const *argv, const char *out, const char *errpath)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, errpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
    pid_t pid;
    int rc = posix_spawn(&pid, GTRT_BIN_PATH, &fa, NULL, (char **)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "cannot start %s %s", argv[0], argv[1]);
    return pid;
}

static void start(const char *role)
{
    char logpath[160];
    snprintf(logpath, sizeof logpath, "%s/%s.log", lt.dir, role);
    const char *argv[2 * NSETS + 4];
    int n = 0;
    argv[n++] = GTRT_BIN_PATH;
    argv[n++] = role;
    for (int i = 0; i < lt.nsets; i++) {
        argv[n++] = "--set";
        argv[n++] = lt.sets[i];
    }
    argv[n] = NULL;
    lt.children[lt.nchildren++] = spawn_logged(argv, "/dev/null", logpath);
}

/* A TCP port nobody listens on: bound by the kernel's choice, then closed. */
static void dead_tcp_endpoint(char *out, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
              getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    close(fd);
    snprintf(out, cap, "tcp://127.0.0.1:%u", ntohs(a.sin_port));
}

/* Wait until the teacher has a model (the learner's version 0). */
static void wait_teacher(void)
{
    for (int waited = 0; waited < WAIT_MS; waited += 200) {
        cJSON *st = NULL;
        if (status_fetch(lt.teacher_ep, 2000, 1, 1 << 22, NULL, &st, NULL) == 0) {
            const cJSON *c = cJSON_GetObjectItemCaseSensitive(st, "counters");
            const cJSON *h = cJSON_GetObjectItemCaseSensitive(c, "has_model");
            bool have = cJSON_IsNumber(h) && h->valuedouble == 1;
            cJSON_Delete(st);
            if (have)
                return;
        }
        sleep_ms(200);
    }
    cr_assert_fail("the teacher did not get a model; logs in %s", lt.dir);
}

/* ==== running `gtrt logits` ==== */

typedef struct run_out {
    int status; /* exit code, or -1 when it had to be killed */
    char *out, *err;
} run_out;

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot read %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = '\0';
    fclose(f);
    return s;
}

/* `gtrt logits ARGS...` (NULL-terminated); killed after watchdog_ms. */
static run_out run_logits(int watchdog_ms, const char *first, ...)
{
    const char *argv[40];
    int n = 0;
    argv[n++] = GTRT_BIN_PATH;
    argv[n++] = "logits";
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a; a = va_arg(ap, const char *)) {
        cr_assert_lt(n, 38);
        argv[n++] = a;
    }
    va_end(ap);
    argv[n] = NULL;
    char out[160], errp[160];
    snprintf(out, sizeof out, "%s/logits.out", lt.dir);
    snprintf(errp, sizeof errp, "%s/logits.err", lt.dir);
    unlink(errp);
    pid_t pid = spawn_logged(argv, out, errp);
    run_out r = {.status = -1};
    int status = 0;
    for (int waited = 0; waited <= watchdog_ms; waited += 20) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            break;
        }
        sleep_ms(20);
    }
    if (r.status == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    r.out = slurp(out);
    r.err = slurp(errp);
    return r;
}

static void run_free(run_out *r)
{
    free(r->out);
    free(r->err);
}

/* `gtrt logits --teacher <live> --env points24 --seed S --json` plus up to
 * four more arguments (NULL ends them early), as parsed JSON. */
static cJSON *run_json(const char *seed, const char *a, const char *b, const char *c,
                       const char *d)
{
    run_out r = run_logits(WAIT_MS, "--teacher", lt.teacher_ep, "--env", "points24", "--seed",
                           seed, "--json", a, b, c, d, (const char *)NULL);
    cr_assert_eq(r.status, 0, "gtrt logits failed (%d): %s", r.status, r.err);
    cJSON *j = cJSON_Parse(r.out);
    cr_assert_not_null(j, "not JSON: %s", r.out);
    run_free(&r);
    return j;
}

/* ==== the same turn, built here ==== */

typedef struct turn {
    float *image; /* quantised floats */
    int32_t ids[512];
    int n_prompt, n_answer;
    uint8_t kind[256];
} turn;

static void turn_make(uint64_t seed, const char *answer, turn *t)
{
    env *e;
    err er = {0};
    cr_assert_eq(env_new("points24", NULL, &e, &er), 0, "%s", er.msg);
    env_reset(e, seed);
    size_t n = env_image_floats(e);
    t->image = malloc(n * sizeof *t->image);
    env_render(e, t->image);
    for (size_t k = 0; k < n; k++) { /* as the actor: clamp, byte, back to float */
        float x = fminf(fmaxf(t->image[k], 0.0f), 1.0f);
        t->image[k] = (float)(uint8_t)lrintf(x * 255.0f) / 255.0f;
    }
    char prompt[ENV_TEXT_MAX], oracle[ENV_TEXT_MAX];
    env_prompt(e, prompt, sizeof prompt);
    t->n_prompt = tok_encode_prompt(prompt, t->ids, 256, &er);
    if (!answer) {
        env_answer a;
        cr_assert_eq(env_oracle(e, &a, &er), 0, "%s", er.msg);
        env_answer_format(e, &a, oracle, sizeof oracle);
        answer = oracle;
    }
    t->n_answer = tok_encode_answer(answer, t->ids + t->n_prompt, 256, &er);
    cr_assert(t->n_prompt > 0 && t->n_answer > 0, "%s", er.msg);
    tok_answer_parts(t->ids + t->n_prompt, t->n_answer, t->kind);
    env_free(e);
}

static const model_out *turn_forward(const turn *t, float T, model_out *o)
{
    model_seq s = {t->image, t->ids, t->n_prompt + t->n_answer, t->n_prompt};
    model_batch b = {&s, 1, T};
    err er = {0};
    cr_assert_eq(model_forward(lt.m, &b, o, &er), 0, "%s", er.msg);
    cr_assert_eq(o->n_scored, t->n_answer);
    return o;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    cr_assert(cJSON_IsNumber(v), "no number '%s'", k);
    return v->valuedouble;
}

static const char *kind_name(uint8_t k)
{
    return k == 2 ? "action" : k == 1 ? "thought" : "format";
}

/* Every token of a --json reply against the direct forward. */
static void check_tokens(const cJSON *j, const turn *t, float T, double tol)
{
    cr_assert_eq(num(j, "teacher_version"), 0);
    model_out o;
    turn_forward(t, T, &o);
    const cJSON *toks = cJSON_GetObjectItemCaseSensitive(j, "tokens");
    cr_assert_eq(cJSON_GetArraySize(toks), t->n_answer);
    int p = 0;
    const cJSON *tok;
    cJSON_ArrayForEach(tok, toks)
    {
        cr_assert_eq(num(tok, "pos"), p);
        cr_assert_eq(num(tok, "id"), t->ids[t->n_prompt + p]);
        const cJSON *kind = cJSON_GetObjectItemCaseSensitive(tok, "kind");
        cr_assert_str_eq(cJSON_GetStringValue(kind), kind_name(t->kind[p]));
        double got = num(tok, "logprob"), want = o.logprob[p];
        double tl = tol > 0 ? tol : ldexp(1.0, ilogb(want) - 11) + 1e-5; /* half a float16 step */
        cr_assert(fabs(got - want) <= tl, "token %d: gtrt logits %.9g, direct %.9g", p, got, want);
        p++;
    }
}

/* The log-softmax of row p of the direct forward, in double. */
static double direct_logsoftmax(const model_out *o, int p, int j, double T)
{
    const float *z = o->logits + (size_t)p * (size_t)o->vocab;
    double mx = -INFINITY, sum = 0;
    for (int k = 0; k < o->vocab; k++)
        mx = fmax(mx, z[k] / T);
    for (int k = 0; k < o->vocab; k++)
        sum += exp(z[k] / T - mx);
    return z[j] / T - mx - log(sum);
}

static void check_full(const cJSON *j, const turn *t)
{
    model_out o;
    turn_forward(t, 1.0f, &o);
    int p = 0;
    const cJSON *tok;
    cJSON_ArrayForEach(tok, cJSON_GetObjectItemCaseSensitive(j, "tokens"))
    {
        const cJSON *full = cJSON_GetObjectItemCaseSensitive(tok, "full");
        cr_assert_eq(cJSON_GetArraySize(full), o.vocab);
        int k = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, full)
        {
            double want = direct_logsoftmax(&o, p, k, 1.0);
            cr_assert(fabs(v->valuedouble - want) <= 1e-5, "pos %d id %d: %g vs %g", p, k,
                      v->valuedouble, want);
            k++;
        }
        p++;
    }
}

static void check_topk(const cJSON *j, const turn *t, int K)
{
    model_out o;
    turn_forward(t, 1.0f, &o);
    int p = 0;
    const cJSON *tok;
    cJSON_ArrayForEach(tok, cJSON_GetObjectItemCaseSensitive(j, "tokens"))
    {
        const cJSON *top = cJSON_GetObjectItemCaseSensitive(tok, "topk");
        cr_assert_eq(cJSON_GetArraySize(top), K);
        bool listed[1024] = {false};
        double prev = INFINITY;
        const cJSON *a;
        cJSON_ArrayForEach(a, top)
        {
            int id = (int)num(a, "id");
            double lp = num(a, "logprob");
            cr_assert(id >= 0 && id < o.vocab && !listed[id], "pos %d: id %d", p, id);
            listed[id] = true;
            cr_assert(fabs(lp - direct_logsoftmax(&o, p, id, 1.0)) <= 1e-5);
            cr_assert(lp <= prev, "pos %d: top-k not likeliest first", p);
            prev = lp;
        }
        for (int k = 0; k < o.vocab; k++) /* nothing left out is likelier */
            cr_assert(listed[k] || direct_logsoftmax(&o, p, k, 1.0) <= prev + 1e-6,
                      "pos %d: id %d left out of the top %d", p, k, K);
        p++;
    }
}

/* ==== the test ==== */

static void setup_services(void)
{
    snprintf(lt.dir, sizeof lt.dir, "/tmp/gtrt-logits-XXXXXX");
    cr_assert_not_null(mkdtemp(lt.dir));
    snprintf(lt.learner_ep, sizeof lt.learner_ep, "ipc://%s/learner", lt.dir);
    snprintf(lt.teacher_ep, sizeof lt.teacher_ep, "ipc://%s/teacher", lt.dir);
    snprintf(lt.dead_ipc, sizeof lt.dead_ipc, "ipc://%s/nobody", lt.dir);
    dead_tcp_endpoint(lt.dead_tcp, sizeof lt.dead_tcp);
    add_set("learner.bind=%s", lt.learner_ep);
    add_set("learner.connect=%s", lt.learner_ep);
    add_set("learner.publish_bind=ipc://%s/publish", lt.dir);
    add_set("learner.publish_connect=ipc://%s/publish", lt.dir);
    add_set("teacher.bind=%s", lt.teacher_ep);
    add_set("run.out_dir=%s/runs", lt.dir);
    add_set("run.name=%s", "logits");
    add_set("run.seed=%s", "11");
    add_set("net.heartbeat_ms=%s", "200");
    add_set("metrics.prometheus_bind=%s", "");
    add_set("metrics.tensorboard=%s", "false");
    add_set("model.preset=%s", "tiny");
    add_set("env.name=%s", "points24");
    add_set("ppo.updates=%s", "0");
    start("learner");
    start("teacher");
    wait_teacher();
    char path[200];
    snprintf(path, sizeof path, "%s/runs/logits/checkpoints/policy-v000000.safetensors", lt.dir);
    err er = {0};
    cr_assert_eq(model_load(path, &lt.m, &er), 0, "%s", er.msg);
}

static void check_against_forward(void)
{
    static const char *custom =
        "{\"cards\": [1, 2, 3, 4], \"formula\": \"( 3\", \"thoughts\": \"1 + 2 + 3 = 6\", "
        "\"action\": \"+\"}";
    turn t;
    turn_make(3, NULL, &t);
    cJSON *j = run_json("3", NULL, NULL, NULL, NULL);
    check_tokens(j, &t, 1.0f, 1e-5);
    cJSON_Delete(j);
    j = run_json("3", "--temperature", "0.7", NULL, NULL);
    check_tokens(j, &t, 0.7f, 1e-5);
    cJSON_Delete(j);
    j = run_json("3", "--full", NULL, NULL, NULL);
    check_tokens(j, &t, 1.0f, 1e-5);
    check_full(j, &t);
    cJSON_Delete(j);
    j = run_json("3", "--f16", NULL, NULL, NULL);
    check_tokens(j, &t, 1.0f, 0);
    cJSON_Delete(j);
    free(t.image);
    turn_make(8, custom, &t);
    j = run_json("8", "--answer", custom, "--topk", "4");
    check_tokens(j, &t, 1.0f, 1e-5);
    check_topk(j, &t, 4);
    cJSON_Delete(j);
    free(t.image);
}

/* The last logprob of `gtrt logits --json` at seed 5 through `teachers`. */
static double logprob_via(const char *teachers, run_out *r)
{
    *r = run_logits(WAIT_MS, "--teacher", teachers, "--env", "points24", "--seed", "5", "--json",
                    "--timeout-ms", "1500", "--attempts", "3", (const char *)NULL);
    cr_assert_eq(r->status, 0, "gtrt logits through %s failed: %s", teachers, r->err);
    cJSON *j = cJSON_Parse(r->out);
    cr_assert_not_null(j);
    double v = num(j, "step_logprob");
    const cJSON *who = cJSON_GetObjectItemCaseSensitive(j, "teacher");
    cr_assert_str_eq(cJSON_GetStringValue(who), lt.teacher_ep, "answered by the dead one?");
    cJSON_Delete(j);
    return v;
}

static void check_dead_then_live(void)
{
    run_out r;
    double want = logprob_via(lt.teacher_ep, &r);
    run_free(&r);
    char eps[400];
    snprintf(eps, sizeof eps, "%s,%s", lt.dead_tcp, lt.teacher_ep);
    cr_assert_eq(logprob_via(eps, &r), want);
    run_free(&r);
    snprintf(eps, sizeof eps, "%s,%s,%s", lt.dead_ipc, lt.dead_tcp, lt.teacher_ep);
    cr_assert_eq(logprob_via(eps, &r), want);
    run_free(&r);
}

/* The library: round robin over a dead and a live teacher. The dead one
 * takes one timeout and then cools down (for longer than this test runs),
 * so every call is answered by the live one on the first or second try. */
static void check_client_rounds(void)
{
    char eps[400];
    snprintf(eps, sizeof eps, "%s,%s", lt.dead_tcp, lt.teacher_ep);
    tclient_opts o;
    tclient_opts_default(&o);
    o.timeout_ms = 1500;
    o.attempts = 2;
    o.cooldown_ms = 3600 * 1000;
    tclient *c;
    err er = {0};
    cr_assert_eq(tclient_new(eps, &o, &c, &er), 0, "%s", er.msg);
    cr_assert_eq(tclient_n_teachers(c), 2);
    turn t;
    turn_make(5, NULL, &t);
    env *e;
    cr_assert_eq(env_new("points24", NULL, &e, &er), 0);
    env_reset(e, 5);
    size_t n = env_image_floats(e);
    uint8_t *bytes = malloc(n);
    for (size_t k = 0; k < n; k++)
        bytes[k] = (uint8_t)lrintf(t.image[k] * 255.0f);
    int C, H, W;
    env_image_shape(e, &C, &H, &W);
    env_free(e);
    tclient_seq s = {bytes, C, H, W, t.ids, t.n_prompt, t.ids + t.n_prompt, t.n_answer, 2, 0};
    tclient_logits_req rq = {.mode = TCLIENT_SAMPLED, .seqs = &s, .n_seq = 1};
    model_out mo;
    turn_forward(&t, 1.0f, &mo);
    for (int call = 0; call < 4; call++) {
        tclient_scores sc;
        cr_assert_eq(tclient_logits(c, &rq, &sc, &er), 0, "call %d: %s", call, er.msg);
        cr_assert_str_eq(sc.endpoint, lt.teacher_ep);
        cr_assert_eq(sc.n_seq, 1);
        cr_assert_eq(sc.seqs[0].positions, t.n_answer - 2);
        for (int p = 0; p < sc.seqs[0].positions; p++)
            cr_assert_float_eq(sc.seqs[0].values[p], mo.logprob[2 + p], 1e-5);
        tclient_scores_clear(&sc);
    }
    const tclient_stats *st = tclient_get_stats(c);
    cr_assert_eq(st->ok, 4);
    cr_assert_eq(st->timeouts, 1, "the dead teacher was tried %llu times",
                 (unsigned long long)st->timeouts);
    cr_assert_eq(st->attempts, 5);
    tclient_free(c);
    free(bytes);
    free(t.image);
}

static void check_all_dead(void)
{
    char eps[400];
    snprintf(eps, sizeof eps, "%s,%s", lt.dead_tcp, lt.dead_ipc);
    /* 3 attempts of 400 ms: the watchdog is far above that, for a loaded machine. */
    run_out r = run_logits(3 * 400 + 60000, "--teacher", eps, "--env", "points24", "--seed", "5",
                           "--timeout-ms", "400", "--attempts", "3", (const char *)NULL);
    cr_assert_neq(r.status, -1, "gtrt logits hung with only dead teachers");
    cr_assert_eq(r.status, 1, "exit %d; stderr: %s", r.status, r.err);
    cr_assert(strstr(r.err, "no teacher served") && strstr(r.err, lt.dead_tcp) &&
                  strstr(r.err, lt.dead_ipc) && strstr(r.err, "no answer within 400 ms"),
              "unclear message: %s", r.err);
    cr_assert_eq(r.out[0], '\0', "printed results anyway: %s", r.out);
    run_free(&r);
}

static void check_refusals(void)
{
    run_out r = run_logits(WAIT_MS, "--teacher", lt.teacher_ep, "--env", "points24", "--seed", "5",
                           "--min-version", "1", "--timeout-ms", "2000", "--attempts", "2",
                           (const char *)NULL);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "wants at least 1"), "%s", r.err);
    run_free(&r);
    r = run_logits(WAIT_MS, "--teacher", lt.teacher_ep, "--topk", "65", (const char *)NULL);
    cr_assert_eq(r.status, 1);
    cr_assert(strstr(r.err, "refused the request") && strstr(r.err, "top_k 65"), "%s", r.err);
    run_free(&r);
    r = run_logits(WAIT_MS, "--teacher", lt.teacher_ep, "--full", "--topk", "3",
                   (const char *)NULL);
    cr_assert_eq(r.status, 2, "conflicting options: exit %d", r.status);
    run_free(&r);
}

Test(logits_cmd, matches_forward_and_survives_dead_teachers, .timeout = 900,
     .fini = kill_children)
{
    setup_services();
    check_against_forward();
    check_dead_then_live();
    check_client_rounds();
    check_all_dead();
    check_refusals();
}
