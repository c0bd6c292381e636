/* Run metrics: one sink for the learner's (and actors') numbers.
 *
 * Two kinds of numbers go in:
 *  - per-update scalars, staged with metrics_scalar and written together by
 *    metrics_commit(step, env_steps) to RUN_DIR/metrics.jsonl (one JSON
 *    object per commit, one write(2) per line, so a crash loses at most the
 *    line being written), to TensorBoard event files in RUN_DIR, and to the
 *    Prometheus snapshot as gauges holding the last committed value;
 *  - live Prometheus counters and gauges, optionally with one label (e.g.
 *    steps received per actor), which only the Prometheus snapshot shows.
 * The snapshot is served by a prom_server (common/prom.h) attached to the
 * owning service's libuv loop with metrics_serve, or rendered on demand with
 * metrics_prom_text. Every function may be called from any thread (the PPO
 * update runs off the loop); the Prometheus endpoint renders on the loop.
 *
 * metrics.jsonl line:
 *   {"step":12,"env_steps":3072,"wall_time":1712345678.25,"train/return":-0.5,...}
 * step is the learner's update (policy version), env_steps the environment
 * steps learned from so far, wall_time Unix seconds; non-finite values are
 * written as null. `gtrt plot` draws these files against env_steps. */
#ifndef GTRT_METRICS_H
#define GTRT_METRICS_H

#include <stdint.h>
#include <uv.h>

#include "common/config.h"
#include "common/err.h"
#include "common/prom.h"

/* ==== scalar names ====
 * Names are "group/name": TensorBoard groups curves by the part before '/',
 * Prometheus shows them as gtrt_<group>_<name>. The first four are the
 * panels of `gtrt plot`; the rest are the names the learner uses so that
 * runs stay comparable. */
#define METRICS_SUCCESS_RATE "train/success_rate"       /* episodes won / episodes finished */
#define METRICS_RETURN "train/return"                   /* mean undiscounted episode return */
#define METRICS_THOUGHT_ENTROPY "train/thought_entropy" /* mean per-token entropy, thought tokens */
#define METRICS_TEACHER_KL "train/teacher_kl"           /* mean KL estimate over guided steps */
#define METRICS_KL_P50 "guide/kl_p50"                   /* its distribution over the steps */
#define METRICS_KL_P90 "guide/kl_p90"
#define METRICS_KL_MAX "guide/kl_max"
#define METRICS_GUIDED_SHARE "guide/guided_share"       /* steps that had teacher logprobs */
#define METRICS_SFT_LOSS "guide/sft_loss"               /* SFT guidance loss (non-action tokens) */
#define METRICS_SFT_SAMPLES "guide/sft_samples"         /* aggregated SFT samples kept */
#define METRICS_CORRECTED_SHARE "guide/corrected_share" /* answers the corrector changed */
#define METRICS_GUIDE_MS "guide/time_ms_per_step"     /* oracle or teacher time per step */
#define METRICS_GUIDE_TIME_SHARE "guide/time_share"   /* of the actors' time per step */
#define METRICS_TEACHER_FAILED "guide/teacher_failed_share" /* steps whose teacher did not answer */
#define METRICS_TEACHER_LAG "guide/teacher_version_lag" /* policy - teacher version, guided steps */
#define METRICS_EPISODE_LENGTH "train/episode_length"   /* mean turns per finished episode */
#define METRICS_FORMAT_VALID "train/format_valid_rate"  /* answers that parsed as valid JSON */
#define METRICS_APPROX_KL "ppo/approx_kl"               /* KL to the policy that acted */
#define METRICS_CLIP_FRAC "ppo/clip_fraction"
#define METRICS_VALUE_LOSS "ppo/value_loss"
#define METRICS_POLICY_LOSS "ppo/policy_loss"
#define METRICS_EXPLAINED_VAR "ppo/explained_variance"
#define METRICS_GRAD_NORM "ppo/grad_norm"
#define METRICS_LR "ppo/learning_rate"
#define METRICS_LAG_MEAN "ingest/policy_lag_mean"
#define METRICS_LAG_MAX "ingest/policy_lag_max"
#define METRICS_STEPS_RECEIVED "ingest/steps_received"
#define METRICS_STEPS_STALE "ingest/steps_stale_dropped"
#define METRICS_STEPS_DUPLICATE "ingest/steps_duplicate"
#define METRICS_STEPS_REJECTED "ingest/steps_rejected"
#define METRICS_ENV_STEPS_PER_S "perf/env_steps_per_s"
#define METRICS_TOKENS_PER_S "perf/tokens_per_s"
#define METRICS_UPDATE_S "perf/update_s"

/* Limits that keep untrusted label values (actor ids) from growing memory
 * without bound; what does not fit is dropped and counted in
 * gtrt_metrics_dropped_total. */
enum {
    METRICS_MAX_NAME = 128,     /* longer names and label values are cut */
    METRICS_MAX_STAGED = 512,   /* distinct scalars per commit */
    METRICS_MAX_FAMILIES = 256, /* distinct Prometheus metric names */
    METRICS_MAX_SERIES = 4096,  /* (name, label value) pairs */
};

typedef struct metrics metrics;

/* Open a sink. With a run_dir (created if missing) it appends to
 * run_dir/metrics.jsonl and, when metrics.tensorboard is true, writes a new
 * TensorBoard event file there; with run_dir NULL it only keeps the
 * Prometheus numbers. cfg may be NULL for the defaults. */
int metrics_new(const char *run_dir, const config *cfg, metrics **out, err *e);
/* Close the files and free; sets *m to NULL. Close any prom_server from
 * metrics_serve first. NULL-safe. */
void metrics_free(metrics **m);

/* Stage a scalar for the next commit; the same name twice keeps the last
 * value. "step", "env_steps" and "wall_time" are reserved. */
void metrics_scalar(metrics *m, const char *name, double value);
/* Write every staged scalar with this step and env_steps to the JSONL
 * file, TensorBoard and the Prometheus gauges, then clear the stage. */
int metrics_commit(metrics *m, int64_t step, int64_t env_steps, err *e);

/* Prometheus counter gtrt_<name> (by convention ending in _total) += delta.
 * label/label_value may be NULL for an unlabelled series; a name keeps the
 * kind and label key of its first use. */
void metrics_counter_add(metrics *m, const char *name, const char *label,
                         const char *label_value, double delta);
/* Prometheus gauge gtrt_<name> = value. */
void metrics_gauge_set(metrics *m, const char *name, const char *label,
                       const char *label_value, double value);

/* The Prometheus text exposition (format 0.0.4) as a malloc'd string. */
int metrics_prom_text(metrics *m, char **text, size_t *len, err *e);

/* Serve metrics_prom_text as GET /metrics on `bind` ("HOST:PORT", the
 * metrics.prometheus_bind key) from `loop`. An empty bind means off:
 * returns 0 with *out NULL. Call on the loop's thread; close the server
 * with prom_server_close on that thread before metrics_free. */
int metrics_serve(metrics *m, uv_loop_t *loop, const char *bind, prom_server **out, err *e);

/* Paths of the files being written, NULL when not written. */
const char *metrics_jsonl_path(const metrics *m);
const char *metrics_tensorboard_path(const metrics *m);

#endif
