/* The training method a run uses (run.mode), shared by every service:
 * actors decide which guidance to gather, the learner which terms to train,
 * `gtrt up` whether teachers are needed. */
#ifndef GTRT_RUNMODE_H
#define GTRT_RUNMODE_H

#include <stdbool.h>

#include "common/config.h"
#include "common/err.h"

typedef enum run_mode {
    RUN_PPO,       /* RL4VLM: PPO alone */
    RUN_GTR,       /* PPO + SFT on the env oracle's corrected thoughts */
    RUN_TURBO_SFT, /* PPO + SFT on the merged teacher's written thoughts */
    RUN_TURBO_KL,  /* PPO with the teacher's KL on the policy's thoughts in the advantage */
} run_mode;

/* run.mode of `cfg`; a clear GTRT_ECONFIG for an unknown name. */
int run_mode_get(const config *cfg, run_mode *out, err *e);
const char *run_mode_name(run_mode m);
/* Trains an SFT guidance term (gtr, turbo-sft). */
bool run_mode_sft(run_mode m);
/* Needs teacher services (turbo-sft, turbo-kl). */
bool run_mode_teacher(run_mode m);

#endif
