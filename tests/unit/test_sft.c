/* Tests of learner/sft: the oracle data (deterministic, late turns covered,
 * imperfect answers still well-formed) and supervised training that lowers
 * the loss and turns a random NumberLine policy into a clearly better one. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "actor/rollout.h"
#include "common/tokenizer.h"
#include "learner/eval.h"
#include "learner/sft.h"

static env_params test_params(void)
{
    env_params p;
    env_params_default(&p);
    return p;
}

Test(sft, data_is_deterministic)
{
    env_params ep = test_params();
    traj_step *a, *b;
    err e = {0};
    sft_data_config dc = {.imperfect = 0.3};
    cr_assert_eq(sft_make_data_with("numberline", &ep, 40, 9, &dc, &a, &e), 0, "%s", e.msg);
    cr_assert_eq(sft_make_data_with("numberline", &ep, 40, 9, &dc, &b, &e), 0, "%s", e.msg);
    for (int i = 0; i < 40; i++) {
        cr_assert_eq(a[i].n_prompt, b[i].n_prompt);
        cr_assert_eq(a[i].n_answer, b[i].n_answer);
        cr_assert_eq(memcmp(a[i].prompt, b[i].prompt, a[i].n_prompt * sizeof(int32_t)), 0);
        cr_assert_eq(memcmp(a[i].answer, b[i].answer, a[i].n_answer * sizeof(int32_t)), 0);
        cr_assert_eq(memcmp(a[i].image, b[i].image, 3 * 16 * 64), 0);
    }
    sft_data_free(a, 40);
    sft_data_free(b, 40);
}

/* Points24 episodes take about ten oracle turns; the samples must include
 * states near the end of them, not only the first few. */
Test(sft, data_covers_late_turns)
{
    env_params ep = test_params();
    traj_step *d;
    err e = {0};
    cr_assert_eq(sft_make_data("points24", &ep, 64, 3, &d, &e), 0, "%s", e.msg);
    uint32_t max_turn = 0;
    int late = 0;
    for (int i = 0; i < 64; i++) {
        max_turn = d[i].turn > max_turn ? d[i].turn : max_turn;
        late += d[i].turn >= 6;
    }
    cr_assert_geq(max_turn, 8, "latest state sampled: turn %u", max_turn);
    cr_assert_geq(late, 8, "%d samples from turn 6 on", late);
    sft_data_free(d, 64);
}

/* Imperfect answers are wrong in content, never in form, and every answer
 * ends in <end> with its action tokens marked. */
Test(sft, imperfect_answers_stay_well_formed)
{
    env_params ep = test_params();
    const char *envs[] = {"numberline", "ezpoints", "blackjack"};
    for (int k = 0; k < 3; k++) {
        traj_step *d, *clean;
        err e = {0};
        sft_data_config dc = {.imperfect = 1.0};
        cr_assert_eq(sft_make_data_with(envs[k], &ep, 32, 5, &dc, &d, &e), 0, "%s", e.msg);
        cr_assert_eq(sft_make_data(envs[k], &ep, 32, 5, &clean, &e), 0, "%s", e.msg);
        env *ev;
        cr_assert_eq(env_new(envs[k], &ep, &ev, &e), 0);
        int differ = 0;
        for (int i = 0; i < 32; i++) {
            char text[ENV_TEXT_MAX];
            tok_decode(d[i].answer, (int)d[i].n_answer, text, sizeof text);
            env_parsed p;
            env_parse_answer(ev, text, &p);
            cr_assert(p.valid, "%s: %s (%s)", envs[k], text, p.why);
            cr_assert_eq(d[i].answer[d[i].n_answer - 1], TOK_END);
            int actions = 0;
            for (uint32_t t = 0; t < d[i].n_answer; t++)
                actions += d[i].kind[t] == TRAJ_KIND_ACTION;
            cr_assert_geq(actions, 1);
            differ += d[i].n_answer != clean[i].n_answer ||
                      memcmp(d[i].answer, clean[i].answer, d[i].n_answer * sizeof(int32_t)) != 0;
        }
        cr_assert_geq(differ, 8, "%s: only %d of 32 answers changed", envs[k], differ);
        env_free(ev);
        sft_data_free(d, 32);
        sft_data_free(clean, 32);
    }
}

Test(sft, model_config_follows_env)
{
    env_params ep = test_params();
    model_config mc;
    err e = {0};
    cr_assert_eq(sft_model_config("tiny", "blackjack", &ep, &mc, &e), 0, "%s", e.msg);
    cr_assert_eq(mc.vocab_size, TOK_VOCAB_SIZE);
    cr_assert_eq(mc.image_c, 3);
    cr_assert_eq(mc.image_h, 48);
    cr_assert_eq(mc.image_w, 64);
    /* The rollout (which checks the shape) accepts it. */
    rollout_config rc = {.env = "blackjack", .n_envs = 2, .temperature = 0.2f, .top_k = 5,
                         .max_new = 8, .seed = 1};
    rollout *ro;
    cr_assert_eq(rollout_new(&rc, &mc, &ep, "t", &ro, &e), 0, "%s", e.msg);
    int c, h, w;
    rollout_image_shape(ro, &c, &h, &w);
    cr_assert(c == 3 && h == 48 && w == 64);
    rollout_free(ro);
    cr_assert_eq(sft_model_config("huge", "numberline", &ep, &mc, &e), GTRT_EINVAL);
    cr_assert_eq(sft_model_config("tiny", "chess", &ep, &mc, &e), GTRT_ENOTFOUND);
}

typedef struct sft_loss_window {
    int steps;
    double first, last; /* loss summed over the first and the last 10 steps */
} sft_loss_window;

static void test_on_step(void *ud, const sft_fit_progress *p)
{
    sft_loss_window *w = ud;
    if (p->step <= 10)
        w->first += p->loss;
    if (p->step > w->steps - 10)
        w->last += p->loss;
}

/* A small model learns NumberLine from oracle answers: the loss falls and
 * the success rate beats the same model's untrained (random) weights on the
 * same seeded episodes by a clear margin. */
Test(sft, numberline_beats_random_policy, .timeout = 300)
{
    env_params ep = test_params();
    err e = {0};
    model_config mc;
    cr_assert_eq(sft_model_config("tiny", "numberline", &ep, &mc, &e), 0, "%s", e.msg);
    model *m;
    cr_assert_eq(model_new(&mc, &m, &e), 0, "%s", e.msg);
    rng r;
    rng_init(&r, 11);
    model_init_random(m, &r);

    eval_config ec;
    eval_config_default(&ec);
    snprintf(ec.env, sizeof ec.env, "numberline");
    ec.episodes = 64;
    ec.seed = 4;
    eval_result before, after;
    cr_assert_eq(eval_run(m, &ep, &ec, &before, &e), 0, "%s", e.msg);

    traj_step *d;
    const int n = 4096, steps = 600, batch = 32;
    cr_assert_eq(sft_make_data("numberline", &ep, n, 7, &d, &e), 0, "%s", e.msg);
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
    double first = 0, last = 0;
    sft_loss_window w = {.steps = steps};
    sft_stats st;
    cr_assert_eq(sft_fit(m, o, d, n, steps, batch, &r, test_on_step, &w, &st, &e), 0, "%s", e.msg);
    first = w.first / 10;
    last = w.last / 10;
    cr_assert_lt(last, 0.25 * first, "loss %.3f -> %.3f", first, last);

    cr_assert_eq(eval_run(m, &ep, &ec, &after, &e), 0, "%s", e.msg);
    cr_log_info("loss %.3f -> %.3f", first, last);
    cr_log_info("numberline: random weights %.2f [%.2f, %.2f], after %d sft steps %.2f [%.2f, %.2f]",
                before.success_rate, before.ci_low, before.ci_high, steps, after.success_rate,
                after.ci_low, after.ci_high);
    cr_assert_gt(after.format_valid, 0.95);
    cr_assert_geq(after.success_rate, before.success_rate + 0.25, "%.2f vs random %.2f",
                  after.success_rate, before.success_rate);
    cr_assert_gt(after.ci_low, before.ci_high);
    optim_free(o);
    sft_data_free(d, n);
    model_free(m);
}

/* Thought-only steps leave the action tokens out of the loss. */
Test(sft, thought_only_counts_fewer_tokens)
{
    env_params ep = test_params();
    err e = {0};
    model_config mc;
    cr_assert_eq(sft_model_config("tiny", "numberline", &ep, &mc, &e), 0);
    model *m;
    cr_assert_eq(model_new(&mc, &m, &e), 0);
    rng r;
    rng_init(&r, 1);
    model_init_random(m, &r);
    traj_step *d;
    cr_assert_eq(sft_make_data("numberline", &ep, 4, 1, &d, &e), 0);
    optim_config oc;
    optim_config_default(&oc);
    optim *o;
    cr_assert_eq(optim_new(&oc, m->n_params, NULL, 0, &o, &e), 0);
    int idx[4] = {0, 1, 2, 3};
    sft_stats all = {0}, thought = {0};
    cr_assert_eq(sft_step(m, o, d, idx, 4, false, &all, &e), 0, "%s", e.msg);
    cr_assert_eq(sft_step(m, o, d, idx, 4, true, &thought, &e), 0, "%s", e.msg);
    int actions = 0;
    for (int i = 0; i < 4; i++)
        for (uint32_t t = 0; t < d[i].n_answer; t++)
            actions += d[i].kind[t] == TRAJ_KIND_ACTION;
    cr_assert_eq(all.tokens - thought.tokens, actions);
    cr_assert_eq(sft_step(m, o, d, idx, 0, false, &all, &e), GTRT_EINVAL);
    optim_free(o);
    sft_data_free(d, 4);
    model_free(m);
}
