#!/usr/bin/env bash
# make bench: blkmig live block migration against QEMU 7.2 (drive-mirror,
# legacy block migration), qemu-img convert, nbdcopy, cp and raw loopback
# TCP, in one run on the same images and the same loopback.
#
# Prints a table (wall time, and durable time = wall time + a timed
# `sync DST` taken before any server stops) followed by the targets block,
# and writes build/bench/results.csv, results.txt, results.png (gnuplot)
# and runs.csv (every single run).
# tests/bench/README.md explains each row, column and knob.
#
# Environment (defaults in brackets):
#   BENCH_SIZE [4G]         image size (k/M/G suffixes)
#   BENCH_REPS [3]          timed runs per system and image (median shown)
#   BENCH_DATA_PCT [10]     share of the sparse images holding data
#   BENCH_WORKLOAD [drive=disk0,pattern=randwrite,bs=4k,rate=50]
#                           blkmigd --workload of the live-image runs
#   BENCH_SYSTEMS [blkmig blkmig+zstd blkmig+multifd blkmig+inc blkmig+tls blkmig+cksum mirror mirror+top legacy qemu-img nbdcopy cp tcp]
#                           blkmig+zstd: capability compress (zstd level 1);
#                           blkmig+cksum: capability block-checksum;
#                           blkmig+multifd: capability multifd, 2 channels;
#                           blkmig+inc (block-incremental) and mirror+top
#                           (sync=top): the qcow2 image only;
#                           blkmig+tls: tls-creds (x509, certtool) on both
#                           sides, also on the live image
#   BENCH_IMAGES [sparse full live qcow2]
#   BENCH_LEGACY_BWS [1G 512M 256M]  max-bandwidth tries for QEMU legacy,
#                           one run each, highest first, until identical
#   BENCH_LEGACY_LONG [20]  seconds: a default-bandwidth legacy run longer
#                           than this is not repeated (time budget)
#   BENCH_WIRECOUNT [1]     one extra, untimed run of qemu-img and nbdcopy
#                           through a counting proxy for their wire bytes
#   BENCH_TIMEOUT [300]     seconds before a single run is declared FAILED
#   BENCH_LIVE_TIMEOUT [150] the same for blkmig's live-image migration
#                           (cancelled then: it did not converge in time)
#   BENCH_LONG [60]         seconds: a run longer than this (or FAILED by
#                           timeout) is not repeated (time budget)
#   BENCH_DIR               where the scratch directory is made [TMPDIR or /tmp];
#                           /dev/shm (tmpfs) measures the engines without a disk
#   BENCH_KEEP [0]          1: keep the scratch directory
#   BENCH_NBD_IOPS [1]      0: skip the NBD random I/O table (nbd-iops.sh:
#                           fio 4 KiB random read and write through
#                           blkmigd's export of a BENCH_SIZE qcow2 on a
#                           base, against qemu-nbd serving the same image)
#   BENCH_NBD_IOPS_RUNTIME [5]  seconds per fio run of that table
#   BLKMIGD, BLKMIG         binaries [build/blkmigd, build/blkmig]
set -uo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=$ROOT/build/bench
BLKMIGD=${BLKMIGD:-$ROOT/build/blkmigd}
BLKMIG=${BLKMIG:-$ROOT/build/blkmig}
SIZE=${BENCH_SIZE:-4G}
REPS=${BENCH_REPS:-3}
DATA_PCT=${BENCH_DATA_PCT:-10}
WORKLOAD=${BENCH_WORKLOAD:-drive=disk0,pattern=randwrite,bs=4k,rate=50}
SYSTEMS=${BENCH_SYSTEMS:-blkmig blkmig+zstd blkmig+multifd blkmig+inc blkmig+tls blkmig+cksum mirror mirror+top legacy qemu-img nbdcopy cp tcp}
IMAGES=${BENCH_IMAGES:-sparse full live qcow2}
LEGACY_BWS=${BENCH_LEGACY_BWS:-1G 512M 256M}
LEGACY_LONG=${BENCH_LEGACY_LONG:-20}
WIRECOUNT=${BENCH_WIRECOUNT:-1}
TIMEOUT=${BENCH_TIMEOUT:-300}
LIVE_TIMEOUT=${BENCH_LIVE_TIMEOUT:-150}
LONG=${BENCH_LONG:-60}
KEEP=${BENCH_KEEP:-0}
QEMU=qemu-system-x86_64

START=$(date +%s.%N)
LOAD0=$(cut -d' ' -f1 /proc/loadavg)
mkdir -p "$OUT"
[ -z "${BENCH_DIR:-}" ] || mkdir -p "$BENCH_DIR"
W=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/blkmig-bench.XXXXXX") || exit 1
QMP_DIR=$W
# shellcheck source=tests/bench/qmp.sh
source "$ROOT/tests/bench/qmp.sh"
# shellcheck source=tests/bench/lib.sh
source "$ROOT/tests/bench/lib.sh"

declare -A PIDS=()
NS_PID=

cleanup() {
    local name
    for name in "${!QMP_PID[@]}"; do qmp_close "$name"; done
    for name in "${!PIDS[@]}"; do
        kill -9 "${PIDS[$name]}" 2>/dev/null || true
        wait "${PIDS[$name]}" 2>/dev/null || true
    done
    if [ -n "$NS_PID" ]; then
        kill "$NS_PID" 2>/dev/null || true
        wait "$NS_PID" 2>/dev/null || true
    fi
    if [ "$KEEP" = 1 ]; then
        echo "bench: scratch kept in $W"
    else
        rm -rf "$W"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

elapsed() { awk -v s="$START" -v n="$(date +%s.%N)" 'BEGIN { printf "%4.0f", n - s }'; }
say() { printf 'bench: [%ss] %s\n' "$(elapsed)" "$*"; }
# rss_pair A B: the run's summed and single-process peak RSS (KiB).
rss_pair() { R[rss]=$(($1 + $2)); R[rss_max]=$(($1 > $2 ? $1 : $2)); }

# ---------------------------------------------------------------- set-up

# Packages the benchmark needs beyond scripts/deps.sh (idempotent; apt-get
# update only when something is missing).
ensure_packages() {
    local p missing=""
    for p in gnuplot-nox qemu-system-x86 qemu-utils libnbd-bin jq socat time iproute2 util-linux; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" != 0 ]; then
        say "missing packages:$missing (run as root: apt-get install -y$missing); affected rows will say FAILED"
        return 0
    fi
    say "installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >"$W/apt.log" 2>&1
    apt-get install -y -q --no-install-recommends $missing >>"$W/apt.log" 2>&1 ||
        { say "apt-get install failed (see below); affected rows will say FAILED"; tail -n 5 "$W/apt.log"; }
}

build_helpers() {
    local h flags
    for h in mkimage tcpcopy wirecount samefile; do
        flags=""
        case "$h" in tcpcopy|wirecount) flags=-pthread ;; esac
        if [ ! -x "$OUT/$h" ] || [ "$ROOT/tests/bench/$h.c" -nt "$OUT/$h" ] ||
           [ "$ROOT/tests/bench/bench-util.h" -nt "$OUT/$h" ]; then
            ${CC:-cc} -O2 -Wall $flags -o "$OUT/$h" "$ROOT/tests/bench/$h.c" || { echo "bench: cannot build $h" >&2; exit 1; }
        fi
    done
}

# The work tree is shared: blkmigd may be rebuilt while the benchmark
# runs.  Every run uses a copy taken now, so all runs test the same build.
snapshot_binaries() {
    mkdir -p "$W/bin"
    local b
    for b in BLKMIGD BLKMIG; do
        if [ -x "${!b}" ] && cp "${!b}" "$W/bin/"; then
            printf -v "$b" '%s' "$W/bin/$(basename "${!b}")"
        else
            say "${!b} not built: blkmig rows will say FAILED"
        fi
    done
}

# ---------------------------------------------------------------- results

RUNS=$OUT/runs.tsv
: >"$RUNS"
declare -A R
# New fields go after note, so report.sh still reads an older runs.tsv.
#   sync      seconds of `sync DST` right after the timed part (see dst_sync)
#   rss_max   largest peak RSS (KiB) of a single process (blkmig: of the
#             two blkmigd; the rss field is the sum over all processes)
#   sync_gap  seconds from the end of the timed part to the start of sync
FIELDS="system image rep status time wire dst_alloc src_alloc rss identical sync downtime guest client note rss_max sync_gap"

new_run() { R=(); R[system]=$1; R[image]=$2; R[rep]=$3; R[status]=ok; FAIL=""; }
emit() {
    local f line=""
    for f in $FIELDS; do line+="${R[$f]:-}"$'\t'; done
    printf '%s\n' "${line%$'\t'}" >>"$RUNS"
}
# finish: record the run and print a progress line.
finish() {
    if [ -n "$FAIL" ]; then
        R[status]=FAILED
        R[note]="${R[note]:+${R[note]}; }$FAIL"
    fi
    emit
    local what
    case "${R[status]}" in
    FAILED) what="FAILED: $FAIL" ;;
    count) what="counting run: wire ${R[wire]:-?} bytes" ;;
    *) what="${R[time]} s${R[identical]:+, identical ${R[identical]}}${R[wire]:+, wire $(mib "${R[wire]}") MiB}" ;;
    esac
    say "${R[system]} / ${R[image]} run ${R[rep]}: $what"
    stop_all
    rm -f "$W/dst.raw" "$W/dst.qcow2"
}

# dst_sync FILE [END]: flush FILE to stable storage and time it; called as
# soon as the timed part of a run has ended and before any server of the
# run is stopped or asked to quit, so no flush (QEMU's and qemu-nbd's at
# exit included) escapes being timed.  The time is not part of the run's
# time; time + sync is its durable time.  END (epoch seconds), the end of
# the timed part, gives R[sync_gap]; or call sync_gap END afterwards.
SYNC_T0=
dst_sync() {
    local t
    t=$(now)
    SYNC_T0=$t
    # sync(1) with a file argument fsyncs that file.
    if ! sync "$1" 2>"$W/sync.err"; then
        sync
        R[note]="${R[note]:+${R[note]}; }sync FILE failed ($(head -n 1 "$W/sync.err")): global sync timed"
    fi
    R[sync]=$(sub "$(now)" "$t")
    [ -z "${2:-}" ] || sync_gap "$2"
}

# sync_gap END: seconds from END to the start of the last dst_sync.
sync_gap() { R[sync_gap]=$(sub "$SYNC_T0" "$1"); }

# compare SRC DST: cmp and allocation figures (after dst_sync).  qcow2
# images are compared as the guest sees them, backing chains included.
compare() {
    local same
    # samefile is cmp that skips ranges that are holes in both files.
    case "$1" in
    *.qcow2) qemu-img compare -q -f qcow2 -F qcow2 "$1" "$2" 2>>"$W/compare.err"; same=$? ;;
    *) "$OUT/samefile" "$1" "$2" >/dev/null; same=$? ;;
    esac
    if [ "$same" = 0 ]; then R[identical]=yes; else R[identical]=DIFFERS; fi
    R[dst_alloc]=$(allocated "$2")
    R[src_alloc]=$(allocated "$1")
}

# A row that is not a run: something report.sh prints in the table header.
meta() { R=(); R[system]=$1; R[image]=-; R[rep]=-; R[status]=meta; R[note]=$2; emit; }

# Which file system the scratch directory (images and destinations) is on:
# the numbers depend on it.  Also warns when it lacks the room the images
# and one destination need (a full destination runs out of space then).
describe_scratch() {
    local fstype dfline need size avail mem
    fstype=$(stat -f -c %T "$W")
    # df: device, type, size, free
    dfline=$(df -h --output=source,fstype,size,avail "$W" | awk 'NR == 2 { printf "%s %s, size %s, %s free", $1, $2, $3, $4 }')
    local text="$W on $fstype (stat -f); df: $dfline"
    if [ "$fstype" = tmpfs ]; then
        text+="; tmpfs: storage is memory and a flush is free, so the engines are measured, not a disk"
    fi
    size=$(to_bytes "$SIZE")
    need=$((256 << 20))                        # sockets, logs, slack
    case " $IMAGES " in *" full "*) need=$((need + 2 * size)) ;; esac       # image + destination
    case " $IMAGES " in *" sparse "*|*" live "*) need=$((need + 2 * size * DATA_PCT / 100)) ;; esac
    case " $IMAGES " in *" live "*) need=$((need + 3 * size * DATA_PCT / 100)) ;; esac   # live copy + its destination, grown by the guest
    case " $IMAGES " in *" qcow2 "*) need=$((need + 5 * size * DATA_PCT / 100)) ;; esac  # base, overlay, a flattened destination
    avail=$(df -B1 --output=avail "$W" | awk 'NR == 2 { print $1 }')
    if [ "$avail" -lt "$need" ]; then
        say "WARNING: $W has $(mib "$avail") MiB free, the images and a destination need about $(mib "$need") MiB: runs may fail (no space)"
        text+="; WARNING: $(mib "$avail") MiB free, about $(mib "$need") MiB needed"
    fi
    if [ "$fstype" = tmpfs ]; then
        mem=$(awk '/^MemAvailable:/ { printf "%.0f", $2 * 1024 }' /proc/meminfo)
        if [ "$mem" -lt "$need" ]; then
            say "WARNING: tmpfs scratch needs about $(mib "$need") MiB of memory, $(mib "$mem") MiB available"
            text+="; WARNING: about $(mib "$need") MiB needed in memory, $(mib "$mem") MiB available"
        fi
    fi
    say "scratch: $text"
    meta scratch "$text"
}

# ---------------------------------------------------------------- images

declare -A IMG

make_images() {
    local want
    for want in $IMAGES; do
        case "$want" in
        sparse|live)
            if [ -z "${IMG[sparse]:-}" ]; then
                say "image sparse: $SIZE raw, $DATA_PCT% random data in 64 KiB..1 MiB runs"
                "$OUT/mkimage" "$W/sparse.raw" "$SIZE" scatter "$DATA_PCT" 1 >/dev/null || exit 1
                IMG[sparse]=$W/sparse.raw
            fi ;;
        full)
            say "image full: $SIZE raw, every byte random"
            "$OUT/mkimage" "$W/full.raw" "$SIZE" full 2 >/dev/null || exit 1
            IMG[full]=$W/full.raw ;;
        qcow2) make_qcow2_image ;;
        *) echo "bench: unknown image '$want' (sparse, full, live, qcow2)" >&2; exit 2 ;;
        esac
    done
    # Written back now so that no run pays for it; they stay page-cache hot.
    sync
    if [ "$(stat -f -c %T "$W")" = tmpfs ]; then
        say "images written (tmpfs: they are in memory for every system)"
    else
        say "images written and synced (they stay in the page cache for every system)"
    fi
}

# The qcow2 image: an overlay holding DATA_PCT% of random data (its own
# runs) on a base holding as much (other runs): qemu-img converts each
# from a sparse raw image (holes stay unallocated clusters), then points
# the overlay at the base.
make_qcow2_image() {
    local part
    say "image qcow2: $SIZE qcow2 overlay, $DATA_PCT% random data, on a base with $DATA_PCT% more"
    for part in base:3 qcow2:4; do
        "$OUT/mkimage" "$W/${part%%:*}.raw" "$SIZE" scatter "$DATA_PCT" "${part#*:}" >/dev/null &&
        qemu-img convert -f raw -O qcow2 "$W/${part%%:*}.raw" "$W/${part%%:*}.qcow2" || exit 1
        rm -f "$W/${part%%:*}.raw"
    done
    qemu-img rebase -u -f qcow2 -b "$W/base.qcow2" -F qcow2 "$W/qcow2.qcow2" || exit 1
    IMG[qcow2]=$W/qcow2.qcow2
    QCOW2_BASE=$W/base.qcow2
}

# The source file of a run: the live image is a fresh copy of the sparse
# one each time, since its guest writes to it.
source_for() {
    if [ "$1" = live ]; then
        cp --sparse=always "${IMG[sparse]}" "$W/live.raw"
        sync "$W/live.raw"
        echo "$W/live.raw"
    else
        echo "${IMG[$1]}"
    fi
}

# ---------------------------------------------------------------- systems

# GNU time's peak RSS (KiB) of the last timed client, or empty.
TIME_BIN=/usr/bin/time
client_rss() { [ -s "$W/time.out" ] && tail -n 1 "$W/time.out"; }
# timed SECONDS CMD...: run CMD, killed (SIGTERM) after SECONDS; exit 124
# then.  GNU time reports the peak RSS of CMD (the largest descendant).
timed() {
    local limit=$1; shift
    : >"$W/time.out"
    if [ -x "$TIME_BIN" ]; then
        "$TIME_BIN" -f %M -o "$W/time.out" timeout "$limit" "$@"
    else
        timeout "$limit" "$@"
    fi
}

# Workload thread's bytes written (wchar) in blkmigd PID, or empty.
guest_wchar() {
    local t
    for t in /proc/"$1"/task/*; do
        if [ "$(cat "$t/comm" 2>/dev/null)" = workload ]; then
            awk '/^wchar:/ { print $2 }' "$t/io" 2>/dev/null
            return
        fi
    done
}

# blkmigd NAME ARGS...: start a daemon and open a QMP session to it.
start_blkmigd() {
    local name=$1; shift
    spawn "$name" "$BLKMIGD" "$@" --qmp "unix:$W/$name.qmp"
    wait_socket "$W/$name.qmp" "$name" && qmp_open "$name" "$W/$name.qmp" ||
        { FAIL=${FAIL:-"$name: no QMP: $(tail -n 1 "$W/$name.log")"}; return 1; }
}

# bench_blkmig IMAGE REP [VARIANT]: VARIANT (a key of BLKMIG_VARIANTS)
# turns on more source capabilities and parameters; its row is named
# blkmig+VARIANT.
declare -A BLKMIG_VARIANTS=(
    [zstd]='{"capabilities": [{"capability": "compress", "state": true}]}|{"compress-algorithm": "zstd", "compress-zstd-level": 1}'
    [multifd]='{"capabilities": [{"capability": "multifd", "state": true}]}|{"multifd-channels": 2}'
    [inc]='{"capabilities": []}|{"block-incremental": true}'
    [tls]='{"capabilities": []}|{"tls-creds": "tls0"}'
    [cksum]='{"capabilities": [{"capability": "block-checksum", "state": true}]}|{}'
)

# blkmig_drives IMAGE SRC VARIANT: the --drive of the source (SRC_DRIVE)
# and of the destination (DST_DRIVE, file DST) of a run.  The qcow2 image
# goes to a new qcow2 image, or with block-incremental (inc) to a new
# overlay on the same base file.
blkmig_drives() {
    local size
    size=$(qemu-img info --output=json "$2" 2>/dev/null | jq -r '."virtual-size"' 2>/dev/null)
    case "$1" in
    qcow2)
        SRC_DRIVE="id=disk0,file=$2,format=qcow2"
        DST=$W/dst.qcow2
        if [ "$3" = inc ]; then
            DST_DRIVE="id=disk0,file=$DST,format=qcow2,create=on,backing=$QCOW2_BASE,backing-format=qcow2"
        else
            DST_DRIVE="id=disk0,file=$DST,format=qcow2,create=on,size=$size"
        fi ;;
    *)
        SRC_DRIVE="id=disk0,file=$2"
        DST=$W/dst.raw
        DST_DRIVE="id=disk0,file=$DST,size=$(stat -c %s "$2"),create=on" ;;
    esac
}

# The x509 credentials of blkmig+tls (a CA, a server certificate for
# 127.0.0.1, a client one), made once per bench run.  ECDSA P-256 keys, as
# README's set-up makes them: with certtool's default (RSA 3072) each
# handshake signs twice with RSA (set-up 11-25 ms instead of 3-10 ms).
make_tls_creds() {
    local d=$W/pki
    [ -f "$d/client/client-cert.pem" ] && return 0
    mkdir -p "$d/server" "$d/client" || return 1
    printf 'cn = bench CA\nca\ncert_signing_key\nexpiration_days = 2\n' >"$d/ca.info"
    printf 'cn = localhost\nip_address = 127.0.0.1\ntls_www_server\nexpiration_days = 2\n' >"$d/s.info"
    printf 'cn = bench\ntls_www_client\nexpiration_days = 2\n' >"$d/c.info"
    {
        certtool --generate-privkey --key-type=ecdsa --outfile "$d/ca-key.pem" &&
        certtool --generate-self-signed --load-privkey "$d/ca-key.pem" --template "$d/ca.info" \
            --outfile "$d/ca-cert.pem" &&
        for who in server client; do
            certtool --generate-privkey --key-type=ecdsa --outfile "$d/$who/$who-key.pem" &&
            certtool --generate-certificate --load-privkey "$d/$who/$who-key.pem" \
                --load-ca-certificate "$d/ca-cert.pem" --load-ca-privkey "$d/ca-key.pem" \
                --template "$d/${who:0:1}.info" --outfile "$d/$who/$who-cert.pem" &&
            cp "$d/ca-cert.pem" "$d/$who/" || return 1
        done
    } >/dev/null 2>&1
}

# tls_object ENDPOINT: the --object of blkmig+tls for that side.
tls_object() {
    echo "tls-creds-x509,id=tls0,dir=$W/pki/$1,endpoint=$1"
}

set_variant() {
    local caps=${BLKMIG_VARIANTS[$1]%%|*} params=${BLKMIG_VARIANTS[$1]#*|}
    qmp src migrate-set-capabilities "$caps" >/dev/null &&
    qmp src migrate-set-parameters "$params" >/dev/null &&
    if [ "$1" = tls ]; then qmp dst migrate-set-parameters "$params" >/dev/null; fi
}

bench_blkmig() {
    local image=$1 rep=$2 variant=${3:-} src port t0 t1 ev info lo0 g0 g1 rc
    new_run "blkmig${variant:++$variant}" "$image" "$rep"
    [ -x "$BLKMIGD" ] && [ -x "$BLKMIG" ] || { FAIL="build/blkmigd or build/blkmig missing"; finish; return; }
    src=$(source_for "$image")
    port=$(free_port)
    local guest=() dst_tls=() src_tls=()
    [ "$image" = live ] && guest=(--workload "$WORKLOAD")
    blkmig_drives "$image" "$src" "$variant"
    if [ "$variant" = tls ]; then
        make_tls_creds || { FAIL="certtool failed (gnutls-bin)"; finish; return; }
        dst_tls=(--object "$(tls_object server)"); src_tls=(--object "$(tls_object client)")
    fi
    start_blkmigd dst --drive "$DST_DRIVE" "${dst_tls[@]}" --incoming "tcp:127.0.0.1:$port" &&
    start_blkmigd src --drive "$SRC_DRIVE" "${src_tls[@]}" "${guest[@]}" ||
        { finish; return; }
    qmp src migrate-set-capabilities '{"capabilities": [{"capability": "events", "state": true}]}' >/dev/null
    if [ -n "$variant" ] && ! set_variant "$variant"; then
        FAIL="setting the $variant capabilities failed"; finish; return
    fi
    lo0=$(lo_bytes)
    g0=$(guest_wchar "${PIDS[src]}")
    t0=$(now)
    local limit=$TIMEOUT
    [ "$image" = live ] && limit=$LIVE_TIMEOUT
    timed "$limit" "$BLKMIG" migrate --src "$W/src.qmp" --dst "$W/dst.qmp" --uri "tcp:127.0.0.1:$port" \
        --zero-blocks --max-bandwidth 0 >"$W/migrate.out" 2>&1
    rc=$?
    t1=$(now)
    R[client]=$(sub "$t1" "$t0")
    ev=$(qmp_event src MIGRATION '.data.status == "completed" or .data.status == "failed" or .data.status == "cancelled"' 10) ||
        ev=""
    # First the destination's flush (~0: blkmigd flushed before it
    # reported completion), both daemons still up.
    if [ "$rc" = 0 ]; then
        dst_sync "$DST"
        if [ -n "$ev" ]; then sync_gap "$(qmp_stamp "$ev")"; else sync_gap "$t1"; fi
    fi
    info=$(qmp src query-migrate)
    g1=$(guest_wchar "${PIDS[src]}")
    if [ "$rc" = 124 ]; then
        FAIL="not completed within $limit s (cancelled; $(mib "$(jq -r '.disk.transferred // 0' <<<"$info")") MiB sent)"
        finish; return
    fi
    if [ "$rc" != 0 ] || [ "$(jq -r .status <<<"$info")" != completed ]; then
        local why
        why=$(jq -r '."error-desc" // empty' <<<"$info" 2>/dev/null)
        [ -n "$why" ] || why=$(grep -m1 -i -E 'error|blkmig:' "$W/migrate.out")
        FAIL="blkmig migrate exit $rc: ${why:-status $(jq -r .status <<<"$info" 2>/dev/null)}"
        finish; return
    fi
    # Time: from issuing migrate until the source's MIGRATION completed
    # event (sent once the destination has loaded and flushed everything).
    if [ -n "$ev" ]; then R[time]=$(sub "$(qmp_stamp "$ev")" "$t0"); else R[time]=${R[client]}; fi
    R[wire]=$(jq -r '.disk.transferred // empty' <<<"$info")
    R[downtime]=$(jq -r '.downtime // empty' <<<"$info")
    [ -n "$g0" ] && [ -n "$g1" ] && R[guest]=$((g1 - g0))
    local lo1; lo1=$(lo_bytes)
    [ -n "$lo0" ] && R[note]="${R[note]:+${R[note]}; }loopback bytes $((lo1 - lo0))"
    local hs hd
    hs=$(hwm "${PIDS[src]}"); hd=$(hwm "${PIDS[dst]}")
    R[rss]=$(( hs + hd + $(client_rss || echo 0) ))
    R[rss_max]=$(( hs > hd ? hs : hd ))
    qmp src quit >/dev/null; qmp dst quit >/dev/null
    wait_exit src; wait_exit dst
    compare "$src" "$DST"
    finish
}

qemu_common=(-nodefaults -display none -S)

# mirror_images IMAGE SRC SYNC: the -blockdev options of QEMU's source
# (SRC_NODES) and destination (DST_NODES, file DST, made here).  The qcow2
# image goes to a new qcow2 image (sync=full) or to a new overlay on the
# same base file (sync=top); the others to a sparse raw file.
mirror_images() {
    local size
    case "$1" in
    qcow2)
        DST=$W/dst.qcow2
        size=$(qemu-img info --output=json "$2" | jq -r '."virtual-size"')
        if [ "$3" = top ]; then
            qemu-img create -q -f qcow2 -b "$QCOW2_BASE" -F qcow2 "$DST"
        else
            qemu-img create -q -f qcow2 "$DST" "$size"
        fi
        SRC_NODES=(-blockdev "driver=file,filename=$2,node-name=src-file"
                   -blockdev "driver=qcow2,file=src-file,node-name=src")
        DST_NODES=(-blockdev "driver=file,filename=$DST,node-name=dst-file,discard=unmap"
                   -blockdev "driver=qcow2,file=dst-file,node-name=dst,discard=unmap,detect-zeroes=unmap") ;;
    *)
        DST=$W/dst.raw
        truncate -s "$(stat -c %s "$2")" "$DST"
        SRC_NODES=(-blockdev "driver=file,filename=$2,node-name=src-file"
                   -blockdev "driver=raw,file=src-file,node-name=src")
        DST_NODES=(-blockdev "driver=file,filename=$DST,node-name=dst-file,discard=unmap"
                   -blockdev "driver=raw,file=dst-file,node-name=dst,discard=unmap,detect-zeroes=unmap") ;;
    esac
}

# bench_mirror IMAGE REP [SYNC]: SYNC full (default) or top (row
# qemu-mirror+top).
bench_mirror() {
    local image=$1 rep=$2 sync=${3:-full} src port t0 ev lo0 lo1
    new_run "qemu-mirror${3:++$3}" "$image" "$rep"
    command -v "$QEMU" >/dev/null || { FAIL="$QEMU not installed"; finish; return; }
    src=$(source_for "$image")
    port=$(free_port)
    mirror_images "$image" "$src" "$sync"
    spawn qsrc "$QEMU" -M none "${qemu_common[@]}" -qmp "unix:$W/qsrc.qmp,server=on,wait=off" \
        "${SRC_NODES[@]}"
    spawn qdst "$QEMU" -M none "${qemu_common[@]}" -qmp "unix:$W/qdst.qmp,server=on,wait=off" \
        "${DST_NODES[@]}"
    wait_socket "$W/qsrc.qmp" qsrc && wait_socket "$W/qdst.qmp" qdst &&
    qmp_open qsrc "$W/qsrc.qmp" && qmp_open qdst "$W/qdst.qmp" || { FAIL=${FAIL:-"no QMP"}; finish; return; }
    lo0=$(lo_bytes)
    qmp qdst nbd-server-start "{\"addr\": {\"type\": \"inet\", \"data\": {\"host\": \"127.0.0.1\", \"port\": \"$port\"}}}" >/dev/null &&
    qmp qdst nbd-server-add '{"device": "dst", "name": "disk0", "writable": true}' >/dev/null ||
        { FAIL="destination NBD export: $(tail -n 1 "$W/qdst.log")"; finish; return; }
    t0=$(now)
    if ! qmp qsrc blockdev-add "{\"driver\": \"nbd\", \"node-name\": \"tgt\", \"export\": \"disk0\", \"server\": {\"type\": \"inet\", \"host\": \"127.0.0.1\", \"port\": \"$port\"}}" >/dev/null 2>"$W/err" ||
       ! qmp qsrc blockdev-mirror "{\"job-id\": \"m0\", \"device\": \"src\", \"target\": \"tgt\", \"sync\": \"$sync\"}" >/dev/null 2>"$W/err"; then
        FAIL="$(cat "$W/err")"; finish; return
    fi
    ev=$(qmp_event qsrc BLOCK_JOB_READY 'true' "$TIMEOUT") || { FAIL="no BLOCK_JOB_READY: $(grep -m1 BLOCK_JOB "$W/qsrc.qlog")"; finish; return; }
    # Every write the job issued has been answered by the NBD server, i.e.
    # is in the destination's file: flush it at once, both QEMUs up.
    dst_sync "$DST"
    sync_gap "$(qmp_stamp "$ev")"
    R[time]=$(sub "$(qmp_stamp "$ev")" "$t0")
    lo1=$(lo_bytes)
    [ -n "$lo0" ] && R[wire]=$((lo1 - lo0)) && R[note]="${R[note]:+${R[note]}; }wire counted on loopback, incl. TCP/IP headers"
    rss_pair "$(hwm "${PIDS[qsrc]}")" "$(hwm "${PIDS[qdst]}")"
    # Finish the job without pivoting: the target stays a full copy.
    qmp qsrc block-job-cancel '{"device": "m0"}' >/dev/null
    qmp_event qsrc BLOCK_JOB_COMPLETED 'true' 60 >/dev/null || FAIL="mirror did not complete after cancel"
    qmp qsrc quit >/dev/null; qmp qdst quit >/dev/null
    wait_exit qsrc; wait_exit qdst
    compare "$src" "$DST"
    finish
}

# bench_legacy IMAGE REP LABEL [BANDWIDTH-BYTES]
bench_legacy() {
    local image=$1 rep=$2 label=$3 bw=${4:-} src port t0 ev evd info lo0 lo1 status
    new_run "$label" "$image" "$rep"
    command -v "$QEMU" >/dev/null || { FAIL="$QEMU not installed"; finish; return; }
    src=$(source_for "$image")
    port=$(free_port)
    truncate -s "$(stat -c %s "$src")" "$W/dst.raw"
    # A device must hold the drive: on a -M none destination, with no
    # device, QEMU 7.2 aborts on the first incoming block
    # (bdrv_co_write_req_prepare: child->perm & BLK_PERM_WRITE).
    local machine=(-M pc -m 16M "${qemu_common[@]}" -device virtio-blk-pci,drive=disk0)
    spawn qsrc "$QEMU" "${machine[@]}" -qmp "unix:$W/qsrc.qmp,server=on,wait=off" \
        -drive "if=none,id=disk0,file=$src,format=raw,cache=writeback"
    spawn qdst "$QEMU" "${machine[@]}" -qmp "unix:$W/qdst.qmp,server=on,wait=off" \
        -drive "if=none,id=disk0,file=$W/dst.raw,format=raw,cache=writeback" \
        -incoming "tcp:127.0.0.1:$port"
    wait_socket "$W/qsrc.qmp" qsrc && wait_socket "$W/qdst.qmp" qdst &&
    qmp_open qsrc "$W/qsrc.qmp" && qmp_open qdst "$W/qdst.qmp" || { FAIL=${FAIL:-"no QMP"}; finish; return; }
    qmp qsrc migrate-set-capabilities '{"capabilities": [{"capability": "block", "state": true}, {"capability": "zero-blocks", "state": true}, {"capability": "events", "state": true}]}' >/dev/null &&
    qmp qdst migrate-set-capabilities '{"capabilities": [{"capability": "events", "state": true}]}' >/dev/null ||
        { FAIL="migrate-set-capabilities failed"; finish; return; }
    if [ -n "$bw" ]; then
        qmp qsrc migrate-set-parameters "{\"max-bandwidth\": $bw}" >/dev/null || { FAIL="max-bandwidth $bw refused"; finish; return; }
    fi
    lo0=$(lo_bytes)
    t0=$(now)
    qmp qsrc migrate "{\"uri\": \"tcp:127.0.0.1:$port\"}" >/dev/null 2>"$W/err" || { FAIL="$(cat "$W/err")"; finish; return; }
    local final='.data.status == "completed" or .data.status == "failed" or .data.status == "cancelled"'
    # Time: until the destination's MIGRATION completed (it has loaded
    # everything; QEMU has no return path to tell the source).  Its sync
    # must follow at once, so watch the destination first, and the source
    # only for a failure meanwhile.
    local deadline=$(($(date +%s) + TIMEOUT))
    evd=""; ev=""
    while :; do
        evd=$(qmp_event qdst MIGRATION "$final" 0 2>/dev/null) && break
        ev=$(qmp_event qsrc MIGRATION '.data.status == "failed" or .data.status == "cancelled"' 0 2>/dev/null) && break
        [ "$(date +%s)" -lt "$deadline" ] || break
        sleep 0.02
    done
    if [ -n "$evd" ] && [ "$(jq -r .data.status <<<"$evd")" = completed ]; then
        dst_sync "$W/dst.raw"
        sync_gap "$(qmp_stamp "$evd")"
    fi
    [ -n "$ev" ] || ev=$(qmp_event qsrc MIGRATION "$final" 60) || { FAIL="source: no final MIGRATION event"; finish; return; }
    info=$(qmp qsrc query-migrate)
    status=$(jq -r .data.status <<<"$ev")
    if [ "$status" != completed ]; then
        FAIL="source migration $status: $(jq -r '."error-desc" // ""' <<<"$info")"; finish; return
    fi
    [ -n "$evd" ] || { FAIL="destination: no final MIGRATION event"; finish; return; }
    [ "$(jq -r .data.status <<<"$evd")" = completed ] || { FAIL="destination migration $(jq -r .data.status <<<"$evd")"; finish; return; }
    R[time]=$(sub "$(qmp_stamp "$evd")" "$t0")
    lo1=$(lo_bytes)
    R[downtime]=$(jq -r '.downtime // empty' <<<"$info")
    if [ -n "$lo0" ]; then
        R[wire]=$((lo1 - lo0))
        R[note]="${R[note]:+${R[note]}; }wire counted on loopback, incl. TCP/IP headers"
    else
        R[wire]=$(jq -r '(.ram.transferred // 0) + (.disk.transferred // 0)' <<<"$info")
    fi
    rss_pair "$(hwm "${PIDS[qsrc]}")" "$(hwm "${PIDS[qdst]}")"
    qmp qsrc quit >/dev/null; qmp qdst quit >/dev/null
    wait_exit qsrc; wait_exit qdst
    compare "$src" "$W/dst.raw"
    finish
}

# bench_nbd SYSTEM IMAGE REP [count]: qemu-img convert or nbdcopy into
# qemu-nbd serving a fresh sparse image over a unix socket.
bench_nbd() {
    local sys=$1 image=$2 rep=$3 mode=${4:-} src sock t0 t1 rc counts
    new_run "$sys" "$image" "$rep"
    [ "$mode" = count ] && R[status]=count
    src=$(source_for "$image")
    truncate -s "$(stat -c %s "$src")" "$W/dst.raw"
    spawn nbd qemu-nbd -f raw --discard=unmap --detect-zeroes=unmap --cache=writeback \
        --shared=8 --persistent --socket="$W/nbd.sock" "$W/dst.raw"
    wait_socket "$W/nbd.sock" nbd || { finish; return; }
    sock=$W/nbd.sock
    if [ "$mode" = count ]; then
        spawn wirecount "$OUT/wirecount" "$W/count.sock" "$W/nbd.sock"
        wait_socket "$W/count.sock" wirecount || { finish; return; }
        sock=$W/count.sock
    fi
    local uri="nbd+unix:///?socket=$sock"
    t0=$(now)
    case "$sys" in
    qemu-img) timed "$TIMEOUT" qemu-img convert -n -W -m 8 -f raw -O raw "$src" "$uri" >"$W/client.log" 2>&1 ;;
    nbdcopy) timed "$TIMEOUT" nbdcopy "$src" "$uri" >"$W/client.log" 2>&1 ;;
    esac
    rc=$?
    t1=$(now)
    if [ "$rc" != 0 ]; then FAIL="$sys exit $rc: $(head -n 1 "$W/client.log")"; finish; return; fi
    R[time]=$(sub "$t1" "$t0")
    # qemu-nbd (cache=writeback) holds the data in the page cache: flush it
    # while qemu-nbd still runs (it would flush when it exits, untimed).
    [ "$mode" = count ] || dst_sync "$W/dst.raw" "$t1"
    rss_pair "$(hwm "${PIDS[nbd]}")" "$(client_rss || echo 0)"
    if [ "$mode" = count ]; then
        stop wirecount TERM
        counts=$(tail -n 1 "$W/wirecount.log")
        R[wire]=$(awk '{ printf "%.0f", $1 + $2 }' <<<"$counts")
    fi
    stop nbd
    # The counting run only counts: its time and disk are not used.
    [ "$mode" = count ] || compare "$src" "$W/dst.raw"
    finish
}

bench_cp() {
    local image=$1 rep=$2 src t0 t1
    new_run cp "$image" "$rep"
    src=$(source_for "$image")
    t0=$(now)
    timed "$TIMEOUT" cp --sparse=always "$src" "$W/dst.raw" 2>"$W/cp.err" ||
        { FAIL="cp failed: $(head -n 1 "$W/cp.err")"; finish; return; }
    t1=$(now)
    R[time]=$(sub "$t1" "$t0")
    dst_sync "$W/dst.raw" "$t1"
    R[rss]=$(client_rss); R[rss_max]=${R[rss]}
    compare "$src" "$W/dst.raw"
    finish
}

bench_tcp() {
    local image=$1 rep=$2 bytes out lo0 lo1
    new_run tcp-loopback "$image" "$rep"
    # The data that must cross: the allocated bytes of the source image.
    bytes=$(allocated "${IMG[$image]}")
    lo0=$(lo_bytes)
    out=$(in_ns "$OUT/tcpcopy" "$bytes" 1M) || { FAIL="tcpcopy failed"; finish; return; }
    lo1=$(lo_bytes)
    R[time]=$(awk '{ printf "%.3f", $1 }' <<<"$out")
    R[wire]=$bytes
    R[rss]=$(awk '{ print $3 }' <<<"$out"); R[rss_max]=${R[rss]}
    R[src_alloc]=$bytes
    R[note]="sends the image's allocated bytes from memory${lo0:+; loopback bytes $((lo1 - lo0))}"
    finish
}

# too_long LIMIT: true (and says so) when the last run took longer than
# LIMIT seconds or timed out; its row is then not repeated.
too_long() {
    local t=${R[time]:-}
    [ "${R[status]}" = FAILED ] && [[ "${R[note]}" == *"within"* ]] && t=999999
    [ -n "$t" ] && awk -v t="$t" -v l="$1" 'BEGIN { exit !(t > l) }' || return 1
    say "${R[system]} / ${R[image]}: run took more than $1 s: not repeated (time budget)"
    R[note]="not repeated: a run took more than $1 s"
    new_note_row
    return 0
}

# A row of its own kind: a note for its system and image in the table.
new_note_row() {
    local s=${R[system]} i=${R[image]} n=${R[note]}
    R=(); R[system]=$s; R[image]=$i; R[rep]=-; R[status]=note; R[note]=$n
    emit
}

na_row() {
    new_run "$1" live -
    R[status]=n/a
    R[note]="n/a: ${2:-no live guest for this system}"
    emit
}

# ---------------------------------------------------------------- main

say "blkmig benchmark: size $SIZE, $REPS runs each, scratch $W"
ensure_packages
build_helpers
snapshot_binaries
setup_netns
describe_scratch
make_images

# Which systems run on the qcow2 image (the others move raw files), and
# which run only there.
qcow2_system() { case "$1" in blkmig|blkmig+inc|mirror|mirror+top) return 0 ;; esac; return 1; }
qcow2_only() { case "$1" in blkmig+inc|mirror+top) return 0 ;; esac; return 1; }
# Whether SYS runs on IMAGE: 0 yes, 1 not there (no row), 2 not there but
# shown as an n/a row (the live image runs only the systems listed here).
runs_on() {
    if [ "$1" = qcow2 ]; then
        qcow2_system "$2" && return 0 || return 1
    fi
    qcow2_only "$2" && return 1
    [ "$1" != live ] && return 0
    case "$2" in blkmig|blkmig+tls) return 0 ;; esac
    return 2
}
# The n/a row of SYS on the live image.
live_na_row() {
    case "$1" in
    blkmig+*) na_row "$1" "variants run on the sparse and full images only (time budget)" ;;
    mirror) na_row qemu-mirror ;;
    legacy) na_row qemu-legacy ;;
    tcp) na_row tcp-loopback ;;
    *) na_row "$1" ;;
    esac
}

# blkmig and its variants (the blkmig* systems of SYSTEMS that run on
# IMAGE) rep by rep in turn: blkmig, blkmig+tls, ..., then the next rep.
# Their ratios to blkmig are targets, and a load that changes during the
# bench then weighs on both sides of each ratio alike.
bench_blkmig_family() {
    local image=$1 sys rep family=()
    local -A stop=()
    for sys in $SYSTEMS; do
        case "$sys" in blkmig|blkmig+*) runs_on "$image" "$sys" && family+=("$sys") ;; esac
    done
    for ((rep = 1; rep <= REPS; rep++)); do
        for sys in "${family[@]}"; do
            [ -n "${stop[$sys]:-}" ] && continue
            if [ "$sys" = blkmig ]; then
                bench_blkmig "$image" "$rep"
            else
                bench_blkmig "$image" "$rep" "${sys#blkmig+}"
            fi
            too_long "$LONG" && stop[$sys]=1
        done
    done
}

for sys in $SYSTEMS; do
    case "$sys" in
    blkmig+*) [ -n "${BLKMIG_VARIANTS[${sys#blkmig+}]:-}" ] ||
        { echo "bench: unknown blkmig variant '$sys' (${!BLKMIG_VARIANTS[*]})" >&2; exit 2; } ;;
    esac
done

for image in $IMAGES; do
    family_done=
    for sys in $SYSTEMS; do
        runs_on "$image" "$sys"
        case $? in
        1) continue ;;
        2) live_na_row "$sys"; continue ;;
        esac
        case "$sys" in
        blkmig|blkmig+*)
            [ -z "$family_done" ] && bench_blkmig_family "$image"
            family_done=1 ;;
        mirror|cp|tcp)
            for ((rep = 1; rep <= REPS; rep++)); do
                "bench_$sys" "$image" "$rep"
                too_long "$LONG" && break
            done ;;
        mirror+*)
            for ((rep = 1; rep <= REPS; rep++)); do
                bench_mirror "$image" "$rep" "${sys#mirror+}"
                too_long "$LONG" && break
            done ;;
        qemu-img|nbdcopy)
            command -v "$sys" >/dev/null 2>&1 ||
                { new_run "$sys" "$image" 1; FAIL="$sys not installed"; finish; continue; }
            [ "$WIRECOUNT" = 1 ] && bench_nbd "$sys" "$image" 0 count
            for ((rep = 1; rep <= REPS; rep++)); do
                bench_nbd "$sys" "$image" "$rep"
                too_long "$LONG" && break
            done ;;
        legacy)
            for ((rep = 1; rep <= REPS; rep++)); do
                bench_legacy "$image" "$rep" qemu-legacy
                too_long "$LEGACY_LONG" && break
            done
            for bw in $LEGACY_BWS; do
                bench_legacy "$image" 1 "qemu-legacy@$bw" "$(to_bytes "$bw")"
                [ "${R[identical]:-}" = yes ] && break
            done ;;
        *) echo "bench: unknown system '$sys'" >&2; exit 2 ;;
        esac
    done
done

# The NBD random I/O table, from nbd-iops.sh: its own table, printed and
# added to results.txt below the migration table.
bench_nbd_iops() {
    [ "${BENCH_NBD_IOPS:-1}" = 1 ] || return 0
    say "NBD 4 KiB random I/O through a $SIZE qcow2: blkmigd against qemu-nbd"
    BLKMIGD=$BLKMIGD FORMAT=qcow2 SIZE=$SIZE DATA_PCT=$DATA_PCT JOBS="1 4" \
        RW="randread randwrite" TMPDIR=$W \
        "$ROOT/tests/bench/nbd-iops.sh" "${BENCH_NBD_IOPS_RUNTIME:-5}" >"$OUT/nbd-iops.txt" 2>&1 ||
        echo "nbd-iops.sh FAILED (exit $?)" >>"$OUT/nbd-iops.txt"
}

bench_nbd_iops
meta load "1-minute load average $LOAD0 at the start, $(cut -d' ' -f1 /proc/loadavg) at the end on $(nproc) CPUs (other work shares them: ratios within one run are what compare)"
"$ROOT/tests/bench/report.sh" "$RUNS" "$OUT" "$SIZE" "$REPS"
if [ -s "$OUT/nbd-iops.txt" ]; then
    { echo; cat "$OUT/nbd-iops.txt"; } | tee -a "$OUT/results.txt"
fi
say "done in $(elapsed) s; results in build/bench/results.{txt,csv,png}"
