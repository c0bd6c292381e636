/* The four card games: every reward path by hand-written cases, the end of
 * episodes (terminated or truncated), illegal moves, seeding, and the
 * answer / format-reward plumbing every env shares. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/test_util.h"
#include "actor/envs/env.h"
#include "actor/envs/formula.h"


static env *make(const char *name, bool solvable_only)
{
    env_params p;
    env_params_default(&p);
    p.solvable_only = solvable_only;
    env *e = NULL;
    err er = {0};
    REQUIRE((env_new(name, &p, &e, &er)) == (0), "%s", er.msg);
    return e;
}

static void deal(env *e, const int *cards, int n)
{
    err er = {0};
    REQUIRE((env_deal(e, cards, n, &er)) == (0), "%s", er.msg);
}

/* Play a space-separated list of action names; returns the last result and
 * checks that every step but the last left the episode running. */
static env_result play(env *e, const char *actions)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", actions);
    env_result r = {0};
    char *save = NULL;
    int i = 0;
    for (char *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save), i++) {
        REQUIRE(!(env_done(e)), "episode over before action %d (%s)", i, t);
        int a = env_action_find(e, t);
        REQUIRE((a) >= (0), "unknown action %s", t);
        err er = {0};
        REQUIRE((env_step(e, a, &r, &er)) == (0), "%s", er.msg);
    }
    return r;
}

static char *info_json(const env *e)
{
    cJSON *o = cJSON_CreateObject();
    env_info(e, o);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* ==== registry ==== */

Test(envs, registry_lists_four_and_rejects_unknown)
{
    CHECK((env_registry_count()) == (4), "(env_registry_count()) == (4)");
    const char *want[] = {"numberline", "ezpoints", "points24", "blackjack"};
    for (int i = 0; i < 4; i++)
        CHECK(strcmp(env_registry_name(i), want[i]) == 0, "strcmp(env_registry_name(i), want[i]) == 0");
    env *e = (env *)1;
    err er = {0};
    CHECK((env_new("alfworld", NULL, &e, &er)) == (GTRT_ENOTFOUND), "(env_new(\"alfworld\", NULL, &e, &er)) == (GTRT_ENOTFOUND)");
    CHECK((e) == NULL, "(e) == NULL");
    CHECK(strstr(er.msg, "alfworld") != NULL, "strstr(er.msg, \"alfworld\") != NULL");
}

Test(envs, bad_image_size_is_an_error)
{
    env_params p;
    env_params_default(&p);
    p.image_w = 100000;
    env *e = NULL;
    CHECK((env_new("points24", &p, &e, NULL)) == (GTRT_ERANGE), "(env_new(\"points24\", &p, &e, NULL)) == (GTRT_ERANGE)");
    env_params_default(&p);
    p.image_c = 2;
    CHECK((env_new("points24", &p, &e, NULL)) == (GTRT_ERANGE), "(env_new(\"points24\", &p, &e, NULL)) == (GTRT_ERANGE)");
}

/* ==== points24 ==== */

Test(points24, exact_solution_8_over_3_minus_8_thirds)
{
    env *e = make("points24", true);
    deal(e, (int[]){8, 3, 8, 3}, 4);
    env_result r = play(e, "8 / ( 3 - 8 / 3 ) =");
    CHECK((r.reward) == (10.0), "(r.reward) == (10.0)");
    CHECK(r.terminated && r.done && !r.truncated, "r.terminated && r.done && !r.truncated");
    CHECK(env_won(e), "env_won(e)");
    env_free(e);
}

Test(points24, face_cards_count_ten)
{
    env *e = make("points24", true);
    deal(e, (int[]){11, 12, 13, 4}, 4); /* J Q K 4: 10 + 10 + 4 = 24 */
    env_result r = play(e, "10 + 10");
    CHECK(r.legal, "r.legal");
    r = play(e, "+ 4 =");
    CHECK((r.reward) == (-1.0), "J + Q + 4 = 24 leaves K unused");
    env_free(e);

    e = make("points24", true);
    deal(e, (int[]){11, 12, 13, 3}, 4);
    r = play(e, "10 + 10 + 10 - 3 =");
    CHECK((r.reward) == (-1.0), "27 is not 24");
    env_deal(e, (int[]){11, 2, 13, 2}, 4, NULL);
    r = play(e, "10 + 2 + 10 + 2 =");
    CHECK((r.reward) == (10.0), "(r.reward) == (10.0)");
    env_free(e);
}

Test(points24, number_not_among_cards_ends_with_minus_one)
{
    env *e = make("points24", true);
    deal(e, (int[]){1, 2, 3, 4}, 4);
    env_result r = play(e, "5");
    CHECK(!(r.legal), "!(r.legal)");
    CHECK((r.reward) == (-1.0), "(r.reward) == (-1.0)");
    CHECK(r.terminated && r.done && !r.truncated, "r.terminated && r.done && !r.truncated");
    err er = {0};
    CHECK((env_step(e, 0, &r, &er)) == (GTRT_ESTATE), "no step after the end");
    env_free(e);
}

Test(points24, a_card_is_used_once)
{
    env *e = make("points24", true);
    deal(e, (int[]){2, 2, 6, 6}, 4);
    env_result r = play(e, "2 * 2 *");
    CHECK(r.legal && !r.done, "r.legal && !r.done");
    int legal[ENV_MAX_ACTIONS];
    int n = env_legal_actions(e, legal);
    CHECK((n) == (1 + 7), "only 6 among the numbers, plus the 7 operators");
    r = play(e, "2");
    CHECK(!(r.legal), "!(r.legal)");
    CHECK(r.done, "r.done");
    env_free(e);
}

Test(points24, wrong_or_incomplete_formula_at_equals)
{
    const char *cases[] = {
        "1 + 2 + 3 + 4 =",       /* 10 */
        "4 * 6 =",               /* 24 without all cards: cards 4 6 1 1 below */
        "( 4 * 6 * 1 * 1 =",     /* unbalanced */
        "4 * 6 * 1 * 1 ) =",     /* unbalanced */
        "4 6 * 1 * 1 =",         /* juxtaposed numbers are not 46 */
        "- 4 * 6 * 1 * 1 =",     /* no unary minus */
        "=",                     /* empty */
    };
    int hands[][4] = {{1, 2, 3, 4}, {4, 6, 1, 1}, {4, 6, 1, 1}, {4, 6, 1, 1},
                      {4, 6, 1, 1}, {4, 6, 1, 1}, {4, 6, 1, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        env *e = make("points24", true);
        deal(e, hands[i], 4);
        env_result r = play(e, cases[i]);
        CHECK((r.reward) == (-1.0), "%s", cases[i]);
        CHECK(r.terminated, "%s", cases[i]);
        CHECK(!(env_won(e)), "!(env_won(e))");
        env_free(e);
    }
    env *e = make("points24", true);
    deal(e, (int[]){4, 6, 1, 1}, 4);
    CHECK((play(e, "4 * 6 * 1 * 1 =").reward) == (10.0), "(play(e, \"4 * 6 * 1 * 1 =\").reward) == (10.0)");
    env_free(e);
}

Test(points24, division_by_zero_loses)
{
    env *e = make("points24", true);
    deal(e, (int[]){1, 1, 3, 8}, 4);
    env_result r = play(e, "8 * 3 / ( 1 - 1 ) =");
    CHECK((r.reward) == (-1.0), "(r.reward) == (-1.0)");
    env_free(e);
}

Test(points24, formula_longer_than_20_tokens_is_truncated)
{
    env *e = make("points24", true);
    deal(e, (int[]){1, 2, 3, 4}, 4);
    int open = env_action_find(e, "(");
    env_result r;
    for (int i = 1; i <= 20; i++) {
        REQUIRE((env_step(e, open, &r, NULL)) == (0), "(env_step(e, open, &r, NULL)) == (0)");
        CHECK((r.reward) == (0.0), "step %d", i);
        CHECK(!(r.done), "step %d", i);
    }
    REQUIRE((env_step(e, open, &r, NULL)) == (0), "(env_step(e, open, &r, NULL)) == (0)");
    CHECK((r.reward) == (-1.0), "(r.reward) == (-1.0)");
    CHECK(r.truncated && r.done && !r.terminated, "r.truncated && r.done && !r.terminated");
    env_free(e);
}

Test(points24, same_seed_same_deal_and_solvable_only)
{
    env *a = make("points24", true), *b = make("points24", true);
    int unsolvable = 0;
    env *raw = make("points24", false);
    for (uint64_t seed = 0; seed < 400; seed++) {
        env_reset(a, seed);
        env_reset(b, seed);
        char *x = info_json(a), *y = info_json(b);
        CHECK(strcmp(x, y) == 0, "strcmp(x, y) == 0");
        free(x);
        free(y);
        env_answer ans;
        REQUIRE((env_oracle(a, &ans, NULL)) == (0), "(env_oracle(a, &ans, NULL)) == (0)");
        CHECK(formula_hand_solvable(ans.seen, 4, 24, FORMULA_OPS_P24), "seed %llu", (unsigned long long)seed);
        env_reset(raw, seed);
        REQUIRE((env_oracle(raw, &ans, NULL)) == (0), "(env_oracle(raw, &ans, NULL)) == (0)");
        unsolvable += !formula_hand_solvable(ans.seen, 4, 24, FORMULA_OPS_P24);
    }
    /* About 27% of uniform deals have no solution. */
    CHECK(unsolvable > 40 && unsolvable < 180, "%d unsolvable of 400", unsolvable);
    env_reset(a, 1);
    char *x = info_json(a);
    env_reset(a, 2);
    char *y = info_json(a);
    CHECK(strcmp(x, y) != 0, "different seeds, different deals");
    free(x);
    free(y);
    env_free(a);
    env_free(b);
    env_free(raw);
}

Test(points24, prompt_never_shows_the_cards)
{
    env *e = make("points24", true);
    deal(e, (int[]){13, 7, 9, 1}, 4);
    play(e, "10 +");
    char p[ENV_TEXT_MAX];
    env_prompt(e, p, sizeof p);
    CHECK(strcmp(p, "make 24 from the four cards , each used once . formula : 10 +") == 0, "strcmp(p, \"make 24 from the four cards , each used once . formula : 10 +\") == 0");
    env_free(e);
}

/* ==== ezpoints ==== */

Test(ezpoints, deals_always_make_12)
{
    env *e = make("ezpoints", true);
    int products = 0;
    for (uint64_t seed = 0; seed < 500; seed++) {
        env_reset(e, seed);
        env_answer a;
        REQUIRE((env_oracle(e, &a, NULL)) == (0), "(env_oracle(e, &a, NULL)) == (0)");
        int x = a.seen[0], y = a.seen[1];
        CHECK(x + y == 12 || x * y == 12, "seed %llu: %d %d", (unsigned long long)seed, x, y);
        products += x * y == 12 && x + y != 12;
    }
    CHECK(products > 20, "the product deals appear (%d)", products);
    env_free(e);
}

Test(ezpoints, rewards)
{
    env *e = make("ezpoints", true);
    deal(e, (int[]){3, 4}, 2);
    env_result r = play(e, "3 * 4 =");
    CHECK((r.reward) == (10.0), "(r.reward) == (10.0)");
    CHECK(r.terminated && env_won(e), "r.terminated && env_won(e)");

    deal(e, (int[]){3, 4}, 2);
    r = play(e, "3 + 4 =");
    CHECK((r.reward) == (-1.0), "7 is not 12");
    CHECK(r.terminated && !env_won(e), "r.terminated && !env_won(e)");

    deal(e, (int[]){2, 10}, 2);
    r = play(e, "10 =");
    CHECK((r.reward) == (-1.0), "both cards must be used");

    deal(e, (int[]){13, 2}, 2);
    r = play(e, "10 + 2 =");
    CHECK((r.reward) == (10.0), "K counts 10");
    env_free(e);
}

Test(ezpoints, illegal_number_costs_one_and_counts_toward_length)
{
    env *e = make("ezpoints", true);
    deal(e, (int[]){3, 4}, 2);
    int five = env_action_find(e, "5");
    env_result r;
    for (int i = 1; i <= 5; i++) {
        REQUIRE((env_step(e, five, &r, NULL)) == (0), "(env_step(e, five, &r, NULL)) == (0)");
        CHECK(!(r.legal), "!(r.legal)");
        CHECK((r.reward) == (-1.0), "(r.reward) == (-1.0)");
        CHECK(!(r.done), "an illegal number does not end EZPoints (step %d)", i);
    }
    REQUIRE((env_step(e, five, &r, NULL)) == (0), "(env_step(e, five, &r, NULL)) == (0)");
    CHECK(r.truncated && r.done, "r.truncated && r.done");
    CHECK((r.reward) == (-1.0), "(r.reward) == (-1.0)");
    env_free(e);
}

Test(ezpoints, longer_than_5_tokens_is_truncated)
{
    env *e = make("ezpoints", true);
    deal(e, (int[]){3, 4}, 2);
    env_result r = play(e, "3 + + + +");
    CHECK(!(r.done), "!(r.done)");
    r = play(e, "+");
    CHECK(r.truncated && r.done && !r.terminated, "r.truncated && r.done && !r.terminated");
    CHECK((r.reward) == (-1.0), "(r.reward) == (-1.0)");
    env_free(e);
}

/* ==== numberline ==== */

Test(numberline, deal_start_differs_from_target)
{
    env *e = make("numberline", true);
    int seen[6][6] = {{0}};
    for (uint64_t seed = 0; seed < 2000; seed++) {
        env_reset(e, seed);
        env_answer a;
        env_oracle(e, &a, NULL);
        REQUIRE(a.seen[0] >= 0 && a.seen[0] <= 5 && a.seen[1] >= 0 && a.seen[1] <= 5, "a.seen[0] >= 0 && a.seen[0] <= 5 && a.seen[1] >= 0 && a.seen[1] <= 5");
        CHECK((a.seen[0]) != (a.seen[1]), "(a.seen[0]) != (a.seen[1])");
        seen[a.seen[0]][a.seen[1]]++;
    }
    int pairs = 0;
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 6; j++)
            pairs += seen[i][j] > 0;
    CHECK((pairs) == (30), "every (start, target) pair occurs");
    env_free(e);
}

Test(numberline, rewards)
{
    env *e = make("numberline", true);
    deal(e, (int[]){2, 4}, 2);
    env_result r = play(e, "+");
    CHECK((r.reward) == (0.0), "closer");
    r = play(e, "-");
    CHECK((r.reward) == (-1.0), "further");
    r = play(e, "+ +");
    CHECK((r.reward) == (1.0), "(r.reward) == (1.0)");
    CHECK(r.terminated && env_won(e), "r.terminated && env_won(e)");

    deal(e, (int[]){0, 3}, 2);
    r = play(e, "-");
    CHECK((r.reward) == (-1.0), "clamped at 0: distance did not shrink");
    deal(e, (int[]){5, 3}, 2);
    r = play(e, "+");
    CHECK((r.reward) == (-1.0), "clamped at 5");
    env_free(e);
}

Test(numberline, truncated_after_10_steps)
{
    env *e = make("numberline", true);
    deal(e, (int[]){0, 5}, 2);
    env_result r = play(e, "- - - - - - - - -");
    CHECK(!(r.done), "!(r.done)");
    r = play(e, "-");
    CHECK(r.truncated && r.done && !r.terminated, "r.truncated && r.done && !r.terminated");
    CHECK((r.reward) == (-1.0), "(r.reward) == (-1.0)");
    env_free(e);
}

/* ==== blackjack ==== */

Test(blackjack, stand_outcomes)
{
    env *e = make("blackjack", true);
    deal(e, (int[]){10, 7, 10, 9}, 4); /* dealer 17 stands; player 19 */
    env_result r = play(e, "stand");
    CHECK((r.reward) == (1.0), "(r.reward) == (1.0)");
    CHECK(r.terminated && env_won(e), "r.terminated && env_won(e)");

    deal(e, (int[]){10, 10, 10, 6}, 4);
    CHECK((play(e, "stand").reward) == (-1.0), "(play(e, \"stand\").reward) == (-1.0)");

    deal(e, (int[]){12, 13, 10, 11}, 4);
    CHECK((play(e, "stand").reward) == (0.0), "20 against 20 is a draw");
    CHECK(!(env_won(e)), "!(env_won(e))");

    deal(e, (int[]){1, 6, 10, 8}, 4); /* dealer soft 17 stands */
    CHECK((play(e, "stand").reward) == (1.0), "(play(e, \"stand\").reward) == (1.0)");

    deal(e, (int[]){1, 10, 1, 10}, 4); /* naturals: a draw, nothing extra */
    CHECK((play(e, "stand").reward) == (0.0), "(play(e, \"stand\").reward) == (0.0)");
    env_free(e);
}

Test(blackjack, hitting_ends_in_a_bust)
{
    env *e = make("blackjack", true);
    for (uint64_t seed = 0; seed < 50; seed++) {
        env_reset(e, seed);
        deal(e, (int[]){10, 7, 10, 10}, 4);
        env_result r;
        int steps = 0;
        do
            REQUIRE((env_step(e, 1, &r, NULL)) == (0), "(env_step(e, 1, &r, NULL)) == (0)");
        while (!r.done && ++steps < 30);
        CHECK((r.reward) == (-1.0), "(r.reward) == (-1.0)");
        CHECK(r.terminated, "r.terminated");
    }
    env_free(e);
}

Test(blackjack, dealer_finishes_at_17_or_more_and_seeds_repeat)
{
    env *a = make("blackjack", true), *b = make("blackjack", true);
    for (uint64_t seed = 0; seed < 300; seed++) {
        env_reset(a, seed);
        env_reset(b, seed);
        env_result ra, rb;
        env_step(a, 1, &ra, NULL);
        env_step(b, 1, &rb, NULL);
        if (!ra.done) {
            env_step(a, 0, &ra, NULL);
            env_step(b, 0, &rb, NULL);
        }
        char *x = info_json(a), *y = info_json(b);
        CHECK(strcmp(x, y) == 0, "same seed, same cards");
        cJSON *o = cJSON_Parse(x);
        cJSON *d = cJSON_GetObjectItem(o, "dealer_total");
        cJSON *p = cJSON_GetObjectItem(o, "player_total");
        REQUIRE(d && p, "%s", x);
        /* After a player bust the dealer does not draw. */
        if (p->valueint <= 21)
            CHECK((d->valueint) >= (17), "%s", x);
        else
            CHECK((ra.reward) == (-1.0), "%s", x);
        CHECK((ra.reward) == (rb.reward), "(ra.reward) == (rb.reward)");
        cJSON_Delete(o);
        free(x);
        free(y);
    }
    env_free(a);
    env_free(b);
}

Test(blackjack, bad_deals_rejected)
{
    env *e = make("blackjack", true);
    err er = {0};
    CHECK((env_deal(e, (int[]){10, 7, 10}, 3, &er)) == (GTRT_EINVAL), "(env_deal(e, (int[]){10, 7, 10}, 3, &er)) == (GTRT_EINVAL)");
    CHECK((env_deal(e, (int[]){10, 7, 10, 14}, 4, &er)) == (GTRT_EINVAL), "(env_deal(e, (int[]){10, 7, 10, 14}, 4, &er)) == (GTRT_EINVAL)");
    CHECK((env_deal(e, (int[]){10, 7, 10, 10, 5}, 5, &er)) == (GTRT_EINVAL), "already bust");
    env_free(e);
}

/* ==== answers and format reward ==== */

Test(envs, valid_answer_plays_its_action_with_format_bonus)
{
    env *e = make("points24", true);
    deal(e, (int[]){8, 3, 8, 3}, 4);
    rng r;
    rng_init(&r, 1);
    env_turn t;
    const char *ans = "{\"cards\": [8, 3, 8, 3], \"formula\": \"\", \"thoughts\": \"x\", "
                      "\"action\": \"8\"}";
    REQUIRE((env_play_answer(e, ans, &r, &t, NULL)) == (0), "(env_play_answer(e, ans, &r, &t, NULL)) == (0)");
    CHECK(t.parsed.valid, "%s", t.parsed.why);
    CHECK(!(t.random_action), "!(t.random_action)");
    CHECK(strcmp(env_action_text(e, t.step.action), "8") == 0, "strcmp(env_action_text(e, t.step.action), \"8\") == 0");
    CHECK((t.format_reward) == (3.0), "(t.format_reward) == (3.0)");
    env_free(e);
}

Test(envs, invalid_answer_plays_a_seeded_random_legal_action)
{
    int counts[ENV_MAX_ACTIONS] = {0};
    for (uint64_t seed = 0; seed < 400; seed++) {
        env *e = make("points24", true);
        deal(e, (int[]){2, 2, 6, 6}, 4);
        rng r;
        rng_init(&r, seed);
        env_turn t;
        REQUIRE((env_play_answer(e, "{\"action\": ", &r, &t, NULL)) == (0), "(env_play_answer(e, \"{\\\"action\\\": \", &r, &t, NULL)) == (0)");
        CHECK(!(t.parsed.valid), "!(t.parsed.valid)");
        CHECK(t.random_action, "t.random_action");
        CHECK((t.format_reward) == (-2.0), "(t.format_reward) == (-2.0)");
        CHECK(t.step.legal, "the random action is a legal one");
        counts[t.step.action]++;
        /* Same seed, same choice. */
        env *e2 = make("points24", true);
        deal(e2, (int[]){2, 2, 6, 6}, 4);
        rng r2;
        rng_init(&r2, seed);
        env_turn t2;
        env_play_answer(e2, "garbage", &r2, &t2, NULL);
        CHECK((t2.step.action) == (t.step.action), "(t2.step.action) == (t.step.action)");
        env_free(e);
        env_free(e2);
    }
    int used = 0;
    for (int a = 0; a < ENV_MAX_ACTIONS; a++)
        used += counts[a] > 0;
    CHECK((used) == (2 + 7), "2, 6 and the seven operators all get drawn");
}

Test(envs, format_rewards_per_env_and_override)
{
    const char *names[] = {"numberline", "ezpoints", "points24", "blackjack"};
    double valid[] = {0.3, 3, 3, 0.3}, invalid[] = {-0.2, -2, -2, -0.2};
    for (int i = 0; i < 4; i++) {
        env *e = make(names[i], true);
        CHECK((env_format_reward(e, true)) == (valid[i]), "%s", names[i]);
        CHECK((env_format_reward(e, false)) == (invalid[i]), "%s", names[i]);
        env_free(e);
    }
    env_params p;
    env_params_default(&p);
    p.format_valid = 1;
    p.format_invalid = 0;
    env *e;
    REQUIRE((env_new("points24", &p, &e, NULL)) == (0), "(env_new(\"points24\", &p, &e, NULL)) == (0)");
    CHECK((env_format_reward(e, true)) == (1.0), "(env_format_reward(e, true)) == (1.0)");
    CHECK((env_format_reward(e, false)) == (0.0), "(env_format_reward(e, false)) == (0.0)");
    env_free(e);
}
