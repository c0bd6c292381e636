/* AdamW, gradient clipping and the learning-rate schedule (see optim.h). */
#include "common/optim.h"

#include <assert.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
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

/* ==== state on disk ==== */

static bool optim_reserved(const char *name)
{
    return !strncmp(name, "optim.", 6) || !strcmp(name, "format") || !strcmp(name, "n_params");
}

int optim_save(const optim *o, const char *path, const st_entry *extra, int n_extra,
               const st_kv *meta, int n_meta, err *e)
{
    for (int i = 0; i < n_extra; i++)
        if (optim_reserved(extra[i].name))
            return err_set(e, GTRT_EINVAL, "%s: tensor name \"%s\" is reserved", path, extra[i].name);
    for (int i = 0; i < n_meta; i++)
        if (optim_reserved(meta[i].key))
            return err_set(e, GTRT_EINVAL, "%s: metadata key \"%s\" is reserved", path, meta[i].key);
    st_entry *ent = calloc((size_t)n_extra + 3, sizeof *ent);
    st_kv *kv = calloc((size_t)n_meta + 2, sizeof *kv);
    if (!ent || !kv) {
        free(ent);
        free(kv);
        return err_set(e, GTRT_ENOMEM, "%s: out of memory", path);
    }
    int64_t step = o->step;
    char nbuf[32];
    snprintf(nbuf, sizeof nbuf, "%zu", o->n);
    ent[0] = (st_entry){.name = "optim.m", .dtype = ST_F32, .ndim = 1, .shape = {(int64_t)o->n},
                        .data = o->m};
    ent[1] = (st_entry){.name = "optim.v", .dtype = ST_F32, .ndim = 1, .shape = {(int64_t)o->n},
                        .data = o->v};
    ent[2] = (st_entry){.name = "optim.step", .dtype = ST_I64, .ndim = 1, .shape = {1},
                        .data = &step};
    if (n_extra)
        memcpy(ent + 3, extra, (size_t)n_extra * sizeof *ent);
    kv[0] = (st_kv){"format", OPTIM_FORMAT};
    kv[1] = (st_kv){"n_params", nbuf};
    if (n_meta)
        memcpy(kv + 2, meta, (size_t)n_meta * sizeof *kv);
    int rc = st_write(path, ent, n_extra + 3, kv, n_meta + 2, e);
    free(ent);
    free(kv);
    return rc;
}

/* Tensor `name` must be `dtype` with shape [n]. */
static const st_tensor *optim_tensor(const st_file *f, const char *name, st_dtype dtype,
                                     int64_t n, err *e)
{
    const st_tensor *t = st_find(f, name);
    if (!t) {
        err_set(e, GTRT_EPARSE, "%s: no tensor %s: not an optimizer state", st_name(f), name);
        return NULL;
    }
    if (t->dtype != dtype || t->ndim != 1 || t->shape[0] != n) {
        err_set(e, GTRT_EPARSE, "%s: %s is %s with %d dims [%lld...], expected %s [%lld]", st_name(f),
                name, st_dtype_name(t->dtype), t->ndim, t->ndim ? (long long)t->shape[0] : 0LL,
                st_dtype_name(dtype), (long long)n);
        return NULL;
    }
    return t;
}

/* True when every first moment is finite and every second moment finite
 * and >= 0: what AdamW can produce from finite gradients. */
static bool optim_moments_sane(const uint8_t *m, const uint8_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float a, b;
        memcpy(&a, m + i * sizeof a, sizeof a);
        memcpy(&b, v + i * sizeof b, sizeof b);
        if (!isfinite(a) || !isfinite(b) || b < 0.0f)
            return false;
    }
    return true;
}

int optim_load(optim *o, const st_file *f, err *e)
{
    const char *fmt = st_meta(f, "format");
    if (!fmt || strcmp(fmt, OPTIM_FORMAT))
        return err_set(e, GTRT_EPARSE, "%s: format \"%s\", expected \"%s\"", st_name(f),
                       fmt ? fmt : "(none)", OPTIM_FORMAT);
    const char *np = st_meta(f, "n_params");
    char want[32];
    snprintf(want, sizeof want, "%zu", o->n);
    if (!np || strcmp(np, want))
        return err_set(e, GTRT_EPARSE,
                       "%s: optimizer state for %s parameters, but the policy has %zu", st_name(f),
                       np ? np : "an unknown number of", o->n);
    const st_tensor *m = optim_tensor(f, "optim.m", ST_F32, (int64_t)o->n, e);
    const st_tensor *v = m ? optim_tensor(f, "optim.v", ST_F32, (int64_t)o->n, e) : NULL;
    const st_tensor *s = v ? optim_tensor(f, "optim.step", ST_I64, 1, e) : NULL;
    if (!s)
        return e ? e->code : GTRT_EPARSE;
    int64_t step;
    memcpy(&step, s->data, sizeof step);
    if (step < 0)
        return err_set(e, GTRT_EPARSE, "%s: negative step count %lld", st_name(f), (long long)step);
    if (!optim_moments_sane(m->data, v->data, o->n))
        return err_set(e, GTRT_EPARSE, "%s: moments are not finite (or a second moment is negative)",
                       st_name(f));
    memcpy(o->m, m->data, o->n * sizeof *o->m);
    memcpy(o->v, v->data, o->n * sizeof *o->v);
    o->step = step;
    return 0;
}
