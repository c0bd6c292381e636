/* `gtrt plot`: learning curves of one or more runs as one SVG file.
 *
 * Reads RUN_DIR/metrics.jsonl of each run (see common/metrics.h) and draws
 * one panel per metric (success rate, episode return, thought-token entropy,
 * and teacher KL when some run has it) against environment steps, the runs
 * overlaid in distinct colours with a legend of run directory names. The
 * SVG is plain text, self-contained and written atomically, so it can be
 * opened in a browser while a run is still going, and re-plotted at will. */
#ifndef GTRT_PLOT_H
#define GTRT_PLOT_H

#include <stddef.h>

#include "common/err.h"

typedef struct plot_opts {
    const char *title; /* NULL: "Training curves" */
    double smooth;     /* 0: raw curves; (0, 1): also an EMA-smoothed curve, TensorBoard style */
} plot_opts;

/* Render the runs (each a run directory or a metrics.jsonl path) into a
 * malloc'd, NUL-terminated SVG document. Fails with a message naming the run
 * when a file is missing or holds no usable metrics line. */
int plot_svg(const char *const *runs, int nruns, const plot_opts *o, char **svg, err *e);

/* Write `len` bytes to `path` atomically (temporary file, fsync, rename);
 * "-" writes to stdout. */
int plot_write_file(const char *path, const char *text, size_t len, err *e);

/* `gtrt plot RUN_DIR... [-o curves.svg] [--title T] [--smooth X]`. */
int plot_main(int argc, char **argv);

#endif
