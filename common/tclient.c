/* Teacher client: round robin over teachers, retry elsewhere, replies
 * checked against the request (see tclient.h). */
#include "common/tclient.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/half.h"
#include "common/rpc.h"

typedef struct tclient_teacher {
    rpc_client rpc;         /* one attempt per call: retries happen across teachers */
    uint64_t skip_until_ms; /* cooling down after a timeout (monotonic ms) */
} tclient_teacher;

struct tclient {
    void *zctx;
    bool own_ctx;
    tclient_opts o;
    char id[WIRE_MAX_ID_LEN + 1];
    int n;
    tclient_teacher t[TCLIENT_MAX_TEACHERS];
    int next; /* round robin cursor */
    tclient_stats st;
};

void tclient_opts_default(tclient_opts *o)
{
    memset(o, 0, sizeof *o);
    o->timeout_ms = 2000;
    o->attempts = 3;
    o->cooldown_ms = 10000;
    o->max_msg_bytes = 4 << 20;
}

const char *tclient_mode_name(tclient_mode m)
{
    static const char *names[] = {"sampled", "topk", "full"};
    return m >= TCLIENT_SAMPLED && m <= TCLIENT_FULL ? names[m] : "unknown";
}

int tclient_n_teachers(const tclient *c) { return c->n; }
const tclient_stats *tclient_get_stats(const tclient *c) { return &c->st; }

/* ==== life cycle ==== */

/* Split "a,b,c" and open one rpc client per endpoint. */
static int tclient_connect_all(tclient *c, const char *endpoints, err *e)
{
    const char *s = endpoints;
    for (;;) {
        size_t len = strcspn(s, ",");
        while (len && (*s == ' ' || *s == '\t')) {
            s++;
            len--;
        }
        while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
            len--;
        if (len == 0)
            return err_set(e, GTRT_EINVAL, "empty teacher endpoint in '%s'", endpoints);
        if (len >= sizeof c->t[0].rpc.endpoint)
            return err_set(e, GTRT_EINVAL, "teacher endpoint '%.40s...' is too long", s);
        if (c->n == TCLIENT_MAX_TEACHERS)
            return err_set(e, GTRT_ERANGE, "more than %d teacher endpoints", TCLIENT_MAX_TEACHERS);
        char ep[256];
        memcpy(ep, s, len);
        ep[len] = '\0';
        int rc = rpc_client_init(&c->t[c->n].rpc, c->zctx, ep, GTRT__ROLE__ROLE_CLIENT,
                                        c->id, c->o.timeout_ms, 1, c->o.max_msg_bytes, c->o.sec, e);
        if (rc)
            return rc;
        c->n++;
        s = strchr(s, ',');
        if (!s)
            return 0;
        s++;
    }
}

int tclient_new(const char *endpoints, const tclient_opts *o, tclient **out, err *e)
{
    *out = NULL;
    if (!endpoints || !endpoints[0])
        return err_set(e, GTRT_EINVAL, "no teacher endpoint given");
    if (o->timeout_ms < 1 || o->attempts < 1 || o->cooldown_ms < 0 || o->max_msg_bytes < 1024)
        return err_set(e, GTRT_EINVAL, "teacher client: timeout %d ms, %d attempts, cool-down %d "
                       "ms or %lld-byte frames out of range", o->timeout_ms, o->attempts,
                       o->cooldown_ms, (long long)o->max_msg_bytes);
    tclient *c = calloc(1, sizeof *c);
    if (!c)
        return err_set(e, GTRT_ENOMEM, "out of memory");
    c->o = *o;
    if (o->id)
        snprintf(c->id, sizeof c->id, "%s", o->id);
    else
        snprintf(c->id, sizeof c->id, "tclient-%ld", (long)getpid());
    c->o.id = NULL;
    if (!wire_id_valid(c->id)) {
        int rc = err_set(e, GTRT_EINVAL, "bad client id '%s' (1..64 of [A-Za-z0-9._:@-])", c->id);
        free(c);
        return rc;
    }
    c->zctx = o->zctx;
    if (!c->zctx) {
        c->zctx = zmq_ctx_new();
        c->own_ctx = true;
    }
    int rc = c->zctx ? tclient_connect_all(c, endpoints, e)
                     : err_set(e, GTRT_ENET, "zmq_ctx_new failed");
    if (rc) {
        tclient_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void tclient_free(tclient *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n; i++)
        rpc_client_deinit(&c->t[i].rpc);
    if (c->own_ctx && c->zctx)
        zmq_ctx_term(c->zctx);
    free(c);
}

/* ==== one call over the teachers ==== */

/* Take a reply: 0 when it fits the request (results stored), 1 when it
 * does not (why says how; nothing stored), GTRT_ENOMEM. */
typedef int (*tclient_take_fn)(const wire_msg *m, void *ud, char *why, size_t cap);

/* The next teacher: round robin over those that have not refused this
 * request and are not cooling down; else the one whose cool-down ends
 * first; else (every one refused) simply the next. */
static int tclient_pick(tclient *c, uint32_t refused)
{
    uint64_t now = clock_mono_ms();
    int best = -1;
    for (int k = 0; k < c->n && best < 0; k++) {
        int i = (c->next + k) % c->n;
        if (!(refused >> i & 1u) && c->t[i].skip_until_ms <= now)
            best = i;
    }
    for (int k = 0; k < c->n && best < 0; k++) {
        int i = (c->next + k) % c->n;
        if (!(refused >> i & 1u) && (best < 0 || c->t[i].skip_until_ms < c->t[best].skip_until_ms))
            best = i;
    }
    if (best < 0)
        best = c->next % c->n;
    c->next = (best + 1) % c->n;
    return best;
}

/* Append "; <endpoint>: <what>" to the story of a failing call. */
static void tclient_note(char *buf, size_t cap, const char *endpoint, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    int k = snprintf(what, sizeof what, "%s: ", endpoint);
    if (k > 0 && (size_t)k < sizeof what)
        vsnprintf(what + k, sizeof what - (size_t)k, fmt, ap);
    va_end(ap);
    if (strstr(buf, what)) /* the same teacher saying the same again */
        return;
    size_t used = strlen(buf);
    if (used + 8 < cap)
        snprintf(buf + used, cap - used, "%s%s", used ? "; " : "", what);
}

static void tclient_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A teacher's error code (positive) as a gtrt error code. */
static int tclient_code(uint32_t code)
{
    return code >= 1 && code <= 12 ? -(int)code : GTRT_EPROTO;
}

/* An error reply. Returns its code as a GTRT_E*; *fatal when the teacher
 * refused the request itself (e says why), so no other teacher would take
 * it either; else the next attempt goes elsewhere. */
static int tclient_error_reply(tclient *c, int i, const rpc_reply *rep, uint32_t *refused,
                               char *story, size_t cap, bool *fatal, err *e)
{
    tclient_teacher *t = &c->t[i];
    const Gtrt__Error *er = (const Gtrt__Error *)rep->msg.body;
    uint32_t code = er->has_code ? er->code : 0;
    const char *msg = er->message ? er->message : "(no message)";
    *fatal = code != TCLIENT_CODE_VERSION && code != TCLIENT_CODE_BUSY;
    if (*fatal)
        return err_set(e, tclient_code(code), "teacher %s refused the request: %s",
                       t->rpc.endpoint, msg);
    *refused |= 1u << i;
    tclient_note(story, cap, t->rpc.endpoint, "%s", msg);
    if (code == TCLIENT_CODE_VERSION) {
        c->st.version_refused++;
        return GTRT_EVERSION;
    }
    c->st.busy_refused++;
    return GTRT_ESTATE;
}

static int tclient_call(tclient *c, uint32_t type, const ProtobufCMessage *body,
                        const wire_slice *payload, size_t npayload, tclient_take_fn take,
                        void *ud, char *endpoint, err *e)
{
    c->st.calls++;
    uint32_t refused = 0; /* teachers that said no to this request */
    char story[sizeof(((err *)0)->msg) - 96] = "";
    int last = GTRT_ETIMEOUT;
    for (int a = 0; a < c->o.attempts; a++) {
        if (a && refused == (1u << c->n) - 1u) /* every teacher busy or too old: let them be */
            tclient_sleep_ms(c->o.timeout_ms / 10 < 100 ? c->o.timeout_ms / 10 : 100);
        int i = tclient_pick(c, refused);
        tclient_teacher *t = &c->t[i];
        rpc_reply rep;
        err ae = {0};
        c->st.attempts++;
        int rc = rpc_call_frames(&t->rpc, type, body, payload, npayload, &rep, &ae);
        if (rc) { /* no answer in time (or no socket): let it cool down */
            c->st.timeouts += rc == GTRT_ETIMEOUT;
            t->skip_until_ms = clock_mono_ms() + (uint64_t)c->o.cooldown_ms;
            tclient_note(story, sizeof story, t->rpc.endpoint, "no answer within %d ms",
                         c->o.timeout_ms);
            last = rc;
            continue;
        }
        if (rep.msg.type == GTRT__MSG_TYPE__MSG_ERROR) {
            bool fatal = false;
            rc = tclient_error_reply(c, i, &rep, &refused, story, sizeof story, &fatal, e);
            rpc_reply_clear(&rep);
            if (fatal)
                return rc;
            last = rc;
            continue;
        }
        char why[200] = "";
        rc = take(&rep.msg, ud, why, sizeof why);
        rpc_reply_clear(&rep);
        if (rc < 0)
            return err_set(e, rc, "out of memory for a teacher's reply");
        if (rc > 0) { /* a teacher that answers nonsense is no better than a silent one */
            c->st.bad_replies++;
            refused |= 1u << i;
            t->skip_until_ms = clock_mono_ms() + (uint64_t)c->o.cooldown_ms;
            tclient_note(story, sizeof story, t->rpc.endpoint, "bad reply (%s)", why);
            last = GTRT_EPROTO;
            continue;
        }
        t->skip_until_ms = 0;
        snprintf(endpoint, 256, "%s", t->rpc.endpoint);
        c->st.ok++;
        return 0;
    }
    const char *what = type == GTRT__MSG_TYPE__MSG_LOGITS_REQUEST ? "logits" : "generate";
    return err_set(e, last, "no teacher served the %s request in %d attempt%s (%d teacher%s): %s",
                   what, c->o.attempts, c->o.attempts == 1 ? "" : "s", c->n, c->n == 1 ? "" : "s",
                   story);
}

/* ==== requests ==== */

/* Protobuf sequences pointing into `ids` (n_seq * per-seq prompt and
 * answer ids as uint32) and image frames. Everything is checked here so a
 * teacher never has to refuse what the client could have caught. */
typedef struct tclient_pb {
    Gtrt__TeacherSeq *seqs;
    Gtrt__TeacherSeq **ptrs;
    uint32_t *ids;
    wire_slice *frames;
} tclient_pb;

static void tclient_pb_free(tclient_pb *p)
{
    free(p->seqs);
    free(p->ptrs);
    free(p->ids);
    free(p->frames);
}

static int tclient_seq_check(const tclient_seq *s, int i, bool answer, err *e)
{
    if (!s->image || s->image_c < 1 || s->image_h < 1 || s->image_w < 1)
        return err_set(e, GTRT_EINVAL, "sequence %d has no image", i);
    if (!s->prompt || s->n_prompt < 1)
        return err_set(e, GTRT_EINVAL, "sequence %d has an empty prompt", i);
    if (!answer)
        return 0;
    if (!s->answer || s->n_answer < 1)
        return err_set(e, GTRT_EINVAL, "sequence %d has no answer tokens to score", i);
    int end = s->score_end ? s->score_end : s->n_answer;
    if (s->score_begin < 0 || s->score_begin >= end || end > s->n_answer)
        return err_set(e, GTRT_ERANGE, "sequence %d: score range [%d, %d) is empty or outside "
                       "its %d answer tokens", i, s->score_begin, end, s->n_answer);
    return 0;
}

static int tclient_ids_copy(uint32_t *dst, const int32_t *src, int n, int i, err *e)
{
    for (int k = 0; k < n; k++) {
        if (src[k] < 0)
            return err_set(e, GTRT_EINVAL, "sequence %d: token %d is negative (%d)", i, k, src[k]);
        dst[k] = (uint32_t)src[k];
    }
    return 0;
}

static int tclient_pb_build(const tclient_seq *seqs, int n, bool answer, tclient_pb *p, err *e)
{
    memset(p, 0, sizeof *p);
    if (n < 1 || n > TCLIENT_MAX_SEQS)
        return err_set(e, GTRT_ERANGE, "%d sequences in one request: 1..%d are possible", n,
                       TCLIENT_MAX_SEQS);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        int rc = tclient_seq_check(&seqs[i], i, answer, e);
        if (rc)
            return rc;
        total += (size_t)seqs[i].n_prompt + (answer ? (size_t)seqs[i].n_answer : 0);
    }
    p->seqs = calloc((size_t)n, sizeof *p->seqs);
    p->ptrs = calloc((size_t)n, sizeof *p->ptrs);
    p->ids = malloc(total * sizeof *p->ids);
    p->frames = calloc((size_t)n, sizeof *p->frames);
    if (!p->seqs || !p->ptrs || !p->ids || !p->frames) {
        tclient_pb_free(p);
        return err_set(e, GTRT_ENOMEM, "out of memory");
    }
    uint32_t *ids = p->ids;
    int rc = 0;
    for (int i = 0; !rc && i < n; i++) {
        const tclient_seq *s = &seqs[i];
        Gtrt__TeacherSeq *t = &p->seqs[i];
        gtrt__teacher_seq__init(t);
        rc = tclient_ids_copy(ids, s->prompt, s->n_prompt, i, e);
        t->prompt = ids;
        t->n_prompt = (size_t)s->n_prompt;
        ids += s->n_prompt;
        if (!rc && answer) {
            rc = tclient_ids_copy(ids, s->answer, s->n_answer, i, e);
            t->answer = ids;
            t->n_answer = (size_t)s->n_answer;
            ids += s->n_answer;
            t->has_score_begin = t->has_score_end = 1;
            t->score_begin = (uint32_t)s->score_begin;
            t->score_end = (uint32_t)s->score_end;
        }
        t->has_image_c = t->has_image_h = t->has_image_w = 1;
        t->image_c = (uint32_t)s->image_c;
        t->image_h = (uint32_t)s->image_h;
        t->image_w = (uint32_t)s->image_w;
        p->ptrs[i] = t;
        p->frames[i] = (wire_slice){s->image, (size_t)s->image_c * s->image_h * s->image_w};
    }
    if (rc)
        tclient_pb_free(p);
    return rc;
}

/* A teacher drops a body over its cap without a word: refuse it here. */
static int tclient_body_fits(const ProtobufCMessage *body, uint32_t type, err *e)
{
    size_t n = protobuf_c_message_get_packed_size(body), cap = wire_body_cap(type);
    if (n > cap)
        return err_set(e, GTRT_ERANGE, "the %s would take %zu bytes, more than a teacher takes "
                       "(%zu); send fewer or shorter sequences", wire_type_name(type), n, cap);
    return 0;
}

/* ==== logits ==== */

typedef struct tclient_lctx {
    const tclient_logits_req *r;
    tclient_scores *out;
} tclient_lctx;

#define TCLIENT_BAD(...) (snprintf(why, cap, __VA_ARGS__), 1)

static int tclient_logits_width(const Gtrt__LogitsReply *rep, const tclient_logits_req *r,
                                int *width, char *why, size_t cap)
{
    if (!rep->has_teacher_version || rep->teacher_version < r->min_version)
        return TCLIENT_BAD("teacher version %llu, the request wants at least %llu",
                           (unsigned long long)rep->teacher_version,
                           (unsigned long long)r->min_version);
    if (!rep->has_mode || (int)rep->mode != (int)r->mode)
        return TCLIENT_BAD("mode %d, asked for %d", (int)rep->mode, (int)r->mode);
    int ff = rep->has_float_format ? (int)rep->float_format : -1;
    if (ff != (r->f16 ? GTRT__FLOAT_FORMAT__FLOAT_F16 : GTRT__FLOAT_FORMAT__FLOAT_F32))
        return TCLIENT_BAD("float format %d, asked for %s", ff, r->f16 ? "float16" : "float32");
    if (!rep->has_vocab || rep->vocab < 1 || rep->vocab > TCLIENT_MAX_VOCAB)
        return TCLIENT_BAD("vocabulary size %u", rep->vocab);
    *width = 1;
    if (r->mode == TCLIENT_TOPK) {
        if (!rep->has_top_k || rep->top_k != (uint32_t)r->top_k || rep->top_k > rep->vocab)
            return TCLIENT_BAD("top_k %u, asked for %d", rep->top_k, r->top_k);
        *width = r->top_k;
    } else if (r->mode == TCLIENT_FULL) {
        *width = (int)rep->vocab;
    }
    return 0;
}

static int tclient_logits_check_seq(const Gtrt__LogitsResult *res, const wire_slice *frame,
                                    const tclient_seq *s, int i, const tclient_logits_req *r,
                                    int width, uint32_t vocab, char *why, size_t cap)
{
    int end = s->score_end ? s->score_end : s->n_answer;
    uint32_t want = (uint32_t)(end - s->score_begin);
    if (!res->has_positions || res->positions != want)
        return TCLIENT_BAD("sequence %d: %u positions, asked for %u", i, res->positions, want);
    size_t bytes = (size_t)want * (size_t)width * (r->f16 ? 2 : 4);
    if (frame->len != bytes)
        return TCLIENT_BAD("sequence %d: %zu value bytes, expected %zu", i, frame->len, bytes);
    size_t n_ids = r->mode == TCLIENT_TOPK ? (size_t)want * (size_t)width : 0;
    if (res->n_topk_ids != n_ids)
        return TCLIENT_BAD("sequence %d: %zu top-k ids, expected %zu", i, res->n_topk_ids, n_ids);
    for (size_t k = 0; k < n_ids; k++)
        if (res->topk_ids[k] >= vocab)
            return TCLIENT_BAD("sequence %d: top-k id %u outside the vocabulary (%u)", i,
                               res->topk_ids[k], vocab);
    return 0;
}

static float tclient_f32le(const uint8_t *b)
{
    uint32_t u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

static int tclient_values_take(tclient_values *v, const Gtrt__LogitsResult *res,
                               const wire_slice *frame, int width, bool f16)
{
    size_t n = (size_t)res->positions * (size_t)width;
    v->positions = (int)res->positions;
    v->values = malloc((n ? n : 1) * sizeof *v->values);
    if (!v->values)
        return GTRT_ENOMEM;
    const uint8_t *b = frame->data;
    for (size_t k = 0; k < n; k++)
        v->values[k] = f16 ? half_to_float((uint16_t)(b[2 * k] | b[2 * k + 1] << 8))
                           : tclient_f32le(b + 4 * k);
    if (res->n_topk_ids) {
        v->ids = malloc(res->n_topk_ids * sizeof *v->ids);
        if (!v->ids)
            return GTRT_ENOMEM;
        memcpy(v->ids, res->topk_ids, res->n_topk_ids * sizeof *v->ids);
    }
    return 0;
}

static int tclient_take_logits(const wire_msg *m, void *ud, char *why, size_t cap)
{
    tclient_lctx *x = ud;
    const tclient_logits_req *r = x->r;
    if (m->type != GTRT__MSG_TYPE__MSG_LOGITS_REPLY)
        return TCLIENT_BAD("a %s instead of a logits reply", wire_type_name(m->type));
    const Gtrt__LogitsReply *rep = (const Gtrt__LogitsReply *)m->body;
    int width;
    if (tclient_logits_width(rep, r, &width, why, cap))
        return 1;
    if (rep->n_results != (size_t)r->n_seq || m->npayload != (size_t)r->n_seq)
        return TCLIENT_BAD("%zu results in %zu frames for %d sequences", rep->n_results,
                           m->npayload, r->n_seq);
    for (int i = 0; i < r->n_seq; i++)
        if (tclient_logits_check_seq(rep->results[i], &m->payload[i], &r->seqs[i], i, r, width,
                                     rep->vocab, why, cap))
            return 1;
    tclient_scores *out = x->out;
    out->teacher_version = rep->teacher_version;
    out->mode = r->mode;
    out->top_k = r->mode == TCLIENT_TOPK ? r->top_k : 0;
    out->vocab = (int)rep->vocab;
    out->width = width;
    out->seqs = calloc((size_t)r->n_seq, sizeof *out->seqs);
    int rc = out->seqs ? 0 : GTRT_ENOMEM;
    out->n_seq = r->n_seq;
    for (int i = 0; !rc && i < r->n_seq; i++)
        rc = tclient_values_take(&out->seqs[i], rep->results[i], &m->payload[i], width, r->f16);
    if (rc)
        tclient_scores_clear(out);
    return rc;
}

static int tclient_logits_body(const tclient_logits_req *r, Gtrt__LogitsRequest *lr, err *e)
{
    if (r->mode < TCLIENT_SAMPLED || r->mode > TCLIENT_FULL)
        return err_set(e, GTRT_EINVAL, "unknown logits mode %d", (int)r->mode);
    if (!isfinite(r->temperature) || r->temperature < 0)
        return err_set(e, GTRT_ERANGE, "temperature %g must be >= 0", (double)r->temperature);
    if (r->mode == TCLIENT_TOPK && r->top_k < 1)
        return err_set(e, GTRT_ERANGE, "top-k needs k >= 1 (got %d)", r->top_k);
    gtrt__logits_request__init(lr);
    lr->has_mode = lr->has_temperature = lr->has_float_format = lr->has_min_version = 1;
    lr->mode = (Gtrt__LogitsMode)r->mode;
    lr->temperature = r->temperature;
    lr->float_format = r->f16 ? GTRT__FLOAT_FORMAT__FLOAT_F16 : GTRT__FLOAT_FORMAT__FLOAT_F32;
    lr->min_version = r->min_version;
    if (r->mode == TCLIENT_TOPK) {
        lr->has_top_k = 1;
        lr->top_k = (uint32_t)r->top_k;
    }
    return 0;
}

int tclient_logits(tclient *c, const tclient_logits_req *r, tclient_scores *out, err *e)
{
    memset(out, 0, sizeof *out);
    Gtrt__LogitsRequest lr;
    int rc = tclient_logits_body(r, &lr, e);
    if (rc)
        return rc;
    tclient_pb pb;
    if ((rc = tclient_pb_build(r->seqs, r->n_seq, true, &pb, e)))
        return rc;
    lr.n_seqs = (size_t)r->n_seq;
    lr.seqs = pb.ptrs;
    rc = tclient_body_fits(&lr.base, GTRT__MSG_TYPE__MSG_LOGITS_REQUEST, e);
    tclient_lctx x = {r, out};
    if (!rc)
        rc = tclient_call(c, GTRT__MSG_TYPE__MSG_LOGITS_REQUEST, &lr.base, pb.frames,
                          (size_t)r->n_seq, tclient_take_logits, &x, out->endpoint, e);
    tclient_pb_free(&pb);
    return rc;
}

void tclient_scores_clear(tclient_scores *s)
{
    for (int i = 0; s->seqs && i < s->n_seq; i++) {
        free(s->seqs[i].values);
        free(s->seqs[i].ids);
    }
    free(s->seqs);
    memset(s, 0, sizeof *s);
}

/* ==== generate ==== */

typedef struct tclient_gctx {
    const tclient_gen_req *r;
    tclient_answers *out;
} tclient_gctx;

static int tclient_gen_check_seq(const Gtrt__GenerateResult *res, int i, int max_new, char *why,
                                 size_t cap)
{
    size_t n = res->n_answer;
    size_t nk = res->has_kind ? res->kind.len : 0;
    if (n > (size_t)max_new)
        return TCLIENT_BAD("sequence %d: %zu answer tokens, at most %d asked for", i, n, max_new);
    if (res->n_logprob != n || nk != n)
        return TCLIENT_BAD("sequence %d: %zu tokens, %zu logprobs, %zu kinds", i, n,
                           res->n_logprob, nk);
    for (size_t t = 0; t < n; t++) {
        if (res->answer[t] > (uint32_t)TCLIENT_MAX_VOCAB)
            return TCLIENT_BAD("sequence %d: token id %u", i, res->answer[t]);
        if (res->kind.data[t] > 2)
            return TCLIENT_BAD("sequence %d: token kind %u", i, res->kind.data[t]);
    }
    return 0;
}

static int tclient_answer_take(tclient_answer *a, const Gtrt__GenerateResult *res)
{
    size_t n = res->n_answer;
    a->n = (int)n;
    a->ids = malloc((n ? n : 1) * sizeof *a->ids);
    a->kind = malloc(n ? n : 1);
    a->logprob = malloc((n ? n : 1) * sizeof *a->logprob);
    if (!a->ids || !a->kind || !a->logprob)
        return GTRT_ENOMEM;
    for (size_t t = 0; t < n; t++)
        a->ids[t] = (int32_t)res->answer[t];
    if (n) {
        memcpy(a->kind, res->kind.data, n);
        memcpy(a->logprob, res->logprob, n * sizeof *a->logprob);
    }
    return 0;
}

static int tclient_take_generate(const wire_msg *m, void *ud, char *why, size_t cap)
{
    tclient_gctx *x = ud;
    const tclient_gen_req *r = x->r;
    if (m->type != GTRT__MSG_TYPE__MSG_GENERATE_REPLY)
        return TCLIENT_BAD("a %s instead of a generate reply", wire_type_name(m->type));
    const Gtrt__GenerateReply *rep = (const Gtrt__GenerateReply *)m->body;
    if (!rep->has_teacher_version || rep->teacher_version < r->min_version)
        return TCLIENT_BAD("teacher version %llu, the request wants at least %llu",
                           (unsigned long long)rep->teacher_version,
                           (unsigned long long)r->min_version);
    if (rep->n_results != (size_t)r->n_seq || m->npayload)
        return TCLIENT_BAD("%zu results (and %zu frames) for %d sequences", rep->n_results,
                           m->npayload, r->n_seq);
    int max_new = r->max_new > 0 ? r->max_new : TCLIENT_MAX_NEW;
    for (int i = 0; i < r->n_seq; i++)
        if (tclient_gen_check_seq(rep->results[i], i, max_new, why, cap))
            return 1;
    tclient_answers *out = x->out;
    out->teacher_version = rep->teacher_version;
    out->seqs = calloc((size_t)r->n_seq, sizeof *out->seqs);
    int rc = out->seqs ? 0 : GTRT_ENOMEM;
    out->n_seq = r->n_seq;
    for (int i = 0; !rc && i < r->n_seq; i++)
        rc = tclient_answer_take(&out->seqs[i], rep->results[i]);
    if (rc)
        tclient_answers_clear(out);
    return rc;
}

static int tclient_gen_body(const tclient_gen_req *r, Gtrt__GenerateRequest *gr, err *e)
{
    if (isnan(r->temperature))
        return err_set(e, GTRT_ERANGE, "temperature is not a number");
    if (r->max_new < 0 || r->max_new > TCLIENT_MAX_NEW)
        return err_set(e, GTRT_ERANGE, "max_new %d is outside 0..%d", r->max_new, TCLIENT_MAX_NEW);
    gtrt__generate_request__init(gr);
    gr->has_temperature = r->temperature >= 0;
    gr->temperature = r->temperature;
    gr->has_top_k = r->top_k >= 0;
    gr->top_k = (uint32_t)(r->top_k >= 0 ? r->top_k : 0);
    gr->has_max_new = r->max_new > 0;
    gr->max_new = (uint32_t)r->max_new;
    gr->has_seed = gr->has_min_version = 1;
    gr->seed = r->seed;
    gr->min_version = r->min_version;
    return 0;
}

int tclient_generate(tclient *c, const tclient_gen_req *r, tclient_answers *out, err *e)
{
    memset(out, 0, sizeof *out);
    Gtrt__GenerateRequest gr;
    int rc = tclient_gen_body(r, &gr, e);
    if (rc)
        return rc;
    tclient_pb pb;
    if ((rc = tclient_pb_build(r->seqs, r->n_seq, false, &pb, e)))
        return rc;
    gr.n_seqs = (size_t)r->n_seq;
    gr.seqs = pb.ptrs;
    rc = tclient_body_fits(&gr.base, GTRT__MSG_TYPE__MSG_GENERATE_REQUEST, e);
    tclient_gctx x = {r, out};
    if (!rc)
        rc = tclient_call(c, GTRT__MSG_TYPE__MSG_GENERATE_REQUEST, &gr.base, pb.frames,
                          (size_t)r->n_seq, tclient_take_generate, &x, out->endpoint, e);
    tclient_pb_free(&pb);
    return rc;
}

void tclient_answers_clear(tclient_answers *a)
{
    for (int i = 0; a->seqs && i < a->n_seq; i++) {
        free(a->seqs[i].ids);
        free(a->seqs[i].kind);
        free(a->seqs[i].logprob);
    }
    free(a->seqs);
    memset(a, 0, sizeof *a);
}
