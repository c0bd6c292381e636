/* `gtrt up`: start a whole system on this machine (one learner, teachers,
 * actors) as child processes of the same executable, wait until every
 * service is registered, show the status table, and stop everything
 * cleanly. It is the one-command local run; on a cluster the services are
 * started one by one (deploy/). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/cli.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/status.h"

#define UP_MAX_CHILDREN 300

typedef struct up_child {
    pid_t pid;
    char name[64];
    int status;
    bool exited;
} up_child;

typedef struct up_ctx {
    const cli_common *common;
    up_child kids[UP_MAX_CHILDREN];
    int nkids;
} up_ctx;

static volatile sig_atomic_t up_interrupted;

static void up_on_signal(int sig)
{
    (void)sig;
    up_interrupted = 1;
}

/* Start `gtrt <role> --config ... --set ... <extra sets>` as a child. */
static int up_spawn(up_ctx *u, const char *role, const char *name, const char **extra, int nextra)
{
    if (u->nkids >= UP_MAX_CHILDREN)
        return GTRT_ERANGE;
    const char *argv[2 * CLI_MAX_SETS + 16];
    int n = 0;
    argv[n++] = "gtrt";
    argv[n++] = role;
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
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return GTRT_EIO;
    if (pid == 0) {
        execv("/proc/self/exe", (char **)argv);
        fprintf(stderr, "gtrt up: cannot start %s: %s\n", name, strerror(errno));
        _exit(127);
    }
    up_child *k = &u->kids[u->nkids++];
    memset(k, 0, sizeof *k);
    k->pid = pid;
    snprintf(k->name, sizeof k->name, "%s", name);
    return 0;
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

static const char *up_first_dead(up_ctx *u)
{
    for (int i = 0; i < u->nkids; i++)
        if (u->kids[i].exited)
            return u->kids[i].name;
    return NULL;
}

static void up_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* SIGTERM the children of one kind (actors first, the learner last) and
 * wait for them; SIGKILL after 15 s. */
static void up_stop_role(up_ctx *u, const char *prefix)
{
    size_t plen = strlen(prefix);
    for (int i = 0; i < u->nkids; i++)
        if (!u->kids[i].exited && !strncmp(u->kids[i].name, prefix, plen))
            kill(u->kids[i].pid, SIGTERM);
    uint64_t deadline = clock_mono_ms() + 15000;
    for (;;) {
        int left = 0;
        up_reap(u);
        for (int i = 0; i < u->nkids; i++)
            left += !u->kids[i].exited && !strncmp(u->kids[i].name, prefix, plen);
        if (!left)
            return;
        if (clock_mono_ms() > deadline) {
            for (int i = 0; i < u->nkids; i++)
                if (!u->kids[i].exited && !strncmp(u->kids[i].name, prefix, plen)) {
                    log_error("%s did not stop within 15 s; killing it", u->kids[i].name);
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

static int up_start_all(up_ctx *u, const config *cfg)
{
    int rc = up_spawn(u, "learner", "learner", NULL, 0);
    for (int i = 0; !rc && i < config_int(cfg, "up.teachers"); i++) {
        char name[32], id[64], bind[300];
        snprintf(name, sizeof name, "teacher-%d", i);
        snprintf(id, sizeof id, "teacher.id=%s", name);
        up_teacher_bind(config_str(cfg, "teacher.bind"), i, bind, sizeof bind);
        const char *extra[] = {id, bind};
        rc = up_spawn(u, "teacher", name, extra, 2);
    }
    for (int i = 0; !rc && i < config_int(cfg, "up.actors"); i++) {
        char name[32], id[64];
        snprintf(name, sizeof name, "actor-%d", i);
        snprintf(id, sizeof id, "actor.id=%s", name);
        const char *extra[] = {id};
        rc = up_spawn(u, "actor", name, extra, 1);
    }
    return rc;
}

/* Poll the learner until every service is registered. */
static int up_wait_alive(up_ctx *u, const config *cfg, cJSON **st)
{
    int want_a = (int)config_int(cfg, "up.actors"), want_t = (int)config_int(cfg, "up.teachers");
    uint64_t deadline = clock_mono_ms() + (uint64_t)(config_double(cfg, "up.start_timeout_s") * 1000);
    int last_a = -1, last_t = -1;
    while (!up_interrupted) {
        up_reap(u);
        if (up_first_dead(u)) {
            log_error("%s exited during start-up", up_first_dead(u));
            return GTRT_ESTATE;
        }
        err e = {0};
        if (status_fetch(config_str(cfg, "learner.connect"), 500, 1,
                         config_int(cfg, "net.max_msg_bytes"), st, &e) == 0) {
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
                      config_double(cfg, "up.start_timeout_s"));
            return GTRT_ETIMEOUT;
        }
        up_sleep_ms(100);
    }
    return GTRT_ESTATE;
}

static void up_hold(up_ctx *u, double hold_s)
{
    if (hold_s > 0)
        log_info("running for %.1f s (Ctrl-C to stop sooner)", hold_s);
    else
        log_info("running until Ctrl-C");
    uint64_t end = clock_mono_ms() + (uint64_t)(hold_s * 1000);
    while (!up_interrupted && (hold_s <= 0 || clock_mono_ms() < end)) {
        up_reap(u);
        if (up_first_dead(u)) {
            log_error("%s exited unexpectedly", up_first_dead(u));
            return;
        }
        up_sleep_ms(100);
    }
}

int up_main(int argc, char **argv)
{
    static const cli_cmd cmd = {
        "up", "", "Start learner, teachers and actors on this machine, show them, stop them.",
        "Starts one learner, up.teachers teachers and up.actors actors as child\n"
        "processes with the same --config and --set options, waits until all are\n"
        "registered with the learner, prints the status table, runs for up.hold_s\n"
        "seconds (0: until Ctrl-C) and stops everything with SIGTERM (actors first,\n"
        "the learner last). Exit code 0 when every service stopped cleanly."};
    cli_common common;
    int rc = cli_parse(argc, argv, &cmd, NULL, &common, NULL, NULL, 0);
    if (rc)
        return rc > 0 ? 0 : 2;
    config *cfg = cli_config(&common);
    if (!cfg)
        return 2;
    log_init("up", "");
    struct sigaction sa = {0};
    sa.sa_handler = up_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    up_ctx u = {0};
    u.common = &common;
    uint64_t t0 = clock_mono_ns();
    cJSON *st = NULL;
    rc = up_start_all(&u, cfg);
    if (!rc)
        rc = up_wait_alive(&u, cfg, &st);
    if (!rc) {
        log_info("all services alive after %.2f s", clock_since_s(t0));
        status_print(stdout, st);
        fflush(stdout);
        cJSON_Delete(st);
        up_hold(&u, config_double(cfg, "up.hold_s"));
        err e = {0};
        if (status_fetch(config_str(cfg, "learner.connect"), 1000, 2,
                         config_int(cfg, "net.max_msg_bytes"), &st, &e) == 0) {
            status_print(stdout, st);
            fflush(stdout);
            cJSON_Delete(st);
        }
    }
    log_info("stopping");
    up_stop_role(&u, "actor");
    up_stop_role(&u, "teacher");
    up_stop_role(&u, "learner");
    int exits = up_report_exits(&u);
    config_free(cfg);
    return rc ? 1 : exits;
}
