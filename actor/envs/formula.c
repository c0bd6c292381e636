/* Formula evaluation and the exact completion solver (see formula.h).
 *
 * Both run the same left-to-right evaluator: a stack of frames, one per
 * open parenthesis, each holding the finished part of its sum, the sign of
 * the current term and the current term's product so far. Feeding it token
 * by token gives the exact value of any prefix-consistent state, which is
 * what the solver searches over. */
#include "actor/envs/formula.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

/* ==== evaluator ==== */

typedef struct formula_frame {
    rat sum;           /* finished terms */
    rat prod;          /* current term so far, when has_prod */
    int8_t sign;       /* sign of the current term */
    uint8_t has_prod;  /* the current term has a value */
    uint8_t mulop;     /* pending FT_MUL / FT_DIV, or 0 */
    uint8_t operands;  /* top-level operands seen, capped at 2 */
    uint8_t fresh;     /* opened by the solver, not by the prefix */
} formula_frame;

typedef struct formula_state {
    formula_frame fr[FORMULA_MAX_LEN + 1];
    int depth;       /* index of the innermost frame */
    int len;         /* tokens so far */
    int remaining[FORMULA_MAX_VALUE + 1];
    int n_remaining; /* sum of remaining[] */
    bool expecting;  /* an operand must come next */
    bool dead;       /* syntax error, division by zero or overflow */
} formula_state;

static void formula_frame_open(formula_frame *f, bool fresh)
{
    memset(f, 0, sizeof *f);
    f->sum = rat_int(0);
    f->prod = rat_int(0);
    f->sign = 1;
    f->fresh = fresh;
}

static void formula_state_init(formula_state *s)
{
    memset(s, 0, sizeof *s);
    formula_frame_open(&s->fr[0], false);
    s->expecting = true;
}

static void formula_feed_operand(formula_state *s, rat v)
{
    formula_frame *f = &s->fr[s->depth];
    if (!f->has_prod) {
        f->prod = v;
        f->has_prod = 1;
    } else if (f->mulop == FT_MUL) {
        if (!rat_mul(f->prod, v, &f->prod))
            s->dead = true;
    } else if (!rat_div(f->prod, v, &f->prod)) {
        s->dead = true; /* division by zero */
    }
    f->mulop = 0;
    if (f->operands < 2)
        f->operands++;
    s->expecting = false;
}

/* Value of the innermost frame once its last term is finished. */
static bool formula_frame_value(const formula_frame *f, rat *out)
{
    rat term = f->prod;
    if (f->sign < 0)
        term.num = -term.num;
    return rat_add(f->sum, term, out);
}

/* Apply one token; marks the state dead on any error. `fresh` marks a
 * parenthesis opened by the solver. */
static void formula_apply(formula_state *s, formula_tok t, bool fresh)
{
    if (s->dead)
        return;
    s->len++;
    formula_frame *f = &s->fr[s->depth];
    switch (t.kind) {
    case FT_NUM:
        if (!s->expecting || t.num < 1 || t.num > FORMULA_MAX_VALUE) {
            s->dead = true;
            return;
        }
        if (s->remaining[t.num] > 0) {
            s->remaining[t.num]--;
            s->n_remaining--;
        }
        formula_feed_operand(s, rat_int(t.num));
        return;
    case FT_LPAREN:
        if (!s->expecting || s->depth >= FORMULA_MAX_LEN) {
            s->dead = true;
            return;
        }
        formula_frame_open(&s->fr[++s->depth], fresh);
        return;
    case FT_RPAREN: {
        rat v;
        if (s->expecting || s->depth == 0 || !formula_frame_value(f, &v)) {
            s->dead = true;
            return;
        }
        s->depth--;
        formula_feed_operand(s, v);
        return;
    }
    case FT_ADD:
    case FT_SUB:
        if (s->expecting) {
            s->dead = true;
            return;
        }
        if (!formula_frame_value(f, &f->sum)) {
            s->dead = true;
            return;
        }
        f->sign = t.kind == FT_ADD ? 1 : -1;
        f->has_prod = 0;
        s->expecting = true;
        return;
    case FT_MUL:
    case FT_DIV:
        if (s->expecting) {
            s->dead = true;
            return;
        }
        f->mulop = (uint8_t)t.kind;
        s->expecting = true;
        return;
    }
    s->dead = true;
}

static bool formula_state_value(const formula_state *s, rat *out)
{
    if (s->dead || s->expecting || s->depth != 0)
        return false;
    return formula_frame_value(&s->fr[0], out);
}

bool formula_eval(const formula_tok *toks, int n, rat *out)
{
    formula_state s;
    formula_state_init(&s);
    for (int i = 0; i < n && !s.dead; i++)
        formula_apply(&s, toks[i], false);
    return formula_state_value(&s, out);
}

const char *formula_tok_text(formula_tok t, char *buf, size_t cap)
{
    static const char *const ops[] = {
        [FT_ADD] = "+", [FT_SUB] = "-", [FT_MUL] = "*",
        [FT_DIV] = "/", [FT_LPAREN] = "(", [FT_RPAREN] = ")",
    };
    if (t.kind == FT_NUM)
        snprintf(buf, cap, "%d", t.num);
    else
        snprintf(buf, cap, "%s", ops[t.kind]);
    return buf;
}

int formula_format(const formula_tok *toks, int n, char *buf, size_t cap)
{
    size_t used = 0;
    if (cap)
        buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        char t[8];
        int k = snprintf(used < cap ? buf + used : NULL, used < cap ? cap - used : 0, "%s%s",
                         i ? " " : "",
                         formula_tok_text(toks[i], t, sizeof t));
        used += (size_t)k;
    }
    return (int)used;
}

/* ==== solver ==== */

/* Failed states: a 128-bit fingerprint of the state's meaning (frames,
 * expectation, unused numbers; not its length) and the largest token
 * budget with which it was searched in vain. Open addressing. */
typedef struct formula_memo {
    uint64_t *keys; /* 2 words per slot; both 0 = empty */
    int *budget;
    size_t cap, used;
} formula_memo;

static uint64_t formula_mix(uint64_t h, uint64_t x)
{
    h ^= x + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 31);
}

static void formula_fingerprint(const formula_state *s, uint64_t out[2])
{
    uint64_t a = 0x243F6A8885A308D3ull, b = 0x13198A2E03707344ull;
    uint64_t words[8];
    for (int d = 0; d <= s->depth; d++) {
        const formula_frame *f = &s->fr[d];
        words[0] = (uint64_t)f->sum.num;
        words[1] = (uint64_t)f->sum.den;
        words[2] = f->has_prod ? (uint64_t)f->prod.num : 0;
        words[3] = f->has_prod ? (uint64_t)f->prod.den : 0;
        words[4] = (uint64_t)(f->sign + 1) | (uint64_t)f->has_prod << 8 |
                   (uint64_t)f->mulop << 16 | (uint64_t)f->operands << 24 |
                   (uint64_t)f->fresh << 32;
        for (int i = 0; i < 5; i++) {
            a = formula_mix(a, words[i]);
            b = formula_mix(b ^ 0x5555, words[i] * 31 + (uint64_t)d);
        }
    }
    uint64_t rem = 0;
    for (int v = 1; v <= FORMULA_MAX_VALUE; v++)
        rem = rem * 8 + (uint64_t)s->remaining[v];
    a = formula_mix(a, rem ^ ((uint64_t)s->depth << 40) ^ ((uint64_t)s->expecting << 50));
    b = formula_mix(b, rem * 7 + (uint64_t)s->depth * 131 + s->expecting);
    out[0] = a | 1; /* never both zero */
    out[1] = b;
}

static size_t formula_memo_slot(const formula_memo *m, const uint64_t k[2])
{
    size_t i = (size_t)(k[0] ^ (k[1] >> 7)) & (m->cap - 1);
    while (m->keys[2 * i] && (m->keys[2 * i] != k[0] || m->keys[2 * i + 1] != k[1]))
        i = (i + 1) & (m->cap - 1);
    return i;
}

static int formula_memo_grow(formula_memo *m)
{
    formula_memo n = {calloc(m->cap * 4, sizeof(uint64_t)), calloc(m->cap * 2, sizeof(int)),
                      m->cap * 2, m->used};
    if (!n.keys || !n.budget) {
        free(n.keys);
        free(n.budget);
        return GTRT_ENOMEM;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[2 * i])
            continue;
        size_t j = formula_memo_slot(&n, &m->keys[2 * i]);
        n.keys[2 * j] = m->keys[2 * i];
        n.keys[2 * j + 1] = m->keys[2 * i + 1];
        n.budget[j] = m->budget[i];
    }
    free(m->keys);
    free(m->budget);
    *m = n;
    return 0;
}

typedef struct formula_search {
    const formula_problem *p;
    formula_memo memo;
    formula_tok path[FORMULA_MAX_LEN];
    int cap;       /* longest formula this iteration may build */
    int found_len; /* length of the formula that met the goal */
    int oom;
} formula_search;

/* Fewest tokens that can still close the formula. */
static int formula_min_needed(const formula_state *s)
{
    if (s->expecting && s->n_remaining == 0)
        return 1 << 20;
    return (s->expecting ? 2 * s->n_remaining - 1 : 2 * s->n_remaining) + s->depth;
}

static bool formula_goal(const formula_search *x, const formula_state *s)
{
    rat v;
    return s->n_remaining == 0 && formula_state_value(s, &v) && rat_is_int(v, x->p->target);
}

static bool formula_dfs(formula_search *x, formula_state *s);

static bool formula_try(formula_search *x, const formula_state *s, formula_tok t)
{
    formula_state next = *s;
    formula_apply(&next, t, true);
    if (next.dead)
        return false;
    x->path[s->len] = t;
    return formula_dfs(x, &next);
}

static bool formula_dfs(formula_search *x, formula_state *s)
{
    if (formula_goal(x, s)) {
        x->found_len = s->len;
        return true;
    }
    int budget = x->cap - s->len;
    if (formula_min_needed(s) > budget || x->oom)
        return false;
    uint64_t key[2];
    formula_fingerprint(s, key);
    size_t slot = formula_memo_slot(&x->memo, key);
    if (x->memo.keys[2 * slot] && x->memo.budget[slot] >= budget)
        return false;

    unsigned ops = x->p->ops;
    if (s->expecting) {
        for (int v = FORMULA_MAX_VALUE; v >= 1; v--)
            if (s->remaining[v] > 0 && formula_try(x, s, (formula_tok){FT_NUM, v}))
                return true;
        /* A group needs two operands to be worth its parentheses. */
        if ((ops & (1u << FT_LPAREN)) && s->n_remaining >= 2 &&
            formula_try(x, s, (formula_tok){FT_LPAREN, 0}))
            return true;
    } else {
        static const formula_kind order[] = {FT_ADD, FT_SUB, FT_MUL, FT_DIV};
        for (int i = 0; i < 4 && s->n_remaining > 0; i++)
            if ((ops & (1u << order[i])) && formula_try(x, s, (formula_tok){order[i], 0}))
                return true;
        const formula_frame *f = &s->fr[s->depth];
        /* Closing a group the solver opened around a single operand is
         * never needed: the same formula without those two parentheses is
         * shorter and has the same value. */
        if (s->depth > 0 && !(f->fresh && f->operands < 2) &&
            formula_try(x, s, (formula_tok){FT_RPAREN, 0}))
            return true;
    }

    /* Record the failure (the slot may have moved while children grew the
     * table). */
    if (x->memo.used * 2 >= x->memo.cap && formula_memo_grow(&x->memo) != 0) {
        x->oom = 1;
        return false;
    }
    slot = formula_memo_slot(&x->memo, key);
    if (!x->memo.keys[2 * slot]) {
        x->memo.keys[2 * slot] = key[0];
        x->memo.keys[2 * slot + 1] = key[1];
        x->memo.used++;
        x->memo.budget[slot] = budget;
    } else if (x->memo.budget[slot] < budget) {
        x->memo.budget[slot] = budget;
    }
    return false;
}

int formula_solve(const formula_problem *p, formula_tok *out, int *n_out)
{
    formula_state s;
    formula_state_init(&s);
    for (int v = 1; v <= FORMULA_MAX_VALUE; v++) {
        s.remaining[v] = p->remaining[v];
        s.n_remaining += p->remaining[v];
    }
    if (p->n_prefix > FORMULA_MAX_LEN || p->max_len > FORMULA_MAX_LEN)
        return 0;
    for (int i = 0; i < p->n_prefix && !s.dead; i++) {
        formula_tok t = p->prefix[i];
        /* p->remaining counts what is left after the prefix; count the
         * prefix's numbers back in so that applying the prefix takes them
         * out again. */
        if (t.kind == FT_NUM && t.num >= 1 && t.num <= FORMULA_MAX_VALUE) {
            s.remaining[t.num]++;
            s.n_remaining++;
        }
        formula_apply(&s, t, false);
    }
    if (s.dead)
        return 0;

    formula_search x = {.p = p};
    x.memo.cap = 1024;
    x.memo.keys = calloc(x.memo.cap * 2, sizeof(uint64_t));
    x.memo.budget = calloc(x.memo.cap, sizeof(int));
    if (!x.memo.keys || !x.memo.budget) {
        free(x.memo.keys);
        free(x.memo.budget);
        return GTRT_ENOMEM;
    }
    memcpy(x.path, p->prefix, sizeof(formula_tok) * (size_t)p->n_prefix);
    int found = 0;
    for (x.cap = p->n_prefix; x.cap <= p->max_len && !found && !x.oom; x.cap++)
        if (formula_dfs(&x, &s))
            found = 1;
    free(x.memo.keys);
    free(x.memo.budget);
    if (x.oom)
        return GTRT_ENOMEM;
    if (!found)
        return 0;
    memcpy(out, x.path, sizeof(formula_tok) * (size_t)x.found_len);
    *n_out = x.found_len;
    return 1;
}

/* ==== classic hand search ==== */

static bool formula_hand_rec(rat *v, int n, rat target, unsigned ops)
{
    if (n == 1)
        return rat_eq(v[0], target);
    for (int i = 0; i < n; i++) {
        for (int j = i + 1; j < n; j++) {
            rat a = v[i], b = v[j], c[6];
            int k = 0;
            if ((ops & (1u << FT_ADD)) && rat_add(a, b, &c[k]))
                k++;
            if ((ops & (1u << FT_MUL)) && rat_mul(a, b, &c[k]))
                k++;
            if ((ops & (1u << FT_SUB)) && rat_sub(a, b, &c[k]))
                k++;
            if ((ops & (1u << FT_SUB)) && rat_sub(b, a, &c[k]))
                k++;
            if ((ops & (1u << FT_DIV)) && rat_div(a, b, &c[k]))
                k++;
            if ((ops & (1u << FT_DIV)) && rat_div(b, a, &c[k]))
                k++;
            /* Replace v[i] by the result and v[j] by the last element. */
            rat w[4];
            int m = 0;
            for (int t = 0; t < n; t++)
                if (t != i && t != j)
                    w[m++] = v[t];
            for (int t = 0; t < k; t++) {
                w[m] = c[t];
                if (formula_hand_rec(w, m + 1, target, ops))
                    return true;
            }
        }
    }
    return false;
}

bool formula_hand_solvable(const int *v, int n, int target, unsigned ops)
{
    if (n < 1 || n > 4)
        return false;
    rat r[4];
    for (int i = 0; i < n; i++)
        r[i] = rat_int(v[i]);
    return formula_hand_rec(r, n, rat_int(target), ops);
}
