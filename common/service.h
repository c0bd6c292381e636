/* What every long-running gtrt service shares: a libuv loop with the
 * ZeroMQ glue, SIGINT/SIGTERM handling, a heartbeat timer, its identity
 * (role, id, host, pid, start time) and its status counters.
 *
 * A service embeds `svc` in its own context struct, fills the callbacks and
 * calls svc_run. On SIGINT/SIGTERM the on_stop callback runs first (finish
 * the current step, say goodbye, write what must not be lost), then the
 * sockets close and svc_run returns 0. */
#ifndef GTRT_SERVICE_H
#define GTRT_SERVICE_H

#include <stdbool.h>
#include <uv.h>

#include "common/config.h"
#include "common/net.h"

typedef struct svc svc;
typedef void (*svc_cb)(svc *s);

struct svc {
    uv_loop_t loop;
    net_loop net;
    uv_signal_t sigint, sigterm;
    uv_timer_t beat;
    const config *cfg;
    security *sec; /* [security], applied to every socket of `net` */
    uint32_t role;
    const char *role_name;
    char id[WIRE_MAX_ID_LEN + 1];
    char host[64];
    uint64_t start_ms;   /* monotonic */
    uint64_t heartbeat_ms;
    uint64_t model_version;
    char endpoint[256]; /* where this service serves requests, if it does */
    svc_cb on_beat;     /* every heartbeat interval */
    svc_cb on_stop;     /* once, on SIGINT/SIGTERM, before sockets close */
    bool stopping;
    int exit_code;
};

/* Resolve the id (config value, or "<role>-<host>-<pid>" when empty), set up
 * logging, load the [security] keys, set up the loop and the ZeroMQ
 * context. */
int svc_init(svc *s, const config *cfg, uint32_t role, const char *role_name,
             const char *configured_id, err *e);
/* Run until stopped; returns the exit code (0 after a clean stop). */
int svc_run(svc *s);
/* Tear down a service whose set-up failed after svc_init succeeded (safe
 * after a failed svc_init too). */
void svc_abort(svc *s);
/* Stop from inside the loop (as SIGTERM does). */
void svc_stop(svc *s, int exit_code);

/* This service's own PeerInfo. Strings point into `s`. */
void svc_self_info(const svc *s, Gtrt__PeerInfo *out);
/* Fill a StatusReply's counters from the loop's stats (plus `extra`
 * name/value pairs). The counters are allocated in `store`, which must have
 * room for SVC_MAX_COUNTERS entries, and live as long as it does. */
#define SVC_MAX_COUNTERS 48
#define SVC_MAX_LABELS 8
typedef struct svc_counters {
    Gtrt__Counter c[SVC_MAX_COUNTERS];
    Gtrt__Counter *ptrs[SVC_MAX_COUNTERS];
    char names[SVC_MAX_COUNTERS][48];
    size_t n;
    /* Text values (a merge method, ...), sent as StatusReply labels. */
    Gtrt__Label l[SVC_MAX_LABELS];
    Gtrt__Label *lptrs[SVC_MAX_LABELS];
    char lnames[SVC_MAX_LABELS][48];
    char lvalues[SVC_MAX_LABELS][64];
    size_t n_labels;
} svc_counters;
void svc_counters_fill(const svc *s, svc_counters *store);
void svc_counters_add(svc_counters *store, const char *name, uint64_t value);
void svc_counters_label(svc_counters *store, const char *name, const char *value);

/* Answer a StatusRequest: this service, the peers it tracks (may be NULL)
 * and its counters plus `extra`. */
struct peer_table;
void svc_reply_status(svc *s, net_sock *sock, const net_route *to, uint64_t request_id,
                      const struct peer_table *peers, const svc_counters *extra);

/* Reply to a ROUTER request with an Error message. */
void svc_reply_error(net_sock *sock, const net_route *to, uint64_t request_id, int code,
                     const char *message);
/* A valid message of a type this socket does not take: count and drop. */
void svc_unexpected(net_sock *sock, const wire_msg *msg);

#endif
