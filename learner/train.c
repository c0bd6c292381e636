/* PPO update over complete episodes (see train.h). */
#include "learner/train.h"

#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "learner/sft.h"

static int train_cmp(const void *a, const void *b)
{
    const traj_step *x = a, *y = b;
    int c = strcmp(x->actor, y->actor);
    if (c)
        return c;
    if (x->episode != y->episode)
        return x->episode < y->episode ? -1 : 1;
    return x->turn < y->turn ? -1 : x->turn > y->turn;
}

static int train_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The KL guidance estimate of every step that has the teacher's logprobs
 * (0 for the others: they are trained as plain PPO), and its statistics. */
static void train_kl(traj_step *s, int n, const train_config *tc, train_stats *st)
{
    double *kl = malloc((size_t)n * sizeof *kl);
    int k = 0;
    for (int i = 0; i < n; i++) {
        s[i].teacher_kl = 0;
        if (!s[i].has_teacher_logprob)
            continue;
        s[i].teacher_kl = (float)guide_kl_step(s[i].logprob, s[i].teacher_logprob, s[i].kind,
                                                (int)s[i].n_answer, &tc->kl);
        if (kl)
            kl[k] = s[i].teacher_kl;
        k++;
    }
    st->guided_share = (double)k / n;
    if (!kl || k == 0) {
        free(kl);
        return;
    }
    qsort(kl, (size_t)k, sizeof *kl, train_cmp_double);
    double sum = 0;
    for (int i = 0; i < k; i++)
        sum += kl[i];
    st->teacher_kl = sum / k;
    st->kl_p50 = kl[k / 2];
    st->kl_p90 = kl[(int)(0.9 * (k - 1))];
    st->kl_max = kl[k - 1];
    free(kl);
}

/* Episode statistics and advantages. The last step of each (actor,
 * episode) run closes it even if the actor did not mark it done. */
static void train_advantages(traj_step *s, int n, const train_config *tc, float *adv, float *ret,
                             train_stats *st)
{
    float *rw = malloc((size_t)n * sizeof *rw), *v = malloc((size_t)n * sizeof *v);
    uint8_t *done = malloc((size_t)n);
    if (!rw || !v || !done) {
        free(rw);
        free(v);
        free(done);
        memset(adv, 0, (size_t)n * sizeof *adv);
        memset(ret, 0, (size_t)n * sizeof *ret);
        return;
    }
    train_kl(s, n, tc, st);
    for (int i = 0; i < n; i++) {
        bool last = i == n - 1 || s[i + 1].episode != s[i].episode ||
                    strcmp(s[i + 1].actor, s[i].actor);
        rw[i] = s[i].reward;
        v[i] = s[i].value;
        done[i] = last || s[i].done;
        st->mean_return += s[i].reward;
        st->format_valid += s[i].format_valid;
        if (last) {
            st->n_episodes++;
            st->success_rate += s[i].success;
        }
    }
    ppo_gae(rw, v, done, n, tc->ppo.gamma, tc->ppo.lam, adv, ret);
    for (int i = 0; i < n; i++)
        rw[i] = s[i].teacher_kl; /* the rewards are spent: reuse the buffer */
    guide_shape_advantages(adv, ret, v, rw, n, tc->kl_coef);
    st->explained_variance = ppo_explained_variance(v, ret, n);
    ppo_normalize(adv, n);
    st->mean_length = (double)n / st->n_episodes;
    st->mean_return /= st->n_episodes;
    st->success_rate /= st->n_episodes;
    st->format_valid /= n;
    free(rw);
    free(v);
    free(done);
}

typedef struct train_mb {
    model_seq *seqs;
    int32_t *tokens;
    float *images;
    uint8_t *kind;
    float *old_logp, *old_value, *adv, *ret;
    float *dlogp, *dent, *dvalue;
} train_mb;

static void train_mb_free(train_mb *b)
{
    free(b->seqs);
    free(b->tokens);
    free(b->images);
    free(b->kind);
    free(b->old_logp);
    free(b->dlogp);
    free(b->dent);
    memset(b, 0, sizeof *b);
}

static int train_mb_alloc(train_mb *b, const model_config *c, int mb, int max_tok)
{
    size_t img = (size_t)c->image_c * c->image_h * c->image_w;
    b->seqs = malloc((size_t)mb * sizeof *b->seqs);
    b->tokens = malloc((size_t)mb * max_tok * sizeof *b->tokens);
    b->images = malloc((size_t)mb * img * sizeof *b->images);
    b->kind = malloc((size_t)mb * max_tok);
    b->old_logp = malloc((size_t)mb * 5 * sizeof *b->old_logp);
    b->dlogp = malloc((size_t)mb * max_tok * sizeof *b->dlogp);
    b->dent = malloc((size_t)mb * max_tok * sizeof *b->dent);
    if (!b->seqs || !b->tokens || !b->images || !b->kind || !b->old_logp || !b->dlogp || !b->dent)
        return GTRT_ENOMEM;
    b->old_value = b->old_logp + mb;
    b->adv = b->old_value + mb;
    b->ret = b->adv + mb;
    b->dvalue = b->ret + mb; /* 5th block: allocate it too */
    return 0;
}

/* Guidance samples and the stream that draws SFT minibatches from them. */
typedef struct train_guide {
    const traj_step *data;
    int n;
    rng *r;
    int *idx; /* sft_batch */
} train_guide;

/* The SFT guidance term of one minibatch: sft_batch samples drawn
 * uniformly (with replacement) from everything aggregated so far, their
 * gradient added to the PPO minibatch's. */
static int train_sft_guidance(model *m, const train_config *tc, const train_guide *g,
                              train_stats *st, err *e)
{
    if (tc->sft_coef <= 0 || g->n == 0 || tc->sft_batch < 1)
        return 0;
    for (int j = 0; j < tc->sft_batch; j++)
        g->idx[j] = (int)rng_below(g->r, (uint64_t)g->n);
    sft_stats ss = {0};
    int rc = sft_accumulate(m, g->data, g->idx, tc->sft_batch, true, tc->sft_coef, &ss, e);
    st->sft_loss += ss.loss;
    st->sft_tokens += ss.tokens;
    st->sft_batches++;
    return rc;
}

/* One minibatch: forward, loss, backward, optimiser step. */
static int train_minibatch(model *m, optim *o, traj_step *s, const int *idx, int k,
                           const float *adv, const float *ret, const train_config *tc,
                           const train_guide *g, train_mb *b, train_stats *st, bool first_epoch,
                           err *e)
{
    size_t img = (size_t)m->cfg.image_c * m->cfg.image_h * m->cfg.image_w;
    int tok = 0, kind_n = 0;
    for (int j = 0; j < k; j++) {
        const traj_step *x = &s[idx[j]];
        int32_t *t = b->tokens + tok;
        memcpy(t, x->prompt, x->n_prompt * sizeof *t);
        memcpy(t + x->n_prompt, x->answer, x->n_answer * sizeof *t);
        float *im = b->images + (size_t)j * img;
        for (size_t p = 0; p < img; p++)
            im[p] = x->image[p] * (1.0f / 255.0f);
        b->seqs[j] = (model_seq){im, t, (int)(x->n_prompt + x->n_answer), (int)x->n_prompt};
        tok += (int)(x->n_prompt + x->n_answer);
        memcpy(b->kind + kind_n, x->kind, x->n_answer);
        kind_n += (int)x->n_answer;
        b->old_logp[j] = (float)ppo_step_logp(x->logprob, x->kind, (int)x->n_answer,
                                              tc->ppo.thought_coef);
        b->old_value[j] = x->value;
        b->adv[j] = adv[idx[j]];
        b->ret[j] = ret[idx[j]];
    }
    model_batch mbt = {b->seqs, k, tc->temperature};
    model_out out;
    int rc = model_forward(m, &mbt, &out, e);
    if (rc)
        return rc;
    if (out.n_scored != kind_n)
        return err_set(e, GTRT_ESTATE, "model scored %d tokens, expected %d", out.n_scored, kind_n);
    ppo_batch pb = {k, out.first, b->kind, out.logprob, out.entropy, out.value,
                    b->old_logp, b->old_value, b->adv, b->ret};
    ppo_stats ps;
    ppo_loss(&tc->ppo, &pb, b->dlogp, b->dent, b->dvalue, &ps);
    if (first_epoch) {
        double te = 0;
        int nt = 0;
        for (int r = 0; r < kind_n; r++)
            if (b->kind[r] != TRAJ_KIND_ACTION) {
                te += out.entropy[r];
                nt++;
            }
        st->thought_entropy += nt ? te / nt * k : 0;
    }
    st->policy_loss += ps.policy_loss * k;
    st->value_loss += ps.value_loss * k;
    st->approx_kl += ps.approx_kl * k;
    st->clip_frac += ps.clip_frac * k;
    st->tokens += tok;
    st->flops += 3 * model_forward_flops(&m->cfg, &mbt);
    if ((rc = model_zero_grad(m, e)) ||
        (rc = model_backward(m, b->dlogp, b->dent, b->dvalue, NULL, e)) ||
        (rc = train_sft_guidance(m, tc, g, st, e)))
        return rc;
    st->lr = optim_lr_at(&o->cfg, o->step);
    st->grad_norm = optim_step(o, m->params, m->grads);
    return 0;
}

int train_update(model *m, optim *o, traj_step *steps, int n, const train_config *tc, rng *r,
                 train_stats *st, err *e)
{
    return train_update_guided(m, o, steps, n, NULL, 0, tc, r, st, e);
}

int train_update_guided(model *m, optim *o, traj_step *steps, int n, const traj_step *guide,
                        int n_guide, const train_config *tc, rng *r, train_stats *st, err *e)
{
    memset(st, 0, sizeof *st);
    if (n <= 0)
        return err_set(e, GTRT_EINVAL, "no steps to learn from");
    uint64_t t0 = clock_mono_ns();
    qsort(steps, (size_t)n, sizeof *steps, train_cmp);
    st->n_steps = n;
    float *adv = malloc((size_t)n * sizeof *adv), *ret = malloc((size_t)n * sizeof *ret);
    int *idx = malloc((size_t)n * sizeof *idx);
    int mb = tc->minibatch < n ? tc->minibatch : n, max_tok = 0;
    for (int i = 0; i < n; i++)
        if ((int)(steps[i].n_prompt + steps[i].n_answer) > max_tok)
            max_tok = (int)(steps[i].n_prompt + steps[i].n_answer);
    train_mb b = {0};
    train_guide g = {guide, n_guide, r, malloc((size_t)(tc->sft_batch > 0 ? tc->sft_batch : 1) * sizeof(int))};
    int rc = (!adv || !ret || !idx || !g.idx || train_mb_alloc(&b, &m->cfg, mb, max_tok))
                 ? err_set(e, GTRT_ENOMEM, "out of memory for a PPO update of %d steps", n)
                 : 0;
    if (!rc)
        train_advantages(steps, n, tc, adv, ret, st);
    for (int i = 0; i < n; i++)
        idx[i] = i;
    double done = 0;
    for (int ep = 0; !rc && ep < tc->epochs; ep++) {
        for (int i = n - 1; i > 0; i--) { /* Fisher-Yates */
            int j = (int)rng_below(r, (uint64_t)i + 1), t = idx[i];
            idx[i] = idx[j];
            idx[j] = t;
        }
        for (int at = 0; !rc && at < n; at += mb) {
            int k = n - at < mb ? n - at : mb;
            rc = train_minibatch(m, o, steps, idx + at, k, adv, ret, tc, &g, &b, st, ep == 0, e);
            done += k;
        }
    }
    if (done > 0) {
        st->policy_loss /= done;
        st->value_loss /= done;
        st->approx_kl /= done;
        st->clip_frac /= done;
        st->thought_entropy /= n;
    }
    if (st->sft_batches > 0)
        st->sft_loss /= st->sft_batches;
    st->seconds = clock_since_s(t0);
    free(adv);
    free(ret);
    free(idx);
    free(g.idx);
    train_mb_free(&b);
    return rc;
}
