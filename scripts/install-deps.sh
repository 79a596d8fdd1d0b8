#!/usr/bin/env bash
# Install what Yun needs to build and test on Debian 12 (run as root; also used by CI).
# Idempotent: when everything is already there it touches neither apt nor cargo.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

# Package names as dpkg knows them; qemu-utils is pinned to bookworm at install time (see below).
# Every program the tests run is listed with its package in tests/testkit/src/tools.rs, and
# tests/testkit/tests/tools_installed.rs checks that each package is here and each program on PATH.
readonly PACKAGES=(
    gcc pkg-config libvirt-dev protobuf-compiler libprotobuf-dev
    etcd-server etcd-client
    libvirt-daemon libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils
    genisoimage xorriso busybox-static cpio e2fsprogs linux-image-cloud-amd64
    qemu-block-extra tgt nfs-ganesha nfs-ganesha-vfs rpcbind
    nftables iproute2 procps kmod mount util-linux python3 curl prometheus openssl
    debootstrap ansible ansible-core ansible-lint
)

step() { echo "install-deps: $*"; }

installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

version_of() {
    dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true
}

if [[ $EUID -ne 0 ]]; then
    echo "install-deps: must run as root" >&2
    exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done

# Some base images carry qemu-utils from bookworm-backports, which conflicts with Debian's
# qemu-system-x86; both must come from the same QEMU build.
if installed qemu-utils && installed qemu-system-x86 &&
    [[ "$(version_of qemu-utils)" != "$(version_of qemu-system-x86)" ]]; then
    step "qemu-utils $(version_of qemu-utils) does not match qemu-system-x86 $(version_of qemu-system-x86)"
    missing+=(qemu-utils)
fi

if [[ ${#missing[@]} -eq 0 ]]; then
    step "apt: all ${#PACKAGES[@]} packages already installed, skipped"
else
    step "apt: missing ${missing[*]}"
    apt-get update -qq
    step "apt: package lists updated"
    # One command, so apt resolves qemu-system-x86 against the bookworm qemu-utils
    # (downgrading a backports build if present) instead of failing on the conflict.
    to_install=()
    for pkg in "${PACKAGES[@]}"; do
        if [[ "$pkg" == qemu-utils ]]; then
            to_install+=("qemu-utils/bookworm")
        else
            to_install+=("$pkg")
        fi
    done
    apt-get install -y -qq --allow-downgrades "${to_install[@]}" >/dev/null
    step "apt: installed ${missing[*]}"
fi

if cargo nextest --version >/dev/null 2>&1; then
    step "cargo-nextest: already available, skipped"
elif command -v cargo >/dev/null 2>&1; then
    cargo install cargo-nextest --locked --quiet
    step "cargo-nextest: installed"
else
    echo "install-deps: cargo not found; install the Rust toolchain (rust-toolchain.toml) first" >&2
    exit 1
fi

# Keystone (identity) for the tests and the demo: PyPI wheels in a venv, pinned.
bash "$(dirname "${BASH_SOURCE[0]}")/install-keystone.sh"
