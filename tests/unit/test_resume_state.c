/* The learner's state on disk (learner/resume.h): a PPO update continued
 * from the saved policy, optimizer state and random stream equals, bit for
 * bit, the update of the run that never stopped; the commit record round
 * trips exactly and refuses inconsistent contents with a message; pruning
 * keeps version 0 and the last K versions. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/model.h"
#include "learner/resume.h"
#include "learner/train.h"
#include "tests/unit/test_util.h"

#define VOCAB 20

/* ==== continuing an update from disk ==== */

/* n steps of 3-turn episodes with seeded random tokens, images and rewards. */
static void make_steps(traj_step *s, int n, uint64_t seed, const model_config *mc)
{
    rng r;
    rng_init(&r, seed);
    size_t img = (size_t)mc->image_c * mc->image_h * mc->image_w;
    for (int i = 0; i < n; i++) {
        cr_assert_eq(traj_step_alloc(&s[i], 4, 5, 0, img), 0);
        snprintf(s[i].actor, sizeof s[i].actor, "actor-%d", i % 2);
        s[i].episode = (uint64_t)(i / 6);
        s[i].turn = (uint32_t)(i / 2 % 3);
        for (int k = 0; k < 4; k++)
            s[i].prompt[k] = (int32_t)rng_below(&r, VOCAB);
        for (int k = 0; k < 5; k++) {
            s[i].answer[k] = (int32_t)rng_below(&r, VOCAB);
            s[i].logprob[k] = -1.0f - 2.0f * rng_float(&r);
            s[i].kind[k] = (uint8_t)(k < 3 ? TRAJ_KIND_THOUGHT : TRAJ_KIND_ACTION);
        }
        for (size_t p = 0; p < img; p++)
            s[i].image[p] = (uint8_t)rng_below(&r, 256);
        s[i].value = rng_float(&r) - 0.5f;
        s[i].done = s[i].turn == 2;
        s[i].success = s[i].done && rng_below(&r, 2);
        s[i].reward = s[i].success ? 1.0f : -0.1f;
        s[i].format_valid = true;
    }
}

static void free_steps(traj_step *s, int n)
{
    for (int i = 0; i < n; i++)
        traj_step_free(&s[i]);
}

static optim *learner_optim(const model *m)
{
    optim_config oc;
    optim_config_default(&oc);
    oc.lr = 1e-3f;
    oc.warmup_steps = 2;
    oc.total_steps = 40;
    optim_range rg[256];
    cr_assert_leq(m->n_tensors, 256);
    int nr = model_decay_ranges(m, rg);
    optim *o;
    err e = {0};
    cr_assert_eq(optim_new(&oc, m->n_params, rg, nr, &o, &e), 0, "%s", e.msg);
    return o;
}

static void update(model *m, optim *o, rng *r, uint64_t seed)
{
    train_config tc = {0};
    ppo_hparams_default(&tc.ppo);
    tc.epochs = 2;
    tc.minibatch = 4;
    tc.temperature = 1.0f;
    traj_step s[12];
    make_steps(s, 12, seed, &m->cfg);
    train_stats st = {0};
    err e = {0};
    cr_assert_eq(train_update(m, o, s, 12, &tc, r, &st, &e), 0, "%s", e.msg);
    free_steps(s, 12);
}

static void mkdir_checkpoints(const char *dir)
{
    char p[512];
    snprintf(p, sizeof p, "%s/checkpoints", dir);
    cr_assert_eq(mkdir(p, 0755), 0);
}

/* Remove the files in dir/checkpoints, the folder, then dir (rmtree is flat). */
static void rm_run(char *dir)
{
    char ck[512];
    snprintf(ck, sizeof ck, "%s/checkpoints", dir);
    DIR *d = opendir(ck);
    struct dirent *de;
    char p[1024];
    while (d && (de = readdir(d)))
        if (de->d_name[0] != '.') {
            snprintf(p, sizeof p, "%s/%s", ck, de->d_name);
            unlink(p);
        }
    if (d)
        closedir(d);
    rmdir(ck);
    rmtree(dir);
}

Test(resume_state, an_update_continued_from_disk_equals_the_uninterrupted_one)
{
    char *dir = tmpdir();
    mkdir_checkpoints(dir);
    model_config mc;
    err e = {0};
    cr_assert_eq(model_config_preset("tiny", &mc, &e), 0, "%s", e.msg);
    mc.vocab_size = VOCAB;
    model *a;
    cr_assert_eq(model_new(&mc, &a, &e), 0, "%s", e.msg);
    rng ra;
    rng_init(&ra, 3);
    model_init_random(a, &ra);
    optim *oa = learner_optim(a);
    update(a, oa, &ra, 100);

    /* what the learner writes after update 1 */
    char policy[1024];
    resume_policy_path(dir, 1, policy, sizeof policy);
    st_kv meta[] = {{"policy_version", "1"}};
    cr_assert_eq(model_save_with(a, policy, meta, 1, &e), 0, "%s", e.msg);
    cr_assert_eq(resume_save_optim(dir, 1, oa, &ra, &e), 0, "%s", e.msg);
    float *after1 = malloc(a->n_params * sizeof *after1);
    memcpy(after1, a->params, a->n_params * sizeof *after1);

    update(a, oa, &ra, 200); /* the run that never stopped */

    model *b;
    cr_assert_eq(model_load(policy, &b, &e), 0, "%s", e.msg);
    optim *ob = learner_optim(b);
    rng rb;
    rng_init(&rb, 12345); /* overwritten by the saved stream */
    cr_assert_eq(resume_load_optim(dir, 1, ob, &rb, &e), 0, "%s", e.msg);
    update(b, ob, &rb, 200);

    cr_assert_eq(a->n_params, b->n_params);
    cr_expect_neq(memcmp(after1, a->params, a->n_params * sizeof *after1), 0,
                  "update 2 changed nothing: the comparison would prove nothing");
    cr_expect_eq(memcmp(a->params, b->params, a->n_params * sizeof *a->params), 0,
                 "the resumed update differs from the uninterrupted one");
    cr_expect_eq(memcmp(oa->m, ob->m, 2 * oa->n * sizeof *oa->m), 0, "moments differ");
    cr_expect_eq(oa->step, ob->step);
    cr_expect_eq(memcmp(&ra, &rb, sizeof ra), 0, "random streams differ");

    /* a file saved for another version is refused */
    char v1[1024], v2[1024];
    resume_optim_path(dir, 1, v1, sizeof v1);
    resume_optim_path(dir, 2, v2, sizeof v2);
    cr_assert_eq(rename(v1, v2), 0);
    cr_expect_neq(resume_load_optim(dir, 2, ob, &rb, &e), 0);
    cr_expect(strstr(e.msg, "optimizer state of version 1, expected 2") != NULL, "%s", e.msg);

    free(after1);
    optim_free(oa);
    optim_free(ob);
    model_free(a);
    model_free(b);
    rm_run(dir);
}

/* ==== the commit record ==== */

static const traj_limits LIM = {VOCAB, 64, 3, 8, 8};

static const char GOOD[] = "gtrt-learner-state 1\n"
                           "policy_version 7\n"
                           "env_steps_learned 30\n"
                           "gtrt-ingest 2 2\n"
                           "actor-a 1700000000000 5 40 20 15 5 2 2 8 9\n"
                           "actor-b 1700000000001 0 12 10 2 0 0 0\n";

static void write_record(const char *dir, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/" RESUME_RECORD, dir);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

/* Open and read the record of `dir` into a fresh ingest (max_actors
 * actors); returns the error code, the message in *e. */
static int read_record(const char *dir, ingest *g, size_t max_actors, resume_record *r, err *e)
{
    cr_assert_eq(ingest_init(g, &LIM, 2, max_actors), 0);
    int rc = resume_open(dir, r, e);
    return rc ? rc : resume_read_ingest(r, dir, g, e);
}

Test(resume_state, the_record_round_trips_exactly)
{
    char *dir = tmpdir();
    write_record(dir, GOOD);
    ingest g;
    resume_record r;
    err e = {0};
    cr_assert_eq(read_record(dir, &g, 8, &r, &e), 0, "%s", e.msg);
    cr_expect_eq(r.version, 7);
    cr_expect_eq(r.env_steps, 30);
    cr_assert_eq(g.n_actors, 2);
    const ingest_actor *a = &g.actors[0];
    cr_expect_str_eq(a->id, "actor-a");
    cr_expect_eq(a->incarnation, 1700000000000ull);
    cr_expect_eq(g.actors[1].incarnation, 1700000000001ull);
    cr_expect_eq(a->floor, 5);
    cr_expect_eq(a->n_acked, 2);
    cr_expect_eq(a->acked[0], 8);
    cr_expect_eq(a->acked[1], 9);
    cr_expect_eq(a->settled.steps, 40);
    cr_expect_eq(a->settled.learned, 20);
    cr_expect_eq(a->settled.stale, 15);
    cr_expect_eq(a->settled.invalid, 5);
    cr_expect_eq(a->duplicates, 2);
    cr_expect_eq(g.stats.settled.steps, 52);
    cr_expect_eq(g.stats.settled.learned, 30);
    cr_expect_eq(g.stats.settled.stale, 17);
    cr_expect_eq(g.stats.settled.invalid, 5);
    cr_expect_eq(g.stats.steps, 0, "this process's counters start at 0");
    cr_expect_null(r.f, "the record was left open");

    cr_assert_eq(resume_save_record(dir, 7, 30, &g, &e), 0, "%s", e.msg);
    char p[512], back[sizeof GOOD + 64] = {0};
    snprintf(p, sizeof p, "%s/" RESUME_RECORD, dir);
    FILE *f = fopen(p, "r");
    cr_assert_not_null(f);
    size_t n = fread(back, 1, sizeof back - 1, f);
    fclose(f);
    cr_expect_eq(n, strlen(GOOD));
    cr_expect_str_eq(back, GOOD);
    cr_expect_eq(resume_recorded_version(dir), 7);
    ingest_deinit(&g);
    rmtree(dir);
}

typedef struct bad_record {
    const char *text; /* NULL: no record at all */
    size_t max_actors;
    const char *needle;
} bad_record;

Test(resume_state, an_inconsistent_record_is_refused_with_a_message)
{
    static const bad_record cases[] = {
        {NULL, 8, "no ingest-state.txt"},
        {"gtrt-learner-state 9\npolicy_version 7\nenv_steps_learned 30\n", 8,
         "is not a \"gtrt-learner-state 1\" record"},
        {"gtrt-learner-state 1\npolicy_version seven\n", 8, "is not a \"gtrt-learner-state 1\""},
        {"gtrt-learner-state 1\npolicy_version 7\nenv_steps_learned 29\ngtrt-ingest 2 2\n"
         "actor-a 1 5 40 20 15 5 2 2 8 9\nactor-b 1 0 12 10 2 0 0 0\n",
         8, "says 29 steps were learned from, its actors add up to 30"},
        {"gtrt-learner-state 1\npolicy_version 7\nenv_steps_learned 30\ngtrt-ingest 2 1\n"
         "actor-a 1 5 41 20 15 5 2 0\n",
         8, "do not add up"},
        {"gtrt-learner-state 1\npolicy_version 7\nenv_steps_learned 40\ngtrt-ingest 2 2\n"
         "actor-a 1 5 40 20 15 5 2 0\nactor-a 1 5 40 20 15 5 2 0\n",
         8, "listed twice"},
        {"gtrt-learner-state 1\npolicy_version 7\nenv_steps_learned 20\ngtrt-ingest 2 1\n"
         "actor-a 1 5 40 20 15 5 2 2 4 9\n",
         8, "bad seq list"},
        {"gtrt-learner-state 1\npolicy_version 7\nenv_steps_learned 20\ngtrt-ingest 2 1\n"
         "actor-a 1 5 40 20 15 5 2 2 9\n",
         8, "bad seq list"},
        {"gtrt-learner-state 1\npolicy_version 7\nenv_steps_learned 20\ngtrt-ingest 2 1\n"
         "actor-a 1 5 40\n",
         8, "bad line 2"},
        {GOOD, 1, "more than net.max_peers (1)"},
        {"gtrt-learner-state 1\npolicy_version 7\nenv_steps_learned 20\ngtrt-ingest 1 1\nactor-a 5 0\n",
         8, "no \"gtrt-ingest 2\" header"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = tmpdir();
        if (cases[i].text)
            write_record(dir, cases[i].text);
        ingest g;
        resume_record r;
        err e = {0};
        int rc = read_record(dir, &g, cases[i].max_actors, &r, &e);
        CHECK(rc != 0, "case %zu was accepted", i);
        CHECK(strstr(e.msg, cases[i].needle) != NULL, "case %zu: \"%s\" lacks \"%s\"", i, e.msg,
              cases[i].needle);
        CHECK(strstr(e.msg, dir) != NULL, "case %zu: \"%s\" does not name the run", i, e.msg);
        CHECK(r.f == NULL, "case %zu left the record open", i);
        ingest_deinit(&g);
        rmtree(dir);
    }
    err e = {0};
    resume_record r;
    cr_expect_neq(resume_open("/nonexistent/gtrt-run", &r, &e), 0);
    cr_expect(strstr(e.msg, "No such file") != NULL, "%s", e.msg);
    cr_expect_eq(resume_recorded_version("/nonexistent/gtrt-run"), -1);
}

/* ==== keeping the last K ==== */

static void touch(const char *dir, const char *name)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/checkpoints/%s", dir, name);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fclose(f);
}

static bool present(const char *dir, const char *name)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/checkpoints/%s", dir, name);
    return access(p, F_OK) == 0;
}

Test(resume_state, pruning_keeps_version_0_and_the_last_k)
{
    char *dir = tmpdir();
    mkdir_checkpoints(dir);
    char name[64];
    for (int v = 0; v <= 6; v++) {
        snprintf(name, sizeof name, "policy-v%06d.safetensors", v);
        touch(dir, name);
        snprintf(name, sizeof name, "optim-v%06d.safetensors", v);
        touch(dir, name);
    }
    touch(dir, "policy-v000002.safetensors.tmp.99"); /* not ours to judge */
    touch(dir, "notes.txt");
    resume_prune(dir, 6, 2);
    for (int v = 0; v <= 6; v++) {
        bool keep = v == 0 || v >= 5;
        snprintf(name, sizeof name, "policy-v%06d.safetensors", v);
        CHECK(present(dir, name) == keep, "%s: %s", name, keep ? "deleted" : "kept");
        snprintf(name, sizeof name, "optim-v%06d.safetensors", v);
        CHECK(present(dir, name) == keep, "%s: %s", name, keep ? "deleted" : "kept");
    }
    cr_expect(present(dir, "policy-v000002.safetensors.tmp.99"));
    cr_expect(present(dir, "notes.txt"));
    resume_prune(dir, 2, 3); /* nothing old enough */
    cr_expect(present(dir, "policy-v000005.safetensors"));
    rm_run(dir);
}
