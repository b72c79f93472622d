/* redis_breaker - the smallest useful cb.h program: GETs from Redis through a breaker,
   with a fallback while the breaker is open.

       cc -std=c11 -O2 -I.. redis_breaker.c -lhiredis -o redis_breaker
       ./redis_breaker [PORT]       (then stop Redis, or SIGSTOP it, and start it again)

   Copy the shape: cb_allow() before the call, exactly one cb_record() after it, and a
   fallback that costs nothing when the breaker says no. */
#define _POSIX_C_SOURCE 200809L
#define CB_IMPLEMENTATION
#include "../cb.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void print_transition(const cb_event *ev, void *user) {
    (void)user;
    printf("breaker %s: %s -> %s (%s)\n", ev->name, cb_state_name(ev->from), cb_state_name(ev->to),
           cb_reason_name(ev->reason));
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 6379;
    struct timeval timeout = {0, 200 * 1000};
    cb_config cfg = {.name = "redis", .consecutive_failures = 5, .open_ms = 2000,
                     .on_event = print_transition};
    cb_err err;
    cb_breaker *b = cb_new(&cfg, &err);
    if (!b) {
        fprintf(stderr, "cb_new: %s\n", cb_strerror(err));
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);          /* a reset connection is a failed call, not our death */
    setvbuf(stdout, NULL, _IOLBF, 0); /* one line per call, even into a pipe */
    redisContext *c = NULL;
    for (int i = 0; i < 600; i++) { /* one minute at 10 calls/s */
        cb_ticket t;
        if (!cb_allow(b, &t)) {
            printf("GET skipped: breaker open, retry in %llu ms (fallback: cached value)\n",
                   (unsigned long long)cb_retry_after_ms(b));
        } else {
            if (!c || c->err) { /* reconnect inside the admitted call: no traffic while open */
                if (c)
                    redisFree(c);
                c = redisConnectWithTimeout("127.0.0.1", port, timeout);
                if (c && !c->err)
                    redisSetTimeout(c, timeout);
            }
            redisReply *r = c && !c->err ? redisCommand(c, "GET greeting") : NULL;
            bool ok = r && r->type != REDIS_REPLY_ERROR;
            cb_record(b, &t, ok ? CB_SUCCESS : CB_FAILURE);
            printf("GET %s\n", ok ? "ok" : c && c->errstr[0] ? c->errstr : "failed");
            if (r)
                freeReplyObject(r);
        }
        nanosleep(&(struct timespec){0, 100 * 1000 * 1000}, NULL);
    }
    if (c)
        redisFree(c);
    cb_free(b);
    return 0;
}
