/* The oracles: their moves are always legal and, followed to the end, win
 * whenever a win is possible; when they say no solution exists, an
 * independent search agrees.
 *
 * Points24 is checked against code written independently of the env's
 * solver: a brute-force search over all expression trees (every hand of
 * ranks 1..10, i.e. every value multiset J/Q/K included), and a
 * value-set reachability search from any formula prefix (which ignores the
 * length limit, so it is compared only where the limit cannot matter). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/test_util.h"
#include "actor/envs/env.h"


/* ==== independent fractions and brute force ==== */

typedef struct fr {
    long long n, d;
} fr;

static long long fr_gcd(long long a, long long b)
{
    if (a < 0)
        a = -a;
    while (b) {
        long long t = a % b;
        a = b;
        b = t;
    }
    return a ? a : 1;
}

static fr fr_mk(long long n, long long d)
{
    if (d < 0) {
        n = -n;
        d = -d;
    }
    long long g = fr_gcd(n, d);
    return (fr){n / g, d / g};
}

static bool fr_eq(fr a, fr b) { return a.n == b.n && a.d == b.d; }

/* a op b; false for a division by zero. */
static bool fr_op(fr a, char op, fr b, fr *out)
{
    switch (op) {
    case '+': *out = fr_mk(a.n * b.d + b.n * a.d, a.d * b.d); return true;
    case '-': *out = fr_mk(a.n * b.d - b.n * a.d, a.d * b.d); return true;
    case '*': *out = fr_mk(a.n * b.n, a.d * b.d); return true;
    default:
        if (b.n == 0)
            return false;
        *out = fr_mk(a.n * b.d, a.d * b.n);
        return true;
    }
}

/* A value set: the values some multiset of numbers can make. */
typedef struct fr_set {
    fr *v;
    int n, cap;
} fr_set;

static void set_add(fr_set *s, fr x)
{
    for (int i = 0; i < s->n; i++)
        if (fr_eq(s->v[i], x))
            return;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        s->v = realloc(s->v, sizeof(fr) * (size_t)s->cap);
        REQUIRE((s->v) != NULL, "(s->v) != NULL");
    }
    s->v[s->n++] = x;
}

/* All values of expressions over nums[0..n-1] with + - * / and any
 * parenthesisation: split the multiset into two non-empty parts. */
static void set_of(const int *nums, int n, fr_set *out)
{
    out->v = NULL;
    out->n = out->cap = 0;
    if (n == 1) {
        set_add(out, fr_mk(nums[0], 1));
        return;
    }
    for (unsigned m = 1; m < (1u << n) - 1; m++) {
        if (!(m & 1))
            continue; /* each split once: the first number goes left */
        int a[4], b[4], na = 0, nb = 0;
        for (int i = 0; i < n; i++) {
            if (m & (1u << i))
                a[na++] = nums[i];
            else
                b[nb++] = nums[i];
        }
        fr_set sa, sb;
        set_of(a, na, &sa);
        set_of(b, nb, &sb);
        for (int i = 0; i < sa.n; i++)
            for (int j = 0; j < sb.n; j++) {
                const char *ops = "+-*/";
                fr x;
                for (int k = 0; k < 4; k++) {
                    if (fr_op(sa.v[i], ops[k], sb.v[j], &x))
                        set_add(out, x);
                    if (fr_op(sb.v[j], ops[k], sa.v[i], &x))
                        set_add(out, x);
                }
            }
        free(sa.v);
        free(sb.v);
    }
}

static bool brute_solvable(const int *nums, int n, int target)
{
    fr_set s;
    set_of(nums, n, &s);
    bool ok = false;
    for (int i = 0; i < s.n; i++)
        ok |= fr_eq(s.v[i], fr_mk(target, 1));
    free(s.v);
    return ok;
}

/* ==== independent prefix reachability (length limit ignored) ==== */

typedef struct frame {
    fr sum, prod;
    int sign, has_prod;
    char mulop;
} frame;

typedef struct pstate {
    frame f[32];
    int depth, expecting, dead;
} pstate;

static void ps_operand(pstate *s, fr v)
{
    frame *f = &s->f[s->depth];
    if (!f->has_prod)
        f->prod = v;
    else if (!fr_op(f->prod, f->mulop, v, &f->prod))
        s->dead = 1;
    f->has_prod = 1;
    s->expecting = 0;
}

static fr ps_value(const frame *f)
{
    fr v;
    fr_op(f->sum, f->sign > 0 ? '+' : '-', f->prod, &v);
    return v;
}

static void ps_parse(pstate *s, const char *formula)
{
    memset(s, 0, sizeof *s);
    s->f[0] = (frame){fr_mk(0, 1), fr_mk(0, 1), 1, 0, 0};
    s->expecting = 1;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", formula);
    char *save = NULL;
    for (char *t = strtok_r(buf, " ", &save); t && !s->dead; t = strtok_r(NULL, " ", &save)) {
        frame *f = &s->f[s->depth];
        if (t[0] >= '0' && t[0] <= '9') {
            if (!s->expecting)
                s->dead = 1;
            else
                ps_operand(s, fr_mk(atoi(t), 1));
        } else if (t[0] == '(') {
            if (!s->expecting)
                s->dead = 1;
            else
                s->f[++s->depth] = (frame){fr_mk(0, 1), fr_mk(0, 1), 1, 0, 0};
        } else if (t[0] == ')') {
            if (s->expecting || s->depth == 0) {
                s->dead = 1;
            } else {
                fr v = ps_value(f);
                s->depth--;
                ps_operand(s, v);
            }
        } else if (s->expecting) {
            s->dead = 1;
        } else if (t[0] == '+' || t[0] == '-') {
            f->sum = ps_value(f);
            f->sign = t[0] == '+' ? 1 : -1;
            f->has_prod = 0;
            s->expecting = 1;
        } else {
            f->mulop = t[0];
            s->expecting = 1;
        }
    }
}

/* Numbers left, as a list; subsets are bit masks over it. */
typedef struct pool {
    int v[4];
    int n;
} pool;

static void pool_pick(const pool *p, unsigned m, int *out, int *n)
{
    *n = 0;
    for (int i = 0; i < p->n; i++)
        if (m & (1u << i))
            out[(*n)++] = p->v[i];
}

static bool ps_reach(pstate s, const pool *p, unsigned avail, int target);

/* Finish the innermost frame with the numbers in `s1` (the pending operand
 * or a * / extension of the current term) and `s2` (a + / - tail), then go
 * on outwards with `rest`. */
static bool ps_close(const pstate *s, fr v, const pool *p, unsigned rest, int target)
{
    if (s->depth == 0)
        return rest == 0 && fr_eq(v, fr_mk(target, 1));
    pstate up = *s;
    up.depth--;
    ps_operand(&up, v);
    return !up.dead && ps_reach(up, p, rest, target);
}

static bool ps_try_tail(const pstate *s, fr head, const pool *p, unsigned avail, int target)
{
    /* head = the frame's value so far; optionally +Y or -Y. */
    for (unsigned s2 = avail;; s2 = (s2 - 1) & avail) {
        if (s2 == 0)
            return ps_close(s, head, p, avail, target);
        int nums[4], n;
        pool_pick(p, s2, nums, &n);
        fr_set ys;
        set_of(nums, n, &ys);
        bool ok = false;
        for (int i = 0; i < ys.n && !ok; i++) {
            fr v;
            if (fr_op(head, '+', ys.v[i], &v) && ps_close(s, v, p, avail & ~s2, target))
                ok = true;
            else if (fr_op(head, '-', ys.v[i], &v) && ps_close(s, v, p, avail & ~s2, target))
                ok = true;
        }
        free(ys.v);
        if (ok)
            return true;
    }
}

static bool ps_reach(pstate s, const pool *p, unsigned avail, int target)
{
    const frame *f = &s.f[s.depth];
    if (s.expecting && !f->has_prod) {
        /* A whole new term (or the frame's first): any expression E. */
        for (unsigned s1 = avail; s1; s1 = (s1 - 1) & avail) {
            int nums[4], n;
            pool_pick(p, s1, nums, &n);
            fr_set es;
            set_of(nums, n, &es);
            bool ok = false;
            for (int i = 0; i < es.n && !ok; i++) {
                fr v;
                ok = fr_op(f->sum, f->sign > 0 ? '+' : '-', es.v[i], &v) &&
                     ps_close(&s, v, p, avail & ~s1, target);
            }
            free(es.v);
            if (ok)
                return true;
        }
        return false;
    }
    /* A term is under way: extend it by one * or / operand group (required
     * when an operator is pending), then maybe a tail. */
    if (!s.expecting && ps_try_tail(&s, ps_value(f), p, avail, target))
        return true;
    for (unsigned s1 = avail; s1; s1 = (s1 - 1) & avail) {
        int nums[4], n;
        pool_pick(p, s1, nums, &n);
        fr_set xs;
        set_of(nums, n, &xs);
        bool ok = false;
        for (int i = 0; i < xs.n && !ok; i++) {
            const char *ops = s.expecting ? (f->mulop == '*' ? "*" : "/") : "*/";
            for (const char *o = ops; *o && !ok; o++) {
                pstate t = s;
                frame *g = &t.f[t.depth];
                if (!fr_op(g->prod, *o, xs.v[i], &g->prod))
                    continue;
                t.expecting = 0;
                ok = ps_try_tail(&t, ps_value(g), p, avail & ~s1, target);
            }
        }
        free(xs.v);
        if (ok)
            return true;
    }
    return false;
}

/* ==== helpers ==== */

static env *make(const char *name)
{
    env *e = NULL;
    err er = {0};
    REQUIRE((env_new(name, NULL, &e, &er)) == (0), "%s", er.msg);
    return e;
}

static void replay(env *e, const int *cards, int n_cards, const int *acts, int n)
{
    REQUIRE((env_deal(e, cards, n_cards, NULL)) == (0), "(env_deal(e, cards, n_cards, NULL)) == (0)");
    env_result r;
    for (int i = 0; i < n; i++)
        REQUIRE((env_step(e, acts[i], &r, NULL)) == (0), "(env_step(e, acts[i], &r, NULL)) == (0)");
}

/* Follow the oracle to the end; every move must be legal and every plan
 * must extend the formula so far. Returns the total env reward. */
static double follow_oracle(env *e, int max_steps)
{
    double total = 0;
    for (int i = 0; i < max_steps && !env_done(e); i++) {
        env_answer a;
        REQUIRE((env_oracle(e, &a, NULL)) == (0), "(env_oracle(e, &a, NULL)) == (0)");
        if (a.formula[0] && a.solvable)
            CHECK((strncmp(a.thoughts, a.formula, strlen(a.formula))) == (0), "plan '%s' does not extend formula '%s'", a.thoughts, a.formula);
        env_result r;
        REQUIRE((env_step(e, a.action, &r, NULL)) == (0), "(env_step(e, a.action, &r, NULL)) == (0)");
        CHECK(r.legal, "oracle move %s is illegal", env_action_text(e, a.action));
        total += r.reward;
    }
    CHECK(env_done(e), "the oracle finishes");
    return total;
}

/* ==== points24 ==== */

Test(oracle, points24_every_hand_against_brute_force, .timeout = 600)
{
    env *e = make("points24");
    int hands = 0, solvable = 0;
    for (int a = 1; a <= 10; a++)
        for (int b = a; b <= 10; b++)
            for (int c = b; c <= 10; c++)
                for (int d = c; d <= 10; d++) {
                    int cards[4] = {a, b, c, d};
                    REQUIRE((env_deal(e, cards, 4, NULL)) == (0), "(env_deal(e, cards, 4, NULL)) == (0)");
                    bool want = brute_solvable(cards, 4, 24);
                    env_answer ans;
                    REQUIRE((env_oracle(e, &ans, NULL)) == (0), "(env_oracle(e, &ans, NULL)) == (0)");
                    CHECK((ans.solvable) == (want), "%d %d %d %d", a, b, c, d);
                    hands++;
                    solvable += want;
                    if (!want) {
                        CHECK(strcmp(ans.thoughts, "no solution from this formula") == 0, "strcmp(ans.thoughts, \"no solution from this formula\") == 0");
                        CHECK(strcmp(env_action_text(e, ans.action), "=") == 0, "strcmp(env_action_text(e, ans.action), \"=\") == 0");
                        continue;
                    }
                    CHECK((follow_oracle(e, 25)) == (10.0), "%d %d %d %d", a, b, c, d);
                    CHECK(env_won(e), "env_won(e)");
                }
    CHECK((hands) == (715), "(hands) == (715)");
    CHECK((solvable) == (566), "566 of the 715 value multisets can make 24");
    env_free(e);
}

/* Random play from solvable deals: at every state the oracle's verdict
 * agrees with the independent reachability search (where the length limit
 * cannot decide), and its plan wins when followed from that state. */
Test(oracle, points24_random_prefixes, .timeout = 600)
{
    env *e = make("points24"), *f = make("points24");
    rng r;
    rng_init(&r, 2024);
    int checked = 0, dead = 0;
    for (uint64_t ep = 0; ep < 120; ep++) {
        env_reset(e, ep);
        env_answer first;
        env_oracle(e, &first, NULL);
        int cards[4];
        memcpy(cards, first.seen, sizeof cards);
        /* Cards by value only: deal the same values (ranks 1..10). */
        REQUIRE((env_deal(e, cards, 4, NULL)) == (0), "(env_deal(e, cards, 4, NULL)) == (0)");
        int acts[32], n = 0;
        while (!env_done(e) && n < 30) {
            env_answer a;
            REQUIRE((env_oracle(e, &a, NULL)) == (0), "(env_oracle(e, &a, NULL)) == (0)");
            pstate ps;
            ps_parse(&ps, a.formula);
            pool p = {{0}, 0};
            int left[11] = {0};
            for (int i = 0; i < 4; i++)
                left[cards[i]]++;
            char buf[256];
            snprintf(buf, sizeof buf, "%s", a.formula);
            char *save = NULL;
            int len = 0;
            for (char *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save), len++)
                if (t[0] >= '0' && t[0] <= '9')
                    left[atoi(t)]--;
            for (int v = 1; v <= 10; v++)
                for (int k = 0; k < left[v]; k++)
                    p.v[p.n++] = v;
            bool reach = !ps.dead && ps_reach(ps, &p, (1u << p.n) - 1, 24);
            if (!reach)
                CHECK(!(a.solvable), "oracle found a plan '%s' the search rules out", a.thoughts);
            else if (len + 2 * p.n + ps.depth + 8 <= 20)
                CHECK(a.solvable, "cards %d %d %d %d, formula '%s': a solution exists", cards[0], cards[1], cards[2], cards[3], a.formula);
            if (a.solvable) {
                replay(f, cards, 4, acts, n);
                CHECK((follow_oracle(f, 25)) == (10.0), "from '%s'", a.formula);
            } else {
                dead++;
            }
            checked++;
            /* Mostly random legal moves, sometimes the oracle's, so that
             * both live and dead prefixes occur. */
            int legal[ENV_MAX_ACTIONS];
            int nl = env_legal_actions(e, legal);
            int act = rng_below(&r, 3) == 0 ? a.action : legal[rng_below(&r, (uint64_t)nl)];
            env_result res;
            REQUIRE((env_step(e, act, &res, NULL)) == (0), "(env_step(e, act, &res, NULL)) == (0)");
            acts[n++] = act;
        }
    }
    CHECK((checked) > (300), "(checked) > (300)");
    CHECK((dead) > (50), "dead prefixes were tested too (%d)", dead);
    env_free(e);
    env_free(f);
}

Test(oracle, points24_says_so_when_the_formula_is_dead)
{
    env *e = make("points24");
    const char *prefixes[] = {"1 - 2 - 3 - 4", "( )", "1 2", "4 )", "1 + 2 + 3 * 4"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        REQUIRE((env_deal(e, (int[]){1, 2, 3, 4}, 4, NULL)) == (0), "(env_deal(e, (int[]){1, 2, 3, 4}, 4, NULL)) == (0)");
        char buf[64];
        snprintf(buf, sizeof buf, "%s", prefixes[i]);
        char *save = NULL;
        for (char *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
            env_result r;
            env_step(e, env_action_find(e, t), &r, NULL);
        }
        env_answer a;
        REQUIRE((env_oracle(e, &a, NULL)) == (0), "(env_oracle(e, &a, NULL)) == (0)");
        CHECK(!(a.solvable), "%s", prefixes[i]);
        CHECK(strcmp(a.thoughts, "no solution from this formula") == 0, "strcmp(a.thoughts, \"no solution from this formula\") == 0");
        CHECK(strcmp(env_action_text(e, a.action), "=") == 0, "strcmp(env_action_text(e, a.action), \"=\") == 0");
    }
    env_free(e);
}

static env_answer p24_after(env *e, const int *cards, const char *prefix)
{
    REQUIRE((env_deal(e, cards, 4, NULL)) == (0), "(env_deal(e, cards, 4, NULL)) == (0)");
    char buf[128];
    snprintf(buf, sizeof buf, "%s", prefix);
    char *save = NULL;
    for (char *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        env_result r;
        REQUIRE((env_step(e, env_action_find(e, t), &r, NULL)) == (0), "(env_step(e, env_action_find(e, t), &r, NULL)) == (0)");
        REQUIRE(!(r.done), "%s", prefix);
    }
    env_answer a;
    REQUIRE((env_oracle(e, &a, NULL)) == (0), "(env_oracle(e, &a, NULL)) == (0)");
    return a;
}

/* Groups the formula opened must be closed, even around one operand; and
 * the 20-token limit decides when the closing no longer fits. */
Test(oracle, points24_closes_open_groups_within_the_length_limit)
{
    env *e = make("points24");
    const int hand[4] = {4, 6, 1, 1};
    env_answer a = p24_after(e, hand, "( 4 * 6 * 1 * ( 1");
    CHECK(a.solvable, "a.solvable");
    CHECK(strcmp(a.thoughts, "( 4 * 6 * 1 * ( 1 ) ) = 24") == 0, "strcmp(a.thoughts, \"( 4 * 6 * 1 * ( 1 ) ) = 24\") == 0");
    CHECK((follow_oracle(e, 25)) == (10.0), "(follow_oracle(e, 25)) == (10.0)");

    a = p24_after(e, hand, "( ( ( ( ( 4"); /* 6 + '* 6 * 1 * 1' + 5 closes = 17 */
    CHECK(a.solvable, "a.solvable");
    CHECK((follow_oracle(e, 25)) == (10.0), "(follow_oracle(e, 25)) == (10.0)");

    a = p24_after(e, hand, "( ( ( ( ( ( ( ( 4"); /* 9 + 6 + 8 = 23 > 20 */
    CHECK(!(a.solvable), "%s", a.thoughts);
    env_free(e);
}

Test(oracle, points24_uses_exact_arithmetic)
{
    env *e = make("points24");
    REQUIRE((env_deal(e, (int[]){8, 3, 8, 3}, 4, NULL)) == (0), "(env_deal(e, (int[]){8, 3, 8, 3}, 4, NULL)) == (0)");
    env_answer a;
    REQUIRE((env_oracle(e, &a, NULL)) == (0), "(env_oracle(e, &a, NULL)) == (0)");
    CHECK(strcmp(a.thoughts, "8 / ( 3 - 8 / 3 ) = 24") == 0, "strcmp(a.thoughts, \"8 / ( 3 - 8 / 3 ) = 24\") == 0");
    CHECK((follow_oracle(e, 25)) == (10.0), "(follow_oracle(e, 25)) == (10.0)");
    env_free(e);
}

/* ==== ezpoints, numberline ==== */

Test(oracle, ezpoints_wins_every_deal)
{
    env *e = make("ezpoints");
    for (uint64_t seed = 0; seed < 500; seed++) {
        env_reset(e, seed);
        CHECK((follow_oracle(e, 6)) == (10.0), "seed %llu", (unsigned long long)seed);
        CHECK((env_steps(e)) == (4), "a op b = takes four steps");
    }
    env_free(e);
}

Test(oracle, numberline_is_optimal)
{
    env *e = make("numberline");
    for (int c = 0; c <= 5; c++)
        for (int t = 0; t <= 5; t++) {
            if (c == t)
                continue;
            REQUIRE((env_deal(e, (int[]){c, t}, 2, NULL)) == (0), "(env_deal(e, (int[]){c, t}, 2, NULL)) == (0)");
            CHECK((follow_oracle(e, 12)) == (1.0), "%d -> %d", c, t);
            CHECK((env_steps(e)) == (abs(t - c)), "%d -> %d", c, t);
        }
    env_free(e);
}

/* ==== blackjack ==== */

static const char *bj_move(env *e, int up, int c1, int c2)
{
    REQUIRE((env_deal(e, (int[]){up, 10, c1, c2}, 4, NULL)) == (0), "(env_deal(e, (int[]){up, 10, c1, c2}, 4, NULL)) == (0)");
    env_answer a;
    REQUIRE((env_oracle(e, &a, NULL)) == (0), "(env_oracle(e, &a, NULL)) == (0)");
    return env_action_text(e, a.action);
}

/* The clear-cut entries of basic strategy (infinite deck, dealer stands on
 * soft 17, no doubling or splitting). */
Test(oracle, blackjack_agrees_with_basic_strategy)
{
    env *e = make("blackjack");
    int ups[] = {2, 3, 4, 5, 6, 7, 8, 9, 10, 1};
    for (int u = 0; u < 10; u++) {
        int up = ups[u];
        /* hard 5..11 from two non-ace cards: hit */
        int lo[][2] = {{2, 3}, {2, 4}, {3, 4}, {3, 5}, {4, 5}, {4, 6}, {5, 6}};
        for (int i = 0; i < 7; i++)
            CHECK(strcmp(bj_move(e, up, lo[i][0], lo[i][1]), "hit") == 0, "hard %d vs %d", lo[i][0] + lo[i][1], up);
        for (int h = 17; h <= 20; h++)
            CHECK(strcmp(bj_move(e, up, 10, h - 10), "stand") == 0, "hard %d vs %d", h, up);
        for (int h = 13; h <= 16; h++) {
            bool low = up >= 2 && up <= 6;
            if (h == 16 && (up == 10 || up == 1))
                continue; /* too close to call by rule of thumb */
            CHECK(strcmp(bj_move(e, up, 10, h - 10), low ? "stand" : "hit") == 0, "hard %d vs %d", h, up);
        }
        if (up >= 7 || up == 1)
            CHECK(strcmp(bj_move(e, up, 10, 2), "hit") == 0, "hard 12 vs %d", up);
        for (int s = 13; s <= 17; s++)
            CHECK(strcmp(bj_move(e, up, 1, s - 11), "hit") == 0, "soft %d vs %d", s, up);
        for (int s = 19; s <= 20; s++)
            CHECK(strcmp(bj_move(e, up, 1, s - 11), "stand") == 0, "soft %d vs %d", s, up);
    }
    env_free(e);
}

/* Played on the same seeded card streams, the oracle beats standing on
 * everything and the dealer's own rule (hit below 17). */
Test(oracle, blackjack_beats_simple_policies)
{
    env *e = make("blackjack");
    double oracle = 0, stand = 0, dealer_rule = 0;
    const int n = 20000;
    for (int ep = 0; ep < n; ep++) {
        env_reset(e, (uint64_t)ep);
        oracle += follow_oracle(e, 30);
        env_result r;
        env_reset(e, (uint64_t)ep);
        env_step(e, 0, &r, NULL);
        stand += r.reward;
        env_reset(e, (uint64_t)ep);
        for (;;) {
            env_answer a;
            env_oracle(e, &a, NULL);
            int total = 0, ace = 0;
            for (int i = 1; i < a.n_seen; i++) {
                total += a.seen[i];
                ace |= a.seen[i] == 1;
            }
            if (ace && total + 10 <= 21)
                total += 10;
            env_step(e, total < 17 ? 1 : 0, &r, NULL);
            if (r.done)
                break;
        }
        dealer_rule += r.reward;
    }
    oracle /= n;
    stand /= n;
    dealer_rule /= n;
    CHECK((oracle) > (stand + 0.05), "oracle %.4f, always stand %.4f", oracle, stand);
    CHECK((oracle) > (dealer_rule), "oracle %.4f, hit below 17 %.4f", oracle, dealer_rule);
    env_free(e);
}
