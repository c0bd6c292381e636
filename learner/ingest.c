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

/* ==== acknowledgements ==== */

static void ingest_queue_ack(ingest *g, int actor, uint64_t seq, Gtrt__AckStatus status)
{
    if (g->n_out == g->cap_out) {
        if (g->cap_out >= INGEST_MAX_OUTBOX) {
            /* The actor resends the batch and gets a duplicate ack. */
            memmove(g->outbox, g->outbox + 1, (g->n_out - 1) * sizeof *g->outbox);
            g->n_out--;
            g->stats.acks_dropped++;
        } else {
            size_t cap = g->cap_out ? 2 * g->cap_out : 64;
            ingest_ack *no = realloc(g->outbox, cap * sizeof *no);
            if (!no) {
                g->stats.acks_dropped++;
                return;
            }
            g->outbox = no;
            g->cap_out = cap;
        }
    }
    g->outbox[g->n_out++] = (ingest_ack){actor, g->actors[actor].incarnation, seq, status};
}

/* 0 when sent or given up: an ack with no route (the actor is known only
 * from a saved state and resends whatever it still holds) or for an earlier
 * process of the actor (the new one numbers its own batches from 1: it
 * must never see an old process's seq). */
static int ingest_send_ack(ingest *g, net_sock *sock, const ingest_ack *k)
{
    const ingest_actor *a = &g->actors[k->actor];
    if (!a->route.len || k->incarnation != a->incarnation)
        return 0;
    Gtrt__TrajAck ack = GTRT__TRAJ_ACK__INIT;
    uint64_t seq = k->seq;
    ack.n_seq = 1;
    ack.seq = &seq;
    ack.has_status = 1;
    ack.status = k->status;
    if (net_send(sock, &a->route, GTRT__MSG_TYPE__MSG_TRAJ_ACK, &ack.base, 0, NULL, 0))
        return GTRT_ENET;
    g->stats.acks++;
    return 0;
}

int ingest_flush(ingest *g, net_sock *sock)
{
    if (g->dirty && g->persist) {
        int rc = g->persist(g->persist_ud);
        if (rc)
            return rc;
    }
    g->dirty = false;
    if (!sock)
        return 0;
    size_t k = 0;
    for (size_t i = 0; i < g->n_out; i++) {
        if (ingest_send_ack(g, sock, &g->outbox[i]) == 0)
            continue;
        g->stats.acks_retried++;
        g->outbox[k++] = g->outbox[i];
    }
    g->n_out = k;
    return 0;
}

void ingest_refresh_route(ingest *g, const char *actor, const net_route *route)
{
    for (size_t i = 0; i < g->n_actors; i++)
        if (!strcmp(g->actors[i].id, actor)) {
            g->actors[i].route = *route;
            return;
        }
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
    ingest_batch b = {actor, g->actors[actor].incarnation, seq, 0, {0}};
    for (size_t i = 0; i < g->n_batches; i++)
        if (g->batches[i].actor < 0) {
            g->batches[i] = b;
            return (int)i;
        }
    ingest_batch *nb = realloc(g->batches, (g->n_batches + 1) * sizeof *nb);
    if (!nb)
        return -1;
    g->batches = nb;
    g->batches[g->n_batches] = b;
    return (int)g->n_batches++;
}

static void ingest_tally_add(ingest_tally *to, const ingest_tally *t)
{
    to->steps += t->steps;
    to->learned += t->learned;
    to->stale += t->stale;
    to->invalid += t->invalid;
}

/* Every step of batch `b` is learned from or dropped: move its outcome to
 * the settled tallies and queue its acknowledgement. */
static void ingest_batch_settle(ingest *g, int b)
{
    ingest_batch *bt = &g->batches[b];
    ingest_actor *a = &g->actors[bt->actor];
    ingest_tally_add(&a->settled, &bt->t);
    ingest_tally_add(&g->stats.settled, &bt->t);
    if (bt->incarnation == a->incarnation) { /* else its sender is gone */
        ingest_mark_acked(a, bt->seq);
        ingest_queue_ack(g, bt->actor, bt->seq, GTRT__ACK_STATUS__ACK_USED);
    }
    g->dirty = true;
    bt->actor = -1;
}

typedef enum { INGEST_HOLD, INGEST_LEARNED, INGEST_STALE } ingest_outcome;

/* One step of batch `b` is finished with (INGEST_HOLD: the hold taken while
 * its steps were added); settle the batch when it was the last one open. */
static void ingest_batch_close_step(ingest *g, int b, ingest_outcome how)
{
    ingest_batch *bt = &g->batches[b];
    if (how == INGEST_LEARNED)
        bt->t.learned++;
    else if (how == INGEST_STALE)
        bt->t.stale++;
    if (bt->open > 0)
        bt->open--;
    if (bt->open == 0)
        ingest_batch_settle(g, b);
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
    free(g->outbox);
    memset(g, 0, sizeof *g);
}

void ingest_set_persist(ingest *g, ingest_persist_fn fn, void *ud)
{
    g->persist = fn;
    g->persist_ud = ud;
}

/* Step `pb` of batch `b`: count it, then buffer it or drop it with a count. */
static void ingest_add_step(ingest *g, int b, const Gtrt__Step *pb, const wire_slice *image,
                            const char *actor, uint64_t version)
{
    ingest_batch *bt = &g->batches[b];
    ingest_actor *a = &g->actors[bt->actor];
    g->stats.steps++;
    a->steps++;
    bt->t.steps++;
    const char *why = NULL;
    traj_step s;
    if (pb->has_policy_version && pb->policy_version > version)
        why = "policy version from the future";
    else if (pb->has_policy_version && version - pb->policy_version > g->max_lag) {
        g->stats.stale++;
        a->stale++;
        bt->t.stale++;
        return;
    }
    if (why || traj_step_from_pb(pb, image, &g->lim, actor, &s, &why)) {
        log_warn("dropped a step from %s: %s", actor, why);
    } else if (ingest_push(g, &s, b)) {
        traj_step_free(&s);
        log_warn("dropped a step from %s: out of memory", actor);
    } else {
        g->batches[b].open++;
        g->stats.accepted++;
        return;
    }
    g->stats.invalid++;
    a->invalid++;
    bt->t.invalid++;
}

/* Check the batch's incarnation against the actor's: false for a batch of
 * an earlier process (dropped, counted); a newer one starts its seqs over. */
static bool ingest_incarnation(ingest *g, ingest_actor *a, const Gtrt__TrajBatch *tb)
{
    if (!tb->has_incarnation)
        return true; /* a sender that does not say: taken as the current process */
    uint64_t inc = tb->incarnation;
    if (inc < a->incarnation) {
        g->stats.old_incarnation++;
        log_warn("ignored a batch of an earlier process of %s (started at %" PRIu64 ", the "
                 "current one at %" PRIu64 "): two actors with one id, or a clock set back?",
                 a->id, inc, a->incarnation);
        return false;
    }
    if (inc > a->incarnation) {
        if (a->floor || a->n_acked || a->n_pending)
            log_info("actor %s restarted: its batches are numbered from 1 again", a->id);
        a->incarnation = inc;
        a->floor = 0;
        a->n_acked = 0;
        a->n_pending = 0; /* their batches stay open, settled without an ack */
    }
    return true;
}

/* A batch seen before: learned from already (our ack was lost: say so
 * again) or being learned from (the ack will come). True when it was one. */
static bool ingest_duplicate(ingest *g, int ai, uint64_t seq)
{
    ingest_actor *a = &g->actors[ai];
    bool settled = seq <= a->floor || seq_in(a->acked, a->n_acked, seq);
    if (!settled && !seq_in(a->pending, a->n_pending, seq))
        return false;
    g->stats.duplicates++;
    a->duplicates++;
    if (settled)
        ingest_queue_ack(g, ai, seq, GTRT__ACK_STATUS__ACK_DUPLICATE);
    return true;
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
    if (!ingest_incarnation(g, a, tb))
        return;
    a->route = *from;
    if (ingest_duplicate(g, ai, tb->seq)) {
        if (sock)
            ingest_flush(g, sock);
        return;
    }
    int b = ingest_batch_open(g, ai, tb->seq);
    if (b < 0 || seq_add(&a->pending, &a->n_pending, tb->seq)) {
        if (b >= 0)
            g->batches[b].actor = -1;
        g->stats.rejected_batches++; /* not acknowledged: the actor resends it */
        return;
    }
    g->batches[b].open = 1; /* held open while the steps are added */
    for (size_t i = 0; i < tb->n_steps; i++)
        ingest_add_step(g, b, tb->steps[i], &msg->payload[i], actor, version);
    ingest_batch_close_step(g, b, INGEST_HOLD);
    if (sock)
        ingest_flush(g, sock);
}

void ingest_drop_stale(ingest *g, net_sock *sock, uint64_t version)
{
    size_t k = 0;
    for (size_t i = 0; i < g->n_steps; i++) {
        traj_step *s = &g->steps[i];
        if (version - s->policy_version > g->max_lag) {
            int b = g->step_batch[i];
            g->stats.stale++;
            g->actors[g->batches[b].actor].stale++;
            traj_step_free(s);
            ingest_batch_close_step(g, b, INGEST_STALE);
            continue;
        }
        g->steps[k] = *s;
        g->step_batch[k++] = g->step_batch[i];
    }
    g->n_steps = k;
    if (sock)
        ingest_flush(g, sock);
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

uint64_t ingest_open_steps(const ingest *g)
{
    uint64_t n = 0;
    for (size_t i = 0; i < g->n_batches; i++)
        if (g->batches[i].actor >= 0)
            n += g->batches[i].t.steps;
    return n;
}

int ingest_done(ingest *g, net_sock *sock, const int *batch_of, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ingest_batch_close_step(g, batch_of[i], INGEST_LEARNED);
    return ingest_flush(g, sock);
}

/* ==== saved state ==== */

#define INGEST_FORMAT "gtrt-ingest 2"

int ingest_save(const ingest *g, FILE *f)
{
    fprintf(f, INGEST_FORMAT " %zu\n", g->n_actors);
    for (size_t i = 0; i < g->n_actors; i++) {
        const ingest_actor *a = &g->actors[i];
        const ingest_tally *t = &a->settled;
        fprintf(f,
                "%s %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
                " %zu",
                a->id, a->incarnation, a->floor, t->steps, t->learned, t->stale, t->invalid,
                a->duplicates, a->n_acked);
        for (size_t k = 0; k < a->n_acked; k++)
            fprintf(f, " %" PRIu64, a->acked[k]);
        fputc('\n', f);
    }
    return ferror(f) ? GTRT_EIO : 0;
}

/* One actor line (`line` is its number in the file, for messages). */
static int ingest_load_actor(ingest *g, FILE *f, size_t line, err *e)
{
    char id[WIRE_MAX_ID_LEN + 1];
    uint64_t inc, floor, dup;
    ingest_tally t;
    size_t na;
    _Static_assert(WIRE_MAX_ID_LEN == 64, "the scanf width below");
    if (fscanf(f,
               "%64s %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64
               " %" SCNu64 " %zu",
               id, &inc, &floor, &t.steps, &t.learned, &t.stale, &t.invalid, &dup, &na) != 9 ||
        !wire_id_valid(id) || na > 1000000)
        return err_set(e, GTRT_EPARSE, "ingest state: bad line %zu", line);
    if (t.learned + t.stale + t.invalid != t.steps)
        return err_set(e, GTRT_EPARSE,
                       "ingest state, line %zu: %s's steps learned, stale and invalid do not add up "
                       "to its steps",
                       line, id);
    for (size_t i = 0; i < g->n_actors; i++)
        if (!strcmp(g->actors[i].id, id))
            return err_set(e, GTRT_EPARSE, "ingest state, line %zu: %s listed twice", line, id);
    int ai;
    ingest_actor *a = ingest_actor_get(g, id, &ai);
    if (!a)
        return err_set(e, GTRT_ERANGE, "ingest state: more actors than net.max_peers (%zu)",
                       g->max_actors);
    a->incarnation = inc;
    a->floor = floor;
    a->settled = t;
    a->duplicates = dup;
    ingest_tally_add(&g->stats.settled, &t);
    for (size_t k = 0; k < na; k++) {
        uint64_t s;
        if (fscanf(f, "%" SCNu64, &s) != 1 || s <= floor || seq_in(a->acked, a->n_acked, s) ||
            seq_add(&a->acked, &a->n_acked, s))
            return err_set(e, GTRT_EPARSE, "ingest state: bad seq list on line %zu", line);
    }
    return 0;
}

int ingest_load(ingest *g, FILE *f, err *e)
{
    size_t n;
    if (fscanf(f, " " INGEST_FORMAT " %zu", &n) != 1)
        return err_set(e, GTRT_EPARSE, "ingest state: no \"" INGEST_FORMAT "\" header");
    if (n > g->max_actors)
        return err_set(e, GTRT_ERANGE, "ingest state: %zu actors, more than net.max_peers (%zu)", n,
                       g->max_actors);
    for (size_t i = 0; i < n; i++) {
        int rc = ingest_load_actor(g, f, i + 2, e);
        if (rc)
            return rc;
    }
    return 0;
}
