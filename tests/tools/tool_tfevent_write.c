/* Writes a run's metrics through the metrics sink, for the independent
 * TensorBoard-format check in tests/python/test_tfevent.py.
 *
 * Usage: tool_tfevent_write RUN_DIR
 * Commits 10 updates (step 1..10, env_steps 128 * step) with these scalars:
 *   train/success_rate  (step - 1) / 9
 *   train/return        -1.5 + 0.25 * step
 *   ppo/clip_fraction   0 (a zero must still be on the wire)
 *   perf/tokens_per_s   1e-3 * step * step
 *   test/ünïcödé        -3.0e38 (a UTF-8 tag and a value near FLT_MAX)
 *   test/nan            NaN, at step 1 only
 * and prints the event file's path and the JSONL path, one per line. */
#include <math.h>
#include <stdio.h>

#include "common/metrics.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s RUN_DIR\n", argv[0]);
        return 2;
    }
    metrics *m;
    err e = {0};
    if (metrics_new(argv[1], NULL, &m, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    int rc = 0;
    for (int step = 1; step <= 10 && rc == 0; step++) {
        metrics_scalar(m, METRICS_SUCCESS_RATE, (step - 1) / 9.0);
        metrics_scalar(m, METRICS_RETURN, -1.5 + 0.25 * step);
        metrics_scalar(m, METRICS_CLIP_FRAC, 0.0);
        metrics_scalar(m, METRICS_TOKENS_PER_S, 1e-3 * step * step);
        metrics_scalar(m, "test/\xc3\xbc" "n\xc3\xaf" "c\xc3\xb6" "d\xc3\xa9", -3.0e38);
        if (step == 1)
            metrics_scalar(m, "test/nan", NAN);
        rc = metrics_commit(m, step, 128 * step, &e);
    }
    if (rc)
        fprintf(stderr, "%s\n", e.msg);
    else
        printf("%s\n%s\n", metrics_tensorboard_path(m), metrics_jsonl_path(m));
    metrics_free(&m);
    return rc ? 1 : 0;
}
