/* Prometheus text endpoint on a libuv loop (see prom.h).
 *
 * Each connection owns a TCP handle and a deadline timer and is freed when
 * both have closed; the server is freed when its listener and every
 * connection have closed. A connection serves exactly one request: read the
 * head into a fixed buffer, answer, shut down the write side, close. */
#include "common/prom.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

enum {
    PROM_DEFAULT_CONNS = 16,
    PROM_DEFAULT_HEAD = 8192,
    PROM_DEFAULT_TIMEOUT_MS = 10000,
};

typedef struct prom_conn prom_conn;

struct prom_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    prom_render_fn render;
    void *ud;
    prom_opts opts;
    int port;
    int nconns; /* connections whose handles are not yet closed */
    int closing, listener_open;
    prom_conn *conns;
};

struct prom_conn {
    prom_server *srv;
    prom_conn *prev, *next;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    int open_handles; /* freed when this drops to 0 */
    int closing, answered;
    size_t head_len;
    char *resp_head, *resp_body;
    char head[]; /* opts.max_head bytes */
};

/* ==== teardown ==== */

static void prom_server_maybe_free(prom_server *s)
{
    if (s->closing && !s->listener_open && s->nconns == 0)
        free(s);
}

static void prom_conn_on_close(uv_handle_t *h)
{
    prom_conn *c = h->data;
    if (--c->open_handles > 0)
        return;
    prom_server *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    free(c->resp_head);
    free(c->resp_body);
    free(c);
    prom_server_maybe_free(s);
}

static void prom_conn_close(prom_conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->tcp, prom_conn_on_close);
    if (c->open_handles == 2)
        uv_close((uv_handle_t *)&c->timer, prom_conn_on_close);
}

/* ==== answering ==== */

static void prom_on_shutdown(uv_shutdown_t *req, int status)
{
    prom_conn_close(req->data);
}

static void prom_on_write(uv_write_t *req, int status)
{
    prom_conn *c = req->data;
    if (status < 0 || c->closing) {
        prom_conn_close(c);
        return;
    }
    /* FIN after the response, then close once the peer has it queued. */
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, prom_on_shutdown) != 0)
        prom_conn_close(c);
}

static void prom_send(prom_conn *c, int code, const char *reason, const char *ctype, char *body,
                      size_t body_len, int head_only)
{
    c->answered = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->resp_body = body;
    c->resp_head = malloc(256);
    if (!c->resp_head) {
        prom_conn_close(c);
        return;
    }
    int n = snprintf(c->resp_head, 256,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "%sConnection: close\r\n\r\n",
                     code, reason, ctype, body_len, code == 405 ? "Allow: GET, HEAD\r\n" : "");
    uv_buf_t bufs[2] = {uv_buf_init(c->resp_head, (unsigned)n),
                        uv_buf_init(body ? body : c->resp_head, head_only ? 0 : (unsigned)body_len)};
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, 2, prom_on_write) != 0)
        prom_conn_close(c);
}

static void prom_send_text(prom_conn *c, int code, const char *reason, int head_only)
{
    char *body = malloc(64);
    if (!body) {
        prom_conn_close(c);
        return;
    }
    int n = snprintf(body, 64, "%d %s\n", code, reason);
    prom_send(c, code, reason, "text/plain; charset=utf-8", body, (size_t)n, head_only);
}

/* Split "METHOD TARGET HTTP/x.y" off the head; 0 when it is well formed. */
static int prom_request_line(char *head, size_t len, char **method, char **path)
{
    char *eol = memchr(head, '\n', len);
    if (!eol)
        return -1;
    *eol = 0;
    if (eol > head && eol[-1] == '\r')
        eol[-1] = 0;
    char *sp1 = strchr(head, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || sp1 == head || sp2 == sp1 + 1 || strncmp(sp2 + 1, "HTTP/", 5))
        return -1;
    *sp1 = *sp2 = 0;
    *method = head;
    *path = sp1 + 1;
    char *q = strchr(*path, '?');
    if (q)
        *q = 0;
    return 0;
}

static void prom_answer(prom_conn *c)
{
    char *method, *path;
    if (prom_request_line(c->head, c->head_len, &method, &path) != 0) {
        log_debug("prom: malformed request");
        prom_send_text(c, 400, "Bad Request", 0);
        return;
    }
    int head_only = !strcmp(method, "HEAD");
    if (strcmp(method, "GET") && !head_only) {
        prom_send_text(c, 405, "Method Not Allowed", 0);
        return;
    }
    if (strcmp(path, "/metrics")) {
        prom_send_text(c, 404, "Not Found", head_only);
        return;
    }
    char *body = NULL;
    size_t len = 0;
    if (c->srv->render(c->srv->ud, &body, &len) != 0 || !body) {
        free(body);
        prom_send_text(c, 500, "Internal Server Error", head_only);
        return;
    }
    prom_send(c, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body, len, head_only);
}

/* ==== reading the request head ==== */

static int prom_head_complete(const char *p, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++)
        if (p[i] == '\n' && (p[i + 1] == '\n' || (p[i + 1] == '\r' && i + 2 < n && p[i + 2] == '\n')))
            return 1;
    return 0;
}

static void prom_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    prom_conn *c = h->data;
    size_t room = c->srv->opts.max_head - c->head_len;
    /* A zero-length buffer makes libuv report UV_ENOBUFS: head too big. */
    *buf = uv_buf_init(c->head + c->head_len, (unsigned)room);
}

static void prom_on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    prom_conn *c = st->data;
    if (c->closing || c->answered)
        return;
    if (nread == UV_ENOBUFS) {
        prom_send_text(c, 431, "Request Header Fields Too Large", 0);
        return;
    }
    if (nread < 0) {
        prom_conn_close(c);
        return;
    }
    /* Rescan from a little before the new bytes: the blank line may
     * straddle two reads. */
    size_t from = c->head_len > 3 ? c->head_len - 3 : 0;
    c->head_len += (size_t)nread;
    if (prom_head_complete(c->head + from, c->head_len - from))
        prom_answer(c);
    else if (c->head_len == c->srv->opts.max_head)
        prom_send_text(c, 431, "Request Header Fields Too Large", 0);
}

static void prom_on_timeout(uv_timer_t *t)
{
    log_debug("prom: client too slow, closing");
    prom_conn_close(t->data);
}

/* ==== accepting ==== */

static void prom_on_connection(uv_stream_t *listener, int status)
{
    prom_server *s = listener->data;
    if (status < 0) {
        log_warn("prom: accept failed: %s", uv_strerror(status));
        return;
    }
    prom_conn *c = calloc(1, sizeof *c + s->opts.max_head);
    if (!c) {
        log_error("prom: out of memory for a connection");
        return;
    }
    c->srv = s;
    c->tcp.data = c->timer.data = c;
    uv_tcp_init(s->loop, &c->tcp);
    c->open_handles = 1;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        prom_conn_close(c);
        return;
    }
    if (s->nconns > s->opts.max_conns) {
        log_debug("prom: %d connections open, refusing another", s->opts.max_conns);
        prom_conn_close(c);
        return;
    }
    uv_timer_init(s->loop, &c->timer);
    c->open_handles = 2;
    uv_timer_start(&c->timer, prom_on_timeout, s->opts.timeout_ms, 0);
    if (uv_read_start((uv_stream_t *)&c->tcp, prom_on_alloc, prom_on_read) != 0)
        prom_conn_close(c);
}

/* ==== server ==== */

static int prom_parse_bind(const char *bind, struct sockaddr_storage *ss, err *e)
{
    char host[128];
    const char *colon = strrchr(bind, ':');
    size_t hlen = colon ? (size_t)(colon - bind) : 0;
    if (!colon || hlen >= sizeof host)
        return err_set(e, GTRT_ECONFIG, "Prometheus bind '%s': expected HOST:PORT", bind);
    memcpy(host, bind, hlen);
    host[hlen] = 0;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end || port < 0 || port > 65535)
        return err_set(e, GTRT_ECONFIG, "Prometheus bind '%s': bad port", bind);
    int rc;
    if (host[0] == '[' && hlen >= 2 && host[hlen - 1] == ']') {
        host[hlen - 1] = 0;
        rc = uv_ip6_addr(host + 1, (int)port, (struct sockaddr_in6 *)ss);
    } else {
        const char *h = !host[0] || !strcmp(host, "*")   ? "0.0.0.0"
                        : !strcmp(host, "localhost") ? "127.0.0.1"
                                                     : host;
        rc = uv_ip4_addr(h, (int)port, (struct sockaddr_in *)ss);
    }
    if (rc != 0)
        return err_set(e, GTRT_ECONFIG, "Prometheus bind '%s': '%s' is not an IP address", bind,
                       host);
    return 0;
}

static void prom_on_listener_close(uv_handle_t *h)
{
    prom_server *s = h->data;
    s->listener_open = 0;
    prom_server_maybe_free(s);
}

static int prom_local_port(prom_server *s)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

int prom_server_start(uv_loop_t *loop, const char *bind, const prom_opts *opts,
                      prom_render_fn render, void *ud, prom_server **out, err *e)
{
    *out = NULL;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    int rc = prom_parse_bind(bind, &ss, e);
    if (rc)
        return rc;
    prom_server *s = calloc(1, sizeof *s);
    if (!s)
        return err_set(e, GTRT_ENOMEM, "out of memory");
    s->loop = loop;
    s->render = render;
    s->ud = ud;
    s->opts = opts ? *opts : (prom_opts){0};
    if (s->opts.max_conns <= 0)
        s->opts.max_conns = PROM_DEFAULT_CONNS;
    if (s->opts.max_head < 16)
        s->opts.max_head = PROM_DEFAULT_HEAD;
    if (!s->opts.timeout_ms)
        s->opts.timeout_ms = PROM_DEFAULT_TIMEOUT_MS;
    s->listener.data = s;
    if ((rc = uv_tcp_init(loop, &s->listener)) != 0) {
        free(s);
        return err_set(e, GTRT_ENET, "Prometheus endpoint: %s", uv_strerror(rc));
    }
    s->listener_open = 1;
    rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&ss, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->listener, 64, prom_on_connection);
    if (rc != 0) {
        /* libuv frees nothing synchronously: the server goes with its
         * listener's close callback. */
        s->closing = 1;
        uv_close((uv_handle_t *)&s->listener, prom_on_listener_close);
        return err_set(e, GTRT_ENET, "Prometheus endpoint on %s: %s", bind, uv_strerror(rc));
    }
    s->port = prom_local_port(s);
    *out = s;
    return 0;
}

int prom_server_port(const prom_server *s) { return s->port; }

void prom_server_close(prom_server **ps)
{
    prom_server *s = ps ? *ps : NULL;
    if (!s)
        return;
    *ps = NULL;
    s->closing = 1;
    uv_close((uv_handle_t *)&s->listener, prom_on_listener_close);
    for (prom_conn *c = s->conns; c; c = c->next)
        prom_conn_close(c);
}
