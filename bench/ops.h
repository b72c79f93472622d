/* Benchmark operations, shared by the harness (cb_bench.c) and the Google Benchmark
   cross-check (xcheck.cc). Each operation's timed loop is compiled once, as C, so both
   harnesses time exactly the same machine code and differ only in how they time it. */
#ifndef BENCH_OPS_H
#define BENCH_OPS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bench_op {
    const char *name;                    /* fixed: outside tools read it */
    /* once per run, before its threads start (threads: how many the run has); NULL: failed */
    void *(*setup)(const void *param, int threads);
    void (*loop)(void *ctx, uint64_t n); /* n calls; every thread of a run shares ctx */
    void (*teardown)(void *ctx);
    const void *param;
    unsigned items;                      /* items per call, reported as items_per_second; 0: none */
} bench_op;

extern const bench_op bench_ops[];
extern const size_t bench_ops_count;

/* Call first, in every harness: starts and joins a thread, so that glibc leaves its
   single-threaded shortcuts (a mutex without a locked instruction, for one) in every run,
   as it does in the multi-threaded services a breaker serves. */
void bench_init(void);

/* Run op's timed loop: what both harnesses time. Each call runs the loop at a random one
   of 64 stack offsets (cache-line steps over a 4 KiB page): on some machines a layout
   where the caller's stack aliases a breaker's hot line modulo 4 KiB costs up to 60% more
   (bench/notes.md), so a median over repetitions is a median over layouts, not one
   layout's luck. */
void bench_run_loop(const bench_op *op, void *ctx, uint64_t n);

/* Thread counts each operation runs with: 1, 2, 4, ... and ncpu, as Google Benchmark's
   ThreadRange(1, ncpu). Returns how many were written to out (at most max). */
size_t bench_thread_counts(int ncpu, int *out, size_t max);

#ifdef __cplusplus
}
#endif

#endif
