/* `gtrt merge`: the teacher's merge, offline. BASE is the merge base (the
 * warm start); the CKPTs arrive one by one, oldest first, into the same
 * incremental merger the teacher service runs (a merge every
 * --interval checkpoints, the rest at the end), starting from teacher =
 * BASE. The final teacher is written atomically, with the base's metadata
 * and the merge's provenance. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "common/clock.h"
#include "common/config.h"
#include "teacher/merge.h"

typedef struct merge_cmd_args {
    const char *method, *combine, *out;
    double alpha, density, lambda;
    long interval;
} merge_cmd_args;

/* Options from the configuration, then from the command line. */
static int merge_cmd_opts(const config *cfg, const merge_cmd_args *a, merge_opts *o,
                          long *interval, err *e)
{
    merge_opts_default(o);
    const char *method = a->method ? a->method : config_str(cfg, "teacher.merge_method");
    const char *combine = a->combine ? a->combine : config_str(cfg, "teacher.combine");
    int rc = merge_method_parse(method, &o->method, e);
    if (rc == 0)
        rc = merge_combine_parse(combine, &o->combine, e);
    if (rc)
        return rc;
    o->alpha = isnan(a->alpha) ? config_double(cfg, "teacher.alpha") : a->alpha;
    o->density = isnan(a->density) ? config_double(cfg, "teacher.density") : a->density;
    o->lambda = isnan(a->lambda) ? config_double(cfg, "teacher.lambda") : a->lambda;
    *interval = a->interval > 0 ? a->interval : (long)config_int(cfg, "teacher.merge_interval");
    if (a->interval == 0 || a->interval < -1)
        return err_set(e, GTRT_EINVAL, "--interval must be at least 1");
    return merge_opts_check(o, e);
}

typedef struct merge_cmd_times {
    double load, merge, write;
} merge_cmd_times;

/* Feed every checkpoint to the merger, merging every `interval`. */
static int merge_cmd_feed(merger *m, char **ckpt, int n, long interval, merge_cmd_times *tm,
                          err *e)
{
    for (int i = 0; i < n; i++) {
        uint64_t t0 = clock_mono_ns();
        merge_tset *ts;
        int rc = merge_tset_load_as(merge_base(m), ckpt[i], &ts, e);
        if (rc == 0 && (rc = merge_add(m, ts, ckpt[i], e)))
            merge_tset_free(ts);
        tm->load += clock_since_s(t0);
        if (rc)
            return rc;
        if (merge_n_pending(m) >= interval || i == n - 1) {
            t0 = clock_mono_ns();
            rc = merge_run(m, e);
            tm->merge += clock_since_s(t0);
            if (rc)
                return rc;
        }
    }
    return 0;
}

static int merge_cmd_run(const merge_opts *o, long interval, char **pos, int npos,
                         const char *out, err *e)
{
    merge_cmd_times tm = {0};
    uint64_t t0 = clock_mono_ns();
    merge_tset *base;
    int rc = merge_tset_load(pos[0], &base, e);
    merger *m = NULL;
    if (rc == 0 && (rc = merge_new(o, base, &m, e)))
        merge_tset_free(base);
    tm.load = clock_since_s(t0);
    if (rc == 0)
        rc = merge_cmd_feed(m, pos + 1, npos - 1, interval, &tm, e);
    if (rc == 0) {
        t0 = clock_mono_ns();
        rc = merge_save(m, out, NULL, 0, e);
        tm.write = clock_since_s(t0);
    }
    if (rc == 0) {
        const merge_tset *t = merge_teacher(m);
        char how[128];
        if (o->combine == MERGE_TIES)
            snprintf(how, sizeof how, "ties density %g lambda %g", o->density, o->lambda);
        else
            snprintf(how, sizeof how, "linear");
        printf("merged %llu checkpoint(s) into %s in %llu merge(s): %s", 
               (unsigned long long)merge_count(m), out, (unsigned long long)merge_version(m),
               merge_method_name(o->method));
        if (o->method == MERGE_EMA)
            printf(" alpha %g", o->alpha);
        printf(", %s\n%d tensors, %zu parameters; load %.3f s, merge %.3f s, write %.3f s\n", how,
               t->n, t->numel, tm.load, tm.merge, tm.write);
    }
    merge_free(m);
    return rc;
}

int merge_main(int argc, char **argv)
{
    static const cli_cmd cmd = {
        "merge", "BASE CKPT... -o OUT.safetensors",
        "Merge checkpoints into a teacher, as the teacher service does.",
        "BASE is the merge base (the warm start); the CKPTs arrive one at a time,\n"
        "oldest first, into the incremental merge starting from teacher = BASE: every\n"
        "--interval checkpoints (and once more at the end) the new checkpoints are\n"
        "merged with the previous teacher, weighted by --method:\n"
        "  sma  the previous teacher weighs the number of checkpoints it holds, each\n"
        "       new one 1 (linear: the running mean of all checkpoints);\n"
        "  ema  teacher <- alpha*new + (1-alpha)*teacher (k checkpoints at once weigh\n"
        "       what k single steps would give them).\n"
        "--combine linear averages the weights; ties merges task vectors (CKPT - BASE):\n"
        "keeps the top --density of each tensor by magnitude, elects signs, averages\n"
        "the agreeing entries and adds --lambda times that to BASE. Every CKPT must\n"
        "have BASE's tensors and shapes. OUT is written atomically, float32, with\n"
        "BASE's metadata and merge_* provenance keys. Defaults: teacher.* config keys."};
    merge_cmd_args a = {.alpha = NAN, .density = NAN, .lambda = NAN, .interval = -1};
    cli_opt opts[] = {
        {"method", CLI_STR, &a.method, "sma|ema", "checkpoint weights (teacher.merge_method)"},
        {"combine", CLI_STR, &a.combine, "linear|ties", "combination (teacher.combine)"},
        {"alpha", CLI_DOUBLE, &a.alpha, "A", "EMA weight of a new checkpoint (teacher.alpha)"},
        {"density", CLI_DOUBLE, &a.density, "D", "TIES fraction kept (teacher.density)"},
        {"lambda", CLI_DOUBLE, &a.lambda, "L", "TIES task-vector scale (teacher.lambda)"},
        {"interval", CLI_INT, &a.interval, "N", "merge every N checkpoints (teacher.merge_interval)"},
        {"out", CLI_STR, &a.out, "FILE", "merged teacher to write (also -o FILE)"},
        {0},
    };
    char **pos = malloc(sizeof(char *) * (size_t)(argc + 1));
    if (!pos) {
        fprintf(stderr, "gtrt merge: out of memory\n");
        return 1;
    }
    cli_common common;
    int npos = 0;
    int rc = cli_parse(argc, argv, &cmd, opts, &common, pos, &npos, argc);
    int status = rc > 0 ? 0 : rc < 0 ? 2 : -1;
    if (status < 0 && (npos < 2 || !a.out)) {
        fprintf(stderr, "gtrt merge: give BASE, at least one CKPT and -o OUT.safetensors\n"
                        "Try 'gtrt merge --help'.\n");
        status = 2;
    }
    config *cfg = status < 0 ? cli_config(&common) : NULL;
    if (status < 0 && !cfg)
        status = 2;
    if (status < 0) {
        err e = {0};
        merge_opts o;
        long interval;
        rc = merge_cmd_opts(cfg, &a, &o, &interval, &e);
        if (rc) {
            fprintf(stderr, "gtrt merge: %s\n", e.msg);
            status = 2;
        } else if ((rc = merge_cmd_run(&o, interval, pos, npos, a.out, &e))) {
            fprintf(stderr, "gtrt merge: %s\n", e.msg);
            status = 1;
        } else {
            status = 0;
        }
    }
    config_free(cfg);
    free(pos);
    return status;
}
