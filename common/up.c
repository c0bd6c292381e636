/* `gtrt up`: a whole local run from one command. It warm-starts a policy
 * with `gtrt sft` when no initial checkpoint is given, starts one learner,
 * the teachers and the actors as child processes of the same executable
 * (each with the same --config/--set options, logs prefixed by role and id),
 * waits until every service is registered, shows progress until the
 * learner's update budget is spent (restarting an actor that dies), stops
 * everything with SIGTERM (actors first, the learner last), evaluates the
 * final policy with `gtrt eval` and says where everything is. With
 * ppo.updates = 0 it runs for up.hold_s seconds instead (0: until Ctrl-C).
 * On a cluster the services are started one by one instead (deploy/). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cli.h"
#include "common/clock.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/runmode.h"
#include "common/security.h"
#include "common/status.h"

#define UP_MAX_CHILDREN 300
#define UP_MAX_EXTRA 4

typedef struct up_child {
    pid_t pid;
    char role[16];
    char name[64];
    char extra[UP_MAX_EXTRA][600]; /* --set values of this child */
    int nextra;
    int status;
    bool exited;
    int restarts;
} up_child;

typedef struct up_ctx {
    const cli_common *common;
    const config *cfg;
    char run_dir[512];
    char init_set[700]; /* ppo.init_checkpoint=... for the learner, or "" */
    up_child kids[UP_MAX_CHILDREN];
    int nkids;
} up_ctx;

static volatile sig_atomic_t up_interrupted;

static void up_on_signal(int sig)
{
    (void)sig;
    up_interrupted = 1;
}

static void up_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ==== children ==== */

/* argv: gtrt <cmd> --config ... --set ... <extra sets> <args> */
static pid_t up_exec(const up_ctx *u, const char *cmd, char extra[][600], int nextra,
                     const char *const *args, int nargs)
{
    const char *argv[2 * CLI_MAX_SETS + 2 * UP_MAX_EXTRA + 32];
    int n = 0;
    argv[n++] = "gtrt";
    argv[n++] = cmd;
    if (u->common->config_path) {
        argv[n++] = "--config";
        argv[n++] = u->common->config_path;
    }
    for (int i = 0; i < u->common->nsets; i++) {
        argv[n++] = "--set";
        argv[n++] = u->common->sets[i];
    }
    for (int i = 0; i < nextra; i++) {
        argv[n++] = "--set";
        argv[n++] = extra[i];
    }
    if (u->common->log_level) {
        argv[n++] = "--log-level";
        argv[n++] = u->common->log_level;
    }
    for (int i = 0; i < nargs && n < (int)(sizeof argv / sizeof *argv) - 1; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        execv("/proc/self/exe", (char **)argv);
        fprintf(stderr, "gtrt up: cannot start gtrt %s: %s\n", cmd, strerror(errno));
        _exit(127);
    }
    return pid;
}

static int up_spawn(up_ctx *u, const char *role, const char *name, const char **extra, int nextra)
{
    if (u->nkids >= UP_MAX_CHILDREN)
        return GTRT_ERANGE;
    up_child *k = &u->kids[u->nkids];
    memset(k, 0, sizeof *k);
    snprintf(k->role, sizeof k->role, "%s", role);
    snprintf(k->name, sizeof k->name, "%s", name);
    for (int i = 0; i < nextra && i < UP_MAX_EXTRA; i++)
        snprintf(k->extra[k->nextra++], sizeof k->extra[0], "%s", extra[i]);
    k->pid = up_exec(u, role, k->extra, k->nextra, NULL, 0);
    if (k->pid < 0)
        return GTRT_EIO;
    u->nkids++;
    return 0;
}

/* Run a one-shot `gtrt cmd args...` and wait for it; its exit code. */
static int up_run_tool(const up_ctx *u, const char *cmd, const char *const *args, int nargs)
{
    char none[1][600];
    pid_t pid = up_exec(u, cmd, none, 0, args, nargs);
    if (pid < 0)
        return -1;
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        if (up_interrupted)
            kill(pid, SIGTERM);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Reap children that have exited; returns how many are still running. */
static int up_reap(up_ctx *u)
{
    int running = 0;
    for (int i = 0; i < u->nkids; i++) {
        up_child *k = &u->kids[i];
        if (k->exited)
            continue;
        if (waitpid(k->pid, &k->status, WNOHANG) == k->pid)
            k->exited = true;
        else
            running++;
    }
    return running;
}

/* An actor that died is started again (up to 5 times); any other service
 * that died ends the run. Returns the name of a dead non-actor, or NULL. */
static const char *up_tend(up_ctx *u)
{
    up_reap(u);
    for (int i = 0; i < u->nkids; i++) {
        up_child *k = &u->kids[i];
        if (!k->exited)
            continue;
        if (strcmp(k->role, "actor") || k->restarts >= 5)
            return k->name;
        log_warn("%s died (status %d); starting it again", k->name, k->status);
        k->restarts++;
        k->exited = false;
        k->pid = up_exec(u, "actor", k->extra, k->nextra, NULL, 0);
    }
    return NULL;
}

/* SIGTERM the children of one role and wait for them; SIGKILL after
 * `grace_s` (the learner may be finishing an update). */
static void up_stop_role(up_ctx *u, const char *role, double grace_s)
{
    for (int i = 0; i < u->nkids; i++)
        if (!u->kids[i].exited && !strcmp(u->kids[i].role, role))
            kill(u->kids[i].pid, SIGTERM);
    uint64_t deadline = clock_mono_ms() + (uint64_t)(grace_s * 1000);
    for (;;) {
        int left = 0;
        up_reap(u);
        for (int i = 0; i < u->nkids; i++)
            left += !u->kids[i].exited && !strcmp(u->kids[i].role, role);
        if (!left)
            return;
        if (clock_mono_ms() > deadline) {
            for (int i = 0; i < u->nkids; i++)
                if (!u->kids[i].exited && !strcmp(u->kids[i].role, role)) {
                    log_error("%s did not stop within %.0f s; killing it", u->kids[i].name, grace_s);
                    kill(u->kids[i].pid, SIGKILL);
                }
            deadline = UINT64_MAX;
        }
        up_sleep_ms(20);
    }
}

static int up_report_exits(up_ctx *u)
{
    int bad = 0;
    for (int i = 0; i < u->nkids; i++) {
        up_child *k = &u->kids[i];
        if (WIFEXITED(k->status) && WEXITSTATUS(k->status) == 0)
            continue;
        bad++;
        if (WIFEXITED(k->status))
            log_error("%s exited with code %d", k->name, WEXITSTATUS(k->status));
        else
            log_error("%s died of signal %d", k->name, WTERMSIG(k->status));
    }
    if (!bad)
        log_info("all %d services stopped cleanly (exit code 0)", u->nkids);
    return bad ? 1 : 0;
}

/* Teacher i binds the configured tcp port + i (ipc: the path + "-i"), so
 * several fit on one host. */
static void up_teacher_bind(const char *base, int i, char *out, size_t len)
{
    const char *colon = strrchr(base, ':');
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : 0;
    if (i == 0)
        snprintf(out, len, "teacher.bind=%s", base);
    else if (!strncmp(base, "tcp://", 6) && end && !*end && port > 0)
        snprintf(out, len, "teacher.bind=%.*s:%ld", (int)(colon - base), base, port + i);
    else
        snprintf(out, len, "teacher.bind=%s-%d", base, i);
}

/* The learner and the teachers. */
static int up_start_servers(up_ctx *u)
{
    const char *lx[] = {u->init_set};
    int rc = up_spawn(u, "learner", "learner", lx, u->init_set[0] ? 1 : 0);
    for (int i = 0; !rc && i < config_int(u->cfg, "up.teachers"); i++) {
        char name[32], id[64], bind[300];
        snprintf(name, sizeof name, "teacher-%d", i);
        snprintf(id, sizeof id, "teacher.id=%s", name);
        up_teacher_bind(config_str(u->cfg, "teacher.bind"), i, bind, sizeof bind);
        const char *extra[] = {id, bind};
        rc = up_spawn(u, "teacher", name, extra, 2);
    }
    return rc;
}

static int up_start_actors(up_ctx *u)
{
    int rc = 0;
    for (int i = 0; !rc && i < config_int(u->cfg, "up.actors"); i++) {
        char name[32], id[64];
        snprintf(name, sizeof name, "actor-%d", i);
        snprintf(id, sizeof id, "actor.id=%s", name);
        const char *extra[] = {id};
        rc = up_spawn(u, "actor", name, extra, 1);
    }
    return rc;
}

/* ==== watching the run ==== */

static cJSON *up_status(const up_ctx *u, int timeout_ms)
{
    cJSON *st = NULL;
    err e = {0};
    security *sec = NULL; /* up_check_config made sure it loads */
    if (security_load(u->cfg, &sec, &e) == 0)
        status_fetch(config_str(u->cfg, "learner.connect"), timeout_ms, 1,
                            config_int(u->cfg, "net.max_msg_bytes"), sec, &st, &e);
    security_free(sec);
    return st;
}

static double up_counter(const cJSON *st, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(st, "counters"), name);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* Poll the learner until want_a actors and want_t teachers are registered. */
static int up_wait_alive(up_ctx *u, int want_a, int want_t, cJSON **st)
{
    uint64_t deadline =
        clock_mono_ms() + (uint64_t)(config_double(u->cfg, "up.start_timeout_s") * 1000);
    int last_a = -1, last_t = -1;
    while (!up_interrupted) {
        const char *dead = up_tend(u);
        if (dead) {
            log_error("%s exited during start-up", dead);
            return GTRT_ESTATE;
        }
        if ((*st = up_status(u, 500))) {
            int a = status_count_alive(*st, "actor"), t = status_count_alive(*st, "teacher");
            if (a != last_a || t != last_t)
                log_info("registered: %d/%d actors, %d/%d teachers", a, want_a, t, want_t);
            last_a = a;
            last_t = t;
            if (a >= want_a && t >= want_t)
                return 0;
            cJSON_Delete(*st);
            *st = NULL;
        }
        if (clock_mono_ms() > deadline) {
            log_error("not every service registered within %.0f s",
                      config_double(u->cfg, "up.start_timeout_s"));
            return GTRT_ETIMEOUT;
        }
        up_sleep_ms(100);
    }
    return GTRT_ESTATE;
}

/* The last line of RUN/metrics.jsonl, parsed; NULL when there is none. */
static cJSON *up_last_metrics(const up_ctx *u)
{
    char path[600];
    snprintf(path, sizeof path, "%s/metrics.jsonl", u->run_dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char line[8192], last[8192] = "";
    while (fgets(line, sizeof line, f))
        if (line[0] == '{')
            memcpy(last, line, sizeof last);
    fclose(f);
    return last[0] ? cJSON_Parse(last) : NULL;
}

static double up_num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

static void up_progress(const up_ctx *u, double version, double env_steps, uint64_t t0_ns)
{
    int64_t budget = config_int(u->cfg, "ppo.updates");
    double el = clock_since_s(t0_ns);
    double rate = el > 0 ? env_steps / el : 0;
    double eta = version > 0 && budget > 0 ? el / version * ((double)budget - version) : 0;
    cJSON *m = up_last_metrics(u);
    log_info("update %.0f/%" PRId64 " | env steps %.0f | success %.2f | return %.2f | "
             "thought entropy %.3f | %.1f steps/s | ETA %.0fm%02.0fs",
             version, budget, env_steps, up_num(m, "train/success_rate"),
             up_num(m, "train/return"), up_num(m, "train/thought_entropy"), rate,
             (double)((int)eta / 60), (double)((int)eta % 60));
    cJSON_Delete(m);
}

/* Run until the learner has done ppo.updates updates (or, with no budget,
 * for up.hold_s seconds). Returns 0, or GTRT_ESTATE when a service died. */
static int up_watch(up_ctx *u)
{
    int64_t budget = config_int(u->cfg, "ppo.updates");
    double hold_s = config_double(u->cfg, "up.hold_s");
    if (budget > 0)
        log_info("training for %" PRId64 " updates (Ctrl-C to stop sooner)", budget);
    else if (hold_s > 0)
        log_info("running for %.1f s (Ctrl-C to stop sooner)", hold_s);
    else
        log_info("running until Ctrl-C");
    uint64_t t0 = clock_mono_ns(), end = clock_mono_ms() + (uint64_t)(hold_s * 1000);
    double last_version = -1;
    while (!up_interrupted) {
        const char *dead = up_tend(u);
        if (dead) {
            log_error("%s exited unexpectedly", dead);
            return GTRT_ESTATE;
        }
        if (budget <= 0) {
            if (hold_s > 0 && clock_mono_ms() >= end)
                return 0;
            up_sleep_ms(100);
            continue;
        }
        cJSON *st = up_status(u, 1000);
        if (st) {
            double v = up_counter(st, "policy_version");
            if (v != last_version)
                up_progress(u, v, up_counter(st, "env_steps_learned"), t0);
            last_version = v;
            cJSON_Delete(st);
            if (v >= (double)budget)
                return 0;
        }
        up_sleep_ms(500);
    }
    return 0;
}

/* ==== before and after ==== */

static int up_warm_start(up_ctx *u)
{
    const char *init = config_str(u->cfg, "ppo.init_checkpoint");
    if (init[0] || !config_bool(u->cfg, "up.sft")) {
        if (init[0])
            snprintf(u->init_set, sizeof u->init_set, "ppo.init_checkpoint=%s", init);
        return 0;
    }
    err e = {0};
    if (fs_mkdirs(u->run_dir, &e)) {
        log_error("%s", e.msg);
        return GTRT_EIO;
    }
    char out[600];
    snprintf(out, sizeof out, "%s/sft.safetensors", u->run_dir);
    log_info("warm start: gtrt sft --env %s -o %s", config_str(u->cfg, "env.name"), out);
    const char *args[] = {"-o", out};
    int rc = up_run_tool(u, "sft", args, 2);
    if (rc) {
        log_error("the warm-start SFT failed (exit code %d)", rc);
        return GTRT_ESTATE;
    }
    snprintf(u->init_set, sizeof u->init_set, "ppo.init_checkpoint=%s", out);
    return 0;
}

/* The newest policy checkpoint in RUN/checkpoints, or "" */
static void up_last_checkpoint(const up_ctx *u, const cJSON *st, char *out, size_t len)
{
    out[0] = 0;
    if (!st)
        return;
    snprintf(out, len, "%s/checkpoints/policy-v%06.0f.safetensors", u->run_dir,
             up_counter(st, "policy_version"));
    if (access(out, R_OK))
        out[0] = 0;
}

static void up_final_eval(up_ctx *u, const char *ckpt)
{
    int64_t n = config_int(u->cfg, "up.eval_episodes");
    if (!ckpt[0] || n <= 0 || up_interrupted)
        return;
    char episodes[32];
    snprintf(episodes, sizeof episodes, "%" PRId64, n);
    log_info("final evaluation: gtrt eval %s --episodes %s", ckpt, episodes);
    const char *args[] = {ckpt, "--episodes", episodes};
    if (up_run_tool(u, "eval", args, 3))
        log_warn("the final evaluation failed");
}

static void up_where(const up_ctx *u)
{
    printf("\nrun directory:  %s\n"
           "  config.ini       the effective configuration\n"
           "  metrics.jsonl    one line per update (also TensorBoard: tensorboard --logdir %s)\n"
           "  checkpoints/     the last policies (safetensors)\n"
           "curves:         gtrt plot %s -o curves.svg\n",
           u->run_dir, u->run_dir, u->run_dir);
    fflush(stdout);
}

/* Key files that do not load would stop every child the same way: say so
 * once, before starting anything. */
static int up_check_security(const config *cfg)
{
    security *sec = NULL;
    err e = {0};
    if (security_load(cfg, &sec, &e)) {
        log_error("%s", e.msg);
        return GTRT_ECONFIG;
    }
    security_free(sec);
    return 0;
}

/* What `up` knows that a learner alone cannot: how many actors there will
 * be. Refuse a run that could never fill one update. */
static int up_check_config(const config *cfg)
{
    if (up_check_security(cfg))
        return GTRT_ECONFIG;
    int64_t steps = config_int(cfg, "ppo.num_steps"), mb = config_int(cfg, "ppo.minibatch");
    int64_t actors = config_int(cfg, "up.actors"), unacked = config_int(cfg, "actor.max_unacked_steps");
    if (mb > steps) {
        log_error("ppo.minibatch (%" PRId64 ") is larger than ppo.num_steps (%" PRId64 ")", mb, steps);
        return GTRT_ECONFIG;
    }
    run_mode mode;
    err e = {0};
    if (run_mode_get(cfg, &mode, &e)) {
        log_error("%s", e.msg);
        return GTRT_ECONFIG;
    }
    if (run_mode_teacher(mode) && config_int(cfg, "up.teachers") < 1) {
        log_error("run.mode %s guides the policy with a merged teacher: up.teachers must be at "
                  "least 1", run_mode_name(mode));
        return GTRT_ECONFIG;
    }
    if (actors > 0 && actors * unacked < steps) {
        log_error("up.actors (%" PRId64 ") x actor.max_unacked_steps (%" PRId64 ") is below "
                  "ppo.num_steps (%" PRId64 "): the actors would wait for acknowledgements and "
                  "the learner for steps, forever",
                  actors, unacked, steps);
        return GTRT_ECONFIG;
    }
    return 0;
}

int up_main(int argc, char **argv)
{
    static const cli_cmd cmd = {
        "up", "", "Run a whole training run on this machine: SFT, learner, teachers, actors, eval.",
        "Warm-starts a policy with `gtrt sft` when ppo.init_checkpoint is empty (up.sft),\n"
        "starts one learner, up.teachers teachers and up.actors actors as child processes\n"
        "with the same --config and --set options (in the turbo run.modes the actors once\n"
        "the teachers are registered), waits until all are registered, shows\n"
        "progress until the learner has done ppo.updates updates (an actor that dies is\n"
        "started again), stops everything with SIGTERM (actors first, the learner last),\n"
        "evaluates the final policy and prints where the run directory is. With\n"
        "ppo.updates = 0 it runs for up.hold_s seconds (0: until Ctrl-C) instead.\n"
        "Exit code 0 when every service stopped cleanly."};
    cli_common common;
    int rc = cli_parse(argc, argv, &cmd, NULL, &common, NULL, NULL, 0);
    if (rc)
        return rc > 0 ? 0 : 2;
    config *cfg = cli_config(&common);
    if (!cfg)
        return 2;
    log_init("up", "");
    if (up_check_config(cfg)) {
        config_free(cfg);
        return 2;
    }
    struct sigaction sa = {0};
    sa.sa_handler = up_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    up_ctx *u = calloc(1, sizeof *u);
    if (!u) {
        config_free(cfg);
        return 1;
    }
    u->common = &common;
    u->cfg = cfg;
    snprintf(u->run_dir, sizeof u->run_dir, "%s/%s", config_str(cfg, "run.out_dir"),
             config_str(cfg, "run.name"));
    uint64_t t0 = clock_mono_ns();
    cJSON *st = NULL;
    int want_a = (int)config_int(cfg, "up.actors"), want_t = (int)config_int(cfg, "up.teachers");
    run_mode mode = RUN_PPO;
    run_mode_get(cfg, &mode, NULL); /* checked by up_check_config */
    rc = up_warm_start(u);
    if (!rc)
        rc = up_start_servers(u);
    /* Guided modes: actors start once the teachers are registered, so their
     * first turns already find a teacher in the learner's welcome. */
    if (!rc && run_mode_teacher(mode) && !(rc = up_wait_alive(u, 0, want_t, &st))) {
        cJSON_Delete(st);
        st = NULL;
    }
    if (!rc)
        rc = up_start_actors(u);
    if (!rc)
        rc = up_wait_alive(u, want_a, want_t, &st);
    if (!rc) {
        log_info("all services alive after %.2f s", clock_since_s(t0));
        status_print(stdout, st);
        fflush(stdout);
        cJSON_Delete(st);
        rc = up_watch(u);
        st = up_status(u, 1000);
        if (st) {
            status_print(stdout, st);
            fflush(stdout);
        }
    }
    log_info("stopping");
    up_stop_role(u, "actor", 15);
    up_stop_role(u, "teacher", 15);
    up_stop_role(u, "learner", 300);
    int exits = up_report_exits(u);
    if (!rc && config_int(cfg, "ppo.updates") > 0) {
        char ckpt[700];
        up_last_checkpoint(u, st, ckpt, sizeof ckpt);
        up_final_eval(u, ckpt);
        up_where(u);
    }
    cJSON_Delete(st);
    free(u);
    config_free(cfg);
    return rc ? 1 : exits;
}
