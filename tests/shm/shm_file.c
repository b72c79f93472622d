/* Shared breakers in files (cb_shm_open): one breaker for every process that opens the
   path, state that outlives them, creators racing, and every kind of bad file, which
   must give CB_EMISMATCH, CB_ECORRUPT or CB_EIO and never a crash. Files live in a
   temporary folder that the run removes. */
#define CB_IMPLEMENTATION
#include "cb.h"
#include "tests/t.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/time.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define S CB_SUCCESS
#define F CB_FAILURE

#define T_DIR_NAME "/tmp/cb-shm-test.XXXXXX"
#include "tests/shm/t_dir.h"

static cb_breaker *t_open(const char *path, cb_config cfg, cb_err expect)
{
    cb_err e = CB_EINVAL;
    cb_breaker *b = cb_shm_open(path, &cfg, &e);
    if (e != expect)
        fprintf(stderr, "%s: cb_shm_open(%s): %s, expected %s\n", t__current, path,
                cb_strerror(e), cb_strerror(expect));
    CHECK_EQ(e, expect);
    CHECK((b != NULL) == (expect == CB_OK));
    return b;
}


static size_t t_file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

/* Rewrites len bytes at off of the file (a damaged or hand-edited file). */
static void t_poke(const char *path, size_t off, const void *bytes, size_t len)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0 || pwrite(fd, bytes, len, (off_t)off) != (ssize_t)len)
        perror(path), exit(2);
    close(fd);
}

/* Maps the file to edit its block as a struct; t_unmap writes it back. */
static cb__shared *t_map(const char *path)
{
    int fd = open(path, O_RDWR);
    void *m = mmap(NULL, t_file_size(path), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        perror(path), exit(2);
    return m;
}
static void t_unmap(const char *path, cb__shared *sh) { munmap(sh, t_file_size(path)); }

/* Dates the file a minute back: no creator is at work on it. */
static void t_age(const char *path)
{
    struct timeval old[2] = { { time(NULL) - 60, 0 }, { time(NULL) - 60, 0 } };
    if (utimes(path, old) != 0)
        perror(path), exit(2);
}

static const cb_config t_cfg = { .name = "shared", .window_calls = 10, .failure_rate = 0.5,
                                 .open_ms = 60000 };

static uint64_t t_now_ms(void) { return cb__mono_ns() / T_MS; }

/* ---- one breaker for every process -------------------------------------------------- */

static int trip_it(const char *path)
{
    cb_err e;
    cb_config cfg = t_cfg;
    cb_breaker *b = cb_shm_open(path, &cfg, &e);
    if (!b)
        return 10 + (int)e;
    t_calls(b, S, 5);
    t_calls(b, F, 5);   /* 5 of 10: failure_rate 0.5 holds */
    int st = cb_get_state(b) == CB_OPEN ? 0 : 1;
    cb_shm_close(b);
    return st;
}

TEST(a_file_opened_by_two_processes_is_one_breaker)
{
    const char *path = t_path("one.cb");
    cb_breaker *b = t_open(path, t_cfg, CB_OK);
    REQUIRE(b);
    CHECK_EQ(t_in_child(trip_it, path), 0);
    CHECK_STATE(b, CB_OPEN);
    CHECK_COUNTERS(b, 10, 0, 5, 5, 0, 0);
    CHECK(!t_call(b, S));   /* this process is rejected too */
    CHECK_EQ(t_stats(b).rejected, 1);
    cb_shm_close(b);
}

TEST(state_counters_and_history_survive_every_process_exiting)
{
    const char *path = t_path("survive.cb");
    CHECK_EQ(t_in_child(trip_it, path), 0);   /* creates, trips, exits */
    cb_breaker *b = t_open(path, t_cfg, CB_OK);
    REQUIRE(b);
    cb_stats s = t_stats(b);
    CHECK_EQ(s.state, CB_OPEN);
    CHECK_EQ(s.generation, 1);
    CHECK_EQ(s.opens, 1);
    CHECK_COUNTERS(b, 10, 0, 5, 5, 0, 0);
    cb_event ev[4];
    REQUIRE(cb_history(b, ev, 4) == 1);
    CHECK_EQ(ev[0].to, CB_OPEN);
    CHECK_EQ(ev[0].reason, CB_REASON_FAILURE_RATE);
    CHECK(cb_retry_after_ms(b) > 50000);
    cb_shm_close(b);
}

static int count_one_call(const char *path)
{
    cb_err e;
    cb_config cfg = t_cfg;
    cb_breaker *b = cb_shm_open(path, &cfg, &e);
    if (!b)
        return 10 + (int)e;
    int st = t_call(b, S) ? 0 : 1;
    cb_shm_close(b);
    return st;
}

TEST(counters_of_exited_processes_are_kept_and_their_stripes_reused)
{
    const char *path = t_path("stripes.cb");
    for (int i = 0; i < 2 * CB_STRIPES; i++)   /* more processes than stripes, one by one */
        CHECK_EQ(t_in_child(count_one_call, path), 0);
    cb_breaker *b = t_open(path, t_cfg, CB_OK);
    REQUIRE(b);
    CHECK_COUNTERS(b, 2 * CB_STRIPES, 0, 2 * CB_STRIPES, 0, 0, 0);
    cb_shm_close(b);
}

TEST(two_handles_in_one_process_share_and_close_independently)
{
    const char *path = t_path("handles.cb");
    cb_breaker *a = t_open(path, t_cfg, CB_OK), *b = t_open(path, t_cfg, CB_OK);
    REQUIRE(a && b);
    CHECK(t_call(a, S));
    cb_set_state(b, CB_FORCED_OPEN);
    cb_shm_close(b);
    CHECK_STATE(a, CB_FORCED_OPEN);
    CHECK(!t_call(a, S));
    CHECK_COUNTERS(a, 1, 1, 1, 0, 0, 0);
    cb_free(a);   /* cb_free closes a shared handle too */
}

/* ---- creators racing ---------------------------------------------------------------- */

#define RACERS 12

TEST(processes_creating_one_file_at_once_all_get_the_same_breaker)
{
    for (int round = 0; round < 10; round++) {
        char name[32];
        snprintf(name, sizeof name, "race%d.cb", round);
        const char *path = t_path(name);
        int go[2];
        pid_t kids[RACERS];
        REQUIRE(pipe(go) == 0);
        fflush(NULL);
        for (int i = 0; i < RACERS; i++) {
            if ((kids[i] = fork()) == 0) {
                char c;
                close(go[1]);
                (void)!read(go[0], &c, 1);   /* returns when the parent closes its end */
                _exit(count_one_call(path));
            }
        }
        close(go[0]);
        close(go[1]);   /* start them all */
        int ok = 0;
        for (int i = 0; i < RACERS; i++) {
            int st;
            waitpid(kids[i], &st, 0);
            ok += WIFEXITED(st) && WEXITSTATUS(st) == 0;
        }
        CHECK_EQ(ok, RACERS);
        cb_breaker *b = t_open(path, t_cfg, CB_OK);
        REQUIRE(b);
        CHECK_COUNTERS(b, RACERS, 0, RACERS, 0, 0, 0);
        cb_shm_close(b);
    }
}

/* ---- files that do not fit ---------------------------------------------------------- */

TEST(another_config_is_a_mismatch_and_leaves_the_file_alone)
{
    const char *path = t_path("mismatch.cb");
    cb_breaker *b = t_open(path, t_cfg, CB_OK);
    REQUIRE(b);
    cb_config other = t_cfg;
    other.window_calls = 20;
    t_open(path, other, CB_EMISMATCH);
    other = t_cfg;
    other.name = "other";
    t_open(path, other, CB_EMISMATCH);
    other = t_cfg;
    other.window_calls = 0;
    other.window_ms = 1000;   /* another window kind: another size too */
    t_open(path, other, CB_EMISMATCH);
    /* resolved configs compare: spelling a default out is the same config */
    other = t_cfg;
    other.minimum_calls = 10;
    other.half_open_calls = 1;
    cb_shm_close(t_open(path, other, CB_OK));
    CHECK(t_call(b, S));
    cb_shm_close(b);
}

TEST(another_layout_is_a_mismatch)
{
    const char *path = t_path("layout.cb");
    cb_shm_close(t_open(path, t_cfg, CB_OK));
    cb__shared *sh = t_map(path);
    sh->version = CB__VERSION + 1;     /* a later cb.h, its checksum intact */
    sh->checksum = cb__static_hash(sh);
    t_unmap(path, sh);
    t_open(path, t_cfg, CB_EMISMATCH);
    sh = t_map(path);
    sh->version = CB__VERSION;
    sh->header_size += 64;             /* another CB_STRIPES or CB_HISTORY */
    sh->checksum = cb__static_hash(sh);
    t_unmap(path, sh);
    t_open(path, t_cfg, CB_EMISMATCH);
}

TEST(a_damaged_header_is_corrupt)
{
    static const size_t offsets[] = { offsetof(cb__shared, magic), offsetof(cb__shared, total_size),
                                      offsetof(cb__shared, fingerprint), offsetof(cb__shared, checksum),
                                      offsetof(cb__shared, window_off), offsetof(cb__shared, cfg) + 70 };
    for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++) {
        const char *path = t_path("damaged.cb");
        cb_shm_close(t_open(path, t_cfg, CB_OK));
        unsigned char x = 0x5a;
        t_poke(path, offsets[i], &x, 1);
        t_open(path, t_cfg, CB_ECORRUPT);
    }
}

TEST(a_state_word_out_of_range_is_corrupt)
{
    const char *path = t_path("state.cb");
    cb_shm_close(t_open(path, t_cfg, CB_OK));
    uint64_t w = cb__w_make((cb_state)7, 0, 0, 0, 3);
    t_poke(path, offsetof(cb__shared, live.word), &w, sizeof w);
    t_open(path, t_cfg, CB_ECORRUPT);
}

TEST(a_foreign_file_is_corrupt)
{
    const char *path = t_path("foreign.cb");
    size_t n = 3 * sizeof(cb__shared);
    unsigned char *junk = malloc(n);
    uint64_t seed = 42, one = 1;
    for (size_t i = 0; i < n; i++)
        junk[i] = (unsigned char)(cb__splitmix(seed + i) >> 56);
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    REQUIRE(fd >= 0 && write(fd, junk, n) == (ssize_t)n);
    close(fd);
    t_poke(path, offsetof(cb__shared, ready), &one, sizeof one);   /* no waiting for it */
    t_open(path, t_cfg, CB_ECORRUPT);
    free(junk);
}

TEST(a_file_cut_short_of_its_window_is_corrupt)
{
    const char *path = t_path("short.cb");
    cb_shm_close(t_open(path, t_cfg, CB_OK));
    REQUIRE(truncate(path, sizeof(cb__shared) + 8) == 0);   /* header whole, window cut */
    t_open(path, t_cfg, CB_ECORRUPT);
}

/* A file shorter than a header, or whose ready mark never came: its creator died midway
   (nobody holds the file's lock). An opener with a config finishes it at once and gets a
   fresh breaker; an attach-only opener (no config to finish it with) is told it is
   corrupt at once. */
TEST(an_unfinished_file_is_finished_by_the_next_opener_and_corrupt_to_attach)
{
    const char *names[] = { "truncated.cb", "unpublished.cb" };
    for (int i = 0; i < 2; i++) {
        const char *path = t_path(names[i]);
        cb_shm_close(t_open(path, t_cfg, CB_OK));
        uint64_t zero = 0;
        if (i == 0)
            REQUIRE(truncate(path, 100) == 0);
        else
            t_poke(path, offsetof(cb__shared, ready), &zero, sizeof zero);
        cb_err e = CB_OK;
        uint64_t t0 = t_now_ms();
        CHECK(cb_shm_attach(path, &e) == NULL);
        CHECK_EQ(e, CB_ECORRUPT);
        CHECK(t_now_ms() - t0 < 500);
        t0 = t_now_ms();
        cb_breaker *b = t_open(path, t_cfg, CB_OK);
        CHECK(t_now_ms() - t0 < 500);
        if (b) {
            cb_stats st;
            cb_stats_get(b, &st);
            CHECK_EQ(st.admitted, 0);
            CHECK_EQ(st.state, CB_CLOSED);
            cb_shm_close(b);
        }
    }
}

/* A creator at work holds the file's lock: openers wait for it, bounded (about 2 s). */
TEST(a_creator_at_work_is_waited_for_then_the_file_is_corrupt)
{
    const char *path = t_path("held.cb");
    cb_shm_close(t_open(path, t_cfg, CB_OK));
    uint64_t zero = 0;
    t_poke(path, offsetof(cb__shared, ready), &zero, sizeof zero);
    int fd = open(path, O_RDWR);
    REQUIRE(fd >= 0 && flock(fd, LOCK_EX) == 0);   /* a creator that never finishes */
    uint64_t t0 = t_now_ms();
    t_open(path, t_cfg, CB_ECORRUPT);
    uint64_t waited = t_now_ms() - t0;
    CHECK(waited >= 1900 && waited < 5000);
    close(fd);
    cb_shm_close(t_open(path, t_cfg, CB_OK));   /* lock gone: the next opener finishes it */
}

TEST(a_missing_folder_is_an_io_error_and_a_folder_is_refused)
{
    t_path("x");   /* makes the folder */
    char missing[160];
    snprintf(missing, sizeof missing, "%s/no/such/dir.cb", t_dir);
    t_open(missing, t_cfg, CB_EIO);
    t_open(t_dir, t_cfg, CB_EPERM);   /* a folder: not a regular file */
}

TEST(bad_arguments_are_invalid_and_create_nothing)
{
    const char *path = t_path("invalid.cb");
    cb_config bad = t_cfg;
    bad.failure_rate = 2;
    t_open(path, bad, CB_EINVAL);
    CHECK(access(path, F_OK) != 0);
    cb_err e = CB_OK;
    CHECK(cb_shm_open(NULL, &t_cfg, &e) == NULL);
    CHECK_EQ(e, CB_EINVAL);
    cb_shm_close(NULL);
}

/* Every dynamic field garbage, the state word aside: calls, stats, history and export
   must stay within bounds (AddressSanitizer and UBSan run this test too). */
TEST(garbage_in_the_dynamic_state_never_crashes)
{
    for (unsigned fill = 0; fill < 3; fill++) {
        const char *path = t_path("garbage.cb");
        cb_shm_close(t_open(path, t_cfg, CB_OK));
        cb__shared *sh = t_map(path);
        size_t from = offsetof(cb__shared, live.word), to = t_file_size(path);
        for (size_t i = from; i < to; i++)
            ((unsigned char *)sh)[i] = fill == 0 ? 0xff : (unsigned char)(cb__splitmix(fill * 977 + i) >> 56);
        atomic_store(&sh->live.word, cb__w_make((cb_state)(fill * 2 % 6), 8191, 255, 255, 0xfffffff0u));
        t_unmap(path, sh);
        cb_breaker *b = t_open(path, t_cfg, CB_OK);
        REQUIRE(b);
        for (int i = 0; i < 200; i++)
            t_call(b, i % 3 ? F : S);
        cb_stats s = t_stats(b);
        cb_event ev[CB_HISTORY];
        CHECK(cb_history(b, ev, CB_HISTORY) <= CB_HISTORY);
        char buf[8192];
        CHECK(cb_format_json(b, buf, sizeof buf) > 0);
        CHECK(cb_format_prometheus(&b, 1, buf, sizeof buf) > 0);
        CHECK(s.window_calls <= 0xffffffffu);
        cb_reset(b);
        CHECK_STATE(b, CB_CLOSED);
        cb_shm_close(b);
    }
}

/* ---- cb_shm_attach: the config from the file ----------------------------------------- */

static cb_breaker *t_attach(const char *path, cb_err expect)
{
    cb_err e = CB_EINVAL;
    cb_breaker *b = cb_shm_attach(path, &e);
    if (e != expect)
        fprintf(stderr, "%s: cb_shm_attach(%s): %s, expected %s\n", t__current, path,
                cb_strerror(e), cb_strerror(expect));
    CHECK_EQ(e, expect);
    CHECK((b != NULL) == (expect == CB_OK));
    return b;
}

TEST(attach_takes_the_config_from_the_file_and_shares_the_breaker)
{
    const char *path = t_path("attach.cb");
    cb_breaker *a = t_open(path, t_cfg, CB_OK), *b = t_attach(path, CB_OK);
    REQUIRE(a && b);
    cb_config ca, cb;
    cb_config_get(a, &ca);
    cb_config_get(b, &cb);
    CHECK_STR(cb.name, "shared");
    CHECK_EQ(cb.window_calls, 10);
    CHECK(cb.failure_rate == 0.5);
    CHECK_EQ(cb.minimum_calls, ca.minimum_calls);
    CHECK_EQ(cb.seed, ca.seed);
    CHECK(cb.on_event == NULL && cb.clock_ns == NULL);   /* hooks stay with their process */
    t_calls(a, F, 5);
    t_calls(b, S, 5);
    CHECK_COUNTERS(a, 10, 0, 5, 5, 0, 0);
    CHECK_STATE(b, CB_OPEN);
    cb_shm_close(a);
    cb_shm_close(b);
}

TEST(attach_never_creates_a_file)
{
    const char *path = t_path("absent.cb");
    t_attach(path, CB_EIO);
    CHECK(access(path, F_OK) != 0);
    t_attach(t_dir, CB_EPERM);
    cb_err e = CB_OK;
    CHECK(cb_shm_attach(NULL, &e) == NULL);
    CHECK_EQ(e, CB_EINVAL);
}

TEST(attach_to_a_damaged_foreign_or_other_layout_file_fails_cleanly)
{
    const char *path = t_path("attach-bad.cb");
    cb_shm_close(t_open(path, t_cfg, CB_OK));
    unsigned char x = 'X';
    t_poke(path, offsetof(cb__shared, cfg) + 1, &x, 1);   /* the name, under the checksum */
    t_attach(path, CB_ECORRUPT);

    path = t_path("attach-layout.cb");
    cb_shm_close(t_open(path, t_cfg, CB_OK));
    cb__shared *sh = t_map(path);
    sh->version = CB__VERSION + 1;
    sh->checksum = cb__static_hash(sh);
    t_unmap(path, sh);
    t_attach(path, CB_EMISMATCH);

    path = t_path("attach-config.cb");   /* a config that passes the checksum, not the rules */
    cb_shm_close(t_open(path, t_cfg, CB_OK));
    sh = t_map(path);
    sh->cfg.failure_rate = 7;
    sh->checksum = cb__static_hash(sh);
    t_unmap(path, sh);
    t_attach(path, CB_ECORRUPT);

    path = t_path("attach-text.cb");
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    REQUIRE(fd >= 0 && write(fd, "hello\n", 6) == 6);
    close(fd);
    t_age(path);
    t_attach(path, CB_ECORRUPT);
}

/* ---- the format -------------------------------------------------------------------- */

/* tests/shm/shm_golden.cb was written by `make shm-golden` (cbctl and tests/shm/shm_drive.c):
   opened, forced open, reset, then 6 successes, 1 ignored, 4 failures. Every figure must
   read back: a change of the format that keeps CB__VERSION would misread it (fields
   moved or re-encoded), and one that bumps it must come with a new golden file. */
TEST(a_file_written_in_this_format_reads_back_field_by_field)
{
    const char *path = t_path("golden.cb");
    FILE *in = fopen("tests/shm/shm_golden.cb", "rb"), *out = fopen(path, "wb");
    char buf[4096];
    size_t n;
    REQUIRE(in && out);
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        REQUIRE(fwrite(buf, 1, n, out) == n);
    fclose(in);
    fclose(out);
    cb_err e;
    cb_breaker *b = cb_shm_attach(path, &e);
    if (!b)
        fprintf(stderr, "%s: %s: if the format changed on purpose, bump CB__VERSION and run "
                "make shm-golden\n", t__current, cb_strerror(e));
    REQUIRE(b);
    cb_stats s = t_stats(b);
    CHECK_STR(cb_name(b), "golden");
    CHECK_EQ(s.state, CB_CLOSED);
    CHECK_EQ(s.generation, 2);
    CHECK_COUNTERS(b, 11, 0, 6, 4, 1, 0);
    CHECK_EQ(s.opens, 1);
    CHECK_EQ(s.consecutive_failures, 4);
    CHECK_EQ(s.window_calls, 10);
    CHECK_EQ(s.window_failures, 4);
    CHECK_EQ(s.window_slow, 0);
    CHECK_EQ(s.in_flight, 0);
    /* last_failure_ns comes from the coarse clock, which may lag the precise one that
       timed the transition by a tick (docs/semantics.md, the coarse clock) */
    CHECK(s.last_failure_ns + 20 * 1000000ull >= s.state_since_ns && s.state_since_ns > 0);
    cb_event ev[4];
    REQUIRE(cb_history(b, ev, 4) == 2);
    CHECK_EQ(ev[0].to, CB_OPEN);
    CHECK_EQ(ev[0].open_ms, 1000);
    CHECK_EQ(ev[1].to, CB_CLOSED);
    CHECK_EQ(ev[1].reason, CB_REASON_MANUAL);
    cb_config c;
    cb_config_get(b, &c);
    CHECK_EQ(c.window_calls, 20);
    CHECK_EQ(c.minimum_calls, 10);
    CHECK(c.failure_rate == 0.9);
    cb_shm_close(b);
}
