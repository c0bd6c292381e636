/* Environments: the card games an actor plays, behind one interface.
 *
 * An env is created by name from the registry ("numberline", "ezpoints",
 * "points24", "blackjack"), reset with a seed (same seed: same deal, same
 * picture, same draws), and played one turn at a time:
 *
 *     env_render(e, img)              C×H×W floats in [0, 1] (env_image_shape)
 *     env_prompt(e, text, cap)        short task text; never shows the cards
 *     tok_encode_prompt(text, ...)    -> [image][prompt ids ... <bos>]
 *     ... the policy generates answer ids up to <end> ...
 *     tok_decode(ids, n, answer, cap)
 *     env_play_answer(e, answer, rng, &turn)
 *
 * env_play_answer parses the answer as JSON (the keys below), steps the env
 * with its action, or with a uniformly random legal action when the answer
 * is not valid, and reports the env reward and the format reward separately.
 *
 * Answers (one JSON object, exactly these keys; values are trimmed):
 *   points24, ezpoints  {"cards": [2, 3, 8, 10], "formula": "( 10 - 8",
 *                        "thoughts": "...", "action": "3"}
 *   numberline          {"current": "3", "target": "5", "thoughts": "...",
 *                        "action": "+"}
 *   blackjack           {"dealer": [10], "player": [10, 5],
 *                        "thoughts": "...", "action": "hit"}
 * Card values: ace 1, 2..10, J/Q/K 10.
 *
 * Format reward (added by the caller to the env reward when it wants it):
 * points24 and ezpoints +3 valid / -2 invalid (GTR-Turbo's values for
 * Points24; EZPoints has the same +10 win); numberline and blackjack,
 * whose wins are worth 1, +0.3 / -0.2 (the same ratio to the win).
 *
 * Each env has an oracle: an exact solver that writes a correct answer
 * (what the picture shows, the formula, a thought stating the plan, the next
 * action) from the true state, used for SFT data and as GTR's corrector. */
#ifndef GTRT_ENV_H
#define GTRT_ENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "actor/envs/render.h"
#include "common/err.h"
#include "common/rng.h"

struct cJSON;

enum {
    ENV_MAX_ACTIONS = 32,
    ENV_SEEN_MAX = 24,      /* values an answer may list */
    ENV_ANSWER_MAX = 8192,  /* longest answer text the parser looks at */
    ENV_TEXT_MAX = 1024,    /* buffer that always holds a prompt or an oracle answer */
};

typedef struct env_params {
    int image_w, image_h; /* observation size; 0: the env's native size */
    int image_c;          /* 3 (RGB) or 1 (grey) */
    bool solvable_only;   /* points24: deal only hands that have a solution */
    bool prompt_actions;  /* list every action in the prompt */
    double format_valid;  /* NAN: the env's own format rewards */
    double format_invalid;
    /* remote envs: CURVE key files (security.server_key, security.client_key);
     * NULL or "": plaintext. They point into the config and are read when
     * the env is created. */
    const char *server_key, *client_key;
} env_params;

/* Defaults: native size, RGB, solvable_only, short prompt, env format rewards. */
void env_params_default(env_params *p);
/* Defaults overlaid with the [env] section of a configuration
 * (image_width, image_height, image_channels, solvable_only,
 * prompt_actions) and the [security] key files. */
struct config;
void env_params_from_config(env_params *p, const struct config *c);

typedef struct env_result {
    int action;      /* index played */
    bool legal;      /* false when the move itself was penalised (a number not
                        among the remaining cards) */
    double reward;   /* env reward of this step */
    bool terminated; /* the game ended (win, loss, '=', bust, stand ...) */
    bool truncated;  /* a length or step limit ended it */
    bool done;       /* terminated || truncated */
} env_result;

/* An answer as fields, so that callers can alter one (e.g. misread a card)
 * and format it again with env_answer_format. */
typedef struct env_answer {
    int seen[ENV_SEEN_MAX]; /* cards (points24, ezpoints); current, target
                               (numberline); dealer's up card then the
                               player's cards (blackjack) */
    int n_seen;
    char formula[128];      /* points24, ezpoints */
    char thoughts[256];
    int action;             /* index into the env's actions */
    bool solvable;          /* false: the oracle sees no winning continuation */
} env_answer;

typedef struct env_parsed {
    bool valid;     /* a JSON object with exactly the env's keys and a known action */
    int action;     /* index, or -1 when !valid */
    char why[160];  /* what was wrong, when !valid */
} env_parsed;

typedef struct env_turn {
    env_parsed parsed;
    bool random_action;   /* the answer was invalid; a random legal action was played */
    env_result step;
    double format_reward;
} env_turn;

typedef struct env env;

/* ==== registry ==== */
int env_registry_count(void);
const char *env_registry_name(int i);

/* ==== life cycle ==== */
/* GTRT_ENOTFOUND for an unknown name, GTRT_ERANGE for a bad image size. */
int env_new(const char *name, const env_params *p, env **out, err *e);
void env_free(env *e);
const char *env_name(const env *e);
void env_reset(env *e, uint64_t seed);
/* Start an episode from chosen cards instead of a random deal (tests,
 * debugging, `gtrt env --cards`); random draws later in the episode still
 * come from the last reset's seed. cards[] holds ranks 1..13 (A, 2..10, J,
 * Q, K): points24 4 cards, ezpoints 2; blackjack the dealer's up card, the
 * dealer's hidden card, then 2 or more player cards; numberline holds
 * current and target (0..5, different). GTRT_EINVAL when they do not fit. */
int env_deal(env *e, const int *cards, int n, err *er);

/* ==== actions and steps ==== */
int env_num_actions(const env *e);
const char *env_action_text(const env *e, int action);
/* Index of the action spelt `text` (surrounding spaces ignored), or -1. */
int env_action_find(const env *e, const char *text);
/* Actions that are not penalised as illegal now; returns how many. */
int env_legal_actions(const env *e, int *out);
/* GTRT_ESTATE when the episode is over, GTRT_EINVAL for a bad index. */
int env_step(env *e, int action, env_result *out, err *er);
bool env_done(const env *e);
/* The episode ended in a win (points24/ezpoints: the formula made the
 * target; numberline: reached; blackjack: beat the dealer). */
bool env_won(const env *e);
int env_steps(const env *e);

/* ==== observation ==== */
void env_image_shape(const env *e, int *c, int *h, int *w);
size_t env_image_floats(const env *e);
void env_render(const env *e, float *chw);
/* The observation as a PNG, each pixel a scale×scale block. */
int env_write_png(const env *e, const char *path, int scale, err *er);
/* The text prompt (without <bos>); returns snprintf's count. */
int env_prompt(const env *e, char *buf, size_t cap);

/* ==== answers ==== */
int env_oracle(const env *e, env_answer *out, err *er);
/* Canonical JSON text of an answer; returns snprintf's count. */
int env_answer_format(const env *e, const env_answer *a, char *buf, size_t cap);
void env_parse_answer(const env *e, const char *text, env_parsed *out);
double env_format_reward(const env *e, bool valid);
/* Parse `text`, step with its action (or a random legal one drawn from `r`
 * when invalid). Errors as env_step. */
int env_play_answer(env *e, const char *text, rng *r, env_turn *out, err *er);

/* Env-specific state for logs and `gtrt env play` (formula, cards ...):
 * fields added to `obj`. */
void env_info(const env *e, struct cJSON *obj);

/* ==== implementing an env ==== */
typedef enum { ENV_KEY_STRING, ENV_KEY_ARRAY } env_key_type;
typedef struct env_key {
    const char *name;
    env_key_type type;
} env_key;

typedef struct env_vtable {
    const char *name;
    const char *const *actions;
    int n_actions;
    const env_key *keys; /* the answer's keys, "action" among them */
    int n_keys;
    int native_w, native_h;
    double format_valid, format_invalid;
    size_t state_size;
    void (*init)(void *st, const env_params *p);
    void (*reset)(void *st, uint64_t seed);
    /* Returns false when the cards do not fit the game. */
    bool (*deal)(void *st, const int *cards, int n);
    /* Called only while the episode runs; fills reward, legal, terminated,
     * truncated. */
    void (*step)(void *st, int action, env_result *out);
    bool (*legal)(const void *st, int action);
    bool (*won)(const void *st);
    void (*draw)(const void *st, render_canvas *c);
    int (*prompt)(const void *st, char *buf, size_t cap);
    int (*oracle)(const void *st, env_answer *a);
    int (*format)(const void *st, const env_answer *a, char *buf, size_t cap);
    void (*info)(const void *st, struct cJSON *obj);
} env_vtable;

extern const env_vtable numberline_vtable, ezpoints_vtable, points24_vtable, blackjack_vtable;

/* Helpers shared by the env files. */
/* "2H", "10S", "KC" */
const char *env_card_name(int rank, font_suit suit, char *buf, size_t cap);
/* Rank 1..13 to value: ace 1, J/Q/K 10. */
int env_card_value(int rank);
/* Comma-separated values "2, 3, 8, 10". */
int env_format_values(const int *v, int n, char *buf, size_t cap);

#endif
