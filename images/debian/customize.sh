#!/bin/sh
# Runs inside the chroot of the freshly debootstrapped root (images/debian/build.sh copies it to
# /.yun-image/ and runs it with /proc mounted). Turns the root into the template:
# services, initramfs, the GRUB boot images, then removes what must not be baked in (host keys,
# machine id, logs, caches) and what only takes space (docs, manuals, translations, GRUB).
# Leaves core.img and boot.img in /.yun-image/ for build.sh to put on the disk (and then remove).
set -eu

export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 PATH=/usr/sbin:/usr/bin:/sbin:/bin
WORK=/.yun-image
: "${SOURCE_DATE_EPOCH:?}"
# The modules GRUB needs to reach /boot/grub/grub.cfg and boot Linux from it, plus the commands
# an operator editing grub.cfg is likely to reach for. All are inside core.img: /boot/grub holds
# no modules.
GRUB_MODULES="biosdisk part_msdos ext2 normal configfile linux serial terminal echo test
    search search_fs_uuid search_label ls cat sleep halt reboot"

# --- services --------------------------------------------------------------------------------

# cloud-init renders the network config for netplan, which hands it to systemd-networkd.
systemctl enable systemd-networkd.service >/dev/null 2>&1
# A login prompt on the serial console even if the kernel command line is changed.
systemctl enable serial-getty@ttyS0.service >/dev/null 2>&1
# /etc/resolv.conf follows systemd-resolved (debootstrap copied the build host's file).
ln -sf ../run/systemd/resolve/stub-resolv.conf /etc/resolv.conf

# --- initramfs and GRUB ----------------------------------------------------------------------

# Rebuilt with SOURCE_DATE_EPOCH set (mkinitramfs then writes a reproducible archive) and the
# image's conf.d (no resume device).
update-initramfs -u -k all >/dev/null

# core.img goes right after the MBR (sector 1): GRUB's boot.img loads it from there, and
# grub-mkimage already wrote its length into it, so no grub-install/grub-bios-setup is needed.
# shellcheck disable=SC2086 # GRUB_MODULES is a word list
grub-mkimage -O i386-pc -o "$WORK/core.img" -p '(hd0,msdos1)/boot/grub' $GRUB_MODULES
cp /usr/lib/grub/i386-pc/boot.img "$WORK/boot.img"

# GRUB's packages were only needed for the above. Mark what they pulled in as automatically
# installed so the purge takes along exactly what nothing else in the image depends on.
grub_closure=$(apt-cache depends --recurse --installed --no-recommends --no-suggests \
    --no-conflicts --no-breaks --no-replaces --no-enhances grub-pc-bin | grep -v '^[ <]' | sort -u)
# shellcheck disable=SC2086 # a list of package names
apt-mark auto $grub_closure >/dev/null
apt-get purge -y -q -o Dpkg::Use-Pty=0 --autoremove grub-pc-bin grub-common >/dev/null

# --- what must not be baked into a template --------------------------------------------------

# Every VM makes its own SSH host keys on first boot (cloud-init's ssh module).
rm -f /etc/ssh/ssh_host_*
# Empty (not absent): systemd then treats the first boot as such and makes a new id.
: >/etc/machine-id
rm -f /var/lib/dbus/machine-id /var/lib/systemd/random-seed /var/lib/systemd/credential.secret
rm -rf /var/lib/cloud/* /var/lib/dhcp/*
# No account may have a password: root is locked ('*'), users come from cloud-init.
usermod -p '*' root

# --- space -----------------------------------------------------------------------------------

apt-get clean
rm -rf /var/lib/apt/lists/*
mkdir -p /var/lib/apt/lists/partial
rm -f /var/cache/debconf/*-old /var/lib/dpkg/*-old /etc/*- /etc/.pwd.lock
# ldconfig's auxiliary cache records inode numbers and change times of this build (it is only a
# speed-up; ldconfig rebuilds it): the one file that kept two builds from being identical.
rm -f /var/cache/ldconfig/aux-cache
find /var/log -type f -delete
rm -rf /tmp/* /var/tmp/* /root/.bash_history /root/.cache
# Manuals, info pages, translations and docs except copyright files; the dpkg.cfg.d file from
# the overlay keeps packages installed later from bringing them back.
rm -rf /usr/share/man/* /usr/share/info/* /usr/share/lintian/*
find /usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
find /usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete
find /usr/share/doc -mindepth 1 -type d -empty -delete
