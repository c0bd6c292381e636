/* The shared word-level vocabulary and its encoder / decoder (see
 * tokenizer.h). The table is the vocabulary: ids are positions in it. */
#include "common/tokenizer.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static const char *const tok_vocab[] = {
    /* 0..3 special */
    "<pad>", "<bos>", "<end>", "<unk>",
    /* 4..35 numbers */
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15",
    "16", "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30",
    "31",
    /* 36..53 punctuation */
    "+", "-", "*", "/", "(", ")", "=", ",", ".", ":", "[", "]", "{", "}", "\"", "<", ">", "?",
    /* 54..63 answer skeleton pieces */
    "{\"cards\": [", "], \"formula\": \"", "\", \"thoughts\": \"", "], \"thoughts\": \"",
    "\", \"action\": \"", "\"}", "{\"current\": \"", "\", \"target\": \"", "{\"dealer\": [",
    "], \"player\": [",
    /* 64..71 bare keys */
    "\"cards\":", "\"formula\":", "\"thoughts\":", "\"action\":", "\"current\":", "\"target\":",
    "\"dealer\":", "\"player\":",
    /* 72..127 words */
    "make", "from", "the", "four", "two", "cards", "each", "used", "once", "formula",
    "actions", "move", "current", "number", "to", "target", "with", "or", "blackjack", "beat",
    "dealer", "without", "going", "over", "stand", "hit", "no", "solution", "this", "is",
    "below", "above", "steps", "step", "of", "hard", "soft", "against", "and", "equals",
    "player", "card", "total", "left", "win", "lose", "plan", "next", "then", "it", "a", "not",
    "yes", "add", "one", "all",
};

_Static_assert(sizeof tok_vocab / sizeof tok_vocab[0] == TOK_VOCAB_SIZE,
               "tok_vocab must have TOK_VOCAB_SIZE entries");

enum { TOK_FIRST_PIECE = 4 }; /* ids below are never produced by encoding */

const char *tok_text(int32_t id)
{
    return id >= 0 && id < TOK_VOCAB_SIZE ? tok_vocab[id] : NULL;
}

int32_t tok_id(const char *s)
{
    for (int32_t i = 0; i < TOK_VOCAB_SIZE; i++)
        if (strcmp(tok_vocab[i], s) == 0)
            return i;
    return -1;
}

uint64_t tok_vocab_hash(void)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < TOK_VOCAB_SIZE; i++)
        for (const unsigned char *s = (const unsigned char *)tok_vocab[i];; s++) {
            h = (h ^ *s) * 0x100000001b3ull; /* the terminating 0 separates entries */
            if (!*s)
                break;
        }
    return h;
}

static bool tok_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Longest piece starting at s: its id, and its length in *len (0: none). */
static int32_t tok_longest(const char *s, size_t *len)
{
    int32_t best = -1;
    *len = 0;
    for (int32_t i = TOK_FIRST_PIECE; i < TOK_VOCAB_SIZE; i++) {
        size_t l = strlen(tok_vocab[i]);
        if (l > *len && strncmp(s, tok_vocab[i], l) == 0) {
            best = i;
            *len = l;
        }
    }
    return best;
}

static int tok_push(int32_t *ids, int n, int cap, int32_t id, err *e)
{
    if (n >= cap)
        return err_set(e, GTRT_ERANGE, "text needs more than %d tokens", cap);
    ids[n] = id;
    return n + 1;
}

int tok_encode(const char *text, int32_t *ids, int cap, err *e)
{
    int n = 0;
    const char *s = text;
    while (*s) {
        if (tok_space(*s)) {
            s++;
            continue;
        }
        size_t len;
        int32_t id = tok_longest(s, &len);
        if (id < 0) {
            /* One <unk> for the whole run of characters nothing matches. */
            do
                s++;
            while (*s && !tok_space(*s) && tok_longest(s, &len) < 0);
            id = TOK_UNK;
        } else {
            s += len;
        }
        if ((n = tok_push(ids, n, cap, id, e)) < 0)
            return n;
    }
    return n;
}

int tok_encode_prompt(const char *text, int32_t *ids, int cap, err *e)
{
    int n = tok_encode(text, ids, cap, e);
    return n < 0 ? n : tok_push(ids, n, cap, TOK_BOS, e);
}

int tok_encode_answer(const char *text, int32_t *ids, int cap, err *e)
{
    int n = tok_encode(text, ids, cap, e);
    return n < 0 ? n : tok_push(ids, n, cap, TOK_END, e);
}

int tok_decode(const int32_t *ids, int n, char *buf, size_t cap)
{
    size_t used = 0;
    if (cap)
        buf[0] = '\0';
    for (int i = 0; i < n && ids[i] != TOK_END; i++) {
        if (ids[i] == TOK_PAD || ids[i] == TOK_BOS)
            continue;
        const char *t = tok_text(ids[i]);
        if (!t)
            t = tok_vocab[TOK_UNK];
        int k = snprintf(used < cap ? buf + used : NULL, used < cap ? cap - used : 0, "%s%s",
                         used ? " " : "", t);
        used += (size_t)k;
    }
    return (int)used;
}

/* Does the piece open the value of an "action" field? */
static bool tok_is_action_key(int32_t id)
{
    const char *t = tok_text(id);
    return t && strstr(t, "\"action\":") != NULL;
}

int tok_answer_parts(const int32_t *ids, int n, uint8_t *parts)
{
    int end = n;
    for (int i = 0; i < n; i++)
        if (ids[i] == TOK_END) {
            end = i;
            break;
        }
    int key = -1;
    for (int i = 0; i < end; i++) {
        parts[i] = ids[i] == TOK_PAD ? TOK_PART_NONE : TOK_PART_THOUGHT;
        if (tok_is_action_key(ids[i]))
            key = i;
    }
    for (int i = end; i < n; i++)
        parts[i] = (i == end) ? TOK_PART_THOUGHT : TOK_PART_NONE;
    if (key < 0)
        return 0;
    int j = key + 1;
    const char *kt = tok_text(ids[key]);
    /* A bare key ("action":) is followed by its own opening quote. */
    if (kt[strlen(kt) - 1] != '"' && j < end && ids[j] == tok_id("\""))
        j++;
    int count = 0;
    for (; j < end; j++) {
        const char *t = tok_text(ids[j]);
        if (ids[j] == TOK_PAD || ids[j] == TOK_BOS || !t || t[0] == '"')
            break;
        parts[j] = TOK_PART_ACTION;
        count++;
    }
    return count;
}
