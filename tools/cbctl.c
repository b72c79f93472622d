/* cbctl - inspect and control circuit breakers shared through files (cb_shm_open).

       cbctl ls DIR
       cbctl show FILE...
       cbctl watch [--interval-ms=N] [--count=N] FILE...
       cbctl set FILE STATE
       cbctl reset FILE
       cbctl metrics --json|--prometheus FILE...
       cbctl serve --listen HOST:PORT [--warn-failure-rate=R] [--critical=NAME]...
                   [--max-connections=N] [--header-timeout-ms=N] FILE...
       cbctl create FILE [breaker flags]

   Every command but create opens the files with cb_shm_attach, which takes the config
   from the file, so cbctl needs no config and never creates a file. File and breaker
   names are printed escaped (esc()). Exit status: 0 ok, 1 a file could not be used
   (missing, another config or layout, damaged) or another runtime error, 2 a bad command
   line. Details: docs/cbctl.md. */
#define _POSIX_C_SOURCE 200809L
#define CB_IMPLEMENTATION
#include "cb.h"
#include "cbflags.h"

#include <cjson/cJSON.h>
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
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
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

/* ---- opening breaker files --------------------------------------------------------- */

/* Opens the breaker file at path with the config stored in it (cb_shm_attach never
   creates a file, and refuses at once what it may not trust: a link, a FIFO, a device,
   another user's file); NULL and the reason in why on failure: cb.h's error, then its
   message less the path, which the caller prints itself (a system error alone). */
static unsigned attach_flags;   /* CB_SHM_GROUP with --group-shared */
static cb_breaker *attach(const char *path, char *why, size_t len)
{
    cb_err e;
    char msg[512];
    cb_breaker *b = cb_shm_open_ex(path, NULL, attach_flags, &e, msg, sizeof msg);
    if (!b) {
        size_t n = strlen(path);
        const char *reason = strncmp(msg, path, n) == 0 && msg[n] == ':' ? msg + n + 2 : msg;
        if (e == CB_EIO)   /* the system's own words say it: "No such file or directory" */
            snprintf(why, len, "%s", esc(reason));
        else
            snprintf(why, len, "%s: %s", cb_strerror(e), esc(reason));
    }
    return b;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/* attach(), and in *st the file it mapped: the path is statted before and after, and a
   file replaced in between (the two differ) is attached again, so that *st never names
   another file than the mapping. */
static cb_breaker *attach_stat(const char *path, struct stat *st, char *why, size_t len)
{
    for (int tries = 0; tries < 4; tries++) {
        struct stat before;
        bool had = stat(path, &before) == 0;
        cb_breaker *b = attach(path, why, len);
        if (!b)
            return NULL;
        if (had && stat(path, st) == 0 && same_file(&before, st))
            return b;
        cb_shm_close(b);
    }
    snprintf(why, len, "replaced again and again while being opened");
    return NULL;
}

typedef struct breaker {
    const char *path;
    cb_breaker *b;                /* NULL while the file at path cannot be used */
    struct stat st;               /* the file b maps */
    char name[CB__NAME_MAX + 1];  /* the name it held at start */
    char why[512];                /* why b is NULL */
    bool critical;
} breaker;

/* Opens every file or exits naming each one that cannot be used. */
static breaker *attach_all(const char **paths, int n)
{
    breaker *bs = xmalloc(sizeof *bs * (size_t)n);
    int bad = 0;
    for (int i = 0; i < n; i++) {
        breaker *br = &bs[i];
        *br = (breaker){ .path = paths[i] };
        br->b = attach_stat(paths[i], &br->st, br->why, sizeof br->why);
        if (br->b)
            snprintf(br->name, sizeof br->name, "%s", cb_name(br->b));
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
   open the path no longer use. The replacement must hold the same breaker, so that the
   metrics and --critical keep their meaning; until a usable one is there, b is NULL and
   why says what is wrong. Tells stderr when the file changes, once per change. */
static void refresh(breaker *br)
{
    struct stat now;
    if (br->b && stat(br->path, &now) == 0 && same_file(&now, &br->st))
        return;
    bool was = br->b != NULL;
    char before[sizeof br->why];
    memcpy(before, br->why, sizeof before);
    cb_shm_close(br->b);
    br->b = attach_stat(br->path, &br->st, br->why, sizeof br->why);
    if (br->b && strcmp(cb_name(br->b), br->name) != 0) {
        snprintf(br->why, sizeof br->why, "holds breaker '%s', not '%s' (restart cbctl to "
                 "follow it)", esc(cb_name(br->b)), esc(br->name));
        cb_shm_close(br->b);
        br->b = NULL;
    }
    if (br->b)
        fprintf(stderr, "cbctl %s: %s: %s\n", cmd, esc(br->path),
                was ? "replaced: following the new file" : "usable again");
    else if (was || strcmp(before, br->why) != 0)
        fprintf(stderr, "cbctl %s: %s: %s\n", cmd, esc(br->path), br->why);
}

/* Metrics are keyed by breaker name: two files holding one name would collide. */
static void check_names_unique(const breaker *bs, int n)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(bs[i].name, bs[j].name) == 0)
                die(EXIT_FILE, "%s and %s both hold a breaker named '%s': their metrics would "
                    "collide", esc(bs[j].path), esc(bs[i].path), esc(bs[i].name));
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
    fprintf(out, "%s  %s\n", esc(br->name), esc(br->path));
    if (!br->b) {
        fprintf(out, "  error     %s\n", br->why);
        return;
    }
    cb_stats_get(br->b, &s);
    cb_config_get(br->b, &c);
    cbflags_format(&c, flags, sizeof flags);
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
    fprintf(out, "  config    %s\n", esc(flags));
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
    "number; links, FIFOs, devices, folders and other files are skipped, and only\n"
    "regular files are opened) with name, state, generation and window failure rate.\n"
    "A breaker file that cannot be opened is listed with the reason, and the exit\n"
    "status is then 1. Names are printed escaped (\\xNN, \\\\).\n";

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
    if (pread(fd, &magic, sizeof magic, 0) == (ssize_t)sizeof magic && magic == CB__MAGIC) {
        char why[512], r[48];
        size_t len = strlen(dir) + strlen(name) + 2;
        char *path = xmalloc(len);
        snprintf(path, len, "%s/%s", dir, name);
        cb_breaker *b = attach(path, why, sizeof why);
        ++*shown;
        if (b) {
            cb_stats s;
            cb_stats_get(b, &s);
            printf("%-24s %-20s %-12s %8llu  %s\n", esc(name), esc(cb_name(b)),
                   cb_state_name(s.state), (ull)s.generation,
                   ratio(r, s.window_failures, s.window_calls));
            cb_shm_close(b);
        } else {
            printf("%-24s %-20s error: %s\n", esc(name), "?", why);
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
        printf("(no breaker files in %s)\n", esc(dir[0]));
    free(dir);
    return status;
}

static const char USAGE_WATCH[] =
    "usage: cbctl watch [--interval-ms=N] [--count=N] FILE...\n"
    "\n"
    "Shows the breakers like cbctl show, refreshed in place every --interval-ms\n"
    "(default 1000, 10..3600000) until interrupted (Ctrl-C), or --count times.\n"
    "When stdout is not a terminal, frames follow each other instead. A file replaced\n"
    "at its path is followed: the new file is shown, or why it cannot be used.\n";

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
            refresh(&bs[i]);
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
    printf("%s: %s -> %s (generation %llu)\n", esc(b->name), cb_state_name(from),
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
            "disabled or metrics-only)", esc(ops[1]));
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
        die(EXIT_USAGE, "%s", esc(err));
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
        die(EXIT_USAGE, "%s", esc(msg));
    cb_breaker *b = cb_shm_open_ex(ops[0], &cfg, attach_flags, &e, msg, sizeof msg);
    if (!b && e == CB_EMISMATCH) {
        cb_config_resolve(&cfg, &cfg, NULL, 0);
        cbflags_format(&cfg, want, sizeof want);
        breaker *old = attach_all(ops, 1);
        cb_config_get(old->b, &cfg);
        cbflags_format(&cfg, have, sizeof have);
        die(EXIT_FILE, "%s: %s\n  the file holds: %s\n  asked for:      %s", esc(ops[0]),
            cb_strerror(e), esc(have), esc(want));
    }
    if (!b) {
        size_t n = strlen(ops[0]);
        die(EXIT_FILE, "%s: %s: %s", esc(ops[0]), cb_strerror(e),
            esc(strncmp(msg, ops[0], n) == 0 && msg[n] == ':' ? msg + n + 2 : msg));
    }
    cb_config_get(b, &cfg);
    cbflags_format(&cfg, have, sizeof have);
    printf("%s: %s\n", esc(ops[0]), esc(have));
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
    size_t k = 0;
    for (int i = 0; i < n; i++)
        if (bs[i].b)   /* a file that cannot be used has no series rather than stale ones */
            list[k++] = bs[i].b;
    int len = cb_format_prometheus(list, k, NULL, 0);
    char *buf = xmalloc((size_t)len + 1);
    cb_format_prometheus(list, k, buf, (size_t)len + 1);
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
static double failure_rate(const cb_breaker *b, const cb_stats *s)
{
    cb_config c;
    cb_config_get(b, &c);
    if (!(c.window_calls || c.window_ms) || !s->window_calls || s->window_calls < c.minimum_calls)
        return -1;
    return (double)s->window_failures / s->window_calls;
}

/* CRITICAL only while the breaker will refuse the next call for time still to run. Once
   an open period is over the next call probes; a 503 then would keep a load balancer
   from ever sending that call, and the instance would stay out for good. */
static enum health health_of(const breaker *br, const cb_stats *s, uint64_t retry_ms,
                             double rate, double warn)
{
    if (s->state == CB_FORCED_OPEN || (s->state == CB_OPEN && retry_ms > 0))
        return br->critical ? CRITICAL : UNHEALTHY;
    if (s->state == CB_OPEN || s->state == CB_HALF_OPEN || (s->state != CB_DISABLED && rate >= warn))
        return DEGRADED;
    return HEALTHY;
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
        if (!br->b) {
            cJSON_AddStringToObject(o, "state", "unknown");
            cJSON_AddStringToObject(o, "health", health_names[h]);
            cJSON_AddBoolToObject(o, "critical", br->critical);
            cJSON_AddNullToObject(o, "failure_rate");
            cJSON_AddNullToObject(o, "window_calls");
            cJSON_AddNullToObject(o, "retry_after_ms");
            cJSON_AddStringToObject(o, "error", br->why);
        } else {
            cb_stats s;
            cb_stats_get(br->b, &s);
            uint64_t retry_ms = cb_retry_after_ms(br->b);
            double rate = failure_rate(br->b, &s);
            h = health_of(br, &s, retry_ms, rate, sv->warn);
            cJSON_AddStringToObject(o, "state", cb_state_name(s.state));
            cJSON_AddStringToObject(o, "health", health_names[h]);
            cJSON_AddBoolToObject(o, "critical", br->critical);
            if (rate >= 0)
                cJSON_AddNumberToObject(o, "failure_rate", rate);
            else
                cJSON_AddNullToObject(o, "failure_rate");
            cJSON_AddNumberToObject(o, "window_calls", s.window_calls);
            cJSON_AddNumberToObject(o, "retry_after_ms", (double)retry_ms);
        }
        cJSON_AddItemToArray(list, o);
        if (h > *worst)
            *worst = h;
    }
    cJSON_AddStringToObject(doc, "status", health_names[*worst]);
    cJSON_AddNumberToObject(doc, "warn_failure_rate", sv->warn);
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
        char *text = prometheus_text(sv->bs, sv->n);
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
    "                   [--max-connections=N] [--header-timeout-ms=N] FILE...\n"
    "\n"
    "Serves the breakers over HTTP until SIGINT or SIGTERM:\n"
    "  /metrics  Prometheus text format 0.0.4\n"
    "  /health   JSON {\"status\": ..., \"breakers\": [...]}; status is the worst of:\n"
    "            HEALTHY; DEGRADED (half-open, open with its period over so that the\n"
    "            next call probes, or a window failure rate >= R); UNHEALTHY (forced-open,\n"
    "            or open with time left in its period; or its file cannot be used);\n"
    "            CRITICAL (a --critical breaker is so: HTTP 503; otherwise 200)\n"
    "A file replaced at its path is followed (it must hold the same breaker).\n"
    "--listen HOST:PORT       a numeric address, e.g. 127.0.0.1:9464 or [::1]:9464; port 0\n"
    "                         picks a free one; the address is printed once listening\n"
    "--warn-failure-rate=R    in (0, 1], default 0.2\n"
    "--critical=NAME          the breaker named NAME is critical (repeat for more)\n"
    "--max-connections=N      connections held at once, default 4096 (1..1000000), within\n"
    "                         the open files limit; more wait to be accepted\n"
    "--header-timeout-ms=N    a request's headers must be in within N ms of the accept\n"
    "                         (or of the previous response), and a connection idle that\n"
    "                         long is closed: default 5000 (10..600000)\n";

typedef struct serve_opts {
    const char *listen;
    double warn;
    const char **critical;
    int ncritical;
    uint32_t max_connections, header_timeout_ms;
    bool max_given;
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
        return false;
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
    serve_opts o = { NULL, 0.2, xmalloc(sizeof(char *) * (size_t)argc), 0, MAX_CONNECTIONS,
                     HEADER_TIMEOUT_MS, false };
    const char **files = xmalloc(sizeof *files * (size_t)argc);
    int n = operands(argc, argv, serve_opt, &o, files);
    if (!o.listen)
        die(EXIT_USAGE, "--listen HOST:PORT is required");
    if (n == 0)
        die(EXIT_USAGE, "name at least one FILE");
    struct addrinfo *ai = listen_addr(o.listen);
    server sv = { attach_all(files, n), n, o.warn, (uint64_t)o.header_timeout_ms * 1000000u,
                  NULL, NULL, 0 };
    check_names_unique(sv.bs, n);
    for (int c = 0; c < o.ncritical; c++) {
        int i = 0;
        while (i < n && strcmp(sv.bs[i].name, o.critical[c]) != 0)
            i++;
        if (i == n)
            die(EXIT_USAGE, "--critical=%s: no breaker of that name among the files",
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
    printf("cbctl serve: %d breaker%s on http://%s%s%s:%u (/metrics, /health)\n", n,
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
