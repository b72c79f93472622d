/* shm_drive - makes calls through a shared breaker or group, for the cbctl tests.

       shm_drive FILE [--group] [group flags] [breaker flags] STEP...

   Opens FILE with cb_shm_open (with --group or a group flag: cb_group_shm_open) and the
   config of the flags, then runs the steps in order:
       s=N, f=N, i=N   N calls, each recorded as success, failure or ignored if admitted
       k=KEY           a group's later calls go to KEY: its bytes, %HH for any byte
       t=N             N manual transitions, open and closed by turns (of the key), as
                       many as a burst of cbctl set but in one process
       hold            one call admitted and never recorded: prints "held", then waits
                       to be killed (a process that dies holding a call or a probe)
   and prints "admitted A rejected R". Exit status 2 on a bad command line or file.

       shm_drive --layout

   prints where the file's fields lie, as JSON, for tests that damage files on purpose. */
#define _POSIX_C_SOURCE 200809L
#define CB_IMPLEMENTATION
#include "cb.h"
#include "tools/cbflags.h"

#include <unistd.h>

static void usage(const char *why) __attribute__((noreturn));
static void usage(const char *why)
{
    fprintf(stderr, "shm_drive: %s\nusage: shm_drive FILE [--group] [group flags] [breaker flags] "
            "s=N|f=N|i=N|k=KEY|t=N|hold...\n", why);
    exit(2);
}

static cb_breaker *B;
static cb_group *G;
static char key[CB_GROUP_KEY_MAX];
static size_t key_len = 1;   /* "k" until a k= step */

static bool allow(cb_ticket *t) { return G ? cb_group_allow(G, key, key_len, t) : cb_allow(B, t); }
static cb_state state(void) { return G ? cb_group_get_state(G, key, key_len) : cb_get_state(B); }
static bool set(cb_state s) { return (G ? cb_group_set_state(G, key, key_len, s) : cb_set_state(B, s)) == CB_OK; }
static void record(cb_ticket *t, cb_outcome o) { G ? cb_group_record(G, t, o) : cb_record(B, t, o); }

static void set_key(const char *text)
{
    key_len = 0;
    for (const char *p = text; *p && key_len < sizeof key; p++) {
        unsigned v;
        if (*p == '%' && sscanf(p + 1, "%2x", &v) == 1)
            key[key_len++] = (char)v, p += 2;
        else
            key[key_len++] = *p;
    }
}

int main(int argc, char **argv)
{
    cb_group_config gc = { 0 };
    char err[256];
    bool group = false;
    int i = 2;
    key[0] = 'k';
    if (argc < 2)
        usage("name a FILE");
    if (strcmp(argv[1], "--layout") == 0) {
        printf("{\"cfg\": %zu, \"ready\": %zu, \"word\": %zu, \"header\": %zu}\n",
               offsetof(cb__shared, cfg), offsetof(cb__shared, ready), offsetof(cb__shared, live.word),
               sizeof(cb__shared));
        return 0;
    }
    for (int got; i < argc; i++) {
        if (strcmp(argv[i], "--group") == 0) {
            group = true;
            continue;
        }
        got = cbflags__parse_in(cbflags__group_table, CB__COUNT_OF(cbflags__group_table), argv[i],
                                &gc, err, sizeof err);
        group |= got == 1;
        if (got == 0 && (got = cbflags_parse(argv[i], &gc.breaker, err, sizeof err)) == 0)
            break;
        if (got < 0)
            usage(err);
    }
    cb_err e;
    if (group ? !(G = cb_group_shm_open(argv[1], &gc, &e)) : !(B = cb_shm_open(argv[1], &gc.breaker, &e)))
        usage(cb_strerror(e));
    unsigned long admitted = 0, rejected = 0;
    for (; i < argc; i++) {
        static const char outcomes[] = "sfi";
        const char *kind = argv[i][0] ? strchr(outcomes, argv[i][0]) : NULL;
        uint64_t n;
        cb_ticket t;
        if (strncmp(argv[i], "k=", 2) == 0) {
            set_key(argv[i] + 2);
            continue;
        }
        if (strcmp(argv[i], "hold") == 0) {
            if (!allow(&t))
                usage("hold: the call was rejected");
            printf("held\n");
            fflush(stdout);
            for (;;)
                pause();
        }
        if (strncmp(argv[i], "t=", 2) == 0 && cbflags__unsigned(argv[i] + 2, UINT32_MAX, &n)) {
            for (uint64_t k = 0; k < n; k++)
                if (!set(state() == CB_OPEN ? CB_CLOSED : CB_OPEN))
                    usage("t=N: a transition failed");
            continue;
        }
        if (!kind || argv[i][1] != '=' || !cbflags__unsigned(argv[i] + 2, UINT32_MAX, &n))
            usage("a step is s=N, f=N, i=N, k=KEY, t=N or hold");
        for (uint64_t k = 0; k < n; k++) {
            if (!allow(&t)) {
                rejected++;
                continue;
            }
            admitted++;
            record(&t, (cb_outcome)(kind - outcomes));
        }
    }
    printf("admitted %lu rejected %lu\n", admitted, rejected);
    cb_shm_close(B);
    cb_group_shm_close(G);
    return 0;
}
