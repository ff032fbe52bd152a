#!/bin/sh
# run.sh: the test host's side of `make test-hosts` (docs/hosts.md). The
# host's scripts/hosttest.sh copies this script, runh's .deb, the integration
# test binary and scripts/mkrootfs.sh into the 9p share that the image's
# runh-hostagent.service mounts on /srv/tests; the agent runs this script
# as root under systemd, then powers the VM off. Everything it finds lands in
# /srv/tests/results: one log per step and `summary`, one line per row:
#   <suite>/<runtime>/<driver-or-mode> <pass> <fail> <skip> [failed names]
# HOSTTEST_SUITES (in /srv/tests/env) chooses the suites: integration,
# podman, vm (default all three, in that order). Every step has a timeout.
set -u
S=/srv/tests
R=$S/results
mkdir -p "$R"
SUITES="integration podman vm"
# shellcheck disable=SC1091
[ -f "$S/env" ] && . "$S/env"
SUITES=${HOSTTEST_SUITES:-$SUITES}
say() { echo "[$(date +%T)] $*"; }
row() { echo "$*" >>"$R/summary"; say "result: $*"; }

say "host: $(uname -r), $(systemctl --version | head -n1), cgroup $(stat -fc %T /sys/fs/cgroup), PID 1 $(cat /proc/1/comm)"
{
	echo "kernel $(uname -r)"
	echo "$(systemctl --version | head -n1)"
	echo "cgroupfs $(stat -fc %T /sys/fs/cgroup)"
	echo "pid1 $(cat /proc/1/comm)"
	echo "controllers $(cat /sys/fs/cgroup/cgroup.controllers)"
} >"$R/host-info"

# ---- runh from the package make deb built ----
deb=$(ls "$S"/runh_*.deb | head -n1)
if ! timeout 120 dpkg -i "$deb" >"$R/dpkg.log" 2>&1; then
	say "dpkg -i $deb failed:"; cat "$R/dpkg.log"
	row "install/runh/deb 0 1 0 dpkg-i"
	exit 1
fi
{
	/usr/bin/runh --version
	/usr/sbin/runc --version
	podman --version
	conmon --version 2>&1 | head -n1
	containerd --version
	dockerd --version
	qemu-system-x86_64 --version | head -n1
} >"$R/versions" 2>&1
cat "$R/versions"
# The suite's global flags reach the binary through RUNH_BINARY: wrappers
# that add --systemd-cgroup (`--version` still answers "runc ..." for runc,
# so the suite's isRunc still holds).
for b in /usr/bin/runh /usr/sbin/runc; do
	n=${b##*/}
	printf '#!/bin/sh\nexec %s --systemd-cgroup "$@"\n' "$b" >/usr/local/bin/$n-systemd
	chmod 0755 /usr/local/bin/$n-systemd
done

# ---- suite 1: the integration suite's cgroup tests, process isolation ----
INTEGRATION_RUN=${INTEGRATION_RUN:-'^(TestLifecycle|TestDeleteForce|TestKillAll|TestKillPaused|TestListPsPauseEvents|TestUpdate|TestEventsOOM|TestExec|TestExecKilled|TestCgroupsPathSystemdForm|TestResourcesSeen)$'}
INTEGRATION_TIMEOUT=${INTEGRATION_TIMEOUT:-600}
INTEGRATION_RUNTIMES=${INTEGRATION_RUNTIMES:-"runh runc"}

# tally NAME LOG: counts the top-level tests of a -test.v log.
tally() {
	awk -v name="$1" '
		/^--- PASS: / {p++}
		/^--- FAIL: / {f++; failed = failed " " $3}
		/^--- SKIP: / {s++}
		END {printf "%s %d %d %d%s\n", name, p, f, s, failed}' "$2"
}

suite_integration() {
	w=/root/integration
	rm -rf "$w" && mkdir -p "$w/integration" "$w/scripts"
	cp "$S/integration.test" "$w/integration/" && cp "$S/hosts.test" "$S/mkrootfs.sh" "$w/scripts/"
	mv "$w/scripts/hosts.test" "$w/"
	chmod +x "$w/integration/integration.test" "$w/hosts.test" "$w/scripts/mkrootfs.sh"
	sh "$w/scripts/mkrootfs.sh" "$w/rootfs"
	for rt in $INTEGRATION_RUNTIMES; do
		case $rt in runh) bin=/usr/bin/runh ;; runc) bin=/usr/sbin/runc ;; *) continue ;; esac
		for drv in cgroupfs systemd; do
			b=$bin
			[ $drv = systemd ] && b=/usr/local/bin/$rt-systemd
			log=$R/integration-$rt-$drv.log
			say "integration: $rt, $drv driver ($b)"
			t0=$(date +%s)
			(cd "$w/integration" && RUNH_BINARY=$b RUNH_TEST_MODES=process \
				timeout -k 10 "$INTEGRATION_TIMEOUT" ./integration.test -test.v -test.count=1 \
				-test.parallel 4 -test.timeout "$((INTEGRATION_TIMEOUT - 20))s" -test.run "$INTEGRATION_RUN") \
				>"$log" 2>&1
			rc=$?
			say "integration: $rt $drv: exit $rc in $(($(date +%s) - t0)) s"
			[ $rc -eq 124 ] || [ $rc -eq 137 ] && echo "TIMEOUT after ${INTEGRATION_TIMEOUT}s" >>"$log"
			line=$(tally "integration/$rt/$drv" "$log")
			# A run that died before printing its verdicts counts as a failure.
			if [ "$rc" -ne 0 ] && [ "$(echo "$line" | awk '{print $3}')" = 0 ]; then
				line=$(echo "$line" | awk -v rc="$rc" '{$3 = 1; print $0 " exit-" rc}')
			fi
			row "$line"
			# The v2 checks the suite makes on v1 only (integration/hosts).
			log=$R/cgroupv2-$rt-$drv.log
			RUNH_BINARY=$b HOSTS_DRIVER=$drv HOSTS_ROOTFS=$w/rootfs timeout -k 10 300 \
				"$w/hosts.test" -test.v -test.count=1 -test.timeout 280s >"$log" 2>&1
			rc=$?
			line=$(tally "cgroupv2/$rt/$drv" "$log")
			if [ "$rc" -ne 0 ] && [ "$(echo "$line" | awk '{print $3}')" = 0 ]; then
				line=$(echo "$line" | awk -v rc="$rc" '{$3 = 1; print $0 " exit-" rc}')
			fi
			row "$line"
			# Nothing of a run may survive into the next.
			leftover=$(find /sys/fs/cgroup \( -name 'rh-*' -o -name 'hv2-*' -o -name '*rh-*.scope' \) -type d 2>/dev/null | head -n 5)
			[ -z "$leftover" ] || say "integration: $rt $drv: cgroups left: $leftover"
		done
	done
}

# ---- suite 2: podman with the systemd cgroup manager ----
# check NAME WANT CMD...: runs CMD (60 s), passes when its output (stdout and
# stderr, trimmed) equals WANT, or when WANT is "rc=N" and it exits N.
PASS=0 FAIL=0 SKIP=0 FAILED=""
check() {
	name=$1 want=$2
	shift 2
	out=$(timeout -k 5 "${CHECK_TIMEOUT:-60}" "$@" 2>&1)
	rc=$?
	ok=0
	case $want in
	rc=*) [ "$rc" = "${want#rc=}" ] && ok=1 ;;
	*) [ "$rc" = 0 ] && [ "$out" = "$want" ] && ok=1 ;;
	esac
	if [ $ok = 1 ]; then
		PASS=$((PASS + 1))
		echo "ok   $name"
	else
		FAIL=$((FAIL + 1))
		FAILED="$FAILED $name"
		echo "FAIL $name: want $want; exit $rc; output:"
		echo "$out" | sed 's/^/    /' | tail -n 20
	fi
	echo "     \$ $*"
}
reset_counts() { PASS=0 FAIL=0 SKIP=0 FAILED=""; }
skip() {
	SKIP=$((SKIP + 1))
	echo "skip $1: $2"
}
busybox_image() {
	podman image exists localhost/busybox:latest && return 0
	d=$(mktemp -d)
	sh "$S/mkrootfs.sh" "$d/rootfs" >/dev/null &&
		tar -C "$d/rootfs" -cf "$d/rootfs.tar" . &&
		timeout 120 podman import --change 'CMD ["/bin/sh"]' "$d/rootfs.tar" localhost/busybox:latest >/dev/null
	rc=$?
	rm -rf "$d"
	return $rc
}

# scope_of PID: the cgroup v2 path of a process.
scope_of() { sed -n 's/^0:://p' "/proc/$1/cgroup" 2>/dev/null; }

# journal_of UNIT: what systemd said of a unit (OOM kills, stops).
journal_of() {
	journalctl --no-pager -o short-monotonic -u "$1" 2>/dev/null | tail -n 8 | sed 's/^/       journal: /'
}

podman_scenarios() {
	rt=$1 tag=$2
	P="podman --cgroup-manager systemd --runtime $rt"
	c=ht-$tag
	$P rm -f "$c" "$c-oom" "$c-oom2" "$c-oom3" >/dev/null 2>&1
	check run "hello" $P run --rm --network none localhost/busybox echo hello
	check exit-code rc=3 $P run --rm --network none localhost/busybox sh -c 'exit 3'
	check run-d rc=0 $P run -d --name "$c" --network none --memory 64m localhost/busybox sleep 1000
	pid=$($P inspect -f '{{.State.Pid}}' "$c" 2>/dev/null)
	cid=$($P inspect -f '{{.Id}}' "$c" 2>/dev/null)
	if [ -n "$pid" ] && [ "$pid" != 0 ]; then
		cg=$(scope_of "$pid")
		echo "     container pid $pid, cgroup $cg"
		check exec "hi" $P exec "$c" echo hi
		check exec-exit rc=5 $P exec "$c" sh -c 'exit 5'
		check cgroup-scope "yes" sh -c "case '$cg' in */libpod-$cid.scope*) echo yes ;; *) echo no: '$cg' ;; esac"
		check scope-unit "active" systemctl is-active "libpod-$cid.scope"
		check memory-max "67108864" cat "/sys/fs/cgroup$cg/memory.max"
		check stop rc=0 $P stop -t 2 "$c"
		check stopped "exited" $P inspect -f '{{.State.Status}}' "$c"
		check rm rc=0 $P rm "$c"
		check scope-gone "gone" sh -c "systemctl is-active libpod-$cid.scope >/dev/null 2>&1 && echo unit-left || { test -d '/sys/fs/cgroup$cg' && echo cgroup-left || echo gone; }"
	else
		for n in exec exec-exit cgroup-scope scope-unit memory-max stop stopped rm scope-gone; do skip $n "no running container"; done
		$P rm -f "$c" >/dev/null 2>&1
	fi
	# Three times: an OOM verdict that comes and goes is a race, not a rule.
	for o in oom oom2 oom3; do
		check $o-exit rc=137 $P run --name "$c-$o" --network none --memory 32m --memory-swap 32m localhost/busybox sh -c 'sleep 1; tail /dev/zero'
		check $o-killed "true" $P inspect -f '{{.State.OOMKilled}}' "$c-$o"
		cid=$($P inspect -f '{{.Id}}' "$c-$o" 2>/dev/null)
		journal_of "libpod-$cid.scope"
		check $o-rm rc=0 $P rm "$c-$o"
	done
}

suite_podman() {
	if ! busybox_image >"$R/podman-image.log" 2>&1; then
		row "podman/image/systemd 0 1 0 import"
		return
	fi
	for rt in /usr/bin/runh /usr/sbin/runc; do
		n=${rt##*/}
		reset_counts
		say "podman: --runtime $rt --cgroup-manager systemd"
		podman_scenarios "$rt" "$n" >"$R/podman-$n.log" 2>&1
		cat "$R/podman-$n.log"
		row "podman/$n/systemd $PASS $FAIL $SKIP$FAILED"
	done
}

# ---- suite 3: hypervisor isolation (a VM inside this VM) ----
# vm_podman MANAGER: podman with runh-vm and that cgroup manager; the
# shim's and QEMU's host cgroup must be the container's (a systemd scope
# with the systemd manager), limited, and gone after rm.
vm_podman() {
	mgr=$1
	P="podman --cgroup-manager $mgr --runtime /usr/bin/runh-vm"
	c=ht-vm-$mgr
	$P rm -f "$c" >/dev/null 2>&1
	t0=$(date +%s)
	check podman-run-d rc=0 $P run -d --name "$c" --network none --memory 256m localhost/busybox sleep 1000
	say "vm: podman ($mgr) run -d took $(($(date +%s) - t0)) s"
	pid=$($P inspect -f '{{.State.Pid}}' "$c" 2>/dev/null)
	cid=$($P inspect -f '{{.Id}}' "$c" 2>/dev/null)
	if [ -n "$pid" ] && [ "$pid" != 0 ]; then
		cg=$(scope_of "$pid")
		echo "     state pid $pid ($(cat /proc/$pid/comm 2>/dev/null)), cgroup $cg; its processes:"
		for p in $(cat "/sys/fs/cgroup$cg/cgroup.procs" 2>/dev/null); do
			echo "       $p $(cat /proc/$p/comm 2>/dev/null)"
		done
		check podman-exec "hi" $P exec "$c" echo hi
		check guest-kernel "runh" sh -c "$P exec $c uname -r | sed 's/.*-runh\$/runh/'"
		check libpod-cgroup "yes" sh -c "case '$cg' in */libpod-$cid.scope) echo yes ;; */libpod-$cid) echo yes ;; *) echo no: '$cg' ;; esac"
		[ "$mgr" = systemd ] && check scope-unit "active" systemctl is-active "libpod-$cid.scope"
		check qemu-in-cgroup "yes" sh -c "for p in \$(cat '/sys/fs/cgroup$cg/cgroup.procs'); do grep -q qemu /proc/\$p/comm && echo yes && break; done"
		# The host limit is the VM's RAM plus QEMU's overhead (hvshim): a number.
		echo "     memory.max $(cat "/sys/fs/cgroup$cg/memory.max" 2>/dev/null)"
		check memory-limited "yes" sh -c "v=\$(cat '/sys/fs/cgroup$cg/memory.max') && [ \"\$v\" != max ] && echo yes"
		check stop rc=0 $P stop -t 2 "$c"
		check rm rc=0 $P rm "$c"
		check cgroup-gone "gone" sh -c "systemctl is-active libpod-$cid.scope >/dev/null 2>&1 && echo unit-left || { test -d '/sys/fs/cgroup$cg' && echo cgroup-left || echo gone; }"
	else
		for n in podman-exec guest-kernel libpod-cgroup scope-unit qemu-in-cgroup memory-limited stop rm; do skip $n "no running container"; done
		$P rm -f "$c" >/dev/null 2>&1
		check cgroup-gone "gone" sh -c "systemctl is-active libpod-$cid.scope >/dev/null 2>&1 && echo unit-left || { ls -d /sys/fs/cgroup/machine.slice/*$cid* 2>/dev/null | grep -q . && echo cgroup-left || echo gone; }"
	fi
	check no-qemu-left "none" sh -c "pgrep -a qemu-system || echo none"
}

suite_vm() {
	busybox_image >>"$R/podman-image.log" 2>&1 || say "vm: no busybox image for podman"
	CHECK_TIMEOUT=${VM_TIMEOUT:-600}
	log=$R/vm-run.log
	reset_counts
	{
		timeout 60 runh check 2>&1
		b=/root/vmbundle
		rm -rf "$b" && mkdir -p "$b" && sh "$S/mkrootfs.sh" "$b/rootfs" && (cd "$b" && runh spec) &&
			sed -i 's/"sh"/"echo", "hello-from-vm"/; s/"terminal": true/"terminal": false/' "$b/config.json"
		for drv in cgroupfs systemd; do
			flag=""
			[ $drv = systemd ] && flag=--systemd-cgroup
			t0=$(date +%s)
			check runh-vm-run-$drv "hello-from-vm" runh-vm $flag run -b "$b" ht-vm-run
			say "vm: runh-vm $flag run took $(($(date +%s) - t0)) s"
			runh-vm delete -f ht-vm-run >/dev/null 2>&1
		done
	} >"$log" 2>&1
	cat "$log"
	row "vm/runh-vm-run/both $PASS $FAIL $SKIP$FAILED"
	for mgr in systemd cgroupfs; do
		log=$R/vm-podman-$mgr.log
		reset_counts
		vm_podman $mgr >"$log" 2>&1
		cat "$log"
		row "vm/podman-runh-vm/$mgr $PASS $FAIL $SKIP$FAILED"
	done
}

for s in $SUITES; do
	say "suite $s"
	"suite_$s"
done
say "done"
