/* t_dir.h - what the shared-file tests share: the run's temporary folder (t_path(name)
   gives a fresh path in it; the folder and everything in it go when the program exits)
   and t_in_child, to run part of a test in another process.
   Define T_DIR_NAME (a mkdtemp template) and, for a folder a second user may write in,
   T_DIR_MODE (e.g. 01777) before including. */
#ifndef T_DIR_H
#define T_DIR_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef T_DIR_NAME
#define T_DIR_NAME "/tmp/cb-test.XXXXXX"
#endif

static char t_dir[64];

static const char *t_path(const char *name)
{
    static char path[128];
    if (!t_dir[0]) {
        snprintf(t_dir, sizeof t_dir, "%s", T_DIR_NAME);
        if (!mkdtemp(t_dir)) {
            perror("mkdtemp");
            exit(2);
        }
#ifdef T_DIR_MODE
        if (chmod(t_dir, T_DIR_MODE) != 0) {
            perror("chmod");
            exit(2);
        }
#endif
    }
    snprintf(path, sizeof path, "%s/%s", t_dir, name);
    unlink(path);
    return path;
}

__attribute__((destructor)) static void t_remove_dir(void)
{
    DIR *d = t_dir[0] ? opendir(t_dir) : NULL;
    struct dirent *e;
    char path[512];
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') {
            snprintf(path, sizeof path, "%s/%s", t_dir, e->d_name);
            unlink(path);
        }
    if (d) {
        closedir(d);
        rmdir(t_dir);
    }
}

/* Runs fn(arg) in a child process; its exit status (fn's return value), or 128 + signal. */
__attribute__((unused)) static int t_in_child(int (*fn)(const char *), const char *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        _exit(fn(arg));
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

#endif
