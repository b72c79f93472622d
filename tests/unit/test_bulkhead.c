/* max_concurrent: at most N calls in flight in every admitting state but DISABLED (whose
   calls still count as in flight); a rejection for the limit counts in `rejected`, trips
   nothing and frees nothing; every kind of record (success, failure, ignored, stale)
   gives the slot back. */
#define CB_IMPLEMENTATION
#include "cb.h"
#include "tests/t.h"

#define S CB_SUCCESS
#define F CB_FAILURE
#define I CB_IGNORED

TEST(closed_admits_at_most_max_concurrent_calls_in_flight)
{
    t_fix *f = t_new((cb_config){.max_concurrent = 2, .consecutive_failures = 1});
    cb_ticket a, b, c;
    CHECK(cb_allow(f->b, &a));
    CHECK(cb_allow(f->b, &b));
    CHECK_EQ(t_stats(f->b).in_flight, 2);
    for (int i = 0; i < 10; i++)
        CHECK(!cb_allow(f->b, &c));
    CHECK_STATE(f->b, CB_CLOSED);             /* a full bulkhead is no failure */
    CHECK_NO_EVENT(f);
    CHECK(!cb_record(f->b, &c, F));           /* its rejected ticket records nothing */
    CHECK_STATE(f->b, CB_CLOSED);
    CHECK_COUNTERS(f->b, 2, 10, 0, 0, 0, 0);

    CHECK(cb_record(f->b, &a, S));
    CHECK_EQ(t_stats(f->b).in_flight, 1);
    CHECK(cb_allow(f->b, &c));
    CHECK(!cb_allow(f->b, &a));
    CHECK(cb_record(f->b, &b, I));            /* ignored gives the slot back too */
    CHECK(cb_allow(f->b, &a));
    CHECK(cb_record(f->b, &a, S));
    CHECK(cb_record(f->b, &c, S));
    CHECK_EQ(t_stats(f->b).in_flight, 0);
    CHECK_COUNTERS(f->b, 4, 11, 3, 0, 1, 0);
}

TEST(a_stale_record_gives_its_slot_back)
{
    t_fix *f = t_new((cb_config){.max_concurrent = 1, .consecutive_failures = 1});
    cb_ticket a, b;
    CHECK(cb_allow(f->b, &a));
    CHECK(!cb_allow(f->b, &b));
    cb_set_state(f->b, CB_CLOSED);            /* a is now stale, still in flight */
    CHECK(!cb_allow(f->b, &b));
    CHECK(!cb_record(f->b, &a, F));
    CHECK_EQ(t_stats(f->b).in_flight, 0);
    CHECK(cb_allow(f->b, &b));
    CHECK(cb_record(f->b, &b, S));
    CHECK_COUNTERS(f->b, 2, 2, 1, 0, 0, 1);
}

TEST(calls_rejected_while_open_take_no_slot)
{
    t_fix *f = t_new((cb_config){.max_concurrent = 1, .consecutive_failures = 1,
                                 .open_ms = 1000});
    cb_ticket t;
    t_call(f->b, F);
    CHECK_EVENT(f, CB_CLOSED, CB_OPEN, CB_REASON_CONSECUTIVE_FAILURES, 1, 1000);
    for (int i = 0; i < 5; i++)
        CHECK(!cb_allow(f->b, &t));
    CHECK_EQ(t_stats(f->b).in_flight, 0);
    t_at_ms(f, 1000);
    CHECK(cb_allow(f->b, &t));                /* the probe gets the one slot */
    CHECK_EVENT(f, CB_OPEN, CB_HALF_OPEN, CB_REASON_OPEN_ELAPSED, 2, 0);
}

TEST(half_open_admits_the_smaller_of_its_permits_and_the_free_slots)
{
    t_fix *f = t_new((cb_config){.max_concurrent = 2, .half_open_calls = 3,
                                 .consecutive_failures = 1, .open_ms = 1000});
    cb_ticket p[3];
    t_call(f->b, F);
    t_at_ms(f, 1000);
    CHECK(cb_allow(f->b, &p[0]));
    CHECK(cb_allow(f->b, &p[1]));
    CHECK(!cb_allow(f->b, &p[2]));            /* permit free, slot not */
    CHECK_STATE(f->b, CB_HALF_OPEN);
    CHECK(cb_record(f->b, &p[0], S));
    CHECK(cb_allow(f->b, &p[2]));
    CHECK(cb_record(f->b, &p[1], S));
    CHECK(cb_record(f->b, &p[2], S));
    CHECK_STATE(f->b, CB_CLOSED);
    CHECK_EQ(t_stats(f->b).in_flight, 0);
}

TEST(metrics_only_keeps_the_limit_and_disabled_bypasses_it)
{
    t_fix *f = t_new((cb_config){.max_concurrent = 1});
    cb_ticket a, b;
    cb_set_state(f->b, CB_METRICS_ONLY);
    CHECK(cb_allow(f->b, &a));
    CHECK(!cb_allow(f->b, &b));
    CHECK(cb_record(f->b, &a, F));
    cb_set_state(f->b, CB_DISABLED);
    CHECK(cb_allow(f->b, &a));
    CHECK(cb_allow(f->b, &b));
    CHECK(!cb_record(f->b, &a, S));
    CHECK(!cb_record(f->b, &b, S));
    CHECK_EQ(t_stats(f->b).in_flight, 0);
    cb_set_state(f->b, CB_CLOSED);             /* DISABLED calls left no slot taken */
    CHECK(cb_allow(f->b, &a));
    CHECK(!cb_allow(f->b, &b));
    CHECK(cb_record(f->b, &a, S));
}

TEST(a_disabled_call_still_in_flight_after_leaving_disabled_holds_a_slot)
{
    /* DISABLED bypasses the limit, but its calls are in flight like any other */
    t_fix *f = t_new((cb_config){.max_concurrent = 1});
    cb_ticket d, a;
    cb_set_state(f->b, CB_DISABLED);
    CHECK(cb_allow(f->b, &d));
    cb_set_state(f->b, CB_CLOSED);
    CHECK_EQ(t_stats(f->b).in_flight, 1);
    CHECK(!cb_allow(f->b, &a));
    CHECK(!cb_record(f->b, &d, S));            /* stale, and its slot comes back */
    CHECK_EQ(t_stats(f->b).in_flight, 0);
    CHECK(cb_allow(f->b, &a));
    CHECK(cb_record(f->b, &a, S));
    CHECK_COUNTERS(f->b, 2, 1, 1, 0, 0, 1);
}
