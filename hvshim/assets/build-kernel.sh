#!/bin/sh
# build-kernel.sh OUT: builds runh's own guest kernel and writes OUT:
#   vmlinux   the kernel, an ELF with the PVH note (QEMU boots it with -kernel)
#   version   the kernel release
#   config    the final .config
#   flavor    "runh" (hvshim/assets tells it from Debian's kernel by this file)
#   cachekey  the key below
# No modules: everything the guest needs is built in.
#
# Source: Debian's linux-source-6.1 package (/usr/src/linux-source-6.1.tar.xz),
# extracted into a temporary directory, `make ARCH=x86_64 tinyconfig`, then
# the fragment hvshim/assets/kernel/guest.config merged on top and
# `make olddefconfig`. Every option the fragment sets must end up set as
# written; otherwise the build stops and names the option.
#
# The result is cached in ${RUNH_CACHE_DIR:-/var/cache/runh}/kernel/<key>/,
# key = sha256 of the fragment, this script, the linux-source package version
# and the compiler version: a second build, or a fresh clone on the same
# machine, copies the cached kernel. OUT and the cache entry are written
# atomically (temporary directory + rename); the three newest entries are kept.
#
# Needs: make gcc bc flex bison libelf-dev libssl-dev linux-source-6.1
# (scripts/deps.sh installs them). About 8 minutes on 2 cores, once.
set -eu
out=${1:?usage: build-kernel.sh OUT}
here=$(cd "$(dirname "$0")" && pwd)
frag=${RUNH_KERNEL_CONFIG:-$here/kernel/guest.config}
src=${RUNH_KERNEL_SOURCE:-/usr/src/linux-source-6.1.tar.xz}
pkg=linux-source-6.1
cache=${RUNH_CACHE_DIR:-/var/cache/runh}/kernel

tmp="" entry="" new=""
trap 'rm -rf ${tmp:+"$tmp"} ${entry:+"$entry"} ${new:+"$new"}' EXIT
trap 'exit 130' INT TERM HUP

die() {
	echo "build-kernel: $*" >&2
	exit 1
}

[ -r "$frag" ] || die "no config fragment $frag"
[ -r "$src" ] || die "$src missing: install $pkg (scripts/deps.sh does)"
pkgver=$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null) || pkgver=unknown
ccver=$(gcc --version 2>/dev/null | head -n1) || ccver=unknown
key=$({
	echo "fragment"
	cat "$frag"
	echo "script"
	cat "$0"
	echo "source $pkg $pkgver $(stat -c %s "$src")"
	echo "cc $ccver"
} | sha256sum | cut -c1-32)

# install_to DIR: copies the cache entry to DIR atomically.
install_to() {
	dst=$1
	if [ "$(cat "$dst/cachekey" 2>/dev/null)" = "$key" ] && [ -s "$dst/vmlinux" ]; then
		echo "build-kernel: $dst is up to date ($(cat "$dst/version"))"
		return 0
	fi
	mkdir -p "$(dirname "$dst")"
	new=$(mktemp -d "$dst.new.XXXXXX")
	cp "$cache/$key"/* "$new/"
	chmod 0755 "$new"
	rm -rf "$dst.old"
	[ ! -e "$dst" ] || mv "$dst" "$dst.old"
	mv "$new" "$dst"
	new=""
	rm -rf "$dst.old"
	echo "build-kernel: $(cat "$dst/version") in $dst (cached as $cache/$key)"
}

if [ -s "$cache/$key/vmlinux" ]; then
	install_to "$out"
	exit 0
fi

mkdir -p "$cache"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/runh-kernel.XXXXXX")
start=$(date +%s)
echo "build-kernel: extracting $src ($pkg $pkgver)"
tar -xJf "$src" -C "$tmp"
ksrc=$(find "$tmp" -mindepth 1 -maxdepth 1 -type d | head -n1)
[ -n "$ksrc" ] || die "nothing extracted from $src"

# Reproducible identification inside the guest (uname -v).
export KBUILD_BUILD_USER=runh KBUILD_BUILD_HOST=runh \
	KBUILD_BUILD_TIMESTAMP="$pkg $pkgver"
kmake() { make -C "$ksrc" ARCH=x86_64 "$@"; }

kmake -s tinyconfig >/dev/null
# Merge: drop the fragment's symbols from the base, append the fragment (as
# scripts/kconfig/merge_config.sh -m does), let Kconfig resolve the rest.
syms=$(sed -n 's/^\(CONFIG_[A-Za-z0-9_]*\)=.*/\1/p' "$frag")
[ -n "$syms" ] || die "$frag sets nothing"
for s in $syms; do
	sed -i -e "/^$s=/d" -e "/^# $s is not set\$/d" "$ksrc/.config"
done
grep '^CONFIG_' "$frag" >>"$ksrc/.config"
kmake -s olddefconfig >/dev/null

# Every option set as asked, or the build stops naming the ones that were not.
bad=""
for line in $(grep '^CONFIG_' "$frag" | tr -d ' '); do
	s=${line%%=*}
	v=${line#*=}
	if [ "$v" = n ]; then
		got=$(grep "^$s=" "$ksrc/.config" || true)
		[ -z "$got" ] || bad="$bad\n  $s=n wanted, .config has $got"
	elif ! grep -qxF "$line" "$ksrc/.config"; then
		got=$(grep -E "^$s=|^# $s is not set" "$ksrc/.config" || echo "nothing")
		bad="$bad\n  $line wanted, .config has $got"
	fi
done
[ -z "$bad" ] || die "$(printf "options not set as $frag asks (missing dependency?):$bad")"

echo "build-kernel: building vmlinux with $(nproc) jobs"
kmake -s -j"$(nproc)" vmlinux >"$tmp/build.log" 2>&1 || {
	tail -n 40 "$tmp/build.log" >&2
	die "kernel build failed"
}
# QEMU boots an ELF vmlinux through its PVH entry point (Xen ELF note 0x12).
readelf -n "$ksrc/vmlinux" | grep -q '0x00000012' || die "vmlinux has no PVH note (CONFIG_PVH?)"

entry=$(mktemp -d "$cache/.new.XXXXXX")
cp "$ksrc/vmlinux" "$entry/vmlinux"
cp "$ksrc/.config" "$entry/config"
kmake -s kernelrelease >"$entry/version"
echo runh >"$entry/flavor"
echo "$key" >"$entry/cachekey"
chmod 0755 "$entry"
if mv -T "$entry" "$cache/$key" 2>/dev/null; then
	entry=""
fi # else another build won the race: use its entry, ours is removed on exit
echo "build-kernel: built $(cat "$cache/$key/version") in $(($(date +%s) - start)) s, $(du -k "$cache/$key/vmlinux" | cut -f1) KiB"
# Keep the three newest builds (other checkouts may use older keys).
ls -1td "$cache"/*/ 2>/dev/null | tail -n +4 | while read -r d; do rm -rf "$d"; done
install_to "$out"
