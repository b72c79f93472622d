/* t.h - the unit-test harness of cb.h: tests register themselves with TEST(name), checks
   report file:line and both values and let the test go on, and main() runs every test in
   file order (or those whose name contains argv[1]) and ends with "N passed, N failed"
   (exit status 1 on any failure).

   Include after cb.h. Also here: a fake clock the tests move by hand, an event recorder,
   and a fixture that wires both into a breaker, so a test reads as: configure, move the
   clock, call, assert the exact state, reason, generation and counters. */
#ifndef T_H
#define T_H

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T_MS 1000000ull     /* ns per ms */
#define T_T0 1000000000000ull /* fake clock at the start of each test: 1000 s, a whole second */

/* Helpers a test file may not use. */
#define T_HELPER __attribute__((unused)) static

/* ---- registration and runner ---- */

typedef void (*t__fn)(void);
static struct t__test { const char *name; t__fn fn; int line; } t__tests[256];
static int t__ntests;
static const char *t__current;
static int t__check_failures;

static void t__add(const char *name, t__fn fn, int line)
{
    if (t__ntests == (int)(sizeof t__tests / sizeof t__tests[0])) {
        fprintf(stderr, "t.h: too many tests\n");
        exit(2);
    }
    t__tests[t__ntests++] = (struct t__test){name, fn, line};
}

/* Constructors run in no promised order; the line number restores file order. */
#define TEST(name)                                                        \
    static void name(void);                                               \
    __attribute__((constructor)) static void t__reg_##name(void)          \
    {                                                                     \
        t__add(#name, name, __LINE__);                                    \
    }                                                                     \
    static void name(void)

__attribute__((format(printf, 3, 4)))
static void t__fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%d: %s: ", file, line, t__current);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    t__check_failures++;
}

static int t__by_line(const void *a, const void *b)
{
    return ((const struct t__test *)a)->line - ((const struct t__test *)b)->line;
}

/* `test_x word` runs only the tests whose name contains word. */
int main(int argc, char **argv)
{
    int passed = 0, failed = 0;
    qsort(t__tests, (size_t)t__ntests, sizeof t__tests[0], t__by_line);
    for (int i = 0; i < t__ntests; i++) {
        int before = t__check_failures;
        if (argc > 1 && !strstr(t__tests[i].name, argv[1]))
            continue;
        t__current = t__tests[i].name;
        t__tests[i].fn();
        if (t__check_failures == before)
            passed++;
        else
            failed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}

/* ---- checks: report and go on; REQUIRE returns from the test ---- */

#define CHECK(c)                                                          \
    do {                                                                  \
        if (!(c))                                                         \
            t__fail(__FILE__, __LINE__, "CHECK(%s)", #c);                 \
    } while (0)

#define REQUIRE(c)                                                        \
    do {                                                                  \
        if (!(c)) {                                                       \
            t__fail(__FILE__, __LINE__, "REQUIRE(%s)", #c);               \
            return;                                                       \
        }                                                                 \
    } while (0)

/* Integers of any type (enums, bools, sizes, counters) compare as uint64_t. */
#define CHECK_EQ(a, b)                                                    \
    do {                                                                  \
        uint64_t t__a = (uint64_t)(a), t__b = (uint64_t)(b);              \
        if (t__a != t__b)                                                 \
            t__fail(__FILE__, __LINE__, "CHECK_EQ(%s, %s): %" PRIu64      \
                    " != %" PRIu64, #a, #b, t__a, t__b);                  \
    } while (0)

#define CHECK_STR(a, b)                                                   \
    do {                                                                  \
        const char *t__a = (a), *t__b = (b);                              \
        if (!t__a || !t__b || strcmp(t__a, t__b) != 0)                    \
            t__fail(__FILE__, __LINE__, "CHECK_STR(%s, %s): \"%s\" != \"%s\"", \
                    #a, #b, t__a ? t__a : "(null)", t__b ? t__b : "(null)"); \
    } while (0)

#define CHECK_CONTAINS(hay, needle)                                       \
    do {                                                                  \
        const char *t__h = (hay), *t__n = (needle);                       \
        if (!t__h || !strstr(t__h, t__n))                                 \
            t__fail(__FILE__, __LINE__, "CHECK_CONTAINS(%s, %s): \"%s\" lacks \"%s\"", \
                    #hay, #needle, t__h ? t__h : "(null)", t__n);         \
    } while (0)

#define CHECK_STATE(b, s)                                                 \
    do {                                                                  \
        cb_state t__a = cb_get_state(b), t__b = (s);                      \
        if (t__a != t__b)                                                 \
            t__fail(__FILE__, __LINE__, "state is %s, expected %s",       \
                    cb_state_name(t__a), cb_state_name(t__b));            \
    } while (0)

/* The cumulative counters, all at once. */
#define CHECK_COUNTERS(b, adm, rej, suc, fail, ign, stl)                  \
    do {                                                                  \
        cb_stats t__s;                                                    \
        cb_stats_get(b, &t__s);                                           \
        CHECK_EQ(t__s.admitted, adm);                                     \
        CHECK_EQ(t__s.rejected, rej);                                     \
        CHECK_EQ(t__s.successes, suc);                                    \
        CHECK_EQ(t__s.failures, fail);                                    \
        CHECK_EQ(t__s.ignored, ign);                                      \
        CHECK_EQ(t__s.stale, stl);                                        \
    } while (0)

/* ---- fake clock: the breaker clock is whatever the test sets; reads are counted ---- */

typedef struct t_clock {
    uint64_t ns;
    unsigned long reads;
} t_clock;

T_HELPER uint64_t t_clock_read(void *user)
{
    t_clock *c = (t_clock *)user;
    c->reads++;
    return c->ns;
}

/* ---- event recorder: on_event appends a copy ---- */

#define T_MAX_EVENTS 1024
typedef struct t_events {
    cb_event ev[T_MAX_EVENTS];
    size_t n;      /* events delivered (even past T_MAX_EVENTS) */
    size_t seen;   /* events already checked by CHECK_EVENT */
    size_t into[CB_METRICS_ONLY + 1];   /* events delivered, by the state entered */
} t_events;

T_HELPER void t_events_on(const cb_event *ev, void *user)
{
    t_events *r = (t_events *)user;
    if (r->n < T_MAX_EVENTS)
        r->ev[r->n] = *ev;
    r->n++;
    r->into[ev->to]++;
}

/* ---- fixture: a breaker on the fake clock with the recorder; static, one per test ---- */

typedef struct t_fix {
    cb_breaker *b;
    t_clock clock;
    t_events events;
    const char *name;
} t_fix;

static t_fix t_fixture;

/* Frees the previous test's breaker, then makes a new one from cfg at time T_T0. */
T_HELPER t_fix *t_new(cb_config cfg)
{
    t_fix *f = &t_fixture;
    cb_err err = CB_EINVAL;
    cb_free(f->b);
    memset(f, 0, sizeof *f);
    f->clock.ns = T_T0;
    cfg.clock_ns = t_clock_read;
    cfg.clock_user = &f->clock;
    cfg.on_event = t_events_on;
    cfg.user = &f->events;
    f->name = cfg.name ? cfg.name : "breaker";
    f->b = cb_new(&cfg, &err);
    if (!f->b || err != CB_OK) {
        char msg[256] = "";
        cb_config_check(&cfg, msg, sizeof msg);
        fprintf(stderr, "%s: t_new: cb_new failed: %s: %s\n", t__current, cb_strerror(err), msg);
        exit(2);
    }
    return f;
}

/* Move the fake clock to T_T0 + ms (+ ns). */
T_HELPER void t_at_ms(t_fix *f, uint64_t ms) { f->clock.ns = T_T0 + ms * T_MS; }
T_HELPER void t_at_ns(t_fix *f, uint64_t ns) { f->clock.ns = T_T0 + ns; }

T_HELPER cb_stats t_stats(const cb_breaker *b)
{
    cb_stats s;
    cb_stats_get(b, &s);
    return s;
}

/* The next unchecked event is this transition, made at the clock's current time by the
   fixture's breaker. open_ms is checked only when it enters OPEN. */
#define CHECK_EVENT(f, from, to, reason, gen, open_ms)                    \
    t__check_event(__FILE__, __LINE__, f, from, to, reason, gen, open_ms)

T_HELPER void t__check_event(const char *file, int line, t_fix *f, cb_state from, cb_state to,
                           cb_reason reason, uint64_t gen, uint64_t open_ms)
{
    if (f->events.seen >= f->events.n) {
        t__fail(file, line, "expected event %s -> %s (%s), none came", cb_state_name(from),
                cb_state_name(to), cb_reason_name(reason));
        return;
    }
    const cb_event *e = &f->events.ev[f->events.seen++];
    if (e->from != from || e->to != to || e->reason != reason || e->generation != gen)
        t__fail(file, line, "event is %s -> %s (%s) gen %" PRIu64 ", expected %s -> %s (%s) gen %" PRIu64,
                cb_state_name(e->from), cb_state_name(e->to), cb_reason_name(e->reason),
                e->generation, cb_state_name(from), cb_state_name(to),
                cb_reason_name(reason), gen);
    if (e->at_ns != f->clock.ns)
        t__fail(file, line, "event at_ns %" PRIu64 ", expected %" PRIu64, e->at_ns, f->clock.ns);
    if (to == CB_OPEN && e->open_ms != open_ms)
        t__fail(file, line, "event open_ms %" PRIu64 ", expected %" PRIu64, e->open_ms, open_ms);
    if (!e->name || strcmp(e->name, f->name) != 0)
        t__fail(file, line, "event name \"%s\", expected \"%s\"", e->name ? e->name : "(null)",
                f->name);
}

#define CHECK_NO_EVENT(f)                                                 \
    do {                                                                  \
        if ((f)->events.seen != (f)->events.n)                            \
            t__fail(__FILE__, __LINE__, "%zu unexpected event(s), next %s -> %s (%s)", \
                    (f)->events.n - (f)->events.seen,                     \
                    cb_state_name((f)->events.ev[(f)->events.seen].from), \
                    cb_state_name((f)->events.ev[(f)->events.seen].to),   \
                    cb_reason_name((f)->events.ev[(f)->events.seen].reason)); \
    } while (0)

/* ---- calls ---- */

/* Defined in tests/t_other.c, a translation unit without CB_IMPLEMENTATION: every call
   made through them runs the inline fast path compiled outside the implementation file. */
bool t_call(cb_breaker *b, cb_outcome o);            /* allow, then record o if admitted */
int t_calls(cb_breaker *b, cb_outcome o, int n);     /* n t_call; returns how many were admitted */

#endif
