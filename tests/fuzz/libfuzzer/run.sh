#!/bin/sh
# `make fuzz`: fuzz each libFuzzer target SECONDS seconds, one after the
# other, starting from its seeds (tests/fuzz/corpus/NAME) and what earlier
# runs found ($FUZZ_BIN/corpus/NAME, where new inputs go), with its
# dictionary when there is one (tests/fuzz/libfuzzer/NAME.dict).  Crashes
# are written to $FUZZ_BIN/crashes/, logs to $FUZZ_BIN/logs/NAME.log.
# Prints a line per target: CPU seconds, runs, coverage (edges) and
# features, corpus size, crashes.  Exits 1 if any target crashed.
# Usage: run.sh SECONDS TARGET...
set -u

seconds=$1; shift
here=$(cd "$(dirname "$0")" && pwd)
seeds=$here/../corpus
bin=${FUZZ_BIN:-$(dirname "$1")}
mkdir -p "$bin/corpus" "$bin/crashes" "$bin/logs"
failed=0

# cpu_seconds CMD...: run CMD; print the CPU seconds (user + system) it
# and its children used.
cpu_seconds() {
    perl -MPOSIX -e '
        my $hz = POSIX::sysconf(POSIX::_SC_CLK_TCK);
        system(@ARGV);
        my @t = POSIX::times();
        printf "%.1f\n", ($t[3] + $t[4]) / $hz;
        exit($? >> 8);
    ' "$@"
}

printf '%-8s %6s %7s %10s %6s %7s %8s %s\n' target wall-s cpu-s runs cov ft corpus crashes
for target in "$@"; do
    name=${target##*/fuzz-}
    work=$bin/corpus/$name
    log=$bin/logs/$name.log
    mkdir -p "$work"
    dict=
    [ -f "$here/$name.dict" ] && dict=-dict=$here/$name.dict
    start=$(date +%s)
    cpu=$(cpu_seconds "$target" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 \
          -print_final_stats=1 -artifact_prefix="$bin/crashes/$name-" $dict \
          "$work" "$seeds/$name" 2>"$log")
    status=$?
    wall=$(( $(date +%s) - start ))
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    runs=$(printf '%s' "$last" | sed -n 's/^#\([0-9]*\).*/\1/p')
    cov=$(printf '%s' "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
    ft=$(printf '%s' "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
    corp=$(printf '%s' "$last" | sed -n 's/.* corp: \([^ ]*\).*/\1/p')
    crashes=$(ls "$bin/crashes" | grep -c "^$name-" || true)
    printf '%-8s %6s %7s %10s %6s %7s %8s %s\n' "$name" "$wall" "$cpu" "$runs" "$cov" "$ft" \
        "$corp" "$crashes"
    if [ "$status" != 0 ]; then
        echo "fuzz-$name: failed (exit $status), see $log:" >&2
        grep -E 'ERROR|SUMMARY|Test unit written' "$log" | head -5 >&2
        failed=1
    fi
done
exit $failed
