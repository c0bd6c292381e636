/* NumberLine: move the current number to the target (gym_cards'
 * NumberLine).
 *
 * Positions 0..5; start and target are drawn uniformly with target !=
 * start. Actions '-' (move down) and '+' (move up), clamped at 0 and 5.
 * Reward +1 on reaching the target (the episode ends), -1 when the
 * distance does not shrink, 0 otherwise; after 10 steps the episode is
 * truncated. The picture shows "TARGET: t" and "CURRENT: c" in black on
 * white, as gym_cards does. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actor/envs/env.h"
#include "common/rng.h"

enum { NUMBERLINE_MAX_POS = 5, NUMBERLINE_MAX_STEPS = 10 };

typedef struct numberline_state {
    bool prompt_actions;
    int pos, target, steps;
    bool won;
} numberline_state;

static const char *const numberline_actions[] = {"-", "+"};

static const env_key numberline_keys[] = {
    {"current", ENV_KEY_STRING},
    {"target", ENV_KEY_STRING},
    {"thoughts", ENV_KEY_STRING},
    {"action", ENV_KEY_STRING},
};

static void numberline_init(void *st, const env_params *p)
{
    numberline_state *s = st;
    s->prompt_actions = p->prompt_actions;
}

static void numberline_reset(void *st, uint64_t seed)
{
    numberline_state *s = st;
    rng r;
    rng_init(&r, seed);
    s->pos = (int)rng_below(&r, NUMBERLINE_MAX_POS + 1);
    /* Uniform over the other positions. */
    s->target = (int)rng_below(&r, NUMBERLINE_MAX_POS);
    if (s->target >= s->pos)
        s->target++;
    s->steps = 0;
    s->won = false;
}

static bool numberline_deal(void *st, const int *cards, int n)
{
    numberline_state *s = st;
    if (n != 2 || cards[0] < 0 || cards[0] > NUMBERLINE_MAX_POS || cards[1] < 0 ||
        cards[1] > NUMBERLINE_MAX_POS || cards[0] == cards[1])
        return false;
    s->pos = cards[0];
    s->target = cards[1];
    s->steps = 0;
    s->won = false;
    return true;
}

static void numberline_step(void *st, int action, env_result *out)
{
    numberline_state *s = st;
    int before = abs(s->pos - s->target);
    if (action == 0 && s->pos > 0)
        s->pos--;
    else if (action == 1 && s->pos < NUMBERLINE_MAX_POS)
        s->pos++;
    s->steps++;
    int after = abs(s->pos - s->target);
    if (after == 0) {
        out->reward = 1.0;
        out->terminated = true;
        s->won = true;
    } else {
        out->reward = after < before ? 0.0 : -1.0;
        out->truncated = s->steps >= NUMBERLINE_MAX_STEPS;
    }
}

static bool numberline_legal(const void *st, int action)
{
    (void)st;
    (void)action;
    return true;
}

static bool numberline_won(const void *st) { return ((const numberline_state *)st)->won; }

static void numberline_draw(const void *st, render_canvas *c)
{
    const numberline_state *s = st;
    char line[32];
    render_fill(c, 0, 0, c->w, c->h, RENDER_WHITE);
    snprintf(line, sizeof line, "TARGET: %d", s->target);
    render_text(c, 1, 0, line, RENDER_BLACK);
    snprintf(line, sizeof line, "CURRENT: %d", s->pos);
    render_text(c, 1, 8, line, RENDER_BLACK);
}

static int numberline_prompt(const void *st, char *buf, size_t cap)
{
    const numberline_state *s = st;
    return snprintf(buf, cap, "move the current number to the target number with + or - .%s",
                    s->prompt_actions ? " actions : - +" : "");
}

static int numberline_oracle(const void *st, env_answer *a)
{
    const numberline_state *s = st;
    a->seen[0] = s->pos;
    a->seen[1] = s->target;
    a->n_seen = 2;
    a->solvable = true;
    int d = abs(s->target - s->pos);
    bool up = s->target > s->pos;
    a->action = up ? 1 : 0;
    snprintf(a->thoughts, sizeof a->thoughts, "%d is %s %d , %d %s of %s", s->pos,
             up ? "below" : "above", s->target, d, d == 1 ? "step" : "steps", up ? "+" : "-");
    return 0;
}

static int numberline_format(const void *st, const env_answer *a, char *buf, size_t cap)
{
    (void)st;
    const char *act = a->action >= 0 && a->action < 2 ? numberline_actions[a->action] : "";
    return snprintf(buf, cap,
                    "{\"current\": \"%d\", \"target\": \"%d\", \"thoughts\": \"%s\", "
                    "\"action\": \"%s\"}",
                    a->n_seen > 0 ? a->seen[0] : 0, a->n_seen > 1 ? a->seen[1] : 0, a->thoughts,
                    act);
}

static void numberline_info(const void *st, cJSON *obj)
{
    const numberline_state *s = st;
    cJSON_AddNumberToObject(obj, "current", s->pos);
    cJSON_AddNumberToObject(obj, "target", s->target);
}

const env_vtable numberline_vtable = {
    .name = "numberline",
    .actions = numberline_actions,
    .n_actions = 2,
    .keys = numberline_keys,
    .n_keys = 4,
    .native_w = 64,
    .native_h = 16,
    .format_valid = 0.3,
    .format_invalid = -0.2,
    .state_size = sizeof(numberline_state),
    .init = numberline_init,
    .reset = numberline_reset,
    .deal = numberline_deal,
    .step = numberline_step,
    .legal = numberline_legal,
    .won = numberline_won,
    .draw = numberline_draw,
    .prompt = numberline_prompt,
    .oracle = numberline_oracle,
    .format = numberline_format,
    .info = numberline_info,
};
