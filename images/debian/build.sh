#!/usr/bin/env bash
# Builds Yun's Debian 12 (bookworm) cloud template into OUT_DIR:
#   disk.qcow2    a self-booting disk (MBR + GRUB + one ext4 partition) with cloud-init (NoCloud),
#                 openssh-server, qemu-guest-agent, systemd-networkd via netplan, ttyS0 console
#   SHA256SUMS, vmimage.yaml (a yun.dev/v1alpha1 VmImage `debian-12` pointing at the disk)
# The root comes from Debian packages via scripts/debian-rootfs.sh (debootstrap, with a cached
# tarball: only the first build downloads). No loop devices or mounts besides the chroot's /proc.
# A re-run replaces the outputs; it is skipped when they exist, verify, and were built from the
# same inputs (YUN_IMAGE_FORCE=1 rebuilds anyway). Run as root.
set -euo pipefail

usage() {
    echo "usage: $0 OUT_DIR" >&2
    exit 2
}
die() {
    echo "build.sh: $*" >&2
    exit 1
}
log() { echo "build.sh: [$((SECONDS))s] $*"; }

[[ $# -eq 1 ]] || usage
[[ $EUID -eq 0 ]] || die "must run as root (debootstrap, chroot, file ownership)"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
mkdir -p "$1"
OUT_DIR="$(cd "$1" && pwd)"
# The directory ends up inside file:// URLs in vmimage.yaml; keep those URLs free of escaping.
[[ "$OUT_DIR" =~ ^[A-Za-z0-9._/+-]+$ ]] || die "OUT_DIR '$OUT_DIR' has characters unsafe in a file:// URL"

export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1704067200}"
# The image's packages, besides debootstrap's minbase. python3-cffi-backend is a dependency of
# cloud-init's that debootstrap cannot resolve by itself (it is reached through a virtual
# package); grub-pc-bin only makes the boot images and is purged again (customize.sh).
PACKAGES=systemd-sysv,udev,dbus,libpam-systemd,linux-image-cloud-amd64,zstd,cloud-init
PACKAGES+=,python3-cffi-backend,cloud-guest-utils,openssh-server,openssh-sftp-server
PACKAGES+=,qemu-guest-agent,netplan.io,systemd-resolved,systemd-timesyncd,sudo,ca-certificates
PACKAGES+=,e2fsprogs,procps,iputils-ping,grub-pc-bin
DISK_SIZE_MIB=2048
PART_START_MIB=1
ROOT_LABEL=yun-root
# Fixed so the disk is reproducible; every VM gets its own overlay, never a copy of this disk.
ROOT_FS_UUID=3b4d6f7a-9c1e-4d2b-8a5f-6e0c1d2b3a49
# The MBR's disk signature (Linux names the partition PARTUUID=59756e31-01).
DISK_SIGNATURE=0x59756e31
CMDLINE="root=UUID=$ROOT_FS_UUID ro console=tty0 console=ttyS0,115200n8"

for tool in mke2fs debugfs qemu-img sha256sum find touch flock awk; do
    command -v "$tool" >/dev/null || die "missing tool: $tool"
done

exec 9>"$OUT_DIR/.build.lock"
flock 9

# --- skip when nothing changed ---------------------------------------------------------------

# Everything the outputs are made from, except the package versions: those come from the cached
# debootstrap tarball (delete it, or set YUN_IMAGE_FORCE=1, to pick up newer packages).
inputs_digest() {
    {
        printf 'out=%s epoch=%s packages=%s\n' "$OUT_DIR" "$SOURCE_DATE_EPOCH" "$PACKAGES"
        (cd "$HERE" && find . -type f -print0 | LC_ALL=C sort -z |
            xargs -0 stat -c '%a %n' && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
        sha256sum "$REPO/scripts/debian-rootfs.sh" | cut -d' ' -f1
    } | sha256sum | cut -d' ' -f1
}
STAMP="$OUT_DIR/.inputs.sha256"
DIGEST="$(inputs_digest)"
if [[ "${YUN_IMAGE_FORCE:-0}" != 1 && -f "$STAMP" && "$(cat "$STAMP")" == "$DIGEST" ]] &&
    [[ -f "$OUT_DIR/disk.qcow2" && -f "$OUT_DIR/vmimage.yaml" ]] &&
    (cd "$OUT_DIR" && sha256sum --quiet -c SHA256SUMS 2>/dev/null); then
    echo "build.sh: $OUT_DIR is up to date (inputs unchanged, checksums verified)"
    exit 0
fi

# --- work area -------------------------------------------------------------------------------

WORK="$(mktemp -d "$OUT_DIR/.build.XXXXXX")"
ROOT="$WORK/root"
# Unmounts whatever is still mounted below WORK (a failed debootstrap can leave /proc and /sys),
# and deletes WORK only when nothing is: rm must never reach into a mounted filesystem.
cleanup() {
    local mount
    while read -r mount; do
        umount "$mount" 2>/dev/null || umount -l "$mount" 2>/dev/null || true
    done < <(awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/self/mounts | sort -r)
    if awk -v w="$WORK/" 'index($2, w) == 1 { found = 1 } END { exit !found }' /proc/self/mounts; then
        echo "build.sh: leaving $WORK in place: something below it is still mounted" >&2
        return
    fi
    rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT
BUILD_START="$(date +%s)"

# --- root filesystem -------------------------------------------------------------------------

log "debootstrap (bookworm, minbase + ${PACKAGES//,/ })"
bash "$REPO/scripts/debian-rootfs.sh" "$ROOT" --include "$PACKAGES" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
[[ -e "$ROOT/vmlinuz" && -e "$ROOT/initrd.img" ]] || die "the root has no /vmlinuz or /initrd.img"
KVER="$(basename "$(readlink "$ROOT/vmlinuz")")"
KVER="${KVER#vmlinuz-}"

log "customizing (kernel $KVER)"
# Explicit modes (0755 for executables and directories, 0644 otherwise) and root ownership, so
# the checkout's umask cannot leak into the image.
while IFS= read -r -d '' path; do
    if [[ -d "$HERE/rootfs/$path" ]]; then
        install -d -m 0755 "$ROOT/$path"
    elif [[ -x "$HERE/rootfs/$path" ]]; then
        install -m 0755 "$HERE/rootfs/$path" "$ROOT/$path"
    else
        install -m 0644 "$HERE/rootfs/$path" "$ROOT/$path"
    fi
done < <(cd "$HERE/rootfs" && find . -mindepth 1 -print0 | LC_ALL=C sort -z)
cat >"$ROOT/etc/fstab" <<EOF
# <file system>	<mount point>	<type>	<options>	<dump>	<pass>
UUID=$ROOT_FS_UUID	/	ext4	rw,errors=remount-ro	0	1
EOF
mkdir -p "$ROOT/boot/grub"
cat >"$ROOT/boot/grub/grub.cfg" <<EOF
# Written by Yun's images/debian/build.sh; GRUB itself is inside the disk's first megabyte (all
# modules built in), not a Debian package. /vmlinuz and /initrd.img are the symlinks Debian
# moves to the newest kernel, so kernel upgrades need no change here.
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout_style=hidden
set timeout=0
menuentry "Debian GNU/Linux 12 (Yun template)" {
    linux /vmlinuz $CMDLINE
    initrd /initrd.img
}
EOF
mkdir -p "$ROOT/.yun-image"
install -m 0755 "$HERE/customize.sh" "$ROOT/.yun-image/customize.sh"
mount -t proc proc "$ROOT/proc"
SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" chroot "$ROOT" /.yun-image/customize.sh ||
    die "customize.sh failed in the chroot"
umount "$ROOT/proc"
mv "$ROOT/.yun-image" "$WORK/boot"

# What must never ship in a template.
compgen -G "$ROOT/etc/ssh/ssh_host_*" >/dev/null && die "SSH host keys left in the image"
[[ ! -s "$ROOT/etc/machine-id" ]] || die "/etc/machine-id is not empty"
awk -F: '$2 ~ /^\$/ { bad = 1; print "build.sh: account " $1 " has a password" > "/dev/stderr" }
    END { exit bad }' "$ROOT/etc/shadow" || die "accounts with passwords in the image"

# Reproducible timestamps: files the build created or changed get SOURCE_DATE_EPOCH; files
# unpacked from packages keep their packaged mtime (Python's .pyc files are validated against
# it). Access, change and creation times are pinned in the filesystem below.
find "$ROOT" -xdev -newermt "@$BUILD_START" -exec touch -h -m -d "@$SOURCE_DATE_EPOCH" {} +
ROOT_USED_MIB="$(du -sxm "$ROOT" | cut -f1)"

# --- disk ------------------------------------------------------------------------------------

log "making the disk (root tree: ${ROOT_USED_MIB} MiB)"
PART_SIZE_MIB=$((DISK_SIZE_MIB - PART_START_MIB))
E2FSPROGS_FAKE_TIME="$SOURCE_DATE_EPOCH" mke2fs -q -F -t ext4 -L "$ROOT_LABEL" -U "$ROOT_FS_UUID" \
    -O ^metadata_csum_seed,^orphan_file -E "hash_seed=$ROOT_FS_UUID,root_owner=0:0" \
    -d "$ROOT" "$WORK/root.ext4" "${PART_SIZE_MIB}M" >/dev/null
# mke2fs -d copies each file's atime and ctime (which reading the tree and touch change) and
# sets crtime to the time of the copy: pin all three with debugfs.
(cd "$ROOT" && find . -xdev -print | LC_ALL=C sort) >"$WORK/paths"
# debugfs takes a quoted path literally (backslashes included, as in systemd unit names); only a
# double quote cannot be named. A newline would split a path and make debugfs complain below.
grep -q '"' "$WORK/paths" && die "a path in the image has a double quote (debugfs cannot name it)"
sed -e 's#^\.##' -e 's#^$#/#' \
    -e "s#.*#sif \"&\" atime @$SOURCE_DATE_EPOCH\nsif \"&\" ctime @$SOURCE_DATE_EPOCH\nsif \"&\" crtime @$SOURCE_DATE_EPOCH#" \
    "$WORK/paths" >"$WORK/pin-times.debugfs"
E2FSPROGS_FAKE_TIME="$SOURCE_DATE_EPOCH" debugfs -w -f "$WORK/pin-times.debugfs" "$WORK/root.ext4" \
    >/dev/null 2>"$WORK/debugfs.err" || die "debugfs could not pin inode times"
grep -v '^debugfs ' "$WORK/debugfs.err" | grep -q . && { cat "$WORK/debugfs.err" >&2; die "debugfs reported errors"; }

# Little-endian bytes of a 32-bit value, as printf escapes.
le32() { printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24 & 255)); }
# CHS address of an LBA in the usual 255-head, 63-sector geometry (the maximum past its reach).
chs() {
    local lba=$1 c h s
    if ((lba >= 1024 * 255 * 63)); then
        printf '\\xfe\\xff\\xff'
        return
    fi
    c=$((lba / (255 * 63))) h=$((lba / 63 % 255)) s=$((lba % 63 + 1))
    printf '\\x%02x\\x%02x\\x%02x' "$h" $((s | (c >> 2 & 0xc0))) $((c & 255))
}

CORE_SIZE="$(stat -c %s "$WORK/boot/core.img")"
((CORE_SIZE <= (PART_START_MIB * 1048576 - 512))) || die "core.img ($CORE_SIZE bytes) does not fit before the partition"
FIRST_LBA=$((PART_START_MIB * 2048))
SECTORS=$((PART_SIZE_MIB * 2048))
truncate -s "${DISK_SIZE_MIB}M" "$WORK/disk.raw"
# MBR: GRUB's boot code, the disk signature, one active Linux partition, the boot signature.
dd if="$WORK/boot/boot.img" of="$WORK/disk.raw" bs=440 count=1 conv=notrunc status=none
# shellcheck disable=SC2059 # the formats are the escapes built above
{
    printf "$(le32 "$DISK_SIGNATURE")\\x00\\x00"
    printf "\\x80$(chs "$FIRST_LBA")\\x83$(chs $((FIRST_LBA + SECTORS - 1)))"
    printf "$(le32 "$FIRST_LBA")$(le32 "$SECTORS")"
    head -c 48 /dev/zero
    printf '\x55\xaa'
} | dd of="$WORK/disk.raw" bs=1 seek=440 conv=notrunc status=none
dd if="$WORK/boot/core.img" of="$WORK/disk.raw" bs=512 seek=1 conv=notrunc status=none
dd if="$WORK/root.ext4" of="$WORK/disk.raw" bs=1M seek="$PART_START_MIB" conv=notrunc,sparse status=none

log "compressing to qcow2 (zstd)"
STAGE="$WORK/out"
mkdir -p "$STAGE"
qemu-img convert -f raw -O qcow2 -c -o compression_type=zstd "$WORK/disk.raw" "$STAGE/disk.qcow2"
(cd "$STAGE" && sha256sum disk.qcow2 >SHA256SUMS)

cat >"$STAGE/vmimage.yaml" <<EOF
# Yun Debian 12 template built by images/debian/build.sh (kernel $KVER). The disk boots by
# itself (MBR + GRUB), so there is no kernel, initrd or cmdline here.
apiVersion: yun.dev/v1alpha1
kind: VmImage
metadata:
  name: debian-12
  namespace: default
spec:
  os: debian-12
  disk:
    source: file://$OUT_DIR/disk.qcow2
    format: qcow2
    sha256: $(cut -d' ' -f1 "$STAGE/SHA256SUMS")
EOF

rm -f "$STAMP"
for file in disk.qcow2 SHA256SUMS vmimage.yaml; do
    mv -f "$STAGE/$file" "$OUT_DIR/$file"
done
echo "$DIGEST" >"$STAMP"
log "built debian-12 (kernel $KVER, root ${ROOT_USED_MIB} MiB, disk.qcow2 $(du -m "$OUT_DIR/disk.qcow2" | cut -f1) MiB) into $OUT_DIR"
