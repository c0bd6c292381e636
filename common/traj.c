/* Checked conversion of wire steps (see traj.h). */
#include "common/traj.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

static bool traj_ids_ok(const uint32_t *ids, size_t n, uint32_t vocab)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] >= vocab)
            return false;
    return true;
}

static bool traj_kinds_ok(const ProtobufCBinaryData *k, size_t n)
{
    if (k->len != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (k->data[i] > TRAJ_KIND_ACTION)
            return false;
    return true;
}

static bool traj_finite(float x) { return isfinite(x); }

/* Why `pb` cannot be used, or NULL when it can. */
static const char *traj_check(const Gtrt__Step *pb, const wire_slice *image,
                              const traj_limits *lim)
{
    if (!pb->has_episode || !pb->has_policy_version)
        return "missing episode or policy version";
    if (pb->n_answer == 0 || pb->n_prompt == 0)
        return "empty prompt or answer";
    if (pb->n_prompt + pb->n_answer > lim->max_tokens || pb->n_teacher_answer > lim->max_tokens)
        return "sequence longer than the model allows";
    if (!traj_ids_ok(pb->prompt, pb->n_prompt, lim->vocab) ||
        !traj_ids_ok(pb->answer, pb->n_answer, lim->vocab) ||
        !traj_ids_ok(pb->teacher_answer, pb->n_teacher_answer, lim->vocab))
        return "token id outside the vocabulary";
    if (pb->n_logprob != pb->n_answer || !pb->has_kind || !traj_kinds_ok(&pb->kind, pb->n_answer))
        return "logprobs or token kinds do not match the answer";
    if (pb->n_teacher_answer &&
        (!pb->has_teacher_kind || !traj_kinds_ok(&pb->teacher_kind, pb->n_teacher_answer)))
        return "teacher token kinds do not match the teacher answer";
    for (size_t i = 0; i < pb->n_logprob; i++)
        if (!traj_finite(pb->logprob[i]) || pb->logprob[i] > 0)
            return "logprob not finite or positive";
    if (pb->n_teacher_logprob && pb->n_teacher_logprob != pb->n_answer)
        return "teacher logprobs do not match the answer";
    for (size_t i = 0; i < pb->n_teacher_logprob; i++)
        if (!traj_finite(pb->teacher_logprob[i]) || pb->teacher_logprob[i] > 0)
            return "teacher logprob not finite or positive";
    if (!traj_finite(pb->value) || !traj_finite(pb->reward))
        return "value or reward not finite";
    if (!traj_finite(pb->guide_ms) || !traj_finite(pb->act_ms) || pb->guide_ms < 0 ||
        pb->act_ms < 0)
        return "step timings not finite or negative";
    if (pb->image_c != lim->img_c || pb->image_h != lim->img_h || pb->image_w != lim->img_w)
        return "image of the wrong shape";
    if (!image || image->len != (size_t)lim->img_c * lim->img_h * lim->img_w)
        return "image bytes do not match its shape";
    return NULL;
}

int traj_step_from_pb(const Gtrt__Step *pb, const wire_slice *image, const traj_limits *lim,
                      const char *actor, traj_step *out, const char **why)
{
    memset(out, 0, sizeof *out);
    const char *bad = traj_check(pb, image, lim);
    if (bad) {
        *why = bad;
        return GTRT_EINVAL;
    }
    size_t np = pb->n_prompt, na = pb->n_answer, nt = pb->n_teacher_answer, ni = image->len;
    if (traj_step_alloc(out, (uint32_t)np, (uint32_t)na, (uint32_t)nt, ni)) {
        *why = "out of memory";
        return GTRT_ENOMEM;
    }
    for (size_t i = 0; i < np; i++)
        out->prompt[i] = (int32_t)pb->prompt[i];
    for (size_t i = 0; i < na; i++)
        out->answer[i] = (int32_t)pb->answer[i];
    memcpy(out->logprob, pb->logprob, 4 * na);
    out->has_teacher_logprob = pb->n_teacher_logprob == na;
    if (out->has_teacher_logprob)
        memcpy(out->teacher_logprob, pb->teacher_logprob, 4 * na);
    for (size_t i = 0; i < nt; i++)
        out->teacher_answer[i] = (int32_t)pb->teacher_answer[i];
    memcpy(out->kind, pb->kind.data, na);
    if (nt)
        memcpy(out->teacher_kind, pb->teacher_kind.data, nt);
    memcpy(out->image, image->data, ni);
    snprintf(out->actor, sizeof out->actor, "%s", actor);
    snprintf(out->env, sizeof out->env, "%s", pb->env ? pb->env : "");
    out->episode = pb->episode;
    out->turn = pb->turn;
    out->policy_version = pb->policy_version;
    out->value = pb->value;
    out->reward = pb->reward;
    out->teacher_version = pb->teacher_version;
    out->guide_ms = pb->guide_ms;
    out->act_ms = pb->act_ms;
    out->guide_failed = pb->guide_failed;
    out->done = pb->done;
    out->truncated = pb->truncated;
    out->format_valid = pb->format_valid;
    out->success = pb->success;
    return 0;
}

void traj_step_free(traj_step *s)
{
    free(s->mem);
    memset(s, 0, sizeof *s);
}

int traj_step_alloc(traj_step *s, uint32_t np, uint32_t na, uint32_t nt, size_t ni)
{
    memset(s, 0, sizeof *s);
    size_t bytes = 4 * ((size_t)np + na + na + na + nt) + na + nt + ni;
    uint8_t *m = calloc(1, bytes ? bytes : 1);
    if (!m)
        return GTRT_ENOMEM;
    s->mem = m;
    s->prompt = (int32_t *)m;
    s->answer = s->prompt + np;
    s->logprob = (float *)(s->answer + na);
    s->teacher_logprob = s->logprob + na;
    s->teacher_answer = (int32_t *)(s->teacher_logprob + na);
    s->kind = (uint8_t *)(s->teacher_answer + nt);
    s->teacher_kind = s->kind + na;
    s->image = s->teacher_kind + nt;
    s->n_prompt = np;
    s->n_answer = na;
    s->n_teacher = nt;
    return 0;
}

void traj_step_to_pb(const traj_step *s, uint32_t *u32, int img_c, int img_h, int img_w,
                     Gtrt__Step *pb)
{
    gtrt__step__init(pb);
    uint32_t *p = u32, *a = u32 + s->n_prompt, *t = a + s->n_answer;
    for (uint32_t i = 0; i < s->n_prompt; i++)
        p[i] = (uint32_t)s->prompt[i];
    for (uint32_t i = 0; i < s->n_answer; i++)
        a[i] = (uint32_t)s->answer[i];
    for (uint32_t i = 0; i < s->n_teacher; i++)
        t[i] = (uint32_t)s->teacher_answer[i];
    pb->has_episode = pb->has_turn = pb->has_policy_version = 1;
    pb->episode = s->episode;
    pb->turn = s->turn;
    pb->policy_version = s->policy_version;
    pb->env = (char *)s->env;
    pb->n_prompt = s->n_prompt;
    pb->prompt = p;
    pb->n_answer = s->n_answer;
    pb->answer = a;
    pb->n_logprob = s->n_answer;
    pb->logprob = s->logprob;
    pb->has_kind = 1;
    pb->kind.len = s->n_answer;
    pb->kind.data = s->kind;
    pb->has_value = pb->has_reward = pb->has_done = pb->has_truncated = 1;
    pb->value = s->value;
    pb->reward = s->reward;
    pb->done = s->done;
    pb->truncated = s->truncated;
    pb->has_format_valid = pb->has_success = 1;
    pb->format_valid = s->format_valid;
    pb->success = s->success;
    pb->has_image_c = pb->has_image_h = pb->has_image_w = 1;
    pb->image_c = (uint32_t)img_c;
    pb->image_h = (uint32_t)img_h;
    pb->image_w = (uint32_t)img_w;
    if (s->n_teacher) {
        pb->n_teacher_answer = s->n_teacher;
        pb->teacher_answer = t;
        pb->has_teacher_kind = 1;
        pb->teacher_kind.len = s->n_teacher;
        pb->teacher_kind.data = s->teacher_kind;
    }
    if (s->has_teacher_logprob) {
        pb->n_teacher_logprob = s->n_answer;
        pb->teacher_logprob = s->teacher_logprob;
    }
    pb->has_teacher_version = 1;
    pb->teacher_version = s->teacher_version;
    pb->has_guide_ms = pb->has_act_ms = pb->has_guide_failed = 1;
    pb->guide_ms = s->guide_ms;
    pb->act_ms = s->act_ms;
    pb->guide_failed = s->guide_failed;
}
