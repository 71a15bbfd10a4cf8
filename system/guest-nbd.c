/* The NBD export as a guest device: its I/O flows only while the guest
 * runs, exactly like the built-in workload's. */
#include "nbd/server.h"
#include "system/runstate.h"
#include "system-internal.h"

static bool started;

static void nbd_on_start(void *opaque)
{
    nbd_server_resume_io();
}

static void nbd_on_stop(void *opaque)
{
    nbd_server_pause_io();
}

static const GuestDeviceOps nbd_device = {
    .on_start = nbd_on_start,
    .on_stop = nbd_on_stop,
};

bool guest_nbd_start(const char *uri, const NbdServerTls *tls, GError **errp)
{
    if (!nbd_server_start(uri, tls, errp)) {
        return false;
    }
    started = true;
    vm_ops_set_nbd_in_use(true);
    runstate_add_device(&nbd_device);
    return true;
}

void guest_nbd_stop(void)
{
    if (started) {
        runstate_remove_device(&nbd_device);
        vm_ops_set_nbd_in_use(false);
        nbd_server_stop();
        started = false;
    }
}
