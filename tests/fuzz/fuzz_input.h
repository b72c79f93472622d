/* What the differential fuzz targets share: reading the input as a stream of bytes (zeros
   past its end, so every input is a whole program) and the trace of FUZZ_TRACE=1. */
#ifndef FUZZ_INPUT_H
#define FUZZ_INPUT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct input { const uint8_t *p; size_t n; } input;

static uint8_t byte(input *in)   /* past the end: zeros */
{
    if (!in->n)
        return 0;
    in->n--;
    return *in->p++;
}

static uint64_t bytes(input *in, int n)
{
    uint64_t v = 0;
    while (n--)
        v = v << 8 | byte(in);
    return v;
}

static bool trace;   /* FUZZ_TRACE set: say() prints the decoded program */

static void say(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    if (!trace)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

#endif
