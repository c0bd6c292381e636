/* Exact rational numbers for the card-game formulas.
 *
 * Points24 and EZPoints judge a formula by its exact value, so that every
 * true solution is accepted (8 / ( 3 - 8 / 3 ) equals 24 exactly, although
 * floating point says 23.999...). Values are int64 fractions kept in lowest
 * terms with a positive denominator; every operation reports overflow or
 * division by zero instead of wrapping, although four cards of at most 10
 * never come near the int64 range. */
#ifndef GTRT_RATIONAL_H
#define GTRT_RATIONAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rat {
    int64_t num;
    int64_t den; /* > 0; gcd(|num|, den) == 1 */
} rat;

/* n / 1 */
rat rat_int(int64_t n);
/* n / d in lowest terms; false when d == 0 or on overflow. */
bool rat_make(int64_t n, int64_t d, rat *out);

/* Each returns false (leaving *out untouched) on overflow or, for rat_div,
 * division by zero. */
bool rat_add(rat a, rat b, rat *out);
bool rat_sub(rat a, rat b, rat *out);
bool rat_mul(rat a, rat b, rat *out);
bool rat_div(rat a, rat b, rat *out);

bool rat_eq(rat a, rat b);
/* -1, 0 or 1 like strcmp. */
int rat_cmp(rat a, rat b);
bool rat_is_int(rat a, int64_t n);
/* "7", "-8/3"; returns what snprintf returns. */
int rat_format(rat a, char *buf, size_t cap);

#endif
