#!/bin/sh
# deps.sh: installs what runh needs to build and test on Debian 12, as root.
# Only missing packages are installed, so a second run costs nothing.
set -eu
pkgs="gcc make libc6-dev libseccomp-dev pkg-config busybox-static procps iproute2 util-linux qemu-system-x86 xz-utils binutils bc flex bison libelf-dev libssl-dev linux-source-6.1 ${RUNH_EXTRA_PKGS:-}"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "deps: installing$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
