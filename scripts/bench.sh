#!/usr/bin/env bash
# `make bench`: release-mode benchmarks of the agent (agent/benches/agent_start.rs) against
# libvirt's test driver and a real qemu:///system (TCG), each next to its naive baseline.
# Prints a table and target/bench/summary.json. Installs nothing (make runs install-deps.sh);
# starts libvirtd only if qemu:///system does not answer, and then stops only what it started.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

state=/var/lib/yun-bench                 # VM files of the qemu run; QEMU's user must traverse it
libvirt_state="$state/libvirt"           # what scripts/libvirt.sh started (pids)
template="$root/images/build/yun-test"
summary="$root/target/bench/summary.json"

log() { printf '==> %s\n' "$*"; }

mkdir -p "$state"
chmod 0755 "$state"

if [[ ! -f "$template/SHA256SUMS" ]]; then
    log "building the test template into $template"
    bash images/test-template/build.sh "$template"
fi

# Build first, so the table measures the benchmarks and not the compiler.
log "building the benchmark (release)"
cargo bench -p yun-agent --bench agent_start --no-run

log "libvirt up"
bash scripts/libvirt.sh up "$libvirt_state"
trap 'log "libvirt down"; bash scripts/libvirt.sh down "$libvirt_state"' EXIT

# The integration tests hold this lock while their agent runs against qemu:///system; holding it
# too keeps their agent from reaping the benchmark's VMs (and ours from disturbing theirs).
it_lock=/var/lib/yun-it/.libvirt-tests.lock
mkdir -p "$(dirname "$it_lock")"
exec 9>>"$it_lock"
log "waiting for the libvirt lock shared with the integration tests ($it_lock)"
flock -w 600 9

# Any other yun-agent on this libvirtd (`make demo`) adopts every domain carrying Yun metadata
# and removes the ones it was not assigned: it would destroy the benchmark's VMs mid-run.
if pgrep -x yun-agent >/dev/null; then
    log "WARNING: a yun-agent is running on this host (pids: $(pgrep -x yun-agent | tr '\n' ' '));"
    log "WARNING: it will reap the benchmark's qemu:///system domains; stop it for a clean run"
fi

log "running benchmarks"
YUN_BENCH_TEMPLATE="$template" YUN_BENCH_STATE_DIR="$state" YUN_BENCH_SUMMARY="$summary" \
    YUN_BENCH_QEMU=required cargo bench -p yun-agent --bench agent_start

log "$summary"
cat "$summary"
