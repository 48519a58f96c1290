/*
 * hush-pause: the sandbox ("pause") process of the localhost/hush-pause image.
 *
 * containerd starts one of these per pod to hold the pod's namespaces. It has three jobs:
 *   - stay alive doing nothing until it is told to stop;
 *   - exit 0 on SIGTERM or SIGINT (the runtime's stop signal);
 *   - reap every child that gets re-parented to it (it is PID 1 of the pod's PID namespace when
 *     the pod shares one, so orphaned processes of the app containers become its children).
 *
 * Written for Hush (scripts/images builds it with `gcc -static -Os`); it does what Kubernetes'
 * pause.c does, in its own way: the signals are blocked and only let in by sigsuspend(), so a
 * signal cannot slip in between "check the flag" and "wait" and leave the process sleeping
 * forever, and the handlers only set flags while the reaping happens in the main loop.
 *
 * `hush-pause -v` prints the version and exits (a cheap way to check the binary runs).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define HUSH_PAUSE_VERSION "1"

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t child_exited;

static void on_stop(int sig) {
    (void)sig;
    stop_requested = 1;
}

static void on_child(int sig) {
    (void)sig;
    child_exited = 1;
}

/* Collects every exited child without blocking. */
static void reap(void) {
    for (;;) {
        pid_t pid = waitpid(-1, NULL, WNOHANG);
        if (pid > 0) {
            continue;
        }
        if (pid < 0 && errno == EINTR) {
            continue;
        }
        return; /* 0: children left but none exited; -1/ECHILD: no children at all */
    }
}

static int install(int sig, void (*handler)(int), int flags) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sa.sa_flags = flags;
    sigfillset(&sa.sa_mask);
    if (sigaction(sig, &sa, NULL) != 0) {
        fprintf(stderr, "hush-pause: sigaction(%d): %s\n", sig, strerror(errno));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1) {
        if (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0) {
            printf("hush-pause %s\n", HUSH_PAUSE_VERSION);
            return 0;
        }
        fprintf(stderr, "usage: %s [-v]\n", argv[0]);
        return 2;
    }
    if (getpid() != 1) {
        fprintf(stderr, "hush-pause: warning: not PID 1; only its own children are reaped\n");
    }

    sigset_t handled, waiting;
    sigemptyset(&handled);
    sigaddset(&handled, SIGTERM);
    sigaddset(&handled, SIGINT);
    sigaddset(&handled, SIGCHLD);
    /* Block first, then install: nothing is delivered until sigsuspend() lets it in. */
    if (sigprocmask(SIG_BLOCK, &handled, &waiting) != 0) {
        fprintf(stderr, "hush-pause: sigprocmask: %s\n", strerror(errno));
        return 1;
    }
    sigdelset(&waiting, SIGTERM);
    sigdelset(&waiting, SIGINT);
    sigdelset(&waiting, SIGCHLD);

    if (install(SIGTERM, on_stop, 0) != 0 || install(SIGINT, on_stop, 0) != 0 ||
        install(SIGCHLD, on_child, SA_NOCLDSTOP) != 0) {
        return 1;
    }

    reap(); /* children that exited before the handler existed */
    while (!stop_requested) {
        sigsuspend(&waiting); /* always returns -1/EINTR after a handler ran */
        if (child_exited) {
            child_exited = 0;
            reap();
        }
    }
    return 0;
}
