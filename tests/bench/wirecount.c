/* A counting proxy between an NBD client and server on unix sockets.
 *
 *   wirecount LISTEN_PATH TARGET_PATH
 *
 * Accepts any number of connections on LISTEN_PATH, connects each to
 * TARGET_PATH and copies both directions unchanged, counting every byte.
 * On SIGTERM or SIGINT it prints "CLIENT_TO_SERVER SERVER_TO_CLIENT"
 * (bytes, summed over all connections) on standard output and exits.
 *
 * Used by tests/bench/run.sh in a separate, untimed run, so the extra copy
 * through this process never shows in a measured time.
 *
 * Built by tests/bench/run.sh: cc -O2 -pthread -o build/bench/wirecount wirecount.c */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define BENCH_PROG "wirecount"
#include "bench-util.h"

#define BUF_SIZE (1024 * 1024)

static uint64_t counted[2];     /* __atomic: [0] client->server, [1] back */

struct pipe_dir {
    int from, to;
    int dir;
};

static void *copy_dir(void *opaque)
{
    struct pipe_dir *p = opaque;
    char *buf = malloc(BUF_SIZE);
    if (!buf) {
        die("malloc");
    }
    for (;;) {
        ssize_t n = read(p->from, buf, BUF_SIZE);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        __atomic_add_fetch(&counted[p->dir], (uint64_t)n, __ATOMIC_RELAXED);
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(p->to, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR) {
                continue;
            }
            if (w <= 0) {
                goto out;
            }
            off += w;
        }
    }
out:
    shutdown(p->to, SHUT_WR);
    shutdown(p->from, SHUT_RD);
    free(buf);
    return NULL;
}

static void sockaddr_for(struct sockaddr_un *sa, const char *path)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa->sun_path)) {
        fprintf(stderr, "wirecount: socket path too long: %s\n", path);
        exit(2);
    }
    strcpy(sa->sun_path, path);
}

static void *signal_thread(void *opaque)
{
    sigset_t *set = opaque;
    int sig;
    sigwait(set, &sig);
    printf("%" PRIu64 " %" PRIu64 "\n", __atomic_load_n(&counted[0], __ATOMIC_RELAXED),
           __atomic_load_n(&counted[1], __ATOMIC_RELAXED));
    fflush(stdout);
    _exit(0);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: wirecount LISTEN_PATH TARGET_PATH\n");
        return 2;
    }
    static sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    pthread_t thr;
    pthread_create(&thr, NULL, signal_thread, &set);

    struct sockaddr_un listen_sa, target_sa;
    sockaddr_for(&listen_sa, argv[1]);
    sockaddr_for(&target_sa, argv[2]);
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    unlink(argv[1]);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&listen_sa, sizeof(listen_sa)) < 0 ||
        listen(lfd, 16) < 0) {
        die(argv[1]);
    }
    for (;;) {
        int cfd = accept(lfd, NULL, NULL);
        if (cfd < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("accept");
        }
        int sfd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (sfd < 0 || connect(sfd, (struct sockaddr *)&target_sa, sizeof(target_sa)) < 0) {
            fprintf(stderr, "wirecount: connect %s: %s\n", argv[2], strerror(errno));
            close(cfd);
            if (sfd >= 0) {
                close(sfd);
            }
            continue;
        }
        struct pipe_dir *up = malloc(sizeof(*up)), *down = malloc(sizeof(*down));
        if (!up || !down) {
            die("malloc");
        }
        *up = (struct pipe_dir){ cfd, sfd, 0 };
        *down = (struct pipe_dir){ sfd, cfd, 1 };
        pthread_t t1, t2;
        if (pthread_create(&t1, NULL, copy_dir, up) || pthread_create(&t2, NULL, copy_dir, down)) {
            die("pthread_create");
        }
        pthread_detach(t1);
        pthread_detach(t2);
    }
}
