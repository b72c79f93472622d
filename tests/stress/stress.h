/* stress.h - included first by every tests/stress_*.c, in place of cb.h.

   With -DSTRESS_YIELD, cb.h's CB_YIELD_POINT() (between each load and the CAS or store
   that depends on it) becomes a random pause, so that a race window of nanoseconds lasts
   microseconds and two threads meet in it on 2 cores (liburcu's debug-yield idea):
   1 point in 256 sleeps (nanosleep(1 us), some 50 us with Linux's default timer slack),
   1 in 8 gives the core away (sched_yield), 1 in 8 spins up to 63 rounds. The random
   numbers are per thread, so the pauses add no synchronisation of their own. */
#ifndef STRESS_H
#define STRESS_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#ifdef STRESS_YIELD
static _Thread_local uint64_t stress__yield_rng;

static void stress_yield(void)
{
    uint64_t x = stress__yield_rng;
    if (!x)
        x = (uint64_t)(uintptr_t)&stress__yield_rng | 1;   /* a different seed per thread */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    stress__yield_rng = x;
    if ((x & 255) == 0) {
        struct timespec ts = { 0, 1000 };
        nanosleep(&ts, NULL);
    } else if ((x & 7) == 1) {
        sched_yield();
    } else if ((x & 7) == 2) {
        for (unsigned i = (unsigned)(x >> 8) & 63; i; i--)
            atomic_signal_fence(memory_order_seq_cst);   /* keeps the loop */
    }
}
#define CB_YIELD_POINT() stress_yield()
#endif

#define CB_IMPLEMENTATION
#define CB_TEST_HOOKS
#include "cb.h"

#endif
