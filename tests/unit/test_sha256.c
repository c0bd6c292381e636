/* SHA-256 against the FIPS 180-2 test vectors. */
#include <criterion/criterion.h>
#include <string.h>

#include "common/sha256.h"

static void hex_of(const char *s, char out[SHA256_HEX_BYTES])
{
    uint8_t d[SHA256_BYTES];
    sha256(s, strlen(s), d);
    sha256_hex(d, out);
}

Test(sha256, known_vectors)
{
    char h[SHA256_HEX_BYTES];
    hex_of("abc", h);
    cr_expect_str_eq(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    hex_of("", h);
    cr_expect_str_eq(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

Test(sha256, streaming_equals_one_shot)
{
    const char *msg = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256_ctx c;
    sha256_init(&c);
    for (size_t i = 0; i < strlen(msg); i += 5)
        sha256_update(&c, msg + i, strlen(msg) - i < 5 ? strlen(msg) - i : 5);
    uint8_t d[SHA256_BYTES];
    sha256_final(&c, d);
    char h[SHA256_HEX_BYTES];
    sha256_hex(d, h);
    cr_expect_str_eq(h, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}
