/* cbctl - inspect and control circuit breakers shared through files (cb_shm_open).

       cbctl ls DIR
       cbctl show FILE...
       cbctl watch [--interval-ms=N] [--count=N] FILE...
       cbctl set FILE STATE
       cbctl reset FILE
       cbctl metrics --json|--prometheus FILE...
       cbctl serve --listen HOST:PORT [--warn-failure-rate=R] [--critical=NAME]... FILE...
       cbctl create FILE [breaker flags]

   Every command but create opens the files with cb_shm_attach, which takes the config
   from the file, so cbctl needs no config and never creates a file. Exit status: 0 ok,
   1 a file could not be used (missing, another config or layout, damaged) or another
   runtime error, 2 a bad command line. Details: docs/cbctl.md. */
#define _POSIX_C_SOURCE 200809L
#define CB_IMPLEMENTATION
#include "cb.h"
#include "chaos/cbflags.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_FILE = 1, EXIT_USAGE = 2 };
#define HISTORY_SHOWN 10

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
        die(EXIT_USAGE, "%s: bad value '%s' (want an integer %u..%u)", name, v, lo, hi);
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
                die(EXIT_USAGE, "unknown option '%s'", argv[i]);
        } else
            out[n++] = argv[i];
    }
    return n;
}

/* ---- opening breaker files --------------------------------------------------------- */

/* Stats path and reads its first 8 bytes (the magic number of a breaker file) without
   blocking on a FIFO: how many bytes came (0 for anything but a regular file), or -1
   with errno set. */
static ssize_t peek(const char *path, struct stat *st, uint64_t *magic)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -1;
    ssize_t got = fstat(fd, st) != 0 ? -1 : S_ISREG(st->st_mode) ? pread(fd, magic, sizeof *magic, 0) : 0;
    int saved = errno;
    close(fd);
    errno = saved;
    return got;
}

/* Why cb_shm_attach refused path (e, and errno as it left it), told from what the file
   holds. cb.h judges the file; this only names the case. */
static void explain(const char *path, cb_err e, int err_no, char *why, size_t len)
{
    struct stat st;
    uint64_t magic = 0;
    const uint64_t ours = CB__MAGIC;
    ssize_t got = peek(path, &st, &magic);
    if (got >= 0 && !S_ISREG(st.st_mode))   /* a folder, FIFO or device */
        snprintf(why, len, "not a regular file");
    else if (e == CB_EIO || got < 0)
        snprintf(why, len, "%s", strerror(e == CB_EIO ? err_no : errno));
    else if (got > 0 && magic != 0 && memcmp(&magic, &ours, (size_t)got) != 0)
        snprintf(why, len, "not a breaker file (no cb.h magic number)");
    else if (e == CB_ECORRUPT && magic == 0)
        snprintf(why, len, "never initialised: its creator died before finishing it (the "
                 "next cb_shm_open with its config finishes it), or has been at it for over "
                 "%d ms: %s", CB_SHM_WAIT_MS, cb_strerror(e));
    else if (e == CB_ECORRUPT && (size_t)st.st_size < sizeof(cb__shared))
        snprintf(why, len, "truncated: %lld bytes, shorter than a breaker header (%zu): %s",
                 (long long)st.st_size, sizeof(cb__shared), cb_strerror(e));
    else if (e == CB_EMISMATCH)
        snprintf(why, len, "made by another cb.h version or build: %s", cb_strerror(e));
    else
        snprintf(why, len, "%s", cb_strerror(e));
}

/* Opens the breaker file at path with the config stored in it (cb_shm_attach never
   creates a file, and fails at once on a FIFO, a device or a foreign file); NULL and
   the reason in why on failure. */
static cb_breaker *attach(const char *path, char *why, size_t len)
{
    cb_err e;
    cb_breaker *b = cb_shm_attach(path, &e);
    if (!b)
        explain(path, e, errno, why, len);
    return b;
}

typedef struct breaker {
    const char *path;
    cb_breaker *b;
    bool critical;
} breaker;

/* Opens every file or exits naming each one that cannot be used. */
static breaker *attach_all(const char **paths, int n)
{
    breaker *bs = xmalloc(sizeof *bs * (size_t)n);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        char why[512];
        bs[i] = (breaker){ paths[i], attach(paths[i], why, sizeof why), false };
        if (!bs[i].b) {
            fprintf(stderr, "cbctl %s: %s: %s\n", cmd, paths[i], why);
            bad++;
        }
    }
    if (bad)
        exit(EXIT_FILE);
    return bs;
}

/* Metrics are keyed by breaker name: two files holding one name would collide. */
static void check_names_unique(const breaker *bs, int n)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(cb_name(bs[i].b), cb_name(bs[j].b)) == 0)
                die(EXIT_FILE, "%s and %s both hold a breaker named '%s': their metrics would "
                    "collide", bs[j].path, bs[i].path, cb_name(bs[i].b));
}

static void detach_all(breaker *bs, int n)
{
    for (int i = 0; i < n; i++)
        cb_shm_close(bs[i].b);
    free(bs);
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

typedef unsigned long long ull;

static void show(FILE *out, const breaker *br)
{
    cb_stats s;
    cb_config c;
    char flags[1024], d[32], r1[48], r2[48];
    cb_event ev[HISTORY_SHOWN];
    uint64_t now = mono_ns();
    cb_stats_get(br->b, &s);
    cb_config_get(br->b, &c);
    cbflags_format(&c, flags, sizeof flags);
    fprintf(out, "%s  %s\n", cb_name(br->b), br->path);
    fprintf(out, "  state     %s, generation %llu, for %s", cb_state_name(s.state),
            (ull)s.generation, s.state_since_ns <= now ? dur(d, now - s.state_since_ns) : "-");
    if (s.state == CB_OPEN)
        fprintf(out, ", retry after %llu ms", (ull)cb_retry_after_ms(br->b));
    fprintf(out, "\n  calls     %llu admitted, %llu rejected, %u in flight\n", (ull)s.admitted,
            (ull)s.rejected, s.in_flight);
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
    } else
        fprintf(out, "  window    none (consecutive failures only)\n");
    fprintf(out, "  config    %s\n", flags);
    size_t n = cb_history(br->b, ev, HISTORY_SHOWN);
    fprintf(out, "  history   %s\n", n ? "(oldest first)" : "none");
    for (size_t i = 0; i < n; i++) {
        fprintf(out, "    gen %-6llu %9s ago  %s -> %s (%s)", (ull)ev[i].generation,
                ev[i].at_ns <= now ? dur(d, now - ev[i].at_ns) : "-", cb_state_name(ev[i].from),
                cb_state_name(ev[i].to), cb_reason_name(ev[i].reason));
        if (ev[i].to == CB_OPEN)
            fprintf(out, ", open %llu ms", (ull)ev[i].open_ms);
        fputc('\n', out);
    }
}

static const char USAGE_SHOW[] =
    "usage: cbctl show FILE...\n"
    "\n"
    "Prints each breaker's state, generation, counters, window and failure rate,\n"
    "retry-after, config and its last transitions (oldest first).\n";

static int cmd_show(int argc, char **argv)
{
    const char **files = xmalloc(sizeof *files * (size_t)argc);
    int n = operands(argc, argv, NULL, NULL, files);
    if (n == 0)
        die(EXIT_USAGE, "name at least one FILE");
    breaker *bs = attach_all(files, n);
    for (int i = 0; i < n; i++) {
        if (i)
            fputc('\n', stdout);
        show(stdout, &bs[i]);
    }
    detach_all(bs, n);
    free(files);
    return 0;
}

static const char USAGE_LS[] =
    "usage: cbctl ls DIR\n"
    "\n"
    "Lists the breaker files in DIR (regular files that start with the cb.h magic\n"
    "number; other files are skipped) with name, state, generation and window failure\n"
    "rate. A breaker file that cannot be opened is listed with the reason, and the exit\n"
    "status is then 1.\n";

static int visible(const struct dirent *e)
{
    return e->d_name[0] != '.';
}

static int cmd_ls(int argc, char **argv)
{
    const char **dir = xmalloc(sizeof *dir * (size_t)argc);
    if (operands(argc, argv, NULL, NULL, dir) != 1)
        die(EXIT_USAGE, "takes exactly one DIR");
    struct dirent **names;
    int n = scandir(dir[0], &names, visible, alphasort), status = 0, shown = 0;
    if (n < 0)
        die(EXIT_FILE, "%s: %s", dir[0], strerror(errno));
    printf("%-24s %-20s %-12s %8s  %s\n", "FILE", "NAME", "STATE", "GEN", "FAILURE RATE");
    for (int i = 0; i < n; i++) {
        size_t len = strlen(dir[0]) + strlen(names[i]->d_name) + 2;
        char *path = xmalloc(len), why[512], r[48];
        uint64_t magic = 0;
        struct stat st;
        snprintf(path, len, "%s/%s", dir[0], names[i]->d_name);
        if (peek(path, &st, &magic) == (ssize_t)sizeof magic && magic == CB__MAGIC) {
            cb_breaker *b = attach(path, why, sizeof why);
            shown++;
            if (b) {
                cb_stats s;
                cb_stats_get(b, &s);
                printf("%-24s %-20s %-12s %8llu  %s\n", names[i]->d_name, cb_name(b),
                       cb_state_name(s.state), (ull)s.generation,
                       ratio(r, s.window_failures, s.window_calls));
                cb_shm_close(b);
            } else {
                printf("%-24s %-20s error: %s\n", names[i]->d_name, "?", why);
                status = EXIT_FILE;
            }
        }
        free(path);
        free(names[i]);
    }
    free(names);
    if (!shown)
        printf("(no breaker files in %s)\n", dir[0]);
    free(dir);
    return status;
}

static const char USAGE_WATCH[] =
    "usage: cbctl watch [--interval-ms=N] [--count=N] FILE...\n"
    "\n"
    "Shows the breakers like cbctl show, refreshed in place every --interval-ms\n"
    "(default 1000, 10..3600000) until interrupted (Ctrl-C), or --count times.\n"
    "When stdout is not a terminal, frames follow each other instead.\n";

typedef struct watch_opts { uint32_t interval_ms, count; } watch_opts;

static bool watch_opt(int argc, char **argv, int *i, void *ctx)
{
    watch_opts *w = ctx;
    const char *v;
    if (opt(argc, argv, i, "--interval-ms", &v))
        w->interval_ms = opt_uint("--interval-ms", v, 10, 3600000);
    else if (opt(argc, argv, i, "--count", &v))
        w->count = opt_uint("--count", v, 1, UINT32_MAX);
    else
        return false;
    return true;
}

static volatile sig_atomic_t interrupted;
static void on_interrupt(int sig) { (void)sig, interrupted = 1; }

static int cmd_watch(int argc, char **argv)
{
    watch_opts w = { 1000, 0 };
    const char **files = xmalloc(sizeof *files * (size_t)argc);
    int n = operands(argc, argv, watch_opt, &w, files);
    if (n == 0)
        die(EXIT_USAGE, "name at least one FILE");
    breaker *bs = attach_all(files, n);
    struct sigaction sa = { .sa_handler = on_interrupt };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    bool tty = isatty(STDOUT_FILENO);
    for (uint32_t frame = 0; !interrupted && (!w.count || frame < w.count); frame++) {
        time_t t = time(NULL);
        char at[16];
        strftime(at, sizeof at, "%H:%M:%S", localtime(&t));
        printf("%scbctl watch: every %u ms, %s\n\n", tty ? "\033[H\033[J" : frame ? "\n" : "",
               w.interval_ms, at);
        for (int i = 0; i < n; i++) {
            show(stdout, &bs[i]);
            fputc('\n', stdout);
        }
        fflush(stdout);
        if (w.count && frame + 1 == w.count)
            break;
        struct timespec ts = { w.interval_ms / 1000, (long)(w.interval_ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);   /* a signal cuts it short */
    }
    detach_all(bs, n);
    free(files);
    return 0;
}

/* ---- set, reset, create ------------------------------------------------------------ */

static const char USAGE_SET[] =
    "usage: cbctl set FILE STATE\n"
    "\n"
    "Moves the breaker to STATE, one of closed, open, half-open, forced-open, disabled,\n"
    "metrics-only ('_' works for '-'), as cb_set_state() does: a manual transition\n"
    "(reason manual) that every process sharing the file sees at its next call.\n";

static void set_state(const char *path, cb_state to)
{
    breaker *b = attach_all(&path, 1);
    cb_state from = cb_get_state(b->b);
    cb_set_state(b->b, to);
    cb_stats s;
    cb_stats_get(b->b, &s);
    printf("%s: %s -> %s (generation %llu)\n", cb_name(b->b), cb_state_name(from),
           cb_state_name(to), (ull)s.generation);
    detach_all(b, 1);
}

static int cmd_set(int argc, char **argv)
{
    const char **ops = xmalloc(sizeof *ops * (size_t)argc);
    cb_state to;
    if (operands(argc, argv, NULL, NULL, ops) != 2)
        die(EXIT_USAGE, "takes FILE and STATE");
    if (!cb_state_parse(ops[1], &to))
        die(EXIT_USAGE, "unknown state '%s' (want closed, open, half-open, forced-open, "
            "disabled or metrics-only)", ops[1]);
    set_state(ops[0], to);
    free(ops);
    return 0;
}

static const char USAGE_RESET[] =
    "usage: cbctl reset FILE\n"
    "\n"
    "Resets the breaker as cb_reset() does: closed, window and backoff cleared.\n"
    "Cumulative counters are kept.\n";

static int cmd_reset(int argc, char **argv)
{
    const char *ops[2];
    if (argc != 1 || operands(argc, argv, NULL, NULL, ops) != 1)
        die(EXIT_USAGE, "takes exactly one FILE");
    set_state(ops[0], CB_CLOSED);
    return 0;
}

static const char USAGE_CREATE[] =
    "usage: cbctl create FILE [breaker flags]\n"
    "\n"
    "Creates the breaker file with this config, or checks that an existing one holds\n"
    "it (cb_shm_open). Services that open FILE with the same config share the breaker.\n"
    "\n" CBFLAGS_USAGE;

static bool create_opt(int argc, char **argv, int *i, void *ctx)
{
    char err[256];
    (void)argc;
    int got = cbflags_parse(argv[*i], ctx, err, sizeof err);
    if (got < 0)
        die(EXIT_USAGE, "%s", err);
    return got == 1;
}

static int cmd_create(int argc, char **argv)
{
    cb_config cfg = { 0 };
    const char **ops = xmalloc(sizeof *ops * (size_t)(argc + 1));
    char msg[256], want[1024], have[1024];
    cb_err e;
    if (operands(argc, argv, create_opt, &cfg, ops) != 1)
        die(EXIT_USAGE, "takes exactly one FILE");
    if (cb_config_check(&cfg, msg, sizeof msg) != CB_OK)
        die(EXIT_USAGE, "%s", msg);
    cb_breaker *b = cb_shm_open(ops[0], &cfg, &e);
    int saved = errno;   /* for CB_EIO: why the open, mmap or truncate failed */
    if (!b && e == CB_EMISMATCH) {
        cb_config_resolve(&cfg, &cfg, NULL, 0);
        cbflags_format(&cfg, want, sizeof want);
        breaker *old = attach_all(ops, 1);
        cb_config_get(old->b, &cfg);
        cbflags_format(&cfg, have, sizeof have);
        die(EXIT_FILE, "%s: %s\n  the file holds: %s\n  asked for:      %s", ops[0],
            cb_strerror(e), have, want);
    }
    if (!b)
        die(EXIT_FILE, "%s: %s%s%s", ops[0], cb_strerror(e), e == CB_EIO ? ": " : "",
            e == CB_EIO ? strerror(saved) : "");
    cb_config_get(b, &cfg);
    cbflags_format(&cfg, have, sizeof have);
    printf("%s: %s\n", ops[0], have);
    cb_shm_close(b);
    free(ops);
    return 0;
}

/* ---- metrics ----------------------------------------------------------------------- */

/* One breaker as cb_format_json() writes it, with "file" added. Spliced as text, not
   parsed: cJSON keeps numbers as doubles, exact only up to 2^53 (ns past 104 days). */
static char *breaker_json(const breaker *br)
{
    cJSON *file = cJSON_CreateString(br->path);
    char *quoted = file ? cJSON_PrintUnformatted(file) : NULL;
    if (!quoted)
        die(EXIT_FILE, "out of memory");
    size_t len = (size_t)cb_format_json(br->b, NULL, 0), cap = len + strlen(quoted) + 16;
    char *buf = xmalloc(cap);
    cb_format_json(br->b, buf, len + 1);
    snprintf(buf + len - 1, cap - len + 1, ",\"file\":%s}", quoted);   /* over the final '}' */
    cJSON_free(quoted);
    cJSON_Delete(file);
    return buf;
}

static char *prometheus_text(const breaker *bs, int n)
{
    cb_breaker **list = xmalloc(sizeof *list * (size_t)n);
    for (int i = 0; i < n; i++)
        list[i] = bs[i].b;
    int len = cb_format_prometheus(list, (size_t)n, NULL, 0);
    char *buf = xmalloc((size_t)len + 1);
    cb_format_prometheus(list, (size_t)n, buf, (size_t)len + 1);
    free(list);
    return buf;
}

static const char USAGE_METRICS[] =
    "usage: cbctl metrics --json|--prometheus FILE...\n"
    "\n"
    "--json        a JSON array, one object per breaker: cb_format_json() plus \"file\"\n"
    "--prometheus  Prometheus text format 0.0.4 (cb_format_prometheus())\n"
    "Breaker names must be unique across the files.\n";

typedef struct metrics_opts { bool json, prometheus; } metrics_opts;

static bool metrics_opt(int argc, char **argv, int *i, void *ctx)
{
    metrics_opts *m = ctx;
    if (opt(argc, argv, i, "--json", NULL))
        m->json = true;
    else if (opt(argc, argv, i, "--prometheus", NULL))
        m->prometheus = true;
    else
        return false;
    return true;
}

static int cmd_metrics(int argc, char **argv)
{
    metrics_opts m = { false, false };
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
        text = prometheus_text(bs, n);
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

typedef struct server {
    breaker *bs;
    int n;
    double warn;   /* failure rate at or above which a closed breaker is DEGRADED */
} server;

/* The window's failure rate, or -1 while the window holds fewer than minimum_calls. */
static double failure_rate(const cb_breaker *b, const cb_stats *s)
{
    cb_config c;
    cb_config_get(b, &c);
    if (!(c.window_calls || c.window_ms) || !s->window_calls || s->window_calls < c.minimum_calls)
        return -1;
    return (double)s->window_failures / s->window_calls;
}

static enum health health_of(const breaker *br, const cb_stats *s, double rate, double warn)
{
    if (s->state == CB_OPEN || s->state == CB_FORCED_OPEN)
        return br->critical ? CRITICAL : UNHEALTHY;
    if (s->state == CB_HALF_OPEN || (s->state != CB_DISABLED && rate >= warn))
        return DEGRADED;
    return HEALTHY;
}

static char *health_json(const server *sv, enum health *worst)
{
    cJSON *doc = cJSON_CreateObject(), *list = cJSON_CreateArray();
    *worst = HEALTHY;
    for (int i = 0; i < sv->n; i++) {
        cb_stats s;
        cb_stats_get(sv->bs[i].b, &s);
        double rate = failure_rate(sv->bs[i].b, &s);
        enum health h = health_of(&sv->bs[i], &s, rate, sv->warn);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", cb_name(sv->bs[i].b));
        cJSON_AddStringToObject(o, "file", sv->bs[i].path);
        cJSON_AddStringToObject(o, "state", cb_state_name(s.state));
        cJSON_AddStringToObject(o, "health", health_names[h]);
        cJSON_AddBoolToObject(o, "critical", sv->bs[i].critical);
        if (rate >= 0)
            cJSON_AddNumberToObject(o, "failure_rate", rate);
        else
            cJSON_AddNullToObject(o, "failure_rate");
        cJSON_AddNumberToObject(o, "window_calls", s.window_calls);
        cJSON_AddNumberToObject(o, "retry_after_ms", (double)cb_retry_after_ms(sv->bs[i].b));
        cJSON_AddItemToArray(list, o);
        if (h > *worst)
            *worst = h;
    }
    cJSON_AddStringToObject(doc, "status", health_names[*worst]);
    cJSON_AddNumberToObject(doc, "warn_failure_rate", sv->warn);
    cJSON_AddItemToObject(doc, "breakers", list);
    char *text = cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
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
    const server *sv = cls;
    (void)version, (void)upload, (void)state;
    if (*upload_size)
        return MHD_NO;   /* GET and HEAD carry no body */
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", "only GET and HEAD\n");
    if (strcmp(url, "/metrics") == 0) {
        char *text = prometheus_text(sv->bs, sv->n);
        enum MHD_Result ok = reply(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text);
        free(text);
        return ok;
    }
    if (strcmp(url, "/health") == 0) {
        enum health worst;
        char *text = health_json(sv, &worst);
        enum MHD_Result ok = reply(conn, worst == CRITICAL ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_OK,
                                   "application/json", text);
        cJSON_free(text);
        return ok;
    }
    return reply(conn, MHD_HTTP_NOT_FOUND, "text/plain", "not found: try /metrics or /health\n");
}

static const char USAGE_SERVE[] =
    "usage: cbctl serve --listen HOST:PORT [--warn-failure-rate=R] [--critical=NAME]... FILE...\n"
    "\n"
    "Serves the breakers over HTTP until SIGINT or SIGTERM:\n"
    "  /metrics  Prometheus text format 0.0.4\n"
    "  /health   JSON {\"status\": ..., \"breakers\": [...]}; status is the worst of:\n"
    "            HEALTHY, DEGRADED (half-open, or a window failure rate >= R),\n"
    "            UNHEALTHY (open or forced-open), CRITICAL (a --critical breaker is open\n"
    "            or forced-open: HTTP 503; otherwise 200)\n"
    "--listen HOST:PORT       a numeric address, e.g. 127.0.0.1:9464 or [::1]:9464; port 0\n"
    "                         picks a free one; the address is printed once listening\n"
    "--warn-failure-rate=R    in (0, 1], default 0.2\n"
    "--critical=NAME          the breaker named NAME is critical (repeat for more)\n";

typedef struct serve_opts {
    const char *listen;
    double warn;
    const char **critical;
    int ncritical;
} serve_opts;

static bool serve_opt(int argc, char **argv, int *i, void *ctx)
{
    serve_opts *o = ctx;
    const char *v;
    if (opt(argc, argv, i, "--listen", &v))
        o->listen = v;
    else if (opt(argc, argv, i, "--warn-failure-rate", &v)) {
        if (!cbflags__double(v, &o->warn) || !(o->warn > 0 && o->warn <= 1))
            die(EXIT_USAGE, "--warn-failure-rate: bad value '%s' (want a number in (0, 1])", v);
    } else if (opt(argc, argv, i, "--critical", &v))
        o->critical[o->ncritical++] = v;
    else
        return false;
    return true;
}

/* HOST:PORT with a numeric host ([...] for IPv6) to a socket address. */
static struct addrinfo *listen_addr(const char *arg)
{
    const char *colon = strrchr(arg, ':');
    if (!colon || colon == arg)
        die(EXIT_USAGE, "--listen '%s': want HOST:PORT, e.g. 127.0.0.1:9464", arg);
    size_t hl = (size_t)(colon - arg);
    char host[64];
    if (arg[0] == '[' && hl >= 2 && arg[hl - 1] == ']')
        arg++, hl -= 2;
    if (hl >= sizeof host)
        die(EXIT_USAGE, "--listen '%s': host too long", arg);
    memcpy(host, arg, hl);
    host[hl] = 0;
    opt_uint("--listen port", colon + 1, 0, 65535);
    struct addrinfo hints = { .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE,
                              .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai;
    int e = getaddrinfo(host, colon + 1, &hints, &ai);
    if (e != 0)
        die(EXIT_USAGE, "--listen: '%s' is not a numeric IPv4 or IPv6 address: %s", host,
            gai_strerror(e));
    return ai;
}

static int cmd_serve(int argc, char **argv)
{
    serve_opts o = { NULL, 0.2, xmalloc(sizeof(char *) * (size_t)argc), 0 };
    const char **files = xmalloc(sizeof *files * (size_t)argc);
    int n = operands(argc, argv, serve_opt, &o, files);
    if (!o.listen)
        die(EXIT_USAGE, "--listen HOST:PORT is required");
    if (n == 0)
        die(EXIT_USAGE, "name at least one FILE");
    struct addrinfo *ai = listen_addr(o.listen);
    server sv = { attach_all(files, n), n, o.warn };
    check_names_unique(sv.bs, n);
    for (int c = 0; c < o.ncritical; c++) {
        int i = 0;
        while (i < n && strcmp(cb_name(sv.bs[i].b), o.critical[c]) != 0)
            i++;
        if (i == n)
            die(EXIT_USAGE, "--critical=%s: no breaker of that name among the files", o.critical[c]);
        sv.bs[i].critical = true;
    }

    /* Block the signals before the server's thread starts, so that it inherits the mask
       and only sigwait() below receives them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
                     (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    struct MHD_Daemon *d = MHD_start_daemon(flags, 0, NULL, NULL, handle, &sv,
                                            MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                                            MHD_OPTION_CONNECTION_TIMEOUT, 10u,
                                            MHD_OPTION_END);
    if (!d)
        die(EXIT_FILE, "cannot listen on %s (address in use, or not of this machine?)", o.listen);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    char host[64];
    getnameinfo(ai->ai_addr, ai->ai_addrlen, host, sizeof host, NULL, 0, NI_NUMERICHOST);
    printf("cbctl serve: %d breaker%s on http://%s%s%s:%u (/metrics, /health)\n", n,
           n == 1 ? "" : "s", ai->ai_family == AF_INET6 ? "[" : "", host,
           ai->ai_family == AF_INET6 ? "]" : "", info ? info->port : 0);
    fflush(stdout);
    int sig;
    sigwait(&stop, &sig);
    MHD_stop_daemon(d);
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
    "Inspects and controls circuit breakers shared through files (cb_shm_open).\n"
    "\n"
    "  ls DIR                                    breaker files in DIR, with state\n"
    "  show FILE...                              state, counters, window, history\n"
    "  watch [--interval-ms=N] FILE...           show, refreshed until interrupted\n"
    "  set FILE STATE                            manual transition\n"
    "  reset FILE                                closed, window and backoff cleared\n"
    "  metrics --json|--prometheus FILE...       export\n"
    "  serve --listen HOST:PORT FILE...          HTTP /metrics and /health\n"
    "  create FILE [breaker flags]               create (or check) a breaker file\n"
    "\n"
    "cbctl COMMAND --help describes a command. Exit status: 0 ok, 1 a file could not be\n"
    "used or another runtime error, 2 a bad command line.\n";

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(USAGE, stderr);
        return EXIT_USAGE;
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
    die(EXIT_USAGE, "unknown command '%s'", argv[1]);
}
