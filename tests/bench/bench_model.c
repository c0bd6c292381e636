/* Benchmark of the policy model on this machine: for each preset, OpenBLAS
 * sgemm GFLOP/s measured here (the ceiling), the training step (forward,
 * backward, AdamW) in tokens/s and GFLOP/s, KV-cache sampling in tokens/s,
 * peak RSS against the memory the config implies, and the same training
 * step and sampling loop in PyTorch (tests/bench/bench_model_torch.py) with
 * the ratio. Prints figures; never fails on a number.
 *
 * Usage: bench_model [PRESET...] [--no-torch] [--seconds S]
 * Each preset runs in its own process so that peak RSS is per preset.
 * Threads: OpenBLAS's default (all cores) unless OPENBLAS_NUM_THREADS is set;
 * PyTorch gets the same count. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_util.h"
#include "common/model.h"
#include "common/optim.h"
#include "common/sample.h"

/* The batch: 16 turns of image (32 patches) + 40 prompt + 60 answer tokens,
 * about one PPO minibatch of Points24 turns (DESIGN §3). */
enum { BATCH = 16, PROMPT = 40, ANSWER = 60, SAMPLE_NEW = 64 };

static double sgemm_gflops(int M, int N, int K, double seconds)
{
    float *a = malloc(sizeof(float) * (size_t)M * K), *b = malloc(sizeof(float) * (size_t)N * K);
    float *c = malloc(sizeof(float) * (size_t)M * N);
    for (size_t i = 0; i < (size_t)M * K; i++)
        a[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)N * K; i++)
        b[i] = (float)(i % 5) * 0.1f;
    /* the same call shape as matmul_forward: C = A B^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
    /* Best of several short runs: on a shared machine the best run is the
     * closest to what the hardware can do, and the model's figures below are
     * best-of too, so the fraction compares like with like. */
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        int it = 0;
        double t0 = bench_now(), t;
        do {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f,
                        c, N);
            it++;
        } while ((t = bench_now() - t0) < seconds / 5);
        double gf = 2.0 * M * N * K * it / t / 1e9;
        best = gf > best ? gf : best;
    }
    free(a);
    free(b);
    free(c);
    return best;
}

static long peak_rss_kib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* Run the PyTorch twin; parse "train_tok_s=X sample_tok_s=Y". */
static int torch_figures(const char *preset, int threads, double *train, double *sample)
{
    char script[4096];
    const char *src = getenv("GTRT_SOURCE_DIR");
    if (src)
        snprintf(script, sizeof script, "%s/tests/bench/bench_model_torch.py", src);
    else {
        /* CMake compiles with absolute paths: the script sits next to us. */
        snprintf(script, sizeof script, "%s", __FILE__);
        char *slash = strrchr(script, '/');
        if (!slash)
            return -1;
        snprintf(slash + 1, sizeof script - (size_t)(slash + 1 - script), "bench_model_torch.py");
    }
    if (access(script, R_OK) != 0)
        return -1;
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s --preset %s --threads %d --batch %d --prompt %d --answer %d "
             "--new %d 2>&1",
             script, preset, threads, BATCH, PROMPT, ANSWER, SAMPLE_NEW);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char line[1024];
    int got = 0;
    while (fgets(line, sizeof line, p)) {
        if (sscanf(line, "train_tok_s=%lf sample_tok_s=%lf", train, sample) == 2)
            got = 1;
        else if (!got)
            fprintf(stderr, "  torch: %s", line);
    }
    pclose(p);
    return got ? 0 : -1;
}

static int run_preset(const char *preset, double seconds, int with_torch)
{
    err e = {0};
    model_config c;
    if (model_config_preset(preset, &c, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    c.vocab_size = 256;
    model *m;
    if (model_new(&c, &m, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    rng r;
    rng_init(&r, 1);
    model_init_random(m, &r);
    int threads = openblas_get_num_threads(), d = c.d_model;
    int np = model_config_n_patches(&c), T = np + PROMPT + ANSWER;
    printf("== %s: d=%d layers=%d heads=%d vocab=%d, %.2f M parameters, OpenBLAS threads %d\n",
           preset, d, c.n_layer, c.n_head, c.vocab_size, (double)m->n_params / 1e6, threads);

    /* ceiling: sgemm at the shape of the MLP's first matmul, and square */
    double ceil_mlp = sgemm_gflops(BATCH * T, 4 * d, d, 0.5);
    double ceil_sq = sgemm_gflops(1024, 1024, 1024, 0.5);
    double ceiling = ceil_mlp > ceil_sq ? ceil_mlp : ceil_sq;
    printf("  sgemm ceiling: %.1f GFLOP/s at %dx%dx%d, %.1f GFLOP/s at 1024^3\n", ceil_mlp,
           BATCH * T, 4 * d, d, ceil_sq);

    size_t img_n = (size_t)c.image_c * c.image_h * c.image_w;
    float *imgs = malloc(sizeof(float) * img_n * BATCH);
    for (size_t i = 0; i < img_n * BATCH; i++)
        imgs[i] = rng_float(&r);
    int32_t *toks = malloc(sizeof(int32_t) * BATCH * (PROMPT + ANSWER));
    for (int i = 0; i < BATCH * (PROMPT + ANSWER); i++)
        toks[i] = (int32_t)rng_below(&r, (uint64_t)c.vocab_size);
    model_seq seqs[BATCH];
    for (int b = 0; b < BATCH; b++)
        seqs[b] = (model_seq){imgs + img_n * b, toks + b * (PROMPT + ANSWER), PROMPT + ANSWER,
                              PROMPT};
    model_batch batch = {seqs, BATCH, 0.2f};
    optim *o;
    if (bench_optim(m, &o, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    float *dlp = malloc(sizeof(float) * BATCH * ANSWER), *dent = malloc(sizeof(float) * BATCH * ANSWER);
    float dval[BATCH];
    for (int i = 0; i < BATCH * ANSWER; i++) {
        dlp[i] = -1.0f / (BATCH * ANSWER);
        dent[i] = -0.01f / (BATCH * ANSWER);
    }
    for (int b = 0; b < BATCH; b++)
        dval[b] = 0.1f;

    /* ---- training step ---- */
    double t_f = 0, t_b = 0, t_o = 0, best_f = 1e30, best_b = 1e30, best_step = 1e30;
    int steps = 0;
    for (int it = -1; it < 3 || t_f + t_b + t_o < seconds; it++) {
        model_out out;
        double t0 = bench_now();
        if (model_forward(m, &batch, &out, &e)) {
            fprintf(stderr, "%s\n", e.msg);
            return 1;
        }
        double t1 = bench_now();
        model_zero_grad(m, &e);
        model_backward(m, dlp, dent, dval, NULL, &e);
        double t2 = bench_now();
        optim_step(o, m->params, m->grads);
        double t3 = bench_now();
        if (it >= 0) { /* the first step allocates; not timed */
            t_f += t1 - t0;
            t_b += t2 - t1;
            t_o += t3 - t2;
            steps++;
            best_f = t1 - t0 < best_f ? t1 - t0 : best_f;
            best_b = t2 - t1 < best_b ? t2 - t1 : best_b;
            best_step = t3 - t0 < best_step ? t3 - t0 : best_step;
        }
    }
    double ntok = (double)BATCH * T, fl = model_forward_flops(&c, &batch);
    double step_s = (t_f + t_b + t_o) / steps;
    printf("  model FLOPs: %.2f MFLOP/token forward, %.2f MFLOP/token training (x3)\n",
           fl / ntok / 1e6, 3 * fl / ntok / 1e6);
    printf("  (mean of %d steps / best step)\n", steps);
    printf("  forward  %8.0f / %8.0f tok/s %6.1f / %6.1f GFLOP/s\n", ntok * steps / t_f,
           ntok / best_f, fl * steps / t_f / 1e9, fl / best_f / 1e9);
    printf("  backward %8.0f / %8.0f tok/s %6.1f / %6.1f GFLOP/s\n", ntok * steps / t_b,
           ntok / best_b, 2 * fl * steps / t_b / 1e9, 2 * fl / best_b / 1e9);
    printf("  adamw    %.1f ms\n", 1e3 * t_o / steps);
    double train_tps = ntok / best_step, train_gf = 3 * fl / best_step / 1e9;
    printf("  training step %8.0f / %8.0f tok/s %6.1f / %6.1f GFLOP/s = %.0f%% of the sgemm "
           "ceiling (best)\n",
           ntok / step_s, train_tps, 3 * fl / step_s / 1e9, train_gf, 100 * train_gf / ceiling);

    long rss = peak_rss_kib();
    double est = (double)sizeof(float) * 4 * m->n_params +
                 (double)model_activation_bytes(&c, BATCH * T, BATCH, T, BATCH * ANSWER);
    printf("  memory: peak RSS %.1f MiB; params+grads+moments+activations %.1f MiB (ratio %.2f)\n",
           rss / 1024.0, est / (1 << 20), rss * 1024.0 / est);

    /* ---- sampling with the KV cache ---- */
    sampler *s;
    if (sample_new(&c, BATCH, &s, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    model_seq prompts[BATCH];
    for (int b = 0; b < BATCH; b++)
        prompts[b] = (model_seq){imgs + img_n * b, toks + b * (PROMPT + ANSWER), PROMPT, PROMPT};
    sample_config sc = {.temperature = 1.0f, .top_k = 5, .max_new = SAMPLE_NEW, .end_token = -1};
    sample_result res[BATCH];
    double t_s = 0, best_s = 1e30;
    long n_gen = 0;
    int runs = 0;
    for (int it = -1; it < 2 || t_s < seconds; it++) {
        double t0 = bench_now();
        if (sample_run(s, m, prompts, BATCH, &sc, &r, res, &e)) {
            fprintf(stderr, "%s\n", e.msg);
            return 1;
        }
        double t1 = bench_now();
        if (it >= 0) {
            t_s += t1 - t0;
            best_s = t1 - t0 < best_s ? t1 - t0 : best_s;
            runs++;
            for (int b = 0; b < BATCH; b++)
                n_gen += res[b].n;
        }
    }
    /* prefill alone, to split the time */
    model_kv *kv;
    model_kv_new(&c, BATCH, &kv, &e);
    double t0 = bench_now();
    model_prefill(m, kv, prompts, BATCH, NULL, NULL, &e);
    double t_pf = bench_now() - t0;
    model_kv_free(kv);
    double sample_tps = (double)n_gen / runs / best_s;
    printf("  sampling %d x %d new tokens (prompt %d+%d): %8.0f / %8.0f tok/s (prefill %.1f ms)\n",
           BATCH, SAMPLE_NEW, np, PROMPT, n_gen / t_s, sample_tps, 1e3 * t_pf);

    if (with_torch) {
        double tt, ts;
        fflush(stdout);
        if (torch_figures(preset, threads, &tt, &ts) == 0)
            printf("  pytorch (best): training %8.0f tok/s, sampling %8.0f tok/s -> gtrt is "
                   "%.2fx (train), %.2fx (sample)\n",
                   tt, ts, train_tps / tt, sample_tps / ts);
        else
            printf("  pytorch: unavailable\n");
    }
    fflush(stdout);
    sample_free(s);
    optim_free(o);
    free(dlp);
    free(dent);
    free(imgs);
    free(toks);
    model_free(m);
    return 0;
}

int main(int argc, char **argv)
{
    const char *presets[8];
    int n = 0, with_torch = 1, child = 0;
    double seconds = 3.0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--no-torch") == 0)
            with_torch = 0;
        else if (strcmp(argv[i], "--child") == 0)
            child = 1;
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (n < 8)
            presets[n++] = argv[i];
    }
    if (child)
        return run_preset(presets[0], seconds, with_torch);
    if (n == 0) {
        presets[n++] = "tiny";
        presets[n++] = "small";
        presets[n++] = "base";
    }
    char secs[32];
    snprintf(secs, sizeof secs, "%g", seconds);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            execl("/proc/self/exe", argv[0], "--child", presets[i], "--seconds", secs,
                  with_torch ? "--seconds" : "--no-torch", with_torch ? secs : NULL, (char *)NULL);
            _exit(127);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        rc |= !WIFEXITED(st) || WEXITSTATUS(st) != 0;
    }
    return rc;
}
