/* DAgger aggregation with a bounded reservoir (see dagger.h). */
#include "learner/dagger.h"

#include <stdlib.h>
#include <string.h>

#include "common/err.h"

int dagger_init(dagger *d, int cap, uint64_t seed)
{
    memset(d, 0, sizeof *d);
    d->cap = cap > 0 ? cap : 1;
    d->s = calloc((size_t)d->cap, sizeof *d->s);
    rng_init(&d->r, seed);
    return d->s ? 0 : GTRT_ENOMEM;
}

void dagger_free(dagger *d)
{
    for (int i = 0; d->s && i < d->n; i++)
        traj_step_free(&d->s[i]);
    free(d->s);
    memset(d, 0, sizeof *d);
}

/* The SFT sample of `src`: its prompt and image, the answer to imitate. */
static int dagger_sample(const traj_step *src, size_t img, traj_step *out)
{
    if (traj_step_alloc(out, src->n_prompt, src->n_teacher, 0, img))
        return GTRT_ENOMEM;
    memcpy(out->prompt, src->prompt, src->n_prompt * sizeof *out->prompt);
    memcpy(out->answer, src->teacher_answer, src->n_teacher * sizeof *out->answer);
    memcpy(out->kind, src->teacher_kind, src->n_teacher);
    memcpy(out->image, src->image, img);
    memcpy(out->actor, src->actor, sizeof out->actor);
    memcpy(out->env, src->env, sizeof out->env);
    out->episode = src->episode;
    out->turn = src->turn;
    out->policy_version = src->policy_version;
    out->teacher_version = src->teacher_version;
    return 0;
}

int dagger_add(dagger *d, const traj_step *src, uint32_t max_tokens, size_t image_bytes)
{
    if (src->n_teacher == 0 || src->n_prompt + src->n_teacher > max_tokens)
        return 0;
    d->added++;
    int slot = d->n;
    if (d->n == d->cap) { /* reservoir: keep with probability cap / added */
        uint64_t j = rng_below(&d->r, d->added);
        if (j >= (uint64_t)d->cap)
            return 0;
        slot = (int)j;
    }
    traj_step s;
    if (dagger_sample(src, image_bytes, &s))
        return GTRT_ENOMEM;
    if (slot < d->n)
        traj_step_free(&d->s[slot]);
    else
        d->n++;
    d->s[slot] = s;
    return 1;
}
