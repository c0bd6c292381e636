/* Shared option parsing and --help for every `gtrt` subcommand (see cli.h). */
#include "common/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

static const char *cli_kind_metavar(const cli_opt *o)
{
    if (o->metavar)
        return o->metavar;
    switch (o->kind) {
    case CLI_STR: return "STR";
    case CLI_INT: return "N";
    case CLI_DOUBLE: return "X";
    default: return "";
    }
}

static void cli_print_opt(const char *name, const char *metavar, const char *help)
{
    char left[64];
    snprintf(left, sizeof left, "--%s%s%s", name, metavar[0] ? " " : "", metavar);
    printf("  %-28s %s\n", left, help);
}

static void cli_print_help(const cli_cmd *cmd, const cli_opt *opts)
{
    printf("usage: gtrt %s [options]%s%s\n\n%s\n", cmd->name, cmd->args[0] ? " " : "", cmd->args,
           cmd->summary);
    if (cmd->description)
        printf("\n%s\n", cmd->description);
    if (opts && opts[0].name) {
        printf("\noptions:\n");
        for (const cli_opt *o = opts; o->name; o++)
            cli_print_opt(o->name, cli_kind_metavar(o), o->help);
    }
    printf("\ncommon options:\n");
    cli_print_opt("config", "FILE.ini", "load configuration from FILE.ini");
    cli_print_opt("set", "SECTION.KEY=VALUE", "override one key (repeatable; after --config)");
    cli_print_opt("log-level", "LEVEL", "debug | info | warn | error (overrides log.level)");
    cli_print_opt("help", "", "show this help");
    printf("\nEvery key, its default and meaning: gtrt config --keys\n");
}

static int cli_fail(const cli_cmd *cmd, const char *fmt, const char *arg)
{
    fprintf(stderr, "gtrt %s: ", cmd->name);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'gtrt %s --help'.\n", cmd->name);
    return GTRT_EINVAL;
}

static int cli_store(const cli_cmd *cmd, const cli_opt *o, const char *val)
{
    char *end = NULL;
    errno = 0;
    switch (o->kind) {
    case CLI_FLAG: *(int *)o->dest = 1; break;
    case CLI_STR: *(const char **)o->dest = val; break;
    case CLI_INT: {
        long x = strtol(val, &end, 10);
        if (errno || end == val || *end)
            return cli_fail(cmd, "expected an integer, got '%s'", val);
        *(long *)o->dest = x;
        break;
    }
    case CLI_DOUBLE: {
        double x = strtod(val, &end);
        if (errno || end == val || *end)
            return cli_fail(cmd, "expected a number, got '%s'", val);
        *(double *)o->dest = x;
        break;
    }
    }
    return 0;
}

/* Handle the options every subcommand has. Returns 1 if `name` was one. */
static int cli_common_opt(cli_common *c, const char *name, const char *val, int *help, int *bad)
{
    if (!strcmp(name, "help")) {
        *help = 1;
        return 1;
    }
    if (strcmp(name, "config") && strcmp(name, "set") && strcmp(name, "log-level"))
        return 0;
    if (!val) {
        *bad = 1;
        return 1;
    }
    if (!strcmp(name, "config"))
        c->config_path = val;
    else if (!strcmp(name, "log-level"))
        c->log_level = val;
    else if (c->nsets < CLI_MAX_SETS)
        c->sets[c->nsets++] = val;
    else
        *bad = 2;
    return 1;
}

int cli_parse(int argc, char **argv, const cli_cmd *cmd, const cli_opt *opts,
              cli_common *common, char **pos, int *npos, int max_pos)
{
    memset(common, 0, sizeof *common);
    if (npos)
        *npos = 0;
    int help = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        /* The two short spellings people type without thinking. */
        if (!strcmp(a, "-h"))
            a = "--help";
        else if (!strcmp(a, "-o"))
            a = "--out";
        if (strncmp(a, "--", 2) || !a[2]) {
            if (!pos || *npos >= max_pos)
                return cli_fail(cmd, "unexpected argument '%s'", a);
            pos[(*npos)++] = argv[i];
            continue;
        }
        /* --name=value or --name value */
        char name[64];
        const char *eq = strchr(a + 2, '=');
        size_t nlen = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (nlen >= sizeof name)
            return cli_fail(cmd, "unknown option '%s'", a);
        memcpy(name, a + 2, nlen);
        name[nlen] = 0;
        const cli_opt *o = NULL;
        for (const cli_opt *p = opts; p && p->name; p++)
            if (!strcmp(p->name, name))
                o = p;
        bool is_flag = o ? o->kind == CLI_FLAG : !strcmp(name, "help");
        const char *val = eq ? eq + 1 : NULL;
        if (!val && !is_flag && i + 1 < argc)
            val = argv[++i];
        int bad = 0;
        if (!o && cli_common_opt(common, name, val, &help, &bad)) {
            if (bad == 1)
                return cli_fail(cmd, "option '--%s' needs a value", name);
            if (bad == 2)
                return cli_fail(cmd, "too many --set options (max %s)", "64");
            continue;
        }
        if (!o)
            return cli_fail(cmd, "unknown option '%s'", a);
        if (!is_flag && !val)
            return cli_fail(cmd, "option '--%s' needs a value", name);
        if (cli_store(cmd, o, val))
            return GTRT_EINVAL;
    }
    if (help) {
        cli_print_help(cmd, opts);
        return 1;
    }
    return 0;
}

config *cli_config(const cli_common *common)
{
    config *c = config_new();
    if (!c) {
        fprintf(stderr, "gtrt: out of memory\n");
        return NULL;
    }
    err e = {0};
    int rc = 0;
    if (common->config_path)
        rc = config_load_file(c, common->config_path, &e);
    for (int i = 0; !rc && i < common->nsets; i++)
        rc = config_set(c, common->sets[i], &e);
    log_level lvl;
    const char *lname = common->log_level ? common->log_level : config_str(c, "log.level");
    if (!rc && log_level_parse(lname, &lvl))
        rc = err_set(&e, GTRT_ECONFIG, "log level '%s': expected debug, info, warn or error",
                     lname);
    if (rc) {
        fprintf(stderr, "gtrt: configuration error: %s\n", e.msg);
        config_free(c);
        return NULL;
    }
    log_set_level(lvl);
    return c;
}
