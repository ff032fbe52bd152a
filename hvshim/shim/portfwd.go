package shim

import (
	"context"
	"net"
	"time"

	"github.com/runh-project/runh/hvshim/portfwd"
)

// forwardPorts makes the ports the container listens on in the guest
// reachable at 127.0.0.1 and ::1 of its network namespace on the host, as
// with process isolation (hvshim/portfwd), until stopPorts.
func (s *shim) forwardPorts() {
	ns, err := s.net.NetNS()
	if err != nil {
		s.logf("port forwarding: %v", err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s.stopPorts = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
		}
	}
	open := func() (net.Conn, error) { return s.agent.Sess.OpenStream() }
	go func() {
		defer close(done)
		defer ns.Close()
		if err := portfwd.Forward(ctx, open, ns, s.cfg.ID, s.logf); err != nil {
			s.logf("port forwarding: %v", err)
		}
	}()
}
