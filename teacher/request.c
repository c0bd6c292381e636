/* Checking and copying teacher requests (see request.h). */
#include "teacher/request.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TREQ_MAX_TEMPERATURE 100.0f
#define TREQ_MAX_NEW 4096

/* ==== checks shared by both kinds ==== */

static int treq_check_count(size_t n_seqs, size_t npayload, const treq_limits *lim, err *e)
{
    if (n_seqs == 0)
        return err_set(e, GTRT_EINVAL, "request has no sequences");
    if (n_seqs > (size_t)lim->max_seqs)
        return err_set(e, GTRT_ERANGE, "request has %zu sequences, at most %d are taken "
                       "(teacher.max_seqs)", n_seqs, lim->max_seqs);
    if (npayload != n_seqs)
        return err_set(e, GTRT_EINVAL, "request has %zu sequences but %zu image frames (one "
                       "per sequence)", n_seqs, npayload);
    return 0;
}

static int treq_check_temperature(float t, err *e)
{
    if (!isfinite(t) || t < 0.0f || t > TREQ_MAX_TEMPERATURE)
        return err_set(e, GTRT_ERANGE, "temperature %g is outside [0, %g]", (double)t,
                       (double)TREQ_MAX_TEMPERATURE);
    return 0;
}

static int treq_check_ids(const uint32_t *ids, size_t n, int i, const char *what,
                          const treq_limits *lim, err *e)
{
    for (size_t t = 0; t < n; t++)
        if (ids[t] >= (uint32_t)lim->vocab)
            return err_set(e, GTRT_ERANGE, "sequence %d: %s token %zu is %u, outside the "
                           "vocabulary [0, %d)", i, what, t, ids[t], lim->vocab);
    return 0;
}

static int treq_check_image(const Gtrt__TeacherSeq *s, const wire_slice *img, int i,
                            const treq_limits *lim, err *e)
{
    if (!s->has_image_c || !s->has_image_h || !s->has_image_w ||
        s->image_c != (uint32_t)lim->img_c || s->image_h != (uint32_t)lim->img_h ||
        s->image_w != (uint32_t)lim->img_w)
        return err_set(e, GTRT_EINVAL, "sequence %d: image is %ux%ux%u (CxHxW), the model takes "
                       "%dx%dx%d", i, s->image_c, s->image_h, s->image_w, lim->img_c,
                       lim->img_h, lim->img_w);
    size_t want = (size_t)lim->img_c * lim->img_h * lim->img_w;
    if (img->len != want)
        return err_set(e, GTRT_EINVAL, "sequence %d: image frame has %zu bytes, a %dx%dx%d "
                       "uint8 image has %zu", i, img->len, lim->img_c, lim->img_h, lim->img_w,
                       want);
    return 0;
}

/* Prompt (+ answer) ids, lengths and image of sequence i. A prompt to
 * continue (no answer) must leave room for at least one new token. */
static int treq_check_seq(const Gtrt__TeacherSeq *s, const wire_slice *img, int i, bool answer,
                          const treq_limits *lim, err *e)
{
    if (s->n_prompt == 0)
        return err_set(e, GTRT_EINVAL, "sequence %d has an empty prompt", i);
    size_t n = s->n_prompt + (answer ? s->n_answer : 0);
    if (answer && s->n_answer == 0)
        return err_set(e, GTRT_EINVAL, "sequence %d has no answer tokens to score", i);
    size_t room = answer ? 0 : 1;
    if (n + room > (size_t)lim->max_text ||
        n + room + (size_t)lim->n_patches > (size_t)lim->max_seq)
        return err_set(e, GTRT_ERANGE, "sequence %d: %zu text tokens%s do not fit the model "
                       "(max_seq %d with %d image tokens)", i, n,
                       answer ? "" : " and one generated", lim->max_seq, lim->n_patches);
    int rc = treq_check_ids(s->prompt, s->n_prompt, i, "prompt", lim, e);
    if (!rc && answer)
        rc = treq_check_ids(s->answer, s->n_answer, i, "answer", lim, e);
    return rc ? rc : treq_check_image(s, img, i, lim, e);
}

/* ==== building ==== */

static treq *treq_new(int n_seq, treq_kind kind)
{
    treq *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->kind = kind;
    q->n_seq = n_seq;
    q->seqs = calloc((size_t)n_seq, sizeof *q->seqs);
    if (!q->seqs) {
        free(q);
        return NULL;
    }
    return q;
}

/* Copy ids and image of a checked sequence. */
static int treq_copy_seq(treq_seq *d, const Gtrt__TeacherSeq *s, const wire_slice *img,
                         bool answer)
{
    size_t n = s->n_prompt + (answer ? s->n_answer : 0);
    d->tokens = malloc(n * sizeof *d->tokens);
    d->image = malloc(img->len);
    if (!d->tokens || !d->image)
        return GTRT_ENOMEM;
    for (size_t t = 0; t < s->n_prompt; t++)
        d->tokens[t] = (int32_t)s->prompt[t];
    for (size_t t = 0; answer && t < s->n_answer; t++)
        d->tokens[s->n_prompt + t] = (int32_t)s->answer[t];
    memcpy(d->image, img->data, img->len);
    d->n_prompt = (int)s->n_prompt;
    d->n_tokens = (int)n;
    return 0;
}

/* Bytes of a protobuf varint holding v. */
static size_t treq_varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* ==== logits ==== */

static int treq_logits_options(const Gtrt__LogitsRequest *r, const treq_limits *lim, treq *q,
                               err *e)
{
    int mode = r->has_mode ? (int)r->mode : SCORE_SAMPLED;
    if (mode < SCORE_SAMPLED || mode > SCORE_FULL)
        return err_set(e, GTRT_EINVAL, "unknown logits mode %d (0 sampled, 1 topk, 2 full)", mode);
    q->mode = (score_mode)mode;
    int ff = r->has_float_format ? (int)r->float_format : GTRT__FLOAT_FORMAT__FLOAT_F32;
    if (ff != GTRT__FLOAT_FORMAT__FLOAT_F32 && ff != GTRT__FLOAT_FORMAT__FLOAT_F16)
        return err_set(e, GTRT_EINVAL, "unknown float format %d (0 float32, 1 float16)", ff);
    q->f16 = ff == GTRT__FLOAT_FORMAT__FLOAT_F16;
    float t = r->has_temperature ? r->temperature : 0.0f;
    int rc = treq_check_temperature(t, e);
    if (rc)
        return rc;
    q->temperature = t > 0.0f ? t : 1.0f;
    if (q->mode == SCORE_TOPK) {
        int kmax = lim->vocab < SCORE_MAX_TOPK ? lim->vocab : SCORE_MAX_TOPK;
        if (!r->has_top_k || r->top_k < 1 || r->top_k > (uint32_t)kmax)
            return err_set(e, GTRT_ERANGE, "top_k %u is outside 1..%d", r->has_top_k ? r->top_k : 0,
                           kmax);
        q->top_k = (int)r->top_k;
    }
    q->min_version = r->has_min_version ? r->min_version : 0;
    return 0;
}

static int treq_logits_range(const Gtrt__TeacherSeq *s, int i, treq_seq *d, err *e)
{
    uint32_t n = (uint32_t)s->n_answer;
    uint32_t begin = s->has_score_begin ? s->score_begin : 0;
    uint32_t end = s->has_score_end && s->score_end ? s->score_end : n;
    if (begin >= end || end > n)
        return err_set(e, GTRT_ERANGE, "sequence %d: score range [%u, %u) is empty or outside "
                       "its %u answer tokens", i, begin, end, n);
    d->begin = (int)begin;
    d->end = (int)end;
    return 0;
}

/* The reply must fit what a client takes: each values frame under
 * net.max_msg_bytes, the top-k ids (in the body) under the reply's cap. */
static int treq_logits_reply_size(const treq *q, const treq_limits *lim, err *e)
{
    size_t width = score_width(q->mode, q->top_k, lim->vocab);
    size_t body = 64, per_id = treq_varint_len((uint64_t)lim->vocab);
    for (int i = 0; i < q->n_seq; i++) {
        size_t n = (size_t)(q->seqs[i].end - q->seqs[i].begin);
        size_t frame = n * width * (q->f16 ? 2 : 4);
        if (frame > lim->max_frame_bytes)
            return err_set(e, GTRT_ERANGE, "sequence %d: the reply would carry %zu bytes, more "
                           "than net.max_msg_bytes (%zu); score fewer positions", i, frame,
                           lim->max_frame_bytes);
        body += 16 + (q->mode == SCORE_TOPK ? n * (size_t)q->top_k * per_id : 0);
    }
    size_t cap = wire_body_cap(GTRT__MSG_TYPE__MSG_LOGITS_REPLY);
    if (body > cap)
        return err_set(e, GTRT_ERANGE, "the top-k ids would take %zu bytes, more than a reply "
                       "holds (%zu); ask fewer positions or a smaller k", body, cap);
    return 0;
}

int treq_from_logits(const Gtrt__LogitsRequest *r, const wire_slice *payload, size_t npayload,
                     const treq_limits *lim, treq **out, err *e)
{
    *out = NULL;
    int rc = treq_check_count(r->n_seqs, npayload, lim, e);
    for (size_t i = 0; !rc && i < r->n_seqs; i++)
        rc = treq_check_seq(r->seqs[i], &payload[i], (int)i, true, lim, e);
    if (rc)
        return rc;
    treq *q = treq_new((int)r->n_seqs, TREQ_LOGITS);
    if (!q)
        return err_set(e, GTRT_ENOMEM, "out of memory");
    rc = treq_logits_options(r, lim, q, e);
    for (int i = 0; !rc && i < q->n_seq; i++) {
        rc = treq_logits_range(r->seqs[i], i, &q->seqs[i], e);
        if (!rc && treq_copy_seq(&q->seqs[i], r->seqs[i], &payload[i], true))
            rc = err_set(e, GTRT_ENOMEM, "out of memory");
        q->n_tokens += q->seqs[i].n_tokens;
    }
    if (!rc && q->n_tokens > lim->max_tokens)
        rc = err_set(e, GTRT_ERANGE, "request has %lld tokens, at most %lld are taken "
                     "(teacher.max_tokens)", (long long)q->n_tokens, (long long)lim->max_tokens);
    if (!rc)
        rc = treq_logits_reply_size(q, lim, e);
    if (rc) {
        treq_free(q);
        return rc;
    }
    *out = q;
    return 0;
}

/* ==== generate ==== */

static int treq_generate_options(const Gtrt__GenerateRequest *r, const treq_limits *lim, treq *q,
                                 err *e)
{
    float t = r->has_temperature ? r->temperature : lim->gen_temperature;
    int rc = treq_check_temperature(t, e);
    if (rc)
        return rc;
    q->gen_temperature = t;
    uint32_t k = r->has_top_k ? r->top_k : (uint32_t)lim->gen_top_k;
    q->gen_top_k = k > (uint32_t)lim->vocab ? 0 : (int)k; /* more than all is all */
    uint32_t max_new = r->has_max_new ? r->max_new : (uint32_t)lim->default_max_new;
    if (max_new < 1 || max_new > TREQ_MAX_NEW)
        return err_set(e, GTRT_ERANGE, "max_new %u is outside 1..%d", max_new, TREQ_MAX_NEW);
    q->max_new = (int)max_new;
    q->min_version = r->has_min_version ? r->min_version : 0;
    q->seed = r->has_seed ? r->seed : 0;
    return 0;
}

/* Every sequence gets the same max_new (one sampling pass), cut to what the
 * longest prompt leaves room for, as the actors do. */
static void treq_generate_room(treq *q, const treq_limits *lim)
{
    for (int i = 0; i < q->n_seq; i++) {
        int n = q->seqs[i].n_prompt;
        int room = lim->max_seq - lim->n_patches - n;
        if (lim->max_text - n < room)
            room = lim->max_text - n;
        if (room < q->max_new)
            q->max_new = room; /* >= 1: checked with the sequence */
    }
}

static int treq_generate_reply_size(const treq *q, const treq_limits *lim, err *e)
{
    size_t per_tok = treq_varint_len((uint64_t)lim->vocab) + 4 + 1; /* id, logprob, kind */
    size_t body = 64 + (size_t)q->n_seq * (16 + (size_t)q->max_new * per_tok);
    size_t cap = wire_body_cap(GTRT__MSG_TYPE__MSG_GENERATE_REPLY);
    if (body > cap)
        return err_set(e, GTRT_ERANGE, "%d answers of up to %d tokens may take %zu bytes, more "
                       "than a reply holds (%zu); ask fewer sequences or a smaller max_new",
                       q->n_seq, q->max_new, body, cap);
    return 0;
}

int treq_from_generate(const Gtrt__GenerateRequest *r, const wire_slice *payload,
                       size_t npayload, const treq_limits *lim, treq **out, err *e)
{
    *out = NULL;
    int rc = treq_check_count(r->n_seqs, npayload, lim, e);
    for (size_t i = 0; !rc && i < r->n_seqs; i++)
        rc = treq_check_seq(r->seqs[i], &payload[i], (int)i, false, lim, e);
    if (rc)
        return rc;
    treq *q = treq_new((int)r->n_seqs, TREQ_GENERATE);
    if (!q)
        return err_set(e, GTRT_ENOMEM, "out of memory");
    rc = treq_generate_options(r, lim, q, e);
    for (int i = 0; !rc && i < q->n_seq; i++)
        if (treq_copy_seq(&q->seqs[i], r->seqs[i], &payload[i], false))
            rc = err_set(e, GTRT_ENOMEM, "out of memory");
    if (!rc) {
        treq_generate_room(q, lim);
        for (int i = 0; i < q->n_seq; i++)
            q->n_tokens += q->seqs[i].n_tokens + q->max_new;
        if (q->n_tokens > lim->max_tokens)
            rc = err_set(e, GTRT_ERANGE, "request has %lld prompt and answer tokens, at most "
                         "%lld are taken (teacher.max_tokens)", (long long)q->n_tokens,
                         (long long)lim->max_tokens);
    }
    if (!rc)
        rc = treq_generate_reply_size(q, lim, e);
    if (rc) {
        treq_free(q);
        return rc;
    }
    *out = q;
    return 0;
}

/* ==== results and clean-up ==== */

int treq_alloc_results(treq *q, int vocab, err *e)
{
    for (int i = 0; i < q->n_seq; i++) {
        treq_seq *s = &q->seqs[i];
        if (q->kind == TREQ_LOGITS) {
            size_t n = (size_t)(s->end - s->begin) * score_width(q->mode, q->top_k, vocab);
            s->values = malloc(n * sizeof *s->values);
            s->n_bytes = n * (q->f16 ? 2 : 4);
            s->bytes = malloc(s->n_bytes ? s->n_bytes : 1);
            if (q->mode == SCORE_TOPK)
                s->ids = malloc((size_t)(s->end - s->begin) * (size_t)q->top_k * sizeof *s->ids);
            if (!s->values || !s->bytes || (q->mode == SCORE_TOPK && !s->ids))
                return err_set(e, GTRT_ENOMEM, "out of memory for results");
        } else {
            s->answer = malloc((size_t)q->max_new * sizeof *s->answer);
            s->logprob = malloc((size_t)q->max_new * sizeof *s->logprob);
            s->kind = malloc((size_t)q->max_new);
            if (!s->answer || !s->logprob || !s->kind)
                return err_set(e, GTRT_ENOMEM, "out of memory for results");
        }
    }
    return 0;
}

void treq_free(treq *q)
{
    if (!q)
        return;
    for (int i = 0; i < q->n_seq; i++) {
        treq_seq *s = &q->seqs[i];
        free(s->tokens);
        free(s->image);
        free(s->values);
        free(s->ids);
        free(s->bytes);
        free(s->answer);
        free(s->logprob);
        free(s->kind);
    }
    free(q->seqs);
    free(q);
}
