/* Ingest bookkeeping the learner's resume depends on: a batch's steps are
 * tallied by outcome when it settles, its acknowledgement waits until the
 * persist hook has stored that, an ack that cannot be sent is kept and
 * retried, and an actor restarted under the same id (seqs from 1 again, a
 * newer incarnation) is not mistaken for a sender of duplicates. Messages
 * are built in memory and handed to ingest directly. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "learner/ingest.h"

#define IMG_C 3
#define IMG_H 4
#define IMG_W 4
#define VERSION 5 /* the learner's; max_lag 2, so steps of v1 are stale */

static const traj_limits LIM = {.vocab = 50, .max_tokens = 20, .img_c = IMG_C, .img_h = IMG_H,
                                .img_w = IMG_W};

typedef struct step_buf {
    Gtrt__Step s;
    uint32_t prompt[3], answer[4];
    float logprob[4];
    uint8_t kind[4];
    uint8_t image[IMG_C * IMG_H * IMG_W];
} step_buf;

typedef struct batch_buf {
    Gtrt__Header hdr;
    Gtrt__TrajBatch tb;
    Gtrt__Step *ptrs[4];
    step_buf sb[4];
    wire_slice imgs[4];
    wire_msg msg;
} batch_buf;

static void make_step(step_buf *b, uint64_t version)
{
    gtrt__step__init(&b->s);
    Gtrt__Step *s = &b->s;
    s->has_episode = s->has_policy_version = s->has_kind = 1;
    s->policy_version = version;
    for (int i = 0; i < 3; i++)
        b->prompt[i] = (uint32_t)(i + 1);
    for (int i = 0; i < 4; i++) {
        b->answer[i] = (uint32_t)(10 + i);
        b->logprob[i] = -0.5f;
        b->kind[i] = (uint8_t)(i < 2 ? TRAJ_KIND_THOUGHT : TRAJ_KIND_ACTION);
    }
    s->n_prompt = 3;
    s->prompt = b->prompt;
    s->n_answer = 4;
    s->answer = b->answer;
    s->n_logprob = 4;
    s->logprob = b->logprob;
    s->kind.len = 4;
    s->kind.data = b->kind;
    s->has_image_c = s->has_image_h = s->has_image_w = 1;
    s->image_c = IMG_C;
    s->image_h = IMG_H;
    s->image_w = IMG_W;
    memset(b->image, 7, sizeof b->image);
}

/* Batch `seq` of process `inc`: n steps, the first `stale` of them from v1. */
static const wire_msg *make_batch(batch_buf *b, uint64_t inc, uint64_t seq, int n, int stale)
{
    memset(b, 0, sizeof *b);
    gtrt__header__init(&b->hdr);
    b->hdr.sender_id = "actor-x";
    gtrt__traj_batch__init(&b->tb);
    b->tb.has_seq = b->tb.has_incarnation = 1;
    b->tb.seq = seq;
    b->tb.incarnation = inc;
    for (int i = 0; i < n; i++) {
        make_step(&b->sb[i], i < stale ? 1 : VERSION);
        b->ptrs[i] = &b->sb[i].s;
        b->imgs[i] = (wire_slice){b->sb[i].image, sizeof b->sb[i].image};
    }
    b->tb.n_steps = (size_t)n;
    b->tb.steps = b->ptrs;
    b->msg = (wire_msg){&b->hdr, GTRT__MSG_TYPE__MSG_TRAJ_BATCH, &b->tb.base, b->imgs, (size_t)n};
    return &b->msg;
}

/* A ROUTER with no peer: every ack sent on it fails, as to a vanished route. */
typedef struct fx {
    uv_loop_t loop;
    net_loop nl;
    net_sock *router;
    ingest g;
    net_route from;
    int persist_calls, persist_rc;
} fx;

static int persist_hook(void *ud)
{
    fx *f = ud;
    f->persist_calls++;
    return f->persist_rc;
}

static void setup(fx *f, const char *ep)
{
    memset(f, 0, sizeof *f);
    uv_loop_init(&f->loop);
    err e = {0};
    cr_assert_eq(net_loop_init(&f->nl, &f->loop, GTRT__ROLE__ROLE_LEARNER, "learner-t", 1 << 20, 0,
                               &e),
                 0, "%s", e.msg);
    f->router = net_sock_new(&f->nl, ZMQ_ROUTER, "router", NULL, NULL, &e);
    cr_assert_not_null(f->router, "%s", e.msg);
    cr_assert_eq(net_sock_bind(f->router, ep, &e), 0, "%s", e.msg);
    cr_assert_eq(ingest_init(&f->g, &LIM, 2, 8), 0);
    ingest_set_persist(&f->g, persist_hook, f);
    f->from.len = 3;
    memcpy(f->from.id, "\x01\x02\x03", 3);
}

static void teardown(fx *f)
{
    net_loop_close(&f->nl);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_loop_close(&f->loop);
    ingest_deinit(&f->g);
}

static void batch(fx *f, uint64_t inc, uint64_t seq, int n, int stale)
{
    batch_buf b;
    ingest_on_batch(&f->g, NULL, &f->from, "actor-x", make_batch(&b, inc, seq, n, stale), VERSION);
}

/* Learn from every buffered step. */
static void learn_all(fx *f)
{
    traj_step steps[16];
    int batch_of[16];
    size_t n = ingest_take(&f->g, steps, batch_of, 16);
    for (size_t i = 0; i < n; i++)
        traj_step_free(&steps[i]);
    cr_assert_eq(ingest_done(&f->g, NULL, batch_of, n), 0);
}

static int acks_for(const ingest *g, uint64_t seq, Gtrt__AckStatus status)
{
    int n = 0;
    for (size_t i = 0; i < g->n_out; i++)
        n += g->outbox[i].seq == seq && g->outbox[i].status == status;
    return n;
}

Test(ingest, outcomes_are_tallied_and_acks_wait_for_the_record)
{
    fx f;
    setup(&f, "inproc://ingest1");
    batch(&f, 100, 1, 3, 1); /* one stale step, two buffered */
    batch(&f, 100, 2, 2, 2); /* all stale: settled at once */
    const ingest_actor *a = &f.g.actors[0];
    cr_expect_eq(a->settled.steps, 2);
    cr_expect_eq(a->settled.stale, 2);
    cr_expect_eq(ingest_open_steps(&f.g), 3, "batch 1 is still open");
    cr_expect_eq(acks_for(&f.g, 2, GTRT__ACK_STATUS__ACK_USED), 1);
    cr_expect_eq(acks_for(&f.g, 1, GTRT__ACK_STATUS__ACK_USED), 0);
    cr_expect(f.g.dirty);

    f.persist_rc = GTRT_EIO; /* the record cannot be written: nothing goes out */
    cr_expect_eq(ingest_flush(&f.g, f.router), GTRT_EIO);
    cr_expect_eq(f.persist_calls, 1);
    cr_expect_eq(f.g.n_out, 1);
    cr_expect_eq(f.g.stats.acks_retried, 0, "an ack was sent before its record was written");
    cr_expect(f.g.dirty);

    f.persist_rc = 0; /* written: the ack is tried, fails (no such peer) and is kept */
    cr_expect_eq(ingest_flush(&f.g, f.router), 0);
    cr_expect_eq(f.persist_calls, 2);
    cr_expect(!f.g.dirty);
    cr_expect_eq(f.g.stats.acks_retried, 1);
    cr_expect_eq(f.g.n_out, 1);
    cr_expect_eq(ingest_flush(&f.g, f.router), 0);
    cr_expect_eq(f.persist_calls, 2, "persisted again with nothing new");

    learn_all(&f);
    cr_expect_eq(f.persist_calls, 3, "an update's batches were not persisted");
    cr_expect_eq(a->settled.steps, 5);
    cr_expect_eq(a->settled.learned, 2);
    cr_expect_eq(a->settled.stale, 3);
    cr_expect_eq(a->settled.invalid, 0);
    cr_expect_eq(f.g.stats.settled.steps, 5);
    cr_expect_eq(a->floor, 2);
    cr_expect_eq(ingest_open_steps(&f.g), 0);
    cr_expect_eq(acks_for(&f.g, 1, GTRT__ACK_STATUS__ACK_USED), 1);

    batch(&f, 100, 1, 3, 0); /* sent again: a duplicate, answered as one */
    cr_expect_eq(f.g.stats.duplicates, 1);
    cr_expect_eq(acks_for(&f.g, 1, GTRT__ACK_STATUS__ACK_DUPLICATE), 1);
    cr_expect_eq(a->settled.steps, 5, "a duplicate was counted");
    teardown(&f);
}

Test(ingest, a_restarted_actor_starts_its_seqs_over)
{
    fx f;
    setup(&f, "inproc://ingest2");
    batch(&f, 100, 1, 2, 0);
    learn_all(&f); /* seq 1 of process 100: settled, acked */
    batch(&f, 100, 2, 1, 0); /* still open when the process dies */
    const ingest_actor *a = &f.g.actors[0];
    cr_assert_eq(a->floor, 1);

    batch(&f, 200, 1, 2, 0); /* the new process's seq 1 is new */
    cr_expect_eq(f.g.stats.duplicates, 0, "the restarted actor's batch was taken for a duplicate");
    cr_expect_eq(f.g.n_steps, 3);
    cr_expect_eq(a->incarnation, 200);
    batch(&f, 100, 3, 2, 0); /* late, from the dead process: ignored */
    cr_expect_eq(f.g.stats.old_incarnation, 1);
    cr_expect_eq(f.g.n_steps, 3);

    size_t before = f.g.n_out;
    learn_all(&f);
    cr_expect_eq(a->settled.steps, 5, "the old process's open batch must still count");
    cr_expect_eq(a->settled.learned, 5);
    cr_expect_eq(f.g.n_out, before + 1, "only the new process's batch is acknowledged");
    cr_expect_eq(f.g.outbox[f.g.n_out - 1].seq, 1);
    cr_expect_eq(a->floor, 1);
    /* the old process's queued ack for its seq 1 must not reach the new
     * process, whose own seq 1 it would wrongly acknowledge */
    cr_expect_eq(ingest_flush(&f.g, f.router), 0);
    cr_expect_eq(f.g.n_out, 1, "only the new process's ack is kept for retrying");
    cr_expect_eq(f.g.outbox[0].incarnation, 200);

    /* the incarnation survives a save and load */
    char *buf = NULL;
    size_t len = 0;
    FILE *mf = open_memstream(&buf, &len);
    cr_assert_eq(ingest_save(&f.g, mf), 0);
    fclose(mf);
    ingest_deinit(&f.g);
    cr_assert_eq(ingest_init(&f.g, &LIM, 2, 8), 0);
    FILE *rf = fmemopen(buf, len, "r");
    err e = {0};
    cr_assert_eq(ingest_load(&f.g, rf, &e), 0, "%s", e.msg);
    fclose(rf);
    free(buf);
    a = &f.g.actors[0];
    cr_expect_eq(a->incarnation, 200);
    batch(&f, 100, 4, 1, 0);
    cr_expect_eq(f.g.stats.old_incarnation, 1);
    batch(&f, 200, 1, 1, 0);
    cr_expect_eq(f.g.stats.duplicates, 1);
    cr_expect_eq(acks_for(&f.g, 1, GTRT__ACK_STATUS__ACK_DUPLICATE), 1);
    teardown(&f);
}
