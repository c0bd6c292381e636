/* The teacher client's own rules, against scripted fake teachers (threads
 * with a ROUTER): requests spread round robin over live teachers; a busy
 * or too-old teacher, a silent one and a reply that does not fit the
 * request each move the call to another attempt; a malformed-request
 * refusal ends the call at once; replies that do not fit (positions, frame
 * sizes, ids, mode, version, counts) are never handed out; float16 values
 * come back as float32. The real teacher is covered by
 * tests/integration/test_logits_cmd.c. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/half.h"
#include "common/net.h"
#include "common/tclient.h"

enum {
    FK_OK,        /* a reply that fits */
    FK_POSITIONS, /* one position too few */
    FK_FRAME,     /* a values frame one byte short */
    FK_TOPK_ID,   /* a top-k id outside the vocabulary */
    FK_MODE,      /* another mode */
    FK_OLD,       /* a version below the request's min_version */
    FK_COUNT,     /* one result too many (generate: kinds missing) */
    FK_BUSY,      /* Error code 12 */
    FK_BADREQ,    /* Error code 9 */
    FK_SILENT,    /* no answer */
};

#define VOCAB 16

typedef struct fake {
    char ep[96];
    const int *script; /* what to do with request i; FK_OK past the end */
    int n_script;
    volatile int served; /* requests seen */
    volatile int stop;
    pthread_t th;
} fake;

static void fake_send(void *s, const net_route *to, uint64_t rid, uint32_t type,
                      const ProtobufCMessage *body, const wire_slice *pl, size_t np)
{
    wire_encoded enc;
    cr_assert_eq(wire_encode(GTRT__ROLE__ROLE_TEACHER, "fake", type, rid, body, np, &enc), 0);
    zmq_send(s, to->id, to->len, ZMQ_SNDMORE);
    zmq_send(s, enc.hdr, enc.hdr_len, ZMQ_SNDMORE);
    zmq_send(s, enc.body, enc.body_len, np ? ZMQ_SNDMORE : 0);
    for (size_t i = 0; i < np; i++)
        zmq_send(s, pl[i].data, pl[i].len, i + 1 < np ? ZMQ_SNDMORE : 0);
    wire_encoded_clear(&enc);
}

static void fake_error(void *s, const net_route *to, uint64_t rid, uint32_t code, const char *msg)
{
    Gtrt__Error er = GTRT__ERROR__INIT;
    er.has_code = 1;
    er.code = code;
    er.message = (char *)msg;
    fake_send(s, to, rid, GTRT__MSG_TYPE__MSG_ERROR, &er.base, NULL, 0);
}

/* Value of position p, column j: what a client must read back. */
static float fake_value(int p, int j) { return -0.1f * (float)(p + 1) - 0.01f * (float)j; }

static void fake_logits(void *s, const net_route *to, uint64_t rid, const Gtrt__LogitsRequest *r,
                        int what)
{
    int k = r->mode == GTRT__LOGITS_MODE__LOGITS_TOPK ? (int)r->top_k : 1;
    int width = r->mode == GTRT__LOGITS_MODE__LOGITS_FULL ? VOCAB : k;
    bool f16 = r->float_format == GTRT__FLOAT_FORMAT__FLOAT_F16;
    Gtrt__LogitsResult res[4], *ptrs[5];
    uint8_t bytes[4][4096];
    uint32_t ids[4][1024];
    wire_slice frames[5];
    size_t n = r->n_seqs;
    for (size_t i = 0; i < n; i++) {
        const Gtrt__TeacherSeq *q = r->seqs[i];
        int pos = (int)((q->score_end ? q->score_end : q->n_answer) - q->score_begin);
        gtrt__logits_result__init(&res[i]);
        res[i].has_positions = 1;
        res[i].positions = (uint32_t)(pos - (what == FK_POSITIONS));
        float v[1024];
        for (int p = 0; p < pos; p++)
            for (int j = 0; j < width; j++) {
                v[p * width + j] = fake_value(p, j);
                ids[i][p * width + j] = (uint32_t)(what == FK_TOPK_ID ? VOCAB : j);
            }
        if (f16)
            half_write_f16le(bytes[i], v, (size_t)(pos * width));
        else
            half_write_f32le(bytes[i], v, (size_t)(pos * width));
        size_t len = (size_t)(pos * width) * (f16 ? 2 : 4);
        frames[i] = (wire_slice){bytes[i], len - (what == FK_FRAME)};
        if (k > 1) {
            res[i].n_topk_ids = (size_t)(pos * k);
            res[i].topk_ids = ids[i];
        }
        ptrs[i] = &res[i];
    }
    if (what == FK_COUNT) {
        ptrs[n] = &res[0];
        frames[n] = frames[0];
        n++;
    }
    Gtrt__LogitsReply rep = GTRT__LOGITS_REPLY__INIT;
    rep.has_teacher_version = rep.has_mode = rep.has_float_format = rep.has_vocab = 1;
    rep.teacher_version = what == FK_OLD ? r->min_version - 1 : r->min_version + 3;
    rep.mode = what == FK_MODE ? (r->mode + 1) % 3 : r->mode;
    rep.float_format = r->float_format;
    rep.vocab = VOCAB;
    rep.has_top_k = k > 1;
    rep.top_k = (uint32_t)k;
    rep.n_results = n;
    rep.results = ptrs;
    fake_send(s, to, rid, GTRT__MSG_TYPE__MSG_LOGITS_REPLY, &rep.base, frames, n);
}

static void fake_generate(void *s, const net_route *to, uint64_t rid,
                          const Gtrt__GenerateRequest *r, int what)
{
    static uint32_t ans[3] = {5, 6, 2};
    static float lp[3] = {-0.5f, -0.25f, -0.125f};
    static uint8_t kind[3] = {1, 2, 1};
    Gtrt__GenerateResult res = GTRT__GENERATE_RESULT__INIT, *ptrs[1] = {&res};
    res.n_answer = res.n_logprob = 3;
    res.answer = ans;
    res.logprob = lp;
    res.has_kind = 1;
    res.kind = (ProtobufCBinaryData){what == FK_COUNT ? 2 : 3, kind};
    Gtrt__GenerateReply rep = GTRT__GENERATE_REPLY__INIT;
    rep.has_teacher_version = 1;
    rep.teacher_version = r->min_version;
    rep.n_results = 1;
    rep.results = ptrs;
    fake_send(s, to, rid, GTRT__MSG_TYPE__MSG_GENERATE_REPLY, &rep.base, NULL, 0);
}

static void fake_answer(fake *f, void *s, const net_route *from, const wire_msg *m)
{
    int what = f->served < f->n_script ? f->script[f->served] : FK_OK;
    f->served++;
    uint64_t rid = m->hdr->request_id;
    if (what == FK_SILENT)
        return;
    if (what == FK_BUSY)
        fake_error(s, from, rid, 12, "teacher is busy: 7 requests queued");
    else if (what == FK_BADREQ)
        fake_error(s, from, rid, 9, "top_k 99 is outside 1..16");
    else if (m->type == GTRT__MSG_TYPE__MSG_LOGITS_REQUEST)
        fake_logits(s, from, rid, (const Gtrt__LogitsRequest *)m->body, what);
    else
        fake_generate(s, from, rid, (const Gtrt__GenerateRequest *)m->body, what);
}

static void *fake_run(void *arg)
{
    fake *f = arg;
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    cr_assert_eq(zmq_bind(s, f->ep), 0);
    while (!f->stop) {
        zmq_pollitem_t it = {.socket = s, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, 20) <= 0)
            continue;
        net_frames fr;
        while (net_frames_recv(s, &fr) == 1) {
            net_route from;
            wire_msg m;
            if (net_frames_decode(&fr, true, &from, &m) == WIRE_OK) {
                fake_answer(f, s, &from, &m);
                wire_msg_clear(&m);
            }
            net_frames_clear(&fr);
        }
    }
    zmq_close(s);
    zmq_ctx_term(ctx);
    return NULL;
}

static char dir[64];

static void fake_start(fake *f, const char *name, const int *script, int n)
{
    memset(f, 0, sizeof *f);
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/gtrt-tclient-XXXXXX");
        cr_assert_not_null(mkdtemp(dir));
    }
    snprintf(f->ep, sizeof f->ep, "ipc://%s/%s", dir, name);
    f->script = script;
    f->n_script = n;
    pthread_create(&f->th, NULL, fake_run, f);
}

static void fake_stop(fake *f)
{
    f->stop = 1;
    pthread_join(f->th, NULL);
    unlink(f->ep + strlen("ipc://"));
    if (rmdir(dir) == 0) /* the last fake for now: the next one makes a new directory */
        dir[0] = '\0';
}

/* ==== helpers ==== */

static uint8_t image[2 * 4 * 4];
static const int32_t prompt[3] = {4, 5, 1}, answer[5] = {7, 8, 9, 10, 2};

static tclient_seq one_seq(void)
{
    return (tclient_seq){image, 2, 4, 4, prompt, 3, answer, 5, 1, 4};
}

static tclient *client(const char *eps, int attempts)
{
    tclient_opts o;
    tclient_opts_default(&o);
    o.timeout_ms = 300;
    o.attempts = attempts;
    o.cooldown_ms = 3600 * 1000;
    tclient *c;
    err e = {0};
    cr_assert_eq(tclient_new(eps, &o, &c, &e), 0, "%s", e.msg);
    return c;
}

static int ask(tclient *c, tclient_mode mode, int k, bool f16, tclient_scores *out, err *e)
{
    tclient_seq s = one_seq();
    tclient_logits_req r = {.mode = mode, .top_k = k, .f16 = f16, .min_version = 2,
                            .seqs = &s, .n_seq = 1};
    return tclient_logits(c, &r, out, e);
}

/* ==== tests ==== */

Test(tclient, reads_every_mode_back)
{
    fake f;
    fake_start(&f, "modes", NULL, 0);
    tclient *c = client(f.ep, 1);
    static const struct { tclient_mode m; int k; bool f16; } cases[] = {
        {TCLIENT_SAMPLED, 0, false}, {TCLIENT_TOPK, 3, false}, {TCLIENT_FULL, 0, false},
        {TCLIENT_SAMPLED, 0, true}, {TCLIENT_TOPK, 2, true}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tclient_scores sc;
        err e = {0};
        cr_assert_eq(ask(c, cases[i].m, cases[i].k, cases[i].f16, &sc, &e), 0, "%s", e.msg);
        int width = cases[i].m == TCLIENT_FULL   ? VOCAB
                    : cases[i].m == TCLIENT_TOPK ? cases[i].k
                                                 : 1;
        cr_assert_eq(sc.width, width);
        cr_assert_eq(sc.teacher_version, 5);
        cr_assert_eq(sc.seqs[0].positions, 3); /* [1, 4) */
        for (int p = 0; p < 3; p++)
            for (int j = 0; j < width; j++) {
                float want = fake_value(p, j);
                if (cases[i].f16)
                    want = half_to_float(half_from_float(want));
                cr_assert_eq(sc.seqs[0].values[p * width + j], want, "case %zu p %d j %d", i, p, j);
                if (cases[i].m == TCLIENT_TOPK)
                    cr_assert_eq(sc.seqs[0].ids[p * width + j], (uint32_t)j);
            }
        cr_assert_eq(sc.seqs[0].ids == NULL, cases[i].m != TCLIENT_TOPK);
        tclient_scores_clear(&sc);
    }
    tclient_free(c);
    fake_stop(&f);
}

Test(tclient, never_hands_out_a_reply_that_does_not_fit)
{
    static const struct { int what; const char *needle; } bad[] = {
        {FK_POSITIONS, "2 positions, asked for 3"}, {FK_FRAME, "value bytes"},
        {FK_TOPK_ID, "outside the vocabulary"}, {FK_MODE, "mode"},
        {FK_OLD, "wants at least 2"}, {FK_COUNT, "results"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fake f;
        char name[16];
        snprintf(name, sizeof name, "bad%zu", i);
        fake_start(&f, name, &bad[i].what, 1);
        tclient *c = client(f.ep, 1);
        tclient_scores sc;
        err e = {0};
        cr_assert_eq(ask(c, TCLIENT_TOPK, 2, false, &sc, &e), GTRT_EPROTO, "case %zu", i);
        cr_assert(strstr(e.msg, "bad reply") && strstr(e.msg, bad[i].needle), "case %zu: %s", i,
                  e.msg);
        cr_assert_null(sc.seqs);
        cr_assert_eq(tclient_get_stats(c)->bad_replies, 1);
        tclient_free(c);
        fake_stop(&f);
    }
}

Test(tclient, retries_busy_silent_and_bad_but_not_refused)
{
    static const int script[] = {FK_BUSY, FK_SILENT, FK_POSITIONS, FK_OK};
    fake f;
    fake_start(&f, "retry", script, 4);
    tclient *c = client(f.ep, 4);
    tclient_scores sc;
    err e = {0};
    cr_assert_eq(ask(c, TCLIENT_SAMPLED, 0, false, &sc, &e), 0, "%s", e.msg);
    const tclient_stats *st = tclient_get_stats(c);
    cr_assert(st->busy_refused == 1 && st->timeouts == 1 && st->bad_replies == 1 &&
              st->attempts == 4 && st->ok == 1);
    tclient_scores_clear(&sc);
    tclient_free(c);
    fake_stop(&f);

    static const int refuse[] = {FK_BADREQ};
    fake_start(&f, "refuse", refuse, 1);
    c = client(f.ep, 3);
    cr_assert_eq(ask(c, TCLIENT_SAMPLED, 0, false, &sc, &e), GTRT_ERANGE);
    cr_assert(strstr(e.msg, "refused the request: top_k 99"), "%s", e.msg);
    cr_assert_eq(tclient_get_stats(c)->attempts, 1, "a bad request was sent again");
    tclient_free(c);
    fake_stop(&f);
}

Test(tclient, spreads_round_robin_and_skips_the_silent)
{
    fake a, b;
    static const int silent[] = {FK_SILENT};
    fake_start(&a, "rr-a", NULL, 0);
    fake_start(&b, "rr-b", NULL, 0);
    char eps[256];
    snprintf(eps, sizeof eps, "%s, %s", a.ep, b.ep);
    tclient *c = client(eps, 2);
    cr_assert_eq(tclient_n_teachers(c), 2);
    for (int i = 0; i < 6; i++) {
        tclient_scores sc;
        err e = {0};
        cr_assert_eq(ask(c, TCLIENT_SAMPLED, 0, false, &sc, &e), 0, "call %d: %s", i, e.msg);
        cr_assert_str_eq(sc.endpoint, i % 2 ? b.ep : a.ep, "call %d", i);
        tclient_scores_clear(&sc);
    }
    cr_assert(a.served == 3 && b.served == 3);
    tclient_free(c);
    fake_stop(&a);
    fake_stop(&b);

    /* A teacher that does not answer is skipped while it cools down. */
    fake_start(&a, "cool-a", silent, 1);
    fake_start(&b, "cool-b", NULL, 0);
    snprintf(eps, sizeof eps, "%s,%s", a.ep, b.ep);
    c = client(eps, 2);
    for (int i = 0; i < 4; i++) {
        tclient_scores sc;
        err e = {0};
        cr_assert_eq(ask(c, TCLIENT_SAMPLED, 0, false, &sc, &e), 0, "%s", e.msg);
        cr_assert_str_eq(sc.endpoint, b.ep);
        tclient_scores_clear(&sc);
    }
    cr_assert(a.served == 1 && b.served == 4);
    tclient_free(c);
    fake_stop(&a);
    fake_stop(&b);
}

Test(tclient, gives_up_after_the_attempts_naming_each_teacher)
{
    static const int silent[] = {FK_SILENT, FK_SILENT, FK_SILENT};
    static const int busy[] = {FK_BUSY, FK_BUSY, FK_BUSY};
    fake a, b;
    fake_start(&a, "dead-a", silent, 3);
    fake_start(&b, "busy-b", busy, 3);
    char eps[256];
    snprintf(eps, sizeof eps, "%s,%s", a.ep, b.ep);
    tclient *c = client(eps, 3);
    tclient_scores sc;
    err e = {0};
    int rc = ask(c, TCLIENT_SAMPLED, 0, false, &sc, &e);
    cr_assert_neq(rc, 0);
    cr_assert(strstr(e.msg, "no teacher served the logits request in 3 attempts") &&
                  strstr(e.msg, a.ep) && strstr(e.msg, b.ep) && strstr(e.msg, "busy") &&
                  strstr(e.msg, "no answer within 300 ms"),
              "%s", e.msg);
    tclient_free(c);
    fake_stop(&a);
    fake_stop(&b);
}

Test(tclient, generate_checks_counts)
{
    static const int script[] = {FK_COUNT};
    fake f;
    fake_start(&f, "gen", script, 1);
    tclient *c = client(f.ep, 2);
    tclient_seq s = one_seq();
    tclient_gen_req r = {.temperature = -1, .top_k = -1, .max_new = 8, .seed = 3,
                         .min_version = 1, .seqs = &s, .n_seq = 1};
    tclient_answers g;
    err e = {0};
    cr_assert_eq(tclient_generate(c, &r, &g, &e), 0, "%s", e.msg);
    cr_assert_eq(tclient_get_stats(c)->bad_replies, 1, "3 tokens with 2 kinds were taken");
    cr_assert_eq(g.n_seq, 1);
    cr_assert_eq(g.seqs[0].n, 3);
    cr_assert(g.seqs[0].ids[0] == 5 && g.seqs[0].ids[2] == 2 && g.seqs[0].kind[1] == 2 &&
              g.seqs[0].logprob[1] == -0.25f);
    tclient_answers_clear(&g);
    r.max_new = 2; /* three tokens back: more than asked for */
    cr_assert_eq(tclient_generate(c, &r, &g, &e), GTRT_EPROTO);
    cr_assert(strstr(e.msg, "at most 2"), "%s", e.msg);
    tclient_free(c);
    fake_stop(&f);
}

Test(tclient, refuses_bad_requests_and_endpoints_locally)
{
    tclient *c;
    tclient_opts o;
    tclient_opts_default(&o);
    err e = {0};
    cr_assert_eq(tclient_new("ipc:///tmp/x,,ipc:///tmp/y", &o, &c, &e), GTRT_EINVAL);
    cr_assert_eq(tclient_new("", &o, &c, &e), GTRT_EINVAL);
    cr_assert_neq(tclient_new("nonsense://x", &o, &c, &e), 0);
    cr_assert_eq(tclient_new("ipc:///tmp/gtrt-tclient-nobody", &o, &c, &e), 0);
    tclient_seq s = one_seq();
    tclient_scores sc;
    s.score_end = 9;
    tclient_logits_req r = {.mode = TCLIENT_SAMPLED, .seqs = &s, .n_seq = 1};
    cr_assert_eq(tclient_logits(c, &r, &sc, &e), GTRT_ERANGE);
    s = one_seq();
    r.mode = TCLIENT_TOPK;
    cr_assert_eq(tclient_logits(c, &r, &sc, &e), GTRT_ERANGE, "top-k without k");
    r.mode = TCLIENT_SAMPLED;
    r.n_seq = 0;
    cr_assert_eq(tclient_logits(c, &r, &sc, &e), GTRT_ERANGE);
    cr_assert_eq(tclient_get_stats(c)->attempts, 0, "a bad request went out");
    tclient_free(c);
}
