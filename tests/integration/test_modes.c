/* Training modes end to end: a short seeded `gtrt up` run on EZPoints per
 * mode completes, and its metrics show the guidance it should have: `gtr`
 * logs a non-zero SFT guidance loss on aggregated oracle corrections,
 * `turbo-sft` one on answers the merged teacher wrote, `turbo-kl` a teacher
 * KL on guided steps (exactly 0 while teacher and policy are both the warm
 * start), plain `ppo` no guidance at all. A mode the learner does not know
 * is refused at start, and so is a turbo mode without teachers. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char modes_dir[128];

static void modes_rmdir(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", modes_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", modes_dir);
}

/* Run a short EZPoints training in `mode` with `teachers` teachers;
 * returns gtrt up's exit code. */
static int modes_run(const char *mode, int port, int teachers)
{
    snprintf(modes_dir, sizeof modes_dir, "/tmp/gtrt-modes-%d", (int)getpid());
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "%s up --set run.mode=%s --set run.name=%s --set run.out_dir='%s' "
             "--set env.name=ezpoints --set model.preset=tiny --set sft.steps=30 "
             "--set sft.samples=512 --set sft.eval_episodes=0 --set ppo.updates=3 "
             "--set ppo.num_steps=64 --set ppo.minibatch=32 --set actor.envs=8 --set up.actors=2 "
             "--set up.teachers=%d --set up.eval_episodes=0 --set metrics.prometheus_bind= "
             "--set net.heartbeat_ms=200 --set teacher.bind=tcp://127.0.0.1:%d "
             "--set learner.bind=tcp://127.0.0.1:%d --set learner.connect=tcp://127.0.0.1:%d "
             "--set learner.publish_bind=tcp://127.0.0.1:%d "
             "--set learner.publish_connect=tcp://127.0.0.1:%d > '%s/%s.log' 2>&1",
             GTRT_BIN_PATH, mode, mode, modes_dir, teachers, port + 2, port, port, port + 1,
             port + 1, modes_dir, mode);
    char mk[256];
    snprintf(mk, sizeof mk, "mkdir -p '%s'", modes_dir);
    cr_assert_eq(system(mk), 0);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* Line `which` (1-based; 0: the last) of the run's metrics.jsonl, parsed. */
static cJSON *modes_metrics_line(const char *mode, int which)
{
    char path[256], line[1 << 14], last[1 << 14] = "";
    snprintf(path, sizeof path, "%s/%s/metrics.jsonl", modes_dir, mode);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "no %s", path);
    for (int k = 1; fgets(line, sizeof line, f); k++) {
        memcpy(last, line, sizeof last);
        if (k == which)
            break;
    }
    fclose(f);
    cJSON *j = cJSON_Parse(last);
    cr_assert_not_null(j, "%s: line %d is not JSON", path, which);
    return j;
}

static cJSON *modes_last_metrics(const char *mode) { return modes_metrics_line(mode, 0); }

static double modes_num(const cJSON *j, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    cr_assert(cJSON_IsNumber(v), "metric %s missing", key);
    return v->valuedouble;
}

Test(modes, gtr_trains_with_sft_guidance_on_oracle_corrections, .timeout = 600,
     .fini = modes_rmdir)
{
    int port = 23000 + (int)(getpid() % 20000);
    cr_assert_eq(modes_run("gtr", port, 0), 0, "gtrt up --set run.mode=gtr failed (%s/gtr.log)",
                 modes_dir);
    cJSON *j = modes_last_metrics("gtr");
    cr_expect_eq(modes_num(j, "step"), 3);
    cr_expect_gt(modes_num(j, "guide/sft_loss"), 0, "no SFT guidance loss");
    cr_expect_gt(modes_num(j, "guide/sft_samples"), 0, "nothing aggregated");
    double share = modes_num(j, "guide/corrected_share");
    cr_expect(share >= 0 && share <= 1, "corrected share %g", share);
    cJSON_Delete(j);
}

Test(modes, turbo_sft_trains_with_sft_guidance_on_teacher_answers, .timeout = 600,
     .fini = modes_rmdir)
{
    int port = 25000 + (int)(getpid() % 20000);
    cr_assert_eq(modes_run("turbo-sft", port, 1), 0, "gtrt up failed (%s/turbo-sft.log)",
                 modes_dir);
    cJSON *j = modes_last_metrics("turbo-sft");
    cr_expect_eq(modes_num(j, "step"), 3);
    cr_expect_gt(modes_num(j, "guide/sft_loss"), 0, "no SFT guidance loss");
    cr_expect_gt(modes_num(j, "guide/sft_samples"), 0, "no teacher answer aggregated");
    cr_expect_gt(modes_num(j, "guide/time_ms_per_step"), 0, "teacher time not reported");
    double failed = modes_num(j, "guide/teacher_failed_share");
    cr_expect(failed >= 0 && failed < 1, "teacher failed share %g: never guided", failed);
    cr_expect_geq(modes_num(j, "guide/teacher_version_lag"), 0);
    cr_expect_null(cJSON_GetObjectItemCaseSensitive(j, "train/teacher_kl"));
    cJSON_Delete(j);
}

Test(modes, turbo_kl_shapes_advantages_with_the_teachers_kl, .timeout = 600,
     .fini = modes_rmdir)
{
    int port = 26000 + (int)(getpid() % 20000);
    cr_assert_eq(modes_run("turbo-kl", port, 1), 0, "gtrt up failed (%s/turbo-kl.log)",
                 modes_dir);
    /* Update 1 learns from steps of the warm start v0, scored by a teacher
     * that has merged nothing but v0: the same weights, so the KL of each
     * step is 0 up to float rounding (teacher and actor run different code
     * paths: a batched full forward against the KV-cache sampler). */
    cJSON *first = modes_metrics_line("turbo-kl", 1);
    cr_expect_eq(modes_num(first, "step"), 1);
    if (cJSON_GetObjectItemCaseSensitive(first, "guide/kl_max")) /* teacher up in time */
        cr_expect_lt(modes_num(first, "guide/kl_max"), 1e-3, "teacher and policy differ at v0");
    cJSON_Delete(first);
    cJSON *j = modes_last_metrics("turbo-kl");
    cr_expect_eq(modes_num(j, "step"), 3);
    double guided = modes_num(j, "guide/guided_share");
    cr_expect(guided > 0 && guided <= 1, "guided share %g", guided);
    cr_expect_geq(modes_num(j, "train/teacher_kl"), 0);
    cr_expect_gt(modes_num(j, "guide/time_ms_per_step"), 0, "teacher time not reported");
    cr_expect_null(cJSON_GetObjectItemCaseSensitive(j, "guide/sft_loss"));
    cJSON_Delete(j);
}

Test(modes, a_turbo_mode_without_teachers_is_refused, .timeout = 120, .fini = modes_rmdir)
{
    int port = 27000 + (int)(getpid() % 20000);
    cr_expect_neq(modes_run("turbo-kl", port, 0), 0, "gtrt up ran turbo-kl without a teacher");
    char path[256], out[4096] = "";
    snprintf(path, sizeof path, "%s/turbo-kl.log", modes_dir);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = 0;
    fclose(f);
    cr_expect(strstr(out, "up.teachers must be at least 1") != NULL, "unclear message:\n%s", out);
}

Test(modes, ppo_logs_no_guidance, .timeout = 600, .fini = modes_rmdir)
{
    int port = 24000 + (int)(getpid() % 20000);
    cr_assert_eq(modes_run("ppo", port, 0), 0, "gtrt up failed (%s/ppo.log)", modes_dir);
    cJSON *j = modes_last_metrics("ppo");
    cr_expect_eq(modes_num(j, "step"), 3);
    cr_expect_null(cJSON_GetObjectItemCaseSensitive(j, "guide/sft_loss"));
    cr_expect_null(cJSON_GetObjectItemCaseSensitive(j, "train/teacher_kl"));
    cJSON_Delete(j);
}

Test(modes, an_unknown_mode_is_refused, .timeout = 120, .fini = modes_rmdir)
{
    snprintf(modes_dir, sizeof modes_dir, "/tmp/gtrt-modes-%d", (int)getpid());
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "%s learner --set run.mode=turbo-magic --set run.out_dir='%s' "
             "--set metrics.prometheus_bind= 2>&1",
             GTRT_BIN_PATH, modes_dir);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    char out[4096];
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    int rc = pclose(p);
    cr_expect(WIFEXITED(rc) && WEXITSTATUS(rc) != 0, "learner accepted an unknown mode");
    cr_expect(strstr(out, "run.mode 'turbo-magic'") != NULL, "unclear message:\n%s", out);
}
