/* blkmigd's command line: getopt_long over the options of DESIGN.md, every
 * value syntax-checked here so that a bad one fails before start-up has
 * created anything. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "qapi/qmp.h"
#include "system/drive.h"
#include "system/workload.h"
#include "system-internal.h"
#include "util/sockets.h"

enum {
    OPT_DRIVE = 256, OPT_QMP, OPT_NBD, OPT_INCOMING, OPT_WORKLOAD, OPT_PAUSED,
    OPT_DAEMONIZE, OPT_PIDFILE, OPT_LOG, OPT_VERSION, OPT_OBJECT, OPT_MACHINE,
    OPT_HELP = 'h',
};

static const struct option long_options[] = {
    { "drive", required_argument, NULL, OPT_DRIVE },
    { "qmp", required_argument, NULL, OPT_QMP },
    { "nbd", required_argument, NULL, OPT_NBD },
    { "incoming", required_argument, NULL, OPT_INCOMING },
    { "workload", required_argument, NULL, OPT_WORKLOAD },
    { "paused", no_argument, NULL, OPT_PAUSED },
    { "daemonize", no_argument, NULL, OPT_DAEMONIZE },
    { "pidfile", required_argument, NULL, OPT_PIDFILE },
    { "log", required_argument, NULL, OPT_LOG },
    { "version", no_argument, NULL, OPT_VERSION },
    { "object", required_argument, NULL, OPT_OBJECT },
    { "machine", required_argument, NULL, OPT_MACHINE },
    { "help", no_argument, NULL, OPT_HELP },
    { NULL, 0, NULL, 0 },
};

static const char usage_text[] =
"Usage: blkmigd [OPTION]...\n"
"Emulator daemon owning a VM's disks; a management layer drives it over QMP\n"
"and moves the disks to another blkmigd with live block migration.\n"
"\n"
"  --drive id=ID,file=PATH[,format=raw|qcow2|auto][,size=SIZE][,create=on|off]\n"
"          [,overwrite=on|off][,backing=PATH][,backing-format=raw|qcow2]\n"
"          [,cluster-size=SIZE][,cache=writeback|none][,aio=threads|native]\n"
"          [,read-only=on|off][,copy-on-read=on|off][,tls-creds=ID]\n"
"                     add a disk (repeatable).  id: a letter, then letters,\n"
"                     digits, '-', '.', '_'; also the NBD export name.\n"
"                     format: raw (the default), qcow2, or auto: qcow2 if\n"
"                     the header says so, else raw, and then guest writes\n"
"                     that would make sector 0 look like another format are\n"
"                     refused.  A qcow2 image opens with the backing chain\n"
"                     its header names (read-only); backing= and\n"
"                     backing-format= replace it (a relative name is\n"
"                     relative to the image's directory).  size: bytes or\n"
"                     with a suffix k, M, G, T (binary); without create=on\n"
"                     it must match the image's (virtual) size.  create=on\n"
"                     makes a new image of size bytes: raw, a sparse file;\n"
"                     qcow2, an empty image (cluster-size 512 to 2M, default\n"
"                     64k) over backing= if given (size defaults to the\n"
"                     backing image's).  A file that exists but\n"
"                     is empty (0 bytes) is used; a file that exists and is\n"
"                     not empty is left as it is and\n"
"                     blkmigd refuses to start (drop create=on to use that\n"
"                     image).  overwrite=on, only with create=on, erases\n"
"                     such a file and makes a new image: its old data is\n"
"                     lost.  cache=none opens with O_DIRECT; aio=native uses\n"
"                     Linux AIO.  copy-on-read=on: what the guest reads\n"
"                     from the backing chain is also written into the\n"
"                     image (whole clusters), so later reads stay local.\n"
"                     backing= may be an NBD URI (nbd://HOST[:PORT]/EXPORT,\n"
"                     nbd+unix:///EXPORT?socket=PATH); QMP block-stream\n"
"                     copies the rest in and drops it.\n"
"                     tls-creds: an endpoint=client --object for an nbds://\n"
"                     or nbds+unix:// file (a backing file on the same server\n"
"                     inherits it).  A ',' inside a value is written ',,'.\n"
"  --qmp unix:PATH | tcp:HOST:PORT[,tls-creds=ID[,tls-authz=ID]]\n"
"                     serve QMP there (repeatable), any number of clients;\n"
"                     with tls-creds (tcp only) over TLS: a client must\n"
"                     complete the handshake within 10 s (with the x509\n"
"                     default verify-peer=on, show a certificate the CA\n"
"                     signed, and with tls-authz pass that authz object)\n"
"  --nbd unix:PATH | tcp:HOST:PORT[,tls-creds=ID[,tls-authz=ID]]\n"
"          [,tls=off|on|require]\n"
"                     export every drive over NBD (the guest's I/O path);\n"
"                     I/O is served only while the guest runs.  With\n"
"                     tls-creds (an endpoint=server object) clients upgrade\n"
"                     with NBD_OPT_STARTTLS (nbds:// URIs); tls=require, the\n"
"                     default then, serves nothing in the clear, tls=on\n"
"                     makes TLS optional\n"
"  --incoming tcp:HOST:PORT | unix:PATH | file:PATH | defer\n"
"                     wait for an incoming migration (state inmigrate);\n"
"                     a socket listens again after a failed migration;\n"
"                     'defer' waits for the QMP command migrate-incoming\n"
"  --machine NAME     the machine type of the migration stream's\n"
"                     configuration section (QEMU's -machine, default none):\n"
"                     sent with qemu-compat, and an incoming QEMU stream\n"
"                     must name it\n"
"  --workload drive=ID[,pattern=randwrite|seqwrite|randrw][,bs=SIZE]\n"
"          [,rate=MIBS][,seed=N][,zero-frac=F]\n"
"                     run a built-in guest writing to drive ID (repeatable)\n"
"                     while the guest runs.  pattern: random or sequential\n"
"                     (wrapping) writes of bs bytes, or random with half of\n"
"                     the requests reads (default randwrite).  bs: multiple\n"
"                     of 512 up to 64M (default 4k).  rate: MiB/s written,\n"
"                     0 = unlimited (default 10).  seed: PRNG seed (default\n"
"                     1).  zero-frac: share of writes whose data is all\n"
"                     zeroes, 0 to 1 (default 0).\n"
"  --object tls-creds-x509,id=ID,dir=DIR[,endpoint=server|client]\n"
"          [,verify-peer=on|off][,sanity-check=on|off][,priority=STRING]\n"
"  --object tls-creds-psk,id=ID,dir=DIR[,endpoint=server|client]\n"
"          [,username=NAME][,priority=STRING]\n"
"  --object authz-simple,id=ID,identity=DN\n"
"                     define an object that other options and QMP refer to\n"
"                     by id (repeatable; as QEMU's, also as a JSON object,\n"
"                     which authz-list needs for its rules).  x509: DIR holds\n"
"                     ca-cert.pem, server-cert.pem + server-key.pem or\n"
"                     client-cert.pem + client-key.pem, optionally\n"
"                     ca-crl.pem and dh-params.pem; checked when loaded.\n"
"                     endpoint defaults to client, verify-peer to on.  PSK:\n"
"                     DIR/keys.psk holds USERNAME:HEXKEY lines (psktool);\n"
"                     a client uses username's key (default qemu).\n"
"                     authz-simple allows one x509 distinguished name\n"
"                     (e.g. 'O=Example,CN=src1'), a ',' in it written ',,'\n"
"  --paused           start with the guest stopped (state prelaunch; QMP cont\n"
"                     starts it); after an incoming migration, stay paused\n"
"  --daemonize        run in the background; returns once every socket is\n"
"                     listening, with exit code 1 if start-up failed\n"
"  --pidfile PATH     write the process id to PATH (removed at exit)\n"
"  --log PATH         append log messages to PATH instead of stderr\n"
"                     (set BLKMIG_DEBUG=1 for debug messages)\n"
"  --version          print the version and exit\n"
"  -h, --help         print this help and exit\n"
"\n"
"A management layer controls blkmigd over QMP, so --qmp is needed.  Without\n"
"it blkmigd starts only in the foreground (no --daemonize) and with --nbd,\n"
"--incoming or --workload to serve, warning that only SIGINT or SIGTERM can\n"
"stop it; otherwise it refuses to start.  Every unix socket it creates\n"
"(--qmp, --nbd, --incoming, migrate-incoming) is mode 0600.\n"
"\n"
"Without --incoming or --paused the guest starts running at once.  blkmigd\n"
"exits with status 0 after the QMP command quit, SIGINT or SIGTERM, 1 when\n"
"start-up fails, and 64 when the command line is wrong.\n";

static void init_config(BlkmigdConfig *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->drives = g_ptr_array_new_with_free_func(g_free);
    cfg->qmp = g_ptr_array_new_with_free_func(g_free);
    cfg->workloads = g_ptr_array_new_with_free_func(g_free);
    cfg->objects = g_ptr_array_new_with_free_func(g_free);
}

void cmdline_config_clear(BlkmigdConfig *cfg)
{
    g_clear_pointer(&cfg->drives, g_ptr_array_unref);
    g_clear_pointer(&cfg->qmp, g_ptr_array_unref);
    g_clear_pointer(&cfg->workloads, g_ptr_array_unref);
    g_clear_pointer(&cfg->objects, g_ptr_array_unref);
    g_clear_pointer(&cfg->nbd, g_free);
    g_clear_pointer(&cfg->incoming, g_free);
    g_clear_pointer(&cfg->pidfile, g_free);
    g_clear_pointer(&cfg->log, g_free);
    g_clear_pointer(&cfg->machine, g_free);
}

static bool check_endpoint(const char *option, const char *value, unsigned kinds,
                           GError **errp)
{
    Endpoint ep;
    GError *err = NULL;
    if (!endpoint_parse(value, kinds, &ep, &err)) {
        g_set_error(errp, BLKMIGD_ERROR, 0, "%s: %s", option, err->message);
        g_error_free(err);
        return false;
    }
    endpoint_clear(&ep);
    return true;
}

static bool check_workload(const char *value, GError **errp)
{
    WorkloadOptions opts;
    if (!workload_parse(value, &opts, errp)) {
        return false;
    }
    workload_options_clear(&opts);
    return true;
}

/* A name QEMU's configuration section can carry, and that is printable. */
static bool check_machine(const char *name, GError **errp)
{
    if (strlen(name) > 256 || strspn(name, "abcdefghijklmnopqrstuvwxyz"
                                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._") != strlen(name)) {
        g_set_error(errp, BLKMIGD_ERROR, 0, "--machine: '%s' is not a machine type name "
                    "(letters, digits, '-', '.', '_'; at most 256)", name);
        return false;
    }
    return true;
}

/* Options given at most once. */
static bool set_once(const char *option, char **slot, const char *value, GError **errp)
{
    if (*slot) {
        g_set_error(errp, BLKMIGD_ERROR, 0, "%s: given more than once ('%s' and '%s')",
                    option, *slot, value);
        return false;
    }
    if (!*value) {
        g_set_error(errp, BLKMIGD_ERROR, 0, "%s: empty value", option);
        return false;
    }
    *slot = g_strdup(value);
    return true;
}

/* A wrong command line, as for the blkmig client (DESIGN.md); 1 is for a
 * start-up that failed. */
#define EXIT_USAGE 64

#define SOCKET_KINDS ((1u << ENDPOINT_TCP) | (1u << ENDPOINT_UNIX))
#define INCOMING_KINDS (SOCKET_KINDS | (1u << ENDPOINT_FILE) | (1u << ENDPOINT_DEFER))

static bool take_option(int opt, const char *arg, BlkmigdConfig *cfg, GError **errp)
{
    switch (opt) {
    case OPT_DRIVE:
        g_ptr_array_add(cfg->drives, g_strdup(arg));
        return drive_check(arg, errp);
    case OPT_QMP:
        g_ptr_array_add(cfg->qmp, g_strdup(arg));
        return qmp_option_check(arg, errp);
    case OPT_OBJECT:
        g_ptr_array_add(cfg->objects, g_strdup(arg));
        return object_option_check(arg, errp);
    case OPT_WORKLOAD:
        g_ptr_array_add(cfg->workloads, g_strdup(arg));
        return check_workload(arg, errp);
    case OPT_NBD:
        return set_once("--nbd", &cfg->nbd, arg, errp) && nbd_option_check(arg, errp);
    case OPT_INCOMING:
        return set_once("--incoming", &cfg->incoming, arg, errp) &&
               check_endpoint("--incoming", arg, INCOMING_KINDS, errp);
    case OPT_PIDFILE:
        return set_once("--pidfile", &cfg->pidfile, arg, errp);
    case OPT_LOG:
        return set_once("--log", &cfg->log, arg, errp);
    case OPT_MACHINE:
        return set_once("--machine", &cfg->machine, arg, errp) &&
               check_machine(arg, errp);
    case OPT_PAUSED:
        cfg->paused = true;
        return true;
    case OPT_DAEMONIZE:
        cfg->daemonize = true;
        return true;
    }
    return false;
}

/* getopt's own messages are off ("opterr = 0") so ours can name the
 * option exactly as typed. */
static int bad_usage(const char *fmt, const char *what)
{
    fprintf(stderr, "blkmigd: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, " (try --help)\n");
    return EXIT_USAGE;
}

/* QMP is how blkmigd is controlled (and quit).  Without it only a signal
 * stops it: acceptable for a foreground process with something to serve
 * (a plain NBD server, a one-shot incoming migration, a demo workload),
 * with a warning; refused when nothing could stop it but kill(1). */
static bool check_controllable(const BlkmigdConfig *cfg, GError **errp)
{
    if (cfg->qmp->len > 0) {
        return true;
    }
    if (cfg->daemonize) {
        g_set_error(errp, BLKMIGD_ERROR, 0, "--daemonize needs --qmp: in the background "
                    "nothing but a signal could stop blkmigd; add --qmp unix:PATH");
        return false;
    }
    if (!cfg->nbd && !cfg->incoming && cfg->workloads->len == 0) {
        g_set_error(errp, BLKMIGD_ERROR, 0, "no --qmp given: nothing could control this "
                    "daemon and only a signal could stop it; add --qmp unix:PATH");
        return false;
    }
    fprintf(stderr, "blkmigd: warning: no --qmp given: nothing can control this daemon "
            "and only SIGINT or SIGTERM stops it\n");
    return true;
}

/* What needs the whole command line. */
static int check_config(int argc, char **argv, const BlkmigdConfig *cfg)
{
    GError *err = NULL;

    if (optind < argc) {
        return bad_usage("unexpected argument '%s'", argv[optind]);
    }
    if (!check_controllable(cfg, &err)) {
        int rc = bad_usage("%s", err->message);
        g_error_free(err);
        return rc;
    }
    return -1;
}

int cmdline_parse(int argc, char **argv, BlkmigdConfig *cfg)
{
    int opt, rc;

    init_config(cfg);
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, ":h", long_options, NULL)) != -1) {
        GError *err = NULL;
        switch (opt) {
        case OPT_HELP:
            fputs(usage_text, stdout);
            return 0;
        case OPT_VERSION:
            printf("blkmigd %d.%d.%d\n", BLKMIG_VERSION_MAJOR, BLKMIG_VERSION_MINOR,
                   BLKMIG_VERSION_MICRO);
            return 0;
        case ':':
            return bad_usage("option '%s' needs a value", argv[optind - 1]);
        case '?':
            if (optopt >= OPT_DRIVE) {  /* a known option given "=VALUE" */
                char *name = g_strndup(argv[optind - 1], strcspn(argv[optind - 1], "="));
                rc = bad_usage("option '%s' takes no value", name);
                g_free(name);
                return rc;
            }
            return bad_usage("unknown option '%s'", argv[optind - 1]);
        default:
            if (!take_option(opt, optarg, cfg, &err)) {
                fprintf(stderr, "blkmigd: %s\n", err->message);
                g_error_free(err);
                return EXIT_USAGE;
            }
        }
    }
    return check_config(argc, argv, cfg);
}
