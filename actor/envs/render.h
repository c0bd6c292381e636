/* Drawing the card-game observations: an RGB canvas, text in the built-in
 * font, playing cards, conversion to the policy's C×H×W float image and
 * PNG files for people.
 *
 * Every env draws at its native size (a multiple of 8, so 8×8 patches tile
 * it; a Points24 card is 14×24 and takes exactly 2×3 patches) and
 * render_to_chw resamples to the configured resolution. A PNG is the same
 * float image scaled up by an integer factor with nearest-neighbour, so a
 * person sees exactly what the policy sees. */
#ifndef GTRT_RENDER_H
#define GTRT_RENDER_H

#include <stdint.h>

#include "actor/envs/font.h"
#include "common/err.h"

enum {
    RENDER_CARD_W = 14,
    RENDER_CARD_H = 24,
    RENDER_MAX_SIDE = 4096, /* largest canvas or image side accepted */
};

typedef struct render_rgb {
    uint8_t r, g, b;
} render_rgb;

/* The felt green of gym_cards' tables. */
#define RENDER_FELT ((render_rgb){0x35, 0x65, 0x4d})
#define RENDER_WHITE ((render_rgb){255, 255, 255})
#define RENDER_BLACK ((render_rgb){0, 0, 0})
#define RENDER_RED ((render_rgb){200, 0, 0})

/* Caller-owned canvas of w×h RGB pixels, row-major. */
typedef struct render_canvas {
    int w, h;
    uint8_t *rgb;
} render_canvas;

int render_canvas_init(render_canvas *c, int w, int h, render_rgb bg, err *e);
void render_canvas_deinit(render_canvas *c);

/* Drawing clips at the canvas edges. */
void render_fill(render_canvas *c, int x, int y, int w, int h, render_rgb col);
/* One line of text with its top-left corner at (x, y); characters without
 * a glyph are drawn as '?'. */
void render_text(render_canvas *c, int x, int y, const char *text, render_rgb col);
/* A face-up card (rank 1..13: A, 2..10, J, Q, K) at (x, y), 14×24. */
void render_card(render_canvas *c, int x, int y, int rank, font_suit suit);
/* A face-down card at (x, y), 14×24. */
void render_card_back(render_canvas *c, int x, int y);
/* "A", "2".."10", "J", "Q", "K". */
const char *render_rank_name(int rank);

/* Resample the canvas to out_c (1 or 3) × out_h × out_w floats in [0, 1],
 * channel-major. Box filter: each output pixel averages the canvas pixels it
 * covers, so an integer downscale keeps strokes as grey levels and an
 * upscale repeats pixels. out_c == 1 gives the luma. */
void render_to_chw(const render_canvas *c, float *out, int out_c, int out_h, int out_w);

/* Write a C×H×W image (C = 1 or 3, values clamped to [0, 1]) as an 8-bit
 * PNG, each pixel drawn as a scale×scale block. */
int render_write_png(const char *path, const float *chw, int ch, int h, int w, int scale,
                     err *e);

#endif
