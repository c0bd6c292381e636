/* The rollout's GTR corrector: with `correct` on, every step carries the
 * oracle's answer for the state it was taken in (a well-formed answer for
 * the env) with the policy's own action kept where the policy gave a valid
 * one; with it off, no step carries one. Seeded random tiny policies. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "actor/rollout.h"
#include "common/tokenizer.h"
#include "learner/sft.h"

typedef struct collected {
    traj_step steps[512];
    int n;
} collected;

static void collect(void *ud, traj_step *steps, size_t n)
{
    collected *c = ud;
    for (size_t i = 0; i < n; i++) {
        if (c->n < 512)
            c->steps[c->n++] = steps[i];
        else
            traj_step_free(&steps[i]);
    }
    free(steps);
}

/* The action token ids of an answer (kind ACTION), as a string of ids. */
static int action_ids(const int32_t *ids, const uint8_t *kind, int n, int32_t *out)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        if (kind[i] == TRAJ_KIND_ACTION)
            out[k++] = ids[i];
    return k;
}

static model *random_model(const char *envname)
{
    env_params ep;
    env_params_default(&ep);
    model_config mc;
    err e = {0};
    cr_assert_eq(sft_model_config("tiny", envname, &ep, &mc, &e), 0, "%s", e.msg);
    model *m;
    cr_assert_eq(model_new(&mc, &m, &e), 0, "%s", e.msg);
    rng r;
    rng_init(&r, 11);
    model_init_random(m, &r);
    return m;
}

/* A NumberLine policy that writes well-formed answers and reads the
 * picture, but acts at random: SFT on oracle answers with half the
 * actions wrong. */
static model *numberline_policy(void)
{
    model *m = random_model("numberline");
    env_params ep;
    env_params_default(&ep);
    err e = {0};
    traj_step *d;
    const int n = 2048, steps = 300;
    sft_data_config dc = {.imperfect = 0, .wrong_action = 0.5};
    cr_assert_eq(sft_make_data_with("numberline", &ep, n, 7, &dc, &d, &e), 0, "%s", e.msg);
    optim_config oc;
    optim_config_default(&oc);
    oc.lr = 3e-3f;
    oc.min_lr = 3e-4f;
    oc.total_steps = steps;
    oc.warmup_steps = steps / 20;
    optim_range ranges[64];
    int nr = model_decay_ranges(m, ranges);
    optim *o;
    cr_assert_eq(optim_new(&oc, m->n_params, ranges, nr, &o, &e), 0);
    rng r;
    rng_init(&r, 5);
    sft_stats st;
    cr_assert_eq(sft_fit(m, o, d, n, steps, 32, &r, NULL, NULL, &st, &e), 0, "%s", e.msg);
    optim_free(o);
    sft_data_free(d, n);
    return m;
}

static void play(const char *envname, model *m, bool correct, collected *c, rollout_stats *st)
{
    env_params ep;
    env_params_default(&ep);
    model_config mc = m->cfg;
    err e = {0};
    rollout_config rc = {.n_envs = 4, .temperature = 1.0f, .top_k = 0, .max_new = 64, .seed = 3,
                         .format_reward = true,
                         .guide = correct ? ROLLOUT_GUIDE_ORACLE : ROLLOUT_GUIDE_NONE};
    snprintf(rc.env, sizeof rc.env, "%s", envname);
    rollout *ro;
    cr_assert_eq(rollout_new(&rc, &mc, &ep, "actor-t", &ro, &e), 0, "%s", e.msg);
    for (int t = 0; t < 40 && c->n < 40; t++)
        cr_assert_eq(rollout_turn(ro, m, 1, collect, c, &e), 0, "%s", e.msg);
    *st = *rollout_get_stats(ro);
    rollout_free(ro);
}

Test(rollout, gtr_corrector_writes_the_oracle_answer_with_the_policys_action)
{
    const char *envs[] = {"points24", "ezpoints", "numberline", "blackjack"};
    for (int k = 0; k < 5; k++) {
        /* the last round: a policy whose answers are valid, so its actions
         * can be seen to be kept */
        const char *name = envs[k < 4 ? k : 2];
        model *m = k < 4 ? random_model(name) : numberline_policy();
        collected *c = calloc(1, sizeof *c);
        rollout_stats st;
        play(name, m, true, c, &st);
        model_free(m);
        cr_assert_gt(c->n, 0, "%s: no finished episode", name);
        env *ev;
        env_params ep;
        env_params_default(&ep);
        err e = {0};
        cr_assert_eq(env_new(name, &ep, &ev, &e), 0, "%s", e.msg);
        int kept_action = 0;
        for (int i = 0; i < c->n; i++) {
            traj_step *s = &c->steps[i];
            cr_assert_gt(s->n_teacher, 0, "%s step %d has no corrected answer", name, i);
            char fixed[1024], own[1024];
            tok_decode(s->teacher_answer, (int)s->n_teacher, fixed, sizeof fixed);
            env_parsed p;
            env_parse_answer(ev, fixed, &p);
            cr_expect(p.valid, "%s: corrected answer not well formed: %s (%s)", name, fixed,
                      p.why);
            if (!s->format_valid)
                continue;
            /* the policy's valid action is the one kept */
            int32_t a[64], b[64];
            int na = action_ids(s->answer, s->kind, (int)s->n_answer, a);
            int nb = action_ids(s->teacher_answer, s->teacher_kind, (int)s->n_teacher, b);
            tok_decode(s->answer, (int)s->n_answer, own, sizeof own);
            cr_expect(na == nb && memcmp(a, b, (size_t)na * sizeof *a) == 0,
                      "%s: action changed: %s -> %s", name, own, fixed);
            kept_action++;
        }
        cr_expect_geq(st.checked, (uint64_t)c->n);
        cr_expect_leq(st.corrected, st.checked);
        cr_expect_gt(st.corrected, 0, "%s: no answer was ever corrected", name);
        cr_expect_gt(st.oracle_s, 0.0);
        if (k == 4) {
            cr_expect_gt(kept_action, c->n / 2, "the trained policy wrote few valid answers");
            cr_expect_lt(st.corrected, st.checked, "a policy that reads right was always corrected");
        }
        env_free(ev);
        for (int i = 0; i < c->n; i++)
            traj_step_free(&c->steps[i]);
        free(c);
    }
}

Test(rollout, without_the_corrector_no_step_carries_an_answer_to_imitate)
{
    collected *c = calloc(1, sizeof *c);
    rollout_stats st;
    model *m = random_model("points24");
    play("points24", m, false, c, &st);
    model_free(m);
    cr_assert_gt(c->n, 0);
    for (int i = 0; i < c->n; i++) {
        cr_expect_eq(c->steps[i].n_teacher, 0);
        traj_step_free(&c->steps[i]);
    }
    cr_expect_eq(st.checked, 0);
    free(c);
}

/* Teacher guidance that does not come degrades, never stalls: with no
 * teacher known, and with a teacher endpoint where nobody answers, every
 * turn completes, its steps carry no guidance, are marked guide_failed and
 * are counted. */
Test(rollout, a_missing_teacher_leaves_steps_unguided_and_counted)
{
    model *m = random_model("ezpoints");
    env_params ep;
    env_params_default(&ep);
    err e = {0};
    rollout_config rc = {.n_envs = 4, .temperature = 1.0f, .top_k = 0, .max_new = 48, .seed = 5,
                         .format_reward = true};
    snprintf(rc.env, sizeof rc.env, "ezpoints");
    tclient_opts_default(&rc.teacher);
    rc.teacher.timeout_ms = 50;
    rc.teacher.attempts = 1;
    char nobody[128];
    snprintf(nobody, sizeof nobody, "ipc:///tmp/gtrt-test-rollout-nobody-%d", (int)getpid());
    const char *teachers[2] = {"", nobody};
    for (int guide = ROLLOUT_GUIDE_GEN; guide <= ROLLOUT_GUIDE_KL; guide++) {
        for (int t = 0; t < 2; t++) {
            rc.guide = (rollout_guide)guide;
            rollout *ro;
            cr_assert_eq(rollout_new(&rc, &m->cfg, &ep, "actor-t", &ro, &e), 0, "%s", e.msg);
            cr_assert_eq(rollout_set_teachers(ro, teachers[t], &e), 0, "%s", e.msg);
            collected *c = calloc(1, sizeof *c);
            for (int k = 0; k < 6; k++)
                cr_assert_eq(rollout_turn(ro, m, 1, collect, c, &e), 0, "%s", e.msg);
            const rollout_stats *st = rollout_get_stats(ro);
            cr_expect_eq(st->teacher_guided, 0);
            cr_expect_eq(st->teacher_failed, st->turns, "guide %d teachers '%s': %llu of %llu",
                         guide, teachers[t], (unsigned long long)st->teacher_failed,
                         (unsigned long long)st->turns);
            cr_expect_eq(st->turns, 24);
            for (int i = 0; i < c->n; i++) {
                cr_expect(c->steps[i].guide_failed);
                cr_expect(!c->steps[i].has_teacher_logprob);
                cr_expect_eq(c->steps[i].n_teacher, 0);
                cr_expect_geq(c->steps[i].act_ms, 0.0f);
                traj_step_free(&c->steps[i]);
            }
            free(c);
            rollout_free(ro);
        }
    }
    model_free(m);
}
