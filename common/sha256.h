/* SHA-256 (OpenSSL's libcrypto), one-shot and streaming, used to verify
 * checkpoint chunks and files end to end. */
#ifndef GTRT_SHA256_H
#define GTRT_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_BYTES 32
#define SHA256_HEX_BYTES 65 /* 64 hex digits + NUL */

typedef struct sha256_ctx {
    struct evp_md_ctx_st *ctx; /* OpenSSL's EVP_MD_CTX, from init to final */
} sha256_ctx;

/* init allocates the context and final releases it: pair them. */
void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t len);
void sha256_final(sha256_ctx *c, uint8_t out[SHA256_BYTES]);
void sha256(const void *data, size_t len, uint8_t out[SHA256_BYTES]);
void sha256_hex(const uint8_t digest[SHA256_BYTES], char out[SHA256_HEX_BYTES]);

#endif
