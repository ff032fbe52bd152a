# suite-cri.sh: sourced by run.sh (docs/hosts.md); defines suite_cri, the
# Kubernetes CRI of Debian 13's containerd (1.7) through crictl, with the
# systemd cgroup driver (SystemdCgroup = true), as a kubelet with
# cgroupDriver: systemd drives it. One containerd of its own (a transient
# unit, its own config, socket, root and state; Debian's containerd.service
# stays off) with three runtime handlers that differ only in BinaryName:
# runc (/usr/sbin/runc, the reference), runh and runh-vm. Per handler, in a
# pod slice of its own (runhtest-<handler>.slice, made as the kubelet makes
# a pod's: a transient slice with MemoryMax): a pod of two containers
# (running, exec with exit codes, the pod network), each container in its
# systemd scope <slice>/cri-containerd-<id>.scope with memory.max its limit
# (hypervisor isolation: the limit is the guest's; the VM, shim and QEMU,
# in the sandbox's scope under the limited slice), OOM kills (exit 137,
# reason OOMKilled, counted in the slice), stop and removal, and nothing
# left: no scope, cgroup, QEMU, shim or runtime state. Rows:
#   cri/<handler>/systemd <pass> <fail> <skip> [failed names]
# crictl comes from the host (build/engines/bin/crictl, HOSTS_EXTRA); the
# images are built here from mkrootfs.sh's busybox rootfs and imported
# offline with ctr, as the engines tests do (integration/engines).

CRI_DIR=/run/runh-cri
CRI_LIB=/var/lib/runh-cri
CRI_SOCK=$CRI_DIR/containerd.sock
CRI_UNIT=runh-cri-containerd
CRI_BRIDGE=runhcri0
CRI_SUBNET=10.88.77.0/24
CRI_HANDLERS=${CRI_HANDLERS:-"runc runh runh-vm"}
CRI_OOM_RUNS=${CRI_OOM_RUNS:-2}
CRI_IMAGE=localhost/runh-busybox:latest
CRI_PAUSE=localhost/runh-pause:latest

# cri ARGS: crictl on this containerd (a script, which check can run;
# cri_setup writes it).
CRI=/usr/local/bin/ht-crictl
cri() { timeout -k 5 "${CHECK_TIMEOUT:-60}" "$CRI" "$@"; }
cri_ctr() { timeout -k 5 120 ctr --address "$CRI_SOCK" "$@"; }

# cri_blob LAYOUT FILE: moves FILE into the layout's blobs by its digest and
# prints "sha256:<hex> <size>".
cri_blob() {
	cb_h=$(sha256sum "$2" | cut -d' ' -f1)
	cb_n=$(stat -c %s "$2")
	mv "$2" "$1/blobs/sha256/$cb_h"
	echo "sha256:$cb_h $cb_n"
}

# cri_oci_archive OUT: an OCI image layout tarball of two images over one
# uncompressed layer, mkrootfs.sh's busybox rootfs, as
# integration/engines/images_test.go writes it for the engines tests:
# $CRI_IMAGE (CMD /bin/sh) and the sandbox image $CRI_PAUSE (sleep).
cri_oci_archive() {
	ca_d=$(mktemp -d)
	ca_l=$ca_d/layout
	mkdir -p "$ca_l/blobs/sha256"
	sh "$S/mkrootfs.sh" "$ca_d/rootfs" >/dev/null &&
		tar -C "$ca_d/rootfs" --numeric-owner -cf "$ca_d/layer.tar" . || { rm -rf "$ca_d"; return 1; }
	set -- "$1" $(cri_blob "$ca_l" "$ca_d/layer.tar")
	ca_out=$1 ca_ld=$2 ca_ls=$3
	ca_list=""
	for ca_img in "$CRI_IMAGE|\"Cmd\":[\"/bin/sh\"]" "$CRI_PAUSE|\"Entrypoint\":[\"/bin/sleep\",\"2147483647\"]"; do
		ca_name=${ca_img%%|*}
		printf '{"created":"1970-01-01T00:00:00Z","architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],%s},"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
			"${ca_img#*|}" "$ca_ld" >"$ca_d/config.json"
		set -- $(cri_blob "$ca_l" "$ca_d/config.json")
		printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%s}]}' \
			"$1" "$2" "$ca_ld" "$ca_ls" >"$ca_d/manifest.json"
		set -- $(cri_blob "$ca_l" "$ca_d/manifest.json")
		ca_list="$ca_list${ca_list:+,}$(printf '{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"latest"}}' "$1" "$2" "$ca_name")"
	done
	printf '{"schemaVersion":2,"manifests":[%s]}' "$ca_list" >"$ca_l/index.json"
	echo '{"imageLayoutVersion":"1.0.0"}' >"$ca_l/oci-layout"
	tar -C "$ca_l" -cf "$ca_out" oci-layout index.json blobs
	ca_rc=$?
	rm -rf "$ca_d"
	return $ca_rc
}

# cri_setup: containerd with the CRI plugin, the three handlers, a CNI
# bridge, the images; says why not on failure.
cri_setup() {
	[ -x "$S/crictl" ] || { echo "no crictl in the share (HOSTS_EXTRA: make test-hosts passes build/engines/bin/crictl)"; return 1; }
	install -m 0755 "$S/crictl" /usr/local/bin/crictl
	printf '#!/bin/sh\nexec /usr/local/bin/crictl --config /dev/null --runtime-endpoint unix://%s --image-endpoint unix://%s --timeout 3m "$@"\n' \
		"$CRI_SOCK" "$CRI_SOCK" >"$CRI"
	chmod 0755 "$CRI"
	systemctl stop "$CRI_UNIT" >/dev/null 2>&1
	systemctl reset-failed "$CRI_UNIT" >/dev/null 2>&1
	rm -rf "$CRI_DIR" "$CRI_LIB"
	mkdir -p "$CRI_DIR/cni" "$CRI_LIB"
	{
		cat <<EOF
version = 2
root = "$CRI_LIB/root"
state = "$CRI_DIR/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$CRI_SOCK"
[ttrpc]
  address = "$CRI_SOCK.ttrpc"
[debug]
  level = "debug"
[plugins."io.containerd.internal.v1.opt"]
  path = "$CRI_LIB/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$CRI_PAUSE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CRI_DIR/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
EOF
		for h in runc runh runh-vm; do
			case $h in runc) b=/usr/sbin/runc ;; *) b=/usr/bin/$h ;; esac
			cat <<EOF
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.$h]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.$h.options]
      BinaryName = "$b"
      SystemdCgroup = true
EOF
		done
	} >"$CRI_DIR/config.toml"
	cat >"$CRI_DIR/cni/10-runhcri.conflist" <<EOF
{"cniVersion": "0.4.0", "name": "runhcri", "plugins": [
  {"type": "bridge", "bridge": "$CRI_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$CRI_DIR/ipam", "ranges": [[{"subnet": "$CRI_SUBNET"}]],
            "routes": [{"dst": "0.0.0.0/0"}]}}]}
EOF
	echo "containerd config ($CRI_DIR/config.toml):"
	sed 's/^/    /' "$CRI_DIR/config.toml"
	# As Debian's containerd.service runs it (Type=notify, Delegate=yes),
	# but with its own config; stopping the unit kills what is left in it.
	modprobe overlay 2>/dev/null
	timeout 120 systemd-run --unit "$CRI_UNIT" -p Type=notify -p Delegate=yes -p OOMScoreAdjust=-999 \
		-p LimitNOFILE=infinity -p TasksMax=infinity \
		/usr/bin/containerd --config "$CRI_DIR/config.toml" || { echo "containerd did not start"; return 1; }
	cri_ctr version || return 1
	t0=$(date +%s)
	cri_oci_archive "$CRI_DIR/images.tar" || { echo "cannot build the image archive"; return 1; }
	cri_ctr -n k8s.io images import "$CRI_DIR/images.tar" || { echo "ctr images import failed"; return 1; }
	rm -f "$CRI_DIR/images.tar"
	# The CRI plugin learns of images imported behind its back on a sync.
	i=0
	until cri images -q "$CRI_PAUSE" 2>/dev/null | grep -q sha256; do
		i=$((i + 1))
		[ $i -lt 30 ] || { echo "CRI does not list $CRI_PAUSE:"; cri images; return 1; }
		sleep 1
	done
	cri images
	say "cri: images imported in $(($(date +%s) - t0)) s"
	cri info -o go-template --template '{{.config.containerd.runtimes.runh.options}} {{.lastCNILoadStatus}}' 2>&1 | head -n 5
}

# cri_leftovers: the CRI's pods, containers, scopes, shims, QEMU and
# runtime state left ("none" when nothing).
cri_leftovers() {
	{
		cri pods -q | sed 's/^/pod /'
		cri ps -a -q | sed 's/^/container /'
		runtime_leftovers 'cri-containerd-*'
		ls /run/containerd/runc/k8s.io 2>/dev/null | sed 's/^/state /'
	} | grep . || echo none
}

# cri_json FILE: writes stdin to FILE and prints FILE.
cri_json() { cat >"$1" && echo "$1"; }

# cri_create NAME POD_ID POD_JSON MEMORY SCRIPT: a container of the pod
# (created and started); prints its ID.
cri_create() {
	cc_cfg=$(cri_json "$CRI_DIR/$1.json" <<EOF
{"metadata": {"name": "$1"}, "image": {"image": "$CRI_IMAGE"},
 "command": ["/bin/sh", "-c", "$5"], "log_path": "$1.log",
 "linux": {"resources": {"memory_limit_in_bytes": $4}}}
EOF
	)
	cc_id=$(cri create --no-pull "$2" "$cc_cfg" "$3" 2>&1) || { echo "     create $1: $cc_id" >&2; return 1; }
	if ! cc_out=$(cri start "$cc_id" 2>&1); then
		echo "     start $1 ($cc_id): $cc_out" >&2
		cri rm -f "$cc_id" >/dev/null 2>&1
		return 1
	fi
	echo "$cc_id"
}

# cri_state ID SECONDS: the container's state once it has exited, or
# the last seen after SECONDS (echo "$(cri_state ...)" in a check).
cri_state() {
	cw_i=0
	while :; do
		cw_s=$(cri inspect -o go-template --template '{{.status.state}}' "$1" 2>&1)
		[ "$cw_s" = CONTAINER_EXITED ] || [ $cw_i -ge "$2" ] && break
		sleep 1
		cw_i=$((cw_i + 1))
	done
	echo "$cw_s"
}

# cri_limit_of CGROUP: the nearest memory.max that is not "max", from the
# cgroup up ("max" if none), and where.
cri_limit_of() {
	cl_d=/sys/fs/cgroup$1
	while [ "$cl_d" != /sys/fs/cgroup ] && [ -n "$cl_d" ]; do
		cl_v=$(cat "$cl_d/memory.max" 2>/dev/null)
		if [ -n "$cl_v" ] && [ "$cl_v" != max ]; then
			echo "$cl_v ${cl_d#/sys/fs/cgroup}"
			return
		fi
		cl_d=${cl_d%/*}
	done
	echo max
}

# cri_scenarios HANDLER: the checks of one runtime handler.
cri_scenarios() {
	h=$1
	k=$(echo "$h" | tr -d -) # a slice name's dashes are its hierarchy
	slice=runhtest-$k.slice
	slicecg=/runhtest.slice/$slice
	vm=0
	[ "$h" = runh-vm ] && vm=1
	mem=67108864
	# The pod's slice, as the kubelet makes it (libcontainer's systemd
	# manager): a transient slice with the pod's limit.
	check slice rc=0 busctl call org.freedesktop.systemd1 /org/freedesktop/systemd1 \
		org.freedesktop.systemd1.Manager StartTransientUnit 'ssa(sv)a(sa(sv))' \
		"$slice" fail 2 MemoryMax t 1073741824 Description s "runh test pod slice ($h)" 0
	pod=$(cri_json "$CRI_DIR/pod-$k.json" <<EOF
{"metadata": {"name": "ht-$k", "namespace": "runhtest", "uid": "ht-$k-$(date +%s)", "attempt": 0},
 "log_directory": "$CRI_DIR/logs/$k",
 "linux": {"cgroup_parent": "$slice", "resources": {"memory_limit_in_bytes": 201326592}}}
EOF
	)
	t0=$(date +%s)
	podid=$(cri runp --runtime "$h" "$pod" 2>&1)
	rc=$?
	say "cri: $h: runp took $(($(date +%s) - t0)) s"
	if [ $rc -ne 0 ]; then
		echo "FAIL runp: $podid"
		FAIL=$((FAIL + 1)) FAILED="$FAILED runp"
		journalctl --no-pager -o cat -u "$CRI_UNIT" --since "@$t0" | grep -i 'level=error' | tail -n 5 | sed 's/^/    /'
		busctl call org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager \
			StopUnit ss "$slice" fail >/dev/null 2>&1
		return
	fi
	PASS=$((PASS + 1))
	echo "ok   runp ($podid)"
	check pod-ready "SANDBOX_READY" "$CRI" inspectp -o go-template --template '{{.status.state}}' "$podid"
	ip=$(cri inspectp -o go-template --template '{{.status.network.ip}}' "$podid" 2>/dev/null)
	echo "     pod IP $ip; sandbox cgroupsPath $(cri inspectp -o go-template --template '{{.info.runtimeSpec.linux.cgroupsPath}}' "$podid" 2>/dev/null)"
	c1=$(cri_create web "$podid" "$pod" $mem 'mkdir -p /www && echo hello-cri >/www/index.html && exec httpd -f -p 8080 -h /www')
	check create-web rc=0 test -n "$c1"
	c2=$(cri_create sleeper "$podid" "$pod" $mem 'exec sleep 1000')
	check create-sleeper rc=0 test -n "$c2"
	for c in "$c1" "$c2"; do
		[ -n "$c" ] || continue
		n=web
		[ "$c" = "$c2" ] && n=sleeper
		check $n-running "CONTAINER_RUNNING" "$CRI" inspect -o go-template --template '{{.status.state}}' "$c"
		check $n-exec "hi-$n" "$CRI" exec -s "$c" echo "hi-$n"
		# crictl exec -s exits 1 and names the command's exit code.
		check $n-exec-exit "exited with 3" sh -c "$CRI exec -s $c sh -c 'exit 3' 2>&1 | grep -o 'exited with [0-9]*'"
		# The limit the container sees (the guest's cgroup in a VM).
		check $n-limit-inside "$mem" "$CRI" exec -s "$c" sh -c 'cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes'
		cpid=$(cri inspect -o go-template --template '{{.info.pid}}' "$c" 2>/dev/null)
		cg=$(scope_of "$cpid")
		echo "     $n: pid $cpid ($(cat /proc/$cpid/comm 2>/dev/null)), cgroup $cg"
		echo "     unit: $(systemctl show -p Slice -p Delegate -p MemoryMax -p OOMPolicy "cri-containerd-$c.scope" 2>/dev/null | tr '\n' ' ')"
		check $n-scope "$slicecg/cri-containerd-$c.scope" echo "$cg"
		check $n-scope-unit "active" systemctl is-active "cri-containerd-$c.scope"
		if [ $vm = 1 ]; then
			echo "     memory.max $(cat "/sys/fs/cgroup$cg/memory.max" 2>/dev/null) (the member process's scope; the limit is the guest's)"
			skip $n-memory-max "hypervisor isolation: the container's limit is applied in the pod's VM; its host scope holds the member process only"
		else
			check $n-memory-max "$mem" cat "/sys/fs/cgroup$cg/memory.max"
		fi
	done
	# The pod network: within the pod (shared network namespace) and from
	# the host over the CNI bridge.
	if [ -n "$c1" ] && [ -n "$c2" ]; then
		check pod-net-local "hello-cri" "$CRI" exec -s "$c2" sh -c 'for i in $(seq 30); do wget -qO- http://127.0.0.1:8080/ 2>/dev/null && exit 0; sleep 0.5; done; exit 1'
	fi
	check pod-net-host "hello-cri" sh -c "for i in \$(seq 30); do busybox wget -T 5 -qO- http://$ip:8080/ 2>/dev/null && exit 0; sleep 0.5; done; exit 1"
	# The sandbox: its scope; in hypervisor isolation the pod's VM (shim
	# and QEMU) is in it, under the slice's limit.
	spid=$(cri inspectp -o go-template --template '{{.info.pid}}' "$podid" 2>/dev/null)
	scg=$(scope_of "$spid")
	echo "     sandbox: pid $spid ($(cat /proc/$spid/comm 2>/dev/null)), cgroup $scg, its processes:"
	for p in $(cat "/sys/fs/cgroup$scg/cgroup.procs" 2>/dev/null); do echo "       $p $(cat /proc/$p/comm 2>/dev/null)"; done
	echo "     sandbox spec resources: $(cri inspectp -o go-template --template '{{.info.runtimeSpec.linux.resources}}' "$podid" 2>/dev/null)"
	echo "     sandbox scope memory.max $(cat "/sys/fs/cgroup$scg/memory.max" 2>/dev/null); nearest limit: $(cri_limit_of "$scg")"
	check sandbox-scope "$slicecg/cri-containerd-$podid.scope" echo "$scg"
	if [ $vm = 1 ]; then
		check vm-qemu-in-scope "yes" sh -c "for p in \$(cat '/sys/fs/cgroup$scg/cgroup.procs'); do grep -q qemu /proc/\$p/comm && echo yes && break; done"
		check vm-limited "yes" sh -c "case '$(cri_limit_of "$scg")' in max) echo no ;; *) echo yes ;; esac"
		check guest-kernel "runh" sh -c "$CRI exec -s $c2 uname -r | sed 's/.*-runh\$/runh/'"
	fi
	# OOM: a container over its limit, killed; the CRI's verdict, and the
	# kill counted in the pod's slice (v2 counts are hierarchical).
	o=1
	while [ $o -le "$CRI_OOM_RUNS" ]; do
		before=$(oom_kills "/sys/fs/cgroup$slicecg")
		t0=$(date +%s)
		oc=$(cri_create oom$o "$podid" "$pod" 50331648 'sleep 1; tail /dev/zero')
		check oom$o-create rc=0 test -n "$oc"
		if [ -n "$oc" ]; then
			check oom$o-exited "CONTAINER_EXITED" echo "$(cri_state "$oc" "$((${CHECK_TIMEOUT:-60} - 5))")"
			say "cri: $h: OOM container ended after $(($(date +%s) - t0)) s"
			check oom$o-status "137 OOMKilled" "$CRI" inspect -o go-template --template '{{.status.exitCode}} {{.status.reason}}' "$oc"
			check oom$o-counted "counted" echo "$(counted "/sys/fs/cgroup$slicecg" "$before")"
			journal_of "cri-containerd-$oc.scope"
			check oom$o-rm rc=0 "$CRI" rm "$oc"
			check oom$o-scope-gone "gone" sh -c "systemctl is-active cri-containerd-$oc.scope >/dev/null 2>&1 && echo unit-left || { test -d '/sys/fs/cgroup$slicecg/cri-containerd-$oc.scope' && echo cgroup-left || echo gone; }"
		fi
		o=$((o + 1))
	done
	# Stop and removal.
	for c in "$c1" "$c2"; do
		[ -n "$c" ] || continue
		n=web
		[ "$c" = "$c2" ] && n=sleeper
		check $n-stop rc=0 "$CRI" stop --timeout 2 "$c"
		check $n-stopped "CONTAINER_EXITED" "$CRI" inspect -o go-template --template '{{.status.state}}' "$c"
		check $n-rm rc=0 "$CRI" rm "$c"
	done
	check stopp rc=0 "$CRI" stopp "$podid"
	check rmp rc=0 "$CRI" rmp "$podid"
	# Nothing left: systemd may take a moment to collect a scope.
	sleep 2
	check nothing-left "none" echo "$(cri_leftovers)"
	check slice-empty "empty" sh -c "find '/sys/fs/cgroup$slicecg' -mindepth 1 -type d | grep . || echo empty"
	check slice-stop rc=0 systemctl stop "$slice"
	check slice-gone "gone" sh -c "test -d '/sys/fs/cgroup$slicecg' && echo cgroup-left || echo gone"
}

suite_cri() {
	reset_counts
	cri_timeout=${CHECK_TIMEOUT:-60}
	log=$R/cri-setup.log
	t0=$(date +%s)
	if ! cri_setup >"$log" 2>&1; then
		cat "$log"
		for h in $CRI_HANDLERS; do row "cri/$h/systemd 0 1 0 setup"; done
		journalctl --no-pager -o cat -u "$CRI_UNIT" >"$R/cri-containerd.log" 2>&1
		systemctl stop "$CRI_UNIT" >/dev/null 2>&1
		return
	fi
	cat "$log"
	say "cri: containerd and images ready in $(($(date +%s) - t0)) s"
	for h in $CRI_HANDLERS; do
		log=$R/cri-$h.log
		reset_counts
		ht0=$(date +%s)
		say "cri: handler $h (SystemdCgroup = true)"
		CHECK_TIMEOUT=60
		[ "$h" = runh-vm ] && CHECK_TIMEOUT=${VM_TIMEOUT:-300}
		cri_scenarios "$h" >"$log" 2>&1
		CHECK_TIMEOUT=$cri_timeout
		cat "$log"
		say "cri: $h took $(($(date +%s) - ht0)) s"
		row "cri/$h/systemd $PASS $FAIL $SKIP$FAILED"
	done
	journalctl --no-pager -o short-monotonic -u "$CRI_UNIT" >"$R/cri-containerd.log" 2>&1
	systemctl stop "$CRI_UNIT" >/dev/null 2>&1
	systemctl stop runhtest.slice >/dev/null 2>&1
	ip link del "$CRI_BRIDGE" >/dev/null 2>&1
	rm -rf "$CRI_DIR" "$CRI_LIB"
}
