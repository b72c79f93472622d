/* Many processes on one shared breaker (cb_shm_open), measured:
   - the accounting identity stays exact while waves of processes hammer the breaker
     and another process moves it by hand;
   - a process SIGKILLed while it holds a half-open probe permit never wedges it: the
     round times out, the breaker re-opens and recovers; the worst recovery time is
     compared with probe_timeout_ms + open_ms;
   - processes SIGKILLed at random points of their calls leave a breaker that recovers;
   - with max_concurrent, the bulkhead places of processes SIGKILLed in a call come back
     about a second later, while the places of live processes are never taken away.
   Sizes come from the environment: SHM_PROCS, SHM_THREADS, SHM_CALLS, SHM_WAVES,
   SHM_KILLS, SHM_RANDOM_KILLS, SHM_BULKHEAD_ROUNDS. The figures are printed as
   "figure:" lines. */
#define _DEFAULT_SOURCE   /* MAP_ANONYMOUS */
#define CB_IMPLEMENTATION
#include "cb.h"
#include "tests/t.h"

#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

static unsigned t_env(const char *name, unsigned dflt)
{
    const char *v = getenv(name);
    return v && *v ? (unsigned)strtoul(v, NULL, 10) : dflt;
}

static char t_file[64];

static const char *t_make_path(void)
{
    snprintf(t_file, sizeof t_file, "/tmp/cb-shm-cross.%d.cb", (int)getpid());
    unlink(t_file);
    return t_file;
}

__attribute__((destructor)) static void t_remove_file(void)
{
    if (t_file[0])
        unlink(t_file);
}

static uint64_t t_now(void) { return cb__mono_ns(); }

static void t_sleep_us(long us)
{
    struct timespec ts = { us / 1000000, (us % 1000000) * 1000 };
    nanosleep(&ts, NULL);
}

static cb_breaker *t_attach(const char *path, const cb_config *cfg)
{
    cb_err e;
    cb_breaker *b = cb_shm_open(path, cfg, &e);
    if (!b) {
        fprintf(stderr, "cb_shm_open(%s): %s\n", path, cb_strerror(e));
        _exit(3);
    }
    return b;
}

static int t_wait(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        ;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ---- accounting ------------------------------------------------------------------- */

/* Trips often and recovers fast, so calls meet every state and many stale tickets. */
static const cb_config t_busy = { .name = "cross", .window_calls = 20, .failure_rate = 0.5,
                                  .minimum_calls = 10, .open_ms = 1, .probe_timeout_ms = 5,
                                  .half_open_calls = 3, .max_concurrent = 48 };

typedef struct hammer {
    const char *path;
    unsigned calls;
    uint64_t seed;
    uint64_t allows;   /* out: cb_allow calls made */
} hammer;

/* Random outcomes; up to 4 calls held open across others, so some records are stale. */
static void *t_hammer(void *arg)
{
    hammer *h = arg;
    cb_breaker *b = t_attach(h->path, &t_busy);
    cb_ticket held[4];
    unsigned nheld = 0;
    uint64_t x = h->seed;
    for (unsigned i = 0; i < h->calls; i++) {
        cb_ticket t;
        for (int k = 0; k < 32; k++)   /* some work per call: more transitions per call */
            x = cb__splitmix(x);
        h->allows++;
        if (!cb_allow(b, &t))
            continue;
        unsigned r = (unsigned)(x % 100);
        if (r < 10 && nheld < 4) {
            held[nheld++] = t;
            continue;
        }
        cb_record(b, &t, r < 45 ? CB_FAILURE : r < 93 ? CB_SUCCESS : CB_IGNORED);
        if (nheld && r % 2)
            cb_record(b, &held[--nheld], (x >> 8) % 2 ? CB_SUCCESS : CB_FAILURE);
    }
    while (nheld)
        cb_record(b, &held[--nheld], CB_SUCCESS);
    cb_shm_close(b);
    return NULL;
}

/* Moves the breaker by hand to any state that keeps the identity (DISABLED records
   nothing, so it stays out) until told to stop. */
static void t_controller(const char *path, _Atomic int *stop)
{
    static const cb_state states[] = { CB_CLOSED, CB_OPEN, CB_HALF_OPEN, CB_FORCED_OPEN,
                                       CB_METRICS_ONLY, CB_CLOSED };
    cb_breaker *b = t_attach(path, &t_busy);
    for (unsigned i = 0; !atomic_load(stop); i++) {
        cb_set_state(b, states[cb__splitmix(i) % 6]);
        t_sleep_us(2000 + (long)(cb__splitmix(i + 99) % 8000));
    }
    cb_reset(b);
    cb_shm_close(b);
}

TEST(the_accounting_identity_is_exact_across_processes)
{
    unsigned procs = t_env("SHM_PROCS", 8), threads = t_env("SHM_THREADS", 2);
    unsigned calls = t_env("SHM_CALLS", 200000), waves = t_env("SHM_WAVES", 3);
    const char *path = t_make_path();
    cb_breaker *b = t_attach(path, &t_busy);
    /* shared with the children: how many cb_allow calls each made, and a stop flag */
    struct { _Atomic uint64_t allows; _Atomic int stop; } *sh =
        mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(sh != MAP_FAILED);
    fflush(NULL);
    pid_t ctl = fork();
    if (ctl == 0) {
        t_controller(path, &sh->stop);
        _exit(0);
    }
    uint64_t t0 = t_now();
    int bad = 0;
    for (unsigned w = 0; w < waves; w++) {   /* later waves reuse the stripes of dead ones */
        pid_t kids[256];
        for (unsigned p = 0; p < procs && p < 256; p++) {
            if ((kids[p] = fork()) == 0) {
                hammer h[16];
                pthread_t th[16];
                unsigned n = threads < 16 ? threads : 16;
                uint64_t sum = 0;
                for (unsigned i = 0; i < n; i++) {
                    h[i] = (hammer){ path, calls, (uint64_t)w << 40 | p << 20 | i, 0 };
                    pthread_create(&th[i], NULL, t_hammer, &h[i]);
                }
                for (unsigned i = 0; i < n; i++) {
                    pthread_join(th[i], NULL);
                    sum += h[i].allows;
                }
                atomic_fetch_add(&sh->allows, sum);
                _exit(0);
            }
        }
        for (unsigned p = 0; p < procs && p < 256; p++)
            bad += t_wait(kids[p]) != 0;
    }
    atomic_store(&sh->stop, 1);
    bad += t_wait(ctl) != 0;
    double secs = (double)(t_now() - t0) / 1e9;
    CHECK_EQ(bad, 0);
    cb_stats s = t_stats(b);
    uint64_t allows = atomic_load(&sh->allows);
    uint64_t done = s.successes + s.failures + s.ignored + s.stale;
    CHECK_EQ(allows, (uint64_t)procs * threads * calls * waves);
    CHECK_EQ(s.admitted + s.rejected, allows);
    CHECK_EQ(s.admitted, done);
    CHECK_EQ(s.in_flight, 0);
    printf("figure: accounting: %u waves x %u processes x %u threads x %u calls = %llu cb_allow "
           "in %.1f s, a controller moving the breaker by hand meanwhile\n"
           "figure: accounting: admitted %llu + rejected %llu = %llu (%s); admitted = successes "
           "%llu + failures %llu + ignored %llu + stale %llu = %llu (%s); opens %llu, generation %llu\n",
           waves, procs, threads, calls, (unsigned long long)allows, secs,
           (unsigned long long)s.admitted, (unsigned long long)s.rejected,
           (unsigned long long)(s.admitted + s.rejected),
           s.admitted + s.rejected == allows ? "exact" : "NOT EXACT", (unsigned long long)s.successes,
           (unsigned long long)s.failures, (unsigned long long)s.ignored, (unsigned long long)s.stale,
           (unsigned long long)done, s.admitted == done ? "exact" : "NOT EXACT",
           (unsigned long long)s.opens, (unsigned long long)s.generation);
    munmap(sh, sizeof *sh);
    cb_shm_close(b);
    unlink(path);
}

/* ---- a killed probe holder ---------------------------------------------------------- */

#define OPEN_MS 30
#define PROBE_MS 50
static const cb_config t_probe = { .name = "probe", .consecutive_failures = 1,
                                   .open_ms = OPEN_MS, .probe_timeout_ms = PROBE_MS };

/* Child: waits for the open period to end, takes the probe permit with its own cb_allow
   (OPEN -> HALF_OPEN), reports the time, and hangs until killed. */
static void t_probe_holder(const char *path, int report)
{
    cb_breaker *b = t_attach(path, &t_probe);
    cb_ticket t;
    for (int i = 0; i < 20000 && !cb_allow(b, &t); i++)
        t_sleep_us(200);
    uint64_t at = t_now();
    if (cb_get_state(b) != CB_HALF_OPEN || write(report, &at, sizeof at) != sizeof at)
        _exit(4);
    for (;;)
        pause();
}

/* Calls every 500 us, recording successes, until the breaker is closed (true) or
   limit_ns passed. late[g] is the latest time, read just before a call, of a call
   rejected without moving the breaker from generation round + g (g = 0, 1): a correct
   breaker rejects none past the deadline of that generation. */
static bool t_probe_until_closed(cb_breaker *b, uint64_t limit_ns, uint64_t round, uint64_t late[2])
{
    uint64_t start = t_now();
    while (t_now() - start < limit_ns) {
        cb_ticket t;
        uint64_t at = t_now();
        uint64_t before = t_stats(b).generation;
        if (cb_allow(b, &t))
            cb_record(b, &t, CB_SUCCESS);
        else if (late && t_stats(b).generation == before && before - round < 2)
            late[before - round] = at;
        if (cb_get_state(b) == CB_CLOSED)
            return true;
        t_sleep_us(500);
    }
    return false;
}

static int t_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double t_ms(uint64_t ns) { return (double)ns / 1e6; }

/* The deadline a transition at at_ns sets period_ms ahead (whole ms, rounded up). */
static uint64_t t_deadline(uint64_t at_ns, uint64_t period_ms)
{
    return cb__ceil_ms(at_ns + period_ms * T_MS) * T_MS;
}

/* Each kill: the child takes the permit (OPEN -> HALF_OPEN, round start r) and is killed;
   this process then calls every 0.5 ms. The breaker must go HALF_OPEN -> OPEN at the
   first call at or after the probe deadline D1 = r + probe_timeout_ms, then admit the
   first call at or after D2 = (that transition) + open_ms as a probe, and close.
   Checked: no call rejected past D1 or D2 and no transition before them, so a caller
   calling all the time recovers by D1 + open_ms, at most probe_timeout_ms + open_ms
   (+ 2 ms of rounding to whole ms) after the permit was taken. Reported: that, and
   closed - permit as this process saw it, its own scheduling delays included. */
TEST(a_process_killed_holding_the_probe_permit_never_wedges_the_breaker)
{
    unsigned kills = t_env("SHM_KILLS", 120);
    const char *path = t_make_path();
    cb_breaker *b = t_attach(path, &t_probe);
    uint64_t *breaker_rec = calloc(kills, sizeof(uint64_t)), *seen_rec = calloc(kills, sizeof(uint64_t));
    unsigned done = 0, wedged = 0, sequence = 0, rejected_late = 0, early = 0;
    for (unsigned i = 0; i < kills; i++) {
        int pipefd[2];
        REQUIRE(pipe(pipefd) == 0);
        cb_reset(b);
        cb_set_state(b, CB_OPEN);
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            close(pipefd[0]);
            t_probe_holder(path, pipefd[1]);
        }
        close(pipefd[1]);
        struct pollfd pf = { pipefd[0], POLLIN, 0 };
        uint64_t took = 0, late[2] = { 0, 0 };
        bool got = poll(&pf, 1, 5000) == 1 && read(pipefd[0], &took, sizeof took) == sizeof took;
        close(pipefd[0]);
        t_sleep_us((long)(cb__splitmix(i) % (PROBE_MS * 500)));   /* kill at varied points */
        kill(pid, SIGKILL);
        t_wait(pid);
        if (!got) {
            CHECK(got);
            continue;
        }
        uint64_t round = t_stats(b).generation;
        if (!t_probe_until_closed(b, 10ull * (PROBE_MS + OPEN_MS) * T_MS, round, late)) {
            wedged++;
            continue;
        }
        cb_event ev[4];   /* the round, its timeout, the next probe, the close */
        if (cb_history(b, ev, 4) != 4 || ev[0].reason != CB_REASON_OPEN_ELAPSED ||
            ev[1].reason != CB_REASON_PROBE_TIMEOUT || ev[2].reason != CB_REASON_OPEN_ELAPSED ||
            ev[3].reason != CB_REASON_PROBES_SUCCEEDED)
            continue;
        sequence++;
        uint64_t d1 = t_deadline(ev[0].at_ns, PROBE_MS), d2 = t_deadline(ev[1].at_ns, OPEN_MS);
        rejected_late += (late[0] && late[0] >= d1) + (late[1] && late[1] >= d2);
        early += ev[1].at_ns < d1 || ev[2].at_ns < d2;
        breaker_rec[done] = t_deadline(d1, OPEN_MS) - took;   /* timed out right at d1 */
        seen_rec[done++] = ev[3].at_ns - took;
    }
    CHECK_EQ(wedged, 0);
    CHECK_EQ(sequence, kills);
    CHECK_EQ(rejected_late, 0);
    CHECK_EQ(early, 0);
    if (done) {
        qsort(breaker_rec, done, sizeof(uint64_t), t_cmp_u64);
        qsort(seen_rec, done, sizeof(uint64_t), t_cmp_u64);
        printf("figure: kill -9: %u SIGKILLs of a process holding the half-open probe permit: "
               "%u wedged; %u recovered by probe timeout -> open -> probe -> closed; calls "
               "rejected past a deadline: %u; transitions before one: %u\n"
               "figure: kill -9: recovery by the breaker's deadlines (permit taken -> probe "
               "admitted, for a caller calling all the time): median %.1f ms, worst %.1f ms, vs "
               "probe_timeout_ms + open_ms = %d ms\n"
               "figure: kill -9: as seen by a caller polling every 0.5 ms: min %.1f, median %.1f, "
               "p99 %.1f, worst %.1f ms (its own scheduling delays included)\n",
               kills, wedged, sequence, rejected_late, early, t_ms(breaker_rec[done / 2]),
               t_ms(breaker_rec[done - 1]), PROBE_MS + OPEN_MS, t_ms(seen_rec[0]),
               t_ms(seen_rec[done / 2]), t_ms(seen_rec[done * 99 / 100]), t_ms(seen_rec[done - 1]));
        CHECK(breaker_rec[done - 1] <= (PROBE_MS + OPEN_MS + 2) * T_MS);
    }
    free(breaker_rec);
    free(seen_rec);
    cb_shm_close(b);
    unlink(path);
}

/* ---- kills at random points -------------------------------------------------------- */

static const cb_config t_flappy = { .name = "flappy", .consecutive_failures = 2,
                                    .open_ms = 2, .probe_timeout_ms = 5, .half_open_calls = 2 };

static void t_flapper(const char *path, uint64_t seed)
{
    cb_breaker *b = t_attach(path, &t_flappy);
    for (uint64_t x = seed;; ) {
        cb_ticket t;
        x = cb__splitmix(x);
        if (cb_allow(b, &t))
            cb_record(b, &t, x % 3 ? CB_SUCCESS : CB_FAILURE);
        if (x % 64 == 0)
            t_sleep_us(100);
    }
}

TEST(processes_killed_at_random_points_leave_a_breaker_that_recovers)
{
    enum { FLAPPERS = 4 };
    unsigned kills = t_env("SHM_RANDOM_KILLS", 200);
    const char *path = t_make_path();
    cb_breaker *b = t_attach(path, &t_flappy);
    pid_t kids[FLAPPERS];
    fflush(NULL);
    for (unsigned i = 0; i < FLAPPERS + kills; i++) {
        unsigned slot = i % FLAPPERS;
        if (i >= FLAPPERS) {
            t_sleep_us(1000 + (long)(cb__splitmix(i) % 4000));
            kill(kids[slot], SIGKILL);
            t_wait(kids[slot]);
        }
        if (i < kills && (kids[slot] = fork()) == 0)
            t_flapper(path, i);
    }
    cb_stats before = t_stats(b);
    uint64_t t0 = t_now();
    bool closed = t_probe_until_closed(b, 10ull * 7 * T_MS, 0, NULL);
    uint64_t t1 = t_now();
    CHECK(closed);
    cb_stats after = t_stats(b);
    CHECK(after.admitted >= before.admitted && after.rejected >= before.rejected);
    printf("figure: random kills: %u SIGKILLs of processes in the middle of calls (%llu calls "
           "admitted, %llu transitions); closed again %.1f ms after the last "
           "(probe_timeout_ms + open_ms = 7 ms)\n",
           kills, (unsigned long long)before.admitted, (unsigned long long)before.generation,
           closed ? t_ms(t1 - t0) : -1.0);
    cb_shm_close(b);
    unlink(path);
}

/* ---- bulkhead places of killed processes ------------------------------------------- */

/* A call admitted under max_concurrent holds a place until cb_record gives it back. A
   process killed in such a call never gives it back itself: when the bulkhead is full,
   at most once a second, cb.h settles the stripes of dead processes (kill(pid, 0) says
   ESRCH) and returns their places. A live process's places are never returned for it. */

#define BH_MAX 4
static const cb_config t_bulkhead = { .name = "bulkhead", .max_concurrent = BH_MAX };

/* Shared with the children through an anonymous mapping. held counts the calls that
   live processes hold (incremented after cb_allow admits, decremented before cb_record,
   and for a holder about to be killed, before the kill): a correct bulkhead never lets
   it pass max_concurrent. */
typedef struct bh_shared {
    _Atomic int held, most, over;
    _Atomic int stop;      /* workers stop */
    _Atomic int release;   /* live holders record their calls and exit */
    _Atomic uint64_t worker_admitted;
    _Atomic uint64_t first_worker_ns;   /* when a worker was first admitted; 0: never */
} bh_shared;

static bh_shared *t_bh_map(void)
{
    bh_shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                         -1, 0);
    if (sh == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    memset(sh, 0, sizeof *sh);
    return sh;
}

static void t_bh_hold(bh_shared *sh)
{
    int now = atomic_fetch_add(&sh->held, 1) + 1, most = atomic_load(&sh->most);
    while (now > most && !atomic_compare_exchange_weak(&sh->most, &most, now))
        ;
    if (now > BH_MAX)
        atomic_fetch_add(&sh->over, 1);
}

/* The bulkhead count itself, 64 bits, where a count gone below zero shows as such
   (cb_stats.in_flight saturates at UINT32_MAX). */
static uint64_t t_in_flight(const cb_breaker *b)
{
    return atomic_load(&b->cb__sh->live.in_flight);
}

static uint64_t t_sweep_ms(const cb_breaker *b)
{
    return atomic_load(&b->cb__sh->live.sweep_ms);
}

/* Child: takes a place, reports on the pipe, then holds it: until killed (live == false),
   or until sh->release, when it gives it back with cb_record (exit 0 if that counted). */
static void t_place_holder(const char *path, bh_shared *sh, int report, bool live)
{
    cb_breaker *b = t_attach(path, &t_bulkhead);
    cb_ticket t;
    if (!cb_allow(b, &t))
        _exit(4);
    t_bh_hold(sh);
    if (write(report, "h", 1) != 1)
        _exit(5);
    while (!live || !atomic_load(&sh->release))
        t_sleep_us(1000);
    atomic_fetch_sub(&sh->held, 1);
    _exit(cb_record(b, &t, CB_SUCCESS) ? 0 : 6);
}

/* Forks n holders and waits until each holds its place; false if one did not. */
static bool t_start_holders(const char *path, bh_shared *sh, pid_t *pids, unsigned n, bool live)
{
    int pipefd[2];
    if (pipe(pipefd) != 0)
        return false;
    fflush(NULL);
    for (unsigned i = 0; i < n; i++)
        if ((pids[i] = fork()) == 0) {
            close(pipefd[0]);
            t_place_holder(path, sh, pipefd[1], live);
        }
    close(pipefd[1]);
    unsigned got = 0;
    struct pollfd pf = { pipefd[0], POLLIN, 0 };
    char c;
    while (got < n && poll(&pf, 1, 5000) == 1 && read(pipefd[0], &c, 1) == 1)
        got++;
    close(pipefd[0]);
    return got == n;
}

/* Each round: BH_MAX processes take every place and are SIGKILLed holding them. While
   they live, calls are rejected, also across a sweep (this process calls every 1 ms
   until it sees a sweep 1 s after the first it saw, so one runs while they hold their
   places, and must find nobody dead). They are killed right after that sweep, so the
   next may come only a second later: this process calls every 1 ms until admitted. Checked: recovered, within 1.5 s of the kill, by a sweep at least 1 s after
   the previous one; then every place is free again (BH_MAX admitted, one more rejected);
   the killed calls stay admitted and never recorded. */
TEST(bulkhead_places_of_killed_processes_come_back_about_a_second_later)
{
    unsigned rounds = t_env("SHM_BULKHEAD_ROUNDS", 2);
    const char *path = t_make_path();
    cb_breaker *b = t_attach(path, &t_bulkhead);
    bh_shared *sh = t_bh_map();
    uint64_t *back = calloc(rounds ? rounds : 1, sizeof(uint64_t));
    unsigned recovered = 0, admitted_while_held = 0;
    uint64_t least_held = UINT64_MAX;
    for (unsigned r = 0; r < rounds; r++) {
        pid_t pids[BH_MAX];
        REQUIRE(t_start_holders(path, sh, pids, BH_MAX, false));
        CHECK_EQ(t_in_flight(b), BH_MAX);
        cb_ticket t;
        /* a rejected call sweeps unless one ran in the last second: wait for a sweep
           1 s after the first seen here, calling every 1 ms meanwhile */
        uint64_t first_sweep = 0, last_sweep = 0, deadline = t_now() + 5000 * T_MS;
        while (t_now() < deadline) {
            if (cb_allow(b, &t)) {
                admitted_while_held++;
                cb_record(b, &t, CB_SUCCESS);
            }
            uint64_t f = t_in_flight(b);
            least_held = f < least_held ? f : least_held;
            last_sweep = t_sweep_ms(b);
            if (!first_sweep)
                first_sweep = last_sweep;
            if (last_sweep >= first_sweep + 1000)
                break;
            t_sleep_us(1000);
        }
        CHECK(first_sweep != 0 && last_sweep >= first_sweep + 1000);
        uint64_t killed = t_now();
        for (unsigned i = 0; i < BH_MAX; i++)
            kill(pids[i], SIGKILL);
        for (unsigned i = 0; i < BH_MAX; i++)
            t_wait(pids[i]);   /* reaped: a zombie still answers kill(pid, 0) */
        uint64_t at = 0;
        deadline = killed + 3000 * T_MS;
        while (t_now() < deadline) {
            if (cb_allow(b, &t)) {
                at = t_now();
                cb_record(b, &t, CB_SUCCESS);
                break;
            }
            t_sleep_us(1000);
        }
        CHECK(at != 0);
        if (!at)
            continue;
        back[recovered++] = at - killed;
        CHECK(at - killed <= 1500 * T_MS);
        CHECK(t_sweep_ms(b) >= last_sweep + 1000);   /* at most one sweep a second */
        cb_ticket all[BH_MAX + 1];
        unsigned got = 0;
        for (unsigned i = 0; i <= BH_MAX; i++)
            got += cb_allow(b, &all[i]);
        CHECK_EQ(got, BH_MAX);   /* every place is free again, and no more than those */
        CHECK_EQ(t_in_flight(b), BH_MAX);
        for (unsigned i = 0; i < BH_MAX; i++)
            CHECK(cb_record(b, &all[i], CB_SUCCESS));
        CHECK_EQ(t_in_flight(b), 0);
    }
    cb_stats s = t_stats(b);
    CHECK_EQ(admitted_while_held, 0);
    CHECK_EQ(least_held, BH_MAX);
    CHECK_EQ(s.in_flight, 0);
    /* the killed calls were admitted and never recorded: the identity is short by them */
    CHECK_EQ(s.admitted - (s.successes + s.failures + s.ignored + s.stale),
             (uint64_t)rounds * BH_MAX);
    if (recovered) {
        qsort(back, recovered, sizeof(uint64_t), t_cmp_u64);
        printf("figure: bulkhead: max_concurrent %d, %u rounds of %d processes SIGKILLed holding "
               "every place, each right after a sweep: calls rejected while they lived (%u "
               "admitted); admitted again %.0f ms (best) to %.0f ms (worst) after the kill "
               "(sweeps at most once a second)\n",
               BH_MAX, rounds, BH_MAX, admitted_while_held, t_ms(back[0]),
               t_ms(back[recovered - 1]));
    }
    free(back);
    munmap(sh, sizeof *sh);
    cb_shm_close(b);
    unlink(path);
}

/* Workers call until stopped, counting in sh->held the calls they hold. */
static void t_bh_worker(const char *path, bh_shared *sh)
{
    cb_breaker *b = t_attach(path, &t_bulkhead);
    while (!atomic_load(&sh->stop)) {
        cb_ticket t;
        if (!cb_allow(b, &t)) {
            t_sleep_us(200);
            continue;
        }
        t_bh_hold(sh);
        uint64_t zero = 0, now = t_now();
        atomic_compare_exchange_strong(&sh->first_worker_ns, &zero, now);
        atomic_fetch_add(&sh->worker_admitted, 1);
        t_sleep_us(200);
        atomic_fetch_sub(&sh->held, 1);
        if (!cb_record(b, &t, CB_SUCCESS))
            _exit(6);
    }
    _exit(0);
}

/* Two live processes hold a place each for the whole run, two more hold one and are
   killed, three workers contend for the rest. Checked: no worker is admitted before the
   kill (all four places held); after it the dead places come back to the workers (about
   a second, reported) while the live ones stay held: the bulkhead count never goes
   below the two live places across several sweeps, and the calls live processes hold,
   counted in shared memory, never pass max_concurrent. */
TEST(a_live_process_keeps_its_bulkhead_places_while_dead_ones_are_settled)
{
    enum { LIVE = 2, DOOMED = BH_MAX - LIVE, WORKERS = 3 };
    const char *path = t_make_path();
    cb_breaker *b = t_attach(path, &t_bulkhead);
    bh_shared *sh = t_bh_map();
    pid_t live[LIVE], doomed[DOOMED], workers[WORKERS];
    REQUIRE(t_start_holders(path, sh, live, LIVE, true));
    REQUIRE(t_start_holders(path, sh, doomed, DOOMED, false));
    CHECK_EQ(t_in_flight(b), BH_MAX);
    fflush(NULL);
    for (unsigned i = 0; i < WORKERS; i++)
        if ((workers[i] = fork()) == 0)
            t_bh_worker(path, sh);
    t_sleep_us(300000);   /* workers rejected meanwhile; their first sweep finds nobody dead */
    uint64_t before_kill = atomic_load(&sh->worker_admitted);
    atomic_fetch_sub(&sh->held, DOOMED);   /* before the kill: held never over-counts */
    uint64_t killed = t_now();
    for (unsigned i = 0; i < DOOMED; i++)
        kill(doomed[i], SIGKILL);
    for (unsigned i = 0; i < DOOMED; i++)
        t_wait(doomed[i]);
    /* watch the count across at least two sweeps */
    uint64_t least = UINT64_MAX, sweeps = 0, seen = t_sweep_ms(b);
    while (t_now() - killed < 2500 * T_MS) {
        uint64_t f = t_in_flight(b), sw = t_sweep_ms(b);
        least = f < least ? f : least;
        if (sw != seen)
            sweeps++, seen = sw;
        t_sleep_us(1000);
    }
    atomic_store(&sh->stop, 1);
    int bad = 0;
    for (unsigned i = 0; i < WORKERS; i++)
        bad += t_wait(workers[i]) != 0;
    uint64_t live_left = t_in_flight(b);   /* the workers gone: the live places alone */
    atomic_store(&sh->release, 1);
    for (unsigned i = 0; i < LIVE; i++)
        bad += t_wait(live[i]) != 0;   /* each recorded its call, counted */
    uint64_t first = atomic_load(&sh->first_worker_ns), calls = atomic_load(&sh->worker_admitted);
    cb_stats s = t_stats(b);
    CHECK_EQ(bad, 0);
    CHECK_EQ(before_kill, 0);
    CHECK(first > killed);
    CHECK(first && first - killed <= 1500 * T_MS);
    CHECK(calls > 0);
    CHECK(sweeps >= 2);
    CHECK(least >= LIVE && least <= BH_MAX + WORKERS);   /* live places never given back */
    CHECK_EQ(live_left, LIVE);
    CHECK_EQ(atomic_load(&sh->over), 0);
    CHECK(atomic_load(&sh->most) <= BH_MAX);
    CHECK_EQ(t_in_flight(b), 0);   /* both dead places came back, and the live ones */
    CHECK_EQ(s.in_flight, 0);
    CHECK_EQ(s.admitted - (s.successes + s.failures + s.ignored + s.stale), (uint64_t)DOOMED);
    printf("figure: bulkhead: %d live holders kept their places across %llu sweeps (count never "
           "below %llu) while %d killed holders' places came back %.0f ms after the kill; "
           "%d workers then made %llu calls, calls held at once by live processes at most %d "
           "(max_concurrent %d, %d times over)\n",
           LIVE, (unsigned long long)sweeps, (unsigned long long)least, DOOMED,
           first > killed ? t_ms(first - killed) : -1.0, WORKERS, (unsigned long long)calls,
           atomic_load(&sh->most), BH_MAX, atomic_load(&sh->over));
    munmap(sh, sizeof *sh);
    cb_shm_close(b);
    unlink(path);
}
