#!/usr/bin/env bash
# The Yun demo on one machine: local etcd, virtlogd + libvirtd, the controller in bootstrap mode
# and an agent for this host; applies examples/ and waits until the example VM is Running.
# etcd runs as in production: TLS, client certificates (in .demo/pki, made with
# scripts/fleet-certs.sh), auth on, one etcd role per host (docs/ops/fleet-bus-security.md).
#   scripts/demo.sh up     (what `make demo` runs)
#   scripts/demo.sh down   (what `make down` runs: removes the VM, stops everything demo started)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
demo="$root/.demo"                     # pids, logs, etcd data, manifests (gitignored)
state=/var/lib/yun-demo                # agent state: images, overlays, seeds (libvirt's qemu user reads it)
etcd_url=https://127.0.0.1:2379
etcd_health=http://127.0.0.1:2381/health  # etcd's plain metrics listener (no client cert needed)
pki="$demo/pki"
bin="$root/target/debug"
host_name=$(hostname | tr 'A-Z_' 'a-z-' | cut -c1-63)
# Fleet-bus flags of the controller and of etcd's root user (provisioning): endpoint, CA, cert, key.
ctl=(--etcd-endpoints "$etcd_url" --etcd-ca "$pki/ca-bundle.crt" --etcd-cert "$pki/yun-controller.crt" --etcd-key "$pki/yun-controller.key")
root_flags=(--etcd-endpoints "$etcd_url" --etcd-ca "$pki/ca-bundle.crt" --etcd-cert "$pki/root.crt" --etcd-key "$pki/root.key")

log() { printf '==> %s\n' "$*"; }
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_bg() { # name pidfile logfile cmd...
  local name=$1 pidfile=$2 logfile=$3; shift 3
  if pid_alive "$pidfile"; then log "$name already running (pid $(cat "$pidfile"))"; return; fi
  "$@" >"$logfile" 2>&1 &
  echo $! >"$pidfile"
  log "$name started (pid $!, log $logfile)"
}

stop_pid() { # name pidfile
  local name=$1 pidfile=$2 pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    log "$name stopped (pid $pid)"
  fi
  rm -f "$pidfile"
}

vm_phase() {
  "$bin/yun-controller" status "${ctl[@]}" -o json 2>/dev/null |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(next((v["status"].get("phase","Pending") for v in d if v["name"]=="demo-vm"),"Absent"))' 2>/dev/null || echo Unknown
}

up() {
  bash "$root/scripts/install-deps.sh"
  log "building yun-controller and yun-agent"
  (cd "$root" && cargo build --quiet --bins -p yun-controller -p yun-agent)
  mkdir -p "$demo/manifests" "$state"
  chmod 755 "$state"
  log "building the test template image"
  bash "$root/images/test-template/build.sh" "$root/images/build/yun-test" >"$demo/image-build.log" 2>&1 ||
    { cat "$demo/image-build.log"; exit 1; }
  bash "$root/scripts/libvirt.sh" up "$demo"
  if ! pid_alive "$demo/etcd.pid" && (exec 3<>/dev/tcp/127.0.0.1/2379) 2>/dev/null; then
    echo "port 2379 is taken by another process; stop it or run the demo elsewhere" >&2; exit 1
  fi
  log "issuing fleet-bus certificates into $pki"
  certs() { bash "$root/scripts/fleet-certs.sh" "$@" | sed 's/^/    /'; }
  certs ca "$pki"
  certs server "$pki" etcd --ip 127.0.0.1 --dns localhost
  for cn in root yun-controller "host:$host_name"; do certs client "$pki" "$cn"; done
  start_bg etcd "$demo/etcd.pid" "$demo/etcd.log" etcd --name demo --data-dir "$demo/etcd" \
    --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster demo=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
    --client-cert-auth --trusted-ca-file "$pki/ca-bundle.crt" \
    --cert-file "$pki/etcd.crt" --key-file "$pki/etcd.key"
  for _ in $(seq 1 100); do curl -fs "$etcd_health" >/dev/null 2>&1 && break; sleep 0.2; done
  curl -fs "$etcd_health" >/dev/null || { echo "etcd did not become healthy; see $demo/etcd.log" >&2; exit 1; }
  log "provisioning etcd users: root, yun-controller, host:$host_name (auth on)"
  "$bin/yun-controller" bus-auth "${root_flags[@]}" enable | sed 's/^/    /'
  "$bin/yun-controller" bus-auth "${root_flags[@]}" add-host "$host_name" | sed 's/^/    /'

  cat >"$demo/agent.toml" <<TOML
host_name = "$host_name"
etcd_endpoints = ["$etcd_url"]
etcd_ca = "$pki/ca-bundle.crt"
etcd_cert = "$pki/host-$host_name.crt"
etcd_key = "$pki/host-$host_name.key"
state_dir = "$state"
libvirt_uri = "qemu:///system"
# TCG: /dev/kvm exists on these machines but stock guest kernels hang under it.
virt_type = "qemu"
metrics_listen = "127.0.0.1:9464"
[labels]
zone = "demo"
TOML
  log "applying example manifests"
  img="$root/images/build/yun-test"
  sum() { awk -v f="$1" '$2==f || $2=="*"f {print $1}' "$img/SHA256SUMS"; }
  sed -e "s|@DISK_SOURCE@|file://$img/disk.qcow2|" -e "s|@DISK_SHA256@|$(sum disk.qcow2)|" \
      -e "s|@KERNEL_SOURCE@|file://$img/vmlinuz|" -e "s|@KERNEL_SHA256@|$(sum vmlinuz)|" \
      -e "s|@INITRD_SOURCE@|file://$img/initrd.img|" -e "s|@INITRD_SHA256@|$(sum initrd.img)|" \
      "$root/examples/vmimage.yaml.in" >"$demo/vmimage.yaml"
  "$bin/yun-controller" apply -f "$demo/vmimage.yaml" --manifests "$demo/manifests"
  "$bin/yun-controller" apply -f "$root/examples/volume.yaml" --manifests "$demo/manifests"
  "$bin/yun-controller" apply -f "$root/examples/virtualmachine.yaml" --manifests "$demo/manifests"
  log "an invalid manifest is refused before anything reaches etcd:"
  RUST_BACKTRACE=0 "$bin/yun-controller" apply -f "$root/examples/invalid-virtualmachine.yaml" --manifests "$demo/manifests" 2>&1 | sed 's/^/    /' || true

  start_bg yun-controller "$demo/controller.pid" "$demo/controller.log" \
    "$bin/yun-controller" run "${ctl[@]}" --manifests "$demo/manifests" --metrics-listen 127.0.0.1:9465 \
    --audit-log "$demo/controller-audit.log"
  start_bg yun-agent "$demo/agent.pid" "$demo/agent.log" "$bin/yun-agent" --config "$demo/agent.toml"

  log "waiting for demo-vm to be Running"
  local phase=Unknown
  for _ in $(seq 1 300); do
    phase=$(vm_phase); [ "$phase" = Running ] && break; sleep 0.5
  done
  if [ "$phase" != Running ]; then
    echo "demo-vm did not reach Running (last phase: $phase). Logs: $demo/*.log" >&2
    tail -n 20 "$demo/controller.log" "$demo/agent.log" >&2; exit 1
  fi
  uid=$("$bin/yun-controller" status "${ctl[@]}" -o json |
    python3 -c 'import json,sys; print(next(v["uid"] for v in json.load(sys.stdin) if v["name"]=="demo-vm"))')
  console="$state/vms/$uid/console.log"
  for _ in $(seq 1 120); do grep -q YUN-GUEST-READY "$console" 2>/dev/null && break; sleep 0.5; done
  echo
  "$bin/yun-controller" status "${ctl[@]}"
  echo
  virsh -c qemu:///system list
  echo "guest console: $(grep -a YUN-GUEST- "$console" 2>/dev/null | tr -d '\r' | tail -n1)"
  for _ in $(seq 1 20); do grep -q YUN-DISK "$console" 2>/dev/null && break; sleep 0.5; done
  echo "guest disks:   $(grep -a 'YUN-DISK ' "$console" 2>/dev/null | tr -d '\r' | tail -n1)"
  echo "audit trail:   $("$bin/yun-controller" audit verify --audit-log "$demo/controller-audit.log")"
  cat <<TXT

Look around:
  # the guest is libvirt domain yun-$uid
  virsh -c qemu:///system list --all
  virsh -c qemu:///system dumpxml yun-$uid
  # its serial console
  tail -f $console
  # the fleet bus
  export ETCDCTL_API=3 ETCDCTL_ENDPOINTS=$etcd_url ETCDCTL_CACERT=$pki/ca-bundle.crt
  ETCDCTL_CERT=$pki/root.crt ETCDCTL_KEY=$pki/root.key etcdctl get --prefix /yun/v1/ --keys-only
  # ... which this host's certificate may not do (its etcd role reads only its own prefix)
  ETCDCTL_CERT=$pki/host-$host_name.crt ETCDCTL_KEY=$pki/host-$host_name.key etcdctl get --prefix /yun/v1/ --keys-only
  # kubectl-like status of hosts, VMs and images
  $bin/yun-controller status ${ctl[*]}
  # metrics (agent 9464, controller 9465)
  curl -s 127.0.0.1:9464/metrics | grep '^yun_'
  # the controller's audit trail (hash-chained; export is JSON lines for a SIEM)
  $bin/yun-controller audit verify --audit-log $demo/controller-audit.log
  $bin/yun-controller audit export --audit-log $demo/controller-audit.log
  # logs
  ls $demo/*.log
Stop and remove everything with: make down
TXT
}

down() {
  if pid_alive "$demo/controller.pid" && pid_alive "$demo/agent.pid"; then
    log "removing the example VM through the controller"
    rm -f "$demo/manifests/"*.yaml
    for _ in $(seq 1 120); do
      [ "$(vm_phase)" = Absent ] && break; sleep 0.5
    done
  fi
  stop_pid yun-agent "$demo/agent.pid"
  stop_pid yun-controller "$demo/controller.pid"
  # Anything the agent could not remove (e.g. it was not running): domains whose disks live in
  # the demo state dir.
  if virsh -c qemu:///system version >/dev/null 2>&1; then
    for d in $(virsh -c qemu:///system list --all --name | grep '^yun-' || true); do
      if virsh -c qemu:///system dumpxml "$d" | grep -q "$state/"; then
        virsh -c qemu:///system destroy "$d" >/dev/null 2>&1 || true
        virsh -c qemu:///system undefine "$d" >/dev/null 2>&1 || true
        log "removed leftover domain $d"
      fi
    done
  fi
  stop_pid etcd "$demo/etcd.pid"
  [ -d "$demo" ] && bash "$root/scripts/libvirt.sh" down "$demo"
  rm -rf "$demo" "$state"
  log "demo is down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
