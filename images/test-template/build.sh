#!/usr/bin/env bash
# Builds the Yun test template image into OUT_DIR:
#   vmlinuz      the newest installed Debian *-cloud-amd64 kernel
#   initrd.img   a hand-made initramfs: busybox + the modules needed to reach the root disk and seed
#   disk.qcow2   an ext4 root disk with busybox and the guest's boot script (see guest/)
#   SHA256SUMS, vmimage.yaml (a yun.dev/v1alpha1 VmImage pointing at the files above)
# Only already-installed Debian packages are used (busybox-static, linux-image-cloud-amd64, cpio,
# e2fsprogs, qemu-utils); no loop mounts, no network. Outputs are reproducible for a given kernel,
# busybox and SOURCE_DATE_EPOCH, and a re-run replaces them.
set -euo pipefail

usage() {
    echo "usage: $0 OUT_DIR" >&2
    exit 2
}
die() {
    echo "build.sh: $*" >&2
    exit 1
}

[[ $# -eq 1 ]] || usage
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
GUEST="$HERE/guest"
mkdir -p "$1"
OUT_DIR="$(cd "$1" && pwd)"
# The directory ends up inside file:// URLs in vmimage.yaml; keep those URLs free of escaping.
[[ "$OUT_DIR" =~ ^[A-Za-z0-9._/+-]+$ ]] || die "OUT_DIR '$OUT_DIR' has characters unsafe in a file:// URL"

export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1704067200}"
BUSYBOX=/bin/busybox
DISK_SIZE_MB=32
# Fixed so the root disk is reproducible; every VM gets its own overlay, never a copy of this disk.
ROOT_FS_UUID=5e1f0c2a-7b3d-4c8e-9a61-0d2f4b6c8e10
# Modules the guest loads, besides their modules.dep dependencies: PCI transport + block disks
# (root and seed), the seed's filesystems (iso9660; vfat with the codepages its mount asks for),
# the NIC driver, and the ACPI power button (+ evdev for acpid) so a graceful shutdown works.
ROOT_MODULES=(virtio_pci virtio_blk virtio_net isofs vfat nls_cp437 nls_ascii button evdev)
CMDLINE="console=ttyS0 root=/dev/vda rw panic=-1"

for tool in cpio gzip mke2fs debugfs qemu-img sha256sum sort find touch; do
    command -v "$tool" >/dev/null || die "missing tool: $tool"
done
[[ -x "$BUSYBOX" ]] || die "$BUSYBOX not found (install busybox-static)"
"$BUSYBOX" --list | grep -qx switch_root || die "$BUSYBOX has no switch_root applet"

KERNEL_IMAGE="$(find /boot -maxdepth 1 -name 'vmlinuz-*-cloud-amd64' | sort -V | tail -n 1)"
[[ -n "$KERNEL_IMAGE" ]] || die "no /boot/vmlinuz-*-cloud-amd64 found (install linux-image-cloud-amd64)"
KVER="${KERNEL_IMAGE#/boot/vmlinuz-}"
MODDIR="/lib/modules/$KVER"
[[ -f "$MODDIR/modules.dep" ]] || die "$MODDIR/modules.dep missing for kernel $KVER"
# Volumes are hot-plugged as PCI devices on the `pc` machine's root bus, which needs the kernel's
# ACPI PCI hotplug driver (acpiphp). It cannot be a module: it is either built in or absent.
if [[ -f "/boot/config-$KVER" ]] && ! grep -qx 'CONFIG_HOTPLUG_PCI_ACPI=y' "/boot/config-$KVER"; then
    echo "build.sh: warning: $KVER lacks CONFIG_HOTPLUG_PCI_ACPI=y; hot-plugged volumes will not appear in the guest" >&2
fi

WORK="$(mktemp -d "$OUT_DIR/.build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# --- kernel modules: resolve ROOT_MODULES and their dependencies from modules.dep -------------

declare -A MOD_PATH=() MOD_DEPS=() MOD_BUILTIN=() MOD_SEEN=()
MOD_ORDER=()

# Sets REPLY to the module name of a path: kernel/fs/nls/nls_iso8859-1.ko.xz -> nls_iso8859_1
# (no subshell: this runs for every line of modules.dep).
module_name() {
    REPLY="${1##*/}"
    REPLY="${REPLY%%.ko*}"
    REPLY="${REPLY//-/_}"
}

while IFS= read -r line; do
    path="${line%%:*}"
    module_name "$path"
    MOD_PATH["$REPLY"]="$path"
    MOD_DEPS["$path"]="${line#*:}"
done <"$MODDIR/modules.dep"
if [[ -f "$MODDIR/modules.builtin" ]]; then
    while IFS= read -r path; do
        module_name "$path"
        MOD_BUILTIN["$REPLY"]=1
    done <"$MODDIR/modules.builtin"
fi

# Depth-first: every module is listed after all of its dependencies (insmod order).
visit_module() {
    local path="$1" dep
    [[ -z "${MOD_SEEN[$path]:-}" ]] || return 0
    MOD_SEEN["$path"]=1
    for dep in ${MOD_DEPS[$path]}; do visit_module "$dep"; done
    MOD_ORDER+=("$path")
}

for name in "${ROOT_MODULES[@]}"; do
    if [[ -n "${MOD_PATH[$name]:-}" ]]; then
        visit_module "${MOD_PATH[$name]}"
    elif [[ -n "${MOD_BUILTIN[$name]:-}" ]]; then
        echo "build.sh: $name is built into $KVER, nothing to load"
    else
        die "module $name is neither in $MODDIR/modules.dep nor built into $KVER"
    fi
done

# Copies the ordered modules (decompressed: busybox insmod wants plain .ko) under $1/lib/modules
# and writes the load order the initramfs /init follows.
install_modules() {
    local root="$1" path plain dest
    mkdir -p "$root/lib/modules"
    : >"$root/lib/modules/load-order"
    for path in "${MOD_ORDER[@]}"; do
        plain="${path%.ko*}.ko"
        dest="$root/lib/modules/$KVER/$plain"
        mkdir -p "$(dirname "$dest")"
        case "$path" in
            *.ko) cp "$MODDIR/$path" "$dest" ;;
            *.ko.xz) xz -dc "$MODDIR/$path" >"$dest" ;;
            *.ko.zst) zstd -qdc "$MODDIR/$path" >"$dest" ;;
            *.ko.gz) gzip -dc "$MODDIR/$path" >"$dest" ;;
            *) die "unknown module format: $path" ;;
        esac
        echo "$KVER/$plain" >>"$root/lib/modules/load-order"
    done
}

# --- filesystem trees ------------------------------------------------------------------------

# busybox at /bin/busybox plus one relative symlink per applet at its usual place.
install_busybox() {
    local root="$1" applet target
    mkdir -p "$root/bin"
    cp "$BUSYBOX" "$root/bin/busybox"
    mkdir -p "$root/sbin" "$root/usr/bin" "$root/usr/sbin"
    while IFS= read -r applet; do
        [[ "$applet" == */* ]] || continue # skip "linuxrc"
        [[ -e "$root/$applet" || -L "$root/$applet" ]] && continue
        case "${applet%/*}" in
            bin) target=busybox ;;
            sbin) target=../bin/busybox ;;
            usr/bin | usr/sbin) target=../../bin/busybox ;;
            *) die "unexpected busybox applet location: $applet" ;;
        esac
        ln -s "$target" "$root/$applet"
    done < <("$BUSYBOX" --list-full | LC_ALL=C sort)
}

normalize_mtimes() {
    find "$1" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
}

INITRAMFS="$WORK/initramfs"
mkdir -p "$INITRAMFS"/{dev,proc,sys,newroot}
install_busybox "$INITRAMFS"
install_modules "$INITRAMFS"
install -m 0755 "$GUEST/initramfs-init" "$INITRAMFS/init"
normalize_mtimes "$INITRAMFS"

ROOTFS="$WORK/rootfs"
mkdir -p "$ROOTFS"/{dev,proc,sys,run,tmp,root,mnt,var/log}
chmod 1777 "$ROOTFS/tmp"
chmod 0700 "$ROOTFS/root"
install_busybox "$ROOTFS"
cp -R "$GUEST/rootfs/." "$ROOTFS/"
find "$ROOTFS/etc" -type f -exec chmod 0644 {} +
chmod 0755 "$ROOTFS/etc/yun/boot" "$ROOTFS/etc/acpi/PWRF/00000080"
normalize_mtimes "$ROOTFS"

# --- images ----------------------------------------------------------------------------------

STAGE="$WORK/out"
mkdir -p "$STAGE"
cp "$KERNEL_IMAGE" "$STAGE/vmlinuz"

(cd "$INITRAMFS" && find . -print0 | LC_ALL=C sort -z |
    cpio --quiet --null -o -H newc --reproducible -R 0:0) | gzip -9 -n >"$STAGE/initrd.img"

truncate -s "${DISK_SIZE_MB}M" "$WORK/root.raw"
E2FSPROGS_FAKE_TIME="$SOURCE_DATE_EPOCH" mke2fs -q -F -t ext4 -L yun-root -U "$ROOT_FS_UUID" \
    -E "hash_seed=$ROOT_FS_UUID,root_owner=0:0" -d "$ROOTFS" "$WORK/root.raw"
# mke2fs -d copies each file's ctime, which touch cannot set: pin it with debugfs for reproducibility.
(cd "$ROOTFS" && find . -print | LC_ALL=C sort |
    sed -e 's#^\.##' -e 's#^$#/#' -e "s#.*#sif \"&\" ctime @$SOURCE_DATE_EPOCH#") >"$WORK/pin-ctime.debugfs"
E2FSPROGS_FAKE_TIME="$SOURCE_DATE_EPOCH" debugfs -w -f "$WORK/pin-ctime.debugfs" "$WORK/root.raw" >/dev/null 2>&1 ||
    die "debugfs could not pin inode ctimes"
qemu-img convert -f raw -O qcow2 "$WORK/root.raw" "$STAGE/disk.qcow2"

(cd "$STAGE" && sha256sum vmlinuz initrd.img disk.qcow2 >SHA256SUMS)
sum_of() { awk -v f="$1" '$2 == f { print $1 }' "$STAGE/SHA256SUMS"; }

cat >"$STAGE/vmimage.yaml" <<EOF
# Yun test template built by images/test-template/build.sh from kernel $KVER.
apiVersion: yun.dev/v1alpha1
kind: VmImage
metadata:
  name: yun-test
  namespace: default
spec:
  os: yun-test-busybox
  disk:
    source: file://$OUT_DIR/disk.qcow2
    format: qcow2
    sha256: $(sum_of disk.qcow2)
  kernel:
    source: file://$OUT_DIR/vmlinuz
    sha256: $(sum_of vmlinuz)
  initrd:
    source: file://$OUT_DIR/initrd.img
    sha256: $(sum_of initrd.img)
  cmdline: "$CMDLINE"
EOF

for file in vmlinuz initrd.img disk.qcow2 SHA256SUMS vmimage.yaml; do
    mv -f "$STAGE/$file" "$OUT_DIR/$file"
done
echo "build.sh: built yun-test from kernel $KVER (modules: ${MOD_ORDER[*]##*/}) into $OUT_DIR"
