/* A quick multi-thread smoke test: 4 threads x 200k random calls on one breaker, tickets
   held across other calls, manual transitions from one thread, a shared clock that every
   call moves; then the accounting identity must hold exactly and the events must match the
   generation. Also: counter stripes when threads come and go, outnumber the stripes, or
   give theirs back. The heavy concurrency suite is tests/stress/. */
#define _POSIX_C_SOURCE 200809L   /* pthread_barrier_t */
#define CB_IMPLEMENTATION
#include "cb.h"
#include "tests/t.h"

#include <pthread.h>

#define THREADS 4
#define CALLS 200000
#define HELD 4

static _Atomic uint64_t t_now = T_T0;          /* the shared breaker clock */
static _Atomic uint64_t t_events_n, t_opens_n;

static uint64_t t_shared_clock(void *user)
{
    (void)user;
    return atomic_load_explicit(&t_now, memory_order_relaxed);
}

static void t_count_event(const cb_event *ev, void *user)
{
    (void)user;
    atomic_fetch_add_explicit(&t_events_n, 1, memory_order_relaxed);
    if (ev->to == CB_OPEN)
        atomic_fetch_add_explicit(&t_opens_n, 1, memory_order_relaxed);
}

typedef struct t_worker {
    cb_breaker *b;
    uint64_t seed;
    bool manual;                                /* this thread also flips states */
    uint64_t allows, admitted, counted[3], stale;
} t_worker;

static uint64_t t_rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void t_settle(t_worker *w, cb_ticket *t, cb_outcome o)
{
    if (cb_record(w->b, t, o))
        w->counted[o]++;
    else
        w->stale++;
}

static void *t_work(void *arg)
{
    static const cb_state manual[] = {CB_CLOSED, CB_OPEN, CB_HALF_OPEN, CB_FORCED_OPEN,
                                      CB_METRICS_ONLY};
    t_worker *w = arg;
    cb_ticket held[HELD];
    bool busy[HELD] = {false};
    for (int i = 0; i < CALLS; i++) {
        uint64_t r = t_rng(&w->seed);
        size_t slot = r % HELD;
        atomic_fetch_add_explicit(&t_now, 2000, memory_order_relaxed);   /* 2 us a call */
        if (w->manual && (r >> 16) % 5000 == 0)
            cb_set_state(w->b, manual[(r >> 32) % 5]);
        if (!busy[slot]) {
            w->allows++;
            busy[slot] = cb_allow(w->b, &held[slot]);
            w->admitted += busy[slot];
        } else {
            unsigned pick = (unsigned)(r >> 40) % 10;   /* 6 success, 3 failure, 1 ignored */
            t_settle(w, &held[slot], pick < 6 ? CB_SUCCESS : pick < 9 ? CB_FAILURE : CB_IGNORED);
            busy[slot] = false;
        }
    }
    for (size_t slot = 0; slot < HELD; slot++)
        if (busy[slot])
            t_settle(w, &held[slot], CB_SUCCESS);
    return NULL;
}

static void t_run(cb_config cfg)
{
    t_worker w[THREADS];
    pthread_t th[THREADS];
    cb_err err;
    cfg.clock_ns = t_shared_clock;
    cfg.on_event = t_count_event;
    atomic_store(&t_events_n, 0);
    atomic_store(&t_opens_n, 0);
    cb_breaker *b = cb_new(&cfg, &err);
    REQUIRE(b != NULL);
    for (int i = 0; i < THREADS; i++) {
        w[i] = (t_worker){.b = b, .seed = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1),
                          .manual = i == 0};
        REQUIRE(pthread_create(&th[i], NULL, t_work, &w[i]) == 0);
    }
    uint64_t allows = 0, admitted = 0, counted[3] = {0}, stale = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        allows += w[i].allows;
        admitted += w[i].admitted;
        stale += w[i].stale;
        for (int o = 0; o < 3; o++)
            counted[o] += w[i].counted[o];
    }
    cb_stats s;
    cb_stats_get(b, &s);
    CHECK_EQ(s.admitted + s.rejected, allows);
    CHECK_EQ(s.admitted, admitted);
    CHECK_EQ(s.admitted, s.successes + s.failures + s.ignored + s.stale);
    CHECK_EQ(s.successes, counted[CB_SUCCESS]);
    CHECK_EQ(s.failures, counted[CB_FAILURE]);
    CHECK_EQ(s.ignored, counted[CB_IGNORED]);
    CHECK_EQ(s.stale, stale);
    CHECK_EQ(s.in_flight, 0);
    CHECK_EQ(s.generation, atomic_load(&t_events_n));
    CHECK_EQ(s.opens, atomic_load(&t_opens_n));
    CHECK(s.opens > 10 && s.stale > 10 && s.rejected > 1000);   /* it did get around */
    cb_free(b);
}

TEST(four_threads_keep_the_accounting_identity_exact_with_a_count_window)
{
    t_run((cb_config){.name = "smoke", .window_calls = 50, .failure_rate = 0.5,
                      .half_open_calls = 3, .open_ms = 1, .probe_timeout_ms = 2});
}

TEST(four_threads_keep_it_exact_with_timed_calls_and_a_bulkhead)
{
    t_run((cb_config){.name = "smoke-slow", .window_ms = 20, .failure_rate = 0.5,
                      .slow_call_ms = 1, .slow_call_rate = 0.9, .max_concurrent = 5,
                      .half_open_calls = 2, .open_ms = 1, .probe_timeout_ms = 2,
                      .backoff = 2, .max_open_ms = 8, .jitter = 0.5});
}

/* ---- counter stripes ---- */

static pthread_barrier_t t_all_alive;

static void *t_thousand(void *arg)
{
    cb_breaker *b = arg;
    t_calls(b, CB_SUCCESS, 1000);
    return NULL;
}

static void *t_thousand_then_wait(void *arg)
{
    t_thousand(arg);
    pthread_barrier_wait(&t_all_alive);   /* every thread holds its stripe at once */
    return NULL;
}

static void *t_release_midway(void *arg)
{
    cb_breaker *b = arg;
    t_calls(b, CB_FAILURE, 500);
    cb_thread_release(b);
    t_calls(b, CB_FAILURE, 500);
    cb_thread_release(b);
    return NULL;
}

/* Runs `total` threads of fn, `batch` alive at a time; each makes 1000 calls. */
static void t_threads(cb_breaker *b, void *(*fn)(void *), int total, int batch)
{
    pthread_t th[128];
    for (int done = 0; done < total; done += batch) {
        for (int i = 0; i < batch; i++)
            REQUIRE(pthread_create(&th[i], NULL, fn, b) == 0);
        for (int i = 0; i < batch; i++)
            pthread_join(th[i], NULL);
    }
}

TEST(counters_stay_exact_when_threads_come_and_go_past_the_stripe_count)
{
    cb_breaker *b = cb_new(&(cb_config){.consecutive_failures = 1000000}, NULL);
    REQUIRE(b != NULL);
    t_threads(b, t_thousand, 4 * CB_STRIPES, 8);
    CHECK_COUNTERS(b, 4000 * CB_STRIPES, 0, 4000 * CB_STRIPES, 0, 0, 0);
    cb_free(b);
}

TEST(counters_stay_exact_with_more_live_threads_than_stripes)
{
    enum { LIVE = CB_STRIPES + 36 };
    cb_breaker *b = cb_new(&(cb_config){0}, NULL);
    REQUIRE(b != NULL && LIVE <= 128);
    pthread_barrier_init(&t_all_alive, NULL, LIVE);
    t_threads(b, t_thousand_then_wait, LIVE, LIVE);
    pthread_barrier_destroy(&t_all_alive);
    CHECK_COUNTERS(b, 1000 * LIVE, 0, 1000 * LIVE, 0, 0, 0);
    cb_free(b);
}

TEST(a_thread_that_gives_its_stripe_back_loses_no_count)
{
    cb_breaker *b = cb_new(&(cb_config){.consecutive_failures = 1000000}, NULL);
    REQUIRE(b != NULL);
    t_threads(b, t_release_midway, 32, 4);
    CHECK_COUNTERS(b, 32000, 0, 0, 32000, 0, 0);
    cb_free(b);
}
