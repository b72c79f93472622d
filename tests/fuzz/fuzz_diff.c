/* fuzz_diff.c - differential fuzzing: cb.h against the reference model (tests/fuzz/model.c).

   The input is a config followed by operations: allow, record (success, failure,
   ignored; of any ticket still held, or of a rejected one, or again of one recorded
   before), clock steps (zero, sub-ms,
   large, backwards, onto the open deadline), set_state, reset. After every operation
   every observable is compared: return values, state, stats, retry-after, the events
   delivered, the history, and that the CLOSED path reads no clock when no rule needs it.

   Run with FUZZ_TRACE=1 to print the decoded program (to turn a crash into a report). */
#define CB_IMPLEMENTATION
#define CB_TEST_HOOKS
#include "cb.h"
#include "fuzz_input.h"
#include "model.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TICKETS 16
#define MAX_OPS 512

static uint64_t clock_now;
static unsigned clock_reads;
static cb_event got;               /* the first event of the operation */
static size_t ngot;                /* events delivered during the operation */

static uint64_t fake_clock(void *user)
{
    (void)user;
    clock_reads++;
    return clock_now;
}

static size_t nwarn_got;           /* warning changes delivered during the operation */
static cb_reason warn_got;

static void on_event(const cb_event *ev, void *user)
{
    (void)user;
    if (ev->from == ev->to && (ev->reason == CB_REASON_DEGRADED || ev->reason == CB_REASON_RECOVERED)) {
        nwarn_got++;   /* no transition: a warning change */
        warn_got = ev->reason;
        return;
    }
    if (!ngot++)
        got = *ev;
}


#define FAIL(...) (fprintf(stderr, "fuzz_diff: " __VA_ARGS__), abort())
#define EQ(what, a, b)                                                                  \
    do {                                                                                \
        uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                                \
        if (a_ != b_)                                                                   \
            FAIL("%s: cb.h %" PRIu64 ", model %" PRIu64 "\n", what, a_, b_);            \
    } while (0)

/* Small, boundary-rich values: the interesting behaviour is around 0, 1 and the limits. */
static double fraction(input *in) { return (1 + byte(in) % 100) / 100.0; }

static cb_config decode_config(input *in)
{
    cb_config c = {0};
    uint8_t rules = byte(in), rec = byte(in);
    if (rules & 1)
        c.consecutive_failures = 1 + byte(in) % 8;
    if (rules & 2)
        c.failure_rate = fraction(in);
    if (rules & 4)
        c.failures_in_window = 1 + byte(in) % 8;
    if (rules & 8)
        c.slow_call_ms = 1 + byte(in) % 50;
    if (rules & 16)
        c.slow_call_rate = fraction(in);
    if (rules & 32)
        c.minimum_calls = byte(in) % 12;
    if (rules & 64)
        c.max_concurrent = 1 + byte(in) % 4;
    switch (rules >> 7 | (byte(in) & 1) << 1) {
    case 1:
        c.window_calls = 1 + byte(in) % 24;
        break;
    case 2:
        c.window_ms = 1 + byte(in) * 4u;
        c.window_buckets = byte(in) % 12;
        break;
    default:
        break;
    }
    c.open_ms = byte(in);
    if (rec & 1)
        c.backoff = 1 + byte(in) / 32.0;
    if (rec & 2)
        c.max_open_ms = byte(in) * 8u;
    if (rec & 4)
        c.jitter = byte(in) / 256.0;
    if (rec & 8)
        c.half_open_calls = byte(in) % 5;
    c.probe_timeout_ms = rec & 16 ? 1 + byte(in) : 0;
    if (rec & 32)
        c.seed = bytes(in, 8);
    if (rec & 64)   /* from a byte read already, so older inputs keep their meaning; at or
                       above failure_rate, or without a window, it is an invalid config */
        c.warn_failure_rate = (1 + c.open_ms % 15) / 16.0;
    c.on_event = on_event;
    c.clock_ns = fake_clock;
    return c;
}

static void compare(const cb_breaker *b, const model *m)
{
    cb_stats s, e;
    unsigned reads = clock_reads;
    cb_stats_get(b, &s);
    model_stats(m, &e);
    clock_reads = reads;           /* stats may read the clock; only the call path may not */
    EQ("state", cb_get_state(b), m->state);
    EQ("stats.state", s.state, e.state);
    EQ("generation", s.generation, e.generation);
    EQ("admitted", s.admitted, e.admitted);
    EQ("rejected", s.rejected, e.rejected);
    EQ("successes", s.successes, e.successes);
    EQ("failures", s.failures, e.failures);
    EQ("ignored", s.ignored, e.ignored);
    EQ("slow", s.slow, e.slow);
    EQ("stale", s.stale, e.stale);
    EQ("opens", s.opens, e.opens);
    EQ("consecutive_failures", s.consecutive_failures, e.consecutive_failures);
    EQ("window_calls", s.window_calls, e.window_calls);
    EQ("window_failures", s.window_failures, e.window_failures);
    EQ("window_slow", s.window_slow, e.window_slow);
    EQ("in_flight", s.in_flight, e.in_flight);
    EQ("degraded", s.degraded, e.degraded);
    for (int why = CB_REJECT_OPEN; why <= CB_REJECT_BULKHEAD; why++)
        EQ("rejected_by", s.rejected_by[why], e.rejected_by[why]);
    EQ("state_since_ns", s.state_since_ns, e.state_since_ns);
    EQ("last_failure_ns", s.last_failure_ns, e.last_failure_ns);
    EQ("open_until_ns", s.open_until_ns, e.open_until_ns);
    EQ("retry_after_ms", cb_retry_after_ms(b), model_retry_after_ms(m));
    clock_reads = reads;
}

static void compare_event(const cb_event *a, const cb_event *b)
{
    if (strcmp(a->name, b->name))
        FAIL("event name: cb.h %s, model %s\n", a->name, b->name);
    EQ("event.from", a->from, b->from);
    EQ("event.to", a->to, b->to);
    EQ("event.reason", a->reason, b->reason);
    EQ("event.generation", a->generation, b->generation);
    EQ("event.at_ns", a->at_ns, b->at_ns);
    EQ("event.open_ms", a->open_ms, b->open_ms);
}

/* The events of the last operation (at most one transition each), and the history. */
static void compare_events(const cb_breaker *b, const model *m, uint64_t before)
{
    EQ("events delivered", ngot, m->nevents - before);
    if (ngot)
        compare_event(&got, model_last_event(m));
    ngot = 0;
    cb_event h[MODEL_HISTORY];
    uint64_t want = m->nevents < MODEL_HISTORY ? m->nevents : MODEL_HISTORY;
    EQ("history length", cb_history(b, h, MODEL_HISTORY), want);
    for (uint64_t i = 0; i < want; i++)
        compare_event(&h[i], &m->events[(m->nevents - want + i) % MODEL_HISTORY]);
}

typedef struct held { cb_ticket c; model_ticket m; } held;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    trace = getenv("FUZZ_TRACE") != NULL;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    input in = {data, size};
    cb_config cfg = decode_config(&in);
    uint8_t start = byte(&in);
    clock_now = (uint64_t)(start & 0x7f) << 30;   /* 0 .. 136 s, from a whole second */
    ngot = 0;

    model m;
    cb_config want;
    cb_err merr = model_init(&m, &cfg, clock_now);
    cb_err err = cb_config_resolve(&cfg, &want, NULL, 0);
    EQ("config validity", err, merr);
    if (merr) {
        cb_breaker *none = cb_new(&cfg, &err);
        EQ("cb_new of an invalid config", none != NULL || err != CB_EINVAL, 0);
        return 0;
    }
    cb_breaker *b = cb_new(&cfg, &err);
    if (!b)
        FAIL("cb_new: %s\n", cb_strerror(err));
    cb_config drawn;   /* seed 0: the one the breaker drew, which the model follows */
    cb_config_get(b, &drawn);
    EQ("seed kept or drawn", cfg.seed ? drawn.seed == cfg.seed : drawn.seed != 0, 1);
    m.cfg.seed = drawn.seed;
    say("config: cf %u rate %g count %u slow %u/%g min %u max_conc %u win %u calls/%u ms/%u"
        " open %u backoff %g max %u jitter %g probes %u timeout %u seed %" PRIu64 "\n",
        m.cfg.consecutive_failures, m.cfg.failure_rate, m.cfg.failures_in_window,
        m.cfg.slow_call_ms, m.cfg.slow_call_rate, m.cfg.minimum_calls, m.cfg.max_concurrent,
        m.cfg.window_calls, m.cfg.window_ms, m.cfg.window_buckets, m.cfg.open_ms,
        m.cfg.backoff, m.cfg.max_open_ms, m.cfg.jitter, m.cfg.half_open_calls,
        m.cfg.probe_timeout_ms, m.cfg.seed);
    if (start & 0x80) {            /* start a few transitions before the generation wraps */
        uint32_t gen = UINT32_MAX - byte(&in) % 8;
        cb__test_set_generation(b, gen);
        m.gen = gen;
        cb_reset(b);               /* a transition, so the history has the current entry */
        model_reset(&m);
        say("generation %" PRIu32 "\n", gen);
    }
    compare(b, &m);
    compare_events(b, &m, 0);

    held tickets[MAX_TICKETS];
    size_t nt = 0;
    for (int op = 0; op < MAX_OPS && in.n; op++) {
        uint8_t code = byte(&in), arg = byte(&in);
        cb_state before_state = m.state;
        uint64_t before_events = m.nevents, before_warn = m.nwarn;
        unsigned reads = clock_reads;
        bool quiet_path = !m.cfg.slow_call_ms && !m.cfg.window_ms;
        m.now_ns = clock_now;
        switch (code % 12) {
        case 0: case 1: case 2: {  /* allow; a full hand abandons its oldest ticket */
            if (nt == MAX_TICKETS)
                memmove(tickets, tickets + 1, --nt * sizeof *tickets);
            held *t = &tickets[nt++];
            bool a = cb_allow(b, &t->c), e = model_allow(&m, &t->m);
            say("allow -> %d\n", e);
            EQ("cb_allow", a, e);
            EQ("cb_ticket_rejected", cb_ticket_rejected(&t->c), e ? CB_REJECT_NONE : t->m.why);
            if (before_state == CB_CLOSED && m.state == CB_CLOSED && !m.cfg.slow_call_ms)
                EQ("clock reads by cb_allow in CLOSED", clock_reads - reads, 0);
            break;
        }
        case 3: case 4: case 5: {  /* record the ticket picked by arg */
            if (!nt)
                break;
            /* arg's top bit: an outcome outside the enum, which leaves the call in flight */
            cb_outcome o = (cb_outcome)(arg & 0x80 ? 3 + code % 2 : code % 12 - 3);
            /* code's upper bits: keep the ticket in hand, so that a later record of it
               is a second record of one ticket (a caller bug: refused, counts nothing) */
            bool keep = (code / 12) & 1;
            size_t i = (arg & 0x7f) % nt;
            held copy = tickets[i], *t = keep ? &tickets[i] : &copy;
            if (o <= CB_IGNORED && !keep)
                tickets[i] = tickets[--nt];
            bool a = cb_record(b, &t->c, o), e = model_record(&m, &t->m, o);
            say("record #%zu%s %s (%d) -> %d\n", i, keep ? " (kept)" : "", cb_outcome_name(o), (int)o, e);
            EQ("cb_record", a, e);
            if (before_state == CB_CLOSED && m.state == CB_CLOSED && quiet_path &&
                o == CB_SUCCESS && !nwarn_got)   /* a warning told reads the time for it */
                EQ("clock reads by cb_record(SUCCESS) in CLOSED", clock_reads - reads, 0);
            break;
        }
        case 6:                    /* sub-millisecond step: deadlines are whole ms */
            clock_now += arg * 9973u;
            say("clock +%u ns\n", arg * 9973u);
            break;
        case 7:                    /* milliseconds */
            clock_now += arg * 1000000ull;
            say("clock +%u ms\n", arg);
            break;
        case 8:                    /* seconds: past any period */
            clock_now += arg * 1000000000ull;
            say("clock +%u s\n", arg);
            break;
        case 9:                    /* backwards */
            clock_now -= clock_now < arg * 1000000ull ? clock_now : arg * 1000000ull;
            say("clock -%u ms\n", arg);
            break;
        case 10: {                 /* onto the open deadline, a ns before or after */
            cb_stats s;
            cb_stats_get(b, &s);
            if (s.open_until_ns)
                clock_now = s.open_until_ns + arg % 3 - 1;
            say("clock = deadline %+d ns\n", arg % 3 - 1);
            break;
        }
        default:
            if (arg & 0x80) {
                say("reset\n");
                cb_reset(b);
                model_reset(&m);
            } else {
                say("set_state %s\n", cb_state_name((cb_state)(arg % 6)));
                EQ("cb_set_state", cb_set_state(b, (cb_state)(arg % 6)), CB_OK);
                model_set_state(&m, (cb_state)(arg % 6));
            }
            break;
        }
        m.now_ns = clock_now;
        compare(b, &m);
        compare_events(b, &m, before_events);
        EQ("warning changes told", nwarn_got, m.nwarn - before_warn);
        if (nwarn_got)
            EQ("warning told", warn_got, m.last_warn);
        nwarn_got = 0;
    }
    cb_free(b);
    model_free(&m);
    return 0;
}
