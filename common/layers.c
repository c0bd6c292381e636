/* Forward and backward passes of the transformer's layers (see layers.h).
 * Matrix products go to OpenBLAS; the rest are plain loops over rows, written
 * so that the compiler can vectorise the inner loop over channels. */
#include "common/layers.h"

#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <string.h>

/* ==== layernorm ==== */

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                       const float *w, const float *b, int N, int C)
{
    const float eps = 1e-5f;
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C;
        float m = 0.0f;
        for (int c = 0; c < C; c++)
            m += x[c];
        m /= (float)C;
        /* Two passes: the variance of x - m does not cancel catastrophically. */
        float v = 0.0f;
        for (int c = 0; c < C; c++) {
            float d = x[c] - m;
            v += d * d;
        }
        v /= (float)C;
        float s = 1.0f / sqrtf(v + eps);
        float *o = out + (size_t)i * C;
        for (int c = 0; c < C; c++)
            o[c] = (x[c] - m) * s * w[c] + b[c];
        mean[i] = m;
        rstd[i] = s;
    }
}

void layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                        const float *inp, const float *w, const float *mean,
                        const float *rstd, int N, int C)
{
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C;
        const float *g = dout + (size_t)i * C;
        float *dx = dinp + (size_t)i * C;
        float m = mean[i], s = rstd[i];
        /* dx = s * (dn - mean(dn) - n * mean(dn * n)) with n the normalised
         * input and dn = g * w: the two means come from one pass. */
        float sum_dn = 0.0f, sum_dn_n = 0.0f;
        for (int c = 0; c < C; c++) {
            float n = (x[c] - m) * s;
            float dn = g[c] * w[c];
            sum_dn += dn;
            sum_dn_n += dn * n;
        }
        float mean_dn = sum_dn / (float)C, mean_dn_n = sum_dn_n / (float)C;
        for (int c = 0; c < C; c++) {
            float n = (x[c] - m) * s;
            float dn = g[c] * w[c];
            dw[c] += g[c] * n;
            db[c] += g[c];
            dx[c] += s * (dn - mean_dn - n * mean_dn_n);
        }
    }
}

/* ==== matmul (nn.Linear) ==== */

void matmul_forward(float *out, const float *inp, const float *w, const float *bias,
                    int N, int C, int OC, float beta)
{
    if (N == 0)
        return;
    /* Put the bias in first, so that one sgemm with beta = 1 adds the product. */
    if (bias) {
        for (int i = 0; i < N; i++) {
            float *o = out + (size_t)i * OC;
            if (beta == 0.0f)
                memcpy(o, bias, sizeof(float) * (size_t)OC);
            else
                for (int j = 0; j < OC; j++)
                    o[j] += bias[j];
        }
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, w, C, beta,
                out, OC);
}

void matmul_backward(float *dinp, float *dw, float *dbias, const float *dout,
                     const float *inp, const float *w, int N, int C, int OC)
{
    if (N == 0)
        return;
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, w, C,
                    1.0f, dinp, C);
    if (dw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C,
                    1.0f, dw, C);
    if (dbias)
        for (int i = 0; i < N; i++) {
            const float *g = dout + (size_t)i * OC;
            for (int j = 0; j < OC; j++)
                dbias[j] += g[j];
        }
}

/* ==== GELU (tanh approximation) ==== */

/* 0.5 * (1 + tanh(u)) equals sigmoid(2u), which needs one exp and no tanh:
 * gelu(x) = x * sigmoid(2u), u = sqrt(2/pi) * (x + 0.044715 x^3). */
#define GELU_K 0.7978845608028654f
#define GELU_A 0.044715f

/* exp(x) without a library call, so the GELU loops vectorise (libm's expf
 * is a call per element and was ~10 % of a training step). Range reduction
 * x = n ln2 + r with |r| <= ln2/2 (ln2 split in two for exactness), a
 * degree-6 Taylor polynomial for e^r (relative error < 2e-7 on the range,
 * about 1 float ulp), and 2^n built in the exponent bits. The input is
 * clamped to [-87, 89]: below, results stay normal; above, n = 128 builds
 * +inf, as expf overflows, so gelu saturates to exactly 0 and x. */
static inline float gelu_exp(float x)
{
    x = x < -87.0f ? -87.0f : x; /* not fminf/fmaxf: those do not vectorise */
    x = x > 89.0f ? 89.0f : x;
    const float round_magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds */
    float n = (x * 1.44269504088896341f + round_magic) - round_magic;
    float r = x - n * 0.693145751953125f - n * 1.428606765330187e-06f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.66666672e-1f + r * (4.16666679e-2f +
                                       r * (8.33333377e-3f + r * 1.38888892e-3f)))));
    union {
        uint32_t u;
        float f;
    } scale = {.u = (uint32_t)((int32_t)n + 127) << 23};
    return p * scale.f;
}

void gelu_forward(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float u = GELU_K * (x + GELU_A * x * x * x);
        out[i] = x / (1.0f + gelu_exp(-2.0f * u));
    }
}

void gelu_backward(float *dinp, const float *inp, const float *dout, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float u = GELU_K * (x + GELU_A * x * x * x);
        float s = 1.0f / (1.0f + gelu_exp(-2.0f * u));
        float du = GELU_K * (1.0f + 3.0f * GELU_A * x * x);
        dinp[i] += dout[i] * (s + x * s * (1.0f - s) * 2.0f * du);
    }
}

/* ==== causal self-attention ==== */

void attention_forward(float *out, float *att, const float *qkv, const layer_seqs *s,
                       int C, int NH)
{
    assert(C % NH == 0);
    int hs = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    for (int b = 0; b < s->n_seq; b++) {
        int T = s->len[b];
        if (T == 0)
            continue;
        const float *q0 = qkv + (size_t)s->start[b] * C3;
        float *o0 = out + (size_t)s->start[b] * C;
        for (int h = 0; h < NH; h++) {
            const float *q = q0 + h * hs, *k = q + C, *v = q + 2 * C;
            float *S = att + s->att_off[b] + (size_t)h * T * T;
            /* The full T x T product wastes the upper triangle, but at ~100
             * tokens one sgemm beats a hand-written triangular loop. */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, scale, q, C3, k, C3,
                        0.0f, S, T);
            for (int i = 0; i < T; i++) {
                float *row = S + (size_t)i * T;
                float mx = row[0];
                for (int j = 1; j <= i; j++)
                    mx = row[j] > mx ? row[j] : mx;
                float sum = 0.0f;
                for (int j = 0; j <= i; j++) {
                    row[j] = expf(row[j] - mx);
                    sum += row[j];
                }
                float inv = 1.0f / sum;
                for (int j = 0; j <= i; j++)
                    row[j] *= inv;
                for (int j = i + 1; j < T; j++)
                    row[j] = 0.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, S, T, v, C3,
                        0.0f, o0 + h * hs, C);
        }
    }
}

void attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv,
                        const float *att, const layer_seqs *s, int C, int NH)
{
    int hs = C / NH, C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    for (int b = 0; b < s->n_seq; b++) {
        int T = s->len[b];
        if (T == 0)
            continue;
        size_t r0 = (size_t)s->start[b];
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + r0 * C3 + h * hs, *k = q + C, *v = q + 2 * C;
            float *dq = dqkv + r0 * C3 + h * hs, *dk = dq + C, *dv = dq + 2 * C;
            const float *g = dout + r0 * C + h * hs;
            const float *P = att + s->att_off[b] + (size_t)h * T * T;
            float *dS = scratch;
            /* dP = dout @ v^T, dv += P^T @ dout */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, 1.0f, g, C, v, C3,
                        0.0f, dS, T);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, P, T, g, C,
                        1.0f, dv, C3);
            /* Softmax backward, row by row: dS = P * (dP - <P, dP>). */
            for (int i = 0; i < T; i++) {
                const float *p = P + (size_t)i * T;
                float *d = dS + (size_t)i * T;
                float dot = 0.0f;
                for (int j = 0; j <= i; j++)
                    dot += p[j] * d[j];
                for (int j = 0; j <= i; j++)
                    d[j] = p[j] * (d[j] - dot);
                for (int j = i + 1; j < T; j++)
                    d[j] = 0.0f;
            }
            /* S = scale * q k^T: dq += scale dS k, dk += scale dS^T q */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, scale, dS, T, k, C3,
                        1.0f, dq, C3);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, scale, dS, T, q, C3,
                        1.0f, dk, C3);
        }
    }
}

/* ==== softmax and the token head ==== */

float softmax_forward(float *p, const float *logits, int V, float inv_temp)
{
    float mx = logits[0];
    for (int j = 1; j < V; j++)
        mx = logits[j] > mx ? logits[j] : mx;
    mx *= inv_temp;
    double sum = 0.0;
    for (int j = 0; j < V; j++) {
        p[j] = expf(logits[j] * inv_temp - mx);
        sum += p[j];
    }
    float inv = (float)(1.0 / sum);
    for (int j = 0; j < V; j++)
        p[j] *= inv;
    return mx + (float)log(sum);
}

void token_head_forward(float *logprob, float *entropy, float *probs_scratch,
                        const float *logits, int V, int y, float inv_temp)
{
    assert(y >= 0 && y < V);
    float lse = softmax_forward(probs_scratch, logits, V, inv_temp);
    /* H = -sum p log p = lse - sum p z/T */
    double pz = 0.0;
    for (int j = 0; j < V; j++)
        pz += (double)probs_scratch[j] * logits[j];
    *logprob = logits[y] * inv_temp - lse;
    *entropy = lse - (float)(pz * inv_temp);
}

void token_head_backward(float *dlogits, float *probs_scratch, const float *logits, int V,
                         int y, float inv_temp, float g_lp, float g_ent)
{
    float *p = probs_scratch;
    float lse = softmax_forward(p, logits, V, inv_temp);
    if (g_ent != 0.0f) {
        /* dH/dz_j = -p_j (log p_j + H) / T */
        double pz = 0.0;
        for (int j = 0; j < V; j++)
            pz += (double)p[j] * logits[j];
        float H = lse - (float)(pz * inv_temp);
        for (int j = 0; j < V; j++) {
            float logp = logits[j] * inv_temp - lse;
            dlogits[j] -= g_ent * inv_temp * p[j] * (logp + H);
        }
    }
    /* dlogp_y/dz_j = (delta_jy - p_j) / T */
    if (g_lp != 0.0f) {
        for (int j = 0; j < V; j++)
            dlogits[j] -= g_lp * inv_temp * p[j];
        dlogits[y] += g_lp * inv_temp;
    }
}
