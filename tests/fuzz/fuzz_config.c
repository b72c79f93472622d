/* fuzz_config.c - arbitrary configs into cb_config_check, cb_config_resolve, cb_size,
   cb_init and cb_new: never a crash, validity and every default as the reference model
   (tests/fuzz/model.c) has them, an error message that names the field, and a breaker that
   fits in exactly cb_size() bytes at any alignment. */
#define CB_IMPLEMENTATION
#include "cb.h"
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAIL(...) (fprintf(stderr, "fuzz_config: " __VA_ARGS__), abort())

typedef struct input { const uint8_t *p; size_t n; } input;

static void take(input *in, void *out, size_t n)   /* past the end: zeros */
{
    size_t k = in->n < n ? in->n : n;
    memset(out, 0, n);
    memcpy(out, in->p, k);
    in->p += k;
    in->n -= k;
}

static uint8_t byte(input *in)
{
    uint8_t b;
    take(in, &b, 1);
    return b;
}

/* A field is zero (its default), small, or any bit pattern (NaN, inf, huge). */
static uint32_t u32(input *in)
{
    uint32_t v;
    uint8_t how = byte(in);
    if (how < 64)
        return 0;
    if (how < 192)
        return byte(in);
    take(in, &v, sizeof v);
    return v;
}

static double f64(input *in)
{
    double v;
    uint8_t how = byte(in);
    if (how < 64)
        return 0;
    if (how < 192)
        return byte(in) / 64.0;   /* 0 .. 4 in steps of 1/64: both sides of every bound */
    take(in, &v, sizeof v);
    return v;
}

static bool same_config(const cb_config *a, const cb_config *b)
{
    return !strcmp(a->name, b->name) && a->consecutive_failures == b->consecutive_failures &&
           a->window_calls == b->window_calls && a->window_ms == b->window_ms &&
           a->window_buckets == b->window_buckets && a->minimum_calls == b->minimum_calls &&
           a->failure_rate == b->failure_rate && a->failures_in_window == b->failures_in_window &&
           a->slow_call_ms == b->slow_call_ms && a->slow_call_rate == b->slow_call_rate &&
           a->max_concurrent == b->max_concurrent && a->open_ms == b->open_ms &&
           a->backoff == b->backoff && a->max_open_ms == b->max_open_ms &&
           a->jitter == b->jitter && a->half_open_calls == b->half_open_calls &&
           a->probe_timeout_ms == b->probe_timeout_ms && a->seed == b->seed &&
           a->warn_failure_rate == b->warn_failure_rate;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    input in = {data, size};
    char name[72];
    cb_config c = {0};
    uint8_t name_len = byte(&in);
    if (name_len < sizeof name) {  /* else NULL: the default name */
        take(&in, name, name_len);
        name[name_len] = 0;
        c.name = name;
    }
    c.consecutive_failures = u32(&in);
    c.window_calls = u32(&in);
    c.window_ms = u32(&in);
    c.window_buckets = u32(&in);
    c.minimum_calls = u32(&in);
    c.failure_rate = f64(&in);
    c.failures_in_window = u32(&in);
    c.slow_call_ms = u32(&in);
    c.slow_call_rate = f64(&in);
    c.max_concurrent = u32(&in);
    c.open_ms = u32(&in);
    c.backoff = f64(&in);
    c.max_open_ms = u32(&in);
    c.jitter = f64(&in);
    c.half_open_calls = u32(&in);
    c.probe_timeout_ms = u32(&in);
    take(&in, &c.seed, byte(&in) & 1 ? sizeof c.seed : 0);
    size_t msg_len = byte(&in) % 96;
    size_t align = byte(&in) % 64;
    c.warn_failure_rate = f64(&in);   /* last: the bytes before keep their meaning */

    cb_config want, got;
    cb_err merr = model_resolve(&c, &want);
    char msg[96 + 1];
    memset(msg, 0x55, sizeof msg);
    cb_err err = cb_config_check(&c, msg, msg_len);
    if (err != merr)
        FAIL("cb_config_check: cb.h %d, model %d\n", err, merr);
    if (msg[msg_len] != 0x55)
        FAIL("cb_config_check wrote past msg_len %zu\n", msg_len);
    if (msg_len && !memchr(msg, 0, msg_len))
        FAIL("cb_config_check left msg unterminated\n");
    size_t need = cb_size(&c);
    if (merr) {
        char full[256];
        cb_config_check(&c, full, sizeof full);
        if (strncmp(full, "cb_config.", 10) || strlen(full) < 14)
            FAIL("message names no field: \"%s\"\n", full);
        if (need)
            FAIL("cb_size of an invalid config: %zu\n", need);
        cb_breaker *b = cb_new(&c, &err);
        if (b || err != CB_EINVAL)
            FAIL("cb_new of an invalid config: %p, %d\n", (void *)b, err);
        return 0;
    }
    if (cb_config_resolve(&c, &got, NULL, 0) != CB_OK || !same_config(&got, &want))
        FAIL("cb_config_resolve differs from the model\n");
    if (!need)
        FAIL("cb_size of a valid config is 0\n");

    /* exactly cb_size bytes at any alignment, so ASan sees every byte past them */
    char *mem = malloc(align + need);
    cb_breaker *b = NULL;
    if (!mem)
        return 0;
    if (cb_init(mem + align, need - 1, &c, &b) != CB_EINVAL || b)
        FAIL("cb_init accepted %zu bytes, cb_size said %zu\n", need - 1, need);
    if (cb_init(mem + align, need, &c, &b) != CB_OK)
        FAIL("cb_init failed in cb_size bytes\n");
    cb_config_get(b, &got);
    if (want.seed == 0 && got.seed == 0)
        FAIL("seed 0: the breaker drew none\n");
    if (want.seed == 0)
        got.seed = 0;   /* drawn when it was made: the rest must be the resolved config */
    if (!same_config(&got, &want))
        FAIL("cb_config_get differs from the resolved config\n");
    cb_ticket t;
    if (!cb_allow(b, &t) || !cb_record(b, &t, CB_FAILURE))
        FAIL("a fresh breaker rejected its first call\n");
    free(mem);

    b = cb_new(&c, &err);
    if (!b || err != CB_OK)
        FAIL("cb_new of a valid config: %d\n", err);
    cb_free(b);
    return 0;
}
