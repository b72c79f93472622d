/* cb.h from C++: the declarations and the inline fast path compile as C++ (g++ -std=c++23,
   clang++ -std=c++2b: <stdatomic.h> in C++ needs C++23) and work against the
   implementation compiled as C (tests/unit/cb_impl.c). */
#include "cb.h"

#include <cstdio>
#include <cstring>

static int failures;

#define CHECK(c)                                                                  \
    do {                                                                          \
        if (!(c)) {                                                               \
            std::fprintf(stderr, "%s:%d: CHECK(%s)\n", __FILE__, __LINE__, #c);   \
            failures++;                                                           \
        }                                                                         \
    } while (0)

static uint64_t fake_now;

int main()
{
    cb_config cfg{};
    cfg.name = "from-c++";
    cfg.consecutive_failures = 2;
    cfg.open_ms = 100;
    cfg.clock_ns = [](void *) -> uint64_t { return fake_now; };
    cb_err err = CB_EINVAL;
    cb_breaker *b = cb_new(&cfg, &err);
    CHECK(b != nullptr && err == CB_OK);
    if (!b)
        return 1;

    cb_ticket t;
    CHECK(cb_allow(b, &t));
    CHECK(cb_record(b, &t, CB_SUCCESS));
    int rc = 0;
    auto fail = [](void *) { return 1; };
    CHECK(cb_call(b, fail, nullptr, &rc) && rc == 1);
    CHECK(cb_call(b, fail, nullptr, &rc));
    CHECK(cb_get_state(b) == CB_OPEN);
    CHECK(!cb_allow(b, &t));
    fake_now += 100 * 1000000ull;
    CHECK(cb_allow(b, &t));
    CHECK(cb_get_state(b) == CB_HALF_OPEN);
    CHECK(cb_record(b, &t, CB_SUCCESS));
    CHECK(cb_get_state(b) == CB_CLOSED);

    cb_stats s;
    cb_stats_get(b, &s);
    CHECK(s.admitted == 4 && s.rejected == 1 && s.successes == 2 && s.failures == 2);
    CHECK(s.generation == 3);
    char buf[1024];
    CHECK(cb_format_json(b, buf, sizeof buf) > 0 && std::strstr(buf, "\"from-c++\""));
    cb_free(b);

    std::printf("%d passed, %d failed\n", failures ? 0 : 1, failures ? 1 : 0);
    return failures != 0;
}
