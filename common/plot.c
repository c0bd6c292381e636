/* `gtrt plot`: metrics.jsonl files in, one SVG of learning curves out (see
 * plot.h). Reading, scaling and drawing are kept apart: plot_run_load turns a
 * file into per-panel point lists, plot_axis_* pick "nice" tick values, and
 * the plot_draw_* functions only emit SVG text. */
#include "common/strbuf.h"
#include "common/plot.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cli.h"
#include "common/metrics.h"

/* ==== panels ==== */

typedef struct plot_panel_def {
    const char *key, *title, *ylabel;
    int percent; /* fixed 0..1 axis with ticks as percentages */
    int optional; /* drawn only when some run has it */
} plot_panel_def;

static const plot_panel_def plot_panels[] = {
    {METRICS_SUCCESS_RATE, "Success rate", "success rate", 1, 0},
    {METRICS_RETURN, "Episode return", "mean return", 0, 0},
    {METRICS_THOUGHT_ENTROPY, "Thought-token entropy", "entropy (nats / token)", 0, 0},
    {METRICS_TEACHER_KL, "KL to the merged teacher", "KL (nats / token)", 0, 1},
};
enum { PLOT_NPANELS = sizeof plot_panels / sizeof plot_panels[0] };

/* Tableau 10: distinct for most colour vision, calm on white. */
static const char *const plot_colors[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                          "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
enum { PLOT_NCOLORS = sizeof plot_colors / sizeof plot_colors[0] };

/* Geometry, in SVG user units (pixels). */
enum {
    PLOT_PANEL_W = 520,
    PLOT_PANEL_H = 330,
    PLOT_MARGIN_L = 72,
    PLOT_MARGIN_R = 20,
    PLOT_MARGIN_T = 34,
    PLOT_MARGIN_B = 50,
    PLOT_PAD = 16,
    PLOT_TITLE_H = 40,
    PLOT_LEGEND_ROW = 22,
    PLOT_MARKERS_BELOW = 25, /* draw point markers when a curve has fewer points */
};

/* ==== data ==== */

typedef struct plot_point {
    double x, y;
    long long step;
} plot_point;

typedef struct plot_curve {
    plot_point *p;
    size_t n, cap;
} plot_curve;

typedef struct plot_run {
    char name[256];
    plot_curve curve[PLOT_NPANELS];
} plot_run;

static void plot_run_free(plot_run *r)
{
    for (int k = 0; k < PLOT_NPANELS; k++)
        free(r->curve[k].p);
    memset(r, 0, sizeof *r);
}

static int plot_curve_push(plot_curve *c, plot_point pt)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 256;
        plot_point *q = realloc(c->p, cap * sizeof *q);
        if (!q)
            return -1;
        c->p = q;
        c->cap = cap;
    }
    c->p[c->n++] = pt;
    return 0;
}

/* A resumed learner may restart from an earlier checkpoint and log steps
 * again: later lines win, so drop points at or after the repeated step. */
static void plot_curve_rewind(plot_curve *c, long long step)
{
    while (c->n && c->p[c->n - 1].step >= step)
        c->n--;
}

static double plot_json_num(const cJSON *o, const char *k, int *ok)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    *ok = cJSON_IsNumber(v) && isfinite(v->valuedouble);
    return *ok ? v->valuedouble : 0;
}

/* Add one parsed line; returns 1 if it had env_steps, 0 if not, -1 on OOM. */
static int plot_run_add_line(plot_run *r, const cJSON *o, long long *last_step)
{
    int ok, has_step;
    double x = plot_json_num(o, "env_steps", &ok);
    long long step = (long long)plot_json_num(o, "step", &has_step);
    if (!ok)
        return 0;
    if (has_step && step <= *last_step)
        for (int k = 0; k < PLOT_NPANELS; k++)
            plot_curve_rewind(&r->curve[k], step);
    if (has_step)
        *last_step = step;
    for (int k = 0; k < PLOT_NPANELS; k++) {
        int has;
        double y = plot_json_num(o, plot_panels[k].key, &has);
        if (has && plot_curve_push(&r->curve[k], (plot_point){x, y, has_step ? step : 0}))
            return -1;
    }
    return 1;
}

static void plot_run_path(const char *arg, char *path, size_t cap)
{
    struct stat st;
    size_t n = strlen(arg);
    if (stat(arg, &st) == 0 && S_ISREG(st.st_mode))
        snprintf(path, cap, "%s", arg);
    else
        snprintf(path, cap, "%s%smetrics.jsonl", arg, n && arg[n - 1] == '/' ? "" : "/");
}

static void plot_copy(char *out, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (n >= cap)
        n = cap - 1;
    memcpy(out, s, n);
    out[n] = 0;
}

/* The run's name for the legend: the last component of its directory
 * (resolved, so that "." and "runs/x/" name the run too). */
static void plot_run_name(const char *arg, char *name, size_t cap)
{
    char dir[4096], real[PATH_MAX];
    plot_copy(dir, sizeof dir, arg);
    struct stat st;
    if (stat(dir, &st) == 0 && S_ISREG(st.st_mode)) {
        char *slash = strrchr(dir, '/');
        if (slash == dir)
            dir[1] = 0; /* "/metrics.jsonl" */
        else if (slash)
            *slash = 0;
        else
            plot_copy(dir, sizeof dir, ".");
    }
    if (realpath(dir, real))
        plot_copy(dir, sizeof dir, real);
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        dir[--n] = 0;
    const char *base = strrchr(dir, '/');
    plot_copy(name, cap, base && base[1] ? base + 1 : dir);
}

static int plot_run_load(const char *arg, plot_run *r, err *e)
{
    memset(r, 0, sizeof *r);
    plot_run_name(arg, r->name, sizeof r->name);
    char path[4096];
    plot_run_path(arg, path, sizeof path);
    FILE *f = fopen(path, "r");
    if (!f)
        return err_set(e, GTRT_ENOTFOUND, "%s: cannot read %s: %s (is it a run directory?)", arg,
                       path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    long long last_step = -1;
    long lines = 0, bad = 0, used = 0;
    int rc = 0;
    while (rc == 0 && getline(&line, &cap, f) >= 0) {
        if (line[strspn(line, " \t\r\n")] == 0)
            continue;
        lines++;
        cJSON *o = cJSON_Parse(line);
        int got = cJSON_IsObject(o) ? plot_run_add_line(r, o, &last_step) : 0;
        cJSON_Delete(o);
        if (got < 0)
            rc = err_set(e, GTRT_ENOMEM, "%s: out of memory", path);
        used += got > 0;
        bad += got == 0;
    }
    free(line);
    fclose(f);
    if (rc == 0 && lines == 0)
        rc = err_set(e, GTRT_EPARSE, "%s is empty: the run has not logged any metrics yet", path);
    else if (rc == 0 && used == 0)
        rc = err_set(e, GTRT_EPARSE, "%s: none of its %ld lines is a JSON object with env_steps",
                     path, lines);
    if (rc == 0 && bad)
        fprintf(stderr, "gtrt plot: %s: skipped %ld unreadable line(s)\n", path, bad);
    if (rc)
        plot_run_free(r);
    return rc;
}

/* ==== text buffer ==== */


/* Text content and attribute values: escape the five XML specials, and
 * replace control bytes, which XML 1.0 forbids outright. */
static void plot_xml(strbuf *b, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '&': strbuf_printf(b, "&amp;"); break;
        case '<': strbuf_printf(b, "&lt;"); break;
        case '>': strbuf_printf(b, "&gt;"); break;
        case '"': strbuf_printf(b, "&quot;"); break;
        case '\'': strbuf_printf(b, "&apos;"); break;
        default: strbuf_printf(b, "%c", *p < 0x20 ? '?' : *p);
        }
    }
}

/* ==== axes ==== */

typedef struct plot_axis {
    double lo, hi, step; /* ticks at lo, lo + step, ..., hi */
} plot_axis;

/* 1, 2, 2.5 or 5 times a power of ten, near raw. */
static double plot_nice_step(double raw)
{
    double p = pow(10, floor(log10(raw)));
    double f = raw / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * p;
}

static plot_axis plot_axis_make(double lo, double hi, int ticks)
{
    if (!(hi > lo)) {
        double pad = fabs(lo) > 0 ? fabs(lo) * 0.1 : 1;
        lo -= pad;
        hi += pad;
    }
    double step = plot_nice_step((hi - lo) / ticks);
    return (plot_axis){floor(lo / step + 1e-9) * step, ceil(hi / step - 1e-9) * step, step};
}

/* Tick label: env steps with k / M suffixes, other values with as many
 * decimals as the tick step needs. */
static void plot_tick_label(char *out, size_t cap, double v, double step, int kind)
{
    if (fabs(v) < step * 1e-6)
        v = 0;
    if (kind == 'p') {
        snprintf(out, cap, "%.0f%%", v * 100);
        return;
    }
    double scale = 1;
    const char *suffix = "";
    if (kind == 'x' && fabs(step) >= 1e6) {
        scale = 1e6;
        suffix = "M";
    } else if (kind == 'x' && fabs(step) >= 1e3) {
        scale = 1e3;
        suffix = "k";
    }
    if (v == 0 && kind == 'x') {
        snprintf(out, cap, "0"); /* not "0k" */
        return;
    }
    double s = step / scale;
    int dec = s >= 1 ? 0 : (int)ceil(-log10(s) - 1e-9);
    /* 2.5-type steps need one more decimal than their magnitude says. */
    while (dec < 6 && fabs(s * pow(10, dec) - round(s * pow(10, dec))) > 1e-6)
        dec++;
    snprintf(out, cap, "%.*f%s", dec, v / scale, suffix);
}

/* ==== drawing ==== */

typedef struct plot_frame {
    double x0, y0, w, h; /* plot area in canvas units */
    plot_axis ax, ay;
} plot_frame;

static double plot_fx(const plot_frame *f, double x)
{
    return f->x0 + (x - f->ax.lo) / (f->ax.hi - f->ax.lo) * f->w;
}

static double plot_fy(const plot_frame *f, double y)
{
    return f->y0 + f->h - (y - f->ay.lo) / (f->ay.hi - f->ay.lo) * f->h;
}

static void plot_draw_axes(strbuf *b, const plot_frame *f, const plot_panel_def *def)
{
    char lab[64];
    strbuf_printf(b, "<g class=\"axes\" font-size=\"11\" fill=\"#444\">\n");
    for (int i = 0; f->ay.lo + i * f->ay.step <= f->ay.hi + f->ay.step * 1e-6; i++) {
        double v = f->ay.lo + i * f->ay.step, y = plot_fy(f, v);
        plot_tick_label(lab, sizeof lab, v, f->ay.step, def->percent ? 'p' : 'y');
        strbuf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e3e3e3\"/>\n",
                    f->x0, y, f->x0 + f->w, y);
        strbuf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", f->x0 - 6,
                    y + 4, lab);
    }
    for (int i = 0; f->ax.lo + i * f->ax.step <= f->ax.hi + f->ax.step * 1e-6; i++) {
        double v = f->ax.lo + i * f->ax.step, x = plot_fx(f, v);
        plot_tick_label(lab, sizeof lab, v, f->ax.step, 'x');
        strbuf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e3e3e3\"/>\n",
                    x, f->y0, x, f->y0 + f->h);
        strbuf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", x,
                    f->y0 + f->h + 16, lab);
    }
    strbuf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
                   "stroke=\"#888\"/>\n", f->x0, f->y0, f->w, f->h);
    strbuf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\">env steps"
                   "</text>\n", f->x0 + f->w / 2, f->y0 + f->h + 36);
    double ly = f->y0 + f->h / 2, lx = f->x0 - 56;
    strbuf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"12\" "
                   "transform=\"rotate(-90 %.1f %.1f)\">", lx, ly, lx, ly);
    plot_xml(b, def->ylabel);
    strbuf_printf(b, "</text>\n</g>\n");
}

/* Exponential moving average with TensorBoard's debiasing, so the smoothed
 * curve starts at the first point instead of at zero. */
static double plot_smoothed(double *acc, double *weight, double y, double smooth)
{
    *acc = *acc * smooth + (1 - smooth) * y;
    *weight = *weight * smooth + (1 - smooth);
    return *acc / *weight;
}

static void plot_draw_path(strbuf *b, const plot_frame *f, const plot_curve *c, const char *run,
                           const char *color, const char *extra, double smooth)
{
    strbuf_printf(b, "<path class=\"run\" data-run=\"");
    plot_xml(b, run);
    strbuf_printf(b, "\" fill=\"none\" stroke=\"%s\" %s d=\"", color, extra);
    double acc = 0, weight = 0;
    for (size_t i = 0; i < c->n; i++) {
        double y = smooth > 0 ? plot_smoothed(&acc, &weight, c->p[i].y, smooth) : c->p[i].y;
        strbuf_printf(b, "%s%.2f %.2f", i ? " L" : "M", plot_fx(f, c->p[i].x), plot_fy(f, y));
    }
    strbuf_printf(b, "\"/>\n");
}

static void plot_draw_curve(strbuf *b, const plot_frame *f, const plot_curve *c, const char *run,
                            const char *color, double smooth)
{
    if (!c->n)
        return;
    if (smooth > 0) {
        plot_draw_path(b, f, c, run, color, "stroke-width=\"1\" stroke-opacity=\"0.3\"", 0);
        plot_draw_path(b, f, c, run, color, "stroke-width=\"2\"", smooth);
    } else {
        plot_draw_path(b, f, c, run, color, "stroke-width=\"1.8\"", 0);
    }
    if (c->n >= PLOT_MARKERS_BELOW)
        return;
    for (size_t i = 0; i < c->n; i++)
        strbuf_printf(b, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"2.5\" fill=\"%s\"/>\n",
                    plot_fx(f, c->p[i].x), plot_fy(f, c->p[i].y), color);
}

static void plot_range(const plot_run *runs, int nruns, int k, int use_x, double *lo, double *hi)
{
    *lo = INFINITY;
    *hi = -INFINITY;
    for (int r = 0; r < nruns; r++)
        for (size_t i = 0; i < runs[r].curve[k].n; i++) {
            double v = use_x ? runs[r].curve[k].p[i].x : runs[r].curve[k].p[i].y;
            *lo = fmin(*lo, v);
            *hi = fmax(*hi, v);
        }
}

static void plot_draw_panel(strbuf *b, const plot_run *runs, int nruns, int k, double px,
                            double py, plot_axis ax, const plot_opts *o)
{
    const plot_panel_def *def = &plot_panels[k];
    plot_frame f = {px + PLOT_MARGIN_L, py + PLOT_MARGIN_T,
                    PLOT_PANEL_W - PLOT_MARGIN_L - PLOT_MARGIN_R,
                    PLOT_PANEL_H - PLOT_MARGIN_T - PLOT_MARGIN_B, ax, {0, 1, 0.2}};
    double lo, hi;
    plot_range(runs, nruns, k, 0, &lo, &hi);
    if (!def->percent && isfinite(lo))
        f.ay = plot_axis_make(lo, hi, 5);
    strbuf_printf(b, "<g class=\"panel\" data-key=\"%s\">\n", def->key);
    strbuf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"14\" font-weight=\"bold\">", f.x0,
                py + 20);
    plot_xml(b, def->title);
    strbuf_printf(b, "</text>\n");
    plot_draw_axes(b, &f, def);
    strbuf_printf(b, "<clipPath id=\"clip%d\"><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
                   "height=\"%.1f\"/></clipPath>\n<g clip-path=\"url(#clip%d)\">\n",
                k, f.x0 - 3, f.y0 - 3, f.w + 6, f.h + 6, k);
    for (int r = 0; r < nruns; r++)
        plot_draw_curve(b, &f, &runs[r].curve[k], runs[r].name, plot_colors[r % PLOT_NCOLORS],
                        o->smooth);
    if (!isfinite(lo))
        strbuf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" fill=\"#999\">"
                       "no data</text>\n", f.x0 + f.w / 2, f.y0 + f.h / 2);
    strbuf_printf(b, "</g>\n</g>\n");
}

/* Legend entries flow left to right and wrap; returns the rows used. */
static int plot_draw_legend(strbuf *b, const plot_run *runs, int nruns, double y, double width,
                            int draw)
{
    double x = PLOT_PAD, row = 0;
    for (int r = 0; r < nruns; r++) {
        double w = 34 + 7.0 * (double)strlen(runs[r].name) + 18;
        if (x + w > width - PLOT_PAD && x > PLOT_PAD) {
            x = PLOT_PAD;
            row++;
        }
        double ly = y + row * PLOT_LEGEND_ROW;
        if (draw) {
            strbuf_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                           "stroke-width=\"3\"/>\n", x, ly, x + 26, ly,
                        plot_colors[r % PLOT_NCOLORS]);
            strbuf_printf(b, "<text class=\"legend\" x=\"%.1f\" y=\"%.1f\" font-size=\"13\">", x + 32,
                        ly + 4);
            plot_xml(b, runs[r].name);
            strbuf_printf(b, "</text>\n");
        }
        x += w;
    }
    return (int)row + 1;
}

static int plot_panels_shown(const plot_run *runs, int nruns, int shown[PLOT_NPANELS])
{
    int n = 0;
    for (int k = 0; k < PLOT_NPANELS; k++) {
        int has = 0;
        for (int r = 0; r < nruns; r++)
            has |= runs[r].curve[k].n > 0;
        shown[k] = has || !plot_panels[k].optional;
        n += shown[k];
    }
    return n;
}

static void plot_draw(strbuf *b, const plot_run *runs, int nruns, const plot_opts *o)
{
    int shown[PLOT_NPANELS];
    int npanels = plot_panels_shown(runs, nruns, shown);
    int cols = npanels > 1 ? 2 : 1, rows = (npanels + cols - 1) / cols;
    double width = cols * PLOT_PANEL_W + 2 * PLOT_PAD;
    int lrows = plot_draw_legend(b, runs, nruns, 0, width, 0);
    double top = PLOT_TITLE_H + lrows * PLOT_LEGEND_ROW + 8;
    double height = top + rows * PLOT_PANEL_H + PLOT_PAD;
    strbuf_printf(b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                   "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                   "viewBox=\"0 0 %.0f %.0f\" font-family=\"DejaVu Sans, Helvetica, Arial, "
                   "sans-serif\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
                width, height, width, height);
    strbuf_printf(b, "<text x=\"%d\" y=\"28\" font-size=\"18\" font-weight=\"bold\">", PLOT_PAD);
    plot_xml(b, o->title ? o->title : "Training curves");
    strbuf_printf(b, "</text>\n<g class=\"legend\">\n");
    plot_draw_legend(b, runs, nruns, PLOT_TITLE_H + 8, width, 1);
    strbuf_printf(b, "</g>\n");
    /* One x axis for every panel, so the panels line up by env step. */
    double xlo = INFINITY, xhi = -INFINITY;
    for (int k = 0; k < PLOT_NPANELS; k++) {
        double lo, hi;
        plot_range(runs, nruns, k, 1, &lo, &hi);
        xlo = fmin(xlo, lo);
        xhi = fmax(xhi, hi);
    }
    xlo = isfinite(xlo) ? fmin(xlo, 0) : 0;
    xhi = isfinite(xhi) && xhi > xlo ? xhi : xlo + 1;
    plot_axis ax = plot_axis_make(xlo, xhi, 6);
    ax.hi = xhi; /* end at the last point, not at the next round number */
    if (ax.step < 1)
        ax.step = 1; /* env steps are whole */
    for (int k = 0, slot = 0; k < PLOT_NPANELS; k++) {
        if (!shown[k])
            continue;
        double px = PLOT_PAD + (slot % cols) * PLOT_PANEL_W, py = top + (slot / cols) * PLOT_PANEL_H;
        plot_draw_panel(b, runs, nruns, k, px, py, ax, o);
        slot++;
    }
    strbuf_printf(b, "</svg>\n");
}

int plot_svg(const char *const *runs, int nruns, const plot_opts *o, char **svg, err *e)
{
    *svg = NULL;
    if (nruns <= 0)
        return err_set(e, GTRT_EINVAL, "no run directory given");
    if (o->smooth < 0 || o->smooth >= 1)
        return err_set(e, GTRT_EINVAL, "smoothing %g: expected 0 <= smooth < 1", o->smooth);
    plot_run *rs = calloc((size_t)nruns, sizeof *rs);
    if (!rs)
        return err_set(e, GTRT_ENOMEM, "out of memory");
    int rc = 0, loaded = 0;
    for (; loaded < nruns && rc == 0; loaded++)
        rc = plot_run_load(runs[loaded], &rs[loaded], e);
    if (rc == 0) {
        strbuf b = {0};
        plot_draw(&b, rs, nruns, o);
        if (b.oom) {
            free(b.p);
            rc = err_set(e, GTRT_ENOMEM, "out of memory drawing the plot");
        } else {
            *svg = b.p;
        }
    }
    for (int i = 0; i < loaded; i++)
        plot_run_free(&rs[i]);
    free(rs);
    return rc;
}

/* ==== output ==== */

int plot_write_file(const char *path, const char *text, size_t len, err *e)
{
    if (!strcmp(path, "-"))
        return fwrite(text, 1, len, stdout) == len && fflush(stdout) == 0
                   ? 0 : err_set(e, GTRT_EIO, "writing to stdout: %s", strerror(errno));
    char tmp[4096];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof tmp)
        return err_set(e, GTRT_ERANGE, "output path too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return err_set(e, GTRT_EIO, "writing %s: %s", path, strerror(errno));
    size_t off = 0;
    int saved = 0;
    while (off < len && !saved) {
        ssize_t k = write(fd, text + off, len - off);
        if (k > 0)
            off += (size_t)k;
        else if (k == 0 || errno != EINTR)
            saved = k == 0 ? EIO : errno;
    }
    if (!saved && fsync(fd) != 0)
        saved = errno;
    if (close(fd) != 0 && !saved)
        saved = errno;
    if (!saved && rename(tmp, path) != 0)
        saved = errno;
    if (!saved)
        return 0;
    unlink(tmp);
    return err_set(e, GTRT_EIO, "writing %s: %s", path, strerror(saved));
}

/* ==== the subcommand ==== */

enum { PLOT_MAX_RUNS = 64 };

int plot_main(int argc, char **argv)
{
    static const cli_cmd cmd = {
        "plot", "RUN_DIR...", "Draw learning curves of one or more runs into an SVG file.",
        "Reads RUN_DIR/metrics.jsonl of every run and draws success rate, episode\n"
        "return, thought-token entropy and (when logged) the KL to the merged teacher\n"
        "against environment steps, runs overlaid and named by their directory.\n"
        "A RUN_DIR may also be the path of a metrics.jsonl file.\n"
        "Example: gtrt plot runs/ppo runs/turbo-kl -o curves.svg"};
    const char *out = "curves.svg", *title = NULL;
    double smooth = 0;
    cli_opt opts[] = {
        {"out", CLI_STR, &out, "FILE", "SVG to write, atomically (also -o; '-': stdout; default curves.svg)"},
        {"title", CLI_STR, &title, "TEXT", "title above the panels"},
        {"smooth", CLI_DOUBLE, &smooth, "X", "also draw an EMA-smoothed curve, 0 <= X < 1 (e.g. 0.6)"},
        {0},
    };
    cli_common common;
    char *pos[PLOT_MAX_RUNS];
    int npos = 0;
    int rc = cli_parse(argc, argv, &cmd, opts, &common, pos, &npos, PLOT_MAX_RUNS);
    config *cfg = rc == 0 ? cli_config(&common) : NULL;
    int status = rc > 0 ? 0 : rc < 0 || !cfg ? 2 : -1;
    config_free(cfg);
    if (status < 0 && npos == 0) {
        fprintf(stderr, "gtrt plot: give at least one run directory\nTry 'gtrt plot --help'.\n");
        status = 2;
    }
    if (status < 0) {
        plot_opts po = {title, smooth};
        char *svg = NULL;
        err e = {0};
        rc = plot_svg((const char *const *)pos, npos, &po, &svg, &e);
        if (rc == 0)
            rc = plot_write_file(out, svg, strlen(svg), &e);
        if (rc == 0 && strcmp(out, "-"))
            fprintf(stderr, "gtrt plot: wrote %s (%d run%s)\n", out, npos, npos == 1 ? "" : "s");
        else if (rc)
            fprintf(stderr, "gtrt plot: %s\n", e.msg);
        free(svg);
        status = rc ? 1 : 0;
    }
    return status;
}
