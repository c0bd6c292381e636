/* AdamW against its formula, weight-decay ranges, clipping, the cosine
 * schedule, and a few real training steps of the model. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/model.h"
#include "common/optim.h"

Test(optim, adamw_matches_the_formula)
{
    optim_config c;
    optim_config_default(&c);
    c.lr = 0.1f;
    c.weight_decay = 0.5f;
    c.grad_clip = 0;
    optim_range dec[1] = {{1, 2}}; /* params 1 and 2 decay, 0 and 3 do not */
    optim *o;
    err e = {0};
    cr_assert_eq(optim_new(&c, 4, dec, 1, &o, &e), 0);
    float p[4] = {1, 2, -3, 4}, g[4] = {0.5f, -1, 2, 0};
    double pr[4] = {1, 2, -3, 4}, m[4] = {0}, v[4] = {0};
    for (int step = 1; step <= 3; step++) {
        optim_update(o, p, g, 0.1f);
        for (int i = 0; i < 4; i++) {
            double wd = (i == 1 || i == 2) ? 0.5 : 0.0;
            m[i] = 0.9 * m[i] + 0.1 * g[i];
            v[i] = 0.999 * v[i] + 0.001 * (double)g[i] * g[i];
            double mh = m[i] / (1 - pow(0.9, step)), vh = v[i] / (1 - pow(0.999, step));
            pr[i] = pr[i] * (1 - 0.1 * wd) - 0.1 * mh / (sqrt(vh) + 1e-8);
        }
        for (int i = 0; i < 4; i++)
            cr_expect_float_eq(p[i], pr[i], 1e-5, "step %d param %d: %g vs %g", step, i, p[i],
                               pr[i]);
    }
    cr_expect_eq(o->step, 3);
    /* a zero gradient without decay leaves the parameter alone */
    cr_expect_float_eq(p[3], 4.0f, 1e-7);
    optim_free(o);
}

Test(optim, clipping_scales_to_the_max_norm)
{
    float g[3] = {3, 4, 0};
    cr_expect_float_eq(optim_grad_norm(g, 3), 5.0, 1e-12);
    double n = optim_clip(g, 3, 1.0f);
    cr_expect_float_eq(n, 5.0, 1e-12);
    cr_expect_float_eq(optim_grad_norm(g, 3), 1.0, 1e-6);
    cr_expect_float_eq(g[0], 0.6f, 1e-6);
    float h[2] = {0.3f, 0.4f};
    optim_clip(h, 2, 1.0f); /* below the cap: untouched */
    cr_expect_eq(h[0], 0.3f);
    optim_clip(h, 2, 0.0f); /* disabled */
    cr_expect_eq(h[1], 0.4f);
}

Test(optim, cosine_schedule_with_warmup)
{
    optim_config c;
    optim_config_default(&c);
    c.lr = 1.0f;
    c.min_lr = 0.1f;
    c.warmup_steps = 10;
    c.total_steps = 110;
    cr_expect_float_eq(optim_lr_at(&c, 0), 0.1f, 1e-6);
    cr_expect_float_eq(optim_lr_at(&c, 4), 0.5f, 1e-6);
    cr_expect_float_eq(optim_lr_at(&c, 9), 1.0f, 1e-6);
    cr_expect_float_eq(optim_lr_at(&c, 10), 1.0f, 1e-6);
    cr_expect_float_eq(optim_lr_at(&c, 60), 0.55f, 1e-6);
    cr_expect_float_eq(optim_lr_at(&c, 110), 0.1f, 1e-6);
    cr_expect_float_eq(optim_lr_at(&c, 1000), 0.1f, 1e-6);
    for (int s = 11; s < 110; s++)
        cr_expect(optim_lr_at(&c, s) <= optim_lr_at(&c, s - 1), "not decreasing at %d", s);
    c.total_steps = 0; /* constant after warmup */
    cr_expect_float_eq(optim_lr_at(&c, 500), 1.0f, 1e-6);
}

Test(optim, step_clips_and_follows_schedule)
{
    optim_config c;
    optim_config_default(&c);
    c.lr = 0.01f;
    c.grad_clip = 1.0f;
    c.weight_decay = 0;
    c.warmup_steps = 2;
    optim *o;
    cr_assert_eq(optim_new(&c, 2, NULL, 0, &o, NULL), 0);
    float p[2] = {0, 0}, g[2] = {30, 40};
    double n = optim_step(o, p, g);
    cr_expect_float_eq(n, 50.0, 1e-9);
    cr_expect_float_eq(g[0], 0.6f, 1e-6); /* clipped in place */
    /* First Adam step moves each coordinate by lr (sign of g) at the warmup lr. */
    cr_expect_float_eq(p[0], -0.005f, 1e-6);
    cr_expect_float_eq(p[1], -0.005f, 1e-6);
    optim_free(o);
}

/* A few AdamW steps on one batch: the logprob of the taken tokens goes up
 * and the value moves towards its target. */
Test(optim, training_steps_fit_a_batch)
{
    model_config mc;
    cr_assert_eq(model_config_preset("tiny", &mc, NULL), 0);
    mc.vocab_size = 20;
    model *m;
    err e = {0};
    cr_assert_eq(model_new(&mc, &m, &e), 0, "%s", e.msg);
    rng r;
    rng_init(&r, 5);
    model_init_random(m, &r);
    optim_config oc;
    optim_config_default(&oc);
    oc.lr = 3e-3f;
    optim_range rg[64];
    int nr = model_decay_ranges(m, rg);
    optim *o;
    cr_assert_eq(optim_new(&oc, m->n_params, rg, nr, &o, &e), 0);
    float img[3 * 32 * 64];
    for (size_t i = 0; i < sizeof img / sizeof img[0]; i++)
        img[i] = rng_float(&r);
    int32_t t[12];
    for (int i = 0; i < 12; i++)
        t[i] = (int32_t)rng_below(&r, 20);
    model_seq s = {img, t, 12, 4};
    model_batch b = {&s, 1, 1.0f};
    model_out out;
    double first = 0, last = 0;
    float v_last = 0;
    for (int step = 0; step < 30; step++) {
        cr_assert_eq(model_forward(m, &b, &out, &e), 0, "%s", e.msg);
        double lp = 0;
        for (int i = 0; i < out.n_scored; i++)
            lp += out.logprob[i];
        if (step == 0)
            first = lp;
        last = lp;
        v_last = out.value[0];
        /* loss = -sum logprob + 0.5 (v - 1)^2 */
        float dlp[8], dv = out.value[0] - 1.0f;
        for (int i = 0; i < out.n_scored; i++)
            dlp[i] = -1.0f;
        cr_assert_eq(model_zero_grad(m, &e), 0);
        cr_assert_eq(model_backward(m, dlp, NULL, &dv, NULL, &e), 0, "%s", e.msg);
        optim_step(o, m->params, m->grads);
    }
    fprintf(stderr, "30 AdamW steps: sum logprob %.3f -> %.3f, value -> %.3f\n", first, last,
            v_last);
    cr_expect(last > first + 5.0, "logprob did not improve: %g -> %g", first, last);
    cr_expect(fabsf(v_last - 1.0f) < 0.2f, "value %g did not approach 1", v_last);
    optim_free(o);
    model_free(m);
}
