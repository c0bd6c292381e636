/* Rendering: the font, cards, determinism (golden hashes per env and
 * seed), distinct cards look distinct, resampling, and PNG files that
 * libpng reads back pixel for pixel. */
#include <criterion/criterion.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "actor/envs/env.h"
#include "actor/envs/font.h"
#include "actor/envs/render.h"

/* Criterion's --full-stats records every assertion, passed ones too, which
 * makes loops over thousands of cases slow: report only failures. */
#define CHECK(cond, ...)                                                                      \
    do {                                                                                      \
        if (!(cond))                                                                          \
            cr_expect(0, __VA_ARGS__);                                                        \
    } while (0)
#define REQUIRE(cond, ...)                                                                    \
    do {                                                                                      \
        if (!(cond))                                                                          \
            cr_assert(0, __VA_ARGS__);                                                        \
    } while (0)

/* FNV-1a over the image quantised to bytes, so the hash does not depend on
 * how floats print. */
static uint64_t image_hash(const float *img, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        unsigned b = (unsigned)(img[i] * 255.0f + 0.5f);
        h = (h ^ b) * 0x100000001b3ull;
    }
    return h;
}

static uint64_t env_hash(const char *name, uint64_t seed, float **keep)
{
    env *e;
    REQUIRE((env_new(name, NULL, &e, NULL)) == (0), "(env_new(name, NULL, &e, NULL)) == (0)");
    env_reset(e, seed);
    size_t n = env_image_floats(e);
    float *img = malloc(n * sizeof *img);
    REQUIRE((img) != NULL, "(img) != NULL");
    env_render(e, img);
    for (size_t i = 0; i < n; i++)
        REQUIRE(img[i] >= 0.0f && img[i] <= 1.0f, "img[i] >= 0.0f && img[i] <= 1.0f");
    uint64_t h = image_hash(img, n);
    if (keep)
        *keep = img;
    else
        free(img);
    env_free(e);
    return h;
}

Test(render, font_covers_prompt_and_card_characters)
{
    const char *chars = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcxyz+-*/()=:.,?!<>[]'\"_#% ";
    for (const char *c = chars; *c; c++)
        CHECK((font_glyph((unsigned char)*c)) != NULL, "glyph for '%c'", *c);
    CHECK((font_glyph('@')) == NULL, "(font_glyph('@')) == NULL");
    CHECK((font_text_width("10")) == (11), "(font_text_width(\"10\")) == (11)");
    CHECK((font_text_width("")) == (0), "(font_text_width(\"\")) == (0)");
    for (int s = 0; s < 4; s++)
        for (int t = s + 1; t < 4; t++)
            CHECK((memcmp(font_suit_rows(s), font_suit_rows(t), FONT_SUIT_H)) != (0), "(memcmp(font_suit_rows(s), font_suit_rows(t), FONT_SUIT_H)) != (0)");
}

Test(render, same_seed_same_picture_golden)
{
    static const struct {
        const char *env;
        uint64_t seed, hash;
    } golden[] = {
        /* Update only on purpose: a change means every picture changed. */
        {"numberline", 1, 0xa6f4d6dc37ca4703ull}, {"numberline", 2, 0xa4f01c9a24938ab0ull},
        {"ezpoints", 1, 0x0573132a723d7861ull},   {"ezpoints", 2, 0x9ae170305425d305ull},
        {"points24", 1, 0x8b185ea2261de5a5ull},   {"points24", 2, 0xcf10cbb2fcaec5e4ull},
        {"blackjack", 1, 0xf9e5be1565bdbd2eull},  {"blackjack", 2, 0x5ef73a4e60cae28bull},
    };
    for (size_t i = 0; i < sizeof golden / sizeof golden[0]; i++) {
        uint64_t h1 = env_hash(golden[i].env, golden[i].seed, NULL);
        uint64_t h2 = env_hash(golden[i].env, golden[i].seed, NULL);
        CHECK((h1) == (h2), "%s seed %llu renders the same twice", golden[i].env, (unsigned long long)golden[i].seed);
        CHECK((h1) == (golden[i].hash), "%s seed %llu: hash 0x%016llxull", golden[i].env, (unsigned long long)golden[i].seed, (unsigned long long)h1);
    }
}

/* Every one of the 52 cards draws a different picture, and the rank alone
 * (suit fixed) changes it too. */
Test(render, distinct_cards_render_differently)
{
    uint64_t seen[52];
    for (int rank = 1; rank <= 13; rank++)
        for (int suit = 0; suit < 4; suit++) {
            render_canvas c;
            REQUIRE((render_canvas_init(&c, 16, 24, RENDER_FELT, NULL)) == (0), "(render_canvas_init(&c, 16, 24, RENDER_FELT, NULL)) == (0)");
            render_card(&c, 1, 0, rank, (font_suit)suit);
            uint64_t h = 0xcbf29ce484222325ull;
            for (int i = 0; i < 16 * 24 * 3; i++)
                h = (h ^ c.rgb[i]) * 0x100000001b3ull;
            int k = (rank - 1) * 4 + suit;
            for (int j = 0; j < k; j++)
                CHECK((seen[j]) != (h), "card %d duplicates card %d", k, j);
            seen[k] = h;
            render_canvas_deinit(&c);
        }
}

Test(render, different_states_render_differently)
{
    env *e;
    REQUIRE((env_new("points24", NULL, &e, NULL)) == (0), "(env_new(\"points24\", NULL, &e, NULL)) == (0)");
    size_t n = env_image_floats(e);
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    env_deal(e, (int[]){11, 12, 13, 10}, 4, NULL); /* J Q K 10: same values */
    env_render(e, a);
    env_deal(e, (int[]){10, 12, 13, 11}, 4, NULL);
    env_render(e, b);
    CHECK((memcmp(a, b, n * sizeof *a)) != (0), "the picture shows ranks, not values");
    env_result r;
    env_step(e, env_action_find(e, "("), &r, NULL);
    env_render(e, a);
    CHECK((memcmp(a, b, n * sizeof *a)) != (0), "the formula is drawn");
    free(a);
    free(b);
    env_free(e);
}

Test(render, configured_resolution_and_grey)
{
    env_params p;
    env_params_default(&p);
    p.image_w = 128;
    p.image_h = 64;
    env *big, *small;
    REQUIRE((env_new("points24", &p, &big, NULL)) == (0), "(env_new(\"points24\", &p, &big, NULL)) == (0)");
    REQUIRE((env_new("points24", NULL, &small, NULL)) == (0), "(env_new(\"points24\", NULL, &small, NULL)) == (0)");
    env_reset(big, 3);
    env_reset(small, 3);
    int c, h, w;
    env_image_shape(big, &c, &h, &w);
    CHECK(c == 3 && h == 64 && w == 128, "c == 3 && h == 64 && w == 128");
    float *x = malloc(env_image_floats(big) * sizeof *x);
    float *y = malloc(env_image_floats(small) * sizeof *y);
    env_render(big, x);
    env_render(small, y);
    /* A 2x upscale repeats each pixel. */
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 64; i++)
            for (int j = 0; j < 128; j++)
                REQUIRE((x[(k * 64 + i) * 128 + j]) == (y[(k * 32 + i / 2) * 64 + j / 2]), "(x[(k * 64 + i) * 128 + j]) == (y[(k * 32 + i / 2) * 64 + j / 2])");
    free(x);
    free(y);
    env_free(big);
    env_free(small);

    env_params_default(&p);
    p.image_c = 1;
    env *g;
    REQUIRE((env_new("numberline", &p, &g, NULL)) == (0), "(env_new(\"numberline\", &p, &g, NULL)) == (0)");
    env_image_shape(g, &c, &h, &w);
    CHECK(c == 1 && h == 16 && w == 64, "c == 1 && h == 16 && w == 64");
    float *z = malloc(env_image_floats(g) * sizeof *z);
    env_render(g, z);
    int dark = 0;
    for (size_t i = 0; i < env_image_floats(g); i++)
        dark += z[i] < 0.5f;
    CHECK(dark > 50 && dark < 16 * 64 / 2, "black text on white (%d dark pixels)", dark);
    free(z);
    env_free(g);
}

/* Read a PNG back with libpng: width, height and RGB rows. */
static uint8_t *read_png(const char *path, int *w, int *h)
{
    FILE *f = fopen(path, "rb");
    REQUIRE((f) != NULL, "(f) != NULL");
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    REQUIRE(png && info, "png && info");
    if (setjmp(png_jmpbuf(png)))
        cr_assert_fail("libpng could not read %s", path);
    png_init_io(png, f);
    png_read_info(png, info);
    *w = (int)png_get_image_width(png, info);
    *h = (int)png_get_image_height(png, info);
    REQUIRE((png_get_color_type(png, info)) == (PNG_COLOR_TYPE_RGB), "(png_get_color_type(png, info)) == (PNG_COLOR_TYPE_RGB)");
    REQUIRE((png_get_bit_depth(png, info)) == (8), "(png_get_bit_depth(png, info)) == (8)");
    uint8_t *px = malloc((size_t)*w * *h * 3);
    for (int y = 0; y < *h; y++)
        png_read_row(png, px + (size_t)y * *w * 3, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    fclose(f);
    return px;
}

Test(render, png_written_scaled_and_read_back)
{
    env *e;
    REQUIRE((env_new("blackjack", NULL, &e, NULL)) == (0), "(env_new(\"blackjack\", NULL, &e, NULL)) == (0)");
    env_reset(e, 5);
    char path[] = "/tmp/gtrt_test_render_XXXXXX";
    int fd = mkstemp(path);
    REQUIRE((fd) >= (0), "(fd) >= (0)");
    close(fd);
    err er = {0};
    REQUIRE((env_write_png(e, path, 4, &er)) == (0), "%s", er.msg);
    int w, h;
    uint8_t *px = read_png(path, &w, &h);
    CHECK((w) == (64 * 4), "(w) == (64 * 4)");
    CHECK((h) == (48 * 4), "(h) == (48 * 4)");
    size_t n = env_image_floats(e);
    float *img = malloc(n * sizeof *img);
    env_render(e, img);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < 3; k++) {
                unsigned want = (unsigned)(img[(k * 48 + y / 4) * 64 + x / 4] * 255.0f + 0.5f);
                REQUIRE((px[((size_t)y * w + x) * 3 + k]) == (want), "pixel %d,%d", x, y);
            }
    free(px);
    free(img);
    unlink(path);

    CHECK((env_write_png(e, "/nonexistent-dir/x.png", 4, &er)) == (GTRT_EIO), "(env_write_png(e, \"/nonexistent-dir/x.png\", 4, &er)) == (GTRT_EIO)");
    CHECK(strstr(er.msg, "/nonexistent-dir/x.png") != NULL, "strstr(er.msg, \"/nonexistent-dir/x.png\") != NULL");
    CHECK((env_write_png(e, path, 0, &er)) == (GTRT_ERANGE), "(env_write_png(e, path, 0, &er)) == (GTRT_ERANGE)");
    env_free(e);
}
