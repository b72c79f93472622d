/* Stress of cb.h's keyed groups (cb_group_*): THREADS threads on one group whose
   template breakers read a shared atomic fake clock that the threads advance, with a
   small idle_ms, so keys are created, evicted and re-created all the time while calls,
   held tickets and prunes run across them. The first violation prints what broke and
   exits with status 1; each scenario ends with a `figure:` line.

   Usage: stress_group SCENARIO THREADS CALLS
     SCENARIO   create | churn | bulkhead | evict | share | all
     THREADS    callers (evict has one more thread, which prunes)
     CALLS      calls per caller (create: CALLS / 64 rounds)
   STRESS_SEED in the environment repeats a run's random choices (not its interleaving).

   Scenarios:
   - create: every round, all threads first-use the same fresh keys at once (a barrier
     before); each key must be created once (created grows by the keys of the round, all
     calls of a key land on that one breaker but those that overflowed, which only a
     bounded wait for the group's lock may do), keys <= capacity;
   - churn: 200 keys on 64 places, random outcomes (IGNORED too, failure-prone keys that
     trip), tickets held back across other calls so evictions hit them in flight;
   - bulkhead: churn with max_concurrent on the template;
   - evict: keys A (only successes), B (only IGNORED) and F (only failures, trips) on 2
     places, one thread advancing the clock and pruning in a loop: no record, transition,
     event or count of one key ever shows on another;
   - share: max_open_share 0.25 over 16 held keys tripping at once.

   Checked, in every scenario:
   - a ticket names its slot and occupant (internals, as stress_invariants.c reads
     cb__gen), so the test keeps, per thread, the calls of each occupant of each slot.
     At each quiescent point (every thread at a barrier) every held key's admitted,
     successes, failures, ignored, stale and in_flight equal exactly what the threads saw
     for that occupant (so admitted == successes + failures + ignored + stale + held);
   - a record of a ticket whose occupant has since left its slot (this thread saw a later
     one there) returns false; a thread never sees a slot's occupant go back;
   - nothing admitted in an OPEN generation; HALF_OPEN probes held at once (counted after
     the allow, uncounted before an IGNORED record) <= half_open_calls; calls in flight on
     one key <= max_concurrent;
   - the overflow breaker: its counts equal the calls whose tickets it issued, and
     admitted + rejected == the group's overflow count;
   - quiescent: keys == the keys cb_group_each lists <= capacity, created - evicted ==
     keys, open_keys == the held keys in OPEN/HALF_OPEN/FORCED_OPEN; the records of
     occupants known gone <= the group's stale <= the records of key tickets that returned
     false - the held keys' stale. */
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
#define MAX_KEYS 256
#define MAX_SLOTS 64
#define STASH 4     /* tickets a thread holds back at once */
#define PHASES 8    /* quiescent checks per run */
#define MS 1000000ull
#define CREATE_KEYS 6   /* per round, on 8 places: the last round's keys must make room */

typedef struct scenario scenario;

/* What one thread saw of the current occupant of one slot (as far as it knows). */
typedef struct tally {
    uint64_t tag;                /* the occupant's ticket owner; 0: none seen yet */
    uint64_t adm, out[3], fals, held;
} tally;

typedef struct held {            /* an admitted ticket, until its record */
    cb_ticket t;
    uint64_t tag;
    unsigned key;
    uint32_t slot;
    bool ovf, probe, bulk;
} held;

typedef struct worker {
    _Alignas(64) _Atomic uint64_t done;
    pthread_t tid;
    unsigned id;
    uint64_t rng;
    uint64_t allowed, rejected, rec_true, rec_false, gone_false;
    uint64_t ovf_adm, ovf_out[3], ovf_false, ovf_held, probes;
    tally tab[MAX_SLOTS];
    held stash[STASH];
    unsigned nstash;
    uint64_t worst_open, worst_scan;   /* share: open_keys, and keys seen open, after a call */
} worker;

struct scenario {
    const char *name;
    cb_group_config gc;
    unsigned nkeys;
    bool pruner;                 /* the last thread advances the clock and prunes */
    bool precreate;              /* every key created (and kept) before the run */
    unsigned (*pick_key)(worker *w);
    cb_outcome (*pick_outcome)(worker *w, unsigned key);
    void (*after_call)(worker *w);
};

static struct {
    const scenario *sc;
    cb_group *g;
    cb_breaker *ovf;
    cb_group_config cfg;         /* resolved */
    unsigned threads, workers;
    uint64_t calls, seed, t0;
    char keys[MAX_KEYS][16];
    size_t klen[MAX_KEYS];
    worker w[MAX_THREADS];
    pthread_barrier_t barrier;
    _Atomic uint64_t now;        /* the fake clock */
    _Atomic uint64_t arrived;    /* workers at the phase's barrier (the pruner waits for all) */
    _Atomic uint64_t probe[MAX_SLOTS], bulk[MAX_SLOTS];   /* id:32 | count:32, see held_add */
    _Atomic int failed;
    _Atomic uint64_t events;
    _Atomic uint64_t create_ovf[CREATE_KEYS];   /* create: this round's calls that overflowed */
    uint64_t created, ovf_calls;      /* create: what the group must say */
    uint64_t prunes, pruned, quiet;
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
    fprintf(stderr, "VIOLATION group %s, %u threads: ", R.sc ? R.sc->name : "create", R.threads);
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

/* With yield injection the clock read pauses too: the group reads it before it decides
   on a place, an eviction or a deadline, so those decisions meet other threads' moves. */
static uint64_t fake_clock(void *user)
{
    (void)user;
#ifdef STRESS_YIELD
    stress_yield();
#endif
    return atomic_load_explicit(&R.now, memory_order_relaxed);
}

static void advance(uint64_t ns) { atomic_fetch_add_explicit(&R.now, ns, memory_order_relaxed); }

static uint64_t total_done(void)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < R.threads; i++)
        n += atomic_load_explicit(&R.w[i].done, memory_order_relaxed);
    return n;
}

/* ---- internals a ticket carries: group:24 | occupant:17 | slot + 1:23 ---- */

static uint32_t tag_slot(uint64_t tag) { return (uint32_t)(tag & 0x7fffffu) - 1; }
static uint32_t tag_occ(uint64_t tag) { return (uint32_t)(tag >> 23 & 0x1ffffu); }
/* Occupants as 32-bit ids that wrap with the ticket's 17 bits, so that a signed difference
   orders them (a slot of a long run may pass 2^17 occupants). */
static uint32_t occ_id(uint64_t tag) { return tag_occ(tag) << 15; }
static uint64_t slot_tag(uint32_t s, uint64_t seq)
{
    return R.g->tag_base | (seq >> 1 & 0x1ffffu) << 23 | (s + 1);
}
static uint64_t slot_word(uint32_t s)
{
    cb__live *lv = (cb__live *)((char *)cb__slot_at(R.g, s) + R.g->off_live);
    return atomic_load_explicit(&lv->word, memory_order_acquire);
}

/* A count of what is held now of one thing of a slot (a HALF_OPEN generation's probes, an
   occupant's calls), in one word: id:32 | count:32. A later id replaces an earlier one;
   an earlier one's changes are dropped, which can only undercount. */
static void held_add(_Atomic uint64_t *c, uint32_t id, uint32_t max, const char *what, uint32_t s,
                     uint32_t shown)
{
    uint64_t v = atomic_load_explicit(c, memory_order_relaxed), to;
    do {
        uint32_t have = (uint32_t)(v >> 32);
        if (v && have != id && (int32_t)(id - have) < 0)
            return;
        uint32_t n = v && have == id ? (uint32_t)v + 1 : 1;
        if (n > max)
            violation("%" PRIu32 " %s %" PRIu32 " held at once in slot %" PRIu32 ", at most %"
                      PRIu32 " may be", n, what, shown, s, max);
        to = (uint64_t)id << 32 | n;
    } while (!atomic_compare_exchange_weak_explicit(c, &v, to, memory_order_relaxed,
                                                    memory_order_relaxed));
}

static void held_sub(_Atomic uint64_t *c, uint32_t id)
{
    uint64_t v = atomic_load_explicit(c, memory_order_relaxed);
    while ((uint32_t)(v >> 32) == id && (uint32_t)v > 0 &&
           !atomic_compare_exchange_weak_explicit(c, &v, v - 1, memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
}

static int key_of(const char *key, size_t len)
{
    for (unsigned k = 0; k < R.sc->nkeys; k++)
        if (R.klen[k] == len && !memcmp(R.keys[k], key, len))
            return (int)k;
    return -1;
}

/* ---- calls ---- */

static held admit(worker *w, const cb_ticket *t, unsigned key)
{
    held h = { .t = *t, .tag = t->cb__owner, .key = key };
    w->allowed++;
    if (t->cb__owner == R.ovf->cb__tag) {
        h.ovf = true;
        w->ovf_adm++;
        w->ovf_held++;
        return h;
    }
    uint32_t s = tag_slot(h.tag);
    if (h.tag >> 40 != R.g->tag_base >> 40 || s >= R.cfg.capacity)
        violation("key %s admitted with ticket owner %#" PRIx64 ": no slot of the group",
                  R.keys[key], h.tag);
    h.slot = s;
    tally *ta = &w->tab[s];
    if (ta->tag != h.tag) {
        if (ta->tag && (int32_t)(occ_id(h.tag) - occ_id(ta->tag)) < 0)
            violation("slot %" PRIu32 ": admitted by occupant %" PRIu32 " after this thread saw "
                      "occupant %" PRIu32, s, tag_occ(h.tag), tag_occ(ta->tag));
        memset(ta, 0, sizeof *ta);
        ta->tag = h.tag;
    }
    ta->adm++;
    ta->held++;
    /* generations grow across a slot's occupants: the word, if still in the ticket's
       generation, tells that generation's state */
    uint64_t wd = slot_word(s);
    if (cb__w_gen(wd) == t->cb__gen) {
        cb_state st = cb__w_state(wd);
        if (st == CB_OPEN || st == CB_FORCED_OPEN || (unsigned)st > CB_METRICS_ONLY)
            violation("key %s admitted in generation %" PRIu32 " of slot %" PRIu32 ", which is %s",
                      R.keys[key], t->cb__gen, s,
                      (unsigned)st > CB_METRICS_ONLY ? "no state" : cb_state_name(st));
        if (st == CB_HALF_OPEN) {
            h.probe = true;
            w->probes++;
            held_add(&R.probe[s], t->cb__gen, R.cfg.breaker.half_open_calls,
                     "probes of HALF_OPEN generation", s, t->cb__gen);
        }
    }
    if (R.cfg.breaker.max_concurrent) {
        h.bulk = true;
        held_add(&R.bulk[s], occ_id(h.tag), R.cfg.breaker.max_concurrent,
                 "calls of the key of occupant", s, tag_occ(h.tag));
    }
    return h;
}

static bool finish(worker *w, held *h, cb_outcome o)
{
    if (h->ovf) {
        bool r = cb_group_record(R.g, &h->t, o);
        w->ovf_held--;
        r ? w->ovf_out[o]++ : w->ovf_false++;
        r ? w->rec_true++ : w->rec_false++;
        return r;
    }
    if (h->probe && o == CB_IGNORED)
        held_sub(&R.probe[h->slot], h->t.cb__gen);
    if (h->bulk)
        held_sub(&R.bulk[h->slot], occ_id(h->tag));
    bool r = cb_group_record(R.g, &h->t, o);
    r ? w->rec_true++ : w->rec_false++;
    tally *ta = &w->tab[h->slot];
    if (ta->tag == h->tag) {
        ta->held--;
        r ? ta->out[o]++ : ta->fals++;
    } else {
        if (r)
            violation("key %s: a record (%s) of occupant %" PRIu32 " of slot %" PRIu32 " counted, "
                      "but this thread had seen occupant %" PRIu32 " there", R.keys[h->key],
                      cb_outcome_name(o), tag_occ(h->tag), h->slot, tag_occ(ta->tag));
        w->gone_false++;
    }
    return r;
}

static void call(worker *w, unsigned key)
{
    cb_ticket t;
    if (!cb_group_allow(R.g, R.keys[key], R.klen[key], &t)) {
        w->rejected++;
        return;
    }
    held h = admit(w, &t, key);
    uint64_t x = rnd(w);
    if (x % 16 == 1)
        sched_yield();   /* the call takes a while: more of them overlap */
    if (w->nstash < STASH && (x >> 8) % 16 == 0) {
        w->stash[w->nstash++] = h;
        return;
    }
    finish(w, &h, R.sc->pick_outcome(w, key));
}

/* Record one held-back ticket, now and then: they stay in flight across other calls. */
static void maybe_release(worker *w)
{
    uint64_t x = rnd(w);
    if (!w->nstash || x % 24 != 0)
        return;
    unsigned j = (unsigned)(x >> 8) % w->nstash;
    held h = w->stash[j];
    w->stash[j] = w->stash[--w->nstash];
    finish(w, &h, R.sc->pick_outcome(w, h.key));
}

/* ---- checks at a quiescent point ---- */

typedef struct quiet {
    uint64_t keys, open, key_stale;
} quiet;

static bool each_key(const char *key, size_t len, const cb_stats *st, void *user)
{
    quiet *q = (quiet *)user;
    uint64_t seq;
    uint32_t s = cb__group_find(R.g, key, len, cb__key_hash(R.g, key, len), &seq);
    int k = key_of(key, len);
    if (s == CB__NO_SLOT || k < 0)
        violation("cb_group_each listed key %.*s, which %s", (int)len, key,
                  k < 0 ? "is none of the test's" : "cb__group_find does not find");
    uint64_t tag = slot_tag(s, seq), adm = 0, out[3] = { 0 }, fals = 0, hd = 0;
    for (unsigned i = 0; i < R.threads; i++) {
        const tally *ta = &R.w[i].tab[s];
        if (ta->tag != tag)
            continue;
        adm += ta->adm;
        for (int o = 0; o < 3; o++)
            out[o] += ta->out[o];
        fals += ta->fals;
        hd += ta->held;
    }
    if (st->admitted != adm || st->successes != out[CB_SUCCESS] || st->failures != out[CB_FAILURE] ||
        st->ignored != out[CB_IGNORED] || st->stale != fals || st->in_flight != hd ||
        st->admitted != st->successes + st->failures + st->ignored + st->stale + hd)
        violation("key %.*s (slot %" PRIu32 ", occupant %" PRIu32 ") says admitted %" PRIu64
                  " successes %" PRIu64 " failures %" PRIu64 " ignored %" PRIu64 " stale %" PRIu64
                  " in_flight %" PRIu32 "; its calls were admitted %" PRIu64 " successes %" PRIu64
                  " failures %" PRIu64 " ignored %" PRIu64 " false %" PRIu64 " held %" PRIu64,
                  (int)len, key, s, tag_occ(tag), st->admitted, st->successes, st->failures,
                  st->ignored, st->stale, st->in_flight, adm, out[0], out[1], out[2], fals, hd);
    q->keys++;
    q->open += st->state == CB_OPEN || st->state == CB_HALF_OPEN || st->state == CB_FORCED_OPEN;
    q->key_stale += st->stale;
    return true;
}

static void check_quiet(void)
{
    quiet q = { 0 };
    cb_group_each(R.g, each_key, &q);
    uint64_t held_slots = 0;
    for (uint32_t s = 0; s < R.cfg.capacity; s++)
        held_slots += !(atomic_load(&cb__slot_at(R.g, s)->seq) & 1);
    cb_group_stats gs;
    cb_group_stats_get(R.g, &gs);
    if (gs.keys != q.keys || held_slots != q.keys || gs.keys > R.cfg.capacity ||
        gs.created - gs.evicted != gs.keys || gs.open_keys != q.open)
        violation("quiescent: keys %" PRIu64 ", cb_group_each lists %" PRIu64 ", slots held %"
                  PRIu64 ", capacity %" PRIu32 ", created %" PRIu64 " - evicted %" PRIu64
                  ", open_keys %" PRIu64 " with %" PRIu64 " held keys open", gs.keys, q.keys,
                  held_slots, R.cfg.capacity, gs.created, gs.evicted, gs.open_keys, q.open);
    uint64_t allowed = 0, rt = 0, rf = 0, held = 0, oadm = 0, oout[3] = { 0 }, ofals = 0, oheld = 0,
             kfals = 0, gone = 0;
    for (unsigned i = 0; i < R.threads; i++) {
        const worker *w = &R.w[i];
        allowed += w->allowed;
        rt += w->rec_true;
        rf += w->rec_false;
        held += w->nstash;
        oadm += w->ovf_adm;
        ofals += w->ovf_false;
        oheld += w->ovf_held;
        gone += w->gone_false;
        for (int o = 0; o < 3; o++)
            oout[o] += w->ovf_out[o];
    }
    kfals = rf - ofals;
    if (rt + rf + held != allowed)
        violation("admitted %" PRIu64 " calls, but records true %" PRIu64 " + false %" PRIu64
                  " + held %" PRIu64 " differ", allowed, rt, rf, held);
    cb_stats os;
    cb_stats_get(R.ovf, &os);
    if (os.admitted != oadm || os.successes != oout[0] || os.failures != oout[1] ||
        os.ignored != oout[2] || os.stale != ofals || os.in_flight != oheld ||
        os.admitted + os.rejected != gs.overflow)
        violation("overflow breaker says admitted %" PRIu64 " rejected %" PRIu64 " successes %"
                  PRIu64 " failures %" PRIu64 " ignored %" PRIu64 " stale %" PRIu64 " in_flight %"
                  PRIu32 ", group overflow %" PRIu64 "; its tickets: admitted %" PRIu64
                  " successes %" PRIu64 " failures %" PRIu64 " ignored %" PRIu64 " false %" PRIu64
                  " held %" PRIu64, os.admitted, os.rejected, os.successes, os.failures, os.ignored,
                  os.stale, os.in_flight, gs.overflow, oadm, oout[0], oout[1], oout[2], ofals, oheld);
    /* a false record counts in the group's stale or its own occupant's, never both; one
       whose occupant had left before it began (a later one seen there) in the group's */
    if (gs.stale + q.key_stale > kfals || gs.stale < gone)
        violation("group stale %" PRIu64 " + the held keys' stale %" PRIu64 " > %" PRIu64
                  " records of key tickets that returned false, or < %" PRIu64 " records of "
                  "occupants known gone", gs.stale, q.key_stale, kfals, gone);
    R.quiet++;
}

/* ---- scenarios ---- */

static unsigned churn_key(worker *w)
{
    uint64_t x = rnd(w);
    return x % 4 == 0 ? (unsigned)(x >> 2) % 16 : (unsigned)(x >> 2) % R.sc->nkeys;   /* a hot set */
}

static cb_outcome churn_outcome(worker *w, unsigned key)
{
    uint64_t x = rnd(w);
    if (x % 10 == 0)
        return CB_IGNORED;
    x >>= 4;
    return (key % 16 == 0 ? x % 2 == 0 : x % 256 == 0) ? CB_FAILURE : CB_SUCCESS;
}

static void churn_after(worker *w)
{
    uint64_t x = rnd(w);
    if ((x >> 40) % 8 == 0)   /* some 25 us a call on average (a place a key may lose within
                                  some 80 calls), and a jump now and then */
        advance((x >> 43) % 1024 == 0 ? 3 * MS : (x >> 53) * 200);
    if (w->done % 64 == 0) {
        cb_group_stats gs;
        cb_group_stats_get(R.g, &gs);
        if (gs.keys > R.cfg.capacity || gs.open_keys > R.cfg.capacity)
            violation("keys %" PRIu64 ", open_keys %" PRIu64 " with capacity %" PRIu32, gs.keys,
                      gs.open_keys, R.cfg.capacity);
    }
}

/* evict: the three keys' outcomes, each its own */
static unsigned evict_key(worker *w) { return (unsigned)(rnd(w) % 3); }

static cb_outcome evict_outcome(worker *w, unsigned key)
{
    (void)w;
    return key == 0 ? CB_SUCCESS : key == 1 ? CB_IGNORED : CB_FAILURE;
}

static void evict_look(unsigned k)
{
    cb_stats st;
    if (!cb_group_key_stats(R.g, R.keys[k], R.klen[k], &st))
        return;
    bool bad = k == 0 ? st.failures || st.ignored || st.opens || st.consecutive_failures ||
                            st.window_failures || st.state != CB_CLOSED
             : k == 1 ? st.successes || st.failures || st.opens || st.consecutive_failures ||
                            st.window_failures || st.state != CB_CLOSED
                      : st.successes || st.ignored;
    if (bad)
        violation("key %s shows another key's calls: state %s, successes %" PRIu64 " failures %"
                  PRIu64 " ignored %" PRIu64 " opens %" PRIu64 " consecutive %" PRIu32
                  " window failures %" PRIu32, R.keys[k], cb_state_name(st.state), st.successes,
                  st.failures, st.ignored, st.opens, st.consecutive_failures, st.window_failures);
}

static void evict_after(worker *w)
{
    if (w->done % 4 == 0)
        evict_look((unsigned)(w->done / 4 % 3));
}

static unsigned share_key(worker *w) { return (unsigned)(rnd(w) % R.sc->nkeys); }

static cb_outcome share_outcome(worker *w, unsigned key)
{
    (void)key;
    uint64_t x = rnd(w);
    return x % 16 == 0 ? CB_IGNORED : x % 8 < 5 ? CB_FAILURE : CB_SUCCESS;
}

static void share_after(worker *w)
{
    uint64_t x = rnd(w);
    if ((x >> 40) % 4 == 0)
        advance((x >> 53) * 40);
    cb_group_stats gs;
    cb_group_stats_get(R.g, &gs);
    /* keys are all held from the start and never evicted: the cap is fixed */
    uint64_t cap = (uint64_t)(R.cfg.max_open_share * (double)gs.keys);
    cap = cap < 1 ? 1 : cap;
    if (gs.open_keys > w->worst_open)
        w->worst_open = gs.open_keys;
    /* the states themselves, one slot after another: not one instant (a key may close
       and another open while the scan runs), so a figure, not a check; the quiescent
       checks compare open_keys with the states exactly */
    uint64_t open = 0;
    for (uint32_t s = 0; s < R.cfg.capacity; s++) {
        cb_state st = cb__w_state(slot_word(s));
        open += st == CB_OPEN || st == CB_HALF_OPEN || st == CB_FORCED_OPEN;
    }
    if (open > w->worst_scan)
        w->worst_scan = open;
    if (gs.open_keys > cap || gs.keys != R.sc->nkeys)
        violation("open_keys %" PRIu64 " with %" PRIu64 " keys held: over max(1, floor(%g * keys))"
                  " = %" PRIu64, gs.open_keys, gs.keys, R.cfg.max_open_share, cap);
}

static const scenario scenarios[] = {
    { "churn",
      { .breaker = { .consecutive_failures = 3, .window_calls = 8, .minimum_calls = 4,
                     .failure_rate = 0.5, .open_ms = 1, .backoff = 2, .max_open_ms = 4,
                     .half_open_calls = 2, .probe_timeout_ms = 2 },
        .capacity = 64, .idle_ms = 2 },
      200, false, false, churn_key, churn_outcome, churn_after },
    { "bulkhead",
      { .breaker = { .consecutive_failures = 3, .max_concurrent = 2, .open_ms = 1,
                     .half_open_calls = 2, .probe_timeout_ms = 2 },
        .capacity = 64, .idle_ms = 2 },
      200, false, false, churn_key, churn_outcome, churn_after },
    /* F trips on its first failure and may go once its 1 ms open period has passed */
    { "evict",
      { .breaker = { .consecutive_failures = 1, .open_ms = 1, .half_open_calls = 1,
                     .probe_timeout_ms = 1 },
        .capacity = 2, .idle_ms = 1 },
      3, true, false, evict_key, evict_outcome, evict_after },
    { "share",
      { .breaker = { .consecutive_failures = 2, .open_ms = 1, .backoff = 2, .max_open_ms = 4,
                     .half_open_calls = 2, .probe_timeout_ms = 2 },
        .capacity = 16, .idle_ms = 1000000000, .max_open_share = 0.25 },
      16, false, true, share_key, share_outcome, share_after },
};

/* Events: a key's event names one of the test's keys; in evict, A and B never move and F
   never closes (every one of its records is a failure). */
static void on_event(const cb_event *ev, void *user)
{
    (void)user;
    atomic_fetch_add_explicit(&R.events, 1, memory_order_relaxed);
    if (!R.sc || !ev->key)
        return;   /* the overflow breaker's */
    int k = key_of(ev->key, ev->key_len);
    if (k < 0)
        violation("event %s -> %s (%s) names key '%.*s', none of the test's",
                  cb_state_name(ev->from), cb_state_name(ev->to), cb_reason_name(ev->reason),
                  (int)ev->key_len, ev->key);
    if (!strcmp(R.sc->name, "evict") && (k < 2 || ev->to == CB_CLOSED))
        violation("event %s -> %s (%s), generation %" PRIu64 ", for key %s: another key's move",
                  cb_state_name(ev->from), cb_state_name(ev->to), cb_reason_name(ev->reason),
                  ev->generation, R.keys[k]);
}

static void phase_end(worker *w, bool pruner)
{
    if (!pruner)
        atomic_fetch_add_explicit(&R.arrived, 1, memory_order_relaxed);
    pthread_barrier_wait(&R.barrier);
    if (w->id == 0) {
        check_quiet();
        atomic_store_explicit(&R.arrived, 0, memory_order_relaxed);
    }
    pthread_barrier_wait(&R.barrier);
}

static void *work(void *arg)
{
    worker *w = (worker *)arg;
    const scenario *sc = R.sc;
    bool pruner = sc->pruner && w->id == R.threads - 1;
    uint64_t per_phase = R.calls / PHASES ? R.calls / PHASES : 1;
    for (unsigned p = 0; p < PHASES; p++) {
        if (pruner) {
            /* the clock moves 0..2 ms after every few calls of the others, so each key
               goes idle and is pruned between some of its calls, tickets held or not */
            uint64_t seen = total_done();
            while (atomic_load_explicit(&R.arrived, memory_order_relaxed) < R.workers) {
                uint64_t d = total_done();
                if (d - seen < 4) {
                    sched_yield();
                    continue;
                }
                seen = d;
                advance(rnd(w) % (2 * MS + 1));
                R.pruned += cb_group_prune(R.g);
                R.prunes++;
            }
        } else {
            for (uint64_t i = 0; i < per_phase; i++) {
                call(w, sc->pick_key(w));
                maybe_release(w);
                atomic_store_explicit(&w->done, w->done + 1, memory_order_relaxed);
                sc->after_call(w);
            }
            while (p == PHASES - 1 && w->nstash) {   /* recorded before the last check */
                held *h = &w->stash[--w->nstash];
                finish(w, h, sc->pick_outcome(w, h->key));
            }
        }
        phase_end(w, pruner);
    }
    return NULL;
}

static cb_group *group_new(cb_group_config gc, const char *name)
{
    gc.breaker.name = name;
    gc.breaker.clock_ns = fake_clock;
    gc.breaker.on_event = on_event;
    cb_err err = CB_OK;
    cb_group *g = cb_group_new(&gc, &err);
    if (!g) {
        char msg[200] = "";
        cb_group_config_check(&gc, msg, sizeof msg);
        fprintf(stderr, "cb_group_new(%s): %s: %s\n", name, cb_strerror(err), msg);
        exit(2);
    }
    return g;
}

static void reset(unsigned threads)
{
    memset(&R, 0, sizeof R);
    R.threads = threads;
    const char *env = getenv("STRESS_SEED");
    R.seed = env ? strtoull(env, NULL, 0) : mono_ns();
    atomic_store(&R.now, 1000000 * MS);
    for (unsigned i = 0; i < threads; i++) {
        R.w[i].id = i;
        R.w[i].rng = R.seed * 0x9e3779b97f4a7c15ull + i + 1;
    }
    pthread_barrier_init(&R.barrier, NULL, threads);
}

static void spawn(unsigned threads, void *(*fn)(void *))
{
    R.t0 = mono_ns();
    for (unsigned i = 0; i < threads; i++)
        if (pthread_create(&R.w[i].tid, NULL, fn, &R.w[i]) != 0) {
            perror("pthread_create");
            exit(2);
        }
    for (unsigned i = 0; i < threads; i++)
        pthread_join(R.w[i].tid, NULL);
}

static void run(const scenario *sc, unsigned threads, uint64_t calls)
{
    reset(threads);
    R.sc = sc;
    R.calls = calls;
    R.workers = sc->pruner ? threads - 1 : threads;
    if (!R.workers) {
        fprintf(stderr, "%s needs 2 threads or more\n", sc->name);
        exit(2);
    }
    for (unsigned k = 0; k < sc->nkeys; k++)
        R.klen[k] = sc->nkeys == 3 ? (size_t)snprintf(R.keys[k], sizeof R.keys[k], "%c", "ABF"[k])
                                   : (size_t)snprintf(R.keys[k], sizeof R.keys[k], "key%03u", k);
    R.g = group_new(sc->gc, sc->name);
    R.ovf = cb_group_overflow(R.g);
    cb_group_config_get(R.g, &R.cfg);
    if (sc->precreate)
        for (unsigned k = 0; k < sc->nkeys; k++) {
            cb_ticket t;
            if (!cb_group_allow(R.g, R.keys[k], R.klen[k], &t))
                violation("precreate: key %s rejected", R.keys[k]);
            held h = admit(&R.w[0], &t, k);
            finish(&R.w[0], &h, CB_SUCCESS);
        }
    spawn(threads, work);
    cb_group_stats gs;
    cb_stats os;
    cb_group_stats_get(R.g, &gs);
    cb_stats_get(R.ovf, &os);
    uint64_t adm = 0, rej = 0, gone = 0, probes = 0, worst = 0, scan = 0;
    for (unsigned i = 0; i < threads; i++) {
        adm += R.w[i].allowed, rej += R.w[i].rejected, gone += R.w[i].gone_false;
        probes += R.w[i].probes;
        worst = R.w[i].worst_open > worst ? R.w[i].worst_open : worst;
        scan = R.w[i].worst_scan > scan ? R.w[i].worst_scan : scan;
    }
    printf("figure: group %-8s %u threads x %" PRIu64 " calls%s: %.2f s; created %" PRIu64
           ", evicted %" PRIu64 " (%" PRIu64 " by %" PRIu64 " prunes), keys %" PRIu64 "/%" PRIu32
           ", overflow %" PRIu64 " calls, stale %" PRIu64 " (%" PRIu64 " records of known-gone "
           "occupants), trips held %" PRIu64 ", admitted %" PRIu64 ", rejected %" PRIu64
           ", probes %" PRIu64 ", events %" PRIu64 ", %" PRIu64 " quiescent checks",
           sc->name, R.workers, calls,
#ifdef STRESS_YIELD
           ", yield injection",
#else
           "",
#endif
           (double)(mono_ns() - R.t0) / 1e9, gs.created, gs.evicted, R.pruned, R.prunes, gs.keys,
           R.cfg.capacity, gs.overflow, gs.stale, gone, gs.trips_held, adm, rej, probes,
           atomic_load(&R.events), R.quiet);
    if (sc->precreate)
        printf(", worst seen after a call: open_keys %" PRIu64 ", keys open in a scan of the"
               " slots %" PRIu64 " (cap %" PRIu64 ")", worst, scan,
               (uint64_t)(R.cfg.max_open_share * (double)sc->nkeys));
    printf("\n");
    fflush(stdout);
    if (!strcmp(sc->name, "evict") && (gs.evicted < 100 || gs.stale == 0))
        violation("only %" PRIu64 " evictions and %" PRIu64 " stale records: the slots were not "
                  "reused enough to test anything", gs.evicted, gs.stale);
    if (sc->precreate && gs.trips_held == 0)
        violation("max_open_share held no trip back: the cap was never pressed");
    pthread_barrier_destroy(&R.barrier);
    cb_group_free(R.g);
}

/* ---- creation races ---- */

static void create_key(char *buf, size_t n, uint64_t round, unsigned j)
{
    snprintf(buf, n, "c%" PRIu64 ".%u", round, j);
}

static void *create_work(void *arg)
{
    worker *w = (worker *)arg;
    char key[32];
    for (uint64_t r = 0; r < R.calls; r++) {
        pthread_barrier_wait(&R.barrier);
        for (unsigned i = 0; i < CREATE_KEYS; i++) {   /* each thread in its own order */
            unsigned j = (i + w->id) % CREATE_KEYS;
            create_key(key, sizeof key, r, j);
            cb_ticket t;
            if (!cb_group_allow(R.g, key, strlen(key), &t))
                violation("round %" PRIu64 ": the first use of key %s was rejected", r, key);
            if (t.cb__owner == R.ovf->cb__tag)   /* the lock held too long (a preempted holder) */
                atomic_fetch_add_explicit(&R.create_ovf[j], 1, memory_order_relaxed);
            if (!cb_group_record(R.g, &t, CB_SUCCESS))
                violation("round %" PRIu64 ": the record of key %s returned false", r, key);
            atomic_store_explicit(&w->done, w->done + 1, memory_order_relaxed);
        }
        pthread_barrier_wait(&R.barrier);
        if (w->id == 0) {
            /* every key that a call found a place for was made once, and holds all the
               calls that did not overflow */
            uint64_t made = 0, ovf = 0;
            for (unsigned j = 0; j < CREATE_KEYS; j++) {
                uint64_t n = atomic_exchange_explicit(&R.create_ovf[j], 0, memory_order_relaxed);
                cb_stats st;
                create_key(key, sizeof key, r, j);
                bool held = cb_group_key_stats(R.g, key, strlen(key), &st);
                made += n < R.threads;
                ovf += n;
                if (n < R.threads && (!held || st.admitted != R.threads - n ||
                                      st.successes != R.threads - n || st.rejected != 0))
                    violation("round %" PRIu64 ": key %s %s admitted %" PRIu64 " successes %" PRIu64
                              ", want %" PRIu64 " each (one breaker for the calls that found it)",
                              r, key, held ? "holds" : "is not held;", st.admitted, st.successes,
                              R.threads - n);
            }
            cb_group_stats gs;
            cb_group_stats_get(R.g, &gs);
            R.created += made;
            R.ovf_calls += ovf;
            if (gs.created != R.created || gs.keys > R.cfg.capacity || gs.created - gs.evicted != gs.keys ||
                gs.overflow != R.ovf_calls || cb_group_each(R.g, NULL, NULL) != gs.keys)
                violation("round %" PRIu64 ": created %" PRIu64 " (want %" PRIu64 "), evicted %"
                          PRIu64 ", keys %" PRIu64 " (each lists %zu), capacity %" PRIu32
                          ", overflow %" PRIu64 " (want %" PRIu64 ")", r, gs.created, R.created,
                          gs.evicted, gs.keys, cb_group_each(R.g, NULL, NULL), R.cfg.capacity,
                          gs.overflow, R.ovf_calls);
            advance((R.cfg.idle_ms + 1) * MS);   /* every key of this round idle */
        }
    }
    return NULL;
}

static void run_create(unsigned threads, uint64_t calls)
{
    reset(threads);
    R.calls = calls / 64 ? calls / 64 : 1;   /* rounds */
    cb_group_config gc = { .breaker = { .consecutive_failures = 3 }, .capacity = 8, .idle_ms = 5 };
    R.g = group_new(gc, "create");
    R.ovf = cb_group_overflow(R.g);
    cb_group_config_get(R.g, &R.cfg);
    spawn(threads, create_work);
    cb_group_stats gs;
    cb_group_stats_get(R.g, &gs);
    printf("figure: group create   %u threads x %" PRIu64 " rounds of %u fresh keys%s: %.2f s; "
           "created %" PRIu64 ", evicted %" PRIu64 ", keys %" PRIu64 "/%" PRIu32 ", overflow %"
           PRIu64 "\n", threads, R.calls, CREATE_KEYS,
#ifdef STRESS_YIELD
           ", yield injection",
#else
           "",
#endif
           (double)(mono_ns() - R.t0) / 1e9, gs.created, gs.evicted, gs.keys, R.cfg.capacity,
           gs.overflow);
    fflush(stdout);
    pthread_barrier_destroy(&R.barrier);
    cb_group_free(R.g);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s create|churn|bulkhead|evict|share|all THREADS CALLS\n", argv[0]);
        return 2;
    }
    unsigned threads = (unsigned)strtoul(argv[2], NULL, 0);
    uint64_t calls = strtoull(argv[3], NULL, 0);
    if (threads < 1 || threads >= MAX_THREADS || calls < 1) {   /* room for the pruner */
        fprintf(stderr, "%s: bad arguments\n", argv[0]);
        return 2;
    }
    bool all = !strcmp(argv[1], "all"), any = false;
    if (all || !strcmp(argv[1], "create")) {
        run_create(threads, calls);
        any = true;
    }
    for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++)
        if (all || !strcmp(argv[1], scenarios[i].name)) {
            /* the pruner is one more thread: on top of THREADS callers */
            run(&scenarios[i], scenarios[i].pruner ? threads + 1 : threads, calls);
            any = true;
        }
    if (!any) {
        fprintf(stderr, "%s: no scenario %s\n", argv[0], argv[1]);
        return 2;
    }
    return 0;
}
