#!/usr/bin/env bash
# Build a Debian bookworm VM disk offline: mmdebstrap from this machine's apt sources into a
# folder, then `mkfs.ext4 -d` straight into a disk image (no loop device, no partition table,
# no boot loader: the kernel and initrd beside it are booted directly, by qemu -kernel, packer's
# qemu builder or vagrant-libvirt).  The guest has systemd, sshd, python3 (venv) and iproute2;
# root logs in with the given public key; its network comes from the kernel command line
# (`ip=ADDR::GW:MASK:HOST:eth0:none`, or `ip=eth0:dhcp`, through systemd-network-generator and
# networkd), its name servers are this machine's.  Docker's engine (and apparmor, which it
# needs under Debian's kernel) is on the disk but not enabled: the role starts it when a host
# runs the docker backend (a lab host on a private network reaches no package mirror).  Like a
# freshly built image, its apt lists are empty.
#
#   images/build-vm-disk.sh OUT_DIR PUBLIC_KEY     -> OUT_DIR/{disk.qcow2,vmlinuz,initrd.img}
#
# Idempotent: an OUT_DIR built from the same script and key is kept.
set -euo pipefail

out=${1:?usage: build-vm-disk.sh OUT_DIR PUBLIC_KEY}
pubkey=${2:?usage: build-vm-disk.sh OUT_DIR PUBLIC_KEY}
stamp=$( (cat "$0" "$pubkey") | sha256sum | cut -c1-16)
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ] && [ -f "$out/disk.qcow2" ]; then
    echo "VM disk $out/disk.qcow2 is up to date"
    exit 0
fi
mkdir -p "$out"
work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT

key=$(cat "$pubkey")
# initramfs-tools: only the modules a virtio guest needs (smaller, faster to boot)
mmdebstrap --quiet --variant=minbase \
    --include=systemd,systemd-sysv,udev,dbus,linux-image-cloud-amd64,initramfs-tools,openssh-server,python3,python3-venv,iproute2,procps,e2fsprogs,docker.io,apparmor \
    --essential-hook='mkdir -p "$1"/etc/initramfs-tools/conf.d && echo MODULES=list >"$1"/etc/initramfs-tools/conf.d/cpppo-modules' \
    --essential-hook='mkdir -p "$1"/etc/initramfs-tools && printf "virtio_pci\nvirtio_blk\nvirtio_net\next4\n" >>"$1"/etc/initramfs-tools/modules' \
    --customize-hook='echo "/dev/vda / ext4 rw,errors=remount-ro 0 1" >"$1"/etc/fstab' \
    --customize-hook='echo cpppo-lab >"$1"/etc/hostname' \
    --customize-hook='cat /etc/resolv.conf >"$1"/etc/resolv.conf' \
    --customize-hook='install -d -m 700 "$1"/root/.ssh' \
    --customize-hook="echo '$key' >\"\$1\"/root/.ssh/authorized_keys" \
    --customize-hook='chmod 600 "$1"/root/.ssh/authorized_keys' \
    --customize-hook='sed -i "s/^#\?UseDNS.*/UseDNS no/" "$1"/etc/ssh/sshd_config' \
    --customize-hook='chroot "$1" systemctl enable systemd-networkd systemd-network-generator ssh' \
    --customize-hook='chroot "$1" systemctl disable docker.service docker.socket containerd.service' \
    --customize-hook='chroot "$1" systemctl mask getty@tty1.service e2scrub_reap.service e2scrub_all.timer apt-daily.timer apt-daily-upgrade.timer' \
    --customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*' \
    bookworm "$work/root"
cp -L "$work/root/vmlinuz" "$work/vmlinuz"
cp -L "$work/root/initrd.img" "$work/initrd.img"

mkfs.ext4 -q -F -L cpppo-lab -d "$work/root" "$work/disk.raw" 3G
qemu-img convert -f raw -O qcow2 "$work/disk.raw" "$work/disk.qcow2"
mv "$work/disk.qcow2" "$work/vmlinuz" "$work/initrd.img" "$out/"
echo "$stamp" >"$out/stamp"
echo "built VM disk $out/disk.qcow2 ($(du -h "$out/disk.qcow2" | cut -f1))"
