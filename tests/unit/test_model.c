/* The whole model: finite-difference gradient check through every tensor,
 * KV-cache decoding against the full forward pass, batching invariance,
 * causality, input validation and checkpoint round trips. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/model.h"

/* A model small enough for finite differences on every tensor: 2 layers,
 * 2 heads, 3x8x8 images in 4x4 patches (4 patch tokens), 13 tokens. */
static model_config micro_config(void)
{
    return (model_config){.vocab_size = 13, .d_model = 16, .n_layer = 2, .n_head = 2,
                          .patch = 4, .image_c = 3, .image_h = 8, .image_w = 8,
                          .max_seq = 24, .value_h1 = 8, .value_h2 = 6};
}

static model *new_model(const model_config *c, uint64_t seed, float noise)
{
    model *m;
    err e = {0};
    cr_assert_eq(model_new(c, &m, &e), 0, "%s", e.msg);
    rng r;
    rng_init(&r, seed);
    model_init_random(m, &r);
    /* Noise on everything (norm gains, biases, positions) so that no
     * parameter sits at a special value where a wrong gradient hides. */
    for (size_t i = 0; i < m->n_params; i++)
        m->params[i] += noise * (float)rng_normal(&r);
    return m;
}

static float *random_image(const model_config *c, rng *r)
{
    size_t n = (size_t)c->image_c * c->image_h * c->image_w;
    float *img = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++)
        img[i] = rng_float(r);
    return img;
}

static void random_tokens(int32_t *t, int n, int V, rng *r)
{
    for (int i = 0; i < n; i++)
        t[i] = (int32_t)rng_below(r, (uint64_t)V);
}

/* ==== gradient check ==== */

typedef struct loss_spec {
    const float *a, *c, *w, *g; /* coefficients of logprob, entropy, value, logits */
} loss_spec;

static double eval_loss(model *m, const model_batch *b, const loss_spec *ls, int *n_scored)
{
    model_out o;
    err e = {0};
    cr_assert_eq(model_forward(m, b, &o, &e), 0, "%s", e.msg);
    double L = 0;
    for (int r = 0; r < o.n_scored; r++) {
        L += (double)ls->a[r] * o.logprob[r] + (double)ls->c[r] * o.entropy[r];
        for (int v = 0; v < o.vocab; v++)
            L += (double)ls->g[(size_t)r * o.vocab + v] * o.logits[(size_t)r * o.vocab + v];
    }
    for (int i = 0; i < o.n_seq; i++)
        L += (double)ls->w[i] * o.value[i];
    if (n_scored)
        *n_scored = o.n_scored;
    return L;
}

Test(model, whole_model_gradient_check)
{
    model_config c = micro_config();
    model *m = new_model(&c, 11, 0.1f);
    rng r;
    rng_init(&r, 12);
    float *img0 = random_image(&c, &r), *img2 = random_image(&c, &r);
    int32_t t0[6], t1[5], t2[7];
    random_tokens(t0, 6, c.vocab_size, &r);
    random_tokens(t1, 5, c.vocab_size, &r);
    random_tokens(t2, 7, c.vocab_size, &r);
    /* Image + prompt + response, text only, and a prompt-only sequence that
     * contributes only its value. */
    model_seq seqs[3] = {{img0, t0, 6, 2}, {NULL, t1, 5, 1}, {img2, t2, 7, 7}};
    model_batch b = {seqs, 3, 0.8f};
    enum { R = 4 + 4 };
    float a[R], cc[R], w[3], g[R * 13];
    for (int i = 0; i < R; i++) {
        a[i] = (float)rng_normal(&r);
        cc[i] = (float)rng_normal(&r);
    }
    for (int i = 0; i < 3; i++)
        w[i] = (float)rng_normal(&r);
    for (int i = 0; i < R * 13; i++)
        g[i] = 0.3f * (float)rng_normal(&r);
    loss_spec ls = {a, cc, w, g};
    int n_scored = 0;
    eval_loss(m, &b, &ls, &n_scored);
    cr_assert_eq(n_scored, R);
    err e = {0};
    cr_assert_eq(model_zero_grad(m, &e), 0);
    cr_assert_eq(model_backward(m, a, cc, w, g, &e), 0, "%s", e.msg);
    float *grad = malloc(sizeof(float) * m->n_params);
    memcpy(grad, m->grads, sizeof(float) * m->n_params);

    /* Per tensor: the directional derivative along a random direction (all
     * of the tensor at once, so the signal is large), and the largest
     * single entries one by one. */
    const float eps = 3e-3f; /* truncation ~eps^2 vs float round-off ~1e-7/eps */
    double worst = 0;
    for (int ti = 0; ti < m->n_tensors; ti++) {
        const model_tensor *t = &m->tensors[ti];
        float *p = m->params + t->offset;
        const float *gt = grad + t->offset;
        float *dir = malloc(sizeof(float) * t->numel);
        float *saved = malloc(sizeof(float) * t->numel);
        memcpy(saved, p, sizeof(float) * t->numel);
        double ana = 0, gnorm = 0;
        for (size_t j = 0; j < t->numel; j++) {
            dir[j] = (float)rng_normal(&r);
            ana += (double)dir[j] * gt[j];
            gnorm += (double)gt[j] * gt[j];
        }
        gnorm = sqrt(gnorm);
        double dnorm = sqrt((double)t->numel);
        double lp, lm;
        for (size_t j = 0; j < t->numel; j++)
            p[j] = saved[j] + eps * dir[j];
        lp = eval_loss(m, &b, &ls, NULL);
        for (size_t j = 0; j < t->numel; j++)
            p[j] = saved[j] - eps * dir[j];
        lm = eval_loss(m, &b, &ls, NULL);
        memcpy(p, saved, sizeof(float) * t->numel);
        double num = (lp - lm) / (2 * eps);
        /* Scale: |ana| is at most |g| |dir|; compare against that bound. */
        double rel = fabs(num - ana) / (gnorm * dnorm + 1e-12);
        cr_assert(gnorm > 1e-7, "%s: gradient is all zero", t->name);
        cr_expect(rel < 1e-3, "%s: directional derivative %.6e vs %.6e (rel %.2e)", t->name, num,
                  ana, rel);
        worst = rel > worst ? rel : worst;
        if (getenv("GTRT_GRADCHECK_VERBOSE"))
            fprintf(stderr, "  %-28s num %+.6e ana %+.6e rel %.2e\n", t->name, num, ana, rel);
        /* the entry with the largest gradient */
        size_t jmax = 0;
        for (size_t j = 1; j < t->numel; j++)
            if (fabsf(gt[j]) > fabsf(gt[jmax]))
                jmax = j;
        p[jmax] = saved[jmax] + eps;
        lp = eval_loss(m, &b, &ls, NULL);
        p[jmax] = saved[jmax] - eps;
        lm = eval_loss(m, &b, &ls, NULL);
        p[jmax] = saved[jmax];
        num = (lp - lm) / (2 * eps);
        double erel = fabs(num - gt[jmax]) / (fabs(gt[jmax]) + 1e-12);
        cr_expect(erel < 2e-2, "%s[%zu]: d/dp %.6e vs %.6e (rel %.2e)", t->name, jmax, num,
                  gt[jmax], erel);
        free(dir);
        free(saved);
    }
    fprintf(stderr, "whole-model gradcheck: %d tensors, worst directional rel err %.2e\n",
            m->n_tensors, worst);
    free(grad);
    free(img0);
    free(img2);
    model_free(m);
}

/* ==== KV cache ==== */

Test(model, kv_cache_decoding_matches_full_forward)
{
    model_config c;
    cr_assert_eq(model_config_preset("tiny", &c, NULL), 0);
    c.vocab_size = 40;
    model *m = new_model(&c, 21, 0.05f);
    rng r;
    rng_init(&r, 22);
    float *img = random_image(&c, &r);
    enum { NP = 5, NG = 9 };
    int32_t full0[NP + NG], full1[3 + NG];
    random_tokens(full0, NP + NG, c.vocab_size, &r);
    random_tokens(full1, 3 + NG, c.vocab_size, &r);
    model_seq prompts[2] = {{img, full0, NP, NP}, {NULL, full1, 3, 3}};
    model_kv *kv;
    err e = {0};
    cr_assert_eq(model_kv_new(&c, 2, &kv, &e), 0, "%s", e.msg);
    int V = c.vocab_size;
    float *step_logits = malloc(sizeof(float) * 2 * (NG + 1) * V);
    float value_pf[2];
    cr_assert_eq(model_prefill(m, kv, prompts, 2, step_logits, value_pf, &e), 0, "%s", e.msg);
    /* Rearrange as [seq][step][V]. */
    float *dec = malloc(sizeof(float) * 2 * (NG + 1) * V);
    memcpy(dec, step_logits, sizeof(float) * V);
    memcpy(dec + (size_t)(NG + 1) * V, step_logits + V, sizeof(float) * V);
    for (int s = 0; s < NG; s++) {
        int slots[2] = {1, 0}; /* out of order on purpose */
        int32_t toks[2] = {full1[3 + s], full0[NP + s]};
        float lg[2 * 64];
        cr_assert_eq(model_decode(m, kv, slots, toks, 2, lg, &e), 0, "%s", e.msg);
        memcpy(dec + (size_t)(s + 1) * V, lg + V, sizeof(float) * V);
        memcpy(dec + (size_t)((NG + 1) + s + 1) * V, lg, sizeof(float) * V);
    }
    cr_expect_eq(model_kv_len(kv, 0), 32 + NP + NG);
    cr_expect_eq(model_kv_len(kv, 1), 3 + NG);
    /* Full forward over the same sequences; the scored rows are the
     * predictions for tokens NP.. (resp. 3..), i.e. decode steps 0..NG-1. */
    model_seq full[2] = {{img, full0, NP + NG, NP}, {NULL, full1, 3 + NG, 3}};
    model_batch b = {full, 2, 1.0f};
    model_out o;
    cr_assert_eq(model_forward(m, &b, &o, &e), 0, "%s", e.msg);
    double maxdiff = 0;
    for (int s = 0; s < 2; s++)
        for (int k = 0; k < NG; k++) {
            const float *a = o.logits + (size_t)(o.first[s] + k) * V;
            const float *d = dec + (size_t)(s * (NG + 1) + k) * V;
            for (int v = 0; v < V; v++) {
                double diff = fabs(a[v] - d[v]);
                maxdiff = diff > maxdiff ? diff : maxdiff;
            }
        }
    fprintf(stderr, "kv-cache vs full forward: max |logit diff| %.3e\n", maxdiff);
    cr_expect(maxdiff < 1e-4, "KV-cache logits differ from the full forward by %g", maxdiff);
    for (int s = 0; s < 2; s++)
        cr_expect_float_eq(o.value[s], value_pf[s], 1e-5, "value of seq %d", s);
    /* A full slot is refused. */
    model_kv *kv1;
    cr_assert_eq(model_kv_new(&c, 1, &kv1, &e), 0);
    int32_t many[200];
    random_tokens(many, 200, V, &r);
    model_seq longp = {NULL, many, model_config_max_text(&c), 1};
    cr_assert_eq(model_prefill(m, kv1, &longp, 1, NULL, NULL, &e), 0, "%s", e.msg);
    int slot = 0;
    float lg[64];
    cr_expect_eq(model_decode(m, kv1, &slot, many, 1, lg, &e), GTRT_ERANGE);
    model_kv_free(kv1);
    model_kv_free(kv);
    free(dec);
    free(step_logits);
    free(img);
    model_free(m);
}

/* ==== batching, causality, validation ==== */

Test(model, batching_does_not_change_results)
{
    model_config c = micro_config();
    model *m = new_model(&c, 31, 0.05f);
    rng r;
    rng_init(&r, 32);
    float *img = random_image(&c, &r);
    int32_t t0[9], t1[4];
    random_tokens(t0, 9, c.vocab_size, &r);
    random_tokens(t1, 4, c.vocab_size, &r);
    model_seq both[2] = {{NULL, t1, 4, 2}, {img, t0, 9, 3}};
    model_batch b = {both, 2, 0.5f};
    model_out o;
    err e = {0};
    cr_assert_eq(model_forward(m, &b, &o, &e), 0, "%s", e.msg);
    float lp[6], ent[6], val = o.value[1];
    cr_assert_eq(o.first[2] - o.first[1], 6);
    memcpy(lp, o.logprob + o.first[1], sizeof lp);
    memcpy(ent, o.entropy + o.first[1], sizeof ent);
    model_batch one = {both + 1, 1, 0.5f};
    cr_assert_eq(model_forward(m, &one, &o, &e), 0, "%s", e.msg);
    for (int i = 0; i < 6; i++) {
        cr_expect_float_eq(o.logprob[i], lp[i], 1e-5);
        cr_expect_float_eq(o.entropy[i], ent[i], 1e-5);
    }
    cr_expect_float_eq(o.value[0], val, 1e-5);
    /* Causality: a later token does not change earlier scores, and the
     * response does not change the value. */
    t0[8] = (t0[8] + 1) % c.vocab_size;
    t0[5] = (t0[5] + 1) % c.vocab_size;
    cr_assert_eq(model_forward(m, &one, &o, &e), 0, "%s", e.msg);
    /* scored tokens 0 and 1 are t0[3], t0[4]; t0[5] is scored token 2 */
    for (int i = 0; i < 2; i++)
        cr_expect_float_eq(o.logprob[i], lp[i], 1e-6, "scored token %d", i);
    cr_expect(o.logprob[2] != lp[2] && o.logprob[5] != lp[5]);
    cr_expect_float_eq(o.value[0], val, 1e-6);
    free(img);
    model_free(m);
}

Test(model, rejects_bad_batches)
{
    model_config c = micro_config();
    model *m = new_model(&c, 41, 0);
    int32_t toks[30] = {0};
    err e = {0};
    model_seq s = {NULL, toks, 3, 1};
    model_batch b = {&s, 1, 1.0f};
    toks[1] = 13;
    cr_expect_eq(model_forward(m, &b, NULL, &e), GTRT_EINVAL);
    cr_expect(strstr(e.msg, "vocabulary") != NULL, "%s", e.msg);
    toks[1] = -1;
    cr_expect_eq(model_forward(m, &b, NULL, &e), GTRT_EINVAL);
    toks[1] = 0;
    s.n_prompt = 0;
    cr_expect_eq(model_forward(m, &b, NULL, &e), GTRT_EINVAL);
    s.n_prompt = 4;
    cr_expect_eq(model_forward(m, &b, NULL, &e), GTRT_EINVAL);
    s.n_prompt = 1;
    s.n_tokens = 21; /* max_text is 24 - 4 = 20 */
    cr_expect_eq(model_forward(m, &b, NULL, &e), GTRT_ERANGE);
    s.n_tokens = 20;
    cr_expect_eq(model_forward(m, &b, NULL, &e), 0, "%s", e.msg);
    float img[192] = {0};
    s.image = img; /* 4 patches + 20 tokens = 24 = max_seq: still fits */
    cr_expect_eq(model_forward(m, &b, NULL, &e), 0, "%s", e.msg);
    b.n_seq = 0;
    cr_expect_eq(model_forward(m, &b, NULL, &e), GTRT_EINVAL);
    model_free(m);
}

Test(model, presets_and_config_checks)
{
    const char *names[3] = {"tiny", "small", "base"};
    size_t prev = 0;
    for (int i = 0; i < 3; i++) {
        model_config c;
        err e = {0};
        cr_assert_eq(model_config_preset(names[i], &c, &e), 0, "%s", e.msg);
        cr_expect_eq(model_config_check(&c, &e), 0, "%s", e.msg);
        cr_expect_eq(model_config_n_patches(&c), 32);
        size_t n = model_config_n_params(&c);
        fprintf(stderr, "preset %-5s d=%d L=%d H=%d: %zu parameters\n", names[i], c.d_model,
                c.n_layer, c.n_head, n);
        cr_expect(n > prev);
        prev = n;
    }
    model_config c;
    err e = {0};
    cr_expect_eq(model_config_preset("huge", &c, &e), GTRT_EINVAL);
    cr_expect(strstr(e.msg, "huge") != NULL);
    cr_assert_eq(model_config_preset("tiny", &c, &e), 0);
    c.n_head = 5;
    cr_expect_eq(model_config_check(&c, &e), GTRT_EINVAL);
    cr_assert_eq(model_config_preset("tiny", &c, &e), 0);
    c.image_w = 60;
    cr_expect_eq(model_config_check(&c, &e), GTRT_EINVAL);
    cr_assert_eq(model_config_preset("tiny", &c, &e), 0);
    c.max_seq = 32;
    cr_expect_eq(model_config_check(&c, &e), GTRT_EINVAL);
}

Test(model, parameter_table_tiles_the_flat_vector)
{
    model_config c = micro_config();
    model *m = new_model(&c, 51, 0);
    size_t at = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        cr_expect_eq(m->tensors[i].offset, at, "%s", m->tensors[i].name);
        at += m->tensors[i].numel;
    }
    cr_expect_eq(at, m->n_params);
    cr_expect_not_null(model_tensor_find(m, "blocks.1.attn.qkv.weight"));
    const model_tensor *t = model_tensor_find(m, "blocks.0.mlp.fc.weight");
    cr_assert_not_null(t);
    cr_expect(t->shape[0] == 64 && t->shape[1] == 16 && t->decay);
    cr_expect(!model_tensor_find(m, "ln_f.bias")->decay);
    optim_range rg[64];
    int n = model_decay_ranges(m, rg);
    size_t decayed = 0;
    for (int i = 0; i < n; i++)
        decayed += rg[i].count;
    size_t want = 0;
    for (int i = 0; i < m->n_tensors; i++)
        want += m->tensors[i].decay ? m->tensors[i].numel : 0;
    cr_expect_eq(decayed, want);
    model_free(m);
}

/* ==== checkpoints ==== */

Test(model, checkpoint_round_trip_and_mismatch)
{
    model_config c = micro_config();
    model *m = new_model(&c, 61, 0.1f);
    char dir[] = "/tmp/gtrt_model_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256], path2[256];
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    snprintf(path2, sizeof path2, "%s/other.safetensors", dir);
    err e = {0};
    cr_assert_eq(model_save(m, path, &e), 0, "%s", e.msg);
    model *m2;
    cr_assert_eq(model_load(path, &m2, &e), 0, "%s", e.msg);
    cr_expect_eq(memcmp(&m2->cfg, &m->cfg, sizeof c), 0);
    cr_expect_eq(memcmp(m2->params, m->params, sizeof(float) * m->n_params), 0);
    model_config cc;
    cr_assert_eq(model_config_load(path, &cc, &e), 0, "%s", e.msg);
    cr_expect_eq(cc.d_model, 16);
    /* extra metadata travels along; reserved keys are refused */
    st_kv extra[2] = {{"policy_version", "17"}, {"vocab_hash", "abc"}};
    cr_assert_eq(model_save_with(m, path2, extra, 2, &e), 0, "%s", e.msg);
    st_file *sf;
    cr_assert_eq(st_open(path2, &sf, &e), 0, "%s", e.msg);
    cr_expect_str_eq(st_meta(sf, "policy_version"), "17");
    cr_expect_str_eq(st_meta(sf, "d_model"), "16");
    st_close(sf);
    st_kv bad[1] = {{"d_model", "3"}};
    cr_expect_eq(model_save_with(m, path2, bad, 1, &e), GTRT_EINVAL);

    /* A different config is refused and leaves the weights alone. */
    model_config c3 = c;
    c3.vocab_size = 14;
    model *m3 = new_model(&c3, 62, 0);
    cr_assert_eq(model_save(m3, path2, &e), 0, "%s", e.msg);
    float first = m2->params[0];
    cr_expect_eq(model_load_into(m2, path2, &e), GTRT_EINVAL);
    cr_expect(strstr(e.msg, path2) != NULL, "%s", e.msg);
    cr_expect_eq(m2->params[0], first);
    /* Load from memory, as after a network transfer. */
    FILE *fp = fopen(path, "rb");
    cr_assert_not_null(fp);
    static unsigned char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    memset(m2->params, 0, sizeof(float) * m2->n_params);
    cr_assert_eq(model_load_buffer(m2, buf, n, "net", &e), 0, "%s", e.msg);
    cr_expect_eq(memcmp(m2->params, m->params, sizeof(float) * m->n_params), 0);
    cr_expect_neq(model_load_buffer(m2, buf, n - 4, "net", &e), 0);
    cr_expect(strstr(e.msg, "net") == e.msg, "%s", e.msg);
    model_free(m3);
    model_free(m2);
    model_free(m);
    unlink(path);
    unlink(path2);
    rmdir(dir);
}

Test(model, prefill_then_forward_is_consistent)
{
    /* The model's buffers are shared by prefill and forward: a forward right
     * after a prefill (and vice versa) must not see stale layout. */
    model_config c = micro_config();
    model *m = new_model(&c, 71, 0.05f);
    int32_t t[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    model_seq s = {NULL, t, 8, 4};
    model_batch b = {&s, 1, 1.0f};
    model_out o;
    err e = {0};
    cr_assert_eq(model_forward(m, &b, &o, &e), 0);
    float lp0 = o.logprob[0];
    model_kv *kv;
    cr_assert_eq(model_kv_new(&c, 3, &kv, &e), 0);
    model_seq ps[3] = {{NULL, t, 2, 2}, {NULL, t, 8, 8}, {NULL, t, 5, 5}};
    float lg[3 * 13], val[3];
    cr_assert_eq(model_forward(m, &b, &o, &e), 0);
    cr_expect_eq(model_backward(m, NULL, NULL, NULL, NULL, &e), GTRT_ESTATE, "no zero_grad yet");
    cr_assert_eq(model_prefill(m, kv, ps, 3, lg, val, &e), 0);
    cr_assert_eq(model_zero_grad(m, &e), 0);
    cr_expect_eq(model_backward(m, NULL, NULL, NULL, NULL, &e), GTRT_ESTATE,
                 "a prefill is not a forward to backpropagate");
    cr_assert_eq(model_forward(m, &b, &o, &e), 0);
    cr_expect_eq(o.logprob[0], lp0);
    cr_assert_eq(model_zero_grad(m, &e), 0);
    cr_assert_eq(o.n_scored, 4);
    float ones[4] = {1, 1, 1, 1};
    cr_assert_eq(model_backward(m, ones, NULL, NULL, NULL, &e), 0, "%s", e.msg);
    model_kv_free(kv);
    model_free(m);
}
