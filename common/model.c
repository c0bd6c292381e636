/* The policy model: parameters, forward, backward, KV-cache decoding and
 * checkpoints (see model.h). The layers themselves are in layers.c; this file
 * wires them into the network and keeps the bookkeeping of packed batches. */
#include "common/model.h"

#include <assert.h>
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/layers.h"
#include "common/safetensors.h"

/* ==== parameter table ==== */

/* Tensor indices: the global ones, then B_N per block, then the final ones. */
enum { T_PATCH_W, T_PATCH_B, T_PATCH_POS, T_TOK, T_POS, T_GLOBAL_N };
enum {
    B_LN1W, B_LN1B, B_QKVW, B_QKVB, B_PROJW, B_PROJB,
    B_LN2W, B_LN2B, B_FCW, B_FCB, B_FCPW, B_FCPB, B_N
};
enum { F_LNFW, F_LNFB, F_V1W, F_V1B, F_V2W, F_V2B, F_VOW, F_VOB, F_N };

static int tb(const model_config *c, int l, int f)
{
    assert(l >= 0 && l < c->n_layer);
    return T_GLOBAL_N + l * B_N + f;
}

static int tf(const model_config *c, int f) { return T_GLOBAL_N + c->n_layer * B_N + f; }

/* Pointer to tensor `i` inside a flat array laid out like the parameters. */
static inline float *tp(const model *m, float *base, int i) { return base + m->tensors[i].offset; }

static int n_tensors_for(const model_config *c) { return T_GLOBAL_N + c->n_layer * B_N + F_N; }

static void add_tensor(model_tensor *t, size_t *off, const char *name, int d0, int d1)
{
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = d1 ? 2 : 1;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->numel = (size_t)d0 * (size_t)(d1 ? d1 : 1);
    t->decay = d1 != 0;
    t->offset = *off;
    *off += t->numel;
}

/* Fill the table (n_tensors_for(c) entries); returns the parameter count. */
static size_t build_tensors(const model_config *c, model_tensor *t)
{
    int d = c->d_model, V = c->vocab_size;
    int cpp = c->image_c * c->patch * c->patch;
    size_t off = 0;
    char nm[48];
    add_tensor(&t[T_PATCH_W], &off, "patch_embed.weight", d, cpp);
    add_tensor(&t[T_PATCH_B], &off, "patch_embed.bias", d, 0);
    add_tensor(&t[T_PATCH_POS], &off, "patch_pos", model_config_n_patches(c), d);
    add_tensor(&t[T_TOK], &off, "tok_embed.weight", V, d);
    add_tensor(&t[T_POS], &off, "pos_embed.weight", model_config_max_text(c), d);
    static const struct {
        const char *name;
        int d0, d1; /* in units of d; 0 = 1-D */
    } blk[B_N] = {
        [B_LN1W] = {"ln1.weight", 1, 0},      [B_LN1B] = {"ln1.bias", 1, 0},
        [B_QKVW] = {"attn.qkv.weight", 3, 1}, [B_QKVB] = {"attn.qkv.bias", 3, 0},
        [B_PROJW] = {"attn.proj.weight", 1, 1}, [B_PROJB] = {"attn.proj.bias", 1, 0},
        [B_LN2W] = {"ln2.weight", 1, 0},      [B_LN2B] = {"ln2.bias", 1, 0},
        [B_FCW] = {"mlp.fc.weight", 4, 1},    [B_FCB] = {"mlp.fc.bias", 4, 0},
        [B_FCPW] = {"mlp.proj.weight", 1, 4}, [B_FCPB] = {"mlp.proj.bias", 1, 0},
    };
    for (int l = 0; l < c->n_layer; l++)
        for (int f = 0; f < B_N; f++) {
            snprintf(nm, sizeof nm, "blocks.%d.%s", l, blk[f].name);
            add_tensor(&t[tb(c, l, f)], &off, nm, blk[f].d0 * d, blk[f].d1 * d);
        }
    int h1 = c->value_h1, h2 = c->value_h2;
    add_tensor(&t[tf(c, F_LNFW)], &off, "ln_f.weight", d, 0);
    add_tensor(&t[tf(c, F_LNFB)], &off, "ln_f.bias", d, 0);
    add_tensor(&t[tf(c, F_V1W)], &off, "value_head.fc1.weight", h1, d);
    add_tensor(&t[tf(c, F_V1B)], &off, "value_head.fc1.bias", h1, 0);
    add_tensor(&t[tf(c, F_V2W)], &off, "value_head.fc2.weight", h2, h1);
    add_tensor(&t[tf(c, F_V2B)], &off, "value_head.fc2.bias", h2, 0);
    add_tensor(&t[tf(c, F_VOW)], &off, "value_head.out.weight", 1, h2);
    add_tensor(&t[tf(c, F_VOB)], &off, "value_head.out.bias", 1, 0);
    return off;
}

/* ==== configuration ==== */

int model_config_preset(const char *name, model_config *out, err *e)
{
    /* All presets see the default observation: a 64x32 RGB picture in 8x8
     * patches, 32 image tokens (DESIGN §3). */
    model_config c = {.vocab_size = 256, .patch = 8, .image_c = 3, .image_h = 32,
                      .image_w = 64};
    if (strcmp(name, "tiny") == 0) {
        c.d_model = 32, c.n_layer = 2, c.n_head = 2, c.max_seq = 192;
        c.value_h1 = 32, c.value_h2 = 16;
    } else if (strcmp(name, "small") == 0) {
        c.d_model = 256, c.n_layer = 4, c.n_head = 4, c.max_seq = 256;
        c.value_h1 = 256, c.value_h2 = 128;
    } else if (strcmp(name, "base") == 0) {
        c.d_model = 512, c.n_layer = 8, c.n_head = 8, c.max_seq = 320;
        c.value_h1 = 512, c.value_h2 = 256;
    } else {
        return err_set(e, GTRT_EINVAL, "unknown model preset \"%s\" (tiny, small, base)", name);
    }
    *out = c;
    return 0;
}

int model_config_check(const model_config *c, err *e)
{
#define NEED(cond, ...)                                \
    do {                                               \
        if (!(cond))                                   \
            return err_set(e, GTRT_EINVAL, __VA_ARGS__); \
    } while (0)
    NEED(c->vocab_size >= 2 && c->vocab_size <= (1 << 20), "model: vocab_size %d out of range",
         c->vocab_size);
    NEED(c->d_model >= 2 && c->d_model <= 16384, "model: d_model %d out of range", c->d_model);
    NEED(c->n_layer >= 1 && c->n_layer <= 256, "model: n_layer %d out of range", c->n_layer);
    NEED(c->n_head >= 1 && c->d_model % c->n_head == 0,
         "model: d_model %d is not a multiple of n_head %d", c->d_model, c->n_head);
    NEED(c->patch >= 1 && c->patch <= 64, "model: patch %d out of range", c->patch);
    NEED(c->image_c >= 1 && c->image_c <= 4, "model: image_c %d out of range", c->image_c);
    NEED(c->image_h >= c->patch && c->image_w >= c->patch && c->image_h <= 4096 &&
             c->image_w <= 4096 && c->image_h % c->patch == 0 && c->image_w % c->patch == 0,
         "model: image %dx%d is not a whole number of %dx%d patches", c->image_w, c->image_h,
         c->patch, c->patch);
    NEED(c->max_seq > model_config_n_patches(c) && c->max_seq <= 65536,
         "model: max_seq %d must exceed the %d image patches", c->max_seq,
         model_config_n_patches(c));
    NEED(c->value_h1 >= 1 && c->value_h2 >= 1 && c->value_h1 <= 65536 && c->value_h2 <= 65536,
         "model: value head sizes %d, %d out of range", c->value_h1, c->value_h2);
#undef NEED
    return 0;
}

int model_config_n_patches(const model_config *c)
{
    return (c->image_h / c->patch) * (c->image_w / c->patch);
}

int model_config_max_text(const model_config *c) { return c->max_seq - model_config_n_patches(c); }

size_t model_config_n_params(const model_config *c)
{
    model_tensor *t = calloc((size_t)n_tensors_for(c), sizeof *t);
    assert(t);
    size_t n = build_tensors(c, t);
    free(t);
    return n;
}

/* ==== lifetime ==== */

/* Activations of the last forward pass and scratch for the backward pass.
 * Buffers grow to the largest batch seen and are then reused. */
typedef struct dims {
    int rows, seq, scored, img, maxlen;
    size_t att;
} dims;

struct model_work {
    dims cap, cur;
    float *fwd_block, *bwd_block;
    void *int_block;
    float inv_temp;
    bool have_forward;
    /* layout of the current batch */
    int *start, *len, *n_img, *vrow, *img_row, *first, *srow;
    int32_t *tok, *pos, *target;
    size_t *att_off;
    /* forward activations; per-layer arrays are L slices of rows x width */
    float *patches, *enc, *ln1, *ln1_m, *ln1_r, *qkv, *atty, *att, *res2, *ln2, *ln2_m, *ln2_r,
        *fch, *fchg, *res3, *lnf, *lnf_m, *lnf_r, *hs, *logits, *logprob, *entropy, *vin, *v1p,
        *v1, *v2p, *v2, *value, *probs;
    /* backward scratch */
    float *dres, *dln, *dqkv, *datty, *dfch, *dfchg, *dlnf, *dS, *dlg, *dhs, *dvin, *dv1, *dv1p,
        *dv2, *dv2p;
};

typedef struct carver {
    float *base;
    size_t used;
} carver;

/* Hand out n floats, 64-byte aligned; only counts when base is NULL. */
static float *take(carver *c, size_t n)
{
    float *p = c->base ? c->base + c->used : NULL;
    c->used += (n + 15) & ~(size_t)15;
    return p;
}

static size_t layout_fwd(model_work *w, const model_config *c, const dims *D, float *base)
{
    carver k = {base, 0};
    size_t L = (size_t)c->n_layer, d = (size_t)c->d_model, V = (size_t)c->vocab_size;
    size_t r = (size_t)D->rows, s = (size_t)D->seq, R = (size_t)D->scored;
    size_t cpp = (size_t)(c->image_c * c->patch * c->patch);
    w->patches = take(&k, (size_t)D->img * cpp);
    w->enc = take(&k, r * d);
    w->ln1 = take(&k, L * r * d);
    w->ln1_m = take(&k, L * r);
    w->ln1_r = take(&k, L * r);
    w->qkv = take(&k, L * r * 3 * d);
    w->atty = take(&k, L * r * d);
    w->att = take(&k, L * D->att);
    w->res2 = take(&k, L * r * d);
    w->ln2 = take(&k, L * r * d);
    w->ln2_m = take(&k, L * r);
    w->ln2_r = take(&k, L * r);
    w->fch = take(&k, L * r * 4 * d);
    w->fchg = take(&k, L * r * 4 * d);
    w->res3 = take(&k, L * r * d);
    w->lnf = take(&k, r * d);
    w->lnf_m = take(&k, r);
    w->lnf_r = take(&k, r);
    w->hs = take(&k, R * d);
    w->logits = take(&k, R * V);
    w->logprob = take(&k, R);
    w->entropy = take(&k, R);
    w->vin = take(&k, s * d);
    w->v1p = take(&k, s * (size_t)c->value_h1);
    w->v1 = take(&k, s * (size_t)c->value_h1);
    w->v2p = take(&k, s * (size_t)c->value_h2);
    w->v2 = take(&k, s * (size_t)c->value_h2);
    w->value = take(&k, s);
    w->probs = take(&k, V);
    return k.used;
}

static size_t layout_bwd(model_work *w, const model_config *c, const dims *D, float *base)
{
    carver k = {base, 0};
    size_t d = (size_t)c->d_model, V = (size_t)c->vocab_size;
    size_t r = (size_t)D->rows, s = (size_t)D->seq, R = (size_t)D->scored;
    w->dres = take(&k, r * d);
    w->dln = take(&k, r * d);
    w->dqkv = take(&k, r * 3 * d);
    w->datty = take(&k, r * d);
    w->dfch = take(&k, r * 4 * d);
    w->dfchg = take(&k, r * 4 * d);
    w->dlnf = take(&k, r * d);
    w->dS = take(&k, (size_t)D->maxlen * (size_t)D->maxlen);
    w->dlg = take(&k, R * V);
    w->dhs = take(&k, R * d);
    w->dvin = take(&k, s * d);
    w->dv1 = take(&k, s * (size_t)c->value_h1);
    w->dv1p = take(&k, s * (size_t)c->value_h1);
    w->dv2 = take(&k, s * (size_t)c->value_h2);
    w->dv2p = take(&k, s * (size_t)c->value_h2);
    return k.used;
}

size_t model_activation_bytes(const model_config *c, int n_rows, int n_seq, int max_len,
                              int n_scored)
{
    model_work w;
    dims D = {.rows = n_rows, .seq = n_seq, .scored = n_scored,
              .img = n_seq * model_config_n_patches(c), .maxlen = max_len,
              .att = (size_t)n_seq * (size_t)c->n_head * (size_t)max_len * (size_t)max_len};
    return sizeof(float) * (layout_fwd(&w, c, &D, NULL) + layout_bwd(&w, c, &D, NULL));
}

int model_new(const model_config *c, model **out, err *e)
{
    *out = NULL;
    int rc = model_config_check(c, e);
    if (rc)
        return rc;
    model *m = calloc(1, sizeof *m);
    if (!m)
        return err_set(e, GTRT_ENOMEM, "model: out of memory");
    m->cfg = *c;
    m->n_tensors = n_tensors_for(c);
    m->tensors = calloc((size_t)m->n_tensors, sizeof *m->tensors);
    m->work = calloc(1, sizeof *m->work);
    if (m->tensors) {
        m->n_params = build_tensors(c, m->tensors);
        m->params = calloc(m->n_params, sizeof(float));
    }
    if (!m->tensors || !m->work || !m->params) {
        model_free(m);
        return err_set(e, GTRT_ENOMEM, "model: out of memory");
    }
    /* Unit LayerNorm gains, so that a fresh model is usable even before
     * model_init_random. */
    for (int i = 0; i < m->n_tensors; i++)
        if (strstr(m->tensors[i].name, "ln") && strstr(m->tensors[i].name, ".weight"))
            for (size_t j = 0; j < m->tensors[i].numel; j++)
                m->params[m->tensors[i].offset + j] = 1.0f;
    *out = m;
    return 0;
}

void model_free(model *m)
{
    if (!m)
        return;
    if (m->work) {
        free(m->work->fwd_block);
        free(m->work->bwd_block);
        free(m->work->int_block);
        free(m->work);
    }
    free(m->params);
    free(m->grads);
    free(m->tensors);
    free(m);
}

void model_init_random(model *m, rng *r)
{
    const model_config *c = &m->cfg;
    float proj_std = 0.02f / sqrtf(2.0f * (float)c->n_layer);
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
        float *p = m->params + t->offset;
        bool is_norm = strstr(t->name, "ln") != NULL;
        if (t->ndim == 1) {
            for (size_t j = 0; j < t->numel; j++)
                p[j] = is_norm && strstr(t->name, ".weight") ? 1.0f : 0.0f;
            continue;
        }
        float std = strstr(t->name, ".proj.weight") ? proj_std : 0.02f;
        for (size_t j = 0; j < t->numel; j++)
            p[j] = (float)rng_normal(r) * std;
    }
}

const model_tensor *model_tensor_find(const model *m, const char *name)
{
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i].name, name) == 0)
            return &m->tensors[i];
    return NULL;
}

int model_zero_grad(model *m, err *e)
{
    if (!m->grads) {
        m->grads = malloc(sizeof(float) * m->n_params);
        if (!m->grads)
            return err_set(e, GTRT_ENOMEM, "model: out of memory for %zu gradients", m->n_params);
    }
    memset(m->grads, 0, sizeof(float) * m->n_params);
    return 0;
}

int model_decay_ranges(const model *m, optim_range *out)
{
    int n = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
        if (!t->decay)
            continue;
        if (n > 0 && out[n - 1].offset + out[n - 1].count == t->offset)
            out[n - 1].count += t->numel; /* merge neighbours */
        else
            out[n++] = (optim_range){t->offset, t->numel};
    }
    return n;
}

/* ==== batch planning ==== */

static int ensure_capacity(model *m, const dims *need, err *e)
{
    model_work *w = m->work;
    dims *cap = &w->cap;
    if (w->fwd_block && need->rows <= cap->rows && need->seq <= cap->seq &&
        need->scored <= cap->scored && need->img <= cap->img && need->att <= cap->att &&
        need->maxlen <= cap->maxlen)
        return 0;
    /* Grow every dimension at once, with some headroom, so that a run of
     * slightly larger batches does not reallocate each time. */
#define GROW(f) cap->f = need->f > cap->f ? need->f + need->f / 4 : cap->f
    GROW(rows);
    GROW(seq);
    GROW(scored);
    GROW(img);
    GROW(att);
    GROW(maxlen);
#undef GROW
    free(w->fwd_block);
    free(w->bwd_block);
    free(w->int_block);
    w->bwd_block = NULL;
    size_t nf = layout_fwd(w, &m->cfg, cap, NULL);
    w->fwd_block = aligned_alloc(64, sizeof(float) * nf);
    size_t s = (size_t)cap->seq, r = (size_t)cap->rows, R = (size_t)cap->scored;
    size_t ni = 6 * s + 1 + R + 2 * r + R;
    w->int_block = malloc(sizeof(int32_t) * ni + sizeof(size_t) * s);
    if (!w->fwd_block || !w->int_block) {
        free(w->fwd_block);
        free(w->int_block);
        w->fwd_block = NULL;
        w->int_block = NULL;
        *cap = (dims){0};
        return err_set(e, GTRT_ENOMEM, "model: out of memory for activations (%zu MiB)",
                       sizeof(float) * nf >> 20);
    }
    layout_fwd(w, &m->cfg, cap, w->fwd_block);
    w->att_off = w->int_block;
    int *ip = (int *)(w->att_off + s);
    w->start = ip, ip += s;
    w->len = ip, ip += s;
    w->n_img = ip, ip += s;
    w->vrow = ip, ip += s;
    w->img_row = ip, ip += s;
    w->first = ip, ip += s + 1;
    w->srow = ip, ip += R;
    w->tok = ip, ip += r;
    w->pos = ip, ip += r;
    w->target = ip;
    return 0;
}

/* Validate the batch, size the buffers and lay the sequences out.
 * With all_prompt, every token is prompt (prefill): nothing is scored. */
static int plan(model *m, const model_seq *seqs, int n_seq, bool all_prompt, err *e)
{
    const model_config *c = &m->cfg;
    int np = model_config_n_patches(c), max_text = model_config_max_text(c);
    if (n_seq < 1)
        return err_set(e, GTRT_EINVAL, "model: empty batch");
    dims D = {.seq = n_seq};
    for (int b = 0; b < n_seq; b++) {
        const model_seq *q = &seqs[b];
        int n_prompt = all_prompt ? q->n_tokens : q->n_prompt;
        if (q->n_tokens < 1 || n_prompt < 1 || n_prompt > q->n_tokens)
            return err_set(e, GTRT_EINVAL,
                           "model: sequence %d has %d tokens and %d prompt tokens (need "
                           "1 <= prompt <= tokens)",
                           b, q->n_tokens, n_prompt);
        if (q->n_tokens > max_text || (q->image ? np : 0) + q->n_tokens > c->max_seq)
            return err_set(e, GTRT_ERANGE,
                           "model: sequence %d has %d text tokens, more than fit in max_seq %d",
                           b, q->n_tokens, c->max_seq);
        for (int t = 0; t < q->n_tokens; t++)
            if (q->tokens[t] < 0 || q->tokens[t] >= c->vocab_size)
                return err_set(e, GTRT_EINVAL,
                               "model: sequence %d token %d is %d, outside the vocabulary [0, %d)",
                               b, t, q->tokens[t], c->vocab_size);
        int T = (q->image ? np : 0) + q->n_tokens;
        D.rows += T;
        D.img += q->image ? np : 0;
        D.scored += q->n_tokens - n_prompt;
        D.maxlen = T > D.maxlen ? T : D.maxlen;
        D.att += (size_t)c->n_head * (size_t)T * (size_t)T;
    }
    int rc = ensure_capacity(m, &D, e);
    if (rc)
        return rc;
    model_work *w = m->work;
    w->cur = D;
    int row = 0, img = 0, r = 0;
    size_t att = 0;
    for (int b = 0; b < n_seq; b++) {
        const model_seq *q = &seqs[b];
        int n_prompt = all_prompt ? q->n_tokens : q->n_prompt;
        int ni = q->image ? np : 0;
        w->start[b] = row;
        w->len[b] = ni + q->n_tokens;
        w->n_img[b] = ni;
        w->img_row[b] = img;
        w->att_off[b] = att;
        w->vrow[b] = row + ni + n_prompt - 1;
        w->first[b] = r;
        for (int i = 0; i < ni; i++) {
            w->tok[row + i] = -1;
            w->pos[row + i] = i;
        }
        for (int t = 0; t < q->n_tokens; t++) {
            w->tok[row + ni + t] = q->tokens[t];
            w->pos[row + ni + t] = t;
        }
        /* The row of token t-1 predicts token t. */
        for (int t = n_prompt; t < q->n_tokens; t++, r++) {
            w->srow[r] = row + ni + t - 1;
            w->target[r] = q->tokens[t];
        }
        row += w->len[b];
        img += ni;
        att += (size_t)c->n_head * (size_t)w->len[b] * (size_t)w->len[b];
    }
    w->first[n_seq] = r;
    return 0;
}

static layer_seqs seqs_of(const model_work *w)
{
    return (layer_seqs){.n_seq = w->cur.seq, .start = w->start, .len = w->len,
                        .att_off = w->att_off};
}

/* ==== forward ==== */

/* Cut a C x H x W image into patch rows [n_patches, C*P*P], patches in
 * raster order, each patch channel-major then row-major. */
static void im2col(float *out, const float *img, const model_config *c)
{
    int P = c->patch, H = c->image_h, W = c->image_w, gw = W / P;
    int np = model_config_n_patches(c), cpp = c->image_c * P * P;
    for (int i = 0; i < np; i++) {
        int py = i / gw, px = i % gw;
        float *o = out + (size_t)i * cpp;
        for (int ch = 0; ch < c->image_c; ch++)
            for (int dy = 0; dy < P; dy++)
                memcpy(o + (ch * P + dy) * P,
                       img + ((size_t)ch * H + (size_t)(py * P + dy)) * W + (size_t)px * P,
                       sizeof(float) * (size_t)P);
    }
}

static void encode_forward(model *m, const model_seq *seqs)
{
    const model_config *c = &m->cfg;
    model_work *w = m->work;
    int d = c->d_model, np = model_config_n_patches(c);
    int cpp = c->image_c * c->patch * c->patch;
    float *P = m->params;
    for (int b = 0; b < w->cur.seq; b++) {
        float *x = w->enc + (size_t)w->start[b] * d;
        if (w->n_img[b]) {
            float *pt = w->patches + (size_t)w->img_row[b] * cpp;
            im2col(pt, seqs[b].image, c);
            matmul_forward(x, pt, tp(m, P, T_PATCH_W), tp(m, P, T_PATCH_B), np, cpp, d, 0.0f);
            const float *pos = tp(m, P, T_PATCH_POS);
            for (size_t j = 0; j < (size_t)np * d; j++)
                x[j] += pos[j];
        }
        for (int t = w->n_img[b]; t < w->len[b]; t++) {
            int row = w->start[b] + t;
            const float *te = tp(m, P, T_TOK) + (size_t)w->tok[row] * d;
            const float *pe = tp(m, P, T_POS) + (size_t)w->pos[row] * d;
            float *o = w->enc + (size_t)row * d;
            for (int j = 0; j < d; j++)
                o[j] = te[j] + pe[j];
        }
    }
}

static void encode_backward(model *m)
{
    const model_config *c = &m->cfg;
    model_work *w = m->work;
    int d = c->d_model, np = model_config_n_patches(c);
    int cpp = c->image_c * c->patch * c->patch;
    float *G = m->grads;
    for (int b = 0; b < w->cur.seq; b++) {
        const float *dx = w->dres + (size_t)w->start[b] * d;
        if (w->n_img[b]) {
            const float *pt = w->patches + (size_t)w->img_row[b] * cpp;
            matmul_backward(NULL, tp(m, G, T_PATCH_W), tp(m, G, T_PATCH_B), dx, pt,
                            tp(m, m->params, T_PATCH_W), np, cpp, d);
            float *dpos = tp(m, G, T_PATCH_POS);
            for (size_t j = 0; j < (size_t)np * d; j++)
                dpos[j] += dx[j];
        }
        for (int t = w->n_img[b]; t < w->len[b]; t++) {
            int row = w->start[b] + t;
            float *te = tp(m, G, T_TOK) + (size_t)w->tok[row] * d;
            float *pe = tp(m, G, T_POS) + (size_t)w->pos[row] * d;
            const float *g = w->dres + (size_t)row * d;
            for (int j = 0; j < d; j++) {
                te[j] += g[j];
                pe[j] += g[j];
            }
        }
    }
}

/* Per-layer activation slices. */
typedef struct layer_acts {
    float *in, *ln1, *ln1_m, *ln1_r, *qkv, *atty, *att, *res2, *ln2, *ln2_m, *ln2_r, *fch,
        *fchg, *res3;
} layer_acts;

static layer_acts acts_of(const model *m, int l)
{
    const model_work *w = m->work;
    size_t r = (size_t)w->cap.rows, d = (size_t)m->cfg.d_model;
    size_t L = (size_t)l;
    return (layer_acts){
        .in = l == 0 ? w->enc : w->res3 + (L - 1) * r * d,
        .ln1 = w->ln1 + L * r * d,
        .ln1_m = w->ln1_m + L * r,
        .ln1_r = w->ln1_r + L * r,
        .qkv = w->qkv + L * r * 3 * d,
        .atty = w->atty + L * r * d,
        .att = w->att + L * w->cap.att,
        .res2 = w->res2 + L * r * d,
        .ln2 = w->ln2 + L * r * d,
        .ln2_m = w->ln2_m + L * r,
        .ln2_r = w->ln2_r + L * r,
        .fch = w->fch + L * r * 4 * d,
        .fchg = w->fchg + L * r * 4 * d,
        .res3 = w->res3 + L * r * d,
    };
}

static void block_forward(model *m, int l)
{
    const model_config *c = &m->cfg;
    model_work *w = m->work;
    int N = w->cur.rows, d = c->d_model;
    float *P = m->params;
    layer_acts a = acts_of(m, l);
    layer_seqs s = seqs_of(w);
    size_t nd = (size_t)N * d;
    layernorm_forward(a.ln1, a.ln1_m, a.ln1_r, a.in, tp(m, P, tb(c, l, B_LN1W)),
                      tp(m, P, tb(c, l, B_LN1B)), N, d);
    matmul_forward(a.qkv, a.ln1, tp(m, P, tb(c, l, B_QKVW)), tp(m, P, tb(c, l, B_QKVB)), N, d,
                   3 * d, 0.0f);
    attention_forward(a.atty, a.att, a.qkv, &s, d, c->n_head);
    memcpy(a.res2, a.in, sizeof(float) * nd);
    matmul_forward(a.res2, a.atty, tp(m, P, tb(c, l, B_PROJW)), tp(m, P, tb(c, l, B_PROJB)), N,
                   d, d, 1.0f);
    layernorm_forward(a.ln2, a.ln2_m, a.ln2_r, a.res2, tp(m, P, tb(c, l, B_LN2W)),
                      tp(m, P, tb(c, l, B_LN2B)), N, d);
    matmul_forward(a.fch, a.ln2, tp(m, P, tb(c, l, B_FCW)), tp(m, P, tb(c, l, B_FCB)), N, d,
                   4 * d, 0.0f);
    gelu_forward(a.fchg, a.fch, 4 * nd);
    memcpy(a.res3, a.res2, sizeof(float) * nd);
    matmul_forward(a.res3, a.fchg, tp(m, P, tb(c, l, B_FCPW)), tp(m, P, tb(c, l, B_FCPB)), N,
                   4 * d, d, 1.0f);
}

static void block_backward(model *m, int l)
{
    const model_config *c = &m->cfg;
    model_work *w = m->work;
    int N = w->cur.rows, d = c->d_model;
    float *P = m->params, *G = m->grads;
    layer_acts a = acts_of(m, l);
    layer_seqs s = seqs_of(w);
    size_t nd = (size_t)N * d;
    /* w->dres holds dL/d(res3) on entry and dL/d(in) on exit; the residual
     * connections make both branches add into it in place. */
    memset(w->dfchg, 0, sizeof(float) * 4 * nd);
    matmul_backward(w->dfchg, tp(m, G, tb(c, l, B_FCPW)), tp(m, G, tb(c, l, B_FCPB)), w->dres,
                    a.fchg, tp(m, P, tb(c, l, B_FCPW)), N, 4 * d, d);
    memset(w->dfch, 0, sizeof(float) * 4 * nd);
    gelu_backward(w->dfch, a.fch, w->dfchg, 4 * nd);
    memset(w->dln, 0, sizeof(float) * nd);
    matmul_backward(w->dln, tp(m, G, tb(c, l, B_FCW)), tp(m, G, tb(c, l, B_FCB)), w->dfch, a.ln2,
                    tp(m, P, tb(c, l, B_FCW)), N, d, 4 * d);
    layernorm_backward(w->dres, tp(m, G, tb(c, l, B_LN2W)), tp(m, G, tb(c, l, B_LN2B)), w->dln,
                       a.res2, tp(m, P, tb(c, l, B_LN2W)), a.ln2_m, a.ln2_r, N, d);
    memset(w->datty, 0, sizeof(float) * nd);
    matmul_backward(w->datty, tp(m, G, tb(c, l, B_PROJW)), tp(m, G, tb(c, l, B_PROJB)), w->dres,
                    a.atty, tp(m, P, tb(c, l, B_PROJW)), N, d, d);
    memset(w->dqkv, 0, sizeof(float) * 3 * nd);
    attention_backward(w->dqkv, w->dS, w->datty, a.qkv, a.att, &s, d, c->n_head);
    memset(w->dln, 0, sizeof(float) * nd);
    matmul_backward(w->dln, tp(m, G, tb(c, l, B_QKVW)), tp(m, G, tb(c, l, B_QKVB)), w->dqkv,
                    a.ln1, tp(m, P, tb(c, l, B_QKVW)), N, d, 3 * d);
    layernorm_backward(w->dres, tp(m, G, tb(c, l, B_LN1W)), tp(m, G, tb(c, l, B_LN1B)), w->dln,
                       a.in, tp(m, P, tb(c, l, B_LN1W)), a.ln1_m, a.ln1_r, N, d);
}

/* Encoder, blocks and final LayerNorm: everything up to the heads. */
static void trunk_forward(model *m, const model_seq *seqs)
{
    const model_config *c = &m->cfg;
    model_work *w = m->work;
    encode_forward(m, seqs);
    for (int l = 0; l < c->n_layer; l++)
        block_forward(m, l);
    layer_acts last = acts_of(m, c->n_layer - 1);
    layernorm_forward(w->lnf, w->lnf_m, w->lnf_r, last.res3, tp(m, m->params, tf(c, F_LNFW)),
                      tp(m, m->params, tf(c, F_LNFB)), w->cur.rows, c->d_model);
}

/* Value MLP on the final hidden state of each sequence's last prompt token;
 * leaves those hidden states gathered in w->vin. */
static void value_forward(model *m)
{
    const model_config *c = &m->cfg;
    model_work *w = m->work;
    int B = w->cur.seq, d = c->d_model, h1 = c->value_h1, h2 = c->value_h2;
    float *P = m->params;
    for (int b = 0; b < B; b++)
        memcpy(w->vin + (size_t)b * d, w->lnf + (size_t)w->vrow[b] * d, sizeof(float) * d);
    matmul_forward(w->v1p, w->vin, tp(m, P, tf(c, F_V1W)), tp(m, P, tf(c, F_V1B)), B, d, h1, 0);
    gelu_forward(w->v1, w->v1p, (size_t)B * h1);
    matmul_forward(w->v2p, w->v1, tp(m, P, tf(c, F_V2W)), tp(m, P, tf(c, F_V2B)), B, h1, h2, 0);
    gelu_forward(w->v2, w->v2p, (size_t)B * h2);
    matmul_forward(w->value, w->v2, tp(m, P, tf(c, F_VOW)), tp(m, P, tf(c, F_VOB)), B, h2, 1, 0);
}

static void value_backward(model *m, const float *dvalue)
{
    const model_config *c = &m->cfg;
    model_work *w = m->work;
    int B = w->cur.seq, d = c->d_model, h1 = c->value_h1, h2 = c->value_h2;
    float *P = m->params, *G = m->grads;
    memset(w->dv2, 0, sizeof(float) * (size_t)B * h2);
    matmul_backward(w->dv2, tp(m, G, tf(c, F_VOW)), tp(m, G, tf(c, F_VOB)), dvalue, w->v2,
                    tp(m, P, tf(c, F_VOW)), B, h2, 1);
    memset(w->dv2p, 0, sizeof(float) * (size_t)B * h2);
    gelu_backward(w->dv2p, w->v2p, w->dv2, (size_t)B * h2);
    memset(w->dv1, 0, sizeof(float) * (size_t)B * h1);
    matmul_backward(w->dv1, tp(m, G, tf(c, F_V2W)), tp(m, G, tf(c, F_V2B)), w->dv2p, w->v1,
                    tp(m, P, tf(c, F_V2W)), B, h1, h2);
    memset(w->dv1p, 0, sizeof(float) * (size_t)B * h1);
    gelu_backward(w->dv1p, w->v1p, w->dv1, (size_t)B * h1);
    memset(w->dvin, 0, sizeof(float) * (size_t)B * d);
    matmul_backward(w->dvin, tp(m, G, tf(c, F_V1W)), tp(m, G, tf(c, F_V1B)), w->dv1p, w->vin,
                    tp(m, P, tf(c, F_V1W)), B, d, h1);
    for (int b = 0; b < B; b++) {
        float *o = w->dlnf + (size_t)w->vrow[b] * d;
        const float *g = w->dvin + (size_t)b * d;
        for (int j = 0; j < d; j++)
            o[j] += g[j];
    }
}

int model_forward(model *m, const model_batch *b, model_out *out, err *e)
{
    model_work *w = m->work;
    w->have_forward = false;
    int rc = plan(m, b->seqs, b->n_seq, false, e);
    if (rc)
        return rc;
    const model_config *c = &m->cfg;
    int d = c->d_model, V = c->vocab_size, R = w->cur.scored;
    float T = b->temperature > 0.0f ? b->temperature : 1.0f;
    w->inv_temp = 1.0f / T;
    trunk_forward(m, b->seqs);
    /* LM head only on the scored rows, gathered so that one sgemm does it. */
    for (int r = 0; r < R; r++)
        memcpy(w->hs + (size_t)r * d, w->lnf + (size_t)w->srow[r] * d, sizeof(float) * d);
    matmul_forward(w->logits, w->hs, tp(m, m->params, T_TOK), NULL, R, d, V, 0.0f);
    for (int r = 0; r < R; r++)
        token_head_forward(&w->logprob[r], &w->entropy[r], w->probs, w->logits + (size_t)r * V,
                           V, w->target[r], w->inv_temp);
    value_forward(m);
    w->have_forward = true;
    if (out)
        *out = (model_out){.n_seq = b->n_seq, .n_scored = R, .vocab = V, .first = w->first,
                           .target = w->target, .logits = w->logits, .logprob = w->logprob,
                           .entropy = w->entropy, .value = w->value};
    return 0;
}

/* ==== backward ==== */

int model_backward(model *m, const float *dlogprob, const float *dentropy, const float *dvalue,
                   const float *dlogits, err *e)
{
    model_work *w = m->work;
    const model_config *c = &m->cfg;
    if (!w->have_forward)
        return err_set(e, GTRT_ESTATE, "model_backward: no forward pass to backpropagate");
    if (!m->grads)
        return err_set(e, GTRT_ESTATE, "model_backward: call model_zero_grad first");
    if (!w->bwd_block) {
        size_t nb = layout_bwd(w, c, &w->cap, NULL);
        w->bwd_block = aligned_alloc(64, sizeof(float) * nb);
        if (!w->bwd_block)
            return err_set(e, GTRT_ENOMEM, "model: out of memory for backward (%zu MiB)",
                           sizeof(float) * nb >> 20);
        layout_bwd(w, c, &w->cap, w->bwd_block);
    }
    int N = w->cur.rows, d = c->d_model, V = c->vocab_size, R = w->cur.scored;
    float *P = m->params, *G = m->grads;
    memset(w->dlnf, 0, sizeof(float) * (size_t)N * d);
    if (R > 0 && (dlogprob || dentropy || dlogits)) {
        if (dlogits)
            memcpy(w->dlg, dlogits, sizeof(float) * (size_t)R * V);
        else
            memset(w->dlg, 0, sizeof(float) * (size_t)R * V);
        if (dlogprob || dentropy)
            for (int r = 0; r < R; r++)
                token_head_backward(w->dlg + (size_t)r * V, w->probs, w->logits + (size_t)r * V,
                                    V, w->target[r], w->inv_temp, dlogprob ? dlogprob[r] : 0.0f,
                                    dentropy ? dentropy[r] : 0.0f);
        memset(w->dhs, 0, sizeof(float) * (size_t)R * d);
        matmul_backward(w->dhs, tp(m, G, T_TOK), NULL, w->dlg, w->hs, tp(m, P, T_TOK), R, d, V);
        for (int r = 0; r < R; r++) {
            float *o = w->dlnf + (size_t)w->srow[r] * d;
            const float *g = w->dhs + (size_t)r * d;
            for (int j = 0; j < d; j++)
                o[j] += g[j];
        }
    }
    if (dvalue)
        value_backward(m, dvalue);
    memset(w->dres, 0, sizeof(float) * (size_t)N * d);
    layer_acts last = acts_of(m, c->n_layer - 1);
    layernorm_backward(w->dres, tp(m, G, tf(c, F_LNFW)), tp(m, G, tf(c, F_LNFB)), w->dlnf,
                       last.res3, tp(m, P, tf(c, F_LNFW)), w->lnf_m, w->lnf_r, N, d);
    for (int l = c->n_layer - 1; l >= 0; l--)
        block_backward(m, l);
    encode_backward(m);
    return 0;
}

/* ==== FLOPs ==== */

double model_forward_flops(const model_config *c, const model_batch *b)
{
    double d = c->d_model, V = c->vocab_size, N = 0, att = 0, img = 0, R = 0;
    int np = model_config_n_patches(c);
    for (int i = 0; i < b->n_seq; i++) {
        const model_seq *q = &b->seqs[i];
        double T = (q->image ? np : 0) + q->n_tokens;
        N += T;
        img += q->image ? np : 0;
        R += q->n_tokens - q->n_prompt;
        att += 4.0 * T * T * d; /* q k^T and p v, full squares */
    }
    double cpp = (double)c->image_c * c->patch * c->patch;
    double per_layer = 2.0 * N * d * (3 * d + d + 4 * d + 4 * d) + att;
    double value = 2.0 * b->n_seq *
                   (d * c->value_h1 + (double)c->value_h1 * c->value_h2 + c->value_h2);
    return c->n_layer * per_layer + 2.0 * img * cpp * d + 2.0 * R * V * d + value;
}

/* ==== checkpoints ==== */

#define MODEL_FORMAT "gtrt-model-1"

static const struct {
    const char *key;
    size_t off;
} cfg_fields[] = {
    {"vocab_size", offsetof(model_config, vocab_size)},
    {"d_model", offsetof(model_config, d_model)},
    {"n_layer", offsetof(model_config, n_layer)},
    {"n_head", offsetof(model_config, n_head)},
    {"patch", offsetof(model_config, patch)},
    {"image_c", offsetof(model_config, image_c)},
    {"image_h", offsetof(model_config, image_h)},
    {"image_w", offsetof(model_config, image_w)},
    {"max_seq", offsetof(model_config, max_seq)},
    {"value_h1", offsetof(model_config, value_h1)},
    {"value_h2", offsetof(model_config, value_h2)},
};
#define N_CFG_FIELDS ((int)(sizeof cfg_fields / sizeof cfg_fields[0]))

int model_save(const model *m, const char *path, err *e)
{
    return model_save_with(m, path, NULL, 0, e);
}

int model_save_with(const model *m, const char *path, const st_kv *extra, int n_extra, err *e)
{
    for (int i = 0; i < n_extra; i++) {
        bool clash = strcmp(extra[i].key, "format") == 0;
        for (int k = 0; k < N_CFG_FIELDS; k++)
            clash |= strcmp(extra[i].key, cfg_fields[k].key) == 0;
        if (clash)
            return err_set(e, GTRT_EINVAL, "%s: metadata key \"%s\" is reserved", path,
                           extra[i].key);
    }
    st_entry *ent = calloc((size_t)m->n_tensors, sizeof *ent);
    st_kv *meta = calloc((size_t)(N_CFG_FIELDS + 1 + n_extra), sizeof *meta);
    if (!ent || !meta) {
        free(ent);
        free(meta);
        return err_set(e, GTRT_ENOMEM, "%s: out of memory", path);
    }
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
        ent[i] = (st_entry){.name = t->name, .dtype = ST_F32, .ndim = t->ndim,
                            .data = m->params + t->offset};
        ent[i].shape[0] = t->shape[0];
        ent[i].shape[1] = t->shape[1];
    }
    char vals[N_CFG_FIELDS][16];
    meta[0] = (st_kv){"format", MODEL_FORMAT};
    for (int i = 0; i < N_CFG_FIELDS; i++) {
        int v;
        memcpy(&v, (const char *)&m->cfg + cfg_fields[i].off, sizeof v);
        snprintf(vals[i], sizeof vals[i], "%d", v);
        meta[i + 1] = (st_kv){cfg_fields[i].key, vals[i]};
    }
    for (int i = 0; i < n_extra; i++)
        meta[N_CFG_FIELDS + 1 + i] = extra[i];
    int rc = st_write(path, ent, m->n_tensors, meta, N_CFG_FIELDS + 1 + n_extra, e);
    free(ent);
    free(meta);
    return rc;
}

static int config_from_file(const st_file *f, model_config *out, err *e)
{
    const char *fmt = st_meta(f, "format");
    if (!fmt || strcmp(fmt, MODEL_FORMAT) != 0)
        return err_set(e, GTRT_EVERSION, "%s: not a %s checkpoint (format \"%s\")", st_name(f),
                       MODEL_FORMAT, fmt ? fmt : "missing");
    model_config c;
    for (int i = 0; i < N_CFG_FIELDS; i++) {
        const char *s = st_meta(f, cfg_fields[i].key);
        char *end = NULL;
        errno = 0;
        long v = s ? strtol(s, &end, 10) : 0;
        if (!s || *s == '\0' || *end != '\0' || errno || v < 0 || v > 1000000000L)
            return err_set(e, GTRT_EPARSE, "%s: metadata \"%s\" is missing or not an integer",
                           st_name(f), cfg_fields[i].key);
        int iv = (int)v;
        memcpy((char *)&c + cfg_fields[i].off, &iv, sizeof iv);
    }
    int rc = model_config_check(&c, e);
    if (rc)
        return err_prefix(e, "%s", st_name(f));
    *out = c;
    return 0;
}

/* Read every tensor of f into a fresh copy of the parameters, then swap it
 * in, so a bad file leaves the model as it was. */
static int load_params(model *m, const st_file *f, err *e)
{
    model_config c;
    int rc = config_from_file(f, &c, e);
    if (rc)
        return rc;
    if (memcmp(&c, &m->cfg, sizeof c) != 0)
        return err_set(e, GTRT_EINVAL, "%s: model configuration differs from the running model",
                       st_name(f));
    if (st_count(f) != m->n_tensors)
        return err_set(e, GTRT_EINVAL, "%s: %d tensors, the model has %d", st_name(f),
                       st_count(f), m->n_tensors);
    /* Check every tensor before writing any, so a bad file leaves the
     * running weights untouched; then read straight into them. */
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
        int64_t shape[2] = {t->shape[0], t->shape[1]};
        if ((rc = st_check_f32(f, t->name, shape, t->ndim, e)))
            return rc;
    }
    for (int i = 0; i < m->n_tensors && !rc; i++) {
        const model_tensor *t = &m->tensors[i];
        int64_t shape[2] = {t->shape[0], t->shape[1]};
        rc = st_read_f32(f, t->name, shape, t->ndim, m->params + t->offset, e);
    }
    return rc;
}

int model_config_load(const char *path, model_config *out, err *e)
{
    st_file *f;
    int rc = st_open(path, &f, e);
    if (rc)
        return rc;
    rc = config_from_file(f, out, e);
    st_close(f);
    return rc;
}

/* A new model from an open checkpoint. */
static int model_from_file(st_file *f, model **out, err *e)
{
    model_config c;
    model *m = NULL;
    int rc;
    if (!(rc = config_from_file(f, &c, e)) && !(rc = model_new(&c, &m, e)))
        rc = load_params(m, f, e);
    if (rc) {
        model_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int model_load_new_buffer(const void *buf, size_t n, const char *name, model **out, err *e)
{
    *out = NULL;
    st_file *f;
    int rc = st_open_buffer(buf, n, name, &f, e);
    if (rc)
        return rc;
    rc = model_from_file(f, out, e);
    st_close(f);
    return rc;
}

int model_load(const char *path, model **out, err *e)
{
    *out = NULL;
    st_file *f;
    int rc = st_open(path, &f, e);
    if (rc)
        return rc;
    model_config c;
    model *m = NULL;
    if (!(rc = config_from_file(f, &c, e)) && !(rc = model_new(&c, &m, e)))
        rc = load_params(m, f, e);
    st_close(f);
    if (rc) {
        model_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int model_load_into(model *m, const char *path, err *e)
{
    st_file *f;
    int rc = st_open(path, &f, e);
    if (rc)
        return rc;
    rc = load_params(m, f, e);
    st_close(f);
    return rc;
}

int model_load_buffer(model *m, const void *buf, size_t n, const char *name, err *e)
{
    st_file *f;
    int rc = st_open_view(buf, n, name, &f, e);
    if (rc)
        return rc;
    rc = load_params(m, f, e);
    st_close(f);
    return rc;
}

/* ==== KV cache ==== */

struct model_kv {
    model_config cfg;
    int n_slots;
    float *cache; /* [n_layer][n_slots][max_seq][2 d]: k then v per position */
    int *len, *n_img;
    /* decode scratch for up to n_slots rows */
    float *x, *ln, *mean, *rstd, *qkv, *atty, *fch, *fchg, *scores;
};

static float *kv_at(const model_kv *kv, int l, int slot, int t)
{
    size_t d2 = 2 * (size_t)kv->cfg.d_model;
    return kv->cache + (((size_t)l * kv->n_slots + slot) * kv->cfg.max_seq + t) * d2;
}

void model_kv_free(model_kv *kv)
{
    if (!kv)
        return;
    free(kv->cache);
    free(kv->len);
    free(kv->x);
    free(kv);
}

int model_kv_new(const model_config *c, int n_slots, model_kv **out, err *e)
{
    *out = NULL;
    assert(n_slots >= 1);
    model_kv *kv = calloc(1, sizeof *kv);
    if (!kv)
        return err_set(e, GTRT_ENOMEM, "kv cache: out of memory");
    kv->cfg = *c;
    kv->n_slots = n_slots;
    size_t d = (size_t)c->d_model, S = (size_t)n_slots;
    size_t n = (size_t)c->n_layer * S * (size_t)c->max_seq * 2 * d;
    kv->cache = malloc(sizeof(float) * n);
    kv->len = calloc(2 * S, sizeof(int));
    carver k = {NULL, 0};
    for (int pass = 0; pass < 2; pass++) {
        kv->x = take(&k, S * d);
        kv->ln = take(&k, S * d);
        kv->mean = take(&k, S);
        kv->rstd = take(&k, S);
        kv->qkv = take(&k, S * 3 * d);
        kv->atty = take(&k, S * d);
        kv->fch = take(&k, S * 4 * d);
        kv->fchg = take(&k, S * 4 * d);
        kv->scores = take(&k, (size_t)c->max_seq);
        if (pass == 0) {
            k.base = aligned_alloc(64, sizeof(float) * k.used);
            k.used = 0;
            if (!k.base)
                break;
        }
    }
    if (!kv->cache || !kv->len || !k.base) {
        free(k.base);
        kv->x = NULL;
        model_kv_free(kv);
        return err_set(e, GTRT_ENOMEM, "kv cache: out of memory for %d slots (%zu MiB)", n_slots,
                       sizeof(float) * n >> 20);
    }
    kv->n_img = kv->len + n_slots;
    *out = kv;
    return 0;
}

int model_kv_len(const model_kv *kv, int slot)
{
    assert(slot >= 0 && slot < kv->n_slots);
    return kv->len[slot];
}

int model_prefill(model *m, model_kv *kv, const model_seq *seqs, int n_seq, float *logits,
                  float *value, err *e)
{
    const model_config *c = &m->cfg;
    assert(memcmp(&kv->cfg, c, sizeof *c) == 0);
    if (n_seq > kv->n_slots)
        return err_set(e, GTRT_ERANGE, "prefill: %d sequences but the cache holds %d", n_seq,
                       kv->n_slots);
    model_work *w = m->work;
    w->have_forward = false; /* the buffers no longer hold a scored batch */
    int rc = plan(m, seqs, n_seq, true, e);
    if (rc)
        return rc;
    trunk_forward(m, seqs);
    value_forward(m);
    int d = c->d_model;
    if (logits)
        matmul_forward(logits, w->vin, tp(m, m->params, T_TOK), NULL, n_seq, d, c->vocab_size,
                       0.0f);
    if (value)
        memcpy(value, w->value, sizeof(float) * (size_t)n_seq);
    for (int l = 0; l < c->n_layer; l++) {
        layer_acts a = acts_of(m, l);
        for (int b = 0; b < n_seq; b++)
            for (int t = 0; t < w->len[b]; t++)
                memcpy(kv_at(kv, l, b, t), a.qkv + (size_t)(w->start[b] + t) * 3 * d + d,
                       sizeof(float) * 2 * (size_t)d);
    }
    for (int b = 0; b < n_seq; b++) {
        kv->len[b] = w->len[b];
        kv->n_img[b] = w->n_img[b];
    }
    return 0;
}

/* Attention of one new query row against the cached keys and values of its
 * slot (positions 0..T-1, the new one included). The cache rows of one head
 * form a strided T x hs matrix, so both products are matrix-vector calls. */
static void decode_attention(model_kv *kv, int l, int slot, int T, const float *q, float *out)
{
    int d = kv->cfg.d_model, NH = kv->cfg.n_head, hs = d / NH;
    float scale = 1.0f / sqrtf((float)hs);
    float *sc = kv->scores;
    const float *k0 = kv_at(kv, l, slot, 0);
    for (int h = 0; h < NH; h++) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, T, hs, scale, k0 + h * hs, 2 * d, q + h * hs, 1,
                    0.0f, sc, 1);
        float mx = sc[0];
        for (int t = 1; t < T; t++)
            mx = sc[t] > mx ? sc[t] : mx;
        float sum = 0.0f;
        for (int t = 0; t < T; t++) {
            sc[t] = expf(sc[t] - mx);
            sum += sc[t];
        }
        cblas_sgemv(CblasRowMajor, CblasTrans, T, hs, 1.0f / sum, k0 + d + h * hs, 2 * d, sc, 1,
                    0.0f, out + h * hs, 1);
    }
}

int model_decode(const model *m, model_kv *kv, const int *slots, const int32_t *tokens, int n,
                 float *logits, err *e)
{
    const model_config *c = &m->cfg;
    assert(memcmp(&kv->cfg, c, sizeof *c) == 0);
    assert(n >= 1 && n <= kv->n_slots);
    int d = c->d_model, max_text = model_config_max_text(c);
    float *P = m->params;
    for (int i = 0; i < n; i++) {
        int s = slots[i];
        assert(s >= 0 && s < kv->n_slots);
        for (int k = 0; k < i; k++)
            assert(slots[k] != s && "a slot may appear once per decode step");
        if (tokens[i] < 0 || tokens[i] >= c->vocab_size)
            return err_set(e, GTRT_EINVAL, "decode: token %d outside the vocabulary [0, %d)",
                           tokens[i], c->vocab_size);
        if (kv->len[s] >= c->max_seq || kv->len[s] - kv->n_img[s] >= max_text)
            return err_set(e, GTRT_ERANGE, "decode: slot %d is full (%d tokens)", s, kv->len[s]);
    }
    for (int i = 0; i < n; i++) {
        const float *te = tp(m, P, T_TOK) + (size_t)tokens[i] * d;
        const float *pe = tp(m, P, T_POS) + (size_t)(kv->len[slots[i]] - kv->n_img[slots[i]]) * d;
        for (int j = 0; j < d; j++)
            kv->x[(size_t)i * d + j] = te[j] + pe[j];
    }
    for (int l = 0; l < c->n_layer; l++) {
        layernorm_forward(kv->ln, kv->mean, kv->rstd, kv->x, tp(m, P, tb(c, l, B_LN1W)),
                          tp(m, P, tb(c, l, B_LN1B)), n, d);
        matmul_forward(kv->qkv, kv->ln, tp(m, P, tb(c, l, B_QKVW)), tp(m, P, tb(c, l, B_QKVB)), n,
                       d, 3 * d, 0.0f);
        for (int i = 0; i < n; i++) {
            int s = slots[i], t = kv->len[s];
            memcpy(kv_at(kv, l, s, t), kv->qkv + (size_t)i * 3 * d + d, sizeof(float) * 2 * d);
            decode_attention(kv, l, s, t + 1, kv->qkv + (size_t)i * 3 * d, kv->atty + (size_t)i * d);
        }
        matmul_forward(kv->x, kv->atty, tp(m, P, tb(c, l, B_PROJW)), tp(m, P, tb(c, l, B_PROJB)),
                       n, d, d, 1.0f);
        layernorm_forward(kv->ln, kv->mean, kv->rstd, kv->x, tp(m, P, tb(c, l, B_LN2W)),
                          tp(m, P, tb(c, l, B_LN2B)), n, d);
        matmul_forward(kv->fch, kv->ln, tp(m, P, tb(c, l, B_FCW)), tp(m, P, tb(c, l, B_FCB)), n, d,
                       4 * d, 0.0f);
        gelu_forward(kv->fchg, kv->fch, (size_t)n * 4 * d);
        matmul_forward(kv->x, kv->fchg, tp(m, P, tb(c, l, B_FCPW)), tp(m, P, tb(c, l, B_FCPB)), n,
                       4 * d, d, 1.0f);
    }
    layernorm_forward(kv->ln, kv->mean, kv->rstd, kv->x, tp(m, P, tf(c, F_LNFW)),
                      tp(m, P, tf(c, F_LNFB)), n, d);
    matmul_forward(logits, kv->ln, tp(m, P, T_TOK), NULL, n, d, c->vocab_size, 0.0f);
    for (int i = 0; i < n; i++)
        kv->len[slots[i]]++;
    return 0;
}
