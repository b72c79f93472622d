/* redis_client - a GET/SET workload against Redis, each call protected by cb.h.

   Threads issue calls at a fixed rate for a fixed time, each on its own connection with
   connect and command timeouts. Every SET writes a fresh key (PREFIX:THREAD:SEQ, value
   "v:" + key), so the harness can check afterwards that no write was lost. A SET that is
   rejected or fails goes to the dead-letter file (one "SET key value" line, appended and
   fdatasync'd before the call returns) and is replayed in order, through the breaker,
   once it is closed; the replayed offset is kept durably in FILE.done, so pending
   letters survive a crash and are replayed by the next run. The log gets one JSON line
   per call and per transition, then a summary.

   With --shards=N the data is spread over N Redis servers (--shard-ports), and the calls
   go through a cb.h keyed group, one breaker per shard (keys "shard-0" ...): thread i
   serves shard i % N (its keys are that shard's), each shard has its own dead-letter
   file (FILE.0 ...), so a shard that hangs stalls and opens alone. */
#define _GNU_SOURCE
#define CB_IMPLEMENTATION
#include "../cb.h"

#include "workload.h"

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

static struct {
    const char *host, *log, *dead_letter, *key_prefix, *shard_ports;
    uint32_t port, threads, rate, duration_ms, timeout_ms, connect_timeout_ms, drain_ms,
        status_ms, seed, shards;
    double write_ratio;
} opt = {"127.0.0.1", NULL, NULL, "chaos", NULL, 6379, 1, 100, 5000, 200, 0, 5000, 0, 1, 0, 0.5};

static const wl_opt opts[] = {
    {"host", WL_STR, &opt.host, "Redis host (default 127.0.0.1)"},
    {"port", WL_U32, &opt.port, "Redis port (default 6379)"},
    {"threads", WL_U32, &opt.threads, "client threads, one connection each (default 1)"},
    {"rate", WL_U32, &opt.rate, "calls per second per thread; 0 = no pacing (default 100)"},
    {"duration-ms", WL_U32, &opt.duration_ms, "how long to run (default 5000)"},
    {"timeout-ms", WL_U32, &opt.timeout_ms, "command timeout (default 200)"},
    {"connect-timeout-ms", WL_U32, &opt.connect_timeout_ms, "connect timeout (default timeout-ms)"},
    {"write-ratio", WL_DBL, &opt.write_ratio, "fraction of calls that are SETs (default 0.5)"},
    {"key-prefix", WL_STR, &opt.key_prefix, "key prefix (default chaos)"},
    {"dead-letter", WL_STR, &opt.dead_letter, "dead-letter file for writes (default: none)"},
    {"drain-ms", WL_U32, &opt.drain_ms, "at the end, replay dead letters for up to this long (default 5000)"},
    {"log", WL_STR, &opt.log, "JSON-lines log file (default stdout)"},
    {"status-ms", WL_U32, &opt.status_ms, "live one-line status on stderr every N ms (default off)"},
    {"workload-seed", WL_U32, &opt.seed, "seed of the op and key choices (default 1)"},
    {"shards", WL_U32, &opt.shards, "spread the data over N servers, a group key each (default 0: one)"},
    {"shard-ports", WL_STR, &opt.shard_ports, "with --shards: the servers' ports, P,P,..."},
    WL_GROUP_OPTS
};

#define MAX_SHARDS 64

static cb_breaker *B; /* one server */
static cb_group *G;   /* --shards: one breaker per shard, keyed SHARD_NAME */
static uint32_t shard_port[MAX_SHARDS];
static char shard_name[MAX_SHARDS][24];

/* Keys go into JSON and dead-letter lines unescaped: the prefix is limited to these. */
#define KEY_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789:_.-"

/* ---- one connection per thread, (re)connected inside an admitted call ---- */

typedef struct conn {
    redisContext *c;
    uint32_t port;
} conn;

static struct timeval ms_tv(uint32_t ms) {
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

/* Runs one command; true on a reply that is not an error. err gets the reason. A kept
   connection may have been reset while idle (hiredis only finds out on use): when that is
   what failed, the command is retried once on a fresh connection, as connection pools do,
   so that one network blip does not fail the first call of every thread. */
static bool conn_run(conn *k, const char *cmd, const char *key, const char *val, char *err,
                     size_t errlen) {
    for (int attempt = 0;; attempt++) {
        if (k->c && k->c->err) {
            redisFree(k->c);
            k->c = NULL;
        }
        bool reused = k->c != NULL;
        if (!k->c) {
            k->c = redisConnectWithTimeout(opt.host, (int)k->port, ms_tv(opt.connect_timeout_ms));
            if (!k->c || k->c->err) {
                snprintf(err, errlen, "connect: %s", k->c ? k->c->errstr : "out of memory");
                return false;
            }
            redisSetTimeout(k->c, ms_tv(opt.timeout_ms));
        }
        redisReply *r = val ? redisCommand(k->c, "%s %s %s", cmd, key, val)
                            : redisCommand(k->c, "%s %s", cmd, key);
        if (!r) {
            bool stale = k->c->err == REDIS_ERR_EOF || errno == ECONNRESET || errno == EPIPE;
            snprintf(err, errlen, "%s", k->c->errstr[0] ? k->c->errstr : "no reply");
            if (reused && stale && attempt == 0)
                continue;
            return false;
        }
        bool ok = r->type != REDIS_REPLY_ERROR;
        if (!ok)
            snprintf(err, errlen, "%s", r->str);
        freeReplyObject(r);
        return ok;
    }
}

/* ---- per-thread state and the protected call ---- */

typedef struct worker {
    int id;
    uint32_t shard; /* with --shards: the shard this thread serves */
    conn conn;
    uint64_t rng;
    wl_tally tally;
} worker;

/* Latencies since the last status line (only with --status-ms; best effort, relaxed):
   the top bit marks a rejected call. */
#define RECENT 4096
#define REJECTED_BIT (UINT64_C(1) << 63)
static _Atomic uint64_t recent[RECENT];
static atomic_uint_fast64_t recent_n;

static enum wl_outcome protected_call(worker *w, const char *op, const char *cmd, const char *key,
                                      const char *val) {
    char err[256] = "", ejs[300];
    cb_ticket t;
    enum wl_outcome o;
    const char *sk = shard_name[w->shard];
    size_t sklen = strlen(sk);
    uint64_t t0 = wl_now_ns();
    if (!(G ? cb_group_allow(G, sk, sklen, &t) : cb_allow(B, &t))) {
        o = WL_REJECTED;
    } else {
        o = conn_run(&w->conn, cmd, key, val, err, sizeof err) ? WL_OK : WL_FAIL;
        cb_outcome out = o == WL_OK ? CB_SUCCESS : CB_FAILURE;
        if (G)
            cb_group_record(G, &t, out);
        else
            cb_record(B, &t, out);
    }
    uint64_t lat = wl_now_ns() - t0;
    wl_tally_add(&w->tally, o, lat);
    if (opt.status_ms) {
        /* relaxed: only the status line reads these, and a stale slot there is harmless */
        uint64_t i = atomic_fetch_add_explicit(&recent_n, 1, memory_order_relaxed);
        atomic_store_explicit(&recent[i % RECENT], lat | (o == WL_REJECTED ? REJECTED_BIT : 0),
                              memory_order_relaxed);
    }
    wl_log("{\"t_ns\":%" PRIu64 ",\"thread\":%d,\"op\":\"%s\",\"key\":\"%s\",\"outcome\":\"%s\","
           "\"latency_ns\":%" PRIu64 ",\"state\":\"%s\"%s%s%s%s%s%s}",
           t0, w->id, op, key, wl_outcome_name[o], lat,
           cb_state_name(G ? cb_group_get_state(G, sk, sklen) : cb_get_state(B)),
           G ? ",\"group_key\":\"" : "", G ? sk : "", G ? "\"" : "",
           *err ? ",\"error\":\"" : "", *err ? wl_json_str(err, ejs, sizeof ejs) : "",
           *err ? "\"" : "");
    return o;
}

/* ---- dead letters ---- */

/* One queue, or one per shard with --shards (FILE.0, FILE.1, ...). */
typedef struct dlq {
    int fd, done_fd;        /* the letters (append only) and the replayed offset */
    pthread_mutex_t mu;     /* appends */
    pthread_mutex_t replay; /* one replayer at a time */
    off_t done;             /* bytes replayed; under replay */
    atomic_uint_fast64_t written, replayed, errors;
    atomic_bool pending;
} dlq;

static dlq dlqs[MAX_SHARDS];

static bool dl_open(dlq *dl, const char *path) {
    dl->fd = dl->done_fd = -1;
    pthread_mutex_init(&dl->mu, NULL);
    pthread_mutex_init(&dl->replay, NULL);
    char done_path[4096];
    snprintf(done_path, sizeof done_path, "%s.done", path);
    dl->fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    dl->done_fd = open(done_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (dl->fd < 0 || dl->done_fd < 0) {
        fprintf(stderr, "redis_client: --dead-letter=%s: %s\n", path, strerror(errno));
        return false;
    }
    char buf[32] = "", *end;
    ssize_t n = pread(dl->done_fd, buf, sizeof buf - 1, 0);
    dl->done = n > 0 ? (off_t)strtoll(buf, &end, 10) : 0;
    struct stat st;
    fstat(dl->fd, &st);
    if (n > 0 && (end == buf || (*end && *end != '\n'))) {
        fprintf(stderr, "redis_client: %s: want the replayed offset, a number\n", done_path);
        return false;
    }
    if (dl->done < 0 || dl->done > st.st_size) {
        fprintf(stderr, "redis_client: %s: replayed offset %lld is outside %s\n", done_path,
                (long long)dl->done, path);
        return false;
    }
    atomic_store(&dl->pending, dl->done < st.st_size);
    return true;
}

static void dl_append(dlq *dl, const char *key, const char *val) {
    char line[512];
    int n = snprintf(line, sizeof line, "SET %s %s\n", key, val);
    pthread_mutex_lock(&dl->mu);
    bool ok = write(dl->fd, line, (size_t)n) == n && fdatasync(dl->fd) == 0;
    /* written before pending: a replayer that sees pending also finds the line */
    atomic_store(&dl->pending, true);
    pthread_mutex_unlock(&dl->mu);
    atomic_fetch_add(ok ? &dl->written : &dl->errors, 1);
    if (!ok)
        wl_log("{\"t_ns\":%" PRIu64 ",\"event\":\"dead_letter_error\",\"key\":\"%s\",\"error\":\"%s\"}",
               wl_now_ns(), key, strerror(errno));
}

static void dl_save_done(dlq *dl) {
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%020lld\n", (long long)dl->done);
    if (pwrite(dl->done_fd, buf, (size_t)n, 0) != n || fdatasync(dl->done_fd) != 0)
        wl_log("{\"t_ns\":%" PRIu64 ",\"event\":\"dead_letter_error\",\"error\":\"saving offset: %s\"}",
               wl_now_ns(), strerror(errno));
}

/* Replays up to max letters in file order, each a protected call; stops at the first
   that is rejected or fails (it stays pending). Returns how many were replayed. */
static int dl_replay(dlq *dl, worker *w, int max) {
    if (dl->fd < 0 || !atomic_load(&dl->pending) || pthread_mutex_trylock(&dl->replay) != 0)
        return 0;
    int done = 0;
    off_t from = dl->done;
    char buf[65536];
    while (done < max) {
        atomic_store(&dl->pending, false);
        ssize_t n = pread(dl->fd, buf, sizeof buf - 1, dl->done);
        if (n <= 0)
            break;
        buf[n] = '\0';
        char *line = buf, *nl;
        bool stop = false;
        while (done < max && (nl = strchr(line, '\n'))) {
            *nl = '\0';
            char key[256], val[256];
            if (sscanf(line, "SET %255s %255s", key, val) != 2) { /* not ours: skip, count */
                atomic_fetch_add(&dl->errors, 1);
                wl_log("{\"t_ns\":%" PRIu64 ",\"event\":\"dead_letter_error\",\"error\":\"bad line at offset %lld\"}",
                       wl_now_ns(), (long long)dl->done);
            } else if (protected_call(w, "replay", "SET", key, val) != WL_OK) {
                stop = true;
                break;
            } else {
                done++;
                atomic_fetch_add(&dl->replayed, 1);
            }
            dl->done += nl + 1 - line;
            line = nl + 1;
        }
        if (dl->done != from)
            dl_save_done(dl);
        from = dl->done;
        if (stop || line == buf) /* stopped, or a partial line still being written */
            break;
    }
    struct stat st;
    if (fstat(dl->fd, &st) == 0 && dl->done < st.st_size)
        atomic_store(&dl->pending, true);
    pthread_mutex_unlock(&dl->replay);
    return done;
}

static uint64_t dl_pending_lines(dlq *dl) {
    uint64_t lines = 0;
    char buf[65536];
    ssize_t n;
    for (off_t off = dl->done; (n = pread(dl->fd, buf, sizeof buf, off)) > 0; off += n)
        for (ssize_t i = 0; i < n; i++)
            lines += buf[i] == '\n';
    return lines;
}

/* ---- the workload ---- */

static uint64_t start_ns, end_ns;

static uint64_t rnd(uint64_t *s) { /* xorshift64 */
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    uint64_t interval = opt.rate ? 1000000000u / opt.rate : 0, next = wl_now_ns();
    for (uint64_t seq = 0;; seq++) {
        uint64_t now = wl_now_ns();
        if (now >= end_ns)
            break;
        if (next > now)
            wl_sleep_until(next);
        next = (next + interval < now ? now : next) + interval; /* late: no catch-up burst */
        char key[128], val[160];
        bool write = (double)(rnd(&w->rng) >> 11) * 0x1p-53 < opt.write_ratio;
        snprintf(key, sizeof key, "%s:%d:%" PRIu64, opt.key_prefix, w->id,
                 write || !seq ? seq : rnd(&w->rng) % seq);
        snprintf(val, sizeof val, "v:%s", key);
        enum wl_outcome o =
            protected_call(w, write ? "set" : "get", write ? "SET" : "GET", key, write ? val : NULL);
        dlq *dl = &dlqs[w->shard];
        if (write && o != WL_OK && dl->fd >= 0)
            dl_append(dl, key, val);
        if (o == WL_OK && (G ? cb_group_get_state(G, shard_name[w->shard], strlen(shard_name[w->shard]))
                             : cb_get_state(B)) == CB_CLOSED)
            dl_replay(dl, w, 100);
    }
    return NULL;
}

/* Sums of the figures the status line and the summary show: over every shard. */
static uint64_t dl_sum(size_t field) {
    uint64_t n = 0;
    for (uint32_t i = 0; i < MAX_SHARDS; i++)
        n += atomic_load((atomic_uint_fast64_t *)((char *)&dlqs[i] + field));
    return n;
}

/* With --shards: the keys open now, named, e.g. "shard-2". */
static bool open_keys_each(const char *key, size_t len, const cb_stats *s, void *user) {
    char *buf = user;
    size_t n = strlen(buf);
    if (s->state != CB_CLOSED && n + len + 2 < 96)
        snprintf(buf + n, 96 - n, "%s%.*s", n ? "," : "", (int)len, key);
    return true;
}

/* Live status: one line, rewritten in place; p99s are of the calls since the last one. */
static atomic_bool stop_status;

static void *status_main(void *arg) {
    (void)arg;
    static uint64_t adm[RECENT], rej[RECENT];
    uint64_t last_n = 0, last_calls = 0, last_t = wl_now_ns();
    while (!atomic_load(&stop_status)) {
        wl_sleep_ms(opt.status_ms);
        char state[128];
        cb_stats s;
        if (G) {
            wl_gsum sum = {0};
            cb_group_stats gs;
            char names[96] = "";
            cb_group_each(G, wl_gsum_each, &sum);
            cb_group_each(G, open_keys_each, names);
            cb_group_stats_get(G, &gs);
            free(sum.buf);
            s.admitted = sum.n[0], s.rejected = sum.n[1];
            snprintf(state, sizeof state, "keys open %" PRIu64 "/%" PRIu32 " %-9s", gs.open_keys,
                     opt.shards, *names ? names : "-");
        } else {
            cb_stats_get(B, &s);
            snprintf(state, sizeof state, "%-9s", cb_state_name(s.state));
        }
        uint64_t now = wl_now_ns(), calls = s.admitted + s.rejected;
        uint64_t n = atomic_load_explicit(&recent_n, memory_order_relaxed);
        size_t na = 0, nr = 0;
        for (uint64_t i = n > last_n + RECENT ? n - RECENT : last_n; i < n; i++) {
            uint64_t v = atomic_load_explicit(&recent[i % RECENT], memory_order_relaxed);
            if (v & REJECTED_BIT)
                rej[nr++] = v & ~REJECTED_BIT;
            else
                adm[na++] = v;
        }
        qsort(adm, na, sizeof *adm, wl_cmp_u64);
        qsort(rej, nr, sizeof *rej, wl_cmp_u64);
        fprintf(stderr,
                "\r%5.1fs %s %5.0f calls/s  rejected %-6" PRIu64 " p99 %7.2f ms, rejected %5.2f us"
                "  replayed %" PRIu64 "/%" PRIu64 " ",
                (double)(now - start_ns) / 1e9, state,
                (double)(calls - last_calls) * 1e9 / (double)(now - last_t), s.rejected,
                (double)wl_pct(adm, na, 0.99) / 1e6, (double)wl_pct(rej, nr, 0.99) / 1e3,
                dl_sum(offsetof(dlq, replayed)), dl_sum(offsetof(dlq, written)));
        last_n = n, last_calls = calls, last_t = now;
    }
    fputc('\n', stderr);
    return NULL;
}

/* --shard-ports=P,P,...: exactly opt.shards ports. */
static bool parse_shard_ports(void) {
    const char *p = opt.shard_ports;
    uint32_t n = 0;
    while (p && *p && n < opt.shards) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(p, &end, 10);
        if (errno || end == p || v < 1 || v > 65535 || (*end && *end != ','))
            return false;
        shard_port[n++] = (uint32_t)v;
        p = *end ? end + 1 : end;
    }
    return n == opt.shards && p && !*p;
}

int main(int argc, char **argv) {
    cb_config cfg = {0};
    int rc = wl_parse_args(argc, argv, "redis_client",
                           "GET/SET workload against Redis, each call protected by a cb.h breaker.",
                           opts, sizeof opts / sizeof opts[0], &cfg);
    if (rc >= 0)
        return rc;
    const char *bad = NULL;
    if (!opt.threads || opt.threads > 256)
        bad = "--threads: want 1..256";
    else if (opt.port < 1 || opt.port > 65535)
        bad = "--port: want 1..65535";
    else if (!opt.timeout_ms)
        bad = "--timeout-ms: want > 0";
    else if (opt.write_ratio < 0 || opt.write_ratio > 1)
        bad = "--write-ratio: want 0..1";
    else if (strlen(opt.key_prefix) > 64 || opt.key_prefix[strspn(opt.key_prefix, KEY_CHARS)])
        bad = "--key-prefix: want at most 64 of A-Z a-z 0-9 : _ . -";
    else if (opt.shards > MAX_SHARDS)
        bad = "--shards: want 0..64";
    else if (opt.shards && opt.threads % opt.shards)
        bad = "--threads: want a multiple of --shards (each shard its own threads)";
    else if (opt.shards && !wl_dry_run && !parse_shard_ports())
        bad = "--shard-ports: want --shards ports, P,P,... each 1..65535";
    else if (opt.shard_ports && !opt.shards)
        bad = "--shard-ports: only with --shards";
    if (bad) {
        fprintf(stderr, "redis_client: %s\n", bad);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* a peer that resets is a failed call, not our death */
    if (!opt.connect_timeout_ms)
        opt.connect_timeout_ms = opt.timeout_ms;
    if (!cfg.name)
        cfg.name = "redis";
    if (!(B = wl_breaker("redis_client", &cfg)))
        return 2;
    if (opt.shards && !(G = wl_group("redis_client", &cfg, NULL)))
        return 2;
    if (wl_dry_run)
        return wl_print_resolved(opts, sizeof opts / sizeof opts[0], B);
    if (!wl_log_open(opt.log)) {
        fprintf(stderr, "redis_client: --log=%s: %s\n", opt.log, strerror(errno));
        return 2;
    }
    uint32_t queues = opt.shards ? opt.shards : 1;
    for (uint32_t i = 0; i < MAX_SHARDS; i++)
        dlqs[i].fd = dlqs[i].done_fd = -1;
    for (uint32_t i = 0; i < queues && opt.dead_letter; i++) {
        char buf[4000];
        snprintf(buf, sizeof buf, "%s.%u", opt.dead_letter, i);
        if (!dl_open(&dlqs[i], opt.shards ? buf : opt.dead_letter))
            return 2;
    }
    if (!opt.shards)
        shard_port[0] = opt.port;
    for (uint32_t i = 0; i < queues; i++)
        snprintf(shard_name[i], sizeof shard_name[i], "shard-%u", i);

    /* the last `queues` workers drain at the end, one per shard */
    worker *ws = calloc(opt.threads + queues, sizeof *ws);
    pthread_t *tids = calloc(opt.threads, sizeof *tids), status_tid;
    if (!ws || !tids) {
        fprintf(stderr, "redis_client: out of memory\n");
        return 1;
    }
    start_ns = wl_now_ns();
    end_ns = start_ns + (uint64_t)opt.duration_ms * 1000000u;
    wl_log("{\"t_ns\":%" PRIu64 ",\"event\":\"start\",\"threads\":%u,\"rate\":%u,\"timeout_ms\":%u"
           ",\"shards\":%u}",
           start_ns, opt.threads, opt.rate, opt.timeout_ms, opt.shards);
    if (opt.status_ms)
        pthread_create(&status_tid, NULL, status_main, NULL);
    for (uint32_t i = 0; i < opt.threads + queues; i++) {
        ws[i].id = (int)i;
        ws[i].shard = i < opt.threads ? i % queues : i - opt.threads;
        ws[i].conn.port = shard_port[ws[i].shard];
        ws[i].rng = 0x9E3779B97F4A7C15u * (opt.seed + i + 1);
    }
    for (uint32_t i = 0; i < opt.threads; i++)
        if (pthread_create(&tids[i], NULL, worker_main, &ws[i]) != 0) {
            fprintf(stderr, "redis_client: cannot start thread %u\n", i);
            return 1;
        }
    for (uint32_t i = 0; i < opt.threads; i++)
        pthread_join(tids[i], NULL);

    /* Drain: replay what is left; each attempt goes through the breaker, so an open
       breaker is waited out and probed as usual. */
    uint64_t drain_end = wl_now_ns() + (uint64_t)opt.drain_ms * 1000000u;
    for (bool left = true; left && wl_now_ns() < drain_end;) {
        int replayed = 0;
        left = false;
        for (uint32_t i = 0; i < queues; i++) {
            dlq *dl = &dlqs[i];
            if (dl->fd >= 0 && atomic_load(&dl->pending)) {
                replayed += dl_replay(dl, &ws[opt.threads + i], 1000);
                left = true;
            }
        }
        if (left && !replayed)
            wl_sleep_ms(20);
    }
    if (opt.status_ms) {
        atomic_store(&stop_status, true);
        pthread_join(status_tid, NULL);
    }

    wl_tally all = {0};
    for (uint32_t i = 0; i < opt.threads + queues; i++) {
        wl_tally_merge(&all, &ws[i].tally);
        wl_tally_free(&ws[i].tally);
        if (ws[i].conn.c)
            redisFree(ws[i].conn.c);
    }
    char extra[256];
    uint64_t pending = 0, errors = dl_sum(offsetof(dlq, errors));
    for (uint32_t i = 0; i < queues; i++)
        pending += dlqs[i].fd >= 0 ? dl_pending_lines(&dlqs[i]) : 0;
    snprintf(extra, sizeof extra,
             "\"dead_letters\":{\"written\":%" PRIu64 ",\"replayed\":%" PRIu64 ",\"pending\":%" PRIu64
             ",\"errors\":%" PRIu64 "}",
             dl_sum(offsetof(dlq, written)), dl_sum(offsetof(dlq, replayed)), pending, errors);
    if (G)
        wl_summary_group("redis_client", &all, extra, G);
    else
        wl_summary("redis_client", &all, extra, B);
    wl_log_close();
    wl_tally_free(&all);
    free(ws);
    free(tids);
    cb_group_free(G);
    cb_free(B);
    return pending || errors ? 1 : 0;
}
