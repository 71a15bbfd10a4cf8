#!/bin/sh
# Regenerates the seed corpora of the libFuzzer targets from real tools
# (their output is committed in tests/fuzz/corpus; run this only to
# refresh it):
#   stream  the valid streams of blkmig's real save path (fuzz-stream
#           with FUZZ_WRITE_SEEDS)
#   nbd     what real clients (nbdinfo, qemu-io, nbdcopy) send to
#           blkmigd's NBD export, recorded by socat, plus a few
#           hand-built sessions (old-style export name, simple replies)
#   qcow2   images qemu-img and qemu-io make: v2 and v3, clusters of
#           512 bytes and 4 KiB, refcounts of 1 to 64 bits, data, zero and
#           compressed (zlib, zstd) clusters, a backing file, lazy
#           refcounts, discards
# The QMP seeds (tests/fuzz/corpus/qmp) are written by hand.
# Usage: make-seeds.sh BUILD_DIR (where blkmigd and fuzz/ were built)
set -eu

build=$(cd "${1:-build}" && pwd)
top=$(cd "$(dirname "$0")/../../.." && pwd)
corpus=$top/tests/fuzz/corpus
tmp=$(mktemp -d)
daemon=
cleanup() {
    [ -n "$daemon" ] && kill "$daemon" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

# ---- stream ----
mkdir -p "$corpus/stream"
FUZZ_WRITE_SEEDS=$corpus/stream "$build/fuzz/fuzz-stream"

# wait_for PATH: until the socket exists (10 s at most).
wait_for() {
    i=0
    while [ ! -S "$1" ]; do
        i=$((i + 1))
        [ $i -le 200 ] || { echo "make-seeds: $1 never appeared" >&2; exit 1; }
        sleep 0.05
    done
}

# ---- nbd: real clients through a recording proxy ----
# (fuzz-nbd exports disk0 raw and qdisk0 qcow2; to a client both are
# just exports, so blkmigd serves two raw drives by those names here)
mkdir -p "$corpus/nbd"
"$build/blkmigd" --drive id=disk0,file="$tmp/disk0.raw",size=1M,create=on \
    --drive id=qdisk0,file="$tmp/qdisk0.raw",size=1M,create=on \
    --nbd unix:"$tmp/nbd.sock" --qmp unix:"$tmp/qmp.sock" --log "$tmp/blkmigd.log" &
daemon=$!
wait_for "$tmp/nbd.sock"

# record NAME CLIENT...: run the client against a proxy that saves what
# it sends as seed NAME ({} in the arguments is the proxy's socket).
record() {
    name=$1; shift
    rm -f "$tmp/proxy.sock"
    socat -r "$corpus/nbd/$name" UNIX-LISTEN:"$tmp/proxy.sock" UNIX-CONNECT:"$tmp/nbd.sock" &
    proxy=$!
    wait_for "$tmp/proxy.sock"
    cmd=""
    for a in "$@"; do cmd="$cmd '$(printf '%s' "$a" | sed "s|{}|$tmp/proxy.sock|g")'"; done
    eval "$cmd" >/dev/null
    wait $proxy || true
}

record list nbdinfo --list 'nbd+unix://?socket={}'
record info-meta nbdinfo --map --totals 'nbd+unix:///qdisk0?socket={}'
record qemu-io-raw qemu-io -f raw \
    -c 'write -P 0xab 4k 8k' -c 'read -P 0xab 8k 4k' -c 'write -z 128k 64k' \
    -c 'write -z -u 192k 64k' -c 'discard 256k 64k' -c 'write -f 512k 4k' \
    -c 'flush' -c 'map' 'nbd+unix:///disk0?socket={}'
record qemu-io-qcow2 qemu-io -f raw \
    -c 'write -P 0x5a 0 8k' -c 'read 0 1M' -c 'write -z -u 0 4k' -c 'map' \
    'nbd+unix:///qdisk0?socket={}'
record nbdcopy nbdcopy --connections=1 'nbd+unix:///disk0?socket={}' null:

# Hand-built, in perl: pack() says what each field is.
perl -e '
    my $opt = sub { my ($o, $d) = @_; pack("Q>NN", 0x49484156454F5054, $o, length $d) . $d };
    my $req = sub { my ($fl, $ty, $h, $off, $len) = @_; pack("nnQ>Q>N", $fl, $ty, $h, $off, $len) };
    my $m = pack("N", 0x25609513);
    # no structured replies, then NBD_OPT_EXPORT_NAME: simple replies
    print pack("N", 3), $opt->(1, "disk0"),
          $m, $req->(0, 1, 1, 4096, 8), "ABCDEFGH",
          $m, $req->(1, 0, 2, 4096, 8),
          $m, $req->(0, 4, 3, 0, 4096),
          $m, $req->(0, 3, 4, 0, 0),
          $m, $req->(0, 6, 5, 8192, 4096),
          $m, $req->(0, 2, 6, 0, 0);
' > "$corpus/nbd/export-name"
perl -e '
    my $opt = sub { my ($o, $d) = @_; pack("Q>NN", 0x49484156454F5054, $o, length $d) . $d };
    my $m = pack("N", 0x25609513);
    # every option once, then GO with info requests and structured reads
    print pack("N", 3), $opt->(8, ""), $opt->(3, ""), $opt->(5, ""),
          $opt->(9, pack("N", 5) . "disk0" . pack("N", 1) . pack("N", 5) . "base:"),
          $opt->(10, pack("N", 6) . "qdisk0" . pack("N", 1) . pack("N", 15) . "base:allocation"),
          $opt->(6, pack("N", 6) . "qdisk0" . pack("n", 1) . pack("n", 3)),
          $opt->(99, "x"),
          $opt->(7, pack("N", 6) . "qdisk0" . pack("n", 2) . pack("nn", 3, 1)),
          $m, pack("nnQ>Q>N", 8, 7, 1, 0, 1048576),
          $m, pack("nnQ>Q>N", 0, 0, 2, 0, 131072),
          $m, pack("nnQ>Q>N", 4, 0, 3, 1040384, 8192),
          $m, pack("nnQ>Q>N", 16, 6, 4, 0, 65536),
          $m, pack("nnQ>Q>N", 0, 2, 5, 0, 0);
' > "$corpus/nbd/options-go"
kill $daemon; wait $daemon 2>/dev/null || true; daemon=

# ---- qcow2: images from qemu-img and qemu-io ----
mkdir -p "$corpus/qcow2"
q=$corpus/qcow2
img() { qemu-img create -q -f qcow2 "$@"; }
io() { qemu-io -f qcow2 "$@" >/dev/null; }

img -o compat=0.10,cluster_size=512 "$q/v2-512" 256K
io -c 'write -P 1 0 4k' -c 'write -P 2 100k 1k' "$q/v2-512"
img -o compat=1.1,cluster_size=4096 "$q/v3-4k" 1M
io -c 'write -P 3 0 12k' -c 'write -z 64k 8k' -c 'write -P 4 1020k 4k' -c 'discard 4k 4k' "$q/v3-4k"
img -o compat=1.1,cluster_size=4096,lazy_refcounts=on "$q/v3-lazy" 512K
io -c 'write -P 5 8k 8k' "$q/v3-lazy"
img -o compat=1.1,cluster_size=4096,refcount_bits=1 "$q/v3-refbits1" 1M
io -c 'write -P 6 64k 8k' -c 'write -z -u 0 64k' "$q/v3-refbits1"
img -o compat=1.1,cluster_size=4096,refcount_bits=64 "$q/v3-refbits64" 64M
io -c 'write -P 9 32M 4k' "$q/v3-refbits64"
qemu-img create -q -f raw "$tmp/data.raw" 256K
qemu-io -f raw -c 'write -P 7 0 128k' "$tmp/data.raw" >/dev/null
qemu-img convert -q -c -O qcow2 -o cluster_size=4096 "$tmp/data.raw" "$q/compressed-zlib"
qemu-img convert -q -c -O qcow2 -o cluster_size=4096,compression_type=zstd "$tmp/data.raw" \
    "$q/compressed-zstd"
# backing: made beside its base (the image names it "base.raw")
qemu-img create -q -f raw "$tmp/base.raw" 256K
img -o compat=1.1,cluster_size=4096 -b base.raw -F raw "$tmp/backing.qcow2" 256K
io -c 'write -P 8 4k 4k' "$tmp/backing.qcow2"
cp "$tmp/backing.qcow2" "$q/backing"
ls -l "$corpus"/*
