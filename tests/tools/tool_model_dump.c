/* Writes a model, a batch and the C model's results on it, for the PyTorch
 * cross-check (tests/python/test_torch_model.py).
 *
 * Usage: tool_model_dump OUTDIR [PRESET]
 * OUTDIR/model.safetensors  the weights (a normal checkpoint)
 * OUTDIR/batch.safetensors  images, tokens, per-sequence layout, temperature
 *                           and the coefficients of the test loss
 * OUTDIR/out.safetensors    logits, logprob, entropy, value, loss and
 *                           "grad.<name>" for every parameter
 * The test loss is L = sum_r a_r logprob_r + c_r entropy_r + <g_r, logits_r>
 *                    + sum_b w_b value_b
 * which touches every output the learner will differentiate. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/model.h"
#include "common/safetensors.h"

enum { B = 4 };

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s OUTDIR [tiny|small|base]\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1], *preset = argc > 2 ? argv[2] : "tiny";
    err e = {0};
    model_config c;
    if (model_config_preset(preset, &c, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    c.vocab_size = 61;
    model *m;
    if (model_new(&c, &m, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    rng r;
    rng_init(&r, 2024);
    model_init_random(m, &r);
    /* Perturb everything so no parameter (norm gains, biases) sits at its
     * initial special value. */
    for (size_t i = 0; i < m->n_params; i++)
        m->params[i] += 0.05f * (float)rng_normal(&r);

    /* Variable lengths: image + prompt + response, text only, prompt only
     * (value, nothing scored), and a one-token prompt with a long answer. */
    const int has_img[B] = {1, 0, 1, 1}, n_tok[B] = {20, 12, 30, 40}, n_prompt[B] = {8, 5, 30, 1};
    size_t img_n = (size_t)c.image_c * c.image_h * c.image_w;
    float *imgs = malloc(sizeof(float) * img_n * B);
    int32_t tokens[200], info[B * 4];
    model_seq seqs[B];
    int n_images = 0, at = 0;
    for (int b = 0; b < B; b++) {
        float *img = NULL;
        if (has_img[b]) {
            img = imgs + img_n * (size_t)n_images;
            for (size_t i = 0; i < img_n; i++)
                img[i] = rng_float(&r);
        }
        for (int t = 0; t < n_tok[b]; t++)
            tokens[at + t] = (int32_t)rng_below(&r, (uint64_t)c.vocab_size);
        info[b * 4 + 0] = has_img[b] ? n_images : -1;
        info[b * 4 + 1] = n_tok[b];
        info[b * 4 + 2] = n_prompt[b];
        info[b * 4 + 3] = at;
        seqs[b] = (model_seq){img, tokens + at, n_tok[b], n_prompt[b]};
        n_images += has_img[b];
        at += n_tok[b];
    }
    const float temperature = 0.7f;
    model_batch batch = {seqs, B, temperature};
    model_out o;
    if (model_forward(m, &batch, &o, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    int R = o.n_scored, V = c.vocab_size;
    float *a = malloc(sizeof(float) * R), *cc = malloc(sizeof(float) * R);
    float *g = malloc(sizeof(float) * (size_t)R * V), w[B];
    for (int i = 0; i < R; i++) {
        a[i] = (float)rng_normal(&r);
        cc[i] = (float)rng_normal(&r);
    }
    for (int i = 0; i < R * V; i++)
        g[i] = 0.1f * (float)rng_normal(&r);
    for (int i = 0; i < B; i++)
        w[i] = (float)rng_normal(&r);
    double L = 0;
    for (int i = 0; i < R; i++) {
        L += (double)a[i] * o.logprob[i] + (double)cc[i] * o.entropy[i];
        for (int v = 0; v < V; v++)
            L += (double)g[(size_t)i * V + v] * o.logits[(size_t)i * V + v];
    }
    for (int i = 0; i < B; i++)
        L += (double)w[i] * o.value[i];
    float loss = (float)L;
    if (model_zero_grad(m, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    if (model_backward(m, a, cc, w, g, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }

    char path[4096], tstr[32];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (model_save(m, path, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    snprintf(tstr, sizeof tstr, "%.9g", (double)temperature);
    st_kv bmeta[1] = {{"temperature", tstr}};
    st_entry be[7] = {
        {"images", ST_F32, 4, {n_images, c.image_c, c.image_h, c.image_w}, imgs},
        {"tokens", ST_I32, 1, {at}, tokens},
        {"seqs", ST_I32, 2, {B, 4}, info},
        {"coef.logprob", ST_F32, 1, {R}, a},
        {"coef.entropy", ST_F32, 1, {R}, cc},
        {"coef.logits", ST_F32, 2, {R, V}, g},
        {"coef.value", ST_F32, 1, {B}, w},
    };
    snprintf(path, sizeof path, "%s/batch.safetensors", dir);
    if (st_write(path, be, 7, bmeta, 1, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    int n_out = 5 + m->n_tensors;
    st_entry *oe = calloc((size_t)n_out, sizeof *oe);
    char(*names)[64] = calloc((size_t)m->n_tensors, 64);
    oe[0] = (st_entry){"logits", ST_F32, 2, {R, V}, o.logits};
    oe[1] = (st_entry){"logprob", ST_F32, 1, {R}, o.logprob};
    oe[2] = (st_entry){"entropy", ST_F32, 1, {R}, o.entropy};
    oe[3] = (st_entry){"value", ST_F32, 1, {B}, o.value};
    oe[4] = (st_entry){"loss", ST_F32, 1, {1}, &loss};
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
        snprintf(names[i], 64, "grad.%s", t->name);
        oe[5 + i] = (st_entry){names[i], ST_F32, t->ndim, {t->shape[0], t->shape[1]},
                               m->grads + t->offset};
    }
    snprintf(path, sizeof path, "%s/out.safetensors", dir);
    if (st_write(path, oe, n_out, NULL, 0, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    printf("wrote %s: %zu parameters, %d sequences, %d scored tokens, loss %.6f\n", dir,
           m->n_params, B, R, (double)loss);
    free(oe);
    free(names);
    free(a);
    free(cc);
    free(g);
    free(imgs);
    model_free(m);
    return 0;
}
