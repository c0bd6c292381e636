/* float32 <-> float16 conversions (see half.h). Bit manipulation only, so
 * the result does not depend on the compiler's or the CPU's half support. */
#include "common/half.h"

#include <string.h>

#define HALF_F32_INF 0x7f800000u
#define HALF_F32_65520 0x477ff000u  /* halfway between 65504 and 65536: rounds up */
#define HALF_F32_MIN_NORMAL 0x38800000u /* 2^-14, the smallest normal half */
#define HALF_F32_MIN_HALF_TIE 0x33000000u /* 2^-25: half of the smallest subnormal */

/* Shift `m` right by `shift` bits (1..31), rounding to nearest, ties to even. */
static uint32_t half_round_shift(uint32_t m, unsigned shift)
{
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t tie = 1u << (shift - 1);
    if (rem > tie || (rem == tie && (q & 1)))
        q++;
    return q;
}

uint16_t half_from_float(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax > HALF_F32_INF) /* NaN: quiet, keep the top payload bits */
        return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    if (ax >= HALF_F32_65520)
        return (uint16_t)(sign | 0x7c00u);
    if (ax <= HALF_F32_MIN_HALF_TIE) /* the tie at 2^-25 goes to the even 0 */
        return (uint16_t)sign;
    if (ax < HALF_F32_MIN_NORMAL) {
        /* Subnormal half: round(|f| * 2^24). |f| = m * 2^(e - 150) with the
         * implicit bit in m, so that is m >> (126 - e), e in [102, 112]. A
         * carry out of the top makes the smallest normal, which is right. */
        uint32_t e = ax >> 23;
        uint32_t m = (ax & 0x7fffffu) | 0x800000u;
        return (uint16_t)(sign | half_round_shift(m, 126 - e));
    }
    /* Normal: rebias the exponent, round the 23-bit mantissa to 10 bits; a
     * carry moves into the exponent, which is what rounding up means. */
    uint32_t h = half_round_shift(ax, 13) - ((127u - 15u) << 10);
    return (uint16_t)(sign | h);
}

float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    uint32_t x;
    if (e == 0x1f) {
        x = sign | HALF_F32_INF | (m << 13);
    } else if (e != 0) {
        x = sign | ((e + 127 - 15) << 23) | (m << 13);
    } else if (m == 0) {
        x = sign;
    } else {
        /* Subnormal: normalise the mantissa into a float32 normal. */
        int shift = 0;
        while (!(m & 0x400u)) {
            m <<= 1;
            shift++;
        }
        x = sign | ((uint32_t)(127 - 15 + 1 - shift) << 23) | ((m & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

void half_write_f32le(uint8_t *out, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        out[4 * i] = (uint8_t)u;
        out[4 * i + 1] = (uint8_t)(u >> 8);
        out[4 * i + 2] = (uint8_t)(u >> 16);
        out[4 * i + 3] = (uint8_t)(u >> 24);
    }
}

void half_write_f16le(uint8_t *out, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint16_t h = half_from_float(x[i]);
        out[2 * i] = (uint8_t)h;
        out[2 * i + 1] = (uint8_t)(h >> 8);
    }
}
