/* Remote environments: an env that lives in another process or language,
 * driven over ZeroMQ with the env-server messages of proto/gtrt.proto
 * (EnvReset and EnvStep, each answered by an EnvObs carrying the image as a
 * raw payload frame) and reachable as an ordinary env:
 *
 *     env_new("remote:tcp://host:5555", &params, &e, &er)
 *     env_new("remote:ipc:///run/envs/numberline#timeout_ms=500,retries=2", ...)
 *
 * The part after '#' is optional: timeout_ms (per attempt, default 5000)
 * and retries (attempts in all, default 3), so a request gives up after at
 * most timeout_ms x retries. Creating the env contacts the server once (a
 * reset with seed 0) to learn the env's actions, answer keys, format
 * rewards and image shape; a server that cannot be reached fails env_new.
 *
 * Everything the server says is untrusted: the reply must echo the session,
 * episode and step it answers, the image must have exactly the shape agreed
 * at creation, legal actions must be in range and distinct, strings are
 * bounded and free of control characters, rewards finite. A bad reply, an
 * error answer, garbage or a server that stops answering fails the reset or
 * step with GTRT_EPROTO or GTRT_ETIMEOUT and a message, and is counted in
 * remote_env_stats; the env stays usable and the next env_reset starts over
 * (on a fresh socket when the server had gone).
 *
 * env_reset returns nothing, so a failed reset is reported by the next
 * env_step (or env_deal). Oracles need the true state and are not available
 * for remote envs. */
#ifndef GTRT_REMOTE_H
#define GTRT_REMOTE_H

#include <stdbool.h>
#include <stdint.h>

#include "actor/envs/env.h"

#define REMOTE_ENV_PREFIX "remote:"

enum {
    REMOTE_ENV_TIMEOUT_MS = 5000,
    REMOTE_ENV_RETRIES = 3,
    REMOTE_ENV_MAX_IMAGE = 16 << 20, /* bytes of one observation */
    REMOTE_ENV_MAX_KEYS = 16,        /* answer keys */
    REMOTE_ENV_NAME_MAX = 31,        /* longest env name, action or key */
    REMOTE_ENV_INFO_MAX = 4096,      /* longest info_json */
};

typedef struct remote_env_options {
    int timeout_ms; /* per attempt */
    int retries;    /* attempts in all */
} remote_env_options;

typedef struct remote_env_stats {
    uint64_t requests;      /* resets and steps asked for (a retry is not a new one) */
    uint64_t failures;      /* requests that failed, for any of the reasons below */
    uint64_t timeouts;      /* no answer in time: the server is gone or stuck */
    uint64_t bad_replies;   /* replies that broke the protocol (wrong image size ...) */
    uint64_t garbage;       /* failures where only undecodable frames came back */
    uint64_t server_errors; /* the server answered with an error */
    uint64_t rejected;      /* undecodable frames dropped */
} remote_env_stats;

typedef struct remote_env remote_env;

/* True for "remote:..." names. */
bool remote_env_is_name(const char *name);
/* Split "remote:<endpoint>[#opts]" (see above). GTRT_EINVAL when malformed. */
int remote_env_parse_name(const char *name, char *endpoint, size_t cap, remote_env_options *o,
                          err *e);

/* Connect and learn the env (see above). `p` (NULL: defaults) gives the
 * wanted image size (0: the server's native size) and channels, sent with
 * every reset; the server must match them. */
int remote_env_new(const char *name, const env_params *p, remote_env **out, err *e);
void remote_env_free(remote_env *r);

/* This instance's vtable (its actions and keys come from the server); its
 * state pointer is the remote_env itself. */
const env_vtable *remote_env_vtable(const remote_env *r);
/* The error of the last failed reset, deal or step: 0 when the env is
 * healthy, else the code with its message in `e`; kept until a reset
 * succeeds. */
int remote_env_error(const remote_env *r, err *e);
const remote_env_stats *remote_env_get_stats(const remote_env *r);
/* Name of the env the server plays ("numberline"). */
const char *remote_env_server_env(const remote_env *r);

/* The remote env behind `e`, NULL for a built-in env. Defined in env.c,
 * which owns struct env. */
remote_env *remote_env_of(const env *e);

#endif
