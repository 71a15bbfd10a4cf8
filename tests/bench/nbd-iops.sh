#!/bin/sh
# 4 KiB random I/O through blkmigd's NBD export, compared with qemu-nbd
# (--cache=writeback --aio=threads) serving the same image in the same
# run, one server at a time, each over a unix socket, driven by fio's nbd
# engine.
#
# Usage: tests/bench/nbd-iops.sh [RUNTIME_SECONDS]
# Environment:
#   BLKMIGD   the daemon (default build/blkmigd)
#   FORMAT    raw (default): a preallocated raw file of SIZE (default 1G);
#             qcow2: top.qcow2 of SIZE (default 4G) over base.qcow2, each
#             layer holding DATA_PCT (default 10) % of SIZE as runs of
#             64 KiB..1 MiB at random 64 KiB-aligned offsets (qemu-io writes
#             them; the same every time).  Every run starts from the same
#             top layer, so writes find the same clusters unallocated.
#   RW        fio patterns, e.g. "randread randwrite" (default randwrite)
#   JOBS      connection counts to run, one fio job each (default 1), e.g. "1 4"
#   IODEPTH (16), ROUNDS (1: each server once per pattern and connection
#   count, in turn), TMPDIR (where images and sockets go).
set -eu

runtime=${1:-10}
blkmigd=${BLKMIGD:-build/blkmigd}
format=${FORMAT:-raw}
rws=${RW:-randwrite}
iodepth=${IODEPTH:-16}
jobs_list=${JOBS:-1}
max_jobs=$(echo "$jobs_list" | tr ' ' '\n' | sort -n | tail -n 1)
rounds=${ROUNDS:-1}
data_pct=${DATA_PCT:-10}
case "$format" in
raw) size=${SIZE:-1G} ;;
qcow2) size=${SIZE:-4G} ;;
*) echo "nbd-iops: FORMAT must be raw or qcow2" >&2; exit 2 ;;
esac

for prog in fio qemu-nbd qemu-img qemu-io "$blkmigd"; do
    command -v "$prog" >/dev/null 2>&1 || { echo "nbd-iops: $prog not found (make deps; make)" >&2; exit 1; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/nbd-iops.XXXXXX")
server=
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# qemu-io commands writing PCT % of BYTES in runs of 1..16 units of 64 KiB
# at random unit-aligned offsets, seeded by SEED; no unit counted twice
# (offsets printed with %.0f: mawk's %d stops at 2^31).
data_runs() {
    awk -v bytes="$1" -v pct="$2" -v seed="$3" 'BEGIN {
        srand(seed); unit = 65536; units = int(bytes / unit)
        want = int(units * pct / 100); got = 0
        while (got < want) {
            u = int(rand() * units); n = 1 + int(rand() * 16)
            if (u + n > units) n = units - u
            fresh = 0
            for (i = u; i < u + n; i++) if (!(i in used)) { used[i] = 1; fresh++ }
            got += fresh
            printf "write -q -P %d %.0f %.0f\n", 1 + int(rand() * 254), u * unit, n * unit
        }
    }'
}

# The image both servers serve: $img (and $pristine, a copy of its top
# layer that every run starts from).
make_image() {
    if [ "$format" = raw ]; then
        # Allocated up front so neither server pays for block allocation.
        img=$tmp/disk.raw
        fallocate -l "$size" "$img" 2>/dev/null || truncate -s "$size" "$img"
        return
    fi
    bytes=$(numfmt --from=iec "$size")
    img=$tmp/top.qcow2
    pristine=$tmp/top.pristine
    qemu-img create -q -f qcow2 "$tmp/base.qcow2" "$bytes"
    data_runs "$bytes" "$data_pct" 1 | qemu-io -f qcow2 "$tmp/base.qcow2" >/dev/null
    qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 "$img"
    data_runs "$bytes" "$data_pct" 2 | qemu-io -f qcow2 "$img" >/dev/null
    cp --sparse=always "$img" "$pristine"
}

fresh_image() {
    [ "$format" = raw ] || cp --sparse=always "$pristine" "$img"
}

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

# Prints the IOPS of one fio run of pattern RW with JOBS connections
# against URI.
run_fio() {
    # terse format v3: field 8 is the read IOPS, field 49 the write IOPS
    fio --name=nbd-iops --ioengine=nbd --uri="$1" --rw="$2" --bs=4k \
        --iodepth="$iodepth" --numjobs="$3" --group_reporting \
        --time_based --runtime="$runtime" --output-format=terse --terse-version=3 |
        awk -F';' -v rw="$2" '$1 == 3 { print (rw == "randread" ? $8 : $49) }'
}

bench_blkmigd() {
    sock=$tmp/blkmigd.sock
    fresh_image
    "$blkmigd" --drive "id=disk0,file=$img,format=$format" --nbd "unix:$sock" \
        --log "$tmp/blkmigd.log" 2>/dev/null &
    server=$!
    wait_socket "$sock" blkmigd
    run_fio "nbd+unix:///disk0?socket=$sock" "$1" "$2"
    stop_server
}

bench_qemu_nbd() {
    sock=$tmp/qemu-nbd.sock
    fresh_image
    qemu-nbd --format="$format" --export-name=disk0 --socket="$sock" --persistent \
             --shared="$max_jobs" --cache=writeback --aio=threads "$img" 2>"$tmp/qemu-nbd.log" &
    server=$!
    wait_socket "$sock" qemu-nbd
    run_fio "nbd+unix:///disk0?socket=$sock" "$1" "$2"
    stop_server
}

make_image
what="$size $format file"
[ "$format" = raw ] || what="$size qcow2 over a qcow2 base, ${data_pct}% data in each layer"
echo "4 KiB random I/O, iodepth $iodepth per connection, ${runtime}s per run; $what on $(df -T "$tmp" | awk 'NR==2 { print $2 }')"
printf '%-6s %-6s %-10s %-10s %10s\n' round conns pattern server IOPS
r=1
while [ $r -le "$rounds" ]; do
    for j in $jobs_list; do
        for rw in $rws; do
            b=$(bench_blkmigd "$rw" "$j")
            q=$(bench_qemu_nbd "$rw" "$j")
            printf '%-6s %-6s %-10s %-10s %10s\n' "$r" "$j" "$rw" blkmigd "$b" "$r" "$j" "$rw" qemu-nbd "$q"
            awk -v b="$b" -v q="$q" 'BEGIN { if (q > 0) printf "%34s blkmigd/qemu-nbd: %.2f\n", "", b / q }'
        done
    done
    r=$((r + 1))
done
