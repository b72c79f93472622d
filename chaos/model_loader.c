/* model_loader - loads a model file again and again, each load protected by cb.h.

   Each load runs in a child process under an address-space limit (setrlimit RLIMIT_AS):
   the child maps the whole file into malloc'd memory and checks its CRC-32, so a budget
   too small for the model is a real ENOMEM from malloc, and a failure. The budget is read
   before each load from the control file (MiB of address space the load may add to what
   the child already has; no file means no limit), so a harness can take memory away and
   give it back while the loader runs.

   Model file: "CBMODEL1", payload length (u64 LE), CRC-32 of the payload (u32 LE), 4 zero
   bytes, payload.

   Each child that starts a load first appends {"t_ns","pid"} to the witness file: an
   account of the loads kept by the dependency side, not by the breaker's caller. */
#define _GNU_SOURCE
#define CB_IMPLEMENTATION
#include "../cb.h"

#include "workload.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static struct {
    const char *model, *control, *witness, *log;
    uint32_t rate, duration_ms, timeout_ms;
} opt = {NULL, NULL, NULL, NULL, 10, 5000, 5000};

static const wl_opt opts[] = {
    {"model", WL_STR, &opt.model, "model file to load (required)"},
    {"control", WL_STR, &opt.control, "file holding the memory budget in MiB (default: no limit)"},
    {"witness", WL_STR, &opt.witness, "file each load child appends a line to (default: none)"},
    {"rate", WL_U32, &opt.rate, "loads per second (default 10)"},
    {"duration-ms", WL_U32, &opt.duration_ms, "how long to run (default 5000)"},
    {"timeout-ms", WL_U32, &opt.timeout_ms, "a load taking longer is killed and fails (default 5000)"},
    {"log", WL_STR, &opt.log, "JSON-lines log file (default stdout)"},
};

/* Child exit statuses. */
enum { LOAD_OK = 0, LOAD_ENOMEM = 10, LOAD_IO = 11, LOAD_CORRUPT = 12, LOAD_LIMIT = 13 };

static uint32_t crc_table[256];

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc32_of(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    while (n--)
        c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static uint64_t le(const unsigned char *p, int n) {
    uint64_t v = 0;
    while (n--)
        v = v << 8 | p[n];
    return v;
}

static bool read_all(int fd, void *buf, size_t n) {
    for (size_t got = 0; got < n;) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r <= 0)
            return false;
        got += (size_t)r;
    }
    return true;
}

/* In the child: limit the address space, then load and check the model. */
static int load(int64_t budget_mib) {
    if (budget_mib >= 0) {
        long pages = 0;
        FILE *f = fopen("/proc/self/statm", "r");
        if (!f || fscanf(f, "%ld", &pages) != 1)
            return LOAD_LIMIT;
        fclose(f);
        rlim_t lim = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (rlim_t)budget_mib * 1048576u;
        struct rlimit rl = {lim, lim};
        if (setrlimit(RLIMIT_AS, &rl) != 0)
            return LOAD_LIMIT;
    }
    if (opt.witness) {
        char line[96];
        int n = snprintf(line, sizeof line, "{\"t_ns\":%" PRIu64 ",\"pid\":%d}\n", wl_now_ns(),
                         (int)getpid());
        int fd = open(opt.witness, O_WRONLY | O_APPEND | O_CREAT, 0644);
        if (fd < 0 || write(fd, line, (size_t)n) != n)
            return LOAD_IO;
        close(fd);
    }
    unsigned char hdr[24];
    int fd = open(opt.model, O_RDONLY);
    if (fd < 0 || !read_all(fd, hdr, sizeof hdr))
        return LOAD_IO;
    uint64_t len = le(hdr + 8, 8);
    struct stat st;
    if (memcmp(hdr, "CBMODEL1", 8) != 0 || fstat(fd, &st) != 0 || len != (uint64_t)st.st_size - 24)
        return LOAD_CORRUPT;
    unsigned char *w = malloc(len);
    if (!w)
        return errno == ENOMEM ? LOAD_ENOMEM : LOAD_IO;
    if (!read_all(fd, w, len))
        return LOAD_IO;
    return crc32_of(w, len) == (uint32_t)le(hdr + 16, 4) ? LOAD_OK : LOAD_CORRUPT;
}

/* The budget in MiB from the control file; -1 for no limit. Exits on a bad file. */
static int64_t read_budget(void) {
    if (!opt.control)
        return -1;
    FILE *f = fopen(opt.control, "r");
    if (!f) {
        if (errno == ENOENT)
            return -1;
        fprintf(stderr, "model_loader: --control=%s: %s\n", opt.control, strerror(errno));
        exit(2);
    }
    char buf[64] = "";
    uint64_t v;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    if (!cbflags__unsigned(buf, INT64_MAX / 1048576, &v)) {
        fprintf(stderr, "model_loader: --control=%s: bad budget '%s' (want MiB, an integer)\n",
                opt.control, buf);
        exit(2);
    }
    return (int64_t)v;
}

/* Runs one load in a child; returns its exit status, or -1 with *err set. */
static int run_child(int64_t budget, const char **err) {
    pid_t pid = fork();
    if (pid < 0) {
        *err = "fork";
        return -1;
    }
    if (pid == 0)
        _exit(load(budget));
    uint64_t deadline = wl_now_ns() + (uint64_t)opt.timeout_ms * 1000000u;
    int st;
    pid_t r;
    while ((r = waitpid(pid, &st, WNOHANG)) == 0 && wl_now_ns() < deadline)
        wl_sleep_ms(1);
    if (r == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        *err = "timeout";
        return -1;
    }
    if (!WIFEXITED(st)) {
        *err = "killed by a signal";
        return -1;
    }
    static const char *names[] = {[LOAD_ENOMEM] = "enomem", [LOAD_IO] = "io error",
                                  [LOAD_CORRUPT] = "bad model file", [LOAD_LIMIT] = "setrlimit"};
    int code = WEXITSTATUS(st);
    *err = code == LOAD_OK ? ""
           : code < (int)(sizeof names / sizeof names[0]) && names[code] ? names[code] : "exit status";
    return code;
}

int main(int argc, char **argv) {
    cb_config cfg = {0};
    int rc = wl_parse_args(argc, argv, "model_loader",
                           "Loads a model in a child under RLIMIT_AS, each load protected by a cb.h breaker.",
                           opts, sizeof opts / sizeof opts[0], &cfg);
    if (rc >= 0)
        return rc;
    if (!opt.model) {
        fprintf(stderr, "model_loader: --model=FILE is required\n");
        return 2;
    }
    if (!opt.rate || !opt.timeout_ms) {
        fprintf(stderr, "model_loader: %s: want > 0\n", opt.rate ? "--timeout-ms" : "--rate");
        return 2;
    }
    if (!cfg.name)
        cfg.name = "model";
    cb_breaker *b = wl_breaker("model_loader", &cfg);
    if (!b)
        return 2;
    if (wl_dry_run)
        return wl_print_resolved(opts, sizeof opts / sizeof opts[0], b);
    if (access(opt.model, R_OK) != 0) {
        fprintf(stderr, "model_loader: --model=%s: %s\n", opt.model, strerror(errno));
        return 2;
    }
    read_budget(); /* a bad control file is reported before anything runs */
    if (!wl_log_open(opt.log)) {
        fprintf(stderr, "model_loader: --log=%s: %s\n", opt.log, strerror(errno));
        return 2;
    }
    crc_init();

    wl_tally tally = {0};
    uint64_t start = wl_now_ns(), end = start + (uint64_t)opt.duration_ms * 1000000u;
    uint64_t interval = 1000000000u / opt.rate, next = start;
    wl_log("{\"t_ns\":%" PRIu64 ",\"event\":\"start\",\"rate\":%u,\"timeout_ms\":%u}", start,
           opt.rate, opt.timeout_ms);
    while (wl_now_ns() < end) {
        wl_sleep_until(next);
        next += interval;
        int64_t budget = read_budget();
        const char *err = "";
        cb_ticket t;
        enum wl_outcome o;
        uint64_t t0 = wl_now_ns();
        if (!cb_allow(b, &t)) {
            o = WL_REJECTED;
        } else {
            o = run_child(budget, &err) == LOAD_OK ? WL_OK : WL_FAIL;
            cb_record(b, &t, o == WL_OK ? CB_SUCCESS : CB_FAILURE);
        }
        uint64_t lat = wl_now_ns() - t0;
        wl_tally_add(&tally, o, lat);
        wl_log("{\"t_ns\":%" PRIu64 ",\"thread\":0,\"op\":\"load\",\"outcome\":\"%s\",\"latency_ns\":%" PRIu64
               ",\"state\":\"%s\",\"budget_mib\":%" PRId64 "%s%s%s}",
               t0, wl_outcome_name[o], lat, cb_state_name(cb_get_state(b)), budget,
               *err ? ",\"error\":\"" : "", err, *err ? "\"" : "");
        if (next < wl_now_ns())
            next = wl_now_ns(); /* a slow load: no catch-up burst */
    }
    wl_summary("model_loader", &tally, NULL, b);
    wl_log_close();
    wl_tally_free(&tally);
    cb_free(b);
    return 0;
}
