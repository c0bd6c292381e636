/* GAE against hand computation and the PPO loss gradients against central
 * finite differences (double-checked on random inputs, seeded). */
#include <criterion/criterion.h>
#include <math.h>

#include "common/rng.h"
#include "common/traj.h"
#include "learner/ppo.h"

Test(ppo, gae_matches_hand_computation)
{
    /* One episode of 3 steps, then a second of 1 step. gamma .9, lambda .95 */
    float r[4] = {0, 0, 1, -1}, v[4] = {0.5f, 0.2f, 0.4f, 0.1f};
    uint8_t done[4] = {0, 0, 1, 1};
    float adv[4], ret[4];
    ppo_gae(r, v, done, 4, 0.9f, 0.95f, adv, ret);
    double d2 = 1 - 0.4, d1 = 0 + 0.9 * 0.4 - 0.2, d0 = 0 + 0.9 * 0.2 - 0.5;
    double a2 = d2, a1 = d1 + 0.9 * 0.95 * a2, a0 = d0 + 0.9 * 0.95 * a1;
    cr_expect_float_eq(adv[2], a2, 1e-6);
    cr_expect_float_eq(adv[1], a1, 1e-6);
    cr_expect_float_eq(adv[0], a0, 1e-6);
    cr_expect_float_eq(adv[3], -1 - 0.1, 1e-6, "no bootstrap across episodes");
    cr_expect_float_eq(ret[0], a0 + 0.5, 1e-6);
}

Test(ppo, normalize_gives_zero_mean_unit_std)
{
    float x[5] = {1, 2, 3, 4, 10};
    ppo_normalize(x, 5);
    double m = 0, s = 0;
    for (int i = 0; i < 5; i++)
        m += x[i];
    for (int i = 0; i < 5; i++)
        s += x[i] * x[i];
    cr_expect(fabs(m / 5) < 1e-6);
    cr_expect(fabs(s / 5 - 1) < 1e-4);
}

Test(ppo, step_logp_weights_thought_tokens)
{
    float lp[4] = {-1, -2, -3, -4};
    uint8_t k[4] = {TRAJ_KIND_THOUGHT, TRAJ_KIND_FORMAT, TRAJ_KIND_ACTION, TRAJ_KIND_ACTION};
    cr_expect_float_eq(ppo_step_logp(lp, k, 4, 0.5f), 0.5 * (-3) + (-7), 1e-9);
}

#define NS 6
#define NT 20

typedef struct case_ {
    int first[NS + 1];
    uint8_t kind[NT];
    float logp[NT], ent[NT], value[NS], old_logp[NS], old_value[NS], adv[NS], ret[NS];
} case_;

static void make_case(case_ *c, uint64_t seed, const ppo_hparams *h)
{
    rng r;
    rng_init(&r, seed);
    int t = 0;
    for (int i = 0; i < NS; i++) {
        c->first[i] = t;
        t += 2 + (int)rng_below(&r, 2);
    }
    c->first[NS] = t;
    cr_assert_leq(t, NT);
    for (int k = 0; k < t; k++) {
        c->kind[k] = (uint8_t)rng_below(&r, 3);
        c->logp[k] = -0.1f - rng_float(&r);
        c->ent[k] = rng_float(&r);
    }
    for (int i = 0; i < NS; i++) {
        double lp = ppo_step_logp(c->logp + c->first[i], c->kind + c->first[i],
                                  c->first[i + 1] - c->first[i], h->thought_coef);
        /* old logp near the new one: some ratios inside, some outside the clip */
        c->old_logp[i] = (float)(lp + (rng_float(&r) - 0.5) * 0.5);
        c->value[i] = (float)rng_normal(&r);
        c->old_value[i] = c->value[i] + (rng_float(&r) - 0.5f) * 0.5f;
        c->adv[i] = (float)rng_normal(&r);
        c->ret[i] = (float)rng_normal(&r);
    }
}

static double loss_of(const ppo_hparams *h, case_ *c)
{
    ppo_batch b = {NS, c->first, c->kind, c->logp, c->ent, c->value,
                   c->old_logp, c->old_value, c->adv, c->ret};
    ppo_stats st;
    return ppo_loss(h, &b, NULL, NULL, NULL, &st);
}

Test(ppo, gradients_match_finite_differences)
{
    ppo_hparams h;
    ppo_hparams_default(&h);
    h.ent_coef = 0.01f;
    int checked = 0, bad = 0;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        case_ c;
        make_case(&c, seed, &h);
        float dlogp[NT], dent[NT], dv[NS];
        ppo_batch b = {NS, c.first, c.kind, c.logp, c.ent, c.value,
                       c.old_logp, c.old_value, c.adv, c.ret};
        ppo_stats st;
        ppo_loss(&h, &b, dlogp, dent, dv, &st);
        const float eps = 1e-3f;
        for (int k = 0; k < c.first[NS]; k++) {
            float save = c.logp[k];
            c.logp[k] = save + eps;
            double lp = loss_of(&h, &c);
            c.logp[k] = save - eps;
            double lm = loss_of(&h, &c);
            c.logp[k] = save;
            double fd = (lp - lm) / (2 * eps);
            /* skip points where a clip boundary lies inside [x-eps, x+eps] */
            c.logp[k] = save + eps / 2;
            double lh = loss_of(&h, &c);
            c.logp[k] = save;
            double l0 = loss_of(&h, &c);
            if (fabs((lh - l0) / (eps / 2) - fd) > 1e-2)
                continue;
            checked++;
            bad += fabs(fd - dlogp[k]) > 1e-3;
            save = c.ent[k];
            c.ent[k] = save + eps;
            lp = loss_of(&h, &c);
            c.ent[k] = save - eps;
            lm = loss_of(&h, &c);
            c.ent[k] = save;
            bad += fabs((lp - lm) / (2 * eps) - dent[k]) > 1e-4;
        }
        for (int i = 0; i < NS; i++) {
            float save = c.value[i];
            c.value[i] = save + eps;
            double lp = loss_of(&h, &c);
            c.value[i] = save - eps;
            double lm = loss_of(&h, &c);
            c.value[i] = save;
            double fd = (lp - lm) / (2 * eps);
            if (fabs(fabs(c.value[i] - c.old_value[i]) - h.value_clip) < 2 * eps)
                continue;
            checked++;
            bad += fabs(fd - dv[i]) > 1e-3;
        }
    }
    cr_expect_gt(checked, 300);
    cr_expect_eq(bad, 0, "%d of %d gradient entries disagree with finite differences", bad, checked);
}

Test(ppo, clipped_ratio_stops_the_gradient)
{
    ppo_hparams h;
    ppo_hparams_default(&h);
    int first[2] = {0, 1};
    uint8_t kind[1] = {TRAJ_KIND_ACTION};
    float logp[1] = {-0.5f}, ent[1] = {0}, v[1] = {0}, ov[1] = {0}, ret[1] = {0};
    float old[1] = {-1.0f}; /* ratio e^0.5 = 1.65 > 1.1 */
    float adv[1] = {1.0f};
    ppo_batch b = {1, first, kind, logp, ent, v, old, ov, adv, ret};
    float d[1];
    ppo_stats st;
    double l = ppo_loss(&h, &b, d, NULL, NULL, &st);
    cr_expect_float_eq(l, -1.1, 1e-6);
    cr_expect_float_eq(d[0], 0.0f, 1e-9);
    cr_expect_float_eq(st.clip_frac, 1.0, 1e-9);
    adv[0] = -1.0f; /* negative advantage: the unclipped branch is the min */
    l = ppo_loss(&h, &b, d, NULL, NULL, &st);
    cr_expect_float_eq(l, exp(0.5), 1e-5);
    cr_expect_float_eq(d[0], exp(0.5), 1e-5);
}

Test(ppo, explained_variance)
{
    float ret[4] = {1, 2, 3, 4}, v[4] = {1, 2, 3, 4}, z[4] = {0};
    cr_expect_float_eq(ppo_explained_variance(v, ret, 4), 1.0, 1e-9);
    cr_expect_float_eq(ppo_explained_variance(z, ret, 4), 0.0, 1e-9);
}
