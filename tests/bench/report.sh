#!/usr/bin/env bash
# Summarises the runs recorded by tests/bench/run.sh.
#
#   tests/bench/report.sh RUNS.tsv OUTDIR [SIZE] [REPS]
#
# One row per system and image: the median time of the timed runs (with
# min and max), its ratio to blkmig's median on the same image, medians of
# wire bytes, destination and source allocation, the highest peak RSS,
# whether every run gave an identical disk, and notes.  Writes
# OUTDIR/results.txt (the table, also printed), results.csv, runs.csv and,
# when gnuplot is installed, results.png.  Can be re-run on a kept runs.tsv.
set -euo pipefail

runs=$1
out=$2
size=${3:-?}
reps=${4:-?}

# TSV fields (see FIELDS in run.sh):
#  1 system 2 image 3 rep 4 status 5 time 6 wire 7 dst_alloc 8 src_alloc
#  9 rss 10 identical 11 sync 12 downtime 13 guest 14 client 15 note
awk -F'\t' -v csv="$out/results.csv" -v txt="$out/results.txt" -v plot="$out/results.dat" \
    -v size="$size" -v reps="$reps" '
function add(arr, key, v) { if (v != "") arr[key] = (key in arr) ? arr[key] " " v : v }
function sorted(str, a,    n, i, j, t) {
    n = split(str, a, " ")
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return n
}
function median(str,    a, n) {
    if (str == "") return ""
    n = sorted(str, a)
    if (n % 2) return a[(n + 1) / 2]
    if (a[n / 2] ~ /^[0-9]+$/ && a[n / 2 + 1] ~ /^[0-9]+$/) return sprintf("%.0f", (a[n / 2] + a[n / 2 + 1]) / 2)
    return sprintf("%.3f", (a[n / 2] + a[n / 2 + 1]) / 2)
}
function minv(str,    a, n) { if (str == "") return ""; n = sorted(str, a); return a[1] }
function maxv(str,    a, n) { if (str == "") return ""; n = sorted(str, a); return a[n] }
function mib(b) { return (b == "") ? "n/a" : sprintf("%.1f", b / 1048576) }
function csvq(s) { gsub(/"/, "\"\"", s); return "\"" s "\"" }
function addnote(key, s) {
    if (s == "") return
    if (!(key in notes)) notes[key] = s
    else if (index("; " notes[key] "; ", "; " s "; ") == 0) notes[key] = notes[key] "; " s
}
{
    key = $1 SUBSEP $2
    if (!(key in seen)) { seen[key] = 1; order[++n] = key; sys[key] = $1; img[key] = $2 }
    st = $4
    if (st == "ok") {
        nok[key]++
        add(tm, key, $5); add(wire, key, $6); add(dst, key, $7); add(src, key, $8)
        add(sync, key, $11); add(down, key, $12); add(guest, key, $13); add(client, key, $14)
        if ($9 != "" && $9 + 0 > rss[key] + 0) rss[key] = $9
        if ($10 == "DIFFERS") ndiff[key]++
        if ($10 == "yes") nsame[key]++
        np = split($15, parts, "; ")
        for (q = 1; q <= np; q++) {
            if (parts[q] ~ /^loopback bytes [0-9]+$/) add(lob, key, substr(parts[q], 16))
            else addnote(key, parts[q])
        }
        if ($1 == "blkmig" && $6 != "" && $8 != "" && $13 != "") add(wvn, key, sprintf("%.3f", $6 / ($8 + $13)))
    } else if (st == "count") {
        cwire[key] = $6
    } else if (st == "FAILED") {
        nfail[key]++
        if (!(key in failnote)) failnote[key] = $15
    } else if (st == "note") {
        addnote(key, $15)
    } else if (st == "n/a") {
        na[key] = $15
    }
}
END {
    for (i = 1; i <= n; i++) {
        k = order[i]
        if (sys[k] == "blkmig" && nok[k] > 0) base[img[k]] = median(tm[k])
    }
    print "system,image,runs,status,time_s,time_min_s,time_max_s,ratio_vs_blkmig,wire_bytes,dst_alloc_bytes,src_alloc_bytes,peak_rss_kib,identical,dst_sync_s,downtime_ms,guest_written_bytes,wire_vs_needed,client_wall_s,note" > csv
    hdr = sprintf("%-20s %-7s %4s %8s %15s %8s %9s %9s %8s %-9s %s", "system", "image", "runs", "time s", "(min-max)", "x blkmig", "wire MiB", "dst MiB", "RSS MiB", "identical", "notes")
    print "blkmig benchmark: " size " images, median of " reps " runs; times are wall-clock seconds" > txt
    print hdr > txt
    print "# label\tt_sparse\tt_full\tt_live\tw_sparse\tw_full\tw_live" > plot
    nplot = 0
    for (i = 1; i <= n; i++) {
        k = order[i]
        note = (k in notes) ? notes[k] : ""
        t = ""; tmin = ""; tmax = ""; ratio = ""; w = ""; d = ""; s = ""; same = ""; status = "ok"
        dt = ""; g = ""; v = ""; cl = ""; sy = ""
        if (k in na) {
            status = "n/a"; note = na[k]
        } else if (nok[k] == 0) {
            status = "FAILED"; note = "FAILED: " failnote[k]
        } else {
            t = median(tm[k]); tmin = minv(tm[k]); tmax = maxv(tm[k])
            if (img[k] in base && base[img[k]] > 0) ratio = sprintf("%.2f", t / base[img[k]])
            w = (k in cwire) ? cwire[k] : median(wire[k])
            if (k in cwire) note = (note == "" ? "" : note "; ") "wire counted by a proxy in an extra untimed run"
            d = median(dst[k]); s = median(src[k]); dt = median(down[k]); g = median(guest[k])
            v = median(wvn[k]); cl = median(client[k]); sy = median(sync[k])
            if (ndiff[k] > 0) same = (ndiff[k] == nok[k]) ? "DIFFERS" : "DIFFERS " ndiff[k] "/" nok[k]
            else if (nsame[k] > 0) same = "yes"
            else same = "n/a"
            if (nfail[k] > 0) note = (note == "" ? "" : note "; ") nfail[k] " more run(s) FAILED: " failnote[k]
            if (sys[k] == "blkmig") {
                extra = ""
                if (img[k] == "live") {
                    if (dt != "") extra = "downtime " dt " ms"
                    if (v != "") extra = extra sprintf("; wire/needed %.2f (needed = src alloc %s MiB + guest wrote %s MiB)", v, mib(s), mib(g))
                } else if (dt != "") extra = "downtime " dt " ms"
                if (cl != "") extra = extra (extra == "" ? "" : "; ") sprintf("blkmig client wall %.2f s", cl)
                note = extra (note == "" ? "" : "; " note)
            }
            if (k in lob) note = note (note == "" ? "" : "; ") "loopback " mib(median(lob[k])) " MiB"
            if (sy != "") note = note (note == "" ? "" : "; ") sprintf("dst sync after %.2f s", sy)
        }
        printf "%s,%s,%d,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n", sys[k], img[k], nok[k], status, t, tmin, tmax, ratio, w, d, s, rss[k], same, sy, dt, g, v, cl, csvq(note) > csv
        if (status == "ok")
            line = sprintf("%-20s %-7s %4d %8.2f %15s %8s %9s %9s %8s %-9s %s", sys[k], img[k], nok[k], t,
                           sprintf("(%.2f-%.2f)", tmin, tmax), ratio == "" ? "n/a" : ratio, mib(w), mib(d),
                           rss[k] == "" ? "n/a" : sprintf("%.1f", rss[k] / 1024), same, note)
        else
            line = sprintf("%-20s %-7s %4d %8s %15s %8s %9s %9s %8s %-9s %s", sys[k], img[k], nok[k], status, "", "", "", "", "", "", note)
        print line > txt
        # plot: one row per system, one column per image
        label = sys[k]
        if (!(label in prow)) { prow[label] = ++nplot; plabel[nplot] = label }
        if (status == "ok") {
            pval[label, img[k]] = t
            if (w != "") pwire[label, img[k]] = w / 1048576
            if (same ~ /DIFFERS/) pdiff[label] = 1
        }
    }
    for (j = 1; j <= nplot; j++) {
        label = plabel[j]
        if (!((label, "sparse") in pval) && !((label, "full") in pval) && !((label, "live") in pval)) continue
        printf "\"%s\"", label (label in pdiff ? " (DIFFERS)" : "") > plot
        split("sparse full live", ims, " ")
        for (m = 1; m <= 3; m++) printf "\t%s", ((label, ims[m]) in pval) ? pval[label, ims[m]] : "NaN" > plot
        for (m = 1; m <= 3; m++) printf "\t%s", ((label, ims[m]) in pwire) ? pwire[label, ims[m]] : "NaN" > plot
        printf "\n" > plot
    }
}' "$runs"

# Every single run, as CSV.
{
    echo "system,image,rep,status,time_s,wire_bytes,dst_alloc_bytes,src_alloc_bytes,peak_rss_kib,identical,dst_sync_s,downtime_ms,guest_written_bytes,client_wall_s,note"
    awk -F'\t' '{ n = $15; gsub(/"/, "\"\"", n); $15 = "\"" n "\""; for (i = 1; i <= 15; i++) printf "%s%s", $i, (i < 15 ? "," : "\n") }' "$runs"
} >"$out/runs.csv"

cat "$out/results.txt"

if command -v gnuplot >/dev/null 2>&1; then
    pct=${BENCH_DATA_PCT:-10}
    gnuplot <<EOF 2>"$out/gnuplot.log" || echo "bench: gnuplot failed, see $out/gnuplot.log" >&2
set terminal pngcairo size 1400,1000 noenhanced font ",10"
set output "$out/results.png"
set datafile separator "\t"
set datafile missing "NaN"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set logscale y
set xtics rotate by -20 scale 0
set grid ytics
set key top right
set xrange [-0.6:*]
set multiplot layout 2,1 title "blkmig benchmark: $size images, median of $reps runs (lower is better)"
set title "wall time"
set ylabel "seconds (log scale)"
set yrange [0.01:*]
plot "$out/results.dat" using 2:xtic(1) title "sparse ($pct% data)", \
     "" using 3 title "full (all random)", \
     "" using 4 title "live (sparse + guest writes)"
set title "bytes on the wire (where known)"
set ylabel "MiB (log scale)"
set yrange [1:*]
plot "$out/results.dat" using 5:xtic(1) title "sparse ($pct% data)", \
     "" using 6 title "full (all random)", \
     "" using 7 title "live (sparse + guest writes)"
unset multiplot
EOF
else
    echo "bench: gnuplot not installed: no results.png" >&2
fi
