#!/bin/sh
# demo.sh: builds a busybox bundle and runs one container with each
# isolation mode, printing the kernel each one sees.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
runh="$top/bin/runh"
demo="$top/build/demo"
root=$(mktemp -d /tmp/runh-demo.XXXXXX)
trap 'rm -rf "$root"' EXIT
if [ ! -x "$demo/rootfs/bin/busybox" ]; then
	rm -rf "$demo"
	mkdir -p "$demo"
	"$top/scripts/mkrootfs.sh" "$demo/rootfs"
fi
rm -f "$demo/config.json"
"$runh" spec --bundle "$demo"
# A non-interactive demo: no terminal, and a command that shows where it runs.
sed -i -e 's/"terminal": true/"terminal": false/' \
	-e 's/^\(\t*\)"sh"$/\1"sh", "-c", "echo \\"hello from $(hostname): kernel $(uname -r), pid $$\\""/' \
	"$demo/config.json"
echo "host kernel: $(uname -r)"
echo "== process isolation"
"$runh" --root "$root" run --bundle "$demo" runh-demo-process
if [ -n "${RUNH_DEMO_VM:-1}" ] && "$runh" check --format json 2>/dev/null | grep -q '"usable": *true'; then
	echo "== hypervisor isolation"
	"$runh" --root "$root" --isolation hypervisor run --bundle "$demo" runh-demo-vm
fi
