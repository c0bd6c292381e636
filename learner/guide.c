/* GTR / GTR-Turbo guidance terms (see guide.h). */
#include "learner/guide.h"

#include <math.h>
#include <string.h>

#include "common/traj.h"

static const char *const guide_kl_names[] = {"clamp", "plain", "abs", "k3", "forward"};

int guide_kl_est_parse(const char *name)
{
    for (int i = 0; i < (int)(sizeof guide_kl_names / sizeof *guide_kl_names); i++)
        if (strcmp(name, guide_kl_names[i]) == 0)
            return i;
    return -1;
}

const char *guide_kl_est_name(guide_kl_est est) { return guide_kl_names[est]; }

double guide_kl_token(double d, const guide_kl_config *c)
{
    switch (c->est) {
    case GUIDE_KL_CLAMP:
        return d < 0 ? 0 : d > c->clamp_max ? c->clamp_max : d;
    case GUIDE_KL_PLAIN:
        return d;
    case GUIDE_KL_ABS:
        return fabs(d);
    case GUIDE_KL_K3:
        return exp(-d) - 1 + d;
    case GUIDE_KL_FORWARD:
        return -d * exp(-d);
    }
    return 0;
}

double guide_kl_step(const float *logp_policy, const float *logp_teacher, const uint8_t *kind,
                     int n, const guide_kl_config *c)
{
    double sum = 0;
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (!c->with_action && kind[i] == TRAJ_KIND_ACTION)
            continue;
        sum += guide_kl_token((double)logp_policy[i] - logp_teacher[i], c);
        k++;
    }
    return k ? sum / k : 0;
}

void guide_shape_advantages(float *adv, float *ret, const float *value, const float *kl, int n,
                            float beta)
{
    for (int i = 0; i < n; i++) {
        adv[i] -= beta * kl[i];
        ret[i] = adv[i] + value[i];
    }
}

double guide_sft_loss(const float *logp, const uint8_t *kind, int n, bool with_action, float coef,
                      float *dlogp, int *counted)
{
    int k = 0;
    double sum = 0;
    for (int i = 0; i < n; i++)
        if (with_action || kind[i] != TRAJ_KIND_ACTION) {
            sum -= logp[i];
            k++;
        }
    for (int i = 0; dlogp && i < n; i++)
        dlogp[i] = (with_action || kind[i] != TRAJ_KIND_ACTION) ? -coef / (float)k : 0.0f;
    if (counted)
        *counted = k;
    return k ? sum / k : 0;
}
