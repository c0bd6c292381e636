/* The `gtrt` command: one executable, one subcommand per job. Each
 * subcommand's entry point lives with the role it belongs to. */
#include <stdio.h>
#include <string.h>

#include "actor/actor.h"
#include "actor/env_cmd.h"
#include "common/plot.h"
#include "common/status.h"
#include "learner/eval.h"
#include "learner/learner.h"
#include "learner/sft.h"
#include "teacher/logits_cmd.h"
#include "teacher/merge.h"
#include "teacher/teacher.h"

int up_main(int argc, char **argv);
int config_main(int argc, char **argv);
int keygen_main(int argc, char **argv);

typedef struct gtrt_cmd {
    const char *name;
    int (*main)(int argc, char **argv);
    const char *summary;
} gtrt_cmd;

static const gtrt_cmd gtrt_cmds[] = {
    {"up", up_main, "start a learner, teachers and actors on this machine"},
    {"learner", learner_main, "run the learner service"},
    {"teacher", teacher_main, "run a teacher service"},
    {"actor", actor_main, "run an actor service"},
    {"status", status_main, "show which actors and teachers are alive"},
    {"env", actor_env_main, "play, draw and solve the card-game envs"},
    {"sft", sft_main, "warm-start a policy on oracle answers"},
    {"eval", eval_main, "measure a policy's success rate on an env"},
    {"merge", merge_main, "merge checkpoints into a teacher (SMA/EMA, linear/TIES)"},
    {"logits", logits_main, "ask a teacher for an answer's token logprobs (or to write one)"},
    {"plot", plot_main, "draw learning curves of runs into an SVG"},
    {"config", config_main, "print the effective configuration or every key"},
    {"keygen", keygen_main, "write CURVE key pairs for securing the sockets"},
    {0},
};

static void gtrt_usage(FILE *f)
{
    fprintf(f, "usage: gtrt <command> [options]\n\n"
               "GTR-Turbo multi-turn RL for vision-language agents: actors, a learner and\n"
               "teachers that talk over ZeroMQ.\n\ncommands:\n");
    for (const gtrt_cmd *c = gtrt_cmds; c->name; c++)
        fprintf(f, "  %-10s %s\n", c->name, c->summary);
    fprintf(f, "\nEvery command takes --config FILE.ini, --set section.key=value and --help.\n"
               "gtrt --version prints the version.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        gtrt_usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--version") || !strcmp(name, "version")) {
        printf("gtrt %s (wire schema 1)\n", GTRT_VERSION);
        return 0;
    }
    if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
        gtrt_usage(stdout);
        return 0;
    }
    for (const gtrt_cmd *c = gtrt_cmds; c->name; c++)
        if (!strcmp(c->name, name))
            return c->main(argc - 1, argv + 1);
    fprintf(stderr, "gtrt: unknown command '%s'\n\n", name);
    gtrt_usage(stderr);
    return 2;
}
