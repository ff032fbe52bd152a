package integration

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// allCaps lists the capabilities in the order of their numbers.
var allCaps = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
	"CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
	"CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"}

// boundingCaps are the capabilities of allCaps in this process's bounding
// set: what an engine's --privileged gives (a host may lack some).
func boundingCaps(t *testing.T) []string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	var set uint64
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapBnd:"); ok {
			set, err = strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	if err != nil || set == 0 {
		t.Fatalf("no bounding set in /proc/self/status: %v", err)
	}
	var caps []string
	for i, c := range allCaps {
		if set&(1<<i) != 0 {
			caps = append(caps, c)
		}
	}
	return caps
}

// privileged makes the container what an engine's --privileged makes it,
// as far as networking needs: every capability, /proc/sys writable,
// /dev/net/tun, a writable /run (iptables' lock).
func privileged(s *specs.Spec, caps []string) {
	c := s.Process.Capabilities
	c.Bounding, c.Effective, c.Permitted, c.Ambient = caps, caps, caps, caps
	s.Process.NoNewPrivileges = false
	s.Linux.ReadonlyPaths = nil
	s.Linux.MaskedPaths = nil
	mode := os.FileMode(0o666)
	s.Linux.Devices = append(s.Linux.Devices, specs.LinuxDevice{Path: "/dev/net/tun", Type: "c", Major: 10, Minor: 200, FileMode: &mode})
	s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	s.Mounts = append(s.Mounts, specs.Mount{Destination: "/run", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=755"}})
}

// netSteps are what privileged containers do with the kernel's network:
// Docker in Docker, kind, CNI plugins and kube-proxy. Each prints its name
// and "ok", or what failed.
var netSteps = [][2]string{
	{"bridge", "brctl addbr br0 && ip link set br0 up"},
	{"veth", "ip link add v0 type veth peer name v1 && ip link set v0 master br0"},
	{"vxlan", "ip link add vx0 type vxlan id 42 dstport 4789 local 127.0.0.1"},
	{"vlan", "ip link add link v1 name v1.10 type vlan id 10"},
	{"macvlan", "ip link add mv0 link v1 type macvlan mode bridge"},
	{"ipvlan", "ip link add v2 type veth peer name v3 && ip link add iv0 link v3 type ipvlan mode l2"},
	{"tap", "ip tuntap add tap0 mode tap"},
	{"iptables-nft", "iptables -t nat -A POSTROUTING -s 10.88.0.0/16 ! -o br0 -j MASQUERADE && iptables -t nat -S POSTROUTING | grep -q MASQUERADE"},
	{"iptables-conntrack", "iptables -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment runh -j ACCEPT && iptables -A FORWARD -p tcp -j REJECT --reject-with tcp-reset"},
	{"iptables-mark", "iptables -t mangle -A PREROUTING -j MARK --set-xmark 0x4000/0x4000 && iptables -t nat -A PREROUTING -p tcp --dport 80 -m statistic --mode random --probability 0.5 -j DNAT --to-destination 10.88.0.2:80"},
	{"iptables-legacy", "iptables-legacy -t nat -A POSTROUTING -o br0 -j MASQUERADE && iptables-legacy -t filter -A INPUT -m addrtype --dst-type LOCAL -j ACCEPT"},
	{"nftables", "nft add table inet runh && nft add chain inet runh c '{ type nat hook postrouting priority 100; }' && nft add rule inet runh c oifname != br0 masquerade && nft list ruleset | grep -q masquerade"},
}

// hostLacks matches the errors of a kernel without the feature asked for.
var hostLacks = regexp.MustCompile(`Unknown device type|not supported|Protocol not available|No such file or directory|Package not installed`)

// TestPrivilegedNetwork: a privileged container builds bridges, veths,
// overlays and firewall rules as on the host, whatever its isolation
// (the guest kernel has what a distribution kernel offers containers).
func TestPrivilegedNetwork(t *testing.T) {
	root := os.Getenv("RUNH_TEST_DEBIAN_ROOTFS")
	caps := boundingCaps(t)
	forEachMode(t, func(t *testing.T, x *h) {
		if root == "" {
			t.Skip("RUNH_TEST_DEBIAN_ROOTFS not set (make integration builds it with scripts/mkdebian.sh)")
		}
		if _, err := os.Stat(filepath.Join(root, "usr/sbin/nft")); err != nil {
			t.Skipf("no nft in %s (an older scripts/mkdebian.sh build): %v", root, err)
		}
		var script, want strings.Builder
		for _, s := range netSteps {
			script.WriteString("if out=$( (" + s[1] + ") 2>&1); then echo " + s[0] + " ok; else echo " + s[0] + " failed: $out; fi\n")
			want.WriteString(s[0] + " ok\n")
		}
		id := x.id("privnet")
		bundle := x.bundle("privnet", func(s *specs.Spec) {
			s.Root = &specs.Root{Path: root, Readonly: true}
			privileged(s, caps)
		}, "sh", "-c", script.String())
		r := x.must("run", "--bundle", bundle, id)
		if x.mode == ModeHypervisor {
			// runh's guest kernel has all of it built in.
			if r.stdout != want.String() {
				t.Errorf("got:\n%s\nwant:\n%s", r.stdout, want.String())
			}
			return
		}
		// In process isolation it is the host kernel's: what it lacks
		// (a module it does not have) is the host's, not runh's.
		for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			if strings.HasSuffix(l, " ok") {
				continue
			}
			if hostLacks.MatchString(l) {
				t.Logf("this host's kernel lacks it: %s", l)
			} else {
				t.Errorf("%s", l)
			}
		}
	})
}
