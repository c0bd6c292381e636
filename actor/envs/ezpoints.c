/* EZPoints: make 12 from two cards (gym_cards' EZPoints).
 *
 * The deal follows gym_cards: a first card of rank 2..13 (J, Q, K count
 * 10); when its value divides 12 (2, 3, 4, 6) the second card is, with
 * probability 1/2, 12 divided by it, otherwise 12 minus it; then the two
 * are swapped with probability 1/2. Every hand is therefore solvable.
 * Actions 1..10 + * =. A number not among the remaining cards: -1 (the
 * episode goes on, and the rejected move counts toward the length, as in
 * gym_cards); '=': +10 when the formula uses both cards and equals 12,
 * else -1, and the episode ends; more than 5 tokens: -1, truncated. */
#include "actor/envs/arith.h"

#include "common/rng.h"

static const char *const ezpoints_actions[] = {"1", "2", "3", "4", "5", "6", "7",
                                               "8", "9", "10", "+", "*", "="};

static const arith_rules ezpoints_rules = {
    .name = "ezpoints",
    .n_cards = 2,
    .target = 12,
    .max_len = 5,
    .ops = FORMULA_OPS_EZ,
    .end_on_illegal = false,
    .actions = ezpoints_actions,
    .n_actions = sizeof ezpoints_actions / sizeof ezpoints_actions[0],
    .task = "make 12 from the two cards , each used once",
    .native_w = 32,
};

static const env_key ezpoints_keys[] = {
    {"cards", ENV_KEY_ARRAY},
    {"formula", ENV_KEY_STRING},
    {"thoughts", ENV_KEY_STRING},
    {"action", ENV_KEY_STRING},
};

static void ezpoints_init(void *st, const env_params *p) { arith_init(st, &ezpoints_rules, p); }

static void ezpoints_reset(void *st, uint64_t seed)
{
    rng r;
    rng_init(&r, seed);
    int rank[2];
    font_suit suit[2];
    rank[0] = 2 + (int)rng_below(&r, 12);
    suit[0] = (font_suit)rng_below(&r, 4);
    int v = env_card_value(rank[0]);
    bool divides = v == 2 || v == 3 || v == 4 || v == 6;
    /* Draw the coin even when it is not needed, so the suit and the swap
     * below always come from the same positions of the stream. */
    bool product = rng_float(&r) < 0.5f;
    rank[1] = (divides && product) ? 12 / v : 12 - v;
    suit[1] = (font_suit)rng_below(&r, 4);
    if (rng_float(&r) < 0.5f) {
        int t = rank[0];
        rank[0] = rank[1];
        rank[1] = t;
        font_suit u = suit[0];
        suit[0] = suit[1];
        suit[1] = u;
    }
    arith_deal(st, rank, suit);
}

static bool ezpoints_deal(void *st, const int *cards, int n)
{
    return arith_deal_ranks(st, cards, n);
}

static void ezpoints_step(void *st, int action, env_result *out) { arith_step(st, action, out); }
static bool ezpoints_legal(const void *st, int action) { return arith_legal(st, action); }
static bool ezpoints_won(const void *st) { return ((const arith_state *)st)->won; }
static void ezpoints_draw(const void *st, render_canvas *c) { arith_draw(st, c); }

static int ezpoints_prompt(const void *st, char *buf, size_t cap)
{
    return arith_prompt(st, buf, cap);
}

static int ezpoints_oracle(const void *st, env_answer *a) { return arith_oracle(st, a); }

static int ezpoints_format(const void *st, const env_answer *a, char *buf, size_t cap)
{
    return arith_format(st, a, buf, cap);
}

static void ezpoints_info(const void *st, struct cJSON *obj) { arith_info(st, obj); }

const env_vtable ezpoints_vtable = {
    .name = "ezpoints",
    .actions = ezpoints_actions,
    .n_actions = sizeof ezpoints_actions / sizeof ezpoints_actions[0],
    .keys = ezpoints_keys,
    .n_keys = 4,
    .native_w = 32,
    .native_h = 32,
    .format_valid = 3.0,
    .format_invalid = -2.0,
    .state_size = sizeof(arith_state),
    .init = ezpoints_init,
    .reset = ezpoints_reset,
    .deal = ezpoints_deal,
    .step = ezpoints_step,
    .legal = ezpoints_legal,
    .won = ezpoints_won,
    .draw = ezpoints_draw,
    .prompt = ezpoints_prompt,
    .oracle = ezpoints_oracle,
    .format = ezpoints_format,
    .info = ezpoints_info,
};
