package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// testNet is a network namespace wired to the host by a veth pair, as a CNI
// plugin would make it: the container end (eth0) with an IPv4 and an IPv6
// address, default routes through the host end, a custom MTU and a static
// neighbour entry. Only this machine's own addresses are used.
type testNet struct {
	name     string // namespace name under /run/netns
	hostIf   string
	hostIP   string // host end, IPv4
	ctrIP    string // container end, IPv4
	hostIP6  string
	ctrIP6   string
	ctrMAC   string
	hostMAC  string
	mtu      int
	nsPath   string
	teardown []func()
}

func ipCmd(args ...string) (string, error) {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// newTestNet makes the namespace; slot keeps concurrent tests' subnets
// apart. With inNS false the veth's container end stays on the host, for a
// hook to move (the Docker model).
func newTestNet(t *testing.T, x *h, slot int, inNS bool) *testNet {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip (iproute2) not installed")
	}
	m := 0
	if x.mode == ModeHypervisor {
		m = 1
	}
	sub := (os.Getpid()%20)*12 + slot*2 + m
	n := &testNet{
		name:   fmt.Sprintf("rhnet%d%c%d", slot, x.mode[0], os.Getpid()),
		hostIf: fmt.Sprintf("rhv%d%c%d", slot, x.mode[0], os.Getpid()%100000),
		hostIP: fmt.Sprintf("10.231.%d.1", sub),
		ctrIP:  fmt.Sprintf("10.231.%d.2", sub),
		// Canonical forms, as ip prints them (fd00:231::1 for sub 0).
		hostIP6: net.ParseIP(fmt.Sprintf("fd00:231:%d::1", sub)).String(),
		ctrIP6:  net.ParseIP(fmt.Sprintf("fd00:231:%d::2", sub)).String(),
		ctrMAC:  fmt.Sprintf("02:31:%02x:00:00:02", sub),
		mtu:     1400,
	}
	n.nsPath = "/run/netns/" + n.name
	t.Cleanup(func() {
		for i := len(n.teardown) - 1; i >= 0; i-- {
			n.teardown[i]()
		}
	})
	must := func(args ...string) {
		t.Helper()
		if _, err := ipCmd(args...); err != nil {
			t.Fatal(err)
		}
	}
	must("netns", "add", n.name)
	n.teardown = append(n.teardown, func() { ipCmd("netns", "delete", n.name) })
	must("link", "add", n.hostIf, "mtu", fmt.Sprint(n.mtu), "type", "veth", "peer", "name", n.hostIf+"c", "mtu", fmt.Sprint(n.mtu))
	n.teardown = append(n.teardown, func() { ipCmd("link", "delete", n.hostIf) })
	must("link", "set", n.hostIf+"c", "address", n.ctrMAC)
	must("addr", "add", n.hostIP+"/30", "dev", n.hostIf)
	must("addr", "add", n.hostIP6+"/64", "dev", n.hostIf, "nodad")
	must("link", "set", n.hostIf, "up")
	out, err := ipCmd("-o", "link", "show", n.hostIf)
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(out[strings.Index(out, "link/ether"):]); len(f) > 1 {
		n.hostMAC = f[1]
	}
	if inNS {
		n.configure(t, "")
	}
	return n
}

// configure moves the container end into the namespace (or into that of
// pid) and sets it up there.
func (n *testNet) configure(t *testing.T, pid string) {
	t.Helper()
	target := n.name
	exe := []string{"netns", "exec", n.name, "ip"}
	if pid != "" {
		target = pid
		exe = []string{"nsenter", "-t", pid, "-n", "ip"}
	}
	if _, err := ipCmd("link", "set", n.hostIf+"c", "netns", target); err != nil {
		t.Fatal(err)
	}
	in := func(args ...string) {
		t.Helper()
		c := exec.Command(exe[0], append(exe[1:], args...)...)
		if exe[0] == "netns" {
			c = exec.Command("ip", append(exe, args...)...)
		}
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", c.Args, err, out)
		}
	}
	in("link", "set", n.hostIf+"c", "name", "eth0")
	in("addr", "add", n.ctrIP+"/30", "dev", "eth0")
	in("addr", "add", n.ctrIP6+"/64", "dev", "eth0", "nodad")
	in("link", "set", "eth0", "up")
	in("link", "set", "lo", "up")
	in("route", "add", "default", "via", n.hostIP)
	in("-6", "route", "add", "default", "via", n.hostIP6)
	in("neigh", "replace", n.hostIP, "lladdr", n.hostMAC, "nud", "permanent", "dev", "eth0")
}

// links lists the namespace's interfaces and ingress qdiscs: what the
// engine made, plus anything runh left.
func (n *testNet) links(t *testing.T) string {
	t.Helper()
	out, err := ipCmd("-n", n.name, "-o", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			names = append(names, strings.TrimSuffix(strings.Split(f[1], "@")[0], ":"))
		}
	}
	q, _ := exec.Command("ip", "netns", "exec", n.name, "tc", "qdisc", "show", "dev", "eth0", "ingress").CombinedOutput()
	return strings.Join(names, ",") + " " + strings.TrimSpace(string(q))
}

func withNetNS(path string) func(*specs.Spec) {
	return func(s *specs.Spec) { setNetNS(s, path) }
}

// httpGet fetches path from addr and returns the body.
func httpGet(addr, path string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path)
	b, err := io.ReadAll(bufio.NewReader(c))
	return string(b), err
}

func waitHTTP(t *testing.T, addr, path, want string, d time.Duration) {
	t.Helper()
	var last string
	var err error
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if last, err = httpGet(addr, path); err == nil && strings.Contains(last, want) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("GET http://%s%s: want %q, got %q (err %v)", addr, path, want, last, err)
}

// TestNetwork: a container in a prepared network namespace (CNI's model)
// is reachable from the host over IPv4 and IPv6, reaches the host, and has
// the namespace's interface exactly: MAC, MTU, addresses, routes, static
// neighbour. After delete the namespace is as the engine made it.
func TestNetwork(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		n := newTestNet(t, x, 0, true)
		before := n.links(t)
		id := x.id("net")
		x.startContainer("net", withNetNS(n.nsPath), "httpd", "-f", "-p", "8080", "-h", "/etc")
		defer x.cleanupContainer(id)
		waitHTTP(t, n.ctrIP+":8080", "/passwd", "root:x:0:0", x.timeout())
		waitHTTP(t, "["+n.ctrIP6+"]:8080", "/passwd", "root:x:0:0", 30*time.Second)

		show := x.must("exec", id, "sh", "-c",
			"cat /sys/class/net/eth0/address /sys/class/net/eth0/mtu; ip -4 addr show eth0; ip -6 addr show eth0; ip route; ip -6 route; cat /proc/net/arp").stdout
		for _, want := range []string{n.ctrMAC, fmt.Sprint(n.mtu), n.ctrIP + "/30", n.ctrIP6 + "/64",
			"default via " + n.hostIP, "default via " + n.hostIP6} {
			if !strings.Contains(show, want) {
				t.Errorf("inside the container: want %q in:\n%s", want, show)
			}
		}
		// The static neighbour: ATF_COM|ATF_PERM flags in /proc/net/arp.
		if !strings.Contains(show, n.hostIP) || !strings.Contains(show, "0x6") {
			t.Errorf("static neighbour %s missing inside:\n%s", n.hostIP, show)
		}

		// The container reaches the host.
		ln, err := net.Listen("tcp", n.hostIP+":0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		got := make(chan string, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			b, _ := io.ReadAll(c)
			got <- string(b)
		}()
		port := ln.Addr().(*net.TCPAddr).Port
		x.must("exec", id, "sh", "-c", fmt.Sprintf("echo from-container | nc -w 5 %s %d", n.hostIP, port))
		select {
		case s := <-got:
			if !strings.Contains(s, "from-container") {
				t.Errorf("host got %q from the container", s)
			}
		case <-time.After(30 * time.Second):
			t.Error("the container's connection never reached the host")
		}

		x.must("delete", "--force", id)
		if after := n.links(t); after != before {
			t.Errorf("namespace after delete: %q, before create: %q", after, before)
		}
	})
}

// TestNetworkHook: a namespace configured by a prestart hook through the PID
// in its state (Docker's libnetwork-setkey model) is the container's.
func TestNetworkHook(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		n := newTestNet(t, x, 1, false)
		hook := filepath.Join(x.dir, "nethook.sh")
		ipPath, _ := exec.LookPath("ip")
		script := fmt.Sprintf(`#!/bin/sh
set -e
pid=$(sed -n 's/.*"pid": *\([0-9]*\).*/\1/p')
%[1]s link set %[2]sc netns "$pid"
nsenter -t "$pid" -n %[1]s link set %[2]sc name eth0
nsenter -t "$pid" -n %[1]s addr add %[3]s/30 dev eth0
nsenter -t "$pid" -n %[1]s link set eth0 up
nsenter -t "$pid" -n %[1]s route add default via %[4]s
`, ipPath, n.hostIf, n.ctrIP, n.hostIP)
		if err := os.WriteFile(hook, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		id := x.id("nethook")
		x.startContainer("nethook", func(s *specs.Spec) {
			s.Hooks = &specs.Hooks{Prestart: []specs.Hook{{Path: hook, Env: []string{"PATH=" + os.Getenv("PATH")}}}}
		}, "httpd", "-f", "-p", "8080", "-h", "/etc")
		defer x.cleanupContainer(id)
		waitHTTP(t, n.ctrIP+":8080", "/passwd", "root:x:0:0", x.timeout())
		x.must("delete", "--force", id)
	})
}

// TestNetworkKilled: the VM (or the container's init) killed while it is
// networked: the container stops, delete succeeds and the namespace is as
// the engine made it.
func TestNetworkKilled(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		n := newTestNet(t, x, 2, true)
		before := n.links(t)
		id := x.id("netkill")
		x.startContainer("netkill", withNetNS(n.nsPath), "httpd", "-f", "-p", "8080", "-h", "/etc")
		defer x.cleanupContainer(id)
		waitHTTP(t, n.ctrIP+":8080", "/passwd", "root:x:0:0", x.timeout())
		pid := x.state(id).Pid
		victim := pid
		if x.mode == ModeHypervisor {
			victim = qemuChild(t, pid)
		}
		signalProc(t, victim, syscall.SIGKILL)
		x.waitStatus(id, "stopped")
		x.must("delete", "--force", id)
		if after := n.links(t); after != before {
			t.Errorf("namespace after a killed VM and delete: %q, before: %q", after, before)
		}
	})
}

// qemuChild returns the QEMU process the shim pid started.
func qemuChild(t *testing.T, shim int) int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndex(s, ")")+2:])
		if len(f) > 1 && f[1] == fmt.Sprint(shim) && strings.Contains(s, "qemu") {
			var p int
			fmt.Sscan(e.Name(), &p)
			return p
		}
	}
	t.Fatalf("no QEMU child of shim %d", shim)
	return 0
}

// TestNetworkAfterCreate: the namespace of the container's PID configured
// between create and start (ctr run --cni's model) is the container's.
func TestNetworkAfterCreate(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		n := newTestNet(t, x, 3, false)
		id := x.id("netlate")
		x.create(id, x.bundle("netlate", nil, "httpd", "-f", "-p", "8080", "-h", "/etc"), nil)
		defer x.cleanupContainer(id)
		n.configure(t, fmt.Sprint(x.state(id).Pid))
		x.must("start", id)
		waitHTTP(t, n.ctrIP+":8080", "/passwd", "root:x:0:0", x.timeout())
		if got := x.must("exec", id, "cat", "/sys/class/net/eth0/address").stdout; strings.TrimSpace(got) != n.ctrMAC {
			t.Errorf("eth0's MAC inside: %q, want %s", got, n.ctrMAC)
		}
		x.must("delete", "--force", id)
	})
}
