/* The wire limit: how long loopback TCP takes to carry BYTES.
 *
 *   tcpcopy BYTES [BUFFER]
 *
 * Listens on 127.0.0.1 (a port the kernel picks), connects to itself and
 * sends BYTES from a memory buffer of BUFFER bytes (default 1M; k/M/G/T
 * suffixes) to a receiver thread that reads them into another buffer.
 * Socket buffers are set to 4 MiB on both ends.  No disk is touched.
 * Prints one line: "SECONDS BYTES PEAK_RSS_KIB", the time from connect()
 * until the receiver has every byte.
 *
 * Built by tests/bench/run.sh: cc -O2 -pthread -o build/bench/tcpcopy tcpcopy.c */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BENCH_PROG "tcpcopy"
#include "bench-util.h"

#define SOCK_BUF (4 * 1024 * 1024)

static uint64_t total;
static size_t buflen;
static int listen_fd;
static uint64_t received;

static void set_bufs(int fd)
{
    int sz = SOCK_BUF;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
}

static void *receiver(void *unused)
{
    (void)unused;
    int fd = accept(listen_fd, NULL, NULL);
    if (fd < 0) {
        die("accept");
    }
    char *buf = malloc(buflen);
    if (!buf) {
        die("malloc");
    }
    while (received < total) {
        ssize_t n = read(fd, buf, buflen);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            fprintf(stderr, "tcpcopy: receiver got %" PRIu64 " of %" PRIu64 " bytes\n",
                    received, total);
            exit(1);
        }
        received += (uint64_t)n;
    }
    close(fd);
    free(buf);
    return NULL;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: tcpcopy BYTES [BUFFER]\n");
        return 2;
    }
    total = parse_size(argv[1], 0);
    buflen = argc > 2 ? parse_size(argv[2], 0) : 1024 * 1024;
    if (buflen == 0) {
        buflen = 1024 * 1024;
    }

    struct sockaddr_in addr = { .sin_family = AF_INET };
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof(addr);
    listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (listen_fd < 0) {
        die("socket");
    }
    set_bufs(listen_fd);        /* inherited by the accepted socket */
    if (bind(listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
        listen(listen_fd, 1) < 0 ||
        getsockname(listen_fd, (struct sockaddr *)&addr, &alen) < 0) {
        die("listen on 127.0.0.1");
    }

    char *buf = malloc(buflen);
    if (!buf) {
        die("malloc");
    }
    for (size_t i = 0; i < buflen; i++) {
        buf[i] = (char)(i * 2654435761u >> 13);
    }

    pthread_t thr;
    if (pthread_create(&thr, NULL, receiver, NULL)) {
        die("pthread_create");
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        die("socket");
    }
    set_bufs(fd);
    double start = now();
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        die("connect");
    }
    uint64_t sent = 0;
    while (sent < total) {
        size_t len = total - sent < buflen ? (size_t)(total - sent) : buflen;
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("write");
        }
        sent += (uint64_t)n;
    }
    pthread_join(thr, NULL);
    double secs = now() - start;
    close(fd);

    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("%.6f %" PRIu64 " %ld\n", secs, total, ru.ru_maxrss);
    free(buf);
    return 0;
}
