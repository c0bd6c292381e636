/* The transformer's building blocks, each layer's forward and backward pass
 * side by side, on row-major float32 arrays (in the manner of llm.c).
 *
 * Conventions shared by every function here: N is a number of rows (tokens),
 * C a number of channels; weights follow PyTorch's nn.Linear layout
 * [out, in]; every backward pass ADDS into the gradients it is given
 * (parameter and input gradients alike), so callers zero what must start at
 * zero; all matrix products go through cblas_sgemm. Sequences of different
 * lengths are packed one after the other without padding and described by a
 * `layer_seqs` table, which is how attention knows where one sequence ends. */
#ifndef GTRT_LAYERS_H
#define GTRT_LAYERS_H

#include <stddef.h>

/* Packed variable-length sequences: sequence b occupies rows
 * [start[b], start[b] + len[b]) of every [N, C] activation, and its attention
 * probabilities live at att + att_off[b] (n_head * len[b]^2 floats). */
typedef struct layer_seqs {
    int n_seq;
    const int *start;
    const int *len;
    const size_t *att_off;
} layer_seqs;

/* out[N,C] = (inp - mean) * rstd * w + b, per row; saves mean and rstd [N]. */
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                       const float *w, const float *b, int N, int C);
void layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                        const float *inp, const float *w, const float *mean,
                        const float *rstd, int N, int C);

/* out[N,OC] = beta * out + inp[N,C] @ w[OC,C]^T + bias[OC] (bias may be NULL).
 * beta = 1 adds the product onto what is in `out` (a residual connection). */
void matmul_forward(float *out, const float *inp, const float *w, const float *bias,
                    int N, int C, int OC, float beta);
/* Any of dinp, dw, dbias may be NULL when that gradient is not wanted. */
void matmul_backward(float *dinp, float *dw, float *dbias, const float *dout,
                     const float *inp, const float *w, int N, int C, int OC);

/* GELU, tanh approximation (PyTorch's approximate="tanh"), elementwise. */
void gelu_forward(float *out, const float *inp, size_t n);
void gelu_backward(float *dinp, const float *inp, const float *dout, size_t n);

/* Causal multi-head self-attention over packed sequences.
 * qkv[N, 3C] holds q, k, v side by side per row (head h of q at column
 * h*hs, of k at C + h*hs, of v at 2C + h*hs, hs = C / NH);
 * out[N, C] gets the heads concatenated; att receives the probabilities.
 * `scratch` needs max_b(len[b])^2 floats. */
void attention_forward(float *out, float *att, const float *qkv, const layer_seqs *s,
                       int C, int NH);
void attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv,
                        const float *att, const layer_seqs *s, int C, int NH);

/* Softmax of z/T over V entries (max subtracted, so it cannot overflow).
 * Writes the probabilities to `p` and returns lse = log sum_j exp(z[j]/T),
 * so that log p[j] = z[j]/T - lse. */
float softmax_forward(float *p, const float *logits, int V, float inv_temp);

/* Token head at temperature T for one row of logits z[V] and taken token y:
 * logprob = log softmax(z/T)[y], entropy = H(softmax(z/T)). */
void token_head_forward(float *logprob, float *entropy, float *probs_scratch,
                        const float *logits, int V, int y, float inv_temp);
/* dlogits[V] += d(g_lp * logprob + g_ent * entropy) / dz. */
void token_head_backward(float *dlogits, float *probs_scratch, const float *logits, int V,
                         int y, float inv_temp, float g_lp, float g_ent);

#endif
