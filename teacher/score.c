/* Batched answer scoring (see score.h). */
#include "teacher/score.h"

#include <stdlib.h>

#include "common/layers.h"

size_t score_width(score_mode mode, int top_k, int vocab)
{
    switch (mode) {
    case SCORE_SAMPLED: return 1;
    case SCORE_TOPK: return (size_t)top_k;
    default: return (size_t)vocab;
    }
}

static int score_check(const model *m, const score_seq *q, int i, err *e)
{
    int n_answer = q->n_tokens - q->n_prompt;
    if (q->begin < 0 || q->begin >= q->end || q->end > n_answer)
        return err_set(e, GTRT_EINVAL, "score: sequence %d scores [%d, %d) of %d answer tokens",
                       i, q->begin, q->end, n_answer);
    if (!(q->temperature > 0.0f))
        return err_set(e, GTRT_EINVAL, "score: sequence %d has temperature %g", i,
                       (double)q->temperature);
    if (q->mode == SCORE_TOPK &&
        (q->top_k < 1 || q->top_k > SCORE_MAX_TOPK || q->top_k > m->cfg.vocab_size))
        return err_set(e, GTRT_EINVAL, "score: sequence %d asks top-%d", i, q->top_k);
    return 0;
}

/* The k largest of lp[0..V) into ids/vals, largest first, lower id first
 * among equals: insertion into a sorted list of k (k is at most 64). */
static void score_topk(const float *lp, int V, int k, uint32_t *ids, float *vals)
{
    int n = 0;
    for (int j = 0; j < V; j++) {
        if (n == k && !(lp[j] > vals[k - 1]))
            continue;
        int at = n < k ? n++ : k - 1;
        while (at > 0 && lp[j] > vals[at - 1]) {
            vals[at] = vals[at - 1];
            ids[at] = ids[at - 1];
            at--;
        }
        vals[at] = lp[j];
        ids[at] = (uint32_t)j;
    }
}

/* One scored position: raw logits z[V] of the token y it predicts. */
static void score_position(const score_seq *q, const float *z, int V, int32_t y, float *probs,
                           float *lp, float *values, uint32_t *ids)
{
    float inv_t = 1.0f / q->temperature;
    float lse = softmax_forward(probs, z, V, inv_t);
    if (q->mode == SCORE_SAMPLED) {
        values[0] = z[y] * inv_t - lse;
        return;
    }
    float *dst = q->mode == SCORE_FULL ? values : lp;
    for (int j = 0; j < V; j++)
        dst[j] = z[j] * inv_t - lse;
    if (q->mode == SCORE_TOPK)
        score_topk(lp, V, q->top_k, ids, values);
}

int score_run(model *m, score_seq *seqs, int n, err *e)
{
    for (int i = 0; i < n; i++) {
        int rc = score_check(m, &seqs[i], i, e);
        if (rc)
            return rc;
    }
    int V = m->cfg.vocab_size;
    model_seq *ms = malloc((size_t)(n > 0 ? n : 1) * sizeof *ms);
    float *probs = malloc(sizeof(float) * (size_t)V);
    float *lp = malloc(sizeof(float) * (size_t)V);
    if (!ms || !probs || !lp) {
        free(ms);
        free(probs);
        free(lp);
        return err_set(e, GTRT_ENOMEM, "score: out of memory");
    }
    for (int i = 0; i < n; i++)
        ms[i] = (model_seq){seqs[i].image, seqs[i].tokens, seqs[i].n_tokens, seqs[i].n_prompt};
    model_batch b = {ms, n, 1.0f};
    model_out out;
    int rc = model_forward(m, &b, &out, e);
    for (int i = 0; !rc && i < n; i++) {
        const score_seq *q = &seqs[i];
        size_t w = score_width(q->mode, q->top_k, V);
        for (int r = q->begin; r < q->end; r++) {
            int row = out.first[i] + r;
            size_t k = (size_t)(r - q->begin);
            score_position(q, out.logits + (size_t)row * V, V, out.target[row], probs, lp,
                           q->values + k * w, q->ids ? q->ids + k * (size_t)q->top_k : NULL);
        }
    }
    free(ms);
    free(probs);
    free(lp);
    return rc;
}
