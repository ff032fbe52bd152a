#!/bin/sh
# hosttest.sh DEB TESTBIN: `make test-hosts` (docs/hosts.md). Boots the
# Debian 13 test host scripts/mkhost.sh builds (cached) with QEMU, with a 9p
# share holding runh's package DEB, the integration test binary TESTBIN (and
# hosts.test beside it: integration/hosts), scripts/mkrootfs.sh and
# integration/hosts/run.sh; the image's agent runs run.sh (the suites) and
# powers off. Prints the summary and writes it to $HOSTS_OUT/summary.txt
# (default build/hosts); the share's results and the serial console stay in
# $HOSTS_OUT. Every step is bounded: the image build (mkhost.sh), each step
# in the guest (run.sh) and the whole VM (HOSTS_TIMEOUT seconds: killed when
# it expires); the VM's writes (a snapshot file) go with the work directory,
# nothing keeps running. Exit status 1 when the run is incomplete or runh
# fails where runc (its twin row) does not, or fails without a runc row.
#
# Environment: HOSTS_SUITES (integration podman vm rootless cri docker), HOSTS_TIMEOUT (3000),
# HOSTS_ACCEL (auto: kvm when /dev/kvm boots a normal guest, else tcg),
# HOSTS_SMP (2), HOSTS_MEM (4096), HOSTS_OUT, INTEGRATION_RUN (a -test.run
# pattern for suite 1), INTEGRATION_COUNT (its -test.count), and any INTEGRATION_*/VM_*/CRI_*/DOCKER_* variable
# run.sh or a suite reads.
set -eu
deb=$(realpath "${1:?usage: hosttest.sh DEB TESTBIN}")
testbin=$(realpath "${2:?usage: hosttest.sh DEB TESTBIN}")
here=$(cd "$(dirname "$0")/.." && pwd)
out=${HOSTS_OUT:-$here/build/hosts}
timeout_s=${HOSTS_TIMEOUT:-3000}
t0=$(date +%s)

# kvm only where it can boot a normal guest (runh's own rule: not the
# paravirtual kvm_pvm, and a CPU with vmx or svm).
accel=${HOSTS_ACCEL:-auto}
if [ "$accel" = auto ]; then
	accel=tcg
	if [ -w /dev/kvm ] && [ ! -e /sys/module/kvm_pvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then
		accel=kvm
	fi
fi
cpu=max
[ "$accel" = kvm ] && cpu=host

img=$("$here/scripts/mkhost.sh")
echo "test-hosts: image $img (kernel $(cat "$img/version")), accel $accel"

mkdir -p "$out"
work=$(mktemp -d "$out/.run.XXXXXX")
qpid=""
cleanup() {
	if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then
		kill "$qpid" 2>/dev/null || true
		sleep 2
		kill -9 "$qpid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

share=$work/share
mkdir -p "$share"
cp "$deb" "$share/"
cp "$testbin" "$share/integration.test"
cp "$(dirname "$testbin")/hosts.test" "$share/hosts.test"
cp "$here/scripts/mkrootfs.sh" "$share/"
# run.sh and the suites it sources (suite-<name>.sh: a function suite_<name>).
cp "$here"/integration/hosts/*.sh "$share/"
# Extra files a suite needs from this host (crictl, ...): HOSTS_EXTRA.
for f in ${HOSTS_EXTRA:-}; do cp "$f" "$share/"; done
chmod 0755 "$share/run.sh" "$share/integration.test" "$share/hosts.test"
{
	echo "HOSTTEST_SUITES='${HOSTS_SUITES:-integration podman vm rootless cri docker}'"
	env | grep -E '^(INTEGRATION|VM|CRI|DOCKER|CI)_[A-Z_]+=' | sed "s/=\(.*\)/='\1'/" || true
} >"$share/env"

console=$work/console.log
echo "test-hosts: booting (${HOSTS_SMP:-2} vCPUs, ${HOSTS_MEM:-4096} MiB, at most ${timeout_s} s; console: $out/console.log)"
# The cached image stays untouched: snapshot=on sends the VM's writes to a
# throwaway file in TMPDIR (the work directory).
TMPDIR=$work timeout -k 10 "$timeout_s" qemu-system-x86_64 -M q35 -accel "$accel" -cpu "$cpu" \
	-smp "${HOSTS_SMP:-2}" -m "${HOSTS_MEM:-4096}" -nodefaults -display none -no-reboot \
	-kernel "$img/vmlinuz" -initrd "$img/initrd.img" \
	-append "root=/dev/vda rw console=ttyS0 systemd.unified_cgroup_hierarchy=1 panic=1 mitigations=off net.ifnames=0" \
	-drive "file=$img/disk.img,if=virtio,format=raw,snapshot=on,cache=unsafe" \
	-virtfs "local,path=$share,mount_tag=tests,security_model=none,id=tests" \
	-device virtio-rng-pci -serial "file:$console" -monitor none &
qpid=$!
# Progress while it runs: the agent's log grows in the share.
last=""
while kill -0 "$qpid" 2>/dev/null; do
	sleep 10
	l=$(grep '^\[' "$share/agent.log" 2>/dev/null | tail -n1 || true)
	if [ -n "$l" ] && [ "$l" != "$last" ]; then
		echo "test-hosts: $l"
		last=$l
	fi
done
wait "$qpid" && rc=0 || rc=$?
qpid=""
elapsed=$(($(date +%s) - t0))

rm -rf "$out/results" "$out/console.log" "$out/agent.log"
cp "$console" "$out/console.log" 2>/dev/null || true
cp "$share/agent.log" "$out/agent.log" 2>/dev/null || true
if [ -d "$share/results" ]; then cp -r "$share/results" "$out/results"; fi
status=0
complete=yes
if [ ! -f "$share/agent.done" ]; then
	why="QEMU exit $rc"
	[ "$rc" != 124 ] || why="$why: timed out after ${timeout_s} s"
	complete="no ($why; see $out/console.log)"
	status=1
fi
info="no host info"
if [ -f "$out/results/host-info" ]; then
	info=$(awk '$1 == "systemd" {sd = $1 " " $2} $1 == "cgroupfs" {cg = $2} $1 == "pid1" {p1 = $2}
		END {printf "%s, %s, PID 1 %s", sd, cg, p1}' "$out/results/host-info")
fi
{
	printf 'test-hosts summary (Debian 13 %s; %s; %s, %d s; complete: %s):\n' \
		"$(cat "$img/version")" "$info" "$accel" "$elapsed" "$complete"
	if [ -f "$out/results/summary" ]; then
		while read -r name p f s rest; do
			printf '  %-30s pass %2d  fail %2d  skip %2d%s\n' "$name" "$p" "$f" "$s" "${rest:+  failed: $rest}"
		done <"$out/results/summary"
	fi
} >"$out/summary.txt"
cat "$out/summary.txt"
# runh's rows decide, against runc's as the reference: a runh row fails the
# run with a failure its runc twin (same suite and driver) does not have
# (the suite's v1-only checks fail alike with both); a row without a runc
# twin (hypervisor isolation) with any failure.
if [ -f "$out/results/summary" ]; then
	diffs=$(awk '
		{ n = split($1, k, "/"); rows[$1] = $0; order[NR] = $1 }
		END {
			for (i = 1; i <= NR; i++) {
				name = order[i]; split(name, k, "/")
				# runc is the reference; crun (rootless suite) a second one.
				if (k[2] == "runc" || k[2] == "crun") continue
				twin = k[1] "/runc/" k[3]
				split(rows[name], f, " "); nf = length(f)
				ref = (twin in rows) ? " " rows[twin] " " : ""
				extra = ""
				for (j = 5; j <= nf; j++) if (ref == "" || index(ref, " " f[j] " ") == 0) extra = extra " " f[j]
				if (f[3] > 0 && extra == "" && nf < 5) extra = " (unnamed)"
				if (extra != "") printf "  %-30s%s%s\n", name, extra, (ref == "" ? "" : "   (not in " twin ")")
			}
		}' "$out/results/summary")
	if [ -n "$diffs" ]; then
		printf 'failures of runh that runc does not share (or without a runc reference):\n%s\n' "$diffs" | tee -a "$out/summary.txt"
		case $diffs in
		*"(vm-boot)"*) echo "(vm-boot): a nested VM that never came up; in a TCG host its KVM is emulated (docs/hosts.md)" | tee -a "$out/summary.txt" ;;
		esac
		status=1
	else
		echo "no failure of runh that runc does not share" | tee -a "$out/summary.txt"
	fi
fi
exit $status
