/* Liveness logic with an injected clock: no sleeps. */
#include <criterion/criterion.h>

#include "common/peers.h"

Test(peers, alive_until_silent_past_timeout)
{
    peer_table t;
    cr_assert_eq(peers_init(&t, 8, 3000), 0);
    bool joined;
    peer *p = peers_touch(&t, "actor-1", 1000, &joined);
    cr_assert_not_null(p);
    cr_expect(joined);
    peer *gone[4];
    cr_expect_eq(peers_sweep(&t, 4000, gone, 4), 0, "gone at exactly the timeout");
    cr_expect(p->alive);
    cr_expect_eq(peers_sweep(&t, 4001, gone, 4), 1);
    cr_expect_eq(gone[0], p);
    cr_expect_not(p->alive);
    cr_expect_eq(peers_sweep(&t, 9000, gone, 4), 0, "reported gone twice");
    peers_deinit(&t);
}

Test(peers, heartbeats_keep_a_peer_alive)
{
    peer_table t;
    peers_init(&t, 8, 3000);
    bool joined;
    for (uint64_t now = 0; now < 20000; now += 1000) {
        peers_touch(&t, "a", now, &joined);
        cr_expect_eq(joined, now == 0);
        peer *gone[1];
        cr_expect_eq(peers_sweep(&t, now + 500, gone, 1), 0);
    }
    peers_deinit(&t);
}

Test(peers, gone_peer_rejoins)
{
    peer_table t;
    peers_init(&t, 8, 100);
    bool joined;
    peers_touch(&t, "a", 0, &joined);
    peer *gone[1];
    cr_assert_eq(peers_sweep(&t, 500, gone, 1), 1);
    peer *p = peers_touch(&t, "a", 600, &joined);
    cr_expect(joined);
    cr_expect(p->alive);
    cr_expect_eq(p->first_seen_ms, 600);
    cr_expect_eq(t.n, 1);
    peers_deinit(&t);
}

Test(peers, full_table_reuses_gone_slots_and_refuses_when_all_alive)
{
    peer_table t;
    peers_init(&t, 2, 100);
    bool joined;
    cr_assert_not_null(peers_touch(&t, "a", 0, &joined));
    cr_assert_not_null(peers_touch(&t, "b", 50, &joined));
    cr_expect_null(peers_touch(&t, "c", 60, &joined), "table grew past capacity");
    peer *gone[2];
    cr_expect_eq(peers_sweep(&t, 120, gone, 2), 1); /* a is gone, b is not */
    peer *c = peers_touch(&t, "c", 130, &joined);
    cr_assert_not_null(c);
    cr_expect_null(peers_find(&t, "a"), "gone peer should have been evicted");
    cr_expect_not_null(peers_find(&t, "b"));
    cr_expect_eq(peers_count_alive(&t, 0), 2);
    peers_deinit(&t);
}

Test(peers, info_is_copied_and_truncated)
{
    peer_table t;
    peers_init(&t, 2, 100);
    bool joined;
    peer *p = peers_touch(&t, "a", 0, &joined);
    Gtrt__PeerInfo info = GTRT__PEER_INFO__INIT;
    char longhost[300];
    memset(longhost, 'h', sizeof longhost - 1);
    longhost[sizeof longhost - 1] = 0;
    info.host = longhost;
    info.software_version = "9.9";
    info.has_pid = 1;
    info.pid = 77;
    info.has_role = 1;
    info.role = GTRT__ROLE__ROLE_TEACHER;
    peers_update_info(p, &info);
    cr_expect_eq(strlen(p->host), sizeof p->host - 1);
    cr_expect_str_eq(p->version, "9.9");
    cr_expect_eq(p->pid, 77);
    cr_expect_eq(peers_count_alive(&t, GTRT__ROLE__ROLE_TEACHER), 1);
    peers_deinit(&t);
}
