/* Benchmark of checkpoint publishing over loopback TCP, the path a new
 * policy takes from the learner to an actor.
 *
 * A `base`-preset policy is saved as safetensors (its real bytes). A
 * ckpt_server (ROUTER + PUB on tcp://127.0.0.1, free ports) runs in its own
 * thread with its own uv loop, as the learner's; a ckpt_fetcher in the main
 * thread's loop subscribes and fetches, as an actor does, and the fetched
 * bytes are swapped into a live model with model_load_buffer. Per publish:
 *   publish        ckpt_server_publish (SHA-256 of the file and of every
 *                  chunk) until the announcement is sent;
 *   delivered      announcement sent -> every chunk received and verified
 *                  (each chunk's SHA-256, then the whole file's);
 *   transfer GB/s  file bytes / delivered time;
 *   swapped        announcement sent -> weights live in the model.
 * Repeated, median and best reported, with net.chunk_bytes and
 * net.fetch_credit at their defaults; then a sweep over credit 1/4/16.
 * Target: transfer >= 1 GB/s. SHA-256 alone is timed too, because the
 * fetcher hashes every byte once (each chunk on arrival; the announced
 * digest is a hash list over the chunk digests).
 *
 * Usage: bench_ckpt [--preset P] [--reps N] [--sweep-reps N]
 * Prints figures; never fails on a number. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "common/ckpt_xfer.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"

#define BC_WARM_BYTES 4096
#define BC_MAX_RUNS 64

/* ==== the server thread (the learner's side) ==== */

typedef struct bc_server {
    uv_loop_t loop;
    net_loop nl;
    net_sock *router, *pub;
    ckpt_server cs;
    uv_async_t wake;
    pthread_t thread;
    char router_ep[128], pub_ep[128];
    uint32_t chunk;
    /* A publish request, handed over by the main thread through `wake`. */
    pthread_mutex_t mu;
    uint8_t *req_data;
    size_t req_len;
    uint64_t req_version;
    bool stop;
    /* when the last publish started and when its announcement went out */
    _Atomic uint64_t publish_ns, announce_ns;
} bc_server;

static void bc_on_request(net_sock *s, const net_route *from, const wire_msg *msg, void *ud)
{
    bc_server *sv = ud;
    if (msg->type == GTRT__MSG_TYPE__MSG_CKPT_CHUNK_REQUEST)
        ckpt_server_on_request(&sv->cs, s, from, msg);
}

static void bc_server_wake(uv_async_t *h)
{
    bc_server *sv = h->data;
    pthread_mutex_lock(&sv->mu);
    uint8_t *data = sv->req_data;
    size_t len = sv->req_len;
    uint64_t version = sv->req_version;
    bool stop = sv->stop;
    sv->req_data = NULL;
    pthread_mutex_unlock(&sv->mu);
    if (data) {
        err e = {0};
        atomic_store(&sv->publish_ns, clock_mono_ns());
        if (ckpt_server_publish(&sv->cs, version, "policy.safetensors", data, len, &e))
            fprintf(stderr, "publish v%llu: %s\n", (unsigned long long)version, e.msg);
        atomic_store(&sv->announce_ns, clock_mono_ns());
    }
    if (stop) {
        uv_close((uv_handle_t *)&sv->wake, NULL);
        net_loop_close(&sv->nl);
    }
}

static void *bc_server_main(void *arg)
{
    bc_server *sv = arg;
    uv_run(&sv->loop, UV_RUN_DEFAULT);
    return NULL;
}

static int bc_endpoint(net_sock *s, char *out, size_t cap, err *e)
{
    size_t n = cap;
    if (zmq_getsockopt(s->z, ZMQ_LAST_ENDPOINT, out, &n))
        return err_set(e, GTRT_ENET, "ZMQ_LAST_ENDPOINT: %s", zmq_strerror(zmq_errno()));
    return 0;
}

/* Sockets are made and bound here, then the loop moves to its thread
 * (thread creation is the full barrier ZeroMQ asks for). */
static int bc_server_start(bc_server *sv, uint32_t chunk, err *e)
{
    memset(sv, 0, sizeof *sv);
    sv->chunk = chunk;
    pthread_mutex_init(&sv->mu, NULL);
    uv_loop_init(&sv->loop);
    int rc = net_loop_init(&sv->nl, &sv->loop, GTRT__ROLE__ROLE_LEARNER, "bench-learner",
                           (int64_t)64 << 20, 0, e);
    if (rc)
        return rc;
    sv->router = net_sock_new(&sv->nl, ZMQ_ROUTER, "router", bc_on_request, sv, e);
    sv->pub = net_sock_new(&sv->nl, ZMQ_PUB, "pub", NULL, NULL, e);
    if (!sv->router || !sv->pub)
        return e->code ? e->code : GTRT_ENET;
    if ((rc = net_sock_bind(sv->router, "tcp://127.0.0.1:*", e)) ||
        (rc = net_sock_bind(sv->pub, "tcp://127.0.0.1:*", e)) ||
        (rc = bc_endpoint(sv->router, sv->router_ep, sizeof sv->router_ep, e)) ||
        (rc = bc_endpoint(sv->pub, sv->pub_ep, sizeof sv->pub_ep, e)))
        return rc;
    ckpt_server_init(&sv->cs, sv->pub, sv->chunk);
    uv_async_init(&sv->loop, &sv->wake, bc_server_wake);
    sv->wake.data = sv;
    if (pthread_create(&sv->thread, NULL, bc_server_main, sv))
        return err_set(e, GTRT_ESTATE, "cannot start the server thread");
    return 0;
}

/* Ask the server thread to publish a copy of data[0..len) as `version`. */
static void bc_server_publish(bc_server *sv, uint64_t version, const uint8_t *data, size_t len)
{
    uint8_t *copy = malloc(len);
    if (!copy)
        return;
    memcpy(copy, data, len);
    pthread_mutex_lock(&sv->mu);
    free(sv->req_data);
    sv->req_data = copy;
    sv->req_len = len;
    sv->req_version = version;
    pthread_mutex_unlock(&sv->mu);
    uv_async_send(&sv->wake);
}

static void bc_server_stop(bc_server *sv)
{
    pthread_mutex_lock(&sv->mu);
    sv->stop = true;
    pthread_mutex_unlock(&sv->mu);
    uv_async_send(&sv->wake);
    pthread_join(sv->thread, NULL);
    uv_run(&sv->loop, UV_RUN_DEFAULT); /* close callbacks */
    uv_loop_close(&sv->loop);
    ckpt_server_deinit(&sv->cs);
    free(sv->req_data);
    pthread_mutex_destroy(&sv->mu);
}

/* ==== the fetching side (an actor) ==== */

typedef struct bc_run {
    int credit;
    double publish_s, delivered_s, swapped_s;
} bc_run;

typedef struct bc_bench {
    uv_loop_t loop;
    net_loop nl;
    ckpt_fetcher f;
    uv_timer_t timer;
    bc_server *sv;
    model *live;
    const uint8_t *ckpt;
    size_t ckpt_len;
    uint64_t next_version;
    bool warm; /* the SUB socket is known to be connected */
    bc_run runs[BC_MAX_RUNS];
    int n_runs, done;
    int failed;
} bc_bench;

static void bc_stop(bc_bench *b)
{
    uv_timer_stop(&b->timer);
    uv_close((uv_handle_t *)&b->timer, NULL);
    ckpt_fetcher_close(&b->f);
    net_loop_close(&b->nl);
}

static void bc_publish_next(bc_bench *b)
{
    b->f.credit = b->runs[b->done].credit;
    bc_server_publish(b->sv, b->next_version++, b->ckpt, b->ckpt_len);
}

/* Until one announcement has arrived, small blobs are published every
 * 100 ms: a SUB socket misses what is published before it is connected. */
static void bc_on_timer(uv_timer_t *h)
{
    bc_bench *b = h->data;
    static const uint8_t warm[BC_WARM_BYTES];
    if (!b->warm)
        bc_server_publish(b->sv, b->next_version++, warm, sizeof warm);
    else
        bc_publish_next(b);
}

static void bc_on_ready(void *ud, uint64_t version, const char *name, uint8_t *data, size_t len)
{
    bc_bench *b = ud;
    uint64_t t_del = clock_mono_ns();
    (void)version;
    if (len != b->ckpt_len) { /* a warm-up blob */
        free(data);
        if (!b->warm) {
            b->warm = true;
            uv_timer_stop(&b->timer);
            uv_timer_start(&b->timer, bc_on_timer, 50, 0);
        }
        return;
    }
    err e = {0};
    int rc = model_load_buffer(b->live, data, len, name, &e);
    uint64_t t_swap = clock_mono_ns();
    free(data);
    if (rc) {
        fprintf(stderr, "swap failed: %s\n", e.msg);
        b->failed = 1;
        bc_stop(b);
        return;
    }
    uint64_t t_pub = atomic_load(&b->sv->publish_ns), t_ann = atomic_load(&b->sv->announce_ns);
    bc_run *r = &b->runs[b->done++];
    r->publish_s = (double)(t_ann - t_pub) * 1e-9;
    r->delivered_s = (double)(t_del - t_ann) * 1e-9;
    r->swapped_s = (double)(t_swap - t_ann) * 1e-9;
    if (b->done == b->n_runs) {
        bc_stop(b);
        return;
    }
    uv_timer_start(&b->timer, bc_on_timer, 50, 0); /* let the old copies go first */
}

/* Median and best of runs [from, to). */
static void bc_summary(const bc_bench *b, int from, int to, const char *label)
{
    double pub[BC_MAX_RUNS], del[BC_MAX_RUNS], swp[BC_MAX_RUNS];
    int n = 0;
    for (int i = from; i < to && i < b->done; i++) {
        pub[n] = b->runs[i].publish_s;
        del[n] = b->runs[i].delivered_s;
        swp[n] = b->runs[i].swapped_s;
        n++;
    }
    if (!n)
        return;
    double load[BC_MAX_RUNS];
    for (int i = 0; i < n; i++)
        load[i] = swp[i] - del[i];
    double best_del = bench_min(del, n), best_swp = bench_min(swp, n), best_pub = bench_min(pub, n);
    double best_load = bench_min(load, n), med_load = bench_median(load, n);
    double med_del = bench_median(del, n), med_swp = bench_median(swp, n);
    double med_pub = bench_median(pub, n), gb = (double)b->ckpt_len / 1e9;
    printf("  %-18s %d runs: publish %.0f / %.0f ms, delivered %.0f / %.0f ms = %.3f / %.3f "
           "GB/s, model_load_buffer %.0f / %.0f ms, swapped %.0f / %.0f ms\n",
           label, n, 1e3 * med_pub, 1e3 * best_pub, 1e3 * med_del, 1e3 * best_del,
           gb / med_del, gb / best_del, 1e3 * med_load, 1e3 * best_load, 1e3 * med_swp,
           1e3 * best_swp);
}

/* The checkpoint's real bytes: model_save writes a file. */
static int bc_checkpoint_bytes(const model *m, uint8_t **out, size_t *len, err *e)
{
    char dir[] = "/tmp/gtrt-bench-ckpt-XXXXXX", path[sizeof dir + 32];
    if (!mkdtemp(dir))
        return err_set(e, GTRT_EIO, "mkdtemp failed");
    snprintf(path, sizeof path, "%s/policy.safetensors", dir);
    int rc = model_save(m, path, e);
    FILE *f = rc ? NULL : fopen(path, "rb");
    if (f) {
        fseek(f, 0, SEEK_END);
        *len = (size_t)ftell(f);
        fseek(f, 0, SEEK_SET);
        *out = malloc(*len);
        if (!*out || fread(*out, 1, *len, f) != *len)
            rc = err_set(e, GTRT_EIO, "cannot read back %s", path);
        fclose(f);
    } else if (!rc)
        rc = err_set(e, GTRT_EIO, "cannot open %s", path);
    unlink(path);
    rmdir(dir);
    return rc;
}

static double bc_sha_gbs(const uint8_t *data, size_t len)
{
    uint8_t d[SHA256_BYTES];
    double best = 1e30;
    for (int i = 0; i < 3; i++) {
        double t0 = bench_now();
        sha256(data, len, d);
        double t = bench_now() - t0;
        best = t < best ? t : best;
    }
    return (double)len / best / 1e9;
}

static int bc_bench_run(bc_bench *b, bc_server *sv, int credit, err *e)
{
    uv_loop_init(&b->loop);
    int rc = net_loop_init(&b->nl, &b->loop, GTRT__ROLE__ROLE_ACTOR, "bench-actor",
                           (int64_t)64 << 20, 0, e);
    if (!rc)
        rc = ckpt_fetcher_init(&b->f, &b->nl, sv->router_ep, sv->pub_ep, credit, 5000,
                               (uint64_t)1 << 32, bc_on_ready, b, e);
    if (rc)
        return rc;
    uv_timer_init(&b->loop, &b->timer);
    b->timer.data = b;
    uv_timer_start(&b->timer, bc_on_timer, 100, 100);
    uv_run(&b->loop, UV_RUN_DEFAULT);
    uv_loop_close(&b->loop);
    return b->failed ? err_set(e, GTRT_ESTATE, "a fetched checkpoint could not be swapped in") : 0;
}

int main(int argc, char **argv)
{
    const char *preset = "base";
    int reps = 5, sweep_reps = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--preset"))
            preset = argv[i + 1];
        else if (!strcmp(argv[i], "--reps"))
            reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--sweep-reps"))
            sweep_reps = atoi(argv[i + 1]);
    }
    if (argc % 2 == 0 || reps < 1 || sweep_reps < 0 || reps + 3 * sweep_reps > BC_MAX_RUNS) {
        fprintf(stderr, "usage: %s [--preset P] [--reps N] [--sweep-reps N]\n", argv[0]);
        return 2;
    }
    log_set_level(LOG_LVL_WARN); /* the fetcher logs every checkpoint it gets */
    config *defaults = config_new(); /* the schema's net.chunk_bytes, net.fetch_credit */
    if (!defaults)
        return 1;
    uint32_t chunk = (uint32_t)config_int(defaults, "net.chunk_bytes");
    int credit = (int)config_int(defaults, "net.fetch_credit");
    config_free(defaults);
    err e = {0};
    model *src = NULL, *live = NULL;
    uint8_t *bytes = NULL;
    size_t len = 0;
    int rc = bench_policy(preset, "points24", 1, &src, &e);
    if (!rc)
        rc = bench_policy(preset, "points24", 2, &live, &e);
    if (!rc)
        rc = bc_checkpoint_bytes(src, &bytes, &len, &e);
    if (rc) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    printf("checkpoint publish benchmark: ckpt_server thread -> ckpt_fetcher over "
           "tcp://127.0.0.1, then model_load_buffer into a live model\n");
    printf("checkpoint: preset %s, %.2f M parameters, %zu bytes (%.1f MiB) of safetensors; "
           "chunk %u bytes (net.chunk_bytes default), %u chunks; credit %d (net.fetch_credit "
           "default)\n",
           preset, (double)src->n_params / 1e6, len, len / 1048576.0, chunk,
           (unsigned)((len + chunk - 1) / chunk), credit);
    double sha = bc_sha_gbs(bytes, len);
    printf("SHA-256 here: %.2f GB/s; the fetcher hashes every byte once (each chunk on arrival), "
           "which alone caps a transfer at %.2f GB/s\n", sha, sha);
    fflush(stdout);

    bc_server sv;
    bc_bench b = {.sv = &sv, .live = live, .ckpt = bytes, .ckpt_len = len, .next_version = 1};
    static const int sweep[3] = {1, 4, 16};
    for (int i = 0; i < reps; i++)
        b.runs[b.n_runs++].credit = credit;
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < sweep_reps; i++)
            b.runs[b.n_runs++].credit = sweep[c];
    if (!(rc = bc_server_start(&sv, chunk, &e))) {
        rc = bc_bench_run(&b, &sv, credit, &e);
        bc_server_stop(&sv);
    }
    if (rc) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    printf("median / best (publish: hashing until the announcement is sent; delivered and "
           "swapped: from the announcement):\n");
    char label[64];
    snprintf(label, sizeof label, "credit %d (default)", credit);
    bc_summary(&b, 0, reps, label);
    if (sweep_reps > 0) {
        printf("credit sweep (chunk %u bytes):\n", chunk);
        for (int c = 0; c < 3; c++) {
            snprintf(label, sizeof label, "credit %d", sweep[c]);
            int from = reps + c * sweep_reps;
            bc_summary(&b, from, from + sweep_reps, label);
        }
    }
    double del[BC_MAX_RUNS];
    int n = 0;
    for (int i = 0; i < reps; i++)
        del[n++] = b.runs[i].delivered_s;
    double med = bench_median(del, n);
    printf("of the median delivered time, the fetcher's SHA-256 pass takes ~%.0f ms "
           "(%.0f%%) at the speed measured above\n",
           1e3 * (double)len / (sha * 1e9), 100 * (double)len / (sha * 1e9) / med);
    bench_verdict("checkpoint transfer (median, default credit)", (double)len / med / 1e9, "GB/s",
                  1.0, false);
    free(bytes);
    model_free(src);
    model_free(live);
    return 0;
}
