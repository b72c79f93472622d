/* The registry under threads: adds, removes, finds and exports at once, with yields
   injected at cb.h's yield points to widen the race windows. Every breaker must be in
   the registry exactly when its last add or remove says so, and exports taken meanwhile
   must hold only registered breakers. REG_ROUNDS sets the operations per thread
   (default 100000; fewer under ThreadSanitizer). */
#define _DEFAULT_SOURCE   /* sched_yield */
#include <sched.h>
#include <stdint.h>

static _Thread_local uint64_t t_yield_state = 0x9e3779b97f4a7c15ull;
/* About one yield in eight, from a per-thread xorshift. */
#define CB_YIELD_POINT()                                                   \
    do {                                                                   \
        t_yield_state ^= t_yield_state << 13;                              \
        t_yield_state ^= t_yield_state >> 7;                               \
        t_yield_state ^= t_yield_state << 17;                              \
        if ((t_yield_state & 7) == 0)                                      \
            sched_yield();                                                 \
    } while (0)
#define CB_IMPLEMENTATION
#include "cb.h"
#include "tests/t.h"

#include <pthread.h>

enum { THREADS = 4, OWN = 48 };

static cb_registry t_reg;
static _Atomic(cb_breaker *) t_slots[THREADS * OWN];
static cb_breaker *t_bs[THREADS][OWN];
static bool t_in[THREADS][OWN];
static _Atomic int t_errors, t_stop;

static void *t_owner(void *arg)
{
    int me = (int)(intptr_t)arg;
    uint64_t x = 12345u + (uint64_t)me;
    const char *env = getenv("REG_ROUNDS");
    long rounds = env && *env ? strtol(env, NULL, 10) : 100000;
    for (long i = 0; i < rounds; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int k = (int)(x % OWN);
        cb_breaker *b = t_bs[me][k];
        bool ok = t_in[me][k] ? cb_registry_remove(&t_reg, b) : cb_registry_add(&t_reg, b) == CB_OK;
        t_in[me][k] = !t_in[me][k];
        /* only this thread adds or removes its breakers: find must agree at once */
        if (!ok || (cb_registry_find(&t_reg, cb_name(b)) == b) != t_in[me][k])
            atomic_fetch_add(&t_errors, 1);
    }
    return NULL;
}

/* Lists and exports while the owners work: whatever is listed must be one of ours. */
static void *t_reader(void *arg)
{
    static char buf[1 << 16];
    (void)arg;
    while (!atomic_load(&t_stop)) {
        cb_breaker *list[THREADS * OWN];
        size_t n = cb_registry_list(&t_reg, list, THREADS * OWN);
        for (size_t i = 0; i < n && i < THREADS * OWN; i++)
            if (strncmp(cb_name(list[i]), "reg-", 4) != 0)
                atomic_fetch_add(&t_errors, 1);
        if (n > THREADS * OWN || cb_registry_json(&t_reg, buf, sizeof buf) <= 0 ||
            cb_registry_prometheus(&t_reg, buf, sizeof buf) <= 0)
            atomic_fetch_add(&t_errors, 1);
    }
    return NULL;
}

TEST(concurrent_adds_removes_and_exports_keep_each_breaker_exactly_where_it_was_put)
{
    for (int t = 0; t < THREADS; t++)
        for (int k = 0; k < OWN; k++) {
            char name[32];
            snprintf(name, sizeof name, "reg-%d-%d", t, k);
            cb_config c = { .name = name };
            t_bs[t][k] = cb_new(&c, NULL);
            REQUIRE(t_bs[t][k]);
        }
    cb_registry_init(&t_reg, t_slots, THREADS * OWN);
    pthread_t th[THREADS + 1];
    pthread_create(&th[THREADS], NULL, t_reader, NULL);
    for (int t = 0; t < THREADS; t++)
        pthread_create(&th[t], NULL, t_owner, (void *)(intptr_t)t);
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    atomic_store(&t_stop, 1);
    pthread_join(th[THREADS], NULL);
    CHECK_EQ(atomic_load(&t_errors), 0);

    cb_breaker *list[THREADS * OWN];
    size_t n = cb_registry_list(&t_reg, list, THREADS * OWN), want = 0;
    for (int t = 0; t < THREADS; t++)
        for (int k = 0; k < OWN; k++) {
            size_t seen = 0;
            for (size_t i = 0; i < n && i < THREADS * OWN; i++)
                seen += list[i] == t_bs[t][k];
            CHECK_EQ(seen, t_in[t][k] ? 1 : 0);
            want += t_in[t][k];
        }
    CHECK_EQ(n, want);
    for (int t = 0; t < THREADS; t++)
        for (int k = 0; k < OWN; k++)
            cb_free(t_bs[t][k]);
}
