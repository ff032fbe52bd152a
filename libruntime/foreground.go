package libruntime

import (
	"io"
	"os"
	"os/signal"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Foreground attaches the caller to a process it waits for (`run` or
// `exec` without --detach): signals are forwarded, and with a terminal the
// caller's terminal is put in raw mode and joined to the pty.
type Foreground struct {
	terminal bool
	ours     *os.File // our end of the console socket pair
	master   *os.File // the pty master, once received
	sigs     chan os.Signal
	catching chan struct{} // closed once every signal is caught
}

// NewForeground starts catching signals, so that none sent while the
// process is being created is lost. With terminal, it also returns the
// console socket end to hand to the backend.
//
// Catching all signals costs the Go runtime a round trip per signal
// (about 3 ms for the 65 of them), so it runs in the background while the
// container is created, as runc does; Wait waits for it to finish.
func NewForeground(terminal bool) (*Foreground, *os.File, error) {
	f := &Foreground{terminal: terminal, sigs: make(chan os.Signal, 128), catching: make(chan struct{})}
	go func() {
		signal.Notify(f.sigs)
		close(f.catching)
	}()
	if !terminal {
		return f, nil, nil
	}
	ours, theirs, err := SocketPair("console")
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	f.ours = ours
	return f, theirs, nil
}

// Ready returns once every signal is caught: before the process starts,
// so that from then on none takes runh's default action.
func (f *Foreground) Ready() { <-f.catching }

// Close releases the console socket. Signals stay caught (and, once Wait
// has returned, ignored): the caller exits next, and undoing the handlers
// would cost as much as installing them.
func (f *Foreground) Close() {
	if f.ours != nil {
		f.ours.Close()
	}
}

// Wait relays until p exits and returns its exit status.
func (f *Foreground) Wait(p Process) (int, error) {
	var copied sync.WaitGroup
	if f.terminal {
		master, err := RecvFd(f.ours, 30*time.Second)
		if err != nil {
			p.Signal(unix.SIGKILL)
			return 0, err
		}
		defer master.Close()
		f.master = master
		if restore, err := makeRaw(os.Stdin); err == nil {
			defer restore()
		}
		resize(master)
		go io.Copy(master, os.Stdin)
		copied.Add(1)
		go func() {
			defer copied.Done()
			io.Copy(os.Stdout, master) // ends with EIO when the pty closes
		}()
	}
	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	go func() {
		st, err := p.Wait()
		done <- result{st, err}
	}()
	f.Ready()
	for {
		select {
		case r := <-done:
			if f.terminal {
				waitTimeout(&copied, time.Second)
			}
			return r.status, r.err
		case s := <-f.sigs:
			sig := s.(unix.Signal)
			switch sig {
			case unix.SIGCHLD, unix.SIGURG, unix.SIGPIPE:
				// SIGURG is the Go runtime's own preemption signal.
			case unix.SIGWINCH:
				if f.master != nil {
					resize(f.master)
				}
			default:
				p.Signal(sig)
			}
		}
	}
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	c := make(chan struct{})
	go func() { wg.Wait(); close(c) }()
	select {
	case <-c:
	case <-time.After(d):
	}
}

// resize copies the caller's terminal size to the pty.
func resize(master *os.File) {
	ws, err := unix.IoctlGetWinsize(int(os.Stdin.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return
	}
	unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, ws)
}

// makeRaw puts a terminal in raw mode and returns how to restore it.
func makeRaw(f *os.File) (func(), error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN] = 1
	raw.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil, err
	}
	return func() { unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}
