#!/bin/sh
# run.sh: the test host's side of `make test-hosts` (docs/hosts.md). The
# host's scripts/hosttest.sh copies this script, runh's .deb, the integration
# test binary and scripts/mkrootfs.sh into the 9p share that the image's
# runh-hostagent.service mounts on /srv/tests; the agent runs this script
# as root under systemd, then powers the VM off. Everything it finds lands in
# /srv/tests/results: one log per step and `summary`, one line per row:
#   <suite>/<runtime>/<driver-or-mode> <pass> <fail> <skip> [failed names]
# HOSTTEST_SUITES (in /srv/tests/env) chooses the suites: integration,
# podman, vm, and those of the suite-<name>.sh files (cri, docker, ci...);
# default integration podman vm rootless cri docker, in that order. Every step has a
# timeout.
set -u
S=/srv/tests
R=$S/results
mkdir -p "$R"
SUITES="integration podman vm rootless cri docker"
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
# so the suite's isRunc still holds); RUNH_TEST_CGROUP_DRIVER tells the
# suite which placement to expect.
for b in /usr/bin/runh /usr/sbin/runc; do
	n=${b##*/}
	printf '#!/bin/sh\nexec %s --systemd-cgroup "$@"\n' "$b" >/usr/local/bin/$n-systemd
	chmod 0755 /usr/local/bin/$n-systemd
done

# ---- suite 1: the integration suite's cgroup tests, process isolation ----
INTEGRATION_RUN=${INTEGRATION_RUN:-'^(TestLifecycle|TestDeleteForce|TestKillAll|TestKillPaused|TestListPsPauseEvents|TestUpdate|TestEventsOOM|TestExec|TestExecKilled|TestCgroupsPathSystemdForm|TestResourcesSeen)$'}
INTEGRATION_TIMEOUT=${INTEGRATION_TIMEOUT:-600}
INTEGRATION_COUNT=${INTEGRATION_COUNT:-1} # -test.count: more to catch a race
INTEGRATION_RUNTIMES=${INTEGRATION_RUNTIMES:-"runh runc"}
VM_INTEGRATION_RUN=${VM_INTEGRATION_RUN:-'^(TestEventsOOM|TestUpdate|TestCgroupsPathSystemdForm)$'}

# tally NAME LOG: counts the top-level tests of a -test.v log.
tally() {
	awk -v name="$1" '
		/^--- PASS: / {p++}
		/^--- FAIL: / {f++; failed = failed " " $3}
		/^--- SKIP: / {s++}
		END {printf "%s %d %d %d%s\n", name, p, f, s, failed}' "$2"
}

# The suite's binaries and rootfs in /root/integration, once.
W=/root/integration
integration_setup() {
	[ -x "$W/integration/integration.test" ] && [ -d "$W/rootfs" ] && return 0
	rm -rf "$W" && mkdir -p "$W/integration" "$W/scripts"
	cp "$S/integration.test" "$W/integration/" && cp "$S/hosts.test" "$S/mkrootfs.sh" "$W/scripts/"
	mv "$W/scripts/hosts.test" "$W/"
	chmod +x "$W/integration/integration.test" "$W/hosts.test" "$W/scripts/mkrootfs.sh"
	sh "$W/scripts/mkrootfs.sh" "$W/rootfs"
}

# integration_run ROW BINARY DRIVER MODES PATTERN: one run of the suite,
# its log in $R/<ROW with / as ->.log, one summary row. One VM at a time:
# this host's KVM is QEMU's emulated SVM, and a run booting two nested VMs
# at once ended this whole host once (QEMU exit 0, nothing on the console).
integration_run() {
	name=$1 b=$2 drv=$3 modes=$4 pattern=$5
	log=$R/$(echo "$name" | tr / -).log
	say "$name: $b, $drv driver, $modes"
	t0=$(date +%s)
	(cd "$W/integration" && RUNH_BINARY=$b RUNH_TEST_MODES=$modes RUNH_TEST_CGROUP_DRIVER=$drv \
		RUNH_TEST_VM_PARALLEL=1 \
		timeout -k 10 "$INTEGRATION_TIMEOUT" ./integration.test -test.v -test.count="$INTEGRATION_COUNT" \
		-test.parallel 4 -test.timeout "$((INTEGRATION_TIMEOUT - 20))s" -test.run "$pattern") \
		>"$log" 2>&1
	rc=$?
	say "$name: exit $rc in $(($(date +%s) - t0)) s"
	[ $rc -eq 124 ] || [ $rc -eq 137 ] && echo "TIMEOUT after ${INTEGRATION_TIMEOUT}s" >>"$log"
	line=$(tally "$name" "$log")
	# A run that died before printing its verdicts counts as a failure.
	if [ "$rc" -ne 0 ] && [ "$(echo "$line" | awk '{print $3}')" = 0 ]; then
		line=$(echo "$line" | awk -v rc="$rc" '{$3 = 1; print $0 " exit-" rc}')
	fi
	row "$line"
}

# cgroupv2_run ROW BINARY DRIVER: the further cgroup v2 checks
# (integration/hosts), their log in $R/<ROW with / as ->.log, one row.
cgroupv2_run() {
	log=$R/$(echo "$1" | tr / -).log
	RUNH_BINARY=$2 HOSTS_DRIVER=$3 HOSTS_ROOTFS=$W/rootfs timeout -k 10 300 \
		"$W/hosts.test" -test.v -test.count=1 -test.timeout 280s >"$log" 2>&1
	rc=$?
	line=$(tally "$1" "$log")
	if [ "$rc" -ne 0 ] && [ "$(echo "$line" | awk '{print $3}')" = 0 ]; then
		line=$(echo "$line" | awk -v rc="$rc" '{$3 = 1; print $0 " exit-" rc}')
	fi
	row "$line"
}

suite_integration() {
	integration_setup
	for rt in $INTEGRATION_RUNTIMES; do
		case $rt in runh) bin=/usr/bin/runh ;; runc) bin=/usr/sbin/runc ;; *) continue ;; esac
		for drv in cgroupfs systemd; do
			b=$bin
			[ $drv = systemd ] && b=/usr/local/bin/$rt-systemd
			integration_run "integration/$rt/$drv" "$b" "$drv" process "$INTEGRATION_RUN"
			cgroupv2_run "cgroupv2/$rt/$drv" "$b" "$drv"
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
		# A nested VM that never came up is told apart in the summary:
		# this host's KVM is QEMU TCG's emulated SVM (docs/hosts.md).
		case $out in
		*"vm exited while booting"* | *"agent create: EOF"* | *"connect to agent: context deadline exceeded"*)
			name="$name(vm-boot)" ;;
		esac
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
	bi_eng=${1:-podman}
	"$bi_eng" image inspect localhost/busybox:latest >/dev/null 2>&1 && return 0
	bi_d=$(mktemp -d)
	sh "$S/mkrootfs.sh" "$bi_d/rootfs" >/dev/null &&
		tar -C "$bi_d/rootfs" -cf "$bi_d/rootfs.tar" . &&
		timeout 120 "$bi_eng" import --change 'CMD ["/bin/sh"]' "$bi_d/rootfs.tar" localhost/busybox:latest >/dev/null
	bi_rc=$?
	rm -rf "$bi_d"
	return $bi_rc
}

# runtime_leftovers GLOB: systemd units and cgroups named GLOB, QEMU,
# containerd shims and runh processes still there, a line each.
runtime_leftovers() {
	systemctl list-units --all --plain --no-legend "$1" 2>/dev/null | awk '{print "unit " $1}'
	find /sys/fs/cgroup -name "$1" -type d 2>/dev/null | sed 's/^/cgroup /'
	pgrep -a qemu-system | sed 's/^/process /'
	pgrep -a -f containerd-shim | sed 's/^/process /'
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/exe" 2>/dev/null)" = /usr/bin/runh ] && echo "process ${p#/proc/} $(tr '\0' ' ' <"$p/cmdline")"
	done
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
		echo "     unit: $(systemctl show -p OOMPolicy -p Delegate -p KillMode -p CollectMode -p MemoryMax "libpod-$cid.scope" 2>/dev/null | tr '\n' ' ')"
		echo "     memory.oom.group $(cat "/sys/fs/cgroup$cg/memory.oom.group" 2>/dev/null), processes: $(for p in $(cat "/sys/fs/cgroup$cg/cgroup.procs" 2>/dev/null); do printf '%s ' "$p:$(cat /proc/$p/comm 2>/dev/null)"; done)"
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
	# conmon logs to the journal (--syslog) what it makes of the kill.
	for o in oom oom2 oom3; do
		t0=$(date +%s)
		check $o-exit rc=137 $P --syslog --log-level info run --name "$c-$o" --network none --memory 32m --memory-swap 32m localhost/busybox sh -c 'sleep 1; tail /dev/zero'
		check $o-killed "true" $P inspect -f '{{.State.OOMKilled}}' "$c-$o"
		cid=$($P inspect -f '{{.Id}}' "$c-$o" 2>/dev/null)
		journal_of "libpod-$cid.scope"
		journalctl --no-pager -o short-monotonic --since "@$t0" -t conmon 2>/dev/null | grep -v 'Running in\|Attach\|^--' | tail -n 8 | sed 's/^/       conmon: /'
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
# oom_kills DIR: the oom_kill count of a cgroup's memory.events (0 if none).
oom_kills() { cat "$1/memory.events" 2>/dev/null | awk '$1 == "oom_kill" {n = $2} END {print n + 0}'; }

# counted DIR BEFORE: "counted" when DIR's oom_kill count exceeds BEFORE
# (a function: check runs it as `echo "$(counted ...)"`).
counted() {
	n=$(oom_kills "$1")
	if [ "$n" -gt "$2" ]; then echo counted; else echo "not counted: $1 oom_kill $n, $2 before"; fi
}

# vm_podman MANAGER: podman with runh-vm and that cgroup manager; the
# shim's and QEMU's host cgroup must be the container's (a systemd scope
# with the systemd manager), limited, and gone after rm; an OOM kill in the
# guest must reach podman (exit 137, OOMKilled: conmon reads the kill the
# shim reproduces in that cgroup, oom.go) and count in the cgroup's parent.
vm_podman() {
	mgr=$1
	P="podman --cgroup-manager $mgr --runtime /usr/bin/runh-vm"
	c=ht-vm-$mgr
	cg=""
	$P rm -f "$c" "$c-oom" "$c-oom2" >/dev/null 2>&1
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
	# The containers' parent cgroup (machine.slice, /libpod_parent), where
	# v2's hierarchical count outlives the container's cgroup.
	parent=""
	[ -n "$cg" ] && parent=/sys/fs/cgroup$(dirname "$cg")
	for o in oom oom2; do
		before=$(oom_kills "$parent")
		t0=$(date +%s)
		check $o-exit rc=137 $P run --name "$c-$o" --network none --memory 64m --memory-swap 64m localhost/busybox sh -c 'tail /dev/zero'
		say "vm: podman ($mgr) OOM run took $(($(date +%s) - t0)) s"
		check $o-killed "true" $P inspect -f '{{.State.OOMKilled}}' "$c-$o"
		if [ -n "$parent" ]; then
			check $o-host-count "counted" echo "$(counted "$parent" "$before")"
		else
			skip $o-host-count "no parent cgroup known"
		fi
		ocid=$($P inspect -f '{{.Id}}' "$c-$o" 2>/dev/null)
		[ "$mgr" = systemd ] && journal_of "libpod-$ocid.scope"
		check $o-rm rc=0 $P rm "$c-$o"
	done
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
			sed -i 's/"terminal": true/"terminal": false/' "$b/config.json"
		# The same container over a 32 MiB limit, allocating until killed.
		ob=/root/vmoombundle
		rm -rf "$ob" && mkdir -p "$ob" && cp -a "$b/rootfs" "$ob/rootfs" &&
			sed 's/^\(\s*\)"sh"$/\1"sh", "-c", "tail \/dev\/zero"/; s/"resources": {/"resources": {"memory": {"limit": 33554432, "swap": 33554432},/' \
				"$b/config.json" >"$ob/config.json"
		sed -i 's/"sh"$/"echo", "hello-from-vm"/' "$b/config.json"
		for drv in cgroupfs systemd; do
			flag=""
			[ $drv = systemd ] && flag=--systemd-cgroup
			t0=$(date +%s)
			check runh-vm-run-$drv "hello-from-vm" runh-vm $flag run -b "$b" ht-vm-run
			say "vm: runh-vm $flag run took $(($(date +%s) - t0)) s"
			runh-vm delete -f ht-vm-run >/dev/null 2>&1
			# The guest's OOM kill ends the container (137), and the shim
			# reproduces it in the VM's host cgroup: under both drivers a
			# child of system.slice (beside the agent's own with cgroupfs,
			# a runc-<id>.scope with systemd), whose v2 count is
			# hierarchical and outlives the child; systemd's journal
			# tells the kill in the scope.
			before=$(oom_kills /sys/fs/cgroup/system.slice)
			t0=$(date +%s)
			check runh-vm-oom-$drv rc=137 runh-vm $flag run -b "$ob" ht-vm-oom
			say "vm: runh-vm $flag run (OOM) took $(($(date +%s) - t0)) s"
			check host-count-$drv "counted" echo "$(counted /sys/fs/cgroup/system.slice "$before")"
			if [ $drv = systemd ]; then
				check scope-journal-$drv "yes" sh -c "journalctl --no-pager -o cat --since @$t0 | grep 'ht-vm-oom.scope' | grep -q 'killed by the OOM killer' && echo yes || { echo no; journalctl --no-pager -o cat --since @$t0 | grep ht-vm-oom | tail -n 5; }"
			fi
			runh-vm delete -f ht-vm-oom >/dev/null 2>&1
		done
	} >"$log" 2>&1
	cat "$log"
	row "vm/runh-vm-run/both $PASS $FAIL $SKIP$FAILED"
	# The integration suite's host-cgroup tests in hypervisor isolation:
	# the VM's host cgroup placed (slice:prefix:name), updated, and the
	# guest's OOM kill seen by `events` and counted in it.
	integration_setup >"$R/vm-integration-setup.log" 2>&1
	for drv in cgroupfs systemd; do
		b=/usr/bin/runh
		[ $drv = systemd ] && b=/usr/local/bin/runh-systemd
		integration_run "vm/integration/$drv" "$b" "$drv" hypervisor "$VM_INTEGRATION_RUN"
	done
	for mgr in systemd cgroupfs; do
		log=$R/vm-podman-$mgr.log
		reset_counts
		vm_podman $mgr >"$log" 2>&1
		cat "$log"
		row "vm/podman-runh-vm/$mgr $PASS $FAIL $SKIP$FAILED"
	done
}

# The suites kept in files of their own (suite-<name>.sh beside this one)
# define suite_<name>, with run.sh's helpers (say, row, check, tally...).
for f in "$S"/suite-*.sh; do
	# shellcheck disable=SC1090
	[ -f "$f" ] && . "$f"
done

for s in $SUITES; do
	say "suite $s"
	"suite_$s"
done
say "done"
