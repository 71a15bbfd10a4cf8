#!/bin/bash
# Provisioning from a template: streaming a base image served by qemu-nbd
# into a local qcow2 overlay, blkmig's block-stream job against QEMU 7.2's
# block-stream of the same chain (qemu-system-x86_64 -machine none, the
# overlay opened with -blockdev, its backing file the same NBD URI), in
# one run, alternating, on the same base and server.
#
# Usage: tests/bench/stream.sh [REPS]          (make bench-stream)
# Environment: SIZE (4G), DATA_PCT (10: percent of the base holding data,
#   in runs of 64 KiB..1 MiB), BLKMIGD (build/blkmigd), BENCH_DIR (a
#   scratch directory; default under TMPDIR).
#
# Each run's time is from sending block-stream to the BLOCK_JOB_COMPLETED
# event's timestamp; blkmig's includes making the copy durable before the
# header drops the backing file (QEMU's does not sync). CPU is the
# seconds the emulator and qemu-nbd used meanwhile. The first run of each
# is checked with qemu-img compare against the base.
set -eu

reps=${1:-3}
size=${SIZE:-4G}
pct=${DATA_PCT:-10}
blkmigd=$(realpath "${BLKMIGD:-build/blkmigd}")
here=$(cd "$(dirname "$0")" && pwd)
out=build/bench

for prog in qemu-nbd qemu-img qemu-system-x86_64 socat jq bc cc "$blkmigd"; do
    command -v "$prog" >/dev/null 2>&1 || { echo "stream: $prog not found (make deps; make)" >&2; exit 1; }
done
mkdir -p "$out"
cc -O2 -o "$out/mkimage" "$here/mkimage.c"

W=${BENCH_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/stream-bench.XXXXXX")}
mkdir -p "$W"
QMP_DIR=$W
# shellcheck source=tests/bench/qmp.sh
source "$here/qmp.sh"
pids=
cleanup() {
    qmp_close vm 2>/dev/null || true
    for p in $pids; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    [ -n "${BENCH_DIR:-}" ] || rm -rf "$W"
}
trap cleanup EXIT INT TERM

echo "making a $size base with $pct% data ..."
"$out/mkimage" "$W/base.raw" "$size" scatter "$pct" 1 >/dev/null
qemu-img convert -f raw -O qcow2 "$W/base.raw" "$W/base.qcow2"
rm -f "$W/base.raw"
qemu-nbd -r -t --shared=8 -k "$W/nbd.sock" -f qcow2 "$W/base.qcow2" 2>"$W/qemu-nbd.log" &
nbd_pid=$!
pids="$pids $nbd_pid"
for _ in $(seq 100); do [ -S "$W/nbd.sock" ] && break; sleep 0.1; done
uri="nbd+unix:///?socket=$W/nbd.sock"
cat "$W/base.qcow2" >/dev/null            # both start from a warm page cache

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

start_blkmig() {
    "$blkmigd" --drive "id=d0,file=$W/ov.qcow2,format=qcow2,create=on,backing=$uri,backing-format=raw" \
        --qmp "unix:$W/vm.qmp" --log "$W/blkmigd.log" &
    emu=$!
    job='{"device": "d0"}'
}

start_qemu() {
    qemu-img create -q -f qcow2 -b "$uri" -F raw "$W/ov.qcow2" "$size"
    qemu-system-x86_64 -machine none -nodefaults -display none \
        -qmp "unix:$W/vm.qmp,server=on,wait=off" \
        -blockdev "driver=qcow2,node-name=ov,file.driver=file,file.filename=$W/ov.qcow2" \
        >"$W/qemu.log" 2>&1 &
    emu=$!
    job='{"device": "ov", "job-id": "j"}'
}

# One run of $1 (blkmig, qemu): prints "seconds cpu-seconds"
run_one() {
    rm -f "$W/ov.qcow2" "$W/vm.qmp"
    sync
    "start_$1"
    qmp_open vm "$W/vm.qmp"
    local c0 n0 t0 ev t1 c1 n1
    c0=$(cpu_ticks "$emu"); n0=$(cpu_ticks "$nbd_pid")
    t0=$(date +%s.%N)
    qmp vm block-stream "$job" >/dev/null
    ev=$(qmp_event vm BLOCK_JOB_COMPLETED true 1200)
    t1=$(qmp_stamp "$ev")
    c1=$(cpu_ticks "$emu"); n1=$(cpu_ticks "$nbd_pid")
    jq -e '.data.error == null' >/dev/null <<<"$ev" || { echo "stream: $1 failed: $ev" >&2; exit 1; }
    qmp vm quit >/dev/null || true
    qmp_close vm
    wait "$emu" || true
    echo "$(echo "$t1 - $t0" | bc) $(echo "($c1 - $c0 + $n1 - $n0) / $(getconf CLK_TCK)" | bc -l)"
}

check_copy() {
    qemu-img compare -q -f qcow2 -F qcow2 "$W/ov.qcow2" "$W/base.qcow2" ||
        { echo "stream: $1's copy differs from the base" >&2; exit 1; }
    [ -z "$(qemu-img info --output=json "$W/ov.qcow2" | jq -r '.["backing-filename"] // empty')" ] ||
        [ "$1" = qemu ] || { echo "stream: $1 left a backing file" >&2; exit 1; }
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo "$size base, $pct% data, qemu-nbd over a unix socket, $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg)"
printf '%-4s %-8s %9s %9s\n' rep system seconds cpu-s
: >"$W/times"
for r in $(seq "$reps"); do
    for sys in blkmig qemu; do
        read -r secs cpu < <(run_one "$sys")
        [ "$r" = 1 ] && check_copy "$sys"
        printf '%-4s %-8s %9.2f %9.2f\n' "$r" "$sys" "$secs" "$cpu"
        echo "$sys $secs $cpu" >>"$W/times"
    done
done
b=$(awk '$1 == "blkmig" { print $2 }' "$W/times" | median)
q=$(awk '$1 == "qemu" { print $2 }' "$W/times" | median)
bc_=$(awk '$1 == "blkmig" { print $3 }' "$W/times" | median)
qc=$(awk '$1 == "qemu" { print $3 }' "$W/times" | median)
ratio=$(echo "$b / $q" | bc -l)
# Each pair ran back to back, under the same load: the ratio per pair.
pairs=$(awk '$1 == "blkmig" { b = $2 } $1 == "qemu" { print b / $2 }' "$W/times" | median)
verdict() { echo "$1 <= 0.5" | bc | sed 's/1/met/;s/0/missed/'; }
printf '\nmedian   blkmig %.2f s (cpu %.2f s)   qemu %.2f s (cpu %.2f s)\n' "$b" "$bc_" "$q" "$qc"
printf 'ratio    of the medians %.2f (target <= 0.50: %s); median of the pairs %.2f (%s)\n' \
    "$ratio" "$(verdict "$ratio")" "$pairs" "$(verdict "$pairs")"
