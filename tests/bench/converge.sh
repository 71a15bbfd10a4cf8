#!/usr/bin/env bash
# make bench-converge: a write-heavy guest during a migration.  fio writes
# 4 KiB blocks at random through the source's NBD export as fast as it can
# while the disk moves; one row per blkmig copy mode (background,
# auto-converge, write-blocking) and one for QEMU 7.2's blockdev-mirror
# with copy-mode=write-blocking on the same workload (the source's node
# exported over NBD to the same fio, the target a second QEMU's NBD
# export, as run.sh drives drive-mirror), at each link limit; plus fio
# alone on blkmigd's export, for scale.
#
# Columns: time s (migrate to completed; QEMU: to BLOCK_JOB_READY),
# downtime ms (blkmig's; QEMU: how long block-job-cancel took to settle
# once fio stopped), wire / needed (loopback bytes over the source's
# allocated bytes plus what fio wrote meanwhile), guest MiB/s and p99 ms
# (fio's write throughput and completion latency while the migration
# ran: fio starts 2 s before it and logs every write, and only the
# writes that completed between the migrate command and the end count),
# identical (source and destination files after the end).  A blkmig row that does not finish within
# BENCH_STALL seconds without progress fails by progress-timeout, as an
# operator would have it.
#
# Environment (defaults in brackets):
#   BENCH_SIZE [1G]        image size; every byte random data
#   BENCH_BWS ["0 64M"]    link limits to run: max-bandwidth, and QEMU's
#                          speed (which only bounds its background copy);
#                          0 = unlimited
#   BENCH_MODES ["background auto-converge write-blocking qemu-mirror"]
#   BENCH_REPS [1]         runs per row
#   BENCH_JOBS [4] BENCH_IODEPTH [8]   fio connections and depth
#   BENCH_STALL [20]       progress-timeout of the blkmig rows, seconds
#   BENCH_TIMEOUT [300]    seconds before a run is declared FAILED
#   BENCH_DIR, BENCH_KEEP [0], BLKMIGD
set -uo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=$ROOT/build/bench
BLKMIGD=${BLKMIGD:-$ROOT/build/blkmigd}
SIZE=${BENCH_SIZE:-1G}
BWS=${BENCH_BWS:-0 64M}
MODES=${BENCH_MODES:-background auto-converge write-blocking qemu-mirror}
REPS=${BENCH_REPS:-1}
JOBS=${BENCH_JOBS:-4}
IODEPTH=${BENCH_IODEPTH:-8}
STALL=${BENCH_STALL:-20}
TIMEOUT=${BENCH_TIMEOUT:-300}
KEEP=${BENCH_KEEP:-0}
QEMU=qemu-system-x86_64

START=$(date +%s.%N)
mkdir -p "$OUT"
W=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/blkmig-converge.XXXXXX") || exit 1
QMP_DIR=$W
declare -A PIDS=()
NS_PID=
# shellcheck source=tests/bench/qmp.sh
source "$ROOT/tests/bench/qmp.sh"
# shellcheck source=tests/bench/lib.sh
source "$ROOT/tests/bench/lib.sh"

elapsed() { awk -v s="$START" -v n="$(date +%s.%N)" 'BEGIN { printf "%4.0f", n - s }'; }
say() { printf 'bench-converge: [%ss] %s\n' "$(elapsed)" "$*"; }

cleanup() {
    stop_all
    if [ -n "$NS_PID" ]; then kill "$NS_PID" 2>/dev/null; wait "$NS_PID" 2>/dev/null; fi
    if [ "$KEEP" = 1 ]; then echo "bench-converge: scratch kept in $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for prog in fio jq socat "$QEMU" "$BLKMIGD"; do
    command -v "$prog" >/dev/null 2>&1 || { echo "bench-converge: $prog not found (make deps; make)" >&2; exit 1; }
done

ROWS=$OUT/converge.tsv
: >"$ROWS"
declare -A R
FIELDS="bw mode rep status time downtime wire needed guest_mibs p99_ms identical note"
new_run() { R=(); R[bw]=$1; R[mode]=$2; R[rep]=$3; R[status]=ok; FAIL=""; }
finish() {
    local f line=""
    [ -z "$FAIL" ] || { R[status]=FAILED; R[note]="${R[note]:+${R[note]}; }$FAIL"; }
    for f in $FIELDS; do line+="${R[$f]:-}"$'\t'; done
    printf '%s\n' "${line%$'\t'}" >>"$ROWS"
    say "${R[mode]} @ ${R[bw]}: ${R[status]} ${R[time]:-} s, guest ${R[guest_mibs]:-?} MiB/s p99 ${R[p99_ms]:-?} ms${R[note]:+ (${R[note]})}"
    stop_all
    rm -f "$W/dst.raw" "$W/src.raw"
}

# ---------------------------------------------------------------- the guest

# fio URI: the write-heavy guest, every write logged with its completion
# time (Unix ms) and latency, until stopped (or refused); then 2 s to
# reach its pace.
start_fio() {
    rm -f "$W"/fio_*.log
    fio --name=guest --ioengine=nbd --uri="$1" --rw=randwrite --bs=4k \
        --iodepth="$IODEPTH" --numjobs="$JOBS" --group_reporting --time_based \
        --runtime=3600 --size="$SIZE" --write_lat_log="$W/fio" --log_avg_msec=0 \
        --log_unix_epoch=1 >"$W/fio.log" 2>&1 &
    PIDS[fio]=$!
    disown "${PIDS[fio]}"
    sleep 2
}

stop_fio() {
    local i
    kill -INT "${PIDS[fio]}" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "${PIDS[fio]}" 2>/dev/null || break; sleep 0.1; done
    stop fio KILL
}

# The guest's writes that completed between T0 and T1 (seconds): their
# throughput (MiB/s), 99th percentile latency (ms) and bytes.
fio_window() {
    local a b n
    a=$(awk -v t="$1" 'BEGIN { printf "%.0f", t * 1000 }')
    b=$(awk -v t="$2" 'BEGIN { printf "%.0f", t * 1000 }')
    cat "$W"/fio_clat.*.log 2>/dev/null |
        awk -F', *' -v a="$a" -v b="$b" '$1 >= a && $1 <= b { print $2 }' | sort -n >"$W/lat.txt"
    n=$(wc -l <"$W/lat.txt")
    R[guest_bytes]=$((n * 4096))
    R[guest_mibs]=$(awk -v n="$n" -v a="$a" -v b="$b" 'BEGIN { printf "%.1f", (b > a) ? n * 4096 / ((b - a) / 1000) / 1048576 : 0 }')
    R[p99_ms]=0
    if [ "$n" -gt 0 ]; then
        R[p99_ms]=$(sed -n "$(( (n * 99 + 99) / 100 ))p" "$W/lat.txt" | awk '{ printf "%.2f", $1 / 1e6 }')
    fi
}

# ---------------------------------------------------------------- blkmig

blkmig_start() {
    local bw=$1 mode=$2 port=$3
    spawn dst "$BLKMIGD" --drive "id=disk0,file=$W/dst.raw,size=$(stat -c %s "$W/src.raw"),create=on" \
        --incoming "tcp:127.0.0.1:$port" --qmp "unix:$W/dst.qmp"
    spawn src "$BLKMIGD" --drive "id=disk0,file=$W/src.raw" --nbd "unix:$W/src.nbd" \
        --qmp "unix:$W/src.qmp"
    wait_socket "$W/dst.qmp" dst && wait_socket "$W/src.qmp" src && wait_socket "$W/src.nbd" src &&
    qmp_open dst "$W/dst.qmp" && qmp_open src "$W/src.qmp" || { FAIL=${FAIL:-"no QMP"}; return 1; }
    local caps='{"capability": "block", "state": true}, {"capability": "zero-blocks", "state": true}, {"capability": "events", "state": true}'
    [ "$mode" = auto-converge ] && caps+=', {"capability": "auto-converge", "state": true}'
    local copy=background
    [ "$mode" = write-blocking ] && copy=write-blocking
    qmp src migrate-set-capabilities "{\"capabilities\": [$caps]}" >/dev/null &&
    qmp src migrate-set-parameters "{\"max-bandwidth\": $(to_bytes "$bw"), \"block-copy-mode\": \"$copy\", \"progress-timeout\": $STALL}" >/dev/null ||
        { FAIL="setting up the source failed"; return 1; }
}

bench_blkmig() {
    local bw=$1 mode=$2 rep=$3 port t0 ev info lo0 lo1 alloc
    new_run "$bw" "$mode" "$rep"
    cp --sparse=always "$W/image.raw" "$W/src.raw"
    alloc=$(allocated "$W/src.raw")
    port=$(free_port)
    blkmig_start "$bw" "$mode" "$port" || { finish; return; }
    start_fio "nbd+unix:///disk0?socket=$W/src.nbd"
    lo0=$(lo_bytes)
    t0=$(now)
    qmp src migrate "{\"uri\": \"tcp:127.0.0.1:$port\"}" >/dev/null || { FAIL="migrate refused"; finish; return; }
    ev=$(qmp_event src MIGRATION '.data.status == "completed" or .data.status == "failed" or .data.status == "cancelled"' "$TIMEOUT") ||
        { FAIL="no final status within $TIMEOUT s"; stop_fio; finish; return; }
    stop_fio
    fio_window "$t0" "$(qmp_stamp "$ev")"
    lo1=$(lo_bytes)
    info=$(qmp src query-migrate)
    if [ "$(jq -r .status <<<"$info")" != completed ]; then
        FAIL="$(jq -r .status <<<"$info"): $(jq -r '."error-desc" // ""' <<<"$info" | cut -c1-600)"
        finish; return
    fi
    R[time]=$(sub "$(qmp_stamp "$ev")" "$t0")
    R[downtime]=$(jq -r .downtime <<<"$info")
    if [ -n "$lo0" ]; then R[wire]=$((lo1 - lo0)); else R[wire]=$(jq -r .disk.transferred <<<"$info"); fi
    R[needed]=$((alloc + ${R[guest_bytes]:-0}))
    qmp src quit >/dev/null; qmp dst quit >/dev/null
    wait_exit src; wait_exit dst
    if cmp -s "$W/src.raw" "$W/dst.raw"; then R[identical]=yes; else R[identical]=DIFFERS; fi
    finish
}

# ---------------------------------------------------------------- QEMU

qemu_start() {
    local port=$1 common=(-M none -nodefaults -display none)
    spawn qdst "$QEMU" "${common[@]}" -qmp "unix:$W/qdst.qmp,server=on,wait=off" \
        -blockdev "driver=file,filename=$W/dst.raw,node-name=dst-file" \
        -blockdev "driver=raw,file=dst-file,node-name=dst"
    spawn qsrc "$QEMU" "${common[@]}" -qmp "unix:$W/qsrc.qmp,server=on,wait=off" \
        -blockdev "driver=file,filename=$W/src.raw,node-name=src-file" \
        -blockdev "driver=raw,file=src-file,node-name=src"
    wait_socket "$W/qsrc.qmp" qsrc && wait_socket "$W/qdst.qmp" qdst &&
    qmp_open qsrc "$W/qsrc.qmp" && qmp_open qdst "$W/qdst.qmp" || { FAIL=${FAIL:-"no QMP"}; return 1; }
    qmp qdst nbd-server-start "{\"addr\": {\"type\": \"inet\", \"data\": {\"host\": \"127.0.0.1\", \"port\": \"$port\"}}}" >/dev/null &&
    qmp qdst nbd-server-add '{"device": "dst", "name": "disk0", "writable": true}' >/dev/null &&
    qmp qsrc nbd-server-start "{\"addr\": {\"type\": \"unix\", \"data\": {\"path\": \"$W/qsrc.nbd\"}}}" >/dev/null &&
    qmp qsrc nbd-server-add '{"device": "src", "name": "disk0", "writable": true}' >/dev/null ||
        { FAIL="QEMU NBD exports failed"; return 1; }
}

bench_qemu() {
    local bw=$1 rep=$2 port t0 t1 ev lo0 lo1 alloc speed
    new_run "$bw" qemu-mirror "$rep"
    cp --sparse=always "$W/image.raw" "$W/src.raw"
    truncate -s "$(stat -c %s "$W/src.raw")" "$W/dst.raw"
    alloc=$(allocated "$W/src.raw")
    port=$(free_port)
    speed=$(to_bytes "$bw")
    qemu_start "$port" || { finish; return; }
    start_fio "nbd+unix:///disk0?socket=$W/qsrc.nbd"
    lo0=$(lo_bytes)
    t0=$(now)
    qmp qsrc blockdev-add "{\"driver\": \"nbd\", \"node-name\": \"tgt\", \"export\": \"disk0\", \"server\": {\"type\": \"inet\", \"host\": \"127.0.0.1\", \"port\": \"$port\"}}" >/dev/null &&
    qmp qsrc blockdev-mirror "{\"job-id\": \"m0\", \"device\": \"src\", \"target\": \"tgt\", \"sync\": \"full\", \"copy-mode\": \"write-blocking\", \"speed\": $speed}" >/dev/null ||
        { FAIL="blockdev-mirror failed: $(tail -n 1 "$W/qsrc.qerr" 2>/dev/null)"; finish; return; }
    ev=$(qmp_event qsrc BLOCK_JOB_READY 'true' "$TIMEOUT") || { FAIL="no BLOCK_JOB_READY within $TIMEOUT s"; stop_fio; finish; return; }
    R[time]=$(sub "$(qmp_stamp "$ev")" "$t0")
    stop_fio
    fio_window "$t0" "$(qmp_stamp "$ev")"
    # The target holds the source: cancel without pivoting, timed.
    t1=$(now)
    qmp qsrc block-job-cancel '{"device": "m0"}' >/dev/null
    qmp_event qsrc BLOCK_JOB_COMPLETED 'true' 60 >/dev/null || FAIL="mirror did not complete after cancel"
    R[downtime]=$(awk -v d="$(sub "$(now)" "$t1")" 'BEGIN { printf "%.0f", d * 1000 }')
    lo1=$(lo_bytes)
    [ -n "$lo0" ] && R[wire]=$((lo1 - lo0))
    R[needed]=$((alloc + ${R[guest_bytes]:-0}))
    qmp qsrc quit >/dev/null; qmp qdst quit >/dev/null
    wait_exit qsrc; wait_exit qdst
    if cmp -s "$W/src.raw" "$W/dst.raw"; then R[identical]=yes; else R[identical]=DIFFERS; fi
    finish
}

# fio alone on blkmigd's export for as long as a migration takes, for scale.
bench_baseline() {
    local t0 t1
    new_run - "fio alone" 1
    cp --sparse=always "$W/image.raw" "$W/src.raw"
    spawn src "$BLKMIGD" --drive "id=disk0,file=$W/src.raw" --nbd "unix:$W/src.nbd" \
        --qmp "unix:$W/src.qmp"
    wait_socket "$W/src.nbd" src || { finish; return; }
    start_fio "nbd+unix:///disk0?socket=$W/src.nbd"
    t0=$(now)
    sleep 10
    t1=$(now)
    stop_fio
    fio_window "$t0" "$t1"
    finish
}

# ---------------------------------------------------------------- report

report() {
    local f=$OUT/converge.txt
    {
        echo "bench-converge: $SIZE image of random data, fio randwrite 4k, $JOBS jobs x iodepth $IODEPTH through NBD; one run per row unless BENCH_REPS"
        printf '%-8s %-16s %-7s %8s %9s %12s %10s %8s %9s  %s\n' link mode status "time s" "downtime" "wire/needed" "guest MiB/s" "p99 ms" identical note
        awk -F'\t' '{
            ratio = ($8 > 0 && $7 != "") ? sprintf("%.2f", $7 / $8) : "n/a"
            printf "%-8s %-16s %-7s %8s %9s %12s %10s %8s %9s  %s\n", ($1 == "0" ? "unlim" : $1), $2, $4,
                   ($5 == "" ? "-" : $5), ($6 == "" ? "-" : $6 " ms"), ratio, ($9 == "" ? "-" : $9),
                   ($10 == "" ? "-" : $10), ($11 == "" ? "-" : $11), $12
        }' "$ROWS"
    } | tee "$f"
    targets | tee -a "$f"
}

# PASS/MISS against the issue's targets.
targets() {
    echo
    echo "targets:"
    awk -F'\t' '
        $2 != "fio alone" && $2 != "qemu-mirror" && $2 != "background" {
            all++; if ($4 == "ok") done++
            if ($4 == "ok" && $6 != "" && $6 + 0 >= 300) slow++
        }
        $2 == "write-blocking" && $4 == "ok" { wb[$1] = $9 }
        $2 == "qemu-mirror" && $4 == "ok" { qm[$1] = $9 }
        END {
            printf "  %s  auto-converge and write-blocking always complete: %d of %d runs\n", (done == all ? "PASS" : "MISS"), done, all
            printf "  %s  downtime < 300 ms: %d run(s) at 300 ms or more\n", (slow ? "MISS" : "PASS"), slow
            for (b in wb) if (b in qm)
                printf "  %s  guest throughput, write-blocking vs QEMU write-blocking mirror @ %s: %.1f vs %.1f MiB/s\n",
                       (wb[b] + 0 >= qm[b] + 0 ? "PASS" : "MISS"), (b == "0" ? "unlimited" : b), wb[b], qm[b]
        }' "$ROWS"
}

# ---------------------------------------------------------------- main

say "scratch $W; size $SIZE, links: $BWS; modes: $MODES"
setup_netns
if [ ! -x "$OUT/mkimage" ] || [ "$ROOT/tests/bench/mkimage.c" -nt "$OUT/mkimage" ] ||
   [ "$ROOT/tests/bench/bench-util.h" -nt "$OUT/mkimage" ]; then
    ${CC:-cc} -O2 -Wall -o "$OUT/mkimage" "$ROOT/tests/bench/mkimage.c" || exit 1
fi
"$OUT/mkimage" "$W/image.raw" "$SIZE" full 7 >/dev/null || exit 1
sync
bench_baseline
for bw in $BWS; do
    for mode in $MODES; do
        for ((rep = 1; rep <= REPS; rep++)); do
            case "$mode" in
            qemu-mirror) bench_qemu "$bw" "$rep" ;;
            background|auto-converge|write-blocking) bench_blkmig "$bw" "$mode" "$rep" ;;
            *) echo "bench-converge: unknown mode '$mode'" >&2; exit 2 ;;
            esac
        done
    done
done
report
say "done in $(elapsed) s; rows in build/bench/converge.tsv, table in build/bench/converge.txt"
