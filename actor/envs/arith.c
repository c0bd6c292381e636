/* Rules shared by Points24 and EZPoints (see arith.h). */
#include "actor/envs/arith.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Append to a bounded buffer; `used` counts what the full text needs. */
static void arith_appendf(char *buf, size_t cap, size_t *used, const char *fmt, const char *s)
{
    int k = snprintf(*used < cap ? buf + *used : NULL, *used < cap ? cap - *used : 0, fmt, s);
    if (k > 0)
        *used += (size_t)k;
}

void arith_init(arith_state *s, const arith_rules *r, const env_params *p)
{
    memset(s, 0, sizeof *s);
    s->rules = r;
    s->solvable_only = p->solvable_only;
    s->prompt_actions = p->prompt_actions;
}

void arith_deal(arith_state *s, const int *rank, const font_suit *suit)
{
    memset(s->count, 0, sizeof s->count);
    memset(s->used, 0, sizeof s->used);
    for (int i = 0; i < s->rules->n_cards; i++) {
        s->rank[i] = rank[i];
        s->suit[i] = suit[i];
        s->count[env_card_value(rank[i])]++;
    }
    s->n_formula = 0;
    s->n_illegal = 0;
    s->won = false;
}

bool arith_deal_ranks(arith_state *s, const int *rank, int n)
{
    static const font_suit cycle[] = {SUIT_HEARTS, SUIT_SPADES, SUIT_DIAMONDS, SUIT_CLUBS};
    if (n != s->rules->n_cards)
        return false;
    for (int i = 0; i < n; i++)
        if (rank[i] < 1 || rank[i] > 13)
            return false;
    arith_deal(s, rank, cycle);
    return true;
}

void arith_values(const arith_state *s, int *v)
{
    for (int i = 0; i < s->rules->n_cards; i++)
        v[i] = env_card_value(s->rank[i]);
}

/* The token an action appends; false for '='. */
static bool arith_action_tok(const arith_state *s, int action, formula_tok *t)
{
    const char *a = s->rules->actions[action];
    static const struct {
        char c;
        formula_kind k;
    } ops[] = {{'+', FT_ADD}, {'-', FT_SUB}, {'*', FT_MUL},
               {'/', FT_DIV}, {'(', FT_LPAREN}, {')', FT_RPAREN}};
    if (a[0] >= '0' && a[0] <= '9') {
        *t = (formula_tok){FT_NUM, atoi(a)};
        return true;
    }
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (a[0] == ops[i].c) {
            *t = (formula_tok){ops[i].k, 0};
            return true;
        }
    return false;
}

static int arith_action_of_tok(const arith_state *s, formula_tok t)
{
    for (int i = 0; i < s->rules->n_actions; i++) {
        formula_tok u;
        if (arith_action_tok(s, i, &u) && u.kind == t.kind && u.num == t.num)
            return i;
    }
    return -1;
}

static int arith_eq_action(const arith_state *s)
{
    for (int i = 0; i < s->rules->n_actions; i++)
        if (strcmp(s->rules->actions[i], "=") == 0)
            return i;
    return -1;
}

static int arith_n_used(const arith_state *s)
{
    int n = 0;
    for (int v = 1; v <= FORMULA_MAX_VALUE; v++)
        n += s->used[v];
    return n;
}

static bool arith_complete(const arith_state *s)
{
    rat v;
    return arith_n_used(s) == s->rules->n_cards && formula_eval(s->formula, s->n_formula, &v) &&
           rat_is_int(v, s->rules->target);
}

bool arith_legal(const arith_state *s, int action)
{
    formula_tok t;
    if (!arith_action_tok(s, action, &t) || t.kind != FT_NUM)
        return true;
    return t.num >= 1 && t.num <= FORMULA_MAX_VALUE && s->used[t.num] < s->count[t.num];
}

void arith_step(arith_state *s, int action, env_result *out)
{
    const arith_rules *r = s->rules;
    formula_tok t;
    if (!arith_action_tok(s, action, &t)) { /* '=' */
        s->won = arith_complete(s);
        out->reward = s->won ? ARITH_WIN_REWARD : -1.0;
        out->terminated = true;
        return;
    }
    if (!arith_legal(s, action)) {
        out->legal = false;
        out->reward = -1.0;
        if (r->end_on_illegal) {
            out->terminated = true;
            return;
        }
        s->n_illegal++;
    } else {
        s->formula[s->n_formula++] = t;
        if (t.kind == FT_NUM)
            s->used[t.num]++;
    }
    if (s->n_formula + s->n_illegal > r->max_len) {
        out->reward = -1.0;
        out->truncated = true;
    }
}

void arith_draw(const arith_state *s, render_canvas *c)
{
    for (int i = 0; i < s->rules->n_cards; i++)
        render_card(c, 1 + 16 * i, 0, s->rank[i], s->suit[i]);
    /* The formula without spaces under the cards; when it is too long for
     * the picture, its most recent part. */
    char text[FORMULA_MAX_LEN * 3 + 1] = "";
    size_t n = 0;
    for (int i = 0; i < s->n_formula; i++) {
        char t[8];
        n += (size_t)snprintf(text + n, sizeof text - n, "%s",
                              formula_tok_text(s->formula[i], t, sizeof t));
    }
    size_t fit = (size_t)(c->w + 1) / FONT_ADVANCE;
    render_text(c, 1, RENDER_CARD_H + 1, n > fit ? text + (n - fit) : text, RENDER_WHITE);
}

int arith_prompt(const arith_state *s, char *buf, size_t cap)
{
    char f[FORMULA_MAX_LEN * 4];
    formula_format(s->formula, s->n_formula, f, sizeof f);
    size_t used = 0;
    arith_appendf(buf, cap, &used, "%s . formula :", s->rules->task);
    if (s->n_formula)
        arith_appendf(buf, cap, &used, " %s", f);
    if (s->prompt_actions) {
        arith_appendf(buf, cap, &used, "%s", " . actions :");
        for (int i = 0; i < s->rules->n_actions; i++)
            arith_appendf(buf, cap, &used, " %s", s->rules->actions[i]);
    }
    return (int)used;
}

int arith_oracle(const arith_state *s, env_answer *a)
{
    const arith_rules *r = s->rules;
    arith_values(s, a->seen);
    a->n_seen = r->n_cards;
    formula_format(s->formula, s->n_formula, a->formula, sizeof a->formula);
    formula_tok sol[FORMULA_MAX_LEN];
    int n_sol = 0, found = 0;
    if (arith_complete(s)) {
        memcpy(sol, s->formula, sizeof(formula_tok) * (size_t)s->n_formula);
        n_sol = s->n_formula;
        found = 1;
    } else if (formula_hand_solvable(a->seen, r->n_cards, r->target, r->ops)) {
        formula_problem p = {.prefix = s->formula,
                             .n_prefix = s->n_formula,
                             .ops = r->ops,
                             .max_len = r->max_len - s->n_illegal,
                             .target = r->target};
        for (int v = 1; v <= FORMULA_MAX_VALUE; v++)
            p.remaining[v] = s->count[v] - s->used[v];
        found = formula_solve(&p, sol, &n_sol);
        if (found < 0)
            return found;
    }
    a->solvable = found == 1;
    if (!a->solvable) {
        /* Nothing wins from here: '=' ends the episode at the smallest
         * loss (-1) instead of playing on towards the same -1. */
        snprintf(a->thoughts, sizeof a->thoughts, "no solution from this formula");
        a->action = arith_eq_action(s);
        return 0;
    }
    char f[FORMULA_MAX_LEN * 4];
    formula_format(sol, n_sol, f, sizeof f);
    snprintf(a->thoughts, sizeof a->thoughts, "%s = %d", f, r->target);
    a->action = n_sol > s->n_formula ? arith_action_of_tok(s, sol[s->n_formula])
                                     : arith_eq_action(s);
    return 0;
}

int arith_format(const arith_state *s, const env_answer *a, char *buf, size_t cap)
{
    char vals[ENV_SEEN_MAX * 5];
    env_format_values(a->seen, a->n_seen, vals, sizeof vals);
    const char *act = a->action >= 0 && a->action < s->rules->n_actions
                          ? s->rules->actions[a->action]
                          : "";
    return snprintf(buf, cap,
                    "{\"cards\": [%s], \"formula\": \"%s\", \"thoughts\": \"%s\", "
                    "\"action\": \"%s\"}",
                    vals, a->formula, a->thoughts, act);
}

void arith_info(const arith_state *s, cJSON *obj)
{
    char f[FORMULA_MAX_LEN * 4];
    formula_format(s->formula, s->n_formula, f, sizeof f);
    cJSON_AddStringToObject(obj, "formula", f);
    cJSON *cards = cJSON_AddArrayToObject(obj, "cards");
    for (int i = 0; i < s->rules->n_cards; i++) {
        char name[8];
        cJSON_AddItemToArray(cards, cJSON_CreateString(
                                        env_card_name(s->rank[i], s->suit[i], name, sizeof name)));
    }
}
