/* The RL updates learn: from a deliberately weak warm start on NumberLine
 * (SFT on answers whose action is the wrong move 60 % of the time, measured
 * below 50 % success), a seeded `gtrt up` run with one learner and two
 * actors over tcp on loopback reaches at least 90 % success. The test
 * asserts on the outcome only, with a generous update budget (the default
 * configuration gets there in about 30 updates); it never looks at time.
 * Both measurements are `gtrt eval` runs on the same 200 seeded episodes. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define LEARN_UPDATES 150

static char learn_dir[128];

static void learn_rmdir(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", learn_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", learn_dir);
}

/* Run `cmd` with its output in `log`; return its exit code and, in *out,
 * the last 8 KiB of that output (static buffer) for failure messages. */
static int learn_run(const char *cmd, const char *log, const char **out)
{
    static char buf[8192 + 1];
    char full[8192];
    snprintf(full, sizeof full, "%s > '%s' 2>&1", cmd, log);
    int rc = system(full);
    buf[0] = 0;
    FILE *f = fopen(log, "r");
    if (f) {
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        fseek(f, size > 8192 ? size - 8192 : 0, SEEK_SET);
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = 0;
        fclose(f);
    }
    *out = buf;
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* Success rate of `ckpt` on the evaluation's 200 seeded episodes. */
static double learn_eval(const char *ckpt)
{
    char cmd[1024], log[256];
    snprintf(cmd, sizeof cmd, "%s eval '%s' --episodes 200 --seed 7 --json", GTRT_BIN_PATH, ckpt);
    snprintf(log, sizeof log, "%s/eval.json", learn_dir);
    const char *out;
    int rc = learn_run(cmd, log, &out);
    cr_assert_eq(rc, 0, "gtrt eval failed:\n%s", out);
    const char *json = out; /* the JSON object is the last line starting with '{' */
    for (const char *c = out; *c; c++)
        if (*c == '{' && (c == out || c[-1] == '\n'))
            json = c;
    cJSON *j = cJSON_Parse(json);
    cr_assert_not_null(j, "gtrt eval --json printed no JSON:\n%s", out);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "success_rate");
    cr_assert(cJSON_IsNumber(s), "no success_rate in:\n%s", out);
    double v = s->valuedouble;
    cJSON_Delete(j);
    return v;
}

Test(learning, numberline_ppo_from_a_weak_start_reaches_90_percent, .timeout = 1800,
     .fini = learn_rmdir)
{
    snprintf(learn_dir, sizeof learn_dir, "/tmp/gtrt-learning-%d", (int)getpid());
    char cfg[512], start[256], cmd[4096], log[256];
    snprintf(cfg, sizeof cfg, "%s/deploy/configs/default.ini", getenv("GTRT_SOURCE_DIR"));
    snprintf(start, sizeof start, "%s/start.safetensors", learn_dir);
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", learn_dir);
    cr_assert_eq(system(cmd), 0);

    const char *out;
    snprintf(cmd, sizeof cmd,
             "%s sft --config '%s' --set sft.wrong_action=0.6 --eval-episodes 0 -o '%s'",
             GTRT_BIN_PATH, cfg, start);
    snprintf(log, sizeof log, "%s/sft.log", learn_dir);
    cr_assert_eq(learn_run(cmd, log, &out), 0, "gtrt sft failed:\n%s", out);
    double before = learn_eval(start);
    cr_log_info("warm start: %.1f %% success", 100 * before);
    cr_assert_lt(before, 0.5, "the warm start is not weak: %.1f %% success", 100 * before);

    int base = 21000 + (int)(getpid() % 20000);
    snprintf(cmd, sizeof cmd,
             "%s up --config '%s' --set ppo.init_checkpoint='%s' --set run.out_dir='%s' "
             "--set ppo.updates=%d --set up.eval_episodes=0 --set metrics.prometheus_bind= "
             "--set learner.bind=tcp://127.0.0.1:%d --set learner.connect=tcp://127.0.0.1:%d "
             "--set teacher.bind=tcp://127.0.0.1:%d --set learner.publish_bind=tcp://127.0.0.1:%d "
             "--set learner.publish_connect=tcp://127.0.0.1:%d",
             GTRT_BIN_PATH, cfg, start, learn_dir, LEARN_UPDATES, base, base, base + 1, base + 2,
             base + 2);
    snprintf(log, sizeof log, "%s/up.log", learn_dir);
    int rc = learn_run(cmd, log, &out);
    cr_assert_eq(rc, 0, "gtrt up failed:\n%s", out);

    char final_ckpt[512];
    snprintf(final_ckpt, sizeof final_ckpt, "%s/numberline-ppo/checkpoints/policy-v%06d.safetensors",
             learn_dir, LEARN_UPDATES);
    double after = learn_eval(final_ckpt);
    cr_log_info("after %d updates: %.1f %% success", LEARN_UPDATES, 100 * after);
    cr_expect_geq(after, 0.9, "PPO did not learn: %.1f %% -> %.1f %% success", 100 * before,
                  100 * after);
}
