#!/bin/sh
# mkdebian.sh: prints the path of a Debian 12 minbase root filesystem with
# python3, sqlite3 and the network tools of privileged containers (iproute2,
# iptables, nftables, bridge-utils, kmod), built with debootstrap from the
# archive the host's apt sources name, and cached in ${RUNH_CACHE_DIR:-/var/cache/runh}/rootfs/ by a
# key of the package list and mirror (a second call returns at once). The
# tests that run a real userland in both isolation modes use it read-only.
set -eu
suite=${RUNH_DEBIAN_SUITE:-bookworm}
pkgs=${RUNH_DEBIAN_PKGS:-python3,sqlite3,iproute2,iptables,nftables,bridge-utils,kmod}
cache=${RUNH_CACHE_DIR:-/var/cache/runh}/rootfs

# The first deb.debian.org-style URI of the host's sources (deb822 or list).
mirror=$( (grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'; \
	grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}') | grep -v security | head -n1)
[ -n "$mirror" ] || { echo "mkdebian: no Debian archive in the host's apt sources" >&2; exit 1; }
key=$(printf '%s %s %s\n' "$suite" "$pkgs" "$mirror" | sha256sum | cut -c1-16)
out=$cache/debian-$key
if [ -x "$out/usr/bin/python3" ]; then
	echo "$out"
	exit 0
fi
command -v debootstrap >/dev/null || {
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
}
mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.debian-$key.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
echo "mkdebian: debootstrap $suite ($pkgs) from $mirror, a few minutes once" >&2
debootstrap --variant=minbase --include="$pkgs" "$suite" "$tmp/root" "$mirror" >"$tmp.log" 2>&1 || {
	tail -n 20 "$tmp.log" >&2
	rm -f "$tmp.log"
	exit 1
}
rm -f "$tmp.log"
rm -rf "$tmp/root/var/cache/apt/archives"/*.deb
mv "$tmp/root" "$out"
echo "mkdebian: $out in $(($(date +%s) - start)) s" >&2
echo "$out"
