/* Run metrics sink: JSONL, TensorBoard and the Prometheus snapshot (see
 * metrics.h). One mutex guards everything, since the learner's update thread
 * commits while the loop thread serves scrapes and counts ingest. */
#include "common/strbuf.h"
#include "common/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/tfevent.h"

typedef enum { METRICS_COUNTER, METRICS_GAUGE } metrics_kind;

typedef struct metrics_staged {
    char name[METRICS_MAX_NAME];
    double value;
} metrics_staged;

/* A Prometheus metric name with its kind, label key and list of series. */
typedef struct metrics_family {
    char name[METRICS_MAX_NAME + 8]; /* with the gtrt_ prefix, sanitized */
    char label[METRICS_MAX_NAME];    /* "" when unlabelled */
    metrics_kind kind;
    int first, last; /* series indices, chained through metrics_series.next */
} metrics_family;

typedef struct metrics_series {
    int family, next;
    char label_value[METRICS_MAX_NAME];
    double value;
} metrics_series;

/* Open addressing over series indices, twice METRICS_MAX_SERIES slots so
 * probes stay short; -1 marks an empty slot. */
enum { METRICS_HASH_SLOTS = 2 * METRICS_MAX_SERIES };

struct metrics {
    pthread_mutex_t mu;
    int jsonl_fd;
    char jsonl_path[4096];
    tfevent_writer *tb;
    int tb_x_is_update; /* TensorBoard's x axis: update step instead of env steps */
    metrics_staged *staged;
    int nstaged;
    metrics_family *families;
    int nfamilies;
    metrics_series *series;
    int nseries;
    int *hash;
    double dropped; /* samples that did not fit a limit; exported as a counter */
    int warned;     /* the first drop is logged, later ones only counted */
};

/* Count a dropped sample; say so once, since it usually is a naming bug. */
static void metrics_drop(metrics *m, const char *name)
{
    m->dropped += 1;
    if (!m->warned++)
        log_warn("metrics: dropped '%s' (reserved name, kind or label clash, or a size limit); "
                 "further drops are counted in gtrt_metrics_dropped_total", name);
}

/* ==== names ==== */

/* Prometheus names allow [a-zA-Z0-9_:]; "train/return" becomes
 * "gtrt_train_return". */
static void metrics_prom_name(char *out, size_t cap, const char *name)
{
    size_t n = (size_t)snprintf(out, cap, "gtrt_%s", name);
    if (n >= cap)
        n = cap - 1;
    for (size_t i = 5; i < n; i++) {
        char c = out[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == ':'))
            out[i] = '_';
    }
}

static void metrics_label_name(char *out, size_t cap, const char *label)
{
    snprintf(out, cap, "%s", label ? label : "");
    for (char *p = out; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_'))
            *p = '_';
    if (out[0] >= '0' && out[0] <= '9')
        out[0] = '_';
}

/* Label values come from the network (actor ids): keep printable ASCII
 * only, so the exposition stays valid UTF-8 whatever a peer sends. */
static void metrics_label_value(char *out, size_t cap, const char *v)
{
    snprintf(out, cap, "%s", v ? v : "");
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
}

static uint32_t metrics_hash_of(int family, const char *label_value)
{
    uint32_t h = 2166136261u ^ (uint32_t)family;
    for (const char *p = label_value; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return h;
}

/* ==== Prometheus families and series (mutex held) ==== */

static int metrics_family_get(metrics *m, const char *name, const char *label, metrics_kind kind)
{
    char pname[METRICS_MAX_NAME + 8], lname[METRICS_MAX_NAME];
    metrics_prom_name(pname, sizeof pname, name);
    metrics_label_name(lname, sizeof lname, label);
    for (int i = 0; i < m->nfamilies; i++) {
        metrics_family *f = &m->families[i];
        if (strcmp(f->name, pname))
            continue;
        /* A name keeps its first kind and label key; anything else would
         * make the exposition contradict itself. */
        return f->kind == kind && !strcmp(f->label, lname) ? i : -1;
    }
    if (m->nfamilies == METRICS_MAX_FAMILIES)
        return -1;
    metrics_family *f = &m->families[m->nfamilies];
    memcpy(f->name, pname, sizeof pname);
    memcpy(f->label, lname, sizeof lname);
    f->kind = kind;
    f->first = f->last = -1;
    return m->nfamilies++;
}

static metrics_series *metrics_series_get(metrics *m, const char *name, const char *label,
                                          const char *label_value, metrics_kind kind)
{
    int fi = metrics_family_get(m, name, label, kind);
    if (fi < 0)
        return NULL;
    char lv[METRICS_MAX_NAME];
    metrics_label_value(lv, sizeof lv, m->families[fi].label[0] ? label_value : "");
    uint32_t slot = metrics_hash_of(fi, lv) % METRICS_HASH_SLOTS;
    for (;; slot = (slot + 1) % METRICS_HASH_SLOTS) {
        int si = m->hash[slot];
        if (si < 0)
            break;
        if (m->series[si].family == fi && !strcmp(m->series[si].label_value, lv))
            return &m->series[si];
    }
    if (m->nseries == METRICS_MAX_SERIES)
        return NULL;
    int si = m->nseries++;
    metrics_series *s = &m->series[si];
    s->family = fi;
    s->next = -1;
    memcpy(s->label_value, lv, sizeof lv);
    s->value = 0;
    m->hash[slot] = si;
    metrics_family *f = &m->families[fi];
    if (f->last >= 0)
        m->series[f->last].next = si;
    else
        f->first = si;
    f->last = si;
    return s;
}

static void metrics_set_locked(metrics *m, metrics_kind kind, const char *name, const char *label,
                               const char *label_value, double v)
{
    metrics_series *s = metrics_series_get(m, name, label, label_value, kind);
    if (!s)
        metrics_drop(m, name);
    else if (kind == METRICS_COUNTER)
        s->value += v;
    else
        s->value = v;
}

void metrics_counter_add(metrics *m, const char *name, const char *label, const char *label_value,
                         double delta)
{
    pthread_mutex_lock(&m->mu);
    metrics_set_locked(m, METRICS_COUNTER, name, label, label_value, delta);
    pthread_mutex_unlock(&m->mu);
}

void metrics_gauge_set(metrics *m, const char *name, const char *label, const char *label_value,
                       double value)
{
    pthread_mutex_lock(&m->mu);
    metrics_set_locked(m, METRICS_GAUGE, name, label, label_value, value);
    pthread_mutex_unlock(&m->mu);
}

/* ==== a growable text buffer ==== */


/* Shortest "%.Ng" that reads back as the same double, so the JSONL file
 * round-trips without printing 0.10000000000000001. */
static void metrics_fmt_double(char *out, size_t cap, double v)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

static void metrics_fmt_prom(char *out, size_t cap, double v)
{
    if (isnan(v))
        snprintf(out, cap, "NaN");
    else if (isinf(v))
        snprintf(out, cap, v > 0 ? "+Inf" : "-Inf");
    else
        metrics_fmt_double(out, cap, v);
}

static void metrics_json_string(strbuf *b, const char *s)
{
    strbuf_printf(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            strbuf_printf(b, "\\%c", *p);
        else if (*p < 0x20)
            strbuf_printf(b, "\\u%04x", *p);
        else
            strbuf_printf(b, "%c", *p);
    }
    strbuf_printf(b, "\"");
}

/* ==== Prometheus exposition ==== */

static void metrics_render_family(strbuf *b, const metrics *m, const metrics_family *f)
{
    strbuf_printf(b, "# TYPE %s %s\n", f->name,
                       f->kind == METRICS_COUNTER ? "counter" : "gauge");
    char num[64];
    for (int si = f->first; si >= 0; si = m->series[si].next) {
        const metrics_series *s = &m->series[si];
        metrics_fmt_prom(num, sizeof num, s->value);
        if (!f->label[0]) {
            strbuf_printf(b, "%s %s\n", f->name, num);
            continue;
        }
        strbuf_printf(b, "%s{%s=\"", f->name, f->label);
        for (const char *p = s->label_value; *p; p++)
            strbuf_printf(b, *p == '"' || *p == '\\' ? "\\%c" : "%c", *p);
        strbuf_printf(b, "\"} %s\n", num);
    }
}

int metrics_prom_text(metrics *m, char **text, size_t *len, err *e)
{
    strbuf b = {0};
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < m->nfamilies; i++)
        metrics_render_family(&b, m, &m->families[i]);
    char num[64];
    metrics_fmt_prom(num, sizeof num, m->dropped);
    strbuf_printf(&b, "# TYPE gtrt_metrics_dropped_total counter\n"
                           "gtrt_metrics_dropped_total %s\n", num);
    pthread_mutex_unlock(&m->mu);
    if (b.oom) {
        free(b.p);
        return err_set(e, GTRT_ENOMEM, "out of memory rendering metrics");
    }
    *text = b.p;
    *len = b.len;
    return 0;
}

static int metrics_prom_render(void *ud, char **body, size_t *len)
{
    return metrics_prom_text(ud, body, len, NULL);
}

int metrics_serve(metrics *m, uv_loop_t *loop, const char *bind, prom_server **out, err *e)
{
    *out = NULL;
    if (!bind || !bind[0])
        return 0;
    int rc = prom_server_start(loop, bind, NULL, metrics_prom_render, m, out, e);
    if (rc == 0)
        log_info("metrics: Prometheus endpoint on %s, port %d, path /metrics", bind,
                 prom_server_port(*out));
    return rc;
}

/* ==== scalars and commits ==== */

static int metrics_reserved(const char *name)
{
    return !strcmp(name, "step") || !strcmp(name, "env_steps") || !strcmp(name, "wall_time");
}

void metrics_scalar(metrics *m, const char *name, double value)
{
    pthread_mutex_lock(&m->mu);
    int i = 0;
    while (i < m->nstaged && strncmp(m->staged[i].name, name, METRICS_MAX_NAME - 1))
        i++;
    if (metrics_reserved(name) || !name[0] || (i == m->nstaged && i == METRICS_MAX_STAGED)) {
        metrics_drop(m, name);
    } else {
        if (i == m->nstaged) {
            snprintf(m->staged[i].name, sizeof m->staged[i].name, "%s", name);
            m->nstaged++;
        }
        m->staged[i].value = value;
    }
    pthread_mutex_unlock(&m->mu);
}

static int metrics_jsonl_write(metrics *m, int64_t step, int64_t env_steps, double wall, err *e)
{
    strbuf b = {0};
    char num[64];
    metrics_fmt_double(num, sizeof num, wall);
    strbuf_printf(&b, "{\"step\":%lld,\"env_steps\":%lld,\"wall_time\":%s", (long long)step,
                       (long long)env_steps, num);
    for (int i = 0; i < m->nstaged; i++) {
        strbuf_printf(&b, ",");
        metrics_json_string(&b, m->staged[i].name);
        if (isfinite(m->staged[i].value))
            metrics_fmt_double(num, sizeof num, m->staged[i].value);
        else
            snprintf(num, sizeof num, "null");
        strbuf_printf(&b, ":%s", num);
    }
    strbuf_printf(&b, "}\n");
    int rc = 0;
    if (b.oom) {
        rc = err_set(e, GTRT_ENOMEM, "out of memory writing %s", m->jsonl_path);
    } else {
        /* One write of the whole line: with O_APPEND the file only ever
         * holds whole lines, or a torn last line after a crash. */
        ssize_t k;
        do
            k = write(m->jsonl_fd, b.p, b.len);
        while (k < 0 && errno == EINTR);
        if (k != (ssize_t)b.len)
            rc = err_set(e, GTRT_EIO, "writing %s: %s", m->jsonl_path,
                         k < 0 ? strerror(errno) : "short write");
    }
    free(b.p);
    return rc;
}

static int metrics_tb_write(metrics *m, int64_t step, int64_t env_steps, double wall, err *e)
{
    tfevent_scalar *v = calloc((size_t)m->nstaged + 1, sizeof *v);
    if (!v)
        return err_set(e, GTRT_ENOMEM, "out of memory");
    for (int i = 0; i < m->nstaged; i++)
        v[i] = (tfevent_scalar){m->staged[i].name, (float)m->staged[i].value};
    int rc = tfevent_write_scalars(m->tb, wall, m->tb_x_is_update ? step : env_steps, v,
                                   (size_t)m->nstaged, e);
    free(v);
    return rc;
}

int metrics_commit(metrics *m, int64_t step, int64_t env_steps, err *e)
{
    double wall = (double)clock_unix_ms() / 1000.0;
    pthread_mutex_lock(&m->mu);
    /* A failing sink must not starve the other: try both, report the first. */
    int rc = 0;
    if (m->jsonl_fd >= 0)
        rc = metrics_jsonl_write(m, step, env_steps, wall, e);
    if (m->tb) {
        err tb_err = {0};
        int tb_rc = metrics_tb_write(m, step, env_steps, wall, &tb_err);
        if (tb_rc && !rc)
            rc = err_set(e, tb_rc, "%s", tb_err.msg);
    }
    for (int i = 0; i < m->nstaged; i++)
        metrics_set_locked(m, METRICS_GAUGE, m->staged[i].name, NULL, NULL, m->staged[i].value);
    metrics_set_locked(m, METRICS_GAUGE, "step", NULL, NULL, (double)step);
    metrics_set_locked(m, METRICS_GAUGE, "env_steps", NULL, NULL, (double)env_steps);
    m->nstaged = 0;
    pthread_mutex_unlock(&m->mu);
    return rc;
}

/* ==== life cycle ==== */

static int metrics_open_files(metrics *m, const char *run_dir, const config *cfg, err *e)
{
    if (mkdir(run_dir, 0755) != 0 && errno != EEXIST)
        return err_set(e, GTRT_EIO, "creating run directory %s: %s", run_dir, strerror(errno));
    int n = snprintf(m->jsonl_path, sizeof m->jsonl_path, "%s/metrics.jsonl", run_dir);
    if (n < 0 || (size_t)n >= sizeof m->jsonl_path)
        return err_set(e, GTRT_ERANGE, "run directory path is too long: %s", run_dir);
    m->jsonl_fd = open(m->jsonl_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (m->jsonl_fd < 0)
        return err_set(e, GTRT_EIO, "opening %s: %s", m->jsonl_path, strerror(errno));
    if (cfg && !config_bool(cfg, "metrics.tensorboard"))
        return 0;
    return tfevent_writer_open(run_dir, (double)clock_unix_ms() / 1000.0, &m->tb, e);
}

static int metrics_read_config(metrics *m, const config *cfg, err *e)
{
    const char *x = cfg ? config_str(cfg, "metrics.tensorboard_x") : "env_steps";
    if (!strcmp(x, "update"))
        m->tb_x_is_update = 1;
    else if (strcmp(x, "env_steps"))
        return err_set(e, GTRT_ECONFIG, "metrics.tensorboard_x = '%s': expected env_steps or update",
                       x);
    return 0;
}

int metrics_new(const char *run_dir, const config *cfg, metrics **out, err *e)
{
    *out = NULL;
    metrics *m = calloc(1, sizeof *m);
    if (!m)
        return err_set(e, GTRT_ENOMEM, "out of memory");
    m->jsonl_fd = -1;
    pthread_mutex_init(&m->mu, NULL);
    m->staged = calloc(METRICS_MAX_STAGED, sizeof *m->staged);
    m->families = calloc(METRICS_MAX_FAMILIES, sizeof *m->families);
    m->series = calloc(METRICS_MAX_SERIES, sizeof *m->series);
    m->hash = malloc(METRICS_HASH_SLOTS * sizeof *m->hash);
    int rc = 0;
    if (!m->staged || !m->families || !m->series || !m->hash)
        rc = err_set(e, GTRT_ENOMEM, "out of memory");
    else
        memset(m->hash, 0xff, METRICS_HASH_SLOTS * sizeof *m->hash);
    if (rc == 0)
        rc = metrics_read_config(m, cfg, e);
    if (rc == 0 && run_dir)
        rc = metrics_open_files(m, run_dir, cfg, e);
    if (rc) {
        metrics_free(&m);
        return rc;
    }
    *out = m;
    return 0;
}

void metrics_free(metrics **pm)
{
    metrics *m = pm ? *pm : NULL;
    if (!m)
        return;
    if (m->jsonl_fd >= 0)
        close(m->jsonl_fd);
    tfevent_writer_free(&m->tb);
    pthread_mutex_destroy(&m->mu);
    free(m->staged);
    free(m->families);
    free(m->series);
    free(m->hash);
    free(m);
    *pm = NULL;
}

const char *metrics_jsonl_path(const metrics *m) { return m->jsonl_fd >= 0 ? m->jsonl_path : NULL; }

const char *metrics_tensorboard_path(const metrics *m) { return m->tb ? tfevent_writer_path(m->tb) : NULL; }
