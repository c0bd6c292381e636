/* Figures about the card-game envs: how many random Points24 deals can
 * make 24, how many tokens a turn costs per env when the oracle answers,
 * and how long the oracle takes. Prints; never fails on a number. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "actor/envs/env.h"
#include "actor/envs/formula.h"
#include "common/tokenizer.h"

static double bench_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Exact: every ordered hand of four ranks 1..13 (uniform deals). */
static void bench_solvable(void)
{
    long solvable = 0, total = 0;
    for (int a = 1; a <= 13; a++)
        for (int b = 1; b <= 13; b++)
            for (int c = 1; c <= 13; c++)
                for (int d = 1; d <= 13; d++) {
                    int v[4] = {env_card_value(a), env_card_value(b), env_card_value(c),
                                env_card_value(d)};
                    solvable += formula_hand_solvable(v, 4, 24, FORMULA_OPS_P24);
                    total++;
                }
    long ms = 0, mtotal = 0;
    for (int a = 1; a <= 10; a++)
        for (int b = a; b <= 10; b++)
            for (int c = b; c <= 10; c++)
                for (int d = c; d <= 10; d++) {
                    int v[4] = {a, b, c, d};
                    ms += formula_hand_solvable(v, 4, 24, FORMULA_OPS_P24);
                    mtotal++;
                }
    printf("points24 solvable deals: %ld of %ld uniform rank deals = %.2f%% "
           "(%ld of %ld value multisets)\n",
           solvable, total, 100.0 * solvable / total, ms, mtotal);
}

/* Oracle episodes: tokens per turn (8x8 patches + prompt + answer). */
static void bench_tokens(const char *name, int episodes)
{
    env *e;
    if (env_new(name, NULL, &e, NULL))
        return;
    int c, h, w;
    env_image_shape(e, &c, &h, &w);
    int patches = (h / 8) * (w / 8);
    long turns = 0, sum = 0, max = 0, won = 0, sum_prompt = 0, sum_answer = 0;
    double t_oracle = 0, worst = 0;
    for (int ep = 0; ep < episodes; ep++) {
        env_reset(e, (uint64_t)ep);
        while (!env_done(e)) {
            char prompt[ENV_TEXT_MAX], answer[ENV_TEXT_MAX];
            env_answer a;
            double t0 = bench_now();
            env_oracle(e, &a, NULL);
            double dt = bench_now() - t0;
            t_oracle += dt;
            if (dt > worst)
                worst = dt;
            env_prompt(e, prompt, sizeof prompt);
            env_answer_format(e, &a, answer, sizeof answer);
            int32_t ids[512];
            int np = tok_encode_prompt(prompt, ids, 512, NULL);
            int na = tok_encode_answer(answer, ids, 512, NULL);
            long n = patches + np + na;
            sum += n;
            sum_prompt += np;
            sum_answer += na;
            if (n > max)
                max = n;
            turns++;
            env_result r;
            env_step(e, a.action, &r, NULL);
        }
        won += env_won(e);
    }
    printf("%-10s %dx%d  %2d patches  prompt %.1f  answer %.1f  turn mean %.1f max %ld tokens  "
           "%.2f turns/episode  oracle wins %.1f%%  oracle %.3f ms mean, %.3f ms worst\n",
           name, w, h, patches, (double)sum_prompt / turns, (double)sum_answer / turns,
           (double)sum / turns, max, (double)turns / episodes, 100.0 * won / episodes,
           1e3 * t_oracle / turns, 1e3 * worst);
    env_free(e);
}

/* The oracle as a corrector sees the policy's states, often dead ends: time
 * it on random play. */
static void bench_oracle_random(int episodes)
{
    env *e;
    if (env_new("points24", NULL, &e, NULL))
        return;
    rng r;
    rng_init(&r, 7);
    long calls = 0, dead = 0;
    double total = 0, worst = 0;
    for (int ep = 0; ep < episodes; ep++) {
        env_reset(e, (uint64_t)ep);
        while (!env_done(e)) {
            env_answer a;
            double t0 = bench_now();
            env_oracle(e, &a, NULL);
            double dt = bench_now() - t0;
            total += dt;
            worst = dt > worst ? dt : worst;
            calls++;
            dead += !a.solvable;
            int legal[ENV_MAX_ACTIONS];
            int n = env_legal_actions(e, legal);
            env_result res;
            env_step(e, legal[rng_below(&r, (uint64_t)n)], &res, NULL);
        }
    }
    printf("points24 oracle on random play: %ld states (%.0f%% dead ends), %.3f ms mean, "
           "%.1f ms worst\n",
           calls, 100.0 * dead / calls, 1e3 * total / calls, 1e3 * worst);
    env_free(e);
}

int main(int argc, char **argv)
{
    int episodes = argc > 1 ? atoi(argv[1]) : 300;
    if (episodes < 1)
        episodes = 300;
    bench_solvable();
    for (int i = 0; i < env_registry_count(); i++)
        bench_tokens(env_registry_name(i), episodes);
    bench_oracle_random(episodes);
    return 0;
}
