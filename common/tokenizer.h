/* Word-level tokenizer shared by every env: prompts and JSON answers to
 * token ids and back.
 *
 * Vocabulary (fixed, TOK_VOCAB_SIZE entries, ids never reused: extend it
 * only by appending, and bump TOK_VOCAB_VERSION):
 *   0 <pad>   padding, never generated
 *   1 <bos>   begin of answer: the last prompt token, where the answer
 *             starts and where the value head reads its hidden state
 *   2 <end>   end of answer: generation stops here
 *   3 <unk>   text the vocabulary has no piece for
 *   then the numbers 0..31, arithmetic and JSON punctuation, the JSON
 *   skeleton pieces of the answers (`{"cards": [`, `], "formula": "`,
 *   `", "thoughts": "`, `", "action": "`, `"}` ...; one token each, so the
 *   fixed part of an answer costs a handful of tokens), the bare keys, and
 *   the words of the prompts and the oracle's thoughts.
 *
 * Encoding skips white space and takes the longest vocabulary piece that
 * starts at the current character (so "10" is one token, "( 10" two);
 * characters no piece starts with become one <unk> per run. Decoding joins
 * the pieces with single spaces, so decode(encode(t)) is t with normalised
 * spacing; JSON does not mind the spaces, and answer values are trimmed by
 * the parser.
 *
 * A turn is [image patches][prompt ids ending in <bos>][answer ids ending
 * in <end>]. tok_answer_parts splits generated ids into the action (the
 * tokens inside the quotes of the last "action" field) and the thought
 * (every other generated token, <end> included): PPO weighs the two
 * differently and the teacher only ever guides the thought. */
#ifndef GTRT_TOKENIZER_H
#define GTRT_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

enum {
    TOK_PAD = 0,
    TOK_BOS = 1,
    TOK_END = 2,
    TOK_UNK = 3,
    TOK_VOCAB_SIZE = 128,
    TOK_VOCAB_VERSION = 1,
};

/* Token parts for tok_answer_parts. */
enum { TOK_PART_NONE = 0, TOK_PART_THOUGHT = 1, TOK_PART_ACTION = 2 };

/* The text of token `id` ("<pad>" for specials), NULL when out of range. */
const char *tok_text(int32_t id);
/* Id of the piece whose text is exactly `s`, or -1. */
int32_t tok_id(const char *s);
/* FNV-1a hash of the whole vocabulary, so a checkpoint can record which
 * vocabulary its embedding rows mean. */
uint64_t tok_vocab_hash(void);

/* Encode `text` into ids[0..n-1]; returns n, or GTRT_ERANGE (message in e)
 * when more than `cap` ids would be needed. No special tokens are added. */
int tok_encode(const char *text, int32_t *ids, int cap, err *e);
/* Prompt: encode(text) followed by <bos>. */
int tok_encode_prompt(const char *text, int32_t *ids, int cap, err *e);
/* Answer: encode(text) followed by <end>. */
int tok_encode_answer(const char *text, int32_t *ids, int cap, err *e);

/* Decode ids[0..n-1] until the first <end>; <pad> and <bos> are skipped,
 * <unk> and out-of-range ids are written as "<unk>". Always terminates
 * `buf` (cap > 0); returns the length the full text needs (like snprintf),
 * so a result >= cap means it was cut. */
int tok_decode(const int32_t *ids, int n, char *buf, size_t cap);

/* Mark each generated id: TOK_PART_ACTION for the tokens inside the quotes
 * of the last "action" field, TOK_PART_THOUGHT for the other tokens up to
 * and including the first <end>, TOK_PART_NONE after it and for <pad>.
 * Returns the number of action tokens (0 when the answer has no action
 * field: then everything generated is thought). */
int tok_answer_parts(const int32_t *ids, int n, uint8_t *parts);

#endif
