/* DAgger aggregation: samples carry the answer to imitate with the step's
 * prompt and image; steps without one, or too long, are not kept; past the
 * cap the reservoir keeps every sample ever offered with the same chance
 * (seeded; checked on the frequencies over many runs). */
#include <criterion/criterion.h>
#include <string.h>

#include "learner/dagger.h"

static void make(traj_step *s, int tag, uint32_t n_teacher)
{
    cr_assert_eq(traj_step_alloc(s, 3, 2, n_teacher, 4), 0);
    for (int i = 0; i < 3; i++)
        s->prompt[i] = tag;
    for (uint32_t i = 0; i < n_teacher; i++) {
        s->teacher_answer[i] = 100 + tag;
        s->teacher_kind[i] = i + 1 == n_teacher ? TRAJ_KIND_ACTION : TRAJ_KIND_THOUGHT;
    }
    memset(s->image, tag, 4);
    s->episode = (uint64_t)tag;
}

Test(dagger, samples_imitate_the_teacher_answer)
{
    dagger d;
    cr_assert_eq(dagger_init(&d, 4, 1), 0);
    traj_step s, none, longer;
    make(&s, 7, 3);
    make(&none, 8, 0);
    make(&longer, 9, 10);
    cr_expect_eq(dagger_add(&d, &s, 16, 4), 1);
    cr_expect_eq(dagger_add(&d, &none, 16, 4), 0, "nothing to imitate");
    cr_expect_eq(dagger_add(&d, &longer, 12, 4), 0, "prompt + answer over the limit");
    cr_assert_eq(d.n, 1);
    const traj_step *k = &d.s[0];
    cr_expect_eq(k->n_prompt, 3);
    cr_expect_eq(k->n_answer, 3);
    cr_expect_eq(k->answer[0], 107);
    cr_expect_eq(k->kind[2], TRAJ_KIND_ACTION);
    cr_expect_eq(k->prompt[2], 7);
    cr_expect_eq(k->image[3], 7);
    cr_expect_eq(k->n_teacher, 0);
    traj_step_free(&s);
    traj_step_free(&none);
    traj_step_free(&longer);
    dagger_free(&d);
}

Test(dagger, the_reservoir_keeps_old_and_new_alike)
{
    enum { CAP = 4, OFFERED = 12, RUNS = 3000 };
    int kept[OFFERED] = {0};
    for (int run = 0; run < RUNS; run++) {
        dagger d;
        cr_assert_eq(dagger_init(&d, CAP, (uint64_t)run + 1), 0);
        for (int t = 0; t < OFFERED; t++) {
            traj_step s;
            make(&s, t, 2);
            cr_assert_geq(dagger_add(&d, &s, 16, 4), 0);
            traj_step_free(&s);
        }
        cr_assert_eq(d.n, CAP);
        cr_assert_eq(d.added, OFFERED);
        for (int i = 0; i < d.n; i++)
            kept[d.s[i].prompt[0]]++;
        dagger_free(&d);
    }
    /* each is kept with probability CAP / OFFERED = 1/3: 1000 of 3000,
     * standard deviation about 26; 5 sigma bounds */
    for (int t = 0; t < OFFERED; t++)
        cr_expect(kept[t] > 870 && kept[t] < 1130, "sample %d kept %d times of %d", t, kept[t],
                  RUNS);
}
