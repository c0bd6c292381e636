/* The remote env client (see remote.h): one DEALER per env instance through
 * rpc.h, the reply checks, and the env_vtable that makes a remote env look
 * like a built-in one. */
#include "actor/envs/remote.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/rpc.h"

#define REMOTE_ENV_MAX_REWARD 1e9 /* larger rewards are a broken server */

struct remote_env {
    env_vtable vt; /* this instance's: actions and keys come from the server */
    char name[300];
    char endpoint[256];
    remote_env_options opt;
    env_params p;
    void *zctx;
    security *sec; /* CURVE keys of the rpc client's sockets, or plaintext */
    rpc_client rpc;
    char id[WIRE_MAX_ID_LEN + 1];
    uint64_t session, episode, seed;
    uint32_t steps;
    /* The env, as the server described it at creation. */
    char server_env[REMOTE_ENV_NAME_MAX + 1];
    char action_buf[ENV_MAX_ACTIONS][REMOTE_ENV_NAME_MAX + 1];
    const char *actions[ENV_MAX_ACTIONS];
    char key_buf[REMOTE_ENV_MAX_KEYS][REMOTE_ENV_NAME_MAX + 1];
    env_key keys[REMOTE_ENV_MAX_KEYS];
    int img_c, img_h, img_w;
    size_t img_n;
    /* The latest observation. */
    uint8_t *image;
    char prompt[ENV_TEXT_MAX];
    bool legal[ENV_MAX_ACTIONS];
    bool won;
    cJSON *info;
    /* A failed request leaves the env broken until a reset succeeds. */
    bool broken;
    err error;
    remote_env_stats stats;
};

/* ==== names ==== */

bool remote_env_is_name(const char *name)
{
    return strncmp(name, REMOTE_ENV_PREFIX, strlen(REMOTE_ENV_PREFIX)) == 0;
}

/* One "key=value" of the options after '#'. */
static int remote_parse_option(const char *opt, size_t n, remote_env_options *o, err *e)
{
    char buf[64];
    if (n >= sizeof buf)
        return err_set(e, GTRT_EINVAL, "remote env option too long");
    memcpy(buf, opt, n);
    buf[n] = '\0';
    char *eq = strchr(buf, '=');
    char *end = NULL;
    long v = eq ? strtol(eq + 1, &end, 10) : 0;
    if (!eq || end == eq + 1 || *end)
        return err_set(e, GTRT_EINVAL, "remote env option '%s': want key=number", buf);
    *eq = '\0';
    if (strcmp(buf, "timeout_ms") == 0 && v >= 1 && v <= 600000)
        o->timeout_ms = (int)v;
    else if (strcmp(buf, "retries") == 0 && v >= 1 && v <= 100)
        o->retries = (int)v;
    else
        return err_set(e, GTRT_EINVAL,
                       "remote env option '%s=%ld' unknown or out of range "
                       "(timeout_ms 1..600000, retries 1..100)",
                       buf, v);
    return 0;
}

int remote_env_parse_name(const char *name, char *endpoint, size_t cap, remote_env_options *o,
                          err *e)
{
    o->timeout_ms = REMOTE_ENV_TIMEOUT_MS;
    o->retries = REMOTE_ENV_RETRIES;
    if (!remote_env_is_name(name))
        return err_set(e, GTRT_EINVAL, "'%s' is not a remote env name (remote:<endpoint>)", name);
    const char *ep = name + strlen(REMOTE_ENV_PREFIX);
    const char *hash = strchr(ep, '#');
    size_t n = hash ? (size_t)(hash - ep) : strlen(ep);
    if (n == 0 || n >= cap || !strstr(ep, "://"))
        return err_set(e, GTRT_EINVAL,
                       "remote env '%s': want remote:<zeromq endpoint>, e.g. "
                       "remote:tcp://127.0.0.1:5555",
                       name);
    memcpy(endpoint, ep, n);
    endpoint[n] = '\0';
    for (const char *s = hash ? hash + 1 : NULL; s && *s;) {
        size_t len = strcspn(s, ",");
        int rc = remote_parse_option(s, len, o, e);
        if (rc)
            return rc;
        s += len + (s[len] == ',');
    }
    return 0;
}

/* ==== failures ==== */

/* Record a failure: the env is broken until the next successful reset. */
static void remote_fail(remote_env *r, int code, const char *fmt, const char *detail)
{
    r->broken = true;
    r->stats.failures++;
    err_set(&r->error, code, fmt, r->endpoint, detail);
}

static void remote_bad_reply(remote_env *r, const char *what)
{
    r->stats.bad_replies++;
    remote_fail(r, GTRT_EPROTO, "env server %s sent a bad reply: %s", what);
}

int remote_env_error(const remote_env *r, err *e)
{
    if (!r->broken)
        return 0;
    if (e)
        *e = r->error;
    return r->error.code;
}

const remote_env_stats *remote_env_get_stats(const remote_env *r) { return &r->stats; }
const char *remote_env_server_env(const remote_env *r) { return r->server_env; }
const env_vtable *remote_env_vtable(const remote_env *r) { return &r->vt; }

/* ==== requests ==== */

/* One request through the Lazy Pirate client; failures are classified and
 * recorded. Returns 0 with the reply in `out`, or the error code. */
static int remote_call(remote_env *r, uint32_t type, const ProtobufCMessage *body,
                       rpc_reply *out)
{
    uint64_t rejected0 = r->rpc.rejected;
    err e = {0};
    r->stats.requests++;
    int rc = rpc_call(&r->rpc, type, body, out, &e);
    uint64_t rejected = r->rpc.rejected - rejected0;
    r->stats.rejected += rejected;
    if (rc == 0)
        return 0;
    char detail[600];
    if (rc == GTRT_ETIMEOUT && rejected) {
        /* Only undecodable frames came back: garbage, not silence. */
        r->stats.garbage++;
        snprintf(detail, sizeof detail, "%" PRIu64 " undecodable repl%s and no valid answer (%s)",
                 rejected, rejected == 1 ? "y" : "ies", e.msg);
        remote_fail(r, GTRT_EPROTO, "env server %s sent %s", detail);
    } else if (rc == GTRT_ETIMEOUT) {
        r->stats.timeouts++;
        remote_fail(r, GTRT_ETIMEOUT, "env server %s is gone or stuck: %s", e.msg);
    } else if (rc == GTRT_EPROTO) {
        r->stats.server_errors++;
        remote_fail(r, GTRT_EPROTO, "env server %s: %s", e.msg);
    } else {
        remote_fail(r, rc, "env server %s: %s", e.msg);
    }
    return r->error.code;
}

/* Printable text of at most `max` bytes: no control characters, so a
 * server cannot smuggle escape sequences into logs or prompts. */
static bool remote_text_ok(const char *s, size_t max, bool allow_empty)
{
    if (!s)
        return false;
    size_t n = strnlen(s, max + 1);
    if (n > max || (n == 0 && !allow_empty))
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

/* A name: 1..REMOTE_ENV_NAME_MAX printable characters without spaces. */
static bool remote_name_ok(const char *s)
{
    if (!remote_text_ok(s, REMOTE_ENV_NAME_MAX, false))
        return false;
    for (; *s; s++)
        if (*s == ' ' || *s == '\n' || *s == '\t' || *s == '"' || *s == '\\')
            return false;
    return true;
}

/* ==== learning the env (the first reset) ==== */

static int remote_learn_actions(remote_env *r, const Gtrt__EnvObs *o)
{
    if (o->n_actions < 1 || o->n_actions > ENV_MAX_ACTIONS)
        return -1;
    for (size_t i = 0; i < o->n_actions; i++) {
        if (!remote_name_ok(o->actions[i]))
            return -1;
        for (size_t j = 0; j < i; j++)
            if (strcmp(o->actions[i], o->actions[j]) == 0)
                return -1;
        snprintf(r->action_buf[i], sizeof r->action_buf[i], "%s", o->actions[i]);
        r->actions[i] = r->action_buf[i];
    }
    r->vt.n_actions = (int)o->n_actions;
    return 0;
}

/* The answer keys; "action" must be one of them and a string, because the
 * answer parser reads it. */
static int remote_learn_keys(remote_env *r, const Gtrt__EnvObs *o)
{
    bool action = false;
    if (o->n_answer_keys < 1 || o->n_answer_keys > REMOTE_ENV_MAX_KEYS)
        return -1;
    for (size_t i = 0; i < o->n_answer_keys; i++) {
        const Gtrt__EnvAnswerKey *k = o->answer_keys[i];
        bool list = k->has_list && k->list;
        if (!remote_name_ok(k->name))
            return -1;
        for (size_t j = 0; j < i; j++)
            if (strcmp(k->name, r->key_buf[j]) == 0)
                return -1;
        if (strcmp(k->name, "action") == 0) {
            if (list)
                return -1;
            action = true;
        }
        snprintf(r->key_buf[i], sizeof r->key_buf[i], "%s", k->name);
        r->keys[i].name = r->key_buf[i];
        r->keys[i].type = list ? ENV_KEY_ARRAY : ENV_KEY_STRING;
    }
    r->vt.n_keys = (int)o->n_answer_keys;
    return action ? 0 : -1;
}

static bool remote_reward_ok(double v) { return isfinite(v) && fabs(v) <= REMOTE_ENV_MAX_REWARD; }

/* The image shape: the wanted size, or the server's native size. */
static int remote_learn_shape(remote_env *r, const Gtrt__EnvObs *o, const char **why)
{
    *why = "native_w/native_h missing or outside 1..4096";
    if (!o->has_native_w || !o->has_native_h || o->native_w < 1 || o->native_h < 1 ||
        o->native_w > RENDER_MAX_SIDE || o->native_h > RENDER_MAX_SIDE)
        return -1;
    r->img_c = r->p.image_c;
    r->img_w = r->p.image_w ? r->p.image_w : (int)o->native_w;
    r->img_h = r->p.image_h ? r->p.image_h : (int)o->native_h;
    r->img_n = (size_t)r->img_c * r->img_h * r->img_w;
    *why = "image larger than REMOTE_ENV_MAX_IMAGE";
    if (r->img_n > REMOTE_ENV_MAX_IMAGE)
        return -1;
    r->image = calloc(r->img_n, 1);
    *why = "out of memory";
    return r->image ? 0 : -1;
}

static int remote_learn(remote_env *r, const Gtrt__EnvObs *o)
{
    const char *why = NULL;
    if (!remote_name_ok(o->env))
        why = "env name missing or malformed";
    else if (remote_learn_actions(r, o))
        why = "action list missing, too long, malformed or with duplicates";
    else if (remote_learn_keys(r, o))
        why = "answer keys missing, malformed, duplicated or without a string \"action\"";
    else if ((o->has_format_valid && !remote_reward_ok(o->format_valid)) ||
             (o->has_format_invalid && !remote_reward_ok(o->format_invalid)))
        why = "format rewards not finite";
    else if (remote_learn_shape(r, o, &why) == 0)
        why = NULL;
    if (why) {
        remote_bad_reply(r, why);
        return r->error.code;
    }
    snprintf(r->server_env, sizeof r->server_env, "%s", o->env);
    r->vt.format_valid = o->has_format_valid ? o->format_valid : 0.0;
    r->vt.format_invalid = o->has_format_invalid ? o->format_invalid : 0.0;
    r->vt.native_w = r->img_w;
    r->vt.native_h = r->img_h;
    return 0;
}

/* A later reset must describe the same env, if it describes it at all. */
static bool remote_same_env(const remote_env *r, const Gtrt__EnvObs *o)
{
    if (o->n_actions == 0)
        return true;
    if ((int)o->n_actions != r->vt.n_actions)
        return false;
    for (size_t i = 0; i < o->n_actions; i++)
        if (!o->actions[i] || strcmp(o->actions[i], r->actions[i]) != 0)
            return false;
    return true;
}

/* ==== replies ==== */

/* What the reply answers must be what was asked. */
static const char *remote_check_echo(const remote_env *r, const wire_msg *m)
{
    if (m->type != GTRT__MSG_TYPE__MSG_ENV_OBS)
        return "not an env_obs message";
    const Gtrt__EnvObs *o = (const Gtrt__EnvObs *)m->body;
    if (!o->has_session || o->session != r->session || !o->has_episode ||
        o->episode != r->episode)
        return "session or episode does not match the request";
    if (!o->has_step || o->step != r->steps)
        return "step count does not match the request";
    return NULL;
}

static const char *remote_check_image(const remote_env *r, const wire_msg *m)
{
    const Gtrt__EnvObs *o = (const Gtrt__EnvObs *)m->body;
    if (!o->has_image_c || !o->has_image_h || !o->has_image_w || (int)o->image_c != r->img_c ||
        (int)o->image_h != r->img_h || (int)o->image_w != r->img_w)
        return "image shape differs from the one agreed";
    if (m->npayload != 1 || m->payload[0].len != r->img_n)
        return "image payload size differs from its shape";
    return NULL;
}

static const char *remote_check_legal(const remote_env *r, const Gtrt__EnvObs *o, bool done)
{
    bool seen[ENV_MAX_ACTIONS] = {false};
    if (o->n_legal > (size_t)r->vt.n_actions)
        return "more legal actions than actions";
    for (size_t i = 0; i < o->n_legal; i++) {
        if (o->legal[i] >= (uint32_t)r->vt.n_actions || seen[o->legal[i]])
            return "legal action out of range or repeated";
        seen[o->legal[i]] = true;
    }
    if (!done && o->n_legal == 0)
        return "no legal action in a running episode";
    return NULL;
}

static const char *remote_check_info(const Gtrt__EnvObs *o, cJSON **info)
{
    *info = NULL;
    if (!o->info_json)
        return NULL;
    if (!remote_text_ok(o->info_json, REMOTE_ENV_INFO_MAX, true))
        return "info_json too long or not text";
    *info = cJSON_Parse(o->info_json);
    if (!*info || !cJSON_IsObject(*info)) {
        cJSON_Delete(*info);
        *info = NULL;
        return "info_json is not a JSON object";
    }
    return NULL;
}

/* The step part of a step reply. */
static const char *remote_check_step(const Gtrt__EnvObs *o, int action, env_result *out)
{
    if (o->has_action && (int)o->action != action)
        return "it played another action";
    if (!o->has_reward || !remote_reward_ok(o->reward))
        return "reward missing or not finite";
    bool term = o->has_terminated && o->terminated, trunc = o->has_truncated && o->truncated;
    if (o->has_done && o->done != (term || trunc))
        return "done differs from terminated or truncated";
    out->legal = !o->has_action_legal || o->action_legal;
    out->reward = o->reward;
    out->terminated = term;
    out->truncated = trunc;
    return NULL;
}

/* Check a reply and take its observation. `out` is NULL after a reset.
 * Returns 0, or the recorded error. */
static int remote_take_obs(remote_env *r, const wire_msg *m, int action, env_result *out)
{
    const char *why = remote_check_echo(r, m);
    const Gtrt__EnvObs *o = (const Gtrt__EnvObs *)m->body;
    bool done = (o->has_terminated && o->terminated) || (o->has_truncated && o->truncated);
    cJSON *info = NULL;
    if (!why)
        why = remote_check_image(r, m);
    if (!why && !remote_text_ok(o->prompt, ENV_TEXT_MAX - 1, true))
        why = "prompt missing, too long or with control characters";
    if (!why)
        why = remote_check_legal(r, o, done);
    if (!why && !out && (done || (o->has_won && o->won)))
        why = "a fresh episode is already over";
    if (!why && !out && !remote_same_env(r, o))
        why = "the action list changed";
    env_result res = {0};
    if (!why && out)
        why = remote_check_step(o, action, &res);
    if (!why)
        why = remote_check_info(o, &info);
    if (why) {
        remote_bad_reply(r, why);
        return r->error.code;
    }
    memcpy(r->image, m->payload[0].data, r->img_n);
    snprintf(r->prompt, sizeof r->prompt, "%s", o->prompt);
    memset(r->legal, 0, sizeof r->legal);
    for (size_t i = 0; i < o->n_legal; i++)
        r->legal[o->legal[i]] = true;
    r->won = o->has_won && o->won;
    cJSON_Delete(r->info);
    r->info = info;
    if (out) {
        out->legal = res.legal;
        out->reward = res.reward;
        out->terminated = res.terminated;
        out->truncated = res.truncated;
    }
    return 0;
}

/* ==== reset and step ==== */

/* Reset (cards == NULL) or deal; on success the env is healthy again. */
static int remote_request_reset(remote_env *r, const int *cards, int n, bool learn)
{
    int32_t dealt[ENV_SEEN_MAX];
    Gtrt__EnvReset q = GTRT__ENV_RESET__INIT;
    r->episode++;
    r->steps = 0;
    q.has_session = q.has_episode = q.has_seed = 1;
    q.session = r->session;
    q.episode = r->episode;
    q.seed = r->seed;
    for (int i = 0; i < n && i < ENV_SEEN_MAX; i++)
        dealt[i] = cards[i];
    q.n_cards = cards ? (size_t)(n < ENV_SEEN_MAX ? n : ENV_SEEN_MAX) : 0;
    q.cards = dealt;
    q.has_image_c = q.has_image_h = q.has_image_w = 1;
    q.image_c = (uint32_t)r->p.image_c;
    q.image_h = (uint32_t)(learn ? r->p.image_h : r->img_h);
    q.image_w = (uint32_t)(learn ? r->p.image_w : r->img_w);
    q.has_prompt_actions = q.has_solvable_only = 1;
    q.prompt_actions = r->p.prompt_actions;
    q.solvable_only = r->p.solvable_only;
    rpc_reply rep;
    int rc = remote_call(r, GTRT__MSG_TYPE__MSG_ENV_RESET, &q.base, &rep);
    if (rc)
        return rc;
    if (learn && !remote_check_echo(r, &rep.msg))
        rc = remote_learn(r, (const Gtrt__EnvObs *)rep.msg.body);
    if (!rc)
        rc = remote_take_obs(r, &rep.msg, -1, NULL);
    rpc_reply_clear(&rep);
    if (!rc)
        r->broken = false;
    return rc;
}

static void remote_vt_reset(void *st, uint64_t seed)
{
    remote_env *r = st;
    r->seed = seed;
    remote_request_reset(r, NULL, 0, false);
}

static bool remote_vt_deal(void *st, const int *cards, int n)
{
    remote_env *r = st;
    if (n < 0 || n > ENV_SEEN_MAX) {
        remote_fail(r, GTRT_EINVAL, "env server %s: %s", "too many cards to deal");
        return false;
    }
    return remote_request_reset(r, cards, n, false) == 0;
}

static void remote_vt_step(void *st, int action, env_result *out)
{
    remote_env *r = st;
    if (r->broken)
        return; /* env.c reports the pending error */
    Gtrt__EnvStep q = GTRT__ENV_STEP__INIT;
    q.has_session = q.has_episode = q.has_step = q.has_action = 1;
    q.session = r->session;
    q.episode = r->episode;
    q.step = r->steps;
    q.action = (uint32_t)action;
    rpc_reply rep;
    if (remote_call(r, GTRT__MSG_TYPE__MSG_ENV_STEP, &q.base, &rep))
        return;
    r->steps++; /* the reply describes the state after this step */
    if (remote_take_obs(r, &rep.msg, action, out))
        r->steps--;
    rpc_reply_clear(&rep);
}

/* ==== the rest of the vtable ==== */

static bool remote_vt_legal(const void *st, int action)
{
    const remote_env *r = st;
    /* A broken env keeps every move "legal" so that a caller picking a
     * random legal move still reaches env_step, which reports the error. */
    return r->broken || r->legal[action];
}

static bool remote_vt_won(const void *st)
{
    const remote_env *r = st;
    return !r->broken && r->won;
}

/* The canvas is the image's size (native_w/h), so env.c's resampling is the
 * identity and the bytes come back as value = byte / 255. */
static void remote_vt_draw(const void *st, render_canvas *c)
{
    const remote_env *r = st;
    if (r->broken || c->w != r->img_w || c->h != r->img_h)
        return;
    size_t plane = (size_t)r->img_h * r->img_w;
    for (size_t i = 0; i < plane; i++)
        for (int k = 0; k < 3; k++)
            c->rgb[i * 3 + k] = r->image[(r->img_c == 3 ? (size_t)k * plane : 0) + i];
}

static int remote_vt_prompt(const void *st, char *buf, size_t cap)
{
    const remote_env *r = st;
    return snprintf(buf, cap, "%s", r->broken ? "" : r->prompt);
}

static int remote_vt_oracle(const void *st, env_answer *a)
{
    (void)st;
    (void)a;
    return GTRT_ENOTFOUND;
}

/* Generic answer text: list keys get the seen values, "thoughts" and
 * "action" their fields, other string keys stay empty. */
static int remote_vt_format(const void *st, const env_answer *a, char *buf, size_t cap)
{
    const remote_env *r = st;
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; o && i < r->vt.n_keys; i++) {
        const char *k = r->keys[i].name;
        if (r->keys[i].type == ENV_KEY_ARRAY)
            cJSON_AddItemToObject(o, k, cJSON_CreateIntArray(a->seen, a->n_seen));
        else if (strcmp(k, "thoughts") == 0)
            cJSON_AddStringToObject(o, k, a->thoughts);
        else if (strcmp(k, "action") == 0)
            cJSON_AddStringToObject(
                o, k, a->action >= 0 && a->action < r->vt.n_actions ? r->actions[a->action] : "");
        else
            cJSON_AddStringToObject(o, k, "");
    }
    char *s = o ? cJSON_PrintUnformatted(o) : NULL;
    int n = snprintf(buf, cap, "%s", s ? s : "");
    free(s);
    cJSON_Delete(o);
    return n;
}

static void remote_vt_info(const void *st, cJSON *obj)
{
    const remote_env *r = st;
    for (const cJSON *it = r->info ? r->info->child : NULL; it; it = it->next)
        if (it->string && !cJSON_GetObjectItemCaseSensitive(obj, it->string))
            cJSON_AddItemToObject(obj, it->string, cJSON_Duplicate(it, 1));
}

static void remote_vt_init(remote_env *r)
{
    r->vt.name = r->name;
    r->vt.actions = r->actions;
    r->vt.keys = r->keys;
    r->vt.state_size = sizeof *r;
    r->vt.reset = remote_vt_reset;
    r->vt.deal = remote_vt_deal;
    r->vt.step = remote_vt_step;
    r->vt.legal = remote_vt_legal;
    r->vt.won = remote_vt_won;
    r->vt.draw = remote_vt_draw;
    r->vt.prompt = remote_vt_prompt;
    r->vt.oracle = remote_vt_oracle;
    r->vt.format = remote_vt_format;
    r->vt.info = remote_vt_info;
}

/* ==== life cycle ==== */

/* A session id and a sender id that no other client picks: the clock, the
 * pid and this allocation's address, mixed. */
static void remote_pick_ids(remote_env *r)
{
    rng g;
    rng_init(&g, clock_mono_ns() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)r);
    do
        r->session = rng_u64(&g);
    while (r->session == 0);
    snprintf(r->id, sizeof r->id, "remote-env-%ld-%016" PRIx64, (long)getpid(), r->session);
}

int remote_env_new(const char *name, const env_params *p, remote_env **out, err *e)
{
    *out = NULL;
    env_params def;
    if (!p) {
        env_params_default(&def);
        p = &def;
    }
    remote_env *r = calloc(1, sizeof *r);
    if (!r)
        return err_set(e, GTRT_ENOMEM, "out of memory");
    int rc = remote_env_parse_name(name, r->endpoint, sizeof r->endpoint, &r->opt, e);
    if (!rc && (p->image_c != 1 && p->image_c != 3))
        rc = err_set(e, GTRT_ERANGE, "env %s: %d image channels (want 1 or 3)", name,
                     p->image_c);
    if (!rc && (p->image_w < 0 || p->image_h < 0 || p->image_w > RENDER_MAX_SIDE ||
                p->image_h > RENDER_MAX_SIDE))
        rc = err_set(e, GTRT_ERANGE, "env %s: image size %dx%d outside 1..%d", name, p->image_w,
                     p->image_h, RENDER_MAX_SIDE);
    if (rc) {
        free(r);
        return rc;
    }
    snprintf(r->name, sizeof r->name, "%s%s", REMOTE_ENV_PREFIX, r->endpoint);
    r->p = *p;
    remote_vt_init(r);
    remote_pick_ids(r);
    r->zctx = zmq_ctx_new();
    if (!r->zctx) {
        free(r);
        return err_set(e, GTRT_ENET, "zmq_ctx_new failed");
    }
    rc = security_load_files(p->server_key, p->client_key, NULL, false, &r->sec, e);
    if (!rc)
        rc = rpc_client_init(&r->rpc, r->zctx, r->endpoint, GTRT__ROLE__ROLE_ACTOR, r->id,
                                    r->opt.timeout_ms, r->opt.retries,
                                    REMOTE_ENV_MAX_IMAGE + (64 << 10), r->sec, e);
    if (!rc && (rc = remote_request_reset(r, NULL, 0, true)) != 0 && e)
        *e = r->error;
    if (rc) {
        remote_env_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

void remote_env_free(remote_env *r)
{
    if (!r)
        return;
    rpc_client_deinit(&r->rpc);
    if (r->zctx)
        zmq_ctx_term(r->zctx);
    security_free(r->sec);
    cJSON_Delete(r->info);
    free(r->image);
    free(r);
}
