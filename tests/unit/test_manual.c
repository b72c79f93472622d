/* Manual control: cb_set_state into every state (each call a transition with reason
   MANUAL), FORCED_OPEN, DISABLED, METRICS_ONLY, manual OPEN and HALF_OPEN, cb_reset, and
   the stale and rejected tickets they leave behind. */
#define CB_IMPLEMENTATION
#include "cb.h"
#include "tests/t.h"

#define S CB_SUCCESS
#define F CB_FAILURE
#define I CB_IGNORED

/* Compares every field but stale and in_flight, which the caller checks itself. */
#define CHECK_STATS_SAME(a, b)                                            \
    do {                                                                  \
        CHECK_EQ((a).state, (b).state);                                   \
        CHECK_EQ((a).generation, (b).generation);                         \
        CHECK_EQ((a).admitted, (b).admitted);                             \
        CHECK_EQ((a).rejected, (b).rejected);                             \
        CHECK_EQ((a).successes, (b).successes);                           \
        CHECK_EQ((a).failures, (b).failures);                             \
        CHECK_EQ((a).ignored, (b).ignored);                               \
        CHECK_EQ((a).slow, (b).slow);                                     \
        CHECK_EQ((a).opens, (b).opens);                                   \
        CHECK_EQ((a).consecutive_failures, (b).consecutive_failures);     \
        CHECK_EQ((a).window_calls, (b).window_calls);                     \
        CHECK_EQ((a).window_failures, (b).window_failures);               \
        CHECK_EQ((a).window_slow, (b).window_slow);                       \
        CHECK_EQ((a).state_since_ns, (b).state_since_ns);                 \
        CHECK_EQ((a).last_failure_ns, (b).last_failure_ns);               \
        CHECK_EQ((a).open_until_ns, (b).open_until_ns);                   \
    } while (0)

TEST(set_state_enters_any_state_and_every_call_is_one_transition)
{
    t_fix *f = t_new((cb_config){.open_ms = 1000});
    static const cb_state seq[] = {CB_CLOSED, CB_OPEN, CB_HALF_OPEN, CB_FORCED_OPEN,
                                   CB_DISABLED, CB_METRICS_ONLY, CB_METRICS_ONLY, CB_OPEN,
                                   CB_CLOSED};
    cb_state prev = CB_CLOSED;
    for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) {
        t_at_ms(f, 10 * i);
        CHECK_EQ(cb_set_state(f->b, seq[i]), CB_OK);
        CHECK_STATE(f->b, seq[i]);
        CHECK_EVENT(f, prev, seq[i], CB_REASON_MANUAL, i + 1, 1000);
        CHECK_EQ(t_stats(f->b).state_since_ns, f->clock.ns);
        prev = seq[i];
    }
    CHECK_NO_EVENT(f);
    CHECK_EQ(t_stats(f->b).opens, 2);  /* manual OPEN counts; FORCED_OPEN is not OPEN */
}

TEST(set_state_refuses_an_unknown_state_and_changes_nothing)
{
    t_fix *f = t_new((cb_config){0});
    CHECK_EQ(cb_set_state(f->b, (cb_state)6), CB_EINVAL);
    CHECK_EQ(cb_set_state(f->b, (cb_state)-1), CB_EINVAL);
    CHECK_STATE(f->b, CB_CLOSED);
    CHECK_EQ(t_stats(f->b).generation, 0);
    CHECK_NO_EVENT(f);
}

TEST(forced_open_rejects_every_call_and_never_leaves_by_itself)
{
    t_fix *f = t_new((cb_config){.open_ms = 1000, .probe_timeout_ms = 1000});
    cb_ticket t;
    CHECK_EQ(cb_set_state(f->b, CB_FORCED_OPEN), CB_OK);
    for (uint64_t h = 0; h <= 24; h++) {
        t_at_ms(f, h * 3600 * 1000);
        CHECK(!cb_allow(f->b, &t));
        CHECK_EQ(cb_retry_after_ms(f->b), 0);
    }
    CHECK_STATE(f->b, CB_FORCED_OPEN);
    CHECK_COUNTERS(f->b, 0, 25, 0, 0, 0, 0);
    CHECK_EQ(t_stats(f->b).generation, 1);
    CHECK_EQ(t_stats(f->b).opens, 0);
}

TEST(disabled_admits_every_call_and_records_nothing)
{
    t_fix *f = t_new((cb_config){.consecutive_failures = 1, .max_concurrent = 1});
    cb_ticket t[100];
    CHECK_EQ(cb_set_state(f->b, CB_DISABLED), CB_OK);
    for (int i = 0; i < 100; i++)            /* max_concurrent does not apply either */
        CHECK(cb_allow(f->b, &t[i]));
    for (int i = 0; i < 100; i++)
        CHECK(!cb_record(f->b, &t[i], i % 2 ? F : S));
    CHECK_STATE(f->b, CB_DISABLED);
    CHECK_COUNTERS(f->b, 100, 0, 0, 0, 0, 0);
    cb_stats s = t_stats(f->b);
    CHECK_EQ(s.consecutive_failures, 0);
    CHECK_EQ(s.last_failure_ns, 0);
    CHECK_EQ(s.in_flight, 0);
    CHECK_EQ(s.generation, 1);
}

TEST(a_ticket_from_disabled_recorded_after_it_is_stale)
{
    t_fix *f = t_new((cb_config){.consecutive_failures = 1});
    cb_ticket t;
    cb_set_state(f->b, CB_DISABLED);
    CHECK(cb_allow(f->b, &t));
    cb_set_state(f->b, CB_CLOSED);
    CHECK(!cb_record(f->b, &t, F));
    CHECK_STATE(f->b, CB_CLOSED);
    CHECK_COUNTERS(f->b, 1, 0, 0, 0, 0, 1);
}

TEST(metrics_only_records_everything_and_never_trips)
{
    t_fix *f = t_new((cb_config){.consecutive_failures = 3, .window_calls = 10,
                                 .failure_rate = 0.5, .slow_call_ms = 5,
                                 .slow_call_rate = 0.5});
    cb_ticket t;
    cb_set_state(f->b, CB_METRICS_ONLY);
    CHECK_EVENT(f, CB_CLOSED, CB_METRICS_ONLY, CB_REASON_MANUAL, 1, 0);
    for (int i = 0; i < 50; i++) {
        CHECK(cb_allow(f->b, &t));
        f->clock.ns += 5 * T_MS;
        CHECK(cb_record(f->b, &t, F));
    }
    CHECK_STATE(f->b, CB_METRICS_ONLY);
    CHECK_NO_EVENT(f);
    cb_stats s = t_stats(f->b);
    CHECK_COUNTERS(f->b, 50, 0, 0, 50, 0, 0);
    CHECK_EQ(s.slow, 50);
    CHECK_EQ(s.consecutive_failures, 50);
    CHECK_EQ(s.window_calls, 10);
    CHECK_EQ(s.window_failures, 10);
    CHECK_EQ(s.window_slow, 10);
    CHECK_EQ(s.last_failure_ns, f->clock.ns);
    CHECK_EQ(s.opens, 0);
}

TEST(entering_closed_or_metrics_only_starts_a_fresh_window_and_run)
{
    t_fix *f = t_new((cb_config){.consecutive_failures = 5, .window_calls = 10,
                                 .failures_in_window = 10});
    t_calls(f->b, F, 4);
    cb_set_state(f->b, CB_METRICS_ONLY);
    cb_stats s = t_stats(f->b);
    CHECK_EQ(s.consecutive_failures, 0);
    CHECK_EQ(s.window_calls, 0);
    t_calls(f->b, F, 4);
    cb_set_state(f->b, CB_CLOSED);
    s = t_stats(f->b);
    CHECK_EQ(s.consecutive_failures, 0);
    CHECK_EQ(s.window_calls, 0);
    t_calls(f->b, F, 4);
    CHECK_STATE(f->b, CB_CLOSED);       /* the run is 4, not 12 */
    t_call(f->b, F);
    CHECK_STATE(f->b, CB_OPEN);
}

TEST(manual_open_starts_a_period_at_the_current_backoff_step)
{
    t_fix *f = t_new((cb_config){.consecutive_failures = 1, .open_ms = 1000, .backoff = 2});
    cb_ticket t;
    t_call(f->b, F);                               /* k = 0: 1000 */
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_CONSECUTIVE_FAILURES, 1, 1000);
    t_at_ms(f, 1000);
    CHECK(cb_allow(f->b, &t));
    CHECK(cb_record(f->b, &t, F));                 /* k = 1: 2000 */
    CHECK_EVENT(f, CB_OPEN, CB_HALF_OPEN, CB_REASON_OPEN_ELAPSED, 2, 0);
    CHECK_EVENT(f, CB_HALF_OPEN, CB_OPEN, CB_REASON_PROBE_FAILED, 3, 2000);

    t_at_ms(f, 1500);
    cb_set_state(f->b, CB_OPEN);                   /* still k = 1, period restarts now */
    CHECK_EVENT(f, CB_OPEN, CB_OPEN, CB_REASON_MANUAL, 4, 2000);
    CHECK_EQ(t_stats(f->b).open_until_ns, T_T0 + 3500 * T_MS);
    CHECK_EQ(cb_retry_after_ms(f->b), 2000);
    t_at_ns(f, 3500 * T_MS - 1);
    CHECK(!cb_allow(f->b, &t));
    t_at_ms(f, 3500);
    CHECK(cb_allow(f->b, &t));
    CHECK_EVENT(f, CB_OPEN, CB_HALF_OPEN, CB_REASON_OPEN_ELAPSED, 5, 0);

    cb_set_state(f->b, CB_CLOSED);                 /* k = 0 */
    CHECK_EVENT(f, CB_HALF_OPEN, CB_CLOSED, CB_REASON_MANUAL, 6, 0);
    cb_set_state(f->b, CB_OPEN);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_MANUAL, 7, 1000);
    CHECK_EQ(t_stats(f->b).opens, 4);
    CHECK(!cb_record(f->b, &t, S));                /* the probe's generation is gone */
}

TEST(manual_half_open_starts_a_fresh_round_whose_deadline_starts_now)
{
    t_fix *f = t_new((cb_config){.half_open_calls = 2, .probe_timeout_ms = 3000,
                                 .open_ms = 1000});
    cb_ticket a, b, c;
    t_at_ms(f, 100);
    cb_set_state(f->b, CB_HALF_OPEN);
    CHECK_EVENT(f, CB_CLOSED, CB_HALF_OPEN, CB_REASON_MANUAL, 1, 0);
    CHECK(cb_allow(f->b, &a));                     /* no transition: permit 1 of 2 */
    CHECK(cb_allow(f->b, &b));
    CHECK(!cb_allow(f->b, &c));
    CHECK_NO_EVENT(f);
    CHECK_EQ(t_stats(f->b).generation, 1);
    t_at_ns(f, 3100 * T_MS - 1);
    CHECK(!cb_allow(f->b, &c));
    CHECK_STATE(f->b, CB_HALF_OPEN);
    t_at_ms(f, 3100);
    CHECK(!cb_allow(f->b, &c));
    CHECK_EVENT(f, CB_HALF_OPEN, CB_OPEN, CB_REASON_PROBE_TIMEOUT, 2, 1000);
}

TEST(reset_closes_with_a_fresh_window_and_keeps_the_cumulative_counters)
{
    t_fix *f = t_new((cb_config){.consecutive_failures = 2, .window_calls = 10,
                                 .failures_in_window = 10, .open_ms = 1000});
    t_calls(f->b, S, 3);
    t_calls(f->b, F, 2);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_CONSECUTIVE_FAILURES, 1, 1000);
    t_calls(f->b, S, 2);                           /* rejected */
    t_at_ms(f, 7);
    cb_reset(f->b);
    CHECK_STATE(f->b, CB_CLOSED);
    CHECK_EVENT(f, CB_OPEN, CB_CLOSED, CB_REASON_MANUAL, 2, 0);
    cb_stats s = t_stats(f->b);
    CHECK_COUNTERS(f->b, 5, 2, 3, 2, 0, 0);
    CHECK_EQ(s.opens, 1);
    CHECK_EQ(s.window_calls, 0);
    CHECK_EQ(s.consecutive_failures, 0);
    CHECK_EQ(s.state_since_ns, T_T0 + 7 * T_MS);

    static const cb_state from[] = {CB_FORCED_OPEN, CB_DISABLED, CB_METRICS_ONLY,
                                    CB_HALF_OPEN, CB_CLOSED};
    for (size_t i = 0; i < sizeof from / sizeof from[0]; i++) {
        cb_set_state(f->b, from[i]);
        cb_reset(f->b);
        CHECK_STATE(f->b, CB_CLOSED);
        CHECK_EVENT(f, CB_CLOSED, from[i],
                    CB_REASON_MANUAL, 3 + 2 * i, 0);
        CHECK_EVENT(f, from[i], CB_CLOSED, CB_REASON_MANUAL, 4 + 2 * i, 0);
    }
}

TEST(a_stale_ticket_counts_stale_returns_false_and_changes_nothing_else)
{
    t_fix *f = t_new((cb_config){.consecutive_failures = 1, .window_calls = 10,
                                 .failures_in_window = 10, .slow_call_ms = 1});
    cb_ticket old;
    CHECK(cb_allow(f->b, &old));
    t_at_ms(f, 5);
    t_call(f->b, F);                               /* opens: generation 1 */
    cb_stats before = t_stats(f->b);
    t_at_ms(f, 6);
    CHECK(!cb_record(f->b, &old, F));
    cb_stats after = t_stats(f->b);
    CHECK_STATS_SAME(after, before);
    CHECK_EQ(after.stale, before.stale + 1);
    CHECK_EQ(after.in_flight, 0);

    cb_set_state(f->b, CB_CLOSED);                  /* stale across a manual transition */
    t_call(f->b, S);
    CHECK(cb_allow(f->b, &old));
    cb_set_state(f->b, CB_CLOSED);
    t_call(f->b, S);
    before = t_stats(f->b);
    CHECK(!cb_record(f->b, &old, S));
    after = t_stats(f->b);
    CHECK_STATS_SAME(after, before);
    CHECK_EQ(after.stale, before.stale + 1);
}

TEST(a_rejected_ticket_records_nothing)
{
    t_fix *f = t_new((cb_config){.consecutive_failures = 1});
    cb_ticket t;
    t_call(f->b, F);
    CHECK(!cb_allow(f->b, &t));
    cb_stats before = t_stats(f->b);
    CHECK(!cb_record(f->b, &t, F));
    CHECK(!cb_record(f->b, &t, S));
    CHECK(!cb_record(f->b, &t, I));
    cb_stats after = t_stats(f->b);
    CHECK_STATS_SAME(after, before);
    CHECK_EQ(after.stale, before.stale);
    CHECK_EQ(after.in_flight, 0);

    cb_set_state(f->b, CB_FORCED_OPEN);
    CHECK(!cb_allow(f->b, &t));
    cb_set_state(f->b, CB_CLOSED);
    CHECK(!cb_record(f->b, &t, F));
    CHECK_COUNTERS(f->b, 1, 2, 0, 1, 0, 0);
}

TEST(a_ticket_never_admitted_or_an_unknown_outcome_records_nothing)
{
    t_fix *f = t_new((cb_config){.window_calls = 10, .failure_rate = 0.5});
    cb_ticket zero = {0}, t;
    CHECK(!cb_record(f->b, &zero, S));
    CHECK(cb_allow(f->b, &t));
    CHECK(!cb_record(f->b, &t, (cb_outcome)7));
    CHECK_COUNTERS(f->b, 1, 0, 0, 0, 0, 0);
    CHECK_EQ(t_stats(f->b).window_calls, 0);
    CHECK(cb_record(f->b, &t, S));          /* the call can still be settled properly */
    CHECK_COUNTERS(f->b, 1, 0, 1, 0, 0, 0);
}
