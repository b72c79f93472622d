/* cb_init on caller memory: no allocation at all (this file is linked with
   -Wl,--wrap for every allocator entry point, so each call cb.h makes to one lands in a
   counting wrapper that fails on demand), the length check, misaligned and dirty memory,
   and cb_new's failure when malloc fails. */
#define CB_IMPLEMENTATION
#include "cb.h"
#include "tests/t.h"

#include <sys/mman.h>

static int t_deny;               /* 1: every allocator call fails */
static unsigned long t_allocs;   /* allocator calls made while counting */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t a, size_t n);
int __real_posix_memalign(void **p, size_t a, size_t n);
char *__real_strdup(const char *s);
void *__real_mmap(void *a, size_t n, int prot, int flags, int fd, off_t off);
void __real_free(void *p);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_aligned_alloc(size_t a, size_t n);
int __wrap_posix_memalign(void **p, size_t a, size_t n);
char *__wrap_strdup(const char *s);
void *__wrap_mmap(void *a, size_t n, int prot, int flags, int fd, off_t off);
void __wrap_free(void *p);

void *__wrap_malloc(size_t n) { t_allocs++; return t_deny ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t m) { t_allocs++; return t_deny ? NULL : __real_calloc(n, m); }
void *__wrap_realloc(void *p, size_t n) { t_allocs++; return t_deny ? NULL : __real_realloc(p, n); }
void *__wrap_aligned_alloc(size_t a, size_t n)
{
    t_allocs++;
    return t_deny ? NULL : __real_aligned_alloc(a, n);
}
int __wrap_posix_memalign(void **p, size_t a, size_t n)
{
    t_allocs++;
    return t_deny ? 12 /* ENOMEM */ : __real_posix_memalign(p, a, n);
}
char *__wrap_strdup(const char *s) { t_allocs++; return t_deny ? NULL : __real_strdup(s); }
void *__wrap_mmap(void *a, size_t n, int prot, int flags, int fd, off_t off)
{
    t_allocs++;
    return t_deny ? MAP_FAILED : __real_mmap(a, n, prot, flags, fd, off);
}
void __wrap_free(void *p) { t_allocs += p != NULL; __real_free(p); }

static _Alignas(64) unsigned char t_mem[1 << 18];

static int t_ok(void *arg)
{
    (void)arg;
    return 0;
}

/* Exercises every non-shm entry point on b; the breaker opens on its first failure. */
static void t_use_everything(cb_breaker *b, t_clock *clk)
{
    cb_ticket t;
    cb_stats s;
    cb_event ev[8];
    char buf[4096];
    int rc;
    cb_breaker *list[1] = {b};
    CHECK(cb_allow(b, &t));
    CHECK(cb_record(b, &t, CB_SUCCESS));
    CHECK(t_call(b, CB_SUCCESS));
    CHECK(t_call(b, CB_FAILURE));
    CHECK_STATE(b, CB_OPEN);
    CHECK(!cb_call(b, t_ok, NULL, &rc));
    CHECK(cb_retry_after_ms(b) > 0);
    clk->ns += 3600 * 1000 * T_MS;
    CHECK(cb_allow(b, &t));
    CHECK(cb_record(b, &t, CB_SUCCESS));
    CHECK_STATE(b, CB_CLOSED);
    cb_stats_get(b, &s);
    CHECK_EQ(s.admitted, 4);
    CHECK_EQ(s.rejected, 1);
    CHECK_EQ(cb_history(b, ev, 8), 3);
    CHECK(cb_format_json(b, buf, sizeof buf) > 0);
    CHECK(cb_format_prometheus(list, 1, buf, sizeof buf) > 0);
    CHECK_EQ(cb_set_state(b, CB_METRICS_ONLY), CB_OK);
    cb_reset(b);
    CHECK_STR(cb_name(b), "caller-memory");
}

TEST(cb_init_on_caller_memory_allocates_nothing)
{
    t_clock clk = {T_T0, 0};
    cb_config cfg = {.name = "caller-memory", .consecutive_failures = 1, .window_ms = 1000,
                     .failure_rate = 0.5, .slow_call_ms = 100, .max_concurrent = 8,
                     .clock_ns = t_clock_read, .clock_user = &clk};
    cb_breaker *b = NULL;
    t_allocs = 0;
    t_deny = 1;
    size_t need = cb_size(&cfg);
    REQUIRE(need > 0 && need <= sizeof t_mem);
    CHECK_EQ(cb_config_check(&cfg, NULL, 0), CB_OK);
    CHECK_EQ(cb_init(t_mem, need, &cfg, &b), CB_OK);
    REQUIRE(b != NULL);
    t_use_everything(b, &clk);
    cb_free(b);                                 /* not from cb_new: a no-op */
    t_deny = 0;
    CHECK_EQ(t_allocs, 0);
}

TEST(cb_init_refuses_memory_shorter_than_cb_size_and_null_arguments)
{
    cb_config cfg = {.window_calls = 1000, .failure_rate = 0.5};
    cb_breaker *b = NULL;
    size_t need = cb_size(&cfg);
    REQUIRE(need > 1000 * sizeof(uint32_t) && need <= sizeof t_mem);
    CHECK_EQ(cb_init(t_mem, need - 1, &cfg, &b), CB_EINVAL);
    CHECK(b == NULL);
    CHECK_EQ(cb_init(t_mem, 0, &cfg, &b), CB_EINVAL);
    CHECK_EQ(cb_init(NULL, need, &cfg, &b), CB_EINVAL);
    CHECK_EQ(cb_init(t_mem, need, &cfg, NULL), CB_EINVAL);
    CHECK(b == NULL);
    CHECK_EQ(cb_init(t_mem, need, &cfg, &b), CB_OK);
    CHECK(b != NULL);
}

TEST(cb_init_accepts_misaligned_and_dirty_memory_of_cb_size_bytes)
{
    t_clock clk = {T_T0, 0};
    cb_config cfg = {.name = "caller-memory", .consecutive_failures = 1,
                     .clock_ns = t_clock_read, .clock_user = &clk};
    size_t need = cb_size(&cfg);
    REQUIRE(need + 64 <= sizeof t_mem);
    for (size_t off = 0; off < 64; off += 7) {
        cb_breaker *b = NULL;
        memset(t_mem, 0xa5, sizeof t_mem);
        CHECK_EQ(cb_init(t_mem + off, need, &cfg, &b), CB_OK);
        REQUIRE(b != NULL);
        CHECK((unsigned char *)b >= t_mem + off);
        t_use_everything(b, &clk);
        for (size_t i = off + need; i < sizeof t_mem; i++)   /* nothing written past the end */
            if (t_mem[i] != 0xa5) {
                t__fail(__FILE__, __LINE__, "offset %zu: byte %zu past the end written", off,
                        i - off - need);
                break;
            }
    }
}

TEST(two_breakers_side_by_side_in_one_buffer_are_independent)
{
    cb_config cfg = {.consecutive_failures = 2, .window_calls = 16, .failure_rate = 1};
    size_t need = cb_size(&cfg);
    cb_breaker *a = NULL, *b = NULL;
    REQUIRE(2 * need <= sizeof t_mem);
    CHECK_EQ(cb_init(t_mem, need, &cfg, &a), CB_OK);
    CHECK_EQ(cb_init(t_mem + need, need, &cfg, &b), CB_OK);
    REQUIRE(a && b);
    t_calls(a, CB_FAILURE, 2);
    t_calls(b, CB_SUCCESS, 16);
    CHECK_STATE(a, CB_OPEN);
    CHECK_STATE(b, CB_CLOSED);
    CHECK_EQ(t_stats(a).admitted, 2);
    CHECK_EQ(t_stats(b).admitted, 16);
    CHECK_EQ(t_stats(b).window_calls, 16);
}

TEST(cb_new_is_enomem_when_malloc_fails_and_frees_what_it_took)
{
    cb_err err = CB_OK;
    t_allocs = 0;
    t_deny = 1;
    CHECK(cb_new(&(cb_config){0}, &err) == NULL);
    t_deny = 0;
    CHECK_EQ(err, CB_ENOMEM);
    CHECK(t_allocs >= 1);

    t_allocs = 0;
    cb_breaker *b = cb_new(&(cb_config){.window_calls = 100000, .failure_rate = 0.5}, &err);
    REQUIRE(b != NULL);
    CHECK_EQ(err, CB_OK);
    CHECK(t_call(b, CB_SUCCESS));
    cb_free(b);
    CHECK_EQ(t_allocs, 2);                      /* one malloc, one free */
}
