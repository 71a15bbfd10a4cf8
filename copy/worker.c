/* A copy worker: takes items from the plan and does them with its own
 * buffers.  A copy item is read (or mapped), split at 4 KiB into runs of
 * data and of zeroes, and each run written as what it is; a compare item writes only
 * the blocks where the source differs from the base; a verify item hashes
 * both sides.  Any failure names the side, the offset and the length. */
#include <errno.h>
#include <string.h>

#include "copy-int.h"
#include "util/checksum.h"
#include "util/size.h"
#include "util/zero.h"

typedef struct Worker {
    Copy *c;
    uint8_t *a, *b;             /* request_size each; b only for pairs */
} Worker;

/* Fail the copy with WHAT ("reading the source") at [off, off+len). */
static void fail_at(Copy *c, const char *what, uint64_t off, uint64_t len, GError *cause)
{
    GError *err = g_error_new(cause->domain, cause->code, "%s at offset %" G_GUINT64_FORMAT
                              " (%" G_GUINT64_FORMAT " bytes): %s", what, off, len,
                              cause->message);
    g_error_free(cause);
    copy_fail(c, err);
}

static bool side_read(Copy *c, CopySide *s, const char *what, uint64_t off, void *buf,
                      uint64_t len)
{
    GError *err = NULL;

    if (s->ops->read(s, off, buf, len, &err) < 0) {
        fail_at(c, what, off, len, err);
        return false;
    }
    copy_count(&c->read, len);
    return true;
}

/* Every flush_interval bytes of data, the worker that crosses the mark
 * flushes the target while the others go on writing. */
static void flush_behind(Copy *c, uint64_t len)
{
    GError *err = NULL;

    if (!c->flush_interval ||
        __atomic_add_fetch(&c->unflushed, len, __ATOMIC_RELAXED) < c->flush_interval ||
        !g_atomic_int_compare_and_exchange(&c->flushing, 0, 1)) {
        return;
    }
    __atomic_store_n(&c->unflushed, 0, __ATOMIC_RELAXED);
    if (c->dst->ops->flush(c->dst, &err) < 0) {
        g_prefix_error(&err, "flushing the target: ");
        copy_fail(c, err);
    }
    g_atomic_int_set(&c->flushing, 0);
}

static bool put_data(Copy *c, uint64_t off, const uint8_t *buf, uint64_t len)
{
    GError *err = NULL;

    if (c->dst->ops->write(c->dst, off, buf, len, &err) < 0) {
        fail_at(c, "writing the target", off, len, err);
        return false;
    }
    copy_count(&c->written, len);
    flush_behind(c, len);
    return true;
}

/* Zeroes over a target known to read as zeroes cost nothing. */
static bool put_zeroes(Copy *c, uint64_t off, uint64_t len, bool target_zero)
{
    GError *err = NULL;

    if (target_zero) {
        copy_count(&c->skipped, len);
        return true;
    }
    if (c->dst->ops->zero(c->dst, off, len, &err) < 0) {
        fail_at(c, "zeroing the target", off, len, err);
        return false;
    }
    copy_count(&c->zeroed, len);
    return true;
}

/* ---- Copy and zero items ---- */

/* The item's source bytes: mapped where the source can map them (a local
 * raw file: the page cache itself, no copy into a buffer), else read into
 * the worker's buffer.  *MAPPED says which, for release_source. */
static const uint8_t *source_bytes(Worker *w, const CopyItem *it, bool *mapped)
{
    Copy *c = w->c;
    const uint8_t *p = c->src->ops->map ? c->src->ops->map(c->src, it->off, it->len) : NULL;

    *mapped = p != NULL;
    if (p) {
        copy_count(&c->read, it->len);
        return p;
    }
    return side_read(c, c->src, "reading the source", it->off, w->a, it->len) ? w->a : NULL;
}

static void release_source(Worker *w, const CopyItem *it, const uint8_t *p, bool mapped)
{
    if (mapped) {
        w->c->src->ops->unmap(w->c->src, p, it->len);
    }
}

/* The run of data or of zeroes at POS of the item's bytes DATA; a
 * mapping that cannot be read any more fails the copy there. */
static bool next_run(Copy *c, const CopyItem *it, const uint8_t *data, bool mapped,
                     uint64_t pos, size_t *n, bool *zero)
{
    uint64_t off = it->off + pos, left = it->len - pos;

    if (!mapped) {
        *n = buffer_zero_run(data + pos, left, off, COPY_ZERO_GRAIN, zero);
        return true;
    }
    if (copy_mapped_zero_run(data + pos, left, off, n, zero)) {
        return true;
    }
    fail_at(c, "reading the source", off, left, g_error_new_literal(G_IO_ERROR,
            G_IO_ERROR_FAILED, "it shrank or cannot be read (SIGBUS on its memory map)"));
    return false;
}

/* DATA (the item's bytes) split at 4 KiB into runs of data and of zeroes,
 * each written as what it is. */
static bool put_runs(Copy *c, const CopyItem *it, const uint8_t *data, bool mapped)
{
    uint64_t pos = 0;

    while (pos < it->len) {
        bool zero;
        size_t n;
        if (!next_run(c, it, data, mapped, pos, &n, &zero)) {
            return false;
        }
        bool ok = zero ? put_zeroes(c, it->off + pos, n, c->target_zero)
                       : put_data(c, it->off + pos, data + pos, n);
        if (!ok) {
            return false;
        }
        pos += n;
    }
    return true;
}

static bool do_copy(Worker *w, const CopyItem *it)
{
    bool mapped;
    const uint8_t *data = source_bytes(w, it, &mapped);
    bool ok = data && put_runs(w->c, it, data, mapped);

    if (data) {
        release_source(w, it, data, mapped);
    }
    return ok;
}

/* ---- Compare items (a base) ---- */

typedef enum BlockAction { ACT_SKIP, ACT_ZERO, ACT_DATA } BlockAction;

static size_t grain_len(uint64_t off, uint64_t left)
{
    return (size_t)MIN(COPY_ZERO_GRAIN - off % COPY_ZERO_GRAIN, left);
}

/* What the target needs at a block: nothing where the source equals the
 * base, else the source's block (as zeroes when it is zero). */
static BlockAction block_action(const uint8_t *src, const uint8_t *base, size_t n)
{
    if (memcmp(src, base, n) == 0) {
        return ACT_SKIP;
    }
    return buffer_is_zero(src, n) ? ACT_ZERO : ACT_DATA;
}

/* The run of blocks at POS of item IT that need the same action. */
static uint64_t action_run(const uint8_t *src, const uint8_t *base, const CopyItem *it,
                           uint64_t pos, BlockAction *act)
{
    uint64_t run = grain_len(it->off + pos, it->len - pos);

    *act = block_action(src + pos, base + pos, run);
    while (pos + run < it->len) {
        uint64_t p = pos + run;
        size_t n = grain_len(it->off + p, it->len - p);
        if (block_action(src + p, base + p, n) != *act) {
            break;
        }
        run += n;
    }
    return run;
}

static bool apply_action(Copy *c, BlockAction act, uint64_t off, const uint8_t *buf,
                         uint64_t len)
{
    switch (act) {
    case ACT_SKIP:
        copy_count(&c->skipped, len);
        return true;
    case ACT_ZERO:
        return put_zeroes(c, off, len, false);
    default:
        return put_data(c, off, buf, len);
    }
}

/* The item's bytes of side S, or the zero buffer when block status says
 * it reads as zeroes there. */
static const uint8_t *item_bytes(Worker *w, CopySide *s, const char *what, bool zero,
                                 uint8_t *buf, const CopyItem *it)
{
    if (zero) {
        return w->c->zeroes;
    }
    return side_read(w->c, s, what, it->off, buf, it->len) ? buf : NULL;
}

static bool do_compare(Worker *w, const CopyItem *it)
{
    Copy *c = w->c;
    const uint8_t *src = item_bytes(w, c->src, "reading the source", it->a_zero, w->a, it);
    const uint8_t *base = src ? item_bytes(w, c->base, "reading the base", it->b_zero, w->b, it)
                              : NULL;
    uint64_t pos = 0;

    while (base && pos < it->len) {
        BlockAction act;
        uint64_t n = action_run(src, base, it, pos, &act);
        if (!apply_action(c, act, it->off + pos, src + pos, n)) {
            return false;
        }
        pos += n;
    }
    return base != NULL;
}

/* ---- Verify items ---- */

/* A difference does not stop the verify: it goes on to count them all
 * and to name the first (workers end out of order). */
static bool do_verify(Worker *w, const CopyItem *it)
{
    Copy *c = w->c;
    const uint8_t *src = item_bytes(w, c->src, "verify: reading the source", it->a_zero,
                                    w->a, it);
    const uint8_t *dst = src ? item_bytes(w, c->dst, "verify: reading the target",
                                          it->b_zero, w->b, it) : NULL;
    ChecksumDigest ds, dd;

    if (!dst) {
        return false;
    }
    checksum_buffer(c->seed, src, it->len, &ds);
    checksum_buffer(c->seed, dst, it->len, &dd);
    if (memcmp(&ds, &dd, sizeof(ds)) != 0) {
        copy_note_mismatch(c, it->off, it->len);
    } else {
        copy_count(&c->verified, it->len);
    }
    return true;
}

/* ---- The loop ---- */

static bool do_item(Worker *w, const CopyItem *it)
{
    switch (it->kind) {
    case ITEM_COPY:
        return do_copy(w, it);
    case ITEM_ZERO:
        return put_zeroes(w->c, it->off, it->len, w->c->target_zero);
    case ITEM_COMPARE:
        return do_compare(w, it);
    default:
        return do_verify(w, it);
    }
}

/* Ranges the plan passed over: skipped in a copy, equal in a verify. */
static void count_passed(Copy *c, uint64_t n)
{
    if (n) {
        copy_count(c->plan.mode == PLAN_VERIFY ? &c->verified : &c->skipped, n);
        copy_count(&c->done, n);
    }
}

gpointer copy_worker(gpointer data)
{
    Copy *c = data;
    bool pair = c->plan.mode == PLAN_COMPARE || c->plan.mode == PLAN_VERIFY;
    Worker w = { .c = c, .a = bdrv_buf_alloc(NULL, c->request_size),
                 .b = pair ? bdrv_buf_alloc(NULL, c->request_size) : NULL };
    CopyItem it;
    uint64_t passed = 0;

    while (!copy_stopped(c) && plan_next(&c->plan, &it, &passed)) {
        count_passed(c, passed);
        passed = 0;
        if (!do_item(&w, &it)) {
            break;
        }
        copy_count(&c->done, it.len);
    }
    count_passed(c, passed);
    bdrv_buf_free(w.a);
    bdrv_buf_free(w.b);
    g_mutex_lock(&c->lock);
    c->running--;
    g_cond_broadcast(&c->cond);
    g_mutex_unlock(&c->lock);
    return NULL;
}
