#!/usr/bin/env bash
# Make a Debian 12 (bookworm) root filesystem in TARGET with debootstrap, from a cached tarball
# when one exists. Used by the Ansible role tests (a throwaway root to apply roles to through the
# chroot connection) and by the Debian template build (images/debian/).
#
#   scripts/debian-rootfs.sh TARGET [--variant minbase|buildd|-] [--include pkg1,pkg2]
#
# The first run downloads the packages and writes a tarball to $YUN_CACHE_DIR/debootstrap/
# (default /var/cache/yun); later runs with the same variant and package list only unpack
# and configure it (no downloads). TARGET must be absent or empty. Mirror: $DEBIAN_MIRROR
# (default http://deb.debian.org/debian).
set -euo pipefail

usage() { echo "usage: $0 TARGET [--variant minbase|buildd|-] [--include pkg1,pkg2]" >&2; exit 2; }
[[ $# -ge 1 ]] || usage
target=$1; shift
variant=minbase
include=""
while [[ $# -gt 0 ]]; do
    case $1 in
        --variant) variant=${2:?--variant needs a value}; shift 2 ;;
        --include) include=${2:?--include needs a value}; shift 2 ;;
        *) usage ;;
    esac
done
if [[ $EUID -ne 0 ]]; then
    echo "debian-rootfs: must run as root (debootstrap)" >&2
    exit 1
fi
command -v debootstrap >/dev/null || { echo "debian-rootfs: debootstrap is not installed (scripts/install-deps.sh)" >&2; exit 1; }
if [[ -e $target ]] && [[ -n "$(ls -A "$target")" ]]; then
    echo "debian-rootfs: $target exists and is not empty" >&2
    exit 1
fi

suite=bookworm
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${YUN_CACHE_DIR:-/var/cache/yun}/debootstrap
key=$(printf '%s|%s|%s' "$suite" "$variant" "$include" | sha256sum | cut -c1-16)
tarball=$cache/$suite-$variant-$key.tgz

args=(--arch=amd64)
[[ $variant != - ]] && args+=(--variant="$variant")
[[ -n $include ]] && args+=(--include="$include")

mkdir -p "$cache"
if [[ ! -s $tarball ]]; then
    echo "debian-rootfs: no cached tarball for variant=$variant include=${include:-none}; downloading (once)"
    work=$(mktemp -d /tmp/yun-debootstrap.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    # Written beside the final name and renamed, so an interrupted run never leaves a truncated cache.
    debootstrap "${args[@]}" --make-tarball="$tarball.part" "$suite" "$work/root" "$mirror"
    mv "$tarball.part" "$tarball"
fi
mkdir -p "$target"
debootstrap "${args[@]}" --unpack-tarball="$tarball" "$suite" "$target" "$mirror"
echo "debian-rootfs: $target ready ($suite, $variant, from $tarball)"
