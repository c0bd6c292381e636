/* Formulas of the card-arithmetic games (Points24, EZPoints): tokens,
 * exact evaluation and an exact completion solver.
 *
 * A formula is a token sequence over the numbers 1..10 and + - * / ( ).
 * Grammar: the usual infix arithmetic with binary operators only (no unary
 * minus, no implicit multiplication, no juxtaposed numbers), * and / before
 * + and -, left to right. gym_cards joins the tokens and calls Python's
 * eval in floating point; we evaluate exactly with rationals instead, so a
 * true solution such as 8 / ( 3 - 8 / 3 ) is never rejected, and Python
 * artefacts ("1 2" read as 12, "* *" as a power) are syntax errors.
 *
 * The solver answers "which tokens complete this prefix into a formula that
 * uses exactly the remaining numbers, fits the length limit and equals the
 * target?", returning a shortest completion. It is exact: it searches token
 * sequences, not only the usual expression trees, so prefixes with odd but
 * valid parentheses are handled. */
#ifndef GTRT_FORMULA_H
#define GTRT_FORMULA_H

#include <stdbool.h>
#include <stddef.h>

#include "actor/envs/rational.h"

enum {
    FORMULA_MAX_LEN = 32,  /* tokens a formula may ever hold */
    FORMULA_MAX_VALUE = 10, /* numbers are 1..10 (J, Q, K count 10) */
};

typedef enum {
    FT_NUM,
    FT_ADD,
    FT_SUB,
    FT_MUL,
    FT_DIV,
    FT_LPAREN,
    FT_RPAREN,
} formula_kind;

typedef struct formula_tok {
    formula_kind kind;
    int num; /* 1..10 for FT_NUM */
} formula_tok;

/* Which operator tokens the game offers (bit per formula_kind). */
#define FORMULA_OPS_P24                                                                       \
    ((1u << FT_ADD) | (1u << FT_SUB) | (1u << FT_MUL) | (1u << FT_DIV) | (1u << FT_LPAREN) |    \
     (1u << FT_RPAREN))
#define FORMULA_OPS_EZ ((1u << FT_ADD) | (1u << FT_MUL))

/* The token's text: "7", "+", "(" ... */
const char *formula_tok_text(formula_tok t, char *buf, size_t cap);
/* Tokens joined by single spaces, e.g. "( 10 - 8". */
int formula_format(const formula_tok *toks, int n, char *buf, size_t cap);

/* Exact value of a complete formula; false on a syntax error, an
 * unbalanced parenthesis or a division by zero. */
bool formula_eval(const formula_tok *toks, int n, rat *out);

typedef struct formula_problem {
    const formula_tok *prefix; /* the formula so far */
    int n_prefix;
    int remaining[FORMULA_MAX_VALUE + 1]; /* count of each number still unused */
    unsigned ops;                         /* FORMULA_OPS_* */
    int max_len;                          /* longest allowed formula */
    int target;
} formula_problem;

/* Search a shortest completion. Returns 1 and writes the whole formula
 * (prefix + completion) to out[0..*n_out-1] when one exists, 0 when none
 * does, GTRT_ENOMEM when the search ran out of memory. */
int formula_solve(const formula_problem *p, formula_tok *out, int *n_out);

/* Can the numbers v[0..n-1] (n <= 4) be combined with + - * / and any
 * parentheses into `target`? The classic value-set search, used to deal
 * solvable hands and to measure how many random hands are. */
bool formula_hand_solvable(const int *v, int n, int target, unsigned ops);

#endif
