#!/bin/sh
# The NBD client driver under fio: fio -> blkmigd's NBD export of a drive
# whose file is an NBD URI -> qemu-nbd serving a preallocated raw file
# ("blkmigd" rows), and fio straight to the same qemu-nbd ("direct").
# qemu-nbd runs with --shared=1 (no multi-conn: the driver keeps one
# connection) and with --shared=8 (multi-conn: up to four).
#
# Usage: tests/bench/nbd-client.sh [RUNTIME_SECONDS]
# Environment: BLKMIGD (default build/blkmigd), SIZE (1G), JOBS (4 fio
#   jobs, each its own connection to blkmigd), IODEPTH (16), ROUNDS (1),
#   RW ("randread randwrite"), TMPDIR.
set -eu

runtime=${1:-10}
blkmigd=${BLKMIGD:-build/blkmigd}
size=${SIZE:-1G}
jobs=${JOBS:-4}
iodepth=${IODEPTH:-16}
rounds=${ROUNDS:-1}
rws=${RW:-randread randwrite}

for prog in fio qemu-nbd "$blkmigd"; do
    command -v "$prog" >/dev/null 2>&1 || { echo "nbd-client: $prog not found (make deps; make)" >&2; exit 1; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/nbd-client.XXXXXX")
pids=
stop_all() {
    for p in $pids; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    pids=
    rm -f "$tmp"/*.sock
}
trap 'stop_all; rm -rf "$tmp"' EXIT INT TERM

img=$tmp/disk.raw
fallocate -l "$size" "$img" 2>/dev/null || truncate -s "$size" "$img"

wait_socket() {
    i=0
    while [ ! -S "$1" ]; do
        i=$((i + 1))
        [ $i -le 100 ] || { echo "nbd-client: $1 did not appear" >&2; exit 1; }
        sleep 0.1
    done
}

# qemu-nbd --shared=$1 on $tmp/q.sock
start_qemu_nbd() {
    qemu-nbd --format=raw --socket="$tmp/q.sock" --persistent --shared="$1" \
             --cache=writeback --aio=threads "$img" 2>>"$tmp/qemu-nbd.log" &
    pids="$pids $!"
    wait_socket "$tmp/q.sock"
}

# blkmigd with drive d0 on qemu-nbd, exported on $tmp/b.sock
start_blkmigd() {
    "$blkmigd" --drive "id=d0,file=nbd+unix:///?socket=$tmp/q.sock,format=raw" \
        --nbd "unix:$tmp/b.sock" --log "$tmp/blkmigd.log" &
    pids="$pids $!"
    wait_socket "$tmp/b.sock"
}

# IOPS of fio $1 (rw) against URI $2 (terse v3: field 8 read, 49 write IOPS)
run_fio() {
    fio --name=nbd-client --ioengine=nbd --uri="$2" --rw="$1" --bs=4k \
        --iodepth="$iodepth" --numjobs="$jobs" --group_reporting \
        --time_based --runtime="$runtime" --output-format=terse --terse-version=3 |
        awk -F';' -v rw="$1" '$1 == 3 { print (rw ~ /read/) ? $8 : $49 }'
}

# One measurement: rw $1, qemu-nbd --shared=$2, path $3 (direct, blkmigd)
measure() {
    start_qemu_nbd "$2"
    if [ "$3" = direct ]; then
        iops=$(run_fio "$1" "nbd+unix:///?socket=$tmp/q.sock")
    else
        start_blkmigd
        iops=$(run_fio "$1" "nbd+unix:///d0?socket=$tmp/b.sock")
    fi
    stop_all
    echo "$iops"
}

echo "4 KiB, $jobs fio jobs x iodepth $iodepth, ${runtime}s per run, $size file on $(df -T "$tmp" | awk 'NR==2 { print $2 }'), $(nproc) CPUs"
printf '%-6s %-10s %-12s %-8s %10s\n' round rw qemu-nbd path IOPS
r=1
while [ "$r" -le "$rounds" ]; do
    for rw in $rws; do
        for shared in 1 8; do
            mode=$([ "$shared" = 1 ] && echo single-conn || echo multi-conn)
            for path in direct blkmigd; do
                # fio's jobs need as many client slots as there are jobs
                [ "$path" = direct ] && [ "$shared" -lt "$jobs" ] && continue
                printf '%-6s %-10s %-12s %-8s %10s\n' "$r" "$rw" "$mode" "$path" \
                       "$(measure "$rw" "$shared" "$path")"
            done
        done
    done
    r=$((r + 1))
done
