#!/bin/sh
# deps.sh [demo]: installs what runh needs on Debian 12, as root. Only missing
# packages are installed, so a second run costs nothing.
#
#   deps.sh        everything to build and test, runh's own guest kernel
#                  included (`make deps`, `make test`)
#   deps.sh demo   only what `make demo` needs: the compiler and libseccomp
#                  for bin/runh, busybox for the bundle, QEMU, and the tools
#                  that unpack Debian's kernel package (no linux-source-6.1:
#                  the demo's first VM boots Debian's kernel)
#
# RUNH_EXTRA_PKGS adds packages (the engines, the benchmarks' runtimes).
#
# QEMU: Debian 12's QEMU 7.2 cannot create unix sockets or FIFOs on a 9p
# share (its CVE-2023-2861 fix refuses them with ENXIO), which breaks
# PostgreSQL, MariaDB, Redis and any pipeline through a named pipe in a VM
# container. On Debian 12 QEMU therefore comes from bookworm-backports
# (QEMU 10.0): an apt source for that suite is added with a pin that keeps
# every other package on bookworm unless QEMU needs it. A host whose QEMU is
# 8.1 or newer already (Debian 13) is left as it is; RUNH_QEMU_BACKPORTS=0
# keeps Debian 12's QEMU (runh works; `runh check` says what is missing).
set -eu
demo="gcc make libc6-dev libseccomp-dev pkg-config busybox-static qemu-system-x86 xz-utils binutils"
case ${1:-all} in
demo) pkgs=$demo ;;
all) pkgs="$demo procps iproute2 util-linux bc flex bison libelf-dev libssl-dev patch linux-source-6.1" ;;
*)
	echo "usage: deps.sh [demo|all]" >&2
	exit 2
	;;
esac
pkgs="$pkgs ${RUNH_EXTRA_PKGS:-}"
# qemu_backports: on Debian 12 without a QEMU of 8.1 or newer, adds the
# bookworm-backports source and pin (see above) and says so (exit 0).
qemu_backports() {
	[ "${RUNH_QEMU_BACKPORTS:-1}" != 0 ] || return 1
	. /etc/os-release
	[ "${VERSION_CODENAME:-}" = bookworm ] || return 1
	v=$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null) || v=""
	[ -z "$v" ] || ! dpkg --compare-versions "$v" ge 1:8.1 || return 1
	src=/etc/apt/sources.list.d/runh-bookworm-backports.sources
	pin=/etc/apt/preferences.d/runh-bookworm-backports
	if [ ! -e "$src" ] && ! grep -rqs '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
		cat >"$src.tmp" <<-EOS
			# Added by runh's scripts/deps.sh: QEMU 10.0 (unix sockets and FIFOs on 9p).
			Types: deb
			URIs: http://deb.debian.org/debian
			Suites: bookworm-backports
			Components: main
			Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
		EOS
		mv "$src.tmp" "$src"
	fi
	# Backports are never chosen by themselves (priority 100, as Debian
	# sets them), except QEMU's own packages and its firmware, so that
	# upgrades follow that suite.
	cat >"$pin.tmp" <<-EOS
		# Added by runh's scripts/deps.sh: QEMU from bookworm-backports, nothing else.
		Package: *
		Pin: release n=bookworm-backports
		Pin-Priority: 100

		Package: qemu-system-x86 qemu-system-common qemu-system-data qemu-system-gui qemu-block-extra qemu-utils seabios
		Pin: release n=bookworm-backports
		Pin-Priority: 500
	EOS
	mv "$pin.tmp" "$pin"
	echo "deps: QEMU ${v:-(none)} cannot make sockets or FIFOs on a 9p share: QEMU comes from bookworm-backports"
}
# apt's pkg/suite form takes QEMU's dependencies from that suite where it
# needs newer ones (its firmware), and only those.
if qemu_backports; then
	pkgs=$(echo " $pkgs " | sed 's| qemu-system-x86 | |')
	pkgs="$pkgs qemu-system-x86/bookworm-backports"
fi

missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	start=$(date +%s)
	echo "deps: installing$missing (with what they depend on; a minute or two on a fresh machine)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# Another apt (unattended-upgrades on a fresh machine) may hold the lock:
	# wait for it rather than fail.
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 $missing >/dev/null
	echo "deps: installed in $(($(date +%s) - start)) s"
fi
