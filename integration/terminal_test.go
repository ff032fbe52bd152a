package integration

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// consoleSocket is the receiving end of --console-socket: it accepts one
// connection and takes the pty master the runtime sends with SCM_RIGHTS.
type consoleSocket struct {
	path   string
	ln     *net.UnixListener
	master chan *os.File
	errc   chan error
}

func newConsoleSocket(t *testing.T, x *h) *consoleSocket {
	t.Helper()
	dir, err := os.MkdirTemp(x.short, "cs")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	cs := &consoleSocket{path: path, ln: ln, master: make(chan *os.File, 1), errc: make(chan error, 1)}
	t.Cleanup(func() { ln.Close() })
	go cs.accept()
	return cs
}

func (cs *consoleSocket) accept() {
	conn, err := cs.ln.AcceptUnix()
	if err != nil {
		cs.errc <- err
		return
	}
	defer conn.Close()
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		cs.errc <- err
		return
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		cs.errc <- fmt.Errorf("console socket: control messages %d: %v", len(msgs), err)
		return
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		cs.errc <- fmt.Errorf("console socket: fds %v: %v", fds, err)
		return
	}
	// Non-blocking so the runtime poller serves reads and deadlines work.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		cs.errc <- err
		return
	}
	cs.master <- os.NewFile(uintptr(fds[0]), "pty-master")
}

// pty wraps a received master, collecting everything the container writes.
type pty struct {
	f   *os.File
	mu  sync.Mutex
	buf bytes.Buffer
}

// receive waits for the pty master and starts collecting its output.
func (cs *consoleSocket) receive(t *testing.T, d time.Duration) *pty {
	t.Helper()
	select {
	case f := <-cs.master:
		p := &pty{f: f}
		t.Cleanup(func() { f.Close() })
		go p.collect()
		return p
	case err := <-cs.errc:
		t.Fatalf("console socket: %v", err)
	case <-time.After(d):
		t.Fatalf("console socket: no pty master within %v", d)
	}
	return nil
}

// openPty makes a pty pair in the test, standing in for a user's terminal.
func openPty(t *testing.T) (*pty, *os.File) {
	t.Helper()
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	master := os.NewFile(uintptr(fd), "ptmx")
	t.Cleanup(func() { master.Close() })
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slave.Close() })
	p := &pty{f: master}
	go p.collect()
	return p, slave
}

func (p *pty) collect() {
	b := make([]byte, 4096)
	for {
		n, err := p.f.Read(b)
		p.mu.Lock()
		p.buf.Write(b[:n])
		p.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (p *pty) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.buf.String()
}

func (p *pty) write(t *testing.T, s string) {
	t.Helper()
	if _, err := p.f.Write([]byte(s)); err != nil {
		t.Fatalf("write to pty: %v", err)
	}
}

// waitFor waits until the output contains want.
func (p *pty) waitFor(t *testing.T, want string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(p.output(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("pty: no %q within %v; output so far %q", want, d, p.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ask writes cmd until the output contains want: a forwarded window size
// may land a moment after the change, as on any terminal.
func (p *pty) ask(t *testing.T, cmd, want string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		p.write(t, cmd)
		for i := 0; i < 20; i++ {
			if strings.Contains(p.output(), want) {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		if time.Now().After(deadline) {
			t.Fatalf("pty: no %q within %v; output so far %q", want, d, p.output())
		}
	}
}

func (p *pty) setSize(t *testing.T, rows, cols uint16) {
	t.Helper()
	if err := unix.IoctlSetWinsize(int(p.f.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
		t.Fatalf("TIOCSWINSZ: %v", err)
	}
}

// TestTerminal runs an interactive shell on a pty received over
// --console-socket: input, output, the tty name and window size changes.
func TestTerminal(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		id := x.id("tty")
		bundle := x.bundle("tty", func(s *specs.Spec) { s.Process.Terminal = true }, "sh")
		cs := newConsoleSocket(t, x)
		x.create(id, bundle, nil, "--console-socket", cs.path)
		p := cs.receive(t, x.timeout())
		p.setSize(t, 40, 100)
		x.must("start", id)
		x.waitStatus(id, "running")

		// Output markers are built by the shell so the echoed input never matches.
		p.write(t, "tty; echo A''B\n")
		p.waitFor(t, "AB", x.timeout())
		p.waitFor(t, "/dev/pts/0", time.Second)
		p.ask(t, "echo \"size=$(stty size)\"\n", "size=40 100", x.timeout())

		// A window size change after start must reach the container.
		p.setSize(t, 50, 120)
		p.ask(t, "echo \"size=$(stty size)\"\n", "size=50 120", x.timeout())

		p.write(t, "exit 3\n")
		x.waitStatus(id, "stopped")
		x.must("delete", id)
		x.assertGone(id)
	})
}

// TestRunTerminal runs a terminal container in the foreground from a
// terminal: run relays between its own terminal and the container's pty.
func TestRunTerminal(t *testing.T) {
	forEachMode(t, func(t *testing.T, x *h) {
		id := x.id("runtty")
		bundle := x.bundle("runtty", func(s *specs.Spec) { s.Process.Terminal = true }, "sh")
		p, slave := openPty(t)
		p.setSize(t, 30, 90)
		x.cleanupContainer(id)
		_, wait := x.start(opts{stdin: slave, stdout: slave, stderr: slave, ctty: true}, "run", "--bundle", bundle, id)
		// The runtime copies the window size once the container runs, so
		// ask for it only after the shell has answered.
		p.write(t, "tty\n")
		p.waitFor(t, "/dev/pts/0", x.timeout())
		p.ask(t, "echo \"size=$(stty size)\"\n", "size=30 90", x.timeout())
		p.write(t, "exit 4\n")
		if r := wait(); r.code != 4 {
			t.Errorf("run with terminal: exit %d, want 4: %v; terminal output %q", r.code, r, p.output())
		}
		x.assertGone(id)
	})
}
