/* `gtrt logits`: look at what a running teacher thinks of an answer.
 *
 * The observation is built exactly as an actor builds it (actor/rollout.c):
 * the env reset with the seed (after --actions, if any), rendered, each
 * pixel quantised to a byte, the prompt encoded and closed with <bos>; the
 * answer (given, or the env oracle's) is encoded and closed with <end>.
 * The teacher is asked through the teacher client (common/tclient.h), so
 * several endpoints, timeouts and retries behave as they will for actors.
 * Output: one row per answer token (position, text, kind, logprob, and the
 * top-k alternatives or the distribution's rank and entropy), or one JSON
 * object. --generate asks the teacher to write the answer instead. */
#include "teacher/logits_cmd.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actor/envs/env.h"
#include "common/cli.h"
#include "common/security.h"
#include "common/tclient.h"
#include "common/tokenizer.h"
#include "common/traj.h"

enum { LOGITS_MAX_TOKENS = 1024, LOGITS_MAX_ACTIONS = 256 };

typedef struct logits_opts {
    const char *teacher, *env, *actions, *answer, *save_obs;
    long seed, topk, min_version, max_new, sample_seed, timeout_ms, attempts;
    double temperature;
    int full, f16, json, generate;
} logits_opts;

/* One turn as the actor would feed it. */
typedef struct logits_obs {
    char env[32];
    uint64_t seed;
    int c, h, w;
    uint8_t *image;
    char prompt[ENV_TEXT_MAX];
    char answer[ENV_ANSWER_MAX];
    int32_t prompt_ids[LOGITS_MAX_TOKENS], answer_ids[LOGITS_MAX_TOKENS];
    uint8_t kind[LOGITS_MAX_TOKENS];
    int n_prompt, n_answer;
    env *e;
} logits_obs;

/* ==== the observation ==== */

/* Play "10,+,2" before observing, so any turn can be examined. */
static int logits_play(env *e, const char *list, err *er)
{
    char buf[4096];
    if (strlen(list) >= sizeof buf)
        return err_set(er, GTRT_EINVAL, "--actions is longer than %zu characters", sizeof buf - 1);
    snprintf(buf, sizeof buf, "%s", list);
    int n = 0;
    for (char *item = buf; item; n++) {
        char *comma = strchr(item, ',');
        if (comma)
            *comma = '\0';
        int a = env_action_find(e, item);
        if (a < 0)
            return err_set(er, GTRT_EINVAL, "unknown action '%s' for %s", item, env_name(e));
        if (n >= LOGITS_MAX_ACTIONS || env_done(e))
            return err_set(er, GTRT_EINVAL, "the episode is over after %d of the --actions", n);
        env_result r;
        int rc = env_step(e, a, &r, er);
        if (rc)
            return rc;
        item = comma ? comma + 1 : NULL;
    }
    return 0;
}

/* Render and quantise as rollout_observe does: clamp to [0, 1], byte =
 * round(255 x), which is what the teacher turns back into floats. */
static int logits_image(logits_obs *o, err *er)
{
    env_image_shape(o->e, &o->c, &o->h, &o->w);
    size_t n = env_image_floats(o->e);
    float *img = malloc(n * sizeof *img);
    o->image = malloc(n);
    if (!img || !o->image) {
        free(img);
        return err_set(er, GTRT_ENOMEM, "out of memory");
    }
    env_render(o->e, img);
    for (size_t k = 0; k < n; k++) {
        float x = img[k] < 0 ? 0 : img[k] > 1 ? 1 : img[k];
        o->image[k] = (uint8_t)lrintf(x * 255.0f);
    }
    free(img);
    return 0;
}

static int logits_texts(logits_obs *o, const char *answer, err *er)
{
    env_prompt(o->e, o->prompt, sizeof o->prompt);
    int n = tok_encode_prompt(o->prompt, o->prompt_ids, LOGITS_MAX_TOKENS, er);
    if (n < 0)
        return n;
    o->n_prompt = n;
    if (answer) {
        if (strlen(answer) >= sizeof o->answer)
            return err_set(er, GTRT_EINVAL, "--answer is longer than %zu characters",
                           sizeof o->answer - 1);
        snprintf(o->answer, sizeof o->answer, "%s", answer);
    } else {
        env_answer a;
        int rc = env_oracle(o->e, &a, er);
        if (rc)
            return err_prefix(er, "no --answer given and the oracle cannot write one");
        env_answer_format(o->e, &a, o->answer, sizeof o->answer);
    }
    if ((n = tok_encode_answer(o->answer, o->answer_ids, LOGITS_MAX_TOKENS, er)) < 0)
        return n;
    o->n_answer = n;
    tok_answer_parts(o->answer_ids, n, o->kind);
    return 0;
}

static int logits_observe(logits_obs *o, const config *cfg, const logits_opts *opt, err *er)
{
    memset(o, 0, sizeof *o);
    snprintf(o->env, sizeof o->env, "%s", opt->env ? opt->env : config_str(cfg, "env.name"));
    o->seed = opt->seed >= 0 ? (uint64_t)opt->seed : (uint64_t)config_int(cfg, "env.seed");
    env_params p;
    env_params_from_config(&p, cfg);
    int rc = env_new(o->env, &p, &o->e, er);
    if (rc)
        return rc;
    env_reset(o->e, o->seed);
    if (opt->actions && (rc = logits_play(o->e, opt->actions, er)))
        return rc;
    if (env_done(o->e))
        return err_set(er, GTRT_ESTATE, "the episode is over: there is no turn to look at");
    if ((rc = logits_image(o, er)))
        return rc;
    return logits_texts(o, opt->answer, er);
}

/* The image bytes exactly as the teacher gets them, for other clients. */
static int logits_save_obs(const logits_obs *o, const char *path, err *er)
{
    FILE *f = fopen(path, "wb");
    size_t n = (size_t)o->c * (size_t)o->h * (size_t)o->w;
    if (!f || fwrite(o->image, 1, n, f) != n) {
        if (f)
            fclose(f);
        return err_set(er, GTRT_EIO, "cannot write %s", path);
    }
    return fclose(f) ? err_set(er, GTRT_EIO, "cannot write %s", path) : 0;
}

static void logits_obs_free(logits_obs *o)
{
    free(o->image);
    env_free(o->e);
}

/* ==== asking ==== */

static tclient_seq logits_seq(const logits_obs *o)
{
    return (tclient_seq){.image = o->image, .image_c = o->c, .image_h = o->h, .image_w = o->w,
                         .prompt = o->prompt_ids, .n_prompt = o->n_prompt,
                         .answer = o->answer_ids, .n_answer = o->n_answer};
}

/* The token's own logprob (always), plus top-k or the full distribution
 * when asked; the second request wants at least the first's version. */
static int logits_ask(tclient *c, const logits_obs *o, const logits_opts *opt,
                      tclient_scores *own, tclient_scores *extra, err *er)
{
    tclient_seq s = logits_seq(o);
    tclient_logits_req r = {.mode = opt->full ? TCLIENT_FULL : TCLIENT_SAMPLED,
                            .temperature = isnan(opt->temperature) ? 0.0f : (float)opt->temperature,
                            .f16 = opt->f16 != 0, .min_version = (uint64_t)opt->min_version,
                            .seqs = &s, .n_seq = 1};
    int rc = tclient_logits(c, &r, own, er);
    if (rc || opt->topk <= 0)
        return rc;
    r.mode = TCLIENT_TOPK;
    r.top_k = (int)opt->topk;
    r.min_version = own->teacher_version;
    return tclient_logits(c, &r, extra, er);
}

/* ==== printing ==== */

static const char *logits_kind_name(uint8_t k)
{
    return k == TRAJ_KIND_ACTION ? "action" : k == TRAJ_KIND_THOUGHT ? "thought" : "format";
}

static const char *logits_tok(int32_t id)
{
    const char *t = tok_text(id);
    return t ? t : "<unk>";
}

/* The logprob of answer token p, whichever mode gave it. */
static float logits_own(const tclient_scores *s, const logits_obs *o, int p)
{
    if (s->mode == TCLIENT_FULL)
        return s->seqs[0].values[(size_t)p * (size_t)s->width + (size_t)o->answer_ids[p]];
    return s->seqs[0].values[p];
}

/* Rank (1 = likeliest) of the token and entropy of row p of a full reply. */
static void logits_row_stats(const tclient_scores *s, const logits_obs *o, int p, int *rank,
                             double *entropy)
{
    const float *row = s->seqs[0].values + (size_t)p * (size_t)s->width;
    float own = row[o->answer_ids[p]];
    *rank = 1;
    *entropy = 0;
    for (int j = 0; j < s->width; j++) {
        *rank += row[j] > own;
        *entropy -= row[j] > -INFINITY ? exp(row[j]) * row[j] : 0;
    }
}

/* Sum of logprobs by kind and the PPO step logprob (ppo.thought_coef). */
static void logits_sums(const tclient_scores *s, const logits_obs *o, double coef, double out[4])
{
    memset(out, 0, 4 * sizeof *out);
    for (int p = 0; p < o->n_answer; p++) {
        double lp = logits_own(s, o, p);
        out[o->kind[p] == TRAJ_KIND_ACTION ? 1 : 0] += lp;
        out[2] += lp;
        out[3] += (o->kind[p] == TRAJ_KIND_ACTION ? 1.0 : coef) * lp;
    }
}

static void logits_print_head(const logits_obs *o, const tclient_scores *s,
                              const logits_opts *opt)
{
    double T = opt->temperature > 0 ? opt->temperature : 1.0; /* NaN: not given */
    printf("teacher %s, version %llu; %s seed %llu; logprobs at temperature %g, %s%s\n",
           s->endpoint, (unsigned long long)s->teacher_version, o->env,
           (unsigned long long)o->seed, T, opt->f16 ? "float16" : "float32",
           opt->full ? ", full distribution" : "");
    printf("image %dx%dx%d, prompt %d tokens, answer %d tokens\nanswer: %s\n\n", o->c, o->h, o->w,
           o->n_prompt, o->n_answer, o->answer);
    printf("%4s  %-24s %-8s %10s", "POS", "TOKEN", "KIND", "LOGPROB");
    if (opt->full)
        printf(" %5s %8s", "RANK", "ENTROPY");
    if (opt->topk > 0)
        printf("  TOP-%ld", opt->topk);
    printf("\n");
}

static void logits_print_topk(const tclient_scores *x, int p)
{
    for (int j = 0; j < x->top_k; j++) {
        size_t k = (size_t)p * (size_t)x->top_k + (size_t)j;
        printf("%s%s %.4f", j ? " | " : "  ", logits_tok((int32_t)x->seqs[0].ids[k]),
               (double)x->seqs[0].values[k]);
    }
}

static void logits_print_table(const logits_obs *o, const tclient_scores *s,
                               const tclient_scores *x, const logits_opts *opt, double coef)
{
    logits_print_head(o, s, opt);
    for (int p = 0; p < o->n_answer; p++) {
        printf("%4d  %-24s %-8s %10.5f", p, logits_tok(o->answer_ids[p]),
               logits_kind_name(o->kind[p]), (double)logits_own(s, o, p));
        if (opt->full) {
            int rank;
            double ent;
            logits_row_stats(s, o, p, &rank, &ent);
            printf(" %5d %8.4f", rank, ent);
        }
        if (x->seqs)
            logits_print_topk(x, p);
        printf("\n");
    }
    double sum[4];
    logits_sums(s, o, coef, sum);
    printf("\nsum %.5f: thought %.5f, action %.5f; step logprob (thought x %g + action) %.5f\n",
           sum[2], sum[0], sum[1], coef, sum[3]);
    if (x->seqs && x->teacher_version != s->teacher_version)
        printf("note: the top-k came from teacher version %llu (%s)\n",
               (unsigned long long)x->teacher_version, x->endpoint);
}

static cJSON *logits_ids_json(const int32_t *ids, int n)
{
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
    return a;
}

static cJSON *logits_head_json(const logits_obs *o, const char *endpoint, uint64_t version,
                               const char *mode)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "teacher", endpoint);
    cJSON_AddNumberToObject(j, "teacher_version", (double)version);
    cJSON_AddStringToObject(j, "env", o->env);
    cJSON_AddNumberToObject(j, "seed", (double)o->seed);
    cJSON_AddStringToObject(j, "mode", mode);
    int shape[3] = {o->c, o->h, o->w};
    cJSON_AddItemToObject(j, "image", cJSON_CreateIntArray(shape, 3));
    cJSON_AddStringToObject(j, "prompt", o->prompt);
    cJSON_AddItemToObject(j, "prompt_ids", logits_ids_json(o->prompt_ids, o->n_prompt));
    return j;
}

static cJSON *logits_token_json(int p, int32_t id, uint8_t kind, double logprob)
{
    cJSON *t = cJSON_CreateObject();
    cJSON_AddNumberToObject(t, "pos", p);
    cJSON_AddNumberToObject(t, "id", id);
    cJSON_AddStringToObject(t, "text", logits_tok(id));
    cJSON_AddStringToObject(t, "kind", logits_kind_name(kind));
    cJSON_AddNumberToObject(t, "logprob", logprob);
    return t;
}

/* Extras of position p: top-k list; rank, entropy and the distribution. */
static void logits_token_extras(cJSON *t, const logits_obs *o, const tclient_scores *s,
                                const tclient_scores *x, int p)
{
    if (x->seqs) {
        cJSON *arr = cJSON_AddArrayToObject(t, "topk");
        for (int j = 0; j < x->top_k; j++) {
            size_t k = (size_t)p * (size_t)x->top_k + (size_t)j;
            cJSON *a = cJSON_CreateObject();
            cJSON_AddNumberToObject(a, "id", x->seqs[0].ids[k]);
            cJSON_AddStringToObject(a, "text", logits_tok((int32_t)x->seqs[0].ids[k]));
            cJSON_AddNumberToObject(a, "logprob", x->seqs[0].values[k]);
            cJSON_AddItemToArray(arr, a);
        }
    }
    if (s->mode == TCLIENT_FULL) {
        int rank;
        double ent;
        logits_row_stats(s, o, p, &rank, &ent);
        cJSON_AddNumberToObject(t, "rank", rank);
        cJSON_AddNumberToObject(t, "entropy", ent);
        cJSON_AddItemToObject(t, "full", cJSON_CreateFloatArray(s->seqs[0].values +
                                                                (size_t)p * (size_t)s->width,
                                                                s->width));
    }
}

static void logits_print_json(const logits_obs *o, const tclient_scores *s,
                              const tclient_scores *x, const logits_opts *opt, double coef)
{
    cJSON *j = logits_head_json(o, s->endpoint, s->teacher_version, tclient_mode_name(s->mode));
    cJSON_AddNumberToObject(j, "temperature", opt->temperature > 0 ? opt->temperature : 1.0);
    cJSON_AddBoolToObject(j, "float16", opt->f16);
    cJSON_AddStringToObject(j, "answer", o->answer);
    cJSON_AddItemToObject(j, "answer_ids", logits_ids_json(o->answer_ids, o->n_answer));
    if (x->seqs)
        cJSON_AddNumberToObject(j, "topk_teacher_version", (double)x->teacher_version);
    cJSON *toks = cJSON_AddArrayToObject(j, "tokens");
    for (int p = 0; p < o->n_answer; p++) {
        cJSON *t = logits_token_json(p, o->answer_ids[p], o->kind[p], logits_own(s, o, p));
        logits_token_extras(t, o, s, x, p);
        cJSON_AddItemToArray(toks, t);
    }
    double sum[4];
    logits_sums(s, o, coef, sum);
    cJSON_AddNumberToObject(j, "thought_logprob", sum[0]);
    cJSON_AddNumberToObject(j, "action_logprob", sum[1]);
    cJSON_AddNumberToObject(j, "logprob_sum", sum[2]);
    cJSON_AddNumberToObject(j, "step_logprob", sum[3]);
    char *txt = cJSON_PrintUnformatted(j);
    printf("%s\n", txt ? txt : "{}");
    cJSON_free(txt);
    cJSON_Delete(j);
}

/* ==== --generate ==== */

static void logits_print_answer(const logits_obs *o, const tclient_answers *g, const char *text,
                                const env_parsed *ps, const logits_opts *opt)
{
    const tclient_answer *a = &g->seqs[0];
    if (opt->json) {
        cJSON *j = logits_head_json(o, g->endpoint, g->teacher_version, "generate");
        cJSON_AddStringToObject(j, "answer", text);
        cJSON_AddItemToObject(j, "answer_ids", logits_ids_json(a->ids, a->n));
        cJSON_AddBoolToObject(j, "valid", ps->valid);
        cJSON_AddStringToObject(j, "action", ps->valid ? env_action_text(o->e, ps->action) : "");
        cJSON *toks = cJSON_AddArrayToObject(j, "tokens");
        for (int p = 0; p < a->n; p++)
            cJSON_AddItemToArray(toks, logits_token_json(p, a->ids[p], a->kind[p], a->logprob[p]));
        char *txt = cJSON_PrintUnformatted(j);
        printf("%s\n", txt ? txt : "{}");
        cJSON_free(txt);
        cJSON_Delete(j);
        return;
    }
    printf("teacher %s, version %llu, wrote for %s seed %llu:\n%s\n", g->endpoint,
           (unsigned long long)g->teacher_version, o->env, (unsigned long long)o->seed, text);
    if (ps->valid)
        printf("a valid answer; action %s\n\n", env_action_text(o->e, ps->action));
    else
        printf("not a valid answer: %s\n\n", ps->why);
    printf("%4s  %-24s %-8s %10s\n", "POS", "TOKEN", "KIND", "LOGPROB");
    for (int p = 0; p < a->n; p++)
        printf("%4d  %-24s %-8s %10.5f\n", p, logits_tok(a->ids[p]), logits_kind_name(a->kind[p]),
               (double)a->logprob[p]);
}

static int logits_generate(tclient *c, const logits_obs *o, const logits_opts *opt, err *er)
{
    tclient_seq s = logits_seq(o);
    tclient_gen_req r = {.temperature = isnan(opt->temperature) ? -1.0f : (float)opt->temperature,
                         .top_k = (int)opt->topk, .max_new = (int)opt->max_new,
                         .seed = (uint64_t)opt->sample_seed,
                         .min_version = (uint64_t)opt->min_version, .seqs = &s, .n_seq = 1};
    tclient_answers g;
    int rc = tclient_generate(c, &r, &g, er);
    if (rc)
        return rc;
    char text[ENV_ANSWER_MAX];
    tok_decode(g.seqs[0].ids, g.seqs[0].n, text, sizeof text);
    env_parsed ps;
    env_parse_answer(o->e, text, &ps);
    logits_print_answer(o, &g, text, &ps, opt);
    tclient_answers_clear(&g);
    return 0;
}

/* ==== running ==== */

/* teacher.advertise, else teacher.bind with a wildcard host made local. */
static void logits_default_teacher(const config *cfg, char *out, size_t cap)
{
    const char *adv = config_str(cfg, "teacher.advertise");
    const char *bind = adv[0] ? adv : config_str(cfg, "teacher.bind");
    const char *wild = strstr(bind, "://*:");
    size_t skip = 5;
    if (!wild) {
        wild = strstr(bind, "://0.0.0.0:");
        skip = 11;
    }
    if (wild)
        snprintf(out, cap, "%.*s://127.0.0.1:%s", (int)(wild - bind), bind, wild + skip);
    else
        snprintf(out, cap, "%s", bind);
}

static int logits_client(const config *cfg, const logits_opts *o, const security *sec,
                         tclient **c, err *er)
{
    char def[256];
    logits_default_teacher(cfg, def, sizeof def);
    tclient_opts to;
    tclient_opts_default(&to);
    to.timeout_ms = o->timeout_ms > 0 ? (int)o->timeout_ms
                                      : (int)config_int(cfg, "net.request_timeout_ms");
    to.attempts = o->attempts > 0 ? (int)o->attempts : (int)config_int(cfg, "net.request_retries");
    to.max_msg_bytes = config_int(cfg, "net.max_msg_bytes");
    to.sec = sec;
    return tclient_new(o->teacher ? o->teacher : def, &to, c, er);
}

static int logits_run(const config *cfg, const logits_opts *o)
{
    logits_obs obs;
    err er = {0};
    if (logits_observe(&obs, cfg, o, &er) ||
        (o->save_obs && logits_save_obs(&obs, o->save_obs, &er))) {
        fprintf(stderr, "gtrt logits: %s\n", er.msg);
        logits_obs_free(&obs);
        return 2;
    }
    tclient *c = NULL;
    security *sec = NULL;
    int rc = security_load(cfg, &sec, &er);
    if (!rc)
        rc = logits_client(cfg, o, sec, &c, &er);
    tclient_scores own = {0}, extra = {0};
    if (!rc && o->generate) {
        rc = logits_generate(c, &obs, o, &er);
    } else if (!rc && !(rc = logits_ask(c, &obs, o, &own, &extra, &er))) {
        double coef = config_double(cfg, "ppo.thought_coef");
        if (o->json)
            logits_print_json(&obs, &own, &extra, o, coef);
        else
            logits_print_table(&obs, &own, &extra, o, coef);
    }
    if (rc)
        fprintf(stderr, "gtrt logits: %s\n", er.msg);
    tclient_scores_clear(&own);
    tclient_scores_clear(&extra);
    tclient_free(c);
    security_free(sec);
    logits_obs_free(&obs);
    return rc ? 1 : 0;
}

/* ==== entry ==== */

static int logits_check_opts(const logits_opts *o)
{
    const char *why = NULL;
    if (o->full && o->topk > 0)
        why = "--full and --topk: pick one (the full distribution holds the top k)";
    else if (o->generate && (o->full || o->f16 || o->answer))
        why = "--generate writes an answer: --full, --f16 and --answer do not apply";
    else if (o->topk < -1 || (o->topk == 0 && !o->generate))
        why = "--topk must be 1..64 (--generate: 0 for all)";
    else if (o->min_version < 0 || o->max_new < 0 || o->sample_seed < 0)
        why = "--min-version, --max-new and --sample-seed cannot be negative";
    else if (o->temperature < 0)
        why = "--temperature cannot be negative";
    if (why)
        fprintf(stderr, "gtrt logits: %s\nTry 'gtrt logits --help'.\n", why);
    return why ? 2 : 0;
}

static const cli_cmd logits_cli = {
    "logits", "", "Ask a teacher for the log-probabilities of an answer, token by token.",
    "Builds the observation an actor sees for --env at deal --seed (after --actions,\n"
    "if given): the picture quantised to bytes, the prompt ending in <bos>. Scores\n"
    "--answer (default: the env oracle's answer), ending in <end>, with the merged\n"
    "teacher and prints, per answer token, its position, text, kind (format, thought\n"
    "or action) and logprob at --temperature, with the sums by kind and the PPO step\n"
    "logprob (ppo.thought_coef x thought + action). --topk K adds the K likeliest\n"
    "tokens per position; --full asks for the whole distribution (rank, entropy).\n"
    "--generate asks the teacher to write the answer instead (sampling at\n"
    "--temperature among the --topk likeliest; defaults: the teacher's settings).\n"
    "Several teachers may be given, comma-separated: requests go round robin and\n"
    "move on to another teacher after --timeout-ms without an answer, or when one\n"
    "is older than --min-version or busy, up to --attempts in all. Exit code 1 when\n"
    "no teacher serves the request, 2 for bad options.\n"
    "--json prints one object: teacher, teacher_version, env, seed, mode, image (C,H,W),\n"
    "prompt, prompt_ids, answer, answer_ids, tokens [{pos, id, text, kind, logprob,\n"
    "topk [{id, text, logprob}] | rank, entropy, full [vocab]}], thought_logprob,\n"
    "action_logprob, logprob_sum, step_logprob. Examples:\n"
    "  gtrt logits --teacher tcp://127.0.0.1:5556 --env points24 --seed 3 --topk 3\n"
    "  gtrt logits --teacher tcp://a:5556,tcp://b:5556 --env points24 --seed 3 \\\n"
    "      --answer '{\"cards\": [1, 2, 3, 4], \"formula\": \"\", \"thoughts\": "
    "\"1 * 2 * 3 * 4 = 24\", \"action\": \"1\"}' --json\n"
    "  gtrt logits --env points24 --seed 3 --generate --temperature 0"};

int logits_main(int argc, char **argv)
{
    logits_opts o = {.seed = -1, .topk = -1, .temperature = NAN, .timeout_ms = -1,
                     .attempts = -1};
    cli_opt opts[] = {
        {"teacher", CLI_STR, &o.teacher, "EP[,EP...]",
         "teacher endpoints (default teacher.advertise, else teacher.bind)"},
        {"env", CLI_STR, &o.env, "NAME", "numberline | ezpoints | points24 | blackjack (env.name)"},
        {"seed", CLI_INT, &o.seed, "N", "seed of the deal (env.seed)"},
        {"actions", CLI_STR, &o.actions, "A,B,...", "actions to play before looking"},
        {"answer", CLI_STR, &o.answer, "JSON", "answer to score (default: the oracle's)"},
        {"topk", CLI_INT, &o.topk, "K", "also the K likeliest tokens per position (1..64); "
         "--generate: sample among K"},
        {"full", CLI_FLAG, &o.full, NULL, "ask for the whole distribution per position"},
        {"f16", CLI_FLAG, &o.f16, NULL, "values travel as float16"},
        {"temperature", CLI_DOUBLE, &o.temperature, "T", "logprobs of softmax(logits / T) "
         "(default 1); --generate: sampling temperature"},
        {"min-version", CLI_INT, &o.min_version, "V", "refuse teachers older than version V"},
        {"json", CLI_FLAG, &o.json, NULL, "print one JSON object instead of a table"},
        {"generate", CLI_FLAG, &o.generate, NULL, "let the teacher write the answer"},
        {"max-new", CLI_INT, &o.max_new, "N",
         "--generate: longest answer (default: the teacher's)"},
        {"sample-seed", CLI_INT, &o.sample_seed, "N", "--generate: sampling seed (default 0)"},
        {"save-obs", CLI_STR, &o.save_obs, "FILE",
         "also write the image as sent (uint8 C x H x W)"},
        {"timeout-ms", CLI_INT, &o.timeout_ms, "MS",
         "one attempt's timeout (net.request_timeout_ms)"},
        {"attempts", CLI_INT, &o.attempts, "N", "attempts over all teachers (net.request_retries)"},
        {0},
    };
    cli_common common;
    int rc = cli_parse(argc, argv, &logits_cli, opts, &common, NULL, NULL, 0);
    if (rc)
        return rc > 0 ? 0 : 2;
    if ((rc = logits_check_opts(&o)))
        return rc;
    config *cfg = cli_config(&common);
    if (!cfg)
        return 2;
    rc = logits_run(cfg, &o);
    config_free(cfg);
    return rc;
}

