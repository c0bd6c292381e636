/* `gtrt plot`: the SVG is well-formed XML with one path per run and panel
 * and a legend, resumed runs are not drawn twice, and missing or empty
 * inputs fail with messages that say what is wrong. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/metrics.h"
#include "common/plot.h"
#include "common/rng.h"

/* ==== fixtures ==== */

static char *tmpdir(void)
{
    static const char tmpl[] = "/tmp/gtrt_plot_XXXXXX";
    char *d = malloc(sizeof tmpl);
    memcpy(d, tmpl, sizeof tmpl);
    cr_assert_not_null(mkdtemp(d));
    return d;
}

static void rmtree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char p[4096];
    while (d && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rmtree(p);
        else
            unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

static char *subdir(const char *root, const char *name)
{
    char *p = malloc(4096);
    snprintf(p, 4096, "%s/%s", root, name);
    cr_assert_eq(mkdir(p, 0755), 0, "%s", p);
    return p;
}

static void write_file(const char *dir, const char *text)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/metrics.jsonl", dir);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

/* A run written through the metrics sink itself: `n` updates of noisy,
 * rising success; teacher KL only when asked. */
static void write_run(const char *dir, int n, int with_kl, uint64_t seed)
{
    config *cfg = config_new();
    err e = {0};
    cr_assert_eq(config_set(cfg, "metrics.tensorboard=false", &e), 0);
    metrics *m;
    cr_assert_eq(metrics_new(dir, cfg, &m, &e), 0, "%s", e.msg);
    rng r;
    rng_init(&r, seed);
    for (int i = 1; i <= n; i++) {
        double p = (double)i / n;
        metrics_scalar(m, METRICS_SUCCESS_RATE, p * 0.9 + 0.1 * rng_double(&r));
        metrics_scalar(m, METRICS_RETURN, -5 + 12 * p + rng_normal(&r));
        metrics_scalar(m, METRICS_THOUGHT_ENTROPY, 2.0 - p);
        if (with_kl)
            metrics_scalar(m, METRICS_TEACHER_KL, 0.3 * (1 - p));
        cr_assert_eq(metrics_commit(m, i, (int64_t)i * 512, &e), 0);
    }
    metrics_free(&m);
    config_free(cfg);
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* Enough of an XML check for our output: every element closes in order,
 * attribute values are quoted, and '&' only starts an entity. Returns NULL
 * or what is wrong (checked once: Criterion reports every assertion to its
 * runner, far too slow per character). */
static const char *xml_problem(const char *s, long *at)
{
    static const char *const entities[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
    if (strncmp(s, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg ", 44))
        return "prolog and root";
    char stack[64][32];
    int depth = 0, roots = 0;
    for (const char *p = s; *p; p++) {
        *at = (long)(p - s);
        if (*p == '&') {
            int ok = 0;
            for (int i = 0; i < 5; i++)
                ok |= !strncmp(p, entities[i], strlen(entities[i]));
            if (!ok)
                return "bare '&'";
            continue;
        }
        if (*p == '>')
            return "stray '>'";
        if (*p != '<')
            continue;
        const char *end = p + 1;
        int quoted = 0;
        for (; *end && (quoted || *end != '>'); end++) {
            quoted ^= *end == '"';
            if (!quoted && *end == '<')
                return "'<' inside a tag";
        }
        if (!*end)
            return "unterminated tag";
        if (p[1] == '?') {
            p = end;
            continue;
        }
        int closing = p[1] == '/';
        const char *name = p + 1 + closing;
        size_t nlen = strcspn(name, " />\n");
        if (nlen == 0 || nlen >= 32)
            return "bad element name";
        if (closing) {
            if (depth == 0)
                return "close without open";
            depth--;
            if (strncmp(stack[depth], name, nlen) || stack[depth][nlen])
                return "close tag does not match the open one";
        } else if (end[-1] != '/') {
            if (depth == 64)
                return "nesting too deep";
            roots += depth == 0;
            memcpy(stack[depth], name, nlen);
            stack[depth++][nlen] = 0;
        }
        p = end;
    }
    if (depth)
        return "unclosed elements";
    return roots == 1 ? NULL : "not exactly one root element";
}

static void expect_well_formed(const char *s)
{
    long at = 0;
    const char *why = xml_problem(s, &at);
    cr_expect_null(why, "SVG is not well formed: %s at offset %ld: ...%.60s", why, at, s + at);
}

static char *render(const char *const *runs, int n, double smooth, err *e)
{
    plot_opts o = {NULL, smooth};
    char *svg = NULL;
    int rc = plot_svg(runs, n, &o, &svg, e);
    if (rc)
        cr_expect_null(svg);
    return rc ? NULL : svg;
}

/* ==== tests ==== */

Test(plot, runs_overlay_with_a_path_each_and_a_legend)
{
    char *root = tmpdir();
    char *a = subdir(root, "ppo"), *b = subdir(root, "turbo-kl");
    write_run(a, 40, 0, 1);
    write_run(b, 60, 1, 2);
    const char *runs[] = {a, b};
    err e = {0};
    char *svg = render(runs, 2, 0, &e);
    cr_assert_not_null(svg, "%s", e.msg);
    expect_well_formed(svg);
    /* ppo has no KL: 3 panels; turbo-kl has all 4. */
    cr_expect_eq(count(svg, "<path class=\"run\" data-run=\"ppo\""), 3);
    cr_expect_eq(count(svg, "<path class=\"run\" data-run=\"turbo-kl\""), 4);
    cr_expect_eq(count(svg, "<g class=\"panel\""), 4);
    cr_expect_eq(count(svg, "data-key=\"" METRICS_TEACHER_KL "\""), 1);
    cr_expect_eq(count(svg, "class=\"legend\" "), 2);
    cr_expect(strstr(svg, ">ppo</text>") && strstr(svg, ">turbo-kl</text>"), "legend names");
    cr_expect(strstr(svg, ">env steps</text>") != NULL, "x axis label");
    cr_expect(strstr(svg, ">Success rate</text>") != NULL, "panel title");
    cr_expect(strstr(svg, ">100%</text>") != NULL, "success rate ticks as percentages");
    cr_expect(strstr(svg, ">30k</text>") != NULL, "env step ticks with k suffix");
    /* Each path has one point per update. */
    const char *p = strstr(svg, "data-run=\"turbo-kl\"");
    const char *d = strstr(p, " d=\"M");
    const char *dend = strchr(d + 4, '"');
    int points = 1;
    for (const char *q = d; q < dend; q++)
        points += *q == 'L';
    cr_expect_eq(points, 60);
    free(svg);

    /* Smoothing adds a smoothed path on top of each raw one. */
    svg = render(runs, 2, 0.6, &e);
    cr_assert_not_null(svg, "%s", e.msg);
    expect_well_formed(svg);
    cr_expect_eq(count(svg, "data-run=\"turbo-kl\""), 8);
    free(svg);
    free(a);
    free(b);
    rmtree(root);
    free(root);
}

Test(plot, without_teacher_kl_there_is_no_kl_panel)
{
    char *root = tmpdir();
    char *a = subdir(root, "only");
    write_run(a, 5, 0, 3);
    const char *runs[] = {a};
    err e = {0};
    char *svg = render(runs, 1, 0, &e);
    cr_assert_not_null(svg, "%s", e.msg);
    expect_well_formed(svg);
    cr_expect_eq(count(svg, "<g class=\"panel\""), 3);
    cr_expect_eq(count(svg, METRICS_TEACHER_KL), 0);
    cr_expect_gt(count(svg, "<circle "), 0, "few points get markers");
    free(svg);
    free(a);
    rmtree(root);
    free(root);
}

Test(plot, a_resumed_run_keeps_the_latest_lines)
{
    char *root = tmpdir();
    char *a = subdir(root, "resumed");
    /* Steps 1..3, then a restart from the checkpoint of step 1, a torn
     * line from a crash, and a line without env_steps. */
    write_file(a, "{\"step\":1,\"env_steps\":100,\"train/return\":1}\n"
                  "{\"step\":2,\"env_steps\":200,\"train/return\":2}\n"
                  "{\"step\":3,\"env_steps\":300,\"train/return\":3}\n"
                  "{\"step\":2,\"env_steps\":200,\"train/return\":-2}\n"
                  "{\"step\":3,\"env_steps\":300,\"train/return\":null}\n"
                  "{\"step\":4,\"env_steps\":400,\"train/return\":-4}\n"
                  "{\"step\":5}\n"
                  "{\"step\":5,\"env_ste");
    const char *runs[] = {a};
    err e = {0};
    char *svg = render(runs, 1, 0, &e);
    cr_assert_not_null(svg, "%s", e.msg);
    expect_well_formed(svg);
    const char *p = strstr(svg, "data-key=\"" METRICS_RETURN "\"");
    cr_assert_not_null(p);
    const char *d = strstr(strstr(p, "<path class=\"run\""), " d=\"M");
    const char *dend = strchr(d + 4, '"');
    int points = 1;
    for (const char *q = d; q < dend; q++)
        points += *q == 'L';
    cr_expect_eq(points, 3, "steps 1, 2 (again) and 4: %.*s", (int)(dend - d), d);
    cr_expect(strstr(svg, ">no data</text>") != NULL, "panels without values say so");
    free(svg);
    free(a);
    rmtree(root);
    free(root);
}

Test(plot, names_are_escaped)
{
    char *root = tmpdir();
    char *a = subdir(root, "a&b<c>\"d'");
    write_file(a, "{\"step\":1,\"env_steps\":1,\"train/success_rate\":0.5}\n");
    const char *runs[] = {a};
    err e = {0};
    plot_opts o = {"Title <&>", 0};
    char *svg = NULL;
    cr_assert_eq(plot_svg(runs, 1, &o, &svg, &e), 0, "%s", e.msg);
    expect_well_formed(svg);
    cr_expect(strstr(svg, ">a&amp;b&lt;c&gt;&quot;d&apos;</text>") != NULL, "%s", svg);
    cr_expect(strstr(svg, ">Title &lt;&amp;&gt;</text>") != NULL);
    free(svg);
    free(a);
    rmtree(root);
    free(root);
}

Test(plot, a_metrics_file_path_works_too)
{
    char *root = tmpdir();
    char *a = subdir(root, "byfile");
    write_run(a, 3, 0, 4);
    char path[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", a);
    const char *runs[] = {path};
    err e = {0};
    char *svg = render(runs, 1, 0, &e);
    cr_assert_not_null(svg, "%s", e.msg);
    cr_expect(strstr(svg, ">byfile</text>") != NULL, "named after its directory");
    free(svg);
    free(a);
    rmtree(root);
    free(root);
}

Test(plot, missing_run_is_a_clear_error)
{
    char *root = tmpdir();
    char *a = subdir(root, "good"), *b = subdir(root, "never-started");
    write_run(a, 3, 0, 5);
    const char *runs[] = {a, b};
    err e = {0};
    cr_expect_null(render(runs, 2, 0, &e));
    cr_expect_eq(e.code, GTRT_ENOTFOUND);
    cr_expect(strstr(e.msg, "never-started/metrics.jsonl") != NULL, "%s", e.msg);
    cr_expect(strstr(e.msg, "No such file") != NULL, "%s", e.msg);
    free(a);
    free(b);
    rmtree(root);
    free(root);
}

Test(plot, empty_and_unreadable_files_are_clear_errors)
{
    char *root = tmpdir();
    char *a = subdir(root, "empty");
    write_file(a, "");
    const char *runs[] = {a};
    err e = {0};
    cr_expect_null(render(runs, 1, 0, &e));
    cr_expect_eq(e.code, GTRT_EPARSE);
    cr_expect(strstr(e.msg, "is empty") != NULL, "%s", e.msg);
    write_file(a, "not json\n[1,2]\n{\"step\":1}\n");
    cr_expect_null(render(runs, 1, 0, &e));
    cr_expect(strstr(e.msg, "none of its 3 lines") != NULL, "%s", e.msg);
    cr_expect_null(render(runs, 0, 0, &e));
    cr_expect_eq(e.code, GTRT_EINVAL);
    free(a);
    rmtree(root);
    free(root);
}

/* ==== the subcommand ==== */

static int run_plot(int argc, const char **argv)
{
    return plot_main(argc, (char **)argv);
}

Test(plot, command_writes_the_file_atomically)
{
    char *root = tmpdir();
    char *a = subdir(root, "one"), *b = subdir(root, "two");
    write_run(a, 10, 0, 6);
    write_run(b, 10, 1, 7);
    char out[4096];
    snprintf(out, sizeof out, "%s/curves.svg", root);
    const char *argv[] = {"plot", a, b, "-o", out, "--smooth", "0.5"};
    cr_assert_eq(run_plot(7, argv), 0);
    FILE *f = fopen(out, "r");
    cr_assert_not_null(f);
    char *svg = calloc(1, 1 << 20);
    cr_assert_gt(fread(svg, 1, (1 << 20) - 1, f), 0);
    fclose(f);
    expect_well_formed(svg);
    cr_expect(strstr(svg, ">one</text>") && strstr(svg, ">two</text>"));
    free(svg);
    /* Nothing but the runs and the SVG: no temporary file left behind. */
    DIR *d = opendir(root);
    struct dirent *de;
    int entries = 0;
    while ((de = readdir(d)))
        entries += de->d_name[0] != '.';
    closedir(d);
    cr_expect_eq(entries, 3);

    const char *missing[] = {"plot", "/nonexistent/run", "-o", out};
    cr_expect_eq(run_plot(4, missing), 1);
    const char *none[] = {"plot", "-o", out};
    cr_expect_eq(run_plot(3, none), 2);
    const char *bad_smooth[] = {"plot", a, "--smooth", "1.5", "-o", out};
    cr_expect_eq(run_plot(6, bad_smooth), 1);
    char bad_out[4096];
    snprintf(bad_out, sizeof bad_out, "%s/no/such/dir/x.svg", root);
    const char *unwritable[] = {"plot", a, "-o", bad_out};
    cr_expect_eq(run_plot(4, unwritable), 1);
    free(a);
    free(b);
    rmtree(root);
    free(root);
}
