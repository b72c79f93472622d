/* Windows and the rules that read them: the count window as a ring, the time window aged
   bucket by bucket, minimum_calls, the failure-rate, failure-count and slow-call-rate
   rules at their exact thresholds, rule order, and which paths read the clock. */
#define CB_IMPLEMENTATION
#include "cb.h"
#include "tests/t.h"

#define S CB_SUCCESS
#define F CB_FAILURE
#define I CB_IGNORED

#define CHECK_WINDOW(b, calls, fails)                                     \
    do {                                                                  \
        cb_stats t__w = t_stats(b);                                       \
        CHECK_EQ(t__w.window_calls, calls);                               \
        CHECK_EQ(t__w.window_failures, fails);                            \
    } while (0)

TEST(the_count_window_holds_the_last_n_outcomes_as_a_ring)
{
    t_fix *f = t_new((cb_config){.window_calls = 4, .failures_in_window = 3});
    static const cb_outcome seq[] = {F, F, S, S, S, F, S, F};
    static const uint32_t calls[] = {1, 2, 3, 4, 4, 4, 4, 4};
    static const uint32_t fails[] = {1, 2, 2, 2, 1, 1, 1, 2};
    for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) {
        t_call(f->b, seq[i]);
        CHECK_WINDOW(f->b, calls[i], fails[i]);
    }
    CHECK_STATE(f->b, CB_CLOSED);
    t_call(f->b, F);                  /* ring: F S F F */
    CHECK_STATE(f->b, CB_OPEN);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_FAILURE_COUNT, 1, 60000);
}

/* The ring head moves only for records that go into the ring (docs/design.md, Windows). */
static uint64_t ring_head(cb_breaker *b)
{
    return atomic_load(&b->cb__sh->live.win_head);
}

TEST(a_success_into_a_full_window_of_successes_skips_the_ring_in_every_period)
{
    t_fix *f = t_new((cb_config){.window_calls = 8, .failure_rate = 0.5});
    for (int period = 0; period < 3; period++) {
        /* period 0 is the first; then a fresh CLOSED period after a reset or a manual move */
        if (period == 1)
            cb_reset(f->b);
        if (period == 2) {
            cb_set_state(f->b, CB_FORCED_OPEN);
            cb_set_state(f->b, CB_CLOSED);
        }
        uint64_t head = ring_head(f->b);
        t_calls(f->b, S, 8);                  /* filling: each success takes a place */
        CHECK_EQ(ring_head(f->b), head + 8);
        CHECK_WINDOW(f->b, 8, 0);
        t_calls(f->b, S, 100);                /* full of plain successes: nothing changes */
        CHECK_EQ(ring_head(f->b), head + 8);
        t_call(f->b, F);                      /* a failure takes a place ... */
        t_calls(f->b, S, 7);                  /* ... and so does every success while it stays */
        CHECK_EQ(ring_head(f->b), head + 16);
        CHECK_WINDOW(f->b, 8, 1);
        t_call(f->b, S);                      /* the failure leaves */
        CHECK_WINDOW(f->b, 8, 0);
        t_calls(f->b, S, 100);
        CHECK_EQ(ring_head(f->b), head + 17);
        CHECK_STATE(f->b, CB_CLOSED);
    }
}

TEST(ignored_outcomes_stay_out_of_the_window)
{
    t_fix *f = t_new((cb_config){.window_calls = 4, .failure_rate = 0.5});
    t_calls(f->b, I, 10);
    CHECK_WINDOW(f->b, 0, 0);
    t_call(f->b, F);
    t_calls(f->b, I, 10);
    CHECK_WINDOW(f->b, 1, 1);
    CHECK_COUNTERS(f->b, 21, 0, 0, 1, 20, 0);
}

TEST(rate_rules_wait_for_exactly_minimum_calls)
{
    t_fix *f = t_new((cb_config){.window_calls = 100, .minimum_calls = 5, .failure_rate = 0.5});
    t_calls(f->b, F, 4);                  /* 100% failures, but only 4 calls */
    CHECK_STATE(f->b, CB_CLOSED);
    t_call(f->b, S);                      /* 4 / 5 */
    CHECK_STATE(f->b, CB_OPEN);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_FAILURE_RATE, 1, 60000);
}

TEST(the_failure_rate_rule_opens_at_exactly_the_rate)
{
    /* 3.0 / 10 and 0.3 are the same double: the rule is failures / calls >= rate */
    t_fix *f = t_new((cb_config){.window_calls = 10, .failure_rate = 0.3});
    t_calls(f->b, S, 8);
    t_calls(f->b, F, 2);
    CHECK_WINDOW(f->b, 10, 2);
    CHECK_STATE(f->b, CB_CLOSED);
    t_call(f->b, F);                      /* drops an S: 3 / 10 */
    CHECK_STATE(f->b, CB_OPEN);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_FAILURE_RATE, 1, 60000);
}

TEST(the_failure_rate_rule_compares_the_quotient_not_a_product)
{
    /* 7.0 / 25 == 0.28, but 0.28 * 25 > 7.0 in doubles: the rule is the quotient */
    t_fix *f = t_new((cb_config){.window_calls = 25, .failure_rate = 0.28});
    t_calls(f->b, S, 18);
    t_calls(f->b, F, 6);
    CHECK_STATE(f->b, CB_CLOSED);
    t_call(f->b, F);
    CHECK_STATE(f->b, CB_OPEN);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_FAILURE_RATE, 1, 60000);
}

TEST(the_window_still_counts_after_two_million_transitions)
{
    /* 2^21 transitions with no outcome recorded in CLOSED: a long outage of probes that
       fail, or an operator's loop. A window tag compared with too few bits would take the
       old period for a newer one and drop every outcome from then on. */
    t_fix *f = t_new((cb_config){.window_calls = 10, .failure_rate = 0.5});
    t_call(f->b, F);
    for (uint32_t i = 0; i < (1u << 21); i++)
        cb_set_state(f->b, i % 2 ? CB_CLOSED : CB_FORCED_OPEN);
    cb_set_state(f->b, CB_CLOSED);
    t_calls(f->b, F, 9);
    CHECK_WINDOW(f->b, 9, 9);
    t_call(f->b, F);
    CHECK_STATE(f->b, CB_OPEN);
}

TEST(a_rate_rule_without_a_window_gets_a_count_window_of_100)
{
    t_fix *f = t_new((cb_config){.failure_rate = 0.5});
    cb_config r = {0};
    cb_config_get(f->b, &r);
    CHECK_EQ(r.window_calls, 100);
    CHECK_EQ(r.window_ms, 0);
    CHECK_EQ(r.minimum_calls, 10);
    CHECK_EQ(r.consecutive_failures, 0);   /* a rule is on: no default run rule */
    t_calls(f->b, S, 60);
    t_calls(f->b, F, 40);                  /* 40 / 100; a smaller window would have opened */
    CHECK_WINDOW(f->b, 100, 40);
    t_calls(f->b, F, 9);                   /* 49 / 100 */
    CHECK_STATE(f->b, CB_CLOSED);
    t_call(f->b, F);                       /* 50 / 100 */
    CHECK_STATE(f->b, CB_OPEN);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_FAILURE_RATE, 1, 60000);
}

TEST(a_count_rule_without_a_window_gets_a_count_window_of_100)
{
    t_fix *f = t_new((cb_config){.failures_in_window = 3});
    cb_config r = {0};
    cb_config_get(f->b, &r);
    CHECK_EQ(r.window_calls, 100);
    t_call(f->b, F);
    t_calls(f->b, S, 98);
    t_call(f->b, F);                       /* the first F is still the 100th newest */
    CHECK_WINDOW(f->b, 100, 2);
    t_call(f->b, S);                       /* and now it is gone */
    CHECK_WINDOW(f->b, 100, 1);
    t_calls(f->b, F, 2);
    CHECK_STATE(f->b, CB_OPEN);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_FAILURE_COUNT, 1, 60000);
}

TEST(minimum_calls_defaults_to_10_or_the_count_window_if_smaller)
{
    t_fix *f = t_new((cb_config){.window_calls = 4, .failure_rate = 1});
    cb_config r = {0};
    cb_config_get(f->b, &r);
    CHECK_EQ(r.minimum_calls, 4);
    t_calls(f->b, F, 3);
    CHECK_STATE(f->b, CB_CLOSED);
    t_call(f->b, F);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_FAILURE_RATE, 1, 60000);

    f = t_new((cb_config){.window_ms = 1000, .failure_rate = 1});
    cb_config_get(f->b, &r);
    CHECK_EQ(r.minimum_calls, 10);
    CHECK_EQ(r.window_buckets, 10);
    t_calls(f->b, F, 9);
    CHECK_STATE(f->b, CB_CLOSED);
    t_call(f->b, F);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_FAILURE_RATE, 1, 60000);
}

TEST(rules_are_checked_in_order_and_the_first_that_holds_names_the_reason)
{
    cb_config all = {.consecutive_failures = 3, .window_calls = 10, .minimum_calls = 3,
                     .failure_rate = 0.5, .failures_in_window = 3};
    t_fix *f = t_new(all);
    t_calls(f->b, F, 3);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_CONSECUTIVE_FAILURES, 1, 60000);

    all.consecutive_failures = 0;
    f = t_new(all);
    t_calls(f->b, F, 3);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_FAILURE_RATE, 1, 60000);

    f = t_new((cb_config){.window_calls = 10, .minimum_calls = 3, .failures_in_window = 3,
                          .slow_call_ms = 10, .slow_call_rate = 0.5});
    for (int i = 0; i < 3; i++) {
        cb_ticket t;
        CHECK(cb_allow(f->b, &t));
        f->clock.ns += 10 * T_MS;
        cb_record(f->b, &t, F);
    }
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_FAILURE_COUNT, 1, 60000);
    CHECK_EQ(t_stats(f->b).slow, 3);
}

/* The time window: 1000 ms in 10 buckets of 100 ms; the breaker starts at a whole second,
   so bucket edges fall on whole 100 ms of the test clock. */
TEST(the_time_window_ages_out_bucket_by_bucket)
{
    t_fix *f = t_new((cb_config){.window_ms = 1000, .window_buckets = 10,
                                 .failures_in_window = 1000});
    for (uint64_t i = 0; i < 10; i++) {    /* one failure in each bucket */
        t_at_ms(f, 100 * i);
        t_call(f->b, F);
    }
    CHECK_WINDOW(f->b, 10, 10);
    for (uint64_t j = 0; j < 10; j++) {
        t_at_ms(f, 1000 + 100 * j);        /* bucket j leaves as bucket 10 + j begins */
        t_call(f->b, S);
        CHECK_WINDOW(f->b, 10 + j, 9 - j);
        t_at_ns(f, (1100 + 100 * j) * T_MS - 1);   /* bucket j + 1 is still in */
        t_call(f->b, S);
        CHECK_WINDOW(f->b, 11 + j, 9 - j);
    }
}

TEST(the_time_window_forgets_everything_after_a_long_idle_spell)
{
    t_fix *f = t_new((cb_config){.window_ms = 1000, .failures_in_window = 1000});
    t_calls(f->b, F, 50);
    t_at_ms(f, 500);
    t_calls(f->b, F, 50);
    t_at_ms(f, 3600 * 1000 + 250);
    t_call(f->b, S);
    CHECK_WINDOW(f->b, 1, 0);
    t_at_ms(f, 3600 * 1000 + 1199);        /* the last instant its bucket is in */
    t_call(f->b, S);
    CHECK_WINDOW(f->b, 2, 0);
}

TEST(a_rate_over_the_time_window_counts_only_unexpired_buckets)
{
    cb_config cfg = {.window_ms = 1000, .minimum_calls = 3, .failure_rate = 0.6};
    t_fix *f = t_new(cfg);
    t_calls(f->b, S, 3);
    t_at_ms(f, 500);
    t_calls(f->b, F, 2);                   /* 2 / 5 */
    t_at_ns(f, 1000 * T_MS - 1);
    t_call(f->b, F);                       /* 3 / 6 = 0.5: the successes still count */
    CHECK_STATE(f->b, CB_CLOSED);
    CHECK_WINDOW(f->b, 6, 3);

    f = t_new(cfg);
    t_calls(f->b, S, 3);
    t_at_ms(f, 500);
    t_calls(f->b, F, 2);
    t_at_ms(f, 1000);
    t_call(f->b, F);                       /* the successes aged out: 3 / 3 */
    CHECK_STATE(f->b, CB_OPEN);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_FAILURE_RATE, 1, 60000);
}

TEST(the_time_window_is_fresh_after_a_close_and_on_entering_metrics_only)
{
    t_fix *f = t_new((cb_config){.window_ms = 10000, .failure_rate = 0.5, .minimum_calls = 4,
                                 .open_ms = 1000});
    t_calls(f->b, F, 4);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_FAILURE_RATE, 1, 1000);
    t_at_ms(f, 1000);                      /* the failures are still inside window_ms */
    t_call(f->b, S);
    CHECK_STATE(f->b, CB_CLOSED);
    CHECK_WINDOW(f->b, 0, 0);
    t_calls(f->b, S, 3);
    t_call(f->b, F);                       /* 1 / 4, not 5 / 8 */
    CHECK_WINDOW(f->b, 4, 1);
    CHECK_STATE(f->b, CB_CLOSED);
    cb_set_state(f->b, CB_METRICS_ONLY);
    CHECK_WINDOW(f->b, 0, 0);
    t_call(f->b, F);
    CHECK_WINDOW(f->b, 1, 1);
}

TEST(a_backwards_clock_records_into_the_current_bucket)
{
    t_fix *f = t_new((cb_config){.window_ms = 1000, .failures_in_window = 1000});
    t_at_ms(f, 5000);
    t_call(f->b, F);
    t_at_ms(f, 0);                         /* 5 s back: treated as still 5000 ms */
    t_call(f->b, F);
    CHECK_WINDOW(f->b, 2, 2);
    t_at_ms(f, 5999);
    t_call(f->b, S);
    CHECK_WINDOW(f->b, 3, 2);
    t_at_ms(f, 6000);                      /* bucket [5000, 5100) leaves with both failures */
    t_call(f->b, S);
    CHECK_WINDOW(f->b, 2, 0);
}

TEST(a_call_is_slow_from_exactly_slow_call_ms_whatever_its_outcome)
{
    t_fix *f = t_new((cb_config){.window_calls = 10, .failures_in_window = 10,
                                 .slow_call_ms = 100});
    cb_ticket t;
    struct { uint64_t ns; cb_outcome o; uint32_t slow; } step[] = {
        {100 * T_MS - 1, S, 0}, {100 * T_MS, S, 1}, {100 * T_MS, F, 2},
        {5000 * T_MS, I, 2},    /* ignored calls are never slow */
    };
    for (size_t i = 0; i < sizeof step / sizeof step[0]; i++) {
        CHECK(cb_allow(f->b, &t));
        f->clock.ns += step[i].ns;
        CHECK(cb_record(f->b, &t, step[i].o));
        CHECK_EQ(t_stats(f->b).slow, step[i].slow);
        CHECK_EQ(t_stats(f->b).window_slow, step[i].slow);
    }
    CHECK_COUNTERS(f->b, 4, 0, 2, 1, 1, 0);
    CHECK_WINDOW(f->b, 3, 1);
}

TEST(the_slow_call_rate_rule_opens_with_its_reason)
{
    t_fix *f = t_new((cb_config){.window_calls = 4, .slow_call_ms = 50, .slow_call_rate = 0.5});
    cb_ticket t;
    t_calls(f->b, S, 2);                   /* fast */
    CHECK(cb_allow(f->b, &t));
    f->clock.ns += 50 * T_MS;
    cb_record(f->b, &t, S);                /* 1 slow of 3 */
    CHECK_STATE(f->b, CB_CLOSED);
    CHECK(cb_allow(f->b, &t));
    f->clock.ns += 60 * T_MS;
    cb_record(f->b, &t, S);                /* 2 slow of 4 */
    CHECK_STATE(f->b, CB_OPEN);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_SLOW_CALL_RATE, 1, 60000);
    CHECK_COUNTERS(f->b, 4, 0, 4, 0, 0, 0);
}

TEST(a_slow_call_duration_below_zero_is_zero)
{
    t_fix *f = t_new((cb_config){.window_calls = 10, .slow_call_ms = 1, .slow_call_rate = 1});
    cb_ticket t;
    t_at_ms(f, 10000);
    CHECK(cb_allow(f->b, &t));
    t_at_ms(f, 0);
    CHECK(cb_record(f->b, &t, S));
    CHECK_EQ(t_stats(f->b).slow, 0);
}

/* Counts clock reads over n successes on a breaker made from cfg. */
static unsigned long t_reads_for_successes(cb_config cfg, int n)
{
    t_fix *f = t_new(cfg);
    unsigned long before = f->clock.reads;
    CHECK_EQ(t_calls(f->b, S, n), n);
    CHECK_STATE(f->b, CB_CLOSED);
    return f->clock.reads - before;
}

TEST(the_closed_success_path_reads_no_clock_without_slow_calls_or_a_time_window)
{
    CHECK_EQ(t_reads_for_successes((cb_config){0}, 1000), 0);
    CHECK_EQ(t_reads_for_successes((cb_config){.consecutive_failures = 3}, 1000), 0);
    CHECK_EQ(t_reads_for_successes((cb_config){.window_calls = 50, .failure_rate = 0.5,
                                               .failures_in_window = 20}, 1000), 0);
    /* after a failure cut the run, successes go back to reading no clock */
    t_fix *f = t_new((cb_config){.consecutive_failures = 3, .window_calls = 20,
                                 .failure_rate = 0.9});
    t_call(f->b, F);
    t_call(f->b, S);
    unsigned long before = f->clock.reads;
    t_calls(f->b, S, 100);
    CHECK_EQ(f->clock.reads - before, 0);
    /* the clock is needed, and read, when calls are timed */
    CHECK(t_reads_for_successes((cb_config){.slow_call_ms = 100}, 10) >= 10);
}

/* Early warning: degraded while the window's failure rate is at or above
   warn_failure_rate (with minimum_calls), told once each way as an event with from == to
   and no generation; and the trend: the window's figures one window ago. */
TEST(the_warning_comes_before_the_trip_and_is_told_once_each_way)
{
    t_fix *f = t_new((cb_config){.window_calls = 10, .minimum_calls = 10, .failure_rate = 0.5,
                                 .warn_failure_rate = 0.3});
    t_calls(f->b, S, 10);                         /* ring positions 0..9 */
    CHECK_EQ(t_stats(f->b).degraded, 0);
    CHECK_EQ(t_stats(f->b).prev_window_calls, 10); /* all plain: plain then too, as far as told */
    t_calls(f->b, F, 2);                          /* 20%: positions 10, 11 */
    CHECK_NO_EVENT(f);
    t_calls(f->b, F, 1);                          /* 30%: the warning */
    CHECK_EVENT(f, CB_CLOSED, CB_CLOSED, CB_REASON_DEGRADED, 0, 0);
    cb_stats s = t_stats(f->b);
    CHECK_EQ(s.degraded, 1);
    CHECK_EQ(s.state, CB_CLOSED);
    CHECK_EQ(s.generation, 0);
    CHECK_EQ(s.prev_window_calls, 10);            /* round 1 began at position 10: 0/10 */
    CHECK_EQ(s.prev_window_failures, 0);
    t_calls(f->b, F, 1);                          /* 40%: still warned, not told again */
    CHECK_NO_EVENT(f);
    t_calls(f->b, S, 6);                          /* positions 14..19 replace successes */
    CHECK_EQ(t_stats(f->b).degraded, 1);
    t_calls(f->b, S, 2);                          /* 20..21 take out two failures: 20% */
    CHECK_EVENT(f, CB_CLOSED, CB_CLOSED, CB_REASON_RECOVERED, 0, 0);
    s = t_stats(f->b);
    CHECK_EQ(s.degraded, 0);
    CHECK_EQ(s.window_failures, 2);
    CHECK_EQ(s.prev_window_calls, 10);            /* round 2 began at 20 with 4/10 */
    CHECK_EQ(s.prev_window_failures, 4);
    CHECK_EQ(cb_history(f->b, NULL, 0), 0);       /* no transition was made */
    char json[2048];
    CHECK(cb_format_json(f->b, json, sizeof json) > 0);
    CHECK_CONTAINS(json, "\"degraded\":0,\"prev_window_calls\":10,\"prev_window_failures\":4");
    t_calls(f->b, F, 6);                          /* up to the trip: no warning event */
    CHECK_EVENT(f, CB_CLOSED, CB_CLOSED, CB_REASON_DEGRADED, 0, 0);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_FAILURE_RATE, 1, 60000);
    CHECK_EQ(t_stats(f->b).degraded, 0);          /* open: the window is a closed period's */
}

TEST(a_time_window_warns_and_keeps_the_figures_of_one_window_ago)
{
    t_fix *f = t_new((cb_config){.window_ms = 1000, .window_buckets = 10, .minimum_calls = 4,
                                 .failure_rate = 0.9, .warn_failure_rate = 0.5});
    t_calls(f->b, S, 2);
    t_calls(f->b, F, 2);                          /* 2/4 at t = 0 */
    CHECK_EVENT(f, CB_CLOSED, CB_CLOSED, CB_REASON_DEGRADED, 0, 0);
    CHECK_EQ(t_stats(f->b).degraded, 1);
    t_at_ms(f, 1500);                             /* a new round: the old calls aged out */
    CHECK_EQ(t_stats(f->b).degraded, 0);          /* read: the window is empty now */
    t_calls(f->b, S, 1);
    CHECK_EVENT(f, CB_CLOSED, CB_CLOSED, CB_REASON_RECOVERED, 0, 0);
    cb_stats s = t_stats(f->b);
    CHECK_EQ(s.window_calls, 1);
    CHECK_EQ(s.prev_window_calls, 0);             /* the window at the round's start: empty */
    t_at_ms(f, 1900);
    t_calls(f->b, F, 3);                          /* 3/4 */
    t_at_ms(f, 2050);                             /* round 2: its first call keeps 3/4 */
    t_calls(f->b, S, 1);
    s = t_stats(f->b);
    CHECK_EQ(s.prev_window_calls, 4);
    CHECK_EQ(s.prev_window_failures, 3);
}

TEST(the_warning_needs_a_window_and_a_rate_below_the_trip)
{
    char msg[200];
    struct { cb_config c; const char *says; } bad[] = {
        { {.warn_failure_rate = 0.3}, "needs a window" },
        { {.window_calls = 10, .failure_rate = 0.5, .warn_failure_rate = 0.5}, "below failure_rate" },
        { {.window_calls = 10, .warn_failure_rate = 1}, "must be in (0, 1)" },
        { {.window_calls = 10, .warn_failure_rate = -0.1}, "must be in (0, 1)" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ(cb_config_check(&bad[i].c, msg, sizeof msg), CB_EINVAL);
        CHECK_CONTAINS(msg, "warn_failure_rate");
        CHECK_CONTAINS(msg, bad[i].says);
    }
    cb_config ok = {.window_ms = 1000, .warn_failure_rate = 0.2};   /* a warning alone is fine */
    CHECK_EQ(cb_config_check(&ok, msg, sizeof msg), CB_OK);
}
