/* Canvas drawing, resampling and PNG output (see render.h). */
#include "actor/envs/render.h"

#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int render_canvas_init(render_canvas *c, int w, int h, render_rgb bg, err *e)
{
    c->w = c->h = 0;
    c->rgb = NULL;
    if (w <= 0 || h <= 0 || w > RENDER_MAX_SIDE || h > RENDER_MAX_SIDE)
        return err_set(e, GTRT_ERANGE, "canvas size %dx%d outside 1..%d", w, h,
                       RENDER_MAX_SIDE);
    c->rgb = malloc((size_t)w * h * 3);
    if (!c->rgb)
        return err_set(e, GTRT_ENOMEM, "canvas %dx%d: out of memory", w, h);
    c->w = w;
    c->h = h;
    render_fill(c, 0, 0, w, h, bg);
    return 0;
}

void render_canvas_deinit(render_canvas *c)
{
    free(c->rgb);
    c->rgb = NULL;
    c->w = c->h = 0;
}

static void render_pixel(render_canvas *c, int x, int y, render_rgb col)
{
    if (x < 0 || y < 0 || x >= c->w || y >= c->h)
        return;
    uint8_t *p = c->rgb + ((size_t)y * c->w + x) * 3;
    p[0] = col.r;
    p[1] = col.g;
    p[2] = col.b;
}

void render_fill(render_canvas *c, int x, int y, int w, int h, render_rgb col)
{
    for (int j = y; j < y + h; j++)
        for (int i = x; i < x + w; i++)
            render_pixel(c, i, j, col);
}

/* Blit `rows` (height rows, `width` bits each, most significant bit left). */
static void render_bits(render_canvas *c, int x, int y, const uint8_t *rows, int width,
                        int height, render_rgb col)
{
    for (int j = 0; j < height; j++)
        for (int i = 0; i < width; i++)
            if (rows[j] & (1u << (width - 1 - i)))
                render_pixel(c, x + i, y + j, col);
}

void render_text(render_canvas *c, int x, int y, const char *text, render_rgb col)
{
    for (const char *s = text; *s; s++, x += FONT_ADVANCE) {
        const uint8_t *g = font_glyph((unsigned char)*s);
        if (!g)
            g = font_glyph('?');
        render_bits(c, x, y, g, FONT_W, FONT_H, col);
    }
}

const char *render_rank_name(int rank)
{
    static const char *const names[] = {"?", "A", "2", "3", "4",  "5", "6",
                                        "7", "8", "9", "10", "J", "Q", "K"};
    return rank >= 1 && rank <= 13 ? names[rank] : "?";
}

/* White card body with the two corners of each side cut, so cards read as
 * cards against the felt and neighbours stay apart. */
static void render_card_body(render_canvas *c, int x, int y, render_rgb col)
{
    render_fill(c, x + 1, y, RENDER_CARD_W - 2, RENDER_CARD_H, col);
    render_fill(c, x, y + 1, 1, RENDER_CARD_H - 2, col);
    render_fill(c, x + RENDER_CARD_W - 1, y + 1, 1, RENDER_CARD_H - 2, col);
}

void render_card(render_canvas *c, int x, int y, int rank, font_suit suit)
{
    render_rgb ink = (suit == SUIT_HEARTS || suit == SUIT_DIAMONDS) ? RENDER_RED : RENDER_BLACK;
    render_card_body(c, x, y, RENDER_WHITE);
    const char *name = render_rank_name(rank);
    int tx = x + (RENDER_CARD_W - font_text_width(name) + 1) / 2;
    /* Rank, suit, rank, one per 8-pixel band: when the card sits on the
     * 8×8 patch grid (y a multiple of 8) each appears whole in its own patch
     * row, and the rank twice. */
    render_text(c, tx, y + 1, name, ink);
    render_bits(c, x + (RENDER_CARD_W - FONT_SUIT_W) / 2, y + 9, font_suit_rows(suit),
                FONT_SUIT_W, FONT_SUIT_H, ink);
    render_text(c, tx, y + 17, name, ink);
}

void render_card_back(render_canvas *c, int x, int y)
{
    render_card_body(c, x, y, RENDER_WHITE);
    const render_rgb blue = {40, 60, 160};
    for (int j = 2; j < RENDER_CARD_H - 2; j++)
        for (int i = 2; i < RENDER_CARD_W - 2; i++)
            if (((i + j) & 3) != 0)
                render_pixel(c, x + i, y + j, blue);
}

void render_to_chw(const render_canvas *c, float *out, int out_c, int out_h, int out_w)
{
    size_t plane = (size_t)out_h * out_w;
    for (int oy = 0; oy < out_h; oy++) {
        int y0 = (int)((long)oy * c->h / out_h), y1 = (int)((long)(oy + 1) * c->h / out_h);
        if (y1 <= y0)
            y1 = y0 + 1;
        for (int ox = 0; ox < out_w; ox++) {
            int x0 = (int)((long)ox * c->w / out_w), x1 = (int)((long)(ox + 1) * c->w / out_w);
            if (x1 <= x0)
                x1 = x0 + 1;
            double acc[3] = {0, 0, 0};
            for (int y = y0; y < y1; y++)
                for (int x = x0; x < x1; x++)
                    for (int k = 0; k < 3; k++)
                        acc[k] += c->rgb[((size_t)y * c->w + x) * 3 + k];
            double n = (double)(y1 - y0) * (x1 - x0) * 255.0;
            size_t at = (size_t)oy * out_w + ox;
            if (out_c == 1) {
                out[at] = (float)((0.299 * acc[0] + 0.587 * acc[1] + 0.114 * acc[2]) / n);
            } else {
                for (int k = 0; k < 3; k++)
                    out[k * plane + at] = (float)(acc[k] / n);
            }
        }
    }
}

static uint8_t render_byte(float v)
{
    if (!(v > 0.0f))
        return 0;
    if (v >= 1.0f)
        return 255;
    return (uint8_t)(v * 255.0f + 0.5f);
}

/* libpng reports errors by longjmp; the jump buffer lives in png_ptr, so no
 * state outlives the call. Rows are built one at a time. */
int render_write_png(const char *path, const float *chw, int ch, int h, int w, int scale,
                     err *e)
{
    if (ch != 1 && ch != 3)
        return err_set(e, GTRT_EINVAL, "PNG: %d channels (want 1 or 3)", ch);
    if (scale < 1 || h < 1 || w < 1 || (long)w * scale > 65536 || (long)h * scale > 65536)
        return err_set(e, GTRT_ERANGE, "PNG: size %dx%d at scale %d is out of range", w, h,
                       scale);
    FILE *f = fopen(path, "wb");
    if (!f)
        return err_set(e, GTRT_EIO, "%s: %s", path, strerror(errno));
    int W = w * scale, H = h * scale;
    uint8_t *row = malloc((size_t)W * 3);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!row || !png || !info) {
        png_destroy_write_struct(&png, info ? &info : NULL);
        free(row);
        fclose(f);
        return err_set(e, GTRT_ENOMEM, "PNG: out of memory");
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(row);
        fclose(f);
        return err_set(e, GTRT_EIO, "%s: libpng failed to write", path);
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)W, (png_uint_32)H, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    size_t plane = (size_t)h * w;
    for (int Y = 0; Y < H; Y++) {
        int y = Y / scale;
        for (int X = 0; X < W; X++) {
            size_t at = (size_t)y * w + X / scale;
            for (int k = 0; k < 3; k++)
                row[X * 3 + k] = render_byte(chw[(ch == 3 ? k * plane : 0) + at]);
        }
        png_write_row(png, row);
    }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(row);
    if (fclose(f) != 0)
        return err_set(e, GTRT_EIO, "%s: %s", path, strerror(errno));
    return 0;
}
