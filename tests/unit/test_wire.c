/* Envelope round trip and every rejection path of the decoder. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "common/wire.h"

typedef struct msgbuf {
    wire_encoded enc;
    wire_slice frames[WIRE_MAX_FRAMES + 2];
    size_t n;
} msgbuf;

static void make_hello(msgbuf *m, const char *id, uint64_t rid, size_t npayload,
                       const wire_slice *payload)
{
    Gtrt__PeerInfo info = GTRT__PEER_INFO__INIT;
    info.id = (char *)id;
    info.host = "h";
    Gtrt__Hello h = GTRT__HELLO__INIT;
    h.peer = &info;
    h.has_heartbeat_ms = 1;
    h.heartbeat_ms = 250;
    cr_assert_eq(wire_encode(GTRT__ROLE__ROLE_ACTOR, id, GTRT__MSG_TYPE__MSG_HELLO, rid, &h.base,
                             npayload, &m->enc),
                 0);
    m->frames[0] = (wire_slice){m->enc.hdr, m->enc.hdr_len};
    m->frames[1] = (wire_slice){m->enc.body, m->enc.body_len};
    m->n = 2;
    for (size_t i = 0; i < npayload; i++)
        m->frames[m->n++] = payload[i];
}

/* Encode a header with arbitrary fields, for the rejection tests. */
static size_t pack_header(Gtrt__Header *h, uint8_t *buf)
{
    size_t n = gtrt__header__get_packed_size(h);
    cr_assert_leq(n, 1024);
    return gtrt__header__pack(h, buf);
}

static Gtrt__Header good_header(void)
{
    Gtrt__Header h = GTRT__HEADER__INIT;
    h.has_schema_version = 1;
    h.schema_version = WIRE_SCHEMA_VERSION;
    h.has_role = 1;
    h.role = GTRT__ROLE__ROLE_ACTOR;
    h.sender_id = "actor-1";
    h.has_type = 1;
    h.type = GTRT__MSG_TYPE__MSG_HEARTBEAT;
    return h;
}

static wire_reject decode_with_header(Gtrt__Header *h, const uint8_t *body, size_t blen)
{
    uint8_t hb[1024];
    size_t hl = pack_header(h, hb);
    wire_slice f[2] = {{hb, hl}, {body, blen}};
    wire_msg m;
    wire_reject r = wire_decode(f, 2, &m);
    wire_msg_clear(&m);
    return r;
}

Test(wire, round_trip_keeps_every_field)
{
    uint8_t p1[3] = {1, 2, 3}, p2[1] = {9};
    wire_slice payload[2] = {{p1, 3}, {p2, 1}};
    msgbuf b;
    make_hello(&b, "actor-7", 42, 2, payload);
    wire_msg m;
    cr_assert_eq(wire_decode(b.frames, b.n, &m), WIRE_OK);
    cr_expect_eq(m.type, GTRT__MSG_TYPE__MSG_HELLO);
    cr_expect_str_eq(m.hdr->sender_id, "actor-7");
    cr_expect_eq(m.hdr->role, GTRT__ROLE__ROLE_ACTOR);
    cr_expect_eq(m.hdr->request_id, 42);
    cr_expect_eq(m.hdr->schema_version, WIRE_SCHEMA_VERSION);
    const Gtrt__Hello *h = (const Gtrt__Hello *)m.body;
    cr_expect_str_eq(h->peer->id, "actor-7");
    cr_expect_eq(h->heartbeat_ms, 250);
    cr_expect_eq(m.npayload, 2);
    cr_expect_eq(m.payload[0].len, 3);
    cr_expect_eq(memcmp(m.payload[0].data, p1, 3), 0);
    cr_expect_eq(m.payload[1].data[0], 9);
    wire_msg_clear(&m);
    wire_encoded_clear(&b.enc);
}

Test(wire, empty_body_message_decodes)
{
    Gtrt__StatusRequest req = GTRT__STATUS_REQUEST__INIT;
    wire_encoded enc;
    cr_assert_eq(wire_encode(GTRT__ROLE__ROLE_CLIENT, "cli", GTRT__MSG_TYPE__MSG_STATUS_REQUEST, 1,
                             &req.base, 0, &enc),
                 0);
    cr_expect_eq(enc.body_len, 0);
    wire_slice f[2] = {{enc.hdr, enc.hdr_len}, {enc.body, 0}};
    wire_msg m;
    cr_expect_eq(wire_decode(f, 2, &m), WIRE_OK);
    wire_msg_clear(&m);
    wire_encoded_clear(&enc);
}

Test(wire, rejects_wrong_frame_counts)
{
    msgbuf b;
    make_hello(&b, "a", 0, 0, NULL);
    wire_msg m;
    cr_expect_eq(wire_decode(b.frames, 1, &m), WIRE_REJ_FRAMES);
    cr_expect_eq(wire_decode(b.frames, 0, &m), WIRE_REJ_FRAMES);
    wire_slice many[WIRE_MAX_FRAMES + 1];
    for (size_t i = 0; i < WIRE_MAX_FRAMES + 1; i++)
        many[i] = b.frames[i < 2 ? i : 1];
    cr_expect_eq(wire_decode(many, WIRE_MAX_FRAMES + 1, &m), WIRE_REJ_FRAMES);
    wire_encoded_clear(&b.enc);
}

Test(wire, rejects_header_size)
{
    uint8_t big[WIRE_MAX_HEADER_BYTES + 1];
    memset(big, 0, sizeof big);
    wire_slice f[2] = {{big, 0}, {big, 0}};
    wire_msg m;
    cr_expect_eq(wire_decode(f, 2, &m), WIRE_REJ_HEADER_SIZE);
    f[0].len = sizeof big;
    cr_expect_eq(wire_decode(f, 2, &m), WIRE_REJ_HEADER_SIZE);
}

Test(wire, rejects_garbage_and_truncated_headers)
{
    uint8_t junk[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    wire_slice f[2] = {{junk, sizeof junk}, {junk, 0}};
    wire_msg m;
    cr_expect_eq(wire_decode(f, 2, &m), WIRE_REJ_HEADER);
    msgbuf b;
    make_hello(&b, "actor-1", 0, 0, NULL);
    b.frames[0].len -= 3; /* cut inside the sender id string */
    cr_expect_eq(wire_decode(b.frames, 2, &m), WIRE_REJ_HEADER);
    wire_encoded_clear(&b.enc);
}

Test(wire, rejects_wrong_or_missing_schema_version)
{
    Gtrt__Header h = good_header();
    h.schema_version = WIRE_SCHEMA_VERSION + 1;
    cr_expect_eq(decode_with_header(&h, NULL, 0), WIRE_REJ_VERSION);
    h.has_schema_version = 0;
    cr_expect_eq(decode_with_header(&h, NULL, 0), WIRE_REJ_VERSION);
}

Test(wire, rejects_bad_sender)
{
    Gtrt__Header h = good_header();
    h.sender_id = NULL;
    cr_expect_eq(decode_with_header(&h, NULL, 0), WIRE_REJ_SENDER);
    h = good_header();
    h.sender_id = "has space";
    cr_expect_eq(decode_with_header(&h, NULL, 0), WIRE_REJ_SENDER);
    char longid[WIRE_MAX_ID_LEN + 2];
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = 0;
    h.sender_id = longid;
    cr_expect_eq(decode_with_header(&h, NULL, 0), WIRE_REJ_SENDER);
    h = good_header();
    h.role = (Gtrt__Role)99;
    cr_expect_eq(decode_with_header(&h, NULL, 0), WIRE_REJ_SENDER);
    h.has_role = 0;
    cr_expect_eq(decode_with_header(&h, NULL, 0), WIRE_REJ_SENDER);
}

Test(wire, rejects_unknown_type)
{
    Gtrt__Header h = good_header();
    h.type = (Gtrt__MsgType)1000;
    cr_expect_eq(decode_with_header(&h, NULL, 0), WIRE_REJ_TYPE);
    h.type = GTRT__MSG_TYPE__MSG_NONE;
    cr_expect_eq(decode_with_header(&h, NULL, 0), WIRE_REJ_TYPE);
    h.has_type = 0;
    cr_expect_eq(decode_with_header(&h, NULL, 0), WIRE_REJ_TYPE);
}

Test(wire, rejects_oversized_and_garbage_bodies)
{
    Gtrt__Header h = good_header();
    size_t big = (256 << 10) + 1;
    uint8_t *body = calloc(1, big);
    cr_expect_eq(decode_with_header(&h, body, big), WIRE_REJ_BODY_SIZE);
    memset(body, 0xff, 32);
    cr_expect_eq(decode_with_header(&h, body, 32), WIRE_REJ_BODY);
    free(body);
}

Test(wire, rejects_payload_count_mismatch)
{
    uint8_t p[1] = {0};
    wire_slice payload[1] = {{p, 1}};
    msgbuf b;
    make_hello(&b, "a", 0, 1, payload);
    wire_msg m;
    cr_expect_eq(wire_decode(b.frames, 2, &m), WIRE_REJ_PAYLOAD, "missing payload frame");
    b.frames[3] = payload[0];
    cr_expect_eq(wire_decode(b.frames, 4, &m), WIRE_REJ_PAYLOAD, "extra payload frame");
    cr_expect_eq(wire_decode(b.frames, 3, &m), WIRE_OK);
    wire_msg_clear(&m);
    wire_encoded_clear(&b.enc);
}

Test(wire, random_bytes_never_crash)
{
    /* A tiny in-test fuzz; the libFuzzer target goes much further. */
    uint64_t x = 12345;
    uint8_t buf[2][64];
    for (int it = 0; it < 20000; it++) {
        for (int k = 0; k < 2; k++)
            for (int i = 0; i < 64; i++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf[k][i] = (uint8_t)x;
            }
        wire_slice f[2] = {{buf[0], 1 + x % 63}, {buf[1], (x >> 8) % 64}};
        wire_msg m;
        if (wire_decode(f, 2, &m) == WIRE_OK)
            wire_msg_clear(&m);
    }
    cr_expect(1); /* reaching here without a sanitizer report is the test */
}

Test(wire, id_validation)
{
    cr_expect(wire_id_valid("actor-node1:3@x.y_z"));
    cr_expect_not(wire_id_valid(""));
    cr_expect_not(wire_id_valid("a/b"));
    cr_expect_not(wire_id_valid(NULL));
}
