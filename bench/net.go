package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/runh-project/runh/integration"
	"golang.org/x/sys/unix"
)

// The network section: host-to-container TCP throughput, straight to the
// container's address and through a published port, and the rate of
// small HTTP requests, for every contender in both isolation modes. The
// harness wires each container as a CNI bridge plugin would: a private
// bridge, one network namespace per container joined by a veth pair, and
// the namespace's path in config.json.

const (
	rowNetDirect    = "TCP host → container IP (MiB/s)"
	rowNetPublished = "TCP host → published port 127.0.0.1:P (MiB/s)"
	rowNetHTTP      = "HTTP GETs, a new connection each (requests/s)"

	netSinkPort = 5001 // busybox nc, restarted after each connection
	netHTTPPort = 8080 // busybox httpd
	netPage     = "/index.html"

	// netWWW is written into the shared rootfs; the containers keep it
	// read-only, as every bundle here does.
	netWWW = "www"
)

// netSubnets are tried in turn; the first that overlaps no address or
// route of the host is used. 10.213/16 is not a default of Docker,
// podman, CNI or Kubernetes.
var netSubnets = []string{"10.213.0.0/24", "10.213.7.0/24", "10.213.42.0/24", "10.213.99.0/24"}

// netnsDir is where `ip netns` keeps its namespaces.
const netnsDir = "/run/netns"

// netCmdTimeout bounds each ip/iptables invocation.
const netCmdTimeout = 30 * time.Second

// netEnv is the network the section builds; close undoes it in reverse.
type netEnv struct {
	subnet *net.IPNet
	gw     net.IP
	bridge string
	undo   []func() error
}

// run runs one command and, if it succeeded, remembers undo (may be nil).
func (n *netEnv) run(undo []string, args ...string) error {
	if err := command(args...); err != nil {
		return err
	}
	if undo != nil {
		n.undo = append(n.undo, func() error { return command(undo...) })
	}
	return nil
}

func (n *netEnv) close() {
	for i := len(n.undo) - 1; i >= 0; i-- {
		if err := n.undo[i](); err != nil {
			logf("net cleanup: %v", err)
		}
	}
	n.undo = nil
}

func command(args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), netCmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, lastLine(out))
	}
	return nil
}

func output(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), netCmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).Output()
	if err != nil {
		return "", fmt.Errorf("%s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// usedPrefixes returns the IPv4 prefixes of `ip -4 route show table all`
// and `ip -o -4 addr show` output; default routes are left out.
func usedPrefixes(text string) []*net.IPNet {
	var out []*net.IPNet
	add := func(s string) {
		if !strings.Contains(s, "/") {
			s += "/32"
		}
		if _, p, err := net.ParseCIDR(s); err == nil && p.IP.To4() != nil {
			out = append(out, p)
		}
	}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if i := indexOf(f, "inet"); i >= 0 && i+1 < len(f) {
			add(f[i+1]) // an address line
			continue
		}
		switch f[0] { // a route line, perhaps led by its type
		case "unicast", "local", "broadcast", "multicast", "throw", "unreachable", "prohibit", "blackhole", "nat", "anycast":
			f = f[1:]
		}
		if len(f) > 0 && f[0] != "default" {
			add(f[0])
		}
	}
	return out
}

func indexOf(f []string, s string) int {
	for i, x := range f {
		if x == s {
			return i
		}
	}
	return -1
}

func overlap(a, b *net.IPNet) bool { return a.Contains(b.IP) || b.Contains(a.IP) }

// freeSubnet returns the first candidate that overlaps none of used.
func freeSubnet(candidates []string, used []*net.IPNet) (*net.IPNet, error) {
next:
	for _, c := range candidates {
		_, p, err := net.ParseCIDR(c)
		if err != nil {
			return nil, err
		}
		for _, u := range used {
			if overlap(p, u) {
				continue next
			}
		}
		return p, nil
	}
	return nil, fmt.Errorf("every candidate subnet (%s) overlaps an address or route of this host", strings.Join(candidates, ", "))
}

// host returns the i-th address of a subnet.
func host(p *net.IPNet, i int) net.IP {
	ip := append(net.IP(nil), p.IP.To4()...)
	ip[3] += byte(i)
	return ip
}

// bridgeUp picks a free subnet and creates the bridge with the gateway
// address on it.
func (n *netEnv) bridgeUp(nonce string) error {
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("%w (iproute2)", err)
	}
	routes, err := output("ip", "-4", "route", "show", "table", "all")
	if err != nil {
		return err
	}
	addrs, err := output("ip", "-o", "-4", "addr", "show")
	if err != nil {
		return err
	}
	if n.subnet, err = freeSubnet(netSubnets, usedPrefixes(routes+"\n"+addrs)); err != nil {
		return err
	}
	n.gw = host(n.subnet, 1)
	ones, _ := n.subnet.Mask.Size()
	n.bridge = "rbb" + nonce
	if err := n.run([]string{"ip", "link", "del", n.bridge}, "ip", "link", "add", n.bridge, "type", "bridge"); err != nil {
		return err
	}
	if err := n.run(nil, "ip", "addr", "add", fmt.Sprintf("%s/%d", n.gw, ones), "dev", n.bridge); err != nil {
		return err
	}
	return n.run(nil, "ip", "link", "set", n.bridge, "up")
}

// attach creates the network namespace ns with eth0 at ip on the bridge,
// lo up and a default route through the bridge: what the bridge and
// loopback CNI plugins do. The harness runs in its own mount namespace,
// and so do the runtimes it starts: /run/netns/ns is mounted there,
// where they look for it.
func (n *netEnv) attach(ns, veth string, ip net.IP) (string, error) {
	if _, err := os.Stat(netnsDir); errors.Is(err, fs.ErrNotExist) {
		// ip creates it and, in this mount namespace only, mounts it on
		// itself; the directory itself is the host's, so it goes too.
		n.undo = append(n.undo, func() error {
			unix.Unmount(netnsDir, unix.MNT_DETACH)
			os.Remove(netnsDir) // fails, rightly, if someone else's namespace is there now
			return nil
		})
	}
	if err := n.run([]string{"ip", "netns", "del", ns}, "ip", "netns", "add", ns); err != nil {
		return "", err
	}
	path := filepath.Join(netnsDir, ns)
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("network namespace %s not visible: %w", ns, err)
	}
	// Only the host end has an undo: deleting it removes eth0 too.
	if err := n.run([]string{"ip", "link", "del", veth}, "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns); err != nil {
		return "", err
	}
	ones, _ := n.subnet.Mask.Size()
	for _, args := range [][]string{
		{"ip", "link", "set", veth, "master", n.bridge, "up"},
		{"ip", "-n", ns, "addr", "add", fmt.Sprintf("%s/%d", ip, ones), "dev", "eth0"},
		{"ip", "-n", ns, "link", "set", "eth0", "up"},
		{"ip", "-n", ns, "link", "set", "lo", "up"},
		{"ip", "-n", ns, "route", "add", "default", "via", n.gw.String()},
	} {
		if err := n.run(nil, args...); err != nil {
			return "", err
		}
	}
	return path, nil
}

// publisher maps host ports on 127.0.0.1 to containers as an engine's
// port mapping does without a userland proxy: DNAT in nat OUTPUT (the
// client is local), MASQUERADE of the 127.0.0.1 source on the way out,
// and route_localnet so a 127.0.0.1 source may be routed at all. Both
// chains are private to the run.
type publisher struct {
	dnat string
}

const routeLocalnet = "/proc/sys/net/ipv4/conf/all/route_localnet"

func (n *netEnv) publishInit(nonce string) (*publisher, error) {
	if _, err := exec.LookPath("iptables"); err != nil {
		return nil, fmt.Errorf("iptables: %w", err)
	}
	ipt := func(args ...string) []string { return append([]string{"iptables", "-w", "10", "-t", "nat"}, args...) }
	p := &publisher{dnat: "RUNH-BENCH-" + nonce + "-DNAT"}
	snat := "RUNH-BENCH-" + nonce + "-SNAT"
	for _, c := range []struct{ chain, hook string }{{p.dnat, "OUTPUT"}, {snat, "POSTROUTING"}} {
		if err := n.run(ipt("-X", c.chain), ipt("-N", c.chain)...); err != nil {
			return nil, err
		}
		n.undo = append(n.undo, func() error { return command(ipt("-F", c.chain)...) })
		if err := n.run(ipt("-D", c.hook, "-j", c.chain), ipt("-I", c.hook, "-j", c.chain)...); err != nil {
			return nil, err
		}
	}
	if err := n.run(nil, ipt("-A", snat, "-s", "127.0.0.1/32", "-d", n.subnet.String(), "-j", "MASQUERADE")...); err != nil {
		return nil, err
	}
	old, err := os.ReadFile(routeLocalnet)
	if err != nil {
		return nil, err
	}
	if v := strings.TrimSpace(string(old)); v != "1" {
		if err := os.WriteFile(routeLocalnet, []byte("1"), 0o644); err != nil {
			return nil, err
		}
		n.undo = append(n.undo, func() error { return os.WriteFile(routeLocalnet, []byte(v), 0o644) })
	}
	return p, nil
}

// publish maps a free port of 127.0.0.1 to ip:port and returns the host
// address. The port is one the kernel hands out for a listener and nobody
// holds; DNAT happens before any local socket would see it anyway.
func (n *netEnv) publish(p *publisher, ip net.IP, port int) (string, error) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	hp := l.Addr().(*net.TCPAddr).Port
	l.Close()
	rule := []string{p.dnat, "-d", "127.0.0.1/32", "-p", "tcp", "--dport", strconv.Itoa(hp),
		"-j", "DNAT", "--to-destination", net.JoinHostPort(ip.String(), strconv.Itoa(port))}
	// No undo of its own: the chain is flushed at the end.
	if err := n.run(nil, append([]string{"iptables", "-w", "10", "-t", "nat", "-A"}, rule...)...); err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(hp)), nil
}

// netContainer is one contender's running server container.
type netContainer struct {
	rt        *runtime
	ip        net.IP
	published string // host address of the published sink, "" if none
	pubErr    error  // why there is none
	mib       int
	failed    map[string]bool // rows whose first failure stopped the sampling
}

// netServerScript serves HTTP and sinks one TCP connection at a time.
// nc hands the connection to dd: nc itself reads 1 KiB per read and poll,
// which caps a sink near 190 MiB/s on the 2-core reference host, below
// what the path carries. dd's record counts go nowhere; the sleep keeps
// a failing nc from spinning.
var netServerScript = fmt.Sprintf("httpd -f -p %d -h /%s & while :; do nc -l -p %d -e dd of=/dev/null bs=1M 2>/dev/null || sleep 1; done",
	netHTTPPort, netWWW, netSinkPort)

func (b *bench) benchNet() error {
	rts := append(append([]*runtime{}, b.rts...), b.vm)
	var pairs []string
	for _, r := range b.rts[1:] {
		pairs = append(pairs, b.rts[0].Name+"/"+r.Name)
	}
	pairs = append(pairs, b.vm.Name+"/"+b.rts[0].Name)
	row := func(name, unit string) *Result {
		x := b.rep.result(network, "network", name, unit, true, names(rts)...)
		x.RatioPairs = pairs
		return x
	}
	n := &netEnv{}
	defer n.close()
	if err := n.bridgeUp(b.nonce); err != nil {
		b.rep.skip("net", "cannot build the bridge network: "+err.Error())
		return nil
	}
	logf("net: bridge %s, subnet %s", n.bridge, n.subnet)
	direct, published, web := row(rowNetDirect, "MiB/s"), row(rowNetPublished, "MiB/s"), row(rowNetHTTP, "requests/s")
	warmup := min(b.c.Warmup, 1)
	direct.Note = fmt.Sprintf("each sample sends %d MiB (%s: %d MiB) to busybox `nc -l -e dd of=/dev/null bs=1M` in the container and waits for it to close; "+
		"%d rounds after %d warm-up, contenders rotated", b.c.NetMiB, b.vm.Name, b.c.NetVMMiB, b.c.NetN, warmup)
	published.Note = "the same through 127.0.0.1:P, DNAT to the container in nat OUTPUT, MASQUERADE in POSTROUTING, route_localnet=1 " +
		"(an engine's port mapping without userland proxy)"
	web.Note = fmt.Sprintf("%d sequential `GET %s` (HTTP/1.0, a new TCP connection each) to busybox httpd at the container's IP; one sample per round",
		b.c.NetRequests, netPage)

	pub, pubErr := n.publishInit(b.nonce)
	if pubErr != nil {
		pubErr = fmt.Errorf("no published port: %w", pubErr)
	}
	www := filepath.Join(b.dir, "rootfs", netWWW)
	if err := os.MkdirAll(www, 0o755); err != nil {
		return err
	}
	page := strings.Repeat("runh network benchmark\n", 26) // about 600 bytes, a small page
	if err := os.WriteFile(filepath.Join(www, filepath.Base(netPage)), []byte(page), 0o644); err != nil {
		return err
	}

	var live []*netContainer
	for i, r := range rts {
		if b.ctx.Err() != nil {
			return nil
		}
		c, err := b.netStart(n, r, i, pub, pubErr)
		if err != nil {
			for _, x := range []*Result{direct, published, web} {
				x.fail(r.Name, err)
			}
			continue
		}
		live = append(live, c)
	}
	for i := 0; i < warmup+b.c.NetN && b.ctx.Err() == nil; i++ {
		for j := range live {
			c := live[(i+j)%len(live)]
			name, timeout, size := c.rt.Name, c.rt.Timeout, int64(c.mib)<<20
			var line []string
			sample := func(x *Result, what string, f func() (float64, error)) {
				if c.failed[x.Name] || b.ctx.Err() != nil {
					return
				}
				v, err := f()
				switch {
				case b.ctx.Err() != nil: // interrupted, not failed
				case err != nil:
					// One failure stops the row for this contender: a
					// broken path would otherwise cost a timeout a round.
					c.failed[x.Name] = true
					x.fail(name, err)
				default:
					if i >= warmup {
						x.add(name, v)
					}
					line = append(line, fmt.Sprintf("%s %.0f %s", what, v, x.Unit))
				}
			}
			sample(direct, "direct", func() (float64, error) {
				return sendTCP(b.ctx, net.JoinHostPort(c.ip.String(), strconv.Itoa(netSinkPort)), size, timeout)
			})
			if c.pubErr != nil {
				if !c.failed[published.Name] {
					c.failed[published.Name] = true
					published.fail(name, c.pubErr)
				}
			} else {
				sample(published, "published", func() (float64, error) { return sendTCP(b.ctx, c.published, size, timeout) })
			}
			sample(web, "http", func() (float64, error) {
				return httpGets(b.ctx, net.JoinHostPort(c.ip.String(), strconv.Itoa(netHTTPPort)), b.c.NetRequests, timeout)
			})
			if len(line) > 0 {
				logf("net round %d: %s: %s", i, name, strings.Join(line, ", "))
			}
		}
	}
	return nil
}

// netStart wires contender r's namespace, starts its server container and
// waits until both servers answer.
func (b *bench) netStart(n *netEnv, r *runtime, i int, pub *publisher, pubErr error) (*netContainer, error) {
	if r == b.vm {
		if _, _, err := b.check(); err != nil {
			return nil, err
		}
	}
	c := &netContainer{rt: r, ip: host(n.subnet, 10+i), mib: b.c.NetMiB, pubErr: pubErr, failed: map[string]bool{}}
	if r == b.vm {
		c.mib = b.c.NetVMMiB
	}
	nsPath, err := n.attach(fmt.Sprintf("rb%s-%s", b.nonce, r.Name), fmt.Sprintf("rbv%s%d", b.nonce, i), c.ip)
	if err != nil {
		return nil, err
	}
	if pub != nil {
		if c.published, err = n.publish(pub, c.ip, netSinkPort); err != nil {
			c.pubErr = err
		}
	}
	bundle := filepath.Join(b.dir, "bundle-net-"+r.Name)
	joinNS := func(s *specs.Spec) {
		s.Version = "1.0.2" // as the other bundles, for crun
		for k, ns := range s.Linux.Namespaces {
			if ns.Type == specs.NetworkNamespace {
				s.Linux.Namespaces[k].Path = nsPath
			}
		}
	}
	if err := integration.NewBundle(bundle, filepath.Join(b.dir, "rootfs"), "", joinNS, "/bin/sh", "-c", netServerScript); err != nil {
		return nil, err
	}
	w := b.workers[0]
	id := b.id(r, "net", 0)
	_, _, fd, err := w.create(r, id, bundle)
	if err != nil {
		return nil, err
	}
	unix.Close(fd)
	// Deleted before its namespace and veth go (the undo runs in reverse).
	n.undo = append(n.undo, func() error { w.forceDelete(r, id); return nil })
	if _, _, err := w.call(r, "start", id); err != nil {
		return nil, err
	}
	if err := waitServers(b.ctx, c.ip, r.Timeout); err != nil {
		return nil, fmt.Errorf("%s: servers in the container: %w", r.Name, err)
	}
	logf("net: %s container at %s, published %s", r.Name, c.ip, c.published)
	return c, nil
}

// waitServers waits until httpd answers a GET and nc accepts a connection.
func waitServers(ctx context.Context, ip net.IP, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	web := net.JoinHostPort(ip.String(), strconv.Itoa(netHTTPPort))
	sink := net.JoinHostPort(ip.String(), strconv.Itoa(netSinkPort))
	var err error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if err = httpGet(ctx, web, time.Now().Add(2*time.Second)); err == nil {
			if _, err = sendTCP(ctx, sink, 1, 2*time.Second); err == nil {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err == nil {
		err = ctx.Err()
	}
	return fmt.Errorf("not answering within %v: %w", timeout, err)
}

// zeros is what sendTCP writes: the content does not matter on a path
// that neither compresses nor inspects it.
var zeros = make([]byte, 1<<20)

// sendTCP connects to addr, retrying while nobody listens (nc restarts
// after each connection), sends n bytes, half-closes and waits for the
// peer to close: the peer has then read everything. It returns MiB/s over
// the time from the connection's establishment to the peer's close.
func sendTCP(ctx context.Context, addr string, n int64, timeout time.Duration) (float64, error) {
	deadline := time.Now().Add(timeout)
	conn, err := dialRetry(ctx, addr, deadline)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	conn.SetDeadline(deadline)
	t0 := time.Now()
	for left := n; left > 0; {
		k := min(left, int64(len(zeros)))
		if _, err := conn.Write(zeros[:k]); err != nil {
			return 0, fmt.Errorf("send to %s: %w", addr, err)
		}
		left -= k
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, err
	}
	if _, err := io.Copy(io.Discard, conn); err != nil {
		return 0, fmt.Errorf("wait for %s to close: %w", addr, err)
	}
	return mibPerSecond(n, time.Since(t0)), nil
}

func mibPerSecond(n int64, d time.Duration) float64 {
	return float64(n) / (1 << 20) / d.Seconds()
}

// dialRetry dials until the deadline while the connection is refused.
func dialRetry(ctx context.Context, addr string, deadline time.Time) (net.Conn, error) {
	d := net.Dialer{Deadline: deadline}
	for {
		conn, err := d.DialContext(ctx, "tcp4", addr)
		if err == nil {
			return conn, nil
		}
		if !errors.Is(err, syscall.ECONNREFUSED) || time.Now().Add(20*time.Millisecond).After(deadline) {
			return nil, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// httpGets makes n GETs one after the other, each on a new connection,
// within timeout in all, and returns requests per second.
func httpGets(ctx context.Context, addr string, n int, timeout time.Duration) (float64, error) {
	deadline := time.Now().Add(timeout)
	t0 := time.Now()
	for i := 0; i < n; i++ {
		if err := httpGet(ctx, addr, deadline); err != nil {
			return 0, fmt.Errorf("request %d of %d: %w", i+1, n, err)
		}
	}
	return float64(n) / time.Since(t0).Seconds(), nil
}

// httpGet makes one HTTP/1.0 GET, reads the answer to its end and checks
// its status.
func httpGet(ctx context.Context, addr string, deadline time.Time) error {
	d := net.Dialer{Deadline: deadline}
	conn, err := d.DialContext(ctx, "tcp4", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	conn.SetDeadline(deadline)
	if _, err := io.WriteString(conn, "GET "+netPage+" HTTP/1.0\r\nHost: bench\r\n\r\n"); err != nil {
		return err
	}
	resp, err := io.ReadAll(io.LimitReader(conn, 1<<20))
	if err != nil {
		return err
	}
	return httpStatusOK(resp)
}

// httpStatusOK checks that an answer starts with a 200 status line.
func httpStatusOK(resp []byte) error {
	line, _, _ := bytes.Cut(resp, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/1.") || f[1] != "200" {
		return fmt.Errorf("answer %q, want HTTP/1.x 200", oneLine(string(line)))
	}
	return nil
}
