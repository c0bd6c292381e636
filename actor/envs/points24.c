/* Points24: make 24 from four cards (gym_cards' Points24 as played by
 * RL4VLM, GTR and GTR-Turbo).
 *
 * Four cards, ranks 1..13 drawn uniformly with random suits; J, Q, K count
 * 10. Actions 1..10 + - * / ( ) =, each appending to the formula. A number
 * not among the remaining cards: -1 and the episode ends (GTR's rule); '=':
 * +10 when the formula uses all four cards and equals 24 exactly, else -1,
 * and the episode ends; a formula longer than 20 tokens: -1, truncated.
 * By default only solvable hands are dealt (rejection sampling on the same
 * seeded stream, so a seed still fixes the deal): of the 13^4 equally
 * likely rank deals, 20876 (73.1%) can make 24 (tests/bench/bench_envs). */
#include "actor/envs/arith.h"

#include "common/rng.h"

static const char *const points24_actions[] = {"1", "2", "3", "4", "5", "6", "7", "8", "9",
                                               "10", "+", "-", "*", "/", "(", ")", "="};

static const arith_rules points24_rules = {
    .name = "points24",
    .n_cards = 4,
    .target = 24,
    .max_len = 20,
    .ops = FORMULA_OPS_P24,
    .end_on_illegal = true,
    .actions = points24_actions,
    .n_actions = sizeof points24_actions / sizeof points24_actions[0],
    .task = "make 24 from the four cards , each used once",
    .native_w = 64,
};

static const env_key points24_keys[] = {
    {"cards", ENV_KEY_ARRAY},
    {"formula", ENV_KEY_STRING},
    {"thoughts", ENV_KEY_STRING},
    {"action", ENV_KEY_STRING},
};

static void points24_init(void *st, const env_params *p) { arith_init(st, &points24_rules, p); }

static void points24_reset(void *st, uint64_t seed)
{
    arith_state *s = st;
    rng r;
    rng_init(&r, seed);
    int rank[4];
    font_suit suit[4];
    for (;;) {
        int v[4];
        for (int i = 0; i < 4; i++) {
            rank[i] = 1 + (int)rng_below(&r, 13);
            suit[i] = (font_suit)rng_below(&r, 4);
            v[i] = env_card_value(rank[i]);
        }
        if (!s->solvable_only || formula_hand_solvable(v, 4, 24, FORMULA_OPS_P24))
            break;
    }
    arith_deal(s, rank, suit);
}

static bool points24_deal(void *st, const int *cards, int n)
{
    return arith_deal_ranks(st, cards, n);
}

static void points24_step(void *st, int action, env_result *out) { arith_step(st, action, out); }
static bool points24_legal(const void *st, int action) { return arith_legal(st, action); }
static bool points24_won(const void *st) { return ((const arith_state *)st)->won; }
static void points24_draw(const void *st, render_canvas *c) { arith_draw(st, c); }

static int points24_prompt(const void *st, char *buf, size_t cap)
{
    return arith_prompt(st, buf, cap);
}

static int points24_oracle(const void *st, env_answer *a) { return arith_oracle(st, a); }

static int points24_format(const void *st, const env_answer *a, char *buf, size_t cap)
{
    return arith_format(st, a, buf, cap);
}

static void points24_info(const void *st, struct cJSON *obj) { arith_info(st, obj); }

const env_vtable points24_vtable = {
    .name = "points24",
    .actions = points24_actions,
    .n_actions = sizeof points24_actions / sizeof points24_actions[0],
    .keys = points24_keys,
    .n_keys = 4,
    .native_w = 64,
    .native_h = 32,
    .format_valid = 3.0,
    .format_invalid = -2.0,
    .state_size = sizeof(arith_state),
    .init = points24_init,
    .reset = points24_reset,
    .deal = points24_deal,
    .step = points24_step,
    .legal = points24_legal,
    .won = points24_won,
    .draw = points24_draw,
    .prompt = points24_prompt,
    .oracle = points24_oracle,
    .format = points24_format,
    .info = points24_info,
};
