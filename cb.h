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
    X(CB_REASON_MANUAL, "manual")                                        \
    X(CB_REASON_DOMINANT_SHARE, "dominant_share")                        \
    X(CB_REASON_DEGRADED, "degraded")   /* no transition: the failure rate reached the warning */ \
    X(CB_REASON_RECOVERED, "recovered") /* no transition: it is below the warning again */
#define CB__ERRORS(X)                                              \
    X(CB_OK, "ok")                                                 \
    X(CB_EINVAL, "invalid argument or configuration")              \
    X(CB_ENOMEM, "out of memory")                                  \
    X(CB_EMISMATCH, "shared breaker has another layout or config") \
    X(CB_ECORRUPT, "shared breaker file is truncated or damaged")  \
    X(CB_EIO, "input/output error")                                \
    X(CB_EPERM, "shared file refused for safety: a symlink, not a regular file, another owner, or writable by others")
/* Why cb_allow said no (cb_ticket_rejected); NONE: the call was admitted. */
#define CB__REJECTS(X)                                                               \
    X(CB_REJECT_NONE, "none")                                                        \
    X(CB_REJECT_OPEN, "open")                     /* period not over: cb_retry_after_ms */ \
    X(CB_REJECT_FORCED_OPEN, "forced_open")       /* an operator's choice: no timed exit */ \
    X(CB_REJECT_HALF_OPEN_FULL, "half_open_full") /* every probe permit of the round taken */ \
    X(CB_REJECT_BULKHEAD, "bulkhead")             /* max_concurrent calls in flight */
#define CB__ENUM_ITEM(id, text) id,
typedef enum cb_reject { CB__REJECTS(CB__ENUM_ITEM) CB__REJECT_COUNT } cb_reject;
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
    const char *key;               /* a group's key (bytes, not terminated); NULL outside a group */
    size_t key_len;
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
    X(U64, seed, "seed", "jitter seed (drawn from the kernel at creation)")               \
    X(DBL, warn_failure_rate, "warn-failure-rate", "(0,1), below failure-rate: stats.degraded at this rate")
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
   (COUNTER: cb_FIELD_total, GAUGE: cb_FIELD, BY_REASON: cb_FIELD_total with a reason
   label, from rejected_by; NONE: JSON only) and its help text. The
   struct, the JSON object and the Prometheus families all come from this list.
   Counters are cumulative and never decrease; window figures are what it holds now. */
#define CB__STATS_FIELDS(X)                                                                  \
    X(U64, generation, GAUGE, "Transitions since the breaker was created (mod 2^32)")        \
    X(U64, admitted, COUNTER, "Calls admitted")                                               \
    X(U64, rejected, BY_REASON, "Calls rejected, by why (cb_reject)")                        \
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
    X(U32, degraded, GAUGE, "1 while the window's failure rate is at or above warn_failure_rate") \
    X(U32, prev_window_calls, GAUGE, "Calls the window held one window ago (the trend)")      \
    X(U32, prev_window_failures, GAUGE, "Failures the window held one window ago")            \
    X(U64, state_since_ns, NONE, "When the current state began (breaker clock)")              \
    X(U64, last_failure_ns, NONE, "When the last failure was recorded (breaker clock)")       \
    X(U64, open_until_ns, NONE, "OPEN: when the period ends (breaker clock)")
#define CB__STATS_MEMBER(type, field, kind, help) CB__TYPE_##type field;

typedef struct cb_stats {
    cb_state state;
    CB__STATS_FIELDS(CB__STATS_MEMBER)
    uint64_t rejected_by[CB__REJECT_COUNT];   /* rejected, by cb_reject; [CB_REJECT_NONE] is 0 */
} cb_stats;

CB_API const char *cb_strerror(cb_err e);
CB_API const char *cb_state_name(cb_state s);     /* "closed", "open", "half_open", ... */
CB_API const char *cb_reason_name(cb_reason r);   /* "consecutive_failures", ...        */
CB_API const char *cb_outcome_name(cb_outcome o); /* "success", "failure", "ignored"    */
CB_API const char *cb_reject_name(cb_reject r);   /* "none", "open", "forced_open", ...  */
/* What this thread's last failed cb_new, cb_init, cb_shm_open (and _ex, cb_shm_attach),
   cb_group_new, cb_group_init or cb_group_shm_open said: the field and value, or the path
   and the system's words; "" after a success of one of them. */
CB_API const char *cb_last_error(void);
/* Why the cb_allow that filled t refused the call; CB_REJECT_NONE if it was admitted. */
CB_API cb_reject cb_ticket_rejected(const cb_ticket *t);
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

/* Keyed groups: one breaker per key (host, shard, tenant, container, model), made from a
   template on first use, evicted when idle, in caller memory or one shared file. See
   docs/groups.md. */
typedef struct cb_group cb_group;
typedef struct cb_group_config {     /* all-zero fields take their defaults */
    cb_config breaker;               /* template of every key's breaker; breaker.name names the group */
    uint32_t capacity;               /* keys held at once (default 1024, at most 2^22) */
    uint32_t key_max;                /* longest key in bytes (default 64, at most 1024) */
    uint32_t idle_ms;                /* a key unused this long may be evicted (default 600000) */
    double   max_open_share;         /* (0,1]: at most max(1, floor(share * keys held)) keys open
                                        at once; 0 = no cap */
    double   dominant_share;         /* (0,1]: a key with at least this share of the group's recent
                                        admitted calls opens (CB_REASON_DOMINANT_SHARE); 0 = off */
    uint32_t dominant_min_calls;     /* ... once the group has this many recent calls (default 100) */
    uint32_t dominant_window_ms;     /* "recent" = the last this many ms (default 60000) */
} cb_group_config;

/* The group's own fields (not the template), one entry each: type, field, flag, what it
   means; cbctl's and the chaos programs' group flags come from this list. */
#define CB__GROUP_CONFIG_FIELDS(X)                                                           \
    X(U32, capacity, "capacity", "keys held at once [1024] (<= 2^22)")                      \
    X(U32, key_max, "key-max", "longest key in bytes [64] (<= 1024)")                         \
    X(U32, idle_ms, "idle-ms", "a key unused this long may be evicted [600000]")            \
    X(DBL, max_open_share, "max-open-share", "(0,1]: at most this share of the keys open")  \
    X(DBL, dominant_share, "dominant-share", "(0,1]: open a key with this share of recent calls") \
    X(U32, dominant_min_calls, "dominant-min-calls", "... once the group has N recent calls [100]") \
    X(U32, dominant_window_ms, "dominant-window-ms", "\"recent\" = the last T ms [60000]")

typedef struct cb_group_stats {
    uint64_t keys;                   /* keys held now */
    uint64_t open_keys;              /* of them, open now (OPEN, HALF_OPEN or FORCED_OPEN) */
    uint64_t created, evicted;       /* cumulative */
    uint64_t overflow;               /* cb_group_allow calls that went through the overflow breaker */
    uint64_t trips_held;             /* trips held back by max_open_share */
    uint64_t stale;                  /* records of tickets whose key was evicted */
} cb_group_stats;

#define CB_GROUP_KEY_MAX 1024u
#define CB_GROUP_CAPACITY_MAX (1u << 22)

CB_API cb_err    cb_group_config_check(const cb_group_config *cfg, char *msg, size_t msg_len);
CB_API size_t    cb_group_size(const cb_group_config *cfg);  /* every byte it will use; 0 if invalid */
CB_API cb_err    cb_group_init(void *mem, size_t len, const cb_group_config *cfg, cb_group **out);
CB_API cb_group *cb_group_new(const cb_group_config *cfg, cb_err *err);
CB_API void      cb_group_free(cb_group *g);          /* cb_group_new or cb_group_shm_open groups */
CB_API cb_group *cb_group_shm_open(const char *path, const cb_group_config *cfg, cb_err *err);
/* cfg NULL: attach only, config from the file; msg (may be NULL) says what was wrong */
CB_API cb_group *cb_group_shm_open_ex(const char *path, const cb_group_config *cfg, unsigned flags,
                                      cb_err *err, char *msg, size_t msg_len);
CB_API void      cb_group_shm_close(cb_group *g);
CB_API void      cb_group_config_get(const cb_group *g, cb_group_config *out); /* resolved */

CB_API bool      cb_group_allow(cb_group *g, const char *key, size_t key_len, cb_ticket *t);
CB_API bool      cb_group_record(cb_group *g, const cb_ticket *t, cb_outcome o);

CB_API cb_state  cb_group_get_state(cb_group *g, const char *key, size_t key_len); /* CB_CLOSED if not held */
CB_API cb_err    cb_group_set_state(cb_group *g, const char *key, size_t key_len, cb_state s);
CB_API bool      cb_group_key_stats(cb_group *g, const char *key, size_t key_len, cb_stats *s);
CB_API size_t    cb_group_prune(cb_group *g);         /* evict every evictable key now */
CB_API void      cb_group_stats_get(cb_group *g, cb_group_stats *s);
CB_API cb_breaker *cb_group_overflow(cb_group *g);    /* the breaker of keys that found no place */
/* The keys held: calls fn for each (key bytes, its stats); stops when fn returns false. */
CB_API size_t    cb_group_each(cb_group *g, bool (*fn)(const char *key, size_t key_len,
                                                        const cb_stats *s, void *user), void *user);
/* The group's recent transitions, oldest first; each event's key points into key_buf,
   which holds key_max bytes per event (fewer events when it is short). */
CB_API size_t    cb_group_history(cb_group *g, cb_event *out, size_t max, char *key_buf,
                                  size_t key_buf_len);
CB_API int       cb_group_format_json(cb_group *g, char *buf, size_t cap);
CB_API int       cb_group_format_prometheus(cb_group *g, char *buf, size_t cap);

/* A held key as cb_group_worst reports it. */
typedef struct cb_group_key {
    char     key[CB_GROUP_KEY_MAX];  /* key_len bytes, not NUL-terminated */
    uint32_t key_len;
    cb_stats stats;
    uint64_t retry_after_ms;         /* OPEN: ms left in its period */
    uint64_t idle_ms;                /* since cb_group_allow or cb_group_record last touched it */
} cb_group_key;
/* Up to max of the keys held, worst first: OPEN and FORCED_OPEN, then HALF_OPEN, then a
   manual DISABLED or METRICS_ONLY, then CLOSED; within each, the higher window failure
   rate first, then the longer failure run, more failures, the more recent use. Returns
   how many keys are held (more than max when some were left out). No allocation. */
CB_API size_t    cb_group_worst(cb_group *g, cb_group_key *out, size_t max);

/* Bounds on the keys an exposition carries (label cardinality); the group's own series
   and its overflow breaker are always there. */
typedef struct cb_export_limits {
    uint32_t max_keys;               /* per group, only its max_keys worst keys; 0 = all */
    bool     not_closed;             /* only keys that are not CLOSED */
} cb_export_limits;
/* One exposition of breakers and groups, every family once (lim may be NULL: every key).
   snprintf semantics; -1 when max_keys' scratch (max_keys cb_group_keys) cannot be had. */
CB_API int       cb_format_prometheus_ex(cb_breaker *const *bs, size_t nb, cb_group *const *gs,
                                         size_t ng, const cb_export_limits *lim, char *buf,
                                         size_t cap);

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
enum { CB__N_ADMITTED,
       CB__N_REJECTED,   /* CB_REJECT_OPEN's; the other reasons' follow, in cb_reject's order */
       CB__N_REJECTED_LAST = CB__N_REJECTED + CB__REJECT_COUNT - 2, CB__N_SUCCESSES, CB__N_FAILURES, CB__N_IGNORED,
       CB__N_SLOW, CB__N_STALE,
       CB__N_UNCOUNTED,   /* records of DISABLED calls: only to tell calls in flight */
       CB__N_PLACES_TAKEN, CB__N_PLACES_GIVEN,  /* bulkhead places, to settle a dead process's */
       CB__N_COUNT };

/* One cache line: the owner token and the counters it alone writes. */
typedef struct cb__stripe {
    CB__ALIGNAS(CB_CACHELINE) _Atomic(uint64_t) owner;  /* 0: free; else pid << 32 | thread token */
    _Atomic(uint64_t) n[CB__N_COUNT];
} cb__stripe;

/* A group key's handle found its slot changing hands: a count refused (nothing counted),
   or a CAS of the word refused (the call saw the word as gone). */
enum { CB__LOST_COUNT = 1, CB__LOST_WORD = 2 };

/* Ticket flags. */
enum { CB__T_ADMITTED = 1, CB__T_BULKHEAD = 2, CB__T_DISABLED = 4, CB__T_STAMPED = 8 };
/* bits 8..15 of the flags: with CB__T_BULKHEAD, the stripe that tallied the place */
#if CB_STRIPES > 254
#error "CB_STRIPES must be at most 254"
#endif

/* What the fast path must leave to the slow path (cb_breaker.cb__fast). */
enum { CB__F_SLOW = 1, CB__F_BULKHEAD = 2, CB__F_TIME_WINDOW = 4, CB__F_COUNT_WINDOW = 8,
       CB__F_KEY = 16 };   /* a group key: counters of its own, so never the inline path */

typedef struct cb__shared cb__shared;   /* the position-independent block (section 3) */
typedef struct cb__live cb__live;       /* what calls move, in it or in a group key */

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
    struct cb__live *cb__lv;             /* what calls move: in the block, or a group key's */
    struct cb__stripe *cb__stripes;      /* CB_STRIPES + 1 of them; NULL for a group key */
    struct cb__hist *cb__hist;           /* CB_HISTORY entries; NULL for a group key */
    _Atomic(uint64_t) *cb__word;         /* &cb__lv->word, for the fast path */
    _Atomic(uint64_t) *cb__consec;       /* &cb__lv->consec                   */
    _Atomic(uint64_t) *cb__win_count;    /* cb__lv->win_count: the count window's figures */
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
    const cb__cfg *cb__config;          /* the resolved config: the handle's own copy, after it
                                           (cb__handle_size), or the group's template */
    void *cb__mem;                      /* cb_new: the allocation; shm: the mapping */
    size_t cb__map_len;
    /* a group key's handle (made for each call, see cb__key_handle); NULL, 0 otherwise */
    struct cb_group *cb__group;
    _Atomic(uint64_t) *cb__key_n;       /* the key's counters (occupant:16 | count:48) */
    _Atomic(uint64_t) *cb__seq;         /* the slot's occupant word */
    uint64_t cb__seq_seen;              /* its value when the key was found there */
    const char *cb__key;
    uint32_t cb__key_len;
    uint32_t cb__slot;
    uint32_t cb__lost;                  /* CB__LOST_*: the slot turned out to be changing hands */
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
CB_API void cb__key_count(cb_breaker *b, unsigned i);
/* out of line, also where the implementation is compiled: the clock read it makes would
   keep cb_allow and cb_record from being inlined into their callers */
CB_API CB__NOINLINE uint64_t cb__stamp(const cb_breaker *b);

static inline cb__tls_entry *cb__entry(cb_breaker *b)   /* this thread's stripe of b */
{
    cb__tls_entry *e = &cb__tls[b->cb__id & (CB__TLS_WAYS - 1)];
    return CB__LIKELY(e->key == b->cb__id) ? e : cb__tls_fill(b, e);
}

/* Count in this thread's stripe (the inline path: never a group key's handle). */
static inline void cb__count_stripe(cb_breaker *b, unsigned i)
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

static inline void cb__count(cb_breaker *b, unsigned i)
{
    if (b->cb__key_n)   /* a group key: no stripes, see cb__key_count */
        cb__key_count(b, i);
    else
        cb__count_stripe(b, i);
}

CB__FAST bool cb_allow(cb_breaker *b, cb_ticket *t)
{
    /* acquire: pairs with the acq_rel transition CAS, so a call admitted in generation g
       sees everything the thread that made g wrote before its CAS */
    uint64_t w = atomic_load_explicit(b->cb__word, memory_order_acquire);
    if (CB__LIKELY(cb__w_state(w) == CB_CLOSED && !(b->cb__fast & (CB__F_BULKHEAD | CB__F_KEY)))) {
        cb__count_stripe(b, CB__N_ADMITTED);
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
                   !(b->cb__fast & (CB__F_BULKHEAD | CB__F_KEY)))) {
        /* acquire: as in cb_allow; the generation check below is the staleness test */
        uint64_t w = atomic_load_explicit(b->cb__word, memory_order_acquire);
        /* relaxed: a success only needs to know whether a failure run must be cut; the
           slow path re-reads it under CAS when it must */
        uint64_t run = atomic_load_explicit(b->cb__consec, memory_order_relaxed);
        if (CB__LIKELY(cb__w_state(w) == CB_CLOSED && cb__w_gen(w) == t->cb__gen &&
                       (uint32_t)run == 0 && cb__plain_ticket(b, t))) {
            cb__spend(t);
            cb__count_stripe(b, CB__N_SUCCESSES);
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
#include <sched.h>
#if defined(__linux__)
#include <sys/random.h>
#endif
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
#define CB__GROUP_MAGIC 0x3170726b61657262ull   /* "breakrp1": a group's file */
#define CB__VERSION 7u
#define CB__WINDOW_MAX (1u << 20)
#define CB__BUCKETS_MAX 1024u
#define CB__MS 1000000ull
#define CB__COUNT_MASK ((1ull << 48) - 1)   /* a group key's counts: occupant:16 | count:48 */
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

/* What calls move, on lines by who writes them: a breaker keeps it in its block, a group
   one per key. */
struct cb__live {
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
    _Atomic(uint64_t) trend_at;          /* gen:32 | round:32 of the figures in trend */
    _Atomic(uint64_t) trend;             /* failures:32 | calls:32 of the window when that
                                            round (window_ms of the clock, or window_calls
                                            ring positions) began */
    _Atomic(uint64_t) warn;              /* gen:32 | degraded:1, as last told to on_event */
    /* bulkhead */
    _Alignas(CB_CACHELINE) _Atomic(uint64_t) in_flight;
    _Atomic(uint64_t) sweep_ms;         /* last look for a dead process's bulkhead places */
};

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
    cb__live live;                       /* what calls move (see cb__live) */
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
static const char *const cb__reject_names[] = { CB__REJECTS(CB__TEXT_ITEM) };
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

CB_API const char *cb_reject_name(cb_reject r)
{
    return (unsigned)r < CB__COUNT_OF(cb__reject_names) ? cb__reject_names[r] : "unknown";
}

CB_API cb_reject cb_ticket_rejected(const cb_ticket *t)
{
    if (!t || (t->cb__flags & CB__T_ADMITTED))
        return CB_REJECT_NONE;
    uint32_t why = t->cb__flags >> 16 & 0xffu;
    return why < CB__REJECT_COUNT ? (cb_reject)why : CB_REJECT_NONE;
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

/* What this thread's last failed cb_new, cb_init, cb_shm_open... said (cb_last_error). */
static CB__THREAD_LOCAL char cb__last[512];

CB_API const char *cb_last_error(void) { return cb__last; }

static cb_err cb__bad(char *msg, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cb__last, sizeof cb__last, fmt, ap);
    va_end(ap);
    if (msg && len)
        snprintf(msg, len, "%s", cb__last);
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
    if (!cb__rate_ok(c->warn_failure_rate) || c->warn_failure_rate == 1)
        return cb__bad(msg, len, "cb_config.warn_failure_rate = %g: must be in (0, 1) (0 = off)",
                       c->warn_failure_rate);
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
    /* after the defaults: a rate rule's default window serves the warning too */
    if (c->warn_failure_rate > 0 && !c->window_calls && !c->window_ms)
        return cb__bad(msg, len, "cb_config.warn_failure_rate = %g: needs a window (window_calls or "
                       "window_ms)", c->warn_failure_rate);
    if (c->warn_failure_rate > 0 && c->failure_rate > 0 && c->warn_failure_rate >= c->failure_rate)
        return cb__bad(msg, len, "cb_config.warn_failure_rate = %g: must be below failure_rate = %g",
                       c->warn_failure_rate, c->failure_rate);
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
    *out = c;   /* seed 0 stays 0 here: each breaker draws its own when it is made */
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
    cb__cfg_load(out, b->cb__config);
    out->on_event = b->cb__on_event;
    out->user = b->cb__user;
    out->clock_ns = b->cb__clock_ns;
    out->clock_user = b->cb__clock_user;
}

CB_API const char *cb_name(const cb_breaker *b) { return b->cb__config->name; }

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

/* the handle, then its own copy of the resolved config */
static size_t cb__handle_size(void)
{
    return cb__round_up(sizeof(cb_breaker), CB_CACHELINE) + cb__round_up(sizeof(cb__cfg), CB_CACHELINE);
}

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

static uint64_t cb__instance(const void *where, uint64_t now);

/* 64 random bits from the kernel, never 0 (the instance hash when it has none to give). */
static uint64_t cb__random64(void)
{
    uint64_t s = 0;
#if defined(__linux__)
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s)
        s = 0;
#endif
    return s ? s : cb__instance(&s, cb__mono_ns());
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
    cb_config own;
    if (!c->seed) {   /* replicas of one name must not probe in step: a seed of its own */
        own = *c;
        own.seed = cb__random64();
        c = &own;
    }
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
    atomic_store_explicit(&sh->live.word, cb__w_make(CB_CLOSED, 0, 0, 0, 0), memory_order_relaxed);
}

/* The handle of block sh, whose resolved config is c and identity tag: everything the
   calls use to find their way is taken from c and the layout it implies, never from sh. */
static void cb__handle_init(cb_breaker *b, cb__shared *sh, const cb_config *c, uint64_t tag,
                            uint32_t kind)
{
    static _Atomic(uint64_t) next_id = 1;
    memset(b, 0, sizeof *b);
    cb__cfg *own = (cb__cfg *)((char *)b + cb__round_up(sizeof *b, CB_CACHELINE));
    cb__cfg_store(own, c);
    if (!own->seed && sh)   /* the seed the block drew when it was made, copied once */
        memcpy(&own->seed, &sh->cfg.seed, sizeof own->seed);
    b->cb__config = own;
    const cb__cfg *k = own;
    b->cb__sh = sh;
    if (sh) {   /* without a block: a group's template, which each key's handle copies */
        b->cb__lv = &sh->live;
        b->cb__stripes = sh->stripes;
        b->cb__hist = sh->hist;
        b->cb__word = &sh->live.word;
        b->cb__consec = &sh->live.consec;
        b->cb__win_count = sh->live.win_count;
        b->cb__window = (char *)sh + sizeof(cb__shared);
    }
    b->cb__window_calls = k->window_calls;
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
    cb__last[0] = 0;
    cb_err e = cb__resolve(cfg, &c, NULL, 0);
    if (e != CB_OK)
        return e;
    if (!mem || !out || len < cb_size(&c))
        return cb__bad(NULL, 0, "cb_init: %s", !mem ? "mem is NULL" : !out ? "out is NULL"
                                                 : "len is below cb_size() for this config");
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

/* cb_new and cb_group_new: n bytes (0: an invalid config) from CB_MALLOC, made into the
   object by init; NULL, and the error in *err, when either fails. */
static void *cb__new(size_t n, cb_err (*init)(void *mem, size_t len, const void *cfg, void **out),
                     const void *cfg, cb_err *err, void **mem)
{
    void *obj = NULL;
    cb_err e = n ? CB_OK : CB_EINVAL;
    if (e == CB_OK && !(*mem = CB_MALLOC(n))) {
        e = CB_ENOMEM;
        snprintf(cb__last, sizeof cb__last, "out of memory: %zu bytes", n);
    }
    else if (e == CB_OK && (e = init(*mem, n, cfg, &obj)) != CB_OK)
        CB_FREE(*mem);
    if (err)
        *err = e;
    return e == CB_OK ? obj : NULL;
}

static cb_err cb__init_breaker(void *mem, size_t len, const void *cfg, void **out)
{
    cb_breaker *b = NULL;
    cb_err e = cb_init(mem, len, (const cb_config *)cfg, &b);
    *out = b;
    return e;
}

CB_API cb_breaker *cb_new(const cb_config *cfg, cb_err *err)
{
    void *mem = NULL;
    cb__last[0] = 0;
    cb_err e = cb_config_check(cfg, NULL, 0);
    cb_breaker *b = e != CB_OK ? NULL : (cb_breaker *)cb__new(cb_size(cfg), cb__init_breaker, cfg, &e, &mem);
    if (b) {
        b->cb__kind = CB__KIND_NEW;
        b->cb__mem = mem;
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
static void cb__places_give(cb__live *lv, uint64_t n)
{
    uint64_t cur = atomic_load_explicit(&lv->in_flight, memory_order_relaxed);
    for (uint32_t tries = 0; cur && tries < CB__TRIES; tries++) {
        CB_YIELD_POINT();
        /* relaxed: the count alone bounds admissions, as in cb__bulkhead_take */
        if (atomic_compare_exchange_weak_explicit(&lv->in_flight, &cur, cur > n ? cur - n : 0,
                                                  memory_order_relaxed, memory_order_relaxed))
            return;
    }
}

/* Give back the bulkhead places a dead process's stripe still holds; the caller has just
   taken the stripe over from the dead owner. Its places were taken by that process alone
   and can be given back by nobody else (tickets do not cross processes). */
static void cb__settle_places(cb__live *lv, cb__stripe *st)
{
    uint64_t taken = atomic_load_explicit(&st->n[CB__N_PLACES_TAKEN], memory_order_relaxed);
    uint64_t given = atomic_load_explicit(&st->n[CB__N_PLACES_GIVEN], memory_order_relaxed);
    if (taken > given) {   /* relaxed: counts alone, as in cb__bulkhead_take */
        atomic_fetch_add_explicit(&st->n[CB__N_PLACES_GIVEN], taken - given, memory_order_relaxed);
        cb__places_give(lv, taken - given);
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
    cb__stripe *st = b->cb__stripes, *mine = NULL;
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
                    cb__settle_places(b->cb__lv, mine);   /* a dead process's stripe */
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
        if (atomic_load_explicit(&b->cb__stripes[i].owner, memory_order_relaxed) == me)
            /* release: pairs with the acquire claim CAS of the next owner */
            atomic_store_explicit(&b->cb__stripes[i].owner, 0, memory_order_release);
}

static void cb__key_sum(const cb_breaker *b, uint64_t n[CB__N_COUNT]);

static void cb__sum(const cb_breaker *b, uint64_t n[CB__N_COUNT])
{
    memset(n, 0, sizeof(uint64_t) * CB__N_COUNT);
    if (b->cb__key_n) {
        cb__key_sum(b, n);
        return;
    }
    const cb__stripe *stripes = b->cb__stripes;
    for (unsigned i = 0; i <= CB_STRIPES; i++)
        for (unsigned j = 0; j < CB__N_COUNT; j++)
            /* relaxed: each stripe counter only grows; a sum taken while calls run is a
               snapshot, exact once the callers are quiescent (they joined, or their
               records happened before this call) */
            n[j] += atomic_load_explicit(&stripes[i].n[j], memory_order_relaxed);
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
static bool cb__period_current(const cb__live *lv, uint32_t gen)
{
    /* relaxed: advisory; if gen ends right after, the word written here carries the old
       tag, which the newer generation's writers replace in turn */
    return cb__w_gen(atomic_load_explicit(&lv->word, memory_order_relaxed)) == gen;
}

/* The deadline word: gen:16 | ms:48. For OPEN the end of the period, for HALF_OPEN the
   probe deadline, for other states when they began; in whole ms of the breaker clock.
   Written after the transition CAS by its winner, or by any thread that finds it missing,
   and only for the current generation (tags compared for equality: every transition
   publishes, so an old tag can never have come round again). */
#define CB__MS_MASK ((1ull << 48) - 1)

static void cb__publish_time(cb__live *lv, uint32_t gen, uint64_t ms)
{
    uint64_t want = (uint64_t)(gen & 0xffff) << 48 | (ms & CB__MS_MASK);
    uint64_t cur = atomic_load_explicit(&lv->deadline, memory_order_relaxed);
    for (uint32_t tries = 0; tries < CB__TRIES; tries++) {
        if ((uint16_t)(cur >> 48) == (uint16_t)gen || !cb__period_current(lv, gen))
            return;   /* published already, or a newer generation's time is what counts */
        CB_YIELD_POINT();
        /* relaxed: the word carries its own generation tag; readers check the tag
           instead of relying on order with any other write */
        if (atomic_compare_exchange_weak_explicit(&lv->deadline, &cur, want,
                                                  memory_order_relaxed, memory_order_relaxed))
            return;
    }
}

static bool cb__time_of(const cb__live *lv, uint32_t gen, uint64_t *ms)
{
    uint64_t v = atomic_load_explicit(&lv->deadline, memory_order_relaxed); /* relaxed: tagged */
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

static void cb__group_history_write(struct cb_group *g, const cb_event *ev);

static void cb__history_write(cb_breaker *b, const cb_event *ev)
{
    if (!b->cb__hist) {   /* a group key: the group's ring */
        cb__group_history_write(b->cb__group, ev);
        return;
    }
    uint32_t gen = (uint32_t)ev->generation;
    cb__hist *h = &b->cb__hist[gen % CB_HISTORY];
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
        ev->name = b->cb__config->name;
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
        if (!cb__history_read(b, &b->cb__hist[i], &ev))
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
static int32_t cb__tagged_add(cb__live *lv, _Atomic(uint64_t) *word, uint32_t gen, int32_t delta)
{
    uint64_t cur = atomic_load_explicit(word, memory_order_relaxed);
    for (uint32_t tries = 0;; tries++) {
        int32_t v = (uint32_t)(cur >> 32) == gen ? (int32_t)(uint32_t)cur : 0;
        if (((uint32_t)(cur >> 32) != gen && !cb__period_current(lv, gen)) || tries == CB__TRIES)
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

/* Consecutive failures (consec, tagged): the run after this outcome. */
static uint32_t cb__consec_update(cb__live *lv, uint32_t gen, bool failure)
{
    if (failure)
        return (uint32_t)cb__tagged_add(lv, &lv->consec, gen, 1);
    /* a success cuts the run to 0 under this period's tag; no write when it is 0 already */
    uint64_t cur = atomic_load_explicit(&lv->consec, memory_order_relaxed);
    for (uint32_t tries = 0; (uint32_t)cur != 0 && tries < CB__TRIES; tries++) {
        if ((uint32_t)(cur >> 32) != gen && !cb__period_current(lv, gen))
            break;
        CB_YIELD_POINT();
        /* relaxed: as in cb__tagged_add */
        if (atomic_compare_exchange_weak_explicit(&lv->consec, &cur, (uint64_t)gen << 32,
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

static void cb__ring_figures(const cb__live *lv, uint32_t gen, cb__figures *f)
{
    f->calls = cb__tagged_get(&lv->win_count[0], gen);
    f->failures = cb__tagged_get(&lv->win_count[1], gen);
    f->slow = cb__tagged_get(&lv->win_count[2], gen);
}

/* The trend: at the first outcome of each round of the window (window_calls ring
   positions, or window_ms of the clock), the figures as they stood before it are kept,
   so that a reader can tell what the window held one window ago. A round only moves
   forward within a period; a new period starts with none. Once a round: no contention. */
static void cb__trend_mark(cb__live *lv, uint32_t gen, uint64_t round, const cb__figures *before)
{
    uint64_t want = (uint64_t)gen << 32 | (uint32_t)round;
    /* relaxed: a statistic; the CAS elects the one writer of the round's figures */
    uint64_t seen = atomic_load_explicit(&lv->trend_at, memory_order_relaxed);
    if (seen == want || ((uint32_t)(seen >> 32) == gen && (int32_t)((uint32_t)round - (uint32_t)seen) < 0))
        return;
    if (atomic_compare_exchange_strong_explicit(&lv->trend_at, &seen, want, memory_order_relaxed,
                                                memory_order_relaxed))
        atomic_store_explicit(&lv->trend, (uint64_t)before->failures << 32 | before->calls,
                              memory_order_relaxed);
}

/* Put one outcome in the count window; true if the figures changed, and then *f holds
   them (a success replacing a success, the steady state, changes nothing). */
static bool cb__ring_add(const cb_breaker *b, uint32_t gen, bool fail, bool slow, cb__figures *f)
{
    if (!fail && !slow && cb__window_full_plain(b, gen))
        return false;
    cb__live *lv = b->cb__lv;
    _Atomic(uint32_t) *ring = cb__ring(b);
    uint32_t entry = CB__RING_GEN(gen) << 3 | 4u | (slow ? 2u : 0u) | (fail ? 1u : 0u);
    /* relaxed: the position only spreads writers over the ring; entries carry their tag */
    uint64_t pos = atomic_fetch_add_explicit(&lv->win_head, 1, memory_order_relaxed);
    uint64_t at = pos % b->cb__window_calls;
    _Atomic(uint32_t) *slot = &ring[at];
    if (at == 0) {   /* a round begins: the trend's figures */
        cb__figures before;
        cb__ring_figures(lv, gen, &before);
        cb__trend_mark(lv, gen, pos / b->cb__window_calls, &before);
    }
    bool changed = false;
    /* relaxed: replacing an entry by an equal one is no change, so skipping the write
       is the same as making it (linearised at this load) */
    uint32_t old = atomic_load_explicit(slot, memory_order_relaxed);
    for (uint32_t tries = 0; old != entry && tries < CB__TRIES; tries++) {
        if ((old >> 3) != CB__RING_GEN(gen) && !cb__period_current(lv, gen))
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
                cb__tagged_add(lv, &lv->win_count[i], gen, delta[i]);
                changed = true;
            }
        /* the not-plain count takes this period's tag with the period's first entries,
           even at 0, or a period that never sees a failure would never skip the head */
        if (!counted && !delta[3])
            cb__tagged_add(lv, &lv->win_count[3], gen, 0);
        break;
    }
    if (changed)
        cb__ring_figures(lv, gen, f);
    return changed;
}

/* Time window: bucket words are epoch:32 | count:32; an epoch is bucket_ns of the clock.
   The newest epoch seen (win_epoch, with its bucket's index, so that a record in it needs
   no division) only moves forward within a period, so a clock that goes back is not
   moving; a fresh window (cb__buckets_clear) starts at the clock's own epoch. */
typedef struct cb__epoch_at { uint64_t e; uint32_t bucket; } cb__epoch_at;

static uint64_t cb__epoch_word(const cb_breaker *b, uint64_t e)
{
    return e << 16 | e % b->cb__config->window_buckets;   /* e < 2^45: a bucket is >= 1 ms */
}

/* The newest epoch, if the clock has not left it (or is behind it); false otherwise. */
static inline bool cb__epoch_held(const cb_breaker *b, uint64_t seen, uint64_t now, cb__epoch_at *at)
{
    uint64_t se = seen >> 16, start = se * b->cb__bucket_ns;
    if ((seen & 0xffff) >= b->cb__config->window_buckets ||
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
    uint64_t seen = atomic_load_explicit(&b->cb__lv->win_epoch, memory_order_relaxed);
    cb__epoch_at at;
    return CB__LIKELY(cb__epoch_held(b, seen, now, &at)) ? at : cb__epoch_move(b, now, advance, seen);
}

/* The clock has left the newest epoch: the epoch it is in, made the newest if advance. */
static cb__epoch_at cb__epoch_move(const cb_breaker *b, uint64_t now, bool advance, uint64_t seen)
{
    _Atomic(uint64_t) *newest = &b->cb__lv->win_epoch;
    uint32_t n = b->cb__config->window_buckets;
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
        else if ((atomic_load_explicit(&b->cb__lv->win_epoch, memory_order_relaxed) >> 16) - e <
                 b->cb__config->window_buckets)
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
    uint32_t n = b->cb__config->window_buckets;
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
    _Atomic(uint64_t) *cache = b->cb__lv->win_closed;
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
    cb__live *lv = b->cb__lv;
    for (uint32_t i = 0; i < b->cb__config->window_buckets; i++) {
        atomic_store_explicit(&bk[i].calls, 0, memory_order_relaxed);
        atomic_store_explicit(&bk[i].failures, 0, memory_order_relaxed);
        atomic_store_explicit(&bk[i].slow, 0, memory_order_relaxed);
    }
    uint64_t e = now / b->cb__bucket_ns;
    for (int i = 0; i < 3; i++)
        atomic_store_explicit(&lv->win_closed[i], (uint64_t)(uint32_t)(e - 1) << 32, memory_order_relaxed);
    atomic_store_explicit(&lv->win_epoch, cb__epoch_word(b, e), memory_order_relaxed);
}

/* What the window of the current period holds: nothing outside CLOSED and METRICS_ONLY
   (the count window's tags say so by themselves; the time window's buckets do not). */
static void cb__window_figures(const cb_breaker *b, uint64_t w, cb__figures *f)
{
    uint32_t gen = cb__w_gen(w);
    f->calls = f->failures = f->slow = 0;
    if (b->cb__config->window_calls)
        cb__ring_figures(b->cb__lv, gen, f);
    else if (b->cb__config->window_ms && (cb__w_state(w) == CB_CLOSED || cb__w_state(w) == CB_METRICS_ONLY))
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

/* The first call of a time window's bucket e, which made the figures f (failed, slow:
   its failure, its slowness counted): the trend's round, if a new one began. */
static CB__NOINLINE void cb__trend_time(const cb_breaker *b, uint32_t gen, uint64_t e,
                                        const cb__figures *f, bool failed, bool slow)
{
    cb__figures before = { f->calls - 1, f->failures - failed, f->slow - slow };
    cb__trend_mark(b->cb__lv, gen, e / b->cb__config->window_buckets, &before);
}

/* Put a SUCCESS or FAILURE of period gen in the time window; *f: its figures after. */
static void cb__time_add(const cb_breaker *b, uint32_t gen, bool fail, bool slow, uint64_t *now,
                         bool *have_now, cb__figures *f)
{
    cb__epoch_at at = cb__epoch(b, cb__now_for(b, CB__C_WINDOW, now, have_now), true);
    cb__bucket *bk = &cb__buckets(b)[at.bucket];
    cb__closed_sums(b, at, f);
    uint32_t calls = cb__bucket_add(b, &bk->calls, at.e);
    uint32_t fails = fail ? cb__bucket_add(b, &bk->failures, at.e) : cb__bucket_get(&bk->failures, at.e);
    f->calls += calls;
    f->failures += fails;
    uint32_t slows = slow ? cb__bucket_add(b, &bk->slow, at.e) : cb__bucket_get(&bk->slow, at.e);
    f->slow += slows;
    if (CB__UNLIKELY(calls == 1))   /* a bucket's first call: perhaps a round's */
        cb__trend_time(b, gen, at.e, f, fail && fails, slow && slows);
}

/* Put a SUCCESS or FAILURE of period gen in the window; true if the figures changed, and
   then *f holds them. A time window reads the clock into *now unless *have_now. */
static bool cb__window_add(const cb_breaker *b, uint32_t gen, bool fail, bool slow, uint64_t *now,
                           bool *have_now, cb__figures *f)
{
    const cb__cfg *c = b->cb__config;
    if (c->window_calls)
        return cb__ring_add(b, gen, fail, slow, f);
    if (!c->window_ms)
        return false;
    cb__time_add(b, gen, fail, slow, now, have_now, f);
    return true;
}

/* ---- bulkhead and admission ----------------------------------------------------- */

static void cb__bulkhead_sweep(cb_breaker *b);

static int cb__key_add(cb_breaker *b, _Atomic(uint64_t) *word, int delta, uint64_t below);

static bool cb__bulkhead_take(cb_breaker *b)
{
    if (!(b->cb__fast & CB__F_BULKHEAD))
        return true;
    if (b->cb__key_n)   /* a group key: its places, tagged with its occupant */
        return cb__key_add(b, &b->cb__lv->in_flight, 1, b->cb__config->max_concurrent) > 0;
    /* relaxed: the count alone bounds admissions: a call is admitted only if it found
       fewer than max_concurrent before it, so at most that many hold a place */
    for (int tries = 0; tries < 2; tries++) {
        uint64_t before = atomic_fetch_add_explicit(&b->cb__lv->in_flight, 1, memory_order_relaxed);
        if (before < b->cb__config->max_concurrent)
            return true;
        cb__places_give(b->cb__lv, 1);
        if (tries == 0)
            cb__bulkhead_sweep(b);
    }
    return false;
}

static void cb__bulkhead_give(cb_breaker *b)
{
    if ((b->cb__fast & CB__F_BULKHEAD) && b->cb__key_n)
        cb__key_add(b, &b->cb__lv->in_flight, -1, 0);
    else if (b->cb__fast & CB__F_BULKHEAD)
        cb__places_give(b->cb__lv, 1);
}

/* A process killed while its calls held bulkhead places would keep them forever. Each
   thread tallies the places it takes and gives in its own stripe (take: after the
   fetch_add; give: before the fetch_sub, so a kill in between leaks a place rather than
   freeing one twice); when the bulkhead is full, at most once a second, the stripes of
   dead processes are settled and their places given back. */
static void cb__bulkhead_sweep(cb_breaker *b)
{
    cb__live *lv = b->cb__lv;
    if (!b->cb__stripes)
        return;   /* a group key tallies no places: see docs/groups.md */
    uint64_t now_ms = cb__mono_ns() / CB__MS;
    uint64_t last = atomic_load_explicit(&lv->sweep_ms, memory_order_relaxed);
    /* relaxed: only elects one sweeper a second; the stripe CAS below does the rest */
    if (now_ms - last < 1000 ||
        !atomic_compare_exchange_strong_explicit(&lv->sweep_ms, &last, now_ms,
                                                 memory_order_relaxed, memory_order_relaxed))
        return;
    uint64_t me = cb__thread_token();
    for (unsigned i = 0; i < CB_STRIPES; i++) {
        cb__stripe *st = &b->cb__stripes[i];
        uint64_t o = atomic_load_explicit(&st->owner, memory_order_relaxed);
        /* acquire: the dead owner's tallies are complete (it is dead) and visible */
        if (!cb__pid_dead(o) || !atomic_compare_exchange_strong_explicit(
                                    &st->owner, &o, me, memory_order_acquire, memory_order_relaxed))
            continue;
        cb__settle_places(lv, st);
        /* release: the next owner continues from the settled tallies */
        atomic_store_explicit(&st->owner, 0, memory_order_release);
    }
}

static bool cb__reject(cb_breaker *b, cb_ticket *t, cb_reject why)
{
    cb__count(b, CB__N_REJECTED + (unsigned)why - 1);
    t->cb__gen = 0;
    t->cb__flags = (uint32_t)why << 16;   /* for cb_ticket_rejected */
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
    if ((b->cb__fast & CB__F_BULKHEAD) && !b->cb__stripes)   /* a group key: no tally */
        t->cb__flags |= CB__T_BULKHEAD | 0xffu << 8;
    else if (b->cb__fast & CB__F_BULKHEAD) {   /* tally the place in this thread's stripe */
        cb__tls_entry *e = cb__entry(b);
        cb__count(b, CB__N_PLACES_TAKEN);
        uint32_t idx = e->exclusive ? (uint32_t)(e->stripe - b->cb__stripes) : CB_STRIPES;
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
        _Atomic(uint64_t) *last = &b->cb__lv->last_failure_ns;
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
            atomic_fetch_add_explicit(&b->cb__stripes[idx].n[CB__N_PLACES_GIVEN], 1,
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

/* A state word that no state has: what a group key's handle sees once its key has left
   the slot (cb__word_cas). */
#define CB__GONE 7u

/* The state word's CAS. A group key's handle first checks that its key still holds the
   slot: the word was read before this check (acquire), so a word written for the slot's
   next key is caught here, and an eviction after the check moves the word, failing the CAS.
   A caller of a key gone never moves another key's word. */
static bool cb__word_cas(cb_breaker *b, uint64_t *w, uint64_t to, bool weak)
{
    if (b->cb__seq && atomic_load_explicit(b->cb__seq, memory_order_acquire) != b->cb__seq_seen) {
        b->cb__lost |= CB__LOST_WORD;
        *w = CB__GONE;
        return false;
    }
    CB_YIELD_POINT();
    /* acq_rel: release publishes what this thread did before (e.g. its window writes);
       acquire (also on failure) makes the winner's state visible to the loser, which
       re-decides from the fresh word */
    return weak ? atomic_compare_exchange_weak_explicit(b->cb__word, w, to, memory_order_acq_rel,
                                                        memory_order_acquire)
                : atomic_compare_exchange_strong_explicit(b->cb__word, w, to, memory_order_acq_rel,
                                                          memory_order_acquire);
}

static int cb__group_open_take(cb_breaker *b, uint64_t from, uint64_t to, cb_reason why);
static size_t cb__slot_key_copy(struct cb_group *g, uint32_t s, char *out);
static void cb__group_open_settle(cb_breaker *b, int taken, uint64_t from, uint64_t to, bool moved);

/* A group key's event names its key: a record's handle has none, so it is copied from
   the slot, if the slot still holds the key (key: CB_GROUP_KEY_MAX bytes). */
static void cb__event_key(const cb_breaker *b, cb_event *ev, char *key)
{
    if (!b->cb__group || ev->key)
        return;
    ev->key_len = cb__slot_key_copy(b->cb__group, b->cb__slot, key);
    ev->key = atomic_load_explicit(b->cb__seq, memory_order_acquire) == b->cb__seq_seen ? key : NULL;
    ev->key_len = ev->key ? ev->key_len : 0;
}

/* Make the transition from *w to `to` (false, with *w the fresh word, if another thread
   moved first), and publish it. */
static bool cb__transition(cb_breaker *b, uint64_t *w, uint64_t to, cb_reason why, uint64_t now)
{
    cb__live *lv = b->cb__lv;
    uint64_t from = *w;
    int taken = 0;   /* a group key: the place among the group's open keys it took */
    if (b->cb__group && (taken = cb__group_open_take(b, from, to, why)) < 0)
        return false;   /* held back by max_open_share: the key stays as it is */
    bool moved = cb__word_cas(b, w, to, false);
    if (b->cb__group)
        cb__group_open_settle(b, taken, from, to, moved);
    if (!moved)
        return false;
    *w = to;
    cb_event ev = { b->cb__config->name, cb__w_state(from), cb__w_state(to), why,
                    cb__w_gen(to), now, 0, b->cb__key, b->cb__key_len };
    char key[CB_GROUP_KEY_MAX];
    cb__event_key(b, &ev, key);
    /* a group key's publishing is tagged (the deadline by generation, opens by occupant)
       or checked, so that it never lands on the slot's next key */
    cb__publish_time(lv, cb__w_gen(to), cb__time_for(b->cb__config, to, now, &ev.open_ms));
    if (ev.to == CB_OPEN && b->cb__key_n)
        cb__key_add(b, &lv->opens, 1, UINT64_MAX);
    else if (ev.to == CB_OPEN)
        /* relaxed: a statistic; once per transition, so no contention */
        atomic_fetch_add_explicit(&lv->opens, 1, memory_order_relaxed);
    if ((ev.to == CB_CLOSED || ev.to == CB_METRICS_ONLY) && b->cb__config->window_ms &&
        (!b->cb__seq || atomic_load_explicit(b->cb__seq, memory_order_acquire) == b->cb__seq_seen))
        cb__buckets_clear(b, now);
    cb__history_write(b, &ev);
    if (b->cb__on_event)
        b->cb__on_event(&ev, b->cb__user);
    return true;
}

/* What an allow decides in a state: admit (the ticket filled), reject (a cb_reject: why),
   or look again at a newer word (another thread moved first). */
typedef int cb__verdict;
enum { CB__ADMIT = CB_REJECT_NONE, CB__AGAIN = CB__REJECT_COUNT };

/* -- CLOSED (and METRICS_ONLY, which records alike and never trips) -- */

static cb__verdict cb__allow_closed(cb_breaker *b, cb_ticket *t, uint64_t w)
{
    if (!cb__bulkhead_take(b))
        return CB_REJECT_BULKHEAD;
    cb__admit(b, t, cb__w_gen(w), 0);
    return CB__ADMIT;
}

/* Does the window f hold the warning's failure rate (with the rate rules' minimum_calls)? */
static bool cb__warns(const cb__cfg *c, const cb__figures *f)
{
    return c->warn_failure_rate > 0 && f->calls > 0 && f->calls >= c->minimum_calls &&
           (double)f->failures / f->calls >= c->warn_failure_rate;
}

/* After an outcome changed the window of a CLOSED (or METRICS_ONLY) period to f and
   tripped nothing: the early warning. Its changes are told to on_event once each, as an
   event with from == to and reason DEGRADED or RECOVERED (no transition, no history). */
static CB__NOINLINE void cb__warn_check(cb_breaker *b, uint64_t w, const cb__figures *f,
                                        uint64_t now, bool have_now)
{
    uint32_t gen = cb__w_gen(w);
    bool on = cb__warns(b->cb__config, f);
    _Atomic(uint64_t) *word = &b->cb__lv->warn;
    /* relaxed: only the change is told; the CAS elects the one thread that tells it */
    uint64_t was = atomic_load_explicit(word, memory_order_relaxed);
    bool told = (uint32_t)(was >> 32) == gen && (was & 1u);
    if (on == told || !atomic_compare_exchange_strong_explicit(word, &was, (uint64_t)gen << 32 | on,
                                                                memory_order_relaxed, memory_order_relaxed))
        return;
    if (!b->cb__on_event)
        return;
    cb_event ev = { b->cb__config->name, cb__w_state(w), cb__w_state(w),
                    on ? CB_REASON_DEGRADED : CB_REASON_RECOVERED, gen, have_now ? now : cb__now(b),
                    0, b->cb__key, b->cb__key_len };
    char key[CB_GROUP_KEY_MAX];
    cb__event_key(b, &ev, key);
    b->cb__on_event(&ev, b->cb__user);
}

/* After a counted SUCCESS or FAILURE: the run and the window move, then the first rule
   that holds opens the breaker, with its reason. */
static void cb__closed_outcome(cb_breaker *b, uint64_t w, bool fail, bool slow, uint64_t now,
                               bool have_now)
{
    uint32_t gen = cb__w_gen(w);
    uint32_t run = cb__consec_update(b->cb__lv, gen, fail);
    cb__figures f;
    bool changed = cb__window_add(b, gen, fail, slow, &now, &have_now, &f);
    int why = cb__trip_reason(b->cb__config, run, changed ? &f : NULL);
    if (why >= 0 && cb__w_state(w) == CB_CLOSED &&
        (cb__transition(b, &w, cb__w_next(w, CB_OPEN, cb__w_k(w)), (cb_reason)why,
                        have_now ? now : cb__now(b)) || cb__w_gen(w) != gen))
        return;   /* tripped, or moved on by another thread */
    if (changed && b->cb__config->warn_failure_rate > 0)   /* no rule held, or held back */
        cb__warn_check(b, w, &f, now, have_now);
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
    cb__time_add(b, cb__w_gen(w), false, false, &now, &have_now, &f);
    int why = cb__window_rule(b->cb__config, &f);
    uint32_t gen = cb__w_gen(w);
    if (CB__UNLIKELY(why >= 0) && cb__w_state(w) == CB_CLOSED &&
        (cb__transition(b, &w, cb__w_next(w, CB_OPEN, cb__w_k(w)), (cb_reason)why,
                        have_now ? now : cb__now(b)) || cb__w_gen(w) != gen))
        return;
    if (b->cb__config->warn_failure_rate > 0)
        cb__warn_check(b, w, &f, now, have_now);
}

/* -- OPEN: reject until the period ends; the first allow at or after it probes -- */

static cb__verdict cb__allow_open(cb_breaker *b, cb_ticket *t, uint64_t *w)
{
    cb__live *lv = b->cb__lv;
    uint32_t gen = cb__w_gen(*w), k = cb__w_k(*w);
    uint64_t ms;
    if (cb__time_of(lv, gen, &ms) && cb__surely_before(b, ms))
        return CB_REJECT_OPEN;
    uint64_t now = cb__now(b);
    if (!cb__time_of(lv, gen, &ms)) {
        /* the winner of this generation has not published its deadline yet (or died
           first): publish one from now, which is no earlier than it would */
        cb__publish_time(lv, gen, cb__ceil_ms(cb__add_sat(now, cb__period_ms(b->cb__config, k, gen) * CB__MS)));
        return CB_REJECT_OPEN;
    }
    if (now / CB__MS < ms)
        return CB_REJECT_OPEN;
    if (!cb__bulkhead_take(b))
        return CB_REJECT_BULKHEAD;
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
    cb__live *lv = b->cb__lv;
    const cb__cfg *c = b->cb__config;
    uint32_t gen = cb__w_gen(*w);
    uint64_t ms;
    if (cb__w_taken(*w) >= c->half_open_calls && cb__time_of(lv, gen, &ms) &&
        cb__surely_before(b, ms))
        return CB_REJECT_HALF_OPEN_FULL;   /* no permit left and the round has time left */
    uint64_t now = cb__now(b);
    if (!cb__time_of(lv, gen, &ms)) {   /* as in cb__allow_open */
        cb__publish_time(lv, gen, cb__ceil_ms(cb__add_sat(now, (uint64_t)c->probe_timeout_ms * CB__MS)));
    } else if (now / CB__MS >= ms) {
        cb__transition(b, w, cb__w_next(*w, CB_OPEN, cb__next_k(c, cb__w_k(*w))),
                       CB_REASON_PROBE_TIMEOUT, now);
        return CB__AGAIN;   /* won or lost, the word is newer */
    }
    if (cb__w_taken(*w) >= c->half_open_calls)
        return CB_REJECT_HALF_OPEN_FULL;
    if (!cb__bulkhead_take(b))
        return CB_REJECT_BULKHEAD;
    /* a permit is part of the state word; same pairing as transitions */
    if (cb__word_cas(b, w, cb__w_take_permit(*w), true)) {
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
    const cb__cfg *c = b->cb__config;
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
        return cb__word_cas(b, w, to, true);   /* as the permit CAS in cb__allow_half_open */
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
    if ((b->cb__fast & CB__F_BULKHEAD) && b->cb__key_n)
        cb__key_add(b, &b->cb__lv->in_flight, 1, UINT64_MAX);
    else if (b->cb__fast & CB__F_BULKHEAD)   /* relaxed: see cb__bulkhead_take */
        atomic_fetch_add_explicit(&b->cb__lv->in_flight, 1, memory_order_relaxed);
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
    for (uint32_t tries = 0; tries < CB__TRIES && !b->cb__lost; tries++)
        if (cb__transition(b, &w, cb__w_next(w, s, s == CB_CLOSED ? 0 : cb__w_k(w)),
                           CB_REASON_MANUAL, cb__now(b)))
            return CB_OK;
    if (b->cb__lost)
        return CB_ENOMEM;   /* a group key evicted meanwhile: the group looks again */
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
        default:              v = CB_REJECT_FORCED_OPEN;   /* or a damaged word in a file */
        }
        if (v != CB__AGAIN)
            return v == CB__ADMIT || cb__reject(b, t, (cb_reject)v);
    }
    /* the word never held still: a damaged shared file, which nothing will mend in time */
    return cb__reject(b, t, CB_REJECT_FORCED_OPEN);
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
    if (!b->cb__hist) {   /* a group key: from its deadline, which says when the state began */
        uint64_t w = atomic_load_explicit(b->cb__word, memory_order_acquire), ms;
        if (cb__w_gen(w) != gen || !cb__time_of(b->cb__lv, gen, &ms))
            return false;
        uint64_t back = cb__w_state(w) == CB_OPEN ? cb__period_ms(b->cb__config, cb__w_k(w), gen)
                        : cb__w_state(w) == CB_HALF_OPEN ? b->cb__config->probe_timeout_ms : 0;
        *ns = cb__ms_to_ns(ms > back ? ms - back : 0);
        return true;
    }
    if (!cb__history_read(b, &b->cb__hist[gen % CB_HISTORY], &ev) || (uint32_t)ev.generation != gen)
        return false;
    *ns = ev.at_ns;
    return true;
}

CB_API uint64_t cb_retry_after_ms(const cb_breaker *b)
{
    uint64_t w = atomic_load_explicit(b->cb__word, memory_order_acquire), ms;
    if (cb__w_state(w) != CB_OPEN)
        return 0;
    if (!cb__time_of(b->cb__lv, cb__w_gen(w), &ms))   /* just opened: the whole period */
        return cb__period_ms(b->cb__config, cb__w_k(w), cb__w_gen(w));
    uint64_t period = cb__period_ms(b->cb__config, cb__w_k(w), cb__w_gen(w));
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

/* What the window held one window ago (see cb__trend_mark), for the stats: the figures
   kept when the current round began; the current ones when no outcome has come since
   the round began (a time window) or the ring holds only plain successes (a count window,
   whose plain successes skip the ring); none before a period's first round. */
static void cb__trend_figures(const cb_breaker *b, uint64_t w, const cb__figures *now, cb_stats *s)
{
    const cb__cfg *c = b->cb__config;
    const cb__live *lv = b->cb__lv;
    uint32_t gen = cb__w_gen(w);
    if (!c->window_calls && !c->window_ms)
        return;
    /* relaxed: statistics */
    uint64_t at = atomic_load_explicit(&lv->trend_at, memory_order_relaxed);
    uint64_t v = atomic_load_explicit(&lv->trend, memory_order_relaxed);
    bool current;
    if (c->window_calls)
        current = now->calls == c->window_calls && now->failures == 0 && now->slow == 0;
    else
        current = (uint32_t)at != (uint32_t)(cb__epoch(b, cb__now(b), false).e / c->window_buckets);
    if ((uint32_t)(at >> 32) != gen && !current)
        return;
    s->prev_window_calls = current ? now->calls : (uint32_t)v;
    s->prev_window_failures = current ? now->failures : (uint32_t)(v >> 32);
}

CB_API void cb_stats_get(const cb_breaker *b, cb_stats *s)
{
    const cb__shared *sh = b->cb__sh;
    const cb__live *lv = b->cb__lv;
    uint64_t n[CB__N_COUNT], ms;
    memset(s, 0, sizeof *s);
    uint64_t w = atomic_load_explicit(b->cb__word, memory_order_acquire);
    uint32_t gen = cb__w_gen(w);
    s->state = cb__w_state(w);
    s->generation = gen;
    cb__sum(b, n);
    s->admitted = n[CB__N_ADMITTED];
    for (unsigned r = CB_REJECT_OPEN; r < CB__REJECT_COUNT; r++)
        s->rejected += s->rejected_by[r] = n[CB__N_REJECTED + r - 1];
    s->successes = n[CB__N_SUCCESSES];
    s->failures = n[CB__N_FAILURES];
    s->ignored = n[CB__N_IGNORED];
    s->slow = n[CB__N_SLOW];
    s->stale = n[CB__N_STALE];
    s->opens = atomic_load_explicit(&lv->opens, memory_order_relaxed) & (b->cb__key_n ? CB__COUNT_MASK : UINT64_MAX);
    s->consecutive_failures = cb__tagged_get(&lv->consec, gen);
    cb__figures f;
    cb__window_figures(b, w, &f);
    s->window_calls = f.calls;
    s->window_failures = f.failures;
    s->window_slow = f.slow;
    s->degraded = (s->state == CB_CLOSED || s->state == CB_METRICS_ONLY) && cb__warns(b->cb__config, &f);
    cb__trend_figures(b, w, &f, s);
    uint64_t done = s->successes + s->failures + s->ignored + s->stale + n[CB__N_UNCOUNTED];
    uint64_t flight = b->cb__config->max_concurrent ? atomic_load_explicit(&lv->in_flight, memory_order_relaxed) &
                                                          (b->cb__key_n ? CB__COUNT_MASK : UINT64_MAX)
                                             : ((int64_t)(s->admitted - done) > 0 ? s->admitted - done : 0);
    s->in_flight = flight > UINT32_MAX ? UINT32_MAX : (uint32_t)flight;
    if (!cb__since(b, gen, &s->state_since_ns) && b->cb__hist &&
        atomic_load_explicit(&b->cb__hist[gen % CB_HISTORY].seq, memory_order_relaxed) == 0)
        s->state_since_ns = atomic_load_explicit(&sh->created_ns, memory_order_relaxed);
    s->last_failure_ns = atomic_load_explicit(&lv->last_failure_ns, memory_order_relaxed);
    if (s->state == CB_OPEN && cb__time_of(lv, gen, &ms))
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

/* A group key as text, the same in JSON strings and Prometheus labels: printable ASCII
   as it is, '"' and '\\' escaped with '\\', every other byte (and '%') as %HH. */
static const char *cb__key_text(const char *k, size_t n, char *out, size_t cap)
{
    size_t j = 0;
    for (size_t i = 0; i < n && j + 4 < cap; i++) {
        unsigned char c = (unsigned char)k[i];
        if (c == '"' || c == '\\') {
            out[j++] = '\\';
            out[j++] = (char)c;
        } else if (c >= 0x20 && c < 0x7f && c != '%') {
            out[j++] = (char)c;
        } else {
            snprintf(out + j, 4, "%%%02X", c);
            j += 3;
        }
    }
    out[j] = 0;
    return out;
}

/* One breaker's JSON object: its name, the key (a group's), then every stats field. */
static void cb__json_breaker(cb__out *o, const cb_breaker *b, const char *key)
{
    cb_stats s;
    char name[2 * CB__NAME_MAX + 1];
    cb_stats_get(b, &s);
    cb__put(o, "{\"name\":\"%s\"", cb__escape(cb_name(b), name));
    if (key)
        cb__put(o, ",\"key\":\"%s\"", key);
    cb__put(o, ",\"state\":\"%s\"", cb_state_name(s.state));
#define CB__JSON_FIELD(type, field, kind, help) cb__put(o, ",\"" #field "\":%llu", (cb__ull)s.field);
    CB__STATS_FIELDS(CB__JSON_FIELD)
#undef CB__JSON_FIELD
    for (unsigned r = CB_REJECT_OPEN; r < CB__REJECT_COUNT; r++)
        cb__put(o, "%s\"%s\":%llu", r == CB_REJECT_OPEN ? ",\"rejected_by\":{" : ",",
                cb__reject_names[r], (cb__ull)s.rejected_by[r]);
    cb__put(o, "},\"retry_after_ms\":%llu}", (cb__ull)cb_retry_after_ms(b));
}

CB_API int cb_format_json(const cb_breaker *b, char *buf, size_t cap)
{
    cb__out o = { buf, cap, 0 };
    cb__json_breaker(&o, b, NULL);
    return cb__done(&o);
}

/* One Prometheus family: its name, type and help, and where its value is in cb_stats. */
typedef struct cb__family { const char *name, *type, *help; size_t offset; bool wide, by_reason; } cb__family;
#define CB__FAMILY_COUNTER(field, help) { "cb_" #field "_total", "counter", help, offsetof(cb_stats, field), sizeof(((cb_stats *)0)->field) == 8, false },
#define CB__FAMILY_BY_REASON(field, help) { "cb_" #field "_total", "counter", help, offsetof(cb_stats, field), true, true },
#define CB__FAMILY_GAUGE(field, help) { "cb_" #field, "gauge", help, offsetof(cb_stats, field), sizeof(((cb_stats *)0)->field) == 8, false },
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
/* at(ctx, i) reads the i-th breaker's stats and time left in its period and writes its
   labels; false: none there (skipped). */
typedef bool (*cb__at_fn)(void *ctx, size_t i, cb_stats *s, uint64_t *retry_ms, char *labels,
                          size_t labels_cap);
#define CB__LABELS_MAX (3 * CB_GROUP_KEY_MAX + 2 * CB__NAME_MAX + 32)

static int cb__prometheus(cb__at_fn at, void *ctx, size_t n, char *buf, size_t cap)
{
    cb__out o = { buf, cap, 0 };
    char nm[CB__LABELS_MAX];
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
            uint64_t retry_ms;
            if (!at(ctx, i, &s, &retry_ms, nm, sizeof nm))
                continue;
            if (f == 0)
                for (unsigned k = 0; k < CB__COUNT_OF(cb__state_names); k++)
                    cb__put(&o, "cb_state{%s,state=\"%s\"} %d\n", nm,
                            cb__state_names[k], s.state == (cb_state)k);
            else if (fam && fam->by_reason)
                for (unsigned r = CB_REJECT_OPEN; r < CB__REJECT_COUNT; r++)
                    cb__put(&o, "%s{%s,reason=\"%s\"} %llu\n", fam->name, nm, cb__reject_names[r],
                            (cb__ull)s.rejected_by[r]);
            else if (fam)
                cb__put(&o, "%s{%s} %llu\n", fam->name, nm, (cb__ull)cb__family_value(&s, fam));
            else
                cb__put(&o, "cb_retry_after_seconds{%s} %.3f\n", nm, (double)retry_ms / 1000.0);
        }
    }
    return cb__done(&o);
}

static bool cb__named(cb_breaker *b, cb_stats *s, uint64_t *retry_ms, char *labels, size_t cap)
{
    char name[2 * CB__NAME_MAX + 1];
    if (!b)
        return false;
    snprintf(labels, cap, "name=\"%s\"", cb__escape(cb_name(b), name));
    cb_stats_get(b, s);
    *retry_ms = cb_retry_after_ms(b);
    return true;
}

static bool cb__array_at(void *ctx, size_t i, cb_stats *s, uint64_t *retry_ms, char *labels,
                         size_t cap)
{
    return cb__named(((cb_breaker *const *)ctx)[i], s, retry_ms, labels, cap);
}

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

/* The slot b was put in (a removed one first), or r->cap when none is free. */
static size_t cb__registry_put(cb_registry *r, cb_breaker *b)
{
    size_t used = atomic_load_explicit(&r->used, memory_order_acquire);
    for (size_t i = 0; i < used; i++) {   /* reuse a removed slot first */
        cb_breaker *none = NULL;
        /* release: pairs with the acquire loads of readers; they see the breaker */
        if (atomic_compare_exchange_strong_explicit(&r->slots[i], &none, b, memory_order_release,
                                                    memory_order_relaxed))
            return i;
    }
    for (;;) {
        used = atomic_load_explicit(&r->used, memory_order_relaxed);
        if (used >= r->cap)
            return r->cap;
        CB_YIELD_POINT();
        /* relaxed: reserving an index; the slot's release CAS publishes the breaker */
        if (atomic_compare_exchange_weak_explicit(&r->used, &used, used + 1, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            cb_breaker *none = NULL;   /* a reuser may have filled it since: then look again */
            if (atomic_compare_exchange_strong_explicit(&r->slots[used], &none, b,
                                                        memory_order_release, memory_order_relaxed))
                return used;
        }
    }
}

/* Names are the exposition's keys: a second breaker of a name already held is refused.
   Put first, then looked for among the others, so that of two adds of one name racing
   at least one sees the other and takes itself out (both may: never both stay). */
CB_API cb_err cb_registry_add(cb_registry *r, cb_breaker *b)
{
    cb__last[0] = 0;
    if (!b)
        return CB_EINVAL;
    size_t at = cb__registry_put(r, b);
    if (at == r->cap)
        return CB_ENOMEM;
    /* seq_cst: each of two racing adds puts, then reads the other's slot; without a full
       fence between, both could read the other's as empty (store buffering) and stay */
    atomic_thread_fence(memory_order_seq_cst);
    size_t used = atomic_load_explicit(&r->used, memory_order_acquire);
    for (size_t i = 0; i < used && i < r->cap; i++) {
        cb_breaker *o = atomic_load_explicit(&r->slots[i], memory_order_acquire);
        if (i != at && o && strcmp(cb_name(o), cb_name(b)) == 0) {
            cb_breaker *mine = b;
            atomic_compare_exchange_strong_explicit(&r->slots[at], &mine, NULL, memory_order_relaxed,
                                                    memory_order_relaxed);
            return cb__bad(NULL, 0, "cb_registry_add: a breaker named '%s' is registered already",
                           cb_name(b));
        }
    }
    return CB_OK;
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

static bool cb__registry_at(void *ctx, size_t i, cb_stats *s, uint64_t *retry_ms, char *labels,
                            size_t cap)
{
    return cb__named(atomic_load_explicit(&((cb_registry *)ctx)->slots[i], memory_order_acquire),
                     s, retry_ms, labels, cap);
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
    atomic_store_explicit(&b->cb__lv->opens, counters, memory_order_relaxed);
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
typedef struct cb__why { const char *path; char *msg; size_t len; bool quiet; } cb__why;

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 3, 4)))
#endif
static cb_err cb__shm_fail(const cb__why *y, cb_err e, const char *fmt, ...)
{
    if (y->quiet)   /* a probe whose failure is no error: nothing to tell */
        return e;
    int n = snprintf(cb__last, sizeof cb__last, "%s: ", y->path);
    size_t at = n > 0 && (size_t)n < sizeof cb__last ? (size_t)n : sizeof cb__last - 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cb__last + at, sizeof cb__last - at, fmt, ap);
    va_end(ap);
    if (y->msg && y->len)
        snprintf(y->msg, y->len, "%s", cb__last);
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

/* Why the file at fd is no breaker's: a group's (the other open function's), or not
   cb.h's at all. */
static cb_err cb__not_breaker(int fd, const cb__why *y, const char *untouched)
{
    uint64_t magic = 0;
    if (pread(fd, &magic, sizeof magic, 0) == (ssize_t)sizeof magic && magic == CB__GROUP_MAGIC)
        return cb__shm_fail(y, CB_EMISMATCH, "a group file, not a breaker file%s", untouched);
    return cb__shm_fail(y, CB_ECORRUPT, "not a breaker file (no cb.h magic number)%s", untouched);
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
        return cb__not_breaker(fd, y, "");
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
    cb_config asked = *c;
    if (!asked.seed)   /* 0 asks for none in particular: the one the file drew */
        memcpy(&asked.seed, &h->cfg.seed, sizeof asked.seed);
    memset(&want, 0, sizeof want);
    cb__block_init(&want, &asked, 0);
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
        return state > 0 ? CB_OK : cb__not_breaker(fd, y, ": left untouched");
    if (!c && (size_t)st.st_size < sizeof(cb__shared))
        return cb__shm_fail(y, CB_ECORRUPT, "truncated: %lld bytes, shorter than a breaker header "
                            "(%zu)", (long long)st.st_size, sizeof(cb__shared));
    if (!c)
        return cb__shm_fail(y, CB_ECORRUPT, "never initialised: its creator died before finishing "
                            "it (the next cb_shm_open with its config finishes it)");
    cb__shared h;
    uint64_t flen;
    const cb__why quiet = { y->path, NULL, 0, true };
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
    cb__live *lv = b->cb__lv;
    const cb__cfg *c = b->cb__config;
    uint64_t now = cb__now(b);
    if (c->window_ms) {
        uint64_t e = now / b->cb__bucket_ns;
        uint64_t seen = atomic_load_explicit(&lv->win_epoch, memory_order_relaxed);
        if ((seen >> 16) > e + c->window_buckets)   /* far ahead: a fresh window */
            cb__buckets_clear(b, now);
    }
    uint64_t w = atomic_load_explicit(&lv->word, memory_order_acquire), ms;
    cb_state s = cb__w_state(w);
    if ((s != CB_OPEN && s != CB_HALF_OPEN) || !cb__time_of(lv, cb__w_gen(w), &ms))
        return;
    uint64_t span = s == CB_OPEN ? c->max_open_ms : c->probe_timeout_ms;
    if (ms <= cb__ceil_ms(now) + span + 1)
        return;
    uint64_t fresh = s == CB_OPEN ? cb__period_ms(c, cb__w_k(w), cb__w_gen(w)) : c->probe_timeout_ms;
    uint64_t cur = (uint64_t)(cb__w_gen(w) & 0xffff) << 48 | ms;
    /* relaxed: the deadline word carries its own tag, see cb__publish_time() */
    atomic_compare_exchange_strong_explicit(&lv->deadline, &cur,
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
    cb_breaker *b = (cb_breaker *)CB_MALLOC(cb__handle_size());
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
    cb__why y = { path, msg, msg_len, false };
    cb_config c;
    char bad[160];
    cb_breaker *b = NULL;
    bool created = false;
    int fd = -1;
    cb_err e = CB_OK;
    cb__last[0] = 0;
    if (msg && msg_len)
        msg[0] = 0;
    if (!path)
        e = cb__bad(msg, msg_len, "cb_shm_open: path is NULL");
    else if (flags & ~(unsigned)CB_SHM_GROUP)
        e = cb__shm_fail(&y, CB_EINVAL, "unknown flags 0x%x", flags & ~(unsigned)CB_SHM_GROUP);
    else if (cfg && cb__resolve(cfg, &c, bad, sizeof bad) != CB_OK)
        e = cb__shm_fail(&y, CB_EINVAL, "%s", bad);
    else if ((fd = cb__shm_fd(&y, cfg != NULL, flags, &created, &e)) >= 0) {
        struct stat st;
        int state = created || fstat(fd, &st) != 0 ? 0 : cb__shm_published(fd, (uint64_t)st.st_size);
        if (state < 0)
            e = cb__not_breaker(fd, &y, ": left untouched");
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
    snprintf(cb__last, sizeof cb__last, "built with CB_NO_SHM: no shared breakers");
    if (msg && msg_len)
        snprintf(msg, msg_len, "%s", cb__last);
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

/* ---- keyed groups ----------------------------------------------------------------

   A group is one position-independent block (caller memory, the heap or one shared file):
   a header, the group's own line, an overflow breaker, `capacity` slots, an index from
   key hashes to slots, a stack of free slots and a ring of recent transitions.

   A slot holds one key's breaker: its cb__live, its counters and its key. Its occupant
   word `seq` is even while a key holds it (seq / 2 numbers the occupant: it grows with
   every reuse) and odd while the slot is free or changing hands. Creation and eviction
   take the group's lock; a call for a held key takes none:
   - lookup: index entry -> slot; seq (acquire), hash, length and key words (acquire),
     seq again: equal and even, or the slot is not the key's (seqlock);
   - the key's handle (cb__key_handle) remembers that seq. Its counters are tagged with
     the occupant (occupant:16 | count:48) and counted by CAS only under that tag, and it
     checks seq before each CAS of the word (cb__word_cas): a caller that found the key
     just before it left never counts on, nor moves the state of, the slot's next key;
   - generations keep growing across occupants, so a ticket of an evicted key is stale
     for every later one; its record is refused by the occupant check and counted in the
     group's `stale`.
   model/group.pml checks this lifecycle (create, look up, evict, reuse). */

#define CB__GROUP_VERSION (1u << 8 | CB__VERSION)   /* the group's own, and its breakers' */
#define CB__GROUP_HISTORY 256u
#define CB__NO_SLOT UINT32_MAX
#define CB__SCAN_PAUSE_MS 10
#define CB__LOCK_TRIES 4096u   /* then a call for a new key goes through the overflow breaker */   /* after a scan found no key to evict, new keys overflow this long */

typedef struct cb__gcfg {            /* the group's fields of the resolved config: plain values */
    uint32_t capacity, key_max, idle_ms, dominant_min_calls, dominant_window_ms, pad;
    double max_open_share, dominant_share;
} cb__gcfg;

/* The group's own line: written on creation, eviction, overflow and trips only. */
typedef struct cb__gline {
    _Alignas(CB_CACHELINE) _Atomic(uint64_t) lock;   /* 0, or pid << 32 | thread token */
    _Atomic(uint64_t) keys, open_keys, created, evicted, overflow, trips_held, stale;
    _Alignas(CB_CACHELINE) _Atomic(uint64_t) free_n;   /* under the lock */
    _Atomic(uint64_t) hand;                           /* eviction scan: where the next one starts */
    _Atomic(uint64_t) tombs;                          /* index tombstones (under the lock) */
    _Atomic(uint64_t) scan_failed_ms;                 /* last scan that found nothing to evict */
    _Atomic(uint64_t) ring_next;                      /* transitions written to the ring */
    _Atomic(uint64_t) dom_next_ms, dom_round;         /* the dominant-share check */
} cb__gline;

typedef struct cb__gshared {
    uint64_t magic;
    uint32_t version, header_size;
    uint64_t total_size, checksum, instance, hash_seed;
    uint64_t overflow_off, slots_off, index_off, free_off, ring_off;
    uint64_t slot_stride, index_len, ring_stride;
    uint64_t off_live, off_key, off_dom, off_win;     /* within a slot */
    cb__cfg tmpl;
    cb__gcfg gcfg;
    _Atomic(uint64_t) ready;
    cb__gline line;
} cb__gshared;

/* A slot's first lines; its cb__live, key words, dominant-share rounds and window follow
   at the offsets in the header. */
typedef struct cb__slot {
    _Atomic(uint64_t) seq;        /* occupant word, see above */
    _Atomic(uint64_t) hash, key_len;
    _Atomic(uint64_t) last_ms;    /* last allow or record, group clock */
    _Atomic(uint64_t) dom;        /* last dominant-share trip: k:16 | ms:48 */
    _Atomic(uint64_t) n[CB__N_COUNT];   /* occupant:16 | count:48 */
} cb__slot;

typedef struct cb__ghist {        /* one transition of a key; the key's words follow */
    _Atomic(uint64_t) seq;        /* n << 2 | 1 being written, n << 2 | 2 complete */
    _Atomic(uint64_t) what, generation, at_ns, open_ms, key_len;
} cb__ghist;

/* The handle: private, like a breaker's, with everything that locates things. */
struct cb_group {
    cb__gshared *sh;
    cb__gline *line;
    cb__cfg tmpl;
    cb__gcfg gcfg;
    char *slots;
    _Atomic(uint64_t) *index;
    _Atomic(uint32_t) *free_stack;
    char *ring;
    uint64_t slot_stride, index_mask, ring_stride, hash_seed, tag_base;
    uint64_t off_live, off_key, off_dom, off_win;
    uint32_t key_words, kind;
    cb_breaker *overflow;         /* a full breaker in the block */
    cb_breaker *proto;            /* the template handle each key's handle copies */
    void *mem;
    size_t map_len;
};

static size_t cb__group_handle_size(void)
{
    return cb__round_up(sizeof(cb_group), CB_CACHELINE) + 2 * cb__handle_size();
}

static cb_err cb__group_resolve(const cb_group_config *in, cb_config *t, cb__gcfg *g, char *msg,
                                size_t len)
{
    if (!in)
        return cb__bad(msg, len, "config: NULL");
    cb_config tc = in->breaker;
    if (!tc.name)
        tc.name = "group";
    cb_err e = cb__resolve(&tc, t, msg, len);
    if (e != CB_OK)
        return e;
    memset(g, 0, sizeof *g);
    g->capacity = in->capacity ? in->capacity : 1024;
    g->key_max = in->key_max ? in->key_max : 64;
    g->idle_ms = in->idle_ms ? in->idle_ms : 600000;
    g->dominant_min_calls = in->dominant_min_calls ? in->dominant_min_calls : 100;
    g->dominant_window_ms = in->dominant_window_ms ? in->dominant_window_ms : 60000;
    g->max_open_share = in->max_open_share;
    g->dominant_share = in->dominant_share;
    if (g->capacity > CB_GROUP_CAPACITY_MAX)
        return cb__bad(msg, len, "capacity: %u is over %u", g->capacity, CB_GROUP_CAPACITY_MAX);
    if (g->key_max > CB_GROUP_KEY_MAX)
        return cb__bad(msg, len, "key_max: %u is over %u", g->key_max, CB_GROUP_KEY_MAX);
    if (!cb__rate_ok(g->max_open_share))
        return cb__bad(msg, len, "max_open_share: %g is not in (0,1]", g->max_open_share);
    if (!cb__rate_ok(g->dominant_share))
        return cb__bad(msg, len, "dominant_share: %g is not in (0,1]", g->dominant_share);
    if (g->dominant_window_ms < 10)
        return cb__bad(msg, len, "dominant_window_ms: %u is under 10 (it is checked every tenth)",
                       g->dominant_window_ms);
    return CB_OK;
}

CB_API cb_err cb_group_config_check(const cb_group_config *cfg, char *msg, size_t msg_len)
{
    cb_config t;
    cb__gcfg g;
    if (msg && msg_len)
        msg[0] = 0;
    return cb__group_resolve(cfg, &t, &g, msg, msg_len);
}

/* The layout a resolved config implies, in h (static fields only). */
static void cb__group_layout(cb__gshared *h, const cb_config *t, const cb__gcfg *g)
{
    memset(h, 0, sizeof *h);
    h->magic = CB__GROUP_MAGIC;
    h->version = CB__GROUP_VERSION;
    h->header_size = (uint32_t)sizeof(cb__gshared);
    cb__cfg_store(&h->tmpl, t);
    h->gcfg = *g;
    size_t keyb = cb__round_up(g->key_max, 8);
    h->off_live = cb__round_up(sizeof(cb__slot), CB_CACHELINE);
    h->off_key = h->off_live + sizeof(cb__live);
    h->off_dom = h->off_key + cb__round_up(keyb, CB_CACHELINE);
    h->off_win = h->off_dom + (g->dominant_share > 0 ? CB_CACHELINE : 0);
    h->slot_stride = h->off_win + cb__round_up(cb__window_bytes(t), CB_CACHELINE);
    uint64_t il = 16;
    while (il < 2ull * g->capacity)
        il <<= 1;
    h->index_len = il;
    h->ring_stride = cb__round_up(sizeof(cb__ghist) + keyb, 8);
    h->overflow_off = cb__round_up(sizeof(cb__gshared), CB_CACHELINE);
    h->slots_off = h->overflow_off + cb__round_up(cb__block_size(t), CB_CACHELINE);
    h->index_off = h->slots_off + h->slot_stride * g->capacity;
    h->free_off = h->index_off + 8 * il;
    h->ring_off = cb__round_up(h->free_off + 4ull * g->capacity, CB_CACHELINE);
    h->total_size = h->ring_off + h->ring_stride * CB__GROUP_HISTORY;
}

CB_API size_t cb_group_size(const cb_group_config *cfg)
{
    cb_config t;
    cb__gcfg g;
    cb__gshared h;
    if (cb__group_resolve(cfg, &t, &g, NULL, 0) != CB_OK)
        return 0;
    cb__group_layout(&h, &t, &g);
    return CB_CACHELINE - 1 + cb__group_handle_size() + h.total_size;
}

static uint64_t cb__group_checksum(const cb__gshared *h)
{
    return cb__fnv(0xcbf29ce484222325ull, h, offsetof(cb__gshared, checksum)) ^
           cb__fnv(0x84222325cbf29ce4ull, &h->instance, offsetof(cb__gshared, ready) -
                                                            offsetof(cb__gshared, instance));
}

/* Initialise a zeroed block; every slot free. */
static void cb__group_block_init(cb__gshared *sh, const cb_config *t, const cb__gcfg *g)
{
    cb_config drawn = *t;   /* one seed for the group's keys and its overflow breaker */
    if (!drawn.seed)
        drawn.seed = cb__random64();
    t = &drawn;
    cb__group_layout(sh, t, g);
    uint64_t now = t->clock_ns ? t->clock_ns(t->clock_user) : cb__mono_ns();
    sh->instance = cb__instance(sh, now);
    sh->hash_seed = cb__random64();
    sh->checksum = cb__group_checksum(sh);
    cb__block_init((cb__shared *)((char *)sh + sh->overflow_off), t, now);
    _Atomic(uint32_t) *fs = (_Atomic(uint32_t) *)((char *)sh + sh->free_off);
    for (uint32_t i = 0; i < g->capacity; i++) {   /* popped from the top: slot 0 first */
        atomic_store_explicit(&fs[i], g->capacity - 1 - i, memory_order_relaxed);
        cb__slot *s = (cb__slot *)((char *)sh + sh->slots_off + sh->slot_stride * i);
        atomic_store_explicit(&s->seq, 1, memory_order_relaxed);   /* free */
        cb__live *lv = (cb__live *)((char *)s + sh->off_live);
        atomic_store_explicit(&lv->word, CB__GONE, memory_order_relaxed);
    }
    atomic_store_explicit(&sh->line.free_n, g->capacity, memory_order_relaxed);
}

/* The private handle of a valid block (its static part already checked or just made). */
static void cb__group_handle_init(cb_group *g, cb__gshared *sh, const cb__gshared *h,
                                  const cb_config *t, uint64_t tag, uint32_t kind)
{
    memset(g, 0, sizeof *g);
    g->sh = sh;
    g->line = &sh->line;
    g->tmpl = h->tmpl;
    g->gcfg = h->gcfg;
    g->slots = (char *)sh + h->slots_off;
    g->index = (_Atomic(uint64_t) *)((char *)sh + h->index_off);
    g->free_stack = (_Atomic(uint32_t) *)((char *)sh + h->free_off);
    g->ring = (char *)sh + h->ring_off;
    g->slot_stride = h->slot_stride;
    g->index_mask = h->index_len - 1;
    g->ring_stride = h->ring_stride;
    g->hash_seed = h->hash_seed;
    /* a key's tickets: group:24 | occupant:17 | slot + 1:23 (see cb__key_handle) */
    g->tag_base = (tag >> 40 ? tag >> 40 : 1) << 40;
    g->off_live = h->off_live;
    g->off_key = h->off_key;
    g->off_dom = h->off_dom;
    g->off_win = h->off_win;
    g->key_words = (uint32_t)(cb__round_up(h->gcfg.key_max, 8) / 8);
    g->kind = kind;
    char *hm = (char *)g + cb__round_up(sizeof(cb_group), CB_CACHELINE);
    g->overflow = (cb_breaker *)hm;
    g->proto = (cb_breaker *)(hm + cb__handle_size());
    cb__shared *ov = (cb__shared *)((char *)sh + h->overflow_off);
    /* the overflow breaker's tickets: slot part 0, so never a key's */
    uint64_t ovt = cb__splitmix(tag ^ ov->instance) << 23;
    cb_config drawn = *t;   /* seed 0 asked: the template's, drawn when the group was made */
    if (!drawn.seed)
        memcpy(&drawn.seed, &h->tmpl.seed, sizeof drawn.seed);
    cb__handle_init(g->overflow, ov, &drawn, ovt ? ovt : 1ull << 23, kind);
    cb__handle_init(g->proto, NULL, &drawn, 0, kind);
    g->proto->cb__group = g;
    g->proto->cb__fast |= CB__F_KEY;
}

CB_API cb_err cb_group_init(void *mem, size_t len, const cb_group_config *cfg, cb_group **out)
{
    cb_config t;
    cb__gcfg gc;
    cb__last[0] = 0;
    cb_err e = cb__group_resolve(cfg, &t, &gc, NULL, 0);
    if (e != CB_OK)
        return e;
    if (!mem || !out || len < cb_group_size(cfg))
        return cb__bad(NULL, 0, "cb_group_init: %s", !mem ? "mem is NULL" : !out ? "out is NULL"
                                                     : "len is below cb_group_size() for this config");
    char *base = (char *)mem + ((CB_CACHELINE - (uintptr_t)mem % CB_CACHELINE) % CB_CACHELINE);
    cb_group *g = (cb_group *)base;
    cb__gshared *sh = (cb__gshared *)(base + cb__group_handle_size());
    cb__gshared h;
    cb__group_layout(&h, &t, &gc);
    memset(sh, 0, h.total_size);
    cb__group_block_init(sh, &t, &gc);
    cb__group_handle_init(g, sh, sh, &t, sh->instance, CB__KIND_INIT);
    atomic_store_explicit(&sh->ready, 1, memory_order_release);
    *out = g;
    return CB_OK;
}

static cb_err cb__init_group(void *mem, size_t len, const void *cfg, void **out)
{
    cb_group *g = NULL;
    cb_err e = cb_group_init(mem, len, (const cb_group_config *)cfg, &g);
    *out = g;
    return e;
}

CB_API cb_group *cb_group_new(const cb_group_config *cfg, cb_err *err)
{
    void *mem = NULL;
    cb__last[0] = 0;
    cb_err e = cb_group_config_check(cfg, NULL, 0);
    cb_group *g = e != CB_OK ? NULL : (cb_group *)cb__new(cb_group_size(cfg), cb__init_group, cfg, &e, &mem);
    if (g) {
        g->kind = CB__KIND_NEW;
        g->mem = mem;
    }
    if (err)
        *err = e;
    return g;
}

CB_API void cb_group_free(cb_group *g)
{
    if (!g)
        return;
    if (g->kind == CB__KIND_NEW)
        CB_FREE(g->mem);
    else if (g->kind == CB__KIND_SHM)
        cb_group_shm_close(g);
}

CB_API void cb_group_config_get(const cb_group *g, cb_group_config *out)
{
    memset(out, 0, sizeof *out);
    cb_config_get(g->overflow, &out->breaker);
#define CB__GGET(type, field, flag, doc) out->field = g->gcfg.field;
    CB__GROUP_CONFIG_FIELDS(CB__GGET)
#undef CB__GGET
}

CB_API cb_breaker *cb_group_overflow(cb_group *g) { return g->overflow; }

/* ---- slots, keys and the index ---- */

static cb__slot *cb__slot_at(const cb_group *g, uint32_t s)
{
    return (cb__slot *)(g->slots + g->slot_stride * s);
}

static _Atomic(uint64_t) *cb__slot_key(const cb_group *g, cb__slot *sl)
{
    return (_Atomic(uint64_t) *)((char *)sl + g->off_key);
}

static uint64_t cb__mix(uint64_t x)
{
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ull;
    return x ^ (x >> 32);
}

/* Seeded per group at creation, so keys from outside cannot be chosen to collide. */
static uint64_t cb__key_hash(const cb_group *g, const char *k, size_t n)
{
    uint64_t h = g->hash_seed ^ (uint64_t)n * 0x9e3779b97f4a7c15ull;
    for (; n >= 8; k += 8, n -= 8) {
        uint64_t v;
        memcpy(&v, k, 8);
        h = cb__mix(h ^ v) + 0x9e3779b97f4a7c15ull;
    }
    uint64_t v = 0;
    memcpy(&v, k, n);
    return cb__mix(h ^ v ^ 0x5bd1e9955bd1e995ull);
}

static uint64_t cb__key_word(const char *k, size_t n, uint32_t i)
{
    uint64_t v = 0;
    size_t at = (size_t)i * 8;
    if (CB__LIKELY(n - at >= 8))
        memcpy(&v, k + at, 8);   /* a whole word: one load */
    else
        memcpy(&v, k + at, n - at);
    return v;
}

/* The key bytes of slot s into out (CB_GROUP_KEY_MAX bytes); its length. */
static size_t cb__slot_key_copy(cb_group *g, uint32_t s, char *out)
{
    cb__slot *sl = cb__slot_at(g, s);
    size_t len = (size_t)atomic_load_explicit(&sl->key_len, memory_order_acquire);
    if (len > g->gcfg.key_max)
        return 0;   /* a damaged file */
    _Atomic(uint64_t) *kw = cb__slot_key(g, sl);
    for (uint32_t i = 0; (size_t)i * 8 < len; i++) {
        uint64_t v = atomic_load_explicit(&kw[i], memory_order_acquire);
        memcpy(out + (size_t)i * 8, &v, len - (size_t)i * 8 < 8 ? len - (size_t)i * 8 : 8);
    }
    return len;
}

static uint64_t cb__occupant_tag(uint64_t seq) { return (seq >> 1 & 0xffffu) << 48; }

/* Does slot s hold the key now? Its occupant word then, or 0 (seqlock read: see above). */
static uint64_t cb__slot_holds(const cb_group *g, uint32_t s, const char *key, size_t len,
                               uint64_t h)
{
    cb__slot *sl = cb__slot_at(g, s);
    /* acquire: pairs with the release stores of the creator; the loads below are acquire
       too, so a value of the next occupant is seen with its odd mark and the re-check fails */
    uint64_t q = atomic_load_explicit(&sl->seq, memory_order_acquire);
    if ((q & 1) || atomic_load_explicit(&sl->hash, memory_order_acquire) != h ||
        atomic_load_explicit(&sl->key_len, memory_order_acquire) != len)
        return 0;
    _Atomic(uint64_t) *kw = cb__slot_key(g, sl);
    for (uint32_t i = 0; (size_t)i * 8 < len; i++)
        if (atomic_load_explicit(&kw[i], memory_order_acquire) != cb__key_word(key, len, i))
            return 0;
    return atomic_load_explicit(&sl->seq, memory_order_relaxed) == q ? q : 0;
}

static uint64_t cb__index_entry(uint64_t h, uint32_t s) { return (h >> 32) << 32 | (uint64_t)(s + 2); }

/* The slot holding the key, with its occupant word in *seq, or CB__NO_SLOT. No lock. */
static uint32_t cb__group_find(const cb_group *g, const char *key, size_t len, uint64_t h,
                               uint64_t *seq)
{
    uint64_t i = h & g->index_mask;
    for (uint64_t n = 0; n <= g->index_mask; n++, i = (i + 1) & g->index_mask) {
        /* acquire: pairs with the release store that published the entry */
        uint64_t e = atomic_load_explicit(&g->index[i], memory_order_acquire);
        if (e == 0)
            return CB__NO_SLOT;
        uint32_t s = (uint32_t)e - 2;
        if (e == 1 || e >> 32 != h >> 32 || s >= g->gcfg.capacity)
            continue;   /* a tombstone, another hash, or an entry a damaged file made up */
        if ((*seq = cb__slot_holds(g, s, key, len, h)) != 0)
            return s;
    }
    return CB__NO_SLOT;
}

/* The handle of the key in slot s, found there with occupant word seq: a copy of the
   template's, aimed at the slot. Made on the caller's stack for each call. */
static void cb__key_handle(cb_group *g, uint32_t s, uint64_t seq, const char *key, size_t len,
                           cb_breaker *kh)
{
    cb__slot *sl = cb__slot_at(g, s);
    *kh = *g->proto;
    cb__live *lv = (cb__live *)((char *)sl + g->off_live);
    kh->cb__lv = lv;
    kh->cb__word = &lv->word;
    kh->cb__consec = &lv->consec;
    kh->cb__win_count = lv->win_count;
    kh->cb__window = (char *)sl + g->off_win;
    kh->cb__key_n = sl->n;
    kh->cb__seq = &sl->seq;
    kh->cb__seq_seen = seq;
    kh->cb__key = key;
    kh->cb__key_len = (uint32_t)len;
    kh->cb__slot = s;
    kh->cb__tag = g->tag_base | (seq >> 1 & 0x1ffffu) << 23 | (s + 1);
}

/* Add delta to a count of the key (occupant:16 | count:48), only while the slot's occupant
   is the handle's: 1 when added, 0 when the count stays (+1 at `below` or more, saturated,
   -1 at 0), -1 when the slot has another key (nothing counted on it). */
static int cb__key_add(cb_breaker *b, _Atomic(uint64_t) *word, int delta, uint64_t below)
{
    uint64_t tag = cb__occupant_tag(b->cb__seq_seen);
    uint64_t v = atomic_load_explicit(word, memory_order_relaxed);
    for (uint32_t tries = 0; tries < CB__TRIES; tries++) {
        uint64_t n = v & CB__COUNT_MASK;
        if ((v & ~CB__COUNT_MASK) != tag) {
            b->cb__lost |= CB__LOST_COUNT;
            return -1;
        }
        if (delta > 0 ? n >= below || n == CB__COUNT_MASK : n == 0)
            return 0;
        CB_YIELD_POINT();
        /* relaxed: counts alone, as the stripes; the tag makes it the key's own */
        if (atomic_compare_exchange_weak_explicit(word, &v, delta > 0 ? v + 1 : v - 1,
                                                  memory_order_relaxed, memory_order_relaxed))
            return 1;
    }
    return 0;
}

CB_API void cb__key_count(cb_breaker *b, unsigned i)
{
    cb__key_add(b, &b->cb__key_n[i], 1, UINT64_MAX);
}

static void cb__key_sum(const cb_breaker *b, uint64_t n[CB__N_COUNT])
{
    uint64_t tag = cb__occupant_tag(b->cb__seq_seen);
    for (unsigned j = 0; j < CB__N_COUNT; j++) {
        uint64_t v = atomic_load_explicit(&b->cb__key_n[j], memory_order_relaxed);
        n[j] = (v & ~CB__COUNT_MASK) == tag ? v & CB__COUNT_MASK : 0;
    }
}

static uint64_t cb__group_ms(const cb_group *g)
{
    const cb_breaker *p = g->proto;
    return (p->cb__clock_ns ? p->cb__clock_ns(p->cb__clock_user) : cb__coarse_ns()) / CB__MS;
}

static void cb__touch(cb__slot *sl, uint64_t now_ms)
{
    /* relaxed: a hint for eviction; unchanged within a ms is not written again */
    if (atomic_load_explicit(&sl->last_ms, memory_order_relaxed) != now_ms)
        atomic_store_explicit(&sl->last_ms, now_ms, memory_order_relaxed);
}

static void cb__add1(_Atomic(uint64_t) *c) { atomic_fetch_add_explicit(c, 1, memory_order_relaxed); }

static void cb__sub1_floor(_Atomic(uint64_t) *c)   /* never below 0, whatever a file says */
{
    uint64_t v = atomic_load_explicit(c, memory_order_relaxed);
    for (uint32_t tries = 0; v && tries < CB__TRIES; tries++)
        if (atomic_compare_exchange_weak_explicit(c, &v, v - 1, memory_order_relaxed,
                                                  memory_order_relaxed))
            return;
}

/* ---- the lock: creation and eviction only ---- */

static bool cb__group_lock(cb_group *g)
{
    uint64_t me = cb__thread_token();
    for (uint32_t tries = 0; tries < CB__LOCK_TRIES; tries++) {
        uint64_t o = 0;
        /* acquire: pairs with the release in cb__group_unlock; the holder's slot and index
           writes are seen by the next holder */
        if (atomic_compare_exchange_strong_explicit(&g->line->lock, &o, me, memory_order_acquire,
                                                    memory_order_relaxed))
            return true;
        if (cb__pid_dead(o) &&   /* its holder died: take it over */
            atomic_compare_exchange_strong_explicit(&g->line->lock, &o, me, memory_order_acquire,
                                                    memory_order_relaxed))
            return true;
        if (tries >= 64)
            sched_yield();
    }
    return false;   /* held this long by a live process: the call goes through the overflow breaker */
}

static void cb__group_unlock(cb_group *g)
{
    atomic_store_explicit(&g->line->lock, 0, memory_order_release);
}

static void cb__index_put(cb_group *g, uint64_t h, uint32_t s)
{
    uint64_t i = h & g->index_mask;
    for (uint64_t n = 0; n <= g->index_mask; n++, i = (i + 1) & g->index_mask) {
        uint64_t e = atomic_load_explicit(&g->index[i], memory_order_relaxed);
        if (e <= 1) {
            if (e == 1)
                cb__sub1_floor(&g->line->tombs);
            /* release: the slot was published before; a finder sees it complete */
            atomic_store_explicit(&g->index[i], cb__index_entry(h, s), memory_order_release);
            return;
        }
    }
}

/* Under the lock, when tombstones fill a quarter of the index (a lookup of a key not held
   runs to an empty entry): the index again from the slots. A finder without the lock may
   miss a key meanwhile; a miss always looks again under the lock, so it only waits. */
static void cb__index_rebuild(cb_group *g)
{
    for (uint64_t i = 0; i <= g->index_mask; i++)
        atomic_store_explicit(&g->index[i], 0, memory_order_release);
    atomic_store_explicit(&g->line->tombs, 0, memory_order_relaxed);
    for (uint32_t s = 0; s < g->gcfg.capacity; s++) {
        cb__slot *sl = cb__slot_at(g, s);
        if (!(atomic_load_explicit(&sl->seq, memory_order_relaxed) & 1))
            cb__index_put(g, atomic_load_explicit(&sl->hash, memory_order_relaxed), s);
    }
}

static void cb__index_drop(cb_group *g, uint64_t h, uint32_t s)
{
    uint64_t i = h & g->index_mask, want = cb__index_entry(h, s);
    for (uint64_t n = 0; n <= g->index_mask; n++, i = (i + 1) & g->index_mask) {
        uint64_t e = atomic_load_explicit(&g->index[i], memory_order_relaxed);
        if (e == 0)
            return;
        if (e != want)
            continue;
        /* a tombstone keeps the probe runs behind it whole; a tombstone at the end of a
           run is not needed, nor are those before it */
        uint64_t next = atomic_load_explicit(&g->index[(i + 1) & g->index_mask], memory_order_relaxed);
        atomic_store_explicit(&g->index[i], next == 0 ? 0 : 1, memory_order_release);
        if (next != 0)
            cb__add1(&g->line->tombs);
        for (uint64_t j = (i - 1) & g->index_mask; next == 0 &&
             atomic_load_explicit(&g->index[j], memory_order_relaxed) == 1; j = (j - 1) & g->index_mask) {
            atomic_store_explicit(&g->index[j], 0, memory_order_release);
            cb__sub1_floor(&g->line->tombs);
        }
        if (atomic_load_explicit(&g->line->tombs, memory_order_relaxed) > (g->index_mask + 1) / 4)
            cb__index_rebuild(g);
        return;
    }
}

static bool cb__open_state(cb_state s) { return s == CB_OPEN || s == CB_HALF_OPEN || s == CB_FORCED_OPEN; }

/* May the held key in slot s go? Only what forgetting it would not change (docs/groups.md). */
static bool cb__evictable(cb_group *g, uint32_t s, uint64_t seq, uint64_t now_ms, uint64_t *w)
{
    cb__slot *sl = cb__slot_at(g, s);
    uint64_t last = atomic_load_explicit(&sl->last_ms, memory_order_relaxed);
    if (now_ms < last || now_ms - last < g->gcfg.idle_ms)
        return false;
    cb_breaker kh;
    cb__key_handle(g, s, seq, NULL, 0, &kh);
    *w = atomic_load_explicit(kh.cb__word, memory_order_acquire);
    uint32_t gen = cb__w_gen(*w);
    uint64_t ms;
    switch (cb__w_state(*w)) {
    case CB_CLOSED: {
        if (cb__tagged_get(&kh.cb__lv->consec, gen) != 0)
            return false;
        cb__figures f;
        cb__window_figures(&kh, *w, &f);
        return f.failures == 0 && f.slow == 0;
    }
    case CB_OPEN:
    case CB_HALF_OPEN:
        return cb__time_of(kh.cb__lv, gen, &ms) && now_ms >= ms;
    default:
        return false;   /* manual states stay */
    }
}

/* Evict the key in slot s (under the lock): its word moves to GONE in the next
   generation, so its tickets are stale and its callers see it gone. */
static bool cb__evict(cb_group *g, uint32_t s, uint64_t seq, uint64_t w)
{
    cb__slot *sl = cb__slot_at(g, s);
    cb__live *lv = (cb__live *)((char *)sl + g->off_live);
    /* seq_cst: the odd mark is in place before the word moves (cb__word_cas reads them in
       the other order) */
    atomic_store_explicit(&sl->seq, seq + 1, memory_order_seq_cst);
    uint64_t gone = cb__w_make((cb_state)CB__GONE, 0, 0, 0, cb__w_gen(w) + 1);
    if (!atomic_compare_exchange_strong_explicit(&lv->word, &w, gone, memory_order_acq_rel,
                                                 memory_order_acquire)) {
        atomic_store_explicit(&sl->seq, seq, memory_order_release);   /* it moved: it stays */
        return false;
    }
    cb__index_drop(g, atomic_load_explicit(&sl->hash, memory_order_relaxed), s);
    if (cb__open_state(cb__w_state(w)))
        cb__sub1_floor(&g->line->open_keys);
    cb__sub1_floor(&g->line->keys);
    cb__add1(&g->line->evicted);
    return true;
}

static void cb__free_push(cb_group *g, uint32_t s)
{
    uint64_t n = atomic_load_explicit(&g->line->free_n, memory_order_relaxed);
    if (n < g->gcfg.capacity) {
        atomic_store_explicit(&g->free_stack[n], s, memory_order_relaxed);
        atomic_store_explicit(&g->line->free_n, n + 1, memory_order_relaxed);
    }
}

/* A free slot (under the lock): from the stack, else the first evictable key from the hand on. */
static uint32_t cb__place(cb_group *g, uint64_t now_ms)
{
    cb__gline *ln = g->line;
    uint32_t cap = g->gcfg.capacity;
    for (uint64_t n = atomic_load_explicit(&ln->free_n, memory_order_relaxed); n > 0;) {
        n = n > cap ? cap : n;
        atomic_store_explicit(&ln->free_n, n - 1, memory_order_relaxed);
        uint32_t s = atomic_load_explicit(&g->free_stack[n - 1], memory_order_relaxed);
        if (s < cap && (atomic_load_explicit(&cb__slot_at(g, s)->seq, memory_order_relaxed) & 1))
            return s;
        n--;   /* damaged entry: skip it */
    }
    uint64_t failed = atomic_load_explicit(&ln->scan_failed_ms, memory_order_relaxed);
    if (failed && now_ms >= failed && now_ms - failed < CB__SCAN_PAUSE_MS)
        return CB__NO_SLOT;
    uint64_t hand = atomic_load_explicit(&ln->hand, memory_order_relaxed);
    for (uint32_t i = 0; i < cap; i++) {
        uint32_t s = (uint32_t)((hand + i) % cap);
        uint64_t seq = atomic_load_explicit(&cb__slot_at(g, s)->seq, memory_order_acquire), w;
        if (!(seq & 1) && cb__evictable(g, s, seq, now_ms, &w) && cb__evict(g, s, seq, w)) {
            atomic_store_explicit(&ln->hand, s + 1, memory_order_relaxed);
            return s;
        }
    }
    atomic_store_explicit(&ln->scan_failed_ms, now_ms ? now_ms : 1, memory_order_relaxed);
    return CB__NO_SLOT;
}

/* Put the key in free slot s (under the lock), continuing its generations. */
static uint64_t cb__occupy(cb_group *g, uint32_t s, const char *key, size_t len, uint64_t h,
                           uint64_t now_ms)
{
    cb__slot *sl = cb__slot_at(g, s);
    uint64_t seq = (atomic_load_explicit(&sl->seq, memory_order_relaxed) | 1) + 1;
    cb__live *lv = (cb__live *)((char *)sl + g->off_live);
    uint32_t gen = cb__w_gen(atomic_load_explicit(&lv->word, memory_order_relaxed)) + 1;
    /* release (each): a finder that sees one of these sees the odd mark before them */
    atomic_store_explicit(&sl->hash, h, memory_order_release);
    atomic_store_explicit(&sl->key_len, len, memory_order_release);
    _Atomic(uint64_t) *kw = cb__slot_key(g, sl);
    for (uint32_t i = 0; i < g->key_words; i++)
        atomic_store_explicit(&kw[i], (size_t)i * 8 < len ? cb__key_word(key, len, i) : 0,
                              memory_order_release);
    for (unsigned j = 0; j < CB__N_COUNT; j++)
        atomic_store_explicit(&sl->n[j], cb__occupant_tag(seq), memory_order_release);
    atomic_store_explicit(&sl->last_ms, now_ms, memory_order_relaxed);
    atomic_store_explicit(&sl->dom, 0, memory_order_relaxed);
    if (g->off_dom != g->off_win) {
        _Atomic(uint32_t) *rounds = (_Atomic(uint32_t) *)((char *)sl + g->off_dom);
        for (unsigned r = 0; r < 10; r++)
            atomic_store_explicit(&rounds[r], 0, memory_order_relaxed);
    }
    /* the breaker: CLOSED, a fresh run and window, in the slot's next generation */
    atomic_store_explicit(&lv->deadline, 0, memory_order_relaxed);
    atomic_store_explicit(&lv->opens, cb__occupant_tag(seq), memory_order_relaxed);
    atomic_store_explicit(&lv->consec, 0, memory_order_relaxed);
    atomic_store_explicit(&lv->last_failure_ns, 0, memory_order_relaxed);
    atomic_store_explicit(&lv->in_flight, cb__occupant_tag(seq), memory_order_relaxed);
    atomic_store_explicit(&lv->word, cb__w_make(CB_CLOSED, 0, 0, 0, gen), memory_order_release);
    cb__publish_time(lv, gen, now_ms);
    cb_breaker kh;
    cb__key_handle(g, s, seq, key, len, &kh);
    if (g->tmpl.window_ms)
        cb__buckets_clear(&kh, cb__now(&kh));
    /* release: pairs with the finder's acquire load of seq */
    atomic_store_explicit(&sl->seq, seq, memory_order_release);
    cb__index_put(g, h, s);
    cb__add1(&g->line->keys);
    cb__add1(&g->line->created);
    return seq;
}

/* The slot of the key, made if it is new and a place can be had; CB__NO_SLOT otherwise. */
static uint32_t cb__group_hold(cb_group *g, const char *key, size_t len, uint64_t h,
                               uint64_t now_ms, uint64_t *seq)
{
    uint32_t s = cb__group_find(g, key, len, h, seq);
    if (s != CB__NO_SLOT || !cb__group_lock(g))
        return s;
    s = cb__group_find(g, key, len, h, seq);   /* made meanwhile by another caller? */
    if (s == CB__NO_SLOT && (s = cb__place(g, now_ms)) != CB__NO_SLOT)
        *seq = cb__occupy(g, s, key, len, h, now_ms);
    cb__group_unlock(g);
    return s;
}

/* Does slot s still hold the key found there with occupant word seq? */
static bool cb__still(const cb_group *g, uint32_t s, uint64_t seq)
{
    return atomic_load_explicit(&cb__slot_at(g, s)->seq, memory_order_acquire) == seq;
}

static bool cb__key_ok(const cb_group *g, const char *key, size_t len)
{
    return key && len > 0 && len <= g->gcfg.key_max;
}

/* ---- open keys: the max_open_share cap ---- */

/* Before a key's word moves: 1 if the move opens it (a place among the open keys taken),
   0 if it does not, -1 if max_open_share holds a trip back. */
static int cb__group_open_take(cb_breaker *b, uint64_t from, uint64_t to, cb_reason why)
{
    cb_group *g = b->cb__group;
    if (cb__open_state(cb__w_state(from)) || !cb__open_state(cb__w_state(to)))
        return 0;
    _Atomic(uint64_t) *open = &g->line->open_keys;
    if (why == CB_REASON_MANUAL || g->gcfg.max_open_share <= 0) {
        cb__add1(open);
        return 1;
    }
    uint64_t keys = atomic_load_explicit(&g->line->keys, memory_order_relaxed);
    uint64_t cap = (uint64_t)(g->gcfg.max_open_share * (double)keys);
    cap = cap < 1 ? 1 : cap;
    uint64_t cur = atomic_load_explicit(open, memory_order_relaxed);
    for (uint32_t tries = 0; tries < CB__TRIES; tries++) {
        if (cur >= cap)
            break;
        /* relaxed: a count; the place is taken before the word moves, given back if not */
        if (atomic_compare_exchange_weak_explicit(open, &cur, cur + 1, memory_order_relaxed,
                                                  memory_order_relaxed))
            return 1;
    }
    cb__add1(&g->line->trips_held);
    return -1;
}

static void cb__group_open_settle(cb_breaker *b, int taken, uint64_t from, uint64_t to, bool moved)
{
    cb_group *g = b->cb__group;
    if ((taken == 1 && !moved) ||
        (moved && cb__open_state(cb__w_state(from)) && !cb__open_state(cb__w_state(to))))
        cb__sub1_floor(&g->line->open_keys);
}

/* ---- the ring of transitions ---- */

static void cb__group_history_write(cb_group *g, const cb_event *ev)
{
    uint64_t n = atomic_fetch_add_explicit(&g->line->ring_next, 1, memory_order_relaxed);
    cb__ghist *h = (cb__ghist *)(g->ring + g->ring_stride * (n % CB__GROUP_HISTORY));
    uint64_t cur = atomic_load_explicit(&h->seq, memory_order_relaxed);
    if ((cur & 3) == 1 || (cur && (cur >> 2) > n) ||
        !atomic_compare_exchange_strong_explicit(&h->seq, &cur, n << 2 | 1, memory_order_relaxed,
                                                 memory_order_relaxed))
        return;   /* a writer a whole ring late holds it, or a newer entry is there: drop ours */
    size_t len = ev->key && ev->key_len <= g->gcfg.key_max ? ev->key_len : 0;
    /* release (each): as in cb__history_write */
    atomic_store_explicit(&h->what, (uint64_t)ev->from | (uint64_t)ev->to << 8 |
                          (uint64_t)ev->reason << 16, memory_order_release);
    atomic_store_explicit(&h->generation, ev->generation, memory_order_release);
    atomic_store_explicit(&h->at_ns, ev->at_ns, memory_order_release);
    atomic_store_explicit(&h->open_ms, ev->open_ms, memory_order_release);
    atomic_store_explicit(&h->key_len, len, memory_order_release);
    _Atomic(uint64_t) *kw = (_Atomic(uint64_t) *)(h + 1);
    for (uint32_t i = 0; (size_t)i * 8 < len; i++)
        atomic_store_explicit(&kw[i], cb__key_word(ev->key, len, i), memory_order_release);
    atomic_store_explicit(&h->seq, n << 2 | 2, memory_order_release);
}

CB_API size_t cb_group_history(cb_group *g, cb_event *out, size_t max, char *key_buf,
                               size_t key_buf_len)
{
    uint32_t km = g->gcfg.key_max;
    if (km && key_buf_len / km < max)
        max = key_buf_len / km;
    uint64_t end = atomic_load_explicit(&g->line->ring_next, memory_order_acquire);
    uint64_t first = end > CB__GROUP_HISTORY ? end - CB__GROUP_HISTORY : 0;
    if (end - first > max)
        first = end - max;
    size_t got = 0;
    for (uint64_t n = first; n < end; n++) {
        cb__ghist *h = (cb__ghist *)(g->ring + g->ring_stride * (n % CB__GROUP_HISTORY));
        uint64_t s1 = atomic_load_explicit(&h->seq, memory_order_acquire);
        if (s1 != (n << 2 | 2))
            continue;
        cb_event ev;
        memset(&ev, 0, sizeof ev);
        uint64_t what = atomic_load_explicit(&h->what, memory_order_acquire);
        ev.generation = atomic_load_explicit(&h->generation, memory_order_acquire);
        ev.at_ns = atomic_load_explicit(&h->at_ns, memory_order_acquire);
        ev.open_ms = atomic_load_explicit(&h->open_ms, memory_order_acquire);
        uint64_t len = atomic_load_explicit(&h->key_len, memory_order_acquire);
        char *kb = key_buf + (size_t)got * km;
        _Atomic(uint64_t) *kw = (_Atomic(uint64_t) *)(h + 1);
        len = len > km ? 0 : len;
        for (uint32_t i = 0; (size_t)i * 8 < len; i++) {
            uint64_t v = atomic_load_explicit(&kw[i], memory_order_acquire);
            memcpy(kb + (size_t)i * 8, &v, len - (size_t)i * 8 < 8 ? len - (size_t)i * 8 : 8);
        }
        if (atomic_load_explicit(&h->seq, memory_order_relaxed) != s1)
            continue;
        unsigned from = what & 0xff, to = (what >> 8) & 0xff, why = (what >> 16) & 0xff;
        if (from >= CB__COUNT_OF(cb__state_names) || to >= CB__COUNT_OF(cb__state_names) ||
            why >= CB__COUNT_OF(cb__reason_names))
            continue;
        ev.name = g->tmpl.name;
        ev.from = (cb_state)from;
        ev.to = (cb_state)to;
        ev.reason = (cb_reason)why;
        ev.key = kb;
        ev.key_len = (size_t)len;
        out[got++] = ev;
    }
    return got;
}

/* ---- the dominant share: checked on callers' calls, every tenth of its window ---- */

static uint32_t cb__key_admitted(const cb_group *g, cb__slot *sl, uint64_t seq)
{
    uint64_t v = atomic_load_explicit(&sl->n[CB__N_ADMITTED], memory_order_relaxed);
    (void)g;
    return (v & ~CB__COUNT_MASK) == cb__occupant_tag(seq) ? (uint32_t)v : 0;
}

static void cb__dominant_trip(cb_group *g, uint32_t s, uint64_t seq, uint64_t now_ms)
{
    cb__slot *sl = cb__slot_at(g, s);
    char key[CB_GROUP_KEY_MAX];
    size_t len = cb__slot_key_copy(g, s, key);
    cb_breaker kh;
    cb__key_handle(g, s, seq, key, len, &kh);
    uint64_t w = atomic_load_explicit(kh.cb__word, memory_order_acquire);
    if (cb__w_state(w) != CB_CLOSED)
        return;
    /* backoff across dominant trips: each within a window of the last one goes a step up */
    uint64_t d = atomic_load_explicit(&sl->dom, memory_order_relaxed);
    uint32_t k = d && now_ms - (d & CB__MS_MASK) <= 2ull * g->gcfg.dominant_window_ms +
                                                      cb__period_ms(&g->tmpl, (uint32_t)(d >> 48), 0)
                     ? cb__next_k(&g->tmpl, (uint32_t)(d >> 48)) : 0;
    if (cb__transition(&kh, &w, cb__w_next(w, CB_OPEN, k), CB_REASON_DOMINANT_SHARE, cb__now(&kh)))
        atomic_store_explicit(&sl->dom, (uint64_t)k << 48 | (now_ms & CB__MS_MASK), memory_order_relaxed);
}

static void cb__dominance(cb_group *g, uint64_t now_ms)
{
    cb__gline *ln = g->line;
    uint64_t due = atomic_load_explicit(&ln->dom_next_ms, memory_order_relaxed);
    uint64_t every = g->gcfg.dominant_window_ms / 10;
    /* relaxed: elects one checker per round; the figures it reads are counts */
    if (now_ms < due || !atomic_compare_exchange_strong_explicit(&ln->dom_next_ms, &due, now_ms + every,
                                                                 memory_order_relaxed, memory_order_relaxed))
        return;
    uint64_t round = atomic_fetch_add_explicit(&ln->dom_round, 1, memory_order_relaxed) % 10;
    uint64_t total = 0;
    for (uint32_t pass = 0; pass < 2; pass++) {
        for (uint32_t s = 0; s < g->gcfg.capacity; s++) {
            cb__slot *sl = cb__slot_at(g, s);
            uint64_t seq = atomic_load_explicit(&sl->seq, memory_order_acquire);
            if (seq & 1)
                continue;
            _Atomic(uint32_t) *rounds = (_Atomic(uint32_t) *)((char *)sl + g->off_dom);
            uint32_t now_n = cb__key_admitted(g, sl, seq);
            uint32_t recent = now_n - atomic_load_explicit(&rounds[round], memory_order_relaxed);
            if (pass == 0) {
                total += recent;
                continue;
            }
            atomic_store_explicit(&rounds[round], now_n, memory_order_relaxed);
            if (total >= g->gcfg.dominant_min_calls && recent > 0 &&
                (double)recent >= g->gcfg.dominant_share * (double)total)
                cb__dominant_trip(g, s, seq, now_ms);
        }
    }
}

/* ---- calls ---- */

static bool cb__overflow_allow(cb_group *g, cb_ticket *t)
{
    cb__add1(&g->line->overflow);
    return cb_allow(g->overflow, t);
}

CB_API bool cb_group_allow(cb_group *g, const char *key, size_t key_len, cb_ticket *t)
{
    if (!g || !t)
        return false;
    if (!cb__key_ok(g, key, key_len))
        return cb__overflow_allow(g, t);
    uint64_t h = cb__key_hash(g, key, key_len), now_ms = cb__group_ms(g), seq = 0;
    for (int tries = 0; tries < 4; tries++) {
        uint32_t s = cb__group_hold(g, key, key_len, h, now_ms, &seq);
        if (s == CB__NO_SLOT)
            break;
        cb_breaker kh;
        cb__key_handle(g, s, seq, key, key_len, &kh);
        cb__touch(cb__slot_at(g, s), now_ms);
        bool ok = cb_allow(&kh, t);
        if (kh.cb__lost || (!ok && !cb__still(g, s, seq)))
            continue;   /* the key left the slot meanwhile: not refused by its breaker; look again */
        if (g->gcfg.dominant_share > 0)
            cb__dominance(g, now_ms);
        return ok;
    }
    return cb__overflow_allow(g, t);
}

CB_API bool cb_group_record(cb_group *g, const cb_ticket *t, cb_outcome o)
{
    if (!g || !t || !t->cb__owner)
        return false;
    if (t->cb__owner == g->overflow->cb__tag)
        return cb_record(g->overflow, t, o);
    uint64_t x = t->cb__owner;
    uint32_t s = (uint32_t)(x & 0x7fffffu) - 1;
    if (x >> 40 != g->tag_base >> 40 || (x & 0x7fffffu) == 0 || s >= g->gcfg.capacity)
        return false;   /* not a ticket of this group */
    cb__slot *sl = cb__slot_at(g, s);
    uint64_t seq = atomic_load_explicit(&sl->seq, memory_order_acquire);
    bool valid = (t->cb__flags & CB__T_ADMITTED) && (unsigned)o <= CB_IGNORED;
    if ((seq >> 1 & 0x1ffffu) != (x >> 23 & 0x1ffffu)) {
        if (!valid)
            return false;   /* a refused ticket, or no outcome: nothing counts */
        cb__spend(t);   /* its key was evicted: stale, once */
        cb__add1(&g->line->stale);
        return false;
    }
    /* an odd word of the ticket's own occupant is an eviction under way, which may yet be
       called off (the word moved): the record goes on to the word, whose generation says
       whether it counts (model/group.pml found the record that went stale here while the
       key stayed) */
    cb_breaker kh;
    cb__key_handle(g, s, seq & ~1ull, NULL, 0, &kh);
    cb__touch(sl, cb__group_ms(g));
    bool ok = cb_record(&kh, t, o);
    if ((kh.cb__lost & CB__LOST_COUNT) ||
        (!ok && valid &&
         cb__w_state(atomic_load_explicit(kh.cb__word, memory_order_acquire)) == (cb_state)CB__GONE)) {
        cb__add1(&g->line->stale);   /* evicted during the record: stale in the group */
        return false;
    }
    return ok;
}

CB_API cb_state cb_group_get_state(cb_group *g, const char *key, size_t key_len)
{
    uint64_t seq;
    if (!g || !cb__key_ok(g, key, key_len))
        return CB_CLOSED;
    uint32_t s = cb__group_find(g, key, key_len, cb__key_hash(g, key, key_len), &seq);
    if (s == CB__NO_SLOT)
        return CB_CLOSED;
    cb__live *lv = (cb__live *)((char *)cb__slot_at(g, s) + g->off_live);
    cb_state st = cb__w_state(atomic_load_explicit(&lv->word, memory_order_acquire));
    return st > CB_METRICS_ONLY ? CB_CLOSED : st;   /* evicted meanwhile: not held */
}

CB_API cb_err cb_group_set_state(cb_group *g, const char *key, size_t key_len, cb_state s)
{
    if (!g || !cb__key_ok(g, key, key_len) || (unsigned)s > CB_METRICS_ONLY)
        return CB_EINVAL;
    uint64_t h = cb__key_hash(g, key, key_len), now_ms = cb__group_ms(g), seq;
    for (int tries = 0; tries < 4; tries++) {
        uint32_t slot = cb__group_hold(g, key, key_len, h, now_ms, &seq);
        if (slot == CB__NO_SLOT)
            return CB_ENOMEM;
        cb_breaker kh;
        cb__key_handle(g, slot, seq, key, key_len, &kh);
        cb__touch(cb__slot_at(g, slot), now_ms);
        cb_err e = cb_set_state(&kh, s);
        if (!kh.cb__lost)
            return e;
    }
    return CB_ENOMEM;
}

/* Stats of the key in slot s with occupant seq, if it still holds it after reading them. */
static bool cb__slot_stats(cb_group *g, uint32_t s, uint64_t seq, cb_stats *st)
{
    cb_breaker kh;
    cb__key_handle(g, s, seq, NULL, 0, &kh);
    cb_stats_get(&kh, st);
    return atomic_load_explicit(&cb__slot_at(g, s)->seq, memory_order_acquire) == seq &&
           st->state <= CB_METRICS_ONLY;
}

CB_API bool cb_group_key_stats(cb_group *g, const char *key, size_t key_len, cb_stats *st)
{
    uint64_t seq;
    if (!g || !st || !cb__key_ok(g, key, key_len))
        return false;
    uint32_t s = cb__group_find(g, key, key_len, cb__key_hash(g, key, key_len), &seq);
    return s != CB__NO_SLOT && cb__slot_stats(g, s, seq, st);
}

CB_API size_t cb_group_prune(cb_group *g)
{
    if (!g || !cb__group_lock(g))
        return 0;
    uint64_t now_ms = cb__group_ms(g), w;
    size_t n = 0;
    for (uint32_t s = 0; s < g->gcfg.capacity; s++) {
        uint64_t seq = atomic_load_explicit(&cb__slot_at(g, s)->seq, memory_order_acquire);
        if (!(seq & 1) && cb__evictable(g, s, seq, now_ms, &w) && cb__evict(g, s, seq, w)) {
            cb__free_push(g, s);
            n++;
        }
    }
    atomic_store_explicit(&g->line->scan_failed_ms, 0, memory_order_relaxed);
    cb__group_unlock(g);
    return n;
}

CB_API void cb_group_stats_get(cb_group *g, cb_group_stats *s)
{
    cb__gline *ln = g->line;
    s->keys = atomic_load_explicit(&ln->keys, memory_order_relaxed);
    s->open_keys = atomic_load_explicit(&ln->open_keys, memory_order_relaxed);
    s->created = atomic_load_explicit(&ln->created, memory_order_relaxed);
    s->evicted = atomic_load_explicit(&ln->evicted, memory_order_relaxed);
    s->overflow = atomic_load_explicit(&ln->overflow, memory_order_relaxed);
    s->trips_held = atomic_load_explicit(&ln->trips_held, memory_order_relaxed);
    s->stale = atomic_load_explicit(&ln->stale, memory_order_relaxed);
}

CB_API size_t cb_group_each(cb_group *g, bool (*fn)(const char *key, size_t key_len,
                                                     const cb_stats *s, void *user), void *user)
{
    char key[CB_GROUP_KEY_MAX];
    size_t n = 0;
    for (uint32_t s = 0; s < g->gcfg.capacity; s++) {
        cb__slot *sl = cb__slot_at(g, s);
        uint64_t seq = atomic_load_explicit(&sl->seq, memory_order_acquire);
        if (seq & 1)
            continue;
        size_t len = cb__slot_key_copy(g, s, key);
        cb_stats st;
        if (len == 0)
            continue;
        if (!cb__slot_stats(g, s, seq, &st))
            continue;   /* evicted while read */
        n++;
        if (fn && !fn(key, len, &st, user))
            break;
    }
    return n;
}

/* ---- a group's exports ---- */

typedef struct cb__gexport {
    cb_group *g;
    cb_breaker kh;                /* the key of the slot asked for last */
    char key[CB_GROUP_KEY_MAX];
} cb__gexport;

/* Slot i's key handle (NULL when free), its key in x->key; i == capacity: the overflow breaker. */
static cb_breaker *cb__group_at(cb__gexport *x, size_t i, size_t *len)
{
    cb_group *g = x->g;
    if (i == g->gcfg.capacity) {
        *len = 0;
        return g->overflow;
    }
    cb__slot *sl = cb__slot_at(g, (uint32_t)i);
    uint64_t seq = atomic_load_explicit(&sl->seq, memory_order_acquire);
    if ((seq & 1) || (*len = cb__slot_key_copy(g, (uint32_t)i, x->key)) == 0 ||
        atomic_load_explicit(&sl->seq, memory_order_relaxed) != seq)
        return NULL;   /* changed hands while read */
    cb__key_handle(g, (uint32_t)i, seq, x->key, *len, &x->kh);
    return &x->kh;
}

#define CB__GROUP_FAMILIES(X)                                                    \
    X(keys, "gauge", "cb_group_keys", "Keys the group holds now")                 \
    X(open_keys, "gauge", "cb_group_open_keys", "Keys open now (OPEN, HALF_OPEN, FORCED_OPEN)") \
    X(created, "counter", "cb_group_created_total", "Keys created")               \
    X(evicted, "counter", "cb_group_evicted_total", "Keys evicted")               \
    X(overflow, "counter", "cb_group_overflow_total", "Calls through the overflow breaker") \
    X(trips_held, "counter", "cb_group_trips_held_total", "Trips held back by max_open_share") \
    X(stale, "counter", "cb_group_stale_total", "Records of tickets whose key was evicted")

/* ---- the worst keys ---- */

static int cb__badness(cb_state s)   /* refusing, probing, manual, closed */
{
    return s == CB_OPEN || s == CB_FORCED_OPEN ? 3 : s == CB_HALF_OPEN ? 2 : s == CB_CLOSED ? 0 : 1;
}

/* > 0 when key a is worse than key b, < 0 when better; the order cb_group_worst promises,
   made total by the key bytes so that a listing is the same from one run to the next. */
static int cb__worse(const cb_group_key *a, const cb_group_key *b)
{
    const cb_stats *x = &a->stats, *y = &b->stats;
    int bx = cb__badness(x->state), by = cb__badness(y->state);
    if (bx != by)
        return bx > by ? 1 : -1;
    /* failure rates as fractions, an empty window as 0/1: products of 32-bit counts fit */
    uint64_t fx = x->window_calls ? x->window_failures : 0, cx = x->window_calls ? x->window_calls : 1;
    uint64_t fy = y->window_calls ? y->window_failures : 0, cy = y->window_calls ? y->window_calls : 1;
    if (fx * cy != fy * cx)
        return fx * cy > fy * cx ? 1 : -1;
    if (x->consecutive_failures != y->consecutive_failures)
        return x->consecutive_failures > y->consecutive_failures ? 1 : -1;
    if (x->failures != y->failures)
        return x->failures > y->failures ? 1 : -1;
    if (a->idle_ms != b->idle_ms)
        return a->idle_ms < b->idle_ms ? 1 : -1;
    size_t n = a->key_len < b->key_len ? a->key_len : b->key_len;
    int c = memcmp(a->key, b->key, n);
    return c ? (c < 0 ? 1 : -1) : a->key_len < b->key_len ? 1 : a->key_len > b->key_len ? -1 : 0;
}

static void cb__key_swap(cb_group_key *a, cb_group_key *b)
{
    cb_group_key t = *a;
    *a = *b;
    *b = t;
}

/* Restores the heap h[0..n) below i: every entry better than (or as bad as) its children,
   so that h[0] is the best of the worst kept, the one a worse key replaces. */
static void cb__key_sift(cb_group_key *h, size_t n, size_t i)
{
    for (;;) {
        size_t c = 2 * i + 1, best = i;
        if (c < n && cb__worse(&h[best], &h[c]) > 0)
            best = c;
        if (c + 1 < n && cb__worse(&h[best], &h[c + 1]) > 0)
            best = c + 1;
        if (best == i)
            return;
        cb__key_swap(&h[i], &h[best]);
        i = best;
    }
}

/* Slot s's key, stats, time left and idle time into k, if it holds one throughout. */
static bool cb__slot_read(cb_group *g, uint32_t s, uint64_t now_ms, cb_group_key *k)
{
    cb__slot *sl = cb__slot_at(g, s);
    uint64_t seq = atomic_load_explicit(&sl->seq, memory_order_acquire);
    if (seq & 1 || (k->key_len = (uint32_t)cb__slot_key_copy(g, s, k->key)) == 0 ||
        !cb__slot_stats(g, s, seq, &k->stats))
        return false;
    cb_breaker kh;
    cb__key_handle(g, s, seq, NULL, 0, &kh);
    k->retry_after_ms = cb_retry_after_ms(&kh);
    uint64_t last = atomic_load_explicit(&sl->last_ms, memory_order_relaxed);
    k->idle_ms = now_ms > last ? now_ms - last : 0;
    return atomic_load_explicit(&sl->seq, memory_order_acquire) == seq;
}

CB_API size_t cb_group_worst(cb_group *g, cb_group_key *out, size_t max)
{
    if (!g)
        return 0;
    cb_group_key k;
    size_t held = 0, kept = 0;
    uint64_t now_ms = cb__group_ms(g);
    for (uint32_t s = 0; s < g->gcfg.capacity; s++) {
        if (!cb__slot_read(g, s, now_ms, &k))
            continue;
        held++;
        if (kept < max) {   /* filling: a heap once full */
            out[kept++] = k;
            if (kept == max)
                for (size_t i = max / 2; i-- > 0;)
                    cb__key_sift(out, kept, i);
        } else if (max && cb__worse(&k, &out[0]) > 0) {
            out[0] = k;
            cb__key_sift(out, kept, 0);
        }
    }
    if (kept < max)
        for (size_t i = kept / 2; i-- > 0;)
            cb__key_sift(out, kept, i);
    for (size_t n = kept; n > 1; n--) {   /* heapsort: the best kept goes last */
        cb__key_swap(&out[0], &out[n - 1]);
        cb__key_sift(out, n - 1, 0);
    }
    return held;
}

/* ---- one exposition of breakers and groups ---- */

typedef struct cb__expo {
    cb_breaker *const *bs;
    size_t nb;
    cb_group *const *gs;
    size_t ng;
    cb_export_limits lim;
    cb_group_key **worst;         /* per group, with max_keys: its worst keys */
    size_t *nworst;
    cb__gexport x;
} cb__expo;

/* Item i: the breakers, then each group's keys (every slot, or its worst) and its
   overflow breaker. */
static bool cb__expo_at(void *ctx, size_t i, cb_stats *s, uint64_t *retry_ms, char *labels,
                        size_t cap)
{
    cb__expo *e = (cb__expo *)ctx;
    if (i < e->nb)
        return cb__named(e->bs[i], s, retry_ms, labels, cap);
    i -= e->nb;
    size_t gi = 0, len = 0;
    for (;; gi++) {   /* few groups: a walk is cheap beside the formatting */
        size_t items = (e->worst ? e->nworst[gi] : e->gs[gi]->gcfg.capacity) + 1;
        if (i < items)
            break;
        i -= items;
    }
    cb_group *g = e->gs[gi];
    char name[2 * CB__NAME_MAX + 1], text[3 * CB_GROUP_KEY_MAX + 1];
    const char *key = e->x.key;
    cb__escape(g->tmpl.name, name);
    if (i == (e->worst ? e->nworst[gi] : g->gcfg.capacity)) {
        snprintf(labels, cap, "name=\"%s\",overflow=\"true\"", name);
        cb_stats_get(g->overflow, s);
        *retry_ms = cb_retry_after_ms(g->overflow);
        return true;
    }
    if (e->worst) {
        const cb_group_key *k = &e->worst[gi][i];
        *s = k->stats, *retry_ms = k->retry_after_ms;
        key = k->key, len = k->key_len;
    } else {
        e->x.g = g;
        cb_breaker *kh = cb__group_at(&e->x, i, &len);
        if (!kh || !cb__slot_stats(g, (uint32_t)i, kh->cb__seq_seen, s))
            return false;   /* free, or changed hands while read */
        *retry_ms = cb_retry_after_ms(kh);
    }
    if (e->lim.not_closed && s->state == CB_CLOSED)
        return false;
    snprintf(labels, cap, "name=\"%s\",key=\"%s\"", name, cb__key_text(key, len, text, sizeof text));
    return true;
}

CB_API int cb_format_prometheus_ex(cb_breaker *const *bs, size_t nb, cb_group *const *gs,
                                   size_t ng, const cb_export_limits *lim, char *buf, size_t cap)
{
    cb__expo e = { bs, nb, gs, ng, { 0, false }, NULL, NULL, { 0 } };
    if (lim)
        e.lim = *lim;
    size_t n = nb;
    if (e.lim.max_keys && ng) {   /* each group's worst keys, read once for every family */
        size_t want = 0;
        for (size_t i = 0; i < ng; i++)
            want += e.lim.max_keys < gs[i]->gcfg.capacity ? e.lim.max_keys : gs[i]->gcfg.capacity;
        e.worst = (cb_group_key **)malloc(ng * (sizeof *e.worst + sizeof *e.nworst));
        cb_group_key *all = (cb_group_key *)malloc(want * sizeof *all + 1);
        if (!e.worst || !all) {
            free(e.worst);
            free(all);
            return -1;
        }
        e.nworst = (size_t *)(e.worst + ng);
        for (size_t i = 0, at = 0; i < ng; i++) {
            size_t room = e.lim.max_keys < gs[i]->gcfg.capacity ? e.lim.max_keys : gs[i]->gcfg.capacity;
            e.worst[i] = all + at;
            size_t held = cb_group_worst(gs[i], e.worst[i], room);
            e.nworst[i] = held < room ? held : room;
            at += room;
        }
    }
    for (size_t i = 0; i < ng; i++)
        n += (e.worst ? e.nworst[i] : gs[i]->gcfg.capacity) + 1;
    int head = cb__prometheus(cb__expo_at, &e, n, buf, cap);
    if (e.worst) {
        free(e.worst[0]);
        free(e.worst);
    }
    cb__out o = { buf, cap, head < 0 ? 0 : (size_t)head };
    char name[2 * CB__NAME_MAX + 1];
#define CB__GFAM(field, type, metric, help)                                          \
    cb__put(&o, "# HELP " metric " " help "\n# TYPE " metric " " type "\n");           \
    for (size_t i = 0; i < ng; i++) {                                                 \
        cb_group_stats st;                                                            \
        cb_group_stats_get(gs[i], &st);                                               \
        cb__put(&o, metric "{name=\"%s\"} %llu\n", cb__escape(gs[i]->tmpl.name, name), \
                (cb__ull)st.field);                                                   \
    }
    if (ng) {
        CB__GROUP_FAMILIES(CB__GFAM)
    }
#undef CB__GFAM
    return cb__done(&o);
}

CB_API int cb_group_format_prometheus(cb_group *g, char *buf, size_t cap)
{
    return cb_format_prometheus_ex(NULL, 0, &g, 1, NULL, buf, cap);
}

CB_API int cb_group_format_json(cb_group *g, char *buf, size_t cap)
{
    cb__out o = { buf, cap, 0 };
    cb__gexport gx, *x = &gx;
    cb_group_stats s;
    char name[2 * CB__NAME_MAX + 1], text[3 * CB_GROUP_KEY_MAX + 1];
    x->g = g;
    cb_group_stats_get(g, &s);
    cb__put(&o, "{\"name\":\"%s\",\"group\":true,\"capacity\":%u,\"key_max\":%u",
            cb__escape(g->tmpl.name, name), g->gcfg.capacity, g->gcfg.key_max);
#define CB__GJSON(field, type, metric, help) cb__put(&o, ",\"" #field "\":%llu", (cb__ull)s.field);
    CB__GROUP_FAMILIES(CB__GJSON)
#undef CB__GJSON
    cb__put(&o, ",\"overflow_breaker\":");
    cb__json_breaker(&o, g->overflow, NULL);
    cb__put(&o, ",\"keys_held\":[");
    bool first = true;
    for (uint32_t i = 0; i < g->gcfg.capacity; i++) {
        size_t len;
        cb_breaker *b = cb__group_at(x, i, &len);
        if (!b)
            continue;
        cb__put(&o, first ? "" : ",");
        cb__json_breaker(&o, b, cb__key_text(x->key, len, text, sizeof text));
        first = false;
    }
    cb__put(&o, "]}");
    return cb__done(&o);
}

/* ---- a group in a shared file ---- */
#ifndef CB_NO_SHM

/* The header (static fields and ready) read into private memory; every check is made on
   this copy, and the handle is built from it, never from the mapping. */
static cb_err cb__group_header(int fd, cb__gshared *h, uint64_t *file_len, const cb__why *y)
{
    struct stat st;
    memset(h, 0, sizeof *h);
    if (fstat(fd, &st) != 0)
        return cb__shm_fail(y, CB_EIO, "fstat: %s", strerror(errno));
    *file_len = (uint64_t)st.st_size;
    ssize_t got = pread(fd, h, offsetof(cb__gshared, line), 0);
    if (got < 0)
        return cb__shm_fail(y, CB_EIO, "read: %s", strerror(errno));
    return CB_OK;
}

/* Is the header in h a finished group block of the config want (want NULL: its own)? */
static cb_err cb__group_check(const cb__gshared *h, uint64_t file_len, const cb__gshared *want,
                              const cb__why *y)
{
    if (h->magic == CB__MAGIC)
        return cb__shm_fail(y, CB_EMISMATCH, "a breaker file, not a group file");
    if (h->magic != CB__GROUP_MAGIC)
        return cb__shm_fail(y, CB_ECORRUPT, "not a group file (no cb.h group magic number): left untouched");
    if (h->version != CB__GROUP_VERSION || h->header_size != sizeof(cb__gshared))
        return cb__shm_fail(y, CB_EMISMATCH, "group format %u (header %u bytes); this build reads %u (%zu)",
                            h->version, h->header_size, CB__GROUP_VERSION, sizeof(cb__gshared));
    if (h->checksum != cb__group_checksum(h))
        return cb__shm_fail(y, CB_ECORRUPT, "header checksum does not match: damaged");
    cb_config t;
    cb__gshared own;
    cb__cfg_load(&t, &h->tmpl);
    if (h->gcfg.capacity == 0 || h->gcfg.capacity > CB_GROUP_CAPACITY_MAX || h->gcfg.key_max == 0 ||
        h->gcfg.key_max > CB_GROUP_KEY_MAX || h->tmpl.name[CB__NAME_MAX] != 0 ||
        cb_config_check(&t, NULL, 0) != CB_OK)
        return cb__shm_fail(y, CB_ECORRUPT, "the config in the header is not valid: damaged");
    cb__group_layout(&own, &t, &h->gcfg);
    if (own.total_size != h->total_size || own.slots_off != h->slots_off ||
        own.index_off != h->index_off || own.free_off != h->free_off || own.ring_off != h->ring_off ||
        own.overflow_off != h->overflow_off || own.slot_stride != h->slot_stride ||
        own.index_len != h->index_len || own.ring_stride != h->ring_stride ||
        own.off_live != h->off_live || own.off_key != h->off_key || own.off_dom != h->off_dom ||
        own.off_win != h->off_win)
        return cb__shm_fail(y, CB_ECORRUPT, "layout differs from what its config implies: damaged");
    if (file_len < h->total_size)
        return cb__shm_fail(y, CB_ECORRUPT, "truncated: %llu bytes, the group needs %llu",
                            (cb__ull)file_len, (cb__ull)h->total_size);
    if (!want)
        return CB_OK;
    cb__cfg asked = want->tmpl;
    const cb__cfg *f = &h->tmpl, *k = &asked;
    if (!asked.seed)   /* 0 asks for none in particular: the one the file drew */
        asked.seed = f->seed;
    if (memcmp(f->name, k->name, sizeof f->name) != 0)
        return cb__shm_fail(y, CB_EMISMATCH, "config differs: the file's group has another name");
#define CB__SAME(type, field, flag, doc)                                                       \
    if (memcmp(&f->field, &k->field, sizeof f->field) != 0)                                   \
        return cb__shm_fail(y, CB_EMISMATCH, "config differs: breaker." #field " is %g in the file, %g here", \
                            (double)f->field, (double)k->field);
    CB__CONFIG_FIELDS(CB__SAME)
#undef CB__SAME
#define CB__GSAME(type, field, flag, doc)                                                    \
    if (memcmp(&h->gcfg.field, &want->gcfg.field, sizeof h->gcfg.field) != 0)                 \
        return cb__shm_fail(y, CB_EMISMATCH, "config differs: " #field " is %g in the file, %g here", \
                            (double)h->gcfg.field, (double)want->gcfg.field);
    CB__GROUP_CONFIG_FIELDS(CB__GSAME)
#undef CB__GSAME
    return CB_OK;
}

static bool cb__group_published(int fd)
{
    cb__gshared h;
    uint64_t len;
    const cb__why quiet = { "", NULL, 0, true };
    if (cb__group_header(fd, &h, &len, &quiet) != CB_OK || h.magic != CB__GROUP_MAGIC)
        return false;
    /* the ready word, read through a short mapping: acquire pairs with the creator's release */
    void *m = mmap(NULL, sizeof(cb__gshared), PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        return false;
    bool r = atomic_load_explicit(&((cb__gshared *)m)->ready, memory_order_acquire) == 1;
    munmap(m, sizeof(cb__gshared));
    return r;
}

/* Under the file's lock: make the block if it was never finished. */
static cb_err cb__group_finish(int fd, const cb__gshared *want, const cb_config *t, const cb__why *y)
{
    if (cb__group_published(fd))
        return CB_OK;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return cb__shm_fail(y, CB_EIO, "fstat: %s", strerror(errno));
    uint64_t magic = 0;
    if (pread(fd, &magic, sizeof magic, 0) > 0 && magic != 0 && magic != CB__GROUP_MAGIC)
        return cb__group_check((const cb__gshared *)&(cb__gshared){ .magic = magic }, 0, NULL, y);
    if (!want)
        return cb__shm_fail(y, CB_ECORRUPT, "never initialised: its creator died before finishing "
                            "it (the next cb_group_shm_open with its config finishes it)");
    size_t len = cb__round_up(want->total_size, (size_t)sysconf(_SC_PAGESIZE));
    if ((size_t)st.st_size < len && ftruncate(fd, (off_t)len) != 0)
        return cb__shm_fail(y, CB_EIO, "cannot size to %zu bytes: %s", len, strerror(errno));
    cb__gshared *sh = (cb__gshared *)mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (sh == MAP_FAILED)
        return cb__shm_fail(y, CB_EIO, "mmap: %s", strerror(errno));
    memset(sh, 0, want->total_size);
    cb__group_block_init(sh, t, &want->gcfg);
    /* release: pairs with the acquire load of ready by openers */
    atomic_store_explicit(&sh->ready, 1, memory_order_release);
    munmap(sh, len);
    return CB_OK;
}

CB_API cb_group *cb_group_shm_open_ex(const char *path, const cb_group_config *cfg, unsigned flags,
                                      cb_err *err, char *msg, size_t msg_len)
{
    cb__why y = { path, msg, msg_len, false };
    cb_config t;
    cb__gcfg gc;
    cb__gshared want, h;
    char bad[160];
    cb_group *g = NULL;
    bool created = false;
    int fd = -1;
    cb_err e = CB_OK;
    uint64_t flen = 0;
    cb__last[0] = 0;
    if (msg && msg_len)
        msg[0] = 0;
    if (!path)
        e = cb__bad(msg, msg_len, "cb_group_shm_open: path is NULL");
    else if (flags & ~(unsigned)CB_SHM_GROUP)
        e = cb__shm_fail(&y, CB_EINVAL, "unknown flags 0x%x", flags & ~(unsigned)CB_SHM_GROUP);
    else if (cfg && cb__group_resolve(cfg, &t, &gc, bad, sizeof bad) != CB_OK)
        e = cb__shm_fail(&y, CB_EINVAL, "%s", bad);
    else if ((fd = cb__shm_fd(&y, cfg != NULL, flags, &created, &e)) >= 0) {
        if (cfg)
            cb__group_layout(&want, &t, &gc);
        for (int waited = 0; e == CB_OK && !cb__group_published(fd); waited += 10) {
            if (flock(fd, LOCK_EX | LOCK_NB) == 0) {   /* never blocks: the wait is bounded */
                e = cb__group_finish(fd, cfg ? &want : NULL, &t, &y);
                flock(fd, LOCK_UN);
                break;
            }
            if (errno != EWOULDBLOCK && errno != EINTR)
                e = cb__shm_fail(&y, CB_EIO, "flock: %s", strerror(errno));
            else if (waited >= CB_SHM_WAIT_MS)
                e = cb__shm_fail(&y, CB_ECORRUPT, "unfinished, and another process has held its "
                                 "lock for %d ms", CB_SHM_WAIT_MS);
            else
                cb__sleep_ms(10);
        }
        struct stat st;
        if (e == CB_OK && (e = cb__group_header(fd, &h, &flen, &y)) == CB_OK &&
            (e = cb__group_check(&h, flen, cfg ? &want : NULL, &y)) == CB_OK &&
            (e = fstat(fd, &st) == 0 ? CB_OK : cb__shm_fail(&y, CB_EIO, "fstat: %s", strerror(errno))) == CB_OK) {
            if (!cfg) {   /* attach: the file's config, this process's defaults for hooks */
                cb__cfg_load(&t, &h.tmpl);
                t.name = h.tmpl.name;
            }
            size_t len = (size_t)h.total_size;
            void *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            g = map == MAP_FAILED ? NULL : (cb_group *)CB_MALLOC(cb__group_handle_size());
            if (map == MAP_FAILED)
                e = cb__shm_fail(&y, CB_EIO, "mmap: %s", strerror(errno));
            else if (!g) {
                munmap(map, len);
                e = cb__shm_fail(&y, CB_ENOMEM, "no memory for the handle");
            } else {
                uint64_t tag = cb__splitmix(h.instance ^ (uint64_t)st.st_ino ^ (uint64_t)st.st_dev << 32);
                cb__group_handle_init(g, (cb__gshared *)map, &h, &t, tag ? tag : 1, CB__KIND_SHM);
                g->mem = map;
                g->map_len = len;
            }
        }
        if (e != CB_OK && created && !cb__group_published(fd))
            unlink(path);   /* made here and never finished: nobody else has it */
        close(fd);
    }
    if (e != CB_OK && path && msg && msg_len && !msg[0])
        cb__shm_fail(&y, e, "%s", cb_strerror(e));
    if (err)
        *err = e;
    return e == CB_OK ? g : NULL;
}

CB_API cb_group *cb_group_shm_open(const char *path, const cb_group_config *cfg, cb_err *err)
{
    return cb_group_shm_open_ex(path, cfg, 0, err, NULL, 0);
}

CB_API void cb_group_shm_close(cb_group *g)
{
    if (!g || g->kind != CB__KIND_SHM)
        return;
    munmap(g->mem, g->map_len);
    CB_FREE(g);
}
#else
CB_API cb_group *cb_group_shm_open_ex(const char *path, const cb_group_config *cfg, unsigned flags,
                                      cb_err *err, char *msg, size_t msg_len)
{
    (void)path, (void)cfg, (void)flags;
    snprintf(cb__last, sizeof cb__last, "built with CB_NO_SHM: no shared groups");
    if (msg && msg_len)
        snprintf(msg, msg_len, "%s", cb__last);
    if (err)
        *err = CB_EIO;
    return NULL;
}
CB_API cb_group *cb_group_shm_open(const char *path, const cb_group_config *cfg, cb_err *err)
{
    return cb_group_shm_open_ex(path, cfg, 0, err, NULL, 0);
}
CB_API void cb_group_shm_close(cb_group *g) { (void)g; }
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
