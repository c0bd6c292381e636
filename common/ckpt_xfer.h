/* Moving checkpoints from the learner to actors and teachers.
 *
 * The learner keeps the latest two checkpoints in memory (the previous one
 * so fetches in progress can finish) plus version 0, the warm start, which
 * stays served for good because teachers merge relative to it and one that
 * starts late must still get it. It announces each new version on its PUB
 * socket and in every Welcome/Heartbeat (with the base beside the latest),
 * and serves chunks (default 1 MiB) on its ROUTER. A fetcher keeps
 * `credit` chunk requests in flight (credit-based flow control: the server
 * never pushes more than was asked for),
 * checks each chunk's SHA-256 on arrival and, before handing the file over,
 * the announced digest: SHA-256 over the chunk digests in order (a hash
 * list, so no byte is hashed twice),
 * re-requests chunks that time out or arrive corrupt, and drops a fetch in
 * progress when a newer version is announced. */
#ifndef GTRT_CKPT_XFER_H
#define GTRT_CKPT_XFER_H

#include <stdbool.h>
#include <stdint.h>

#include "common/net.h"
#include "common/sha256.h"

#define CKPT_DEFAULT_CHUNK (1u << 20)
#define CKPT_MIN_CHUNK (4u << 10)
#define CKPT_MAX_CHUNK (16u << 20)

typedef struct ckpt_blob {
    uint64_t version;
    uint8_t *data; /* owned */
    size_t len;
    uint32_t chunk_bytes, n_chunks;
    uint8_t sha[SHA256_BYTES];
    uint8_t (*chunk_sha)[SHA256_BYTES]; /* per chunk, owned */
    char name[128];
    uint64_t created_unix_ms;
} ckpt_blob;

/* Fault injection for tests: may alter the outgoing copy of a chunk. */
typedef void (*ckpt_mangle_fn)(void *ud, uint64_t version, uint32_t index, uint8_t *bytes,
                               size_t len);

typedef struct ckpt_server {
    ckpt_blob kept[2]; /* [0] latest, [1] previous, versions > 0; len 0 = empty */
    ckpt_blob base;    /* version 0, pinned; len 0 = not published */
    net_sock *pub;     /* announcements; may be NULL */
    uint32_t chunk_bytes;
    uint64_t chunks_served, bad_requests;
    ckpt_mangle_fn mangle;
    void *mangle_ud;
} ckpt_server;

void ckpt_server_init(ckpt_server *cs, net_sock *pub, uint32_t chunk_bytes);
void ckpt_server_deinit(ckpt_server *cs);
/* Serve `data` (ownership taken) as `version` and announce it when it is
 * the latest. Versions above 0 must be newer than the latest served one.
 * Version 0 is the warm start: it is pinned (never replaced, never
 * dropped) and may be published once at any time, also after later
 * versions (a resumed learner publishes its base and its latest). */
int ckpt_server_publish(ckpt_server *cs, uint64_t version, const char *name, uint8_t *data,
                        size_t len, err *e);
/* Fill `out` with the latest announcement (the base when it is the only
 * one); false when nothing is served. */
bool ckpt_server_latest(const ckpt_server *cs, Gtrt__CkptAnnounce *out);
/* Fill `out` with the base's (version 0) announcement; false when none. */
bool ckpt_server_base(const ckpt_server *cs, Gtrt__CkptAnnounce *out);
/* Answer a MSG_CKPT_CHUNK_REQUEST received on `router`. */
void ckpt_server_on_request(ckpt_server *cs, net_sock *router, const net_route *from,
                            const wire_msg *msg);

/* Called with a verified checkpoint; takes ownership of `data` (free()). */
typedef void (*ckpt_ready_fn)(void *ud, uint64_t version, const char *name, uint8_t *data,
                              size_t len);

typedef struct ckpt_fetch_stats {
    uint64_t fetched, chunks, corrupt, retried, abandoned, bad_announces;
} ckpt_fetch_stats;

typedef struct ckpt_fetcher {
    net_sock *dealer; /* requests to the learner's ROUTER */
    net_sock *sub;    /* announcements; may be NULL */
    uv_timer_t timer;
    int credit;
    uint64_t timeout_ms;
    uint64_t max_bytes;
    uint64_t have_version; /* last one delivered, when have_any */
    bool have_any;
    bool active;
    ckpt_blob cur; /* data being filled; chunk_sha: digests of the chunks received */
    uint8_t *got;
    uint64_t *sent_ms; /* per chunk: 0 = not requested yet */
    uint32_t next, inflight, received;
    uint64_t started_ms;
    ckpt_fetch_stats stats;
    ckpt_ready_fn ready;
    void *ud;
    bool closed;
} ckpt_fetcher;

/* Connect to the learner's ROUTER (`router_ep`) and PUB (`pub_ep`, may be
 * NULL: then only offers from heartbeats start fetches). */
int ckpt_fetcher_init(ckpt_fetcher *f, net_loop *nl, const char *router_ep, const char *pub_ep,
                      int credit, uint64_t timeout_ms, uint64_t max_bytes, ckpt_ready_fn ready,
                      void *ud, err *e);
/* An announcement from anywhere (PUB, Welcome, Heartbeat): fetch it when it
 * is newer than what we have or are fetching. Untrusted; checked here. */
void ckpt_fetcher_offer(ckpt_fetcher *f, const Gtrt__CkptAnnounce *a);
/* Count `version` as delivered (it arrived another way): offers of it and
 * of older versions are ignored from now on, and a fetch of one of those in
 * progress is dropped. */
void ckpt_fetcher_have(ckpt_fetcher *f, uint64_t version);
void ckpt_fetcher_close(ckpt_fetcher *f);

#endif
