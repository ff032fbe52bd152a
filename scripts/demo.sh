#!/bin/sh
# demo.sh: builds a busybox bundle and runs one container with each
# isolation mode, printing the kernel each one sees and how long it took;
# then says which guest kernel the VM booted and, when it was Debian's (`make
# demo` fetches it rather than build runh's own first), how to build runh's.
#
# RUNH_DEMO_T0: when `make demo` started (seconds since the epoch), for the
# total it prints. RUNH_DEMO_VM= (empty) skips the VM.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
runh="$top/bin/runh"
demo="$top/build/demo"
t0=${RUNH_DEMO_T0:-$(date +%s)}
root=$(mktemp -d /tmp/runh-demo.XXXXXX)
trap 'rm -rf "$root"' EXIT

ms() { echo $(($(date +%s%N) / 1000000)); }
# took START_MS: "0.42 s" since START_MS.
took() {
	d=$(($(ms) - $1))
	printf '%d.%02d s' $((d / 1000)) $((d % 1000 / 10))
}
# field NAME: a string field of the hypervisor part of `runh check`.
field() {
	printf '%s\n' "$check" | sed -n '/"hypervisor"/,$p' | sed -n "s/^ *\"$1\": \"\(.*\)\",*\$/\1/p" | head -n1
}

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
echo "== process isolation: runh run"
s=$(ms)
"$runh" --root "$root" run --bundle "$demo" runh-demo-process
echo "   ($(took "$s"))"

check=$("$runh" check --format json 2>/dev/null) || true
if [ -z "${RUNH_DEMO_VM-1}" ]; then
	:
elif ! printf '%s\n' "$check" | sed -n '/"hypervisor"/,$p' | grep -q '"usable": *true'; then
	echo "== hypervisor isolation: not usable here; runh check says:"
	"$runh" check || true
	echo "(README.md, \"Troubleshooting\", goes through each line)"
else
	echo "== hypervisor isolation: runh --isolation hypervisor run (a QEMU microvm, $(field accel))"
	s=$(ms)
	"$runh" --root "$root" --isolation hypervisor run --bundle "$demo" runh-demo-vm
	echo "   ($(took "$s"): boot, run, power off)"
	kernel=$(field kernel)
	if [ "$(field kernelFlavor)" != runh ]; then
		cat <<EOF

The VM booted Debian's generic kernel ($kernel, $(field kernelVersion)),
fetched for this demo in seconds. runh's own minimal kernel is the one the
tests use: \`make guest-kernel\` builds it from Debian's linux-source-6.1
(about 8 minutes on 2 cores, once: it is then cached in
${RUNH_CACHE_DIR:-/var/cache/runh}/kernel) into build/guest/, where runh finds it
before Debian's; nothing else changes.
EOF
	else
		echo "   guest kernel: runh's own ($kernel, $(field kernelVersion))"
	fi
fi
echo
echo "demo: done $(($(date +%s) - t0)) s after it started."
echo "Next: bin/runh check; make install (docs/install.md); docs/engines.md for Docker, podman, containerd."
