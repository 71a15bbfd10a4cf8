#!/usr/bin/env bash
# A verified live block migration on this machine: a 2 GiB sparse disk with
# scattered random data moves between two blkmigd daemons over loopback TCP
# while a guest workload keeps writing; then both files are compared.
#
# Usage: scripts/demo.sh [--nbd] [--help]     (make demo DEMO_ARGS=...)
#   --nbd    the guest is fio (--ioengine=nbd, random 4 KiB writes at
#            20 MiB/s) writing through blkmigd's NBD export instead of the
#            built-in workload
# Environment: BLKMIGD, BLKMIG (binaries; default build/blkmigd and the
#   blkmig next to it),
#   DEMO_SIZE (default 2G), DEMO_RUNS (data runs, default 150),
#   DEMO_WORKLOAD (source --workload option, default drive=disk0,rate=20,seed=1),
#   DEMO_MIGRATE_ARGS (extra blkmig migrate options, default --zero-blocks:
#   the daemon's default 128 MiB/s and 300 ms downtime limit),
#   DEMO_TIMEOUT (seconds before the migration is cancelled, default 300).
# Exits non-zero if the migration fails or the disks differ.
set -euo pipefail

cd "$(dirname "$0")/.."
BLKMIGD=${BLKMIGD:-build/blkmigd}
BLKMIG=${BLKMIG:-$(dirname "$BLKMIGD")/blkmig}   # the tool built alongside
SIZE=${DEMO_SIZE:-2G}
RUNS=${DEMO_RUNS:-150}
WORKLOAD=${DEMO_WORKLOAD:-drive=disk0,rate=20,seed=1}
MIGRATE_ARGS=${DEMO_MIGRATE_ARGS:---zero-blocks}
TIMEOUT=${DEMO_TIMEOUT:-300}
GUEST=workload

for arg in "$@"; do
    case "$arg" in
    --nbd) GUEST=nbd ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo: unknown option '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

for bin in "$BLKMIGD" "$BLKMIG"; do
    [ -x "$bin" ] || { echo "demo: $bin not built (run make all)" >&2; exit 1; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/blkmig-demo.XXXXXX")
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

say() { printf 'demo: %s\n' "$*"; }
allocated() {
    local blocks unit
    read -r blocks unit < <(stat -c '%b %B' "$1")
    echo $((blocks * unit))
}

# A TCP port nobody listens on (connecting to it fails).
free_port() {
    local port
    while :; do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
}

# Random runs of 64 KiB..1 MiB at random 4 KiB-aligned offsets, from a
# fixed seed so every run of the demo moves the same disk.
make_source_disk() {
    local disk=$1 size_bytes runs=$2 i off len slots
    truncate -s "$SIZE" "$disk"
    size_bytes=$(stat -c %s "$disk")
    RANDOM=42
    for ((i = 0; i < runs; i++)); do
        len=$(( (1 + RANDOM % 16) * 65536 ))
        slots=$(( (size_bytes - len) / 4096 ))
        off=$(( ((RANDOM << 15 | RANDOM) % slots) * 4096 ))
        dd if=/dev/urandom of="$disk" bs=64K count=$((len / 65536)) seek="$off" \
           oflag=seek_bytes iflag=fullblock conv=notrunc status=none
    done
}

# Start a daemon in the background with its output in NAME.log; wait for
# its QMP socket to answer.
start_daemon() {
    local name=$1; shift
    "$BLKMIGD" "$@" --qmp "unix:$tmp/$name.qmp" >"$tmp/$name.log" 2>&1 &
    local pid=$!
    pids+=("$pid")
    for _ in $(seq 100); do
        if "$BLKMIG" qmp "$tmp/$name.qmp" query-status >/dev/null 2>&1; then
            return
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            say "$name daemon died at start-up:"; tail -n 20 "$tmp/$name.log" >&2; exit 1
        fi
        sleep 0.1
    done
    say "$name daemon did not answer QMP within 10 s:"; tail -n 20 "$tmp/$name.log" >&2
    exit 1
}

# The source's guest: the built-in workload, or an NBD export for fio.
source_guest_args() {
    case "$GUEST" in
    workload) echo "--workload $WORKLOAD" ;;
    nbd) echo "--nbd unix:$tmp/nbd.sock" ;;
    esac
}

# fio as the guest, writing through the export until the migration ends
# (the source export then refuses writes and fio stops with an error).
start_nbd_guest() {
    command -v fio >/dev/null || { say "--nbd needs fio (make deps)"; exit 1; }
    (cd "$tmp" && exec fio --name=guest --ioengine=nbd \
        --uri="nbd+unix:///disk0?socket=$tmp/nbd.sock" --size="$(stat -c %s "$tmp/src.raw")" \
        --rw=randwrite --bs=4k --iodepth=4 --rate=20m --time_based --runtime=3600 \
        --randseed=1 >"$tmp/fio.log" 2>&1) &
    pids+=("$!")
    sleep 1   # let it connect and start writing before the migration
}

migration_outcome() {
    case "$1" in
    0) echo completed ;;
    124) echo "FAILED (not done after $TIMEOUT s, cancelled)" ;;
    *) echo "FAILED (blkmig exit $1)" ;;
    esac
}

# Value of a numeric member NAME in pretty-printed JSON on stdin.
json_int() {
    local v
    v=$(sed -n "s/.*\"$1\" *: *\([0-9][0-9]*\).*/\1/p" | head -n 1)
    echo "${v:-unknown}"
}

say "scratch directory $tmp"
say "creating a $SIZE sparse disk with $RUNS random runs of 64 KiB..1 MiB"
make_source_disk "$tmp/src.raw" "$RUNS"
port=$(free_port)

guest_args=$(source_guest_args)
start_daemon dst --drive "id=disk0,file=$tmp/dst.raw,size=$SIZE,create=on" \
    --incoming "tcp:127.0.0.1:$port"
# shellcheck disable=SC2086  # guest_args is a list of options
start_daemon src --drive "id=disk0,file=$tmp/src.raw" $guest_args
[ "$GUEST" = nbd ] && start_nbd_guest

say "migrating ($GUEST guest running) to tcp:127.0.0.1:$port"
start=$(date +%s.%N)
migrate_rc=0
# shellcheck disable=SC2086  # MIGRATE_ARGS is a list of options
# On timeout blkmig gets SIGINT, cancels the migration and reports.
timeout --signal=INT --kill-after=30 "$TIMEOUT" \
    "$BLKMIG" migrate --src "$tmp/src.qmp" --dst "$tmp/dst.qmp" \
    --uri "tcp:127.0.0.1:$port" $MIGRATE_ARGS || migrate_rc=$?
end=$(date +%s.%N)

info=$("$BLKMIG" qmp "$tmp/src.qmp" query-migrate) || info=""   # source may be gone
same=yes
cmp -s "$tmp/src.raw" "$tmp/dst.raw" || same=no

echo
say "result"
printf '  %-24s %s\n' \
    "migration" "$(migration_outcome "$migrate_rc")" \
    "disks identical" "$same" \
    "wall time" "$(awk "BEGIN { printf \"%.2f s\", $end - $start }")" \
    "bytes on the wire" "$(json_int transferred <<<"$info")" \
    "zero records" "$(json_int zero-blocks <<<"$info")" \
    "data records" "$(json_int data-blocks <<<"$info")" \
    "source allocated" "$(allocated "$tmp/src.raw") bytes" \
    "destination allocated" "$(allocated "$tmp/dst.raw") bytes"

if [ "$migrate_rc" != 0 ] || [ "$same" != yes ]; then
    say "FAILED"; tail -n 5 "$tmp/src.log" "$tmp/dst.log" >&2
    exit 1
fi
say "OK"
