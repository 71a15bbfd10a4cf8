# Shell helpers of the benchmark scripts (bash), sourced by tests/bench/
# run.sh and converge.sh: time arithmetic, sizes, the private network
# namespace whose loopback counts the wire bytes, and the processes of a
# run.  The caller sets W (scratch directory), declares the associative
# array PIDS and NS_PID, and defines say.

now() { date +%s.%N; }
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }
allocated() { stat -c '%b %B' "$1" | awk '{ printf "%.0f", $1 * $2 }'; }
# Peak resident set (VmHWM, KiB) of a live process.
hwm() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# Bytes sent over the benchmark network namespace's loopback.
lo_bytes() {
    [ -n "$NS_PID" ] || { echo ""; return; }
    awk -F'[: ]+' '$2 == "lo" { print $11 }' "/proc/$NS_PID/net/dev"
}
to_bytes() { numfmt --from=iec "$1"; }
mib() { [ -n "$1" ] && awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }


# All TCP traffic of the benchmark runs in a private network namespace
# whose only interface is its own loopback (127.0.0.1): its byte counter is
# then exactly the benchmark's wire traffic, and no port can clash.
setup_netns() {
    if [ "$(id -u)" = 0 ] && command -v unshare >/dev/null && command -v nsenter >/dev/null; then
        unshare -n sleep 1000000 &
        NS_PID=$!
        local i
        for ((i = 0; i < 50; i++)); do      # until unshare has switched
            [ "$(readlink "/proc/$NS_PID/ns/net")" != "$(readlink /proc/self/ns/net)" ] && break
            sleep 0.02
        done
        if nsenter -t "$NS_PID" -n ip link set lo up 2>/dev/null; then
            say "network namespace for loopback traffic: pid $NS_PID"
            return
        fi
        kill "$NS_PID" 2>/dev/null; wait "$NS_PID" 2>/dev/null
        NS_PID=
    fi
    say "no private network namespace (needs root): using the host loopback; wire bytes of TCP rows from QMP only"
}

# Runs a command in the benchmark's network namespace (in the foreground).
in_ns() {
    if [ -n "$NS_PID" ]; then nsenter -t "$NS_PID" -n -- "$@"; else "$@"; fi
}

# A TCP port on 127.0.0.1 nobody listens on.
PORT_NEXT=20000
free_port() {
    local port
    while :; do
        PORT_NEXT=$((PORT_NEXT + 1))
        port=$PORT_NEXT
        if [ -n "$NS_PID" ]; then echo "$port"; return; fi
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
    done
}

# spawn NAME CMD...: start CMD in the background in the namespace, output
# to NAME.log.
spawn() {
    local name=$1; shift
    if [ -n "$NS_PID" ]; then
        nsenter -t "$NS_PID" -n -- "$@" >"$W/$name.log" 2>&1 &
    else
        "$@" >"$W/$name.log" 2>&1 &
    fi
    PIDS[$name]=$!
    # Not a job of this shell: no "Killed" notices; reaped all the same.
    disown "${PIDS[$name]}"
}

# stop NAME [SIGNAL]: signal (default TERM) and reap, SIGKILL after 10 s.
stop() {
    local name=$1 sig=${2:-TERM} pid i
    pid=${PIDS[$name]:-}
    [ -n "$pid" ] || return 0
    kill -"$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "PIDS[$name]"
}

# wait_exit NAME: reap a process that was asked to quit (SIGKILL after 10 s).
wait_exit() {
    local name=$1 pid i
    pid=${PIDS[$name]:-}
    [ -n "$pid" ] || return 0
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "PIDS[$name]"
}

# wait_socket PATH NAME: wait until PATH exists (10 s) while NAME lives.
wait_socket() {
    local i
    for ((i = 0; i < 200; i++)); do
        [ -S "$1" ] && return 0
        kill -0 "${PIDS[$2]}" 2>/dev/null || { FAIL="$2 exited: $(tail -n 1 "$W/$2.log")"; return 1; }
        sleep 0.05
    done
    FAIL="$2 did not create $1"
    return 1
}

# Stops every process of the current run.
stop_all() {
    local name
    for name in "${!QMP_PID[@]}"; do qmp_close "$name"; done
    for name in "${!PIDS[@]}"; do stop "$name" KILL; done
}
