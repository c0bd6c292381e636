/* The teacher's checkpoint follower (teacher/follow.c) on a real libuv loop
 * and thread pool, fed checkpoint bytes directly: the base is served until
 * the first merge; merged weights are the running mean of the checkpoints
 * (SMA, linear: computed here in double precision); a checkpoint of another
 * architecture is refused and changes nothing; older versions are ignored;
 * checkpoints that arrive before the base wait for it; new weights never
 * replace the serving model until follow_swap; merge_interval batches
 * checkpoints. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/fs.h"
#include "common/model.h"
#include "teacher/follow.h"
#include "test_util.h"

static model_config cfg_a(void)
{
    return (model_config){.vocab_size = 20, .d_model = 16, .n_layer = 1, .n_head = 2,
                          .patch = 4, .image_c = 1, .image_h = 8, .image_w = 8,
                          .max_seq = 24, .value_h1 = 8, .value_h2 = 4};
}

typedef struct ckpt {
    model *m;
    uint8_t *bytes;
    size_t len;
} ckpt;

/* A random model of config c and its checkpoint bytes. */
static ckpt make_ckpt(const model_config *c, uint64_t seed, const char *dir)
{
    ckpt k;
    err e = {0};
    cr_assert_eq(model_new(c, &k.m, &e), 0, "%s", e.msg);
    rng r;
    rng_init(&r, seed);
    model_init_random(k.m, &r);
    for (size_t i = 0; i < k.m->n_params; i++)
        k.m->params[i] += 0.1f * (float)rng_normal(&r);
    char path[256];
    snprintf(path, sizeof path, "%s/ckpt-%llu.safetensors", dir, (unsigned long long)seed);
    cr_assert_eq(model_save(k.m, path, &e), 0, "%s", e.msg);
    cr_assert_eq(fs_read_file(path, &k.bytes, &k.len, &e), 0, "%s", e.msg);
    return k;
}

/* The follower takes ownership of what it is offered: give it a copy. */
static void offer(follow *f, uint64_t version, const ckpt *k)
{
    uint8_t *copy = malloc(k->len);
    memcpy(copy, k->bytes, k->len);
    follow_offer(f, version, copy, k->len);
}

typedef struct fixture {
    uv_loop_t loop;
    follow f;
    bool swap_on_ready;
    int ready;
    char *dir;
} fixture;

static void on_ready(void *ud)
{
    fixture *fx = ud;
    fx->ready++;
    if (fx->swap_on_ready)
        follow_swap(&fx->f);
}

static void setup(fixture *fx, merge_combine combine, int interval)
{
    memset(fx, 0, sizeof *fx);
    cr_assert_eq(uv_loop_init(&fx->loop), 0);
    merge_opts o;
    merge_opts_default(&o);
    o.method = MERGE_SMA;
    o.combine = combine;
    follow_init(&fx->f, &fx->loop, &o, interval, on_ready, fx);
    fx->swap_on_ready = true;
    fx->dir = tmpdir();
}

static void teardown(fixture *fx)
{
    follow_close(&fx->f);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    follow_deinit(&fx->f);
    uv_loop_close(&fx->loop);
    rmtree(fx->dir);
}

/* Run the loop until every job has finished. */
static void settle(fixture *fx) { uv_run(&fx->loop, UV_RUN_DEFAULT); }

/* Max |serving - mean of the given models| over every parameter. */
static double diff_from_mean(const model *got, const ckpt *const *ks, int n)
{
    double worst = 0;
    for (size_t i = 0; i < got->n_params; i++) {
        double mean = 0;
        for (int k = 0; k < n; k++)
            mean += ks[k]->m->params[i];
        mean /= n;
        worst = fmax(worst, fabs(got->params[i] - mean));
    }
    return worst;
}

static void free_ckpt(ckpt *k)
{
    model_free(k->m);
    free(k->bytes);
}

Test(follow, serves_the_base_then_running_means_and_refuses_other_architectures)
{
    fixture fx;
    setup(&fx, MERGE_LINEAR, 1);
    model_config a = cfg_a(), b = cfg_a();
    b.d_model = 24; /* another architecture */
    ckpt base = make_ckpt(&a, 1, fx.dir), c1 = make_ckpt(&a, 2, fx.dir),
         c3 = make_ckpt(&a, 3, fx.dir), other = make_ckpt(&b, 4, fx.dir);
    uint64_t v = 99;
    cr_expect_null(follow_serving(&fx.f, &v), "a model before the base");

    offer(&fx.f, 0, &base);
    settle(&fx);
    model *m = follow_serving(&fx.f, &v);
    cr_assert_not_null(m);
    cr_expect_eq(v, 0);
    const ckpt *just_base[] = {&base};
    cr_expect_eq(diff_from_mean(m, just_base, 1), 0, "the base is not served as is");

    offer(&fx.f, 1, &c1);
    settle(&fx);
    m = follow_serving(&fx.f, &v);
    cr_expect_eq(v, 1);
    const ckpt *one[] = {&c1};
    cr_expect_leq(diff_from_mean(m, one, 1), 1e-6, "SMA of one checkpoint is that checkpoint");

    offer(&fx.f, 2, &other);
    settle(&fx);
    m = follow_serving(&fx.f, &v);
    cr_expect_eq(v, 1, "a refused checkpoint changed the version");
    cr_expect_eq(fx.f.st.refused, 1);
    cr_expect_leq(diff_from_mean(m, one, 1), 1e-6, "a refused checkpoint changed the weights");

    offer(&fx.f, 3, &c3);
    settle(&fx);
    m = follow_serving(&fx.f, &v);
    cr_expect_eq(v, 3);
    const ckpt *two[] = {&c1, &c3};
    cr_expect_leq(diff_from_mean(m, two, 2), 1e-6, "not the mean of v1 and v3");
    cr_expect_eq(fx.f.st.merged_ckpts, 2);

    offer(&fx.f, 3, &c1); /* not newer: ignored */
    offer(&fx.f, 0, &c1); /* a second base: ignored */
    settle(&fx);
    cr_expect_eq(fx.f.st.ignored, 1);
    cr_expect_eq(follow_serving(&fx.f, &v), m);
    cr_expect_leq(diff_from_mean(m, two, 2), 1e-6);

    free_ckpt(&base);
    free_ckpt(&c1);
    free_ckpt(&c3);
    free_ckpt(&other);
    teardown(&fx);
}

/* A restarted teacher may get the latest checkpoint before the base. */
Test(follow, checkpoints_before_the_base_wait_for_it)
{
    fixture fx;
    setup(&fx, MERGE_TIES, 1);
    model_config a = cfg_a();
    ckpt base = make_ckpt(&a, 11, fx.dir), c5 = make_ckpt(&a, 12, fx.dir);
    offer(&fx.f, 5, &c5);
    settle(&fx);
    cr_expect_null(follow_serving(&fx.f, NULL));
    offer(&fx.f, 0, &base);
    settle(&fx);
    uint64_t v;
    model *m = follow_serving(&fx.f, &v);
    cr_assert_not_null(m);
    cr_expect_eq(v, 5);
    /* The same merge through the merger API directly. */
    merge_tset *tb, *t5;
    merger *mg;
    err e = {0};
    cr_assert_eq(merge_tset_load_buffer(base.bytes, base.len, "base", &tb, &e), 0, "%s", e.msg);
    cr_assert_eq(merge_tset_load_buffer(c5.bytes, c5.len, "v5", &t5, &e), 0, "%s", e.msg);
    merge_opts o;
    merge_opts_default(&o);
    cr_assert_eq(merge_new(&o, tb, &mg, &e), 0, "%s", e.msg);
    cr_assert_eq(merge_add(mg, t5, "v5", &e), 0, "%s", e.msg);
    cr_assert_eq(merge_run(mg, &e), 0, "%s", e.msg);
    const merge_tset *want = merge_teacher(mg);
    for (int i = 0; i < m->n_tensors; i++) {
        const merge_tensor *t = merge_tset_find(want, m->tensors[i].name);
        cr_assert_not_null(t);
        CHECK(!memcmp(m->params + m->tensors[i].offset, want->data + t->offset,
                      t->numel * sizeof(float)),
              "tensor %s differs from the merger's", m->tensors[i].name);
    }
    merge_free(mg);
    free_ckpt(&base);
    free_ckpt(&c5);
    teardown(&fx);
}

/* The serving model is never written: new weights wait for follow_swap. */
Test(follow, new_weights_wait_for_the_swap)
{
    fixture fx;
    setup(&fx, MERGE_LINEAR, 1);
    model_config a = cfg_a();
    ckpt base = make_ckpt(&a, 21, fx.dir), c1 = make_ckpt(&a, 22, fx.dir);
    offer(&fx.f, 0, &base);
    settle(&fx);
    uint64_t v;
    model *m0 = follow_serving(&fx.f, &v);
    fx.swap_on_ready = false; /* a batch is "running" */
    int ready = fx.ready;
    offer(&fx.f, 1, &c1);
    settle(&fx);
    cr_expect_eq(fx.ready, ready + 1, "no word that new weights are ready");
    cr_expect_eq(follow_serving(&fx.f, &v), m0);
    cr_expect_eq(v, 0);
    const ckpt *just_base[] = {&base}, *one[] = {&c1};
    cr_expect_eq(diff_from_mean(m0, just_base, 1), 0, "the serving model was written");
    cr_assert(follow_swap(&fx.f));
    model *m1 = follow_serving(&fx.f, &v);
    cr_expect_neq(m1, m0);
    cr_expect_eq(v, 1);
    cr_expect_leq(diff_from_mean(m1, one, 1), 1e-6);
    cr_expect_not(follow_swap(&fx.f), "swapped with nothing new");
    free_ckpt(&base);
    free_ckpt(&c1);
    teardown(&fx);
}

Test(follow, merge_interval_batches_checkpoints)
{
    fixture fx;
    setup(&fx, MERGE_LINEAR, 2);
    model_config a = cfg_a();
    ckpt base = make_ckpt(&a, 31, fx.dir), c1 = make_ckpt(&a, 32, fx.dir),
         c2 = make_ckpt(&a, 33, fx.dir);
    offer(&fx.f, 0, &base);
    settle(&fx);
    offer(&fx.f, 1, &c1);
    settle(&fx);
    uint64_t v;
    follow_serving(&fx.f, &v);
    cr_expect_eq(v, 0, "merged before merge_interval checkpoints arrived");
    cr_expect_eq(fx.f.st.pending, 1);
    offer(&fx.f, 2, &c2);
    settle(&fx);
    model *m = follow_serving(&fx.f, &v);
    cr_expect_eq(v, 2);
    cr_expect_eq(fx.f.st.merges, 1);
    const ckpt *two[] = {&c1, &c2};
    cr_expect_leq(diff_from_mean(m, two, 2), 1e-6);
    free_ckpt(&base);
    free_ckpt(&c1);
    free_ckpt(&c2);
    teardown(&fx);
}
