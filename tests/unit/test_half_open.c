/* HALF_OPEN: probe permits, closing after a full round of successes, re-opening on a failed
   or slow probe or a round that timed out, IGNORED giving its permit back, and the stale
   tickets those transitions leave behind. */
#define CB_IMPLEMENTATION
#include "cb.h"
#include "tests/t.h"

#define S CB_SUCCESS
#define F CB_FAILURE
#define I CB_IGNORED

/* A breaker that opened at T0 (1000 ms) and is now due: the caller's cb_allow probes. */
static t_fix *t_due(cb_config cfg)
{
    cfg.consecutive_failures = 1;
    cfg.open_ms = 1000;
    t_fix *f = t_new(cfg);
    t_call(f->b, F);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_CONSECUTIVE_FAILURES, 1, 1000);
    t_at_ms(f, 1000);
    return f;
}

TEST(half_open_admits_half_open_calls_probes_and_rejects_the_rest)
{
    t_fix *f = t_due((cb_config){.half_open_calls = 3});
    cb_ticket p[3], t;
    for (int i = 0; i < 3; i++)
        CHECK(cb_allow(f->b, &p[i]));
    CHECK_EVENT(f, CB_OPEN, CB_HALF_OPEN, CB_REASON_OPEN_ELAPSED, 2, 0);
    CHECK(!cb_allow(f->b, &t));
    CHECK_EQ(t_stats(f->b).in_flight, 3);
    CHECK(cb_record(f->b, &p[0], S));
    CHECK(!cb_allow(f->b, &t));       /* a success does not give its permit back */
    CHECK(cb_record(f->b, &p[1], S));
    CHECK_STATE(f->b, CB_HALF_OPEN);
    CHECK_NO_EVENT(f);
    CHECK_COUNTERS(f->b, 4, 2, 2, 1, 0, 0);
}

TEST(when_every_probe_of_the_round_succeeds_it_closes_with_a_fresh_window)
{
    t_fix *f = t_due((cb_config){.half_open_calls = 2, .window_calls = 10, .backoff = 2,
                                 .failures_in_window = 10});
    cb_ticket a, b;
    CHECK(cb_allow(f->b, &a));
    CHECK(cb_allow(f->b, &b));
    CHECK(cb_record(f->b, &b, S));
    CHECK(cb_record(f->b, &a, S));
    CHECK_STATE(f->b, CB_CLOSED);
    CHECK_EVENT(f, CB_OPEN, CB_HALF_OPEN, CB_REASON_OPEN_ELAPSED, 2, 0);
    CHECK_EVENT(f, CB_HALF_OPEN, CB_CLOSED, CB_REASON_PROBES_SUCCEEDED, 3, 0);
    cb_stats s = t_stats(f->b);
    CHECK_EQ(s.window_calls, 0);
    CHECK_EQ(s.window_failures, 0);
    CHECK_EQ(s.consecutive_failures, 0);
    CHECK_EQ(s.state_since_ns, T_T0 + 1000 * T_MS);
    t_call(f->b, F);                  /* k = 0 again: the base period */
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_CONSECUTIVE_FAILURES, 4, 1000);
}

TEST(a_failed_probe_reopens_at_the_next_backoff_step_and_strands_the_others)
{
    t_fix *f = t_due((cb_config){.half_open_calls = 2, .backoff = 2});
    cb_ticket a, b;
    CHECK(cb_allow(f->b, &a));
    CHECK(cb_allow(f->b, &b));
    CHECK_EVENT(f, CB_OPEN, CB_HALF_OPEN, CB_REASON_OPEN_ELAPSED, 2, 0);
    t_at_ms(f, 1200);
    CHECK(cb_record(f->b, &a, F));
    CHECK_STATE(f->b, CB_OPEN);
    CHECK_EVENT(f, CB_HALF_OPEN, CB_OPEN, CB_REASON_PROBE_FAILED, 3, 2000);
    CHECK_EQ(t_stats(f->b).open_until_ns, T_T0 + 3200 * T_MS);
    CHECK(!cb_record(f->b, &b, S));   /* its round is over */
    CHECK_COUNTERS(f->b, 3, 0, 0, 2, 0, 1);
    CHECK_EQ(t_stats(f->b).opens, 2);
    CHECK_EQ(t_stats(f->b).in_flight, 0);
    CHECK_NO_EVENT(f);
}

TEST(an_ignored_probe_gives_its_permit_back)
{
    t_fix *f = t_due((cb_config){.half_open_calls = 1});
    cb_ticket a, b;
    CHECK(cb_allow(f->b, &a));
    CHECK(!cb_allow(f->b, &b));
    CHECK(cb_record(f->b, &a, I));
    CHECK_STATE(f->b, CB_HALF_OPEN);
    CHECK(cb_allow(f->b, &b));
    CHECK(cb_record(f->b, &b, S));
    CHECK_STATE(f->b, CB_CLOSED);
    CHECK_EVENT(f, CB_OPEN, CB_HALF_OPEN, CB_REASON_OPEN_ELAPSED, 2, 0);
    CHECK_EVENT(f, CB_HALF_OPEN, CB_CLOSED, CB_REASON_PROBES_SUCCEEDED, 3, 0);
    CHECK_COUNTERS(f->b, 3, 1, 1, 1, 1, 0);
}

TEST(a_round_unresolved_for_probe_timeout_ms_is_reopened_by_the_next_allow)
{
    t_fix *f = t_due((cb_config){.probe_timeout_ms = 5000, .backoff = 2});
    cb_ticket hung, t;
    CHECK(cb_allow(f->b, &hung));     /* round begins at 1000 ms; its caller never returns */
    CHECK_EVENT(f, CB_OPEN, CB_HALF_OPEN, CB_REASON_OPEN_ELAPSED, 2, 0);
    t_at_ns(f, 6000 * T_MS - 1);
    CHECK(!cb_allow(f->b, &t));
    CHECK_STATE(f->b, CB_HALF_OPEN);
    CHECK_NO_EVENT(f);
    t_at_ms(f, 6000);
    CHECK(!cb_allow(f->b, &t));
    CHECK_STATE(f->b, CB_OPEN);
    CHECK_EVENT(f, CB_HALF_OPEN, CB_OPEN, CB_REASON_PROBE_TIMEOUT, 3, 2000);
    CHECK_EQ(cb_retry_after_ms(f->b), 2000);

    t_at_ms(f, 7000);
    CHECK(!cb_record(f->b, &hung, S)); /* the hung probe finally returns: stale */
    CHECK_COUNTERS(f->b, 2, 2, 0, 1, 0, 1);
    t_at_ms(f, 8000);
    CHECK(cb_allow(f->b, &t));
    CHECK_EVENT(f, CB_OPEN, CB_HALF_OPEN, CB_REASON_OPEN_ELAPSED, 4, 0);
    CHECK(cb_record(f->b, &t, S));
    CHECK_EVENT(f, CB_HALF_OPEN, CB_CLOSED, CB_REASON_PROBES_SUCCEEDED, 5, 0);
}

TEST(the_default_probe_timeout_is_60_s)
{
    t_fix *f = t_due((cb_config){0});
    cb_ticket hung, t;
    CHECK(cb_allow(f->b, &hung));
    t_at_ns(f, 61000 * T_MS - 1);
    CHECK(!cb_allow(f->b, &t));
    CHECK_STATE(f->b, CB_HALF_OPEN);
    t_at_ms(f, 61000);
    CHECK(!cb_allow(f->b, &t));
    CHECK_STATE(f->b, CB_OPEN);
}

TEST(a_probe_timeout_survives_a_clock_that_goes_backwards)
{
    t_fix *f = t_due((cb_config){.probe_timeout_ms = 5000});
    cb_ticket hung, t;
    CHECK(cb_allow(f->b, &hung));
    t_at_ms(f, 0);
    CHECK(!cb_allow(f->b, &t));
    CHECK_STATE(f->b, CB_HALF_OPEN);
    t_at_ms(f, 6000);
    CHECK(!cb_allow(f->b, &t));
    CHECK_STATE(f->b, CB_OPEN);
}

TEST(a_slow_successful_probe_is_a_failed_probe)
{
    t_fix *f = t_due((cb_config){.slow_call_ms = 200});
    cb_ticket p;
    CHECK(cb_allow(f->b, &p));
    CHECK_EVENT(f, CB_OPEN, CB_HALF_OPEN, CB_REASON_OPEN_ELAPSED, 2, 0);
    t_at_ms(f, 1200);
    CHECK(cb_record(f->b, &p, S));
    CHECK_STATE(f->b, CB_OPEN);
    CHECK_EVENT(f, CB_HALF_OPEN, CB_OPEN, CB_REASON_PROBE_FAILED, 3, 1000);
    cb_stats s = t_stats(f->b);
    CHECK_EQ(s.slow, 1);
    CHECK_EQ(s.successes, 1);         /* counted as what the caller said, and as slow */

    t_at_ms(f, 2200);                 /* a probe just under the limit closes */
    CHECK(cb_allow(f->b, &p));
    t_at_ns(f, 2400 * T_MS - 1);
    CHECK(cb_record(f->b, &p, S));
    CHECK_STATE(f->b, CB_CLOSED);
}

TEST(probes_in_half_open_do_not_count_toward_the_closed_window)
{
    t_fix *f = t_due((cb_config){.half_open_calls = 3, .window_calls = 10,
                                 .failures_in_window = 10});
    cb_ticket p;
    for (int i = 0; i < 3; i++) {
        CHECK(cb_allow(f->b, &p));
        CHECK(cb_record(f->b, &p, S));
    }
    CHECK_STATE(f->b, CB_CLOSED);
    CHECK_EQ(t_stats(f->b).window_calls, 0);
}
