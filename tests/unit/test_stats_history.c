/* cb_stats_get (every field), cb_history (at least 16 transitions, oldest first, the same
   events on_event saw) and the exactly-once accounting identity over a long random run. */
#define CB_IMPLEMENTATION
#include "cb.h"
#include "tests/t.h"

#define S CB_SUCCESS
#define F CB_FAILURE
#define I CB_IGNORED

TEST(stats_report_every_field_after_a_known_sequence)
{
    t_fix *f = t_new((cb_config){.window_calls = 8, .failures_in_window = 3,
                                 .slow_call_ms = 10, .open_ms = 2000});
    cb_ticket held, t;
    CHECK(cb_allow(f->b, &held));                  /* stays in flight */
    t_at_ms(f, 1);
    t_calls(f->b, S, 3);
    t_call(f->b, I);
    t_at_ms(f, 2);
    t_call(f->b, F);
    CHECK(cb_allow(f->b, &t));
    t_at_ms(f, 40);
    cb_record(f->b, &t, F);                        /* slow failure at 40 ms */
    cb_stats s = t_stats(f->b);
    CHECK_EQ(s.state, CB_CLOSED);
    CHECK_EQ(s.generation, 0);
    CHECK_COUNTERS(f->b, 7, 0, 3, 2, 1, 0);
    CHECK_EQ(s.slow, 1);
    CHECK_EQ(s.opens, 0);
    CHECK_EQ(s.consecutive_failures, 2);
    CHECK_EQ(s.window_calls, 5);
    CHECK_EQ(s.window_failures, 2);
    CHECK_EQ(s.window_slow, 1);
    CHECK_EQ(s.in_flight, 1);
    CHECK_EQ(s.last_failure_ns, T_T0 + 40 * T_MS);

    t_at_ms(f, 50);
    t_call(f->b, F);                               /* third failure in the window */
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_FAILURE_COUNT, 1, 2000);
    t_call(f->b, S);                               /* rejected */
    s = t_stats(f->b);
    CHECK_EQ(s.state, CB_OPEN);
    CHECK_EQ(s.generation, 1);
    CHECK_COUNTERS(f->b, 8, 1, 3, 3, 1, 0);
    CHECK_EQ(s.opens, 1);
    CHECK_EQ(s.state_since_ns, T_T0 + 50 * T_MS);
    CHECK_EQ(s.last_failure_ns, T_T0 + 50 * T_MS);
    CHECK_EQ(s.open_until_ns, T_T0 + 2050 * T_MS);
    CHECK_EQ(s.in_flight, 1);

    CHECK(!cb_record(f->b, &held, S));
    s = t_stats(f->b);
    CHECK_EQ(s.stale, 1);
    CHECK_EQ(s.in_flight, 0);
}

TEST(history_is_empty_before_the_first_transition)
{
    t_fix *f = t_new((cb_config){0});
    cb_event ev[64];
    CHECK_EQ(cb_history(f->b, ev, 64), 0);
    CHECK_EQ(cb_history(f->b, NULL, 0), 0);
}

static void t_check_same_event(const cb_event *a, const cb_event *b)
{
    CHECK_EQ(a->from, b->from);
    CHECK_EQ(a->to, b->to);
    CHECK_EQ(a->reason, b->reason);
    CHECK_EQ(a->generation, b->generation);
    CHECK_EQ(a->at_ns, b->at_ns);
    if (a->to == CB_OPEN)
        CHECK_EQ(a->open_ms, b->open_ms);
    CHECK_STR(a->name, b->name);
}

TEST(history_keeps_at_least_16_transitions_oldest_first_as_on_event_saw_them)
{
    t_fix *f = t_new((cb_config){.name = "hist", .consecutive_failures = 1, .open_ms = 10});
    static const cb_state manual[] = {CB_OPEN, CB_FORCED_OPEN, CB_DISABLED,
                                      CB_METRICS_ONLY, CB_HALF_OPEN, CB_CLOSED};
    cb_event ev[64];
    cb_ticket t;
    for (uint64_t i = 0; i < 20; i++) {            /* 20 automatic + 20 manual transitions */
        t_at_ms(f, 100 * i);
        t_call(f->b, F);                           /* CLOSED -> OPEN */
        t_at_ms(f, 100 * i + 10);
        CHECK(cb_allow(f->b, &t));                 /* OPEN -> HALF_OPEN */
        cb_record(f->b, &t, I);
        cb_set_state(f->b, manual[i % 6]);
        cb_set_state(f->b, CB_CLOSED);
        t_at_ms(f, 100 * i + 20);
    }
    REQUIRE(f->events.n == 80);
    size_t n = cb_history(f->b, ev, 64);
    CHECK(n >= 16 && n <= 64);
    for (size_t i = 0; i < n; i++)
        t_check_same_event(&ev[i], &f->events.ev[f->events.n - n + i]);
    CHECK_EQ(ev[n - 1].generation, t_stats(f->b).generation);
    CHECK_STR(ev[0].name, "hist");

    /* fewer slots than kept: the newest that fit, still oldest first */
    CHECK_EQ(cb_history(f->b, ev, 5), 5);
    for (size_t i = 0; i < 5; i++)
        t_check_same_event(&ev[i], &f->events.ev[75 + i]);
}

TEST(history_entries_carry_the_period_chosen)
{
    t_fix *f = t_new((cb_config){.consecutive_failures = 1, .open_ms = 300, .backoff = 2});
    cb_event ev[8];
    cb_ticket t;
    t_call(f->b, F);
    t_at_ms(f, 300);
    cb_allow(f->b, &t);
    cb_record(f->b, &t, F);
    REQUIRE(cb_history(f->b, ev, 8) == 3);
    CHECK_EQ(ev[0].open_ms, 300);
    CHECK_EQ(ev[0].at_ns, T_T0);
    CHECK_EQ(ev[0].reason, CB_REASON_CONSECUTIVE_FAILURES);
    CHECK_EQ(ev[1].reason, CB_REASON_OPEN_ELAPSED);
    CHECK_EQ(ev[1].at_ns, T_T0 + 300 * T_MS);
    CHECK_EQ(ev[2].open_ms, 600);
    CHECK_EQ(ev[2].reason, CB_REASON_PROBE_FAILED);
    CHECK_EQ(ev[2].generation, 3);
}

static uint64_t t_rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Random calls, held tickets, clock jumps and manual transitions (not DISABLED, which
   the identity leaves aside); every cb_allow and cb_record result is tallied here. */
TEST(the_accounting_identity_holds_exactly_over_a_long_random_run)
{
    t_fix *f = t_new((cb_config){.window_calls = 20, .failure_rate = 0.5,
                                 .consecutive_failures = 4, .slow_call_ms = 3,
                                 .half_open_calls = 3, .open_ms = 5, .backoff = 1.5,
                                 .max_open_ms = 40, .probe_timeout_ms = 20,
                                 .max_concurrent = 6});
    enum { HELD = 8 };
    cb_ticket held[HELD];
    bool busy[HELD] = {false};
    uint64_t rng = 88172645463325252ull, allows = 0, admitted = 0, counted[3] = {0},
             stale = 0;
    static const cb_state manual[] = {CB_CLOSED, CB_OPEN, CB_HALF_OPEN, CB_FORCED_OPEN,
                                      CB_METRICS_ONLY};
    for (int i = 0; i < 200000; i++) {
        uint64_t r = t_rng(&rng);
        size_t slot = r % HELD;
        f->clock.ns += (r >> 8) % 4 == 0 ? (r >> 12) % (2 * T_MS) : 0;
        if ((r >> 20) % 1000 == 0)
            cb_set_state(f->b, manual[(r >> 30) % 5]);
        if (!busy[slot]) {
            allows++;
            busy[slot] = cb_allow(f->b, &held[slot]);
            admitted += busy[slot];
        } else {
            cb_outcome o = (cb_outcome)((r >> 40) % 3);
            if (cb_record(f->b, &held[slot], o))
                counted[o]++;
            else
                stale++;
            busy[slot] = false;
        }
    }
    for (size_t slot = 0; slot < HELD; slot++)
        if (busy[slot]) {
            if (cb_record(f->b, &held[slot], S))
                counted[S]++;
            else
                stale++;
        }
    cb_stats s = t_stats(f->b);
    CHECK_EQ(s.admitted + s.rejected, allows);
    CHECK_EQ(s.admitted, admitted);
    CHECK_EQ(s.admitted, s.successes + s.failures + s.ignored + s.stale);
    CHECK_EQ(s.successes, counted[S]);
    CHECK_EQ(s.failures, counted[F]);
    CHECK_EQ(s.ignored, counted[I]);
    CHECK_EQ(s.stale, stale);
    CHECK_EQ(s.in_flight, 0);
    CHECK_EQ(s.generation, f->events.n);
    CHECK(s.opens > 100 && s.stale > 100 && s.rejected > 1000);  /* the run did explore */
    CHECK_EQ(s.opens, f->events.into[CB_OPEN]);
}

/* on_event runs outside any critical section: it may read the breaker, which already
   shows the new state, and may even make the next transition itself. */
static struct {
    cb_breaker *b;
    int calls;
    cb_state seen_state[2];   /* what each delivery read back, in delivery order */
    uint64_t seen_gen[2];
} t_reentry;

static void t_reentrant(const cb_event *ev, void *user)
{
    cb_stats s;
    char json[1024];
    (void)user;
    int i = t_reentry.calls++ & 1;
    cb_stats_get(t_reentry.b, &s);
    t_reentry.seen_state[i] = cb_get_state(t_reentry.b);
    t_reentry.seen_gen[i] = s.generation;
    CHECK(cb_format_json(t_reentry.b, json, sizeof json) > 0);
    if (ev->to == CB_OPEN && ev->reason != CB_REASON_MANUAL)
        cb_set_state(t_reentry.b, CB_FORCED_OPEN);    /* an operator hook pinning it open */
}

TEST(on_event_sees_the_new_state_and_may_call_back_into_the_breaker)
{
    cb_err err;
    t_reentry.calls = 0;
    t_reentry.b = cb_new(&(cb_config){.consecutive_failures = 1, .on_event = t_reentrant},
                         &err);
    REQUIRE(t_reentry.b != NULL);
    CHECK(t_call(t_reentry.b, CB_FAILURE));
    CHECK_EQ(t_reentry.calls, 2);
    CHECK_STATE(t_reentry.b, CB_FORCED_OPEN);
    CHECK_EQ(t_reentry.seen_state[0], CB_OPEN);
    CHECK_EQ(t_reentry.seen_gen[0], 1);
    CHECK_EQ(t_reentry.seen_state[1], CB_FORCED_OPEN);   /* the nested delivery */
    CHECK_EQ(t_reentry.seen_gen[1], 2);
    cb_event ev[4];
    REQUIRE(cb_history(t_reentry.b, ev, 4) == 2);
    CHECK_EQ(ev[0].to, CB_OPEN);
    CHECK_EQ(ev[1].to, CB_FORCED_OPEN);
    cb_free(t_reentry.b);
}
