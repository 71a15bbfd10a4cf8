/* The server-wide budget for payload buffers: all connections together
 * hold at most NBD_BUFFER_BUDGET bytes of slices (see nbd-internal.h for
 * the sizes and why).
 *
 * Waiters are admitted strictly in arrival order, so a stream of small
 * slices cannot starve a larger one.  A slice is never larger than the
 * budget, so the head waiter always gets in once the holders give back,
 * and holders do give back: after each slice when someone waits, before
 * they wait on their socket, and when their socket stalls (payload.c).
 *
 * Slices are mapped and unmapped directly rather than taken from malloc:
 * glibc keeps freed large blocks in per-thread arenas, and the process
 * would then stay as large as the sum of every arena's peak, not the
 * budget. */
#include "nbd-internal.h"

#include <sys/mman.h>
#include <unistd.h>

G_STATIC_ASSERT(NBD_SLICE_MAX <= NBD_BUFFER_BUDGET);

static struct {
    GMutex lock;
    GCond cond;
    size_t used;
    uint64_t next_ticket;       /* handed to waiters in arrival order */
    uint64_t serving;           /* the ticket admitted next */
    unsigned waiting;
    size_t head_want;           /* what ticket `serving` waits for, 0: unknown */
    bool stopping;
} budget;

static bool fits(size_t len)
{
    return budget.used + len <= NBD_BUFFER_BUDGET;
}

/* Called locked: queue behind earlier waiters until LEN fits. */
static bool wait_turn(size_t len)
{
    uint64_t ticket = budget.next_ticket++;

    budget.waiting++;
    while (!budget.stopping && !(ticket == budget.serving && fits(len))) {
        if (ticket == budget.serving) {
            budget.head_want = len;
        }
        g_cond_wait(&budget.cond, &budget.lock);
    }
    budget.waiting--;
    if (budget.stopping) {
        return false;
    }
    budget.serving++;
    budget.head_want = 0;
    g_cond_broadcast(&budget.cond);     /* the next ticket's turn */
    return true;
}

static bool acquire(size_t len)
{
    bool ok = true;

    g_mutex_lock(&budget.lock);
    if (budget.stopping || budget.waiting > 0 || !fits(len)) {
        ok = wait_turn(len);
    }
    if (ok) {
        budget.used += len;
    }
    g_mutex_unlock(&budget.lock);
    return ok;
}

static void release(size_t len)
{
    g_mutex_lock(&budget.lock);
    g_assert(budget.used >= len);
    budget.used -= len;
    if (budget.waiting > 0) {
        g_cond_broadcast(&budget.cond);
    }
    g_mutex_unlock(&budget.lock);
}

void *nbd_budget_alloc(size_t len)
{
    void *buf;

    g_assert(len > 0 && len <= NBD_SLICE_MAX && len % sysconf(_SC_PAGESIZE) == 0);
    if (!acquire(len)) {
        return NULL;
    }
    buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
               -1, 0);
    if (buf == MAP_FAILED) {
        g_error("Out of memory mapping a %zu-byte NBD payload buffer", len);
    }
    return buf;
}

void nbd_budget_free(void *buf, size_t len)
{
    munmap(buf, len);
    release(len);
}

bool nbd_budget_contended(void)
{
    bool contended;

    g_mutex_lock(&budget.lock);
    contended = budget.waiting > 0 && budget.head_want > 0 && !fits(budget.head_want);
    g_mutex_unlock(&budget.lock);
    return contended;
}

void nbd_budget_set_stopping(bool stopping)
{
    g_mutex_lock(&budget.lock);
    budget.stopping = stopping;
    if (!stopping) {
        /* Waiters of the last server left without being served. */
        g_assert(budget.waiting == 0 && budget.used == 0);
        budget.serving = budget.next_ticket;
        budget.head_want = 0;
    }
    g_cond_broadcast(&budget.cond);
    g_mutex_unlock(&budget.lock);
}
