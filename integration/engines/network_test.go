package engines

// Networking through the engines: podman on CNI bridge networks of its own,
// a second private dockerd with iptables and a user-defined bridge, and
// `ctr run --cni`. The same bodies run in both modes: a VM-isolated
// container must get the engine's network namespace mirrored into its VM.
//
// Every network is private (10.89.100+.0/24, fd89:89:100+::/64, bridges
// named by podman or rhnt<N>), traffic only goes to 127.0.0.1 and to those
// addresses, and what the engines leave on the host (bridges, iptables
// chains, forwarding sysctls) is put back when the suite ends.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// ---- addresses ----

// netSeq numbers the networks of a run; netBase is where the run starts in
// 10.89.100-254, at random, so that concurrent runs rarely meet, and
// nextSubnet skips subnets the host already uses.
var (
	netSeq  atomic.Int32
	netBase = rand.IntN(155)
)

type subnet struct {
	n      int
	v4, v6 string // 10.89.N.0/24, fd89:89:N::/64
	bridge string // rhnt<N>, for the bridges the test names itself
}

func nextSubnet(t *testing.T) subnet {
	t.Helper()
	for range 155 {
		n := 100 + (netBase+int(netSeq.Add(1)))%155
		s := subnet{n: n, v4: fmt.Sprintf("10.89.%d.0/24", n), v6: fmt.Sprintf("fd89:89:%d::/64", n), bridge: fmt.Sprintf("rhnt%d", n)}
		if !s.inUse() {
			return s
		}
	}
	t.Fatal("no free test subnet in 10.89.100-254.0/24")
	return subnet{}
}

// inUse says whether the host has the subnet's bridge or an address in it.
func (s subnet) inUse() bool {
	if fileExists("/sys/class/net/" + s.bridge) {
		return true
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && s.contains(ipn.IP.String()) {
			return true
		}
	}
	return false
}

// gateway is the subnet's first address, which CNI and Docker give the bridge.
func (s subnet) gateway() string { return fmt.Sprintf("10.89.%d.1", s.n) }

func (s subnet) contains(ip string) bool {
	_, n, _ := net.ParseCIDR(s.v4)
	_, n6, _ := net.ParseCIDR(s.v6)
	a := net.ParseIP(ip)
	return a != nil && (n.Contains(a) || n6.Contains(a))
}

// freePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// ---- in-container servers and clients (busybox) ----

// ncServer answers every TCP connection on port 9000 with reply. busybox's
// nc with -ll -e serves for ever, on IPv4 and IPv6.
func ncServer(reply string) []string {
	return []string{"nc", "-ll", "-p", "9000", "-e", "echo", reply}
}

// httpdScript serves "web-reply" on port 8080.
const httpdScript = "mkdir -p /www && echo web-reply > /www/index.html && exec httpd -f -p 8080 -h /www"

// ncGet connects to host:9000 from inside a container and prints the reply;
// stdin is closed at once, busybox nc still prints what comes back.
func ncGet(host string) string { return "nc -w 3 " + host + " 9000 </dev/null" }

// dial connects from the host to addr and returns what the server sends
// before it closes the connection.
func dial(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	return strings.TrimSpace(string(b)), err
}

// eventually retries f every half second until it succeeds or d passes, and
// fails the test with f's last error. Servers in VMs take a while to boot.
func eventually(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %s: %v", what, d, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// expectReply checks that a connection to addr from the host gets want.
func expectReply(t *testing.T, d time.Duration, addr, want string) {
	t.Helper()
	eventually(t, d, "host -> "+addr, func() error {
		got, err := dial(addr)
		if err == nil && got != want {
			err = fmt.Errorf("got %q, want %q", got, want)
		}
		return err
	})
}

// resultIs turns a command's outcome into an error unless it printed want.
func resultIs(r result, want string) error {
	if got := strings.TrimSpace(r.stdout); r.code != 0 || got != want {
		return fmt.Errorf("want %q, %s", want, r)
	}
	return nil
}

// ifaceList prints one line per interface: name, ARP hardware type (1 for
// Ethernet), MAC, MTU, IPv4 address/prefix.
const ifaceList = `for i in /sys/class/net/*; do n=${i##*/}; echo "$n $(cat $i/type) $(cat $i/address) $(cat $i/mtu) $(ip -o -4 addr show dev $n | awk '{print $4}')"; done`

// ---- host state: snapshot once, put back at the end ----

// hostSysctls are the knobs CNI's bridge plugin and dockerd turn on.
var hostSysctls = []string{
	"/proc/sys/net/ipv4/ip_forward",
	"/proc/sys/net/ipv6/conf/all/forwarding",
	"/proc/sys/net/ipv6/conf/default/forwarding",
	"/proc/sys/net/ipv4/conf/all/route_localnet",
	"/proc/sys/net/bridge/bridge-nf-call-iptables",
	"/proc/sys/net/bridge/bridge-nf-call-ip6tables",
}

var iptablesTables = []string{"filter", "nat", "mangle", "raw"}

// hostNetDirs are written by CNI (IPAM leases, result cache) and podman
// (named network namespaces, /run/netns bound onto itself) wherever their
// configuration points.
var hostNetDirs = []string{"/var/lib/cni", "/run/netns"}

// hostNetState is saved as JSON between concurrent runs (hostNetBegin).
type hostNetState struct {
	Links   map[string]bool
	Sysctls map[string]string
	Rules   map[string]map[string]bool // "iptables nat" -> lines of -S
	Dirs    map[string]bool            // which hostNetDirs existed
}

func snapshotHostNet() hostNetState {
	s := hostNetState{Links: map[string]bool{}, Sysctls: map[string]string{}, Rules: map[string]map[string]bool{}, Dirs: map[string]bool{}}
	for _, d := range hostNetDirs {
		s.Dirs[d] = fileExists(d)
	}
	for _, l := range hostLinks() {
		s.Links[l] = true
	}
	for _, p := range hostSysctls {
		if b, err := os.ReadFile(p); err == nil {
			s.Sysctls[p] = strings.TrimSpace(string(b))
		}
	}
	for _, ipt := range []string{"iptables", "ip6tables"} {
		for _, tbl := range iptablesTables {
			s.Rules[ipt+" "+tbl] = iptablesRules(ipt, tbl)
		}
	}
	return s
}

// Engine runs may overlap on one host: the first to start saves the
// host's network state, the last to end puts it back (under an flock, shared
// while a run goes on).
const (
	hostNetLock  = "/run/lock/runh-engines-net.lock"
	hostNetSaved = "/run/lock/runh-engines-net.json"
)

// hostNetBegin saves the host's network state unless a run going on did,
// and returns what puts it back when this run ends, if it is the last; end
// says whether it was (no other engines run goes on).
func hostNetBegin() (end func() (last bool)) {
	f, err := os.OpenFile(hostNetLock, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		fmt.Println("engines: no lock for the host's network state, restoring this run's view:", err)
		s := snapshotHostNet()
		return func() bool { restoreHostNet(s); return true }
	}
	fd := int(f.Fd())
	_ = syscall.Flock(fd, syscall.LOCK_EX)
	if !fileExists(hostNetSaved) {
		b, _ := json.Marshal(snapshotHostNet())
		if err := os.WriteFile(hostNetSaved, b, 0o600); err != nil {
			fmt.Println("engines:", err)
		}
	}
	_ = syscall.Flock(fd, syscall.LOCK_SH)
	return func() bool {
		defer f.Close()
		if syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			fmt.Println("engines: another engines run goes on; it puts the host's network state back")
			return false
		}
		var s hostNetState
		b, err := os.ReadFile(hostNetSaved)
		if err == nil {
			err = json.Unmarshal(b, &s)
		}
		if err != nil {
			fmt.Println("engines: host network state not restored:", err)
		} else {
			restoreHostNet(s)
		}
		os.Remove(hostNetSaved)
		// The lock file stays: a run starting meanwhile may be waiting
		// on it, and one that opened a new file would not see the runs
		// that hold the old one (it then took the last snapshot for its
		// own and undid their networks at its end).
		return true
	}
}

func hostLinks() []string {
	entries, _ := os.ReadDir("/sys/class/net")
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// iptablesRules lists a table as -S prints it, nil if that fails.
func iptablesRules(ipt, table string) map[string]bool {
	r := runCmd(runOpts{timeout: 30 * time.Second}, ipt, "-w", "-t", table, "-S")
	if r.code != 0 || r.err != nil {
		return nil
	}
	out := map[string]bool{}
	for _, l := range strings.Split(r.stdout, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out[l] = true
		}
	}
	return out
}

// testAddr says whether an iptables word (an address, a CIDR, ip:port) is
// in the test subnets: 10.89.100-254.x or fd89:89::/32.
func testAddr(w string) bool {
	w, _, _ = strings.Cut(w, "/")
	if h, _, err := net.SplitHostPort(w); err == nil {
		w = h
	}
	ip := net.ParseIP(w)
	if ip4 := ip.To4(); ip4 != nil {
		return ip4[0] == 10 && ip4[1] == 89 && ip4[2] >= 100
	}
	return ip != nil && ip[0] == 0xfd && ip[1] == 0x89 && ip[2] == 0 && ip[3] == 0x89
}

// testRule says whether a rule (a line of -S) belongs to the tests: it jumps
// to a chain made during the run, or names a test bridge or subnet. Rules
// that, say, the host's own Docker adds meanwhile stay.
func testRule(line string, newChain map[string]bool) bool {
	f := strings.Fields(line)
	for i, w := range f {
		if (w == "-j" || w == "-g") && i+1 < len(f) && newChain[f[i+1]] {
			return true
		}
		if strings.HasPrefix(w, "rhnt") || strings.HasPrefix(w, "cni-podman") || testAddr(w) {
			return true
		}
	}
	return false
}

// restoreHostNet removes the bridges, iptables rules and chains that
// appeared since s and are the engines' (not whatever else the host may be
// doing meanwhile), and puts changed sysctls and chain policies back.
func restoreHostNet(s hostNetState) {
	for _, l := range hostLinks() {
		if !s.Links[l] && (strings.HasPrefix(l, "rhnt") || strings.HasPrefix(l, "cni-podman")) {
			fmt.Println("engines: removing leftover link", l)
			runCmd(runOpts{timeout: 30 * time.Second}, "ip", "link", "del", l)
		}
	}
	for _, ipt := range []string{"iptables", "ip6tables"} {
		for _, tbl := range iptablesTables {
			cmds, rules, chains, policies := iptablesUndo(s.Rules[ipt+" "+tbl], iptablesRules(ipt, tbl))
			if len(cmds) == 0 {
				continue
			}
			fmt.Printf("engines: %s -t %s: undoing what the engines left: %d rules, chains %v, policies %v\n", ipt, tbl, rules, chains, policies)
			for _, c := range cmds {
				// One command at a time, so that one failure stops no other;
				// iptables-restore parses the quoting of -S's output for us.
				in := fmt.Sprintf("*%s\n%s\nCOMMIT\n", tbl, c)
				if r := runCmd(runOpts{stdin: strings.NewReader(in), timeout: 30 * time.Second}, ipt+"-restore", "-w", "--noflush"); r.code != 0 {
					fmt.Printf("engines: %s-restore %q: %s\n", ipt, c, firstLine(r.stderr))
				}
			}
		}
	}
	for p, v := range s.Sysctls {
		if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) != v {
			fmt.Printf("engines: restoring %s to %s\n", p, v)
			_ = os.WriteFile(p, []byte(v), 0o644)
		}
	}
	if !s.Dirs["/var/lib/cni"] {
		os.RemoveAll("/var/lib/cni")
	}
	if !s.Dirs["/run/netns"] {
		// Only when empty: a namespace left there is reported, not unmounted.
		if left, _ := os.ReadDir("/run/netns"); len(left) == 0 {
			_ = syscall.Unmount("/run/netns", syscall.MNT_DETACH)
			_ = os.Remove("/run/netns")
		} else {
			fmt.Printf("engines: /run/netns still holds %d namespaces\n", len(left))
		}
	}
}

// iptablesUndo returns the iptables commands (in -S syntax) that take a
// table from after back to before, as far as the tests go: delete their new
// rules in old chains, flush and delete the new chains CNI and dockerd made
// (CNI-*, DOCKER*), put back changed policies (dockerd sets FORWARD to
// DROP when it turns forwarding on). A table that could not be listed
// before (nil) is left alone.
func iptablesUndo(before, after map[string]bool) (cmds []string, rules int, chains, policies []string) {
	if before == nil {
		return nil, 0, nil, nil
	}
	newChain := map[string]bool{}
	for l := range after {
		if f := strings.Fields(l); !before[l] && len(f) == 2 && f[0] == "-N" &&
			(strings.HasPrefix(f[1], "CNI-") || strings.HasPrefix(f[1], "DOCKER")) {
			newChain[f[1]] = true
			chains = append(chains, f[1])
		}
	}
	var dels []string
	for l := range after {
		f := strings.Fields(l)
		switch {
		case before[l] || len(f) < 2:
		case f[0] == "-A" && testRule(l, newChain):
			rules++
			if !newChain[f[1]] { // a new chain is flushed whole
				dels = append(dels, "-D"+l[2:])
			}
		case f[0] == "-P":
			for b := range before {
				if bf := strings.Fields(b); len(bf) == 3 && bf[0] == "-P" && bf[1] == f[1] {
					policies = append(policies, b)
				}
			}
		}
	}
	sort.Strings(dels)
	sort.Strings(chains)
	cmds = dels
	for _, c := range chains {
		cmds = append(cmds, "-F "+c)
	}
	for _, c := range chains {
		cmds = append(cmds, "-X "+c)
	}
	return append(cmds, policies...), rules, chains, policies
}

// netHostSetup checks the host can run the network scenarios. TestMain
// takes the host's network state before any engine starts and puts it back
// once they all stopped.
var netHostSetup = sync.OnceValue(func() error {
	for _, b := range []string{"iptables", "iptables-restore", "ip6tables", "ip6tables-restore", "ip", "nsenter", "unshare"} {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("%s not installed (apt-get install --no-install-recommends iptables iproute2 util-linux)", b)
		}
	}
	for _, p := range []string{"bridge", "host-local", "portmap", "firewall", "tuning"} {
		if !fileExists(filepath.Join(cniPluginDir, p)) {
			return fmt.Errorf("CNI plugin %s not in %s (apt-get install --no-install-recommends containernetworking-plugins)", p, cniPluginDir)
		}
	}
	if r := runCmd(runOpts{timeout: 30 * time.Second}, "iptables", "-w", "-t", "nat", "-S"); r.code != 0 {
		return fmt.Errorf("iptables does not work here: %s", firstLine(r.stderr))
	}
	return nil
})

// cniPluginDir is where Debian's containernetworking-plugins puts them;
// podman and Debian's ctr look there.
const cniPluginDir = "/usr/lib/cni"

// ---- processes and namespaces ----

type procID struct {
	pid   int
	start string // start time in clock ticks: tells a reused PID apart
}

// procStat returns a process's parent, start time and state letter.
func procStat(pid int) (ppid int, start, state string, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, "", "", false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, "", "", false
	}
	f := strings.Fields(string(b[i+1:])) // state, ppid, ... starttime is field 22 of stat
	if len(f) < 20 {
		return 0, "", "", false
	}
	ppid, _ = strconv.Atoi(f[1])
	return ppid, f[19], f[0], true
}

// alive says whether the process still runs (a zombie has finished).
func (p procID) alive() bool {
	_, start, state, ok := procStat(p.pid)
	return ok && start == p.start && state != "Z"
}

func (p procID) comm() string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.pid))
	return strings.TrimSpace(string(b))
}

// processTree returns pid and its descendants.
func processTree(pid int) []procID {
	entries, _ := os.ReadDir("/proc")
	children := map[int][]procID{}
	var root procID
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, start, _, ok := procStat(n)
		if !ok {
			continue
		}
		if n == pid {
			root = procID{n, start}
		}
		children[ppid] = append(children[ppid], procID{n, start})
	}
	if root.pid == 0 {
		return nil
	}
	out := []procID{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i].pid]...)
	}
	return out
}

// netnsUsers lists the processes whose network namespace is the nsfs inode ino.
func netnsUsers(ino uint64) []int {
	want := fmt.Sprintf("net:[%d]", ino)
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			if l, err := os.Readlink("/proc/" + e.Name() + "/ns/net"); err == nil && l == want {
				out = append(out, n)
			}
		}
	}
	return out
}

// netnsLinks lists the interface names in the network namespace at path.
func netnsLinks(t *testing.T, path string) []string {
	t.Helper()
	r := runCmd(runOpts{timeout: 30 * time.Second}, "nsenter", "--net="+path, "ip", "-o", "link", "show")
	var out []string
	for _, l := range strings.Split(r.stdout, "\n") {
		// "2: eth0@if9: <BROADCAST,..." -> eth0
		if f := strings.Fields(l); len(f) > 1 {
			name := strings.TrimSuffix(f[1], ":")
			if i := strings.IndexByte(name, '@'); i > 0 {
				name = name[:i]
			}
			out = append(out, name)
		}
	}
	return out
}

// runtimeStatePid asks the runtime under test (at its default root, which
// podman uses) for the container's pid: its init in process isolation, the
// shim, QEMU's parent, in hypervisor isolation.
func runtimeStatePid(t *testing.T, id string) int {
	t.Helper()
	r := runCmd(runOpts{timeout: 30 * time.Second}, runtimeBin, "state", id)
	var st struct {
		Pid int `json:"pid"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil || st.Pid <= 0 {
		t.Fatalf("%s state %s: %s", runtimeBin, id, r)
	}
	return st.Pid
}

// ---- podman ----

// podmanNetSetup is podman's setup (whose configuration already keeps CNI
// networks in a private network_config_dir) after the host check.
var podmanNetSetup = sync.OnceValue(func() error {
	if err := netHostSetup(); err != nil {
		return err
	}
	return podmanSetup()
})

// network creates a podman CNI network on a fresh subnet (bridge named by
// podman), removed with its containers when the test ends.
func (p *podman) network(ipv6 bool, opts ...string) (string, subnet) {
	p.t.Helper()
	s := nextSubnet(p.t)
	name := fmt.Sprintf("rn%d-%s", s.n, p.mode[:1])
	args := []string{"network", "create", "--subnet", s.v4}
	if ipv6 {
		args = append(args, "--ipv6", "--subnet", s.v6)
	}
	args = append(args, opts...)
	p.ok(append(args, name)...)
	p.t.Cleanup(func() { p.run("network", "rm", "-f", name) })
	return name, s
}

// named is p.name with a suffix, for a scenario's second container.
func (p *podman) named(suffix string) string {
	n := p.name() + suffix
	p.t.Cleanup(func() { p.run("rm", "-f", "-t", "0", n) })
	return n
}

// podNet is what podman inspect says of a container on one network.
type podNet struct {
	IPAddress         string
	IPPrefixLen       int
	GlobalIPv6Address string
	MacAddress        string
}

func (p *podman) nets(n string) map[string]podNet {
	p.t.Helper()
	out := p.ok("inspect", "--format", "{{json .NetworkSettings.Networks}}", n)
	m := map[string]podNet{}
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		p.t.Fatalf("inspect %s networks: %v: %q", n, err, out)
	}
	return m
}

// netOf returns the container's settings on network net, failing without.
func (p *podman) netOf(n, network string) podNet {
	p.t.Helper()
	pn, ok := p.nets(n)[network]
	if !ok || pn.IPAddress == "" {
		p.t.Fatalf("%s has no address on %s: %v", n, network, p.nets(n))
	}
	return pn
}

// execUntil runs `podman exec n sh -c script` until it prints want.
func (p *podman) execUntil(n, script, want string) {
	p.t.Helper()
	eventually(p.t, cmdTimeout(p.mode), "exec in "+n+": "+script, func() error {
		return resultIs(p.run("exec", n, "sh", "-c", script), want)
	})
}

func TestNetworkPodman(t *testing.T) {
	runScenarios(t, "podman-net", podmanNetSetup, []scenario{
		{name: "publish-httpd", fn: func(t *testing.T, mode string) {
			p := newPodman(t, mode)
			network, _ := p.network(false)
			port := freePort(t)
			p.ok("run", "-d", "--name", p.name(), "--network", network, "-p", fmt.Sprintf("127.0.0.1:%d:8080", port),
				imageName, "sh", "-c", httpdScript)
			client := &http.Client{Timeout: 3 * time.Second}
			eventually(t, cmdTimeout(mode), "GET from the published port", func() error {
				resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 || strings.TrimSpace(string(b)) != "web-reply" {
					return fmt.Errorf("status %d, body %q", resp.StatusCode, b)
				}
				return nil
			})
		}},
		{name: "peers-process-vm", fn: func(t *testing.T, mode string) {
			// One peer always process-isolated, the other in the mode: in
			// hypervisor mode, a container and a VM on one bridge.
			p := newPodman(t, mode)
			pp := newPodman(t, modeProcess)
			network, s := p.network(false)
			a, b := p.named("-a"), p.named("-b")
			pp.ok(append([]string{"run", "-d", "--name", a, "--network", network, imageName}, ncServer("reply-from-a")...)...)
			p.ok(append([]string{"run", "-d", "--name", b, "--network", network, imageName}, ncServer("reply-from-b")...)...)
			ipA, ipB := p.netOf(a, network).IPAddress, p.netOf(b, network).IPAddress
			if !s.contains(ipA) || !s.contains(ipB) || ipA == ipB {
				t.Fatalf("addresses %s and %s, want two in %s", ipA, ipB, s.v4)
			}
			p.execUntil(b, ncGet(ipA), "reply-from-a")
			p.execUntil(a, ncGet(ipB), "reply-from-b")
		}},
		{name: "two-networks", fn: func(t *testing.T, mode string) {
			p := newPodman(t, mode)
			n1, _ := p.network(false)
			n2, _ := p.network(false)
			n := p.detached("--network", n1, "--network", n2)
			want := map[string]bool{}
			for _, network := range []string{n1, n2} {
				pn := p.netOf(n, network)
				want[fmt.Sprintf("%s %s/%d", pn.MacAddress, pn.IPAddress, pn.IPPrefixLen)] = true
			}
			// The Ethernet interfaces, as "MAC address/prefix". Not lo, nor
			// the fallback tunnels (sit0) a kernel with those built in puts
			// in every namespace: they depend on the kernel, not the engine.
			eventually(t, cmdTimeout(mode), "interfaces inside", func() error {
				r := p.run("exec", n, "sh", "-c", ifaceList)
				got := map[string]bool{}
				for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
					switch f := strings.Fields(l); {
					case len(f) > 1 && f[1] != "1":
					case len(f) == 5:
						got[f[2]+" "+f[4]] = true
					default:
						got[l] = true
					}
				}
				if r.code != 0 || fmt.Sprint(got) != fmt.Sprint(want) {
					return fmt.Errorf("want interfaces %v, got %s", want, r)
				}
				return nil
			})
		}},
		{name: "ipv6", fn: func(t *testing.T, mode string) {
			p := newPodman(t, mode)
			network, s := p.network(true)
			n := p.name()
			p.ok(append([]string{"run", "-d", "--name", n, "--network", network, imageName}, ncServer("reply-over-v6")...)...)
			v6 := p.netOf(n, network).GlobalIPv6Address
			if !s.contains(v6) || !strings.Contains(v6, ":") {
				t.Fatalf("IPv6 address %q, want one in %s", v6, s.v6)
			}
			p.execUntil(n, "ip -6 -o addr show dev eth0 | grep -o ' "+v6+"/64 ' | tr -d ' '", v6+"/64")
			expectReply(t, cmdTimeout(mode), net.JoinHostPort(v6, "9000"), "reply-over-v6")
		}},
		{name: "mtu-routes", fn: func(t *testing.T, mode string) {
			p := newPodman(t, mode)
			network, s := p.network(false, "-o", "mtu=1400")
			r := p.run("run", "--rm", "--network", network, imageName, "sh", "-c",
				"cat /sys/class/net/eth0/mtu; ip route | grep ^default")
			got := strings.Fields(expectOK(t, r))
			if len(got) < 4 || got[0] != "1400" || got[1] != "default" || got[2] != "via" || got[3] != s.gateway() {
				t.Fatalf("want MTU 1400 and a default route via %s, got %q", s.gateway(), got)
			}
		}},
		{name: "fault-kill-qemu", fn: func(t *testing.T, mode string) {
			podmanNetFault(t, mode, "qemu")
		}},
		{name: "fault-kill-shim", fn: func(t *testing.T, mode string) {
			if mode == modeProcess {
				t.Skip("process isolation has no shim: the runtime's pid is the container's init, which fault-kill-qemu kills in this mode")
			}
			podmanNetFault(t, mode, "shim")
		}},
		{name: "host-network", fn: func(t *testing.T, mode string) {
			p := newPodman(t, mode)
			r := p.run("run", "--rm", "--network", "host", imageName, "readlink", "/proc/self/ns/net")
			if mode == modeProcess {
				host, _ := os.Readlink("/proc/self/ns/net")
				expectOut(t, r, 0, host)
				return
			}
			// A VM cannot join the host's network namespace: runh must say
			// so in one line, which podman passes on.
			var lines []string
			for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
				if strings.TrimSpace(l) != "" {
					lines = append(lines, l)
				}
			}
			msg := strings.ToLower(r.stderr)
			if r.code == 0 || len(lines) != 1 || !strings.Contains(msg, "host") || !strings.Contains(msg, "network") {
				t.Fatalf("want a failure with a one-line error about the host network, got %s", r)
			}
			t.Logf("refused: %s", lines[0])
		}},
	})
}

// podmanNetFault SIGKILLs part of a running networked container from
// outside: in hypervisor isolation its QEMU or its shim, in process
// isolation its init (the runtime's pid either way). podman must see the
// container exit, remove it, and nothing may stay behind: no process of
// the container, nothing in its network namespace but the engine's eth0.
func podmanNetFault(t *testing.T, mode, victim string) {
	p := newPodman(t, mode)
	network, _ := p.network(false)
	n := p.detached("--network", network)
	id := p.ok("inspect", "--format", "{{.Id}}", n)
	sandbox := p.ok("inspect", "--format", "{{.NetworkSettings.SandboxKey}}", n)
	var st syscall.Stat_t
	if err := syscall.Stat(sandbox, &st); err != nil {
		t.Fatalf("network namespace %q: %v", sandbox, err)
	}
	procs := processTree(runtimeStatePid(t, id))
	if len(procs) == 0 {
		t.Fatalf("the runtime's pid for %s is gone", id)
	}
	target := procs[0]
	switch {
	case mode == modeProcess:
		t.Logf("process isolation: killing the container's init %d (%s)", target.pid, target.comm())
	case victim == "qemu":
		target = procID{}
		for _, pr := range procs[1:] {
			if strings.Contains(pr.comm(), "qemu") {
				target = pr
				break
			}
		}
		if target.pid == 0 {
			var comms []string
			for _, pr := range procs {
				comms = append(comms, fmt.Sprintf("%d:%s", pr.pid, pr.comm()))
			}
			t.Fatalf("no QEMU below the shim: %v", comms)
		}
	}
	if mode == modeHypervisor {
		t.Logf("links in the container's netns while it runs: %v", netnsLinks(t, sandbox))
	}
	if err := syscall.Kill(target.pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %d: %v", target.pid, err)
	}
	if !waitFor(cmdTimeout(mode), func() bool {
		s := p.status(n)
		return s == "exited" || s == "stopped"
	}) {
		t.Fatalf("after SIGKILL of %s %d: status %q, want exited", victim, target.pid, p.status(n))
	}
	if fileExists(sandbox) {
		for _, l := range netnsLinks(t, sandbox) {
			if l != "lo" && l != "eth0" {
				t.Errorf("after the kill, %s is left in the container's netns (links %v)", l, netnsLinks(t, sandbox))
			}
		}
	}
	p.ok("rm", "-f", "-t", "0", n)
	if !waitFor(30*time.Second, func() bool {
		for _, pr := range procs {
			if pr.alive() {
				return false
			}
		}
		return len(netnsUsers(st.Ino)) == 0
	}) {
		var left []string
		for _, pr := range procs {
			if pr.alive() {
				left = append(left, fmt.Sprintf("%d:%s", pr.pid, pr.comm()))
			}
		}
		t.Fatalf("after rm -f: processes %v still run, netns users %v", left, netnsUsers(st.Ino))
	}
}

// ---- Docker ----

// A second private dockerd, with iptables and no default bridge: the
// networks are user-defined ones on bridges named rhnt<N>.
var (
	dockerNetDir string
	dockerNetEnv []string
)

var dockerNetSetup = sync.OnceValue(func() error {
	if err := netHostSetup(); err != nil {
		return err
	}
	dockerNetDir = filepath.Join(baseDir, "docker-net")
	env, err := startDockerd(dockerNetDir, "--iptables=true", "--ip6tables=false", "--bridge=none")
	dockerNetEnv = env
	return err
})

func newDockerNet(t *testing.T, mode string) *dockerT {
	d := newDocker(t, mode)
	d.dir, d.env = dockerNetDir, dockerNetEnv
	return d
}

// network creates a user-defined bridge network, removed when the test ends.
func (d *dockerT) network() (string, subnet) {
	d.t.Helper()
	s := nextSubnet(d.t)
	name := fmt.Sprintf("dn%d-%s", s.n, d.mode[:1])
	d.ok("network", "create", "-o", "com.docker.network.bridge.name="+s.bridge, "--subnet", s.v4, name)
	d.t.Cleanup(func() { d.do("network", "rm", name) })
	return name, s
}

// nameLookup resolves a container name with Docker's embedded DNS server:
// busybox's nslookup speaks DNS to it itself (static busybox's libc
// lookups, as in ping or wget, can crash), and the script prints the
// answer's address.
func nameLookup(name string) string {
	return "nslookup " + name + " 127.0.0.11 | awk '/^Name:/ {n = 1} n && /^Address/ {print $2; exit}'"
}

func TestNetworkDocker(t *testing.T) {
	runScenarios(t, "docker-net", dockerNetSetup, []scenario{
		{name: "publish", fn: func(t *testing.T, mode string) {
			d := newDockerNet(t, mode)
			network, _ := d.network()
			port := freePort(t)
			d.ok("run", "-d", "--runtime", d.runtime, "--network", network, "--name", d.name(),
				"-p", fmt.Sprintf("127.0.0.1:%d:8080", port), imageName, "sh", "-c", httpdScript)
			client := &http.Client{Timeout: 3 * time.Second}
			eventually(t, cmdTimeout(mode), "GET from the published port", func() error {
				resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 || strings.TrimSpace(string(b)) != "web-reply" {
					return fmt.Errorf("status %d, body %q", resp.StatusCode, b)
				}
				return nil
			})
		}},
		{name: "by-name", fn: func(t *testing.T, mode string) {
			d := newDockerNet(t, mode)
			network, s := d.network()
			base := d.name()
			a, b := base+"-a", base+"-b"
			for _, n := range []string{a, b} {
				t.Cleanup(func() { d.do("rm", "-f", n) })
				d.ok(append([]string{"run", "-d", "--runtime", d.runtime, "--network", network, "--name", n, imageName}, ncServer("reply-from-"+n)...)...)
			}
			for _, c := range [][2]string{{a, b}, {b, a}} {
				from, to := c[0], c[1]
				script := "ip=$(" + nameLookup(to) + ") && echo $ip && " + ncGet("$ip")
				eventually(t, cmdTimeout(mode), from+" -> "+to+" by name", func() error {
					r := d.do("exec", from, "sh", "-c", script)
					f := strings.Fields(r.stdout)
					if r.code != 0 || len(f) != 2 || !s.contains(f[0]) || f[1] != "reply-from-"+to {
						return fmt.Errorf("want %s's address in %s and its reply, %s", to, s.v4, r)
					}
					return nil
				})
			}
		}},
	})
}

// ---- containerd (ctr run --cni) ----

// ctr 1.6 reads CNI configuration only from /etc/cni/net.d (its plugins
// from /usr/lib/cni in Debian's build): run it in a mount namespace of its
// own where a private directory is bound there, so that the host's
// directory is neither read nor written. The CNI plugins ctr runs inherit it.
func ctrWithCNIConf(confDir string, o runOpts, args ...string) result {
	if o.stdin == nil {
		o.holdOpen = true // as ctr(): ctr 1.6 hangs when stdin ends early
	}
	argv := []string{"unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount --bind "$0" /etc/cni/net.d && exec "$@"`, confDir, "ctr", "-a", ctrdSock, "-n", "default"}
	return runCmd(o, append(argv, args...)...)
}

var ctrNetSetup = sync.OnceValue(func() error {
	if err := netHostSetup(); err != nil {
		return err
	}
	if !fileExists("/etc/cni/net.d") {
		// The bind mount needs a mount point; the host does not have one
		// and the test does not make one in /etc.
		return fmt.Errorf("/etc/cni/net.d does not exist: ctr --cni reads only there")
	}
	return containerdSetup()
})

// cniConf writes a bridge network conflist (no masquerading, so no
// iptables) into a fresh directory; IPAM state stays in the test's dir.
func cniConf(t *testing.T, s subnet) string {
	dir := t.TempDir()
	conf := map[string]any{
		"cniVersion": "0.4.0",
		"name":       s.bridge,
		"plugins": []any{map[string]any{
			"type": "bridge", "bridge": s.bridge, "isGateway": true, "ipMasq": false,
			"ipam": map[string]any{
				"type": "host-local", "dataDir": filepath.Join(dir, "ipam"),
				"ranges": [][]map[string]string{{{"subnet": s.v4}}},
				"routes": []map[string]string{{"dst": "0.0.0.0/0"}},
			},
		}},
	}
	writeJSON(t, filepath.Join(dir, "10-"+s.bridge+".conflist"), conf)
	return dir
}

func TestNetworkCtr(t *testing.T) {
	runScenarios(t, "ctr-net", ctrNetSetup, []scenario{
		{name: "cni", fn: func(t *testing.T, mode string) {
			s := nextSubnet(t)
			confDir := cniConf(t, s)
			// Cleanups run last first: the task is killed (newCtr's), ctr
			// returns after its CNI DEL, then the bridge goes.
			t.Cleanup(func() {
				if fileExists("/sys/class/net/" + s.bridge) {
					runCmd(runOpts{timeout: 30 * time.Second}, "ip", "link", "del", s.bridge)
				}
			})
			var res result
			finished := make(chan struct{})
			t.Cleanup(func() {
				select {
				case <-finished:
				case <-time.After(2 * cmdTimeout(mode)):
				}
			})
			c := newCtr(t, mode)
			// Foreground, so that ctr removes the network (CNI DEL) when
			// the task ends; ctr 1.6 never does after run -d.
			argv := append(c.runArgs(), "--cni", "--rm", imageName, c.id)
			argv = append(argv, ncServer("reply-from-ctr")...)
			go func() {
				res = ctrWithCNIConf(confDir, runOpts{timeout: 2 * cmdTimeout(mode)}, argv...)
				close(finished)
			}()
			exited := func() bool {
				select {
				case <-finished:
					return true
				default:
					return false
				}
			}
			waitFor(cmdTimeout(mode), func() bool { return exited() || c.status() == "RUNNING" })
			if exited() {
				t.Fatalf("ctr run --cni: %s", res)
			}
			if st := c.status(); st != "RUNNING" {
				t.Fatalf("task status %q, want RUNNING", st)
			}
			// The address CNI gave eth0, as the container sees it.
			var ip string
			n := 0
			eventually(t, cmdTimeout(mode), "eth0's address inside", func() error {
				n++
				r := c.do("task", "exec", "--exec-id", fmt.Sprintf("ip%d", n), c.id, "sh", "-c",
					"ip -o -4 addr show dev eth0 | awk '{print $4}'; "+ctrFlush)
				ip, _, _ = strings.Cut(strings.TrimSpace(r.stdout), "/")
				if !s.contains(ip) {
					return fmt.Errorf("want an address in %s: %s", s.v4, r)
				}
				return nil
			})
			expectReply(t, cmdTimeout(mode), net.JoinHostPort(ip, "9000"), "reply-from-ctr")

			// The other way: the container reaches the host on the bridge.
			l, err := net.Listen("tcp", net.JoinHostPort(s.gateway(), "0"))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			go func() {
				for {
					conn, err := l.Accept()
					if err != nil {
						return
					}
					io.WriteString(conn, "reply-from-host\n")
					conn.Close()
				}
			}()
			hostAddr := fmt.Sprintf("%s %d", s.gateway(), l.Addr().(*net.TCPAddr).Port)
			eventually(t, cmdTimeout(mode), "container -> host", func() error {
				n++
				return resultIs(c.do("task", "exec", "--exec-id", fmt.Sprintf("nc%d", n), c.id, "sh", "-c",
					"nc -w 3 "+hostAddr+" </dev/null; "+ctrFlush), "reply-from-host")
			})

			c.ok("task", "kill", "-s", "SIGKILL", c.id)
			select {
			case <-finished:
			case <-time.After(cmdTimeout(mode)):
				t.Fatal("ctr run --cni did not return after the task was killed")
			}
			if res.code != 137 {
				t.Fatalf("ctr run --cni: want exit 137, got %s", res)
			}
			// ctr ran CNI DEL: nothing is left on the bridge.
			if ports, _ := os.ReadDir("/sys/class/net/" + s.bridge + "/brif"); len(ports) != 0 {
				t.Fatalf("bridge %s still has ports %v after the task ended", s.bridge, ports)
			}
		}},
	})
}
