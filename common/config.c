/* INI configuration with typed, range-checked keys (see config.h).
 * Parsing is inih's; this module adds the schema, overrides and errors that
 * name the file, the line and the key. */
#include "common/config.h"

#include <assert.h>
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

typedef struct cfg_value {
    char *text;       /* value as written, owned */
    int64_t i;
    double d;
    bool b;
    char origin[288]; /* "default", "FILE:LINE", "--set" */
} cfg_value;

struct config {
    size_t n;
    cfg_value *v; /* parallel to config_schema */
};

/* ==== schema lookup ==== */

static int config_find(const char *section, const char *key)
{
    for (int i = 0; config_schema[i].section; i++)
        if (strcmp(config_schema[i].section, section) == 0 &&
            strcmp(config_schema[i].key, key) == 0)
            return i;
    return -1;
}

static bool config_section_known(const char *section)
{
    for (int i = 0; config_schema[i].section; i++)
        if (strcmp(config_schema[i].section, section) == 0)
            return true;
    return false;
}

static int config_find_dotted(const char *dotted)
{
    const char *dot = strchr(dotted, '.');
    if (!dot || (size_t)(dot - dotted) >= 64)
        return -1;
    char section[64];
    memcpy(section, dotted, (size_t)(dot - dotted));
    section[dot - dotted] = 0;
    return config_find(section, dot + 1);
}

/* ==== typed parsing ==== */

/* Parse `text` for schema entry `k` into `out`; on error write why into
 * `why` (a phrase like "expected an integer, got 'x'"). */
static int config_parse_value(const cfg_key *k, const char *text, cfg_value *out, char *why,
                              size_t why_len)
{
    char *end = NULL;
    errno = 0;
    switch (k->type) {
    case CFG_INT: {
        long long x = strtoll(text, &end, 10);
        if (errno || end == text || *end) {
            snprintf(why, why_len, "expected an integer, got '%s'", text);
            return GTRT_ECONFIG;
        }
        if ((double)x < k->min || (double)x > k->max) {
            snprintf(why, why_len, "%lld is outside [%.0f, %.0f]", x, k->min, k->max);
            return GTRT_ECONFIG;
        }
        out->i = x;
        out->d = (double)x;
        break;
    }
    case CFG_DOUBLE: {
        double x = strtod(text, &end);
        if (errno || end == text || *end || !isfinite(x)) {
            snprintf(why, why_len, "expected a number, got '%s'", text);
            return GTRT_ECONFIG;
        }
        if (x < k->min || x > k->max) {
            snprintf(why, why_len, "%g is outside [%g, %g]", x, k->min, k->max);
            return GTRT_ECONFIG;
        }
        out->d = x;
        break;
    }
    case CFG_BOOL:
        if (!strcasecmp(text, "true") || !strcasecmp(text, "yes") || !strcmp(text, "1") ||
            !strcasecmp(text, "on"))
            out->b = true;
        else if (!strcasecmp(text, "false") || !strcasecmp(text, "no") || !strcmp(text, "0") ||
                 !strcasecmp(text, "off"))
            out->b = false;
        else {
            snprintf(why, why_len, "expected true or false, got '%s'", text);
            return GTRT_ECONFIG;
        }
        break;
    case CFG_STR:
        break;
    }
    char *copy = strdup(text);
    if (!copy) {
        snprintf(why, why_len, "out of memory");
        return GTRT_ENOMEM;
    }
    free(out->text);
    out->text = copy;
    return 0;
}

/* ==== construction ==== */

config *config_new(void)
{
    config *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    while (config_schema[c->n].section)
        c->n++;
    c->v = calloc(c->n, sizeof *c->v);
    if (!c->v) {
        free(c);
        return NULL;
    }
    for (size_t i = 0; i < c->n; i++) {
        char why[256];
        int rc = config_parse_value(&config_schema[i], config_schema[i].def, &c->v[i], why,
                                    sizeof why);
        /* A default that does not parse is a bug in the schema table. */
        assert(rc == 0 && "bad default in config_schema");
        if (rc) {
            config_free(c);
            return NULL;
        }
        snprintf(c->v[i].origin, sizeof c->v[i].origin, "default");
    }
    return c;
}

void config_free(config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        free(c->v[i].text);
    free(c->v);
    free(c);
}

/* ==== loading ==== */

/* inih as packaged does not pass line numbers to the handler, so the text
 * is fed to it line by line through a reader that counts them. */
typedef struct config_load_ctx {
    config *c;
    const char *name;
    err *e;
    int rc;
    const char *pos; /* next unread byte of the text */
    int lineno;      /* line most recently handed to inih */
} config_load_ctx;

/* One whole line per call. inih's buffer holds `num` - 1 characters; a
 * longer comment is cut to fit (the rest of it skipped), a longer line of
 * anything else is an error, since cutting it would change its meaning. */
static char *config_ini_reader(char *str, int num, void *stream)
{
    config_load_ctx *ctx = stream;
    if (!*ctx->pos || num < 2 || ctx->rc)
        return NULL;
    size_t len = strcspn(ctx->pos, "\n");
    size_t full = len + (ctx->pos[len] == '\n');
    ctx->lineno++;
    if (full > (size_t)num - 1) {
        const char *t = ctx->pos + strspn(ctx->pos, " \t");
        if (*t != ';' && *t != '#') {
            ctx->rc = err_set(ctx->e, GTRT_ECONFIG, "%s:%d: line longer than %d characters",
                              ctx->name, ctx->lineno, num - 2);
            return NULL;
        }
        full = (size_t)num - 2;
        memcpy(str, ctx->pos, full);
        str[full] = '\n';
        str[full + 1] = 0;
        ctx->pos += len + (ctx->pos[len] == '\n');
        return str;
    }
    memcpy(str, ctx->pos, full);
    str[full] = 0;
    ctx->pos += full;
    return str;
}

static int config_ini_handler(void *user, const char *section, const char *key, const char *value)
{
    config_load_ctx *ctx = user;
    int lineno = ctx->lineno;
    if (ctx->rc)
        return 0;
    if (!key) /* a section header on its own */
        return 1;
    int idx = config_find(section, key);
    if (idx < 0) {
        ctx->rc = err_set(ctx->e, GTRT_ECONFIG, "%s:%d: unknown %s '%s%s%s'", ctx->name, lineno,
                          config_section_known(section) ? "key" : "section", section,
                          config_section_known(section) ? "." : "",
                          config_section_known(section) ? key : "");
        return 0;
    }
    char why[256];
    int rc = config_parse_value(&config_schema[idx], value, &ctx->c->v[idx], why, sizeof why);
    if (rc) {
        ctx->rc = err_set(ctx->e, rc, "%s:%d: key '%s.%s': %s", ctx->name, lineno, section, key,
                          why);
        return 0;
    }
    snprintf(ctx->c->v[idx].origin, sizeof ctx->c->v[idx].origin, "%s:%d", ctx->name, lineno);
    return 1;
}

static int config_finish_load(config_load_ctx *ctx, int ini_rc)
{
    if (ctx->rc)
        return ctx->rc;
    if (ini_rc > 0) /* inih: line of the first syntax error */
        return err_set(ctx->e, GTRT_ECONFIG, "%s:%d: syntax error (expected [section] or key = value)",
                       ctx->name, ini_rc);
    if (ini_rc < 0)
        return err_set(ctx->e, GTRT_ECONFIG, "%s: cannot read file", ctx->name);
    return 0;
}

#define CONFIG_MAX_FILE_BYTES (1 << 20)

int config_load_file(config *c, const char *path, err *e)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return err_set(e, GTRT_ECONFIG, "%s: cannot open: %s", path, strerror(errno));
    char *text = malloc(CONFIG_MAX_FILE_BYTES + 1);
    size_t n = text ? fread(text, 1, CONFIG_MAX_FILE_BYTES + 1, f) : 0;
    int bad = ferror(f);
    fclose(f);
    if (!text)
        return err_set(e, GTRT_ENOMEM, "%s: out of memory", path);
    int rc;
    if (bad)
        rc = err_set(e, GTRT_ECONFIG, "%s: read error", path);
    else if (n > CONFIG_MAX_FILE_BYTES)
        rc = err_set(e, GTRT_ECONFIG, "%s: larger than %d bytes", path, CONFIG_MAX_FILE_BYTES);
    else {
        text[n] = 0;
        rc = config_load_string(c, path, text, e);
    }
    free(text);
    return rc;
}

int config_load_string(config *c, const char *name, const char *text, err *e)
{
    config_load_ctx ctx = {c, name, e, 0, text, 0};
    return config_finish_load(&ctx, ini_parse_stream(config_ini_reader, &ctx, config_ini_handler, &ctx));
}

int config_set(config *c, const char *assignment, err *e)
{
    const char *eq = strchr(assignment, '=');
    if (!eq)
        return err_set(e, GTRT_ECONFIG, "--set %s: expected section.key=value", assignment);
    char dotted[128];
    size_t klen = (size_t)(eq - assignment);
    if (klen >= sizeof dotted)
        return err_set(e, GTRT_ECONFIG, "--set %s: key too long", assignment);
    memcpy(dotted, assignment, klen);
    dotted[klen] = 0;
    int idx = config_find_dotted(dotted);
    if (idx < 0)
        return err_set(e, GTRT_ECONFIG, "--set %s: unknown key '%s' (see `gtrt config --keys`)",
                       assignment, dotted);
    char why[256];
    int rc = config_parse_value(&config_schema[idx], eq + 1, &c->v[idx], why, sizeof why);
    if (rc)
        return err_set(e, rc, "--set %s: key '%s': %s", assignment, dotted, why);
    snprintf(c->v[idx].origin, sizeof c->v[idx].origin, "--set");
    return 0;
}

/* ==== getters ==== */

static const cfg_value *config_get(const config *c, const char *dotted, cfg_type type)
{
    int idx = config_find_dotted(dotted);
    assert(idx >= 0 && "config key not in schema");
    assert(config_schema[idx].type == type && "config key read with the wrong type");
    (void)type;
    return &c->v[idx];
}

int64_t config_int(const config *c, const char *k) { return config_get(c, k, CFG_INT)->i; }
double config_double(const config *c, const char *k) { return config_get(c, k, CFG_DOUBLE)->d; }
bool config_bool(const config *c, const char *k) { return config_get(c, k, CFG_BOOL)->b; }
const char *config_str(const config *c, const char *k) { return config_get(c, k, CFG_STR)->text; }

const char *config_origin(const config *c, const char *dotted)
{
    int idx = config_find_dotted(dotted);
    assert(idx >= 0);
    return c->v[idx].origin;
}

/* ==== writing ==== */

int config_write(const config *c, FILE *f)
{
    const char *section = NULL;
    for (size_t i = 0; i < c->n; i++) {
        const cfg_key *k = &config_schema[i];
        if (!section || strcmp(section, k->section)) {
            fprintf(f, "%s[%s]\n", section ? "\n" : "", k->section);
            section = k->section;
        }
        fprintf(f, "; %s (%s)\n%s = %s\n", k->help, c->v[i].origin, k->key, c->v[i].text);
    }
    return ferror(f) ? GTRT_EIO : 0;
}

int config_write_file(const config *c, const char *path, err *e)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return err_set(e, GTRT_EIO, "%s: cannot write: %s", tmp, strerror(errno));
    int rc = config_write(c, f);
    if (fflush(f) || fsync(fileno(f)))
        rc = GTRT_EIO;
    if (fclose(f))
        rc = GTRT_EIO;
    if (rc || rename(tmp, path)) {
        unlink(tmp);
        return err_set(e, GTRT_EIO, "%s: write failed", path);
    }
    return 0;
}
