package portfwd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/hvshim/proto"
	"github.com/runh-project/runh/hvshim/vmnet"
)

// What /proc/net/tcp and tcp6 show (x86, little-endian words).
const procTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1002 1 0000000000000000 100 0 0 10 0
   2: 0200007F:0051 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1003 1 0000000000000000 100 0 0 10 0
   3: 0200580A:0052 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1004 1 0000000000000000 100 0 0 10 0
   4: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 1005 1 0000000000000000 20 4 30 10 -1
   5: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1006 1 0000000000000000 100 0 0 10 0
`

const procTCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0BB8 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2001 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0BB9 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2002 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:0BBA 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2003 1 0000000000000000 100 0 0 10 0
   3: 000080FE00000000FF005A02FEDC8A00:0BBB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2004 1 0000000000000000 100 0 0 10 0
`

func TestListening(t *testing.T) {
	var ports []Port
	ports = listening(bufio.NewReader(strings.NewReader(procTCP)), ports)
	ports = listening(bufio.NewReader(strings.NewReader(procTCP6)), ports)
	sortPorts(ports)
	// 0.0.0.0:8080, 127.0.0.1:80, [::]:3000 (both), [::1]:3001,
	// [::ffff:127.0.0.1]:3002; not 127.0.0.2:81, 10.88.0.2:82, fe80::..:3003;
	// and not 0.0.0.0:22, listed after a connection.
	want := []Port{{Port: 80}, {Port: 3000, Any: true}, {Port: 3000, V6: true, Any: true}, {Port: 3001, V6: true}, {Port: 3002}, {Port: 8080, Any: true}}
	if !slices.Equal(ports, want) {
		t.Fatalf("got %v, want %v", ports, want)
	}
	if got := listening(bufio.NewReader(strings.NewReader("garbage\n 0: zz:zz 0 0A\n")), nil); len(got) != 0 {
		t.Fatalf("garbage: %v", got)
	}
}

func TestSanitize(t *testing.T) {
	got, cut := sanitize([]Port{{Port: 9}, {Port: 0}, {Port: 70000}, {Port: -1}, {Port: 9}, {Port: 9, V6: true}, {Port: 1}, {Port: 9, Any: true}})
	if want := []Port{{Port: 1}, {Port: 9, Any: true}, {Port: 9, V6: true}}; !slices.Equal(got, want) || !cut {
		t.Fatalf("got %v %v, want %v true", got, cut, want)
	}
	var many []Port
	for i := 1000; i > 0; i-- {
		many = append(many, Port{Port: i})
	}
	got, cut = sanitize(many)
	if len(got) != MaxListeners || got[0].Port != 1 || !cut {
		t.Fatalf("%d ports from 1000: %d, first %v, cut %v", len(many), len(got), got[0], cut)
	}
}

// netNS starts a process in a new network namespace with lo up and
// returns the process and the namespace.
func netNS(t *testing.T) (*exec.Cmd, *os.File) {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	h, err := netlink.NewHandleAt(netns.NsHandle(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatal(err)
	}
	return cmd, f
}

func listenIn(t *testing.T, ns *os.File, network, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	if err := vmnet.InNS(ns, func() (err error) { l, err = net.Listen(network, addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func dialIn(ns *os.File, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := vmnet.InNS(ns, func() (err error) { c, err = net.DialTimeout(network, addr, 5*time.Second); return err })
	return c, err
}

// serveEcho answers each connection with what it reads, then its end.
func serveEcho(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}

// exchange sends msg, half-closes, and returns all that comes back.
func exchange(ns *os.File, network, addr, msg string) (string, error) {
	c, err := dialIn(ns, network, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return "", err
	}
	c.(*net.TCPConn).CloseWrite()
	b, err := io.ReadAll(c)
	return string(b), err
}

// until retries fn until it returns nil or d has passed.
func until(d time.Duration, fn func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := fn()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func quiet() *yamux.Config {
	c := yamux.DefaultConfig()
	c.LogOutput = io.Discard
	return c
}

// TestForward runs both sides over a yamux session, with two network
// namespaces standing for the container's on the host and in the guest.
func TestForward(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	defer func(p, m time.Duration) { pollEvery, minApply = p, m }(pollEvery, minApply)
	pollEvery, minApply = 100*time.Millisecond, 10*time.Millisecond

	guestProc, guestNS := netNS(t)
	_, hostNS := netNS(t)

	// The guest's servers: on loopback, on the wildcard (both families),
	// on a port the host namespace already uses, and on an address a
	// connection to loopback does not reach.
	l1 := listenIn(t, guestNS, "tcp4", "127.0.0.1:7001")
	l2 := listenIn(t, guestNS, "tcp", "[::]:7002")
	l3 := listenIn(t, guestNS, "tcp4", "0.0.0.0:7003")
	for _, l := range []net.Listener{l1, l2, l3} {
		go serveEcho(l)
	}
	hostOwn := listenIn(t, hostNS, "tcp4", "127.0.0.1:7003")
	go func() {
		for {
			c, err := hostOwn.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "host's own")
			c.Close()
		}
	}()

	hostEnd, guestEnd := net.Pipe()
	guestSess, err := yamux.Server(guestEnd, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer guestSess.Close()
	hostSess, err := yamux.Client(hostEnd, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer hostSess.Close()
	exited := make(chan struct{})
	lookup := func(id string) (Target, error) {
		if id != "c1" {
			return Target{}, errors.New("no such container")
		}
		return Target{Pid: guestProc.Process.Pid, Exited: exited, Alive: func() bool { return true }}, nil
	}
	go func() { // the agent
		for {
			c, err := guestSess.Accept()
			if err != nil {
				return
			}
			go func() {
				var h proto.Header
				if proto.ReadFrame(c, &h, 4096) != nil {
					c.Close()
					return
				}
				Serve(c, h.Kind, lookup)
			}()
		}
	}()
	var mu sync.Mutex
	var logs []string
	logf := func(f string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		logs = append(logs, fmt.Sprintf(f, a...))
	}
	fwd := make(chan error, 1)
	go func() {
		fwd <- Forward(context.Background(), func() (net.Conn, error) { return hostSess.OpenStream() }, hostNS, "c1", logf)
	}()

	for _, c := range []struct{ network, addr string }{
		{"tcp4", "127.0.0.1:7001"}, {"tcp4", "127.0.0.1:7002"}, {"tcp6", "[::1]:7002"},
	} {
		if err := until(5*time.Second, func() error {
			got, err := exchange(hostNS, c.network, c.addr, "hello "+c.addr)
			if err == nil && got != "hello "+c.addr {
				err = fmt.Errorf("got %q", got)
			}
			return err
		}); err != nil {
			t.Errorf("%s: %v", c.addr, err)
		}
	}
	// 7003 stays the host's own; its bind failure is logged once.
	if got, err := exchange(hostNS, "tcp4", "127.0.0.1:7003", ""); got != "host's own" {
		t.Errorf("127.0.0.1:7003, in use on the host: got %q, %v", got, err)
	}
	mu.Lock()
	if len(logs) != 1 || !strings.Contains(logs[0], "7003") {
		t.Errorf("logs: %q", logs)
	}
	mu.Unlock()
	// Not what the guest does not listen on.
	if _, err := dialIn(hostNS, "tcp6", "[::1]:7001"); !errors.Is(err, unix.ECONNREFUSED) {
		t.Errorf("[::1]:7001: %v, want refused", err)
	}

	// The guest stops listening: so does the host, soon.
	start := time.Now()
	l1.Close()
	if err := until(3*time.Second, func() error {
		c, err := dialIn(hostNS, "tcp4", "127.0.0.1:7001")
		if err == nil {
			c.Close()
			return errors.New("still accepting")
		}
		return nil
	}); err != nil {
		t.Errorf("127.0.0.1:7001 after the guest closed it: %v", err)
	}
	t.Logf("host port closed %v after the guest's", time.Since(start))

	// A connection open when the container exits ends with it; every
	// listener closes and Forward returns.
	open, err := dialIn(hostNS, "tcp6", "[::1]:7002")
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	close(exited)
	select {
	case err := <-fwd:
		if err != nil {
			t.Errorf("Forward: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Forward did not return after the container exited")
	}
	if _, err := dialIn(hostNS, "tcp4", "127.0.0.1:7002"); !errors.Is(err, unix.ECONNREFUSED) {
		t.Errorf("127.0.0.1:7002 after the exit: %v, want refused", err)
	}
	open.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := open.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a connection open at the exit: read %v, want its end", err)
	}
}

// TestForwardBadGuest: a guest naming a container the agent does not know
// ends the watch with its error; one sending a flood of bogus ports gets
// at most MaxListeners listeners, on loopback only.
func TestForwardBadGuest(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	defer func(m time.Duration) { minApply = m }(minApply)
	minApply = time.Millisecond
	_, hostNS := netNS(t)
	hostEnd, guestEnd := net.Pipe()
	guestSess, _ := yamux.Server(guestEnd, quiet())
	defer guestSess.Close()
	hostSess, _ := yamux.Client(hostEnd, quiet())
	defer hostSess.Close()
	go func() { // a hostile agent
		for {
			c, err := guestSess.Accept()
			if err != nil {
				return
			}
			var h proto.Header
			var r watchRequest
			proto.ReadFrame(c, &h, 4096)
			proto.ReadFrame(c, &r, 4096)
			if r.ID == "unknown" {
				proto.WriteFrame(c, portSet{Error: "no such container"})
				c.Close()
				continue
			}
			var ps []Port
			for p := -10; p < 70000; p += 97 {
				ps = append(ps, Port{Port: p}, Port{Port: p, V6: true})
			}
			proto.WriteFrame(c, portSet{Ports: ps[:1000]})
			proto.WriteFrame(c, portSet{Ports: ps[1000:]})
			time.Sleep(300 * time.Millisecond)
			c.Close()
		}
	}()
	open := func() (net.Conn, error) { return hostSess.OpenStream() }
	if err := Forward(context.Background(), open, hostNS, "unknown", t.Logf); err == nil || !strings.Contains(err.Error(), "no such container") {
		t.Errorf("unknown container: %v", err)
	}
	done := make(chan error)
	go func() { done <- Forward(context.Background(), open, hostNS, "c1", t.Logf) }()
	time.Sleep(150 * time.Millisecond)
	n := 0
	vmnet.InNS(hostNS, func() error {
		b, _ := os.ReadFile("/proc/thread-self/net/tcp")
		b6, _ := os.ReadFile("/proc/thread-self/net/tcp6")
		var ps []Port
		ps = listening(bufio.NewReader(strings.NewReader(string(b))), ps)
		ps = listening(bufio.NewReader(strings.NewReader(string(b6))), ps)
		n = len(ps)
		for _, l := range strings.Split(string(b)+string(b6), "\n")[1:] {
			if f := strings.Fields(l); len(f) > 3 && f[3] == tcpListen && !strings.HasPrefix(f[1], "0100007F:") &&
				!strings.HasPrefix(f[1], "00000000000000000000000001000000:") {
				t.Errorf("a listener not on loopback: %s", l)
			}
		}
		return nil
	})
	if n == 0 || n > MaxListeners {
		t.Errorf("%d listeners, want 1 to %d", n, MaxListeners)
	}
	if err := <-done; err != nil {
		t.Errorf("Forward: %v", err)
	}
}

// BenchmarkPoll is one poll of the agent's watch of the caller's network
// namespace (sock_diag, or /proc for BenchmarkPollProc). Run in a VM
// container, it gives the idle cost under TCG (docs/networking.md).
func BenchmarkPoll(b *testing.B)     { benchPoll(b, false) }
func BenchmarkPollProc(b *testing.B) { benchPoll(b, true) }

func benchPoll(b *testing.B, proc bool) {
	w, err := openWatcher(Target{Pid: os.Getpid(), Alive: func() bool { return true }})
	if err != nil {
		b.Fatal(err)
	}
	defer w.close()
	if w.diag == nil && !proc {
		b.Skip("no sock_diag")
	}
	if proc && w.diag != nil {
		w.diag.close()
		w.diag = nil
		w.buf = bufio.NewReaderSize(nil, 8192)
		for _, name := range []string{"tcp", "tcp6"} {
			f, err := os.Open("/proc/self/net/" + name)
			if err != nil {
				b.Fatal(err)
			}
			w.files = append(w.files, f)
		}
	}
	for b.Loop() {
		if _, err := w.read(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSources: sock_diag and /proc agree on what a connection to loopback
// reaches, but for a socket on [::] with IPV6_V6ONLY, which only sock_diag
// can tell.
func TestSources(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	proc, ns := netNS(t)
	listenIn(t, ns, "tcp4", "127.0.0.1:7101")
	listenIn(t, ns, "tcp", "[::]:7102")  // dual-stack
	listenIn(t, ns, "tcp6", "[::]:7103") // Go sets IPV6_V6ONLY
	listenIn(t, ns, "tcp6", "[::1]:7104")
	listenIn(t, ns, "tcp4", "127.0.0.2:7105")
	listenIn(t, ns, "tcp4", "0.0.0.0:7106")
	w, err := openWatcher(Target{Pid: proc.Process.Pid, Alive: func() bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	if w.diag == nil {
		t.Skip("no sock_diag on this kernel")
	}
	got, err := w.read()
	want := []Port{{Port: 7101}, {Port: 7102, Any: true}, {Port: 7102, V6: true, Any: true}, {Port: 7103, V6: true, Any: true}, {Port: 7104, V6: true}, {Port: 7106, Any: true}}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("sock_diag: %v %v, want %v", got, err, want)
	}
	w.diag.close()
	w.diag = nil
	w.buf = bufio.NewReaderSize(nil, 8192)
	for _, name := range []string{"tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", proc.Process.Pid, name))
		if err != nil {
			t.Fatal(err)
		}
		w.files = append(w.files, f)
	}
	got, err = w.read()
	want = []Port{{Port: 7101}, {Port: 7102, Any: true}, {Port: 7102, V6: true, Any: true}, {Port: 7103, Any: true}, {Port: 7103, V6: true, Any: true}, {Port: 7104, V6: true}, {Port: 7106, Any: true}}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("/proc: %v %v, want %v", got, err, want)
	}
}
