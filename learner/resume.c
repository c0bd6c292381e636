/* The learner's resumable state on disk (see resume.h). */
#include "learner/resume.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

#define RESUME_FORMAT "gtrt-learner-state 1"

/* ==== paths ==== */

void resume_policy_path(const char *run_dir, uint64_t v, char *out, size_t n)
{
    snprintf(out, n, "%s/checkpoints/policy-v%06" PRIu64 ".safetensors", run_dir, v);
}

void resume_optim_path(const char *run_dir, uint64_t v, char *out, size_t n)
{
    snprintf(out, n, "%s/checkpoints/optim-v%06" PRIu64 ".safetensors", run_dir, v);
}

/* ==== optimizer files ==== */

int resume_save_optim(const char *run_dir, uint64_t version, const optim *o, const rng *r,
                      err *e)
{
    char path[1024], vs[32];
    resume_optim_path(run_dir, version, path, sizeof path);
    snprintf(vs, sizeof vs, "%" PRIu64, version);
    /* The random stream's words, stored bit for bit as I64. */
    st_entry rs = {.name = "learner.rng", .dtype = ST_I64, .ndim = 1, .shape = {4}, .data = r->s};
    st_kv meta[] = {{"policy_version", vs}};
    return optim_save(o, path, &rs, 1, meta, 1, e);
}

int resume_load_optim(const char *run_dir, uint64_t version, optim *o, rng *r, err *e)
{
    char path[1024], vs[32];
    resume_optim_path(run_dir, version, path, sizeof path);
    snprintf(vs, sizeof vs, "%" PRIu64, version);
    st_file *f;
    int rc = st_open(path, &f, e);
    if (rc)
        return rc;
    const char *fv = st_meta(f, "policy_version");
    const st_tensor *t = st_find(f, "learner.rng");
    if (!fv || strcmp(fv, vs))
        rc = err_set(e, GTRT_EPARSE, "%s: optimizer state of version %s, expected %s", path,
                     fv ? fv : "(none)", vs);
    else if (!t || t->dtype != ST_I64 || t->ndim != 1 || t->shape[0] != 4)
        rc = err_set(e, GTRT_EPARSE, "%s: no learner.rng (I64 [4])", path);
    else if (!(rc = optim_load(o, f, e)))
        memcpy(r->s, t->data, sizeof r->s);
    st_close(f);
    return rc;
}

/* ==== the commit record ==== */

int resume_save_record(const char *run_dir, uint64_t version, uint64_t env_steps,
                       const ingest *g, err *e)
{
    char path[1024], tmp[1040];
    snprintf(path, sizeof path, "%s/" RESUME_RECORD, run_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return err_set(e, GTRT_EIO, "%s: %s", tmp, strerror(errno));
    fprintf(f, RESUME_FORMAT "\npolicy_version %" PRIu64 "\nenv_steps_learned %" PRIu64 "\n",
            version, env_steps);
    int rc = ingest_save(g, f);
    if (fflush(f) || fsync(fileno(f)))
        rc = GTRT_EIO;
    if (fclose(f))
        rc = GTRT_EIO;
    if (rc || rename(tmp, path)) {
        unlink(tmp);
        return err_set(e, GTRT_EIO, "%s: cannot write the learner state (%s)", path,
                       strerror(errno));
    }
    return 0;
}

int resume_open(const char *run_dir, resume_record *r, err *e)
{
    memset(r, 0, sizeof *r);
    struct stat st;
    if (stat(run_dir, &st))
        return err_set(e, GTRT_ENOTFOUND, "cannot resume %s: %s", run_dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return err_set(e, GTRT_ENOTFOUND, "cannot resume %s: not a directory", run_dir);
    char path[1024];
    snprintf(path, sizeof path, "%s/" RESUME_RECORD, run_dir);
    r->f = fopen(path, "r");
    if (!r->f)
        return err_set(e, GTRT_ENOTFOUND,
                       "cannot resume %s: no %s (%s); it is not a learner's run directory, or its "
                       "learner never started",
                       run_dir, RESUME_RECORD, strerror(errno));
    char head[64];
    if (!fgets(head, sizeof head, r->f) || strcmp(head, RESUME_FORMAT "\n") ||
        fscanf(r->f, "policy_version %" SCNu64 " env_steps_learned %" SCNu64, &r->version,
               &r->env_steps) != 2) {
        resume_close(r);
        return err_set(e, GTRT_EPARSE,
                       "cannot resume %s: %s is not a \"" RESUME_FORMAT "\" record (written by "
                       "another gtrt version?)",
                       run_dir, path);
    }
    return 0;
}

int resume_read_ingest(resume_record *r, const char *run_dir, ingest *g, err *e)
{
    int rc = ingest_load(g, r->f, e);
    resume_close(r);
    if (rc) {
        err_prefix(e, "cannot resume %s: %s/" RESUME_RECORD, run_dir, run_dir);
        return rc;
    }
    if (g->stats.settled.learned != r->env_steps)
        return err_set(e, GTRT_EPARSE,
                       "cannot resume %s: " RESUME_RECORD " says %" PRIu64
                       " steps were learned from, its actors add up to %" PRIu64,
                       run_dir, r->env_steps, g->stats.settled.learned);
    return 0;
}

void resume_close(resume_record *r)
{
    if (r->f)
        fclose(r->f);
    r->f = NULL;
}

int64_t resume_recorded_version(const char *run_dir)
{
    resume_record r;
    if (resume_open(run_dir, &r, NULL))
        return -1;
    resume_close(&r);
    return r.version > INT64_MAX ? -1 : (int64_t)r.version;
}

/* ==== one learner per run directory ==== */

int resume_lock(const char *run_dir, err *e)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/learner.lock", run_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        err_set(e, GTRT_EIO, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        char pid[32] = "?";
        ssize_t n = read(fd, pid, sizeof pid - 1);
        pid[n > 0 ? n : 1] = 0;
        close(fd);
        err_set(e, GTRT_ESTATE, "%s is in use by another learner (pid %s)", run_dir, pid);
        return -1;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld", (long)getpid());
    if (ftruncate(fd, 0) || write(fd, pid, (size_t)n) != n)
        log_warn("%s: cannot write our pid", path);
    return fd;
}

/* ==== keeping the last K ==== */

/* The version of "policy-vN.safetensors" / "optim-vN.safetensors"; false for
 * any other name (temporary files included). */
static bool resume_parse_name(const char *name, uint64_t *v)
{
    const char *p = !strncmp(name, "policy-v", 8) ? name + 8
                    : !strncmp(name, "optim-v", 7) ? name + 7
                                                   : NULL;
    if (!p || *p < '0' || *p > '9')
        return false;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(p, &end, 10);
    if (errno || strcmp(end, ".safetensors"))
        return false;
    *v = x;
    return true;
}

void resume_prune(const char *run_dir, uint64_t version, int keep)
{
    if (keep < 1 || version <= (uint64_t)keep)
        return;
    char dir[1024], path[1400];
    snprintf(dir, sizeof dir, "%s/checkpoints", run_dir);
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    uint64_t v;
    while ((de = readdir(d)))
        if (resume_parse_name(de->d_name, &v) && v > 0 && v <= version - (uint64_t)keep) {
            snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
            if (unlink(path))
                log_warn("cannot delete %s: %s", path, strerror(errno));
        }
    closedir(d);
}
