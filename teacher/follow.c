/* Following checkpoints and merging them into the teacher (see follow.h). */
#include "teacher/follow.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"

static void follow_kick(follow *f);

static void follow_ckpt_free(follow_ckpt *c)
{
    free(c->data);
    memset(c, 0, sizeof *c);
}

void follow_init(follow *f, uv_loop_t *loop, const merge_opts *opts, int interval,
                 follow_ready_fn on_ready, void *ud)
{
    memset(f, 0, sizeof *f);
    f->loop = loop;
    f->opts = *opts;
    f->interval = interval < 1 ? 1 : interval;
    f->on_ready = on_ready;
    f->ud = ud;
}

/* ==== taking checkpoints (on the loop) ==== */

void follow_offer(follow *f, uint64_t version, uint8_t *data, size_t len)
{
    if (f->closed) {
        free(data);
        return;
    }
    if (version == 0) {
        if (f->have_base) {
            free(data); /* the base arrived both as base and as latest */
            return;
        }
        f->have_base = true;
        f->base = (follow_ckpt){0, data, len};
        f->st.fetched++;
        follow_kick(f);
        return;
    }
    if (version <= f->newest_taken) {
        f->st.ignored++;
        free(data);
        return;
    }
    if (f->n_queued == FOLLOW_MAX_QUEUED) {
        log_warn("checkpoint v%" PRIu64 " dropped unmerged: %d newer ones are waiting",
                 f->queue[0].version, FOLLOW_MAX_QUEUED);
        follow_ckpt_free(&f->queue[0]);
        memmove(f->queue, f->queue + 1, (FOLLOW_MAX_QUEUED - 1) * sizeof *f->queue);
        f->n_queued--;
        f->st.dropped++;
    }
    f->queue[f->n_queued++] = (follow_ckpt){version, data, len};
    f->newest_taken = version;
    f->st.fetched++;
    follow_kick(f);
}

model *follow_serving(const follow *f, uint64_t *version)
{
    if (version)
        *version = f->serving_version;
    return f->serving;
}

bool follow_swap(follow *f)
{
    if (!f->fresh || f->busy)
        return false;
    model *old = f->serving;
    f->serving = f->fresh;
    f->serving_version = f->fresh_version;
    f->fresh = NULL;
    if (old) {
        model_free(f->spare);
        f->spare = old;
    }
    f->st.swaps++;
    log_info("serving teacher v%" PRIu64, f->serving_version);
    return true;
}

/* ==== the job (libuv's thread pool) ==== */

static void follow_job_log(follow *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void follow_job_log(follow *f, const char *fmt, ...)
{
    if (f->n_job_log >= FOLLOW_MAX_QUEUED + 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->job_log[f->n_job_log++], sizeof f->job_log[0], fmt, ap);
    va_end(ap);
}

/* The base: a model to serve it and the merger that starts from it. */
static int follow_build_base(follow *f, err *e)
{
    const follow_ckpt *b = &f->job_base;
    merge_tset *ts = NULL;
    model *m = NULL;
    int rc = merge_tset_load_buffer(b->data, b->len, "checkpoint v0", &ts, e);
    if (!rc)
        rc = model_load_new_buffer(b->data, b->len, "checkpoint v0", &m, e);
    if (!rc && (rc = merge_new(&f->opts, ts, &f->mg, e)) == 0)
        ts = NULL; /* the merger owns it */
    merge_tset_free(ts);
    if (rc) {
        model_free(m);
        return rc;
    }
    f->mc = m->cfg;
    model_free(f->job_target); /* cannot exist yet; for symmetry */
    f->job_target = m;
    f->job_wrote = true;
    f->job_version = 0;
    return 0;
}

/* Add one fetched checkpoint to the merger, or refuse it. */
static void follow_add(follow *f, const follow_ckpt *c)
{
    char label[32];
    snprintf(label, sizeof label, "v%" PRIu64, c->version);
    merge_tset *ts;
    err e = {0};
    int rc = merge_tset_load_buffer_as(merge_base(f->mg), c->data, c->len, label, &ts, &e);
    if (!rc && (rc = merge_add(f->mg, ts, label, &e)))
        merge_tset_free(ts);
    if (rc) {
        f->job_refused++;
        follow_job_log(f, "checkpoint v%" PRIu64 " refused: %s", c->version, e.msg);
        return;
    }
    f->pending_newest = c->version;
}

/* Copy the merged teacher into a model by tensor name. */
static int follow_copy(model *m, const merge_tset *ts, err *e)
{
    for (int i = 0; i < m->n_tensors; i++) {
        const model_tensor *t = &m->tensors[i];
        const merge_tensor *mt = merge_tset_find(ts, t->name);
        if (!mt || mt->numel != t->numel)
            return err_set(e, GTRT_EINVAL, "merged teacher: tensor %s missing or resized",
                           t->name);
        memcpy(m->params + t->offset, ts->data + mt->offset, t->numel * sizeof(float));
    }
    return 0;
}

static int follow_merge(follow *f, err *e)
{
    int rc = merge_run(f->mg, e);
    if (!rc && !f->job_target)
        rc = model_new(&f->mc, &f->job_target, e);
    if (!rc)
        rc = follow_copy(f->job_target, merge_teacher(f->mg), e);
    if (rc)
        return rc;
    f->job_wrote = true;
    f->job_version = f->pending_newest;
    return 0;
}

static void follow_work_cb(uv_work_t *w)
{
    follow *f = w->data;
    uint64_t t0 = clock_mono_ns();
    err e = {0};
    if (f->job_base.data && follow_build_base(f, &e)) {
        follow_job_log(f, "base checkpoint v0 refused: %s; no teacher until a usable base "
                       "arrives", e.msg);
        return;
    }
    if (!f->mg)
        return;
    for (int i = 0; i < f->n_job; i++)
        follow_add(f, &f->job[i]);
    if (merge_n_pending(f->mg) >= f->interval && follow_merge(f, &e))
        follow_job_log(f, "merge failed: %s", e.msg);
    f->job_ms = (clock_mono_ns() - t0) / 1000000;
}

static void follow_after_cb(uv_work_t *w, int status)
{
    follow *f = w->data;
    f->busy = false;
    for (int i = 0; i < f->n_job_log; i++)
        log_warn("%s", f->job_log[i]);
    if (f->job_base.data && !f->mg)
        f->have_base = false; /* refused: a later offer may bring a usable one */
    follow_ckpt_free(&f->job_base);
    for (int i = 0; i < f->n_job; i++)
        follow_ckpt_free(&f->job[i]);
    f->n_job = 0;
    f->st.refused += (uint64_t)f->job_refused;
    if (f->mg) {
        f->st.pending = (uint64_t)merge_n_pending(f->mg);
        f->st.merged_ckpts = merge_count(f->mg);
    }
    bool wrote = status == 0 && f->job_wrote;
    if (wrote) {
        if (f->job_version > 0) {
            f->st.merges++;
            f->st.last_merge_ms = f->job_ms;
            log_info("merged the teacher up to policy v%" PRIu64 " (%" PRIu64
                     " checkpoints, %s/%s) in %" PRIu64 " ms", f->job_version, f->st.merged_ckpts,
                     merge_method_name(f->opts.method), merge_combine_name(f->opts.combine),
                     f->job_ms);
        }
        f->merged_version = f->job_version;
        f->fresh = f->job_target;
        f->fresh_version = f->job_version;
    } else if (f->job_target && f->job_target != f->fresh) {
        f->spare = f->job_target; /* unused this time */
    }
    f->job_target = NULL;
    if (f->closed)
        return;
    if (wrote && f->on_ready)
        f->on_ready(f->ud);
    follow_kick(f);
}

/* Start a job when there is something to build or merge and none runs. */
static void follow_kick(follow *f)
{
    if (f->busy || f->closed)
        return;
    bool base = f->base.data && !f->mg;
    if (!base && !(f->mg && f->n_queued))
        return;
    f->job_base = base ? f->base : (follow_ckpt){0};
    if (base)
        f->base = (follow_ckpt){0};
    memcpy(f->job, f->queue, (size_t)f->n_queued * sizeof *f->queue);
    f->n_job = f->mg || base ? f->n_queued : 0;
    if (f->n_job)
        f->n_queued = 0;
    /* Write into a model nobody serves from: the unswapped fresh one, or
     * the spare; the worker makes one if there is neither. */
    f->job_target = f->fresh ? f->fresh : f->spare;
    if (f->job_target == f->spare)
        f->spare = NULL;
    f->job_wrote = false;
    f->job_refused = 0;
    f->n_job_log = 0;
    f->busy = true;
    f->work.data = f;
    int rc = uv_queue_work(f->loop, &f->work, follow_work_cb, follow_after_cb);
    if (rc) {
        log_error("cannot start a merge: %s", uv_strerror(rc));
        follow_after_cb(&f->work, rc);
    }
}

/* ==== life cycle ==== */

void follow_close(follow *f) { f->closed = true; }

void follow_deinit(follow *f)
{
    follow_ckpt_free(&f->base);
    follow_ckpt_free(&f->job_base);
    for (int i = 0; i < f->n_queued; i++)
        follow_ckpt_free(&f->queue[i]);
    for (int i = 0; i < f->n_job; i++)
        follow_ckpt_free(&f->job[i]);
    merge_free(f->mg);
    if (f->job_target != f->fresh && f->job_target != f->spare)
        model_free(f->job_target);
    model_free(f->serving);
    model_free(f->fresh);
    model_free(f->spare);
    memset(f, 0, sizeof *f);
}
