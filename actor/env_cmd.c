/* `gtrt env`: the environments from the command line, for people and for
 * scripts: `play` steps an env through a list of actions and prints one
 * JSON line per step, `render` writes the observation as a PNG, `solve`
 * prints the oracle's answer, `list` shows the envs and their actions.
 * Every sub-command may first play --actions, so any state can be drawn or
 * solved. */
#include "actor/env_cmd.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actor/envs/env.h"
#include "common/cli.h"
#include "common/config.h"
#include "common/tokenizer.h"

enum {
    ENV_CMD_MAX_ACTIONS = 4096,    /* longest --actions list accepted */
    ENV_CMD_MAX_ARG = 64 * 1024,   /* longest --actions text accepted */
    ENV_CMD_TOKENS = 1024,
};

typedef struct env_cmd_opts {
    const char *env;
    long seed;
    const char *actions;
    const char *cards;
    const char *out;
    long scale;
    int oracle;
    int tokens;
} env_cmd_opts;

static void env_cmd_usage(FILE *f)
{
    fprintf(f,
            "usage: gtrt env <command> [options]\n\n"
            "commands:\n"
            "  play     step an env through --actions, one JSON line per step\n"
            "  render   write the observation as a PNG (-o FILE)\n"
            "  solve    print the oracle's answer for the current state\n"
            "  list     the envs and their actions\n\n"
            "Try 'gtrt env <command> --help'.\n");
}

/* ==== actions ==== */

/* Split "10,-,8" into action indices. Prints the problem and returns
 * GTRT_EINVAL on an unknown action, an empty item or a list too long. */
static int env_cmd_parse_actions(const env *e, const char *text, int *out, int *n)
{
    *n = 0;
    if (strlen(text) > ENV_CMD_MAX_ARG) {
        fprintf(stderr, "gtrt env: --actions is longer than %d characters\n", ENV_CMD_MAX_ARG);
        return GTRT_EINVAL;
    }
    char *copy = strdup(text);
    if (!copy)
        return GTRT_ENOMEM;
    int rc = 0;
    /* strtok would skip empty items; walk the commas by hand instead. */
    char *item = copy;
    for (;;) {
        char *comma = strchr(item, ',');
        if (comma)
            *comma = '\0';
        int a = env_action_find(e, item);
        if (a < 0) {
            fprintf(stderr, "gtrt env: unknown action '%s' for %s (actions:", item,
                    env_name(e));
            for (int i = 0; i < env_num_actions(e); i++)
                fprintf(stderr, " %s", env_action_text(e, i));
            fprintf(stderr, ")\n");
            rc = GTRT_EINVAL;
            break;
        }
        if (*n >= ENV_CMD_MAX_ACTIONS) {
            fprintf(stderr, "gtrt env: more than %d actions\n", ENV_CMD_MAX_ACTIONS);
            rc = GTRT_EINVAL;
            break;
        }
        out[(*n)++] = a;
        if (!comma)
            break;
        item = comma + 1;
    }
    free(copy);
    return rc;
}

/* Deal "8,3,Q,A" (ranks as numbers 1..13 or A, J, Q, K). Returns the exit
 * status: 0, or 2 after printing what is wrong. */
static int env_cmd_deal(env *e, const char *text)
{
    int cards[32], n = 0;
    const char *s = text;
    while (*s) {
        char item[8];
        size_t len = strcspn(s, ",");
        if (len == 0 || len >= sizeof item || n == 32) {
            fprintf(stderr, "gtrt env: bad --cards '%s'\n", text);
            return 2;
        }
        memcpy(item, s, len);
        item[len] = '\0';
        static const char *const faces[] = {"A", "J", "Q", "K"};
        static const int face_rank[] = {1, 11, 12, 13};
        int rank = 0;
        for (int i = 0; i < 4; i++)
            if (!strcmp(item, faces[i]))
                rank = face_rank[i];
        if (!rank) {
            char *end;
            long v = strtol(item, &end, 10);
            rank = (*end || v < 0 || v > 13) ? -1 : (int)v;
        }
        if (rank < 0) {
            fprintf(stderr, "gtrt env: bad card '%s' in --cards\n", item);
            return 2;
        }
        cards[n++] = rank;
        s += len;
        if (*s == ',')
            s++;
    }
    err er = {0};
    if (env_deal(e, cards, n, &er)) {
        fprintf(stderr, "gtrt env: %s\n", er.msg);
        return 2;
    }
    return 0;
}

/* One JSON line for a step: what was played, what it earned, the state. */
static void env_cmd_print_step(const env *e, int step, const env_result *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", step);
    cJSON_AddStringToObject(o, "action", env_action_text(e, r->action));
    cJSON_AddBoolToObject(o, "legal", r->legal);
    cJSON_AddNumberToObject(o, "reward", r->reward);
    cJSON_AddBoolToObject(o, "done", r->done);
    cJSON_AddBoolToObject(o, "truncated", r->truncated);
    env_info(e, o);
    if (r->done)
        cJSON_AddBoolToObject(o, "won", env_won(e));
    char *s = cJSON_PrintUnformatted(o);
    if (s)
        printf("%s\n", s);
    free(s);
    cJSON_Delete(o);
}

/* Play the actions (printing each step when `print`). Returns the exit
 * status: 0, 2 for a bad list (nothing is played), 1 when a step fails or
 * actions are left after the episode ended. */
static int env_cmd_play_actions(env *e, const char *text, bool print)
{
    if (!text)
        return 0;
    int *acts = malloc(sizeof(int) * ENV_CMD_MAX_ACTIONS);
    if (!acts)
        return 1;
    int n = 0;
    if (env_cmd_parse_actions(e, text, acts, &n)) {
        free(acts);
        return 2;
    }
    int rc = 0;
    for (int i = 0; !rc && i < n; i++) {
        if (env_done(e)) {
            fprintf(stderr,
                    "gtrt env: the episode ended after step %d; %d action(s) left unplayed\n",
                    i, n - i);
            rc = GTRT_ESTATE;
            break;
        }
        env_result r;
        err er = {0};
        rc = env_step(e, acts[i], &r, &er);
        if (rc)
            fprintf(stderr, "gtrt env: %s\n", er.msg);
        else if (print)
            env_cmd_print_step(e, i + 1, &r);
    }
    free(acts);
    return rc ? 1 : 0;
}

/* Play the oracle's action until the episode ends. */
static int env_cmd_play_oracle(env *e, int first_step)
{
    for (int step = first_step; !env_done(e); step++) {
        env_answer a;
        env_result r;
        err er = {0};
        if (env_oracle(e, &a, &er) || env_step(e, a.action, &r, &er)) {
            fprintf(stderr, "gtrt env: %s\n", er.msg);
            return 1;
        }
        env_cmd_print_step(e, step, &r);
    }
    return 0;
}

/* ==== sub-commands ==== */

static int env_cmd_play(env *e, const env_cmd_opts *o)
{
    if (!o->actions && !o->oracle) {
        fprintf(stderr, "gtrt env play: give --actions A,B,... or --oracle\n");
        return 2;
    }
    if (o->actions && !o->actions[0]) {
        fprintf(stderr, "gtrt env play: --actions is empty\n");
        return 2;
    }
    int rc = env_cmd_play_actions(e, o->actions, true);
    if (!rc && o->oracle)
        rc = env_cmd_play_oracle(e, env_steps(e) + 1);
    return rc;
}

static int env_cmd_render(env *e, const env_cmd_opts *o)
{
    if (!o->out) {
        fprintf(stderr, "gtrt env render: give -o FILE.png\n");
        return 2;
    }
    if (o->scale < 1 || o->scale > 64) {
        fprintf(stderr, "gtrt env render: --scale must be 1..64\n");
        return 2;
    }
    int rc = env_cmd_play_actions(e, o->actions, false);
    if (rc)
        return rc;
    err er = {0};
    if (env_write_png(e, o->out, (int)o->scale, &er)) {
        fprintf(stderr, "gtrt env render: %s\n", er.msg);
        return 1;
    }
    int c, h, w;
    env_image_shape(e, &c, &h, &w);
    fprintf(stderr, "wrote %s (%dx%d, the %dx%d observation scaled %ld times)\n", o->out,
            w * (int)o->scale, h * (int)o->scale, w, h, o->scale);
    return 0;
}

/* Token counts of a turn, for sizing the model's context. */
static void env_cmd_print_tokens(const env *e, const char *prompt, const char *answer)
{
    int32_t ids[ENV_CMD_TOKENS];
    int c, h, w;
    env_image_shape(e, &c, &h, &w);
    int np = tok_encode_prompt(prompt, ids, ENV_CMD_TOKENS, NULL);
    int na = tok_encode_answer(answer, ids, ENV_CMD_TOKENS, NULL);
    int patches = (h / 8) * (w / 8);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "prompt", prompt);
    int shape[3] = {c, h, w};
    cJSON_AddItemToObject(o, "image", cJSON_CreateIntArray(shape, 3));
    cJSON_AddNumberToObject(o, "patches_8x8", patches);
    cJSON_AddNumberToObject(o, "prompt_tokens", np);
    cJSON_AddNumberToObject(o, "answer_tokens", na);
    cJSON_AddNumberToObject(o, "turn_tokens", patches + np + na);
    char *s = cJSON_PrintUnformatted(o);
    if (s)
        printf("%s\n", s);
    free(s);
    cJSON_Delete(o);
}

static int env_cmd_solve(env *e, const env_cmd_opts *o)
{
    int rc = env_cmd_play_actions(e, o->actions, false);
    if (rc)
        return rc;
    env_answer a;
    err er = {0};
    if (env_oracle(e, &a, &er)) {
        fprintf(stderr, "gtrt env solve: %s\n", er.msg);
        return 1;
    }
    char text[ENV_TEXT_MAX];
    env_answer_format(e, &a, text, sizeof text);
    printf("%s\n", text);
    if (o->tokens) {
        char prompt[ENV_TEXT_MAX];
        env_prompt(e, prompt, sizeof prompt);
        env_cmd_print_tokens(e, prompt, text);
    }
    return 0;
}

static int env_cmd_list(void)
{
    for (int i = 0; i < env_registry_count(); i++) {
        env *e;
        if (env_new(env_registry_name(i), NULL, &e, NULL))
            return 1;
        int c, h, w;
        env_image_shape(e, &c, &h, &w);
        printf("%-11s %dx%d  actions:", env_name(e), w, h);
        for (int a = 0; a < env_num_actions(e); a++)
            printf(" %s", env_action_text(e, a));
        printf("\n");
        env_free(e);
    }
    return 0;
}

/* ==== entry ==== */

static const cli_cmd env_cmd_cmds[] = {
    {"env play", "", "Step an env through a list of actions; one JSON line per step.",
     "Each line: step, action, legal, reward, done, truncated, the env's state\n"
     "(points24: formula, cards) and, on the last step, won. Example:\n"
     "  gtrt env play --env points24 --seed 3 --actions \"10,+,2\"\n"
     "--oracle plays the oracle's moves (after --actions, if given) to the end."},
    {"env render", "", "Write the observation as a PNG.",
     "The observation the policy sees, each pixel drawn as a scale x scale block.\n"
     "--actions are played first. Example:\n"
     "  gtrt env render --env points24 --seed 3 -o obs.png"},
    {"env solve", "", "Print the oracle's answer (JSON) for the current state.",
     "--actions are played first. --tokens adds a line with the prompt and the\n"
     "turn's token counts."},
};

static int env_cmd_run(int argc, char **argv, const cli_cmd *cmd, const char *sub)
{
    env_cmd_opts o = {.seed = -1, .scale = 8};
    cli_opt opts[] = {
        {"env", CLI_STR, &o.env, "NAME", "numberline | ezpoints | points24 | blackjack (env.name)"},
        {"seed", CLI_INT, &o.seed, "N", "seed of the deal (env.seed)"},
        {"actions", CLI_STR, &o.actions, "A,B,...", "actions to play, comma-separated"},
        {"cards", CLI_STR, &o.cards, "C,C,...",
         "deal these cards instead (ranks 1..13 or A J Q K; numberline: current,target; "
         "blackjack: dealer up, hidden, player...)"},
        {"out", CLI_STR, &o.out, "FILE", "render: PNG to write (also -o FILE)"},
        {"scale", CLI_INT, &o.scale, "N", "render: pixels per observation pixel (default 8)"},
        {"oracle", CLI_FLAG, &o.oracle, NULL, "play: play the oracle's moves to the end"},
        {"tokens", CLI_FLAG, &o.tokens, NULL, "solve: also print the turn's token counts"},
        {0},
    };
    cli_common common;
    int rc = cli_parse(argc, argv, cmd, opts, &common, NULL, NULL, 0);
    if (rc)
        return rc > 0 ? 0 : 2;
    config *cfg = cli_config(&common);
    if (!cfg)
        return 2;
    const char *name = o.env ? o.env : config_str(cfg, "env.name");
    uint64_t seed = o.seed >= 0 ? (uint64_t)o.seed : (uint64_t)config_int(cfg, "env.seed");
    env_params p;
    env_params_from_config(&p, cfg);
    env *e = NULL;
    err er = {0};
    rc = env_new(name, &p, &e, &er);
    config_free(cfg);
    if (rc) {
        fprintf(stderr, "gtrt %s: %s\n", cmd->name, er.msg);
        return 2;
    }
    env_reset(e, seed);
    if (o.cards && (rc = env_cmd_deal(e, o.cards)) != 0) {
        env_free(e);
        return rc;
    }
    if (!strcmp(sub, "play"))
        rc = env_cmd_play(e, &o);
    else if (!strcmp(sub, "render"))
        rc = env_cmd_render(e, &o);
    else
        rc = env_cmd_solve(e, &o);
    env_free(e);
    return rc;
}

int actor_env_main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        env_cmd_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "list"))
        return env_cmd_list();
    const cli_cmd *cmd = NULL;
    for (size_t i = 0; i < sizeof env_cmd_cmds / sizeof env_cmd_cmds[0]; i++)
        if (!strcmp(env_cmd_cmds[i].name + 4, sub))
            cmd = &env_cmd_cmds[i];
    if (!cmd) {
        fprintf(stderr, "gtrt env: unknown command '%s'\n\n", sub);
        env_cmd_usage(stderr);
        return 2;
    }
    return env_cmd_run(argc - 1, argv + 1, cmd, sub);
}
