# suite-docker.sh: sourced by run.sh (docs/hosts.md); defines suite_docker,
# Debian 13's Docker (dockerd 26, Debian's docker.service and its
# containerd.service) with its default cgroup driver, systemd on this
# cgroup v2 host, and runh and runh-vm registered in daemon.json's
# "runtimes" (Docker's own runc, Debian's /usr/sbin/runc, is the
# reference). Per runtime: run with exit codes, run -d with --memory and a
# published port on the default bridge (busybox httpd, fetched with busybox
# wget from this host, through docker-proxy and straight to the
# container's address), exec, the container in system.slice's
# docker-<id>.scope with memory.max set (hypervisor isolation: the VM, shim
# and QEMU, in that scope, limited to the VM's size), stop, rm, OOM runs
# (exit 137, OOMKilled true, the kill counted in system.slice) and nothing
# left. Rows:
#   docker/<runtime>/systemd <pass> <fail> <skip> [failed names]
# The image is mkrootfs.sh's busybox rootfs, `docker import`ed: no registry.

DOCKER_RUNTIMES=${DOCKER_RUNTIMES:-"runc runh runh-vm"}
DOCKER_OOM_RUNS=${DOCKER_OOM_RUNS:-2}
DOCKER_PORT=18080

# docker_setup: daemon.json, dockerd started by Debian's units, the image.
docker_setup() {
	command -v docker >/dev/null || { echo "no docker CLI (package docker-cli, which docker.io only recommends)"; return 1; }
	mkdir -p /etc/docker
	cat >/etc/docker/daemon.json <<'EOF'
{
  "runtimes": {
    "runh": {"path": "/usr/bin/runh"},
    "runh-vm": {"path": "/usr/bin/runh-vm"}
  }
}
EOF
	echo "/etc/docker/daemon.json:"
	sed 's/^/    /' /etc/docker/daemon.json
	t0=$(date +%s)
	timeout 180 systemctl start docker.socket docker.service || {
		echo "docker.service did not start:"
		journalctl --no-pager -o cat -u docker.service -u containerd.service | tail -n 20
		return 1
	}
	say "docker: dockerd up in $(($(date +%s) - t0)) s"
	timeout 60 docker info 2>&1 | grep -E 'Server Version|Cgroup|Runtimes|Default Runtime|Storage Driver|containerd version|runc version|Kernel'
	busybox_image docker
}

# docker_leftovers: containers, scopes, shims, QEMU and runtime state left
# ("none" when nothing).
docker_leftovers() {
	{
		docker ps -a -q | sed 's/^/container /'
		runtime_leftovers 'docker-*.scope'
		find /run/docker/runtime-runc /run/containerd/runc -mindepth 2 -maxdepth 2 2>/dev/null | sed 's/^/state /'
	} | grep . || echo none
}

docker_scenarios() {
	rt=$1
	D="docker"
	c=ht-docker-$(echo "$rt" | tr -d -)
	vm=0
	[ "$rt" = runh-vm ] && vm=1
	mem=67108864
	$D rm -f "$c" >/dev/null 2>&1
	t0=$(date +%s)
	check run "hello" $D run --rm --runtime "$rt" --network none localhost/busybox echo hello
	say "docker: $rt: run --rm took $(($(date +%s) - t0)) s"
	check exit-code rc=3 $D run --rm --runtime "$rt" --network none localhost/busybox sh -c 'exit 3'
	# A web server on the default bridge, its port published.
	check run-d rc=0 $D run -d --runtime "$rt" --name "$c" --memory 64m -p "127.0.0.1:$DOCKER_PORT:8080" localhost/busybox \
		sh -c 'mkdir -p /www && echo hello-docker >/www/index.html && exec httpd -f -p 8080 -h /www'
	pid=$($D inspect -f '{{.State.Pid}}' "$c" 2>/dev/null)
	cid=$($D inspect -f '{{.Id}}' "$c" 2>/dev/null)
	if [ -n "$pid" ] && [ "$pid" != 0 ]; then
		cg=$(scope_of "$pid")
		ip=$($D inspect -f '{{.NetworkSettings.IPAddress}}' "$c" 2>/dev/null)
		echo "     pid $pid ($(cat /proc/$pid/comm 2>/dev/null)), cgroup $cg, address $ip; its processes:"
		for p in $(cat "/sys/fs/cgroup$cg/cgroup.procs" 2>/dev/null); do echo "       $p $(cat /proc/$p/comm 2>/dev/null)"; done
		echo "     unit: $(systemctl show -p Slice -p Delegate -p KillMode -p OOMPolicy -p MemoryMax "docker-$cid.scope" 2>/dev/null | tr '\n' ' ')"
		check running "running" $D inspect -f '{{.State.Status}}' "$c"
		check exec "hi" $D exec "$c" echo hi
		check exec-exit rc=5 $D exec "$c" sh -c 'exit 5'
		check limit-inside "$mem" $D exec "$c" sh -c 'cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes'
		check cgroup-scope "/system.slice/docker-$cid.scope" echo "$cg"
		check scope-unit "active" systemctl is-active "docker-$cid.scope"
		if [ $vm = 1 ]; then
			# The VM's host limit: its RAM plus QEMU's overhead (hvshim).
			echo "     memory.max $(cat "/sys/fs/cgroup$cg/memory.max" 2>/dev/null)"
			check memory-max "limited" sh -c "v=\$(cat '/sys/fs/cgroup$cg/memory.max') && [ \"\$v\" != max ] && [ \"\$v\" -ge $mem ] && echo limited || echo \"\$v\""
			check qemu-in-scope "yes" sh -c "for p in \$(cat '/sys/fs/cgroup$cg/cgroup.procs'); do grep -q qemu /proc/\$p/comm && echo yes && break; done"
			check guest-kernel "runh" sh -c "$D exec $c uname -r | sed 's/.*-runh\$/runh/'"
		else
			check memory-max "$mem" cat "/sys/fs/cgroup$cg/memory.max"
		fi
		check port-published "hello-docker" sh -c "for i in \$(seq 30); do busybox wget -T 5 -qO- http://127.0.0.1:$DOCKER_PORT/ 2>/dev/null && exit 0; sleep 0.5; done; exit 1"
		check bridge-address "hello-docker" sh -c "for i in \$(seq 30); do busybox wget -T 5 -qO- http://$ip:8080/ 2>/dev/null && exit 0; sleep 0.5; done; exit 1"
		check stop rc=0 $D stop -t 2 "$c"
		check stopped "exited" $D inspect -f '{{.State.Status}}' "$c"
		check rm rc=0 $D rm "$c"
		check scope-gone "gone" sh -c "systemctl is-active docker-$cid.scope >/dev/null 2>&1 && echo unit-left || { test -d '/sys/fs/cgroup$cg' && echo cgroup-left || echo gone; }"
	else
		$D logs "$c" 2>&1 | tail -n 5 | sed 's/^/     log: /'
		for n in running exec exec-exit limit-inside cgroup-scope scope-unit memory-max port-published bridge-address stop stopped rm scope-gone; do
			skip $n "no running container"
		done
		$D rm -f "$c" >/dev/null 2>&1
	fi
	o=1
	while [ $o -le "$DOCKER_OOM_RUNS" ]; do
		before=$(oom_kills /sys/fs/cgroup/system.slice)
		t0=$(date +%s)
		check oom$o-exit rc=137 $D run --runtime "$rt" --name "$c-oom$o" --network none --memory 32m --memory-swap 32m \
			localhost/busybox sh -c 'sleep 1; tail /dev/zero'
		say "docker: $rt: OOM run took $(($(date +%s) - t0)) s"
		check oom$o-killed "true" $D inspect -f '{{.State.OOMKilled}}' "$c-oom$o"
		check oom$o-counted "counted" echo "$(counted /sys/fs/cgroup/system.slice "$before")"
		ocid=$($D inspect -f '{{.Id}}' "$c-oom$o" 2>/dev/null)
		journal_of "docker-$ocid.scope"
		check oom$o-rm rc=0 $D rm "$c-oom$o"
		o=$((o + 1))
	done
	sleep 1
	check nothing-left "none" echo "$(docker_leftovers)"
}

# docker_teardown: stops dockerd and its containerd, removes what Docker
# left in the network (docker0 and its iptables rules; FORWARD's policy,
# which dockerd sets to DROP, back to ACCEPT) for the suites after this.
docker_teardown() {
	timeout 120 systemctl stop docker.service docker.socket containerd.service
	ip link del docker0 2>/dev/null
	for t in filter nat; do
		iptables -t $t -S 2>/dev/null | grep -- '-j DOCKER' | grep '^-A' | sed 's/^-A/-D/' |
			while read -r rule; do eval "iptables -t $t $rule"; done
		for ch in $(iptables -t $t -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^DOCKER/ {print $2}'); do
			iptables -t $t -F "$ch"
		done
		for ch in $(iptables -t $t -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^DOCKER/ {print $2}'); do
			iptables -t $t -X "$ch"
		done
	done
	iptables -P FORWARD ACCEPT 2>/dev/null
	rm -f /etc/docker/daemon.json
}

suite_docker() {
	reset_counts
	log=$R/docker-setup.log
	t0=$(date +%s)
	if ! docker_setup >"$log" 2>&1; then
		cat "$log"
		for rt in $DOCKER_RUNTIMES; do row "docker/$rt/systemd 0 1 0 setup"; done
		journalctl --no-pager -o short-monotonic -u docker.service -u containerd.service >"$R/docker-daemon.log" 2>&1
		docker_teardown >/dev/null 2>&1
		return
	fi
	cat "$log"
	say "docker: ready in $(($(date +%s) - t0)) s"
	docker_timeout=${CHECK_TIMEOUT:-60}
	for rt in $DOCKER_RUNTIMES; do
		log=$R/docker-$rt.log
		reset_counts
		ht0=$(date +%s)
		CHECK_TIMEOUT=60
		[ "$rt" = runh-vm ] && CHECK_TIMEOUT=${VM_TIMEOUT:-300}
		say "docker: --runtime $rt"
		docker_scenarios "$rt" >"$log" 2>&1
		CHECK_TIMEOUT=$docker_timeout
		cat "$log"
		say "docker: $rt took $(($(date +%s) - ht0)) s"
		row "docker/$rt/systemd $PASS $FAIL $SKIP$FAILED"
	done
	journalctl --no-pager -o short-monotonic -u docker.service -u containerd.service >"$R/docker-daemon.log" 2>&1
	docker_teardown >>"$R/docker-setup.log" 2>&1
}
