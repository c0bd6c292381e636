/* PPO objective and gradients (see ppo.h). Follows the RL4VLM / GTR-Turbo
 * code: clipped surrogate, clipped value loss 0.5 * max(unclipped, clipped)
 * scaled by vf_coef, entropy bonus. */
#include "learner/ppo.h"

#include <math.h>
#include <string.h>

#include "common/traj.h"

void ppo_hparams_default(ppo_hparams *h)
{
    *h = (ppo_hparams){.gamma = 0.9f, .lam = 0.95f, .clip = 0.1f, .value_clip = 0.1f,
                       .vf_coef = 0.5f, .ent_coef = 0.0f, .thought_coef = 0.5f};
}

void ppo_gae(const float *reward, const float *value, const uint8_t *done, int n, float gamma,
             float lam, float *adv, float *ret)
{
    double next_adv = 0, next_value = 0;
    for (int t = n - 1; t >= 0; t--) {
        double live = done[t] ? 0.0 : 1.0;
        if (t == n - 1)
            live = 0.0; /* nothing follows the last step of the batch */
        double delta = reward[t] + gamma * next_value * live - value[t];
        next_adv = delta + gamma * lam * live * next_adv;
        adv[t] = (float)next_adv;
        ret[t] = (float)(next_adv + value[t]);
        next_value = value[t];
    }
}

void ppo_normalize(float *x, int n)
{
    if (n <= 0)
        return;
    double mean = 0, var = 0;
    for (int i = 0; i < n; i++)
        mean += x[i];
    mean /= n;
    for (int i = 0; i < n; i++)
        var += (x[i] - mean) * (x[i] - mean);
    double sd = sqrt(var / n);
    for (int i = 0; i < n; i++)
        x[i] = (float)((x[i] - mean) / (sd + 1e-8));
}

static double ppo_coef(uint8_t kind, float thought_coef)
{
    return kind == TRAJ_KIND_ACTION ? 1.0 : thought_coef;
}

double ppo_step_logp(const float *tok_logp, const uint8_t *kind, int n, float thought_coef)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += ppo_coef(kind[i], thought_coef) * tok_logp[i];
    return s;
}

/* Policy part of one step: loss and dloss/dlogp_step. */
static double ppo_policy_step(const ppo_hparams *h, double logp, double old_logp, double adv,
                              double *dlogp_step, ppo_stats *st)
{
    double log_ratio = logp - old_logp;
    double ratio = exp(log_ratio);
    double s1 = ratio * adv;
    double clipped = fmin(fmax(ratio, 1.0 - h->clip), 1.0 + h->clip);
    double s2 = clipped * adv;
    bool is_clipped = s2 < s1;
    st->clip_frac += fabs(ratio - 1.0) > h->clip;
    st->approx_kl += (ratio - 1.0) - log_ratio; /* k3 estimator, >= 0 */
    *dlogp_step = is_clipped ? 0.0 : -s1;
    return -(is_clipped ? s2 : s1);
}

/* Value part of one step: loss and dloss/dvalue (before vf_coef / n). */
static double ppo_value_step(const ppo_hparams *h, double v, double old_v, double ret, double *dv)
{
    double diff = v - old_v;
    double dclip = fmin(fmax(diff, -h->value_clip), h->value_clip);
    double vc = old_v + dclip;
    double e1 = (v - ret) * (v - ret), e2 = (vc - ret) * (vc - ret);
    if (e1 >= e2) {
        *dv = (v - ret); /* d(0.5 e1)/dv */
        return 0.5 * e1;
    }
    *dv = (fabs(diff) < h->value_clip) ? (vc - ret) : 0.0;
    return 0.5 * e2;
}

double ppo_loss(const ppo_hparams *h, const ppo_batch *b, float *dlogp, float *dentropy,
                float *dvalue, ppo_stats *st)
{
    memset(st, 0, sizeof *st);
    int n = b->n_steps;
    if (n <= 0)
        return 0;
    double inv_n = 1.0 / n, pol = 0, val = 0, ent = 0;
    int n_tok = b->first[n] - b->first[0];
    for (int i = 0; i < n; i++) {
        int t0 = b->first[i], t1 = b->first[i + 1];
        double logp = ppo_step_logp(b->logp + t0, b->kind + t0, t1 - t0, h->thought_coef);
        double dstep, dv;
        pol += ppo_policy_step(h, logp, b->old_logp[i], b->adv[i], &dstep, st);
        val += ppo_value_step(h, b->value[i], b->old_value[i], b->ret[i], &dv);
        if (dvalue)
            dvalue[i] = (float)(h->vf_coef * dv * inv_n);
        for (int t = t0; t < t1; t++) {
            if (dlogp)
                dlogp[t] = (float)(dstep * ppo_coef(b->kind[t], h->thought_coef) * inv_n);
            ent += b->entropy[t];
        }
    }
    /* The entropy bonus is the mean over tokens. */
    double mean_ent = n_tok ? ent / n_tok : 0;
    if (dentropy)
        for (int t = b->first[0]; t < b->first[n]; t++)
            dentropy[t] = (float)(-h->ent_coef / (n_tok ? n_tok : 1));
    st->policy_loss = pol * inv_n;
    st->value_loss = val * inv_n;
    st->entropy = mean_ent;
    st->approx_kl *= inv_n;
    st->clip_frac *= inv_n;
    st->loss = st->policy_loss + h->vf_coef * st->value_loss - h->ent_coef * mean_ent;
    return st->loss;
}

double ppo_explained_variance(const float *value, const float *ret, int n)
{
    if (n < 2)
        return 0;
    double mr = 0, md = 0;
    for (int i = 0; i < n; i++) {
        mr += ret[i];
        md += ret[i] - value[i];
    }
    mr /= n;
    md /= n;
    double vr = 0, vd = 0;
    for (int i = 0; i < n; i++) {
        vr += (ret[i] - mr) * (ret[i] - mr);
        vd += (ret[i] - value[i] - md) * (ret[i] - value[i] - md);
    }
    return vr > 0 ? 1.0 - vd / vr : 0;
}
