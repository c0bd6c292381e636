/* Chunked, verified checkpoint transfer (see ckpt_xfer.h). */
#include "common/ckpt_xfer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"

/* ==== blobs ==== */

static void ckpt_blob_free(ckpt_blob *b)
{
    free(b->data);
    free(b->chunk_sha);
    memset(b, 0, sizeof *b);
}

static uint32_t ckpt_n_chunks(size_t len, uint32_t chunk)
{
    return (uint32_t)((len + chunk - 1) / chunk);
}

static size_t ckpt_chunk_len(size_t len, uint32_t chunk, uint32_t index)
{
    size_t off = (size_t)index * chunk;
    return len - off < chunk ? len - off : chunk;
}

/* The checkpoint's digest: SHA-256 over its chunks' digests in order (a
 * hash list). It binds every byte as a hash of the whole file would, but a
 * fetcher that checks each chunk on arrival then needs no second pass over
 * the data, which would halve the transfer rate. */
static void ckpt_hash_list(const uint8_t (*chunk_sha)[SHA256_BYTES], uint32_t n,
                           uint8_t out[SHA256_BYTES])
{
    sha256(chunk_sha, (size_t)n * SHA256_BYTES, out);
}

/* ==== server ==== */

void ckpt_server_init(ckpt_server *cs, net_sock *pub, uint32_t chunk_bytes)
{
    memset(cs, 0, sizeof *cs);
    cs->pub = pub;
    cs->chunk_bytes = chunk_bytes ? chunk_bytes : CKPT_DEFAULT_CHUNK;
}

void ckpt_server_deinit(ckpt_server *cs)
{
    ckpt_blob_free(&cs->kept[0]);
    ckpt_blob_free(&cs->kept[1]);
    ckpt_blob_free(&cs->base);
}

/* The newest version served: the latest above 0, else the base. */
static const ckpt_blob *ckpt_server_newest(const ckpt_server *cs)
{
    if (cs->kept[0].len)
        return &cs->kept[0];
    return cs->base.len ? &cs->base : NULL;
}

static void ckpt_fill_announce(const ckpt_blob *b, Gtrt__CkptAnnounce *a)
{
    gtrt__ckpt_announce__init(a);
    a->has_version = a->has_total_bytes = a->has_chunk_bytes = a->has_sha256 = 1;
    a->version = b->version;
    a->total_bytes = b->len;
    a->chunk_bytes = b->chunk_bytes;
    a->sha256.len = SHA256_BYTES;
    a->sha256.data = (uint8_t *)b->sha;
    a->name = (char *)b->name;
    a->has_created_unix_ms = 1;
    a->created_unix_ms = b->created_unix_ms;
}

int ckpt_server_publish(ckpt_server *cs, uint64_t version, const char *name, uint8_t *data,
                        size_t len, err *e)
{
    if (len == 0 || (version > 0 && cs->kept[0].len && version <= cs->kept[0].version)) {
        free(data);
        return err_set(e, GTRT_EINVAL, "checkpoint v%llu: empty or not newer than v%llu",
                       (unsigned long long)version, (unsigned long long)cs->kept[0].version);
    }
    if (version == 0 && cs->base.len) {
        free(data);
        return err_set(e, GTRT_EINVAL, "checkpoint v0 (the base) is already published");
    }
    ckpt_blob b = {0};
    b.version = version;
    b.data = data;
    b.len = len;
    b.chunk_bytes = cs->chunk_bytes;
    b.n_chunks = ckpt_n_chunks(len, b.chunk_bytes);
    b.chunk_sha = malloc((size_t)b.n_chunks * SHA256_BYTES);
    if (!b.chunk_sha) {
        free(data);
        return err_set(e, GTRT_ENOMEM, "out of memory");
    }
    for (uint32_t i = 0; i < b.n_chunks; i++)
        sha256(data + (size_t)i * b.chunk_bytes, ckpt_chunk_len(len, b.chunk_bytes, i),
               b.chunk_sha[i]);
    ckpt_hash_list(b.chunk_sha, b.n_chunks, b.sha);
    snprintf(b.name, sizeof b.name, "%s", name ? name : "");
    b.created_unix_ms = clock_unix_ms();
    if (version == 0) {
        cs->base = b;
    } else {
        ckpt_blob_free(&cs->kept[1]);
        cs->kept[1] = cs->kept[0];
        cs->kept[0] = b;
    }
    const ckpt_blob *newest = ckpt_server_newest(cs);
    if (cs->pub && newest->version == version) {
        Gtrt__CkptAnnounce a;
        ckpt_fill_announce(newest, &a);
        net_send(cs->pub, NULL, GTRT__MSG_TYPE__MSG_CKPT_ANNOUNCE, &a.base, 0, NULL, 0);
    }
    return 0;
}

bool ckpt_server_latest(const ckpt_server *cs, Gtrt__CkptAnnounce *out)
{
    const ckpt_blob *b = ckpt_server_newest(cs);
    if (!b)
        return false;
    ckpt_fill_announce(b, out);
    return true;
}

bool ckpt_server_base(const ckpt_server *cs, Gtrt__CkptAnnounce *out)
{
    if (!cs->base.len)
        return false;
    ckpt_fill_announce(&cs->base, out);
    return true;
}

void ckpt_server_on_request(ckpt_server *cs, net_sock *router, const net_route *from,
                            const wire_msg *msg)
{
    const Gtrt__CkptChunkRequest *r = (const Gtrt__CkptChunkRequest *)msg->body;
    uint64_t rid = msg->hdr->has_request_id ? msg->hdr->request_id : 0;
    const ckpt_blob *b = NULL;
    const ckpt_blob *served[3] = {&cs->kept[0], &cs->kept[1], &cs->base};
    for (int i = 0; i < 3; i++)
        if (served[i]->len && r->has_version && served[i]->version == r->version)
            b = served[i];
    if (!b || !r->has_index || r->index >= b->n_chunks) {
        cs->bad_requests++;
        const ckpt_blob *newest = ckpt_server_newest(cs);
        char why[160];
        snprintf(why, sizeof why, "checkpoint v%llu chunk %u is not served (latest is v%llu)",
                 (unsigned long long)r->version, r->index,
                 (unsigned long long)(newest ? newest->version : 0));
        Gtrt__Error er = GTRT__ERROR__INIT;
        er.has_code = 1;
        er.code = (uint32_t)-GTRT_ENOTFOUND;
        er.message = why;
        net_send(router, from, GTRT__MSG_TYPE__MSG_ERROR, &er.base, rid, NULL, 0);
        return;
    }
    size_t len = ckpt_chunk_len(b->len, b->chunk_bytes, r->index);
    const uint8_t *bytes = b->data + (size_t)r->index * b->chunk_bytes;
    uint8_t *copy = NULL;
    if (cs->mangle) {
        copy = malloc(len);
        if (!copy)
            return;
        memcpy(copy, bytes, len);
        cs->mangle(cs->mangle_ud, b->version, r->index, copy, len);
        bytes = copy;
    }
    Gtrt__CkptChunk c = GTRT__CKPT_CHUNK__INIT;
    c.has_version = c.has_index = c.has_sha256 = 1;
    c.version = b->version;
    c.index = r->index;
    c.sha256.len = SHA256_BYTES;
    c.sha256.data = (uint8_t *)b->chunk_sha[r->index];
    wire_slice payload = {bytes, len};
    if (net_send(router, from, GTRT__MSG_TYPE__MSG_CKPT_CHUNK, &c.base, rid, &payload, 1) == 0)
        cs->chunks_served++;
    free(copy);
}

/* ==== fetcher ==== */

static void ckpt_fetch_reset(ckpt_fetcher *f)
{
    ckpt_blob_free(&f->cur);
    free(f->got);
    free(f->sent_ms);
    f->got = NULL;
    f->sent_ms = NULL;
    f->active = false;
    f->next = f->inflight = f->received = 0;
}

static void ckpt_fetch_request(ckpt_fetcher *f, uint32_t index)
{
    Gtrt__CkptChunkRequest r = GTRT__CKPT_CHUNK_REQUEST__INIT;
    r.has_version = r.has_index = 1;
    r.version = f->cur.version;
    r.index = index;
    f->sent_ms[index] = clock_mono_ms();
    net_send(f->dealer, NULL, GTRT__MSG_TYPE__MSG_CKPT_CHUNK_REQUEST, &r.base, index + 1, NULL, 0);
}

/* Keep `credit` requests in flight. */
static void ckpt_fetch_pump(ckpt_fetcher *f)
{
    while (f->active && f->inflight < (uint32_t)f->credit && f->next < f->cur.n_chunks) {
        uint32_t i = f->next++;
        if (f->got[i])
            continue;
        ckpt_fetch_request(f, i);
        f->inflight++;
    }
}

static bool ckpt_announce_valid(const ckpt_fetcher *f, const Gtrt__CkptAnnounce *a)
{
    return a->has_version && a->has_total_bytes && a->total_bytes > 0 &&
           a->total_bytes <= f->max_bytes && a->has_chunk_bytes &&
           a->chunk_bytes >= CKPT_MIN_CHUNK && a->chunk_bytes <= CKPT_MAX_CHUNK &&
           a->has_sha256 && a->sha256.len == SHA256_BYTES;
}

void ckpt_fetcher_offer(ckpt_fetcher *f, const Gtrt__CkptAnnounce *a)
{
    if (!a || f->closed)
        return;
    if (!ckpt_announce_valid(f, a)) {
        f->stats.bad_announces++;
        return;
    }
    if ((f->have_any && a->version <= f->have_version) ||
        (f->active && a->version <= f->cur.version))
        return;
    if (f->active) {
        log_info("checkpoint v%llu announced; dropping the fetch of v%llu",
                 (unsigned long long)a->version, (unsigned long long)f->cur.version);
        f->stats.abandoned++;
    }
    ckpt_fetch_reset(f);
    f->cur.version = a->version;
    f->cur.len = (size_t)a->total_bytes;
    f->cur.chunk_bytes = a->chunk_bytes;
    f->cur.n_chunks = ckpt_n_chunks(f->cur.len, a->chunk_bytes);
    memcpy(f->cur.sha, a->sha256.data, SHA256_BYTES);
    snprintf(f->cur.name, sizeof f->cur.name, "%s", a->name ? a->name : "");
    f->cur.data = malloc(f->cur.len);
    f->got = calloc(f->cur.n_chunks, 1);
    f->cur.chunk_sha = malloc((size_t)f->cur.n_chunks * SHA256_BYTES);
    f->sent_ms = calloc(f->cur.n_chunks, sizeof *f->sent_ms);
    if (!f->cur.data || !f->got || !f->sent_ms || !f->cur.chunk_sha) {
        log_error("out of memory for checkpoint v%llu (%zu bytes)", (unsigned long long)a->version,
                  f->cur.len);
        ckpt_fetch_reset(f);
        return;
    }
    f->active = true;
    f->started_ms = clock_mono_ms();
    ckpt_fetch_pump(f);
}

static void ckpt_fetch_finish(ckpt_fetcher *f)
{
    uint8_t sha[SHA256_BYTES];
    ckpt_hash_list(f->cur.chunk_sha, f->cur.n_chunks, sha);
    if (memcmp(sha, f->cur.sha, SHA256_BYTES)) {
        /* Every chunk matched the digest it came with, yet together they
         * do not match the announcement: the two disagree. Start over. */
        log_warn("checkpoint v%llu failed its SHA-256 check; fetching again",
                 (unsigned long long)f->cur.version);
        f->stats.corrupt++;
        memset(f->got, 0, f->cur.n_chunks);
        memset(f->sent_ms, 0, f->cur.n_chunks * sizeof *f->sent_ms);
        f->next = f->inflight = f->received = 0;
        ckpt_fetch_pump(f);
        return;
    }
    uint64_t ms = clock_mono_ms() - f->started_ms;
    log_info("checkpoint v%llu fetched: %zu bytes in %llu ms", (unsigned long long)f->cur.version,
             f->cur.len, (unsigned long long)ms);
    f->stats.fetched++;
    f->have_version = f->cur.version;
    f->have_any = true;
    uint8_t *data = f->cur.data;
    f->cur.data = NULL;
    char name[sizeof f->cur.name];
    memcpy(name, f->cur.name, sizeof name);
    uint64_t version = f->cur.version;
    size_t len = f->cur.len;
    ckpt_fetch_reset(f);
    f->ready(f->ud, version, name, data, len);
}

static void ckpt_fetch_on_chunk(ckpt_fetcher *f, const wire_msg *msg)
{
    const Gtrt__CkptChunk *c = (const Gtrt__CkptChunk *)msg->body;
    if (!f->active || !c->has_version || c->version != f->cur.version || !c->has_index ||
        c->index >= f->cur.n_chunks || f->got[c->index])
        return; /* late or duplicate: harmless */
    size_t want = ckpt_chunk_len(f->cur.len, f->cur.chunk_bytes, c->index);
    uint8_t sha[SHA256_BYTES];
    bool ok = msg->npayload == 1 && msg->payload[0].len == want && c->has_sha256 &&
              c->sha256.len == SHA256_BYTES;
    if (ok) {
        sha256(msg->payload[0].data, want, sha);
        ok = !memcmp(sha, c->sha256.data, SHA256_BYTES);
    }
    if (f->inflight)
        f->inflight--;
    if (!ok) {
        f->stats.corrupt++;
        log_warn("checkpoint v%llu chunk %u arrived corrupt; fetching it again",
                 (unsigned long long)c->version, c->index);
        ckpt_fetch_request(f, c->index);
        f->inflight++;
        return;
    }
    memcpy(f->cur.data + (size_t)c->index * f->cur.chunk_bytes, msg->payload[0].data, want);
    memcpy(f->cur.chunk_sha[c->index], sha, SHA256_BYTES);
    f->got[c->index] = 1;
    f->stats.chunks++;
    if (++f->received == f->cur.n_chunks)
        ckpt_fetch_finish(f);
    else
        ckpt_fetch_pump(f);
}

static void ckpt_fetch_on_msg(net_sock *s, const net_route *from, const wire_msg *msg, void *ud)
{
    ckpt_fetcher *f = ud;
    (void)from;
    if (msg->type == GTRT__MSG_TYPE__MSG_CKPT_CHUNK)
        ckpt_fetch_on_chunk(f, msg);
    else if (msg->type == GTRT__MSG_TYPE__MSG_CKPT_ANNOUNCE)
        ckpt_fetcher_offer(f, (const Gtrt__CkptAnnounce *)msg->body);
    else if (msg->type == GTRT__MSG_TYPE__MSG_ERROR && f->active) {
        const Gtrt__Error *er = (const Gtrt__Error *)msg->body;
        log_warn("checkpoint v%llu: learner says %s; giving it up",
                 (unsigned long long)f->cur.version, er->message ? er->message : "(no message)");
        f->stats.abandoned++;
        ckpt_fetch_reset(f);
    } else
        s->stats.unexpected++;
}

/* Re-request chunks whose answer is overdue (lost, or the learner restarted). */
static void ckpt_fetch_timer_cb(uv_timer_t *h)
{
    ckpt_fetcher *f = h->data;
    if (!f->active)
        return;
    uint64_t now = clock_mono_ms();
    for (uint32_t i = 0; i < f->next; i++)
        if (!f->got[i] && f->sent_ms[i] && now - f->sent_ms[i] > f->timeout_ms) {
            f->stats.retried++;
            ckpt_fetch_request(f, i);
        }
}

int ckpt_fetcher_init(ckpt_fetcher *f, net_loop *nl, const char *router_ep, const char *pub_ep,
                      int credit, uint64_t timeout_ms, uint64_t max_bytes, ckpt_ready_fn ready,
                      void *ud, err *e)
{
    memset(f, 0, sizeof *f);
    f->credit = credit < 1 ? 1 : credit;
    f->timeout_ms = timeout_ms;
    f->max_bytes = max_bytes;
    f->ready = ready;
    f->ud = ud;
    f->dealer = net_sock_new(nl, ZMQ_DEALER, "ckpt", ckpt_fetch_on_msg, f, e);
    if (!f->dealer || net_sock_connect(f->dealer, router_ep, e))
        return e ? e->code : GTRT_ENET;
    if (pub_ep && pub_ep[0]) {
        f->sub = net_sock_new(nl, ZMQ_SUB, "announce", ckpt_fetch_on_msg, f, e);
        if (!f->sub || net_sock_connect(f->sub, pub_ep, e))
            return e ? e->code : GTRT_ENET;
    }
    uv_timer_init(nl->uv, &f->timer);
    f->timer.data = f;
    uint64_t tick = timeout_ms / 4 ? timeout_ms / 4 : 1;
    uv_timer_start(&f->timer, ckpt_fetch_timer_cb, tick, tick);
    return 0;
}

void ckpt_fetcher_have(ckpt_fetcher *f, uint64_t version)
{
    if (f->have_any && f->have_version >= version)
        return;
    f->have_any = true;
    f->have_version = version;
    if (f->active && f->cur.version <= version)
        ckpt_fetch_reset(f);
}

void ckpt_fetcher_close(ckpt_fetcher *f)
{
    if (f->closed)
        return;
    f->closed = true;
    if (uv_is_active((uv_handle_t *)&f->timer) || f->timer.data)
        uv_close((uv_handle_t *)&f->timer, NULL);
    ckpt_fetch_reset(f);
}
