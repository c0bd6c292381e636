/* float32 -> float16 rounding (round to nearest, ties to even) and back.
 * Checked exhaustively on every rounding boundary between neighbouring
 * halves (just below, at and just above each midpoint), on the named edge
 * cases, and against the compiler's own _Float16 conversion where it has
 * one. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "common/half.h"
#include "common/rng.h"
#include "test_util.h"

static uint32_t bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

Test(half, named_edge_cases)
{
    struct { float in; uint16_t out; } cases[] = {
        {0.0f, 0x0000}, {-0.0f, 0x8000}, {1.0f, 0x3c00}, {-2.0f, 0xc000},
        {0.5f, 0x3800}, {65504.0f, 0x7bff}, {65519.99f, 0x7bff}, {65520.0f, 0x7c00},
        {-65520.0f, 0xfc00}, {1e10f, 0x7c00}, {INFINITY, 0x7c00}, {-INFINITY, 0xfc00},
        {0x1p-14f, 0x0400}, {0x1p-24f, 0x0001}, {-0x1p-24f, 0x8001},
        {0x1p-25f, 0x0000},                  /* tie between 0 and 2^-24: even is 0 */
        {0x1.000002p-25f, 0x0001},           /* just above the tie */
        {0x1.8p-24f, 0x0002},                /* 1.5 ulp: tie, even is 2 */
        {0x1.4p-24f, 0x0001},                /* 1.25 ulp */
        {0x1.ff8p-15f, 0x03ff},              /* largest subnormal */
        {0x1.ffcp-15f, 0x0400},              /* tie: up into the smallest normal (even) */
        {1.0f + 0x1p-11f, 0x3c00},           /* tie between 1 and 1+2^-10: even is 1 */
        {1.0f + 3 * 0x1p-11f, 0x3c02},       /* tie between 1+2^-10 and 1+2^-9: even */
        {1e-30f, 0x0000}, {-1e-30f, 0x8000}, {0x1p-149f, 0x0000},
        {-4.8520303f, 0xc4da},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK(half_from_float(cases[i].in) == cases[i].out, "%a -> %04x, want %04x", cases[i].in,
              half_from_float(cases[i].in), cases[i].out);
    uint16_t qnan = half_from_float(NAN);
    CHECK((qnan & 0x7c00) == 0x7c00 && (qnan & 0x3ff) != 0, "NaN -> %04x", qnan);
    CHECK(isnan(half_to_float(qnan)), "NaN does not come back");
    /* A signalling NaN whose payload sits only in the low bits stays NaN. */
    uint16_t snan = half_from_float(from_bits(0x7f800001u));
    CHECK((snan & 0x3ff) != 0 && (snan & 0x7c00) == 0x7c00, "sNaN -> %04x", snan);
    CHECK(half_from_float(from_bits(0xff800001u)) & 0x8000, "NaN sign lost");
}

/* Every half decodes to a float that encodes back to the same half. */
Test(half, every_half_round_trips)
{
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = half_to_float((uint16_t)h);
        if (isnan(f)) {
            CHECK(((h >> 10) & 0x1f) == 0x1f && (h & 0x3ff), "%04x decoded to NaN", h);
            continue;
        }
        CHECK(half_from_float(f) == h, "%04x -> %a -> %04x", h, f, half_from_float(f));
    }
    CHECK(half_to_float(0x0001) == 0x1p-24f, "smallest subnormal");
    CHECK(half_to_float(0x03ff) == 0x1.ff8p-15f, "largest subnormal");
    CHECK(half_to_float(0x7bff) == 65504.0f, "largest normal");
    CHECK(isinf(half_to_float(0x7c00)) && half_to_float(0xfc00) < 0, "infinities");
}

/* Around every midpoint between neighbouring finite halves a and b (of
 * both signs): below goes to a, above to b, the midpoint itself to the one
 * with an even mantissa. The midpoint needs 12 significant bits, so it is
 * exact in float32. */
Test(half, every_rounding_boundary)
{
    for (uint32_t a = 0; a < 0x7bff; a++) {
        for (int neg = 0; neg < 2; neg++) {
            uint16_t ha = (uint16_t)(a | (neg ? 0x8000u : 0)), hb = (uint16_t)(ha + 1);
            double mid = ((double)half_to_float(ha) + (double)half_to_float(hb)) / 2;
            float fm = (float)mid;
            REQUIRE((double)fm == mid, "midpoint of %04x and %04x not exact", ha, hb);
            uint16_t even = (ha & 1) ? hb : ha;
            CHECK(half_from_float(fm) == even, "mid %a -> %04x want %04x", fm, half_from_float(fm),
                  even);
            float toward_a = nextafterf(fm, neg ? INFINITY : -INFINITY);
            float toward_b = nextafterf(fm, neg ? -INFINITY : INFINITY);
            CHECK(half_from_float(toward_a) == ha, "%a -> %04x want %04x", toward_a,
                  half_from_float(toward_a), ha);
            CHECK(half_from_float(toward_b) == hb, "%a -> %04x want %04x", toward_b,
                  half_from_float(toward_b), hb);
        }
    }
    /* Past the largest half: below 65520 stays 65504, from it on infinity. */
    CHECK(half_from_float(nextafterf(65520.0f, 0)) == 0x7bff, "just below 65520");
    CHECK(half_from_float(65520.0f) == 0x7c00, "65520");
}

Test(half, agrees_with_the_compiler_on_random_floats)
{
#ifdef __FLT16_MAX__
    rng r;
    rng_init(&r, 16);
    for (int i = 0; i < 200000; i++) {
        /* Random bit patterns cover every exponent; scaled normals cover
         * the range logits live in. */
        float f = (i & 1) ? from_bits((uint32_t)rng_u64(&r)) : (float)(rng_normal(&r) * 20.0);
        if (isnan(f))
            continue;
        _Float16 ref = (_Float16)f;
        uint16_t rb;
        memcpy(&rb, &ref, sizeof rb);
        CHECK(half_from_float(f) == rb, "%a (%08x): %04x, compiler %04x", f, bits(f),
              half_from_float(f), rb);
    }
#else
    cr_skip_test("this compiler has no _Float16");
#endif
}

Test(half, little_endian_writers)
{
    float x[3] = {1.0f, -2.0f, 65504.0f};
    uint8_t f32[12], f16[6];
    half_write_f32le(f32, x, 3);
    half_write_f16le(f16, x, 3);
    static const uint8_t want32[12] = {0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0, 0, 0xe0, 0x7f, 0x47};
    static const uint8_t want16[6] = {0x00, 0x3c, 0x00, 0xc0, 0xff, 0x7b};
    cr_expect_arr_eq(f32, want32, 12);
    cr_expect_arr_eq(f16, want16, 6);
}
