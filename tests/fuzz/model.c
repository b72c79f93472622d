/* model.c - the sequential reference; see model.h. Written from docs/semantics.md and
   docs/semantics.md alone, clarity first: windows are lists of calls, counts are sums. */
#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifndef MODEL_BUG
#define MODEL_BUG 0     /* tests only: 1..6 plant a known bug, to show the fuzzers catch it */
#endif

#define NS_PER_MS 1000000u
#define K_MAX 8191u
#define PROBES_MAX 255u
#define GOLDEN 0x9E3779B97F4A7C15u

static uint32_t def_u32(uint32_t v, uint32_t dflt) { return v ? v : dflt; }
static uint32_t min_u32(uint32_t a, uint32_t b) { return a < b ? a : b; }

static uint64_t splitmix64(uint64_t x)
{
    uint64_t z = x + GOLDEN;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

static bool is_fraction(double v) { return v >= 0 && v <= 1; }   /* false for NaN */

cb_err model_resolve(const cb_config *in, cb_config *out)
{
    cb_config c = *in;
    if (!c.name)
        c.name = "breaker";
    size_t len = 0;
    while (len < 64 && c.name[len])
        len++;
    if (len < 1 || len > 63)
        return CB_EINVAL;
    for (size_t i = 0; i < len; i++)
        if (c.name[i] < 0x20 || c.name[i] > 0x7e)
            return CB_EINVAL;

    if (!is_fraction(c.failure_rate) || !is_fraction(c.slow_call_rate))
        return CB_EINVAL;
    if (c.slow_call_rate > 0 && !c.slow_call_ms)         /* the rate could never rise */
        return CB_EINVAL;
    if (c.window_calls && c.window_ms)
        return CB_EINVAL;
    if (c.window_calls > 1u << 20 || c.window_buckets > 1024)
        return CB_EINVAL;
    if (!c.consecutive_failures && c.failure_rate == 0 && !c.failures_in_window &&
        c.slow_call_rate == 0)
        c.consecutive_failures = 5;
    if ((c.failure_rate > 0 || c.failures_in_window || c.slow_call_rate > 0) &&
        !c.window_calls && !c.window_ms)
        c.window_calls = 100;
    if (c.window_ms) {
        c.window_buckets = def_u32(c.window_buckets, min_u32(10, c.window_ms));
        if (c.window_ms < c.window_buckets)
            return CB_EINVAL;
    } else if (c.window_buckets) {
        return CB_EINVAL;
    }
    c.minimum_calls = def_u32(c.minimum_calls,
                              c.window_calls && MODEL_BUG != 6 ? min_u32(10, c.window_calls) : 10);
    if (c.window_calls && c.minimum_calls > c.window_calls)
        return CB_EINVAL;
    if (c.window_calls && c.failures_in_window > c.window_calls)   /* could never hold */
        return CB_EINVAL;

    c.open_ms = def_u32(c.open_ms, 60000);
    if (!c.max_open_ms)
        c.max_open_ms = c.open_ms > UINT32_MAX / 10 ? UINT32_MAX : 10 * c.open_ms;
    if (c.max_open_ms < c.open_ms)
        return CB_EINVAL;
    if (c.backoff == 0)
        c.backoff = 1;
    if (!(c.backoff >= 1 && c.backoff <= 1e6))
        return CB_EINVAL;
    if (!(c.jitter >= 0 && c.jitter < 1))
        return CB_EINVAL;
    c.half_open_calls = def_u32(c.half_open_calls, 1);
    if (c.half_open_calls > PROBES_MAX)
        return CB_EINVAL;
    c.probe_timeout_ms = def_u32(c.probe_timeout_ms, 60000);
    if (!(c.warn_failure_rate >= 0 && c.warn_failure_rate < 1))
        return CB_EINVAL;
    if (c.warn_failure_rate > 0 && (!(c.window_calls || c.window_ms) ||
                                    (c.failure_rate > 0 && c.warn_failure_rate >= c.failure_rate)))
        return CB_EINVAL;
    *out = c;   /* seed 0 stays 0: the breaker draws one, which the caller copies in */
    return CB_OK;
}

/* ---- time ---- */

/* min(open_ms * backoff^k, max_open_ms), backoff^k by square-and-multiply. */
static double base_ms(const cb_config *cfg, uint32_t k)
{
    double pow = 1, b = cfg->backoff;
    for (uint32_t e = k; e; e >>= 1, b *= b)
        if (e & 1)
            pow *= b;
    return fmin(cfg->open_ms * pow, cfg->max_open_ms);
}

uint64_t model_period_ms(const cb_config *cfg, uint32_t k, uint32_t gen)
{
    double base = base_ms(cfg, k);
    double u = (double)(splitmix64(cfg->seed ^ (uint64_t)gen * GOLDEN) >> 11) * 0x1p-53;
    double ms = floor(base * (1 - cfg->jitter * u));
    return ms < 1 ? 1 : (uint64_t)ms;
}

/* A deadline `ms` after t_ns, in whole ms of the breaker clock, rounded up. */
static uint64_t deadline_ms(uint64_t t_ns, uint64_t ms)
{
    return (t_ns + ms * NS_PER_MS + NS_PER_MS - 1) / NS_PER_MS;
}

static bool due(const model *m, uint64_t until_ms)
{
    return MODEL_BUG == 2 ? m->now_ns > until_ms * NS_PER_MS : m->now_ns >= until_ms * NS_PER_MS;
}

/* ---- windows ---- */

/* Time windows count in epochs of bucket_ns. The newest epoch recorded never goes back:
   a clock that goes backwards is treated as not moving. */
static uint64_t epoch_now(const model *m)
{
    uint64_t e = m->now_ns / ((uint64_t)m->cfg.window_ms * NS_PER_MS / m->cfg.window_buckets);
    return e > m->newest_epoch ? e : m->newest_epoch;
}

/* A time window holds the calls of the current bucket and the window_buckets - 1 before. */
static bool in_time_window(const model *m, uint64_t epoch)
{
    return epoch + m->cfg.window_buckets > epoch_now(m);
}

typedef struct figures { uint32_t calls, failures, slow; } figures;

/* The window of the current period: empty outside CLOSED and METRICS_ONLY. */
static figures window_figures(const model *m)
{
    figures f = {0, 0, 0};
    if (m->state != CB_CLOSED && m->state != CB_METRICS_ONLY)
        return f;
    for (size_t i = 0; i < m->nwin; i++) {
        if (m->cfg.window_ms && !in_time_window(m, m->win[i].epoch))
            continue;
        f.calls++;
        f.failures += m->win[i].failed;
        f.slow += m->win[i].slow;
    }
    return f;
}

static void window_push(model *m, bool failed, bool slow)
{
    if (!m->cfg.window_calls && !m->cfg.window_ms)
        return;
    if (m->cfg.window_calls && m->nwin == m->cfg.window_calls) {
        memmove(m->win, m->win + 1, (m->nwin - 1) * sizeof *m->win);
        m->nwin--;
    }
    uint64_t epoch = 0;
    if (m->cfg.window_ms) {
        epoch = m->newest_epoch = epoch_now(m);
        size_t keep = 0;                       /* drop what aged out, keep the list short */
        for (size_t i = 0; i < m->nwin; i++)
            if (in_time_window(m, m->win[i].epoch))
                m->win[keep++] = m->win[i];
        m->nwin = keep;
    }
    if (m->nwin == m->capwin) {
        m->capwin = m->capwin ? 2 * m->capwin : 64;
        m->win = realloc(m->win, m->capwin * sizeof *m->win);
        if (!m->win)
            abort();
    }
    m->win[m->nwin++] = (model_call){epoch, failed, slow};
}

/* part / calls >= rate, as docs/semantics.md words it: with rate 0.4, 2 of 5 reach it (exact
   arithmetic on the double nearest 0.4 would say no). */
static bool rate_reached(uint32_t part, uint32_t calls, double rate)
{
    return (double)part / calls >= rate;
}

/* The first rule that holds, in the documented order; false if none. */
static bool rule_holds(const model *m, cb_reason *why)
{
    const cb_config *c = &m->cfg;
    figures f = window_figures(m);
    bool enough = f.calls > 0 && f.calls >= c->minimum_calls + (MODEL_BUG == 5);
    if (c->consecutive_failures && m->run >= c->consecutive_failures)
        *why = CB_REASON_CONSECUTIVE_FAILURES;
    else if (c->failure_rate > 0 && enough && rate_reached(f.failures, f.calls, c->failure_rate))
        *why = CB_REASON_FAILURE_RATE;
    else if (c->failures_in_window && f.failures >= c->failures_in_window)
        *why = CB_REASON_FAILURE_COUNT;
    else if (c->slow_call_rate > 0 && enough && rate_reached(f.slow, f.calls, c->slow_call_rate))
        *why = CB_REASON_SLOW_CALL_RATE;
    else
        return false;
    return true;
}

/* ---- the state machine ---- */

/* k after a re-open from HALF_OPEN: grows while the period is below its cap. */
static uint32_t next_k(const model *m)
{
    bool capped = base_ms(&m->cfg, m->k) >= m->cfg.max_open_ms;
    return capped || m->k == K_MAX ? m->k : m->k + 1;
}

static void transition(model *m, cb_state to, cb_reason why, uint32_t k)
{
    cb_event *e = &m->events[m->nevents++ % MODEL_HISTORY];
    m->gen++;
    *e = (cb_event){.name = m->name, .from = m->state, .to = to, .reason = why,
                    .generation = m->gen, .at_ns = m->now_ns};
    m->state = to;
    m->k = k;
    m->taken = m->succeeded = 0;
    m->state_since_ns = m->now_ns;
    if (to == CB_OPEN) {
        e->open_ms = model_period_ms(&m->cfg, k, m->gen);
        m->open_until_ms = deadline_ms(m->now_ns, e->open_ms);
        m->opens++;
    } else if (to == CB_HALF_OPEN) {
        m->round_until_ms = deadline_ms(m->now_ns, m->cfg.probe_timeout_ms);
    } else if (to == CB_CLOSED || to == CB_METRICS_ONLY) {
        m->nwin = 0;
        m->run = 0;
        if (m->cfg.window_ms)  /* a fresh window starts at the clock's own epoch */
            m->newest_epoch = m->now_ns / ((uint64_t)m->cfg.window_ms * NS_PER_MS / m->cfg.window_buckets);
    }
}

cb_err model_init(model *m, const cb_config *cfg, uint64_t now_ns)
{
    memset(m, 0, sizeof *m);
    cb_err err = model_resolve(cfg, &m->cfg);
    if (err)
        return err;
    strcpy(m->name, m->cfg.name);
    m->cfg.name = m->name;
    m->now_ns = now_ns;
    m->state = CB_CLOSED;
    m->state_since_ns = now_ns;
    return CB_OK;
}

void model_free(model *m)
{
    free(m->win);
    m->win = NULL;
}

static bool reject(model *m, model_ticket *t, cb_reject why)
{
    m->rejected++;
    m->rejected_by[why]++;
    t->why = why;
    return false;
}

static bool admit(model *m, model_ticket *t)
{
    m->admitted++;
    t->admitted = true;
    t->gen = m->gen;
    t->start_ns = m->now_ns;
    t->disabled = m->state == CB_DISABLED;
    m->in_flight++;
    return true;
}

static bool bulkhead_full(const model *m)
{
    return m->cfg.max_concurrent && m->in_flight >= m->cfg.max_concurrent;
}

bool model_allow(model *m, model_ticket *t)
{
    *t = (model_ticket){0};
    switch (m->state) {
    case CB_CLOSED:
    case CB_METRICS_ONLY:
        return bulkhead_full(m) ? reject(m, t, CB_REJECT_BULKHEAD) : admit(m, t);
    case CB_DISABLED:
        return admit(m, t);
    case CB_FORCED_OPEN:
        return reject(m, t, CB_REJECT_FORCED_OPEN);
    case CB_OPEN:
        if (!due(m, m->open_until_ms))
            return reject(m, t, CB_REJECT_OPEN);
        if (bulkhead_full(m))
            return reject(m, t, CB_REJECT_BULKHEAD);
        transition(m, CB_HALF_OPEN, CB_REASON_OPEN_ELAPSED, m->k);
        m->taken = 1;
        return admit(m, t);
    case CB_HALF_OPEN:
        if (due(m, m->round_until_ms)) {
            transition(m, CB_OPEN, CB_REASON_PROBE_TIMEOUT, next_k(m));
            return reject(m, t, CB_REJECT_OPEN);   /* the new OPEN period refuses it */
        }
        if (m->taken >= m->cfg.half_open_calls)
            return reject(m, t, CB_REJECT_HALF_OPEN_FULL);
        if (bulkhead_full(m))
            return reject(m, t, CB_REJECT_BULKHEAD);
        m->taken++;
        return admit(m, t);
    }
    return reject(m, t, CB_REJECT_FORCED_OPEN);
}

/* The early warning (docs/semantics.md, Events): told once per change, a CLOSED period
   starting untold. */
static bool warns(const model *m, figures f)
{
    return m->cfg.warn_failure_rate > 0 && f.calls > 0 && f.calls >= m->cfg.minimum_calls &&
           (double)f.failures / f.calls >= m->cfg.warn_failure_rate;
}

static void warn_check(model *m)
{
    bool told = m->warned && m->warned_gen == m->gen;
    bool on = warns(m, window_figures(m));
    if (on == told)
        return;
    m->warned = on;
    m->warned_gen = m->gen;
    m->nwarn++;
    m->last_warn = on ? CB_REASON_DEGRADED : CB_REASON_RECOVERED;
}

bool model_record(model *m, model_ticket *t, cb_outcome o)
{
    if (!t->admitted || (unsigned)o > CB_IGNORED)   /* not a call (or spent), or not an outcome */
        return false;
    t->admitted = false;   /* spent: a second record of it is no call */
    m->in_flight--;
    if (t->gen != m->gen) {
        m->stale++;
        return false;
    }
    if (t->disabled)
        return false;

    uint64_t took = m->now_ns > t->start_ns ? m->now_ns - t->start_ns : 0;
    uint64_t slow_ns = (uint64_t)m->cfg.slow_call_ms * NS_PER_MS;
    bool slow = o != CB_IGNORED && slow_ns && (MODEL_BUG == 4 ? took > slow_ns : took >= slow_ns);
    m->slow += slow;
    if (o == CB_SUCCESS) {
        m->successes++;
    } else if (o == CB_FAILURE) {
        m->failures++;
        m->last_failure_ns = m->now_ns;
    } else {
        m->ignored++;
    }

    cb_reason why;
    switch (m->state) {
    case CB_CLOSED:
    case CB_METRICS_ONLY:
        if (o == CB_IGNORED)
            break;
        if (o == CB_SUCCESS)
            m->run = 0;
        else if (m->run < UINT32_MAX)
            m->run++;
        window_push(m, o == CB_FAILURE, slow);
        if (m->state == CB_CLOSED && rule_holds(m, &why))
            transition(m, CB_OPEN, why, m->k);
        else if (m->cfg.window_calls || m->cfg.window_ms)
            warn_check(m);
        break;
    case CB_HALF_OPEN:
        if (o == CB_IGNORED)
            m->taken -= MODEL_BUG != 1;
        else if (o == CB_FAILURE || slow)
            transition(m, CB_OPEN, CB_REASON_PROBE_FAILED, next_k(m));
        else if (++m->succeeded == m->cfg.half_open_calls)
            transition(m, CB_CLOSED, CB_REASON_PROBES_SUCCEEDED, MODEL_BUG == 3 ? m->k : 0);
        break;
    default:                        /* tickets of OPEN and FORCED_OPEN are never admitted */
        break;
    }
    return true;
}

void model_set_state(model *m, cb_state s)
{
    transition(m, s, CB_REASON_MANUAL, s == CB_CLOSED ? 0 : m->k);
}

void model_reset(model *m) { model_set_state(m, CB_CLOSED); }

uint64_t model_retry_after_ms(const model *m)
{
    uint64_t until_ns = m->open_until_ms * NS_PER_MS;
    uint64_t now = m->now_ns > m->state_since_ns ? m->now_ns : m->state_since_ns;  /* not back */
    if (m->state != CB_OPEN || now >= until_ns)
        return 0;
    uint64_t left = (until_ns - now + NS_PER_MS - 1) / NS_PER_MS;
    uint64_t period = model_period_ms(&m->cfg, m->k, m->gen);
    return left < period ? left : period;   /* never more than the period */
}

void model_stats(const model *m, cb_stats *s)
{
    figures f = window_figures(m);
    *s = (cb_stats){
        .state = m->state, .generation = m->gen,
        .admitted = m->admitted, .rejected = m->rejected, .successes = m->successes,
        .failures = m->failures, .ignored = m->ignored, .slow = m->slow, .stale = m->stale,
        .opens = m->opens,
        .consecutive_failures = m->state == CB_CLOSED || m->state == CB_METRICS_ONLY ? m->run : 0,
        .window_calls = f.calls, .window_failures = f.failures, .window_slow = f.slow,
        .degraded = (m->state == CB_CLOSED || m->state == CB_METRICS_ONLY) && warns(m, f),
        .in_flight = m->in_flight,
        .state_since_ns = m->state_since_ns, .last_failure_ns = m->last_failure_ns,
        .open_until_ns = m->state == CB_OPEN ? m->open_until_ms * NS_PER_MS : 0,
    };
    memcpy(s->rejected_by, m->rejected_by, sizeof m->rejected_by);
}

const cb_event *model_last_event(const model *m)
{
    return m->nevents ? &m->events[(m->nevents - 1) % MODEL_HISTORY] : NULL;
}
