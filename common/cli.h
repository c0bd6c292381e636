/* Command-line parsing shared by every `gtrt` subcommand.
 *
 * Each subcommand declares a table of its own options; cli_parse adds the
 * options every subcommand has (--config FILE.ini, repeatable --set
 * section.key=value, --log-level, --help) and prints a consistent --help.
 * Options are long; -h means --help and -o means --out. */
#ifndef GTRT_CLI_H
#define GTRT_CLI_H

#include "common/config.h"

typedef enum { CLI_FLAG, CLI_STR, CLI_INT, CLI_DOUBLE } cli_kind;

typedef struct cli_opt {
    const char *name;    /* long name without dashes, e.g. "seed" */
    cli_kind kind;       /* CLI_FLAG sets an int to 1 */
    void *dest;          /* int*, const char**, long*, double* by kind */
    const char *metavar; /* e.g. "N" */
    const char *help;
} cli_opt;

typedef struct cli_cmd {
    const char *name;        /* "learner", "env play", ... */
    const char *args;        /* positional arguments for usage, or "" */
    const char *summary;     /* one line */
    const char *description; /* paragraph(s) shown by --help, may be NULL */
} cli_cmd;

#define CLI_MAX_SETS 64

typedef struct cli_common {
    const char *config_path;
    const char *sets[CLI_MAX_SETS];
    int nsets;
    const char *log_level;
} cli_common;

/* Parse argv[1..argc-1] (argv[0] is the subcommand). `opts` ends with a
 * zeroed entry (or is NULL). Positional arguments go to pos[0..*npos-1].
 * Returns 0 to go on, 1 when --help was printed (exit 0), or GTRT_EINVAL
 * after printing the problem and a usage hint to stderr (exit 2). */
int cli_parse(int argc, char **argv, const cli_cmd *cmd, const cli_opt *opts,
              cli_common *common, char **pos, int *npos, int max_pos);

/* Build the configuration from defaults, --config and --set, in that
 * order, and apply --log-level. Prints the error and returns NULL on
 * failure. */
config *cli_config(const cli_common *common);

#endif
