/* Configuration: all-zero is valid and resolves to the documented defaults; every invalid
   value is CB_EINVAL from cb_config_check, cb_size, cb_new and cb_init, with a message
   naming the field and the value; the edges of each range are valid. */
#define CB_IMPLEMENTATION
#include "cb.h"
#include "tests/t.h"

#include <ctype.h>
#include <math.h>

TEST(an_all_zero_config_resolves_to_the_documented_defaults)
{
    cb_config r = {0};
    char msg[128] = "untouched";
    CHECK_EQ(cb_config_resolve(&(cb_config){0}, &r, msg, sizeof msg), CB_OK);
    CHECK_STR(msg, "");
    CHECK_STR(r.name, "breaker");
    CHECK_EQ(r.consecutive_failures, 5);
    CHECK_EQ(r.window_calls, 0);
    CHECK_EQ(r.window_ms, 0);
    CHECK_EQ(r.failure_rate == 0, 1);
    CHECK_EQ(r.open_ms, 60000);
    CHECK_EQ(r.backoff == 1, 1);
    CHECK_EQ(r.max_open_ms, 600000);
    CHECK_EQ(r.jitter == 0, 1);
    CHECK_EQ(r.half_open_calls, 1);
    CHECK_EQ(r.probe_timeout_ms, 60000);
    CHECK_EQ(r.max_concurrent, 0);
    CHECK_EQ(r.seed, 0);   /* drawn by each breaker when it is made */
}

TEST(defaults_follow_the_fields_they_depend_on)
{
    cb_config r = {0};
    CHECK_EQ(cb_config_resolve(&(cb_config){.open_ms = 700}, &r, NULL, 0), CB_OK);
    CHECK_EQ(r.max_open_ms, 7000);
    CHECK_EQ(cb_config_resolve(&(cb_config){.window_ms = 5, .failure_rate = 0.5}, &r, NULL, 0),
             CB_OK);
    CHECK_EQ(r.window_buckets, 5);              /* min(10, window_ms) */
    CHECK_EQ(r.minimum_calls, 10);
    CHECK_EQ(cb_config_resolve(&(cb_config){.window_calls = 7, .failure_rate = 0.5}, &r,
                               NULL, 0), CB_OK);
    CHECK_EQ(r.minimum_calls, 7);
    CHECK_EQ(r.consecutive_failures, 0);
    CHECK_EQ(cb_config_resolve(&(cb_config){.slow_call_ms = 10, .slow_call_rate = 0.5}, &r,
                               NULL, 0), CB_OK);
    CHECK_EQ(r.window_calls, 100);
    CHECK_EQ(cb_config_resolve(&(cb_config){.window_calls = 50}, &r, NULL, 0), CB_OK);
    CHECK_EQ(r.consecutive_failures, 5);        /* a window alone is no rule */
}

TEST(a_breaker_reports_its_resolved_config_and_copies_its_name)
{
    char name[16] = "orders-db";
    cb_config r = {0};
    cb_err err = CB_EINVAL;
    cb_breaker *b = cb_new(&(cb_config){.name = name, .window_ms = 2000, .failure_rate = 0.25,
                                        .jitter = 0.125, .seed = 99},
                           &err);
    REQUIRE(b && err == CB_OK);
    memset(name, 'x', sizeof name - 1);
    CHECK_STR(cb_name(b), "orders-db");
    cb_config_get(b, &r);
    CHECK_STR(r.name, "orders-db");
    CHECK_EQ(r.window_ms, 2000);
    CHECK_EQ(r.window_buckets, 10);
    CHECK_EQ(r.minimum_calls, 10);
    CHECK(r.failure_rate == 0.25 && r.jitter == 0.125);
    CHECK_EQ(r.seed, 99);
    CHECK_EQ(r.open_ms, 60000);
    cb_free(b);
}

/* "a|b": the message must name a or b. */
static bool t_names_one_of(const char *msg, const char *alternatives)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", alternatives);
    for (char *tok = strtok(buf, "|"); tok; tok = strtok(NULL, "|"))
        if (strstr(msg, tok))
            return true;
    return false;
}

static const char t_name_64[] = "0123456789012345678901234567890123456789012345678901234567890123";

/* Every invalid value docs/semantics.md lists, and the message parts it must carry. */
static const struct t_bad {
    cb_config cfg;
    const char *field;   /* one of these, '|'-separated */
    const char *value;   /* lower-cased substring, or NULL */
} t_bad[] = {
    {{.failure_rate = NAN}, "failure_rate", "nan"},
    {{.failure_rate = -0.25}, "failure_rate", "-0.25"},
    {{.failure_rate = 1.5}, "failure_rate", "1.5"},
    {{.failure_rate = INFINITY}, "failure_rate", "inf"},
    {{.slow_call_ms = 10, .slow_call_rate = NAN}, "slow_call_rate", "nan"},
    {{.slow_call_ms = 10, .slow_call_rate = -0.5}, "slow_call_rate", "-0.5"},
    {{.slow_call_ms = 10, .slow_call_rate = 2.5}, "slow_call_rate", "2.5"},
    {{.slow_call_rate = 0.75}, "slow_call_rate|slow_call_ms", "0.75"},
    {{.jitter = 1}, "jitter", "1"},
    {{.jitter = 1.25}, "jitter", "1.25"},
    {{.jitter = -0.5}, "jitter", "-0.5"},
    {{.jitter = NAN}, "jitter", "nan"},
    {{.backoff = 0.5}, "backoff", "0.5"},
    {{.backoff = 0.999}, "backoff", "0.999"},
    {{.backoff = -2}, "backoff", "-2"},
    {{.backoff = NAN}, "backoff", "nan"},
    {{.window_calls = 10, .window_ms = 1000}, "window_calls|window_ms", "1000"},
    {{.window_calls = 10, .minimum_calls = 11, .failure_rate = 0.5}, "minimum_calls", "11"},
    {{.failure_rate = 0.5, .minimum_calls = 101}, "minimum_calls", "101"},
    {{.window_calls = (1u << 20) + 1}, "window_calls", "1048577"},
    {{.window_ms = 5000, .window_buckets = 1025}, "window_buckets", "1025"},
    {{.window_ms = 10, .window_buckets = 20}, "window_ms|window_buckets", "20"},
    {{.name = ""}, "name", NULL},
    {{.name = t_name_64}, "name", NULL},
    {{.name = "tab\there"}, "name", "0x09"},
    {{.name = "bell\a"}, "name", "0x07"},
    {{.name = "del\x7f"}, "name", "0x7f"},
    {{.name = "caf\xc3\xa9"}, "name", "0xc3"},
    {{.open_ms = 1000, .max_open_ms = 500}, "max_open_ms", "500"},
    {{.half_open_calls = 256}, "half_open_calls", "256"},
};

TEST(every_invalid_value_is_einval_with_a_message_naming_the_field_and_value)
{
    for (size_t i = 0; i < sizeof t_bad / sizeof t_bad[0]; i++) {
        const struct t_bad *c = &t_bad[i];
        char msg[256] = "", lower[256];
        cb_err err = CB_OK;
        void *mem[64];
        cb_breaker *out = NULL;
        CHECK_EQ(cb_config_check(&c->cfg, msg, sizeof msg), CB_EINVAL);
        for (size_t j = 0; j < sizeof lower; j++)
            lower[j] = (char)tolower((unsigned char)msg[j]);
        if (!t_names_one_of(msg, c->field))
            t__fail(__FILE__, __LINE__, "case %zu: \"%s\" does not name %s", i, msg, c->field);
        if (c->value && !strstr(lower, c->value))
            t__fail(__FILE__, __LINE__, "case %zu: \"%s\" does not show %s", i, msg, c->value);
        CHECK_EQ(cb_size(&c->cfg), 0);
        CHECK(cb_new(&c->cfg, &err) == NULL);
        CHECK_EQ(err, CB_EINVAL);
        CHECK_EQ(cb_init(mem, sizeof mem, &c->cfg, &out), CB_EINVAL);
        CHECK(out == NULL);
        CHECK_EQ(cb_config_resolve(&c->cfg, NULL, NULL, 0), CB_EINVAL);
    }
}

static const char t_name_63[] = "012345678901234567890123456789012345678901234567890123456789012";

TEST(the_edges_of_each_range_are_valid)
{
    static const cb_config good[] = {
        {.failure_rate = 1}, {.failure_rate = 1e-9},
        {.slow_call_ms = 1, .slow_call_rate = 1},
        {.jitter = 0.999999}, {.backoff = 1}, {.backoff = 1000},
        {.window_calls = 1u << 20}, {.window_calls = 1},
        {.window_ms = 1024, .window_buckets = 1024}, {.window_ms = 1, .window_buckets = 1},
        {.window_ms = 1},
        {.window_calls = 10, .minimum_calls = 10, .failure_rate = 0.5},
        {.name = t_name_63}, {.name = "a"}, {.name = " ~!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}"},
        {.open_ms = 1000, .max_open_ms = 1000}, {.half_open_calls = 255},
        {.open_ms = 1, .probe_timeout_ms = 1, .max_concurrent = 1},
        {.open_ms = UINT32_MAX},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char msg[256] = "";
        cb_err err = CB_EINVAL;
        if (cb_config_check(&good[i], msg, sizeof msg) != CB_OK)
            t__fail(__FILE__, __LINE__, "case %zu refused: %s", i, msg);
        CHECK(cb_size(&good[i]) > 0);
        cb_breaker *b = cb_new(&good[i], &err);
        CHECK(b != NULL);
        CHECK_EQ(err, CB_OK);
        cb_free(b);
    }
}

TEST(a_null_config_means_all_defaults)
{
    cb_err err = CB_EINVAL;
    CHECK_EQ(cb_config_check(NULL, NULL, 0), CB_OK);
    CHECK_EQ(cb_size(NULL), cb_size(&(cb_config){0}));
    cb_breaker *b = cb_new(NULL, &err);
    CHECK(b != NULL);
    CHECK_EQ(err, CB_OK);
    CHECK_STR(cb_name(b), "breaker");
    cb_free(b);
    cb_free(NULL);
}

TEST(the_message_obeys_its_length_and_is_always_terminated)
{
    cb_config bad = {.half_open_calls = 1000};
    char full[256], small[12];
    memset(small, 'z', sizeof small);
    CHECK_EQ(cb_config_check(&bad, full, sizeof full), CB_EINVAL);
    CHECK_EQ(cb_config_check(&bad, small, sizeof small), CB_EINVAL);
    CHECK_EQ(strlen(small), sizeof small - 1);
    CHECK(strncmp(small, full, sizeof small - 1) == 0);
    small[0] = 'z';
    CHECK_EQ(cb_config_check(&bad, small, 0), CB_EINVAL);   /* len 0: untouched */
    CHECK_EQ(small[0], 'z');
    CHECK_EQ(cb_config_check(&bad, NULL, 0), CB_EINVAL);
}

TEST(names_of_enums_are_lower_case_and_parse_back)
{
    static const char *states[] = {"closed", "open", "half_open", "forced_open", "disabled",
                                   "metrics_only"};
    static const char *reasons[] = {"consecutive_failures", "failure_rate", "failure_count",
                                    "slow_call_rate", "open_elapsed", "probe_failed",
                                    "probe_timeout", "probes_succeeded", "manual"};
    cb_state s;
    for (int i = 0; i <= CB_METRICS_ONLY; i++) {
        CHECK_STR(cb_state_name((cb_state)i), states[i]);
        CHECK(cb_state_parse(states[i], &s) && s == (cb_state)i);
    }
    CHECK(cb_state_parse("half-open", &s) && s == CB_HALF_OPEN);
    CHECK(!cb_state_parse("shut", &s));
    CHECK(!cb_state_parse("", &s));
    for (int i = 0; i <= CB_REASON_MANUAL; i++)
        CHECK_STR(cb_reason_name((cb_reason)i), reasons[i]);
    CHECK_STR(cb_outcome_name(CB_SUCCESS), "success");
    CHECK_STR(cb_outcome_name(CB_FAILURE), "failure");
    CHECK_STR(cb_outcome_name(CB_IGNORED), "ignored");
    for (int i = CB_OK; i <= CB_EIO; i++) {
        CHECK(cb_strerror((cb_err)i) && *cb_strerror((cb_err)i));
        for (int j = CB_OK; j < i; j++)
            CHECK(strcmp(cb_strerror((cb_err)i), cb_strerror((cb_err)j)) != 0);
    }
    /* out of range: still a string, never a crash */
    CHECK(cb_strerror((cb_err)99) != NULL);
    CHECK(cb_state_name((cb_state)99) != NULL);
    CHECK(cb_reason_name((cb_reason)99) != NULL);
    CHECK(cb_outcome_name((cb_outcome)99) != NULL);
}

/* A failed cb_new, cb_init, cb_group_new or cb_shm_open says what was wrong without a
   second call; a success of one clears it; each thread has its own. */
static void *t_other_thread_error(void *arg)
{
    (void)arg;
    return (void *)(uintptr_t)(cb_last_error()[0] == 0);
}

TEST(a_failed_constructor_leaves_its_message_for_cb_last_error)
{
    cb_err e;
    CHECK(!cb_new(&(cb_config){.failure_rate = 1.5}, &e));
    CHECK_EQ(e, CB_EINVAL);
    CHECK_CONTAINS(cb_last_error(), "failure_rate");
    CHECK_CONTAINS(cb_last_error(), "1.5");
    pthread_t th;
    void *clean = NULL;
    REQUIRE(pthread_create(&th, NULL, t_other_thread_error, NULL) == 0);
    pthread_join(th, &clean);
    CHECK(clean != NULL);   /* the message is this thread's */
    cb_breaker *b = cb_new(NULL, &e);
    REQUIRE(b);
    CHECK_EQ(strcmp(cb_last_error(), ""), 0);
    cb_free(b);
    static char mem[64];
    cb_breaker *out;
    CHECK_EQ(cb_init(mem, sizeof mem, NULL, &out), CB_EINVAL);
    CHECK_CONTAINS(cb_last_error(), "cb_init: len is below cb_size()");
    CHECK(!cb_group_new(&(cb_group_config){.capacity = CB_GROUP_CAPACITY_MAX + 1}, &e));
    CHECK_CONTAINS(cb_last_error(), "capacity");
    char made[64];   /* a file made by the open: its probes of the empty file are no error */
    snprintf(made, sizeof made, "/tmp/cb-last-error-%d.cb", (int)getpid());
    unlink(made);
    cb_breaker *sb = cb_shm_open(made, NULL, &e);
    REQUIRE(sb);
    CHECK_EQ(strcmp(cb_last_error(), ""), 0);
    cb_shm_close(sb);
    unlink(made);
    CHECK(!cb_shm_open("/nonexistent-folder-of-cb-tests/x.cb", NULL, &e));
    CHECK_EQ(e, CB_EIO);
    CHECK_CONTAINS(cb_last_error(), "/nonexistent-folder-of-cb-tests/x.cb: ");
    CHECK_CONTAINS(cb_last_error(), "No such file or directory");
}
