/* Tests of learner/eval: the Wilson interval, deterministic results for a
 * seed, episode counting, and refusal of checkpoints built for another env
 * image shape or vocabulary. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "actor/rollout.h"
#include "common/tokenizer.h"
#include "learner/eval.h"
#include "learner/sft.h"

static model *test_model(const char *envname, uint64_t seed)
{
    env_params ep;
    env_params_default(&ep);
    model_config mc;
    err e = {0};
    cr_assert_eq(sft_model_config("tiny", envname, &ep, &mc, &e), 0, "%s", e.msg);
    model *m;
    cr_assert_eq(model_new(&mc, &m, &e), 0, "%s", e.msg);
    rng r;
    rng_init(&r, seed);
    model_init_random(m, &r);
    return m;
}

Test(eval, wilson_interval)
{
    double lo, hi;
    eval_wilson(5, 10, &lo, &hi);
    cr_assert_float_eq(lo, 0.2366, 1e-4);
    cr_assert_float_eq(hi, 0.7634, 1e-4);
    eval_wilson(0, 10, &lo, &hi);
    cr_assert_float_eq(lo, 0, 1e-12);
    cr_assert_float_eq(hi, 0.2775, 1e-4);
    eval_wilson(10, 10, &lo, &hi);
    cr_assert_float_eq(hi, 1, 1e-12);
    cr_assert_float_eq(lo, 0.7225, 1e-4);
}

Test(eval, same_seed_same_result)
{
    env_params ep;
    env_params_default(&ep);
    model *m = test_model("numberline", 3);
    eval_config c;
    eval_config_default(&c);
    snprintf(c.env, sizeof c.env, "numberline");
    c.episodes = 24;
    c.batch = 8;
    c.seed = 5;
    eval_result a, b, other;
    err e = {0};
    cr_assert_eq(eval_run(m, &ep, &c, &a, &e), 0, "%s", e.msg);
    cr_assert_eq(eval_run(m, &ep, &c, &b, &e), 0, "%s", e.msg);
    cr_assert_eq(a.episodes, 24);
    cr_assert_eq(a.wins, b.wins);
    cr_assert_eq(a.turns, b.turns);
    cr_assert_float_eq(a.mean_return, b.mean_return, 1e-12);
    cr_assert_float_eq(a.format_valid, b.format_valid, 1e-12);
    cr_assert(a.success_rate >= a.ci_low && a.success_rate <= a.ci_high);
    cr_assert_geq(a.mean_length, 1);
    c.seed = 6;
    cr_assert_eq(eval_run(m, &ep, &c, &other, &e), 0, "%s", e.msg);
    cr_assert(other.turns != a.turns || other.wins != a.wins ||
                  fabs(other.mean_return - a.mean_return) > 1e-9,
              "another seed played the very same episodes");
    model_free(m);
}

/* Counted episodes are the first N started, whatever the batch. */
Test(eval, counts_exactly_the_requested_episodes)
{
    env_params ep;
    env_params_default(&ep);
    model *m = test_model("blackjack", 1);
    eval_config c;
    eval_config_default(&c);
    snprintf(c.env, sizeof c.env, "blackjack");
    c.episodes = 13;
    c.batch = 4;
    eval_result r;
    err e = {0};
    cr_assert_eq(eval_run(m, &ep, &c, &r, &e), 0, "%s", e.msg);
    cr_assert_eq(r.episodes, 13);
    cr_assert_geq(r.turns, 13);
    c.episodes = 0;
    cr_assert_eq(eval_run(m, &ep, &c, &r, &e), GTRT_EINVAL);
    /* A model built for another env's picture is refused by the rollout. */
    snprintf(c.env, sizeof c.env, "numberline");
    c.episodes = 2;
    cr_assert_eq(eval_run(m, &ep, &c, &r, &e), GTRT_ECONFIG);
    model_free(m);
}

static void test_tmp_path(char *buf, size_t cap, const char *tag)
{
    snprintf(buf, cap, "/tmp/gtrt-test-eval-%ld-%s.safetensors", (long)getpid(), tag);
}

Test(eval, refuses_mismatched_checkpoints)
{
    env_params ep;
    env_params_default(&ep);
    err e = {0};
    char good[128], oldvocab[128], nohash[128], smallvocab[128];
    test_tmp_path(good, sizeof good, "good");
    test_tmp_path(oldvocab, sizeof oldvocab, "oldvocab");
    test_tmp_path(nohash, sizeof nohash, "nohash");
    test_tmp_path(smallvocab, sizeof smallvocab, "smallvocab");
    model *m = test_model("numberline", 2);
    char hash[32];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)tok_vocab_hash());
    st_kv ok[] = {{EVAL_META_VOCAB_HASH, hash}};
    st_kv bad[] = {{EVAL_META_VOCAB_HASH, "0123456789abcdef"}};
    cr_assert_eq(model_save_with(m, good, ok, 1, &e), 0, "%s", e.msg);
    cr_assert_eq(model_save_with(m, oldvocab, bad, 1, &e), 0, "%s", e.msg);
    cr_assert_eq(model_save(m, nohash, &e), 0, "%s", e.msg);
    model_free(m);

    cr_assert_eq(eval_check_checkpoint(good, "numberline", &ep, &e), 0, "%s", e.msg);
    /* No recorded hash: the vocabulary size and image shape still decide. */
    cr_assert_eq(eval_check_checkpoint(nohash, "numberline", &ep, &e), 0, "%s", e.msg);
    cr_assert_eq(eval_check_checkpoint(oldvocab, "numberline", &ep, &e), GTRT_ECONFIG);
    cr_assert(strstr(e.msg, "vocabulary"), "%s", e.msg);
    cr_assert_eq(eval_check_checkpoint(good, "points24", &ep, &e), GTRT_ECONFIG);
    cr_assert(strstr(e.msg, "images"), "%s", e.msg);
    env_params grey = ep;
    grey.image_c = 1;
    cr_assert_eq(eval_check_checkpoint(good, "numberline", &grey, &e), GTRT_ECONFIG);

    model_config mc;
    cr_assert_eq(sft_model_config("tiny", "numberline", &ep, &mc, &e), 0);
    mc.vocab_size = 100;
    cr_assert_eq(model_new(&mc, &m, &e), 0);
    cr_assert_eq(model_save(m, smallvocab, &e), 0, "%s", e.msg);
    model_free(m);
    cr_assert_eq(eval_check_checkpoint(smallvocab, "numberline", &ep, &e), GTRT_ECONFIG);
    cr_assert(strstr(e.msg, "vocabulary"), "%s", e.msg);
    cr_assert_neq(eval_check_checkpoint("/nonexistent/x.safetensors", "numberline", &ep, &e), 0);
    unlink(good);
    unlink(oldvocab);
    unlink(nohash);
    unlink(smallvocab);
}

/* eval_run and a hand-driven rollout see the same first episodes. */
typedef struct test_count {
    int episodes, wins;
} test_count;

static void test_on_episode(void *ud, traj_step *steps, size_t n)
{
    test_count *c = ud;
    if (steps[0].episode <= 8) {
        c->episodes++;
        c->wins += steps[n - 1].success;
    }
    for (size_t i = 0; i < n; i++)
        traj_step_free(&steps[i]);
    free(steps);
}

Test(eval, agrees_with_a_plain_rollout)
{
    env_params ep;
    env_params_default(&ep);
    model *m = test_model("numberline", 9);
    eval_config c;
    eval_config_default(&c);
    snprintf(c.env, sizeof c.env, "numberline");
    c.episodes = 8;
    c.batch = 4;
    c.seed = 2;
    eval_result r;
    err e = {0};
    cr_assert_eq(eval_run(m, &ep, &c, &r, &e), 0, "%s", e.msg);
    rollout_config rc = {.env = "numberline", .n_envs = 4, .temperature = c.temperature,
                         .top_k = c.top_k, .max_new = c.max_new, .seed = 2};
    rollout *ro;
    cr_assert_eq(rollout_new(&rc, &m->cfg, &ep, "eval", &ro, &e), 0, "%s", e.msg);
    test_count cnt = {0};
    while (cnt.episodes < 8)
        cr_assert_eq(rollout_turn(ro, m, 0, test_on_episode, &cnt, &e), 0, "%s", e.msg);
    cr_assert_eq(cnt.wins, r.wins);
    rollout_free(ro);
    model_free(m);
}
