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
# written; otherwise the build stops and names the option. runh's own kernel
# changes, hvshim/assets/kernel/patches/*.patch, are applied before.
#
# The result is cached in ${RUNH_CACHE_DIR:-/var/cache/runh}/kernel/<key>/,
# key = sha256 of the fragment, this script, the patches, the linux-source
# package version and the compiler version: a second build, or a fresh clone on the same
# machine, copies the cached kernel. OUT and the cache entry are written
# atomically (temporary directory + rename); the three newest entries are kept.
#
# Needs: make gcc bc flex bison libelf-dev libssl-dev patch linux-source-6.1
# (scripts/deps.sh installs them). About 8 minutes on 2 cores, once. The
# build reports its progress: elapsed time, files compiled out of about how
# many, time left; on a terminal in one line rewritten every 2 s, otherwise a
# line every ${RUNH_PROGRESS_INTERVAL:-30} s.
#
# build-kernel.sh --cached-only OUT: only installs the cached kernel, if there
# is one for the current key (exit 0); exits 3 without building otherwise
# (`make demo` then uses Debian's kernel instead of waiting for this build).
set -eu
cached_only=""
if [ "${1:-}" = --cached-only ]; then
	cached_only=1
	shift
fi
out=${1:?usage: build-kernel.sh [--cached-only] OUT}
here=$(cd "$(dirname "$0")" && pwd)
frag=${RUNH_KERNEL_CONFIG:-$here/kernel/guest.config}
src=${RUNH_KERNEL_SOURCE:-/usr/src/linux-source-6.1.tar.xz}
pkg=linux-source-6.1
cache=${RUNH_CACHE_DIR:-/var/cache/runh}/kernel

tmp="" entry="" new="" kpid=""
trap '[ -z "$kpid" ] || kill "$kpid" 2>/dev/null; rm -rf ${tmp:+"$tmp"} ${entry:+"$entry"} ${new:+"$new"}' EXIT
trap 'exit 130' INT TERM HUP

die() {
	echo "build-kernel: $*" >&2
	exit 1
}

[ -r "$frag" ] || die "no config fragment $frag"
if [ ! -r "$src" ]; then
	[ -z "$cached_only" ] || exit 3
	die "$src missing: install $pkg (scripts/deps.sh does)"
fi
pkgver=$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null) || pkgver=unknown
ccver=$(gcc --version 2>/dev/null | head -n1) || ccver=unknown
key=$({
	echo "fragment"
	cat "$frag"
	echo "script"
	cat "$0"
	for p in "$here"/kernel/patches/*.patch; do
		[ -e "$p" ] || continue
		echo "patch $(basename "$p")"
		cat "$p"
	done
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

if [ -s "$cache/$key/vmlinux" ] || { [ "$(cat "$out/cachekey" 2>/dev/null)" = "$key" ] && [ -s "$out/vmlinux" ]; }; then
	install_to "$out"
	exit 0
fi
[ -z "$cached_only" ] || exit 3

# mmss SECONDS: "4m05s".
mmss() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# progress PID LOG TOTAL: while PID runs, reports the time since $start and,
# if TOTAL > 0, how many of the about TOTAL steps kbuild has logged to LOG
# (its quiet "  CC      kernel/fork.o" lines) and the time left at that pace.
progress() {
	every=${RUNH_PROGRESS_INTERVAL:-30} t0=$(date +%s) line=""
	last=$t0
	while kill -0 "$1" 2>/dev/null; do
		sleep 2
		now=$(date +%s)
		line="build-kernel: $(mmss $((now - start)))"
		if [ "$3" -gt 0 ]; then
			n=$(grep -c '^  [A-Z]' "$2" 2>/dev/null) || n=0
			pct=$((n * 100 / $3))
			[ "$pct" -le 99 ] || pct=99
			line="$line, $n of about $3 steps ($pct%)"
			if [ "$pct" -ge 5 ] && [ "$n" -lt "$3" ]; then
				line="$line, about $(mmss $(((now - t0) * ($3 - n) / n))) left"
			fi
		fi
		if [ -t 1 ]; then
			printf '\r%s   ' "$line"
		elif [ $((now - last)) -ge "$every" ]; then
			echo "$line"
			last=$now
		fi
	done
	if [ -t 1 ] && [ -n "$line" ]; then echo; fi
}

mkdir -p "$cache"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/runh-kernel.XXXXXX")
start=$(date +%s)
echo "build-kernel: runh's guest kernel is not built or cached yet: building it (about 8 minutes on 2 cores, once; then cached in $cache)"
echo "build-kernel: extracting $src ($pkg $pkgver)"
tar -xJf "$src" -C "$tmp" &
kpid=$!
progress "$kpid" /dev/null 0
wait "$kpid" || die "extracting $src failed"
kpid=""
echo "build-kernel: extracted in $(mmss $(($(date +%s) - start)))"
ksrc=$(find "$tmp" -mindepth 1 -maxdepth 1 -type d | head -n1)
[ -n "$ksrc" ] || die "nothing extracted from $src"
# runh's own changes to the kernel (kernel/patches/README), in name order.
for p in "$here"/kernel/patches/*.patch; do
	[ -e "$p" ] || continue
	patch -s -p1 -d "$ksrc" --no-backup-if-mismatch <"$p" || die "patch $(basename "$p") does not apply to $pkg $pkgver"
	echo "build-kernel: applied $(basename "$p")"
done

# Reproducible identification inside the guest (uname -v).
export KBUILD_BUILD_USER=runh KBUILD_BUILD_HOST=runh \
	KBUILD_BUILD_TIMESTAMP="$pkg $pkgver"
kmake() { make -C "$ksrc" ARCH=x86_64 "$@"; }

# Merge: drop the fragment's symbols from the base, append the fragment (as
# scripts/kconfig/merge_config.sh -m does), let Kconfig resolve the rest.
# Kconfig's own messages (the fragment overriding tinyconfig's choices) go
# to a log, shown if it fails.
syms=$(sed -n 's/^\(CONFIG_[A-Za-z0-9_]*\)=.*/\1/p' "$frag")
[ -n "$syms" ] || die "$frag sets nothing"
echo "build-kernel: configuring: tinyconfig + $frag"
(
	set -e
	kmake -s tinyconfig
	for s in $syms; do
		sed -i -e "/^$s=/d" -e "/^# $s is not set\$/d" "$ksrc/.config"
	done
	grep '^CONFIG_' "$frag" >>"$ksrc/.config"
	kmake -s olddefconfig
) >"$tmp/config.log" 2>&1 &
kpid=$!
progress "$kpid" /dev/null 0
wait "$kpid" || {
	kpid=""
	cat "$tmp/config.log" >&2
	die "configuration failed"
}
kpid=""

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

# The number of steps of the last build (any key) is the best estimate of
# this one's; the fallback is this fragment's count on linux-source 6.1.
steps=$(cat "$(ls -1t "$cache"/*/steps 2>/dev/null | head -n1)" 2>/dev/null) || steps=""
case $steps in '' | *[!0-9]*) steps=1930 ;; esac
echo "build-kernel: configured; building vmlinux with $(nproc) jobs ($(mmss $(($(date +%s) - start))) so far)"
kmake -j"$(nproc)" vmlinux >"$tmp/build.log" 2>&1 &
kpid=$!
progress "$kpid" "$tmp/build.log" "$steps"
wait "$kpid" || {
	kpid=""
	tail -n 40 "$tmp/build.log" >&2
	die "kernel build failed after $(mmss $(($(date +%s) - start)))"
}
kpid=""
# QEMU boots an ELF vmlinux through its PVH entry point (Xen ELF note 0x12).
readelf -n "$ksrc/vmlinux" | grep -q '0x00000012' || die "vmlinux has no PVH note (CONFIG_PVH?)"

entry=$(mktemp -d "$cache/.new.XXXXXX")
cp "$ksrc/vmlinux" "$entry/vmlinux"
cp "$ksrc/.config" "$entry/config"
kmake -s kernelrelease >"$entry/version"
echo runh >"$entry/flavor"
echo "$key" >"$entry/cachekey"
grep -c '^  [A-Z]' "$tmp/build.log" >"$entry/steps" || true
chmod 0755 "$entry"
if mv -T "$entry" "$cache/$key" 2>/dev/null; then
	entry=""
fi # else another build won the race: use its entry, ours is removed on exit
echo "build-kernel: built $(cat "$cache/$key/version") in $(mmss $(($(date +%s) - start))), $(du -k "$cache/$key/vmlinux" | cut -f1) KiB"
# Keep the three newest builds (other checkouts may use older keys).
ls -1td "$cache"/*/ 2>/dev/null | tail -n +4 | while read -r d; do rm -rf "$d"; done
install_to "$out"
