/* The learner's state on disk, from which `gtrt learner --resume RUN_DIR`
 * continues a stopped or crashed run:
 *
 *   RUN/checkpoints/policy-vNNNNNN.safetensors  the policy of version N
 *   RUN/checkpoints/optim-vNNNNNN.safetensors   AdamW moments and step, the
 *                                               learner's random stream, N
 *   RUN/ingest-state.txt                        the commit record: version N,
 *                                               steps learned, per actor the
 *                                               acknowledged seqs and the
 *                                               settled step counts
 *
 * An update writes its policy and optimizer files first, then replaces the
 * commit record (atomically), and only then acknowledges batches and
 * announces the version. A crash at any point therefore leaves a record that
 * names a version whose files are complete; files of a newer version are
 * the leftovers of an interrupted update and are simply written again. The
 * last `keep` versions are kept, and version 0, the base every merged
 * teacher starts from, always. */
#ifndef GTRT_RESUME_H
#define GTRT_RESUME_H

#include <stdint.h>

#include "common/optim.h"
#include "common/rng.h"
#include "learner/ingest.h"

#define RESUME_RECORD "ingest-state.txt"

/* RUN/checkpoints/policy-vNNNNNN.safetensors and optim-..., into out[n]. */
void resume_policy_path(const char *run_dir, uint64_t v, char *out, size_t n);
void resume_optim_path(const char *run_dir, uint64_t v, char *out, size_t n);

/* Write optim-v`version` (atomic): moments, step and the random stream. */
int resume_save_optim(const char *run_dir, uint64_t version, const optim *o, const rng *r,
                      err *e);
/* Load optim-v`version` into `o` and `r`; refuses a file of another version
 * or of another policy size. */
int resume_load_optim(const char *run_dir, uint64_t version, optim *o, rng *r, err *e);

/* Replace the commit record (temporary file, fsync, rename). */
int resume_save_record(const char *run_dir, uint64_t version, uint64_t env_steps,
                       const ingest *g, err *e);

/* The commit record, read in two steps because the ingest it fills can only
 * be set up once the policy (and so the step limits) is loaded. */
typedef struct resume_record {
    FILE *f;
    uint64_t version, env_steps;
} resume_record;
/* Check that `run_dir` can be resumed and read the record's header. */
int resume_open(const char *run_dir, resume_record *r, err *e);
/* Read the rest into `g` (set up, empty) and close; checks that the steps
 * learned add up. */
int resume_read_ingest(resume_record *r, const char *run_dir, ingest *g, err *e);
void resume_close(resume_record *r);

/* The version named by RUN/ingest-state.txt, or -1 when there is none. */
int64_t resume_recorded_version(const char *run_dir);

/* Take RUN/learner.lock (flock, released when the process ends, however it
 * ends): two learners writing one run directory would corrupt it. Returns
 * the descriptor to keep open, or -1 with the holder's pid in the message. */
int resume_lock(const char *run_dir, err *e);

/* Delete policy and optimizer files of versions 1 .. version - keep. */
void resume_prune(const char *run_dir, uint64_t version, int keep);

#endif
