/* log_shipper - tails log files and ships their lines to a sink, one cb.h group key per
   source, the shipper's own log among them.

   Sources: --apps files app-0.log ... in --dir, each written by a producer thread at
   --app-rate lines/s (the applications), and shipper.log, the shipper's own log (key
   "self"), as a log capturer on a host also captures itself. Each line a reader finds is
   one call through the group: admitted, it is appended to the sink file (a JSON line with
   its time, source and text); rejected, it is dropped and counted. Each reader ships at
   most --max-rate lines/s.

   The shipper logs at the level in the --control file ("info" or "debug"; read every
   10 ms). At info it logs its transitions and one stats line a second; at debug it also
   logs two lines for every line it ships ("read", "shipped"), into shipper.log, which it
   ships in turn: each call on "self" makes two more, so that key feeds on itself until
   the group's dominant_share opens it. */
#define _GNU_SOURCE
#define CB_IMPLEMENTATION
#include "../cb.h"

#include "workload.h"

#include <fcntl.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

static struct {
    const char *dir, *sink, *control, *log;
    uint32_t apps, app_rate, max_rate, duration_ms, status_ms;
} opt = {NULL, NULL, NULL, NULL, 3, 50, 2000, 5000, 0};

static const wl_opt opts[] = {
    {"dir", WL_STR, &opt.dir, "directory of the app logs and shipper.log (required)"},
    {"sink", WL_STR, &opt.sink, "file the shipped lines are appended to (required)"},
    {"control", WL_STR, &opt.control, "file holding the log level, info or debug (default info)"},
    {"apps", WL_U32, &opt.apps, "application log files, one producer each (default 3)"},
    {"app-rate", WL_U32, &opt.app_rate, "lines/s each application writes (default 50)"},
    {"max-rate", WL_U32, &opt.max_rate, "lines/s each reader ships at most (default 2000)"},
    {"duration-ms", WL_U32, &opt.duration_ms, "how long to run (default 5000)"},
    {"log", WL_STR, &opt.log, "JSON-lines log file (default stdout)"},
    {"status-ms", WL_U32, &opt.status_ms, "live one-line status on stderr every N ms (default off)"},
    WL_GROUP_OPTS
};

#define MAX_APPS 16
#define SELF_KEY "self"

static cb_group *G;
static int sink_fd = -1, self_fd = -1;
static atomic_int debug;  /* the log level: 1 = debug */
static uint64_t start_ns, end_ns;
static atomic_uint_fast64_t shipped, dropped, sink_errors;

/* The shipper's own log: one write per line, O_APPEND, so lines never interleave. */
static void selflog(const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    if (write(self_fd, line, (size_t)n) != n)
        atomic_fetch_add(&sink_errors, 1);
}

static void on_event(const cb_event *ev, void *user) {
    char key[CB_GROUP_KEY_MAX + 1];
    wl_on_event(ev, user);
    selflog("%.3f info breaker %s: %s -> %s (%s)", (double)(ev->at_ns - start_ns) / 1e9,
            ev->key ? wl_key_str(ev->key, ev->key_len, key, sizeof key) : "overflow",
            cb_state_name(ev->from), cb_state_name(ev->to), cb_reason_name(ev->reason));
}

/* ---- applications: each appends lines to its log at a fixed rate ---- */

typedef struct source {
    char key[16], path[4096];
    uint32_t id;
    wl_tally tally;
} source;

static void *producer_main(void *arg) {
    source *s = arg;
    int fd = open(s->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    uint64_t interval = 1000000000u / opt.app_rate, next = wl_now_ns();
    for (uint64_t seq = 0; fd >= 0 && wl_now_ns() < end_ns; seq++) {
        wl_sleep_until(next);
        next += interval;
        char line[128];
        int n = snprintf(line, sizeof line, "%s request %" PRIu64 " served in %" PRIu64 " us\n",
                         s->key, seq, 100 + seq % 900);
        if (write(fd, line, (size_t)n) != n)
            break;
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

/* ---- readers: one per source, each line one call through the group ---- */

static void ship(source *s, const char *line, size_t len) {
    size_t klen = strlen(s->key);
    cb_ticket t;
    enum wl_outcome o;
    uint64_t t0 = wl_now_ns();
    if (!cb_group_allow(G, s->key, klen, &t)) {
        o = WL_REJECTED;
        atomic_fetch_add(&dropped, 1);
    } else {
        char rec[1400], text[1100], body[1024];
        snprintf(body, sizeof body, "%.*s", (int)(len < sizeof body ? len : sizeof body - 1), line);
        int n = snprintf(rec, sizeof rec, "{\"t_ns\":%" PRIu64 ",\"source\":\"%s\",\"line\":\"%s\"}\n",
                         wl_now_ns(), s->key, wl_json_str(body, text, sizeof text));
        o = write(sink_fd, rec, (size_t)n) == n ? WL_OK : WL_FAIL;
        cb_group_record(G, &t, o == WL_OK ? CB_SUCCESS : CB_FAILURE);
        atomic_fetch_add(o == WL_OK ? &shipped : &sink_errors, 1);
        if (o == WL_OK && atomic_load_explicit(&debug, memory_order_relaxed)) {
            double at = (double)(t0 - start_ns) / 1e9;
            selflog("%.3f debug read %zu bytes from %s", at, len, s->key);
            selflog("%.3f debug shipped %zu bytes from %s to the sink", at, len, s->key);
        }
    }
    uint64_t lat = wl_now_ns() - t0;
    wl_tally_add(&s->tally, o, lat);
    wl_log("{\"t_ns\":%" PRIu64 ",\"thread\":%u,\"op\":\"ship\",\"outcome\":\"%s\",\"latency_ns\":%" PRIu64
           ",\"state\":\"%s\",\"group_key\":\"%s\"}",
           t0, s->id, wl_outcome_name[o], lat, cb_state_name(cb_group_get_state(G, s->key, klen)),
           s->key);
}

static void *reader_main(void *arg) {
    source *s = arg;
    int fd = open(s->path, O_RDONLY | O_CLOEXEC);
    static _Thread_local char buf[65536];
    size_t have = 0;
    uint64_t interval = 1000000000u / opt.max_rate, next = wl_now_ns();
    while (fd >= 0 && wl_now_ns() < end_ns) {
        ssize_t n = read(fd, buf + have, sizeof buf - have);
        if (n <= 0) {
            wl_sleep_ms(1); /* at the end of the file: wait for more */
            continue;
        }
        have += (size_t)n;
        char *line = buf, *nl;
        while ((nl = memchr(line, '\n', have - (size_t)(line - buf))) && wl_now_ns() < end_ns) {
            uint64_t now = wl_now_ns();
            if (next > now + 1000000u)
                wl_sleep_until(next); /* at --max-rate: pace in steps of a ms */
            next = (next + interval < now ? now : next) + interval;
            ship(s, line, (size_t)(nl - line));
            line = nl + 1;
        }
        have -= (size_t)(line - buf);
        memmove(buf, line, have);
        if (have == sizeof buf) /* a line longer than the buffer: ship it in pieces */
            ship(s, buf, have), have = 0;
    }
    if (fd >= 0)
        close(fd);
    return NULL;
}

/* ---- the log level, and the status ---- */

static void read_level(void) {
    char buf[16] = "";
    int fd = opt.control ? open(opt.control, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0)
        return; /* no file: the level stays */
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n > 0) {
        bool d = !strncmp(buf, "debug", 5);
        if (d != (bool)atomic_load(&debug))
            selflog("%.3f info log level %s", (double)(wl_now_ns() - start_ns) / 1e9, d ? "debug" : "info");
        atomic_store(&debug, d);
    }
}

static bool open_each(const char *key, size_t len, const cb_stats *s, void *user) {
    char *buf = user;
    size_t n = strlen(buf);
    if (s->state != CB_CLOSED && n + len + 2 < 96)
        snprintf(buf + n, 96 - n, "%s%.*s", n ? "," : "", (int)len, key);
    return true;
}

static void status(uint64_t *last_calls, uint64_t *last_t) {
    cb_group_stats gs;
    wl_gsum sum = {0};
    char names[96] = "";
    cb_group_stats_get(G, &gs);
    cb_group_each(G, wl_gsum_each, &sum);
    cb_group_each(G, open_each, names);
    free(sum.buf);
    uint64_t now = wl_now_ns(), calls = sum.n[0] + sum.n[1];
    fprintf(stderr, "\r%5.1fs keys open %" PRIu64 "/%" PRIu64 " %-6s %6.0f lines/s  shipped %-7" PRIu64
            " dropped %-7" PRIu64 " %s ",
            (double)(now - start_ns) / 1e9, gs.open_keys, gs.keys, *names ? names : "-",
            (double)(calls - *last_calls) * 1e9 / (double)(now - *last_t),
            (uint64_t)atomic_load(&shipped), (uint64_t)atomic_load(&dropped),
            atomic_load(&debug) ? "debug" : "info ");
    *last_calls = calls, *last_t = now;
}

int main(int argc, char **argv) {
    cb_config cfg = {0};
    int rc = wl_parse_args(argc, argv, "log_shipper",
                           "Ships log lines to a sink, one cb.h group key per source, its own log included.",
                           opts, sizeof opts / sizeof opts[0], &cfg);
    if (rc >= 0)
        return rc;
    const char *bad = NULL;
    if (!opt.apps || opt.apps > MAX_APPS)
        bad = "--apps: want 1..16";
    else if (!opt.app_rate || !opt.max_rate)
        bad = opt.app_rate ? "--max-rate: want > 0" : "--app-rate: want > 0";
    else if (!wl_dry_run && (!opt.dir || !opt.sink))
        bad = opt.dir ? "--sink=FILE is required" : "--dir=DIR is required";
    if (bad) {
        fprintf(stderr, "log_shipper: %s\n", bad);
        return 2;
    }
    if (!cfg.name)
        cfg.name = "shipper";
    cb_breaker *b = wl_breaker("log_shipper", &cfg);
    if (!b || !(G = wl_group("log_shipper", &cfg, on_event)))
        return 2;
    if (wl_dry_run)
        return wl_print_resolved(opts, sizeof opts / sizeof opts[0], b);
    cb_free(b);
    if (!wl_log_open(opt.log)) {
        fprintf(stderr, "log_shipper: --log=%s: %s\n", opt.log, strerror(errno));
        return 2;
    }
    uint32_t n = opt.apps + 1;
    source *src = calloc(n, sizeof *src);
    pthread_t *tids = calloc(2 * n, sizeof *tids);
    if (!src || !tids) {
        fprintf(stderr, "log_shipper: out of memory\n");
        return 1;
    }
    for (uint32_t i = 0; i < n; i++) {
        src[i].id = i;
        if (i < opt.apps)
            snprintf(src[i].key, sizeof src[i].key, "app-%u", i);
        else
            snprintf(src[i].key, sizeof src[i].key, "%s", SELF_KEY);
        snprintf(src[i].path, sizeof src[i].path, "%.4000s/%s.log", opt.dir,
                 i < opt.apps ? src[i].key : "shipper");
        int fd = open(src[i].path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            fprintf(stderr, "log_shipper: %s: %s\n", src[i].path, strerror(errno));
            return 2;
        }
        if (i < opt.apps)
            close(fd);
        else
            self_fd = fd;
    }
    sink_fd = open(opt.sink, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (sink_fd < 0) {
        fprintf(stderr, "log_shipper: --sink=%s: %s\n", opt.sink, strerror(errno));
        return 2;
    }
    read_level();
    start_ns = wl_now_ns();
    end_ns = start_ns + (uint64_t)opt.duration_ms * 1000000u;
    wl_log("{\"t_ns\":%" PRIu64 ",\"event\":\"start\",\"apps\":%u,\"app_rate\":%u,\"max_rate\":%u}",
           start_ns, opt.apps, opt.app_rate, opt.max_rate);
    selflog("0.000 info shipping %u sources to %s", n, opt.sink);
    for (uint32_t i = 0; i < n; i++)
        if ((i < opt.apps && pthread_create(&tids[n + i], NULL, producer_main, &src[i]) != 0) ||
            pthread_create(&tids[i], NULL, reader_main, &src[i]) != 0) {
            fprintf(stderr, "log_shipper: cannot start threads\n");
            return 1;
        }

    /* The level every 10 ms, a stats line every second, the status line if asked. */
    uint64_t next_stats = start_ns + 1000000000u, next_status = start_ns, last_calls = 0,
             last_t = start_ns;
    while (wl_now_ns() < end_ns) {
        wl_sleep_ms(10);
        read_level();
        uint64_t now = wl_now_ns();
        if (now >= next_stats) {
            selflog("%.3f info shipped %" PRIu64 " lines, dropped %" PRIu64, (double)(now - start_ns) / 1e9,
                    (uint64_t)atomic_load(&shipped), (uint64_t)atomic_load(&dropped));
            next_stats += 1000000000u;
        }
        if (opt.status_ms && now >= next_status) {
            status(&last_calls, &last_t);
            next_status = now + (uint64_t)opt.status_ms * 1000000u;
        }
    }
    for (uint32_t i = 0; i < n; i++) {
        pthread_join(tids[i], NULL);
        if (i < opt.apps)
            pthread_join(tids[n + i], NULL);
    }
    if (opt.status_ms)
        fputc('\n', stderr);

    wl_tally all = {0};
    for (uint32_t i = 0; i < n; i++) {
        wl_tally_merge(&all, &src[i].tally);
        wl_tally_free(&src[i].tally);
    }
    char extra[160];
    snprintf(extra, sizeof extra,
             "\"shipped\":%" PRIu64 ",\"dropped\":%" PRIu64 ",\"sink_errors\":%" PRIu64,
             (uint64_t)atomic_load(&shipped), (uint64_t)atomic_load(&dropped),
             (uint64_t)atomic_load(&sink_errors));
    wl_summary_group("log_shipper", &all, extra, G);
    wl_log_close();
    wl_tally_free(&all);
    close(sink_fd);
    close(self_fd);
    free(src);
    free(tids);
    cb_group_free(G);
    return atomic_load(&sink_errors) ? 1 : 0;
}
