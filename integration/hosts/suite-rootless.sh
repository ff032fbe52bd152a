# suite-rootless.sh: rootless podman on a cgroup v2 + systemd host, in the
# delegated subtree of an ordinary user's systemd (issue 26; docs/hosts.md).
# Sourced by run.sh, whose helpers it uses (say, row, check, skip,
# reset_counts, scope_of, journal_of). suite_rootless creates a user with
# subordinate ID ranges, enables lingering (user@UID.service runs, with its
# delegated cgroup subtree and the user's bus), and runs, as that user, in
# its systemd user session (systemd-run --machine=USER@.host --user: the
# processes are in the user's own cgroup, with its bus), the same scenario
# with podman --cgroup-manager systemd and --runtime runc (the reference),
# crun (if installed), runh and runh-vm. One row each:
#   rootless/<runtime>/systemd PASS FAIL SKIP [failed names]
# runh-vm's checks have the same names; where a VM cannot give runc's
# answer the check says why and looks at what applies instead (the log).

RL_USER=runhrl
RL_IDS=300000-365535
RL_PORT=18080

# rl_as: the command the suite runs things as the user with (a script:
# check runs its command under timeout(1), which takes no shell function).
RL_AS=/usr/local/bin/rl-as

# rl_write_as METHOD: writes $RL_AS. machine: systemd-run --machine=U@.host
# --user (systemd asks the user's manager, which starts a transient service
# in the user's own cgroup); runuser: the same systemd-run --user started by
# runuser on the user's bus (for a systemd whose --machine=U@.host fails).
# Either way the command runs as a service of user@UID.service, with the
# environment a login has (the manager's, plus the bus and the runtime dir).
rl_write_as() {
	uid=$(id -u "$RL_USER")
	home=$(getent passwd "$RL_USER" | cut -d: -f6)
	# The transient service stands for a login session, whose processes
	# outlive the command: KillMode=process (podman's pause process,
	# pasta, slirp4netns and rootlessport stay in the service's cgroup,
	# which systemd would otherwise kill when the command ends). And
	# without INVOCATION_ID, which tells podman it runs as a systemd
	# service: it then leaves conmon in the service's cgroup (as units
	# that run podman, Quadlet's, want); from a login conmon gets a scope
	# of its own.
	inner="unset INVOCATION_ID JOURNAL_STREAM; export HOME=$home USER=$RL_USER LOGNAME=$RL_USER XDG_RUNTIME_DIR=/run/user/$uid \
DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/$uid/bus PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; \
cd \"\$HOME\" && exec \"\$@\""
	case $1 in
	machine)
		cat >"$RL_AS" <<EOF
#!/bin/sh
# rl-as CMD [ARGS...]: CMD as $RL_USER, a service of its user@$uid.service.
exec systemd-run --machine=$RL_USER@.host --user --wait --pipe --quiet --collect -p KillMode=process \\
	/bin/sh -c '$inner' rl-as "\$@"
EOF
		;;
	runuser)
		cat >"$RL_AS" <<EOF
#!/bin/sh
# rl-as CMD [ARGS...]: CMD as $RL_USER, a service of its user@$uid.service.
exec runuser -u $RL_USER -- env XDG_RUNTIME_DIR=/run/user/$uid DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/$uid/bus \\
	systemd-run --user --wait --pipe --quiet --collect -p KillMode=process /bin/sh -c '$inner' rl-as "\$@"
EOF
		;;
	esac
	chmod 0755 "$RL_AS"
}

# rl_setup: the user, its ranges, lingering, its manager and bus, the way
# in, the image in its storage. Says what fails.
rl_setup() {
	userdel -r "$RL_USER" >/dev/null 2>&1
	# useradd would add ranges of its own: the suite's are known.
	useradd -m -s /bin/sh -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 "$RL_USER" || return 1
	usermod --add-subuids "$RL_IDS" --add-subgids "$RL_IDS" "$RL_USER" || return 1
	RL_UID=$(id -u "$RL_USER")
	RL_HOME=$(getent passwd "$RL_USER" | cut -d: -f6)
	RL_XDG=/run/user/$RL_UID
	RL_SVC=/sys/fs/cgroup/user.slice/user-$RL_UID.slice/user@$RL_UID.service
	echo "user $RL_USER uid $RL_UID, home $RL_HOME, $(grep "^$RL_USER:" /etc/subuid) (subuid), $(grep "^$RL_USER:" /etc/subgid) (subgid)"
	t0=$(date +%s)
	loginctl enable-linger "$RL_USER" || return 1
	i=0
	until [ "$(systemctl is-active "user@$RL_UID.service")" = active ] && [ -S "$RL_XDG/bus" ]; do
		i=$((i + 1))
		[ $i -lt 120 ] || { echo "user@$RL_UID.service: $(systemctl is-active "user@$RL_UID.service"), bus $(ls -l "$RL_XDG/bus" 2>&1)"; return 1; }
		sleep 1
	done
	echo "user@$RL_UID.service active and the user's bus up $(($(date +%s) - t0)) s after enable-linger"
	echo "user@$RL_UID.service: $(systemctl show -p Delegate -p DelegateControllers "user@$RL_UID.service" | tr '\n' ' ')"
	echo "its cgroup: $RL_SVC; controllers $(cat "$RL_SVC/cgroup.controllers"), for its children $(cat "$RL_SVC/cgroup.subtree_control")"
	echo "owner of its cgroup.procs: $(stat -c %U "$RL_SVC/cgroup.procs")"
	rl_write_as machine
	if out=$(timeout 60 "$RL_AS" sh -c 'id -u; cat /proc/self/cgroup' 2>&1) && [ "$(echo "$out" | head -n1)" = "$RL_UID" ]; then
		echo "way in: systemd-run --machine=$RL_USER@.host --user"
	else
		echo "systemd-run --machine=$RL_USER@.host --user failed: $out"
		rl_write_as runuser
		out=$(timeout 60 "$RL_AS" sh -c 'id -u; cat /proc/self/cgroup' 2>&1) && [ "$(echo "$out" | head -n1)" = "$RL_UID" ] ||
			{ echo "runuser + systemd-run --user failed too: $out"; return 1; }
		echo "way in: runuser -u $RL_USER systemd-run --user"
	fi
	echo "as the user: uid $(echo "$out" | head -n1), cgroup $(echo "$out" | sed -n 's/^0:://p')"
	# The image: the busybox rootfs of mkrootfs.sh, imported by the user.
	d=$(mktemp -d)
	sh "$S/mkrootfs.sh" "$d/rootfs" >/dev/null && tar -C "$d/rootfs" -cf "$RL_HOME/rootfs.tar" . || return 1
	rm -rf "$d"
	chown "$RL_USER:" "$RL_HOME/rootfs.tar"
	timeout 300 "$RL_AS" podman import --change 'CMD ["/bin/sh"]' rootfs.tar localhost/busybox:latest >/dev/null || return 1
	timeout 60 "$RL_AS" podman info --format '{{.Host.CgroupManager}} cgroup {{.Host.CgroupsVersion}}, controllers {{.Host.CgroupControllers}}; network {{.Host.NetworkBackend}} {{.Host.RootlessNetworkCmd}}; storage {{.Store.GraphDriverName}}; conmon {{.Host.Conmon.Version}}' 2>&1 | sed 's/^/podman info: /'
	timeout 60 "$RL_AS" podman --version
	return 0
}

# rl_net: a host with nothing but lo (this test host) gives pasta no
# interface to copy; an ordinary host has one with a default route. A dummy
# one stands in for it (removed by rl_teardown).
rl_net() {
	ip route show default | grep -q . && return 0
	ip link add rl0 type dummy && ip addr add 192.0.2.10/24 dev rl0 && ip link set rl0 up &&
		ip route add default via 192.0.2.1 dev rl0 && echo "network: dummy rl0 192.0.2.10/24, default route via 192.0.2.1 (for pasta)"
}

# rl_kvm: can the user open /dev/kvm here, and why.
rl_kvm() {
	echo "/dev/kvm: $(ls -l /dev/kvm 2>&1); kvm group members: $(getent group kvm | cut -d: -f4)"
	echo "/dev/vhost-vsock: $(ls -l /dev/vhost-vsock 2>&1)"
	command -v getfacl >/dev/null && getfacl -p /dev/kvm 2>/dev/null | sed 's/^/  acl: /'
	echo "udev: $(grep -h 'KERNEL=="kvm"' /usr/lib/udev/rules.d/*.rules /etc/udev/rules.d/*.rules 2>/dev/null | tr '\n' ' ')"
	echo "the user's groups: $(id "$RL_USER")"
	RL_KVM=$(timeout 60 "$RL_AS" sh -c 'if (exec 3<>/dev/kvm) 2>/dev/null; then echo yes; else echo no; fi' 2>&1 | tail -n1)
	echo "the user can open /dev/kvm: $RL_KVM"
}

# rl_check_report: runh check as the user, plain and in podman's user
# namespace (where runh runs under podman), both with --systemd-cgroup.
rl_check_report() {
	reset_counts
	for a in "" "--systemd-cgroup"; do
		echo "---- runh $a check, as $RL_USER:"
		timeout 120 "$RL_AS" runh $a check 2>&1 | sed 's/^/     /'
	done
	echo "---- podman unshare runh --systemd-cgroup check (root of podman's user namespace):"
	timeout 120 "$RL_AS" podman unshare runh --systemd-cgroup check 2>&1 | sed 's/^/     /'
	j=$(timeout 120 "$RL_AS" runh --systemd-cgroup check --format json 2>/dev/null | tr -d '\n')
	jn=$(timeout 120 "$RL_AS" podman unshare runh --systemd-cgroup check --format json 2>/dev/null | tr -d '\n')
	field() { echo "$1" | tr ',{}' '\n\n\n' | sed -n "s/^ *\"$2\": *//p" | head -n1 | tr -d '"' | sed 's/ *$//'; }
	check check-rootless "true" echo "$(field "$j" rootless)"
	check check-state-dir "$RL_XDG/runh" echo "$(field "$j" stateDir)"
	check check-state-writable "true" echo "$(field "$j" stateDirWritable)"
	check check-cgroup-v2 "v2" echo "$(field "$j" cgroup)"
	check check-process-usable "true" echo "$(field "$j" usable)"
	check check-ns-rootless "true" echo "$(field "$jn" rootless)"
	check check-ns-in-userns "true" echo "$(field "$jn" inUserNamespace)"
	# The hypervisor half: refused outside a user namespace only.
	h=$(echo "$j" | sed -n 's/.*"hypervisor": *{\(.*\)/\1/p')
	hn=$(echo "$jn" | sed -n 's/.*"hypervisor": *{\(.*\)/\1/p')
	check check-vm-refused-plain "yes" sh -c "echo '$h' | grep -q 'needs a user namespace of its own' && echo yes || echo no"
	check check-vm-usable-in-userns "true" echo "$(field "$hn" usable)"
	RL_ACCEL=$(field "$hn" accel)
	echo "     hypervisor accelerator in podman's namespace: $RL_ACCEL ($(field "$hn" accelReason))"
}

# rl_qemu_accel FILE: writes the -accel of the first QEMU seen (for 480 s).
rl_qemu_accel() {
	i=0
	while [ $i -lt 480 ]; do
		a=$(pgrep -a qemu-system | grep -o -- '-accel [^ ,]*' | head -n1 | awk '{print $2}')
		[ -n "$a" ] && { echo "$a" >"$1"; return; }
		i=$((i + 1))
		sleep 1
	done
}

# rl_vm_accel: runh-vm with the user as it is (logind gives an ACL on
# /dev/kvm to the user of an active seat session only, udev's uaccess; a
# lingering user has none: TCG, in this TCG host), then in group kvm (the
# user manager restarted to take it: KVM, QEMU's emulated SVM here).
rl_vm_accel() {
	t0=$(date +%s)
	rl_qemu_accel "$R/rootless-accel-1" &
	w=$!
	out=$(timeout -k 5 480 "$RL_AS" podman --cgroup-manager systemd --runtime /usr/bin/runh-vm \
		run --rm --network none localhost/busybox echo vm-ok 2>&1)
	kill $w 2>/dev/null
	wait $w 2>/dev/null
	RL_ACCEL1=$(cat "$R/rootless-accel-1" 2>/dev/null)
	echo "     QEMU's accelerator: ${RL_ACCEL1:-not seen}; took $(($(date +%s) - t0)) s"
	# This host runs under TCG itself (systemd-detect-virt: qemu, not kvm):
	# a TCG VM in it is emulated twice and did not come up within the
	# shim's 3 minutes for the VM (QMP not open); on real hardware TCG
	# boots (runh's own tests run it). Then a skip, with what it said.
	if [ "$out" != vm-ok ] && [ "$RL_ACCEL1" = tcg ] && [ "$(systemd-detect-virt 2>/dev/null)" = qemu ]; then
		skip vm-run-as-is "TCG inside this TCG host, emulated twice: $(echo "$out" | tail -n1)"
	else
		check vm-run-as-is "vm-ok" echo "$out"
	fi
	check vm-accel-as-is "$RL_ACCEL" echo "$RL_ACCEL1"
	usermod -aG kvm "$RL_USER"
	systemctl restart "user@$RL_UID.service"
	i=0
	until [ "$(systemctl is-active "user@$RL_UID.service")" = active ] && [ -S "$RL_XDG/bus" ]; do
		i=$((i + 1))
		[ $i -lt 120 ] || break
		sleep 1
	done
	echo "---- in group kvm (user@$RL_UID.service restarted):"
	rl_kvm
	check kvm-open-in-group "yes" echo "$RL_KVM"
	jn=$(timeout 120 "$RL_AS" podman unshare runh --systemd-cgroup check --format json 2>/dev/null | tr -d '\n')
	hn=$(echo "$jn" | sed -n 's/.*"hypervisor": *{\(.*\)/\1/p')
	RL_ACCEL=$(field "$hn" accel)
	echo "     hypervisor accelerator in podman's namespace: $RL_ACCEL ($(field "$hn" accelReason))"
	check check-accel-in-group "kvm" echo "$RL_ACCEL"
}

# rl_pids_of CG: the processes of a cgroup (directory under /sys/fs/cgroup),
# its children's included.
rl_pids_of() {
	for f in $(find "/sys/fs/cgroup$1" -name cgroup.procs 2>/dev/null); do
		for p in $(cat "$f"); do printf '%s:%s ' "$p" "$(cat /proc/$p/comm 2>/dev/null)"; done
	done
}

# rl_scenario RUNTIME: the scenario with one runtime, as the user.
rl_scenario() {
	rt=$1 n=${1##*/}
	vm=0
	[ "$n" = runh-vm ] && vm=1
	state=$n
	[ $vm = 1 ] && state=runh
	P="$RL_AS podman --cgroup-manager systemd --runtime $rt"
	c=rl-$n
	$P rm -f -t 0 "$c" "$c-pasta" "$c-slirp4netns" "$c-oom" "$c-oom2" >/dev/null 2>&1
	check run "hello" $P run --rm --network none localhost/busybox echo hello
	check exit-code rc=3 $P run --rm --network none localhost/busybox sh -c 'exit 3'
	check id-u "0" $P run --rm --network none localhost/busybox id -u
	# uid_map: podman's mapping with runc and runh; in a VM the guest
	# kernel's own (the container is root of its guest, docs/engines.md).
	want="0 $RL_UID 1 1 ${RL_IDS%-*} 65536"
	[ $vm = 1 ] && want="0 0 4294967295"
	check uid-map "$want" sh -c "$P run --rm --network none localhost/busybox cat /proc/self/uid_map | tr -s ' \n' ' ' | sed 's/^ //; s/ \$//'"

	# A detached container with limits and a volume.
	vol=$RL_HOME/vol-$n
	rm -rf "$vol" && mkdir -p "$vol" && echo from-the-host >"$vol/in" && chown -R "$RL_USER:" "$vol"
	lim="--memory 64m"
	[ -n "$RL_PIDS" ] && lim="$lim --pids-limit 99"
	[ -n "$RL_CPU" ] && lim="$lim --cpus 0.5"
	t0=$(date +%s)
	check run-d rc=0 $P run -d --name "$c" --network none $lim -v "$vol:/vol" localhost/busybox sleep 100000
	say "rootless: $n: run -d took $(($(date +%s) - t0)) s"
	pid=$($P inspect -f '{{.State.Pid}}' "$c" 2>/dev/null)
	cid=$($P inspect -f '{{.Id}}' "$c" 2>/dev/null)
	cg="" scope=""
	if [ -n "$pid" ] && [ "$pid" != 0 ]; then
		cg=$(scope_of "$pid")
		scope=${cg%%/libpod-$cid.scope*}/libpod-$cid.scope
		echo "     pid $pid ($(cat /proc/$pid/comm 2>/dev/null)), cgroup $cg; in the scope: $(rl_pids_of "$scope")"
		echo "     unit: $("$RL_AS" systemctl --user show -p Delegate -p MemoryMax -p TasksMax -p CPUQuotaPerSecUSec -p Slice "libpod-$cid.scope" 2>&1 | tr '\n' ' ')"
		check exec "hi" $P exec "$c" echo hi
		check exec-exit rc=5 $P exec "$c" sh -c 'exit 5'
		check exec-id-u "0" $P exec "$c" id -u
		check scope-in-user-service "yes" sh -c "case '$cg' in /user.slice/user-$RL_UID.slice/user@$RL_UID.service/*libpod-$cid.scope*) echo yes ;; *) echo no: '$cg' ;; esac"
		check scope-unit "active" "$RL_AS" systemctl --user is-active "libpod-$cid.scope"
		check state-in-xdg "yes" sh -c "test -d '$RL_XDG/$state/$cid' && echo yes || echo no: \$(ls -A '$RL_XDG/$state' 2>&1)"
		# The limits, in the container's cgroup (what the container sees)
		# and in the scope on the host. A VM's host scope holds QEMU: its
		# memory is the VM's RAM plus QEMU's overhead (hvshim/shim), its
		# pids unlimited (QEMU's threads; the guest enforces the limit).
		check container-memory-max "67108864" $P exec "$c" cat /sys/fs/cgroup/memory.max
		if [ $vm = 1 ]; then
			echo "     host memory.max $(cat "/sys/fs/cgroup$scope/memory.max" 2>&1) (the VM's RAM + QEMU's overhead)"
			check host-memory-max "limited" sh -c "v=\$(cat '/sys/fs/cgroup$scope/memory.max') && [ \"\$v\" != max ] && echo limited || echo \"\$v\""
			check qemu-in-scope "yes" sh -c "echo '$(rl_pids_of "$scope")' | grep -q qemu && echo yes || echo no"
			echo "     QEMU: $(pgrep -a qemu-system | grep -o -- '-accel [^ ]*' | head -n1) ($(pgrep -a qemu-system | head -n1 | cut -c1-200))"
			RL_VM_ACCEL=$(pgrep -a qemu-system | grep -o -- '-accel [^ ,]*' | head -n1 | awk '{print $2}')
			echo "     QEMU runs as $(ps -o user=,uid=,group= -p "$(pgrep qemu-system | head -n1)" 2>/dev/null)"
		else
			check host-memory-max "67108864" cat "/sys/fs/cgroup$scope/memory.max"
		fi
		if [ -n "$RL_PIDS" ]; then
			check container-pids-max "99" $P exec "$c" cat /sys/fs/cgroup/pids.max
			if [ $vm = 1 ]; then
				skip host-pids-max "a VM's pids limit is the guest's (QEMU's threads would count against it on the host): $(cat "/sys/fs/cgroup$scope/pids.max" 2>&1)"
			else
				check host-pids-max "99" cat "/sys/fs/cgroup$scope/pids.max"
			fi
		else
			skip container-pids-max "pids not delegated to user@$RL_UID.service"
			skip host-pids-max "pids not delegated to user@$RL_UID.service"
		fi
		if [ -n "$RL_CPU" ]; then
			check container-cpu-max "50000 100000" $P exec "$c" cat /sys/fs/cgroup/cpu.max
			check host-cpu-max "50000 100000" cat "/sys/fs/cgroup$scope/cpu.max"
		else
			skip container-cpu-max "cpu not delegated to user@$RL_UID.service"
			skip host-cpu-max "cpu not delegated to user@$RL_UID.service"
		fi
		check volume-read "from-the-host" $P exec "$c" cat /vol/in
		check volume-write rc=0 $P exec "$c" sh -c 'echo from-the-container >/vol/out'
		check volume-owner "$RL_UID" stat -c %u "$vol/out"
		check stop rc=0 $P stop -t 2 "$c"
		check stopped "exited" $P inspect -f '{{.State.Status}}' "$c"
		check rm rc=0 $P rm "$c"
		check scope-gone "gone" sh -c "'$RL_AS' systemctl --user is-active libpod-$cid.scope >/dev/null 2>&1 && echo unit-left || { test -d '/sys/fs/cgroup$scope' && echo cgroup-left || echo gone; }"
		check state-gone "gone" sh -c "test -e '$RL_XDG/$state/$cid' && echo left || echo gone"
	else
		for k in exec exec-exit exec-id-u scope-in-user-service scope-unit state-in-xdg container-memory-max host-memory-max \
			container-pids-max host-pids-max container-cpu-max host-cpu-max volume-read volume-write volume-owner stop stopped rm scope-gone state-gone; do
			skip $k "no running container"
		done
		$P rm -f -t 0 "$c" >/dev/null 2>&1
	fi

	# A published port through each user-mode network, busybox httpd
	# inside, fetched from this host.
	for net in pasta slirp4netns; do
		port=$RL_PORT
		RL_PORT=$((RL_PORT + 1))
		t0=$(date +%s)
		check port-$net-run rc=0 $P run -d --name "$c-$net" --network $net -p "127.0.0.1:$port:8080" localhost/busybox \
			sh -c 'mkdir -p /www && echo web-reply >/www/index.html && exec httpd -f -p 8080 -h /www'
		check port-$net "web-reply" sh -c "i=0; until busybox wget -q -T 3 -O - http://127.0.0.1:$port/ 2>/dev/null; do i=\$((i + 1)); [ \$i -lt 40 ] || { busybox wget -q -T 3 -O - http://127.0.0.1:$port/; exit 1; }; sleep 1; done"
		say "rootless: $n: $net port reached $(($(date +%s) - t0)) s after run"
		check port-$net-rm rc=0 $P rm -f -t 0 "$c-$net"
	done

	# OOM: exit 137, and podman's OOMKilled (conmon reads the scope's
	# memory.events; racy with every runtime, docs/hosts.md): twice.
	k1="" k2=""
	for o in oom oom2; do
		t0=$(date +%s)
		check $o-exit rc=137 $P run --name "$c-$o" --network none --memory 64m --memory-swap 64m localhost/busybox sh -c 'sleep 1; tail /dev/zero'
		say "rootless: $n: OOM run took $(($(date +%s) - t0)) s"
		k=$($P inspect -f '{{.State.OOMKilled}}' "$c-$o" 2>&1)
		ocid=$($P inspect -f '{{.Id}}' "$c-$o" 2>/dev/null)
		echo "     $o: OOMKilled $k"
		journalctl --no-pager -o short-monotonic --since "@$t0" 2>/dev/null | grep "libpod-$ocid" | tail -n 4 | sed 's/^/       journal: /'
		journalctl -k --no-pager -o short-monotonic --since "@$t0" 2>/dev/null | grep -iE 'oom|killed|qemu' | tail -n 6 | sed 's/^/       kernel: /'
		tail -n 5 "$RL_HOME/.local/share/containers/storage/overlay-containers/$ocid/userdata/oci-log" 2>/dev/null | sed 's/^/       oci-log: /'
		[ $o = oom ] && k1=$k || k2=$k
		check $o-rm rc=0 $P rm "$c-$o"
	done
	check oom-killed "true" sh -c "[ '$k1' = true ] || [ '$k2' = true ] && echo true || echo 'false twice ($k1, $k2)'"

	# Nothing left: no scope under the user's service, no state, no QEMU,
	# no tap or tun device on the host (ls: crun keeps a .cache in its root).
	check nothing-left "none" sh -c "
		s=\$(find '$RL_SVC' -name 'libpod-*.scope' -type d 2>/dev/null | grep -v conmon)
		st=\$(ls '$RL_XDG/$state' 2>/dev/null)
		q=\$(pgrep -a qemu-system)
		t=\$(ip -o link show type tun 2>/dev/null)
		[ -z \"\$s\$st\$q\$t\" ] && echo none || echo \"scopes: \$s; state: \$st; qemu: \$q; taps: \$t\""
}

rl_teardown() {
	timeout 120 "$RL_AS" podman rm -af -t 0 >/dev/null 2>&1
	timeout 120 "$RL_AS" podman system reset --force >/dev/null 2>&1
	loginctl disable-linger "$RL_USER" 2>/dev/null
	loginctl terminate-user "$RL_USER" 2>/dev/null
	systemctl stop "user@$RL_UID.service" 2>/dev/null
	userdel -r "$RL_USER" 2>/dev/null
	rm -f "$RL_AS"
	ip link del rl0 2>/dev/null
}

suite_rootless() {
	log=$R/rootless-setup.log
	t0=$(date +%s)
	if ! rl_setup >"$log" 2>&1; then
		cat "$log"
		row "rootless/setup/systemd 0 1 0 setup"
		return
	fi
	rl_net >>"$log" 2>&1
	rl_kvm >>"$log" 2>&1
	cat "$log"
	say "rootless: setup took $(($(date +%s) - t0)) s"
	ctl=$(cat "$RL_SVC/cgroup.subtree_control")
	RL_PIDS="" RL_CPU=""
	case " $ctl " in *" pids "*) RL_PIDS=1 ;; esac
	case " $ctl " in *" cpu "*) RL_CPU=1 ;; esac
	log=$R/rootless-check.log
	{
		rl_check_report
		rl_vm_accel
	} >"$log" 2>&1
	cat "$log"
	row "rootless/runh-check/systemd $PASS $FAIL $SKIP$FAILED"
	rts="/usr/sbin/runc"
	command -v crun >/dev/null && rts="$rts $(command -v crun)"
	rts="$rts /usr/bin/runh /usr/bin/runh-vm"
	RL_VM_ACCEL=""
	for rt in $rts; do
		n=${rt##*/}
		reset_counts
		CHECK_TIMEOUT=60
		[ "$n" = runh-vm ] && CHECK_TIMEOUT=${VM_TIMEOUT:-300}
		say "rootless: podman --runtime $rt --cgroup-manager systemd, as $RL_USER"
		rl_t0=$(date +%s)
		rl_scenario "$rt" >"$R/rootless-$n.log" 2>&1
		cat "$R/rootless-$n.log"
		say "rootless: $n took $(($(date +%s) - rl_t0)) s"
		row "rootless/$n/systemd $PASS $FAIL $SKIP$FAILED"
	done
	CHECK_TIMEOUT=60
	say "rootless: the user's QEMU: ${RL_ACCEL1:-not seen} as created, ${RL_VM_ACCEL:-not seen} in group kvm (/dev/kvm: $RL_KVM; runh check: $RL_ACCEL)"
	rl_teardown >>"$R/rootless-setup.log" 2>&1
}
