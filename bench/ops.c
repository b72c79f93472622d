/* The benchmarked operations: a direct call (the floor), cb.h in each configuration the
   overhead bars name, and two peers built in the same binary (a gobreaker-style mutex
   breaker and a naive breaker on one shared seq_cst counter set). Every breaker protects
   the same function as BM_direct, so a difference of medians is the breaker's overhead.
   Keyed groups (cb_group) are measured against BM_direct_keyed, the same key choice
   around a direct call. */
#define _POSIX_C_SOURCE 200809L
#define CB_IMPLEMENTATION
#include "cb.h"
#include "ops.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <alloca.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Google Benchmark's DoNotOptimize: the compiler must assume v is used and memory read. */
#define BENCH_KEEP(v) __asm__ volatile("" : : "r"(v) : "memory")

/* Read-only outcomes, apart from every line the breakers write. */
static const int rc_success = 0, rc_failure = 1;

/* The protected call. noinline and an opaque side effect keep it a real call in every
   loop; it returns the outcome its argument points to. */
__attribute__((noinline)) static int protected_call(void *arg)
{
    __asm__ volatile("" : : "r"(arg) : "memory");
    return *(const int *)arg;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- BM_direct ---- */

static void *direct_setup(const void *param, int threads)
{
    (void)param, (void)threads;
    return (void *)&rc_success;
}

static void direct_loop(void *ctx, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) {
        int rc = protected_call(ctx);
        BENCH_KEEP(rc);
    }
}

static void no_teardown(void *ctx)
{
    (void)ctx;
}

/* ---- cb.h ---- */

typedef struct cb_case {
    cb_config cfg;
    cb_state state;      /* entered by cb_set_state after init (CLOSED: none) */
    const int *rc;       /* what the protected call returns */
} cb_case;

typedef struct cb_ctx {
    cb_breaker *b;
    void *arg;
} cb_ctx;

static void *cb_setup(const void *param, int threads)
{
    (void)threads;
    const cb_case *k = param;
    cb_ctx *c = malloc(sizeof *c);
    cb_err err;
    if (!c || !(c->b = cb_new(&k->cfg, &err))) {
        free(c);
        return NULL;
    }
    c->arg = (void *)k->rc;
    if (k->state != CB_CLOSED && cb_set_state(c->b, k->state) != CB_OK) {
        cb_free(c->b);
        free(c);
        return NULL;
    }
    if (k->state == CB_HALF_OPEN) {
        /* Take the only probe permit and never record it: every timed call is rejected. */
        cb_ticket t;
        cb_allow(c->b, &t);
    }
    return c;
}

static void cb_teardown(void *ctx)
{
    cb_ctx *c = ctx;
    cb_free(c->b);
    free(c);
}

/* One loop serves every cb.h case: the state and config chosen in setup decide the path. */
static void cb_loop(void *ctx, uint64_t n)
{
    cb_breaker *b = ((cb_ctx *)ctx)->b;
    void *arg = ((cb_ctx *)ctx)->arg;
    for (uint64_t i = 0; i < n; i++) {
        cb_ticket t;
        bool admitted = cb_allow(b, &t);
        if (admitted)
            cb_record(b, &t, protected_call(arg) ? CB_FAILURE : CB_SUCCESS);
        BENCH_KEEP(admitted);
    }
}

/* As cb_loop, but every 64th call fails: a count window of 100 then always holds a
   failure, so every success takes the ring head (the window's path when not all is well). */
static void cb_mixed_loop(void *ctx, uint64_t n)
{
    cb_breaker *b = ((cb_ctx *)ctx)->b;
    for (uint64_t i = 0; i < n; i++) {
        cb_ticket t;
        bool admitted = cb_allow(b, &t);
        if (admitted)
            cb_record(b, &t, protected_call((void *)(i % 64 ? &rc_success : &rc_failure))
                                 ? CB_FAILURE : CB_SUCCESS);
        BENCH_KEEP(admitted);
    }
}

/* A breaker per thread (as many as CPUs; each thread of a run takes the next one): the
   same work as the shared case with nothing shared at all, so the two-thread scaling of
   the pair tells what sharing one breaker costs from what the machine costs. */
typedef struct cb_private_ctx {
    _Atomic(unsigned) next;
    unsigned count;
    cb_ctx *each[];
} cb_private_ctx;

static void cb_private_teardown(void *ctx)
{
    cb_private_ctx *p = ctx;
    for (unsigned i = 0; i < p->count; i++)
        if (p->each[i])
            cb_teardown(p->each[i]);
    free(p);
}

static void *cb_private_setup(const void *param, int threads)
{
    (void)threads;   /* a breaker per CPU, whatever the run's thread count */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned count = ncpu > 1 ? (unsigned)ncpu : 1;
    cb_private_ctx *p = calloc(1, sizeof *p + count * sizeof p->each[0]);
    if (!p)
        return NULL;
    p->count = count;
    for (unsigned i = 0; i < count; i++)
        if (!(p->each[i] = cb_setup(param, 1))) {
            cb_private_teardown(p);
            return NULL;
        }
    return p;
}

static void cb_private_loop(void *ctx, uint64_t n)
{
    cb_private_ctx *p = ctx;
    /* relaxed: only distinctness matters; taken once per timed loop, not per call */
    unsigned i = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed) % p->count;
    cb_loop(p->each[i], n);
}

static void cb_call_loop(void *ctx, uint64_t n)
{
    cb_breaker *b = ((cb_ctx *)ctx)->b;
    void *arg = ((cb_ctx *)ctx)->arg;
    for (uint64_t i = 0; i < n; i++) {
        int rc;
        bool ran = cb_call(b, protected_call, arg, &rc);
        BENCH_KEEP(ran);
    }
}

/* Open and probe periods far longer than any run, so a timed state never expires. */
#define BENCH_HOUR_MS 3600000u
#define CB_CASE(state_, rc_, ...)                                                          \
    (&(const cb_case){ .cfg = { .name = "bench", .open_ms = BENCH_HOUR_MS,                   \
                                .probe_timeout_ms = BENCH_HOUR_MS, __VA_ARGS__ },           \
                       .state = (state_), .rc = (rc_) })

/* ---- gobreaker, in C: one mutex around before/after, a clock read in each ---- */

enum { MB_CLOSED, MB_HALF_OPEN, MB_OPEN };

typedef struct mutex_breaker {
    pthread_mutex_t mu;
    int state;
    uint64_t generation;
    uint32_t requests, total_successes, total_failures, consecutive_successes,
        consecutive_failures;
    uint64_t expiry_ns;        /* 0: none (gobreaker's zero time) */
    uint64_t interval_ns, timeout_ns;
    uint32_t max_requests;
} mutex_breaker;

static void mb_new_generation(mutex_breaker *m, uint64_t now)
{
    m->generation++;
    m->requests = m->total_successes = m->total_failures = 0;
    m->consecutive_successes = m->consecutive_failures = 0;
    if (m->state == MB_CLOSED)
        m->expiry_ns = m->interval_ns ? now + m->interval_ns : 0;
    else if (m->state == MB_OPEN)
        m->expiry_ns = now + m->timeout_ns;
    else
        m->expiry_ns = 0;
}

static void mb_set_state(mutex_breaker *m, int state, uint64_t now)
{
    if (m->state == state)
        return;
    m->state = state;
    mb_new_generation(m, now);
}

static int mb_current_state(mutex_breaker *m, uint64_t now)
{
    if (m->state == MB_CLOSED && m->expiry_ns && m->expiry_ns < now)
        mb_new_generation(m, now);
    else if (m->state == MB_OPEN && m->expiry_ns < now)
        mb_set_state(m, MB_HALF_OPEN, now);
    return m->state;
}

static bool mb_before(mutex_breaker *m, uint64_t *generation)
{
    pthread_mutex_lock(&m->mu);
    int state = mb_current_state(m, now_ns());
    *generation = m->generation;
    bool ok = state != MB_OPEN && !(state == MB_HALF_OPEN && m->requests >= m->max_requests);
    if (ok)
        m->requests++;
    pthread_mutex_unlock(&m->mu);
    return ok;
}

static void mb_after(mutex_breaker *m, uint64_t generation, bool success)
{
    pthread_mutex_lock(&m->mu);
    uint64_t now = now_ns();
    int state = mb_current_state(m, now);
    if (generation == m->generation) {
        if (success) {
            m->total_successes++;
            m->consecutive_successes++;
            m->consecutive_failures = 0;
            if (state == MB_HALF_OPEN && m->consecutive_successes >= m->max_requests)
                mb_set_state(m, MB_CLOSED, now);
        } else {
            m->total_failures++;
            m->consecutive_failures++;
            m->consecutive_successes = 0;
            /* gobreaker's default ReadyToTrip: more than 5 consecutive failures */
            if (state == MB_HALF_OPEN || m->consecutive_failures > 5)
                mb_set_state(m, MB_OPEN, now);
        }
    }
    pthread_mutex_unlock(&m->mu);
}

static void *mutex_setup(const void *param, int threads)
{
    (void)threads;
    mutex_breaker *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    pthread_mutex_init(&m->mu, NULL);
    m->max_requests = 1;
    m->timeout_ns = (uint64_t)BENCH_HOUR_MS * 1000000u;
    m->state = *(const int *)param;
    mb_new_generation(m, now_ns());
    return m;
}

static void mutex_loop(void *ctx, uint64_t n)
{
    mutex_breaker *m = ctx;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t generation;
        bool admitted = mb_before(m, &generation);
        if (admitted)
            mb_after(m, generation, protected_call((void *)&rc_success) == 0);
        BENCH_KEEP(admitted);
    }
}

static void mutex_teardown(void *ctx)
{
    pthread_mutex_destroy(&((mutex_breaker *)ctx)->mu);
    free(ctx);
}

static const int mb_closed = MB_CLOSED, mb_open = MB_OPEN;

/* ---- naive: every call updates one shared set of seq_cst counters ---- */

typedef struct naive_breaker {
    _Atomic int open;
    _Atomic uint64_t open_until_ns;
    _Atomic uint64_t requests, successes, failures, consecutive_failures;
} naive_breaker;

static bool naive_allow(naive_breaker *n)
{
    if (atomic_load_explicit(&n->open, memory_order_seq_cst) &&
        now_ns() < atomic_load_explicit(&n->open_until_ns, memory_order_seq_cst))
        return false;
    atomic_fetch_add_explicit(&n->requests, 1, memory_order_seq_cst);
    return true;
}

static void naive_record(naive_breaker *n, bool success)
{
    if (success) {
        atomic_fetch_add_explicit(&n->successes, 1, memory_order_seq_cst);
        atomic_store_explicit(&n->consecutive_failures, 0, memory_order_seq_cst);
        return;
    }
    atomic_fetch_add_explicit(&n->failures, 1, memory_order_seq_cst);
    if (atomic_fetch_add_explicit(&n->consecutive_failures, 1, memory_order_seq_cst) + 1 >= 5) {
        atomic_store_explicit(&n->open_until_ns, now_ns() + (uint64_t)BENCH_HOUR_MS * 1000000u,
                              memory_order_seq_cst);
        atomic_store_explicit(&n->open, 1, memory_order_seq_cst);
    }
}

static void *naive_setup(const void *param, int threads)
{
    (void)param, (void)threads;
    return calloc(1, sizeof(naive_breaker));
}

static void naive_loop(void *ctx, uint64_t n)
{
    naive_breaker *nb = ctx;
    for (uint64_t i = 0; i < n; i++) {
        bool admitted = naive_allow(nb);
        if (admitted)
            naive_record(nb, protected_call((void *)&rc_success) == 0);
        BENCH_KEEP(admitted);
    }
}

/* ---- keyed groups ---- */

/* BM_group_held_key and its baseline BM_direct_keyed: KEYED_KEYS keys of KEYED_KEY_LEN
   bytes, visited in a fixed random order. Each thread of a run takes its own slice of
   that order (the keys split evenly, no key shared), so the group case at 2 threads is
   two threads on different keys. Both loops choose the key with the same code. */
#define KEYED_KEYS 1000
#define KEYED_KEY_LEN 16

typedef struct keyed_ctx {
    cb_group *g;                     /* NULL: the baseline */
    void *arg;
    unsigned parts;                  /* the run's threads */
    _Atomic(unsigned) next;
    const char *order[KEYED_KEYS];   /* the keys, shuffled */
    char keys[KEYED_KEYS][KEYED_KEY_LEN];
} keyed_ctx;

static void keyed_teardown(void *ctx)
{
    keyed_ctx *c = ctx;
    cb_group_free(c->g);
    free(c);
}

/* param: the group's config, or NULL for the baseline. All keys are made here. */
static void *keyed_setup(const void *param, int threads)
{
    keyed_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->arg = (void *)&rc_success;
    c->parts = threads > 1 ? (unsigned)threads : 1;
    uint64_t x = 0x9e3779b97f4a7c15u;   /* fixed seed: the same order in every run */
    for (unsigned i = 0; i < KEYED_KEYS; i++) {
        char buf[KEYED_KEY_LEN + 1];
        snprintf(buf, sizeof buf, "key-%012u", i);
        memcpy(c->keys[i], buf, KEYED_KEY_LEN);
        c->order[i] = c->keys[i];
    }
    for (unsigned i = KEYED_KEYS; i > 1; i--) {   /* Fisher-Yates, xorshift64 */
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        unsigned j = (unsigned)(x % i);
        const char *t = c->order[i - 1];
        c->order[i - 1] = c->order[j];
        c->order[j] = t;
    }
    if (!param)
        return c;
    cb_err err;
    cb_group_stats st;
    if (!(c->g = cb_group_new(param, &err)))
        goto fail;
    for (unsigned i = 0; i < KEYED_KEYS; i++) {
        cb_ticket t;
        if (!cb_group_allow(c->g, c->keys[i], KEYED_KEY_LEN, &t) ||
            !cb_group_record(c->g, &t, CB_SUCCESS))
            goto fail;
    }
    cb_group_stats_get(c->g, &st);
    if (st.keys == KEYED_KEYS && st.overflow == 0)
        return c;
fail:
    keyed_teardown(c);
    return NULL;
}

/* This thread's slice of the order: taken once per timed loop, not per call. */
static const char *const *keyed_part(keyed_ctx *c, uint32_t *len)
{
    /* relaxed: only distinctness matters */
    unsigned p = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed) % c->parts;
    uint32_t from = KEYED_KEYS * p / c->parts, to = KEYED_KEYS * (p + 1) / c->parts;
    *len = to - from;
    return (const char *const *)c->order + from;
}

/* The key choice both loops share: the next of the slice, cycled. */
static inline const char *keyed_next(const char *const *keys, uint32_t len, uint32_t *j)
{
    const char *key = keys[*j];
    *j = *j + 1 == len ? 0 : *j + 1;
    return key;
}

static void direct_keyed_loop(void *ctx, uint64_t n)
{
    keyed_ctx *c = ctx;
    uint32_t len, j = 0;
    const char *const *keys = keyed_part(c, &len);
    void *arg = c->arg;
    for (uint64_t i = 0; i < n; i++) {
        const char *key = keyed_next(keys, len, &j);
        BENCH_KEEP(key);
        int rc = protected_call(arg);
        BENCH_KEEP(rc);
    }
}

static void group_held_loop(void *ctx, uint64_t n)
{
    keyed_ctx *c = ctx;
    uint32_t len, j = 0;
    const char *const *keys = keyed_part(c, &len);
    cb_group *g = c->g;
    void *arg = c->arg;
    for (uint64_t i = 0; i < n; i++) {
        const char *key = keyed_next(keys, len, &j);
        BENCH_KEEP(key);
        cb_ticket t;
        bool admitted = cb_group_allow(g, key, KEYED_KEY_LEN, &t);
        if (admitted)
            cb_group_record(g, &t, protected_call(arg) ? CB_FAILURE : CB_SUCCESS);
        BENCH_KEEP(admitted);
    }
}

/* BM_group_churn: a full group of CHURN_CAPACITY keys, idle_ms = 1, on a clock the loop
   moves 2 ms per call; every call is on a key never seen before, so each one evicts an
   idle key and makes its own. Keys: a per-loop part and a counter, 16 bytes. Setup churns
   CHURN_WARM keys first, so that timing starts with the index as churn leaves it. */
#define CHURN_CAPACITY 64
#define CHURN_WARM (16 * CHURN_CAPACITY)
#define CHURN_STEP_NS 2000000u

typedef struct churn_ctx {
    cb_group *g;
    void *arg;
    _Atomic(uint64_t) clock_ns;
    _Atomic(uint64_t) next;   /* parts handed out to loops; setup's keys use UINT64_MAX */
} churn_ctx;

static void churn_loop(void *ctx, uint64_t n);

static uint64_t churn_clock(void *user)
{
    return atomic_load_explicit((_Atomic(uint64_t) *)user, memory_order_relaxed);
}

static void *churn_setup(const void *param, int threads)
{
    (void)param, (void)threads;
    churn_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->arg = (void *)&rc_success;
    atomic_init(&c->clock_ns, 1000000000u);
    cb_group_config gc = {
        .breaker = { .name = "bench", .open_ms = BENCH_HOUR_MS, .probe_timeout_ms = BENCH_HOUR_MS,
                     .consecutive_failures = 5, .clock_ns = churn_clock,
                     .clock_user = &c->clock_ns },
        .capacity = CHURN_CAPACITY, .key_max = 16, .idle_ms = 1 };
    cb_err err;
    cb_group_stats st;
    if (!(c->g = cb_group_new(&gc, &err)))
        goto fail;
    for (uint64_t i = 0; i < CHURN_CAPACITY; i++) {
        uint64_t key[2] = { i, UINT64_MAX };
        cb_ticket t;
        if (!cb_group_allow(c->g, (const char *)key, sizeof key, &t) ||
            !cb_group_record(c->g, &t, CB_SUCCESS))
            goto fail;
    }
    churn_loop(c, CHURN_WARM);   /* part 0 */
    cb_group_stats_get(c->g, &st);
    if (st.keys == CHURN_CAPACITY && st.evicted == CHURN_WARM && st.overflow == 0)
        return c;
fail:
    cb_group_free(c->g);
    free(c);
    return NULL;
}

static void churn_teardown(void *ctx)
{
    churn_ctx *c = ctx;
    cb_group_free(c->g);
    free(c);
}

static void churn_loop(void *ctx, uint64_t n)
{
    churn_ctx *c = ctx;
    cb_group *g = c->g;
    void *arg = c->arg;
    /* relaxed: only distinctness matters */
    uint64_t part = atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed);
    for (uint64_t i = 0; i < n; i++) {
        atomic_fetch_add_explicit(&c->clock_ns, CHURN_STEP_NS, memory_order_relaxed);
        uint64_t key[2] = { i, part };
        cb_ticket t;
        bool admitted = cb_group_allow(g, (const char *)key, sizeof key, &t);
        if (admitted)
            cb_group_record(g, &t, protected_call(arg) ? CB_FAILURE : CB_SUCCESS);
        BENCH_KEEP(admitted);
    }
}

#define GROUP_CASE(capacity_, key_max_)                                                    \
    (&(const cb_group_config){ .breaker = { .name = "bench", .open_ms = BENCH_HOUR_MS,        \
                                            .probe_timeout_ms = BENCH_HOUR_MS,                \
                                            .consecutive_failures = 5 },                      \
                               .capacity = (capacity_), .key_max = (key_max_) })

/* ---- the table ---- */

const bench_op bench_ops[] = {
    { "BM_direct", direct_setup, direct_loop, no_teardown, NULL, 0 },
    { "BM_cb_closed_success_consecutive", cb_setup, cb_loop, cb_teardown,
      CB_CASE(CB_CLOSED, &rc_success, .consecutive_failures = 5), 0 },
    { "BM_cb_closed_success_consecutive_private", cb_private_setup, cb_private_loop,
      cb_private_teardown, CB_CASE(CB_CLOSED, &rc_success, .consecutive_failures = 5), 0 },
    { "BM_cb_closed_success_count_window", cb_setup, cb_loop, cb_teardown,
      CB_CASE(CB_CLOSED, &rc_success, .window_calls = 100, .failure_rate = 0.5), 0 },
    { "BM_cb_closed_mixed_count_window", cb_setup, cb_mixed_loop, cb_teardown,
      CB_CASE(CB_CLOSED, &rc_success, .window_calls = 100, .failure_rate = 0.5), 0 },
    { "BM_cb_closed_success_time_window", cb_setup, cb_loop, cb_teardown,
      CB_CASE(CB_CLOSED, &rc_success, .window_ms = 10000, .failure_rate = 0.5), 0 },
    { "BM_cb_closed_success_slow_call", cb_setup, cb_loop, cb_teardown,
      CB_CASE(CB_CLOSED, &rc_success, .consecutive_failures = 5, .slow_call_ms = 1000), 0 },
    /* A run of failures that never reaches the threshold: the CLOSED failure path. */
    { "BM_cb_closed_failure", cb_setup, cb_loop, cb_teardown,
      CB_CASE(CB_CLOSED, &rc_failure, .consecutive_failures = UINT32_MAX), 0 },
    { "BM_cb_open_reject", cb_setup, cb_loop, cb_teardown,
      CB_CASE(CB_OPEN, &rc_success, .consecutive_failures = 5), 0 },
    { "BM_cb_half_open_reject", cb_setup, cb_loop, cb_teardown,
      CB_CASE(CB_HALF_OPEN, &rc_success, .consecutive_failures = 5), 0 },
    { "BM_cb_call_wrapper", cb_setup, cb_call_loop, cb_teardown,
      CB_CASE(CB_CLOSED, &rc_success, .consecutive_failures = 5), 0 },
    { "BM_mutex_closed_success", mutex_setup, mutex_loop, mutex_teardown, &mb_closed, 0 },
    { "BM_mutex_open_reject", mutex_setup, mutex_loop, mutex_teardown, &mb_open, 0 },
    { "BM_naive_closed_success", naive_setup, naive_loop, free, NULL, 0 },
    /* keyed groups: the baseline, a held key, and a new key per call (one key made each) */
    { "BM_direct_keyed", keyed_setup, direct_keyed_loop, keyed_teardown, NULL, 0 },
    { "BM_group_held_key", keyed_setup, group_held_loop, keyed_teardown,
      GROUP_CASE(1024, 16), 0 },
    { "BM_group_churn", churn_setup, churn_loop, churn_teardown, NULL, 1 },
};
const size_t bench_ops_count = sizeof bench_ops / sizeof bench_ops[0];

/* A thread's random stream of stack offsets: xorshift64, seeded per thread from the clock
   and the thread's stack address, so that neither harness repeats one sequence per run. */
static uint64_t next_random(void)
{
    static _Thread_local uint64_t x;
    if (!x)
        x = (now_ns() ^ (uint64_t)(uintptr_t)&x * 0x9e3779b97f4a7c15u) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
}

/* The loop runs in a frame below the alloca, so its stack is moved by pad bytes. */
__attribute__((noinline)) static void run_at_offset(const bench_op *op, void *ctx, uint64_t n,
                                                    size_t pad)
{
    volatile char *p = alloca(pad + 1);
    p[0] = 0;
    op->loop(ctx, n);
    BENCH_KEEP(p);
}

void bench_run_loop(const bench_op *op, void *ctx, uint64_t n)
{
    run_at_offset(op, ctx, n, (size_t)(next_random() % 64) * 64);
}

static void *return_arg(void *arg)
{
    return arg;
}

void bench_init(void)
{
    pthread_t t;
    if (pthread_create(&t, NULL, return_arg, NULL) == 0)
        pthread_join(t, NULL);
}

size_t bench_thread_counts(int ncpu, int *out, size_t max)
{
    size_t n = 0;
    for (int t = 1; t < ncpu && n < max; t *= 2)
        out[n++] = t;
    if (n < max)
        out[n++] = ncpu > 1 ? ncpu : 1;
    return n;
}
