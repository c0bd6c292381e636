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
    if (!traj_finite(pb->value) || !traj_finite(pb->reward) || !traj_finite(pb->teacher_kl))
        return "value, reward or teacher KL not finite";
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
    size_t bytes = 4 * (np + na + na + nt) + na + nt + ni;
    uint8_t *m = malloc(bytes ? bytes : 1);
    if (!m) {
        *why = "out of memory";
        return GTRT_ENOMEM;
    }
    out->mem = m;
    out->prompt = (int32_t *)m;
    out->answer = out->prompt + np;
    out->logprob = (float *)(out->answer + na);
    out->teacher_answer = (int32_t *)(out->logprob + na);
    out->kind = (uint8_t *)(out->teacher_answer + nt);
    out->teacher_kind = out->kind + na;
    out->image = out->teacher_kind + nt;
    for (size_t i = 0; i < np; i++)
        out->prompt[i] = (int32_t)pb->prompt[i];
    for (size_t i = 0; i < na; i++)
        out->answer[i] = (int32_t)pb->answer[i];
    memcpy(out->logprob, pb->logprob, 4 * na);
    for (size_t i = 0; i < nt; i++)
        out->teacher_answer[i] = (int32_t)pb->teacher_answer[i];
    memcpy(out->kind, pb->kind.data, na);
    if (nt)
        memcpy(out->teacher_kind, pb->teacher_kind.data, nt);
    memcpy(out->image, image->data, ni);
    out->n_prompt = (uint32_t)np;
    out->n_answer = (uint32_t)na;
    out->n_teacher = (uint32_t)nt;
    snprintf(out->actor, sizeof out->actor, "%s", actor);
    snprintf(out->env, sizeof out->env, "%s", pb->env ? pb->env : "");
    out->episode = pb->episode;
    out->turn = pb->turn;
    out->policy_version = pb->policy_version;
    out->value = pb->value;
    out->reward = pb->reward;
    out->teacher_kl = pb->teacher_kl;
    out->teacher_version = pb->teacher_version;
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
