/* Benchmark of the teacher service through its client (common/tclient.h):
 * what a logits request costs over a bare forward pass, and what the
 * teacher's batching buys when many clients ask at once.
 *
 * It starts a learner (random policy of --preset, Points24, no updates) and
 * two teachers on loopback that serve the learner's version 0: teacher A
 * with teacher.max_wait_ms 5 (a lone request waits up to 5 ms for company)
 * and teacher B with max_wait_ms 0, the default (a batch starts as soon as
 * the teacher is idle; requests arriving meanwhile still batch). Sequences are Points24 turns as the
 * actors send them: the picture (32 patches), the prompt and the oracle's
 * answer, about 70 tokens.
 *
 *   latency: p50 / p99 of a `sampled` request for one sequence, one
 *            client, one request at a time, on A and on B; against the
 *            p50 of model_forward of the same sequence on the same weights
 *            in this process (the overhead: queueing, copies, ZeroMQ,
 *            score's log-softmax, float conversion). Target: <= 10 % on B.
 *            The three are timed in turn, request by request, so load
 *            from elsewhere on a shared machine hits them alike.
 *   throughput: sequences/s with 1, 4 and 16 client threads (each its own
 *            client, one sequence per request, back to back) on A and B,
 *            with the mean batch the teacher ran (its status counters),
 *            beside model_forward's own sequences/s in batches of 1 and 16
 *            (what batching can buy at most on this machine). Each pair
 *            runs in 3 interleaved rounds of S/3 seconds; medians shown.
 *
 * Usage: bench_teacher [--gtrt PATH] [--preset small] [--requests N]
 *                      [--seconds S]
 * GTRT_BIN or --gtrt: the gtrt binary (default: ../gtrt next to this
 * program). OpenBLAS threads: the default, in the teachers and here.
 * Prints figures; never fails on a number. The machine may be shared:
 * take the numbers as rough. */
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "actor/envs/env.h"
#include "bench_util.h"
#include "common/status.h"
#include "common/tclient.h"
#include "common/tokenizer.h"

extern char **environ;

enum { BT_SEQS = 16, BT_MAX_TOK = 256, BT_WARMUP = 10 };

typedef struct bt_obs {
    uint8_t *bytes;
    float *image;
    int c, h, w;
    int32_t ids[BT_MAX_TOK];
    int n_prompt, n_answer;
} bt_obs;

typedef struct bt_opts {
    char gtrt[512];
    const char *preset;
    int requests;
    double seconds;
} bt_opts;

typedef struct bt_run {
    char dir[64];
    char teacher_a[128], teacher_b[128];
    pid_t pids[3];
} bt_run;

/* ==== observations, as an actor sends them ==== */

static int bt_obs_make(uint64_t seed, bt_obs *o, err *e)
{
    env *en;
    int rc = env_new("points24", NULL, &en, e);
    if (rc)
        return rc;
    env_reset(en, seed);
    env_image_shape(en, &o->c, &o->h, &o->w);
    size_t n = env_image_floats(en);
    o->image = malloc(n * sizeof *o->image);
    o->bytes = malloc(n);
    env_render(en, o->image);
    for (size_t k = 0; k < n; k++) {
        float x = fminf(fmaxf(o->image[k], 0.0f), 1.0f);
        o->bytes[k] = (uint8_t)lrintf(x * 255.0f);
        o->image[k] = o->bytes[k] / 255.0f;
    }
    char prompt[ENV_TEXT_MAX], answer[ENV_TEXT_MAX];
    env_answer a;
    env_prompt(en, prompt, sizeof prompt);
    rc = env_oracle(en, &a, e);
    if (!rc) {
        env_answer_format(en, &a, answer, sizeof answer);
        o->n_prompt = tok_encode_prompt(prompt, o->ids, BT_MAX_TOK / 2, e);
        o->n_answer = tok_encode_answer(answer, o->ids + o->n_prompt, BT_MAX_TOK / 2, e);
        rc = o->n_prompt < 0 ? o->n_prompt : o->n_answer < 0 ? o->n_answer : 0;
    }
    env_free(en);
    return rc;
}

static tclient_seq bt_seq(const bt_obs *o)
{
    return (tclient_seq){o->bytes, o->c, o->h, o->w, o->ids, o->n_prompt,
                         o->ids + o->n_prompt, o->n_answer, 0, 0};
}

/* ==== services ==== */

static pid_t bt_spawn(const bt_run *r, const bt_opts *o, const char *role, const char *name,
                      const char *const *extra)
{
    static char sets[24][200];
    const char *argv[64];
    int n = 0, k = 0;
    argv[n++] = o->gtrt;
    argv[n++] = role;
#define SET(...)                                                                                  \
    (snprintf(sets[k], sizeof sets[k], __VA_ARGS__), argv[n++] = "--set", argv[n++] = sets[k++])
    SET("learner.bind=ipc://%s/learner", r->dir);
    SET("learner.connect=ipc://%s/learner", r->dir);
    SET("learner.publish_bind=ipc://%s/publish", r->dir);
    SET("learner.publish_connect=ipc://%s/publish", r->dir);
    SET("run.out_dir=%s/runs", r->dir);
    SET("run.name=bench");
    SET("model.preset=%s", o->preset);
    SET("env.name=points24");
    SET("ppo.updates=0");
    SET("metrics.prometheus_bind=");
    SET("metrics.tensorboard=false");
    SET("teacher.max_queue=4096");
#undef SET
    for (int i = 0; extra && extra[i]; i++) {
        argv[n++] = "--set";
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    char log[160];
    snprintf(log, sizeof log, "%s/%s.log", r->dir, name);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid = -1;
    if (posix_spawn(&pid, o->gtrt, &fa, NULL, (char **)argv, environ))
        pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    return pid;
}

static bool bt_has_model(const char *ep)
{
    cJSON *st = NULL;
    if (status_fetch(ep, 2000, 1, 1 << 22, NULL, &st, NULL))
        return false;
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(st, "counters"), "has_model");
    bool have = cJSON_IsNumber(h) && h->valuedouble == 1;
    cJSON_Delete(st);
    return have;
}

static int bt_start(bt_run *r, const bt_opts *o)
{
    snprintf(r->dir, sizeof r->dir, "/tmp/gtrt-bench-teacher-XXXXXX");
    if (!mkdtemp(r->dir))
        return -1;
    snprintf(r->teacher_a, sizeof r->teacher_a, "ipc://%s/teacher-a", r->dir);
    snprintf(r->teacher_b, sizeof r->teacher_b, "ipc://%s/teacher-b", r->dir);
    char bind_a[160], bind_b[160];
    snprintf(bind_a, sizeof bind_a, "teacher.bind=%s", r->teacher_a);
    snprintf(bind_b, sizeof bind_b, "teacher.bind=%s", r->teacher_b);
    const char *ea[] = {bind_a, "teacher.id=teacher-a", "teacher.max_wait_ms=5", NULL};
    const char *eb[] = {bind_b, "teacher.id=teacher-b", "teacher.max_wait_ms=0", NULL};
    r->pids[0] = bt_spawn(r, o, "learner", "learner", NULL);
    r->pids[1] = bt_spawn(r, o, "teacher", "teacher-a", ea);
    r->pids[2] = bt_spawn(r, o, "teacher", "teacher-b", eb);
    for (int i = 0; i < 3; i++)
        if (r->pids[i] < 0)
            return -1;
    for (int waited = 0; waited < 600; waited++) { /* up to 2 minutes */
        if (bt_has_model(r->teacher_a) && bt_has_model(r->teacher_b))
            return 0;
        usleep(200 * 1000);
    }
    return -1;
}

static void bt_stop(bt_run *r)
{
    for (int i = 0; i < 3; i++)
        if (r->pids[i] > 0) {
            kill(r->pids[i], SIGTERM);
            waitpid(r->pids[i], NULL, 0);
        }
}

/* ==== latency ==== */

static double bt_pct(double *v, int n, double q)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    int i = (int)ceil(q * n) - 1;
    return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

/* One forward pass of `batch` sequences in this process; ms or NAN. */
static double bt_forward_once(model *m, const bt_obs *obs, int first, int batch)
{
    model_seq ms[BT_SEQS];
    for (int i = 0; i < batch; i++) {
        const bt_obs *x = &obs[(first + i) % BT_SEQS];
        ms[i] = (model_seq){x->image, x->ids, x->n_prompt + x->n_answer, x->n_prompt};
    }
    model_batch b = {ms, batch, 1.0f};
    model_out o;
    double t0 = bench_now();
    return model_forward(m, &b, &o, NULL) ? NAN : 1e3 * (bench_now() - t0);
}

/* One sampled request for one sequence; ms or NAN. */
static double bt_request_once(tclient *c, const bt_obs *obs)
{
    tclient_seq s = bt_seq(obs);
    tclient_logits_req rq = {.mode = TCLIENT_SAMPLED, .seqs = &s, .n_seq = 1};
    tclient_scores sc;
    err e = {0};
    double t0 = bench_now();
    if (tclient_logits(c, &rq, &sc, &e)) {
        fprintf(stderr, "bench_teacher: %s\n", e.msg);
        return NAN;
    }
    double ms = 1e3 * (bench_now() - t0);
    tclient_scores_clear(&sc);
    return ms;
}

typedef struct bt_lat {
    double fwd50, fwd16, a50, a99, b50, b99;
} bt_lat;

/* The bare forward and a request to A and to B, interleaved, so that
 * whatever else the machine does hits all three alike; every 8th round
 * also a forward of 16 sequences. */
static int bt_latency(const bt_run *r, model *m, const bt_obs *obs, int n, bt_lat *out)
{
    tclient_opts to;
    tclient_opts_default(&to);
    to.timeout_ms = 30000;
    tclient *a = NULL, *b = NULL;
    err e = {0};
    if (tclient_new(r->teacher_a, &to, &a, &e) || tclient_new(r->teacher_b, &to, &b, &e)) {
        fprintf(stderr, "bench_teacher: %s\n", e.msg);
        tclient_free(a);
        return -1;
    }
    double *t = malloc(4 * (size_t)n * sizeof *t);
    double *f = t, *ta = t + n, *tb = t + 2 * n, *f16 = t + 3 * n;
    int bad = 0;
    for (int i = -BT_WARMUP; i < n; i++) {
        const bt_obs *x = &obs[(i + BT_WARMUP) % BT_SEQS];
        double v0 = bt_forward_once(m, x, 0, 1), v1 = bt_request_once(a, x);
        double v2 = bt_request_once(b, x);
        double v3 = i % 8 == 0 ? bt_forward_once(m, obs, i + BT_WARMUP, BT_SEQS) : 0;
        bad += isnan(v0) || isnan(v1) || isnan(v2) || isnan(v3);
        if (i >= 0) {
            f[i] = v0;
            ta[i] = v1;
            tb[i] = v2;
            if (i % 8 == 0)
                f16[i / 8] = v3;
        }
    }
    if (!bad)
        *out = (bt_lat){bt_pct(f, n, 0.5), bt_pct(f16, (n + 7) / 8, 0.5), bt_pct(ta, n, 0.5),
                        bt_pct(ta, n, 0.99), bt_pct(tb, n, 0.5), bt_pct(tb, n, 0.99)};
    free(t);
    tclient_free(a);
    tclient_free(b);
    return bad ? -1 : 0;
}

/* ==== throughput ==== */

typedef struct bt_worker {
    pthread_t th;
    const char *ep;
    const bt_obs *obs;
    int index;
    double until;
    long done;
    int rc;
} bt_worker;

static void *bt_worker_main(void *arg)
{
    bt_worker *w = arg;
    tclient_opts to;
    tclient_opts_default(&to);
    to.timeout_ms = 60000;
    tclient *c;
    err e = {0};
    if ((w->rc = tclient_new(w->ep, &to, &c, &e)))
        return NULL;
    for (int i = 0; bench_now() < w->until; i++) {
        tclient_seq s = bt_seq(&w->obs[(w->index + i) % BT_SEQS]);
        tclient_logits_req rq = {.mode = TCLIENT_SAMPLED, .seqs = &s, .n_seq = 1};
        tclient_scores sc;
        if ((w->rc = tclient_logits(c, &rq, &sc, &e))) {
            fprintf(stderr, "bench_teacher: client %d: %s\n", w->index, e.msg);
            break;
        }
        tclient_scores_clear(&sc);
        w->done++;
    }
    tclient_free(c);
    return NULL;
}

/* A counter of a teacher's status, or NAN. */
static double bt_counter(const char *ep, const char *name)
{
    cJSON *st = NULL;
    if (status_fetch(ep, 10000, 1, 1 << 22, NULL, &st, NULL))
        return NAN;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(st, "counters"), name);
    double x = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    cJSON_Delete(st);
    return x;
}

/* Sequences/s with `conc` clients asking back to back for `seconds`;
 * *batch: the mean sequences per batch the teacher ran meanwhile. */
static double bt_throughput(const char *ep, const bt_obs *obs, int conc, double seconds,
                            double *batch)
{
    double b0 = bt_counter(ep, "batches"), s0 = bt_counter(ep, "seqs_served");
    bt_worker w[BT_SEQS];
    double t0 = bench_now();
    for (int i = 0; i < conc; i++) {
        w[i] = (bt_worker){.ep = ep, .obs = obs, .index = i, .until = t0 + seconds};
        pthread_create(&w[i].th, NULL, bt_worker_main, &w[i]);
    }
    long done = 0;
    int bad = 0;
    for (int i = 0; i < conc; i++) {
        pthread_join(w[i].th, NULL);
        done += w[i].done;
        bad += w[i].rc != 0;
    }
    double dt = bench_now() - t0;
    *batch = (bt_counter(ep, "seqs_served") - s0) / (bt_counter(ep, "batches") - b0);
    return bad ? NAN : (double)done / dt;
}

/* ==== main ==== */

static int bt_parse(int argc, char **argv, bt_opts *o)
{
    *o = (bt_opts){.preset = "small", .requests = 200, .seconds = 6.0};
    const char *bin = getenv("GTRT_BIN");
    if (bin)
        snprintf(o->gtrt, sizeof o->gtrt, "%s", bin);
    else {
        char self[400] = "";
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        self[n > 0 ? n : 0] = '\0';
        snprintf(o->gtrt, sizeof o->gtrt, "%s/../gtrt", dirname(self));
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "usage: bench_teacher [--gtrt PATH] [--preset P] [--requests N] "
                            "[--seconds S]\n");
            return 2;
        }
        if (!strcmp(a, "--gtrt"))
            snprintf(o->gtrt, sizeof o->gtrt, "%s", v);
        else if (!strcmp(a, "--preset"))
            o->preset = v;
        else if (!strcmp(a, "--requests"))
            o->requests = atoi(v) > 0 ? atoi(v) : 200;
        else if (!strcmp(a, "--seconds"))
            o->seconds = atof(v) > 0 ? atof(v) : 6.0;
        else
            return fprintf(stderr, "bench_teacher: unknown option %s\n", a), 2;
        i++;
    }
    if (access(o->gtrt, X_OK))
        return fprintf(stderr, "bench_teacher: no gtrt binary at %s (--gtrt PATH)\n", o->gtrt), 2;
    return 0;
}

/* Sequences/s of every (teacher, clients) pair, in interleaved rounds (the
 * median is reported), so that load that comes and goes on a shared
 * machine spreads over all of them. */
static void bt_throughputs(const bt_run *r, const bt_opts *o, const bt_obs *obs, double t[2][3],
                           double batch[2][3])
{
    enum { ROUNDS = 3 };
    static const int conc[3] = {1, 4, 16};
    const char *eps[2] = {r->teacher_a, r->teacher_b};
    double v[2][3][ROUNDS], bs[2][3][ROUNDS];
    for (int k = 0; k < ROUNDS; k++)
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++)
                v[i][j][k] = bt_throughput(eps[i], obs, conc[j], o->seconds / ROUNDS, &bs[i][j][k]);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++) {
            t[i][j] = bench_median(v[i][j], ROUNDS);
            batch[i][j] = bench_median(bs[i][j], ROUNDS);
        }
}

static void bt_report(const bt_run *r, const bt_opts *o, model *m, const bt_obs *obs)
{
    bt_lat L;
    if (bt_latency(r, m, obs, o->requests, &L))
        return;
    printf("sequence: points24 turn, %d image + %d prompt + %d answer tokens; preset %s\n",
           model_config_n_patches(&m->cfg), obs[0].n_prompt, obs[0].n_answer, o->preset);
    printf("model_forward in process (p50): 1 seq %.2f ms (%.0f seq/s), 16 seqs %.2f ms "
           "(%.0f seq/s)\n", L.fwd50, 1e3 / L.fwd50, L.fwd16, 16e3 / L.fwd16);
    printf("latency of a sampled request for 1 seq (%d requests, interleaved with the forward):\n"
           "  teacher A (max_wait 5 ms) p50 %.2f ms p99 %.2f ms; teacher B (max_wait 0) p50 %.2f "
           "ms p99 %.2f ms\n", o->requests, L.a50, L.a99, L.b50, L.b99);
    printf("overhead over model_forward (p50): A %+.1f %%, B %+.1f %%\n",
           100 * (L.a50 - L.fwd50) / L.fwd50, 100 * (L.b50 - L.fwd50) / L.fwd50);
    double t[2][3], bs[2][3];
    bt_throughputs(r, o, obs, t, bs);
    printf("throughput, seq/s [mean seqs per batch] (median of 3 rounds of %.1f s)\n"
           "  %-28s %16s %16s %16s\n", o->seconds / 3, "", "clients=1", "clients=4",
           "clients=16");
    const char *names[2] = {"teacher A (max_wait 5 ms)", "teacher B (max_wait 0)"};
    for (int k = 0; k < 2; k++)
        printf("  %-28s %9.0f [%4.1f] %9.0f [%4.1f] %9.0f [%4.1f]   x%.2f from 1 to 16\n",
               names[k], t[k][0], bs[k][0], t[k][1], bs[k][1], t[k][2], bs[k][2],
               t[k][2] / t[k][0]);
    bench_verdict("request overhead over model_forward, teacher B p50",
                  100 * (L.b50 - L.fwd50) / L.fwd50, "%", 10, true);
}

int main(int argc, char **argv)
{
    bt_opts o;
    int rc = bt_parse(argc, argv, &o);
    if (rc)
        return rc;
    bt_obs obs[BT_SEQS];
    err e = {0};
    for (int i = 0; i < BT_SEQS; i++)
        if (bt_obs_make((uint64_t)i + 1, &obs[i], &e))
            return fprintf(stderr, "bench_teacher: %s\n", e.msg), 1;
    bt_run r = {0};
    signal(SIGPIPE, SIG_IGN);
    if (bt_start(&r, &o)) {
        fprintf(stderr, "bench_teacher: the services did not come up; logs in %s\n", r.dir);
        bt_stop(&r);
        return 1;
    }
    char path[200];
    snprintf(path, sizeof path, "%s/runs/bench/checkpoints/policy-v000000.safetensors", r.dir);
    model *m;
    if (model_load(path, &m, &e)) {
        fprintf(stderr, "bench_teacher: %s\n", e.msg);
        bt_stop(&r);
        return 1;
    }
    bt_report(&r, &o, m, obs);
    model_free(m);
    bt_stop(&r);
    for (int i = 0; i < BT_SEQS; i++) {
        free(obs[i].image);
        free(obs[i].bytes);
    }
    return 0;
}
