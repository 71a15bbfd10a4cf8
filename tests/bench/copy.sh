#!/usr/bin/env bash
# make bench-copy: blkmig copy against cp --sparse=always, qemu-img convert
# and nbdcopy, on the same images, every time taken to durable.
#
# Rows: IMAGE (sparse: 10% data; full: every byte data) x PATH:
#   file-file    a local raw image into a new local file
#   file-nbd     a local raw image into qemu-nbd (a fresh sparse file)
#   nbdkit-file  nbdkit's file plugin serving the image, into a new file
# Systems: blkmig (blkmig copy), blkmig-r1 (the same with --requests 1:
# reads and writes not overlapped), cp (cp --sparse=always, file-file
# only), qemu-img (convert -W -m 16), nbdcopy (--flush).
#
# Each run is timed from start to exit, then `sync DST` (fsync of the
# destination file) is timed while every server of the run is still up:
# durable = time + sync.  The destination is compared with the source
# (samefile: cmp that skips holes of both) and its allocation recorded.
# Prints a table and a targets block; writes build/bench/copy.{txt,csv}.
#
# Environment (defaults in brackets):
#   BENCH_SIZE [4G]        image size
#   BENCH_DATA_PCT [10]    data share of the sparse image
#   BENCH_REPS [1]         runs per system and row (the median is shown;
#                          each rep starts one system further on)
#   BENCH_IMAGES [sparse full]
#   BENCH_PATHS [file-file file-nbd nbdkit-file]
#   BENCH_COPY_SYSTEMS [blkmig blkmig-r1 cp qemu-img nbdcopy]
#   BENCH_DIR              where the scratch directory goes [TMPDIR or /tmp]
#   BENCH_KEEP [0]         1: keep the scratch directory
#   BLKMIG                 the tool [build/blkmig]
set -uo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=$ROOT/build/bench
BLKMIG=${BLKMIG:-$ROOT/build/blkmig}
SIZE=${BENCH_SIZE:-4G}
DATA_PCT=${BENCH_DATA_PCT:-10}
REPS=${BENCH_REPS:-1}
IMAGES=${BENCH_IMAGES:-sparse full}
PATHS=${BENCH_PATHS:-file-file file-nbd nbdkit-file}
SYSTEMS=${BENCH_COPY_SYSTEMS:-blkmig blkmig-r1 cp qemu-img nbdcopy}
KEEP=${BENCH_KEEP:-0}

mkdir -p "$OUT"
[ -z "${BENCH_DIR:-}" ] || mkdir -p "$BENCH_DIR"
W=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/blkmig-copy-bench.XXXXXX") || exit 1
SERVER_PID=

cleanup() {
    stop_server
    if [ "$KEEP" = 1 ]; then echo "bench-copy: scratch kept in $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

START=$(date +%s.%N)
say() { printf 'bench-copy: [%4.0fs] %s\n' "$(awk -v s="$START" -v n="$(date +%s.%N)" 'BEGIN { print n - s }')" "$*"; }
now() { date +%s.%N; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }
allocated() { stat -c '%b %B' "$1" | awk '{ printf "%.0f", $1 * $2 }'; }

# ---------------------------------------------------------------- set-up

build_helpers() {
    local h
    for h in mkimage samefile; do
        if [ ! -x "$OUT/$h" ] || [ "$ROOT/tests/bench/$h.c" -nt "$OUT/$h" ] ||
           [ "$ROOT/tests/bench/bench-util.h" -nt "$OUT/$h" ]; then
            ${CC:-cc} -O2 -Wall -o "$OUT/$h" "$ROOT/tests/bench/$h.c" || exit 1
        fi
    done
    # The work tree may be rebuilt meanwhile: every run uses this copy.
    cp "$BLKMIG" "$W/blkmig" || { echo "bench-copy: $BLKMIG not built" >&2; exit 1; }
    BLKMIG=$W/blkmig
}

declare -A IMG
make_images() {
    local i
    for i in $IMAGES; do
        case "$i" in
        sparse) "$OUT/mkimage" "$W/sparse.raw" "$SIZE" scatter "$DATA_PCT" 1 >/dev/null ;;
        full) "$OUT/mkimage" "$W/full.raw" "$SIZE" full 2 >/dev/null ;;
        *) echo "bench-copy: unknown image '$i'" >&2; exit 2 ;;
        esac
        IMG[$i]=$W/$i.raw
    done
    sync
    say "images: $IMAGES ($SIZE, written and synced; they stay in the page cache)"
}

# ---------------------------------------------------------------- servers

stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
        SERVER_PID=
    fi
    rm -f "$W/nbd.sock"
}

# serve CMD...: start an NBD server on $W/nbd.sock, wait until it listens.
serve() {
    "$@" >"$W/server.log" 2>&1 &
    SERVER_PID=$!
    local i
    for ((i = 0; i < 200; i++)); do
        [ -S "$W/nbd.sock" ] && return 0
        sleep 0.05
    done
    echo "bench-copy: server did not start: $(tail -n 2 "$W/server.log")" >&2
    return 1
}
URI="nbd+unix:///?socket=$W/nbd.sock"

# ---------------------------------------------------------------- runs

RUNS=$OUT/copy-runs.tsv
: >"$RUNS"

# The command of SYSTEM copying FROM to TO ($W/dst.raw or the URI).
command_for() {
    local system=$1 from=$2 to=$3 n=
    [ "${to#nbd}" != "$to" ] && n=-n
    case "$system" in
    blkmig) echo "$BLKMIG copy -O raw $from $to" ;;
    blkmig-r1) echo "$BLKMIG copy -O raw --requests 1 $from $to" ;;
    cp) echo "cp --sparse=always $from $to" ;;
    qemu-img) echo "qemu-img convert $n -W -m 16 -f raw -O raw $from $to" ;;
    nbdcopy) echo "nbdcopy --flush $from $to" ;;
    esac
}

# One run: SYSTEM, IMAGE, PATH, REP.
run_one() {
    local system=$1 image=$2 path=$3 rep=$4 src=${IMG[$2]} from to cmd t0 t1 t2 status=ok
    local dst=$W/dst.raw note=""
    rm -f "$dst"
    from=$src; to=$dst
    case "$path" in
    file-nbd)
        truncate -s "$(stat -c %s "$src")" "$dst"
        serve qemu-nbd -f raw --cache=writeback --discard=unmap --shared=8 -t -k "$W/nbd.sock" "$dst" || return
        to=$URI ;;
    nbdkit-file)
        serve nbdkit -f -U "$W/nbd.sock" file "$src" || return
        from=$URI ;;
    esac
    cmd=$(command_for "$system" "$from" "$to")
    t0=$(now)
    $cmd >"$W/cmd.log" 2>&1 || { status=FAILED; note=$(tail -n 1 "$W/cmd.log"); }
    t1=$(now)
    sync "$dst"
    t2=$(now)
    stop_server
    local same=DIFFERS
    "$OUT/samefile" "$src" "$dst" >/dev/null 2>&1 && same=yes
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$path" "$image" "$system" "$rep" "$status" \
        "$(sub "$t1" "$t0")" "$(sub "$t2" "$t1")" "$(allocated "$dst")" "$(allocated "$src")" \
        "$same${note:+; $note}" >>"$RUNS"
    say "$path $image $system: $(sub "$t1" "$t0") s + sync $(sub "$t2" "$t1") s, identical $same${note:+ ($note)}"
    rm -f "$dst"
}

applies() {
    [ "$1" != cp ] || [ "$2" = file-file ]
}

# SYSTEMS turned left by N places: each rep starts with another system, so
# that none always runs first after a row's set-up or right after the same
# other system (the run after a 4 GiB one, whose file was just deleted, is
# often the slow one).
rotated() {
    local -a all=($SYSTEMS)
    local n=$(($1 % ${#all[@]}))
    echo "${all[@]:n} ${all[@]:0:n}"
}

run_all() {
    local image path system rep
    for image in $IMAGES; do
        for path in $PATHS; do
            for ((rep = 1; rep <= REPS; rep++)); do
                for system in $(rotated $((rep - 1))); do
                    applies "$system" "$path" && run_one "$system" "$image" "$path" "$rep"
                done
            done
        done
    done
}

# ---------------------------------------------------------------- report

report() {
    awk -F'\t' -v txt="$OUT/copy.txt" -v csv="$OUT/copy.csv" '
    function median(str,    a, n, i, j, t) {
        n = split(str, a, " ")
        for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function out(s) { print s; print s > txt }
    $5 == "ok" {
        k = $1 SUBSEP $2 SUBSEP $3
        if (!(k in seen)) { seen[k] = 1; order[++n] = k }
        t[k] = t[k] " " $6; d[k] = d[k] " " ($6 + $7); sy[k] = sy[k] " " $7
        dst[k] = $8; src[k] = $9
        v = (k in same && same[k] != $10) ? "MIXED" : $10
        same[k] = v
    }
    $5 != "ok" { bad[$1 SUBSEP $2 SUBSEP $3] = $10 }
    END {
        out(sprintf("%-12s %-7s %-10s %8s %8s %10s %8s %9s %9s %s", "path", "image", "system",
                    "time s", "sync s", "durable s", "x best", "dst MiB", "src MiB", "identical"))
        print "path,image,system,time_s,sync_s,durable_s,ratio_vs_best_other,dst_alloc_bytes,src_alloc_bytes,identical" > csv
        for (i = 1; i <= n; i++) {
            split(order[i], f, SUBSEP); k = order[i]
            dur[k] = median(d[k])
            if (f[3] == "qemu-img" || f[3] == "nbdcopy") {
                r = f[1] SUBSEP f[2]
                if (!(r in best) || dur[k] < best[r]) best[r] = dur[k]
            }
            if (f[3] == "cp") cpd[f[1] SUBSEP f[2]] = dur[k]
        }
        for (i = 1; i <= n; i++) {
            split(order[i], f, SUBSEP); k = order[i]; r = f[1] SUBSEP f[2]
            x = (r in best) ? sprintf("%.2f", dur[k] / best[r]) : "n/a"
            out(sprintf("%-12s %-7s %-10s %8.2f %8.2f %10.2f %8s %9.1f %9.1f %s", f[1], f[2], f[3],
                        median(t[k]), median(sy[k]), dur[k], x, dst[k] / 1048576, src[k] / 1048576, same[k]))
            printf "%s,%s,%s,%.3f,%.3f,%.3f,%s,%d,%d,%s\n", f[1], f[2], f[3], median(t[k]),
                   median(sy[k]), dur[k], x, dst[k], src[k], same[k] > csv
        }
        for (k in bad) { split(k, f, SUBSEP); out(sprintf("%-12s %-7s %-10s FAILED: %s", f[1], f[2], f[3], bad[k])) }
        out("")
        out("targets (blkmig durable time; allocation against the source):")
        for (i = 1; i <= n; i++) {
            split(order[i], f, SUBSEP); k = order[i]; r = f[1] SUBSEP f[2]
            if (f[3] != "blkmig") continue
            if (r in best) {
                x = dur[k] / best[r]
                out(sprintf("  %-4s %-12s %-7s blkmig / faster of nbdcopy, qemu-img = %.2f (<= 0.80)",
                            x <= 0.8 ? "PASS" : "MISS", f[1], f[2], x))
            }
            if (r in cpd) {
                x = dur[k] / cpd[r]
                out(sprintf("  %-4s %-12s %-7s blkmig / cp --sparse=always + sync = %.2f (<= 1.00)",
                            x <= 1.0 ? "PASS" : "MISS", f[1], f[2], x))
            }
            diff = dst[k] - src[k]
            out(sprintf("  %-4s %-12s %-7s destination allocation - source = %+.1f MiB (equal: within 1%% + 1 MiB)",
                        (diff <= src[k] / 100 + 1048576 && -diff <= src[k] / 100 + 1048576) ? "PASS" : "MISS",
                        f[1], f[2], diff / 1048576))
        }
    }' "$RUNS"
}

build_helpers
# df names the file system type (stat -f says ext2/ext3 for ext4).
say "scratch $W on $(df --output=fstype "$W" | tail -n 1); blkmig $("$BLKMIG" --version)"
make_images
run_all
report
