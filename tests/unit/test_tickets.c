/* Caller bugs cannot wedge a breaker (docs/semantics.md, Recording): a ticket counts at
   its first valid record only. A second record of it, a ticket of another breaker, a
   zeroed or NULL ticket return false and count nothing, and `in_flight` never goes below
   zero, so a bulkhead can never be shut for good by them. */
#define CB_IMPLEMENTATION
#include "cb.h"
#include "tests/t.h"

#define S CB_SUCCESS
#define F CB_FAILURE
#define I CB_IGNORED

/* Configs that take each record path: the inline one, the count window's short call, and
   the slow path (time window, slow calls, bulkhead). */
static const cb_config t_paths[] = {
    { .consecutive_failures = 3 },
    { .window_calls = 10, .failure_rate = 0.5 },
    { .window_ms = 1000, .failure_rate = 0.5 },
    { .slow_call_ms = 100, .consecutive_failures = 3 },
    { .max_concurrent = 1, .consecutive_failures = 3 },
};
#define T_NPATHS (sizeof t_paths / sizeof t_paths[0])

TEST(a_second_record_of_a_ticket_is_refused_and_counts_nothing)
{
    for (size_t p = 0; p < T_NPATHS; p++)
        for (cb_outcome o = S; o <= I; o++) {
            t_fix *f = t_new(t_paths[p]);
            cb_ticket t;
            CHECK(cb_allow(f->b, &t));
            CHECK(cb_record(f->b, &t, o));
            for (cb_outcome again = S; again <= I; again++)
                CHECK(!cb_record(f->b, &t, again));   /* the finally after the success path */
            CHECK_COUNTERS(f->b, 1, 0, o == S, o == F, o == I, 0);
            CHECK_EQ(t_stats(f->b).in_flight, 0);
            CHECK_EQ(t_stats(f->b).consecutive_failures, o == F);
            CHECK(cb_allow(f->b, &t));                /* and the breaker goes on */
            CHECK(cb_record(f->b, &t, S));
            CHECK_COUNTERS(f->b, 2, 0, 1 + (o == S), o == F, o == I, 0);
        }
}

TEST(a_double_record_cannot_drive_the_bulkhead_below_zero)
{
    t_fix *f = t_new((cb_config){.max_concurrent = 1, .consecutive_failures = 3});
    cb_ticket a, b, c;
    CHECK(cb_allow(f->b, &a));
    CHECK(cb_record(f->b, &a, S));
    CHECK(!cb_record(f->b, &a, S));
    CHECK(!cb_record(f->b, &a, I));
    CHECK_EQ(t_stats(f->b).in_flight, 0);
    CHECK(cb_allow(f->b, &b));       /* one place, taken again */
    CHECK(!cb_allow(f->b, &c));      /* and still counted: the limit holds */
    CHECK_EQ(t_stats(f->b).in_flight, 1);
    CHECK(cb_record(f->b, &b, F));
    CHECK(cb_allow(f->b, &c));
    CHECK(cb_record(f->b, &c, S));
    CHECK_COUNTERS(f->b, 3, 1, 2, 1, 0, 0);
    CHECK_EQ(t_stats(f->b).in_flight, 0);
}

TEST(a_stale_ticket_recorded_twice_is_stale_once)
{
    t_fix *f = t_new((cb_config){.max_concurrent = 2, .consecutive_failures = 1});
    cb_ticket a, b;
    CHECK(cb_allow(f->b, &a));
    CHECK(cb_allow(f->b, &b));
    CHECK(cb_record(f->b, &b, F));   /* trips: a is stale now */
    CHECK_STATE(f->b, CB_OPEN);
    CHECK(!cb_record(f->b, &a, S));
    CHECK(!cb_record(f->b, &a, S));
    CHECK_COUNTERS(f->b, 2, 0, 0, 1, 0, 1);
    CHECK_EQ(t_stats(f->b).in_flight, 0);
}

TEST(a_ticket_of_another_breaker_is_refused_by_it)
{
    for (size_t p = 0; p < T_NPATHS; p++) {
        cb_config ca = t_paths[p], cbb = t_paths[p];
        ca.name = "a";
        cbb.name = "b";
        cb_err e;
        cb_breaker *a = cb_new(&ca, &e), *b = cb_new(&cbb, &e);
        REQUIRE(a && b);
        cb_ticket t;
        CHECK(cb_allow(a, &t));
        for (cb_outcome o = S; o <= I; o++)
            CHECK(!cb_record(b, &t, o));
        cb_stats s = t_stats(b);
        CHECK_EQ(s.admitted + s.successes + s.failures + s.ignored + s.stale + s.in_flight, 0);
        cb_ticket u;
        CHECK(cb_allow(b, &u));          /* b's bulkhead is whole */
        CHECK(cb_record(b, &u, S));
        CHECK(cb_record(a, &t, F));      /* and a's own ticket still counts at a */
        CHECK_COUNTERS(a, 1, 0, 0, 1, 0, 0);
        CHECK_EQ(t_stats(a).in_flight, 0);
        cb_free(a);
        cb_free(b);
    }
}

TEST(a_ticket_of_a_breaker_made_before_in_the_same_memory_is_refused)
{
    static _Alignas(64) unsigned char mem[64 * 1024];
    cb_config c = { .max_concurrent = 1 };
    REQUIRE(cb_size(&c) <= sizeof mem);
    cb_breaker *b;
    REQUIRE(cb_init(mem, sizeof mem, &c, &b) == CB_OK);
    cb_ticket old;
    CHECK(cb_allow(b, &old));
    REQUIRE(cb_init(mem, sizeof mem, &c, &b) == CB_OK);   /* the same address, a new breaker */
    CHECK(!cb_record(b, &old, S));
    CHECK_EQ(t_stats(b).in_flight, 0);
    cb_ticket t;
    CHECK(cb_allow(b, &t));
    CHECK(cb_record(b, &t, S));
}

TEST(a_null_or_zeroed_ticket_is_refused_and_counts_nothing)
{
    for (size_t p = 0; p < T_NPATHS; p++) {
        t_fix *f = t_new(t_paths[p]);
        cb_ticket zero;
        memset(&zero, 0, sizeof zero);
        for (cb_outcome o = S; o <= I; o++) {
            CHECK(!cb_record(f->b, NULL, o));
            CHECK(!cb_record(f->b, &zero, o));
        }
        CHECK_COUNTERS(f->b, 0, 0, 0, 0, 0, 0);
        CHECK_EQ(t_stats(f->b).in_flight, 0);
        cb_ticket t;
        CHECK(cb_allow(f->b, &t));
        CHECK(cb_record(f->b, &t, S));
    }
}

TEST(a_rejected_ticket_recorded_any_number_of_times_counts_nothing)
{
    t_fix *f = t_new((cb_config){.max_concurrent = 1});
    cb_ticket a, r;
    CHECK(cb_allow(f->b, &a));
    CHECK(!cb_allow(f->b, &r));
    for (int i = 0; i < 5; i++)
        CHECK(!cb_record(f->b, &r, S));
    CHECK_EQ(t_stats(f->b).in_flight, 1);
    CHECK(cb_record(f->b, &a, S));
    CHECK_COUNTERS(f->b, 1, 1, 1, 0, 0, 0);
}

TEST(an_outcome_outside_the_enum_leaves_the_ticket_unspent)
{
    t_fix *f = t_new((cb_config){.max_concurrent = 1});
    cb_ticket t;
    CHECK(cb_allow(f->b, &t));
    CHECK(!cb_record(f->b, &t, (cb_outcome)7));
    CHECK_EQ(t_stats(f->b).in_flight, 1);
    CHECK(cb_record(f->b, &t, S));
    CHECK(!cb_record(f->b, &t, S));
    CHECK_EQ(t_stats(f->b).in_flight, 0);
}

TEST(a_probe_recorded_twice_is_one_probe)
{
    t_fix *f = t_new((cb_config){.consecutive_failures = 1, .open_ms = 100, .half_open_calls = 2,
                                 .max_concurrent = 4});
    cb_ticket t, p;
    CHECK(cb_allow(f->b, &t));
    CHECK(cb_record(f->b, &t, F));
    t_at_ms(f, 100);
    CHECK(cb_allow(f->b, &p));
    CHECK_STATE(f->b, CB_HALF_OPEN);
    CHECK(cb_record(f->b, &p, S));
    CHECK(!cb_record(f->b, &p, S));   /* not the second probe that would close it */
    CHECK_STATE(f->b, CB_HALF_OPEN);
    CHECK(!cb_record(f->b, &p, F));   /* nor a failed one that would re-open it */
    CHECK_STATE(f->b, CB_HALF_OPEN);
    CHECK_EQ(t_stats(f->b).in_flight, 0);
}

TEST(a_disabled_call_recorded_twice_gives_its_place_back_once)
{
    t_fix *f = t_new((cb_config){.max_concurrent = 1});
    REQUIRE(cb_set_state(f->b, CB_DISABLED) == CB_OK);
    cb_ticket a, b;
    CHECK(cb_allow(f->b, &a));
    CHECK(cb_allow(f->b, &b));
    CHECK_EQ(t_stats(f->b).in_flight, 2);
    CHECK(!cb_record(f->b, &a, S));   /* DISABLED records nothing, but gives the place */
    CHECK(!cb_record(f->b, &a, S));
    CHECK(!cb_record(f->b, &a, S));
    CHECK_EQ(t_stats(f->b).in_flight, 1);   /* b still holds its own */
    CHECK(!cb_record(f->b, &b, S));
    CHECK_EQ(t_stats(f->b).in_flight, 0);
}

/* Every refusal says why on its ticket, and is counted by its reason. */
TEST(a_rejected_ticket_says_why_and_each_reason_is_counted)
{
    t_fix *f = t_new((cb_config){.consecutive_failures = 1, .open_ms = 1000, .half_open_calls = 1,
                                 .max_concurrent = 1});
    cb_ticket a, b;
    CHECK(cb_allow(f->b, &a));
    CHECK_EQ(cb_ticket_rejected(&a), CB_REJECT_NONE);
    CHECK(!cb_allow(f->b, &b));                          /* the one place is held */
    CHECK_EQ(cb_ticket_rejected(&b), CB_REJECT_BULKHEAD);
    CHECK(cb_record(f->b, &a, F));                       /* opens */
    CHECK(!cb_allow(f->b, &b));
    CHECK_EQ(cb_ticket_rejected(&b), CB_REJECT_OPEN);
    CHECK(cb_retry_after_ms(f->b) > 0);
    t_at_ms(f, 1000);
    CHECK(cb_allow(f->b, &a));                           /* the probe */
    CHECK(!cb_allow(f->b, &b));
    CHECK_EQ(cb_ticket_rejected(&b), CB_REJECT_HALF_OPEN_FULL);   /* both hold: the round first */
    CHECK(cb_record(f->b, &a, S));                       /* closes */
    CHECK_EQ(cb_set_state(f->b, CB_FORCED_OPEN), CB_OK);
    CHECK(!cb_allow(f->b, &b));
    CHECK_EQ(cb_ticket_rejected(&b), CB_REJECT_FORCED_OPEN);
    CHECK(!cb_record(f->b, &b, S));                      /* a rejected ticket records nothing */
    CHECK_EQ(cb_ticket_rejected(&b), CB_REJECT_FORCED_OPEN);
    cb_stats s = t_stats(f->b);
    CHECK_EQ(s.rejected, 4);
    CHECK_EQ(s.rejected_by[CB_REJECT_NONE], 0);
    CHECK_EQ(s.rejected_by[CB_REJECT_BULKHEAD], 1);
    CHECK_EQ(s.rejected_by[CB_REJECT_OPEN], 1);
    CHECK_EQ(s.rejected_by[CB_REJECT_HALF_OPEN_FULL], 1);
    CHECK_EQ(s.rejected_by[CB_REJECT_FORCED_OPEN], 1);
    char json[2048];
    CHECK(cb_format_json(f->b, json, sizeof json) > 0);
    CHECK_CONTAINS(json, "\"rejected\":4,");
    CHECK_CONTAINS(json, "\"rejected_by\":{\"open\":1,\"forced_open\":1,\"half_open_full\":1,\"bulkhead\":1}");
    CHECK(strcmp(cb_reject_name(CB_REJECT_HALF_OPEN_FULL), "half_open_full") == 0);
    CHECK(strcmp(cb_reject_name((cb_reject)99), "unknown") == 0);
    CHECK_EQ(cb_ticket_rejected(NULL), CB_REJECT_NONE);
    cb_ticket zero = {0};
    CHECK_EQ(cb_ticket_rejected(&zero), CB_REJECT_NONE);
}
