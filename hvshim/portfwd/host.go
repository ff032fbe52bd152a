package portfwd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/hvshim/proto"
	"github.com/runh-project/runh/hvshim/vmnet"
)

// maxConns bounds the connections one VM's forwarder relays at once; one
// more is closed as soon as it is accepted.
const maxConns = 1024

// Forward mirrors the TCP ports container id listens on in its guest
// network namespace as listeners on the loopback of ns, the container's
// network namespace on the host, and relays each connection they accept to
// the guest. open opens a stream to the agent. It returns when ctx is done
// or the agent ends the watch (the container has exited, the VM is gone),
// having closed its listeners and connections; the error is for the log.
func Forward(ctx context.Context, open func() (net.Conn, error), ns *os.File, id string, logf func(string, ...any)) error {
	st, err := open()
	if err != nil {
		return err
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() { st.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := proto.WriteFrame(st, proto.Header{Kind: KindWatch}); err != nil {
		return ended(ctx, err)
	}
	if err := proto.WriteFrame(st, watchRequest{ID: id}); err != nil {
		return ended(ctx, err)
	}
	f := &forwarder{open: open, ns: ns, id: id, logf: logf,
		listeners: map[Port]net.Listener{}, failed: map[Port]bool{},
		conns: map[net.Conn]struct{}{}, slots: make(chan struct{}, maxConns)}
	defer f.close()
	for {
		var set portSet
		if err := proto.ReadFrame(st, &set, maxSetFrame); err != nil {
			return ended(ctx, err)
		}
		if set.Error != "" {
			return fmt.Errorf("agent: %.200q", set.Error)
		}
		f.apply(set.Ports)
		// A guest changing its set in a loop gets one update (at most
		// MaxListeners binds) applied every minApply.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(minApply):
		}
	}
}

// ended says how the watch ended: nil when ctx was cancelled or the agent
// closed it (the container has exited, or the VM has gone with the link).
func ended(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	for _, end := range []error{io.EOF, io.ErrUnexpectedEOF, yamux.ErrSessionShutdown, yamux.ErrConnectionReset, yamux.ErrStreamClosed} {
		if errors.Is(err, end) {
			return nil
		}
	}
	return err
}

type forwarder struct {
	open func() (net.Conn, error)
	ns   *os.File
	id   string
	logf func(string, ...any)

	listeners map[Port]net.Listener // only Forward's goroutine touches these two
	failed    map[Port]bool         // ports whose bind failed, logged once
	warned    bool                  // the guest's set was cut, logged once

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // open connections, both ends
	closed bool
	slots  chan struct{}
}

// sanitize keeps the valid ports of the guest's set, once each (on the
// wildcard address if any of its sockets is), at most MaxListeners (the
// lowest), and reports whether it dropped any.
func sanitize(ports []Port) ([]Port, bool) {
	out := make([]Port, 0, min(len(ports), MaxListeners))
	seen := map[Port]int{} // without Any: its index in out
	cut := false
	for _, p := range ports {
		if !p.valid() {
			cut = true
			continue
		}
		k := Port{Port: p.Port, V6: p.V6}
		if i, ok := seen[k]; ok {
			out[i].Any = out[i].Any || p.Any
			continue
		}
		seen[k] = len(out)
		out = append(out, p)
	}
	sortPorts(out)
	if len(out) > MaxListeners {
		out, cut = out[:MaxListeners], true
	}
	return out, cut
}

// apply makes the listeners those of the guest's set: it closes those of
// ports gone, and tries to open those of new ports and of ports whose bind
// failed before (the host namespace may have freed them since).
func (f *forwarder) apply(ports []Port) {
	want, cut := sanitize(ports)
	if cut && !f.warned {
		f.warned = true
		f.logf("port forwarding: the guest reported %d ports; forwarding at most %d valid ones", len(ports), MaxListeners)
	}
	in := map[Port]bool{}
	for _, p := range want {
		in[p] = true
	}
	for p, l := range f.listeners {
		if !in[p] {
			l.Close()
			delete(f.listeners, p)
		}
	}
	for p := range f.failed {
		if !in[p] {
			delete(f.failed, p)
		}
	}
	for _, p := range want {
		if f.listeners[p] != nil {
			continue
		}
		l, err := f.listen(p)
		if err != nil {
			// Something in the host namespace holds the port (it is not
			// taken from it), or its loopback is down (EADDRNOTAVAIL: as
			// with process isolation, nothing reaches it there).
			if !f.failed[p] && !errors.Is(err, unix.EADDRNOTAVAIL) {
				f.logf("port forwarding: %s not forwarded: %v", p, err)
			}
			f.failed[p] = true
			continue
		}
		delete(f.failed, p)
		f.listeners[p] = l
		go f.accept(l, p)
	}
}

// listen opens p's listener in the container's host namespace: a socket
// belongs to the namespace it was made in.
func (f *forwarder) listen(p Port) (net.Listener, error) {
	var l net.Listener
	err := vmnet.InNS(f.ns, func() (err error) {
		l, err = net.Listen(p.network(), p.listenAddr())
		return err
	})
	return l, err
}

func (f *forwarder) accept(l net.Listener, p Port) {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors, or the like: the next may succeed.
			time.Sleep(100 * time.Millisecond)
			continue
		}
		select {
		case f.slots <- struct{}{}:
			go func() {
				defer func() { <-f.slots }()
				f.relay(c.(*net.TCPConn), p)
			}()
		default:
			c.Close()
		}
	}
}

// relay carries one accepted connection to the guest, which dials p in the
// container's guest namespace; a guest that cannot closes the stream, and
// the connection closes with it.
func (f *forwarder) relay(c *net.TCPConn, p Port) {
	if !f.track(c) {
		return
	}
	defer f.untrack(c)
	st, err := f.open()
	if err != nil {
		c.Close()
		return
	}
	if !f.track(st) {
		c.Close()
		return
	}
	defer f.untrack(st)
	if proto.WriteFrame(st, proto.Header{Kind: KindDial}) != nil || proto.WriteFrame(st, dialRequest{ID: f.id, Port: p}) != nil {
		c.Close()
		st.Close()
		return
	}
	relay(c, st)
}

// track records an open connection, or closes it once the forwarder is done.
func (f *forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		c.Close()
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *forwarder) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
}

// close closes every listener and connection.
func (f *forwarder) close() {
	for p, l := range f.listeners {
		l.Close()
		delete(f.listeners, p)
	}
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
}
