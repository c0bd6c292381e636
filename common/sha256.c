/* SHA-256 over libsodium (see sha256.h). */
#include "common/sha256.h"

#include <assert.h>
#include <sodium.h>
#include <stdio.h>

_Static_assert(sizeof(crypto_hash_sha256_state) <= sizeof(((sha256_ctx *)0)->state),
               "sha256_ctx too small for libsodium state");

void sha256_init(sha256_ctx *c) { crypto_hash_sha256_init((crypto_hash_sha256_state *)c->state); }

void sha256_update(sha256_ctx *c, const void *data, size_t len)
{
    crypto_hash_sha256_update((crypto_hash_sha256_state *)c->state, data, len);
}

void sha256_final(sha256_ctx *c, uint8_t out[SHA256_BYTES])
{
    crypto_hash_sha256_final((crypto_hash_sha256_state *)c->state, out);
}

void sha256(const void *data, size_t len, uint8_t out[SHA256_BYTES])
{
    crypto_hash_sha256(out, data, len);
}

void sha256_hex(const uint8_t digest[SHA256_BYTES], char out[SHA256_HEX_BYTES])
{
    for (int i = 0; i < SHA256_BYTES; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
}
