/* cb_bench: runs the operations of ops.c with Google Benchmark 1.7's command line,
   iteration calibration, thread model and console/JSON output, so tools written for
   Google Benchmark read its results unchanged. bench/xcheck.cc times the same loops
   under the real library (make bench-xcheck). */
#define _DEFAULT_SOURCE
#include "ops.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <regex.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_ITERATIONS 1000000000ull /* Google Benchmark's kMaxIterations */
#define MAX_THREAD_COUNTS 32

enum format { FMT_CONSOLE, FMT_JSON };

static struct {
    const char *filter;
    bool list_tests;
    double min_time;      /* seconds of CPU time a calibrated run must reach */
    uint64_t fixed_iters; /* --benchmark_min_time=<N>x (Google Benchmark 1.8): no calibration */
    int repetitions;
    bool aggregates_only;
    bool interleave;      /* --benchmark_enable_random_interleaving */
    enum format format, out_format;
    const char *out;
} opt = { ".", false, 0.5, 0, 1, false, false, FMT_CONSOLE, FMT_JSON, NULL };

static const char *executable;

static void die(const char *fmt, const char *arg)
{
    fprintf(stderr, "cb_bench: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    exit(1);
}

/* ---- command line ---- */

static void usage(FILE *f)
{
    fprintf(f, "usage: %s [--benchmark_list_tests={true|false}]\n"
               "          [--benchmark_filter=<regex>]\n"
               "          [--benchmark_min_time=<seconds>|<iterations>x]\n"
               "          [--benchmark_repetitions=<n>]\n"
               "          [--benchmark_enable_random_interleaving={true|false}]\n"
               "          [--benchmark_report_aggregates_only={true|false}]\n"
               "          [--benchmark_format=<console|json>]\n"
               "          [--benchmark_out=<filename>]\n"
               "          [--benchmark_out_format=<json|console>]\n",
            executable);
}

/* The value of --name=value, "" for a bare --name, NULL if arg is another flag. */
static const char *flag(const char *arg, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(arg, "--", 2) != 0 || strncmp(arg + 2, name, n) != 0)
        return NULL;
    arg += 2 + n;
    return *arg == '=' ? arg + 1 : *arg == '\0' ? "" : NULL;
}

static bool parse_bool(const char *v)
{
    if (!*v || !strcmp(v, "true") || !strcmp(v, "1") || !strcmp(v, "yes"))
        return true;
    if (!strcmp(v, "false") || !strcmp(v, "0") || !strcmp(v, "no"))
        return false;
    die("not a boolean: %s", v);
    return false;
}

static enum format parse_format(const char *v)
{
    if (!strcmp(v, "console"))
        return FMT_CONSOLE;
    if (!strcmp(v, "json"))
        return FMT_JSON;
    die("unsupported format: %s", v);
    return FMT_JSON;
}

static void parse_min_time(const char *v)
{
    char *end;
    errno = 0;
    if (*v && v[strlen(v) - 1] == 'x') {
        unsigned long long n = strtoull(v, &end, 10);
        if (errno || end == v || *end != 'x' || end[1] || n == 0)
            die("bad --benchmark_min_time: %s", v);
        opt.fixed_iters = n;
        return;
    }
    double s = strtod(v, &end);
    if (errno || end == v || (*end && strcmp(end, "s")) || !(s > 0))
        die("bad --benchmark_min_time: %s", v);
    opt.min_time = s;
    opt.fixed_iters = 0;
}

static void parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if ((v = flag(a, "benchmark_filter")))
            opt.filter = *v && strcmp(v, "all") ? v : ".";
        else if ((v = flag(a, "benchmark_list_tests")))
            opt.list_tests = parse_bool(v);
        else if ((v = flag(a, "benchmark_min_time")))
            parse_min_time(v);
        else if ((v = flag(a, "benchmark_repetitions"))) {
            char *end;
            long n = strtol(v, &end, 10);
            if (end == v || *end || n < 1 || n > 100000)
                die("bad --benchmark_repetitions: %s", v);
            opt.repetitions = (int)n;
        } else if ((v = flag(a, "benchmark_enable_random_interleaving")))
            opt.interleave = parse_bool(v);
        else if ((v = flag(a, "benchmark_report_aggregates_only")))
            opt.aggregates_only = parse_bool(v);
        else if ((v = flag(a, "benchmark_format")))
            opt.format = parse_format(v);
        else if ((v = flag(a, "benchmark_out_format")))
            opt.out_format = parse_format(v);
        else if ((v = flag(a, "benchmark_out")) && *v)
            opt.out = v;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else {
            fprintf(stderr, "error: unrecognized command-line flag: %s\n", a);
            usage(stderr);
            exit(1);
        }
    }
}

/* ---- instances: one per operation and thread count, named as Google Benchmark does ---- */

typedef struct run run;

typedef struct instance {
    const bench_op *op;
    int threads;
    int family_index, per_family_instance_index; /* among the instances that match */
    char name[128];
    uint64_t iters; /* calibrated by the first repetition, reused by the others */
    int done;       /* repetitions run */
    run *runs;      /* the repetitions, then room for the aggregates */
} instance;

static size_t select_instances(instance *out, int ncpu)
{
    bool negative = opt.filter[0] == '-';
    regex_t re;
    if (regcomp(&re, opt.filter + negative, REG_EXTENDED | REG_NOSUB))
        die("bad --benchmark_filter: %s", opt.filter);
    int counts[MAX_THREAD_COUNTS];
    size_t ncounts = bench_thread_counts(ncpu, counts, MAX_THREAD_COUNTS);
    size_t n = 0;
    int family = 0;
    for (size_t f = 0; f < bench_ops_count; f++) {
        int per_family = 0;
        for (size_t c = 0; c < ncounts; c++) {
            instance *in = &out[n];
            snprintf(in->name, sizeof in->name, "%s/threads:%d", bench_ops[f].name, counts[c]);
            if ((regexec(&re, in->name, 0, NULL, 0) == 0) == negative)
                continue;
            in->op = &bench_ops[f];
            in->threads = counts[c];
            in->family_index = family;
            in->per_family_instance_index = per_family++;
            n++;
        }
        family += per_family > 0;
    }
    regfree(&re);
    return n;
}

/* ---- timing: threads start together on a barrier, each times its own loop ---- */

typedef struct worker {
    pthread_t id;
    pthread_barrier_t *start;
    const bench_op *op;
    void *ctx;
    uint64_t iters;
    double real_ns, cpu_ns;
} worker;

static double clock_ns(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    pthread_barrier_wait(w->start);
    double r0 = clock_ns(CLOCK_MONOTONIC), c0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    bench_run_loop(w->op, w->ctx, w->iters);
    w->cpu_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
    w->real_ns = clock_ns(CLOCK_MONOTONIC) - r0;
    return NULL;
}

struct run {
    const instance *in;
    const char *aggregate; /* NULL: one repetition, else "mean", "median", "stddev", "cv" */
    int repetition_index;
    uint64_t iterations;   /* summed over threads, as Google Benchmark reports them */
    double real, cpu;      /* ns per iteration; cv: a fraction */
    double real_s, cpu_s;  /* the run's real time averaged over threads, CPU time summed */
    double items;          /* items_per_second (items over summed CPU time), if op->items */
};

static run timed_run(const instance *in, uint64_t iters)
{
    int n = in->threads;
    worker *w = calloc((size_t)n, sizeof *w);
    if (!w)
        die("%s: out of memory", in->name);
    void *ctx = in->op->setup(in->op->param, in->threads);
    if (!ctx)
        die("%s: setup failed", in->name);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)n);
    /* As Google Benchmark: the calling thread is thread 0. */
    for (int i = 0; i < n; i++) {
        w[i] = (worker){ .start = &start, .op = in->op, .ctx = ctx, .iters = iters };
        if (i > 0 && pthread_create(&w[i].id, NULL, worker_main, &w[i]))
            die("%s: cannot start a thread", in->name);
    }
    worker_main(&w[0]);
    run r = { .in = in, .iterations = iters * (uint64_t)n };
    for (int i = 0; i < n; i++) {
        if (i > 0)
            pthread_join(w[i].id, NULL);
        r.real_s += w[i].real_ns / n / 1e9;
        r.cpu_s += w[i].cpu_ns / 1e9;
    }
    pthread_barrier_destroy(&start);
    free(w);
    in->op->teardown(ctx);
    r.real = r.real_s * 1e9 / (double)r.iterations;
    r.cpu = r.cpu_s * 1e9 / (double)r.iterations;
    if (in->op->items && r.cpu_s > 0)
        r.items = (double)r.iterations * in->op->items / r.cpu_s;
    return r;
}

/* Google Benchmark 1.7's rule: report once the summed CPU time reaches min_time (or the
   real time 5x it); else grow the count by min_time * 1.4 / elapsed, at most 10x while
   under a tenth of min_time. Later repetitions reuse the first one's count. */
static bool long_enough(const run *r, uint64_t iters)
{
    return iters >= MAX_ITERATIONS || r->cpu_s >= opt.min_time || r->real_s >= 5 * opt.min_time;
}

static uint64_t next_iters(const run *r, uint64_t iters)
{
    double m = opt.min_time * 1.4 / (r->cpu_s > 1e-9 ? r->cpu_s : 1e-9);
    if (r->cpu_s / opt.min_time <= 0.1)
        m = 10.0;
    double next = fmax(m * (double)iters, (double)iters + 1.0);
    return next >= (double)MAX_ITERATIONS ? MAX_ITERATIONS : (uint64_t)llround(next);
}

/* ---- statistics over repetitions (sample stddev, as Google Benchmark) ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double stat(const char *name, double *v, int n)
{
    double mean = 0, sq = 0;
    for (int i = 0; i < n; i++)
        mean += v[i] / n;
    if (!strcmp(name, "mean"))
        return mean;
    if (!strcmp(name, "median")) {
        qsort(v, (size_t)n, sizeof *v, cmp_double);
        return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    }
    for (int i = 0; i < n; i++)
        sq += (v[i] - mean) * (v[i] - mean);
    double sd = n > 1 ? sqrt(sq / (n - 1)) : 0;
    return !strcmp(name, "stddev") ? sd : n > 1 ? sd / mean : 0;
}

static const char *const aggregates[] = { "mean", "median", "stddev", "cv" };
#define NAGG (sizeof aggregates / sizeof aggregates[0])

/* ---- machine description: the "context" of Google Benchmark's output ---- */

typedef struct cache {
    char type[16];
    int level, num_sharing;
    long size;
} cache;

static struct {
    char date[32], host[256];
    int num_cpus;
    double mhz;
    bool scaling;
    cache caches[8];
    int ncaches;
    double load[3];
} ctx;

static bool read_line(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    bool ok = fgets(buf, (int)cap, f) != NULL;
    fclose(f);
    buf[strcspn(buf, "\n")] = '\0';
    return ok;
}

static int count_cpus_in_mask(const char *hex)
{
    static const char digits[] = "0123456789abcdef";
    int n = 0;
    for (; *hex; hex++) {
        const char *d = strchr(digits, tolower((unsigned char)*hex));
        if (d && *d)
            n += __builtin_popcount((unsigned)(d - digits));
    }
    return n;
}

static void read_context(void)
{
    time_t now = time(NULL);
    char tz[8];
    strftime(ctx.date, sizeof ctx.date, "%Y-%m-%dT%H:%M:%S", localtime(&now));
    strftime(tz, sizeof tz, "%z", localtime(&now));
    snprintf(ctx.date + strlen(ctx.date), sizeof ctx.date - strlen(ctx.date), "%.3s:%.2s", tz,
             tz + 3);
    if (gethostname(ctx.host, sizeof ctx.host))
        strcpy(ctx.host, "unknown");
    ctx.num_cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);

    char line[256];
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "cpu MHz", 7) && strchr(line, ':')) {
            ctx.mhz = atof(strchr(line, ':') + 1);
            break;
        }
    if (f)
        fclose(f);

    /* Google Benchmark: scaling is on if any CPU's governor is not "performance". */
    for (int c = 0; c < ctx.num_cpus; c++) {
        char path[96];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/cpufreq/scaling_governor", c);
        if (read_line(path, line, sizeof line) && strcmp(line, "performance"))
            ctx.scaling = true;
    }

    for (int i = 0; ctx.ncaches < 8; i++) {
        char dir[64], path[96];
        cache *c = &ctx.caches[ctx.ncaches];
        snprintf(dir, sizeof dir, "/sys/devices/system/cpu/cpu0/cache/index%d", i);
        snprintf(path, sizeof path, "%s/type", dir);
        if (!read_line(path, c->type, sizeof c->type))
            break;
        snprintf(path, sizeof path, "%s/level", dir);
        c->level = read_line(path, line, sizeof line) ? atoi(line) : 0;
        snprintf(path, sizeof path, "%s/size", dir);
        char *unit = NULL;
        c->size = read_line(path, line, sizeof line) ? strtol(line, &unit, 10) : 0;
        if (unit && (*unit == 'K' || *unit == 'M'))
            c->size *= *unit == 'K' ? 1024 : 1024 * 1024;
        snprintf(path, sizeof path, "%s/shared_cpu_map", dir);
        c->num_sharing = read_line(path, line, sizeof line) ? count_cpus_in_mask(line) : 1;
        ctx.ncaches++;
    }
    if (getloadavg(ctx.load, 3) != 3)
        ctx.load[0] = ctx.load[1] = ctx.load[2] = 0;
}

/* ---- reporters ---- */

typedef struct reporter {
    FILE *out, *err; /* err: where the console format puts the context (stderr on screen) */
    enum format format;
    bool first;
    int name_width;
    bool counters;   /* some benchmark reports items_per_second */
} reporter;

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", (unsigned char)*s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static bool is_percentage(const run *r)
{
    return r->aggregate && !strcmp(r->aggregate, "cv");
}

static const char *library_build_type(void)
{
#ifdef __OPTIMIZE__
    return "release";
#else
    return "debug";
#endif
}

static void report_context(reporter *r)
{
    if (r->format == FMT_CONSOLE) {
        fprintf(r->err, "%s\nRunning %s\nRun on (%d X %.2f MHz CPU s)\nCPU Caches:\n", ctx.date,
                executable, ctx.num_cpus, ctx.mhz);
        for (int i = 0; i < ctx.ncaches; i++) {
            const cache *c = &ctx.caches[i];
            fprintf(r->err, "  L%d %s %ld KiB (x%d)\n", c->level, c->type, c->size / 1024,
                    ctx.num_cpus / (c->num_sharing ? c->num_sharing : 1));
        }
        fprintf(r->err, "Load Average: %.2f, %.2f, %.2f\n", ctx.load[0], ctx.load[1], ctx.load[2]);
        if (ctx.scaling)
            fprintf(r->err, "***WARNING*** CPU scaling is enabled, the benchmark real time "
                            "measurements may be noisy and will incur extra overhead.\n");
        char head[256];
        int len = snprintf(head, sizeof head, "%-*s %13s %15s %12s%s", r->name_width, "Benchmark",
                           "Time", "CPU", "Iterations", r->counters ? " UserCounters..." : "");
        char rule[256];
        memset(rule, '-', (size_t)len);
        rule[len] = '\0';
        fprintf(r->out, "%s\n%s\n%s\n", rule, head, rule);
        return;
    }
    FILE *f = r->out;
    fprintf(f, "{\n  \"context\": {\n    \"date\": ");
    json_string(f, ctx.date);
    fprintf(f, ",\n    \"host_name\": ");
    json_string(f, ctx.host);
    fprintf(f, ",\n    \"executable\": ");
    json_string(f, executable);
    fprintf(f, ",\n    \"num_cpus\": %d,\n    \"mhz_per_cpu\": %.0f,\n", ctx.num_cpus, ctx.mhz);
    fprintf(f, "    \"cpu_scaling_enabled\": %s,\n    \"caches\": [\n",
            ctx.scaling ? "true" : "false");
    for (int i = 0; i < ctx.ncaches; i++) {
        const cache *c = &ctx.caches[i];
        fprintf(f, "      {\n        \"type\": ");
        json_string(f, c->type);
        fprintf(f, ",\n        \"level\": %d,\n        \"size\": %ld,\n        \"num_sharing\": %d\n"
                   "      }%s\n",
                c->level, c->size, c->num_sharing, i + 1 < ctx.ncaches ? "," : "");
    }
    fprintf(f, "    ],\n    \"load_avg\": [%g,%g,%g],\n", ctx.load[0], ctx.load[1], ctx.load[2]);
    fprintf(f, "    \"library_build_type\": \"%s\"\n  },\n  \"benchmarks\": [\n",
            library_build_type());
}

/* Google Benchmark's HumanReadableNumber: scaled by 1000 while over 1100, %g, a prefix. */
static void format_count(char *buf, size_t cap, double v)
{
    static const char prefix[] = "kMGTPE";
    int k = 0;
    while (v > 1100 && k < (int)sizeof prefix - 1) {
        v /= 1000;
        k++;
    }
    snprintf(buf, cap, "%g%.*s", v, k > 0, k > 0 ? &prefix[k - 1] : "");
}

static void format_time(char *buf, size_t cap, double t)
{
    snprintf(buf, cap, t < 1 ? "%10.3f" : t < 10 ? "%10.2f" : t < 100 ? "%10.1f" : "%10.0f", t);
}

static void report_run(reporter *r, const run *x)
{
    char name[160];
    snprintf(name, sizeof name, "%s%s%s", x->in->name, x->aggregate ? "_" : "",
             x->aggregate ? x->aggregate : "");
    if (r->format == FMT_CONSOLE) {
        char real[32], cpu[32];
        bool pct = is_percentage(x);
        format_time(real, sizeof real, pct ? x->real * 100 : x->real);
        format_time(cpu, sizeof cpu, pct ? x->cpu * 100 : x->cpu);
        fprintf(r->out, "%-*s %s %-4s %s %-4s %10llu", r->name_width, name, real,
                pct ? "%" : "ns", cpu, pct ? "%" : "ns", (unsigned long long)x->iterations);
        if (x->in->op->items) {
            char items[32];
            if (pct)
                snprintf(items, sizeof items, "%.2f%%", x->items * 100);
            else {
                format_count(items, sizeof items, x->items);
                strcat(items, "/s");
            }
            fprintf(r->out, " items_per_second=%s", items);
        }
        fputc('\n', r->out);
        return;
    }
    FILE *f = r->out;
    fprintf(f, "%s    {\n      \"name\": ", r->first ? "" : ",\n");
    r->first = false;
    json_string(f, name);
    fprintf(f, ",\n      \"family_index\": %d,\n      \"per_family_instance_index\": %d,\n",
            x->in->family_index, x->in->per_family_instance_index);
    fprintf(f, "      \"run_name\": ");
    json_string(f, x->in->name);
    fprintf(f, ",\n      \"run_type\": \"%s\",\n      \"repetitions\": %d,\n",
            x->aggregate ? "aggregate" : "iteration", opt.repetitions);
    if (!x->aggregate)
        fprintf(f, "      \"repetition_index\": %d,\n", x->repetition_index);
    fprintf(f, "      \"threads\": %d,\n", x->in->threads);
    if (x->aggregate)
        fprintf(f, "      \"aggregate_name\": \"%s\",\n      \"aggregate_unit\": \"%s\",\n",
                x->aggregate, is_percentage(x) ? "percentage" : "time");
    fprintf(f, "      \"iterations\": %llu,\n      \"real_time\": %.16e,\n"
               "      \"cpu_time\": %.16e,\n      \"time_unit\": \"ns\"",
            (unsigned long long)x->iterations, x->real, x->cpu);
    if (x->in->op->items)   /* a counter: after time_unit, as Google Benchmark */
        fprintf(f, ",\n      \"items_per_second\": %.16e", x->items);
    fprintf(f, "\n    }");
}

static void report_finish(reporter *r)
{
    if (r->format == FMT_JSON)
        fprintf(r->out, "\n  ]\n}\n");
    fflush(r->out);
}

/* ---- main ---- */

static void run_repetition(instance *in)
{
    if (!in->runs && !(in->runs = calloc((size_t)opt.repetitions + NAGG, sizeof *in->runs)))
        die("%s: out of memory", in->name);
    uint64_t iters = in->done ? in->iters : opt.fixed_iters ? opt.fixed_iters : 1;
    run r = timed_run(in, iters);
    while (!in->done && !opt.fixed_iters && !long_enough(&r, iters)) {
        iters = next_iters(&r, iters);
        r = timed_run(in, iters);
    }
    in->iters = iters;
    r.repetition_index = in->done;
    in->runs[in->done++] = r;
}

static void report_instance(instance *in, reporter **reps, int nrep)
{
    int n = in->done;
    double *real = malloc((size_t)n * sizeof *real), *cpu = malloc((size_t)n * sizeof *cpu);
    double *items = malloc((size_t)n * sizeof *items);
    if (!real || !cpu || !items)
        die("%s: out of memory", in->name);
    for (int i = 0; i < n; i++) {
        real[i] = in->runs[i].real;
        cpu[i] = in->runs[i].cpu;
        items[i] = in->runs[i].items;
    }
    int nagg = n > 1 ? (int)NAGG : 0;
    for (int a = 0; a < nagg; a++)
        in->runs[n + a] = (run){ .in = in, .aggregate = aggregates[a], .iterations = (uint64_t)n,
                                 .real = stat(aggregates[a], real, n),
                                 .cpu = stat(aggregates[a], cpu, n),
                                 /* as Google Benchmark: statistics of the runs' rates */
                                 .items = stat(aggregates[a], items, n) };
    /* With aggregates only, the repetitions are left out (unless there are no aggregates). */
    int from = opt.aggregates_only && nagg ? n : 0;
    for (int k = 0; k < nrep; k++) {
        for (int i = from; i < n + nagg; i++)
            report_run(reps[k], &in->runs[i]);
        fflush(reps[k]->out);
    }
    free(in->runs);
    free(real);
    free(cpu);
    free(items);
}

/* The order repetitions run in: each instance's in turn, or, with random interleaving,
   all of them shuffled (Fisher-Yates), so that a machine whose load drifts during the run
   spreads the drift over every benchmark instead of the few that ran at the time. */
static size_t *repetition_order(size_t n)
{
    size_t total = n * (size_t)opt.repetitions, *order = malloc(total * sizeof *order);
    if (!order)
        die("%s", "out of memory");
    for (size_t i = 0; i < total; i++)
        order[i] = i / (size_t)opt.repetitions;
    uint64_t x = ((uint64_t)time(NULL) ^ (uint64_t)getpid() << 32) | 1; /* xorshift: never 0 */
    for (size_t i = total; opt.interleave && i > 1; i--) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
        size_t j = (size_t)(x % i), tmp = order[i - 1];
        order[i - 1] = order[j];
        order[j] = tmp;
    }
    return order;
}

int main(int argc, char **argv)
{
    executable = argv[0];
    parse_args(argc, argv);
    bench_init();
    int ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
    instance *ins = calloc(bench_ops_count * MAX_THREAD_COUNTS, sizeof *ins);
    if (!ins)
        die("%s", "out of memory");
    size_t n = select_instances(ins, ncpu < 1 ? 1 : ncpu);
    if (opt.list_tests) {
        for (size_t i = 0; i < n; i++)
            puts(ins[i].name);
        return 0;
    }
    if (n == 0) {
        fprintf(stderr, "Failed to match any benchmarks against regex: %s\n", opt.filter);
        return 1;
    }
    read_context();

    int width = 10;
    for (size_t i = 0; i < n; i++)
        if ((int)strlen(ins[i].name) > width)
            width = (int)strlen(ins[i].name);
    if (opt.repetitions > 1)
        width += 1 + 6; /* "_median", "_stddev" */

    bool counters = false;
    for (size_t i = 0; i < n; i++)
        counters |= ins[i].op->items != 0;
    reporter display = { stdout, stderr, opt.format, true, width, counters }, file = { 0 };
    reporter *reps[2] = { &display, &file };
    int nrep = 1;
    if (opt.out) {
        FILE *f = fopen(opt.out, "w");
        if (!f)
            die("cannot open --benchmark_out file %s", opt.out);
        file = (reporter){ f, f, opt.out_format, true, width, counters };
        nrep = 2;
    }
    for (int k = 0; k < nrep; k++)
        report_context(reps[k]);
    size_t *order = repetition_order(n);
    for (size_t i = 0; i < n * (size_t)opt.repetitions; i++) {
        instance *in = &ins[order[i]];
        run_repetition(in);
        if (in->done == opt.repetitions)
            report_instance(in, reps, nrep);
    }
    free(order);
    for (int k = 0; k < nrep; k++)
        report_finish(reps[k]);
    if (opt.out && fclose(file.out))
        die("cannot write %s", opt.out);
    free(ins);
    return 0;
}
