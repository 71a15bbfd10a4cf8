/* blkmig copy: a disk image copied from SOURCE to DEST by the copy engine
 * (include/copy/copy.h), with progress for people and for programs, and
 * the outcome in the exit code.  Which files it creates, replaces or
 * writes into is in copy-sides.c. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blkmig-internal.h"
#include "copy-sides.h"
#include "progress.h"
#include "util/size.h"

static const char copy_help[] =
    "Usage: blkmig copy [OPTIONS] SOURCE DEST\n"
    "\n"
    "Copy the disk image SOURCE to DEST, keeping DEST as thin as SOURCE: holes\n"
    "and zero ranges of SOURCE (its block status, and every all-zero 4 KiB block\n"
    "of what is read) are never written as data; DEST gets write-zeroes there\n"
    "(hole punching), or nothing when it reads as zeroes already.\n"
    "\n"
    "SOURCE and DEST are each a file (raw, qcow2; a source may also be a VMware\n"
    "vmdk, monolithicSparse or streamOptimized), an NBD URI (nbd://HOST[:PORT]/\n"
    "EXPORT, nbd+unix:///EXPORT?socket=PATH), or '-': SOURCE '-' reads raw bytes\n"
    "from stdin (a pipe needs --size, or a DEST that exists), DEST '-' writes raw\n"
    "bytes to stdout (a pipe gets every byte; a regular file gets holes).\n"
    "\n"
    "DEST, when a file:\n"
    "  - that does not exist (or is empty) becomes a new image (format -O, default\n"
    "    raw), written under a temporary name in its directory and renamed to DEST\n"
    "    only once complete, flushed (and verified, with --verify): DEST never\n"
    "    names a partial copy; a failure or Ctrl-C removes the temporary file;\n"
    "  - that exists is never touched unless told: -n writes into it in place (as\n"
    "    qemu-img convert -n; formats as -O says, raw by default, and without -O\n"
    "    an image that does not look raw is refused), --overwrite replaces it with\n"
    "    a new image, by the same rename, so it keeps its old contents until the\n"
    "    copy is complete.\n"
    "Written in place (-n, an NBD URI), DEST holds old and new data mixed after a\n"
    "failure or Ctrl-C: it is not a copy; copy again.  Zero ranges are written as\n"
    "zeroes there, except where DEST's block status says it reads as zeroes\n"
    "already, or nowhere when --target-is-zero says all of it does.\n"
    "\n"
    "Options:\n"
    "  -f FMT                 SOURCE's format: raw, qcow2, vmdk (default: probed)\n"
    "  -O FMT                 DEST's format: raw (default) or qcow2\n"
    "  -n, --target-exists    write into the existing DEST in place\n"
    "  --overwrite            replace an existing DEST file once the copy is done\n"
    "  --target-is-zero, --prezeroed\n"
    "                         DEST reads as zeroes already: zero ranges cost nothing\n"
    "  --base IMAGE           DEST holds IMAGE's contents already: write only where\n"
    "                         SOURCE differs from IMAGE (from block status when IMAGE\n"
    "                         is in SOURCE's backing chain, else read and compared)\n"
    "  --verify               after the copy, hash both sides (XXH3 per request) and\n"
    "                         fail on a difference, naming the range\n"
    "  --size SIZE            the size of a SOURCE '-' that is a pipe\n"
    "  --connections N        NBD connections per side on multi-conn servers (1-16,\n"
    "                         default 4)\n"
    "  --requests N           requests in flight, each read and then written by its\n"
    "                         own thread (1-64; default 2 between local files, 8\n"
    "                         from NBD into a local file, 16 into NBD or a stream)\n"
    "  --request-size SIZE    bytes per request (4 KiB multiples, 4k-32M; default\n"
    "                         256k into NBD, 1M otherwise)\n"
    "  -p                     show a progress bar on stderr (plain lines when stderr\n"
    "                         is not a terminal)\n"
    "  --progress=FD          write 'Progress: N' lines (N percent, 0-100, never\n"
    "                         going back) to file descriptor FD; 100 only once the\n"
    "                         copy is complete and flushed (xapi's sparse_dd text)\n"
    "  -h, --help             show this help\n"
    "\n"
    "A failure (a read error, a full target, a lost connection) stops the copy\n"
    "with a message naming the offset.  Exit status: 0 done; 1 failed; 2 cancelled\n"
    "(Ctrl-C, SIGTERM); 64 on a usage error.\n";

/* An NBD server gets a flush every so many bytes, so that one caching
 * its writes has little left to write back at the end: the final flush
 * is what the copy waits for.  qemu-nbd --cache=writeback, 4 GiB with
 * 410 MiB of data, medians of 7: every 256 MiB 0.44 s, 64 MiB 0.36 s,
 * 32 MiB 0.37 s; all data, no difference (5.9 s). */
#define REMOTE_FLUSH_INTERVAL (64u << 20)

enum {
    OPT_TARGET_IS_ZERO = 256, OPT_BASE, OPT_VERIFY, OPT_SIZE, OPT_CONNECTIONS, OPT_REQUESTS,
    OPT_REQUEST_SIZE, OPT_PROGRESS, OPT_OVERWRITE,
};

/* ---- Options ---- */

static unsigned parse_count(const char *arg, const char *opt, unsigned max)
{
    guint64 v;

    if (!g_ascii_string_to_unsigned(arg, 10, 1, max, &v, NULL)) {
        usage_error(copy_help, "%s takes a number from 1 to %u, not '%s'", opt, max, arg);
    }
    return (unsigned)v;
}

static uint64_t parse_bytes(const char *arg, const char *opt)
{
    GError *err = NULL;
    uint64_t v;

    if (!size_parse(arg, &v, &err) || v == 0) {
        usage_error(copy_help, "%s: %s", opt, err ? err->message : "must not be 0");
    }
    return v;
}

static int parse_fd(const char *arg)
{
    guint64 fd;

    if (!g_ascii_string_to_unsigned(arg, 10, 0, G_MAXINT, &fd, NULL) ||
        fcntl((int)fd, F_GETFD) < 0) {
        usage_error(copy_help, "--progress takes an open file descriptor, not '%s'", arg);
    }
    return (int)fd;
}

static void parse_request_size(CopyCmdOptions *o, const char *arg)
{
    o->request_size = parse_bytes(arg, "--request-size");
    if (o->request_size % COPY_MIN_REQUEST_SIZE || o->request_size > COPY_MAX_REQUEST_SIZE) {
        usage_error(copy_help, "--request-size must be a multiple of 4 KiB up to 32 MiB");
    }
}

static bool take_long_option(int ch, CopyCmdOptions *o)
{
    switch (ch) {
    case OPT_TARGET_IS_ZERO: o->target_is_zero = true; break;
    case OPT_BASE: o->base = optarg; break;
    case OPT_VERIFY: o->verify = true; break;
    case OPT_SIZE: o->size = parse_bytes(optarg, "--size"); break;
    case OPT_CONNECTIONS: o->connections = parse_count(optarg, "--connections", 16); break;
    case OPT_REQUESTS:
        o->requests = parse_count(optarg, "--requests", COPY_MAX_REQUESTS);
        break;
    case OPT_REQUEST_SIZE: parse_request_size(o, optarg); break;
    case OPT_PROGRESS: o->progress_fd = parse_fd(optarg); break;
    case OPT_OVERWRITE: o->overwrite = true; break;
    default: return false;
    }
    return true;
}

static void check_combinations(const CopyCmdOptions *o)
{
    const char *bad = NULL;

    if (o->target_exists && o->overwrite) {
        bad = "-n writes into DEST, --overwrite replaces it: not both";
    } else if (strcmp(o->dst, "-") == 0 && (o->target_exists || o->overwrite)) {
        bad = "-n and --overwrite apply to files, not to stdout";
    } else if (o->base && o->target_is_zero) {
        bad = "a DEST that holds --base does not read as zeroes (--target-is-zero)";
    } else if (o->size && strcmp(o->src, "-") != 0) {
        bad = "--size is for a SOURCE '-' only (an image knows its size)";
    } else if (strcmp(o->src, "-") == 0 && strcmp(o->dst, "-") == 0) {
        bad = "SOURCE and DEST cannot both be '-'";
    }
    if (bad) {
        usage_error(copy_help, "%s", bad);
    }
}

static void parse_copy_options(int argc, char **argv, CopyCmdOptions *o)
{
    static const struct option opts[] = {
        { "target-exists", no_argument, NULL, 'n' },
        { "overwrite", no_argument, NULL, OPT_OVERWRITE },
        { "target-is-zero", no_argument, NULL, OPT_TARGET_IS_ZERO },
        { "prezeroed", no_argument, NULL, OPT_TARGET_IS_ZERO },
        { "base", required_argument, NULL, OPT_BASE },
        { "verify", no_argument, NULL, OPT_VERIFY },
        { "size", required_argument, NULL, OPT_SIZE },
        { "connections", required_argument, NULL, OPT_CONNECTIONS },
        { "requests", required_argument, NULL, OPT_REQUESTS },
        { "request-size", required_argument, NULL, OPT_REQUEST_SIZE },
        { "progress", required_argument, NULL, OPT_PROGRESS },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int ch;

    *o = (CopyCmdOptions){ .progress_fd = -1 };
    while ((ch = getopt_long(argc, argv, "f:O:pnh", opts, NULL)) != -1) {
        switch (ch) {
        case 'f': o->src_format = optarg; break;
        case 'O': o->dst_format = optarg; break;
        case 'p': o->bar = true; break;
        case 'n': o->target_exists = true; break;
        case 'h':
            fputs(copy_help, stdout);
            exit(EXIT_DONE);
        default:
            if (!take_long_option(ch, o)) {
                usage_error(copy_help, "unknown option");
            }
        }
    }
    if (argc - optind != 2) {
        usage_error(copy_help, "SOURCE and DEST are required, and nothing else");
    }
    o->src = argv[optind];
    o->dst = argv[optind + 1];
    check_combinations(o);
}

/* ---- Progress ---- */

typedef struct CopyRun {
    const CopyCmdOptions *o;
    Progress *bar;
    int last_percent;           /* the last 'Progress: N' written, -1 */
} CopyRun;

static void write_percent(CopyRun *r, int percent)
{
    if (r->o->progress_fd < 0 || percent <= r->last_percent) {
        return;
    }
    char line[32];
    int n = snprintf(line, sizeof(line), "Progress: %d\n", percent);
    if (write(r->o->progress_fd, line, (size_t)n) == n) {
        r->last_percent = percent;
    }
}

/* Up to 99 while anything is left: 100 says done, flushed and verified. */
static bool on_progress(const CopyStats *s, void *opaque)
{
    CopyRun *r = opaque;
    int percent = s->work ? (int)MIN(99, s->done * 100 / s->work) : 0;

    write_percent(r, percent);
    if (r->bar) {
        g_autofree char *w = size_to_str(s->written);
        g_autofree char *z = size_to_str(s->zeroed + s->skipped);
        g_autofree char *detail = g_strdup_printf("data %s, zero/skipped %s", w, z);
        progress_update(r->bar, s->done, s->work, detail);
    }
    return !blkmig_interrupted;
}

/* ---- The copy ---- */

static void die(const char *what, GError *err)
{
    fprintf(stderr, "blkmig: %s%s%s\n", what, what[0] ? ": " : "", err->message);
    g_error_free(err);
    bdrv_close_all();
    exit(EXIT_FAILED);
}

/* The ends, opened in the order the sizes allow: a pipe source learns its
 * size from an existing target. */
static void open_ends(const CopyCmdOptions *o, CopyEnd *src, CopyEnd *base, CopyTarget *t)
{
    GError *err = NULL;

    if (!copy_open_source(src, o, o->size, &err)) {
        die("source", err);
    }
    if (o->base && !copy_open_base(base, o, &err)) {
        die("base", err);
    }
    if (!copy_open_target(t, o, src->size, src->bs, &err)) {
        die("target", err);
    }
    if (!src->side) {
        src->size = t->end.size;
        src->side = copy_side_stream(STDIN_FILENO, src->size, false, "stdin");
    }
}

/* --requests, or the default for the sides: between local files, where
 * the CPU copies every byte, COPY_DEFAULT_LOCAL_REQUESTS; from an NBD
 * server into a local file COPY_DEFAULT_NBD_SOURCE_REQUESTS; else (an NBD
 * target, a stream) the engine's, which keeps a server busy. */
static unsigned requests_for(const CopyCmdOptions *o, const CopyEnd *src, const CopyEnd *base,
                             const CopyTarget *t)
{
    bool local_src = src->is_local && (!o->base || base->is_local);

    if (o->requests || !t->end.is_local) {
        return o->requests;
    }
    return local_src ? COPY_DEFAULT_LOCAL_REQUESTS
                     : src->is_stream ? 0 : COPY_DEFAULT_NBD_SOURCE_REQUESTS;
}

/* --request-size, or for an NBD target the size its servers write best. */
static uint64_t request_size_for(const CopyCmdOptions *o, const CopyTarget *t)
{
    return o->request_size ? o->request_size : t->is_remote ? COPY_DEFAULT_NBD_WRITE_SIZE : 0;
}

static CopyOutcome run_copy(const CopyCmdOptions *o, CopyEnd *src, CopyEnd *base,
                            CopyTarget *t, CopyStats *stats, GError **errp)
{
    CopyRun r = { .o = o, .last_percent = -1 };
    CopyParams p = { .requests = requests_for(o, src, base, t),
                     .request_size = request_size_for(o, t),
                     .target_is_zero = o->target_is_zero || t->is_new,
                     .base = base->side, .verify = o->verify,
                     .flush_interval = t->is_remote ? REMOTE_FLUSH_INTERVAL : 0,
                     .progress = on_progress, .opaque = &r };

    if (o->bar) {
        r.bar = progress_new(stderr, "copy");
    }
    CopyOutcome out = copy_run(src->side, t->end.side, &p, stats, errp);
    if (r.bar) {
        progress_finish(r.bar);
    }
    if (out == COPY_DONE && !copy_commit_target(t, o->dst, errp)) {
        out = COPY_FAILED;
    }
    if (out == COPY_DONE) {
        write_percent(&r, 100);
    }
    return out;
}

static int report(CopyOutcome out, GError *err, const CopyStats *st, const CopyTarget *t,
                  const CopyCmdOptions *o)
{
    if (out == COPY_DONE) {
        return EXIT_DONE;
    }
    fprintf(stderr, "blkmig: copy %s: %s\n", out == COPY_CANCELLED ? "cancelled" : "failed",
            err->message);
    if (!t->is_new && !t->end.is_stream && st->work > 0) {      /* the copy began */
        fprintf(stderr, "blkmig: '%s' was written in place and does not hold a copy of "
                "'%s'\n", o->dst, o->src);
    }
    return out == COPY_CANCELLED ? EXIT_CANCELLED : EXIT_FAILED;
}

int cmd_copy(int argc, char **argv)
{
    CopyCmdOptions o;
    CopyEnd src = { 0 }, base = { 0 };
    CopyTarget t;
    CopyStats stats = { 0 };
    GError *err = NULL;

    parse_copy_options(argc, argv, &o);
    catch_interrupts();
    signal(SIGPIPE, SIG_IGN);       /* a reader gone is EPIPE, with a message */
    open_ends(&o, &src, &base, &t);
    CopyOutcome out = run_copy(&o, &src, &base, &t, &stats, &err);
    int code = report(out, err, &stats, &t, &o);
    g_clear_error(&err);
    copy_discard_target(&t);        /* after a commit: nothing left to do */
    copy_close_end(&base);
    copy_close_end(&src);
    return code;
}
