/* Benchmark of the learner's PPO update against the bare training step.
 *
 * The batch: num_steps Points24 turns made from oracle answers (real
 * prompt and answer lengths, thought/action marks, quantised card images),
 * grouped into episodes with format and win/loss rewards, and with the
 * old log-probabilities and values the policy itself gives them (so
 * probability ratios start at 1, as for a fresh batch). train_update runs
 * on it as the learner does: GAE, advantage normalisation, `epochs`
 * shuffled passes of `minibatch` steps, each a forward at the sampling
 * temperature, the PPO loss, a backward and an AdamW step.
 *
 * The reference is the pure training step of bench_model (forward,
 * backward from fixed output gradients, AdamW) on the same model over the
 * same sequences in the same minibatch sizes, images already as floats:
 * exactly the model's share of the update. Overhead = update / pure - 1
 * is what the update adds around the model (sorting, GAE, gathering each
 * minibatch and converting its images, the PPO loss and its statistics).
 * Target: under 15 %.
 *
 * On a shared machine a whole update against a whole pure run compares two
 * different stretches of load, so both are measured an epoch at a time,
 * alternating (train_update with epochs = 1; its once-per-update part,
 * timed alone, is counted once per update, not once per epoch).
 *
 * Tokens: every sequence is image patches + prompt + answer, and each
 * counts once per epoch (train_stats.tokens, the learner's metric, leaves
 * out the image patches; it is printed too). FLOPs: 3 x the forward
 * estimate (model_forward_flops), as bench_model counts them.
 *
 * Usage: bench_update [--preset P] [--steps N] [--epochs E] [--minibatch M]
 *                     [--reps R]   (R updates' worth of epochs, default 1)
 * Threads: OpenBLAS's default (all cores), as the learner runs. Prints
 * figures; never fails on a number. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "learner/train.h"

#define BU_TEMPERATURE 0.2f

typedef struct bu_opts {
    const char *preset;
    int steps, epochs, minibatch, reps;
} bu_opts;

/* Float images and sequences of the whole batch, in step order. */
typedef struct bu_seqs {
    model_seq *seqs;
    float *images;
    int32_t **tokens;
    int n;
} bu_seqs;

static void bu_seqs_free(bu_seqs *q)
{
    for (int i = 0; q->tokens && i < q->n; i++)
        free(q->tokens[i]);
    free(q->tokens);
    free(q->seqs);
    free(q->images);
    memset(q, 0, sizeof *q);
}

static int bu_seqs_build(const traj_step *s, int n, const model_config *c, bu_seqs *q)
{
    size_t img = (size_t)c->image_c * c->image_h * c->image_w;
    q->n = n;
    q->seqs = malloc((size_t)n * sizeof *q->seqs);
    q->images = malloc((size_t)n * img * sizeof *q->images);
    q->tokens = calloc((size_t)n, sizeof *q->tokens);
    if (!q->seqs || !q->images || !q->tokens)
        return GTRT_ENOMEM;
    for (int i = 0; i < n; i++) {
        int nt = (int)(s[i].n_prompt + s[i].n_answer);
        if (!(q->tokens[i] = malloc((size_t)nt * sizeof *q->tokens[i])))
            return GTRT_ENOMEM;
        memcpy(q->tokens[i], s[i].prompt, s[i].n_prompt * sizeof *q->tokens[i]);
        memcpy(q->tokens[i] + s[i].n_prompt, s[i].answer, s[i].n_answer * sizeof *q->tokens[i]);
        float *im = q->images + (size_t)i * img;
        for (size_t p = 0; p < img; p++)
            im[p] = s[i].image[p] * (1.0f / 255.0f);
        q->seqs[i] = (model_seq){im, q->tokens[i], nt, (int)s[i].n_prompt};
    }
    return 0;
}

/* Episodes of 4..8 turns (Points24's range), +3 format reward on every
 * turn, a win (+10) on a third of the episodes and a wrong '=' (-1) on the
 * rest; old logprobs and values from the policy itself. */
static int bu_fill(model *m, traj_step *s, const bu_seqs *q, int mb, rng *r, err *e)
{
    uint64_t episode = 0;
    uint32_t turn = 0;
    for (int i = 0, left = 0; i < q->n; i++) {
        if (left == 0) {
            left = 4 + (int)rng_below(r, 5);
            episode++;
            turn = 0;
        }
        snprintf(s[i].actor, sizeof s[i].actor, "bench-actor");
        s[i].episode = episode;
        s[i].turn = turn++;
        s[i].policy_version = 1;
        s[i].done = --left == 0 || i == q->n - 1;
        s[i].success = s[i].done && rng_below(r, 3) == 0;
        s[i].reward = 3.0f + (s[i].done ? (s[i].success ? 10.0f : -1.0f) : 0.0f);
    }
    for (int at = 0; at < q->n; at += mb) {
        int k = q->n - at < mb ? q->n - at : mb;
        model_batch b = {q->seqs + at, k, BU_TEMPERATURE};
        model_out out;
        int rc = model_forward(m, &b, &out, e);
        if (rc)
            return rc;
        for (int j = 0; j < k; j++) {
            traj_step *x = &s[at + j];
            memcpy(x->logprob, out.logprob + out.first[j], x->n_answer * sizeof *x->logprob);
            x->value = out.value[j];
        }
    }
    return 0;
}

/* Fixed output gradients of the size of the largest minibatch, for the
 * pure step (their values do not change the cost). */
typedef struct bu_grads {
    float *dlogp, *dent, *dval;
} bu_grads;

static int bu_grads_new(const traj_step *s, int n, int mb, bu_grads *g)
{
    int most = 0;
    for (int i = 0; i < n; i++)
        most = (int)s[i].n_answer > most ? (int)s[i].n_answer : most;
    size_t R = (size_t)mb * most;
    g->dlogp = malloc(R * sizeof *g->dlogp);
    g->dent = malloc(R * sizeof *g->dent);
    g->dval = malloc((size_t)mb * sizeof *g->dval);
    if (!g->dlogp || !g->dent || !g->dval)
        return GTRT_ENOMEM;
    for (size_t i = 0; i < R; i++) {
        g->dlogp[i] = -1.0f / (float)R;
        g->dent[i] = 0;
    }
    for (int i = 0; i < mb; i++)
        g->dval[i] = 0.1f / mb;
    return 0;
}

/* The model's part of one epoch: minibatches of forward, backward and
 * AdamW over the batch. Returns seconds (-1 on error); adds to *flops. */
static double bu_pure_epoch(model *m, optim *o, const bu_seqs *q, int mb, const bu_grads *g,
                            double *flops, err *e)
{
    double t0 = bench_now();
    for (int at = 0; at < q->n; at += mb) {
        int k = q->n - at < mb ? q->n - at : mb;
        model_batch b = {q->seqs + at, k, BU_TEMPERATURE};
        model_out out;
        if (model_forward(m, &b, &out, e) || model_zero_grad(m, e) ||
            model_backward(m, g->dlogp, g->dent, g->dval, NULL, e))
            return -1;
        optim_step(o, m->params, m->grads);
        *flops += 3 * model_forward_flops(&m->cfg, &b);
    }
    return bench_now() - t0;
}

static double bu_update(model *m, optim *o, traj_step *s, int n, const train_config *tc, rng *r,
                        train_stats *st, err *e)
{
    double t0 = bench_now();
    if (train_update(m, o, s, n, tc, r, st, e))
        return -1;
    return bench_now() - t0;
}

/* The update's once-per-update work (sort, GAE, normalisation, buffers):
 * train_update with no epochs, median of a few. */
static double bu_fixed(model *m, optim *o, traj_step *s, int n, rng *r, err *e)
{
    train_config tc;
    memset(&tc, 0, sizeof tc);
    ppo_hparams_default(&tc.ppo);
    tc.minibatch = 32;
    tc.temperature = BU_TEMPERATURE;
    double t[5];
    train_stats st;
    for (int i = 0; i < 5; i++)
        if ((t[i] = bu_update(m, o, s, n, &tc, r, &st, e)) < 0)
            return -1;
    return bench_median(t, 5);
}

/* One update's worth of work, measured one epoch at a time, alternating a
 * pure epoch with train_update of one epoch, so that a busy stretch of a
 * shared machine hits both alike. An update of E epochs does the
 * once-per-update work once, E single-epoch updates E times: that extra is
 * measured (bu_fixed) and taken off. */
typedef struct bu_totals {
    double pure_s, update_s, pure_flops, update_flops, text_tokens;
    double ratio[256];
    int n_ratio;
} bu_totals;

static int bu_rounds(model *m, optim *o, traj_step *s, const bu_seqs *q, const bu_opts *op,
                     const bu_grads *g, bu_totals *t, err *e)
{
    train_config tc;
    memset(&tc, 0, sizeof tc);
    ppo_hparams_default(&tc.ppo);
    tc.epochs = 1;
    tc.minibatch = op->minibatch;
    tc.temperature = BU_TEMPERATURE;
    rng r;
    rng_init(&r, 3);
    for (int rep = 0; rep < op->reps; rep++)
        for (int ep = 0; ep < op->epochs; ep++) {
            double p = bu_pure_epoch(m, o, q, op->minibatch, g, &t->pure_flops, e);
            train_stats st;
            double u = p < 0 ? -1 : bu_update(m, o, s, q->n, &tc, &r, &st, e);
            if (u < 0)
                return e->code ? e->code : GTRT_ESTATE;
            printf("  epoch %d.%d: pure %.2f s, update %.2f s\n", rep + 1, ep + 1, p, u);
            fflush(stdout);
            t->pure_s += p;
            t->update_s += u;
            t->update_flops += st.flops;
            t->text_tokens += st.tokens;
            if (t->n_ratio < 256)
                t->ratio[t->n_ratio++] = u / p;
        }
    return 0;
}

static int bu_measure(model *m, optim *o, traj_step *s, const bu_seqs *q, const bu_opts *op,
                      double tokens, err *e)
{
    bu_grads g = {0};
    int rc = bu_grads_new(s, q->n, op->minibatch, &g) ? GTRT_ENOMEM : 0;
    /* The first backward allocates the gradients and the backward
     * scratch: pay for it before anything is timed. */
    model_batch b = {q->seqs, q->n < op->minibatch ? q->n : op->minibatch, BU_TEMPERATURE};
    model_out out;
    if (!rc && (model_forward(m, &b, &out, e) || model_zero_grad(m, e) ||
                model_backward(m, g.dlogp, g.dent, g.dval, NULL, e)))
        rc = e->code ? e->code : GTRT_ESTATE;
    rng r;
    rng_init(&r, 4);
    double fixed = rc ? 0 : bu_fixed(m, o, s, q->n, &r, e);
    bu_totals t = {0};
    if (!rc && fixed < 0)
        rc = e->code ? e->code : GTRT_ESTATE;
    if (!rc)
        rc = bu_rounds(m, o, s, q, op, &g, &t, e);
    if (!rc) {
        double pure = t.pure_s / op->reps;
        double upd = (t.update_s - (double)(op->epochs - 1) * op->reps * fixed) / op->reps;
        double over = upd / pure - 1, med = bench_median(t.ratio, t.n_ratio) - 1;
        printf("  once-per-update work (sort, GAE, buffers): %.2f ms\n", 1e3 * fixed);
        printf("  tokens per update: %.0f (image + prompt + answer, x %d epochs); the learner's "
               "train_stats.tokens counts %.0f (text only)\n",
               tokens, op->epochs, t.text_tokens / op->reps);
        printf("  FLOPs per update: %.1f GFLOP (3 x forward)\n", t.pure_flops / op->reps / 1e9);
        printf("  pure training step %8.2f s  %7.0f tok/s  %6.1f GFLOP/s\n", pure, tokens / pure,
               t.pure_flops / op->reps / pure / 1e9);
        printf("  PPO update         %8.2f s  %7.0f tok/s  %6.1f GFLOP/s\n", upd, tokens / upd,
               t.update_flops / op->reps / upd / 1e9);
        printf("  overhead = update / pure - 1 = %.1f%% (median of the per-epoch ratios: %.1f%%; "
               "far apart means the machine was busy)\n", 100 * over, 100 * med);
        bench_verdict("PPO update overhead over the pure training step", 100 * over, "%", 15,
                      true);
    }
    free(g.dlogp);
    free(g.dent);
    free(g.dval);
    return rc;
}

static int bu_run(const bu_opts *op)
{
    err e = {0};
    model *m = NULL;
    optim *o = NULL;
    traj_step *s = NULL;
    bu_seqs q = {0};
    int rc = bench_policy(op->preset, "points24", 1, &m, &e);
    if (!rc)
        rc = bench_optim(m, &o, &e);
    if (!rc)
        rc = sft_make_data("points24", NULL, op->steps, 7, &s, &e);
    if (!rc && bu_seqs_build(s, op->steps, &m->cfg, &q))
        rc = err_set(&e, GTRT_ENOMEM, "out of memory");
    rng r;
    rng_init(&r, 5);
    if (!rc)
        rc = bu_fill(m, s, &q, op->minibatch, &r, &e);
    if (!rc) {
        int np = model_config_n_patches(&m->cfg);
        double text = 0;
        for (int i = 0; i < op->steps; i++)
            text += s[i].n_prompt + s[i].n_answer;
        double per_epoch = text + (double)np * op->steps;
        printf("== points24, preset %s (%.2f M parameters), %d steps (%d image + %.1f text "
               "tokens each), %d epochs x minibatch %d = %d optimiser steps, OpenBLAS threads "
               "%d\n",
               op->preset, (double)m->n_params / 1e6, op->steps, np, text / op->steps,
               op->epochs, op->minibatch,
               op->epochs * ((op->steps + op->minibatch - 1) / op->minibatch),
               openblas_get_num_threads());
        fflush(stdout);
        rc = bu_measure(m, o, s, &q, op, per_epoch * op->epochs, &e);
    }
    if (rc)
        printf("failed: %s\n", e.msg);
    bu_seqs_free(&q);
    sft_data_free(s, op->steps);
    optim_free(o);
    model_free(m);
    return rc;
}

int main(int argc, char **argv)
{
    bu_opts op = {.preset = "small", .steps = 256, .epochs = 4, .minibatch = 32, .reps = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v && !strcmp(a, "--preset"))
            op.preset = v;
        else if (v && !strcmp(a, "--steps"))
            op.steps = atoi(v);
        else if (v && !strcmp(a, "--epochs"))
            op.epochs = atoi(v);
        else if (v && !strcmp(a, "--minibatch"))
            op.minibatch = atoi(v);
        else if (v && !strcmp(a, "--reps"))
            op.reps = atoi(v);
        else {
            fprintf(stderr, "usage: %s [--preset P] [--steps N] [--epochs E] [--minibatch M] "
                            "[--reps R]\n", argv[0]);
            return 2;
        }
        i++;
    }
    if (op.steps < 1 || op.epochs < 1 || op.minibatch < 1 || op.reps < 1) {
        fprintf(stderr, "steps, epochs, minibatch and reps must be positive\n");
        return 2;
    }
    printf("PPO update benchmark: learner update (train_update) vs the pure training step on "
           "the same tokens\n");
    return bu_run(&op) ? 1 : 0;
}
