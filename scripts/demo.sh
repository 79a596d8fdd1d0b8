#!/usr/bin/env bash
# The Yun demo on one machine: local etcd, virtlogd + libvirtd, the controller in bootstrap mode
# and an agent for this host; applies examples/ with yunctl and waits until the example VM is
# Running. It leaves yunctl's default config (~/.yun/yunctl.yaml) and /usr/local/bin/yunctl, so a
# bare `yunctl get vm` or `yunctl delete vm demo-vm` works afterwards; `make down` removes both.
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
yunctl_config="$HOME/.yun/yunctl.yaml"
yunctl_link=/usr/local/bin/yunctl
# Marks the config as the demo's: `make down` removes only a config that carries it.
readonly DEMO_CONFIG_MARK="# written by Yun's make demo"
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

yunctl() { "$bin/yunctl" --config "$yunctl_config" "$@"; }

vm_phase() {
  local out
  out=$(yunctl get vm demo-vm -o json 2>&1) || { grep -q NotFound <<<"$out" && echo Absent || echo Unknown; return; }
  python3 -c 'import json,sys; print((json.load(sys.stdin).get("status") or {}).get("phase") or "Pending")' <<<"$out" 2>/dev/null || echo Unknown
}

# yunctl's config for this demo's etcd (its own client certificate: the store, nothing else),
# unless the user has a config of their own there; and yunctl on PATH.
install_yunctl() {
  mkdir -p "$(dirname "$yunctl_config")"
  if [ -f "$yunctl_config" ] && ! grep -qxF "$DEMO_CONFIG_MARK" "$yunctl_config"; then
    log "keeping your $yunctl_config; use: $bin/yunctl --config $demo/yunctl.yaml"
  else
    ln -sf "$demo/yunctl.yaml" "$yunctl_config"
  fi
  cat >"$demo/yunctl.yaml" <<YAML
$DEMO_CONFIG_MARK
endpoints: [$etcd_url]
ca: $pki/ca-bundle.crt
cert: $pki/yunctl.crt
key: $pki/yunctl.key
namespace: default
YAML
  if [ ! -e "$yunctl_link" ] || [ "$(readlink "$yunctl_link")" = "$bin/yunctl" ]; then
    ln -sf "$bin/yunctl" "$yunctl_link"
  fi
}

up() {
  bash "$root/scripts/install-deps.sh"
  log "building yun-controller, yun-agent and yunctl"
  (cd "$root" && cargo build --quiet --bins -p yun-controller -p yun-agent -p yunctl)
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
  for cn in root yun-controller yunctl "host:$host_name"; do certs client "$pki" "$cn"; done
  start_bg etcd "$demo/etcd.pid" "$demo/etcd.log" etcd --name demo --data-dir "$demo/etcd" \
    --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster demo=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
    --client-cert-auth --trusted-ca-file "$pki/ca-bundle.crt" \
    --cert-file "$pki/etcd.crt" --key-file "$pki/etcd.key"
  for _ in $(seq 1 100); do curl -fs "$etcd_health" >/dev/null 2>&1 && break; sleep 0.2; done
  curl -fs "$etcd_health" >/dev/null || { echo "etcd did not become healthy; see $demo/etcd.log" >&2; exit 1; }
  log "provisioning etcd users: root, yun-controller, yunctl, host:$host_name (auth on)"
  "$bin/yun-controller" bus-auth "${root_flags[@]}" enable | sed 's/^/    /'
  "$bin/yun-controller" bus-auth "${root_flags[@]}" add-host "$host_name" | sed 's/^/    /'
  "$bin/yun-controller" bus-auth "${root_flags[@]}" add-client | sed 's/^/    /'
  install_yunctl

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
  log "applying the example objects with yunctl"
  img="$root/images/build/yun-test"
  sum() { awk -v f="$1" '$2==f || $2=="*"f {print $1}' "$img/SHA256SUMS"; }
  sed -e "s|@DISK_SOURCE@|file://$img/disk.qcow2|" -e "s|@DISK_SHA256@|$(sum disk.qcow2)|" \
      -e "s|@KERNEL_SOURCE@|file://$img/vmlinuz|" -e "s|@KERNEL_SHA256@|$(sum vmlinuz)|" \
      -e "s|@INITRD_SOURCE@|file://$img/initrd.img|" -e "s|@INITRD_SHA256@|$(sum initrd.img)|" \
      "$root/examples/vmimage.yaml.in" >"$demo/vmimage.yaml"
  yunctl apply -f "$demo/vmimage.yaml" -f "$root/examples/volume.yaml" -f "$root/examples/virtualmachine.yaml" | sed 's/^/    /'
  log "an invalid manifest is refused before anything reaches etcd:"
  yunctl apply -f "$root/examples/invalid-virtualmachine.yaml" 2>&1 | sed 's/^/    /' || true

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
  uid=$(yunctl get vm demo-vm -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["metadata"]["uid"])')
  console="$state/vms/$uid/console.log"
  for _ in $(seq 1 120); do grep -q YUN-GUEST-READY "$console" 2>/dev/null && break; sleep 0.5; done
  echo
  "$bin/yun-controller" status "${ctl[@]}" | sed -n '1,/^$/p'
  "$bin/yunctl" get vm
  echo
  "$bin/yunctl" get volume
  echo
  "$bin/yunctl" get vmimage
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
  # the objects, kubectl-style (config: $yunctl_config, an etcd user that reaches only the store)
  yunctl get vm
  yunctl describe vm demo-vm
  yunctl get vm -w                      # a row per change; Ctrl-C to stop
  yunctl delete vm demo-vm              # the controller removes its domain, then the object goes
  # hosts as the fleet bus sees them
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
    log "removing the example objects through the controller"
    rm -f "$demo/manifests/"*.yaml
    yunctl delete vm demo-vm --ignore-not-found --timeout 60s || true
    yunctl delete volume demo-data --ignore-not-found --timeout 30s || true
    yunctl delete vmimage yun-test --ignore-not-found --timeout 30s || true
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
  [ "$(readlink "$yunctl_link" 2>/dev/null)" = "$bin/yunctl" ] && rm -f "$yunctl_link"
  [ "$(readlink "$yunctl_config" 2>/dev/null)" = "$demo/yunctl.yaml" ] && rm -f "$yunctl_config"
  rm -rf "$demo" "$state"
  log "demo is down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
