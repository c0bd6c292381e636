/* Teacher scoring (teacher/score.c) against direct model_forward passes:
 * every mode, at several temperatures, batched (sequences of different
 * lengths, with and without an image, different score ranges) and one
 * sequence at a time. Each value is compared with model_forward's own
 * logprob of that token on the same batch (max abs diff 1e-6) and with a
 * double-precision log-softmax of the raw logits computed here. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/half.h"
#include "teacher/score.h"
#include "test_util.h"

#define NSEQ 5
#define TOL 1e-6

typedef struct fixture {
    model *m;
    model_config c;
    float *images[NSEQ];
    int32_t tokens[NSEQ][40];
    int n_prompt[NSEQ], n_tokens[NSEQ], begin[NSEQ], end[NSEQ];
} fixture;

static void fixture_init(fixture *fx, uint64_t seed)
{
    memset(fx, 0, sizeof *fx);
    fx->c = (model_config){.vocab_size = 40, .d_model = 32, .n_layer = 2, .n_head = 2,
                           .patch = 4, .image_c = 3, .image_h = 8, .image_w = 8,
                           .max_seq = 40, .value_h1 = 8, .value_h2 = 6};
    err e = {0};
    cr_assert_eq(model_new(&fx->c, &fx->m, &e), 0, "%s", e.msg);
    rng r;
    rng_init(&r, seed);
    model_init_random(fx->m, &r);
    /* Spread the logits so that the distributions are far from uniform. */
    for (size_t i = 0; i < fx->m->n_params; i++)
        fx->m->params[i] += 0.15f * (float)rng_normal(&r);
    static const int prompts[NSEQ] = {3, 6, 1, 4, 5}, answers[NSEQ] = {7, 2, 9, 1, 5};
    static const int begins[NSEQ] = {0, 1, 3, 0, 2}, ends[NSEQ] = {7, 2, 8, 1, 4};
    size_t ni = (size_t)fx->c.image_c * fx->c.image_h * fx->c.image_w;
    for (int s = 0; s < NSEQ; s++) {
        fx->n_prompt[s] = prompts[s];
        fx->n_tokens[s] = prompts[s] + answers[s];
        fx->begin[s] = begins[s];
        fx->end[s] = ends[s];
        for (int t = 0; t < fx->n_tokens[s]; t++)
            fx->tokens[s][t] = (int32_t)rng_below(&r, (uint64_t)fx->c.vocab_size);
        if (s == 2)
            continue; /* no image prefix */
        fx->images[s] = malloc(sizeof(float) * ni);
        for (size_t i = 0; i < ni; i++)
            fx->images[s][i] = (float)rng_below(&r, 256) / 255.0f;
    }
}

static void fixture_free(fixture *fx)
{
    for (int s = 0; s < NSEQ; s++)
        free(fx->images[s]);
    model_free(fx->m);
}

/* References for a batch (the sequences `which[0..n)`), per sequence,
 * answer position r and token id j:
 *   fwd: model_forward's own logprob of j at r at temperature T, from a
 *        forward pass of the same batch with answer token r replaced by j
 *        in every sequence (causality: that does not change what predicts
 *        position r), so the comparison is with a direct forward;
 *   lp:  the tempered log-softmax of the batch's raw logits in double
 *        precision, an independent restatement of the formula. */
typedef struct refs {
    float fwd[NSEQ][10][40];
    double lp[NSEQ][10][40];
} refs;

static void make_refs(fixture *fx, const int *which, int n, float T, refs *out)
{
    int V = fx->c.vocab_size;
    int32_t tok[NSEQ][40];
    model_seq q[NSEQ];
    for (int i = 0; i < n; i++) {
        int s = which[i];
        memcpy(tok[i], fx->tokens[s], sizeof tok[i]);
        q[i] = (model_seq){fx->images[s], tok[i], fx->n_tokens[s], fx->n_prompt[s]};
    }
    model_batch b = {q, n, T};
    model_out o;
    err e = {0};
    REQUIRE(model_forward(fx->m, &b, &o, &e) == 0, "%s", e.msg);
    for (int i = 0; i < n; i++) {
        int s = which[i];
        for (int r = 0; r < fx->n_tokens[s] - fx->n_prompt[s]; r++) {
            const float *z = o.logits + (size_t)(o.first[i] + r) * V;
            double mx = -INFINITY, sum = 0;
            for (int j = 0; j < V; j++)
                mx = fmax(mx, (double)z[j] / T);
            for (int j = 0; j < V; j++)
                sum += exp((double)z[j] / T - mx);
            for (int j = 0; j < V; j++)
                out->lp[s][r][j] = (double)z[j] / T - mx - log(sum);
        }
    }
    for (int r = 0; r < 10; r++) {
        for (int j = 0; j < V; j++) {
            for (int i = 0; i < n; i++)
                if (fx->n_prompt[which[i]] + r < fx->n_tokens[which[i]])
                    tok[i][fx->n_prompt[which[i]] + r] = j;
            REQUIRE(model_forward(fx->m, &b, &o, &e) == 0, "%s", e.msg);
            for (int i = 0; i < n; i++)
                if (fx->n_prompt[which[i]] + r < fx->n_tokens[which[i]])
                    out->fwd[which[i]][r][j] = o.logprob[o.first[i] + r];
        }
        for (int i = 0; i < n; i++) /* the real token back, for the later positions */
            memcpy(tok[i], fx->tokens[which[i]], sizeof tok[i]);
    }
}

/* Float32 rounding of z/T - lse: a few units in the last place. */
static double ulps(double x) { return 4 * ldexp(1.0, ilogb(fabs(x) + 1e-30) - 23) + 1e-7; }

/* Outputs of one score_run, per sequence. */
typedef struct result {
    float values[NSEQ][40 * 40];
    uint32_t ids[NSEQ][40 * 40];
} result;

static void run(fixture *fx, score_mode mode, float T, int k, const int *which, int n,
                result *res)
{
    score_seq q[NSEQ];
    for (int i = 0; i < n; i++) {
        int s = which[i];
        q[i] = (score_seq){fx->images[s], fx->tokens[s], fx->n_prompt[s], fx->n_tokens[s],
                           fx->begin[s], fx->end[s], mode, T, k, res->values[s],
                           mode == SCORE_TOPK ? res->ids[s] : NULL};
    }
    err e = {0};
    REQUIRE(score_run(fx->m, q, n, &e) == 0, "%s", e.msg);
}

static void check_topk(const float *v, const uint32_t *ids, int k, const float *fwd,
                       const double *lp, int V, int s, int r)
{
    int chosen[64] = {0};
    for (int i = 0; i < k; i++) {
        REQUIRE(ids[i] < (uint32_t)V, "id %u out of range", ids[i]);
        CHECK(!chosen[ids[i]], "id %u twice", ids[i]);
        chosen[ids[i]] = 1;
        CHECK(fabs(v[i] - fwd[ids[i]]) <= TOL, "seq %d pos %d rank %d: %g vs forward %g", s, r,
              i, v[i], fwd[ids[i]]);
        CHECK(fabs(v[i] - lp[ids[i]]) <= ulps(lp[ids[i]]), "seq %d pos %d rank %d: %g vs %g", s,
              r, i, v[i], lp[ids[i]]);
        CHECK(i == 0 || v[i] <= v[i - 1], "seq %d pos %d: not sorted", s, r);
    }
    /* The true top k: nothing left out beats the k-th. */
    for (int j = 0; j < V; j++)
        CHECK(chosen[j] || lp[j] <= lp[ids[k - 1]] + ulps(lp[j]),
              "seq %d pos %d: id %d (%g) missing from the top %d", s, r, j, lp[j], k);
}

static void check_against(fixture *fx, score_mode mode, int k, const int *which, int n,
                          const result *res, const refs *ref)
{
    int V = fx->c.vocab_size;
    size_t w = score_width(mode, k, V);
    for (int i = 0; i < n; i++) {
        int s = which[i];
        for (int r = fx->begin[s]; r < fx->end[s]; r++) {
            const float *v = res->values[s] + (size_t)(r - fx->begin[s]) * w;
            const float *fwd = ref->fwd[s][r];
            const double *lp = ref->lp[s][r];
            int32_t y = fx->tokens[s][fx->n_prompt[s] + r];
            if (mode == SCORE_SAMPLED) {
                CHECK(fabs(v[0] - fwd[y]) <= TOL, "seq %d pos %d: %g vs forward %g", s, r, v[0],
                      fwd[y]);
                CHECK(fabs(v[0] - lp[y]) <= ulps(lp[y]), "seq %d pos %d: %g vs %g", s, r, v[0],
                      lp[y]);
            } else if (mode == SCORE_FULL) {
                for (int j = 0; j < V; j++) {
                    CHECK(fabs(v[j] - fwd[j]) <= TOL, "seq %d pos %d id %d: %g vs forward %g", s,
                          r, j, v[j], fwd[j]);
                    CHECK(fabs(v[j] - lp[j]) <= ulps(lp[j]), "seq %d pos %d id %d: %g vs %g", s,
                          r, j, v[j], lp[j]);
                }
            } else {
                check_topk(v, res->ids[s] + (size_t)(r - fx->begin[s]) * k, k, fwd, lp, V, s, r);
            }
        }
    }
}

/* Batched and one sequence at a time, each against direct forward passes
 * of the same batch; batched and alone agree to float rounding of the
 * forward pass itself (test_model checks model_forward at 1e-5). */
static void check_modes(score_mode mode, int k)
{
    static const float temps[] = {1.0f, 0.7f, 2.5f};
    fixture fx;
    fixture_init(&fx, 11 + (uint64_t)mode);
    result *batched = calloc(1, sizeof *batched), *single = calloc(1, sizeof *single);
    refs *ref = calloc(1, sizeof *ref);
    int all[NSEQ] = {0, 1, 2, 3, 4};
    for (size_t t = 0; t < sizeof temps / sizeof temps[0]; t++) {
        run(&fx, mode, temps[t], k, all, NSEQ, batched);
        make_refs(&fx, all, NSEQ, temps[t], ref);
        check_against(&fx, mode, k, all, NSEQ, batched, ref);
        for (int s = 0; s < NSEQ; s++) {
            run(&fx, mode, temps[t], k, &s, 1, single);
            make_refs(&fx, &s, 1, temps[t], ref);
            check_against(&fx, mode, k, &s, 1, single, ref);
        }
        size_t w = score_width(mode, k, fx.c.vocab_size);
        for (int s = 0; s < NSEQ; s++)
            for (size_t i = 0; i < (size_t)(fx.end[s] - fx.begin[s]) * w; i++)
                CHECK(fabsf(batched->values[s][i] - single->values[s][i]) <= 1e-5,
                      "seq %d value %zu: batched %g, alone %g", s, i, batched->values[s][i],
                      single->values[s][i]);
    }
    free(ref);
    free(batched);
    free(single);
    fixture_free(&fx);
}

Test(score, sampled_equals_forward_logprob) { check_modes(SCORE_SAMPLED, 0); }
Test(score, full_is_the_tempered_log_softmax) { check_modes(SCORE_FULL, 0); }
Test(score, topk_is_the_true_top_k) { check_modes(SCORE_TOPK, 5); }
Test(score, topk_of_the_whole_vocabulary_is_sorted_full) { check_modes(SCORE_TOPK, 40); }

/* The temperature really divides the logits: the same positions at T = 1
 * and T = 2 differ, and both match their references (above). */
Test(score, temperature_changes_the_answer)
{
    fixture fx;
    fixture_init(&fx, 3);
    result *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    int all[NSEQ] = {0, 1, 2, 3, 4};
    run(&fx, SCORE_FULL, 1.0f, 0, all, NSEQ, a);
    run(&fx, SCORE_FULL, 2.0f, 0, all, NSEQ, b);
    double diff = 0;
    for (int i = 0; i < 40; i++)
        diff = fmax(diff, fabs(a->values[0][i] - b->values[0][i]));
    cr_expect_gt(diff, 0.01, "temperature 2 gives the same log-probabilities as 1");
    free(a);
    free(b);
    fixture_free(&fx);
}

/* Float16 replies: each value within half a float16 step of the reference. */
Test(score, float16_within_half_rounding)
{
    fixture fx;
    fixture_init(&fx, 5);
    result *res = calloc(1, sizeof *res);
    refs *ref = calloc(1, sizeof *ref);
    int all[NSEQ] = {0, 1, 2, 3, 4};
    run(&fx, SCORE_FULL, 0.8f, 0, all, NSEQ, res);
    make_refs(&fx, all, NSEQ, 0.8f, ref);
    int V = fx.c.vocab_size;
    uint8_t bytes[40 * 40 * 2];
    for (int s = 0; s < NSEQ; s++) {
        size_t n = (size_t)(fx.end[s] - fx.begin[s]) * V;
        half_write_f16le(bytes, res->values[s], n);
        for (int r = fx.begin[s]; r < fx.end[s]; r++)
            for (int j = 0; j < V; j++) {
                size_t i = (size_t)(r - fx.begin[s]) * V + j;
                float h = half_to_float((uint16_t)(bytes[2 * i] | bytes[2 * i + 1] << 8));
                double want = ref->fwd[s][r][j];
                double step = ldexp(1.0, ilogb(want) - 10); /* float16 ulp there */
                CHECK(fabs(h - want) <= step / 2, "seq %d pos %d id %d: %g vs %g", s, r, j, h,
                      want);
            }
    }
    free(ref);
    free(res);
    fixture_free(&fx);
}

Test(score, refuses_bad_ranges)
{
    fixture fx;
    fixture_init(&fx, 7);
    float v[64 * 40];
    uint32_t ids[64 * 40];
    err e = {0};
    score_seq q = {fx.images[0], fx.tokens[0], fx.n_prompt[0], fx.n_tokens[0], 0, 7,
                   SCORE_TOPK, 1.0f, 5, v, ids};
    q.end = 8; /* past the answer */
    cr_expect_eq(score_run(fx.m, &q, 1, &e), GTRT_EINVAL);
    q.end = 3, q.begin = 3; /* empty */
    cr_expect_eq(score_run(fx.m, &q, 1, &e), GTRT_EINVAL);
    q.begin = 0, q.top_k = 0;
    cr_expect_eq(score_run(fx.m, &q, 1, &e), GTRT_EINVAL);
    q.top_k = 65;
    cr_expect_eq(score_run(fx.m, &q, 1, &e), GTRT_EINVAL);
    q.top_k = 5, q.temperature = 0;
    cr_expect_eq(score_run(fx.m, &q, 1, &e), GTRT_EINVAL);
    q.temperature = 1;
    int32_t bad[40];
    memcpy(bad, fx.tokens[0], sizeof bad);
    bad[2] = 40; /* outside the vocabulary */
    q.tokens = bad;
    cr_expect_neq(score_run(fx.m, &q, 1, &e), 0);
    q.tokens = fx.tokens[0];
    cr_expect_eq(score_run(fx.m, &q, 1, &e), 0, "%s", e.msg);
    fixture_free(&fx);
}
