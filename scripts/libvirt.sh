#!/usr/bin/env bash
# Start/stop the libvirt daemons on a host without systemd (dev containers, CI).
#
#   scripts/libvirt.sh up     STATE_DIR   start virtlogd + libvirtd unless qemu:///system already answers
#   scripts/libvirt.sh down   STATE_DIR   stop only the daemons that `up` started (pids recorded in STATE_DIR)
#   scripts/libvirt.sh status STATE_DIR   say whether qemu:///system answers and what we started
#
# `down` never touches daemons someone else started: it only signals pids recorded by `up`,
# and only while those pids still belong to the same binary.
set -euo pipefail

readonly URI="qemu:///system"
readonly VIRTLOGD=/usr/sbin/virtlogd
readonly LIBVIRTD=/usr/sbin/libvirtd
readonly READY_TIMEOUT_S=20
readonly STOP_TIMEOUT_S=10

usage() {
    echo "usage: $0 up|down|status STATE_DIR" >&2
    exit 2
}

log() { echo "libvirt.sh: $*"; }

# A missing program is named with its package at once, not read later as "did not answer".
require() { # program package
    command -v "$1" >/dev/null 2>&1 || {
        echo "libvirt.sh: $1 is not installed (Debian package $2); run scripts/install-deps.sh" >&2
        exit 1
    }
}
require virsh libvirt-clients
require pgrep procps
[[ -x $VIRTLOGD && -x $LIBVIRTD ]] || require "$LIBVIRTD" libvirt-daemon

system_answers() {
    virsh -c "$URI" version >/dev/null 2>&1
}

# True when PID is alive and runs BINARY (guards against pid reuse).
pid_runs() {
    local pid=$1 binary=$2 exe
    [[ -n "$pid" && -d /proc/$pid ]] || return 1
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
    [[ "${exe% (deleted)}" == "$binary" ]]
}

# Pid of a running daemon: its pidfile under /run first, else pgrep on the exact binary path.
daemon_pid() {
    local name=$1 binary=$2 pid=""
    if [[ -r /run/$name.pid ]]; then
        pid=$(tr -dc '0-9' <"/run/$name.pid")
    fi
    if ! pid_runs "$pid" "$binary"; then
        pid=$(pgrep -o -x -f "$binary( .*)?" || true)
    fi
    pid_runs "$pid" "$binary" && echo "$pid"
}

recorded_alive() {
    local name=$1 binary=$2 state_dir=$3
    [[ -f "$state_dir/$name.pid" ]] && pid_runs "$(tr -dc '0-9' <"$state_dir/$name.pid")" "$binary"
}

ensure_dirs() {
    mkdir -p /run/libvirt /run/libvirt/qemu /var/lib/libvirt/qemu /var/cache/libvirt/qemu \
        /var/log/libvirt/qemu
}

# Start one daemon with -d (it forks) and record its pid in STATE_DIR/NAME.pid.
start_daemon() {
    local name=$1 binary=$2 state_dir=$3 pid="" i
    if recorded_alive "$name" "$binary" "$state_dir"; then
        log "$name already running (started by us earlier)"
        return 0
    fi
    if pid=$(daemon_pid "$name" "$binary"); then
        log "$name already running (pid $pid), not ours"
        return 0
    fi
    "$binary" -d
    for ((i = 0; i < 50; i++)); do
        if pid=$(daemon_pid "$name" "$binary"); then
            echo "$pid" >"$state_dir/$name.pid"
            log "started $name (pid $pid)"
            return 0
        fi
        sleep 0.1
    done
    log "started $name but could not find its pid" >&2
    return 1
}

cmd_up() {
    local state_dir=$1 i
    mkdir -p "$state_dir"
    if system_answers; then
        # A second `up` after ours must keep our records so that `down` still stops them.
        if recorded_alive libvirtd "$LIBVIRTD" "$state_dir"; then
            log "$URI already answers; started by an earlier 'up' with this STATE_DIR"
            return 0
        fi
        : >"$state_dir/external"
        log "$URI already answers; started nothing"
        return 0
    fi
    rm -f "$state_dir/external"
    ensure_dirs
    # libvirtd hands guest console/serial logs to virtlogd, so it must be up first.
    start_daemon virtlogd "$VIRTLOGD" "$state_dir"
    start_daemon libvirtd "$LIBVIRTD" "$state_dir"
    for ((i = 0; i < READY_TIMEOUT_S * 5; i++)); do
        if system_answers; then
            log "$URI answers"
            return 0
        fi
        sleep 0.2
    done
    log "$URI did not answer within ${READY_TIMEOUT_S}s" >&2
    return 1
}

stop_recorded() {
    local name=$1 binary=$2 state_dir=$3 record pid i
    record="$state_dir/$name.pid"
    [[ -f "$record" ]] || return 0
    pid=$(tr -dc '0-9' <"$record")
    if pid_runs "$pid" "$binary"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < STOP_TIMEOUT_S * 10; i++)); do
            pid_runs "$pid" "$binary" || break
            sleep 0.1
        done
        if pid_runs "$pid" "$binary"; then
            kill -KILL "$pid" 2>/dev/null || true
            log "stopped $name (pid $pid) with SIGKILL after ${STOP_TIMEOUT_S}s"
        else
            log "stopped $name (pid $pid)"
        fi
    else
        log "$name (pid $pid) already gone"
    fi
    rm -f "$record"
}

cmd_down() {
    local state_dir=$1
    if [[ -f "$state_dir/external" ]]; then
        rm -f "$state_dir/external"
        log "libvirt was not started by us; left running"
        return 0
    fi
    # Reverse start order: libvirtd still writes through virtlogd while shutting down.
    stop_recorded libvirtd "$LIBVIRTD" "$state_dir"
    stop_recorded virtlogd "$VIRTLOGD" "$state_dir"
}

cmd_status() {
    local state_dir=$1 name pid
    if system_answers; then log "$URI answers"; else log "$URI does not answer"; fi
    [[ -f "$state_dir/external" ]] && log "daemons were already running when 'up' ran"
    for name in virtlogd libvirtd; do
        if [[ -f "$state_dir/$name.pid" ]]; then
            pid=$(tr -dc '0-9' <"$state_dir/$name.pid")
            log "$name started by us: pid $pid"
        fi
    done
    system_answers
}

[[ $# -eq 2 ]] || usage
case "$1" in
    up) cmd_up "$2" ;;
    down) cmd_down "$2" ;;
    status) cmd_status "$2" ;;
    *) usage ;;
esac
