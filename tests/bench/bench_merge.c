/* Benchmark of the teacher's checkpoint merge on this machine: what the
 * teacher service does per announced checkpoint (merge_add, which checks
 * the checkpoint and, for TIES, finds its trimming thresholds, then
 * merge_run, which folds it into the teacher; the steady state: the teacher
 * has merged before and the checkpoints differ), against a plain memcpy of
 * one checkpoint. Also merge_run alone, two checkpoints at once, TIES
 * without trimming and linear, with 1 and 2 threads.
 *
 * Each repetition times a memcpy of one set and then the merge, so that on
 * a shared machine both meet the same load. Figures per line: median and
 * best wall time; GB/s of parameters (one set of 4-byte floats per
 * second); the sets the merge reads and writes (TIES: merge_add reads the
 * checkpoint and the base, merge_run reads teacher, checkpoint and base and
 * writes the teacher: 6; memcpy reads one and writes one: 2) and that
 * traffic in GB/s; and the median over repetitions of the merge's time
 * over its memcpy's. Prints figures; never fails on a number.
 *
 * Usage: bench_merge [-r REPS] [-t THREADS,...] [-s SIMD] [LAYOUT]
 * LAYOUT: a model preset (tiny, small, base: its real tensors; default
 * base) or a number of million floats (transformer-shaped tensors, d 1024).
 * SIMD: avx512, avx2 or portable (default: the widest this CPU runs).
 * Memory: about 10 sets. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/model.h"
#include "common/rng.h"
#include "teacher/merge.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ==== layouts ==== */

typedef struct bench_layout {
    int n;
    merge_spec *spec;
    char (*names)[48];
} bench_layout;

static void bench_add(bench_layout *l, const char *name, int64_t r, int64_t c)
{
    snprintf(l->names[l->n], 48, "%s", name);
    l->spec[l->n] = (merge_spec){.name = l->names[l->n], .ndim = c ? 2 : 1, .shape = {r, c}};
    l->n++;
}

/* Transformer-like tensors (d = 1024, vocab 8192): embeddings, then per
 * layer qkv, proj, two MLP matrices, biases and norms, until `target`
 * floats are reached. */
static void bench_layout_synthetic(bench_layout *l, size_t target, int cap)
{
    const int64_t d = 1024;
    const char *parts[8] = {"attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "ln1.weight",
                            "mlp.fc.weight",   "mlp.fc.bias",   "mlp.proj.weight",  "ln2.weight"};
    const int64_t rows[8] = {3 * d, 3 * d, d, d, 4 * d, 4 * d, d, d};
    const int64_t cols[8] = {d, 0, d, 0, d, 0, 4 * d, 0};
    size_t total = 8192 * (size_t)d;
    bench_add(l, "tok_emb.weight", 8192, d);
    for (int layer = 0; total < target && l->n + 8 <= cap; layer++) {
        for (int p = 0; p < 8; p++) {
            char nm[48];
            snprintf(nm, sizeof nm, "blocks.%d.%s", layer, parts[p]);
            bench_add(l, nm, rows[p], cols[p]);
            total += (size_t)rows[p] * (size_t)(cols[p] ? cols[p] : 1);
        }
    }
}

/* The tensors of a real model preset. */
static int bench_layout_preset(bench_layout *l, const char *preset, int cap)
{
    model_config mc;
    model *m;
    err e = {0};
    if (model_config_preset(preset, &mc, &e) || model_new(&mc, &m, &e)) {
        fprintf(stderr, "bench_merge: %s\n", e.msg);
        return -1;
    }
    for (int i = 0; i < m->n_tensors && l->n < cap; i++) {
        const model_tensor *t = &m->tensors[i];
        bench_add(l, t->name, t->shape[0], t->ndim > 1 ? t->shape[1] : 0);
    }
    model_free(m);
    return 0;
}

static void bench_fill(merge_tset *ts, rng *r, const merge_tset *around, float scale)
{
    for (size_t i = 0; i < ts->numel; i++)
        ts->data[i] = (around ? around->data[i] : 0.0f) + scale * (rng_float(r) - 0.5f);
}

/* ==== measurements ==== */

static int bench_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double bench_median(const double *t, int n)
{
    double s[64];
    memcpy(s, t, sizeof *t * (size_t)n);
    qsort(s, (size_t)n, sizeof *s, bench_cmp);
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

static double bench_min(const double *t, int n)
{
    double m = t[0];
    for (int i = 1; i < n; i++)
        m = t[i] < m ? t[i] : m;
    return m;
}

typedef struct bench_case {
    const char *what;
    merge_combine combine;
    double density;
    int k;       /* checkpoints per merge */
    double sets; /* sets read + written per merge (add + run) */
    double sets_run;
} bench_case;

/* One line's repetitions: memcpy of one set, then the merge, in turns, so
 * both meet the same load on a shared machine. */
typedef struct bench_times {
    double copy[64], all[64], run[64];
} bench_times;

enum { BENCH_NCK = 3 };

/* `reps` steady-state merges: k checkpoints added (copying them in is not
 * timed: that is the loading) and merged into a teacher that has merged
 * once already; the checkpoints take turns, so the teacher is never one of
 * them. run gets merge_run alone. */
static int bench_merge(const bench_case *c, int threads, const merge_tset *base,
                       merge_tset *const *ck, merge_tset *copy, int reps, bench_times *bt)
{
    err e = {0};
    merge_tset *b = NULL, *cp;
    merger *m = NULL;
    merge_opts o;
    merge_opts_default(&o);
    o.combine = c->combine;
    o.density = c->density;
    if (merge_tset_clone(base, &b, &e) || merge_new(&o, b, &m, &e))
        goto fail;
    b = NULL;
    if (merge_set_threads(m, threads, &e))
        goto fail;
    for (int rep = -1; rep < reps; rep++) {
        double t0 = now();
        memcpy(copy->data, base->data, base->numel * sizeof(float));
        double t_copy = now() - t0, t_add = 0.0;
        for (int i = 0; i < c->k; i++) {
            if (merge_tset_clone(ck[(rep + 1 + i) % BENCH_NCK], &cp, &e))
                goto fail;
            t0 = now();
            if (merge_add(m, cp, "bench", &e)) {
                merge_tset_free(cp);
                goto fail;
            }
            t_add += now() - t0;
        }
        t0 = now();
        if (merge_run(m, &e))
            goto fail;
        double t = now() - t0;
        if (rep >= 0) {
            bt->copy[rep] = t_copy;
            bt->all[rep] = t_add + t;
            bt->run[rep] = t;
        }
    }
    merge_free(m);
    return 0;
fail:
    fprintf(stderr, "bench_merge: %s\n", e.msg);
    merge_tset_free(b);
    merge_free(m);
    return -1;
}

/* Median and best time, GB/s of parameters and of traffic, and the median
 * over repetitions of the time over that repetition's memcpy. */
static void bench_line(const char *what, const double *t, const double *t_copy, int reps,
                       double sets, size_t n)
{
    double gb = (double)n * sizeof(float) / 1e9, ratio[64];
    for (int i = 0; i < reps; i++)
        ratio[i] = t[i] / t_copy[i];
    double med = bench_median(t, reps);
    printf("%-40s %8.1f %8.1f ms %6.2f GB/s  %3.0f sets %6.2f GB/s  %5.2fx\n", what, 1e3 * med,
           1e3 * bench_min(t, reps), gb / med, sets, sets * gb / med, bench_median(ratio, reps));
}

static int bench_parse_threads(const char *s, int *out, int cap)
{
    int n = 0;
    while (*s && n < cap) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 64)
            return -1;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
    }
    return n;
}

int main(int argc, char **argv)
{
    int reps = 7, threads[8] = {1, 2}, n_threads = 2;
    const char *layout = "base", *simd = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-r") == 0 && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc)
            n_threads = bench_parse_threads(argv[++i], threads, 8);
        else if (strcmp(argv[i], "-s") == 0 && i + 1 < argc)
            simd = argv[++i];
        else
            layout = argv[i];
    }
    if (reps < 1 || reps > 64 || n_threads < 1) {
        fprintf(stderr, "usage: bench_merge [-r REPS (1-64)] [-t THREADS,...] [-s SIMD] "
                        "[PRESET | MILLION_FLOATS]\n");
        return 2;
    }
    err e = {0};
    if (simd && merge_simd_use(simd, &e)) {
        fprintf(stderr, "bench_merge: %s\n", e.msg);
        return 1;
    }
    enum { CAP = 4096 };
    bench_layout l = {.spec = calloc(CAP, sizeof *l.spec), .names = calloc(CAP, 48)};
    double mf = atof(layout);
    if (mf > 0)
        bench_layout_synthetic(&l, (size_t)(mf * 1e6), CAP);
    else if (bench_layout_preset(&l, layout, CAP))
        return 1;

    merge_tset *base, *ck[BENCH_NCK], *copy;
    if (merge_tset_new(l.spec, l.n, &base, &e) || merge_tset_new(l.spec, l.n, &copy, &e)) {
        fprintf(stderr, "bench_merge: %s\n", e.msg);
        return 1;
    }
    rng r;
    rng_init(&r, 7);
    bench_fill(base, &r, NULL, 0.1f);
    /* Checkpoints of a run: each a small step from the one before. */
    for (int i = 0; i < BENCH_NCK; i++) {
        if (merge_tset_new(l.spec, l.n, &ck[i], &e)) {
            fprintf(stderr, "bench_merge: %s\n", e.msg);
            return 1;
        }
        bench_fill(ck[i], &r, i ? ck[i - 1] : base, i ? 0.002f : 0.01f);
    }
    size_t n = base->numel;
    printf("merge benchmark: layout %s, %d tensors, %zu floats (%.1f MB per set), %s loops, "
           "%d repetitions\n",
           layout, l.n, n, n * 4.0 / 1e6, merge_simd(), reps);
    printf("%-40s %8s %8s    %11s  %15s  %6s\n", "", "median", "best", "params", "traffic",
           "/memcpy");
    memcpy(copy->data, base->data, n * sizeof(float));

    const bench_case cases[] = {
        {"TIES d=0.8, add + run", MERGE_TIES, 0.8, 1, 6, 4},
        {"TIES d=0.8, 2 checkpoints, add + run", MERGE_TIES, 0.8, 2, 9, 5},
        {"TIES d=1 (no trimming), add + run", MERGE_TIES, 1.0, 1, 5, 4},
        {"linear, add + run", MERGE_LINEAR, 0.8, 1, 4, 3},
    };
    enum { NCASE = sizeof cases / sizeof cases[0] };
    static bench_times bt[8][NCASE];
    for (int ti = 0; ti < n_threads; ti++)
        for (int ci = 0; ci < NCASE; ci++)
            if (bench_merge(&cases[ci], threads[ti], base, ck, copy, reps, &bt[ti][ci]))
                return 1;
    for (int ti = 0; ti < n_threads; ti++) {
        printf("-- %d thread%s\n", threads[ti], threads[ti] > 1 ? "s" : "");
        for (int ci = 0; ci < NCASE; ci++) {
            const bench_times *b = &bt[ti][ci];
            bench_line("memcpy of one set", b->copy, b->copy, reps, 2, n);
            bench_line(cases[ci].what, b->all, b->copy, reps, cases[ci].sets, n);
            bench_line("  of which merge_run", b->run, b->copy, reps, cases[ci].sets_run, n);
        }
    }
    merge_tset_free(copy);
    merge_tset_free(base);
    for (int i = 0; i < BENCH_NCK; i++)
        merge_tset_free(ck[i]);
    free(l.spec);
    free(l.names);
    return 0;
}
