/* The teacher service end to end: a real learner (tiny policy) and a real
 * teacher as processes on loopback, the test itself as a raw DEALER client
 * speaking the envelope (common/wire.h) and as a stand-in actor that sends
 * the learner real trajectory batches, so the learner trains and publishes
 * versions exactly when the test wants them.
 *
 * Checked: the teacher fetches the base (v0) and serves logits equal to a
 * direct forward of that checkpoint file (every mode, float32 and float16,
 * a temperature); after the learner publishes v1..v3 its version advances
 * and its logits equal a forward of `gtrt merge`'s output on the same
 * checkpoints; generation equals sampling from that model directly; bad
 * requests each get an error reply naming the problem and the teacher
 * keeps serving; a killed and restarted teacher catches up from the base
 * and the latest checkpoint only (the learner keeps v0 for it); `gtrt
 * status` shows the teacher's figures. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/half.h"
#include "common/model.h"
#include "common/net.h"
#include "common/sample.h"
#include "common/tokenizer.h"
#include "common/traj.h"

extern char **environ;

#define NSETS 32
#define WAIT_MS 90000 /* bounded waits: a bug fails instead of hanging */
#define MAX_SEQS 4    /* teacher.max_seqs */
#define MAX_TOKENS 300 /* teacher.max_tokens */

static struct {
    char dir[64];
    char learner_ep[128], teacher_ep[128];
    char sets[NSETS][200];
    int nsets;
    pid_t children[8];
    int nchildren;
    void *zctx;
    void *client; /* DEALER to the teacher */
    void *actor;  /* DEALER to the learner, as a registered actor */
    uint64_t next_rid;
    uint64_t actor_seq, episode;
    model_config mc;
} it;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void kill_children(void)
{
    for (int i = 0; i < it.nchildren; i++)
        if (it.children[i] > 0 && kill(it.children[i], SIGKILL) == 0)
            waitpid(it.children[i], NULL, 0);
    it.nchildren = 0;
}

static void add_set(const char *fmt, const char *a)
{
    cr_assert_lt(it.nsets, NSETS);
    snprintf(it.sets[it.nsets++], sizeof it.sets[0], fmt, a);
}

/* Start `gtrt <role>` with the current sets, stderr to <log_name>.log.
 * The child dies with this process (PR_SET_PDEATHSIG), so a test that
 * crashes leaves no services behind. */
static pid_t start(const char *role, const char *log_name)
{
    char logpath[160];
    snprintf(logpath, sizeof logpath, "%s/%s.log", it.dir, log_name);
    const char *argv[2 * NSETS + 4];
    int n = 0;
    argv[n++] = GTRT_BIN_PATH;
    argv[n++] = role;
    for (int i = 0; i < it.nsets; i++) {
        argv[n++] = "--set";
        argv[n++] = it.sets[i];
    }
    argv[n] = NULL;
    pid_t parent = getpid();
    pid_t pid = fork();
    /* Only a failure may be asserted here: under --full-stats a passing
     * assertion is reported too, and the child reporting it on the
     * runner's socket deadlocks both. */
    if (pid < 0)
        cr_assert_fail("cannot start %s", role);
    if (pid == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() != parent)
            _exit(127);
        int log = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
        int null = open("/dev/null", O_WRONLY);
        if (log < 0 || null < 0 || dup2(log, 2) < 0 || dup2(null, 1) < 0)
            _exit(127);
        execve(GTRT_BIN_PATH, (char **)argv, environ);
        _exit(127);
    }
    it.children[it.nchildren++] = pid;
    return pid;
}

static void forget(pid_t pid)
{
    for (int i = 0; i < it.nchildren; i++)
        if (it.children[i] == pid)
            it.children[i] = 0;
}

static void stop(pid_t pid, const char *name)
{
    forget(pid);
    kill(pid, SIGTERM);
    int status = 0;
    for (int i = 0; i < 400; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "%s did not exit 0 on SIGTERM (status %d); logs in %s", name, status, it.dir);
            return;
        }
        sleep_ms(50);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    cr_assert_fail("%s did not stop within 20 s of SIGTERM", name);
}

/* ==== a raw DEALER speaking the envelope ==== */

static void *dealer(const char *ep)
{
    void *s = zmq_socket(it.zctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    cr_assert_eq(zmq_connect(s, ep), 0);
    return s;
}

static void send_msg(void *s, uint32_t role, const char *id, uint32_t type,
                     const ProtobufCMessage *body, uint64_t rid, const wire_slice *payload,
                     size_t np)
{
    wire_encoded enc;
    cr_assert_eq(wire_encode(role, id, type, rid, body, np, &enc), 0);
    zmq_send(s, enc.hdr, enc.hdr_len, ZMQ_SNDMORE);
    zmq_send(s, enc.body, enc.body_len, np ? ZMQ_SNDMORE : 0);
    for (size_t i = 0; i < np; i++)
        zmq_send(s, payload[i].data, payload[i].len, i + 1 < np ? ZMQ_SNDMORE : 0);
    wire_encoded_clear(&enc);
}

typedef struct reply {
    net_frames f;
    wire_msg m;
} reply;

/* The next valid message on `s` (with request id `rid` when nonzero) within
 * timeout_ms; false on timeout. Other messages are dropped. */
static bool recv_msg(void *s, uint64_t rid, int timeout_ms, reply *out)
{
    for (int waited = 0; waited <= timeout_ms; waited += 20) {
        zmq_pollitem_t pi = {.socket = s, .events = ZMQ_POLLIN};
        if (zmq_poll(&pi, 1, 20) <= 0)
            continue;
        while (net_frames_recv(s, &out->f) == 1) {
            net_route from;
            if (net_frames_decode(&out->f, false, &from, &out->m) == WIRE_OK &&
                (!rid || (out->m.hdr->has_request_id && out->m.hdr->request_id == rid)))
                return true;
            wire_msg_clear(&out->m);
            net_frames_clear(&out->f);
        }
    }
    return false;
}

static void reply_clear(reply *r)
{
    wire_msg_clear(&r->m);
    net_frames_clear(&r->f);
}

/* Send to the teacher and wait for the answer to this request. */
static void call(uint32_t type, const ProtobufCMessage *body, const wire_slice *payload,
                 size_t np, reply *out)
{
    uint64_t rid = ++it.next_rid;
    send_msg(it.client, GTRT__ROLE__ROLE_CLIENT, "test-client", type, body, rid, payload, np);
    cr_assert(recv_msg(it.client, rid, 30000, out), "no answer from the teacher to a %s",
              wire_type_name(type));
}

/* ==== status ==== */

static double teacher_counter(const char *name)
{
    Gtrt__StatusRequest req = GTRT__STATUS_REQUEST__INIT;
    reply r;
    call(GTRT__MSG_TYPE__MSG_STATUS_REQUEST, &req.base, NULL, 0, &r);
    double v = -1;
    if (r.m.type == GTRT__MSG_TYPE__MSG_STATUS_REPLY) {
        const Gtrt__StatusReply *st = (const Gtrt__StatusReply *)r.m.body;
        for (size_t i = 0; i < st->n_counters; i++)
            if (st->counters[i]->name && !strcmp(st->counters[i]->name, name))
                v = (double)st->counters[i]->value;
    }
    reply_clear(&r);
    return v;
}

/* The stand-in actor keeps beating so the learner keeps it registered. */
static void actor_beat(void)
{
    Gtrt__PeerInfo self = GTRT__PEER_INFO__INIT;
    self.id = "fake-actor";
    self.has_role = 1;
    self.role = GTRT__ROLE__ROLE_ACTOR;
    Gtrt__Heartbeat hb = GTRT__HEARTBEAT__INIT;
    hb.peer = &self;
    send_msg(it.actor, GTRT__ROLE__ROLE_ACTOR, "fake-actor", GTRT__MSG_TYPE__MSG_HEARTBEAT,
             &hb.base, 0, NULL, 0);
    reply r;
    while (recv_msg(it.actor, 0, 0, &r)) /* acks and heartbeats: not needed */
        reply_clear(&r);
}

/* Wait until the teacher serves `version` (with a model). */
static void wait_teacher_version(double version)
{
    for (int waited = 0; waited < WAIT_MS; waited += 100) {
        if (it.actor)
            actor_beat();
        if (teacher_counter("has_model") == 1 && teacher_counter("teacher_version") == version)
            return;
        sleep_ms(100);
    }
    cr_assert_fail("the teacher did not reach v%.0f (at v%.0f, has a model: %.0f); logs in %s",
                   version, teacher_counter("teacher_version"), teacher_counter("has_model"),
                   it.dir);
}

/* ==== publishing through the learner ==== */

static void actor_register(void)
{
    it.actor = dealer(it.learner_ep);
    Gtrt__PeerInfo self = GTRT__PEER_INFO__INIT;
    self.id = "fake-actor";
    self.has_role = 1;
    self.role = GTRT__ROLE__ROLE_ACTOR;
    Gtrt__Hello h = GTRT__HELLO__INIT;
    h.peer = &self;
    h.has_heartbeat_ms = 1;
    h.heartbeat_ms = 200;
    for (int tries = 0; tries < 100; tries++) {
        send_msg(it.actor, GTRT__ROLE__ROLE_ACTOR, "fake-actor", GTRT__MSG_TYPE__MSG_HELLO,
                 &h.base, 0, NULL, 0);
        reply r;
        while (recv_msg(it.actor, 0, 200, &r)) {
            bool welcome = r.m.type == GTRT__MSG_TYPE__MSG_WELCOME;
            reply_clear(&r);
            if (welcome)
                return;
        }
    }
    cr_assert_fail("the learner did not welcome the stand-in actor");
}

/* One batch of num_steps (4) one-turn episodes acted by `version`: the
 * learner runs one update on it and publishes version + 1. */
static void publish_next(uint64_t version, rng *r)
{
    enum { N = 4 };
    size_t img_n = (size_t)it.mc.image_c * it.mc.image_h * it.mc.image_w;
    traj_step steps[N];
    Gtrt__Step pbs[N], *ptrs[N];
    wire_slice imgs[N];
    uint32_t u32[N][64];
    err e = {0};
    for (int i = 0; i < N; i++) {
        int32_t prompt[32], answer[32];
        int np = tok_encode_prompt("Target: 3 Current: 1", prompt, 32, &e);
        int na = tok_encode_answer(i % 2 ? "{\"action\": \"+\"}" : "{\"action\": \"-\"}", answer,
                                   32, &e);
        cr_assert(np > 0 && na > 0, "%s", e.msg);
        cr_assert_eq(traj_step_alloc(&steps[i], (uint32_t)np, (uint32_t)na, 0, img_n), 0);
        traj_step *s = &steps[i];
        memcpy(s->prompt, prompt, (size_t)np * sizeof *prompt);
        memcpy(s->answer, answer, (size_t)na * sizeof *answer);
        for (int k = 0; k < na; k++)
            s->logprob[k] = -0.5f - 0.1f * (float)k;
        tok_answer_parts(answer, na, s->kind);
        for (size_t k = 0; k < img_n; k++)
            s->image[k] = (uint8_t)rng_below(r, 256);
        s->episode = ++it.episode;
        s->policy_version = version;
        snprintf(s->env, sizeof s->env, "numberline");
        s->reward = i % 2 ? 1.0f : -1.0f;
        s->done = true;
        s->format_valid = true;
        s->success = i % 2;
        traj_step_to_pb(s, u32[i], it.mc.image_c, it.mc.image_h, it.mc.image_w, &pbs[i]);
        ptrs[i] = &pbs[i];
        imgs[i] = (wire_slice){s->image, img_n};
    }
    Gtrt__TrajBatch tb = GTRT__TRAJ_BATCH__INIT;
    tb.has_seq = 1;
    tb.seq = ++it.actor_seq;
    tb.n_steps = N;
    tb.steps = ptrs;
    send_msg(it.actor, GTRT__ROLE__ROLE_ACTOR, "fake-actor", GTRT__MSG_TYPE__MSG_TRAJ_BATCH,
             &tb.base, 0, imgs, N);
    for (int i = 0; i < N; i++)
        traj_step_free(&steps[i]);
}

static void ckpt_path(uint64_t v, char *out, size_t cap)
{
    snprintf(out, cap, "%s/runs/teach/checkpoints/policy-v%06llu.safetensors", it.dir,
             (unsigned long long)v);
}

static model *load(const char *path)
{
    model *m;
    err e = {0};
    cr_assert_eq(model_load(path, &m, &e), 0, "%s", e.msg);
    return m;
}

/* `gtrt merge` on checkpoints v0 and `versions`, with the teacher's options. */
static model *merged(const uint64_t *versions, int n, const char *out_name)
{
    char cmd[2048], path[256], out[200];
    snprintf(out, sizeof out, "%s/%s", it.dir, out_name);
    ckpt_path(0, path, sizeof path);
    int len = snprintf(cmd, sizeof cmd, "%s merge --method sma --combine ties %s", GTRT_BIN_PATH,
                       path);
    for (int i = 0; i < n; i++) {
        ckpt_path(versions[i], path, sizeof path);
        len += snprintf(cmd + len, sizeof cmd - (size_t)len, " %s", path);
    }
    snprintf(cmd + len, sizeof cmd - (size_t)len, " -o %s >/dev/null", out);
    cr_assert_eq(system(cmd), 0, "gtrt merge failed: %s", cmd);
    return load(out);
}

/* ==== logits queries against a direct forward ==== */

typedef struct query {
    int n;
    int32_t tokens[MAX_SEQS][64];
    uint32_t prompt[MAX_SEQS][64], answer[MAX_SEQS][64];
    int n_prompt[MAX_SEQS], n_answer[MAX_SEQS], begin[MAX_SEQS], end[MAX_SEQS];
    uint8_t *image[MAX_SEQS];
    float *fimage[MAX_SEQS];
} query;

static void query_make(query *q, rng *r)
{
    static const int np[3] = {5, 2, 9}, na[3] = {6, 3, 11}, b[3] = {0, 1, 4}, en[3] = {6, 3, 9};
    size_t img_n = (size_t)it.mc.image_c * it.mc.image_h * it.mc.image_w;
    q->n = 3;
    for (int s = 0; s < q->n; s++) {
        q->n_prompt[s] = np[s];
        q->n_answer[s] = na[s];
        q->begin[s] = b[s];
        q->end[s] = en[s];
        for (int t = 0; t < np[s] + na[s]; t++) {
            q->tokens[s][t] = (int32_t)rng_below(r, (uint64_t)it.mc.vocab_size);
            if (t < np[s])
                q->prompt[s][t] = (uint32_t)q->tokens[s][t];
            else
                q->answer[s][t - np[s]] = (uint32_t)q->tokens[s][t];
        }
        q->image[s] = malloc(img_n);
        q->fimage[s] = malloc(img_n * sizeof(float));
        for (size_t k = 0; k < img_n; k++) {
            q->image[s][k] = (uint8_t)rng_below(r, 256);
            q->fimage[s][k] = q->image[s][k] * (1.0f / 255.0f); /* as actors quantise */
        }
    }
}

static void query_free(query *q)
{
    for (int s = 0; s < q->n; s++) {
        free(q->image[s]);
        free(q->fimage[s]);
    }
}

/* Request bodies point into `q` and these arrays. */
typedef struct request {
    Gtrt__TeacherSeq seqs[MAX_SEQS + 2], *ptrs[MAX_SEQS + 2];
    wire_slice imgs[MAX_SEQS + 2];
    Gtrt__LogitsRequest lr;
} request;

static void request_make(request *rq, query *q, int mode, float temperature, int k, bool f16)
{
    size_t img_n = (size_t)it.mc.image_c * it.mc.image_h * it.mc.image_w;
    gtrt__logits_request__init(&rq->lr);
    rq->lr.has_mode = 1;
    rq->lr.mode = (Gtrt__LogitsMode)mode;
    rq->lr.has_temperature = temperature > 0;
    rq->lr.temperature = temperature;
    rq->lr.has_top_k = k > 0;
    rq->lr.top_k = (uint32_t)k;
    rq->lr.has_float_format = 1;
    rq->lr.float_format = f16 ? GTRT__FLOAT_FORMAT__FLOAT_F16 : GTRT__FLOAT_FORMAT__FLOAT_F32;
    for (int s = 0; s < q->n; s++) {
        Gtrt__TeacherSeq *t = &rq->seqs[s];
        gtrt__teacher_seq__init(t);
        t->n_prompt = (size_t)q->n_prompt[s];
        t->prompt = q->prompt[s];
        t->n_answer = (size_t)q->n_answer[s];
        t->answer = q->answer[s];
        t->has_image_c = t->has_image_h = t->has_image_w = 1;
        t->image_c = (uint32_t)it.mc.image_c;
        t->image_h = (uint32_t)it.mc.image_h;
        t->image_w = (uint32_t)it.mc.image_w;
        t->has_score_begin = t->has_score_end = 1;
        t->score_begin = (uint32_t)q->begin[s];
        t->score_end = (uint32_t)q->end[s];
        rq->ptrs[s] = t;
        rq->imgs[s] = (wire_slice){q->image[s], img_n};
    }
    rq->lr.n_seqs = (size_t)q->n;
    rq->lr.seqs = rq->ptrs;
}

static float frame_value(const wire_slice *f, size_t i, bool f16)
{
    const uint8_t *b = f->data;
    if (f16)
        return half_to_float((uint16_t)(b[2 * i] | b[2 * i + 1] << 8));
    uint32_t u = (uint32_t)b[4 * i] | (uint32_t)b[4 * i + 1] << 8 | (uint32_t)b[4 * i + 2] << 16 |
                 (uint32_t)b[4 * i + 3] << 24;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* Ask the teacher for `mode` at `T` and compare with a direct forward of
 * `m` on the same batch: sampled against model_forward's own logprob
 * (max abs diff 1e-6), full and top-k against the log-softmax of its raw
 * logits in double precision; float16 within half a float16 step. */
static void check_logits(model *m, query *q, int mode, float T, int k, bool f16,
                         uint64_t want_version)
{
    request rq;
    request_make(&rq, q, mode, T, k, f16);
    reply r;
    call(GTRT__MSG_TYPE__MSG_LOGITS_REQUEST, &rq.lr.base, rq.imgs, (size_t)q->n, &r);
    if (r.m.type == GTRT__MSG_TYPE__MSG_ERROR)
        cr_assert_fail("teacher refused a good request: %s",
                       ((const Gtrt__Error *)r.m.body)->message);
    cr_assert_eq(r.m.type, GTRT__MSG_TYPE__MSG_LOGITS_REPLY);
    const Gtrt__LogitsReply *lr = (const Gtrt__LogitsReply *)r.m.body;
    cr_assert_eq(lr->teacher_version, want_version);
    cr_assert_eq(lr->n_results, (size_t)q->n);
    cr_assert_eq(r.m.npayload, (size_t)q->n);
    cr_assert_eq(lr->vocab, (uint32_t)m->cfg.vocab_size);
    model_seq ms[MAX_SEQS];
    for (int s = 0; s < q->n; s++)
        ms[s] = (model_seq){q->fimage[s], q->tokens[s], q->n_prompt[s] + q->n_answer[s],
                            q->n_prompt[s]};
    model_batch b = {ms, q->n, T > 0 ? T : 1.0f};
    model_out o;
    err e = {0};
    cr_assert_eq(model_forward(m, &b, &o, &e), 0, "%s", e.msg);
    int V = o.vocab;
    for (int s = 0; s < q->n; s++) {
        int npos = q->end[s] - q->begin[s];
        size_t width = mode == 0 ? 1 : mode == 1 ? (size_t)k : (size_t)V;
        cr_assert_eq(lr->results[s]->positions, (uint32_t)npos);
        cr_assert_eq(r.m.payload[s].len, (size_t)npos * width * (f16 ? 2 : 4));
        for (int p = 0; p < npos; p++) {
            int row = o.first[s] + q->begin[s] + p;
            const float *z = o.logits + (size_t)row * V;
            double invT = 1.0 / (double)b.temperature, mx = -INFINITY, sum = 0;
            for (int j = 0; j < V; j++)
                mx = fmax(mx, z[j] * invT);
            for (int j = 0; j < V; j++)
                sum += exp(z[j] * invT - mx);
            for (size_t c = 0; c < width; c++) {
                float got = frame_value(&r.m.payload[s], (size_t)p * width + c, f16);
                double want;
                if (mode == 0) {
                    want = o.logprob[row];
                } else {
                    int j = mode == 1 ? (int)lr->results[s]->topk_ids[(size_t)p * k + c] : (int)c;
                    cr_assert_lt(j, V);
                    want = z[j] * invT - mx - log(sum);
                }
                double tol = f16 ? ldexp(1.0, ilogb(want) - 11) + 1e-6 : mode == 0 ? 1e-6 : 1e-5;
                if (fabs(got - want) > tol)
                    cr_assert_fail("mode %d seq %d pos %d col %zu: teacher %g, direct %g", mode, s,
                                   p, c, got, want);
            }
        }
    }
    reply_clear(&r);
}

static void check_all_modes(model *m, query *q, uint64_t version)
{
    check_logits(m, q, 0, 0.0f, 0, false, version);
    check_logits(m, q, 0, 0.7f, 0, false, version);
    check_logits(m, q, 2, 1.3f, 0, false, version);
    check_logits(m, q, 2, 1.0f, 0, true, version);
    check_logits(m, q, 1, 1.0f, 5, false, version);
    check_logits(m, q, 1, 0.5f, 3, true, version);
}

/* ==== generation against direct sampling ==== */

static void check_generate(model *m, query *q, uint64_t version)
{
    request rq;
    request_make(&rq, q, 0, 0, 0, false);
    Gtrt__GenerateRequest gr = GTRT__GENERATE_REQUEST__INIT;
    gr.has_temperature = gr.has_top_k = gr.has_max_new = gr.has_seed = 1;
    gr.temperature = 0.9f;
    gr.top_k = 7;
    gr.max_new = 12;
    gr.seed = 4242;
    gr.n_seqs = (size_t)q->n;
    gr.seqs = rq.ptrs;
    for (int s = 0; s < q->n; s++)
        rq.seqs[s].n_answer = 0; /* ignored by generate */
    reply r1, r2;
    call(GTRT__MSG_TYPE__MSG_GENERATE_REQUEST, &gr.base, rq.imgs, (size_t)q->n, &r1);
    call(GTRT__MSG_TYPE__MSG_GENERATE_REQUEST, &gr.base, rq.imgs, (size_t)q->n, &r2);
    cr_assert_eq(r1.m.type, GTRT__MSG_TYPE__MSG_GENERATE_REPLY, "generate refused");
    const Gtrt__GenerateReply *a = (const Gtrt__GenerateReply *)r1.m.body;
    const Gtrt__GenerateReply *b = (const Gtrt__GenerateReply *)r2.m.body;
    cr_assert_eq(a->teacher_version, version);
    cr_assert_eq(a->n_results, (size_t)q->n);
    /* The same sampling, done here on the expected weights. */
    sampler *smp;
    err e = {0};
    cr_assert_eq(sample_new(&m->cfg, q->n, &smp, &e), 0, "%s", e.msg);
    model_seq ms[MAX_SEQS];
    for (int s = 0; s < q->n; s++)
        ms[s] = (model_seq){q->fimage[s], q->tokens[s], q->n_prompt[s], q->n_prompt[s]};
    sample_config sc = {.temperature = 0.9f, .top_k = 7, .max_new = 12, .end_token = TOK_END};
    rng g;
    rng_init(&g, 4242);
    sample_result res[MAX_SEQS];
    cr_assert_eq(sample_run(smp, m, ms, q->n, &sc, &g, res, &e), 0, "%s", e.msg);
    for (int s = 0; s < q->n; s++) {
        const Gtrt__GenerateResult *x = a->results[s], *y = b->results[s];
        cr_assert_eq(x->n_answer, (size_t)res[s].n, "seq %d: %zu tokens, direct %d", s,
                     x->n_answer, res[s].n);
        cr_assert_eq(x->n_logprob, x->n_answer);
        cr_assert_eq(x->kind.len, x->n_answer);
        cr_assert_eq(y->n_answer, x->n_answer, "same seed, different answer");
        uint8_t kinds[64];
        tok_answer_parts(res[s].tokens, res[s].n, kinds);
        for (int t = 0; t < res[s].n; t++) {
            cr_assert_eq(x->answer[t], (uint32_t)res[s].tokens[t], "seq %d token %d", s, t);
            cr_assert_eq(y->answer[t], x->answer[t]);
            cr_assert_float_eq(x->logprob[t], res[s].logprobs[t], 1e-6);
            cr_assert_eq(x->kind.data[t], kinds[t]);
        }
    }
    sample_free(smp);
    reply_clear(&r1);
    reply_clear(&r2);
}

/* ==== bad requests ==== */

static void expect_error(const ProtobufCMessage *body, uint32_t type, const wire_slice *imgs,
                         size_t n, uint32_t code, const char *needle)
{
    reply r;
    call(type, body, imgs, n, &r);
    cr_assert_eq(r.m.type, GTRT__MSG_TYPE__MSG_ERROR, "a bad request (%s) was served", needle);
    const Gtrt__Error *er = (const Gtrt__Error *)r.m.body;
    cr_expect_eq(er->code, code, "code %u for '%s' (%s)", er->code, needle,
                 er->message ? er->message : "");
    cr_expect(er->message && strstr(er->message, needle), "message '%s' does not name '%s'",
              er->message ? er->message : "", needle);
    reply_clear(&r);
}

static int check_bad_requests(query *q)
{
    request rq;
    int errors = 0;
#define BAD(code, needle)                                                                        \
    do {                                                                                          \
        expect_error(&rq.lr.base, GTRT__MSG_TYPE__MSG_LOGITS_REQUEST, rq.imgs, rq.lr.n_seqs,     \
                     code, needle);                                                               \
        errors++;                                                                                 \
        request_make(&rq, q, 0, 0, 0, false);                                                    \
    } while (0)
    request_make(&rq, q, 0, 0, 0, false);
    uint32_t bad_ids[512];
    rq.seqs[1].answer = bad_ids;
    memcpy(bad_ids, q->answer[1], sizeof(uint32_t) * 3);
    bad_ids[2] = (uint32_t)it.mc.vocab_size;
    BAD(9, "outside the vocabulary");
    for (int i = 0; i < 512; i++)
        bad_ids[i] = 5;
    rq.seqs[0].prompt = bad_ids;
    rq.seqs[0].n_prompt = (size_t)model_config_max_text(&it.mc);
    BAD(9, "do not fit the model");
    rq.seqs[2].image_h = (uint32_t)it.mc.image_h + 1;
    BAD(1, "the model takes");
    rq.imgs[1].len--;
    BAD(1, "image frame has");
    request_make(&rq, q, 1, 0, 0, false);
    BAD(9, "top_k 0");
    request_make(&rq, q, 1, 0, 65, false);
    BAD(9, "top_k 65");
    rq.lr.has_temperature = 1;
    rq.lr.temperature = -1.0f;
    BAD(9, "temperature -1");
    rq.lr.mode = (Gtrt__LogitsMode)7;
    BAD(1, "unknown logits mode");
    rq.seqs[0].score_begin = 3;
    rq.seqs[0].score_end = 3;
    BAD(9, "score range");
    for (int s = q->n; s < MAX_SEQS + 1; s++) { /* one sequence too many */
        rq.seqs[s] = rq.seqs[0];
        rq.ptrs[s] = &rq.seqs[s];
        rq.imgs[s] = rq.imgs[0];
    }
    rq.lr.n_seqs = MAX_SEQS + 1;
    BAD(9, "teacher.max_seqs");
    for (int s = 0; s < 3; s++) { /* 3 x 110 text tokens: over teacher.max_tokens */
        rq.seqs[s].prompt = bad_ids;
        rq.seqs[s].n_prompt = 100;
        rq.seqs[s].answer = bad_ids;
        rq.seqs[s].n_answer = 10;
        rq.seqs[s].score_begin = 0;
        rq.seqs[s].score_end = 0;
    }
    BAD(9, "teacher.max_tokens");
    rq.lr.n_seqs = 0;
    BAD(1, "no sequences");
    expect_error(&rq.lr.base, GTRT__MSG_TYPE__MSG_LOGITS_REQUEST, rq.imgs, 2, 1, "image frames");
    errors++;
    request_make(&rq, q, 0, 0, 0, false);
    rq.lr.has_min_version = 1;
    rq.lr.min_version = 99;
    BAD(11, "wants at least 99");
    Gtrt__GenerateRequest gr = GTRT__GENERATE_REQUEST__INIT;
    gr.has_max_new = 1;
    gr.max_new = 0;
    gr.n_seqs = rq.lr.n_seqs;
    gr.seqs = rq.ptrs;
    expect_error(&gr.base, GTRT__MSG_TYPE__MSG_GENERATE_REQUEST, rq.imgs, gr.n_seqs, 9, "max_new");
    errors++;
    Gtrt__CkptChunkRequest wrong = GTRT__CKPT_CHUNK_REQUEST__INIT; /* not a teacher's business */
    expect_error(&wrong.base, GTRT__MSG_TYPE__MSG_CKPT_CHUNK_REQUEST, NULL, 0, 8, "does not serve");
    errors++;
#undef BAD
    return errors;
}

/* Bytes that are not a valid envelope: counted and dropped, no answer. */
static void send_garbage(void)
{
    uint8_t junk[40];
    for (int i = 0; i < 40; i++)
        junk[i] = (uint8_t)(i * 53 + 7);
    zmq_send(it.client, junk, sizeof junk, 0);
    Gtrt__Header h = GTRT__HEADER__INIT;
    h.has_schema_version = h.has_role = h.has_type = h.has_request_id = 1;
    h.schema_version = WIRE_SCHEMA_VERSION;
    h.role = GTRT__ROLE__ROLE_CLIENT;
    h.sender_id = "test-client";
    h.type = GTRT__MSG_TYPE__MSG_LOGITS_REQUEST;
    h.request_id = ++it.next_rid;
    uint8_t hdr[256];
    size_t hl = gtrt__header__pack(&h, hdr);
    uint8_t body[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    zmq_send(it.client, hdr, hl, ZMQ_SNDMORE);
    zmq_send(it.client, body, sizeof body, 0);
}

/* ==== batching several clients ==== */

/* One sequence of q as its own request body (sequence s). */
static void one_seq(request *rq, query *q, int s, int mode, float T, int k)
{
    request_make(rq, q, mode, T, k, false);
    rq->ptrs[0] = &rq->seqs[s];
    rq->imgs[0] = rq->imgs[s];
    rq->lr.n_seqs = 1;
}

/* Expected values of sequence s alone, for `mode` at T (k for top-k). */
static void expect_alone(model *m, query *q, int s, float T, const Gtrt__LogitsReply *lr,
                         const wire_slice *frame, int mode, int k)
{
    model_seq ms = {q->fimage[s], q->tokens[s], q->n_prompt[s] + q->n_answer[s], q->n_prompt[s]};
    model_batch b = {&ms, 1, T};
    model_out o;
    err e = {0};
    cr_assert_eq(model_forward(m, &b, &o, &e), 0, "%s", e.msg);
    int V = o.vocab, npos = q->end[s] - q->begin[s];
    cr_assert_eq(lr->results[0]->positions, (uint32_t)npos);
    for (int p = 0; p < npos; p++) {
        int row = q->begin[s] + p;
        const float *z = o.logits + (size_t)row * V;
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j < V; j++)
            mx = fmax(mx, z[j] / (double)T);
        for (int j = 0; j < V; j++)
            sum += exp(z[j] / (double)T - mx);
        for (int c = 0; c < (mode == 1 ? k : 1); c++) {
            double want = mode == 0 ? o.logprob[row]
                                    : z[lr->results[0]->topk_ids[(size_t)p * k + c]] / (double)T -
                                          mx - log(sum);
            float got = frame_value(frame, (size_t)p * (mode == 1 ? k : 1) + c, false);
            /* Batched with other clients' sequences: float rounding of the
             * forward pass itself differs a little (test_model: 1e-5). */
            cr_assert(fabs(got - want) <= 1e-5, "seq %d pos %d: %g vs %g", s, p, got, want);
        }
    }
}

/* Three clients' requests (two logits of different modes, one generate)
 * go into one batch; a fourth finds the queue full. The second teacher
 * runs with max_batch 4, max_queue 3 and a long max_wait, so the batch
 * starts only when the wait ends: nothing here races the timer. */
static void check_batching(model *m, query *q, const char *ep)
{
    void *c[4];
    char ids[4][16];
    for (int i = 0; i < 4; i++) {
        c[i] = dealer(ep);
        snprintf(ids[i], sizeof ids[i], "client-%d", i);
    }
    request ra, rb, rc, rd;
    one_seq(&ra, q, 0, 0, 0.7f, 0);
    one_seq(&rb, q, 1, 1, 1.0f, 4);
    one_seq(&rc, q, 2, 0, 0, 0);
    one_seq(&rd, q, 0, 0, 0, 0);
    Gtrt__GenerateRequest gr = GTRT__GENERATE_REQUEST__INIT;
    gr.has_seed = gr.has_max_new = 1;
    gr.seed = 5;
    gr.max_new = 10;
    rc.seqs[2].n_answer = 0;
    gr.n_seqs = 1;
    gr.seqs = rc.ptrs;
    send_msg(c[0], GTRT__ROLE__ROLE_CLIENT, ids[0], GTRT__MSG_TYPE__MSG_LOGITS_REQUEST,
             &ra.lr.base, 11, ra.imgs, 1);
    send_msg(c[1], GTRT__ROLE__ROLE_CLIENT, ids[1], GTRT__MSG_TYPE__MSG_LOGITS_REQUEST,
             &rb.lr.base, 12, rb.imgs, 1);
    send_msg(c[2], GTRT__ROLE__ROLE_CLIENT, ids[2], GTRT__MSG_TYPE__MSG_GENERATE_REQUEST,
             &gr.base, 13, rc.imgs, 1);
    reply r[4];
    /* Each client's requests arrive in order on its own connection; the
     * busy refusal is the fourth request to reach the queue only once the
     * other three are in it, so wait for the teacher to have them. */
    for (int waited = 0; waited < WAIT_MS; waited += 50) {
        Gtrt__StatusRequest sreq = GTRT__STATUS_REQUEST__INIT;
        send_msg(c[3], GTRT__ROLE__ROLE_CLIENT, ids[3], GTRT__MSG_TYPE__MSG_STATUS_REQUEST,
                 &sreq.base, 100 + (uint64_t)waited, NULL, 0);
        cr_assert(recv_msg(c[3], 100 + (uint64_t)waited, 10000, &r[3]));
        const Gtrt__StatusReply *st = (const Gtrt__StatusReply *)r[3].m.body;
        double queued = -1;
        for (size_t i = 0; i < st->n_counters; i++)
            if (!strcmp(st->counters[i]->name, "queue_requests"))
                queued = (double)st->counters[i]->value;
        reply_clear(&r[3]);
        if (queued == 3)
            break;
        sleep_ms(50);
    }
    send_msg(c[3], GTRT__ROLE__ROLE_CLIENT, ids[3], GTRT__MSG_TYPE__MSG_LOGITS_REQUEST,
             &rd.lr.base, 14, rd.imgs, 1);
    cr_assert(recv_msg(c[3], 14, 30000, &r[3]));
    cr_assert_eq(r[3].m.type, GTRT__MSG_TYPE__MSG_ERROR, "a request past teacher.max_queue");
    cr_expect_eq(((const Gtrt__Error *)r[3].m.body)->code, 12);
    const char *busy = ((const Gtrt__Error *)r[3].m.body)->message;
    cr_expect(busy && strstr(busy, "busy"), "refused as '%s'", busy ? busy : "");
    reply_clear(&r[3]);
    for (int i = 0; i < 3; i++) {
        cr_assert(recv_msg(c[i], 11 + (uint64_t)i, WAIT_MS, &r[i]), "client %d got no answer", i);
        if (r[i].m.type == GTRT__MSG_TYPE__MSG_ERROR)
            cr_assert_fail("client %d: %s", i, ((const Gtrt__Error *)r[i].m.body)->message);
    }
    expect_alone(m, q, 0, 0.7f, (const Gtrt__LogitsReply *)r[0].m.body, &r[0].m.payload[0], 0, 0);
    expect_alone(m, q, 1, 1.0f, (const Gtrt__LogitsReply *)r[1].m.body, &r[1].m.payload[0], 1, 4);
    /* The generate request sampled alone, whatever else was in the batch. */
    const Gtrt__GenerateReply *g = (const Gtrt__GenerateReply *)r[2].m.body;
    sampler *smp;
    err e = {0};
    cr_assert_eq(sample_new(&m->cfg, 1, &smp, &e), 0, "%s", e.msg);
    model_seq ms = {q->fimage[2], q->tokens[2], q->n_prompt[2], q->n_prompt[2]};
    sample_config sc = {.temperature = 0.2f, .top_k = 5, .max_new = 10, .end_token = TOK_END};
    rng gen;
    rng_init(&gen, 5);
    sample_result res;
    cr_assert_eq(sample_run(smp, m, &ms, 1, &sc, &gen, &res, &e), 0, "%s", e.msg);
    cr_assert_eq(g->results[0]->n_answer, (size_t)res.n);
    for (int t = 0; t < res.n; t++)
        cr_expect_eq(g->results[0]->answer[t], (uint32_t)res.tokens[t]);
    sample_free(smp);
    for (int i = 0; i < 3; i++)
        reply_clear(&r[i]);
    for (int i = 0; i < 4; i++)
        zmq_close(c[i]);
}

Test(teacher, follows_merges_serves_and_catches_up, .timeout = 600, .fini = kill_children)
{
    snprintf(it.dir, sizeof it.dir, "/tmp/gtrt-teach-XXXXXX");
    cr_assert_not_null(mkdtemp(it.dir));
    snprintf(it.learner_ep, sizeof it.learner_ep, "ipc://%s/learner", it.dir);
    snprintf(it.teacher_ep, sizeof it.teacher_ep, "ipc://%s/teacher", it.dir);
    add_set("learner.bind=%s", it.learner_ep);
    add_set("learner.connect=%s", it.learner_ep);
    add_set("learner.publish_bind=ipc://%s/publish", it.dir);
    add_set("learner.publish_connect=ipc://%s/publish", it.dir);
    add_set("teacher.bind=%s", it.teacher_ep);
    add_set("teacher.id=%s", "teacher-t");
    add_set("run.out_dir=%s/runs", it.dir);
    add_set("run.name=%s", "teach");
    add_set("net.heartbeat_ms=%s", "200");
    add_set("net.liveness=%s", "50"); /* the stand-in actor beats only while the test waits */
    add_set("metrics.prometheus_bind=%s", "");
    add_set("metrics.tensorboard=%s", "false");
    add_set("model.preset=%s", "tiny");
    add_set("env.name=%s", "numberline");
    add_set("ppo.num_steps=%s", "4");
    add_set("ppo.minibatch=%s", "4");
    add_set("ppo.epochs=%s", "1");
    add_set("ppo.updates=%s", "0");
    add_set("ppo.lr=%s", "0.01"); /* big steps, so versions differ clearly */
    add_set("ppo.max_policy_lag=%s", "1000");
    add_set("ppo.keep_checkpoints=%s", "100");
    add_set("teacher.max_seqs=%s", "4");
    add_set("teacher.max_tokens=%s", "300");
    it.zctx = zmq_ctx_new();
    it.next_rid = 1000;
    pid_t learner = start("learner", "learner");
    pid_t teacher = start("teacher", "teacher");
    it.client = dealer(it.teacher_ep);
    rng r;
    rng_init(&r, 77);

    /* 1. The base. */
    wait_teacher_version(0);
    char path[256];
    ckpt_path(0, path, sizeof path);
    model *base = load(path);
    it.mc = base->cfg;
    query q;
    query_make(&q, &r);
    check_all_modes(base, &q, 0);
    check_generate(base, &q, 0);

    /* 2. New versions, one at a time: the teacher merges each. */
    actor_register();
    for (uint64_t v = 0; v < 3; v++) {
        publish_next(v, &r);
        wait_teacher_version((double)(v + 1));
    }
    cr_expect_eq(teacher_counter("ckpts_merged"), 3);
    uint64_t all[3] = {1, 2, 3};
    model *m3 = merged(all, 3, "merged-123.safetensors");
    check_all_modes(m3, &q, 3);
    check_generate(m3, &q, 3);

    /* 3. Bad requests: an error each, and the teacher goes on serving. */
    double errors_before = teacher_counter("errors");
    double bad_body_before = teacher_counter("bad_body");
    send_garbage();
    int n_bad = check_bad_requests(&q);
    check_logits(m3, &q, 0, 0.7f, 0, false, 3);
    cr_expect_eq(teacher_counter("errors") - errors_before, n_bad);
    cr_expect_eq(teacher_counter("bad_body") - bad_body_before, 1);

    /* 4. Killed and restarted: base, then the latest (v3) only. */
    forget(teacher);
    kill(teacher, SIGKILL);
    waitpid(teacher, NULL, 0);
    teacher = start("teacher", "teacher");
    wait_teacher_version(3);
    cr_expect_eq(teacher_counter("ckpts_merged"), 1, "a restarted teacher merges the latest only");
    uint64_t latest[1] = {3};
    model *m3only = merged(latest, 1, "merged-3.safetensors");
    check_all_modes(m3only, &q, 3);

    /* 5. A second teacher batches three clients' requests into one batch. */
    int keep = it.nsets;
    char ep_b[160];
    snprintf(ep_b, sizeof ep_b, "ipc://%s/teacher-b", it.dir);
    add_set("teacher.bind=%s", ep_b);
    add_set("teacher.id=%s", "teacher-b");
    add_set("teacher.max_batch=%s", "4");
    add_set("teacher.max_queue=%s", "3");
    add_set("teacher.max_wait_ms=%s", "10000");
    pid_t teacher_b = start("teacher", "teacher-b");
    it.nsets = keep;
    void *main_client = it.client;
    it.client = dealer(ep_b);
    wait_teacher_version(3);
    double batches = teacher_counter("batches");
    check_batching(m3only, &q, ep_b);
    cr_expect_eq(teacher_counter("batches") - batches, 1, "three requests, not one batch");
    cr_expect_eq(teacher_counter("errors_busy"), 1);
    zmq_close(it.client);
    it.client = main_client;
    stop(teacher_b, "teacher-b");

    /* 6. `gtrt status` shows the teacher's figures. */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s status --set learner.connect=%s", GTRT_BIN_PATH, it.learner_ep);
    FILE *p = popen(cmd, "r");
    static char out[1 << 15];
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    cr_expect_eq(pclose(p), 0);
    cr_expect(strstr(out, "teacher teacher-t: merged v3 (sma/ties"), "status says:\n%s", out);
    cr_expect(strstr(out, "latency p50"), "status says:\n%s", out);

    model_free(base);
    model_free(m3);
    model_free(m3only);
    query_free(&q);
    zmq_close(it.client);
    zmq_close(it.actor);
    stop(teacher, "teacher");
    stop(learner, "learner");
    zmq_ctx_term(it.zctx);
    snprintf(cmd, sizeof cmd, "rm -rf %s", it.dir); /* kept when a check failed */
    cr_expect_eq(system(cmd), 0);
}
