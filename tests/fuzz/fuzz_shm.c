/* fuzz_shm.c - libFuzzer target: arbitrary file contents given to cb_shm_open and
   cb_shm_attach.

   Both must answer CB_OK, CB_EMISMATCH or CB_ECORRUPT for any bytes in an existing file,
   never crash; a breaker they accept is then driven (calls, manual transitions, clock
   jumps, stats, history, export) under AddressSanitizer and UBSan.

   Input: byte 0 holds flags, byte 1 the number K of operation bytes that follow, and the
   rest is the file. Flags: bits 1-2 pick the config; bit 3 opens with cb_shm_attach
   (config from the file) instead of cb_shm_open; bit 0 picks the mode:
     raw mode    (0) the whole file, byte for byte, so files shorter than a header and
                 files never published (no ready mark) are reached too: cb_shm_open
                 finishes them, cb_shm_attach finds them corrupt; with bit 5 set the
                 file is padded with zeros to a header and its ready mark is set, so
                 that a damaged header is judged as published;
     state mode  (1) the bytes are laid over a valid block of the config, from the ready
                 mark on, and the ready mark is set, so that damaged state is reached and
                 not only damaged headers (a random header never passes the checksum);
                 with bit 4 set they are laid from the stored config on and the checksum
                 is made to match, so that any config a file can hold reaches
                 cb_shm_attach's checks.
     live mode   (bit 6) a valid block of the config is opened, and the rest of the input
                 is a stream of writes made into the mapping while it is in use: after
                 each operation, 3 bytes (a 16-bit offset scaled to the block, a value)
                 land anywhere in the file, static header included, as a second writer
                 scribbling over a live file would. Nothing may crash or hang.
   No input waits: an opener waits only for a creator that holds the file's lock, and
   none does here; CB_SHM_WAIT_MS is cut to 20 ms all the same, so that a regression
   there costs 20 ms an input, not 2 s.

   Build with -DFUZZ_SHM_MAKE_CORPUS (no -fsanitize=fuzzer) for a program that writes the
   seed corpus: fuzz_shm_corpus DIR. */
#define _DEFAULT_SOURCE
#ifndef CB_SHM_WAIT_MS
#define CB_SHM_WAIT_MS 20
#endif
#define CB_IMPLEMENTATION
#include "cb.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static uint64_t fuzz_clock_ns;
static uint64_t fuzz_clock(void *user) { (void)user; return fuzz_clock_ns; }
#define FUZZ_T0 1000000000000ull   /* 1000 s */

static const cb_config configs[4] = {
    { .name = "fz", .consecutive_failures = 3, .open_ms = 100, .probe_timeout_ms = 50,
      .half_open_calls = 2 },
    { .name = "fz-count", .window_calls = 16, .minimum_calls = 4, .failure_rate = 0.5,
      .slow_call_ms = 5, .slow_call_rate = 0.5, .max_concurrent = 3, .backoff = 2, .jitter = 0.3 },
    { .name = "fz-time", .window_ms = 1000, .window_buckets = 10, .failures_in_window = 5,
      .open_ms = 10 },
    { .name = "fz", .consecutive_failures = 3, .open_ms = 100, .probe_timeout_ms = 50,
      .half_open_calls = 2 },
};

static cb_config config(unsigned i)
{
    cb_config c = configs[i & 3];
    c.clock_ns = fuzz_clock;
    return c;
}

#define READY_AT offsetof(cb__shared, ready)

/* The file's path and a valid block per config, made once. */
static char path[64];
static unsigned char *block[4];
static size_t block_len[4];

static void die(const char *what)
{
    perror(what);
    abort();
}

static void write_file(const unsigned char *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || (n && write(fd, p, n) != (ssize_t)n))
        die(path);
    close(fd);
}

static void setup(void)
{
    if (path[0])
        return;
    snprintf(path, sizeof path, "/dev/shm/fuzz_shm.%d.cb", (int)getpid());
    if (access("/dev/shm", W_OK) != 0)
        snprintf(path, sizeof path, "/tmp/fuzz_shm.%d.cb", (int)getpid());
    for (unsigned i = 0; i < 4; i++) {
        cb_config c = config(i);
        cb_err e;
        struct stat st;
        unlink(path);
        fuzz_clock_ns = FUZZ_T0;
        cb_breaker *b = cb_shm_open(path, &c, &e);
        int fd = open(path, O_RDONLY);
        if (!b || fd < 0 || fstat(fd, &st) != 0)
            die("setup");
        block_len[i] = (size_t)st.st_size;
        block[i] = malloc(block_len[i]);
        if (!block[i] || read(fd, block[i], block_len[i]) != (ssize_t)block_len[i])
            die("setup read");
        close(fd);
        cb_shm_close(b);
    }
}

__attribute__((destructor)) static void cleanup(void)
{
    if (path[0])
        unlink(path);
}

/* One operation byte: the low 3 bits pick it, the rest is its argument. */
static void run_op(cb_breaker *b, uint8_t op, cb_ticket *held, unsigned *nheld)
{
    unsigned arg = op >> 3;
    cb_ticket t;
    cb_stats s;
    char buf[4096];
    cb_event ev[CB_HISTORY];
    switch (op & 7) {
    case 0: case 1: case 2:   /* a call with this outcome */
        if (cb_allow(b, &t))
            cb_record(b, &t, (cb_outcome)(op & 7));
        break;
    case 3:                   /* admit and hold, or record the oldest held */
        if (*nheld < 4 && arg % 2 == 0) {
            if (cb_allow(b, &held[*nheld]))
                (*nheld)++;
        } else if (*nheld)
            cb_record(b, &held[--*nheld], (cb_outcome)(arg % 3));
        break;
    case 4:
        cb_set_state(b, (cb_state)(arg % 6));
        break;
    case 5:                   /* the clock moves 1 us << arg (up to ~18 min), or back */
        if (arg == 31)
            fuzz_clock_ns -= 1000000;
        else
            fuzz_clock_ns += 1000ull << arg;
        break;
    case 6:
        cb_stats_get(b, &s);
        cb_history(b, ev, CB_HISTORY);
        cb_retry_after_ms(b);
        cb_format_json(b, buf, arg % 2 ? sizeof buf : arg);   /* sometimes truncated */
        cb_format_prometheus(&b, 1, buf, arg % 2 ? sizeof buf : arg * 8);
        break;
    case 7:
        cb_reset(b);
        break;
    }
}

enum { F_STATE = 1, F_ATTACH = 8, F_CONFIG = 16, F_PAD = 32, F_LIVE = 64 };

/* Live mode: the next write of the stream into the mapping, if any is left. */
static void scribble(cb_breaker *b, size_t len, const uint8_t **w, size_t *wn)
{
    if (*wn < 3)
        return;
    size_t off = ((size_t)(*w)[0] << 8 | (*w)[1]) * len >> 16;
    ((volatile unsigned char *)b->cb__sh)[off] = (*w)[2];
    *w += 3;
    *wn -= 3;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    if (size < 2)
        return 0;
    unsigned flags = data[0], ci = (flags >> 1) & 3;
    size_t nops = data[1] < size - 2 ? data[1] : size - 2;
    const uint8_t *ops = data + 2, *file = ops + nops;
    size_t flen = size - 2 - nops;

    bool live = flags & F_LIVE;
    if (live)
        flags = (flags | F_STATE) & ~(unsigned)F_CONFIG;   /* a valid block, written to later */
    const uint8_t *writes = file;
    size_t nwrites = live ? flen : 0;
    if (live)
        flen = 0;
    bool pad = !(flags & F_STATE) && (flags & F_PAD);
    size_t len = flags & F_STATE ? block_len[ci] : pad && flen < sizeof(cb__shared) ? sizeof(cb__shared) : flen;
    size_t at = flags & F_STATE ? (flags & F_CONFIG ? offsetof(cb__shared, cfg) : READY_AT) : 0;
    unsigned char *img = calloc(1, len + 1);
    if (!img)
        return 0;
    if (flags & F_STATE)
        memcpy(img, block[ci], len);
    memcpy(img + at, file, flen < len - at ? flen : len - at);
    uint64_t one = 1;
    if ((flags & F_STATE) || pad)
        memcpy(img + READY_AT, &one, sizeof one);   /* published: see the top */
    if ((flags & F_STATE) && (flags & F_CONFIG)) {
        cb__shared *sh = (cb__shared *)(void *)img;
        sh->checksum = cb__static_hash(sh);
    }
    write_file(img, len);
    free(img);

    cb_config c = config(ci);
    cb_err e = CB_OK;
    fuzz_clock_ns = FUZZ_T0;
    cb_breaker *b = flags & F_ATTACH ? cb_shm_attach(path, &e) : cb_shm_open(path, &c, &e);
    if (!b) {
        if (e != CB_EMISMATCH && e != CB_ECORRUPT) {
            fprintf(stderr, "fuzz_shm: the open answered %s\n", cb_strerror(e));
            abort();
        }
        return 0;
    }
    cb_ticket held[4];
    unsigned nheld = 0;
    for (size_t i = 0; i < nops; i++) {
        run_op(b, ops[i], held, &nheld);
        scribble(b, len, &writes, &nwrites);
    }
    while (nheld)
        cb_record(b, &held[--nheld], CB_SUCCESS);
    run_op(b, 6 | 8, held, &nheld);   /* always read everything back once */
    cb_shm_close(b);
    return 0;
}

#ifdef FUZZ_SHM_MAKE_CORPUS
/* Seeds: real breakers of each config in several states (state mode, the dynamic part
   with its trailing zeros cut), and a few files (raw mode): a whole one, one with a
   damaged header, one cut short and one never published (as dead creators leave them),
   a text file and an empty one. */
static void seed(const char *dir, const char *name, uint8_t head, const uint8_t *ops, size_t nops,
                 const unsigned char *file, size_t flen)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    uint8_t h[2] = { head, (uint8_t)nops };
    if (!f || fwrite(h, 1, 2, f) != 2 || fwrite(ops, 1, nops, f) != nops ||
        fwrite(file, 1, flen, f) != flen || fclose(f) != 0)
        die(p);
}

int main(int argc, char **argv)
{
    static const struct { const char *name; uint8_t ops[16]; size_t n; } states[] = {
        { "fresh", { 0 }, 0 },
        { "open", { 1, 1, 1, 1, 1 }, 5 },
        { "half-open-held", { 1, 1, 1, 1, 5 | 17 << 3, 3 }, 6 },
        { "mixed", { 0, 0, 1, 2, 0, 1, 1, 1, 0, 5 | 12 << 3, 4 | 3 << 3, 7, 0, 1 }, 14 },
    };
    static const uint8_t read_ops[] = { 6 | 8, 0, 1, 5 | 17 << 3, 0, 6 | 8 };
    if (argc != 2) {
        fprintf(stderr, "usage: fuzz_shm_corpus DIR\n");
        return 2;
    }
    setup();
    for (unsigned ci = 0; ci < 3; ci++) {
        for (size_t s = 0; s < sizeof states / sizeof states[0]; s++) {
            if (ci > 0 && s % 2 == 0)
                continue;   /* the windowed configs' seeds are ~11 KB: the telling ones only */
            cb_config c = config(ci);
            cb_err e;
            cb_ticket held[4];
            unsigned nheld = 0;
            unlink(path);
            fuzz_clock_ns = FUZZ_T0;
            cb_breaker *b = cb_shm_open(path, &c, &e);
            if (!b)
                die("corpus");
            for (size_t i = 0; i < states[s].n; i++)
                run_op(b, states[s].ops[i], held, &nheld);
            const unsigned char *m = (const unsigned char *)b->cb__sh;
            size_t end = block_len[ci];
            while (end > READY_AT && m[end - 1] == 0)
                end--;
            char name[64];
            snprintf(name, sizeof name, "state-%s-%s", configs[ci].name, states[s].name);
            seed(argv[1], name, (uint8_t)(F_STATE | ci << 1), read_ops, sizeof read_ops,
                 m + READY_AT, end - READY_AT);
            if (s == 3) {   /* the same through cb_shm_attach, and with the config fuzzed */
                snprintf(name, sizeof name, "attach-%s-%s", configs[ci].name, states[s].name);
                seed(argv[1], name, (uint8_t)(F_STATE | F_ATTACH | ci << 1), read_ops,
                     sizeof read_ops, m + READY_AT, end - READY_AT);
                size_t cfg_at = offsetof(cb__shared, cfg);
                snprintf(name, sizeof name, "config-%s-%s", configs[ci].name, states[s].name);
                seed(argv[1], name, (uint8_t)(F_STATE | F_CONFIG | F_ATTACH | ci << 1), read_ops,
                     sizeof read_ops, m + cfg_at, end - cfg_at);
            }
            if (s == 3) {   /* the mixed calls again, with writes into the live mapping */
                uint8_t w[3 * 16];
                for (size_t i = 0; i < sizeof w; i++)
                    w[i] = (uint8_t)(cb__splitmix(ci * 1000 + i) >> 56);
                snprintf(name, sizeof name, "live-%s-%s", configs[ci].name, states[s].name);
                seed(argv[1], name, (uint8_t)(F_LIVE | ci << 1), states[s].ops, states[s].n, w, sizeof w);
            }
            if (s == 1 && ci == 0) {   /* a whole real file, and damaged or unfinished ones */
                snprintf(name, sizeof name, "raw-%s-open", configs[ci].name);
                seed(argv[1], name, (uint8_t)(ci << 1), read_ops, sizeof read_ops, m, block_len[ci]);
                unsigned char *copy = malloc(block_len[ci]);
                memcpy(copy, m, block_len[ci]);
                copy[offsetof(cb__shared, cfg) + 1] ^= 1;   /* a header byte, padded and published */
                snprintf(name, sizeof name, "raw-%s-damaged", configs[ci].name);
                seed(argv[1], name, (uint8_t)(F_PAD | ci << 1), read_ops, sizeof read_ops, copy, 512);
                memcpy(copy, m, block_len[ci]);   /* cut short of a header by a dead creator */
                snprintf(name, sizeof name, "raw-%s-short", configs[ci].name);
                seed(argv[1], name, (uint8_t)(ci << 1), read_ops, sizeof read_ops, copy, 100);
                memset(copy + READY_AT, 0, sizeof(uint64_t));   /* whole, never published */
                snprintf(name, sizeof name, "raw-%s-unready", configs[ci].name);
                seed(argv[1], name, (uint8_t)(ci << 1), read_ops, sizeof read_ops, copy, block_len[ci]);
                snprintf(name, sizeof name, "raw-attach-%s-unready", configs[ci].name);
                seed(argv[1], name, (uint8_t)(F_ATTACH | ci << 1), read_ops, sizeof read_ops, copy,
                     block_len[ci]);
                free(copy);
            }
            cb_shm_close(b);
        }
    }
    static const char text[] = "not a breaker file\n";
    seed(argv[1], "raw-text", 0, read_ops, 0, (const unsigned char *)text, sizeof text - 1);
    seed(argv[1], "raw-empty", 0, read_ops, sizeof read_ops, (const unsigned char *)text, 0);
    unlink(path);
    return 0;
}
#endif
