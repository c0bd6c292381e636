/* The env registry and the parts every env shares: the episode bookkeeping,
 * observation rendering, answer parsing and the format reward (see env.h). */
#include "actor/envs/env.h"

#include <assert.h>
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actor/envs/remote.h"
#include "common/config.h"

struct env {
    const env_vtable *vt;
    env_params p;
    int img_w, img_h, img_c;
    void *st;
    int steps;
    bool done;
    remote_env *remote; /* "remote:..." envs: the client, which is also st */
};

static const env_vtable *const env_registry[] = {
    &numberline_vtable,
    &ezpoints_vtable,
    &points24_vtable,
    &blackjack_vtable,
};

enum { ENV_REGISTRY_N = sizeof env_registry / sizeof env_registry[0] };

int env_registry_count(void) { return ENV_REGISTRY_N; }

const char *env_registry_name(int i)
{
    return i >= 0 && i < ENV_REGISTRY_N ? env_registry[i]->name : NULL;
}

void env_params_default(env_params *p)
{
    memset(p, 0, sizeof *p);
    p->image_c = 3;
    p->solvable_only = true;
    p->format_valid = NAN;
    p->format_invalid = NAN;
}

void env_params_from_config(env_params *p, const config *c)
{
    env_params_default(p);
    p->image_w = (int)config_int(c, "env.image_width");
    p->image_h = (int)config_int(c, "env.image_height");
    p->image_c = (int)config_int(c, "env.image_channels");
    p->solvable_only = config_bool(c, "env.solvable_only");
    p->prompt_actions = config_bool(c, "env.prompt_actions");
    p->server_key = config_str(c, "security.server_key");
    p->client_key = config_str(c, "security.client_key");
}

/* ==== life cycle ==== */

/* A remote env brings its own vtable and state (see remote.h); the server
 * has already been reset once to learn the env. */
static int env_new_remote(const char *name, const env_params *p, env **out, err *e)
{
    env *en = calloc(1, sizeof *en);
    if (!en)
        return err_set(e, GTRT_ENOMEM, "env %s: out of memory", name);
    int rc = remote_env_new(name, p, &en->remote, e);
    if (rc) {
        free(en);
        return rc;
    }
    en->vt = remote_env_vtable(en->remote);
    en->p = *p;
    en->img_w = en->vt->native_w;
    en->img_h = en->vt->native_h;
    en->img_c = p->image_c;
    en->st = en->remote;
    *out = en;
    return 0;
}

remote_env *remote_env_of(const env *e) { return e->remote; }

int env_new(const char *name, const env_params *p, env **out, err *e)
{
    *out = NULL;
    env_params def;
    if (!p) {
        env_params_default(&def);
        p = &def;
    }
    if (remote_env_is_name(name))
        return env_new_remote(name, p, out, e);
    const env_vtable *vt = NULL;
    for (int i = 0; i < ENV_REGISTRY_N; i++)
        if (strcmp(env_registry[i]->name, name) == 0)
            vt = env_registry[i];
    if (!vt)
        return err_set(e, GTRT_ENOTFOUND,
                       "unknown env '%s' (known: numberline, ezpoints, points24, blackjack, "
                       "remote:<endpoint>)",
                       name);
    int w = p->image_w ? p->image_w : vt->native_w;
    int h = p->image_h ? p->image_h : vt->native_h;
    if (w < 1 || h < 1 || w > RENDER_MAX_SIDE || h > RENDER_MAX_SIDE)
        return err_set(e, GTRT_ERANGE, "env %s: image size %dx%d outside 1..%d", name, w, h,
                       RENDER_MAX_SIDE);
    if (p->image_c != 1 && p->image_c != 3)
        return err_set(e, GTRT_ERANGE, "env %s: %d image channels (want 1 or 3)", name,
                       p->image_c);
    env *en = calloc(1, sizeof *en);
    void *st = calloc(1, vt->state_size);
    if (!en || !st) {
        free(en);
        free(st);
        return err_set(e, GTRT_ENOMEM, "env %s: out of memory", name);
    }
    en->vt = vt;
    en->p = *p;
    en->img_w = w;
    en->img_h = h;
    en->img_c = p->image_c;
    en->st = st;
    vt->init(st, p);
    env_reset(en, 0);
    *out = en;
    return 0;
}

void env_free(env *e)
{
    if (!e)
        return;
    if (e->remote)
        remote_env_free(e->remote);
    else
        free(e->st);
    free(e);
}

const char *env_name(const env *e) { return e->vt->name; }

void env_reset(env *e, uint64_t seed)
{
    e->vt->reset(e->st, seed);
    e->steps = 0;
    e->done = false;
}

int env_deal(env *e, const int *cards, int n, err *er)
{
    bool ok = e->vt->deal(e->st, cards, n);
    if (!ok && e->remote)
        return remote_env_error(e->remote, er);
    if (!ok)
        return err_set(er, GTRT_EINVAL, "env %s: these %d cards cannot be dealt", e->vt->name,
                       n);
    e->steps = 0;
    e->done = false;
    return 0;
}

/* ==== actions and steps ==== */

int env_num_actions(const env *e) { return e->vt->n_actions; }

const char *env_action_text(const env *e, int action)
{
    return action >= 0 && action < e->vt->n_actions ? e->vt->actions[action] : NULL;
}

int env_action_find(const env *e, const char *text)
{
    while (*text && isspace((unsigned char)*text))
        text++;
    size_t n = strlen(text);
    while (n && isspace((unsigned char)text[n - 1]))
        n--;
    for (int i = 0; i < e->vt->n_actions; i++)
        if (strlen(e->vt->actions[i]) == n && strncmp(e->vt->actions[i], text, n) == 0)
            return i;
    return -1;
}

int env_legal_actions(const env *e, int *out)
{
    int n = 0;
    for (int i = 0; i < e->vt->n_actions; i++)
        if (e->vt->legal(e->st, i))
            out[n++] = i;
    return n;
}

int env_step(env *e, int action, env_result *out, err *er)
{
    if (e->done)
        return err_set(er, GTRT_ESTATE, "env %s: the episode is over (after %d steps)",
                       e->vt->name, e->steps);
    if (action < 0 || action >= e->vt->n_actions)
        return err_set(er, GTRT_EINVAL, "env %s: action %d outside 0..%d", e->vt->name, action,
                       e->vt->n_actions - 1);
    memset(out, 0, sizeof *out);
    out->action = action;
    out->legal = true;
    e->vt->step(e->st, action, out);
    /* A remote env fails on its own: the server gone, a bad reply. The
     * episode is then over for the caller, who resets. */
    int rc = e->remote ? remote_env_error(e->remote, er) : 0;
    if (rc) {
        e->done = true;
        return rc;
    }
    out->done = out->terminated || out->truncated;
    e->done = out->done;
    e->steps++;
    return 0;
}

bool env_done(const env *e) { return e->done; }
bool env_won(const env *e) { return e->vt->won(e->st); }
int env_steps(const env *e) { return e->steps; }

/* ==== observation ==== */

void env_image_shape(const env *e, int *c, int *h, int *w)
{
    *c = e->img_c;
    *h = e->img_h;
    *w = e->img_w;
}

size_t env_image_floats(const env *e) { return (size_t)e->img_c * e->img_h * e->img_w; }

void env_render(const env *e, float *chw)
{
    render_canvas c;
    /* The canvas is at most a few KiB; failing to get it is an out-of-memory
     * condition the caller cannot act on either. */
    int rc = render_canvas_init(&c, e->vt->native_w, e->vt->native_h, RENDER_FELT, NULL);
    assert(rc == 0);
    (void)rc;
    e->vt->draw(e->st, &c);
    render_to_chw(&c, chw, e->img_c, e->img_h, e->img_w);
    render_canvas_deinit(&c);
}

int env_write_png(const env *e, const char *path, int scale, err *er)
{
    float *img = malloc(env_image_floats(e) * sizeof *img);
    if (!img)
        return err_set(er, GTRT_ENOMEM, "out of memory");
    env_render(e, img);
    int rc = render_write_png(path, img, e->img_c, e->img_h, e->img_w, scale, er);
    free(img);
    return rc;
}

int env_prompt(const env *e, char *buf, size_t cap) { return e->vt->prompt(e->st, buf, cap); }

/* ==== answers ==== */

int env_oracle(const env *e, env_answer *out, err *er)
{
    memset(out, 0, sizeof *out);
    if (e->remote)
        return err_set(er, GTRT_ENOTFOUND,
                       "env %s: no oracle for a remote env (it needs the true state)",
                       e->vt->name);
    if (e->done)
        return err_set(er, GTRT_ESTATE, "env %s: the episode is over", e->vt->name);
    int rc = e->vt->oracle(e->st, out);
    if (rc < 0)
        return err_set(er, rc, "env %s: the oracle failed (%s)", e->vt->name, err_str(rc));
    return 0;
}

int env_answer_format(const env *e, const env_answer *a, char *buf, size_t cap)
{
    return e->vt->format(e->st, a, buf, cap);
}

static void env_reject(env_parsed *out, const char *fmt, const char *arg)
{
    out->valid = false;
    out->action = -1;
    snprintf(out->why, sizeof out->why, fmt, arg);
}

static const env_key *env_key_find(const env_vtable *vt, const char *name)
{
    for (int i = 0; i < vt->n_keys; i++)
        if (strcmp(vt->keys[i].name, name) == 0)
            return &vt->keys[i];
    return NULL;
}

/* Keys: exactly the env's, each once, of the right type. */
static bool env_check_keys(const env_vtable *vt, const cJSON *obj, env_parsed *out)
{
    int seen = 0;
    for (const cJSON *it = obj->child; it; it = it->next) {
        const env_key *k = it->string ? env_key_find(vt, it->string) : NULL;
        if (!k) {
            env_reject(out, "unexpected key \"%.100s\"", it->string ? it->string : "");
            return false;
        }
        int bit = 1 << (int)(k - vt->keys);
        if (seen & bit) {
            env_reject(out, "key \"%s\" appears twice", k->name);
            return false;
        }
        seen |= bit;
        bool ok = k->type == ENV_KEY_STRING ? cJSON_IsString(it) : cJSON_IsArray(it);
        if (!ok) {
            env_reject(out, k->type == ENV_KEY_STRING ? "\"%s\" is not a string"
                                                      : "\"%s\" is not a list",
                       k->name);
            return false;
        }
    }
    for (int i = 0; i < vt->n_keys; i++)
        if (!(seen & (1 << i))) {
            env_reject(out, "key \"%s\" is missing", vt->keys[i].name);
            return false;
        }
    return true;
}

void env_parse_answer(const env *e, const char *text, env_parsed *out)
{
    memset(out, 0, sizeof *out);
    out->action = -1;
    if (strnlen(text, ENV_ANSWER_MAX + 1) > ENV_ANSWER_MAX) {
        env_reject(out, "answer longer than %s characters", "8192");
        return;
    }
    cJSON *obj = cJSON_ParseWithOpts(text, NULL, 1);
    if (!obj || !cJSON_IsObject(obj)) {
        env_reject(out, "%s", obj ? "not a JSON object" : "not valid JSON");
        cJSON_Delete(obj);
        return;
    }
    if (env_check_keys(e->vt, obj, out)) {
        const char *act = cJSON_GetObjectItemCaseSensitive(obj, "action")->valuestring;
        int a = env_action_find(e, act);
        if (a < 0) {
            env_reject(out, "unknown action \"%.100s\"", act);
        } else {
            out->valid = true;
            out->action = a;
        }
    }
    cJSON_Delete(obj);
}

double env_format_reward(const env *e, bool valid)
{
    double v = valid ? e->p.format_valid : e->p.format_invalid;
    if (isnan(v))
        v = valid ? e->vt->format_valid : e->vt->format_invalid;
    return v;
}

int env_play_answer(env *e, const char *text, rng *r, env_turn *out, err *er)
{
    memset(out, 0, sizeof *out);
    env_parse_answer(e, text, &out->parsed);
    int action = out->parsed.action;
    if (!out->parsed.valid) {
        int legal[ENV_MAX_ACTIONS];
        int n = env_legal_actions(e, legal);
        /* Every env keeps at least one move legal (an operator or '='). */
        assert(n > 0);
        action = legal[rng_below(r, (uint64_t)n)];
        out->random_action = true;
    }
    out->format_reward = env_format_reward(e, out->parsed.valid);
    return env_step(e, action, &out->step, er);
}

void env_info(const env *e, cJSON *obj) { e->vt->info(e->st, obj); }

/* ==== helpers for the env files ==== */

const char *env_card_name(int rank, font_suit suit, char *buf, size_t cap)
{
    static const char suits[] = "HDSC";
    snprintf(buf, cap, "%s%c", render_rank_name(rank), suits[suit & 3]);
    return buf;
}

int env_card_value(int rank) { return rank > 10 ? 10 : rank; }

int env_format_values(const int *v, int n, char *buf, size_t cap)
{
    size_t used = 0;
    if (cap)
        buf[0] = '\0';
    for (int i = 0; i < n; i++)
        used += (size_t)snprintf(used < cap ? buf + used : NULL, used < cap ? cap - used : 0,
                                 "%s%d", i ? ", " : "", v[i]);
    return (int)used;
}
