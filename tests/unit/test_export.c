/* Export: cb_format_json parses (cJSON) into one object holding the name, the lower-case
   state and every cb_stats field with its value; cb_format_prometheus follows the text
   format (cb_ names, name label, _total counters, escaped label values); both follow
   snprintf: the full length returned at every capacity, the buffer always terminated.
   `make test-promtool` checks a real exposition with promtool. */
#define CB_IMPLEMENTATION
#include "cb.h"
#include "tests/t.h"

#include <cjson/cJSON.h>

#define S CB_SUCCESS
#define F CB_FAILURE
#define I CB_IGNORED

/* A breaker with every counter different from zero and from each other. */
static t_fix *t_busy(const char *name)
{
    t_fix *f = t_new((cb_config){.name = name, .window_calls = 20, .failures_in_window = 6,
                                 .slow_call_ms = 10, .open_ms = 4000});
    cb_ticket held, t;
    CHECK(cb_allow(f->b, &held));
    t_calls(f->b, S, 7);
    t_calls(f->b, I, 2);
    t_at_ms(f, 3);
    t_calls(f->b, F, 4);
    CHECK(cb_allow(f->b, &t));
    t_at_ms(f, 25);
    cb_record(f->b, &t, F);                    /* slow: window holds 12 calls, 5 failures */
    t_call(f->b, F);                           /* sixth failure: open at 25 ms */
    t_calls(f->b, S, 3);                       /* rejected */
    CHECK(!cb_record(f->b, &held, S));         /* stale */
    t_at_ms(f, 1000);
    return f;
}

static const struct { const char *key; size_t off; int width; } t_fields[] = {
#define T_FIELD(m) {#m, offsetof(cb_stats, m), (int)sizeof(((cb_stats *)0)->m)}
    T_FIELD(generation), T_FIELD(admitted), T_FIELD(rejected), T_FIELD(successes),
    T_FIELD(failures), T_FIELD(ignored), T_FIELD(slow), T_FIELD(stale), T_FIELD(opens),
    T_FIELD(consecutive_failures), T_FIELD(window_calls), T_FIELD(window_failures),
    T_FIELD(window_slow), T_FIELD(in_flight), T_FIELD(state_since_ns),
    T_FIELD(last_failure_ns), T_FIELD(open_until_ns),
#undef T_FIELD
};

static uint64_t t_field(const cb_stats *s, size_t i)
{
    const char *p = (const char *)s + t_fields[i].off;
    uint32_t v32;
    uint64_t v64;
    if (t_fields[i].width == 4) {
        memcpy(&v32, p, 4);
        return v32;
    }
    memcpy(&v64, p, 8);
    return v64;
}

/* Parses f's JSON and compares every field with cb_stats_get. */
static void t_check_json(t_fix *f, const char *state)
{
    char buf[2048];
    cb_stats s = t_stats(f->b);
    int n = cb_format_json(f->b, buf, sizeof buf);
    REQUIRE(n > 0 && (size_t)n < sizeof buf);
    CHECK_EQ(strlen(buf), n);
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(buf, &end, 1);
    if (!j)
        t__fail(__FILE__, __LINE__, "not JSON at offset %td: %s", end ? end - buf : -1, buf);
    REQUIRE(j != NULL);
    CHECK(cJSON_IsObject(j));
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "name")), f->name);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "state")), state);
    for (size_t i = 0; i < sizeof t_fields / sizeof t_fields[0]; i++) {
        cJSON *v = cJSON_GetObjectItemCaseSensitive(j, t_fields[i].key);
        if (!cJSON_IsNumber(v))
            t__fail(__FILE__, __LINE__, "\"%s\" missing or not a number in %s", t_fields[i].key, buf);
        else if ((uint64_t)v->valuedouble != t_field(&s, i))
            t__fail(__FILE__, __LINE__, "\"%s\" is %.0f, stats say %" PRIu64, t_fields[i].key,
                    v->valuedouble, t_field(&s, i));
    }
    cJSON_Delete(j);
}

TEST(json_is_one_valid_object_with_the_name_state_and_every_stats_field)
{
    t_fix *f = t_new((cb_config){.name = "closed-one", .window_calls = 20,
                                 .failures_in_window = 6, .slow_call_ms = 10});
    cb_ticket held, t;
    CHECK(cb_allow(f->b, &held));
    t_calls(f->b, S, 3);
    t_at_ms(f, 2);
    t_calls(f->b, F, 2);
    CHECK(cb_allow(f->b, &t));
    t_at_ms(f, 40);
    cb_record(f->b, &t, F);
    cb_stats s = t_stats(f->b);          /* every window figure and the run are nonzero */
    CHECK(s.window_calls == 6 && s.window_failures == 3 && s.window_slow == 1);
    CHECK(s.consecutive_failures == 3 && s.in_flight == 1);
    t_check_json(f, "closed");

    f = t_busy("payments");
    CHECK_COUNTERS(f->b, 16, 3, 7, 6, 2, 1);
    s = t_stats(f->b);
    CHECK(s.generation == 1 && s.opens == 1 && s.slow == 1);
    CHECK(s.state_since_ns && s.last_failure_ns && s.open_until_ns);
    t_check_json(f, "open");
}

TEST(json_names_each_state_in_lower_case)
{
    static const char *names[] = {"closed", "open", "half_open", "forced_open", "disabled",
                                  "metrics_only"};
    t_fix *f = t_new((cb_config){0});
    char buf[2048];
    for (int st = 0; st <= CB_METRICS_ONLY; st++) {
        cb_set_state(f->b, (cb_state)st);
        cb_format_json(f->b, buf, sizeof buf);
        cJSON *j = cJSON_Parse(buf);
        REQUIRE(j != NULL);
        CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "state")), names[st]);
        cJSON_Delete(j);
    }
}

TEST(json_escapes_quotes_and_backslashes_in_the_name)
{
    static const char name[] = "a\"b\\c {\"x\": 1}";
    t_fix *f = t_new((cb_config){.name = name});
    char buf[2048];
    cb_format_json(f->b, buf, sizeof buf);
    cJSON *j = cJSON_Parse(buf);
    REQUIRE(j != NULL);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "name")), name);
    cJSON_Delete(j);
}

typedef int (*t_format)(t_fix *f, char *buf, size_t cap);
static int t_json(t_fix *f, char *buf, size_t cap) { return cb_format_json(f->b, buf, cap); }
static int t_prom(t_fix *f, char *buf, size_t cap)
{
    cb_breaker *list[2] = {f->b, f->b};
    return cb_format_prometheus(list, 2, buf, cap);
}

/* At every capacity: the full length back, the longest prefix that fits, a terminator,
   nothing written past cap. */
static void t_check_snprintf(t_format fmt, t_fix *f)
{
    static char full[16384], buf[16384 + 8];
    int n = fmt(f, NULL, 0);
    REQUIRE(n > 0 && (size_t)n < sizeof full);
    CHECK_EQ(fmt(f, full, sizeof full), n);
    CHECK_EQ(strlen(full), n);
    for (size_t cap = 0; cap <= (size_t)n + 2; cap++) {
        memset(buf, '#', sizeof buf);
        CHECK_EQ(fmt(f, buf, cap), n);
        size_t want = cap == 0 ? 0 : cap - 1 < (size_t)n ? cap - 1 : (size_t)n;
        if (cap > 0 && (memcmp(buf, full, want) != 0 || buf[want] != 0)) {
            t__fail(__FILE__, __LINE__, "cap %zu: not the %zu-byte prefix, terminated", cap, want);
            return;
        }
        if (buf[cap] != '#' || (cap == 0 && buf[0] != '#')) {
            t__fail(__FILE__, __LINE__, "cap %zu: wrote past the capacity", cap);
            return;
        }
    }
}

TEST(both_formats_have_snprintf_semantics_at_every_capacity)
{
    t_fix *f = t_busy("snp\"rintf\\");
    t_check_snprintf(t_json, f);
    t_check_snprintf(t_prom, f);
}

/* The value of the sample `metric{labels}` in text, or -1. */
static double t_sample(const char *text, const char *metric, const char *labels)
{
    char key[256];
    snprintf(key, sizeof key, "\n%s{%s} ", metric, labels);
    const char *p = strstr(text, key);
    return p ? strtod(p + strlen(key), NULL) : -1;
}

TEST(prometheus_samples_carry_the_name_label_and_counters_end_in_total)
{
    t_fix *f = t_busy("api");
    cb_breaker *list[2];
    cb_err err;
    cb_breaker *other = cb_new(&(cb_config){.name = "q\"t\\s"}, &err);
    REQUIRE(other != NULL);
    list[0] = f->b;
    list[1] = other;
    t_calls(other, S, 5);
    static char text[16384];
    int n = cb_format_prometheus(list, 2, text, sizeof text);
    REQUIRE(n > 0 && (size_t)n < sizeof text);
    CHECK(text[n - 1] == '\n');

    size_t samples = 0;
    char line[512];
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        REQUIRE(nl != NULL);
        snprintf(line, sizeof line, "%.*s", (int)(nl - p), p);
        p = nl + 1;
        if (strncmp(line, "# HELP cb_", 10) == 0)
            continue;
        if (strncmp(line, "# TYPE cb_", 10) == 0) {
            const char *type = strrchr(line, ' ') + 1;
            size_t len = (size_t)(type - 1 - (line + 7));
            CHECK(!strcmp(type, "counter") || !strcmp(type, "gauge"));
            if (!strcmp(type, "counter") && (len < 6 || strncmp(line + 7 + len - 6, "_total", 6)))
                t__fail(__FILE__, __LINE__, "counter without _total: %s", line);
            continue;
        }
        samples++;
        if (strncmp(line, "cb_", 3) != 0 ||
            (!strstr(line, "{name=\"api\"") && !strstr(line, "{name=\"q\\\"t\\\\s\"")))
            t__fail(__FILE__, __LINE__, "sample without cb_ or the name label: %s", line);
    }
    CHECK(samples >= 2 * 17);
    cb_stats s = t_stats(f->b);
    CHECK(t_sample(text, "cb_admitted_total", "name=\"api\"") == (double)s.admitted);
    double by_reason = 0;   /* one sample per reason, which sum to the total */
    for (unsigned r = CB_REJECT_OPEN; r <= CB_REJECT_BULKHEAD; r++) {
        char labels[64];
        snprintf(labels, sizeof labels, "name=\"api\",reason=\"%s\"", cb_reject_name((cb_reject)r));
        double v = t_sample(text, "cb_rejected_total", labels);
        CHECK(v == (double)s.rejected_by[r]);
        by_reason += v;
    }
    CHECK(by_reason == (double)s.rejected && s.rejected > 0);
    CHECK(t_sample(text, "cb_rejected_total", "name=\"api\"") == -1);
    CHECK(t_sample(text, "cb_stale_total", "name=\"api\"") == (double)s.stale);
    CHECK(t_sample(text, "cb_opens_total", "name=\"api\"") == 1);
    CHECK(t_sample(text, "cb_state", "name=\"api\",state=\"open\"") == 1);
    CHECK(t_sample(text, "cb_state", "name=\"api\",state=\"closed\"") == 0);
    CHECK(t_sample(text, "cb_retry_after_seconds", "name=\"api\"") == 3.025);
    CHECK(t_sample(text, "cb_successes_total", "name=\"q\\\"t\\\\s\"") == 5);
    CHECK(t_sample(text, "cb_state", "name=\"q\\\"t\\\\s\",state=\"closed\"") == 1);
    cb_free(other);
}

TEST(prometheus_with_no_breakers_is_empty_of_samples)
{
    char buf[8192];
    int n = cb_format_prometheus(NULL, 0, buf, sizeof buf);
    CHECK(n >= 0 && (size_t)n < sizeof buf);
    for (const char *p = buf; *p; p = strchr(p, '\n') + 1)
        CHECK(*p == '#');
}

TEST(a_registry_adds_finds_lists_and_removes_breakers_in_caller_memory)
{
    _Atomic(cb_breaker *) slots[3];
    cb_registry r;
    cb_breaker *list[4];
    cb_err err;
    cb_breaker *a = cb_new(&(cb_config){.name = "a"}, &err);
    cb_breaker *b = cb_new(&(cb_config){.name = "b"}, &err);
    cb_breaker *c = cb_new(&(cb_config){.name = "c"}, &err);
    cb_breaker *d = cb_new(&(cb_config){.name = "d"}, &err);
    REQUIRE(a && b && c && d);
    cb_registry_init(&r, slots, 3);
    CHECK_EQ(cb_registry_list(&r, list, 4), 0);
    CHECK_EQ(cb_registry_add(&r, NULL), CB_EINVAL);
    CHECK_EQ(cb_registry_add(&r, a), CB_OK);
    CHECK_EQ(cb_registry_add(&r, b), CB_OK);
    CHECK_EQ(cb_registry_add(&r, c), CB_OK);
    CHECK_EQ(cb_registry_add(&r, d), CB_ENOMEM);
    CHECK(cb_registry_find(&r, "b") == b);
    CHECK(cb_registry_find(&r, "d") == NULL);
    CHECK(cb_registry_find(&r, NULL) == NULL);
    CHECK_EQ(cb_registry_list(&r, list, 1), 3);           /* snprintf-like: how many there are */
    CHECK(list[0] == a);
    CHECK(cb_registry_remove(&r, b));
    CHECK(!cb_registry_remove(&r, b));
    CHECK(cb_registry_find(&r, "b") == NULL);
    CHECK_EQ(cb_registry_add(&r, d), CB_OK);              /* takes the freed slot */
    CHECK_EQ(cb_registry_list(&r, list, 4), 3);
    CHECK(list[0] == a && list[1] == d && list[2] == c);
    /* a name already held is refused, and nothing of it stays */
    cb_breaker *twin = cb_new(&(cb_config){.name = "a"}, &err);
    REQUIRE(twin);
    CHECK(cb_registry_remove(&r, c));
    CHECK_EQ(cb_registry_add(&r, twin), CB_EINVAL);
    CHECK_CONTAINS(cb_last_error(), "a breaker named 'a' is registered already");
    CHECK_EQ(cb_registry_add(&r, a), CB_EINVAL);           /* the same breaker twice, too */
    CHECK_EQ(cb_registry_list(&r, list, 4), 2);
    CHECK(cb_registry_find(&r, "a") == a);
    CHECK_EQ(cb_registry_add(&r, c), CB_OK);
    cb_free(twin);
    cb_free(a);
    cb_free(b);
    cb_free(c);
    cb_free(d);
}

TEST(a_registry_exports_a_json_array_and_one_prometheus_exposition)
{
    _Atomic(cb_breaker *) slots[4];
    cb_registry r;
    cb_err err;
    static char buf[16384];
    cb_breaker *a = cb_new(&(cb_config){.name = "first"}, &err);
    cb_breaker *b = cb_new(&(cb_config){.name = "sec\"ond"}, &err);
    REQUIRE(a && b);
    cb_registry_init(&r, slots, 4);
    int n = cb_registry_json(&r, buf, sizeof buf);
    CHECK_EQ(n, 2);
    CHECK_STR(buf, "[]");
    cb_registry_add(&r, a);
    cb_registry_add(&r, b);
    cb_set_state(b, CB_FORCED_OPEN);
    n = cb_registry_json(&r, buf, sizeof buf);
    REQUIRE(n > 0 && (size_t)n < sizeof buf);
    cJSON *j = cJSON_ParseWithOpts(buf, NULL, 1);
    REQUIRE(j != NULL);
    CHECK(cJSON_IsArray(j));
    CHECK_EQ(cJSON_GetArraySize(j), 2);
    cJSON *second = cJSON_GetArrayItem(j, 1);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(second, "name")), "sec\"ond");
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(second, "state")),
              "forced_open");
    cJSON_Delete(j);
    for (size_t cap = 0; cap <= (size_t)n + 1; cap++) {   /* snprintf semantics */
        static char small[16384];
        memset(small, '#', sizeof small);
        CHECK_EQ(cb_registry_json(&r, cap ? small : NULL, cap), n);
        if (cap && (strlen(small) != (cap - 1 < (size_t)n ? cap - 1 : (size_t)n) ||
                    strncmp(small, buf, strlen(small)) != 0 || small[cap] != '#')) {
            t__fail(__FILE__, __LINE__, "registry json at cap %zu: \"%s\"", cap, small);
            break;
        }
    }
    cb_breaker *both[2] = {a, b};
    static char direct[16384];
    n = cb_registry_prometheus(&r, buf, sizeof buf);
    CHECK_EQ(n, cb_format_prometheus(both, 2, direct, sizeof direct));
    CHECK_STR(buf, direct);
    cb_free(a);
    cb_free(b);
}
