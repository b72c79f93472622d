/* A shared breaker file is a trust boundary (docs/shared-memory.md, Trust): what another
   local user or a damaged file can do to a process that opens or maps it. Refused with
   CB_EPERM and left untouched: a symlink (existing or dangling), anything but a regular
   file, a file of another user, a file writable by every user. Created 0600 whatever the
   umask (0660 with CB_SHM_GROUP). Once open, nothing written into the file - random bytes,
   the header of another breaker's file - makes a call leave the mapping, crash or hang;
   a reader's lock does not hold up opens; a huge sparse file is not mapped whole; times
   from before a reboot do not freeze the window or the deadline. Tickets misused across
   processes cannot wedge the others. Tests that play a second user (uid 65534) need root
   and say so when skipped. */
#define _DEFAULT_SOURCE   /* setgroups, usleep */
#define CB_IMPLEMENTATION
#include "cb.h"
#include "tests/t.h"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define S CB_SUCCESS
#define F CB_FAILURE
#define NOBODY 65534

#define T_DIR_NAME "/tmp/cb-trust-test.XXXXXX"
#define T_DIR_MODE 01777 /* a second user writes in it */
#include "tests/shm/t_dir.h"

static const cb_config t_cfg = { .name = "trust", .window_calls = 16, .failure_rate = 0.5,
                                 .open_ms = 50, .max_concurrent = 4 };

/* cb_shm_open_ex expecting err; the message must name the path and contain `says`. */
static cb_breaker *t_open(const char *path, const cb_config *cfg, unsigned flags, cb_err expect,
                          const char *says)
{
    cb_err e = CB_OK;
    char msg[512];
    cb_breaker *b = cb_shm_open_ex(path, cfg, flags, &e, msg, sizeof msg);
    if (e != expect)
        fprintf(stderr, "%s: %s: %s (%s), expected %s\n", t__current, path, cb_strerror(e), msg,
                cb_strerror(expect));
    CHECK_EQ(e, expect);
    CHECK((b != NULL) == (expect == CB_OK));
    if (expect != CB_OK) {
        CHECK_CONTAINS(msg, path);
        CHECK_CONTAINS(msg, says);
    }
    return b;
}

static void t_write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) || fchmod(fd, mode) != 0)
        perror(path), exit(2);
    close(fd);
}

static bool t_file_is(const char *path, const char *text)
{
    char buf[256] = "";
    int fd = open(path, O_RDONLY);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0)
        close(fd);
    return n == (ssize_t)strlen(text) && memcmp(buf, text, (size_t)n) == 0;
}

static mode_t t_mode(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_mode & 07777 : 0;
}


static bool t_root(void)
{
    if (geteuid() == 0)
        return true;
    printf("%s: skipped: needs root to play a second user (uid %d)\n", t__current, NOBODY);
    return false;
}

/* ---- what is refused before anything is written ------------------------------------- */

TEST(a_symlink_to_an_existing_file_is_refused_and_its_target_untouched)
{
    char target[128];
    snprintf(target, sizeof target, "%s", t_path("precious"));
    t_write_file(target, "precious data\n", 0600);
    const char *link = t_path("link.cb");
    REQUIRE(symlink(target, link) == 0);
    t_open(link, &t_cfg, 0, CB_EPERM, "symbolic link");
    t_open(link, NULL, 0, CB_EPERM, "symbolic link");
    CHECK(t_file_is(target, "precious data\n"));
    CHECK_EQ(t_mode(target), 0600);
}

TEST(a_dangling_symlink_is_refused_and_nothing_is_created)
{
    char target[128];
    snprintf(target, sizeof target, "%s", t_path("nowhere"));
    const char *link = t_path("dangling.cb");
    REQUIRE(symlink(target, link) == 0);
    t_open(link, &t_cfg, 0, CB_EPERM, "symbolic link");
    CHECK(access(target, F_OK) != 0);
}

TEST(a_fifo_or_a_device_is_refused_without_being_opened)
{
    const char *fifo = t_path("fifo.cb");
    REQUIRE(mkfifo(fifo, 0600) == 0);
    t_open(fifo, &t_cfg, 0, CB_EPERM, "not a regular file");   /* would block if opened */
    t_open("/dev/null", &t_cfg, 0, CB_EPERM, "not a regular file");
    t_open("/dev/null", NULL, 0, CB_EPERM, "not a regular file");
}

TEST(a_file_writable_by_every_user_is_refused_and_left_untouched)
{
    const char *path = t_path("open-to-all.cb");
    cb_shm_close(t_open(path, &t_cfg, 0, CB_OK, ""));
    REQUIRE(chmod(path, 0666) == 0);
    struct stat before, after;
    REQUIRE(stat(path, &before) == 0);
    t_open(path, &t_cfg, 0, CB_EPERM, "writable by every user");
    t_open(path, NULL, CB_SHM_GROUP, CB_EPERM, "writable by every user");
    REQUIRE(stat(path, &after) == 0);
    CHECK_EQ(after.st_size, before.st_size);
    CHECK_EQ(after.st_mtime, before.st_mtime);
    CHECK_EQ(t_mode(path), 0666);
}

TEST(files_are_created_0600_whatever_the_umask_and_0660_when_the_group_shares)
{
    mode_t old = umask(0);
    const char *path = t_path("private.cb");
    cb_shm_close(t_open(path, &t_cfg, 0, CB_OK, ""));
    CHECK_EQ(t_mode(path), 0600);
    path = t_path("group.cb");
    cb_shm_close(t_open(path, &t_cfg, CB_SHM_GROUP, CB_OK, ""));
    CHECK_EQ(t_mode(path), 0660);
    umask(077);
    path = t_path("group-umask.cb");
    cb_shm_close(t_open(path, &t_cfg, CB_SHM_GROUP, CB_OK, ""));
    CHECK_EQ(t_mode(path), 0660);
    umask(old);
    t_open(t_path("bad-flags.cb"), &t_cfg, 0x80, CB_EINVAL, "flags");
}

/* As uid 65534 (keeping group 0 when asked), plant a breaker file of mode `mode`. */
static mode_t t_plant_mode;
static int t_plant_as_nobody(const char *path)
{
    if (setgroups(0, NULL) != 0 || setgid(t_plant_mode & 0040 ? 0 : NOBODY) != 0 ||
        setuid(NOBODY) != 0)
        return 90;
    cb_err e;
    cb_breaker *b = cb_shm_open_ex(path, &t_cfg, (t_plant_mode & 0060) ? CB_SHM_GROUP : 0, &e,
                                   NULL, 0);
    if (!b)
        return 10 + (int)e;
    cb_shm_close(b);
    return chmod(path, t_plant_mode) == 0 ? 0 : 91;
}

TEST(a_file_of_another_user_is_refused_root_included)
{
    if (!t_root())
        return;
    const mode_t modes[] = { 0600, 0644, 0660, 0666 };
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        const char *path = t_path("planted.cb");
        t_plant_mode = modes[i];
        REQUIRE(t_in_child(t_plant_as_nobody, path) == 0);
        struct stat before, after;
        REQUIRE(stat(path, &before) == 0);
        CHECK_EQ(before.st_uid, NOBODY);
        t_open(path, &t_cfg, 0, CB_EPERM, modes[i] & 0002 ? "writable by every user" : "owned by uid 65534");
        t_open(path, NULL, 0, CB_EPERM, modes[i] & 0002 ? "writable by every user" : "owned by uid 65534");
        REQUIRE(stat(path, &after) == 0);
        CHECK_EQ(after.st_size, before.st_size);
        CHECK_EQ(after.st_uid, NOBODY);
    }
}

TEST(with_group_sharing_a_file_of_a_user_of_our_group_opens)
{
    if (!t_root())
        return;
    const char *path = t_path("shared-group.cb");
    t_plant_mode = 0660;   /* nobody, group 0 (ours) */
    REQUIRE(t_in_child(t_plant_as_nobody, path) == 0);
    t_open(path, &t_cfg, 0, CB_EPERM, "owned by uid 65534");
    cb_breaker *b = t_open(path, &t_cfg, CB_SHM_GROUP, CB_OK, "");
    if (b)
        CHECK(t_call(b, S));
    cb_shm_close(b);
    path = t_path("other-group.cb");
    t_plant_mode = 0600;   /* nobody, group nogroup: not ours */
    REQUIRE(t_in_child(t_plant_as_nobody, path) == 0);
    t_open(path, &t_cfg, CB_SHM_GROUP, CB_EPERM, "owned by uid 65534");
}

/* ---- a reader's lock ----------------------------------------------------------------- */

static int t_hold_lock(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0 || flock(fd, LOCK_EX) != 0)
        return 1;
    sleep(5);   /* killed long before */
    return 0;
}

TEST(a_reader_holding_the_lock_does_not_hold_up_opening_a_finished_file)
{
    const char *path = t_path("locked.cb");
    cb_shm_close(t_open(path, &t_cfg, 0, CB_OK, ""));
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        _exit(t_hold_lock(path));
    for (int i = 0; i < 100; i++) {   /* until the child holds it */
        int fd = open(path, O_RDONLY);
        bool held = flock(fd, LOCK_EX | LOCK_NB) != 0;
        if (!held)
            flock(fd, LOCK_UN);
        close(fd);
        if (held)
            break;
        usleep(10000);
    }
    uint64_t t0 = cb__mono_ns();
    cb_breaker *a = t_open(path, &t_cfg, 0, CB_OK, ""), *b = t_open(path, NULL, 0, CB_OK, "");
    uint64_t took_ms = (cb__mono_ns() - t0) / T_MS;
    CHECK(took_ms < 500);
    printf("figure: two opens of a finished file while another process holds its lock: %llu ms\n",
           (unsigned long long)took_ms);
    cb_shm_close(a);
    cb_shm_close(b);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* ---- writers that scribble over a live mapping --------------------------------------- */

/* Calls every entry point for `ms`, on a breaker another process is scribbling over;
   returns 0 if it got to the end (a crash or a hang never does). */
static int t_call_everything(cb_breaker *b, int ms)
{
    char buf[4096];
    cb_event ev[CB_HISTORY];
    uint64_t end = cb__mono_ns() + (uint64_t)ms * T_MS, x = (uint64_t)getpid();
    while (cb__mono_ns() < end) {
        for (int i = 0; i < 200; i++) {
            x = cb__splitmix(x);
            cb_ticket t;
            if (cb_allow(b, &t))
                cb_record(b, &t, (cb_outcome)(x % 3));
            if (x % 97 == 0)
                cb_set_state(b, (cb_state)(x % 6));
        }
        cb_stats s;
        cb_stats_get(b, &s);
        cb_history(b, ev, CB_HISTORY);
        cb_format_json(b, buf, sizeof buf);
        cb_format_prometheus(&b, 1, buf, sizeof buf);
        cb_retry_after_ms(b);
    }
    return 0;
}

static int t_scribble(const char *path, int ms, const void *over, size_t over_len)
{
    int fd = open(path, O_RDWR);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        return 1;
    unsigned char *m = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return 2;
    uint64_t end = cb__mono_ns() + (uint64_t)ms * T_MS, x = 42;
    while (cb__mono_ns() < end) {
        if (over) {   /* the header of another breaker's file, again and again */
            memcpy(m, over, over_len < (size_t)st.st_size ? over_len : (size_t)st.st_size);
            continue;
        }
        for (int i = 0; i < 1000; i++) {   /* random words at random places */
            x = cb__splitmix(x);
            size_t at = (size_t)(x % ((size_t)st.st_size / 8)) * 8;
            uint64_t v = cb__splitmix(x + 1);
            memcpy(m + at, &v, sizeof v);
        }
    }
    munmap(m, (size_t)st.st_size);
    return 0;
}

static const void *t_over;
static size_t t_over_len;
/* Two callers on the open breaker b (its mapping inherited) and a scribbler over its
   file, in three processes; both callers must finish cleanly. */
static void t_attack(const char *path, cb_breaker *b)
{
    fflush(NULL);
    pid_t pids[3];
    for (int i = 0; i < 3; i++)
        if ((pids[i] = fork()) == 0) {
            alarm(20);   /* a hang fails the test instead of the run */
            _exit(i == 0 ? t_scribble(path, 800, t_over, t_over_len) : t_call_everything(b, 1000));
        }
    for (int i = 0; i < 3; i++) {
        int st = 0;
        waitpid(pids[i], &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            fprintf(stderr, "%s: %s %d ended with %s %d\n", t__current, i ? "caller" : "scribbler", i,
                    WIFEXITED(st) ? "status" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
}

TEST(random_bytes_written_over_a_live_file_crash_and_hang_no_caller)
{
    cb_config time_cfg = t_cfg;
    time_cfg.window_calls = 0;
    time_cfg.window_ms = 100;
    const cb_config *cfgs[] = { &t_cfg, &time_cfg };   /* a count window, a time window */
    for (int i = 0; i < 2; i++) {
        const char *path = t_path(i ? "scribbled-time.cb" : "scribbled.cb");
        cb_breaker *b = t_open(path, cfgs[i], 0, CB_OK, "");
        REQUIRE(b);
        t_over = NULL;
        t_attack(path, b);
        cb_shm_close(b);
    }
}

TEST(the_header_of_a_larger_breaker_copied_over_a_live_file_moves_no_call_outside_it)
{
    const char *big = t_path("big.cb");
    cb_config bc = t_cfg;
    bc.window_calls = 1u << 20;   /* a window far past the small file's end */
    cb_shm_close(t_open(big, &bc, 0, CB_OK, ""));
    static unsigned char header[sizeof(cb__shared)];
    int fd = open(big, O_RDONLY);
    REQUIRE(fd >= 0 && read(fd, header, sizeof header) == (ssize_t)sizeof header);
    close(fd);
    const char *path = t_path("swapped.cb");
    cb_breaker *b = t_open(path, &t_cfg, 0, CB_OK, "");
    REQUIRE(b);
    t_over = header;
    t_over_len = offsetof(cb__shared, ready);   /* its sizes, offsets and config */
    t_attack(path, b);
    t_over = NULL;
    cb_shm_close(b);
}

/* ---- files of odd sizes and old times ------------------------------------------------- */

TEST(a_terabyte_sparse_file_is_not_mapped_whole)
{
    const char *path = t_path("sparse.cb");
    cb_shm_close(t_open(path, &t_cfg, 0, CB_OK, ""));
    REQUIRE(truncate(path, (off_t)1 << 40) == 0);
    cb_breaker *b = t_open(path, &t_cfg, 0, CB_OK, ""), *a = t_open(path, NULL, 0, CB_OK, "");
    if (b && a) {
        CHECK(b->cb__map_len < 1u << 20);
        CHECK(a->cb__map_len < 1u << 20);
        CHECK(t_call(b, S));
    }
    cb_shm_close(a);
    cb_shm_close(b);
}

static uint64_t t_fake_ns;
static uint64_t t_fake(void *user) { (void)user; return t_fake_ns; }

TEST(a_file_from_before_a_reboot_ages_its_window_and_keeps_its_deadline_in_bounds)
{
    cb_config c = { .name = "reboot", .window_ms = 1000, .failure_rate = 0.9, .minimum_calls = 100,
                    .open_ms = 1000, .clock_ns = t_fake };
    const char *path = t_path("reboot.cb");
    t_fake_ns = 900000 * T_MS * 1000;   /* 900,000 s of uptime */
    cb_breaker *b = t_open(path, &c, 0, CB_OK, "");
    REQUIRE(b);
    t_calls(b, F, 10);
    cb_shm_close(b);

    t_fake_ns = 5000 * T_MS;            /* after a reboot: 5 s of uptime */
    b = t_open(path, &c, 0, CB_OK, "");
    REQUIRE(b);
    t_calls(b, F, 10);
    CHECK_EQ(t_stats(b).window_failures, 10);
    t_fake_ns += 2000 * T_MS;           /* two windows later: aged out */
    CHECK_EQ(t_stats(b).window_failures, 0);
    REQUIRE(cb_set_state(b, CB_OPEN) == CB_OK);
    cb_shm_close(b);

    t_fake_ns = 900000 * T_MS * 1000;   /* OPEN with a deadline of the old clock... */
    b = t_open(path, &c, 0, CB_OK, "");
    REQUIRE(b);
    REQUIRE(cb_set_state(b, CB_OPEN) == CB_OK);
    cb_shm_close(b);
    t_fake_ns = 7000 * T_MS;            /* ...is brought back to one period of the new one */
    b = t_open(path, &c, 0, CB_OK, "");
    REQUIRE(b);
    CHECK(cb_retry_after_ms(b) <= 1000);
    t_fake_ns += 1000 * T_MS;
    cb_ticket t;
    CHECK(cb_allow(b, &t));
    CHECK_STATE(b, CB_HALF_OPEN);
    CHECK(cb_record(b, &t, S));
    cb_shm_close(b);
}

TEST(reset_starts_a_time_window_at_the_clock_even_when_it_went_back)
{
    cb_config c = { .name = "back", .window_ms = 1000, .failure_rate = 0.9, .minimum_calls = 100,
                    .clock_ns = t_fake };
    t_fake_ns = 100000 * T_MS;
    cb_err e;
    cb_breaker *b = cb_new(&c, &e);
    REQUIRE(b);
    t_calls(b, F, 3);
    t_fake_ns = 1000 * T_MS;            /* 99 s back: not moving, until a reset */
    cb_reset(b);
    t_calls(b, F, 3);
    CHECK_EQ(t_stats(b).window_failures, 3);
    t_fake_ns += 2000 * T_MS;
    CHECK_EQ(t_stats(b).window_failures, 0);
    cb_free(b);
}

/* ---- tickets misused across processes ------------------------------------------------- */

static int t_double_recorder(const char *path)
{
    cb_err e;
    cb_breaker *b = cb_shm_open(path, &t_cfg, &e);
    if (!b)
        return 10 + (int)e;
    for (int i = 0; i < 1000; i++) {
        cb_ticket t;
        if (!cb_allow(b, &t))
            return 2;
        for (int k = 0; k < 3; k++)   /* the success path, a finally, and a retry wrapper */
            cb_record(b, &t, S);
        cb_record(b, NULL, S);
        cb_ticket zero = { 0 };
        cb_record(b, &zero, F);
    }
    cb_shm_close(b);
    return 0;
}

TEST(a_process_that_records_tickets_twice_does_not_wedge_the_others)
{
    char path[128];   /* t_path's buffer is reused below */
    snprintf(path, sizeof path, "%s", t_path("tickets.cb"));
    cb_breaker *b = t_open(path, &t_cfg, 0, CB_OK, "");
    REQUIRE(b);
    CHECK_EQ(t_in_child(t_double_recorder, path), 0);
    cb_stats s = t_stats(b);
    CHECK_EQ(s.in_flight, 0);
    CHECK_EQ(s.admitted, 1000);
    CHECK_EQ(s.successes, 1000);
    CHECK_EQ(s.failures, 0);
    cb_ticket t[4], u;
    for (int i = 0; i < 4; i++)       /* every place is there, and the limit still holds */
        CHECK(cb_allow(b, &t[i]));
    CHECK(!cb_allow(b, &u));
    for (int i = 0; i < 4; i++)
        CHECK(cb_record(b, &t[i], S));

    const char *other_path = t_path("tickets-other.cb");
    cb_breaker *other = t_open(other_path, &t_cfg, 0, CB_OK, "");
    REQUIRE(other);
    cb_ticket mine;
    CHECK(cb_allow(b, &mine));
    CHECK(!cb_record(other, &mine, S));   /* a ticket of another shared breaker */
    CHECK_EQ(t_stats(other).in_flight, 0);
    cb_breaker *again = t_open(path, NULL, 0, CB_OK, "");   /* the same breaker, another handle */
    CHECK(cb_record(again, &mine, S));
    CHECK_EQ(t_stats(b).in_flight, 0);
    cb_shm_close(again);
    cb_shm_close(other);
    cb_shm_close(b);
}

/* ---- found by attacking the checks above ---------------------------------------------- */

TEST(a_file_with_a_second_name_is_refused)
{
    char other[128];
    snprintf(other, sizeof other, "%s", t_path("second-name.cb"));
    const char *path = t_path("first-name.cb");
    cb_shm_close(t_open(path, &t_cfg, 0, CB_OK, ""));
    REQUIRE(link(path, other) == 0);
    t_open(other, &t_cfg, 0, CB_EPERM, "hard links");
    t_open(path, NULL, 0, CB_EPERM, "hard links");
    unlink(other);
    cb_shm_close(t_open(path, NULL, 0, CB_OK, ""));
}

TEST(a_cleared_ready_mark_never_lets_an_opener_wipe_or_shrink_a_live_block)
{
    const char *path = t_path("ready-cleared.cb");
    cb_config big = t_cfg;
    big.window_calls = 1u << 16;
    big.minimum_calls = 1u << 16;
    cb_breaker *live = t_open(path, &big, 0, CB_OK, "");
    REQUIRE(live);
    t_calls(live, F, 10);
    struct stat before, after;
    REQUIRE(stat(path, &before) == 0);
    uint64_t zero = 0;
    int fd = open(path, O_WRONLY);
    REQUIRE(fd >= 0 && pwrite(fd, &zero, sizeof zero, offsetof(cb__shared, ready)) == sizeof zero);
    close(fd);
    t_open(path, &t_cfg, 0, CB_EMISMATCH, "config differs");   /* another config: not a fresh file */
    REQUIRE(stat(path, &after) == 0);
    CHECK_EQ(after.st_size, before.st_size);
    t_calls(live, F, 10);                                     /* and the live one goes on */
    CHECK_EQ(t_stats(live).window_failures, 20);
    cb_shm_close(live);
}

TEST(a_header_without_an_identity_is_refused_and_a_copy_is_another_breaker)
{
    char copy[128];
    snprintf(copy, sizeof copy, "%s", t_path("copy.cb"));
    const char *path = t_path("original.cb");
    cb_breaker *a = t_open(path, &t_cfg, 0, CB_OK, "");
    REQUIRE(a);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cp %s %s", path, copy);
    REQUIRE(system(cmd) == 0);
    cb_breaker *b = t_open(copy, NULL, 0, CB_OK, "");
    REQUIRE(b);
    cb_ticket t;
    CHECK(cb_allow(a, &t));
    CHECK(!cb_record(b, &t, S));   /* the copy's header says the same breaker: it is not */
    CHECK_EQ(t_stats(b).in_flight, 0);
    CHECK(cb_record(a, &t, S));
    cb_shm_close(b);
    cb_shm_close(a);

    path = t_path("no-identity.cb");
    cb_shm_close(t_open(path, &t_cfg, 0, CB_OK, ""));
    cb__shared h;
    int fd = open(path, O_RDWR);
    REQUIRE(fd >= 0 && pread(fd, &h, offsetof(cb__shared, ready), 0) == (ssize_t)offsetof(cb__shared, ready));
    h.instance = 0;
    h.checksum = cb__static_hash(&h);   /* anyone can make the checksum match */
    REQUIRE(pwrite(fd, &h, offsetof(cb__shared, ready), 0) == (ssize_t)offsetof(cb__shared, ready));
    close(fd);
    t_open(path, &t_cfg, 0, CB_ECORRUPT, "identity");
    t_open(path, NULL, 0, CB_ECORRUPT, "identity");
}

TEST(count_window_words_at_their_lowest_value_do_not_overflow)
{
    const char *path = t_path("lowest.cb");
    cb_breaker *b = t_open(path, &t_cfg, 0, CB_OK, "");
    REQUIRE(b);
    t_calls(b, F, 3);
    uint32_t gen = cb__w_gen(atomic_load(b->cb__word));
    for (int i = 1; i < 4; i++)   /* a writer leaves the figures at INT32_MIN */
        atomic_store(&b->cb__sh->live.win_count[i], (uint64_t)gen << 32 | 0x80000000u);
    t_calls(b, S, 40);            /* successes replace failures: -1 on each (UBSan watches) */
    CHECK_STATE(b, CB_CLOSED);
    cb_shm_close(b);
}

TEST(retry_after_of_a_file_from_before_a_reboot_is_the_time_left_on_the_new_clock)
{
    cb_config c = { .name = "reboot-retry", .consecutive_failures = 1, .open_ms = 60000,
                    .clock_ns = t_fake };
    const char *path = t_path("reboot-retry.cb");
    t_fake_ns = 864000ull * 1000 * T_MS;   /* 10 days of uptime */
    cb_breaker *b = t_open(path, &c, 0, CB_OK, "");
    REQUIRE(b);
    t_calls(b, F, 1);
    CHECK_STATE(b, CB_OPEN);
    cb_shm_close(b);
    t_fake_ns = 5000 * T_MS;               /* after the reboot */
    b = t_open(path, &c, 0, CB_OK, "");
    REQUIRE(b);
    CHECK_STATE(b, CB_OPEN);
    CHECK_EQ(cb_retry_after_ms(b), 60000);
    cb_ticket t;
    CHECK(!cb_allow(b, &t));
    cb_shm_close(b);
}
