/* The benchmarked operations: a direct call (the floor), cb.h in each configuration the
   overhead bars name, and two peers built in the same binary (a gobreaker-style mutex
   breaker and a naive breaker on one shared seq_cst counter set). Every breaker protects
   the same function as BM_direct, so a difference of medians is the breaker's overhead. */
#define _POSIX_C_SOURCE 200809L
#define CB_IMPLEMENTATION
#include "cb.h"
#include "ops.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <alloca.h>
#include <stdlib.h>
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

static void *direct_setup(const void *param)
{
    (void)param;
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

static void *cb_setup(const void *param)
{
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

static void *cb_private_setup(const void *param)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned count = ncpu > 1 ? (unsigned)ncpu : 1;
    cb_private_ctx *p = calloc(1, sizeof *p + count * sizeof p->each[0]);
    if (!p)
        return NULL;
    p->count = count;
    for (unsigned i = 0; i < count; i++)
        if (!(p->each[i] = cb_setup(param))) {
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

static void *mutex_setup(const void *param)
{
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

static void *naive_setup(const void *param)
{
    (void)param;
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

/* ---- the table ---- */

const bench_op bench_ops[] = {
    { "BM_direct", direct_setup, direct_loop, no_teardown, NULL },
    { "BM_cb_closed_success_consecutive", cb_setup, cb_loop, cb_teardown,
      CB_CASE(CB_CLOSED, &rc_success, .consecutive_failures = 5) },
    { "BM_cb_closed_success_consecutive_private", cb_private_setup, cb_private_loop,
      cb_private_teardown, CB_CASE(CB_CLOSED, &rc_success, .consecutive_failures = 5) },
    { "BM_cb_closed_success_count_window", cb_setup, cb_loop, cb_teardown,
      CB_CASE(CB_CLOSED, &rc_success, .window_calls = 100, .failure_rate = 0.5) },
    { "BM_cb_closed_mixed_count_window", cb_setup, cb_mixed_loop, cb_teardown,
      CB_CASE(CB_CLOSED, &rc_success, .window_calls = 100, .failure_rate = 0.5) },
    { "BM_cb_closed_success_time_window", cb_setup, cb_loop, cb_teardown,
      CB_CASE(CB_CLOSED, &rc_success, .window_ms = 10000, .failure_rate = 0.5) },
    { "BM_cb_closed_success_slow_call", cb_setup, cb_loop, cb_teardown,
      CB_CASE(CB_CLOSED, &rc_success, .consecutive_failures = 5, .slow_call_ms = 1000) },
    /* A run of failures that never reaches the threshold: the CLOSED failure path. */
    { "BM_cb_closed_failure", cb_setup, cb_loop, cb_teardown,
      CB_CASE(CB_CLOSED, &rc_failure, .consecutive_failures = UINT32_MAX) },
    { "BM_cb_open_reject", cb_setup, cb_loop, cb_teardown,
      CB_CASE(CB_OPEN, &rc_success, .consecutive_failures = 5) },
    { "BM_cb_half_open_reject", cb_setup, cb_loop, cb_teardown,
      CB_CASE(CB_HALF_OPEN, &rc_success, .consecutive_failures = 5) },
    { "BM_cb_call_wrapper", cb_setup, cb_call_loop, cb_teardown,
      CB_CASE(CB_CLOSED, &rc_success, .consecutive_failures = 5) },
    { "BM_mutex_closed_success", mutex_setup, mutex_loop, mutex_teardown, &mb_closed },
    { "BM_mutex_open_reject", mutex_setup, mutex_loop, mutex_teardown, &mb_open },
    { "BM_naive_closed_success", naive_setup, naive_loop, free, NULL },
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
