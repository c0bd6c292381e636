/* Config parsing, typed validation, overrides and error messages. */
#include <criterion/criterion.h>
#include <string.h>

#include "common/config.h"

Test(config, defaults_are_loaded)
{
    config *c = config_new();
    cr_assert_not_null(c);
    cr_expect_eq(config_int(c, "net.heartbeat_ms"), 1000);
    cr_expect_str_eq(config_str(c, "learner.bind"), "tcp://127.0.0.1:5555");
    cr_expect_str_eq(config_origin(c, "net.heartbeat_ms"), "default");
    config_free(c);
}

Test(config, file_values_override_defaults_and_record_origin)
{
    config *c = config_new();
    err e = {0};
    int rc = config_load_string(c, "a.ini",
                                "; comment\n[net]\nheartbeat_ms = 250\n\n[up]\nhold_s = 1.5\n", &e);
    cr_assert_eq(rc, 0, "%s", e.msg);
    cr_expect_eq(config_int(c, "net.heartbeat_ms"), 250);
    cr_expect_float_eq(config_double(c, "up.hold_s"), 1.5, 1e-12);
    cr_expect_str_eq(config_origin(c, "net.heartbeat_ms"), "a.ini:3");
    cr_expect_str_eq(config_origin(c, "up.hold_s"), "a.ini:6");
    config_free(c);
}

Test(config, set_overrides_file)
{
    config *c = config_new();
    err e = {0};
    cr_assert_eq(config_load_string(c, "a.ini", "[net]\nheartbeat_ms = 250\n", &e), 0);
    cr_assert_eq(config_set(c, "net.heartbeat_ms=300", &e), 0, "%s", e.msg);
    cr_expect_eq(config_int(c, "net.heartbeat_ms"), 300);
    cr_expect_str_eq(config_origin(c, "net.heartbeat_ms"), "--set");
    cr_assert_eq(config_set(c, "learner.bind=ipc:///tmp/x=y", &e), 0, "%s", e.msg);
    cr_expect_str_eq(config_str(c, "learner.bind"), "ipc:///tmp/x=y");
    config_free(c);
}

static void expect_error(const char *text, const char *needle)
{
    config *c = config_new();
    err e = {0};
    int rc = config_load_string(c, "bad.ini", text, &e);
    cr_expect_eq(rc, GTRT_ECONFIG, "no error for %s", text);
    cr_expect(strstr(e.msg, needle) != NULL, "message '%s' lacks '%s'", e.msg, needle);
    config_free(c);
}

Test(config, errors_name_file_line_and_key)
{
    expect_error("[net]\n\nheartbeat_ms = fast\n", "bad.ini:3: key 'net.heartbeat_ms': expected an integer");
    expect_error("[net]\nheartbeat_ms = 5\n", "bad.ini:2: key 'net.heartbeat_ms': 5 is outside");
    expect_error("[net]\nbogus = 1\n", "bad.ini:2: unknown key 'net.bogus'");
    expect_error("[nope]\nx = 1\n", "bad.ini:2: unknown section 'nope'");
    expect_error("[up]\nhold_s = 1x\n", "bad.ini:2: key 'up.hold_s': expected a number");
    expect_error("[net]\nthis line has no equals sign\n", "bad.ini:2: syntax error");
}

Test(config, bad_overrides_are_reported)
{
    config *c = config_new();
    err e = {0};
    cr_expect_eq(config_set(c, "net.heartbeat_ms", &e), GTRT_ECONFIG);
    cr_expect(strstr(e.msg, "expected section.key=value") != NULL, "%s", e.msg);
    cr_expect_eq(config_set(c, "net.nope=1", &e), GTRT_ECONFIG);
    cr_expect(strstr(e.msg, "unknown key 'net.nope'") != NULL, "%s", e.msg);
    cr_expect_eq(config_set(c, "net.heartbeat_ms=-3", &e), GTRT_ECONFIG);
    cr_expect(strstr(e.msg, "outside") != NULL, "%s", e.msg);
    cr_expect_eq(config_int(c, "net.heartbeat_ms"), 1000, "failed override changed the value");
    config_free(c);
}

Test(config, missing_file_is_an_error)
{
    config *c = config_new();
    err e = {0};
    cr_expect_eq(config_load_file(c, "/nonexistent/x.ini", &e), GTRT_ECONFIG);
    cr_expect(strstr(e.msg, "/nonexistent/x.ini") != NULL);
    config_free(c);
}

Test(config, written_config_loads_back_identically)
{
    config *c = config_new();
    err e = {0};
    cr_assert_eq(config_set(c, "net.heartbeat_ms=123", &e), 0);
    cr_assert_eq(config_set(c, "run.name=exp one", &e), 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_eq(config_write(c, f), 0);
    fclose(f);
    config *d = config_new();
    cr_assert_eq(config_load_string(d, "w.ini", buf, &e), 0, "%s", e.msg);
    cr_expect_eq(config_int(d, "net.heartbeat_ms"), 123);
    cr_expect_str_eq(config_str(d, "run.name"), "exp one");
    free(buf);
    config_free(c);
    config_free(d);
}

Test(config, every_default_in_the_schema_parses)
{
    /* config_new asserts on a bad default; reaching here means all parsed. */
    int n = 0;
    for (const cfg_key *k = config_schema; k->section; k++, n++)
        cr_expect(k->help && k->help[0], "key %s.%s has no help", k->section, k->key);
    cr_expect_gt(n, 10);
}

/* inih reads lines into a fixed buffer: a long comment (a written config's
 * help text with a long path) must not spill into the next line, and a
 * long value must be an error, never cut silently. */
Test(config, long_lines_are_cut_only_in_comments)
{
    static char text[4096];
    char pad[1001];
    memset(pad, 'x', 1000);
    pad[1000] = 0;
    snprintf(text, sizeof text, "[net]\n; %s (d) | abs (|d|) = 3\nheartbeat_ms = 250\n", pad);
    config *c = config_new();
    err e = {0};
    cr_assert_eq(config_load_string(c, "long.ini", text, &e), 0, "%s", e.msg);
    cr_expect_eq(config_int(c, "net.heartbeat_ms"), 250);
    cr_expect_str_eq(config_origin(c, "net.heartbeat_ms"), "long.ini:3", "line numbers still count");
    config_free(c);
    snprintf(text, sizeof text, "[run]\nname = %s\n", pad);
    c = config_new();
    cr_expect_neq(config_load_string(c, "long.ini", text, &e), 0);
    cr_expect(strstr(e.msg, "long.ini:2: line longer than") != NULL, "%s", e.msg);
    config_free(c);
}
