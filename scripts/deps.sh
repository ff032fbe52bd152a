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
