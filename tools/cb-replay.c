/* cb-replay - replay a trace of calls against a cb.h breaker on a virtual clock.

       cb-replay [breaker flags] TRACE
       cb-replay [breaker flags] [--outage-slow-ms=N] --compare CONFIG... TRACE

   A trace is JSON lines {"t_ns": N, "outcome": "success"|"failure"|"ignored",
   "duration_ns": N}. Each call is admitted (cb_allow) at t_ns and, if admitted, recorded
   (cb_record) at t_ns + duration_ns; allows and records run in time order, so calls that
   overlap in the trace are in flight together. No wall clock is read: identical input
   gives byte-identical output. Semantics and the --compare metrics: docs/replay.md. */
#define _POSIX_C_SOURCE 200809L
#define CB_IMPLEMENTATION
#include "cb.h"
#include "cbflags.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { EXIT_RUNTIME = 1, EXIT_BAD_INPUT = 2 };

/* JSON numbers are doubles in cJSON; above 2^53 not every integer survives the parse. */
#define MAX_EXACT 9007199254740992.0

static const char USAGE[] =
    "usage: cb-replay [breaker flags] TRACE\n"
    "       cb-replay [breaker flags] [--outage-slow-ms=N] --compare CONFIG... TRACE\n"
    "\n"
    "Replays TRACE (JSON lines {\"t_ns\":N,\"outcome\":\"success\"|\"failure\"|\"ignored\",\n"
    "\"duration_ns\":N}; - for stdin) against a breaker on a virtual clock and prints one\n"
    "JSON line per state transition, then a {\"summary\":{...}} line.\n"
    "\n"
    "--compare CONFIG...  replay once per CONFIG (a quoted set of breaker flags applied on\n"
    "                     top of the flags before --compare) and print a table side by side\n"
    "--outage-slow-ms=N   for --compare: a call lasting >= N ms is part of an outage too\n"
    "--help               this text; docs/replay.md has the details\n"
    "\n" CBFLAGS_USAGE;

static void die(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("cb-replay: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(status);
}

static void *xrealloc(void *p, size_t n, size_t size)
{
    if (n > SIZE_MAX / size || !(p = realloc(p, n * size)))
        die(EXIT_RUNTIME, "out of memory");
    return p;
}

/* ---- the trace ---------------------------------------------------------------- */

typedef struct call {
    uint64_t t_ns, end_ns;
    cb_outcome outcome;
} call;

typedef struct trace {
    call *v;
    size_t n;
} trace;

/* A non-negative integer below 2^53 (1e3 and 1.0 are integers; 1.5 is not). */
static bool get_uint(const cJSON *item, const char *key, uint64_t *out, char *err, size_t errlen)
{
    if (!cJSON_IsNumber(item)) {
        snprintf(err, errlen, "\"%s\" must be a number", key);
        return false;
    }
    double v = item->valuedouble;
    if (v < 0)
        snprintf(err, errlen, "\"%s\" is negative: %.15g", key, v);
    else if (v >= MAX_EXACT)
        snprintf(err, errlen, "\"%s\" is too large: %.15g (limit 2^53)", key, v);
    else if (v != (double)(uint64_t)v)
        snprintf(err, errlen, "\"%s\" is not an integer: %.15g", key, v);
    else {
        *out = (uint64_t)v;
        return true;
    }
    return false;
}

/* One line into c; false with a message in err if it is not a valid trace line. */
static bool parse_line(const char *text, call *c, char *err, size_t errlen)
{
    const char *end = NULL;
    if (text[strspn(text, " \t\r\n")] == '\0') {
        snprintf(err, errlen, "empty line (every line must be a JSON object)");
        return false;
    }
    cJSON *obj = cJSON_ParseWithOpts(text, &end, 1);
    if (!obj) {
        snprintf(err, errlen, "invalid JSON at column %zu", (size_t)(end - text) + 1);
        return false;
    }
    bool ok = false;
    const cJSON *t = NULL, *outcome = NULL, *duration = NULL;
    if (!cJSON_IsObject(obj)) {
        snprintf(err, errlen, "expected a JSON object");
        goto out;
    }
    for (const cJSON *kv = obj->child; kv; kv = kv->next) {
        const cJSON **slot = !strcmp(kv->string, "t_ns")          ? &t
                             : !strcmp(kv->string, "outcome")     ? &outcome
                             : !strcmp(kv->string, "duration_ns") ? &duration
                                                                  : NULL;
        if (!slot) {
            snprintf(err, errlen, "unknown key \"%s\" (expected t_ns, outcome, duration_ns)",
                     kv->string);
            goto out;
        }
        if (*slot) {
            snprintf(err, errlen, "duplicate key \"%s\"", kv->string);
            goto out;
        }
        *slot = kv;
    }
    if (!t || !outcome) {
        snprintf(err, errlen, "missing \"%s\"", t ? "outcome" : "t_ns");
        goto out;
    }
    uint64_t dur = 0;
    if (!get_uint(t, "t_ns", &c->t_ns, err, errlen) ||
        (duration && !get_uint(duration, "duration_ns", &dur, err, errlen)))
        goto out;
    c->end_ns = c->t_ns + dur; /* both < 2^53: no overflow */
    for (int o = CB_SUCCESS; o <= CB_IGNORED; o++)
        if (cJSON_IsString(outcome) && !strcmp(outcome->valuestring, cb_outcome_name(o))) {
            c->outcome = (cb_outcome)o;
            ok = true;
        }
    if (!ok)
        snprintf(err, errlen, "\"outcome\" must be \"success\", \"failure\" or \"ignored\"");
out:
    cJSON_Delete(obj);
    return ok;
}

/* The whole trace, or exit 2 naming the first bad line. Read before any replay so that a
   bad trace prints nothing on stdout, and so that --compare can read stdin once. */
static trace read_trace(const char *path)
{
    const char *name = strcmp(path, "-") ? path : "<stdin>";
    FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
    if (!f)
        die(EXIT_BAD_INPUT, "%s: %s", name, strerror(errno));
    trace tr = {0};
    size_t cap = 0, len = 0;
    char *buf = NULL, err[160] = "";
    ssize_t got;
    while (!*err && (got = getline(&buf, &len, f)) >= 0) {
        if (tr.n == cap)
            tr.v = xrealloc(tr.v, cap = cap ? 2 * cap : 1024, sizeof *tr.v);
        if (strlen(buf) != (size_t)got)
            snprintf(err, sizeof err, "NUL byte in line");
        else if (parse_line(buf, &tr.v[tr.n], err, sizeof err))
            tr.n++;
    }
    bool failed = ferror(f);
    free(buf);
    if (f != stdin)
        fclose(f);
    if (*err || failed) /* free first: leak checkers run the error paths too */
        free(tr.v);
    if (*err)
        die(EXIT_BAD_INPUT, "%s:%zu: %s", name, tr.n + 1, err);
    if (failed)
        die(EXIT_BAD_INPUT, "%s: read error", name);
    return tr;
}

/* ---- the replay --------------------------------------------------------------- */

typedef struct transition {
    cb_event ev;
    size_t line; /* trace line whose cb_allow or cb_record made it */
} transition;

typedef struct pending {
    uint64_t end_ns;
    size_t i;
    cb_ticket ticket;
} pending;

typedef struct run {
    uint64_t now, last_ns; /* the virtual clock; the latest time it showed */
    size_t line;
    transition *tr;
    size_t ntr, cap;
    bool *admitted; /* per trace line */
    cb_stats stats;
    pending *heap; /* admitted calls in flight, earliest end first */
    size_t nheap, heapcap;
} run;

static uint64_t virtual_clock(void *user) { return ((run *)user)->now; }

static void on_transition(const cb_event *ev, void *user)
{
    run *r = user;
    if (r->ntr == r->cap)
        r->tr = xrealloc(r->tr, r->cap = r->cap ? 2 * r->cap : 64, sizeof *r->tr);
    r->tr[r->ntr++] = (transition){*ev, r->line};
}

static void set_clock(run *r, uint64_t t_ns, size_t i)
{
    r->now = t_ns;
    r->line = i + 1;
    if (t_ns > r->last_ns)
        r->last_ns = t_ns;
}

/* Ties go to the earlier trace line, so the order is total and the output deterministic. */
static bool before(const pending *a, const pending *b)
{
    return a->end_ns < b->end_ns || (a->end_ns == b->end_ns && a->i < b->i);
}

static void heap_push(run *r, pending p)
{
    if (r->nheap == r->heapcap)
        r->heap = xrealloc(r->heap, r->heapcap = r->heapcap ? 2 * r->heapcap : 64, sizeof p);
    size_t k = r->nheap++;
    for (; k && before(&p, &r->heap[(k - 1) / 2]); k = (k - 1) / 2)
        r->heap[k] = r->heap[(k - 1) / 2];
    r->heap[k] = p;
}

static pending heap_pop(run *r)
{
    pending top = r->heap[0], last = r->heap[--r->nheap];
    size_t k = 0;
    for (;;) {
        size_t c = 2 * k + 1;
        if (c >= r->nheap)
            break;
        if (c + 1 < r->nheap && before(&r->heap[c + 1], &r->heap[c]))
            c++;
        if (!before(&r->heap[c], &last))
            break;
        r->heap[k] = r->heap[c];
        k = c;
    }
    r->heap[k] = last;
    return top;
}

/* Records the call in flight that ends first. */
static void finish_one(cb_breaker *b, run *r, const trace *tr)
{
    pending p = heap_pop(r);
    set_clock(r, p.end_ns, p.i);
    cb_record(b, &p.ticket, tr->v[p.i].outcome);
}

/* Replays tr against a breaker built from cfg (already checked) into r. A record and an
   allow at the same instant: the record goes first, as when one client thread starts its
   next call the moment the last one returns. */
static void replay(const trace *tr, cb_config cfg, run *r)
{
    *r = (run){0};
    r->admitted = xrealloc(NULL, tr->n ? tr->n : 1, sizeof *r->admitted);
    cfg.on_event = on_transition;
    cfg.user = r;
    cfg.clock_ns = virtual_clock;
    cfg.clock_user = r;
    cb_err e;
    cb_breaker *b = cb_new(&cfg, &e);
    if (!b)
        die(EXIT_RUNTIME, "cb_new: %s", cb_strerror(e));
    uint64_t horizon = 0; /* latest t_ns so far: a line that goes back in time comes
                             after every call that ended before the lines above it */
    for (size_t i = 0; i < tr->n; i++) {
        horizon = tr->v[i].t_ns > horizon ? tr->v[i].t_ns : horizon;
        while (r->nheap && r->heap[0].end_ns <= horizon)
            finish_one(b, r, tr);
        set_clock(r, tr->v[i].t_ns, i);
        cb_ticket t;
        r->admitted[i] = cb_allow(b, &t);
        if (r->admitted[i])
            heap_push(r, (pending){tr->v[i].end_ns, i, t});
    }
    while (r->nheap)
        finish_one(b, r, tr);
    cb_stats_get(b, &r->stats);
    cb_free(b);
    free(r->heap);
}

static void run_free(run *r)
{
    free(r->tr);
    free(r->admitted);
}

static void print_events(const trace *tr, const run *r)
{
    for (size_t i = 0; i < r->ntr; i++) {
        const cb_event *ev = &r->tr[i].ev;
        printf("{\"t_ns\":%" PRIu64 ",\"from\":\"%s\",\"to\":\"%s\",\"reason\":\"%s\","
               "\"generation\":%" PRIu64,
               ev->at_ns, cb_state_name(ev->from), cb_state_name(ev->to),
               cb_reason_name(ev->reason), ev->generation);
        if (ev->to == CB_OPEN)
            printf(",\"open_ms\":%" PRIu64, ev->open_ms);
        printf(",\"line\":%zu}\n", r->tr[i].line);
    }
    const cb_stats *s = &r->stats;
    printf("{\"summary\":{\"calls\":%zu,\"admitted\":%" PRIu64 ",\"rejected\":%" PRIu64,
           tr->n, s->admitted, s->rejected);
    for (unsigned why = CB_REJECT_OPEN; why < CB__REJECT_COUNT; why++)   /* why they were */
        printf("%s\"%s\":%" PRIu64, why == CB_REJECT_OPEN ? ",\"rejected_by\":{" : ",",
               cb_reject_name((cb_reject)why), s->rejected_by[why]);
    printf("},\"successes\":%" PRIu64 ",\"failures\":%" PRIu64 ",\"ignored\":%" PRIu64
           ",\"slow\":%" PRIu64 ",\"stale\":%" PRIu64 ",\"opens\":%" PRIu64
           ",\"state\":\"%s\",\"generation\":%" PRIu64 ",\"end_ns\":%" PRIu64 "}}\n",
           s->successes, s->failures, s->ignored, s->slow, s->stale, s->opens,
           cb_state_name(s->state), s->generation, r->last_ns);
}

/* ---- --compare ---------------------------------------------------------------- */

typedef struct outage {
    uint64_t start_ns, end_ns;
    bool ended;
} outage;

typedef struct outages {
    outage *v;
    size_t n;
} outages;

/* Outages come from the trace alone, so every configuration is measured against the
   same ones: a run of calls from a bad one (failure, or slow) to the next good one
   (success, not slow); ignored calls neither start nor end one. */
static outages find_outages(const trace *tr, uint64_t slow_ns)
{
    outages o = {0};
    size_t cap = 0;
    bool in = false;
    for (size_t i = 0; i < tr->n; i++) {
        const call *c = &tr->v[i];
        bool slow = slow_ns && c->end_ns - c->t_ns >= slow_ns;
        bool bad = c->outcome == CB_FAILURE || (c->outcome == CB_SUCCESS && slow);
        bool good = c->outcome == CB_SUCCESS && !slow;
        if (!in && bad) {
            if (o.n == cap)
                o.v = xrealloc(o.v, cap = cap ? 2 * cap : 64, sizeof *o.v);
            o.v[o.n++] = (outage){c->t_ns, 0, false};
            in = true;
        } else if (in && good) {
            o.v[o.n - 1].end_ns = c->t_ns;
            o.v[o.n - 1].ended = true;
            in = false;
        }
    }
    return o;
}

/* Each outage looks up the transitions around its start and end; a scan per outage would
   make --compare quadratic in the trace. The lookups binary-search running maxima of the
   transition times instead: a running maximum is sorted even where at_ns is not (a trace
   whose t_ns goes back), and the first entry where it reaches t is the first transition
   at or after t, the one a scan in order would stop at. */
typedef struct timeline {
    uint64_t *all;               /* over every transition */
    uint64_t *open, *closed;     /* over the transitions into OPEN, into CLOSED */
    size_t nopen, nclosed;
} timeline;

static timeline timeline_of(const run *r)
{
    size_t n = r->ntr ? r->ntr : 1;
    timeline tl = { xrealloc(NULL, n, sizeof(uint64_t)), xrealloc(NULL, n, sizeof(uint64_t)),
                    xrealloc(NULL, n, sizeof(uint64_t)), 0, 0 };
    uint64_t all = 0, open = 0, closed = 0;
    for (size_t i = 0; i < r->ntr; i++) {
        uint64_t at = r->tr[i].ev.at_ns;
        tl.all[i] = all = at > all ? at : all;
        if (r->tr[i].ev.to == CB_OPEN)
            tl.open[tl.nopen++] = open = at > open ? at : open;
        else if (r->tr[i].ev.to == CB_CLOSED)
            tl.closed[tl.nclosed++] = closed = at > closed ? at : closed;
    }
    return tl;
}

static void timeline_free(timeline *tl)
{
    free(tl->all);
    free(tl->open);
    free(tl->closed);
}

/* The first k with v[k] >= t (v sorted), or n. */
static size_t first_reaching(const uint64_t *v, size_t n, uint64_t t)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid] < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The state after the transitions before the first one later than t. */
static cb_state state_at(const run *r, const timeline *tl, uint64_t t)
{
    size_t k = first_reaching(tl->all, r->ntr, t + 1);   /* t < 2^53: no overflow */
    return k ? r->tr[k - 1].ev.to : CB_CLOSED;
}

/* Time of the first transition into OPEN or CLOSED at or after t, or UINT64_MAX. At that
   entry the running maximum is the transition's own time. */
static uint64_t next_entry(const timeline *tl, uint64_t t, cb_state to)
{
    const uint64_t *v = to == CB_OPEN ? tl->open : tl->closed;
    size_t n = to == CB_OPEN ? tl->nopen : tl->nclosed;
    size_t k = first_reaching(v, n, t);
    return k < n ? v[k] : UINT64_MAX;
}

typedef struct sample {
    double sum, max;
    size_t n;
} sample;

static void add(sample *s, uint64_t ns)
{
    double ms = (double)ns / 1e6;
    s->sum += ms;
    s->max = s->n++ && s->max > ms ? s->max : ms;
}

enum { ROW_REJECTED, ROW_REJECTED_OK, ROW_LET_THROUGH, ROW_DETECTED, ROW_DETECT_MEAN,
       ROW_DETECT_MAX, ROW_OPEN, ROW_RECOVERED, ROW_RECOVER_MEAN, ROW_RECOVER_MAX, ROWS };

static const char *const ROW_NAMES[ROWS] = {
    "rejected calls", "rejected that would succeed", "failures let through",
    "outages detected", "time to detect, mean ms", "time to detect, max ms",
    "time open, ms", "outages recovered", "time to recover, mean ms",
    "time to recover, max ms",
};

typedef char cell[32];

static void fmt_sample(cell mean, cell max, const sample *s)
{
    if (!s->n) {
        snprintf(mean, sizeof(cell), "-");
        snprintf(max, sizeof(cell), "-");
        return;
    }
    snprintf(mean, sizeof(cell), "%.1f", s->sum / (double)s->n);
    snprintf(max, sizeof(cell), "%.1f", s->max);
}

/* One column of the table: the metrics of one replay (defined in docs/replay.md). */
static void measure(const trace *tr, const outages *o, const run *r, cell col[ROWS])
{
    uint64_t rejected_ok = 0, let_through = 0, open_ns = 0;
    for (size_t i = 0; i < tr->n; i++) {
        rejected_ok += !r->admitted[i] && tr->v[i].outcome == CB_SUCCESS;
        let_through += r->admitted[i] && tr->v[i].outcome == CB_FAILURE;
    }
    for (size_t i = 0; i < r->ntr; i++) {
        uint64_t from = r->tr[i].ev.at_ns;
        uint64_t to = i + 1 < r->ntr ? r->tr[i + 1].ev.at_ns : r->last_ns;
        if (r->tr[i].ev.to == CB_OPEN && to > from)
            open_ns += to - from;
    }
    sample detect = {0}, recover = {0};
    size_t detected = 0, ended = 0;
    timeline tl = timeline_of(r);
    for (size_t k = 0; k < o->n; k++) {
        const outage *u = &o->v[k];
        uint64_t opened = state_at(r, &tl, u->start_ns) == CB_OPEN
                              ? u->start_ns
                              : next_entry(&tl, u->start_ns, CB_OPEN);
        if (opened == UINT64_MAX || (u->ended && opened >= u->end_ns))
            continue;
        detected++;
        add(&detect, opened - u->start_ns);
        if (!u->ended)
            continue;
        ended++;
        uint64_t closed = state_at(r, &tl, u->end_ns) == CB_CLOSED
                              ? u->end_ns
                              : next_entry(&tl, u->end_ns, CB_CLOSED);
        if (closed != UINT64_MAX)
            add(&recover, closed - u->end_ns);
    }
    timeline_free(&tl);
    snprintf(col[ROW_REJECTED], sizeof(cell), "%" PRIu64, r->stats.rejected);
    snprintf(col[ROW_REJECTED_OK], sizeof(cell), "%" PRIu64, rejected_ok);
    snprintf(col[ROW_LET_THROUGH], sizeof(cell), "%" PRIu64, let_through);
    snprintf(col[ROW_DETECTED], sizeof(cell), "%zu/%zu", detected, o->n);
    fmt_sample(col[ROW_DETECT_MEAN], col[ROW_DETECT_MAX], &detect);
    snprintf(col[ROW_OPEN], sizeof(cell), "%.1f", (double)open_ns / 1e6);
    snprintf(col[ROW_RECOVERED], sizeof(cell), "%zu/%zu", recover.n, ended);
    fmt_sample(col[ROW_RECOVER_MEAN], col[ROW_RECOVER_MAX], &recover);
}

static void print_table(cell (*cols)[ROWS], size_t ncols)
{
    int w0 = 0, w = 1;
    for (int row = 0; row < ROWS; row++) {
        int len = (int)strlen(ROW_NAMES[row]);
        w0 = len > w0 ? len : w0;
        for (size_t c = 0; c < ncols; c++)
            w = (int)strlen(cols[c][row]) > w ? (int)strlen(cols[c][row]) : w;
    }
    printf("%-*s", w0, "");
    for (size_t c = 0; c < ncols; c++)
        printf("  %*c", w, (int)('A' + c));
    putchar('\n');
    for (int row = 0; row < ROWS; row++) {
        printf("%-*s", w0, ROW_NAMES[row]);
        for (size_t c = 0; c < ncols; c++)
            printf("  %*s", w, cols[c][row]);
        putchar('\n');
    }
}

/* ---- command line ------------------------------------------------------------- */

/* A breaker flag into cfg; exits 2 naming where the bad flag came from. */
static void breaker_flag(const char *arg, cb_config *cfg, const char *where)
{
    char err[200];
    int got = cbflags_parse(arg, cfg, err, sizeof err);
    if (got < 0)
        die(EXIT_BAD_INPUT, "%s%s", where, err);
    if (got == 0)
        die(EXIT_BAD_INPUT, "%sunknown flag '%s' (try --help)", where, arg);
}

static void check_config(const cb_config *cfg, const char *where)
{
    char msg[200];
    if (cb_config_check(cfg, msg, sizeof msg) != CB_OK)
        die(EXIT_BAD_INPUT, "%sbad breaker config: %s", where, msg);
}

static void replay_one(const cb_config *cfg, const char *path)
{
    check_config(cfg, "");
    trace tr = read_trace(path);
    run r;
    replay(&tr, *cfg, &r);
    print_events(&tr, &r);
    run_free(&r);
    free(tr.v);
}

/* Up to 26 columns, named A..Z. */
#define MAX_CONFIGS 26

static void compare(const cb_config *base, uint64_t outage_slow_ms, char **configs, int n,
                    const char *path)
{
    if (n < 1)
        die(EXIT_BAD_INPUT, "--compare needs at least one CONFIG and then TRACE");
    if (n > MAX_CONFIGS)
        die(EXIT_BAD_INPUT, "--compare takes at most %d CONFIGs", MAX_CONFIGS);
    cb_config cfgs[MAX_CONFIGS];
    char *copies[MAX_CONFIGS]; /* --name points into them: keep until the end */
    for (int c = 0; c < n; c++) {
        char where[32];
        snprintf(where, sizeof where, "CONFIG %c: ", 'A' + c);
        cfgs[c] = *base;
        if (!(copies[c] = strdup(configs[c])))
            die(EXIT_RUNTIME, "out of memory");
        for (char *save, *tok = strtok_r(copies[c], " \t", &save); tok;
             tok = strtok_r(NULL, " \t", &save))
            breaker_flag(tok, &cfgs[c], where);
        check_config(&cfgs[c], where);
    }
    trace tr = read_trace(path);
    outages o = find_outages(&tr, outage_slow_ms * 1000000);
    cell cols[MAX_CONFIGS][ROWS];
    for (int c = 0; c < n; c++) {
        run r;
        replay(&tr, cfgs[c], &r);
        measure(&tr, &o, &r, cols[c]);
        run_free(&r);
    }
    print_table(cols, (size_t)n);
    putchar('\n');
    for (int c = 0; c < n; c++) {
        char flags[512];
        cbflags_format(&cfgs[c], flags, sizeof flags);
        printf("%c: %s\n", 'A' + c, *flags ? flags : "(defaults)");
        free(copies[c]);
    }
    free(o.v);
    free(tr.v);
}

int main(int argc, char **argv)
{
    for (int k = 1; k < argc; k++)
        if (!strcmp(argv[k], "--help") || !strcmp(argv[k], "-h")) {
            fputs(USAGE, stdout);
            return 0;
        }
    /* TRACE is last; a path that starts with "--" can be given as ./--name. */
    if (argc < 2 || !strncmp(argv[argc - 1], "--", 2))
        die(EXIT_BAD_INPUT, "missing TRACE (try --help)");
    const char *path = argv[argc - 1];
    int cmp = 1; /* index of --compare, or of TRACE when there is none */
    while (cmp < argc - 1 && strcmp(argv[cmp], "--compare"))
        cmp++;
    cb_config base = {0};
    uint64_t outage_slow_ms = 0;
    for (int k = 1; k < cmp; k++) {
        if (!strncmp(argv[k], "--outage-slow-ms=", 17)) {
            if (!cbflags__unsigned(argv[k] + 17, UINT32_MAX, &outage_slow_ms))
                die(EXIT_BAD_INPUT, "--outage-slow-ms: bad value '%s'", argv[k] + 17);
        } else
            breaker_flag(argv[k], &base, "");
    }
    if (cmp < argc - 1)
        compare(&base, outage_slow_ms, argv + cmp + 1, argc - 2 - cmp, path);
    else if (outage_slow_ms)
        die(EXIT_BAD_INPUT, "--outage-slow-ms applies only with --compare");
    else
        replay_one(&base, path);
    if (fflush(stdout) || ferror(stdout))
        die(EXIT_RUNTIME, "writing output: %s", strerror(errno));
    return 0;
}
