/* Remote environments: the Python NumberLine server, started as a real
 * process on loopback and driven through env_new("remote:..."), plays
 * exactly like the C NumberLine (prompt, image bytes, legal actions,
 * rewards, done / truncated / won, info) for many seeds, action sequences
 * and image sizes; and a remote env whose server sends garbage, a wrong
 * image, out-of-range legal actions, a NaN reward, an error, nothing at all,
 * or dies mid-episode fails the step with a clear error and a counter, in
 * bounded time, and works again after a reset. Fake servers are threads. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "actor/envs/env.h"
#include "actor/envs/remote.h"
#include "common/net.h"
#include "common/rng.h"

extern char **environ;

/* ==== the Python server as a child process ==== */

typedef struct py_server {
    pid_t pid;
    char dir[64];
    char ep[128];
} py_server;

static void py_dir(py_server *s)
{
    snprintf(s->dir, sizeof s->dir, "/tmp/gtrt-remote-XXXXXX");
    cr_assert_not_null(mkdtemp(s->dir));
    snprintf(s->ep, sizeof s->ep, "ipc://%s/nl", s->dir);
}

/* Start the server on s->ep and wait for its READY line (the wait is only
 * a guard against a hang, not a timing check). */
static void py_start(py_server *s)
{
    const char *src = getenv("GTRT_SOURCE_DIR");
    cr_assert_not_null(src, "GTRT_SOURCE_DIR is not set");
    char script[512], logpath[128];
    snprintf(script, sizeof script, "%s/actor/envs/remote/numberline_server.py", src);
    snprintf(logpath, sizeof logpath, "%s/server.log", s->dir);
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addopen(&fa, 2, logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
    char *argv[] = {"/usr/bin/python3", script, "--bind", s->ep, "--id", "nl-test", NULL};
    int rc = posix_spawn(&s->pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    cr_assert_eq(rc, 0, "cannot start %s", script);
    char line[256] = {0};
    size_t n = 0;
    struct pollfd p = {.fd = fds[0], .events = POLLIN};
    while (n < sizeof line - 1 && !strchr(line, '\n') && poll(&p, 1, 60000) == 1) {
        ssize_t got = read(fds[0], line + n, sizeof line - 1 - n);
        if (got <= 0)
            break;
        n += (size_t)got;
    }
    close(fds[0]);
    cr_assert(strncmp(line, "READY ", 6) == 0, "server did not start (see %s): '%s'", logpath,
              line);
}

static void py_kill(py_server *s)
{
    if (s->pid > 0 && kill(s->pid, SIGKILL) == 0)
        waitpid(s->pid, NULL, 0);
    s->pid = 0;
}

static void py_stop(py_server *s)
{
    if (s->pid > 0 && kill(s->pid, SIGTERM) == 0)
        waitpid(s->pid, NULL, 0);
    s->pid = 0;
}

/* ==== comparing a local and a remote env ==== */

static void image_bytes(const env *e, uint8_t *out)
{
    size_t n = env_image_floats(e);
    float *img = malloc(n * sizeof *img);
    cr_assert_not_null(img);
    env_render(e, img);
    for (size_t k = 0; k < n; k++) {
        float x = img[k] < 0 ? 0 : img[k] > 1 ? 1 : img[k];
        out[k] = (uint8_t)lrintf(x * 255.0f);
    }
    free(img);
}

static char *info_text(const env *e)
{
    cJSON *o = cJSON_CreateObject();
    env_info(e, o);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static void expect_same_obs(const env *loc, const env *rem, const char *where)
{
    char pa[ENV_TEXT_MAX], pb[ENV_TEXT_MAX];
    env_prompt(loc, pa, sizeof pa);
    env_prompt(rem, pb, sizeof pb);
    cr_assert_str_eq(pa, pb, "%s: prompt", where);
    int la[ENV_MAX_ACTIONS], lb[ENV_MAX_ACTIONS];
    int na = env_legal_actions(loc, la), nb = env_legal_actions(rem, lb);
    cr_assert_eq(na, nb, "%s: legal count", where);
    cr_assert_arr_eq(la, lb, (size_t)na * sizeof *la, "%s: legal actions", where);
    cr_assert_eq(env_done(loc), env_done(rem), "%s: done", where);
    cr_assert_eq(env_won(loc), env_won(rem), "%s: won", where);
    cr_assert_eq(env_steps(loc), env_steps(rem), "%s: steps", where);
    size_t n = env_image_floats(loc);
    cr_assert_eq(n, env_image_floats(rem), "%s: image size", where);
    uint8_t *a = malloc(n), *b = malloc(n);
    image_bytes(loc, a);
    image_bytes(rem, b);
    cr_assert_arr_eq(a, b, n, "%s: image bytes", where);
    free(a);
    free(b);
    char *ia = info_text(loc), *ib = info_text(rem);
    cr_assert_str_eq(ia, ib, "%s: info", where);
    free(ia);
    free(ib);
}

/* Play `acts` on both envs, step by step; also one step past the end. */
static void play_both(env *loc, env *rem, const int *acts, int n, const char *tag)
{
    char where[160];
    snprintf(where, sizeof where, "%s reset", tag);
    expect_same_obs(loc, rem, where);
    for (int i = 0; i < n; i++) {
        env_result ra, rb;
        err ea = {0}, eb = {0};
        int ca = env_step(loc, acts[i], &ra, &ea), cb = env_step(rem, acts[i], &rb, &eb);
        snprintf(where, sizeof where, "%s step %d", tag, i + 1);
        cr_assert_eq(ca, cb, "%s: step code (%s | %s)", where, ea.msg, eb.msg);
        if (ca) {
            cr_assert_eq(ca, GTRT_ESTATE);
            break;
        }
        cr_assert_eq(ra.action, rb.action, "%s", where);
        cr_assert_eq(ra.legal, rb.legal, "%s: legal", where);
        cr_assert_eq(ra.reward, rb.reward, "%s: reward %g vs %g", where, ra.reward, rb.reward);
        cr_assert_eq(ra.terminated, rb.terminated, "%s: terminated", where);
        cr_assert_eq(ra.truncated, rb.truncated, "%s: truncated", where);
        cr_assert_eq(ra.done, rb.done, "%s: done", where);
        expect_same_obs(loc, rem, where);
    }
}

static void check_params(const char *ep, const env_params *p, const char *tag)
{
    char name[200];
    snprintf(name, sizeof name, "remote:%s", ep);
    env *loc, *rem;
    err e = {0};
    cr_assert_eq(env_new("numberline", p, &loc, &e), 0, "%s", e.msg);
    cr_assert_eq(env_new(name, p, &rem, &e), 0, "%s", e.msg);
    cr_assert_str_eq(env_name(rem), name);
    cr_assert_eq(env_num_actions(loc), env_num_actions(rem));
    for (int a = 0; a < env_num_actions(loc); a++)
        cr_assert_str_eq(env_action_text(loc, a), env_action_text(rem, a));
    int ca, ha, wa, cb, hb, wb;
    env_image_shape(loc, &ca, &ha, &wa);
    env_image_shape(rem, &cb, &hb, &wb);
    cr_assert(ca == cb && ha == hb && wa == wb, "%s: shape", tag);
    for (int v = 0; v < 2; v++)
        cr_assert_eq(env_format_reward(loc, v), env_format_reward(rem, v));
    /* The answer parser sees the same keys. */
    const char *answers[] = {
        "{\"current\": \"1\", \"target\": \"3\", \"thoughts\": \"up\", \"action\": \"+\"}",
        "{\"current\": \"1\", \"thoughts\": \"up\", \"action\": \"+\"}",
        "{\"current\": [1], \"target\": \"3\", \"thoughts\": \"up\", \"action\": \"+\"}",
    };
    for (size_t i = 0; i < sizeof answers / sizeof answers[0]; i++) {
        env_parsed a, b;
        env_parse_answer(loc, answers[i], &a);
        env_parse_answer(rem, answers[i], &b);
        cr_assert_eq(a.valid, b.valid, "%s answer %zu", tag, i);
        cr_assert_eq(a.action, b.action);
        cr_assert_str_eq(a.why, b.why);
    }
    rng r;
    rng_init(&r, 1234);
    for (uint64_t seed = 0; seed < 6; seed++) {
        for (int pattern = 0; pattern < 3; pattern++) {
            int acts[12];
            for (int i = 0; i < 12; i++)
                acts[i] = pattern == 0 ? (int)rng_below(&r, 2) : pattern == 1 ? 1 : i % 2;
            env_reset(loc, seed * 7919 + (uint64_t)pattern);
            env_reset(rem, seed * 7919 + (uint64_t)pattern);
            char where[96];
            snprintf(where, sizeof where, "%s seed %llu pattern %d", tag,
                     (unsigned long long)(seed * 7919 + (uint64_t)pattern), pattern);
            play_both(loc, rem, acts, 12, where);
        }
    }
    /* A chosen deal, and one that does not fit. */
    int cards[2] = {5, 0}, bad[2] = {3, 3};
    env_reset(loc, 9);
    env_reset(rem, 9);
    cr_assert_eq(env_deal(loc, cards, 2, &e), 0);
    cr_assert_eq(env_deal(rem, cards, 2, &e), 0, "%s", e.msg);
    int down[6] = {0, 0, 0, 0, 0, 0};
    play_both(loc, rem, down, 6, "deal");
    cr_assert_neq(env_deal(loc, bad, 2, &e), 0);
    cr_assert_neq(env_deal(rem, bad, 2, &e), 0);
    cr_assert(strstr(e.msg, "cannot be dealt"), "%s", e.msg);
    env_reset(rem, 1);
    cr_assert_eq(remote_env_error(remote_env_of(rem), NULL), 0);
    cr_assert_eq(remote_env_get_stats(remote_env_of(rem))->bad_replies, 0);
    env_free(loc);
    env_free(rem);
}

Test(remote_env, python_numberline_matches_c)
{
    py_server s = {0};
    py_dir(&s);
    py_start(&s);
    env_params p;
    env_params_default(&p);
    check_params(s.ep, &p, "native");
    p.prompt_actions = true;
    check_params(s.ep, &p, "prompt_actions");
    env_params_default(&p);
    p.image_w = 48; /* box averages that land exactly between two bytes */
    p.image_h = 12;
    check_params(s.ep, &p, "48x12");
    p.image_w = 32;
    p.image_h = 8;
    p.image_c = 1;
    check_params(s.ep, &p, "grey 32x8");
    py_stop(&s);
}

Test(remote_env, no_oracle_and_play_answer)
{
    py_server s = {0};
    py_dir(&s);
    py_start(&s);
    char name[200];
    snprintf(name, sizeof name, "remote:%s", s.ep);
    env *e;
    err er = {0};
    cr_assert_eq(env_new(name, NULL, &e, &er), 0, "%s", er.msg);
    env_answer a;
    cr_assert_eq(env_oracle(e, &a, &er), GTRT_ENOTFOUND);
    cr_assert(strstr(er.msg, "no oracle"), "%s", er.msg);
    /* The actor's path: an invalid answer plays a random legal move. */
    rng r;
    rng_init(&r, 5);
    env_turn t;
    env_reset(e, 3);
    cr_assert_eq(env_play_answer(e, "not json", &r, &t, &er), 0, "%s", er.msg);
    cr_assert(!t.parsed.valid && t.random_action);
    cr_assert_float_eq(t.format_reward, -0.2, 1e-12);
    cr_assert_eq(env_play_answer(e, "{\"current\": \"1\", \"target\": \"2\", \"thoughts\": "
                                    "\"x\", \"action\": \"+\"}",
                                 &r, &t, &er),
                 0, "%s", er.msg);
    cr_assert(t.parsed.valid && t.step.action == 1);
    env_free(e);
    py_stop(&s);
}

Test(remote_env, unreachable_and_bad_names)
{
    env *e = NULL;
    err er = {0};
    cr_assert_eq(env_new("remote:ipc:///tmp/gtrt-remote-nobody-here#timeout_ms=100,retries=2",
                         NULL, &e, &er),
                 GTRT_ETIMEOUT);
    cr_assert_null(e);
    cr_assert(strstr(er.msg, "gone or stuck"), "%s", er.msg);
    cr_assert_eq(env_new("remote:", NULL, &e, &er), GTRT_EINVAL);
    cr_assert_eq(env_new("remote:tcp://127.0.0.1:1#retries=0", NULL, &e, &er), GTRT_EINVAL);
    cr_assert_eq(env_new("remote:tcp://127.0.0.1:1#color=blue", NULL, &e, &er), GTRT_EINVAL);
    cr_assert(strstr(er.msg, "color"), "%s", er.msg);
}

/* The server dies mid-episode: the step fails with a timeout after
 * timeout_ms x retries; once a server is back, a reset starts over. */
Test(remote_env, server_dies_mid_episode)
{
    py_server s = {0};
    py_dir(&s);
    py_start(&s);
    char name[200];
    snprintf(name, sizeof name, "remote:%s#timeout_ms=300,retries=2", s.ep);
    env *e;
    err er = {0};
    cr_assert_eq(env_new(name, NULL, &e, &er), 0, "%s", er.msg);
    env_reset(e, 11);
    int far[2] = {0, 5}; /* five steps from the goal */
    cr_assert_eq(env_deal(e, far, 2, &er), 0, "%s", er.msg);
    env_result r;
    cr_assert_eq(env_step(e, 1, &r, &er), 0, "%s", er.msg);
    py_kill(&s);
    cr_assert_eq(env_step(e, 1, &r, &er), GTRT_ETIMEOUT, "%s", er.msg);
    cr_assert(strstr(er.msg, "gone or stuck") && strstr(er.msg, "2 attempts"), "%s", er.msg);
    cr_assert(env_done(e), "the failed episode is over for the caller");
    cr_assert_eq(env_step(e, 1, &r, &er), GTRT_ESTATE);
    const remote_env_stats *st = remote_env_get_stats(remote_env_of(e));
    cr_assert_eq(st->timeouts, 1);
    cr_assert_eq(st->failures, 1);
    /* Still gone: the reset fails, and the next step says why. */
    env_reset(e, 12);
    cr_assert_eq(env_step(e, 0, &r, &er), GTRT_ETIMEOUT);
    cr_assert_eq(st->timeouts, 2);
    py_start(&s);
    env_reset(e, 12);
    cr_assert_eq(remote_env_error(remote_env_of(e), &er), 0, "%s", er.msg);
    cr_assert_eq(env_step(e, 0, &r, &er), 0, "%s", er.msg);
    env_free(e);
    py_stop(&s);
}

/* ==== fake servers ==== */

typedef enum {
    FAKE_GOOD,
    FAKE_GARBAGE,
    FAKE_SHORT_IMAGE,
    FAKE_WRONG_SHAPE,
    FAKE_BAD_LEGAL,
    FAKE_NAN_REWARD,
    FAKE_ERROR,
    FAKE_SILENT,
    FAKE_WRONG_STEP,
    FAKE_LONG_PROMPT,
    FAKE_CONTROL_PROMPT,
    FAKE_NO_ACTION_KEY, /* already at the first reset */
    FAKE_RESET_GARBAGE, /* already at the first reset */
} fake_mode;

typedef struct fake {
    void *ctx;
    char dir[64], ep[128];
    fake_mode mode;
    atomic_int stop;
    pthread_t th;
} fake;

static void fake_send(void *z, const net_route *to, uint32_t type, uint64_t rid,
                      const ProtobufCMessage *body, const uint8_t *img, size_t img_n)
{
    wire_encoded enc;
    cr_assert_eq(wire_encode(GTRT__ROLE__ROLE_CLIENT, "fake", type, rid, body, img ? 1 : 0, &enc),
                 0);
    zmq_send(z, to->id, to->len, ZMQ_SNDMORE);
    zmq_send(z, enc.hdr, enc.hdr_len, ZMQ_SNDMORE);
    zmq_send(z, enc.body, enc.body_len, img ? ZMQ_SNDMORE : 0);
    if (img)
        zmq_send(z, img, img_n, 0);
    wire_encoded_clear(&enc);
}

/* A 2-action env with a 16x8 RGB picture; steps misbehave by mode. */
static void fake_answer(fake *f, void *z, const net_route *to, const wire_msg *m)
{
    static const uint8_t img[3 * 8 * 16 + 1];
    char *actions[] = {"a", "b"};
    Gtrt__EnvAnswerKey k1 = GTRT__ENV_ANSWER_KEY__INIT, k2 = GTRT__ENV_ANSWER_KEY__INIT;
    k1.name = f->mode == FAKE_NO_ACTION_KEY ? "move" : "action";
    k2.name = "thoughts";
    Gtrt__EnvAnswerKey *keys[] = {&k1, &k2};
    uint32_t legal[] = {0, 1}, bad_legal[] = {5};
    char long_prompt[5000];
    memset(long_prompt, 'x', sizeof long_prompt - 1);
    long_prompt[sizeof long_prompt - 1] = '\0';
    bool reset = m->type == GTRT__MSG_TYPE__MSG_ENV_RESET;
    const Gtrt__EnvReset *rq = reset ? (const Gtrt__EnvReset *)m->body : NULL;
    const Gtrt__EnvStep *sq = reset ? NULL : (const Gtrt__EnvStep *)m->body;
    fake_mode mode = reset && f->mode < FAKE_NO_ACTION_KEY ? FAKE_GOOD : f->mode;
    if (mode == FAKE_SILENT)
        return;
    if (mode == FAKE_GARBAGE || mode == FAKE_RESET_GARBAGE) {
        zmq_send(z, to->id, to->len, ZMQ_SNDMORE);
        zmq_send(z, "\x08\x99garbage", 9, ZMQ_SNDMORE);
        zmq_send(z, "junk", 4, 0);
        return;
    }
    if (mode == FAKE_ERROR) {
        Gtrt__Error er = GTRT__ERROR__INIT;
        er.message = "the env crashed";
        fake_send(z, to, GTRT__MSG_TYPE__MSG_ERROR, m->hdr->request_id, &er.base, NULL, 0);
        return;
    }
    Gtrt__EnvObs o = GTRT__ENV_OBS__INIT;
    o.has_session = o.has_episode = o.has_step = 1;
    o.session = reset ? rq->session : sq->session;
    o.episode = reset ? rq->episode : sq->episode;
    o.step = reset ? 0 : sq->step + 1 + (mode == FAKE_WRONG_STEP);
    o.has_image_c = o.has_image_h = o.has_image_w = 1;
    o.image_c = 3;
    o.image_h = 8;
    o.image_w = mode == FAKE_WRONG_SHAPE ? 15 : 16;
    o.prompt = mode == FAKE_LONG_PROMPT      ? long_prompt
               : mode == FAKE_CONTROL_PROMPT ? "press \x1b[2J now"
                                             : "fake";
    o.n_legal = mode == FAKE_BAD_LEGAL ? 1 : 2;
    o.legal = mode == FAKE_BAD_LEGAL ? bad_legal : legal;
    if (reset) {
        o.env = "fake";
        o.n_actions = 2;
        o.actions = actions;
        o.n_answer_keys = 2;
        o.answer_keys = keys;
        o.has_native_w = o.has_native_h = 1;
        o.native_w = 16;
        o.native_h = 8;
    } else {
        o.has_reward = 1;
        o.reward = mode == FAKE_NAN_REWARD ? NAN : 0.5;
    }
    size_t n = 3 * 8 * (size_t)o.image_w - (mode == FAKE_SHORT_IMAGE);
    fake_send(z, to, GTRT__MSG_TYPE__MSG_ENV_OBS, m->hdr->request_id, &o.base, img, n);
}

static void *fake_run(void *arg)
{
    fake *f = arg;
    void *z = zmq_socket(f->ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(z, ZMQ_LINGER, &zero, sizeof zero);
    zmq_bind(z, f->ep);
    while (!atomic_load(&f->stop)) {
        zmq_pollitem_t it = {.socket = z, .events = ZMQ_POLLIN};
        if (zmq_poll(&it, 1, 20) <= 0)
            continue;
        net_frames fr;
        if (net_frames_recv(z, &fr) != 1)
            continue;
        net_route from;
        wire_msg m;
        if (net_frames_decode(&fr, true, &from, &m) == WIRE_OK) {
            fake_answer(f, z, &from, &m);
            wire_msg_clear(&m);
        }
        net_frames_clear(&fr);
    }
    zmq_close(z);
    return NULL;
}

static void fake_start(fake *f, fake_mode mode)
{
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/gtrt-fake-XXXXXX");
    cr_assert_not_null(mkdtemp(f->dir));
    snprintf(f->ep, sizeof f->ep, "ipc://%s/fake", f->dir);
    f->mode = mode;
    f->ctx = zmq_ctx_new();
    cr_assert_eq(pthread_create(&f->th, NULL, fake_run, f), 0);
}

static void fake_stop(fake *f)
{
    atomic_store(&f->stop, 1);
    pthread_join(f->th, NULL);
    zmq_ctx_term(f->ctx);
}

/* One episode against a misbehaving server: the step fails with `code` and
 * a message containing `what`, counted in the stats; a reset brings the env
 * back. */
static void expect_bad_step(fake_mode mode, int code, const char *what)
{
    fake f;
    fake_start(&f, mode);
    char name[200];
    snprintf(name, sizeof name, "remote:%s#timeout_ms=200,retries=2", f.ep);
    env *e;
    err er = {0};
    cr_assert_eq(env_new(name, NULL, &e, &er), 0, "%s", er.msg);
    const remote_env_stats *st = remote_env_get_stats(remote_env_of(e));
    env_reset(e, 1);
    char prompt[64];
    env_prompt(e, prompt, sizeof prompt);
    cr_assert_str_eq(prompt, "fake");
    env_result r;
    cr_assert_eq(env_step(e, 0, &r, &er), code, "mode %d: %s", mode, er.msg);
    cr_assert(strstr(er.msg, what), "mode %d: '%s' lacks '%s'", mode, er.msg, what);
    cr_assert(strstr(er.msg, f.ep), "the message names the server: %s", er.msg);
    cr_assert_eq(st->failures, 1);
    cr_assert(env_done(e));
    /* Broken: no legal action is withheld (an actor's random move still
     * reaches env_step, which reports the error) and the prompt is blank. */
    int legal[ENV_MAX_ACTIONS];
    cr_assert_eq(env_legal_actions(e, legal), 2);
    env_prompt(e, prompt, sizeof prompt);
    cr_assert_str_eq(prompt, "");
    env_reset(e, 2);
    cr_assert_eq(remote_env_error(remote_env_of(e), &er), 0, "%s", er.msg);
    cr_assert_eq(st->requests, 4);
    env_free(e);
    fake_stop(&f);
}

Test(remote_env, garbage_reply)
{
    expect_bad_step(FAKE_GARBAGE, GTRT_EPROTO, "undecodable");
}

Test(remote_env, wrong_image_size)
{
    expect_bad_step(FAKE_SHORT_IMAGE, GTRT_EPROTO, "image payload size");
    expect_bad_step(FAKE_WRONG_SHAPE, GTRT_EPROTO, "image shape");
}

Test(remote_env, bad_fields)
{
    expect_bad_step(FAKE_BAD_LEGAL, GTRT_EPROTO, "legal action out of range");
    expect_bad_step(FAKE_NAN_REWARD, GTRT_EPROTO, "reward");
    expect_bad_step(FAKE_WRONG_STEP, GTRT_EPROTO, "step count");
    expect_bad_step(FAKE_LONG_PROMPT, GTRT_EPROTO, "prompt");
    expect_bad_step(FAKE_CONTROL_PROMPT, GTRT_EPROTO, "control characters");
}

Test(remote_env, error_and_silence)
{
    expect_bad_step(FAKE_ERROR, GTRT_EPROTO, "the env crashed");
    expect_bad_step(FAKE_SILENT, GTRT_ETIMEOUT, "gone or stuck");
}

Test(remote_env, bad_first_reset)
{
    fake_mode modes[] = {FAKE_NO_ACTION_KEY, FAKE_RESET_GARBAGE};
    const char *what[] = {"answer keys", "undecodable"};
    for (int i = 0; i < 2; i++) {
        fake f;
        fake_start(&f, modes[i]);
        char name[200];
        snprintf(name, sizeof name, "remote:%s#timeout_ms=200,retries=1", f.ep);
        env *e = NULL;
        err er = {0};
        cr_assert_eq(env_new(name, NULL, &e, &er), GTRT_EPROTO);
        cr_assert_null(e);
        cr_assert(strstr(er.msg, what[i]), "'%s' lacks '%s'", er.msg, what[i]);
        fake_stop(&f);
    }
}
