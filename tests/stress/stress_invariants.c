/* Invariant stress of cb.h: THREADS threads make CALLS random calls each on one breaker
   (failure bursts, IGNORED, slow calls, tickets held back until they go stale, random
   manual transitions) and check the invariants of docs/semantics.md while they run, at quiescent
   points where every thread waits at a barrier, and after they join. The first violation
   prints what broke, after how many calls and how long, and exits with status 1.

   Usage: stress_invariants SCENARIO THREADS CALLS CLOCK [GEN0 [COUNTERS0]]
     SCENARIO   consecutive | count | time | slow | bulkhead | all
     CLOCK      real (CLOCK_MONOTONIC), or fake (a shared atomic clock the threads advance,
                from 1000 s), or fake@MS (from MS milliseconds)
     GEN0       start at this generation (cb__test_set_generation); the run must then make
                512 transitions, so a start 256 below 2^16, 2^22, 2^29 or 2^32 (widths cb.h's
                generation tags have had) runs through that wrap
     COUNTERS0  every thread starts its counters here (cb__test_set_counters)
   STRESS_SEED in the environment repeats a run's random choices (not its interleaving).

   Checked:
   - accounting, exactly at each quiescent point: admitted and rejected equal the calls
     that cb_allow admitted and rejected; successes, failures, ignored equal the records
     that returned true with that outcome; stale lies between the records that returned
     false for tickets of non-DISABLED generations and all records that returned false
     (a DISABLED ticket recorded in its own generation counts nowhere); in_flight equals
     the tickets held back;
   - every generation entered by exactly one transition (one on_event), from the state
     the previous one entered, with a reason the transition table allows; the open and
     probe periods respected; opens equal to the transitions into OPEN;
   - HALF_OPEN: probes held at once (counted after cb_allow, uncounted before an IGNORED
     record, so the count never exceeds the breaker's) never above half_open_calls, and
     per round admitted - ignored <= half_open_calls; nothing admitted in OPEN/FORCED_OPEN;
   - max_concurrent never exceeded (calls in flight counted the same way);
   - a stale ticket, recorded at a quiescent point, returns false and changes nothing but
     stale (and the place it held);
   - the window, refilled with successes at a quiescent point, holds exactly those;
   - at each quiescent point, a manual OPEN moves to HALF_OPEN once its period has passed,
     and that round, its probe held, times out (no breaker wedges);
   - history entries equal what on_event reported for their generation (no torn read),
     in order, and the last 16 transitions are all there when quiescent;
   - along each thread's observations (tickets, stats, its own events) the generation
     never goes back, and the cumulative counters never decrease. */
#include "stress.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_THREADS 16
#define GENS (1u << 18)   /* generations one run may pass through */
#define STASH 4           /* tickets a thread holds back at once */
#define PHASES 16         /* quiescent checks per run */
#define MS 1000000ull

typedef struct scenario {
    const char *name;
    cb_config cfg;
} scenario;

/* Short periods, so that real and fake clocks both cycle the breaker many times a run;
   half_open_calls >= 2, so that probes race for permits. */
static const scenario scenarios[] = {
    { "consecutive", { .consecutive_failures = 3, .open_ms = 2, .backoff = 2, .max_open_ms = 8,
                       .jitter = 0.5, .half_open_calls = 3, .probe_timeout_ms = 4 } },
    { "count", { .window_calls = 64, .minimum_calls = 16, .failure_rate = 0.8,
                 .failures_in_window = 20, .open_ms = 1, .half_open_calls = 4,
                 .probe_timeout_ms = 3 } },
    { "time", { .window_ms = 8, .window_buckets = 4, .minimum_calls = 16, .failure_rate = 0.5,
                .open_ms = 1, .half_open_calls = 2, .probe_timeout_ms = 3 } },
    { "slow", { .slow_call_ms = 1, .slow_call_rate = 0.5, .window_calls = 32, .minimum_calls = 8,
                .consecutive_failures = 8, .open_ms = 1, .half_open_calls = 3,
                .probe_timeout_ms = 3 } },
    { "bulkhead", { .max_concurrent = 3, .consecutive_failures = 4, .open_ms = 1,
                    .half_open_calls = 2, .probe_timeout_ms = 3 } },
};

/* What the test knows of one generation: its event, and its probes if HALF_OPEN. */
typedef struct gen_rec {
    _Atomic uint32_t events;     /* on_event calls that entered it */
    _Atomic uint32_t what;       /* 0 until reported; else 1 << 31 | from | to << 8 | reason << 16 */
    _Atomic uint64_t at_ns, open_ms;
    _Atomic uint32_t held;       /* probes in flight, counted from below */
    _Atomic uint32_t admitted, ignored;
} gen_rec;

typedef struct held {            /* a ticket the test holds back */
    cb_ticket t;
    cb_state s;                  /* the state of its generation */
    bool bulk;                   /* holds one of max_concurrent places (DISABLED calls do not) */
} held;

typedef struct worker {
    _Alignas(64) _Atomic uint64_t done;   /* calls made, for the report */
    pthread_t tid;
    unsigned id;
    uint64_t rng;
    bool burst;
    /* written by the owner, read by the checker across a barrier */
    uint64_t allowed, rejected, counted[3], false_disabled, false_other;
    held stash[STASH];
    unsigned nstash;
    cb_stats last;               /* the previous stats this thread read */
    bool looked;
    uint64_t hist_verified, hist_pending;
} worker;

static struct {
    const scenario *sc;
    cb_breaker *b;
    cb_config cfg;               /* resolved */
    bool fake, preset;
    unsigned threads;
    uint64_t calls, phase_len, seed, t0, counters0;
    uint32_t gen0;
    gen_rec *gens;
    worker w[MAX_THREADS];
    pthread_barrier_t barrier;
    _Atomic uint64_t now;        /* the fake clock */
    _Atomic uint64_t in_flight;  /* bulkhead places held, counted from below */
    _Atomic int failed;
    cb_stats s0;                 /* baseline, after the presets */
    uint32_t checked;            /* generations (from gen0) whose chain is checked */
    uint64_t opens, rounds, full_rounds, stale_checked, refills, moves;
} R;

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

__attribute__((format(printf, 1, 2), noreturn))
static void violation(const char *fmt, ...)
{
    int first = 0;
    if (!atomic_compare_exchange_strong(&R.failed, &first, 1))
        for (;;)
            pause();   /* another thread reports; it ends the process */
    uint64_t calls = 0;
    for (unsigned i = 0; i < R.threads; i++)
        calls += atomic_load_explicit(&R.w[i].done, memory_order_relaxed);
    va_list ap;
    fprintf(stderr, "VIOLATION %s, %u threads, %s clock: ", R.sc->name, R.threads,
            R.fake ? "fake" : "real");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n  detected after %" PRIu64 " calls, %.1f ms (seed %" PRIu64 ")\n", calls,
            (double)(mono_ns() - R.t0) / 1e6, R.seed);
    fflush(stderr);
    _exit(1);
}

static uint64_t rnd(worker *w)   /* xorshift64* */
{
    w->rng ^= w->rng >> 12;
    w->rng ^= w->rng << 25;
    w->rng ^= w->rng >> 27;
    return w->rng * 0x2545f4914f6cdd1dull;
}

static uint64_t fake_clock(void *user)
{
    (void)user;
    return atomic_load_explicit(&R.now, memory_order_relaxed);
}

static void advance(uint64_t ns) { atomic_fetch_add_explicit(&R.now, ns, memory_order_relaxed); }

static void pass_ms(uint64_t ms)   /* let the breaker clock run on */
{
    if (R.fake)
        advance(ms * MS);
    else
        nanosleep(&(struct timespec){ (time_t)(ms / 1000), (long)(ms % 1000 * MS) }, NULL);
}

/* ---- per-thread observations of the generation ---- */

static _Thread_local uint32_t obs_gen;
static _Thread_local bool obs_any;

static void observe(uint32_t g, bool strictly, const char *how)
{
    if (obs_any && (int32_t)(g - obs_gen) < (strictly ? 1 : 0))
        violation("this thread saw generation %" PRIu32 " (%s) after %" PRIu32, g, how, obs_gen);
    obs_gen = g;
    obs_any = true;
}

/* ---- generations and events ---- */

static gen_rec *rec_of(uint32_t g)
{
    uint32_t i = g - R.gen0;
    if (i >= GENS)
        violation("generation %" PRIu32 " is before the start or more than %u transitions on", g, GENS);
    return &R.gens[i];
}

static uint32_t pack(cb_state from, cb_state to, cb_reason why)
{
    return 1u << 31 | (uint32_t)from | (uint32_t)to << 8 | (uint32_t)why << 16;
}
static cb_state from_of(uint32_t w) { return (cb_state)(w & 0xff); }
static cb_state to_of(uint32_t w) { return (cb_state)((w >> 8) & 0xff); }
static cb_reason why_of(uint32_t w) { return (cb_reason)((w >> 16) & 0xff); }

/* Why a transition is not in the table (docs/semantics.md), or NULL if it is. */
static const char *illegal(cb_state from, cb_state to, cb_reason why, uint64_t open_ms)
{
    const cb_config *c = &R.cfg;
    if ((unsigned)from > CB_METRICS_ONLY || (unsigned)to > CB_METRICS_ONLY)
        return "no such state";
    switch (why) {
    case CB_REASON_CONSECUTIVE_FAILURES:
    case CB_REASON_FAILURE_RATE:
    case CB_REASON_FAILURE_COUNT:
    case CB_REASON_SLOW_CALL_RATE:
        if (!(why == CB_REASON_CONSECUTIVE_FAILURES ? c->consecutive_failures != 0
              : why == CB_REASON_FAILURE_RATE       ? c->failure_rate > 0
              : why == CB_REASON_FAILURE_COUNT      ? c->failures_in_window != 0
                                                    : c->slow_call_rate > 0))
            return "the reason of a rule that is not configured";
        if (from != CB_CLOSED || to != CB_OPEN)
            return "a rule moves CLOSED to OPEN only";
        break;
    case CB_REASON_OPEN_ELAPSED:
        if (from != CB_OPEN || to != CB_HALF_OPEN)
            return "OPEN_ELAPSED moves OPEN to HALF_OPEN only";
        break;
    case CB_REASON_PROBE_FAILED:
    case CB_REASON_PROBE_TIMEOUT:
        if (from != CB_HALF_OPEN || to != CB_OPEN)
            return "a failed or timed-out probe moves HALF_OPEN to OPEN only";
        break;
    case CB_REASON_PROBES_SUCCEEDED:
        if (from != CB_HALF_OPEN || to != CB_CLOSED)
            return "PROBES_SUCCEEDED moves HALF_OPEN to CLOSED only";
        break;
    case CB_REASON_MANUAL:
        break;
    default:
        return "no such reason";
    }
    if (to == CB_OPEN && (open_ms < 1 || open_ms > c->max_open_ms))
        return "open_ms outside [1, max_open_ms]";
    return NULL;
}

static void on_event(const cb_event *ev, void *user)
{
    (void)user;
    uint32_t g = (uint32_t)ev->generation;
    const char *bad = illegal(ev->from, ev->to, ev->reason, ev->open_ms);
    if (bad)
        violation("event %s -> %s (%s) for generation %" PRIu32 ": %s", cb_state_name(ev->from),
                  cb_state_name(ev->to), cb_reason_name(ev->reason), g, bad);
    observe(g, true, "its own transition");
    gen_rec *r = rec_of(g);
    if (atomic_fetch_add_explicit(&r->events, 1, memory_order_relaxed) != 0)
        violation("generation %" PRIu32 " entered twice, the second time by %s -> %s (%s)", g,
                  cb_state_name(ev->from), cb_state_name(ev->to), cb_reason_name(ev->reason));
    atomic_store_explicit(&r->at_ns, ev->at_ns, memory_order_relaxed);
    atomic_store_explicit(&r->open_ms, ev->open_ms, memory_order_relaxed);
    /* release: a reader that sees what sees at_ns and open_ms */
    atomic_store_explicit(&r->what, pack(ev->from, ev->to, ev->reason), memory_order_release);
}

/* The event of generation g; waits for it, since on_event runs after the transition. */
static uint32_t what_of(uint32_t g)
{
    gen_rec *r = rec_of(g);
    uint64_t since = 0;
    for (unsigned spins = 0;; spins++) {
        uint32_t w = atomic_load_explicit(&r->what, memory_order_acquire);
        if (w)
            return w;
        if (spins % 1024 == 0) {
            uint64_t t = mono_ns();
            if (!since)
                since = t;
            else if (t - since > 10000 * MS)
                violation("no event for generation %" PRIu32 " after 10 s", g);
        }
        sched_yield();
    }
}

/* ---- calls ---- */

enum { MAY_HOLD = 1, MAY_DELAY = 2 };

/* After cb_allow admitted t: the checks and counts of an admission. */
static held admit(worker *w, const cb_ticket *t)
{
    held h = { .t = *t };
    uint32_t g = t->cb__gen;
    observe(g, false, "an admitted ticket");
    h.s = to_of(what_of(g));
    if (h.s == CB_OPEN || h.s == CB_FORCED_OPEN)
        violation("a call was admitted in generation %" PRIu32 ", which is %s", g, cb_state_name(h.s));
    if (h.s == CB_HALF_OPEN) {
        gen_rec *r = rec_of(g);
        atomic_fetch_add_explicit(&r->admitted, 1, memory_order_relaxed);
        uint32_t n = atomic_fetch_add_explicit(&r->held, 1, memory_order_relaxed) + 1;
        if (n > R.cfg.half_open_calls)
            violation("%" PRIu32 " probes in flight in HALF_OPEN generation %" PRIu32
                      ", half_open_calls = %" PRIu32, n, g, R.cfg.half_open_calls);
    }
    h.bulk = R.cfg.max_concurrent && h.s != CB_DISABLED;
    if (h.bulk) {
        uint64_t n = atomic_fetch_add_explicit(&R.in_flight, 1, memory_order_relaxed) + 1;
        if (n > R.cfg.max_concurrent)
            violation("%" PRIu64 " calls in flight, max_concurrent = %" PRIu32, n, R.cfg.max_concurrent);
    }
    w->allowed++;
    return h;
}

/* Record a ticket (the worker's own or, at a quiescent point, any worker's). */
static bool finish(worker *w, const held *h, cb_outcome o)
{
    uint32_t g = h->t.cb__gen;
    bool probe_back = h->s == CB_HALF_OPEN && o == CB_IGNORED;
    if (h->bulk)
        atomic_fetch_sub_explicit(&R.in_flight, 1, memory_order_relaxed);
    if (probe_back)
        atomic_fetch_sub_explicit(&rec_of(g)->held, 1, memory_order_relaxed);
    bool counted = cb_record(R.b, &h->t, o);
    if (counted) {
        w->counted[o]++;
        if (probe_back)
            atomic_fetch_add_explicit(&rec_of(g)->ignored, 1, memory_order_relaxed);
    } else if (h->s == CB_DISABLED) {
        w->false_disabled++;
    } else {
        w->false_other++;
    }
    return counted;
}

/* Failure bursts: a thread is in a burst now and then, and mostly fails during it. */
static cb_outcome pick_outcome(worker *w, uint64_t x)
{
    if (w->burst ? x % 32 == 0 : x % 256 == 0)
        w->burst = !w->burst;
    x >>= 8;
    if (x % 16 == 0)
        return CB_IGNORED;
    x >>= 4;
    return (w->burst ? x % 8 != 0 : x % 32 == 0) ? CB_FAILURE : CB_SUCCESS;
}

/* With a bulkhead, one ticket at most is held back in all (by worker 0), or the bulkhead
   would stay full until the next quiescent point: held DISABLED calls count in flight too. */
static bool may_hold(const worker *w)
{
    return !R.cfg.max_concurrent || (w->id == 0 && w->nstash == 0);
}

static bool call(worker *w, cb_outcome o, unsigned flags)
{
    cb_ticket t;
    if (!cb_allow(R.b, &t)) {
        w->rejected++;
        return false;
    }
    held h = admit(w, &t);
    uint64_t x = rnd(w);
    if ((flags & MAY_DELAY) && x % 16 == 1)   /* the call takes a while: more of them overlap */
        sched_yield();
    if ((flags & MAY_DELAY) && R.cfg.slow_call_ms) {   /* now and then a slow call */
        if (R.fake && x % 64 == 0)
            advance(R.cfg.slow_call_ms * MS);
        else if (!R.fake && x % 2048 == 0)
            nanosleep(&(struct timespec){ 0, (long)(R.cfg.slow_call_ms * MS + MS / 10) }, NULL);
    }
    if ((flags & MAY_HOLD) && w->nstash < STASH && (x >> 16) % 1024 == 0 && may_hold(w)) {
        w->stash[w->nstash++] = h;
        return true;
    }
    finish(w, &h, o);
    return true;
}

static void manual(uint64_t x)
{
    unsigned pick = (unsigned)(x % 7);
    if (pick == 6)
        cb_reset(R.b);
    else if (cb_set_state(R.b, (cb_state)pick) != CB_OK)
        violation("cb_set_state(%s) failed", cb_state_name((cb_state)pick));
}

/* ---- checks that any thread can make at any time ---- */

static void check_grows(const char *what, uint64_t before, uint64_t now)
{
    if ((int64_t)(now - before) < 0)
        violation("%s went down from %" PRIu64 " to %" PRIu64, what, before, now);
}

static void look(worker *w)
{
    cb_stats s;
    cb_stats_get(R.b, &s);
    observe((uint32_t)s.generation, false, "cb_stats_get");
    if (w->looked) {
        check_grows("admitted", w->last.admitted, s.admitted);
        check_grows("rejected", w->last.rejected, s.rejected);
        check_grows("successes", w->last.successes, s.successes);
        check_grows("failures", w->last.failures, s.failures);
        check_grows("ignored", w->last.ignored, s.ignored);
        check_grows("slow", w->last.slow, s.slow);
        check_grows("stale", w->last.stale, s.stale);
        check_grows("opens", w->last.opens, s.opens);
    }
    w->last = s;
    w->looked = true;
    /* a count window never holds more than its size (its failure and slow figures may
       run ahead of calls by the outcomes being added right now, one per thread) */
    uint32_t cap = R.cfg.window_calls;
    if (cap && (s.window_calls > cap || s.window_failures > cap + R.threads ||
                s.window_slow > cap + R.threads))
        violation("count window of %" PRIu32 " holds calls %" PRIu32 ", failures %" PRIu32
                  ", slow %" PRIu32, cap, s.window_calls, s.window_failures, s.window_slow);
}

/* History entries against the events; returns how many entries there were. */
static size_t check_history(worker *w, cb_event *ev, size_t max)
{
    size_t n = cb_history(R.b, ev, max);
    for (size_t i = 0; i < n; i++) {
        uint32_t g = (uint32_t)ev[i].generation;
        const char *bad = illegal(ev[i].from, ev[i].to, ev[i].reason, ev[i].open_ms);
        if (ev[i].generation > UINT32_MAX || bad || strcmp(ev[i].name, R.cfg.name) != 0)
            violation("history entry for generation %" PRIu64 ": %s -> %s (%s): %s",
                      ev[i].generation, cb_state_name(ev[i].from), cb_state_name(ev[i].to),
                      cb_reason_name(ev[i].reason), bad ? bad : "bad generation or name");
        if (i > 0 && (int32_t)(g - (uint32_t)ev[i - 1].generation) <= 0)
            violation("history out of order: generation %" PRIu32 " after %" PRIu64, g,
                      ev[i - 1].generation);
        gen_rec *r = rec_of(g);
        uint32_t what = atomic_load_explicit(&r->what, memory_order_acquire);
        if (!what) {
            w->hist_pending++;   /* its on_event has not run yet */
            continue;
        }
        uint64_t at = atomic_load_explicit(&r->at_ns, memory_order_relaxed);
        uint64_t om = atomic_load_explicit(&r->open_ms, memory_order_relaxed);
        if (what != pack(ev[i].from, ev[i].to, ev[i].reason) || at != ev[i].at_ns ||
            om != ev[i].open_ms)
            violation("history entry for generation %" PRIu32 " is %s -> %s (%s) at %" PRIu64
                      " open %" PRIu64 "; on_event said %s -> %s (%s) at %" PRIu64 " open %" PRIu64,
                      g, cb_state_name(ev[i].from), cb_state_name(ev[i].to),
                      cb_reason_name(ev[i].reason), ev[i].at_ns, ev[i].open_ms,
                      cb_state_name(from_of(what)), cb_state_name(to_of(what)),
                      cb_reason_name(why_of(what)), at, om);
        w->hist_verified++;
    }
    return n;
}

/* ---- checks at a quiescent point (every worker waits, or has joined) ---- */

/* Every generation reached so far: entered once, from the state before it, on time. */
static void check_chain(uint32_t cur)
{
    uint32_t last = cur - R.gen0;
    for (uint32_t i = R.checked + 1; i <= last && i < GENS; i++) {
        gen_rec *r = &R.gens[i], *p = &R.gens[i - 1];
        uint32_t g = R.gen0 + i;
        uint32_t what = atomic_load_explicit(&r->what, memory_order_acquire);
        uint32_t pw = atomic_load_explicit(&p->what, memory_order_relaxed);
        if (!what)
            violation("generation %" PRIu32 " was entered without an event", g);
        if (from_of(what) != to_of(pw))
            violation("generation %" PRIu32 " left %s, but generation %" PRIu32 " entered %s", g,
                      cb_state_name(from_of(what)), g - 1, cb_state_name(to_of(pw)));
        uint64_t at = atomic_load_explicit(&r->at_ns, memory_order_relaxed);
        uint64_t pat = atomic_load_explicit(&p->at_ns, memory_order_relaxed);
        uint64_t wait = why_of(what) == CB_REASON_OPEN_ELAPSED
                            ? atomic_load_explicit(&p->open_ms, memory_order_relaxed)
                        : why_of(what) == CB_REASON_PROBE_TIMEOUT ? R.cfg.probe_timeout_ms : 0;
        if (at < pat + wait * MS)
            violation("generation %" PRIu32 " (%s) at %" PRIu64 " ns, less than %" PRIu64
                      " ms after generation %" PRIu32 " at %" PRIu64 " ns", g,
                      cb_reason_name(why_of(what)), at, wait, g - 1, pat);
        R.opens += to_of(what) == CB_OPEN;
    }
    /* probes: the current generation of the last check may have admitted more since */
    for (uint32_t i = R.checked ? R.checked : 1; i <= last && i < GENS; i++) {
        gen_rec *r = &R.gens[i];
        if (to_of(atomic_load_explicit(&r->what, memory_order_relaxed)) != CB_HALF_OPEN)
            continue;
        uint32_t a = atomic_load_explicit(&r->admitted, memory_order_relaxed);
        uint32_t ig = atomic_load_explicit(&r->ignored, memory_order_relaxed);
        if (a - ig > R.cfg.half_open_calls)
            violation("HALF_OPEN generation %" PRIu32 " admitted %" PRIu32 " probes and %" PRIu32
                      " were ignored: more than half_open_calls = %" PRIu32 " held permits",
                      R.gen0 + i, a, ig, R.cfg.half_open_calls);
    }
    R.checked = last;
}

static void check_accounts(const cb_stats *s)
{
    uint64_t allowed = 0, rejected = 0, counted[3] = { 0 }, fdis = 0, foth = 0, held = 0;
    for (unsigned i = 0; i < R.threads; i++) {
        const worker *w = &R.w[i];
        allowed += w->allowed;
        rejected += w->rejected;
        for (int o = 0; o < 3; o++)
            counted[o] += w->counted[o];
        fdis += w->false_disabled;
        foth += w->false_other;
        held += w->nstash;
    }
    const cb_stats *b = &R.s0;
    uint64_t stale = s->stale - b->stale;
    if (s->admitted - b->admitted != allowed || s->rejected - b->rejected != rejected ||
        s->successes - b->successes != counted[CB_SUCCESS] ||
        s->failures - b->failures != counted[CB_FAILURE] ||
        s->ignored - b->ignored != counted[CB_IGNORED] || stale < foth || stale > foth + fdis)
        violation("accounts: breaker says admitted %" PRIu64 " rejected %" PRIu64 " successes %"
                  PRIu64 " failures %" PRIu64 " ignored %" PRIu64 " stale %" PRIu64 "; the calls "
                  "were admitted %" PRIu64 " rejected %" PRIu64 " successes %" PRIu64 " failures %"
                  PRIu64 " ignored %" PRIu64 " stale %" PRIu64 "..%" PRIu64 " (held %" PRIu64 ")",
                  s->admitted - b->admitted, s->rejected - b->rejected, s->successes - b->successes,
                  s->failures - b->failures, s->ignored - b->ignored, stale, allowed, rejected,
                  counted[0], counted[1], counted[2], foth, foth + fdis, held);
    /* in_flight: the bulkhead's count, or admitted - recorded (unknown after a preset) */
    if ((R.cfg.max_concurrent || !R.preset) && s->in_flight != held)
        violation("in_flight is %" PRIu32 " with %" PRIu64 " calls in flight", s->in_flight, held);
    if (s->opens - b->opens != R.opens)
        violation("opens went up by %" PRIu64 ", but %" PRIu64 " transitions entered OPEN",
                  s->opens - b->opens, R.opens);
}

static void check_quiet_history(uint32_t cur)
{
    cb_event ev[CB_HISTORY];
    size_t n = check_history(&R.w[0], ev, CB_HISTORY);
    uint32_t want = cur - R.gen0 < 16 ? cur - R.gen0 : 16;
    for (uint32_t k = 0; k < want; k++) {
        uint32_t g = cur - k;
        bool found = false;
        for (size_t i = 0; i < n && !found; i++)
            found = (uint32_t)ev[i].generation == g;
        if (!found)
            violation("history of %zu entries lacks generation %" PRIu32 " (current %" PRIu32 ")",
                      n, g, cur);
    }
}

/* Record the held-back tickets that have gone stale, one at a time: each must return
   false and change nothing but stale and in_flight. */
static void check_stale(const cb_stats *s)
{
    /* a time window's figures move with the real clock alone */
    bool windows = R.fake || !R.cfg.window_ms;
    for (unsigned i = 0; i < R.threads; i++) {
        worker *w = &R.w[i];
        for (unsigned j = 0; j < w->nstash;) {
            held h = w->stash[j];
            if (h.t.cb__gen == (uint32_t)s->generation) {
                j++;
                continue;
            }
            w->stash[j] = w->stash[--w->nstash];
            cb_stats a, z;
            cb_stats_get(R.b, &a);
            if (finish(w, &h, (cb_outcome)(rnd(w) % 3)))
                violation("a stale ticket of generation %" PRIu32 " was counted in %" PRIu64,
                          h.t.cb__gen, a.generation);
            cb_stats_get(R.b, &z);
            bool flight_known = R.cfg.max_concurrent || !R.preset;
            if (z.state != a.state || z.generation != a.generation || z.admitted != a.admitted ||
                z.rejected != a.rejected || z.successes != a.successes || z.failures != a.failures ||
                z.ignored != a.ignored || z.slow != a.slow || z.opens != a.opens ||
                z.stale != a.stale + 1 || z.consecutive_failures != a.consecutive_failures ||
                (flight_known && a.in_flight - z.in_flight != 1) ||
                (windows && (z.window_calls != a.window_calls || z.window_failures != a.window_failures ||
                             z.window_slow != a.window_slow)))
                violation("a stale record (generation %" PRIu32 ", now %" PRIu64 ") changed the "
                          "breaker: state %s -> %s, stale %" PRIu64 " -> %" PRIu64 ", consecutive %"
                          PRIu32 " -> %" PRIu32 ", window %" PRIu32 "/%" PRIu32 "/%" PRIu32
                          " -> %" PRIu32 "/%" PRIu32 "/%" PRIu32 ", in_flight %" PRIu32 " -> %" PRIu32,
                          h.t.cb__gen, a.generation, cb_state_name(a.state), cb_state_name(z.state),
                          a.stale, z.stale, a.consecutive_failures, z.consecutive_failures,
                          a.window_calls, a.window_failures, a.window_slow, z.window_calls,
                          z.window_failures, z.window_slow, a.in_flight, z.in_flight);
            R.stale_checked++;
        }
    }
}

/* In CLOSED or METRICS_ONLY, fill the window with successes: it must hold exactly them. */
static void check_refill(const cb_stats *s)
{
    if ((s->state != CB_CLOSED && s->state != CB_METRICS_ONLY) ||
        !(R.cfg.window_calls || (R.cfg.window_ms && R.fake)))
        return;
    uint32_t m = R.cfg.window_calls ? R.cfg.window_calls : 32;
    if (R.cfg.window_ms)
        pass_ms(R.cfg.window_ms);   /* every bucket ages out */
    for (uint32_t i = 0; i < m; i++)
        if (!call(&R.w[0], CB_SUCCESS, 0))
            return;   /* the bulkhead is full of held tickets */
    cb_stats z;
    cb_stats_get(R.b, &z);
    if (z.generation != s->generation)
        return;       /* the successes tripped a rate rule that had too few calls before */
    bool slow_ok = R.fake || !R.cfg.slow_call_ms;   /* a real-clock call may be slow */
    if (z.window_calls != m || z.window_failures != 0 || (slow_ok && z.window_slow != 0) ||
        z.consecutive_failures != 0)
        violation("after %" PRIu32 " successes in generation %" PRIu64 " the window holds calls %"
                  PRIu32 " failures %" PRIu32 " slow %" PRIu32 ", consecutive failures %" PRIu32,
                  m, z.generation, z.window_calls, z.window_failures, z.window_slow,
                  z.consecutive_failures);
    R.refills++;
}

/* An OPEN period ends, and a HALF_OPEN round times out, once its time has passed: the
   next cb_allow moves the breaker on, so that none wedges. From a manual OPEN: wait out
   the longest period, take a probe and hold it, wait out the round. */
static void check_moves(void)
{
    cb_stats s, z;
    cb_ticket t;
    if (cb_set_state(R.b, CB_OPEN) != CB_OK)
        violation("cb_set_state(open) failed");
    cb_stats_get(R.b, &s);
    pass_ms(R.cfg.max_open_ms + 1);
    if (!cb_allow(R.b, &t))
        violation("OPEN (generation %" PRIu64 ") still rejects %" PRIu32 " ms after it began",
                  s.generation, R.cfg.max_open_ms + 1);
    held h = admit(&R.w[0], &t);
    if (h.s != CB_HALF_OPEN || t.cb__gen != (uint32_t)s.generation + 1)
        violation("the first call after OPEN (generation %" PRIu64 ") was admitted in %s, "
                  "generation %" PRIu32, s.generation, cb_state_name(h.s), t.cb__gen);
    pass_ms(R.cfg.probe_timeout_ms + 1);
    call(&R.w[0], CB_SUCCESS, 0);
    cb_stats_get(R.b, &z);
    /* on the real clock, the new open period may have passed too before that call ended */
    if ((int32_t)((uint32_t)z.generation - t.cb__gen) < 1 ||
        why_of(what_of(t.cb__gen + 1)) != CB_REASON_PROBE_TIMEOUT)
        violation("HALF_OPEN (generation %" PRIu32 ") with a probe held %" PRIu32 " ms did not time "
                  "out: generation %" PRIu64 " %s", t.cb__gen, R.cfg.probe_timeout_ms + 1,
                  z.generation, cb_state_name(z.state));
    finish(&R.w[0], &h, CB_SUCCESS);   /* stale now */
    R.moves += 2;
}

static void check_quiet(void)
{
    cb_stats s;
    cb_stats_get(R.b, &s);
    observe((uint32_t)s.generation, false, "cb_stats_get");
    uint32_t cur = (uint32_t)s.generation;
    check_chain(cur);
    uint32_t what = what_of(cur);
    if (to_of(what) != s.state)
        violation("the state is %s, but generation %" PRIu32 " entered %s", cb_state_name(s.state),
                  cur, cb_state_name(to_of(what)));
    check_accounts(&s);
    check_quiet_history(cur);
    check_stale(&s);
    check_refill(&s);
    check_moves();
    cb_stats_get(R.b, &s);
    check_chain((uint32_t)s.generation);
    check_accounts(&s);
}

/* ---- the run ---- */

static void *work(void *arg)
{
    worker *w = (worker *)arg;
    if (R.preset)
        cb__test_set_counters(R.b, R.counters0);
    pthread_barrier_wait(&R.barrier);
    if (w->id == 0)
        cb_stats_get(R.b, &R.s0);
    pthread_barrier_wait(&R.barrier);
    cb_event ev[CB_HISTORY];
    for (uint64_t i = 1; i <= R.calls; i++) {
        if (i % R.phase_len == 0) {
            pthread_barrier_wait(&R.barrier);
            if (w->id == 0)
                check_quiet();
            pthread_barrier_wait(&R.barrier);
        }
        uint64_t x = rnd(w);
        if (x % 4096 == 0)
            manual(x >> 12);
        else
            call(w, pick_outcome(w, x >> 12), MAY_HOLD | MAY_DELAY);
        if (R.fake && (x >> 40) % 8 == 0)   /* the fake clock: some 5 us a call on average */
            advance((x >> 43) % 1024 == 0 ? 2 * MS : (x >> 53) * 40);
        if (i % 128 == 0)
            look(w);
        if (i % 512 == 0)
            check_history(w, ev, CB_HISTORY);
        atomic_store_explicit(&w->done, i, memory_order_relaxed);
    }
    return NULL;
}

static void run(const scenario *sc, unsigned threads, uint64_t calls, bool fake, uint64_t clock0,
                uint32_t gen0, uint64_t counters0, bool preset)
{
    memset(&R, 0, sizeof R);
    obs_any = false;   /* this thread's observations were of the previous breaker */
    R.sc = sc;
    R.threads = threads;
    R.calls = calls;
    R.phase_len = calls / PHASES ? calls / PHASES : 1;
    R.fake = fake;
    R.gen0 = gen0;
    R.preset = preset;
    R.counters0 = counters0;
    const char *env = getenv("STRESS_SEED");
    R.seed = env ? strtoull(env, NULL, 0) : mono_ns();
    atomic_store(&R.now, clock0 * MS);
    R.gens = calloc(GENS, sizeof *R.gens);
    if (!R.gens) {
        perror("calloc");
        exit(2);
    }
    atomic_store(&R.gens[0].events, 1);   /* the start: CLOSED, no event */
    atomic_store(&R.gens[0].what, pack(CB_CLOSED, CB_CLOSED, CB_REASON_MANUAL));
    cb_config cfg = sc->cfg;
    cfg.name = sc->name;
    cfg.on_event = on_event;
    if (fake)
        cfg.clock_ns = fake_clock;
    cb_err err;
    R.b = cb_new(&cfg, &err);
    if (!R.b) {
        fprintf(stderr, "cb_new(%s): %s\n", sc->name, cb_strerror(err));
        exit(2);
    }
    cb_config_get(R.b, &R.cfg);
    if (gen0)
        cb__test_set_generation(R.b, gen0);
    pthread_barrier_init(&R.barrier, NULL, threads);
    R.t0 = mono_ns();
    for (unsigned i = 0; i < threads; i++) {
        R.w[i].id = i;
        R.w[i].rng = R.seed * 0x9e3779b97f4a7c15ull + i + 1;
        if (pthread_create(&R.w[i].tid, NULL, work, &R.w[i]) != 0) {
            perror("pthread_create");
            exit(2);
        }
    }
    for (unsigned i = 0; i < threads; i++)
        pthread_join(R.w[i].tid, NULL);
    for (unsigned i = 0; i < threads; i++)   /* what is still held back, recorded now */
        while (R.w[i].nstash)
            finish(&R.w[i], &R.w[i].stash[--R.w[i].nstash], CB_SUCCESS);
    check_quiet();
    for (uint32_t i = 1; i <= R.checked; i++)   /* how hard the probe check was pressed */
        if (to_of(atomic_load(&R.gens[i].what)) == CB_HALF_OPEN) {
            R.rounds++;
            R.full_rounds += atomic_load(&R.gens[i].admitted) - atomic_load(&R.gens[i].ignored) ==
                             R.cfg.half_open_calls;
        }
    uint64_t verified = 0, pending = 0;
    for (unsigned i = 0; i < threads; i++)
        verified += R.w[i].hist_verified, pending += R.w[i].hist_pending;
    cb_stats s;
    cb_stats_get(R.b, &s);
    if (gen0 && (uint32_t)s.generation - gen0 < 512)
        violation("only %" PRIu32 " transitions from generation %" PRIu32 ": not through the wrap",
                  (uint32_t)s.generation - gen0, gen0);
    printf("stress %-11s %u threads x %" PRIu64 " calls, %s clock from %" PRIu64 " ms%s: %.2f s; "
           "generation %#" PRIx32 " + %" PRIu32 " transitions, %" PRIu64 " opens, %" PRIu64
           " half-open rounds (%" PRIu64 " full), admitted %" PRIu64 ", rejected %" PRIu64
           ", stale %" PRIu64 " (%" PRIu64 " checked quiet), %" PRIu64 " window refills, %" PRIu64
           " timed moves, %" PRIu64 " history entries verified (%" PRIu64 " pending)\n",
           sc->name, threads, calls, fake ? "fake" : "real", fake ? clock0 : (uint64_t)(R.t0 / MS),
#ifdef STRESS_YIELD
           ", yield injection",
#else
           "",
#endif
           (double)(mono_ns() - R.t0) / 1e9, gen0, (uint32_t)s.generation - gen0, R.opens,
           R.rounds, R.full_rounds, s.admitted - R.s0.admitted, s.rejected - R.s0.rejected,
           s.stale - R.s0.stale, R.stale_checked, R.refills, R.moves, verified, pending);
    fflush(stdout);
    pthread_barrier_destroy(&R.barrier);
    cb_free(R.b);
    free(R.gens);
}

int main(int argc, char **argv)
{
    if (argc < 5 || argc > 7) {
        fprintf(stderr, "usage: %s SCENARIO THREADS CALLS real|fake [GEN0 [COUNTERS0]]\n", argv[0]);
        return 2;
    }
    unsigned threads = (unsigned)strtoul(argv[2], NULL, 0);
    uint64_t calls = strtoull(argv[3], NULL, 0);
    bool fake = strncmp(argv[4], "fake", 4) == 0;
    uint64_t clock0 = argv[4][4] == '@' ? strtoull(argv[4] + 5, NULL, 0) : 1000000;
    uint32_t gen0 = argc > 5 ? (uint32_t)strtoul(argv[5], NULL, 0) : 0;
    bool preset = argc > 6;
    uint64_t counters0 = preset ? strtoull(argv[6], NULL, 0) : 0;
    if (threads < 1 || threads > MAX_THREADS || calls < 1 || (!fake && strcmp(argv[4], "real")) ||
        (fake && argv[4][4] && argv[4][4] != '@')) {
        fprintf(stderr, "%s: bad arguments\n", argv[0]);
        return 2;
    }
    bool any = false;
    for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++)
        if (!strcmp(argv[1], "all") || !strcmp(argv[1], scenarios[i].name)) {
            run(&scenarios[i], threads, calls, fake, clock0, gen0, counters0, preset);
            any = true;
        }
    if (!any) {
        fprintf(stderr, "%s: no scenario %s\n", argv[0], argv[1]);
        return 2;
    }
    return 0;
}
