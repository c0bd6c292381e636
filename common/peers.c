/* Peer table with liveness by last-heard time (see peers.h). */
#include "common/peers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"

int peers_init(peer_table *t, size_t cap, uint64_t timeout_ms)
{
    memset(t, 0, sizeof *t);
    t->v = calloc(cap, sizeof *t->v);
    if (!t->v)
        return GTRT_ENOMEM;
    t->cap = cap;
    t->timeout_ms = timeout_ms;
    return 0;
}

void peers_deinit(peer_table *t)
{
    free(t->v);
    memset(t, 0, sizeof *t);
}

peer *peers_find(peer_table *t, const char *id)
{
    for (size_t i = 0; i < t->n; i++)
        if (!strcmp(t->v[i].id, id))
            return &t->v[i];
    return NULL;
}

/* A slot for a new peer: a free one, else the gone peer heard of longest ago. */
static peer *peers_slot(peer_table *t)
{
    if (t->n < t->cap)
        return &t->v[t->n++];
    peer *oldest = NULL;
    for (size_t i = 0; i < t->n; i++)
        if (!t->v[i].alive && (!oldest || t->v[i].last_seen_ms < oldest->last_seen_ms))
            oldest = &t->v[i];
    return oldest;
}

peer *peers_touch(peer_table *t, const char *id, uint64_t now_ms, bool *joined)
{
    *joined = false;
    peer *p = peers_find(t, id);
    if (!p) {
        p = peers_slot(t);
        if (!p)
            return NULL;
        memset(p, 0, sizeof *p);
        snprintf(p->id, sizeof p->id, "%s", id);
        p->first_seen_ms = now_ms;
    }
    if (!p->alive) {
        *joined = true;
        p->first_seen_ms = now_ms;
    }
    p->alive = true;
    p->last_seen_ms = now_ms;
    return p;
}

void peers_update_info(peer *p, const Gtrt__PeerInfo *info)
{
    if (!info)
        return;
    if (info->has_role)
        p->role = (uint32_t)info->role;
    if (info->software_version)
        snprintf(p->version, sizeof p->version, "%s", info->software_version);
    if (info->has_model_version)
        p->model_version = info->model_version;
    if (info->host)
        snprintf(p->host, sizeof p->host, "%s", info->host);
    if (info->has_pid)
        p->pid = info->pid;
    if (info->has_uptime_ms)
        p->uptime_ms = info->uptime_ms;
    if (info->endpoint)
        snprintf(p->endpoint, sizeof p->endpoint, "%s", info->endpoint);
}

size_t peers_sweep(peer_table *t, uint64_t now_ms, peer **gone, size_t max)
{
    size_t k = 0;
    for (size_t i = 0; i < t->n; i++) {
        peer *p = &t->v[i];
        if (p->alive && now_ms > p->last_seen_ms + t->timeout_ms) {
            p->alive = false;
            if (k < max)
                gone[k] = p;
            k++;
        }
    }
    return k;
}

size_t peers_count_alive(const peer_table *t, uint32_t role)
{
    size_t k = 0;
    for (size_t i = 0; i < t->n; i++)
        k += t->v[i].alive && (role == 0 || t->v[i].role == role);
    return k;
}

void peers_to_info(const peer *p, uint64_t now_ms, Gtrt__PeerInfo *out)
{
    gtrt__peer_info__init(out);
    out->id = (char *)p->id;
    out->has_role = 1;
    out->role = (Gtrt__Role)p->role;
    out->software_version = (char *)p->version;
    out->has_model_version = 1;
    out->model_version = p->model_version;
    out->host = (char *)p->host;
    out->has_pid = 1;
    out->pid = p->pid;
    out->has_uptime_ms = 1;
    out->uptime_ms = p->uptime_ms + (p->alive ? now_ms - p->last_seen_ms : 0);
    if (p->endpoint[0])
        out->endpoint = (char *)p->endpoint;
}
