/* `gtrt env`: play, draw and solve the card-game environments by hand. */
#ifndef GTRT_ENV_CMD_H
#define GTRT_ENV_CMD_H

/* argv[0] is "env", argv[1] the sub-command (play, render, solve, list).
 * Returns the process exit status: 0 ok, 1 failure, 2 bad usage. */
int actor_env_main(int argc, char **argv);

#endif
