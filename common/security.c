/* CURVE keys, allow-list, loopback rule and ZAP handler (see security.h). */
#include "common/security.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "common/clock.h"
#include "common/log.h"

/* ==== small files ==== */

/* Read a regular file of at most `max` bytes into a NUL-terminated buffer;
 * *st gets its mode. Key files are read whole and never grow. */
static int security_read_file(const char *path, size_t max, char **out, struct stat *st, err *e)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_set(e, GTRT_EIO, "%s: %s", path, strerror(errno));
    int rc = 0;
    char *b = NULL;
    if (fstat(fd, st))
        rc = err_set(e, GTRT_EIO, "%s: %s", path, strerror(errno));
    else if (!S_ISREG(st->st_mode))
        rc = err_set(e, GTRT_EINVAL, "%s: not a regular file", path);
    else if ((uint64_t)st->st_size > max)
        rc = err_set(e, GTRT_ERANGE, "%s: %lld bytes, more than the %zu a key file may have",
                     path, (long long)st->st_size, max);
    else if (!(b = malloc((size_t)st->st_size + 1)))
        rc = err_set(e, GTRT_ENOMEM, "out of memory");
    size_t got = 0;
    while (!rc && got < (size_t)st->st_size) {
        ssize_t n = read(fd, b + got, (size_t)st->st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            rc = err_set(e, GTRT_EIO, "%s: cannot read: %s", path, n ? strerror(errno) : "short");
        else
            got += (size_t)n;
    }
    close(fd);
    if (!rc && memchr(b, 0, got))
        rc = err_set(e, GTRT_EPARSE, "%s: binary data, not a key file", path);
    if (rc) {
        free(b);
        return rc;
    }
    b[got] = 0;
    *out = b;
    return 0;
}

/* Next line of `*p` (NUL-terminated in place, '\r' and surrounding blanks
 * cut); NULL at the end. */
static char *security_next_line(char **p)
{
    if (!*p || !**p)
        return NULL;
    char *line = *p, *nl = strchr(line, '\n');
    if (nl) {
        *nl = 0;
        *p = nl + 1;
    } else {
        *p = line + strlen(line);
    }
    while (*line == ' ' || *line == '\t')
        line++;
    size_t n = strlen(line);
    while (n && (line[n - 1] == ' ' || line[n - 1] == '\t' || line[n - 1] == '\r'))
        line[--n] = 0;
    return line;
}

/* ==== Z85 keys ==== */

/* Decode a 40-character Z85 key; false unless it is exactly that (the
 * re-encoding must give the same text, so no key has two spellings). */
static bool security_z85_key(const char *s, size_t len, uint8_t out[SECURITY_KEY_BYTES])
{
    static const char alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   ".-:+=^!/*?&<>()[]{}@%$#";
    char txt[SECURITY_Z85_LEN + 1], back[SECURITY_Z85_LEN + 1];
    if (len != SECURITY_Z85_LEN)
        return false;
    memcpy(txt, s, len);
    txt[len] = 0;
    if (strspn(txt, alphabet) != len || !zmq_z85_decode(out, txt) ||
        !zmq_z85_encode(back, out, SECURITY_KEY_BYTES))
        return false;
    return strcmp(back, txt) == 0;
}

/* "name = value" with name one of the two key names; the value or NULL. */
static const char *security_key_field(char *line, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(line, name, n))
        return NULL;
    char *v = line + n;
    while (*v == ' ' || *v == '\t')
        v++;
    if (*v++ != '=')
        return NULL;
    while (*v == ' ' || *v == '\t')
        v++;
    return v;
}

/* One line of a key file into `k`. */
static int security_key_line(const char *path, int lineno, char *line, security_key *k,
                             bool *have_pub, err *e)
{
    const char *pub = security_key_field(line, "public-key");
    const char *sec = security_key_field(line, "secret-key");
    if (!pub && !sec)
        pub = line; /* a .pub file: the key alone */
    const char *v = pub ? pub : sec;
    if ((pub && *have_pub) || (sec && k->has_secret))
        return err_set(e, GTRT_EPARSE, "%s:%d: a second %s key", path, lineno,
                       pub ? "public" : "secret");
    if (!security_z85_key(v, strlen(v), pub ? k->pub : k->secret))
        return err_set(e, GTRT_EPARSE, "%s:%d: not a Z85 %s key (40 characters, as gtrt keygen "
                       "writes them)", path, lineno, pub ? "public" : "secret");
    if (pub)
        *have_pub = true;
    else
        k->has_secret = true;
    return 0;
}

/* A secret key file must be private: refuse one others may read (like ssh
 * does), warn about one the group may read (Kubernetes secret volumes with
 * an fsGroup are group-readable). */
static int security_key_mode(const char *path, mode_t mode, err *e)
{
    if (mode & (S_IROTH | S_IWOTH))
        return err_set(e, GTRT_ECONFIG, "%s holds a secret key but others may read it (mode %04o): "
                       "chmod 600 %s", path, (unsigned)(mode & 07777), path);
    if (mode & (S_IRGRP | S_IWGRP))
        log_warn("%s holds a secret key and its group may read it (mode %04o); chmod 600 %s",
                 path, (unsigned)(mode & 07777), path);
    return 0;
}

/* Public half of a secret key, or check that the given one matches it. */
static int security_key_public(const char *path, security_key *k, bool have_pub, err *e)
{
    char secret_z85[SECURITY_Z85_LEN + 1], pub_z85[SECURITY_Z85_LEN + 1];
    uint8_t derived[SECURITY_KEY_BYTES];
    zmq_z85_encode(secret_z85, k->secret, SECURITY_KEY_BYTES);
    int rc = zmq_curve_public(pub_z85, secret_z85);
    explicit_bzero(secret_z85, sizeof secret_z85);
    if (rc || !zmq_z85_decode(derived, pub_z85))
        return err_set(e, GTRT_EINVAL, "%s: cannot derive the public key: %s", path,
                       zmq_strerror(zmq_errno()));
    if (have_pub && memcmp(derived, k->pub, SECURITY_KEY_BYTES))
        return err_set(e, GTRT_EPARSE, "%s: the public key does not belong to the secret key",
                       path);
    memcpy(k->pub, derived, SECURITY_KEY_BYTES);
    return 0;
}

int security_key_read(const char *path, security_key *out, err *e)
{
    memset(out, 0, sizeof *out);
    char *text;
    struct stat st;
    int rc = security_read_file(path, SECURITY_KEY_FILE_MAX, &text, &st, e);
    if (rc)
        return rc;
    bool have_pub = false;
    char *p = text, *line;
    for (int lineno = 1; !rc && (line = security_next_line(&p)); lineno++)
        if (line[0] && line[0] != '#')
            rc = security_key_line(path, lineno, line, out, &have_pub, e);
    explicit_bzero(text, strlen(text));
    free(text);
    if (!rc && !have_pub && !out->has_secret)
        rc = err_set(e, GTRT_EPARSE, "%s: no key in the file", path);
    if (!rc && out->has_secret)
        rc = security_key_mode(path, st.st_mode, e);
    if (!rc && out->has_secret)
        rc = security_key_public(path, out, have_pub, e);
    if (rc) {
        explicit_bzero(out, sizeof *out);
        return rc;
    }
    zmq_z85_encode(out->pub_z85, out->pub, SECURITY_KEY_BYTES);
    return 0;
}

/* ==== allow-list ==== */

static int security_key_cmp(const void *a, const void *b)
{
    return memcmp(a, b, SECURITY_KEY_BYTES);
}

/* One allow-list line: a key, optionally followed by blanks and "# ...". */
static int security_allow_line(const char *path, int lineno, const char *line, security_allow *a,
                               size_t *cap, err *e)
{
    size_t len = strcspn(line, " \t");
    const char *rest = line + len + strspn(line + len, " \t");
    uint8_t key[SECURITY_KEY_BYTES];
    if ((*rest && *rest != '#') || !security_z85_key(line, len, key))
        return err_set(e, GTRT_EPARSE, "%s:%d: not a Z85 public key (40 characters, one per line, "
                       "as in a .pub file): '%.60s'", path, lineno, line);
    if (a->n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        void *nk = realloc(a->keys, ncap * sizeof *a->keys);
        if (!nk)
            return err_set(e, GTRT_ENOMEM, "out of memory");
        a->keys = nk;
        *cap = ncap;
    }
    memcpy(a->keys[a->n++], key, SECURITY_KEY_BYTES);
    return 0;
}

int security_allow_read(const char *path, security_allow *out, err *e)
{
    memset(out, 0, sizeof *out);
    char *text;
    struct stat st;
    int rc = security_read_file(path, SECURITY_ALLOW_FILE_MAX, &text, &st, e);
    if (rc)
        return rc;
    size_t cap = 0;
    char *p = text, *line;
    for (int lineno = 1; !rc && (line = security_next_line(&p)); lineno++)
        if (line[0] && line[0] != '#') /* no Z85 key starts with '#' */
            rc = security_allow_line(path, lineno, line, out, &cap, e);
    free(text);
    if (rc) {
        security_allow_deinit(out);
        return rc;
    }
    if (out->n)
        qsort(out->keys, out->n, sizeof *out->keys, security_key_cmp);
    else
        log_warn("allow-list %s has no keys: every client will be refused", path);
    return 0;
}

bool security_allow_has(const security_allow *a, const uint8_t key[SECURITY_KEY_BYTES])
{
    return a->n && bsearch(key, a->keys, a->n, sizeof *a->keys, security_key_cmp) != NULL;
}

void security_allow_deinit(security_allow *a)
{
    free(a->keys);
    a->keys = NULL;
    a->n = 0;
}

/* ==== loading ==== */

static int security_load_parts(security *s, const char *server_key, const char *client_key,
                               const char *allow, err *e)
{
    int rc;
    if (allow[0] && (rc = security_allow_read(allow, &s->allow, e))) {
        err_prefix(e, "security.allow");
        return rc;
    }
    s->has_allow = allow[0] != 0;
    if (server_key[0] && (rc = security_key_read(server_key, &s->server, e))) {
        err_prefix(e, "security.server_key");
        return rc;
    }
    s->curve = server_key[0] != 0;
    if (client_key[0] && (rc = security_key_read(client_key, &s->client, e))) {
        err_prefix(e, "security.client_key");
        return rc;
    }
    s->has_client = client_key[0] != 0;
    if (s->has_client && !s->client.has_secret)
        return err_set(e, GTRT_ECONFIG, "security.client_key: %s holds only a public key: give "
                       "this process's key pair (the .key file)", client_key);
    if (!s->curve && (s->has_client || s->has_allow))
        return err_set(e, GTRT_ECONFIG, "security.%s is set but security.server_key is not: "
                       "CURVE needs the cluster's server key", s->has_client ? "client_key" : "allow");
    return 0;
}

int security_load_files(const char *server_key, const char *client_key, const char *allow,
                        bool insecure, security **out, err *e)
{
    *out = NULL;
    security *s = calloc(1, sizeof *s);
    if (!s)
        return err_set(e, GTRT_ENOMEM, "out of memory");
    s->insecure = insecure;
    server_key = server_key ? server_key : "";
    client_key = client_key ? client_key : "";
    allow = allow ? allow : "";
    snprintf(s->server_path, sizeof s->server_path, "%s", server_key);
    snprintf(s->client_path, sizeof s->client_path, "%s", client_key);
    snprintf(s->allow_path, sizeof s->allow_path, "%s", allow);
    int rc = security_load_parts(s, server_key, client_key, allow, e);
    if (rc) {
        security_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int security_load(const config *cfg, security **out, err *e)
{
    return security_load_files(config_str(cfg, "security.server_key"),
                               config_str(cfg, "security.client_key"),
                               config_str(cfg, "security.allow"),
                               config_bool(cfg, "security.insecure"), out, e);
}

void security_free(security *s)
{
    if (!s)
        return;
    security_allow_deinit(&s->allow);
    explicit_bzero(s, sizeof *s);
    free(s);
}

/* ==== endpoints ==== */

/* The host of a tcp:// endpoint ("127.0.0.1", "::1", "*", "eth0", ...). */
static bool security_tcp_host(const char *ep, char *host, size_t cap)
{
    const char *h = ep + strlen("tcp://");
    const char *end;
    if (*h == '[') {
        h++;
        end = strchr(h, ']');
    } else {
        end = strrchr(h, ':');
    }
    if (!end || (size_t)(end - h) >= cap)
        return false;
    memcpy(host, h, (size_t)(end - h));
    host[end - h] = 0;
    return true;
}

bool security_endpoint_local(const char *ep)
{
    if (!strncmp(ep, "ipc://", 6) || !strncmp(ep, "inproc://", 9))
        return true;
    char host[256];
    if (strncmp(ep, "tcp://", 6) || !security_tcp_host(ep, host, sizeof host))
        return false;
    if (!strcasecmp(host, "localhost"))
        return true;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    return inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

int security_check_bind(const security *s, const char *endpoint, err *e)
{
    if (security_on(s) || security_endpoint_local(endpoint))
        return 0;
    if (s && s->insecure) {
        log_warn("binding %s without CURVE keys (security.insecure = true): anyone who can "
                 "reach it can talk to this service", endpoint);
        return 0;
    }
    return err_set(e, GTRT_ECONFIG, "refusing to bind %s without CURVE keys: it is not a loopback "
                   "address. Either configure keys (gtrt keygen; security.server_key, "
                   "security.client_key, security.allow) or set security.insecure=true to serve "
                   "plaintext to anyone who can reach it", endpoint);
}

/* ==== socket options ==== */

static int security_setopt(void *z, int opt, const void *v, size_t len, const char *what, err *e)
{
    if (zmq_setsockopt(z, opt, v, len))
        return err_set(e, GTRT_ENET, "cannot set %s on a socket: %s", what,
                       zmq_strerror(zmq_errno()));
    return 0;
}

int security_client(void *zsock, const security *s, const char *endpoint, err *e)
{
    if (!security_on(s))
        return 0;
    if (!s->has_client)
        return err_set(e, GTRT_ECONFIG, "security.client_key is not set, but this process "
                       "connects to %s with CURVE (security.server_key is set): give it its own "
                       "key pair (gtrt keygen NAME; NAME.key here, NAME.pub in the servers' "
                       "security.allow)", endpoint);
    int rc = security_setopt(zsock, ZMQ_CURVE_SERVERKEY, s->server.pub, SECURITY_KEY_BYTES,
                             "ZMQ_CURVE_SERVERKEY", e);
    if (!rc)
        rc = security_setopt(zsock, ZMQ_CURVE_PUBLICKEY, s->client.pub, SECURITY_KEY_BYTES,
                             "ZMQ_CURVE_PUBLICKEY", e);
    if (!rc)
        rc = security_setopt(zsock, ZMQ_CURVE_SECRETKEY, s->client.secret, SECURITY_KEY_BYTES,
                             "ZMQ_CURVE_SECRETKEY", e);
    return rc;
}

/* ==== ZAP handler ====
 *
 * A thread with three kinds of sockets: the REP socket bound to
 * inproc://zeromq.zap.01 (requests from this context's CURVE servers), one
 * PAIR per watched server socket (its handshake failures, from
 * zmq_socket_monitor) and a control PAIR from the owning thread (watch
 * another socket; stop). Every socket the thread polls was created by the
 * owning thread and handed over through the control PAIR or before
 * pthread_create, both of which order memory as ZeroMQ requires. */

#define SECURITY_ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define SECURITY_ZAP_FRAMES 8

typedef struct security_zap_cmd {
    char op;          /* 'w': watch `pair` (events of server socket `name`); 's': stop */
    void *pair;
    const char *name;
} security_zap_cmd;

struct security_zap {
    void *zctx;
    const security *sec;
    void *ctl; /* owning thread's end of the control pair */
    pthread_t thread;
    bool running;
    int nwatched;
    atomic_uint_fast64_t refused;
    /* the thread's own from here on */
    void *rep, *ctl_peer;
    void *mon[SECURITY_ZAP_MAX_SOCKS];
    const char *mon_name[SECURITY_ZAP_MAX_SOCKS];
    int nmon;
    log_ratelimit rl;
};

static bool security_frame_is(zmq_msg_t *m, const char *s)
{
    return zmq_msg_size(m) == strlen(s) && !memcmp(zmq_msg_data(m), s, strlen(s));
}

/* Refusals are counted here and logged at a bounded rate, so a client
 * retrying every 100 ms cannot flood the log. */
__attribute__((format(printf, 2, 3))) static void security_zap_refuse(security_zap *z,
                                                                       const char *fmt, ...)
{
    atomic_fetch_add(&z->refused, 1);
    uint64_t hidden = 0;
    if (!log_ratelimit_allow(&z->rl, clock_mono_ms(), &hidden))
        return;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_warn("%s%s", msg, hidden ? " (and more refusals, not logged)" : "");
}

/* Receive one whole request (at most SECURITY_ZAP_FRAMES frames kept);
 * the number of frames, 0 when none is waiting. */
static int security_zap_recv(void *rep, zmq_msg_t *f, bool *extra)
{
    int n = 0;
    *extra = false;
    for (;;) {
        zmq_msg_t tmp, *m = n < SECURITY_ZAP_FRAMES ? &f[n] : &tmp;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, rep, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(m);
            return n; /* EAGAIN on the first frame: nothing waiting */
        }
        int more = zmq_msg_more(m);
        if (m == &tmp) {
            *extra = true;
            zmq_msg_close(m);
        } else {
            n++;
        }
        if (!more)
            return n;
    }
}

/* The verdict on one request: "200" or a refusal, with the log line. */
static const char *security_zap_verdict(security_zap *z, zmq_msg_t *f, int n, bool extra,
                                        char user[SECURITY_Z85_LEN + 1])
{
    user[0] = 0;
    if (n != 7 || extra || !security_frame_is(&f[0], "1.0")) {
        security_zap_refuse(z, "refused a connection: malformed ZAP request");
        return "500";
    }
    char addr[64];
    snprintf(addr, sizeof addr, "%.*s", (int)zmq_msg_size(&f[3]), (const char *)zmq_msg_data(&f[3]));
    if (!security_frame_is(&f[5], "CURVE") || zmq_msg_size(&f[6]) != SECURITY_KEY_BYTES) {
        security_zap_refuse(z, "refused a connection from %s: not CURVE", addr);
        return "400";
    }
    zmq_z85_encode(user, zmq_msg_data(&f[6]), SECURITY_KEY_BYTES);
    if (!security_allow_has(&z->sec->allow, zmq_msg_data(&f[6]))) {
        security_zap_refuse(z, "refused a connection from %s: its key %s is not in the allow-list %s",
                            addr, user, z->sec->allow_path);
        user[0] = 0;
        return "400";
    }
    return "200";
}

/* Answer every waiting request: version, request id, status code, status
 * text, user id (the client's key), metadata (none). */
static void security_zap_answer(security_zap *z)
{
    zmq_msg_t f[SECURITY_ZAP_FRAMES];
    bool extra;
    int n;
    while ((n = security_zap_recv(z->rep, f, &extra)) > 0) {
        char user[SECURITY_Z85_LEN + 1];
        const char *code = security_zap_verdict(z, f, n, extra, user);
        const char *text = code[0] == '2' ? "OK" : "not allowed";
        zmq_send(z->rep, "1.0", 3, ZMQ_SNDMORE);
        if (n > 1)
            zmq_send(z->rep, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), ZMQ_SNDMORE);
        else
            zmq_send(z->rep, "", 0, ZMQ_SNDMORE);
        zmq_send(z->rep, code, 3, ZMQ_SNDMORE);
        zmq_send(z->rep, text, strlen(text), ZMQ_SNDMORE);
        zmq_send(z->rep, user, strlen(user), ZMQ_SNDMORE);
        zmq_send(z->rep, "", 0, 0);
        for (int i = 0; i < n; i++)
            zmq_msg_close(&f[i]);
    }
}

static const char *security_protocol_why(uint32_t value)
{
    if (value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
        return "the client does not speak CURVE (plaintext?)";
    if (value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC)
        return "the client does not have this cluster's server key";
    return "malformed handshake";
}

/* Drain the handshake events of watched socket i. Failures that reach ZAP
 * were counted there; these are the ones that never do (the monitor is not
 * asked for ZMQ_EVENT_HANDSHAKE_FAILED_AUTH, which would count them twice). */
static void security_zap_events(security_zap *z, int i)
{
    for (;;) {
        zmq_msg_t ev, ep;
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, z->mon[i], ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            return;
        }
        uint16_t event = 0;
        uint32_t value = 0;
        if (zmq_msg_size(&ev) >= 6) {
            memcpy(&event, zmq_msg_data(&ev), 2);
            memcpy(&value, (const uint8_t *)zmq_msg_data(&ev) + 2, 4);
        }
        zmq_msg_init(&ep);
        if (zmq_msg_more(&ev))
            zmq_msg_recv(&ep, z->mon[i], 0); /* the endpoint: sent with the event */
        char what[160];
        snprintf(what, sizeof what, "%s socket (%.*s)", z->mon_name[i], (int)zmq_msg_size(&ep),
                 (const char *)zmq_msg_data(&ep));
        /* A plaintext peer may see the mismatch first and hang up before
         * this side has read its greeting: that ends as "no detail". */
        if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)
            security_zap_refuse(z, "%s: refused a connection: %s", what,
                                security_protocol_why(value));
        else
            security_zap_refuse(z, "%s: a connection closed during the CURVE handshake (%s; a "
                                "plaintext client?)", what, zmq_strerror((int)value));
        zmq_msg_close(&ev);
        zmq_msg_close(&ep);
    }
}

/* A command from the owning thread; true to stop. */
static bool security_zap_control(security_zap *z)
{
    security_zap_cmd c;
    int n = zmq_recv(z->ctl_peer, &c, sizeof c, ZMQ_DONTWAIT);
    if (n != (int)sizeof c)
        return n >= 0; /* a short command is a bug; nothing waiting is not */
    if (c.op == 's')
        return true;
    z->mon[z->nmon] = c.pair;
    z->mon_name[z->nmon++] = c.name;
    return false;
}

static void *security_zap_run(void *arg)
{
    security_zap *z = arg;
    for (;;) {
        zmq_pollitem_t it[2 + SECURITY_ZAP_MAX_SOCKS] = {{.socket = z->ctl_peer, .events = ZMQ_POLLIN},
                                                        {.socket = z->rep, .events = ZMQ_POLLIN}};
        for (int i = 0; i < z->nmon; i++)
            it[2 + i] = (zmq_pollitem_t){.socket = z->mon[i], .events = ZMQ_POLLIN};
        if (zmq_poll(it, 2 + z->nmon, -1) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            break; /* the context is going away (ETERM) */
        }
        if (it[1].revents & ZMQ_POLLIN)
            security_zap_answer(z);
        for (int i = 0; i < z->nmon; i++)
            if (it[2 + i].revents & ZMQ_POLLIN)
                security_zap_events(z, i);
        if ((it[0].revents & ZMQ_POLLIN) && security_zap_control(z))
            break;
    }
    for (int i = 0; i < z->nmon; i++)
        zmq_close(z->mon[i]);
    zmq_close(z->rep);
    zmq_close(z->ctl_peer);
    return NULL;
}

static void *security_zap_socket(security_zap *z, int type)
{
    void *s = zmq_socket(z->zctx, type);
    int zero = 0;
    if (s)
        zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero); /* never hold up zmq_ctx_term */
    return s;
}

/* The handler's sockets, bound and connected before its thread starts. */
static int security_zap_sockets(security_zap *z, err *e)
{
    char ep[96];
    snprintf(ep, sizeof ep, "inproc://gtrt-zap-ctl-%p", (void *)z);
    z->ctl = security_zap_socket(z, ZMQ_PAIR);
    z->ctl_peer = security_zap_socket(z, ZMQ_PAIR);
    z->rep = security_zap_socket(z, ZMQ_REP);
    if (!z->ctl || !z->ctl_peer || !z->rep || zmq_bind(z->ctl, ep) || zmq_connect(z->ctl_peer, ep))
        return err_set(e, GTRT_ENET, "ZAP handler: %s", zmq_strerror(zmq_errno()));
    if (zmq_bind(z->rep, SECURITY_ZAP_ENDPOINT))
        return err_set(e, GTRT_ENET, "ZAP handler: cannot bind %s: %s", SECURITY_ZAP_ENDPOINT,
                       zmq_strerror(zmq_errno()));
    return 0;
}

static int security_zap_check(const security *s, err *e)
{
    if (!security_on(s))
        return err_set(e, GTRT_ECONFIG, "no CURVE server key (security.server_key)");
    if (!s->server.has_secret)
        return err_set(e, GTRT_ECONFIG, "security.server_key: %s holds only the public key, but "
                       "this process binds sockets: give it the server key pair (the .key file)",
                       s->server_path);
    if (!s->has_allow)
        return err_set(e, GTRT_ECONFIG, "security.allow is not set, but this process binds "
                       "sockets with CURVE: give it the allow-list of client public keys "
                       "(cat keys/*.pub > allow)");
    return 0;
}

int security_zap_new(void *zctx, const security *s, security_zap **out, err *e)
{
    *out = NULL;
    int rc = security_zap_check(s, e);
    if (rc)
        return rc;
    security_zap *z = calloc(1, sizeof *z);
    if (!z)
        return err_set(e, GTRT_ENOMEM, "out of memory");
    z->zctx = zctx;
    z->sec = s;
    atomic_init(&z->refused, 0);
    log_ratelimit_init(&z->rl, 5, 10000);
    rc = security_zap_sockets(z, e);
    if (!rc && (rc = pthread_create(&z->thread, NULL, security_zap_run, z)) != 0)
        rc = err_set(e, GTRT_EIO, "ZAP handler: cannot start its thread: %s", strerror(rc));
    if (rc) {
        security_zap_free(z);
        return rc;
    }
    z->running = true;
    log_info("CURVE on: server key %s, %zu client key(s) allowed by %s", s->server.pub_z85,
             s->allow.n, s->allow_path);
    *out = z;
    return 0;
}

/* Ask the server socket for its handshake failures on a PAIR that the
 * handler thread then reads. The PAIR is connected before the socket
 * binds: ZeroMQ would stall on events nobody can receive. */
static int security_zap_watch(security_zap *z, void *zsock, const char *name, err *e)
{
    if (z->nwatched == SECURITY_ZAP_MAX_SOCKS)
        return err_set(e, GTRT_ERANGE, "more than %d CURVE server sockets", SECURITY_ZAP_MAX_SOCKS);
    char ep[96];
    snprintf(ep, sizeof ep, "inproc://gtrt-zap-mon-%p-%d", (void *)z, z->nwatched);
    if (zmq_socket_monitor(zsock, ep, ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                                          ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL))
        return err_set(e, GTRT_ENET, "%s socket: cannot watch handshakes: %s", name,
                       zmq_strerror(zmq_errno()));
    void *pair = security_zap_socket(z, ZMQ_PAIR);
    if (!pair || zmq_connect(pair, ep)) {
        if (pair)
            zmq_close(pair);
        zmq_socket_monitor(zsock, NULL, 0);
        return err_set(e, GTRT_ENET, "%s socket: cannot watch handshakes: %s", name,
                       zmq_strerror(zmq_errno()));
    }
    security_zap_cmd c = {.op = 'w', .pair = pair, .name = name};
    zmq_send(z->ctl, &c, sizeof c, 0);
    z->nwatched++;
    return 0;
}

int security_server(void *zsock, security_zap *zap, const char *name, err *e)
{
    int one = 1;
    int rc = security_setopt(zsock, ZMQ_CURVE_SERVER, &one, sizeof one, "ZMQ_CURVE_SERVER", e);
    if (!rc)
        rc = security_setopt(zsock, ZMQ_CURVE_SECRETKEY, zap->sec->server.secret,
                             SECURITY_KEY_BYTES, "ZMQ_CURVE_SECRETKEY", e);
    if (!rc)
        rc = security_setopt(zsock, ZMQ_ZAP_DOMAIN, SECURITY_ZAP_DOMAIN,
                             strlen(SECURITY_ZAP_DOMAIN), "ZMQ_ZAP_DOMAIN", e);
    return rc ? rc : security_zap_watch(zap, zsock, name, e);
}

void security_server_unwatch(void *zsock) { zmq_socket_monitor(zsock, NULL, 0); }

uint64_t security_zap_refused(const security_zap *zap)
{
    return zap ? atomic_load(&((security_zap *)zap)->refused) : 0;
}

void security_zap_free(security_zap *z)
{
    if (!z)
        return;
    if (z->running) {
        security_zap_cmd c = {.op = 's'};
        zmq_send(z->ctl, &c, sizeof c, 0);
        pthread_join(z->thread, NULL);
    } else {
        if (z->rep)
            zmq_close(z->rep);
        if (z->ctl_peer)
            zmq_close(z->ctl_peer);
    }
    if (z->ctl)
        zmq_close(z->ctl);
    free(z);
}
