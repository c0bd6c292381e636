/* Teacher query service: queue, batches, worker, replies (see serve.h). */
#include "teacher/serve.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/half.h"
#include "common/service.h"
#include "common/tokenizer.h"

static void serve_pump(serve *sv);

/* ==== refusals ==== */

void serve_refuse(serve *sv, const net_route *from, const wire_msg *msg, int code,
                  const char *why)
{
    sv->st.errors++;
    uint64_t rid = msg->hdr->has_request_id ? msg->hdr->request_id : 0;
    log_debug("refused %s %" PRIu64 " from %s: %s", wire_type_name(msg->type), rid,
              msg->hdr->sender_id, why);
    svc_reply_error(sv->sock, from, rid, code, why);
}

/* ==== the queue (a ring of cfg.max_queue) ==== */

static treq *serve_peek(const serve *sv) { return sv->q_len ? sv->queue[sv->q_head] : NULL; }

static treq *serve_pop(serve *sv)
{
    treq *q = sv->queue[sv->q_head];
    sv->q_head = (sv->q_head + 1) % sv->cfg.max_queue;
    sv->q_len--;
    sv->q_seqs -= q->n_seq;
    return q;
}

static void serve_push(serve *sv, treq *q)
{
    sv->queue[(sv->q_head + sv->q_len) % sv->cfg.max_queue] = q;
    sv->q_len++;
    sv->q_seqs += q->n_seq;
}

/* ==== arrival ==== */

static void serve_limits(const serve *sv, const model *m, treq_limits *lim)
{
    *lim = sv->cfg.lim;
    lim->vocab = m->cfg.vocab_size;
    lim->max_seq = m->cfg.max_seq;
    lim->max_text = model_config_max_text(&m->cfg);
    lim->n_patches = model_config_n_patches(&m->cfg);
    lim->img_c = m->cfg.image_c;
    lim->img_h = m->cfg.image_h;
    lim->img_w = m->cfg.image_w;
}

void serve_on_request(serve *sv, const net_route *from, const wire_msg *msg)
{
    if (sv->closed)
        return;
    uint64_t version = 0;
    model *m = sv->model_of(sv->ud, &version);
    if (!m) {
        sv->st.version_refused++;
        serve_refuse(sv, from, msg, GTRT_EVERSION,
                     "teacher has no model yet: waiting for the learner's base checkpoint");
        return;
    }
    treq_limits lim;
    serve_limits(sv, m, &lim);
    treq *q;
    err e = {0};
    int rc = msg->type == GTRT__MSG_TYPE__MSG_LOGITS_REQUEST
                 ? treq_from_logits((const Gtrt__LogitsRequest *)msg->body, msg->payload,
                                    msg->npayload, &lim, &q, &e)
                 : treq_from_generate((const Gtrt__GenerateRequest *)msg->body, msg->payload,
                                      msg->npayload, &lim, &q, &e);
    if (rc) {
        sv->st.bad_requests++;
        serve_refuse(sv, from, msg, rc, e.msg);
        return;
    }
    char why[160];
    if (q->min_version > version) {
        sv->st.version_refused++;
        snprintf(why, sizeof why, "teacher is at version %" PRIu64 ", the request wants at "
                 "least %" PRIu64, version, q->min_version);
        serve_refuse(sv, from, msg, GTRT_EVERSION, why);
        treq_free(q);
        return;
    }
    if (sv->q_len >= sv->cfg.max_queue) {
        sv->st.busy_refused++;
        snprintf(why, sizeof why, "teacher is busy: %zu requests queued (teacher.max_queue); "
                 "try again later or another teacher", sv->q_len);
        serve_refuse(sv, from, msg, GTRT_ESTATE, why);
        treq_free(q);
        return;
    }
    q->request_id = msg->hdr->has_request_id ? msg->hdr->request_id : 0;
    q->from = *from;
    snprintf(q->sender, sizeof q->sender, "%s", msg->hdr->sender_id);
    q->recv_ns = clock_mono_ns();
    serve_push(sv, q);
    serve_pump(sv);
}

/* ==== the worker (libuv's thread pool) ==== */

static void serve_fail(treq *q, int rc, const char *why)
{
    q->rc = rc ? rc : GTRT_EINVAL;
    snprintf(q->why, sizeof q->why, "%s", why);
}

/* Bytes to the floats the model sees, exactly as the actors quantise. */
static void serve_image(const uint8_t *b, size_t n, float *out)
{
    for (size_t k = 0; k < n; k++)
        out[k] = b[k] * (1.0f / 255.0f);
}

/* Every logits request of the batch in one forward pass. */
static void serve_run_logits(serve *sv)
{
    model *m = sv->job_model;
    size_t img_n = (size_t)m->cfg.image_c * m->cfg.image_h * m->cfg.image_w;
    int n = 0;
    for (int i = 0; i < sv->n_job; i++)
        if (sv->job[i]->kind == TREQ_LOGITS && !sv->job[i]->rc)
            n += sv->job[i]->n_seq;
    if (!n)
        return;
    score_seq *ss = malloc((size_t)n * sizeof *ss);
    float *imgs = malloc((size_t)n * img_n * sizeof *imgs);
    err e = {0};
    int rc = ss && imgs ? 0 : err_set(&e, GTRT_ENOMEM, "out of memory for a batch");
    int k = 0;
    for (int i = 0; !rc && i < sv->n_job; i++) {
        treq *q = sv->job[i];
        for (int s = 0; q->kind == TREQ_LOGITS && !q->rc && s < q->n_seq; s++, k++) {
            treq_seq *t = &q->seqs[s];
            serve_image(t->image, img_n, imgs + (size_t)k * img_n);
            ss[k] = (score_seq){imgs + (size_t)k * img_n, t->tokens, t->n_prompt, t->n_tokens,
                                t->begin, t->end, q->mode, q->temperature, q->top_k, t->values,
                                t->ids};
        }
    }
    if (!rc)
        rc = score_run(m, ss, n, &e);
    for (int i = 0; i < sv->n_job; i++) {
        treq *q = sv->job[i];
        for (int s = 0; q->kind == TREQ_LOGITS && !q->rc && s < q->n_seq; s++) {
            treq_seq *t = &q->seqs[s];
            size_t nv = t->n_bytes / (q->f16 ? 2 : 4);
            if (q->f16)
                half_write_f16le(t->bytes, t->values, nv);
            else
                half_write_f32le(t->bytes, t->values, nv);
        }
        if (q->kind == TREQ_LOGITS && !q->rc && rc)
            serve_fail(q, rc, e.msg);
    }
    free(ss);
    free(imgs);
}

/* One generate request: one sampling pass over its sequences. */
static void serve_run_generate(serve *sv, treq *q)
{
    model *m = sv->job_model;
    err e = {0};
    if (!sv->smp && sample_new(&m->cfg, sv->cfg.lim.max_seqs, &sv->smp, &e)) {
        serve_fail(q, e.code, e.msg);
        return;
    }
    size_t img_n = (size_t)m->cfg.image_c * m->cfg.image_h * m->cfg.image_w;
    model_seq *ms = malloc((size_t)q->n_seq * sizeof *ms);
    sample_result *res = malloc((size_t)q->n_seq * sizeof *res);
    float *imgs = malloc((size_t)q->n_seq * img_n * sizeof *imgs);
    int rc = ms && res && imgs ? 0 : err_set(&e, GTRT_ENOMEM, "out of memory for a batch");
    for (int s = 0; !rc && s < q->n_seq; s++) {
        serve_image(q->seqs[s].image, img_n, imgs + (size_t)s * img_n);
        ms[s] = (model_seq){imgs + (size_t)s * img_n, q->seqs[s].tokens, q->seqs[s].n_tokens,
                            q->seqs[s].n_tokens};
    }
    sample_config sc = {.temperature = q->gen_temperature, .top_k = q->gen_top_k,
                        .max_new = q->max_new,
                        .end_token = m->cfg.vocab_size > TOK_END ? TOK_END : -1};
    rng r;
    rng_init(&r, q->seed);
    if (!rc)
        rc = sample_run(sv->smp, m, ms, q->n_seq, &sc, &r, res, &e);
    for (int s = 0; !rc && s < q->n_seq; s++) {
        treq_seq *t = &q->seqs[s];
        t->n_answer = res[s].n;
        memcpy(t->answer, res[s].tokens, (size_t)res[s].n * sizeof *t->answer);
        memcpy(t->logprob, res[s].logprobs, (size_t)res[s].n * sizeof *t->logprob);
        tok_answer_parts(res[s].tokens, res[s].n, t->kind);
    }
    if (rc)
        serve_fail(q, rc, e.msg);
    free(ms);
    free(res);
    free(imgs);
}

static void serve_work_cb(uv_work_t *w)
{
    serve *sv = w->data;
    int V = sv->job_model->cfg.vocab_size;
    for (int i = 0; i < sv->n_job; i++) {
        err e = {0};
        if (treq_alloc_results(sv->job[i], V, &e))
            serve_fail(sv->job[i], e.code, e.msg);
    }
    serve_run_logits(sv);
    for (int i = 0; i < sv->n_job; i++)
        if (sv->job[i]->kind == TREQ_GENERATE && !sv->job[i]->rc)
            serve_run_generate(sv, sv->job[i]);
}

/* ==== replies (on the loop) ==== */

static int serve_send_logits(serve *sv, const treq *q)
{
    Gtrt__LogitsResult *res = calloc((size_t)q->n_seq, sizeof *res);
    Gtrt__LogitsResult **ptrs = calloc((size_t)q->n_seq, sizeof *ptrs);
    wire_slice *frames = calloc((size_t)q->n_seq, sizeof *frames);
    int rc = res && ptrs && frames ? 0 : GTRT_ENOMEM;
    for (int s = 0; !rc && s < q->n_seq; s++) {
        const treq_seq *t = &q->seqs[s];
        gtrt__logits_result__init(&res[s]);
        res[s].has_positions = 1;
        res[s].positions = (uint32_t)(t->end - t->begin);
        if (q->mode == SCORE_TOPK) {
            res[s].n_topk_ids = (size_t)res[s].positions * (size_t)q->top_k;
            res[s].topk_ids = t->ids;
        }
        ptrs[s] = &res[s];
        frames[s] = (wire_slice){t->bytes, t->n_bytes};
    }
    if (!rc) {
        Gtrt__LogitsReply rep = GTRT__LOGITS_REPLY__INIT;
        rep.has_teacher_version = rep.has_mode = rep.has_float_format = rep.has_vocab = 1;
        rep.teacher_version = sv->job_version;
        rep.mode = (Gtrt__LogitsMode)q->mode;
        rep.float_format = q->f16 ? GTRT__FLOAT_FORMAT__FLOAT_F16 : GTRT__FLOAT_FORMAT__FLOAT_F32;
        rep.vocab = (uint32_t)sv->job_model->cfg.vocab_size;
        if (q->mode == SCORE_TOPK) {
            rep.has_top_k = 1;
            rep.top_k = (uint32_t)q->top_k;
        }
        rep.n_results = (size_t)q->n_seq;
        rep.results = ptrs;
        rc = net_send(sv->sock, &q->from, GTRT__MSG_TYPE__MSG_LOGITS_REPLY, &rep.base,
                      q->request_id, frames, (size_t)q->n_seq);
    }
    free(res);
    free(ptrs);
    free(frames);
    return rc;
}

static int serve_send_generate(serve *sv, const treq *q)
{
    Gtrt__GenerateResult *res = calloc((size_t)q->n_seq, sizeof *res);
    Gtrt__GenerateResult **ptrs = calloc((size_t)q->n_seq, sizeof *ptrs);
    int rc = res && ptrs ? 0 : GTRT_ENOMEM;
    for (int s = 0; !rc && s < q->n_seq; s++) {
        const treq_seq *t = &q->seqs[s];
        gtrt__generate_result__init(&res[s]);
        res[s].n_answer = res[s].n_logprob = (size_t)t->n_answer;
        res[s].answer = (uint32_t *)t->answer; /* ids are >= 0 */
        res[s].logprob = t->logprob;
        res[s].has_kind = 1;
        res[s].kind = (ProtobufCBinaryData){(size_t)t->n_answer, t->kind};
        ptrs[s] = &res[s];
    }
    if (!rc) {
        Gtrt__GenerateReply rep = GTRT__GENERATE_REPLY__INIT;
        rep.has_teacher_version = 1;
        rep.teacher_version = sv->job_version;
        rep.n_results = (size_t)q->n_seq;
        rep.results = ptrs;
        rc = net_send(sv->sock, &q->from, GTRT__MSG_TYPE__MSG_GENERATE_REPLY, &rep.base,
                      q->request_id, NULL, 0);
    }
    free(res);
    free(ptrs);
    return rc;
}

static void serve_reply(serve *sv, const treq *q)
{
    if (q->rc) {
        sv->st.compute_failed++;
        sv->st.errors++;
        log_warn("request %" PRIu64 " from %s failed: %s", q->request_id, q->sender, q->why);
        svc_reply_error(sv->sock, &q->from, q->request_id, q->rc, q->why);
        return;
    }
    int rc = q->kind == TREQ_LOGITS ? serve_send_logits(sv, q) : serve_send_generate(sv, q);
    if (rc)
        log_debug("reply to %s not sent (%s)", q->sender, err_str(rc));
    if (q->kind == TREQ_LOGITS)
        sv->st.logits_served++;
    else
        sv->st.generate_served++;
    sv->st.seqs += (uint64_t)q->n_seq;
    sv->st.tokens += (uint64_t)q->n_tokens;
    uint64_t now = clock_mono_ns();
    reqstats_add(&sv->lat, now / 1000000, (now - q->recv_ns) / 1000);
}

static void serve_after_cb(uv_work_t *w, int status)
{
    serve *sv = w->data;
    sv->busy = false;
    for (int i = 0; i < sv->n_job; i++) {
        treq *q = sv->job[i];
        if (status && !q->rc)
            serve_fail(q, GTRT_ESTATE, "the batch was cancelled");
        if (!sv->closed)
            serve_reply(sv, q);
        treq_free(q);
    }
    sv->n_job = 0;
    sv->job_model = NULL;
    if (sv->closed)
        return;
    if (sv->on_idle)
        sv->on_idle(sv->ud);
    serve_pump(sv);
}

/* ==== batching ==== */

/* Take whole requests from the head, up to max_batch sequences (at least
 * one request), and compute them off the loop. */
static void serve_start(serve *sv)
{
    uint64_t version = 0;
    model *m = sv->model_of(sv->ud, &version);
    if (!m)
        return; /* cannot happen: requests are only queued once there is a model */
    int seqs = 0;
    sv->n_job = 0;
    while (sv->q_len && (sv->n_job == 0 || seqs + serve_peek(sv)->n_seq <= sv->cfg.max_batch)) {
        treq *q = serve_pop(sv);
        seqs += q->n_seq;
        sv->job[sv->n_job++] = q;
    }
    sv->busy = true;
    sv->job_model = m;
    sv->job_version = version;
    sv->st.batches++;
    sv->work.data = sv;
    int rc = uv_queue_work(sv->loop, &sv->work, serve_work_cb, serve_after_cb);
    if (rc) { /* the callbacks never run: answer here */
        log_error("cannot start a batch: %s", uv_strerror(rc));
        serve_after_cb(&sv->work, rc);
    }
}

static void serve_timer_cb(uv_timer_t *h) { serve_pump(h->data); }

static void serve_pump(serve *sv)
{
    if (sv->busy || sv->closed)
        return;
    if (!sv->q_len) {
        uv_timer_stop(&sv->timer);
        return;
    }
    uint64_t waited = (clock_mono_ns() - serve_peek(sv)->recv_ns) / 1000000;
    if (sv->q_seqs < sv->cfg.max_batch && waited < sv->cfg.max_wait_ms) {
        uv_timer_start(&sv->timer, serve_timer_cb, sv->cfg.max_wait_ms - waited, 0);
        return;
    }
    uv_timer_stop(&sv->timer);
    serve_start(sv);
}

/* ==== life cycle ==== */

int serve_init(serve *sv, uv_loop_t *loop, net_sock *sock, const serve_config *c,
               serve_model_fn model_of, serve_idle_fn on_idle, void *ud, err *e)
{
    memset(sv, 0, sizeof *sv);
    sv->cfg = *c;
    sv->sock = sock;
    sv->model_of = model_of;
    sv->on_idle = on_idle;
    sv->ud = ud;
    sv->queue = calloc(c->max_queue, sizeof *sv->queue);
    sv->job = calloc(c->max_queue, sizeof *sv->job);
    if (!sv->queue || !sv->job)
        return err_set(e, GTRT_ENOMEM, "out of memory for a queue of %zu requests", c->max_queue);
    uv_timer_init(loop, &sv->timer);
    sv->timer.data = sv;
    sv->loop = loop;
    reqstats_init(&sv->lat, 60000, clock_mono_ms());
    return 0;
}

void serve_close(serve *sv)
{
    if (!sv->loop || sv->closed)
        return;
    sv->closed = true;
    uv_close((uv_handle_t *)&sv->timer, NULL);
    while (sv->q_len)
        treq_free(serve_pop(sv));
}

void serve_deinit(serve *sv)
{
    while (sv->queue && sv->q_len)
        treq_free(serve_pop(sv));
    for (int i = 0; i < sv->n_job; i++)
        treq_free(sv->job[i]);
    free(sv->queue);
    free(sv->job);
    sample_free(sv->smp);
    memset(sv, 0, sizeof *sv);
}
