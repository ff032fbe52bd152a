package integration

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// dialNetNS connects to addr from inside the network namespace at path, as
// containerd's CRI does for PortForward: on a locked OS thread that has
// entered it (the socket stays in it).
func dialNetNS(path, network, addr string) (net.Conn, error) {
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- res{nil, err}
			return
		}
		defer orig.Close()
		target, err := os.Open(path)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- res{nil, err}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- res{nil, fmt.Errorf("setns %s: %w", path, err)}
			return
		}
		c, err := net.DialTimeout(network, addr, 5*time.Second)
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread() // else the thread dies with the goroutine
		}
		ch <- res{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// echoNetNS sends msg to addr in the namespace, half-closes, and returns
// what comes back until the server's end.
func echoNetNS(path, network, addr, msg string) (string, error) {
	c, err := dialNetNS(path, network, addr)
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

// closedNetNS returns nil when a connection to addr in the namespace is
// refused, as for a port nothing listens on, else why not: accepted, or
// another error (a reset: the listener closed as the connection came).
func closedNetNS(path, network, addr string) error {
	c, err := dialNetNS(path, network, addr)
	switch {
	case err == nil:
		c.Close()
		return errors.New("connection accepted")
	case errors.Is(err, unix.ECONNREFUSED):
		return nil
	}
	return err
}

// TestPortForward: a server in a container whose network namespace is at
// a path (an engine's, here `ip netns add`'s) answers at 127.0.0.1:PORT
// and [::1]:PORT from inside that namespace on the host, where containerd's
// CRI dials for port-forward. With process isolation the container's
// loopback is the namespace's own; in a VM runh forwards the guest's
// listening ports (hvshim/portfwd). The port closes within seconds when
// the server stops, and when the container goes.
func TestPortForward(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		n := newTestNet(t, x, 4, true)
		id := x.startContainer("pfwd", withNetNS(n.nsPath), "sh", "-c",
			"httpd -p 7072 -h /etc && { nc -ll -p 7070 -e cat </dev/null >/dev/null 2>&1 & echo $! >/tmp/srv; exec sleep 100000; }")
		defer x.cleanupContainer(id)

		// The server answers, over both loopback addresses.
		echo := func(network, addr string, d time.Duration) {
			t.Helper()
			msg := fmt.Sprintf("hello %s through %s\n", x.mode, addr)
			var got string
			var err error
			for deadline := time.Now().Add(d); ; time.Sleep(200 * time.Millisecond) {
				if got, err = echoNetNS(n.nsPath, network, addr, msg); err == nil && got == msg {
					return
				}
				if time.Now().After(deadline) {
					break
				}
			}
			t.Fatalf("%s %s in %s: got %q (err %v), want %q", network, addr, n.nsPath, got, err, msg)
		}
		// refused waits until a connection to addr is refused, as for a
		// port nothing listens on, and says how long that took.
		refused := func(network, addr string, d time.Duration) time.Duration {
			t.Helper()
			start := time.Now()
			var err error
			for deadline := start.Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				if err = closedNetNS(n.nsPath, network, addr); err == nil {
					break
				}
			}
			if err != nil {
				t.Fatalf("%s %s after the server stopped: %v after %v, want connection refused", network, addr, err, time.Since(start))
			}
			return time.Since(start)
		}
		echo("tcp4", "127.0.0.1:7070", 30*time.Second)
		echo("tcp6", "[::1]:7070", 10*time.Second)
		// Several at once, each its own connection (to httpd: busybox nc
		// -ll resets some of a burst of connections, in both modes).
		errs := make(chan error, 8)
		for i := 0; i < cap(errs); i++ {
			go func() {
				network, addr := "tcp4", "127.0.0.1:7072"
				if i%2 == 1 {
					network, addr = "tcp6", "[::1]:7072"
				}
				got, err := echoNetNS(n.nsPath, network, addr, "GET /passwd HTTP/1.0\r\n\r\n")
				if err == nil && !strings.Contains(got, "root:x:0:0") {
					err = fmt.Errorf("got %q", got)
				}
				if err != nil {
					err = fmt.Errorf("%s: %w", addr, err)
				}
				errs <- err
			}()
		}
		for i := 0; i < cap(errs); i++ {
			if err := <-errs; err != nil {
				t.Errorf("concurrent connection: %v", err)
			}
		}
		// A port nothing listens on is refused at once.
		if _, err := dialNetNS(n.nsPath, "tcp4", "127.0.0.1:7079"); !errors.Is(err, unix.ECONNREFUSED) {
			t.Errorf("127.0.0.1:7079, no server: %v, want connection refused", err)
		}

		// The server stops: the port closes.
		x.must("exec", id, "sh", "-c", "kill $(cat /tmp/srv)")
		d4 := refused("tcp4", "127.0.0.1:7070", 10*time.Second)
		d6 := refused("tcp6", "[::1]:7070", 10*time.Second)
		t.Logf("port closed %v (127.0.0.1), %v more ([::1]) after the server was killed", d4.Round(time.Millisecond), d6.Round(time.Millisecond))

		// Another server, then the container goes.
		x.must("exec", id, "sh", "-c", "nc -ll -p 7071 -e cat </dev/null >/dev/null 2>&1 &")
		echo("tcp4", "127.0.0.1:7071", 30*time.Second)
		x.must("kill", id, "KILL")
		x.waitStatus(id, "stopped")
		refused("tcp4", "127.0.0.1:7071", 10*time.Second)
		x.must("delete", id)
	})
}

// TestPortForwardPod: in a pod, the sandbox's network namespace (here one
// `ip netns add` made, with only its loopback) is the one port-forward
// enters; a server in another container of the pod, which shares it,
// answers there, and the port closes when that container is killed.
func TestPortForwardPod(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		name := fmt.Sprintf("rhpf%c%d", x.mode[0], os.Getpid())
		if _, err := ipCmd("netns", "add", name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ipCmd("netns", "delete", name) })
		if _, err := ipCmd("-n", name, "link", "set", "lo", "up"); err != nil {
			t.Fatal(err)
		}
		path := "/run/netns/" + name
		sb := x.id("pfsandbox")
		x.create(sb, x.bundle("pfsandbox", func(s *specs.Spec) {
			s.Annotations = map[string]string{"io.kubernetes.cri.container-type": "sandbox"}
			setNetNS(s, path)
		}, "sleep", "100000"), nil)
		x.must("start", sb)
		m := x.id("pfmember")
		x.create(m, x.bundle("pfmember", podMember(sb, x.state(sb).Pid), "nc", "-ll", "-p", "7080", "-e", "cat"), nil)
		x.must("start", m)
		msg := "to the pod's member\n"
		var got string
		var err error
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if got, err = echoNetNS(path, "tcp4", "127.0.0.1:7080", msg); err == nil && got == msg {
				break
			}
		}
		if got != msg {
			t.Fatalf("127.0.0.1:7080 in %s: got %q (err %v), want %q", path, got, err, msg)
		}
		x.must("kill", m, "KILL")
		start := time.Now()
		for time.Since(start) < 10*time.Second {
			if err = closedNetNS(path, "tcp4", "127.0.0.1:7080"); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("127.0.0.1:7080 after the member was killed: %v after %v, want connection refused", err, time.Since(start))
		}
		x.waitStatus(m, "stopped")
		x.must("delete", m)
		x.must("delete", "--force", sb)
	})
}
