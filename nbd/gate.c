/* The runstate gate every transmission request passes before it touches
 * the block layer.
 *
 * The NBD export is a guest device: while the guest is stopped (startup,
 * `stop`, migration switchover, an incoming destination) requests are held,
 * not failed, and pause returns only once none is in flight, so migration
 * can copy a disk nobody is writing.  A payload above NBD_SMALL_PAYLOAD
 * passes the gate once per slice, so a large read, or a write not yet
 * acknowledged, may straddle a pause.  After an outgoing migration
 * completed the disk belongs to the destination: writes fail with
 * ESHUTDOWN (clients must then disconnect), reads are still served from
 * the now-frozen copy.  The handshake never waits here. */
#include "nbd-internal.h"

#include <errno.h>

static GMutex gate_lock;
static GCond gate_cond;
static bool gate_paused = true;     /* the guest starts stopped */
static bool gate_refuse_writes;
static bool gate_stopping;
static unsigned gate_inflight;      /* admitted while running */

static int gate_enter(bool is_write, bool *counted)
{
    int ret = 0;

    *counted = false;
    g_mutex_lock(&gate_lock);
    for (;;) {
        if (gate_stopping || (gate_refuse_writes && is_write)) {
            ret = -ESHUTDOWN;
            break;
        }
        if (!gate_paused) {
            gate_inflight++;
            *counted = true;
            break;
        }
        /* Stopped for good after migration: the copy no longer changes,
         * so reads need not wait for a resume that never comes. */
        if (gate_refuse_writes) {
            break;
        }
        g_cond_wait(&gate_cond, &gate_lock);
    }
    g_mutex_unlock(&gate_lock);
    return ret;
}

static void gate_leave(void)
{
    g_mutex_lock(&gate_lock);
    g_assert(gate_inflight > 0);
    if (--gate_inflight == 0) {
        g_cond_broadcast(&gate_cond);
    }
    g_mutex_unlock(&gate_lock);
}

int nbd_gate_run(bool is_write, int (*fn)(void *opaque), void *opaque)
{
    bool counted;
    int ret = gate_enter(is_write, &counted);

    if (ret == 0) {
        ret = fn(opaque);
    }
    if (counted) {
        gate_leave();
    }
    return ret;
}

void nbd_server_pause_io(void)
{
    g_mutex_lock(&gate_lock);
    gate_paused = true;
    while (gate_inflight > 0) {
        g_cond_wait(&gate_cond, &gate_lock);
    }
    g_mutex_unlock(&gate_lock);
}

void nbd_server_resume_io(void)
{
    g_mutex_lock(&gate_lock);
    gate_paused = false;
    g_cond_broadcast(&gate_cond);
    g_mutex_unlock(&gate_lock);
}

void nbd_server_refuse_writes(void)
{
    g_mutex_lock(&gate_lock);
    gate_refuse_writes = true;
    g_cond_broadcast(&gate_cond);
    g_mutex_unlock(&gate_lock);
}

/* Server shutdown: held requests fail with ESHUTDOWN instead of waiting for
 * a resume; cleared again when a server starts. */
void nbd_gate_set_stopping(bool stopping)
{
    g_mutex_lock(&gate_lock);
    gate_stopping = stopping;
    g_cond_broadcast(&gate_cond);
    g_mutex_unlock(&gate_lock);
}
