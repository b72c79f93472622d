/* CLOSED -> OPEN -> HALF_OPEN -> CLOSED: the consecutive-failure rule, the open period
   (its exact end, whole-ms deadlines, backoff, cap, jitter), cb_retry_after_ms, a clock
   that goes backwards, and the cb_call decorator. Rate, count and slow rules are in
   test_windows.c; probe rounds in test_half_open.c. */
#define _POSIX_C_SOURCE 200809L   /* clock_gettime */
#define CB_IMPLEMENTATION
#define CB_TEST_HOOKS   /* cb__test_set_generation */
#include "cb.h"
#include "tests/t.h"

#include <time.h>

#define S CB_SUCCESS
#define F CB_FAILURE
#define I CB_IGNORED

TEST(a_new_breaker_is_closed_at_generation_zero)
{
    t_fix *f = t_new((cb_config){0});
    cb_stats s = t_stats(f->b);
    cb_event ev[4];
    CHECK_STATE(f->b, CB_CLOSED);
    CHECK_EQ(s.state, CB_CLOSED);
    CHECK_EQ(s.generation, 0);
    CHECK_COUNTERS(f->b, 0, 0, 0, 0, 0, 0);
    CHECK_EQ(s.opens, 0);
    CHECK_EQ(s.slow, 0);
    CHECK_EQ(s.consecutive_failures, 0);
    CHECK_EQ(s.in_flight, 0);
    CHECK_EQ(s.state_since_ns, T_T0);
    CHECK_EQ(s.last_failure_ns, 0);
    CHECK_EQ(cb_history(f->b, ev, 4), 0);
    CHECK_EQ(cb_retry_after_ms(f->b), 0);
    CHECK_NO_EVENT(f);
}

TEST(the_nth_failure_in_a_row_opens_with_reason_consecutive_failures)
{
    t_fix *f = t_new((cb_config){.consecutive_failures = 3, .open_ms = 1000});
    CHECK(t_call(f->b, F));
    CHECK(t_call(f->b, F));
    CHECK_STATE(f->b, CB_CLOSED);
    CHECK_EQ(t_stats(f->b).consecutive_failures, 2);
    CHECK_NO_EVENT(f);

    t_at_ms(f, 5);
    CHECK(t_call(f->b, F));
    CHECK_STATE(f->b, CB_OPEN);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_CONSECUTIVE_FAILURES, 1, 1000);
    CHECK_NO_EVENT(f);
    cb_stats s = t_stats(f->b);
    CHECK_EQ(s.generation, 1);
    CHECK_EQ(s.opens, 1);
    CHECK_COUNTERS(f->b, 3, 0, 0, 3, 0, 0);
    CHECK_EQ(s.state_since_ns, T_T0 + 5 * T_MS);
    CHECK_EQ(s.last_failure_ns, T_T0 + 5 * T_MS);
    CHECK_EQ(s.open_until_ns, T_T0 + 1005 * T_MS);
    CHECK_EQ(cb_retry_after_ms(f->b), 1000);
}

TEST(a_success_resets_the_failure_run)
{
    t_fix *f = t_new((cb_config){.consecutive_failures = 3});
    t_calls(f->b, F, 2);
    t_call(f->b, S);
    CHECK_EQ(t_stats(f->b).consecutive_failures, 0);
    t_calls(f->b, F, 2);
    CHECK_STATE(f->b, CB_CLOSED);
    CHECK_EQ(t_stats(f->b).consecutive_failures, 2);
    t_call(f->b, F);
    CHECK_STATE(f->b, CB_OPEN);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_CONSECUTIVE_FAILURES, 1, 60000);
}

TEST(an_ignored_outcome_leaves_the_failure_run_alone)
{
    t_fix *f = t_new((cb_config){.consecutive_failures = 3});
    t_calls(f->b, F, 2);
    t_call(f->b, I);
    CHECK_STATE(f->b, CB_CLOSED);
    CHECK_EQ(t_stats(f->b).consecutive_failures, 2);
    CHECK_COUNTERS(f->b, 3, 0, 0, 2, 1, 0);
    t_call(f->b, F);
    CHECK_STATE(f->b, CB_OPEN);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_CONSECUTIVE_FAILURES, 1, 60000);
}

TEST(with_every_rule_off_five_failures_in_a_row_open_for_60_s)
{
    t_fix *f = t_new((cb_config){0});
    t_calls(f->b, F, 4);
    CHECK_STATE(f->b, CB_CLOSED);
    t_call(f->b, F);
    CHECK_STATE(f->b, CB_OPEN);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_CONSECUTIVE_FAILURES, 1, 60000);
    CHECK_EQ(cb_retry_after_ms(f->b), 60000);
}

TEST(open_rejects_until_the_period_ends_and_the_first_allow_at_the_end_probes)
{
    t_fix *f = t_new((cb_config){.consecutive_failures = 1, .open_ms = 1000});
    cb_ticket t;
    t_call(f->b, F);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_CONSECUTIVE_FAILURES, 1, 1000);

    t_at_ns(f, 1000 * T_MS - 1);
    CHECK(!cb_allow(f->b, &t));
    CHECK_STATE(f->b, CB_OPEN);
    CHECK_NO_EVENT(f);
    CHECK_COUNTERS(f->b, 1, 1, 0, 1, 0, 0);
    CHECK_EQ(cb_retry_after_ms(f->b), 1);

    t_at_ms(f, 1000);
    CHECK_EQ(cb_retry_after_ms(f->b), 0);
    CHECK(cb_allow(f->b, &t));
    CHECK_STATE(f->b, CB_HALF_OPEN);
    CHECK_EVENT(f, CB_OPEN, CB_HALF_OPEN, CB_REASON_OPEN_ELAPSED, 2, 0);
    CHECK_COUNTERS(f->b, 2, 1, 0, 1, 0, 0);
    CHECK_EQ(t_stats(f->b).in_flight, 1);

    CHECK(cb_record(f->b, &t, S));
    CHECK_STATE(f->b, CB_CLOSED);
    CHECK_EVENT(f, CB_HALF_OPEN, CB_CLOSED, CB_REASON_PROBES_SUCCEEDED, 3, 0);
    CHECK_NO_EVENT(f);
    CHECK_EQ(t_stats(f->b).generation, 3);
    CHECK_EQ(t_stats(f->b).in_flight, 0);
}

TEST(deadlines_are_whole_ms_rounded_up)
{
    t_fix *f = t_new((cb_config){.consecutive_failures = 1, .open_ms = 1000});
    cb_ticket t;
    t_at_ns(f, T_MS / 2);
    t_call(f->b, F);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_CONSECUTIVE_FAILURES, 1, 1000);
    CHECK_EQ(t_stats(f->b).open_until_ns, T_T0 + 1001 * T_MS);
    CHECK_EQ(cb_retry_after_ms(f->b), 1000);   /* 1000.5 ms left: never more than the period */

    t_at_ns(f, 1000 * T_MS + T_MS / 2);          /* a full period later: not due yet */
    CHECK(!cb_allow(f->b, &t));
    t_at_ns(f, 1001 * T_MS - 1);
    CHECK(!cb_allow(f->b, &t));
    CHECK_STATE(f->b, CB_OPEN);
    t_at_ms(f, 1001);
    CHECK(cb_allow(f->b, &t));
    CHECK_EVENT(f, CB_OPEN, CB_HALF_OPEN, CB_REASON_OPEN_ELAPSED, 2, 0);
}

TEST(retry_after_counts_down_in_whole_ms_and_is_zero_outside_open)
{
    t_fix *f = t_new((cb_config){.consecutive_failures = 1, .open_ms = 1000,
                                 .half_open_calls = 2});
    cb_ticket t;
    CHECK_EQ(cb_retry_after_ms(f->b), 0);
    t_call(f->b, F);
    CHECK_EQ(cb_retry_after_ms(f->b), 1000);
    t_at_ns(f, 1);
    CHECK_EQ(cb_retry_after_ms(f->b), 1000);
    t_at_ms(f, 1);
    CHECK_EQ(cb_retry_after_ms(f->b), 999);
    t_at_ns(f, 999 * T_MS + 1);
    CHECK_EQ(cb_retry_after_ms(f->b), 1);
    t_at_ms(f, 5000);                 /* due, but no cb_allow came: stored state is OPEN */
    CHECK_EQ(cb_retry_after_ms(f->b), 0);
    CHECK(cb_allow(f->b, &t));
    CHECK_STATE(f->b, CB_HALF_OPEN);
    CHECK_EQ(cb_retry_after_ms(f->b), 0);
}

TEST(get_state_and_stats_perform_no_transition)
{
    t_fix *f = t_new((cb_config){.consecutive_failures = 1, .open_ms = 1000});
    cb_event ev[4];
    t_call(f->b, F);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_CONSECUTIVE_FAILURES, 1, 1000);
    t_at_ms(f, 10000);
    CHECK_STATE(f->b, CB_OPEN);
    CHECK_EQ(t_stats(f->b).state, CB_OPEN);
    CHECK_EQ(t_stats(f->b).generation, 1);
    CHECK_EQ(cb_history(f->b, ev, 4), 1);
    CHECK_NO_EVENT(f);
}

/* Opens the breaker from HALF_OPEN by a failed probe at the moment it is due, and checks
   the period chosen; the breaker must be OPEN with its period ending at `due_ms`. */
static void t_reopen(t_fix *f, uint64_t *due_ms, uint64_t gen, uint64_t expect_ms)
{
    cb_ticket t;
    t_at_ms(f, *due_ms);
    CHECK(cb_allow(f->b, &t));
    CHECK_EVENT(f, CB_OPEN, CB_HALF_OPEN, CB_REASON_OPEN_ELAPSED, gen, 0);
    CHECK(cb_record(f->b, &t, F));
    CHECK_EVENT(f, CB_HALF_OPEN, CB_OPEN, CB_REASON_PROBE_FAILED, gen + 1, expect_ms);
    *due_ms += expect_ms;
    CHECK_EQ(t_stats(f->b).open_until_ns, T_T0 + *due_ms * T_MS);
}

TEST(backoff_multiplies_the_period_up_to_the_cap_and_a_close_resets_it)
{
    t_fix *f = t_new((cb_config){.consecutive_failures = 1, .open_ms = 1000, .backoff = 2,
                                 .max_open_ms = 5000});
    static const uint64_t periods[] = {2000, 4000, 5000, 5000};
    uint64_t due = 1000, gen = 2;
    cb_ticket t;
    t_call(f->b, F);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_CONSECUTIVE_FAILURES, 1, 1000);
    for (size_t i = 0; i < sizeof periods / sizeof periods[0]; i++, gen += 2)
        t_reopen(f, &due, gen, periods[i]);

    t_at_ms(f, due);
    CHECK(cb_allow(f->b, &t));
    CHECK(cb_record(f->b, &t, S));
    CHECK_STATE(f->b, CB_CLOSED);
    t_call(f->b, F);
    CHECK_EVENT(f, CB_OPEN, CB_HALF_OPEN, CB_REASON_OPEN_ELAPSED, gen, 0);
    CHECK_EVENT(f, CB_HALF_OPEN, CB_CLOSED, CB_REASON_PROBES_SUCCEEDED, gen + 1, 0);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_CONSECUTIVE_FAILURES, gen + 2, 1000);
    CHECK_EQ(t_stats(f->b).opens, 6);
}

TEST(fractional_backoff_floors_each_period_and_the_default_cap_is_ten_open_periods)
{
    t_fix *f = t_new((cb_config){.consecutive_failures = 1, .open_ms = 1000, .backoff = 1.5});
    /* 1000 * 1.5^k: 1500, 2250, 3375, 5062.5, 7593.75, 11390.6 -> cap 10000 */
    static const uint64_t periods[] = {1500, 2250, 3375, 5062, 7593, 10000, 10000};
    uint64_t due = 1000, gen = 2;
    t_call(f->b, F);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_CONSECUTIVE_FAILURES, 1, 1000);
    for (size_t i = 0; i < sizeof periods / sizeof periods[0]; i++, gen += 2)
        t_reopen(f, &due, gen, periods[i]);
}

TEST(reset_clears_the_backoff_step)
{
    t_fix *f = t_new((cb_config){.consecutive_failures = 1, .open_ms = 1000, .backoff = 3});
    uint64_t due = 1000;
    t_call(f->b, F);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_CONSECUTIVE_FAILURES, 1, 1000);
    t_reopen(f, &due, 2, 3000);
    t_reopen(f, &due, 4, 9000);
    cb_reset(f->b);
    CHECK_STATE(f->b, CB_CLOSED);
    CHECK_EVENT(f, CB_OPEN, CB_CLOSED, CB_REASON_MANUAL, 6, 0);
    t_call(f->b, F);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_CONSECUTIVE_FAILURES, 7, 1000);
}

/* The jitter rule of docs/semantics.md, written out independently. */
static uint64_t t_splitmix64(uint64_t x)
{
    uint64_t z = x + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t t_jittered(double base_ms, double jitter, uint64_t seed, uint64_t gen)
{
    double u = (double)(t_splitmix64(seed ^ (gen * 0x9E3779B97F4A7C15ull)) >> 11) * 0x1p-53;
    double p = base_ms * (1 - jitter * u);
    return p < 1 ? 1 : (uint64_t)p;
}

/* Trips, then fails `n` probes in a row; stores the open periods chosen. */
static void t_open_periods(cb_config cfg, uint64_t *out, int n)
{
    t_fix *f = t_new(cfg);
    uint64_t due = 0;
    cb_ticket t;
    t_call(f->b, F);
    for (int i = 0; i <= n; i++) {
        const cb_event *e = &f->events.ev[f->events.n - 1];
        out[i] = e->to == CB_OPEN ? e->open_ms : 0;
        if (i == n)
            break;
        due += out[i];
        t_at_ms(f, due);
        if (cb_allow(f->b, &t))
            cb_record(f->b, &t, F);
    }
}

TEST(jitter_follows_the_documented_formula_for_a_seed_and_generation)
{
    cb_config cfg = {.consecutive_failures = 1, .open_ms = 1000, .backoff = 2,
                     .max_open_ms = 100000, .jitter = 0.5, .seed = 12345};
    uint64_t got[6];
    t_open_periods(cfg, got, 5);
    for (int k = 0; k <= 5; k++)   /* the k-th open enters generation 1 + 2k */
        CHECK_EQ(got[k], t_jittered(1000.0 * (1 << k), 0.5, 12345, 1 + 2 * (uint64_t)k));
}

TEST(jitter_is_deterministic_for_a_seed_and_draws_from_1_minus_jitter_to_1)
{
    cb_config cfg = {.consecutive_failures = 1, .open_ms = 1000, .jitter = 0.25};
    uint64_t a[4], b[4], lowest = 1000, highest = 0;
    for (uint64_t seed = 1; seed <= 200; seed++) {
        cfg.seed = seed;
        cfg.name = "one";
        t_open_periods(cfg, a, 3);
        cfg.name = "two";
        t_open_periods(cfg, b, 3);
        for (int i = 0; i < 4; i++) {
            CHECK_EQ(a[i], b[i]);
            CHECK(a[i] >= 750 && a[i] <= 1000);
            lowest = a[i] < lowest ? a[i] : lowest;
            highest = a[i] > highest ? a[i] : highest;
        }
    }
    CHECK(lowest < 760);     /* the draws cover the range */
    CHECK(highest > 990);
}

/* Replicas of one service (one name) must not probe in lockstep: with seed 0 each
   breaker draws its own, and its periods differ; an explicit seed repeats exactly. */
TEST(replicas_of_one_name_draw_their_own_seeds_and_an_explicit_one_repeats)
{
    cb_config cfg = {.name = "redis", .consecutive_failures = 1, .open_ms = 100000, .jitter = 0.5};
    uint64_t a[4], b[4], c[4], d[4];
    t_open_periods(cfg, a, 3);
    t_open_periods(cfg, b, 3);
    CHECK(memcmp(a, b, sizeof a) != 0);   /* equal by chance: 1 in ~50000^3 */
    cb_config resolved = {.seed = 1};
    CHECK_EQ(cb_config_resolve(&cfg, &resolved, NULL, 0), CB_OK);
    CHECK_EQ(resolved.seed, 0);           /* drawn when a breaker is made, not here */
    cb_config got_f, got_g;
    cb_config_get(t_new(cfg)->b, &got_f);
    cb_config_get(t_new(cfg)->b, &got_g);
    CHECK(got_f.seed != 0 && got_g.seed != 0 && got_f.seed != got_g.seed);
    cfg.seed = got_f.seed;                /* the drawn seed, given back, repeats its periods */
    t_open_periods(cfg, c, 3);
    t_open_periods(cfg, d, 3);
    CHECK(memcmp(c, d, sizeof c) == 0);
}

TEST(a_clock_that_goes_backwards_does_not_shorten_or_lengthen_the_period)
{
    t_fix *f = t_new((cb_config){.consecutive_failures = 1, .open_ms = 1000});
    cb_ticket t;
    t_at_ms(f, 10000);
    t_call(f->b, F);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_CONSECUTIVE_FAILURES, 1, 1000);
    t_at_ms(f, 0);                       /* 10 s back */
    CHECK(!cb_allow(f->b, &t));
    CHECK_EQ(cb_retry_after_ms(f->b), 1000);
    CHECK_STATE(f->b, CB_OPEN);
    t_at_ns(f, 11000 * T_MS - 1);
    CHECK(!cb_allow(f->b, &t));
    t_at_ms(f, 11000);
    CHECK(cb_allow(f->b, &t));
    CHECK_EVENT(f, CB_OPEN, CB_HALF_OPEN, CB_REASON_OPEN_ELAPSED, 2, 0);
}

TEST(the_generation_wraps_modulo_2_to_the_32_and_old_tickets_still_go_stale)
{
    t_fix *f = t_new((cb_config){.consecutive_failures = 2, .open_ms = 1000});
    cb_ticket old, t;
    cb__test_set_generation(f->b, UINT32_MAX);
    CHECK_EQ(t_stats(f->b).generation, UINT32_MAX);
    CHECK(cb_allow(f->b, &old));
    t_calls(f->b, F, 2);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_CONSECUTIVE_FAILURES, 0, 1000);
    CHECK_EQ(t_stats(f->b).generation, 0);
    CHECK(!cb_record(f->b, &old, S));
    t_at_ms(f, 1000);
    CHECK(cb_allow(f->b, &t));
    CHECK(cb_record(f->b, &t, S));
    CHECK_EVENT(f, CB_OPEN, CB_HALF_OPEN, CB_REASON_OPEN_ELAPSED, 1, 0);
    CHECK_EVENT(f, CB_HALF_OPEN, CB_CLOSED, CB_REASON_PROBES_SUCCEEDED, 2, 0);
    CHECK_COUNTERS(f->b, 4, 0, 1, 2, 0, 1);
}

static uint64_t t_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

TEST(on_the_default_clock_the_open_period_is_never_cut_short)
{
    cb_breaker *b = cb_new(&(cb_config){.consecutive_failures = 1, .open_ms = 30}, NULL);
    cb_ticket t;
    REQUIRE(b != NULL);
    uint64_t opened = t_mono_ns();           /* no later than the trip: never a false alarm */
    t_call(b, F);
    CHECK(cb_retry_after_ms(b) <= 31);       /* the deadline is rounded up to a whole ms */
    while (!cb_allow(b, &t) && t_mono_ns() - opened < 5000 * T_MS)
        ;
    uint64_t waited = t_mono_ns() - opened;
    CHECK_STATE(b, CB_HALF_OPEN);
    CHECK(waited >= 30 * T_MS);
    cb_free(b);
}

static int t_fn_calls;
static int t_fn(void *arg)
{
    t_fn_calls++;
    return *(int *)arg;
}

TEST(cb_call_runs_the_function_and_records_zero_as_success_else_failure)
{
    t_fix *f = t_new((cb_config){.consecutive_failures = 2, .open_ms = 1000});
    int ok = 0, bad = 7, rc = -1;
    t_fn_calls = 0;
    CHECK(cb_call(f->b, t_fn, &ok, &rc));
    CHECK_EQ(rc, 0);
    CHECK_COUNTERS(f->b, 1, 0, 1, 0, 0, 0);
    CHECK(cb_call(f->b, t_fn, &bad, &rc));
    CHECK_EQ(rc, 7);
    CHECK(cb_call(f->b, t_fn, &bad, NULL));
    CHECK_COUNTERS(f->b, 3, 0, 1, 2, 0, 0);
    CHECK_STATE(f->b, CB_OPEN);
    CHECK_EQ(t_fn_calls, 3);

    rc = -1;
    CHECK(!cb_call(f->b, t_fn, &ok, &rc));   /* rejected: fn does not run */
    CHECK_EQ(t_fn_calls, 3);
    CHECK_EQ(rc, -1);
    CHECK_COUNTERS(f->b, 3, 1, 1, 2, 0, 0);
}
