/* Actor service (see actor.h). */
#include "actor/actor.h"

#include "common/cli.h"

static void actor_on_beat(svc *s) { member_beat(&((actor *)s)->m); }
static void actor_on_stop(svc *s) { member_bye(&((actor *)s)->m, "shutdown"); }

int actor_init(actor *a, const config *cfg, err *e)
{
    int rc = svc_init(&a->s, cfg, GTRT__ROLE__ROLE_ACTOR, "actor", config_str(cfg, "actor.id"), e);
    if (rc)
        return rc;
    a->s.on_beat = actor_on_beat;
    a->s.on_stop = actor_on_stop;
    return member_init(&a->m, &a->s, config_str(cfg, "learner.connect"), NULL, NULL, e);
}

int actor_main(int argc, char **argv)
{
    static const cli_cmd cmd = {
        "actor", "", "Run an actor: registers with the learner and rolls out episodes.",
        "Connects to the learner at learner.connect (in any start order), heartbeats\n"
        "and learns the live teachers from it. Start as many as you like, on any host.\n"
        "Stops cleanly on SIGINT or SIGTERM (exit code 0)."};
    cli_common common;
    int rc = cli_parse(argc, argv, &cmd, NULL, &common, NULL, NULL, 0);
    if (rc)
        return rc > 0 ? 0 : 2;
    config *cfg = cli_config(&common);
    if (!cfg)
        return 2;
    actor a = {0};
    err e = {0};
    if (actor_init(&a, cfg, &e)) {
        log_error("%s", e.msg);
        svc_abort(&a.s);
        config_free(cfg);
        return 1;
    }
    rc = svc_run(&a.s);
    config_free(cfg);
    return rc;
}
