/* A learner that is stopped (SIGTERM) and then killed (SIGKILL) while two
 * actors keep playing, and restarted each time with `gtrt learner --resume`
 * on the same run directory: the actors survive, register again and resend
 * what was not acknowledged; versions continue where the record stopped;
 * and at the end the books balance exactly: every step each actor sent was
 * either learned from, dropped with a count (stale, invalid) or is still
 * held by the learner for its next update, and each actor's acknowledged
 * steps are what the learner's record says it settled for that actor.
 * Also: what cannot be resumed, and a configuration that cannot train, are
 * refused at start with a message that says why. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define N_SETS 18
#define KEEP 3 /* ppo.keep_checkpoints, the default */

typedef struct rs_ctx {
    char dir[64];
    char run[128];
    char learner_ep[128];
    char sets[N_SETS][160];
} rs_ctx;

static rs_ctx rs;
static pid_t rs_children[8];
static int rs_nchildren;

static void kill_children(void)
{
    for (int i = 0; i < rs_nchildren; i++)
        if (rs_children[i] > 0 && kill(rs_children[i], SIGKILL) == 0)
            waitpid(rs_children[i], NULL, 0);
    rs_nchildren = 0;
}

static void forget_child(pid_t pid)
{
    for (int i = 0; i < rs_nchildren; i++)
        if (rs_children[i] == pid)
            rs_children[i] = 0;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The endpoints and the small, fast run every process of a test shares. */
static void rs_setup(const char *name)
{
    snprintf(rs.dir, sizeof rs.dir, "/tmp/gtrt-resume-XXXXXX");
    cr_assert_not_null(mkdtemp(rs.dir));
    snprintf(rs.run, sizeof rs.run, "%s/runs/%s", rs.dir, name);
    snprintf(rs.learner_ep, sizeof rs.learner_ep, "ipc://%s/learner", rs.dir);
    const char *fixed[] = {"net.heartbeat_ms=100", "metrics.prometheus_bind=", "model.preset=tiny",
                           "env.name=numberline", "ppo.num_steps=32", "ppo.minibatch=16",
                           "ppo.epochs=1", "ppo.updates=0", "actor.max_unacked_steps=64",
                           "actor.envs=4", "log.level=info", "learner.id=learner-l"};
    int n = 0;
    for (; n < (int)(sizeof fixed / sizeof fixed[0]); n++)
        snprintf(rs.sets[n], sizeof rs.sets[n], "%s", fixed[n]);
    snprintf(rs.sets[n++], sizeof rs.sets[0], "learner.bind=%s", rs.learner_ep);
    snprintf(rs.sets[n++], sizeof rs.sets[0], "learner.connect=%s", rs.learner_ep);
    snprintf(rs.sets[n++], sizeof rs.sets[0], "learner.publish_bind=ipc://%s/publish", rs.dir);
    snprintf(rs.sets[n++], sizeof rs.sets[0], "learner.publish_connect=ipc://%s/publish", rs.dir);
    snprintf(rs.sets[n++], sizeof rs.sets[0], "run.out_dir=%s/runs", rs.dir);
    snprintf(rs.sets[n++], sizeof rs.sets[0], "run.name=%s", name);
    cr_assert_eq(n, N_SETS);
}

/* gtrt <role> [the shared --set options] <extra...>, stderr to DIR/<log>. */
static pid_t spawn(const char *role, bool shared_sets, const char *const *extra, int nextra,
                   const char *log)
{
    char logpath[160];
    snprintf(logpath, sizeof logpath, "%s/%s", rs.dir, log);
    const char *argv[2 * N_SETS + 24];
    int n = 0;
    argv[n++] = GTRT_BIN_PATH;
    argv[n++] = role;
    for (int i = 0; shared_sets && i < N_SETS; i++) {
        argv[n++] = "--set";
        argv[n++] = rs.sets[i];
    }
    for (int i = 0; i < nextra; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int rc = posix_spawn(&pid, GTRT_BIN_PATH, &fa, NULL, (char **)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "cannot start %s", role);
    if (rs_nchildren < 8)
        rs_children[rs_nchildren++] = pid;
    return pid;
}

/* An actor answering status on DIR/<id>. With `patient`, it considers the
 * learner gone only after 10 s of silence, so it misses the restarts and
 * learns of them from the new learner (which does not know it); the other
 * notices the silence and registers again by itself. */
static pid_t spawn_actor(const char *id, bool patient)
{
    char idset[64], st[160];
    snprintf(idset, sizeof idset, "actor.id=%s", id);
    snprintf(st, sizeof st, "actor.status_bind=ipc://%s/%s", rs.dir, id);
    const char *extra[] = {"--set", idset, "--set", st, "--set", "net.liveness=100"};
    char log[64];
    snprintf(log, sizeof log, "%s.log", id);
    return spawn("actor", true, extra, patient ? 6 : 4, log);
}

/* SIGTERM and expect exit code 0 within 60 s. */
static void stop(pid_t pid, const char *name)
{
    forget_child(pid);
    kill(pid, SIGTERM);
    int status = 0;
    for (int i = 0; i < 1200; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                      "%s did not exit 0 on SIGTERM (status %d); logs in %s", name, status, rs.dir);
            return;
        }
        sleep_ms(50);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    cr_assert_fail("%s did not stop within 60 s of SIGTERM; logs in %s", name, rs.dir);
}

static void expect_running(pid_t pid, const char *name)
{
    int status;
    cr_expect_eq(waitpid(pid, &status, WNOHANG), 0, "%s died (status %d); logs in %s", name,
                 status, rs.dir);
}

/* ==== reading the services ==== */

static cJSON *status_json(const char *ep)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "%s status --json --timeout-ms 1000 --set net.request_retries=2 --learner %s 2>/dev/null",
             GTRT_BIN_PATH, ep);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = 0;
    return pclose(p) == 0 ? cJSON_Parse(buf) : NULL;
}

static double counter(const cJSON *st, const char *name)
{
    const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(st, "counters"), name);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static cJSON *actor_status(const char *id)
{
    char ep[160];
    snprintf(ep, sizeof ep, "ipc://%s/%s", rs.dir, id);
    return status_json(ep);
}

/* The commit record: version, steps learned and per actor its line. */
typedef struct rec_actor {
    char id[65];
    uint64_t floor, steps, learned, stale, invalid, dup;
} rec_actor;

typedef struct record {
    uint64_t version, env_steps;
    int n;
    rec_actor a[4];
} record;

static bool read_record(record *r)
{
    char p[256];
    snprintf(p, sizeof p, "%s/ingest-state.txt", rs.run);
    FILE *f = fopen(p, "r");
    if (!f)
        return false;
    memset(r, 0, sizeof *r);
    bool ok = fscanf(f, "gtrt-learner-state 1 policy_version %" SCNu64 " env_steps_learned %" SCNu64
                        " gtrt-ingest 2 %d",
                     &r->version, &r->env_steps, &r->n) == 3 &&
              r->n >= 0 && r->n <= 4;
    for (int i = 0; ok && i < r->n; i++) {
        rec_actor *a = &r->a[i];
        size_t na;
        uint64_t inc;
        ok = fscanf(f,
                    "%64s %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64
                    " %" SCNu64 " %zu",
                    a->id, &inc, &a->floor, &a->steps, &a->learned, &a->stale, &a->invalid,
                    &a->dup, &na) == 9;
        for (size_t k = 0; ok && k < na; k++) {
            uint64_t s;
            ok = fscanf(f, "%" SCNu64, &s) == 1;
        }
    }
    fclose(f);
    return ok;
}

static const rec_actor *rec_find(const record *r, const char *id)
{
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->a[i].id, id))
            return &r->a[i];
    return NULL;
}

/* ==== waiting ==== */

static double want_version;

/* The learner has done want_version updates and holds buffered steps, so
 * the actors hold unacknowledged batches it will lose when stopped. */
static int reached_with_buffered(const cJSON *st)
{
    return counter(st, "policy_version") >= want_version && counter(st, "steps_buffered") > 0;
}

static int reached(const cJSON *st) { return counter(st, "policy_version") >= want_version; }

static cJSON *wait_learner(int (*pred)(const cJSON *), int max_ms)
{
    for (int waited = 0; waited < max_ms; waited += 100) {
        cJSON *st = status_json(rs.learner_ep);
        if (st && pred(st))
            return st;
        cJSON_Delete(st);
        sleep_ms(100);
    }
    return NULL;
}

static const char *const ACTORS[2] = {"actor-a", "actor-b"};

typedef struct books {
    double sent[2], acked[2], unacked[2], waiting[2], resent[2];
    double settled_total, open, acks_waiting, learned, version;
    record rec;
    bool have_rec;
    char why[512];
} books;

static bool read_actors(books *b)
{
    for (int i = 0; i < 2; i++) {
        cJSON *st = actor_status(ACTORS[i]);
        if (!st)
            return false;
        b->sent[i] = counter(st, "steps_sent");
        b->acked[i] = counter(st, "steps_acked");
        b->unacked[i] = counter(st, "steps_unacked");
        b->waiting[i] = counter(st, "waiting_for_acks");
        b->resent[i] = counter(st, "batches_resent");
        cJSON_Delete(st);
    }
    return true;
}

static bool read_books(books *b)
{
    memset(b, 0, sizeof *b);
    cJSON *st = status_json(rs.learner_ep);
    if (!st || !read_actors(b)) {
        cJSON_Delete(st);
        snprintf(b->why, sizeof b->why, "a service did not answer");
        return false;
    }
    b->settled_total = counter(st, "steps_settled_total");
    b->open = counter(st, "steps_open");
    b->acks_waiting = counter(st, "acks_waiting");
    b->learned = counter(st, "env_steps_learned");
    b->version = counter(st, "policy_version");
    cJSON_Delete(st);
    b->have_rec = read_record(&b->rec);
    return true;
}

/* The exact balance, or false with the first difference in b->why. */
static bool books_balance(books *b)
{
    if (!b->have_rec)
        return snprintf(b->why, sizeof b->why, "no readable record"), false;
    double acked = 0, unacked = 0, learned = 0;
    for (int i = 0; i < 2; i++) {
        const rec_actor *r = rec_find(&b->rec, ACTORS[i]);
        if (!r)
            return snprintf(b->why, sizeof b->why, "%s not in the record", ACTORS[i]), false;
        if (b->waiting[i] != 1)
            return snprintf(b->why, sizeof b->why, "%s is still playing", ACTORS[i]), false;
        if (b->sent[i] != b->acked[i] + b->unacked[i])
            return snprintf(b->why, sizeof b->why, "%s: sent %.0f != acked %.0f + unacked %.0f",
                            ACTORS[i], b->sent[i], b->acked[i], b->unacked[i]),
                   false;
        if ((double)r->steps != b->acked[i])
            return snprintf(b->why, sizeof b->why,
                            "%s: the learner settled %" PRIu64 " steps, the actor saw %.0f acked",
                            ACTORS[i], r->steps, b->acked[i]),
                   false;
        if (r->learned + r->stale + r->invalid != r->steps)
            return snprintf(b->why, sizeof b->why, "%s: outcomes do not add up", ACTORS[i]), false;
        acked += b->acked[i];
        unacked += b->unacked[i];
        learned += (double)r->learned;
    }
    if (b->acks_waiting != 0)
        return snprintf(b->why, sizeof b->why, "%.0f acks not sent", b->acks_waiting), false;
    if (b->open != unacked)
        return snprintf(b->why, sizeof b->why, "the learner holds %.0f steps open, the actors %.0f",
                        b->open, unacked),
               false;
    if (b->settled_total != acked)
        return snprintf(b->why, sizeof b->why, "settled %.0f != acked %.0f", b->settled_total, acked),
               false;
    if (learned != b->learned || (double)b->rec.env_steps != b->learned)
        return snprintf(b->why, sizeof b->why, "learned: record %" PRIu64 ", actors' sum %.0f, status %.0f",
                        b->rec.env_steps, learned, b->learned),
               false;
    return true;
}

/* Poll until the books balance and stay so across a second look at the
 * actors (nothing in flight); fails after max_ms with the last difference. */
static void wait_books_balance(books *b, int max_ms)
{
    for (int waited = 0; waited < max_ms; waited += 200) {
        if (read_books(b) && books_balance(b)) {
            books again;
            if (read_actors(&again) && !memcmp(again.acked, b->acked, sizeof b->acked) &&
                !memcmp(again.sent, b->sent, sizeof b->sent))
                return;
        }
        sleep_ms(200);
    }
    cr_assert_fail("the books do not balance: %s; logs in %s", b->why, rs.dir);
}

/* metrics.jsonl: steps strictly increasing; returns how many lines, the
 * last step and its env_steps; counts how often `watch` appears. */
static int read_metrics(double *last_step, double *last_env, double watch, int *watch_seen)
{
    char p[256];
    snprintf(p, sizeof p, "%s/metrics.jsonl", rs.run);
    FILE *f = fopen(p, "r");
    cr_assert_not_null(f, "no %s", p);
    static char line[1 << 16];
    int n = 0;
    double prev = 0;
    *watch_seen = 0;
    while (fgets(line, sizeof line, f)) {
        cJSON *j = cJSON_Parse(line);
        cr_assert_not_null(j, "bad metrics line %d", n + 1);
        double step = cJSON_GetObjectItem(j, "step")->valuedouble;
        cr_expect_gt(step, prev, "metrics line %d: step %.0f after %.0f", n + 1, step, prev);
        *watch_seen += step == watch;
        prev = step;
        *last_step = step;
        *last_env = cJSON_GetObjectItem(j, "env_steps")->valuedouble;
        cJSON_Delete(j);
        n++;
    }
    fclose(f);
    return n;
}

static bool ckpt_exists(const char *kind, uint64_t v)
{
    char p[256];
    snprintf(p, sizeof p, "%s/checkpoints/%s-v%06" PRIu64 ".safetensors", rs.run, kind, v);
    return access(p, F_OK) == 0;
}

/* ==== the restart test ==== */

/* Stop the learner with `sig`; returns the version its record names, which
 * must be at least the last one it reported. */
static uint64_t stop_learner(pid_t learner, int sig, double last_seen)
{
    if (sig == SIGTERM)
        stop(learner, "learner");
    else {
        forget_child(learner);
        kill(learner, SIGKILL);
        waitpid(learner, NULL, 0);
    }
    record r;
    cr_assert(read_record(&r), "no readable record after the learner stopped");
    cr_expect_geq((double)r.version, last_seen,
                  "the record names v%" PRIu64 ", the learner had reported v%.0f", r.version,
                  last_seen);
    return r.version;
}

static pid_t resume_learner(const char *budget_set, const char *log)
{
    const char *extra[] = {"--resume", rs.run, "--set", budget_set};
    return spawn("learner", false, extra, budget_set ? 4 : 2, log);
}

/* Run the learner until it has done `updates` more updates with steps
 * buffered; returns the version it reported. */
static double run_until(uint64_t from, int updates)
{
    want_version = (double)(from + (uint64_t)updates);
    cJSON *st = wait_learner(reached_with_buffered, 120000);
    cr_assert_not_null(st, "the learner did not reach v%.0f; logs in %s", want_version, rs.dir);
    double v = counter(st, "policy_version");
    cJSON_Delete(st);
    return v;
}

Test(resume, learner_restarts_and_every_step_is_accounted_for, .timeout = 600,
     .fini = kill_children)
{
    rs_setup("restart");
    pid_t learner = spawn("learner", true, NULL, 0, "learner-1.log");
    pid_t a = spawn_actor(ACTORS[0], true), b = spawn_actor(ACTORS[1], false);

    /* phase 1: SIGTERM finishes the update in flight and records it */
    double seen = run_until(0, 3);
    uint64_t v1 = stop_learner(learner, SIGTERM, seen);
    expect_running(a, ACTORS[0]);
    expect_running(b, ACTORS[1]);

    /* phase 2: resumed from the run directory alone (its config.ini) */
    learner = resume_learner(NULL, "learner-2.log");
    seen = run_until(v1, 2);
    uint64_t v2 = stop_learner(learner, SIGKILL, seen);
    expect_running(a, ACTORS[0]);
    expect_running(b, ACTORS[1]);

    /* phase 3: resumed with a budget; once spent the actors fill up and
     * everything comes to rest */
    uint64_t final = v2 + 3;
    char budget[64];
    snprintf(budget, sizeof budget, "ppo.updates=%" PRIu64, final);
    learner = resume_learner(budget, "learner-3.log");
    want_version = (double)final;
    cJSON *st = wait_learner(reached, 120000);
    cr_assert_not_null(st, "the resumed learner did not reach v%" PRIu64 "; logs in %s", final,
                       rs.dir);
    cJSON_Delete(st);
    books bk;
    wait_books_balance(&bk, 120000);
    cr_expect_eq(bk.version, (double)final, "the learner went past its budget");
    cr_expect_eq(bk.rec.version, final);
    cr_expect_gt(bk.resent[0] + bk.resent[1], 0, "no actor resent anything to a restarted learner");
    cr_expect_gt(bk.learned, 0);

    /* versions numbered on: one metrics line per update, in order, the
     * first update after the SIGTERM once; at most the update recorded
     * just before the SIGKILL lacks its line */
    double last_step = 0, last_env = 0;
    int seen_v1 = 0;
    int lines = read_metrics(&last_step, &last_env, (double)v1 + 1, &seen_v1);
    cr_expect_eq(seen_v1, 1, "update %" PRIu64 " has %d metrics lines", v1 + 1, seen_v1);
    cr_expect_eq(last_step, (double)final);
    cr_expect_eq(last_env, bk.learned);
    cr_expect_geq(lines, (int)final - 1, "%d metrics lines for %" PRIu64 " updates", lines, final);

    /* the last KEEP versions and the base stay; nothing else */
    for (uint64_t v = 0; v <= final + 1; v++) {
        bool keep = v == 0 || (v + KEEP > final && v <= final);
        cr_expect(ckpt_exists("policy", v) == keep, "policy v%" PRIu64 " %s", v,
              keep ? "missing" : "not pruned");
        cr_expect(ckpt_exists("optim", v) == keep, "optim v%" PRIu64 " %s", v,
              keep ? "missing" : "not pruned");
    }

    stop(a, ACTORS[0]);
    stop(b, ACTORS[1]);
    stop(learner, "learner");
}

/* ==== refusals ==== */

/* Run gtrt with the shared sets plus `args` to completion; its exit code,
 * its stderr in out. */
static int run_to_end(const char *args, char *out, size_t len, bool shared_sets)
{
    char cmd[4096];
    int n = snprintf(cmd, sizeof cmd, "%s learner", GTRT_BIN_PATH);
    for (int i = 0; shared_sets && i < N_SETS; i++)
        n += snprintf(cmd + n, sizeof cmd - (size_t)n, " --set '%s'", rs.sets[i]);
    snprintf(cmd + n, sizeof cmd - (size_t)n, " %s 2>&1", args);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t got = fread(out, 1, len - 1, p);
    out[got] = 0;
    int rc = pclose(p);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void expect_refused(const char *args, bool shared_sets, const char *needle)
{
    static char out[1 << 16];
    int rc = run_to_end(args, out, sizeof out, shared_sets);
    cr_expect_eq(rc, 1, "`gtrt learner %s` exited %d:\n%s", args, rc, out);
    cr_expect(strstr(out, needle) != NULL, "`gtrt learner %s` does not say \"%s\":\n%s", args,
              needle, out);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

static int answers(const cJSON *st) { return st != NULL; }

Test(resume, what_cannot_be_resumed_is_refused_with_a_reason, .timeout = 300,
     .fini = kill_children)
{
    rs_setup("refuse");
    char args[512], path[512], empty[256];
    snprintf(args, sizeof args, "--resume %s/nowhere", rs.dir);
    expect_refused(args, false, "cannot resume");
    snprintf(empty, sizeof empty, "%s/empty", rs.dir);
    cr_assert_eq(mkdir(empty, 0755), 0);
    snprintf(args, sizeof args, "--resume %s", empty);
    expect_refused(args, false, "config.ini");
    snprintf(path, sizeof path, "%s/config.ini", empty);
    write_file(path, "[run]\nseed = 1\n"); /* a configuration alone is not a run */
    expect_refused(args, true, "no ingest-state.txt");

    /* a real run directory at v0: a learner started and stopped */
    pid_t l = spawn("learner", true, NULL, 0, "learner-fresh.log");
    want_version = 0;
    cJSON *st = wait_learner(answers, 60000);
    cr_assert_not_null(st, "the learner never answered; logs in %s", rs.dir);
    cJSON_Delete(st);
    stop(l, "learner");

    /* it resumes at v0 */
    l = resume_learner(NULL, "learner-resumed.log");
    st = wait_learner(answers, 60000);
    cr_assert_not_null(st, "the resumed learner never answered; logs in %s", rs.dir);
    cr_expect_eq(counter(st, "policy_version"), 0);
    cJSON_Delete(st);
    /* and while it runs, no second learner may write the same directory */
    snprintf(args, sizeof args,
             "--resume %s --set learner.bind=ipc://%s/second --set learner.publish_bind=ipc://%s/pub2",
             rs.run, rs.dir, rs.dir);
    expect_refused(args, false, "is in use by another learner (pid");
    stop(l, "resumed learner");

    snprintf(args, sizeof args, "--resume %s --set env.name=ezpoints", rs.run);
    expect_refused(args, false, "the policy plays numberline, env.name is ezpoints");

    char rec[512], saved[4096];
    snprintf(rec, sizeof rec, "%s/ingest-state.txt", rs.run);
    FILE *f = fopen(rec, "r");
    cr_assert_not_null(f);
    saved[fread(saved, 1, sizeof saved - 1, f)] = 0;
    fclose(f);
    write_file(rec, "gtrt-learner-state 1\npolicy_version 4\nenv_steps_learned 0\ngtrt-ingest 2 0\n");
    snprintf(args, sizeof args, "--resume %s", rs.run);
    expect_refused(args, false, "its record names v4 but");

    write_file(rec, saved);
    snprintf(path, sizeof path, "%s/checkpoints/optim-v000000.safetensors", rs.run);
    cr_assert_eq(unlink(path), 0);
    expect_refused(args, false, "optim-v000000.safetensors: cannot open");

    snprintf(path, sizeof path, "%s/checkpoints/policy-v000000.safetensors", rs.run);
    cr_assert_eq(unlink(path), 0);
    expect_refused(args, false, "the base policy");

    cr_assert_eq(unlink(rec), 0);
    expect_refused(args, false, "no ingest-state.txt");
}

Test(learner, a_config_that_cannot_train_is_refused_at_start, .timeout = 60)
{
    rs_setup("badconfig");
    expect_refused("--set ppo.num_steps=16 --set ppo.minibatch=32", true,
                   "ppo.minibatch (32) is larger than ppo.num_steps (16)");
    cr_expect_neq(access(rs.run, F_OK), 0, "a refused learner created its run directory");
}

/* `gtrt up` knows how many actors it starts: a run they could never fill
 * one update for is refused before anything is started. */
Test(learner, up_refuses_actors_that_cannot_fill_an_update, .timeout = 60)
{
    rs_setup("up");
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "%s up --set up.actors=1 --set actor.max_unacked_steps=16 --set ppo.num_steps=32 "
             "--set run.out_dir=%s/runs --set run.name=up 2>&1",
             GTRT_BIN_PATH, rs.dir);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    static char out[1 << 16];
    out[fread(out, 1, sizeof out - 1, p)] = 0;
    int rc = pclose(p);
    cr_expect(WIFEXITED(rc) && WEXITSTATUS(rc) == 2, "gtrt up exited %d:\n%s", rc, out);
    cr_expect(strstr(out, "up.actors (1) x actor.max_unacked_steps (16) is below ppo.num_steps (32)"),
              "no reason given:\n%s", out);
    cr_expect_neq(access(rs.run, F_OK), 0, "gtrt up started the run anyway");
}
