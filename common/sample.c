/* Batched sampling with a KV cache (see sample.h). */
#include "common/sample.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct sampler {
    model_config cfg;
    int max_batch;
    model_kv *kv;
    int cap_new;          /* max_new the output buffers are sized for */
    int32_t *tokens;      /* [max_batch][cap_new] */
    float *logprobs;      /* [max_batch][cap_new] */
    float *logits;        /* [max_batch][V] */
    float *fscratch;      /* [V] */
    int32_t *iscratch;    /* [V] */
    uint8_t *allowed;     /* [V] */
    int *act_seq, *act_slot;
    int32_t *act_tok;
    rng *streams;
    float *values;        /* [max_batch] */
};

int sample_new(const model_config *c, int max_batch, sampler **out, err *e)
{
    *out = NULL;
    assert(max_batch >= 1);
    sampler *s = calloc(1, sizeof *s);
    if (!s)
        return err_set(e, GTRT_ENOMEM, "sampler: out of memory");
    s->cfg = *c;
    s->max_batch = max_batch;
    int rc = model_kv_new(c, max_batch, &s->kv, e);
    if (rc) {
        free(s);
        return rc;
    }
    size_t V = (size_t)c->vocab_size, B = (size_t)max_batch;
    s->logits = malloc(sizeof(float) * B * V);
    s->fscratch = malloc(sizeof(float) * V);
    s->iscratch = malloc(sizeof(int32_t) * V);
    s->allowed = malloc(V);
    s->act_seq = malloc(sizeof(int) * B);
    s->act_slot = malloc(sizeof(int) * B);
    s->act_tok = malloc(sizeof(int32_t) * B);
    s->streams = malloc(sizeof(rng) * B);
    s->values = malloc(sizeof(float) * B);
    if (!s->values || !s->logits || !s->fscratch || !s->iscratch || !s->allowed || !s->act_seq ||
        !s->act_slot || !s->act_tok || !s->streams) {
        sample_free(s);
        return err_set(e, GTRT_ENOMEM, "sampler: out of memory");
    }
    *out = s;
    return 0;
}

void sample_free(sampler *s)
{
    if (!s)
        return;
    model_kv_free(s->kv);
    free(s->tokens);
    free(s->logprobs);
    free(s->logits);
    free(s->fscratch);
    free(s->iscratch);
    free(s->allowed);
    free(s->act_seq);
    free(s->act_slot);
    free(s->act_tok);
    free(s->streams);
    free(s->values);
    free(s);
}

int32_t sample_pick(const float *logits, int V, const uint8_t *allowed, float temperature,
                    int top_k, rng *r, float *fscratch, int32_t *iscratch, float *logprob)
{
    float inv_t = temperature > 0.0f ? 1.0f / temperature : 1.0f;
    /* Normaliser of the full tempered distribution, for the reported logprob. */
    float mx = logits[0];
    for (int j = 1; j < V; j++)
        mx = logits[j] > mx ? logits[j] : mx;
    double sum = 0.0;
    for (int j = 0; j < V; j++)
        sum += expf((logits[j] - mx) * inv_t);
    float lse = mx * inv_t + (float)log(sum);

    int n = 0;
    for (int j = 0; j < V; j++)
        if (!allowed || allowed[j])
            iscratch[n++] = j;
    if (n == 0)
        return -1;
    /* Keep the k largest candidates at the front (partial selection sort:
     * k is small and V is a few hundred). */
    int k = top_k > 0 && top_k < n ? top_k : n;
    if (temperature <= 0.0f)
        k = 1;
    if (k < n)
        for (int i = 0; i < k; i++) {
            int best = i;
            for (int j = i + 1; j < n; j++)
                if (logits[iscratch[j]] > logits[iscratch[best]])
                    best = j;
            int32_t t = iscratch[i];
            iscratch[i] = iscratch[best];
            iscratch[best] = t;
        }
    int32_t y = iscratch[0];
    if (k > 1) {
        float cmx = logits[iscratch[0]];
        for (int i = 1; i < k; i++)
            cmx = logits[iscratch[i]] > cmx ? logits[iscratch[i]] : cmx;
        double tot = 0.0;
        for (int i = 0; i < k; i++) {
            fscratch[i] = expf((logits[iscratch[i]] - cmx) * inv_t);
            tot += fscratch[i];
        }
        double u = rng_double(r) * tot, acc = 0.0;
        y = iscratch[k - 1];
        for (int i = 0; i < k; i++) {
            acc += fscratch[i];
            if (u < acc) {
                y = iscratch[i];
                break;
            }
        }
    }
    *logprob = logits[y] * inv_t - lse;
    return y;
}

static int ensure_outputs(sampler *s, int max_new, err *e)
{
    if (max_new <= s->cap_new)
        return 0;
    size_t n = (size_t)s->max_batch * (size_t)max_new;
    int32_t *t = realloc(s->tokens, sizeof(int32_t) * n);
    if (t)
        s->tokens = t;
    float *l = realloc(s->logprobs, sizeof(float) * n);
    if (l)
        s->logprobs = l;
    if (!t || !l)
        return err_set(e, GTRT_ENOMEM, "sampler: out of memory for %d new tokens", max_new);
    s->cap_new = max_new;
    return 0;
}

int sample_run(sampler *s, model *m, const model_seq *prompts, int n_seq,
               const sample_config *cfg, rng *r, sample_result *out, err *e)
{
    assert(memcmp(&s->cfg, &m->cfg, sizeof s->cfg) == 0);
    if (n_seq < 1 || n_seq > s->max_batch)
        return err_set(e, GTRT_EINVAL, "sample: %d sequences, the sampler takes 1..%d", n_seq,
                       s->max_batch);
    if (cfg->max_new < 1)
        return err_set(e, GTRT_EINVAL, "sample: max_new must be at least 1");
    int rc = ensure_outputs(s, cfg->max_new, e);
    if (rc)
        return rc;
    int V = m->cfg.vocab_size, max_new = cfg->max_new;
    int max_text = model_config_max_text(&m->cfg);
    rc = model_prefill(m, s->kv, prompts, n_seq, s->logits, s->values, e);
    if (rc)
        return rc;
    for (int b = 0; b < n_seq; b++) {
        out[b] = (sample_result){.n = 0, .stop = 0, .value = s->values[b],
                                 .tokens = s->tokens + (size_t)b * max_new,
                                 .logprobs = s->logprobs + (size_t)b * max_new};
        rng_split(r, (uint64_t)b, &s->streams[b]);
        s->act_seq[b] = b;
    }
    (void)rng_u64(r); /* the next call gets other streams */
    int n_act = n_seq;
    while (n_act > 0) {
        /* Row i of s->logits belongs to live sequence act_seq[i]. */
        int n_next = 0;
        for (int i = 0; i < n_act; i++) {
            int b = s->act_seq[i];
            sample_result *o = &out[b];
            int32_t *toks = s->tokens + (size_t)b * max_new;
            const float *z = s->logits + (size_t)i * V;
            if (cfg->record_logits)
                memcpy(cfg->record_logits + ((size_t)b * max_new + (size_t)o->n) * V, z,
                       sizeof(float) * (size_t)V);
            const uint8_t *allowed = NULL;
            if (cfg->mask) {
                memset(s->allowed, 1, (size_t)V);
                cfg->mask(cfg->mask_ctx, b, toks, o->n, s->allowed);
                allowed = s->allowed;
            }
            float lp = 0.0f;
            int32_t y = sample_pick(z, V, allowed, cfg->temperature, cfg->top_k, &s->streams[b],
                                    s->fscratch, s->iscratch, &lp);
            if (y < 0) {
                o->stop = SAMPLE_STOP_MASKED;
                continue;
            }
            toks[o->n] = y;
            s->logprobs[(size_t)b * max_new + (size_t)o->n] = lp;
            o->n++;
            int len = model_kv_len(s->kv, b);
            int n_img = len - prompts[b].n_tokens - (o->n - 1);
            if (y == cfg->end_token)
                o->stop = SAMPLE_STOP_END;
            else if (o->n >= max_new)
                o->stop = SAMPLE_STOP_MAX_NEW;
            else if (len >= m->cfg.max_seq || len - n_img >= max_text)
                o->stop = SAMPLE_STOP_FULL; /* no room to feed y back in */
            else {
                s->act_slot[n_next] = b;
                s->act_tok[n_next] = y;
                n_next++;
            }
        }
        if (n_next == 0)
            break;
        rc = model_decode(m, s->kv, s->act_slot, s->act_tok, n_next, s->logits, e);
        if (rc)
            return rc;
        memcpy(s->act_seq, s->act_slot, sizeof(int) * (size_t)n_next);
        n_act = n_next;
    }
    return 0;
}
