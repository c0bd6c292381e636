/* Merging policy checkpoints into a teacher, as GTR-Turbo does: the teacher
 * is a weighted merge of the policy's own past checkpoints, kept up to date
 * incrementally.
 *
 * Weights: SMA (every checkpoint so far counts the same) or EMA (teacher <-
 * alpha*new + (1-alpha)*teacher). Combination: linear (a weighted average of
 * the weights) or TIES (Yadav et al. 2023) on task vectors tau = theta -
 * theta_base: per tensor keep the `density` fraction of largest magnitudes,
 * elect each entry's sign by the weighted sum of the trimmed task vectors,
 * average the entries that agree with it (sum w*tau*mask / sum w*mask, 0
 * where none agrees), scale by `lambda` and add back to the base.
 *
 * Each merge has the previous teacher as one input, weighted as SMA/EMA say,
 * and the checkpoints that arrived since the last merge as the others. With
 * k new checkpoints c_1..c_k (oldest first) after n merged so far:
 *   SMA: teacher n, each c_i 1            (linear: the exact running mean);
 *   EMA: teacher (1-a)^k, c_i a(1-a)^(k-i) (linear: exactly k EMA steps).
 * The teacher starts as the base with n = 0, so with SMA the first merge is
 * the new checkpoints alone, and with EMA it is blended with the base
 * (linear) or, under TIES, the base's zero task vector simply never votes.
 * A zero weight drops the input (no work, no effect).
 *
 * Trimming keeps exactly k = round(density * numel) entries of each tensor
 * (at least one when density > 0): those whose |tau| exceeds the k-th
 * largest magnitude, and among the entries equal to it the lowest indices
 * first. The k-th largest is found in O(n), never by sorting: a sample
 * brackets it, one pass counts the entries above the bracket and gathers
 * those inside with their indices, a radix selection finishes (Floyd-Rivest;
 * a missed bracket is detected and that input rescanned). A merger makes
 * that pass over a checkpoint in merge_add, together with the finite check,
 * and over the teacher while merge_run writes it; so per checkpoint
 * merge_add reads it and the base once, and merge_run reads the teacher,
 * the checkpoints and the base once and writes the teacher once.
 *
 * Arithmetic: tau = theta - base in float32. The sign vote: the weighted
 * sum of the trimmed task vectors in double (ties vote +). The disjoint
 * mean in float32: with the weights scaled by the power of two 2^-e that
 * puts the largest in [1, 2), wf_i = float32(w_i 2^-e) (exact for integer
 * SMA weights), num = sum of wf_i tau_i and den = sum of wf_i over the
 * agreeing inputs in input order, and the result base + float32(lambda) *
 * (num / den), or the base where none agrees; every operation rounded to
 * float32. A merge's result so differs from an all-double evaluation of
 * the same inputs by at most one float32 ulp of the result plus
 * (2m + 4) 2^-24 lambda |mean| for m inputs. When a weight is below 2^-60
 * of the largest (float32 products of it could underflow), the mean is
 * taken in double instead and the result rounded to float32 once. Linear:
 * the normalised weighted sum in double, rounded once.
 * tests/python/test_merge_numpy.py restates all of this in NumPy.
 *
 * The loops run as AVX-512, AVX2 or portable C (merge_simd), and split
 * each tensor between merge_set_threads threads; the results are the same
 * bits on every path and thread count (the vector loops vote in float32
 * with an error bound and redo in double whatever the bound leaves open).
 *
 * Memory: the base, the teacher, the pending checkpoints and, for TIES, a
 * gather buffer of 8 bytes per entry of the largest tensor, kept between
 * merges. Sets of a few MB and more ask for transparent huge pages, which
 * make them much cheaper to fill and to free. A merger is used by one
 * thread at a time; merge_run updates the teacher in place, so a service
 * serving queries double-buffers by copying merge_teacher() into its spare
 * model after merge_run returns. */
#ifndef GTRT_MERGE_H
#define GTRT_MERGE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/safetensors.h"

/* ==== tensor sets: named float32 tensors in one allocation ==== */

typedef struct merge_tensor {
    char *name;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t offset, numel; /* in floats, into merge_tset.data */
} merge_tensor;

typedef struct merge_tset {
    int n;
    merge_tensor *t;
    size_t numel; /* all tensors together */
    float *data;  /* numel floats, 64-byte aligned */
    int n_meta;   /* the __metadata__ of the file it came from */
    char **meta_key, **meta_val;
} merge_tset;

/* Describes one tensor for merge_tset_new. */
typedef struct merge_spec {
    const char *name;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
} merge_spec;

/* A zero-filled set with the given tensors, in that order. */
int merge_tset_new(const merge_spec *spec, int n, merge_tset **out, err *e);
/* Every tensor of a safetensors file (float dtypes only, converted to
 * float32), in file order, with its __metadata__. */
int merge_tset_load(const char *path, merge_tset **out, err *e);
int merge_tset_load_buffer(const void *buf, size_t len, const char *name, merge_tset **out,
                           err *e);
/* Load a checkpoint that must have `like`'s architecture, laid out in
 * `like`'s order. Different tensor names, counts or shapes, or different
 * model configuration in __metadata__, are refused with GTRT_EINVAL and a
 * message saying "different architecture". */
int merge_tset_load_as(const merge_tset *like, const char *path, merge_tset **out, err *e);
int merge_tset_load_buffer_as(const merge_tset *like, const void *buf, size_t len,
                              const char *name, merge_tset **out, err *e);
int merge_tset_clone(const merge_tset *src, merge_tset **out, err *e);
void merge_tset_free(merge_tset *ts);
/* 0 when `ts` has exactly `ref`'s tensors (names, shapes, order); else
 * GTRT_EINVAL naming `what` and the first difference. */
int merge_tset_check_layout(const merge_tset *ref, const merge_tset *ts, const char *what,
                            err *e);
/* GTRT_EINVAL naming the first tensor holding a NaN or infinity. */
int merge_tset_check_finite(const merge_tset *ts, const char *what, err *e);
const merge_tensor *merge_tset_find(const merge_tset *ts, const char *name);
const char *merge_tset_meta(const merge_tset *ts, const char *key);
/* Write atomically as float32 safetensors: the set's own metadata, then
 * `extra` (an extra key replaces an own key of the same name). */
int merge_tset_save(const merge_tset *ts, const char *path, const st_kv *extra, int n_extra,
                    err *e);

/* ==== merge options and weights ==== */

typedef enum merge_method { MERGE_SMA, MERGE_EMA } merge_method;
typedef enum merge_combine { MERGE_LINEAR, MERGE_TIES } merge_combine;

typedef struct merge_opts {
    merge_method method;
    merge_combine combine;
    double alpha;   /* EMA weight of new checkpoints, (0, 1] */
    double density; /* TIES: fraction kept, (0, 1] */
    double lambda;  /* TIES: scale of the merged task vector, > 0 */
} merge_opts;

/* SMA, TIES, alpha 0.5, density 0.8, lambda 1. */
void merge_opts_default(merge_opts *o);
int merge_opts_check(const merge_opts *o, err *e);
int merge_method_parse(const char *s, merge_method *out, err *e);
int merge_combine_parse(const char *s, merge_combine *out, err *e);
const char *merge_method_name(merge_method m);
const char *merge_combine_name(merge_combine c);

/* Weights of one incremental merge: w[0] for the previous teacher, w[1..k]
 * for the k new checkpoints (oldest first), after n_merged checkpoints. */
void merge_weights(const merge_opts *o, uint64_t n_merged, int k, double *w);
/* How many entries of an n-entry tensor TIES keeps at `density`. */
size_t merge_keep_count(size_t n, double density);

/* ==== one merge of explicit inputs ==== */

/* out = merge of in[0..n_in-1] (all with base's layout) with weights w
 * (>= 0, not all 0; zero-weight inputs are skipped), by o's combination.
 * `out` may be one of the inputs. Fails only for lack of memory, before
 * writing anything. */
int merge_sets(const merge_opts *o, const merge_tset *base, const merge_tset *const *in,
               const double *w, int n_in, merge_tset *out, err *e);

/* ==== the incremental merger ==== */

typedef struct merger merger;

/* Start from `base` (ownership passes on success): teacher = base, nothing
 * merged yet. The base must hold only finite values. */
int merge_new(const merge_opts *o, merge_tset *base, merger **out, err *e);
void merge_free(merger *m);
/* Queue a checkpoint for the next merge_run; ownership passes on success.
 * A checkpoint with another layout than the base's, or non-finite values,
 * is refused (GTRT_EINVAL) and nothing changes; the caller still owns it.
 * `label` (a file name or version, may be NULL) goes into the provenance. */
int merge_add(merger *m, merge_tset *ckpt, const char *label, err *e);
int merge_n_pending(const merger *m);
/* Fold every pending checkpoint into the teacher (one merge with the
 * previous teacher as an input) and drop them. Nothing pending: no-op. On
 * failure (memory) the teacher and the queue are as they were. */
int merge_run(merger *m, err *e);
/* Split the work of merge_add and merge_run between n threads (1 to 64):
 * the calling thread and n - 1 workers that the merger keeps until
 * merge_free or the next call. The results do not depend on n. */
int merge_set_threads(merger *m, int n, err *e);
const merge_tset *merge_teacher(const merger *m);
const merge_tset *merge_base(const merger *m);
/* Checkpoints folded into the teacher so far. */
uint64_t merge_count(const merger *m);
/* merge_run calls that merged something (the teacher's version). */
uint64_t merge_version(const merger *m);
const merge_opts *merge_options(const merger *m);
/* Write the teacher with the base's metadata plus provenance keys
 * (merge_method, merge_combine, merge_alpha, merge_density, merge_lambda,
 * merge_count, merge_version, merge_sources) and `extra`. */
int merge_save(const merger *m, const char *path, const st_kv *extra, int n_extra, err *e);

/* ==== vector code ==== */

/* The instructions the merge loops use: "avx512", "avx2" or "portable"
 * (plain C), the widest this CPU runs, chosen once. Every path gives the
 * same bits. */
const char *merge_simd(void);
/* Use the path `name` instead (if this CPU runs it), e.g. to compare the
 * paths; not while a merge runs. */
int merge_simd_use(const char *name, err *e);

/* `gtrt merge BASE CKPT... -o OUT.safetensors`: the offline merge. */
int merge_main(int argc, char **argv);

#endif
