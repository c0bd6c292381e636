/* `gtrt logits`: ask a running teacher how likely an answer is for an
 * env's observation, token by token (or, with --generate, to write one). */
#ifndef GTRT_LOGITS_CMD_H
#define GTRT_LOGITS_CMD_H

int logits_main(int argc, char **argv);

#endif
