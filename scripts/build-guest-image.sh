#!/usr/bin/env bash
# Build the Debian guest image Lima boots on a Linux host (vm_type: qemu), from Debian's packages.
#
# Why build one: the Linux test bed and a Linux homelab reach Debian's mirror but no cloud image
# download, and under TCG (no usable KVM) Lima's guest agent comes up too late unless it is
# already in the image. So: debootstrap Debian 12 with cloud-init (Lima's NoCloud cidata drives
# it), openssh-server, sudo, netplan (the toolkit's provisioning writes a netplan file) and the
# cloud kernel; bake in Lima's guest agent and its systemd unit; make the ext4 file system
# straight from the directory (`mkfs.ext4 -d`: no loop device, no mount) and convert it to
# qcow2. There is no boot loader: Lima boots the kernel and initrd next to the disk directly.
#
# Cached by its inputs (this script, the suite, the guest agent binary) under
# $HOMELAB_CACHE_DIR/images/<hash>/; a warm cache only prints the directory.
# Needs root (debootstrap, chroot) and debootstrap, qemu-utils, e2fsprogs.
#
# Usage: scripts/build-guest-image.sh   (prints the image directory as its last line)
set -euo pipefail

SUITE="${GUEST_SUITE:-bookworm}"
MIRROR="${GUEST_MIRROR:-http://deb.debian.org/debian}"
ROOTFS_SIZE="${GUEST_ROOTFS_SIZE:-3G}"
PACKAGES=sqlite3,systemd-sysv,udev,dbus,openssh-server,sudo,linux-image-cloud-amd64,iproute2,iputils-ping,ca-certificates,curl,python3-cffi-backend,netplan.io,systemd-resolved,e2fsprogs,cloud-guest-utils,procps,less

CACHE_DIR="${HOMELAB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/homelab}"
OWNER=""
# Run with sudo (as docs/getting-started/linux-host.md says): the image goes into the cache of the user who ran sudo, where
# their get-binaries put Lima's guest agent and where their Lima reads it, not into root's (sudo
# sets HOME to /root, which Lima, run as that user, cannot read); and it is theirs.
if [[ -z ${HOMELAB_CACHE_DIR:-} && -n ${SUDO_USER:-} && $SUDO_USER != root && $(id -u) -eq 0 ]]; then
    OWNER=$SUDO_USER
    CACHE_DIR="$(getent passwd "$OWNER" | cut -d: -f6)/.cache/homelab"
fi
AGENT="$CACHE_DIR/share/lima/lima-guestagent.Linux-x86_64"

say() { printf '[guest-image] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

[[ -x "$AGENT" ]] || die "Lima's guest agent is missing at $AGENT: run scripts/get-binaries.sh lima first"
for tool in debootstrap qemu-img mkfs.ext4 chroot; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing: apt-get install debootstrap qemu-utils e2fsprogs"
done
[[ $(id -u) -eq 0 ]] || die "debootstrap needs root: run it with sudo"

key=$({ cat "$0"; echo "$SUITE $MIRROR $ROOTFS_SIZE $PACKAGES"; sha256sum <"$AGENT"; } | sha256sum | cut -c1-16)
OUT="$CACHE_DIR/images/debian-$SUITE-x86_64-$key"
if [[ -f "$OUT/disk.qcow2" && -f "$OUT/vmlinuz" && -f "$OUT/initrd.img" ]]; then
    say "cached: $OUT"
    echo "$OUT"
    exit 0
fi

start=$SECONDS
WORK=$(mktemp -d "$CACHE_DIR/images/.build-XXXXXX" 2>/dev/null || { mkdir -p "$CACHE_DIR/images" && mktemp -d "$CACHE_DIR/images/.build-XXXXXX"; })
trap 'rm -rf -- "$WORK"' EXIT
ROOT="$WORK/rootfs"

say "debootstrap $SUITE (first time only; a few minutes)"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log above)"; }

# cloud-init separately: debootstrap cannot resolve python3-cryptography's virtual dependency.
in_root() { chroot "$ROOT" /usr/bin/env DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"; }
mount_pseudo() { mount -t proc proc "$ROOT/proc" && mount -t sysfs sys "$ROOT/sys"; }
umount_pseudo() { umount "$ROOT/proc" "$ROOT/sys" 2>/dev/null || true; }
trap 'umount_pseudo; rm -rf -- "$WORK"' EXIT
mount_pseudo
echo "deb $MIRROR $SUITE main" >"$ROOT/etc/apt/sources.list"
rm -f "$ROOT/etc/resolv.conf" && cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" # the host's resolver, while building
in_root apt-get update -qq
in_root apt-get install -y -qq --no-install-recommends cloud-init >"$WORK/cloud-init.log" 2>&1 ||
    { tail -20 "$WORK/cloud-init.log" >&2; die "installing cloud-init failed (log above)"; }
in_root apt-get clean
umount_pseudo
ln -sf ../run/systemd/resolve/stub-resolv.conf "$ROOT/etc/resolv.conf" # the guest's own resolver

# Only the NoCloud datasource (Lima's cidata): no minutes lost probing cloud metadata services.
printf 'datasource_list: [ NoCloud, None ]\nlocale: C.UTF-8\n' >"$ROOT/etc/cloud/cloud.cfg.d/90-homelab-nocloud.cfg"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts" # Lima's boot edits it
printf 'LABEL=homelab-root / ext4 defaults,discard 0 1\n' >"$ROOT/etc/fstab"
: >"$ROOT/etc/machine-id" # a fresh machine id per VM, made at its first boot
rm -f "$ROOT"/etc/ssh/ssh_host_*  # host keys are made per VM at its first boot
in_root systemctl enable systemd-networkd systemd-resolved ssh >/dev/null 2>&1
# The first NIC by DHCP until cloud-init's netplan (10-netplan-*, read first) takes over; the
# homelab address is added by provisioning.
cat >"$ROOT/etc/systemd/network/90-lima-eth0.network" <<'EOF'
[Match]
Name=eth0

[Network]
DHCP=ipv4
EOF
# SSH host keys generated before sshd starts when missing (cloud-init also does, later).
mkdir -p "$ROOT/etc/systemd/system/ssh.service.d"
printf '[Service]\nExecStartPre=/usr/bin/ssh-keygen -A\n' >"$ROOT/etc/systemd/system/ssh.service.d/10-host-keys.conf"

# Lima's guest agent, baked in and started by systemd like Lima's own `install-systemd` unit.
install -m 0755 "$AGENT" "$ROOT/usr/local/bin/lima-guestagent"
cat >"$ROOT/etc/systemd/system/lima-guestagent.service" <<'EOF'
[Unit]
Description=lima-guestagent

[Service]
ExecStart=/usr/local/bin/lima-guestagent daemon
Type=simple
Restart=on-failure
OOMPolicy=continue
OOMScoreAdjust=-500

[Install]
WantedBy=multi-user.target
EOF
in_root systemctl enable lima-guestagent >/dev/null 2>&1

cp "$ROOT"/boot/vmlinuz-* "$WORK/vmlinuz"
cp "$ROOT"/boot/initrd.img-* "$WORK/initrd.img"
say "file system from the directory (mkfs.ext4 -d: no loop device)"
truncate -s "$ROOTFS_SIZE" "$WORK/disk.raw"
mkfs.ext4 -q -L homelab-root -d "$ROOT" "$WORK/disk.raw"
qemu-img convert -f raw -O qcow2 -c "$WORK/disk.raw" "$WORK/disk.qcow2"
mkdir -p "$OUT"
mv "$WORK/disk.qcow2" "$WORK/vmlinuz" "$WORK/initrd.img" "$OUT/"
chmod 0644 "$OUT"/*
for old in "$CACHE_DIR/images/debian-$SUITE-x86_64-"*; do # older builds: VMs made from them keep their own copy
    [[ "$old" == "$OUT" ]] || rm -rf -- "$old"
done
[[ -z $OWNER ]] || chown -R "$OWNER": "$CACHE_DIR/images"
say "built in $((SECONDS - start))s: $OUT"
echo "$OUT"
