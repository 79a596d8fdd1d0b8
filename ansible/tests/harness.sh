# Helpers of scripts/test-ansible.sh (sourced): processes, mounts and the network namespace it
# owns, and running playbooks against the test root. Uses the script's globals: work, rootfs,
# ns, inventory, repo, and its step/fail/ok functions.
# shellcheck shell=bash disable=SC2154

# --- cleanup: only what this script (or a previous run of it) started -------------------------

mounts_under() { awk -v r="$1" '$5 == r || index($5, r "/") == 1 {print $5}' /proc/self/mountinfo | sort -r; }

alive() { [[ -r /proc/$1/stat && "$(sed 's/.*) //' "/proc/$1/stat" | cut -d' ' -f1)" != Z ]]; }

stop_started() { # every process recorded in $work/pids that still runs in our root, newest first
    local f name pid i files=("$work"/pids/*.pid) n
    for ((n = ${#files[@]} - 1; n >= 0; n--)); do
        f=${files[n]}
        [[ -f $f ]] || continue
        pid=$(cat "$f") name=$(basename "$f" .pid)
        if alive "$pid" && [[ "$(readlink "/proc/$pid/root")" == "$rootfs" ]]; then
            kill -TERM "$pid" 2>/dev/null || true
            for ((i = 0; i < 50; i++)); do alive "$pid" || break; sleep 0.2; done
            if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
            wait "$pid" 2>/dev/null || true # reap it when it is this shell's child
            echo "    stopped ${name#*-} (pid $pid)"
        fi
        rm -f "$f"
    done
}

teardown() {
    stop_started
    if ip netns list | awk '{print $1}' | grep -qx "$ns"; then ip netns del "$ns"; fi
    local m
    for m in $(mounts_under "$rootfs"); do umount "$m" 2>/dev/null || umount -l "$m"; done
    if [[ -n "$(mounts_under "$rootfs")" ]]; then
        echo "test-ansible: mounts remain under $rootfs; not removing it" >&2
        return 1
    fi
}

# --- helpers -------------------------------------------------------------------------------------

in_ns() { ip netns exec "$ns" "$@"; }
in_root() { ip netns exec "$ns" chroot "$rootfs" "$@"; }

started_count=0
start_bg() { # name cmd...: runs cmd in the background, records its pid (numbered: start order)
    local name=$1; shift
    "$@" >"$work/logs/$name.log" 2>&1 9>&- &   # 9>&-: a daemon left behind must not hold the lock
    started_count=$((started_count + 1))
    echo $! >"$work/pids/$(printf %02d "$started_count")-$name.pid"
    echo "    started $name (pid $!)"
}

wait_for() { # what seconds cmd...
    local what=$1 secs=$2 i; shift 2
    for ((i = 0; i < secs * 4; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
    fail "$what did not happen within ${secs}s"
}

playbook() { # log-name args...: runs ansible-playbook with the test inventory (in the netns once
    local log=$work/logs/$1.log; shift  # it exists: the control node's bus-auth must reach etcd)
    local t0=$SECONDS rc=0 netns=()
    [[ -n ${services_ns:-} ]] && netns=(ip netns exec "$ns")
    (cd "$repo/ansible" && ANSIBLE_NOCOLOR=1 "${netns[@]}" ansible-playbook -i "$inventory" "$@") >"$log" 2>&1 9>&- || rc=$?
    echo "    ansible-playbook $* -> exit $rc in $((SECONDS - t0)) s (log: $(basename "$log"))"
    return "$rc"
}

recap() { # log: "host changed failed unreachable" per PLAY RECAP line
    sed -n '/^PLAY RECAP/,$p' "$1" | sed -n 's/^\([^ ]*\) *: ok=[0-9]* *changed=\([0-9]*\) *unreachable=\([0-9]*\) *failed=\([0-9]*\).*/\1 \2 \4 \3/p'
}

expect_success() { # log max-changed(any|0)
    local log=$work/logs/$1.log host changed failed unreachable bad=0
    [[ -n "$(recap "$log")" ]] || { tail -n 40 "$log"; fail "$1: no PLAY RECAP"; }
    while read -r host changed failed unreachable; do
        echo "    recap $host: changed=$changed failed=$failed unreachable=$unreachable"
        ((failed + unreachable == 0)) || bad=1
        [[ $2 == any || $changed -eq 0 ]] || bad=2
    done < <(recap "$log")
    if [[ $bad == 2 ]]; then
        echo "    tasks that changed:"; awk '/^TASK \[/{t=$0} /^changed:/{print "      " t " " $0}' "$log"
        fail "$1: the second run changed something (not idempotent)"
    fi
    [[ $bad == 0 ]] || { grep -B2 -A12 -E '^(fatal|failed):' "$log" | head -n 80; fail "$1 failed"; }
}

perms() { # path mode owner group (names as the root's own passwd and group files say)
    local got
    got=$(chroot "$rootfs" stat -c '%a %U %G' "$1") || fail "$1 is missing"
    [[ $got == "$2 $3 $4" ]] || fail "$1: mode/owner $got, expected $2 $3 $4"
    ok "$1 $got"
}
