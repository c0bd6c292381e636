/* Exact rational arithmetic with overflow checks (see rational.h). */
#include "actor/envs/rational.h"

#include <stdio.h>

static int64_t rat_gcd(int64_t a, int64_t b)
{
    /* Callers never pass INT64_MIN: rat_norm rejects it first. */
    if (a < 0)
        a = -a;
    if (b < 0)
        b = -b;
    while (b) {
        int64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* Bring n/d to lowest terms with d > 0. */
static bool rat_norm(int64_t n, int64_t d, rat *out)
{
    if (d == 0 || n == INT64_MIN || d == INT64_MIN)
        return false;
    if (d < 0) {
        n = -n;
        d = -d;
    }
    int64_t g = rat_gcd(n, d);
    if (g == 0)
        g = 1;
    out->num = n / g;
    out->den = d / g;
    return true;
}

rat rat_int(int64_t n)
{
    rat r = {n, 1};
    return r;
}

bool rat_make(int64_t n, int64_t d, rat *out) { return rat_norm(n, d, out); }

bool rat_add(rat a, rat b, rat *out)
{
    /* Over the least common denominator, so sums of fractions with large
     * shared denominators stay representable. */
    int64_t g = rat_gcd(a.den, b.den);
    int64_t x, y, d;
    if (__builtin_mul_overflow(a.num, b.den / g, &x) ||
        __builtin_mul_overflow(b.num, a.den / g, &y) || __builtin_add_overflow(x, y, &x) ||
        __builtin_mul_overflow(a.den / g, b.den, &d))
        return false;
    return rat_norm(x, d, out);
}

bool rat_sub(rat a, rat b, rat *out)
{
    if (b.num == INT64_MIN)
        return false;
    b.num = -b.num;
    return rat_add(a, b, out);
}

bool rat_mul(rat a, rat b, rat *out)
{
    int64_t n, d;
    if (__builtin_mul_overflow(a.num, b.num, &n) || __builtin_mul_overflow(a.den, b.den, &d))
        return false;
    return rat_norm(n, d, out);
}

bool rat_div(rat a, rat b, rat *out)
{
    if (b.num == 0)
        return false;
    rat inv = {b.den, b.num};
    return rat_mul(a, inv, out);
}

bool rat_eq(rat a, rat b) { return a.num == b.num && a.den == b.den; }

int rat_cmp(rat a, rat b)
{
    /* Compare a.num*b.den with b.num*a.den in 128 bits: no overflow. */
    __int128 l = (__int128)a.num * b.den, r = (__int128)b.num * a.den;
    return (l > r) - (l < r);
}

bool rat_is_int(rat a, int64_t n) { return a.den == 1 && a.num == n; }

int rat_format(rat a, char *buf, size_t cap)
{
    if (a.den == 1)
        return snprintf(buf, cap, "%lld", (long long)a.num);
    return snprintf(buf, cap, "%lld/%lld", (long long)a.num, (long long)a.den);
}
