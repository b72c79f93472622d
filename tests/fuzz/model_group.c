/* model_group.c - the sequential reference of a keyed group; see model_group.h. Each key's
   breaker is model.c's; what is the group's own is here, in plain loops over the slots. */
#include "model_group.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifndef MODEL_BUG
#define MODEL_BUG 0     /* tests only: 7..9 plant a known bug here, to show fuzz_group catches it:
                           7 the eviction scan starts at slot 0, not at the hand; 8 the open-key
                           cap without its floor of 1; 9 stale records not counted */
#endif

#define NS_PER_MS 1000000u
#define SCAN_PAUSE_MS 10u           /* after a scan found nothing to evict, new keys overflow */
#define MS_MASK ((1ull << 48) - 1)
#define K_MAX 8191u

cb_err mg_resolve(const cb_group_config *in, cb_group_config *out)
{
    cb_group_config c = *in;
    if (!c.breaker.name)
        c.breaker.name = "group";
    cb_err e = model_resolve(&c.breaker, &c.breaker);
    if (e)
        return e;
    if (!c.capacity)
        c.capacity = 1024;
    if (!c.key_max)
        c.key_max = 64;
    if (!c.idle_ms)
        c.idle_ms = 600000;
    if (!c.dominant_min_calls)
        c.dominant_min_calls = 100;
    if (!c.dominant_window_ms)
        c.dominant_window_ms = 60000;
    bool share_ok = (c.max_open_share == 0 || (c.max_open_share > 0 && c.max_open_share <= 1)) &&
                    (c.dominant_share == 0 || (c.dominant_share > 0 && c.dominant_share <= 1));
    if (c.capacity > CB_GROUP_CAPACITY_MAX || c.key_max > CB_GROUP_KEY_MAX || !share_ok ||
        c.dominant_window_ms < 10)
        return CB_EINVAL;
    *out = c;
    return CB_OK;
}

cb_err mg_init(model_group *g, const cb_group_config *cfg, uint64_t now_ns)
{
    memset(g, 0, sizeof *g);
    cb_group_config c;
    cb_err e = mg_resolve(cfg, &c);
    if (e)
        return e;
    if (c.capacity > MG_CAPACITY_MAX || c.key_max > MG_KEY_BYTES)
        abort();                    /* beyond the model's own limits: the driver's mistake */
    strcpy(g->name, c.breaker.name);
    g->tmpl = c.breaker;
    g->tmpl.name = g->name;
    g->capacity = c.capacity;
    g->key_max = c.key_max;
    g->idle_ms = c.idle_ms;
    g->max_open_share = c.max_open_share;
    g->dominant_share = c.dominant_share;
    g->dominant_min_calls = c.dominant_min_calls;
    g->dominant_window_ms = c.dominant_window_ms;
    g->now_ns = now_ns;
    for (uint32_t i = 0; i < g->capacity; i++)
        g->free_stack[i] = g->capacity - 1 - i;   /* the top is slot 0 */
    g->free_n = g->capacity;
    return model_init(&g->overflow, &g->tmpl, now_ns);
}

void mg_free(model_group *g)
{
    for (uint32_t i = 0; i < g->capacity; i++)
        if (g->slot[i].held)
            model_free(&g->slot[i].m);
    model_free(&g->overflow);
}

static uint64_t now_ms(const model_group *g) { return g->now_ns / NS_PER_MS; }

void mg_set_now(model_group *g, uint64_t now_ns)
{
    g->now_ns = now_ns;
    g->overflow.now_ns = now_ns;
    for (uint32_t i = 0; i < g->capacity; i++)
        g->slot[i].m.now_ns = now_ns;
}

void mg_op_begin(model_group *g) { g->nop = 0; }

/* ---- events ---- */

static void note(model_group *g, const model *m, uint64_t before, const mg_slot *sl)
{
    for (uint64_t n = before; n < m->nevents; n++) {
        mg_event e = {.ev = m->events[n % MODEL_HISTORY], .keyed = sl != NULL};
        e.ev.name = g->name;
        e.ev.key = NULL;
        e.ev.key_len = 0;
        if (sl) {
            memcpy(e.key, sl->key, sl->len);
            e.ev.key_len = sl->len;
            g->hist[g->nhist++ % MG_HISTORY] = e;
        }
        if (g->nop < MG_OP_EVENTS)
            g->op[g->nop++] = e;
    }
}

/* ---- keys and slots ---- */

static bool key_ok(const model_group *g, const char *key, size_t len)
{
    return key && len >= 1 && len <= g->key_max;
}

int mg_find(const model_group *g, const char *key, size_t len)
{
    if (!key_ok(g, key, len))
        return -1;
    for (uint32_t i = 0; i < g->capacity; i++)
        if (g->slot[i].held && g->slot[i].len == len && !memcmp(g->slot[i].key, key, len))
            return (int)i;
    return -1;
}

static bool is_open(cb_state s) { return s == CB_OPEN || s == CB_HALF_OPEN || s == CB_FORCED_OPEN; }

static uint64_t keys_held(const model_group *g)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < g->capacity; i++)
        n += g->slot[i].held;
    return n;
}

static uint64_t keys_open(const model_group *g)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < g->capacity; i++)
        n += g->slot[i].held && is_open(g->slot[i].m.state);
    return n;
}

/* May the key go: idle long enough, and forgetting it changes nothing a caller could see
   (CLOSED with no failure run and no failure or slow call in its window, or OPEN or
   HALF_OPEN past its deadline). Manual states stay. */
static bool evictable(const model_group *g, uint32_t s, uint64_t ms)
{
    const mg_slot *sl = &g->slot[s];
    if (!sl->held || ms < sl->last_ms || ms - sl->last_ms < g->idle_ms)
        return false;
    cb_stats st;
    model_stats(&sl->m, &st);
    switch (sl->m.state) {
    case CB_CLOSED:
        return sl->m.run == 0 && st.window_failures == 0 && st.window_slow == 0;
    case CB_OPEN:
        return ms >= sl->m.open_until_ms;
    case CB_HALF_OPEN:
        return ms >= sl->m.round_until_ms;
    default:
        return false;
    }
}

static void evict(model_group *g, uint32_t s)
{
    mg_slot *sl = &g->slot[s];
    sl->last_gen = sl->m.gen + 1;   /* the slot's word moves on to "gone" */
    sl->held = false;
    model_free(&sl->m);
    g->evicted++;
}

/* A slot for a new key: the free stack's top, else the first evictable key from the hand
   on (which is evicted), else none; none without a scan within SCAN_PAUSE_MS of a failed one. */
static int place(model_group *g, uint64_t ms)
{
    if (g->free_n)
        return (int)g->free_stack[--g->free_n];
    if (g->scan_failed_ms && ms >= g->scan_failed_ms && ms - g->scan_failed_ms < SCAN_PAUSE_MS)
        return -1;
    for (uint32_t i = 0; i < g->capacity; i++) {
        uint32_t s = (uint32_t)(((MODEL_BUG == 7 ? 0 : g->hand) + i) % g->capacity);
        if (evictable(g, s, ms)) {
            evict(g, s);
            g->hand = s + 1;
            return (int)s;
        }
    }
    g->scan_failed_ms = ms ? ms : 1;
    return -1;
}

static void occupy(model_group *g, uint32_t s, const char *key, size_t len, uint64_t ms)
{
    mg_slot *sl = &g->slot[s];
    uint32_t gen = sl->last_gen + 1;
    memset(sl, 0, sizeof *sl);
    if (model_init(&sl->m, &g->tmpl, g->now_ns))
        abort();
    sl->held = true;
    sl->occupant = ++g->occupants;
    memcpy(sl->key, key, len);
    sl->len = len;
    sl->m.gen = gen;
    sl->m.state_since_ns = ms * NS_PER_MS;     /* a new key's time is the group's, in ms */
    if (g->tmpl.window_ms)                     /* a fresh window, at the clock's epoch */
        sl->m.newest_epoch = g->now_ns / ((uint64_t)g->tmpl.window_ms * NS_PER_MS /
                                          g->tmpl.window_buckets);
    sl->last_ms = ms;
    g->created++;
}

/* The key's slot, made if new and a place can be had; -1 otherwise. */
static int hold(model_group *g, const char *key, size_t len, uint64_t ms)
{
    int s = mg_find(g, key, len);
    if (s < 0 && (s = place(g, ms)) >= 0)
        occupy(g, (uint32_t)s, key, len, ms);
    return s;
}

/* ---- the max_open_share cap ---- */

static bool cap_full(const model_group *g)
{
    if (g->max_open_share <= 0)
        return false;
    uint64_t cap = (uint64_t)(g->max_open_share * (double)keys_held(g));
    if (cap < 1 && MODEL_BUG != 8)
        cap = 1;
    return keys_open(g) >= cap;
}

/* The fields a transition moves (model.c's transition()), to take one back. */
typedef struct moved {
    uint32_t gen, k, taken, succeeded;
    cb_state state;
    uint64_t open_until_ms, round_until_ms, state_since_ns, opens, nevents;
    cb_event events[MODEL_HISTORY];
} moved;

static void moved_save(const model *m, moved *v)
{
    *v = (moved){m->gen, m->k, m->taken, m->succeeded, m->state, m->open_until_ms,
                 m->round_until_ms, m->state_since_ns, m->opens, m->nevents, {{0}}};
    memcpy(v->events, m->events, sizeof v->events);
}

static void moved_restore(model *m, const moved *v)
{
    m->gen = v->gen, m->k = v->k, m->taken = v->taken, m->succeeded = v->succeeded;
    m->state = v->state;
    m->open_until_ms = v->open_until_ms, m->round_until_ms = v->round_until_ms;
    m->state_since_ns = v->state_since_ns, m->opens = v->opens, m->nevents = v->nevents;
    memcpy(m->events, v->events, sizeof v->events);
}

/* ---- calls ---- */

static double base_ms(const cb_config *c, uint32_t k)
{
    double pow = 1, b = c->backoff;
    for (uint32_t e = k; e; e >>= 1, b *= b)
        if (e & 1)
            pow *= b;
    return fmin(c->open_ms * pow, c->max_open_ms);
}

static uint32_t next_k(const cb_config *c, uint32_t k)
{
    return k < K_MAX && base_ms(c, k) < c->max_open_ms ? k + 1 : k;
}

/* The key in slot s opens for its share of the group's recent calls (if CLOSED, and the
   cap lets it); trips within two windows and a period of the last go a backoff step up. */
static void dominant_trip(model_group *g, uint32_t s, uint64_t ms)
{
    mg_slot *sl = &g->slot[s];
    model *m = &sl->m;
    if (m->state != CB_CLOSED)
        return;
    uint32_t dk = (uint32_t)(sl->dom >> 48);
    uint32_t k = sl->dom && ms - (sl->dom & MS_MASK) <= 2ull * g->dominant_window_ms +
                                                        model_period_ms(&g->tmpl, dk, 0)
                     ? next_k(&g->tmpl, dk) : 0;
    if (cap_full(g)) {
        g->trips_held++;
        return;
    }
    uint64_t before = m->nevents;
    model_set_state(m, CB_OPEN);       /* then made automatic, with its own k */
    cb_event *e = &m->events[(m->nevents - 1) % MODEL_HISTORY];
    m->k = k;
    e->reason = CB_REASON_DOMINANT_SHARE;
    e->open_ms = model_period_ms(&m->cfg, k, m->gen);
    m->open_until_ms = (g->now_ns + e->open_ms * NS_PER_MS + NS_PER_MS - 1) / NS_PER_MS;
    note(g, m, before, sl);
    sl->dom = (uint64_t)k << 48 | (ms & MS_MASK);
}

/* Every tenth of the window: a key with dominant_share of the group's admitted calls in
   the last ten rounds (once there are dominant_min_calls of them) opens. */
static void dominance(model_group *g, uint64_t ms)
{
    if (ms < g->dom_next_ms)
        return;
    g->dom_next_ms = ms + g->dominant_window_ms / 10;
    uint64_t round = g->dom_round++ % 10, total = 0;
    for (uint32_t s = 0; s < g->capacity; s++)
        if (g->slot[s].held)
            total += (uint32_t)g->slot[s].m.admitted - g->slot[s].rounds[round];
    for (uint32_t s = 0; s < g->capacity; s++) {
        mg_slot *sl = &g->slot[s];
        if (!sl->held)
            continue;
        uint32_t now_n = (uint32_t)sl->m.admitted, recent = now_n - sl->rounds[round];
        sl->rounds[round] = now_n;
        if (total >= g->dominant_min_calls && recent > 0 &&
            (double)recent >= g->dominant_share * (double)total)
            dominant_trip(g, s, ms);
    }
}

bool mg_allow(model_group *g, const char *key, size_t len, mg_ticket *t)
{
    uint64_t ms = now_ms(g);
    memset(t, 0, sizeof *t);
    int s = key_ok(g, key, len) ? hold(g, key, len, ms) : -1;
    if (s < 0) {
        g->overflowed++;
        uint64_t before = g->overflow.nevents;
        bool ok = model_allow(&g->overflow, &t->t);
        note(g, &g->overflow, before, NULL);
        return ok;
    }
    mg_slot *sl = &g->slot[s];
    sl->last_ms = ms;
    uint64_t before = sl->m.nevents;
    bool ok = model_allow(&sl->m, &t->t);  /* OPEN -> HALF_OPEN, HALF_OPEN -> OPEN: no cap */
    note(g, &sl->m, before, sl);
    t->occupant = sl->occupant;
    t->slot = (uint32_t)s;
    if (g->dominant_share > 0)
        dominance(g, ms);
    return ok;
}

bool mg_record(model_group *g, mg_ticket *t, cb_outcome o)
{
    if (!t->t.admitted)                /* rejected or spent: no ticket */
        return false;
    if (!t->occupant) {
        uint64_t before = g->overflow.nevents;
        bool ok = model_record(&g->overflow, &t->t, o);
        note(g, &g->overflow, before, NULL);
        return ok;
    }
    mg_slot *sl = NULL;
    for (uint32_t i = 0; i < g->capacity; i++)
        if (g->slot[i].held && g->slot[i].occupant == t->occupant)
            sl = &g->slot[i];
    if (!sl) {                         /* its key was evicted: stale, once */
        if ((unsigned)o > CB_IGNORED)
            return false;
        t->t.admitted = false;
        g->stale += MODEL_BUG != 9;
        return false;
    }
    sl->last_ms = now_ms(g);
    model *m = &sl->m;
    moved before, after;
    moved_save(m, &before);
    cb_stats was, now;
    model_stats(m, &was);
    bool ok = model_record(m, &t->t, o);
    if (before.state == CB_CLOSED && m->state == CB_OPEN) {
        /* an automatic trip: held back if the open keys are at the cap (counted with this
           key still CLOSED); then the key stays CLOSED, its run and window as they are now */
        moved_save(m, &after);
        moved_restore(m, &before);
        model_stats(m, &now);
        /* as cb.h does: a count window whose figures this record left as they were is not
           tried again (a trip held by max_open_share on a full window waits for a change) */
        bool same = m->cfg.window_calls && now.window_calls == was.window_calls &&
                    now.window_failures == was.window_failures && now.window_slow == was.window_slow;
        if (same && after.events[(after.nevents - 1) % MODEL_HISTORY].reason != CB_REASON_CONSECUTIVE_FAILURES)
            return ok;
        if (cap_full(g)) {
            g->trips_held++;
            return ok;
        }
        moved_restore(m, &after);
    }
    note(g, m, before.nevents, sl);
    return ok;
}

cb_state mg_get_state(const model_group *g, const char *key, size_t len)
{
    int s = mg_find(g, key, len);
    return s < 0 ? CB_CLOSED : g->slot[s].m.state;
}

cb_err mg_set_state(model_group *g, const char *key, size_t len, cb_state st)
{
    if (!key_ok(g, key, len) || (unsigned)st > CB_METRICS_ONLY)
        return CB_EINVAL;
    uint64_t ms = now_ms(g);
    int s = hold(g, key, len, ms);
    if (s < 0)
        return CB_ENOMEM;
    mg_slot *sl = &g->slot[s];
    sl->last_ms = ms;
    uint64_t before = sl->m.nevents;
    model_set_state(&sl->m, st);       /* manual: never held back by the cap */
    note(g, &sl->m, before, sl);
    return CB_OK;
}

/* A key's breaker keeps when its state began in its deadline word, in whole ms: the
   transition's time rounded up (a creation's is a whole ms already). */
void mg_slot_stats(const mg_slot *sl, cb_stats *st)
{
    model_stats(&sl->m, st);
    st->state_since_ns = (st->state_since_ns + NS_PER_MS - 1) / NS_PER_MS * NS_PER_MS;
}

bool mg_key_stats(const model_group *g, const char *key, size_t len, cb_stats *st)
{
    int s = mg_find(g, key, len);
    if (s < 0)
        return false;
    mg_slot_stats(&g->slot[s], st);
    return true;
}

/* Evict every evictable key, slot 0 first; their slots go onto the free stack. */
size_t mg_prune(model_group *g)
{
    uint64_t ms = now_ms(g);
    size_t n = 0;
    for (uint32_t s = 0; s < g->capacity; s++)
        if (evictable(g, s, ms)) {
            evict(g, s);
            if (g->free_n < g->capacity)
                g->free_stack[g->free_n++] = s;
            n++;
        }
    g->scan_failed_ms = 0;
    return n;
}

void mg_stats(const model_group *g, cb_group_stats *s)
{
    *s = (cb_group_stats){
        .keys = keys_held(g), .open_keys = keys_open(g), .created = g->created,
        .evicted = g->evicted, .overflow = g->overflowed, .trips_held = g->trips_held,
        .stale = g->stale,
    };
}
