/* How the cost of one protected call moves with the caller's stack placement: the CLOSED
   success loop (consecutive failures only) timed at each of 64 stack offsets, cache-line
   steps over a 4 KiB page, best of 5 runs of 10^6 calls each. `make bench-layout`.
   Prints "offset-of-the-ticket-in-its-page:ns" per offset, and the spread; with a file
   argument, also writes them there as JSON (make bench: build/bench/out/layout.json, which the
   report quotes). The layout of the breaker itself (heap) stays fixed within the process.
   usage: layout_sweep [OUT.json] */
#define _POSIX_C_SOURCE 200809L
#define CB_IMPLEMENTATION
#include "cb.h"

#include <alloca.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static const int rc_success = 0;

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

__attribute__((noinline)) static int protected_call(const void *arg)
{
    __asm__ volatile("" : : "r"(arg) : "memory");
    return *(const int *)arg;
}

__attribute__((noinline)) static double best_ns(cb_breaker *b, unsigned *page_offset)
{
    enum { CALLS = 1000000, RUNS = 5 };
    cb_ticket t;
    *page_offset = (unsigned)((uintptr_t)&t & 4095u);
    double best = 1e300;
    for (int r = 0; r < RUNS; r++) {
        double start = now_ns();
        for (int i = 0; i < CALLS; i++) {
            bool admitted = cb_allow(b, &t);
            if (admitted)
                cb_record(b, &t, protected_call(&rc_success) ? CB_FAILURE : CB_SUCCESS);
            __asm__ volatile("" : : "r"(admitted) : "memory");
        }
        double ns = (now_ns() - start) / CALLS;
        best = ns < best ? ns : best;
    }
    return best;
}

__attribute__((noinline)) static double at_offset(cb_breaker *b, size_t pad, unsigned *page_offset)
{
    volatile char *p = alloca(pad + 1);
    p[0] = 0;
    double ns = best_ns(b, page_offset);
    __asm__ volatile("" : : "r"(p) : "memory");
    return ns;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc > 2) {
        fprintf(stderr, "usage: layout_sweep [OUT.json]\n");
        return 2;
    }
    cb_config cfg = { .consecutive_failures = 5 };
    cb_err err;
    cb_breaker *b = cb_new(&cfg, &err);
    if (!b) {
        fprintf(stderr, "layout_sweep: cb_new: %s\n", cb_strerror(err));
        return 1;
    }
    double ns[64], sorted[64];
    for (int i = 0; i < 64; i++) {
        unsigned off;
        ns[i] = at_offset(b, (size_t)i * 64, &off);
        printf("%03x:%.1f%s", off, ns[i], i % 8 == 7 ? "\n" : " ");
    }
    for (int i = 0; i < 64; i++)
        sorted[i] = ns[i];
    qsort(sorted, 64, sizeof sorted[0], by_value);
    double median = (sorted[31] + sorted[32]) / 2;
    printf("ns per call over 64 stack offsets: min %.2f, median %.2f, max %.2f\n", sorted[0],
           median, sorted[63]);
    if (argc == 2) {
        FILE *f = fopen(argv[1], "w");
        if (!f) {
            fprintf(stderr, "layout_sweep: %s: cannot write\n", argv[1]);
            return 1;
        }
        fprintf(f, "{\"benchmark\": \"CLOSED success, consecutive failures only\", \"ns\": [");
        for (int i = 0; i < 64; i++)
            fprintf(f, "%s%.3f", i ? ", " : "", ns[i]);
        fprintf(f, "], \"min\": %.3f, \"median\": %.3f, \"max\": %.3f}\n", sorted[0], median,
                sorted[63]);
        if (fclose(f) != 0) {
            fprintf(stderr, "layout_sweep: %s: cannot write\n", argv[1]);
            return 1;
        }
    }
    cb_free(b);
    return 0;
}
