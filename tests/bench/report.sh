#!/usr/bin/env bash
# Summarises the runs recorded by tests/bench/run.sh.
#
#   tests/bench/report.sh RUNS.tsv OUTDIR [SIZE] [REPS]
#
# One row per system and image: the median time of the timed runs (with
# min and max), its ratio to blkmig's median on the same image, the median
# durable time (per run: time + the timed sync of the destination) and its
# ratio to blkmig's, medians of wire bytes and destination allocation, the
# highest peak RSS, whether every run gave an identical disk, and notes.
# Then the targets block (PASS/MISS, with the numbers each comes from).
# Writes OUTDIR/results.txt (header, table and targets, also printed),
# results.csv, runs.csv and, when gnuplot is installed, results.png.  Can
# be re-run on a kept runs.tsv (also one from before the durable column).
set -euo pipefail

runs=$1
out=$2
size=${3:-?}
reps=${4:-?}

# TSV fields (see FIELDS in run.sh; 16 and 17 are empty in older files):
#  1 system 2 image 3 rep 4 status 5 time 6 wire 7 dst_alloc 8 src_alloc
#  9 rss 10 identical 11 sync 12 downtime 13 guest 14 client 15 note
# 16 rss_max 17 sync_gap
# status: ok, count (untimed counting run), FAILED, note, n/a, meta (not a
# run: system is a key, note its text, e.g. "scratch").
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
# Durable time of one run: the time plus the timed sync of its destination;
# tcp-loopback has no destination (its time is the wire limit).
function durable(sname, t, sy) {
    if (t == "") return ""
    if (sy != "") return sprintf("%.3f", t + sy)
    if (sname == "tcp-loopback") return t
    return ""
}
# --- targets block helpers
function K(s, i) { return s SUBSEP i }
function ok(k) { return (k in seen) && !(k in na) && nok[k] > 0 }
function whynot(k, label) {
    if (!(k in seen)) return label " not run"
    if (k in na) return label " n/a"
    return label " FAILED: " failnote[k]
}
# Why rows A and B (labels LA, LB) cannot be compared: their reasons, joined.
function whynot2(a, la, b, lb) {
    return (ok(a) ? "" : whynot(a, la)) (ok(a) || ok(b) ? "" : "; ") (ok(b) ? "" : whynot(b, lb))
}
# The two lines (time, durable) on image IM comparing blkmig row B (system
# BS) with row O (system OS) against LIM.
function image_ratio(im, b, bs, o, os, lim) {
    if (!ok(b) || !ok(o)) {
        target(lacking(b), im, bs " time / " os " time", whynot2(b, bs " " im, o, os " " im) sprintf(" (target <= %.2f)", lim))
        target(lacking(b), im, bs " durable / " os " durable", sprintf("(same rows missing; target <= %.2f)", lim))
        return
    }
    target_ratio(im, bs " time / " os " time", bs, T[b], os, T[o], lim)
    target_ratio(im, bs " durable / " os " durable", bs, D[b], os, D[o], lim)
}
# Verdict of a target line that lacks a row: MISS when blkmig row B has
# only FAILED runs (blkmig missed it), else n/a (nothing to compare).
function lacking(b) { return ((b in nfail) && nok[b] == 0 && !(b in na)) ? "MISS" : "n/a" }
function target(st, im, what, nums) { printf "  %-4s  %-6s  %-37s %s\n", st, im, what, nums > txt }
# target_ratio IMAGE WHAT A-LABEL A B-LABEL B LIMIT: A / B <= LIMIT
function target_ratio(im, what, la, a, lb, b, lim,    r) {
    r = a / b
    target(r <= lim ? "PASS" : "MISS", im, what, sprintf("%s %.3f s / %s %.3f s = %.3f (target <= %.2f)", la, a, lb, b, r, lim))
}
$4 == "meta" { meta[$1] = $15; next }
{
    key = $1 SUBSEP $2
    if (!(key in seen)) { seen[key] = 1; order[++n] = key; sys[key] = $1; img[key] = $2 }
    st = $4
    if (st == "ok") {
        nok[key]++
        add(tm, key, $5); add(wire, key, $6); add(dst, key, $7); add(src, key, $8)
        add(sync, key, $11); add(down, key, $12); add(guest, key, $13); add(client, key, $14)
        add(dur, key, durable($1, $5, $11)); add(gap, key, $17)
        if ($9 != "" && $9 + 0 > rss[key] + 0) rss[key] = $9
        if ($16 != "" && $16 + 0 > rssmax[key] + 0) rssmax[key] = $16
        if ($10 == "DIFFERS") ndiff[key]++
        if ($10 == "yes") nsame[key]++
        np = split($15, parts, "; ")
        for (q = 1; q <= np; q++) {
            if (parts[q] ~ /^loopback bytes [0-9]+$/) add(lob, key, substr(parts[q], 16))
            else addnote(key, parts[q])
        }
        if ($1 == "blkmig" && $6 != "" && $8 != "" && $13 != "") add(wvn, key, sprintf("%.3f", $6 / ($8 + $13)))
        # worst run, for the targets
        if ($1 == "blkmig" && $7 != "" && $8 != "") {
            dd = $7 - $8
            if (!(key in adiff) || (dd < 0 ? -dd : dd) > (adiff[key] < 0 ? -adiff[key] : adiff[key])) { adiff[key] = dd; adst[key] = $7; asrc[key] = $8 }
        }
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
        if (sys[k] == "blkmig" && nok[k] > 0) { base[img[k]] = median(tm[k]); dbase[img[k]] = median(dur[k]) }
    }
    print "system,image,runs,status,time_s,time_min_s,time_max_s,ratio_vs_blkmig,wire_bytes,dst_alloc_bytes,src_alloc_bytes,peak_rss_kib,identical,dst_sync_s,downtime_ms,guest_written_bytes,wire_vs_needed,client_wall_s,durable_s,durable_min_s,durable_max_s,durable_ratio_vs_blkmig,dst_sync_gap_s,peak_rss_max_process_kib,note" > csv
    hdr = sprintf("%-20s %-7s %4s %8s %15s %8s %9s %9s %9s %9s %8s %-9s %s", "system", "image", "runs", "time s", "(min-max)", "x blkmig", "durable s", "durable x", "wire MiB", "dst MiB", "RSS MiB", "identical", "notes")
    print "blkmig benchmark: " size " images, median of " reps " runs; times are wall-clock seconds" > txt
    if ("scratch" in meta) print "scratch: " meta["scratch"] > txt
    if ("load" in meta) print "load: " meta["load"] > txt
    else print "scratch: file system not recorded; runs.tsv from an older run.sh, whose \"dst sync\" ran only after the servers had stopped (their flush at exit untimed)" > txt
    print "time s: until the system reports the copy done.  durable s: per run, time + `sync DST` (fsync of the destination file," > txt
    print "  timed at once, before any server stops; shown as \"dst sync\"), then the median; tcp-loopback (no destination): its time." > txt
    print "  x blkmig / durable x: median / blkmig median on the same image." > txt
    print hdr > txt
    print "# label\tt_sparse\tt_full\tt_live\tw_sparse\tw_full\tw_live\td_sparse\td_full\td_live" > plot
    nplot = 0
    for (i = 1; i <= n; i++) {
        k = order[i]
        note = (k in notes) ? notes[k] : ""
        t = ""; tmin = ""; tmax = ""; ratio = ""; w = ""; d = ""; s = ""; same = ""; status = "ok"
        dt = ""; g = ""; v = ""; cl = ""; sy = ""; du = ""; dmin = ""; dmax = ""; dratio = ""; gp = ""
        if (k in na) {
            status = "n/a"; note = na[k]
        } else if (nok[k] == 0) {
            status = "FAILED"; note = "FAILED: " failnote[k]
        } else {
            t = median(tm[k]); tmin = minv(tm[k]); tmax = maxv(tm[k])
            if (img[k] in base && base[img[k]] > 0) ratio = sprintf("%.2f", t / base[img[k]])
            du = median(dur[k]); dmin = minv(dur[k]); dmax = maxv(dur[k])
            if (du != "" && img[k] in dbase && dbase[img[k]] > 0) dratio = sprintf("%.2f", du / dbase[img[k]])
            w = (k in cwire) ? cwire[k] : median(wire[k])
            if (k in cwire) note = (note == "" ? "" : note "; ") "wire counted by a proxy in an extra untimed run"
            d = median(dst[k]); s = median(src[k]); dt = median(down[k]); g = median(guest[k])
            v = median(wvn[k]); cl = median(client[k]); sy = median(sync[k]); gp = median(gap[k])
            if (ndiff[k] > 0) same = (ndiff[k] == nok[k]) ? "DIFFERS" : "DIFFERS " ndiff[k] "/" nok[k]
            else if (nsame[k] > 0) same = "yes"
            else same = "n/a"
            if (nfail[k] > 0) note = (note == "" ? "" : note "; ") nfail[k] " more run(s) FAILED: " failnote[k]
            if (sys[k] ~ /^blkmig/) {
                extra = ""
                if (img[k] == "live") {
                    if (dt != "") extra = "downtime " dt " ms"
                    if (v != "") extra = extra sprintf("; wire/needed %.2f (needed = src alloc %s MiB + guest wrote %s MiB)", v, mib(s), mib(g))
                } else if (dt != "") extra = "downtime " dt " ms"
                if (cl != "") extra = extra (extra == "" ? "" : "; ") sprintf("blkmig client wall %.2f s", cl)
                note = extra (note == "" ? "" : "; " note)
            }
            if (k in lob) note = note (note == "" ? "" : "; ") "loopback " mib(median(lob[k])) " MiB"
            if (sy != "") note = note (note == "" ? "" : "; ") sprintf("dst sync %.2f s", sy)
        }
        printf "%s,%s,%d,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n", sys[k], img[k], nok[k], status, t, tmin, tmax, ratio, w, d, s, rss[k], same, sy, dt, g, v, cl, du, dmin, dmax, dratio, gp, rssmax[k], csvq(note) > csv
        if (status == "ok")
            line = sprintf("%-20s %-7s %4d %8.2f %15s %8s %9s %9s %9s %9s %8s %-9s %s", sys[k], img[k], nok[k], t,
                           sprintf("(%.2f-%.2f)", tmin, tmax), ratio == "" ? "n/a" : ratio,
                           du == "" ? "n/a" : sprintf("%.2f", du), dratio == "" ? "n/a" : dratio, mib(w), mib(d),
                           rss[k] == "" ? "n/a" : sprintf("%.1f", rss[k] / 1024), same, note)
        else
            line = sprintf("%-20s %-7s %4d %8s %15s %8s %9s %9s %9s %9s %8s %-9s %s", sys[k], img[k], nok[k], status, "", "", "", "", "", "", "", "", note)
        print line > txt
        T[k] = t; D[k] = du; SY[k] = sy
        # plot: one row per system, one column per image
        label = sys[k]
        if (!(label in prow)) { prow[label] = ++nplot; plabel[nplot] = label }
        if (status == "ok") {
            pval[label, img[k]] = t
            if (du != "") pdur[label, img[k]] = du
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
        for (m = 1; m <= 3; m++) printf "\t%s", ((label, ims[m]) in pdur) ? pdur[label, ims[m]] : "NaN" > plot
        printf "\n" > plot
    }

    # ------------------------------------------------------------ targets
    print "" > txt
    print "targets (from the runs above: medians unless \"worst run\"; PASS/MISS against the target, info: context, n/a: a row is missing):" > txt
    b = K("blkmig", "sparse"); nb = K("nbdcopy", "sparse"); mi = K("qemu-mirror", "sparse")
    image_ratio("sparse", b, "blkmig", nb, "nbdcopy", 0.5)
    image_ratio("sparse", b, "blkmig", mi, "qemu-mirror", 0.2)
    if (!ok(b) || !(b in adiff))
        target(lacking(b), "sparse", "blkmig dst allocation vs source", (ok(b) ? "allocation not recorded" : whynot(b, "blkmig sparse")) " (target within 64 KiB)")
    else {
        ad = adiff[b] < 0 ? -adiff[b] : adiff[b]
        target(ad <= 65536 ? "PASS" : "MISS", "sparse", "blkmig dst allocation vs source",
               sprintf("dst %.0f B - src %.0f B = %+.0f B (%+.1f KiB), worst of %d run(s) (target within 64 KiB)", adst[b], asrc[b], adiff[b], adiff[b] / 1024, nok[b]))
    }

    # What TLS costs: the same migration with tls-creds on both sides.
    tl = K("blkmig+tls", "sparse")
    if (!ok(b) || !ok(tl))
        target(ok(b) ? lacking(tl) : lacking(b), "sparse", "blkmig+tls time / blkmig time", whynot2(tl, "blkmig+tls sparse", b, "blkmig sparse") " (target <= 1.25)")
    else
        target_ratio("sparse", "blkmig+tls time / blkmig time", "blkmig+tls", T[tl], "blkmig", T[b], 1.25)
    # What end-to-end checksums cost (block-checksum: on by default only
    # if under 5%).
    for (ci = 0; ci < 2; ci++) {
        im = ci ? "full" : "sparse"
        ck = K("blkmig+cksum", im); bk = K("blkmig", im)
        if (!ok(bk) || !ok(ck))
            target(ok(bk) ? lacking(ck) : lacking(bk), im, "blkmig+cksum time / blkmig time", whynot2(ck, "blkmig+cksum " im, bk, "blkmig " im) " (target <= 1.05)")
        else
            target_ratio(im, "blkmig+cksum time / blkmig time", "blkmig+cksum", T[ck], "blkmig", T[bk], 1.05)
    }
    tl = K("blkmig+tls", "live"); bl = K("blkmig", "live")
    if (ok(bl) && ok(tl))
        target("info", "live", "blkmig+tls time / blkmig time", sprintf("blkmig+tls %.3f s / blkmig %.3f s = %.3f", T[tl], T[bl], T[tl] / T[bl]))

    b = K("blkmig", "full"); tc = K("tcp-loopback", "full"); c = K("cp", "full")
    if (!ok(b) || !ok(tc))
        target(lacking(b), "full", "blkmig throughput vs tcp-loopback", whynot2(b, "blkmig full", tc, "tcp-loopback full") " (target >= 80%)")
    else {
        pct = 100 * T[tc] / T[b]
        target(pct >= 80 ? "PASS" : "MISS", "full", "blkmig throughput vs tcp-loopback",
               sprintf("tcp %.3f s / blkmig %.3f s = %.0f%% (target >= 80%%; blkmig durable %.3f s)", T[tc], T[b], pct, D[b]))
    }
    if (!ok(c) || !ok(tc) || D[c] == "")
        target("n/a", "full", "storage floor: tcp / cp durable", whynot2(c, "cp full", tc, "tcp-loopback full"))
    else {
        pct = 100 * T[tc] / D[c]
        target("info", "full", "storage floor: tcp / cp durable",
               sprintf("tcp %.3f s / cp durable %.3f s = %.0f%% (cp: median time %.3f s, median dst sync %.3f s): this storage %s a durable copy at >= 80%% of the wire", T[tc], D[c], pct, T[c], SY[c], pct >= 80 ? "allows" : "does not allow"))
    }
    if (!ok(b) || !ok(c) || D[c] == "" || D[b] == "")
        target("n/a", "full", "blkmig durable / cp durable", whynot2(b, "blkmig full", c, "cp full"))
    else
        target("info", "full", "blkmig durable / cp durable", sprintf("blkmig %.3f s / cp %.3f s = %.2f (1.00: as fast as a local durable copy)", D[b], D[c], D[b] / D[c]))

    # qcow2: blkmig against QEMU 7.2 mirror, the whole chain (sync=full)
    # and the top layer only (block-incremental against sync=top).
    image_ratio("qcow2", K("blkmig", "qcow2"), "blkmig", K("qemu-mirror", "qcow2"), "qemu-mirror", 0.2)
    image_ratio("qcow2", K("blkmig+inc", "qcow2"), "blkmig+inc", K("qemu-mirror+top", "qcow2"), "qemu-mirror+top", 0.2)

    b = K("blkmig", "live")
    if (!ok(b)) {
        # every run FAILED (e.g. did not converge): a miss, not a gap
        st = lacking(b)
        target(st, "live", "downtime", whynot(b, "blkmig live") " (target < 300 ms)")
        target(st, "live", "wire / needed", whynot(b, "blkmig live") " (target <= 1.5)")
        target(st, "live", "identical", whynot(b, "blkmig live") " (target: all)")
    } else {
        if (down[b] == "") target("n/a", "live", "downtime", "not reported (target < 300 ms)")
        else target(maxv(down[b]) + 0 < 300 ? "PASS" : "MISS", "live", "downtime",
                    sprintf("worst run %s ms, median %s ms, %d run(s) (target < 300 ms)", maxv(down[b]), median(down[b]), nok[b]))
        if (wvn[b] == "") target("n/a", "live", "wire / needed", "guest bytes not measured (target <= 1.5)")
        else target(maxv(wvn[b]) + 0 <= 1.5 ? "PASS" : "MISS", "live", "wire / needed",
                    sprintf("worst run %.3f, median %.3f; needed = src alloc %s MiB + guest wrote %s MiB, wire %s MiB (medians) (target <= 1.5)",
                            maxv(wvn[b]), median(wvn[b]), mib(median(src[b])), mib(median(guest[b])), mib(median(wire[b]))))
        target(nsame[b] == nok[b] && nfail[b] == 0 ? "PASS" : "MISS", "live", "identical",
               sprintf("%d of %d run(s) identical%s (target: all)", nsame[b] + 0, nok[b] + nfail[b], nfail[b] > 0 ? ", " nfail[b] " FAILED: " failnote[b] : ""))
    }

    # RSS: the largest single blkmigd over every blkmig run (variants
    # included) of every image.
    best = ""; nrun = 0; sumbest = ""
    for (i = 1; i <= n; i++) {
        k = order[i]
        if (sys[k] !~ /^blkmig/ || !ok(k)) continue
        nrun += nok[k]
        if ((k in rssmax) && (best == "" || rssmax[k] + 0 > best + 0)) best = rssmax[k]
        if ((k in rss) && (sumbest == "" || rss[k] + 0 > sumbest + 0)) sumbest = rss[k]
    }
    if (nrun == 0)
        target("n/a", "all", "max blkmigd peak RSS", "no blkmig run finished (target <= 128 MiB)")
    else if (best == "")
        target(sumbest + 0 <= 131072 ? "PASS" : "MISS", "all", "max blkmigd peak RSS",
               sprintf("%.1f MiB is the sum of both blkmigd + client (per-daemon figure not recorded in this runs.tsv) (target <= 128 MiB)", sumbest / 1024))
    else
        target(best + 0 <= 131072 ? "PASS" : "MISS", "all", "max blkmigd peak RSS",
               sprintf("%.1f MiB: largest VmHWM of one blkmigd over %d blkmig run(s), all images (both daemons + client: %.1f MiB) (target <= 128 MiB)", best / 1024, nrun, sumbest / 1024))
}' "$runs"

# Every single run, as CSV.
# durable_s: time + dst_sync_s (tcp-loopback: time); status meta rows
# (the scratch file system) are in results.txt's header, not here.
{
    echo "system,image,rep,status,time_s,wire_bytes,dst_alloc_bytes,src_alloc_bytes,peak_rss_kib,identical,dst_sync_s,downtime_ms,guest_written_bytes,client_wall_s,durable_s,peak_rss_max_process_kib,dst_sync_gap_s,note"
    awk -F'\t' '$4 != "meta" {
        d = ""
        if ($4 == "ok" && $5 != "") d = ($11 != "") ? sprintf("%.3f", $5 + $11) : ($1 == "tcp-loopback" ? $5 : "")
        n = $15; gsub(/"/, "\"\"", n)
        for (i = 1; i <= 14; i++) printf "%s,", $i
        printf "%s,%s,%s,\"%s\"\n", d, $16, $17, n
    }' "$runs"
} >"$out/runs.csv"

cat "$out/results.txt"

if command -v gnuplot >/dev/null 2>&1; then
    pct=${BENCH_DATA_PCT:-10}
    gnuplot <<EOF 2>"$out/gnuplot.log" || echo "bench: gnuplot failed, see $out/gnuplot.log" >&2
set terminal pngcairo size 1400,1400 noenhanced font ",10"
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
set multiplot layout 3,1 title "blkmig benchmark: $size images, median of $reps runs (lower is better)"
set title "wall time"
set ylabel "seconds (log scale)"
set yrange [0.01:*]
plot "$out/results.dat" using 2:xtic(1) title "sparse ($pct% data)", \
     "" using 3 title "full (all random)", \
     "" using 4 title "live (sparse + guest writes)"
set title "durable time (wall time + timed sync of the destination; tcp-loopback: wall time)"
plot "$out/results.dat" using 8:xtic(1) title "sparse ($pct% data)", \
     "" using 9 title "full (all random)", \
     "" using 10 title "live (sparse + guest writes)"
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
