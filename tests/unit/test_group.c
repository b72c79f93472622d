/* Keyed groups: creation on first use, one key's trip leaving the others alone, eviction
   of idle keys only, stale tickets of evicted keys, the overflow breaker, max_open_share,
   dominant_share, prune, history with keys, exports, sizes, configs and shared files. */
#define CB_IMPLEMENTATION
#include "cb.h"
#include "tests/t.h"
#include "tests/shm/t_dir.h"

#include <fcntl.h>

#define S CB_SUCCESS
#define F CB_FAILURE

static t_clock gclock;
static t_events gevents;
static cb_group *grp;
static char gkeys[T_MAX_EVENTS][64];   /* an event's key lives only as long as the call */

static void g_events_on(const cb_event *ev, void *user)
{
    t_events *r = (t_events *)user;
    if (r->n < T_MAX_EVENTS && ev->key && ev->key_len <= sizeof gkeys[0]) {
        memcpy(gkeys[r->n], ev->key, ev->key_len);
        t_events_on(ev, user);
        r->ev[r->n - 1].key = gkeys[r->n - 1];
    } else
        t_events_on(ev, user);
}

/* A group on the fake clock with the event recorder; the previous test's is freed. */
static cb_group *g_new(cb_group_config gc)
{
    cb_group_free(grp);
    memset(&gevents, 0, sizeof gevents);
    gclock.ns = T_T0;
    gc.breaker.clock_ns = t_clock_read;
    gc.breaker.clock_user = &gclock;
    gc.breaker.on_event = g_events_on;
    gc.breaker.user = &gevents;
    cb_err e = CB_EINVAL;
    grp = cb_group_new(&gc, &e);
    if (!grp) {
        char msg[200] = "";
        cb_group_config_check(&gc, msg, sizeof msg);
        fprintf(stderr, "g_new: %s: %s\n", cb_strerror(e), msg);
        exit(2);
    }
    return grp;
}

static void g_at_ms(uint64_t ms) { gclock.ns = T_T0 + ms * T_MS; }

static bool g_call(cb_group *g, const char *key, cb_outcome o)
{
    cb_ticket t;
    if (!cb_group_allow(g, key, strlen(key), &t))
        return false;
    return cb_group_record(g, &t, o);
}

static cb_group_stats g_stats(cb_group *g)
{
    cb_group_stats s;
    cb_group_stats_get(g, &s);
    return s;
}

static cb_stats k_stats(cb_group *g, const char *key)
{
    cb_stats s;
    memset(&s, 0, sizeof s);
    CHECK(cb_group_key_stats(g, key, strlen(key), &s));
    return s;
}

#define KSTATE(g, k) cb_group_get_state(g, k, strlen(k))

TEST(a_key_is_made_on_first_use_and_looking_does_not_make_one)
{
    cb_group *g = g_new((cb_group_config){.capacity = 8});
    cb_stats s;
    CHECK_EQ(KSTATE(g, "a"), CB_CLOSED);
    CHECK(!cb_group_key_stats(g, "a", 1, &s));
    CHECK_EQ(g_stats(g).keys, 0);
    CHECK(g_call(g, "a", S));
    CHECK(g_call(g, "a", S));
    CHECK(g_call(g, "b", F));
    cb_group_stats gs = g_stats(g);
    CHECK_EQ(gs.keys, 2);
    CHECK_EQ(gs.created, 2);
    s = k_stats(g, "a");
    CHECK_EQ(s.admitted, 2);
    CHECK_EQ(s.successes, 2);
    s = k_stats(g, "b");
    CHECK_EQ(s.failures, 1);
    CHECK_EQ(s.consecutive_failures, 1);
}

TEST(keys_are_bytes_a_nul_byte_included)
{
    cb_group *g = g_new((cb_group_config){.capacity = 8, .key_max = 16});
    cb_ticket t;
    CHECK(cb_group_allow(g, "a\0b", 3, &t) && cb_group_record(g, &t, F));
    CHECK(cb_group_allow(g, "a\0c", 3, &t) && cb_group_record(g, &t, S));
    CHECK(cb_group_allow(g, "a", 1, &t) && cb_group_record(g, &t, S));
    CHECK_EQ(g_stats(g).keys, 3);
    cb_stats s;
    CHECK(cb_group_key_stats(g, "a\0b", 3, &s) && s.failures == 1);
    CHECK(cb_group_key_stats(g, "a\0c", 3, &s) && s.successes == 1 && s.failures == 0);
    /* 16 bytes exactly, and one over: the longest is a key, the longer goes to overflow */
    CHECK(g_call(g, "0123456789abcdef", S));
    CHECK_EQ(g_stats(g).keys, 4);
    CHECK(g_call(g, "0123456789abcdefX", S));
    CHECK(cb_group_allow(g, "", 0, &t) && cb_group_record(g, &t, S));
    CHECK(cb_group_allow(g, NULL, 3, &t) && cb_group_record(g, &t, S));
    CHECK_EQ(g_stats(g).keys, 4);
    CHECK_EQ(g_stats(g).overflow, 3);
    CHECK_EQ(t_stats(cb_group_overflow(g)).successes, 3);
}

TEST(one_key_trips_and_the_others_keep_serving)
{
    cb_group *g = g_new((cb_group_config){.capacity = 8, .breaker = {.name = "shards",
                                                                     .consecutive_failures = 3}});
    for (int i = 0; i < 3; i++) {
        CHECK(g_call(g, "shard-1", F));
        CHECK(g_call(g, "shard-2", S));
    }
    CHECK_EQ(KSTATE(g, "shard-1"), CB_OPEN);
    CHECK_EQ(KSTATE(g, "shard-2"), CB_CLOSED);
    CHECK(!g_call(g, "shard-1", S));
    CHECK(g_call(g, "shard-2", S));
    CHECK_EQ(g_stats(g).open_keys, 1);
    REQUIRE(gevents.n == 1);
    const cb_event *e = &gevents.ev[0];
    CHECK_EQ(e->to, CB_OPEN);
    CHECK_EQ(e->reason, CB_REASON_CONSECUTIVE_FAILURES);
    CHECK_STR(e->name, "shards");
    CHECK(e->key_len == 7 && memcmp(e->key, "shard-1", 7) == 0);
    cb_event h[4];
    char keys[4 * 64];
    REQUIRE(cb_group_history(g, h, 4, keys, sizeof keys) == 1);
    CHECK(h[0].key_len == 7 && memcmp(h[0].key, "shard-1", 7) == 0);
    CHECK_EQ(h[0].reason, CB_REASON_CONSECUTIVE_FAILURES);
    /* the period ends: the next call probes, and its success closes the key */
    g_at_ms(60000);
    CHECK(g_call(g, "shard-1", S));
    CHECK_EQ(KSTATE(g, "shard-1"), CB_CLOSED);
    CHECK_EQ(g_stats(g).open_keys, 0);
    cb_stats s = k_stats(g, "shard-1");
    CHECK_EQ(s.state_since_ns, gclock.ns);
}

TEST(idle_keys_make_room_and_their_tickets_turn_stale)
{
    cb_group *g = g_new((cb_group_config){.capacity = 2, .idle_ms = 1000});
    cb_ticket old;
    CHECK(g_call(g, "a", S));
    REQUIRE(cb_group_allow(g, "b", 1, &old));   /* in flight across b's eviction */
    uint64_t gen_b = k_stats(g, "b").generation;
    /* full, nothing idle yet: a third key overflows */
    CHECK(g_call(g, "c", S));
    CHECK_EQ(g_stats(g).overflow, 1);
    CHECK_EQ(g_stats(g).keys, 2);
    g_at_ms(500);
    CHECK(g_call(g, "a", S));   /* a stays busy */
    g_at_ms(1200);
    CHECK(g_call(g, "c", S));   /* b idle 1200 ms: evicted for c; a (700 ms) kept */
    cb_group_stats gs = g_stats(g);
    CHECK_EQ(gs.evicted, 1);
    CHECK_EQ(gs.keys, 2);
    CHECK_EQ(KSTATE(g, "a"), CB_CLOSED);
    cb_stats s;
    CHECK(!cb_group_key_stats(g, "b", 1, &s));
    /* c took b's slot in a later generation; b's ticket counts nowhere but stale */
    CHECK(k_stats(g, "c").generation > gen_b);
    CHECK(!cb_group_record(g, &old, F));
    CHECK(!cb_group_record(g, &old, F));   /* once */
    CHECK_EQ(g_stats(g).stale, 1);
    s = k_stats(g, "c");
    CHECK_EQ(s.admitted, 1);
    CHECK_EQ(s.successes + s.failures + s.stale, 1);
}

TEST(what_a_key_remembers_keeps_it_held)
{
    cb_group *g = g_new((cb_group_config){.capacity = 3, .idle_ms = 100,
                                          .breaker = {.consecutive_failures = 2, .open_ms = 5000}});
    CHECK(g_call(g, "run", F));                     /* a failure run */
    CHECK(g_call(g, "open", F) && g_call(g, "open", F));   /* OPEN, 5 s to run */
    CHECK_EQ(cb_group_set_state(g, "forced", 6, CB_FORCED_OPEN), CB_OK);
    g_at_ms(1000);
    CHECK(g_call(g, "new", S));
    CHECK_EQ(g_stats(g).evicted, 0);
    CHECK_EQ(g_stats(g).overflow, 1);
    CHECK_EQ(cb_group_prune(g), 0);
    g_at_ms(5000);   /* the period is over: the open key's next call would probe anyway */
    CHECK_EQ(cb_group_prune(g), 1);
    CHECK_EQ(KSTATE(g, "forced"), CB_FORCED_OPEN);
    CHECK_EQ(g_stats(g).open_keys, 1);
    CHECK(g_call(g, "new", S));
    CHECK_EQ(g_stats(g).keys, 3);
}

TEST(max_open_share_holds_trips_back_but_one_key_may_always_open)
{
    cb_group *g = g_new((cb_group_config){.capacity = 16, .max_open_share = 0.25,
                                          .breaker = {.consecutive_failures = 1}});
    char key[16];
    for (int i = 0; i < 8; i++) {   /* 8 keys held: at most 2 open */
        snprintf(key, sizeof key, "k%d", i);
        CHECK(g_call(g, key, S));
    }
    for (int i = 0; i < 8; i++) {
        snprintf(key, sizeof key, "k%d", i);
        g_call(g, key, F);
    }
    cb_group_stats gs = g_stats(g);
    CHECK_EQ(gs.open_keys, 2);
    CHECK_EQ(gs.trips_held, 6);
    CHECK_EQ(KSTATE(g, "k2"), CB_CLOSED);
    /* a single key: max(1, floor(0.25 * 1)) = 1 */
    g = g_new((cb_group_config){.capacity = 4, .max_open_share = 0.25,
                                .breaker = {.consecutive_failures = 1}});
    g_call(g, "only", F);
    CHECK_EQ(KSTATE(g, "only"), CB_OPEN);
}

TEST(a_dominant_key_opens_and_the_others_are_untouched)
{
    cb_group *g = g_new((cb_group_config){.capacity = 16, .dominant_share = 0.9,
                                          .dominant_min_calls = 100, .dominant_window_ms = 1000});
    for (int i = 0; i < 20; i++)
        CHECK(g_call(g, "quiet", S));
    for (int i = 0; i < 300; i++)
        g_call(g, "noisy", S);
    CHECK_EQ(KSTATE(g, "noisy"), CB_CLOSED);   /* not checked yet: a round is 100 ms */
    g_at_ms(100);
    g_call(g, "quiet", S);
    CHECK_EQ(KSTATE(g, "noisy"), CB_OPEN);
    CHECK_EQ(KSTATE(g, "quiet"), CB_CLOSED);
    REQUIRE(gevents.n == 1);
    CHECK_EQ(gevents.ev[0].reason, CB_REASON_DOMINANT_SHARE);
    CHECK(gevents.ev[0].key_len == 5 && memcmp(gevents.ev[0].key, "noisy", 5) == 0);
    /* back after its period, dominant again: a longer period each time (backoff) */
    g = g_new((cb_group_config){.capacity = 4, .dominant_share = 0.5, .dominant_min_calls = 10,
                                .dominant_window_ms = 1000,
                                .breaker = {.open_ms = 1000, .backoff = 2, .max_open_ms = 8000}});
    uint64_t t = 0, periods[3];
    for (int round = 0; round < 3; round++) {
        size_t before = gevents.n;
        for (int i = 0; i < 400 && gevents.into[CB_OPEN] == (size_t)round; i++) {
            t += 10;
            g_at_ms(t);
            g_call(g, "loop", S);
            g_call(g, "other", S);
            g_call(g, "loop", S);
            g_call(g, "loop", S);
        }
        REQUIRE(gevents.n > before);
        periods[round] = gevents.ev[gevents.n - 1].open_ms;
        t += periods[round];
    }
    CHECK_EQ(periods[0], 1000);
    CHECK_EQ(periods[1], 2000);
    CHECK_EQ(periods[2], 4000);
}

TEST(exact_accounting_per_key_and_generations_that_grow)
{
    cb_group *g = g_new((cb_group_config){.capacity = 4, .idle_ms = 1,
                                          .breaker = {.consecutive_failures = 3, .open_ms = 10}});
    uint64_t seed = 7, last_gen[8] = {0};
    char key[4];
    for (int i = 0; i < 20000; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        snprintf(key, sizeof key, "k%u", (unsigned)(seed >> 60) % 8);
        g_at_ms((uint64_t)i / 4);
        cb_ticket t;
        if (cb_group_allow(g, key, strlen(key), &t))
            cb_group_record(g, &t, (seed >> 40) % 3 == 0 ? F : S);
        cb_stats s;
        if (cb_group_key_stats(g, key, strlen(key), &s)) {
            unsigned k = (unsigned)(key[1] - '0');
            CHECK(s.generation >= last_gen[k] || s.admitted <= 1);
            CHECK_EQ(s.admitted, s.successes + s.failures + s.ignored + s.stale);
            last_gen[k] = s.generation;
        }
    }
    cb_group_stats gs = g_stats(g);
    CHECK(gs.evicted > 100);
    CHECK_EQ(gs.created - gs.evicted, gs.keys);
    /* churn leaves tombstones in the index; a quarter of it at most, so a lookup of a
       key not held still ends at an empty entry */
    uint64_t empty = 0;
    for (uint64_t i = 0; i <= g->index_mask; i++)
        empty += atomic_load(&g->index[i]) == 0;
    CHECK(atomic_load(&g->line->tombs) <= (g->index_mask + 1) / 4);
    CHECK(empty > 0);
}

TEST(exports_name_every_key_escaped)
{
    cb_group *g = g_new((cb_group_config){.capacity = 8, .breaker = {.name = "tenants"}});
    CHECK(g_call(g, "plain", S));
    cb_ticket t;
    CHECK(cb_group_allow(g, "q\"\\%\n\x01\xff", 7, &t) && cb_group_record(g, &t, F));
    char buf[65536];
    int n = cb_group_format_prometheus(g, buf, sizeof buf);
    REQUIRE(n > 0 && (size_t)n < sizeof buf);
    CHECK_CONTAINS(buf, "cb_successes_total{name=\"tenants\",key=\"plain\"} 1\n");
    CHECK_CONTAINS(buf, "cb_failures_total{name=\"tenants\",key=\"q\\\"\\\\%25%0A%01%FF\"} 1\n");
    CHECK_CONTAINS(buf, "cb_group_keys{name=\"tenants\"} 2\n");
    CHECK_CONTAINS(buf, "cb_state{name=\"tenants\",overflow=\"true\",state=\"closed\"} 1\n");
    n = cb_group_format_json(g, buf, sizeof buf);
    REQUIRE(n > 0 && (size_t)n < sizeof buf);
    CHECK_CONTAINS(buf, "\"key\":\"plain\"");
    CHECK_CONTAINS(buf, "\"keys\":2");
    char small[16];
    CHECK_EQ(cb_group_format_json(g, small, sizeof small), n);   /* snprintf semantics */
    CHECK_EQ(strlen(small), sizeof small - 1);
}

/* cb_group_worst's order, and the exposition's bounds on keys (max_keys, not_closed). */
TEST(the_worst_keys_first_and_bounded_exports)
{
    cb_group *g = g_new((cb_group_config){.capacity = 16,
        .breaker = {.name = "hosts", .window_calls = 10, .failure_rate = 0.9, .minimum_calls = 10,
                    .consecutive_failures = 3, .open_ms = 1000}});
    CHECK(g_call(g, "fine", S));
    g_at_ms(5);
    CHECK(g_call(g, "fine-recent", S));
    CHECK(g_call(g, "flaky", F) && g_call(g, "flaky", S));   /* 50% */
    CHECK(g_call(g, "worse", F) && g_call(g, "worse", F));   /* 100%, run of 2 */
    CHECK(g_call(g, "down", F) && g_call(g, "down", F) && g_call(g, "down", F));
    CHECK_EQ(cb_group_get_state(g, "down", 4), CB_OPEN);
    CHECK_EQ(cb_group_set_state(g, "manual", 6, CB_METRICS_ONLY), CB_OK);
    cb_group_key k[8];
    CHECK_EQ(cb_group_worst(g, k, 8), 6u);
    const char *order[] = { "down", "manual", "worse", "flaky", "fine-recent", "fine" };
    for (int i = 0; i < 6; i++)
        CHECK(k[i].key_len == strlen(order[i]) && memcmp(k[i].key, order[i], k[i].key_len) == 0);
    CHECK_EQ(k[0].stats.state, CB_OPEN);
    CHECK(k[0].retry_after_ms > 0 && k[0].retry_after_ms <= 1000);
    CHECK_EQ(k[5].idle_ms, 5u);
    CHECK_EQ(k[4].idle_ms, 0u);
    /* fewer places than keys: the worst, in order, and the count of all */
    CHECK_EQ(cb_group_worst(g, k, 2), 6u);
    CHECK(k[0].key_len == 4 && memcmp(k[0].key, "down", 4) == 0);
    CHECK(k[1].key_len == 6 && memcmp(k[1].key, "manual", 6) == 0);
    CHECK_EQ(cb_group_worst(g, NULL, 0), 6u);

    char buf[65536];
    cb_export_limits top2 = { .max_keys = 2 }, bad = { .not_closed = true };
    int n = cb_format_prometheus_ex(NULL, 0, &g, 1, &top2, buf, sizeof buf);
    REQUIRE(n > 0 && (size_t)n < sizeof buf);
    CHECK_CONTAINS(buf, "cb_failures_total{name=\"hosts\",key=\"down\"} 3\n");
    CHECK_CONTAINS(buf, "key=\"manual\"");
    CHECK(!strstr(buf, "key=\"worse\""));
    CHECK_CONTAINS(buf, "cb_group_keys{name=\"hosts\"} 6\n");
    CHECK_CONTAINS(buf, "overflow=\"true\"");
    n = cb_format_prometheus_ex(NULL, 0, &g, 1, &bad, buf, sizeof buf);
    REQUIRE(n > 0 && (size_t)n < sizeof buf);
    CHECK_CONTAINS(buf, "key=\"down\"");
    CHECK(!strstr(buf, "key=\"fine\"") && !strstr(buf, "key=\"flaky\""));
    /* breakers and two groups in one exposition: each HELP once */
    cb_group *h = cb_group_new(&(cb_group_config){.capacity = 4, .breaker = {.name = "shards"}}, NULL);
    REQUIRE(h);
    cb_ticket t;
    CHECK(cb_group_allow(h, "s1", 2, &t) && cb_group_record(h, &t, S));
    cb_breaker *b = cb_new(&(cb_config){.name = "db"}, NULL);
    REQUIRE(b);
    cb_group *both[] = { g, h };
    n = cb_format_prometheus_ex(&b, 1, both, 2, NULL, buf, sizeof buf);
    REQUIRE(n > 0 && (size_t)n < sizeof buf);
    CHECK_CONTAINS(buf, "cb_successes_total{name=\"db\"} 0\n");
    CHECK_CONTAINS(buf, "cb_successes_total{name=\"shards\",key=\"s1\"} 1\n");
    CHECK_CONTAINS(buf, "cb_group_keys{name=\"shards\"} 1\n");
    char *first = strstr(buf, "# HELP cb_group_keys "), *second = first ? strstr(first + 1, "# HELP cb_group_keys ") : NULL;
    CHECK(first && !second);
    first = strstr(buf, "# HELP cb_successes_total ");
    CHECK(first && !strstr(first + 1, "# HELP cb_successes_total "));
    char small[32];
    CHECK_EQ(cb_format_prometheus_ex(&b, 1, both, 2, NULL, small, sizeof small), n);
    cb_free(b);
    cb_group_free(h);
}

/* A trip held back by max_open_share leaves the key CLOSED and warned: the warning is
   told as for any breaker. */
TEST(a_key_whose_trip_is_held_back_is_warned)
{
    cb_group *g = g_new((cb_group_config){.capacity = 8, .max_open_share = 0.1,
        .breaker = {.name = "g", .window_calls = 4, .minimum_calls = 4, .failure_rate = 0.5,
                    .warn_failure_rate = 0.25, .open_ms = 60000}});
    for (int i = 0; i < 4; i++)
        CHECK(g_call(g, "a", F));                     /* a opens: the one key allowed */
    CHECK_EQ(cb_group_get_state(g, "a", 1), CB_OPEN);
    CHECK(g_call(g, "b", S) && g_call(g, "b", S));
    size_t before = gevents.n;
    CHECK(g_call(g, "b", F) && g_call(g, "b", F));   /* 50%: its trip is held back */
    CHECK_EQ(cb_group_get_state(g, "b", 1), CB_CLOSED);
    CHECK(g_stats(g).trips_held >= 1);
    cb_stats s;
    CHECK(cb_group_key_stats(g, "b", 1, &s));
    CHECK_EQ(s.degraded, 1);
    int told = 0;
    for (size_t i = before; i < gevents.n; i++)
        told += gevents.ev[i].reason == CB_REASON_DEGRADED && gevents.ev[i].key_len == 1 &&
                gevents.ev[i].key[0] == 'b' && gevents.ev[i].from == gevents.ev[i].to;
    CHECK_EQ(told, 1);
}

TEST(sizes_and_configs)
{
    cb_group_config c = {.capacity = 100000, .key_max = 64, .breaker = {.consecutive_failures = 5}};
    size_t sz = cb_group_size(&c);
    printf("figure: 100000 keys of 64 bytes, consecutive failures: %zu bytes (%.1f MiB, %zu per key)\n",
           sz, sz / 1048576.0, sz / 100000);
    CHECK(sz > 0 && sz <= 64u << 20);
    char msg[160];
    struct { cb_group_config c; const char *field; } bad[] = {
        { {.capacity = CB_GROUP_CAPACITY_MAX + 1}, "capacity" },
        { {.key_max = CB_GROUP_KEY_MAX + 1}, "key_max" },
        { {.max_open_share = 1.5}, "max_open_share" },
        { {.dominant_share = -0.1}, "dominant_share" },
        { {.dominant_window_ms = 5}, "dominant_window_ms" },
        { {.breaker = {.failure_rate = 2}}, "failure_rate" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ(cb_group_config_check(&bad[i].c, msg, sizeof msg), CB_EINVAL);
        CHECK_CONTAINS(msg, bad[i].field);
        CHECK_EQ(cb_group_size(&bad[i].c), 0);
    }
    CHECK_EQ(cb_group_config_check(&(cb_group_config){0}, msg, sizeof msg), CB_OK);
    /* cb_group_init in caller memory: no allocation, too short is refused */
    static char mem[1 << 20];
    cb_group_config small = {.capacity = 64};
    cb_group *g = NULL;
    CHECK_EQ(cb_group_init(mem, cb_group_size(&small) - 1, &small, &g), CB_EINVAL);
    CHECK_EQ(cb_group_init(mem + 1, cb_group_size(&small), &small, &g), CB_OK);
    REQUIRE(g);
    cb_ticket t;
    CHECK(cb_group_allow(g, "x", 1, &t) && cb_group_record(g, &t, S));
    cb_group_config got;
    cb_group_config_get(g, &got);
    CHECK_EQ(got.capacity, 64);
    CHECK_EQ(got.idle_ms, 600000);
    CHECK_STR(got.breaker.name, "group");
}

TEST(a_keys_bulkhead_places_come_back)
{
    cb_group *g = g_new((cb_group_config){.capacity = 4, .breaker = {.max_concurrent = 2}});
    cb_ticket t1, t2, t3;
    for (int i = 0; i < 4; i++)
        CHECK(g_call(g, "k", S));
    CHECK(cb_group_allow(g, "k", 1, &t1) && cb_group_allow(g, "k", 1, &t2));
    CHECK(!cb_group_allow(g, "k", 1, &t3));   /* full */
    CHECK_EQ(k_stats(g, "k").in_flight, 2);
    CHECK(cb_group_record(g, &t1, S));
    CHECK(cb_group_allow(g, "k", 1, &t3));
    CHECK(cb_group_record(g, &t2, S) && cb_group_record(g, &t3, S));
    CHECK_EQ(k_stats(g, "k").in_flight, 0);
}

TEST(tickets_of_other_groups_and_bugs_count_nothing)
{
    cb_group *g = g_new((cb_group_config){.capacity = 4});
    cb_group *other = cb_group_new(&(cb_group_config){.capacity = 4}, NULL);
    cb_ticket t, zero;
    memset(&zero, 0, sizeof zero);
    REQUIRE(cb_group_allow(other, "a", 1, &t));
    CHECK(g_call(g, "a", S));
    CHECK(!cb_group_record(g, &t, S));
    CHECK(!cb_group_record(g, &zero, S));
    CHECK(!cb_group_record(g, NULL, S));
    CHECK(cb_group_record(other, &t, S));
    CHECK(!cb_group_record(other, &t, S));   /* twice */
    CHECK_EQ(k_stats(g, "a").successes, 1);
    CHECK_EQ(g_stats(g).stale, 0);
    cb_group_free(other);
}

TEST(a_group_in_a_shared_file)
{
    char path[512];
    snprintf(path, sizeof path, "%s", t_path("group.cbg"));
    cb_group_config c = {.capacity = 32, .breaker = {.name = "shared", .consecutive_failures = 2}};
    cb_err e;
    char msg[256];
    cb_group *a = cb_group_shm_open(path, &c, &e), *b = cb_group_shm_open(path, &c, &e);
    REQUIRE(a && b);
    CHECK(g_call(a, "k", F) && g_call(b, "k", F));
    CHECK_EQ(cb_group_get_state(b, "k", 1), CB_OPEN);
    CHECK_EQ(cb_group_get_state(a, "k", 1), CB_OPEN);
    cb_group *at = cb_group_shm_open_ex(path, NULL, 0, &e, msg, sizeof msg);
    REQUIRE(at);
    CHECK_EQ(g_stats(at).keys, 1);
    cb_group_shm_close(at);
    cb_group_config other = c;
    other.capacity = 64;
    CHECK(!cb_group_shm_open_ex(path, &other, 0, &e, msg, sizeof msg));
    CHECK_EQ(e, CB_EMISMATCH);
    CHECK_CONTAINS(msg, "capacity");
    cb_group_shm_close(a);
    cb_group_shm_close(b);
    /* a damaged header byte: corrupt, never a crash */
    int fd = open(path, O_RDWR);
    REQUIRE(fd >= 0);
    char byte;
    REQUIRE(pread(fd, &byte, 1, 40) == 1);
    byte ^= 0x5a;
    REQUIRE(pwrite(fd, &byte, 1, 40) == 1);
    close(fd);
    CHECK(!cb_group_shm_open_ex(path, &c, 0, &e, msg, sizeof msg));
    CHECK_EQ(e, CB_ECORRUPT);
    /* a breaker's file is not a group's */
    char bpath[512];
    snprintf(bpath, sizeof bpath, "%s", t_path("breaker.cb"));
    cb_breaker *br = cb_shm_open(bpath, &(cb_config){0}, &e);
    REQUIRE(br);
    cb_shm_close(br);
    CHECK(!cb_group_shm_open_ex(bpath, &c, 0, &e, msg, sizeof msg));
    CHECK_EQ(e, CB_EMISMATCH);
}

