// Package portfwd makes the TCP ports a VM container listens on reachable
// from the loopback of the container's network namespace on the host, as
// they are with process isolation, where the container's loopback is that
// namespace's.
//
// Engines rely on it: containerd's CRI implements PortForward (kubectl
// port-forward, crictl port-forward) by entering the pod's network
// namespace on the host and dialing localhost:PORT. With hypervisor
// isolation that namespace keeps its interfaces (hvshim/vmnet redirects
// their frames to the VM) but its loopback is its own: the server listens in
// the guest.
//
// Two streams of the agent connection carry it, both opened by the host:
//
//   - a watch stream (KindWatch), one per VM: the agent reports the TCP
//     ports the container's guest network namespace listens on (on the
//     wildcard address or loopback), each time the set changes; it looks
//     once a second while the stream is open, with a sock_diag dump of the
//     namespace's listening sockets (diag.go), or where the kernel lacks
//     it by reading /proc/<init>/net/tcp and tcp6;
//   - a dial stream (KindDial) per connection: the host accepted it on
//     127.0.0.1:P or [::1]:P in the container's host namespace; the agent
//     dials the same address in the container's guest namespace and both
//     relay bytes until either side is done.
//
// Forward is the host's side (the shim), Serve the guest's (the agent).
//
// Nothing from the guest is trusted: it only names port numbers, which the
// host checks (1 to 65535, at most MaxListeners, an update applied at most
// every minApply), and the host listens only on the loopback addresses of
// the container's own host namespace, or its wildcard address for a guest
// socket on the wildcard address (which, the namespace's interfaces being
// the VM's, only the namespace itself reaches beyond loopback), skipping a
// port that something there already holds. It never dials anything for
// the guest.
package portfwd

import (
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Stream kinds: the Kind of the proto.Header opening the stream.
const (
	// KindWatch carries a watchRequest from the host, then portSets
	// from the guest, each time the container's listening ports change.
	KindWatch = "ports"
	// KindDial carries a dialRequest from the host, then the bytes of
	// one TCP connection, both ways.
	KindDial = "port-dial"
)

// MaxListeners bounds the listeners the host opens for one VM.
const MaxListeners = 256

var (
	// pollEvery is how often the agent reads the listening ports while
	// the host watches them.
	pollEvery = time.Second
	// minApply is the least time between two updates the host applies,
	// however fast the guest sends them.
	minApply = 250 * time.Millisecond
)

// Port is a listening port the guest reports: V6 false, the guest answers
// at 127.0.0.1:Port; true, at [::1]:Port. Any says its socket is on the
// wildcard address: as a process container's would, it then answers at
// every address of the namespace, which rootless podman's port forwarder
// (rootlessport) dials from inside it (the container's slirp4netns
// address); the host listens on the wildcard address for it.
type Port struct {
	Port int  `json:"port"`
	V6   bool `json:"v6,omitempty"`
	Any  bool `json:"any,omitempty"`
}

func (p Port) network() string {
	if p.V6 {
		return "tcp6"
	}
	return "tcp4"
}

// addr is the loopback address of p, the same on both sides.
func (p Port) addr() string {
	host := "127.0.0.1"
	if p.V6 {
		host = "::1"
	}
	return net.JoinHostPort(host, strconv.Itoa(p.Port))
}

// listenAddr is where the host listens for p in the container's host
// namespace: p's loopback address, or for a socket on the guest's wildcard
// address the wildcard address. Only the namespace itself reaches the
// latter beyond loopback: frames from outside on its interfaces go to the
// VM (hvshim/vmnet) before its host stack sees them.
func (p Port) listenAddr() string {
	if !p.Any {
		return p.addr()
	}
	host := "0.0.0.0"
	if p.V6 {
		host = "::"
	}
	return net.JoinHostPort(host, strconv.Itoa(p.Port))
}

func (p Port) String() string { return p.network() + " " + p.listenAddr() }

// sortPorts sorts by port number, IPv4 first, loopback first.
func sortPorts(ports []Port) {
	slices.SortFunc(ports, func(a, b Port) int {
		if a.Port != b.Port {
			return a.Port - b.Port
		}
		if a.V6 != b.V6 {
			if b.V6 {
				return -1
			}
			return 1
		}
		switch {
		case a.Any == b.Any:
			return 0
		case b.Any:
			return -1
		}
		return 1
	})
}

// valid reports whether p names a port at all.
func (p Port) valid() bool { return p.Port >= 1 && p.Port <= 65535 }

// watchRequest opens a watch: the container whose network namespace (its
// init's) is watched; for a pod, the sandbox.
type watchRequest struct {
	ID string `json:"id"`
}

// portSet is the full set of listening ports, sent when it changes.
type portSet struct {
	Ports []Port `json:"ports"`
	Error string `json:"error,omitempty"`
}

// dialRequest opens a dial stream.
type dialRequest struct {
	ID string `json:"id"`
	Port
}

// maxSetFrame bounds a portSet frame the host reads: MaxListeners ports
// take about 7 KiB; a guest sending more is cut short, not read.
const maxSetFrame = 64 << 10

// dialTimeout bounds the guest's dial of its own loopback.
const dialTimeout = 10 * time.Second

// relay copies between a TCP connection and a stream both ways, passing an
// end of one direction on as such (so that a client may half-close and
// still read the answer), until both directions are done. An error in
// either direction aborts both. Both are closed when it returns.
func relay(tcp *net.TCPConn, st net.Conn) {
	var once sync.Once
	abort := func() {
		once.Do(func() {
			tcp.Close()
			st.SetDeadline(time.Unix(1, 0))
			st.Close()
		})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := io.Copy(st, tcp); err != nil {
			abort()
			return
		}
		st.Close() // yamux: our FIN; the stream still reads
	}()
	if _, err := io.Copy(tcp, st); err != nil {
		abort()
	} else {
		tcp.CloseWrite()
	}
	<-done
	tcp.Close()
	st.Close()
}
