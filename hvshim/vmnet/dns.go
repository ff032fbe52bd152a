package vmnet

import (
	"bufio"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vishvananda/netns"

	"github.com/runh-project/runh/hvshim/proto"
)

// A name server on a loopback address of the container's namespace (Docker's
// embedded DNS listens at 127.0.0.11 inside it) is out of the guest's reach:
// its loopback is the guest's own. The agent listens on the same address in
// the guest namespace and relays each query over its own stream; the host
// sends it from inside the host namespace, where the engine's rules take it.

const (
	dnsPort     = 53
	dnsTimeout  = 5 * time.Second
	maxDNSMsg   = 65535
	maxInFlight = 64 // queries the host relays at once per VM
)

// loopbackNameservers returns the loopback name servers of the resolv.conf
// the engine bind-mounts into the container.
func loopbackNameservers(spec *specs.Spec) []string {
	var src string
	for _, m := range spec.Mounts {
		if m.Destination == "/etc/resolv.conf" {
			src = m.Source
		}
	}
	if src == "" {
		return nil
	}
	f, err := os.Open(src)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(io.LimitReader(f, 64<<10))
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 2 && fs[0] == "nameserver" {
			if ip := net.ParseIP(fs[1]); ip != nil && ip.IsLoopback() {
				out = append(out, ip.String())
			}
		}
	}
	return out
}

// ServeDNS answers the guest's DNS streams from l (the agent session)
// until it closes. Only servers the host itself listed are queried.
func (a *Attachment) ServeDNS(l net.Listener) {
	sem := make(chan struct{}, maxInFlight)
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		select {
		case sem <- struct{}{}:
		default:
			c.Close() // the guest floods: drop, as a busy server would
			continue
		}
		go func() {
			defer func() { <-sem }()
			defer c.Close()
			a.relayQuery(c)
		}()
	}
}

func (a *Attachment) relayQuery(c net.Conn) {
	c.SetDeadline(time.Now().Add(2 * dnsTimeout))
	var h proto.Header
	if proto.ReadFrame(c, &h, 4096) != nil || h.Kind != proto.KindDNS || (h.Stream != "udp" && h.Stream != "tcp") {
		return
	}
	allowed := false
	for _, s := range a.Config.DNS {
		allowed = allowed || s == h.Process
	}
	if !allowed {
		return
	}
	q, err := readMsg(c)
	if err != nil {
		return
	}
	var conn net.Conn
	addr := net.JoinHostPort(h.Process, "53")
	if err := inNS(a.ns, func() (err error) {
		conn, err = net.DialTimeout(h.Stream, addr, dnsTimeout)
		return err
	}); err != nil {
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(dnsTimeout))
	resp, err := exchange(conn, h.Stream, q)
	if err != nil {
		return
	}
	writeMsg(c, resp)
}

// exchange sends one query and reads its answer, framed as the transport
// wants (a datagram, or a length prefix over TCP).
func exchange(conn net.Conn, network string, q []byte) ([]byte, error) {
	if network == "tcp" {
		if err := writeMsg(conn, q); err != nil {
			return nil, err
		}
		return readMsg(conn)
	}
	if _, err := conn.Write(q); err != nil {
		return nil, err
	}
	buf := make([]byte, maxDNSMsg)
	n, err := conn.Read(buf)
	return buf[:n], err
}

// readMsg and writeMsg frame a DNS message with a 16-bit length, as DNS
// over TCP does; the relay streams use the same framing.
func readMsg(r io.Reader) ([]byte, error) {
	var n [2]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(n[:]))
	_, err := io.ReadFull(r, b)
	return b, err
}

func writeMsg(w io.Writer, b []byte) error {
	if len(b) > maxDNSMsg {
		return errors.New("dns message too large")
	}
	buf := make([]byte, 2+len(b))
	binary.BigEndian.PutUint16(buf, uint16(len(b)))
	copy(buf[2:], b)
	_, err := w.Write(buf)
	return err
}

// relayDNS listens on every server address (UDP and TCP port 53) in the
// guest namespace ns and forwards each query to the host over a stream
// from open.
func relayDNS(ns netns.NsHandle, servers []string, open func() (net.Conn, error)) error {
	for _, s := range servers {
		addr := net.JoinHostPort(s, "53")
		var pc net.PacketConn
		var ln net.Listener
		err := inNS(ns, func() (err error) {
			if pc, err = net.ListenPacket("udp", addr); err != nil {
				return err
			}
			if ln, err = net.Listen("tcp", addr); err != nil {
				pc.Close()
			}
			return err
		})
		if err != nil {
			return err
		}
		go relayUDP(pc, s, open)
		go relayTCP(ln, s, open)
	}
	return nil
}

// forward relays one query to the host and returns the answer.
func forward(open func() (net.Conn, error), server, network string, q []byte) ([]byte, error) {
	st, err := open()
	if err != nil {
		return nil, err
	}
	defer st.Close()
	st.SetDeadline(time.Now().Add(2 * dnsTimeout))
	if err := proto.WriteFrame(st, proto.Header{Kind: proto.KindDNS, Process: server, Stream: network}); err != nil {
		return nil, err
	}
	if err := writeMsg(st, q); err != nil {
		return nil, err
	}
	return readMsg(st)
}

func relayUDP(pc net.PacketConn, server string, open func() (net.Conn, error)) {
	buf := make([]byte, maxDNSMsg)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		q := append([]byte(nil), buf[:n]...)
		go func() {
			if resp, err := forward(open, server, "udp", q); err == nil {
				pc.WriteTo(resp, from)
			}
		}()
	}
}

func relayTCP(ln net.Listener, server string, open func() (net.Conn, error)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			for {
				c.SetDeadline(time.Now().Add(30 * time.Second))
				q, err := readMsg(c)
				if err != nil {
					return
				}
				resp, err := forward(open, server, "tcp", q)
				if err != nil || writeMsg(c, resp) != nil {
					return
				}
			}
		}()
	}
}
