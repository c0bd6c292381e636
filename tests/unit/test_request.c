/* Checking teacher requests (teacher/request.c) without a network: good
 * requests are copied faithfully with their defaults, and each kind of bad
 * request is refused with a message naming the problem. The service-level
 * behaviour (error replies, counters) is in tests/integration. */
#include <string.h>

#include "teacher/request.h"
#include "test_util.h"

static treq_limits limits(void)
{
    return (treq_limits){.vocab = 50, .max_seq = 40, .max_text = 36, .n_patches = 4,
                         .img_c = 1, .img_h = 4, .img_w = 8, .max_seqs = 3, .max_tokens = 60,
                         .default_max_new = 20, .gen_temperature = 0.2f, .gen_top_k = 5,
                         .max_frame_bytes = 1 << 20};
}

typedef struct fixture {
    uint32_t prompt[3][40], answer[3][40];
    uint8_t image[32];
    Gtrt__TeacherSeq seqs[3], *ptrs[3];
    wire_slice imgs[3];
    Gtrt__LogitsRequest lr;
    Gtrt__GenerateRequest gr;
} fixture;

static void setup(fixture *fx)
{
    memset(fx, 0, sizeof *fx);
    for (int s = 0; s < 3; s++) {
        for (int t = 0; t < 40; t++) {
            fx->prompt[s][t] = (uint32_t)(t * 7 + s) % 50;
            fx->answer[s][t] = (uint32_t)(t * 3 + s + 1) % 50;
        }
        Gtrt__TeacherSeq *q = &fx->seqs[s];
        gtrt__teacher_seq__init(q);
        q->n_prompt = (size_t)(3 + s);
        q->prompt = fx->prompt[s];
        q->n_answer = (size_t)(2 + s);
        q->answer = fx->answer[s];
        q->has_image_c = q->has_image_h = q->has_image_w = 1;
        q->image_c = 1, q->image_h = 4, q->image_w = 8;
        fx->ptrs[s] = q;
        fx->imgs[s] = (wire_slice){fx->image, sizeof fx->image};
    }
    for (int i = 0; i < 32; i++)
        fx->image[i] = (uint8_t)(i * 9);
    gtrt__logits_request__init(&fx->lr);
    fx->lr.n_seqs = 3;
    fx->lr.seqs = fx->ptrs;
    gtrt__generate_request__init(&fx->gr);
    fx->gr.n_seqs = 3;
    fx->gr.seqs = fx->ptrs;
}

static void refused_logits(fixture *fx, size_t nimg, const char *needle)
{
    treq_limits lim = limits();
    treq *q = (treq *)1;
    err e = {0};
    cr_expect_neq(treq_from_logits(&fx->lr, fx->imgs, nimg, &lim, &q, &e), 0, "accepted: %s",
                  needle);
    cr_expect_null(q);
    cr_expect(strstr(e.msg, needle), "'%s' does not name '%s'", e.msg, needle);
    setup(fx);
}

static void refused_generate(fixture *fx, const char *needle)
{
    treq_limits lim = limits();
    treq *q = (treq *)1;
    err e = {0};
    cr_expect_neq(treq_from_generate(&fx->gr, fx->imgs, fx->gr.n_seqs, &lim, &q, &e), 0,
                  "accepted: %s", needle);
    cr_expect_null(q);
    cr_expect(strstr(e.msg, needle), "'%s' does not name '%s'", e.msg, needle);
    setup(fx);
}

Test(request, logits_copied_with_defaults)
{
    fixture fx;
    setup(&fx);
    fx.seqs[2].has_score_begin = fx.seqs[2].has_score_end = 1;
    fx.seqs[2].score_begin = 1;
    fx.seqs[2].score_end = 3;
    treq_limits lim = limits();
    treq *q;
    err e = {0};
    cr_assert_eq(treq_from_logits(&fx.lr, fx.imgs, 3, &lim, &q, &e), 0, "%s", e.msg);
    cr_expect_eq(q->kind, TREQ_LOGITS);
    cr_expect_eq(q->mode, SCORE_SAMPLED);
    cr_expect_eq(q->temperature, 1.0f);
    cr_expect_not(q->f16);
    cr_expect_eq(q->n_tokens, 5 + 7 + 9);
    for (int s = 0; s < 3; s++) {
        const treq_seq *t = &q->seqs[s];
        cr_expect_eq(t->n_prompt, 3 + s);
        cr_expect_eq(t->n_tokens, 5 + 2 * s);
        for (int k = 0; k < t->n_prompt; k++)
            CHECK(t->tokens[k] == (int32_t)fx.prompt[s][k], "prompt %d %d", s, k);
        for (int k = 0; k < t->n_tokens - t->n_prompt; k++)
            CHECK(t->tokens[t->n_prompt + k] == (int32_t)fx.answer[s][k], "answer %d %d", s, k);
        cr_expect_arr_eq(t->image, fx.image, sizeof fx.image);
        cr_expect_neq((const void *)t->image, (const void *)fx.image, "image not copied");
    }
    cr_expect_eq(q->seqs[0].begin, 0);
    cr_expect_eq(q->seqs[0].end, 2, "score_end 0 means the whole answer");
    cr_expect_eq(q->seqs[2].begin, 1);
    cr_expect_eq(q->seqs[2].end, 3);
    treq_free(q);
}

Test(request, logits_refusals)
{
    fixture fx;
    setup(&fx);
    fx.lr.n_seqs = 0;
    refused_logits(&fx, 0, "no sequences");
    refused_logits(&fx, 2, "image frames");
    fx.seqs[1].prompt[1] = 50;
    refused_logits(&fx, 3, "outside the vocabulary");
    fx.seqs[0].n_answer = 0;
    refused_logits(&fx, 3, "no answer tokens");
    fx.seqs[0].n_prompt = 0;
    refused_logits(&fx, 3, "empty prompt");
    fx.seqs[2].n_prompt = 34; /* 34 + 4 answer > 36 text tokens */
    refused_logits(&fx, 3, "do not fit");
    fx.seqs[1].has_image_w = 0;
    refused_logits(&fx, 3, "the model takes");
    fx.imgs[2].len = 31;
    refused_logits(&fx, 3, "image frame has 31 bytes");
    fx.lr.has_mode = 1;
    fx.lr.mode = GTRT__LOGITS_MODE__LOGITS_TOPK;
    refused_logits(&fx, 3, "top_k 0");
    fx.lr.has_mode = fx.lr.has_top_k = 1;
    fx.lr.mode = GTRT__LOGITS_MODE__LOGITS_TOPK;
    fx.lr.top_k = 51; /* more than the vocabulary */
    refused_logits(&fx, 3, "outside 1..50");
    fx.lr.has_float_format = 1;
    fx.lr.float_format = (Gtrt__FloatFormat)5;
    refused_logits(&fx, 3, "float format");
    fx.lr.has_temperature = 1;
    fx.lr.temperature = 1.0f / 0.0f;
    refused_logits(&fx, 3, "temperature");
    fx.seqs[1].has_score_begin = 1;
    fx.seqs[1].score_begin = 3;
    refused_logits(&fx, 3, "score range");
    fx.seqs[1].has_score_end = 1;
    fx.seqs[1].score_end = 4; /* 3 answer tokens */
    refused_logits(&fx, 3, "score range");
    for (int s = 0; s < 3; s++) { /* 3 x 22 tokens > max_tokens 60 */
        fx.seqs[s].n_prompt = 20;
        fx.seqs[s].n_answer = 2;
    }
    refused_logits(&fx, 3, "teacher.max_tokens");
}

/* A reply must fit what a client accepts: the full distribution of each
 * sequence in one frame of at most max_frame_bytes. */
Test(request, full_reply_larger_than_a_frame_is_refused)
{
    fixture fx;
    setup(&fx);
    treq_limits lim = limits();
    lim.max_frame_bytes = 4 * 50 * 3; /* three positions of float32 */
    fx.lr.has_mode = 1;
    fx.lr.mode = GTRT__LOGITS_MODE__LOGITS_FULL;
    treq *q;
    err e = {0};
    cr_expect_eq(treq_from_logits(&fx.lr, fx.imgs, 3, &lim, &q, &e), GTRT_ERANGE,
                 "4 positions of float32 fit 600 bytes?");
    cr_expect(strstr(e.msg, "net.max_msg_bytes"), "%s", e.msg);
    fx.lr.has_float_format = 1;
    fx.lr.float_format = GTRT__FLOAT_FORMAT__FLOAT_F16; /* half the bytes: fits */
    cr_assert_eq(treq_from_logits(&fx.lr, fx.imgs, 3, &lim, &q, &e), 0, "%s", e.msg);
    cr_expect(q->f16);
    cr_expect_eq(q->mode, SCORE_FULL);
    treq_free(q);
}

Test(request, generate_defaults_and_room)
{
    fixture fx;
    setup(&fx);
    treq_limits lim = limits();
    lim.max_tokens = 1000;
    treq *q;
    err e = {0};
    cr_assert_eq(treq_from_generate(&fx.gr, fx.imgs, 3, &lim, &q, &e), 0, "%s", e.msg);
    cr_expect_eq(q->kind, TREQ_GENERATE);
    cr_expect_float_eq(q->gen_temperature, 0.2f, 1e-7);
    cr_expect_eq(q->gen_top_k, 5);
    cr_expect_eq(q->max_new, 20);
    cr_expect_eq(q->seed, 0);
    cr_expect_eq(q->seqs[2].n_tokens, 5, "the answer of a generate request is ignored");
    treq_free(q);
    /* A long prompt cuts max_new to its room: 40 - 4 patches - 30. */
    fx.seqs[1].n_prompt = 30;
    fx.gr.has_temperature = fx.gr.has_top_k = fx.gr.has_seed = 1;
    fx.gr.temperature = 0;
    fx.gr.top_k = 1000; /* more than the vocabulary: all */
    fx.gr.seed = 9;
    cr_assert_eq(treq_from_generate(&fx.gr, fx.imgs, 3, &lim, &q, &e), 0, "%s", e.msg);
    cr_expect_eq(q->max_new, 6);
    cr_expect_eq(q->gen_temperature, 0);
    cr_expect_eq(q->gen_top_k, 0);
    cr_expect_eq(q->seed, 9);
    treq_free(q);
}

Test(request, generate_refusals)
{
    fixture fx;
    setup(&fx);
    fx.seqs[0].n_prompt = 36; /* no room for one new token */
    refused_generate(&fx, "do not fit");
    fx.gr.has_max_new = 1;
    fx.gr.max_new = 0;
    refused_generate(&fx, "max_new 0");
    fx.gr.has_temperature = 1;
    fx.gr.temperature = -0.5f;
    refused_generate(&fx, "temperature");
    /* prompts 3 + 4 + 5 plus 3 x 20 new tokens: 72 > 60 */
    refused_generate(&fx, "teacher.max_tokens");
    fx.gr.n_seqs = 4;
    refused_generate(&fx, "teacher.max_seqs");
}
