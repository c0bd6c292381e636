/* AdamW, gradient clipping and the learning-rate schedule (see optim.h). */
#include "common/optim.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void optim_config_default(optim_config *c)
{
    *c = (optim_config){.lr = 3e-4f, .min_lr = 0.0f, .beta1 = 0.9f, .beta2 = 0.999f,
                        .eps = 1e-8f, .weight_decay = 0.01f, .grad_clip = 1.0f,
                        .warmup_steps = 0, .total_steps = 0};
}

int optim_new(const optim_config *c, size_t n_params, const optim_range *decay, int n_decay,
              optim **out, err *e)
{
    *out = NULL;
    for (int i = 0; i < n_decay; i++) {
        assert(decay[i].offset + decay[i].count <= n_params);
        assert(i == 0 || decay[i].offset >= decay[i - 1].offset + decay[i - 1].count);
    }
    optim *o = calloc(1, sizeof *o);
    if (!o)
        return err_set(e, GTRT_ENOMEM, "optimizer: out of memory");
    o->cfg = *c;
    o->n = n_params;
    o->m = calloc(2 * n_params + 1, sizeof(float));
    o->decay = malloc(sizeof *o->decay * (size_t)(n_decay + 1));
    if (!o->m || !o->decay) {
        optim_free(o);
        return err_set(e, GTRT_ENOMEM, "optimizer: out of memory for %zu moments", 2 * n_params);
    }
    o->v = o->m + n_params;
    if (n_decay)
        memcpy(o->decay, decay, sizeof *decay * (size_t)n_decay);
    o->n_decay = n_decay;
    *out = o;
    return 0;
}

void optim_free(optim *o)
{
    if (!o)
        return;
    free(o->m);
    free(o->decay);
    free(o);
}

float optim_lr_at(const optim_config *c, int64_t step)
{
    if (step < c->warmup_steps)
        return c->lr * (float)(step + 1) / (float)c->warmup_steps;
    if (c->total_steps <= c->warmup_steps)
        return c->lr;
    double p = (double)(step - c->warmup_steps) / (double)(c->total_steps - c->warmup_steps);
    if (p > 1.0)
        p = 1.0;
    return c->min_lr + (float)(0.5 * (1.0 + cos(M_PI * p))) * (c->lr - c->min_lr);
}

double optim_grad_norm(const float *g, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)g[i] * g[i];
    return sqrt(s);
}

double optim_clip(float *g, size_t n, float max_norm)
{
    double norm = optim_grad_norm(g, n);
    if (max_norm > 0.0f && norm > max_norm) {
        float s = (float)(max_norm / norm);
        for (size_t i = 0; i < n; i++)
            g[i] *= s;
    }
    return norm;
}

/* AdamW on [lo, hi) with weight decay wd (PyTorch's formulation: decay the
 * weights by lr * wd first, then the bias-corrected Adam step). */
static void adamw_span(optim *o, float *p, const float *g, size_t lo, size_t hi, float lr,
                       float wd, float bc1, float bc2)
{
    const float b1 = o->cfg.beta1, b2 = o->cfg.beta2, eps = o->cfg.eps;
    float *m = o->m, *v = o->v;
    float decay = 1.0f - lr * wd;
    for (size_t i = lo; i < hi; i++) {
        float gi = g[i];
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        float mh = m[i] / bc1, vh = v[i] / bc2;
        p[i] = p[i] * decay - lr * mh / (sqrtf(vh) + eps);
    }
}

void optim_update(optim *o, float *params, const float *grads, float lr)
{
    o->step++;
    float bc1 = 1.0f - (float)pow(o->cfg.beta1, (double)o->step);
    float bc2 = 1.0f - (float)pow(o->cfg.beta2, (double)o->step);
    size_t at = 0;
    for (int i = 0; i < o->n_decay; i++) {
        adamw_span(o, params, grads, at, o->decay[i].offset, lr, 0.0f, bc1, bc2);
        at = o->decay[i].offset + o->decay[i].count;
        adamw_span(o, params, grads, o->decay[i].offset, at, lr, o->cfg.weight_decay, bc1, bc2);
    }
    adamw_span(o, params, grads, at, o->n, lr, 0.0f, bc1, bc2);
}

double optim_step(optim *o, float *params, float *grads)
{
    double norm = optim_clip(grads, o->n, o->cfg.grad_clip);
    optim_update(o, params, grads, optim_lr_at(&o->cfg, o->step));
    return norm;
}
