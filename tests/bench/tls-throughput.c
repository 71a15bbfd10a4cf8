/* What TLS costs on the wire: loopback TCP throughput of 1 MiB writes in
 * the clear and through util/tls sessions (x509 and PSK credentials made
 * by certtool and psktool), so that the cost of TLS on migration streams
 * can be judged against its target (at most 25%).
 *
 *   tls-throughput [MIB [RUNS]]      (default 512 MiB, 5 runs; medians shown)
 *
 * Built by `make bench-tls` (it links libblkmig); prints one line per
 * mode: MB/s, CPU seconds (both ends, user + system) per GiB moved, and
 * for TLS the cost against plain and the cipher.  On a shared machine the
 * CPU per GiB is the steadier number: the wall-clock rate depends on what
 * else runs. */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../lib/tls-certs.h"
#include "util/sockets.h"
#include "util/tls.h"

#define MIB (1024 * 1024)
#define TIMEOUT_MS 30000

typedef struct Run {
    TlsCreds *creds;        /* NULL: plain */
    int fd;
    size_t total;
    char *cipher;
    bool ok;
} Run;

static void die(const char *what, GError *err)
{
    fprintf(stderr, "tls-throughput: %s: %s\n", what, err ? err->message : g_strerror(errno));
    exit(1);
}

static TlsSession *handshake(TlsCreds *creds, int fd, const char *host)
{
    GError *err = NULL;
    TlsSession *s = tls_session_new(creds, fd, host, NULL, &err);

    if (!s || !tls_session_handshake(s, TIMEOUT_MS, &err)) {
        die("handshake", err);
    }
    return s;
}

/* The receiving end: read everything, in the clear or not. */
static gpointer receiver(gpointer data)
{
    Run *r = data;
    TlsSession *s = r->creds ? handshake(r->creds, r->fd, NULL) : NULL;
    uint8_t *buf = g_malloc(MIB);
    size_t got = 0;
    GError *err = NULL;

    while (got < r->total) {
        ssize_t n = s ? tls_session_read(s, buf, MIB, TIMEOUT_MS, &err)
                      : recv(r->fd, buf, MIB, 0);
        if (n <= 0) {
            die("receive", err);
        }
        got += (size_t)n;
    }
    r->ok = true;
    tls_session_free(s);
    g_free(buf);
    return NULL;
}

static void send_all(TlsSession *s, int fd, const uint8_t *buf, size_t len)
{
    GError *err = NULL;

    if (s ? !tls_session_write_all(s, buf, len, TIMEOUT_MS, &err) : write(fd, buf, len) < 0) {
        die("send", err);
    }
}

/* Seconds to move TOTAL bytes in 1 MiB writes over a fresh connection. */
static double one_run(TlsCreds *server, TlsCreds *client, size_t total, char **cipher)
{
    Endpoint ep = { .kind = ENDPOINT_TCP, .host = "127.0.0.1", .port = "0" };
    GError *err = NULL;
    int lfd = endpoint_listen(&ep, &err);
    g_autofree char *port = g_strdup_printf("%d", socket_local_port(lfd));
    Endpoint to = { .kind = ENDPOINT_TCP, .host = "127.0.0.1", .port = port };
    int cfd = endpoint_connect(&to, &err);
    Run r = { .creds = server, .fd = socket_accept(lfd), .total = total };
    uint8_t *buf = g_malloc(MIB);

    if (lfd < 0 || cfd < 0 || r.fd < 0) {
        die("connect", err);
    }
    memset(buf, 0x5a, MIB);
    gint64 start = g_get_monotonic_time();
    GThread *t = g_thread_new("receiver", receiver, &r);
    TlsSession *s = client ? handshake(client, cfd, "localhost") : NULL;
    for (size_t sent = 0; sent < total; sent += MIB) {
        send_all(s, cfd, buf, MIN((size_t)MIB, total - sent));
    }
    g_thread_join(t);
    double secs = (g_get_monotonic_time() - start) / 1e6;
    if (s && cipher && !*cipher) {
        *cipher = g_strdup(tls_session_cipher(s));
    }
    tls_session_free(s);
    close(cfd);
    close(r.fd);
    close(lfd);
    g_free(buf);
    return secs;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double cpu_seconds(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

typedef struct Rate {
    double mb_s;            /* median */
    double cpu_per_gib;     /* median */
} Rate;

static Rate rate(TlsCreds *server, TlsCreds *client, size_t total, int runs, char **cipher)
{
    double secs[16], cpu[16];

    for (int i = 0; i < runs; i++) {
        double before = cpu_seconds();
        secs[i] = one_run(server, client, total, cipher);
        cpu[i] = (cpu_seconds() - before) * (1024.0 * MIB) / total;
    }
    qsort(secs, runs, sizeof(secs[0]), cmp_double);
    qsort(cpu, runs, sizeof(cpu[0]), cmp_double);
    return (Rate){ total / 1e6 / secs[runs / 2], cpu[runs / 2] };
}

static TlsCreds *load(bool psk, const char *dir, TlsEndpoint ep)
{
    GError *err = NULL;
    TlsCreds *c = psk ? tls_creds_new_psk(dir, ep, "bench", &err)
                      : tls_creds_new_x509(dir, ep, true, &err);

    if (!c) {
        die("credentials", err);
    }
    return c;
}

static void report(const char *name, bool psk, const char *dir, size_t total, int runs,
                   Rate plain)
{
    TlsCreds *srv = load(psk, dir, TLS_ENDPOINT_SERVER);
    TlsCreds *cli = load(psk, dir, TLS_ENDPOINT_CLIENT);
    char *cipher = NULL;
    Rate r = rate(srv, cli, total, runs, &cipher);

    printf("%-10s %8.0f MB/s %6.2f CPU s/GiB   rate -%4.1f%%, CPU x%.2f   %s\n", name,
           r.mb_s, r.cpu_per_gib, 100 * (1 - r.mb_s / plain.mb_s),
           r.cpu_per_gib / plain.cpu_per_gib, cipher);
    g_free(cipher);
    tls_creds_unref(srv);
    tls_creds_unref(cli);
}

/* One directory that serves both ends: CA, server and client pairs, keys. */
static char *make_credentials(void)
{
    char *dir = g_dir_make_tmp("tls-throughput-XXXXXX", NULL);
    g_autofree char *ca = g_build_filename(dir, "ca", NULL);

    tt_make_ca(ca, "bench CA");
    tt_make_cert(dir, ca, "server", "localhost", false);
    tt_make_cert(dir, ca, "client", "bench", false);
    tt_make_psk(dir, "bench");
    return dir;
}

int main(int argc, char **argv)
{
    size_t total = (argc > 1 ? strtoull(argv[1], NULL, 10) : 512) * MIB;
    int runs = argc > 2 ? atoi(argv[2]) : 5;
    g_autofree char *dir = make_credentials();
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", dir);

    runs = CLAMP(runs, 1, 16);
    Rate plain = rate(NULL, NULL, total, runs, NULL);
    printf("%zu MiB in 1 MiB writes over loopback TCP, medians of %d runs\n", total / MIB,
           runs);
    printf("%-10s %8.0f MB/s %6.2f CPU s/GiB\n", "plain", plain.mb_s, plain.cpu_per_gib);
    report("tls-x509", false, dir, total, runs, plain);
    report("tls-psk", true, dir, total, runs, plain);
    return system(cmd) == 0 ? 0 : 1;
}
