/* Prometheus endpoint: a libuv loop runs the server on its own thread while
 * the test talks to it through plain blocking sockets, the way a scraper,
 * a port scanner or a broken client would. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/metrics.h"
#include "common/prom.h"

/* ==== a server on a loop thread ==== */

typedef struct fixture {
    uv_loop_t loop;
    uv_async_t stop;
    prom_server *srv;
    pthread_t thread;
    int port;
    int renders; /* touched only on the loop thread, read after join */
} fixture;

static int render_fixed(void *ud, char **body, size_t *len)
{
    fixture *f = ud;
    f->renders++;
    *body = strdup("# TYPE gtrt_up gauge\ngtrt_up 1\n");
    *len = strlen(*body);
    return 0;
}

static int render_fail(void *ud, char **body, size_t *len) { return -1; }

static void on_stop(uv_async_t *a)
{
    fixture *f = a->data;
    prom_server_close(&f->srv);
    uv_close((uv_handle_t *)a, NULL);
}

static void *loop_main(void *p)
{
    fixture *f = p;
    uv_run(&f->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void fixture_start(fixture *f, const prom_opts *o, prom_render_fn render, void *ud)
{
    memset(f, 0, sizeof *f);
    cr_assert_eq(uv_loop_init(&f->loop), 0);
    err e = {0};
    cr_assert_eq(prom_server_start(&f->loop, "127.0.0.1:0", o, render, ud ? ud : f, &f->srv, &e),
                 0, "%s", e.msg);
    f->port = prom_server_port(f->srv);
    cr_assert_gt(f->port, 0);
    f->stop.data = f;
    uv_async_init(&f->loop, &f->stop, on_stop);
    cr_assert_eq(pthread_create(&f->thread, NULL, loop_main, f), 0);
}

/* Stop the server from its own thread; the loop only ends once every
 * handle is closed, and uv_loop_close proves nothing was left behind. */
static void fixture_stop(fixture *f)
{
    uv_async_send(&f->stop);
    pthread_join(f->thread, NULL);
    cr_expect_eq(uv_loop_close(&f->loop), 0, "handles left open on the loop");
}

/* ==== a plain client ==== */

static int client_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    /* Only a guard against a hung test, never a measured bound. */
    struct timeval tv = {30, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    return fd;
}

static void client_send(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0)
            return; /* the server may hang up on an oversized request */
        p += k;
        n -= (size_t)k;
    }
}

/* Read until the server closes; returns a malloc'd, NUL-terminated reply
 * (possibly empty). */
static char *client_read_all(int fd)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        ssize_t k = recv(fd, buf + len, cap - len, 0);
        if (k <= 0)
            break;
        len += (size_t)k;
        if (len == cap)
            buf = realloc(buf, (cap *= 2) + 1);
    }
    buf[len] = 0;
    return buf;
}

static char *http(int port, const char *req, size_t n)
{
    int fd = client_connect(port);
    client_send(fd, req, n);
    char *r = client_read_all(fd);
    close(fd);
    return r;
}

static char *get(int port, const char *path)
{
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n", path);
    return http(port, req, (size_t)n);
}

static const char *body_of(const char *resp)
{
    const char *b = strstr(resp, "\r\n\r\n");
    cr_assert_not_null(b, "no head/body separator in: %s", resp);
    return b + 4;
}

/* ==== tests ==== */

Test(prom, get_metrics_returns_the_exposition)
{
    fixture f;
    fixture_start(&f, NULL, render_fixed, NULL);
    char *r = get(f.port, "/metrics");
    cr_expect(!strncmp(r, "HTTP/1.1 200 OK\r\n", 17), "%s", r);
    cr_expect(strstr(r, "\r\nContent-Type: text/plain; version=0.0.4") != NULL, "%s", r);
    cr_expect(strstr(r, "\r\nContent-Length: 31\r\n") != NULL, "%s", r);
    cr_expect_str_eq(body_of(r), "# TYPE gtrt_up gauge\ngtrt_up 1\n");
    free(r);
    /* Query strings are ignored, HTTP/1.0 and bare-LF heads are fine. */
    const char req[] = "GET /metrics?x=1 HTTP/1.0\n\n";
    r = http(f.port, req, sizeof req - 1);
    cr_expect(!strncmp(r, "HTTP/1.1 200 OK\r\n", 17), "%s", r);
    free(r);
    fixture_stop(&f);
    cr_expect_eq(f.renders, 2);
}

Test(prom, serves_a_live_metrics_sink)
{
    metrics *m;
    err e = {0};
    cr_assert_eq(metrics_new(NULL, NULL, &m, &e), 0);
    metrics_counter_add(m, "steps_received_total", "actor", "actor-1", 64);
    fixture f;
    memset(&f, 0, sizeof f);
    cr_assert_eq(uv_loop_init(&f.loop), 0);
    cr_assert_eq(metrics_serve(m, &f.loop, "", &f.srv, &e), 0, "empty bind: off");
    cr_expect_null(f.srv);
    cr_assert_eq(metrics_serve(m, &f.loop, "127.0.0.1:0", &f.srv, &e), 0, "%s", e.msg);
    f.port = prom_server_port(f.srv);
    f.stop.data = &f;
    uv_async_init(&f.loop, &f.stop, on_stop);
    cr_assert_eq(pthread_create(&f.thread, NULL, loop_main, &f), 0);
    char *r = get(f.port, "/metrics");
    cr_expect(strstr(body_of(r), "gtrt_steps_received_total{actor=\"actor-1\"} 64\n") != NULL,
              "%s", r);
    free(r);
    metrics_counter_add(m, "steps_received_total", "actor", "actor-1", 1);
    r = get(f.port, "/metrics");
    cr_expect(strstr(body_of(r), "{actor=\"actor-1\"} 65\n") != NULL, "%s", r);
    free(r);
    fixture_stop(&f);
    metrics_free(&m);
}

Test(prom, other_paths_are_404_and_other_methods_405)
{
    fixture f;
    fixture_start(&f, NULL, render_fixed, NULL);
    char *r = get(f.port, "/");
    cr_expect(!strncmp(r, "HTTP/1.1 404 ", 13), "%s", r);
    free(r);
    r = get(f.port, "/metrics/../secret");
    cr_expect(!strncmp(r, "HTTP/1.1 404 ", 13), "%s", r);
    free(r);
    const char post[] = "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
    r = http(f.port, post, sizeof post - 1);
    cr_expect(!strncmp(r, "HTTP/1.1 405 ", 13), "%s", r);
    cr_expect(strstr(r, "\r\nAllow: GET, HEAD\r\n") != NULL, "%s", r);
    free(r);
    const char head[] = "HEAD /metrics HTTP/1.1\r\n\r\n";
    r = http(f.port, head, sizeof head - 1);
    cr_expect(!strncmp(r, "HTTP/1.1 200 OK\r\n", 17), "%s", r);
    cr_expect_str_eq(body_of(r), "", "HEAD has no body");
    free(r);
    fixture_stop(&f);
}

Test(prom, garbage_gets_400_and_the_server_keeps_going)
{
    fixture f;
    fixture_start(&f, NULL, render_fixed, NULL);
    static const char *const junk[] = {
        "\x00\x01\x02\xff garbage\r\n\r\n", "GET\r\n\r\n", "GET /metrics\r\n\r\n",
        "GET  HTTP/1.1\r\n\r\n", "\r\n\r\n", "GET /metrics FTP/1.0\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        size_t n = i == 0 ? 16 : strlen(junk[i]);
        char *r = http(f.port, junk[i], n);
        cr_expect(!strncmp(r, "HTTP/1.1 400 ", 13), "junk %zu: %s", i, r);
        free(r);
    }
    /* A client that connects and hangs up at once, or half-way. */
    close(client_connect(f.port));
    int fd = client_connect(f.port);
    client_send(fd, "GET /met", 8);
    close(fd);
    char *r = get(f.port, "/metrics");
    cr_expect(!strncmp(r, "HTTP/1.1 200 OK\r\n", 17), "%s", r);
    free(r);
    fixture_stop(&f);
}

Test(prom, oversized_head_gets_431)
{
    prom_opts o = {.max_head = 1024};
    fixture f;
    fixture_start(&f, &o, render_fixed, NULL);
    /* Exactly the limit without a blank line: the server must answer
     * rather than wait for more. */
    char *big = malloc(1 << 20);
    memset(big, 'A', 1 << 20);
    memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
    char *r = http(f.port, big, 1024);
    cr_expect(!strncmp(r, "HTTP/1.1 431 ", 13), "%s", r);
    free(r);
    /* A megabyte blast: whatever the client sees, the server survives. */
    int fd = client_connect(f.port);
    client_send(fd, big, 1 << 20);
    free(client_read_all(fd));
    close(fd);
    free(big);
    r = get(f.port, "/metrics");
    cr_expect(!strncmp(r, "HTTP/1.1 200 OK\r\n", 17), "%s", r);
    free(r);
    fixture_stop(&f);
}

Test(prom, a_slow_client_does_not_block_others)
{
    fixture f;
    fixture_start(&f, NULL, render_fixed, NULL);
    int slow = client_connect(f.port);
    client_send(slow, "GET /metr", 9);
    char *r = get(f.port, "/metrics");
    cr_expect(!strncmp(r, "HTTP/1.1 200 OK\r\n", 17), "%s", r);
    free(r);
    /* The slow one may still finish its request. */
    client_send(slow, "ics HTTP/1.1\r\n\r\n", 16);
    r = client_read_all(slow);
    cr_expect(!strncmp(r, "HTTP/1.1 200 OK\r\n", 17), "%s", r);
    free(r);
    close(slow);
    fixture_stop(&f);
}

Test(prom, idle_clients_are_cut_off)
{
    prom_opts o = {.timeout_ms = 50};
    fixture f;
    fixture_start(&f, &o, render_fixed, NULL);
    int fd = client_connect(f.port);
    client_send(fd, "GET /", 5);
    char *r = client_read_all(fd); /* returns once the server hangs up */
    cr_expect_str_eq(r, "", "no answer to an unfinished request");
    free(r);
    close(fd);
    fixture_stop(&f);
}

Test(prom, connections_are_capped)
{
    prom_opts o = {.max_conns = 2};
    fixture f;
    fixture_start(&f, &o, render_fixed, NULL);
    int idle[2] = {client_connect(f.port), client_connect(f.port)};
    char *r = get(f.port, "/metrics");
    cr_expect_str_eq(r, "", "a third connection is closed unanswered");
    free(r);
    close(idle[0]);
    close(idle[1]);
    /* The server notices the hang-ups on its own time; ask until it has. */
    int ok = 0;
    for (int i = 0; i < 500 && !ok; i++) {
        r = get(f.port, "/metrics");
        ok = !strncmp(r, "HTTP/1.1 200 OK\r\n", 17);
        free(r);
        if (!ok)
            usleep(10000);
    }
    cr_expect(ok, "slots are given back when clients leave");
    fixture_stop(&f);
}

Test(prom, render_failure_is_500)
{
    fixture f;
    fixture_start(&f, NULL, render_fail, NULL);
    char *r = get(f.port, "/metrics");
    cr_expect(!strncmp(r, "HTTP/1.1 500 ", 13), "%s", r);
    free(r);
    fixture_stop(&f);
}

Test(prom, close_with_open_connections_frees_everything)
{
    fixture f;
    fixture_start(&f, NULL, render_fixed, NULL);
    int a = client_connect(f.port), b = client_connect(f.port);
    client_send(b, "GET /metrics HTTP/1.1\r\n", 23);
    /* Make sure both are accepted before closing the server. */
    char *r = get(f.port, "/metrics");
    free(r);
    fixture_stop(&f); /* asserts the loop closes cleanly */
    r = client_read_all(a);
    cr_expect_str_eq(r, "");
    free(r);
    close(a);
    close(b);
}

Test(prom, bad_bind_strings_are_refused)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    static const char *const bad[] = {"9464", "127.0.0.1:", "127.0.0.1:99999", "example.org:80",
                                      "127.0.0.1:80x", "[::1:80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        prom_server *s = (prom_server *)1;
        err e = {0};
        cr_expect_eq(prom_server_start(&loop, bad[i], NULL, render_fail, NULL, &s, &e),
                     GTRT_ECONFIG, "%s", bad[i]);
        cr_expect_null(s);
        cr_expect(strstr(e.msg, bad[i]) != NULL, "%s", e.msg);
    }
    cr_expect_eq(uv_loop_close(&loop), 0);
}

Test(prom, port_in_use_is_an_error_and_leaks_nothing)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    prom_server *a, *b;
    err e = {0};
    cr_assert_eq(prom_server_start(&loop, "127.0.0.1:0", NULL, render_fail, NULL, &a, &e), 0);
    char bind[64];
    snprintf(bind, sizeof bind, "127.0.0.1:%d", prom_server_port(a));
    cr_expect_eq(prom_server_start(&loop, bind, NULL, render_fail, NULL, &b, &e), GTRT_ENET);
    cr_expect_null(b);
    cr_expect(strstr(e.msg, bind) != NULL, "%s", e.msg);
    prom_server_close(&a);
    cr_expect_null(a);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_expect_eq(uv_loop_close(&loop), 0);
}
