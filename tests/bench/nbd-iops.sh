#!/bin/sh
# 4 KiB random-write IOPS through blkmigd's NBD export, compared with
# qemu-nbd serving the same (preallocated) file in the same run.
#
# Usage: tests/bench/nbd-iops.sh [RUNTIME_SECONDS]
# Environment: BLKMIGD (default build/blkmigd), SIZE (default 1G),
#              IODEPTH (16), JOBS (1), ROUNDS (1: each server once, in turn),
#              TMPDIR (where the file and sockets go).
set -eu

runtime=${1:-10}
blkmigd=${BLKMIGD:-build/blkmigd}
size=${SIZE:-1G}
iodepth=${IODEPTH:-16}
jobs=${JOBS:-1}
rounds=${ROUNDS:-1}

for prog in fio qemu-nbd "$blkmigd"; do
    command -v "$prog" >/dev/null 2>&1 || { echo "nbd-iops: $prog not found (make deps; make)" >&2; exit 1; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/nbd-iops.XXXXXX")
server=
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# Allocated up front so neither server pays for block allocation.
img=$tmp/disk.raw
fallocate -l "$size" "$img" 2>/dev/null || truncate -s "$size" "$img"

wait_socket() {
    i=0
    while [ ! -S "$1" ]; do
        i=$((i + 1))
        [ $i -le 100 ] || { echo "nbd-iops: $2 did not create $1" >&2; exit 1; }
        sleep 0.1
    done
}

stop_server() {
    kill "$server"
    wait "$server" 2>/dev/null || true
    server=
}

# Prints the write IOPS of one fio run against URI.
run_fio() {
    # terse format v3: field 49 is the write IOPS
    fio --name=nbd-iops --ioengine=nbd --uri="$1" --rw=randwrite --bs=4k \
        --iodepth="$iodepth" --numjobs="$jobs" --group_reporting \
        --time_based --runtime="$runtime" --output-format=terse --terse-version=3 |
        awk -F';' '$1 == 3 { print $49 }'
}

bench_blkmigd() {
    sock=$tmp/blkmigd.sock
    "$blkmigd" --drive "id=disk0,file=$img" --nbd "unix:$sock" --log "$tmp/blkmigd.log" &
    server=$!
    wait_socket "$sock" blkmigd
    run_fio "nbd+unix:///disk0?socket=$sock"
    stop_server
}

bench_qemu_nbd() {
    sock=$tmp/qemu-nbd.sock
    qemu-nbd --format=raw --export-name=disk0 --socket="$sock" --persistent \
             --shared="$jobs" --cache=writeback --aio=threads "$img" 2>"$tmp/qemu-nbd.log" &
    server=$!
    wait_socket "$sock" qemu-nbd
    run_fio "nbd+unix:///disk0?socket=$sock"
    stop_server
}

echo "4 KiB randwrite, iodepth $iodepth, $jobs job(s), ${runtime}s per run, $size file on $(df -T "$tmp" | awk 'NR==2 { print $2 }')"
printf '%-8s %-10s %10s\n' round server IOPS
r=1
while [ $r -le "$rounds" ]; do
    b=$(bench_blkmigd)
    q=$(bench_qemu_nbd)
    printf '%-8s %-10s %10s\n' "$r" blkmigd "$b" "$r" qemu-nbd "$q"
    awk -v b="$b" -v q="$q" 'BEGIN { if (q > 0) printf "         blkmigd/qemu-nbd: %.2f\n", b / q }'
    r=$((r + 1))
done
