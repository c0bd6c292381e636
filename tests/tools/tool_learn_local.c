/* In-process RL on one env without the network: SFT warm start, then PPO
 * from rollouts, printing success per update. For measuring whether and how
 * fast the RL code learns; the distributed run uses the same modules. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "actor/rollout.h"
#include "common/clock.h"
#include "common/tokenizer.h"
#include "learner/sft.h"
#include "learner/train.h"

typedef struct buf {
    traj_step *v;
    int n, cap;
} buf;

static void on_episode(void *ud, traj_step *steps, size_t n)
{
    buf *b = ud;
    if (getenv("DEBUG_VALUES") && b->n == 0) {
        for (size_t i = 0; i < n; i++) {
            char t[512];
            tok_decode(steps[i].answer, (int)steps[i].n_answer, t, sizeof t);
            fprintf(stderr, "  v=%.3f r=%.2f %s\n", steps[i].value, steps[i].reward, t);
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (b->n == b->cap) {
            b->cap = b->cap ? 2 * b->cap : 256;
            b->v = realloc(b->v, (size_t)b->cap * sizeof *b->v);
        }
        b->v[b->n++] = steps[i];
    }
    free(steps);
}

static void clear(buf *b)
{
    for (int i = 0; i < b->n; i++)
        traj_step_free(&b->v[i]);
    b->n = 0;
}

int main(int argc, char **argv)
{
    const char *envname = argc > 1 ? argv[1] : "numberline";
    int sft_steps = argc > 2 ? atoi(argv[2]) : 30;
    int updates = argc > 3 ? atoi(argv[3]) : 30;
    int num_steps = argc > 4 ? atoi(argv[4]) : 128;
    int d = argc > 5 ? atoi(argv[5]) : 64;
    err e = {0};
    env_params ep;
    env_params_default(&ep);
    env *probe;
    if (env_new(envname, &ep, &probe, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    model_config mc;
    model_config_preset("tiny", &mc, &e);
    mc.vocab_size = TOK_VOCAB_SIZE;
    mc.d_model = d;
    mc.n_head = 4;
    mc.value_h1 = d;
    mc.value_h2 = d / 2;
    env_image_shape(probe, &mc.image_c, &mc.image_h, &mc.image_w);
    env_free(probe);
    model *m;
    if (model_new(&mc, &m, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    rng r;
    rng_init(&r, 1);
    model_init_random(m, &r);
    optim_config oc;
    optim_config_default(&oc);
    oc.lr = 1e-3f;
    optim_range ranges[256];
    int nr = model_decay_ranges(m, ranges);
    optim *o;
    optim_new(&oc, m->n_params, ranges, nr, &o, &e);

    traj_step *data;
    int ndata = 2048;
    if (sft_make_data(envname, &ep, ndata, 7, &data, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    /* A deliberately weak warm start: the answers read the picture right
     * but name a random action, so RL has the acting to learn. */
    if (!strcmp(envname, "numberline") && getenv("RANDOM_ACTIONS")) {
        int32_t plus = tok_id("+"), minus = tok_id("-");
        for (int i = 0; i < ndata; i++)
            for (uint32_t t = 0; t < data[i].n_answer; t++)
                if (data[i].kind[t] == TRAJ_KIND_ACTION)
                    data[i].answer[t] = rng_below(&r, 2) ? plus : minus;
    }
    uint64_t t0 = clock_mono_ns();
    int idx[32];
    sft_stats ss = {0};
    for (int s = 0; s < sft_steps; s++) {
        for (int j = 0; j < 32; j++)
            idx[j] = (int)rng_below(&r, (uint64_t)ndata);
        if (sft_step(m, o, data, idx, 32, false, &ss, &e)) {
            fprintf(stderr, "%s\n", e.msg);
            return 1;
        }
        if (s % 10 == 0 || s == sft_steps - 1)
            printf("sft %d loss %.3f acc %.3f (%.1fs)\n", s, ss.loss, ss.accuracy, clock_since_s(t0));
    }
    rollout_config rc = {.n_envs = 16, .temperature = 0.2f, .top_k = 5, .max_new = 64, .seed = 3,
                         .format_reward = true};
    snprintf(rc.env, sizeof rc.env, "%s", envname);
    rollout *ro;
    if (rollout_new(&rc, &mc, &ep, "local", &ro, &e)) {
        fprintf(stderr, "%s\n", e.msg);
        return 1;
    }
    optim_config pc = oc;
    pc.lr = 3e-4f;
    optim *po;
    optim_new(&pc, m->n_params, ranges, nr, &po, &e);
    train_config tc = {.epochs = argc > 6 ? atoi(argv[6]) : 4, .minibatch = argc > 7 ? atoi(argv[7]) : 32,
                       .temperature = 0.2f};
    if (argc > 8)
        po->cfg.lr = (float)atof(argv[8]);
    ppo_hparams_default(&tc.ppo);
    if (getenv("THOUGHT_COEF"))
        tc.ppo.thought_coef = (float)atof(getenv("THOUGHT_COEF"));
    if (getenv("CLIP"))
        tc.ppo.clip = (float)atof(getenv("CLIP"));
    buf b = {0};
    for (int u = 0; u < updates; u++) {
        uint64_t tr = clock_mono_ns();
        while (b.n < num_steps)
            if (rollout_turn(ro, m, (uint64_t)u, on_episode, &b, &e)) {
                fprintf(stderr, "%s\n", e.msg);
                return 1;
            }
        double roll_s = clock_since_s(tr);
        train_stats st;
        if (train_update(m, po, b.v, b.n, &tc, &r, &st, &e)) {
            fprintf(stderr, "%s\n", e.msg);
            return 1;
        }
        printf("update %d: steps %d eps %d success %.2f return %.2f len %.1f valid %.2f ent %.3f kl %.4f clip %.2f vloss %.3f ev %.2f | rollout %.1fs train %.1fs\n",
               u, st.n_steps, st.n_episodes, st.success_rate, st.mean_return, st.mean_length,
               st.format_valid, st.thought_entropy, st.approx_kl, st.clip_frac, st.value_loss,
               st.explained_variance, roll_s, st.seconds);
        fflush(stdout);
        clear(&b);
    }
    return 0;
}
