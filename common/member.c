/* Registration with the learner and its liveness (see member.h). */
#include "common/member.h"

#include <stdio.h>
#include <string.h>

#include "common/clock.h"

static void member_set_teachers(member *m, Gtrt__PeerInfo **t, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k < MEMBER_MAX_TEACHERS; i++) {
        if (!t[i]->id || !wire_id_valid(t[i]->id) || !t[i]->endpoint)
            continue;
        member_teacher *mt = &m->teachers[k++];
        snprintf(mt->id, sizeof mt->id, "%s", t[i]->id);
        snprintf(mt->endpoint, sizeof mt->endpoint, "%s", t[i]->endpoint);
        mt->version = t[i]->has_model_version ? t[i]->model_version : 0;
    }
    if (k != m->nteachers)
        log_info("learner lists %zu teacher%s alive%s%s", k, k == 1 ? "" : "s",
                 k ? ", first at " : "", k ? m->teachers[0].endpoint : "");
    m->nteachers = k;
}

static void member_heard_learner(member *m, const wire_msg *msg)
{
    m->learner_last_ms = clock_mono_ms();
    if (!m->learner_alive)
        log_info("learner %s is alive", msg->hdr->sender_id);
    m->learner_alive = true;
    snprintf(m->learner_id, sizeof m->learner_id, "%s", msg->hdr->sender_id);
}

/* Only version 0 is a base; anything else in that field is ignored. */
static void member_offer_base(member *m, const Gtrt__CkptAnnounce *a)
{
    if (m->ckpt_base && a && a->has_version && a->version == 0)
        ckpt_fetcher_offer(m->ckpt_base, a);
}

static void member_on_msg(net_sock *sock, const net_route *from, const wire_msg *msg, void *ud)
{
    member *m = ud;
    bool from_learner = msg->hdr->role == GTRT__ROLE__ROLE_LEARNER;
    switch (msg->type) {
    case GTRT__MSG_TYPE__MSG_WELCOME:
        if (!from_learner)
            break;
        member_heard_learner(m, msg);
        if (!m->welcomed)
            log_info("registered with learner %s", msg->hdr->sender_id);
        m->welcomed = true;
        {
            const Gtrt__Welcome *w = (const Gtrt__Welcome *)msg->body;
            member_set_teachers(m, w->teachers, w->n_teachers);
            if (m->ckpt && w->checkpoint)
                ckpt_fetcher_offer(m->ckpt, w->checkpoint);
            member_offer_base(m, w->base_checkpoint);
        }
        return;
    case GTRT__MSG_TYPE__MSG_HEARTBEAT:
        if (!from_learner)
            break;
        member_heard_learner(m, msg);
        {
            const Gtrt__Heartbeat *hb = (const Gtrt__Heartbeat *)msg->body;
            member_set_teachers(m, hb->teachers, hb->n_teachers);
            if (m->ckpt && hb->checkpoint)
                ckpt_fetcher_offer(m->ckpt, hb->checkpoint);
            member_offer_base(m, hb->base_checkpoint);
        }
        return;
    case GTRT__MSG_TYPE__MSG_ERROR: {
        const Gtrt__Error *er = (const Gtrt__Error *)msg->body;
        log_warn("learner says: %s", er->message ? er->message : "(error without message)");
        return;
    }
    default:
        break;
    }
    if (m->on_other)
        m->on_other(sock, from, msg, m->ud);
    else
        svc_unexpected(sock, msg);
}

int member_init(member *m, svc *s, const char *learner_endpoint, net_msg_cb on_other, void *ud,
                err *e)
{
    memset(m, 0, sizeof *m);
    m->s = s;
    m->on_other = on_other;
    m->ud = ud;
    m->timeout_ms = s->heartbeat_ms * (uint64_t)config_int(s->cfg, "net.liveness");
    m->sock = net_sock_new(&s->net, ZMQ_DEALER, "learner", member_on_msg, m, e);
    if (!m->sock)
        return e ? e->code : GTRT_ENET;
    int rc = net_sock_connect(m->sock, learner_endpoint, e);
    if (rc)
        return rc;
    log_info("connecting to learner at %s", learner_endpoint);
    return 0;
}

void member_beat(member *m)
{
    uint64_t now = clock_mono_ms();
    if (m->learner_alive && now > m->learner_last_ms + m->timeout_ms) {
        log_warn("learner %s is gone (silent for %llu ms); will register again when it is back",
                 m->learner_id, (unsigned long long)(now - m->learner_last_ms));
        m->learner_alive = false;
        m->welcomed = false;
    }
    Gtrt__PeerInfo self;
    svc_self_info(m->s, &self);
    if (!m->welcomed) {
        Gtrt__Hello h = GTRT__HELLO__INIT;
        h.peer = &self;
        h.has_heartbeat_ms = 1;
        h.heartbeat_ms = (uint32_t)m->s->heartbeat_ms;
        net_send(m->sock, NULL, GTRT__MSG_TYPE__MSG_HELLO, &h.base, 0, NULL, 0);
        return;
    }
    Gtrt__Heartbeat hb = GTRT__HEARTBEAT__INIT;
    hb.peer = &self;
    net_send(m->sock, NULL, GTRT__MSG_TYPE__MSG_HEARTBEAT, &hb.base, 0, NULL, 0);
}

void member_bye(member *m, const char *reason)
{
    if (!m->sock)
        return;
    Gtrt__Bye b = GTRT__BYE__INIT;
    b.reason = (char *)reason;
    net_send(m->sock, NULL, GTRT__MSG_TYPE__MSG_BYE, &b.base, 0, NULL, 0);
}
