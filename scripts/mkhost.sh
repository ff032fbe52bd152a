#!/bin/sh
# mkhost.sh: prints the directory of a Debian 13 (trixie) test host, built
# once with debootstrap from the Debian archive the host's apt sources name and
# cached in ${RUNH_CACHE_DIR:-/var/cache/runh}/hosts/<key>/ (key: suite,
# package list, mirror and this script); a second call returns at once.
# scripts/hosttest.sh boots it with QEMU (docs/hosts.md). The directory holds:
#   disk.img     raw ext4 root filesystem (made with mkfs.ext4 -d, sparse);
#                boot it through a copy-on-write overlay, never directly
#   vmlinuz      Debian 13's kernel (linux-image-amd64, installed in the image,
#                never on this host) and initrd.img (initramfs-tools, with
#                virtio_blk and ext4), booted with root=/dev/vda
#   version      the kernel release; packages: dpkg -l of the image
# The image boots systemd as PID 1 on cgroup v2 (trixie's default) and has
# podman, containerd, Docker, runc and QEMU from Debian 13. A unit,
# runh-hostagent.service, mounts the 9p share tagged "tests" on /srv/tests,
# runs /srv/tests/run.sh (output in /srv/tests/agent.log) and powers off:
# that is how the host drives it, no network, no login.
set -eu
suite=${RUNH_HOST_SUITE:-trixie}
# docker.io (and docker-cli, its client, which it only recommends) and
# containerd are installed but not enabled (boot time under TCG); a suite
# starts them when it needs them. containerd's CRI needs the
# CNI plugins, Docker's bridge iptables; rootless podman needs uidmap's
# newuidmap, slirp4netns or passt (pasta) and a user session's bus
# (dbus-user-session); systemd-container's `systemd-run --machine` runs a
# command in that session.
pkgs=${RUNH_HOST_PKGS:-systemd,systemd-sysv,dbus,udev,kmod,procps,iproute2,linux-image-amd64,initramfs-tools,busybox-static,runc,podman,conmon,containerd,docker.io,docker-cli,qemu-system-x86,containernetworking-plugins,iptables,uidmap,slirp4netns,passt,dbus-user-session,systemd-container}
size=${RUNH_HOST_DISK_SIZE:-8G}
cache=${RUNH_CACHE_DIR:-/var/cache/runh}/hosts

mirror=${RUNH_HOST_MIRROR:-$( (grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'; \
	grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}') | grep -v security | head -n1)}
[ -n "$mirror" ] || { echo "mkhost: no Debian archive in the host's apt sources" >&2; exit 1; }
key=$( { printf '%s %s %s %s\n' "$suite" "$pkgs" "$mirror" "$size"; cat "$0"; } | sha256sum | cut -c1-16)
out=$cache/$suite-$key
if [ -s "$out/disk.img" ] && [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ]; then
	echo "$out"
	exit 0
fi
for tool in debootstrap:debootstrap mkfs.ext4:e2fsprogs; do
	command -v "${tool%%:*}" >/dev/null || DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends "${tool#*:}" >/dev/null
done
mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.$suite-$key.XXXXXX")
cleanup() {
	# debootstrap may leave its chroot's pseudo-filesystems mounted when it fails.
	for m in $(awk -v p="$tmp/" 'index($2, p) == 1 {print $2}' /proc/self/mounts | sort -r); do
		umount -l "$m" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
start=$(date +%s)
root=$tmp/root
echo "mkhost: debootstrap $suite from $mirror (once; several minutes)" >&2
# Timed: a stalled mirror must not hang make.
timeout ${RUNH_HOST_BUILD_TIMEOUT:-2400} debootstrap --variant=minbase --include="$pkgs" \
	--keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
	"$suite" "$root" "$mirror" >"$tmp/debootstrap.log" 2>&1 || {
	tail -n 30 "$tmp/debootstrap.log" >&2
	echo "mkhost: debootstrap failed (log above)" >&2
	exit 1
}

echo runh-testhost >"$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 runh-testhost\n' >"$root/etc/hosts"
printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' >"$root/etc/fstab"
printf 'deb %s %s main\n' "$mirror" "$suite" >"$root/etc/apt/sources.list"
# No password, no login: the agent below is the way in (and the serial
# console's getty, for debugging by hand with an interactive boot).
sed -i 's/^root:[^:]*:/root::/' "$root/etc/shadow"

mkdir -p "$root/srv/tests" "$root/usr/local/sbin"
cat >"$root/usr/local/sbin/runh-hostagent" <<'AGENT'
#!/bin/sh
# Runs the host's /srv/tests/run.sh once, then powers the machine off.
# The share's virtio device may not be bound yet (udev loads 9pnet_virtio
# by its alias): load it, and retry for a minute.
i=0
until mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 tests /srv/tests 2>/dev/null; do
	modprobe -q 9pnet_virtio 2>/dev/null
	i=$((i + 1))
	if [ $i -ge 60 ]; then
		echo "runh-hostagent: cannot mount the tests share" >/dev/console
		systemctl poweroff
		exit 1
	fi
	sleep 1
done
if [ -x /srv/tests/run.sh ]; then
	echo "runh-hostagent: running /srv/tests/run.sh" >/dev/console
	/srv/tests/run.sh >/srv/tests/agent.log 2>&1
	echo "rc=$?" >/srv/tests/agent.done
fi
sync
systemctl poweroff
AGENT
chmod 0755 "$root/usr/local/sbin/runh-hostagent"
cat >"$root/etc/systemd/system/runh-hostagent.service" <<'UNIT'
[Unit]
Description=runh test host agent (runs /srv/tests/run.sh from the host, then powers off)
After=multi-user.target dbus.service
Wants=dbus.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/runh-hostagent
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/runh-hostagent.service \
	"$root/etc/systemd/system/multi-user.target.wants/runh-hostagent.service"
# Boot time under TCG: what the suites do not need stays off.
for u in docker.service docker.socket containerd.service apt-daily.timer apt-daily-upgrade.timer \
	dpkg-db-backup.timer e2scrub_all.timer fstrim.timer podman-auto-update.timer podman-restart.service \
	podman-clean-transient.service systemd-timesyncd.service; do
	rm -f "$root"/etc/systemd/system/*.wants/"$u"
done

chroot "$root" dpkg -l >"$tmp/packages" 2>/dev/null || true
vmlinuz=$(ls "$root"/boot/vmlinuz-* | sort -V | tail -n1)
initrd=$(ls "$root"/boot/initrd.img-* 2>/dev/null | sort -V | tail -n1)
[ -n "$initrd" ] || { echo "mkhost: no initrd in the image (initramfs-tools)" >&2; exit 1; }
cp "$vmlinuz" "$tmp/vmlinuz"
cp "$initrd" "$tmp/initrd.img"
echo "${vmlinuz##*/vmlinuz-}" >"$tmp/version"
rm -f "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin
rm -rf "$root"/var/lib/apt/lists/*_Packages

mkfs.ext4 -q -F -L runh-host -d "$root" "$tmp/disk.img" "$size" >/dev/null || {
	echo "mkhost: mkfs.ext4 -d failed" >&2
	exit 1
}
rm -rf "$root"
mkdir -p "$out.new"
mv "$tmp/disk.img" "$tmp/vmlinuz" "$tmp/initrd.img" "$tmp/version" "$tmp/packages" "$out.new/"
rm -rf "$out" && mv "$out.new" "$out"
echo "mkhost: $out ($(cat "$out/version")) in $(($(date +%s) - start)) s" >&2
echo "$out"
