/* Peer liveness: who is connected, when each was last heard, who is gone.
 *
 * Time is passed in (`now_ms`) rather than read, so the timing logic is
 * tested with a fake clock. A peer silent for more than `timeout_ms`
 * (liveness × heartbeat interval) is gone; it stays listed as gone until its
 * slot is needed, and comes back alive when heard again. The table has a
 * fixed capacity so a flood of made-up ids cannot grow memory. */
#ifndef GTRT_PEERS_H
#define GTRT_PEERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/net.h"
#include "gtrt.pb-c.h"

typedef struct peer {
    char id[WIRE_MAX_ID_LEN + 1];
    uint32_t role;
    char version[32];
    uint64_t model_version;
    char host[64];
    uint32_t pid;
    uint64_t uptime_ms; /* as last reported */
    char endpoint[256];
    net_route route;    /* how to reach it on the ROUTER it talks to */
    uint64_t first_seen_ms, last_seen_ms;
    bool alive;
} peer;

typedef struct peer_table {
    peer *v;
    size_t n, cap;
    uint64_t timeout_ms;
} peer_table;

int peers_init(peer_table *t, size_t cap, uint64_t timeout_ms);
void peers_deinit(peer_table *t);
peer *peers_find(peer_table *t, const char *id);
/* Record that `id` was heard at now_ms; creates the entry when new (then
 * *joined is true, as it is when a gone peer comes back). Returns NULL when
 * the table is full of live peers. */
peer *peers_touch(peer_table *t, const char *id, uint64_t now_ms, bool *joined);
/* Copy what a peer says about itself (strings truncated to fit). */
void peers_update_info(peer *p, const Gtrt__PeerInfo *info);
/* Mark peers silent past the timeout as gone. Up to `max` of the newly gone
 * are stored in gone[]; returns how many went. */
size_t peers_sweep(peer_table *t, uint64_t now_ms, peer **gone, size_t max);
size_t peers_count_alive(const peer_table *t, uint32_t role);
/* The PeerInfo of `p`; strings point into `p`. uptime is extrapolated from
 * the last report to now_ms. */
void peers_to_info(const peer *p, uint64_t now_ms, Gtrt__PeerInfo *out);

#endif
