/* The teacher service: follows the learner's checkpoints, keeps the merged
 * teacher up to date (teacher/follow.h) and answers queries from anyone on
 * its ROUTER (teacher/serve.h): token log-probabilities and thought
 * generation with the merged model, plus status.
 *
 * Protocol (DEALER -> teacher ROUTER; frames [Header][body][payload...] as
 * in common/wire.h, no empty delimiter frame; see proto/gtrt.proto):
 *   MSG_LOGITS_REQUEST (LogitsRequest, one image frame per sequence) ->
 *     MSG_LOGITS_REPLY (LogitsReply, one values frame per sequence);
 *   MSG_GENERATE_REQUEST (GenerateRequest, one image frame per sequence) ->
 *     MSG_GENERATE_REPLY (GenerateReply, no payload);
 *   MSG_STATUS_REQUEST -> MSG_STATUS_REPLY (counters and labels below);
 *   anything that cannot be served -> MSG_ERROR {code, message}.
 * Rules:
 *   - The reply echoes the request's header request_id; give every request
 *     a fresh nonzero id and match replies by it (replies to different
 *     requests may come in any order; batches mix clients).
 *   - Images are uint8 C x H x W, byte = round(255 * value), of exactly the
 *     model's shape (image_c/h/w in each TeacherSeq must say so).
 *   - Token ids must be inside the model's vocabulary; prompt (+ answer)
 *     must fit the model's context (generate: with room for one token).
 *   - Logits: answer non-empty; positions [score_begin, score_end) of the
 *     answer (score_end 0: all); temperature in [0, 100], 0 meaning 1;
 *     top-k mode needs top_k in 1..min(64, vocab); values are log-probs at
 *     that temperature, float32 or float16 (round to nearest even), little
 *     endian, position-major; top-k ids go in the body, likeliest first.
 *   - Generate: temperature default teacher.gen_temperature (0 greedy),
 *     top_k default teacher.gen_top_k, max_new default actor.max_new (cut
 *     to the room the longest prompt leaves), seed default 0: the same
 *     request gets the same answer. Answers stop at <end>; kind marks each
 *     token 1 thought, 2 action, 0 after <end> (tok_answer_parts).
 *   - At most teacher.max_seqs sequences and teacher.max_tokens tokens per
 *     request; replies that would not fit a client's frame or body limits
 *     are refused up front.
 *   - min_version: a teacher whose merged version is older (or that has no
 *     model yet) answers MSG_ERROR code 11 (GTRT_EVERSION): ask another.
 *     Every reply carries teacher_version, the newest policy version
 *     merged into the weights that computed it.
 *   - A full queue (teacher.max_queue) answers code 12 (busy); a malformed
 *     request code 1 or 9 with the reason. Bytes that are not a valid
 *     envelope at all are counted and dropped without an answer. */
#ifndef GTRT_TEACHER_H
#define GTRT_TEACHER_H

#include "common/ckpt_xfer.h"
#include "common/member.h"
#include "common/service.h"
#include "teacher/follow.h"
#include "teacher/serve.h"

typedef struct teacher {
    svc s;
    member m;
    net_sock *router;
    ckpt_fetcher fetch;      /* the latest checkpoint (PUB, Welcome, Heartbeat) */
    ckpt_fetcher fetch_base; /* version 0, the merge base */
    bool fetchers_up;
    follow fw;
    serve sv;
} teacher;

int teacher_init(teacher *t, const config *cfg, err *e);
void teacher_deinit(teacher *t);

/* `gtrt teacher`: run a teacher until SIGINT/SIGTERM. */
int teacher_main(int argc, char **argv);

#endif
