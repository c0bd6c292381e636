/* Layer-by-layer checks: every backward pass against central finite
 * differences of its forward pass, and forwards against naive loops. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/layers.h"
#include "common/rng.h"

static void fill(float *x, int n, rng *r, float scale)
{
    for (int i = 0; i < n; i++)
        x[i] = (float)rng_normal(r) * scale;
}

/* A layer under test: recompute `out` from the current inputs. */
typedef struct probe {
    void (*forward)(struct probe *);
    float *out;
    const float *w; /* random weights of the scalar loss sum_i w_i out_i */
    int n_out;
    void *ctx;
} probe;

static double probe_loss(probe *p)
{
    p->forward(p);
    double s = 0.0;
    for (int i = 0; i < p->n_out; i++)
        s += (double)p->w[i] * p->out[i];
    return s;
}

/* Compare the analytic gradient `ana` of the loss w.r.t. x[0..n) with central
 * differences; the error is measured against the largest gradient entry. */
static double check_grad(const char *what, probe *p, float *x, const float *ana, int n, float eps,
                         double tol)
{
    double maxabs = 0.0, maxerr = 0.0;
    for (int i = 0; i < n; i++) {
        float old = x[i];
        x[i] = old + eps;
        double xp = x[i], lp = probe_loss(p);
        x[i] = old - eps;
        double xm = x[i], lm = probe_loss(p);
        x[i] = old;
        double num = (lp - lm) / (xp - xm);
        double err = fabs(num - ana[i]);
        maxerr = err > maxerr ? err : maxerr;
        maxabs = fabs(ana[i]) > maxabs ? fabs(ana[i]) : maxabs;
    }
    probe_loss(p); /* leave outputs consistent with the inputs */
    double rel = maxerr / (maxabs > 0 ? maxabs : 1);
    fprintf(stderr, "gradcheck %-28s max|g| %.3e  max err %.3e  rel %.2e\n", what, maxabs, maxerr,
            rel);
    cr_assert(maxabs > 1e-6, "%s: analytic gradient is all zero", what);
    cr_assert(rel <= tol, "%s: finite differences disagree (rel %.3e > %.1e)", what, rel, tol);
    return rel;
}

/* ==== layernorm ==== */

typedef struct ln_ctx {
    float *x, *w, *b, *mean, *rstd;
    int N, C;
} ln_ctx;

static void ln_fwd(probe *p)
{
    ln_ctx *c = p->ctx;
    layernorm_forward(p->out, c->mean, c->rstd, c->x, c->w, c->b, c->N, c->C);
}

Test(layers, layernorm_gradients)
{
    rng r;
    rng_init(&r, 1);
    enum { N = 3, C = 8 };
    float x[N * C], w[C], b[C], out[N * C], mean[N], rstd[N], gw[N * C];
    fill(x, N * C, &r, 1.5f);
    fill(w, C, &r, 1.0f);
    fill(b, C, &r, 1.0f);
    fill(gw, N * C, &r, 1.0f);
    for (int i = 0; i < C; i++)
        x[i] += 3.0f; /* a row with a large mean */
    ln_ctx c = {x, w, b, mean, rstd, N, C};
    probe p = {ln_fwd, out, gw, N * C, &c};
    probe_loss(&p);
    /* mean 0 and unit variance before the affine part */
    for (int i = 0; i < N; i++) {
        double s = 0, s2 = 0;
        for (int j = 0; j < C; j++) {
            double n = (out[i * C + j] - b[j]) / w[j];
            s += n;
            s2 += n * n;
        }
        cr_expect(fabs(s / C) < 1e-5 && fabs(s2 / C - 1) < 1e-3, "row %d not normalised", i);
    }
    float dx[N * C] = {0}, dw[C] = {0}, db[C] = {0};
    layernorm_backward(dx, dw, db, gw, x, w, mean, rstd, N, C);
    check_grad("layernorm dinp", &p, x, dx, N * C, 1e-3f, 1e-2);
    check_grad("layernorm dweight", &p, w, dw, C, 1e-3f, 1e-2);
    check_grad("layernorm dbias", &p, b, db, C, 1e-3f, 1e-2);
}

/* ==== matmul ==== */

typedef struct mm_ctx {
    float *x, *w, *b;
    int N, C, OC;
} mm_ctx;

static void mm_fwd(probe *p)
{
    mm_ctx *c = p->ctx;
    matmul_forward(p->out, c->x, c->w, c->b, c->N, c->C, c->OC, 0.0f);
}

Test(layers, matmul_forward_matches_loops_and_accumulates)
{
    rng r;
    rng_init(&r, 2);
    enum { N = 5, C = 7, OC = 3 };
    float x[N * C], w[OC * C], b[OC], out[N * OC], acc[N * OC];
    fill(x, N * C, &r, 1);
    fill(w, OC * C, &r, 1);
    fill(b, OC, &r, 1);
    matmul_forward(out, x, w, b, N, C, OC, 0.0f);
    for (int i = 0; i < N * OC; i++)
        acc[i] = 1.0f;
    matmul_forward(acc, x, w, b, N, C, OC, 1.0f);
    for (int i = 0; i < N; i++)
        for (int o = 0; o < OC; o++) {
            double s = b[o];
            for (int k = 0; k < C; k++)
                s += (double)x[i * C + k] * w[o * C + k];
            cr_expect_float_eq(out[i * OC + o], s, 1e-5);
            cr_expect_float_eq(acc[i * OC + o], s + 1.0, 1e-5);
        }
}

Test(layers, matmul_gradients)
{
    rng r;
    rng_init(&r, 3);
    enum { N = 4, C = 5, OC = 3 };
    float x[N * C], w[OC * C], b[OC], out[N * OC], gw[N * OC];
    fill(x, N * C, &r, 1);
    fill(w, OC * C, &r, 1);
    fill(b, OC, &r, 1);
    fill(gw, N * OC, &r, 1);
    mm_ctx c = {x, w, b, N, C, OC};
    probe p = {mm_fwd, out, gw, N * OC, &c};
    float dx[N * C] = {0}, dw[OC * C] = {0}, db[OC] = {0};
    matmul_backward(dx, dw, db, gw, x, w, N, C, OC);
    check_grad("matmul dinp", &p, x, dx, N * C, 1e-3f, 1e-3);
    check_grad("matmul dweight", &p, w, dw, OC * C, 1e-3f, 1e-3);
    check_grad("matmul dbias", &p, b, db, OC, 1e-3f, 1e-3);
}

/* ==== GELU ==== */

typedef struct gelu_ctx {
    float *x;
    int n;
} gelu_ctx;

static void gelu_fwd(probe *p)
{
    gelu_ctx *c = p->ctx;
    gelu_forward(p->out, c->x, (size_t)c->n);
}

Test(layers, gelu_matches_tanh_formula_and_gradients)
{
    rng r;
    rng_init(&r, 4);
    enum { N = 41 };
    float x[N], out[N], gw[N], dx[N] = {0};
    for (int i = 0; i < N; i++)
        x[i] = -6.0f + 12.0f * (float)i / (N - 1) + 0.01f; /* avoid exactly 0 */
    fill(gw, N, &r, 1);
    gelu_forward(out, x, N);
    for (int i = 0; i < N; i++) {
        double v = x[i];
        double ref = 0.5 * v * (1 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
        cr_expect(fabs(out[i] - ref) <= 1e-6 * (1 + fabs(ref)), "gelu(%g) = %g, want %g", v,
                  out[i], ref);
    }
    float big[2] = {-1e4f, 1e4f}, bo[2];
    gelu_forward(bo, big, 2);
    cr_expect(bo[0] == 0.0f && bo[1] == 1e4f, "gelu saturates cleanly");
    gelu_ctx c = {x, N};
    probe p = {gelu_fwd, out, gw, N, &c};
    gelu_backward(dx, x, gw, N);
    check_grad("gelu dinp", &p, x, dx, N, 1e-3f, 1e-3);
}

/* ==== attention ==== */

typedef struct att_ctx {
    float *qkv, *att;
    layer_seqs s;
    int C, NH;
} att_ctx;

static void att_fwd(probe *p)
{
    att_ctx *c = p->ctx;
    attention_forward(p->out, c->att, c->qkv, &c->s, c->C, c->NH);
}

/* Straightforward causal attention for one row, in double. */
static void att_naive(double *out, const float *qkv, int r0, int i, int C, int NH)
{
    int hs = C / NH;
    for (int h = 0; h < NH; h++) {
        const float *q = qkv + (size_t)(r0 + i) * 3 * C + h * hs;
        double sc[64], mx = -1e300, sum = 0;
        for (int j = 0; j <= i; j++) {
            const float *k = qkv + (size_t)(r0 + j) * 3 * C + C + h * hs;
            double s = 0;
            for (int t = 0; t < hs; t++)
                s += (double)q[t] * k[t];
            sc[j] = s / sqrt((double)hs);
            mx = sc[j] > mx ? sc[j] : mx;
        }
        for (int j = 0; j <= i; j++)
            sum += (sc[j] = exp(sc[j] - mx));
        for (int t = 0; t < hs; t++) {
            double o = 0;
            for (int j = 0; j <= i; j++)
                o += sc[j] / sum * qkv[(size_t)(r0 + j) * 3 * C + 2 * C + h * hs + t];
            out[h * hs + t] = o;
        }
    }
}

Test(layers, attention_forward_is_causal_and_matches_naive)
{
    rng r;
    rng_init(&r, 5);
    enum { C = 8, NH = 2, N = 9 };
    int start[2] = {0, 4}, len[2] = {4, 5};
    size_t att_off[2] = {0, (size_t)NH * 16};
    float qkv[N * 3 * C], out[N * C], att[NH * (16 + 25)];
    fill(qkv, N * 3 * C, &r, 1);
    layer_seqs s = {2, start, len, att_off};
    attention_forward(out, att, qkv, &s, C, NH);
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < len[b]; i++) {
            double ref[C];
            att_naive(ref, qkv, start[b], i, C, NH);
            for (int t = 0; t < C; t++)
                cr_expect_float_eq(out[(start[b] + i) * C + t], ref[t], 1e-5, "seq %d row %d", b,
                                   i);
        }
    /* Changing the last row of sequence 0 must not move anything else in it,
     * nor anything in sequence 1. */
    float before[N * C];
    memcpy(before, out, sizeof out);
    for (int t = 0; t < 3 * C; t++)
        qkv[3 * 3 * C + t] += 1.0f;
    attention_forward(out, att, qkv, &s, C, NH);
    for (int i = 0; i < N; i++)
        if (i != 3)
            for (int t = 0; t < C; t++)
                cr_expect_eq(out[i * C + t], before[i * C + t], "row %d changed", i);
}

Test(layers, attention_gradients)
{
    rng r;
    rng_init(&r, 6);
    enum { C = 8, NH = 2, N = 8 };
    int start[2] = {0, 3}, len[2] = {3, 5};
    size_t att_off[2] = {0, (size_t)NH * 9};
    float qkv[N * 3 * C], out[N * C], att[NH * (9 + 25)], gw[N * C], scratch[25];
    float dqkv[N * 3 * C] = {0};
    fill(qkv, N * 3 * C, &r, 1);
    fill(gw, N * C, &r, 1);
    att_ctx c = {qkv, att, {2, start, len, att_off}, C, NH};
    probe p = {att_fwd, out, gw, N * C, &c};
    probe_loss(&p);
    attention_backward(dqkv, scratch, gw, qkv, att, &c.s, C, NH);
    check_grad("attention dqkv", &p, qkv, dqkv, N * 3 * C, 1e-3f, 1e-2);
}

/* ==== token head (logprob and entropy at a temperature) ==== */

typedef struct th_ctx {
    float *z, *probs;
    int V, y;
    float inv_t;
    int which; /* 0 logprob, 1 entropy */
} th_ctx;

static void th_fwd(probe *p)
{
    th_ctx *c = p->ctx;
    float lp, h;
    token_head_forward(&lp, &h, c->probs, c->z, c->V, c->y, c->inv_t);
    p->out[0] = c->which ? h : lp;
}

Test(layers, token_head_values_and_gradients)
{
    rng r;
    rng_init(&r, 7);
    enum { V = 7 };
    float z[V], probs[V], out[1], one[1] = {1.0f};
    fill(z, V, &r, 2);
    float T = 0.7f;
    th_ctx c = {z, probs, V, 3, 1.0f / T, 0};
    probe p = {th_fwd, out, one, 1, &c};
    /* values against a direct double computation */
    double mx = -1e300, s = 0, H = 0;
    for (int j = 0; j < V; j++)
        mx = z[j] / T > mx ? z[j] / T : mx;
    for (int j = 0; j < V; j++)
        s += exp(z[j] / T - mx);
    double lse = mx + log(s);
    for (int j = 0; j < V; j++) {
        double lp = z[j] / T - lse;
        H -= exp(lp) * lp;
    }
    float lp, h;
    token_head_forward(&lp, &h, probs, z, V, 3, 1.0f / T);
    cr_expect_float_eq(lp, z[3] / T - lse, 1e-5);
    cr_expect_float_eq(h, H, 1e-5);

    float dz[V] = {0};
    token_head_backward(dz, probs, z, V, 3, 1.0f / T, 1.0f, 0.0f);
    check_grad("token head dlogprob/dz", &p, z, dz, V, 1e-3f, 1e-3);
    memset(dz, 0, sizeof dz);
    c.which = 1;
    token_head_backward(dz, probs, z, V, 3, 1.0f / T, 0.0f, 1.0f);
    check_grad("token head dentropy/dz", &p, z, dz, V, 1e-3f, 1e-3);
}

Test(layers, softmax_survives_huge_logits)
{
    float z[3] = {1e30f, 0.0f, -1e30f}, p[3];
    float lse = softmax_forward(p, z, 3, 1.0f);
    cr_expect_float_eq(p[0], 1.0f, 1e-7);
    cr_expect_eq(p[2], 0.0f);
    cr_expect(isfinite(lse));
}
