/* The shared tokenizer: vocabulary, round trips of every env's prompts and
 * oracle answers, action/thought masks, and the answer parser against
 * malformed model output. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actor/envs/env.h"
#include "common/tokenizer.h"

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

Test(tokenizer, vocabulary_is_fixed_and_unique)
{
    CHECK((TOK_VOCAB_SIZE) == (128), "(TOK_VOCAB_SIZE) == (128)");
    CHECK(strcmp(tok_text(TOK_PAD), "<pad>") == 0, "strcmp(tok_text(TOK_PAD), \"<pad>\") == 0");
    CHECK(strcmp(tok_text(TOK_BOS), "<bos>") == 0, "strcmp(tok_text(TOK_BOS), \"<bos>\") == 0");
    CHECK(strcmp(tok_text(TOK_END), "<end>") == 0, "strcmp(tok_text(TOK_END), \"<end>\") == 0");
    CHECK(strcmp(tok_text(TOK_UNK), "<unk>") == 0, "strcmp(tok_text(TOK_UNK), \"<unk>\") == 0");
    CHECK((tok_text(-1)) == NULL, "(tok_text(-1)) == NULL");
    CHECK((tok_text(TOK_VOCAB_SIZE)) == NULL, "(tok_text(TOK_VOCAB_SIZE)) == NULL");
    for (int i = 0; i < TOK_VOCAB_SIZE; i++)
        for (int j = i + 1; j < TOK_VOCAB_SIZE; j++)
            CHECK(strcmp(tok_text(i), tok_text(j)) != 0, "ids %d and %d", i, j);
    CHECK((tok_id("10")) == (14), "(tok_id(\"10\")) == (14)");
    CHECK((tok_id("nonsense")) == (-1), "(tok_id(\"nonsense\")) == (-1)");
    /* A changed table must show up in the hash checkpoints record. */
    CHECK((tok_vocab_hash()) == (tok_vocab_hash()), "(tok_vocab_hash()) == (tok_vocab_hash())");
    CHECK((tok_vocab_hash()) != (0), "(tok_vocab_hash()) != (0)");
}

Test(tokenizer, longest_piece_wins_and_spaces_normalise)
{
    int32_t ids[64];
    int n = tok_encode("( 10-8)*3", ids, 64, NULL);
    const char *want[] = {"(", "10", "-", "8", ")", "*", "3"};
    REQUIRE((n) == (7), "(n) == (7)");
    for (int i = 0; i < n; i++)
        CHECK(strcmp(tok_text(ids[i]), want[i]) == 0, "strcmp(tok_text(ids[i]), want[i]) == 0");
    char text[256];
    tok_decode(ids, n, text, sizeof text);
    CHECK(strcmp(text, "( 10 - 8 ) * 3") == 0, "strcmp(text, \"( 10 - 8 ) * 3\") == 0");
    n = tok_encode("{\"cards\": [2, 3], \"formula\": \"\", \"thoughts\": \"no\", \"action\": \"=\"}",
                   ids, 64, NULL);
    CHECK((n) == (10), "the skeleton pieces are single tokens");
}

Test(tokenizer, unknown_text_becomes_one_unk_per_run)
{
    int32_t ids[16];
    int n = tok_encode("hello 24 wörld", ids, 16, NULL);
    REQUIRE((n) == (3), "(n) == (3)");
    CHECK((ids[0]) == (TOK_UNK), "(ids[0]) == (TOK_UNK)");
    CHECK(strcmp(tok_text(ids[1]), "24") == 0, "strcmp(tok_text(ids[1]), \"24\") == 0");
    CHECK((ids[2]) == (TOK_UNK), "(ids[2]) == (TOK_UNK)");
    char text[64];
    tok_decode(ids, n, text, sizeof text);
    CHECK(strcmp(text, "<unk> 24 <unk>") == 0, "strcmp(text, \"<unk> 24 <unk>\") == 0");
}

Test(tokenizer, capacity_is_checked)
{
    int32_t ids[4];
    err e = {0};
    CHECK((tok_encode("1 2 3 4 5", ids, 4, &e)) == (GTRT_ERANGE), "(tok_encode(\"1 2 3 4 5\", ids, 4, &e)) == (GTRT_ERANGE)");
    CHECK(strstr(e.msg, "4") != NULL, "strstr(e.msg, \"4\") != NULL");
    CHECK((tok_encode_prompt("1 2 3 4", ids, 4, NULL)) == (GTRT_ERANGE), "no room for <bos>");
    CHECK((tok_encode_answer("1 2 3", ids, 4, NULL)) == (4), "(tok_encode_answer(\"1 2 3\", ids, 4, NULL)) == (4)");
    CHECK((ids[3]) == (TOK_END), "(ids[3]) == (TOK_END)");
    char small[6];
    int need = tok_decode(ids, 4, small, sizeof small);
    CHECK((need) == (5), "\"1 2 3\" needs 5 characters");
    CHECK(strcmp(small, "1 2 3") == 0, "strcmp(small, \"1 2 3\") == 0");
}

/* Every prompt and oracle answer of every env: only known tokens, a turn
 * of modest size, and the decoded answer parses to the same action. */
Test(tokenizer, env_prompts_and_answers_round_trip)
{
    for (int k = 0; k < env_registry_count(); k++) {
        env *e;
        REQUIRE((env_new(env_registry_name(k), NULL, &e, NULL)) == (0), "(env_new(env_registry_name(k), NULL, &e, NULL)) == (0)");
        for (uint64_t seed = 0; seed < 30; seed++) {
            env_reset(e, seed);
            while (!env_done(e)) {
                char prompt[ENV_TEXT_MAX], answer[ENV_TEXT_MAX], text[ENV_TEXT_MAX];
                env_prompt(e, prompt, sizeof prompt);
                env_answer a;
                REQUIRE((env_oracle(e, &a, NULL)) == (0), "(env_oracle(e, &a, NULL)) == (0)");
                env_answer_format(e, &a, answer, sizeof answer);
                int32_t p[256], ids[256], again[256];
                int np = tok_encode_prompt(prompt, p, 256, NULL);
                int na = tok_encode_answer(answer, ids, 256, NULL);
                REQUIRE(np > 0 && na > 0, "np > 0 && na > 0");
                CHECK((p[np - 1]) == (TOK_BOS), "(p[np - 1]) == (TOK_BOS)");
                CHECK((ids[na - 1]) == (TOK_END), "(ids[na - 1]) == (TOK_END)");
                for (int i = 0; i < np; i++)
                    CHECK((p[i]) != (TOK_UNK), "%s: unknown token in '%s'", env_name(e), prompt);
                for (int i = 0; i < na; i++)
                    CHECK((ids[i]) != (TOK_UNK), "%s: unknown token in '%s'", env_name(e), answer);
                CHECK((np + na) <= (70), "%s: %d text tokens", env_name(e), np + na);
                tok_decode(ids, na, text, sizeof text);
                int n2 = tok_encode_answer(text, again, 256, NULL);
                CHECK((n2) == (na), "(n2) == (na)");
                CHECK((memcmp(again, ids, sizeof(int32_t) * (size_t)na)) == (0), "encode(decode(ids)) == ids");
                env_parsed parsed;
                env_parse_answer(e, text, &parsed);
                CHECK(parsed.valid, "%s: %s (%s)", env_name(e), parsed.why, text);
                CHECK((parsed.action) == (a.action), "(parsed.action) == (a.action)");
                env_result r;
                REQUIRE((env_step(e, a.action, &r, NULL)) == (0), "(env_step(e, a.action, &r, NULL)) == (0)");
            }
        }
        env_free(e);
    }
}

/* ==== action / thought masks ==== */

static int parts_of(const char *answer, int32_t *ids, uint8_t *parts, int *n)
{
    *n = tok_encode_answer(answer, ids, 256, NULL);
    REQUIRE((*n) > (0), "(*n) > (0)");
    return tok_answer_parts(ids, *n, parts);
}

Test(tokenizer, action_tokens_are_the_action_value_only)
{
    int32_t ids[256];
    uint8_t parts[256];
    int n;
    int na = parts_of("{\"cards\": [10, 2], \"formula\": \"10 +\", \"thoughts\": \"10 + 2 = 12\", "
                      "\"action\": \"10\"}",
                      ids, parts, &n);
    CHECK((na) == (1), "(na) == (1)");
    for (int i = 0; i < n; i++) {
        bool is_action = i == n - 3; /* ... "action": " 10 "} <end> */
        CHECK((parts[i]) == (is_action ? TOK_PART_ACTION : TOK_PART_THOUGHT), "token %d (%s)", i, tok_text(ids[i]));
    }
    CHECK(strcmp(tok_text(ids[n - 3]), "10") == 0, "the 10 in the thought is not the action");
    CHECK((ids[n - 1]) == (TOK_END), "(ids[n - 1]) == (TOK_END)");
}

Test(tokenizer, masks_for_bare_keys_padding_and_missing_action)
{
    int32_t ids[256];
    uint8_t parts[256];
    int n;
    /* Spaced-out keys as a model might write them. */
    int na = parts_of("{ \"thoughts\": \" hit \" , \"action\": \" stand \" }", ids, parts, &n);
    CHECK((na) == (1), "(na) == (1)");
    int where = -1;
    for (int i = 0; i < n; i++)
        if (parts[i] == TOK_PART_ACTION)
            where = i;
    REQUIRE((where) >= (0), "(where) >= (0)");
    CHECK(strcmp(tok_text(ids[where]), "stand") == 0, "strcmp(tok_text(ids[where]), \"stand\") == 0");

    /* Padding after <end>, and <pad> inside, are neither. */
    int32_t padded[8] = {tok_id("1"), TOK_PAD, tok_id("+"), TOK_END, TOK_PAD, TOK_PAD};
    uint8_t pp[8];
    CHECK((tok_answer_parts(padded, 6, pp)) == (0), "no action field: all thought");
    uint8_t want[6] = {TOK_PART_THOUGHT, TOK_PART_NONE, TOK_PART_THOUGHT, TOK_PART_THOUGHT,
                       TOK_PART_NONE, TOK_PART_NONE};
    CHECK((memcmp(pp, want, 6)) == (0), "(memcmp(pp, want, 6)) == (0)");

    /* Two action fields: the last one counts (as the parser rejects the
     * answer anyway, this only has to be deterministic). */
    na = parts_of("{\"action\": \"hit\", \"action\": \"stand\"}", ids, parts, &n);
    CHECK((na) == (1), "(na) == (1)");
    for (int i = 0; i < n; i++)
        if (parts[i] == TOK_PART_ACTION)
            CHECK(strcmp(tok_text(ids[i]), "stand") == 0, "strcmp(tok_text(ids[i]), \"stand\") == 0");
}

/* ==== the answer parser ==== */

static env_parsed parse(const char *envname, const char *text)
{
    env *e;
    REQUIRE((env_new(envname, NULL, &e, NULL)) == (0), "(env_new(envname, NULL, &e, NULL)) == (0)");
    env_parsed p;
    env_parse_answer(e, text, &p);
    env_free(e);
    return p;
}

Test(tokenizer, parser_rejects_malformed_answers)
{
    const char *good = "{\"cards\": [1, 2, 3, 4], \"formula\": \"\", \"thoughts\": \"t\", "
                       "\"action\": \"+\"}";
    CHECK(parse("points24", good).valid, "parse(\"points24\", good).valid");
    struct {
        const char *text, *why;
    } bad[] = {
        {"{\"cards\": [1, 2, 3, 4], \"formula\": \"\", \"thoughts\": \"t\", \"action\": \"+\"",
         "not valid JSON"},
        {"", "not valid JSON"},
        {"[1, 2]", "not a JSON object"},
        {"{\"cards\": [1, 2, 3, 4], \"formula\": \"\", \"thought\": \"t\", \"action\": \"+\"}",
         "unexpected key \"thought\""},
        {"{\"cards\": [1, 2, 3, 4], \"formula\": \"\", \"action\": \"+\"}",
         "key \"thoughts\" is missing"},
        {"{\"cards\": [1, 2, 3, 4], \"formula\": \"\", \"thoughts\": \"t\", \"action\": \"+\", "
         "\"action\": \"-\"}",
         "key \"action\" appears twice"},
        {"{\"cards\": [1, 2, 3, 4], \"formula\": \"\", \"thoughts\": \"t\", \"action\": \"+ -\"}",
         "unknown action \"+ -\""},
        {"{\"cards\": [1, 2, 3, 4], \"formula\": \"\", \"thoughts\": \"t\", \"action\": 3}",
         "\"action\" is not a string"},
        {"{\"cards\": \"1 2 3 4\", \"formula\": \"\", \"thoughts\": \"t\", \"action\": \"3\"}",
         "\"cards\" is not a list"},
        {"{\"cards\": [1, 2, 3, 4], \"formula\": \"\", \"thoughts\": \"t\", \"action\": \"<unk>\"}",
         "unknown action \"<unk>\""},
        {"{\"cards\": [1, 2, 3, 4], \"formula\": \"\", \"thoughts\": \"t\", \"action\": \"+\"} x",
         "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        env_parsed p = parse("points24", bad[i].text);
        CHECK(!(p.valid), "%s", bad[i].text);
        CHECK((p.action) == (-1), "(p.action) == (-1)");
        CHECK(strcmp(p.why, bad[i].why) == 0, "%s", bad[i].text);
    }
    /* Keys of another env are wrong here. */
    CHECK(!(parse("numberline", good).valid), "!(parse(\"numberline\", good).valid)");
    /* Unknown words inside the thought are fine; spaces around the action too. */
    env_parsed p = parse("blackjack", "{\"dealer\": [10], \"player\": [ 2 , 3 ], \"thoughts\": "
                                      "\"<unk> 5\", \"action\": \" hit \"}");
    CHECK(p.valid, "%s", p.why);
    CHECK((p.action) == (1), "(p.action) == (1)");
}

Test(tokenizer, parser_refuses_very_long_output)
{
    size_t n = ENV_ANSWER_MAX + 100;
    char *text = malloc(n + 200);
    REQUIRE((text) != NULL, "(text) != NULL");
    int k = snprintf(text, 200, "{\"current\": \"1\", \"target\": \"2\", \"thoughts\": \"");
    memset(text + k, 'a', n);
    strcpy(text + k + n, "\", \"action\": \"+\"}");
    env_parsed p = parse("numberline", text);
    CHECK(!(p.valid), "!(p.valid)");
    CHECK(strstr(p.why, "longer") != NULL, "%s", p.why);
    free(text);

    /* A long run of generated tokens decodes into a bounded buffer. */
    int32_t ids[2000];
    for (int i = 0; i < 2000; i++)
        ids[i] = tok_id("hit");
    char small[100];
    int need = tok_decode(ids, 2000, small, sizeof small);
    CHECK((need) == (2000 * 4 - 1), "(need) == (2000 * 4 - 1)");
    CHECK((strlen(small)) == (99), "(strlen(small)) == (99)");
}
