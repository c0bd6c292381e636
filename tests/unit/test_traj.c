/* Trajectory transport: acked batches, dedup, staleness, bad steps, and a
 * learner restart in the middle, with real sockets on one loop. Every step
 * sent must end up learned from or counted as dropped. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "actor/traj_send.h"
#include "common/clock.h"
#include "learner/ingest.h"

#define IMG_C 3
#define IMG_H 4
#define IMG_W 4

typedef struct fx {
    uv_loop_t loop;
    net_loop nl;
    net_sock *router, *dealer;
    ingest g;
    traj_sender t;
    uint64_t version;
    int acks;
} fx;

static const traj_limits LIM = {.vocab = 50, .max_tokens = 20, .img_c = IMG_C, .img_h = IMG_H, .img_w = IMG_W};

static void on_learner(net_sock *s, const net_route *from, const wire_msg *m, void *ud)
{
    fx *f = ud;
    if (m->type == GTRT__MSG_TYPE__MSG_TRAJ_BATCH)
        ingest_on_batch(&f->g, s, from, m->hdr->sender_id, m, f->version);
}

static void on_actor(net_sock *s, const net_route *from, const wire_msg *m, void *ud)
{
    fx *f = ud;
    (void)s;
    (void)from;
    if (m->type == GTRT__MSG_TYPE__MSG_TRAJ_ACK) {
        traj_sender_on_ack(&f->t, (const Gtrt__TrajAck *)m->body);
        f->acks++;
    }
}

static void setup(fx *f, const char *ep)
{
    memset(f, 0, sizeof *f);
    uv_loop_init(&f->loop);
    err e = {0};
    cr_assert_eq(net_loop_init(&f->nl, &f->loop, GTRT__ROLE__ROLE_ACTOR, "actor-9", 1 << 20, 0, &e), 0);
    f->router = net_sock_new(&f->nl, ZMQ_ROUTER, "router", on_learner, f, &e);
    f->dealer = net_sock_new(&f->nl, ZMQ_DEALER, "dealer", on_actor, f, &e);
    cr_assert_eq(net_sock_bind(f->router, ep, &e), 0);
    cr_assert_eq(net_sock_connect(f->dealer, ep, &e), 0);
    cr_assert_eq(ingest_init(&f->g, &LIM, 2, 8), 0);
    traj_sender_init(&f->t, 1000);
    f->version = 5;
}

static void teardown(fx *f)
{
    net_loop_close(&f->nl);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    uv_loop_close(&f->loop);
    ingest_deinit(&f->g);
    traj_sender_deinit(&f->t);
}

/* Run the loop until `*counter` reaches `want` or 5 s pass. */
static void pump_until(fx *f, const uint64_t *counter, uint64_t want)
{
    uint64_t end = clock_mono_ms() + 5000;
    while (*counter < want && clock_mono_ms() < end)
        uv_run(&f->loop, UV_RUN_NOWAIT);
}

/* Build a valid step; `variant` breaks it in one way. */
typedef struct step_buf {
    Gtrt__Step s;
    uint32_t prompt[3], answer[4];
    float logprob[4];
    uint8_t kind[4];
    uint8_t image[IMG_C * IMG_H * IMG_W];
} step_buf;

static void make_step(step_buf *b, uint64_t episode, uint64_t version, int variant)
{
    gtrt__step__init(&b->s);
    Gtrt__Step *s = &b->s;
    s->has_episode = s->has_policy_version = s->has_kind = 1;
    s->episode = episode;
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
    s->has_reward = 1;
    s->reward = 1.0f;
    memset(b->image, 7, sizeof b->image);
    if (variant == 1)
        b->answer[2] = 999; /* outside the vocabulary */
    if (variant == 2)
        b->logprob[1] = NAN;
    if (variant == 3)
        s->image_h = IMG_H + 1;
    if (variant == 4)
        s->policy_version = 99; /* from the future */
}

static void send_batch(fx *f, int nsteps, uint64_t version, int bad_variant)
{
    step_buf b[8];
    Gtrt__Step *ptrs[8];
    wire_slice imgs[8];
    for (int i = 0; i < nsteps; i++) {
        make_step(&b[i], (uint64_t)i, version, i == 0 ? bad_variant : 0);
        ptrs[i] = &b[i].s;
        imgs[i] = (wire_slice){b[i].image, sizeof b[i].image};
    }
    err e = {0};
    cr_assert_eq(traj_sender_send(&f->t, f->dealer, ptrs, (size_t)nsteps, imgs, &e), 0, "%s", e.msg);
}

static void learn(fx *f, size_t n)
{
    traj_step steps[64];
    int batch_of[64];
    size_t got = ingest_take(&f->g, steps, batch_of, n);
    cr_assert_eq(got, n);
    for (size_t i = 0; i < got; i++) {
        cr_expect_eq(steps[i].n_answer, 4);
        cr_expect_eq(steps[i].image[0], 7);
        traj_step_free(&steps[i]);
    }
    ingest_done(&f->g, f->router, batch_of, got);
}

Test(traj, batches_are_acked_only_once_learned_from)
{
    fx f;
    setup(&f, "inproc://traj1");
    for (int i = 0; i < 4; i++)
        send_batch(&f, 3, 5, 0);
    pump_until(&f, &f.g.stats.steps, 12);
    cr_assert_eq(f.g.stats.accepted, 12);
    cr_expect_eq(f.g.stats.acks, 0, "acked before being learned from");
    cr_expect_eq(f.t.unacked_steps, 12);
    learn(&f, 7); /* batches 1, 2 whole; batch 3 partly */
    pump_until(&f, &f.t.stats.acked_steps, 6);
    cr_expect_eq(f.t.stats.acked_steps, 6);
    cr_expect_eq(f.t.n, 2);
    learn(&f, 5);
    pump_until(&f, &f.t.stats.acked_steps, 12);
    cr_expect_eq(f.t.n, 0);
    cr_expect_eq(traj_sender_room(&f.t), 1000);
    teardown(&f);
}

Test(traj, bad_and_stale_steps_are_counted_and_the_batch_still_acked)
{
    fx f;
    setup(&f, "inproc://traj2");
    for (int v = 1; v <= 4; v++)
        send_batch(&f, 2, 5, v); /* first step of each is bad */
    send_batch(&f, 2, 1, 0);     /* lag 4 > max_lag 2: stale */
    pump_until(&f, &f.g.stats.steps, 10);
    cr_expect_eq(f.g.stats.invalid, 4);
    cr_expect_eq(f.g.stats.stale, 2);
    cr_expect_eq(f.g.stats.accepted, 4);
    pump_until(&f, &f.t.stats.acked_steps, 2); /* the all-stale batch is acked at once */
    cr_expect_eq(f.t.stats.acked_steps, 2);
    learn(&f, 4);
    pump_until(&f, &f.t.stats.acked_steps, 10);
    cr_expect_eq(f.t.n, 0, "every batch should be acknowledged");
    cr_expect_eq(f.g.stats.accepted + f.g.stats.stale + f.g.stats.invalid, f.t.stats.steps);
    teardown(&f);
}

Test(traj, buffered_steps_go_stale_when_the_policy_moves_on)
{
    fx f;
    setup(&f, "inproc://traj3");
    send_batch(&f, 3, 5, 0);
    pump_until(&f, &f.g.stats.steps, 3);
    ingest_drop_stale(&f.g, f.router, 8);
    cr_expect_eq(f.g.stats.stale, 3);
    cr_expect_eq(f.g.n_steps, 0);
    pump_until(&f, &f.t.stats.acked_steps, 3);
    cr_expect_eq(f.t.n, 0);
    teardown(&f);
}

Test(traj, learner_restart_loses_nothing_and_learns_nothing_twice)
{
    fx f;
    setup(&f, "inproc://traj4");
    for (int i = 0; i < 5; i++)
        send_batch(&f, 2, 5, 0);
    pump_until(&f, &f.g.stats.steps, 10);
    learn(&f, 6); /* batches 1..3 learned from */
    pump_until(&f, &f.t.stats.acked_steps, 6);
    cr_assert_eq(f.t.n, 2);
    /* Save what was acknowledged (as the checkpoint does), then crash:
     * batches 4 and 5 were received but not learned from. */
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
    /* The actor sees the learner come back and resends; an old batch (2)
     * arrives again too, as if its ack had been lost. */
    traj_sender_resend(&f.t, f.dealer);
    pump_until(&f, &f.g.stats.steps, 4);
    cr_expect_eq(f.g.stats.accepted, 4, "batches 4 and 5 must be taken again");
    cr_expect_eq(f.g.stats.duplicates, 0);
    learn(&f, 4);
    pump_until(&f, &f.t.stats.acked_steps, 10);
    cr_expect_eq(f.t.n, 0);
    /* Batch 2 arrives again, as if its ack had been lost: answered as a
     * duplicate, not learned from twice. */
    step_buf b;
    make_step(&b, 0, 5, 0);
    Gtrt__Step *ptr = &b.s;
    Gtrt__TrajBatch tb = GTRT__TRAJ_BATCH__INIT;
    tb.has_seq = 1;
    tb.seq = 2;
    tb.n_steps = 1;
    tb.steps = &ptr;
    wire_slice img = {b.image, sizeof b.image};
    int acks_before = f.acks;
    cr_assert_eq(net_send(f.dealer, NULL, GTRT__MSG_TYPE__MSG_TRAJ_BATCH, &tb.base, 0, &img, 1), 0);
    pump_until(&f, &f.g.stats.duplicates, 1);
    cr_expect_eq(f.g.stats.duplicates, 1);
    cr_expect_eq(f.g.stats.accepted, 4, "a duplicate was learned from (4 since the restart)");
    uint64_t want = (uint64_t)acks_before + 1, have = (uint64_t)f.acks;
    uint64_t end = clock_mono_ms() + 5000;
    while (have < want && clock_mono_ms() < end) {
        uv_run(&f.loop, UV_RUN_NOWAIT);
        have = (uint64_t)f.acks;
    }
    cr_expect_eq(have, want, "the duplicate was not answered");
    teardown(&f);
}

Test(traj, teacher_logprobs_are_checked_and_kept)
{
    step_buf b;
    make_step(&b, 1, 5, 0);
    float tl[4] = {-0.25f, -1.0f, -2.0f, -0.125f};
    b.s.n_teacher_logprob = 4;
    b.s.teacher_logprob = tl;
    wire_slice img = {b.image, sizeof b.image};
    traj_step out;
    const char *why = NULL;
    cr_assert_eq(traj_step_from_pb(&b.s, &img, &LIM, "actor-9", &out, &why), 0, "%s", why);
    cr_expect(out.has_teacher_logprob);
    cr_expect_eq(memcmp(out.teacher_logprob, tl, sizeof tl), 0);
    /* and back onto the wire unchanged */
    uint32_t u32[16];
    Gtrt__Step pb;
    traj_step_to_pb(&out, u32, IMG_C, IMG_H, IMG_W, &pb);
    cr_expect_eq(pb.n_teacher_logprob, 4);
    cr_expect_eq(memcmp(pb.teacher_logprob, tl, sizeof tl), 0);
    traj_step_free(&out);

    b.s.n_teacher_logprob = 3; /* not one per answer token */
    cr_expect_eq(traj_step_from_pb(&b.s, &img, &LIM, "actor-9", &out, &why), GTRT_EINVAL);
    cr_expect_str_eq(why, "teacher logprobs do not match the answer");
    b.s.n_teacher_logprob = 4;
    tl[2] = 0.5f; /* a probability above 1 */
    cr_expect_eq(traj_step_from_pb(&b.s, &img, &LIM, "actor-9", &out, &why), GTRT_EINVAL);
    tl[2] = INFINITY;
    cr_expect_eq(traj_step_from_pb(&b.s, &img, &LIM, "actor-9", &out, &why), GTRT_EINVAL);
    cr_expect_str_eq(why, "teacher logprob not finite or positive");
    b.s.n_teacher_logprob = 0; /* none: a plain PPO step */
    cr_assert_eq(traj_step_from_pb(&b.s, &img, &LIM, "actor-9", &out, &why), 0, "%s", why);
    cr_expect(!out.has_teacher_logprob);
    traj_step_free(&out);
}

Test(traj, guidance_timings_are_checked_and_kept)
{
    step_buf b;
    make_step(&b, 1, 5, 0);
    b.s.has_guide_ms = b.s.has_act_ms = b.s.has_guide_failed = 1;
    b.s.guide_ms = 1.5f;
    b.s.act_ms = 6.0f;
    b.s.guide_failed = 1;
    wire_slice img = {b.image, sizeof b.image};
    traj_step out;
    const char *why = NULL;
    cr_assert_eq(traj_step_from_pb(&b.s, &img, &LIM, "actor-9", &out, &why), 0, "%s", why);
    cr_expect_eq(out.guide_ms, 1.5f);
    cr_expect_eq(out.act_ms, 6.0f);
    cr_expect(out.guide_failed);
    uint32_t u32[16];
    Gtrt__Step pb;
    traj_step_to_pb(&out, u32, IMG_C, IMG_H, IMG_W, &pb);
    cr_expect(pb.guide_ms == 1.5f && pb.act_ms == 6.0f && pb.guide_failed);
    traj_step_free(&out);
    float bad[] = {-1.0f, NAN, INFINITY};
    for (int k = 0; k < 3; k++) {
        b.s.guide_ms = bad[k];
        cr_expect_eq(traj_step_from_pb(&b.s, &img, &LIM, "actor-9", &out, &why), GTRT_EINVAL);
        cr_expect_str_eq(why, "step timings not finite or negative");
        b.s.guide_ms = 0;
        b.s.act_ms = bad[k];
        cr_expect_eq(traj_step_from_pb(&b.s, &img, &LIM, "actor-9", &out, &why), GTRT_EINVAL);
        b.s.act_ms = 0;
    }
}
