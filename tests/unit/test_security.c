/* CURVE security: key files (good, malformed, missing, readable by
 * others), allow-lists (comments, bad lines named by number), which
 * endpoints count as local, the bind rule, and the ZAP handler in-process:
 * an allowed client gets its reply; a wrong key, no key of its own, a
 * wrong server key and a plaintext client get nothing and are counted. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "common/clock.h"
#include "common/security.h"

static char tmpdir[64];

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/gtrt-sec-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    cr_expect_eq(system(cmd), 0);
}

/* Write `text` to tmpdir/name with `mode`; the path in a static buffer. */
static const char *put(const char *name, const char *text, mode_t mode)
{
    static char path[8][128];
    static int k;
    char *p = path[k++ % 8];
    snprintf(p, 128, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    cr_assert_eq(chmod(p, mode), 0);
    return p;
}

typedef struct pair {
    char pub[41], secret[41];
} pair;

static pair keypair(void)
{
    pair kp;
    cr_assert_eq(zmq_curve_keypair(kp.pub, kp.secret), 0);
    return kp;
}

static const char *key_file(const char *name, const pair *kp, mode_t mode)
{
    char text[256];
    snprintf(text, sizeof text, "# a comment\npublic-key = %s\nsecret-key = %s\n", kp->pub,
             kp->secret);
    return put(name, text, mode);
}

static const char *pub_file(const char *name, const pair *kp)
{
    char text[64];
    snprintf(text, sizeof text, "%s\n", kp->pub);
    return put(name, text, 0644);
}

/* ==== key files ==== */

TestSuite(security, .init = setup, .fini = teardown);

Test(security, key_pair_and_public_files)
{
    pair kp = keypair();
    security_key k;
    err e = {0};
    cr_assert_eq(security_key_read(key_file("a.key", &kp, 0600), &k, &e), 0, "%s", e.msg);
    cr_expect(k.has_secret);
    cr_expect_str_eq(k.pub_z85, kp.pub);
    uint8_t secret[32];
    zmq_z85_decode(secret, kp.secret);
    cr_expect_eq(memcmp(k.secret, secret, 32), 0);
    cr_assert_eq(security_key_read(pub_file("a.pub", &kp), &k, &e), 0, "%s", e.msg);
    cr_expect_not(k.has_secret);
    cr_expect_str_eq(k.pub_z85, kp.pub);
    /* a secret alone: the public key is derived */
    char text[128];
    snprintf(text, sizeof text, "secret-key=%s\r\n", kp.secret);
    cr_assert_eq(security_key_read(put("s.key", text, 0600), &k, &e), 0, "%s", e.msg);
    cr_expect_str_eq(k.pub_z85, kp.pub);
    /* group-readable: accepted, with a warning */
    cr_expect_eq(security_key_read(key_file("g.key", &kp, 0640), &k, &e), 0, "%s", e.msg);
}

Test(security, bad_key_files)
{
    pair kp = keypair(), other = keypair();
    security_key k;
    err e = {0};
    char path[128];
    snprintf(path, sizeof path, "%s/missing.key", tmpdir);
    cr_expect_eq(security_key_read(path, &k, &e), GTRT_EIO);
    cr_expect(strstr(e.msg, "missing.key") != NULL, "%s", e.msg);

    /* readable by others: refused, with the fix in the message */
    cr_expect_eq(security_key_read(key_file("w.key", &kp, 0644), &k, &e), GTRT_ECONFIG);
    cr_expect(strstr(e.msg, "chmod 600") != NULL, "%s", e.msg);
    /* a public key file may be world-readable */
    cr_expect_eq(security_key_read(pub_file("w.pub", &kp), &k, &e), 0, "%s", e.msg);

    const char *bad[] = {
        "",                                 /* no key */
        "# only a comment\n",               /* no key */
        "tooshort\n",                       /* not 40 characters */
        "public-key = 0123456789012345678901234567890123456789X\n", /* 41 */
        "public-key = 01234567890123456789012345678901234567\"9\n",  /* not Z85 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_expect_neq(security_key_read(put("bad.key", bad[i], 0600), &k, &e), 0, "case %zu", i);
        cr_expect(strstr(e.msg, "bad.key") != NULL, "%s", e.msg);
    }
    /* a public key that is not the secret's */
    char text[256];
    snprintf(text, sizeof text, "public-key = %s\nsecret-key = %s\n", other.pub, kp.secret);
    cr_expect_eq(security_key_read(put("mix.key", text, 0600), &k, &e), GTRT_EPARSE);
    cr_expect(strstr(e.msg, "does not belong") != NULL, "%s", e.msg);
    /* two public keys, with the line number */
    snprintf(text, sizeof text, "%s\n%s\n", kp.pub, other.pub);
    cr_expect_eq(security_key_read(put("two.pub", text, 0644), &k, &e), GTRT_EPARSE);
    cr_expect(strstr(e.msg, "two.pub:2:") != NULL, "%s", e.msg);
    /* oversized */
    char *big = calloc(1, SECURITY_KEY_FILE_MAX + 10);
    memset(big, '#', SECURITY_KEY_FILE_MAX + 5);
    cr_expect_eq(security_key_read(put("big.key", big, 0600), &k, &e), GTRT_ERANGE);
    free(big);
}

/* ==== allow-lists ==== */

Test(security, allow_list_comments_and_lookup)
{
    pair a = keypair(), b = keypair(), c = keypair();
    char text[512];
    snprintf(text, sizeof text, "# clients\n\n%s\n   \t\n  %s   # actor-1\r\n# %s\n", a.pub, b.pub,
             c.pub);
    security_allow al;
    err e = {0};
    cr_assert_eq(security_allow_read(put("allow", text, 0644), &al, &e), 0, "%s", e.msg);
    cr_expect_eq(al.n, 2);
    uint8_t k[32];
    zmq_z85_decode(k, a.pub);
    cr_expect(security_allow_has(&al, k));
    zmq_z85_decode(k, b.pub);
    cr_expect(security_allow_has(&al, k));
    zmq_z85_decode(k, c.pub); /* commented out */
    cr_expect_not(security_allow_has(&al, k));
    security_allow_deinit(&al);
}

Test(security, allow_list_bad_lines_are_named)
{
    pair a = keypair();
    char text[512];
    security_allow al;
    err e = {0};
    snprintf(text, sizeof text, "%s\n# fine\nnot-a-key\n", a.pub);
    cr_expect_eq(security_allow_read(put("allow", text, 0644), &al, &e), GTRT_EPARSE);
    cr_expect(strstr(e.msg, "allow:3:") != NULL, "%s", e.msg);
    cr_expect(strstr(e.msg, "not-a-key") != NULL, "%s", e.msg);
    snprintf(text, sizeof text, "\n%s trailing words\n", a.pub);
    cr_expect_eq(security_allow_read(put("allow2", text, 0644), &al, &e), GTRT_EPARSE);
    cr_expect(strstr(e.msg, "allow2:2:") != NULL, "%s", e.msg);
    /* a .key file is not an allow-list */
    cr_expect_eq(security_allow_read(key_file("k.key", &a, 0600), &al, &e), GTRT_EPARSE);
    cr_expect(strstr(e.msg, "k.key:2:") != NULL, "%s", e.msg);
}

Test(security, load_checks_combinations)
{
    pair s = keypair(), c = keypair();
    const char *skey = key_file("server.key", &s, 0600), *spub = pub_file("server.pub", &s);
    const char *ckey = key_file("c.key", &c, 0600), *cpub = pub_file("c.pub", &c);
    security *sec = NULL;
    err e = {0};
    cr_assert_eq(security_load_files(NULL, NULL, NULL, false, &sec, &e), 0);
    cr_expect_not(security_on(sec));
    security_free(sec);
    cr_assert_eq(security_load_files(spub, ckey, NULL, false, &sec, &e), 0, "%s", e.msg);
    cr_expect(security_on(sec));
    cr_expect_not(sec->server.has_secret);
    security_free(sec);
    /* a client needs its pair, not the .pub */
    cr_expect_eq(security_load_files(skey, cpub, NULL, false, &sec, &e), GTRT_ECONFIG);
    cr_expect(strstr(e.msg, "security.client_key") != NULL, "%s", e.msg);
    /* client keys without the server key would silently mean plaintext */
    cr_expect_eq(security_load_files(NULL, ckey, NULL, false, &sec, &e), GTRT_ECONFIG);
    cr_expect(strstr(e.msg, "security.server_key") != NULL, "%s", e.msg);
    /* binding needs the server pair and an allow-list */
    cr_assert_eq(security_load_files(spub, ckey, NULL, false, &sec, &e), 0, "%s", e.msg);
    void *ctx = zmq_ctx_new();
    security_zap *zap = NULL;
    cr_expect_eq(security_zap_new(ctx, sec, &zap, &e), GTRT_ECONFIG);
    cr_expect(strstr(e.msg, "server key pair") != NULL, "%s", e.msg);
    security_free(sec);
    cr_assert_eq(security_load_files(skey, ckey, NULL, false, &sec, &e), 0, "%s", e.msg);
    cr_expect_eq(security_zap_new(ctx, sec, &zap, &e), GTRT_ECONFIG);
    cr_expect(strstr(e.msg, "security.allow") != NULL, "%s", e.msg);
    security_free(sec);
    zmq_ctx_term(ctx);
}

/* ==== endpoints ==== */

Test(security, loopback_classification)
{
    const char *local[] = {"tcp://127.0.0.1:1", "tcp://127.1.2.3:5555", "tcp://localhost:1",
                           "tcp://[::1]:1", "tcp://127.0.0.1:*", "ipc://x", "ipc:///tmp/a/b",
                           "inproc://x"};
    const char *remote[] = {"tcp://*:1", "tcp://0.0.0.0:1", "tcp://10.1.2.3:1", "tcp://eth0:1",
                            "tcp://[::]:1", "tcp://128.0.0.1:1", "tcp://127.0.0.1.evil.com:1",
                            "tcp://localhost.evil.com:1", "udp://127.0.0.1:1",
                            "garbage", "", "tcp://"};
    for (size_t i = 0; i < sizeof local / sizeof *local; i++)
        cr_expect(security_endpoint_local(local[i]), "%s should be local", local[i]);
    for (size_t i = 0; i < sizeof remote / sizeof *remote; i++)
        cr_expect_not(security_endpoint_local(remote[i]), "%s should not be local", remote[i]);
}

Test(security, plaintext_binds_only_locally_unless_insecure)
{
    err e = {0};
    cr_expect_eq(security_check_bind(NULL, "tcp://127.0.0.1:5555", &e), 0);
    cr_expect_eq(security_check_bind(NULL, "tcp://0.0.0.0:5555", &e), GTRT_ECONFIG);
    cr_expect(strstr(e.msg, "tcp://0.0.0.0:5555") != NULL, "%s", e.msg);
    cr_expect(strstr(e.msg, "security.insecure=true") != NULL, "%s", e.msg);
    cr_expect(strstr(e.msg, "security.server_key") != NULL, "%s", e.msg);
    security *sec = NULL;
    cr_assert_eq(security_load_files(NULL, NULL, NULL, true, &sec, &e), 0);
    cr_expect_eq(security_check_bind(sec, "tcp://*:5555", &e), 0);
    security_free(sec);
    pair s = keypair();
    cr_assert_eq(security_load_files(key_file("s.key", &s, 0600), NULL, NULL, false, &sec, &e), 0);
    cr_expect_eq(security_check_bind(sec, "tcp://*:5555", &e), 0); /* CURVE protects it */
    security_free(sec);
}

/* ==== the ZAP handler, in-process ==== */

typedef struct zap_fx {
    void *ctx, *server;
    char ep[128];
    security *srv, *good, *bad, *wrong_server;
    security_zap *zap;
} zap_fx;

static void zap_fx_init(zap_fx *f)
{
    pair s = keypair(), other_server = keypair(), ok = keypair(), nok = keypair();
    const char *skey = key_file("server.key", &s, 0600), *spub = pub_file("server.pub", &s);
    const char *opub = pub_file("other.pub", &other_server);
    const char *okkey = key_file("ok.key", &ok, 0600), *nokkey = key_file("nok.key", &nok, 0600);
    const char *allow = pub_file("allow", &ok);
    err e = {0};
    cr_assert_eq(security_load_files(skey, NULL, allow, false, &f->srv, &e), 0, "%s", e.msg);
    cr_assert_eq(security_load_files(spub, okkey, NULL, false, &f->good, &e), 0, "%s", e.msg);
    cr_assert_eq(security_load_files(spub, nokkey, NULL, false, &f->bad, &e), 0, "%s", e.msg);
    cr_assert_eq(security_load_files(opub, okkey, NULL, false, &f->wrong_server, &e), 0);
    f->ctx = zmq_ctx_new();
    cr_assert_eq(security_zap_new(f->ctx, f->srv, &f->zap, &e), 0, "%s", e.msg);
    f->server = zmq_socket(f->ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(f->server, ZMQ_LINGER, &zero, sizeof zero);
    cr_assert_eq(security_server(f->server, f->zap, "test", &e), 0, "%s", e.msg);
    /* CURVE needs a real transport: inproc skips the handshake */
    cr_assert_eq(zmq_bind(f->server, "tcp://127.0.0.1:*"), 0);
    size_t len = sizeof f->ep;
    zmq_getsockopt(f->server, ZMQ_LAST_ENDPOINT, f->ep, &len);
}

static void *zap_client(zap_fx *f, const security *sec)
{
    void *c = zmq_socket(f->ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(c, ZMQ_LINGER, &zero, sizeof zero);
    err e = {0};
    cr_assert_eq(security_client(c, sec, f->ep, &e), 0, "%s", e.msg);
    cr_assert_eq(zmq_connect(c, f->ep), 0);
    return c;
}

/* Echo what the server receives within `ms`; 1 when the client got its
 * answer back, 0 when nothing came through. */
static int zap_round_trip(zap_fx *f, void *client, int ms)
{
    zmq_send(client, "ping", 4, ZMQ_DONTWAIT);
    uint64_t deadline = clock_mono_ms() + (uint64_t)ms;
    while (clock_mono_ms() < deadline) {
        zmq_pollitem_t it[2] = {{.socket = f->server, .events = ZMQ_POLLIN},
                                {.socket = client, .events = ZMQ_POLLIN}};
        if (zmq_poll(it, 2, 50) <= 0)
            continue;
        if (it[0].revents & ZMQ_POLLIN) {
            char id[256], body[16];
            int n = zmq_recv(f->server, id, sizeof id, 0);
            int m = zmq_recv(f->server, body, sizeof body, 0);
            zmq_send(f->server, id, (size_t)n, ZMQ_SNDMORE);
            zmq_send(f->server, body, (size_t)m, 0);
        }
        if (it[1].revents & ZMQ_POLLIN) {
            char body[16];
            return zmq_recv(client, body, sizeof body, 0) == 4 && !memcmp(body, "ping", 4);
        }
    }
    return 0;
}

/* Wait (bounded) until the refusal counter passes `above`. */
static uint64_t zap_refused_after(zap_fx *f, uint64_t above)
{
    for (int i = 0; i < 100 && security_zap_refused(f->zap) <= above; i++)
        usleep(20000);
    return security_zap_refused(f->zap);
}

/* `before`: the count before the client was made (its first attempt may
 * be refused right away, and a refused client need not try again). */
static void zap_refused_client(zap_fx *f, uint64_t before, void *client, const char *what)
{
    cr_expect_eq(zap_round_trip(f, client, 300), 0, "%s got through", what);
    cr_expect_gt(zap_refused_after(f, before), before, "%s was not counted", what);
    zmq_close(client);
}

Test(security, zap_lets_allowed_keys_in_and_nobody_else, .timeout = 30)
{
    zap_fx f = {0};
    zap_fx_init(&f);
    void *good = zap_client(&f, f.good);
    cr_expect_eq(zap_round_trip(&f, good, 5000), 1, "an allowed key got no reply");
    cr_expect_eq(security_zap_refused(f.zap), 0);

    uint64_t n = security_zap_refused(f.zap);
    zap_refused_client(&f, n, zap_client(&f, f.bad), "a key not in the allow-list");
    n = security_zap_refused(f.zap);
    zap_refused_client(&f, n, zap_client(&f, f.wrong_server), "a client with another server key");
    n = security_zap_refused(f.zap);
    zap_refused_client(&f, n, zap_client(&f, NULL), "a plaintext client");
    /* a CURVE client without a key pair of its own */
    n = security_zap_refused(f.zap);
    void *nokey = zmq_socket(f.ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(nokey, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(nokey, ZMQ_CURVE_SERVERKEY, f.srv->server.pub, 32);
    zmq_connect(nokey, f.ep);
    zap_refused_client(&f, n, nokey, "a client without keys");

    /* the allowed client still works after all that */
    cr_expect_eq(zap_round_trip(&f, good, 5000), 1);
    zmq_close(good);
    security_server_unwatch(f.server);
    zmq_close(f.server);
    security_zap_free(f.zap); /* must not hang, nor must zmq_ctx_term */
    zmq_ctx_term(f.ctx);
    security_free(f.srv);
    security_free(f.good);
    security_free(f.bad);
    security_free(f.wrong_server);
}
