/* cb.h - a lock-free circuit breaker for C11, v0.1.0

   Fail fast instead of piling up on timeouts: wrap each call to a flaky dependency in
   cb_allow()/cb_record() and the breaker opens after the failures you configure, rejects
   in nanoseconds while open, probes the dependency after a backoff, and closes again.

   HOW TO INCLUDE

       #define CB_IMPLEMENTATION   // in exactly one .c file
       #include "cb.h"

   Every other file includes "cb.h" alone. The fast path (cb_allow, cb_record) is static
   inline in the header, so every translation unit gets it; everything else is compiled
   once, in the CB_IMPLEMENTATION file.

   COMPILE-TIME OPTIONS (define before including)

       CB_IMPLEMENTATION    compile the implementation in this file
       CB_STATIC            make every function static (no exported symbols); then every
                            file that uses cb.h must define CB_IMPLEMENTATION
       CB_MALLOC(sz)        allocator used by cb_new/cb_shm_open handles (default malloc);
       CB_FREE(p)           define both or neither
       CB_STRIPES           per-thread counter stripes per breaker (default 64)
       CB_HISTORY           transitions kept in the history ring (default 32, power of 2)
       CB_CACHELINE         cache line size used to pad hot fields apart (default 64)
       CB_YIELD_POINT()     called between each load and the CAS/store that depends on it;
                            empty by default, tests define it to widen race windows
       CB_NO_SHM            no shared memory: cb_shm_* return CB_EIO (no mmap, no file I/O)
       CB_SHM_WAIT_MS       how long cb_shm_open waits for a creator at work (default 2000)
       CB_TEST_HOOKS        tests only: cb__test_set_generation, cb__test_set_counters

   CONTENTS

       1. types and API           (declarations, always compiled)
       2. state word and fast path (static inline: cb_allow, cb_record)
       3. implementation          (#ifdef CB_IMPLEMENTATION)
            names, config, init, counter stripes, time, history, windows, bulkhead,
            the state machine (every transition, state by state), stats, export,
            registry, shared memory
       4. license

   STATE DIAGRAM

                     rule holds                      period elapsed, first cb_allow
          +--------+ ------------> +------+ --------------------------------> +-----------+
          | CLOSED |               | OPEN |                                   | HALF_OPEN |
          +--------+ <------+      +------+ <-------------------------------- +-----------+
               ^            |                   probe failed / slow / timed out     |
               |            +-------------------------------------------------------+
               |                     half_open_calls probes succeeded
          cb_set_state / cb_reset: any state -> any state, also FORCED_OPEN (reject all),
          DISABLED (admit all, record nothing), METRICS_ONLY (admit, record, never trip)

   MEMORY ORDERING (details in docs/design.md)

       - One 64-bit state word holds state, generation, backoff step k and the half-open
         round (permits taken, probes succeeded). It changes only by compare-and-swap with
         acq_rel order; exactly one thread wins each transition.
       - Everything a transition publishes beside the word (the deadline word, the history
         entry, the opens counter) is written after the winning CAS and tagged with the
         generation, so readers check the tag instead of trusting order. A reader that
         finds the deadline of the current generation missing (its writer was descheduled
         or died) fills it in itself: no process can wedge the breaker.
       - Cumulative counters live in per-thread stripes: a stripe is claimed once by CAS
         and then written by its owner alone with relaxed load + store (no RMW); readers
         sum the stripes. Threads that find no free stripe share one overflow stripe
         updated with fetch_add.
       - Windows are tagged with the generation of the CLOSED period they belong to, so a
         late writer from an earlier period can never corrupt the counts of a later one.

   All breaker state lives in one position-independent block (offsets, never pointers),
   so the same code serves memory from cb_init, cb_new and a file shared by processes.
*/
/* The implementation needs POSIX (clock_gettime, mmap, kill). Defining the feature macro
   works only before the first system header: include cb.h first in the file that defines
   CB_IMPLEMENTATION, or build with -D_POSIX_C_SOURCE=200809L (or -std=gnu11). */
#if defined(CB_IMPLEMENTATION) && !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE) && \
    !defined(_DEFAULT_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#ifndef CB_H_INCLUDED
#define CB_H_INCLUDED

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if !defined(__cplusplus) && (!defined(ATOMIC_LLONG_LOCK_FREE) || ATOMIC_LLONG_LOCK_FREE != 2)
#error "cb.h needs lock-free 64-bit atomics (ATOMIC_LLONG_LOCK_FREE == 2)"
#endif

#if defined(__GNUC__) || defined(__clang__)
#define CB__UNUSED __attribute__((unused))
#define CB__NOINLINE __attribute__((noinline))
/* the fast path is the whole point of inlining: not left to the compiler's size limits */
#define CB__FAST static inline __attribute__((always_inline))
#else
#define CB__FAST static inline
#define CB__UNUSED
#define CB__NOINLINE
#endif
#ifdef CB_STATIC
#define CB_API static CB__UNUSED
#else
#define CB_API extern
#endif
#ifdef __cplusplus   /* C++23 <stdatomic.h>, or clang's _Atomic extension */
#define CB__ALIGNAS(n) alignas(n)
#define CB__THREAD_LOCAL thread_local
#else
#define CB__ALIGNAS(n) _Alignas(n)
#define CB__THREAD_LOCAL _Thread_local
#endif

#if defined(CB_MALLOC) && !defined(CB_FREE)
#error "cb.h: define CB_FREE together with CB_MALLOC"
#endif
#if defined(CB_FREE) && !defined(CB_MALLOC)
#error "cb.h: define CB_MALLOC together with CB_FREE"
#endif

#ifndef CB_STRIPES
#define CB_STRIPES 64
#endif
#ifndef CB_HISTORY
#define CB_HISTORY 32
#endif
#ifndef CB_CACHELINE
#define CB_CACHELINE 64
#endif
#ifndef CB_YIELD_POINT
#define CB_YIELD_POINT() ((void)0)
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------
   1. Types and API
   --------------------------------------------------------------------------------- */

/* One list per item kind: each gives the enum (values in list order, never renumbered:
   new items go at the end) and every name table cb.h and the tools print or parse. */
#define CB__STATES(X)                                                                   \
    X(CB_CLOSED, "closed")             /* automatic: admit, record, trip on a rule */     \
    X(CB_OPEN, "open")                 /* automatic: reject until the period ends */      \
    X(CB_HALF_OPEN, "half_open")       /* automatic: admit the round's probes */          \
    X(CB_FORCED_OPEN, "forced_open")   /* manual: reject all, no timed exit */            \
    X(CB_DISABLED, "disabled")         /* manual: admit all, record nothing */            \
    X(CB_METRICS_ONLY, "metrics_only") /* manual: admit all, record, never trip */
#define CB__OUTCOMES(X) X(CB_SUCCESS, "success") X(CB_FAILURE, "failure") X(CB_IGNORED, "ignored")
#define CB__REASONS(X)                                                   \
    X(CB_REASON_CONSECUTIVE_FAILURES, "consecutive_failures")            \
    X(CB_REASON_FAILURE_RATE, "failure_rate")                            \
    X(CB_REASON_FAILURE_COUNT, "failure_count")                          \
    X(CB_REASON_SLOW_CALL_RATE, "slow_call_rate")                        \
    X(CB_REASON_OPEN_ELAPSED, "open_elapsed")                            \
    X(CB_REASON_PROBE_FAILED, "probe_failed")                            \
    X(CB_REASON_PROBE_TIMEOUT, "probe_timeout")                          \
    X(CB_REASON_PROBES_SUCCEEDED, "probes_succeeded")                    \
    X(CB_REASON_MANUAL, "manual")
#define CB__ERRORS(X)                                              \
    X(CB_OK, "ok")                                                 \
    X(CB_EINVAL, "invalid argument or configuration")              \
    X(CB_ENOMEM, "out of memory")                                  \
    X(CB_EMISMATCH, "shared breaker has another layout or config") \
    X(CB_ECORRUPT, "shared breaker file is truncated or damaged")  \
    X(CB_EIO, "input/output error")                                \
    X(CB_EPERM, "shared file refused for safety: a symlink, not a regular file, another owner, or writable by others")
#define CB__ENUM_ITEM(id, text) id,
typedef enum cb_state { CB__STATES(CB__ENUM_ITEM) } cb_state;
typedef enum cb_outcome { CB__OUTCOMES(CB__ENUM_ITEM) } cb_outcome;
typedef enum cb_reason { CB__REASONS(CB__ENUM_ITEM) } cb_reason;
typedef enum cb_err { CB__ERRORS(CB__ENUM_ITEM) CB__ERR_COUNT } cb_err;
#undef CB__ENUM_ITEM

typedef struct cb_event {          /* one state transition */
    const char *name;
    cb_state from, to;
    cb_reason reason;
    uint64_t generation;           /* generation entered by this transition */
    uint64_t at_ns;                /* breaker clock */
    uint64_t open_ms;              /* when to == CB_OPEN: the open period chosen */
} cb_event;

/* The config's fields after the name, one line each: type (U32, U64 or DBL), field,
   command-line flag of the tools, and what it means (0 = its default, or off for a rule).
   The public struct, the copy a shared block keeps and checks, and the tools' flags
   (tools/cbflags.h) all come from this list. Trip rules are off at zero; with every rule
   off, consecutive_failures = 5. */
#define CB__CONFIG_FIELDS(X)                                                                 \
    X(U32, consecutive_failures, "consecutive-failures", "open at the Nth failure in a row") \
    X(U32, window_calls, "window-calls", "count window: the last N recorded calls, <= 2^20") \
    X(U32, window_ms, "window-ms", "time window: the calls of the last T ms ...")           \
    X(U32, window_buckets, "window-buckets", "... in this many buckets (min(10, T), <= 1024)") \
    X(U32, minimum_calls, "minimum-calls", "rate rules need this many calls in the window") \
    X(DBL, failure_rate, "failure-rate", "(0,1]: open when failures/calls >= this")         \
    X(U32, failures_in_window, "failures-in-window", "open when the window holds N failures") \
    X(U32, slow_call_ms, "slow-call-ms", "a call that lasts >= this is slow")               \
    X(DBL, slow_call_rate, "slow-call-rate", "(0,1]: open when slow/calls >= this")         \
    X(U32, max_concurrent, "max-concurrent", "admit at most N calls in flight (no limit)")   \
    X(U32, open_ms, "open-ms", "first open period (60000)")                                 \
    X(DBL, backoff, "backoff", ">= 1: each re-open multiplies the period (1)")              \
    X(U32, max_open_ms, "max-open-ms", "cap of the period, >= open_ms (10 * open_ms)")      \
    X(DBL, jitter, "jitter", "[0,1): period scaled by a factor in [1-jitter, 1]")           \
    X(U32, half_open_calls, "half-open-calls", "probe permits, all must succeed (1, <= 255)") \
    X(U32, probe_timeout_ms, "probe-timeout-ms", "a round unresolved this long re-opens (60000)") \
    X(U64, seed, "seed", "jitter seed (a hash of the name)")
#define CB__TYPE_U32 uint32_t
#define CB__TYPE_U64 uint64_t
#define CB__TYPE_DBL double
#define CB__CONFIG_MEMBER(type, field, flag, doc) CB__TYPE_##type field;

typedef struct cb_config {         /* all-zero is valid: every zero field takes its default */
    const char *name;              /* default "breaker"; 1..63 printable ASCII bytes, copied */
    CB__CONFIG_FIELDS(CB__CONFIG_MEMBER)
    /* observation; hooks are per process, never stored in shared memory */
    void (*on_event)(const cb_event *ev, void *user);
    void *user;
    uint64_t (*clock_ns)(void *clock_user);   /* default CLOCK_MONOTONIC */
    void *clock_user;
} cb_config;

typedef struct cb_breaker cb_breaker;

/* Filled by cb_allow, passed by pointer to cb_record, which marks it spent (so a second
   record of it is refused): record the ticket cb_allow filled, not a copy. Opaque. */
typedef struct cb_ticket {
    uint64_t cb__start_ns;   /* breaker clock at admission, when slow calls are measured */
    uint64_t cb__owner;      /* the breaker that admitted the call (its tag); 0 once spent */
    uint32_t cb__gen;        /* generation the call was admitted in */
    uint32_t cb__flags;      /* CB__T_* below */
} cb_ticket;

/* The stats after the state, one line each: type, field, how Prometheus sees it
   (COUNTER: cb_FIELD_total, GAUGE: cb_FIELD, NONE: JSON only) and its help text. The
   struct, the JSON object and the Prometheus families all come from this list.
   Counters are cumulative and never decrease; window figures are what it holds now. */
#define CB__STATS_FIELDS(X)                                                                  \
    X(U64, generation, GAUGE, "Transitions since the breaker was created (mod 2^32)")        \
    X(U64, admitted, COUNTER, "Calls admitted")                                               \
    X(U64, rejected, COUNTER, "Calls rejected")                                               \
    X(U64, successes, COUNTER, "Calls recorded as successes")                                 \
    X(U64, failures, COUNTER, "Calls recorded as failures")                                   \
    X(U64, ignored, COUNTER, "Calls recorded as ignored")                                     \
    X(U64, slow, COUNTER, "Calls that lasted slow_call_ms or longer")                         \
    X(U64, stale, COUNTER, "Results dropped because the breaker moved on")                    \
    X(U64, opens, COUNTER, "Transitions into the open state")                                 \
    X(U32, consecutive_failures, GAUGE, "Current run of failures")                            \
    X(U32, window_calls, GAUGE, "Calls the window holds")                                     \
    X(U32, window_failures, GAUGE, "Failures the window holds")                               \
    X(U32, window_slow, GAUGE, "Slow calls the window holds")                                 \
    X(U32, in_flight, GAUGE, "Calls admitted and not yet recorded")                           \
    X(U64, state_since_ns, NONE, "When the current state began (breaker clock)")              \
    X(U64, last_failure_ns, NONE, "When the last failure was recorded (breaker clock)")       \
    X(U64, open_until_ns, NONE, "OPEN: when the period ends (breaker clock)")
#define CB__STATS_MEMBER(type, field, kind, help) CB__TYPE_##type field;

typedef struct cb_stats {
    cb_state state;
    CB__STATS_FIELDS(CB__STATS_MEMBER)
} cb_stats;

CB_API const char *cb_strerror(cb_err e);
CB_API const char *cb_state_name(cb_state s);     /* "closed", "open", "half_open", ... */
CB_API const char *cb_reason_name(cb_reason r);   /* "consecutive_failures", ...        */
CB_API const char *cb_outcome_name(cb_outcome o); /* "success", "failure", "ignored"    */
/* Parse the lower-case names above (also with '-' for '_'); false if unknown. */
CB_API bool cb_state_parse(const char *s, cb_state *out);

/* Config: check, resolve (defaults filled in, as the breaker will use it), size. */
CB_API cb_err cb_config_check(const cb_config *cfg, char *msg, size_t msg_len);
CB_API cb_err cb_config_resolve(const cb_config *cfg, cb_config *out, char *msg, size_t msg_len);
CB_API size_t cb_size(const cb_config *cfg);                 /* bytes cb_init needs; 0 if invalid */

CB_API cb_err      cb_init(void *mem, size_t len, const cb_config *cfg, cb_breaker **out);
CB_API cb_breaker *cb_new(const cb_config *cfg, cb_err *err);
CB_API void        cb_free(cb_breaker *b);      /* for cb_new breakers; no-op on NULL */
CB_API void        cb_config_get(const cb_breaker *b, cb_config *out); /* resolved config */
CB_API const char *cb_name(const cb_breaker *b);

/* The call protocol: cb_allow, then exactly one cb_record per admitted call. */
static inline bool cb_allow(cb_breaker *b, cb_ticket *t);
static inline bool cb_record(cb_breaker *b, const cb_ticket *t, cb_outcome o);

/* Decorator: run fn(arg) if admitted; fn returning 0 is a success, anything else a failure.
   Returns true if fn ran (its return value in *rc when rc is not NULL), false if rejected. */
CB_API bool cb_call(cb_breaker *b, int (*fn)(void *arg), void *arg, int *rc);

CB_API cb_state cb_get_state(const cb_breaker *b);         /* stored state; no transition */
CB_API cb_err   cb_set_state(cb_breaker *b, cb_state s);   /* manual transition, reason MANUAL */
CB_API void     cb_reset(cb_breaker *b);                   /* CLOSED, window and backoff cleared */
CB_API uint64_t cb_retry_after_ms(const cb_breaker *b);    /* OPEN: ms left; else 0 */

CB_API void   cb_stats_get(const cb_breaker *b, cb_stats *s);
CB_API size_t cb_history(const cb_breaker *b, cb_event *out, size_t max); /* oldest first */

/* snprintf semantics: return the full length, write at most cap bytes, always terminate. */
CB_API int cb_format_json(const cb_breaker *b, char *buf, size_t cap);
CB_API int cb_format_prometheus(cb_breaker *const *bs, size_t n, char *buf, size_t cap);

/* A breaker in a file mapped MAP_SHARED: every process that opens the path shares it. */
CB_API cb_breaker *cb_shm_open(const char *path, const cb_config *cfg, cb_err *err);
CB_API void        cb_shm_close(cb_breaker *b);
/* Attach to an existing shared breaker, taking its config from the file (for tools such
   as cbctl that do not know it). No hooks; the default clock. */
CB_API cb_breaker *cb_shm_attach(const char *path, cb_err *err);
/* Both of the above, with options and a message naming the path and what is wrong.
   cfg NULL attaches only. A shared file is a trust boundary: a symlink, anything but a
   regular file, a file of another user or one writable by every user is refused with
   CB_EPERM and left untouched; a file is created 0600 whatever the umask. */
#define CB_SHM_GROUP 1u   /* share with the file's group: create it 0660, and open a file of
                             another user whose group is one of this process's */
CB_API cb_breaker *cb_shm_open_ex(const char *path, const cb_config *cfg, unsigned flags,
                                  cb_err *err, char *msg, size_t msg_len);

/* Give back this thread's counter stripe of b (thread pools that retire threads while
   the breaker lives on). Optional: stripes of exited threads are reused automatically. */
CB_API void cb_thread_release(cb_breaker *b);

/* Registry: a set of breakers on caller memory (no global state, no allocation). Adding
   and removing are lock-free; readers may iterate while others add. */
typedef struct cb_registry {
    _Atomic(cb_breaker *) *slots;
    size_t cap;
    _Atomic(size_t) used;                /* slots handed out so far */
} cb_registry;
CB_API void        cb_registry_init(cb_registry *r, _Atomic(cb_breaker *) *slots, size_t cap);
CB_API cb_err      cb_registry_add(cb_registry *r, cb_breaker *b);   /* CB_ENOMEM when full */
CB_API bool        cb_registry_remove(cb_registry *r, cb_breaker *b);
CB_API cb_breaker *cb_registry_find(cb_registry *r, const char *name);
/* Copy up to max breakers into out; returns how many there are (snprintf-like). */
CB_API size_t      cb_registry_list(cb_registry *r, cb_breaker **out, size_t max);
CB_API int         cb_registry_json(cb_registry *r, char *buf, size_t cap);       /* a JSON array */
CB_API int         cb_registry_prometheus(cb_registry *r, char *buf, size_t cap);

#ifdef CB_TEST_HOOKS
/* Tests only: start the generation (and this thread's counters) near their maximum. */
CB_API void cb__test_set_generation(cb_breaker *b, uint32_t gen);
CB_API void cb__test_set_counters(cb_breaker *b, uint64_t value);
/* On a fresh breaker: CLOSED at this generation, every counter (opens too) at this value. */
CB_API void cb__test_preset(cb_breaker *b, uint32_t generation, uint64_t counters);
#endif


/* ---------------------------------------------------------------------------------
   2. State word and fast path
   --------------------------------------------------------------------------------- */

#if defined(__GNUC__) || defined(__clang__)
#define CB__LIKELY(x) __builtin_expect(!!(x), 1)
#define CB__UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define CB__LIKELY(x) (x)
#define CB__UNLIKELY(x) (x)
#endif

/* The state word: | generation:32 | succeeded:8 | taken:8 | k:13 | state:3 |
   generation: adds 1 at every transition, wraps modulo 2^32 (a ticket is confused only
   if exactly a multiple of 2^32 transitions pass while its call is in flight);
   k: consecutive opens, picks the backoff step, saturates at 8191;
   taken/succeeded: the half-open round's permits taken and probes that succeeded. */
#define CB__K_MAX 8191u
#define CB__PROBES_MAX 255u
static inline cb_state cb__w_state(uint64_t w) { return (cb_state)(w & 7u); }
static inline uint32_t cb__w_k(uint64_t w) { return (uint32_t)(w >> 3) & CB__K_MAX; }
static inline uint32_t cb__w_taken(uint64_t w) { return (uint32_t)(w >> 16) & 0xffu; }
static inline uint32_t cb__w_succeeded(uint64_t w) { return (uint32_t)(w >> 24) & 0xffu; }
static inline uint32_t cb__w_gen(uint64_t w) { return (uint32_t)(w >> 32); }
static inline uint64_t cb__w_make(cb_state s, uint32_t k, uint32_t taken, uint32_t succeeded,
                                  uint32_t gen)
{
    return (uint64_t)s | (uint64_t)k << 3 | (uint64_t)taken << 16 |
           (uint64_t)succeeded << 24 | (uint64_t)gen << 32;
}

/* Cumulative counters, one set per stripe. */
enum { CB__N_ADMITTED, CB__N_REJECTED, CB__N_SUCCESSES, CB__N_FAILURES, CB__N_IGNORED,
       CB__N_SLOW, CB__N_STALE,
       CB__N_UNCOUNTED,   /* records of DISABLED calls: only to tell calls in flight */
       CB__N_PLACES_TAKEN, CB__N_PLACES_GIVEN,  /* bulkhead places, to settle a dead process's */
       CB__N_COUNT };

/* One cache line: the owner token and the counters it alone writes. */
typedef struct cb__stripe {
    CB__ALIGNAS(CB_CACHELINE) _Atomic(uint64_t) owner;  /* 0: free; else pid << 32 | thread token */
    _Atomic(uint64_t) n[CB__N_COUNT];
} cb__stripe;

/* Ticket flags. */
enum { CB__T_ADMITTED = 1, CB__T_BULKHEAD = 2, CB__T_DISABLED = 4, CB__T_STAMPED = 8 };
/* bits 8..15 of the flags: with CB__T_BULKHEAD, the stripe that tallied the place */
#if CB_STRIPES > 254
#error "CB_STRIPES must be at most 254"
#endif

/* What the fast path must leave to the slow path (cb_breaker.cb__fast). */
enum { CB__F_SLOW = 1, CB__F_BULKHEAD = 2, CB__F_TIME_WINDOW = 4, CB__F_COUNT_WINDOW = 8 };

typedef struct cb__shared cb__shared;   /* the position-independent block (section 3) */

#define CB__NAME_MAX 63u

/* The resolved config as the shared block keeps it: plain values, no pointers. */
typedef struct cb__cfg {
    char name[CB__NAME_MAX + 1];
    CB__CONFIG_FIELDS(CB__CONFIG_MEMBER)
} cb__cfg;

/* The handle: per-process things beside a pointer to the shared block. Everything that
   says where things are or how the breaker behaves (config, sizes, offsets) is a private
   copy made at open: a shared file is never trusted for it again. */
struct cb_breaker {
    cb__shared *cb__sh;
    _Atomic(uint64_t) *cb__word;         /* &cb__sh->word, for the fast path */
    _Atomic(uint64_t) *cb__consec;       /* &cb__sh->consec                   */
    _Atomic(uint64_t) *cb__win_count;    /* cb__sh->win_count: the count window's figures */
    uint32_t cb__window_calls;          /* the count window's size, 0 if none */
    uint32_t cb__fast;                  /* CB__F_* */
    uint64_t cb__id;                    /* unique per handle in this process: keys the thread's stripe cache */
    uint64_t cb__tag;                   /* the breaker's identity, stamped on its tickets; never 0 */
    uint32_t cb__kind;                  /* how the handle was made: init, new, shm */
    void (*cb__on_event)(const cb_event *ev, void *user);
    void *cb__user;
    uint64_t (*cb__clock_ns)(void *clock_user);
    void *cb__clock_user;
    void *cb__window;                   /* the window storage (ring or buckets) in the block */
    uint64_t cb__bucket_ns;             /* time window: ns per bucket */
    uint64_t cb__slow_ns;               /* slow_call_ms in ns */
    uint64_t cb__coarse_margin_ns;      /* deadlines further than this are judged on the
                                           coarse clock; 0: never */
    uint32_t cb__coarse;                /* CB__C_*: what the coarse clock may time */
    cb__cfg cb__config;                 /* the resolved config */
    void *cb__mem;                      /* cb_new: the allocation; shm: the mapping */
    size_t cb__map_len;
};

/* Each thread caches, per breaker handle, the stripe it writes its counters to. */
#define CB__TLS_WAYS 64u
typedef struct cb__tls_entry {
    uint64_t key;                       /* cb_breaker.cb__id, 0 = empty */
    cb__stripe *stripe;
    uint64_t exclusive;                 /* 1: owned by this thread; 0: the shared overflow stripe */
    uint64_t pad;                       /* 32 bytes: an entry never straddles a cache line */
} cb__tls_entry;

#ifdef CB_STATIC
static CB__THREAD_LOCAL cb__tls_entry cb__tls[CB__TLS_WAYS];
#else
extern CB__THREAD_LOCAL cb__tls_entry cb__tls[CB__TLS_WAYS];
#endif
CB_API cb__tls_entry *cb__tls_fill(cb_breaker *b, cb__tls_entry *e);
CB_API bool cb__allow_slow(cb_breaker *b, cb_ticket *t, uint64_t w);
CB_API bool cb__record_slow(cb_breaker *b, const cb_ticket *t, cb_outcome o);
CB_API void cb__window_success(cb_breaker *b, uint64_t w);
/* out of line, also where the implementation is compiled: the clock read it makes would
   keep cb_allow and cb_record from being inlined into their callers */
CB_API CB__NOINLINE uint64_t cb__stamp(const cb_breaker *b);

static inline cb__tls_entry *cb__entry(cb_breaker *b)   /* this thread's stripe of b */
{
    cb__tls_entry *e = &cb__tls[b->cb__id & (CB__TLS_WAYS - 1)];
    return CB__LIKELY(e->key == b->cb__id) ? e : cb__tls_fill(b, e);
}

static inline void cb__count(cb_breaker *b, unsigned i)
{
    cb__tls_entry *e = cb__entry(b);
    _Atomic(uint64_t) *c = &e->stripe->n[i];
    if (CB__LIKELY(e->exclusive))
        /* relaxed load + store: this thread owns the stripe (won its CAS in cb__tls_fill),
           so no other writer exists; readers only sum, so no order is needed */
        atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    else
        /* relaxed RMW: the overflow stripe is shared; the sum needs atomicity, not order */
        atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

CB__FAST bool cb_allow(cb_breaker *b, cb_ticket *t)
{
    /* acquire: pairs with the acq_rel transition CAS, so a call admitted in generation g
       sees everything the thread that made g wrote before its CAS */
    uint64_t w = atomic_load_explicit(b->cb__word, memory_order_acquire);
    if (CB__LIKELY(cb__w_state(w) == CB_CLOSED && !(b->cb__fast & CB__F_BULKHEAD))) {
        cb__count(b, CB__N_ADMITTED);
        t->cb__gen = cb__w_gen(w);
        t->cb__flags = CB__T_ADMITTED;
        t->cb__owner = b->cb__tag;
        t->cb__start_ns = 0;
        if (b->cb__fast & CB__F_SLOW) {   /* slow calls measured: stamp the start */
            t->cb__flags = CB__T_ADMITTED | CB__T_STAMPED;
            t->cb__start_ns = cb__stamp(b);
        }
        return true;
    }
    return cb__allow_slow(b, t, w);
}

/* Count window: a plain success (neither failed nor slow) changes nothing in a full
   window that holds only plain successes, wherever it goes, so it may skip the shared
   head: the one read-modify-write every record would otherwise make on a line all threads
   write. Calls only grow within a period, so the window was full when not-plain was read;
   with no recorder between replacing its entry and counting it, the counts are the ring's
   contents and the skip is exact. Recorders under way can hide at most one failure each
   from the counts (a -1 landing before the +1 it cancels): checked on model/ring.pml,
   with what it means in docs/design.md (Windows). A count below zero (deltas landing out
   of order) is not 0, so it never lets a success skip. */
static inline bool cb__window_full_plain(const cb_breaker *b, uint32_t gen)
{
    /* relaxed: tagged figures; see above for why one load of each, in this order, is enough */
    if (atomic_load_explicit(&b->cb__win_count[0], memory_order_relaxed) !=
        ((uint64_t)gen << 32 | b->cb__window_calls))
        return false;
    CB_YIELD_POINT();
    return atomic_load_explicit(&b->cb__win_count[3], memory_order_relaxed) == (uint64_t)gen << 32;
}

/* A ticket is spent by its first valid record, so a second record of it finds no owner
   and is refused (a copy taken before the first record is not spent with it: record the
   ticket itself). The ticket is the caller's object, written through its pointer. */
static inline void cb__spend(const cb_ticket *t)
{
    ((cb_ticket *)(uintptr_t)t)->cb__owner = 0;
}

/* A ticket the fast path may record as a success: admitted in CLOSED and, when slow calls
   are measured, not slow (a slow one, or one whose clock went back, is left to the slow
   path, which judges it on a later reading of the same clock). */
static inline bool cb__plain_ticket(const cb_breaker *b, const cb_ticket *t)
{
    return t->cb__flags == CB__T_ADMITTED ||
           (t->cb__flags == (CB__T_ADMITTED | CB__T_STAMPED) &&
            cb__stamp(b) - t->cb__start_ns < b->cb__slow_ns);
}

CB__FAST bool cb_record(cb_breaker *b, const cb_ticket *t, cb_outcome o)
{
    if (CB__LIKELY(o == CB_SUCCESS && t && t->cb__owner == b->cb__tag &&
                   !(b->cb__fast & CB__F_BULKHEAD))) {
        /* acquire: as in cb_allow; the generation check below is the staleness test */
        uint64_t w = atomic_load_explicit(b->cb__word, memory_order_acquire);
        /* relaxed: a success only needs to know whether a failure run must be cut; the
           slow path re-reads it under CAS when it must */
        uint64_t run = atomic_load_explicit(b->cb__consec, memory_order_relaxed);
        if (CB__LIKELY(cb__w_state(w) == CB_CLOSED && cb__w_gen(w) == t->cb__gen &&
                       (uint32_t)run == 0 && cb__plain_ticket(b, t))) {
            cb__spend(t);
            cb__count(b, CB__N_SUCCESSES);
            /* a window: the success takes its place there, unless a count window's ring
               would not change */
            if (CB__UNLIKELY(b->cb__fast & (CB__F_COUNT_WINDOW | CB__F_TIME_WINDOW)) &&
                ((b->cb__fast & CB__F_TIME_WINDOW) || !cb__window_full_plain(b, cb__w_gen(w))))
                cb__window_success(b, w);
            return true;
        }
    }
    return cb__record_slow(b, t, o);
}

#ifdef __cplusplus
}
#endif

#endif /* CB_H_INCLUDED */

/* ---------------------------------------------------------------------------------
   3. Implementation
   --------------------------------------------------------------------------------- */
#if defined(CB_IMPLEMENTATION) && !defined(CB_IMPLEMENTATION_DONE)
#define CB_IMPLEMENTATION_DONE

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#if !defined(CLOCK_MONOTONIC)
#error "cb.h: CB_IMPLEMENTATION needs POSIX: include cb.h before other headers in this file, or build with -D_POSIX_C_SOURCE=200809L"
#endif
#ifndef CB_NO_SHM
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#endif

#ifndef CB_MALLOC
#define CB_MALLOC(sz) malloc(sz)
#define CB_FREE(p) free(p)
#endif

#if CB_HISTORY < 16 || (CB_HISTORY & (CB_HISTORY - 1)) != 0
#error "CB_HISTORY must be a power of two >= 16"
#endif

#define CB__MAGIC 0x3168726b61657262ull   /* "breakrh1" */
#define CB__VERSION 6u
#define CB__WINDOW_MAX (1u << 20)
#define CB__BUCKETS_MAX 1024u
#define CB__MS 1000000ull
/* No loop on a shared word runs longer than this: a process scribbling over a shared file
   can make a call give up (reject, or count its outcome stale), never hang it. Honest
   contention never comes near: every failed CAS is another thread's progress. */
#define CB__TRIES (1u << 20)

#ifndef CB_STATIC
_Thread_local _Alignas(64) cb__tls_entry cb__tls[CB__TLS_WAYS];
#endif

/* One transition, written by the thread that won it. seq: 0 never written;
   gen << 2 | 1 while being written; gen << 2 | 2 once complete. */
typedef struct cb__hist {
    _Alignas(CB_CACHELINE) _Atomic(uint64_t) seq;
    _Atomic(uint64_t) what;              /* from | to << 8 | reason << 16 */
    _Atomic(uint64_t) at_ns;
    _Atomic(uint64_t) open_ms;
} cb__hist;

/* Time-window bucket: each word is epoch:32 | count:32, aged out by its epoch tag. */
typedef struct cb__bucket {
    _Atomic(uint64_t) calls, failures, slow;
} cb__bucket;

/* The whole breaker state: one position-independent block (offsets, never pointers),
   so it can live in caller memory, the heap or a file mapped by several processes. */
struct cb__shared {
    /* static part: written once before the block is published, then read-only */
    uint64_t magic;
    uint32_t version, header_size;      /* header_size: sizeof(cb__shared) */
    uint64_t total_size;                /* header + window storage */
    uint64_t fingerprint;               /* hash of the resolved config */
    uint64_t checksum;                  /* hash of every static field above and cfg */
    uint64_t window_off;                /* offset of the window storage from the block */
    uint64_t bucket_ns;                 /* time window: ns per bucket */
    uint64_t instance;                  /* drawn at creation: tags the breaker's tickets */
    cb__cfg cfg;
    _Atomic(uint64_t) ready;             /* shm: set last, with release order */
    _Atomic(uint64_t) created_ns;
    /* transition state: read by every call, written on transitions only */
    _Alignas(CB_CACHELINE) _Atomic(uint64_t) word;
    _Atomic(uint64_t) deadline;          /* gen:16 | ms:48, see cb__publish_time() */
    _Atomic(uint64_t) opens;
    /* failure path */
    _Alignas(CB_CACHELINE) _Atomic(uint64_t) consec;       /* gen:32 | run:32 */
    _Atomic(uint64_t) last_failure_ns;
    /* windows */
    _Alignas(CB_CACHELINE) _Atomic(uint64_t) win_head;     /* count window: next position */
    _Atomic(uint64_t) win_count[4];      /* count window: gen:32 | calls, failures, slow,
                                            entries that are not plain successes:32 */
    _Atomic(uint64_t) win_epoch;         /* time window: epoch:48 | bucket:16 of the newest
                                            epoch seen, see cb__epoch() */
    _Atomic(uint64_t) win_closed[3];     /* time window: epoch:32 | calls, failures, slow:32
                                            of the buckets before that epoch's own */
    /* bulkhead */
    _Alignas(CB_CACHELINE) _Atomic(uint64_t) in_flight;
    _Atomic(uint64_t) sweep_ms;         /* last look for a dead process's bulkhead places */
    cb__hist hist[CB_HISTORY];
    cb__stripe stripes[CB_STRIPES + 1]; /* the last one is the shared overflow stripe */
};

enum { CB__KIND_INIT, CB__KIND_NEW, CB__KIND_SHM };

/* ---- names and errors ---------------------------------------------------------- */

CB_API const char *cb_strerror(cb_err e)
{
#define CB__MSG_ITEM(id, msg) msg,
    static const char *const msgs[] = { CB__ERRORS(CB__MSG_ITEM) };
#undef CB__MSG_ITEM
    return (unsigned)e < CB__ERR_COUNT ? msgs[e] : "unknown error";
}

#define CB__TEXT_ITEM(id, text) text,
static const char *const cb__state_names[] = { CB__STATES(CB__TEXT_ITEM) };
static const char *const cb__reason_names[] = { CB__REASONS(CB__TEXT_ITEM) };
static const char *const cb__outcome_names[] = { CB__OUTCOMES(CB__TEXT_ITEM) };
#undef CB__TEXT_ITEM
#define CB__COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

CB_API const char *cb_state_name(cb_state s)
{
    return (unsigned)s < CB__COUNT_OF(cb__state_names) ? cb__state_names[s] : "unknown";
}

CB_API const char *cb_reason_name(cb_reason r)
{
    return (unsigned)r < CB__COUNT_OF(cb__reason_names) ? cb__reason_names[r] : "unknown";
}

CB_API const char *cb_outcome_name(cb_outcome o)
{
    return (unsigned)o < CB__COUNT_OF(cb__outcome_names) ? cb__outcome_names[o] : "unknown";
}

CB_API bool cb_state_parse(const char *s, cb_state *out)
{
    for (unsigned i = 0; s && i < CB__COUNT_OF(cb__state_names); i++) {
        const char *n = cb__state_names[i];
        size_t j = 0;
        while (n[j] && (s[j] == n[j] || (n[j] == '_' && s[j] == '-')))
            j++;
        if (!n[j] && !s[j]) {
            *out = (cb_state)i;
            return true;
        }
    }
    return false;
}

/* ---- small helpers --------------------------------------------------------------- */

static uint64_t cb__fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = (const unsigned char *)p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ c[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t cb__splitmix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static size_t cb__round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }
static uint64_t cb__add_sat(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }
static uint64_t cb__ceil_ms(uint64_t ns) { return ns / CB__MS + (ns % CB__MS != 0); }
static uint64_t cb__ms_to_ns(uint64_t ms) { return ms > UINT64_MAX / CB__MS ? UINT64_MAX : ms * CB__MS; }

static uint64_t cb__mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t cb__now(const cb_breaker *b)
{
    return b->cb__clock_ns ? b->cb__clock_ns(b->cb__clock_user) : cb__mono_ns();
}

/* The coarse clock (CLOCK_MONOTONIC_COARSE: a seventh of the precise clock's cost on
   Linux) lags the precise one by up to a tick, and by more when the tick itself runs late
   (a loaded VM delayed one by over four ticks, 16 ms, in a stress run). Each breaker
   decides at init what it may time with it (CB__C_*, none with an injected clock):
   statistics always; slow calls and time-window buckets when the tick is at most
   1/CB__COARSE_SHARE of slow_call_ms or of a bucket; deadlines in OPEN and HALF_OPEN only
   while more than CB__COARSE_MARGIN ticks away (nearer, the precise clock decides).
   Transitions and the times they publish always read the precise clock. */
enum { CB__C_STATS = 1, CB__C_SLOW = 2, CB__C_WINDOW = 4 };
#define CB__COARSE_MARGIN 16
#define CB__COARSE_SHARE 16

/* The coarse clock's tick in ns; 0 where it has none, or one too coarse (over 10 ms) to use. */
static uint64_t cb__coarse_tick_ns(void)
{
#ifdef CLOCK_MONOTONIC_COARSE
    static _Atomic(int64_t) tick_ns = -1;
    /* relaxed: every thread computes the same value; a race only repeats the work */
    int64_t tick = atomic_load_explicit(&tick_ns, memory_order_relaxed);
    if (tick < 0) {
        struct timespec res;
        tick = clock_getres(CLOCK_MONOTONIC_COARSE, &res) == 0 && res.tv_sec == 0 &&
                       res.tv_nsec <= 10 * (long)CB__MS ? res.tv_nsec : 0;
        atomic_store_explicit(&tick_ns, tick, memory_order_relaxed);
    }
    return (uint64_t)tick;
#else
    return 0;
#endif
}

static uint64_t cb__coarse_ns(void)
{
#ifdef CLOCK_MONOTONIC_COARSE
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) == 0)
        return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
#endif
    return cb__mono_ns();
}

/* What the coarse clock may time for a breaker with config c (CB__C_*), and the margin
   beyond which it judges deadlines. */
static uint32_t cb__coarse_uses(const cb_config *c, uint64_t bucket_ns, uint64_t *margin_ns)
{
    uint64_t tick = c->clock_ns ? 0 : cb__coarse_tick_ns();
    *margin_ns = CB__COARSE_MARGIN * tick;
    if (!tick)
        return 0;
    uint64_t most = CB__COARSE_SHARE * tick;
    return CB__C_STATS | ((uint64_t)c->slow_call_ms * CB__MS >= most ? CB__C_SLOW : 0) |
           (bucket_ns >= most ? CB__C_WINDOW : 0);
}

/* The time for a use (CB__C_*): a precise reading this call has already made, else the
   coarse clock where the breaker allows it for that use, else the breaker clock, whose
   reading is then kept in *now for the rest of the call (a transition needs it). */
static uint64_t cb__now_for(const cb_breaker *b, uint32_t use, uint64_t *now, bool *have_now)
{
    if (!*have_now) {
        if (b->cb__coarse & use)
            return cb__coarse_ns();
        *now = cb__now(b);
        *have_now = true;
    }
    return *now;
}

/* The clock slow calls are timed on, at admission and at the record alike. */
CB_API uint64_t cb__stamp(const cb_breaker *b)
{
    return (b->cb__coarse & CB__C_SLOW) ? cb__coarse_ns() : cb__now(b);
}

/* True if the breaker clock has surely not reached deadline_ms yet, judged on the coarse
   clock (see above). Rejecting while OPEN needs only this. */
static bool cb__surely_before(const cb_breaker *b, uint64_t deadline_ms)
{
    return b->cb__coarse_margin_ns &&
           cb__coarse_ns() + b->cb__coarse_margin_ns < cb__ms_to_ns(deadline_ms);
}

/* ---- config ---------------------------------------------------------------------- */

#define cb__def(v, dflt) ((v) ? (v) : (dflt))

static cb_err cb__bad(char *msg, size_t len, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static cb_err cb__bad(char *msg, size_t len, const char *fmt, ...)
{
    if (msg && len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, len, fmt, ap);
        va_end(ap);
    }
    return CB_EINVAL;
}

static bool cb__rate_ok(double r) { return r == 0 || (r > 0 && r <= 1); } /* false for NaN */

/* The name: 1..63 printable ASCII bytes; its length in *nl. */
static cb_err cb__check_name(const char *name, size_t *nl, char *msg, size_t len)
{
    *nl = strnlen(name, CB__NAME_MAX + 1);
    if (*nl == 0 || *nl > CB__NAME_MAX)
        return cb__bad(msg, len, "cb_config.name: length %s: must be 1..%u bytes",
                       *nl ? "> 63" : "0", CB__NAME_MAX);
    for (size_t i = 0; i < *nl; i++)
        if (name[i] < 0x20 || name[i] > 0x7e)
            return cb__bad(msg, len, "cb_config.name: byte %zu is 0x%02x: must be printable ASCII",
                           i, (unsigned char)name[i]);
    return CB_OK;
}

/* Every field that is wrong whatever the others hold. */
static cb_err cb__check_ranges(const cb_config *c, char *msg, size_t len)
{
    if (!cb__rate_ok(c->failure_rate))
        return cb__bad(msg, len, "cb_config.failure_rate = %g: must be in (0, 1] (0 = off)", c->failure_rate);
    if (!cb__rate_ok(c->slow_call_rate))
        return cb__bad(msg, len, "cb_config.slow_call_rate = %g: must be in (0, 1] (0 = off)", c->slow_call_rate);
    if (c->slow_call_rate > 0 && !c->slow_call_ms)
        return cb__bad(msg, len, "cb_config.slow_call_rate = %g: needs slow_call_ms", c->slow_call_rate);
    if (!(c->jitter >= 0 && c->jitter < 1))
        return cb__bad(msg, len, "cb_config.jitter = %g: must be in [0, 1)", c->jitter);
    if (!(c->backoff == 0 || c->backoff >= 1) || c->backoff > 1e6)
        return cb__bad(msg, len, "cb_config.backoff = %g: must be >= 1 and <= 1e6 (0 = default 1)", c->backoff);
    if (c->window_calls && c->window_ms)
        return cb__bad(msg, len, "cb_config.window_calls = %u and window_ms = %u: set one window, not both",
                       c->window_calls, c->window_ms);
    if (c->window_calls > CB__WINDOW_MAX)
        return cb__bad(msg, len, "cb_config.window_calls = %u: must be <= %u", c->window_calls, CB__WINDOW_MAX);
    if (c->window_buckets && !c->window_ms)
        return cb__bad(msg, len, "cb_config.window_buckets = %u: needs window_ms", c->window_buckets);
    if (c->window_buckets > CB__BUCKETS_MAX)
        return cb__bad(msg, len, "cb_config.window_buckets = %u: must be <= %u", c->window_buckets, CB__BUCKETS_MAX);
    if (c->half_open_calls > CB__PROBES_MAX)
        return cb__bad(msg, len, "cb_config.half_open_calls = %u: must be <= %u", c->half_open_calls, CB__PROBES_MAX);
    return CB_OK;
}

/* Defaults that depend on other fields, and the checks between fields they allow. */
static cb_err cb__fill_defaults(cb_config *c, char *msg, size_t len)
{
    bool window_rule = c->failure_rate > 0 || c->failures_in_window || c->slow_call_rate > 0;
    if (!c->consecutive_failures && !window_rule)
        c->consecutive_failures = 5;
    if (window_rule && !c->window_calls && !c->window_ms)
        c->window_calls = 100;
    if (c->window_ms) {
        c->window_buckets = cb__def(c->window_buckets, c->window_ms < 10 ? c->window_ms : 10);
        if (c->window_ms < c->window_buckets)
            return cb__bad(msg, len, "cb_config.window_ms = %u: must be >= window_buckets (%u), a bucket spans >= 1 ms",
                           c->window_ms, c->window_buckets);
    }
    if (c->window_calls && c->minimum_calls > c->window_calls)
        return cb__bad(msg, len, "cb_config.minimum_calls = %u: larger than window_calls = %u",
                       c->minimum_calls, c->window_calls);
    if (!c->minimum_calls)
        c->minimum_calls = c->window_calls && c->window_calls < 10 ? c->window_calls : 10;
    if (c->failures_in_window && c->window_calls && c->failures_in_window > c->window_calls)
        return cb__bad(msg, len, "cb_config.failures_in_window = %u: larger than window_calls = %u",
                       c->failures_in_window, c->window_calls);

    c->open_ms = cb__def(c->open_ms, 60000);
    c->backoff = cb__def(c->backoff, 1.0);
    if (!c->max_open_ms)
        c->max_open_ms = c->open_ms > UINT32_MAX / 10 ? UINT32_MAX : c->open_ms * 10;
    if (c->max_open_ms < c->open_ms)
        return cb__bad(msg, len, "cb_config.max_open_ms = %u: must be >= open_ms = %u", c->max_open_ms, c->open_ms);
    c->half_open_calls = cb__def(c->half_open_calls, 1);
    c->probe_timeout_ms = cb__def(c->probe_timeout_ms, 60000);
    return CB_OK;
}

/* The one place where defaults are chosen and every field is checked. */
static cb_err cb__resolve(const cb_config *in, cb_config *out, char *msg, size_t len)
{
    static const cb_config zero;
    cb_config c = in ? *in : zero;
    size_t nl;
    cb_err e;
    if (msg && len)
        msg[0] = 0;
    c.name = cb__def(c.name, "breaker");
    if ((e = cb__check_name(c.name, &nl, msg, len)) != CB_OK ||
        (e = cb__check_ranges(&c, msg, len)) != CB_OK || (e = cb__fill_defaults(&c, msg, len)) != CB_OK)
        return e;
    if (!c.seed)
        c.seed = cb__fnv(0xcbf29ce484222325ull, c.name, nl);
    *out = c;
    return CB_OK;
}

CB_API cb_err cb_config_check(const cb_config *cfg, char *msg, size_t msg_len)
{
    cb_config out;
    return cb__resolve(cfg, &out, msg, msg_len);
}

CB_API cb_err cb_config_resolve(const cb_config *cfg, cb_config *out, char *msg, size_t msg_len)
{
    cb_config tmp;
    cb_err e = cb__resolve(cfg, &tmp, msg, msg_len);
    if (e == CB_OK && out)
        *out = tmp;
    return e;
}

/* The block keeps every config field but the per-process hooks (CB__CONFIG_FIELDS). */
static void cb__cfg_store(cb__cfg *d, const cb_config *c)
{
    memset(d, 0, sizeof *d);
    memcpy(d->name, c->name, strlen(c->name));
#define CB__STORE(type, f, flag, doc) d->f = c->f;
    CB__CONFIG_FIELDS(CB__STORE)
#undef CB__STORE
}

static void cb__cfg_load(cb_config *out, const cb__cfg *d)
{
    memset(out, 0, sizeof *out);
    out->name = d->name;
#define CB__LOAD(type, f, flag, doc) out->f = d->f;
    CB__CONFIG_FIELDS(CB__LOAD)
#undef CB__LOAD
}

CB_API void cb_config_get(const cb_breaker *b, cb_config *out)
{
    cb__cfg_load(out, &b->cb__config);
    out->on_event = b->cb__on_event;
    out->user = b->cb__user;
    out->clock_ns = b->cb__clock_ns;
    out->clock_user = b->cb__clock_user;
}

CB_API const char *cb_name(const cb_breaker *b) { return b->cb__config.name; }

/* ---- layout and init ------------------------------------------------------------- */

static size_t cb__window_bytes(const cb_config *c)
{
    if (c->window_calls)
        return (size_t)c->window_calls * sizeof(_Atomic(uint32_t));
    if (c->window_ms)
        return (size_t)c->window_buckets * sizeof(cb__bucket);
    return 0;
}

static size_t cb__block_size(const cb_config *c)
{
    return sizeof(cb__shared) + cb__round_up(cb__window_bytes(c), CB_CACHELINE);
}

static uint64_t cb__bucket_ns(const cb_config *c)
{
    return c->window_ms ? (uint64_t)c->window_ms * CB__MS / c->window_buckets : 0;
}

static size_t cb__handle_size(void) { return cb__round_up(sizeof(cb_breaker), CB_CACHELINE); }

CB_API size_t cb_size(const cb_config *cfg)
{
    cb_config c;
    if (cb__resolve(cfg, &c, NULL, 0) != CB_OK)
        return 0;
    return CB_CACHELINE - 1 + cb__handle_size() + cb__block_size(&c);
}

static _Atomic(uint32_t) *cb__ring(const cb_breaker *b) { return (_Atomic(uint32_t) *)b->cb__window; }
static cb__bucket *cb__buckets(const cb_breaker *b) { return (cb__bucket *)b->cb__window; }

static uint64_t cb__static_hash(const cb__shared *sh)
{
    uint64_t h = 0xcbf29ce484222325ull;
    h = cb__fnv(h, &sh->magic, sizeof sh->magic);
    h = cb__fnv(h, &sh->version, sizeof sh->version);
    h = cb__fnv(h, &sh->header_size, sizeof sh->header_size);
    h = cb__fnv(h, &sh->total_size, sizeof sh->total_size);
    h = cb__fnv(h, &sh->fingerprint, sizeof sh->fingerprint);
    h = cb__fnv(h, &sh->window_off, sizeof sh->window_off);
    h = cb__fnv(h, &sh->bucket_ns, sizeof sh->bucket_ns);
    h = cb__fnv(h, &sh->instance, sizeof sh->instance);
    return cb__fnv(h, &sh->cfg, sizeof sh->cfg);
}

/* A breaker's identity, never 0: distinct for blocks made at distinct times, places or
   processes, so a ticket of one breaker is refused by every other. */
static uint64_t cb__instance(const void *where, uint64_t now)
{
    static _Atomic(uint64_t) made;
    /* relaxed: only distinctness matters */
    uint64_t n = atomic_fetch_add_explicit(&made, 1, memory_order_relaxed);
    uint64_t x = cb__splitmix(now ^ (uint64_t)(uintptr_t)where ^ (uint64_t)getpid() << 40 ^ n << 20);
    return x ? x : 1;
}

/* Lay out and initialise a block for the resolved config c (memory already zeroed). */
static void cb__block_init(cb__shared *sh, const cb_config *c, uint64_t now)
{
    sh->magic = CB__MAGIC;
    sh->version = CB__VERSION;
    sh->header_size = (uint32_t)sizeof(cb__shared);
    sh->total_size = cb__block_size(c);
    cb__cfg_store(&sh->cfg, c);
    sh->fingerprint = cb__fnv(0xcbf29ce484222325ull, &sh->cfg, sizeof sh->cfg);
    sh->window_off = sizeof(cb__shared);
    sh->bucket_ns = cb__bucket_ns(c);
    sh->instance = cb__instance(sh, now);
    sh->checksum = cb__static_hash(sh);
    /* relaxed: the block is not yet visible to other threads; publication (the caller
       returning the handle, or the release store of ready) orders these */
    atomic_store_explicit(&sh->created_ns, now, memory_order_relaxed);
    atomic_store_explicit(&sh->word, cb__w_make(CB_CLOSED, 0, 0, 0, 0), memory_order_relaxed);
}

/* The handle of block sh, whose resolved config is c and identity tag: everything the
   calls use to find their way is taken from c and the layout it implies, never from sh. */
static void cb__handle_init(cb_breaker *b, cb__shared *sh, const cb_config *c, uint64_t tag,
                            uint32_t kind)
{
    static _Atomic(uint64_t) next_id = 1;
    memset(b, 0, sizeof *b);
    cb__cfg_store(&b->cb__config, c);
    const cb__cfg *k = &b->cb__config;
    b->cb__sh = sh;
    b->cb__word = &sh->word;
    b->cb__consec = &sh->consec;
    b->cb__win_count = sh->win_count;
    b->cb__window_calls = k->window_calls;
    b->cb__window = (char *)sh + sizeof(cb__shared);
    b->cb__bucket_ns = cb__bucket_ns(c);
    b->cb__slow_ns = (uint64_t)k->slow_call_ms * CB__MS;
    b->cb__coarse = cb__coarse_uses(c, b->cb__bucket_ns, &b->cb__coarse_margin_ns);
    b->cb__tag = tag;
    /* relaxed: only uniqueness matters */
    b->cb__id = atomic_fetch_add_explicit(&next_id, 1, memory_order_relaxed);
    b->cb__fast = (k->slow_call_ms ? CB__F_SLOW : 0) | (k->max_concurrent ? CB__F_BULKHEAD : 0) |
                  (k->window_ms ? CB__F_TIME_WINDOW : 0) | (k->window_calls ? CB__F_COUNT_WINDOW : 0);
    b->cb__kind = kind;
    b->cb__on_event = c->on_event;
    b->cb__user = c->user;
    b->cb__clock_ns = c->clock_ns;
    b->cb__clock_user = c->clock_user;
}

CB_API cb_err cb_init(void *mem, size_t len, const cb_config *cfg, cb_breaker **out)
{
    cb_config c;
    cb_err e = cb__resolve(cfg, &c, NULL, 0);
    if (e != CB_OK)
        return e;
    if (!mem || !out || len < cb_size(&c))
        return CB_EINVAL;
    char *base = (char *)mem + ((CB_CACHELINE - (uintptr_t)mem % CB_CACHELINE) % CB_CACHELINE);
    cb_breaker *b = (cb_breaker *)base;
    cb__shared *sh = (cb__shared *)(base + cb__handle_size());
    memset(sh, 0, cb__block_size(&c));
    cb__block_init(sh, &c, c.clock_ns ? c.clock_ns(c.clock_user) : cb__mono_ns());
    cb__handle_init(b, sh, &c, sh->instance, CB__KIND_INIT);
    atomic_store_explicit(&sh->ready, 1, memory_order_release);
    *out = b;
    return CB_OK;
}

CB_API cb_breaker *cb_new(const cb_config *cfg, cb_err *err)
{
    cb_err e = cb_config_check(cfg, NULL, 0);
    cb_breaker *b = NULL;
    if (e == CB_OK) {
        size_t n = cb_size(cfg);
        void *mem = CB_MALLOC(n);
        if (!mem)
            e = CB_ENOMEM;
        else if ((e = cb_init(mem, n, cfg, &b)) != CB_OK)
            CB_FREE(mem);
        else {
            b->cb__kind = CB__KIND_NEW;
            b->cb__mem = mem;
        }
    }
    if (err)
        *err = e;
    return b;
}

CB_API void cb_free(cb_breaker *b)
{
    if (!b)
        return;
    if (b->cb__kind == CB__KIND_NEW)
        CB_FREE(b->cb__mem);
    else if (b->cb__kind == CB__KIND_SHM)
        cb_shm_close(b);
}

/* ---- counter stripes ------------------------------------------------------------- */

/* A thread's token: pid << 32 | id. Ids of exited threads are recycled, so a new thread
   inherits (and continues) the stripes of a dead one instead of leaking them. */
#define CB__TOKEN_POOL 4096u
static _Atomic(uint64_t) cb__token_used[CB__TOKEN_POOL / 64];
static _Atomic(uint32_t) cb__token_next = CB__TOKEN_POOL;
static _Thread_local uint64_t cb__token;
static pthread_once_t cb__once = PTHREAD_ONCE_INIT;
static pthread_key_t cb__token_key;

static void cb__token_exit(void *p)
{
    uint32_t id = (uint32_t)(uintptr_t)p - 1;
    if (id < CB__TOKEN_POOL)
        /* release: pairs with the acquire CAS in cb__thread_token(); the next owner of
           this id sees every counter this thread wrote */
        atomic_fetch_and_explicit(&cb__token_used[id / 64], ~(1ull << (id % 64)),
                                  memory_order_release);
}

static void cb__after_fork_child(void)
{
    /* the child is a new process with one thread: its pid differs, so it needs a new
       token, and every cached stripe belongs to the parent's thread */
    cb__token = 0;
    memset(cb__tls, 0, sizeof cb__tls);
    for (unsigned i = 0; i < CB__TOKEN_POOL / 64; i++)
        atomic_store_explicit(&cb__token_used[i], 0, memory_order_relaxed);
}

static void cb__once_init(void)
{
    pthread_key_create(&cb__token_key, cb__token_exit);
    pthread_atfork(NULL, NULL, cb__after_fork_child);
}

static uint64_t cb__thread_token(void)
{
    if (cb__token)
        return cb__token;
    pthread_once(&cb__once, cb__once_init);
    uint32_t id = UINT32_MAX;
    for (unsigned i = 0; i < CB__TOKEN_POOL / 64 && id == UINT32_MAX; i++) {
        uint64_t used = atomic_load_explicit(&cb__token_used[i], memory_order_relaxed);
        while (used != UINT64_MAX) {
            unsigned bit = (unsigned)__builtin_ctzll(~used);
            CB_YIELD_POINT();
            /* acquire: pairs with the release in cb__token_exit() */
            if (atomic_compare_exchange_weak_explicit(&cb__token_used[i], &used,
                                                      used | 1ull << bit,
                                                      memory_order_acquire,
                                                      memory_order_relaxed)) {
                id = i * 64 + bit;
                break;
            }
        }
    }
    if (id == UINT32_MAX) /* pool exhausted: a fresh id, never recycled; relaxed: uniqueness only */
        id = atomic_fetch_add_explicit(&cb__token_next, 1, memory_order_relaxed);
    pthread_setspecific(cb__token_key, (void *)(uintptr_t)(id + 1));
    cb__token = (uint64_t)(uint32_t)getpid() << 32 | (id + 1);
    return cb__token;
}

/* Give back n bulkhead places, never below zero: whatever a caller's bug or a damaged
   file gives back too often cannot wrap the count and shut the bulkhead for good. */
static void cb__places_give(cb__shared *sh, uint64_t n)
{
    uint64_t cur = atomic_load_explicit(&sh->in_flight, memory_order_relaxed);
    for (uint32_t tries = 0; cur && tries < CB__TRIES; tries++) {
        CB_YIELD_POINT();
        /* relaxed: the count alone bounds admissions, as in cb__bulkhead_take */
        if (atomic_compare_exchange_weak_explicit(&sh->in_flight, &cur, cur > n ? cur - n : 0,
                                                  memory_order_relaxed, memory_order_relaxed))
            return;
    }
}

/* Give back the bulkhead places a dead process's stripe still holds; the caller has just
   taken the stripe over from the dead owner. Its places were taken by that process alone
   and can be given back by nobody else (tickets do not cross processes). */
static void cb__settle_places(cb__shared *sh, cb__stripe *st)
{
    uint64_t taken = atomic_load_explicit(&st->n[CB__N_PLACES_TAKEN], memory_order_relaxed);
    uint64_t given = atomic_load_explicit(&st->n[CB__N_PLACES_GIVEN], memory_order_relaxed);
    if (taken > given) {   /* relaxed: counts alone, as in cb__bulkhead_take */
        atomic_fetch_add_explicit(&st->n[CB__N_PLACES_GIVEN], taken - given, memory_order_relaxed);
        cb__places_give(sh, taken - given);
    }
}

static bool cb__pid_dead(uint64_t owner)
{
    pid_t pid = (pid_t)(owner >> 32);
    return pid > 0 && pid != getpid() && kill(pid, 0) == -1 && errno == ESRCH;
}

/* Find or claim this thread's stripe of b and cache it in e. */
CB_API cb__tls_entry *cb__tls_fill(cb_breaker *b, cb__tls_entry *e)
{
    uint64_t me = cb__thread_token();
    cb__stripe *st = b->cb__sh->stripes, *mine = NULL;
    for (unsigned i = 0; i < CB_STRIPES && !mine; i++)   /* one this thread owns already */
        if (atomic_load_explicit(&st[i].owner, memory_order_relaxed) == me)
            mine = &st[i];
    for (unsigned pass = 0; pass < 2 && !mine; pass++) {  /* a free one, else a dead process's */
        for (unsigned i = 0; i < CB_STRIPES && !mine; i++) {
            uint64_t o = atomic_load_explicit(&st[i].owner, memory_order_relaxed);
            if (pass == 0 ? o != 0 : !cb__pid_dead(o))
                continue;
            CB_YIELD_POINT();
            /* acquire: pairs with the release store in cb_thread_release(), so this thread
               continues from the last values the previous owner wrote */
            if (atomic_compare_exchange_strong_explicit(&st[i].owner, &o, me,
                                                        memory_order_acquire,
                                                        memory_order_relaxed)) {
                mine = &st[i];
                if (pass == 1)
                    cb__settle_places(b->cb__sh, mine);   /* a dead process's stripe */
            }
        }
    }
    e->key = b->cb__id;
    e->stripe = mine ? mine : &st[CB_STRIPES];
    e->exclusive = mine != NULL;
    return e;
}

CB_API void cb_thread_release(cb_breaker *b)
{
    uint64_t me = cb__token;
    cb__tls_entry *e = &cb__tls[b->cb__id & (CB__TLS_WAYS - 1)];
    if (e->key == b->cb__id)
        e->key = 0;
    for (unsigned i = 0; me && i < CB_STRIPES; i++)
        if (atomic_load_explicit(&b->cb__sh->stripes[i].owner, memory_order_relaxed) == me)
            /* release: pairs with the acquire claim CAS of the next owner */
            atomic_store_explicit(&b->cb__sh->stripes[i].owner, 0, memory_order_release);
}

static void cb__sum(const cb__shared *sh, uint64_t n[CB__N_COUNT])
{
    memset(n, 0, sizeof(uint64_t) * CB__N_COUNT);
    for (unsigned i = 0; i <= CB_STRIPES; i++)
        for (unsigned j = 0; j < CB__N_COUNT; j++)
            /* relaxed: each stripe counter only grows; a sum taken while calls run is a
               snapshot, exact once the callers are quiescent (they joined, or their
               records happened before this call) */
            n[j] += atomic_load_explicit(&sh->stripes[i].n[j], memory_order_relaxed);
}

/* ---- time ------------------------------------------------------------------------ */


static double cb__pow(double base, uint32_t e)  /* square-and-multiply: exact for the model too */
{
    double r = 1;
    for (; e; e >>= 1, base *= base)
        if (e & 1)
            r *= base;
    return r;
}

static double cb__base_ms(const cb__cfg *c, uint32_t k)
{
    double p = (double)c->open_ms * cb__pow(c->backoff, k);
    return p < (double)c->max_open_ms ? p : (double)c->max_open_ms;
}

/* The k-th open period, with the jitter drawn for this generation. */
static uint64_t cb__period_ms(const cb__cfg *c, uint32_t k, uint32_t gen)
{
    double u = (double)(cb__splitmix(c->seed ^ ((uint64_t)gen * 0x9e3779b97f4a7c15ull)) >> 11) *
               0x1.0p-53;
    double p = cb__base_ms(c, k) * (1.0 - c->jitter * u);
    return p < 1 ? 1 : (uint64_t)p;
}

static uint32_t cb__next_k(const cb__cfg *c, uint32_t k)
{
    return k < CB__K_MAX && cb__base_ms(c, k) < (double)c->max_open_ms ? k + 1 : k;
}

/* Is gen still the current generation? Writers of generation-tagged words ask before
   they replace another generation's value: a late writer must not overwrite a newer one. */
static bool cb__period_current(const cb__shared *sh, uint32_t gen)
{
    /* relaxed: advisory; if gen ends right after, the word written here carries the old
       tag, which the newer generation's writers replace in turn */
    return cb__w_gen(atomic_load_explicit(&sh->word, memory_order_relaxed)) == gen;
}

/* The deadline word: gen:16 | ms:48. For OPEN the end of the period, for HALF_OPEN the
   probe deadline, for other states when they began; in whole ms of the breaker clock.
   Written after the transition CAS by its winner, or by any thread that finds it missing,
   and only for the current generation (tags compared for equality: every transition
   publishes, so an old tag can never have come round again). */
#define CB__MS_MASK ((1ull << 48) - 1)

static void cb__publish_time(cb__shared *sh, uint32_t gen, uint64_t ms)
{
    uint64_t want = (uint64_t)(gen & 0xffff) << 48 | (ms & CB__MS_MASK);
    uint64_t cur = atomic_load_explicit(&sh->deadline, memory_order_relaxed);
    for (uint32_t tries = 0; tries < CB__TRIES; tries++) {
        if ((uint16_t)(cur >> 48) == (uint16_t)gen || !cb__period_current(sh, gen))
            return;   /* published already, or a newer generation's time is what counts */
        CB_YIELD_POINT();
        /* relaxed: the word carries its own generation tag; readers check the tag
           instead of relying on order with any other write */
        if (atomic_compare_exchange_weak_explicit(&sh->deadline, &cur, want,
                                                  memory_order_relaxed, memory_order_relaxed))
            return;
    }
}

static bool cb__time_of(const cb__shared *sh, uint32_t gen, uint64_t *ms)
{
    uint64_t v = atomic_load_explicit(&sh->deadline, memory_order_relaxed); /* relaxed: tagged */
    if ((uint16_t)(v >> 48) != (uint16_t)gen)
        return false;
    *ms = v & CB__MS_MASK;
    return true;
}

/* The time a transition into `to` at `now` publishes (and the open period it chose). */
static uint64_t cb__time_for(const cb__cfg *c, uint64_t to, uint64_t now, uint64_t *open_ms)
{
    *open_ms = 0;
    switch (cb__w_state(to)) {
    case CB_OPEN:
        *open_ms = cb__period_ms(c, cb__w_k(to), cb__w_gen(to));
        return cb__ceil_ms(cb__add_sat(now, *open_ms * CB__MS));
    case CB_HALF_OPEN:
        return cb__ceil_ms(cb__add_sat(now, (uint64_t)c->probe_timeout_ms * CB__MS));
    default:
        return cb__ceil_ms(now);
    }
}

/* ---- history --------------------------------------------------------------------- */

static void cb__history_write(cb__shared *sh, const cb_event *ev)
{
    uint32_t gen = (uint32_t)ev->generation;
    cb__hist *h = &sh->hist[gen % CB_HISTORY];
    uint64_t cur = atomic_load_explicit(&h->seq, memory_order_relaxed);
    for (uint32_t tries = 0;; tries++) {
        if ((cur & 3) == 1 || tries == CB__TRIES)
            return;   /* a writer CB_HISTORY transitions late holds it: drop ours, never wait */
        if (cur && (int32_t)(gen - (uint32_t)(cur >> 2)) <= 0)
            return;   /* a newer entry is there */
        CB_YIELD_POINT();
        /* relaxed: the release stores of the fields below keep them after this mark */
        if (atomic_compare_exchange_weak_explicit(&h->seq, &cur, (uint64_t)gen << 2 | 1,
                                                  memory_order_relaxed, memory_order_relaxed))
            break;
    }
    /* release (each field): a reader that sees a field value sees the in-progress mark,
       so its re-check of seq fails (seqlock without fences, which ThreadSanitizer checks) */
    atomic_store_explicit(&h->what, (uint64_t)ev->from | (uint64_t)ev->to << 8 |
                          (uint64_t)ev->reason << 16, memory_order_release);
    atomic_store_explicit(&h->at_ns, ev->at_ns, memory_order_release);
    atomic_store_explicit(&h->open_ms, ev->open_ms, memory_order_release);
    /* release: pairs with the acquire load in cb__history_read(); a reader that sees the
       complete mark sees the fields above */
    atomic_store_explicit(&h->seq, (uint64_t)gen << 2 | 2, memory_order_release);
}

/* Copy one entry without tearing (seqlock read); false if empty, in progress or torn. */
static bool cb__history_read(const cb_breaker *b, const cb__hist *h, cb_event *ev)
{
    for (int tries = 0; tries < 4; tries++) {
        uint64_t s1 = atomic_load_explicit(&h->seq, memory_order_acquire);
        if ((s1 & 3) != 2)
            return false;
        /* acquire (each field): pairs with the writer's release stores, and keeps the
           re-check of seq after these loads */
        uint64_t what = atomic_load_explicit(&h->what, memory_order_acquire);
        uint64_t at = atomic_load_explicit(&h->at_ns, memory_order_acquire);
        uint64_t om = atomic_load_explicit(&h->open_ms, memory_order_acquire);
        if (atomic_load_explicit(&h->seq, memory_order_relaxed) != s1)
            continue;
        unsigned from = what & 0xff, to = (what >> 8) & 0xff, why = (what >> 16) & 0xff;
        if (from >= CB__COUNT_OF(cb__state_names) || to >= CB__COUNT_OF(cb__state_names) ||
            why >= CB__COUNT_OF(cb__reason_names))
            return false;   /* damaged (a shared file edited by hand): skip it */
        ev->name = b->cb__config.name;
        ev->from = (cb_state)from;
        ev->to = (cb_state)to;
        ev->reason = (cb_reason)why;
        ev->generation = (uint32_t)(s1 >> 2);
        ev->at_ns = at;
        ev->open_ms = om;
        return true;
    }
    return false;
}

CB_API size_t cb_history(const cb_breaker *b, cb_event *out, size_t max)
{
    cb_event all[CB_HISTORY];
    uint32_t newest = cb__w_gen(atomic_load_explicit(b->cb__word, memory_order_acquire));
    size_t n = 0;
    for (unsigned i = 0; i < CB_HISTORY; i++) {
        cb_event ev;
        if (!cb__history_read(b, &b->cb__sh->hist[i], &ev))
            continue;
        /* insertion sort, oldest first: age is the distance back from the newest gen */
        uint32_t age = newest - (uint32_t)ev.generation;
        if (age >= 1u << 31)
            continue;   /* written after our look at the word: newer than newest */
        size_t j = n++;
        while (j > 0 && newest - (uint32_t)all[j - 1].generation < age) {
            all[j] = all[j - 1];
            j--;
        }
        all[j] = ev;
    }
    size_t skip = n > max ? n - max : 0;
    for (size_t i = skip; i < n; i++)
        out[i - skip] = all[i];
    return n - skip;
}

/* ---- windows --------------------------------------------------------------------- */

/* Words tagged with the generation of a CLOSED period (gen:32 | value:32) are restarted
   by a writer that finds another period's tag, but only while the writer's own period is
   still the current one: a late writer must not restart a newer period's word. Tags are
   compared for equality only, so no distance between periods is ever misread. */

/* Add delta to the value of the tagged word for period gen; the new value, or 0 when the
   writer is late. A value below zero (deltas landing out of order) is kept as such. */
static int32_t cb__tagged_add(cb__shared *sh, _Atomic(uint64_t) *word, uint32_t gen, int32_t delta)
{
    uint64_t cur = atomic_load_explicit(word, memory_order_relaxed);
    for (uint32_t tries = 0;; tries++) {
        int32_t v = (uint32_t)(cur >> 32) == gen ? (int32_t)(uint32_t)cur : 0;
        if (((uint32_t)(cur >> 32) != gen && !cb__period_current(sh, gen)) || tries == CB__TRIES)
            return 0;
        int32_t next = (delta > 0 && v == INT32_MAX) || (delta < 0 && v == INT32_MIN) ? v : v + delta;
        if (next == v && (uint32_t)(cur >> 32) == gen)
            return v;   /* nothing to write */
        CB_YIELD_POINT();
        /* relaxed: a self-tagged figure; the trip it may lead to is the state CAS */
        if (atomic_compare_exchange_weak_explicit(word, &cur, (uint64_t)gen << 32 | (uint32_t)next,
                                                  memory_order_relaxed, memory_order_relaxed))
            return next;
    }
}

static uint32_t cb__tagged_get(const _Atomic(uint64_t) *word, uint32_t gen)
{
    uint64_t v = atomic_load_explicit(word, memory_order_relaxed);   /* relaxed: tagged */
    return (uint32_t)(v >> 32) == gen && (int32_t)(uint32_t)v > 0 ? (uint32_t)v : 0;
}

/* Consecutive failures (sh->consec, tagged): the run after this outcome. */
static uint32_t cb__consec_update(cb__shared *sh, uint32_t gen, bool failure)
{
    if (failure)
        return (uint32_t)cb__tagged_add(sh, &sh->consec, gen, 1);
    /* a success cuts the run to 0 under this period's tag; no write when it is 0 already */
    uint64_t cur = atomic_load_explicit(&sh->consec, memory_order_relaxed);
    for (uint32_t tries = 0; (uint32_t)cur != 0 && tries < CB__TRIES; tries++) {
        if ((uint32_t)(cur >> 32) != gen && !cb__period_current(sh, gen))
            break;
        CB_YIELD_POINT();
        /* relaxed: as in cb__tagged_add */
        if (atomic_compare_exchange_weak_explicit(&sh->consec, &cur, (uint64_t)gen << 32,
                                                  memory_order_relaxed, memory_order_relaxed))
            break;
    }
    return 0;
}

typedef struct cb__figures { uint32_t calls, failures, slow; } cb__figures;

/* Count window entries: gen:29 | valid:1 | slow:1 | failure:1, and three tagged count
   words (calls, failures, slow). Entries and counts carry the generation of their CLOSED
   period, so a fresh period needs no reset and a late outcome changes nothing the next
   period counts. (An entry left untouched for exactly a multiple of 2^29 transitions would
   be taken for current: documented in docs/design.md.) */
#define CB__RING_GEN(g) ((uint32_t)(g) & 0x1fffffffu)

static void cb__ring_figures(const cb__shared *sh, uint32_t gen, cb__figures *f)
{
    f->calls = cb__tagged_get(&sh->win_count[0], gen);
    f->failures = cb__tagged_get(&sh->win_count[1], gen);
    f->slow = cb__tagged_get(&sh->win_count[2], gen);
}

/* Put one outcome in the count window; true if the figures changed, and then *f holds
   them (a success replacing a success, the steady state, changes nothing). */
static bool cb__ring_add(const cb_breaker *b, uint32_t gen, bool fail, bool slow, cb__figures *f)
{
    if (!fail && !slow && cb__window_full_plain(b, gen))
        return false;
    cb__shared *sh = b->cb__sh;
    _Atomic(uint32_t) *ring = cb__ring(b);
    uint32_t entry = CB__RING_GEN(gen) << 3 | 4u | (slow ? 2u : 0u) | (fail ? 1u : 0u);
    /* relaxed: the position only spreads writers over the ring; entries carry their tag */
    uint64_t pos = atomic_fetch_add_explicit(&sh->win_head, 1, memory_order_relaxed);
    _Atomic(uint32_t) *slot = &ring[pos % b->cb__window_calls];
    bool changed = false;
    /* relaxed: replacing an entry by an equal one is no change, so skipping the write
       is the same as making it (linearised at this load) */
    uint32_t old = atomic_load_explicit(slot, memory_order_relaxed);
    for (uint32_t tries = 0; old != entry && tries < CB__TRIES; tries++) {
        if ((old >> 3) != CB__RING_GEN(gen) && !cb__period_current(sh, gen))
            break;   /* a late writer must not take out an entry the current period counts */
        CB_YIELD_POINT();
        /* CAS: each entry's contribution is removed exactly once, by the writer that
           replaces it, so the counts never drift from the ring's contents */
        if (!atomic_compare_exchange_weak_explicit(slot, &old, entry, memory_order_relaxed,
                                                   memory_order_relaxed))
            continue;
        bool counted = (old & 4u) && (old >> 3) == CB__RING_GEN(gen);
        int32_t delta[4] = { counted ? 0 : 1, (int32_t)fail - (counted ? (int32_t)(old & 1u) : 0),
                             (int32_t)slow - (counted ? (int32_t)((old >> 1) & 1u) : 0),
                             (int32_t)(fail || slow) - (counted ? (int32_t)((old & 3u) != 0) : 0) };
        for (int i = 0; i < 4; i++)
            if (delta[i]) {
                cb__tagged_add(sh, &sh->win_count[i], gen, delta[i]);
                changed = true;
            }
        /* the not-plain count takes this period's tag with the period's first entries,
           even at 0, or a period that never sees a failure would never skip the head */
        if (!counted && !delta[3])
            cb__tagged_add(sh, &sh->win_count[3], gen, 0);
        break;
    }
    if (changed)
        cb__ring_figures(sh, gen, f);
    return changed;
}

/* Time window: bucket words are epoch:32 | count:32; an epoch is bucket_ns of the clock.
   The newest epoch seen (win_epoch, with its bucket's index, so that a record in it needs
   no division) only moves forward within a period, so a clock that goes back is not
   moving; a fresh window (cb__buckets_clear) starts at the clock's own epoch. */
typedef struct cb__epoch_at { uint64_t e; uint32_t bucket; } cb__epoch_at;

static uint64_t cb__epoch_word(const cb_breaker *b, uint64_t e)
{
    return e << 16 | e % b->cb__config.window_buckets;   /* e < 2^45: a bucket is >= 1 ms */
}

/* The newest epoch, if the clock has not left it (or is behind it); false otherwise. */
static inline bool cb__epoch_held(const cb_breaker *b, uint64_t seen, uint64_t now, cb__epoch_at *at)
{
    uint64_t se = seen >> 16, start = se * b->cb__bucket_ns;
    if ((seen & 0xffff) >= b->cb__config.window_buckets ||
        (now >= start && now - start >= b->cb__bucket_ns))
        return false;
    *at = (cb__epoch_at){ se, (uint32_t)(seen & 0xffff) };
    return true;
}

static CB__NOINLINE cb__epoch_at cb__epoch_move(const cb_breaker *b, uint64_t now, bool advance,
                                               uint64_t seen);

static inline cb__epoch_at cb__epoch(const cb_breaker *b, uint64_t now, bool advance)
{
    /* relaxed: a monotonic maximum, no data hangs on it */
    uint64_t seen = atomic_load_explicit(&b->cb__sh->win_epoch, memory_order_relaxed);
    cb__epoch_at at;
    return CB__LIKELY(cb__epoch_held(b, seen, now, &at)) ? at : cb__epoch_move(b, now, advance, seen);
}

/* The clock has left the newest epoch: the epoch it is in, made the newest if advance. */
static cb__epoch_at cb__epoch_move(const cb_breaker *b, uint64_t now, bool advance, uint64_t seen)
{
    _Atomic(uint64_t) *newest = &b->cb__sh->win_epoch;
    uint32_t n = b->cb__config.window_buckets;
    cb__epoch_at at;
    for (uint32_t tries = 0; tries < CB__TRIES; tries++) {
        if (tries && cb__epoch_held(b, seen, now, &at))
            return at;
        uint64_t se = seen >> 16;
        uint64_t e = now / b->cb__bucket_ns;
        if (!advance || e <= se)
            break;
        CB_YIELD_POINT();
        /* relaxed: as the load */
        if (atomic_compare_exchange_weak_explicit(newest, &seen, cb__epoch_word(b, e),
                                                  memory_order_relaxed, memory_order_relaxed))
            return (cb__epoch_at){ e, (uint32_t)(e % n) };
    }
    uint64_t e = now / b->cb__bucket_ns;   /* not advanced, or a word naming no bucket */
    if ((seen >> 16) > e)
        e = seen >> 16;
    return (cb__epoch_at){ e, (uint32_t)(e % n) };
}

/* The count in bucket word `word` for epoch e, 0 if it holds another epoch. */
static uint32_t cb__bucket_get(const _Atomic(uint64_t) *word, uint64_t e)
{
    uint64_t v = atomic_load_explicit(word, memory_order_relaxed);   /* relaxed: tagged */
    return (uint32_t)(v >> 32) == (uint32_t)e ? (uint32_t)v : 0;
}

/* Count one outcome in the bucket word for epoch e (64-bit), and return the bucket's count
   for e after it: restart a bucket that holds an older epoch only while e itself is still
   in the window, judged on the 64-bit newest epoch, never by the sign of a 32-bit
   difference. */
static uint32_t cb__bucket_add(const cb_breaker *b, _Atomic(uint64_t) *word, uint64_t e)
{
    uint64_t cur = atomic_load_explicit(word, memory_order_relaxed);
    for (uint32_t tries = 0; tries < CB__TRIES; tries++) {
        uint64_t next;
        if ((uint32_t)(cur >> 32) == (uint32_t)e)
            next = (uint32_t)cur == UINT32_MAX ? cur : cur + 1;
        else if ((atomic_load_explicit(&b->cb__sh->win_epoch, memory_order_relaxed) >> 16) - e <
                 b->cb__config.window_buckets)
            next = (uint64_t)(uint32_t)e << 32 | 1;   /* the bucket ages out: start it afresh */
        else
            return 0;                                 /* e itself has aged out */
        CB_YIELD_POINT();
        /* relaxed: self-tagged figure */
        if (atomic_compare_exchange_weak_explicit(word, &cur, next, memory_order_relaxed,
                                                  memory_order_relaxed))
            return (uint32_t)next;
    }
    return 0;
}

/* The window's figures at epoch e: its buckets, all of them or (skip < n) all but one. */
static void cb__buckets_sum(const cb_breaker *b, uint64_t epoch, uint32_t skip, cb__figures *f)
{
    const cb__bucket *bk = cb__buckets(b);
    uint32_t n = b->cb__config.window_buckets;
    f->calls = f->failures = f->slow = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (i == skip)
            continue;
        /* relaxed: self-tagged figures; a sum over buckets is a snapshot */
        uint64_t c = atomic_load_explicit(&bk[i].calls, memory_order_relaxed);
        uint64_t x = atomic_load_explicit(&bk[i].failures, memory_order_relaxed);
        uint64_t s = atomic_load_explicit(&bk[i].slow, memory_order_relaxed);
        if ((uint32_t)epoch - (uint32_t)(c >> 32) < n)
            f->calls += (uint32_t)c;
        if ((uint32_t)epoch - (uint32_t)(x >> 32) < n)
            f->failures += (uint32_t)x;
        if ((uint32_t)epoch - (uint32_t)(s >> 32) < n)
            f->slow += (uint32_t)s;
    }
}

/* The figures of the buckets before epoch e's own (at.bucket), which no longer change
   once the clock is in e: summed by the first record of the epoch that finds them
   missing, then read by the others (three loads instead of a walk over every bucket).
   A record racing the epoch change (its bucket chosen before, counted after the sums
   were taken) is left out of what the rules see until the next epoch; cb_stats_get
   always walks the buckets. */
static void cb__closed_sums(const cb_breaker *b, cb__epoch_at at, cb__figures *f)
{
    _Atomic(uint64_t) *cache = b->cb__sh->win_closed;
    /* relaxed: each word carries its epoch tag */
    uint64_t calls = atomic_load_explicit(&cache[0], memory_order_relaxed);
    uint64_t failures = atomic_load_explicit(&cache[1], memory_order_relaxed);
    uint64_t slow = atomic_load_explicit(&cache[2], memory_order_relaxed);
    uint32_t tag = (uint32_t)at.e;
    if (CB__LIKELY(((calls >> 32) ^ tag) == 0 && ((failures >> 32) ^ tag) == 0 &&
                   ((slow >> 32) ^ tag) == 0)) {
        *f = (cb__figures){ (uint32_t)calls, (uint32_t)failures, (uint32_t)slow };
        return;
    }
    cb__buckets_sum(b, at.e, at.bucket, f);
    uint32_t sums[3] = { f->calls, f->failures, f->slow };
    for (int i = 0; i < 3; i++)   /* relaxed: as the loads */
        atomic_store_explicit(&cache[i], (uint64_t)tag << 32 | sums[i], memory_order_relaxed);
}

/* A fresh time window at now: every bucket empty, the newest epoch the clock's own (so a
   window left ahead of the clock, by a file from before a reboot, ages again), and the
   closed sums tagged with an epoch before it, which no record asks for. Relaxed: a late
   writer may still add one outcome, which ages out with its bucket (count windows are
   tagged instead, see cb__ring_add). */
static void cb__buckets_clear(const cb_breaker *b, uint64_t now)
{
    cb__bucket *bk = cb__buckets(b);
    cb__shared *sh = b->cb__sh;
    for (uint32_t i = 0; i < b->cb__config.window_buckets; i++) {
        atomic_store_explicit(&bk[i].calls, 0, memory_order_relaxed);
        atomic_store_explicit(&bk[i].failures, 0, memory_order_relaxed);
        atomic_store_explicit(&bk[i].slow, 0, memory_order_relaxed);
    }
    uint64_t e = now / b->cb__bucket_ns;
    for (int i = 0; i < 3; i++)
        atomic_store_explicit(&sh->win_closed[i], (uint64_t)(uint32_t)(e - 1) << 32, memory_order_relaxed);
    atomic_store_explicit(&sh->win_epoch, cb__epoch_word(b, e), memory_order_relaxed);
}

/* What the window of the current period holds: nothing outside CLOSED and METRICS_ONLY
   (the count window's tags say so by themselves; the time window's buckets do not). */
static void cb__window_figures(const cb_breaker *b, uint64_t w, cb__figures *f)
{
    uint32_t gen = cb__w_gen(w);
    f->calls = f->failures = f->slow = 0;
    if (b->cb__config.window_calls)
        cb__ring_figures(b->cb__sh, gen, f);
    else if (b->cb__config.window_ms && (cb__w_state(w) == CB_CLOSED || cb__w_state(w) == CB_METRICS_ONLY))
        cb__buckets_sum(b, cb__epoch(b, cb__now(b), false).e, UINT32_MAX, f);
}

/* The window rules, in their order; -1 if none holds. */
static int cb__window_rule(const cb__cfg *c, const cb__figures *f)
{
    if (!f->failures && !f->slow)
        return -1;   /* every window rule needs a failure or a slow call */
    bool enough = f->calls >= c->minimum_calls && f->calls > 0;
    if (c->failure_rate > 0 && enough && (double)f->failures / f->calls >= c->failure_rate)
        return CB_REASON_FAILURE_RATE;
    if (c->failures_in_window && f->failures >= c->failures_in_window)
        return CB_REASON_FAILURE_COUNT;
    if (c->slow_call_rate > 0 && enough && (double)f->slow / f->calls >= c->slow_call_rate)
        return CB_REASON_SLOW_CALL_RATE;
    return -1;
}

/* The trip rules, in order, after an outcome left a failure run of `run` and (f not
   NULL) changed the window to f; -1 if none holds. */
static int cb__trip_reason(const cb__cfg *c, uint32_t run, const cb__figures *f)
{
    if (c->consecutive_failures && run >= c->consecutive_failures)
        return CB_REASON_CONSECUTIVE_FAILURES;
    return f ? cb__window_rule(c, f) : -1;
}

/* Put a SUCCESS or FAILURE in the time window; *f: its figures after. */
static void cb__time_add(const cb_breaker *b, bool fail, bool slow, uint64_t *now, bool *have_now,
                         cb__figures *f)
{
    cb__epoch_at at = cb__epoch(b, cb__now_for(b, CB__C_WINDOW, now, have_now), true);
    cb__bucket *bk = &cb__buckets(b)[at.bucket];
    cb__closed_sums(b, at, f);
    f->calls += cb__bucket_add(b, &bk->calls, at.e);
    f->failures += fail ? cb__bucket_add(b, &bk->failures, at.e) : cb__bucket_get(&bk->failures, at.e);
    f->slow += slow ? cb__bucket_add(b, &bk->slow, at.e) : cb__bucket_get(&bk->slow, at.e);
}

/* Put a SUCCESS or FAILURE of period gen in the window; true if the figures changed, and
   then *f holds them. A time window reads the clock into *now unless *have_now. */
static bool cb__window_add(const cb_breaker *b, uint32_t gen, bool fail, bool slow, uint64_t *now,
                           bool *have_now, cb__figures *f)
{
    const cb__cfg *c = &b->cb__config;
    if (c->window_calls)
        return cb__ring_add(b, gen, fail, slow, f);
    if (!c->window_ms)
        return false;
    cb__time_add(b, fail, slow, now, have_now, f);
    return true;
}

/* ---- bulkhead and admission ----------------------------------------------------- */

static void cb__bulkhead_sweep(cb_breaker *b);

static bool cb__bulkhead_take(cb_breaker *b)
{
    if (!(b->cb__fast & CB__F_BULKHEAD))
        return true;
    /* relaxed: the count alone bounds admissions: a call is admitted only if it found
       fewer than max_concurrent before it, so at most that many hold a place */
    for (int tries = 0; tries < 2; tries++) {
        uint64_t before = atomic_fetch_add_explicit(&b->cb__sh->in_flight, 1, memory_order_relaxed);
        if (before < b->cb__config.max_concurrent)
            return true;
        cb__places_give(b->cb__sh, 1);
        if (tries == 0)
            cb__bulkhead_sweep(b);
    }
    return false;
}

static void cb__bulkhead_give(cb_breaker *b)
{
    if (b->cb__fast & CB__F_BULKHEAD)
        cb__places_give(b->cb__sh, 1);
}

/* A process killed while its calls held bulkhead places would keep them forever. Each
   thread tallies the places it takes and gives in its own stripe (take: after the
   fetch_add; give: before the fetch_sub, so a kill in between leaks a place rather than
   freeing one twice); when the bulkhead is full, at most once a second, the stripes of
   dead processes are settled and their places given back. */
static void cb__bulkhead_sweep(cb_breaker *b)
{
    cb__shared *sh = b->cb__sh;
    uint64_t now_ms = cb__mono_ns() / CB__MS;
    uint64_t last = atomic_load_explicit(&sh->sweep_ms, memory_order_relaxed);
    /* relaxed: only elects one sweeper a second; the stripe CAS below does the rest */
    if (now_ms - last < 1000 ||
        !atomic_compare_exchange_strong_explicit(&sh->sweep_ms, &last, now_ms,
                                                 memory_order_relaxed, memory_order_relaxed))
        return;
    uint64_t me = cb__thread_token();
    for (unsigned i = 0; i < CB_STRIPES; i++) {
        cb__stripe *st = &sh->stripes[i];
        uint64_t o = atomic_load_explicit(&st->owner, memory_order_relaxed);
        /* acquire: the dead owner's tallies are complete (it is dead) and visible */
        if (!cb__pid_dead(o) || !atomic_compare_exchange_strong_explicit(
                                    &st->owner, &o, me, memory_order_acquire, memory_order_relaxed))
            continue;
        cb__settle_places(sh, st);
        /* release: the next owner continues from the settled tallies */
        atomic_store_explicit(&st->owner, 0, memory_order_release);
    }
}

static bool cb__reject(cb_breaker *b, cb_ticket *t)
{
    cb__count(b, CB__N_REJECTED);
    t->cb__gen = 0;
    t->cb__flags = 0;
    t->cb__owner = 0;
    t->cb__start_ns = 0;
    return false;
}

static bool cb__admit(cb_breaker *b, cb_ticket *t, uint32_t gen, uint32_t flags)
{
    cb__count(b, CB__N_ADMITTED);
    t->cb__gen = gen;
    t->cb__flags = CB__T_ADMITTED | flags;
    t->cb__owner = b->cb__tag;
    t->cb__start_ns = 0;
    if ((b->cb__fast & CB__F_SLOW) && !(flags & CB__T_DISABLED)) {
        t->cb__flags |= CB__T_STAMPED;
        t->cb__start_ns = cb__stamp(b);
    }
    if (b->cb__fast & CB__F_BULKHEAD) {   /* tally the place in this thread's stripe */
        cb__tls_entry *e = cb__entry(b);
        cb__count(b, CB__N_PLACES_TAKEN);
        uint32_t idx = e->exclusive ? (uint32_t)(e->stripe - b->cb__sh->stripes) : CB_STRIPES;
        t->cb__flags |= CB__T_BULKHEAD | idx << 8;
    }
    return true;
}

/* Count an outcome that counted; a failure also stamps last_failure_ns (a statistic: the
   coarse clock will do). */
static void cb__count_outcome(cb_breaker *b, cb_outcome o, bool slow, uint64_t *now, bool *have_now)
{
    cb__count(b, o == CB_SUCCESS ? CB__N_SUCCESSES : o == CB_FAILURE ? CB__N_FAILURES : CB__N_IGNORED);
    if (slow)
        cb__count(b, CB__N_SLOW);
    if (o == CB_FAILURE) {
        uint64_t at = cb__now_for(b, CB__C_STATS, now, have_now);
        _Atomic(uint64_t) *last = &b->cb__sh->last_failure_ns;
        /* relaxed: a statistic; unchanged (within a coarse tick) is not written again, so
           a run of failures does not keep taking the line from other threads */
        if (atomic_load_explicit(last, memory_order_relaxed) != at)
            atomic_store_explicit(last, at, memory_order_relaxed);
    }
}

/* The first valid record of a ticket: spend it, and give back its bulkhead place. False
   for a rejected, spent, another breaker's or no ticket, or an outcome outside the enum
   (which leaves the call in flight). */
static bool cb__record_begin(cb_breaker *b, const cb_ticket *t, cb_outcome o)
{
    if (!t || !(t->cb__flags & CB__T_ADMITTED) || t->cb__owner != b->cb__tag ||
        (unsigned)o > CB_IGNORED)
        return false;
    cb__spend(t);
    if (t->cb__flags & CB__T_BULKHEAD) {
        /* tallied in the stripe that took the place, whichever thread records: relaxed
           RMW, since other threads add to it too; before the place itself is given back */
        uint32_t idx = (t->cb__flags >> 8) & 0xffu;
        if (idx <= CB_STRIPES)
            atomic_fetch_add_explicit(&b->cb__sh->stripes[idx].n[CB__N_PLACES_GIVEN], 1,
                                      memory_order_relaxed);
        cb__bulkhead_give(b);
    }
    return true;
}

/* Did the call last slow_call_ms or longer, on the clock that stamped it (cb__stamp)? */
static bool cb__was_slow(cb_breaker *b, const cb_ticket *t, cb_outcome o, uint64_t *now,
                         bool *have_now)
{
    if (!(t->cb__flags & CB__T_STAMPED) || o == CB_IGNORED)
        return false;
    uint64_t end = cb__now_for(b, CB__C_SLOW, now, have_now);
    return end > t->cb__start_ns && end - t->cb__start_ns >= b->cb__slow_ns;
}

/* ---- the state machine -------------------------------------------------------------

   Every transition is decided in this section, state by state, and made by
   cb__transition(): one CAS on the state word, then the winner publishes the rest (the
   deadline, the opens counter, a fresh time window, the history entry, the event).

     state      event                                    next       reason            k
     CLOSED     a counted outcome makes a rule hold      OPEN       the rule          k
     OPEN       cb_allow at or after the period's end    HALF_OPEN  OPEN_ELAPSED      k
                (the call takes the round's first permit)
     HALF_OPEN  cb_allow, a permit left, time left       (a permit taken)             k
     HALF_OPEN  cb_allow at or after the probe deadline  OPEN       PROBE_TIMEOUT     k+1
     HALF_OPEN  a probe fails, or is slow                OPEN       PROBE_FAILED      k+1
     HALF_OPEN  a probe succeeds, more are due           (a probe counted)            k
     HALF_OPEN  the half_open_calls-th probe succeeds    CLOSED     PROBES_SUCCEEDED  0
     HALF_OPEN  a probe is IGNORED                       (its permit given back)      k
     any        cb_set_state(s), cb_reset                s          MANUAL            0 for CLOSED

   k + 1 only while the period is below max_open_ms (cb__next_k). Entering CLOSED or
   METRICS_ONLY starts a fresh window and failure run. FORCED_OPEN rejects every call,
   DISABLED admits every call and records nothing, METRICS_ONLY records and never trips.
   One call is followed from cb__allow_slow to cb__record_slow at the end of the section. */

/* The state word's edits, by name. */
static uint64_t cb__w_take_permit(uint64_t w) { return w + (1ull << 16); }
static uint64_t cb__w_give_permit(uint64_t w) { return w - (1ull << 16); }
static uint64_t cb__w_count_probe(uint64_t w) { return w + (1ull << 24); }
/* The first word of the next generation: state s at backoff step k, a fresh round. */
static uint64_t cb__w_next(uint64_t w, cb_state s, uint32_t k)
{
    return cb__w_make(s, k, 0, 0, cb__w_gen(w) + 1);
}

static void cb__buckets_clear(const cb_breaker *b, uint64_t now);

/* Make the transition from *w to `to` (false, with *w the fresh word, if another thread
   moved first), and publish it. */
static bool cb__transition(cb_breaker *b, uint64_t *w, uint64_t to, cb_reason why, uint64_t now)
{
    cb__shared *sh = b->cb__sh;
    uint64_t from = *w;
    CB_YIELD_POINT();
    /* acq_rel: release publishes what this thread did before (e.g. its window writes);
       acquire (also on failure) makes the winner's state visible to the loser, which
       re-decides from the fresh word */
    if (!atomic_compare_exchange_strong_explicit(&sh->word, w, to, memory_order_acq_rel,
                                                 memory_order_acquire))
        return false;
    *w = to;
    cb_event ev = { b->cb__config.name, cb__w_state(from), cb__w_state(to), why,
                    cb__w_gen(to), now, 0 };
    cb__publish_time(sh, cb__w_gen(to), cb__time_for(&b->cb__config, to, now, &ev.open_ms));
    if (ev.to == CB_OPEN)
        /* relaxed: a statistic; once per transition, so no contention */
        atomic_fetch_add_explicit(&sh->opens, 1, memory_order_relaxed);
    if ((ev.to == CB_CLOSED || ev.to == CB_METRICS_ONLY) && b->cb__config.window_ms)
        cb__buckets_clear(b, now);
    cb__history_write(sh, &ev);
    if (b->cb__on_event)
        b->cb__on_event(&ev, b->cb__user);
    return true;
}

/* What an allow decides in a state: admit (the ticket filled), reject, or look again at a
   newer word (another thread moved first). */
typedef enum cb__verdict { CB__REJECT, CB__ADMIT, CB__AGAIN } cb__verdict;

/* -- CLOSED (and METRICS_ONLY, which records alike and never trips) -- */

static cb__verdict cb__allow_closed(cb_breaker *b, cb_ticket *t, uint64_t w)
{
    if (!cb__bulkhead_take(b))
        return CB__REJECT;
    cb__admit(b, t, cb__w_gen(w), 0);
    return CB__ADMIT;
}

/* After a counted SUCCESS or FAILURE: the run and the window move, then the first rule
   that holds opens the breaker, with its reason. */
static void cb__closed_outcome(cb_breaker *b, uint64_t w, bool fail, bool slow, uint64_t now,
                               bool have_now)
{
    uint32_t gen = cb__w_gen(w);
    uint32_t run = cb__consec_update(b->cb__sh, gen, fail);
    cb__figures f;
    bool changed = cb__window_add(b, gen, fail, slow, &now, &have_now, &f);
    int why = cb__trip_reason(&b->cb__config, run, changed ? &f : NULL);
    if (why >= 0 && cb__w_state(w) == CB_CLOSED)
        cb__transition(b, &w, cb__w_next(w, CB_OPEN, cb__w_k(w)), (cb_reason)why,
                       have_now ? now : cb__now(b));
}

/* A CLOSED success that cb_record has counted, for a breaker whose only work beyond the
   fast path is a count window: the same window step as cb__record_slow would take. */
CB_API void cb__window_success(cb_breaker *b, uint64_t w)
{
    if (!(b->cb__fast & CB__F_TIME_WINDOW)) {
        cb__closed_outcome(b, w, false, false, 0, false);
        return;
    }
    /* a time window: the same steps, but the run is 0 already (cb_record saw it so) and
       a window that holds no failure and no slow call meets no rule */
    uint64_t now = 0;
    bool have_now = false;
    cb__figures f;
    cb__time_add(b, false, false, &now, &have_now, &f);
    int why = cb__window_rule(&b->cb__config, &f);
    if (CB__UNLIKELY(why >= 0) && cb__w_state(w) == CB_CLOSED)
        cb__transition(b, &w, cb__w_next(w, CB_OPEN, cb__w_k(w)), (cb_reason)why,
                       have_now ? now : cb__now(b));
}

/* -- OPEN: reject until the period ends; the first allow at or after it probes -- */

static cb__verdict cb__allow_open(cb_breaker *b, cb_ticket *t, uint64_t *w)
{
    cb__shared *sh = b->cb__sh;
    uint32_t gen = cb__w_gen(*w), k = cb__w_k(*w);
    uint64_t ms;
    if (cb__time_of(sh, gen, &ms) && cb__surely_before(b, ms))
        return CB__REJECT;
    uint64_t now = cb__now(b);
    if (!cb__time_of(sh, gen, &ms)) {
        /* the winner of this generation has not published its deadline yet (or died
           first): publish one from now, which is no earlier than it would */
        cb__publish_time(sh, gen, cb__ceil_ms(cb__add_sat(now, cb__period_ms(&b->cb__config, k, gen) * CB__MS)));
        return CB__REJECT;
    }
    if (now / CB__MS < ms || !cb__bulkhead_take(b))
        return CB__REJECT;
    if (cb__transition(b, w, cb__w_take_permit(cb__w_next(*w, CB_HALF_OPEN, k)),
                       CB_REASON_OPEN_ELAPSED, now)) {
        cb__admit(b, t, gen + 1, 0);
        return CB__ADMIT;
    }
    cb__bulkhead_give(b);
    return CB__AGAIN;
}

/* -- HALF_OPEN: at most half_open_calls probes a round (IGNORED gives one back), until its deadline -- */

static cb__verdict cb__allow_half_open(cb_breaker *b, cb_ticket *t, uint64_t *w)
{
    cb__shared *sh = b->cb__sh;
    const cb__cfg *c = &b->cb__config;
    uint32_t gen = cb__w_gen(*w);
    uint64_t ms;
    if (cb__w_taken(*w) >= c->half_open_calls && cb__time_of(sh, gen, &ms) &&
        cb__surely_before(b, ms))
        return CB__REJECT;   /* no permit left and the round has time left */
    uint64_t now = cb__now(b);
    if (!cb__time_of(sh, gen, &ms)) {   /* as in cb__allow_open */
        cb__publish_time(sh, gen, cb__ceil_ms(cb__add_sat(now, (uint64_t)c->probe_timeout_ms * CB__MS)));
    } else if (now / CB__MS >= ms) {
        cb__transition(b, w, cb__w_next(*w, CB_OPEN, cb__next_k(c, cb__w_k(*w))),
                       CB_REASON_PROBE_TIMEOUT, now);
        return CB__AGAIN;   /* won or lost, the word is newer */
    }
    if (cb__w_taken(*w) >= c->half_open_calls || !cb__bulkhead_take(b))
        return CB__REJECT;
    CB_YIELD_POINT();
    /* acq_rel: a permit is part of the state word; same pairing as transitions */
    if (atomic_compare_exchange_weak_explicit(&sh->word, w, cb__w_take_permit(*w),
                                              memory_order_acq_rel, memory_order_acquire)) {
        cb__admit(b, t, gen, 0);
        return CB__ADMIT;
    }
    cb__bulkhead_give(b);
    return CB__AGAIN;
}

/* A probe's result: IGNORED gives its permit back, a failed or slow probe re-opens, the
   half_open_calls-th success closes, an earlier one is counted. False when the word
   changed first (*w is then the fresh word, to decide on again). */
static bool cb__probe_result(cb_breaker *b, uint64_t *w, cb_outcome o, bool slow, uint64_t *now,
                             bool *have_now)
{
    const cb__cfg *c = &b->cb__config;
    uint64_t to;
    if (o == CB_IGNORED) {
        if (cb__w_taken(*w) == 0)
            return true;   /* no permit to give (a manual HALF_OPEN's round) */
        to = cb__w_give_permit(*w);
    } else if (o == CB_FAILURE || slow) {
        to = cb__w_next(*w, CB_OPEN, cb__next_k(c, cb__w_k(*w)));
    } else if (cb__w_succeeded(*w) + 1 >= c->half_open_calls) {
        to = cb__w_next(*w, CB_CLOSED, 0);
    } else {
        to = cb__w_count_probe(*w);
    }
    if (cb__w_state(to) == CB_HALF_OPEN) {   /* the round goes on: no transition */
        CB_YIELD_POINT();
        /* acq_rel: as the permit CAS in cb__allow_half_open */
        return atomic_compare_exchange_weak_explicit(&b->cb__sh->word, w, to, memory_order_acq_rel,
                                                     memory_order_acquire);
    }
    if (!*have_now)
        *now = cb__now(b), *have_now = true;
    return cb__transition(b, w, to, cb__w_state(to) == CB_OPEN ? CB_REASON_PROBE_FAILED
                                                               : CB_REASON_PROBES_SUCCEEDED, *now);
}

/* -- manual -- */

/* DISABLED admits beyond the limit, but counts the call in flight. */
static cb__verdict cb__allow_disabled(cb_breaker *b, cb_ticket *t, uint64_t w)
{
    if (b->cb__fast & CB__F_BULKHEAD)   /* relaxed: see cb__bulkhead_take */
        atomic_fetch_add_explicit(&b->cb__sh->in_flight, 1, memory_order_relaxed);
    cb__admit(b, t, cb__w_gen(w), CB__T_DISABLED);
    return CB__ADMIT;
}

CB_API cb_err cb_set_state(cb_breaker *b, cb_state s)
{
    if ((unsigned)s > CB_METRICS_ONLY)
        return CB_EINVAL;
    uint64_t w = atomic_load_explicit(b->cb__word, memory_order_acquire);
    /* the clock is read after the word it replaces, so transition times never go back;
       a failed CAS reloads w, and the next try decides on the fresh word */
    for (uint32_t tries = 0; tries < CB__TRIES; tries++)
        if (cb__transition(b, &w, cb__w_next(w, s, s == CB_CLOSED ? 0 : cb__w_k(w)),
                           CB_REASON_MANUAL, cb__now(b)))
            return CB_OK;
    return CB_ECORRUPT;   /* the word never held still: a damaged shared file */
}

CB_API void cb_reset(cb_breaker *b) { cb_set_state(b, CB_CLOSED); }

/* -- one call: cb_allow's slow path, then cb_record's -- */

CB_API bool cb__allow_slow(cb_breaker *b, cb_ticket *t, uint64_t w)
{
    for (uint32_t tries = 0; tries < CB__TRIES; tries++) {
        cb__verdict v;
        switch (cb__w_state(w)) {
        case CB_CLOSED:
        case CB_METRICS_ONLY: v = cb__allow_closed(b, t, w); break;
        case CB_OPEN:         v = cb__allow_open(b, t, &w); break;
        case CB_HALF_OPEN:    v = cb__allow_half_open(b, t, &w); break;
        case CB_DISABLED:     v = cb__allow_disabled(b, t, w); break;
        default:              v = CB__REJECT;   /* FORCED_OPEN, or a damaged word in a file */
        }
        if (v != CB__AGAIN)
            return v == CB__ADMIT || cb__reject(b, t);
    }
    return cb__reject(b, t);   /* the word never held still: a damaged shared file */
}

CB_API bool cb__record_slow(cb_breaker *b, const cb_ticket *t, cb_outcome o)
{
    if (!cb__record_begin(b, t, o))
        return false;   /* rejected, spent, another breaker's, or not a ticket at all */
    uint64_t now = 0;
    bool have_now = false;
    bool slow = cb__was_slow(b, t, o, &now, &have_now);
    /* acquire: as in cb_allow */
    uint64_t w = atomic_load_explicit(b->cb__word, memory_order_acquire);
    for (uint32_t tries = 0;; tries++) {
        cb_state s = cb__w_state(w);
        if (cb__w_gen(w) != t->cb__gen || tries == CB__TRIES ||
            (s != CB_CLOSED && s != CB_METRICS_ONLY && s != CB_HALF_OPEN && s != CB_DISABLED)) {
            cb__count(b, CB__N_STALE);   /* moved on (OPEN admits nothing in its generation) */
            return false;
        }
        if (s == CB_DISABLED) {
            cb__count(b, CB__N_UNCOUNTED);
            return false;
        }
        if (s == CB_HALF_OPEN && !cb__probe_result(b, &w, o, slow, &now, &have_now))
            continue;
        cb__count_outcome(b, o, slow, &now, &have_now);
        if (s != CB_HALF_OPEN && o != CB_IGNORED)
            cb__closed_outcome(b, w, o == CB_FAILURE, slow, now, have_now);
        return true;
    }
}

CB_API bool cb_call(cb_breaker *b, int (*fn)(void *arg), void *arg, int *rc)
{
    cb_ticket t;
    if (!cb_allow(b, &t))
        return false;
    int r = fn(arg);
    cb_record(b, &t, r == 0 ? CB_SUCCESS : CB_FAILURE);
    if (rc)
        *rc = r;
    return true;
}

/* ---- stats ---------------------------------------------------------------------- */


CB_API cb_state cb_get_state(const cb_breaker *b)
{
    return cb__w_state(atomic_load_explicit(b->cb__word, memory_order_acquire));
}

/* When generation gen began (its history entry), if known. */
static bool cb__since(const cb_breaker *b, uint32_t gen, uint64_t *ns)
{
    cb_event ev;
    if (!cb__history_read(b, &b->cb__sh->hist[gen % CB_HISTORY], &ev) || (uint32_t)ev.generation != gen)
        return false;
    *ns = ev.at_ns;
    return true;
}

CB_API uint64_t cb_retry_after_ms(const cb_breaker *b)
{
    uint64_t w = atomic_load_explicit(b->cb__word, memory_order_acquire), ms;
    if (cb__w_state(w) != CB_OPEN)
        return 0;
    if (!cb__time_of(b->cb__sh, cb__w_gen(w), &ms))   /* just opened: the whole period */
        return cb__period_ms(&b->cb__config, cb__w_k(w), cb__w_gen(w));
    uint64_t period = cb__period_ms(&b->cb__config, cb__w_k(w), cb__w_gen(w));
    uint64_t until = cb__ms_to_ns(ms), now = cb__now(b), since;
    if (!cb__since(b, cb__w_gen(w), &since))
        since = until - cb__ms_to_ns(period);
    if (now < since && since <= until)
        now = since;   /* a clock gone back is not moving (a since past the deadline is a
                          time of another clock: a file from before a reboot) */
    /* the deadline is the period's end rounded up to a whole ms: never say more than the
       period itself */
    uint64_t left = until > now ? cb__ceil_ms(until - now) : 0;
    return left < period ? left : period;
}

CB_API void cb_stats_get(const cb_breaker *b, cb_stats *s)
{
    const cb__shared *sh = b->cb__sh;
    uint64_t n[CB__N_COUNT], ms;
    memset(s, 0, sizeof *s);
    uint64_t w = atomic_load_explicit(b->cb__word, memory_order_acquire);
    uint32_t gen = cb__w_gen(w);
    s->state = cb__w_state(w);
    s->generation = gen;
    cb__sum(sh, n);
    s->admitted = n[CB__N_ADMITTED];
    s->rejected = n[CB__N_REJECTED];
    s->successes = n[CB__N_SUCCESSES];
    s->failures = n[CB__N_FAILURES];
    s->ignored = n[CB__N_IGNORED];
    s->slow = n[CB__N_SLOW];
    s->stale = n[CB__N_STALE];
    s->opens = atomic_load_explicit(&sh->opens, memory_order_relaxed);
    s->consecutive_failures = cb__tagged_get(&sh->consec, gen);
    cb__figures f;
    cb__window_figures(b, w, &f);
    s->window_calls = f.calls;
    s->window_failures = f.failures;
    s->window_slow = f.slow;
    uint64_t done = s->successes + s->failures + s->ignored + s->stale + n[CB__N_UNCOUNTED];
    uint64_t flight = b->cb__config.max_concurrent ? atomic_load_explicit(&sh->in_flight, memory_order_relaxed)
                                             : ((int64_t)(s->admitted - done) > 0 ? s->admitted - done : 0);
    s->in_flight = flight > UINT32_MAX ? UINT32_MAX : (uint32_t)flight;
    if (!cb__since(b, gen, &s->state_since_ns) &&
        atomic_load_explicit(&sh->hist[gen % CB_HISTORY].seq, memory_order_relaxed) == 0)
        s->state_since_ns = atomic_load_explicit(&sh->created_ns, memory_order_relaxed);
    s->last_failure_ns = atomic_load_explicit(&sh->last_failure_ns, memory_order_relaxed);
    if (s->state == CB_OPEN && cb__time_of(sh, gen, &ms))
        s->open_until_ns = cb__ms_to_ns(ms);
}

/* ---- export ---------------------------------------------------------------------- */

typedef struct cb__out { char *buf; size_t cap, len; } cb__out;

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 2, 3)))
#endif
static void cb__put(cb__out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = o->len < o->cap ? o->cap - o->len : 0;
    int n = vsnprintf(room ? o->buf + o->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len += (size_t)n;
}

static int cb__done(cb__out *o)
{
    if (o->cap && o->len >= o->cap)
        o->buf[o->cap - 1] = 0;   /* truncated: vsnprintf terminated it already; keep it so */
    else if (o->cap && o->len == 0)
        o->buf[0] = 0;
    return o->len > INT32_MAX ? INT32_MAX : (int)o->len;
}

/* The name, escaped for a JSON string or a Prometheus label value (same rules here:
   names are printable ASCII, so only '"' and '\\' need a backslash). */
static const char *cb__escape(const char *name, char out[2 * CB__NAME_MAX + 1])
{
    size_t j = 0;
    for (size_t i = 0; name[i] && i < CB__NAME_MAX; i++) {
        if (name[i] == '"' || name[i] == '\\')
            out[j++] = '\\';
        out[j++] = name[i];
    }
    out[j] = 0;
    return out;
}

typedef unsigned long long cb__ull;

CB_API int cb_format_json(const cb_breaker *b, char *buf, size_t cap)
{
    cb_stats s;
    char name[2 * CB__NAME_MAX + 1];
    cb__out o = { buf, cap, 0 };
    cb_stats_get(b, &s);
    cb__put(&o, "{\"name\":\"%s\",\"state\":\"%s\"", cb__escape(cb_name(b), name),
            cb_state_name(s.state));
#define CB__JSON_FIELD(type, field, kind, help) cb__put(&o, ",\"" #field "\":%llu", (cb__ull)s.field);
    CB__STATS_FIELDS(CB__JSON_FIELD)
#undef CB__JSON_FIELD
    cb__put(&o, ",\"retry_after_ms\":%llu}", (cb__ull)cb_retry_after_ms(b));
    return cb__done(&o);
}

/* One Prometheus family: its name, type and help, and where its value is in cb_stats. */
typedef struct cb__family { const char *name, *type, *help; size_t offset; bool wide; } cb__family;
#define CB__FAMILY_COUNTER(field, help) { "cb_" #field "_total", "counter", help, offsetof(cb_stats, field), sizeof(((cb_stats *)0)->field) == 8 },
#define CB__FAMILY_GAUGE(field, help) { "cb_" #field, "gauge", help, offsetof(cb_stats, field), sizeof(((cb_stats *)0)->field) == 8 },
#define CB__FAMILY_NONE(field, help)
#define CB__FAMILY(type, field, kind, help) CB__FAMILY_##kind(field, help)
static const cb__family cb__families[] = { CB__STATS_FIELDS(CB__FAMILY) };
#undef CB__FAMILY

static uint64_t cb__family_value(const cb_stats *s, const cb__family *f)
{
    const char *p = (const char *)s + f->offset;
    uint64_t v64;
    uint32_t v32;
    if (f->wide)
        return memcpy(&v64, p, sizeof v64), v64;
    return memcpy(&v32, p, sizeof v32), v32;
}

/* The exposition of the n breakers at(ctx, i) (NULL entries skipped), family by family:
   the state, every family of the stats list, the time left in the period. */
static int cb__prometheus(cb_breaker *(*at)(void *ctx, size_t i), void *ctx, size_t n, char *buf,
                          size_t cap)
{
    cb__out o = { buf, cap, 0 };
    char name[2 * CB__NAME_MAX + 1];
    const size_t nfam = CB__COUNT_OF(cb__families);
    for (size_t f = 0; f <= nfam + 1; f++) {   /* 0: cb_state; nfam + 1: retry-after */
        const cb__family *fam = f >= 1 && f <= nfam ? &cb__families[f - 1] : NULL;
        if (f == 0)
            cb__put(&o, "# HELP cb_state 1 for the state the breaker is in, 0 for the others\n"
                        "# TYPE cb_state gauge\n");
        else if (fam)
            cb__put(&o, "# HELP %s %s\n# TYPE %s %s\n", fam->name, fam->help, fam->name, fam->type);
        else
            cb__put(&o, "# HELP cb_retry_after_seconds Time left in the open period\n"
                        "# TYPE cb_retry_after_seconds gauge\n");
        for (size_t i = 0; i < n; i++) {
            cb_stats s;
            cb_breaker *bi = at(ctx, i);
            if (!bi)
                continue;
            cb_stats_get(bi, &s);
            const char *nm = cb__escape(cb_name(bi), name);
            if (f == 0)
                for (unsigned k = 0; k < CB__COUNT_OF(cb__state_names); k++)
                    cb__put(&o, "cb_state{name=\"%s\",state=\"%s\"} %d\n", nm,
                            cb__state_names[k], s.state == (cb_state)k);
            else if (fam)
                cb__put(&o, "%s{name=\"%s\"} %llu\n", fam->name, nm, (cb__ull)cb__family_value(&s, fam));
            else
                cb__put(&o, "cb_retry_after_seconds{name=\"%s\"} %.3f\n", nm,
                        (double)cb_retry_after_ms(bi) / 1000.0);
        }
    }
    return cb__done(&o);
}

static cb_breaker *cb__array_at(void *ctx, size_t i) { return ((cb_breaker *const *)ctx)[i]; }

CB_API int cb_format_prometheus(cb_breaker *const *bs, size_t n, char *buf, size_t cap)
{
    return cb__prometheus(cb__array_at, (void *)(uintptr_t)bs, n, buf, cap);
}

/* ---- registry -------------------------------------------------------------------- */

CB_API void cb_registry_init(cb_registry *r, _Atomic(cb_breaker *) *slots, size_t cap)
{
    r->slots = slots;
    r->cap = cap;
    for (size_t i = 0; i < cap; i++)
        atomic_store_explicit(&slots[i], NULL, memory_order_relaxed);
    atomic_store_explicit(&r->used, 0, memory_order_release);
}

CB_API cb_err cb_registry_add(cb_registry *r, cb_breaker *b)
{
    if (!b)
        return CB_EINVAL;
    size_t used = atomic_load_explicit(&r->used, memory_order_acquire);
    for (size_t i = 0; i < used; i++) {   /* reuse a removed slot first */
        cb_breaker *none = NULL;
        /* release: pairs with the acquire loads of readers; they see the breaker */
        if (atomic_compare_exchange_strong_explicit(&r->slots[i], &none, b, memory_order_release,
                                                    memory_order_relaxed))
            return CB_OK;
    }
    for (;;) {
        used = atomic_load_explicit(&r->used, memory_order_relaxed);
        if (used >= r->cap)
            return CB_ENOMEM;
        CB_YIELD_POINT();
        /* relaxed: reserving an index; the slot's release CAS publishes the breaker */
        if (atomic_compare_exchange_weak_explicit(&r->used, &used, used + 1, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            cb_breaker *none = NULL;   /* a reuser may have filled it since: then look again */
            if (atomic_compare_exchange_strong_explicit(&r->slots[used], &none, b,
                                                        memory_order_release, memory_order_relaxed))
                return CB_OK;
        }
    }
}

CB_API bool cb_registry_remove(cb_registry *r, cb_breaker *b)
{
    size_t used = atomic_load_explicit(&r->used, memory_order_acquire);
    for (size_t i = 0; i < used; i++) {
        cb_breaker *want = b;
        if (atomic_compare_exchange_strong_explicit(&r->slots[i], &want, NULL, memory_order_relaxed,
                                                    memory_order_relaxed))
            return true;
    }
    return false;
}

CB_API size_t cb_registry_list(cb_registry *r, cb_breaker **out, size_t max)
{
    size_t n = 0, used = atomic_load_explicit(&r->used, memory_order_acquire);
    for (size_t i = 0; i < used && i < r->cap; i++) {
        cb_breaker *b = atomic_load_explicit(&r->slots[i], memory_order_acquire);
        if (b && n < max)
            out[n] = b;
        n += b != NULL;
    }
    return n;
}

CB_API cb_breaker *cb_registry_find(cb_registry *r, const char *name)
{
    size_t used = atomic_load_explicit(&r->used, memory_order_acquire);
    for (size_t i = 0; name && i < used && i < r->cap; i++) {
        cb_breaker *b = atomic_load_explicit(&r->slots[i], memory_order_acquire);
        if (b && strcmp(cb_name(b), name) == 0)
            return b;
    }
    return NULL;
}

CB_API int cb_registry_json(cb_registry *r, char *buf, size_t cap)
{
    cb__out o = { buf, cap, 0 };
    size_t used = atomic_load_explicit(&r->used, memory_order_acquire), n = 0;
    cb__put(&o, "[");
    for (size_t i = 0; i < used && i < r->cap; i++) {
        cb_breaker *b = atomic_load_explicit(&r->slots[i], memory_order_acquire);
        if (!b)
            continue;
        if (n++)
            cb__put(&o, ",");
        size_t room = o.len < o.cap ? o.cap - o.len : 0;
        int len = cb_format_json(b, room ? o.buf + o.len : NULL, room);
        o.len += len > 0 ? (size_t)len : 0;
    }
    cb__put(&o, "]");
    return cb__done(&o);
}

static cb_breaker *cb__registry_at(void *ctx, size_t i)
{
    return atomic_load_explicit(&((cb_registry *)ctx)->slots[i], memory_order_acquire);
}

CB_API int cb_registry_prometheus(cb_registry *r, char *buf, size_t cap)
{
    size_t used = atomic_load_explicit(&r->used, memory_order_acquire);
    return cb__prometheus(cb__registry_at, r, used < r->cap ? used : r->cap, buf, cap);
}

#ifdef CB_TEST_HOOKS
CB_API void cb__test_set_generation(cb_breaker *b, uint32_t gen)
{
    uint64_t w = atomic_load_explicit(b->cb__word, memory_order_acquire);
    atomic_store_explicit(b->cb__word, (w & 0xffffffffull) | (uint64_t)gen << 32, memory_order_release);
}

CB_API void cb__test_set_counters(cb_breaker *b, uint64_t value)
{
    cb__tls_entry *e = &cb__tls[b->cb__id & (CB__TLS_WAYS - 1)];
    if (e->key != b->cb__id)
        e = cb__tls_fill(b, e);
    for (unsigned i = 0; i < CB__N_UNCOUNTED; i++)
        atomic_store_explicit(&e->stripe->n[i], value, memory_order_relaxed);
}

CB_API void cb__test_preset(cb_breaker *b, uint32_t generation, uint64_t counters)
{
    atomic_store_explicit(b->cb__word, cb__w_make(CB_CLOSED, 0, 0, 0, generation), memory_order_release);
    cb__test_set_counters(b, counters);
    atomic_store_explicit(&b->cb__sh->opens, counters, memory_order_relaxed);
}
#endif

/* ---- shared memory --------------------------------------------------------------- */
#ifndef CB_NO_SHM

#ifndef CB_SHM_WAIT_MS
#define CB_SHM_WAIT_MS 2000   /* how long an opener waits for a creator at work */
#endif

static void cb__sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* Where a refusal is explained: "PATH: what is wrong". */
typedef struct cb__why { const char *path; char *msg; size_t len; } cb__why;

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 3, 4)))
#endif
static cb_err cb__shm_fail(const cb__why *y, cb_err e, const char *fmt, ...)
{
    if (y->msg && y->len) {
        int n = snprintf(y->msg, y->len, "%s: ", y->path);
        size_t at = n > 0 && (size_t)n < y->len ? (size_t)n : y->len - 1;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(y->msg + at, y->len - at, fmt, ap);
        va_end(ap);
    }
    return e;
}

static bool cb__in_group(gid_t gid)
{
    gid_t groups[256];
    int n = getgroups(256, groups);
    for (int i = 0; i < n; i++)
        if (groups[i] == gid)
            return true;
    return gid == getegid();
}

/* The trust boundary: only a regular file of this user (or, with CB_SHM_GROUP, of a user
   of one of this process's groups), never writable by every user. */
static cb_err cb__shm_trust(const struct stat *st, unsigned flags, const cb__why *y)
{
    if (S_ISLNK(st->st_mode))
        return cb__shm_fail(y, CB_EPERM, "is a symbolic link: refused (name the file itself)");
    if (!S_ISREG(st->st_mode))
        return cb__shm_fail(y, CB_EPERM, "not a regular file: refused");
    if (st->st_nlink > 1)   /* a second name someone made for a file of ours */
        return cb__shm_fail(y, CB_EPERM, "has %llu names (hard links): refused",
                            (unsigned long long)st->st_nlink);
    if (st->st_mode & S_IWOTH)
        return cb__shm_fail(y, CB_EPERM, "writable by every user (mode %04o): refused",
                            (unsigned)(st->st_mode & 07777));
    if (st->st_uid != geteuid() && !((flags & CB_SHM_GROUP) && cb__in_group(st->st_gid)))
        return cb__shm_fail(y, CB_EPERM, "owned by uid %u, not by this user (uid %u): refused; "
                            "run as its owner (sudo -u OWNER ...)", (unsigned)st->st_uid,
                            (unsigned)geteuid());
    return CB_OK;
}

/* Open (or create) the file, refusing what may not be trusted before and after open:
   lstat first, so a device or fifo is never opened at all; O_NOFOLLOW, so a symlink
   swapped in since is refused too; then fstat of what was opened. */
static int cb__shm_fd(const cb__why *y, bool create, unsigned flags, bool *created, cb_err *e)
{
    mode_t mode = flags & CB_SHM_GROUP ? 0660 : 0600;
    struct stat st;
    for (int tries = 0; tries < 3; tries++) {
        if (lstat(y->path, &st) == 0 && (*e = cb__shm_trust(&st, flags, y)) != CB_OK)
            return -1;
        int fd = create ? open(y->path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode) : -1;
        if (fd >= 0) {
            *created = true;
            if (fchmod(fd, mode) == 0)   /* whatever the umask */
                return fd;
            *e = cb__shm_fail(y, CB_EIO, "cannot set mode %04o: %s", (unsigned)mode, strerror(errno));
            unlink(y->path);
            close(fd);
            return -1;
        }
        if (create && errno != EEXIST)
            break;
        fd = open(y->path, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd < 0 && errno == EISDIR) {   /* swapped in since the lstat */
            *e = cb__shm_fail(y, CB_EPERM, "not a regular file: refused");
            return -1;
        }
        if (fd < 0 && errno == ELOOP) {
            *e = cb__shm_fail(y, CB_EPERM, "is a symbolic link: refused (name the file itself)");
            return -1;
        }
        if (fd < 0 && errno == ENOENT && create)
            continue;   /* removed between the two opens: create it after all */
        if (fd < 0)
            break;
        if (fstat(fd, &st) != 0 || (*e = cb__shm_trust(&st, flags, y)) != CB_OK) {
            if (*e == CB_OK)
                *e = cb__shm_fail(y, CB_EIO, "fstat: %s", strerror(errno));
            close(fd);
            return -1;
        }
        return fd;
    }
    *e = cb__shm_fail(y, CB_EIO, "%s", strerror(errno));
    return -1;
}

/* The static part of the header (everything before `ready`), read into private memory:
   every check and every value taken from it is made on this copy, never on the mapping. */
static cb_err cb__shm_header(int fd, cb__shared *h, uint64_t *file_len, const cb__why *y)
{
    struct stat st;
    memset(h, 0, sizeof *h);
    if (fstat(fd, &st) != 0)
        return cb__shm_fail(y, CB_EIO, "fstat: %s", strerror(errno));
    *file_len = (uint64_t)st.st_size;
    size_t want = offsetof(cb__shared, ready);
    ssize_t got = pread(fd, h, want, 0);
    if (got < 0)
        return cb__shm_fail(y, CB_EIO, "read: %s", strerror(errno));
    if ((size_t)got < sizeof h->magic || h->magic != CB__MAGIC)
        return cb__shm_fail(y, CB_ECORRUPT, "not a breaker file (no cb.h magic number)");
    if (h->version != CB__VERSION || h->header_size != sizeof(cb__shared))
        return cb__shm_fail(y, CB_EMISMATCH, "file format %u (header %u bytes), this cb.h reads "
                            "format %u (%zu bytes)", h->version, h->header_size, CB__VERSION,
                            sizeof(cb__shared));
    if ((size_t)got < want || h->checksum != cb__static_hash(h))
        return cb__shm_fail(y, CB_ECORRUPT, "header checksum does not match: damaged");
    if (h->total_size > *file_len)
        return cb__shm_fail(y, CB_ECORRUPT, "truncated: %llu bytes, the breaker needs %llu",
                            (unsigned long long)*file_len, (unsigned long long)h->total_size);
    return CB_OK;
}

/* The file's header against the layout and config this process expects (c resolved). */
static cb_err cb__shm_validate(const cb__shared *h, const cb_config *c, const cb__why *y)
{
    cb__shared want;
    memset(&want, 0, sizeof want);
    cb__block_init(&want, c, 0);
    const cb__cfg *f = &h->cfg, *k = &want.cfg;
    if (memcmp(f->name, k->name, sizeof f->name) != 0)
        return cb__shm_fail(y, CB_EMISMATCH, "config differs: the file's breaker has another name");
#define CB__SAME(type, field, flag, doc)                                                       \
    if (memcmp(&f->field, &k->field, sizeof f->field) != 0)                                   \
        return cb__shm_fail(y, CB_EMISMATCH, "config differs: " #field " is %g in the file, %g here", \
                            (double)f->field, (double)k->field);
    CB__CONFIG_FIELDS(CB__SAME)
#undef CB__SAME
    if (h->total_size != want.total_size || h->window_off != want.window_off ||
        h->bucket_ns != want.bucket_ns || h->fingerprint != want.fingerprint)
        return cb__shm_fail(y, CB_EMISMATCH, "layout differs from what its config implies: damaged");
    return CB_OK;
}

/* Is the block published (1), not yet (0), or is the file someone else's (-1)? Read from
   a short private mapping of the header alone, without the lock: a reader holding the
   file's lock cannot hold up the open of a finished file. */
static int cb__shm_published(int fd, uint64_t len)
{
    if (len < sizeof(cb__shared)) {   /* a creator cut short, or someone's file? */
        uint64_t magic = 0, want = CB__MAGIC;
        ssize_t got = pread(fd, &magic, sizeof magic, 0);
        return got < 0 || (magic != 0 && memcmp(&magic, &want, (size_t)got) != 0) ? -1 : 0;
    }
    cb__shared *sh = (cb__shared *)mmap(NULL, sizeof(cb__shared), PROT_READ, MAP_SHARED, fd, 0);
    if (sh == MAP_FAILED)
        return -1;
    /* acquire: pairs with the publisher's release store of ready */
    bool ready = atomic_load_explicit(&sh->ready, memory_order_acquire) == 1;
    int r = sh->magic == 0 ? 0 : sh->magic != CB__MAGIC ? -1 : ready;   /* no magic: unfinished */
    munmap(sh, sizeof(cb__shared));
    return r;
}

/* Under the file's lock (so nobody else is initialising it): if the block was never
   published - this process creates it, or its creator died midway - size and initialise
   it from c and publish it. Without c (attach only) an unfinished file is an error. */
static cb_err cb__shm_finish(int fd, const cb_config *c, const cb__why *y)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return cb__shm_fail(y, CB_EIO, "fstat: %s", strerror(errno));
    int state = cb__shm_published(fd, (uint64_t)st.st_size);
    if (state != 0)
        return state > 0 ? CB_OK : cb__shm_fail(y, CB_ECORRUPT, "not a breaker file (no cb.h magic number): left untouched");
    if (!c && (size_t)st.st_size < sizeof(cb__shared))
        return cb__shm_fail(y, CB_ECORRUPT, "truncated: %lld bytes, shorter than a breaker header "
                            "(%zu)", (long long)st.st_size, sizeof(cb__shared));
    if (!c)
        return cb__shm_fail(y, CB_ECORRUPT, "never initialised: its creator died before finishing "
                            "it (the next cb_shm_open with its config finishes it)");
    cb__shared h;
    uint64_t flen;
    const cb__why quiet = { y->path, NULL, 0 };
    if (cb__shm_header(fd, &h, &flen, &quiet) == CB_OK && cb__shm_validate(&h, c, y) != CB_OK)
        return CB_EMISMATCH;   /* a whole block of another config, its ready mark cleared */
    /* never shrink: processes that map a longer block of this file keep their pages */
    size_t len = cb__round_up(cb__block_size(c), (size_t)sysconf(_SC_PAGESIZE));
    if ((size_t)st.st_size < len && ftruncate(fd, (off_t)len) != 0)
        return cb__shm_fail(y, CB_EIO, "cannot size to %zu bytes: %s", len, strerror(errno));
    cb__shared *sh = (cb__shared *)mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (sh == MAP_FAILED)
        return cb__shm_fail(y, CB_EIO, "mmap: %s", strerror(errno));
    memset(sh, 0, cb__block_size(c));
    cb__block_init(sh, c, c->clock_ns ? c->clock_ns(c->clock_user) : cb__mono_ns());
    /* release: pairs with the acquire load of ready by openers; they see the block */
    atomic_store_explicit(&sh->ready, 1, memory_order_release);
    munmap(sh, len);
    return CB_OK;
}

/* Wait for the block to be published, finishing it under the lock if nobody else is. */
static cb_err cb__shm_publish(int fd, const cb_config *c, const cb__why *y)
{
    for (int waited = 0;; waited += 10) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) {   /* never blocks: the wait is bounded below */
            cb_err e = cb__shm_finish(fd, c, y);
            flock(fd, LOCK_UN);
            return e;
        }
        if (errno != EWOULDBLOCK && errno != EINTR)
            return cb__shm_fail(y, CB_EIO, "flock: %s", strerror(errno));
        struct stat st;   /* published meanwhile by the lock holder? */
        if (fstat(fd, &st) == 0 && cb__shm_published(fd, (uint64_t)st.st_size) > 0)
            return CB_OK;
        if (waited >= CB_SHM_WAIT_MS)
            return cb__shm_fail(y, CB_ECORRUPT, "unfinished, and another process has held its "
                                "lock for %d ms", CB_SHM_WAIT_MS);
        cb__sleep_ms(10);
    }
}

/* A file from before a reboot keeps times of the old clock, which may lie far ahead of
   this one: a window that would not age, a deadline days away. Bring them back within
   what the config allows (a whole window, a longest period or probe round). */
static void cb__shm_adopt_times(cb_breaker *b)
{
    cb__shared *sh = b->cb__sh;
    const cb__cfg *c = &b->cb__config;
    uint64_t now = cb__now(b);
    if (c->window_ms) {
        uint64_t e = now / b->cb__bucket_ns;
        uint64_t seen = atomic_load_explicit(&sh->win_epoch, memory_order_relaxed);
        if ((seen >> 16) > e + c->window_buckets)   /* far ahead: a fresh window */
            cb__buckets_clear(b, now);
    }
    uint64_t w = atomic_load_explicit(&sh->word, memory_order_acquire), ms;
    cb_state s = cb__w_state(w);
    if ((s != CB_OPEN && s != CB_HALF_OPEN) || !cb__time_of(sh, cb__w_gen(w), &ms))
        return;
    uint64_t span = s == CB_OPEN ? c->max_open_ms : c->probe_timeout_ms;
    if (ms <= cb__ceil_ms(now) + span + 1)
        return;
    uint64_t fresh = s == CB_OPEN ? cb__period_ms(c, cb__w_k(w), cb__w_gen(w)) : c->probe_timeout_ms;
    uint64_t cur = (uint64_t)(cb__w_gen(w) & 0xffff) << 48 | ms;
    /* relaxed: the deadline word carries its own tag, see cb__publish_time() */
    atomic_compare_exchange_strong_explicit(&sh->deadline, &cur,
        (cur & ~CB__MS_MASK) | cb__ceil_ms(cb__add_sat(now, fresh * CB__MS)),
        memory_order_relaxed, memory_order_relaxed);
}

/* The config a header holds, resolved (its name copied into name), once the header has
   checked out: attach takes it as its own. */
static cb_err cb__shm_file_config(const cb__shared *h, cb_config *out, char *name, const cb__why *y)
{
    cb_config raw;
    char why[160];
    cb__cfg_load(&raw, &h->cfg);
    memcpy(name, h->cfg.name, CB__NAME_MAX);
    name[CB__NAME_MAX] = 0;
    raw.name = name;
    if (cb__resolve(&raw, out, why, sizeof why) != CB_OK)
        return cb__shm_fail(y, CB_ECORRUPT, "the file's config is invalid: %s", why);
    return CB_OK;
}

/* Map a published file, checked against c (or, with c == NULL, taking its config once
   the header checks out, resolved into *from_file with the name kept in name). Only the
   bytes the config implies are mapped, however long the file is. */
static cb_breaker *cb__shm_map(int fd, const cb_config *c, const cb__why *y, cb_err *e)
{
    cb__shared h;
    uint64_t file_len;
    cb_config from_file;
    char name[CB__NAME_MAX + 1];
    if ((*e = cb__shm_header(fd, &h, &file_len, y)) != CB_OK ||
        (!c && (*e = cb__shm_file_config(&h, &from_file, name, y)) != CB_OK) ||
        (*e = cb__shm_validate(&h, c ? c : &from_file, y)) != CB_OK)
        return NULL;
    c = c ? c : &from_file;
    struct stat st;
    if (h.instance == 0 || fstat(fd, &st) != 0) {
        *e = cb__shm_fail(y, CB_ECORRUPT, "the breaker's identity is missing: damaged");
        return NULL;
    }
    /* the tickets' tag: the breaker's identity and the file's, so that a copy of the file
       (cp, a backup put back) is another breaker whose tickets are not taken here */
    uint64_t tag = cb__splitmix(h.instance ^ (uint64_t)st.st_ino ^ (uint64_t)st.st_dev << 32);
    size_t len = cb__block_size(c);
    void *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        *e = cb__shm_fail(y, CB_EIO, "mmap: %s", strerror(errno));
        return NULL;
    }
    cb_breaker *b = (cb_breaker *)CB_MALLOC(sizeof *b);
    if (!b) {
        munmap(map, len);
        *e = cb__shm_fail(y, CB_ENOMEM, "no memory for the handle");
        return NULL;
    }
    cb__handle_init(b, (cb__shared *)map, c, tag ? tag : 1, CB__KIND_SHM);
    b->cb__mem = map;
    b->cb__map_len = len;
    if (cb__w_state(atomic_load_explicit(b->cb__word, memory_order_acquire)) > CB_METRICS_ONLY) {
        cb_shm_close(b);
        *e = cb__shm_fail(y, CB_ECORRUPT, "the state word is damaged");
        return NULL;
    }
    cb__shm_adopt_times(b);
    return b;
}

/* Create the file, or attach to it (cfg == NULL: attach only, config from the file).
   Whoever holds the file's flock finishes an unpublished block; a creator that dies
   midway releases the lock with its last descriptor, so the next opener takes over. */
CB_API cb_breaker *cb_shm_open_ex(const char *path, const cb_config *cfg, unsigned flags,
                                  cb_err *err, char *msg, size_t msg_len)
{
    cb__why y = { path, msg, msg_len };
    cb_config c;
    char bad[160];
    cb_breaker *b = NULL;
    bool created = false;
    int fd = -1;
    cb_err e = CB_OK;
    if (msg && msg_len)
        msg[0] = 0;
    if (!path)
        e = CB_EINVAL;
    else if (flags & ~(unsigned)CB_SHM_GROUP)
        e = cb__shm_fail(&y, CB_EINVAL, "unknown flags 0x%x", flags & ~(unsigned)CB_SHM_GROUP);
    else if (cfg && cb__resolve(cfg, &c, bad, sizeof bad) != CB_OK)
        e = cb__shm_fail(&y, CB_EINVAL, "%s", bad);
    else if ((fd = cb__shm_fd(&y, cfg != NULL, flags, &created, &e)) >= 0) {
        struct stat st;
        int state = created || fstat(fd, &st) != 0 ? 0 : cb__shm_published(fd, (uint64_t)st.st_size);
        if (state < 0)
            e = cb__shm_fail(&y, CB_ECORRUPT, "not a breaker file (no cb.h magic number): left untouched");
        else if (state == 0)
            e = cb__shm_publish(fd, cfg ? &c : NULL, &y);
        if (e != CB_OK && created)
            unlink(path);
        if (e == CB_OK)
            b = cb__shm_map(fd, cfg ? &c : NULL, &y, &e);
        close(fd);   /* the mapping stays valid without the descriptor */
    }
    if (err)
        *err = e;
    return b;
}

CB_API cb_breaker *cb_shm_open(const char *path, const cb_config *cfg, cb_err *err)
{
    static const cb_config zero;
    return cb_shm_open_ex(path, cfg ? cfg : &zero, 0, err, NULL, 0);
}

CB_API cb_breaker *cb_shm_attach(const char *path, cb_err *err)
{
    return cb_shm_open_ex(path, NULL, 0, err, NULL, 0);
}

CB_API void cb_shm_close(cb_breaker *b)
{
    if (!b || b->cb__kind != CB__KIND_SHM)
        return;
    munmap(b->cb__mem, b->cb__map_len);
    CB_FREE(b);
}
#else
CB_API cb_breaker *cb_shm_open_ex(const char *path, const cb_config *cfg, unsigned flags,
                                  cb_err *err, char *msg, size_t msg_len)
{
    (void)path, (void)cfg, (void)flags;
    if (msg && msg_len)
        snprintf(msg, msg_len, "built with CB_NO_SHM: no shared breakers");
    if (err)
        *err = CB_EIO;
    return NULL;
}
CB_API cb_breaker *cb_shm_open(const char *path, const cb_config *cfg, cb_err *err)
{
    return cb_shm_open_ex(path, cfg, 0, err, NULL, 0);
}
CB_API cb_breaker *cb_shm_attach(const char *path, cb_err *err) { return cb_shm_open(path, NULL, err); }
CB_API void cb_shm_close(cb_breaker *b) { (void)b; }
#endif /* CB_NO_SHM */

#endif /* CB_IMPLEMENTATION */

/*
   4. License

   MIT License. Copyright (c) 2026 the cb.h authors.

   Permission is hereby granted, free of charge, to any person obtaining a copy of this
   software and associated documentation files (the "Software"), to deal in the Software
   without restriction, including without limitation the rights to use, copy, modify,
   merge, publish, distribute, sublicense, and/or sell copies of the Software, and to
   permit persons to whom the Software is furnished to do so, subject to the following
   conditions:

   The above copyright notice and this permission notice shall be included in all copies
   or substantial portions of the Software.

   THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED,
   INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A
   PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT
   HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF
   CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR
   THE USE OR OTHER DEALINGS IN THE SOFTWARE.
*/
