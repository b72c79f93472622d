/* shm_drive - makes calls through a shared breaker, for the cbctl tests.

       shm_drive FILE [breaker flags] STEP...

   Opens FILE with cb_shm_open and the config of the flags, then runs the steps in order:
       s=N, f=N, i=N   N calls, each recorded as success, failure or ignored if admitted
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
    fprintf(stderr, "shm_drive: %s\nusage: shm_drive FILE [breaker flags] s=N|f=N|i=N|hold...\n", why);
    exit(2);
}

int main(int argc, char **argv)
{
    cb_config cfg = { 0 };
    char err[256];
    int i = 2;
    if (argc < 2)
        usage("name a FILE");
    if (strcmp(argv[1], "--layout") == 0) {
        printf("{\"cfg\": %zu, \"ready\": %zu, \"word\": %zu, \"header\": %zu}\n",
               offsetof(cb__shared, cfg), offsetof(cb__shared, ready), offsetof(cb__shared, live.word),
               sizeof(cb__shared));
        return 0;
    }
    for (int got; i < argc && (got = cbflags_parse(argv[i], &cfg, err, sizeof err)) != 0; i++)
        if (got < 0)
            usage(err);
    cb_err e;
    cb_breaker *b = cb_shm_open(argv[1], &cfg, &e);
    if (!b)
        usage(cb_strerror(e));
    unsigned long admitted = 0, rejected = 0;
    for (; i < argc; i++) {
        static const char outcomes[] = "sfi";
        const char *kind = argv[i][0] ? strchr(outcomes, argv[i][0]) : NULL;
        uint64_t n;
        cb_ticket t;
        if (strcmp(argv[i], "hold") == 0) {
            if (!cb_allow(b, &t))
                usage("hold: the call was rejected");
            printf("held\n");
            fflush(stdout);
            for (;;)
                pause();
        }
        if (!kind || argv[i][1] != '=' || !cbflags__unsigned(argv[i] + 2, UINT32_MAX, &n))
            usage("a step is s=N, f=N, i=N or hold");
        for (uint64_t k = 0; k < n; k++) {
            if (!cb_allow(b, &t)) {
                rejected++;
                continue;
            }
            admitted++;
            cb_record(b, &t, (cb_outcome)(kind - outcomes));
        }
    }
    printf("admitted %lu rejected %lu\n", admitted, rejected);
    cb_shm_close(b);
    return 0;
}
