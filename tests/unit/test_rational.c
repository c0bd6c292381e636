/* Exact rationals: normal form, arithmetic, overflow and division by zero. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "tests/unit/test_util.h"
#include "actor/envs/rational.h"


static rat R(int64_t n, int64_t d)
{
    rat r;
    REQUIRE(rat_make(n, d, &r), "rat_make(%lld, %lld)", (long long)n, (long long)d);
    return r;
}

Test(rational, lowest_terms_positive_denominator)
{
    rat r = R(6, -4);
    CHECK((r.num) == (-3), "(r.num) == (-3)");
    CHECK((r.den) == (2), "(r.den) == (2)");
    r = R(0, -7);
    CHECK((r.num) == (0), "(r.num) == (0)");
    CHECK((r.den) == (1), "(r.den) == (1)");
    CHECK(!(rat_make(1, 0, &r)), "!(rat_make(1, 0, &r))");
}

Test(rational, arithmetic)
{
    rat r;
    REQUIRE(rat_add(R(1, 2), R(1, 3), &r), "rat_add(R(1, 2), R(1, 3), &r)");
    CHECK(rat_eq(r, R(5, 6)), "rat_eq(r, R(5, 6))");
    REQUIRE(rat_sub(R(1, 2), R(1, 3), &r), "rat_sub(R(1, 2), R(1, 3), &r)");
    CHECK(rat_eq(r, R(1, 6)), "rat_eq(r, R(1, 6))");
    REQUIRE(rat_mul(R(-2, 3), R(9, 4), &r), "rat_mul(R(-2, 3), R(9, 4), &r)");
    CHECK(rat_eq(r, R(-3, 2)), "rat_eq(r, R(-3, 2))");
    REQUIRE(rat_div(R(3, 4), R(-9, 8), &r), "rat_div(R(3, 4), R(-9, 8), &r)");
    CHECK(rat_eq(r, R(-2, 3)), "rat_eq(r, R(-2, 3))");
}

Test(rational, division_by_zero_fails)
{
    rat r = rat_int(5);
    CHECK(!(rat_div(rat_int(1), rat_int(0), &r)), "!(rat_div(rat_int(1), rat_int(0), &r))");
    CHECK(rat_is_int(r, 5), "the output is left untouched");
}

Test(rational, overflow_is_reported)
{
    rat r;
    CHECK(!(rat_add(rat_int(INT64_MAX), rat_int(1), &r)), "!(rat_add(rat_int(INT64_MAX), rat_int(1), &r))");
    CHECK(!(rat_mul(rat_int(INT64_MAX / 2 + 1), rat_int(2), &r)), "!(rat_mul(rat_int(INT64_MAX / 2 + 1), rat_int(2), &r))");
    CHECK(!(rat_make(INT64_MIN, 1, &r)), "!(rat_make(INT64_MIN, 1, &r))");
    CHECK(rat_add(R(1, INT64_MAX), R(1, INT64_MAX), &r), "common denominators stay exact");
}

/* The reason the envs use rationals: floating point misses this solution. */
Test(rational, eight_over_three_minus_eight_thirds_is_24)
{
    rat a, b, c;
    REQUIRE(rat_div(rat_int(8), rat_int(3), &a), "rat_div(rat_int(8), rat_int(3), &a)");
    REQUIRE(rat_sub(rat_int(3), a, &b), "rat_sub(rat_int(3), a, &b)");
    REQUIRE(rat_div(rat_int(8), b, &c), "rat_div(rat_int(8), b, &c)");
    CHECK(rat_is_int(c, 24), "rat_is_int(c, 24)");
    double f = 8.0 / (3.0 - 8.0 / 3.0);
    CHECK((f) != (24.0), "floating point would reject it");
}

Test(rational, compare_and_format)
{
    CHECK((rat_cmp(R(1, 3), R(1, 2))) == (-1), "(rat_cmp(R(1, 3), R(1, 2))) == (-1)");
    CHECK((rat_cmp(R(2, 4), R(1, 2))) == (0), "(rat_cmp(R(2, 4), R(1, 2))) == (0)");
    CHECK((rat_cmp(R(-1, 2), R(-2, 3))) == (1), "(rat_cmp(R(-1, 2), R(-2, 3))) == (1)");
    CHECK((rat_cmp(rat_int(INT64_MAX), R(INT64_MAX - 1, 1))) == (1), "(rat_cmp(rat_int(INT64_MAX), R(INT64_MAX - 1, 1))) == (1)");
    char buf[32];
    rat_format(R(-8, 3), buf, sizeof buf);
    CHECK(strcmp(buf, "-8/3") == 0, "strcmp(buf, \"-8/3\") == 0");
    rat_format(rat_int(24), buf, sizeof buf);
    CHECK(strcmp(buf, "24") == 0, "strcmp(buf, \"24\") == 0");
    CHECK(rat_is_int(R(48, 2), 24), "rat_is_int(R(48, 2), 24)");
    CHECK(!(rat_is_int(R(49, 2), 24)), "!(rat_is_int(R(49, 2), 24))");
}
