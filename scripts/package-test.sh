#!/bin/sh
# package-test.sh DEB: runs TestPackage (integration/engines/package_test.go)
# against the package DEB: the test installs it with apt, checks `runh check`
# and the installed files, runs a container in each mode through podman with
# the installed /usr/bin/runh and /usr/bin/runh-vm (docs/engines.md's
# configuration), and purges the package. `make package-test` runs it under a
# lock, one such test at a time on a machine.
#
# Whatever the test does (failure, timeout, interrupt), the package is purged
# here too when it was not installed before; and the test refuses to install
# over a runh it did not put there.
set -u
deb=${1:?usage: package-test.sh DEB}
top=$(cd "$(dirname "$0")/.." && pwd)
go=${GO:-go}
installed() { dpkg-query -W -f='${Status}' runh 2>/dev/null | grep -q "ok installed"; }
before=no
! installed || before=yes
cleanup() {
	if [ "$before" = no ] && installed; then
		echo "package-test: purging the runh package the test left installed"
		DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq -o DPkg::Lock::Timeout=300 runh >/dev/null
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
cd "$top" || exit 1
RUNH_DEB=$deb "$go" test -count=1 -timeout 15m -run '^TestPackage$' ./integration/engines/ ${V:+-v}
