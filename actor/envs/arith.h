/* The shared machinery of the two card-arithmetic games, Points24 and
 * EZPoints: a hand of cards, a formula built one token per step, the
 * legality of numbers, the '=' verdict, drawing, prompt, oracle and answer
 * format. Each game (points24.c, ezpoints.c) supplies its rules, its deal
 * and its vtable. */
#ifndef GTRT_ARITH_H
#define GTRT_ARITH_H

#include <stdbool.h>
#include <stddef.h>

#include "actor/envs/env.h"
#include "actor/envs/formula.h"

enum { ARITH_MAX_CARDS = 4 };

typedef struct arith_rules {
    const char *name;
    int n_cards;
    int target;
    int max_len;          /* the formula may hold at most this many tokens */
    unsigned ops;         /* FORMULA_OPS_* */
    bool end_on_illegal;  /* a number not among the cards ends the episode */
    const char *const *actions;
    int n_actions;
    const char *task;     /* first sentence of the prompt */
    int native_w;         /* canvas width; cards are 16 px apart */
} arith_rules;

typedef struct arith_state {
    const arith_rules *rules;
    bool solvable_only;
    bool prompt_actions;
    int rank[ARITH_MAX_CARDS]; /* 1..13 */
    font_suit suit[ARITH_MAX_CARDS];
    int count[FORMULA_MAX_VALUE + 1]; /* card values in hand */
    int used[FORMULA_MAX_VALUE + 1];  /* values already in the formula */
    formula_tok formula[FORMULA_MAX_LEN];
    int n_formula;
    int n_illegal; /* rejected numbers, counted toward the length limit */
    bool won;
} arith_state;

/* Reward for a formula that makes the target; -1 for every penalty. */
#define ARITH_WIN_REWARD 10.0

void arith_init(arith_state *s, const arith_rules *r, const env_params *p);
/* Start an episode with the given cards. */
void arith_deal(arith_state *s, const int *rank, const font_suit *suit);
/* arith_deal from ranks alone (suits cycle hearts, spades, diamonds,
 * clubs); false unless there are exactly n_cards ranks in 1..13. */
bool arith_deal_ranks(arith_state *s, const int *rank, int n);
/* Values of the dealt cards, in display order. */
void arith_values(const arith_state *s, int *v);

void arith_step(arith_state *s, int action, env_result *out);
bool arith_legal(const arith_state *s, int action);
void arith_draw(const arith_state *s, render_canvas *c);
int arith_prompt(const arith_state *s, char *buf, size_t cap);
int arith_oracle(const arith_state *s, env_answer *a);
int arith_format(const arith_state *s, const env_answer *a, char *buf, size_t cap);
void arith_info(const arith_state *s, struct cJSON *obj);

#endif
