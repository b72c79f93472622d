/* cbctl - inspect and control circuit breakers and keyed groups shared through files
   (cb_shm_open, cb_group_shm_open).

       cbctl ls DIR
       cbctl show [--keys=N] [--history=N] FILE...
       cbctl watch [--interval-ms=N] [--count=N] [--keys=N] [--history=N] FILE...
       cbctl watch --log=LOG [--log-max-bytes=N] [--log-keep=K] [--interval-ms=N] FILE...
       cbctl set FILE STATE [--key=KEY]
       cbctl reset FILE [--key=KEY]
       cbctl metrics --json|--prometheus [--max-keys=N] [--not-closed] FILE...
       cbctl serve --listen HOST:PORT [--warn-failure-rate=R] [--critical=NAME]...
                   [--max-connections=N] [--header-timeout-ms=N] [--max-keys=N]
                   [--not-closed] FILE...
       cbctl create FILE [--group] [group flags] [breaker flags]

   Every command but create opens the files with the attach functions, which take the
   config from the file, so cbctl needs no config and never creates a file; a file's magic
   number says whether it holds a breaker or a group. File, breaker names and group keys
   are printed escaped (esc(), key_text()). watch --log appends every transition to an
   incidents log, one JSON line each, and resumes after the last one logged. Exit status:
   0 ok, 1 a file could not be used (missing, another config or layout, damaged) or
   another runtime error, 2 a bad command line. Details: docs/cbctl.md. */
#define _POSIX_C_SOURCE 200809L
#define CB_IMPLEMENTATION
#include "cb.h"
#include "cbflags.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_FILE = 1, EXIT_USAGE = 2 };
#define HISTORY_SHOWN 10
#define HISTORY_MAX CB__GROUP_HISTORY   /* the larger ring: a group's (a breaker's: CB_HISTORY) */

/* ---- errors and command lines ---------------------------------------------------- */

static const char *cmd = "";   /* the command being run, for messages */

static void die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cbctl%s%s: ", *cmd ? " " : "", cmd);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (status == EXIT_USAGE)
        fprintf(stderr, "\n(see: cbctl%s%s --help)", *cmd ? " " : "", cmd);
    fputc('\n', stderr);
    exit(status);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die(EXIT_FILE, "out of memory");
    return p;
}

/* s as cbctl prints a file or breaker name: bytes outside printable ASCII as \xNN and
   '\' doubled, so that a name can neither drive the terminal (escape sequences) nor pass
   for other lines or names. The text lives until ESC_SLOTS more calls, enough for the
   names of one message. */
#define ESC_SLOTS 4
static const char *esc(const char *s)
{
    static char *slot[ESC_SLOTS];
    static size_t cap[ESC_SLOTS];
    static unsigned next;
    unsigned k = next++ % ESC_SLOTS;
    size_t need = 4 * strlen(s) + 1;
    if (cap[k] < need) {
        char *p = realloc(slot[k], need);
        if (!p)
            die(EXIT_FILE, "out of memory");
        slot[k] = p, cap[k] = need;
    }
    char *o = slot[k];
    for (const unsigned char *c = (const unsigned char *)s; *c; c++)
        if (*c == '\\')
            *o++ = '\\', *o++ = '\\';
        else if (*c >= 0x20 && *c <= 0x7e)
            *o++ = (char)*c;
        else
            o += sprintf(o, "\\x%02x", *c);
    *o = 0;
    return slot[k];
}

/* If argv[*i] is option `name` ("--name", or with a value "--name=V" or "--name V"),
   consume it and return true, with the value in *val. */
static bool opt(int argc, char **argv, int *i, const char *name, const char **val)
{
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n) != 0 || (a[n] != 0 && a[n] != '='))
        return false;
    if (!val) {
        if (a[n] == '=')
            die(EXIT_USAGE, "%s takes no value", name);
        return true;
    }
    if (a[n] == '=')
        *val = a + n + 1;
    else if (*i + 1 < argc)
        *val = argv[++*i];
    else
        die(EXIT_USAGE, "%s needs a value", name);
    return true;
}

static uint32_t opt_uint(const char *name, const char *v, uint32_t lo, uint32_t hi)
{
    uint64_t u;
    if (!cbflags__unsigned(v, hi, &u) || u < lo)
        die(EXIT_USAGE, "%s: bad value '%s' (want an integer %u..%u)", name, esc(v), lo, hi);
    return (uint32_t)u;
}

/* Collects the operands of a command line whose only options are the ones `known`
   accepts; "--" ends the options. */
typedef bool (*opt_fn)(int argc, char **argv, int *i, void *ctx);
static int operands(int argc, char **argv, opt_fn known, void *ctx, const char **out)
{
    int n = 0;
    bool options = true;
    for (int i = 0; i < argc; i++) {
        if (options && strcmp(argv[i], "--") == 0)
            options = false;
        else if (options && argv[i][0] == '-' && argv[i][1] != 0) {
            if (!known || !known(argc, argv, &i, ctx))
                die(EXIT_USAGE, "unknown option '%s'", esc(argv[i]));
        } else
            out[n++] = argv[i];
    }
    return n;
}

/* ---- opening breaker and group files ---------------------------------------------- */

/* A file cbctl works on: a breaker's (b) or a keyed group's (g), told apart by the magic
   number at its start. */
typedef struct breaker {
    const char *path;
    cb_breaker *b;                /* a breaker file's breaker */
    cb_group *g;                  /* a group file's group; both NULL while unusable */
    struct stat st;               /* the file b or g maps */
    char name[CB__NAME_MAX + 1];  /* the name it held at start (a group: its template's) */
    char why[512];                /* why both are NULL */
    bool critical;
} breaker;

static bool usable(const breaker *br) { return br->b || br->g; }

static void detach(breaker *br)
{
    cb_shm_close(br->b);
    cb_group_shm_close(br->g);
    br->b = NULL, br->g = NULL;
}

/* The name a file holds: its breaker's, or its group's template's. */
static void name_of(const breaker *br, char out[CB__NAME_MAX + 1])
{
    cb_group_config gc;
    if (br->g)
        cb_group_config_get(br->g, &gc);
    snprintf(out, CB__NAME_MAX + 1, "%s", br->b ? cb_name(br->b) : br->g ? gc.breaker.name : "");
}

/* Does the regular file at path start with a group's magic number? It is opened without
   following a link or blocking on a FIFO; anything else is left to cb_shm_open_ex, whose
   checks say what is wrong with it. */
static bool group_file(const char *path)
{
    uint64_t magic = 0;
    struct stat st;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool group = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
                 pread(fd, &magic, sizeof magic, 0) == (ssize_t)sizeof magic && magic == CB__GROUP_MAGIC;
    close(fd);
    return group;
}

/* Opens the file at br->path with the config stored in it (the attach functions never
   create a file, and refuse at once what they may not trust: a link, a FIFO, a device,
   another user's file); false and the reason in br->why on failure: cb.h's error, then
   its message less the path, which the caller prints itself (a system error alone). */
static unsigned attach_flags;   /* CB_SHM_GROUP with --group-shared */
static bool attach(breaker *br)
{
    cb_err e;
    char msg[512];
    if (group_file(br->path))
        br->g = cb_group_shm_open_ex(br->path, NULL, attach_flags, &e, msg, sizeof msg);
    else
        br->b = cb_shm_open_ex(br->path, NULL, attach_flags, &e, msg, sizeof msg);
    if (usable(br))
        return true;
    size_t n = strlen(br->path);
    const char *reason = strncmp(msg, br->path, n) == 0 && msg[n] == ':' ? msg + n + 2 : msg;
    if (e == CB_EIO)   /* the system's own words say it: "No such file or directory" */
        snprintf(br->why, sizeof br->why, "%s", esc(reason));
    else
        snprintf(br->why, sizeof br->why, "%s: %s", cb_strerror(e), esc(reason));
    return false;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/* attach(), and in br->st the file it mapped: the path is statted before and after, and
   a file replaced in between (the two differ) is attached again, so that st never names
   another file than the mapping. */
static bool attach_stat(breaker *br)
{
    for (int tries = 0; tries < 4; tries++) {
        struct stat before;
        bool had = stat(br->path, &before) == 0;
        if (!attach(br))
            return false;
        if (had && stat(br->path, &br->st) == 0 && same_file(&before, &br->st))
            return true;
        detach(br);
    }
    snprintf(br->why, sizeof br->why, "replaced again and again while being opened");
    return false;
}

/* Opens every file or exits naming each one that cannot be used. */
static breaker *attach_all(const char **paths, int n)
{
    breaker *bs = xmalloc(sizeof *bs * (size_t)n);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        breaker *br = &bs[i];
        *br = (breaker){ .path = paths[i] };
        if (attach_stat(br))
            name_of(br, br->name);
        else {
            fprintf(stderr, "cbctl %s: %s: %s\n", cmd, esc(paths[i]), br->why);
            bad++;
        }
    }
    if (bad)
        exit(EXIT_FILE);
    return bs;
}

/* Follows a file replaced at its path (a new file renamed over it, or removed and made
   again): the mapping held would go on showing the old file, which the processes that
   open the path no longer use. The replacement must hold the same breaker or group, so
   that the metrics and --critical keep their meaning; until a usable one is there, both
   handles are NULL and why says what is wrong. Tells stderr when the file changes, once
   per change. */
static void refresh(breaker *br)
{
    struct stat now;
    if (usable(br) && stat(br->path, &now) == 0 && same_file(&now, &br->st))
        return;
    bool was = usable(br), was_group = br->g != NULL;
    char before[sizeof br->why], name[CB__NAME_MAX + 1];
    memcpy(before, br->why, sizeof before);
    detach(br);
    if (attach_stat(br)) {
        name_of(br, name);
        if (strcmp(name, br->name) != 0 || (was && was_group != (br->g != NULL))) {
            snprintf(br->why, sizeof br->why, "holds %s '%s', not '%s' (restart cbctl to "
                     "follow it)", br->g ? "group" : "breaker", esc(name), esc(br->name));
            detach(br);
        }
    }
    if (usable(br))
        fprintf(stderr, "cbctl %s: %s: %s\n", cmd, esc(br->path),
                was ? "replaced: following the new file" : "usable again");
    else if (was || strcmp(before, br->why) != 0)
        fprintf(stderr, "cbctl %s: %s: %s\n", cmd, esc(br->path), br->why);
}

/* Metrics are keyed by name: two files holding one name would collide. */
static void check_names_unique(const breaker *bs, int n)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(bs[i].name, bs[j].name) == 0)
                die(EXIT_FILE, "%s and %s both hold the name '%s': their metrics would "
                    "collide", esc(bs[j].path), esc(bs[i].path), esc(bs[i].name));
}

static void detach_all(breaker *bs, int n)
{
    for (int i = 0; i < n; i++)
        detach(&bs[i]);
    free(bs);
}

/* ---- group keys on the command line --------------------------------------------- */

/* A key as cbctl prints it (cb.h's key text, as in the exports): printable ASCII as it
   is, '"' and '\' after a '\', every other byte and '%' as %HH. */
static const char *key_text(const char *key, size_t len, char out[3 * CB_GROUP_KEY_MAX + 1])
{
    return cb__key_text(key, len, out, 3 * CB_GROUP_KEY_MAX + 1);
}

/* A key as a JSON string holds it in cb.h's exports: key_text less the backslashes,
   which JSON's own escaping puts back (cJSON here). */
static const char *json_key(const char *key, size_t len, char out[3 * CB_GROUP_KEY_MAX + 1])
{
    key_text(key, len, out);
    char *o = out;
    for (const char *p = out; *p; p++)
        *o++ = *p == '\\' && p[1] ? *++p : *p;
    *o = 0;
    return out;
}

/* --key=TEXT back to the key's bytes: %HH is a byte, \" and \\ a quote and a backslash,
   any other character itself. The length, or the usage error. */
static size_t key_bytes(const char *text, char out[CB_GROUP_KEY_MAX])
{
    size_t n = 0;
    for (const char *p = text; *p; p++) {
        unsigned v;
        if (n == CB_GROUP_KEY_MAX)
            die(EXIT_USAGE, "--key: longer than %u bytes", CB_GROUP_KEY_MAX);
        if (*p == '%') {
            if (!isxdigit((unsigned char)p[1]) || !isxdigit((unsigned char)p[2]) ||
                sscanf(p + 1, "%2x", &v) != 1)
                die(EXIT_USAGE, "--key '%s': '%%' must start %%HH, a byte in hex (%%25 is '%%')",
                    esc(text));
            out[n++] = (char)v, p += 2;
        } else if (*p == '\\') {
            if (p[1] != '"' && p[1] != '\\')
                die(EXIT_USAGE, "--key '%s': '\\' must start \\\" or \\\\", esc(text));
            out[n++] = *++p;
        } else
            out[n++] = *p;
    }
    if (n == 0)
        die(EXIT_USAGE, "--key: empty (a key is 1 byte or more)");
    return n;
}

/* ---- JSON written as text ---------------------------------------------------------- */

typedef unsigned long long ull;

/* Text built piece by piece. Integers are written by hand: cJSON keeps numbers as
   doubles, exact only up to 2^53 (ns past 104 days); cJSON quotes the strings. */
typedef struct text { char *s; size_t len, cap; } text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        die(EXIT_FILE, "out of memory");
    if (t->cap - t->len <= (size_t)n) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap - t->len <= (size_t)n)
            cap *= 2;
        char *p = realloc(t->s, cap);
        if (!p)
            die(EXIT_FILE, "out of memory");
        t->s = p, t->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

static void put_str(text *t, const char *s)
{
    cJSON *j = cJSON_CreateString(s);
    char *q = j ? cJSON_PrintUnformatted(j) : NULL;
    if (!q)
        die(EXIT_FILE, "out of memory");
    put(t, "%s", q);
    cJSON_free(q);
    cJSON_Delete(j);
}

/* A transition's members (no braces): for a group's, its key first (null where the ring
   kept none), then from, to, reason, generation, at_ns and open_ms (0 unless to open). */
static void put_event(text *t, const cb_event *ev, bool group)
{
    char k[3 * CB_GROUP_KEY_MAX + 1];
    if (group && ev->key_len) {
        put(t, "\"key\":");
        put_str(t, json_key(ev->key, ev->key_len, k));
        put(t, ",");
    } else if (group)
        put(t, "\"key\":null,");
    put(t, "\"from\":\"%s\",\"to\":\"%s\",\"reason\":\"%s\",\"generation\":%llu,\"at_ns\":%llu,"
        "\"open_ms\":%llu", cb_state_name(ev->from), cb_state_name(ev->to),
        cb_reason_name(ev->reason), (ull)ev->generation, (ull)ev->at_ns,
        (ull)(ev->to == CB_OPEN ? ev->open_ms : 0));
}

/* ---- show, ls, watch -------------------------------------------------------------- */

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A duration for people: 850 ms, 12.3 s, 4.2 min, 3.1 h. */
static const char *dur(char buf[32], uint64_t ns)
{
    double ms = (double)ns / 1e6;
    if (ms < 1000)
        snprintf(buf, 32, "%.0f ms", ms);
    else if (ms < 60e3)
        snprintf(buf, 32, "%.1f s", ms / 1e3);
    else if (ms < 3600e3)
        snprintf(buf, 32, "%.1f min", ms / 60e3);
    else
        snprintf(buf, 32, "%.1f h", ms / 3600e3);
    return buf;
}

/* "50.0% (5/10)", or "-" for an empty window. */
static const char *ratio(char buf[48], uint32_t part, uint32_t whole)
{
    if (whole)
        snprintf(buf, 48, "%.1f%% (%u/%u)", 100.0 * part / whole, part, whole);
    else
        snprintf(buf, 48, "-");
    return buf;
}

/* One transition of the history, as show prints it; key: a group key's text, or NULL. */
static void show_event(FILE *out, const cb_event *ev, uint64_t now, const char *key)
{
    char d[32];
    fprintf(out, "    gen %-6llu %9s ago  ", (ull)ev->generation,
            ev->at_ns <= now ? dur(d, now - ev->at_ns) : "-");
    if (key)
        fprintf(out, "%s  ", key);
    fprintf(out, "%s -> %s (%s)", cb_state_name(ev->from), cb_state_name(ev->to),
            cb_reason_name(ev->reason));
    if (ev->to == CB_OPEN)
        fprintf(out, ", open %llu ms", (ull)ev->open_ms);
    fputc('\n', out);
}

/* What show prints of each file: the worst keys of a group (0: all), the last transitions. */
typedef struct show_opts { uint32_t keys, history; } show_opts;

static void show_breaker(FILE *out, const breaker *br, uint64_t now, uint32_t history)
{
    cb_stats s;
    cb_config c;
    char flags[1024], d[32], r1[48], r2[48];
    cb_event ev[CB_HISTORY];
    cb_stats_get(br->b, &s);
    cb_config_get(br->b, &c);
    cbflags_format(&c, flags, sizeof flags);
    fprintf(out, "  state     %s, generation %llu, for %s", cb_state_name(s.state),
            (ull)s.generation, s.state_since_ns <= now ? dur(d, now - s.state_since_ns) : "-");
    if (s.state == CB_OPEN)
        fprintf(out, ", retry after %llu ms", (ull)cb_retry_after_ms(br->b));
    fprintf(out, "\n  calls     %llu admitted, %llu rejected", (ull)s.admitted, (ull)s.rejected);
    for (unsigned why = CB_REJECT_OPEN, n = 0; why < CB__REJECT_COUNT && s.rejected; why++)
        if (s.rejected_by[why])
            fprintf(out, "%s%s %llu", n++ ? ", " : " (", cb_reject_name((cb_reject)why),
                    (ull)s.rejected_by[why]);
    fprintf(out, "%s, %u in flight\n", s.rejected ? ")" : "", s.in_flight);
    fprintf(out, "  outcomes  %llu successes, %llu failures, %llu ignored, %llu slow, %llu stale\n",
            (ull)s.successes, (ull)s.failures, (ull)s.ignored, (ull)s.slow, (ull)s.stale);
    fprintf(out, "  opens     %llu, consecutive failures %u\n", (ull)s.opens, s.consecutive_failures);
    if (c.window_calls || c.window_ms) {
        if (c.window_calls)
            fprintf(out, "  window    last %u calls", c.window_calls);
        else
            fprintf(out, "  window    last %u ms", c.window_ms);
        fprintf(out, ": %u calls, failure rate %s, slow rate %s\n", s.window_calls,
                ratio(r1, s.window_failures, s.window_calls), ratio(r2, s.window_slow, s.window_calls));
        fprintf(out, "  trend     one window ago: failure rate %s\n",
                ratio(r1, s.prev_window_failures, s.prev_window_calls));
    } else
        fprintf(out, "  window    none (consecutive failures only)\n");
    if (c.warn_failure_rate > 0)
        fprintf(out, "  warning   %s (warn_failure_rate %g)\n", s.degraded ? "DEGRADED" : "none",
                c.warn_failure_rate);
    fprintf(out, "  config    %s\n", esc(flags));
    size_t n = history ? cb_history(br->b, ev, history < CB_HISTORY ? history : CB_HISTORY) : 0;
    fprintf(out, "  history   %s\n", n ? "(oldest first)" : history ? "none" : "not shown (--history=0)");
    for (size_t i = 0; i < n; i++)
        show_event(out, &ev[i], now, NULL);
}

/* A group: its own counters and config, its keys worst first (at most max_keys of them,
   0: all), and its recent transitions with their keys. */
static void show_group(FILE *out, const breaker *br, uint64_t now, const show_opts *o)
{
    uint32_t max_keys = o->keys;
    cb_group_config gc;
    cb_group_stats gs;
    cb_stats os;
    char flags[1536], d[32], r[48], text[3 * CB_GROUP_KEY_MAX + 1];
    cb_group_config_get(br->g, &gc);
    cb_group_stats_get(br->g, &gs);
    cb_stats_get(cb_group_overflow(br->g), &os);
    cbflags_group_format(&gc, flags, sizeof flags);
    fprintf(out, "  group     %llu keys held of %u, %llu open; %llu created, %llu evicted, "
            "%llu trips held, %llu stale\n", (ull)gs.keys, gc.capacity, (ull)gs.open_keys,
            (ull)gs.created, (ull)gs.evicted, (ull)gs.trips_held, (ull)gs.stale);
    fprintf(out, "  overflow  %s, %llu calls of keys that found no place (%llu rejected)\n",
            cb_state_name(os.state), (ull)gs.overflow, (ull)os.rejected);
    fprintf(out, "  config    %s\n", esc(flags));
    /* room for the keys held as a scan counts them (the group's own count is a file's word,
       so it bounds nothing), and a few that may come meanwhile; never above capacity */
    size_t want = cb_group_each(br->g, NULL, NULL) + 16;
    if (want > gc.capacity)
        want = gc.capacity;
    if (max_keys && max_keys < want)
        want = max_keys;
    cb_group_key *keys = xmalloc(sizeof *keys * (want ? want : 1));
    size_t held = cb_group_worst(br->g, keys, want), shown = held < want ? held : want;
    fprintf(out, "  keys      %s\n", held ? "worst first" : "none held");
    if (shown)
        fprintf(out, "    %-24s %-12s %-20s %7s  %s\n", "KEY", "STATE", "FAILURE RATE", "RUN",
                "LAST USE");
    for (size_t i = 0; i < shown; i++) {
        const cb_stats *s = &keys[i].stats;
        fprintf(out, "    %-24s %-12s %-20s %7u  %s ago", key_text(keys[i].key, keys[i].key_len, text),
                cb_state_name(s->state), ratio(r, s->window_failures, s->window_calls),
                s->consecutive_failures, dur(d, keys[i].idle_ms * 1000000u));
        if (s->state == CB_OPEN)
            fprintf(out, ", retry after %llu ms", (ull)keys[i].retry_after_ms);
        fputc('\n', out);
    }
    if (held > shown)
        fprintf(out, "    ... and %zu more (--keys=0 shows every key)\n", held - shown);
    free(keys);
    cb_event *ev = xmalloc(sizeof *ev * (o->history ? o->history : 1));
    char *kb = xmalloc((size_t)gc.key_max * (o->history ? o->history : 1));
    size_t n = o->history ? cb_group_history(br->g, ev, o->history, kb, (size_t)gc.key_max * o->history) : 0;
    fprintf(out, "  history   %s\n", n ? "(oldest first)" : o->history ? "none" : "not shown (--history=0)");
    for (size_t i = 0; i < n; i++)
        show_event(out, &ev[i], now, key_text(ev[i].key, ev[i].key_len, text));   /* the ring's: keyed */
    free(kb);
    free(ev);
}

static void show(FILE *out, const breaker *br, const show_opts *o)
{
    uint64_t now = mono_ns();
    fprintf(out, "%s  %s%s\n", esc(br->name), esc(br->path), br->g ? "  (group)" : "");
    if (br->b)
        show_breaker(out, br, now, o->history);
    else if (br->g)
        show_group(out, br, now, o);
    else
        fprintf(out, "  error     %s\n", br->why);
}

#define KEYS_SHOWN 20

static const char USAGE_SHOW[] =
    "usage: cbctl show [--keys=N] [--history=N] FILE...\n"
    "\n"
    "Prints each breaker's state, generation, counters, window and failure rate,\n"
    "retry-after, config and its last transitions (oldest first). For a group file:\n"
    "the group's counters and config, then its keys worst first (open, half-open,\n"
    "manual, closed; then by failure rate) with state, failure rate, failure run and\n"
    "last use, and the group's last transitions with their keys.\n"
    "--keys=N     the N worst keys of each group (default 20; 0 = every key)\n"
    "--history=N  the last N transitions (default 10, 0..256; a breaker keeps 32,\n"
    "             a group 256)\n"
    "Keys are printed as the exports write them: printable ASCII as it is, '\"' and '\\'\n"
    "after a '\\', every other byte and '%' as %HH.\n";

static bool show_opt(int argc, char **argv, int *i, void *ctx)
{
    show_opts *o = ctx;
    const char *v;
    if (opt(argc, argv, i, "--keys", &v))
        o->keys = opt_uint("--keys", v, 0, CB_GROUP_CAPACITY_MAX);
    else if (opt(argc, argv, i, "--history", &v))
        o->history = opt_uint("--history", v, 0, HISTORY_MAX);
    else
        return false;
    return true;
}

static int cmd_show(int argc, char **argv)
{
    show_opts o = { KEYS_SHOWN, HISTORY_SHOWN };
    const char **files = xmalloc(sizeof *files * (size_t)argc);
    int n = operands(argc, argv, show_opt, &o, files);
    if (n == 0)
        die(EXIT_USAGE, "name at least one FILE");
    breaker *bs = attach_all(files, n);
    for (int i = 0; i < n; i++) {
        if (i)
            fputc('\n', stdout);
        show(stdout, &bs[i], &o);
    }
    detach_all(bs, n);
    free(files);
    return 0;
}

static const char USAGE_LS[] =
    "usage: cbctl ls DIR\n"
    "\n"
    "Lists the breaker and group files in DIR (regular files that start with a cb.h\n"
    "magic number; links, FIFOs, devices, folders and other files are skipped, and\n"
    "only regular files are opened): a breaker with name, state, generation and\n"
    "window failure rate; a group with its name, GROUP, and its keys held and open.\n"
    "A file that cannot be opened is listed with the reason, and the exit status is\n"
    "then 1. Names are printed escaped (\\xNN, \\\\).\n";

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The entry name of dir (dfd) opened for reading if it is a regular file, else -1: it is
   statted without following a link first, so that a FIFO, device or socket is never
   opened, and the file opened is checked to be the one statted. */
static int open_regular(int dfd, const char *name)
{
    struct stat st, got;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
        return -1;
    /* O_NONBLOCK and O_NOFOLLOW: it may have been replaced since, by a FIFO or a link */
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0 && (fstat(fd, &got) != 0 || !S_ISREG(got.st_mode) || !same_file(&st, &got))) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static void ls_entry(int dfd, const char *dir, const char *name, int *shown, int *status)
{
    uint64_t magic = 0;
    int fd = open_regular(dfd, name);
    if (fd < 0)
        return;
    if (pread(fd, &magic, sizeof magic, 0) == (ssize_t)sizeof magic &&
        (magic == CB__MAGIC || magic == CB__GROUP_MAGIC)) {
        char r[48];
        size_t len = strlen(dir) + strlen(name) + 2;
        char *path = xmalloc(len);
        snprintf(path, len, "%s/%s", dir, name);
        breaker br = { .path = path };
        ++*shown;
        if (attach(&br)) {
            name_of(&br, br.name);
            if (br.b) {
                cb_stats s;
                cb_stats_get(br.b, &s);
                printf("%-24s %-20s %-12s %8llu  %s\n", esc(name), esc(br.name),
                       cb_state_name(s.state), (ull)s.generation,
                       ratio(r, s.window_failures, s.window_calls));
            } else {
                cb_group_stats gs;
                cb_group_stats_get(br.g, &gs);
                printf("%-24s %-20s %-12s %8s  %llu keys, %llu open\n", esc(name), esc(br.name),
                       "GROUP", "-", (ull)gs.keys, (ull)gs.open_keys);
            }
            detach(&br);
        } else {
            printf("%-24s %-20s error: %s\n", esc(name), "?", br.why);
            *status = EXIT_FILE;
        }
        free(path);
    }
    close(fd);
}

static int cmd_ls(int argc, char **argv)
{
    const char **dir = xmalloc(sizeof *dir * (size_t)argc);
    if (operands(argc, argv, NULL, NULL, dir) != 1)
        die(EXIT_USAGE, "takes exactly one DIR");
    DIR *d = opendir(dir[0]);
    if (!d)
        die(EXIT_FILE, "%s: %s", esc(dir[0]), strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *e; (errno = 0, e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap && !(names = realloc(names, sizeof *names * (cap = cap ? 2 * cap : 64))))
            die(EXIT_FILE, "out of memory");
        if (!(names[n++] = strdup(e->d_name)))
            die(EXIT_FILE, "out of memory");
    }
    if (errno)
        die(EXIT_FILE, "%s: %s", esc(dir[0]), strerror(errno));
    if (n)   /* qsort wants a non-null base even for none */
        qsort(names, n, sizeof *names, by_name);
    int status = 0, shown = 0;
    printf("%-24s %-20s %-12s %8s  %s\n", "FILE", "NAME", "STATE", "GEN", "FAILURE RATE");
    for (size_t i = 0; i < n; i++) {
        ls_entry(dirfd(d), dir[0], names[i], &shown, &status);
        free(names[i]);
    }
    free(names);
    closedir(d);
    if (!shown)
        printf("(no breaker or group files in %s)\n", esc(dir[0]));
    free(dir);
    return status;
}

static const char USAGE_WATCH[] =
    "usage: cbctl watch [--interval-ms=N] [--count=N] [--keys=N] [--history=N] FILE...\n"
    "       cbctl watch --log=LOG [--log-max-bytes=N] [--log-keep=K] [--interval-ms=N]\n"
    "                   [--count=N] FILE...\n"
    "\n"
    "Shows the breakers and groups like cbctl show (--keys and --history as there),\n"
    "refreshed in place every --interval-ms (default 1000, 10..3600000) until\n"
    "interrupted (Ctrl-C, SIGTERM), or --count times. When stdout is not a terminal,\n"
    "frames follow each other instead. A file replaced at its path is followed: the new\n"
    "file is shown, or why it cannot be used.\n"
    "\n"
    "With --log there are no frames: every --interval-ms each file's history is read,\n"
    "and each transition not yet logged is appended to LOG as one JSON line (time, file,\n"
    "name, key for a group's, from, to, reason, generation, at_ns, open_ms), LOG\n"
    "fsync'd after each read. A restarted watch goes on after the last transition LOG\n"
    "holds; transitions that left the history before they were read are a line with\n"
    "\"gap\":true; a file that becomes unusable or usable again, a line with \"usable\".\n"
    "--log=LOG          append to LOG (created 0600, 0640 with --group-shared); a link\n"
    "                   or anything but a regular file is refused\n"
    "--log-max-bytes=N  before a line would take LOG past N bytes, LOG becomes LOG.1\n"
    "                   (LOG.1 becomes LOG.2, ...) and a new LOG is started: default\n"
    "                   10485760 (10 MiB), 4096..1099511627776\n"
    "--log-keep=K       the rotated files kept, LOG.1 to LOG.K: default 5, 1..1000\n";

#define LOG_MAX_BYTES 10485760u
#define LOG_MAX_BYTES_MAX (1ull << 40)
#define LOG_KEEP 5

typedef struct watch_opts {
    uint32_t interval_ms, count;
    show_opts show;
    bool shaped;         /* --keys or --history given: they shape frames */
    const char *log;
    uint64_t log_max;
    uint32_t log_keep;
    bool sized;          /* --log-max-bytes or --log-keep given */
} watch_opts;

static bool watch_opt(int argc, char **argv, int *i, void *ctx)
{
    watch_opts *w = ctx;
    const char *v;
    uint64_t u;
    if (opt(argc, argv, i, "--interval-ms", &v))
        w->interval_ms = opt_uint("--interval-ms", v, 10, 3600000);
    else if (opt(argc, argv, i, "--count", &v))
        w->count = opt_uint("--count", v, 1, UINT32_MAX);
    else if (opt(argc, argv, i, "--log", &v)) {
        if (!*v)
            die(EXIT_USAGE, "--log: empty (name the log file)");
        if (strlen(v) + 8 > PATH_MAX)   /* room for ".K" */
            die(EXIT_USAGE, "--log: path longer than %d bytes", PATH_MAX - 8);
        w->log = v;
    } else if (opt(argc, argv, i, "--log-max-bytes", &v)) {
        if (!cbflags__unsigned(v, LOG_MAX_BYTES_MAX, &u) || u < 4096)
            die(EXIT_USAGE, "--log-max-bytes: bad value '%s' (want an integer 4096..%llu)", esc(v),
                (ull)LOG_MAX_BYTES_MAX);
        w->log_max = u, w->sized = true;
    } else if (opt(argc, argv, i, "--log-keep", &v))
        w->log_keep = opt_uint("--log-keep", v, 1, 1000), w->sized = true;
    else if (show_opt(argc, argv, i, &w->show))
        w->shaped = true;
    else
        return false;
    return true;
}

static volatile sig_atomic_t interrupted;
static void on_interrupt(int sig) { (void)sig, interrupted = 1; }

static void sleep_ms(uint32_t ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);   /* a signal cuts it short */
}

static void watch_frames(const watch_opts *w, breaker *bs, int n)
{
    bool tty = isatty(STDOUT_FILENO);
    for (uint32_t frame = 0; !interrupted && (!w->count || frame < w->count); frame++) {
        time_t t = time(NULL);
        char at[16];
        strftime(at, sizeof at, "%H:%M:%S", localtime(&t));
        printf("%scbctl watch: every %u ms, %s\n\n", tty ? "\033[H\033[J" : frame ? "\n" : "",
               w->interval_ms, at);
        for (int i = 0; i < n; i++) {
            refresh(&bs[i]);
            show(stdout, &bs[i], &w->show);
            fputc('\n', stdout);
        }
        fflush(stdout);
        if (w->count && frame + 1 == w->count)
            break;
        sleep_ms(w->interval_ms);
    }
}

/* ---- watch --log: the incidents log ------------------------------------------------ */

/* The group's ring hands out places in order, and a read skips a place still being
   written: an entry logged past it would move the mark beyond it for good. So after a
   read that skipped a place, the transitions younger than this wait for the next. */
#define SETTLE_MS 50

/* The last transition logged of one history: the next read goes on after it. */
typedef struct mark {
    bool have;
    int src;                              /* at start: the log it was read from (0 LOG, k LOG.k) */
    uint64_t gen, at_ns;
    bool keyed;                           /* a group ring's: its key, as json_key writes it */
    char key[3 * CB_GROUP_KEY_MAX + 1];
    bool hole;                            /* a breaker's: generation hole_gen was missing */
    uint32_t hole_gen;                    /* between two held at the last read */
} mark;

/* The early warning as last logged, of a breaker ("" key) or of a group's key; src as in
   mark. */
typedef struct warned {
    char key[3 * CB_GROUP_KEY_MAX + 1];
    bool degraded;
    int src;
} warned;

/* A watched file's histories: its breaker's or its group's ring (main), and a group's
   overflow breaker's; its warnings logged; st: the file they belong to. */
typedef struct followed {
    mark main, overflow;
    warned *warn;
    size_t nwarn, capwarn;
    struct stat st;
} followed;

typedef struct logger {
    const char *path;
    int fd;
    uint64_t size, max;
    uint32_t keep;
    bool dirty;                  /* lines written since the last fsync */
    uint64_t mono_ns, real_ns;   /* the clocks at the start of this read */
    text line, body;
} logger;

static void log_open(logger *lg);

static void fsync_dir(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else
        snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL))   /* EINVAL: a folder that syncs no other way */
        die(EXIT_FILE, "--log: %s: %s", esc(dir), strerror(errno));
    close(fd);
}

static void log_sync(logger *lg)
{
    if (lg->dirty && fsync(lg->fd) != 0)
        die(EXIT_FILE, "--log %s: %s", esc(lg->path), strerror(errno));
    lg->dirty = false;
}

/* LOG.K-1 -> LOG.K, ..., LOG -> LOG.1 (the oldest, LOG.K, dropped), then a new LOG; the
   lines so far synced first, the renames with the new file's folder entry. */
static void log_rotate(logger *lg)
{
    char from[PATH_MAX], to[PATH_MAX];
    log_sync(lg);
    close(lg->fd);
    for (uint32_t k = lg->keep; k >= 1; k--) {
        if (k > 1)
            snprintf(from, sizeof from, "%s.%u", lg->path, k - 1);
        else
            snprintf(from, sizeof from, "%s", lg->path);
        snprintf(to, sizeof to, "%s.%u", lg->path, k);
        if (rename(from, to) != 0 && errno != ENOENT)
            die(EXIT_FILE, "--log: cannot rename %s to %s: %s", esc(from), esc(to), strerror(errno));
    }
    log_open(lg);
}

/* Appends s, first rotating if it would take the file past max (a line longer than max
   goes alone into a new file). An error ends cbctl: a restart resumes from the log. */
static void log_write(logger *lg, const char *s, size_t len)
{
    if (lg->size && lg->size + len > lg->max)
        log_rotate(lg);
    while (len) {
        ssize_t w = write(lg->fd, s, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            die(EXIT_FILE, "--log %s: %s", esc(lg->path), strerror(errno));
        s += w, len -= (size_t)w, lg->size += (uint64_t)w;
    }
    lg->dirty = true;
}

/* Opens LOG to append, made if missing. A link or anything but a regular file is
   refused: cbctl may hold rights that another writer of the folder lacks. The lock
   keeps a second watch off the same log. */
static void log_open(logger *lg)
{
    struct stat st;
    bool made = lstat(lg->path, &st) != 0;
    if (!made && S_ISLNK(st.st_mode))
        die(EXIT_FILE, "--log %s: a symbolic link: refused (name the file itself)", esc(lg->path));
    if (!made && !S_ISREG(st.st_mode))
        die(EXIT_FILE, "--log %s: not a regular file: refused", esc(lg->path));
    /* O_NOFOLLOW and O_NONBLOCK: a link put there since is refused, a FIFO not waited on */
    int fd = open(lg->path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK,
                  (mode_t)(attach_flags & CB_SHM_GROUP ? 0640 : 0600));
    if (fd < 0)
        die(EXIT_FILE, "--log %s: %s", esc(lg->path),
            errno == ELOOP ? "a symbolic link: refused (name the file itself)" : strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        die(EXIT_FILE, "--log %s: not a regular file: refused", esc(lg->path));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0)
        die(EXIT_FILE, "--log %s: %s", esc(lg->path),
            errno == EWOULDBLOCK ? "another cbctl watch --log is writing it" : strerror(errno));
    fcntl(fd, F_SETFL, O_APPEND);
    lg->fd = fd;
    lg->size = (uint64_t)st.st_size;
    char last;
    if (lg->size && pread(fd, &last, 1, st.st_size - 1) == 1 && last != '\n') {
        /* a line cut short (cbctl died writing it) is ended here, so that it stands alone */
        if (write(fd, "\n", 1) != 1)
            die(EXIT_FILE, "--log %s: %s", esc(lg->path), strerror(errno));
        lg->size++, lg->dirty = true;
    }
    if (made)
        fsync_dir(lg->path);
}

/* "time": at_ns on the breaker clock (CLOCK_MONOTONIC) as UTC wall-clock time, from its
   distance back from now; UINT64_MAX (or a time ahead of the clock) is now. */
static void put_time(text *t, const logger *lg, uint64_t at_ns)
{
    uint64_t ago = at_ns <= lg->mono_ns ? lg->mono_ns - at_ns : 0;
    uint64_t wall = lg->real_ns - (ago < lg->real_ns ? ago : 0);
    time_t sec = (time_t)(wall / 1000000000u);
    struct tm tm;
    char at[32];
    gmtime_r(&sec, &tm);
    strftime(at, sizeof at, "%Y-%m-%dT%H:%M:%S", &tm);
    put(t, "\"time\":\"%s.%03uZ\"", at, (unsigned)(wall / 1000000u % 1000u));
}

/* Writes one line: "time" (of at_ns, see put_time), "file", "name", then the members in
   body. Every line goes through here, so that another kind of line (a change of an
   early warning, say, with "warning":true) is one more caller. */
static void log_line(logger *lg, const breaker *br, uint64_t at_ns, const char *body)
{
    text *t = &lg->line;
    t->len = 0;
    put(t, "{");
    put_time(t, lg, at_ns);
    put(t, ",\"file\":");
    put_str(t, br->path);
    put(t, ",\"name\":");
    put_str(t, br->name);
    put(t, ",%s}\n", body);
    log_write(lg, t->s, t->len);
}

static void log_event(logger *lg, const breaker *br, const cb_event *ev, bool overflow, mark *m)
{
    text *b = &lg->body;
    b->len = 0;
    if (overflow)
        put(b, "\"overflow\":true,");
    put_event(b, ev, br->g && !overflow);
    log_line(lg, br, ev->at_ns, b->s);
    m->have = true, m->hole = false;
    m->gen = ev->generation, m->at_ns = ev->at_ns;
    m->keyed = br->g && !overflow && ev->key_len;
    if (m->keyed)
        json_key(ev->key, ev->key_len, m->key);
}

/* Transitions gone from the history before cbctl read them: after the one m holds,
   missed says which or how many. */
static void log_gap(logger *lg, const breaker *br, bool overflow, const mark *m, const char *missed)
{
    text *b = &lg->body;
    b->len = 0;
    if (overflow)
        put(b, "\"overflow\":true,");
    put(b, "\"gap\":true,");
    if (br->g && !overflow) {
        put(b, "\"after_key\":");
        if (m->keyed)
            put_str(b, m->key);
        else
            put(b, "null");
        put(b, ",");
    }
    put(b, "\"after_generation\":%llu,\"after_at_ns\":%llu,\"missed\":", (ull)m->gen, (ull)m->at_ns);
    put_str(b, missed);
    log_line(lg, br, UINT64_MAX, b->s);
}

static bool newer(uint32_t a, uint32_t b) { return (int32_t)(a - b) > 0; }

/* The transitions of breaker b (a breaker file's, or a group's overflow breaker) after
   m. Each transition is generation + 1, so a missing one shows: missing before the
   oldest held, the ring went past it before this read (a gap, at once); missing
   between two held, it may be being written still, and is looked for once more at
   the next read before it is a gap (a writer that died leaves its place empty). */
static void log_breaker(logger *lg, const breaker *br, cb_breaker *b, bool overflow, mark *m)
{
    cb_event ev[CB_HISTORY];
    size_t n = cb_history(b, ev, CB_HISTORY), from = 0;
    bool chained = m->have, wrapped = false;
    uint32_t prev = (uint32_t)m->gen;
    if (m->have) {
        size_t i = n;
        while (i > 0 && !((uint32_t)ev[i - 1].generation == prev && ev[i - 1].at_ns == m->at_ns))
            i--;
        if (i > 0)
            from = i;
        else if (n && newer((uint32_t)ev[0].generation, prev))
            wrapped = true;    /* every one held is newer than the last logged */
        else
            chained = false;   /* another file at the path: its generations began again */
    }
    for (size_t i = from; i < n; i++) {
        uint32_t g = (uint32_t)ev[i].generation;
        if (chained && g != prev + 1) {
            if (!(wrapped && i == 0) && !(m->hole && m->hole_gen == prev + 1)) {
                m->hole = true, m->hole_gen = prev + 1;
                break;
            }
            char missed[96];
            if (g - prev == 2)
                snprintf(missed, sizeof missed, "1 transition (generation %u)", prev + 1);
            else
                snprintf(missed, sizeof missed, "%u transitions (generations %u to %u)",
                         g - prev - 1, prev + 1, g - 1);
            log_gap(lg, br, overflow, m, missed);
        }
        log_event(lg, br, &ev[i], overflow, m);
        prev = g, chained = true;
    }
}

static bool is_mark(const cb_event *ev, const mark *m)
{
    char k[3 * CB_GROUP_KEY_MAX + 1];
    return ev->generation == m->gen && ev->at_ns == m->at_ns && m->keyed == (ev->key_len > 0) &&
           (!m->keyed || strcmp(json_key(ev->key, ev->key_len, k), m->key) == 0);
}

/* The places the group's ring has handed out: cb.h's count, which cb_group_history
   reads as well. Read before and after cb_group_history, and the same, with one event
   per place returned, the read skipped none. */
static uint64_t ring_handed(const cb_group *g)
{
    /* relaxed: only compared; two loads of one atomic never see it go back (coherence) */
    return atomic_load_explicit(&g->line->ring_next, memory_order_relaxed);
}

/* A group's transitions after m. Its ring is one for every key, in the order written:
   the last one logged is looked for there, and what follows it is new. Gone from a full
   ring, the ring went past it; how many were lost is not known (a key's generations
   count that key's transitions only). */
static void log_ring(logger *lg, const breaker *br, mark *m)
{
    cb_group_config gc;
    cb_group_config_get(br->g, &gc);
    size_t kb_len = (size_t)gc.key_max * CB__GROUP_HISTORY;
    cb_event *ev = xmalloc(sizeof *ev * CB__GROUP_HISTORY);
    char *kb = xmalloc(kb_len ? kb_len : 1);
    uint64_t before = ring_handed(br->g);
    size_t n = cb_group_history(br->g, ev, CB__GROUP_HISTORY, kb, kb_len), from = 0, end;
    uint64_t after = ring_handed(br->g), now = mono_ns();   /* after the read: no entry is newer */
    bool whole = before == after && n == (before < CB__GROUP_HISTORY ? before : CB__GROUP_HISTORY);
    uint64_t settle = whole ? 0 : SETTLE_MS * 1000000ull;
    bool lost = false;
    if (m->have) {
        from = n;
        while (from > 0 && !is_mark(&ev[from - 1], m))
            from--;
        lost = from == 0 && n == CB__GROUP_HISTORY;
    }
    for (end = from; end < n; end++)
        if (ev[end].at_ns <= now ? now - ev[end].at_ns < settle : ev[end].at_ns - now < settle)
            break;
    if (lost && end > from) {
        char missed[128];
        snprintf(missed, sizeof missed, "an unknown number of transitions: more than the "
                 "group's history holds (%u) between two reads", CB__GROUP_HISTORY);
        log_gap(lg, br, false, m, missed);
    }
    for (size_t i = from; i < end; i++)
        log_event(lg, br, &ev[i], false, m);
    free(kb);
    free(ev);
}

/* A line when the file becomes unusable or usable again (refresh() says so on stderr);
   "replaced" when the file now at the path is another than the one logged so far. */
/* The warning of key ("" for a breaker) as logged, or NULL; add: make it (not degraded). */
static warned *warned_of(followed *f, const char *key, bool add)
{
    for (size_t i = 0; i < f->nwarn; i++)
        if (strcmp(f->warn[i].key, key) == 0)
            return &f->warn[i];
    if (!add)
        return NULL;
    if (f->nwarn == f->capwarn &&
        !(f->warn = realloc(f->warn, sizeof *f->warn * (f->capwarn = f->capwarn ? 2 * f->capwarn : 8))))
        die(EXIT_FILE, "out of memory");
    warned *w = &f->warn[f->nwarn++];
    memset(w, 0, sizeof *w);
    snprintf(w->key, sizeof w->key, "%s", key);
    w->src = -1;
    return w;
}

/* A change of the early warning (stats.degraded, warn_failure_rate): logged when it
   differs from the last line about it. A key's is logged once it is held no longer too,
   as not degraded. No "generation": the warning is no transition. */
static void log_warning(logger *lg, const breaker *br, followed *f, const char *key,
                        const cb_stats *s)
{
    bool degraded = s && s->degraded;
    warned *w = warned_of(f, key, degraded);
    if (!w || w->degraded == degraded)
        return;
    text *b = &lg->body;
    b->len = 0;
    if (*key) {
        put(b, "\"key\":");
        put_str(b, key);
        put(b, ",");
    }
    put(b, "\"warning\":true,\"degraded\":%s", degraded ? "true" : "false");
    if (s)
        put(b, ",\"state\":\"%s\",\"window_calls\":%u,\"window_failures\":%u",
            cb_state_name(s->state), s->window_calls, s->window_failures);
    else
        put(b, ",\"held\":false");
    log_line(lg, br, lg->mono_ns, b->s);
    w->degraded = degraded;
    w->src = 0;
}

/* Only what is warned now is remembered (not warned is what an absent entry means), so
   the table stays as small as the warnings are few. */
static void forget_recovered(followed *f)
{
    size_t kept = 0;
    for (size_t i = 0; i < f->nwarn; i++)
        if (f->warn[i].degraded)
            f->warn[kept++] = f->warn[i];
    f->nwarn = kept;
}

typedef struct warn_scan { logger *lg; const breaker *br; followed *f; bool *seen; size_t before; } warn_scan;

static bool warn_key(const char *key, size_t len, const cb_stats *s, void *user)
{
    warn_scan *ws = user;
    char text[3 * CB_GROUP_KEY_MAX + 1];
    json_key(key, len, text);
    warned *w = warned_of(ws->f, text, false);
    if (w && (size_t)(w - ws->f->warn) < ws->before)   /* one warned before this read */
        ws->seen[w - ws->f->warn] = true;
    log_warning(ws->lg, ws->br, ws->f, text, s);
    return true;
}

static void log_warnings(logger *lg, const breaker *br, followed *f)
{
    if (br->b) {
        cb_stats s;
        cb_stats_get(br->b, &s);
        log_warning(lg, br, f, "", &s);
        return;
    }
    size_t before = f->nwarn;   /* the keys warned of before this read */
    bool *seen = xmalloc(before + 1);
    memset(seen, 0, before + 1);
    warn_scan ws = { lg, br, f, seen, before };
    cb_group_each(br->g, warn_key, &ws);
    for (size_t i = 0; i < before; i++)
        if (!seen[i] && f->warn[i].degraded)   /* a warned key no longer held */
            log_warning(lg, br, f, f->warn[i].key, NULL);
    free(seen);
    forget_recovered(f);
}

static void log_usable(logger *lg, const breaker *br, bool replaced)
{
    text *b = &lg->body;
    b->len = 0;
    if (usable(br))
        put(b, "\"usable\":true,\"replaced\":%s", replaced ? "true" : "false");
    else {
        put(b, "\"usable\":false,\"error\":");
        put_str(b, br->why);
    }
    log_line(lg, br, UINT64_MAX, b->s);
}

static void log_file(logger *lg, breaker *br, followed *f)
{
    char why[sizeof br->why];
    bool was = usable(br);
    memcpy(why, br->why, sizeof why);
    refresh(br);
    bool is = usable(br), other = is && !same_file(&f->st, &br->st);
    if (is != was || other || (!is && strcmp(why, br->why) != 0))
        log_usable(lg, br, other);
    if (!is)
        return;
    if (other) {   /* another file: none of its history is logged yet */
        memset(&f->main, 0, sizeof f->main);
        memset(&f->overflow, 0, sizeof f->overflow);
        f->st = br->st;
    }
    if (br->b)
        log_breaker(lg, br, br->b, false, &f->main);
    else {
        log_ring(lg, br, &f->main);
        log_breaker(lg, br, cb_group_overflow(br->g), true, &f->overflow);
    }
    log_warnings(lg, br, f);
}

static void log_poll(logger *lg, breaker *bs, followed *fs, int n)
{
    struct timespec rt;
    lg->mono_ns = mono_ns();
    clock_gettime(CLOCK_REALTIME, &rt);
    lg->real_ns = (uint64_t)rt.tv_sec * 1000000000ull + (uint64_t)rt.tv_nsec;
    for (int i = 0; i < n; i++)
        log_file(lg, &bs[i], &fs[i]);
    log_sync(lg);
}

/* The integer after member in a line cbctl wrote, exact (cJSON's double would round
   at_ns). No string in the line holds the member's text: cJSON writes a quote as \". */
static bool line_u64(const char *line, const char *member, uint64_t *out)
{
    const char *p = strstr(line, member);
    char *end;
    if (!p || (p += strlen(member), *p < '0' || *p > '9'))
        return false;
    errno = 0;
    *out = strtoull(p, &end, 10);
    return errno == 0;
}

/* A warning line: the warning of its breaker or key as logged, unless a newer log file
   said it already (in one file, the last line about it wins). */
static void resume_warning(const cJSON *o, int src, const breaker *bs, followed *fs, int n)
{
    const cJSON *file = cJSON_GetObjectItemCaseSensitive(o, "file");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    const cJSON *key = cJSON_GetObjectItemCaseSensitive(o, "key");
    if (!cJSON_IsString(file) || !cJSON_IsString(name))
        return;
    for (int i = 0; i < n; i++) {
        if (strcmp(bs[i].path, file->valuestring) != 0 || strcmp(bs[i].name, name->valuestring) != 0 ||
            (bs[i].g != NULL) != cJSON_IsString(key))
            continue;
        warned *w = warned_of(&fs[i], cJSON_IsString(key) ? key->valuestring : "", true);
        if (w->src == -1 || w->src == src) {
            w->src = src;
            w->degraded = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "degraded"));
        }
    }
}

/* One line of a log: a transition of a watched history sets its mark, unless a newer
   log file (a smaller src) set it already. */
static void resume_line(const char *line, int src, const breaker *bs, followed *fs, int n)
{
    cJSON *o = cJSON_Parse(line);
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "warning"))) {
        resume_warning(o, src, bs, fs, n);
        cJSON_Delete(o);
        return;
    }
    const cJSON *file = cJSON_GetObjectItemCaseSensitive(o, "file");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    const cJSON *key = cJSON_GetObjectItemCaseSensitive(o, "key");
    bool over = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "overflow"));
    uint64_t gen, at;
    if (!cJSON_IsString(file) || !cJSON_IsString(name) || cJSON_GetObjectItemCaseSensitive(o, "gap") ||
        !line_u64(line, "\"generation\":", &gen) || !line_u64(line, "\"at_ns\":", &at)) {
        cJSON_Delete(o);
        return;
    }
    for (int i = 0; i < n; i++) {
        if (strcmp(bs[i].path, file->valuestring) != 0 || strcmp(bs[i].name, name->valuestring) != 0 ||
            (bs[i].g != NULL) != (over || key != NULL))
            continue;
        mark *m = over ? &fs[i].overflow : &fs[i].main;
        if (m->have && m->src != src)
            continue;
        m->have = true, m->src = src, m->gen = gen, m->at_ns = at;
        m->keyed = cJSON_IsString(key);
        snprintf(m->key, sizeof m->key, "%s", m->keyed ? key->valuestring : "");
    }
    cJSON_Delete(o);
}

static void resume_from(const char *path, int src, const breaker *bs, followed *fs, int n)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return;
    FILE *in = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? fdopen(fd, "r") : NULL;
    if (!in) {
        close(fd);
        return;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, in)) > 0)   /* a line cut short has no '\n': skipped */
        if (line[len - 1] == '\n' && (strstr(line, "\"generation\":") || strstr(line, "\"warning\":true")))
            resume_line(line, src, bs, fs, n);
    free(line);
    fclose(in);
}

/* Where the log left off: each history's last line in LOG, and for those LOG does not
   name (just rotated, or quiet for long), in LOG.1, LOG.2, ...; every file is read, as a
   warning's last line may be in any of them. */
static void resume(const logger *lg, const breaker *bs, followed *fs, int n)
{
    char path[PATH_MAX];
    for (uint32_t k = 0; k <= lg->keep; k++) {
        if (k)
            snprintf(path, sizeof path, "%s.%u", lg->path, k);
        else
            snprintf(path, sizeof path, "%s", lg->path);
        resume_from(path, (int)k, bs, fs, n);
    }
}

static void watch_log(const watch_opts *w, breaker *bs, int n)
{
    logger lg = { .path = w->log, .fd = -1, .max = w->log_max, .keep = w->log_keep };
    followed *fs = xmalloc(sizeof *fs * (size_t)n);
    memset(fs, 0, sizeof *fs * (size_t)n);
    for (int i = 0; i < n; i++)
        fs[i].st = bs[i].st;
    log_open(&lg);
    resume(&lg, bs, fs, n);
    for (int i = 0; i < n; i++)
        forget_recovered(&fs[i]);
    printf("cbctl watch: logging the transitions of %d file%s to %s every %u ms\n", n,
           n == 1 ? "" : "s", esc(w->log), w->interval_ms);
    fflush(stdout);
    for (uint32_t k = 1;; k++) {
        log_poll(&lg, bs, fs, n);
        if (interrupted || (w->count && k == w->count))
            break;
        sleep_ms(w->interval_ms);
        if (interrupted || k + 1 == w->count)
            sleep_ms(SETTLE_MS);   /* so that the last read takes what settling held back */
    }
    close(lg.fd);
    free(lg.line.s);
    free(lg.body.s);
    for (int i = 0; i < n; i++)
        free(fs[i].warn);
    free(fs);
}

static int cmd_watch(int argc, char **argv)
{
    watch_opts w = { 1000, 0, { KEYS_SHOWN, HISTORY_SHOWN }, false, NULL, LOG_MAX_BYTES, LOG_KEEP, false };
    const char **files = xmalloc(sizeof *files * (size_t)argc);
    int n = operands(argc, argv, watch_opt, &w, files);
    if (w.log && w.shaped)
        die(EXIT_USAGE, "--keys and --history shape the frames; --log writes every transition");
    if (!w.log && w.sized)
        die(EXIT_USAGE, "--log-max-bytes and --log-keep need --log=FILE");
    if (n == 0)
        die(EXIT_USAGE, "name at least one FILE");
    breaker *bs = attach_all(files, n);
    struct sigaction sa = { .sa_handler = on_interrupt };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (w.log)
        watch_log(&w, bs, n);
    else
        watch_frames(&w, bs, n);
    detach_all(bs, n);
    free(files);
    return 0;
}

/* ---- set, reset, create ------------------------------------------------------------ */

static const char USAGE_SET[] =
    "usage: cbctl set FILE STATE [--key=KEY]\n"
    "\n"
    "Moves the breaker to STATE, one of closed, open, half-open, forced-open, disabled,\n"
    "metrics-only ('_' works for '-'), as cb_set_state() does: a manual transition\n"
    "(reason manual) that every process sharing the file sees at its next call.\n"
    "A group file takes --key=KEY, the key to move (cb_group_set_state(): a key not\n"
    "held is made), written as cbctl show prints it: %HH for a byte, \\\" and \\\\ for a\n"
    "quote and a backslash.\n";

/* The key of --key for the file, or none (0) for a breaker file; a usage error when
   one is given to a file of the other kind. */
static size_t key_for(const breaker *br, const char *arg, char key[CB_GROUP_KEY_MAX])
{
    if (br->b && arg)
        die(EXIT_USAGE, "%s holds a breaker, not a group: --key is for group files", esc(br->path));
    if (br->g && !arg)
        die(EXIT_USAGE, "%s holds a group: name the key with --key=KEY", esc(br->path));
    return arg ? key_bytes(arg, key) : 0;
}

static void set_state(const char *path, const char *key_arg, cb_state to)
{
    char key[CB_GROUP_KEY_MAX], text[3 * CB_GROUP_KEY_MAX + 1];
    breaker *b = attach_all(&path, 1);
    size_t len = key_for(b, key_arg, key);
    cb_stats s;
    cb_state from;
    if (b->b) {
        from = cb_get_state(b->b);
        cb_set_state(b->b, to);
        cb_stats_get(b->b, &s);
        printf("%s: %s -> %s (generation %llu)\n", esc(b->name), cb_state_name(from),
               cb_state_name(to), (ull)s.generation);
    } else {
        cb_group_config gc;
        cb_group_config_get(b->g, &gc);
        if (len > gc.key_max)
            die(EXIT_USAGE, "--key: %zu bytes, longer than the group's key_max (%u)", len, gc.key_max);
        from = cb_group_get_state(b->g, key, len);
        cb_err e = cb_group_set_state(b->g, key, len, to);
        if (e == CB_ENOMEM)
            die(EXIT_FILE, "%s: no place for key '%s': each of the %u places holds a key that "
                "may not be evicted now", esc(b->name), key_text(key, len, text), gc.capacity);
        if (e != CB_OK)
            die(EXIT_FILE, "%s: key '%s': %s", esc(b->name), key_text(key, len, text), cb_strerror(e));
        s.generation = 0;
        cb_group_key_stats(b->g, key, len, &s);
        printf("%s[%s]: %s -> %s (generation %llu)\n", esc(b->name), key_text(key, len, text),
               cb_state_name(from), cb_state_name(to), (ull)s.generation);
    }
    detach_all(b, 1);
}

static bool key_opt(int argc, char **argv, int *i, void *ctx)
{
    return opt(argc, argv, i, "--key", (const char **)ctx);
}

static int cmd_set(int argc, char **argv)
{
    const char **ops = xmalloc(sizeof *ops * (size_t)argc), *key = NULL;
    cb_state to;
    if (operands(argc, argv, key_opt, &key, ops) != 2)
        die(EXIT_USAGE, "takes FILE and STATE");
    if (!cb_state_parse(ops[1], &to))
        die(EXIT_USAGE, "unknown state '%s' (want closed, open, half-open, forced-open, "
            "disabled or metrics-only)", esc(ops[1]));
    set_state(ops[0], key, to);
    free(ops);
    return 0;
}

static const char USAGE_RESET[] =
    "usage: cbctl reset FILE [--key=KEY]\n"
    "\n"
    "Resets the breaker as cb_reset() does: closed, window and backoff cleared.\n"
    "Cumulative counters are kept. A group file takes --key=KEY (as cbctl set).\n";

static int cmd_reset(int argc, char **argv)
{
    const char **ops = xmalloc(sizeof *ops * (size_t)(argc + 1)), *key = NULL;
    if (operands(argc, argv, key_opt, &key, ops) != 1)
        die(EXIT_USAGE, "takes exactly one FILE");
    set_state(ops[0], key, CB_CLOSED);
    free(ops);
    return 0;
}

static const char USAGE_CREATE[] =
    "usage: cbctl create FILE [--group] [group flags] [breaker flags]\n"
    "\n"
    "Creates the breaker file with this config, or checks that an existing one holds\n"
    "it (cb_shm_open). Services that open FILE with the same config share the breaker.\n"
    "With --group or any group flag, the file holds a keyed group instead\n"
    "(cb_group_shm_open), and the breaker flags are its template.\n"
    "\n" CBFLAGS_USAGE CBFLAGS_GROUP_USAGE;

typedef struct create_opts { cb_group_config gc; bool group; } create_opts;

static bool create_opt(int argc, char **argv, int *i, void *ctx)
{
    create_opts *c = ctx;
    char err[256];
    if (opt(argc, argv, i, "--group", NULL))
        return c->group = true;
    int got = cbflags__parse_in(cbflags__group_table, CB__COUNT_OF(cbflags__group_table),
                                argv[*i], &c->gc, err, sizeof err);
    if (got == 1)
        c->group = true;
    else if (got == 0)
        got = cbflags_parse(argv[*i], &c->gc.breaker, err, sizeof err);
    if (got < 0)
        die(EXIT_USAGE, "%s", esc(err));
    return got == 1;
}

/* The config a group file made from gc would hold: every default filled in. */
static void group_resolved(const cb_group_config *gc, cb_group_config *out)
{
    cb__gcfg r;
    *out = *gc;
    if (cb__group_resolve(gc, &out->breaker, &r, NULL, 0) != CB_OK)
        return;
#define FROM_RESOLVED(type, field, flag, doc) out->field = r.field;
    CB__GROUP_CONFIG_FIELDS(FROM_RESOLVED)
#undef FROM_RESOLVED
}

static int cmd_create(int argc, char **argv)
{
    create_opts c = { 0 };
    const char **ops = xmalloc(sizeof *ops * (size_t)(argc + 1));
    char msg[256], want[1536], have[1536];
    cb_err e;
    if (operands(argc, argv, create_opt, &c, ops) != 1)
        die(EXIT_USAGE, "takes exactly one FILE");
    if ((c.group ? cb_group_config_check(&c.gc, msg, sizeof msg)
                 : cb_config_check(&c.gc.breaker, msg, sizeof msg)) != CB_OK)
        die(EXIT_USAGE, "%s", esc(msg));
    breaker made = { .path = ops[0] };
    if (c.group)
        made.g = cb_group_shm_open_ex(ops[0], &c.gc, attach_flags, &e, msg, sizeof msg);
    else
        made.b = cb_shm_open_ex(ops[0], &c.gc.breaker, attach_flags, &e, msg, sizeof msg);
    if (!usable(&made) && e == CB_EMISMATCH && group_file(ops[0]) == c.group) {
        cb_group_config r;
        breaker *old = attach_all(ops, 1);
        if (c.group) {
            group_resolved(&c.gc, &r);
            cbflags_group_format(&r, want, sizeof want);
            cb_group_config_get(old->g, &r);
            cbflags_group_format(&r, have, sizeof have);
        } else {
            cb_config_resolve(&c.gc.breaker, &r.breaker, NULL, 0);
            cbflags_format(&r.breaker, want, sizeof want);
            cb_config_get(old->b, &r.breaker);
            cbflags_format(&r.breaker, have, sizeof have);
        }
        die(EXIT_FILE, "%s: %s\n  the file holds: %s\n  asked for:      %s", esc(ops[0]),
            cb_strerror(e), esc(have), esc(want));
    }
    if (!usable(&made)) {
        size_t n = strlen(ops[0]);
        die(EXIT_FILE, "%s: %s: %s", esc(ops[0]), cb_strerror(e),
            esc(strncmp(msg, ops[0], n) == 0 && msg[n] == ':' ? msg + n + 2 : msg));
    }
    if (made.g) {
        cb_group_config_get(made.g, &c.gc);
        cbflags_group_format(&c.gc, have, sizeof have);
    } else {
        cb_config_get(made.b, &c.gc.breaker);
        cbflags_format(&c.gc.breaker, have, sizeof have);
    }
    printf("%s: %s%s\n", esc(ops[0]), made.g ? "group " : "", esc(have));
    detach(&made);
    free(ops);
    return 0;
}

/* ---- metrics ----------------------------------------------------------------------- */

/* The whole text of a formatter with snprintf semantics (cb_format_json and the like):
   written again into a larger buffer while it does not fit, as a group can gain keys
   between the sizing and the writing. */
typedef int (*format_fn)(const void *ctx, char *buf, size_t cap);
static char *whole(format_fn fn, const void *ctx)
{
    for (size_t cap = 4096;;) {
        char *buf = xmalloc(cap);
        int len = fn(ctx, buf, cap);
        if (len < 0)
            die(EXIT_FILE, "out of memory");
        if ((size_t)len < cap)
            return buf;
        free(buf);
        cap = (size_t)len + 1 + (size_t)len / 8;   /* and room for what arrives meanwhile */
    }
}

static int json_of(const void *ctx, char *buf, size_t cap)
{
    const breaker *br = ctx;
    return br->b ? cb_format_json(br->b, buf, cap) : cb_group_format_json(br->g, buf, cap);
}

/* The whole history a file holds (a breaker's CB_HISTORY, a group's ring), oldest
   first; n events in a malloc'd array, keys in *key_buf (a group's). */
static cb_event *history_of(const breaker *br, size_t *n, char **key_buf)
{
    cb_event *ev = xmalloc(sizeof *ev * (br->g ? CB__GROUP_HISTORY : CB_HISTORY));
    *key_buf = NULL;
    if (br->g) {
        cb_group_config gc;
        cb_group_config_get(br->g, &gc);
        size_t len = (size_t)gc.key_max * CB__GROUP_HISTORY;
        *key_buf = xmalloc(len);
        *n = cb_group_history(br->g, ev, CB__GROUP_HISTORY, *key_buf, len);
    } else
        *n = cb_history(br->b, ev, CB_HISTORY);
    return ev;
}

/* One breaker or group as cb_format_json() or cb_group_format_json() writes it, with
   "history" (every transition it holds, oldest first) and "file" added. Spliced as
   text, not parsed: cJSON keeps numbers as doubles, exact only up to 2^53 (ns past
   104 days). */
static char *breaker_json(const breaker *br)
{
    text t = { 0 };
    size_t n;
    char *kb, *obj = whole(json_of, br);
    cb_event *ev = history_of(br, &n, &kb);
    put(&t, "%.*s,\"history\":[", (int)(strlen(obj) - 1), obj);   /* over the final '}' */
    for (size_t i = 0; i < n; i++) {
        put(&t, "%s{", i ? "," : "");
        put_event(&t, &ev[i], br->g != NULL);
        put(&t, "}");
    }
    put(&t, "],\"file\":");
    put_str(&t, br->path);
    put(&t, "}");
    free(obj);
    free(ev);
    free(kb);
    return t.s;
}

/* The files to export, split into breakers and groups as cb_format_prometheus_ex takes
   them; a file that cannot be used has no series rather than stale ones. */
typedef struct exposition {
    cb_breaker **bs;
    cb_group **gs;
    size_t nb, ng;
    const cb_export_limits *lim;
} exposition;

static int prometheus_of(const void *ctx, char *buf, size_t cap)
{
    const exposition *x = ctx;
    return cb_format_prometheus_ex(x->bs, x->nb, x->gs, x->ng, x->lim, buf, cap);
}

static char *prometheus_text(const breaker *bs, int n, const cb_export_limits *lim)
{
    exposition x = { xmalloc(sizeof *x.bs * (size_t)n), xmalloc(sizeof *x.gs * (size_t)n), 0, 0, lim };
    for (int i = 0; i < n; i++)
        if (bs[i].b)
            x.bs[x.nb++] = bs[i].b;
        else if (bs[i].g)
            x.gs[x.ng++] = bs[i].g;
    char *text = whole(prometheus_of, &x);
    free(x.bs);
    free(x.gs);
    return text;
}

/* --max-keys and --not-closed, of metrics and serve: the bound on a group's key labels. */
static bool limits_opt(int argc, char **argv, int *i, cb_export_limits *lim)
{
    const char *v;
    if (opt(argc, argv, i, "--max-keys", &v))
        lim->max_keys = opt_uint("--max-keys", v, 0, CB_GROUP_CAPACITY_MAX);
    else if (opt(argc, argv, i, "--not-closed", NULL))
        lim->not_closed = true;
    else
        return false;
    return true;
}

#define LIMITS_USAGE                                                                      \
    "--max-keys=N  each group's N worst keys only (as cbctl show orders them; default 0,\n" \
    "              every key): at most N + 1 label sets per group and family\n"          \
    "--not-closed  only the keys that are not CLOSED\n"                                   \
    "A group's own series (cb_group_keys, ...) and its overflow breaker are always there.\n"

static const char USAGE_METRICS[] =
    "usage: cbctl metrics --json|--prometheus [--max-keys=N] [--not-closed] FILE...\n"
    "\n"
    "--json        a JSON array, one object per file: cb_format_json() or, for a group,\n"
    "              cb_group_format_json() (every key), plus \"history\" (the transitions\n"
    "              held, oldest first: from, to, reason, generation, at_ns, open_ms, and a\n"
    "              group's key) and \"file\"\n"
    "--prometheus  Prometheus text format 0.0.4 (cb_format_prometheus_ex()): a group's\n"
    "              keys carry a key label, its overflow breaker overflow=\"true\"\n"
    LIMITS_USAGE
    "Names must be unique across the files.\n";

typedef struct metrics_opts { bool json, prometheus; cb_export_limits lim; } metrics_opts;

static bool metrics_opt(int argc, char **argv, int *i, void *ctx)
{
    metrics_opts *m = ctx;
    if (opt(argc, argv, i, "--json", NULL))
        m->json = true;
    else if (opt(argc, argv, i, "--prometheus", NULL))
        m->prometheus = true;
    else
        return limits_opt(argc, argv, i, &m->lim);
    return true;
}

static int cmd_metrics(int argc, char **argv)
{
    metrics_opts m = { false, false, { 0, false } };
    const char **files = xmalloc(sizeof *files * (size_t)argc);
    int n = operands(argc, argv, metrics_opt, &m, files);
    if (m.json == m.prometheus)
        die(EXIT_USAGE, "choose one of --json and --prometheus");
    if (n == 0)
        die(EXIT_USAGE, "name at least one FILE");
    breaker *bs = attach_all(files, n);
    check_names_unique(bs, n);
    char *text;
    if (m.json) {
        for (int i = 0; i < n; i++) {
            text = breaker_json(&bs[i]);
            printf("%s%s", i ? "," : "[", text);
            free(text);
        }
        printf("]\n");
    } else {
        text = prometheus_text(bs, n, &m.lim);
        fputs(text, stdout);
        free(text);
    }
    detach_all(bs, n);
    free(files);
    return 0;
}

/* ---- serve ------------------------------------------------------------------------- */

/* Health of one breaker, and of all (the worst of them). */
enum health { HEALTHY, DEGRADED, UNHEALTHY, CRITICAL };
static const char *const health_names[] = { "HEALTHY", "DEGRADED", "UNHEALTHY", "CRITICAL" };

/* A connection, from accept to close. While it waits for a request (its headers) it is in
   the server's deadline list, which stays in deadline order because every deadline is the
   same time after the moment it is armed. */
typedef struct client {
    struct client *prev, *next;
    uint64_t deadline_ns;
    int fd;
    bool armed;
} client;

typedef struct server {
    breaker *bs;
    int n;
    double warn;          /* failure rate at or above which a closed breaker is DEGRADED */
    cb_export_limits lim; /* the bound on group key labels in /metrics */
    uint64_t header_ns;   /* a request's headers must be in within this */
    client *head, *tail;  /* the connections waiting for a request, earliest deadline first */
    unsigned closed;      /* connections closed in the last MHD_run */
} server;

static void disarm(server *sv, client *c)
{
    if (!c->armed)
        return;
    *(c->prev ? &c->prev->next : &sv->head) = c->next;
    *(c->next ? &c->next->prev : &sv->tail) = c->prev;
    c->prev = c->next = NULL;
    c->armed = false;
}

static void arm(server *sv, client *c)
{
    disarm(sv, c);
    c->deadline_ns = mono_ns() + sv->header_ns;
    c->prev = sv->tail;
    *(sv->tail ? &sv->tail->next : &sv->head) = c;
    sv->tail = c;
    c->armed = true;
}

static client *client_of(struct MHD_Connection *mc)
{
    const union MHD_ConnectionInfo *i = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return i ? i->socket_context : NULL;
}

/* A new connection's first request is due within the header timeout from accept. */
static void on_connection(void *cls, struct MHD_Connection *mc, void **ctx,
                          enum MHD_ConnectionNotificationCode what)
{
    server *sv = cls;
    if (what == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *i = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
        client *c = xmalloc(sizeof *c);
        *c = (client){ .fd = i ? i->connect_fd : -1 };
        arm(sv, c);
        *ctx = c;
    } else if (what == MHD_CONNECTION_NOTIFY_CLOSED && *ctx) {
        disarm(sv, *ctx);   /* before MHD closes the socket: no shutdown of a reused fd */
        free(*ctx);
        *ctx = NULL;
        sv->closed++;
    }
}

/* The next request on a kept-alive connection is due within the timeout from now. */
static void on_completed(void *cls, struct MHD_Connection *mc, void **req,
                         enum MHD_RequestTerminationCode toe)
{
    (void)req, (void)toe;
    client *c = client_of(mc);
    if (c)
        arm(cls, c);
}

/* Shuts down the connections whose request is overdue: MHD sees the end of the stream
   and closes them. MHD's own timeout counts inactivity only, so a client that sent a
   byte a second would hold its connection for ever. Returns the next deadline, or
   UINT64_MAX. */
static uint64_t cut_overdue(server *sv)
{
    uint64_t now = mono_ns();
    while (sv->head && sv->head->deadline_ns <= now) {
        client *c = sv->head;
        disarm(sv, c);
        if (c->fd >= 0)
            shutdown(c->fd, SHUT_RDWR);
    }
    return sv->head ? sv->head->deadline_ns : UINT64_MAX;
}

/* MHD's messages, at most one a second: nearly all are about one client (gone away, or
   cut at its header deadline), and a crowd of clients must not flood the log. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    static uint64_t last_ns;
    static unsigned long dropped;
    uint64_t now = mono_ns();
    (void)cls;
    if (last_ns && now - last_ns < 1000000000u) {
        dropped++;
        return;
    }
    last_ns = now;
    if (dropped)
        fprintf(stderr, "cbctl serve: (%lu messages left out)\n", dropped);
    dropped = 0;
    fputs("cbctl serve: ", stderr);
    vfprintf(stderr, fmt, ap);
}

/* The window's failure rate, or -1 while the window holds fewer than minimum_calls. */
static double failure_rate(const cb_config *c, const cb_stats *s)
{
    if (!(c->window_calls || c->window_ms) || !s->window_calls || s->window_calls < c->minimum_calls)
        return -1;
    return (double)s->window_failures / s->window_calls;
}

/* CRITICAL only while the breaker will refuse the next call for time still to run. Once
   an open period is over the next call probes; a 503 then would keep a load balancer
   from ever sending that call, and the instance would stay out for good. */
static enum health health_of(bool critical, const cb_stats *s, uint64_t retry_ms, bool warned)
{
    if (s->state == CB_FORCED_OPEN || (s->state == CB_OPEN && retry_ms > 0))
        return critical ? CRITICAL : UNHEALTHY;
    if (s->state == CB_OPEN || s->state == CB_HALF_OPEN || (s->state != CB_DISABLED && warned))
        return DEGRADED;
    return HEALTHY;
}

#define WARN_DEFAULT 0.2

/* Does the breaker warn (DEGRADED while CLOSED)? Its own early warning (warn_failure_rate,
   stats.degraded) when it has one and --warn-failure-rate did not override it (warn < 0);
   else the window's rate at or above the flag's rate, or 0.2. */
static bool warns(const cb_config *c, const cb_stats *s, double warn)
{
    if (warn < 0 && c->warn_failure_rate > 0)
        return s->degraded;
    double rate = failure_rate(c, s);
    return rate >= 0 && rate >= (warn < 0 ? WARN_DEFAULT : warn);
}

/* A breaker's (or a key's) fields of /health. */
static enum health health_fields(cJSON *o, bool critical, const cb_config *c, const cb_stats *s,
                                 uint64_t retry_ms, double warn)
{
    double rate = failure_rate(c, s);
    enum health h = health_of(critical, s, retry_ms, warns(c, s, warn));
    cJSON_AddStringToObject(o, "state", cb_state_name(s->state));
    cJSON_AddStringToObject(o, "health", health_names[h]);
    if (rate >= 0)
        cJSON_AddNumberToObject(o, "failure_rate", rate);
    else
        cJSON_AddNullToObject(o, "failure_rate");
    cJSON_AddNumberToObject(o, "window_calls", s->window_calls);
    cJSON_AddNumberToObject(o, "retry_after_ms", (double)retry_ms);
    cJSON_AddBoolToObject(o, "degraded", s->degraded);
    return h;
}

/* Every key's health, counted (cb_group_each gives no time left: open_until_ns has it). */
typedef struct key_tally {
    const cb_config *c;
    double warn;
    uint64_t now_ns, refusing, unwell;
} key_tally;

static bool tally_key(const char *key, size_t len, const cb_stats *s, void *user)
{
    key_tally *t = user;
    (void)key, (void)len;
    uint64_t retry_ms = s->state == CB_OPEN && s->open_until_ns > t->now_ns
                            ? (s->open_until_ns - t->now_ns + 999999) / 1000000 : 0;
    enum health h = health_of(false, s, retry_ms, warns(t->c, s, t->warn));
    t->refusing += h == UNHEALTHY;
    t->unwell += h == DEGRADED;
    return true;
}

#define WORST_IN_HEALTH 5

/* A group is DEGRADED while any key is not healthy: one bad shard among many is the group
   doing its job, not a reason to pull the instance. It is UNHEALTHY when calls of new keys
   are refused (the overflow breaker refuses) or every key held refuses; CRITICAL when
   it is --critical and UNHEALTHY. */
static enum health group_health(cJSON *o, const breaker *br, double warn)
{
    cb_group_config gc;
    cb_group_stats gs;
    cb_stats os;
    char text[3 * CB_GROUP_KEY_MAX + 1];
    cb_group_config_get(br->g, &gc);
    key_tally t = { &gc.breaker, warn, mono_ns(), 0, 0 };
    uint64_t held = cb_group_each(br->g, tally_key, &t);
    cb_group_stats_get(br->g, &gs);
    cJSON *over = cJSON_CreateObject();
    cb_breaker *ob = cb_group_overflow(br->g);
    cb_stats_get(ob, &os);
    enum health oh = health_fields(over, false, &gc.breaker, &os, cb_retry_after_ms(ob), warn);
    enum health h = oh == UNHEALTHY || (held && t.refusing == held) ? UNHEALTHY
                    : oh != HEALTHY || t.refusing || t.unwell       ? DEGRADED : HEALTHY;
    if (h == UNHEALTHY && br->critical)
        h = CRITICAL;
    cJSON_AddTrueToObject(o, "group");
    cJSON_AddStringToObject(o, "health", health_names[h]);
    cJSON_AddBoolToObject(o, "critical", br->critical);
    cJSON_AddNumberToObject(o, "keys", (double)held);
    cJSON_AddNumberToObject(o, "open_keys", (double)gs.open_keys);
    cJSON_AddNumberToObject(o, "refusing_keys", (double)t.refusing);
    cJSON_AddNumberToObject(o, "degraded_keys", (double)t.unwell);
    cJSON_AddItemToObject(o, "overflow", over);
    cb_group_key worst[WORST_IN_HEALTH];
    size_t n = cb_group_worst(br->g, worst, WORST_IN_HEALTH);
    cJSON *list = cJSON_CreateArray();
    for (size_t i = 0; i < n && i < WORST_IN_HEALTH; i++) {
        cJSON *k = cJSON_CreateObject();
        cJSON_AddStringToObject(k, "key", json_key(worst[i].key, worst[i].key_len, text));
        health_fields(k, false, &gc.breaker, &worst[i].stats, worst[i].retry_after_ms, warn);
        cJSON_AddItemToArray(list, k);
    }
    cJSON_AddItemToObject(o, "worst_keys", list);
    return h;
}

static char *health_json(const server *sv, enum health *worst)
{
    cJSON *doc = cJSON_CreateObject(), *list = cJSON_CreateArray();
    *worst = HEALTHY;
    for (int i = 0; i < sv->n; i++) {
        const breaker *br = &sv->bs[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", br->name);
        cJSON_AddStringToObject(o, "file", br->path);
        enum health h = UNHEALTHY;   /* a file that cannot be used: unknown, not critical */
        if (br->g)
            h = group_health(o, br, sv->warn);
        else if (br->b) {
            cb_stats s;
            cb_config c;
            cb_stats_get(br->b, &s);
            cb_config_get(br->b, &c);
            h = health_fields(o, br->critical, &c, &s, cb_retry_after_ms(br->b), sv->warn);
            cJSON_AddBoolToObject(o, "critical", br->critical);
        } else {
            cJSON_AddStringToObject(o, "state", "unknown");
            cJSON_AddStringToObject(o, "health", health_names[h]);
            cJSON_AddBoolToObject(o, "critical", br->critical);
            cJSON_AddNullToObject(o, "failure_rate");
            cJSON_AddNullToObject(o, "window_calls");
            cJSON_AddNullToObject(o, "retry_after_ms");
            cJSON_AddStringToObject(o, "error", br->why);
        }
        cJSON_AddItemToArray(list, o);
        if (h > *worst)
            *worst = h;
    }
    cJSON_AddStringToObject(doc, "status", health_names[*worst]);
    cJSON_AddNumberToObject(doc, "warn_failure_rate", sv->warn < 0 ? WARN_DEFAULT : sv->warn);
    cJSON_AddItemToObject(doc, "breakers", list);
    char *text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    if (!text)
        die(EXIT_FILE, "out of memory");
    return text;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned code, const char *type,
                             const char *body)
{
    size_t len = strlen(body);
    char *copy = xmalloc(len + 1);
    memcpy(copy, body, len + 1);
    struct MHD_Response *r = MHD_create_response_from_buffer(len, copy, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(copy);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result ok = MHD_queue_response(conn, code, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **state)
{
    server *sv = cls;
    (void)version, (void)upload, (void)state;
    client *c = client_of(conn);
    if (c)
        disarm(sv, c);   /* the headers are in */
    if (*upload_size)
        return MHD_NO;   /* GET and HEAD carry no body */
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", "only GET and HEAD\n");
    bool metrics = strcmp(url, "/metrics") == 0;
    if (!metrics && strcmp(url, "/health") != 0)
        return reply(conn, MHD_HTTP_NOT_FOUND, "text/plain", "not found: try /metrics or /health\n");
    for (int i = 0; i < sv->n; i++)
        refresh(&sv->bs[i]);
    if (metrics) {
        char *text = prometheus_text(sv->bs, sv->n, &sv->lim);
        enum MHD_Result ok = reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text);
        free(text);
        return ok;
    }
    enum health worst;
    char *text = health_json(sv, &worst);
    enum MHD_Result ok = reply(conn, worst == CRITICAL ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_OK,
                               "application/json", text);
    cJSON_free(text);
    return ok;
}

#define MAX_CONNECTIONS 4096
#define HEADER_TIMEOUT_MS 5000

static const char USAGE_SERVE[] =
    "usage: cbctl serve --listen HOST:PORT [--warn-failure-rate=R] [--critical=NAME]...\n"
    "                   [--max-connections=N] [--header-timeout-ms=N] [--max-keys=N]\n"
    "                   [--not-closed] FILE...\n"
    "\n"
    "Serves the breakers and groups over HTTP until SIGINT or SIGTERM:\n"
    "  /metrics  Prometheus text format 0.0.4, as cbctl metrics --prometheus\n"
    "  /health   JSON {\"status\": ..., \"breakers\": [...]}; status is the worst of:\n"
    "            HEALTHY; DEGRADED (half-open, open with its period over so that the\n"
    "            next call probes, or warned: its own early warning, stats.degraded of\n"
    "            warn_failure_rate, else a window failure rate >= R); UNHEALTHY (forced-open,\n"
    "            or open with time left in its period; or its file cannot be used);\n"
    "            CRITICAL (a --critical breaker is so: HTTP 503; otherwise 200).\n"
    "            A group is DEGRADED while any key is not healthy, UNHEALTHY when its\n"
    "            overflow breaker refuses or every key held refuses; its worst keys\n"
    "            are listed.\n"
    "A file replaced at its path is followed (it must hold the same breaker or group).\n"
    "--listen HOST:PORT       a numeric address, e.g. 127.0.0.1:9464 or [::1]:9464; port 0\n"
    "                         picks a free one; the address is printed once listening\n"
    "--warn-failure-rate=R    in (0, 1]: the warning rate for every breaker, over their own\n"
    "                         warn_failure_rate; without it 0.2 for breakers that have none\n"
    "--critical=NAME          the breaker or group named NAME is critical (repeat for more)\n"
    "--max-connections=N      connections held at once, default 4096 (1..1000000), within\n"
    "                         the open files limit; more wait to be accepted\n"
    "--header-timeout-ms=N    a request's headers must be in within N ms of the accept\n"
    "                         (or of the previous response), and a connection idle that\n"
    "                         long is closed: default 5000 (10..600000)\n"
    LIMITS_USAGE;

typedef struct serve_opts {
    const char *listen;
    double warn;
    const char **critical;
    int ncritical;
    uint32_t max_connections, header_timeout_ms;
    bool max_given;
    cb_export_limits lim;
} serve_opts;

static bool serve_opt(int argc, char **argv, int *i, void *ctx)
{
    serve_opts *o = ctx;
    const char *v;
    if (opt(argc, argv, i, "--listen", &v))
        o->listen = v;
    else if (opt(argc, argv, i, "--warn-failure-rate", &v)) {
        if (!cbflags__double(v, &o->warn) || !(o->warn > 0 && o->warn <= 1))
            die(EXIT_USAGE, "--warn-failure-rate: bad value '%s' (want a number in (0, 1])", esc(v));
    } else if (opt(argc, argv, i, "--critical", &v))
        o->critical[o->ncritical++] = v;
    else if (opt(argc, argv, i, "--max-connections", &v)) {
        o->max_connections = opt_uint("--max-connections", v, 1, 1000000);
        o->max_given = true;
    } else if (opt(argc, argv, i, "--header-timeout-ms", &v))
        o->header_timeout_ms = opt_uint("--header-timeout-ms", v, 10, 600000);
    else
        return limits_opt(argc, argv, i, &o->lim);
    return true;
}

/* HOST:PORT with a numeric host ([...] for IPv6) to a socket address. */
static struct addrinfo *listen_addr(const char *arg)
{
    const char *colon = strrchr(arg, ':');
    if (!colon || colon == arg)
        die(EXIT_USAGE, "--listen '%s': want HOST:PORT, e.g. 127.0.0.1:9464", esc(arg));
    size_t hl = (size_t)(colon - arg);
    char host[64];
    if (arg[0] == '[' && hl >= 2 && arg[hl - 1] == ']')
        arg++, hl -= 2;
    if (hl >= sizeof host)
        die(EXIT_USAGE, "--listen '%s': host too long", esc(arg));
    memcpy(host, arg, hl);
    host[hl] = 0;
    opt_uint("--listen port", colon + 1, 0, 65535);
    struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
                              .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai;
    int e = getaddrinfo(host, colon + 1, &hints, &ai);
    if (e != 0)
        die(EXIT_USAGE, "--listen: '%s' is not a numeric IPv4 or IPv6 address: %s", esc(host),
            gai_strerror(e));
    return ai;
}

/* How many connections serve can hold: the open files limit is raised to its hard
   limit, and each connection takes a descriptor, less a few for the listening socket,
   epoll, signals, stdio and the breaker file being opened again. */
static unsigned connection_limit(unsigned want, bool given)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return want;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t soft = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            rl.rlim_cur = soft;
    }
    const rlim_t reserve = 32;
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= (rlim_t)want + reserve)
        return want;
    unsigned fit = rl.rlim_cur > reserve + 1 ? (unsigned)(rl.rlim_cur - reserve) : 1;
    if (given)
        fprintf(stderr, "cbctl serve: --max-connections=%u lowered to %u: the open files "
                "limit (RLIMIT_NOFILE) is %llu\n", want, fit, (ull)rl.rlim_cur);
    return fit;
}

static int cmd_serve(int argc, char **argv)
{
    serve_opts o = { NULL, -1, xmalloc(sizeof(char *) * (size_t)argc), 0, MAX_CONNECTIONS,
                     HEADER_TIMEOUT_MS, false, { 0, false } };
    const char **files = xmalloc(sizeof *files * (size_t)argc);
    int n = operands(argc, argv, serve_opt, &o, files);
    if (!o.listen)
        die(EXIT_USAGE, "--listen HOST:PORT is required");
    if (n == 0)
        die(EXIT_USAGE, "name at least one FILE");
    struct addrinfo *ai = listen_addr(o.listen);
    server sv = { attach_all(files, n), n, o.warn, o.lim, (uint64_t)o.header_timeout_ms * 1000000u,
                  NULL, NULL, 0 };
    check_names_unique(sv.bs, n);
    for (int c = 0; c < o.ncritical; c++) {
        int i = 0;
        while (i < n && strcmp(sv.bs[i].name, o.critical[c]) != 0)
            i++;
        if (i == n)
            die(EXIT_USAGE, "--critical=%s: no breaker or group of that name among the files",
                esc(o.critical[c]));
        sv.bs[i].critical = true;
    }
    /* epoll: select() cannot watch a descriptor above FD_SETSIZE (1024) */
    if (MHD_is_feature_supported(MHD_FEATURE_EPOLL) != MHD_YES)
        die(EXIT_FILE, "this libmicrohttpd has no epoll support");
    unsigned limit = connection_limit(o.max_connections, o.max_given);

    /* SIGINT and SIGTERM are read from a descriptor polled with the server's. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigprocmask(SIG_BLOCK, &stop, NULL);
    int sigfd = signalfd(-1, &stop, SFD_CLOEXEC);
    if (sigfd < 0)
        die(EXIT_FILE, "signalfd: %s", strerror(errno));

    /* One thread runs MHD and the header deadlines both, so the deadlines can shut down
       a socket that MHD cannot be closing at the same time. */
    unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG |
                     (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, handle, &sv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT, limit,
        MHD_OPTION_CONNECTION_TIMEOUT, (o.header_timeout_ms + 999) / 1000,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, &sv,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, &sv, MHD_OPTION_END);
    if (!d)
        die(EXIT_FILE, "cannot listen on %s (address in use, or not of this machine?)",
            esc(o.listen));
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    char host[64];
    getnameinfo(ai->ai_addr, ai->ai_addrlen, host, sizeof host, NULL, 0, NI_NUMERICHOST);
    printf("cbctl serve: %d file%s on http://%s%s%s:%u (/metrics, /health)\n", n,
           n == 1 ? "" : "s", ai->ai_family == AF_INET6 ? "[" : "", host,
           ai->ai_family == AF_INET6 ? "]" : "", info ? info->port : 0);
    fflush(stdout);
    int epfd = MHD_get_daemon_info(d, MHD_DAEMON_INFO_EPOLL_FD)->epoll_fd;
    for (;;) {
        uint64_t next = cut_overdue(&sv), now = mono_ns();
        MHD_UNSIGNED_LONG_LONG mhd_ms;
        long long wait = MHD_get_timeout(d, &mhd_ms) == MHD_YES
                             ? (long long)(mhd_ms < INT_MAX ? mhd_ms : INT_MAX) : -1;
        if (next != UINT64_MAX) {
            long long ms = (long long)((next - now + 999999) / 1000000);
            wait = wait < 0 || ms < wait ? ms : wait;
        }
        /* MHD takes its listening socket back into epoll (it leaves it at the connection
           limit) only at the start of a run: after a run that closed connections, one
           more without waiting, or new clients would wait for some other event. */
        if (sv.closed)
            wait = 0;
        struct pollfd p[2] = { { epfd, POLLIN, 0 }, { sigfd, POLLIN, 0 } };
        if (poll(p, 2, (int)wait) < 0 && errno != EINTR)
            die(EXIT_FILE, "poll: %s", strerror(errno));
        if (p[1].revents & POLLIN)
            break;
        sv.closed = 0;
        MHD_run(d);
    }
    MHD_stop_daemon(d);
    close(sigfd);
    freeaddrinfo(ai);
    detach_all(sv.bs, n);
    free(files);
    free(o.critical);
    return 0;
}

/* ---- main -------------------------------------------------------------------------- */

static const struct command {
    const char *name, *usage;
    int (*run)(int argc, char **argv);
} commands[] = {
    { "ls", USAGE_LS, cmd_ls },
    { "show", USAGE_SHOW, cmd_show },
    { "watch", USAGE_WATCH, cmd_watch },
    { "set", USAGE_SET, cmd_set },
    { "reset", USAGE_RESET, cmd_reset },
    { "metrics", USAGE_METRICS, cmd_metrics },
    { "serve", USAGE_SERVE, cmd_serve },
    { "create", USAGE_CREATE, cmd_create },
};

static const char USAGE[] =
    "usage: cbctl COMMAND [ARGS]\n"
    "\n"
    "Inspects and controls circuit breakers and keyed groups shared through files\n"
    "(cb_shm_open, cb_group_shm_open). Every FILE may hold a breaker or a group.\n"
    "\n"
    "  ls DIR                                    breaker and group files in DIR\n"
    "  show [--keys=N] [--history=N] FILE...     state, counters, window, history; keys\n"
    "  watch [--interval-ms=N] FILE...           show, refreshed until interrupted\n"
    "  watch --log=LOG FILE...                   every transition appended to LOG (JSON)\n"
    "  set FILE STATE [--key=KEY]                manual transition (of a group's key)\n"
    "  reset FILE [--key=KEY]                    closed, window and backoff cleared\n"
    "  metrics --json|--prometheus FILE...       export (--json: with the history)\n"
    "  serve --listen HOST:PORT FILE...          HTTP /metrics and /health\n"
    "  create FILE [flags]                       create (or check) a breaker or group file\n"
    "\n"
    "cbctl COMMAND --help describes a command. Exit status: 0 ok, 1 a file could not be\n"
    "used or another runtime error, 2 a bad command line.\n"
    "\n"
    "Files of another user, links, FIFOs, devices and files writable by every user are\n"
    "refused: run cbctl as the service's user (sudo -u USER cbctl ...). Before the\n"
    "command, --group-shared creates files 0660 instead of 0600 and opens files of other\n"
    "users whose group is one of cbctl's (never one writable by every user).\n";

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(USAGE, stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--group-shared") == 0) {   /* the one option before the command */
        attach_flags = CB_SHM_GROUP;
        argv[1] = argv[0];
        argc--, argv++;
        if (argc < 2) {
            fputs(USAGE, stderr);
            return EXIT_USAGE;
        }
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        fputs(USAGE, stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(argv[1], commands[i].name) != 0)
            continue;
        cmd = commands[i].name;
        for (int a = 2; a < argc && strcmp(argv[a], "--") != 0; a++)
            if (strcmp(argv[a], "--help") == 0 || strcmp(argv[a], "-h") == 0) {
                fputs(commands[i].usage, stdout);
                return 0;
            }
        return commands[i].run(argc - 2, argv + 2);
    }
    die(EXIT_USAGE, "unknown command '%s'", esc(argv[1]));
}
