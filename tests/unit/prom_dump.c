/* Prints a Prometheus exposition of three breakers in different states (one with a name
   that needs escaping) for `make test-promtool` to check with promtool. */
#define CB_IMPLEMENTATION
#include "cb.h"

#include <stdio.h>
#include <stdlib.h>

static void calls(cb_breaker *b, cb_outcome o, int n)
{
    for (int i = 0; i < n; i++) {
        cb_ticket t;
        if (cb_allow(b, &t))
            cb_record(b, &t, o);
    }
}

int main(void)
{
    cb_err err;
    cb_breaker *bs[3] = {
        cb_new(&(cb_config){.name = "api", .window_calls = 20, .failure_rate = 0.5}, &err),
        cb_new(&(cb_config){.name = "cache", .consecutive_failures = 3, .slow_call_ms = 1}, &err),
        cb_new(&(cb_config){.name = "we\"ird\\name {x=1}"}, &err),
    };
    for (int i = 0; i < 3; i++)
        if (!bs[i]) {
            fprintf(stderr, "prom_dump: cb_new: %s\n", cb_strerror(err));
            return 1;
        }
    calls(bs[0], CB_SUCCESS, 30);
    calls(bs[0], CB_FAILURE, 5);
    calls(bs[0], CB_IGNORED, 2);
    calls(bs[1], CB_FAILURE, 3);
    calls(bs[1], CB_SUCCESS, 4);
    cb_set_state(bs[2], CB_METRICS_ONLY);
    calls(bs[2], CB_FAILURE, 9);

    int n = cb_format_prometheus(bs, 3, NULL, 0);
    char *buf = malloc((size_t)n + 1);
    if (n <= 0 || !buf || cb_format_prometheus(bs, 3, buf, (size_t)n + 1) != n) {
        fprintf(stderr, "prom_dump: cb_format_prometheus failed\n");
        return 1;
    }
    fputs(buf, stdout);
    free(buf);
    for (int i = 0; i < 3; i++)
        cb_free(bs[i]);
    return 0;
}
