/* Blackjack against a dealer (gym_cards' Blackjack, the Sutton & Barto
 * rules of gymnasium's Blackjack-v1 with natural=False).
 *
 * Infinite deck: every card is a uniform rank 1..13 with a uniform suit
 * (J, Q, K count 10, an ace 1 or 11). The dealer shows one card and hides
 * one; the player holds two. Actions 'stand' and 'hit'. Hitting past 21
 * loses at once (-1); standing lets the dealer draw while below 17 (a soft
 * 17 stands), then +1 win, 0 draw, -1 loss; a dealer bust is a win. A
 * natural is not paid extra.
 *
 * The oracle plays the exact expected-value optimum for what the player
 * sees (its cards and the dealer's up card; the hidden card is treated as
 * unknown, since peeking would not be a policy anyone can learn): dealer
 * outcome probabilities by enumeration, the player's hit / stand values by
 * dynamic programming over (hard total, holds an ace). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#include "actor/envs/env.h"
#include "common/rng.h"

/* 21 aces are 21; the 22nd card busts. The dealer stops far earlier. */
enum { BLACKJACK_MAX_CARDS = 24 };

typedef struct blackjack_card {
    int rank;
    font_suit suit;
} blackjack_card;

typedef struct blackjack_state {
    bool prompt_actions;
    rng r;
    blackjack_card dealer[BLACKJACK_MAX_CARDS], player[BLACKJACK_MAX_CARDS];
    int n_dealer, n_player;
    bool over;
    int outcome; /* +1, 0, -1 once over */
} blackjack_state;

static const char *const blackjack_actions[] = {"stand", "hit"};

static const env_key blackjack_keys[] = {
    {"dealer", ENV_KEY_ARRAY},
    {"player", ENV_KEY_ARRAY},
    {"thoughts", ENV_KEY_STRING},
    {"action", ENV_KEY_STRING},
};

/* ==== rules ==== */

static blackjack_card blackjack_draw(rng *r)
{
    blackjack_card c;
    c.rank = 1 + (int)rng_below(r, 13);
    c.suit = (font_suit)rng_below(r, 4);
    return c;
}

/* Total with a usable ace counted as 11; *soft tells whether it was. */
static int blackjack_total(const blackjack_card *h, int n, bool *soft)
{
    int sum = 0;
    bool ace = false;
    for (int i = 0; i < n; i++) {
        sum += env_card_value(h[i].rank);
        ace |= h[i].rank == 1;
    }
    bool usable = ace && sum + 10 <= 21;
    if (soft)
        *soft = usable;
    return usable ? sum + 10 : sum;
}

static void blackjack_init(void *st, const env_params *p)
{
    blackjack_state *s = st;
    s->prompt_actions = p->prompt_actions;
}

static void blackjack_reset(void *st, uint64_t seed)
{
    blackjack_state *s = st;
    rng_init(&s->r, seed);
    s->n_dealer = s->n_player = 0;
    s->dealer[s->n_dealer++] = blackjack_draw(&s->r);
    s->dealer[s->n_dealer++] = blackjack_draw(&s->r);
    s->player[s->n_player++] = blackjack_draw(&s->r);
    s->player[s->n_player++] = blackjack_draw(&s->r);
    s->over = false;
    s->outcome = 0;
}

static bool blackjack_deal(void *st, const int *cards, int n)
{
    blackjack_state *s = st;
    if (n < 4 || n > 2 + BLACKJACK_MAX_CARDS)
        return false;
    for (int i = 0; i < n; i++)
        if (cards[i] < 1 || cards[i] > 13)
            return false;
    blackjack_card h[BLACKJACK_MAX_CARDS];
    for (int i = 2; i < n; i++)
        h[i - 2] = (blackjack_card){cards[i], (font_suit)(i & 3)};
    if (blackjack_total(h, n - 2, NULL) > 21)
        return false;
    s->n_dealer = 2;
    s->dealer[0] = (blackjack_card){cards[0], SUIT_SPADES};
    s->dealer[1] = (blackjack_card){cards[1], SUIT_HEARTS};
    s->n_player = n - 2;
    memcpy(s->player, h, sizeof(blackjack_card) * (size_t)(n - 2));
    s->over = false;
    s->outcome = 0;
    return true;
}

static void blackjack_step(void *st, int action, env_result *out)
{
    blackjack_state *s = st;
    if (action == 1) {
        s->player[s->n_player++] = blackjack_draw(&s->r);
        if (blackjack_total(s->player, s->n_player, NULL) > 21) {
            s->outcome = -1;
            s->over = true;
        }
    } else {
        while (blackjack_total(s->dealer, s->n_dealer, NULL) < 17)
            s->dealer[s->n_dealer++] = blackjack_draw(&s->r);
        int p = blackjack_total(s->player, s->n_player, NULL);
        int d = blackjack_total(s->dealer, s->n_dealer, NULL);
        if (d > 21)
            d = 0;
        s->outcome = (p > d) - (p < d);
        s->over = true;
    }
    out->reward = s->outcome;
    out->terminated = s->over;
}

static bool blackjack_legal(const void *st, int action)
{
    (void)st;
    (void)action;
    return true;
}

static bool blackjack_won(const void *st)
{
    const blackjack_state *s = st;
    return s->over && s->outcome > 0;
}

/* ==== picture, prompt ==== */

/* Cards side by side, overlapping when more than four must fit in 64 px;
 * the rank in each card's top-left part stays visible. */
static void blackjack_draw_row(render_canvas *c, int y, const blackjack_card *h, int n,
                               bool hide_second)
{
    int step = n <= 4 ? 16 : (c->w - 1 - RENDER_CARD_W) / (n - 1);
    for (int i = 0; i < n; i++) {
        if (hide_second && i == 1)
            render_card_back(c, 1 + i * step, y);
        else
            render_card(c, 1 + i * step, y, h[i].rank, h[i].suit);
    }
}

static void blackjack_draw_obs(const void *st, render_canvas *c)
{
    const blackjack_state *s = st;
    blackjack_draw_row(c, 0, s->dealer, s->over ? s->n_dealer : 2, !s->over);
    blackjack_draw_row(c, RENDER_CARD_H, s->player, s->n_player, false);
}

static int blackjack_prompt(const void *st, char *buf, size_t cap)
{
    const blackjack_state *s = st;
    return snprintf(buf, cap, "blackjack : beat the dealer without going over 21 , stand or hit .%s",
                    s->prompt_actions ? " actions : stand hit" : "");
}

/* ==== oracle ==== */

static double blackjack_card_p(int value) { return value == 10 ? 4.0 / 13.0 : 1.0 / 13.0; }

/* Adds to p[0..4] the chance the dealer ends on 17..21 and to p[5] that
 * the dealer busts, from a hand of hard total `hard`. */
static void blackjack_dealer_rec(int hard, bool ace, double prob, double p[6])
{
    int total = (ace && hard + 10 <= 21) ? hard + 10 : hard;
    if (total >= 17) {
        p[total > 21 ? 5 : total - 17] += prob;
        return;
    }
    for (int v = 1; v <= 10; v++)
        blackjack_dealer_rec(hard + v, ace || v == 1, prob * blackjack_card_p(v), p);
}

/* Expected reward of standing on `total` against the dealer outcomes. */
static double blackjack_stand_ev(int total, const double p[6])
{
    double ev = p[5];
    for (int d = 17; d <= 21; d++)
        ev += p[d - 17] * ((total > d) - (total < d));
    return ev;
}

/* Best expected reward from every (hard, ace) state; hit_better[h][a]. */
typedef struct blackjack_values {
    double best[22][2];
    double hit[22][2];
    double stand[22][2];
} blackjack_values;

static void blackjack_solve(const double p[6], blackjack_values *t)
{
    for (int h = 21; h >= 1; h--)
        for (int a = 0; a < 2; a++) {
            int total = (a && h + 10 <= 21) ? h + 10 : h;
            double hit = 0;
            for (int v = 1; v <= 10; v++) {
                int nh = h + v;
                double r = nh > 21 ? -1.0 : t->best[nh][a || v == 1];
                hit += blackjack_card_p(v) * r;
            }
            t->stand[h][a] = blackjack_stand_ev(total, p);
            t->hit[h][a] = hit;
            t->best[h][a] = hit > t->stand[h][a] ? hit : t->stand[h][a];
        }
}

static int blackjack_oracle(const void *st, env_answer *a)
{
    const blackjack_state *s = st;
    int up = env_card_value(s->dealer[0].rank);
    a->seen[0] = up;
    a->n_seen = 1;
    int hard = 0;
    bool ace = false;
    for (int i = 0; i < s->n_player && a->n_seen < ENV_SEEN_MAX; i++) {
        a->seen[a->n_seen++] = env_card_value(s->player[i].rank);
        hard += env_card_value(s->player[i].rank);
        ace |= s->player[i].rank == 1;
    }
    double p[6] = {0};
    blackjack_dealer_rec(up, up == 1, 1.0, p);
    blackjack_values t;
    blackjack_solve(p, &t);
    bool soft;
    int total = blackjack_total(s->player, s->n_player, &soft);
    bool hit = t.hit[hard][ace] > t.stand[hard][ace] + 1e-12;
    a->action = hit ? 1 : 0;
    a->solvable = true;
    snprintf(a->thoughts, sizeof a->thoughts, "%s %d against %d , %s", soft ? "soft" : "hard",
             total, up, blackjack_actions[a->action]);
    return 0;
}

static int blackjack_format(const void *st, const env_answer *a, char *buf, size_t cap)
{
    (void)st;
    char vals[ENV_SEEN_MAX * 5];
    int n = a->n_seen > 1 ? a->n_seen - 1 : 0;
    env_format_values(a->seen + 1, n, vals, sizeof vals);
    const char *act = a->action >= 0 && a->action < 2 ? blackjack_actions[a->action] : "";
    return snprintf(buf, cap,
                    "{\"dealer\": [%d], \"player\": [%s], \"thoughts\": \"%s\", "
                    "\"action\": \"%s\"}",
                    a->n_seen > 0 ? a->seen[0] : 0, vals, a->thoughts, act);
}

static void blackjack_info(const void *st, cJSON *obj)
{
    const blackjack_state *s = st;
    char name[8];
    cJSON *d = cJSON_AddArrayToObject(obj, "dealer");
    for (int i = 0; i < (s->over ? s->n_dealer : 2); i++)
        cJSON_AddItemToArray(
            d, cJSON_CreateString(i == 1 && !s->over
                                      ? "??"
                                      : env_card_name(s->dealer[i].rank, s->dealer[i].suit,
                                                      name, sizeof name)));
    cJSON *p = cJSON_AddArrayToObject(obj, "player");
    for (int i = 0; i < s->n_player; i++)
        cJSON_AddItemToArray(p, cJSON_CreateString(env_card_name(
                                    s->player[i].rank, s->player[i].suit, name, sizeof name)));
    cJSON_AddNumberToObject(obj, "player_total", blackjack_total(s->player, s->n_player, NULL));
    if (s->over)
        cJSON_AddNumberToObject(obj, "dealer_total",
                                blackjack_total(s->dealer, s->n_dealer, NULL));
}

const env_vtable blackjack_vtable = {
    .name = "blackjack",
    .actions = blackjack_actions,
    .n_actions = 2,
    .keys = blackjack_keys,
    .n_keys = 4,
    .native_w = 64,
    .native_h = 48,
    .format_valid = 0.3,
    .format_invalid = -0.2,
    .state_size = sizeof(blackjack_state),
    .init = blackjack_init,
    .reset = blackjack_reset,
    .deal = blackjack_deal,
    .step = blackjack_step,
    .legal = blackjack_legal,
    .won = blackjack_won,
    .draw = blackjack_draw_obs,
    .prompt = blackjack_prompt,
    .oracle = blackjack_oracle,
    .format = blackjack_format,
    .info = blackjack_info,
};
