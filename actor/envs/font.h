/* Built-in 5x7 bitmap font and 7x7 card-suit symbols.
 *
 * The envs draw their observations without font files: digits, upper-case
 * letters (lower case is drawn as upper case) and the symbols the games
 * print (+ - * / ( ) = : . , ? ! < > [ ] ' " _ # %). Glyphs are tiny on
 * purpose: a Points24 card is 14x24 pixels, and a rank must stay a clean,
 * learnable shape at that size. */
#ifndef GTRT_FONT_H
#define GTRT_FONT_H

#include <stdint.h>

enum {
    FONT_W = 5,       /* glyph width in pixels */
    FONT_H = 7,       /* glyph height */
    FONT_ADVANCE = 6, /* glyph width plus one column of spacing */
    FONT_SUIT_W = 7,
    FONT_SUIT_H = 7,
};

typedef enum { SUIT_HEARTS, SUIT_DIAMONDS, SUIT_SPADES, SUIT_CLUBS } font_suit;

/* Seven rows of a glyph, bit 4 the leftmost pixel; NULL when the font has no
 * glyph for `c` (a space has one: all rows empty). */
const uint8_t *font_glyph(int c);
/* Seven rows of a suit symbol, bit 6 the leftmost pixel. */
const uint8_t *font_suit_rows(font_suit s);
/* Width in pixels of `text` drawn in one line (no trailing spacing). */
int font_text_width(const char *text);

#endif
