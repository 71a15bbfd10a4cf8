# QMP sessions for shell scripts (bash), sourced by tests/bench/run.sh.
#
# One long-lived connection per monitor, so events are never missed and
# their timestamps can be used for timing:
#   qmp_open NAME SOCKET         connect, wait for the greeting, negotiate
#   qmp NAME COMMAND [ARGS-JSON] run a command; prints the reply's "return"
#                                (compact JSON); status 1 and the error on
#                                stderr when the command fails
#   qmp_event NAME EVENT [JQ-CONDITION] [TIMEOUT-S]
#                                wait for an event (already received or
#                                future) satisfying the jq condition on the
#                                whole message; prints it
#   qmp_stamp MESSAGE-JSON       the event's timestamp in seconds (float)
#   qmp_close NAME               disconnect
# Needs socat and jq, and QMP_DIR (a scratch directory) set by the caller.
# Works with QEMU and blkmigd alike (same protocol).

declare -A QMP_FD QMP_PID QMP_SEQ

qmp_open() {
    local name=$1 sock=$2 fd i try
    for ((try = 0; try < 50; try++)); do
        rm -f "$QMP_DIR/$name.qin"
        mkfifo "$QMP_DIR/$name.qin"
        : >"$QMP_DIR/$name.qlog"
        socat -t 5 - "UNIX-CONNECT:$sock" <"$QMP_DIR/$name.qin" \
            >"$QMP_DIR/$name.qlog" 2>"$QMP_DIR/$name.qerr" &
        QMP_PID[$name]=$!
        exec {fd}>"$QMP_DIR/$name.qin"
        QMP_FD[$name]=$fd
        QMP_SEQ[$name]=0
        for ((i = 0; i < 500; i++)); do
            grep -q '"QMP"' "$QMP_DIR/$name.qlog" && break
            kill -0 "${QMP_PID[$name]}" 2>/dev/null || break
            sleep 0.02
        done
        grep -q '"QMP"' "$QMP_DIR/$name.qlog" && break
        # Not listening yet (the socket file appears before listen()).
        qmp_close "$name"
        sleep 0.1
    done
    grep -q '"QMP"' "$QMP_DIR/$name.qlog" 2>/dev/null ||
        { echo "qmp: no greeting on $sock: $(cat "$QMP_DIR/$name.qerr")" >&2; return 1; }
    qmp "$name" qmp_capabilities >/dev/null
}

qmp() {
    local name=$1 cmd=$2 args=${3:-} id line i
    QMP_SEQ[$name]=$((QMP_SEQ[$name] + 1))
    id="$name-${QMP_SEQ[$name]}"
    if [ -n "$args" ]; then
        printf '{"execute": "%s", "arguments": %s, "id": "%s"}\n' "$cmd" "$args" "$id" >&"${QMP_FD[$name]}"
    else
        printf '{"execute": "%s", "id": "%s"}\n' "$cmd" "$id" >&"${QMP_FD[$name]}"
    fi
    for ((i = 0; ; i++)); do
        if grep -qF "\"$id\"" "$QMP_DIR/$name.qlog"; then
            line=$(grep -F "\"$id\"" "$QMP_DIR/$name.qlog" | jq -c --arg id "$id" 'select(.id == $id)' 2>/dev/null | head -n 1)
            [ -n "$line" ] && break
        fi
        if ! kill -0 "${QMP_PID[$name]}" 2>/dev/null || [ $i -gt 3000 ]; then
            echo "qmp: $name: no reply to $cmd" >&2
            return 1
        fi
        sleep 0.01
    done
    if jq -e 'has("error")' >/dev/null <<<"$line"; then
        jq -r '"qmp: '"$cmd"': \(.error.class): \(.error.desc)"' <<<"$line" >&2
        return 1
    fi
    jq -c '.return' <<<"$line"
}

qmp_event() {
    local name=$1 event=$2 cond=${3:-true} timeout=${4:-600} line deadline
    deadline=$(($(date +%s) + timeout))
    while :; do
        if grep -qF "\"$event\"" "$QMP_DIR/$name.qlog"; then
            line=$(grep -F "\"$event\"" "$QMP_DIR/$name.qlog" |
                   jq -c --arg ev "$event" "select(.event == \$ev and ($cond))" 2>/dev/null | head -n 1)
            [ -n "$line" ] && { echo "$line"; return 0; }
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "qmp: $name: no $event event within ${timeout}s" >&2
            return 1
        fi
        if ! kill -0 "${QMP_PID[$name]}" 2>/dev/null; then
            echo "qmp: $name: connection closed while waiting for $event" >&2
            return 1
        fi
        sleep 0.02
    done
}

qmp_stamp() {
    jq -r '.timestamp.seconds + .timestamp.microseconds / 1000000 | tostring' <<<"$1"
}

qmp_close() {
    local name=$1
    [ -n "${QMP_FD[$name]:-}" ] || return 0
    local fd=${QMP_FD[$name]}
    exec {fd}>&-
    kill "${QMP_PID[$name]}" 2>/dev/null || true
    wait "${QMP_PID[$name]}" 2>/dev/null || true
    unset "QMP_FD[$name]" "QMP_PID[$name]"
}
