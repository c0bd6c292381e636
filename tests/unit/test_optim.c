/* AdamW against its formula, weight-decay ranges, clipping, the cosine
 * schedule, a few real training steps of the model, and its state on disk
 * (a reloaded state continues bit for bit; a state that does not fit is
 * refused). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/model.h"
#include "common/optim.h"
#include "tests/unit/test_util.h"

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

/* ==== state on disk ==== */

/* A gradient sequence that depends on the step and the parameters, so a
 * wrong moment or step after reloading changes every later update. */
static void fake_grads(const float *p, float *g, size_t n, int step)
{
    for (size_t i = 0; i < n; i++)
        g[i] = sinf(0.37f * (float)i + 0.11f * (float)step) * (1.0f + 0.5f * p[i]);
}

static optim *small_optim(size_t n)
{
    optim_config c;
    optim_config_default(&c);
    c.lr = 0.05f;
    c.weight_decay = 0.1f;
    c.warmup_steps = 3;
    c.total_steps = 20;
    c.min_lr = 0.001f;
    optim_range dec[1] = {{2, n / 2}};
    optim *o;
    err e = {0};
    cr_assert_eq(optim_new(&c, n, dec, 1, &o, &e), 0, "%s", e.msg);
    return o;
}

/* 5 steps, save, 7 more; against 5 steps, save, load into a fresh
 * optimiser and parameters copied from the file's moment of saving, 7 more:
 * the parameters, moments and step agree bit for bit. */
Test(optim, state_round_trip_continues_bit_for_bit)
{
    enum { N = 37 };
    char *dir = tmpdir();
    char path[256];
    snprintf(path, sizeof path, "%s/optim.safetensors", dir);
    optim *a = small_optim(N);
    float p[N], g[N], saved[N];
    for (int i = 0; i < N; i++)
        p[i] = 0.01f * (float)i - 0.2f;
    int step = 0;
    for (; step < 5; step++) {
        fake_grads(p, g, N, step);
        optim_step(a, p, g);
    }
    err e = {0};
    st_kv meta[] = {{"note", "test"}};
    cr_assert_eq(optim_save(a, path, NULL, 0, meta, 1, &e), 0, "%s", e.msg);
    memcpy(saved, p, sizeof p);
    for (int k = step; k < 12; k++) {
        fake_grads(p, g, N, k);
        optim_step(a, p, g);
    }
    optim *b = small_optim(N);
    st_file *f;
    cr_assert_eq(st_open(path, &f, &e), 0, "%s", e.msg);
    cr_expect_str_eq(st_meta(f, "note"), "test");
    cr_assert_eq(optim_load(b, f, &e), 0, "%s", e.msg);
    st_close(f);
    cr_expect_eq(b->step, 5);
    for (int k = step; k < 12; k++) {
        fake_grads(saved, g, N, k);
        optim_step(b, saved, g);
    }
    cr_expect_eq(memcmp(saved, p, sizeof p), 0, "parameters differ after resuming");
    cr_expect_eq(memcmp(a->m, b->m, 2 * N * sizeof(float)), 0, "moments differ after resuming");
    cr_expect_eq(a->step, b->step);
    optim_free(a);
    optim_free(b);
    rmtree(dir);
}

/* Write a file with the given tensors as an optimizer state would be. */
static void write_state(const char *path, const char *format, const char *n_params,
                        const st_entry *t, int n)
{
    st_kv meta[] = {{"format", format}, {"n_params", n_params}};
    err e = {0};
    cr_assert_eq(st_write(path, t, n, meta, 2, &e), 0, "%s", e.msg);
}

static void expect_refused(optim *o, const char *path, const char *needle)
{
    st_file *f;
    err e = {0};
    cr_assert_eq(st_open(path, &f, &e), 0, "%s", e.msg);
    int64_t step = o->step;
    float m0 = o->m[0];
    cr_expect_neq(optim_load(o, f, &e), 0, "%s was accepted", needle);
    cr_expect(strstr(e.msg, needle) != NULL, "message \"%s\" lacks \"%s\"", e.msg, needle);
    cr_expect(strstr(e.msg, path) != NULL, "message \"%s\" does not name the file", e.msg);
    cr_expect_eq(o->step, step, "a refused file changed the step");
    cr_expect_eq(o->m[0], m0, "a refused file changed the moments");
    st_close(f);
}

Test(optim, load_refuses_a_state_that_does_not_fit)
{
    char *dir = tmpdir();
    char path[256];
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    optim *o = small_optim(8);
    o->m[0] = 0.5f;
    o->step = 3;
    float m[8] = {0}, v[8] = {0}, m9[9] = {0};
    uint16_t h[8] = {0};
    int64_t step = 4;
    st_entry ok_step = {"optim.step", ST_I64, 1, {1}, &step};

    write_state(path, "gtrt-optim-1", "9",
                (st_entry[]){{"optim.m", ST_F32, 1, {9}, m9}, {"optim.v", ST_F32, 1, {9}, m9}, ok_step},
                3);
    expect_refused(o, path, "for 9 parameters, but the policy has 8");
    write_state(path, "gtrt-optim-1", "8",
                (st_entry[]){{"optim.m", ST_F16, 1, {8}, h}, {"optim.v", ST_F32, 1, {8}, v}, ok_step},
                3);
    expect_refused(o, path, "optim.m is F16");
    write_state(path, "gtrt-optim-1", "8",
                (st_entry[]){{"optim.m", ST_F32, 2, {2, 4}, m}, {"optim.v", ST_F32, 1, {8}, v}, ok_step},
                3);
    expect_refused(o, path, "optim.m is F32 with 2 dims");
    write_state(path, "gtrt-optim-1", "8",
                (st_entry[]){{"optim.m", ST_F32, 1, {8}, m}, {"optim.v", ST_F32, 1, {8}, v}}, 2);
    expect_refused(o, path, "no tensor optim.step");
    write_state(path, "something-else", "8",
                (st_entry[]){{"optim.m", ST_F32, 1, {8}, m}, {"optim.v", ST_F32, 1, {8}, v}, ok_step},
                3);
    expect_refused(o, path, "format \"something-else\"");
    v[3] = -1.0f; /* a second moment is a running mean of squares */
    write_state(path, "gtrt-optim-1", "8",
                (st_entry[]){{"optim.m", ST_F32, 1, {8}, m}, {"optim.v", ST_F32, 1, {8}, v}, ok_step},
                3);
    expect_refused(o, path, "not finite");
    v[3] = 0.0f;
    m[5] = NAN;
    write_state(path, "gtrt-optim-1", "8",
                (st_entry[]){{"optim.m", ST_F32, 1, {8}, m}, {"optim.v", ST_F32, 1, {8}, v}, ok_step},
                3);
    expect_refused(o, path, "not finite");
    /* and a good one is taken */
    m[5] = 0.25f;
    write_state(path, "gtrt-optim-1", "8",
                (st_entry[]){{"optim.m", ST_F32, 1, {8}, m}, {"optim.v", ST_F32, 1, {8}, v}, ok_step},
                3);
    st_file *f;
    err e = {0};
    cr_assert_eq(st_open(path, &f, &e), 0, "%s", e.msg);
    cr_expect_eq(optim_load(o, f, &e), 0, "%s", e.msg);
    st_close(f);
    cr_expect_eq(o->step, 4);
    cr_expect_eq(o->m[5], 0.25f);
    cr_expect_eq(o->m[0], 0.0f);
    optim_free(o);
    rmtree(dir);
}

Test(optim, save_refuses_reserved_names)
{
    char *dir = tmpdir();
    char path[256];
    snprintf(path, sizeof path, "%s/x.safetensors", dir);
    optim *o = small_optim(4);
    int64_t x = 1;
    err e = {0};
    st_entry t = {"optim.extra", ST_I64, 1, {1}, &x};
    cr_expect_neq(optim_save(o, path, &t, 1, NULL, 0, &e), 0);
    st_kv kv = {"format", "mine"};
    cr_expect_neq(optim_save(o, path, NULL, 0, &kv, 1, &e), 0);
    cr_expect_neq(access(path, F_OK), 0, "a refused save wrote a file");
    optim_free(o);
    rmtree(dir);
}
