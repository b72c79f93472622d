/* fuzz_group.c - differential fuzzing of keyed groups: cb_group against the reference
   model (tests/fuzz/model_group.c, one model.c breaker per key).

   The input is a group config (capacity 1..8, a short key_max, a short idle time, a
   template with a run rule and/or a count or time window, slow calls, a bulkhead,
   optionally max_open_share and dominant_share, now and then one field out of range),
   the group's hash seed, then operations on 14 keys (some too long for key_max) and the
   empty and NULL ones: allow, record a held ticket (again, or with an outcome outside the
   enum), clock steps (onto a key's deadline or idle end too), prune, set_state, a
   history read. After every operation: return values, the group's stats, get_state of
   every key, key_stats of the operation's key, every held key's slot and stats
   (cb_group_each), the overflow breaker's stats, the events delivered and the newest
   entries of the group's history.

   Run with FUZZ_TRACE=1 to print the decoded program (to turn a crash into a report). */
#define CB_IMPLEMENTATION
#include "cb.h"
#include "fuzz_input.h"
#include "model_group.h"

#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


#define MAX_TICKETS 16
#define MAX_OPS 400
#define MAX_GOT 32

static uint64_t clock_now;

/* cb.h draws a group's hash seed by getrandom: this one gives the input's while a group
   is made, so that a run (and the index's probe runs and tombstones) can be replayed. */
static bool seeding;
static uint64_t hash_seed;

ssize_t getrandom(void *buf, size_t len, unsigned flags)
{
    (void)flags;
    if (seeding && len == sizeof hash_seed) {
        memcpy(buf, &hash_seed, len);
        return (ssize_t)len;
    }
    int fd = open("/dev/urandom", O_RDONLY);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, len);
    if (fd >= 0)
        close(fd);
    return n;
}

typedef struct got_event { cb_event ev; char key[MG_KEY_BYTES]; bool keyed; } got_event;
static got_event got[MAX_GOT];     /* the events of the operation */
static size_t ngot;

static uint64_t fake_clock(void *user)
{
    (void)user;
    return clock_now;
}

static void on_event(const cb_event *ev, void *user)
{
    (void)user;
    if (ngot < MAX_GOT) {
        got_event *e = &got[ngot];
        e->ev = *ev;
        e->keyed = ev->key != NULL;
        if (ev->key && ev->key_len <= MG_KEY_BYTES)
            memcpy(e->key, ev->key, ev->key_len);
    }
    ngot++;
}


static int op_no;
#define FAIL(...) (fprintf(stderr, "fuzz_group: op %d: ", op_no), fprintf(stderr, __VA_ARGS__), abort())
#define EQ(what, a, b)                                                                  \
    do {                                                                                \
        uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                                \
        if (a_ != b_)                                                                   \
            FAIL("%s: cb.h %" PRIu64 ", model %" PRIu64 "\n", what, a_, b_);            \
    } while (0)
#define EQ2(who, what, a, b)                                                            \
    do {                                                                                \
        uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                                \
        if (a_ != b_)                                                                   \
            FAIL("%s: %s: cb.h %" PRIu64 ", model %" PRIu64 "\n", who, what, a_, b_);   \
    } while (0)

/* The keys: short, binary (an embedded NUL), two words long, differing in the second
   word, a whole word; then the empty key and a NULL one (both go to the overflow breaker). */
typedef struct fkey { const char *s; size_t len; } fkey;
static const fkey keys[] = {
    {"a", 1}, {"b", 1}, {"c", 1}, {"a\0", 2}, {"dd", 2}, {"abcdefgh1", 9}, {"abcdefgh2", 9},
    {"0123456789abcdefXY", 18}, {"e", 1}, {"f", 1}, {"g", 1}, {"hh", 2}, {"ijk", 3},
    {"lmnopqrs", 8}, {"", 0}, {NULL, 1},
};
#define NKEYS (sizeof keys / sizeof keys[0])   /* 16: arg % 16 picks one */
#define NREAL 14                   /* keys[0..13] may be valid; the churn makes tombstones */

static char kbuf[NKEYS][40];       /* printable names, for messages */
static const char *kname(size_t i) { return kbuf[i]; }

static void knames(void)
{
    for (size_t i = 0; i < NKEYS; i++) {
        char *o = kbuf[i];
        if (!keys[i].s) {
            strcpy(o, "key NULL");
            continue;
        }
        o += sprintf(o, "key \"");
        for (size_t j = 0; j < keys[i].len; j++)
            o += keys[i].s[j] ? sprintf(o, "%c", keys[i].s[j]) : sprintf(o, "\\0");
        strcpy(o, "\"");
    }
}

static double fraction(input *in) { return (1 + byte(in) % 100) / 100.0; }

static cb_group_config decode_config(input *in)
{
    cb_group_config gc = {0};
    cb_config *c = &gc.breaker;
    uint8_t rules = byte(in), rec = byte(in), grp = byte(in);
    if (rules & 1)
        c->consecutive_failures = 1 + byte(in) % 4;
    if (rules & 2)
        c->failures_in_window = 1 + byte(in) % 4;
    if (rules & 4)
        c->failure_rate = fraction(in);
    if (rules & 8)
        c->slow_call_ms = 1 + byte(in) % 20;
    if (rules & 16)
        c->slow_call_rate = fraction(in);
    if (rules & 32)
        c->max_concurrent = 1 + byte(in) % 3;
    switch (rules >> 6) {
    case 1: case 3:
        c->window_calls = 1 + byte(in) % 8;
        if (c->failures_in_window > c->window_calls)
            c->failures_in_window = c->window_calls;
        c->minimum_calls = byte(in) % (c->window_calls + 1);
        break;
    case 2:
        c->window_ms = 1 + byte(in) * 2u;
        c->window_buckets = byte(in) % 5;
        if (c->window_buckets > c->window_ms)
            c->window_buckets = c->window_ms;
        c->minimum_calls = byte(in) % 6;
        break;
    default:
        break;
    }
    c->open_ms = 1 + byte(in);
    if (rec & 1)
        c->backoff = 1 + byte(in) / 32.0;
    if (rec & 2)
        c->max_open_ms = c->open_ms + byte(in) * 8u;
    if (rec & 4)
        c->jitter = byte(in) / 256.0;
    if (rec & 8)
        c->half_open_calls = byte(in) % 4;
    c->probe_timeout_ms = rec & 16 ? 1 + byte(in) : 0;
    if (rec & 32)
        c->seed = bytes(in, 8);
    c->on_event = on_event;
    c->clock_ns = fake_clock;

    gc.capacity = 1 + byte(in) % 8;
    gc.key_max = byte(in) % 21;    /* 0: the default (64) */
    gc.idle_ms = byte(in);         /* 0: the default (600 s) */
    if (grp & 1)
        gc.max_open_share = fraction(in);
    if (grp & 2) {
        gc.dominant_share = fraction(in);
        gc.dominant_min_calls = byte(in) % 24;
        gc.dominant_window_ms = grp & 4 ? 0 : 10 + byte(in);
    }
    if (grp & 8) {                 /* one group field out of its range */
        uint8_t b = byte(in);
        switch (b % 6) {
        case 0: gc.capacity = CB_GROUP_CAPACITY_MAX + 1 + b / 6; break;
        case 1: gc.key_max = CB_GROUP_KEY_MAX + 1 + b / 6; break;
        case 2: gc.max_open_share = b & 64 ? NAN : 1 + (1 + b) / 256.0; break;
        case 3: gc.dominant_share = -(1 + b) / 256.0; break;
        case 4: gc.dominant_window_ms = 1 + b % 9; break;
        default: gc.max_open_share = -(1 + b) / 256.0; break;
        }
    }
    return gc;
}

static void compare_stats(const char *who, const cb_stats *s, const cb_stats *e)
{
#define SEQ(f) EQ2(who, #f, s->f, e->f)
    SEQ(state);
    SEQ(generation);
    SEQ(admitted);
    SEQ(rejected);
    SEQ(successes);
    SEQ(failures);
    SEQ(ignored);
    SEQ(slow);
    SEQ(stale);
    SEQ(opens);
    SEQ(consecutive_failures);
    SEQ(window_calls);
    SEQ(window_failures);
    SEQ(window_slow);
    SEQ(in_flight);
    SEQ(state_since_ns);
    SEQ(last_failure_ns);
    SEQ(open_until_ns);
#undef SEQ
}

typedef struct each_ctx { const model_group *m; uint32_t next; } each_ctx;

/* cb_group_each: the keys held, in slot order, with their stats. */
static bool each_fn(const char *key, size_t len, const cb_stats *s, void *user)
{
    each_ctx *x = user;
    while (x->next < x->m->capacity && !x->m->slot[x->next].held)
        x->next++;
    if (x->next == x->m->capacity)
        FAIL("cb_group_each: a key more than the model holds (%zu bytes)\n", len);
    const mg_slot *sl = &x->m->slot[x->next++];
    if (len != sl->len || memcmp(key, sl->key, len))
        FAIL("cb_group_each: slot %u holds another key than the model's (%zu bytes, model %zu)\n",
             x->next - 1, len, sl->len);
    cb_stats e;
    mg_slot_stats(sl, &e);
    char who[48];
    snprintf(who, sizeof who, "slot %u key stats", x->next - 1);
    compare_stats(who, s, &e);
    return true;
}

static void compare_event(const char *who, const cb_event *a, bool akeyed, const char *akey,
                          const mg_event *b)
{
    if (strcmp(a->name, b->ev.name))
        FAIL("%s name: cb.h %s, model %s\n", who, a->name, b->ev.name);
#define VEQ(f) EQ2(who, #f, a->f, b->ev.f)
    VEQ(from);
    VEQ(to);
    VEQ(reason);
    VEQ(generation);
    VEQ(at_ns);
    VEQ(open_ms);
    EQ2(who, "of a key", akeyed, b->keyed);
    if (b->keyed) {
        VEQ(key_len);
        if (memcmp(akey, b->key, b->ev.key_len))
            FAIL("%s key: another key than the model's\n", who);
    }
#undef VEQ
}

#define HIST_CHECK 4

static void compare_history(cb_group *g, const model_group *m, size_t max)
{
    static cb_event h[MG_HISTORY];
    static char kb[MG_HISTORY * CB_GROUP_KEY_MAX];
    uint64_t want = m->nhist < max ? m->nhist : max;
    EQ("group history length", cb_group_history(g, h, max, kb, sizeof kb), want);
    for (uint64_t i = 0; i < want; i++)
        compare_event("group history", &h[i], h[i].key != NULL, h[i].key,
                      &m->hist[(m->nhist - want + i) % MG_HISTORY]);
}

static void compare(cb_group *g, model_group *m, size_t ki)
{
    cb_group_stats s, e;
    cb_group_stats_get(g, &s);
    mg_stats(m, &e);
    EQ("group keys", s.keys, e.keys);
    EQ("group open_keys", s.open_keys, e.open_keys);
    EQ("group created", s.created, e.created);
    EQ("group evicted", s.evicted, e.evicted);
    EQ("group overflow", s.overflow, e.overflow);
    EQ("group trips_held", s.trips_held, e.trips_held);
    EQ("group stale", s.stale, e.stale);

    /* every key's lookup; the stats of the operation's key by lookup, every held key's
       by cb_group_each below */
    for (size_t i = 0; i < NKEYS; i++)
        EQ2(kname(i), "get_state", cb_group_get_state(g, keys[i].s, keys[i].len),
            mg_get_state(m, keys[i].s, keys[i].len));
    cb_stats a, b;
    bool ha = cb_group_key_stats(g, keys[ki].s, keys[ki].len, &a);
    EQ2(kname(ki), "key_stats: held", ha, mg_key_stats(m, keys[ki].s, keys[ki].len, &b));
    if (ha)
        compare_stats(kname(ki), &a, &b);
    each_ctx x = {m, 0};
    EQ("cb_group_each count", cb_group_each(g, each_fn, &x), e.keys);

    cb_stats os, oe;
    cb_stats_get(cb_group_overflow(g), &os);
    model_stats(&m->overflow, &oe);
    compare_stats("overflow", &os, &oe);
    EQ("overflow retry_after_ms", cb_retry_after_ms(cb_group_overflow(g)),
       model_retry_after_ms(&m->overflow));

    EQ("events delivered", ngot, m->nop);
    for (size_t i = 0; i < ngot && i < MAX_GOT; i++)
        compare_event("event", &got[i].ev, got[i].keyed, got[i].key, &m->op[i]);
    ngot = 0;
    compare_history(g, m, HIST_CHECK);
}

typedef struct held { cb_ticket c; mg_ticket m; } held;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    trace = getenv("FUZZ_TRACE") != NULL;
    knames();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    input in = {data, size};
    cb_group_config cfg = decode_config(&in);
    uint8_t start = byte(&in);
    clock_now = (uint64_t)(start & 0x7f) << 30;   /* 0 .. 136 s */
    hash_seed = 0x9e3779b97f4a7c15ull * (1 + byte(&in));
    ngot = 0;
    op_no = -1;

    static model_group m;
    cb_err merr = mg_init(&m, &cfg, clock_now);
    cb_err err = cb_group_config_check(&cfg, NULL, 0);
    EQ("config validity", err, merr);
    if (merr) {
        cb_group *none = cb_group_new(&cfg, &err);
        EQ("cb_group_new of an invalid config", none != NULL || err != CB_EINVAL, 0);
        return 0;
    }
    seeding = true;
    cb_group *g = cb_group_new(&cfg, &err);
    seeding = false;
    if (!g)
        FAIL("cb_group_new: %s\n", cb_strerror(err));
    cb_group_config rc;
    cb_group_config_get(g, &rc);
    EQ("config capacity", rc.capacity, m.capacity);
    EQ("config key_max", rc.key_max, m.key_max);
    EQ("config idle_ms", rc.idle_ms, m.idle_ms);
    EQ("config max_open_share", rc.max_open_share == m.max_open_share, 1);
    EQ("config dominant_share", rc.dominant_share == m.dominant_share, 1);
    EQ("config dominant_min_calls", rc.dominant_min_calls, m.dominant_min_calls);
    EQ("config dominant_window_ms", rc.dominant_window_ms, m.dominant_window_ms);
    /* seed 0: the group drew one for its keys and its overflow breaker; the model follows */
    EQ("template seed kept or drawn", m.tmpl.seed ? rc.breaker.seed == m.tmpl.seed : rc.breaker.seed != 0, 1);
    m.tmpl.seed = m.overflow.cfg.seed = rc.breaker.seed;
    const cb_config *t = &m.tmpl;
    say("group: capacity %u key_max %u idle %u ms, max_open_share %g, dominant %g of %u calls"
        " in %u ms\n", m.capacity, m.key_max, m.idle_ms, m.max_open_share, m.dominant_share,
        m.dominant_min_calls, m.dominant_window_ms);
    say("template: cf %u rate %g count %u slow %u/%g min %u max_conc %u win %u calls/%u ms/%u"
        " open %u backoff %g max %u jitter %g probes %u timeout %u\n",
        t->consecutive_failures, t->failure_rate, t->failures_in_window, t->slow_call_ms,
        t->slow_call_rate, t->minimum_calls, t->max_concurrent, t->window_calls, t->window_ms,
        t->window_buckets, t->open_ms, t->backoff, t->max_open_ms, t->jitter,
        t->half_open_calls, t->probe_timeout_ms);
    say("clock %" PRIu64 " ns, hash seed %" PRIu64 "\n", clock_now, hash_seed);
    compare(g, &m, 0);

    held tickets[MAX_TICKETS];
    size_t nt = 0;
    for (op_no = 0; op_no < MAX_OPS && in.n; op_no++) {
        uint8_t code = byte(&in), arg = byte(&in);
        size_t ki = arg % NKEYS;
        const fkey *k = &keys[ki];
        mg_set_now(&m, clock_now);
        mg_op_begin(&m);
        switch (code % 16) {
        case 0: case 1: case 2: case 3: {   /* allow; a full hand abandons its oldest */
            if (nt == MAX_TICKETS)
                memmove(tickets, tickets + 1, --nt * sizeof *tickets);
            held *h = &tickets[nt++];
            bool a = cb_group_allow(g, k->s, k->len, &h->c);
            bool e = mg_allow(&m, k->s, k->len, &h->m);
            say("allow %s -> %d\n", kname(ki), e);
            EQ("cb_group_allow", a, e);
            break;
        }
        case 4: case 5: case 6: {  /* record the ticket picked by arg */
            if (!nt)
                break;
            /* arg's top bit: an outcome outside the enum, which leaves the call in flight */
            cb_outcome o = (cb_outcome)(arg & 0x80 ? 3 + code % 2 : code % 16 - 4);
            /* code's upper bits: keep it in hand, so a later record is a second one */
            bool keep = (code / 16) & 1;
            size_t i = (arg & 0x7f) % nt;
            held copy = tickets[i], *h = keep ? &tickets[i] : &copy;
            if (o <= CB_IGNORED && !keep)
                tickets[i] = tickets[--nt];
            bool a = cb_group_record(g, &h->c, o), e = mg_record(&m, &h->m, o);
            say("record #%zu%s %s (%d) -> %d\n", i, keep ? " (kept)" : "", cb_outcome_name(o),
                (int)o, e);
            EQ("cb_group_record", a, e);
            break;
        }
        case 7:                    /* sub-millisecond step */
            clock_now += arg * 9973u;
            say("clock +%u ns\n", arg * 9973u);
            break;
        case 8:                    /* milliseconds */
            clock_now += arg * 1000000ull;
            say("clock +%u ms\n", arg);
            break;
        case 9:                    /* tens of ms: about idle times */
            clock_now += arg * 10000000ull;
            say("clock +%u0 ms\n", arg);
            break;
        case 10:                   /* seconds */
            clock_now += arg * 1000000000ull;
            say("clock +%u s\n", arg);
            break;
        case 11:                   /* backwards */
            clock_now -= clock_now < arg * 1000000ull ? clock_now : arg * 1000000ull;
            say("clock -%u ms\n", arg);
            break;
        case 12: {                 /* onto a key's deadline or idle end, a step before or after */
            int s = ki < NREAL ? mg_find(&m, k->s, k->len) : -1;
            if (s < 0)
                break;
            const mg_slot *sl = &m.slot[s];
            int64_t d = (int64_t)((code / 16) % 3) - 1;
            uint64_t at;
            if (sl->m.state == CB_OPEN)
                at = sl->m.open_until_ms * 1000000ull + d;
            else if (sl->m.state == CB_HALF_OPEN)
                at = sl->m.round_until_ms * 1000000ull + d;
            else
                at = (sl->last_ms + m.idle_ms) * 1000000ull + d * 1000000;
            if (at > clock_now)
                clock_now = at;
            say("clock = %s's deadline %+d -> %" PRIu64 " ns\n", kname(ki), (int)d, clock_now);
            break;
        }
        case 13: {
            size_t a = cb_group_prune(g), e = mg_prune(&m);
            say("prune -> %zu\n", e);
            EQ("cb_group_prune", a, e);
            break;
        }
        case 14: {                 /* set_state; states 6 and 7 are not states */
            cb_state s = (cb_state)((code / 16) % 8);
            cb_err a = cb_group_set_state(g, k->s, k->len, s);
            cb_err e = mg_set_state(&m, k->s, k->len, s);
            say("set_state %s %s -> %s\n", kname(ki), cb_state_name(s), cb_strerror(e));
            EQ("cb_group_set_state", a, e);
            break;
        }
        default:                   /* looks (compared after every op anyway), and a history read */
            say("history\n");
            compare_history(g, &m, MG_HISTORY);
            break;
        }
        mg_set_now(&m, clock_now);
        compare(g, &m, ki);
    }
    op_no = MAX_OPS;
    compare_history(g, &m, MG_HISTORY);
    cb_group_free(g);
    mg_free(&m);
    return 0;
}
