#!/bin/sh
# `make check`'s share of the libFuzzer targets: each one runs once over
# every input of its seed corpus (tests/fuzz/corpus/NAME: the seeds and
# the crashes found so far, kept as regression cases), without fuzzing.
# TAP, one test per target; the targets are $FUZZ_BIN/fuzz-* (build/fuzz
# unless set; `make check` sets it).
here=$(cd "$(dirname "$0")" && pwd)
bin=${FUZZ_BIN:-$here/../../../build/fuzz}
set -- "$bin"/fuzz-*
if [ ! -x "$1" ]; then
    echo "1..0 # SKIP no libFuzzer targets in $bin (make fuzz-targets)"
    exit 0
fi
echo "1..$#"
n=0
for target in "$@"; do
    n=$((n + 1))
    name=${target##*/fuzz-}
    log=$bin/logs/$name-corpus.log
    mkdir -p "$bin/logs"
    count=$(ls "$here/../corpus/$name" | wc -l)
    if "$target" -timeout=30 -rss_limit_mb=2048 "$here/../corpus/$name"/* >"$log" 2>&1; then
        echo "ok $n - fuzz-$name: $count inputs"
    else
        echo "not ok $n - fuzz-$name: failed on its corpus, see $log"
        grep -E 'ERROR|SUMMARY|^Running' "$log" | tail -4 | sed 's/^/# /'
    fi
done
