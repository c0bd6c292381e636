/* run.mode (see runmode.h). */
#include "common/runmode.h"

#include <string.h>

static const char *const run_mode_names[] = {"ppo", "gtr", "turbo-sft", "turbo-kl"};

int run_mode_get(const config *cfg, run_mode *out, err *e)
{
    const char *s = config_str(cfg, "run.mode");
    for (int i = 0; i < 4; i++)
        if (strcmp(s, run_mode_names[i]) == 0) {
            *out = (run_mode)i;
            return 0;
        }
    return err_set(e, GTRT_ECONFIG, "run.mode '%s': expected ppo, gtr, turbo-sft or turbo-kl", s);
}

const char *run_mode_name(run_mode m) { return run_mode_names[m]; }

bool run_mode_sft(run_mode m) { return m == RUN_GTR || m == RUN_TURBO_SFT; }

bool run_mode_teacher(run_mode m) { return m == RUN_TURBO_SFT || m == RUN_TURBO_KL; }
