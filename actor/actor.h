/* The actor service: registers with the learner, learns where the teachers
 * are, and (as the rollout loop is built) plays episodes with the latest
 * policy and ships them to the learner. Any number may run, started and
 * stopped at any time. */
#ifndef GTRT_ACTOR_H
#define GTRT_ACTOR_H

#include "common/member.h"
#include "common/service.h"

typedef struct actor {
    svc s;
    member m;
} actor;

int actor_init(actor *a, const config *cfg, err *e);

/* `gtrt actor`: run an actor until SIGINT/SIGTERM. */
int actor_main(int argc, char **argv);

#endif
