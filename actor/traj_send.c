/* Acknowledged, resendable trajectory batches (see traj_send.h). */
#include "actor/traj_send.h"

#include <stdlib.h>
#include <string.h>

#include "common/clock.h"

void traj_sender_init(traj_sender *t, size_t max_unacked_steps)
{
    memset(t, 0, sizeof *t);
    t->next_seq = 1;
    t->incarnation = clock_unix_ms();
    t->max_unacked_steps = max_unacked_steps;
}

static void traj_pending_free(traj_pending *p)
{
    free(p->body);
    free(p->images);
    free(p->image_len);
}

void traj_sender_deinit(traj_sender *t)
{
    for (size_t i = 0; i < t->n; i++)
        traj_pending_free(&t->q[i]);
    free(t->q);
    memset(t, 0, sizeof *t);
}

size_t traj_sender_room(const traj_sender *t)
{
    return t->unacked_steps >= t->max_unacked_steps ? 0 : t->max_unacked_steps - t->unacked_steps;
}

static int traj_pending_send(net_sock *sock, const traj_pending *p)
{
    wire_slice imgs[TRAJ_MAX_STEPS_PER_BATCH];
    size_t off = 0;
    for (uint32_t i = 0; i < p->nsteps; i++) {
        imgs[i] = (wire_slice){p->images + off, p->image_len[i]};
        off += p->image_len[i];
    }
    return net_send_packed(sock, NULL, GTRT__MSG_TYPE__MSG_TRAJ_BATCH, p->body, p->body_len, 0,
                           imgs, p->nsteps);
}

int traj_sender_send(traj_sender *t, net_sock *sock, Gtrt__Step **steps, size_t n,
                     const wire_slice *images, err *e)
{
    if (n == 0 || n > TRAJ_MAX_STEPS_PER_BATCH)
        return err_set(e, GTRT_EINVAL, "a batch holds 1..%d steps, not %zu",
                       TRAJ_MAX_STEPS_PER_BATCH, n);
    Gtrt__TrajBatch tb = GTRT__TRAJ_BATCH__INIT;
    tb.has_seq = 1;
    tb.seq = t->next_seq;
    tb.has_incarnation = 1;
    tb.incarnation = t->incarnation;
    tb.n_steps = n;
    tb.steps = steps;
    traj_pending p = {0};
    p.seq = tb.seq;
    p.nsteps = (uint32_t)n;
    p.body_len = gtrt__traj_batch__get_packed_size(&tb);
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += images[i].len;
    p.body = malloc(p.body_len ? p.body_len : 1);
    p.images = malloc(total ? total : 1);
    p.image_len = malloc(n * sizeof *p.image_len);
    traj_pending *nq = realloc(t->q, (t->n + 1) * sizeof *nq);
    if (nq)
        t->q = nq;
    if (!p.body || !p.images || !p.image_len || !nq) {
        traj_pending_free(&p);
        return err_set(e, GTRT_ENOMEM, "out of memory queueing a batch");
    }
    gtrt__traj_batch__pack(&tb, p.body);
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(p.images + off, images[i].data, images[i].len);
        p.image_len[i] = images[i].len;
        off += images[i].len;
    }
    t->q[t->n++] = p;
    t->next_seq++;
    t->unacked_steps += n;
    t->stats.batches++;
    t->stats.steps += n;
    if (traj_pending_send(sock, &p)) {
        t->stats.send_failures++;
        t->q[t->n - 1].unsent = true;
    }
    return 0;
}

void traj_sender_on_ack(traj_sender *t, const Gtrt__TrajAck *ack)
{
    for (size_t k = 0; k < ack->n_seq; k++) {
        for (size_t i = 0; i < t->n; i++) {
            if (t->q[i].seq != ack->seq[k])
                continue;
            t->unacked_steps -= t->q[i].nsteps;
            t->stats.acked_steps += t->q[i].nsteps;
            if (ack->has_status && ack->status == GTRT__ACK_STATUS__ACK_DUPLICATE)
                t->stats.duplicate_acks++;
            traj_pending_free(&t->q[i]);
            memmove(&t->q[i], &t->q[i + 1], (t->n - i - 1) * sizeof *t->q);
            t->n--;
            break;
        }
    }
}

void traj_sender_resend(traj_sender *t, net_sock *sock)
{
    for (size_t i = 0; i < t->n; i++) {
        t->q[i].unsent = traj_pending_send(sock, &t->q[i]) != 0;
        if (t->q[i].unsent)
            t->stats.send_failures++;
        else
            t->stats.resent++;
    }
}

void traj_sender_retry(traj_sender *t, net_sock *sock)
{
    for (size_t i = 0; i < t->n; i++) {
        if (!t->q[i].unsent)
            continue;
        t->q[i].unsent = traj_pending_send(sock, &t->q[i]) != 0;
        if (t->q[i].unsent)
            t->stats.send_failures++;
        else
            t->stats.retried++;
    }
}
