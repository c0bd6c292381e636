/* Metrics sink: metrics.jsonl lines parse and round-trip, TensorBoard
 * events mirror them, and the Prometheus snapshot shows counters, gauges and
 * labels with bounded memory. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/test_util.h"
#include "common/metrics.h"
#include "common/tfevent.h"
#include "tensorboard.pb-c.h"


/* Every line of the file, parsed; asserts each one is a JSON object. */
static int read_lines(const char *path, cJSON **out, int max)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    char *line = NULL;
    size_t cap = 0;
    int n = 0;
    while (getline(&line, &cap, f) >= 0) {
        cr_assert_lt(n, max);
        cr_assert_eq(line[strlen(line) - 1], '\n', "every line ends with a newline");
        out[n] = cJSON_Parse(line);
        cr_assert(cJSON_IsObject(out[n]), "not a JSON object: %s", line);
        n++;
    }
    free(line);
    fclose(f);
    return n;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    cr_assert(cJSON_IsNumber(v), "key %s missing or not a number", k);
    return v->valuedouble;
}

static char *prom(metrics *m)
{
    char *t;
    size_t len;
    err e = {0};
    cr_assert_eq(metrics_prom_text(m, &t, &len, &e), 0, "%s", e.msg);
    cr_assert_eq(strlen(t), len);
    return t;
}

/* ==== JSONL ==== */

Test(metrics, jsonl_lines_parse_and_values_round_trip)
{
    char *dir = tmpdir();
    metrics *m;
    err e = {0};
    cr_assert_eq(metrics_new(dir, NULL, &m, &e), 0, "%s", e.msg);
    const double vals[] = {0.1, 1.0 / 3.0, -2.5, 1e-300, 123456789.123456789, 0, -0.0, 5e300};
    enum { NV = sizeof vals / sizeof vals[0] };
    for (int step = 1; step <= 3; step++) {
        metrics_scalar(m, METRICS_SUCCESS_RATE, step / 4.0);
        for (int i = 0; i < NV; i++) {
            char name[32];
            snprintf(name, sizeof name, "test/v%d", i);
            metrics_scalar(m, name, vals[i] * step);
        }
        cr_assert_eq(metrics_commit(m, step, step * 1000LL, &e), 0, "%s", e.msg);
    }
    cJSON *lines[8];
    int n = read_lines(metrics_jsonl_path(m), lines, 8);
    cr_assert_eq(n, 3);
    for (int i = 0; i < n; i++) {
        int step = i + 1;
        cr_expect_eq(num(lines[i], "step"), step);
        cr_expect_eq(num(lines[i], "env_steps"), step * 1000);
        cr_expect_gt(num(lines[i], "wall_time"), 1.6e9, "wall time in Unix seconds");
        cr_expect_eq(num(lines[i], METRICS_SUCCESS_RATE), step / 4.0);
        for (int k = 0; k < NV; k++) {
            char name[32];
            snprintf(name, sizeof name, "test/v%d", k);
            cr_expect_eq(num(lines[i], name), vals[k] * step, "%s exact round trip", name);
        }
        cJSON_Delete(lines[i]);
    }
    metrics_free(&m);
    cr_expect_null(m);
    rmtree(dir);
}

Test(metrics, last_value_wins_and_stage_clears)
{
    char *dir = tmpdir();
    metrics *m;
    err e = {0};
    cr_assert_eq(metrics_new(dir, NULL, &m, &e), 0);
    metrics_scalar(m, METRICS_RETURN, 1);
    metrics_scalar(m, METRICS_RETURN, 2);
    cr_assert_eq(metrics_commit(m, 1, 10, &e), 0);
    cr_assert_eq(metrics_commit(m, 2, 20, &e), 0);
    cJSON *lines[4];
    cr_assert_eq(read_lines(metrics_jsonl_path(m), lines, 4), 2);
    cr_expect_eq(num(lines[0], METRICS_RETURN), 2);
    cr_expect_null(cJSON_GetObjectItemCaseSensitive(lines[1], METRICS_RETURN),
                   "a commit only holds what was staged since the last one");
    cJSON_Delete(lines[0]);
    cJSON_Delete(lines[1]);
    metrics_free(&m);
    rmtree(dir);
}

Test(metrics, non_finite_is_null_and_names_are_escaped)
{
    char *dir = tmpdir();
    metrics *m;
    err e = {0};
    cr_assert_eq(metrics_new(dir, NULL, &m, &e), 0);
    metrics_scalar(m, "x/nan", NAN);
    metrics_scalar(m, "x/inf", INFINITY);
    metrics_scalar(m, "odd \"name\"\\\n", 7);
    metrics_scalar(m, "step", 99); /* reserved: dropped */
    cr_assert_eq(metrics_commit(m, 4, 40, &e), 0);
    cJSON *lines[2];
    cr_assert_eq(read_lines(metrics_jsonl_path(m), lines, 2), 1);
    cr_expect(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(lines[0], "x/nan")));
    cr_expect(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(lines[0], "x/inf")));
    cr_expect_eq(num(lines[0], "odd \"name\"\\\n"), 7);
    cr_expect_eq(num(lines[0], "step"), 4, "a scalar cannot override the step");
    cJSON_Delete(lines[0]);
    char *t = prom(m);
    cr_expect(strstr(t, "gtrt_metrics_dropped_total 1\n") != NULL, "%s", t);
    cr_expect(strstr(t, "gtrt_x_nan NaN\n") != NULL, "%s", t);
    cr_expect(strstr(t, "gtrt_x_inf +Inf\n") != NULL, "%s", t);
    free(t);
    metrics_free(&m);
    rmtree(dir);
}

Test(metrics, reopening_appends)
{
    char *dir = tmpdir();
    err e = {0};
    for (int run = 0; run < 2; run++) {
        metrics *m;
        cr_assert_eq(metrics_new(dir, NULL, &m, &e), 0);
        metrics_scalar(m, METRICS_RETURN, run);
        cr_assert_eq(metrics_commit(m, run + 1, 0, &e), 0);
        metrics_free(&m);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    cJSON *lines[4];
    cr_assert_eq(read_lines(path, lines, 4), 2);
    cr_expect_eq(num(lines[1], "step"), 2);
    cJSON_Delete(lines[0]);
    cJSON_Delete(lines[1]);
    rmtree(dir);
}

Test(metrics, run_dir_that_cannot_be_created_fails)
{
    metrics *m;
    err e = {0};
    cr_expect_eq(metrics_new("/nonexistent/gtrt/run", NULL, &m, &e), GTRT_EIO);
    cr_expect_null(m);
    cr_expect(strstr(e.msg, "/nonexistent/gtrt/run") != NULL, "%s", e.msg);
}

/* ==== TensorBoard ==== */

static Tensorboard__Event *next_event(FILE *f)
{
    uint8_t *data;
    size_t len;
    err e = {0};
    cr_assert_eq(tfevent_record_read(f, 1 << 20, &data, &len, &e), 0, "%s", e.msg);
    Tensorboard__Event *ev = tensorboard__event__unpack(NULL, len, data);
    free(data);
    cr_assert_not_null(ev);
    return ev;
}

static void check_tensorboard(const char *x_axis, int64_t want_step)
{
    char *dir = tmpdir();
    config *cfg = config_new();
    char set[64];
    snprintf(set, sizeof set, "metrics.tensorboard_x=%s", x_axis);
    err e = {0};
    cr_assert_eq(config_set(cfg, set, &e), 0, "%s", e.msg);
    metrics *m;
    cr_assert_eq(metrics_new(dir, cfg, &m, &e), 0, "%s", e.msg);
    metrics_scalar(m, METRICS_SUCCESS_RATE, 0.75);
    metrics_scalar(m, METRICS_THOUGHT_ENTROPY, 1.5);
    cr_assert_eq(metrics_commit(m, 7, 4096, &e), 0);
    const char *tb = metrics_tensorboard_path(m);
    cr_assert_not_null(tb);
    cr_expect(strstr(tb, "/events.out.tfevents.") != NULL, "%s", tb);
    FILE *f = fopen(tb, "rb");
    cr_assert_not_null(f);
    Tensorboard__Event *ev = next_event(f);
    cr_expect_str_eq(ev->file_version, "brain.Event:2");
    tensorboard__event__free_unpacked(ev, NULL);
    ev = next_event(f);
    cr_expect_eq(ev->step, want_step);
    cr_assert_eq(ev->summary->n_value, 2);
    cr_expect_str_eq(ev->summary->value[0]->tag, METRICS_SUCCESS_RATE);
    cr_expect_eq(ev->summary->value[0]->simple_value, 0.75f);
    cr_expect_str_eq(ev->summary->value[1]->tag, METRICS_THOUGHT_ENTROPY);
    cr_expect_eq(ev->summary->value[1]->simple_value, 1.5f);
    tensorboard__event__free_unpacked(ev, NULL);
    fclose(f);
    metrics_free(&m);
    config_free(cfg);
    rmtree(dir);
}

Test(metrics, tensorboard_step_is_env_steps_by_default) { check_tensorboard("env_steps", 4096); }
Test(metrics, tensorboard_step_can_be_the_update) { check_tensorboard("update", 7); }

Test(metrics, tensorboard_can_be_off_and_bad_axis_is_refused)
{
    char *dir = tmpdir();
    config *cfg = config_new();
    err e = {0};
    cr_assert_eq(config_set(cfg, "metrics.tensorboard=false", &e), 0, "%s", e.msg);
    metrics *m;
    cr_assert_eq(metrics_new(dir, cfg, &m, &e), 0, "%s", e.msg);
    cr_expect_null(metrics_tensorboard_path(m));
    cr_expect_not_null(metrics_jsonl_path(m));
    metrics_free(&m);
    cr_assert_eq(config_set(cfg, "metrics.tensorboard_x=wall", &e), 0);
    cr_expect_eq(metrics_new(dir, cfg, &m, &e), GTRT_ECONFIG);
    cr_expect(strstr(e.msg, "tensorboard_x") != NULL, "%s", e.msg);
    config_free(cfg);
    rmtree(dir);
}

/* ==== Prometheus ==== */

Test(metrics, prometheus_counters_gauges_and_labels)
{
    metrics *m;
    err e = {0};
    cr_assert_eq(metrics_new(NULL, NULL, &m, &e), 0);
    cr_expect_null(metrics_jsonl_path(m));
    metrics_counter_add(m, "steps_received_total", "actor", "actor-a", 3);
    metrics_counter_add(m, "steps_received_total", "actor", "actor-b", 1);
    metrics_counter_add(m, "steps_received_total", "actor", "actor-a", 2);
    metrics_gauge_set(m, "policy_version", NULL, NULL, 12);
    metrics_gauge_set(m, "policy_version", NULL, NULL, 13);
    metrics_counter_add(m, "steps_received_total", "actor", "evil\"id\\\n\x01", 1);
    metrics_scalar(m, METRICS_SUCCESS_RATE, 0.5);
    cr_assert_eq(metrics_commit(m, 3, 300, &e), 0);
    char *t = prom(m);
    cr_expect(strstr(t, "# TYPE gtrt_steps_received_total counter\n"
                        "gtrt_steps_received_total{actor=\"actor-a\"} 5\n"
                        "gtrt_steps_received_total{actor=\"actor-b\"} 1\n") != NULL, "%s", t);
    cr_expect(strstr(t, "gtrt_steps_received_total{actor=\"evil\\\"id\\\\??\"} 1\n") != NULL,
              "label values are escaped and control bytes replaced:\n%s", t);
    cr_expect(strstr(t, "# TYPE gtrt_policy_version gauge\ngtrt_policy_version 13\n") != NULL,
              "%s", t);
    cr_expect(strstr(t, "# TYPE gtrt_train_success_rate gauge\ngtrt_train_success_rate 0.5\n"),
              "%s", t);
    cr_expect(strstr(t, "gtrt_step 3\n") && strstr(t, "gtrt_env_steps 300\n"), "%s", t);
    cr_expect(strstr(t, "gtrt_metrics_dropped_total 0\n") != NULL, "%s", t);
    free(t);
    metrics_free(&m);
}

Test(metrics, a_name_keeps_its_kind_and_label)
{
    metrics *m;
    err e = {0};
    cr_assert_eq(metrics_new(NULL, NULL, &m, &e), 0);
    metrics_counter_add(m, "x_total", "actor", "a", 1);
    metrics_gauge_set(m, "x_total", "actor", "a", 100);    /* other kind */
    metrics_counter_add(m, "x_total", "teacher", "t", 1); /* other label */
    char *t = prom(m);
    cr_expect(strstr(t, "gtrt_x_total{actor=\"a\"} 1\n") != NULL, "%s", t);
    cr_expect(strstr(t, "teacher") == NULL, "%s", t);
    cr_expect(strstr(t, "gtrt_metrics_dropped_total 2\n") != NULL, "%s", t);
    free(t);
    metrics_free(&m);
}

Test(metrics, series_are_bounded)
{
    metrics *m;
    err e = {0};
    cr_assert_eq(metrics_new(NULL, NULL, &m, &e), 0);
    char id[32];
    for (int i = 0; i < METRICS_MAX_SERIES + 100; i++) {
        snprintf(id, sizeof id, "actor-%d", i);
        metrics_counter_add(m, "hello_total", "actor", id, 1);
    }
    /* Existing series still count after the table is full. */
    metrics_counter_add(m, "hello_total", "actor", "actor-0", 1);
    char *t = prom(m);
    cr_expect(strstr(t, "gtrt_hello_total{actor=\"actor-0\"} 2\n") != NULL);
    cr_expect(strstr(t, "{actor=\"actor-4095\"} 1\n") != NULL);
    cr_expect(strstr(t, "{actor=\"actor-4096\"}") == NULL);
    cr_expect(strstr(t, "gtrt_metrics_dropped_total 100\n") != NULL);
    free(t);
    metrics_free(&m);
}

typedef struct adder {
    metrics *m;
    const char *id;
} adder;

static void *add_many(void *p)
{
    adder *a = p;
    for (int i = 0; i < 20000; i++) {
        metrics_counter_add(a->m, "steps_total", "actor", a->id, 1);
        metrics_counter_add(a->m, "all_total", NULL, NULL, 1);
        if (i % 1000 == 0)
            metrics_scalar(a->m, "train/x", i);
    }
    return NULL;
}

Test(metrics, concurrent_updates_are_not_lost)
{
    metrics *m;
    err e = {0};
    cr_assert_eq(metrics_new(NULL, NULL, &m, &e), 0);
    pthread_t th[4];
    adder a[4] = {{m, "a"}, {m, "b"}, {m, "a"}, {m, "c"}};
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, add_many, &a[i]);
    for (int k = 0; k < 50; k++) {
        cr_assert_eq(metrics_commit(m, k, k, &e), 0);
        free(prom(m));
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    char *t = prom(m);
    cr_expect(strstr(t, "gtrt_steps_total{actor=\"a\"} 40000\n") != NULL, "%s", t);
    cr_expect(strstr(t, "gtrt_steps_total{actor=\"b\"} 20000\n") != NULL, "%s", t);
    cr_expect(strstr(t, "gtrt_all_total 80000\n") != NULL, "%s", t);
    free(t);
    metrics_free(&m);
}
