#!/bin/sh
# mkdeb.sh STAGE OUT: writes STAGE/DEBIAN (control, md5sums) for the tree
# `make install DESTDIR=STAGE PREFIX=/usr` wrote, and builds the package OUT
# with dpkg-deb (files owned by root whoever builds). `make deb` runs it.
# Fields from the environment: DEB_VERSION, DEB_ARCH, DEB_DEPENDS,
# DEB_RECOMMENDS, DEB_MAINTAINER.
set -eu
stage=${1:?usage: mkdeb.sh STAGE OUT}
out=${2:?usage: mkdeb.sh STAGE OUT}
[ -x "$stage/usr/bin/runh" ] || {
	echo "mkdeb: no $stage/usr/bin/runh (make install DESTDIR=$stage PREFIX=/usr)" >&2
	exit 1
}
start=$(date +%s)
kernels=$(cd "$stage/usr/share/runh" 2>/dev/null && for d in */; do
	[ ! -d "$d" ] || printf ' %s/ (%s)' "${d%/}" "$(cat "$d/version" 2>/dev/null)"
done)
mkdir -p "$stage/DEBIAN"
(cd "$stage" && find usr -type f -print0 | sort -z | xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
cat >"$stage/DEBIAN/control" <<EOF
Package: runh
Version: ${DEB_VERSION:?}
Architecture: ${DEB_ARCH:-amd64}
Maintainer: ${DEB_MAINTAINER:-runh developers <runh@localhost>}
Installed-Size: $(du -sk "$stage/usr" | cut -f1)
Depends: ${DEB_DEPENDS:-qemu-system-x86}
Recommends: ${DEB_RECOMMENDS:-procps}
Section: admin
Priority: optional
Description: OCI container runtime with process and hypervisor isolation
 runh has runc's command line and two isolation modes, chosen per container
 by the bundle annotation io.runh.isolation: process isolation (namespaces,
 cgroups, capabilities, seccomp: the container runc would make) and
 hypervisor isolation (the same container inside its own small QEMU microvm).
 runh-vm, a link to runh, defaults to hypervisor isolation for engines that
 cannot pass annotations. "runh check" tells what this host offers each mode.
 .
 Guest kernels in /usr/share/runh:${kernels:- none}.
EOF
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/md5sums"
mkdir -p "$(dirname "$out")"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$out" >/dev/null
echo "deb: $out ($(du -k "$out" | cut -f1) KiB, built in $(($(date +%s) - start)) s)"
dpkg-deb --field "$out" Package Version Architecture Depends Installed-Size | sed 's/^/  /'
