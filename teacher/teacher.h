/* The teacher service: registers with the learner, binds a ROUTER that
 * anyone may query (status now; teacher logits and thought generation as
 * the merged-checkpoint teacher is built), and follows the learner. */
#ifndef GTRT_TEACHER_H
#define GTRT_TEACHER_H

#include "common/member.h"
#include "common/service.h"

typedef struct teacher {
    svc s;
    member m;
    net_sock *router;
} teacher;

int teacher_init(teacher *t, const config *cfg, err *e);

/* `gtrt teacher`: run a teacher until SIGINT/SIGTERM. */
int teacher_main(int argc, char **argv);

#endif
