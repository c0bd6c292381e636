/* Sampling: the token rule (temperature, top-k, mask), the distribution it
 * draws from, stop rules, determinism, and agreement of the sampler's
 * logits and logprobs with a full forward pass of the model. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/sample.h"

Test(sample, pick_respects_topk_mask_and_reports_full_logprob)
{
    enum { V = 6 };
    float z[V] = {0.1f, 2.0f, -1.0f, 1.5f, 0.0f, 1.9f}, fs[V], lp;
    int32_t is[V];
    rng r;
    rng_init(&r, 1);
    float T = 0.5f;
    double lse = 0;
    for (int j = 0; j < V; j++)
        lse += exp(z[j] / T);
    lse = log(lse);
    /* top-1 is argmax whatever the temperature */
    for (int i = 0; i < 20; i++) {
        cr_expect_eq(sample_pick(z, V, NULL, T, 1, &r, fs, is, &lp), 1);
        cr_expect_float_eq(lp, z[1] / T - lse, 1e-5);
    }
    /* greedy */
    cr_expect_eq(sample_pick(z, V, NULL, 0.0f, 0, &r, fs, is, &lp), 1);
    /* top-2 draws only among {1, 5} */
    int seen[V] = {0};
    for (int i = 0; i < 2000; i++)
        seen[sample_pick(z, V, NULL, T, 2, &r, fs, is, &lp)]++;
    cr_expect(seen[1] > 0 && seen[5] > 0 && seen[1] + seen[5] == 2000);
    /* the mask removes tokens, and the logprob still uses the full softmax */
    uint8_t allowed[V] = {1, 0, 1, 0, 1, 0};
    for (int i = 0; i < 200; i++) {
        int32_t y = sample_pick(z, V, allowed, T, 0, &r, fs, is, &lp);
        cr_assert(allowed[y], "picked masked token %d", y);
        cr_expect_float_eq(lp, z[y] / T - lse, 1e-5);
    }
    uint8_t none[V] = {0};
    cr_expect_eq(sample_pick(z, V, none, T, 0, &r, fs, is, &lp), -1);
}

Test(sample, draws_follow_the_tempered_softmax)
{
    enum { V = 5, N = 40000 };
    float z[V] = {0.0f, 0.5f, -0.3f, 1.0f, 0.2f}, fs[V], lp;
    int32_t is[V];
    float T = 0.8f;
    double p[V], s = 0;
    for (int j = 0; j < V; j++)
        s += (p[j] = exp(z[j] / T));
    rng r;
    rng_init(&r, 2);
    int cnt[V] = {0};
    for (int i = 0; i < N; i++)
        cnt[sample_pick(z, V, NULL, T, 0, &r, fs, is, &lp)]++;
    for (int j = 0; j < V; j++) {
        double pj = p[j] / s, sd = sqrt(N * pj * (1 - pj));
        cr_expect(fabs(cnt[j] - N * pj) < 5 * sd, "token %d: %d draws, expected %.0f", j, cnt[j],
                  N * pj);
    }
}

typedef struct fixture {
    model *m;
    sampler *s;
    float *img;
    int32_t p0[6], p1[3], p2[9];
    model_seq prompts[3];
} fixture;

static void fixture_init(fixture *f, int vocab)
{
    model_config c;
    cr_assert_eq(model_config_preset("tiny", &c, NULL), 0);
    c.vocab_size = vocab;
    err e = {0};
    cr_assert_eq(model_new(&c, &f->m, &e), 0, "%s", e.msg);
    rng r;
    rng_init(&r, 77);
    model_init_random(f->m, &r);
    /* larger weights than the init, so that distributions are not flat */
    for (size_t i = 0; i < f->m->n_params; i++)
        f->m->params[i] += 0.1f * (float)rng_normal(&r);
    cr_assert_eq(sample_new(&c, 4, &f->s, &e), 0, "%s", e.msg);
    f->img = malloc(sizeof(float) * 3 * 32 * 64);
    for (int i = 0; i < 3 * 32 * 64; i++)
        f->img[i] = rng_float(&r);
    for (int i = 0; i < 6; i++)
        f->p0[i] = (int32_t)rng_below(&r, (uint64_t)vocab);
    for (int i = 0; i < 3; i++)
        f->p1[i] = (int32_t)rng_below(&r, (uint64_t)vocab);
    for (int i = 0; i < 9; i++)
        f->p2[i] = (int32_t)rng_below(&r, (uint64_t)vocab);
    f->prompts[0] = (model_seq){f->img, f->p0, 6, 6};
    f->prompts[1] = (model_seq){NULL, f->p1, 3, 3};
    f->prompts[2] = (model_seq){f->img, f->p2, 9, 9};
}

static void fixture_free(fixture *f)
{
    sample_free(f->s);
    model_free(f->m);
    free(f->img);
}

Test(sample, logits_and_logprobs_agree_with_full_forward)
{
    fixture f;
    fixture_init(&f, 30);
    int V = 30, max_new = 12;
    float *rec = calloc((size_t)3 * max_new * V, sizeof(float));
    sample_config sc = {.temperature = 0.7f, .top_k = 5, .max_new = max_new, .end_token = -1,
                        .record_logits = rec};
    sample_result res[3];
    rng r;
    rng_init(&r, 3);
    err e = {0};
    cr_assert_eq(sample_run(f.s, f.m, f.prompts, 3, &sc, &r, res, &e), 0, "%s", e.msg);
    /* Score prompt + generated tokens with one full forward at T. */
    int32_t full[3][40];
    model_seq seqs[3];
    for (int b = 0; b < 3; b++) {
        cr_expect_eq(res[b].n, max_new);
        cr_expect_eq(res[b].stop, SAMPLE_STOP_MAX_NEW);
        memcpy(full[b], f.prompts[b].tokens, sizeof(int32_t) * (size_t)f.prompts[b].n_tokens);
        memcpy(full[b] + f.prompts[b].n_tokens, res[b].tokens, sizeof(int32_t) * (size_t)res[b].n);
        seqs[b] = (model_seq){f.prompts[b].image, full[b], f.prompts[b].n_tokens + res[b].n,
                              f.prompts[b].n_tokens};
    }
    model_batch batch = {seqs, 3, 0.7f};
    model_out o;
    cr_assert_eq(model_forward(f.m, &batch, &o, &e), 0, "%s", e.msg);
    double dl = 0, dp = 0;
    for (int b = 0; b < 3; b++) {
        cr_expect_float_eq(o.value[b], res[b].value, 1e-5);
        for (int k = 0; k < res[b].n; k++) {
            int row = o.first[b] + k;
            dp = fmax(dp, fabs(o.logprob[row] - res[b].logprobs[k]));
            for (int v = 0; v < V; v++)
                dl = fmax(dl, fabs(o.logits[(size_t)row * V + v] -
                                   rec[((size_t)b * max_new + k) * V + v]));
        }
    }
    fprintf(stderr, "sampler vs full forward: max |logit diff| %.2e, max |logprob diff| %.2e\n", dl,
            dp);
    cr_expect(dl < 1e-4 && dp < 1e-4, "logits %g, logprobs %g", dl, dp);
    free(rec);
    fixture_free(&f);
}

Test(sample, deterministic_and_independent_of_batch_mates)
{
    fixture f;
    fixture_init(&f, 30);
    sample_config sc = {.temperature = 1.0f, .top_k = 0, .max_new = 10, .end_token = -1};
    sample_result res[3];
    rng r;
    err e = {0};
    rng_init(&r, 4);
    cr_assert_eq(sample_run(f.s, f.m, f.prompts, 3, &sc, &r, res, &e), 0, "%s", e.msg);
    int32_t a0[10], a1[10];
    memcpy(a0, res[0].tokens, sizeof a0);
    memcpy(a1, res[1].tokens, sizeof a1);
    /* the same seed again, with only the first two prompts */
    rng_init(&r, 4);
    cr_assert_eq(sample_run(f.s, f.m, f.prompts, 2, &sc, &r, res, &e), 0, "%s", e.msg);
    cr_expect_eq(memcmp(res[0].tokens, a0, sizeof a0), 0);
    cr_expect_eq(memcmp(res[1].tokens, a1, sizeof a1), 0);
    /* the parent stream advanced: the next call draws something else */
    cr_assert_eq(sample_run(f.s, f.m, f.prompts, 2, &sc, &r, res, &e), 0, "%s", e.msg);
    cr_expect_neq(memcmp(res[0].tokens, a0, sizeof a0), 0);
    fixture_free(&f);
}

/* Mask hook: force token 7 at step 2 of every sequence and forbid token 3
 * everywhere; sequence 1 gets no allowed token at step 4. */
static void force_mask(void *ctx, int seq, const int32_t *gen, int n, uint8_t *allowed)
{
    int *calls = ctx;
    (*calls)++;
    allowed[3] = 0;
    if (n == 2) {
        memset(allowed, 0, 30);
        allowed[7] = 1;
    }
    if (seq == 1 && n == 4)
        memset(allowed, 0, 30);
}

Test(sample, stop_rules_and_mask_hook)
{
    fixture f;
    fixture_init(&f, 30);
    int calls = 0;
    sample_config sc = {.temperature = 1.0f, .max_new = 8, .end_token = 7, .mask = force_mask,
                        .mask_ctx = &calls};
    sample_result res[3];
    rng r;
    rng_init(&r, 5);
    err e = {0};
    cr_assert_eq(sample_run(f.s, f.m, f.prompts, 3, &sc, &r, res, &e), 0, "%s", e.msg);
    for (int b = 0; b < 3; b++) {
        cr_assert_leq(res[b].n, 3);
        cr_expect_eq(res[b].tokens[res[b].n - 1], 7, "seq %d ends on the end token", b);
        cr_expect_eq(res[b].stop, SAMPLE_STOP_END);
        for (int k = 0; k < res[b].n; k++)
            cr_expect_neq(res[b].tokens[k], 3);
    }
    /* without the end token, sequence 1 runs into the empty mask */
    sc.end_token = -1;
    cr_assert_eq(sample_run(f.s, f.m, f.prompts, 3, &sc, &r, res, &e), 0, "%s", e.msg);
    cr_expect_eq(res[1].stop, SAMPLE_STOP_MASKED);
    cr_expect_eq(res[1].n, 4);
    cr_expect_eq(res[0].stop, SAMPLE_STOP_MAX_NEW);
    cr_expect_eq(res[0].n, 8);
    cr_expect_eq(res[0].tokens[2], 7);
    fixture_free(&f);
}

Test(sample, stops_when_the_sequence_is_full)
{
    fixture f;
    fixture_init(&f, 30);
    int max_text = model_config_max_text(&f.m->cfg);
    int32_t *p = calloc((size_t)max_text, sizeof(int32_t));
    model_seq s = {f.img, p, max_text - 3, 1};
    sample_config sc = {.temperature = 1.0f, .max_new = 50, .end_token = -1};
    sample_result res[1];
    rng r;
    rng_init(&r, 6);
    err e = {0};
    cr_assert_eq(sample_run(f.s, f.m, &s, 1, &sc, &r, res, &e), 0, "%s", e.msg);
    /* 3 tokens fill the sequence; the 4th is drawn from the last position */
    cr_expect_eq(res[0].n, 4);
    cr_expect_eq(res[0].stop, SAMPLE_STOP_FULL);
    cr_expect_eq(sample_run(f.s, f.m, f.prompts, 5, &sc, &r, res, &e), GTRT_EINVAL);
    free(p);
    fixture_free(&f);
}
