#!/bin/sh
# Installs the Debian packages blkmig builds and tests with, when missing.
# Idempotent: prints nothing but a summary line when all are present.
set -e

PKGS="gcc make pkg-config perl libglib2.0-dev libjson-glib-dev libaio-dev zlib1g-dev
libzstd-dev libxxhash-dev libgnutls28-dev gnutls-bin libnbd-dev qemu-utils nbdkit libnbd-bin
fio socat qemu-system-x86 clang libclang-rt-14-dev iproute2"

missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done

if [ -z "$missing" ]; then
    echo "deps: all packages present"
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    echo "deps: missing packages:$missing" >&2
    echo "deps: run as root: apt-get install -y$missing" >&2
    exit 1
fi

echo "deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends $missing
