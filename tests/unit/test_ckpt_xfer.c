/* Chunked checkpoint transfer in one process: server (ROUTER + PUB) and
 * fetcher on inproc sockets of the same loop. A corrupted chunk is
 * rejected and fetched again; the delivered bytes equal the published. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "common/ckpt_xfer.h"
#include "common/rng.h"

typedef struct fixture {
    uv_loop_t loop;
    net_loop nl;
    net_sock *router, *pub;
    ckpt_server cs;
    ckpt_fetcher f;
    uv_timer_t deadline, later;
    uint8_t *expect;
    size_t expect_len;
    uint64_t got_version;
    int delivered, equal;
    int mangle_left;
    uint32_t mangle_index;
} fixture;

static void on_request(net_sock *s, const net_route *from, const wire_msg *msg, void *ud)
{
    fixture *fx = ud;
    if (msg->type == GTRT__MSG_TYPE__MSG_CKPT_CHUNK_REQUEST)
        ckpt_server_on_request(&fx->cs, s, from, msg);
}

static void mangle(void *ud, uint64_t v, uint32_t index, uint8_t *bytes, size_t len)
{
    fixture *fx = ud;
    (void)v;
    if (index == fx->mangle_index && fx->mangle_left > 0) {
        fx->mangle_left--;
        bytes[len / 2] ^= 0x40;
    }
}

static void stop_all(fixture *fx)
{
    ckpt_fetcher_close(&fx->f);
    uv_close((uv_handle_t *)&fx->deadline, NULL);
    uv_close((uv_handle_t *)&fx->later, NULL);
    net_loop_close(&fx->nl);
}

static void on_ready(void *ud, uint64_t version, const char *name, uint8_t *data, size_t len)
{
    fixture *fx = ud;
    fx->delivered++;
    fx->got_version = version;
    fx->equal = len == fx->expect_len && !memcmp(data, fx->expect, len) && !strcmp(name, "ckpt.safetensors");
    free(data);
    stop_all(fx);
}

static void on_deadline(uv_timer_t *h) { stop_all(h->data); }

static void publish(fixture *fx, uint64_t version)
{
    uint8_t *copy = malloc(fx->expect_len);
    memcpy(copy, fx->expect, fx->expect_len);
    err e = {0};
    cr_assert_eq(ckpt_server_publish(&fx->cs, version, "ckpt.safetensors", copy, fx->expect_len, &e), 0, "%s", e.msg);
}

static void publish_later(uv_timer_t *h) { publish(h->data, 7); }

static void setup(fixture *fx, size_t len, uint32_t chunk, const char *tag)
{
    memset(fx, 0, sizeof *fx);
    cr_assert_eq(uv_loop_init(&fx->loop), 0);
    err e = {0};
    cr_assert_eq(net_loop_init(&fx->nl, &fx->loop, GTRT__ROLE__ROLE_LEARNER, "t", 64 << 20, 0, &e), 0);
    char rep[64], pub[64];
    snprintf(rep, sizeof rep, "inproc://ck-%s", tag);
    snprintf(pub, sizeof pub, "inproc://pub-%s", tag);
    fx->router = net_sock_new(&fx->nl, ZMQ_ROUTER, "router", on_request, fx, &e);
    fx->pub = net_sock_new(&fx->nl, ZMQ_PUB, "pub", NULL, NULL, &e);
    cr_assert_eq(net_sock_bind(fx->router, rep, &e), 0, "%s", e.msg);
    cr_assert_eq(net_sock_bind(fx->pub, pub, &e), 0, "%s", e.msg);
    ckpt_server_init(&fx->cs, fx->pub, chunk);
    fx->cs.mangle = mangle;
    fx->cs.mangle_ud = fx;
    cr_assert_eq(ckpt_fetcher_init(&fx->f, &fx->nl, rep, pub, 3, 500, 1 << 30, on_ready, fx, &e), 0, "%s", e.msg);
    fx->expect_len = len;
    fx->expect = malloc(len);
    rng r;
    rng_init(&r, 5);
    for (size_t i = 0; i < len; i++)
        fx->expect[i] = (uint8_t)rng_u64(&r);
    uv_timer_init(&fx->loop, &fx->deadline);
    uv_timer_init(&fx->loop, &fx->later);
    fx->deadline.data = fx->later.data = fx;
    uv_timer_start(&fx->deadline, on_deadline, 20000, 0);
}

static void teardown(fixture *fx)
{
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    uv_loop_close(&fx->loop);
    ckpt_server_deinit(&fx->cs);
    free(fx->expect);
}

Test(ckpt_xfer, announced_on_pub_fetched_and_verified)
{
    fixture fx;
    setup(&fx, (3u << 20) + 12345, 1u << 20, "a");
    uv_timer_start(&fx.later, publish_later, 100, 0);
    uv_run(&fx.loop, UV_RUN_DEFAULT);
    cr_expect_eq(fx.delivered, 1, "checkpoint never delivered");
    cr_expect_eq(fx.got_version, 7);
    cr_expect(fx.equal, "delivered bytes differ from the published ones");
    cr_expect_eq(fx.f.stats.chunks, 4);
    cr_expect_eq(fx.f.stats.corrupt, 0);
    teardown(&fx);
}

Test(ckpt_xfer, corrupted_chunk_is_rejected_and_fetched_again)
{
    fixture fx;
    setup(&fx, (2u << 20) + 7, 1u << 20, "b");
    fx.mangle_index = 1;
    fx.mangle_left = 1;
    publish(&fx, 0); /* version 0, the warm start, is a version like any */
    Gtrt__CkptAnnounce a;
    cr_assert(ckpt_server_latest(&fx.cs, &a));
    ckpt_fetcher_offer(&fx.f, &a); /* the heartbeat path */
    uv_run(&fx.loop, UV_RUN_DEFAULT);
    cr_expect_eq(fx.delivered, 1);
    cr_expect_eq(fx.got_version, 0);
    cr_expect(fx.equal);
    cr_expect_eq(fx.f.stats.corrupt, 1);
    cr_expect_eq(fx.f.stats.chunks, 3);
    teardown(&fx);
}

Test(ckpt_xfer, bad_announcements_are_refused)
{
    fixture fx;
    setup(&fx, 5000, CKPT_MIN_CHUNK, "c");
    Gtrt__CkptAnnounce a = GTRT__CKPT_ANNOUNCE__INIT;
    ckpt_fetcher_offer(&fx.f, &a); /* nothing set */
    uint8_t sha[SHA256_BYTES] = {0};
    a.has_version = a.has_total_bytes = a.has_chunk_bytes = a.has_sha256 = 1;
    a.version = 1;
    a.total_bytes = (uint64_t)1 << 40; /* over max_bytes */
    a.chunk_bytes = CKPT_MIN_CHUNK;
    a.sha256.len = SHA256_BYTES;
    a.sha256.data = sha;
    ckpt_fetcher_offer(&fx.f, &a);
    a.total_bytes = 100;
    a.chunk_bytes = 1; /* chunk too small */
    ckpt_fetcher_offer(&fx.f, &a);
    cr_expect_eq(fx.f.stats.bad_announces, 3);
    cr_expect_not(fx.f.active);
    stop_all(&fx);
    teardown(&fx);
}

Test(ckpt_xfer, server_refuses_unknown_versions)
{
    ckpt_server cs;
    ckpt_server_init(&cs, NULL, CKPT_MIN_CHUNK);
    err e = {0};
    uint8_t *d = malloc(10);
    memset(d, 1, 10);
    cr_expect_eq(ckpt_server_publish(&cs, 2, "x", d, 10, &e), 0);
    d = malloc(10);
    cr_expect_eq(ckpt_server_publish(&cs, 2, "x", d, 10, &e), GTRT_EINVAL, "same version twice");
    Gtrt__CkptAnnounce a;
    cr_expect(ckpt_server_latest(&cs, &a));
    cr_expect_eq(a.version, 2);
    cr_expect_eq(a.total_bytes, 10);
    ckpt_server_deinit(&cs);
}

/* Version 0, the merge base of teachers, stays served however many
 * versions follow (only the latest two of those are kept), so a teacher
 * that starts late still gets it. */
Test(ckpt_xfer, base_version_stays_served)
{
    fixture fx;
    setup(&fx, 9000, CKPT_MIN_CHUNK, "d");
    for (uint64_t v = 0; v <= 4; v++)
        publish(&fx, v);
    Gtrt__CkptAnnounce latest, base;
    cr_assert(ckpt_server_latest(&fx.cs, &latest));
    cr_expect_eq(latest.version, 4);
    cr_assert(ckpt_server_base(&fx.cs, &base));
    cr_expect_eq(base.version, 0);
    cr_expect_eq(fx.cs.kept[1].version, 3, "the previous version is no longer kept");
    ckpt_fetcher_offer(&fx.f, &base);
    uv_run(&fx.loop, UV_RUN_DEFAULT);
    cr_expect_eq(fx.delivered, 1, "the base was not delivered");
    cr_expect_eq(fx.got_version, 0);
    cr_expect(fx.equal);
    cr_expect_eq(fx.cs.bad_requests, 0);
    teardown(&fx);
}

/* A resumed learner publishes its latest version and its base in either
 * order; the base is published once. A fetcher told it has a version
 * ignores offers of it. */
Test(ckpt_xfer, base_published_once_in_any_order)
{
    ckpt_server cs;
    ckpt_server_init(&cs, NULL, CKPT_MIN_CHUNK);
    err e = {0};
    uint8_t *d = calloc(1, 10);
    cr_expect_eq(ckpt_server_publish(&cs, 5, "v5", d, 10, &e), 0, "%s", e.msg);
    Gtrt__CkptAnnounce a;
    cr_expect_not(ckpt_server_base(&cs, &a));
    d = calloc(1, 20);
    cr_expect_eq(ckpt_server_publish(&cs, 0, "v0", d, 20, &e), 0, "%s", e.msg);
    cr_assert(ckpt_server_base(&cs, &a));
    cr_expect_eq(a.total_bytes, 20);
    cr_assert(ckpt_server_latest(&cs, &a));
    cr_expect_eq(a.version, 5, "the base replaced the latest");
    d = calloc(1, 20);
    cr_expect_eq(ckpt_server_publish(&cs, 0, "v0", d, 20, &e), GTRT_EINVAL, "base twice");
    ckpt_server_deinit(&cs);

    ckpt_server_init(&cs, NULL, CKPT_MIN_CHUNK);
    d = calloc(1, 10);
    cr_expect_eq(ckpt_server_publish(&cs, 0, "v0", d, 10, &e), 0, "%s", e.msg);
    cr_assert(ckpt_server_latest(&cs, &a));
    cr_expect_eq(a.version, 0, "the base alone is also the latest");
    ckpt_server_deinit(&cs);
}

Test(ckpt_xfer, fetcher_ignores_what_it_has)
{
    fixture fx;
    setup(&fx, 5000, CKPT_MIN_CHUNK, "e");
    publish(&fx, 0);
    Gtrt__CkptAnnounce a;
    cr_assert(ckpt_server_base(&fx.cs, &a));
    ckpt_fetcher_offer(&fx.f, &a);
    cr_expect(fx.f.active);
    ckpt_fetcher_have(&fx.f, 0); /* it arrived another way: the fetch is dropped */
    cr_expect_not(fx.f.active);
    ckpt_fetcher_offer(&fx.f, &a);
    cr_expect_not(fx.f.active, "fetching a version it has");
    stop_all(&fx);
    teardown(&fx);
}
