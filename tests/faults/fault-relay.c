/* The packet relay: the suite's own stand-in for netem, for kernels
 * without it.  Two tun devices, one in each namespace, are the two ends
 * of a point-to-point link; this thread reads each IP packet one end
 * sends and writes it into the other, and on the way may drop it, delay
 * it, hold it back so later packets overtake it, send it twice, or flip
 * a bit in it.  These are packet-level faults: TCP sees real losses,
 * reordering and duplicates and recovers as it would on a bad link; a
 * flipped bit fails TCP's checksum and becomes a loss, unless the relay
 * fixes the checksum too (corrupt_payload), which is the corruption TCP
 * cannot see and only an end-to-end checksum can. */
#include <errno.h>
#include <glib-unix.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "faults.h"

#define MAX_PACKET 65536
/* Poll at least this often to release delayed packets on time. */
#define MAX_WAIT_MS 50

typedef struct Pending {
    gint64 due_us;
    int to;                     /* index of the fd it goes out on */
    size_t len;
    uint8_t data[];
} Pending;

struct Relay {
    int fd[2];
    int wake[2];                /* a byte here ends the thread */
    GThread *thread;
    GMutex lock;                /* faults and stats */
    RelayFaults faults;
    RelayStats stats;
    GRand *rng;
    GQueue queue;               /* Pending *, by due time */
};

/* ---- corruption ---- */

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = v >> 8;
    p[1] = v & 0xff;
}

/* RFC 1624: the ones' complement checksum HC after one 16-bit word of
 * what it covers changed from OLD to NEW. */
static uint16_t checksum_update(uint16_t hc, uint16_t old, uint16_t new)
{
    uint32_t sum = (uint16_t)~hc + (uint16_t)~old + new;

    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

/* The IPv4 header length of a TCP packet, or 0 for anything else. */
static size_t tcp_ip_header(const uint8_t *p, size_t len)
{
    size_t ihl;

    if (len < 20 || (p[0] >> 4) != 4 || p[9] != 6) {
        return 0;
    }
    ihl = (size_t)(p[0] & 0x0f) * 4;
    return ihl >= 20 && ihl + 20 <= len ? ihl : 0;
}

/* One bit of the TCP header or payload: the receiver's checksum fails. */
static bool corrupt_detectably(Relay *r, uint8_t *p, size_t len)
{
    size_t ihl = tcp_ip_header(p, len);
    size_t at;

    if (!ihl) {
        return false;
    }
    at = ihl + g_rand_int_range(r->rng, 0, (gint32)(len - ihl));
    p[at] ^= 1u << g_rand_int_range(r->rng, 0, 8);
    return true;
}

/* The 16-bit word at WORD as a checksum sums it: an odd last byte is
 * padded with a zero byte. */
static uint16_t summed_word(const uint8_t *p, size_t len, size_t word)
{
    return word + 1 < len ? get16(p + word) : (uint16_t)(p[word] << 8);
}

/* One bit of the payload, with the TCP checksum made to match. */
static bool corrupt_payload(Relay *r, uint8_t *p, size_t len)
{
    size_t ihl = tcp_ip_header(p, len);
    size_t data, at, word;
    uint16_t old;

    if (!ihl) {
        return false;
    }
    data = ihl + (size_t)(p[ihl + 12] >> 4) * 4;
    if (data >= len) {
        return false;           /* no payload: a bare ACK */
    }
    at = data + g_rand_int_range(r->rng, 0, (gint32)(len - data));
    word = at - ((at - ihl) & 1);
    old = summed_word(p, len, word);
    p[at] ^= 1u << g_rand_int_range(r->rng, 0, 8);
    put16(p + ihl + 16, checksum_update(get16(p + ihl + 16), old, summed_word(p, len, word)));
    return true;
}

/* ---- the queue of packets waiting to go out ---- */

static void enqueue(Relay *r, int to, const uint8_t *data, size_t len, gint64 due_us)
{
    Pending *pk = g_malloc(sizeof(*pk) + len);
    GList *l;

    pk->due_us = due_us;
    pk->to = to;
    pk->len = len;
    memcpy(pk->data, data, len);
    /* From the tail: most packets are due after everything queued. */
    for (l = r->queue.tail; l && ((Pending *)l->data)->due_us > due_us; l = l->prev) {
    }
    if (l) {
        g_queue_insert_after(&r->queue, l, pk);
    } else {
        g_queue_push_head(&r->queue, pk);
    }
}

/* Write out every packet that is due; a full tun queue drops it, as a
 * busy link would. */
static void release_due(Relay *r)
{
    gint64 now = g_get_monotonic_time();
    Pending *pk;

    while ((pk = g_queue_peek_head(&r->queue)) && pk->due_us <= now) {
        g_queue_pop_head(&r->queue);
        if (write(r->fd[pk->to], pk->data, pk->len) < 0 && errno != EAGAIN) {
            g_test_message("relay: write: %s", g_strerror(errno));
        }
        g_free(pk);
    }
}

/* ---- one packet ---- */

static bool chance(Relay *r, double p)
{
    return p > 0 && g_rand_double(r->rng) < p;
}

static void handle_packet(Relay *r, int from, uint8_t *p, size_t len)
{
    gint64 due;

    g_mutex_lock(&r->lock);
    RelayFaults f = r->faults;
    if (f.blackhole || chance(r, f.loss)) {
        r->stats.dropped++;
        g_mutex_unlock(&r->lock);
        return;
    }
    if ((chance(r, f.corrupt) && corrupt_detectably(r, p, len)) ||
        (chance(r, f.corrupt_payload) && corrupt_payload(r, p, len))) {
        r->stats.corrupted++;
    }
    due = g_get_monotonic_time() + (gint64)f.delay_ms * 1000 +
          (f.jitter_ms ? g_rand_int_range(r->rng, 0, (gint32)f.jitter_ms * 1000) : 0);
    if (chance(r, f.reorder)) {
        due += (gint64)f.reorder_ms * 1000;
        r->stats.reordered++;
    }
    enqueue(r, !from, p, len, due);
    if (chance(r, f.duplicate)) {
        enqueue(r, !from, p, len, due + 100);
        r->stats.duplicated++;
    }
    r->stats.forwarded++;
    g_mutex_unlock(&r->lock);
}

/* Every packet FD has now (non-blocking). */
static void drain(Relay *r, int from, uint8_t *buf)
{
    ssize_t n;

    while ((n = read(r->fd[from], buf, MAX_PACKET)) > 0) {
        handle_packet(r, from, buf, (size_t)n);
    }
}

static int wait_ms(Relay *r)
{
    Pending *pk = g_queue_peek_head(&r->queue);
    gint64 left;

    if (!pk) {
        return MAX_WAIT_MS;
    }
    left = (pk->due_us - g_get_monotonic_time() + 999) / 1000;
    return (int)CLAMP(left, 0, MAX_WAIT_MS);
}

static gpointer relay_thread(gpointer opaque)
{
    Relay *r = opaque;
    uint8_t *buf = g_malloc(MAX_PACKET);

    for (;;) {
        struct pollfd pfd[3] = {
            { .fd = r->fd[0], .events = POLLIN },
            { .fd = r->fd[1], .events = POLLIN },
            { .fd = r->wake[0], .events = POLLIN },
        };
        if (poll(pfd, 3, wait_ms(r)) < 0 && errno != EINTR) {
            g_error("relay: poll: %s", g_strerror(errno));
        }
        if (pfd[2].revents) {
            break;
        }
        for (int i = 0; i < 2; i++) {
            if (pfd[i].revents & POLLIN) {
                drain(r, i, buf);
            }
        }
        release_due(r);
    }
    g_free(buf);
    return NULL;
}

/* ---- the API ---- */

Relay *relay_start(int fd_a, int fd_b, uint32_t seed)
{
    Relay *r = g_new0(Relay, 1);
    GError *err = NULL;

    r->fd[0] = fd_a;
    r->fd[1] = fd_b;
    g_assert_true(g_unix_open_pipe(r->wake, FD_CLOEXEC, &err));
    g_assert_no_error(err);
    g_mutex_init(&r->lock);
    g_queue_init(&r->queue);
    r->rng = g_rand_new_with_seed(seed);
    r->thread = g_thread_new("fault-relay", relay_thread, r);
    return r;
}

void relay_set_faults(Relay *r, const RelayFaults *f)
{
    g_mutex_lock(&r->lock);
    r->faults = *f;
    g_mutex_unlock(&r->lock);
}

RelayStats relay_stats(Relay *r)
{
    g_mutex_lock(&r->lock);
    RelayStats s = r->stats;
    g_mutex_unlock(&r->lock);
    return s;
}

void relay_stop(Relay *r)
{
    if (!r) {
        return;
    }
    g_assert_cmpint(write(r->wake[1], "x", 1), ==, 1);
    g_thread_join(r->thread);
    g_queue_clear_full(&r->queue, g_free);
    close(r->fd[0]);
    close(r->fd[1]);
    close(r->wake[0]);
    close(r->wake[1]);
    g_rand_free(r->rng);
    g_mutex_clear(&r->lock);
    g_free(r);
}
