#!/usr/bin/env bash
# Boots the test template built by build.sh (in OUT_DIR) under QEMU/TCG the way Yun runs VMs: a qcow2
# overlay on the template disk plus a NoCloud seed ISO as a read-only virtio disk. Checks that
#   - the guest prints exactly one "YUN-GUEST-READY instance-id=smoke-123 hostname=smoke marker=hello-42"
#   - an ACPI power-button press (what libvirt's shutdown sends) powers the guest off
#   - the guest's writes landed in the overlay and the template disk is unchanged.
# Exits 0 when all hold, 1 otherwise. Prints the seconds from QEMU start to the marker.
set -euo pipefail

MARKER_TIMEOUT_S=90
SHUTDOWN_TIMEOUT_S=30
EXPECTED="YUN-GUEST-READY instance-id=smoke-123 hostname=smoke marker=hello-42"

[[ $# -eq 1 ]] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
IMG="$(cd "$1" && pwd)"
for f in vmlinuz initrd.img disk.qcow2 SHA256SUMS vmimage.yaml; do
    [[ -f "$IMG/$f" ]] || { echo "smoke: $IMG/$f missing (run build.sh first)" >&2; exit 1; }
done
(cd "$IMG" && sha256sum --quiet -c SHA256SUMS) || { echo "smoke: SHA256SUMS mismatch" >&2; exit 1; }
CMDLINE="$(sed -n 's/^  cmdline: "\(.*\)"$/\1/p' "$IMG/vmimage.yaml")"
[[ -n "$CMDLINE" ]] || { echo "smoke: no cmdline in vmimage.yaml" >&2; exit 1; }

T="$(mktemp -d)"
QEMU_PID=""
cleanup() {
    if [[ -n "$QEMU_PID" ]] && kill -0 "$QEMU_PID" 2>/dev/null; then
        kill "$QEMU_PID" 2>/dev/null || true
        wait "$QEMU_PID" 2>/dev/null || true
    fi
    rm -rf "$T"
}
trap cleanup EXIT

FAILED=0
check() { # check DESCRIPTION COMMAND...
    local what="$1"
    shift
    if "$@"; then echo "smoke: ok   $what"; else echo "smoke: FAIL $what"; FAILED=1; fi
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# NoCloud seed, as the agent builds it.
mkdir "$T/seed"
printf 'instance-id: smoke-123\nlocal-hostname: smoke\n' >"$T/seed/meta-data"
printf '#cloud-config\nyun-marker: hello-42\n' >"$T/seed/user-data"
printf 'version: 2\nethernets: {}\n' >"$T/seed/network-config"
(cd "$T/seed" && genisoimage -quiet -output "$T/seed.iso" -volid cidata -joliet -rock \
    user-data meta-data network-config)

BASE_SUM_BEFORE="$(sha256sum <"$IMG/disk.qcow2")"
qemu-img create -q -f qcow2 -b "$IMG/disk.qcow2" -F qcow2 "$T/overlay.qcow2"

# The monitor on a FIFO pair lets us press the ACPI power button without extra tools.
mkfifo "$T/monitor.in" "$T/monitor.out"
exec 3<>"$T/monitor.in" 4<>"$T/monitor.out"

START="$(now)"
qemu-system-x86_64 -machine accel=tcg -m 256 -display none -no-reboot \
    -kernel "$IMG/vmlinuz" -initrd "$IMG/initrd.img" -append "$CMDLINE" \
    -drive "file=$T/overlay.qcow2,if=virtio,format=qcow2" \
    -drive "file=$T/seed.iso,if=virtio,format=raw,readonly=on" \
    -serial "file:$T/console.log" -monitor "pipe:$T/monitor" &
QEMU_PID=$!

console() { tr -d '\r' 2>/dev/null <"$T/console.log"; }

# Stop polling at the first status line, including the initramfs' failure line.
MARKER_AT=""
DEADLINE=$(($(date +%s) + MARKER_TIMEOUT_S))
while (($(date +%s) < DEADLINE)); do
    if console | grep -E '^YUN-(GUEST|INITRAMFS)-' >/dev/null; then
        MARKER_AT="$(now)"
        break
    fi
    kill -0 "$QEMU_PID" 2>/dev/null || break
    sleep 0.1
done
sleep 0.5 # let a (wrongly) repeated marker line reach the log too

READY_LINE="$(console | grep '^YUN-GUEST-' | head -n 1 || true)"
if [[ -n "$MARKER_AT" && -n "$READY_LINE" ]]; then
    echo "smoke: marker after $(elapsed "$START" "$MARKER_AT") s (TCG, from QEMU start)"
fi
check "exactly one marker line within ${MARKER_TIMEOUT_S} s" test "$(console | grep -c '^YUN-GUEST-')" = 1
check "marker line is: $EXPECTED" test "$READY_LINE" = "$EXPECTED"

powered_off=no
if [[ -n "$READY_LINE" ]] && kill -0 "$QEMU_PID" 2>/dev/null; then
    echo system_powerdown >&3
    DEADLINE=$(($(date +%s) + SHUTDOWN_TIMEOUT_S))
    while (($(date +%s) < DEADLINE)) && kill -0 "$QEMU_PID" 2>/dev/null; do sleep 0.2; done
    kill -0 "$QEMU_PID" 2>/dev/null || powered_off=yes
fi
check "guest powers off on ACPI power button within ${SHUTDOWN_TIMEOUT_S} s" test "$powered_off" = yes
if kill -0 "$QEMU_PID" 2>/dev/null; then
    kill "$QEMU_PID"
fi
wait "$QEMU_PID" 2>/dev/null || true
QEMU_PID=""

check "template disk unchanged" test "$(sha256sum <"$IMG/disk.qcow2")" = "$BASE_SUM_BEFORE"
# Read what the guest wrote back out of the overlay (replaying the ext4 journal on a copy).
qemu-img convert -f qcow2 -O raw "$T/overlay.qcow2" "$T/overlay.raw"
e2fsck -E journal_only -y "$T/overlay.raw" >/dev/null 2>&1 || true
guest_file() { debugfs -R "cat $1" "$T/overlay.raw" 2>/dev/null; }
check "guest wrote its instance-id into the overlay" test "$(guest_file /etc/yun-instance-id)" = smoke-123
check "guest wrote its hostname into the overlay" test "$(guest_file /etc/hostname)" = smoke

if ((FAILED)); then
    echo "smoke: FAILED; guest console:"
    console | tail -n 60
    exit 1
fi
echo "smoke: PASSED"
