/* The guidance terms on hand-made numbers: every KL estimator per token
 * and per step (thought-only and thought+action masks, the clamp), the
 * estimators' expectations on an exact categorical pair, and
 * the SFT loss and its gradient against finite differences. */
#include <criterion/criterion.h>
#include <math.h>

#include "common/traj.h"
#include "learner/guide.h"

static guide_kl_config cfg(guide_kl_est est)
{
    return (guide_kl_config){.est = est, .clamp_max = 10, .with_action = false};
}

Test(guide, estimator_names_round_trip)
{
    for (int i = GUIDE_KL_CLAMP; i <= GUIDE_KL_FORWARD; i++)
        cr_expect_eq(guide_kl_est_parse(guide_kl_est_name((guide_kl_est)i)), i);
    cr_expect_eq(guide_kl_est_parse("reverse"), -1);
    cr_expect_eq(guide_kl_est_parse(""), -1);
}

Test(guide, clamp_keeps_zero_to_max)
{
    guide_kl_config c = cfg(GUIDE_KL_CLAMP);
    cr_expect_float_eq(guide_kl_token(-3.0, &c), 0.0, 1e-12, "negative d is clamped to 0");
    cr_expect_float_eq(guide_kl_token(2.5, &c), 2.5, 1e-12);
    cr_expect_float_eq(guide_kl_token(25.0, &c), 10.0, 1e-12, "clamped at the maximum");
    c.clamp_max = 1;
    cr_expect_float_eq(guide_kl_token(2.5, &c), 1.0, 1e-12);
}

Test(guide, ablation_estimators_by_hand)
{
    guide_kl_config plain = cfg(GUIDE_KL_PLAIN), ab = cfg(GUIDE_KL_ABS), k3 = cfg(GUIDE_KL_K3),
                    fw = cfg(GUIDE_KL_FORWARD);
    cr_expect_float_eq(guide_kl_token(-3.0, &plain), -3.0, 1e-12);
    cr_expect_float_eq(guide_kl_token(-3.0, &ab), 3.0, 1e-12);
    /* k3 at d = ln 2: r = q/p = 1/2, (r - 1) - ln r = -0.5 + ln 2 */
    cr_expect_float_eq(guide_kl_token(log(2.0), &k3), -0.5 + log(2.0), 1e-12);
    /* forward at d = -ln 2: r = 2, r ln r = 2 ln 2 */
    cr_expect_float_eq(guide_kl_token(-log(2.0), &fw), 2 * log(2.0), 1e-12);
    for (int i = GUIDE_KL_CLAMP; i <= GUIDE_KL_FORWARD; i++) {
        guide_kl_config c = cfg((guide_kl_est)i);
        cr_expect_float_eq(guide_kl_token(0.0, &c), 0.0, 1e-12, "%s(0) != 0",
                           guide_kl_est_name((guide_kl_est)i));
    }
}

/* Unbiasedness where it is claimed: over samples from p, the mean of
 * plain and of k3 both estimate KL(p||q); forward estimates KL(q||p).
 * Exact expectations over a small categorical pair. */
Test(guide, estimators_have_the_right_expectation)
{
    const double p[4] = {0.5, 0.25, 0.15, 0.10}, q[4] = {0.3, 0.3, 0.2, 0.2};
    double kl_pq = 0, kl_qp = 0, e_plain = 0, e_k3 = 0, e_fw = 0;
    guide_kl_config plain = cfg(GUIDE_KL_PLAIN), k3 = cfg(GUIDE_KL_K3), fw = cfg(GUIDE_KL_FORWARD);
    for (int i = 0; i < 4; i++) {
        double d = log(p[i]) - log(q[i]);
        kl_pq += p[i] * d;
        kl_qp += q[i] * -d;
        e_plain += p[i] * guide_kl_token(d, &plain);
        e_k3 += p[i] * guide_kl_token(d, &k3);
        e_fw += p[i] * guide_kl_token(d, &fw);
    }
    cr_expect_float_eq(e_plain, kl_pq, 1e-12);
    cr_expect_float_eq(e_k3, kl_pq, 1e-12);
    cr_expect_float_eq(e_fw, kl_qp, 1e-12);
}

Test(guide, step_mean_over_thought_tokens_only_by_default)
{
    /* format, thought, thought, action, format */
    const uint8_t kind[5] = {TRAJ_KIND_FORMAT, TRAJ_KIND_THOUGHT, TRAJ_KIND_THOUGHT,
                             TRAJ_KIND_ACTION, TRAJ_KIND_FORMAT};
    const float lp[5] = {-0.1f, -1.0f, -0.5f, -2.0f, -0.2f};
    const float lt[5] = {-0.1f, -3.0f, -0.25f, -9.0f, -0.7f};
    /* d = 0, 2, -0.25, 7, 0.5 */
    guide_kl_config c = cfg(GUIDE_KL_CLAMP);
    cr_expect_float_eq(guide_kl_step(lp, lt, kind, 5, &c), (0 + 2 + 0 + 0.5) / 4.0, 1e-6);
    c.with_action = true;
    cr_expect_float_eq(guide_kl_step(lp, lt, kind, 5, &c), (0 + 2 + 0 + 7 + 0.5) / 5.0, 1e-6);
    c.with_action = false;
    c.est = GUIDE_KL_PLAIN;
    cr_expect_float_eq(guide_kl_step(lp, lt, kind, 5, &c), (0 + 2 - 0.25 + 0.5) / 4.0, 1e-6);
    const uint8_t only_action[1] = {TRAJ_KIND_ACTION};
    cr_expect_float_eq(guide_kl_step(lp, lt, only_action, 1, &c), 0.0, 1e-12,
                       "no guided token: no KL");
}

Test(guide, kl_shapes_advantages_and_returns_before_normalisation)
{
    float adv[3] = {1.0f, -0.5f, 0.25f}, ret[3], value[3] = {0.5f, 0.0f, -1.0f};
    const float kl[3] = {0.0f, 2.0f, 0.5f};
    guide_shape_advantages(adv, ret, value, kl, 3, 0.5f);
    cr_expect_float_eq(adv[0], 1.0f, 1e-7, "no KL, no change");
    cr_expect_float_eq(adv[1], -1.5f, 1e-7);
    cr_expect_float_eq(adv[2], 0.0f, 1e-7);
    cr_expect_float_eq(ret[1], -1.5f, 1e-7, "returns = shaped advantage + value");
    cr_expect_float_eq(ret[2], -1.0f, 1e-7);
    guide_shape_advantages(adv, ret, value, kl, 3, 0.0f);
    cr_expect_float_eq(adv[1], -1.5f, 1e-7, "beta 0 is plain PPO");
}

Test(guide, sft_loss_masks_the_action_and_has_the_right_gradient)
{
    const uint8_t kind[4] = {TRAJ_KIND_FORMAT, TRAJ_KIND_THOUGHT, TRAJ_KIND_ACTION,
                             TRAJ_KIND_THOUGHT};
    float lp[4] = {-0.5f, -2.0f, -7.0f, -1.5f}, g[4];
    int counted;
    double loss = guide_sft_loss(lp, kind, 4, false, 2.0f, g, &counted);
    cr_expect_float_eq(loss, (0.5 + 2.0 + 1.5) / 3, 1e-6, "action tokens are not imitated");
    cr_expect_eq(counted, 3);
    cr_expect_float_eq(g[2], 0.0f, 0, "no gradient into the action");
    /* central differences of coef * loss */
    for (int i = 0; i < 4; i++) {
        float h = 1e-2f, keep = lp[i];
        lp[i] = keep + h;
        double up = guide_sft_loss(lp, kind, 4, false, 0, NULL, NULL);
        lp[i] = keep - h;
        double dn = guide_sft_loss(lp, kind, 4, false, 0, NULL, NULL);
        lp[i] = keep;
        cr_expect_float_eq(g[i], 2.0 * (up - dn) / (2 * h), 1e-4, "token %d", i);
    }
    const uint8_t all_action[2] = {TRAJ_KIND_ACTION, TRAJ_KIND_ACTION};
    cr_expect_float_eq(guide_sft_loss(lp, all_action, 2, false, 1, g, &counted), 0.0, 1e-12);
    cr_expect_eq(counted, 0);
    cr_expect_float_eq(g[0], 0.0f, 0);
    /* with the action: every token, the plain warm-start SFT loss */
    loss = guide_sft_loss(lp, kind, 4, true, 1.0f, g, &counted);
    cr_expect_float_eq(loss, (0.5 + 2.0 + 7.0 + 1.5) / 4, 1e-6);
    cr_expect_float_eq(g[2], -0.25f, 1e-7);
}
