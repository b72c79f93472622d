/* workload.h - what the chaos workload programs (redis_client, model_loader, log_shipper)
   share: the clock, option parsing, the JSON-lines log, latency percentiles, the summary,
   and the options and summary of a keyed group.

   Every log line is one JSON object. Times are CLOCK_MONOTONIC ns, the breaker's default
   clock and Python's time.monotonic_ns(), so the harness can line up calls, transitions
   and the faults it injected without converting anything.

   Header only, included by one .c file per program, after cb.h. */
#ifndef WORKLOAD_H_INCLUDED
#define WORKLOAD_H_INCLUDED

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../tools/cbflags.h"

static inline uint64_t wl_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Sleep until an absolute CLOCK_MONOTONIC time (ns). */
static inline void wl_sleep_until(uint64_t t_ns) {
    struct timespec ts = {(time_t)(t_ns / 1000000000u), (long)(t_ns % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static inline void wl_sleep_ms(uint64_t ms) { wl_sleep_until(wl_now_ns() + ms * 1000000u); }

/* s as a JSON string body (quotes, backslashes and control bytes escaped). */
static inline const char *wl_json_str(const char *s, char *buf, size_t cap) {
    size_t n = 0;
    for (; *s && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            buf[n++] = '\\', buf[n++] = (char)c;
        else if (c < 0x20)
            n += (size_t)snprintf(buf + n, cap - n, "\\u%04x", c);
        else
            buf[n++] = (char)c;
    }
    buf[n] = '\0';
    return buf;
}

/* ---- options: breaker flags (cbflags.h) plus a table of the program's own ---- */

enum wl_opt_type { WL_U32, WL_DBL, WL_STR };

typedef struct wl_opt {
    const char *flag; /* without the leading "--" */
    enum wl_opt_type type;
    void *ptr;
    const char *help;
} wl_opt;

static inline void wl_usage(FILE *f, const char *prog, const char *what, const wl_opt *opts, size_t n) {
    fprintf(f, "usage: %s [options] [breaker flags]\n%s\noptions:\n", prog, what);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "  --%s%-*s %s\n", opts[i].flag, (int)(20 - strlen(opts[i].flag)), "=V",
                opts[i].help);
    fputs("  --dry-run              check the flags, print them resolved as JSON, run nothing\n", f);
    fputs(CBFLAGS_USAGE, f);
}

/* --dry-run: check the flags, print what they resolve to, run nothing. */
static bool wl_dry_run;

/* Parses argv into the program options and cfg. On a bad or unknown flag prints an error
   naming it and returns 2 (the exit status); --help prints usage and returns 0;
   -1 means go on. */
static inline int wl_parse_args(int argc, char **argv, const char *prog, const char *what,
                                const wl_opt *opts, size_t n, cb_config *cfg) {
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        char err[256];
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
            wl_usage(stdout, prog, what, opts, n);
            return 0;
        }
        if (!strcmp(arg, "--dry-run")) {
            wl_dry_run = true;
            continue;
        }
        int r = cbflags_parse(arg, cfg, err, sizeof err);
        if (r < 0) {
            fprintf(stderr, "%s: %s\n", prog, err);
            return 2;
        }
        if (r > 0)
            continue;
        const wl_opt *o = NULL;
        const char *eq = strchr(arg, '=');
        size_t klen = eq ? (size_t)(eq - arg) : strlen(arg);
        for (size_t i = 0; i < n && !o; i++)
            if (klen == strlen(opts[i].flag) + 2 && !strncmp(arg, "--", 2) &&
                !strncmp(arg + 2, opts[i].flag, klen - 2))
                o = &opts[i];
        if (!o) {
            fprintf(stderr, "%s: unknown flag '%s' (see --help)\n", prog, arg);
            return 2;
        }
        const char *val = eq ? eq + 1 : NULL;
        uint64_t u;
        double d;
        bool ok = val && *val;
        if (ok && o->type == WL_U32 && (ok = cbflags__unsigned(val, UINT32_MAX, &u)))
            *(uint32_t *)o->ptr = (uint32_t)u;
        else if (ok && o->type == WL_DBL && (ok = cbflags__double(val, &d)))
            *(double *)o->ptr = d;
        else if (ok && o->type == WL_STR)
            *(const char **)o->ptr = val;
        if (!ok) {
            fprintf(stderr, "%s: --%s: bad value '%s' (want %s)\n", prog, o->flag, val ? val : "",
                    o->type == WL_U32 ? "an integer 0..4294967295"
                    : o->type == WL_DBL ? "a number" : "a non-empty value");
            return 2;
        }
    }
    return -1;
}

/* Prints {"options":{flag:value,...},"breaker":{resolved cb_config}} for --dry-run. */
static inline int wl_print_resolved(const wl_opt *opts, size_t n, const cb_breaker *b) {
    cb_config cfg;
    char buf[2048];
    printf("{\"options\":{");
    for (size_t i = 0; i < n; i++) {
        printf("%s\"%s\":", i ? "," : "", opts[i].flag);
        switch (opts[i].type) {
        case WL_U32: printf("%" PRIu32, *(uint32_t *)opts[i].ptr); break;
        case WL_DBL: printf("%.17g", *(double *)opts[i].ptr); break;
        case WL_STR: {
            const char *v = *(const char **)opts[i].ptr;
            if (v)
                printf("\"%s\"", wl_json_str(v, buf, sizeof buf));
            else
                printf("null");
        } break;
        }
    }
    cb_config_get(b, &cfg);
    cbflags_json(&cfg, buf, sizeof buf);
    printf("},\"breaker\":%s}\n", buf);
    return 0;
}

/* ---- the JSON-lines log ---- */

static struct {
    FILE *f;
    pthread_mutex_t mu;
} wl_log_ = {NULL, PTHREAD_MUTEX_INITIALIZER};

static inline bool wl_log_open(const char *path) {
    wl_log_.f = path ? fopen(path, "w") : stdout;
    return wl_log_.f != NULL;
}

static inline void wl_log(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&wl_log_.mu);
    vfprintf(wl_log_.f, fmt, ap);
    fputc('\n', wl_log_.f);
    pthread_mutex_unlock(&wl_log_.mu);
    va_end(ap);
}

static inline void wl_log_close(void) {
    if (wl_log_.f && wl_log_.f != stdout)
        fclose(wl_log_.f);
    else if (wl_log_.f)
        fflush(wl_log_.f);
}

/* A group key (bytes, not terminated) as a C string: printable ASCII kept, the rest '?'. */
static inline const char *wl_key_str(const char *key, size_t len, char *buf, size_t cap) {
    size_t n = 0;
    for (; n < len && n + 1 < cap; n++)
        buf[n] = key[n] >= 0x20 && key[n] < 0x7f ? key[n] : '?';
    buf[n] = '\0';
    return buf;
}

/* on_event hook: one line per transition; a group's carries its key as "group_key". */
static inline void wl_on_event(const cb_event *ev, void *user) {
    (void)user;
    char key[CB_GROUP_KEY_MAX + 1], ejs[2 * CB_GROUP_KEY_MAX];
    wl_log("{\"t_ns\":%" PRIu64 ",\"event\":\"transition\",\"from\":\"%s\",\"to\":\"%s\","
           "\"reason\":\"%s\",\"generation\":%" PRIu64 ",\"open_ms\":%" PRIu64 "%s%s%s}",
           ev->at_ns, cb_state_name(ev->from), cb_state_name(ev->to), cb_reason_name(ev->reason),
           ev->generation, ev->open_ms, ev->key ? ",\"group_key\":\"" : "",
           ev->key ? wl_json_str(wl_key_str(ev->key, ev->key_len, key, sizeof key), ejs, sizeof ejs) : "",
           ev->key ? "\"" : "");
}

/* ---- latencies: per-thread arrays, merged and sorted once at exit ---- */

typedef struct wl_lat {
    uint64_t *v;
    size_t n, cap;
} wl_lat;

static inline void wl_lat_add(wl_lat *l, uint64_t ns) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 1024;
        uint64_t *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return; /* the log still has every call; only the summary loses this one */
        l->v = v, l->cap = cap;
    }
    l->v[l->n++] = ns;
}

static inline void wl_lat_merge(wl_lat *into, const wl_lat *from) {
    for (size_t i = 0; i < from->n; i++)
        wl_lat_add(into, from->v[i]);
}

static inline int wl_cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array. */
static inline uint64_t wl_pct(const uint64_t *v, size_t n, double p) {
    if (!n)
        return 0;
    size_t rank = (size_t)(p * (double)n + 0.999999999);
    return v[(rank ? rank : 1) - 1];
}

/* Sorts l and writes {"n":..,"p50_ns":..,"p90_ns":..,"p99_ns":..,"max_ns":..}. */
static inline const char *wl_lat_json(wl_lat *l, char *buf, size_t cap) {
    qsort(l->v, l->n, sizeof *l->v, wl_cmp_u64);
    snprintf(buf, cap,
             "{\"n\":%zu,\"p50_ns\":%" PRIu64 ",\"p90_ns\":%" PRIu64 ",\"p99_ns\":%" PRIu64
             ",\"max_ns\":%" PRIu64 "}",
             l->n, wl_pct(l->v, l->n, 0.50), wl_pct(l->v, l->n, 0.90), wl_pct(l->v, l->n, 0.99),
             l->n ? l->v[l->n - 1] : 0);
    return buf;
}

/* Outcomes of one call as the workload sees them. */
enum wl_outcome { WL_OK, WL_FAIL, WL_REJECTED, WL_NOUTCOMES };
static const char *const wl_outcome_name[WL_NOUTCOMES] = {"ok", "fail", "rejected"};

/* Per-thread tallies of calls, merged at exit. */
typedef struct wl_tally {
    uint64_t count[WL_NOUTCOMES];
    wl_lat lat[WL_NOUTCOMES];
} wl_tally;

static inline void wl_tally_add(wl_tally *t, enum wl_outcome o, uint64_t latency_ns) {
    t->count[o]++;
    wl_lat_add(&t->lat[o], latency_ns);
}

static inline void wl_tally_merge(wl_tally *into, const wl_tally *from) {
    for (int o = 0; o < WL_NOUTCOMES; o++) {
        into->count[o] += from->count[o];
        wl_lat_merge(&into->lat[o], &from->lat[o]);
    }
}

static inline void wl_tally_free(wl_tally *t) {
    for (int o = 0; o < WL_NOUTCOMES; o++)
        free(t->lat[o].v);
}

/* The last log line: {"summary":{program, calls and latencies per outcome, extra, the
   breaker's flags and its own JSON (cb_format_json)}}. */
static inline void wl_summary(const char *program, wl_tally *t, const char *extra, cb_breaker *b) {
    char lat[WL_NOUTCOMES][200], flags[1024], bj[4096];
    cb_config cfg;
    cb_config_get(b, &cfg);
    cbflags_format(&cfg, flags, sizeof flags);
    cb_format_json(b, bj, sizeof bj);
    for (int o = 0; o < WL_NOUTCOMES; o++)
        wl_lat_json(&t->lat[o], lat[o], sizeof lat[o]);
    wl_log("{\"summary\":{\"program\":\"%s\",\"calls\":%" PRIu64 ",\"ok\":%" PRIu64
           ",\"fail\":%" PRIu64 ",\"rejected\":%" PRIu64
           ",\"latency\":{\"ok\":%s,\"fail\":%s,\"rejected\":%s}%s%s,\"flags\":\"%s\","
           "\"breaker\":%s}}",
           program, t->count[WL_OK] + t->count[WL_FAIL] + t->count[WL_REJECTED], t->count[WL_OK],
           t->count[WL_FAIL], t->count[WL_REJECTED], lat[WL_OK], lat[WL_FAIL], lat[WL_REJECTED],
           extra && *extra ? "," : "", extra ? extra : "", flags, bj);
}

/* ---- keyed groups: the group's own options, and its summary ---- */

static cb_group_config wl_gopt;   /* the group's own fields; the template comes from cfg */

/* The group options (cb.h's list of group fields), as entries of a program's option table. */
#define WL__GOPT(type, field, flag, doc) {flag, WL_##type, &wl_gopt.field, "group: " doc},
#define WL_GROUP_OPTS CB__GROUP_CONFIG_FIELDS(WL__GOPT)

/* The group from the template cfg and the group options, with the logging hook (or
   on_event when not NULL); prints cb_group_config_check's message. */
static inline cb_group *wl_group(const char *prog, cb_config *cfg,
                                 void (*on_event)(const cb_event *, void *)) {
    char msg[256];
    cfg->on_event = on_event ? on_event : wl_on_event;
    cb_group_config gc = wl_gopt;
    gc.breaker = *cfg;
    if (cb_group_config_check(&gc, msg, sizeof msg) != CB_OK) {
        fprintf(stderr, "%s: bad group config: %s\n", prog, msg);
        return NULL;
    }
    cb_err err;
    cb_group *g = cb_group_new(&gc, &err);
    if (!g)
        fprintf(stderr, "%s: cb_group_new: %s\n", prog, cb_strerror(err));
    return g;
}

/* Per-key figures for the summary, and their sums. */
typedef struct wl_gsum {
    char *buf;
    size_t len, cap;
    uint64_t n[7]; /* admitted rejected successes failures ignored stale opens */
} wl_gsum;

static inline void wl_gsum_add(wl_gsum *g, const char *key, size_t key_len, const cb_stats *s) {
    const uint64_t v[7] = {s->admitted, s->rejected, s->successes, s->failures,
                           s->ignored, s->stale, s->opens};
    for (int i = 0; i < 7; i++)
        g->n[i] += v[i];
    if (!key)
        return;
    char k[CB_GROUP_KEY_MAX + 1], ejs[2 * CB_GROUP_KEY_MAX];
    if (g->cap - g->len < 512) {
        size_t cap = g->cap ? 2 * g->cap : 4096;
        char *b = realloc(g->buf, cap);
        if (!b)
            return;
        g->buf = b, g->cap = cap;
    }
    g->len += (size_t)snprintf(
        g->buf + g->len, g->cap - g->len,
        "%s\"%s\":{\"state\":\"%s\",\"admitted\":%" PRIu64 ",\"rejected\":%" PRIu64
        ",\"successes\":%" PRIu64 ",\"failures\":%" PRIu64 ",\"ignored\":%" PRIu64 ",\"stale\":%" PRIu64
        ",\"opens\":%" PRIu64 "}",
        g->len ? "," : "", wl_json_str(wl_key_str(key, key_len, k, sizeof k), ejs, sizeof ejs),
        cb_state_name(s->state), v[0], v[1], v[2], v[3], v[4], v[5], v[6]);
}

static inline bool wl_gsum_each(const char *key, size_t key_len, const cb_stats *s, void *user) {
    wl_gsum_add(user, key, key_len, s);
    return true;
}

/* A group's summary line: as wl_summary, with "breaker" the sums over its keys and its
   overflow breaker (the fields the accounting identity needs), "keys" each key's
   figures and "group" the group's own. */
static inline void wl_summary_group(const char *program, wl_tally *t, const char *extra, cb_group *g) {
    char lat[WL_NOUTCOMES][200], flags[1024];
    wl_gsum sum = {0};
    cb_group_config gc;
    cb_group_stats gs;
    cb_stats os;
    cb_group_config_get(g, &gc);
    cbflags_format(&gc.breaker, flags, sizeof flags);
    cb_group_each(g, wl_gsum_each, &sum);
    cb_stats_get(cb_group_overflow(g), &os);
    wl_gsum_add(&sum, NULL, 0, &os);
    cb_group_stats_get(g, &gs);
    for (int o = 0; o < WL_NOUTCOMES; o++)
        wl_lat_json(&t->lat[o], lat[o], sizeof lat[o]);
    wl_log("{\"summary\":{\"program\":\"%s\",\"calls\":%" PRIu64 ",\"ok\":%" PRIu64
           ",\"fail\":%" PRIu64 ",\"rejected\":%" PRIu64
           ",\"latency\":{\"ok\":%s,\"fail\":%s,\"rejected\":%s}%s%s,\"flags\":\"%s\","
           "\"breaker\":{\"name\":\"%s\",\"admitted\":%" PRIu64 ",\"rejected\":%" PRIu64
           ",\"successes\":%" PRIu64 ",\"failures\":%" PRIu64 ",\"ignored\":%" PRIu64 ",\"stale\":%" PRIu64
           ",\"opens\":%" PRIu64 "},\"keys\":{%s},\"group\":{\"keys\":%" PRIu64 ",\"open_keys\":%" PRIu64
           ",\"created\":%" PRIu64 ",\"evicted\":%" PRIu64 ",\"overflow\":%" PRIu64
           ",\"trips_held\":%" PRIu64 ",\"stale\":%" PRIu64 ",\"dominant_share\":%.17g"
           ",\"dominant_min_calls\":%" PRIu32 ",\"dominant_window_ms\":%" PRIu32 "}}}",
           program, t->count[WL_OK] + t->count[WL_FAIL] + t->count[WL_REJECTED], t->count[WL_OK],
           t->count[WL_FAIL], t->count[WL_REJECTED], lat[WL_OK], lat[WL_FAIL], lat[WL_REJECTED],
           extra && *extra ? "," : "", extra ? extra : "", flags, gc.breaker.name, sum.n[0],
           sum.n[1], sum.n[2], sum.n[3], sum.n[4], sum.n[5] + gs.stale, sum.n[6],
           sum.buf ? sum.buf : "", gs.keys, gs.open_keys, gs.created, gs.evicted, gs.overflow,
           gs.trips_held, gs.stale, gc.dominant_share, gc.dominant_min_calls, gc.dominant_window_ms);
    free(sum.buf);
}

/* The breaker from cfg with the logging hook; prints cb_config_check's message. */
static inline cb_breaker *wl_breaker(const char *prog, cb_config *cfg) {
    char msg[256];
    cfg->on_event = wl_on_event;
    if (cb_config_check(cfg, msg, sizeof msg) != CB_OK) {
        fprintf(stderr, "%s: bad breaker config: %s\n", prog, msg);
        return NULL;
    }
    cb_err err;
    cb_breaker *b = cb_new(cfg, &err);
    if (!b)
        fprintf(stderr, "%s: cb_new: %s\n", prog, cb_strerror(err));
    return b;
}

#endif
