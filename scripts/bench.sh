#!/usr/bin/env bash
# `make bench`: release-mode benchmarks, each next to its naive baseline where one applies:
# - the placement engine alone at 50,000 hosts (placement/benches/placement_scale.rs);
# - the controller at fleet scale against a real etcd and yun-fleetsim
#   (controller/benches/fleet_scale.rs): heartbeat cost, dead-host detection, create-to-running,
#   controller memory, restart resync;
# - the host firewall in a network namespace: one membership change as an element delta vs a
#   full reload at 100,000 set elements, and the compiled size for 10 rules x 300 ports
#   (agent/benches/firewall_scale.rs);
# - the agent against libvirt's test driver and a real qemu:///system (TCG)
#   (agent/benches/agent_start.rs);
# - volume hot-attach latency per driver (local, iSCSI via tgtd, NFS via nfs-ganesha) through
#   the agent's volume sync on a running TCG guest and a real etcd, vs `virsh attach-device`
#   (agent/benches/volume_attach.rs);
# - the audit trail: records per second durable on return through the group-commit sink (16
#   producers) vs one fsync per record (audit/benches/audit_append.rs);
# - Keystone token validation: the controller's cached path vs a round trip to a real Keystone
#   (identity/benches/token_validate.rs).
# - the Prometheus file_sd output for 20,000 hosts: render, atomic write, one change (one file vs
#   16 shards), a join storm debounced vs one rewrite per change (controller/benches/file_sd.rs).
# - the object store on a real etcd at 50,000 VirtualMachines: full list (paged, typed) vs one
#   unpaged read, watch event latency vs a 500 ms poller, create rate
#   (store/benches/store_scale.rs).
# Prints tables and target/bench/summary.json. Installs nothing (make runs install-deps.sh);
# starts libvirtd only if qemu:///system does not answer, and then stops only what it started.
#
# Scale knobs (defaults fit a 2-core, 24 GiB machine in well under 20 minutes):
#   YUN_BENCH_PLACEMENT_HOSTS=50000 YUN_BENCH_PLACEMENT_VMS=500000 YUN_BENCH_DECISIONS=20000
#   YUN_BENCH_FLEET_HOSTS=10000 (e2e, memory, resync) YUN_BENCH_MAX_HOSTS=10000 (heartbeat,
#   detection) YUN_BENCH_RATE=100 YUN_BENCH_SECONDS=60
#   YUN_BENCH_FILE_SD_HOSTS=20000
#   YUN_BENCH_STORE_OBJECTS=50000 YUN_BENCH_STORE_WATCH_SAMPLES=500 YUN_BENCH_STORE_POLL_SAMPLES=20
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

# Build first, so the tables measure the benchmarks and not the compiler.
log "building the benchmarks (release)"
cargo build --release -p yun-fleetsim
cargo bench -p yun-placement --bench placement_scale --no-run
cargo bench -p yun-controller --bench fleet_scale --no-run
cargo bench -p yun-agent --bench agent_start --no-run
cargo bench -p yun-agent --bench firewall_scale --no-run
cargo bench -p yun-agent --bench volume_attach --no-run
cargo bench -p yun-audit --bench audit_append --no-run
cargo bench -p yun-identity --bench token_validate --no-run
cargo bench -p yun-controller --bench file_sd --no-run
cargo bench -p yun-store --bench store_scale --no-run

mkdir -p "$(dirname "$summary")"
rm -f "$summary"

log "placement engine: ${YUN_BENCH_PLACEMENT_HOSTS:-50000} hosts, ${YUN_BENCH_PLACEMENT_VMS:-500000} existing VMs"
cargo bench -p yun-placement --bench placement_scale -- \
    --hosts "${YUN_BENCH_PLACEMENT_HOSTS:-50000}" --vms "${YUN_BENCH_PLACEMENT_VMS:-500000}" \
    --decisions "${YUN_BENCH_DECISIONS:-20000}" --out "$root/target/bench/placement.json"
python3 - "$summary" "$root/target/bench/placement.json" <<'PY'
import json, sys
path, part = sys.argv[1], sys.argv[2]
try:
    summary = json.load(open(path))
except FileNotFoundError:
    summary = {}
summary.update(json.load(open(part)))
json.dump(summary, open(path, "w"), indent=2, sort_keys=True)
PY

log "firewall: membership delta vs full reload, ${YUN_BENCH_FW_MEMBERS:-100000} set elements"
cargo bench -p yun-agent --bench firewall_scale -- \
    --members "${YUN_BENCH_FW_MEMBERS:-100000}" --summary "$summary"

log "fleet scale: controller + etcd + yun-fleetsim"
cargo bench -p yun-controller --bench fleet_scale -- \
    --hosts "${YUN_BENCH_FLEET_HOSTS:-10000}" --max-hosts "${YUN_BENCH_MAX_HOSTS:-10000}" \
    --rate "${YUN_BENCH_RATE:-100}" --seconds "${YUN_BENCH_SECONDS:-60}" \
    --summary "$summary" --fleetsim "$root/target/release/yun-fleetsim"

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

log "volume attach: ${YUN_BENCH_VOLUME_ROUNDS:-20} attaches per driver on a running TCG guest"
YUN_BENCH_TEMPLATE="$template" YUN_BENCH_STATE_DIR="$state" YUN_BENCH_SUMMARY="$summary" \
    YUN_BENCH_QEMU=required cargo bench -p yun-agent --bench volume_attach

log "audit trail: ${YUN_BENCH_AUDIT_RECORDS:-100000} records, durable on return"
cargo bench -p yun-audit --bench audit_append -- \
    --records "${YUN_BENCH_AUDIT_RECORDS:-100000}" --summary "$summary"

log "Keystone token validation: ${YUN_BENCH_TOKEN_CACHED:-10000} cached, ${YUN_BENCH_TOKEN_UNCACHED:-200} uncached"
cargo bench -p yun-identity --bench token_validate -- \
    --cached "${YUN_BENCH_TOKEN_CACHED:-10000}" --uncached "${YUN_BENCH_TOKEN_UNCACHED:-200}" \
    --summary "$summary"

log "Prometheus file_sd: ${YUN_BENCH_FILE_SD_HOSTS:-20000} hosts"
cargo bench -p yun-controller --bench file_sd -- \
    --hosts "${YUN_BENCH_FILE_SD_HOSTS:-20000}" --summary "$summary"

log "object store: ${YUN_BENCH_STORE_OBJECTS:-50000} VirtualMachines on etcd"
cargo bench -p yun-store --bench store_scale -- \
    --objects "${YUN_BENCH_STORE_OBJECTS:-50000}" \
    --watch-samples "${YUN_BENCH_STORE_WATCH_SAMPLES:-500}" \
    --poll-samples "${YUN_BENCH_STORE_POLL_SAMPLES:-20}" --summary "$summary"

log "$summary"
cat "$summary"
