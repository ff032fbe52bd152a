package portfwd

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/runh-project/runh/hvshim/vmnet"
)

// The kernel's sock_diag interface (linux/inet_diag.h), which lists a
// namespace's sockets in a given state: only the listening hash is walked
// for TCP_LISTEN, never the established connections, and an IPv6 socket
// says whether it is IPV6_V6ONLY. runh's guest kernel has it built in;
// Debian's (the fallback) has it as a module the initrd lacks, and the
// agent then reads /proc (procFiles).
const (
	tcpListenState   = 10 // TCP_LISTEN
	inetDiagReqLen   = 56 // struct inet_diag_req_v2
	inetDiagMsgLen   = 72 // struct inet_diag_msg
	inetDiagSkV6Only = 11 // INET_DIAG_SKV6ONLY, a u8
)

// diag dumps the listening TCP sockets of the network namespace its
// netlink socket was made in.
type diag struct {
	fd  int
	seq uint32
	buf []byte
}

// openDiag makes the netlink socket in ns (a socket belongs to the
// namespace it was made in for its whole life) and checks that the
// kernel answers TCP dumps.
func openDiag(ns *os.File) (*diag, error) {
	fd := -1
	if err := vmnet.InNS(ns, func() (err error) {
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
		return err
	}); err != nil {
		return nil, err
	}
	// A kernel that does not answer must not hold the watch.
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2})
	d := &diag{fd: fd, buf: make([]byte, 32<<10)}
	if _, err := d.read(nil); err != nil {
		d.close()
		return nil, err
	}
	return d, nil
}

func (d *diag) close() { unix.Close(d.fd) }

func (d *diag) read(ports []Port) ([]Port, error) {
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		var err error
		if ports, err = d.dump(family, ports); err != nil {
			return ports, err
		}
	}
	return ports, nil
}

// dump asks for the listening sockets of one family and appends the
// ports a connection to loopback reaches.
func (d *diag) dump(family uint8, ports []Port) ([]Port, error) {
	d.seq++
	req := make([]byte, unix.NLMSG_HDRLEN+inetDiagReqLen)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], d.seq)
	body := req[unix.NLMSG_HDRLEN:]
	body[0], body[1] = family, unix.IPPROTO_TCP
	ne.PutUint32(body[4:], 1<<tcpListenState)
	if err := unix.Sendto(d.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return ports, err
	}
	for {
		n, _, err := unix.Recvfrom(d.fd, d.buf, 0)
		if err != nil {
			return ports, err
		}
		msgs, err := syscall.ParseNetlinkMessage(d.buf[:n])
		if err != nil {
			return ports, err
		}
		for _, m := range msgs {
			if m.Header.Seq != d.seq {
				continue // a late answer to an earlier dump
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return ports, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if errno := -int32(ne.Uint32(m.Data)); errno != 0 {
						return ports, fmt.Errorf("sock_diag: %w", unix.Errno(errno))
					}
				}
				return ports, errors.New("sock_diag: error")
			case unix.SOCK_DIAG_BY_FAMILY:
				ports = appendDiag(ports, m.Data)
			}
		}
	}
}

// appendDiag appends the ports of one inet_diag_msg: its family, source
// port and address, and for IPv6 whether it is IPV6_V6ONLY.
func appendDiag(ports []Port, b []byte) []Port {
	if len(b) < inetDiagMsgLen || b[1] != tcpListenState {
		return ports
	}
	p := int(binary.BigEndian.Uint16(b[4:]))
	if b[0] == unix.AF_INET {
		if ip := net.IP(b[8:12]); ip.Equal(net.IPv4zero) || ip.Equal(net.IPv4(127, 0, 0, 1)) {
			ports = append(ports, Port{Port: p, Any: ip.Equal(net.IPv4zero)})
		}
		return ports
	}
	ip := net.IP(b[8:24])
	v6only := false
	for a := b[inetDiagMsgLen:]; len(a) >= 4; {
		l := int(binary.NativeEndian.Uint16(a))
		if l < 4 || l > len(a) {
			break
		}
		if binary.NativeEndian.Uint16(a[2:]) == inetDiagSkV6Only && l >= 5 {
			v6only = a[4] != 0
		}
		l = (l + 3) &^ 3
		if l > len(a) {
			break
		}
		a = a[l:]
	}
	switch {
	case ip.Equal(net.IPv6unspecified):
		if !v6only {
			ports = append(ports, Port{Port: p, Any: true})
		}
		ports = append(ports, Port{Port: p, V6: true, Any: true})
	case ip.Equal(net.IPv6loopback):
		ports = append(ports, Port{Port: p, V6: true})
	case ip.To4() != nil && (ip.Equal(net.IPv4zero) || ip.Equal(net.IPv4(127, 0, 0, 1))):
		ports = append(ports, Port{Port: p, Any: ip.Equal(net.IPv4zero)}) // v4-mapped
	}
	return ports
}
