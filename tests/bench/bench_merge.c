/* Benchmark of the teacher's checkpoint merge on this machine: one
 * incremental TIES merge (the previous teacher plus one new checkpoint,
 * density 0.8, the steady state of the teacher service) over a
 * transformer-shaped parameter set, against a plain memcpy of the same
 * parameters; also linear and the two-checkpoint TIES merge. Figures are
 * time and GB/s of parameters (4 bytes per float of one set per second);
 * the target is TIES within 4x of memcpy. Prints figures; never fails on a
 * number.
 *
 * Usage: bench_merge [MILLION_FLOATS] (default 64: 256 MB per set; memory
 * used is about 4x that: base, teacher, checkpoints, scratch). Single
 * thread, as the teacher service runs its merge off its loop on one.
 * Times are the best of a few runs, in thread CPU time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/model.h"
#include "common/rng.h"
#include "teacher/merge.h"

/* Thread CPU time: on a shared machine it is steadier than the wall clock
 * and still counts the page faults and memory stalls of the merge itself. */
static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Transformer-like tensors (d = 1024, vocab 8192): embeddings, then per
 * layer qkv, proj, two MLP matrices, biases and norms, until `target`
 * floats are reached. Returns the number of tensors written to spec. */
static int bench_layout(size_t target, merge_spec *spec, char (*names)[48], int cap)
{
    const int64_t d = 1024;
    int n = 0;
    size_t total = 0;
#define ADD(nm, r, c)                                                                   \
    do {                                                                                \
        snprintf(names[n], 48, "%s", nm);                                               \
        spec[n] = (merge_spec){.name = names[n], .ndim = (c) ? 2 : 1, .shape = {r, c}}; \
        total += (size_t)(r) * (size_t)((c) ? (c) : 1);                                 \
        n++;                                                                            \
    } while (0)
    ADD("tok_emb.weight", 8192, d);
    for (int l = 0; total < target && n + 8 <= cap; l++) {
        char nm[48];
        const char *parts[8] = {"attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
                                "ln1.weight", "mlp.fc.weight", "mlp.fc.bias", "mlp.proj.weight",
                                "ln2.weight"};
        const int64_t rows[8] = {3 * d, 3 * d, d, d, 4 * d, 4 * d, d, d};
        const int64_t cols[8] = {d, 0, d, 0, d, 0, 4 * d, 0};
        for (int p = 0; p < 8; p++) {
            snprintf(nm, sizeof nm, "blocks.%d.%s", l, parts[p]);
            ADD(nm, rows[p], cols[p]);
        }
    }
#undef ADD
    return n;
}

static void bench_fill(merge_tset *ts, rng *r, const merge_tset *around, float scale)
{
    for (size_t i = 0; i < ts->numel; i++)
        ts->data[i] = (around ? around->data[i] : 0.0f) + scale * (rng_float(r) - 0.5f);
}

static double bench_memcpy(float *dst, const float *src, size_t n)
{
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now();
        memcpy(dst, src, n * sizeof(float));
        double t = now() - t0;
        best = t < best ? t : best;
    }
    return best;
}

/* Best time of merge_run over `reps` incremental merges of `k` copies of
 * `ck` into a merger that has already merged once (so its scratch is warm
 * and the previous teacher has a non-zero weight, as in steady state). */
static double bench_merge(const merge_opts *o, const merge_tset *base, const merge_tset *ck,
                          int k, int reps)
{
    err e = {0};
    merge_tset *b, *c;
    merger *m = NULL;
    if (merge_tset_clone(base, &b, &e) || merge_new(o, b, &m, &e))
        goto fail;
    double best = 1e30;
    for (int rep = -1; rep < reps; rep++) {
        for (int i = 0; i < k; i++)
            if (merge_tset_clone(ck, &c, &e) || merge_add(m, c, "bench", &e))
                goto fail;
        double t0 = now();
        if (merge_run(m, &e))
            goto fail;
        double t = now() - t0;
        best = rep >= 0 && t < best ? t : best;
    }
    merge_free(m);
    return best;
fail:
    fprintf(stderr, "bench_merge: %s\n", e.msg);
    merge_free(m);
    return -1;
}

static void bench_report(const char *what, double t, size_t n, double t_copy)
{
    double gb = (double)n * sizeof(float) / 1e9;
    printf("%-44s %8.1f ms %7.2f GB/s  %5.2fx memcpy\n", what, 1e3 * t, gb / t, t / t_copy);
}

int main(int argc, char **argv)
{
    size_t target = (size_t)((argc > 1 ? atof(argv[1]) : 64.0) * 1e6);
    enum { CAP = 4096 };
    merge_spec *spec = calloc(CAP, sizeof *spec);
    char(*names)[48] = calloc(CAP, sizeof *names);
    int nt = bench_layout(target, spec, names, CAP);
    merge_tset *base, *ck, *copy;
    err e = {0};
    if (merge_tset_new(spec, nt, &base, &e) || merge_tset_new(spec, nt, &ck, &e) ||
        merge_tset_new(spec, nt, &copy, &e)) {
        fprintf(stderr, "bench_merge: %s\n", e.msg);
        return 1;
    }
    rng r;
    rng_init(&r, 7);
    bench_fill(base, &r, NULL, 0.1f);
    bench_fill(ck, &r, base, 0.01f);
    model_config mc;
    size_t base_preset = model_config_preset("base", &mc, NULL) == 0 ? model_config_n_params(&mc)
                                                                     : 0;
    printf("merge benchmark: %d tensors, %zu floats (%.0f MB per set; the `base` model preset "
           "has %zu), 1 thread\n",
           nt, base->numel, base->numel * 4.0 / 1e6, base_preset);

    double t_copy = bench_memcpy(copy->data, base->data, base->numel);
    bench_report("memcpy", t_copy, base->numel, t_copy);
    merge_tset_free(copy);

    merge_opts o;
    merge_opts_default(&o);
    bench_report("TIES d=0.8, teacher + 1 checkpoint", bench_merge(&o, base, ck, 1, 3),
                 base->numel, t_copy);
    bench_report("TIES d=0.8, teacher + 2 checkpoints", bench_merge(&o, base, ck, 2, 2),
                 base->numel, t_copy);
    o.density = 1.0;
    bench_report("TIES d=1 (no trimming), teacher + 1", bench_merge(&o, base, ck, 1, 3),
                 base->numel, t_copy);
    o.combine = MERGE_LINEAR;
    bench_report("linear, teacher + 1 checkpoint", bench_merge(&o, base, ck, 1, 3), base->numel,
                 t_copy);

    merge_tset_free(base);
    merge_tset_free(ck);
    free(spec);
    free(names);
    return 0;
}
