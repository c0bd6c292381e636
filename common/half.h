/* IEEE 754 binary16 ("half") conversions, for values sent in half the bytes
 * (teacher logits replies in float16).
 *
 * half_from_float rounds to nearest, ties to even, as IEEE requires and as
 * NumPy's float16 and PyTorch's half do: values at or above 65520 in
 * magnitude become infinity, values at or below 2^-25 become (signed) zero,
 * everything between is a normal or subnormal half; NaN stays a (quiet) NaN
 * and the sign is kept everywhere. half_to_float is exact. */
#ifndef GTRT_HALF_H
#define GTRT_HALF_H

#include <stddef.h>
#include <stdint.h>

uint16_t half_from_float(float f);
float half_to_float(uint16_t h);

/* Write n floats as little-endian float32 or float16 bytes (4n or 2n). */
void half_write_f32le(uint8_t *out, const float *x, size_t n);
void half_write_f16le(uint8_t *out, const float *x, size_t n);

#endif
