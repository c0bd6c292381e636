/* ZeroMQ CURVE security for every gtrt socket: key files, the allow-list of
 * client keys, the socket options, the rule that keeps plaintext off the
 * network, and the ZAP handler that says which clients may connect.
 *
 * Scheme: all servers of a cluster share one server key pair; every process
 * that connects has its own client key pair; a server accepts a connection
 * only from a client whose public key is in its allow-list. Configuration
 * (`[security]`): server_key (a .key pair on processes that bind, the .pub
 * is enough on processes that only connect), client_key (this process's own
 * .key pair), allow (file of client public keys). Setting server_key turns
 * CURVE on for every socket of the process; without it the process speaks
 * plaintext and may bind only loopback/ipc/inproc endpoints unless
 * security.insecure is true.
 *
 * Files (written by `gtrt keygen`, Z85 keys of 40 characters):
 *   NAME.key   "public-key = Z85" and "secret-key = Z85" lines, '#'
 *              comments; mode 0600 (refused when others may read it)
 *   NAME.pub   the public key alone on one line
 *   allow      one public key per line; blank lines and lines starting
 *              with '#' are ignored, and so is "# ..." after a key, so
 *              `cat keys/NAME.pub ... > allow` makes one
 *
 * ZAP (ZeroMQ RFC 27): a CURVE server socket asks inproc://zeromq.zap.01 of
 * its own context whether a client key may connect. security_zap runs that
 * handler in a thread of its own (it never waits on the service's loop and
 * the loop never waits on it), one per context that has server sockets. It
 * also watches every server socket's handshake events, so that clients that
 * never reach ZAP (plaintext, wrong server key) are counted too. */
#ifndef GTRT_SECURITY_H
#define GTRT_SECURITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "common/err.h"

#define SECURITY_Z85_LEN 40
#define SECURITY_KEY_BYTES 32
#define SECURITY_ZAP_DOMAIN "gtrt"
#define SECURITY_KEY_FILE_MAX 4096           /* a .key / .pub file */
#define SECURITY_ALLOW_FILE_MAX (4u << 20)   /* an allow-list: ~100k keys */
#define SECURITY_ZAP_MAX_SOCKS 16            /* server sockets one handler watches */

/* A key pair, or a public key alone (has_secret false). */
typedef struct security_key {
    uint8_t pub[SECURITY_KEY_BYTES];
    uint8_t secret[SECURITY_KEY_BYTES];
    bool has_secret;
    char pub_z85[SECURITY_Z85_LEN + 1];
} security_key;

/* Read a .key (pair) or .pub (public key) file. A file holding a secret
 * key must not be readable by others (refused) and should not be by the
 * group (warned); the secret must match the public key. */
int security_key_read(const char *path, security_key *out, err *e);

/* The allow-list: client public keys, sorted for lookup. */
typedef struct security_allow {
    uint8_t (*keys)[SECURITY_KEY_BYTES];
    size_t n;
} security_allow;

/* Read an allow-list; a malformed line is an error naming path:line. */
int security_allow_read(const char *path, security_allow *out, err *e);
bool security_allow_has(const security_allow *a, const uint8_t key[SECURITY_KEY_BYTES]);
void security_allow_deinit(security_allow *a);

/* A process's security settings, loaded once at start and read-only after
 * (the ZAP thread reads the allow-list concurrently). */
typedef struct security {
    bool curve;    /* server_key configured: CURVE on every socket */
    bool insecure; /* security.insecure: plaintext binds on any address allowed */
    security_key server;
    bool has_client, has_allow;
    security_key client;
    security_allow allow;
    char server_path[512], client_path[512], allow_path[512];
} security;

/* Load the [security] keys of `cfg`. *out is always set on success (with
 * curve false when no server_key is configured). */
int security_load(const config *cfg, security **out, err *e);
/* The same from file paths (NULL or "" for none), for clients that keep no
 * config around (the remote env). */
int security_load_files(const char *server_key, const char *client_key, const char *allow,
                        bool insecure, security **out, err *e);
void security_free(security *s);
static inline bool security_on(const security *s) { return s && s->curve; }

/* True for endpoints only this host can reach: tcp://127.x.x.x,
 * tcp://localhost, tcp://[::1], ipc:// and inproc://. */
bool security_endpoint_local(const char *endpoint);
/* May a socket bind `endpoint`? Yes with CURVE or on a local endpoint;
 * otherwise only when security.insecure is true (and then a warning is
 * logged). `s` may be NULL: plaintext, not insecure. */
int security_check_bind(const security *s, const char *endpoint, err *e);

/* Make `zsock` a CURVE client of the cluster's server key, with this
 * process's client key; before zmq_connect. A no-op without CURVE. */
int security_client(void *zsock, const security *s, const char *endpoint, err *e);

/* ==== ZAP handler ==== */

typedef struct security_zap security_zap;

/* Start the ZAP handler of context `zctx`; needs the server key pair and
 * the allow-list (clear error otherwise). `s` must outlive the handler. */
int security_zap_new(void *zctx, const security *s, security_zap **out, err *e);
/* Make `zsock` a CURVE server answered by `zap` and watch its handshakes;
 * before zmq_bind. `name` (static) appears in log lines. */
int security_server(void *zsock, security_zap *zap, const char *name, err *e);
/* Stop watching a server socket's handshakes; before zmq_close, since
 * ZeroMQ keeps a closed socket (and its events) alive a while. Harmless on
 * any socket. */
void security_server_unwatch(void *zsock);
/* Connections refused so far (key not allowed, plaintext, wrong server
 * key, malformed handshake); any thread may ask. */
uint64_t security_zap_refused(const security_zap *zap);
/* Stop the handler: after closing every server socket it watches, before
 * zmq_ctx_term. NULL-safe. */
void security_zap_free(security_zap *zap);

#endif
