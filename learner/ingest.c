/* Trajectory ingest with dedup, staleness and ack-on-use (see ingest.h). */
#include "learner/ingest.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

/* ==== small sets of seqs ==== */

static bool seq_in(const uint64_t *v, size_t n, uint64_t x)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] == x)
            return true;
    return false;
}

static int seq_add(uint64_t **v, size_t *n, uint64_t x)
{
    uint64_t *nv = realloc(*v, (*n + 1) * sizeof **v);
    if (!nv)
        return GTRT_ENOMEM;
    nv[(*n)++] = x;
    *v = nv;
    return 0;
}

static void seq_remove(uint64_t *v, size_t *n, uint64_t x)
{
    for (size_t i = 0; i < *n; i++)
        if (v[i] == x) {
            v[i] = v[--*n];
            return;
        }
}

/* ==== actors ==== */

static ingest_actor *ingest_actor_get(ingest *g, const char *id, int *index)
{
    for (size_t i = 0; i < g->n_actors; i++)
        if (!strcmp(g->actors[i].id, id)) {
            *index = (int)i;
            return &g->actors[i];
        }
    if (g->n_actors >= g->max_actors)
        return NULL;
    ingest_actor *a = &g->actors[g->n_actors];
    memset(a, 0, sizeof *a);
    snprintf(a->id, sizeof a->id, "%s", id);
    *index = (int)g->n_actors++;
    return a;
}

static void ingest_ack(ingest *g, net_sock *sock, ingest_actor *a, uint64_t seq,
                       Gtrt__AckStatus status)
{
    if (!sock || !a->route.len)
        return;
    Gtrt__TrajAck ack = GTRT__TRAJ_ACK__INIT;
    ack.n_seq = 1;
    ack.seq = &seq;
    ack.has_status = 1;
    ack.status = status;
    if (net_send(sock, &a->route, GTRT__MSG_TYPE__MSG_TRAJ_ACK, &ack.base, 0, NULL, 0) == 0)
        g->stats.acks++;
}

/* Record `seq` as acknowledged and advance the floor over contiguous ones. */
static void ingest_mark_acked(ingest_actor *a, uint64_t seq)
{
    seq_remove(a->pending, &a->n_pending, seq);
    if (seq > a->floor && !seq_in(a->acked, a->n_acked, seq))
        seq_add(&a->acked, &a->n_acked, seq);
    while (seq_in(a->acked, a->n_acked, a->floor + 1)) {
        a->floor++;
        seq_remove(a->acked, &a->n_acked, a->floor);
    }
}

/* ==== batches ==== */

static int ingest_batch_open(ingest *g, int actor, uint64_t seq)
{
    for (size_t i = 0; i < g->n_batches; i++)
        if (g->batches[i].actor < 0) {
            g->batches[i] = (ingest_batch){actor, seq, 0};
            return (int)i;
        }
    ingest_batch *nb = realloc(g->batches, (g->n_batches + 1) * sizeof *nb);
    if (!nb)
        return -1;
    g->batches = nb;
    g->batches[g->n_batches] = (ingest_batch){actor, seq, 0};
    return (int)g->n_batches++;
}

/* One step of batch `b` is finished with; acknowledge the batch when it was
 * the last one open. */
static void ingest_batch_close_step(ingest *g, net_sock *sock, int b)
{
    ingest_batch *bt = &g->batches[b];
    if (bt->open > 0)
        bt->open--;
    if (bt->open > 0)
        return;
    ingest_actor *a = &g->actors[bt->actor];
    ingest_mark_acked(a, bt->seq);
    ingest_ack(g, sock, a, bt->seq, GTRT__ACK_STATUS__ACK_USED);
    bt->actor = -1;
}

static int ingest_push(ingest *g, traj_step *s, int batch)
{
    if (g->n_steps == g->cap_steps) {
        size_t cap = g->cap_steps ? 2 * g->cap_steps : 256;
        traj_step *ns = realloc(g->steps, cap * sizeof *ns);
        if (!ns)
            return GTRT_ENOMEM;
        g->steps = ns;
        int *nb = realloc(g->step_batch, cap * sizeof *nb);
        if (!nb)
            return GTRT_ENOMEM;
        g->step_batch = nb;
        g->cap_steps = cap;
    }
    g->steps[g->n_steps] = *s;
    g->step_batch[g->n_steps++] = batch;
    return 0;
}

/* ==== public ==== */

int ingest_init(ingest *g, const traj_limits *lim, uint64_t max_lag, size_t max_actors)
{
    memset(g, 0, sizeof *g);
    g->lim = *lim;
    g->max_lag = max_lag;
    g->max_actors = max_actors;
    g->actors = calloc(max_actors, sizeof *g->actors);
    return g->actors ? 0 : GTRT_ENOMEM;
}

void ingest_deinit(ingest *g)
{
    for (size_t i = 0; i < g->n_steps; i++)
        traj_step_free(&g->steps[i]);
    for (size_t i = 0; i < g->n_actors; i++) {
        free(g->actors[i].acked);
        free(g->actors[i].pending);
    }
    free(g->actors);
    free(g->batches);
    free(g->steps);
    free(g->step_batch);
    memset(g, 0, sizeof *g);
}

void ingest_on_batch(ingest *g, net_sock *sock, const net_route *from, const char *actor,
                     const wire_msg *msg, uint64_t version)
{
    const Gtrt__TrajBatch *tb = (const Gtrt__TrajBatch *)msg->body;
    g->stats.batches++;
    int ai;
    ingest_actor *a = ingest_actor_get(g, actor, &ai);
    if (!a || !tb->has_seq || tb->seq == 0 || tb->n_steps != msg->npayload) {
        g->stats.rejected_batches++;
        log_warn("rejected a trajectory batch from %s: %s", actor,
                 !a ? "too many actors" : "no seq, or steps and images do not pair up");
        return;
    }
    a->route = *from;
    if (tb->seq <= a->floor || seq_in(a->acked, a->n_acked, tb->seq)) {
        /* Learned from already; our ack was lost. Say so again. */
        g->stats.duplicates++;
        a->duplicates++;
        ingest_ack(g, sock, a, tb->seq, GTRT__ACK_STATUS__ACK_DUPLICATE);
        return;
    }
    if (seq_in(a->pending, a->n_pending, tb->seq)) {
        g->stats.duplicates++; /* being learned from; the ack will come */
        a->duplicates++;
        return;
    }
    int b = ingest_batch_open(g, ai, tb->seq);
    if (b < 0 || seq_add(&a->pending, &a->n_pending, tb->seq)) {
        if (b >= 0)
            g->batches[b].actor = -1;
        g->stats.rejected_batches++;
        return;
    }
    g->batches[b].open = 1; /* held open while the steps are added */
    for (size_t i = 0; i < tb->n_steps; i++) {
        const Gtrt__Step *pb = tb->steps[i];
        g->stats.steps++;
        a->steps++;
        const char *why = NULL;
        traj_step s;
        if (pb->has_policy_version && pb->policy_version > version)
            why = "policy version from the future";
        else if (pb->has_policy_version && version - pb->policy_version > g->max_lag) {
            g->stats.stale++;
            a->stale++;
            continue;
        }
        if (why || traj_step_from_pb(pb, &msg->payload[i], &g->lim, actor, &s, &why)) {
            g->stats.invalid++;
            a->invalid++;
            log_warn("dropped a step from %s: %s", actor, why);
            continue;
        }
        if (ingest_push(g, &s, b)) {
            traj_step_free(&s);
            g->stats.invalid++;
            continue;
        }
        g->batches[b].open++;
        g->stats.accepted++;
    }
    ingest_batch_close_step(g, sock, b); /* release the hold */
}

void ingest_drop_stale(ingest *g, net_sock *sock, uint64_t version)
{
    size_t k = 0;
    for (size_t i = 0; i < g->n_steps; i++) {
        traj_step *s = &g->steps[i];
        if (version - s->policy_version > g->max_lag) {
            g->stats.stale++;
            int b = g->step_batch[i];
            g->actors[g->batches[b].actor].stale++;
            traj_step_free(s);
            ingest_batch_close_step(g, sock, b);
            continue;
        }
        g->steps[k] = *s;
        g->step_batch[k++] = g->step_batch[i];
    }
    g->n_steps = k;
}

size_t ingest_take(ingest *g, traj_step *out, int *batch_of, size_t n)
{
    if (n > g->n_steps)
        n = g->n_steps;
    memcpy(out, g->steps, n * sizeof *out);
    memcpy(batch_of, g->step_batch, n * sizeof *batch_of);
    memmove(g->steps, g->steps + n, (g->n_steps - n) * sizeof *g->steps);
    memmove(g->step_batch, g->step_batch + n, (g->n_steps - n) * sizeof *g->step_batch);
    g->n_steps -= n;
    return n;
}

size_t ingest_ready(const ingest *g, size_t n)
{
    if (n == 0 || g->n_steps < n)
        return 0;
    while (n < g->n_steps && g->step_batch[n] == g->step_batch[n - 1])
        n++;
    return n;
}

void ingest_done(ingest *g, net_sock *sock, const int *batch_of, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ingest_batch_close_step(g, sock, batch_of[i]);
}

int ingest_save(const ingest *g, FILE *f)
{
    fprintf(f, "gtrt-ingest 1 %zu\n", g->n_actors);
    for (size_t i = 0; i < g->n_actors; i++) {
        const ingest_actor *a = &g->actors[i];
        fprintf(f, "%s %" PRIu64 " %zu", a->id, a->floor, a->n_acked);
        for (size_t k = 0; k < a->n_acked; k++)
            fprintf(f, " %" PRIu64, a->acked[k]);
        fputc('\n', f);
    }
    return ferror(f) ? GTRT_EIO : 0;
}

int ingest_load(ingest *g, FILE *f, err *e)
{
    size_t n;
    if (fscanf(f, "gtrt-ingest 1 %zu", &n) != 1 || n > g->max_actors)
        return err_set(e, GTRT_EPARSE, "ingest state: bad header");
    for (size_t i = 0; i < n; i++) {
        char id[WIRE_MAX_ID_LEN + 1];
        uint64_t floor;
        size_t na;
        if (fscanf(f, "%64s %" SCNu64 " %zu", id, &floor, &na) != 3 || !wire_id_valid(id) ||
            na > 1000000)
            return err_set(e, GTRT_EPARSE, "ingest state: bad line %zu", i + 2);
        int ai;
        ingest_actor *a = ingest_actor_get(g, id, &ai);
        if (!a)
            return err_set(e, GTRT_ERANGE, "ingest state: too many actors");
        a->floor = floor;
        for (size_t k = 0; k < na; k++) {
            uint64_t s;
            if (fscanf(f, "%" SCNu64, &s) != 1 || seq_add(&a->acked, &a->n_acked, s))
                return err_set(e, GTRT_EPARSE, "ingest state: bad seq list on line %zu", i + 2);
        }
    }
    return 0;
}
