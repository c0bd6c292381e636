/* Rate limiting of log lines (with an injected clock). */
#include <criterion/criterion.h>

#include "common/log.h"

Test(log, ratelimit_allows_a_burst_per_window)
{
    log_ratelimit rl;
    log_ratelimit_init(&rl, 3, 1000);
    uint64_t hidden;
    int allowed = 0;
    for (int i = 0; i < 10; i++)
        allowed += log_ratelimit_allow(&rl, 100, &hidden);
    cr_expect_eq(allowed, 3);
    cr_expect(log_ratelimit_allow(&rl, 1100, &hidden));
    cr_expect_eq(hidden, 7, "the new window should report the 7 suppressed events");
    cr_expect(log_ratelimit_allow(&rl, 1101, &hidden));
    cr_expect_eq(hidden, 0);
}

Test(log, level_names_parse)
{
    log_level l;
    cr_expect_eq(log_level_parse("WARN", &l), 0);
    cr_expect_eq(l, LOG_LVL_WARN);
    cr_expect_neq(log_level_parse("loud", &l), 0);
}
