package vmnet

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestValidate(t *testing.T) {
	good := Config{
		Interfaces: []Interface{{Name: "eth0", MAC: "02:00:00:00:00:01", MTU: 1500, Addrs: []string{"10.0.0.2/24", "fd00::2/64"}}},
		Routes:     []Route{{Gw: "10.0.0.1", Dev: "eth0"}, {Dst: "10.1.0.0/16", Dev: "eth0"}},
		Neighbors:  []Neighbor{{Dev: "eth0", IP: "10.0.0.1", MAC: "02:00:00:00:00:02"}},
		DNS:        []string{"127.0.0.11"},
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	bad := map[string]func(c *Config){
		"name-long":   func(c *Config) { c.Interfaces[0].Name = "a-very-long-interface-name" },
		"name-lo":     func(c *Config) { c.Interfaces[0].Name = "lo" },
		"mac":         func(c *Config) { c.Interfaces[0].MAC = "zz" },
		"mtu":         func(c *Config) { c.Interfaces[0].MTU = 10 },
		"addr":        func(c *Config) { c.Interfaces[0].Addrs = []string{"10.0.0.300/24"} },
		"route-dev":   func(c *Config) { c.Routes[0].Dev = "eth9" },
		"route-gw":    func(c *Config) { c.Routes[0].Gw = "nope" },
		"neigh-dev":   func(c *Config) { c.Neighbors[0].Dev = "eth9" },
		"dns-nonloop": func(c *Config) { c.DNS = []string{"8.8.8.8"} },
		"dup":         func(c *Config) { c.Interfaces = append(c.Interfaces, c.Interfaces[0]) },
	}
	for name, mutate := range bad {
		c := good
		c.Interfaces = append([]Interface(nil), good.Interfaces...)
		c.Routes = append([]Route(nil), good.Routes...)
		c.Neighbors = append([]Neighbor(nil), good.Neighbors...)
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestLoopbackNameservers(t *testing.T) {
	dir := t.TempDir()
	rc := filepath.Join(dir, "resolv.conf")
	os.WriteFile(rc, []byte("search x\nnameserver 127.0.0.11\nnameserver 10.0.0.1\nnameserver ::1\noptions ndots:0\n"), 0o644)
	spec := &specs.Spec{Mounts: []specs.Mount{{Destination: "/etc/resolv.conf", Source: rc, Type: "bind"}}}
	got := strings.Join(loopbackNameservers(spec), ",")
	if got != "127.0.0.11,::1" {
		t.Errorf("loopback name servers: %q", got)
	}
}

func TestMsgFraming(t *testing.T) {
	var b bytes.Buffer
	if err := writeMsg(&b, []byte("query")); err != nil {
		t.Fatal(err)
	}
	got, err := readMsg(&b)
	if err != nil || string(got) != "query" {
		t.Fatalf("round trip: %q %v", got, err)
	}
	if writeMsg(&b, make([]byte, maxDNSMsg+1)) == nil {
		t.Error("oversized message written")
	}
}

func ip(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %v: %v: %s", args, err, out)
	}
	return string(out)
}

// TestAttachDetach mirrors a real namespace: what Attach reads, the taps
// and filters it adds, and that Detach and Cleanup (after a killed shim)
// leave the namespace as it was.
func TestAttachDetach(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip (iproute2) not installed")
	}
	if err := HostSupport(); err != nil {
		t.Skip(err)
	}
	name := fmt.Sprintf("rhvmnet%d", os.Getpid())
	ip(t, "netns", "add", name)
	defer exec.Command("ip", "netns", "delete", name).Run()
	in := func(args ...string) string { return ip(t, append([]string{"-n", name}, args...)...) }
	in("link", "add", "eth0", "mtu", "1400", "address", "02:42:0a:00:00:02", "type", "veth", "peer", "name", "peer0")
	in("addr", "add", "10.250.0.2/24", "dev", "eth0")
	in("addr", "add", "fd00:250::2/64", "dev", "eth0", "nodad")
	in("link", "set", "eth0", "up")
	in("link", "set", "peer0", "up")
	in("route", "add", "default", "via", "10.250.0.1")
	in("neigh", "add", "10.250.0.1", "lladdr", "02:42:0a:00:00:01", "nud", "permanent", "dev", "eth0")
	before := in("-o", "link", "show")
	spec := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/run/netns/" + name}}}}
	if err := Check(spec); err != nil {
		t.Fatal(err)
	}
	self, err := os.Open("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	dir := t.TempDir()
	a, err := Attach(spec, dir, self)
	if err != nil {
		t.Fatal(err)
	}
	var eth0 *Interface
	for i := range a.Config.Interfaces {
		if a.Config.Interfaces[i].Name == "eth0" {
			eth0 = &a.Config.Interfaces[i]
		}
	}
	if eth0 == nil || eth0.MAC != "02:42:0a:00:00:02" || eth0.MTU != 1400 ||
		strings.Join(eth0.Addrs, ",") != "10.250.0.2/24,fd00:250::2/64" {
		t.Fatalf("eth0 read as %+v", eth0)
	}
	if len(a.Config.Interfaces) != 2 || len(a.NICs) != 2 {
		t.Fatalf("want eth0 and peer0 mirrored, got %+v", a.Config.Interfaces)
	}
	hasRoute := false
	for _, r := range a.Config.Routes {
		hasRoute = hasRoute || (r.Dst == "" && r.Gw == "10.250.0.1" && r.Dev == "eth0")
	}
	if !hasRoute {
		t.Errorf("default route missing: %+v", a.Config.Routes)
	}
	if len(a.Config.Neighbors) != 1 || a.Config.Neighbors[0].IP != "10.250.0.1" {
		t.Errorf("static neighbour: %+v", a.Config.Neighbors)
	}
	if err := a.Config.Validate(); err != nil {
		t.Errorf("read config does not validate: %v", err)
	}
	links := in("-o", "link", "show")
	if !strings.Contains(links, "tap0_runh") || !strings.Contains(links, "tap1_runh") {
		t.Fatalf("taps missing:\n%s", links)
	}
	var tap string
	for _, w := range a.rec.Wires {
		if w.Dev == "eth0" {
			tap = w.Tap
		}
	}
	if f := in("-o", "link", "show", tap); !strings.Contains(f, "mtu 1400") {
		t.Errorf("tap mtu: %s", f)
	}
	filters, _ := exec.Command("ip", "netns", "exec", name, "tc", "filter", "show", "dev", "eth0", "ingress").CombinedOutput()
	if !strings.Contains(string(filters), "Redirect to device "+tap) {
		t.Errorf("no redirect from eth0 to %s:\n%s", tap, filters)
	}
	back, _ := exec.Command("ip", "netns", "exec", name, "tc", "filter", "show", "dev", tap, "ingress").CombinedOutput()
	if !strings.Contains(string(back), "Redirect to device eth0") {
		t.Errorf("no redirect from %s to eth0:\n%s", tap, back)
	}
	// A second mirror of the same namespace is refused.
	if _, err := Attach(spec, t.TempDir(), self); err == nil {
		t.Error("second Attach of a mirrored namespace succeeded")
	}
	if err := a.Detach(); err != nil {
		t.Fatal(err)
	}
	if after := in("-o", "link", "show"); stripStats(after) != stripStats(before) {
		t.Errorf("after Detach:\n%s\nbefore:\n%s", after, before)
	}
	if q, _ := exec.Command("ip", "netns", "exec", name, "tc", "qdisc", "show", "dev", "eth0", "ingress").CombinedOutput(); len(bytes.TrimSpace(q)) != 0 {
		t.Errorf("ingress qdisc left on eth0: %s", q)
	}

	// A shim killed after Attach: its taps die with it, the qdiscs stay
	// until Cleanup reads the record.
	a, err = Attach(spec, dir, self)
	if err != nil {
		t.Fatal(err)
	}
	a.CloseTaps()
	a.ns.Close()
	if err := Cleanup(dir); err != nil {
		t.Fatal(err)
	}
	if after := in("-o", "link", "show"); stripStats(after) != stripStats(before) {
		t.Errorf("after Cleanup:\n%s\nbefore:\n%s", after, before)
	}
	if _, err := os.Stat(filepath.Join(dir, RecordFile)); !os.IsNotExist(err) {
		t.Errorf("record left: %v", err)
	}
}

// stripStats keeps link names and flags, which is what must come back.
func stripStats(s string) string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			out = append(out, f[1])
		}
	}
	return strings.Join(out, " ")
}

func TestHostNetworkRefused(t *testing.T) {
	if err := Check(&specs.Spec{Linux: &specs.Linux{}}); err != ErrHostNetwork {
		t.Errorf("no network namespace: %v", err)
	}
	if os.Geteuid() == 0 {
		spec := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/proc/self/ns/net"}}}}
		if err := Check(spec); err != ErrHostNetwork {
			t.Errorf("the host's namespace by path: %v", err)
		}
	}
}
